/* order.c: ordered delivery on top of gossip (gossip-order): the ordered event's codec, the
 * sender's sequence kept crash-safe in DIR, and the buffers that hold back what arrives
 * early and release messages in FIFO, causal or total order. */
#include "gossip.h"

#include <sodium.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

enum { F_SEQ = 1, F_LAMPORT, F_DEPS, F_PAYLOAD };

/* ---- the codec ---- */

static int cmp_dep(const void *a, const void *b)
{
	return memcmp(((const struct gossip_odep *)a)->origin, ((const struct gossip_odep *)b)->origin, 32);
}

int gossip_order_encode(struct gossip_buf *b, const struct gossip_oev *e)
{
	if (e->seq == 0 || e->seq > GOSSIP_ORDER_NUM_MAX || e->lamport > GOSSIP_ORDER_NUM_MAX) {
		gossip_seterr("an ordered event's sequence number starts at 1, and it and its clock are at most 2^62");
		return -1;
	}
	if (e->ndeps > GOSSIP_ORDER_DEPS_MAX) {
		gossip_seterr("an ordered event has at most %d dependencies", GOSSIP_ORDER_DEPS_MAX);
		return -1;
	}
	struct gossip_odep *d = NULL;
	if (e->ndeps) {
		if (!(d = malloc(e->ndeps * sizeof *d))) {
			gossip_seterr("out of memory");
			return -1;
		}
		memcpy(d, e->deps, e->ndeps * sizeof *d);
		qsort(d, e->ndeps, sizeof *d, cmp_dep);
		for (size_t i = 0; i < e->ndeps; i++)
			if ((i && !memcmp(d[i].origin, d[i - 1].origin, 32)) || d[i].seq == 0 || d[i].seq > GOSSIP_ORDER_NUM_MAX) {
				free(d);
				gossip_seterr("an ordered event names each origin once in its dependencies, "
				              "with a sequence number from 1 to 2^62");
				return -1;
			}
	}
	int r = gossip_cbor_head(b, GOSSIP_MT_MAP, 4) < 0 || gossip_cbor_head(b, GOSSIP_MT_UINT, F_SEQ) < 0 ||
	                gossip_cbor_head(b, GOSSIP_MT_UINT, e->seq) < 0 ||
	                gossip_cbor_head(b, GOSSIP_MT_UINT, F_LAMPORT) < 0 ||
	                gossip_cbor_head(b, GOSSIP_MT_UINT, e->lamport) < 0 ||
	                gossip_cbor_head(b, GOSSIP_MT_UINT, F_DEPS) < 0 ||
	                gossip_cbor_head(b, GOSSIP_MT_ARRAY, e->ndeps) < 0
	        ? -1
	        : 0;
	for (size_t i = 0; r == 0 && i < e->ndeps; i++)
		if (gossip_cbor_head(b, GOSSIP_MT_ARRAY, 2) < 0 || gossip_cbor_str(b, GOSSIP_MT_BSTR, d[i].origin, 32) < 0 ||
		    gossip_cbor_head(b, GOSSIP_MT_UINT, d[i].seq) < 0)
			r = -1;
	free(d);
	if (r == 0 && (gossip_cbor_head(b, GOSSIP_MT_UINT, F_PAYLOAD) < 0 ||
	               gossip_cbor_str(b, GOSSIP_MT_BSTR, e->payload ? (const void *)e->payload : "", e->paylen) < 0))
		r = -1;
	return r;
}

static int want_uint(struct gossip_cur *c, uint64_t *v, const char *what)
{
	struct gossip_ev ev;
	if (gossip_cur_expect(c, GOSSIP_EV_UINT, &ev, what) < 0)
		return -1;
	*v = ev.u;
	return 0;
}

int gossip_order_decode(const uint8_t *p, size_t n, struct gossip_oev *e)
{
	struct gossip_cur c = {p, n, 0};
	struct gossip_ev ev;
	uint64_t k, count;
	memset(e, 0, sizeof *e);
	if (gossip_cur_expect(&c, GOSSIP_EV_MAP, &ev, "an ordered event") < 0)
		return -1;
	if (ev.u != 4) {
		gossip_seterr("an ordered event is a map of 4 fields, not %llu", (unsigned long long)ev.u);
		return -1;
	}
	if (want_uint(&c, &k, "field 1") < 0 || k != F_SEQ || want_uint(&c, &e->seq, "the sequence number") < 0 ||
	    want_uint(&c, &k, "field 2") < 0 || k != F_LAMPORT || want_uint(&c, &e->lamport, "the Lamport clock") < 0 ||
	    want_uint(&c, &k, "field 3") < 0 || k != F_DEPS)
		goto bad;
	if (gossip_cur_expect(&c, GOSSIP_EV_ARRAY, &ev, "the dependencies") < 0)
		goto bad;
	count = ev.u;
	if (count > GOSSIP_ORDER_DEPS_MAX) {
		gossip_seterr("an ordered event has at most %d dependencies", GOSSIP_ORDER_DEPS_MAX);
		return -1;
	}
	if (e->seq == 0) {
		gossip_seterr("an ordered event's sequence number starts at 1");
		return -1;
	}
	/* Past 2^62 a seq or a clock could wrap (the next seq, a clock one more). */
	if (e->seq > GOSSIP_ORDER_NUM_MAX || e->lamport > GOSSIP_ORDER_NUM_MAX) {
		gossip_seterr("an ordered event's sequence number and clock are at most 2^62");
		return -1;
	}
	if (count && !(e->deps = calloc(count, sizeof *e->deps))) {
		gossip_seterr("out of memory");
		return -1;
	}
	for (uint64_t i = 0; i < count; i++) {
		if (gossip_cur_expect(&c, GOSSIP_EV_ARRAY, &ev, "a dependency") < 0 || ev.u != 2 ||
		    gossip_cur_expect(&c, GOSSIP_EV_BSTR, &ev, "a dependency's origin") < 0 || ev.len != 32)
			goto bad;
		memcpy(e->deps[i].origin, ev.data, 32);
		if (want_uint(&c, &e->deps[i].seq, "a dependency's sequence number") < 0 || e->deps[i].seq == 0 ||
		    e->deps[i].seq > GOSSIP_ORDER_NUM_MAX)
			goto bad;
		if (i && memcmp(e->deps[i - 1].origin, e->deps[i].origin, 32) >= 0) {
			gossip_seterr("an ordered event's dependencies are not sorted by origin, once each");
			goto fail;
		}
		e->ndeps++;
	}
	if (want_uint(&c, &k, "field 4") < 0 || k != F_PAYLOAD ||
	    gossip_cur_expect(&c, GOSSIP_EV_BSTR, &ev, "the payload") < 0)
		goto bad;
	e->payload = ev.data;
	e->paylen = ev.len;
	if (c.pos != n) {
		gossip_seterr("an ordered event has %zu bytes after its map", n - c.pos);
		goto fail;
	}
	return 0;
bad:
	if (!*gossip_error() || !strstr(gossip_error(), "ordered"))
		gossip_seterr("not an ordered event: want {1: seq, 2: lamport, 3: [[origin, seq]...], 4: payload}");
fail:
	gossip_oev_free(e);
	return -1;
}

void gossip_oev_free(struct gossip_oev *e)
{
	free(e->deps);
	e->deps = NULL;
	e->ndeps = 0;
}

int gossip_order_of(const struct gossip_msg *m, struct gossip_oev *e)
{
	if (m->type != GOSSIP_T_EVENT || !m->has_value || m->value_text)
		return 0;
	if (gossip_order_decode(m->value, m->valuelen, e) < 0)
		return -1;
	/* Its own origin's earlier ones come before it by their seq: a dependency on its
	 * origin is none, or (at its seq or above) one that can never be met. */
	for (size_t i = 0; i < e->ndeps; i++)
		if (!memcmp(e->deps[i].origin, m->origin, 32)) {
			gossip_oev_free(e);
			gossip_seterr("an ordered event depends on its own origin (its seq orders it after its own)");
			return -1;
		}
	return 1;
}

/* ---- the sender ---- */

struct scan {
	const uint8_t *self;
	struct gossip_odep *deps;
	uint64_t *tops;  /* each origin's highest clock, as deps */
	size_t n, cap;
	uint64_t lamport;  /* this node's own: its state's and its events' */
};

static int scan_one(void *ctx, const struct gossip_entry *en, const uint8_t *p)
{
	struct scan *s = ctx;
	struct gossip_msg m;
	struct gossip_oev e;
	if (en->type != GOSSIP_T_EVENT || gossip_msg_decode(p, en->len, &m) < 0 || gossip_order_of(&m, &e) != 1)
		return 0;
	gossip_oev_free(&e);
	if (!memcmp(m.origin, s->self, 32)) {
		if (e.lamport > s->lamport)
			s->lamport = e.lamport;
		return 0;
	}
	for (size_t i = 0; i < s->n; i++)
		if (!memcmp(s->deps[i].origin, m.origin, 32)) {
			if (e.seq > s->deps[i].seq)
				s->deps[i].seq = e.seq;
			if (e.lamport > s->tops[i])
				s->tops[i] = e.lamport;
			return 0;
		}
	if (s->n == s->cap) {
		size_t cap = s->cap ? 2 * s->cap : 16;
		void *v = realloc(s->deps, cap * sizeof *s->deps), *t = v ? realloc(s->tops, cap * sizeof *s->tops) : NULL;
		if (v)
			s->deps = v;
		if (!t) {
			gossip_seterr("out of memory");
			return -1;
		}
		s->tops = t;
		s->cap = cap;
	}
	memcpy(s->deps[s->n].origin, m.origin, 32);
	s->deps[s->n].seq = e.seq;
	s->tops[s->n++] = e.lamport;
	return 0;
}

/* The clock a send goes above: the highest seen, but another origin's clock above this
 * node's time in ms (2^41 at least: a wall clock far behind) and the skew allowed does
 * not count. Honest clocks rise by one an event, never near it; a member that signs one
 * near 2^62 would otherwise use up the clock space of every node that stores it (each
 * send must go above it), for good. Its events then come after the others' in total
 * order: only the liar's are held. */
static uint64_t scan_clock(const struct scan *s)
{
	uint64_t top = s->lamport, now = gossip_now_ms(), most;
	most = (now > (UINT64_C(1) << 41) ? now : UINT64_C(1) << 41) + GOSSIP_MAX_SKEW_MS;
	for (size_t i = 0; i < s->n; i++)
		if (s->tops[i] > top && s->tops[i] <= most)
			top = s->tops[i];
	return top;
}

/* DIR/order.state: the CBOR array [seq, lamport, last message] of the last ordered event
 * this node signed. */
static int state_load(const char *dir, uint64_t *seq, uint64_t *lamport, struct gossip_buf *last)
{
	struct gossip_buf b = {0};
	struct gossip_cur c;
	struct gossip_ev ev;
	*seq = *lamport = 0;
	if (gossip_read_file(gossip_path(dir, "order.state"), GOSSIP_MSG_MAX + 64, &b) < 0)
		return errno == ENOENT ? 0 : -1;
	c = (struct gossip_cur){b.p, b.len, 0};
	int r = gossip_cur_expect(&c, GOSSIP_EV_ARRAY, &ev, "order.state") < 0 || ev.u != 3 ||
	                want_uint(&c, seq, "order.state's seq") < 0 ||
	                want_uint(&c, lamport, "order.state's lamport") < 0 ||
	                gossip_cur_expect(&c, GOSSIP_EV_BSTR, &ev, "order.state's message") < 0 ||
	                gossip_buf_put(last, ev.data, ev.len) < 0
	        ? -1
	        : 0;
	if (r < 0)
		gossip_seterr("%s: damaged (%s); it must never go back: restore it, or start with a new key",
		              gossip_path(dir, "order.state"), gossip_error());
	gossip_buf_free(&b);
	return r;
}

int gossip_order_sign(const char *dir, const char *name, const uint8_t *payload, size_t paylen,
                      struct gossip_buf *out, int *resent)
{
	struct gossip_store *st = NULL;
	struct gossip_trust trust = {0};
	struct gossip_author a;
	struct gossip_buf last = {0}, value = {0}, state = {0};
	struct scan s = {0};
	struct stat sb;
	uint64_t seq, lamport;
	int r = -1, lock;
	*resent = 0;
	if (!name[0] || strlen(name) > GOSSIP_KEY_MAX || !gossip_utf8_valid((const uint8_t *)name, strlen(name))) {
		gossip_seterr("an event's name is 1 to %d bytes of UTF-8", GOSSIP_KEY_MAX);
		return -1;
	}
	if (paylen > GOSSIP_ORDER_PAYLOAD_MAX) {
		gossip_seterr("the payload is %zu bytes, at most %d", paylen, GOSSIP_ORDER_PAYLOAD_MAX);
		return -1;
	}
	if (gossip_author_open(&a, dir, 1) < 0)
		return -1;
	/* One sender at a time: a send and a filter's heartbeat must not take one seq. */
	if ((lock = open(gossip_path(dir, "order.lock"), O_RDWR | O_CREAT | O_CLOEXEC, 0600)) < 0 ||
	    flock(lock, LOCK_EX) < 0) {
		gossip_seterr("%s: %s", gossip_path(dir, "order.lock"), strerror(errno));
		goto out;
	}
	if (state_load(dir, &seq, &lamport, &last) < 0)
		goto out;
	s.self = a.id.pk;
	s.lamport = lamport;
	if (stat(gossip_path(dir, "store"), &sb) == 0) {
		struct gossip_store_opts o = gossip_store_defaults;
		o.readonly = 1;
		if (gossip_trust_load(&trust, dir) < 0 || !(st = gossip_store_open(dir, &o)))
			goto out;
		gossip_store_set_visible(st, gossip_trust_has, &trust);
		if (gossip_store_lock(st) < 0)
			goto out;
		int k = gossip_store_each(st, 0, scan_one, &s);
		gossip_store_unlock(st);
		if (k < 0)
			goto out;
	}
	/* The last one signed may not have left (a crash, a lost datagram): when the store
	 * does not hold it, it goes again, before the new one, so that no seq is a hole. */
	if (last.len) {
		struct gossip_msg m;
		uint8_t slot[16];
		int held = 0;
		if (gossip_msg_decode(last.p, last.len, &m) == 0 && st) {
			gossip_slot(slot, &m);
			if (gossip_store_lock(st) == 0) {
				held = gossip_store_find(st, slot) != NULL;
				gossip_store_unlock(st);
			}
		}
		if (!held) {
			if (gossip_buf_put(out, last.p, last.len) < 0)
				goto out;
			*resent = 1;
		}
	}
	uint64_t clock = scan_clock(&s);
	if (clock >= GOSSIP_ORDER_NUM_MAX) {
		gossip_seterr("this node's clock for ordered events is at 2^62, the most it may be: start with a new key");
		goto out;
	}
	struct gossip_oev e = {.seq = seq + 1, .lamport = clock + 1, .deps = s.deps, .ndeps = s.n,
	                       .payload = payload, .paylen = paylen};
	if (e.ndeps > GOSSIP_ORDER_DEPS_MAX)
		e.ndeps = GOSSIP_ORDER_DEPS_MAX;  /* never: a cluster of more origins is refused below */
	if (s.n > GOSSIP_ORDER_DEPS_MAX) {
		gossip_seterr("%zu origins in the store, at most %d for ordered delivery", s.n, GOSSIP_ORDER_DEPS_MAX);
		goto out;
	}
	if (gossip_order_encode(&value, &e) < 0)
		goto out;
	struct gossip_msg m = {0};
	m.type = GOSSIP_T_EVENT;
	m.key = (const uint8_t *)name;
	m.keylen = strlen(name);
	m.value = value.p;
	m.valuelen = value.len;
	m.has_value = 1;
	size_t at = out->len;
	if (gossip_author_sign(&a, out, &m) < 0)
		goto out;
	/* On disk before it leaves: a seq is never used twice, even across a crash. */
	if (gossip_cbor_head(&state, GOSSIP_MT_ARRAY, 3) < 0 || gossip_cbor_head(&state, GOSSIP_MT_UINT, e.seq) < 0 ||
	    gossip_cbor_head(&state, GOSSIP_MT_UINT, e.lamport) < 0 ||
	    gossip_cbor_str(&state, GOSSIP_MT_BSTR, out->p + at, out->len - at) < 0 ||
	    gossip_write_atomic(gossip_path(dir, "order.state"), state.p, state.len, 0600, 0) < 0)
		goto out;
	r = 0;
out:
	if (lock >= 0)
		close(lock);
	if (st)
		gossip_store_close(st);
	gossip_trust_free(&trust);
	if (gossip_author_close(&a) < 0)
		r = -1;
	free(s.deps);
	free(s.tops);
	gossip_buf_free(&last);
	gossip_buf_free(&value);
	gossip_buf_free(&state);
	return r;
}

/* ---- the ordering buffers ---- */

const char *gossip_order_mode_name(int mode)
{
	return mode == GOSSIP_ORDER_FIFO ? "fifo" : mode == GOSSIP_ORDER_CAUSAL ? "causal" : "total";
}

int gossip_order_mode_parse(const char *s)
{
	return !strcmp(s, "fifo") ? GOSSIP_ORDER_FIFO
	       : !strcmp(s, "causal") ? GOSSIP_ORDER_CAUSAL
	       : !strcmp(s, "total") ? GOSSIP_ORDER_TOTAL
	                             : -1;
}

static struct gossip_oorigin *origin_find(struct gossip_orderer *o, const uint8_t pk[32], int create)
{
	for (size_t i = 0; i < o->norigins; i++)
		if (!memcmp(o->origins[i].pk, pk, 32))
			return &o->origins[i];
	if (!create)
		return NULL;
	if (o->norigins == o->ocap) {
		size_t cap = o->ocap ? 2 * o->ocap : 16;
		void *v = realloc(o->origins, cap * sizeof *o->origins);
		if (!v)
			return NULL;
		o->origins = v;
		o->ocap = cap;
	}
	struct gossip_oorigin *r = &o->origins[o->norigins++];
	memset(r, 0, sizeof *r);
	memcpy(r->pk, pk, 32);
	r->next = 1;
	return r;
}

void gossip_orderer_init(struct gossip_orderer *o, int mode)
{
	memset(o, 0, sizeof *o);
	o->mode = mode;
	o->expire_ms = 3600 * 1000;
	if (sodium_init() >= 0)  /* else (cannot happen once a program has started) a zero key */
		randombytes_buf(o->hkey, sizeof o->hkey);
}

void gossip_omsg_free(struct gossip_omsg *m)
{
	free(m->deps);
	free(m->name);
	free(m->payload);
	memset(m, 0, sizeof *m);
}

void gossip_orderer_free(struct gossip_orderer *o)
{
	for (size_t i = 0; i < o->nheld; i++)
		gossip_omsg_free(&o->held[i]);
	free(o->held);
	free(o->hidx);
	free(o->origins);
	free(o->members);
	memset(o, 0, sizeof *o);
}

/* ---- the held messages' index: (origin, seq) to where it is in held, so that a lookup,
 * an arrival and a delivery each cost the same however many are held ---- */

static size_t held_home(const struct gossip_orderer *o, const uint8_t pk[32], uint64_t seq)
{
	uint8_t in[40], h[crypto_shorthash_BYTES];
	uint64_t v;
	memcpy(in, pk, 32);
	for (int i = 0; i < 8; i++)
		in[32 + i] = (uint8_t)(seq >> (8 * i));
	crypto_shorthash(h, in, sizeof in, o->hkey);
	memcpy(&v, h, sizeof v);
	return (size_t)v & (o->hidxcap - 1);
}

/* The index's cell that holds (pk, seq), or the empty cell where it would go. */
static size_t held_cell(const struct gossip_orderer *o, const uint8_t pk[32], uint64_t seq)
{
	size_t c = held_home(o, pk, seq);
	while (o->hidx[c]) {
		const struct gossip_omsg *h = &o->held[o->hidx[c] - 1];
		if (h->seq == seq && !memcmp(h->origin, pk, 32))
			break;
		c = (c + 1) & (o->hidxcap - 1);
	}
	return c;
}

static struct gossip_omsg *held_find(struct gossip_orderer *o, const uint8_t pk[32], uint64_t seq)
{
	if (!o->nheld)
		return NULL;
	size_t c = held_cell(o, pk, seq);
	return o->hidx[c] ? &o->held[o->hidx[c] - 1] : NULL;
}

/* Room in the index for one more held message (rebuilt at twice the size when half full). */
static int held_index_grow(struct gossip_orderer *o)
{
	if (2 * (o->nheld + 1) <= o->hidxcap)
		return 0;
	size_t cap = o->hidxcap ? 2 * o->hidxcap : 128;
	size_t *t = calloc(cap, sizeof *t);
	if (!t)
		return -1;
	free(o->hidx);
	o->hidx = t;
	o->hidxcap = cap;
	for (size_t i = 0; i < o->nheld; i++)
		o->hidx[held_cell(o, o->held[i].origin, o->held[i].seq)] = i + 1;
	return 0;
}

/* Take held[i] out (its last one moves into its place), with its index cell: the cells
 * after it in its run move back where they may (linear probing's deletion). */
static void held_remove(struct gossip_orderer *o, size_t i)
{
	size_t mask = o->hidxcap - 1, hole = held_cell(o, o->held[i].origin, o->held[i].seq);
	for (size_t c = (hole + 1) & mask; o->hidx[c]; c = (c + 1) & mask) {
		const struct gossip_omsg *h = &o->held[o->hidx[c] - 1];
		size_t home = held_home(o, h->origin, h->seq);
		/* It may fill the hole when its home is not in (hole, c], cyclically. */
		if (hole <= c ? (home <= hole || home > c) : (home <= hole && home > c)) {
			o->hidx[hole] = o->hidx[c];
			hole = c;
		}
	}
	o->hidx[hole] = 0;
	size_t last = --o->nheld;
	if (i != last) {
		o->hidx[held_cell(o, o->held[last].origin, o->held[last].seq)] = i + 1;
		o->held[i] = o->held[last];
	}
}

/* Move an origin's run of received messages on: contig is the highest seq up to which
 * every message of it has been received (delivered or held). */
static void advance_contig(struct gossip_orderer *o, struct gossip_oorigin *r)
{
	struct gossip_omsg *h;
	if (r->contig + 1 < r->next)
		r->contig = r->next - 1;
	while ((h = held_find(o, r->pk, r->contig + 1)) != NULL) {
		r->contig++;
		r->heard = h->lamport;
	}
}

static int key_less(uint64_t la, const uint8_t *oa, uint64_t lb, const uint8_t *ob)
{
	return la != lb ? la < lb : memcmp(oa, ob, 32) < 0;
}

int gossip_orderer_start(struct gossip_orderer *o, const uint8_t pk[32], uint64_t next)
{
	struct gossip_oorigin *r = origin_find(o, pk, 1);
	if (!r) {
		gossip_seterr("out of memory");
		return -1;
	}
	if (next > r->next) {
		r->next = next;
		/* What is held below it is delivered already (a saved state): dropped. Down
		 * from the end: a removal moves the last one into the hole, seen already. */
		for (size_t i = o->nheld; i-- > 0;)
			if (o->held[i].seq < next && !memcmp(o->held[i].origin, pk, 32)) {
				struct gossip_omsg gone = o->held[i];
				held_remove(o, i);
				gossip_omsg_free(&gone);
			}
	}
	advance_contig(o, r);
	return 0;
}

int gossip_orderer_add(struct gossip_orderer *o, const struct gossip_msg *m, const struct gossip_oev *e,
                       uint64_t now)
{
	struct gossip_oorigin *r = origin_find(o, m->origin, 1);
	if (!r) {
		gossip_seterr("out of memory");
		return -1;
	}
	/* Past 2^62 (decoding refuses it): taken as nothing new, never let wrap. */
	if (e->seq < r->next || e->seq > GOSSIP_ORDER_NUM_MAX || e->lamport > GOSSIP_ORDER_NUM_MAX ||
	    held_find(o, m->origin, e->seq))
		return GOSSIP_ORDER_DUP;
	if (o->mode == GOSSIP_ORDER_TOTAL && o->has_pos && !key_less(o->pos_lamport, o->pos_origin, e->lamport, m->origin))
		return GOSSIP_ORDER_LATE;  /* the order has passed it (its origin was taken for dead) */
	if (held_index_grow(o) < 0) {
		gossip_seterr("out of memory");
		return -1;
	}
	if (o->nheld == o->hcap) {
		size_t cap = o->hcap ? 2 * o->hcap : 64;
		void *v = realloc(o->held, cap * sizeof *o->held);
		if (!v) {
			gossip_seterr("out of memory");
			return -1;
		}
		o->held = v;
		o->hcap = cap;
	}
	struct gossip_omsg *h = &o->held[o->nheld];
	memset(h, 0, sizeof *h);
	memcpy(h->origin, m->origin, 32);
	h->seq = e->seq;
	h->lamport = e->lamport;
	h->version = m->version;
	h->time = m->time;
	h->arrived = now;
	h->namelen = m->keylen;
	h->paylen = e->paylen;
	h->name = malloc(m->keylen + 1);
	h->payload = malloc(e->paylen + 1);
	h->deps = e->ndeps ? malloc(e->ndeps * sizeof *h->deps) : NULL;
	if (!h->name || !h->payload || (e->ndeps && !h->deps)) {
		gossip_omsg_free(h);
		gossip_seterr("out of memory");
		return -1;
	}
	memcpy(h->name, m->key, m->keylen);
	h->name[m->keylen] = 0;
	if (e->paylen)
		memcpy(h->payload, e->payload, e->paylen);
	if (e->ndeps)
		memcpy(h->deps, e->deps, e->ndeps * sizeof *h->deps);
	h->ndeps = e->ndeps;
	h->heartbeat = m->keylen == strlen(GOSSIP_KEY_ORDER_HB) && !memcmp(m->key, GOSSIP_KEY_ORDER_HB, m->keylen);
	if (!o->nheld || h->time < o->held_time)
		o->held_time = h->time;
	o->hidx[held_cell(o, h->origin, h->seq)] = ++o->nheld;
	advance_contig(o, r);
	return GOSSIP_ORDER_HELD;
}

int gossip_orderer_members(struct gossip_orderer *o, const uint8_t (*pks)[32], size_t n)
{
	void *v = NULL;
	if (n && !(v = malloc(n * 32))) {
		gossip_seterr("out of memory");
		return -1;
	}
	if (n)
		memcpy(v, pks, n * 32);
	free(o->members);
	o->members = v;
	o->nmembers = n;
	o->has_members = 1;
	return 0;
}

static int causal_ready(struct gossip_orderer *o, const struct gossip_omsg *h)
{
	for (size_t i = 0; i < h->ndeps; i++) {
		struct gossip_oorigin *d = origin_find(o, h->deps[i].origin, 0);
		if (!d || d->next <= h->deps[i].seq)
			return 0;
	}
	return 1;
}

/* Whether member pk can no longer send anything ordered before (lamport, origin): what
 * it has sent is in (no gap), and its clock has reached lamport. */
static int past(struct gossip_orderer *o, const uint8_t pk[32], uint64_t lamport, const uint8_t origin[32])
{
	if (!memcmp(pk, origin, 32))
		return 1;
	struct gossip_oorigin *r = origin_find(o, pk, 0);
	if (!r || r->contig == 0 || r->contig + 1 < r->next)
		return 0;
	/* Its clocks only rise: what it sends next is past heard; at heard it sent already. */
	return r->heard >= lamport;
}

static int total_stable(struct gossip_orderer *o, const struct gossip_omsg *h)
{
	if (o->has_members) {
		for (size_t i = 0; i < o->nmembers; i++)
			if (!past(o, o->members[i], h->lamport, h->origin))
				return 0;
		return 1;
	}
	for (size_t i = 0; i < o->norigins; i++)  /* no table: every origin heard of */
		if (!past(o, o->origins[i].pk, h->lamport, h->origin))
			return 0;
	return 1;
}

/* The index of the held message to deliver next, or -1. Each origin's candidate is its
 * next seq, held (its clocks rise with its seq, so in total order too that is its least
 * (lamport, origin)): the cost grows with the origins, not with what is held. */
static long pick_next(struct gossip_orderer *o)
{
	long best = -1;
	for (size_t i = 0; i < o->norigins; i++) {
		struct gossip_oorigin *r = &o->origins[i];
		struct gossip_omsg *h;
		if (r->contig < r->next || !(h = held_find(o, r->pk, r->next)))
			continue;
		long at = (long)(h - o->held);
		if (o->mode != GOSSIP_ORDER_TOTAL) {
			if (o->mode == GOSSIP_ORDER_FIFO || causal_ready(o, h))
				return at;
			continue;
		}
		if (best < 0 || key_less(h->lamport, h->origin, o->held[best].lamport, o->held[best].origin))
			best = at;
	}
	if (best >= 0 && !total_stable(o, &o->held[best]))
		best = -1;
	return best;
}

int gossip_orderer_next(struct gossip_orderer *o, uint64_t now, struct gossip_omsg *out, uint64_t *skipped)
{
	*skipped = 0;
	long i = pick_next(o);
	if (i < 0) {
		/* A gap older than the stores keep events can never be filled: skip it. The
		 * message after it is older than that; what is missing is older still. None
		 * is, while the oldest held is younger (no look at each held message). */
		if (!o->nheld || gossip_age_ms(now, o->held_time) <= o->expire_ms)
			return 0;
		/* A look that found none is not made again within a second: an event that
		 * can never go (or one signed long ago) keeps held_time old, and a look at
		 * each pass would scan everything held at each pass. */
		if (o->looked && gossip_age_ms(now, o->looked - 1) < 1000)
			return 0;
		o->held_time = UINT64_MAX;
		for (size_t j = 0; j < o->nheld; j++)
			if (o->held[j].time < o->held_time)
				o->held_time = o->held[j].time;
		for (size_t j = 0; j < o->nheld; j++) {
			struct gossip_omsg *h = &o->held[j];
			if (gossip_age_ms(now, h->time) <= o->expire_ms)
				continue;
			struct gossip_oorigin *r = origin_find(o, h->origin, 0);
			if (h->seq > r->next && held_find(o, h->origin, r->next) == NULL) {
				uint64_t low = h->seq;
				for (size_t k = 0; k < o->nheld; k++)
					if (!memcmp(o->held[k].origin, h->origin, 32) && o->held[k].seq < low)
						low = o->held[k].seq;
				*skipped = low - r->next;
				r->next = low;
				advance_contig(o, r);
				memcpy(out->origin, h->origin, 32);
				return 2;
			}
		}
		/* Causal, no gap to skip: an origin's next, expired, waiting on dependencies
		 * that never came (a liar's, or long gone): what they name happened before it,
		 * older still; it goes without them (and what waits on it, after it). One that
		 * came and waits itself is waited for, unless its clock is not below this one's:
		 * an honest signer's clock is above every clock it had, so that is a lie (two
		 * events naming each other would wait on each other for good). */
		for (size_t q = 0; o->mode == GOSSIP_ORDER_CAUSAL && q < o->norigins; q++) {
			struct gossip_oorigin *r = &o->origins[q];
			struct gossip_omsg *h = held_find(o, r->pk, r->next);
			if (!h || gossip_age_ms(now, h->time) <= o->expire_ms)
				continue;
			uint64_t gone = 0;
			for (size_t k = 0; k < h->ndeps;) {
				struct gossip_oorigin *d = origin_find(o, h->deps[k].origin, 0);
				const struct gossip_omsg *g = held_find(o, h->deps[k].origin, h->deps[k].seq);
				if ((d && d->next > h->deps[k].seq) || (g && g->lamport < h->lamport)) {
					k++;
					continue;
				}
				if (!gone)
					memcpy(out->origin, h->deps[k].origin, 32);
				gone += h->deps[k].seq - (d && d->next ? d->next - 1 : 0);
				h->deps[k] = h->deps[--h->ndeps];
			}
			if (gone) {
				*skipped = gone;
				return 3;
			}
		}
		o->looked = now + 1;
		return 0;
	}
	struct gossip_omsg *h = &o->held[i];
	struct gossip_oorigin *r = origin_find(o, h->origin, 0);
	r->next = h->seq + 1;
	if (r->contig < h->seq) {
		r->contig = h->seq;
		r->heard = h->lamport;
	}
	if (o->mode == GOSSIP_ORDER_TOTAL) {
		o->pos_lamport = h->lamport;
		memcpy(o->pos_origin, h->origin, 32);
		o->has_pos = 1;
	}
	*out = *h;
	held_remove(o, (size_t)i);
	return 1;
}

uint64_t gossip_orderer_oldest(const struct gossip_orderer *o, uint64_t now)
{
	uint64_t age = 0;
	for (size_t i = 0; i < o->nheld; i++) {
		uint64_t a = gossip_age_ms(now, o->held[i].arrived);
		if (a > age)
			age = a;
	}
	return age;
}

int gossip_orderer_waits_on(const struct gossip_orderer *o, const uint8_t pk[32])
{
	struct gossip_orderer *w = (struct gossip_orderer *)o;
	struct gossip_oorigin *r = origin_find(w, pk, 0);
	for (size_t i = 0; i < o->nheld; i++) {
		const struct gossip_omsg *h = &o->held[i];
		if (memcmp(h->origin, pk, 32) && !past(w, pk, h->lamport, h->origin))
			return 1;
	}
	(void)r;
	return 0;
}

/* DIR/order.MODE: "next ORIGIN SEQ" lines and, for total, "pos LAMPORT ORIGIN". */
int gossip_orderer_save(const struct gossip_orderer *o, const char *path)
{
	struct gossip_buf b = {0};
	char line[160], k[45];
	int r = 0;
	for (size_t i = 0; i < o->norigins && r == 0; i++) {
		if (o->origins[i].next <= 1)
			continue;
		gossip_b64(k, o->origins[i].pk, 32);
		int n = snprintf(line, sizeof line, "next %s %llu\n", k, (unsigned long long)o->origins[i].next);
		r = gossip_buf_put(&b, line, (size_t)n);
	}
	if (r == 0 && o->has_pos) {
		gossip_b64(k, o->pos_origin, 32);
		int n = snprintf(line, sizeof line, "pos %llu %s\n", (unsigned long long)o->pos_lamport, k);
		r = gossip_buf_put(&b, line, (size_t)n);
	}
	if (r == 0)
		r = gossip_write_replace(path, b.p ? (const void *)b.p : "", b.len, 0600);
	gossip_buf_free(&b);
	return r;
}

int gossip_orderer_load(struct gossip_orderer *o, const char *path)
{
	struct gossip_buf b = {0};
	if (gossip_read_file(path, 1 << 24, &b) < 0)
		return errno == ENOENT ? 0 : -1;
	if (gossip_buf_put(&b, "", 1) < 0)
		return -1;
	char *save = NULL, *line = strtok_r((char *)b.p, "\n", &save);
	unsigned no = 0;
	int r = 1;
	for (; line && r == 1; line = strtok_r(NULL, "\n", &save)) {
		char k[64];
		unsigned long long v;
		uint8_t pk[32];
		no++;
		if (sscanf(line, "next %60s %llu", k, &v) == 2 && gossip_unb64(pk, 32, k, strlen(k)) == 0 && v >= 1) {
			if (gossip_orderer_start(o, pk, v) < 0)
				r = -1;
		} else if (sscanf(line, "pos %llu %60s", &v, k) == 2 && gossip_unb64(pk, 32, k, strlen(k)) == 0) {
			o->pos_lamport = v;
			memcpy(o->pos_origin, pk, 32);
			o->has_pos = 1;
		} else {
			gossip_seterr("%s: line %u is not \"next ORIGIN SEQ\" nor \"pos LAMPORT ORIGIN\"", path, no);
			r = -1;
		}
	}
	gossip_buf_free(&b);
	return r;
}
