/* store-fixture.h: for the unit tests that reach into the store (store.h). */
#ifndef GOSSIP_STORE_FIXTURE_H
#define GOSSIP_STORE_FIXTURE_H

#include "store.h"

/* A reproducible stream of numbers below n (xorshift64), for the tests that take many
 * random steps; *rnd_state() = SEED (odd) starts it elsewhere. */
static inline uint64_t *rnd_state(void)
{
	static uint64_t s = 0x9e3779b97f4a7c15ULL;
	return &s;
}

static inline uint32_t rnd(uint32_t n)
{
	uint64_t *s = rnd_state();
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return (uint32_t)(*s % n);
}

/* Append the messages in b (back to back, at most 64) to st in one batch, as the merger
 * does; cls (may be NULL) says what each was. */
static inline int fixture_append(struct gossip_store *st, const struct gossip_buf *b, int durable,
                                 enum gossip_class *cls)
{
	struct store_item it[64];
	enum gossip_class dummy[64];
	size_t n = 0, at = 0, len;
	while (at < b->len && n < 64 &&
	       gossip_cbor_scan(b->p + at, b->len - at, &gossip_msg_limits, NULL, &len) == GOSSIP_SCAN_OK) {
		struct gossip_msg m;
		if (gossip_msg_decode(b->p + at, len, &m) < 0)
			return -1;
		store_item_of(&it[n++], &m, len);
		at += len;
	}
	return store_append(st, it, b->p, n, durable, 0, cls ? cls : dummy);
}

#endif
