/* t-store-follow: the store follower (gossip-merge watch): a read-only handle passes on
 * each message another handle stores, once, in store order; across compactions nothing
 * already passed on comes again and nothing stored meanwhile is lost; news, damage and
 * hidden origins are left out; a store made after the follower started is followed. */
#include "store-fixture.h"
#include "tap.h"
#include "fixture.h"

#include <fcntl.h>
#include <unistd.h>

/* What the follower passed on: the values (or "-" for a delete), in order. */
struct got {
	char v[64][16];
	int n, stop_after;
};

static int collect(void *ctx, const struct gossip_entry *e, const uint8_t *p)
{
	struct got *g = ctx;
	struct gossip_msg m;
	if (gossip_msg_decode(p, e->len, &m) < 0 || g->n == 64)
		return -1;
	snprintf(g->v[g->n++], 16, "%.*s", m.has_value ? (int)m.valuelen : 1,
	         m.has_value ? (const char *)m.value : "-");
	return g->stop_after && g->n == g->stop_after;
}

/* "a b c": what the follower passes on now, space-separated. */
static const char *follow(struct gossip_store_follower *f)
{
	static char out[1024];
	struct got g = {0};
	out[0] = 0;
	if (gossip_store_follow_next(f, collect, &g) < 0)
		return "(error)";
	for (int i = 0; i < g.n; i++) {
		if (i)
			strcat(out, " ");
		strcat(out, g.v[i]);
	}
	return out;
}

/* Append the messages in b (back to back) through st, as the merger does. */
static int append(struct gossip_store *st, struct gossip_buf *b)
{
	int r = fixture_append(st, b, 1, NULL);
	b->len = 0;
	return r;
}

/* Write raw bytes at the end of DIR/store, as no store handle would. */
static void raw_append(const char *dir, const uint8_t *p, size_t n)
{
	int fd = open(gossip_path(dir, "store"), O_WRONLY | O_APPEND);
	if (fd < 0 || write(fd, p, n) != (ssize_t)n)
		perror("raw_append");
	if (fd >= 0)
		close(fd);
}

static int hide(void *ctx, const uint8_t pk[32])
{
	return memcmp(pk, ctx, 32) != 0;
}

int main(void)
{
	if (sodium_init() < 0)
		return 1;
	char *dir = strdup(temp_dir("t-follow"));
	struct gossip_identity a = ident(1), b = ident(2);
	struct gossip_buf m = {0};
	struct gossip_store_opts ro = gossip_store_defaults;
	uint64_t now = gossip_now_ms(), v = 100;
	ro.readonly = 1;

	/* A reader on a directory with no store yet follows the store once it is made. */
	struct gossip_store *rd = gossip_store_open(dir, &ro);
	struct gossip_store_follower *f = rd ? gossip_store_follow(rd) : NULL;
	ok(f != NULL, "a follower starts on a directory with no store");
	ok(f && !gossip_store_follow_changed(f), "nothing changed yet");
	struct gossip_store *w = gossip_store_open(dir, NULL);
	sign_msg(&m, &a, GOSSIP_T_SET, "k1", "one", v++, now);
	ok(w && append(w, &m) == 0, "a writer stores a first message");
	ok(gossip_store_follow_changed(f), "the follower sees the store change");
	ok(!strcmp(follow(f), "one"), "and passes the message on");
	ok(!gossip_store_follow_changed(f) && !strcmp(follow(f), ""), "then nothing more");

	/* A new follower starts at the end: what is stored already is not passed on. */
	gossip_store_follow_free(f);
	f = gossip_store_follow(rd);
	ok(f && !strcmp(follow(f), ""), "a new follower passes on nothing already stored");

	/* Every message stored, in order, even one replaced before the follower looks. */
	sign_msg(&m, &a, GOSSIP_T_SET, "k2", "two", v++, now);
	sign_msg(&m, &b, GOSSIP_T_SET, "k2", "bee", v++, now);
	append(w, &m);
	sign_msg(&m, &a, GOSSIP_T_SET, "k2", "three", v++, now);
	sign_msg(&m, &a, GOSSIP_T_DEL, "k1", NULL, v++, now);
	append(w, &m);
	const char *s = follow(f);
	ok(!strcmp(s, "two bee three -"), "each stored message once, in store order: %s", s);

	/* News written into the file (by an older version) and damage are not passed on. */
	sign_msg(&m, &a, GOSSIP_T_SET, GOSSIP_KEY_HB, "", v++, now);
	static const uint8_t junk[] = {0x83, 0x01, 0x02, 0x03};
	raw_append(dir, m.p, m.len);
	raw_append(dir, junk, sizeof junk);
	m.len = 0;
	sign_msg(&m, &a, GOSSIP_T_SET, "k3", "after-junk", v++, now);
	raw_append(dir, m.p, m.len);
	m.len = 0;
	fprintf(stderr, "# a warning about damage is expected here:\n");
	s = follow(f);
	ok(!strcmp(s, "after-junk"), "news and damage are skipped, the message after them passed: %s", s);

	/* A compaction moves every message: none comes again. */
	gossip_store_close(w);
	w = gossip_store_open(dir, NULL);
	ok(w && gossip_store_compact(w, NULL, NULL) == 0, "the writer compacts");
	ok(gossip_store_follow_changed(f), "the follower sees another file");
	s = follow(f);
	ok(!strcmp(s, ""), "and passes on nothing again: '%s'", s);

	/* Stored before a compaction the follower did not see, and after it: each once. */
	sign_msg(&m, &a, GOSSIP_T_SET, "k4a", "before", v++, now);
	append(w, &m);
	sign_msg(&m, &b, GOSSIP_T_SET, "k4", "twice", v++, now);
	sign_msg(&m, &b, GOSSIP_T_SET, "k4", "replaced", v++, now);
	append(w, &m);
	ok(gossip_store_compact(w, NULL, NULL) == 0, "more stored, then compacted again");
	sign_msg(&m, &a, GOSSIP_T_SET, "k5", "after", v++, now);
	append(w, &m);
	s = follow(f);
	ok(!strcmp(s, "before replaced after"),
	   "what was stored meanwhile, once (a version replaced before the compaction is gone): %s", s);
	ok(!strcmp(follow(f), ""), "then nothing");
	ok(gossip_store_compact(w, NULL, NULL) == 0 && !strcmp(follow(f), ""),
	   "a third compaction: still nothing again");

	/* A hidden origin's messages are not passed on. */
	gossip_store_set_visible(rd, hide, b.pk);
	sign_msg(&m, &b, GOSSIP_T_SET, "k6", "hidden", v++, now);
	sign_msg(&m, &a, GOSSIP_T_SET, "k6", "shown", v++, now);
	append(w, &m);
	s = follow(f);
	ok(!strcmp(s, "shown"), "a hidden origin's message is left out: %s", s);
	gossip_store_set_visible(rd, NULL, NULL);

	/* fn stops the walk; what it did not see is not seen again. */
	for (int i = 0; i < 3; i++)
		sign_msg(&m, &a, GOSSIP_T_SET, "k7", "x", v++, now);
	append(w, &m);
	struct got g = {.stop_after = 1};
	ok(gossip_store_follow_next(f, collect, &g) == 1 && g.n == 1, "fn returning 1 stops the walk");
	ok(!strcmp(follow(f), ""), "and the follower has moved on");

	/* The follower leaves the store alone: no file changed by it. */
	ok(!gossip_store_follow_changed(f), "nothing changed since it last looked");

	gossip_store_follow_free(f);
	gossip_store_close(rd);
	gossip_store_close(w);
	gossip_buf_free(&m);
	gossip_identity_free(&a);
	gossip_identity_free(&b);
	rm_dir(dir);
	free(dir);
	return tap_done();
}
