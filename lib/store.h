/* store.h: the store's insides, private to the library: store.c keeps them, merge.c
 * appends through them and sync.c reads the summary. Programs use gossip.h only. */
#ifndef GOSSIP_STORE_H
#define GOSSIP_STORE_H

#include "gossip.h"

struct gossip_origin_wm {
	uint8_t pk[32];
	uint64_t watermark;  /* versions at or below it are stale unless already stored */
};

/* A key's register (gossip(7), STATE AND MERGE RULES): every set and del of one key (not
 * a reserved _ key) by any origin, ordered by (version, origin key). Its rows are found
 * through slots; the greatest visible one supersedes the rows below it. top is the
 * greatest row indexed, visible or not (only to count waste); floor, once a del that was
 * the greatest row expired and was collected, that del: rows at or below it are
 * superseded too. */
struct store_reg {
	uint8_t kid[16];  /* BLAKE2b-128 of "r" and the key's bytes */
	uint64_t top_version;
	uint32_t top_origin;  /* index into origins; UINT32_MAX: no row indexed */
	uint32_t top_len;
	uint64_t floor_version, floor_time;  /* floor_time 0: no floor */
	uint8_t floor_origin[32];
	/* The slots holding its rows, one per origin that wrote it (store.c's reg_slot): in
	 * slot1 while there is room for one (slotcap 0 or 1), in slots once there are more. */
	uint8_t (*slots)[16];
	uint8_t slot1[16];
	uint32_t nslots, slotcap;
	/* Its greatest visible row as last found, while the store's epoch is top_epoch. */
	const struct gossip_entry *top_cache;
	uint64_t top_epoch;
};

enum { STORE_ROOT_REC = 88 };  /* bytes of DIR/store.root */
/* 8 bytes big-endian, as the store's records keep numbers. */
void store_put64(uint8_t *p, uint64_t v);
uint64_t store_get64(const uint8_t *p);

struct gossip_store {
	char dir[4096];
	int fd, lockfd, locked;
	uint64_t ino, end;  /* the store file we indexed, and how far */
	struct gossip_entry *tab;  /* open addressing by slot */
	size_t cap, n;
	struct gossip_origin_wm *origins;
	uint32_t *otab;  /* open addressing into origins */
	size_t norigins, ocap;
	struct store_reg *regs;
	uint32_t *rtab;  /* open addressing into regs */
	size_t nregs, rcap;
	uint64_t live_bytes, dead_bytes;
	struct gossip_store_opts opts;
	gossip_visible_fn *visible;  /* NULL: every origin's messages are visible */
	void *visible_ctx;
	/* The hashes of messages whose signatures were verified (DIR/store.sum, a cache):
	 * open addressing; how much of the file is read, and which file it was. */
	uint8_t (*sums)[16];
	size_t nsums, sumcap;
	uint64_t sum_off, sum_ino;
	struct gossip_buf sum_new;  /* verified here, to be appended to DIR/store.sum */
	/* Damage found in the store file since it was indexed afresh. */
	struct gossip_store_damage *dmg;
	size_t ndmg, dmgcap;
	uint64_t compact_retry;  /* after a failed automatic compaction: waste to wait for */
	struct store_sum *sum;  /* the Merkle summary once made (store_digest_make), or NULL */
	/* Moves on whenever the index or the visibility rule changes: what was found in the
	 * index under another epoch is found again. */
	uint64_t epoch;
	/* The kept summary, DIR/store.root (gossip_store_keep_summary): made when the
	 * program named its visibility rule (rule) and this lock read the whole file, whose
	 * key before the read is key (key_ok, until the unlock). */
	int keep_root, root_pending, key_ok;
	int root_due;  /* a summary to record at close: appends made too many changes since */
	uint8_t rule[16], key[16];
	uint8_t root_rec[STORE_ROOT_REC];  /* the record made, until saved */
	/* DIR/store.keys: a writer's changes to it since its index held kc_from bytes
	 * (UINT64_MAX: not known, so the next write makes it whole from the file). kc_damage:
	 * a whole read found damage, which the file may point into. */
	struct store_keys *keys;
	struct store_keys_change *kc;
	size_t nkc, kccap;
	uint64_t kc_from, kc_seq, kc_at;
	size_t kc_held;  /* of a whole read's changes, how many the index was found to hold */
	int kc_damage, lock_ok;
	int appended;  /* this lock appended to the store */
	/* Custody: this writer's index is the file's, read whole under the lock or kept
	 * since under locks while no one changed the file outside them: at each lock, the
	 * file's key is the one this writer left (ck), or the one the last write in custody
	 * of its chain left (DIR/store.lock holds that key and the chain's id). A chain is
	 * the writers whose whole reads found the file as one write in custody left it (or
	 * at the same key, gen): all of their indexes are the file's, so each may write and
	 * the others keep custody. */
	int custody;
	/* Custody this writer held and lost to a change no writer recorded (one outside the
	 * lock, or a writer's that stopped half way): its next lock reads the file whole
	 * again (its index may hide a change in place), at once the first time. Out of
	 * custody again soon after such a read (a program that keeps writing the file, or
	 * writers that cannot record their writes), or after a whole read during which the
	 * file changed, it reads again only from retry_at on, retry_gap ms after the last
	 * read (1 s, doubled up to 5 minutes), so that no writer reads the store whole at
	 * every lock. reread_at: the last read again (0: none yet); rereads: how many. A
	 * forked child (detached) or a closing handle never reads again: it carries on out
	 * of custody, and its parent reads. */
	int lost, closing;
	uint64_t retry_at, retry_gap, reread_at, rereads;
	int lock_warned;  /* DIR/store.lock is no plain file: said once */
	/* Room is taken before each batch (store_room) until room_until (ms), a minute after
	 * a batch found none (a quota, which the file system's free space does not show);
	 * failed: the batches whose write failed after they were indexed (each cut the file
	 * back and read it whole). */
	uint64_t room_until, failed;
	/* A torn tail this writer cut in its read (1; -1 when a key could not be taken): a
	 * whole read that cut one keeps custody if the file did not change but for it. */
	int cut;
	uint8_t cutk[16], cutk2[16];  /* the file's key before the cut, and just after it */
	uint8_t gen[16];
	/* The sum of the index's entries (store.c's isum_add): what the chain record holds of
	 * its writer's index, for the others to compare theirs with. */
	uint8_t isum[16];
	/* The origins of the current entries, as of the last summary made or kept record
	 * read (gossip_store_origins). */
	uint64_t norigins_cur;
	int forks;  /* gossip_store_forks_writers: a whole read makes the index anew at once */
	/* gossip_store_detach: a forked child, whose pages its parent shares until either
	 * writes one; it keeps no caches in the index (a write would copy the page). */
	int detached;
	int trim_due;  /* a whole read, by such a parent: freed heap returned at the unlock */
	uint8_t ck[16];  /* the file's key as this writer last knew it (custody) */
	/* Only the rows of opts.key were indexed, through DIR/store.keys. */
	int partial;
};

/* The store file's key: a BLAKE2b hash of what stat says of DIR/store and DIR/watermarks
 * (device, inode, size, modification and change times to the nanosecond). */
int store_file_key(const struct gossip_store *st, uint8_t key[16]);
/* Record in DIR/store.lock that the file is at st->ck as st's chain (st->gen) left it. */
void store_chain_put(struct gossip_store *st);

/* DIR/store.keys (storekeys.c): each key's current rows, for a query of one key. */
struct store_keys;
struct store_keys_meta {
	uint64_t ino, end;  /* the store file indexed, and how far */
	uint8_t tail[16];  /* BLAKE2b-128 of its (up to) 64 bytes before end */
	uint8_t boot[16];  /* the system's boot it was written in (store_keys_boot) */
};
/* This boot's id: a hash of /proc/sys/kernel/random/boot_id, zeros when unknown. */
void store_keys_boot(uint8_t id[16]);
/* A row that became current at offset now in place of old (UINT64_MAX: none), or (wm) a
 * watermark record at now; seq keeps the order they were made in. */
struct store_keys_change {
	uint8_t ikey[16];
	uint64_t old, now, seq;
	int wm;
};
/* NULL (gossip_error says why) when there is none (read-only) or it cannot be used. */
struct store_keys *store_keys_open(const char *dir, int readonly);
void store_keys_close(struct store_keys *k);
/* In a forked child, of its parent's handle: the data file's descriptor and map are
 * closed, LMDB's handle (and its other descriptor, until the child exits) left as it is:
 * closing it would free, and so copy, every page buffer the parent holds. */
void store_keys_forget(struct store_keys *k);
/* Whether LMDB faulted on k's file (its pages are damaged): not used again. */
int store_keys_faulted(const struct store_keys *k);
/* Whether DIR/store.keys is still the file k opened. */
int store_keys_same_file(const struct store_keys *k, const char *dir);
/* 0, 1 when there is no meta record yet, -1 on error. */
int store_keys_meta_get(struct store_keys *k, struct store_keys_meta *m);
/* The offsets of ikey's rows (or, wm, of the watermark records) in file order, at most
 * max of them (more is an error); *offs is the caller's to free. */
int store_keys_lookup(struct store_keys *k, int wm, const uint8_t ikey[16], size_t max,
                      uint64_t **offs, size_t *n);
/* Apply the changes made at or after from (they are sorted in place) in one transaction,
 * or (drop 1) write the changes whole into a new file renamed over DIR/store.keys (k is
 * then that file), or (drop 2) the same unless it holds them exactly already with m
 * unchanged (then 1: nothing written); and record m. */
int store_keys_write(struct store_keys *k, const char *dir, int drop, struct store_keys_change *c,
                     size_t n, uint64_t from, const struct store_keys_meta *m, int unchanged);

/* What the store needs of a message to classify and index it, taken from its one
 * decode, so that nothing is decoded again on the way to the disk. */
struct store_item {
	uint8_t slot[16], origin[32];
	uint8_t hash[16];  /* BLAKE2b-128 of the message's bytes */
	uint8_t kid[16];  /* the register's id (when reg) */
	uint8_t ikey[16];  /* the key's id, as kid, for any keyed message (not an event) */
	uint64_t version, time;
	uint32_t len;
	uint8_t type;
	uint8_t reg;  /* a set or del of a key that is a cluster-wide register */
};
/* m as gossip_msg_decode made it (its bytes are hashed). */
void store_item_of(struct store_item *it, const struct gossip_msg *m, size_t len);
enum gossip_class store_classify_item(const struct gossip_store *st, const struct store_item *it);
/* The stored message it equivocates with (the same slot and version, other bytes), or
 * NULL. Hidden or not: equivocation is about what was signed, not about trust. */
const struct gossip_entry *store_rival(const struct gossip_store *st, const struct store_item *it);
/* Whether it would be superseded on arrival: at or below its key's floor, or below the
 * greatest row of its key. */
int store_superseded_item(const struct gossip_store *st, const struct store_item *it);
/* A replay under its origin's watermark (no older copy here). */
int store_below_watermark(const struct gossip_store *st, const struct store_item *it);
/* Under the store's lock (taken and released here): classify n messages again, as
 * another process may have stored some since, then index and append the new ones in
 * one write (bytes holds the n messages back to back; the new ones are moved to its
 * front, in order), with fdatasync when durable; then, when record and the lock may
 * (store.root: gossip_store_keep_summary), the summary is made and recorded. cls[i] says
 * what each was. On failure nothing of the batch stays in the store. */
int store_append(struct gossip_store *st, const struct store_item *it, uint8_t *bytes,
                 size_t n, int durable, int record, enum gossip_class *cls);
/* fdatasync the store file (after a store_append that was not durable). */
int store_sync(struct gossip_store *st);
/* Compact when waste outgrows what is live. A failure (no room for store.new) is one
 * warning, not an error: the store is intact, and it is tried again once waste has
 * grown by a sixteenth. */
int store_compact_if_wasteful(struct gossip_store *st);
/* Read one stored message into buf (GOSSIP_MSG_MAX bytes), checking its bytes against
 * the hash in the index: a message changed on disk since it was indexed is an error
 * (and the store is indexed afresh at the next lock, which quarantines it). */
int store_read(struct gossip_store *st, const struct gossip_entry *e, uint8_t *buf);

/* The Merkle summary: 65536 buckets by the first two bytes of the slot, each the
 * BLAKE2b-128 of its current (slot, hash) pairs in slot order (zeros when empty); 256
 * level-one hashes over 256 buckets each; the root over those and the count. Once made,
 * the store keeps it (struct store_sum): indexing a message marks the buckets whose
 * current entries it may change (its own; its key's greatest row before it), a delete or
 * event is remembered by when it expires, and only marked buckets are hashed again when
 * the summary is next asked for. A new file, a floor or another visibility rule makes it
 * again from the index. */
struct store_digest {
	uint8_t root[16];
	uint64_t count;
	uint8_t l1[256][16];
	const uint8_t (*l2)[16];  /* 65536: the store's, unchanged until the next digest */
	const uint32_t *cnt;  /* 65536: how many current entries each bucket holds */
	uint64_t now;  /* the time it was made for (what expired then) */
	uint64_t origins;  /* how many origins the current entries are of */
};
/* Under the lock. */
int store_digest_make(struct store_digest *d, struct gossip_store *st);
void store_digest_free(struct store_digest *d);
/* The current entries of bucket b (as d counted them), in slot order, without a scan of
 * the store: the index is ordered by the slot's leading bits. *v is malloc'd (or NULL
 * when there are none); they point into the index, valid until the next lock. */
int store_bucket(struct gossip_store *st, const struct store_digest *d, size_t b,
                 struct gossip_entry ***v, size_t *n);

/* Reconciliation (gossip(7), ANTI-ENTROPY): an invertible Bloom lookup table of the
 * current entries' ids, kept with the index (store_tab_keep): three parts of 2^k cells
 * each, an id in one cell of each part, so that a table folds in halves down to any
 * smaller k. An id is 8 bytes (store_id4): the slot's bucket, then a hash keyed with the
 * hour's salt (sync.c), so that ids that collide by chance or by design part within the
 * hour. */
enum {
	STORE_IBLT_K = 15,  /* the largest table: 3 x 2^15 cells */
	STORE_IBLT_KMIN = 3,  /* the smallest sent: 24 cells */
	STORE_IBLT_CELLS = 3 << STORE_IBLT_K,
	STORE_CELL_BYTES = 12  /* on the wire: count, id sum, 3-byte check sum */
};
struct store_cell {
	uint64_t id;
	uint32_t chk;
	uint8_t count;
};
/* Add (sign 1) or take away (-1) an id from a table of 3 x 2^k cells. */
void store_iblt_add(struct store_cell *t, unsigned k, uint64_t id, int sign);
/* dst (3 x 2^k cells) = src (3 x 2^ksrc, ksrc >= k) folded. */
void store_iblt_fold(const struct store_cell *src, unsigned ksrc, struct store_cell *dst, unsigned k);
/* As a CBOR byte string of 12-byte cells; p holds 3 x 2^k of them. */
int store_iblt_put(struct gossip_buf *b, const struct store_cell *t, unsigned k);
void store_iblt_get(const uint8_t *p, unsigned k, struct store_cell *t);
void store_iblt_sub(struct store_cell *a, const struct store_cell *b, unsigned k);
/* Peel a difference a - b (consumed): ids[] and sign[] (1: in a only, -1: in b only), at
 * most max of them. 0: decoded; -1: it does not decode (too small, or a lie: more than
 * max ids); -2: out of memory; -3: it peels to all zeros but into an id twice, which no
 * honest difference does (a lie). */
int store_iblt_decode(struct store_cell *t, unsigned k, uint64_t *ids, int8_t *sign, size_t max,
                      size_t *n);

/* Version 4's ids: the slot's first 16 bits (its bucket), then the first 48 bits of
 * BLAKE2b-128 keyed with salt of slot || hash. */
uint64_t store_id4(const uint8_t salt[32], const uint8_t slot[16], const uint8_t hash[16]);
/* The kept tables: the table at 3 x 2^15 cells of the current entries' version-4 ids under
 * salt (those whose ids are unique), brought up to date by each digest with the summary,
 * for the buckets that changed only; and, once salt's is whole, also's (NULL: none; the
 * next hour's, before it starts, or the last's, after it ends). The first is made whole
 * at the next digest; another salt is taken up a sixteenth of the buckets at each digest
 * (a table already whole stays in use meanwhile), so that no digest costs O(n). A table
 * not asked for goes once salt's is whole, and at a rebuild. */
int store_tab_keep(struct gossip_store *st, const uint8_t salt[32], const uint8_t also[32]);
/* As of the last digest (NULL: none kept under salt, or not whole yet). */
const struct store_cell *store_tab_kept(const struct gossip_store *st, const uint8_t salt[32]);
/* The current entries (at time now) whose ids under salt are ids[] (sorted), in out[]
 * (NULL: none, or an id two entries share): one look through each bucket named. */
int store_find_ids(struct gossip_store *st, const uint8_t salt[32], uint64_t now, const uint64_t *ids,
                   size_t n, struct gossip_entry **out);

/* The ids under salt of the current entries at time now (those no other entry shares),
 * sorted: for a table of the whole where none is kept under salt, and for the tables of
 * parts and their lists (a large difference). The entries point into the index: valid
 * until the next lock. O(entries). */
struct store_idref {
	uint64_t id;
	struct gossip_entry *e;
};
struct store_ids {
	struct store_idref *v;
	size_t n;
	struct store_cell *whole;  /* the table of all at the largest size, once made */
};
int store_ids_make(struct store_ids *s, struct gossip_store *st, const uint8_t salt[32], uint64_t now);
void store_ids_free(struct store_ids *s);
/* Of v (sorted by id), keep the ids that occur once, in order: how many. */
size_t store_ids_unique(struct store_idref *v, size_t n);
/* The ids whose first bits bits are prefix (bits 0: all): s->v[*from] on, how many. */
size_t store_part(const struct store_ids *s, unsigned bits, unsigned prefix, size_t *from);
/* The table at size k of the ids whose first bits bits are prefix (bits 0: all). */
int store_table(struct store_ids *s, unsigned bits, unsigned prefix, unsigned k,
                struct store_cell *out);

#endif
