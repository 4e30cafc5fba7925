/* merge.c: the merger: each message decoded once, classified against the store's index,
 * checked against trust when new, stored in batches under the lock, and reported only
 * once on disk. News is checked and reported, never stored. Equivocations are kept as
 * proof; the lower hash wins. */
#include "store.h"

#include <stdlib.h>
#include <string.h>

enum { PENDING_MAX = 4 << 20 };

struct gossip_merge_cache {
	struct gossip_buf pending;  /* verified candidates, back to back */
	struct store_item *items;  /* what the store needs of each, from its one decode */
	enum gossip_class *cls;
	size_t n, cap;
	/* The pending items by slot (open addressing, index + 1), so that two messages of one
	 * slot and version never share a batch: the store would judge the second against the
	 * first under its lock, where no proof is kept. */
	uint32_t *byslot;
	size_t slotcap;
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
	if (++mg->rejected > mg->say_max && mg->say_max) {
		mg->unsaid++;
		snprintf(mg->unsaid_src, sizeof mg->unsaid_src, "%s", src);
		return;
	}
	gossip_warn("%s: offset %llu: %s", src, (unsigned long long)off, gossip_error());
}

/* Trust, and the signature unless gossip-listen checked it; what the signer's own
 * signature proves it did is kept as proof and charged to it, nothing else. */
static enum gossip_verdict check(struct gossip_merger *mg, const struct gossip_msg *m)
{
	static const struct gossip_trust none;
	const struct gossip_signer *sg;
	const struct gossip_trust *t = mg->trust ? mg->trust : &none;
	enum gossip_verdict v = mg->verified ? gossip_authorize(m, t, &sg) : gossip_check_msg(m, t, &sg);
	if (gossip_verdict_proven(v)) {
		char why[512];
		snprintf(why, sizeof why, "%s", gossip_error());
		gossip_note_proof(gossip_store_dir(mg->st), m->origin, gossip_verdict_name(v), m->bytes,
		                  m->nbytes, NULL, 0);
		gossip_seterr("%s", why);
	}
	return v;
}

/* The key or event name for a line on stderr: at most 64 bytes, no control bytes. */
static void key_text(char out[72], const struct gossip_msg *m)
{
	size_t k = 0;
	for (size_t i = 0; i < m->keylen && k < 64; i++)
		out[k++] = m->key[i] < 0x20 || m->key[i] == 0x7f ? '?' : (char)m->key[i];
	if (m->keylen > 64)
		memcpy(out + k, "...", 3), k += 3;
	out[k] = 0;
}

/* m (checked, signature valid) and the stored rival: one slot and version, other bytes.
 * The pair proves the signer equivocated; wins says m has the lower hash and replaces
 * the rival. One line either way; the loser is also a refusal. */
static int equivocation(struct gossip_merger *mg, const struct gossip_msg *m,
                        const struct gossip_entry *rival, int wins, const char *src, uint64_t off)
{
	uint8_t *buf = malloc(GOSSIP_MSG_MAX);
	struct gossip_msg r;
	char id[9], key[72];
	if (!buf) {
		gossip_seterr("out of memory");
		return -1;
	}
	if (store_read(mg->st, rival, buf) < 0) {
		mg->store_failed = 1;
		free(buf);
		return -1;
	}
	/* The stored one was verified when it was merged; a proof must stand on its own. */
	if (gossip_msg_decode(buf, rival->len, &r) == 0 && memcmp(r.origin, m->origin, 32) == 0 &&
	    r.version == m->version && gossip_msg_verify(&r) == 0)
		gossip_note_proof(gossip_store_dir(mg->st), m->origin, "equivocation", m->bytes,
		                  m->nbytes, buf, rival->len);
	free(buf);
	mg->equivocations++;
	const struct gossip_signer *sg = mg->trust ? gossip_trust_find(mg->trust, m->origin) : NULL;
	gossip_short_id(id, m->origin);
	key_text(key, m);
	gossip_seterr("equivocation by %s: another message of version %llu for %s \"%s\" is "
	              "stored; this one has the %s hash and %s (the pair is kept in %s/evidence)",
	              sg && sg->name ? sg->name : id, (unsigned long long)m->version,
	              m->type == GOSSIP_T_EVENT ? "event" : "key", key, wins ? "lower" : "higher",
	              wins ? "replaces it" : "is refused", gossip_store_dir(mg->st));
	if (wins)
		gossip_warn("%s: offset %llu: %s", src, (unsigned long long)off, gossip_error());
	else
		reject(mg, src, off);
	return 0;
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
	/* After what came before it, so a member record still precedes its first beat. A
	 * beat whose flush failed is not passed on, nor remembered: sent again, it is new. */
	if (gossip_merge_flush(mg) < 0)
		return -1;
	if (hb && !(b = beat_of(c, m->origin, 1)))
		return -1;
	if (b)
		b->version = m->version;
	mg->added++;
	if (mg->on_new)
		mg->on_new(mg->ctx, p, n);
	return 0;
}

static size_t slot_pos(const struct gossip_merge_cache *c, const uint8_t slot[16])
{
	uint64_t h;
	memcpy(&h, slot, 8);
	return (size_t)h & (c->slotcap - 1);
}

/* The pending item of it's slot and version, or -1. */
static long pending_same(const struct gossip_merge_cache *c, const struct store_item *it)
{
	if (!c->slotcap)
		return -1;
	for (size_t i = slot_pos(c, it->slot); c->byslot[i]; i = (i + 1) & (c->slotcap - 1)) {
		const struct store_item *p = &c->items[c->byslot[i] - 1];
		if (p->version == it->version && memcmp(p->slot, it->slot, 16) == 0)
			return (long)c->byslot[i] - 1;
	}
	return -1;
}

static void slot_add(struct gossip_merge_cache *c, size_t k)
{
	size_t i = slot_pos(c, c->items[k].slot);
	while (c->byslot[i])
		i = (i + 1) & (c->slotcap - 1);
	c->byslot[i] = (uint32_t)k + 1;
}

static int pend(struct gossip_merge_cache *c, const struct store_item *item, const uint8_t *p,
                size_t n)
{
	if ((c->n + 1) * 2 > c->slotcap) {
		size_t cap = c->slotcap ? 2 * c->slotcap : 512;
		uint32_t *t = calloc(cap, sizeof *t);
		if (!t) {
			gossip_seterr("out of memory");
			return -1;
		}
		free(c->byslot);
		c->byslot = t;
		c->slotcap = cap;
		for (size_t k = 0; k < c->n; k++)
			slot_add(c, k);
	}
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
	c->items[c->n] = *item;
	slot_add(c, c->n++);
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
	enum gossip_class cls;
	const struct gossip_entry *rival;
	for (;;) {
		cls = store_classify_item(mg->st, &it);
		rival = store_rival(mg->st, &it);
		/* A replay (stale, or the same bytes again) proves nothing about anyone: anyone
		 * can replay a signed message. */
		if (cls == GOSSIP_DUP) {
			mg->dups++;
			return 0;
		}
		if (cls == GOSSIP_STALE && !rival) {
			mg->stale++;
			return 0;
		}
		long k = pending_same(c, &it);
		if (k < 0)
			break;
		if (memcmp(c->items[k].hash, it.hash, 16) == 0) {
			mg->dups++;
			return 0;
		}
		/* Its rival is pending: store that first, then judge this one against it. */
		if (gossip_merge_flush(mg) < 0)
			return -1;
	}
	/* Only a message new to this store (or its rival) costs a signature check, and none
	 * when gossip-listen has checked it already. */
	if (check(mg, &m) != GOSSIP_V_OK) {
		reject(mg, src, off);
		return 0;
	}
	if (rival && equivocation(mg, &m, rival, cls == GOSSIP_NEW, src, off) < 0)
		return -1;
	if (cls != GOSSIP_NEW)
		return 0;
	if (pend(c, &it, p, n) < 0)
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
	memset(c->byslot, 0, c->slotcap * sizeof *c->byslot);
	/* Under the lock the store classifies again: what another process stored meanwhile
	 * counts, an equivocation with it included (the lower hash wins; no proof is kept
	 * for that race, but the pair will meet again at some store). */
	if (store_append(mg->st, c->items, c->pending.p, n, !mg->lazy, mg->record_summary, c->cls) < 0) {
		mg->store_failed = 1;
		return -1;
	}
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
		if (mg->on_stored)
			mg->on_stored(mg->sctx, c->pending.p + at, c->items[i].len);
		at += c->items[i].len;
	}
	mg->written += added;
	/* The batch's events are logged as it was reported: written (lazy: before the sync,
	 * and whether or not the sync fails). */
	if (added && mg->on_stored)
		mg->on_stored(mg->sctx, NULL, 0);
	if (mg->lazy && added && store_sync(mg->st) < 0) {
		mg->store_failed = 2;
		return -1;
	}
	return store_compact_if_wasteful(mg->st);
}

void gossip_merger_count(struct gossip_stats *s, struct gossip_merger *mg)
{
	gossip_stats_add(s, "stored", &mg->added);
	gossip_stats_add(s, "stale", &mg->stale);
	gossip_stats_add(s, "refused_by_merge", &mg->rejected);
	gossip_stats_add(s, "equivocations", &mg->equivocations);
}

void gossip_merger_free(struct gossip_merger *mg)
{
	if (mg->unsaid)
		gossip_warn("%s: %llu more messages refused, not said one by one (the first %u were, above)",
		            mg->unsaid_src, (unsigned long long)mg->unsaid, mg->say_max);
	mg->unsaid = 0;
	if (!mg->cache)
		return;
	gossip_buf_free(&mg->cache->pending);
	free(mg->cache->items);
	free(mg->cache->cls);
	free(mg->cache->byslot);
	free(mg->cache->beats);
	free(mg->cache);
	mg->cache = NULL;
}
