/* aggsim: push-sum simulated with the library's own step (gossip_agg_split, _take,
 * _estimate) in a loop: N members, synchronous rounds, each member's share to a member
 * other than itself, uniformly (as observe picks an alive member), a share lost with
 * probability LOSS. Prints, for each of REPS runs, "rounds_all rounds_asker shares bytes estimate":
 * the rounds until every member's estimate (and until the asker's) is within ERROR of the
 * truth, the shares sent until then, and their bytes (each share's signed message, as
 * observe sends it unsealed), and the asker's estimate at the end (1000 rounds at most).
 * Used by bench/aggregate. */
#include "gossip.h"

#include <math.h>
#include <sodium.h>
#include <stdlib.h>

int main(int argc, char **argv)
{
	if (argc != 6) {
		fprintf(stderr, "usage: aggsim avg|sum|count|min|max members error reps loss\n");
		return 2;
	}
	gossip_init(argv[0]);
	int fn = gossip_agg_fn_parse(argv[1]);
	uint32_t n = (uint32_t)strtoul(argv[2], NULL, 10);
	double err = strtod(argv[3], NULL), loss = strtod(argv[5], NULL);
	int reps = atoi(argv[4]);
	if (fn < 0 || n < 2 || !(err > 0) || reps < 1)
		return 2;
	/* The bytes of one share message: signed by a member, value [id, round, s, w, to]. */
	struct gossip_identity id = {0};
	struct gossip_share sh = {.round = 12, .mass = {1.5, 0.25}};
	struct gossip_buf b = {0};
	id.sk = sodium_malloc(64);
	crypto_sign_keypair(id.pk, id.sk);
	if (gossip_share_sign(&b, &sh, &id) < 0)
		return 2;
	size_t share_bytes = b.len;
	struct gossip_agg_mass *m = calloc(n, sizeof *m), *in = calloc(n, sizeof *in);
	/* The truth: inputs 1..n. */
	double truth = fn == GOSSIP_AGG_AVG ? (n + 1) / 2.0 : fn == GOSSIP_AGG_SUM ? n * (n + 1) / 2.0
	             : fn == GOSSIP_AGG_COUNT ? n : fn == GOSSIP_AGG_MIN ? 1 : n;
	for (int rep = 0; rep < reps; rep++) {
		struct gossip_rng r;
		gossip_rng_seed(&r, 1, (uint64_t)rep);
		for (uint32_t i = 0; i < n; i++)
			m[i] = gossip_agg_initial(fn, i == 0, 1, (double)(i + 1));
		uint64_t shares = 0;
		int all = -1, asker = -1;
		for (int k = 1; k <= 1000 && all < 0; k++) {
			for (uint32_t i = 0; i < n; i++)
				in[i] = (struct gossip_agg_mass){0, 0};
			for (uint32_t i = 0; i < n; i++) {
				struct gossip_agg_mass s;
				if (m[i].s == 0 && m[i].w == 0)
					continue;
				s = gossip_agg_split(fn, &m[i]);
				shares++;
				if (!gossip_rng_chance(&r, loss))
					gossip_agg_take(fn, &in[gossip_sim_other(&r, n, i)], s);
			}
			int within = 1;
			for (uint32_t i = 0; i < n; i++) {
				double e;
				gossip_agg_take(fn, &m[i], in[i]);
				int good = gossip_agg_estimate(fn, &m[i], &e) && fabs(e - truth) <= err * fabs(truth);
				within &= good;
				if (i == 0 && good && asker < 0)
					asker = k;
				if (i == 0 && !good)
					asker = -1;
			}
			if (within)
				all = k;
		}
		double e = NAN;
		gossip_agg_estimate(fn, &m[0], &e);
		printf("%d %d %llu %llu %.6g\n", all, asker, (unsigned long long)shares,
		       (unsigned long long)(shares * share_bytes), e);
	}
	free(m);
	free(in);
	gossip_buf_free(&b);
	return 0;
}
