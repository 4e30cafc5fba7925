/* t-order: the ordered event's codec (round trip, the forms refused) and the ordering
 * buffers: FIFO gaps, causal dependencies, total order's stability, duplicates, late
 * messages, skipped expired gaps, and the saved delivery state. */
#include "gossip.h"
#include "tap.h"
#include "fixture.h"

static uint8_t A[32], B[32], C[32];

/* A decoded message of origin pk with an ordered event (the fields the buffers read). */
static void add(struct gossip_orderer *o, const uint8_t pk[32], uint64_t seq, uint64_t lamport,
                const struct gossip_odep *deps, size_t ndeps, const char *payload, int want)
{
	struct gossip_msg m = {0};
	struct gossip_oev e = {.seq = seq, .lamport = lamport, .deps = (struct gossip_odep *)deps,
	                       .ndeps = ndeps, .payload = (const uint8_t *)payload, .paylen = strlen(payload)};
	memcpy(m.origin, pk, 32);
	m.type = GOSSIP_T_EVENT;
	m.key = (const uint8_t *)"ev";
	m.keylen = 2;
	m.time = 1000;
	int r = gossip_orderer_add(o, &m, &e, 5000);
	ok(r == want, "add %s: %d (want %d)", payload, r, want);
}

/* The payloads delivered now, joined by spaces. */
static const char *drain(struct gossip_orderer *o, uint64_t now)
{
	static char out[512];
	struct gossip_omsg m;
	uint64_t skipped;
	int r;
	out[0] = 0;
	while ((r = gossip_orderer_next(o, now, &m, &skipped)) > 0) {
		if (r == 2 || r == 3) {
			snprintf(out + strlen(out), sizeof out - strlen(out), "%s[%s %llu]", out[0] ? " " : "",
			         r == 2 ? "skip" : "without", (unsigned long long)skipped);
			continue;
		}
		snprintf(out + strlen(out), sizeof out - strlen(out), "%s%.*s", out[0] ? " " : "", (int)m.paylen,
		         (const char *)m.payload);
		gossip_omsg_free(&m);
	}
	return out;
}

static void codec(void)
{
	struct gossip_buf b = {0};
	struct gossip_odep d[2] = {{{0}, 7}, {{0}, 3}};
	memset(d[0].origin, 0xbb, 32);
	memset(d[1].origin, 0xaa, 32);
	struct gossip_oev e = {.seq = 5, .lamport = 9, .deps = d, .ndeps = 2, .payload = (const uint8_t *)"hi", .paylen = 2}, g;
	ok(gossip_order_encode(&b, &e) == 0, "encode");
	ok(gossip_order_decode(b.p, b.len, &g) == 0, "decode: %s", gossip_error());
	ok(g.seq == 5 && g.lamport == 9 && g.ndeps == 2 && g.paylen == 2 && !memcmp(g.payload, "hi", 2),
	   "round trip");
	ok(g.ndeps == 2 && g.deps[0].origin[0] == 0xaa && g.deps[0].seq == 3, "dependencies sorted by origin");
	gossip_oev_free(&g);
	/* {1: 1, 2: 1, 3: [], 4: h''} */
	unsigned char x[64];
	size_t n = unhex(x, "a401010201038004 40");
	n = unhex(x, "a40101020103800440");
	ok(gossip_order_decode(x, n, &g) == 0, "the smallest event decodes");
	gossip_oev_free(&g);
	n = unhex(x, "a40100020103800440");
	ok(gossip_order_decode(x, n, &g) < 0, "seq 0 refused: %s", gossip_error());
	n = unhex(x, "a4011801020103800440");
	ok(gossip_order_decode(x, n, &g) < 0, "a number not in its shortest form refused");
	n = unhex(x, "a3010102010380");
	ok(gossip_order_decode(x, n, &g) < 0, "a map of 3 refused");
	n = unhex(x, "a4020101010380044000");
	ok(gossip_order_decode(x, n, &g) < 0, "fields out of order refused");
	n = unhex(x, "a4010102010380044000");
	ok(gossip_order_decode(x, n, &g) < 0, "bytes after the map refused");
	n = unhex(x, "a40101020103800460");
	ok(gossip_order_decode(x, n, &g) < 0, "a text payload refused");
	struct gossip_odep same[2] = {{{1}, 1}, {{1}, 2}};
	struct gossip_oev twice = {.seq = 1, .lamport = 1, .deps = same, .ndeps = 2};
	b.len = 0;
	ok(gossip_order_encode(&b, &twice) < 0, "an origin twice in the dependencies refused");
	gossip_buf_free(&b);
}

static void fifo(void)
{
	struct gossip_orderer o;
	gossip_orderer_init(&o, GOSSIP_ORDER_FIFO);
	add(&o, A, 2, 2, NULL, 0, "a2", GOSSIP_ORDER_HELD);
	add(&o, B, 1, 1, NULL, 0, "b1", GOSSIP_ORDER_HELD);
	is_str(drain(&o, 5000), "b1", "fifo: a gap holds a2, b1 goes");
	add(&o, A, 2, 2, NULL, 0, "a2", GOSSIP_ORDER_DUP);
	add(&o, A, 1, 1, NULL, 0, "a1", GOSSIP_ORDER_HELD);
	is_str(drain(&o, 5000), "a1 a2", "fifo: the gap filled, both in order");
	add(&o, A, 1, 1, NULL, 0, "a1", GOSSIP_ORDER_DUP);
	/* A gap older than the stores keep events is skipped. */
	o.expire_ms = 1000;
	add(&o, B, 5, 5, NULL, 0, "b5", GOSSIP_ORDER_HELD);
	is_str(drain(&o, 1500), "", "fifo: a young gap waits");
	is_str(drain(&o, 9000), "[skip 3] b5", "fifo: an expired gap is skipped");
	/* Saved and loaded: delivered ones stay delivered. */
	char *dir = temp_dir("order");
	char path[300];
	snprintf(path, sizeof path, "%s/order.fifo", dir);
	ok(gossip_orderer_save(&o, path) == 0, "save");
	struct gossip_orderer p;
	gossip_orderer_init(&p, GOSSIP_ORDER_FIFO);
	ok(gossip_orderer_load(&p, path) == 1, "load");
	add(&p, A, 2, 2, NULL, 0, "a2", GOSSIP_ORDER_DUP);
	add(&p, B, 6, 6, NULL, 0, "b6", GOSSIP_ORDER_HELD);
	is_str(drain(&p, 9000), "b6", "loaded: goes on where it stopped");
	gossip_orderer_free(&p);
	gossip_orderer_free(&o);
	rm_dir(dir);
}

static void causal(void)
{
	struct gossip_orderer o;
	gossip_orderer_init(&o, GOSSIP_ORDER_CAUSAL);
	struct gossip_odep on_a1 = {{0}, 1};
	memcpy(on_a1.origin, A, 32);
	add(&o, B, 1, 2, &on_a1, 1, "b1", GOSSIP_ORDER_HELD);
	add(&o, C, 1, 1, NULL, 0, "c1", GOSSIP_ORDER_HELD);
	is_str(drain(&o, 5000), "c1", "causal: b1 waits for a1");
	add(&o, A, 1, 1, NULL, 0, "a1", GOSSIP_ORDER_HELD);
	is_str(drain(&o, 5000), "a1 b1", "causal: a1, then b1");
	gossip_orderer_free(&o);

	/* A dependency that never comes (a liar's: an origin that never sends, a seq its
	 * origin never reaches) holds its event as long as a gap, then it goes without it,
	 * and what waited on that event after it. */
	gossip_orderer_init(&o, GOSSIP_ORDER_CAUSAL);
	o.expire_ms = 1000;
	struct gossip_odep lie[2] = {{{0}, 4}, {{0}, 9}};
	memcpy(lie[0].origin, A, 32);
	memset(lie[1].origin, 0xee, 32);
	add(&o, A, 1, 1, NULL, 0, "a1", GOSSIP_ORDER_HELD);
	add(&o, B, 1, 2, lie, 2, "b1", GOSSIP_ORDER_HELD);
	struct gossip_odep on_b1 = {{0}, 1};
	memcpy(on_b1.origin, B, 32);
	add(&o, C, 1, 3, &on_b1, 1, "c1", GOSSIP_ORDER_HELD);
	is_str(drain(&o, 1500), "a1", "causal: b1 waits on a4 and ee9, c1 on b1");
	is_str(drain(&o, 9000), "[without 12] b1 c1", "causal: expired, b1 goes without them (a2-a4, ee1-ee9), then c1");
	add(&o, A, 2, 4, NULL, 0, "a2", GOSSIP_ORDER_HELD);
	is_str(drain(&o, 9000), "a2", "causal: a2, when it comes, still goes");
	gossip_orderer_free(&o);

	/* Two events that name each other (a liar's that names an honest origin's next, which
	 * names it back): the one whose dependency's clock is not below its own goes without
	 * it once expired, then the other. One that came with a lower clock is waited for. */
	gossip_orderer_init(&o, GOSSIP_ORDER_CAUSAL);
	o.expire_ms = 1000;
	struct gossip_odep on_c1b = {{0}, 1}, on_b1b = {{0}, 1};
	memcpy(on_c1b.origin, C, 32);
	memcpy(on_b1b.origin, B, 32);
	add(&o, B, 1, 5, &on_c1b, 1, "b1", GOSSIP_ORDER_HELD);
	add(&o, C, 1, 6, &on_b1b, 1, "c1", GOSSIP_ORDER_HELD);
	is_str(drain(&o, 1500), "", "causal: b1 and c1 wait on each other while young");
	is_str(drain(&o, 9000), "[without 1] b1 c1", "causal: expired, b1 (clock 5) goes without c1 (clock 6), then c1");
	gossip_orderer_free(&o);

	/* A dependency on its own origin is refused with the event. */
	struct gossip_buf b = {0};
	struct gossip_odep self = {{0}, 1};
	memcpy(self.origin, B, 32);
	struct gossip_oev e = {.seq = 2, .lamport = 2, .deps = &self, .ndeps = 1}, g;
	struct gossip_msg m = {0};
	ok(gossip_order_encode(&b, &e) == 0, "encode a dependency on its origin");
	memcpy(m.origin, B, 32);
	m.type = GOSSIP_T_EVENT;
	m.value = b.p;
	m.valuelen = b.len;
	m.has_value = 1;
	ok(gossip_order_of(&m, &g) < 0 && strstr(gossip_error(), "its own origin"), "refused: %s", gossip_error());
	memcpy(m.origin, A, 32);
	ok(gossip_order_of(&m, &g) == 1 && g.ndeps == 1, "from another origin, taken");
	gossip_oev_free(&g);
	gossip_buf_free(&b);
}

/* Total order's members: the first n of a, b and c. */
static void members(struct gossip_orderer *o, size_t n)
{
	uint8_t m[3][32];
	memcpy(m[0], A, 32);
	memcpy(m[1], B, 32);
	memcpy(m[2], C, 32);
	gossip_orderer_members(o, (const uint8_t(*)[32])m, n);
}

static void total(void)
{
	struct gossip_orderer o;
	gossip_orderer_init(&o, GOSSIP_ORDER_TOTAL);
	members(&o, 3);
	add(&o, B, 1, 1, NULL, 0, "b1", GOSSIP_ORDER_HELD);
	add(&o, A, 1, 1, NULL, 0, "a1", GOSSIP_ORDER_HELD);
	is_str(drain(&o, 5000), "", "total: nothing until every member is past it");
	ok(gossip_orderer_waits_on(&o, C), "total: waits on c");
	add(&o, C, 1, 3, NULL, 0, "c1", GOSSIP_ORDER_HELD);
	/* A < B < C by key: a1 (1, A) is stable (B heard at 1 > A's key, C at 3). */
	is_str(drain(&o, 5000), "a1 b1", "total: (1, a) then (1, b); c1 at 3 waits");
	add(&o, A, 2, 4, NULL, 0, "a2", GOSSIP_ORDER_HELD);
	add(&o, B, 2, 4, NULL, 0, "b2", GOSSIP_ORDER_HELD);
	is_str(drain(&o, 5000), "c1", "total: c1 once a and b are past 3");
	add(&o, B, 1, 1, NULL, 0, "b1", GOSSIP_ORDER_DUP);
	/* C taken for dead: the order goes on without it, and its old clock comes too late. */
	members(&o, 2);
	add(&o, A, 3, 5, NULL, 0, "a3", GOSSIP_ORDER_HELD);
	add(&o, B, 3, 6, NULL, 0, "b3", GOSSIP_ORDER_HELD);
	is_str(drain(&o, 5000), "a2 b2 a3", "total: without c");
	add(&o, C, 2, 4, NULL, 0, "c2", GOSSIP_ORDER_LATE);
	gossip_orderer_free(&o);
}

/* Quietly: m of origin pk, seq, lamport, no payload; the result. */
static int put(struct gossip_orderer *o, const uint8_t pk[32], uint64_t seq, uint64_t lamport)
{
	struct gossip_msg m = {0};
	struct gossip_oev e = {.seq = seq, .lamport = lamport};
	memcpy(m.origin, pk, 32);
	m.type = GOSSIP_T_EVENT;
	m.key = (const uint8_t *)"ev";
	m.keylen = 2;
	m.time = 1000;
	return gossip_orderer_add(o, &m, &e, 5000);
}

/* Thousands held at once, arriving in a shuffled order with deliveries between: every
 * one delivered once, in order, and each already held or delivered one a duplicate (the
 * index of held messages moves them as deliveries take others out). */
static void many(int mode)
{
	enum { PER = 3000, NO = 3 };
	const uint8_t *pk[NO] = {A, B, C};
	static uint32_t v[PER * NO];
	struct gossip_orderer o;
	struct gossip_rng rng;
	struct gossip_omsg m;
	uint64_t skipped, next[NO] = {1, 1, 1}, last_l = 0;
	int got = 0, bad_order = 0, bad_dup = 0, i;
	const uint8_t *last_o = NULL;
	gossip_orderer_init(&o, mode);
	if (mode == GOSSIP_ORDER_TOTAL)
		members(&o, NO);
	for (i = 0; i < PER * NO; i++)
		v[i] = (uint32_t)i;
	gossip_rng_seed(&rng, 7, 1);
	for (i = PER * NO - 1; i > 0; i--) {
		uint32_t j = gossip_rng_below(&rng, (uint32_t)i + 1), t = v[i];
		v[i] = v[j], v[j] = t;
	}
	/* Origin k's seq s has the clock 3s + k: each origin's clocks rise with its seq. */
	for (i = 0; i < PER * NO; i++) {
		int k = (int)(v[i] % NO);
		uint64_t seq = v[i] / NO + 1;
		if (put(&o, pk[k], seq, 3 * seq + (uint64_t)k) != GOSSIP_ORDER_HELD)
			bad_dup++;
		if (put(&o, pk[k], seq, 3 * seq + (uint64_t)k) != GOSSIP_ORDER_DUP)
			bad_dup++;
		if (i % 37)
			continue;
		while (gossip_orderer_next(&o, 5000, &m, &skipped) == 1) {
			int from = m.origin[0] == A[0] ? 0 : m.origin[0] == B[0] ? 1 : 2;
			bad_order += m.seq != next[from]++;
			if (mode == GOSSIP_ORDER_TOTAL) {
				bad_order += last_o && (m.lamport < last_l || (m.lamport == last_l && memcmp(m.origin, last_o, 32) <= 0));
				last_l = m.lamport, last_o = pk[from];
			}
			got++;
			gossip_omsg_free(&m);
			if (put(&o, pk[from], next[from] - 1, 3 * (next[from] - 1) + (uint64_t)from) != GOSSIP_ORDER_DUP)
				bad_dup++;
		}
	}
	while (gossip_orderer_next(&o, 5000, &m, &skipped) == 1) {
		int from = m.origin[0] == A[0] ? 0 : m.origin[0] == B[0] ? 1 : 2;
		bad_order += m.seq != next[from]++;
		got++;
		gossip_omsg_free(&m);
	}
	const char *name = gossip_order_mode_name(mode);
	ok(bad_dup == 0, "%s, up to %d held: each arrival held once, every repeat a duplicate (%d wrong)", name,
	   PER * NO, bad_dup);
	ok(bad_order == 0, "%s: each origin's events in seq order%s (%d out)", name,
	   mode == GOSSIP_ORDER_TOTAL ? ", all by (lamport, origin)" : "", bad_order);
	/* Total: the last event of each of B and C waits for a member's clock past it. */
	int want = mode == GOSSIP_ORDER_TOTAL ? PER * NO - 2 : PER * NO;
	ok(got == want && o.nheld == (size_t)(PER * NO - want), "%s: %d delivered (want %d), %zu held", name, got, want,
	   o.nheld);
	gossip_orderer_free(&o);
}

/* Numbers that could wrap are refused; a start past held events drops them; an event that
 * can never go, signed long ago, does not make every pass look at all that is held. */
static void bounds(void)
{
	struct gossip_buf b = {0};
	struct gossip_oev e = {.seq = GOSSIP_ORDER_NUM_MAX, .lamport = GOSSIP_ORDER_NUM_MAX}, g;
	ok(gossip_order_encode(&b, &e) == 0 && gossip_order_decode(b.p, b.len, &g) == 0, "seq and clock 2^62 taken");
	gossip_oev_free(&g);
	e.seq = GOSSIP_ORDER_NUM_MAX + 1;
	ok(gossip_order_encode(&b, &e) < 0, "seq 2^62 + 1 not encoded: %s", gossip_error());
	e.seq = 1, e.lamport = UINT64_MAX;
	ok(gossip_order_encode(&b, &e) < 0, "clock 2^64 - 1 not encoded");
	/* {1: 2^64 - 1, 2: 1, 3: [], 4: h''} and {1: 1, 2: 2^64 - 1, ...} */
	unsigned char x[64];
	size_t n = unhex(x, "a4011bffffffffffffffff0201038004 40");
	n = unhex(x, "a4011bffffffffffffffff020103800440");
	ok(gossip_order_decode(x, n, &g) < 0, "seq 2^64 - 1 refused: %s", gossip_error());
	n = unhex(x, "a40101021bffffffffffffffff03800440");
	ok(gossip_order_decode(x, n, &g) < 0, "clock 2^64 - 1 refused");
	gossip_buf_free(&b);

	struct gossip_orderer o;
	gossip_orderer_init(&o, GOSSIP_ORDER_FIFO);
	ok(put(&o, A, GOSSIP_ORDER_NUM_MAX + 1, 1) == GOSSIP_ORDER_DUP && o.nheld == 0,
	   "added past 2^62 (not decoded): nothing new, nothing held");
	add(&o, A, 2, 2, NULL, 0, "a2", GOSSIP_ORDER_HELD);
	add(&o, A, 5, 5, NULL, 0, "a5", GOSSIP_ORDER_HELD);
	ok(gossip_orderer_start(&o, A, 4) == 0 && o.nheld == 1, "a start at 4 drops a2, held below it");
	add(&o, A, 4, 4, NULL, 0, "a4", GOSSIP_ORDER_HELD);
	is_str(drain(&o, 5000), "a4 a5", "then 4 and 5 go");
	gossip_orderer_free(&o);

	/* Causal: b1, signed at 1000, depends on c1, which came and waits on a2, held with
	 * a1 missing; c1 and a2 were signed at 8500. */
	gossip_orderer_init(&o, GOSSIP_ORDER_CAUSAL);
	o.expire_ms = 1000;
	struct gossip_odep on_c1 = {{0}, 1}, on_a2 = {{0}, 2};
	memcpy(on_c1.origin, C, 32);
	memcpy(on_a2.origin, A, 32);
	add(&o, B, 1, 4, &on_c1, 1, "b1", GOSSIP_ORDER_HELD);
	struct gossip_msg m = {.type = GOSSIP_T_EVENT, .key = (const uint8_t *)"ev", .keylen = 2, .time = 8500};
	struct gossip_oev a2 = {.seq = 2, .lamport = 2, .payload = (const uint8_t *)"a2", .paylen = 2};
	struct gossip_oev c1 = {.seq = 1, .lamport = 3, .deps = &on_a2, .ndeps = 1, .payload = (const uint8_t *)"c1", .paylen = 2};
	memcpy(m.origin, A, 32);
	ok(gossip_orderer_add(&o, &m, &a2, 8500) == GOSSIP_ORDER_HELD, "a2, signed at 8500, held (a1 missing)");
	memcpy(m.origin, C, 32);
	ok(gossip_orderer_add(&o, &m, &c1, 8500) == GOSSIP_ORDER_HELD, "c1, signed at 8500, held (a2 waits)");
	is_str(drain(&o, 9000), "", "b1 expired but not a gap, its dependency come, a2's gap young: a look, none found");
	ok(o.looked == 9001, "the look is remembered (%llu)", (unsigned long long)o.looked);
	/* At 9800 a2 has expired: only the look's pause holds its skip back. */
	is_str(drain(&o, 9800), "", "within a second of the last look: no other look");
	is_str(drain(&o, 10001), "[skip 1] a2 c1 b1", "a second on: the expired gap is skipped, then what waited");
	gossip_orderer_free(&o);
}

/* Total order: an origin whose clock goes back (a liar) still has its events delivered
 * in its seq order, none left behind for good. */
static void clock_back(void)
{
	struct gossip_orderer o;
	gossip_orderer_init(&o, GOSSIP_ORDER_TOTAL);
	members(&o, 2);
	add(&o, A, 1, 5, NULL, 0, "a1", GOSSIP_ORDER_HELD);
	add(&o, A, 2, 3, NULL, 0, "a2", GOSSIP_ORDER_HELD);
	add(&o, B, 1, 9, NULL, 0, "b1", GOSSIP_ORDER_HELD);
	add(&o, A, 3, 10, NULL, 0, "a3", GOSSIP_ORDER_HELD);
	is_str(drain(&o, 5000), "a1 a2 b1", "total: a clock that goes back: a1 then a2, nothing stuck");
	ok(o.nheld == 1, "total: only a3 (past b's clock) waits");
	gossip_orderer_free(&o);
}

int main(void)
{
	gossip_init("t-order");
	memset(A, 0x11, 32);
	memset(B, 0x22, 32);
	memset(C, 0x33, 32);
	codec();
	fifo();
	causal();
	total();
	many(GOSSIP_ORDER_FIFO);
	many(GOSSIP_ORDER_CAUSAL);
	many(GOSSIP_ORDER_TOTAL);
	clock_back();
	bounds();
	return tap_done();
}
