/* store.c: the durable store (an append-only CBOR sequence of signed messages), its
 * in-memory index, appending under a file lock, compaction, and the Merkle summary. */
#include "store.h"

#include <errno.h>
#include <malloc.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/utsname.h>
#include <unistd.h>

const struct gossip_store_opts gossip_store_defaults = {86400000ULL, 3600000ULL, 0, 0, 0, NULL};

enum { CHUNK = 1 << 20, COMPACT_MIN = 1 << 20, KEYS_BULK = 1 << 12, ROOT_BULK = 1 << 12 };
/* How long a key's floor outlives the del it was made from (origin time): gossip(7). */
static const uint64_t floor_ttl_ms = 30ULL * 86400000ULL;

void gossip_slot(uint8_t slot[16], const struct gossip_msg *m)
{
	crypto_generichash_state h;
	uint8_t tag = m->type == GOSSIP_T_EVENT ? 'e' : 'k', v[8];
	crypto_generichash_init(&h, NULL, 0, 16);
	crypto_generichash_update(&h, m->origin, 32);
	crypto_generichash_update(&h, &tag, 1);
	if (m->type == GOSSIP_T_EVENT) {
		for (int i = 0; i < 8; i++)
			v[i] = (uint8_t)(m->version >> (56 - 8 * i));
		crypto_generichash_update(&h, v, 8);
	} else
		crypto_generichash_update(&h, m->key, m->keylen);
	crypto_generichash_final(&h, slot, 16);
}

/* ---- the index: open addressing on the slot, which is already a hash ---- */

static size_t slot_hash(const uint8_t *p)
{
	uint64_t h;
	memcpy(&h, p, 8);
	return (size_t)h;
}

/* Where a slot's entry starts looking in an index table of cap entries (a power of two):
 * the slot's leading bits, so that the table is ordered by them (up to probing) and a
 * Merkle bucket's entries are found in one short stretch of it (store_bucket). */
static size_t home(const uint8_t *slot, size_t cap)
{
	uint64_t h = 0;
	for (int i = 0; i < 8; i++)
		h = h << 8 | slot[i];
	return (size_t)(h >> (64 - __builtin_ctzll((unsigned long long)cap)));
}

/* Ask for huge pages (2 MB) under the large arrays of the index (the entries, the
 * registers, the hash tables): a node's observe forks a child for each sync, and both
 * the fork and the child's exit pay for each page of the parent's map, 4 KB pages
 * thirty times more than huge ones at a million messages. Only the 2 MB extents wholly
 * inside the block; a hint, which a kernel without transparent huge pages ignores. */
static void huge_pages(void *p, size_t n)
{
	enum { HUGE = 2u << 20 };
	/* Before Linux 5.8 a copy-on-write fault on a huge page copied all 2 MB: a forked
	 * child's every first write into the index would, and none is asked for there. */
	static int ok = -1;
	if (ok < 0) {
		struct utsname u;
		unsigned a = 0, b = 0;
		ok = uname(&u) == 0 && sscanf(u.release, "%u.%u", &a, &b) == 2 && (a > 5 || (a == 5 && b >= 8));
	}
	/* Nor on the heap (a block glibc carved out of it): the flag would stay on that part
	 * of the heap after the block is freed, and every small block later placed there,
	 * in this process or a forked child, would fault in and clear 2 MB. */
	if (!ok || (uintptr_t)p < (uintptr_t)sbrk(0))
		return;
	uintptr_t a = ((uintptr_t)p + HUGE - 1) & ~(uintptr_t)(HUGE - 1);
	uintptr_t b = ((uintptr_t)p + n) & ~(uintptr_t)(HUGE - 1);
	if (p && b > a)
		madvise((void *)a, b - a, MADV_HUGEPAGE);
}

/* A large array of n zeroed bytes: asked for huge pages before a byte of it is written
 * (calloc may clear memory it reuses, in 4 KB pages, before the ask). */
static void *big_zalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	huge_pages(p, n);
	if (p)
		memset(p, 0, n);
	return p;
}

/* p (of old bytes) grown to n, moved into a block asked for huge pages (realloc would
 * move its 4 KB pages as they are); p is freed, or kept on failure (NULL). */
static void *big_grow(void *p, size_t old, size_t n)
{
	void *q = malloc(n);
	if (!q)
		return NULL;
	huge_pages(q, n);
	if (old)
		memcpy(q, p, old);
	free(p);
	return q;
}

static struct gossip_entry *probe(const struct gossip_store *st, const uint8_t slot[16])
{
	size_t i = home(slot, st->cap);
	while (st->tab[i].used && memcmp(st->tab[i].slot, slot, 16) != 0)
		i = (i + 1) & (st->cap - 1);
	return &st->tab[i];
}

/* The entry of a slot in an index table of cap entries (a power of two, or 0). */
static const struct gossip_entry *tab_find(const struct gossip_entry *tab, size_t cap,
                                           const uint8_t slot[16])
{
	if (!cap)
		return NULL;
	size_t i = home(slot, cap);
	while (tab[i].used && memcmp(tab[i].slot, slot, 16) != 0)
		i = (i + 1) & (cap - 1);
	return tab[i].used ? &tab[i] : NULL;
}

/* The entry of a slot, visible or not. */
static const struct gossip_entry *find(const struct gossip_store *st, const uint8_t slot[16])
{
	return tab_find(st->tab, st->cap, slot);
}

static int visible(const struct gossip_store *st, const struct gossip_entry *e)
{
	return !st->visible || st->visible(st->visible_ctx, st->origins[e->origin].pk);
}

/* The register order: version, then origin key bytes. */
static int row_cmp(uint64_t v, const uint8_t *pk, uint64_t w, const uint8_t *qk)
{
	if (v != w)
		return v < w ? -1 : 1;
	return memcmp(pk, qk, 32);
}

static const struct gossip_entry *find(const struct gossip_store *st, const uint8_t slot[16]);

/* The i-th slot of register r (reg_add_slot). */
static const uint8_t *reg_slot(const struct store_reg *r, uint32_t i)
{
	return r->slotcap > 1 ? r->slots[i] : r->slot1;
}

/* The greatest visible row of register r (NULL: none): one look per origin that wrote
 * the key, so that revoking a signer brings back what its rows superseded. */
static const struct gossip_entry *reg_top(const struct gossip_store *st, const struct store_reg *r)
{
	/* Found once an epoch: a key written by many origins is not looked through again
	 * for each of its rows (a summary asks about every row). */
	if (r->top_epoch == st->epoch && st->epoch)
		return r->top_cache;
	const struct gossip_entry *top = NULL;
	for (uint32_t i = 0; i < r->nslots; i++) {
		const struct gossip_entry *e = find(st, reg_slot(r, i));
		if (e && visible(st, e) &&
		    (!top || row_cmp(e->version, st->origins[e->origin].pk, top->version,
		                     st->origins[top->origin].pk) > 0))
			top = e;
	}
	/* A cache (the index is unchanged), not written by a forked child for a key of one
	 * origin (a look costs it one find; a write copies a page it shares with its
	 * parent), but for a key of many: each of its rows would look through them all. */
	if (!st->detached || r->nslots > 1) {
		((struct store_reg *)r)->top_cache = top;
		((struct store_reg *)r)->top_epoch = st->epoch;
	}
	return top;
}

/* Whether row (v, pk) of register r is superseded: at or below its floor, or below its
 * greatest visible row. */
static int reg_below(const struct gossip_store *st, const struct store_reg *r, uint64_t v,
                     const uint8_t *pk)
{
	if (r->floor_time && row_cmp(v, pk, r->floor_version, r->floor_origin) <= 0)
		return 1;
	const struct gossip_entry *top = reg_top(st, r);
	return top && row_cmp(v, pk, top->version, st->origins[top->origin].pk) < 0;
}

static int superseded(const struct gossip_store *st, const struct gossip_entry *e)
{
	return e->reg != UINT32_MAX && reg_below(st, &st->regs[e->reg], e->version, st->origins[e->origin].pk);
}

/* ---- the reconciliation table (store.h; gossip(7), ANTI-ENTROPY) ---- */

/* An id's cell in each of the three parts (before reduction to the part's size) and its
 * check sum: BLAKE2b-128 of its 8 bytes, big-endian: bytes 4j to 4j+3 (little-endian)
 * for part j, bytes 12 to 14 the check. */
static void cell_hash(uint64_t id, uint32_t idx[3], uint32_t *chk)
{
	uint8_t in[8], h[16];
	for (int i = 0; i < 8; i++)
		in[i] = (uint8_t)(id >> (56 - 8 * i));
	crypto_generichash(h, 16, in, 8, NULL, 0);
	for (int j = 0; j < 3; j++)
		idx[j] = (uint32_t)h[4 * j] | (uint32_t)h[4 * j + 1] << 8 | (uint32_t)h[4 * j + 2] << 16 |
		         (uint32_t)h[4 * j + 3] << 24;
	*chk = (uint32_t)h[12] | (uint32_t)h[13] << 8 | (uint32_t)h[14] << 16;
}

void store_iblt_add(struct store_cell *t, unsigned k, uint64_t id, int sign)
{
	uint32_t idx[3], chk;
	size_t size = (size_t)1 << k;
	cell_hash(id, idx, &chk);
	for (size_t j = 0; j < 3; j++) {
		struct store_cell *c = &t[j * size + (idx[j] & (size - 1))];
		c->count = (uint8_t)(c->count + sign);
		c->id ^= id;
		c->chk ^= chk;
	}
}

void store_iblt_fold(const struct store_cell *src, unsigned ksrc, struct store_cell *dst, unsigned k)
{
	size_t from = (size_t)1 << ksrc, size = (size_t)1 << k;
	memset(dst, 0, 3 * size * sizeof *dst);
	for (size_t j = 0; j < 3; j++)
		for (size_t i = 0; i < from; i++) {
			const struct store_cell *a = &src[j * from + i];
			struct store_cell *c = &dst[j * size + (i & (size - 1))];
			c->count = (uint8_t)(c->count + a->count);
			c->id ^= a->id;
			c->chk ^= a->chk;
		}
}

int store_iblt_put(struct gossip_buf *b, const struct store_cell *t, unsigned k)
{
	size_t n = (size_t)3 << k;
	uint8_t c[STORE_CELL_BYTES];
	if (gossip_cbor_head(b, GOSSIP_MT_BSTR, n * STORE_CELL_BYTES) < 0)
		return -1;
	for (size_t i = 0; i < n; i++) {
		c[0] = t[i].count;
		for (int j = 0; j < 8; j++)
			c[1 + j] = (uint8_t)(t[i].id >> (56 - 8 * j));
		c[9] = (uint8_t)(t[i].chk >> 16);
		c[10] = (uint8_t)(t[i].chk >> 8);
		c[11] = (uint8_t)t[i].chk;
		if (gossip_buf_put(b, c, sizeof c) < 0)
			return -1;
	}
	return 0;
}

void store_iblt_get(const uint8_t *p, unsigned k, struct store_cell *t)
{
	size_t n = (size_t)3 << k;
	for (size_t i = 0; i < n; i++, p += STORE_CELL_BYTES) {
		t[i].count = p[0];
		t[i].id = 0;
		for (int j = 0; j < 8; j++)
			t[i].id = t[i].id << 8 | p[1 + j];
		t[i].chk = (uint32_t)p[9] << 16 | (uint32_t)p[10] << 8 | p[11];
	}
}

void store_iblt_sub(struct store_cell *a, const struct store_cell *b, unsigned k)
{
	size_t n = (size_t)3 << k;
	for (size_t i = 0; i < n; i++) {
		a[i].count = (uint8_t)(a[i].count - b[i].count);
		a[i].id ^= b[i].id;
		a[i].chk ^= b[i].chk;
	}
}

/* Whether cell i (of part j) holds exactly one id, once added or once taken away. */
static int pure(const struct store_cell *c, size_t j, size_t i, unsigned k)
{
	uint32_t idx[3], chk;
	if (c->count != 1 && c->count != 255)
		return 0;
	cell_hash(c->id, idx, &chk);
	return chk == c->chk && (idx[j] & (((size_t)1 << k) - 1)) == i;
}

static int by_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

int store_iblt_decode(struct store_cell *t, unsigned k, uint64_t *ids, int8_t *sign, size_t max,
                      size_t *n)
{
	size_t size = (size_t)1 << k, ncells = 3 * size, got = 0;
	uint32_t *queue = malloc(3 * ncells * sizeof *queue);
	size_t qn = 0;
	int r = -1;
	*n = 0;
	if (max > ncells)
		max = ncells;
	if (!queue)
		return -2;
	for (size_t c = 0; c < ncells; c++)
		if (pure(&t[c], c / size, c % size, k))
			queue[qn++] = (uint32_t)c;
	while (qn) {
		size_t c = queue[--qn];
		if (!pure(&t[c], c / size, c % size, k))
			continue;
		if (got == max)
			goto out;  /* more ids than the table can hold: a lie */
		uint64_t id = t[c].id;
		int s = t[c].count == 1 ? 1 : -1;
		ids[got] = id;
		sign[got++] = (int8_t)s;
		store_iblt_add(t, k, id, -s);
		uint32_t idx[3], chk;
		cell_hash(id, idx, &chk);
		/* Each of its cells may have become pure: at most three more, and a cell is
		 * queued again only when it changes, so the queue never overflows. */
		for (size_t j = 0; j < 3; j++) {
			size_t d = j * size + (idx[j] & (size - 1));
			if (d != c && pure(&t[d], j, d % size, k) && qn < 3 * ncells)
				queue[qn++] = (uint32_t)d;
		}
	}
	for (size_t c = 0; c < ncells; c++)
		if (t[c].count || t[c].id || t[c].chk)
			goto out;  /* not all peeled: too small a table, or a lie */
	/* An id twice is a lie: an honest difference holds each id once. */
	uint64_t *v = malloc((got ? got : 1) * sizeof *v);
	if (!v) {
		r = -2;
		goto out;
	}
	memcpy(v, ids, got * sizeof *v);
	qsort(v, got, sizeof *v, by_u64);
	r = 0;
	for (size_t i = 1; i < got; i++)
		if (v[i] == v[i - 1])
			r = -3;
	free(v);
	*n = got;
out:
	free(queue);
	return r;
}

/* ---- the Merkle summary, kept once made (store.h) ---- */

struct expiry {
	uint64_t at;  /* when a delete or event expires (gossip_now_ms) */
	uint16_t bucket;
};

struct store_sum {
	uint8_t (*l2)[16];  /* 65536 */
	uint32_t *cnt;  /* 65536 */
	uint8_t *dirty;  /* 65536: to hash again */
	uint16_t *dlist;  /* the dirty buckets, ndirty of them */
	size_t ndirty;
	int valid;  /* 0: made again from the index at the next digest */
	int l1all;  /* made again: every level-one hash to be made again too */
	uint64_t made_at;  /* the time of the last digest */
	uint8_t l1[256][16];
	uint64_t l1cnt[256];
	struct expiry *heap;  /* a min-heap on at */
	size_t nheap, capheap;
	/* The kept tables (store_tab_keep), up to two: 3 x 2^15 cells of the current
	 * entries' ids under salts[i], tabs[i] (NULL: none), brought up to date with the
	 * summary, bucket by bucket; an entry whose id table i holds has bit i of intab set.
	 * A salt is taken up a sixteenth of the buckets at each digest: the buckets below
	 * done[i] are done (and kept up to date); at 65536 the table is whole, and used. */
	struct store_cell *tabs[2];
	uint8_t salts[2][32];
	size_t done[2];
	uint8_t asked[2][32];  /* the salts last asked for (nasked of them) */
	int nasked;
	/* How many current entries (as of each bucket's last hashing) each origin has: those
	 * counted have bit ORIG_COUNTED of intab set. norig origins have any. */
	uint32_t *ocnt;
	size_t ocap;
	uint64_t norig;
};

enum { ORIG_COUNTED = 4 };  /* intab's bit for an entry counted in ocnt */

static size_t bucket_of(const uint8_t *slot)
{
	return (size_t)(slot[0] << 8 | slot[1]);
}

/* The summary must be made again from the index (a new file, a floor, another
 * visibility rule). */
static void mk_invalidate(struct gossip_store *st)
{
	if (st->sum)
		st->sum->valid = 0;
}

static void mk_mark(struct gossip_store *st, size_t b)
{
	struct store_sum *m = st->sum;
	if (!m->dirty[b]) {
		m->dirty[b] = 1;
		m->dlist[m->ndirty++] = (uint16_t)b;
	}
}

/* When a delete or an event of this type, time and version expires (UINT64_MAX: never);
 * the moment expired() starts saying so. */
static uint64_t expires_at(const struct gossip_store *st, uint8_t type, uint64_t time,
                           uint64_t version)
{
	uint64_t ttl = type == GOSSIP_T_DEL ? st->opts.tombstone_ttl_ms
	               : type == GOSSIP_T_EVENT ? st->opts.event_ttl_ms
	                                        : UINT64_MAX;
	if (ttl == UINT64_MAX || time > UINT64_MAX - ttl)
		return UINT64_MAX;
	return time + ttl > version ? time + ttl : version;
}

static int mk_heap_push(struct store_sum *m, uint64_t at, size_t b)
{
	if (m->nheap == m->capheap) {
		size_t cap = m->capheap ? 2 * m->capheap : 256;
		struct expiry *h = realloc(m->heap, cap * sizeof *h);
		if (!h)
			return -1;
		m->heap = h;
		m->capheap = cap;
	}
	size_t i = m->nheap++;
	while (i && m->heap[(i - 1) / 2].at > at) {
		m->heap[i] = m->heap[(i - 1) / 2];
		i = (i - 1) / 2;
	}
	m->heap[i] = (struct expiry){at, (uint16_t)b};
	return 0;
}

static struct expiry mk_heap_pop(struct store_sum *m)
{
	struct expiry top = m->heap[0], last = m->heap[--m->nheap];
	size_t i = 0;
	for (;;) {
		size_t c = 2 * i + 1;
		if (c >= m->nheap)
			break;
		if (c + 1 < m->nheap && m->heap[c + 1].at < m->heap[c].at)
			c++;
		if (m->heap[c].at >= last.at)
			break;
		m->heap[i] = m->heap[c];
		i = c;
	}
	if (m->nheap)
		m->heap[i] = last;
	return top;
}

/* An entry of bucket b may change what is current there: mark it; a delete or event is
 * remembered by when it expires. Out of memory: made again at the next digest. */
static void mk_note(struct gossip_store *st, const uint8_t *slot, uint8_t type, uint64_t time,
                    uint64_t version)
{
	struct store_sum *m = st->sum;
	if (!m || !m->valid)
		return;
	mk_mark(st, bucket_of(slot));
	uint64_t at = expires_at(st, type, time, version);
	if (at != UINT64_MAX && mk_heap_push(m, at, bucket_of(slot)) < 0)
		m->valid = 0;
}

/* An entry's id leaves table i (its bytes are replaced, or its bucket is done again),
 * when its bucket is done there (a bit of a table dropped before, not yet cleared, names
 * nothing). */
static void tab_out1(struct gossip_store *st, struct gossip_entry *e, int i)
{
	struct store_sum *m = st->sum;
	if ((e->intab & 1 << i) && m && m->tabs[i] && bucket_of(e->slot) < m->done[i])
		store_iblt_add(m->tabs[i], STORE_IBLT_K, store_id4(m->salts[i], e->slot, e->hash), -1);
	e->intab &= (uint8_t)~(1 << i);
}

static void tab_out(struct gossip_store *st, struct gossip_entry *e)
{
	tab_out1(st, e, 0);
	tab_out1(st, e, 1);
}

/* The same against the greatest row of any origin, visible or not (kept in r): only to
 * count live and wasted bytes, which do not depend on who is trusted now. */
static int reg_below_all(const struct gossip_store *st, const struct store_reg *r, uint64_t v,
                         const uint8_t *pk)
{
	if (r->floor_time && row_cmp(v, pk, r->floor_version, r->floor_origin) <= 0)
		return 1;
	return r->top_origin != UINT32_MAX &&
	       row_cmp(v, pk, r->top_version, st->origins[r->top_origin].pk) < 0;
}

/* Note that slot holds a row of register r. Most keys are written by one origin: their
 * one slot is kept in the register itself (a million small blocks fewer in a store of
 * a million keys). */
static int reg_add_slot(struct store_reg *r, const uint8_t slot[16])
{
	if (r->slotcap <= 1 && r->nslots == 0) {
		r->slotcap = 1;
		memcpy(r->slot1, slot, 16);
		r->nslots = 1;
		return 0;
	}
	if (r->nslots == r->slotcap) {
		uint32_t cap = r->slotcap > 1 ? 2 * r->slotcap : 2;
		uint8_t(*v)[16] = realloc(r->slots, cap * sizeof *v);
		if (!v)
			return -1;
		if (r->slotcap == 1)
			memcpy(v[0], r->slot1, 16);
		r->slots = v;
		r->slotcap = cap;
	}
	memcpy(r->slots[r->nslots++], slot, 16);
	return 0;
}

void gossip_store_set_visible(struct gossip_store *st, gossip_visible_fn *fn, void *ctx)
{
	st->visible = fn;
	st->visible_ctx = ctx;
	st->epoch++;
	mk_invalidate(st);
}

const struct gossip_entry *gossip_store_find(const struct gossip_store *st, const uint8_t slot[16])
{
	const struct gossip_entry *e = find(st, slot);
	return e && visible(st, e) && !superseded(st, e) ? e : NULL;
}

static int grow(struct gossip_store *st)
{
	size_t cap = st->cap ? st->cap * 2 : 1024;
	struct gossip_entry *old = st->tab, *tab = big_zalloc(cap * sizeof *tab);
	size_t oldcap = st->cap;
	if (!tab) {
		gossip_seterr("store: out of memory");
		return -1;
	}
	st->tab = tab;
	st->cap = cap;
	st->epoch++;
	for (size_t i = 0; i < oldcap; i++)
		if (old[i].used)
			*probe(st, old[i].slot) = old[i];
	free(old);
	return 0;
}

static uint32_t origin_find(const struct gossip_store *st, const uint8_t pk[32], size_t *pos)
{
	size_t i = 0;
	if (st->ocap) {
		i = slot_hash(pk) & (st->ocap - 1);
		for (; st->otab[i]; i = (i + 1) & (st->ocap - 1))
			if (memcmp(st->origins[st->otab[i] - 1].pk, pk, 32) == 0)
				return st->otab[i] - 1;
	}
	if (pos)
		*pos = i;
	return UINT32_MAX;
}

static uint32_t origin_id(struct gossip_store *st, const uint8_t pk[32])
{
	size_t pos;
	uint32_t id = origin_find(st, pk, &pos);
	if (id != UINT32_MAX)
		return id;
	if ((st->norigins + 1) * 2 > st->ocap) {
		size_t cap = st->ocap ? st->ocap * 2 : 64;
		uint32_t *t = calloc(cap, sizeof *t);
		struct gossip_origin_wm *o = realloc(st->origins, cap / 2 * sizeof *o);
		if (!t || !o) {
			free(t);
			if (o)
				st->origins = o;
			return UINT32_MAX;
		}
		st->origins = o;
		free(st->otab);
		st->otab = t;
		st->ocap = cap;
		for (size_t k = 0; k < st->norigins; k++) {
			size_t i = slot_hash(o[k].pk) & (cap - 1);
			while (t[i])
				i = (i + 1) & (cap - 1);
			t[i] = (uint32_t)k + 1;
		}
		origin_find(st, pk, &pos);
	}
	memcpy(st->origins[st->norigins].pk, pk, 32);
	st->origins[st->norigins].watermark = 0;
	st->otab[pos] = (uint32_t)++st->norigins;
	return (uint32_t)st->norigins - 1;
}

/* ---- the registers: open addressing on the key id, which is already a hash ---- */

static uint32_t reg_find(const struct gossip_store *st, const uint8_t kid[16], size_t *pos)
{
	size_t i = 0;
	if (st->rcap) {
		i = slot_hash(kid) & (st->rcap - 1);
		for (; st->rtab[i]; i = (i + 1) & (st->rcap - 1))
			if (memcmp(st->regs[st->rtab[i] - 1].kid, kid, 16) == 0)
				return st->rtab[i] - 1;
	}
	if (pos)
		*pos = i;
	return UINT32_MAX;
}

static uint32_t reg_id(struct gossip_store *st, const uint8_t kid[16])
{
	size_t pos;
	uint32_t id = reg_find(st, kid, &pos);
	if (id != UINT32_MAX)
		return id;
	if ((st->nregs + 1) * 2 > st->rcap) {
		size_t cap = st->rcap ? st->rcap * 2 : 256;
		uint32_t *t = big_zalloc(cap * sizeof *t);
		struct store_reg *r = t ? big_grow(st->regs, st->nregs * sizeof *r, cap / 2 * sizeof *r) : NULL;
		if (!t || !r) {
			free(t);
			return UINT32_MAX;
		}
		st->regs = r;
		free(st->rtab);
		st->rtab = t;
		st->rcap = cap;
		for (size_t k = 0; k < st->nregs; k++) {
			size_t i = slot_hash(r[k].kid) & (cap - 1);
			while (t[i])
				i = (i + 1) & (cap - 1);
			t[i] = (uint32_t)k + 1;
		}
		reg_find(st, kid, &pos);
	}
	struct store_reg *r = &st->regs[st->nregs];
	memset(r, 0, sizeof *r);
	memcpy(r->kid, kid, 16);
	r->top_origin = UINT32_MAX;
	st->rtab[pos] = (uint32_t)++st->nregs;
	return (uint32_t)st->nregs - 1;
}

/* After a compaction: forget the registers that hold no row and no floor (a key whose
 * rows were all collected, a floor past its time), so that a store whose keys come and go
 * does not keep every key it ever saw; the entries' register ids follow. */
static void regs_prune(struct gossip_store *st)
{
	if (!st->nregs)
		return;
	uint32_t *map = malloc(st->nregs * sizeof *map);
	if (!map)
		return;  /* kept as they are: only memory */
	size_t kept = 0;
	for (size_t i = 0; i < st->nregs; i++) {
		struct store_reg *r = &st->regs[i];
		if (!r->nslots && !r->floor_time) {
			free(r->slots);
			map[i] = UINT32_MAX;
			continue;
		}
		map[i] = (uint32_t)kept;
		if (kept != i)
			st->regs[kept] = *r;
		kept++;
	}
	for (size_t j = 0; j < st->cap; j++)
		if (st->tab[j].used && st->tab[j].reg != UINT32_MAX)
			st->tab[j].reg = map[st->tab[j].reg];
	free(map);
	st->nregs = kept;
	memset(st->rtab, 0, st->rcap * sizeof *st->rtab);
	for (size_t k = 0; k < kept; k++) {
		size_t i = slot_hash(st->regs[k].kid) & (st->rcap - 1);
		while (st->rtab[i])
			i = (i + 1) & (st->rcap - 1);
		st->rtab[i] = (uint32_t)k + 1;
	}
}

/* A key's register id: BLAKE2b-128 of "r" and its bytes. */
static void key_id(uint8_t kid[16], const uint8_t *key, size_t keylen)
{
	crypto_generichash_state h;
	crypto_generichash_init(&h, NULL, 0, 16);
	crypto_generichash_update(&h, (const uint8_t *)"r", 1);
	crypto_generichash_update(&h, key, keylen);
	crypto_generichash_final(&h, kid, 16);
}

int gossip_key_is_register(const uint8_t *key, size_t keylen)
{
	return !(keylen && key[0] == '_');
}

void store_item_of(struct store_item *it, const struct gossip_msg *m, size_t len)
{
	gossip_slot(it->slot, m);
	memcpy(it->origin, m->origin, 32);
	it->version = m->version;
	it->time = m->time;
	it->len = (uint32_t)len;
	it->type = (uint8_t)m->type;
	it->reg = (m->type == GOSSIP_T_SET || m->type == GOSSIP_T_DEL) &&
	          gossip_key_is_register(m->key, m->keylen);
	if (it->reg)
		key_id(it->kid, m->key, m->keylen);
	else
		memset(it->kid, 0, 16);
	if (it->reg)
		memcpy(it->ikey, it->kid, 16);
	else if (it->type != GOSSIP_T_EVENT)
		key_id(it->ikey, m->key, m->keylen);
	else
		memset(it->ikey, 0, 16);
	crypto_generichash(it->hash, 16, m->bytes, m->nbytes, NULL, 0);
}

/* Whether it replaces the entry of its slot: a higher version, or (an equivocation) the
 * same version with a lower hash, so that every store keeps the same one. */
static int replaces(const struct store_item *it, const struct gossip_entry *e)
{
	return it->version > e->version ||
	       (it->version == e->version && memcmp(it->hash, e->hash, 16) < 0);
}

/* A writer's change to DIR/store.keys, kept until written (keys_flush). When it cannot
 * be kept, the next write makes the file whole. */
static void kc_push(struct gossip_store *st, const uint8_t ikey[16], uint64_t old, uint64_t now,
                    int wm)
{
	if (st->opts.readonly || st->kc_from == UINT64_MAX)
		return;
	if (st->nkc == st->kccap) {
		size_t cap = st->kccap ? 2 * st->kccap : 256;
		struct store_keys_change *c = big_grow(st->kc, st->kccap * sizeof *c, cap * sizeof *c);
		if (!c) {
			st->nkc = 0;
			st->kc_from = UINT64_MAX;
			return;
		}
		st->kc = c;
		st->kccap = cap;
	}
	struct store_keys_change *c = &st->kc[st->nkc++];
	if (ikey)
		memcpy(c->ikey, ikey, 16);
	else
		memset(c->ikey, 0, 16);
	c->old = old;
	c->now = now;
	c->seq = st->kc_seq++;
	c->wm = wm;
}

/* The index's sum (st->isum): of each entry's hash (BLAKE2b-128 of its bytes) as a
 * 128-bit number, mod 2^128, so that whatever order an index was made in, the same
 * entries give the same sum (the custody chain compares writers' indexes by it). sign -1
 * takes an entry away. */
static void isum_add(struct gossip_store *st, const uint8_t hash[16], int sign)
{
	uint64_t lo = store_get64(st->isum + 8), hi = store_get64(st->isum);
	uint64_t dlo = store_get64(hash + 8), dhi = store_get64(hash);
	if (sign < 0) {  /* two's complement of (dhi, dlo) */
		dlo = ~dlo + 1;
		dhi = ~dhi + (dlo == 0);
	}
	uint64_t nlo = lo + dlo;
	store_put64(st->isum + 8, nlo);
	store_put64(st->isum, hi + dhi + (nlo < lo));
}

static void orig_out(struct gossip_store *st, struct gossip_entry *e);

static int store_index_item(struct gossip_store *st, const struct store_item *it, uint64_t off)
{
	st->epoch++;
	if ((st->n + 1) * 10 > st->cap * 7 && grow(st) < 0)
		return -1;
	uint32_t oid = origin_id(st, it->origin), rid = it->reg ? reg_id(st, it->kid) : UINT32_MAX;
	if (oid == UINT32_MAX || (it->reg && rid == UINT32_MAX)) {
		gossip_seterr("store: out of memory");
		return -1;
	}
	/* The summary: the key's greatest row before this one may stop being current. */
	uint8_t top_slot[16];
	int had_top = 0;
	if (st->sum && st->sum->valid && it->reg) {
		const struct gossip_entry *t = reg_top(st, &st->regs[rid]);
		if (t) {
			memcpy(top_slot, t->slot, 16);
			had_top = 1;
		}
	}
	struct gossip_entry *e = probe(st, it->slot);
	if (e->used) {
		if (!replaces(it, e)) {
			st->dead_bytes += it->len;
			return 0;
		}
		/* A superseded row's bytes were counted as waste when it was superseded. */
		if (e->reg == UINT32_MAX ||
		    !reg_below_all(st, &st->regs[e->reg], e->version, st->origins[e->origin].pk)) {
			st->dead_bytes += e->len;
			st->live_bytes -= e->len;
		}
	} else {
		st->n++;
		if (it->reg && reg_add_slot(&st->regs[rid], it->slot) < 0) {
			gossip_seterr("store: out of memory");
			return -1;
		}
	}
	/* Of a key's rows, only the greatest is live: a new greatest row makes the last one
	 * waste (unless it was this slot's, counted just above). */
	int live = 1;
	if (it->reg) {
		struct store_reg *r = &st->regs[rid];
		if (reg_below_all(st, r, it->version, it->origin))
			live = 0;
		else if (r->top_origin != UINT32_MAX &&
		         row_cmp(it->version, it->origin, r->top_version, st->origins[r->top_origin].pk) != 0) {
			if (r->top_origin != oid) {
				st->dead_bytes += r->top_len;
				st->live_bytes -= r->top_len;
			}
		}
		if (live) {
			r->top_version = it->version;
			r->top_origin = oid;
			r->top_len = it->len;
		}
	}
	if (it->type != GOSSIP_T_EVENT)
		kc_push(st, it->ikey, e->used ? e->off : UINT64_MAX, off, 0);
	if (e->used) {
		tab_out(st, e);  /* its id goes with its bytes */
		orig_out(st, e);
		isum_add(st, e->hash, -1);
	}
	isum_add(st, it->hash, 1);
	memcpy(e->slot, it->slot, 16);
	memcpy(e->hash, it->hash, 16);
	e->off = off;
	e->len = it->len;
	e->version = it->version;
	e->time = it->time;
	e->type = it->type;
	e->origin = oid;
	e->reg = rid;
	e->used = 1;
	*(live ? &st->live_bytes : &st->dead_bytes) += it->len;
	st->epoch++;
	mk_note(st, it->slot, it->type, it->time, it->version);
	if (had_top && st->sum && st->sum->valid)
		mk_mark(st, bucket_of(top_slot));
	return 0;
}

/* ---- the verified hashes: DIR/store.sum, 16-byte BLAKE2b-128 hashes back to back, of
 * messages whose signatures were verified. A cache: a hash missing from it (the file
 * lost, damaged or behind after a crash) costs one signature check, never a message. */

static uint8_t (*sum_probe(const struct gossip_store *st, const uint8_t h[16]))[16]
{
	static const uint8_t zero[16];
	size_t i = slot_hash(h) & (st->sumcap - 1);
	while (memcmp(st->sums[i], zero, 16) != 0 && memcmp(st->sums[i], h, 16) != 0)
		i = (i + 1) & (st->sumcap - 1);
	return &st->sums[i];
}

static int sum_has(const struct gossip_store *st, const uint8_t h[16])
{
	return st->sumcap && memcmp(*sum_probe(st, h), h, 16) == 0;
}

/* In memory; an all-zero hash is the empty mark (and no message's). */
static int sum_add(struct gossip_store *st, const uint8_t h[16])
{
	static const uint8_t zero[16];
	if (memcmp(h, zero, 16) == 0)
		return 0;
	if ((st->nsums + 1) * 2 > st->sumcap) {
		size_t cap = st->sumcap ? st->sumcap * 2 : 1024, oldcap = st->sumcap;
		uint8_t(*old)[16] = st->sums, (*t)[16] = big_zalloc(cap * 16);
		if (!t)
			return -1;
		st->sums = t;
		st->sumcap = cap;
		for (size_t i = 0; i < oldcap; i++)
			if (memcmp(old[i], zero, 16) != 0)
				memcpy(*sum_probe(st, old[i]), old[i], 16);
		free(old);
	}
	uint8_t(*e)[16] = sum_probe(st, h);
	if (memcmp(*e, h, 16) != 0) {
		memcpy(*e, h, 16);
		st->nsums++;
	}
	return 0;
}

/* Read what was appended to DIR/store.sum since last time (all of it when it was
 * replaced). A file that is missing or unreadable is an empty cache. */
static void sum_load(struct gossip_store *st)
{
	struct stat sb;
	uint8_t buf[16 * 1024];
	/* Not blocking, and only a regular file: a FIFO there would hold every reader. */
	int fd = open(gossip_path(st->dir, "store.sum"), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0)
		return;
	if (fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode)) {
		if ((uint64_t)sb.st_ino != st->sum_ino || (uint64_t)sb.st_size < st->sum_off) {
			st->sum_ino = (uint64_t)sb.st_ino;
			st->sum_off = 0;
		}
		for (;;) {
			ssize_t k = pread(fd, buf, sizeof buf, (off_t)st->sum_off);
			if (k < 16)
				break;
			k -= k % 16;
			for (ssize_t i = 0; i < k; i += 16)
				if (sum_add(st, buf + i) < 0)
					break;
			st->sum_off += (uint64_t)k;
		}
	}
	close(fd);
}

/* Append the hashes verified here to DIR/store.sum (writers only, under the lock). Not
 * synced, and a failure is ignored: the file only saves signature checks. */
static void sum_flush(struct gossip_store *st)
{
	struct stat sb;
	if (st->opts.readonly || !st->sum_new.len)
		return;
	int fd = open(gossip_path(st->dir, "store.sum"), O_WRONLY | O_CREAT | O_APPEND | O_NONBLOCK | O_CLOEXEC, 0600);
	if (fd >= 0 && fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode)) {
		/* A torn last hash would shift every later one: cut it first. */
		if (sb.st_size % 16)
			(void)!ftruncate(fd, sb.st_size - sb.st_size % 16);
		(void)!gossip_write_all(fd, st->sum_new.p, st->sum_new.len);
	}
	if (fd >= 0)
		close(fd);
	st->sum_new.len = 0;
}

/* Rewrite DIR/store.sum with the hashes of the n entries (after a compaction). */
static void sum_rewrite(struct gossip_store *st, struct gossip_entry **v, size_t n)
{
	struct gossip_buf b = {0};
	for (size_t i = 0; i < n; i++)
		if (gossip_buf_put(&b, v[i]->hash, 16) < 0) {
			gossip_buf_free(&b);
			return;
		}
	(void)gossip_write_replace(gossip_path(st->dir, "store.sum"), b.p ? b.p : (uint8_t *)"", b.len,
	                           0600);
	gossip_buf_free(&b);
	st->sum_new.len = 0;
}

/* ---- reading the store file ---- */

enum rec { REC_OK, REC_WASTE, REC_BAD, REC_MORE, REC_WM };

/* ---- the watermark record: the first item of a compacted store whose origins have
 * watermarks (or whose keys have floors), so that losing DIR/watermarks (a cache of it)
 * never lets a collected delete come back. Not a message (never indexed, served or
 * synced): the array
 *   ["gossip watermarks", [[ORIGIN, VERSION], ...], CHECK]
 * or, with floors (gossip(7), STATE AND MERGE RULES),
 *   ["gossip watermarks", [[ORIGIN, VERSION], ...], [[KEYID, VERSION, ORIGIN, TIME], ...], CHECK]
 * where CHECK is the BLAKE2b-128 of the encoding of the elements before it. At most
 * WM_PER_RECORD origins and FLOORS_PER_RECORD floors a record; more make several
 * records, back to back. A floor's KEYID is BLAKE2b-128 of "r" and the key. */

/* 1000 origins (44 bytes each) and 300 floors (70 bytes each) fit in 65536 bytes. */
enum { WM_PER_RECORD = 1000, FLOORS_PER_RECORD = 300 };
static const char wm_name[] = "gossip watermarks";
static const struct gossip_limits wm_limits = {GOSSIP_MSG_MAX, 4,
                                               3 * WM_PER_RECORD + 5 * FLOORS_PER_RECORD + 16};

/* Whether p starts like a watermark record (so that it is read as one, or is damage). */
static int wm_like(const uint8_t *p, size_t n)
{
	return n >= 2 + sizeof wm_name - 1 && (p[0] == 0x83 || p[0] == 0x84) &&
	       p[1] == 0x60 + sizeof wm_name - 1 && memcmp(p + 2, wm_name, sizeof wm_name - 1) == 0;
}

typedef void wm_floor_fn(void *ctx, const uint8_t kid[16], uint64_t version,
                         const uint8_t origin[32], uint64_t time);

static int wm_read(const uint8_t *p, size_t len,
                   void (*each)(void *ctx, const uint8_t pk[32], uint64_t version),
                   wm_floor_fn *floor, void *ctx)
{
	struct gossip_cur c = {p, len, 0};
	struct gossip_ev ev, pk, v, kid, t;
	uint8_t h[16];
	size_t nfloors = 0, floors = 0;
	if (!wm_like(p, len))
		return 0;
	int four = p[0] == 0x84;
	if (gossip_cur_expect(&c, GOSSIP_EV_ARRAY, &ev, "watermark record") < 0 ||
	    gossip_cur_expect(&c, GOSSIP_EV_TSTR, &ev, "watermark record") < 0 ||
	    gossip_cur_expect(&c, GOSSIP_EV_ARRAY, &ev, "watermark record") < 0 ||
	    ev.u > WM_PER_RECORD)
		return -1;
	size_t list = c.pos, n = (size_t)ev.u;
	for (size_t i = 0; i < n; i++)
		if (gossip_cur_expect(&c, GOSSIP_EV_ARRAY, &ev, "watermark record") < 0 || ev.u != 2 ||
		    gossip_cur_expect(&c, GOSSIP_EV_BSTR, &pk, "watermark record") < 0 || pk.len != 32 ||
		    gossip_cur_expect(&c, GOSSIP_EV_UINT, &v, "watermark record") < 0)
			return -1;
	if (four) {
		if (gossip_cur_expect(&c, GOSSIP_EV_ARRAY, &ev, "watermark record") < 0 ||
		    ev.u > FLOORS_PER_RECORD)
			return -1;
		floors = c.pos;
		nfloors = (size_t)ev.u;
		for (size_t i = 0; i < nfloors; i++)
			if (gossip_cur_expect(&c, GOSSIP_EV_ARRAY, &ev, "watermark record") < 0 || ev.u != 4 ||
			    gossip_cur_expect(&c, GOSSIP_EV_BSTR, &kid, "watermark record") < 0 ||
			    kid.len != 16 || gossip_cur_expect(&c, GOSSIP_EV_UINT, &v, "watermark record") < 0 ||
			    gossip_cur_expect(&c, GOSSIP_EV_BSTR, &pk, "watermark record") < 0 ||
			    pk.len != 32 || gossip_cur_expect(&c, GOSSIP_EV_UINT, &t, "watermark record") < 0)
				return -1;
	}
	crypto_generichash(h, 16, p + 1, c.pos - 1, NULL, 0);
	if (gossip_cur_expect(&c, GOSSIP_EV_BSTR, &ev, "watermark record") < 0 || ev.len != 16 ||
	    c.pos != len || sodium_memcmp(h, ev.data, 16) != 0) {
		gossip_seterr("a damaged watermark record");
		return -1;
	}
	c.pos = list;
	for (size_t i = 0; i < n; i++) {
		(void)gossip_cur_next(&c, &ev, "");
		(void)gossip_cur_next(&c, &pk, "");
		(void)gossip_cur_next(&c, &v, "");
		if (each)
			each(ctx, pk.data, v.u);
	}
	c.pos = floors;
	for (size_t i = 0; i < nfloors; i++) {
		(void)gossip_cur_next(&c, &ev, "");
		(void)gossip_cur_next(&c, &kid, "");
		(void)gossip_cur_next(&c, &v, "");
		(void)gossip_cur_next(&c, &pk, "");
		(void)gossip_cur_next(&c, &t, "");
		if (floor)
			floor(ctx, kid.data, v.u, pk.data, t.u);
	}
	return 1;
}

int gossip_store_watermarks(const uint8_t *p, size_t len,
                            void (*each)(void *ctx, const uint8_t pk[32], uint64_t version), void *ctx)
{
	return wm_read(p, len, each, NULL, ctx);
}

static void wm_raise(void *ctx, const uint8_t pk[32], uint64_t version)
{
	struct gossip_store *st = ctx;
	uint32_t id = origin_id(st, pk);
	if (id != UINT32_MAX && version > st->origins[id].watermark)
		st->origins[id].watermark = version;
}

/* Raise register r's floor to the row (version, origin), made at time. */
static void floor_raise(struct store_reg *r, uint64_t version, const uint8_t origin[32],
                        uint64_t time)
{
	if (r->floor_time && row_cmp(version, origin, r->floor_version, r->floor_origin) <= 0)
		return;
	r->floor_version = version;
	memcpy(r->floor_origin, origin, 32);
	r->floor_time = time ? time : 1;
}

static void wm_floor(void *ctx, const uint8_t kid[16], uint64_t version, const uint8_t origin[32],
                     uint64_t time)
{
	struct gossip_store *st = ctx;
	uint32_t id = reg_id(st, kid);
	if (id != UINT32_MAX)
		floor_raise(&st->regs[id], version, origin, time);
	mk_invalidate(st);
}

/* Check the record of len bytes at p, then raise its origins' watermarks and its keys'
 * floors. */
static int wm_parse(struct gossip_store *st, const uint8_t *p, size_t len)
{
	return wm_read(p, len, wm_raise, wm_floor, st) == 1 ? 0 : -1;
}

/* The CHECK of the record that starts at b->p + at, appended. */
static int wm_close(struct gossip_buf *b, size_t at)
{
	uint8_t h[16];
	crypto_generichash(h, 16, b->p + at + 1, b->len - at - 1, NULL, 0);
	return gossip_cbor_str(b, GOSSIP_MT_BSTR, h, 16);
}

/* Append the watermark records of st's origins and floors of its keys (none when no
 * origin has a watermark and no key a floor): record k holds the k-th thousand origins
 * and the k-th FLOORS_PER_RECORD floors, and only a record with floors has four elements
 * (a store without floors stays readable by older versions). */
static int wm_encode(const struct gossip_store *st, struct gossip_buf *b)
{
	size_t i = 0, f = 0;
	for (;;) {
		size_t n = 0, nf = 0, j, g;
		for (j = i; j < st->norigins && n < WM_PER_RECORD; j++)
			n += st->origins[j].watermark != 0;
		for (g = f; g < st->nregs && nf < FLOORS_PER_RECORD; g++)
			nf += st->regs[g].floor_time != 0;
		if (!n && !nf)
			return 0;
		size_t at = b->len;
		if (gossip_cbor_head(b, GOSSIP_MT_ARRAY, nf ? 4 : 3) < 0 ||
		    gossip_cbor_str(b, GOSSIP_MT_TSTR, wm_name, sizeof wm_name - 1) < 0 ||
		    gossip_cbor_head(b, GOSSIP_MT_ARRAY, n) < 0)
			return -1;
		for (; i < j; i++) {
			if (!st->origins[i].watermark)
				continue;
			if (gossip_cbor_head(b, GOSSIP_MT_ARRAY, 2) < 0 ||
			    gossip_cbor_str(b, GOSSIP_MT_BSTR, st->origins[i].pk, 32) < 0 ||
			    gossip_cbor_head(b, GOSSIP_MT_UINT, st->origins[i].watermark) < 0)
				return -1;
		}
		if (nf && gossip_cbor_head(b, GOSSIP_MT_ARRAY, nf) < 0)
			return -1;
		for (; f < g; f++) {
			const struct store_reg *r = &st->regs[f];
			if (!r->floor_time)
				continue;
			if (gossip_cbor_head(b, GOSSIP_MT_ARRAY, 4) < 0 ||
			    gossip_cbor_str(b, GOSSIP_MT_BSTR, r->kid, 16) < 0 ||
			    gossip_cbor_head(b, GOSSIP_MT_UINT, r->floor_version) < 0 ||
			    gossip_cbor_str(b, GOSSIP_MT_BSTR, r->floor_origin, 32) < 0 ||
			    gossip_cbor_head(b, GOSSIP_MT_UINT, r->floor_time) < 0)
				return -1;
		}
		if (wm_close(b, at) < 0)
			return -1;
	}
}

/* What lies at p (n bytes, as much as the file holds up to GOSSIP_MSG_MAX): a message
 * whose signature is proven (verified now, or listed in DIR/store.sum), to index; news
 * (a heartbeat written by an older gossip-merge: not state, skipped as waste); the
 * prefix of one item, cut short by the end of the file; or damage. */
static enum rec record_at(struct gossip_store *st, const uint8_t *p, size_t n, size_t *len,
                          struct store_item *it)
{
	struct gossip_msg m;
	if (wm_like(p, n)) {
		int s = gossip_cbor_scan(p, n, &wm_limits, NULL, len);
		if (s == GOSSIP_SCAN_MORE)
			return REC_MORE;
		return s == GOSSIP_SCAN_OK && wm_parse(st, p, *len) == 0 ? REC_WM : REC_BAD;
	}
	int s = gossip_cbor_scan(p, n, &gossip_msg_limits, NULL, len);
	if (s == GOSSIP_SCAN_MORE)
		return REC_MORE;
	if (s != GOSSIP_SCAN_OK || gossip_msg_decode(p, *len, &m) < 0)
		return REC_BAD;
	if (gossip_msg_is_news(&m))
		return REC_WASTE;
	store_item_of(it, &m, *len);
	if (!st->opts.verify_all && sum_has(st, it->hash))
		return REC_OK;
	if (gossip_msg_verify(&m) < 0)
		return REC_BAD;
	if (sum_add(st, it->hash) < 0 || (!st->opts.readonly && gossip_buf_put(&st->sum_new, it->hash, 16) < 0))
		return REC_OK;  /* only the cache suffers */
	return REC_OK;
}

static void reset_index(struct gossip_store *st)
{
	free(st->tab);
	st->tab = NULL;
	st->cap = st->n = 0;
	st->live_bytes = st->dead_bytes = 0;
	st->end = 0;
	st->ndmg = 0;
	memset(st->isum, 0, 16);
	st->nkc = st->kc_held = 0;
	st->kc_from = 0;
	st->kc_damage = st->partial = 0;
	st->epoch++;
	mk_invalidate(st);
	/* The greatest rows are found again from the file; floors, like watermarks, stay. */
	for (size_t i = 0; i < st->nregs; i++) {
		st->regs[i].top_origin = UINT32_MAX;
		st->regs[i].nslots = 0;
	}
}

const struct gossip_store_damage *gossip_store_damage(const struct gossip_store *st, size_t *n)
{
	*n = st->ndmg;
	return st->dmg;
}

/* The quarantine file of a damaged region: DIR/quarantine/store-INODE-OFFSET. */
static const char *quarantine_path(const struct gossip_store *st, uint64_t off)
{
	static char path[4300];
	snprintf(path, sizeof path, "%s/quarantine/store-%llu-%llu", st->dir,
	         (unsigned long long)st->ino, (unsigned long long)off);
	return path;
}

/* Keep a copy of the damaged bytes in DIR/quarantine; 1 when it was there already (the
 * damage is known, and was reported), 0 when it is new, -1 when it cannot be kept. */
static int quarantine(struct gossip_store *st, uint64_t off, uint64_t len)
{
	const char *path = quarantine_path(st, off);
	if (access(path, F_OK) == 0)
		return 1;
	if (st->opts.readonly)
		return 0;
	uint8_t *buf = len <= 64u << 20 ? malloc(len ? len : 1) : NULL;
	int r = -1;
	if (buf && pread(st->fd, buf, len, (off_t)off) == (ssize_t)len &&
	    (mkdir(gossip_path(st->dir, "quarantine"), 0700) == 0 || errno == EEXIST))
		r = gossip_write_atomic(path, buf, len, 0600, 0) < 0 ? -1 : 0;
	free(buf);
	return r;
}

static int note_damage(struct gossip_store *st, uint64_t off, uint64_t len, int torn)
{
	for (size_t i = 0; i < st->ndmg; i++)
		if (st->dmg[i].off == off) {  /* a torn tail left alone (read-only), seen again */
			st->dmg[i] = (struct gossip_store_damage){off, len, torn};
			return 0;
		}
	if (st->ndmg == st->dmgcap) {
		size_t cap = st->dmgcap ? st->dmgcap * 2 : 8;
		struct gossip_store_damage *d = realloc(st->dmg, cap * sizeof *d);
		if (!d) {
			gossip_seterr("store: out of memory");
			return -1;
		}
		st->dmg = d;
		st->dmgcap = cap;
	}
	st->dmg[st->ndmg++] = (struct gossip_store_damage){off, len, torn};
	st->kc_damage = 1;
	return 0;
}

/* One line for the damage found by one catch_up, unless every region of it is known
 * (kept in DIR/quarantine by an earlier run, which reported it). */
static void report_damage(struct gossip_store *st, size_t first)
{
	char list[512] = "";
	size_t k = 0, shown = 0, fresh = 0;
	int kept = 1;
	for (size_t i = first; i < st->ndmg; i++) {
		const struct gossip_store_damage *d = &st->dmg[i];
		if (d->torn)
			continue;
		int q = quarantine(st, d->off, d->len);
		if (q == 1)
			continue;
		if (q < 0)
			kept = 0;
		fresh++;
		if (shown < 4) {
			k += (size_t)snprintf(list + k, sizeof list - k, "%s%llu bytes at offset %llu",
			                      shown ? ", " : "", (unsigned long long)d->len,
			                      (unsigned long long)d->off);
			shown++;
		}
	}
	if (!fresh)
		return;
	gossip_warn("store: %s/store is damaged: skipped %s%s (%s); the messages before and "
	            "after it are kept; gossip-merge -d %s --repair check rewrites the store without it",
	            st->dir, list, fresh > shown ? ", ..." : "",
	            st->opts.readonly ? "not copied: read-only"
	            : kept            ? "copied to quarantine"
	                              : "could not be copied to quarantine",
	            st->dir);
}

/* Whether the n bytes at the end of the file are a torn tail: the prefix of one item,
 * possibly followed by zeros (what a crash may leave in a file's last blocks). One whole
 * item that is not a proven message is damage, whatever its last bytes. */
static int torn(const uint8_t *p, size_t n)
{
	size_t len;
	int s = gossip_cbor_scan(p, n, &gossip_msg_limits, NULL, &len);
	if (s == GOSSIP_SCAN_MORE)
		return 1;
	if (s == GOSSIP_SCAN_OK && len == n)
		return 0;
	while (n && p[n - 1] == 0)
		n--;
	return n == 0 || gossip_cbor_scan(p, n, &gossip_msg_limits, NULL, &len) == GOSSIP_SCAN_MORE;
}

/* Index what lies between st->end and the end of the file, record by record. What is
 * not a verified message is damage: the scan resynchronises on the next offset where a
 * verified message starts, and skips the bytes between (quarantined and reported). Only
 * damage that runs to the end of the file and is torn (see torn()) is cut, by a writer
 * (under the lock, so nobody is writing now); read-only, it is left alone. */
static int catch_up(struct gossip_store *st)
{
	struct stat sb;
	uint8_t *buf = NULL;
	uint64_t wpos = 0, size, pos, bad = UINT64_MAX;
	size_t wlen = 0, first = st->ndmg;
	int r = -1;
	if (st->fd < 0)
		return 0;
	if (!st->partial)  /* a query of one key verifies the few it reads */
		sum_load(st);
	if (fstat(st->fd, &sb) < 0) {
		gossip_seterr("store: %s", strerror(errno));
		return -1;
	}
	size = (uint64_t)sb.st_size;
	if (size <= st->end)
		return 0;
	if (!(buf = malloc(CHUNK + GOSSIP_MSG_MAX))) {
		gossip_seterr("store: out of memory");
		return -1;
	}
	for (pos = st->end; pos < size;) {
		size_t need = size - pos < GOSSIP_MSG_MAX ? (size_t)(size - pos) : GOSSIP_MSG_MAX, len;
		if (pos < wpos || pos + need > wpos + wlen) {
			size_t want = size - pos < CHUNK + GOSSIP_MSG_MAX ? (size_t)(size - pos) : CHUNK + GOSSIP_MSG_MAX;
			ssize_t k;
			while ((k = pread(st->fd, buf, want, (off_t)pos)) < 0 && errno == EINTR)
				;
			if (k < (ssize_t)need) {
				gossip_seterr("store: cannot read %s/store: %s", st->dir,
				              k < 0 ? strerror(errno) : "it shrank while being read");
				goto out;
			}
			wpos = pos;
			wlen = (size_t)k;
		}
		struct store_item it;
		enum rec c = record_at(st, buf + (pos - wpos), need, &len, &it);
		if (c == REC_OK || c == REC_WASTE || c == REC_WM) {
			if (bad != UINT64_MAX && note_damage(st, bad, pos - bad, 0) < 0)
				goto out;
			bad = UINT64_MAX;
			if (c == REC_WASTE)
				st->dead_bytes += len;
			else if (c == REC_WM)
				kc_push(st, NULL, UINT64_MAX, pos, 1);
			else if (c == REC_OK && store_index_item(st, &it, pos) < 0)
				goto out;
			pos += len;
			st->end = pos;
			continue;
		}
		if (bad == UINT64_MAX)
			bad = pos;
		pos++;  /* resynchronise: try the next byte */
	}
	if (bad != UINT64_MAX) {
		/* Damage up to the end of the file. */
		uint8_t *tail = NULL;
		uint64_t n = size - bad;
		int is_torn = n <= 64u << 20 && (tail = malloc(n)) &&
		              pread(st->fd, tail, n, (off_t)bad) == (ssize_t)n && torn(tail, n);
		free(tail);
		if (note_damage(st, bad, n, is_torn) < 0)
			goto out;
		if (is_torn && !st->opts.readonly) {
			gossip_warn("store: %s/store: cut a torn tail of %llu bytes at offset %llu", st->dir,
			            (unsigned long long)n, (unsigned long long)bad);
			st->cut = store_file_key(st, st->cutk) == 0 ? 1 : -1;
			if (ftruncate(st->fd, (off_t)bad) < 0 || fsync(st->fd) < 0) {
				gossip_seterr("store: cannot truncate: %s", strerror(errno));
				goto out;
			}
			if (st->cut == 1 && store_file_key(st, st->cutk2) < 0)
				st->cut = -1;
			st->ndmg--;  /* repaired */
		}
		else if (!is_torn)
			st->end = size;  /* skipped for good; appends go after it */
	}
	r = 0;
out:
	report_damage(st, first);
	sum_flush(st);
	free(buf);
	return r;
}

static int write_watermarks(struct gossip_store *st);
static int root_key(const struct gossip_store *st, uint8_t key[16]);

static int load_watermarks(struct gossip_store *st)
{
	struct gossip_buf b = {0};
	const char *path = gossip_path(st->dir, "watermarks");
	if (access(path, F_OK) != 0)
		return 0;
	if (gossip_read_file(path, 64u << 20, &b) < 0 || gossip_buf_put(&b, "", 1) < 0)
		return -1;
	char *line = (char *)b.p, *next;
	for (unsigned no = 1; *line; line = next, no++) {
		next = line + strcspn(line, "\n");
		if (*next)
			*next++ = 0;
		uint8_t pk[32];
		char *sp = strchr(line, ' ');
		if (!*line)
			continue;
		char *end;
		uint64_t v = 0;
		errno = 0;
		if (sp && sp[1] >= '0' && sp[1] <= '9')
			v = strtoull(sp + 1, &end, 10);
		if (!sp || gossip_unb64(pk, 32, line, (size_t)(sp - line)) < 0 || sp[1] < '0' ||
		    sp[1] > '9' || errno == ERANGE || *end) {
			gossip_seterr("store: %s line %u: want \"ORIGIN VERSION\" (a version of at most 20 "
			              "digits); restore the file from a backup, or move it away: it is made "
			              "again from the store's watermark record (a store last compacted by an "
			              "older version has none, and deletes older than the tombstone time to "
			              "live may then come back from a stale peer)", path, no);
			gossip_buf_free(&b);
			return -1;
		}
		/* None is ever ahead of the clock (a del does not expire before its version):
		 * one far ahead (a digit's bit flipped) would make every new message of its
		 * origin stale. The file is a cache: the line is left out (the store's record,
		 * which its check guards, still counts). Room for a clock set back. */
		if (v > gossip_now_ms() + GOSSIP_MAX_SKEW_MS + GOSSIP_VERSION_LEAD_MS) {
			gossip_warn("store: %s line %u: a watermark ahead of the clock, which none ever "
			            "is (damage, or a clock set back): left out; the store's watermark "
			            "record still counts", path, no);
			continue;
		}
		uint32_t id = origin_id(st, pk);
		if (id != UINT32_MAX && v > st->origins[id].watermark)
			st->origins[id].watermark = v;
	}
	gossip_buf_free(&b);
	return 0;
}

/* ---- DIR/store.keys: the key index (storekeys.c, gossip(7) THE KEY INDEX) ---- */

/* fn's it is NULL for a watermark record. */
typedef int walk_fn(struct gossip_store *st, const struct store_item *it, uint64_t pos,
                    const uint8_t *p, void *ctx);
static int walk(struct gossip_store *st, uint64_t from, uint64_t end, walk_fn *fn, void *ctx);

static void stat_key(crypto_generichash_state *h, const char *path);

/* The store file's key: a BLAKE2b hash of what stat says of DIR/store and DIR/watermarks
 * (device, inode, size, modification and change times to the nanosecond). Any write to
 * either, with or without the lock, moves it. */
int store_file_key(const struct gossip_store *st, uint8_t key[16])
{
	crypto_generichash_state h;
	struct stat sb;
	if (stat(gossip_path(st->dir, "store"), &sb) < 0)
		return -1;
	crypto_generichash_init(&h, (const uint8_t *)"gossip file key", 15, 16);
	stat_key(&h, gossip_path(st->dir, "store"));
	stat_key(&h, gossip_path(st->dir, "watermarks"));
	crypto_generichash_final(&h, key, 16);
	return 0;
}

/* DIR/store.keys opened for this writer (again when another process made it anew). */
static int keys_env(struct gossip_store *st)
{
	if (st->keys && !store_keys_same_file(st->keys, st->dir)) {
		store_keys_close(st->keys);
		st->keys = NULL;
	}
	if (st->keys)
		return 0;
	if (!(st->keys = store_keys_open(st->dir, 0))) {
		/* Not an LMDB file of ours (damaged, or another program's): made again. */
		if (unlink(gossip_path(st->dir, "store.keys")) < 0 && errno == EISDIR)
			(void)rmdir(gossip_path(st->dir, "store.keys"));
		if (!(st->keys = store_keys_open(st->dir, 0)))
			return -1;
	}
	return 0;
}

/* Before and after this writer's own write to the store, under the lock: custody (and
 * the kept summary's key) hold only while the file is as this writer last knew it (a
 * write outside the lock since cannot be told from this one once it is made); after the
 * write, what it knows is the file as the write left it. */
static void custody_before(struct gossip_store *st)
{
	uint8_t k[16];
	if (st->custody && (store_file_key(st, k) < 0 || sodium_memcmp(k, st->ck, 16) != 0))
		st->custody = 0, st->lost = 1;
	if (st->key_ok && (root_key(st, k) < 0 || sodium_memcmp(k, st->key, 16) != 0))
		st->key_ok = 0;
}

/* The gap before the next read again, doubled (1 s to 5 minutes). */
static void reread_later(struct gossip_store *st)
{
	st->retry_gap = st->retry_gap ? st->retry_gap * 2 : 1000;
	if (st->retry_gap > 300000)
		st->retry_gap = 300000;
}

/* Whether this writer, out of custody at a lock, reads the file whole again now: at once
 * the first time custody is lost, or once a minute (or twice the gap) has passed since
 * the last read again; out of it sooner, or after a read that did not take custody,
 * from retry_at on. Never a forked child nor a closing handle (see store.h). */
static int reread_due(struct gossip_store *st)
{
	uint64_t now = gossip_mono_ms();
	if (st->detached || st->closing)
		return 0;
	if (st->lost) {
		st->lost = 0;
		uint64_t quiet = st->retry_gap * 2 > 60000 ? st->retry_gap * 2 : 60000;
		if (st->reread_at && now - st->reread_at < quiet) {
			reread_later(st);
			st->retry_at = st->reread_at + st->retry_gap;
		} else
			st->retry_gap = st->retry_at = 0;
	}
	return now >= st->retry_at;
}

/* The chain record in DIR/store.lock (gossip(7), THE STORE): "gschain2", the file's
 * key as the last write in custody left it, the chain's id, the sum of that writer's
 * index (isum_add), and a BLAKE2b-128 of the 56 bytes before it. Written in place under
 * the exclusive lock: a torn or missing record ends every chain, which costs only
 * custody (the next whole read takes it again). */
enum { CHAIN_REC = 72 };
struct chain {
	uint8_t key[16], gen[16], isum[16];
};

/* Whether DIR/store.lock is a plain file of one link, the one this handle holds: the
 * record is written only there (never through a link put in its place, into another file). */
static int lock_plain(const struct gossip_store *st)
{
	struct stat a, b;
	return st->lockfd >= 0 && fstat(st->lockfd, &a) == 0 && lstat(gossip_path(st->dir, "store.lock"), &b) == 0 &&
	       S_ISREG(b.st_mode) && b.st_nlink == 1 && a.st_ino == b.st_ino && a.st_dev == b.st_dev;
}

static int chain_get(const struct gossip_store *st, struct chain *c)
{
	uint8_t rec[CHAIN_REC], check[16];
	if (!lock_plain(st) || pread(st->lockfd, rec, sizeof rec, 0) != (ssize_t)sizeof rec ||
	    memcmp(rec, "gschain2", 8) != 0)
		return -1;
	crypto_generichash(check, 16, rec, 56, NULL, 0);
	if (sodium_memcmp(check, rec + 56, 16) != 0)
		return -1;
	memcpy(c->key, rec + 8, 16);
	memcpy(c->gen, rec + 24, 16);
	memcpy(c->isum, rec + 40, 16);
	return 0;
}

/* The sum a carried record holds (store_append): none that a whole read can match. */
static const uint8_t isum_unknown[16] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                                         0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};

static void chain_write(struct gossip_store *st, const uint8_t key[16], const uint8_t gen[16], const uint8_t isum[16])
{
	uint8_t rec[CHAIN_REC];
	memcpy(rec, "gschain2", 8);
	memcpy(rec + 8, key, 16);
	memcpy(rec + 24, gen, 16);
	memcpy(rec + 40, isum, 16);
	crypto_generichash(rec + 56, 16, rec, 56, NULL, 0);
	/* Not written: the others' chain ends, as the file's key moved. */
	if (lock_plain(st))
		(void)!pwrite(st->lockfd, rec, sizeof rec, 0);
	else if (!st->lock_warned && st->lockfd >= 0) {
		st->lock_warned = 1;
		gossip_warn("store: %s/store.lock is not the plain file of one link that this process locks (a hard "
		            "link to it, or one removed or put in its place): the writers cannot record their writes, "
		            "so each reads the store whole again after the others' (backed off up to every 5 "
		            "minutes); a backup made with cp -al links it too",
		            st->dir);
	}
}

/* After this writer's write in custody: the file is as its chain left it. */
void store_chain_put(struct gossip_store *st)
{
	chain_write(st, st->ck, st->gen, st->isum);
}

/* Whether the file at key fk is as the last write of this writer's chain left it: this
 * writer reads what was appended since, as every writer at its lock. */
static int chain_holds(const struct gossip_store *st, const uint8_t fk[16])
{
	struct chain c;
	struct stat sb;
	/* Never a file shorter than what this writer indexed (one put back from a snapshot,
	 * chain record and all). */
	return chain_get(st, &c) == 0 && sodium_memcmp(c.key, fk, 16) == 0 && sodium_memcmp(c.gen, st->gen, 16) == 0 &&
	       st->fd >= 0 && fstat(st->fd, &sb) == 0 && (uint64_t)sb.st_size >= st->end;
}

/* The file's key as this writer's write left it, taken at once after the write. */
static void custody_key(struct gossip_store *st)
{
	if (st->custody && store_file_key(st, st->ck) < 0)
		st->custody = 0, st->lost = 1;
	if (st->key_ok && root_key(st, st->key) < 0)
		st->key_ok = 0;
}

/* The same, and the chain record, once the index holds the write (an append's). */
static void custody_after(struct gossip_store *st)
{
	custody_key(st);
	if (st->custody)
		store_chain_put(st);
}

/* The hash of the (up to) 64 bytes of the store file before end. */
static int tail_hash(const struct gossip_store *st, uint64_t end, uint8_t h[16])
{
	uint8_t b[64];
	size_t n = end < sizeof b ? (size_t)end : sizeof b;
	if (pread(st->fd, b, n, (off_t)(end - n)) != (ssize_t)n)
		return -1;
	crypto_generichash(h, 16, b, n, NULL, 0);
	return 0;
}

/* Whether the index's meta record describes this store file up to an end within size. */
static int keys_match(const struct gossip_store *st, const struct store_keys_meta *m, uint64_t size)
{
	uint8_t h[16], boot[16];
	store_keys_boot(boot);
	return m->ino == st->ino && m->end <= size && sodium_memcmp(boot, m->boot, 16) == 0 &&
	       tail_hash(st, m->end, h) == 0 && sodium_memcmp(h, m->tail, 16) == 0;
}

/* For a whole write of the index: each row current in its slot, and each watermark
 * record, as the file holds them. */
static int keys_whole(struct gossip_store *st, const struct store_item *it, uint64_t pos,
                      const uint8_t *p, void *ctx)
{
	(void)p;
	(void)ctx;
	if (!it)
		kc_push(st, NULL, UINT64_MAX, pos, 1);
	else if (it->type != GOSSIP_T_EVENT) {
		const struct gossip_entry *e = find(st, it->slot);
		if (e && e->off == pos)
			kc_push(st, it->ikey, UINT64_MAX, pos, 0);
	}
	return st->kc_from == UINT64_MAX ? -1 : 0;
}

/* The slot of the message at off, read from the file (0, or -1 when there is none). */
static int slot_at(const struct gossip_store *st, uint64_t off, uint8_t *buf, uint8_t slot[16])
{
	struct gossip_msg m;
	size_t len;
	if (off >= st->end)
		return -1;
	size_t need = st->end - off < GOSSIP_MSG_MAX ? (size_t)(st->end - off) : GOSSIP_MSG_MAX;
	if (pread(st->fd, buf, need, (off_t)off) != (ssize_t)need ||
	    gossip_cbor_scan(buf, need, &gossip_msg_limits, NULL, &len) != GOSSIP_SCAN_OK ||
	    gossip_msg_decode(buf, len, &m) < 0)
		return -1;
	gossip_slot(slot, &m);
	return 0;
}

/* A change that replaces a row takes the old one out of the index only when the file
 * holds, at the old offset, a row of the same slot as the new one: a writer whose index
 * missed a change to the file (made outside the lock) never takes out another's row.
 * A row left in the index that a newer one supersedes costs a query one read. */
static void keys_check_olds(struct gossip_store *st, uint64_t from)
{
	uint8_t *buf = NULL, a[16], b[16];
	for (size_t i = 0; i < st->nkc; i++) {
		struct store_keys_change *c = &st->kc[i];
		if (c->wm || c->old == UINT64_MAX || c->now < from)
			continue;
		if (!buf && !(buf = malloc(GOSSIP_MSG_MAX))) {
			c->old = UINT64_MAX;
			continue;
		}
		if (slot_at(st, c->old, buf, a) < 0 || slot_at(st, c->now, buf, b) < 0 || memcmp(a, b, 16) != 0)
			c->old = UINT64_MAX;
	}
	free(buf);
}

/* Bring DIR/store.keys up to what this writer indexed, under the lock that indexed it:
 * the index changes only when the store does. A failure costs the index, never the
 * store, and is silent (the index is only a cache): the file stays behind the store (or
 * goes, when LMDB faulted on it), queries read what it lacks, and the index is made
 * whole again at the next change after a minute of backing off (at once when force).
 * The caller's error is kept. */
static void keys_write(struct gossip_store *st, int force);
static void keys_flush(struct gossip_store *st, int force)
{
	char err[sizeof st->dir + 256];
	snprintf(err, sizeof err, "%s", gossip_error());
	keys_write(st, force);
	gossip_seterr("%s", err);
}

static void keys_write(struct gossip_store *st, int force)
{
	struct store_keys_meta m, now;
	uint64_t t = gossip_mono_ms(), from;
	int rc, drop = 0;
	if (st->fd < 0 || (st->nkc == 0 && st->kc_from != 0 && st->kc_from != UINT64_MAX))
		return;
	if (st->kc_from == 0 && st->kc_held && st->nkc == st->kc_held)
		return;  /* as found to be held, and nothing since */
	if (!force && t < st->kc_at)
		return;  /* backing off after a failure */
	/* A bulk merge's changes wait (for 64 MiB of the store, ten seconds, or its end):
	 * each write of a B-tree keyed by hashes touches most of its pages, and many
	 * changes at once make the file anew in order (storekeys.c). The wait ends only at
	 * a lock that changed the store, so that the index changes only when it does; but a
	 * whole read of a process whose children write makes it anew at once. */
	if (!force && st->nkc >= KEYS_BULK && st->kc_from != UINT64_MAX && !(st->forks && st->kc_from == 0) &&
	    st->end - st->kc_from < (64u << 20) && (t - st->kc_at < 10000 || !st->appended))
		return;
	if (keys_env(st) < 0 || (rc = store_keys_meta_get(st->keys, &m)) < 0)
		goto failed;
	int ok = rc == 0 && keys_match(st, &m, st->end);
	now.ino = st->ino;
	now.end = st->end;
	custody_before(st);  /* a write outside the lock since its last check ends custody */
	if (tail_hash(st, st->end, now.tail) < 0) {
		gossip_seterr("store: cannot read %s/store: %s", st->dir, strerror(errno));
		goto failed;
	}
	int unchanged = ok && m.end == st->end;
	if (ok && st->kc_from == 0 && !st->kc_damage && !st->forks) {
		/* This writer read the whole file: the index is checked against what it read
		 * (damage in it, or a change it cannot see), and made anew unless it holds
		 * exactly that. (One whose children write makes it anew at once, below.) */
		from = 0;
		drop = 2;
	} else if (ok && st->kc_from != UINT64_MAX && st->kc_from <= m.end &&
	           !(st->kc_from == 0 && (st->kc_damage || st->forks))) {
		from = m.end;  /* the index holds what this writer read up to there */
		if (unchanged)
			goto done;  /* and that is all: nothing to write */
	} else if (st->kc_from == 0) {
		from = 0;  /* this writer read the whole file: its changes are the whole index */
		drop = 1;
	} else {
		/* Made whole from the file: the rows current in this writer's index. */
		st->nkc = 0;
		st->kc_from = 0;
		if (walk(st, 0, st->end, keys_whole, NULL) < 0 || st->kc_from == UINT64_MAX) {
			gossip_seterr("store: out of memory");
			goto failed;
		}
		from = 0;
		drop = 1;
	}
	if (!drop)
		keys_check_olds(st, from);
	int w = store_keys_write(st->keys, st->dir, drop, st->kc, st->nkc, from, &now, unchanged);
	if (w < 0)
		goto failed;
	if (w == 1) {
		/* It holds what this whole read found; but a file this writer did not make may
		 * be damaged where reading does not go: its first change makes the index anew
		 * (from these changes, kept until then), never in place. */
		st->kc_held = st->nkc;
		st->kc_at = t;
		return;
	}
done:
	st->kc_held = 0;
	st->nkc = 0;
	if (st->kccap > 65536) {  /* a whole read's: tens of MB, not kept for a few changes */
		free(st->kc);
		st->kc = NULL;
		st->kccap = 0;
	}
	st->kc_from = st->end;
	st->kc_damage = 0;
	st->kc_at = t;
	return;
failed:
	st->kc_held = 0;
	/* A file LMDB faulted on goes; one that only could not be written (a full disk)
	 * stays as it was, behind the store: queries read what it lacks. */
	if (st->keys && store_keys_faulted(st->keys))
		unlink(gossip_path(st->dir, "store.keys"));
	store_keys_close(st->keys);
	st->keys = NULL;
	st->nkc = 0;
	st->kc_from = UINT64_MAX;  /* made whole from the file next time */
	st->kc_at = t + 60000;
}

/* A query of one key: index its rows (and the watermark records) where DIR/store.keys
 * says they are, each read and verified as a whole read would; 1 when done, 0 when the
 * store must be read whole (no index, an index of another file or of more than it
 * holds, or a row that is not where or what the index says). */
static int partial_load(struct gossip_store *st, uint64_t size)
{
	struct store_keys *k = store_keys_open(st->dir, 1);
	struct store_keys_meta m;
	uint64_t *rows = NULL, *wms = NULL;
	size_t nrows = 0, nwms = 0, i = 0, j = 0;
	uint8_t ikey[16], *buf = NULL;
	int done = 0;
	key_id(ikey, (const uint8_t *)st->opts.key, strlen(st->opts.key));
	if (!k || store_keys_meta_get(k, &m) != 0 || !keys_match(st, &m, size) ||
	    store_keys_lookup(k, 1, ikey, 1 << 12, &wms, &nwms) < 0 ||
	    store_keys_lookup(k, 0, ikey, 1 << 16, &rows, &nrows) < 0 ||
	    !(buf = malloc(GOSSIP_MSG_MAX)))
		goto out;
	store_keys_close(k);
	k = NULL;
	st->partial = 1;
	/* In file order, as a whole read meets them. */
	while (i < nrows || j < nwms) {
		int wm = j < nwms && (i == nrows || wms[j] < rows[i]);
		uint64_t off = wm ? wms[j++] : rows[i++];
		size_t need, len;
		struct store_item it;
		if (off >= m.end)
			goto out;
		need = m.end - off < GOSSIP_MSG_MAX ? (size_t)(m.end - off) : GOSSIP_MSG_MAX;
		if (pread(st->fd, buf, need, (off_t)off) != (ssize_t)need)
			goto out;
		enum rec c = record_at(st, buf, need, &len, &it);
		if (wm ? c != REC_WM
		       : c != REC_OK || it.type == GOSSIP_T_EVENT || memcmp(it.ikey, ikey, 16) != 0 ||
		             store_index_item(st, &it, off) < 0)
			goto out;
	}
	st->end = m.end;
	done = 1;
out:
	store_keys_close(k);
	free(rows);
	free(wms);
	free(buf);
	if (!done && st->partial)
		reset_index(st);
	return done;
}

/* Take the lock, waiting for it unless nowait (then 1 when another process holds it). */
static int store_lock(struct gossip_store *st, int nowait)
{
	const char *path = gossip_path(st->dir, "store");
	struct stat sb;
	int ro = st->opts.readonly;
	if (st->lockfd >= 0 && flock(st->lockfd, (ro ? LOCK_SH : LOCK_EX) | (nowait ? LOCK_NB : 0)) < 0) {
		if (nowait && errno == EWOULDBLOCK)
			return 1;
		gossip_seterr("store: cannot lock %s/store.lock: %s", st->dir, strerror(errno));
		return -1;
	}
	st->locked = 1;
	/* The trust behind the visibility rule may have changed in place: each key's greatest
	 * visible row is found again. The kept summary is not: a caller that reloads trust
	 * calls gossip_store_set_visible, which remakes it (gossip.h). */
	st->epoch++;
	/* A new inode means another process compacted the store: index it afresh. */
	if (st->fd < 0 || stat(path, &sb) < 0 || (uint64_t)sb.st_ino != st->ino) {
		if (st->fd >= 0)
			close(st->fd);
		reset_index(st);
		st->ino = 0;
		/* Not blocking: a FIFO there would hold the open (and every read) for good. */
		st->fd = ro ? open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)
		            : open(path, O_RDWR | O_CREAT | O_APPEND | O_NONBLOCK | O_CLOEXEC, 0600);
		if (st->fd < 0 && ro && errno == ENOENT)
			return 0;  /* nothing stored yet: an empty store */
		if (st->fd < 0 || fstat(st->fd, &sb) < 0) {
			gossip_seterr("store: cannot open %s: %s", path, strerror(errno));
			gossip_store_unlock(st);
			return -1;
		}
		if (!S_ISREG(sb.st_mode) || fcntl(st->fd, F_SETFL, fcntl(st->fd, F_GETFL) & ~O_NONBLOCK) < 0) {
			gossip_seterr("store: %s is not a regular file (a FIFO, a device, a directory): "
			              "put the store back, or move it away", path);
			close(st->fd);
			st->fd = -1;
			gossip_store_unlock(st);
			return -1;
		}
		st->ino = (uint64_t)sb.st_ino;
		if (load_watermarks(st) < 0) {
			st->ino = 0;  /* read again at the next lock */
			gossip_store_unlock(st);
			return -1;
		}
	}
	int fresh = st->end == 0, again = 0;
	/* Custody (a writer's): taken by a whole read during which the file did not change,
	 * kept while the file is as this writer left it. */
	uint8_t fk[16];
	int fk_ok = !ro && store_file_key(st, fk) == 0;
	if (!ro && !fresh) {
		/* Only while the file is as this writer or its chain left it: a write by
		 * another writer whose whole read took in a write outside the lock (which this
		 * writer's index never saw) is not of its chain. */
		int had = st->custody, own = fk_ok && sodium_memcmp(fk, st->ck, 16) == 0;
		st->custody = had && fk_ok && (own || chain_holds(st, fk));
		/* As this writer left it, but the chain record is not its: one of another chain
		 * for the file as it is and an index of the same sum (a whole read since, while
		 * the record was lost) is joined; a lost, damaged or stale one is recorded again,
		 * so that a whole read of the file as it is joins this chain. */
		struct chain c;
		if (st->custody && own) {
			if (chain_get(st, &c) < 0 || sodium_memcmp(c.key, fk, 16) != 0)
				store_chain_put(st);
			else if (sodium_memcmp(c.isum, st->isum, 16) == 0)
				memcpy(st->gen, c.gen, 16);
		}
		st->lost |= had && !st->custody;
		memcpy(st->ck, fk, 16);
		int shrunk = st->fd >= 0 && fstat(st->fd, &sb) == 0 && (uint64_t)sb.st_size < st->end;
		/* A file shorter than the index (one put back, cut by hand) is read again at
		 * once by every writer, else its appends would be indexed at the wrong offsets. */
		if (fk_ok && !st->custody && (shrunk || reread_due(st))) {
			/* The file changed in a way no write in custody recorded: an append is
			 * read below, but a change in place (damage, a hand) would stay hidden
			 * from this index, and from the syncs it answers. Read it whole again
			 * (and so, in time, after a read that did not take custody). */
			gossip_warn("store: %s/store was changed by a write no writer recorded (another "
			            "program's, outside the lock, or one cut short): reading it whole again",
			            st->dir);
			reset_index(st);
			fresh = again = 1;
		}
	}
	/* The kept summary's key as the file is before the read: a change during the read
	 * moves it, and then nothing is recorded (root_record). Recorded only from a whole
	 * read, or from an index in custody. */
	st->key_ok = (fresh || st->custody) && st->keep_root && !ro && root_key(st, st->key) == 0;
	if (fresh && ro && st->opts.key && st->fd >= 0 && fstat(st->fd, &sb) == 0)
		(void)partial_load(st, (uint64_t)sb.st_size);
	if (st->nkc == 0 && st->kc_from != UINT64_MAX)
		st->kc_from = st->end;
	st->cut = 0;
	if (catch_up(st) < 0) {
		gossip_store_unlock(st);
		return -1;
	}
	st->trim_due |= fresh && st->forks && st->n > 65536;
	if (!ro && fresh) {
		/* Unchanged during the read, but for the torn tail it cut (the file was as the
		 * read found it up to the cut). */
		int cut = st->cut == 1 && fk_ok && sodium_memcmp(st->cutk, fk, 16) == 0;
		const uint8_t *as = st->cut == 0 ? fk : cut ? st->cutk2 : NULL;  /* as the read left it */
		st->custody = fk_ok && as && store_file_key(st, st->ck) == 0 && sodium_memcmp(st->ck, as, 16) == 0;
		/* Changed during the read: read again later, less often each time. */
		st->lost = 0;
		if (again) {
			st->reread_at = gossip_mono_ms();
			st->rereads++;
		}
		if (!st->custody) {
			reread_later(st);
			st->retry_at = gossip_mono_ms() + st->retry_gap;
		}
		/* The chain of the last write in custody when the file is as it left it; else
		 * one of its own, which every whole read of the file at this key joins. Only a
		 * read that made the index that chain's last writer held (the same sum) joins:
		 * a write outside the lock in the instant after a write in custody, before its
		 * key was taken, is in the file's key but not in that writer's index (which
		 * holds the message it damaged). Damage set aside is no bar: two whole reads
		 * of one file make one index, so the writers of a damaged store keep custody
		 * across each other's writes too, rather than each read it whole again. */
		struct chain c;
		int join = st->custody && !cut && chain_get(st, &c) == 0 && sodium_memcmp(c.key, fk, 16) == 0 &&
		           sodium_memcmp(c.isum, st->isum, 16) == 0;
		memcpy(st->gen, join ? c.gen : fk, 16);
		/* One in custody that joins none records its own chain (the cut too was this
		 * writer's write), so that the others' reads of the file as it is join it, and
		 * the appends of a writer out of custody carry it (store_append). */
		if (st->custody && !join) {
			if (cut)
				custody_key(st);
			store_chain_put(st);
		}
	}
	st->lock_ok = 1;
	/* DIR/watermarks lost: a writer makes it again from the store's watermark record. */
	if (fresh && !ro && access(gossip_path(st->dir, "watermarks"), F_OK) != 0 && errno == ENOENT)
		for (size_t i = 0; i < st->norigins; i++)
			if (st->origins[i].watermark) {
				if (write_watermarks(st) == 0) {
					gossip_warn("store: %s/watermarks was missing; made again from %s/store",
					            st->dir, st->dir);
					/* A write of this writer's (the file's key holds DIR/watermarks). */
					if (st->custody) {
						custody_key(st);
						store_chain_put(st);
					}
				}
				break;
			}
	return 0;
}

int gossip_store_lock(struct gossip_store *st)
{
	return store_lock(st, 0);
}

int gossip_store_trylock(struct gossip_store *st)
{
	return store_lock(st, 1);
}

void gossip_store_unlock(struct gossip_store *st)
{
	if (st->locked && st->lock_ok && !st->opts.readonly)
		keys_flush(st, 0);
	if (st->locked && st->lockfd >= 0)
		flock(st->lockfd, LOCK_UN);
	st->locked = st->key_ok = st->lock_ok = st->appended = 0;
	if (st->trim_due) {
		/* After a whole read, in a process whose children fork from it: the heap it
		 * freed (the read's and the index file's buffers) goes back to the system
		 * rather than be mapped into each child. */
		st->trim_due = 0;
#ifdef __GLIBC__
		malloc_trim(0);
#endif
	}
}

struct gossip_store *gossip_store_open(const char *dir, const struct gossip_store_opts *o)
{
	struct gossip_store *st = calloc(1, sizeof *st);
	if (!st) {
		gossip_seterr("store: out of memory");
		return NULL;
	}
	st->fd = st->lockfd = -1;
	st->epoch = 1;
	st->opts = o ? *o : gossip_store_defaults;
	snprintf(st->dir, sizeof st->dir, "%s", dir);
	if (st->opts.readonly) {
		/* No lock file (a read-only copy of a store) is no writer to wait for. */
		struct stat sb;
		if (stat(dir, &sb) < 0 ? errno != ENOENT : !S_ISDIR(sb.st_mode)) {
			gossip_seterr("store: cannot open %s: %s", dir, stat(dir, &sb) < 0 ? strerror(errno) : strerror(ENOTDIR));
			goto fail;
		}
		/* O_NONBLOCK: a fifo put there must not hold a query up (it locks as a file). */
		st->lockfd = open(gossip_path(dir, "store.lock"), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	} else if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
		gossip_seterr("store: cannot create %s: %s", dir, strerror(errno));
		goto fail;
	} else if ((st->lockfd = open(gossip_path(dir, "store.lock"), O_RDWR | O_CREAT | O_CLOEXEC, 0600)) < 0) {
		gossip_seterr("store: cannot open %s: %s", gossip_path(dir, "store.lock"), strerror(errno));
		goto fail;
	}
	if (!st->opts.lazy) {
		if (gossip_store_lock(st) < 0)
			goto fail;
		gossip_store_unlock(st);
	}
	return st;
fail:
	gossip_store_close(st);
	return NULL;
}

int gossip_store_detach(struct gossip_store *st)
{
	const char *path = gossip_path(st->dir, "store.lock");
	if (st->locked) {
		gossip_seterr("store: detached under the lock");
		return -1;
	}
	int fd = st->opts.readonly ? open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)
	                           : open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0 && !st->opts.readonly) {
		gossip_seterr("store: cannot open %s: %s", path, strerror(errno));
		return -1;
	}
	if (st->lockfd >= 0)
		close(st->lockfd);
	st->lockfd = fd;
	/* LMDB's handle is not for a forked child: it opens its own when it writes. */
	store_keys_forget(st->keys);
	st->keys = NULL;
	st->detached = 1;
	/* Large blocks from fresh maps from now on (LMDB's own, for one): glibc would
	 * otherwise carve them out of freed heap shared with the parent, and clearing them
	 * copies each page. */
#ifdef M_MMAP_THRESHOLD
	mallopt(M_MMAP_THRESHOLD, 128 * 1024);
#endif
	return 0;
}

void gossip_store_close(struct gossip_store *st)
{
	if (!st)
		return;
	gossip_store_unlock(st);
	st->closing = 1;  /* a lock that finds custody lost does not read the file again now */
	/* What this writer indexed and the index lacks is written now, unless another
	 * process holds the lock (it reads those bytes, and writes them itself). */
	if (!st->opts.readonly && st->fd >= 0 && (st->nkc || st->kc_from == UINT64_MAX || st->root_due) &&
	    gossip_store_trylock(st) == 0) {
		struct store_digest d;
		int made = 0;
		st->root_pending = 0;
		if (st->root_due && st->key_ok && store_digest_make(&d, st) == 0) {
			store_digest_free(&d);
			made = st->root_pending;
		}
		keys_flush(st, 1);
		st->lock_ok = 0;
		gossip_store_unlock(st);
		if (made)
			gossip_store_summary_save(st);
	}
	store_keys_close(st->keys);
	free(st->kc);
	if (st->fd >= 0)
		close(st->fd);
	if (st->lockfd >= 0)
		close(st->lockfd);
	free(st->tab);
	free(st->origins);
	free(st->otab);
	for (size_t i = 0; i < st->nregs; i++)
		free(st->regs[i].slots);
	free(st->regs);
	free(st->rtab);
	free(st->sums);
	free(st->dmg);
	gossip_buf_free(&st->sum_new);
	if (st->sum) {
		free(st->sum->l2);
		free(st->sum->cnt);
		free(st->sum->dirty);
		free(st->sum->dlist);
		free(st->sum->heap);
		free(st->sum->tabs[0]);
		free(st->sum->tabs[1]);
		free(st->sum->ocnt);
		free(st->sum);
	}
	free(st);
}

void gossip_store_forks_writers(struct gossip_store *st)
{
	st->forks = 1;
	st->trim_due |= st->n > 65536;  /* a whole read at the open, before this */
}

const char *gossip_store_dir(const struct gossip_store *st)
{
	return st->dir;
}

/* A delete or an event older than its time to live is gone from the state; but not
 * before its version is in the past too, so that collecting it never raises a watermark
 * ahead of the clock (where it would drop its origin's next messages). */
static int expired(const struct gossip_store *st, uint8_t type, uint64_t time, uint64_t version,
                   uint64_t now)
{
	if (version > now)
		return 0;
	/* As an age, so that a time near 2^64 cannot wrap into the past. */
	uint64_t age = gossip_age_ms(now, time);
	if (type == GOSSIP_T_DEL)
		return time <= now && age >= st->opts.tombstone_ttl_ms;
	if (type == GOSSIP_T_EVENT)
		return time <= now && age >= st->opts.event_ttl_ms;
	return 0;
}

int store_superseded_item(const struct gossip_store *st, const struct store_item *it)
{
	uint32_t rid = it->reg ? reg_find(st, it->kid, NULL) : UINT32_MAX;
	return rid != UINT32_MAX && reg_below(st, &st->regs[rid], it->version, it->origin);
}

enum gossip_class store_classify_item(const struct gossip_store *st, const struct store_item *it)
{
	const struct gossip_entry *e = find(st, it->slot);
	if (e) {
		if (e->version == it->version && memcmp(e->hash, it->hash, 16) == 0)
			return GOSSIP_DUP;
		if (!replaces(it, e))
			return GOSSIP_STALE;
	}
	/* Superseded by a newer write of the key, or below its floor. */
	if (store_superseded_item(st, it))
		return GOSSIP_STALE;
	if (e)
		return GOSSIP_NEW;
	if (store_below_watermark(st, it) ||
	    expired(st, it->type, it->time, it->version, gossip_now_ms()))
		return GOSSIP_STALE;
	return GOSSIP_NEW;
}

const struct gossip_entry *store_rival(const struct gossip_store *st, const struct store_item *it)
{
	const struct gossip_entry *e = find(st, it->slot);
	return e && e->version == it->version && memcmp(e->hash, it->hash, 16) != 0 ? e : NULL;
}

int store_below_watermark(const struct gossip_store *st, const struct store_item *it)
{
	uint32_t id = origin_find(st, it->origin, NULL);
	return id != UINT32_MAX && it->version <= st->origins[id].watermark;
}

enum gossip_class gossip_store_classify(const struct gossip_store *st, const struct gossip_msg *m,
                                        const uint8_t slot[16])
{
	struct store_item it;
	store_item_of(&it, m, m->nbytes);
	memcpy(it.slot, slot, 16);
	return store_classify_item(st, &it);
}

/* Whether this writer, out of custody, writes to the file as the last recorded write left
 * it (the chain record at the file's key, just before the write): CARRY is that record. */
static int carries(const struct gossip_store *st, struct chain *carry)
{
	uint8_t fk[16];
	return !st->custody && store_file_key(st, fk) == 0 && chain_get(st, carry) == 0 &&
	       sodium_memcmp(carry->key, fk, 16) == 0;
}

/* After that write: the chain carried to the key it left, with the chain's id and no sum. */
static void carry_put(struct gossip_store *st, const struct chain *carry)
{
	uint8_t fk[16];
	if (store_file_key(st, fk) == 0)
		chain_write(st, fk, carry->gen, isum_unknown);
}

/* A batch's bytes of new messages: what its loop in store_append writes, as far as the
 * index before it tells. Each new message is written but one that an earlier message of
 * the batch supersedes: in its slot (replaces), or in its register, where the greatest
 * visible row wins (row_cmp; one of an origin the store hides supersedes nothing).
 * Counting them all would fail a batch that fits. */
struct room_row {
	uint8_t id[16];  /* the register's id, or the slot */
	size_t at;  /* its place in the batch */
	const struct store_item *it;
};

static int room_cmp(const void *a, const void *b)
{
	const struct room_row *x = a, *y = b;
	int c = memcmp(x->id, y->id, 16);
	return c ? c : x->at < y->at ? -1 : x->at > y->at;
}

/* Whether it, after best of its group in the batch, is written too. */
static int room_after(const struct store_item *it, const struct store_item *best)
{
	if (it->version == best->version && memcmp(it->origin, best->origin, 32) == 0)
		return memcmp(it->hash, best->hash, 16) < 0;  /* one slot: the lower hash */
	if (!it->reg)
		return it->version > best->version;
	return row_cmp(it->version, it->origin, best->version, best->origin) > 0;
}

static uint64_t room_needed(const struct gossip_store *st, const struct store_item *it, size_t n)
{
	struct room_row *v = malloc((n ? n : 1) * sizeof *v);
	size_t k = 0;
	uint64_t len = 0;
	if (!v)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (store_classify_item(st, &it[i]) == GOSSIP_NEW) {
			memcpy(v[k].id, it[i].reg ? it[i].kid : it[i].slot, 16);
			v[k].at = i;
			v[k++].it = &it[i];
		}
	qsort(v, k, sizeof *v, room_cmp);
	for (size_t i = 0, j; i < k; i = j) {
		const struct store_item *best = NULL;
		for (j = i; j < k && memcmp(v[j].id, v[i].id, 16) == 0; j++)
			if (!best || room_after(v[j].it, best)) {
				len += v[j].it->len;
				if (!v[j].it->reg || !st->visible || st->visible(st->visible_ctx, v[j].it->origin))
					best = v[j].it;
			}
	}
	free(v);
	return len;
}

/* Room at the end of the file for a batch, taken before any of it is indexed (the size
 * stays) when the file system is near full (less free than the batch and 64 MiB), or
 * for a minute after a batch found no room (a quota: the free space does not show it):
 * with no room it fails here, with nothing to undo, rather than at its write, which
 * costs a cut and a whole read of the store. Room a failed try took is given back (ext4
 * keeps it). Taking room moves the file's times (ext4, tmpfs): a write of this writer's,
 * recorded as an append's (custody, or the carried record of one out of it). A batch
 * past the file size limit (ulimit -f) fails here too. A file system that cannot say
 * (no fallocate), or a disk filled by another program after the check, leave it to the
 * write. */
static int store_room(struct gossip_store *st, const struct store_item *it, size_t n)
{
	struct statvfs vs;
	struct stat sb;
	struct rlimit rl;
	uint64_t most = 0, len, cap = UINT64_MAX;
	int e = 0;
	for (size_t i = 0; i < n; i++)
		most += it[i].len;
	if (!most || fstat(st->fd, &sb) < 0)
		return 0;
	if (getrlimit(RLIMIT_FSIZE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
		cap = (uint64_t)rl.rlim_cur;
	int near = gossip_mono_ms() < st->room_until ||
	           (fstatvfs(st->fd, &vs) == 0 && (uint64_t)vs.f_bavail * vs.f_frsize < most + (64u << 20));
	if ((!near && (uint64_t)sb.st_size + most <= cap) || !(len = room_needed(st, it, n)))
		return 0;
	if ((uint64_t)sb.st_size + len > cap) {
		gossip_seterr("store: cannot write %s/store: %s (the file size limit, ulimit -f, is %" PRIu64
		              " bytes; the store is %" PRIu64 ", the batch %" PRIu64 ")",
		              st->dir, strerror(EFBIG), cap, (uint64_t)sb.st_size, len);
		return -1;
	}
	if (!near)
		return 0;
#ifdef FALLOC_FL_KEEP_SIZE
	struct chain carry;
	custody_before(st);
	int carried = carries(st, &carry), r;
	while ((r = fallocate(st->fd, FALLOC_FL_KEEP_SIZE, sb.st_size, (off_t)len)) < 0 && errno == EINTR)
		;
	if (r < 0) {
		e = errno;
		(void)!ftruncate(st->fd, sb.st_size);
	}
	custody_after(st);
	if (carried)
		carry_put(st, &carry);
#endif
	if (e != ENOSPC && e != EDQUOT && e != EFBIG)
		return 0;
	if (e != EFBIG)
		st->room_until = gossip_mono_ms() + 60000;
	gossip_seterr("store: cannot write %s/store: %s", st->dir, strerror(e));
	return -1;
}

/* The summary recorded (DIR/store.root) as this writer's write (an append, room taken)
 * leaves the file, when the lock read it whole or kept custody (the key was taken again
 * after the write): made now when that is cheap (few buckets to hash again, or a small
 * store), else at the end of a bulk merge (gossip_store_close). 1: a record to save. */
static int append_record(struct gossip_store *st)
{
	if (!st->key_ok)
		return 0;
	if (!(st->sum && st->sum->valid ? st->sum->ndirty < ROOT_BULK : st->n < 16 * ROOT_BULK)) {
		st->root_due = 1;
		return 0;
	}
	struct store_digest d;
	int made = 0;
	st->root_pending = 0;
	if (store_digest_make(&d, st) == 0) {
		store_digest_free(&d);
		made = st->root_pending;
	}
	st->root_due = 0;
	return made;
}

int store_append(struct gossip_store *st, const struct store_item *it, uint8_t *bytes,
                 size_t n, int durable, int record, enum gossip_class *cls)
{
	size_t at = 0, out = 0;
	int e = 0;
	if (gossip_store_lock(st) < 0)
		return -1;
	uint64_t start = st->end;
	uint8_t isum[16];  /* the index's sum before the batch (fail) */
	memcpy(isum, st->isum, 16);
	if (store_room(st, it, n) < 0) {
		/* The failed try moved the file's times (the truncate that gives room back): the
		 * kept summary is recorded again for the file as it is, the index unchanged. */
		char why[512];
		snprintf(why, sizeof why, "%s", gossip_error());
		int made = record && append_record(st);
		gossip_store_unlock(st);
		if (made)
			gossip_store_summary_save(st);
		gossip_seterr("%s", why);
		return -1;
	}
	for (size_t i = 0; i < n; at += it[i++].len) {
		cls[i] = store_classify_item(st, &it[i]);
		if (cls[i] != GOSSIP_NEW)
			continue;
		if (store_index_item(st, &it[i], start + out) < 0)
			goto fail;
		memmove(bytes + out, bytes + at, it[i].len);
		out += it[i].len;
	}
	if (out)
		custody_before(st);
	/* Out of custody, this writer's index may not be the file's; but its append to a
	 * file as the last recorded write left it is one the chain's writers read as they
	 * read any append: recorded, with the chain's id and no sum (nobody joins by it),
	 * so that they keep custody across it (a node's sync child, forked while observe
	 * was out of custody, or the pipeline's merge, while it waits to read again). */
	struct chain carry;
	int carried = out && carries(st, &carry);
	if (out && gossip_write_all(st->fd, bytes, out) < 0) {
		e = errno;
		gossip_seterr("store: cannot write %s/store: %s", st->dir, strerror(e));
		goto unforeseen;
	}
	/* The file's key as this write left it, taken at once (fdatasync moves no time it
	 * holds): a write outside the lock after it is one no writer in custody made. */
	if (out)
		custody_after(st);
	if (carried)
		carry_put(st, &carry);
	if (out && durable && fdatasync(st->fd) < 0) {
		e = errno;
		gossip_seterr("store: cannot write %s/store: %s", st->dir, strerror(e));
		goto unforeseen;
	}
	if (out)
		st->appended = 1;
	st->end += out;
	/* Verified by the merger (or gossip-listen): their hashes go to DIR/store.sum. */
	for (size_t i = 0; i < n; i++)
		if (cls[i] == GOSSIP_NEW && sum_add(st, it[i].hash) == 0)
			(void)gossip_buf_put(&st->sum_new, it[i].hash, 16);
	sum_flush(st);
	int made = record && out && append_record(st);
	gossip_store_unlock(st);
	if (made)  /* only the record made here: not one a sync made and did not keep */
		gossip_store_summary_save(st);
	return 0;
unforeseen:
	/* No room that store_room did not see (a quota): it takes room for the next batches. */
	if (e == ENOSPC || e == EDQUOT)
		st->room_until = gossip_mono_ms() + 60000;
fail:
	/* Nothing of this batch counts: cut what may have been written and index afresh. */
	st->failed++;
	char why[512];
	snprintf(why, sizeof why, "%s", gossip_error());
	if (ftruncate(st->fd, (off_t)start) == 0) {
		uint8_t fk[16];
		int had = st->custody, fk_ok = store_file_key(st, fk) == 0;
		reset_index(st);
		st->cut = 0;
		int whole = catch_up(st) == 0;
		/* The file is as it was before the batch: the read took custody when the file
		 * did not change during it (as a lock's whole read does), else the next lock
		 * would read it whole once more, and say another program wrote it. This
		 * writer's chain goes on when it held it and the read made the index it had
		 * (damage a change in place hid from the chain would not); else a chain of
		 * its own. */
		st->custody = whole && fk_ok && st->cut == 0 && store_file_key(st, st->ck) == 0 &&
		              sodium_memcmp(st->ck, fk, 16) == 0;
		st->lost = 0;
		if (st->custody) {
			if (!had || sodium_memcmp(isum, st->isum, 16) != 0)
				memcpy(st->gen, fk, 16);
			store_chain_put(st);
		}
		st->key_ok = st->custody && st->keep_root && root_key(st, st->key) == 0;
	} else {
		/* Not cut (the file may hold part of the batch): the index, which holds all of
		 * it, is dropped; the next lock reads the file whole, as it is. */
		reset_index(st);
		st->custody = st->key_ok = st->lost = 0;
	}
	gossip_seterr("%s", why);
	gossip_store_unlock(st);
	return -1;
}

int store_sync(struct gossip_store *st)
{
	if (fdatasync(st->fd) < 0) {
		gossip_seterr("store: cannot sync %s/store to disk: %s", st->dir, strerror(errno));
		return -1;
	}
	return 0;
}

int store_compact_if_wasteful(struct gossip_store *st)
{
	if (st->dead_bytes <= COMPACT_MIN || st->dead_bytes <= st->live_bytes ||
	    st->dead_bytes < st->compact_retry)
		return 0;
	uint64_t dead = st->dead_bytes;
	if (gossip_store_compact(st, NULL, NULL) == 0) {
		st->compact_retry = 0;
		return 0;
	}
	if (!st->compact_retry)
		gossip_warn("%s; nothing stored is lost, and compaction is tried again later",
		            gossip_error());
	st->compact_retry = dead + dead / 16;
	return 0;
}

int store_read(struct gossip_store *st, const struct gossip_entry *e, uint8_t *buf)
{
	uint8_t h[16];
	if (pread(st->fd, buf, e->len, (off_t)e->off) != (ssize_t)e->len) {
		gossip_seterr("store: cannot read %s/store: %s", st->dir, strerror(errno));
		return -1;
	}
	crypto_generichash(h, 16, buf, e->len, NULL, 0);
	if (memcmp(h, e->hash, 16) != 0) {
		gossip_seterr("store: %s/store: the message at offset %llu changed on disk since it "
		              "was verified; it is left out, and the store is read again",
		              st->dir, (unsigned long long)e->off);
		st->ino = 0;  /* the next lock indexes afresh, and quarantines it */
		return -2;
	}
	return 0;
}

/* ---- compaction and reading ---- */

static int by_offset(const void *a, const void *b)
{
	const struct gossip_entry *x = *(struct gossip_entry *const *)a;
	const struct gossip_entry *y = *(struct gossip_entry *const *)b;
	return x->off < y->off ? -1 : x->off > y->off;
}

/* The current entries (expired and hidden ones left out) in store order. */
static struct gossip_entry **current(struct gossip_store *st, size_t *n, int slot_order);

static int by_slot(const void *a, const void *b)
{
	return memcmp((*(struct gossip_entry *const *)a)->slot, (*(struct gossip_entry *const *)b)->slot,
	              16);
}

static struct gossip_entry **current(struct gossip_store *st, size_t *n, int slot_order)
{
	uint64_t now = gossip_now_ms();
	struct gossip_entry **v = malloc((st->n ? st->n : 1) * sizeof *v);
	*n = 0;
	if (!v) {
		gossip_seterr("out of memory");
		return NULL;
	}
	/* Each key's greatest visible row, found once: a row is current when it is that row
	 * (and above the floor, which that row is unless it is collected). */
	const struct gossip_entry **top = calloc(st->nregs ? st->nregs : 1, sizeof *top);
	if (!top) {
		free(v);
		gossip_seterr("out of memory");
		return NULL;
	}
	for (size_t r = 0; r < st->nregs; r++)
		top[r] = reg_top(st, &st->regs[r]);
	for (size_t i = 0; i < st->cap; i++) {
		const struct gossip_entry *e = &st->tab[i];
		if (!e->used || expired(st, e->type, e->time, e->version, now) || !visible(st, e))
			continue;
		if (e->reg != UINT32_MAX) {
			const struct store_reg *g = &st->regs[e->reg];
			if (top[e->reg] != e ||
			    (g->floor_time &&
			     row_cmp(e->version, st->origins[e->origin].pk, g->floor_version, g->floor_origin) <= 0))
				continue;
		}
		v[(*n)++] = &st->tab[i];
	}
	free(top);
	qsort(v, *n, sizeof *v, slot_order ? by_slot : by_offset);
	return v;
}

static int write_watermarks(struct gossip_store *st)
{
	struct gossip_buf b = {0};
	char line[128], b64[45];
	int r;
	for (size_t i = 0; i < st->norigins; i++) {
		if (!st->origins[i].watermark)
			continue;
		gossip_b64(b64, st->origins[i].pk, 32);
		snprintf(line, sizeof line, "%s %" PRIu64 "\n", b64, st->origins[i].watermark);
		if (gossip_buf_put(&b, line, strlen(line)) < 0) {
			gossip_buf_free(&b);
			return -1;
		}
	}
	r = gossip_write_atomic(gossip_path(st->dir, "watermarks"), b.p ? (char *)b.p : "", b.len,
	                        0600, 0);
	gossip_buf_free(&b);
	return r;
}

/* Write what w holds to fd (empty it; freed on failure). */
static int flush_to(int fd, struct gossip_buf *w, const char *name)
{
	if (w->len && gossip_write_all(fd, w->p, w->len) < 0) {
		gossip_seterr("store: cannot write %s: %s", name, strerror(errno));
		gossip_buf_free(w);
		return -1;
	}
	w->len = 0;
	return 0;
}

int gossip_store_compact(struct gossip_store *st, uint64_t *before, uint64_t *after)
{
	char tmp[4200];
	uint8_t *buf = NULL;
	struct gossip_entry **v = NULL, *tab = NULL;
	size_t n, cap = st->cap;
	int fd = -1, r = -1;
	uint64_t now = gossip_now_ms(), off = 0;

	if (gossip_store_lock(st) < 0)
		return -1;
	custody_before(st);
	if (before)
		*before = st->end;
	/* Expired deletes and events go; their versions become the origins' watermarks, so
	 * no late copy of what they deleted can come back. Hidden messages (of a signer the
	 * program no longer trusts) go too, with no watermark: trusted again, its messages
	 * may come back from other stores. */
	for (size_t i = 0; i < st->cap; i++) {
		struct gossip_entry *e = &st->tab[i];
		if (!e->used || !expired(st, e->type, e->time, e->version, now))
			continue;
		if (e->version > st->origins[e->origin].watermark)
			st->origins[e->origin].watermark = e->version;
		/* A del that is its key's greatest row leaves a floor: no row of the key at or
		 * below it comes back, from whichever origin (gossip(7)). */
		if (e->reg != UINT32_MAX && visible(st, e) && !superseded(st, e))
			floor_raise(&st->regs[e->reg], e->version, st->origins[e->origin].pk, e->time);
	}
	for (size_t i = 0; i < st->nregs; i++)
		if (st->regs[i].floor_time && gossip_age_ms(now, st->regs[i].floor_time) >= floor_ttl_ms &&
		    st->regs[i].floor_time <= now)
			st->regs[i].floor_time = 0;
	if (!(v = current(st, &n, 0)) || !(buf = malloc(GOSSIP_MSG_MAX)) ||
	    !(tab = calloc(cap, sizeof *tab)))
		goto out;
	snprintf(tmp, sizeof tmp, "%s/store.new", st->dir);
	(void)unlink(tmp);  /* never through a link put there (into the store, say) */
	if ((fd = open(tmp, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600)) < 0) {
		gossip_seterr("store: cannot create %s: %s", tmp, strerror(errno));
		goto out;
	}
	/* The watermarks go first, inside the store: DIR/watermarks is only their cache. */
	struct gossip_buf w = {0};
	if (wm_encode(st, &w) < 0) {
		gossip_seterr("store: out of memory");
		gossip_buf_free(&w);
		goto out;
	}
	off = w.len;
	for (size_t i = 0; i < n; i++) {
		struct gossip_entry *e = v[i];
		if (store_read(st, e, buf) < 0) {
			gossip_buf_free(&w);
			goto out;
		}
		if (gossip_buf_put(&w, buf, e->len) < 0) {
			gossip_seterr("store: out of memory");
			gossip_buf_free(&w);
			goto out;
		}
		if (w.len >= CHUNK && flush_to(fd, &w, tmp) < 0)
			goto out;
		e->off = off;
		off += e->len;
	}
	if (flush_to(fd, &w, tmp) < 0)
		goto out;
	gossip_buf_free(&w);
	if (fsync(fd) < 0 || write_watermarks(st) < 0 ||
	    rename(tmp, gossip_path(st->dir, "store")) < 0) {
		gossip_seterr("store: cannot replace %s/store: %s", st->dir, strerror(errno));
		goto out;
	}
	custody_key(st);  /* the new file's key at once, as an append takes it */
	int dfd = open(st->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0) {
		fsync(dfd);
		close(dfd);
	}
	sum_rewrite(st, v, n);
	/* The new file is ours: index = the kept entries at their new offsets; each key's
	 * greatest row is its kept one (what a reader of the new file finds). */
	for (size_t i = 0; i < st->nregs; i++) {
		st->regs[i].top_origin = UINT32_MAX;
		st->regs[i].nslots = 0;
	}
	memset(st->isum, 0, 16);
	for (size_t i = 0; i < n; i++) {
		size_t j = home(v[i]->slot, cap);
		while (tab[j].used)
			j = (j + 1) & (cap - 1);
		tab[j] = *v[i];
		isum_add(st, v[i]->hash, 1);
		if (v[i]->reg != UINT32_MAX) {
			struct store_reg *g = &st->regs[v[i]->reg];
			g->top_version = v[i]->version;
			g->top_origin = v[i]->origin;
			g->top_len = v[i]->len;
			(void)reg_add_slot(g, v[i]->slot);  /* it has room: the list only shrank */
		}
	}
	free(st->tab);
	st->tab = tab;
	tab = NULL;
	st->n = n;
	regs_prune(st);
	st->epoch++;
	mk_invalidate(st);  /* floors may have moved: made again at the next digest */
	close(st->fd);
	st->fd = fd;
	fd = -1;
	struct stat sb;
	fstat(st->fd, &sb);
	st->ino = (uint64_t)sb.st_ino;
	st->end = st->live_bytes = off;
	st->dead_bytes = 0;
	st->nkc = 0;
	st->kc_from = UINT64_MAX;  /* a new file: its index is made whole from it */
	if (st->custody)
		store_chain_put(st);  /* with the sum of the index as the new file's */
	if (after)
		*after = off;
	r = 0;
out:
	if (fd >= 0) {
		close(fd);
		unlink(tmp);
	}
	if (r < 0) {
		/* Offsets may be half rewritten: index the unchanged file afresh. */
		reset_index(st);
		catch_up(st);
	}
	free(tab);
	free(v);
	free(buf);
	gossip_store_unlock(st);
	return r;
}

/* Whether an indexed entry is current: what current() keeps. */
static int is_current(const struct gossip_store *st, const struct gossip_entry *e, uint64_t now)
{
	return !expired(st, e->type, e->time, e->version, now) && visible(st, e) && !superseded(st, e);
}

struct each_walk {
	gossip_each_fn *fn;
	void *ctx;
	uint64_t now;
	int warned;
};

/* A message of the file is handed over when the index holds it at this offset (not
 * replaced since) and it is current. */
static int each_one(struct gossip_store *st, const struct store_item *it, uint64_t pos,
                    const uint8_t *p, void *ctx)
{
	struct each_walk *w = ctx;
	if (!it)
		return 0;
	const struct gossip_entry *e = find(st, it->slot);
	if (!e || e->off != pos)
		return 0;
	if (memcmp(e->hash, it->hash, 16) != 0) {
		/* Changed on disk since it was indexed: left out, with one line. */
		if (!w->warned++)
			gossip_warn("store: %s/store: the message at offset %llu changed on disk since it "
			            "was verified; it is left out, and the store is read again",
			            st->dir, (unsigned long long)pos);
		st->ino = 0;
		return 0;
	}
	return is_current(st, e, w->now) ? w->fn(w->ctx, e, p) : 0;
}

int gossip_store_each(struct gossip_store *st, uint64_t since, gossip_each_fn *fn, void *ctx)
{
	size_t n;
	int r = 0;
	uint8_t *buf;
	/* What was stored since an offset: read from the file, so that the cost is that of
	 * what is new, not of the store (a node looks every second). */
	if (since > 0) {
		struct each_walk w = {fn, ctx, gossip_now_ms(), 0};
		return walk(st, since, st->end, each_one, &w);
	}
	struct gossip_entry **v = current(st, &n, 0);
	if (!v || !(buf = malloc(GOSSIP_MSG_MAX))) {
		free(v);
		return -1;
	}
	/* A message changed on disk since it was indexed is left out, with one line. */
	for (size_t i = 0, warned = 0; i < n && r == 0; i++) {
		int k = store_read(st, v[i], buf);
		if (k == -2 && !warned++)
			gossip_warn("%s", gossip_error());
		r = k == -2 ? 0 : k < 0 ? -1 : fn(ctx, v[i], buf);
	}
	free(buf);
	free(v);
	return r;
}

struct row {
	struct gossip_entry *e;
	const uint8_t *pk;
};

static int by_row(const void *a, const void *b)
{
	const struct row *x = a, *y = b;
	return row_cmp(x->e->version, x->pk, y->e->version, y->pk);
}

const char *gossip_store_row_state(const struct gossip_store *st, const struct gossip_entry *e)
{
	if (superseded(st, e))
		return "superseded";
	if (expired(st, e->type, e->time, e->version, gossip_now_ms()))
		return "expired";
	return e->reg == UINT32_MAX ? "current" : "wins";
}

/* What the slot of key by origin o holds, if anything (the key's own bytes are checked
 * when the row is read). */
static const struct gossip_entry *row_of(const struct gossip_store *st, const uint8_t *key,
                                         size_t keylen, uint32_t o)
{
	struct gossip_msg m = {0};
	uint8_t slot[16];
	m.type = GOSSIP_T_SET;
	memcpy(m.origin, st->origins[o].pk, 32);
	m.key = key;
	m.keylen = keylen;
	gossip_slot(slot, &m);
	return find(st, slot);
}

int gossip_store_rows(struct gossip_store *st, const uint8_t *key, size_t keylen,
                      gossip_each_fn *fn, void *ctx)
{
	uint8_t kid[16], *buf = NULL;
	int r = 0;
	size_t n = 0;
	const struct store_reg *g = NULL;
	if (gossip_key_is_register(key, keylen)) {
		uint32_t rid;
		key_id(kid, key, keylen);
		if ((rid = reg_find(st, kid, NULL)) == UINT32_MAX)
			return 0;
		g = &st->regs[rid];
	}
	/* Found through the index, not by a look at every entry: a register's rows are in
	 * the slots it lists (one per origin that wrote it), a _ key's in each origin's slot
	 * for it. At most one row per origin. */
	size_t most = g ? g->nslots : st->norigins;
	struct row *v = malloc((most ? most : 1) * sizeof *v);
	if (!v || !(buf = malloc(GOSSIP_MSG_MAX))) {
		free(v);
		gossip_seterr("out of memory");
		return -1;
	}
	for (size_t i = 0; i < most; i++) {
		const struct gossip_entry *e = g ? find(st, reg_slot(g, (uint32_t)i)) : row_of(st, key, keylen, (uint32_t)i);
		if (e && visible(st, e) && (e->type == GOSSIP_T_SET || e->type == GOSSIP_T_DEL) &&
		    (g ? e->reg == (uint32_t)(g - st->regs) : e->reg == UINT32_MAX))
			v[n++] = (struct row){(struct gossip_entry *)e, st->origins[e->origin].pk};
	}
	qsort(v, n, sizeof *v, by_row);
	for (size_t i = 0; i < n && r == 0; i++) {
		struct gossip_msg m;
		int k = store_read(st, v[i].e, buf);
		if (k == -2) {
			gossip_warn("%s", gossip_error());
			continue;
		}
		if (k < 0) {
			r = -1;
			break;
		}
		/* The key itself, not only its id (a _ key is found by its bytes alone). */
		if (gossip_msg_decode(buf, v[i].e->len, &m) == 0 && m.keylen == keylen &&
		    memcmp(m.key, key, keylen) == 0)
			r = fn(ctx, v[i].e, buf);
	}
	free(buf);
	free(v);
	return r;
}

int gossip_store_each_new(struct gossip_store *st, struct gossip_store_cursor *cur,
                          gossip_each_fn *fn, void *ctx)
{
	if (cur->ino != st->ino)
		cur->off = 0;  /* compacted: offsets changed, look at everything again */
	int r = gossip_store_each(st, cur->off, fn, ctx);
	cur->off = st->end;
	cur->ino = st->ino;
	return r;
}

int gossip_store_read(struct gossip_store *st, const struct gossip_entry *e, uint8_t *buf)
{
	return store_read(st, e, buf) < 0 ? -1 : 0;
}

/* ---- following the store: each message once, as it is stored ---- */

struct gossip_store_follower {
	struct gossip_store *st;
	uint64_t ino, off;  /* the store file the follower has read, and how far */
	uint64_t size;  /* its size then (a torn tail beyond off is not read again) */
};

/* DIR/store's inode and size (0 and 0 when there is none). */
static void store_stat(const struct gossip_store *st, uint64_t *ino, uint64_t *size)
{
	struct stat sb;
	*ino = *size = 0;
	if (stat(gossip_path(st->dir, "store"), &sb) == 0) {
		*ino = (uint64_t)sb.st_ino;
		*size = (uint64_t)sb.st_size;
	}
}

struct gossip_store_follower *gossip_store_follow(struct gossip_store *st)
{
	struct gossip_store_follower *f = calloc(1, sizeof *f);
	if (!f) {
		gossip_seterr("store: out of memory");
		return NULL;
	}
	f->st = st;
	if (gossip_store_lock(st) < 0) {
		free(f);
		return NULL;
	}
	store_stat(st, &f->ino, &f->size);
	f->ino = st->ino;  /* 0 while there is no store file */
	f->off = st->end;
	gossip_store_unlock(st);
	return f;
}

void gossip_store_follow_free(struct gossip_store_follower *f)
{
	free(f);
}

int gossip_store_follow_changed(const struct gossip_store_follower *f)
{
	uint64_t ino, size;
	store_stat(f->st, &ino, &size);
	return ino != f->ino || size != f->size;
}

/* Whether a message found in a compacted store file was already passed on: the follower's
 * last index (snap) holds it, or a later version of its slot. */
static int seen_before(const struct gossip_entry *snap, size_t cap, const struct store_item *it)
{
	const struct gossip_entry *e = tab_find(snap, cap, it->slot);
	return e && (e->version > it->version ||
	             (e->version == it->version && memcmp(e->hash, it->hash, 16) == 0));
}

/* Walk the store file between from and end (indexed: every message there is proven, its
 * hash in the store's verified set) in file order, as the indexing read it: damage is
 * skipped byte by byte, news and watermark records whole; each proven message goes to
 * fn with its item, offset and bytes. */
static int walk(struct gossip_store *st, uint64_t from, uint64_t end, walk_fn *fn, void *ctx)
{
	uint8_t *buf;
	uint64_t wpos = 0, pos;
	size_t wlen = 0;
	int r = 0;
	if (from >= end)
		return 0;
	/* No bigger than what is to read: an idle look at a few new bytes stays small. */
	size_t bufsz = end - from < CHUNK + GOSSIP_MSG_MAX ? (size_t)(end - from) : CHUNK + GOSSIP_MSG_MAX;
	if (!(buf = malloc(bufsz))) {
		gossip_seterr("store: out of memory");
		return -1;
	}
	for (pos = from; pos < end && r == 0;) {
		size_t need = end - pos < GOSSIP_MSG_MAX ? (size_t)(end - pos) : GOSSIP_MSG_MAX, len;
		if (pos < wpos || pos + need > wpos + wlen) {
			size_t want = end - pos < bufsz ? (size_t)(end - pos) : bufsz;
			ssize_t k;
			while ((k = pread(st->fd, buf, want, (off_t)pos)) < 0 && errno == EINTR)
				;
			if (k < (ssize_t)need) {
				gossip_seterr("store: cannot read %s/store: %s", st->dir,
				              k < 0 ? strerror(errno) : "it shrank while being read");
				r = -1;
				break;
			}
			wpos = pos;
			wlen = (size_t)k;
		}
		const uint8_t *p = buf + (pos - wpos);
		struct gossip_msg m;
		struct store_item it;
		if (wm_like(p, need)) {
			if (gossip_cbor_scan(p, need, &wm_limits, NULL, &len) == GOSSIP_SCAN_OK &&
			    gossip_store_watermarks(p, len, NULL, NULL) == 1) {
				r = fn(st, NULL, pos, p, ctx);  /* a watermark record: it is NULL */
				pos += len;
			} else
				pos++;
			continue;
		}
		if (gossip_cbor_scan(p, need, &gossip_msg_limits, NULL, &len) != GOSSIP_SCAN_OK ||
		    gossip_msg_decode(p, len, &m) < 0) {
			pos++;  /* damage, skipped by the index too */
			continue;
		}
		if (gossip_msg_is_news(&m)) {
			pos += len;
			continue;
		}
		store_item_of(&it, &m, len);
		if (!sum_has(st, it.hash)) {
			pos++;  /* framed like a message, never proven: damage */
			continue;
		}
		r = fn(st, &it, pos, p, ctx);
		pos += len;
	}
	free(buf);
	return r;
}

struct follow_walk {
	const struct gossip_entry *snap;
	size_t snapcap;
	gossip_each_fn *fn;
	void *ctx;
};

/* For the follower: every visible message, unless snap says it was passed on. */
static int follow_one(struct gossip_store *st, const struct store_item *it, uint64_t pos,
                      const uint8_t *p, void *ctx)
{
	struct follow_walk *w = ctx;
	if (!it)
		return 0;
	uint32_t oid = origin_find(st, it->origin, NULL);
	if (oid == UINT32_MAX || (st->visible && !st->visible(st->visible_ctx, it->origin)) ||
	    (w->snap && seen_before(w->snap, w->snapcap, it)))
		return 0;
	struct gossip_entry e = {.off = pos, .version = it->version, .time = it->time,
	                         .len = it->len, .origin = oid, .type = it->type, .used = 1,
	                         .reg = it->reg ? reg_find(st, it->kid, NULL) : UINT32_MAX};
	memcpy(e.slot, it->slot, 16);
	memcpy(e.hash, it->hash, 16);
	return w->fn(w->ctx, &e, p);
}

/* Pass on the messages of the store file between from and end in file order, skipping
 * hidden origins and what snap says was passed on. */
static int follow_scan(struct gossip_store *st, uint64_t from, uint64_t end,
                       const struct gossip_entry *snap, size_t snapcap, gossip_each_fn *fn,
                       void *ctx)
{
	struct follow_walk w = {snap, snapcap, fn, ctx};
	return walk(st, from, end, follow_one, &w);
}

int gossip_store_follow_next(struct gossip_store_follower *f, gossip_each_fn *fn, void *ctx)
{
	struct gossip_store *st = f->st;
	struct gossip_entry *snap = NULL;
	size_t snapcap = 0;
	uint64_t ino, size;
	int ro = st->opts.readonly;
	/* The lock first, so that nobody compacts between the look at the file and the
	 * indexing (gossip_store_lock takes it again: the same lock, no wait). */
	if (st->lockfd >= 0 && flock(st->lockfd, ro ? LOCK_SH : LOCK_EX) < 0) {
		gossip_seterr("store: cannot lock %s/store.lock: %s", st->dir, strerror(errno));
		return -1;
	}
	st->locked = 1;
	store_stat(st, &ino, &size);
	/* Another file: compacted (every message moved) or made. What the follower has
	 * passed on is what the index holds now: keep a copy to tell it from what is new. */
	int moved = ino != f->ino, known = f->ino == st->ino && f->off == st->end;
	if (moved && known && st->cap) {
		if (!(snap = malloc(st->cap * sizeof *snap))) {
			gossip_store_unlock(st);
			gossip_seterr("store: out of memory");
			return -1;
		}
		memcpy(snap, st->tab, st->cap * sizeof *snap);
		snapcap = st->cap;
	}
	if (gossip_store_lock(st) < 0) {
		free(snap);
		return -1;
	}
	uint64_t from = st->ino == f->ino ? f->off : 0, end = st->end;
	if (st->ino != f->ino && !known)
		from = end;  /* the index moved on without the follower: start from now */
	f->ino = st->ino;
	f->off = end;
	f->size = size;
	gossip_store_unlock(st);
	/* Read without the lock: what lies before end in this file never changes (a
	 * compaction writes another file), and fn may be slow (a full pipe). */
	int r = follow_scan(st, from, end, snap, snapcap, fn, ctx);
	free(snap);
	return r;
}

int gossip_store_summary(struct gossip_store *st, uint8_t root[16], uint64_t *count)
{
	struct store_digest d;
	if (store_digest_make(&d, st) < 0)
		return -1;
	memcpy(root, d.root, 16);
	*count = d.count;
	store_digest_free(&d);
	return 0;
}

/* ---- the Merkle summary: made and kept ---- */

static int by_slot_entry(const void *a, const void *b)
{
	return memcmp((*(struct gossip_entry *const *)a)->slot, (*(struct gossip_entry *const *)b)->slot, 16);
}

/* The current entries of bucket b at time now, in slot order. The table is ordered by
 * the slot's leading bits (home()): an entry whose home lies in the bucket's stretch
 * [lo, hi) sits at or after its home with no empty place between, so it is found from lo
 * on, up to the first empty place at or after hi. */
static int bucket_each(struct gossip_store *st, size_t b,
                       int (*fn)(struct gossip_store *, struct gossip_entry *, void *), void *ctx)
{
	if (!st->cap)
		return 0;
	unsigned bits = (unsigned)__builtin_ctzll((unsigned long long)st->cap);
	size_t lo = bits >= 16 ? b << (bits - 16) : b >> (16 - bits);
	size_t span = bits >= 16 ? (size_t)1 << (bits - 16) : 1;
	for (size_t i = lo, step = 0; step < st->cap && (step < span || st->tab[i].used);
	     i = (i + 1) & (st->cap - 1), step++) {
		struct gossip_entry *e = &st->tab[i];
		int r;
		if (e->used && bucket_of(e->slot) == b && (r = fn(st, e, ctx)) != 0)
			return r;
	}
	return 0;
}

struct entries {
	struct gossip_entry **v;
	size_t n, cap;
	uint64_t now;
};

static int entries_add(struct entries *l, struct gossip_entry *e)
{
	if (l->n == l->cap) {
		size_t c2 = l->cap ? 2 * l->cap : 16;
		struct gossip_entry **v2 = realloc(l->v, c2 * sizeof *v2);
		if (!v2) {
			gossip_seterr("out of memory");
			return -1;
		}
		l->v = v2;
		l->cap = c2;
	}
	l->v[l->n++] = e;
	return 0;
}

static int add_current(struct gossip_store *st, struct gossip_entry *e, void *ctx)
{
	struct entries *l = ctx;
	return is_current(st, e, l->now) ? entries_add(l, e) : 0;
}

static int bucket_entries(struct gossip_store *st, size_t b, uint64_t now,
                          struct gossip_entry ***out, size_t *n)
{
	struct entries l = {.now = now};
	if (bucket_each(st, b, add_current, &l) < 0) {
		free(l.v);
		*out = NULL;
		*n = 0;
		return -1;
	}
	if (l.n > 1)
		qsort(l.v, l.n, sizeof *l.v, by_slot_entry);
	*out = l.v;
	*n = l.n;
	return 0;
}

/* ---- the kept table (store.h) ---- */

static struct store_sum *mk_alloc(void);

static int by_idref(const void *a, const void *b)
{
	uint64_t x = ((const struct store_idref *)a)->id, y = ((const struct store_idref *)b)->id;
	return x < y ? -1 : x > y;
}

uint64_t store_id4(const uint8_t salt[32], const uint8_t slot[16], const uint8_t hash[16])
{
	uint8_t in[32], h[16];
	memcpy(in, slot, 16);
	memcpy(in + 16, hash, 16);
	crypto_generichash(h, 16, in, 32, salt, 32);
	uint64_t id = (uint64_t)slot[0] << 56 | (uint64_t)slot[1] << 48;
	for (int i = 0; i < 6; i++)
		id |= (uint64_t)h[i] << (40 - 8 * i);
	return id;
}

static int tab_take_out(struct gossip_store *st, struct gossip_entry *e, void *ctx)
{
	tab_out1(st, e, *(const int *)ctx);
	return 0;
}

/* The ids under salt of the entries cur (n of them: a bucket's current ones), sorted,
 * leaving out those that occur more than once (a bucket holds every entry an id can
 * name, so ids collide only within one): *v is malloc'd. */
static int entries_ids(const uint8_t salt[32], struct gossip_entry **cur, size_t n,
                       struct store_idref **v, size_t *nv)
{
	*v = NULL;
	*nv = 0;
	if (n && !(*v = malloc(n * sizeof **v))) {
		gossip_seterr("out of memory");
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		(*v)[i].id = store_id4(salt, cur[i]->slot, cur[i]->hash);
		(*v)[i].e = cur[i];
	}
	if (n > 1)
		qsort(*v, n, sizeof **v, by_idref);
	*nv = store_ids_unique(*v, n);
	return 0;
}

/* The same of bucket b's current entries at time now. */
static int bucket_ids(struct gossip_store *st, size_t b, const uint8_t salt[32], uint64_t now,
                      struct store_idref **v, size_t *nv)
{
	struct gossip_entry **cur;
	size_t n;
	*v = NULL;
	*nv = 0;
	if (bucket_entries(st, b, now, &cur, &n) < 0)
		return -1;
	int r = entries_ids(salt, cur, n, v, nv);
	free(cur);
	return r;
}

/* Bucket b's ids in table i made again: out go all it held, in go those of its current
 * entries (cur, n of them). */
static int tab_bucket1(struct gossip_store *st, size_t b, struct gossip_entry **cur, size_t n, int i)
{
	struct store_sum *m = st->sum;
	struct store_idref *v;
	size_t k;
	bucket_each(st, b, tab_take_out, &i);
	if (entries_ids(m->salts[i], cur, n, &v, &k) < 0)
		return -1;
	for (size_t j = 0; j < k; j++) {
		store_iblt_add(m->tabs[i], STORE_IBLT_K, v[j].id, 1);
		v[j].e->intab |= (uint8_t)(1 << i);
	}
	free(v);
	return 0;
}

/* A bucket the summary does again: in each table that holds that bucket. */
static int tab_bucket(struct gossip_store *st, size_t b, struct gossip_entry **cur, size_t n)
{
	struct store_sum *m = st->sum;
	for (int i = 0; i < 2; i++)
		if (m->tabs[i] && b < m->done[i] && tab_bucket1(st, b, cur, n, i) < 0)
			return -1;
	return 0;
}

/* A table being taken up: its next sixteenth of the buckets (done as a changed one would
 * be, before it counts as done: the bits of a table dropped before are cleared, not
 * taken out); once it holds them all, it is used. */
enum { TAB_STEP = 4096 };
static int tab_step(struct gossip_store *st, uint64_t now)
{
	struct store_sum *m = st->sum;
	for (int i = 0; i < 2; i++)
		for (size_t end = m->done[i] + TAB_STEP; m->tabs[i] && m->done[i] < end && m->done[i] < 65536;) {
			size_t b = m->done[i];
			struct gossip_entry **cur;
			size_t n;
			if (bucket_entries(st, b, now, &cur, &n) < 0)
				return -1;
			int r = tab_bucket1(st, b, cur, n, i);
			free(cur);
			if (r < 0)
				return -1;
			m->done[i] = b + 1;
		}
	return 0;
}

static int tab_of(const struct store_sum *m, const uint8_t salt[32])
{
	for (int i = 0; i < 2; i++)
		if (m->tabs[i] && memcmp(m->salts[i], salt, 32) == 0)
			return i;
	return -1;
}

/* Table i taken up anew under salt (whole: made whole at the next digest). */
static int tab_start(struct store_sum *m, int i, const uint8_t salt[32], int whole)
{
	if (!m->tabs[i] && !(m->tabs[i] = malloc(STORE_IBLT_CELLS * sizeof *m->tabs[i]))) {
		gossip_seterr("out of memory");
		return -1;
	}
	memset(m->tabs[i], 0, STORE_IBLT_CELLS * sizeof *m->tabs[i]);
	memcpy(m->salts[i], salt, 32);
	m->done[i] = whole ? 65536 : 0;
	if (whole)
		m->valid = 0;
	return 0;
}

/* Whether table i is under a salt last asked for. */
static int tab_asked(const struct store_sum *m, int i)
{
	for (int k = 0; k < m->nasked; k++)
		if (memcmp(m->salts[i], m->asked[k], 32) == 0)
			return 1;
	return 0;
}

int store_tab_keep(struct gossip_store *st, const uint8_t salt[32], const uint8_t also[32])
{
	if (!st->sum && !(st->sum = mk_alloc())) {
		gossip_seterr("out of memory");
		return -1;
	}
	struct store_sum *m = st->sum;
	if (also && memcmp(also, salt, 32) == 0)
		also = NULL;
	memcpy(m->asked[0], salt, 32);
	if (also)
		memcpy(m->asked[1], also, 32);
	m->nasked = also ? 2 : 1;
	int i = tab_of(m, salt);
	/* Once salt's is whole, a table not asked for (the last hour's, five minutes on) goes:
	 * each costs every digest its changed buckets, and every rebuild the whole index. */
	if (i >= 0 && m->done[i] == 65536 && m->tabs[!i] && !tab_asked(m, !i)) {
		free(m->tabs[!i]);
		m->tabs[!i] = NULL;
	}
	if (i < 0) {
		if (!m->tabs[0] && !m->tabs[1])  /* the first: made whole with the summary */
			return tab_start(m, 0, salt, 1);
		/* Taken up a sixteenth at each digest, so that no digest does it all at once,
		 * in place of a table not asked for (one not whole first): the other stays in
		 * use meanwhile, for those who ask under its salt. */
		int j = also ? tab_of(m, also) : -1;
		i = !m->tabs[0] ? 0 : !m->tabs[1] ? 1 : j >= 0 ? !j : m->done[0] < m->done[1] ? 0 : 1;
		return tab_start(m, i, salt, 0);
	}
	/* also (the next hour's, or the last's) once salt's is whole, in the other table. */
	if (also && m->done[i] == 65536 && tab_of(m, also) < 0)
		return tab_start(m, !i, also, 0);
	return 0;
}

const struct store_cell *store_tab_kept(const struct gossip_store *st, const uint8_t salt[32])
{
	const struct store_sum *m = st->sum;
	int i = m && m->valid ? tab_of(m, salt) : -1;
	return i >= 0 && m->done[i] == 65536 ? m->tabs[i] : NULL;
}

int store_find_ids(struct gossip_store *st, const uint8_t salt[32], uint64_t now, const uint64_t *ids,
                   size_t n, struct gossip_entry **out)
{
	for (size_t i = 0; i < n;) {
		size_t b = (size_t)(ids[i] >> 48), j = i, at = 0, k;
		struct store_idref *v;
		while (j < n && ids[j] >> 48 == b)
			j++;
		if (bucket_ids(st, b, salt, now, &v, &k) < 0)
			return -1;
		for (; i < j; i++) {
			while (at < k && v[at].id < ids[i])
				at++;
			out[i] = at < k && v[at].id == ids[i] ? v[at].e : NULL;
		}
		free(v);
	}
	return 0;
}

static struct store_sum *mk_alloc(void)
{
	struct store_sum *m = calloc(1, sizeof *m);
	if (m && (!(m->l2 = calloc(65536, 16)) || !(m->cnt = calloc(65536, sizeof *m->cnt)) ||
	          !(m->dirty = calloc(65536, 1)) || !(m->dlist = malloc(65536 * sizeof *m->dlist)))) {
		free(m->dlist);
		free(m->l2);
		free(m->cnt);
		free(m->dirty);
		free(m);
		return NULL;
	}
	return m;
}

/* Make it again from the index: every bucket that holds an entry or held one when last
 * hashed (the others are zeros already, as is a new summary's every bucket) to hash,
 * every delete and event to expire. */
static int mk_rebuild(struct gossip_store *st)
{
	struct store_sum *m = st->sum;
	if (m->ocnt)
		memset(m->ocnt, 0, m->ocap * sizeof *m->ocnt);  /* each entry's bit cleared below */
	m->norig = 0;
	m->nheap = 0;
	m->ndirty = 0;
	memset(m->dirty, 0, 65536);
	m->valid = 1;
	m->l1all = 1;
	for (int i = 0; i < 2; i++)  /* each asked for made whole anyway, one being taken up too */
		if (m->tabs[i] && !tab_asked(m, i)) {
			free(m->tabs[i]);
			m->tabs[i] = NULL;
		} else if (m->tabs[i]) {
			memset(m->tabs[i], 0, STORE_IBLT_CELLS * sizeof *m->tabs[i]);
			m->done[i] = 65536;
		}
	for (size_t b = 0; b < 65536; b++)
		if (m->cnt[b])
			mk_mark(st, b);
	for (size_t i = 0; i < st->cap; i++) {
		struct gossip_entry *e = &st->tab[i];
		uint64_t at;
		if (e->intab)
			e->intab = 0;  /* written only where set: a forked child copies no more pages */
		if (!e->used)
			continue;
		mk_mark(st, bucket_of(e->slot));
		if ((at = expires_at(st, e->type, e->time, e->version)) != UINT64_MAX &&
		    mk_heap_push(m, at, bucket_of(e->slot)) < 0) {
			m->valid = 0;
			gossip_seterr("out of memory");
			return -1;
		}
	}
	return 0;
}

/* ---- the kept summary: DIR/store.root ----
 * 88 bytes: "gsroot2\n"; the key (16); made at, valid until, count (big-endian 64-bit);
 * the root (16); the origins of the current entries (64-bit); BLAKE2b-128 of the 72
 * bytes before (a torn or damaged record, or one of version 1, is none).
 * The key hashes what the summary depends on besides the store's bytes, and the store
 * file's identity, size and change times, which any write to it moves: a record made
 * by a whole read matches only the file that read saw (gossip.h). */
static void stat_key(crypto_generichash_state *h, const char *path)
{
	struct stat sb;
	uint64_t v[7] = {0};
	if (stat(path, &sb) == 0) {
		v[0] = (uint64_t)sb.st_dev;
		v[1] = (uint64_t)sb.st_ino;
		v[2] = (uint64_t)sb.st_size;
		v[3] = (uint64_t)sb.st_mtim.tv_sec;
		v[4] = (uint64_t)sb.st_mtim.tv_nsec;
		v[5] = (uint64_t)sb.st_ctim.tv_sec;
		v[6] = (uint64_t)sb.st_ctim.tv_nsec;
	}
	crypto_generichash_update(h, (const uint8_t *)v, sizeof v);
}

/* The kept summary's key: the file's key (store_file_key), the time-to-lives and the rule. */
static int root_key(const struct gossip_store *st, uint8_t key[16])
{
	crypto_generichash_state h;
	uint64_t ttl[2] = {st->opts.tombstone_ttl_ms, st->opts.event_ttl_ms};
	uint8_t fk[16];
	if (store_file_key(st, fk) < 0)
		return -1;
	crypto_generichash_init(&h, (const uint8_t *)"gossip root key", 15, 16);
	crypto_generichash_update(&h, fk, 16);
	crypto_generichash_update(&h, (const uint8_t *)ttl, sizeof ttl);
	crypto_generichash_update(&h, st->rule, 16);
	crypto_generichash_final(&h, key, 16);
	return 0;
}

void store_put64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (56 - 8 * i));
}

uint64_t store_get64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

/* The record of d (made at d->now, holding until until) for the file as it is now
 * (under the lock of a whole read), kept until gossip_store_summary_save. */
static void root_record(struct gossip_store *st, const struct store_digest *d, uint64_t until)
{
	uint8_t *rec = st->root_rec;
	memcpy(rec, "gsroot2\n", 8);
	if (!st->key_ok || root_key(st, rec + 8) < 0 || memcmp(rec + 8, st->key, 16) != 0)
		return;
	store_put64(rec + 24, d->now);
	store_put64(rec + 32, until);
	store_put64(rec + 40, d->count);
	memcpy(rec + 48, d->root, 16);
	store_put64(rec + 64, d->origins);
	crypto_generichash(rec + 72, 16, rec, 72, NULL, 0);
	st->root_pending = 1;
}

/* DIR/store.root's record, whole and its check holding: 0, else -1. */
static int root_read(const struct gossip_store *st, uint8_t rec[STORE_ROOT_REC])
{
	uint8_t buf[STORE_ROOT_REC + 1], check[16];
	/* Opening only a file (not a fifo, a device or a link put there). */
	struct stat sb;
	if (lstat(gossip_path(st->dir, "store.root"), &sb) < 0 || !S_ISREG(sb.st_mode))
		return -1;
	int fd = open(gossip_path(st->dir, "store.root"), O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ssize_t n = fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode) ? read(fd, buf, sizeof buf) : -1;
	close(fd);
	if (n != STORE_ROOT_REC || memcmp(buf, "gsroot2\n", 8) != 0)
		return -1;
	crypto_generichash(check, 16, buf, 72, NULL, 0);
	if (sodium_memcmp(check, buf + 72, 16) != 0)
		return -1;
	memcpy(rec, buf, STORE_ROOT_REC);
	return 0;
}

void gossip_store_summary_save(struct gossip_store *st)
{
	/* A cache: when it cannot be written, the next sync reads the store. The same
	 * summary of the same file as the record there (all but when it was made, unless
	 * the clock went back) is not written again: a node's observe makes one at every
	 * look. */
	const uint8_t *rec = st->root_rec;
	uint8_t was[STORE_ROOT_REC];
	if (st->root_pending &&
	    (root_read(st, was) < 0 || memcmp(rec, was, 24) != 0 || memcmp(rec + 32, was + 32, 40) != 0 ||
	     store_get64(rec + 24) < store_get64(was + 24)))
		(void)gossip_write_replace(gossip_path(st->dir, "store.root"), rec, STORE_ROOT_REC, 0600);
	st->root_pending = 0;
}

void gossip_store_keep_summary(struct gossip_store *st, const uint8_t rule[16])
{
	memcpy(st->rule, rule, 16);
	st->keep_root = 1;
}

int gossip_store_summary_kept(struct gossip_store *st, uint8_t root[16], uint64_t *count)
{
	uint8_t rec[STORE_ROOT_REC], key[16];
	uint64_t now = gossip_now_ms();
	if (!st->keep_root || root_read(st, rec) < 0)
		return 1;
	if (root_key(st, key) < 0 ||
	    memcmp(key, rec + 8, 16) != 0 || now < store_get64(rec + 24) || now >= store_get64(rec + 32))
		return 1;
	*count = store_get64(rec + 40);
	memcpy(root, rec + 48, 16);
	st->norigins_cur = store_get64(rec + 64);
	return 0;
}

uint64_t gossip_store_origins(const struct gossip_store *st)
{
	return st->norigins_cur;
}

/* An entry stops being counted in its origin's current entries (its bytes replaced, or
 * not current when its bucket was hashed again). */
static void orig_out(struct gossip_store *st, struct gossip_entry *e)
{
	struct store_sum *m = st->sum;
	if (!(e->intab & ORIG_COUNTED))
		return;
	e->intab &= (uint8_t)~ORIG_COUNTED;
	if (m && e->origin < m->ocap && m->ocnt[e->origin] && --m->ocnt[e->origin] == 0)
		m->norig--;
}

/* Bucket b hashed again at now: each entry counted in its origin's current entries when
 * it is current, and only then (bits written only where they change: a forked child
 * copies no more pages). */
static int orig_one(struct gossip_store *st, struct gossip_entry *e, void *ctx)
{
	struct store_sum *m = st->sum;
	int cur = is_current(st, e, *(const uint64_t *)ctx);
	if (!cur) {
		orig_out(st, e);
		return 0;
	}
	if (e->intab & ORIG_COUNTED)
		return 0;
	if (e->origin >= m->ocap) {
		size_t cap = st->norigins + 64;
		uint32_t *o = realloc(m->ocnt, cap * sizeof *o);
		if (!o)
			return -1;
		memset(o + m->ocap, 0, (cap - m->ocap) * sizeof *o);
		m->ocnt = o;
		m->ocap = cap;
	}
	e->intab |= ORIG_COUNTED;
	if (m->ocnt[e->origin]++ == 0)
		m->norig++;
	return 0;
}

int store_digest_make(struct store_digest *d, struct gossip_store *st)
{
	uint64_t now = gossip_now_ms();
	uint8_t cnt[8];
	memset(d, 0, sizeof *d);
	if (!st->sum && !(st->sum = mk_alloc())) {
		gossip_seterr("out of memory");
		return -1;
	}
	struct store_sum *m = st->sum;
	/* A clock set back may bring expired entries back: everything again. */
	if ((!m->valid || now < m->made_at) && mk_rebuild(st) < 0)
		return -1;
	while (m->nheap && m->heap[0].at <= now)
		mk_mark(st, mk_heap_pop(m).bucket);
	uint8_t l1dirty[256] = {0};
	for (size_t k = 0; k < m->ndirty; k++) {
		size_t b = m->dlist[k];
		struct gossip_entry **v;
		size_t n;
		if (bucket_entries(st, b, now, &v, &n) < 0 || tab_bucket(st, b, v, n) < 0) {
			free(v);
			m->valid = 0;  /* dirty marks lost: made again next time */
			return -1;
		}
		if (bucket_each(st, b, orig_one, &now) < 0) {
			free(v);
			m->valid = 0;
			gossip_seterr("out of memory");
			return -1;
		}
		m->dirty[b] = 0;
		l1dirty[b >> 8] = 1;
		m->cnt[b] = (uint32_t)n;
		memset(m->l2[b], 0, 16);
		if (n) {
			crypto_generichash_state h;
			crypto_generichash_init(&h, NULL, 0, 16);
			for (size_t i = 0; i < n; i++) {
				crypto_generichash_update(&h, v[i]->slot, 16);
				crypto_generichash_update(&h, v[i]->hash, 16);
			}
			crypto_generichash_final(&h, m->l2[b], 16);
		}
		free(v);
	}
	m->ndirty = 0;
	if (tab_step(st, now) < 0) {
		m->valid = 0;
		return -1;
	}
	m->made_at = now;
	/* The level-one hashes over the buckets that changed; the count. */
	for (size_t a = 0; a < 256; a++) {
		if (l1dirty[a] || m->l1all) {
			uint64_t in = 0;
			for (size_t j = 0; j < 256; j++)
				in += m->cnt[a * 256 + j];
			m->l1cnt[a] = in;
			memset(m->l1[a], 0, 16);
			if (in)
				crypto_generichash(m->l1[a], 16, m->l2[a * 256], 256 * 16, NULL, 0);
		}
		d->count += m->l1cnt[a];
	}
	m->l1all = 0;
	memcpy(d->l1, m->l1, sizeof d->l1);
	for (int i = 0; i < 8; i++)
		cnt[i] = (uint8_t)(d->count >> (56 - 8 * i));
	crypto_generichash_state h;
	crypto_generichash_init(&h, NULL, 0, 16);
	crypto_generichash_update(&h, &d->l1[0][0], sizeof d->l1);
	crypto_generichash_update(&h, cnt, 8);
	crypto_generichash_final(&h, d->root, 16);
	d->l2 = (const uint8_t(*)[16])m->l2;
	d->cnt = m->cnt;
	d->now = now;
	d->origins = st->norigins_cur = m->norig;
	if (st->key_ok && st->locked)  /* a writer's whole read in this lock */
		root_record(st, d, m->nheap ? m->heap[0].at : UINT64_MAX);
	return 0;
}

void store_digest_free(struct store_digest *d)
{
	memset(d, 0, sizeof *d);
}

int store_bucket(struct gossip_store *st, const struct store_digest *d, size_t b,
                 struct gossip_entry ***v, size_t *n)
{
	return bucket_entries(st, b, d->now, v, n);
}

/* ---- a sync's ids (store.h) ---- */

int store_ids_make(struct store_ids *s, struct gossip_store *st, const uint8_t salt[32], uint64_t now)
{
	size_t n = 0, cap = 0;
	struct store_idref *all = NULL;
	store_ids_free(s);
	for (size_t b = 0; b < 65536; b++) {
		struct store_idref *v;
		size_t k;
		if (bucket_ids(st, b, salt, now, &v, &k) < 0) {
			free(all);
			return -1;
		}
		if (n + k > cap) {
			size_t c2 = cap ? 2 * cap : 1024;
			while (c2 < n + k)
				c2 *= 2;
			struct store_idref *a2 = realloc(all, c2 * sizeof *a2);
			if (!a2) {
				free(v);
				free(all);
				gossip_seterr("out of memory");
				return -1;
			}
			all = a2;
			cap = c2;
		}
		if (k)
			memcpy(all + n, v, k * sizeof *v);
		n += k;
		free(v);
	}
	s->v = all;
	s->n = n;
	return 0;
}

size_t store_ids_unique(struct store_idref *v, size_t n)
{
	/* Two entries of one id (chance about n^2 / 2^65): both are left out of this sync,
	 * whose tables would not decode with a count of 2; the next sync's salt parts them. */
	size_t k = 0;
	for (size_t i = 0; i < n;) {
		size_t j = i + 1;
		while (j < n && v[j].id == v[i].id)
			j++;
		if (j - i == 1)
			v[k++] = v[i];
		i = j;
	}
	return k;
}

void store_ids_free(struct store_ids *s)
{
	free(s->v);
	free(s->whole);
	s->v = NULL;
	s->whole = NULL;
	s->n = 0;
}

/* The first of s's ids at or above id. */
static size_t ids_lower(const struct store_ids *s, uint64_t id)
{
	size_t lo = 0, hi = s->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (s->v[mid].id < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

int store_table(struct store_ids *s, unsigned bits, unsigned prefix, unsigned k,
                struct store_cell *out)
{
	memset(out, 0, ((size_t)3 << k) * sizeof *out);
	size_t from = 0, n = store_part(s, bits, prefix, &from);
	for (size_t i = from; i < from + n; i++)
		store_iblt_add(out, k, s->v[i].id, 1);
	return 0;
}

size_t store_part(const struct store_ids *s, unsigned bits, unsigned prefix, size_t *from)
{
	size_t i = *from = bits ? ids_lower(s, (uint64_t)prefix << (64 - bits)) : 0;
	while (i < s->n && (!bits || s->v[i].id >> (64 - bits) == prefix))
		i++;
	return i - *from;
}
