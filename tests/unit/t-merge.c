/* t-merge: the merger over a real store: what is new is stored before it is reported;
 * duplicates, strangers, bad signatures, keys outside a prefix, times and versions from
 * the future and malformed bytes are refused and counted, and only what a valid
 * signature proves is charged to its signer, once; equivocations are kept as proof and
 * converge on the lower hash; news passes and is never stored; any order of the same
 * messages ends in the same summary. */
#include "gossip.h"
#include "tap.h"
#include "fixture.h"

#include <sys/stat.h>

struct seen {
	const char *dir;
	int calls, on_disk;
	size_t last_len;
};

static uint64_t store_size(const char *dir)
{
	struct stat sb;
	return stat(gossip_path(dir, "store"), &sb) == 0 ? (uint64_t)sb.st_size : 0;
}

static void on_new(void *ctx, const uint8_t *p, size_t n)
{
	struct seen *s = ctx;
	(void)p;
	s->calls++;
	s->last_len = n;
	s->on_disk = store_size(s->dir) > 0;
}

static int lines_in(const char *path, const char *word)
{
	FILE *f = fopen(path, "r");
	char line[512];
	int n = 0;
	while (f && fgets(line, sizeof line, f))
		n += strstr(line, word) != NULL;
	if (f)
		fclose(f);
	return n;
}

static uint64_t digest_count(struct gossip_store *st, uint8_t root[16])
{
	uint64_t count = 0;
	gossip_store_lock(st);
	gossip_store_summary(st, root, &count);
	gossip_store_unlock(st);
	return count;
}

/* The number of items in DIR/evidence. */
static int evidence_items(const char *dir)
{
	struct gossip_buf b = {0};
	int n = 0;
	if (gossip_read_file(gossip_path(dir, "evidence"), 1 << 24, &b) == 0) {
		size_t at = 0, len;
		while (at < b.len && gossip_cbor_scan(b.p + at, b.len - at, &gossip_any_limits, NULL,
		                                      &len) == GOSSIP_SCAN_OK)
			at += len, n++;
	}
	gossip_buf_free(&b);
	return n;
}

/* Merge one message (the whole of b) and flush. */
static int merge1(struct gossip_merger *mg, const struct gossip_buf *b)
{
	return gossip_merge_item(mg, b->p, b->len, "test", 0) < 0 ? -1 : gossip_merge_flush(mg);
}

int main(void)
{
	if (sodium_init() < 0)
		return 1;
	char *dir = strdup(temp_dir("t-merge"));
	struct gossip_identity a = ident(1), r = ident(2), x = ident(3);
	char text[1024] = "", line[200];
	trusted_line(line, sizeof line, &a, "a");
	strcat(text, line);
	strcat(text, "prefix=app/ ");
	trusted_line(line, sizeof line, &r, "r");
	strcat(text, line);
	struct gossip_trust trust = {0};
	ok(gossip_trust_parse(&trust, text, strlen(text), "trusted") == 0, "trust: a, and r for app/ only");

	struct gossip_store *st = gossip_store_open(dir, NULL);
	struct seen seen = {dir, 0, 0, 0};
	struct gossip_merger mg = {.st = st, .trust = &trust, .on_new = on_new, .ctx = &seen};
	struct gossip_buf b = {0};
	uint64_t now = gossip_now_ms();
	char rejects[4200];
	snprintf(rejects, sizeof rejects, "%s/rejects", dir);

	sign_msg(&b, &a, GOSSIP_T_SET, "color", "blue", 10, now);
	ok(merge1(&mg, &b) == 0 && mg.added == 1 && seen.calls == 1 && seen.last_len == b.len,
	   "a trusted signer's set is new and reported once");
	ok(seen.on_disk, "it was on disk before it was reported");
	ok(merge1(&mg, &b) == 0 && mg.dups == 1 && seen.calls == 1, "the same message again: a duplicate, not reported");

	fprintf(stderr, "# four refusals are expected below:\n");
	uint64_t size = store_size(dir);
	b.len = 0;
	sign_msg(&b, &x, GOSSIP_T_SET, "color", "evil", 11, now);
	ok(merge1(&mg, &b) == 0 && mg.rejected == 1 && store_size(dir) == size,
	   "a stranger's message is refused; nothing stored");
	ok(lines_in(rejects, "") == 0, "a stranger costs nobody reputation");

	b.len = 0;
	sign_msg(&b, &a, GOSSIP_T_SET, "color", "forged", 12, now);
	b.p[b.len - 1] ^= 1;  /* the last byte of the signature */
	ok(merge1(&mg, &b) == 0 && mg.rejected == 2 && store_size(dir) == size,
	   "a bad signature under a trusted kid is refused; nothing stored");
	ok(lines_in(rejects, "") == 0, "and charged to nobody: anyone can forge a kid");

	b.len = 0;
	sign_msg(&b, &r, GOSSIP_T_SET, "system/x", "1", 13, now);
	ok(merge1(&mg, &b) == 0 && mg.rejected == 3 && store_size(dir) == size,
	   "a key outside the signer's prefix is refused");
	ok(lines_in(rejects, "key not allowed") == 1 && evidence_items(dir) == 1,
	   "and, proven by its signature, kept in evidence and charged");
	ok(merge1(&mg, &b) == 0 && mg.rejected == 4 && lines_in(rejects, "key not allowed") == 1 &&
	   evidence_items(dir) == 1, "replayed, it is refused again but charged once");
	mg.rejected--;
	b.len = 0;
	sign_msg(&b, &r, GOSSIP_T_SET, "app/x", "1", 14, now);
	ok(merge1(&mg, &b) == 0 && mg.added == 2, "a key inside it is stored");

	static const uint8_t junk[] = {0xd2, 0x84, 0x40, 0xa0, 0x40};
	ok(gossip_merge_item(&mg, junk, sizeof junk, "test", 0) == 0 && mg.rejected == 4,
	   "malformed bytes are refused, and the merger goes on");

	/* Stale replays prove nothing: anyone can replay a signed message. */
	b.len = 0;
	sign_msg(&b, &a, GOSSIP_T_SET, "color", "old", 9, now);
	uint64_t stale = mg.stale;
	ok(merge1(&mg, &b) == 0 && mg.stale == stale + 1 && lines_in(rejects, "") == 1,
	   "a stale message is dropped and charged to nobody");

	/* Times and versions from the future. */
	fprintf(stderr, "# refusals from the future are expected below:\n");
	uint8_t root0[16], root1[16];
	uint64_t n0 = digest_count(st, root0), rej = mg.rejected;
	b.len = 0;
	sign_msg(&b, &r, GOSSIP_T_SET, "app/pin", "forever", UINT64_MAX, now);
	ok(merge1(&mg, &b) == 0 && mg.rejected == rej + 1 && strstr(gossip_error(), "from the future"),
	   "version 2^64-1 from a restricted signer is refused: %s", gossip_error());
	ok(digest_count(st, root1) == n0 && memcmp(root0, root1, 16) == 0, "the store is unchanged");
	ok(lines_in(rejects, "from the future") == 1, "proven by its signature: charged");
	b.len = 0;
	sign_msg(&b, &a, GOSSIP_T_EVENT, "poison", NULL, UINT64_MAX - 1, now - 7200000);
	ok(merge1(&mg, &b) == 0 && mg.rejected == rej + 2, "an old event with version 2^64-2 is refused");
	b.len = 0;
	sign_msg(&b, &a, GOSSIP_T_SET, "app/pin", "later", now, now);
	ok(merge1(&mg, &b) == 0 && mg.rejected == rej + 2 && mg.added == 3,
	   "a later write by another signer is stored");
	b.len = 0;
	sign_msg(&b, &a, GOSSIP_T_SET, "soon", "1", now + 60000, now + 60000);
	ok(merge1(&mg, &b) == 0 && mg.added == 4, "a minute ahead is within the default skew");
	b.len = 0;
	sign_msg(&b, &a, GOSSIP_T_SET, "later", "1", now, now + 600000);
	ok(merge1(&mg, &b) == 0 && mg.rejected == rej + 3 && strstr(gossip_error(), "time"),
	   "a time ten minutes ahead is refused: %s", gossip_error());
	b.len = 0;
	sign_msg(&b, &a, GOSSIP_T_SET, "burst", "1", now + GOSSIP_VERSION_LEAD_MS, now);
	ok(merge1(&mg, &b) == 0 && mg.added == 5,
	   "a version as far ahead as a burst may run is stored");
	b.len = 0;
	sign_msg(&b, &a, GOSSIP_T_SET, "burst2", "1",
	         now + GOSSIP_MAX_SKEW_MS + GOSSIP_VERSION_LEAD_MS + 60000, now);
	ok(merge1(&mg, &b) == 0 && mg.rejected == rej + 4 && strstr(gossip_error(), "version"),
	   "beyond skew and lead it is refused: %s", gossip_error());
	trust.max_skew_ms = 1000;
	b.len = 0;
	sign_msg(&b, &a, GOSSIP_T_SET, "skew", "1", now + 5000, now + 5000);
	ok(merge1(&mg, &b) == 0 && mg.rejected == rej + 5, "with a 1 s skew, 5 s ahead is refused");
	trust.max_skew_ms = 0;
	ok(lines_in(rejects, "from the future") == 5, "each proven refusal charged once");

	/* News: passed on once, newest heartbeat only, never stored. */
	size = store_size(dir);
	int calls = seen.calls;
	b.len = 0;
	sign_msg(&b, &a, GOSSIP_T_SET, GOSSIP_KEY_HB, "", 20, now);
	ok(merge1(&mg, &b) == 0 && seen.calls == calls + 1 && store_size(dir) == size,
	   "a heartbeat is reported and not stored");
	ok(merge1(&mg, &b) == 0 && seen.calls == calls + 1, "the same heartbeat again is not");
	b.len = 0;
	sign_msg(&b, &a, GOSSIP_T_SET, GOSSIP_KEY_HB, "", 19, now);
	ok(merge1(&mg, &b) == 0 && seen.calls == calls + 1, "nor an older one");
	b.len = 0;
	struct gossip_msg ping = {.type = GOSSIP_T_PING, .value = (const uint8_t *)"12345678",
	                          .valuelen = 8, .has_value = 1};
	gossip_msg_sign(&b, &ping, &a);
	ok(merge1(&mg, &b) == 0 && seen.calls == calls + 2 && store_size(dir) == size,
	   "a probe is reported and not stored");

	/* verified: gossip-listen checked the signature; the merger does not again. */
	struct gossip_merger trusting = {.st = st, .trust = &trust, .verified = 1};
	b.len = 0;
	sign_msg(&b, &a, GOSSIP_T_SET, "checked", "by listen", 30, now);
	b.p[b.len - 1] ^= 1;
	ok(merge1(&trusting, &b) == 0 && trusting.added == 1, "with verified set, no signature check is made");
	b.len = 0;
	sign_msg(&b, &x, GOSSIP_T_SET, "checked", "stranger", 31, now);
	ok(merge1(&trusting, &b) == 0 && trusting.rejected == 1, "but trust is still checked");
	b.len = 0;
	sign_msg(&b, &a, GOSSIP_T_SET, "checked", "from the future", now + 3600000, now + 3600000);
	ok(merge1(&trusting, &b) == 0 && trusting.rejected == 2, "and times and versions");
	gossip_merger_free(&trusting);

	/* lazy: reported once written, synced just after. */
	struct seen lazy_seen = {dir, 0, 0, 0};
	struct gossip_merger lazy = {.st = st, .trust = &trust, .lazy = 1, .on_new = on_new, .ctx = &lazy_seen};
	b.len = 0;
	sign_msg(&b, &a, GOSSIP_T_SET, "lazy", "1", 40, now);
	ok(merge1(&lazy, &b) == 0 && lazy.added == 1 && lazy_seen.calls == 1 && lazy_seen.on_disk,
	   "lazy: stored and reported");
	gossip_merger_free(&lazy);
	gossip_merger_free(&mg);
	gossip_store_close(st);

	/* Any order, any duplication, of the same sets and deletes from three origins: the
	 * same summary. */
	struct gossip_buf all = {0};
	size_t off[60], len[60], nm = 0;
	const struct gossip_identity *who[] = {&a, &r, &a};
	const char *keys[] = {"app/k1", "app/k2", "app/k3", "app/k4"};
	for (int i = 0; i < 30; i++) {
		off[nm] = all.len;
		len[nm++] = sign_msg(&all, who[i % 3], i % 4 == 3 ? GOSSIP_T_DEL : GOSSIP_T_SET, keys[i % 4],
		                     i % 4 == 3 ? NULL : "v", 100 + (uint64_t)i, now);
	}
	uint8_t first[16], root[16];
	uint64_t count, first_count = 0;
	int same = 1;
	for (int run = 0; run < 8; run++) {
		char *d = temp_dir("t-merge-order");
		struct gossip_store *s = gossip_store_open(d, NULL);
		struct gossip_merger m = {.st = s, .trust = &trust};
		size_t order[60];
		for (size_t i = 0; i < nm; i++)
			order[i] = i;
		for (size_t i = nm - 1; i > 0; i--) {
			size_t j = randombytes_uniform((uint32_t)i + 1), t = order[i];
			order[i] = order[j];
			order[j] = t;
		}
		for (size_t i = 0; i < nm; i++) {
			gossip_merge_item(&m, all.p + off[order[i]], len[order[i]], "test", 0);
			if (randombytes_uniform(3) == 0)  /* a duplicate, at once or in a later batch */
				gossip_merge_item(&m, all.p + off[order[i]], len[order[i]], "test", 0);
			if (randombytes_uniform(4) == 0)
				gossip_merge_flush(&m);
		}
		gossip_merge_flush(&m);
		gossip_store_lock(s);
		gossip_store_summary(s, root, &count);
		gossip_store_unlock(s);
		if (run == 0) {
			memcpy(first, root, 16);
			first_count = count;
		}
		same &= memcmp(first, root, 16) == 0 && count == first_count;
		gossip_merger_free(&m);
		gossip_store_close(s);
		rm_dir(d);
	}
	ok(same && first_count == 4, "8 random orders with duplicates: one root, 4 current messages (two origins, four keys: one register each) (%llu)",
	   (unsigned long long)first_count);

	/* An equivocation: two messages of a's, one key and version, other values. Merged in
	 * either order, in one batch or two, every store keeps the lower hash; the pair is
	 * kept as proof once and charged once; the second to arrive is reported. */
	struct gossip_buf ex = {0}, ey = {0};
	sign_msg(&ex, &a, GOSSIP_T_SET, "app/k1", "one", 500, now);
	sign_msg(&ey, &a, GOSSIP_T_SET, "app/k1", "two", 500, now);
	uint8_t hx[16], hy[16], eroot[4][16];
	crypto_generichash(hx, 16, ex.p, ex.len, NULL, 0);
	crypto_generichash(hy, 16, ey.p, ey.len, NULL, 0);
	int x_wins = memcmp(hx, hy, 16) < 0, eq_ok = 1;
	fprintf(stderr, "# equivocations are expected below:\n");
	for (int run = 0; run < 4; run++) {
		char *d = temp_dir("t-merge-eq");
		struct gossip_store *s = gossip_store_open(d, NULL);
		struct seen es = {d, 0, 0, 0};
		struct gossip_merger m = {.st = s, .trust = &trust, .on_new = on_new, .ctx = &es};
		const struct gossip_buf *first_in = run % 2 ? &ey : &ex, *second = run % 2 ? &ex : &ey;
		int second_wins = (second == &ex) == x_wins;
		gossip_merge_item(&m, first_in->p, first_in->len, "test", 0);
		if (run < 2)
			gossip_merge_flush(&m);  /* two batches; else one */
		gossip_merge_item(&m, second->p, second->len, "test", 0);
		gossip_merge_flush(&m);
		digest_count(s, eroot[run]);
		char rj[4200];
		snprintf(rj, sizeof rj, "%s/rejects", d);
		eq_ok &= m.equivocations == 1 && m.rejected == !second_wins &&
		         m.added == 1u + second_wins && evidence_items(d) == 1 &&
		         lines_in(rj, "equivocation") == 1;
		/* The loser again, as a replay: refused, not charged again. */
		const struct gossip_buf *loser = x_wins ? &ey : &ex;
		merge1(&m, loser);
		eq_ok &= lines_in(rj, "equivocation") == 1 && evidence_items(d) == 1;
		if (!eq_ok)
			printf("# run %d: %llu equivocations, %llu rejected, %llu added\n", run,
			     (unsigned long long)m.equivocations, (unsigned long long)m.rejected,
			     (unsigned long long)m.added);
		gossip_merger_free(&m);
		gossip_store_close(s);
		rm_dir(d);
	}
	ok(eq_ok, "an equivocating pair: found in every order and batching, kept and charged once");
	ok(!memcmp(eroot[0], eroot[1], 16) && !memcmp(eroot[0], eroot[2], 16) &&
	   !memcmp(eroot[0], eroot[3], 16), "and every store keeps the same one");
	gossip_buf_free(&ex);
	gossip_buf_free(&ey);

	rm_dir(dir);
	free(dir);
	gossip_buf_free(&b);
	gossip_buf_free(&all);
	gossip_trust_free(&trust);
	gossip_identity_free(&a);
	gossip_identity_free(&r);
	gossip_identity_free(&x);
	return tap_done();
}
