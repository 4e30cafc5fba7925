/* t-keep: the kept tables (store_tab_keep) against tables made afresh after every digest,
 * under random (salt, also) pairs from a pool of four, on a store of a few thousand
 * entries with many in-place replacements, expiries, compactions and visibility
 * changes: each is the index's, a pair asked for is whole in time, and a table not asked
 * for goes once the one asked for is whole. Usage: t-keep [STEPS [SEED]]; with KEEP_TURN
 * set, also gossip_sync_keep across an hour's turn (15 s hours: about 30 s, and it
 * depends on the machine keeping up, so it is not run by make check). */
#include "store-fixture.h"
#include "tap.h"
#include "fixture.h"

#include <time.h>
#include <unistd.h>


static int hide(void *ctx, const uint8_t pk[32])
{
	return memcmp(pk, ctx, 32) != 0;
}

static struct store_cell ref[STORE_IBLT_CELLS];


/* st's kept table under salt (if any) is one made afresh at the digest's now: 1; none: 0;
 * differs: -1. */
static int check(struct gossip_store *st, const uint8_t salt[32], uint64_t now)
{
	const struct store_cell *t = store_tab_kept(st, salt);
	if (!t)
		return 0;
	struct store_ids ids = {0};
	if (store_ids_make(&ids, st, salt, now) < 0 || store_table(&ids, 0, 0, STORE_IBLT_K, ref) < 0)
		return -1;
	store_ids_free(&ids);
	for (size_t i = 0; i < STORE_IBLT_CELLS; i++)
		if (t[i].count != ref[i].count || t[i].id != ref[i].id || t[i].chk != ref[i].chk)
			return -1;
	return 1;
}

static void sync_salt(uint64_t epoch, uint8_t salt[32])
{
	static const char label[] = "gossip-sync 4 id salt";
	uint8_t in[sizeof label - 1 + 8];
	memcpy(in, label, sizeof label - 1);
	for (int i = 0; i < 8; i++)
		in[sizeof label - 1 + i] = (uint8_t)(epoch >> (56 - 8 * i));
	crypto_generichash(salt, 32, in, sizeof in, NULL, 0);
}

int main(int argc, char **argv)
{
	if (sodium_init() < 0)
		return 1;
	int steps = argc > 1 ? atoi(argv[1]) : 150;
	if (argc > 2)
		*rnd_state() = strtoull(argv[2], NULL, 10) | 1;
	char *d = temp_dir("t-keep");
	struct gossip_identity ids[7] = {ident(1), ident(2), ident(3), ident(4), ident(5), ident(6), ident(7)};
	const uint64_t ttl = 3000;
	struct gossip_store_opts o = {.tombstone_ttl_ms = ttl, .event_ttl_ms = ttl};
	struct gossip_store *w = gossip_store_open(d, &o);
	uint8_t salts[4][32];
	for (int i = 0; i < 4; i++)
		randombytes_buf(salts[i], 32);
	struct gossip_buf b = {0};
	uint64_t ver = 1000;
	int bad = 0, checked = 0, stick = 0, pair_s = 0, pair_a = -1, hidden = 0, same_for = 0;
	int never_whole = 0, dropped = 1, wrong_origins = 0;
	for (int step = 0; step < steps && !bad; step++) {
		uint64_t now = gossip_now_ms();
		for (int k = 0; k < 5; k++) {
			b.len = 0;
			for (int j = 0; j < 40; j++) {
				char key[16], val[16];
				snprintf(key, sizeof key, "k%u", rnd(3000));
				snprintf(val, sizeof val, "v%u", rnd(100000));
				uint32_t kind = rnd(10);
				if (kind < 8)
					sign_msg(&b, &ids[rnd(6)], GOSSIP_T_SET, key, val, ++ver, now);
				else if (kind < 9)
					sign_msg(&b, &ids[rnd(6)], GOSSIP_T_DEL, key, NULL, ++ver, now - ttl + rnd(2500));
				else
					sign_msg(&b, &ids[rnd(6)], GOSSIP_T_EVENT, "ev", val, ++ver, now - ttl + rnd(2500));
			}
			/* A rare origin: one set now and then, soon superseded by the others' (or
			 * one event, soon expired), so that its count falls to none between
			 * rebuilds. */
			if (k == 0 && step % 40 == 3) {
				char key[16];
				snprintf(key, sizeof key, "k%u", rnd(3000));
				if (rnd(2))
					sign_msg(&b, &ids[6], GOSSIP_T_SET, key, "rare", ++ver, now);
				else
					sign_msg(&b, &ids[6], GOSSIP_T_EVENT, "ev", "rare", ++ver, now - ttl + 200);
			}
			if (fixture_append(w, &b, 0, NULL) < 0) {
				printf("# append failed: %s\n", gossip_error());
				bad = 1;
			}
		}
		if (step % 61 == 60)
			gossip_store_compact(w, NULL, NULL);
		gossip_store_lock(w);
		if (step % 47 == 46) {
			hidden = !hidden;
			gossip_store_set_visible(w, hidden ? hide : NULL, hidden ? (void *)ids[1].pk : NULL);
		}
		/* A pair kept for a stretch (as a node asks each look), then another. */
		if (stick-- <= 0) {
			stick = (int)rnd(getenv("STICK") ? (uint32_t)atoi(getenv("STICK")) : 40);
			pair_s = (int)rnd(4);
			pair_a = rnd(3) == 0 ? -1 : (int)rnd(4);
			same_for = 0;
		}
		int was_whole = store_tab_kept(w, salts[pair_s]) != NULL;
		if (store_tab_keep(w, salts[pair_s], pair_a >= 0 ? salts[pair_a] : NULL) < 0)
			bad = 1;
		same_for++;
		struct store_digest dg;
		if (store_digest_make(&dg, w) < 0) {
			bad = 1;
			gossip_store_unlock(w);
			break;
		}
		for (int i = 0; i < 4; i++) {
			int r = check(w, salts[i], dg.now);
			if (r < 0) {
				printf("# step %d: the kept table of salt %d differs from one made afresh (pair %d/%d)\n", step,
				       i, pair_s, pair_a);
				bad = 1;
			}
			checked += r > 0;
		}
		/* Once the salt asked for is whole, no table but the pair's is kept. */
		for (int i = 0; was_whole && i < 4; i++)
			if (i != pair_s && i != pair_a && store_tab_kept(w, salts[i])) {
				printf("# step %d: salt %d is kept beside pair %d/%d\n", step, i, pair_s, pair_a);
				dropped = 0;
			}
		/* Asked for each look with one pair: whole within 17 digests, also within 34. */
		if ((same_for > 17 && !store_tab_kept(w, salts[pair_s])) ||
		    (same_for > 34 && pair_a >= 0 && pair_a != pair_s && !store_tab_kept(w, salts[pair_a]))) {
			printf("# step %d: pair %d/%d asked for %d looks, not whole\n", step, pair_s, pair_a, same_for);
			never_whole = 1;
		}
		/* The origins the summary counts are those of the current entries at its time. */
		uint8_t seen[64] = {0};
		uint64_t norig = 0;
		for (size_t bk = 0; bk < 65536; bk++) {
			struct gossip_entry **v;
			size_t n;
			if (store_bucket(w, &dg, bk, &v, &n) < 0)
				bad = 1;
			for (size_t i = 0; i < n; i++)
				seen[v[i]->origin % 64] = 1;
			free(v);
		}
		for (int i = 0; i < 64; i++)
			norig += seen[i];
		if (dg.origins != norig || gossip_store_origins(w) != norig) {
			printf("# step %d: the summary counts %llu origins, the current entries are of %llu\n", step,
			       (unsigned long long)dg.origins, (unsigned long long)norig);
			wrong_origins = 1;
		}
		store_digest_free(&dg);
		gossip_store_unlock(w);
	}
	printf("# %d tables checked\n", checked);
	ok(!bad, "each kept table is one made afresh after every digest, under random pairs");
	ok(!never_whole, "a pair asked for at each look is whole within 17 digests, its also within 34");
	ok(!wrong_origins, "the summary's origins are those of the current entries after every digest");
	ok(dropped, "a table not asked for goes once the one asked for is whole");

	/* gossip_sync_keep across a turn: with a 15 s hour (lead 500 ms) and a digest every
	 * 10 ms, the next hour's table is whole when the hour turns. */
	if (getenv("KEEP_TURN")) {
		setenv("GOSSIP_SYNC_HOUR_MS", "15000", 1);
		uint64_t start = gossip_now_ms(), h0 = start / 15000;
		int at_turn = -1;
		while (gossip_now_ms() < start + 32000) {
			gossip_store_lock(w);
			uint64_t t = gossip_now_ms(), h = t / 15000;
			uint8_t s[32];
			sync_salt(h, s);
			if (h > h0 && at_turn < 0) {
				at_turn = store_tab_kept(w, s) != NULL;  /* before this look's keep */
				printf("# at the turn (%llu ms in): the new hour's table %s\n",
				       (unsigned long long)(t % 15000), at_turn ? "kept" : "not kept");
			}
			gossip_sync_keep(w);
			uint8_t root[16];
			uint64_t cnt;
			gossip_store_summary(w, root, &cnt);
			gossip_store_unlock(w);
			if (at_turn >= 0)
				break;
			usleep(10000);
		}
		ok(at_turn == 1, "gossip_sync_keep: the next hour's table is whole at the turn");
	}
	gossip_store_close(w);
	gossip_buf_free(&b);
	rm_dir(d);
	return tap_done();
}
