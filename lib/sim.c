/* sim.c: the simulator's draws: a seeded generator, member choices as gossip_peers_pick
 * makes them, and libsodium's randombytes made to repeat under a seed. */
#include "gossip.h"

#include <math.h>
#include <sodium.h>
#include <string.h>

static uint64_t splitmix64(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

void gossip_rng_seed(struct gossip_rng *r, uint64_t seed, uint64_t stream)
{
	/* Streams of one seed start far apart in splitmix64's sequence, so that runs do not
	 * share draws. */
	uint64_t x = seed ^ splitmix64(&(uint64_t){stream * 0xd1342543de82ef95ULL + 1});
	for (int i = 0; i < 4; i++)
		r->s[i] = splitmix64(&x);
	if (!(r->s[0] | r->s[1] | r->s[2] | r->s[3]))
		r->s[0] = 1;  /* the one state xoshiro cannot leave */
}

double gossip_rng_exp(struct gossip_rng *r, double mean)
{
	return -mean * log1p(-gossip_rng_unit(r));
}

uint32_t gossip_sim_pick(struct gossip_rng *r, uint32_t n, uint32_t self, uint32_t k,
                         uint32_t *out)
{
	uint32_t m = n > 0 ? n - 1 : 0, got = 0;
	if (k > m)
		k = m;
	/* Floyd: every k-subset of the m others equally likely, in k draws. Small k (a
	 * fanout) makes the linear look-up cheaper than any set. */
	for (uint32_t j = m - k; j < m; j++) {
		uint32_t t = gossip_rng_below(r, j + 1), pick = t;
		for (uint32_t i = 0; i < got; i++)
			if (out[i] == t) {
				pick = j;
				break;
			}
		out[got++] = pick;
	}
	for (uint32_t i = 0; i < got; i++)
		out[i] += out[i] >= self;
	return got;
}

/* ---- randombytes from a seeded generator ---- */

static struct gossip_rng *lib_rng;

static const char *sim_name(void)
{
	return "gossip-sim";
}

static uint32_t sim_random(void)
{
	return (uint32_t)(gossip_rng_next(lib_rng) >> 32);
}

static uint32_t sim_uniform(const uint32_t upper)
{
	return upper < 2 ? 0 : gossip_rng_below(lib_rng, upper);
}

static void sim_buf(void *const buf, const size_t size)
{
	uint8_t *p = buf;
	for (size_t i = 0; i < size; i += 8) {
		uint64_t v = gossip_rng_next(lib_rng);
		memcpy(p + i, &v, size - i < 8 ? size - i : 8);
	}
}

static randombytes_implementation sim_impl = {
	.implementation_name = sim_name, .random = sim_random, .uniform = sim_uniform, .buf = sim_buf,
};

int gossip_sim_randombytes(struct gossip_rng *r)
{
	lib_rng = r;
	return randombytes_set_implementation(&sim_impl);
}
