/* gossip.h: the one library every gossip program links, one section per module, in
 * layer order: a module uses only the modules above it, never one below, so there are no
 * circles, and each can be tested with what lies above it.
 *
 *   util      errors, files, encodings, time, rate limits
 *   cbor      CBOR heads, sequences read with limits, encoding (libcbor underneath)
 *   diag      diagnostic notation, for people
 *   clock     per-origin versions that never go back (DIR/clock)
 *   keys      the node's identity (DIR/key, DIR/key.pub)
 *   msg       COSE_Sign1, the message codec, news vs state, signing by an author
 *   trust     DIR/trusted, the verdict on a message, proofs and rejections for reputation
 *   net, out  addresses, sockets, the cluster keyring; sending to destinations
 *   store     DIR/store: file, index, lock, compaction, summary (no trust, no membership)
 *   merge     the merger: decode once, classify, check with the trust it is given, store
 *   session   the handshake and sealed frames a sync runs over (session.h, private)
 *   sync      anti-entropy between two stores over any byte stream
 *   peers     member records, the peer table, phi, pick, leader
 *   query     queries (_query events) and their responses (type 6): codec, id, filters
 *   aggregate push-sum aggregation: _aggregate runs and their shares (type 7)
 *   aggregate push-sum aggregation: runs (_aggregate events), shares (type 7), a node's part
 *   events    DIR/events: append, follow, run a handler
 *   swim      the prober (SWIM with Lifeguard's confirmations), on a clock it is given
 *   observe   the peer table kept from the stream, the clock, the store and DIR/rejects
 *   sim       gossip-sim's seeded randomness and member choices
 *   stats     counters of a node's programs (DIR/stats)
 *   order     ordered delivery: the ordered event, the sender's seq, FIFO/causal/total buffers
 *
 * trust comes after msg because its verdicts are on decoded messages. Structures whose
 * insides only the library needs are declared here by name only; lib/store.h (private)
 * holds the store's. */
#ifndef GOSSIP_H
#define GOSSIP_H

#include <stddef.h>
#include <stdint.h>
#include <signal.h>
#include <stdio.h>
#include <sys/socket.h>

/* ---- util.c: errors, state dir, files, encodings -------------------------------- */

/* Every library function that can fail returns -1 (or a negative code) and leaves a
 * one-line reason, without the program name, for gossip_error(). */
const char *gossip_error(void);
void gossip_seterr(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* The program name for messages ("gossip-send"), set once by gossip_init(). */
extern const char *gossip_progname;
/* sodium_init() and the program name; exits 2 when libsodium cannot start. */
void gossip_init(const char *argv0);
/* In a child, before it execs a command (a handler, an answer, a command peer, a sync):
 * the signals as a new process has them, which exec does not give back by itself (what
 * is ignored or blocked stays so): none blocked, none ignored (SIGPIPE, SIGXFSZ, ...) but
 * SIGHUP, ignored when hup_ignored (a node's reload, a SIGHUP to its process group, is not
 * the command's to die of), else left as the program had it (nohup's). */
void gossip_exec_signals(int hup_ignored);
/* "prog: msg" on stderr. gossip_die() then exits with code. */
void gossip_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void gossip_die(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3), noreturn));

/* Exit codes, the same in every program (grep's scheme). */
enum { GOSSIP_EXIT_OK = 0, GOSSIP_EXIT_NO = 1, GOSSIP_EXIT_ERR = 2 };

/* Options: a repeated option is an error (exit 2); --version prints this line. */
void gossip_opt_once(int opt);
void gossip_print_version(void);

/* The state dir: -d DIR, else $GOSSIP_DIR, else $HOME/.gossip. The result is static. */
const char *gossip_state_dir(const char *opt);
/* DIR/NAME into a static buffer, one of four used in turn: use it at once, or copy it. */
const char *gossip_path(const char *dir, const char *name);

/* A growable byte buffer. */
struct gossip_buf {
	uint8_t *p;
	size_t len, cap;
};
int gossip_buf_put(struct gossip_buf *b, const void *p, size_t n);
/* Room for n more bytes after len. */
int gossip_buf_reserve(struct gossip_buf *b, size_t n);
void gossip_buf_free(struct gossip_buf *b);

/* Read a whole file (or "-" for stdin) of at most max bytes into an empty out; on an
 * error out is freed. A FIFO that nobody writes to is an error, not a wait. */
int gossip_read_file(const char *path, size_t max, struct gossip_buf *out);
/* Write all of p, retrying short writes. */
int gossip_write_all(int fd, const void *p, size_t n);
/* Create path atomically (temp file, fsync, rename, fsync dir) with mode. With
 * excl, fail when path exists. */
int gossip_write_atomic(const char *path, const void *p, size_t n, int mode, int excl);
/* The same (readers see the old file or the new one), without waiting for the disk: for
 * files that are a cache of what can be rebuilt, rewritten often. */
int gossip_write_replace(const char *path, const void *p, size_t n, int mode);

/* SIGHUP asks a long-running program to read its files again. gossip_hup_catch()
 * installs the handler, with SA_RESTART so that the signal never fails a write, a lock or
 * a read; gossip_hup_taken() is 1 once after each signal; gossip_wait_input(fd) waits
 * until fd has input (or its end) or a SIGHUP has come, so that an idle program reloads
 * at once (at worst within a second, when the signal lands just before the wait). */
void gossip_hup_catch(void);
int gossip_hup_taken(void);
void gossip_wait_input(int fd);

/* At most limit events a second (a flood must not drown a log). */
struct gossip_rate {
	uint64_t second, taken, refused;
};
/* 1 when one more event fits in this second. When a new second starts, *refused (may
 * be NULL) gets how many the one before refused. */
int gossip_rate_allow(struct gossip_rate *r, unsigned limit, uint64_t now_ms, uint64_t *refused);

/* Standard base64 with padding, as keys are printed. out must hold 4*((n+2)/3)+1. */
void gossip_b64(char *out, const uint8_t *p, size_t n);
/* Decode exactly outlen bytes from base64 text; -1 otherwise. */
int gossip_unb64(uint8_t *out, size_t outlen, const char *s, size_t slen);
/* Lower-case hex. out must hold 2n+1. */
void gossip_hex(char *out, const uint8_t *p, size_t n);

int gossip_utf8_valid(const uint8_t *p, size_t n);
/* Milliseconds since the epoch, wall clock. */
uint64_t gossip_now_ms(void);
/* Milliseconds on a clock that never steps (for deadlines). */
uint64_t gossip_mono_ms(void);
/* Milliseconds from then to now; 0 when then is later (stamped after now was taken). */
uint64_t gossip_age_ms(uint64_t now, uint64_t then);
/* "2026-11-21T19:04:21.123Z" into out[32]. */
void gossip_fmt_time(char *out, uint64_t ms);
/* A quoted string, escaped so that no control byte reaches a terminal. With ascii,
 * every non-ASCII character is written as \uXXXX (RFC 8949 diagnostic style);
 * otherwise valid UTF-8 is kept (and the output is also a valid JSON string). */
void gossip_put_string(FILE *f, const uint8_t *p, size_t n, int ascii);

/* Waiting for a file of the state directory to change (inotify): an fd watching dir, or
 * -1 (no inotify, or no instance or watch left: warned, naming the sysctls). wait
 * returns 1 as soon as one of names (NULL-ended) was written, created or renamed in, 0
 * after ms without or when a signal came (so that the caller sees the flag its handler
 * set), -1 on an error; with fd -1 it sleeps a little and returns 1, so that a caller
 * polls. */
int gossip_dirwatch_open(const char *dir);
int gossip_dirwatch_wait(int fd, const char *const names[], int ms);

/* ---- cbor.c: CBOR events, sequence reading with limits, encoding ------------------ */

/* One decoded CBOR head, as libcbor's streaming decoder reports it. */
enum gossip_ev_type {
	GOSSIP_EV_UINT, GOSSIP_EV_NEGINT, /* u holds n; the value is -1-n */
	GOSSIP_EV_BSTR, GOSSIP_EV_TSTR,   /* definite: data, len */
	GOSSIP_EV_BSTR_INDEF, GOSSIP_EV_TSTR_INDEF,
	GOSSIP_EV_ARRAY, GOSSIP_EV_MAP,   /* definite: u elements (pairs for a map) */
	GOSSIP_EV_ARRAY_INDEF, GOSSIP_EV_MAP_INDEF,
	GOSSIP_EV_TAG, GOSSIP_EV_FLOAT, GOSSIP_EV_BOOL, GOSSIP_EV_NULL, GOSSIP_EV_UNDEF,
	GOSSIP_EV_SIMPLE, GOSSIP_EV_BREAK,
};
struct gossip_ev {
	enum gossip_ev_type type;
	uint64_t u;
	double f;
	int width; /* bytes of the argument: 0 (in the head), 1, 2, 4, 8 */
	const uint8_t *data;
	size_t len;
};
/* Decode one head at p. Returns the bytes it takes (>0), 0 when more input is needed
 * (ev->u then holds at least how many bytes from p the item needs, when known), -1 when
 * the bytes are not well-formed CBOR. */
long gossip_cbor_event(const uint8_t *p, size_t n, struct gossip_ev *ev);

struct gossip_limits {
	size_t max_size;  /* bytes of one top-level item */
	unsigned max_depth;  /* nesting of arrays, maps, tags, indefinite strings */
	uint64_t max_items;  /* data items (every element, key, value, tag, chunk) in one item */
};
extern const struct gossip_limits gossip_msg_limits;  /* for message streams */
extern const struct gossip_limits gossip_any_limits;  /* for inspecting any CBOR */

/* Called for every data item of a walked item, parents before children. depth 0 is the
 * top-level item; parent is the event that opened the enclosing container (NULL at the
 * top), index the item's position in it (for a map, keys even and values odd). */
struct gossip_visitor {
	void (*item)(void *ctx, const struct gossip_ev *ev, unsigned depth,
	             const struct gossip_ev *parent, uint64_t index);
	/* A container (array, map, tag, indefinite string) at depth ends. */
	void (*close)(void *ctx, const struct gossip_ev *opener, unsigned depth);
	void *ctx;
};

enum { GOSSIP_SCAN_OK = 1, GOSSIP_SCAN_MORE = 0, GOSSIP_SCAN_BAD = -1 };
/* Walk one complete, well-formed data item at the start of p within the limits,
 * calling v (may be NULL). GOSSIP_SCAN_OK sets *len to its size; GOSSIP_SCAN_MORE
 * means p holds a prefix of an item, and sets *len to the bytes it needs at least
 * (more than n: up to the end of the head or string that stopped short); GOSSIP_SCAN_BAD
 * sets the error and *len to the offset of the offending byte. */
int gossip_cbor_scan(const uint8_t *p, size_t n, const struct gossip_limits *lim,
                     const struct gossip_visitor *v, size_t *len);
/* gossip_cbor_scan (without a visitor) over an item whose bytes keep growing (a stream's
 * buffer): each call goes on from where the last stopped for more, so an item trickled
 * in a byte at a time is walked once, not once per byte, and none is walked again before
 * the bytes its last call found missing have come. p holds the item from its start each
 * time (it may have moved). After OK or BAD it starts afresh; gossip_scan_reset for
 * another item. Zeroed to begin. */
struct gossip_scan_frame;
struct gossip_scan {
	struct gossip_scan_frame *st;  /* the open containers */
	unsigned depth, cap;
	uint64_t items;
	size_t pos;  /* bytes of the item walked: whole heads and strings */
	size_t need;  /* bytes the item needs at least before it is walked on */
};
int gossip_scan_next(struct gossip_scan *s, const uint8_t *p, size_t n, const struct gossip_limits *lim,
                     size_t *len);
void gossip_scan_reset(struct gossip_scan *s);
void gossip_scan_free(struct gossip_scan *s);

/* Reads a CBOR sequence (RFC 8742) from a file descriptor, one whole item at a time,
 * as soon as its last byte has arrived. */
struct gossip_reader {
	int fd;
	const char *name;
	struct gossip_limits lim;
	uint8_t *buf;
	size_t cap, start, end;
	uint64_t base;  /* stream offset of buf[0] */
	int eof;
	int timeout_ms;  /* > 0: a read that waits longer fails */
	uint64_t bytes;  /* read so far */
	size_t ready;  /* length of the buffered item gossip_reader_ready found, or 0 */
	struct gossip_scan scan;  /* the next item's, while it wants more */
	uint64_t deadline;  /* > 0: no waiting past this gossip_mono_ms() time, however the
	                     * bytes trickle in */
	int wake_fd;  /* >= 0 (-1 from init): a wait also ends, as "timed out", when this is
	               * readable */
	/* Non-NULL: a signal that finds it set ends a wait, as "timed out"; after any other
	 * the wait goes on for what is left of it. */
	volatile sig_atomic_t *wake_flag;
};
/* 1 when the next item is already buffered whole (gossip_reader_next will not block). */
int gossip_reader_ready(struct gossip_reader *r);
void gossip_reader_init(struct gossip_reader *r, int fd, const char *name,
                        const struct gossip_limits *lim);
/* 1: *item and *len hold the next item, found at stream offset *off (valid until the next
 * call); 0: clean end of input; -1: error (message names the input and the offset). */
int gossip_reader_next(struct gossip_reader *r, const uint8_t **item, size_t *len,
                       uint64_t *off);
void gossip_reader_free(struct gossip_reader *r);

/* A strict cursor over the heads of one item: every head in its shortest form
 * (RFC 8949 §4.2.1), so that a message has exactly one encoding. */
struct gossip_cur {
	const uint8_t *p;
	size_t n, pos;
};
/* 0 and the next head; -1 with a reason naming what. */
int gossip_cur_next(struct gossip_cur *c, struct gossip_ev *ev, const char *what);
/* The same, and the head must be of type. */
int gossip_cur_expect(struct gossip_cur *c, enum gossip_ev_type type, struct gossip_ev *ev,
                      const char *what);

/* Encoding: every head is written by libcbor's encoders. */
enum { GOSSIP_MT_UINT, GOSSIP_MT_NEGINT, GOSSIP_MT_BSTR, GOSSIP_MT_TSTR, GOSSIP_MT_ARRAY,
       GOSSIP_MT_MAP, GOSSIP_MT_TAG };
int gossip_cbor_head(struct gossip_buf *b, int major, uint64_t arg);
/* A definite byte or text string: head and content. */
int gossip_cbor_str(struct gossip_buf *b, int major, const void *p, size_t n);

/* ---- diag.c: RFC 8949 diagnostic notation ----------------------------------------- */

/* Print one well-formed item (as gossip_cbor_scan accepted it) in diagnostic notation.
 * With embed, the protected header and payload of a COSE_Sign1 (tag 18) are shown as
 * embedded CBOR <<...>>. */
int gossip_diag(FILE *f, const uint8_t *p, size_t n, int embed);
/* A number as RFC 8949 Appendix A writes it: shortest round trip, JavaScript's layout,
 * ".0" on integral values; NaN, Infinity, -Infinity. out must hold 40 bytes. */
void gossip_fmt_double(char *out, double d);

/* ---- clock.c: per-origin versions ---------------------------------------------------- */

/* Versions are max(last + 1, now in ms), persisted in DIR/clock before use, so they
 * strictly increase across restarts and clock steps. A clock reserves blocks of
 * versions under a file lock and gives back what it did not use on close. */
struct gossip_clock {
	char path[4096];
	int fd;
	uint64_t next, limit;  /* next to hand out; last reserved */
	unsigned block;
};
/* A version never leads the wall clock of the node that hands it out by more than this
 * (a burst of more than 1000 messages a second runs versions ahead of the clock: past
 * this lead the clock waits for the wall clock instead). Receivers refuse versions
 * further ahead of their own clock than this plus their --max-skew (gossip(7)). */
enum { GOSSIP_VERSION_LEAD_MS = 600000 };
int gossip_clock_open(struct gossip_clock *c, const char *dir, unsigned block);
/* The next version; waits when versions lead the wall clock by GOSSIP_VERSION_LEAD_MS,
 * and fails when that would take more than 10 s (DIR/clock is far ahead of the wall
 * clock). */
int gossip_clock_take(struct gossip_clock *c, uint64_t *version);
int gossip_clock_close(struct gossip_clock *c);

/* ---- keys.c: a node's identity ------------------------------------------------------- */

struct gossip_identity {
	uint8_t pk[32];
	uint8_t *sk;  /* 64 bytes in sodium_malloc memory */
	char name[64];
};
/* Make DIR (0700) and DIR/key (0600), DIR/key.pub; refuse to overwrite without force. */
int gossip_identity_create(const char *dir, const char *name, int force,
                           struct gossip_identity *id);
/* Load DIR/key; fails when it is open to group or others, or (unless ignore_pub) when
 * DIR/key.pub holds another key. */
int gossip_identity_load(const char *dir, struct gossip_identity *id, int ignore_pub);
void gossip_identity_free(struct gossip_identity *id);
/* "BASE64KEY NAME" as key.pub holds and trusted takes. out must hold 128. */
void gossip_pub_line(char *out, size_t outlen, const uint8_t pk[32], const char *name);
/* Read DIR/key.pub: the public key and the name. */
int gossip_pub_load(const char *dir, uint8_t pk[32], char *name, size_t namelen);
/* Short id: the first 8 characters of the base64 key. out must hold 9. */
void gossip_short_id(char *out, const uint8_t pk[32]);

/* ---- msg.c: COSE_Sign1, the gossip message, making and signing one ------------------ */

/* COSE_Sign1 (RFC 9052 §4.2), structure only. */
struct gossip_cose {
	const uint8_t *prot;
	size_t protlen;
	const uint8_t *kid;
	size_t kidlen;
	const uint8_t *payload;
	size_t paylen;
	const uint8_t *sig;
	size_t siglen;
};
/* Sig_structure ["Signature1", protected, h'', payload] (RFC 9052 §4.4). */
int gossip_cose_tbs(struct gossip_buf *b, const struct gossip_cose *c);
/* Tagged COSE_Sign1 with unprotected {4: kid}, signed with Ed25519 secret key sk. */
int gossip_cose_sign(struct gossip_buf *b, struct gossip_cose *c, const uint8_t sk[64]);
/* Parse 18([bstr, {4: bstr}, bstr, bstr]); anything else is rejected with a reason. */
int gossip_cose_parse(const uint8_t *p, size_t n, struct gossip_cose *c);
/* 0 when c->sig is a valid Ed25519 signature by pk. */
int gossip_cose_verify(const struct gossip_cose *c, const uint8_t pk[32]);

/* Message types (payload field 1). gossip(7) is the authority. */
enum { GOSSIP_T_SET = 1, GOSSIP_T_DEL = 2, GOSSIP_T_EVENT = 3, GOSSIP_T_PING = 4, GOSSIP_T_ACK = 5,
       GOSSIP_T_RESPONSE = 6, GOSSIP_T_SHARE = 7 };
/* Pings and acks (probes) carry only a type and a value, the nonce (and a ping asking
 * for an indirect probe, the target's key after it); they are never stored. A response
 * to a query (query.c) has the same shape: a type and a value (a byte string), no
 * version, no time, never stored. So does a share of an aggregation run (type 7,
 * aggregate.c): its value is the share, checked there. */
enum { GOSSIP_NONCE_LEN = 8 };
/* The store summary a direct ping or an ack may carry after its nonce: the first bytes of
 * the sender's Merkle root (gossip(7), THE NODE). */
enum { GOSSIP_SUM_LEN = 2 };
/* Payload fields. */
enum { GOSSIP_F_TYPE = 1, GOSSIP_F_VERSION = 2, GOSSIP_F_TIME = 3, GOSSIP_F_KEY = 4,
       GOSSIP_F_VALUE = 5 };
enum { GOSSIP_KEY_MAX = 1024, GOSSIP_MSG_MAX = 65536, GOSSIP_VALUE_MAX = 64000 };

struct gossip_msg {
	unsigned type;
	uint64_t version;
	uint64_t time;  /* origin wall time, ms since the epoch */
	const uint8_t *key;
	size_t keylen;
	const uint8_t *value;
	size_t valuelen;
	int has_value;
	int value_text;  /* value is a CBOR text string (else bytes) */
	uint8_t origin[32];  /* the kid: the signer's public key */
	struct gossip_cose cose;
	const uint8_t *bytes;  /* the whole message, as gossip_msg_decode was given it */
	size_t nbytes;
};
const char *gossip_type_name(unsigned type);
int gossip_type_parse(const char *s);  /* set, del, event; -1 otherwise */
/* A message of a probe's shape, {1: type, 5: value}: a ping, an ack, a response or a
 * share. What holds for probes (any trusted signer may send one, never stored, passed on
 * as news) holds for all four; gossip_msg_is_response and gossip_msg_is_share tell the
 * response and the share apart. */
int gossip_msg_is_probe(const struct gossip_msg *m);
int gossip_msg_is_response(const struct gossip_msg *m);
int gossip_msg_is_share(const struct gossip_msg *m);
/* The deterministic payload of m. */
int gossip_msg_payload(struct gossip_buf *b, const struct gossip_msg *m);
/* Append m, signed by id, to b (a probe as it is; a versioned message by its author,
 * gossip_author_sign). */
int gossip_msg_sign(struct gossip_buf *b, const struct gossip_msg *m,
                    const struct gossip_identity *id);
/* A node writing messages: its identity and its clock. Opening loads DIR/key (an error
 * starts "key: ") and reserves versions block at a time. */
struct gossip_author {
	struct gossip_identity id;
	struct gossip_clock clock;
};
int gossip_author_open(struct gossip_author *a, const char *dir, unsigned block);
/* Close the clock (giving back unused versions) and free the key; -1 when the clock
 * could not be written. */
int gossip_author_close(struct gossip_author *a);
/* Fill in m's origin, time (now) and next version, and append it, signed, to b. */
int gossip_author_sign(struct gossip_author *a, struct gossip_buf *b, struct gossip_msg *m);

/* Parse and check a message's structure and payload, no crypto. Pointers refer into p. */
int gossip_msg_decode(const uint8_t *p, size_t n, struct gossip_msg *m);
/* Whether m's key is exactly key (a text string, such as GOSSIP_KEY_HB). */
int gossip_msg_key_is(const struct gossip_msg *m, const char *key);
/* 0 when m's signature verifies for its origin. */
int gossip_msg_verify(const struct gossip_msg *m);

/* A node's membership is ordinary signed state under its own origin: a member record
 * under this key (a delete of it is a graceful leave), heartbeats under the other. */
#define GOSSIP_KEY_MEMBER "_member"
#define GOSSIP_KEY_HB "_hb"
/* Claims one member makes about another (gossip-peers observe -p): the value is the CBOR
 * array [member's key, its incarnation]. */
#define GOSSIP_KEY_SUSPECT "_suspect"
#define GOSSIP_KEY_DEAD "_dead"
/* News, not state: heartbeats, probes (and responses) and claims are passed on, never
 * stored. */
int gossip_msg_is_news(const struct gossip_msg *m);
/* Membership traffic: member records (a leave too), heartbeats, pings and acks,
 * suspicions, dead claims and forced leaves, as opposed to the values, events, queries,
 * responses and shares people make (counted apart in the rumor sends). */
int gossip_msg_is_membership(const struct gossip_msg *m);
/* A message's fields as JSON members (no braces): origin, name (when known), type, key,
 * value and encoding (when it has one), version, time. */
void gossip_json_fields(FILE *f, const struct gossip_msg *m, const char *name);

/* ---- trust.c: who may write what; the verdict on a message; rejections ------------- */

struct gossip_signer {
	uint8_t pk[32];
	char *name;  /* may be NULL */
	char **prefixes;  /* NULL: any key; else the key prefixes it may write */
	size_t nprefixes;
	int self;
	unsigned line;  /* where trusted lists it (0: the node's own key.pub) */
};
struct gossip_trust {
	struct gossip_signer *v;
	size_t n;
	/* How far a message's time may be ahead of this node's clock (0: the default,
	 * GOSSIP_MAX_SKEW_MS); its version may be GOSSIP_VERSION_LEAD_MS further. Loading
	 * sets 0: a program with --max-skew sets it after every load. */
	uint64_t max_skew_ms;
};
enum { GOSSIP_MAX_SKEW_MS = 300000 };
/* Load DIR/trusted (missing is empty) plus the node's own key from DIR/key.pub. */
int gossip_trust_load(struct gossip_trust *t, const char *dir);
/* Parse trusted text into an empty (zeroed) t (for tests and for gossip_trust_load). */
int gossip_trust_parse(struct gossip_trust *t, const char *text, size_t n, const char *name);
const struct gossip_signer *gossip_trust_find(const struct gossip_trust *t,
                                              const uint8_t pk[32]);
/* 1 when pk is trusted (t is a struct gossip_trust): the store's visibility rule, so that
 * a line removed from trusted hides its signer's messages (gossip_store_set_visible). */
int gossip_trust_has(void *t, const uint8_t pk[32]);
/* An id of the set of signers gossip_trust_has accepts (BLAKE2b-128 of their keys in
 * order): equal sets, equal ids. */
void gossip_trust_id(const struct gossip_trust *t, uint8_t id[16]);
/* The signer named name (a trusted line's comment), or NULL. */
const struct gossip_signer *gossip_trust_named(const struct gossip_trust *t, const char *name);
/* 1 when the signer may write key (its prefixes allow it). */
int gossip_trust_allows(const struct gossip_signer *s, const uint8_t *key, size_t keylen);
void gossip_trust_free(struct gossip_trust *t);

/* The verdict on one message. Checks are made in this order: well-formed, a trusted kid
 * (a lookup), the signature, then what the signer may do (its prefix=, a time and
 * version not too far ahead): so GOSSIP_V_FORBIDDEN and GOSSIP_V_FUTURE are proven by
 * the signer's own valid signature, and only they may be held against it. */
enum gossip_verdict { GOSSIP_V_OK, GOSSIP_V_MALFORMED, GOSSIP_V_BADSIG, GOSSIP_V_UNTRUSTED,
                      GOSSIP_V_FORBIDDEN, GOSSIP_V_FUTURE };
const char *gossip_verdict_name(enum gossip_verdict v);
/* 1 when the verdict is proven by a valid signature: the signer's own doing. */
int gossip_verdict_proven(enum gossip_verdict v);
/* Is a decoded message's signer trusted, may it write the key, are its time and version
 * within bounds? No crypto: for messages whose signature was checked already. */
enum gossip_verdict gossip_authorize(const struct gossip_msg *m, const struct gossip_trust *t,
                                     const struct gossip_signer **signer);
/* Look the signer up, verify the signature (strangers cost no crypto), then authorize. */
enum gossip_verdict gossip_check_msg(const struct gossip_msg *m, const struct gossip_trust *t,
                                     const struct gossip_signer **signer);
/* Decode, then gossip_check_msg; the reason for anything but OK is in gossip_error().
 * *signer is set when the origin is trusted. */
enum gossip_verdict gossip_check(const uint8_t *p, size_t n, const struct gossip_trust *t,
                                 struct gossip_msg *m, const struct gossip_signer **signer);

/* Reputation comes only from proof. A trusted signer's misbehaviour is proven by its own
 * valid signatures: one message (a key outside its prefix=, a time or version from the
 * future) or two (an equivocation: two messages of one slot and version). The proof is
 * appended to DIR/evidence, a CBOR sequence of [reason, message] and [reason, message,
 * message] (the lower BLAKE2b-128 hash first), unless it is there already; only a new
 * proof is charged to the signer in DIR/rejects ("TIME ORIGIN REASON" lines, at most 20
 * a second, rotated to rejects.1 at 1 MiB). Anyone can replay a proof: it is charged
 * once. DIR/evidence stops growing at 256 KiB (then nothing more is charged). b may be
 * NULL. 1: new and charged; 0: known or not kept. */
int gossip_note_proof(const char *dir, const uint8_t origin[32], const char *reason,
                      const uint8_t *a, size_t alen, const uint8_t *b, size_t blen);
/* What proves nothing about any signer (a bad signature, malformed bytes, a stranger's
 * key) is charged to the address it came from, where one is known: a "TIME ADDRESS
 * REASON" line in DIR/rejects (the address always holds a ':', so it is never read as a
 * key), at most 20 a second, apart from the signers' lines. */
void gossip_note_reject_addr(const char *dir, const char *addr, const char *reason);

/* ---- net.c: addresses, sockets, the keyring ------------------------------------- */

enum { GOSSIP_UDP = 1, GOSSIP_TCP, GOSSIP_UNIX };
struct gossip_addr {
	int kind;
	struct sockaddr_storage sa;
	socklen_t len;
	char text[300];  /* as the user writes it, with the port the kernel chose */
};
/* udp://HOST:PORT, tcp://HOST:PORT (IPv6 in brackets), unix:/PATH. */
int gossip_addr_parse(struct gossip_addr *a, const char *s);
/* udp://IP:PORT for one host, as a message names it (a query's reply address): numeric
 * (no name is looked up: a lookup waits on DNS, which a sender must not make a node do),
 * not multicast, broadcast, unspecified or port 0; -1 with the reason otherwise. */
int gossip_addr_unicast(struct gossip_addr *a, const char *s);
void gossip_addr_text(struct gossip_addr *a);
/* The same host and port under another kind (a UDP peer's TCP side). */
int gossip_addr_as(struct gossip_addr *to, const struct gossip_addr *from, int kind);
/* A bound, non-blocking socket (listening, for streams); port 0 is resolved in a->text. */
int gossip_listen_on(struct gossip_addr *a);
/* A connected stream socket, or -1 after timeout_ms. */
int gossip_connect(const struct gossip_addr *a, int timeout_ms);
/* Send all of p, waiting at most timeout_ms for each bit of progress. */
int gossip_send_timed(int fd, const void *p, size_t n, int timeout_ms);
/* The udp:// address a node runs on DIR listens at, from DIR/listening (gossip-listen -a
 * writes it), into out: 1, or 0 when no node listens there. */
int gossip_node_udp(const char *dir, char *out, size_t outlen);
/* Send all of p by deadline (gossip_mono_ms), however slowly the peer reads. */
int gossip_send_by(int fd, const void *p, size_t n, uint64_t deadline);

/* DIR/keyring: cluster keys, one base64 line each; the first seals, all open. */
struct gossip_keyring {
	uint8_t (*keys)[32];  /* sodium_malloc */
	size_t n;
};
/* A missing keyring is empty (n == 0): traffic is not sealed. At most GOSSIP_KEYRING_MAX
 * keys (each item received is tried with every one). */
enum { GOSSIP_KEYRING_MAX = 8 };
int gossip_keyring_load(struct gossip_keyring *k, const char *dir);
void gossip_keyring_free(struct gossip_keyring *k);
/* Append one sealed item, a CBOR byte string: 24-byte nonce, then XChaCha20-Poly1305
 * ciphertext of p under the first key. */
int gossip_seal(struct gossip_buf *out, const struct gossip_keyring *k, const uint8_t *p, size_t n);
/* Open one sealed item (trying every key) into out; -1 with GOSSIP_WRONG_KEY in
 * gossip_error() when no key opens it. */
int gossip_open_sealed(struct gossip_buf *out, const struct gossip_keyring *k, const uint8_t *item,
                       size_t n);
#define GOSSIP_WRONG_KEY \
	"sealed with a cluster key this node does not hold (see gossip-keyring(5))"
/* 1 when item is one whole sealed item by its form (a byte string long enough for a nonce
 * and a tag): what a node without the key sees of sealed traffic. */
int gossip_looks_sealed(const uint8_t *item, size_t n);

/* ---- out.c: sending to peers ------------------------------------------------------ */

struct gossip_dest;  /* one destination and its queue: private to out.c */
struct gossip_out {
	struct gossip_dest *d;
	size_t n;
	int udp4, udp6;  /* -1 until used */
	size_t mtu;  /* the largest datagram, sealing included */
	int timeout_ms;  /* to connect, and for each bit of progress sending */
	int fanout;  /* 0: every destination; K: K random ones per message */
	const struct gossip_keyring *keys;  /* seal when it holds keys */
	uint64_t datagrams, sent_bytes, failures;
};
/* An empty set of destinations: datagrams of at most mtu bytes, timeout_ms to connect
 * and for each bit of progress, fanout (0: all), sealed with keys when it has any. */
void gossip_out_init(struct gossip_out *o, size_t mtu, int timeout_ms, int fanout,
                     const struct gossip_keyring *keys);
int gossip_out_add(struct gossip_out *o, const char *dest);
/* Destinations from a file, one per line; blank lines and # comments skipped. */
int gossip_out_add_file(struct gossip_out *o, const char *path);
/* Queue one whole message for its destinations. */
int gossip_out_queue(struct gossip_out *o, const uint8_t *p, size_t n);
/* The index of a destination, added when new; -1 when it does not parse. */
long gossip_out_index(struct gossip_out *o, const char *dest);
int gossip_out_queue_to(struct gossip_out *o, size_t i, const uint8_t *p, size_t n);
/* Send everything queued; the number of destinations that failed (each reported once
 * until it is reachable again). */
int gossip_out_flush(struct gossip_out *o);
void gossip_out_close(struct gossip_out *o);

/* ---- store.c: the durable store: file, index, lock, compaction, summary ----------- */

/* The store knows messages, not trust or membership: DIR/store is an append-only CBOR
 * sequence of signed messages (gossip-inspect reads it), indexed in memory when opened.
 * Its internals are in store.h, private to the library. */
struct gossip_store;

/* One current message in the index. The slot names what a message replaces: for set
 * and del BLAKE2b-128(origin, key), for an event BLAKE2b-128(origin, version). */
struct gossip_entry {
	uint8_t slot[16];
	uint8_t hash[16];  /* BLAKE2b-128 of the message's bytes */
	uint64_t off;  /* where the message starts in the store file */
	uint64_t version, time;
	uint32_t len;
	uint32_t origin;  /* index into the store's origin table */
	uint32_t reg;  /* index into the store's registers (UINT32_MAX: an event, a _ key) */
	uint8_t type;
	uint8_t used;
	uint8_t intab;  /* bit i (0, 1): its id is in the store's kept table i (store.c,
	                 * store_tab_keep); bit 2: counted in its origin's current entries */
};
struct gossip_store_opts {
	uint64_t tombstone_ttl_ms;  /* deletes are kept this long (origin time), then collected */
	uint64_t event_ttl_ms;  /* events likewise */
	/* For queries: write nothing to DIR (no lock file, no cut, no quarantine); a shared
	 * lock when DIR/store.lock can be opened, none on a read-only copy without it. */
	int readonly;
	/* Verify every message's signature when indexing, even those DIR/store.sum lists. */
	int verify_all;
	/* Index nothing at open: the first lock does (a sync that the kept summary ends
	 * never reads the store). */
	int lazy;
	/* For a query of one key (read-only): index only that key's rows, found through
	 * DIR/store.keys while it matches the store (else the store is read whole); then
	 * gossip_store_rows and gossip_store_row_state answer for it, and nothing else may be
	 * asked of the handle. */
	const char *key;
};
extern const struct gossip_store_opts gossip_store_defaults;

/* Bytes of DIR/store that are not a verified message, found when indexing: skipped, kept
 * in DIR/quarantine (unless read-only), and reported once. torn: an incomplete last
 * message (a writer that died), cut off unless read-only. */
struct gossip_store_damage {
	uint64_t off, len;
	int torn;
};
/* The damage found since the store file was last indexed afresh. */
const struct gossip_store_damage *gossip_store_damage(const struct gossip_store *st, size_t *n);

/* Open DIR/store (made when missing unless read-only), index it (verifying each message
 * that DIR/store.sum does not list), recover a torn tail, skip and quarantine damage;
 * NULL on error. */
struct gossip_store *gossip_store_open(const char *dir, const struct gossip_store_opts *o);
/* In a child after fork(): a lock of its own (the lock is held by an open file, which
 * parent and child would share: each would let the other in and let go of the other's
 * lock); the index stays, and the next lock reads only what is new. Not while locked. */
int gossip_store_detach(struct gossip_store *st);
/* For a process whose children write the store (a node's observe, which forks its syncs):
 * its first whole read makes DIR/store.keys anew at once (not at its first change, as it
 * makes none), so that each child writes only its own changes to the index rather than
 * make it anew at its first. */
void gossip_store_forks_writers(struct gossip_store *st);
void gossip_store_close(struct gossip_store *st);
const char *gossip_store_dir(const struct gossip_store *st);
/* Take the store's lock and index what other processes appended or compacted since. */
int gossip_store_lock(struct gossip_store *st);
/* The same without waiting: 1 (nothing taken) when another process holds the lock. */
int gossip_store_trylock(struct gossip_store *st);
void gossip_store_unlock(struct gossip_store *st);
/* The slot of a decoded message. */
void gossip_slot(uint8_t slot[16], const struct gossip_msg *m);
const struct gossip_entry *gossip_store_find(const struct gossip_store *st, const uint8_t slot[16]);
enum gossip_class { GOSSIP_NEW, GOSSIP_DUP, GOSSIP_STALE };
/* What m (as gossip_msg_decode made it: its bytes are hashed) would be to the store,
 * without any crypto. Of two messages of
 * one slot and version (an equivocation), the one with the lower hash is kept: the other
 * is stale, whichever came first, so every store keeps the same one. */
enum gossip_class gossip_store_classify(const struct gossip_store *st, const struct gossip_msg *m,
                                        const uint8_t slot[16]);
/* Called with one stored message; the bytes are valid during the call. */
typedef int gossip_each_fn(void *ctx, const struct gossip_entry *e, const uint8_t *p);
/* Whether key is a cluster-wide register (gossip(7), STATE AND MERGE RULES): every key
 * but the reserved ones that start with _ (a member's own records), which stay per
 * origin. Of a register's sets and dels, by any origin, the greatest by (version, origin
 * key) wins; the rows below it are superseded: refused on arrival, hidden from
 * gossip_store_each, gossip_store_find and the summary, and dropped by compaction. */
int gossip_key_is_register(const uint8_t *key, size_t keylen);
/* Every stored set and del of key by a visible origin, superseded and expired ones too
 * (get --all), in register order (the greatest last; a _ key's rows by version and
 * origin). Under the lock. */
int gossip_store_rows(struct gossip_store *st, const uint8_t *key, size_t keylen,
                      gossip_each_fn *fn, void *ctx);
/* What a stored row is: "wins" (its key's greatest row), "superseded", "expired" (a del
 * past its time to live, not yet collected), or "current" (a _ key's row). */
const char *gossip_store_row_state(const struct gossip_store *st, const struct gossip_entry *e);
/* Rewrite the store with only current messages, collecting expired deletes and events
 * (raising their origins' watermarks, and the floor of a key whose greatest row was a
 * collected del), and superseded rows. Takes the lock itself. */
int gossip_store_compact(struct gossip_store *st, uint64_t *before, uint64_t *after);
/* A compaction's watermark record (gossip(7), the first item of a compacted store; not a
 * message): 1, with each origin's watermark given to each (may be NULL); 0 when p is not
 * one; -1 when it starts like one but is damaged. */
int gossip_store_watermarks(const uint8_t *p, size_t n,
                            void (*each)(void *ctx, const uint8_t pk[32], uint64_t version), void *ctx);
/* Call fn for every current message stored at or after offset since, in store order; the
 * bytes are valid during the call. fn returning non-zero stops the walk (returned). With
 * since > 0 only the file from since on is read: the cost is that of what lies there, not
 * of the store (a running node asks every second). */
int gossip_store_each(struct gossip_store *st, uint64_t since, gossip_each_fn *fn, void *ctx);
/* The same for what was stored since the cursor last saw (all of it after a compaction,
 * which moves every message), moving the cursor on. Start with a zeroed cursor. */
struct gossip_store_cursor {
	uint64_t ino, off;
};
int gossip_store_each_new(struct gossip_store *st, struct gossip_store_cursor *cur,
                          gossip_each_fn *fn, void *ctx);
/* Read one message of the index (as gossip_store_find gives it) into buf, which holds
 * GOSSIP_MSG_MAX bytes; -1 when it cannot be read or changed on disk. */
int gossip_store_read(struct gossip_store *st, const struct gossip_entry *e, uint8_t *buf);
/* Following the store as it is written (gossip-merge watch): each message stored after
 * the follower started is passed on once, in store order, even across compactions (which
 * move every message: one already passed on is not passed again, one stored meanwhile is
 * not lost; of several versions of a slot stored and then compacted before the follower
 * looked, only the kept one is seen). Between a follower's calls, nothing else may lock
 * st (the follower compares the index with what it last read). */
struct gossip_store_follower;
/* Start at the end of what is stored now; NULL on error. */
struct gossip_store_follower *gossip_store_follow(struct gossip_store *st);
/* 1 when DIR/store's size or inode changed since the follower last read it (one stat:
 * the cost of an idle follower does not grow with the store). */
int gossip_store_follow_changed(const struct gossip_store_follower *f);
/* Take the lock, index what is new, release the lock, then call fn for each message
 * stored since the last call (visible ones only), the bytes valid during the call; fn
 * returning non-zero stops the walk (returned; what it did not see is not seen again). */
int gossip_store_follow_next(struct gossip_store_follower *f, gossip_each_fn *fn, void *ctx);
void gossip_store_follow_free(struct gossip_store_follower *f);
/* The store's Merkle root and message count (as gossip-merge digest prints them). */
int gossip_store_summary(struct gossip_store *st, uint8_t root[16], uint64_t *count);
/* How many origins (signers) the messages the last summary counted are of: that of the
 * last summary made (gossip_store_summary, or one made inside the library: an append that
 * records, a sync) or kept record that answered (gossip_store_summary_kept); 0 before
 * any. Read it at once after the call whose root and count go with it. */
uint64_t gossip_store_origins(const struct gossip_store *st);
/* Which origins' messages are visible, as the program decides from its trust (the store
 * knows no trust): a hidden message is left out of gossip_store_each, the summary (and
 * so syncs) and gossip_store_find, and compaction drops it. NULL (the default): all.
 * The summary is kept between calls: after the trust behind fn changes, call this again
 * (the same fn and ctx will do), so that the next summary is made afresh. */
typedef int gossip_visible_fn(void *ctx, const uint8_t origin[32]);
void gossip_store_set_visible(struct gossip_store *st, gossip_visible_fn *fn, void *ctx);
/* The kept summary, DIR/store.root (gossip(7), FILES): a writer whose lock read the
 * whole store, or whose index has been in custody since (DIR/store.keys: no one changed
 * the file outside the lock), records the summary it made there, with a key over what it depends on
 * (the store file's identity, size and change times, DIR/watermarks' likewise, the
 * time-to-live options, and rule, the visibility rule's id: gossip_trust_id), and the
 * time it holds until (the next delete or event to expire). keep names the rule and
 * turns the record on; the record is made with the summary and written by
 * gossip_store_summary_save (a sync saves it when it ended equal: one that failed or
 * sent anything leaves nothing behind); gossip_store_summary_kept answers from the record without reading
 * the store: 0 with root and count when it matches the store as it is now, 1 when there
 * is none or it does not match (make the summary then), never an error. */
void gossip_store_keep_summary(struct gossip_store *st, const uint8_t rule[16]);
void gossip_store_summary_save(struct gossip_store *st);
int gossip_store_summary_kept(struct gossip_store *st, uint8_t root[16], uint64_t *count);

/* ---- merge.c: the merger: messages in, new ones stored and reported ---------------- */

/* Each message is decoded once, classified against the index, and, when new, checked
 * against trust (its signature verified unless verified is set: gossip-listen did), then
 * written with the others of its batch under the lock with one fsync, and only then
 * reported as new. News (gossip_msg_is_news) is checked and reported, never stored.
 * A message that equivocates with a stored one (same slot and version, other bytes) is
 * checked like a new one; the pair is noted as proof (gossip_note_proof), and the one
 * with the lower hash is kept. What a valid signature proves against its signer is
 * noted; nothing else is charged to a signer. */
struct gossip_merge_cache;
struct gossip_merger {
	struct gossip_store *st;
	const struct gossip_trust *trust;
	/* Called for each message once it is on disk. */
	void (*on_new)(void *ctx, const uint8_t *p, size_t n);
	void *ctx;
	/* Called for each state message (not news) as the store takes it, in store order,
	 * then with p NULL once after each flush that stored any (a batch is over): how
	 * gossip-merge logs user events and key changes (gossip_event_record). */
	void (*on_stored)(void *sctx, const uint8_t *p, size_t n);
	void *sctx;
	int verified;  /* the input's signatures were checked by gossip-listen: do not again */
	int lazy;  /* report new messages once written, fdatasync just after (not before) */
	/* Record the summary (DIR/store.root) after each batch stored, when the store may
	 * (gossip_store_keep_summary named the rule, and the lock read the whole store or
	 * kept custody): what gossip-merge digest then answers from. */
	int record_summary;
	/* rejected counts refusals; equivocations the messages found to equivocate with a
	 * stored one (the loser is also rejected; the winner is stored). */
	uint64_t seen, added, dups, stale, rejected, equivocations;
	/* written: the messages stored (added counts news passed on too); store_failed: the
	 * last failure was the store's, not the merger's own: 1 its write (nothing of the
	 * batch stored), 2 its sync under lazy (written and reported, not known durable). */
	uint64_t written;
	int store_failed;
	/* Refusal lines said at most (0: each one): a sync from a member that trusts more
	 * signers than this node brings every message of theirs, refused each time. The rest
	 * are counted, and said as one line by gossip_merger_free. */
	unsigned say_max;
	uint64_t unsaid;
	char unsaid_src[32];
	struct gossip_merge_cache *cache;  /* private: pending messages, newest heartbeats */
};
/* Take one item from src at offset off. A rejected item costs one stderr line (say_max);
 * the return is 0 unless something failed that should stop the caller (-1). */
int gossip_merge_item(struct gossip_merger *mg, const uint8_t *p, size_t n, const char *src,
                      uint64_t off);
/* Store what is pending; then compact when waste has grown. */
int gossip_merge_flush(struct gossip_merger *mg);
void gossip_merger_free(struct gossip_merger *mg);
/* The merger's counters (stored, stale, refused_by_merge, equivocations) added to s, as
 * every program that merges counts them for gossip-node status (DIR/stats). */
struct gossip_stats;
void gossip_merger_count(struct gossip_stats *s, struct gossip_merger *mg);

/* ---- sync.c: anti-entropy between two stores ------------------------------------ */

enum { GOSSIP_PUSH = 1, GOSSIP_PULL = 2, GOSSIP_PUSH_PULL = 3 };
struct gossip_sync_stats {
	uint64_t sent_msgs, recv_msgs, sent_bytes, recv_bytes;
	int equal;  /* the summaries matched: nothing else was exchanged */
	int kept;  /* equal by this end's kept summary: its store was not read */
	uint64_t want_left;  /* the client lacks this many more than one sync wants: the next
	                      * sync wants them */
};
/* Sync with PEER: tcp://HOST:PORT, unix:/PATH, or a shell command whose stdin and stdout
 * reach a serving peer. Received messages go through mg (and its on_new). Both ends
 * prove their identities (DIR/key of the store's directory) and take only peers in
 * mg->trust (NULL: none but themselves); with DIR/keyring the cluster key is mixed in.
 * timeout_ms bounds the whole sync, at both ends. */
int gossip_sync_client(struct gossip_merger *mg, const char *peer, int mode, int timeout_ms,
                       struct gossip_sync_stats *s);
/* Whether the first n bytes of a stream are those of a sync request: 1 they are, 0 they
 * are not, -1 too few to tell (gossip-listen hands such streams to the sync command). */
int gossip_sync_starts(const uint8_t *p, size_t n);
/* The other end, on rfd and wfd (stdin and stdout under inetd), with the same checks. */
int gossip_sync_serve(struct gossip_merger *mg, int rfd, int wfd, int timeout_ms,
                      struct gossip_sync_stats *s);
/* A process that keeps st open and syncs from it often (a node's observe, whose children
 * sync): keep the reconciliation table of this hour's ids with the summary, so that the
 * next digest brings it up to date (only what changed) and a sync's tables cost what
 * differs, not the store. The first digest after makes it, O(n); the next hour's is taken up
 * a sixteenth at each digest in the hour's last five minutes (a twelfth of an hour, the
 * clock skew a message may have), so that it is whole at the turn, and the last hour's
 * is kept five minutes into the next. */
int gossip_sync_keep(struct gossip_store *st);

/* ---- hand.c: a sync's connection handed to the process that keeps the store open --------
 * gossip-listen -H hands a stream that is a sync to gossip-peers observe -H (a unix
 * datagram socket, SCM_RIGHTS): the connection, and one end of a socket pair ("done")
 * that the serving process holds until the sync is over, with the peer's name. The
 * server takes it by sending 'T' on done (gossip_hand_take); the sender answers 'G' if
 * it still waits (gossip_hand_given), and then leaves the connection to the server; one
 * that got no 'T' in time closes done and serves the sync itself, and the server, reading
 * no 'G', drops it: never both. */
enum { GOSSIP_HAND_PEER = 320 };
/* Bind PATH (a socket left there by a process that stopped is replaced; one in use, or
 * anything else, is an error), mode 0700 in effect, non-blocking: its fd, or -1; *ino the
 * socket file's inode (remove the path only while it is still that file). */
int gossip_hand_listen(const char *path, uint64_t *ino);
/* The server's side of the handshake: 0 when the sync is its to serve, -1 when not (drop
 * it). The sender's: 0 when the server took it, -1 when none did within timeout_ms. */
int gossip_hand_take(int done, int timeout_ms);
int gossip_hand_given(int done, int timeout_ms);
/* Hand conn and done to the process at PATH, without waiting: 0, or -1 when none takes it
 * now (none there, or its queue full). */
int gossip_hand_send(const char *path, int conn, int done, const char *peer);
/* The next hand-off, without waiting: 1 with *conn, *done (close-on-exec) and peer; 0 none
 * now; -1 an error. Only this user's hand-offs, whole, of two sockets are taken; others
 * are dropped, at most 64 a call. */
int gossip_hand_recv(int sock, int *conn, int *done, char *peer, size_t peersz);

/* ---- peers.c: membership ------------------------------------------------------------ */

enum { GOSSIP_MAX_ADDRS = 4, GOSSIP_MAX_TAGS = 16, GOSSIP_PHI_WINDOW = 100 };
struct gossip_member {
	uint64_t incarnation;
	char name[64];
	char addrs[GOSSIP_MAX_ADDRS][128];  /* udp:// for datagrams, tcp:// for syncs */
	int naddrs;
	char tags[GOSSIP_MAX_TAGS][192];  /* "key=value" */
	int ntags;
};
int gossip_member_encode(struct gossip_buf *b, const struct gossip_member *m);
int gossip_member_decode(const uint8_t *p, size_t n, struct gossip_member *m);
const char *gossip_member_addr(const struct gossip_member *m, int kind);
const char *gossip_member_tag(const struct gossip_member *m, const char *key);

enum { GOSSIP_P_ALIVE, GOSSIP_P_SUSPECT, GOSSIP_P_DEAD, GOSSIP_P_LEFT };
const char *gossip_pstate_name(int s);
struct gossip_peer {
	uint8_t pk[32];
	int state, self;
	uint64_t since;  /* when it entered its state (ms) */
	uint64_t member_version, hb_version;
	struct gossip_member info;
	uint64_t last_hb;  /* local arrival of its newest heartbeat (ms) */
	double intervals[GOSSIP_PHI_WINDOW];
	int nint, pos;
	uint64_t suspected_at;  /* when it last turned suspect (ms), for partition detection */
	int suspector;  /* this node's own probe made it suspect (not saved) */
	int confirmations;  /* members whose probes failed too, as they told us (not saved) */
	uint64_t told;  /* when this node last told it how it stands (not saved) */
	double score;  /* reputation, 0 to 100 */
	uint64_t rejected;
	char why[128];
};
struct gossip_peers {
	struct gossip_peer *v;
	size_t n;
	uint64_t partition_since, saved_at;
	double interval_ms, min_std_ms, pause_ms;  /* the observer's, for phi when reading */
	int probing;  /* the observer probes (SWIM): there is no phi */
	uint8_t self_pk[32];  /* this node's key (DIR/key.pub), when has_self (not saved) */
	int has_self;
};
struct gossip_peers_cfg {
	double interval_ms;  /* the heartbeat interval peers use */
	double phi_suspect;  /* phi at which a peer turns suspect */
	double suspicion_mult;  /* suspect to dead after mult * max(1, log10(N+1)) intervals */
	double min_std_ms;  /* floor for the standard deviation of arrivals */
	double pause_ms;  /* an acceptable pause, added to the mean interval */
	double reap_ms;  /* dead and left members are forgotten after this */
	double partition_share;  /* this share of alive members turning suspect at once */
	double score_min;  /* below this a peer is not picked */
	double dead_chance;  /* chance that pick adds one unreachable peer */
	double jitter;  /* each beat or probe interval off by up to this fraction, at random */
};
extern const struct gossip_peers_cfg gossip_peers_defaults;
double gossip_phi(const struct gossip_peer *p, uint64_t now, const struct gossip_peers_cfg *cfg);
/* A new heartbeat arrived now. */
void gossip_peer_heard(struct gossip_peer *p, uint64_t now);
/* p enters state now. */
void gossip_peer_set_state(struct gossip_peer *p, int state, uint64_t now);
uint64_t gossip_suspicion_ms(const struct gossip_peers_cfg *cfg, size_t members);
struct gossip_peer *gossip_peers_find(struct gossip_peers *t, const uint8_t pk[32], int create);
/* Load DIR/peers (none: an empty table) and mark this node (DIR/key.pub) self. */
int gossip_peers_load(struct gossip_peers *t, const char *dir);
/* Replace DIR/peers with t (whole, or not at all: the old table stays). 0, or -1 with the
 * error set. */
int gossip_peers_save(const struct gossip_peers *t, const char *dir);
/* Save for a program that saves again and again (observe): a failure (a full disk) is
 * warned about once, then at most once a minute, and the recovery in one line; the
 * table in memory goes on and is saved at the next try. */
void gossip_peers_keep(const struct gossip_peers *t, const char *dir);
void gossip_peers_free(struct gossip_peers *t);
/* Up to k distinct live peers (never self), now and then one unreachable one. */
size_t gossip_peers_pick(struct gossip_peers *t, const struct gossip_peers_cfg *cfg, size_t k,
                         struct gossip_peer **out);
/* Rumor: the members a message from origin goes on to from this node (out holds up to
 * GOSSIP_RUMOR_TREES * k). Each of GOSSIP_RUMOR_TREES trees orders the members alive or suspect
 * (and the origin, known or not) by a hash of the tree's number, the origin's key and the
 * member's key, the origin first; the member at rank r passes the message on to ranks
 * k*r+1 to k*r+k (k-ary trees rooted at the origin), never to the origin or itself. With the same view everywhere every alive member gets the message from
 * each tree once, about GOSSIP_RUMOR_TREES sends per member, in log_k(N) hops; a member
 * failed but not yet declared loses only those below it in one tree. From an origin not
 * alive in the table (a joiner's record) there may be no root to start the trees: to
 * GOSSIP_RUMOR_TREES * k live members at random instead. 0 without a self. */
enum { GOSSIP_RUMOR_TREES = 2 };
size_t gossip_peers_rumor(struct gossip_peers *t, const uint8_t origin[32], size_t k,
                          struct gossip_peer **out);
/* The same, how: GOSSIP_RUMOR_OFF_TREE for a message that reached this node off the trees
 * (found in the store after a sync: a joiner's record its join sync brought): to
 * GOSSIP_RUMOR_TREES * k live members at random, as from an origin not alive, since the
 * root may not have started the trees (the joiner knows nobody yet). GOSSIP_RUMOR_LAZY: the
 * second tree sends only to the children whose path down the first tree (from the origin,
 * or from this node when it is on that path) runs through a member this node holds
 * suspect; with no suspect, each member gets the message once, from the first tree. Not
 * for two intervals (t->interval_ms) after a member's state changed (its since): the
 * members' views may differ then, and the second tree sends as the eager one. */
enum { GOSSIP_RUMOR_OFF_TREE = 1, GOSSIP_RUMOR_LAZY = 2 };
size_t gossip_peers_rumor_from(struct gossip_peers *t, const uint8_t origin[32], size_t k,
                               int how, struct gossip_peer **out);
/* The lowest key among alive members tagged leader=eligible, else among all alive. */
const struct gossip_peer *gossip_peers_leader(const struct gossip_peers *t);
/* Whether a node runs on DIR: DIR/node.lock exists and an exclusive flock(2) on a fresh
 * open of it fails (gossip-node holds it for the node's life). 1: it runs, *pid its main
 * pid from DIR/node.pid (0 when unknown); 0: no node; -1: the lock could not be checked. */
int gossip_node_running(const char *dir, long *pid);

/* ---- query.c: queries and responses (gossip-query) ------------------------------------ */

/* A query is an ordinary event named _query whose value is a byte string holding the
 * deterministic CBOR map {1: name, 2: payload, 3: reply, 4: deadline, 5: limit, 6: ack,
 * 7: relay, 8: [names] (optional), 9: {tag: regex} (optional)} (gossip(7), QUERIES). Its
 * id is the BLAKE2b-128 hash of the whole signed message. A response is a message of type
 * 6, {1: 6, 5: [id, kind, payload, reply]}, signed by the member that answers. */
#define GOSSIP_KEY_QUERY "_query"
enum { GOSSIP_QUERY_ID_LEN = 16, GOSSIP_QUERY_NAME_MAX = 256, GOSSIP_QUERY_REPLY_MAX = 299,
       GOSSIP_QUERY_RELAY_MAX = 5, GOSSIP_QUERY_NAMES = 64, GOSSIP_QUERY_TAGS = 16,
       GOSSIP_QUERY_REGEX_MAX = 512,
       /* An answer and its response fit in one datagram, signed and sealed. */
       GOSSIP_ANSWER_MAX = 60000, GOSSIP_ANSWER_DEFAULT = 1024 };
enum { GOSSIP_RESP_ACK = 1, GOSSIP_RESP_ANSWER = 2 };
/* A member answers no query whose deadline is further ahead of its clock than this (an
 * hour, the asker's longest timeout, and a minute of clock skew), nor runs a handler longer. */
#define GOSSIP_QUERY_AHEAD_MS (3600000ULL + 60000ULL)
struct gossip_query {
	char name[GOSSIP_QUERY_NAME_MAX + 1];  /* 1 to 256 bytes of UTF-8, no control bytes */
	const uint8_t *payload;
	size_t paylen;
	char reply[GOSSIP_QUERY_REPLY_MAX + 1];  /* udp://host:port */
	uint64_t deadline;  /* ms since 1970 on the asker's clock */
	uint64_t limit;  /* answer bytes, at most GOSSIP_ANSWER_MAX */
	int ack;  /* 0 or 1 */
	unsigned relay;  /* 0 to GOSSIP_QUERY_RELAY_MAX */
	int nnames;  /* 0: field 8 absent (every member) */
	char names[GOSSIP_QUERY_NAMES][64];
	int ntags;  /* 0: field 9 absent (no tag filter) */
	struct {
		char tag[192];
		char re[GOSSIP_QUERY_REGEX_MAX + 1];  /* POSIX ERE, matched against the whole value */
	} tags[GOSSIP_QUERY_TAGS];
};
/* Append q's value (the map) to b; -1 with the reason when a field is out of range or
 * a regular expression does not compile. Tags are written in deterministic order. */
int gossip_query_encode(struct gossip_buf *b, const struct gossip_query *q);
/* Decode a query's value; anything not deterministic, not known or out of range is
 * refused with the reason. q->payload points into p. */
int gossip_query_decode(const uint8_t *p, size_t n, struct gossip_query *q);
/* A stored message that is a query: an event named _query with a byte string value.
 * 1 and q filled; 0 when m is no query; -1 when it is one but its value is refused. */
int gossip_query_of(const struct gossip_msg *m, struct gossip_query *q);
/* The id of a signed query message: BLAKE2b-128 of its bytes (the store's hash). */
void gossip_query_id(uint8_t id[GOSSIP_QUERY_ID_LEN], const uint8_t *p, size_t n);
/* 1 when member m matches q's filters (its name among q's names, when given; every
 * tag given present and matched whole by its regex), 0 when not, -1 on a regex error. */
int gossip_query_matches(const struct gossip_query *q, const struct gossip_member *m);
/* A response's value: [id, kind, payload, reply]. */
struct gossip_response {
	uint8_t id[GOSSIP_QUERY_ID_LEN];
	int kind;  /* GOSSIP_RESP_ACK or GOSSIP_RESP_ANSWER */
	const uint8_t *payload;  /* empty for an ack */
	size_t paylen;
	char reply[GOSSIP_QUERY_REPLY_MAX + 1];
};
int gossip_response_encode(struct gossip_buf *b, const struct gossip_response *r);
/* r->payload points into p. */
int gossip_response_decode(const uint8_t *p, size_t n, struct gossip_response *r);
/* The whole signed response message, by id (a probe-shaped message needs no clock). */
int gossip_response_sign(struct gossip_buf *b, const struct gossip_response *r,
                         const struct gossip_identity *id);

/* ---- aggregate.c: aggregation by push-sum (gossip-peers aggregate) --------------------- */

/* A run is an ordinary event named _aggregate whose value is a byte string holding the
 * deterministic CBOR map {1: function, 2: input, 3: round interval (ms), 4: deadline (ms
 * since 1970, the asker's clock)} (gossip(7), AGGREGATION). Its id is the BLAKE2b-128 hash
 * of the whole signed message; its rounds start at the message's time. A share is a
 * message of type 7, {1: 7, 5: [id, round, sum, weight]} (sum and weight float64), signed
 * by the member that sends it, never stored. */
#define GOSSIP_KEY_AGGREGATE "_aggregate"
enum { GOSSIP_AGG_AVG = 1, GOSSIP_AGG_SUM, GOSSIP_AGG_COUNT, GOSSIP_AGG_MIN, GOSSIP_AGG_MAX };
/* A node takes part in no run whose deadline is more than a day (the asker's longest -T)
 * and a minute of clock skew ahead of its clock. */
#define GOSSIP_AGG_AHEAD_MS (86400000ULL + 60000ULL)
enum { GOSSIP_AGG_ID_LEN = 16, GOSSIP_AGG_INPUT_MAX = 1028, GOSSIP_AGG_ROUND_MIN = 10,
       GOSSIP_AGG_ROUND_MAX = 60000,
       /* Runs a node takes part in at once (a new one replaces the oldest); a run's state
        * is kept this long after its deadline (its estimate file too), then dropped. */
       GOSSIP_AGG_RUNS = 8, GOSSIP_AGG_LINGER_MS = 10000 };
struct gossip_aggregate {
	int fn;  /* GOSSIP_AGG_AVG ... GOSSIP_AGG_MAX */
	/* "tag:NAME" (the member's tag), "key:KEY" (its own value of KEY), "-" (its
	 * DIR/aggregate.input); "" for count, which counts every member. */
	char input[GOSSIP_AGG_INPUT_MAX + 1];
	uint64_t round_ms;  /* GOSSIP_AGG_ROUND_MIN to GOSSIP_AGG_ROUND_MAX */
	uint64_t deadline;
};
const char *gossip_agg_fn_name(int fn);
/* avg, sum, count, min, max: the function; -1 otherwise. */
int gossip_agg_fn_parse(const char *s);
/* Whether an input spec fits the function (the reason when not). */
int gossip_agg_check_input(int fn, const char *input);
int gossip_agg_encode(struct gossip_buf *b, const struct gossip_aggregate *a);
int gossip_agg_decode(const uint8_t *p, size_t n, struct gossip_aggregate *a);
/* A message that is a run: an event named _aggregate with a byte string value. 1 and a
 * filled; 0 when m is none; -1 when it is one but its value is refused. */
int gossip_agg_of(const struct gossip_msg *m, struct gossip_aggregate *a);
/* The id of a signed run message: BLAKE2b-128 of its bytes (the store's hash). */
void gossip_agg_id(uint8_t id[GOSSIP_AGG_ID_LEN], const uint8_t *p, size_t n);

/* Push-sum (Kempe, Dobra, Gehrke 2003), one node's mass: for avg, sum and count the pair
 * (sum, weight) whose ratio is the node's estimate; for min and max, sum is the extreme
 * seen and weight 1 once there is one (0 before). */
struct gossip_agg_mass {
	double s, w;
};
/* A node's mass at the start: with its input x (has_input), and whether it is the asker
 * (sum and count give the asker the only weight: the estimate is then the total). */
struct gossip_agg_mass gossip_agg_initial(int fn, int asker, int has_input, double x);
/* One round's step at a sender: the share to send (half the mass; for min and max the
 * extreme), *m keeping the rest. A share of weight 0 (nothing yet) is not worth sending. */
struct gossip_agg_mass gossip_agg_split(int fn, struct gossip_agg_mass *m);
/* A share taken in. */
void gossip_agg_take(int fn, struct gossip_agg_mass *m, struct gossip_agg_mass in);
/* 1 and the estimate, or 0 when there is none yet (no weight). */
int gossip_agg_estimate(int fn, const struct gossip_agg_mass *m, double *est);

struct gossip_share {
	uint8_t id[GOSSIP_AGG_ID_LEN];
	uint64_t round;
	struct gossip_agg_mass mass;  /* finite, weight not negative */
	uint8_t to[32];  /* the member it is sent to: no other takes it (a replay elsewhere) */
};
int gossip_share_encode(struct gossip_buf *b, const struct gossip_share *s);
int gossip_share_decode(const uint8_t *p, size_t n, struct gossip_share *s);
/* The whole signed share message (probe-shaped: no clock). */
int gossip_share_sign(struct gossip_buf *b, const struct gossip_share *s,
                      const struct gossip_identity *id);

/* A node's part in the runs (gossip-peers observe holds one): runs learnt from the stream
 * or the store, the input read at the first tick, one share a round to a random alive
 * member (signed with DIR/key, sealed with DIR/keyring, to its udp:// address), the
 * estimate written to DIR/aggregate/ID (ID in hex) at each round as one line:
 * "ROUND ESTIMATE LOW HIGH SENT RECEIVED REFUSED BYTES SHARES" (nan where there is none;
 * LOW and HIGH the least and greatest estimates among this node's and those the shares
 * of the last four rounds carried; SHARES how many shares those were; BYTES sent). */
struct gossip_aggregator;
struct gossip_aggregator *gossip_aggregator_new(const char *dir);
void gossip_aggregator_free(struct gossip_aggregator *g);
/* Read DIR/keyring again (a reload): the next shares are sealed with it; a keyring that
 * does not load keeps the old one, with a warning. */
void gossip_aggregator_reload(struct gossip_aggregator *g);
/* A message that may be a run (from the stream or the store): taken when new and not past
 * its deadline; with GOSSIP_AGG_RUNS under way, it replaces one past its deadline, or else
 * the oldest (warned). */
void gossip_aggregator_event(struct gossip_aggregator *g, const struct gossip_msg *m, uint64_t now);
/* A share: checked against t (trusted signer, good signature), naming this node as its
 * recipient (one sent to another member and replayed here would count twice), its mass
 * bounded (weight at most the run's total, members members for avg, min and max, 1 for
 * sum and count), one
 * per signer and round, not older than eight rounds; then taken into its run, or kept a
 * while when the run is not known here yet. 1 taken or kept, 0 refused (counted). */
int gossip_aggregator_share(struct gossip_aggregator *g, const struct gossip_msg *m,
                            const struct gossip_trust *t, size_t members, uint64_t now);
/* The clock (now: wall ms): start the runs learnt (inputs read: the table's self for a
 * tag, st for a key (may be NULL: none), DIR/aggregate.input), a share from each run at
 * each new round, estimates written, runs past their deadline and linger dropped. */
void gossip_aggregator_tick(struct gossip_aggregator *g, struct gossip_peers *t,
                            struct gossip_store *st, uint64_t now);
/* Refused shares, all runs. */
uint64_t gossip_aggregator_refused(const struct gossip_aggregator *g);
/* A run, or a share waiting for its run, is held: the clock is wanted often. */
int gossip_aggregator_busy(const struct gossip_aggregator *g);

/* A run's estimate as DIR/aggregate/ID holds it. 0, or -1 when there is none (yet). */
struct gossip_agg_status {
	uint64_t round, sent, received, refused, bytes, shares;
	double estimate, low, high;  /* NAN when none */
};
int gossip_agg_status_load(const char *dir, const uint8_t id[GOSSIP_AGG_ID_LEN],
                           struct gossip_agg_status *s);
const char *gossip_agg_path(const char *dir, const uint8_t id[GOSSIP_AGG_ID_LEN]);

/* ---- events.c: the event log, DIR/events, and handlers -------------------------------- */

/* DIR/events and DIR/rejects are renamed to events.1 and rejects.1 (replacing the one
 * before) when a record would take them past GOSSIP_LOG_MAX bytes, or the number of
 * bytes in the environment variable GOSSIP_LOG_MAX (at least 1024; for tests). */
enum { GOSSIP_LOG_MAX = 1 << 20 };
uint64_t gossip_log_max(void);
/* Append one record (n bytes) to the log at path whole, or not at all, renaming the log
 * to path.1 first when the record would take it past gossip_log_max(). Writers in any
 * number of processes take turns (flock). 0, or -1 with the error set. */
int gossip_log_append(const char *path, const void *p, size_t n);
/* Follows a log as it grows and as it is renamed to path.1: every byte once, unless the
 * log was renamed twice more between two reads (the file between is lost then). */
struct gossip_log_tail {
	char path[4200];
	int fd;  /* the file being read, which the name may no longer lead to */
	uint64_t dev, ino, off;
	uint64_t done[2][2];  /* the last two files read to their end (device, inode) */
};
/* From the end of the log, or with from_start from the beginning of path.1 (or of path,
 * when there is no path.1). */
void gossip_log_tail_init(struct gossip_log_tail *t, const char *path, int from_start);
/* What the file being read gained, onto out. 1 when that file is finished (the log was
 * renamed): out holds the whole of it, and the next read is of the next file. */
int gossip_log_tail_read(struct gossip_log_tail *t, struct gossip_buf *out);
void gossip_log_tail_close(struct gossip_log_tail *t);
/* A write that keeps failing (a full disk), warned about once, then at most once a
 * minute: gossip_trouble counts a failure, and is 1 when it is time to warn; over, on a
 * success, the number of failures since the last success. */
struct gossip_trouble {
	uint64_t failures, warned_at;
};
int gossip_trouble(struct gossip_trouble *t, uint64_t now);
uint64_t gossip_trouble_over(struct gossip_trouble *t);

/* Handler specs, Serf's shape: -x [FILTER[,FILTER...]=]COMMAND (gossip-peers(1)). A
 * FILTER is member (every member-* event), one event's name (member-join, ...,
 * partition-healed), user or user:NAME, query or query:NAME, key or key:PREFIX, or *.
 * The text before the first '=' is a list of filters when it starts like one (a known
 * kind); then every filter in it must be good. Otherwise the whole spec is the command
 * ("FOO=1 ./h" is a command). No filter: every event. */
#define GOSSIP_HANDLER_FILTERS 16
struct gossip_handler {
	const char *command;  /* points into the spec given */
	int nfilters;
	struct {
		char kind[24];  /* member, member-join, ..., user, query, key, * */
		char arg[1025];  /* user:NAME, query:NAME, key:PREFIX ("": any) */
	} filter[GOSSIP_HANDLER_FILTERS];
};
/* 0, or -1 with the error set (a filter not known, an empty name or command, too many). */
int gossip_handler_parse(const char *spec, struct gossip_handler *h);
/* Whether h runs for event (user, query, key, or a member or partition event's name) about
 * name (the user event's or query's name, or the key; NULL for the others). */
int gossip_handler_wants(const struct gossip_handler *h, const char *event, const char *name);

/* DIR/events is a CBOR sequence of records. A membership record is [time, event, id,
 * name, state, [addresses], [tags]]; its events: member-join, member-update,
 * member-suspect, member-alive (a suspect is back: it refuted the suspicion),
 * member-failed, member-leave, member-reap (about a member p), partition-suspected,
 * partition-healed (p NULL). */
void gossip_event_append(const char *dir, uint64_t now, const char *event,
                         const struct gossip_peer *p);
/* A message record is [time, "message", bytes]: a user event (an event message whose name
 * does not start with '_') or a key change (a set or del of a key not starting with '_'),
 * the whole signed message as stored. gossip-merge logs them through its merger's
 * on_stored: gossip_event_record takes each message stored (others are let pass) and, at
 * the end of a batch (p NULL), appends the batch's records with one gossip_log_append. A
 * log that cannot be written loses records, warned about as gossip_event_append does.
 * Key changes are logged only while DIR/events.keys exists (a watch with a handler that
 * wants them made it; looked at once a second): a store written without key handlers is
 * not written twice. */
struct gossip_event_recorder {
	const char *dir;
	struct gossip_buf buf;
	struct gossip_trouble trouble;
	uint64_t lost;  /* records lost (the log could not be written) */
	uint64_t keys_at;  /* when DIR/events.keys was last looked at (mono ms; 0: never) */
	int keys;  /* it was there */
};
/* Whether any of the handlers runs for some key change (key, key:PREFIX, * or no filter);
 * gossip-peers watch makes DIR/events.keys when one does, and removes it otherwise. */
int gossip_handlers_want_keys(const struct gossip_handler *h, int n);
void gossip_event_record(void *recorder, const uint8_t *p, size_t n);
void gossip_event_recorder_free(struct gossip_event_recorder *r);
/* Whether a message (decoded) is one gossip_event_record logs. */
int gossip_event_logged(const struct gossip_msg *m);

/* One event as read back. Membership: the id in base64, addresses and tags joined by
 * commas. A user event or key change (kind GOSSIP_EVENT_USER, GOSSIP_EVENT_KEY; event
 * "user" or "key"): its name or key, op ("set" or "del"), origin (base64), version and
 * origin time from the message, and value (the payload, or the value set) and msg (the
 * whole message) pointing into the reader's buffer until its next read. */
enum { GOSSIP_EVENT_MEMBER, GOSSIP_EVENT_USER, GOSSIP_EVENT_KEY };
struct gossip_event {
	uint64_t time;  /* when it was logged */
	char event[32], name[64], state[16], id[45];
	char addrs[600], tags[600];
	int kind;
	char key[GOSSIP_KEY_MAX + 1];  /* a NUL in the name or key ends it here */
	size_t keylen;
	char op[4], origin[45];
	uint64_t version, msg_time;
	const uint8_t *value, *msg;
	size_t valuelen, msglen;
};

/* A place in the log: the file (device, inode) and the offset just after an event. */
struct gossip_log_pos {
	uint64_t dev, ino, off;
};

/* Follows DIR/events as it grows, and across its renaming to events.1. */
struct gossip_event_reader {
	struct gossip_log_tail tail;
	struct gossip_buf buf;
	size_t at;  /* the next unread byte in buf */
	int filled, warned;  /* in this pass */
	int switched;  /* buf holds the end of a file renamed away */
	uint64_t dev, ino, base;  /* the file buf's bytes are from, and the offset of buf.p[0] */
};
/* From the end of the log, or with from_start from its beginning (events.1 first). */
void gossip_event_reader_init(struct gossip_event_reader *r, const char *dir, int from_start);
/* From a place: in DIR/events.1 (then on into DIR/events) or in DIR/events. -1 with the
 * error set when neither file is the one the place is in (the log was renamed twice
 * since, or replaced): r then reads from the end. */
int gossip_event_reader_at(struct gossip_event_reader *r, const char *dir,
                           const struct gossip_log_pos *at);
/* 1 and the next event; 0 when a pass (one read of what the log gained, and the events in
 * it) is over. A stretch that is not an event is skipped, warned about once a pass. */
int gossip_event_reader_next(struct gossip_event_reader *r, struct gossip_event *e);
/* The place just after the last event read. */
void gossip_event_reader_pos(const struct gossip_event_reader *r, struct gossip_log_pos *p);
void gossip_event_reader_free(struct gossip_event_reader *r);
/* DIR/events.pos ("DEVICE INODE OFFSET" in decimal): 0, or -1 (none, or not one). */
int gossip_log_pos_load(const char *dir, struct gossip_log_pos *p);
int gossip_log_pos_save(const char *dir, const struct gossip_log_pos *p);

/* The handler runner (gossip-peers watch -x): each event offered goes to each handler
 * that wants it, once, in log order; each handler runs one event at a time, in a child
 * of its own process group, while the caller goes on reading (never waited for). The
 * handler's environment is Serf's (gossip-peers(1)); its stdin a file holding the payload,
 * the value, or the members. The events waiting are bounded (max_events, max_bytes): an
 * offer is refused while full, and the caller stops reading the log (the log is the
 * queue). A handler still running after limit_ms is reported (once, with the event and
 * its pid) and stopped: SIGTERM to its process group, SIGKILL 5 s later; one that fails
 * is reported with its exit code. With coalesce_ms, the events of a window (from the first
 * event offered after the last window) are delivered at its end: member events once per
 * event with the members on stdin, user events once per name with the last payload, key
 * changes once per origin and key with the newest version. With keep_place, the place
 * after the last event delivered to every handler is written to DIR/events.pos. */
struct gossip_runner_cfg {
	const char *dir;
	const struct gossip_handler *handlers;
	int nhandlers;  /* at most GOSSIP_RUNNER_HANDLERS */
	uint64_t limit_ms;  /* 0: no limit */
	uint64_t coalesce_ms;  /* 0: none */
	size_t max_events, max_bytes;
	int keep_place;
};
#define GOSSIP_RUNNER_HANDLERS 32
struct gossip_runner;
struct gossip_runner *gossip_runner_new(const struct gossip_runner_cfg *cfg);
/* Take e, read from the log up to at. 0, or -1 when full (offer it again later). */
int gossip_runner_offer(struct gossip_runner *r, const struct gossip_event *e,
                        const struct gossip_log_pos *at, uint64_t now);
/* Reap handlers that ended, stop those past the limit, close a coalescing window that is
 * over, start the next event for each idle handler, and keep the place. now is
 * gossip_mono_ms(). The number of handlers running. */
int gossip_runner_tick(struct gossip_runner *r, uint64_t now);
/* The place before the first event offered, written at once (a watch stopped before its
 * first delivery starts there again). */
void gossip_runner_start_at(struct gossip_runner *r, const struct gossip_log_pos *at);
/* 1 once when an offer was refused (the queue is full: say so), again after it drained. */
int gossip_runner_full(struct gossip_runner *r);
/* 1 while the runner has something to do at a later tick: a handler running (to reap,
 * or to stop at its limit), an event queued, a coalescing window open; 0 when only a new
 * event can give it work (the caller may then sleep until one comes). */
int gossip_runner_busy(const struct gossip_runner *r);
/* SIGTERM to the running handlers' process groups (watch is stopping); then free. */
void gossip_runner_free(struct gossip_runner *r);

/* ---- swim.c: failure detection by probes (SWIM, with Lifeguard's confirmations) ------- */

/* How the prober's messages leave: one signed message to member to, or (to NULL) to the
 * cluster by rumor, in the copy of the stream. */
typedef void gossip_swim_send_fn(void *ctx, const struct gossip_peer *to, const uint8_t *p,
                                 size_t n);
struct gossip_swim;
/* A prober of table t, signing as author and logging state changes to DIR/events. The
 * table's suspicions from before are dropped: their timers are gone. NULL: no memory. */
struct gossip_swim *gossip_swim_new(struct gossip_peers *t, const struct gossip_peers_cfg *cfg,
                                    struct gossip_author *author, const char *dir,
                                    gossip_swim_send_fn *send, void *ctx, uint64_t now);
void gossip_swim_free(struct gossip_swim *s);
/* A ping or an ack m (p, n as it arrived) from a member in the table: acked, relayed,
 * or passed back to the member that asked for it. */
void gossip_swim_probe(struct gossip_swim *s, const struct gossip_msg *m, const uint8_t *p, size_t n,
                       uint64_t now);
/* A _suspect or _dead claim; 1 when it is news here (it changed the table), so that it is
 * passed on. A claim about this node is refuted. */
int gossip_swim_claim(struct gossip_swim *s, const struct gossip_msg *m, uint64_t now);
/* This node's member record at incarnation (p, n signed): what a refutation repeats. */
void gossip_swim_self_record(struct gossip_swim *s, uint64_t incarnation, const uint8_t *p, size_t n);
/* A member new to the table, p: it gets this node's record at once, so that members that
 * joined at the same time (each in the other's store too late for its join) meet now,
 * not at the next anti-entropy. With rec (p's record, n bytes, as signed), every live
 * member is sent it too: for a record that came by a sync, not by the stream (so that
 * rumor had not carried it to them). */
void gossip_swim_met(struct gossip_swim *s, const struct gossip_peer *p, const uint8_t *rec, size_t n);
/* A leave of this node's (a delete of its member record) that it did not make while
 * running: a new incarnation of its record, alive, to every member it knows and to the
 * cluster by rumor (SWIM's refutation), so that it never stays left. */
void gossip_swim_refute_leave(struct gossip_swim *s, uint64_t now);
/* This node leaves the cluster (a graceful stop): its leave (a delete of its member record)
 * signed into out, sent to every member not known to have left and to the stream (its
 * rumor); from then on no claim or leave of this node's is refuted, its record is not
 * sent to a member met, and no round's probe starts (pings are still acked). The number
 * of members told; -1 with the reason (nothing sent). */
long gossip_swim_leave(struct gossip_swim *s, struct gossip_buf *out);
/* 1 once gossip_swim_leave has left. */
int gossip_swim_left(const struct gossip_swim *s);
/* The probes' clock: retries, indirect pings, suspicions, the next round's ping, and
 * suspects dead after the suspicion timeout; 1 when the table changed. */
int gossip_swim_tick(struct gossip_swim *s, uint64_t now);
/* How long until the clock needs a tick: 1 to 1000 ms (100 at most while a member is
 * suspect or a repair is wished). */
int gossip_swim_wait(const struct gossip_swim *s, uint64_t now);
/* Repair (gossip(7), THE NODE): this node's store summary (GOSSIP_SUM_LEN bytes; NULL:
 * none yet), carried in its pings and acks to members that read it (learnt with a hello
 * ping, which older nodes ack as a plain one). */
void gossip_swim_summary(struct gossip_swim *s, const uint8_t *sum, uint64_t now);
/* A member to repair with by a push-pull sync: one whose summary differed from ours with
 * the same pair of summaries standing for two intervals, chosen within the last interval;
 * never while busy (a repair under way) nor within an interval of the last, nor with a
 * member on the pair (ours, theirs) the last repair with it was made on. 1 with its key
 * in pk (taken: the next needs the pair to stand two intervals again). Summaries, and
 * whether a member reads them, are taken from acks to this node's own pings only. */
int gossip_swim_repair(struct gossip_swim *s, int busy, uint64_t now, uint8_t pk[32]);
/* Acks to this prober's own pings so far: each proves a member that knows this node
 * answered it now (a ping proves nothing: anyone who saw one can replay it). */
uint64_t gossip_swim_acks(const struct gossip_swim *s);
/* The repair with pk that gossip_swim_repair gave is over: ok, or failed (it backs off,
 * an interval doubling to max_ms, before another with pk; neither is made again on the
 * same pair of summaries until one side changes). */
void gossip_swim_repair_done(struct gossip_swim *s, const uint8_t pk[32], int ok, uint64_t max_ms,
                             uint64_t now);
/* The summary fixed (NULL: none, so pings and acks are as an older node's): later ones
 * are ignored. For tests (GOSSIP_SUMMARY, gossip-peers(1)): a control, or a liar. */
void gossip_swim_pin_summary(struct gossip_swim *s, const uint8_t *sum, uint64_t now);

/* ---- observe.c: the peer table, kept from the message stream and the clock ----------- */

/* Force-leave (gossip(7), MEMBERSHIP): an event under this name whose value is the
 * member's key (32 bytes) and the incarnation it failed at (8 bytes, big-endian). A node
 * marks the member left when its table holds it dead or suspect at that incarnation or a
 * lower one; an alive member is never forced out. */
#define GOSSIP_KEY_FORCE_LEAVE "_force-leave"

struct gossip_observer;
/* An observer keeping table t (as loaded) for DIR: judging members by phi accrual on
 * their heartbeats, or by swim's probes. Every member gets a grace period again: arrival
 * times from before say nothing now. NULL: no memory. */
struct gossip_observer *gossip_observer_new(struct gossip_peers *t, const struct gossip_peers_cfg *cfg,
                                            const char *dir, struct gossip_swim *swim, uint64_t now);
void gossip_observer_free(struct gossip_observer *o);
/* Where member records new to the table go when they did not come in on the stream (a
 * join, a sync, gossip-merge serve put them in the store): to fn, once each, so that
 * they are passed on as rumor like the stream's. */
typedef void gossip_observe_news_fn(void *ctx, const uint8_t *p, size_t n);
void gossip_observer_on_news(struct gossip_observer *o, gossip_observe_news_fn *fn, void *ctx);
/* One message from the stream; 1 when the table changed. *pass_on says whether it goes on
 * in the copy of the stream: a probe never does; a claim, or a member record or its
 * delete, only when it was news (a member record already found in the store was passed
 * on then). A probe or a claim from a signer not in the table has its member record
 * looked up in the store first. With a prober, a delete of this node's own record signed
 * after the observer started (a stale or replayed leave) is refuted, never obeyed. */
int gossip_observe_msg(struct gossip_observer *o, const uint8_t *p, size_t n, uint64_t now,
                       int *pass_on);
/* The clock: the prober's, or phi's verdicts and the suspicion timeout; reputation
 * recovering; reaping after reap_ms; partitions suspected and healed. 1 when the table
 * changed. */
int gossip_observe_tick(struct gossip_observer *o, uint64_t now);
/* Member records that reached DIR/store some other way (a join, a sync) since the last
 * look; 1 when the table changed. It never waits for the store's lock: held by another
 * process, the look comes again 50 ms on (0 now). */
int gossip_observe_store(struct gossip_observer *o, uint64_t now);
/* Read DIR/trusted again (SIGHUP): a member removed from it is no longer found in the
 * store. A file that does not load leaves the old one in force (warned). The number of
 * trusted signers now, or -1 when the old file stays in force. */
long gossip_observe_reload(struct gossip_observer *o);
/* Reputation: each line DIR/rejects gained (followed into rejects.1 when it is renamed,
 * so every line once) costs its signer 10 points. */
void gossip_observe_rejects(struct gossip_observer *o);
/* Repairs started (push-pull syncs with a member whose summary differs), for DIR/stats. */
uint64_t *gossip_observe_repairs(struct gossip_observer *o);
/* Anti-entropy: every every_ms (0: none, the default), from now, a push-pull sync with a
 * member gossip_peers_pick picks, in a child process that uses the observer's store (no
 * whole read of it), one at a time, each within 10 s. In the child, fn gets each message
 * the sync stored, then (NULL, 0) once: how gossip-peers passes them on as rumor. */
void gossip_observer_anti_entropy(struct gossip_observer *o, uint64_t every_ms, gossip_observe_news_fn *fn,
                                  void *ctx, uint64_t now);
/* Anti-entropy syncs done (failed 0) or failed (1), for DIR/stats. */
uint64_t *gossip_observe_syncs(struct gossip_observer *o, int failed);
/* Serve the syncs gossip-listen -H hands over at path (gossip_hand_listen; removed when
 * the observer is freed), each in a child with the observer's store, as repairs do: its
 * fd (for the reader's wake_fd), or -1. */
int gossip_observer_serve(struct gossip_observer *o, const char *path);
/* Take the syncs handed over since, and reap the serves that ended: at every turn. */
void gossip_observe_hand(struct gossip_observer *o);
/* An fd (for the reader's wake_fd) that turns readable when a sync is handed over or the
 * state directory changes (inotify: the store written, a line in DIR/rejects), or -1 when
 * there is no such watch. */
int gossip_observe_fd(struct gossip_observer *o);
/* At every turn (after a wake or a message): the store looked at when due, as
 * gossip_observe_store does: 50 ms after the last write of a burst the watch saw (300 ms
 * after its first at most; the pipeline's copy of a message comes first), and otherwise
 * every 100 ms at most (a stat when unchanged). 1 when the table changed. */
int gossip_observe_look(struct gossip_observer *o, uint64_t now);
/* How long the caller may sleep before the next gossip_observe_tick (ms): 100 while
 * something is under way (a sync, repair, fetch, serve or join; the announcement; an
 * aggregation; phi's verdicts without a prober; no directory watch), else until the next
 * anti-entropy round or summary, a second at most; sooner when a look is due. */
int gossip_observe_wait(const struct gossip_observer *o, uint64_t now);
/* Handed syncs served (failed 0) or failed (1), for DIR/stats. */
uint64_t *gossip_observe_serves(struct gossip_observer *o, int failed);
/* The start of a node (gossip-peers observe --announce, --join), with the store the
 * observer keeps open, so that neither reads the whole store again (announce_path and
 * seeds are kept, not copied). The announcement: once announce_path exists (at once, or
 * when gossip-node moves it there, its port bound), its messages (this start's member
 * record, gossip-peers announce's) are stored as gossip-merge would store them (checked
 * against trusted, events logged, counted in DIR/stats/merge.others), what is new is sent
 * to every live member of the table at once (as gossip-send -M), and the file is removed
 * (gossip-node waits for that), refused or not: a message refused is the merger's line, a
 * file that is not CBOR one line; one that is not a regular file, or too large, is one line
 * and stays. Then the join through seeds: every interval, until a
 * sync with one of them succeeds or a live member is known some other way, a push-pull
 * sync with each in turn, in a child with the observer's store; an attempt's lines are
 * logged when they differ from the last attempt's. Once joined, the announcement goes to
 * every member the sync brought or the table knows (gossip-peers join's eager tell). */
void gossip_observer_start(struct gossip_observer *o, const char *announce_path, char **seeds, int n, uint64_t now);
/* A graceful stop's request (gossip-node): once path is there (NULL: never) as a regular
 * file, with the prober, and the announcement done, gossip_observe_leave_due says so. The
 * caller ends a join under way (gossip_observe_end_join), signs and sends the leave
 * (gossip_swim_leave), then
 * gossip_observe_left removes path (what gossip-node waits for) and stores the leave (p,
 * n), which may wait for the store's lock, GOSSIP_LEAVE_STORE_S seconds at most (the
 * caller holds the signals that would cut the wait short). A leave of this node's that
 * comes back is then taken, not refuted. */
#define GOSSIP_LEAVE_STORE_S 5
void gossip_observer_leave_on(struct gossip_observer *o, const char *path);
int gossip_observe_leave_due(const struct gossip_observer *o);
/* Whether a request could be taken now, were path there: a stop that finds it cannot need
 * not wait for one. */
int gossip_observe_leave_possible(const struct gossip_observer *o);
/* Before a leave: a join under way ends (its child killed and reaped, so that it tells
 * no member of this node after the leave; no attempt follows). */
void gossip_observe_end_join(struct gossip_observer *o);
void gossip_observe_left(struct gossip_observer *o, const uint8_t *p, size_t n);
/* A join's push-pull sync with seed through mg, within 10 s (the seed learns of this node,
 * this node of everyone the seed knows); a seed busy with other syncs from this address
 * (members starting together) is asked again a few times within a second or two. 0, or
 * -1 with the reason. */
int gossip_join_sync(struct gossip_merger *mg, const char *seed);
/* The line for a seed that did not take a join, saying what to do (refused, by whom) or
 * that it did not answer. */
void gossip_join_failed(const char *seed, const char *err);

/* ---- sim.c: the simulator's draws (gossip-sim) --------------------------------------
 * Used by gossip-sim and its tests only, above everything else: a fast, seeded generator
 * so that a simulated run repeats exactly, the member choices gossip_peers_pick makes
 * (uniform among live members, never self) at a cost that allows a million members, and
 * a hook that makes libsodium's randombytes, and so the library's own choices, repeat
 * under the same seed. Never for keys or nonces: libsodium makes those. */

/* xoshiro256** (Blackman and Vigna), seeded by splitmix64. */
struct gossip_rng {
	uint64_t s[4];
};
/* The generator for (seed, stream): each run of a simulation is a stream of one seed. */
void gossip_rng_seed(struct gossip_rng *r, uint64_t seed, uint64_t stream);

/* Inline: the simulator draws tens of millions a second. */
static inline uint64_t gossip_rng_next(struct gossip_rng *r)
{
	uint64_t *s = r->s, x = s[1] * 5, t = s[1] << 17;
	uint64_t out = ((x << 7) | (x >> 57)) * 9;
	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = (s[3] << 45) | (s[3] >> 19);
	return out;
}
/* Uniform in [0, n), n >= 1, unbiased (Lemire's multiply and reject). */
static inline uint32_t gossip_rng_below(struct gossip_rng *r, uint32_t n)
{
	uint64_t m = (gossip_rng_next(r) >> 32) * (uint64_t)n;
	if ((uint32_t)m < n) {
		uint32_t floor = (uint32_t)(0u - n) % n;
		while ((uint32_t)m < floor)
			m = (gossip_rng_next(r) >> 32) * (uint64_t)n;
	}
	return (uint32_t)(m >> 32);
}
/* Uniform in [0, 1). */
static inline double gossip_rng_unit(struct gossip_rng *r)
{
	return (double)(gossip_rng_next(r) >> 11) * 0x1.0p-53;
}
/* 1 with probability p. */
static inline int gossip_rng_chance(struct gossip_rng *r, double p)
{
	return gossip_rng_unit(r) < p;
}
/* Exponentially distributed with this mean. */
double gossip_rng_exp(struct gossip_rng *r, double mean);
/* A member other than self among n (0 to n-1), uniformly: gossip_peers_pick's choice of
 * one when all n are live. */
static inline uint32_t gossip_sim_other(struct gossip_rng *r, uint32_t n, uint32_t self)
{
	uint32_t j = gossip_rng_below(r, n - 1);
	return j + (j >= self);
}
/* k distinct members other than self among n, uniformly (Floyd's sampling): as
 * gossip_peers_pick chooses k among n live members. The number chosen: min(k, n-1). */
uint32_t gossip_sim_pick(struct gossip_rng *r, uint32_t n, uint32_t self, uint32_t k,
                         uint32_t *out);
/* From now on libsodium's randombytes draws from *r (which the caller may reseed): call
 * before gossip_init, in a program that makes no keys (the simulator). */
int gossip_sim_randombytes(struct gossip_rng *r);

/* ---- stats.c: a program's counters, for gossip-node status ---------------------------- */

/* A long-running program counts in memory (its own uint64_t variables: an increment on
 * the hot path, nothing more) and registers each counter by name. Only when DIR/stats
 * exists (gossip-node makes it at each start) are counters written. The first process of a
 * program to open its stats owns DIR/stats/PROGRAM (a lock held for its life) and
 * rewrites it (temp file and rename) with "name value" lines, at most once a second when
 * a counter changed (gossip_stats_tick) and when it closes, adding what the file held
 * when it started (an owner before it, since the node started). Any other process of the
 * same program (a sync, a one-off merge) adds its counts to DIR/stats/PROGRAM.others when
 * it closes. gossip-node status sums every file. */
enum { GOSSIP_STATS_MAX = 24 };
struct gossip_stats {
	char dirpath[4096], program[32];
	int n, owner, based, lock;
	const char *name[GOSSIP_STATS_MAX];
	uint64_t *v[GOSSIP_STATS_MAX];
	uint64_t base[GOSSIP_STATS_MAX], sum, last;
};
void gossip_stats_open(struct gossip_stats *s, const char *dir, const char *program);
/* Open as a process beside the owner, whether or not one runs yet: its counts go to
 * DIR/stats/PROGRAM.others (a node's observe, whose merges must not take the pipeline's
 * merge's file when they come first). */
void gossip_stats_beside(struct gossip_stats *s, const char *dir, const char *program);
/* Register counter under name (a static string: it is kept, not copied). */
void gossip_stats_add(struct gossip_stats *s, const char *name, uint64_t *counter);
void gossip_stats_tick(struct gossip_stats *s, uint64_t now);
void gossip_stats_close(struct gossip_stats *s);

/* ---- order.c: ordered delivery (gossip-order): FIFO, causal, total ------------------------
 * Above everything else: it uses the store, the author and trust. An ordered event is an
 * ordinary event (type 3) whose value is a byte string holding the deterministic CBOR map
 * {1: seq, 2: lamport, 3: [[origin, seq]...], 4: payload} (gossip(7), ORDERED DELIVERY):
 * seq counts the origin's ordered events from 1 with no hole, lamport is its Lamport clock,
 * the dependencies name, per other origin, the highest seq this node's store held when it
 * sent (sorted by origin, once each). A heartbeat is an ordered event named _order with an
 * empty payload: it moves a member's clock on for total order, and is never shown. */
#define GOSSIP_KEY_ORDER_HB "_order"
enum { GOSSIP_ORDER_DEPS_MAX = 1024, GOSSIP_ORDER_PAYLOAD_MAX = 16384 };
/* The largest seq and Lamport clock an ordered event may carry: no counter of an honest
 * node comes near it, and what follows it (seq + 1, a clock one more) cannot wrap. */
#define GOSSIP_ORDER_NUM_MAX (UINT64_C(1) << 62)
struct gossip_odep {
	uint8_t origin[32];
	uint64_t seq;
};
struct gossip_oev {
	uint64_t seq, lamport;
	struct gossip_odep *deps;  /* decoding allocates them: gossip_oev_free */
	size_t ndeps;
	const uint8_t *payload;  /* decoding: into the bytes given */
	size_t paylen;
};
int gossip_order_encode(struct gossip_buf *b, const struct gossip_oev *e);
/* Only the exact deterministic form is taken; -1 with the reason otherwise. */
int gossip_order_decode(const uint8_t *p, size_t n, struct gossip_oev *e);
void gossip_oev_free(struct gossip_oev *e);
/* 1 and e when m is an ordered event; 0 when m is no event with a byte string; -1 when
 * its value is not an ordered event. */
int gossip_order_of(const struct gossip_msg *m, struct gossip_oev *e);
/* Sign the next ordered event of DIR's node, named name, onto out. Under DIR/order.lock:
 * the dependencies and the clock from DIR/store (read-only; what trusted signers wrote),
 * the seq from DIR/order.state, which holds the new message before this returns (so no seq
 * is ever used twice, even across a crash). The message signed before, when DIR/store does
 * not hold it, goes onto out first (*resent 1): a seq that never left is sent again. */
int gossip_order_sign(const char *dir, const char *name, const uint8_t *payload, size_t paylen,
                      struct gossip_buf *out, int *resent);

enum { GOSSIP_ORDER_FIFO = 1, GOSSIP_ORDER_CAUSAL, GOSSIP_ORDER_TOTAL };
const char *gossip_order_mode_name(int mode);
int gossip_order_mode_parse(const char *s);  /* -1 when not one */
/* One ordered event held back or delivered (copied: it owns name, payload, deps). */
struct gossip_omsg {
	uint8_t origin[32];
	uint64_t seq, lamport, version, time, arrived;
	char *name;
	size_t namelen;
	uint8_t *payload;
	size_t paylen;
	struct gossip_odep *deps;
	size_t ndeps;
	int heartbeat;
};
void gossip_omsg_free(struct gossip_omsg *m);
struct gossip_oorigin {
	uint8_t pk[32];
	uint64_t next;  /* the next seq to deliver */
	uint64_t contig;  /* every seq up to this one received (delivered or held) */
	uint64_t heard;  /* the Lamport clock of contig's message */
};
/* The buffers of one delivery order, with no clock of their own and no files: messages in
 * (gossip_orderer_add), deliveries out (gossip_orderer_next), a time given by the caller. */
struct gossip_orderer {
	int mode;
	struct gossip_oorigin *origins;
	size_t norigins, ocap;
	struct gossip_omsg *held;
	size_t nheld, hcap;
	size_t *hidx;  /* held by (origin, seq): open addressing, held index + 1 (0 empty) */
	size_t hidxcap;  /* a power of two, at least twice nheld */
	uint8_t hkey[16];  /* the index's SipHash key, random: no one picks colliding seqs */
	uint64_t held_time;  /* no held message was signed before this (ms; a gap's expiry) */
	uint64_t looked;  /* now, at the last look for an expired gap that found none (+1; 0: none) */
	uint8_t (*members)[32];  /* total order waits on these (self included) */
	size_t nmembers;
	int has_members;  /* else on every origin heard of */
	uint64_t pos_lamport;  /* total: the last delivered (lamport, origin) */
	uint8_t pos_origin[32];
	int has_pos;
	uint64_t expire_ms;  /* a gap whose next message is older than this is skipped */
};
void gossip_orderer_init(struct gossip_orderer *o, int mode);
void gossip_orderer_free(struct gossip_orderer *o);
/* Origin pk's next seq to deliver is at least next (a saved state, a fresh start). */
int gossip_orderer_start(struct gossip_orderer *o, const uint8_t pk[32], uint64_t next);
/* The live members total order waits on (replacing those before). */
int gossip_orderer_members(struct gossip_orderer *o, const uint8_t (*pks)[32], size_t n);
enum { GOSSIP_ORDER_HELD = 0, GOSSIP_ORDER_DUP = 1, GOSSIP_ORDER_LATE = 2 };
/* Take m (decoded; e its ordered event) arriving now: HELD, DUP (delivered or held
 * already, or a seq or clock past GOSSIP_ORDER_NUM_MAX), LATE (total: the order has
 * passed it), or -1 (no memory). */
int gossip_orderer_add(struct gossip_orderer *o, const struct gossip_msg *m, const struct gossip_oev *e,
                       uint64_t now);
/* 1 and the next message in order (the caller frees it); 2 when a gap older than
 * expire_ms was skipped (*skipped messages of out->origin); 3 (causal) when a message
 * older than that no longer waits on a dependency that never came (*skipped messages of
 * out->origin); 0 when nothing can go now. */
int gossip_orderer_next(struct gossip_orderer *o, uint64_t now, struct gossip_omsg *out, uint64_t *skipped);
/* How long the oldest held message has waited (0: none held). */
uint64_t gossip_orderer_oldest(const struct gossip_orderer *o, uint64_t now);
/* Total: whether a held message waits for member pk's clock (pk should send a heartbeat). */
int gossip_orderer_waits_on(const struct gossip_orderer *o, const uint8_t pk[32]);
/* The delivery state in a file ("next ORIGIN SEQ" and "pos LAMPORT ORIGIN" lines). Load:
 * 1 loaded, 0 no file, -1 error. */
int gossip_orderer_save(const struct gossip_orderer *o, const char *path);
int gossip_orderer_load(struct gossip_orderer *o, const char *path);

#endif
