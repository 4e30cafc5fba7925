/* sim-events.c: the timed models of gossip-sim, driven by a queue of events in
 * milliseconds: the node as built (rumor to -k random live members on arrival, push-pull
 * anti-entropy every -s seconds) and SWIM failure detection as gossip-peers observe -p
 * does it, each message with its latency and its chance of loss. */
#include "sim.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- the event queue: a binary heap on time ---- */

struct ev {
	double t;
	uint32_t to, from, x, a;  /* receiver; sender; subject (target, origin); asker */
	uint32_t nonce;
	uint8_t kind, flag;
};

struct queue {
	struct ev *v;
	size_t n, cap, peak;
};

static int q_push(struct queue *q, const struct ev *e)
{
	if (q->n == q->cap) {
		size_t cap = q->cap ? 2 * q->cap : 1024;
		struct ev *v = realloc(q->v, cap * sizeof *v);
		if (!v)
			return -1;
		q->v = v;
		q->cap = cap;
	}
	size_t i = q->n++;
	while (i > 0 && q->v[(i - 1) / 2].t > e->t) {
		q->v[i] = q->v[(i - 1) / 2];
		i = (i - 1) / 2;
	}
	q->v[i] = *e;
	if (q->n > q->peak)
		q->peak = q->n;
	return 0;
}

static struct ev q_pop(struct queue *q)
{
	struct ev top = q->v[0], last = q->v[--q->n];
	size_t i = 0;
	for (;;) {
		size_t c = 2 * i + 1;
		if (c >= q->n)
			break;
		if (c + 1 < q->n && q->v[c + 1].t < q->v[c].t)
			c++;
		if (q->v[c].t >= last.t)
			break;
		q->v[i] = q->v[c];
		i = c;
	}
	if (q->n)
		q->v[i] = last;
	return top;
}

/* One message's time on the way: the fixed part, then an exponential tail. */
static double latency(const struct sim_cfg *c, struct gossip_rng *r)
{
	double j = c->jitter_ms < c->latency_ms ? c->jitter_ms : c->latency_ms;
	return c->latency_ms - j + (j > 0 ? gossip_rng_exp(r, j) : 0);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

void sim_quantiles(struct sim_result *out, double *when, uint32_t n)
{
	size_t qn = n < SIM_QN ? n : SIM_QN;
	qsort(when, n, sizeof *when, cmp_double);
	out->nq = qn + 1;
	out->q[0] = 0;
	for (size_t i = 1; i <= qn; i++) {
		size_t need = (size_t)ceil((double)i * n / (double)qn);
		out->q[i] = when[need - 1];
	}
}

/* ---- the node as built ---- */

enum { N_MSG, N_SYNC, N_LEARN, N_DONE };

struct node_sim {
	const struct sim_cfg *c;
	struct gossip_rng *r;
	struct queue q;
	double *when;  /* stored (informed) at, ms; INFINITY */
	uint32_t informed, *pick;
	uint64_t msgs, syncs, drawn;
	struct gossip_peers table;  /* the library's peer table, for gossip_peers_pick */
	struct gossip_peer **out;
	double *free_at;  /* --cpus: when each shared processor is next free */
	uint8_t *taken;  /* --cpus: a new message is being processed */
	uint32_t *rank[GOSSIP_RUMOR_TREES], *at[GOSSIP_RUMOR_TREES];  /* own trees: rank of a
	                                                            * member, member at a rank */
};

/* k random live members other than x: the library's own gossip_peers_pick on a table of
 * n live members (its randombytes drawn from the run's generator), or the simulator's
 * equivalent where such a table would cost too much (see gossip-sim(1)). */
static uint32_t node_pick(struct node_sim *s, uint32_t x, uint32_t k)
{
	if (!s->table.v)
		return gossip_sim_pick(s->r, s->c->n, x, k, s->pick);
	struct gossip_peers_cfg cfg = gossip_peers_defaults;
	s->table.v[x].self = 1;
	size_t got = gossip_peers_pick(&s->table, &cfg, k, s->out);
	s->table.v[x].self = 0;
	for (size_t i = 0; i < got; i++)
		s->pick[i] = (uint32_t)(s->out[i] - s->table.v);
	return (uint32_t)got;
}

/* x's children in the rumor's trees rooted at member 0, the update's origin: the
 * library's own gossip_peers_rumor_from on the table (its keys drawn from the run's
 * generator), or the same rule on orders of the simulator's own (a random order per tree
 * and run, as the keys' hashes make one). The second tree only with --second-tree always:
 * lazy (gossip-node's default) it sends below a suspect alone, and here nobody is. */
static uint32_t node_children(struct node_sim *s, uint32_t x)
{
	uint32_t k = s->c->k, got = 0, n = s->c->n;
	if (s->table.v) {
		s->table.v[x].self = 1;
		size_t g = gossip_peers_rumor_from(&s->table, s->table.v[0].pk, k, s->c->eager ? 0 : GOSSIP_RUMOR_LAZY,
		                                   s->out);
		s->table.v[x].self = 0;
		for (size_t i = 0; i < g; i++)
			s->pick[i] = (uint32_t)(s->out[i] - s->table.v);
		return (uint32_t)g;
	}
	for (int j = 0; j < (s->c->eager ? GOSSIP_RUMOR_TREES : 1); j++) {
		uint64_t r = s->rank[j][x];
		for (uint64_t c = k * r + 1; c <= k * r + k && c < n; c++) {
			uint32_t y = s->at[j][c];
			int dup = y == x;
			for (uint32_t i = 0; i < got && !dup; i++)
				dup = s->pick[i] == y;
			if (!dup)
				s->pick[got++] = y;
		}
	}
	return got;
}

/* x passes the update on: along the trees (what came on the stream), or to k random live
 * members (what its own sync brought, as gossip-node's sync | gossip-send -k -M). */
static int node_forward(struct node_sim *s, uint32_t x, double t, int by_sync)
{
	uint32_t got = by_sync ? node_pick(s, x, s->c->k) : node_children(s, x);
	s->drawn += got;
	for (uint32_t i = 0; i < got; i++) {
		s->msgs++;
		if (s->c->loss > 0 && gossip_rng_chance(s->r, s->c->loss))
			continue;
		struct ev e = {.t = t + latency(s->c, s->r), .to = s->pick[i], .from = x, .kind = N_MSG};
		if (q_push(&s->q, &e) < 0)
			return -1;
	}
	return 0;
}

/* Stored at x: the first copy is new and goes on as rumor, unless it came by a sync that
 * x served (gossip-merge serve stores, and passes nothing on). */
static int node_learn(struct node_sim *s, uint32_t x, double t, int forward, int by_sync)
{
	if (s->when[x] != INFINITY)
		return 0;
	s->when[x] = t;
	s->informed++;
	return forward ? node_forward(s, x, t, by_sync) : 0;
}

int sim_node(const struct sim_cfg *c, struct gossip_rng *r, struct sim_result *out)
{
	struct node_sim s = {.c = c, .r = r};
	double every = c->every_s * 1000, limit = c->limit * 1000, t = 0, all = -1;
	uint32_t repaired = 0;
	int rc = -1;
	s.when = malloc(c->n * sizeof *s.when);
	s.pick = malloc((GOSSIP_RUMOR_TREES * c->k + 1) * sizeof *s.pick);
	s.free_at = calloc(c->cpus + 1, sizeof *s.free_at);
	s.taken = calloc(c->n, 1);
	if (!s.when || !s.pick || !s.free_at || !s.taken)
		goto oom;
	/* The library's table where it is cheap: every member alive, in good standing. */
	if (!c->own_pick && c->n <= 4096) {
		s.table.v = calloc(c->n, sizeof *s.table.v);
		s.out = calloc(GOSSIP_RUMOR_TREES * c->k + 2, sizeof *s.out);
		if (!s.table.v || !s.out)
			goto oom;
		s.table.n = c->n;
		for (uint32_t i = 0; i < c->n; i++) {
			s.table.v[i].state = GOSSIP_P_ALIVE;
			s.table.v[i].score = 100;
			for (int b = 0; b < 32; b += 8) {
				uint64_t w = gossip_rng_next(r);
				memcpy(s.table.v[i].pk + b, &w, 8);
			}
		}
	} else {
		/* Own trees: member 0 at rank 0, the others in a random order per tree. */
		for (int j = 0; j < GOSSIP_RUMOR_TREES; j++) {
			s.rank[j] = malloc(c->n * sizeof *s.rank[j]);
			s.at[j] = malloc(c->n * sizeof *s.at[j]);
			if (!s.rank[j] || !s.at[j])
				goto oom;
			for (uint32_t i = 0; i < c->n; i++)
				s.at[j][i] = i;
			for (uint32_t i = c->n - 1; i > 1; i--) {
				uint32_t m = 1 + gossip_rng_below(r, i);
				uint32_t tmp = s.at[j][i];
				s.at[j][i] = s.at[j][m];
				s.at[j][m] = tmp;
			}
			for (uint32_t i = 0; i < c->n; i++)
				s.rank[j][s.at[j][i]] = i;
		}
	}
	for (uint32_t i = 0; i < c->n; i++)
		s.when[i] = INFINITY;
	/* Every member's sync loop is somewhere in its interval when the update is made. */
	for (uint32_t i = 0; i < c->n; i++) {
		struct ev e = {.t = gossip_rng_unit(r) * every, .to = i, .kind = N_SYNC};
		if (q_push(&s.q, &e) < 0)
			goto oom;
	}
	if (node_learn(&s, 0, 0, 1, 0) < 0)
		goto oom;
	while (s.q.n && s.informed < c->n) {
		struct ev e = q_pop(&s.q);
		t = e.t;
		if (t > limit)
			break;
		if (e.kind == N_MSG && c->cpus) {
			/* Members share the machine's processors, first come first served: a new
			 * message waits for one, and is stored and passed on when done with. */
			if (s.when[e.to] != INFINITY || s.taken[e.to])
				continue;
			unsigned p = 0;
			for (unsigned i = 1; i < c->cpus; i++)
				p = s.free_at[i] < s.free_at[p] ? i : p;
			s.free_at[p] = fmax(t, s.free_at[p]) + c->cpu_ms;
			s.taken[e.to] = 1;
			struct ev l = {.t = s.free_at[p], .to = e.to, .kind = N_DONE};
			if (q_push(&s.q, &l) < 0)
				goto oom;
		} else if (e.kind == N_MSG) {
			if (node_learn(&s, e.to, t, 1, 0) < 0)
				goto oom;
		} else if (e.kind == N_DONE) {
			if (node_learn(&s, e.to, t, 1, 0) < 0)
				goto oom;
		} else if (e.kind == N_LEARN) {
			repaired += s.when[e.to] == INFINITY;
			if (node_learn(&s, e.to, t, e.flag, 1) < 0)
				goto oom;
		} else {
			/* Push-pull with one random live member: the initiator passes on what it
			 * got, the server only stores it. */
			uint32_t b;
			node_pick(&s, e.to, 1);
			b = s.pick[0];
			s.syncs++;
			s.drawn++;
			int a_has = s.when[e.to] <= t, b_has = s.when[b] <= t;
			struct ev l = {.t = t + c->sync_ms, .kind = N_LEARN};
			if (a_has && !b_has) {
				l.to = b;
				l.flag = 0;
			} else if (b_has && !a_has) {
				l.to = e.to;
				l.flag = 1;
			}
			if (a_has != b_has && q_push(&s.q, &l) < 0)
				goto oom;
			struct ev nx = {.t = t + c->sync_ms + every, .to = e.to, .kind = N_SYNC};
			if (q_push(&s.q, &nx) < 0)
				goto oom;
		}
	}
	if (s.informed == c->n)
		all = t;
	double sum = 0, last = 0;
	for (uint32_t i = 0; i < c->n; i++)
		if (s.when[i] != INFINITY) {
			sum += s.when[i];
			last = s.when[i] > last ? s.when[i] : last;
		}
	out->timed = 1;
	out->t_all = all;
	out->t_last = last;
	out->t_ave = sum / s.informed;
	out->residue = (double)(c->n - s.informed) / c->n;
	out->msgs = (double)s.msgs / c->n;
	out->contacts = (double)(s.msgs + s.syncs) / c->n;
	out->repaired = repaired;
	out->drawn = s.drawn;
	out->peak_bytes = c->n * (sizeof *s.when + (s.table.v ? sizeof *s.table.v : 0)) + s.q.peak * sizeof *s.q.v;
	sim_quantiles(out, s.when, c->n);
	rc = 0;
	goto done;
oom:
	gossip_seterr("out of memory");
done:
	free(s.when);
	free(s.pick);
	free(s.free_at);
	free(s.taken);
	free(s.q.v);
	free(s.table.v);
	free(s.out);
	for (int j = 0; j < GOSSIP_RUMOR_TREES; j++) {
		free(s.rank[j]);
		free(s.at[j]);
	}
	return rc;
}

/* ---- SWIM, as gossip-peers observe -p probes ----
 * Every member keeps its view of every other (dense: n*n small records, so n is at most
 * SWIM_MAX). Member 0 crashes after two intervals; the others find it. The rules are
 * those of bin/gossip-peers.c: a ping each interval (jittered) round a shuffled order of
 * the alive and suspect members (a dead one instead, one time in ten); no ack after a
 * fifth of the interval: the ping again and 3 indirect pings; none after three fifths:
 * suspect, and a claim to every member; those who hear it probe too and, failing, confirm
 * to the claimer, who declares the target dead after the suspicion timeout
 * (gossip_suspicion_ms), the others after 4 times that unless a dead claim comes first;
 * a member claimed down refutes with a new incarnation, to every member. Claims and
 * member records that are news go on as rumor to -k members. */

enum { SWIM_MAX = 2000, INDIRECT = 3, SLOW = 4, PROBES = 16, TICK_MS = 100 };
enum { V_ALIVE, V_SUSPECT, V_DEAD };
enum { W_TIMER, W_ACKWAIT, W_FAIL, W_PING, W_ACK, W_CLAIM, W_MEMBER, W_CHECK };

struct probe {
	int active, indirect;
	uint32_t target, claimer, nonce;
	double start;
};

struct member {
	uint32_t inc;  /* its own incarnation */
	uint32_t norder, pos, ndown;  /* the round; members it holds suspect or dead */
	double tick_phase;
	struct probe pr[PROBES];
};

struct swim_sim {
	const struct sim_cfg *c;
	struct gossip_rng *r;
	struct queue q;
	uint32_t n, victim, nonce;
	double crash, interval, ack, suspicion;
	struct member *m;
	/* views, n*n: state (and bit 4: this member's own probe made it suspect) */
	uint8_t *view, *conf;
	uint16_t *kinc, *order;
	float *since, *told;
	double *dead_at;  /* when each member declared the victim dead */
	uint32_t *cand;
	uint64_t msgs, drawn;
	double first_suspect, first_dead;
	uint64_t false_suspect, false_dead;
	uint32_t ndone;  /* live members that hold the victim dead */
};

#define AT(s, o, x) ((size_t)(o) * (s)->n + (x))
enum { SUSPECTOR = 16 };

static int vstate(const struct swim_sim *s, uint32_t o, uint32_t x)
{
	return s->view[AT(s, o, x)] & 3;
}

static int w_send(struct swim_sim *s, double t, uint32_t from, uint32_t to, int kind, uint32_t x,
                  uint32_t a, uint32_t nonce, int flag)
{
	s->msgs++;
	if (to == s->victim && t >= s->crash)
		return 0;
	if (s->c->loss > 0 && gossip_rng_chance(s->r, s->c->loss))
		return 0;
	struct ev e = {.t = t + latency(s->c, s->r), .to = to, .from = from, .x = x, .a = a,
	               .nonce = nonce, .kind = (uint8_t)kind, .flag = (uint8_t)flag};
	return q_push(&s->q, &e);
}

static int w_timer(struct swim_sim *s, double t, uint32_t to, int kind, uint32_t x, uint32_t nonce)
{
	struct ev e = {.t = t, .to = to, .x = x, .nonce = nonce, .kind = (uint8_t)kind};
	return q_push(&s->q, &e);
}

/* The member's next tick at or after t: state changes wait for it, as observe's do. */
static double next_tick(const struct swim_sim *s, uint32_t o, double t)
{
	double ph = s->m[o].tick_phase;
	return ph + ceil((t - ph) / TICK_MS) * TICK_MS;
}

static void set_view(struct swim_sim *s, uint32_t o, uint32_t x, int state, double t)
{
	int was = vstate(s, o, x);
	s->view[AT(s, o, x)] = (uint8_t)((s->view[AT(s, o, x)] & ~3) | state);
	s->since[AT(s, o, x)] = (float)t;
	s->m[o].ndown += (state != V_ALIVE) - (was != V_ALIVE);
	if (x == s->victim && t >= s->crash) {
		if (state == V_SUSPECT && s->first_suspect < 0)
			s->first_suspect = t - s->crash;
		if (state == V_DEAD && s->dead_at[o] == INFINITY) {
			s->dead_at[o] = t - s->crash;
			s->ndone++;
			if (s->first_dead < 0)
				s->first_dead = t - s->crash;
		}
	} else if (state == V_DEAD)
		s->false_dead++;
}

/* A claim (suspect or dead) about x at the incarnation o knows, from o to every member it
 * holds alive or suspect, and to x. */
static int w_claim_all(struct swim_sim *s, double t, uint32_t o, uint32_t x, int dead)
{
	for (uint32_t y = 0; y < s->n; y++)
		if (y != o && y != x && vstate(s, o, y) != V_DEAD &&
		    w_send(s, t, o, y, W_CLAIM, x, o, s->kinc[AT(s, o, x)], dead) < 0)
			return -1;
	return w_send(s, t, o, x, W_CLAIM, x, o, s->kinc[AT(s, o, x)], dead);
}

/* News at o goes on as rumor: k live members by o's view (gossip_peers_pick's rule: alive
 * ones, and one time in ten a suspect or dead one in one of the places). */
static int w_rumor(struct swim_sim *s, double t, uint32_t o, int kind, uint32_t x, uint32_t a,
                   uint32_t val, int flag)
{
	uint32_t nl = 0, nd = 0, k = s->c->k, *live = s->cand, *down = s->cand + s->n;
	for (uint32_t y = 0; y < s->n; y++) {
		if (y == o)
			continue;
		if (vstate(s, o, y) == V_ALIVE)
			live[nl++] = y;
		else
			down[nd++] = y;
	}
	uint32_t got = 0;
	for (; got < k && got < nl; got++) {
		uint32_t j = got + gossip_rng_below(s->r, nl - got), tmp = live[got];
		live[got] = live[j];
		live[j] = tmp;
	}
	if (nd && k > 0 && gossip_rng_chance(s->r, gossip_peers_defaults.dead_chance)) {
		uint32_t d = down[gossip_rng_below(s->r, nd)];
		if (got < k)
			live[got++] = d;
		else
			live[gossip_rng_below(s->r, got)] = d;
	}
	s->drawn += got;
	for (uint32_t i = 0; i < got; i++)
		if (w_send(s, t, o, live[i], kind, x, a, val, flag) < 0)
			return -1;
	return 0;
}

static int w_start_probe(struct swim_sim *s, double t, uint32_t o, uint32_t x, uint32_t claimer)
{
	struct probe *pr = &s->m[o].pr[0];
	if (claimer != UINT32_MAX)
		for (int i = 1; i < PROBES; i++)
			if (!s->m[o].pr[i].active || i == PROBES - 1) {
				pr = &s->m[o].pr[i];
				break;
			}
	*pr = (struct probe){.active = 1, .target = x, .claimer = claimer, .nonce = ++s->nonce, .start = t};
	if (w_send(s, t, o, x, W_PING, x, UINT32_MAX, pr->nonce, 0) < 0)
		return -1;
	return w_timer(s, t + s->ack, o, W_ACKWAIT, (uint32_t)(pr - s->m[o].pr), pr->nonce);
}

/* The next member o probes: round its shuffled order of alive and suspect members; one
 * time in ten a dead one instead. UINT32_MAX: none. */
static uint32_t w_next_target(struct swim_sim *s, uint32_t o)
{
	struct member *m = &s->m[o];
	uint16_t *ord = s->order + (size_t)o * s->n;
	uint32_t dead = 0;
	for (uint32_t y = 0; m->ndown && y < s->n; y++)
		dead += vstate(s, o, y) == V_DEAD;
	if (dead && gossip_rng_chance(s->r, gossip_peers_defaults.dead_chance)) {
		uint32_t k = gossip_rng_below(s->r, dead);
		for (uint32_t y = 0; y < s->n; y++)
			if (vstate(s, o, y) == V_DEAD && !k--)
				return y;
	}
	for (int pass = 0; pass < 2; pass++) {
		while (m->pos < m->norder) {
			uint32_t y = ord[m->pos++];
			if (vstate(s, o, y) != V_DEAD)
				return y;
		}
		m->norder = m->pos = 0;
		for (uint32_t y = 0; y < s->n; y++) {
			if (y == o || vstate(s, o, y) == V_DEAD)
				continue;
			uint32_t j = gossip_rng_below(s->r, m->norder + 1);
			ord[m->norder] = ord[j];
			ord[j] = (uint16_t)y;
			m->norder++;
		}
	}
	return UINT32_MAX;
}

/* o heard directly from x: a member it holds down is told so, at most once an interval. */
static int w_heard(struct swim_sim *s, double t, uint32_t o, uint32_t x)
{
	int st = vstate(s, o, x);
	if (st == V_ALIVE || t - s->told[AT(s, o, x)] < s->interval)
		return 0;
	s->told[AT(s, o, x)] = (float)t;
	return w_send(s, t, o, x, W_CLAIM, x, o, s->kinc[AT(s, o, x)], st == V_DEAD);
}

static int w_refute(struct swim_sim *s, double t, uint32_t o, uint32_t claimed, uint32_t claimer)
{
	struct member *m = &s->m[o];
	if (claimed >= m->inc) {
		m->inc = claimed + 1;
		for (uint32_t y = 0; y < s->n; y++)
			if (y != o && w_send(s, t, o, y, W_MEMBER, o, 0, m->inc, 0) < 0)
				return -1;
		return 0;
	}
	return w_send(s, t, o, claimer, W_MEMBER, o, 0, m->inc, 0);
}

static int w_check_at(struct swim_sim *s, uint32_t o, uint32_t x, double t)
{
	return w_timer(s, next_tick(s, o, t), o, W_CHECK, x, 0);
}

static int w_suspect_timers(struct swim_sim *s, double t, uint32_t o, uint32_t x)
{
	/* Its own suspicion may be confirmed in time; anyone's ends at SLOW times. */
	if ((s->view[AT(s, o, x)] & SUSPECTOR) && w_check_at(s, o, x, t + s->suspicion) < 0)
		return -1;
	return w_check_at(s, o, x, t + SLOW * s->suspicion);
}

static int w_claim(struct swim_sim *s, double t, const struct ev *e)
{
	uint32_t o = e->to, x = e->x, c = e->a;
	if (x == o)
		return w_refute(s, t, o, e->nonce, c);
	int st = vstate(s, o, x);
	if (e->nonce < s->kinc[AT(s, o, x)] || st == V_DEAD)
		return 0;
	if (!e->flag && st == V_SUSPECT) {
		if ((s->view[AT(s, o, x)] & SUSPECTOR) && c != o) {
			s->conf[AT(s, o, x)]++;
			return w_check_at(s, o, x, fmax(t, s->since[AT(s, o, x)] + s->suspicion));
		}
		return 0;
	}
	s->view[AT(s, o, x)] &= (uint8_t)~SUSPECTOR;
	set_view(s, o, x, e->flag ? V_DEAD : V_SUSPECT, t);
	if (!e->flag && (w_start_probe(s, t, o, x, c) < 0 || w_suspect_timers(s, t, o, x) < 0))
		return -1;
	return w_rumor(s, t, o, W_CLAIM, x, c, e->nonce, e->flag);
}

static int w_member(struct swim_sim *s, double t, const struct ev *e)
{
	uint32_t o = e->to, x = e->x;
	if (x == o || e->nonce <= s->kinc[AT(s, o, x)])
		return 0;
	s->kinc[AT(s, o, x)] = (uint16_t)e->nonce;
	if (vstate(s, o, x) != V_ALIVE) {
		s->view[AT(s, o, x)] &= (uint8_t)~SUSPECTOR;
		set_view(s, o, x, V_ALIVE, t);
	}
	return w_rumor(s, t, o, W_MEMBER, x, 0, e->nonce, 0);
}

static int w_probe_failed(struct swim_sim *s, double t, uint32_t o, struct probe *pr)
{
	uint32_t x = pr->target;
	pr->active = 0;
	if (pr != &s->m[o].pr[0]) {
		if (vstate(s, o, x) == V_SUSPECT && pr->claimer != o)
			return w_send(s, t, o, pr->claimer, W_CLAIM, x, o, s->kinc[AT(s, o, x)], 0);
		return 0;
	}
	if (vstate(s, o, x) != V_ALIVE)
		return 0;
	if (x != s->victim || t < s->crash)
		s->false_suspect++;
	set_view(s, o, x, V_SUSPECT, t);
	s->view[AT(s, o, x)] |= SUSPECTOR;
	s->conf[AT(s, o, x)] = 0;
	if (w_claim_all(s, t, o, x, 0) < 0)
		return -1;
	return w_suspect_timers(s, t, o, x);
}

static int w_event(struct swim_sim *s, const struct ev *e)
{
	double t = e->t;
	uint32_t o = e->to;
	if (o == s->victim && t >= s->crash)
		return 0;
	struct member *m = &s->m[o];
	switch (e->kind) {
	case W_TIMER: {
		double d = s->interval * (1 + s->c->probe_jitter * (2 * gossip_rng_unit(s->r) - 1));
		uint32_t x;
		if (!m->pr[0].active && (x = w_next_target(s, o)) != UINT32_MAX && w_start_probe(s, t, o, x, UINT32_MAX) < 0)
			return -1;
		return w_timer(s, t + d, o, W_TIMER, 0, 0);
	}
	case W_ACKWAIT: {
		struct probe *pr = &m->pr[e->x];
		if (!pr->active || pr->nonce != e->nonce)
			return 0;
		if (w_send(s, t, o, pr->target, W_PING, pr->target, UINT32_MAX, pr->nonce, 0) < 0)
			return -1;
		uint32_t nc = 0, *cand = s->cand;
		for (uint32_t y = 0; y < s->n; y++)
			if (y != o && y != pr->target && vstate(s, o, y) == V_ALIVE)
				cand[nc++] = y;
		for (uint32_t i = 0; i < INDIRECT && i < nc; i++) {
			uint32_t j = i + gossip_rng_below(s->r, nc - i), tmp = cand[i];
			cand[i] = cand[j];
			cand[j] = tmp;
			s->drawn++;
			/* A ping that asks cand[i] to ping the target for o. */
			if (w_send(s, t, o, cand[i], W_PING, pr->target, o, pr->nonce, 1) < 0)
				return -1;
		}
		pr->indirect = 1;
		return w_timer(s, pr->start + 3 * s->ack, o, W_FAIL, e->x, e->nonce);
	}
	case W_FAIL: {
		struct probe *pr = &m->pr[e->x];
		if (!pr->active || pr->nonce != e->nonce)
			return 0;
		return w_probe_failed(s, t, o, pr);
	}
	case W_PING:
		if (w_heard(s, t, o, e->from) < 0)
			return -1;
		if (e->flag && e->x != o)  /* asked to ping x for e->a */
			return w_send(s, t, o, e->x, W_PING, e->x, e->a, e->nonce, 0);
		/* The ack names the asker (when relayed) so that the helper passes it back. */
		return w_send(s, t, o, e->from, W_ACK, o, e->a, e->nonce, 0);
	case W_ACK:
		/* From x (the signer), directly or passed back by a helper. */
		if (w_heard(s, t, o, e->x) < 0)
			return -1;
		for (int i = 0; i < PROBES; i++)
			if (m->pr[i].active && m->pr[i].nonce == e->nonce && m->pr[i].target == e->x) {
				m->pr[i].active = 0;
				return 0;
			}
		if (e->a != UINT32_MAX && e->a != o)
			return w_send(s, t, o, e->a, W_ACK, e->x, UINT32_MAX, e->nonce, 0);
		return 0;
	case W_CLAIM:
		return w_claim(s, t, e);
	case W_MEMBER:
		return w_member(s, t, e);
	case W_CHECK: {
		uint32_t x = e->x;
		size_t i = AT(s, o, x);
		if (vstate(s, o, x) != V_SUSPECT)
			return 0;
		double limit = (s->view[i] & SUSPECTOR) && s->conf[i] ? s->suspicion : SLOW * s->suspicion;
		if (t + 1 < s->since[i] + limit)
			return 0;  /* a later check is queued */
		int mine = s->view[i] & SUSPECTOR;
		set_view(s, o, x, V_DEAD, t);
		return mine ? w_claim_all(s, t, o, x, 1) : 0;
	}
	}
	return 0;
}

int sim_swim(const struct sim_cfg *c, struct gossip_rng *r, struct sim_result *out)
{
	struct swim_sim s = {.c = c, .r = r, .n = c->n, .victim = 0, .first_suspect = -1, .first_dead = -1};
	size_t nn = (size_t)c->n * c->n;
	double limit, t = 0;
	int rc = -1;
	struct gossip_peers_cfg cfg = gossip_peers_defaults;
	cfg.interval_ms = c->probe_s * 1000;
	cfg.suspicion_mult = c->mult;
	/* The node's own suspicion timeout: every member is in every table. */
	s.suspicion = (double)gossip_suspicion_ms(&cfg, c->n);
	s.interval = cfg.interval_ms;
	s.ack = s.interval >= 5 ? floor(s.interval / 5) : 1;
	s.crash = 2 * s.interval;
	limit = c->limit > 0 ? c->limit * 1000 : s.crash + 600000;
	s.m = calloc(c->n, sizeof *s.m);
	s.view = calloc(nn, 1);
	s.conf = calloc(nn, 1);
	s.kinc = calloc(nn, sizeof *s.kinc);
	s.order = malloc(nn * sizeof *s.order);
	s.since = calloc(nn, sizeof *s.since);
	s.told = calloc(nn, sizeof *s.told);
	s.dead_at = malloc(c->n * sizeof *s.dead_at);
	s.cand = malloc(2 * (size_t)c->n * sizeof *s.cand);
	if (!s.m || !s.view || !s.conf || !s.kinc || !s.order || !s.since || !s.told || !s.dead_at || !s.cand)
		goto oom;
	for (size_t i = 0; i < nn; i++)
		s.told[i] = -1e30f;
	for (uint32_t o = 0; o < c->n; o++) {
		s.dead_at[o] = INFINITY;
		s.m[o].tick_phase = gossip_rng_unit(r) * TICK_MS;
		/* Steady state: each member somewhere in its round, somewhere in its interval. */
		w_next_target(&s, o);
		s.m[o].pos = gossip_rng_below(r, s.m[o].norder);
		if (w_timer(&s, gossip_rng_unit(r) * s.interval, o, W_TIMER, 0, 0) < 0)
			goto oom;
	}
	s.dead_at[s.victim] = -1;
	uint32_t found = 0;
	while (s.q.n) {
		struct ev e = q_pop(&s.q);
		t = e.t;
		if (t > limit)
			break;
		if (w_event(&s, &e) < 0)
			goto oom;
		found = s.ndone;
		/* Detected by all: stop, unless a duration was asked for (false suspicions). */
		if (found == c->n - 1 && c->limit <= 0)
			break;
	}
	double sum = 0, last = 0;
	for (uint32_t o = 1; o < c->n; o++)
		if (s.dead_at[o] != INFINITY) {
			sum += s.dead_at[o];
			last = s.dead_at[o] > last ? s.dead_at[o] : last;
		}
	out->timed = 1;
	out->t_all = found == c->n - 1 ? last : -1;
	out->t_last = last;
	out->t_ave = found ? sum / found : -1;
	out->residue = (double)(c->n - 1 - found) / (c->n - 1);
	out->duration_s = t / 1000;
	out->msgs = (double)s.msgs / c->n / (t > 0 ? t / 1000 : 1);  /* datagrams a member sends a second */
	out->contacts = out->msgs;
	out->drawn = s.drawn + s.msgs;
	out->first_suspect = s.first_suspect;
	out->first_dead = s.first_dead;
	out->false_suspect = (double)s.false_suspect;
	out->false_dead = (double)s.false_dead;
	out->peak_bytes = nn * 14 + c->n * sizeof *s.m + s.q.peak * sizeof *s.q.v;
	sim_quantiles(out, s.dead_at + 1, c->n - 1);
	rc = 0;
	goto done;
oom:
	gossip_seterr("out of memory");
done:
	free(s.m);
	free(s.view);
	free(s.conf);
	free(s.kinc);
	free(s.order);
	free(s.since);
	free(s.told);
	free(s.dead_at);
	free(s.cand);
	free(s.q.v);
	return rc;
}
