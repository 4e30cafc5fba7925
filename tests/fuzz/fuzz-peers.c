/* fuzz-peers: the peer table file (DIR/peers, written by gossip-peers observe and read
 * back by every gossip-peers verb and gossip-send -M) loaded by gossip_peers_load from a
 * scratch directory; then what list, pick and leader do with it (phi with the table's
 * interval, the leader, a pick with the fixed random stream), and what observe does
 * (save it with its own timing), and the next verb (load the saved table). */
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
	fuzz_file("peers", data, size, 0644);
	if (gossip_peers_load(&t, dir) < 0)
		return 0;
	/* list, pick, leader: phi as the observer computed it, with the table's interval
	 * (gossip-peers.c load_table). */
	struct gossip_peers_cfg cfg = gossip_peers_defaults;
	if (t.interval_ms > 0) {
		cfg.interval_ms = t.interval_ms;
		cfg.min_std_ms = t.min_std_ms;
		cfg.pause_ms = t.pause_ms;
	}
	for (size_t i = 0; i < t.n; i++) {
		struct gossip_peer *p = &t.v[i];
		if (p->nint < 0 || p->nint > GOSSIP_PHI_WINDOW || p->state < GOSSIP_P_ALIVE ||
		    p->state > GOSSIP_P_LEFT)
			abort();
		(void)gossip_phi(p, FUZZ_NOW_MS, &cfg);
		(void)gossip_pstate_name(p->state);
		/* What the loader takes, the saver can write back (crashes/peers-save-float-cast). */
		if (!(p->score >= 0 && p->score <= 100))
			abort();
		for (int k = 0; k < p->nint; k++)
			if (!(p->intervals[k] >= 0 && p->intervals[k] < 18446744073709551616.0))
				abort();
	}
	(void)gossip_peers_leader(&t);
	struct gossip_peer *out[3];
	(void)gossip_peers_pick(&t, &cfg, 3, out);

	/* observe: the table is loaded, its timing replaced by the observer's, saved; then
	 * read again by the next verb. */
	t.interval_ms = gossip_peers_defaults.interval_ms;
	t.min_std_ms = gossip_peers_defaults.min_std_ms;
	t.pause_ms = gossip_peers_defaults.pause_ms;
	(void)gossip_suspicion_ms(&gossip_peers_defaults, t.n);
	if (gossip_peers_save(&t, dir) == 0) {
		struct gossip_peers again;
		if (gossip_peers_load(&again, dir) == 0)
			gossip_peers_free(&again);
	}
	gossip_peers_free(&t);
	return 0;
}
