/* sim.h: gossip-sim's models, private to the program: one configuration in, one run's
 * figures out. Round models are in sim-rounds.c, timed ones (the node, SWIM) in
 * sim-events.c. */
#ifndef SIM_H
#define SIM_H

#include "gossip.h"

enum sim_model { SIM_AE, SIM_RUMOR, SIM_IAD, SIM_NODE, SIM_SWIM };

struct sim_cfg {
	enum sim_model model;
	uint32_t n;  /* members */
	uint32_t k;  /* rumor: loss of interest; infect-and-die, node: fanout */
	int mode;  /* GOSSIP_PUSH, GOSSIP_PULL, GOSSIP_PUSH_PULL */
	int blind, coin, async;  /* rumor: loss of interest rule; contacts one by one */
	uint32_t backup;  /* rumor: anti-entropy every this many rounds; 0: none */
	double loss;  /* chance that a message is lost */
	/* Times are in ms, the timed models' unit (the options give seconds). */
	double latency_ms, jitter_ms;  /* timed: per message, (latency - jitter) + Exp(jitter) */
	double sync_ms;  /* node: how long an anti-entropy exchange takes */
	unsigned cpus;  /* node: processors the members share (0: each has its own, at once) */
	double cpu_ms;  /* node: processor time to take in and pass on one new message */
	double every_s, probe_s, probe_jitter, mult;  /* gossip-node's -s, -i, -J, -S */
	double limit;  /* rounds (round models) or seconds (timed) */
	int own_pick;  /* node: the simulator's choice even where the library's would do */
	int eager;  /* node: --second-tree always (the second tree sends every update); else, as
	             * gossip-node -B doubt with nobody suspect, the first tree alone */
	int second_given;  /* --second-tree was given */
};

/* The informed share of a timed run: QN+1 times, the i-th when ceil(i*n/QN) members were
 * informed (INFINITY: never). */
enum { SIM_QN = 1000 };

struct sim_result {
	int timed;  /* times in ms, else in rounds */
	double t_all;  /* until all were informed; < 0: never */
	double t_last;  /* until the last that was informed */
	double t_ave;  /* mean time at which a member was informed */
	double residue;  /* share never informed */
	double msgs;  /* messages per member: update transfers (timed: datagrams sent) */
	double contacts;  /* contacts (calls) per member */
	uint64_t drawn;  /* member contacts the simulator drew (for speed) */
	uint32_t repaired;  /* node: members that anti-entropy informed (0: rumor reached all) */
	double *share;  /* round models: informed share after each round, nshare of them */
	size_t nshare;
	double q[SIM_QN + 1];  /* timed: see SIM_QN */
	size_t nq;
	/* swim: from the crash, ms; counts over the whole run */
	double first_suspect, first_dead;
	double false_suspect, false_dead, duration_s;
	size_t peak_bytes;  /* the model's own allocations */
};

int sim_rounds(const struct sim_cfg *c, struct gossip_rng *r, struct sim_result *out);
int sim_node(const struct sim_cfg *c, struct gossip_rng *r, struct sim_result *out);
int sim_swim(const struct sim_cfg *c, struct gossip_rng *r, struct sim_result *out);
/* Fill out->q from the n members' informed times (sorted here; INFINITY: never). */
void sim_quantiles(struct sim_result *out, double *when, uint32_t n);

#endif
