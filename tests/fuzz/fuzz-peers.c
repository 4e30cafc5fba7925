/* fuzz-peers: the peer table file (DIR/peers, written by gossip-peers observe and read
 * back by every gossip-peers verb and gossip-send -M) loaded by gossip_peers_load from a
 * scratch directory; then what observe does with a loaded table: judge each peer (phi),
 * elect the leader, pick peers (with the fixed random stream) and save it again, and
 * what list does: load the saved table again. */
#include "fuzz.h"

static const char *dir;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc, (void)argv;
	fuzz_sodium();
	dir = fuzz_dir("peers");
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct gossip_peers t;
	fuzz_reset();
	/* Known: an empty peer table is undefined behaviour in gossip_peers_load (NULL + 0
	 * in gossip_cur_next; tests/fuzz/crashes/peers-empty-null-offset). Skipped so that
	 * the rest can be fuzzed; remove this when it is fixed. */
	if (size == 0 && fuzz_skip_known())
		return 0;
	fuzz_file("peers", data, size, 0644);
	if (gossip_peers_load(&t, dir) < 0)
		return 0;
	struct gossip_peers_cfg cfg = gossip_peers_defaults;
	if (t.interval_ms > 0)
		cfg.interval_ms = t.interval_ms;
	cfg.min_std_ms = t.min_std_ms;
	cfg.pause_ms = t.pause_ms;
	for (size_t i = 0; i < t.n; i++) {
		struct gossip_peer *p = &t.v[i];
		if (p->nint < 0 || p->nint > GOSSIP_PHI_WINDOW || p->state < GOSSIP_P_ALIVE ||
		    p->state > GOSSIP_P_LEFT)
			abort();
		(void)gossip_phi(p, FUZZ_NOW_MS, &cfg);
		(void)gossip_pstate_name(p->state);
	}
	(void)gossip_suspicion_ms(&cfg, t.n);
	(void)gossip_peers_leader(&t);
	struct gossip_peer *out[3];
	(void)gossip_peers_pick(&t, &cfg, 3, out);
	if (gossip_peers_save(&t, dir) == 0) {
		struct gossip_peers again;
		if (gossip_peers_load(&again, dir) == 0)
			gossip_peers_free(&again);
	}
	gossip_peers_free(&t);
	return 0;
}
