/* aggregate.c: aggregation by push-sum: runs (_aggregate events) and shares (type 7), their
 * deterministic CBOR, the push-sum step, and a node's part in the runs (gossip-peers
 * observe), which writes its estimate to DIR/aggregate/ID for the asker. */
#include "gossip.h"

#include <cbor.h>
#include <errno.h>
#include <math.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum { F_FN = 1, F_INPUT, F_ROUND, F_DEADLINE };

static const char *const fn_names[] = {NULL, "avg", "sum", "count", "min", "max"};

const char *gossip_agg_fn_name(int fn)
{
	return fn >= GOSSIP_AGG_AVG && fn <= GOSSIP_AGG_MAX ? fn_names[fn] : "unknown";
}

int gossip_agg_fn_parse(const char *s)
{
	for (int i = GOSSIP_AGG_AVG; i <= GOSSIP_AGG_MAX; i++)
		if (!strcmp(s, fn_names[i]))
			return i;
	return -1;
}

/* UTF-8 without control bytes: what a person will see in a spec. */
static int plain(const char *s, size_t n)
{
	if (!gossip_utf8_valid((const uint8_t *)s, n))
		return 0;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			return 0;
	return 1;
}

int gossip_agg_check_input(int fn, const char *in)
{
	size_t n = strlen(in);
	if (fn < GOSSIP_AGG_AVG || fn > GOSSIP_AGG_MAX) {
		gossip_seterr("unknown function %d: want avg, sum, count, min or max", fn);
		return -1;
	}
	if (fn == GOSSIP_AGG_COUNT) {
		if (n) {
			gossip_seterr("count takes no input: it counts every member");
			return -1;
		}
		return 0;
	}
	if (!strcmp(in, "-"))
		return 0;
	if (!strncmp(in, "tag:", 4) && n > 4 && n - 4 <= 190 && !strchr(in + 4, '=') && plain(in, n))
		return 0;
	if (!strncmp(in, "key:", 4) && n > 4 && n - 4 <= GOSSIP_KEY_MAX && plain(in, n))
		return 0;
	gossip_seterr("input \"%.64s\": want tag:NAME (a tag of each member), key:KEY (each member's "
	              "own value of KEY) or - (each member's DIR/aggregate.input)", in);
	return -1;
}

static int check_agg(const struct gossip_aggregate *a)
{
	if (gossip_agg_check_input(a->fn, a->input) < 0)
		return -1;
	if (a->round_ms < GOSSIP_AGG_ROUND_MIN || a->round_ms > GOSSIP_AGG_ROUND_MAX) {
		gossip_seterr("a run's round interval is %llu ms: want %d to %d", (unsigned long long)a->round_ms,
		              GOSSIP_AGG_ROUND_MIN, GOSSIP_AGG_ROUND_MAX);
		return -1;
	}
	if (!a->deadline) {
		gossip_seterr("a run has no deadline");
		return -1;
	}
	return 0;
}

int gossip_agg_encode(struct gossip_buf *b, const struct gossip_aggregate *a)
{
	if (check_agg(a) < 0)
		return -1;
	if (gossip_cbor_head(b, GOSSIP_MT_MAP, 4) < 0 || gossip_cbor_head(b, GOSSIP_MT_UINT, F_FN) < 0 ||
	    gossip_cbor_head(b, GOSSIP_MT_UINT, (uint64_t)a->fn) < 0 ||
	    gossip_cbor_head(b, GOSSIP_MT_UINT, F_INPUT) < 0 ||
	    gossip_cbor_str(b, GOSSIP_MT_TSTR, a->input, strlen(a->input)) < 0 ||
	    gossip_cbor_head(b, GOSSIP_MT_UINT, F_ROUND) < 0 || gossip_cbor_head(b, GOSSIP_MT_UINT, a->round_ms) < 0 ||
	    gossip_cbor_head(b, GOSSIP_MT_UINT, F_DEADLINE) < 0 ||
	    gossip_cbor_head(b, GOSSIP_MT_UINT, a->deadline) < 0)
		return -1;
	return 0;
}

static int get_uint(struct gossip_cur *c, uint64_t *v, const char *what)
{
	struct gossip_ev ev;
	if (gossip_cur_next(c, &ev, what) < 0)
		return -1;
	if (ev.type != GOSSIP_EV_UINT) {
		gossip_seterr("%s is not an unsigned integer", what);
		return -1;
	}
	*v = ev.u;
	return 0;
}

int gossip_agg_decode(const uint8_t *p, size_t n, struct gossip_aggregate *a)
{
	struct gossip_cur c = {p, n, 0};
	struct gossip_ev ev;
	uint64_t k, fn;
	memset(a, 0, sizeof *a);
	if (gossip_cur_next(&c, &ev, "a run") < 0)
		return -1;
	if (ev.type != GOSSIP_EV_MAP || ev.u != 4) {
		gossip_seterr("a run is a map of 4 fields: {1: function, 2: input, 3: round, 4: deadline}");
		return -1;
	}
	for (uint64_t i = 1; i <= 4; i++) {
		if (get_uint(&c, &k, "a run's field") < 0)
			return -1;
		if (k != i) {
			gossip_seterr("a run's field %llu where field %llu belongs", (unsigned long long)k,
			              (unsigned long long)i);
			return -1;
		}
		switch (k) {
		case F_FN:
			if (get_uint(&c, &fn, "a run's function") < 0)
				return -1;
			a->fn = fn > GOSSIP_AGG_MAX ? 0 : (int)fn;
			break;
		case F_INPUT:
			if (gossip_cur_next(&c, &ev, "a run's input") < 0)
				return -1;
			if (ev.type != GOSSIP_EV_TSTR || ev.len > GOSSIP_AGG_INPUT_MAX ||
			    memchr(ev.data, 0, ev.len)) {
				gossip_seterr("a run's input is not a text string of at most %d bytes",
				              GOSSIP_AGG_INPUT_MAX);
				return -1;
			}
			memcpy(a->input, ev.data, ev.len);
			a->input[ev.len] = 0;
			break;
		case F_ROUND:
			if (get_uint(&c, &a->round_ms, "a run's round interval") < 0)
				return -1;
			break;
		case F_DEADLINE:
			if (get_uint(&c, &a->deadline, "a run's deadline") < 0)
				return -1;
			break;
		}
	}
	if (c.pos != n) {
		gossip_seterr("%zu bytes after a run", n - c.pos);
		return -1;
	}
	return check_agg(a);
}

int gossip_agg_of(const struct gossip_msg *m, struct gossip_aggregate *a)
{
	if (m->type != GOSSIP_T_EVENT || !gossip_msg_key_is(m, GOSSIP_KEY_AGGREGATE))
		return 0;
	if (!m->has_value || m->value_text) {
		gossip_seterr("a run's value is not a byte string");
		return -1;
	}
	return gossip_agg_decode(m->value, m->valuelen, a) < 0 ? -1 : 1;
}

void gossip_agg_id(uint8_t id[GOSSIP_AGG_ID_LEN], const uint8_t *p, size_t n)
{
	crypto_generichash(id, GOSSIP_AGG_ID_LEN, p, n, NULL, 0);
}

/* ---- push-sum ---- */

static int extreme(int fn)
{
	return fn == GOSSIP_AGG_MIN || fn == GOSSIP_AGG_MAX;
}

struct gossip_agg_mass gossip_agg_initial(int fn, int asker, int has_input, double x)
{
	struct gossip_agg_mass m = {0, 0};
	switch (fn) {
	case GOSSIP_AGG_AVG:
	case GOSSIP_AGG_MIN:
	case GOSSIP_AGG_MAX:
		if (has_input)
			m = (struct gossip_agg_mass){x, 1};
		break;
	case GOSSIP_AGG_SUM:
		m = (struct gossip_agg_mass){has_input ? x : 0, asker ? 1 : 0};
		break;
	case GOSSIP_AGG_COUNT:
		m = (struct gossip_agg_mass){1, asker ? 1 : 0};
		break;
	}
	return m;
}

struct gossip_agg_mass gossip_agg_split(int fn, struct gossip_agg_mass *m)
{
	if (extreme(fn))
		return *m;
	m->s /= 2;
	m->w /= 2;
	return *m;
}

void gossip_agg_take(int fn, struct gossip_agg_mass *m, struct gossip_agg_mass in)
{
	if (!extreme(fn)) {
		m->s += in.s;
		m->w += in.w;
	} else if (in.w > 0 &&
	           (m->w <= 0 || (fn == GOSSIP_AGG_MIN ? in.s < m->s : in.s > m->s))) {
		m->s = in.s;
		m->w = 1;
	}
}

int gossip_agg_estimate(int fn, const struct gossip_agg_mass *m, double *est)
{
	if (!(m->w > 0))
		return 0;
	*est = extreme(fn) ? m->s : m->s / m->w;
	return isfinite(*est);
}

/* ---- shares ---- */

static int put_double(struct gossip_buf *b, double d)
{
	unsigned char h[9];
	/* Always float64, so that a share has one encoding whatever its value. */
	if (cbor_encode_double(d, h, sizeof h) != 9) {
		gossip_seterr("cannot encode a float");
		return -1;
	}
	return gossip_buf_put(b, h, 9);
}

static int check_mass(const struct gossip_agg_mass *m)
{
	if (!isfinite(m->s) || !isfinite(m->w) || m->w < 0) {
		gossip_seterr("a share's sum and weight must be finite, its weight not negative");
		return -1;
	}
	return 0;
}

int gossip_share_encode(struct gossip_buf *b, const struct gossip_share *s)
{
	if (check_mass(&s->mass) < 0)
		return -1;
	if (gossip_cbor_head(b, GOSSIP_MT_ARRAY, 5) < 0 ||
	    gossip_cbor_str(b, GOSSIP_MT_BSTR, s->id, GOSSIP_AGG_ID_LEN) < 0 ||
	    gossip_cbor_head(b, GOSSIP_MT_UINT, s->round) < 0 || put_double(b, s->mass.s) < 0 ||
	    put_double(b, s->mass.w) < 0 || gossip_cbor_str(b, GOSSIP_MT_BSTR, s->to, 32) < 0)
		return -1;
	return 0;
}

static int get_double(struct gossip_cur *c, double *d, const char *what)
{
	struct gossip_ev ev;
	if (gossip_cur_next(c, &ev, what) < 0)
		return -1;
	if (ev.type != GOSSIP_EV_FLOAT || ev.width != 8) {
		gossip_seterr("%s is not a float64", what);
		return -1;
	}
	*d = ev.f;
	return 0;
}

int gossip_share_decode(const uint8_t *p, size_t n, struct gossip_share *s)
{
	struct gossip_cur c = {p, n, 0};
	struct gossip_ev ev;
	memset(s, 0, sizeof *s);
	if (gossip_cur_next(&c, &ev, "share") < 0)
		return -1;
	if (ev.type != GOSSIP_EV_ARRAY || ev.u != 5) {
		/* An older version's share ([id, round, sum, weight]) named no recipient. */
		gossip_seterr("a share is an array of 5: [id, round, sum, weight, to]");
		return -1;
	}
	if (gossip_cur_next(&c, &ev, "a share's id") < 0)
		return -1;
	if (ev.type != GOSSIP_EV_BSTR || ev.len != GOSSIP_AGG_ID_LEN) {
		gossip_seterr("a share's id is not a %d-byte string", GOSSIP_AGG_ID_LEN);
		return -1;
	}
	memcpy(s->id, ev.data, GOSSIP_AGG_ID_LEN);
	if (get_uint(&c, &s->round, "a share's round") < 0 || get_double(&c, &s->mass.s, "a share's sum") < 0 ||
	    get_double(&c, &s->mass.w, "a share's weight") < 0 || gossip_cur_next(&c, &ev, "a share's recipient") < 0)
		return -1;
	if (ev.type != GOSSIP_EV_BSTR || ev.len != 32) {
		gossip_seterr("a share's recipient is not a 32-byte key");
		return -1;
	}
	memcpy(s->to, ev.data, 32);
	if (c.pos != n) {
		gossip_seterr("%zu bytes after a share", n - c.pos);
		return -1;
	}
	return check_mass(&s->mass);
}

int gossip_share_sign(struct gossip_buf *b, const struct gossip_share *s,
                      const struct gossip_identity *id)
{
	struct gossip_buf v = {0};
	struct gossip_msg m = {0};
	int rc = -1;
	if (gossip_share_encode(&v, s) < 0)
		goto out;
	m.type = GOSSIP_T_SHARE;
	m.value = v.p;
	m.valuelen = v.len;
	m.has_value = 1;
	rc = gossip_msg_sign(b, &m, id);
out:
	gossip_buf_free(&v);
	return rc;
}

/* ---- the estimate file ---- */

const char *gossip_agg_path(const char *dir, const uint8_t id[GOSSIP_AGG_ID_LEN])
{
	static char path[4200];
	char hex[2 * GOSSIP_AGG_ID_LEN + 1];
	gossip_hex(hex, id, GOSSIP_AGG_ID_LEN);
	snprintf(path, sizeof path, "%s/aggregate/%s", dir, hex);
	return path;
}

int gossip_agg_status_load(const char *dir, const uint8_t id[GOSSIP_AGG_ID_LEN],
                           struct gossip_agg_status *s)
{
	struct gossip_buf b = {0};
	unsigned long long v[6];
	char line[512];
	if (gossip_read_file(gossip_agg_path(dir, id), sizeof line - 1, &b) < 0)
		return -1;
	memcpy(line, b.p, b.len);
	line[b.len] = 0;
	gossip_buf_free(&b);
	if (sscanf(line, "%llu %lf %lf %lf %llu %llu %llu %llu %llu", &v[0], &s->estimate, &s->low, &s->high,
	           &v[1], &v[2], &v[3], &v[4], &v[5]) != 9) {
		gossip_seterr("%s: not an estimate line", gossip_agg_path(dir, id));
		return -1;
	}
	s->round = v[0];
	s->sent = v[1];
	s->received = v[2];
	s->refused = v[3];
	s->bytes = v[4];
	s->shares = v[5];
	return 0;
}

/* ---- a node's part ---- */

enum { SEEN = 512, WINDOW = 4, ORPHANS = 32, ORPHAN_MS = 30000, OLD_ROUNDS = 8, REFUSE_RATE = 20 };

/* The estimates the shares of one round carried: the spread's window. */
struct slot {
	uint64_t round, n;
	double lo, hi;
};

struct run {
	int used, started;
	uint8_t id[GOSSIP_AGG_ID_LEN], asker[32];
	struct gossip_aggregate spec;
	uint64_t start;  /* round 0 starts here: the run message's time */
	uint64_t next;  /* the next round to step */
	struct gossip_agg_mass mass;
	struct slot win[WINDOW];
	struct {
		uint64_t who, round;  /* the signer (its key's first 8 bytes) and the round */
	} seen[SEEN];
	size_t seen_next;
	uint64_t sent, received, refused, bytes;
};

/* A share whose run is not known here yet (it came before the run's message). */
struct orphan {
	int used;
	uint8_t who[32];
	struct gossip_share share;
	uint64_t at;
};

struct gossip_aggregator {
	char dir[4096];
	struct run runs[GOSSIP_AGG_RUNS];
	struct orphan orphans[ORPHANS];
	size_t orphan_next;
	int ready;  /* id, keys and out are loaded */
	struct gossip_identity id;
	struct gossip_keyring keys;
	struct gossip_out out;
	uint64_t refused;
	struct gossip_rate refuse_rate, full_rate;
};

struct gossip_aggregator *gossip_aggregator_new(const char *dir)
{
	struct gossip_aggregator *g = calloc(1, sizeof *g);
	if (g)
		snprintf(g->dir, sizeof g->dir, "%s", dir);
	return g;
}

static void unload(struct gossip_aggregator *g)
{
	if (!g->ready)
		return;
	gossip_out_close(&g->out);
	gossip_keyring_free(&g->keys);
	gossip_identity_free(&g->id);
	g->ready = 0;
}

void gossip_aggregator_reload(struct gossip_aggregator *g)
{
	struct gossip_keyring k;
	if (!g || !g->ready)
		return;  /* loaded afresh at the next share */
	if (gossip_keyring_load(&k, g->dir) < 0) {
		gossip_warn("reload: aggregate: keyring: %s; sealing shares with the old one", gossip_error());
		return;
	}
	gossip_keyring_free(&g->keys);
	g->keys = k;  /* in place: g->out seals with it */
}

void gossip_aggregator_free(struct gossip_aggregator *g)
{
	if (!g)
		return;
	unload(g);
	free(g);
}

uint64_t gossip_aggregator_refused(const struct gossip_aggregator *g)
{
	return g->refused;
}

static struct run *run_find(struct gossip_aggregator *g, const uint8_t id[GOSSIP_AGG_ID_LEN])
{
	for (int i = 0; i < GOSSIP_AGG_RUNS; i++)
		if (g->runs[i].used && !memcmp(g->runs[i].id, id, GOSSIP_AGG_ID_LEN))
			return &g->runs[i];
	return NULL;
}

void gossip_aggregator_event(struct gossip_aggregator *g, const struct gossip_msg *m, uint64_t now)
{
	struct gossip_aggregate a;
	uint8_t id[GOSSIP_AGG_ID_LEN];
	uint64_t refused;
	if (gossip_agg_of(m, &a) != 1 || now >= a.deadline)
		return;
	/* No asker waits longer than a day (-T): a run further ahead would take a place and a
	 * share a round from every node for as long. */
	if (a.deadline - now > GOSSIP_AGG_AHEAD_MS) {
		if (gossip_rate_allow(&g->full_rate, 1, now, &refused))
			gossip_warn("aggregate: a run whose deadline is more than a day ahead refused");
		return;
	}
	gossip_agg_id(id, m->bytes, m->nbytes);
	if (run_find(g, id))
		return;
	/* A free place, else the run past its deadline, else the oldest: the newest question
	 * matters most, and the oldest is the likeliest to be settled at its asker. */
	struct run *r = NULL;
	for (int i = 0; i < GOSSIP_AGG_RUNS; i++) {
		struct run *x = &g->runs[i];
		if (!x->used || now >= x->spec.deadline) {
			r = x;
			break;
		}
		if (!r || x->start < r->start)
			r = x;
	}
	if (r->used) {
		if (now < r->spec.deadline && gossip_rate_allow(&g->full_rate, 1, now, &refused))
			gossip_warn("aggregate: at most %d runs at once: the oldest is dropped for a new one",
			            GOSSIP_AGG_RUNS);
		unlink(gossip_agg_path(g->dir, r->id));
	}
	memset(r, 0, sizeof *r);
	r->used = 1;
	memcpy(r->id, id, sizeof id);
	memcpy(r->asker, m->origin, 32);
	r->spec = a;
	r->start = m->time;
}

/* A number, with blanks around it allowed, finite. */
static int number(const char *s, size_t n, double *x)
{
	char buf[128], *end;
	if (n >= sizeof buf || memchr(s, 0, n))
		return 0;
	memcpy(buf, s, n);
	buf[n] = 0;
	*x = strtod(buf, &end);
	while (*end == ' ' || *end == '\t' || *end == '\n' || *end == '\r')
		end++;
	return end != buf && !*end && isfinite(*x);
}

/* This member's input to a run: 1 and *x, or 0 when it has none (then it takes part
 * with no mass of its own, passing on what it is sent). */
static int read_input(struct gossip_aggregator *g, const struct run *r, struct gossip_peers *t,
                      struct gossip_store *st, double *x)
{
	const char *in = r->spec.input;
	if (!strcmp(in, "-")) {
		struct gossip_buf b = {0};
		if (gossip_read_file(gossip_path(g->dir, "aggregate.input"), 100, &b) < 0)
			return 0;
		int ok = number((const char *)b.p, b.len, x);
		gossip_buf_free(&b);
		return ok;
	}
	struct gossip_peer *self = t->has_self ? gossip_peers_find(t, t->self_pk, 0) : NULL;
	if (!strncmp(in, "tag:", 4)) {
		const char *v = self ? gossip_member_tag(&self->info, in + 4) : NULL;
		return v && number(v, strlen(v), x);
	}
	if (strncmp(in, "key:", 4) || !st || !t->has_self)
		return 0;
	struct gossip_msg m = {.type = GOSSIP_T_SET, .key = (const uint8_t *)in + 4, .keylen = strlen(in + 4)};
	uint8_t slot[16], *buf = malloc(GOSSIP_MSG_MAX);
	int ok = 0;
	memcpy(m.origin, t->self_pk, 32);
	gossip_slot(slot, &m);
	if (buf && gossip_store_lock(st) == 0) {
		const struct gossip_entry *e = gossip_store_find(st, slot);
		struct gossip_msg v;
		if (e && e->type == GOSSIP_T_SET && gossip_store_read(st, e, buf) == 0 &&
		    gossip_msg_decode(buf, e->len, &v) == 0 && v.has_value)
			ok = number((const char *)v.value, v.valuelen, x);
		gossip_store_unlock(st);
	}
	free(buf);
	return ok;
}

static int load(struct gossip_aggregator *g)
{
	if (g->ready)
		return 0;
	if (gossip_identity_load(g->dir, &g->id, 0) < 0) {
		gossip_warn("aggregate: key: %s", gossip_error());
		return -1;
	}
	if (gossip_keyring_load(&g->keys, g->dir) < 0) {
		gossip_warn("aggregate: keyring: %s", gossip_error());
		gossip_identity_free(&g->id);
		return -1;
	}
	gossip_out_init(&g->out, 1200, 500, 0, &g->keys);
	g->ready = 1;
	return 0;
}

static uint64_t who8(const uint8_t pk[32])
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v = v << 8 | pk[i];
	return v;
}

static uint64_t round_at(const struct run *r, uint64_t now)
{
	return now > r->start ? (now - r->start) / r->spec.round_ms : 0;
}

static void refuse(struct gossip_aggregator *g, struct run *r, const uint8_t who[32], const char *why,
                   uint64_t now)
{
	char id[9];
	uint64_t refused = 0;
	g->refused++;
	if (r)
		r->refused++;
	if (gossip_rate_allow(&g->refuse_rate, REFUSE_RATE, now, &refused)) {
		gossip_short_id(id, who);
		gossip_warn("aggregate: a share from %s refused: %s", id, why);
	}
	if (refused)
		gossip_warn("aggregate: %llu more shares refused in a second", (unsigned long long)refused);
}

/* A share into its run (started), once per signer and round. */
static int take(struct gossip_aggregator *g, struct run *r, const uint8_t who[32],
                const struct gossip_share *s, size_t members, uint64_t now)
{
	uint64_t cur = round_at(r, now), w = who8(who);
	double cap = r->spec.fn == GOSSIP_AGG_SUM || r->spec.fn == GOSSIP_AGG_COUNT ? 1 : (double)members;
	double est;
	if (s->round + OLD_ROUNDS < cur || s->round > cur + 2) {
		refuse(g, r, who, "its round is not near this node's", now);
		return 0;
	}
	/* What a trusted liar can send is bounded: no more weight than the whole run has, an
	 * extreme of weight 1, a count of no more than every member twice. */
	if (s->mass.w > (cap < 1 ? 1 : cap) || (extreme(r->spec.fn) && s->mass.w != 0 && s->mass.w != 1) ||
	    (r->spec.fn == GOSSIP_AGG_COUNT && (s->mass.s < 0 || s->mass.s > 2.0 * (double)members + 2))) {
		refuse(g, r, who, "more mass than the run has", now);
		return 0;
	}
	for (size_t i = 0; i < SEEN; i++)
		if (r->seen[i].who == w && r->seen[i].round == s->round &&
		    (r->seen[i].who || r->seen[i].round)) {
			refuse(g, r, who, "a second share in one round (a replay?)", now);
			return 0;
		}
	r->seen[r->seen_next % SEEN].who = w;
	r->seen[r->seen_next % SEEN].round = s->round;
	r->seen_next++;
	gossip_agg_take(r->spec.fn, &r->mass, s->mass);
	r->received++;
	if (gossip_agg_estimate(r->spec.fn, &s->mass, &est)) {
		struct slot *sl = &r->win[cur % WINDOW];
		if (sl->round != cur || !sl->n)
			*sl = (struct slot){cur, 0, est, est};
		sl->n++;
		sl->lo = est < sl->lo ? est : sl->lo;
		sl->hi = est > sl->hi ? est : sl->hi;
	}
	return 1;
}

int gossip_aggregator_share(struct gossip_aggregator *g, const struct gossip_msg *m,
                            const struct gossip_trust *t, size_t members, uint64_t now)
{
	struct gossip_share s;
	const struct gossip_signer *signer = NULL;
	if (gossip_share_decode(m->value, m->valuelen, &s) < 0) {
		refuse(g, NULL, m->origin, gossip_error(), now);
		return 0;
	}
	struct run *r = run_find(g, s.id);
	if (!t || gossip_check_msg(m, t, &signer) != GOSSIP_V_OK) {
		refuse(g, r, m->origin, t ? gossip_error() : "trusted is not loaded yet", now);
		return 0;
	}
	if (load(g) < 0) {
		refuse(g, r, m->origin, "this node's key does not load", now);
		return 0;
	}
	/* Sent to another member and replayed here (sealing does not say to whom): its mass
	 * would count twice. */
	if (sodium_memcmp(s.to, g->id.pk, 32) != 0) {
		refuse(g, r, m->origin, "it was sent to another member (a replay?)", now);
		return 0;
	}
	if (r && r->started)
		return take(g, r, m->origin, &s, members ? members : 1, now);
	/* Before its run: kept a while, so that the mass is not lost (the run's message is on
	 * its way); bounded like any share once the run is known. */
	if (s.mass.w > (double)(members ? members : 1)) {
		refuse(g, r, m->origin, "more mass than the run has", now);
		return 0;
	}
	struct orphan *o = &g->orphans[g->orphan_next++ % ORPHANS];
	if (o->used)
		refuse(g, NULL, o->who, "its run never came (kept too many shares of unknown runs)", now);
	*o = (struct orphan){1, {0}, s, now};
	memcpy(o->who, m->origin, 32);
	return 1;
}

static void write_status(struct gossip_aggregator *g, struct run *r, uint64_t cur)
{
	char line[512];
	double est = NAN, lo = NAN, hi = NAN;
	uint64_t shares = 0;
	if (gossip_agg_estimate(r->spec.fn, &r->mass, &est))
		lo = hi = est;
	for (int i = 0; i < WINDOW; i++) {
		const struct slot *sl = &r->win[i];
		if (!sl->n || sl->round + WINDOW <= cur || sl->round > cur)
			continue;
		shares += sl->n;
		lo = isnan(lo) || sl->lo < lo ? sl->lo : lo;
		hi = isnan(hi) || sl->hi > hi ? sl->hi : hi;
	}
	int n = snprintf(line, sizeof line, "%llu %.17g %.17g %.17g %llu %llu %llu %llu %llu\n",
	                 (unsigned long long)cur, est, lo, hi, (unsigned long long)r->sent,
	                 (unsigned long long)r->received, (unsigned long long)r->refused,
	                 (unsigned long long)r->bytes, (unsigned long long)shares);
	mkdir(gossip_path(g->dir, "aggregate"), 0700);
	if (gossip_write_replace(gossip_agg_path(g->dir, r->id), line, (size_t)n, 0644) < 0)
		gossip_warn("aggregate: %s", gossip_error());
}

/* An alive member other than this node, with a udp:// address, uniformly; NULL: none. */
static const struct gossip_peer *pick(const struct gossip_peers *t)
{
	size_t n = 0, k;
	for (size_t i = 0; i < t->n; i++)
		n += !t->v[i].self && t->v[i].state == GOSSIP_P_ALIVE && gossip_member_addr(&t->v[i].info, GOSSIP_UDP);
	if (!n)
		return NULL;
	k = randombytes_uniform((uint32_t)n);
	for (size_t i = 0; i < t->n; i++) {
		const char *a = gossip_member_addr(&t->v[i].info, GOSSIP_UDP);
		if (!t->v[i].self && t->v[i].state == GOSSIP_P_ALIVE && a && !k--)
			return &t->v[i];
	}
	return NULL;
}

/* One round: the estimate written, then half the mass (or the extreme) to a member. */
static void step(struct gossip_aggregator *g, struct run *r, struct gossip_peers *t, uint64_t cur)
{
	write_status(g, r, cur);
	struct gossip_agg_mass keep = r->mass;
	const struct gossip_peer *p = pick(t);
	const char *to = p ? gossip_member_addr(&p->info, GOSSIP_UDP) : NULL;
	if (!to || (keep.s == 0 && keep.w == 0) || (extreme(r->spec.fn) && !(keep.w > 0)) || load(g) < 0)
		return;  /* no one to send to, nothing to send: the mass stays */
	struct gossip_share s = {.round = cur, .mass = gossip_agg_split(r->spec.fn, &keep)};
	struct gossip_buf b = {0};
	long i;
	memcpy(s.id, r->id, sizeof s.id);
	memcpy(s.to, p->pk, 32);
	uint64_t before = g->out.sent_bytes;
	if (gossip_share_sign(&b, &s, &g->id) == 0 && (i = gossip_out_index(&g->out, to)) >= 0 &&
	    gossip_out_queue_to(&g->out, (size_t)i, b.p, b.len) == 0) {
		gossip_out_flush(&g->out);
		r->mass = keep;  /* sent (a datagram lost on the way loses its mass) */
		r->sent++;
		r->bytes += g->out.sent_bytes - before;
	}
	gossip_buf_free(&b);
	/* Members come and go: forget the addresses now and then. */
	if (g->out.n > 256) {
		gossip_out_close(&g->out);
		gossip_out_init(&g->out, 1200, 500, 0, &g->keys);
	}
}

static void start(struct gossip_aggregator *g, struct run *r, struct gossip_peers *t,
                  struct gossip_store *st, uint64_t now)
{
	struct stat sb;
	double x = 0;
	int asker = t->has_self && !memcmp(r->asker, t->self_pk, 32);
	/* Its estimate file says this node took part before it restarted: its mass then is
	 * out there (or lost); taking it again would count this member twice. */
	int before = stat(gossip_agg_path(g->dir, r->id), &sb) == 0;
	int has = !before && read_input(g, r, t, st, &x);
	r->mass = before ? (struct gossip_agg_mass){0, 0}
	                 : gossip_agg_initial(r->spec.fn, asker, has, x);
	r->started = 1;
	r->next = round_at(r, now);
	size_t members = 0;
	for (size_t i = 0; i < t->n; i++)
		members += t->v[i].state != GOSSIP_P_LEFT;
	for (int i = 0; i < ORPHANS; i++) {
		struct orphan *o = &g->orphans[i];
		if (o->used && !memcmp(o->share.id, r->id, GOSSIP_AGG_ID_LEN)) {
			o->used = 0;
			take(g, r, o->who, &o->share, members ? members : 1, now);
		}
	}
}

int gossip_aggregator_busy(const struct gossip_aggregator *g)
{
	for (int i = 0; i < GOSSIP_AGG_RUNS; i++)
		if (g->runs[i].used)
			return 1;
	for (int i = 0; i < ORPHANS; i++)
		if (g->orphans[i].used)
			return 1;
	return 0;
}

void gossip_aggregator_tick(struct gossip_aggregator *g, struct gossip_peers *t,
                            struct gossip_store *st, uint64_t now)
{
	int running = 0;
	for (int i = 0; i < ORPHANS; i++)
		if (g->orphans[i].used && gossip_age_ms(now, g->orphans[i].at) > ORPHAN_MS) {
			g->orphans[i].used = 0;
			refuse(g, NULL, g->orphans[i].who, "its run never came", now);
		}
	for (int i = 0; i < GOSSIP_AGG_RUNS; i++) {
		struct run *r = &g->runs[i];
		if (!r->used)
			continue;
		if (now >= r->spec.deadline + GOSSIP_AGG_LINGER_MS) {
			unlink(gossip_agg_path(g->dir, r->id));
			r->used = 0;
			continue;
		}
		running++;
		if (now >= r->spec.deadline)
			continue;
		if (!r->started)
			start(g, r, t, st, now);
		uint64_t cur = round_at(r, now);
		if (cur >= r->next) {
			step(g, r, t, cur);
			r->next = cur + 1;
		}
	}
	/* Nothing runs: the key and keyring are read again for the next run (a rotation). */
	if (!running)
		unload(g);
}
