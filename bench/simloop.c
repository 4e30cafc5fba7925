/* simloop: the floor under gossip-sim's speed: a plain loop that draws what the simulator
 * draws for each contact (a member other than the caller, uniformly, by gossip_sim_other)
 * and does nothing else. Prints "draws PER_SECOND". Used by bench/sim. */
#include "gossip.h"

#include <stdlib.h>
#include <time.h>

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: simloop count members\n");
		return 2;
	}
	uint64_t count = strtoull(argv[1], NULL, 10);
	uint32_t n = (uint32_t)strtoul(argv[2], NULL, 10), a = 0, sink = 0;
	struct gossip_rng r;
	struct timespec t0, t1;
	if (n < 2)
		return 2;
	gossip_rng_seed(&r, 1, 0);
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t0);
	for (uint64_t i = 0; i < count; i++) {
		sink += gossip_sim_other(&r, n, a);
		if (++a == n)
			a = 0;
	}
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t1);
	double s = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	printf("draws %.0f\n", (double)count / s);
	return sink == 0xdeadbeef;  /* keep the draws */
}
