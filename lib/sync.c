/* sync.c: anti-entropy: two stores compare Merkle roots, then find what differs with
 * invertible Bloom lookup tables of their ids (store.h), ids keyed by the hour's salt so
 * that each store keeps its table up to date as it changes (store_tab_keep), tables whose
 * size grows with the difference, and send each other only what the other lacks, inside
 * a session (session.c) that is authenticated and encrypted between trusted identities,
 * over any byte stream. gossip(7) documents the protocol (version 4).
 *
 * Every sync is bounded, whoever the peer: one deadline for the whole session at both
 * ends (not per read, so a trickle cannot stretch it); the server sends only the tables
 * an honest client asks for (each part's sizes in the order the client's rule gives; the
 * sixteen parts once the whole was sent at the largest; a sixteenth's ids, once, after
 * its largest table), and messages only for ids it
 * holds, each once, no more than its tables could name, so a want cannot amplify; the
 * client takes only the tables it asked for, and no more messages than it wanted. */
#include "session.h"
#include "store.h"

#include <errno.h>
#include <sodium.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>


struct conn {
	struct session ss;
	int fd;
	pid_t pid;
	struct gossip_sync_stats *s;
};

/* ---- the session's stream ---- */

static int send_out(struct conn *c)
{
	int r = session_flush(&c->ss);
	c->s->sent_bytes = c->ss.sent;
	return r;
}

static int recv_item(struct conn *c, const uint8_t **p, size_t *n)
{
	int r = session_next(&c->ss, p, n);
	c->s->recv_bytes = c->ss.wire.bytes;
	/* On an error the session's message already starts with "peer". */
	return r == 1 ? 0 : -1;
}

/* Refuse what the peer did: our error, and its "peer says". */
static int refuse(struct conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int refuse(struct conn *c, const char *fmt, ...)
{
	char why[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(why, sizeof why, fmt, ap);
	va_end(ap);
	session_refuse(&c->ss, why);
	gossip_seterr("%s", why);
	return -1;
}

/* What the peer sent was not the protocol, and it has not been told: told now, so that an
 * honest peer's line says why at its end too, not a broken pipe. */
static void tell_peer(struct conn *c)
{
	const char *e = gossip_error();
	static const char pfx[] = "peer: not the sync protocol";
	if (c->ss.refused || strncmp(e, pfx, sizeof pfx - 1) != 0)
		return;
	char why[600];
	snprintf(why, sizeof why, "refused: %s", e + 6);
	session_refuse(&c->ss, why);
}

/* A command peer: sh -c CMD with its stdin and stdout on one end of a socket pair. */
static int spawn(const char *cmd, pid_t *pid)
{
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
		gossip_seterr("socketpair: %s", strerror(errno));
		return -1;
	}
	if ((*pid = fork()) < 0) {
		gossip_seterr("fork: %s", strerror(errno));
		close(sv[0]);
		close(sv[1]);
		return -1;
	}
	if (*pid == 0) {
		dup2(sv[1], 0);
		dup2(sv[1], 1);
		gossip_exec_signals(0);
		execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
		_exit(127);
	}
	close(sv[1]);
	return sv[0];
}

static int conn_open(struct conn *c, const char *peer, uint64_t deadline)
{
	struct gossip_addr a;
	uint64_t now = gossip_mono_ms();
	int left = now < deadline ? (int)(deadline - now) : 0;
	c->pid = 0;
	if (strncmp(peer, "tcp://", 6) == 0 || strncmp(peer, "unix:", 5) == 0)
		c->fd = gossip_addr_parse(&a, peer) < 0 ? -1 : gossip_connect(&a, left);
	else
		c->fd = spawn(peer, &c->pid);
	return c->fd < 0 ? -1 : 0;
}

/* Wait for a command peer to exit, until the time given; then stop it (TERM, and KILL
 * half a second later): no command holds a sync past its limit. */
static void reap(pid_t pid, uint64_t until)
{
	int sig = SIGTERM;
	long step = 100000;
	while (waitpid(pid, NULL, WNOHANG) == 0) {
		if (gossip_mono_ms() >= until) {
			kill(pid, sig);
			if (sig == SIGKILL) {
				waitpid(pid, NULL, 0);
				return;
			}
			sig = SIGKILL;
			until = gossip_mono_ms() + 500;
		}
		nanosleep(&(struct timespec){0, step}, NULL);
		if (step < 10000000)
			step *= 2;
	}
}

static void conn_close(struct conn *c, int failed)
{
	c->s->sent_bytes = c->ss.sent;
	c->s->recv_bytes = c->ss.wire.bytes;
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	if (c->pid > 0) {
		/* After a failure the command gets a second to finish (a refused server
		 * exits at once), never past the deadline. */
		uint64_t grace = gossip_mono_ms() + 1000;
		reap(c->pid, failed && grace < c->ss.deadline ? grace : c->ss.deadline);
	}
	session_free(&c->ss);
}

/* This node's identity and cluster keys, from the store's state directory. */
static int auth_load(struct gossip_merger *mg, struct gossip_identity *id,
                     struct gossip_keyring *ring)
{
	const char *dir = gossip_store_dir(mg->st);
	char why[512];
	if (gossip_identity_load(dir, id, 0) < 0) {
		snprintf(why, sizeof why, "%s", gossip_error());
		gossip_seterr("a sync needs this node's key: %s", why);
		return -1;
	}
	if (gossip_keyring_load(ring, dir) < 0) {
		snprintf(why, sizeof why, "%s", gossip_error());
		gossip_seterr("keyring: %s", why);
		gossip_identity_free(id);
		return -1;
	}
	return 0;
}

/* ---- protocol items ---- */

static int put_op(struct gossip_buf *b, const char *op, unsigned nmore)
{
	return gossip_cbor_head(b, GOSSIP_MT_ARRAY, 1 + nmore) < 0 ||
	       gossip_cbor_str(b, GOSSIP_MT_TSTR, op, strlen(op)) < 0 ? -1 : 0;
}

int gossip_sync_starts(const uint8_t *p, size_t n)
{
	struct gossip_buf b = {0};
	int r = 0;
	/* What starts the client's first handshake message, in every version so far. */
	if (put_op(&b, "gossip-sync", 4) == 0) {
		size_t k = n < b.len ? n : b.len;
		r = memcmp(p, b.p, k) != 0 ? 0 : k == b.len ? 1 : -1;
	}
	gossip_buf_free(&b);
	return r;
}

/* Read an item [op, ...]: the op (a text string) in *op, the number of elements after it
 * in *nmore, the cursor after it. 0; -1 an error (an ["error", text] from the peer
 * becomes ours); -2 not an [op, ...] (the caller names what it wanted). */
static int recv_op(struct conn *c, struct gossip_cur *cu, struct gossip_ev *op, uint64_t *nmore)
{
	struct gossip_ev ev;
	const uint8_t *p;
	size_t n;
	if (recv_item(c, &p, &n) < 0)
		return -1;
	*cu = (struct gossip_cur){p, n, 0};
	if (session_peer_error(p, n))
		return -1;
	if (gossip_cur_expect(cu, GOSSIP_EV_ARRAY, &ev, "sync item") < 0 || ev.u < 1 ||
	    gossip_cur_expect(cu, GOSSIP_EV_TSTR, op, "sync item") < 0)
		return -2;
	*nmore = ev.u - 1;
	return 0;
}

static int is_op(const struct gossip_ev *op, const char *name)
{
	return op->len == strlen(name) && memcmp(op->data, name, op->len) == 0;
}

/* Read an item, check it is [op, ...] with nmore more elements, leave the cursor after
 * the op. An ["error", text] from the peer becomes our error. */
static int get_op(struct conn *c, struct gossip_cur *cu, const char *op, unsigned nmore)
{
	struct gossip_ev ev;
	uint64_t more;
	int r = recv_op(c, cu, &ev, &more);
	if (r == -1)
		return -1;
	if (r == 0 && is_op(&ev, op) && more == nmore)
		return 0;
	gossip_seterr("peer: not the sync protocol (wanted \"%s\")", op);
	return -1;
}

static int get_bstr(struct gossip_cur *cu, size_t want, const uint8_t **p)
{
	struct gossip_ev ev;
	if (gossip_cur_expect(cu, GOSSIP_EV_BSTR, &ev, "sync item") < 0 || ev.len != want) {
		gossip_seterr("peer: not the sync protocol (a byte string of %zu)", want);
		return -1;
	}
	*p = ev.data;
	return 0;
}

static int get_uint(struct gossip_cur *cu, uint64_t *v, uint64_t max)
{
	struct gossip_ev ev;
	if (gossip_cur_expect(cu, GOSSIP_EV_UINT, &ev, "sync item") < 0 || ev.u > max) {
		gossip_seterr("peer: not the sync protocol (a number)");
		return -1;
	}
	*v = ev.u;
	return 0;
}

static int get_array(struct gossip_cur *cu, uint64_t *n, uint64_t max)
{
	struct gossip_ev ev;
	if (gossip_cur_expect(cu, GOSSIP_EV_ARRAY, &ev, "sync item") < 0 || ev.u > max) {
		gossip_seterr("peer: not the sync protocol (an array)");
		return -1;
	}
	*n = ev.u;
	return 0;
}

/* Send messages: ["msgs", n] and then n messages, straight from the store file. */
static int send_entries(struct conn *c, struct gossip_store *st, struct gossip_entry **v, size_t n)
{
	uint8_t *buf = malloc(GOSSIP_MSG_MAX);
	int r = -1;
	if (!buf || put_op(&c->ss.out, "msgs", 1) < 0 || gossip_cbor_head(&c->ss.out, GOSSIP_MT_UINT, n) < 0)
		goto out;
	for (size_t i = 0; i < n; i++) {
		if (store_read(st, v[i], buf) < 0 || gossip_buf_put(&c->ss.out, buf, v[i]->len) < 0)
			goto out;
		if (c->ss.out.len >= 1 << 20 && send_out(c) < 0)
			goto out;
	}
	c->s->sent_msgs += n;
	r = send_out(c);
out:
	free(buf);
	return r;
}

/* After ["msgs", n]: n messages into the merger, storing as they come in batches, so
 * that a peer that fails mid-way leaves every whole message it sent. */
static int recv_msgs_n(struct conn *c, struct gossip_merger *mg, const char *src, uint64_t n,
                       uint64_t max)
{
	uint64_t off;
	const uint8_t *p;
	size_t len;
	if (n > max)
		return refuse(c, "refused: the peer sends %llu messages, more than the %llu asked for",
		              (unsigned long long)n, (unsigned long long)max);
	for (uint64_t i = 0; i < n; i++) {
		int r = session_next(&c->ss, &p, &len);
		c->s->recv_bytes = c->ss.wire.bytes;
		off = c->ss.off;
		if (r != 1) {
			gossip_merge_flush(mg);
			if (r == 0)
				gossip_seterr("peer: closed the connection after %llu of %llu messages",
				              (unsigned long long)i, (unsigned long long)n);
			return -1;
		}
		c->s->recv_msgs++;
		if (gossip_merge_item(mg, p, len, src, off) < 0)
			return -1;
		if (!session_ready(&c->ss) && gossip_merge_flush(mg) < 0)
			return -1;
	}
	return gossip_merge_flush(mg);
}

static int recv_msgs(struct conn *c, struct gossip_merger *mg, const char *src, uint64_t max)
{
	struct gossip_cur cu;
	uint64_t n;
	if (get_op(c, &cu, "msgs", 1) < 0 || get_uint(&cu, &n, UINT32_MAX) < 0)
		return -1;
	return recv_msgs_n(c, mg, src, n, max);
}

/* Read an item [op, ...] whose op is one of three: which (0, 1 or 2), the cursor after
 * the op and the number of elements after it. */
static int get_op3(struct conn *c, struct gossip_cur *cu, const char *a, const char *b,
                   const char *x, uint64_t *nmore)
{
	struct gossip_ev ev;
	int r = recv_op(c, cu, &ev, nmore);
	if (r == -1)
		return -1;
	if (r == 0 && (is_op(&ev, a) || is_op(&ev, b) || is_op(&ev, x)))
		return is_op(&ev, a) ? 0 : is_op(&ev, b) ? 1 : 2;
	gossip_seterr("peer: not the sync protocol (wanted \"%s\", \"%s\" or \"%s\")", a, b, x);
	return -1;
}

/* A part of the slot space: the slots whose first bits bits are prefix (bits 0: all). A
 * sync reconciles the whole; when its largest table does not decode, it is split 16
 * ways, once. */
enum { SYNC_SPLIT = 4, SYNC_BITS_MAX = 4, SYNC_ROUNDS = 5, SYNC_SPLIT_K = 12 };
enum { SYNC_PARTS = 1 + 16 };  /* every part there can be */

/* The most ids a client wants in one sync: its ["want", [ids]] is one item, and an item
 * holds at most 2^20 data items (gossip_any_limits) and 16 MB; 250,000 ids of 9 bytes
 * each stay well under both, and the server's scan of a want that comes in frames (which
 * grows with its square) stays near 0.1 s. The rest of what the client lacks is wanted
 * by the next sync (each sync brings at least this many). GOSSIP_SYNC_WANT_MAX lowers it
 * (for tests). */
enum { SYNC_WANT_MAX = 250000 };
/* The ids' salt changes every hour (gossip(7), The exchange). */
#define SYNC_EPOCH_MS 3600000ULL
/* The most ids in one ["ids", ...] item of a listing (512 KB). */
enum { SYNC_LIST_MAX = 65536 };

static size_t want_max(void)
{
	const char *e = getenv("GOSSIP_SYNC_WANT_MAX");
	char *end;
	unsigned long long v;
	if (!e || !*e)
		return SYNC_WANT_MAX;
	v = strtoull(e, &end, 10);
	return *end || v == 0 || v > SYNC_WANT_MAX ? SYNC_WANT_MAX : (size_t)v;
}

static size_t part_index(unsigned bits, unsigned prefix)
{
	return bits == 0 ? 0 : 1 + prefix;
}

/* The size of a part's next table after one of size k, its rounds-th, did not decode:
 * four times larger, and the largest by the last round. */
static unsigned next_k(unsigned k, unsigned rounds)
{
	return k + 2 > STORE_IBLT_K || rounds + 1 >= SYNC_ROUNDS ? STORE_IBLT_K : k + 2;
}

/* The table size for a count difference: at least 1.5 cells a difference, in 3 parts of
 * a power of two, from 2^STORE_IBLT_KMIN to 2^STORE_IBLT_K. */
static unsigned table_k(uint64_t a, uint64_t b)
{
	uint64_t diff = a > b ? a - b : b - a, need = (3 * diff / 2 + 2) / 3;
	unsigned k = STORE_IBLT_KMIN;
	while (k < STORE_IBLT_K && ((uint64_t)1 << k) < need)
		k++;
	return k;
}

/* A sync's ids (gossip(7), The exchange): those of the hour the client names, as of
 * the digest's time: the store's kept table when it keeps that hour's (a node's observe,
 * brought up to date by the digest), else made from the index (O(n)); sorted for the
 * tables of parts and their lists, made when first asked for. */
struct syncids {
	struct gossip_store *st;
	uint8_t salt[32];
	uint64_t now;  /* the digest's */
	struct store_ids ids;
	int have;
};

/* The salt of the ids of hour epoch: BLAKE2b-256("gossip-sync 4 id salt" || epoch, 8
 * bytes big-endian). */
static void sync_salt(uint64_t epoch, uint8_t salt[32])
{
	static const char label[] = "gossip-sync 4 id salt";
	uint8_t in[sizeof label - 1 + 8];
	memcpy(in, label, sizeof label - 1);
	store_put64(in + sizeof label - 1, epoch);
	crypto_generichash(salt, 32, in, sizeof in, NULL, 0);
}

static void sync_ids_init(struct syncids *x, struct gossip_store *st, uint64_t epoch)
{
	sync_salt(epoch, x->salt);
	x->st = st;
}

/* An hour's length: SYNC_EPOCH_MS, or GOSSIP_SYNC_HOUR_MS (for tests). */
static uint64_t hour_ms(void)
{
	const char *e = getenv("GOSSIP_SYNC_HOUR_MS");
	char *end;
	unsigned long long v = e && *e ? strtoull(e, &end, 10) : 0;
	if (!v || *end || v > SYNC_EPOCH_MS)
		v = SYNC_EPOCH_MS;
	return v;
}

/* The hour of the ids, now. */
static uint64_t sync_hour(void)
{
	return gossip_now_ms() / hour_ms();
}

/* The hour's table, and within a twelfth of an hour (five minutes, the clock skew a
 * message may have: GOSSIP_MAX_SKEW_MS) of its start or end the last hour's or the
 * next's too: a peer whose clock is that far off, and this node in the hour's first
 * minutes, find a whole table kept rather than make one, O(n). */
int gossip_sync_keep(struct gossip_store *st)
{
	uint64_t len = hour_ms(), now = gossip_now_ms(), lead = len / 12, h = now / len;
	uint64_t next = (now + lead) / len, last = now >= lead ? (now - lead) / len : h;
	uint8_t salt[32], also[32];
	sync_salt(h, salt);
	if (next != h || last != h)
		sync_salt(next != h ? next : last, also);
	return store_tab_keep(st, salt, next != h || last != h ? also : NULL);
}

static struct store_ids *sync_ids(struct syncids *x)
{
	if (!x->have && store_ids_make(&x->ids, x->st, x->salt, x->now) < 0)
		return NULL;
	x->have = 1;
	return &x->ids;
}

/* After a lock (the index moved): the sorted ids are made again when asked for. */
static void sync_ids_moved(struct syncids *x)
{
	store_ids_free(&x->ids);
	x->have = 0;
}

/* The table of part (bits, prefix) at size k: the whole folded from the kept table, or
 * from one made for the session; a part's from the sorted ids. */
static int sync_table(struct syncids *x, unsigned bits, unsigned prefix, unsigned k, struct store_cell *out)
{
	const struct store_cell *t = bits ? NULL : store_tab_kept(x->st, x->salt);
	struct store_ids *ids = t ? NULL : sync_ids(x);
	if (!t && !ids)
		return -1;
	if (!t && bits == 0) {  /* none kept for this hour: made once, as a kept one would be */
		if (!ids->whole && (!(ids->whole = calloc(STORE_IBLT_CELLS, sizeof *ids->whole)) ||
		                    store_table(ids, 0, 0, STORE_IBLT_K, ids->whole) < 0)) {
			gossip_seterr("out of memory");
			return -1;
		}
		t = ids->whole;
	}
	if (t) {
		store_iblt_fold(t, STORE_IBLT_K, out, k);
		return 0;
	}
	return store_table(ids, bits, prefix, k, out);
}

/* ["table", bits, prefix, k, cells] for part (bits, prefix) at size k. */
static int send_table(struct conn *c, struct syncids *ids, unsigned bits, unsigned prefix,
                      unsigned k)
{
	struct store_cell *t = malloc(((size_t)3 << k) * sizeof *t);
	int r = -1;
	if (!t) {
		gossip_seterr("out of memory");
		return -1;
	}
	if (sync_table(ids, bits, prefix, k, t) == 0 && put_op(&c->ss.out, "table", 4) == 0 &&
	    gossip_cbor_head(&c->ss.out, GOSSIP_MT_UINT, bits) == 0 &&
	    gossip_cbor_head(&c->ss.out, GOSSIP_MT_UINT, prefix) == 0 &&
	    gossip_cbor_head(&c->ss.out, GOSSIP_MT_UINT, k) == 0 && store_iblt_put(&c->ss.out, t, k) == 0)
		r = 0;
	free(t);
	return r;
}

/* ---- the client ---- */

static int by_id(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

struct part {
	unsigned bits, prefix, k, rounds;
	int list;  /* given up at the largest size: its ids listed instead */
};

/* ids: a growing list of 8-byte ids. */
struct idlist {
	uint64_t *v;
	size_t n, cap;
};

static int idlist_add(struct idlist *l, uint64_t id)
{
	if (l->n == l->cap) {
		size_t cap = l->cap ? 2 * l->cap : 64;
		uint64_t *v = realloc(l->v, cap * sizeof *v);
		if (!v) {
			gossip_seterr("out of memory");
			return -1;
		}
		l->v = v;
		l->cap = cap;
	}
	l->v[l->n++] = id;
	return 0;
}

/* Receive the table of part p and reconcile it with ours: 1 decoded (ids added), 0 it
 * does not (the next request put in *next, or parts to split into), -1 an error. */
static int client_part(struct conn *c, struct syncids *mine_ids, struct part *p, struct idlist *push, struct idlist *want,
                       const uint8_t *item, size_t nitem)
{
	struct gossip_cur cu;
	uint64_t bits, prefix, k;
	const uint8_t *cells;
	struct store_cell *theirs = NULL, *mine = NULL;
	uint64_t *ids = NULL;
	int8_t *sign = NULL;
	size_t nids;
	int r = -1;
	if (item) {  /* read already: the first answer to the summary */
		struct gossip_ev ev;
		cu = (struct gossip_cur){item, nitem, 0};
		if (session_peer_error(item, nitem))
			return -1;
		if (gossip_cur_expect(&cu, GOSSIP_EV_ARRAY, &ev, "sync item") < 0 || ev.u != 5 ||
		    gossip_cur_expect(&cu, GOSSIP_EV_TSTR, &ev, "sync item") < 0 || ev.len != 5 ||
		    memcmp(ev.data, "table", 5) != 0) {
			gossip_seterr("peer: not the sync protocol (wanted \"table\")");
			return -1;
		}
	} else if (get_op(c, &cu, "table", 4) < 0)
		return -1;
	if (get_uint(&cu, &bits, SYNC_BITS_MAX) < 0 ||
	    get_uint(&cu, &prefix, 255) < 0 || get_uint(&cu, &k, STORE_IBLT_K) < 0)
		return -1;
	/* The first table's size is the server's to choose; after that, what was asked. */
	if (bits != p->bits || prefix != p->prefix || k < STORE_IBLT_KMIN || (p->k && k != p->k))
		return refuse(c, "refused: the server sends a table that was not asked for");
	p->k = (unsigned)k;
	size_t ncells = (size_t)3 << k;
	if (get_bstr(&cu, ncells * STORE_CELL_BYTES, &cells) < 0)
		return -1;
	if (!(theirs = malloc(ncells * sizeof *theirs)) || !(mine = malloc(ncells * sizeof *mine)) ||
	    !(ids = malloc(ncells * sizeof *ids)) || !(sign = malloc(ncells))) {
		gossip_seterr("out of memory");
		goto out;
	}
	store_iblt_get(cells, p->k, theirs);
	if (sync_table(mine_ids, p->bits, p->prefix, p->k, mine) < 0)
		goto out;
	store_iblt_sub(mine, theirs, p->k);
	int dr = store_iblt_decode(mine, p->k, ids, sign, ncells, &nids);
	if (dr == -2) {
		gossip_seterr("out of memory");
		goto out;
	}
	if (dr == -3) {
		refuse(c, "refused: the server's table %u/%u peels into an id twice (a table that lies)",
		       p->bits, p->prefix);
		goto out;
	}
	r = 0;
	if (dr == 0) {
		/* Every id of a part starts with its prefix: one that does not is a lie. */
		for (size_t i = 0; i < nids; i++)
			if (p->bits && ids[i] >> (64 - p->bits) != p->prefix) {
				refuse(c, "refused: the server's table %u/%u names an id outside its part "
				       "(a table that lies)", p->bits, p->prefix);
				r = -1;
				goto out;
			}
		for (size_t i = 0; i < nids; i++)
			if (idlist_add(sign[i] > 0 ? push : want, ids[i]) < 0) {
				r = -1;
				goto out;
			}
		r = 1;
	}
out:
	free(theirs);
	free(mine);
	free(ids);
	free(sign);
	return r;
}

/* Receive the listing of part p (["ids", bits, prefix, ids] items of at most
 * SYNC_LIST_MAX ids, sorted, ending with an empty one) and compare it with our ids of the
 * part: what only we hold to push, what only the server holds to want. Past what one sync
 * wants, ids are only counted (in *left): a listing that never ends costs time, bounded
 * by the deadline, not memory. 1 done, -1 an error. */
static int client_list(struct conn *c, struct syncids *x, struct part *p, struct idlist *push,
                       struct idlist *want, uint64_t *left)
{
	struct store_ids *mine = sync_ids(x);
	if (!mine)
		return -1;
	size_t from, nmine = store_part(mine, p->bits, p->prefix, &from), i = 0, wmax = want_max();
	uint64_t last = 0;
	int any = 0;
	for (;;) {
		struct gossip_cur cu;
		struct gossip_ev ev;
		uint64_t bits, prefix;
		if (get_op(c, &cu, "ids", 3) < 0 || get_uint(&cu, &bits, SYNC_BITS_MAX) < 0 ||
		    get_uint(&cu, &prefix, 255) < 0)
			return -1;
		if (bits != p->bits || prefix != p->prefix)
			return refuse(c, "refused: the server lists ids that were not asked for");
		if (gossip_cur_expect(&cu, GOSSIP_EV_BSTR, &ev, "sync item") < 0 || ev.len % 8 ||
		    ev.len / 8 > SYNC_LIST_MAX)
			return refuse(c, "refused: not the sync protocol (a list of ids)");
		if (ev.len == 0)
			break;
		for (size_t j = 0; j < ev.len / 8; j++) {
			uint64_t id = 0;
			for (int b = 0; b < 8; b++)
				id = id << 8 | ev.data[8 * j + b];
			if ((any && id <= last) || id >> (64 - p->bits) != p->prefix)
				return refuse(c, "refused: the server's list of part %u/%u is not its ids in "
				              "order (a list that lies)", p->bits, p->prefix);
			any = 1;
			last = id;
			while (i < nmine && mine->v[from + i].id < id)
				if (idlist_add(push, mine->v[from + i++].id) < 0)
					return -1;
			if (i < nmine && mine->v[from + i].id == id)
				i++;
			else if (want->n >= wmax)
				++*left;
			else if (idlist_add(want, id) < 0)
				return -1;
		}
	}
	while (i < nmine)
		if (idlist_add(push, mine->v[from + i++].id) < 0)
			return -1;
	return 1;
}

/* The store's summary under its lock (the first lock of a lazy open reads the store). */
static int make_digest(struct gossip_store *st, struct store_digest *d, int *have)
{
	if (gossip_store_lock(st) < 0)
		return -1;
	int r = store_digest_make(d, st);
	gossip_store_unlock(st);
	*have = r == 0;
	return r;
}

int gossip_sync_client(struct gossip_merger *mg, const char *peer, int mode, int timeout_ms,
                       struct gossip_sync_stats *s)
{
	uint64_t deadline = gossip_mono_ms() + (uint64_t)timeout_ms;
	struct conn c = {.fd = -1, .s = s};
	struct gossip_identity id = {0};
	struct gossip_keyring ring = {0};
	struct store_digest d = {0};
	struct syncids ids = {0};
	struct gossip_entry **pushv = NULL;
	struct idlist push = {0}, want = {0};
	struct part *todo = NULL, *next = NULL;
	size_t ntodo = 0, npushv = 0;
	int r = -1, have_digest = 0;
	static const char *const modes[] = {NULL, "push", "pull", "push-pull"};

	memset(s, 0, sizeof *s);
	session_init(&c.ss, -1, -1, timeout_ms);
	if (auth_load(mg, &id, &ring) < 0)
		goto out;
	/* This hour's ids: a store that keeps their table (a node's) has it up to date. */
	uint64_t epoch = sync_hour();
	sync_ids_init(&ids, mg->st, epoch);
	/* The kept summary when it matches the store: equal stores then end the sync before
	 * this end reads its store. */
	uint8_t kroot[16];
	uint64_t kcount;
	int kept = gossip_store_summary_kept(mg->st, kroot, &kcount) == 0;
	if (!kept && make_digest(mg->st, &d, &have_digest) < 0) {
		char why[512];
		snprintf(why, sizeof why, "%s", gossip_error());
		gossip_seterr("this node's %s", why);  /* not the peer's */
		goto out;
	}
	if (!(todo = calloc(SYNC_PARTS, sizeof *todo)) || !(next = calloc(SYNC_PARTS, sizeof *next))) {
		gossip_seterr("out of memory");
		goto out;
	}
	if (conn_open(&c, peer, deadline) < 0)
		goto out;
	session_init(&c.ss, c.fd, c.fd, timeout_ms);
	c.ss.deadline = deadline;  /* counted from the start, connecting included */
	if (session_client(&c.ss, &(struct session_auth){&id, &ring, mg->trust}) < 0)
		goto out;

	/* 1. Our summary and hour; an equal store ends it here. */
	if (put_op(&c.ss.out, "summary", 4) < 0 ||
	    gossip_cbor_str(&c.ss.out, GOSSIP_MT_TSTR, modes[mode], strlen(modes[mode])) < 0 ||
	    gossip_cbor_str(&c.ss.out, GOSSIP_MT_BSTR, kept ? kroot : d.root, 16) < 0 ||
	    gossip_cbor_head(&c.ss.out, GOSSIP_MT_UINT, kept ? kcount : d.count) < 0 ||
	    gossip_cbor_head(&c.ss.out, GOSSIP_MT_UINT, epoch) < 0 || send_out(&c) < 0)
		goto out;
	const uint8_t *p;
	size_t n;
	if (recv_item(&c, &p, &n) < 0)
		goto out;
	if (n == 7 && memcmp(p, "\x81\x65" "equal", 7) == 0) {
		s->equal = 1;
		s->kept = kept;
		r = 0;
		goto out;
	}
	if (kept && make_digest(mg->st, &d, &have_digest) < 0) {
		session_refuse(&c.ss, "refused: the client cannot sync (see its error)");
		goto out;
	}
	ids.now = d.now;
	/* 2. Tables: the server's of the whole first, at the size it chose; then, for each
	 * part that does not decode, the next size up (all asked at once, answered in
	 * order), or past the largest its 16 parts. */
	todo[ntodo++] = (struct part){0, 0, 0, 1, 0};  /* its size: the server's */
	while (ntodo) {
		size_t nnext = 0;
		for (size_t i = 0; i < ntodo; i++) {
			struct part *pt = &todo[i];
			int pr = pt->list ? client_list(&c, &ids, pt, &push, &want, &s->want_left)
			                  : client_part(&c, &ids, pt, &push, &want, p, n);
			p = NULL;
			if (pr < 0)
				goto out;
			if (pr == 1)
				continue;
			if (pt->k < STORE_IBLT_K) {
				next[nnext++] = (struct part){pt->bits, pt->prefix, next_k(pt->k, pt->rounds),
				                              pt->rounds + 1, 0};
			} else if (pt->bits < SYNC_BITS_MAX) {
				for (unsigned j = 0; j < 16; j++)
					next[nnext++] = (struct part){pt->bits + SYNC_SPLIT, pt->prefix << SYNC_SPLIT | j,
					                              SYNC_SPLIT_K, 1, 0};
			} else  /* the largest size of a sixteenth: its ids listed */
				next[nnext++] = (struct part){pt->bits, pt->prefix, 0, 0, 1};
		}
		if (nnext > SYNC_PARTS) {  /* never: at most 16 parts split at once per level */
			gossip_seterr("sync: too many parts");
			goto out;
		}
		for (size_t i = 0; i < nnext; i++)
			if (put_op(&c.ss.out, next[i].list ? "ids" : "table", next[i].list ? 2 : 3) < 0 ||
			    gossip_cbor_head(&c.ss.out, GOSSIP_MT_UINT, next[i].bits) < 0 ||
			    gossip_cbor_head(&c.ss.out, GOSSIP_MT_UINT, next[i].prefix) < 0 ||
			    (!next[i].list && gossip_cbor_head(&c.ss.out, GOSSIP_MT_UINT, next[i].k) < 0))
				goto out;
		if (nnext && send_out(&c) < 0)
			goto out;
		struct part *t = todo;
		todo = next;
		next = t;
		ntodo = nnext;
	}
	/* 3. Push what only we hold (each must be ours: a table that names an entry we do not
	 * hold lied), want what only the server holds. */
	if (mode & GOSSIP_PUSH) {
		if (push.n && !(pushv = malloc(push.n * sizeof *pushv))) {
			gossip_seterr("out of memory");
			goto out;
		}
		/* One look through each bucket named (sorted, the ids of a bucket come together). */
		if (push.n)
			qsort(push.v, push.n, sizeof *push.v, by_id);
		if (store_find_ids(mg->st, ids.salt, ids.now, push.v, push.n, pushv) < 0)
			goto out;
		for (size_t i = 0; i < push.n; i++)
			if (!pushv[i]) {
				refuse(&c, "refused: the server's table names an entry this store does not hold");
				goto out;
			}
		npushv = push.n;
	}
	if (!(mode & GOSSIP_PULL))
		want.n = 0;
	if (want.n > want_max()) {  /* the rest next time: the ids are in no useful order */
		s->want_left += want.n - want_max();
		want.n = want_max();
	}
	if (send_entries(&c, mg->st, pushv, npushv) < 0)
		goto out;
	if (put_op(&c.ss.out, "want", 1) < 0 || gossip_cbor_head(&c.ss.out, GOSSIP_MT_ARRAY, want.n) < 0)
		goto out;
	for (size_t i = 0; i < want.n; i++) {
		uint8_t b[8];
		for (int j = 0; j < 8; j++)
			b[j] = (uint8_t)(want.v[i] >> (56 - 8 * j));
		if (gossip_cbor_str(&c.ss.out, GOSSIP_MT_BSTR, b, 8) < 0)
			goto out;
	}
	if (send_out(&c) < 0)
		goto out;
	/* 4. What we asked for (no more), then the end. */
	if (recv_msgs(&c, mg, "peer", want.n) < 0 || get_op(&c, &(struct gossip_cur){0}, "done", 0) < 0)
		goto out;
	r = 0;
out:
	if (r < 0)
		tell_peer(&c);
	conn_close(&c, r < 0);
	if (r == 0 && s->equal)  /* after a sync that sent anything the record is stale */
		gossip_store_summary_save(mg->st);
	gossip_identity_free(&id);
	gossip_keyring_free(&ring);
	free(pushv);
	free(push.v);
	free(want.v);
	free(todo);
	free(next);
	sync_ids_moved(&ids);
	if (have_digest)
		store_digest_free(&d);
	return r;
}

/* ---- the server ---- */

/* Answer ["ids", bits, prefix]: the part's ids, sorted, in items of at most
 * SYNC_LIST_MAX, then an empty one. */
static int send_list(struct conn *c, struct store_ids *ids, unsigned bits, unsigned prefix)
{
	size_t from, n = store_part(ids, bits, prefix, &from), at = 0;
	for (;;) {  /* the last item is empty */
		size_t m = n - at < SYNC_LIST_MAX ? n - at : SYNC_LIST_MAX;
		if (put_op(&c->ss.out, "ids", 3) < 0 || gossip_cbor_head(&c->ss.out, GOSSIP_MT_UINT, bits) < 0 ||
		    gossip_cbor_head(&c->ss.out, GOSSIP_MT_UINT, prefix) < 0 ||
		    gossip_cbor_head(&c->ss.out, GOSSIP_MT_BSTR, 8 * m) < 0)
			return -1;
		for (size_t i = 0; i < m; i++) {
			uint8_t b[8];
			for (int j = 0; j < 8; j++)
				b[j] = (uint8_t)(ids->v[from + at + i].id >> (56 - 8 * j));
			if (gossip_buf_put(&c->ss.out, b, 8) < 0)
				return -1;
		}
		at += m;
		if (c->ss.out.len >= 1 << 20 && send_out(c) < 0)
			return -1;
		if (m == 0)
			return 0;
	}
}

int gossip_sync_serve(struct gossip_merger *mg, int rfd, int wfd, int timeout_ms,
                      struct gossip_sync_stats *s)
{
	struct conn c = {.fd = -1, .s = s};
	struct gossip_identity id = {0};
	struct gossip_keyring ring = {0};
	struct store_digest d = {0};
	struct syncids ids = {0};
	struct gossip_cur cu;
	struct gossip_ev ev;
	struct gossip_entry **v = NULL;
	uint64_t *wanted = NULL;
	const uint8_t *root;
	uint64_t count, cells_sent = 0;
	/* Per part: the largest size sent (0: none), and how many tables. */
	uint8_t sentk[SYNC_PARTS] = {0}, rounds[SYNC_PARTS] = {0};
	uint8_t listed[SYNC_PARTS] = {0};
	uint64_t ids_sent = 0;  /* ids listed */
	int r = -1, have_digest = 0;

	memset(s, 0, sizeof *s);
	session_init(&c.ss, rfd, wfd, timeout_ms);
	if (auth_load(mg, &id, &ring) < 0) {
		session_refuse(&c.ss, "refused: the server cannot sync (see its log)");
		goto out;
	}
	if (session_server(&c.ss, &(struct session_auth){&id, &ring, mg->trust}) < 0)
		goto out;
	uint64_t epoch;
	if (get_op(&c, &cu, "summary", 4) < 0)
		goto out;
	if (gossip_cur_expect(&cu, GOSSIP_EV_TSTR, &ev, "mode") < 0) {
		gossip_seterr("peer: not the sync protocol (a mode)");
		goto out;
	}
	if (get_bstr(&cu, 16, &root) < 0 || get_uint(&cu, &count, UINT64_MAX) < 0 ||
	    get_uint(&cu, &epoch, UINT64_MAX) < 0)
		goto out;
	/* Equal to the kept summary: equal stores, and this end never reads its store. */
	uint8_t kroot[16];
	uint64_t kcount;
	if (gossip_store_summary_kept(mg->st, kroot, &kcount) == 0 && memcmp(root, kroot, 16) == 0 &&
	    count == kcount) {
		s->equal = s->kept = 1;
		r = put_op(&c.ss.out, "equal", 0) < 0 ? -1 : send_out(&c);
		goto out;
	}
	/* The ids of the client's hour (any: the table a store keeps when it keeps that
	 * hour's, else one made from the index for this session). */
	sync_ids_init(&ids, mg->st, epoch);
	if (make_digest(mg->st, &d, &have_digest) < 0) {
		/* This end's store (opened here, lazily): its path and lines are for our log. */
		session_refuse(&c.ss, "refused: the server cannot sync (see its log)");
		goto out;
	}
	ids.now = d.now;
	if (memcmp(root, d.root, 16) == 0 && count == d.count) {
		s->equal = 1;
		r = put_op(&c.ss.out, "equal", 0) < 0 ? -1 : send_out(&c);
		goto out;
	}
	/* Our table of the whole, sized by the count difference; then each table asked for:
	 * a part at most SYNC_ROUNDS times, each larger than the last; a part's 16 parts only
	 * once it was sent at the largest size. */
	unsigned k0 = table_k(count, d.count);
	sentk[0] = (uint8_t)k0;
	rounds[0] = 1;
	cells_sent = (uint64_t)3 << k0;
	if (send_table(&c, &ids, 0, 0, k0) < 0 || send_out(&c) < 0)
		goto out;
	uint64_t nmore;
	int which;
	while ((which = get_op3(&c, &cu, "table", "msgs", "ids", &nmore)) != 1) {
		uint64_t bits, prefix, k;
		if (which < 0)
			goto out;
		if (which == 2) {
			/* A sixteenth sent at the largest size (and not decoded there): its ids,
			 * once. */
			if (nmore != 2 || get_uint(&cu, &bits, SYNC_BITS_MAX) < 0 ||
			    get_uint(&cu, &prefix, 255) < 0 || bits != SYNC_SPLIT || prefix >= 16) {
				refuse(&c, "refused: an ids request that is not the sync protocol");
				goto out;
			}
			size_t pi = part_index((unsigned)bits, (unsigned)prefix), from;
			if (sentk[pi] != STORE_IBLT_K || listed[pi]) {
				refuse(&c, "refused: the client asks for the ids of part %u/%u again, or "
				       "before its largest table", (unsigned)bits, (unsigned)prefix);
				goto out;
			}
			listed[pi] = 1;
			struct store_ids *all = sync_ids(&ids);
			if (!all)
				goto fail;
			ids_sent += store_part(all, (unsigned)bits, (unsigned)prefix, &from);
			if (send_list(&c, all, (unsigned)bits, (unsigned)prefix) < 0)
				goto fail;
			if (session_ready(&c.ss) == 0 && send_out(&c) < 0)
				goto out;
			continue;
		}
		if (nmore != 3 || get_uint(&cu, &bits, SYNC_BITS_MAX) < 0 ||
		    get_uint(&cu, &prefix, 255) < 0 || get_uint(&cu, &k, STORE_IBLT_K) < 0 ||
		    (bits != 0 && bits != SYNC_SPLIT) || prefix >= (1u << bits)) {
			refuse(&c, "refused: a table request that is not the sync protocol");
			goto out;
		}
		size_t pi = part_index((unsigned)bits, (unsigned)prefix);
		size_t parent = bits == 0 ? 0 : part_index((unsigned)bits - 4, (unsigned)prefix >> 4);
		/* Exactly the size the client's rule asks next (so that the tables of a session
		 * are bounded as gossip(7) says): a sixteenth first at SYNC_SPLIT_K. */
		unsigned want_k = sentk[pi] ? next_k(sentk[pi], rounds[pi]) : SYNC_SPLIT_K;
		if (k != want_k || sentk[pi] == STORE_IBLT_K || (bits && sentk[parent] != STORE_IBLT_K)) {
			refuse(&c, "refused: the client asks for table %u/%u of size %u again, or out of turn",
			       (unsigned)bits, (unsigned)prefix, (unsigned)k);
			goto out;
		}
		sentk[pi] = (uint8_t)k;
		rounds[pi]++;
		cells_sent += (uint64_t)3 << k;
		if (send_table(&c, &ids, (unsigned)bits, (unsigned)prefix, (unsigned)k) < 0)
			goto fail;
		if (c.ss.out.len >= 1 << 20 && send_out(&c) < 0)
			goto out;
		if (session_ready(&c.ss) == 0 && send_out(&c) < 0)
			goto out;
	}
	/* What the client pushes, then what it wants: no more ids than the cells we sent
	 * could decode into, each once; ids of entries we no longer hold (replaced by what
	 * was pushed) are skipped. */
	uint64_t npush;
	if (nmore != 1 || get_uint(&cu, &npush, UINT32_MAX) < 0) {
		if (nmore != 1)
			gossip_seterr("peer: not the sync protocol (\"msgs\")");
		goto out;
	}
	if (recv_msgs_n(&c, mg, "peer", npush, UINT32_MAX) < 0)
		goto out;
	/* What was pushed moved the index (and may have replaced what was wanted): the wanted
	 * are found in it as the merge left it, and the sorted ids are no longer its. */
	if (npush)
		sync_ids_moved(&ids);
	uint64_t nw;
	if (get_op(&c, &cu, "want", 1) < 0 || get_array(&cu, &nw, UINT32_MAX) < 0)
		goto out;
	if (nw > cells_sent + ids_sent) {
		refuse(&c, "refused: the client wants %llu messages, more than the %llu cells sent could name",
		       (unsigned long long)nw, (unsigned long long)(cells_sent + ids_sent));
		goto out;
	}
	if (!(wanted = malloc((nw ? nw : 1) * sizeof *wanted)) || !(v = malloc((nw ? nw : 1) * sizeof *v)))
		goto fail;
	for (uint64_t i = 0; i < nw; i++) {
		const uint8_t *b;
		if (get_bstr(&cu, 8, &b) < 0)
			goto out;
		wanted[i] = 0;
		for (int j = 0; j < 8; j++)
			wanted[i] = wanted[i] << 8 | b[j];
	}
	qsort(wanted, nw, sizeof *wanted, by_id);
	for (uint64_t i = 1; i < nw; i++)
		if (wanted[i] == wanted[i - 1]) {
			refuse(&c, "refused: the client wants one message twice");
			goto out;
		}
	/* One look through each bucket named (the ids sorted, a bucket's together): a want
	 * costs a bucket once, however many of its ids it names. */
	size_t nv = 0;
	if (store_find_ids(mg->st, ids.salt, ids.now, wanted, nw, v) < 0)
		goto fail;
	for (uint64_t i = 0; i < nw; i++)
		if (v[i])
			v[nv++] = v[i];
	if (send_entries(&c, mg->st, v, nv) < 0 || put_op(&c.ss.out, "done", 0) < 0 ||
	    send_out(&c) < 0)
		goto out;
	r = 0;
	goto out;
fail:
	session_refuse(&c.ss, gossip_error());
out:
	if (r < 0)
		tell_peer(&c);
	if (r == 0 && s->equal)  /* after a sync that sent anything the record is stale */
		gossip_store_summary_save(mg->st);
	sync_ids_moved(&ids);
	if (have_digest)
		store_digest_free(&d);
	free(wanted);
	free(v);
	s->sent_bytes = c.ss.sent;
	s->recv_bytes = c.ss.wire.bytes;
	session_free(&c.ss);
	gossip_identity_free(&id);
	gossip_keyring_free(&ring);
	return r;
}
