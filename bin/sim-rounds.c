/* sim-rounds.c: the round models of gossip-sim: anti-entropy, rumor mongering (Demers et
 * al. 1987) and infect-and-die (Kermarrec, Massoulie and Ganesh 2003), one update spread
 * from member 0 in synchronous rounds. A member costs 4 bytes of state (flags, counter,
 * the round it was informed in) and 4 in the list of spreaders. */
#include "sim.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { ACTIVE = 1 };  /* still spreading (infective); removed members have lost interest */
#define NEVER 0xffffu

struct rounds {
	const struct sim_cfg *c;
	struct gossip_rng *r;
	uint32_t n, informed, round;
	uint8_t *flag, *cnt;
	uint16_t *when;  /* the round it was informed in; NEVER */
	uint32_t *act, nact;  /* members that spread (rumor: infective; infect-and-die: new) */
	uint32_t *fresh, nfresh;  /* informed in this round */
	uint64_t msgs, contacts, drawn;
	double *share;
	size_t nshare, capshare;
};

/* Did y know the update before this contact? Synchronously: before this round began;
 * with async, contacts take effect one by one, as in the differential equations. */
static int knew(const struct rounds *s, uint32_t y)
{
	return s->c->async ? s->when[y] != NEVER : s->when[y] < s->round;
}

static void inform(struct rounds *s, uint32_t y)
{
	s->when[y] = (uint16_t)s->round;
	s->informed++;
	s->fresh[s->nfresh++] = y;
}

/* An infective member x loses interest: with a coin (chance 1/k) or a counter (after k
 * such contacts in a row: a necessary contact starts the count again, which is what
 * reproduces Table 1 of Demers et al.). */
static void lose_interest(struct rounds *s, uint32_t x)
{
	if (s->c->coin ? gossip_rng_chance(s->r, 1.0 / s->c->k) : ++s->cnt[x] >= s->c->k)
		s->flag[x] &= (uint8_t)~ACTIVE;
}

/* x sends the update to y: one message, perhaps lost. */
static void transfer(struct rounds *s, uint32_t x, uint32_t y, int rumor)
{
	int k = knew(s, y);
	s->msgs++;
	if (s->c->loss > 0 && gossip_rng_chance(s->r, s->c->loss)) {
		if (rumor && s->c->blind)
			lose_interest(s, x);
		return;  /* with feedback, the sender learns nothing */
	}
	if (s->when[y] == NEVER) {
		inform(s, y);
		if (rumor || s->c->model == SIM_RUMOR)
			s->flag[y] |= ACTIVE;  /* found by anti-entropy: on as rumor, as the node does */
	}
	if (!rumor)
		return;
	if (s->c->blind || k)
		lose_interest(s, x);
	else
		s->cnt[x] = 0;
}

static int spreading(const struct rounds *s, uint32_t x)
{
	return (s->flag[x] & ACTIVE) && s->when[x] < s->round;
}

/* Fisher-Yates over the callers, for contacts one by one in random order. */
static void shuffle(struct rounds *s, uint32_t *v, uint32_t n)
{
	for (uint32_t i = n; i > 1; i--) {
		uint32_t j = gossip_rng_below(s->r, i), t = v[i - 1];
		v[i - 1] = v[j];
		v[j] = t;
	}
}

/* One call by member a to a random partner: a pushes when it spreads (rumor) or knows
 * (anti-entropy); it pulls when the partner does. */
static void call(struct rounds *s, uint32_t a, int rumor)
{
	uint32_t b = gossip_sim_other(s->r, s->n, a);
	int mode = rumor ? s->c->mode : GOSSIP_PUSH_PULL;
	if (s->c->model == SIM_AE)
		mode = s->c->mode;
	s->drawn++;
	s->contacts++;
	/* What each knew (anti-entropy) or spread (rumor) as the contact began. */
	int a_has = rumor ? spreading(s, a) : knew(s, a);
	int b_has = (mode & GOSSIP_PULL) && (rumor ? spreading(s, b) : knew(s, b));
	if ((mode & GOSSIP_PUSH) && a_has)
		transfer(s, a, b, rumor);
	if (b_has)
		transfer(s, b, a, rumor);
}

/* A round of calls: by the spreaders (push), or by every member (pull, push-pull). */
static void round_calls(struct rounds *s, int rumor, uint32_t *order)
{
	int mode = rumor ? s->c->mode : (s->c->model == SIM_AE ? s->c->mode : GOSSIP_PUSH_PULL);
	if (rumor && mode == GOSSIP_PUSH) {
		uint32_t m = s->nact;
		if (s->c->async)
			shuffle(s, s->act, m);
		for (uint32_t i = 0; i < m; i++)
			if (s->flag[s->act[i]] & ACTIVE)
				call(s, s->act[i], 1);
		return;
	}
	if (!rumor && mode == GOSSIP_PUSH && !s->c->async) {
		/* Only the informed push: the others' calls change nothing. */
		for (uint32_t a = 0; a < s->n; a++)
			if (s->when[a] < s->round)
				call(s, a, 0);
		s->contacts += s->n - (s->informed - s->nfresh);
		return;
	}
	if (s->c->async) {
		shuffle(s, order, s->n);
		for (uint32_t i = 0; i < s->n; i++)
			call(s, order[i], rumor);
	} else {
		for (uint32_t a = 0; a < s->n; a++)
			call(s, a, rumor);
	}
}

/* Infect-and-die: each member informed last round sends to k distinct others, once. */
static void round_iad(struct rounds *s, uint32_t *pick)
{
	uint32_t m = s->nact;
	for (uint32_t i = 0; i < m; i++) {
		uint32_t x = s->act[i], got = gossip_sim_pick(s->r, s->n, x, s->c->k, pick);
		s->drawn += got;
		s->contacts += got;
		for (uint32_t j = 0; j < got; j++) {
			s->msgs++;
			if (s->c->loss > 0 && gossip_rng_chance(s->r, s->c->loss))
				continue;
			if (s->when[pick[j]] == NEVER)
				inform(s, pick[j]);
		}
	}
}

static int push_share(struct rounds *s)
{
	if (s->nshare == s->capshare) {
		size_t cap = s->capshare ? 2 * s->capshare : 64;
		double *v = realloc(s->share, cap * sizeof *v);
		if (!v)
			return -1;
		s->share = v;
		s->capshare = cap;
	}
	s->share[s->nshare++] = (double)s->informed / s->n;
	return 0;
}

int sim_rounds(const struct sim_cfg *c, struct gossip_rng *r, struct sim_result *out)
{
	struct rounds s = {.c = c, .r = r, .n = c->n};
	uint32_t *order = NULL, *pick = NULL;
	uint32_t limit = c->limit > 0 && c->limit < NEVER - 1 ? (uint32_t)c->limit : NEVER - 1;
	int rc = -1;
	s.flag = calloc(c->n, 1);
	s.cnt = calloc(c->n, 1);
	s.when = malloc(c->n * sizeof *s.when);
	s.act = malloc(c->n * sizeof *s.act);
	s.fresh = malloc(c->n * sizeof *s.fresh);
	pick = malloc((c->k + 1) * sizeof *pick);
	out->peak_bytes = c->n * (2 + sizeof *s.when + sizeof *s.act + sizeof *s.fresh);
	if (c->async) {
		order = malloc(c->n * sizeof *order);
		out->peak_bytes += c->n * sizeof *order;
		for (uint32_t i = 0; order && i < c->n; i++)
			order[i] = i;
	}
	if (!s.flag || !s.cnt || !s.when || !s.act || !s.fresh || !pick || (c->async && !order)) {
		gossip_seterr("out of memory for %lu members", (unsigned long)c->n);
		goto done;
	}
	for (uint32_t i = 0; i < c->n; i++)
		s.when[i] = NEVER;
	inform(&s, 0);
	s.flag[0] = ACTIVE;
	s.act[s.nact++] = 0;
	s.nfresh = 0;
	if (push_share(&s) < 0)
		goto oom;
	for (s.round = 1; s.round <= limit; s.round++) {
		if (c->model == SIM_AE) {
			if (s.informed == s.n)
				break;
			round_calls(&s, 0, order);
		} else if (c->model == SIM_IAD) {
			if (!s.nact)
				break;
			round_iad(&s, pick);
		} else {
			int ae = c->backup && s.round % c->backup == 0 && s.informed < s.n;
			if (!s.nact && (!c->backup || s.informed == s.n))
				break;
			if (s.nact)
				round_calls(&s, 1, order);
			if (ae)
				round_calls(&s, 0, order);
		}
		/* The spreaders of the next round: infect-and-die's newly informed only; the
		 * rumor's still infective ones and the newly informed. */
		if (c->model == SIM_IAD) {
			memcpy(s.act, s.fresh, s.nfresh * sizeof *s.act);
			s.nact = s.nfresh;
		} else if (c->model == SIM_RUMOR) {
			uint32_t m = 0;
			for (uint32_t i = 0; i < s.nact; i++)
				if (s.flag[s.act[i]] & ACTIVE)
					s.act[m++] = s.act[i];
			for (uint32_t i = 0; i < s.nfresh; i++)
				if (s.flag[s.fresh[i]] & ACTIVE)
					s.act[m++] = s.fresh[i];
			s.nact = m;
		}
		s.nfresh = 0;
		if (push_share(&s) < 0)
			goto oom;
	}
	/* The last round that informed anyone ends the run's curve. */
	while (s.nshare > 1 && s.share[s.nshare - 1] == s.share[s.nshare - 2])
		s.nshare--;
	double sum = 0;
	uint32_t last = 0;
	for (uint32_t i = 0; i < c->n; i++)
		if (s.when[i] != NEVER) {
			sum += s.when[i];
			last = s.when[i] > last ? s.when[i] : last;
		}
	out->timed = 0;
	out->t_all = s.informed == s.n ? (double)last : -1.0;
	out->t_last = last;
	out->t_ave = sum / s.informed;
	out->residue = (double)(s.n - s.informed) / s.n;
	out->msgs = (double)s.msgs / s.n;
	/* Anti-entropy: every member calls every round; push's idle calls are counted, not drawn. */
	out->contacts = (double)s.contacts / s.n;
	out->drawn = s.drawn;
	out->share = s.share;
	out->nshare = s.nshare;
	s.share = NULL;
	rc = 0;
	goto done;
oom:
	gossip_seterr("out of memory");
done:
	free(s.flag);
	free(s.cnt);
	free(s.when);
	free(s.act);
	free(s.fresh);
	free(s.share);
	free(order);
	free(pick);
	return rc;
}
