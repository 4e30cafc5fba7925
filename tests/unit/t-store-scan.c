/* t-store-scan: what a running node asks of the store often, against what a full scan
 * says: the messages stored since an offset (gossip_store_each with since > 0, and the
 * cursor), and the summary kept up to date as messages come, are superseded, expire and
 * are hidden. Random writes by three origins (sets and deletes of shared keys, _ keys,
 * events, equivocations, replays), compactions, a reader handle and a writer handle. */
#include "store-fixture.h"
#include "tap.h"
#include "fixture.h"

#include <unistd.h>


static int append(struct gossip_store *st, struct gossip_buf *b)
{
	return fixture_append(st, b, 0, NULL);
}

/* A walk's messages: offset and hash of each, in the order given. */
struct list {
	struct {
		uint64_t off;
		uint8_t hash[16], slot[16];
	} *v;
	size_t n, cap;
	uint64_t since;  /* for a full walk: only what lies at or after it */
};

static int collect(void *ctx, const struct gossip_entry *e, const uint8_t *p)
{
	struct list *l = ctx;
	uint8_t h[16];
	crypto_generichash(h, 16, p, e->len, NULL, 0);
	if (e->off < l->since || memcmp(h, e->hash, 16) != 0)
		return 0;
	if (l->n == l->cap) {
		l->cap = l->cap ? 2 * l->cap : 64;
		l->v = realloc(l->v, l->cap * sizeof *l->v);
	}
	l->v[l->n].off = e->off;
	memcpy(l->v[l->n].hash, e->hash, 16);
	memcpy(l->v[l->n].slot, e->slot, 16);
	l->n++;
	return 0;
}

static int same(const struct list *a, const struct list *b)
{
	if (a->n != b->n)
		return 0;
	for (size_t i = 0; i < a->n; i++)
		if (a->v[i].off != b->v[i].off || memcmp(a->v[i].hash, b->v[i].hash, 16) != 0)
			return 0;
	return 1;
}

static int by_slot(const void *a, const void *b)
{
	return memcmp(((const uint8_t *)a) + 24, ((const uint8_t *)b) + 24, 16);
}

/* The summary as gossip(7) defines it, from a full walk: 65536 buckets by the slot's
 * first two bytes, each BLAKE2b-128 of its (slot, hash) pairs in slot order. */
static void reference_root(struct list *l, uint8_t root[16])
{
	static uint8_t l2[65536][16], l1[256][16];
	uint8_t cnt[8];
	memset(l2, 0, sizeof l2);
	memset(l1, 0, sizeof l1);
	if (l->n)
		qsort(l->v, l->n, sizeof *l->v, by_slot);
	for (size_t i = 0; i < l->n;) {
		size_t b = (size_t)(l->v[i].slot[0] << 8 | l->v[i].slot[1]), j = i;
		crypto_generichash_state h;
		crypto_generichash_init(&h, NULL, 0, 16);
		for (; j < l->n && (size_t)(l->v[j].slot[0] << 8 | l->v[j].slot[1]) == b; j++) {
			crypto_generichash_update(&h, l->v[j].slot, 16);
			crypto_generichash_update(&h, l->v[j].hash, 16);
		}
		crypto_generichash_final(&h, l2[b], 16);
		i = j;
	}
	static const uint8_t zero[256 * 16];
	for (size_t a = 0; a < 256; a++)
		if (memcmp(l2[a * 256], zero, sizeof zero) != 0)
			crypto_generichash(l1[a], 16, l2[a * 256], 256 * 16, NULL, 0);
	for (int i = 0; i < 8; i++)
		cnt[i] = (uint8_t)((uint64_t)l->n >> (56 - 8 * i));
	crypto_generichash_state h;
	crypto_generichash_init(&h, NULL, 0, 16);
	crypto_generichash_update(&h, &l1[0][0], sizeof l1);
	crypto_generichash_update(&h, cnt, 8);
	crypto_generichash_final(&h, root, 16);
}

static int hide(void *ctx, const uint8_t pk[32])
{
	return memcmp(pk, ctx, 32) != 0;
}

/* One random write by one of the ids: mostly sets of a few shared keys, some deletes
 * (a few already old, so they expire soon), _ keys, events, replays of old versions. */
static void random_msg(struct gossip_buf *b, const struct gossip_identity *ids, uint64_t now,
                       uint64_t *ver, uint64_t ttl)
{
	const struct gossip_identity *id = &ids[rnd(3)];
	char key[16], val[16];
	uint32_t kind = rnd(20);
	uint64_t v = ++*ver, t = now;
	snprintf(val, sizeof val, "v%u", rnd(1000));
	if (kind < 9)
		snprintf(key, sizeof key, "k%u", rnd(6));
	else if (kind < 12)
		snprintf(key, sizeof key, "_m%u", rnd(3));
	else if (kind < 14)
		v = *ver > 20 ? *ver - 10 - rnd(10) : v;  /* a replay or an older row */
	if (kind < 14 && kind >= 12)
		snprintf(key, sizeof key, "k%u", rnd(6));
	if (kind < 14) {
		sign_msg(b, id, GOSSIP_T_SET, key, val, v, t);
		if (rnd(8) == 0)  /* an equivocation: the same version, other bytes */
			sign_msg(b, id, GOSSIP_T_SET, key, "other", v, t);
	} else if (kind < 17) {
		snprintf(key, sizeof key, "k%u", rnd(6));
		/* Half of them expire a little later in the run. */
		sign_msg(b, id, GOSSIP_T_DEL, key, NULL, v, rnd(2) ? now - ttl + 300 : t);
	} else
		sign_msg(b, id, GOSSIP_T_EVENT, "ev", val, v, rnd(2) ? now - ttl + 300 : t);
}

/* Whether st's kept table, after a digest (under salt, or else under old, the one kept
 * while salt is taken up), holds one id for each current entry (the digest's count) and
 * is the sum of its sixteen parts' tables. */
static int table_matches(struct gossip_store *st, const uint8_t *salt, const uint8_t *old)
{
	static struct store_cell part[STORE_IBLT_CELLS], sum[STORE_IBLT_CELLS];
	struct store_digest d;
	struct store_ids ids = {0};
	const struct store_cell *whole;
	int same = 0;
	if (store_digest_make(&d, st) < 0)
		return 0;
	if (!store_tab_kept(st, salt))
		salt = old;
	if (!(whole = store_tab_kept(st, salt)) || store_ids_make(&ids, st, salt, d.now) < 0 || ids.n != d.count)
		goto out;
	memset(sum, 0, sizeof sum);
	for (unsigned p = 0; p < 16; p++) {
		if (store_table(&ids, 4, p, STORE_IBLT_K, part) < 0)
			goto out;
		store_iblt_sub(sum, part, STORE_IBLT_K);  /* counts negated: compared below */
	}
	same = 1;
	for (size_t i = 0; i < STORE_IBLT_CELLS; i++)
		if ((uint8_t)(whole[i].count + sum[i].count) != 0 || whole[i].id != sum[i].id ||
		    whole[i].chk != sum[i].chk)
			same = 0;
out:
	store_ids_free(&ids);
	store_digest_free(&d);
	return same;
}

static int by_id(const void *a, const void *b)
{
	uint64_t x = ((const struct store_idref *)a)->id, y = ((const struct store_idref *)b)->id;
	return x < y ? -1 : x > y;
}

/* Whether the kept table of st (as of its last digest) is the table of l's messages'
 * version-4 ids under salt (those that occur once), made afresh, and finds each of them. */
static int kept_matches(struct gossip_store *st, const uint8_t salt[32], const struct list *l)
{
	static struct store_cell ref[STORE_IBLT_CELLS];
	const struct store_cell *t = store_tab_kept(st, salt);
	struct store_idref *v = calloc(l->n + 1, sizeof *v);
	int same = t && v;
	for (size_t i = 0; same && i < l->n; i++)
		v[i].id = store_id4(salt, l->v[i].slot, l->v[i].hash);
	if (same && l->n > 1)
		qsort(v, l->n, sizeof *v, by_id);
	size_t k = same ? store_ids_unique(v, l->n) : 0;
	uint64_t *ids = calloc(k + 1, sizeof *ids);
	struct gossip_entry **found = calloc(k + 1, sizeof *found);
	memset(ref, 0, sizeof ref);
	for (size_t i = 0; i < k; i++) {
		store_iblt_add(ref, STORE_IBLT_K, v[i].id, 1);
		ids[i] = v[i].id;
	}
	if (!ids || !found || store_find_ids(st, salt, gossip_now_ms(), ids, k, found) < 0)
		same = 0;
	for (size_t i = 0; same && i < k; i++)
		if (!found[i] || store_id4(salt, found[i]->slot, found[i]->hash) != ids[i])
			same = 0;
	free(ids);
	free(found);
	for (size_t i = 0; same && i < STORE_IBLT_CELLS; i++)
		if (t[i].count != ref[i].count || t[i].id != ref[i].id || t[i].chk != ref[i].chk)
			same = 0;
	free(v);
	return same;
}

int main(void)
{
	if (sodium_init() < 0)
		return 1;
	char *d = strdup(temp_dir("t-store-scan"));  /* its buffer is reused by the next */
	struct gossip_identity ids[3] = {ident(1), ident(2), ident(3)};
	const uint64_t ttl = 100000;
	struct gossip_store_opts o = {.tombstone_ttl_ms = ttl, .event_ttl_ms = ttl};
	struct gossip_store *w = gossip_store_open(d, &o), *r = gossip_store_open(d, &o);
	struct gossip_store_cursor cur = {0};
	struct gossip_buf b = {0};
	uint64_t ver = 1000, now = gossip_now_ms();
	int cursor_ok = 1, since_ok = 1, sum_ok = 1, fresh_ok = 1, iblt_ok = 1, kept_ok = 1;
	uint8_t salt4[32], salt5[32], salt6[32];
	randombytes_buf(salt4, sizeof salt4);
	randombytes_buf(salt5, sizeof salt5);
	randombytes_buf(salt6, sizeof salt6);
	const uint8_t *salts[3] = {salt4, salt5, salt6};
	size_t walked = 0, rounds = 0;
	ok(w && r, "a writer and a reader open one store");
	ok(w && r && store_tab_keep(r, salt4, NULL) == 0 && store_tab_keep(w, salt4, NULL) == 0, "both keep a table");
	for (int round = 0; round < 60; round++, rounds++) {
		b.len = 0;
		for (uint32_t k = 1 + rnd(12); k; k--)
			random_msg(&b, ids, now, &ver, ttl);
		if (append(w, &b) < 0)
			break;
		if (round % 17 == 16)
			gossip_store_compact(w, NULL, NULL);
		/* Half the deletes and events expire at once, 300 ms in (random_msg): a round
		 * whose walks and summaries straddle that moment (a slow or loaded machine) saw
		 * two different stores, and is not judged. */
		uint64_t t0 = gossip_now_ms();
		int was[6] = {cursor_ok, since_ok, sum_ok, fresh_ok, iblt_ok, kept_ok};
		/* The reader: what the cursor hands over is exactly what a full walk holds at or
		 * after where the cursor was (everything after a compaction). */
		gossip_store_lock(r);
		if (round == 30)
			gossip_store_set_visible(r, hide, (void *)ids[2].pk);
		if (round == 45)
			gossip_store_set_visible(r, NULL, NULL);
		struct gossip_store_cursor before = cur;
		struct list got = {0}, want = {0}, all = {0}, since = {0};
		uint64_t since_off = r->end / 2;
		gossip_store_each_new(r, &cur, collect, &got);
		want.since = before.ino == r->ino ? before.off : 0;
		gossip_store_each(r, 0, collect, &want);
		gossip_store_each(r, 0, collect, &all);
		walked += got.n;
		if (!same(&got, &want)) {
			cursor_ok = 0;
			printf("# round %d: the cursor handed over %zu messages, a full walk %zu\n", round, got.n,
			     want.n);
		}
		/* And from an offset in the middle (not always a message's start). */
		struct list mid = {.since = since_off};
		gossip_store_each(r, since_off ? since_off : 1, collect, &since);
		gossip_store_each(r, 0, collect, &mid);
		if (!same(&since, &mid)) {
			since_ok = 0;
			printf("# round %d: since %llu: %zu messages, a full walk %zu\n", round,
			     (unsigned long long)since_off, since.n, mid.n);
		}
		/* The salts asked for, as a node asks at each look: salt4; from round 10 salt5
		 * too (the next hour's, taken up a sixteenth at a digest: two or three digests a
		 * round), then salt5 with salt4 (the last hour's), then salt5 alone; from round
		 * 40 salt6 (a clock set forward: taken up while a whole one stays in use). */
		const uint8_t *wsalt = round < 20 ? salt4 : round < 40 ? salt5 : salt6;
		const uint8_t *also = round >= 10 && round < 20 ? salt5 : round >= 20 && round < 30 ? salt4 : NULL;
		store_tab_keep(r, wsalt, also);
		/* The summary: what the full walk says it is. */
		uint8_t root[16], ref[16];
		uint64_t count;
		reference_root(&all, ref);
		if (gossip_store_summary(r, root, &count) < 0 || count != all.n ||
		    memcmp(root, ref, 16) != 0) {
			sum_ok = 0;
			printf("# round %d: summary count %llu, a full walk %zu\n", round, (unsigned long long)count,
			     all.n);
		}
		/* Each kept table: what a table made afresh from the full walk is, under its
		 * salt; salt4's while asked for, salt5's from eight rounds after it was asked for
		 * until salt6, salt6's within eight rounds, and always one. */
		const uint8_t *anykept = NULL;
		for (int k = 0; k < 3; k++) {
			int expect = k == 0 ? round < 30 : k == 1 ? round >= 18 && round < 40 : round >= 48;
			int have = store_tab_kept(r, salts[k]) != NULL;
			if (have && !anykept)
				anykept = salts[k];
			if ((have && !kept_matches(r, salts[k], &all)) || (expect && !have)) {
				kept_ok = 0;
				printf("# round %d: the kept table of salt %d is %s\n", round, k + 4,
				       have ? "not the index's" : "not there");
			}
		}
		if (!anykept) {
			kept_ok = 0;
			printf("# round %d: no table kept\n", round);
			anykept = salt4;
		}
		/* A sync's table names every current entry once, and is its sixteen parts'. */
		if (!table_matches(r, wsalt, anykept) || (round % 10 == 9 && !table_matches(w, salt4, salt4))) {
			iblt_ok = 0;
			printf("# round %d: the table is not the index's\n", round);
		}
		gossip_store_unlock(r);
		/* The writer's summary (kept as it appended) is a fresh handle's. */
		if (round % 10 == 9) {
			struct gossip_store *f = gossip_store_open(d, &o);
			uint8_t rw[16], rf[16];
			uint64_t cw, cf;
			gossip_store_lock(w);
			int e1 = gossip_store_summary(w, rw, &cw);
			struct list wall = {0};
			gossip_store_each(w, 0, collect, &wall);
			if (!kept_matches(w, salt4, &wall)) {
				kept_ok = 0;
				printf("# round %d: the writer's kept table is not its index's\n", round);
			}
			free(wall.v);
			gossip_store_unlock(w);
			gossip_store_lock(f);
			int e2 = gossip_store_summary(f, rf, &cf);
			gossip_store_unlock(f);
			if (e1 < 0 || e2 < 0 || cw != cf || memcmp(rw, rf, 16) != 0) {
				fresh_ok = 0;
				printf("# round %d: the writer counts %llu, a fresh handle %llu\n", round,
				     (unsigned long long)cw, (unsigned long long)cf);
			}
			gossip_store_close(f);
		}
		free(got.v);
		free(want.v);
		free(all.v);
		free(since.v);
		free(mid.v);
		uint64_t t1 = gossip_now_ms();
		if (t0 <= now + 301 && t1 + 1 >= now + 300) {
			printf("# round %d: the deletes expired during it (%llu to %llu ms in): not judged\n", round,
			       (unsigned long long)(t0 - now), (unsigned long long)(t1 - now));
			cursor_ok = was[0], since_ok = was[1], sum_ok = was[2], fresh_ok = was[3], iblt_ok = was[4];
			kept_ok = was[5];
		}
	}
	ok(cursor_ok, "the cursor hands over exactly what a full walk holds after it, in order "
	   "(%zu messages in %zu rounds, across compactions, superseded rows, a hidden origin)",
	   walked, rounds);
	ok(since_ok, "each since an offset is a full walk cut at that offset");
	ok(sum_ok, "the summary is what a full walk makes of it, every round");
	ok(fresh_ok, "the writer's summary is a freshly opened store's");
	ok(iblt_ok, "the kept table names each current entry once, and is its parts', every round");
	ok(kept_ok, "each kept table, brought up to date by each summary, is one made afresh, and finds "
	   "each id, every round (across compactions, a hidden origin, the next hour's and the last's "
	   "kept beside it, another salt)");

	/* Expiry: the deletes and events made ttl - 300 ms ago leave the summary as their
	 * time passes, with nothing stored meanwhile. */
	struct gossip_store_opts o2 = {.tombstone_ttl_ms = 1000, .event_ttl_ms = 1000};
	char *d2 = temp_dir("t-store-scan-ttl");
	struct gossip_store *e = gossip_store_open(d2, &o2);
	now = gossip_now_ms();
	b.len = 0;
	sign_msg(&b, &ids[0], GOSSIP_T_SET, "x", "1", 10, now);
	sign_msg(&b, &ids[0], GOSSIP_T_DEL, "y", NULL, 11, now - 600);
	sign_msg(&b, &ids[1], GOSSIP_T_EVENT, "ev", "e", 12, now - 600);
	sign_msg(&b, &ids[1], GOSSIP_T_SET, "x", "2", 13, now);
	append(e, &b);
	uint8_t r1[16], r2[16], ref[16];
	uint64_t c1 = 0, c2 = 0;
	gossip_store_lock(e);
	gossip_store_summary(e, r1, &c1);
	gossip_store_unlock(e);
	ok(c1 == 3, "a set superseded by another origin's, a delete and an event: 3 current (%llu)",
	   (unsigned long long)c1);
	usleep(700 * 1000);
	gossip_store_lock(e);
	struct list all = {0};
	gossip_store_each(e, 0, collect, &all);
	reference_root(&all, ref);
	gossip_store_summary(e, r2, &c2);
	gossip_store_unlock(e);
	ok(c2 == 1 && all.n == 1 && memcmp(r2, ref, 16) == 0,
	   "once they are past their time, the summary holds the set alone (%llu)",
	   (unsigned long long)c2);
	free(all.v);
	gossip_store_close(e);
	rm_dir(d2);

	gossip_store_close(w);
	gossip_store_close(r);
	gossip_buf_free(&b);
	rm_dir(d);
	free(d);
	return tap_done();
}
