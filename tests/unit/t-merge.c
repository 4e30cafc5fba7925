/* t-merge: the merger over a real store: what is new is stored before it is reported;
 * duplicates, strangers, bad signatures, keys outside a prefix and malformed bytes are
 * refused and counted (and the signer's own doing noted for reputation); news passes
 * and is never stored; any order of the same messages ends in the same summary. */
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
	ok(lines_in(rejects, "bad signature") == 1, "and noted for reputation");

	b.len = 0;
	sign_msg(&b, &r, GOSSIP_T_SET, "system/x", "1", 13, now);
	ok(merge1(&mg, &b) == 0 && mg.rejected == 3 && store_size(dir) == size,
	   "a key outside the signer's prefix is refused");
	ok(lines_in(rejects, "key not allowed") == 1, "and noted for reputation");
	b.len = 0;
	sign_msg(&b, &r, GOSSIP_T_SET, "app/x", "1", 14, now);
	ok(merge1(&mg, &b) == 0 && mg.added == 2, "a key inside it is stored");

	static const uint8_t junk[] = {0xd2, 0x84, 0x40, 0xa0, 0x40};
	ok(gossip_merge_item(&mg, junk, sizeof junk, "test", 0) == 0 && mg.rejected == 4,
	   "malformed bytes are refused, and the merger goes on");

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
	ok(same && first_count == 8, "8 random orders with duplicates: one root, 8 current messages (two origins, four keys) (%llu)",
	   (unsigned long long)first_count);

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
