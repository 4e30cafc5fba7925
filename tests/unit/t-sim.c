/* t-sim: the simulator's draws: a seed repeats, streams differ, uniform choices are
 * uniform, and the simulator's choice of members has the distribution of the library's
 * own gossip_peers_pick (chi-square tests at the 0.1% level; every draw is seeded, so a
 * result repeats and the test cannot flicker). */
#include "gossip.h"
#include "tap.h"

#include <math.h>
#include <sodium.h>
#include <stdlib.h>

/* The 99.9% point of chi-square with df degrees of freedom (Wilson and Hilferty). */
static double chi2_crit(int df)
{
	double z = 3.0902, a = 2.0 / (9.0 * df);
	double c = 1 - a + z * sqrt(a);
	return df * c * c * c;
}

/* Chi-square of counts against equal expectation. */
static double chi2_uniform(const double *count, int cells, double total)
{
	double e = total / cells, x = 0;
	for (int i = 0; i < cells; i++)
		x += (count[i] - e) * (count[i] - e) / e;
	return x;
}

/* Chi-square of two samples' counts over the same cells (homogeneity), df = cells - 1. */
static double chi2_two(const double *a, const double *b, int cells)
{
	double na = 0, nb = 0, x = 0;
	for (int i = 0; i < cells; i++) {
		na += a[i];
		nb += b[i];
	}
	for (int i = 0; i < cells; i++) {
		double t = a[i] + b[i];
		if (t == 0)
			continue;
		double ea = t * na / (na + nb), eb = t * nb / (na + nb);
		x += (a[i] - ea) * (a[i] - ea) / ea + (b[i] - eb) * (b[i] - eb) / eb;
	}
	return x;
}

enum { N = 9, SELF = 4, DRAWS = 200000 };

/* Count, for picks of k among N members (self excluded), how often each subset of members
 * is chosen (cell: the subset as a bit mask): by the library's gossip_peers_pick (lib) or
 * the simulator's gossip_sim_pick. */
static void count_picks(int lib, uint32_t k, struct gossip_rng *r, double *subset)
{
	struct gossip_peers t = {0};
	struct gossip_peers_cfg cfg = gossip_peers_defaults;
	struct gossip_peer *out[N];
	uint32_t got[N];
	t.v = calloc(N, sizeof *t.v);
	t.n = N;
	for (int i = 0; i < N; i++) {
		t.v[i].state = GOSSIP_P_ALIVE;
		t.v[i].score = 100;
	}
	t.v[SELF].self = 1;
	for (int d = 0; d < DRAWS; d++) {
		uint32_t n, mask = 0;
		if (lib) {
			n = (uint32_t)gossip_peers_pick(&t, &cfg, k, out);
			for (uint32_t i = 0; i < n; i++)
				got[i] = (uint32_t)(out[i] - t.v);
		} else
			n = gossip_sim_pick(r, N, SELF, k, got);
		for (uint32_t i = 0; i < n; i++)
			mask |= 1u << got[i];
		subset[mask]++;
	}
	free(t.v);
}

int main(void)
{
	static struct gossip_rng lib;
	struct gossip_rng a, b;
	/* Before sodium_init: the library's draws come from lib, seeded below. */
	ok(gossip_sim_randombytes(&lib) == 0, "randombytes takes the seeded generator");
	if (sodium_init() < 0)
		return 1;

	gossip_rng_seed(&a, 42, 0);
	gossip_rng_seed(&b, 42, 0);
	int same = 1;
	for (int i = 0; i < 1000; i++)
		same &= gossip_rng_next(&a) == gossip_rng_next(&b);
	ok(same, "a seed repeats its draws");
	gossip_rng_seed(&b, 42, 1);
	ok(gossip_rng_next(&a) != gossip_rng_next(&b), "another stream of the seed draws otherwise");
	gossip_rng_seed(&b, 43, 0);
	gossip_rng_seed(&a, 42, 0);
	ok(gossip_rng_next(&a) != gossip_rng_next(&b), "another seed draws otherwise");

	/* Uniform below 7 and below 2^31 + 1 (where a biased reduction would show). */
	double c7[7] = {0}, ch[2] = {0};
	for (int i = 0; i < 700000; i++)
		c7[gossip_rng_below(&a, 7)]++;
	ok(chi2_uniform(c7, 7, 700000) < chi2_crit(6), "below(7) is uniform (chi2 %.1f)", chi2_uniform(c7, 7, 700000));
	for (int i = 0; i < 400000; i++)
		ch[gossip_rng_below(&a, 0x80000001u) < 0x40000000u]++;
	ok(fabs(ch[1] / 400000 - 0.4999999995) < 0.005, "below(2^31+1) has no bias (%.4f)", ch[1] / 400000);
	double sum = 0;
	for (int i = 0; i < 100000; i++)
		sum += gossip_rng_exp(&a, 3);
	ok(fabs(sum / 100000 - 3) < 0.06, "exponential draws have their mean (%.3f)", sum / 100000);

	/* The simulator's one other member never is self and is uniform. */
	double o[N] = {0};
	for (int i = 0; i < DRAWS; i++)
		o[gossip_sim_other(&a, N, SELF)]++;
	ok(o[SELF] == 0, "other() never returns self");
	double oc[N - 1];
	for (int i = 0, c = 0; i < N; i++)
		if (i != SELF)
			oc[c++] = o[i];
	ok(chi2_uniform(oc, N - 1, DRAWS) < chi2_crit(N - 2), "other() is uniform over the others (chi2 %.1f)",
	   chi2_uniform(oc, N - 1, DRAWS));

	/* The equivalence the simulator relies on at scale: its pick and the library's pick
	 * choose members, and pairs of members, with the same frequencies. */
	for (uint32_t k = 1; k <= 5; k += 2) {
		static double cl[1 << N], cs[1 << N];
		int used = 0;
		memset(cl, 0, sizeof cl);
		memset(cs, 0, sizeof cs);
		gossip_rng_seed(&lib, 7, k);
		count_picks(1, k, NULL, cl);
		count_picks(0, k, &a, cs);
		int self_picked = 0, wrong_size = 0;
		for (int m = 0; m < 1 << N; m++) {
			if (!cl[m] && !cs[m])
				continue;
			used++;
			self_picked |= m & (1 << SELF);
			wrong_size |= __builtin_popcount((unsigned)m) != (int)k;
		}
		ok(!self_picked && !wrong_size, "k=%u: both pick k members, never self", k);
		double x = chi2_two(cl, cs, 1 << N);
		ok(x < chi2_crit(used - 1), "k=%u: each of the %d subsets as often as the library picks it (chi2 %.1f < %.1f)",
		   k, used, x, chi2_crit(used - 1));
	}

	/* The library's own pick repeats under a seed. */
	struct gossip_peers t = {0};
	struct gossip_peers_cfg cfg = gossip_peers_defaults;
	struct gossip_peer *p1[3], *p2[3];
	t.v = calloc(N, sizeof *t.v);
	t.n = N;
	for (int i = 0; i < N; i++) {
		t.v[i].state = GOSSIP_P_ALIVE;
		t.v[i].score = 100;
	}
	gossip_rng_seed(&lib, 9, 0);
	gossip_peers_pick(&t, &cfg, 3, p1);
	gossip_rng_seed(&lib, 9, 0);
	gossip_peers_pick(&t, &cfg, 3, p2);
	ok(p1[0] == p2[0] && p1[1] == p2[1] && p1[2] == p2[2], "gossip_peers_pick repeats under a seed");
	free(t.v);
	return tap_done();
}
