/* backlog: what gossip-order's buffers cost per event as the events held at once grow:
 * CPU per event at a backlog of N against N = 1000, in the same run. Two cases, in each
 * delivery mode, four origins whose clocks rise with their seq:
 *   catch-up  N events arrive in a shuffled order (a filter started on a full store, or
 *             behind a partition), with a delivery pass every 64 arrivals;
 *   gap       one origin's first event is missing while N of the others' and its own
 *             arrive (a member that skips a number, or a lost message), a delivery pass
 *             every 64 as a filter makes at each batch; then the gap fills and all go.
 * Prints, per case and mode, ns per event at each N and the ratio to the first N, the
 * median of REPS runs with its range, and PASS when the ratio at the last N is at most 4:
 * the cost per event stays flat but for memory (a table of 100,000 outgrows the caches
 * that hold one of 1,000). A scan of what is held, per event, makes the ratio grow with N:
 * it was 40 to 50 at N = 30,000 before the buffers had an index. Run by `make bench`;
 * usage: backlog [REPS [N...]], default 5 runs at 1000, 10000 and 100000. */
#include "gossip.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { ORIGINS = 4, BATCH = 64 };

static double cpu(void)
{
	struct timespec t;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void put(struct gossip_orderer *o, int k, uint64_t seq)
{
	struct gossip_msg m = {0};
	struct gossip_oev e = {.seq = seq, .lamport = ORIGINS * seq + (uint64_t)k, .payload = (const uint8_t *)"x",
	                       .paylen = 1};
	memset(m.origin, k + 1, 32);
	m.type = GOSSIP_T_EVENT;
	m.key = (const uint8_t *)"ev";
	m.keylen = 2;
	m.time = 1000;
	if (gossip_orderer_add(o, &m, &e, 2000) < 0) {
		fprintf(stderr, "backlog: %s\n", gossip_error());
		exit(2);
	}
}

static size_t drain(struct gossip_orderer *o)
{
	struct gossip_omsg m;
	uint64_t skipped;
	size_t n = 0;
	while (gossip_orderer_next(o, 2000, &m, &skipped) == 1) {
		gossip_omsg_free(&m);
		n++;
	}
	return n;
}

/* ns per event of one run; exits when not every event (but total order's last few) went. */
static double run(int mode, int gap, uint32_t n, uint64_t seed)
{
	struct gossip_orderer o;
	struct gossip_rng rng;
	uint32_t *v = malloc(n * sizeof *v), i;
	if (!v)
		exit(2);
	gossip_orderer_init(&o, mode);
	if (mode == GOSSIP_ORDER_TOTAL) {
		uint8_t members[ORIGINS][32];
		for (int k = 0; k < ORIGINS; k++)
			memset(members[k], k + 1, 32);
		gossip_orderer_members(&o, (const uint8_t(*)[32])members, ORIGINS);
	}
	/* Event i is origin i % ORIGINS's seq i / ORIGINS + 1; the gap is origin 0's seq 1. */
	for (i = 0; i < n; i++)
		v[i] = i;
	gossip_rng_seed(&rng, seed, 3);
	if (!gap)
		for (i = n - 1; i > 0; i--) {
			uint32_t j = gossip_rng_below(&rng, i + 1), t = v[i];
			v[i] = v[j], v[j] = t;
		}
	size_t got = 0;
	double t0 = cpu();
	for (i = gap ? 1 : 0; i < n; i++) {
		put(&o, (int)(v[i] % ORIGINS), v[i] / ORIGINS + 1);
		if (i % BATCH == 0)
			got += drain(&o);
	}
	if (gap)
		put(&o, 0, 1);
	got += drain(&o);
	double t = cpu() - t0;
	if (got + (mode == GOSSIP_ORDER_TOTAL ? ORIGINS : 0) < n) {
		fprintf(stderr, "backlog: %s: %zu of %u delivered\n", gossip_order_mode_name(mode), got, n);
		exit(1);
	}
	gossip_orderer_free(&o);
	free(v);
	return t * 1e9 / n;
}

static int by_value(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
	gossip_init("backlog");
	int reps = argc > 1 ? atoi(argv[1]) : 5;
	uint32_t sizes[16] = {1000, 10000, 100000};
	int nsizes = 3, fail = 0;
	if (argc > 2) {
		nsizes = 0;
		for (int a = 2; a < argc && nsizes < 16; a++)
			sizes[nsizes++] = (uint32_t)strtoul(argv[a], NULL, 10);
	}
	if (reps < 1 || nsizes < 2 || sizes[0] == 0) {
		fprintf(stderr, "usage: backlog [REPS [N...]] (the first N is the baseline)\n");
		return 2;
	}
	printf("bench/backlog: gossip-order's buffers, CPU ns per event at N events held (4 origins),\n"
	       "median of %d runs [range]; ratio to N = %u in the same run; target: at most 4\n",
	       reps, sizes[0]);
	for (int gap = 0; gap < 2; gap++)
		for (int mode = GOSSIP_ORDER_FIFO; mode <= GOSSIP_ORDER_TOTAL; mode++) {
			double base = 0, ratio = 0;
			printf("  %-8s %-6s", gap ? "gap" : "catch-up", gossip_order_mode_name(mode));
			for (int s = 0; s < nsizes; s++) {
				double t[64];
				int r, nr = reps < 64 ? reps : 64;
				for (r = 0; r < nr; r++)
					t[r] = run(mode, gap, sizes[s], (uint64_t)r + 1);
				qsort(t, (size_t)nr, sizeof *t, by_value);
				double med = t[nr / 2];
				if (s == 0)
					base = med;
				ratio = med / base;
				printf("  N=%u %.0f [%.0f-%.0f]", sizes[s], med, t[0], t[nr - 1]);
			}
			printf("  ratio %.2f %s\n", ratio, ratio <= 4 ? "PASS" : "FAIL");
			fail |= ratio > 4;
		}
	return fail;
}
