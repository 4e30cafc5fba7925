/* merge.c: the merger: each message decoded once, classified against the store's index,
 * checked against trust when new, stored in batches under the lock, and reported only
 * once on disk. News is checked and reported, never stored. */
#include "store.h"

#include <stdlib.h>
#include <string.h>

enum { PENDING_MAX = 4 << 20 };

struct gossip_merge_cache {
	struct gossip_buf pending;  /* verified candidates, back to back */
	struct store_item *items;  /* what the store needs of each, from its one decode */
	enum gossip_class *cls;
	size_t n, cap;
	/* News is not state (gossip_msg_is_news): the newest heartbeat version per origin is
	 * kept here, in memory. */
	struct beat {
		uint8_t origin[32];
		uint64_t version;
	} *beats;
	size_t nbeats, capbeats;
};

static struct gossip_merge_cache *cache(struct gossip_merger *mg)
{
	if (!mg->cache && !(mg->cache = calloc(1, sizeof *mg->cache)))
		gossip_seterr("out of memory");
	return mg->cache;
}

static void reject(struct gossip_merger *mg, const char *src, uint64_t off)
{
	mg->rejected++;
	gossip_warn("%s: offset %llu: %s", src, (unsigned long long)off, gossip_error());
}

/* Trust, and the signature unless gossip-listen checked it; what the signer's own key
 * proves it did is noted for reputation. */
static enum gossip_verdict check(struct gossip_merger *mg, const struct gossip_msg *m)
{
	static const struct gossip_trust none;
	const struct gossip_signer *sg;
	const struct gossip_trust *t = mg->trust ? mg->trust : &none;
	enum gossip_verdict v = mg->verified ? gossip_authorize(m, t, &sg) : gossip_check_msg(m, t, &sg);
	if (v == GOSSIP_V_BADSIG || v == GOSSIP_V_FORBIDDEN)
		gossip_note_reject(gossip_store_dir(mg->st), m->origin, gossip_verdict_name(v));
	return v;
}

/* The newest heartbeat seen from origin, made when make is set; NULL when out of memory. */
static struct beat *beat_of(struct gossip_merge_cache *c, const uint8_t origin[32], int make)
{
	for (size_t i = 0; i < c->nbeats; i++)
		if (!memcmp(c->beats[i].origin, origin, 32))
			return &c->beats[i];
	if (!make)
		return NULL;
	if (c->nbeats == c->capbeats) {
		size_t cap = c->capbeats ? 2 * c->capbeats : 64;
		struct beat *v = realloc(c->beats, cap * sizeof *v);
		if (!v) {
			gossip_seterr("out of memory");
			return NULL;
		}
		c->beats = v;
		c->capbeats = cap;
	}
	struct beat *b = &c->beats[c->nbeats++];
	memcpy(b->origin, origin, 32);
	b->version = 0;
	return b;
}

/* News (a heartbeat, a probe, a claim about a member): checked like any message, passed
 * on, and forgotten. A heartbeat only when it is the newest from its origin. */
static int merge_news(struct gossip_merger *mg, const struct gossip_msg *m, const uint8_t *p,
                      size_t n, const char *src, uint64_t off)
{
	struct gossip_merge_cache *c = cache(mg);
	int hb = gossip_msg_key_is(m, GOSSIP_KEY_HB);
	struct beat *b = hb && c ? beat_of(c, m->origin, 0) : NULL;
	if (!c)
		return -1;
	if (b && m->version <= b->version) {
		mg->dups++;
		return 0;
	}
	enum gossip_verdict v = check(mg, m);
	if (v == GOSSIP_V_OK && !gossip_msg_is_probe(m) && m->type != GOSSIP_T_SET) {
		gossip_seterr("%.*s must be a set", (int)m->keylen, (const char *)m->key);
		v = GOSSIP_V_MALFORMED;
	}
	if (v != GOSSIP_V_OK) {
		reject(mg, src, off);
		return 0;
	}
	if (hb && !(b = beat_of(c, m->origin, 1)))
		return -1;
	if (b)
		b->version = m->version;
	/* After what came before it, so a member record still precedes its first beat. */
	if (gossip_merge_flush(mg) < 0)
		return -1;
	mg->added++;
	if (mg->on_new)
		mg->on_new(mg->ctx, p, n);
	return 0;
}

static int pend(struct gossip_merge_cache *c, const struct gossip_msg *m, const uint8_t *p, size_t n)
{
	if (c->n == c->cap) {
		size_t cap = c->cap ? 2 * c->cap : 256;
		struct store_item *it = realloc(c->items, cap * sizeof *it);
		if (it)
			c->items = it;
		enum gossip_class *cl = it ? realloc(c->cls, cap * sizeof *cl) : NULL;
		if (!cl) {
			gossip_seterr("out of memory");
			return -1;
		}
		c->cls = cl;
		c->cap = cap;
	}
	if (gossip_buf_put(&c->pending, p, n) < 0)
		return -1;
	store_item_of(&c->items[c->n++], m, n);
	return 0;
}

int gossip_merge_item(struct gossip_merger *mg, const uint8_t *p, size_t n, const char *src,
                      uint64_t off)
{
	struct gossip_merge_cache *c = cache(mg);
	struct gossip_msg m;
	struct store_item it;
	if (!c)
		return -1;
	mg->seen++;
	if (gossip_msg_decode(p, n, &m) < 0) {
		reject(mg, src, off);
		return 0;
	}
	if (gossip_msg_is_news(&m))
		return merge_news(mg, &m, p, n, src, off);
	store_item_of(&it, &m, n);
	switch (store_classify_item(mg->st, &it)) {
	case GOSSIP_DUP:
		mg->dups++;
		return 0;
	case GOSSIP_STALE:
		mg->stale++;
		/* A replay under the watermark (no older copy here) is worth a note. */
		if (!gossip_store_find(mg->st, it.slot) && mg->trust &&
		    gossip_trust_find(mg->trust, m.origin))
			gossip_note_reject(gossip_store_dir(mg->st), m.origin, "stale replay");
		return 0;
	case GOSSIP_NEW:
		break;
	}
	/* Only a message new to this store costs a signature check, and none when
	 * gossip-listen has checked it already. */
	if (check(mg, &m) != GOSSIP_V_OK) {
		reject(mg, src, off);
		return 0;
	}
	if (pend(c, &m, p, n) < 0)
		return -1;
	if (c->pending.len >= PENDING_MAX)
		return gossip_merge_flush(mg);
	return 0;
}

int gossip_merge_flush(struct gossip_merger *mg)
{
	struct gossip_merge_cache *c = mg->cache;
	if (!c || !c->n)
		return 0;
	size_t n = c->n;
	c->n = 0;
	c->pending.len = 0;
	if (store_append(mg->st, c->items, c->pending.p, n, !mg->lazy, c->cls) < 0)
		return -1;
	/* On disk now (lazy: written, and durable just below): report them. The new ones
	 * are at the front of pending, in order. */
	size_t at = 0, added = 0;
	for (size_t i = 0; i < n; i++) {
		if (c->cls[i] != GOSSIP_NEW) {
			*(c->cls[i] == GOSSIP_DUP ? &mg->dups : &mg->stale) += 1;
			continue;
		}
		mg->added++;
		added++;
		if (mg->on_new)
			mg->on_new(mg->ctx, c->pending.p + at, c->items[i].len);
		at += c->items[i].len;
	}
	if (mg->lazy && added && store_sync(mg->st) < 0)
		return -1;
	return store_compact_if_wasteful(mg->st);
}

void gossip_merger_free(struct gossip_merger *mg)
{
	if (!mg->cache)
		return;
	gossip_buf_free(&mg->cache->pending);
	free(mg->cache->items);
	free(mg->cache->cls);
	free(mg->cache->beats);
	free(mg->cache);
	mg->cache = NULL;
}
