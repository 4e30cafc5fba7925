/* observe.c: the peer table kept from the message stream and the clock: member records,
 * heartbeats, probes and claims in; failure detection by phi (or by the prober), reaping,
 * partitions; member records that reached the store some other way; reputation; the
 * responses to queries that it relays to their askers; and this node's part in
 * aggregation runs (aggregate.c). */
#include "gossip.h"

#include <errno.h>
#include <sodium.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Responses relayed lately, by query id, responder and kind: each is relayed once. */
enum { RELAYED = 512, RELAY_RATE = 200 };
/* Syncs handed over and served at once, at most (gossip-listen allows 16). */
enum { SERVES = 32 };
struct relayed {
	uint8_t id[GOSSIP_QUERY_ID_LEN], who[32];
	uint8_t kind;
};

struct gossip_observer {
	struct gossip_peers *table;
	struct gossip_peers_cfg cfg;
	char dir[4096];
	struct gossip_swim *swim;  /* NULL: phi accrual on heartbeats */
	struct gossip_log_tail rejects;  /* DIR/rejects, followed across its renaming */
	struct gossip_buf rejects_part;  /* the start of a line whose end is not written yet */
	struct gossip_store *store;  /* opened at the first look */
	struct gossip_trust trust;  /* whose member records the store shows */
	struct gossip_store_cursor store_seen;  /* how far the store has been looked at */
	uint64_t store_ino, store_size, store_ctime;  /* DIR/store as it was at the last look */
	uint64_t sum_at;  /* when the summary was last read */
	uint64_t last_lookup;  /* for a signer not in the table */
	pid_t fetch;  /* a pull sync under way for a signer the store lacks (0: none) */
	uint64_t last_fetch;
	pid_t repair;  /* a push-pull sync with a member whose summary differs (0: none) */
	uint8_t repair_pk[32];  /* with whom */
	uint64_t repairs;
	pid_t sync;  /* an anti-entropy sync under way (0: none) */
	uint64_t sync_ms, sync_next;  /* one every sync_ms (0: none), the next due at sync_next */
	uint64_t syncs_done, syncs_failed;
	gossip_observe_news_fn *brought;  /* in the child: what its anti-entropy sync stored */
	void *brought_ctx;
	int hand;  /* syncs handed over by gossip-listen -H (-1: none) */
	int dw, ep;  /* the state directory's watch (-1: none); it and hand, as one fd (-1) */
	char hand_path[108];
	uint64_t hand_ino;  /* the socket file bound there */
	pid_t serves[SERVES];  /* serving them (0: a free slot) */
	uint64_t serves_done, serves_failed;
	const char *announce_path;  /* this start's announcement, until it is there and done */
	const char *leave_path;  /* once this file is there, leave (NULL: none, or left) */
	uint64_t last_look, look_at, look_asked;  /* the store's looks (monotonic ms; 0: none) */
	char **seeds;  /* a join through these under way (NULL: none, or joined) */
	int nseeds;
	pid_t join;  /* its current attempt (0: none) */
	int join_err;  /* the read end of that attempt's stderr */
	uint64_t join_next;
	struct gossip_buf join_now, join_said;  /* what this attempt says; the last failed one said */
	size_t join_more;  /* bytes of this attempt's past JOIN_SAID */
	struct gossip_buf mine;  /* this start's announcement, for the members a join finds */
	uint64_t started;  /* a leave of this node's signed before this is its last stop's */
	gossip_observe_news_fn *news;  /* where the store's new member records go */
	void *news_ctx;
	struct relayed relayed[RELAYED];  /* a ring */
	size_t relayed_next;
	struct gossip_rate relay_rate;
	struct gossip_out relay_out;  /* to the askers, sealed with relay_keys */
	struct gossip_keyring relay_keys;
	int relay_ready;  /* relay_out and relay_keys are loaded (at the first relay) */
	uint64_t relays, relays_refused;
	struct gossip_aggregator *agg;  /* this node's part in aggregation runs */
};

struct gossip_observer *gossip_observer_new(struct gossip_peers *t, const struct gossip_peers_cfg *cfg,
                                            const char *dir, struct gossip_swim *swim, uint64_t now)
{
	struct gossip_observer *o = calloc(1, sizeof *o);
	if (!o)
		return NULL;
	o->table = t;
	o->cfg = *cfg;
	snprintf(o->dir, sizeof o->dir, "%s", dir);
	o->swim = swim;
	o->started = now;
	o->hand = -1;
	o->dw = gossip_dirwatch_open(dir);
	o->ep = -1;
	if (!(o->agg = gossip_aggregator_new(dir))) {
		free(o);
		return NULL;
	}
	/* The arrival times in an old table say nothing about now: every member starts with
	 * a grace period again. */
	for (size_t i = 0; i < t->n; i++) {
		t->v[i].last_hb = 0;
		t->v[i].since = now;
	}
	t->probing = swim != NULL;
	t->saved_at = now;
	t->interval_ms = cfg->interval_ms;
	t->min_std_ms = cfg->min_std_ms;
	t->pause_ms = cfg->pause_ms;
	/* Rejections from before are already in the scores: from the end. */
	gossip_log_tail_init(&o->rejects, gossip_path(dir, "rejects"), 0);
	return o;
}

void gossip_observer_on_news(struct gossip_observer *o, gossip_observe_news_fn *fn, void *ctx)
{
	o->news = fn;
	o->news_ctx = ctx;
}

void gossip_observer_anti_entropy(struct gossip_observer *o, uint64_t every_ms, gossip_observe_news_fn *fn,
                                  void *ctx, uint64_t now)
{
	o->sync_ms = every_ms;
	o->sync_next = now + every_ms;  /* as the node's loop did: the first after one interval */
	o->brought = fn;
	o->brought_ctx = ctx;
}

void gossip_observer_free(struct gossip_observer *o)
{
	if (!o)
		return;
	if (o->fetch > 0 && waitpid(o->fetch, NULL, WNOHANG) == 0)
		kill(o->fetch, SIGTERM);  /* its sync would end by its own limit anyway */
	if (o->repair > 0 && waitpid(o->repair, NULL, WNOHANG) == 0)
		kill(o->repair, SIGTERM);
	if (o->sync > 0 && waitpid(o->sync, NULL, WNOHANG) == 0)
		kill(o->sync, SIGTERM);
	if (o->join > 0 && waitpid(o->join, NULL, WNOHANG) == 0)
		kill(o->join, SIGTERM);
	if (o->join > 0)
		close(o->join_err);
	gossip_buf_free(&o->join_said);
	gossip_buf_free(&o->join_now);
	gossip_buf_free(&o->mine);
	if (o->hand >= 0) {
		struct stat sb;
		close(o->hand);
		/* Still ours (not another's that replaced a stale one). */
		if (lstat(o->hand_path, &sb) == 0 && (uint64_t)sb.st_ino == o->hand_ino)
			unlink(o->hand_path);
	}
	if (o->ep >= 0)
		close(o->ep);
	if (o->dw >= 0)
		close(o->dw);
	/* Syncs being served end by their own limit; the parent does not wait for them. */
	gossip_aggregator_free(o->agg);
	gossip_store_close(o->store);
	gossip_trust_free(&o->trust);
	gossip_log_tail_close(&o->rejects);
	gossip_buf_free(&o->rejects_part);
	if (o->relay_ready) {
		gossip_out_close(&o->relay_out);
		gossip_keyring_free(&o->relay_keys);
	}
	free(o);
}

/* Whether a member's addresses, name or tags changed (a new incarnation alone is not). */
static int member_changed(const struct gossip_member *a, const struct gossip_member *b)
{
	struct gossip_buf x = {0}, y = {0};
	struct gossip_member b2 = *b;
	b2.incarnation = a->incarnation;
	gossip_member_encode(&x, a);
	gossip_member_encode(&y, &b2);
	int r = x.len != y.len || memcmp(x.p, y.p, x.len) != 0;
	gossip_buf_free(&x);
	gossip_buf_free(&y);
	return r;
}

/* A member record, or its delete (a leave), from the stream or the store; 1 when the
 * table changed, 2 when the member is new to it. */
static int on_member(struct gossip_observer *o, const struct gossip_msg *m, const uint8_t *p,
                     size_t n, uint64_t now)
{
	struct gossip_peers *t = o->table;
	struct gossip_peer *peer = gossip_peers_find(t, m->origin, 0);
	if (peer && m->version <= peer->member_version)
		return 0;
	if (m->type == GOSSIP_T_DEL) {
		if (!peer)
			return 0;
		peer->member_version = m->version;
		/* A leave of ours that this running node did not make: stale, replayed, or
		 * signed with a copy of its key. One from before the start is the last stop's,
		 * which the new announcement replaces. */
		if (peer->self && o->swim && gossip_swim_left(o->swim))
			return 1;  /* its own, on a graceful stop */
		if (peer->self && o->swim && m->time >= o->started) {
			gossip_warn("a leave of this node's, signed while it runs: refuting it");
			gossip_swim_refute_leave(o->swim, now);
			return 1;
		}
		/* The last stop's leave, found before this start's announcement replaces it:
		 * this node runs, so it is not logged as a member-leave of its own. */
		if (peer->self && o->swim)
			return 1;
		if (peer->state != GOSSIP_P_LEFT) {
			gossip_peer_set_state(peer, GOSSIP_P_LEFT, now);
			gossip_event_append(o->dir, now, "member-leave", peer);
		}
		return 1;
	}
	struct gossip_member info;
	if (m->type != GOSSIP_T_SET || gossip_member_decode(m->value, m->valuelen, &info) < 0)
		return 0;
	int fresh = !peer;
	if (!peer && !(peer = gossip_peers_find(t, m->origin, 1)))
		return 0;
	peer->self = t->has_self && !memcmp(m->origin, t->self_pk, 32);
	int changed = !fresh && member_changed(&peer->info, &info);
	int back = !fresh && peer->state != GOSSIP_P_ALIVE;
	/* A suspect that answers with a new incarnation was never gone. */
	int refuted = back && peer->state == GOSSIP_P_SUSPECT && info.incarnation > peer->info.incarnation;
	peer->info = info;
	peer->member_version = m->version;
	if (peer->self && o->swim)
		gossip_swim_self_record(o->swim, info.incarnation, p, n);
	if (refuted) {
		gossip_peer_set_state(peer, GOSSIP_P_ALIVE, now);
		peer->suspector = 0;
		gossip_event_append(o->dir, now, "member-alive", peer);
		if (changed)
			gossip_event_append(o->dir, now, "member-update", peer);
	} else if (fresh || back) {
		/* Phi starts with its first heartbeat; until then it has a grace period (see
		 * judge_by_phi), also after a restart, when its old arrival times say nothing. */
		peer->last_hb = 0;
		peer->nint = peer->pos = 0;
		gossip_peer_set_state(peer, GOSSIP_P_ALIVE, now);
		gossip_event_append(o->dir, now, "member-join", peer);
	} else if (changed)
		gossip_event_append(o->dir, now, "member-update", peer);
	return fresh ? 2 : 1;
}

/* A force-leave (GOSSIP_KEY_FORCE_LEAVE), from the stream or the store: the member is
 * marked left when the table has it dead or suspect at the incarnation named or a lower
 * one. One about this node, signed while it runs, is refuted with a new incarnation. 1
 * when the table changed. */
static int on_force_leave(struct gossip_observer *o, const struct gossip_msg *m, uint64_t now)
{
	if (m->type != GOSSIP_T_EVENT || m->value_text || m->valuelen != 40)
		return 0;
	struct gossip_peer *peer = gossip_peers_find(o->table, m->value, 0);
	uint64_t inc = 0;
	for (int i = 0; i < 8; i++)
		inc = inc << 8 | m->value[32 + i];
	if (!peer || inc < peer->info.incarnation)
		return 0;
	if (peer->self) {
		if (o->swim && m->time >= o->started && !gossip_swim_left(o->swim)) {
			gossip_warn("a force-leave of this node, which runs: refuting it");
			gossip_swim_refute_leave(o->swim, now);
		}
		return 0;
	}
	if (peer->state != GOSSIP_P_SUSPECT && peer->state != GOSSIP_P_DEAD)
		return 0;
	gossip_peer_set_state(peer, GOSSIP_P_LEFT, now);
	gossip_event_append(o->dir, now, "member-leave", peer);
	return 1;
}

static int on_heartbeat(struct gossip_observer *o, const struct gossip_msg *m, uint64_t now)
{
	struct gossip_peer *peer = gossip_peers_find(o->table, m->origin, 0);
	/* A heartbeat from a member we do not know yet waits for its member record. Probing
	 * (-p), members are judged by their acks, and come back by a record of a newer
	 * incarnation: a heartbeat, which members that probe do not send, is a replay of one
	 * sent before (by anyone who saw it), and says nothing of now. */
	if (!peer || o->swim || m->type != GOSSIP_T_SET || m->version <= peer->hb_version)
		return 0;
	peer->hb_version = m->version;
	gossip_peer_heard(peer, now);
	if (peer->state == GOSSIP_P_SUSPECT || peer->state == GOSSIP_P_DEAD) {
		int was_dead = peer->state == GOSSIP_P_DEAD;
		gossip_peer_set_state(peer, GOSSIP_P_ALIVE, now);
		gossip_event_append(o->dir, now, was_dead ? "member-join" : "member-alive", peer);
	}
	return 1;
}

/* ---- aggregation runs (aggregate.c): the hooks ---- */

static size_t members_now(const struct gossip_observer *o)
{
	size_t n = 0;
	for (size_t i = 0; i < o->table->n; i++)
		n += o->table->v[i].state != GOSSIP_P_LEFT;
	return n;
}

/* A share, checked here against trusted too (signature and signer): the stream may come
 * from anywhere. Never passed on. */
static void aggregate_share(struct gossip_observer *o, const struct gossip_msg *m, uint64_t now)
{
	gossip_aggregator_share(o->agg, m, o->store ? &o->trust : NULL, members_now(o), now);
}

static void aggregate_tick(struct gossip_observer *o, uint64_t now)
{
	gossip_aggregator_tick(o->agg, o->table, o->store, now);
}

/* ---- the store: all the observer reads of it ---- */

struct store_look {
	struct gossip_observer *o;
	uint64_t now;
	int changed;
};

static int store_entry(void *ctx, const struct gossip_entry *e, const uint8_t *p)
{
	struct store_look *l = ctx;
	struct gossip_msg m;
	int r;
	/* Decoded once; only runs, force-leaves and member records are news to the table. */
	if (gossip_msg_decode(p, e->len, &m) < 0)
		return 0;
	if (e->type == GOSSIP_T_EVENT) {
		/* A run (an _aggregate event): anti-entropy brought it, or this node asked. */
		if (gossip_msg_key_is(&m, GOSSIP_KEY_AGGREGATE))
			gossip_aggregator_event(l->o->agg, &m, l->now);
		/* A force-leave that was not on the stream (anti-entropy brought it, or this node
		 * signed it): news, on as rumor, when the table takes it. */
		else if (gossip_msg_key_is(&m, GOSSIP_KEY_FORCE_LEAVE) && on_force_leave(l->o, &m, l->now)) {
			l->changed = 1;
			if (l->o->news)
				l->o->news(l->o->news_ctx, p, e->len);
		}
		return 0;
	}
	if (gossip_msg_key_is(&m, GOSSIP_KEY_MEMBER) && (r = on_member(l->o, &m, p, e->len, l->now))) {
		l->changed = 1;
		struct gossip_peer *peer = gossip_peers_find(l->o->table, m.origin, 0);
		if (r == 2 && l->o->swim && peer)
			gossip_swim_met(l->o->swim, peer, p, e->len);
		/* News here did not come in on the stream (or it would not be news now): it
		 * goes on as rumor from here, once, as if it had. */
		if (l->o->news)
			l->o->news(l->o->news_ctx, p, e->len);
	}
	return 0;
}

/* What st shows follows t (revoked signers hidden), and its kept summary (DIR/store.root)
 * is recorded under t's id: each look's summary, when the index is the file's, so that
 * gossip-merge digest and a sync of an unchanged store answer without reading it. */
static void store_rule(struct gossip_store *st, struct gossip_trust *t)
{
	uint8_t rule[16];
	gossip_store_set_visible(st, gossip_trust_has, t);
	gossip_trust_id(t, rule);
	gossip_store_keep_summary(st, rule);
}

long gossip_observe_reload(struct gossip_observer *o)
{
	struct gossip_trust t;
	if (o->relay_ready) {
		struct gossip_keyring k;
		if (gossip_keyring_load(&k, o->dir) < 0)
			gossip_warn("reload: keyring: %s; relaying with the old one", gossip_error());
		else {
			gossip_keyring_free(&o->relay_keys);
			o->relay_keys = k;  /* in place: relay_out seals with it */
		}
	}
	/* Shares too: a run lasts up to a day, and a retired key must be out of use at
	 * gossip-keyring(5)'s third step. */
	gossip_aggregator_reload(o->agg);
	if (gossip_trust_load(&t, o->dir) < 0) {
		gossip_warn("reload: trusted: %s; keeping the old one", gossip_error());
		return -1;
	}
	if (!o->store) {
		long k = (long)t.n;
		gossip_trust_free(&t);  /* loaded at the first look */
		return k;
	}
	gossip_trust_free(&o->trust);
	o->trust = t;  /* in place: the store's filter points at it */
	/* Said again, so that the store makes its kept summary afresh (gossip.h): else a
	 * revoked signer's messages would stay in the summary pings and acks carry. */
	store_rule(o->store, &o->trust);
	return (long)o->trust.n;
}

static uint64_t ctime_ns(const struct stat *sb)
{
	return (uint64_t)sb->st_ctim.tv_sec * 1000000000u + (uint64_t)sb->st_ctim.tv_nsec;
}

static int look_store(struct gossip_observer *o, uint64_t now);

int gossip_observe_store(struct gossip_observer *o, uint64_t now)
{
	return look_store(o, now);
}

static int look_store(struct gossip_observer *o, uint64_t now)
{
	struct store_look l = {o, now, 0};
	struct stat sb;
	int summary_only = 0, r;
	/* Unchanged since the last look (the same file, size and change time): nothing to
	 * take the lock for (a look can come often), but for the summary once an interval:
	 * events and deletes expire by the clock. The same size with another change time is a
	 * change in place (damage, a hand; or a writer's room taken and not used): the lock
	 * below finds custody lost when no writer recorded it, and reads the store whole
	 * again (gossip(7), THE STORE), which finds and sets aside what is wrong, so that the
	 * syncs this observer starts and serves do not hide it. */
	if (o->store && stat(gossip_path(o->dir, "store"), &sb) == 0 && (uint64_t)sb.st_ino == o->store_ino &&
	    (uint64_t)sb.st_size == o->store_size && ctime_ns(&sb) == o->store_ctime) {
		if (!o->swim || gossip_age_ms(now, o->sum_at) < (uint64_t)o->cfg.interval_ms)
			return 0;
		summary_only = 1;
	}
	if (!o->store) {
		struct gossip_store *st = gossip_store_open(o->dir, NULL);
		if (!st || gossip_trust_load(&o->trust, o->dir) < 0) {
			gossip_warn("%s", gossip_error());
			gossip_store_close(st);
			return 0;
		}
		gossip_store_forks_writers(st);  /* its syncs' children write it */
		/* A member removed from trusted is not found in the store (revocation). */
		store_rule(st, &o->trust);
		o->store = st;
	}
	/* The loop never waits for the lock (the prober waits on this look): while another
	 * process holds it (a compaction, a writer stopped), pings are answered and a leave
	 * is seen. A look at what is new comes again 50 ms on; a summary's, an interval on. */
	r = gossip_store_trylock(o->store);
	if (r == 1) {
		if (summary_only)
			o->sum_at = now;
		else
			o->look_at = gossip_mono_ms() + 50;
		return 0;
	}
	if (r < 0) {
		gossip_warn("%s", gossip_error());
		return 0;
	}
	/* Taken under the lock: what is appended after it is seen at the next look. */
	if (stat(gossip_path(o->dir, "store"), &sb) == 0) {
		o->store_ino = (uint64_t)sb.st_ino;
		o->store_size = (uint64_t)sb.st_size;
		o->store_ctime = ctime_ns(&sb);
	}
	gossip_store_each_new(o->store, &o->store_seen, store_entry, &l);
	if (o->swim) {
		/* The summary our pings and acks carry (kept by the store: cheap to read), and
		 * with it the table of this hour's ids that the syncs our children start and
		 * serve use. */
		uint8_t root[16];
		uint64_t count;
		if (gossip_sync_keep(o->store) < 0)
			gossip_warn("%s", gossip_error());
		if (gossip_store_summary(o->store, root, &count) == 0)
			gossip_swim_summary(o->swim, root, now);
		o->sum_at = now;
	}
	gossip_store_unlock(o->store);
	gossip_store_summary_save(o->store);
	return l.changed;
}

/* ---- the stream ---- */

/* Each message a sync stored, kept for the anti-entropy child's callback (after the sync:
 * the rumor goes out once the store has them all). */
static void keep_new(void *ctx, const uint8_t *p, size_t n)
{
	if (gossip_buf_put(ctx, p, n) < 0)
		gossip_warn("anti-entropy: %s; what the sync brought is stored, not passed on", strerror(ENOMEM));
}

/* In a child that syncs (after the fork): its merger, with the store to sync with and the
 * signers it takes, DIR/trusted as it is now, as gossip-merge would read it (a line removed
 * counts from the next sync, reload or not; what does not load fails the sync, as it
 * would fail gossip-merge). What it stores is logged as the merge logs it (user events,
 * key changes), so that the handlers hear of it however it came. */
static void child_merger(struct gossip_observer *o, struct gossip_merger *mg, struct gossip_event_recorder *rec,
                         struct gossip_trust *own)
{
	if (o->hand >= 0)
		close(o->hand);  /* the observer's alone: a child must not keep it when it dies */
	/* Nothing of its own on the stream (stdout is the node's pipeline). */
	int null = open("/dev/null", O_WRONLY | O_CLOEXEC);
	if (null >= 0)
		dup2(null, 1);
	signal(SIGHUP, SIG_IGN);
	/* The parent's handlers only set flags this child never looks at: a stop must end it
	 * at once, or it holds the node's lock (and its leave) for the whole fetch. */
	signal(SIGTERM, SIG_DFL);
	signal(SIGINT, SIG_DFL);
	signal(SIGPIPE, SIG_IGN);
	/* The observer's store as its last look left it (index, summary and trust), with a
	 * lock of its own: the sync reads only what is new, not the whole store. Without
	 * one yet, its own. */
	struct gossip_store *st = o->store;
	uint8_t was[16], now[16];
	if (gossip_trust_load(own, o->dir) < 0) {
		gossip_warn("trusted: %s", gossip_error());
		_exit(2);
	}
	if (!st || gossip_store_detach(st) < 0) {
		if (!(st = gossip_store_open(o->dir, NULL)))
			_exit(2);
		store_rule(st, own);
	}
	/* As gossip-merge does: a signer removed from trusted is neither offered nor
	 * summarised (its messages stay hidden here, not pushed to the member). The summary
	 * is made afresh (from the index, not the disk) only when the set changed. */
	gossip_trust_id(&o->trust, was);
	gossip_trust_id(own, now);
	if (memcmp(was, now, 16))
		store_rule(st, own);
	*rec = (struct gossip_event_recorder){.dir = o->dir};
	/* A member that trusts more signers than this node brings their messages at every
	 * sync, refused each time: ten lines, then a count. */
	*mg = (struct gossip_merger){.st = st, .trust = own, .on_stored = gossip_event_record, .sctx = rec, .say_max = 10};
}

/* The end of a child that synced: what its merge did added to DIR/stats/merge.others, as
 * gossip-merge sync adds it (the pipeline's merge owns DIR/stats/merge); then exit. */
static _Noreturn void child_end(struct gossip_observer *o, struct gossip_merger *mg, struct gossip_event_recorder *rec,
                      int code)
{
	struct gossip_stats counters;
	gossip_stats_beside(&counters, o->dir, "merge");
	gossip_merger_count(&counters, mg);
	gossip_stats_close(&counters);
	gossip_merger_free(mg);
	gossip_event_recorder_free(rec);
	_exit(code);  /* the store is the parent's (or freed with the process) */
}

/* A sync (mode, within timeout_ms) with addr in a child of its own, so that the stream is
 * not held up; the child's pid, or -1. what names it in warnings; with brings, what it
 * stored goes to o->brought (anti-entropy). */
static pid_t sync_child(struct gossip_observer *o, const char *what, const char *addr, int mode, int timeout_ms,
                        int brings)
{
	pid_t pid = fork();
	if (pid < 0) {
		gossip_warn("%s: fork: %s", what, strerror(errno));
		return -1;
	}
	if (pid > 0)
		return pid;
	struct gossip_trust own;
	struct gossip_event_recorder rec;
	struct gossip_merger mg;
	struct gossip_buf got = {0};
	child_merger(o, &mg, &rec, &own);
	if (brings && o->brought) {
		mg.on_new = keep_new;
		mg.ctx = &got;
	}
	struct gossip_sync_stats stats;
	int r = gossip_sync_client(&mg, addr, mode, timeout_ms, &stats);
	/* One line at most: a failure, or (a repair) what was exchanged; nothing when
	 * nothing was. Anti-entropy's failures are counted, not logged: now and then it
	 * picks a member believed down on purpose. */
	if (r < 0 && !brings)
		gossip_warn("%s: %s: %s", what, addr, gossip_error());
	else if (mode == GOSSIP_PUSH_PULL && !brings && (stats.sent_msgs || stats.recv_msgs))
		gossip_warn("%s: %s: sent %llu messages, received %llu, %llu new here", what, addr,
		            (unsigned long long)stats.sent_msgs, (unsigned long long)stats.recv_msgs,
		            (unsigned long long)mg.added);
	/* Stored (even by a sync that failed later): on as rumor. */
	if (got.len) {
		size_t k;
		for (size_t at = 0; at < got.len; at += k)
			if (gossip_cbor_scan(got.p + at, got.len - at, &gossip_msg_limits, NULL, &k) != GOSSIP_SCAN_OK)
				break;
			else
				o->brought(o->brought_ctx, got.p + at, k);
		o->brought(o->brought_ctx, NULL, 0);
	}
	gossip_buf_free(&got);
	child_end(o, &mg, &rec, r < 0 ? 1 : 0);
}

/* A pull sync with a random live member: it brings the record of a member that probes us
 * but is in no store here yet (its own join told the members it knew, not us). The
 * store's next look finds it. At most one at a time, one a second. */
static void fetch(struct gossip_observer *o, uint64_t now)
{
	struct gossip_peer *pick[1];
	const char *addr;
	pid_t pid;
	if (o->fetch > 0) {
		if (waitpid(o->fetch, NULL, WNOHANG) == 0)
			return;
		o->fetch = 0;
	}
	if (gossip_age_ms(now, o->last_fetch) < 1000 ||
	    gossip_peers_pick(o->table, &o->cfg, 1, pick) != 1 ||
	    !(addr = gossip_member_addr(&pick[0]->info, GOSSIP_TCP)))
		return;
	o->last_fetch = now;
	if ((pid = sync_child(o, "fetch", addr, GOSSIP_PULL, 5000, 0)) > 0)
		o->fetch = pid;
}

/* Repair (gossip(7), THE NODE): a push-pull sync with the member the prober chose, whose
 * summary differs from ours, so that both are repaired. One at a time; the prober allows
 * one an interval. What it brings the store's next look finds, and the merge passes on. */
static void repair(struct gossip_observer *o, uint64_t now)
{
	uint8_t pk[32];
	char what[128];
	const struct gossip_peer *p;
	const char *addr;
	pid_t pid;
	int status;
	if (o->repair > 0 && (pid = waitpid(o->repair, &status, WNOHANG)) != 0) {
		/* Over (while under way, no other): a failure backs off, doubling to a minute. */
		gossip_swim_repair_done(o->swim, o->repair_pk, pid > 0 && WIFEXITED(status) && !WEXITSTATUS(status),
		                        60000, now);
		o->repair = 0;
	}
	if (!gossip_swim_repair(o->swim, o->repair > 0, now, pk) || !(p = gossip_peers_find(o->table, pk, 0)))
		return;
	/* The child names the member in its one line (if any): what a repair brought, or why
	 * it failed. */
	snprintf(what, sizeof what, "repair: store summaries differ from %s's: push-pull sync", p->info.name);
	if (!(addr = gossip_member_addr(&p->info, GOSSIP_TCP))) {
		gossip_swim_repair_done(o->swim, pk, 0, 60000, now);
		return;
	}
	if ((pid = sync_child(o, what, addr, GOSSIP_PUSH_PULL, 5000, 0)) > 0) {
		o->repair = pid;
		memcpy(o->repair_pk, pk, 32);
		o->repairs++;
	} else
		gossip_swim_repair_done(o->swim, pk, 0, 60000, now);
}

uint64_t *gossip_observe_repairs(struct gossip_observer *o)
{
	return &o->repairs;
}

/* Anti-entropy (gossip(7), THE NODE): every sync_ms a push-pull sync with a member picked
 * as gossip-peers pick picks (now and then one believed down, so that a healed partition
 * finds its way back), one at a time, each within 10 s at both ends. The child syncs with
 * the observer's store, as repair does, and passes what it stored on as rumor. */
static void anti_entropy(struct gossip_observer *o, uint64_t now)
{
	struct gossip_peer *pick[1];
	const char *addr;
	pid_t pid;
	int status;
	if (o->sync > 0) {
		if ((pid = waitpid(o->sync, &status, WNOHANG)) == 0)
			return;
		(*(pid > 0 && WIFEXITED(status) && !WEXITSTATUS(status) ? &o->syncs_done : &o->syncs_failed))++;
		o->sync = 0;
	}
	if (!o->sync_ms || now < o->sync_next)
		return;
	o->sync_next = now + o->sync_ms;
	if (gossip_peers_pick(o->table, &o->cfg, 1, pick) != 1 ||
	    !(addr = gossip_member_addr(&pick[0]->info, GOSSIP_TCP)))
		return;  /* no one to sync with yet */
	if ((pid = sync_child(o, "anti-entropy", addr, GOSSIP_PUSH_PULL, 10000, 1)) > 0)
		o->sync = pid;
	else
		o->syncs_failed++;
}

uint64_t *gossip_observe_syncs(struct gossip_observer *o, int failed)
{
	return failed ? &o->syncs_failed : &o->syncs_done;
}

/* ---- the start: the announcement and the join ---- */

/* msgs (a CBOR sequence of signed messages) by UDP, sealed as the node's datagrams are, to
 * every live member of the table but this node and to the addresses in the member records
 * of more (a join's news): told at once rather than by rumor. */
static void tell(struct gossip_observer *o, const struct gossip_buf *msgs, const struct gossip_buf *more)
{
	struct gossip_keyring keys;
	struct gossip_out out;
	struct gossip_msg m;
	struct gossip_member info;
	const char *a;
	size_t k;
	if (!msgs->len)
		return;
	if (gossip_keyring_load(&keys, o->dir) < 0) {
		gossip_warn("keyring: %s; the members are not told at once", gossip_error());
		return;
	}
	gossip_out_init(&out, 1200, 2000, 0, &keys);
	struct gossip_peer **pick = calloc(o->table->n + 1, sizeof *pick);
	size_t got = pick ? gossip_peers_pick(o->table, &o->cfg, o->table->n, pick) : 0;
	for (size_t i = 0; i < got; i++)
		if ((a = gossip_member_addr(&pick[i]->info, GOSSIP_UDP)))
			gossip_out_index(&out, a);
	free(pick);
	for (size_t at = 0; more && at < more->len; at += k) {
		if (gossip_cbor_scan(more->p + at, more->len - at, &gossip_msg_limits, NULL, &k) != GOSSIP_SCAN_OK)
			break;
		if (gossip_msg_decode(more->p + at, k, &m) == 0 && m.type == GOSSIP_T_SET &&
		    gossip_msg_key_is(&m, GOSSIP_KEY_MEMBER) && memcmp(m.origin, o->table->self_pk, 32) &&
		    gossip_member_decode(m.value, m.valuelen, &info) == 0 && (a = gossip_member_addr(&info, GOSSIP_UDP)))
			gossip_out_index(&out, a);
	}
	for (size_t at = 0; at < msgs->len; at += k) {
		if (gossip_cbor_scan(msgs->p + at, msgs->len - at, &gossip_msg_limits, NULL, &k) != GOSSIP_SCAN_OK)
			break;
		for (size_t i = 0; i < out.n; i++)
			gossip_out_queue_to(&out, i, msgs->p + at, k);
	}
	gossip_out_flush(&out);
	gossip_out_close(&out);
	gossip_keyring_free(&keys);
}

/* Store the announcement in path and tell the members (gossip_observer_start), then remove
 * path (gossip-node waits for that): 0; 1 when the store refused a message (the merger's
 * line says why); -1 with the reason (not a regular file, not a CBOR sequence, the store;
 * path is left when it could not be read). */
static int announce(struct gossip_observer *o, const char *path, uint64_t now)
{
	struct gossip_buf b = {0};
	struct stat sb;
	size_t k;
	int r = 0;
	gossip_observe_store(o, now);  /* the first look opens the store */
	if (!o->store) {
		gossip_seterr("store: cannot open %s/store", o->dir);
		return -1;
	}
	/* Read whole before anything is stored; never a FIFO or a device to block on. */
	if (lstat(path, &sb) < 0) {
		gossip_seterr("%s: %s", path, strerror(errno));
		return -1;
	}
	if (!S_ISREG(sb.st_mode)) {
		gossip_seterr("%s: not a regular file", path);
		return -1;
	}
	if (gossip_read_file(path, 1u << 20, &b) < 0)
		return -1;
	struct gossip_event_recorder rec = {.dir = o->dir};
	struct gossip_merger mg = {.st = o->store, .trust = &o->trust, .on_stored = gossip_event_record, .sctx = &rec,
	                           .on_new = keep_new, .ctx = &o->mine};
	/* As gossip-merge does: a refused message is one line, and the next is taken. */
	for (size_t at = 0; at < b.len && r >= 0; at += k) {
		uint64_t refused = mg.rejected;
		if (gossip_cbor_scan(b.p + at, b.len - at, &gossip_msg_limits, NULL, &k) != GOSSIP_SCAN_OK) {
			gossip_seterr("%s: byte %zu: not a CBOR sequence of signed messages", path, at);
			r = -1;
		} else if (gossip_merge_item(&mg, b.p + at, k, path, at) < 0) {
			r = -1;
		} else if (mg.rejected > refused) {
			r = 1;  /* the merger said why */
		}
	}
	if (gossip_merge_flush(&mg) < 0)
		r = -1;
	struct gossip_stats counters;
	gossip_stats_beside(&counters, o->dir, "merge");
	gossip_merger_count(&counters, &mg);
	gossip_stats_close(&counters);
	gossip_merger_free(&mg);
	gossip_event_recorder_free(&rec);
	gossip_buf_free(&b);
	tell(o, &o->mine, NULL);
	unlink(path);  /* read: its lines said what was refused */
	return r;
}

void gossip_join_failed(const char *seed, const char *err)
{
	if (strstr(err, "is not in the server's trusted"))
		gossip_warn("%s: refused: this node is not in its trusted file (add this node's key.pub "
		            "line to the seed's trusted)", seed);
	else if (strstr(err, "is not in the client's trusted"))
		gossip_warn("%s: refused by this node: the seed is not in this node's trusted file "
		            "(add the seed's key.pub line to it)", seed);
	else if (strstr(err, "cannot connect") || strstr(err, "timed out") ||
	         strstr(err, "closed the connection"))
		gossip_warn("%s: no answer (%s)", seed, err);
	else if (!strncmp(err, "peer says: ", 11))
		gossip_warn("%s: %s", seed, err + 11);
	else
		gossip_warn("%s: %s", seed, err);
}

int gossip_join_sync(struct gossip_merger *mg, const char *seed)
{
	struct gossip_sync_stats s;
	int r;
	for (int tries = 0; (r = gossip_sync_client(mg, seed, GOSSIP_PUSH_PULL, 10000, &s)) < 0 &&
	                    strstr(gossip_error(), "refused: busy") && tries < 8;
	     tries++) {
		gossip_merger_free(mg);  /* what the refused try left pending: nothing to keep */
		struct timespec ts = {0, (long)(50 + randombytes_uniform(150)) * 1000000};
		nanosleep(&ts, NULL);
	}
	return r;
}

/* The announcement, once its file is there (at once, or when gossip-node moves it into
 * place, its port bound); then the join may begin. */
static void announce_turn(struct gossip_observer *o, uint64_t now)
{
	struct stat sb;
	if (!o->announce_path || lstat(o->announce_path, &sb) < 0)
		return;
	if (announce(o, o->announce_path, now) < 0)
		gossip_warn("--announce: %s", gossip_error());
	o->announce_path = NULL;
	o->join_next = now;
}

void gossip_observer_start(struct gossip_observer *o, const char *announce_path, char **seeds, int n, uint64_t now)
{
	o->announce_path = announce_path;
	o->seeds = n > 0 ? seeds : NULL;
	o->nseeds = n;
	o->join_next = now;
	announce_turn(o, now);
}

void gossip_observer_leave_on(struct gossip_observer *o, const char *path)
{
	o->leave_path = path;
}

/* Not before the announcement (the node's stop then leaves the old way). A join under way
 * does not hold a leave off: gossip_observe_end_join ends it first. */
int gossip_observe_leave_possible(const struct gossip_observer *o)
{
	return o->leave_path && o->swim && !o->announce_path;
}

void gossip_observe_end_join(struct gossip_observer *o)
{
	if (o->join > 0) {
		/* KILL, not TERM: the child takes TERM as a stop between messages, and may be
		 * waiting for the store's lock. Killed mid-append, it leaves what a crash
		 * leaves, which the store's next look mends. */
		kill(o->join, SIGKILL);
		while (waitpid(o->join, NULL, 0) < 0 && errno == EINTR) {
		}
		close(o->join_err);
		o->join = 0;
		o->join_now.len = 0;
		o->join_more = 0;
	}
	o->seeds = NULL;
}

int gossip_observe_leave_due(const struct gossip_observer *o)
{
	struct stat sb;
	return gossip_observe_leave_possible(o) && lstat(o->leave_path, &sb) == 0 && S_ISREG(sb.st_mode);
}

static void on_alarm(int sig)
{
	(void)sig;  /* only to end a wait for the store's lock */
}

void gossip_observe_left(struct gossip_observer *o, const uint8_t *p, size_t n)
{
	if (unlink(o->leave_path) < 0 && errno != ENOENT)
		gossip_warn("--leave: %s: %s", o->leave_path, strerror(errno));
	o->leave_path = NULL;
	if (!o->store) {  /* opened for the announcement, unless it could not be */
		gossip_warn("--leave: cannot open %s/store: the leave was sent, but not stored", o->dir);
		return;
	}
	/* The caller holds the signals that would end a wait for the store's lock (the
	 * node's stop follows at once). The wait has its bound all the same (another process
	 * may hold the lock for long): an alarm ends it. */
	struct sigaction sa = {0}, old;
	sa.sa_handler = on_alarm;  /* no SA_RESTART: the lock's wait ends */
	sigaction(SIGALRM, &sa, &old);
	alarm(GOSSIP_LEAVE_STORE_S);
	struct gossip_merger mg = {.st = o->store, .trust = &o->trust};
	if (gossip_merge_item(&mg, p, n, "leave", 0) < 0 || gossip_merge_flush(&mg) < 0)
		gossip_warn("--leave: the leave was sent, but not stored (within %d s): %s", GOSSIP_LEAVE_STORE_S,
		            gossip_error());
	gossip_merger_free(&mg);
	alarm(0);
	sigaction(SIGALRM, &old, NULL);
}

/* One attempt, in the child: a join's sync with each seed in turn; joined by any, the
 * announcement goes to every member now known. Exit 0 when one took us. */
static _Noreturn void join_child(struct gossip_observer *o)
{
	struct gossip_trust own;
	struct gossip_event_recorder rec;
	struct gossip_merger mg;
	struct gossip_buf got = {0};
	int ok = 0;
	child_merger(o, &mg, &rec, &own);
	mg.on_new = keep_new;
	mg.ctx = &got;
	for (int i = 0; i < o->nseeds; i++)
		if (gossip_join_sync(&mg, o->seeds[i]) < 0)
			gossip_join_failed(o->seeds[i], gossip_error());
		else
			ok++;
	if (ok)
		tell(o, &o->mine, &got);
	gossip_buf_free(&got);
	child_end(o, &mg, &rec, ok ? 0 : 1);
}

/* What the attempt under way wrote to its stderr: drained at every turn (the pipe never
 * fills, whatever the child says), the first JOIN_SAID bytes kept, the rest counted. */
enum { JOIN_SAID = 4096 };

static void join_drain(struct gossip_observer *o)
{
	char buf[4096];
	ssize_t k;
	while ((k = read(o->join_err, buf, sizeof buf)) > 0) {
		size_t room = o->join_now.len < JOIN_SAID ? JOIN_SAID - o->join_now.len : 0;
		size_t keep = (size_t)k < room ? (size_t)k : room;
		if (keep && gossip_buf_put(&o->join_now, buf, keep) < 0)
			keep = 0;
		o->join_more += (size_t)k - keep;
	}
}

/* An attempt that failed: its lines (up to the last whole one, and how much was left
 * out) into the log, when they differ from the last failed attempt's. */
static void join_said(struct gossip_observer *o)
{
	size_t n = o->join_now.len;
	while (n && o->join_now.p[n - 1] != '\n')
		n--;
	if (n != o->join_said.len || (n && memcmp(o->join_now.p, o->join_said.p, n))) {
		if (n && gossip_write_all(2, o->join_now.p, n) < 0) {
			/* stderr gone: nothing to tell */
		}
		if (o->join_more || n < o->join_now.len)
			gossip_warn("join: %zu more bytes of the attempt's lines left out",
			            o->join_more + (o->join_now.len - n));
		o->join_said.len = 0;
		if (n)
			gossip_buf_put(&o->join_said, o->join_now.p, n);
	}
	o->join_now.len = 0;
	o->join_more = 0;
}

/* A member heard from since this observer started (its table's arrival times were reset
 * then): the node is in, some other way. A member the saved table lists alive is not: it
 * may be long gone. With the prober, only an ack to its own ping counts: a member that
 * knows this node answered it now. A ping proves nothing (a replay of one seen on the
 * wire would end the join for good). */
static int heard_any(const struct gossip_observer *o)
{
	if (o->swim)
		return gossip_swim_acks(o->swim) > 0;
	for (size_t i = 0; i < o->table->n; i++) {
		const struct gossip_peer *p = &o->table->v[i];
		if (!p->self && p->state == GOSSIP_P_ALIVE && p->last_hb)
			return 1;
	}
	return 0;
}

/* The join's turn: an attempt over, its lines said when new; the next one an interval
 * later, unless a member has been heard from by then. */
static void join(struct gossip_observer *o, uint64_t now)
{
	int status, fds[2];
	pid_t pid;
	if (o->join > 0) {
		join_drain(o);
		if ((pid = waitpid(o->join, &status, WNOHANG)) == 0)
			return;
		join_drain(o);  /* the rest, now that no one writes */
		close(o->join_err);
		o->join = 0;
		if (pid > 0 && WIFEXITED(status) && !WEXITSTATUS(status)) {
			o->seeds = NULL;
			o->join_now.len = 0;
			return;
		}
		join_said(o);
	}
	announce_turn(o, now);
	if (!o->seeds || o->announce_path || now < o->join_next)
		return;
	if (heard_any(o)) {
		o->seeds = NULL;
		return;
	}
	o->join_next = now + (uint64_t)o->cfg.interval_ms;
	if (pipe2(fds, O_CLOEXEC | O_NONBLOCK) < 0) {
		gossip_warn("join: %s", strerror(errno));
		return;
	}
	if ((pid = fork()) < 0) {
		gossip_warn("join: fork: %s", strerror(errno));
		close(fds[0]);
		close(fds[1]);
		return;
	}
	if (pid == 0) {
		close(fds[0]);
		/* Blocking again for the child, which must not lose a line to a full pipe. */
		if (dup2(fds[1], 2) < 0)
			_exit(2);
		close(fds[1]);
		fcntl(2, F_SETFL, fcntl(2, F_GETFL) & ~O_NONBLOCK);
		join_child(o);
	}
	close(fds[1]);
	o->join = pid;
	o->join_err = fds[0];
}

/* ---- syncs handed over by gossip-listen -H ---- */

int gossip_observer_serve(struct gossip_observer *o, const char *path)
{
	if ((o->hand = gossip_hand_listen(path, &o->hand_ino)) < 0)
		return -1;
	snprintf(o->hand_path, sizeof o->hand_path, "%s", path);
	return o->hand;
}

/* Serve a sync handed over (conn, from peer) in a child, as gossip-merge serve would, with
 * the observer's store; done stays open in the child until it is over. */
static void serve_child(struct gossip_observer *o, int conn, int done, const char *peer)
{
	size_t slot = 0;
	while (slot < SERVES && o->serves[slot] > 0)
		slot++;
	pid_t pid = slot < SERVES ? fork() : -1;
	if (pid != 0) {
		/* The parent (or none to serve it: the client sees the connection end). */
		if (pid < 0)
			o->serves_failed++;
		else
			o->serves[slot] = pid;
		close(conn);
		close(done);
		return;
	}
	/* Ours only once the sender, still waiting, says so; else it serves it itself. */
	if (gossip_hand_take(done, 2000) < 0)
		_exit(3);
	struct gossip_trust own;
	struct gossip_event_recorder rec;
	struct gossip_merger mg;
	child_merger(o, &mg, &rec, &own);
	fcntl(conn, F_SETFL, fcntl(conn, F_GETFL) & ~O_NONBLOCK);
	struct gossip_sync_stats stats;
	int r = gossip_sync_serve(&mg, conn, conn, 10000, &stats);
	if (r < 0)
		gossip_warn("serve: %s (from %s)", gossip_error(), peer);  /* as gossip-merge serve says it */
	child_end(o, &mg, &rec, r < 0 ? 1 : 0);
}

void gossip_observe_hand(struct gossip_observer *o)
{
	int status, conn, done;
	char peer[GOSSIP_HAND_PEER];
	for (size_t i = 0; i < SERVES; i++)
		if (o->serves[i] > 0 && waitpid(o->serves[i], &status, WNOHANG) == o->serves[i]) {
			/* 3: the sender served it itself (it gave up waiting). */
			if (!WIFEXITED(status) || WEXITSTATUS(status) != 3)
				(*(WIFEXITED(status) && !WEXITSTATUS(status) ? &o->serves_done : &o->serves_failed))++;
			o->serves[i] = 0;
		}
	if (o->hand < 0)
		return;
	/* As many as are waiting (gossip-listen bounds how many run at once). */
	while (gossip_hand_recv(o->hand, &conn, &done, peer, sizeof peer) == 1)
		serve_child(o, conn, done, peer);
}

int gossip_observe_fd(struct gossip_observer *o)
{
	if (o->dw < 0 || o->hand < 0)
		return o->dw >= 0 ? o->dw : o->hand;
	if (o->ep < 0) {
		struct epoll_event ev = {.events = EPOLLIN};
		if ((o->ep = epoll_create1(EPOLL_CLOEXEC)) < 0 ||
		    epoll_ctl(o->ep, EPOLL_CTL_ADD, o->hand, &ev) < 0 || epoll_ctl(o->ep, EPOLL_CTL_ADD, o->dw, &ev) < 0) {
			/* The hand-offs alone, and the short waits of no watch. */
			if (o->ep >= 0)
				close(o->ep);
			o->ep = -1;
			close(o->dw);
			o->dw = -1;
			return o->hand;
		}
	}
	return o->ep;
}

/* A look is a stat when the store has not changed; one every 100 ms at most. A write to
 * the store brings one 50 ms on, and none comes sooner: the pipeline's merge stores a
 * message, then prints it, and the stream's copy must come first (what the store finds
 * first is news of another kind, sent on more widely); a file rewritten by hand is whole
 * by then. 50 ms after the last write of a burst, 300 ms after its first at most. Timed by
 * the monotonic clock: a wall clock stepped back would stop the looks. */
int gossip_observe_look(struct gossip_observer *o, uint64_t now)
{
	static const char *const names[] = {"store", NULL};
	uint64_t mono = gossip_mono_ms();
	if (o->dw >= 0 && gossip_dirwatch_wait(o->dw, names, 0) != 0) {
		o->look_asked = o->look_at ? o->look_asked : mono;
		o->look_at = mono + 50 > o->last_look + 100 ? mono + 50 : o->last_look + 100;
		if (o->look_at > o->look_asked + 300)
			o->look_at = o->look_asked + 300;
	}
	if (o->look_at ? mono < o->look_at : mono - o->last_look < 100)
		return 0;
	o->last_look = mono;
	o->look_at = 0;
	return gossip_observe_store(o, now);
}

static int busy_wait(const struct gossip_observer *o, uint64_t now)
{
	int busy = !o->swim || o->dw < 0 || o->fetch > 0 || o->repair > 0 || o->sync > 0 || o->join > 0 ||
	           o->seeds || o->announce_path || gossip_aggregator_busy(o->agg);
	for (size_t i = 0; i < SERVES && !busy; i++)
		busy = o->serves[i] > 0;
	if (busy)
		return 100;
	/* The summary is read again once an interval (events and deletes expire by the
	 * clock), and anti-entropy has its rounds. */
	uint64_t due = o->sum_at + (uint64_t)o->cfg.interval_ms;
	if (o->sync_ms && o->sync_next < due)
		due = o->sync_next;
	/* Overdue: the next turn's look at the store (100 ms after the last) reads it. */
	return due <= now ? 100 : due - now > 1000 ? 1000 : (int)(due - now);
}

int gossip_observe_wait(const struct gossip_observer *o, uint64_t now)
{
	int wait = busy_wait(o, now);
	uint64_t mono = gossip_mono_ms();
	if (o->look_at && o->look_at <= mono)
		return 1;
	if (o->look_at && o->look_at - mono < (uint64_t)wait)
		wait = (int)(o->look_at - mono);
	return wait;
}

uint64_t *gossip_observe_serves(struct gossip_observer *o, int failed)
{
	return failed ? &o->serves_failed : &o->serves_done;
}

/* A probe or a claim from a signer not in the table: its member record may be in the
 * store already (a join brought it). Look, at most every 100 ms, before the message is
 * handled; when it is not there either, fetch it from a live member. */
static int know_signer(struct gossip_observer *o, const uint8_t pk[32], uint64_t now)
{
	if (gossip_peers_find(o->table, pk, 0) || gossip_age_ms(now, o->last_lookup) < 100)
		return 0;
	o->last_lookup = now;
	int changed = gossip_observe_store(o, now);
	if (!gossip_peers_find(o->table, pk, 0))
		fetch(o, now);
	return changed;
}

/* ---- relaying responses ---- */

/* A response to a query (gossip-query answer sent it here as one of its relay members):
 * on to the asker's reply address, once, unless that is this node's own address. At most
 * RELAY_RATE a second: a flood of responses must not make this node a flood. */
static void relay(struct gossip_observer *o, const struct gossip_msg *m, const uint8_t *p, size_t n,
                  uint64_t now)
{
	struct gossip_response r;
	struct gossip_addr to;
	uint64_t refused = 0;
	if (gossip_response_decode(m->value, m->valuelen, &r) < 0)
		return;
	/* Where it goes is the responder's word: a name would be looked up here, holding up
	 * the failure detector for as long as DNS takes; a multicast or broadcast address
	 * would make one datagram many. */
	if (gossip_addr_unicast(&to, r.reply) < 0) {
		o->relays_refused++;
		return;
	}
	for (size_t i = 0; i < RELAYED; i++) {
		const struct relayed *d = &o->relayed[i];
		if (d->kind == r.kind && !memcmp(d->id, r.id, sizeof d->id) && !memcmp(d->who, m->origin, 32))
			return;
	}
	for (size_t i = 0; i < o->table->n; i++) {
		const struct gossip_peer *self = &o->table->v[i];
		for (int k = 0; self->self && k < self->info.naddrs; k++)
			if (!strcmp(self->info.addrs[k], r.reply) || !strcmp(self->info.addrs[k], to.text))
				return;
	}
	struct relayed *d = &o->relayed[o->relayed_next++ % RELAYED];
	memcpy(d->id, r.id, sizeof d->id);
	memcpy(d->who, m->origin, 32);
	d->kind = (uint8_t)r.kind;
	if (!gossip_rate_allow(&o->relay_rate, RELAY_RATE, now, &refused)) {
		o->relays_refused++;
		return;
	}
	if (refused)
		gossip_warn("relay: %llu responses to queries not relayed in a second (at most %d a second)",
		            (unsigned long long)refused, RELAY_RATE);
	if (!o->relay_ready) {
		if (gossip_keyring_load(&o->relay_keys, o->dir) < 0) {
			gossip_warn("relay: keyring: %s", gossip_error());
			return;
		}
		gossip_out_init(&o->relay_out, 65507, 500, 0, &o->relay_keys);
		o->relay_ready = 1;
	}
	long i = gossip_out_index(&o->relay_out, to.text);
	if (i < 0 || gossip_out_queue_to(&o->relay_out, (size_t)i, p, n) < 0)
		return;
	gossip_out_flush(&o->relay_out);
	o->relays++;
	/* Askers come and go, each on a port of its own: forget them. */
	if (o->relay_out.n > 64) {
		gossip_out_close(&o->relay_out);
		gossip_out_init(&o->relay_out, 65507, 500, 0, &o->relay_keys);
	}
}

int gossip_observe_msg(struct gossip_observer *o, const uint8_t *p, size_t n, uint64_t now,
                       int *pass_on)
{
	struct gossip_msg m;
	*pass_on = 1;
	if (gossip_msg_decode(p, n, &m) < 0)
		return 0;
	if (gossip_msg_is_share(&m)) {
		*pass_on = 0;  /* for this node alone */
		aggregate_share(o, &m, now);
		return 0;
	}
	if (gossip_msg_key_is(&m, GOSSIP_KEY_AGGREGATE) && m.type == GOSSIP_T_EVENT)
		gossip_aggregator_event(o->agg, &m, now);  /* and on, as any event */
	if (gossip_msg_is_response(&m)) {
		*pass_on = 0;  /* for its asker alone */
		relay(o, &m, p, n, now);
		return 0;
	}
	if (gossip_msg_is_probe(&m)) {
		*pass_on = 0;  /* between two nodes: never copied on */
		if (!o->swim)
			return 0;
		int changed = know_signer(o, m.origin, now);
		gossip_swim_probe(o->swim, &m, p, n, now);
		return changed;
	}
	if (o->swim && m.type == GOSSIP_T_SET &&
	    (gossip_msg_key_is(&m, GOSSIP_KEY_SUSPECT) || gossip_msg_key_is(&m, GOSSIP_KEY_DEAD))) {
		int changed = know_signer(o, m.origin, now);
		/* A claim that is no news here is not passed on. */
		*pass_on = gossip_swim_claim(o->swim, &m, now);
		return changed | *pass_on;
	}
	if (gossip_msg_key_is(&m, GOSSIP_KEY_HB))
		return on_heartbeat(o, &m, now);
	if (gossip_msg_key_is(&m, GOSSIP_KEY_FORCE_LEAVE))
		return on_force_leave(o, &m, now);
	if (gossip_msg_key_is(&m, GOSSIP_KEY_MEMBER)) {
		/* Not news when the table has it: a look at the store found it first, and
		 * passed it on then. A leave of a member not known here still is. */
		const struct gossip_peer *peer = gossip_peers_find(o->table, m.origin, 0);
		*pass_on = !peer || m.version > peer->member_version;
		int r = on_member(o, &m, p, n, now);
		if (r == 2 && o->swim && (peer = gossip_peers_find(o->table, m.origin, 0)))
			gossip_swim_met(o->swim, peer, NULL, 0);
		return r != 0;
	}
	return 0;
}

/* ---- the clock ---- */

/* Phi accrual's verdict on p; 1 when its state changed. */
static int judge_by_phi(struct gossip_observer *o, struct gossip_peer *p, uint64_t suspicion,
                        uint64_t now)
{
	const struct gossip_peers_cfg *cfg = &o->cfg;
	double phi = gossip_phi(p, now, cfg);
	/* Not heard since it joined or came back: suspect once the grace period is over,
	 * and no way back but a heartbeat (since restarts with each state). */
	if (!p->last_hb && (p->state != GOSSIP_P_ALIVE ||
	                    gossip_age_ms(now, p->since) > (uint64_t)(10 * cfg->interval_ms + cfg->pause_ms)))
		phi = cfg->phi_suspect;
	if (p->state == GOSSIP_P_ALIVE && phi >= cfg->phi_suspect) {
		gossip_peer_set_state(p, GOSSIP_P_SUSPECT, now);
		gossip_event_append(o->dir, now, "member-suspect", p);
	} else if (p->state == GOSSIP_P_SUSPECT && phi < cfg->phi_suspect) {
		gossip_peer_set_state(p, GOSSIP_P_ALIVE, now);
		gossip_event_append(o->dir, now, "member-alive", p);
	}
	else if (p->state == GOSSIP_P_SUSPECT && gossip_age_ms(now, p->since) >= suspicion) {
		gossip_peer_set_state(p, GOSSIP_P_DEAD, now);
		gossip_event_append(o->dir, now, "member-failed", p);
	} else
		return 0;
	return 1;
}

/* Forget the long dead and the long gone; 1 when any was. */
static int reap(struct gossip_observer *o, uint64_t now)
{
	struct gossip_peers *t = o->table;
	int changed = 0;
	for (size_t i = 0; i < t->n;) {
		struct gossip_peer *p = &t->v[i];
		if ((p->state == GOSSIP_P_DEAD || p->state == GOSSIP_P_LEFT) &&
		    gossip_age_ms(now, p->since) >= o->cfg.reap_ms) {
			gossip_event_append(o->dir, now, "member-reap", p);
			t->v[i] = t->v[--t->n];
			changed = 1;
		} else
			i++;
	}
	return changed;
}

/* The cluster's event, on stderr too: it is for the operator. */
static void partition_event(struct gossip_observer *o, const char *event, uint64_t now)
{
	gossip_event_append(o->dir, now, event, NULL);
	gossip_warn("%s", event);
}

int gossip_observe_tick(struct gossip_observer *o, uint64_t now)
{
	struct gossip_peers *t = o->table;
	const struct gossip_peers_cfg *cfg = &o->cfg;
	int changed = o->swim ? gossip_swim_tick(o->swim, now) : 0;
	/* A fetch that ended (else its child stays a zombie, and the clock busy). */
	if (o->fetch > 0 && waitpid(o->fetch, NULL, WNOHANG) != 0)
		o->fetch = 0;
	if (o->swim)
		repair(o, now);
	anti_entropy(o, now);
	join(o, now);
	aggregate_tick(o, now);
	size_t members = 0, alive = 0, suspects_recent = 0, unreachable = 0;
	for (size_t i = 0; i < t->n; i++)
		members += t->v[i].state != GOSSIP_P_LEFT;
	uint64_t suspicion = gossip_suspicion_ms(cfg, members);
	/* Members that turn suspect within this of each other went at once: twice the
	 * suspicion timeout, and never under 10 intervals, as their phis cross apart. */
	uint64_t window = 2 * suspicion > 10 * cfg->interval_ms ? 2 * suspicion : (uint64_t)(10 * cfg->interval_ms);
	for (size_t i = 0; i < t->n; i++) {
		struct gossip_peer *p = &t->v[i];
		if (p->self) {
			p->state = GOSSIP_P_ALIVE;
			continue;
		}
		/* With probes, the prober judges (in its tick, above). */
		if (!o->swim)
			changed |= judge_by_phi(o, p, suspicion, now);
		/* Reputation recovers a point a minute. */
		if (p->score < 100 && now > t->saved_at) {
			p->score += (double)(now - t->saved_at) / 60000.0;
			if (p->score > 100)
				p->score = 100;
		}
		/* Turned suspect within the window, and not heard from since: whether it is
		 * suspect or dead by now. */
		int down = p->state == GOSSIP_P_SUSPECT || p->state == GOSSIP_P_DEAD;
		if (down && p->suspected_at && gossip_age_ms(now, p->suspected_at) < window)
			suspects_recent++;
		unreachable += down;
		if (p->state != GOSSIP_P_LEFT && (p->state != GOSSIP_P_DEAD || gossip_age_ms(now, p->suspected_at) < window))
			alive++;  /* alive until lately: the members a partition is measured against */
	}
	changed |= reap(o, now);
	/* Many members turning suspect at once looks like a partition, not like failures. */
	size_t others = alive ? alive - (t->has_self ? 1 : 0) : 0;
	if (!t->partition_since && others >= 2 &&
	    (double)suspects_recent >= cfg->partition_share * (double)others && suspects_recent >= 2) {
		t->partition_since = now;
		partition_event(o, "partition-suspected", now);
		changed = 1;
	} else if (t->partition_since &&
	           (double)unreachable < cfg->partition_share * (double)(others + unreachable) / 2) {
		t->partition_since = 0;
		partition_event(o, "partition-healed", now);
		changed = 1;
	}
	t->saved_at = now;
	return changed;
}

/* ---- reputation ---- */

/* One "TIME ORIGIN REASON" line of DIR/rejects: 10 points off the signer's score. */
static void reject_line(struct gossip_observer *o, const char *line)
{
	char b64[64], reason[96];
	uint8_t pk[32];
	if (sscanf(line, "%*s %63s %95[^\n]", b64, reason) != 2 || gossip_unb64(pk, 32, b64, strlen(b64)) < 0)
		return;
	struct gossip_peer *p = gossip_peers_find(o->table, pk, 0);
	if (!p)
		return;
	p->rejected++;
	p->score = p->score > 10 ? p->score - 10 : 0;
	snprintf(p->why, sizeof p->why, "%llu rejected, last: %s", (unsigned long long)p->rejected, reason);
}

/* DIR/rejects: "TIME ORIGIN REASON" lines that gossip-listen and gossip-merge append
 * (gossip_log_append), followed with gossip_log_tail: when the log is renamed to
 * rejects.1, the rest of the old file is read to its end before the new one, so every
 * line is counted once however the renaming falls between two reads. */
void gossip_observe_rejects(struct gossip_observer *o)
{
	struct gossip_buf *b = &o->rejects_part;
	for (int files = 0; files < 4; files++) {
		int finished = gossip_log_tail_read(&o->rejects, b);
		size_t at = 0;
		for (;;) {
			uint8_t *nl = b->len > at ? memchr(b->p + at, '\n', b->len - at) : NULL;
			if (!nl)
				break;
			*nl = 0;
			if (memchr(b->p + at, 0, (size_t)(nl - (b->p + at))) == NULL)
				reject_line(o, (const char *)b->p + at);
			at = (size_t)(nl - b->p) + 1;
		}
		/* What is left is the start of a line still being written; in a file renamed
		 * away, or longer than any line, it never ends: dropped. */
		if (finished || b->len - at > 4096)
			at = b->len;
		if (at) {
			memmove(b->p, b->p + at, b->len - at);
			b->len -= at;
		}
		if (!finished)
			break;
	}
}
