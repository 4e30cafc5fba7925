/* swim.c: failure detection by probes, SWIM's (Das et al.) with Lifeguard's independent
 * suspicions (Dadgar et al.), over signed messages.
 * Every interval this node pings one member, going round the members in a shuffled
 * order. No ack within a fifth of the interval: it pings again and asks INDIRECT other
 * members to ping the target for it, and they pass the target's ack back. No ack within
 * three fifths: the target is suspect, and a signed claim says so, to the target itself
 * and to the cluster. A member that hears it is suspected refutes the claim with a new
 * incarnation of its member record. Every member that hears the claim probes the target
 * too, and tells the claimer when it gets no ack either: with such a confirmation the
 * claimer declares the target dead after the suspicion timeout, without one only after
 * SLOW times that; so do the others, from when they heard the claim, unless a dead claim
 * comes first. A deadline that passed while this node did not run is no verdict: once a
 * probe, it gets as long again as the deadline was overdue. A node claimed down was too
 * slow, and slows its probes down (Lifeguard's local health). */
#include "gossip.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

enum { INDIRECT = 3, PROBES = 16, RELAYS = 64, SLOW = 4, SUMS = 8, HEALTH = 8 };
/* Incarnations are wall-clock milliseconds (a record's: its time; a refutation's: now, or
 * just above the claim): a claim further ahead of this node's clock than a message may be
 * (gossip(7), --max-skew's default) is about no record of ours. */
#define CLAIM_AHEAD_MS 300000u
/* How long a claim above our incarnation waits for the record of ours it names to be read
 * back (observe looks at the store within 0.3 s; a second for a store held locked). */
#define AHEAD_WAIT_MS 2000u

/* A ping under way: the round's (probes[0]), or one checking another member's claim. */
struct probe {
	int active, indirect;  /* indirect: other members were asked to ping too */
	int hello;  /* sent as a hello (the target's key after the nonce): does it read summaries? */
	int graced;  /* its deadline passed while this node did not run: given more time, once */
	uint64_t window;  /* the ack window when it started: a drop in health does not shorten it */
	uint8_t sent[GOSSIP_NONCE_LEN + 32];  /* the ping's value, which a retry repeats */
	size_t sentlen;
	uint8_t target[32], nonce[GOSSIP_NONCE_LEN];
	uint8_t claimer[32];  /* checking a claim: who made it */
	uint64_t start;
};

/* A ping sent for another member: the target's ack goes back to the asker. */
struct relay {
	uint8_t nonce[GOSSIP_NONCE_LEN], asker[32];
	uint64_t until;
};

/* Whether a member reads store summaries in pings and acks, as learnt at its incarnation
 * (a restart may have upgraded it: asked again at a new one), from its acks to our own
 * pings only (a ping can be replayed; an ack to our fresh nonce cannot). And the repairs
 * made with it: the pair of summaries the last was made on (not again on that pair), and
 * the back-off after a failed one. */
struct caps {
	uint8_t pk[32];
	uint64_t incarnation;
	int known;  /* what speaks says is known at incarnation */
	int speaks;  /* 1: it does; 0: it acked a hello without one */
	int paired;  /* pair holds the last repair's (ours, theirs) */
	uint8_t pair[2 * GOSSIP_SUM_LEN];
	uint64_t backoff, retry_at;  /* after a failed repair: none before retry_at */
};

/* A summary other than ours, seen from members: since when, and when last. */
struct seen_sum {
	uint8_t sum[GOSSIP_SUM_LEN];
	uint64_t first, last;
	int used;
};

struct gossip_swim {
	struct gossip_peers *table;
	struct gossip_peers_cfg cfg;
	struct gossip_author *author;
	char dir[4096];
	gossip_swim_send_fn *send;
	void *ctx;
	uint64_t incarnation;  /* this node's, raised by each refutation */
	/* Lifeguard's local health: 0 is well. Each new claim that this node is down (it was
	 * too slow to answer) raises it, up to HEALTH; each ack to its own round's ping
	 * lowers it. Ack windows and the interval are 1 + health times as long, so that a
	 * node too busy to answer in time also accuses less, and later. */
	int health;
	uint64_t acks;  /* acks to this prober's own pings (fresh nonces), since it started */
	int left;  /* this node left (gossip_swim_leave): nothing is refuted or probed any more */
	/* Refutations: at most one a gap (refute_gap: a member that lies could ask for one at
	 * each record it sees); a claim that comes sooner is refuted when the gap is over. */
	uint64_t refuted_at, refute_inc;
	int refuted, refute_due;
	/* The highest claim above our incarnation, about a record of ours not read back yet
	 * (a tag's, the start's), and when it first came (0: none): it waits for that record,
	 * AHEAD_WAIT_MS at most. */
	uint64_t ahead_inc, ahead_at;
	uint64_t lie_said;  /* when a claim above our incarnation was last reported */
	uint64_t health_at;  /* when health last rose */
	struct gossip_buf self_record;  /* this node's newest member record, as signed */
	struct probe probes[PROBES];
	struct relay relays[RELAYS];
	uint8_t (*order)[32];  /* the round: members in a shuffled order */
	size_t norder, order_pos;
	uint64_t next_probe;
	/* Repair (gossip(7), THE NODE): this node's summary and since when it is unchanged;
	 * the others seen; the member chosen for a push-pull sync, not yet taken. */
	int have_sum, pinned;
	uint8_t sum[GOSSIP_SUM_LEN];
	uint64_t sum_since;
	struct seen_sum sums[SUMS];
	struct caps *caps;
	size_t ncaps;
	int due;
	uint8_t due_pk[32], due_sum[GOSSIP_SUM_LEN];
	uint64_t due_at, last_repair;
	int repaired;  /* last_repair is set */
};

struct gossip_swim *gossip_swim_new(struct gossip_peers *t, const struct gossip_peers_cfg *cfg,
                                    struct gossip_author *author, const char *dir,
                                    gossip_swim_send_fn *send, void *ctx, uint64_t now)
{
	struct gossip_swim *s = calloc(1, sizeof *s);
	if (!s)
		return NULL;
	s->table = t;
	s->cfg = *cfg;
	s->author = author;
	snprintf(s->dir, sizeof s->dir, "%s", dir);
	s->send = send;
	s->ctx = ctx;
	for (size_t i = 0; i < t->n; i++) {
		/* A suspicion from before a restart is not ours to time any more. */
		if (t->v[i].state == GOSSIP_P_SUSPECT)
			t->v[i].state = GOSSIP_P_ALIVE;
		if (!memcmp(t->v[i].pk, author->id.pk, 32))
			s->incarnation = t->v[i].info.incarnation;
	}
	s->next_probe = now + randombytes_uniform((uint32_t)cfg->interval_ms + 1);
	return s;
}

void gossip_swim_free(struct gossip_swim *s)
{
	if (!s)
		return;
	gossip_buf_free(&s->self_record);
	free(s->order);
	free(s->caps);
	free(s);
}

/* Alive or suspect: in the round, and told about claims. */
static int live(const struct gossip_peer *p)
{
	return !p->self && (p->state == GOSSIP_P_ALIVE || p->state == GOSSIP_P_SUSPECT);
}

static uint64_t ack_ms(const struct gossip_swim *s)
{
	return (s->cfg.interval_ms >= 5 ? (uint64_t)(s->cfg.interval_ms / 5) : 1) * (uint64_t)(1 + s->health);
}

/* A probe's ack window: as long as when it started, or longer if health fell since. */
static uint64_t window(const struct gossip_swim *s, const struct probe *pr)
{
	uint64_t a = ack_ms(s);
	return pr->window > a ? pr->window : a;
}

/* What is known of whether p reads summaries: NULL when nothing (at its incarnation). */
/* The entry of member pk (made when make is set and there is none), or NULL. */
static struct caps *caps_find(struct gossip_swim *s, const uint8_t pk[32], int make)
{
	for (size_t i = 0; i < s->ncaps; i++)
		if (!memcmp(s->caps[i].pk, pk, 32))
			return &s->caps[i];
	if (!make)
		return NULL;
	struct caps *c = realloc(s->caps, (s->ncaps + 1) * sizeof *c);
	if (!c)
		return NULL;
	s->caps = c;
	c = &s->caps[s->ncaps++];
	memset(c, 0, sizeof *c);
	memcpy(c->pk, pk, 32);
	return c;
}

static struct caps *caps_of(struct gossip_swim *s, const struct gossip_peer *p)
{
	struct caps *c = caps_find(s, p->pk, 0);
	/* Nothing known, or at another incarnation (a restart, maybe another version): ask. */
	return c && c->known && c->incarnation == p->info.incarnation ? c : NULL;
}

static void set_caps(struct gossip_swim *s, const struct gossip_peer *p, int speaks)
{
	struct caps *c = caps_find(s, p->pk, 1);
	if (c) {
		c->incarnation = p->info.incarnation;
		c->known = 1;
		c->speaks = speaks;
	}
}

/* Keys no longer in the table are dropped (at a round's reshuffle). */
static void caps_prune(struct gossip_swim *s)
{
	size_t k = 0;
	for (size_t i = 0; i < s->ncaps; i++)
		if (gossip_peers_find(s->table, s->caps[i].pk, 0))
			s->caps[k++] = s->caps[i];
	s->ncaps = k;
}

/* A summary sum from member p in an ack to our own ping: when it differs from
 * ours, and this pair of summaries has stood for two intervals (a value in flight would
 * have arrived by then), p is the member to repair with. */
static void saw_summary(struct gossip_swim *s, const struct gossip_peer *p, const uint8_t *sum,
                        uint64_t now)
{
	if (!s->have_sum || !memcmp(sum, s->sum, GOSSIP_SUM_LEN) || p->state != GOSSIP_P_ALIVE)
		return;
	uint64_t i2 = 2 * (uint64_t)s->cfg.interval_ms;
	struct seen_sum *e = NULL, *old = &s->sums[0];
	for (size_t i = 0; i < SUMS && !e; i++) {
		if (s->sums[i].used && !memcmp(s->sums[i].sum, sum, GOSSIP_SUM_LEN))
			e = &s->sums[i];
		else if (!s->sums[i].used || (old->used && s->sums[i].last < old->last))
			old = &s->sums[i];
	}
	/* Not seen for over three intervals: it stands from now (seen again, not still). */
	if (!e || gossip_age_ms(now, e->last) > 3 * (uint64_t)s->cfg.interval_ms) {
		e = e ? e : old;
		memcpy(e->sum, sum, GOSSIP_SUM_LEN);
		e->used = 1;
		e->first = now;
	}
	e->last = now;
	uint64_t since = e->first > s->sum_since ? e->first : s->sum_since;
	if (gossip_age_ms(now, since) >= i2) {
		s->due = 1;
		memcpy(s->due_pk, p->pk, 32);
		memcpy(s->due_sum, sum, GOSSIP_SUM_LEN);
		s->due_at = now;
	}
}

void gossip_swim_pin_summary(struct gossip_swim *s, const uint8_t *sum, uint64_t now)
{
	s->pinned = 0;
	gossip_swim_summary(s, sum, now);
	s->pinned = 1;
}

void gossip_swim_summary(struct gossip_swim *s, const uint8_t *sum, uint64_t now)
{
	if (s->pinned)
		return;
	if (!sum) {
		s->have_sum = 0;
		return;
	}
	if (!s->have_sum || memcmp(sum, s->sum, GOSSIP_SUM_LEN)) {
		memcpy(s->sum, sum, GOSSIP_SUM_LEN);
		s->sum_since = now;
		s->have_sum = 1;
		s->due = 0;  /* a pair that no longer stands */
	}
}

int gossip_swim_repair(struct gossip_swim *s, int busy, uint64_t now, uint8_t pk[32])
{
	if (!s->due)
		return 0;
	/* A choice older than an interval is dropped: the next summary seen decides. */
	if (gossip_age_ms(now, s->due_at) > (uint64_t)s->cfg.interval_ms) {
		s->due = 0;
		return 0;
	}
	if (busy || (s->repaired && gossip_age_ms(now, s->last_repair) < (uint64_t)s->cfg.interval_ms))
		return 0;
	struct gossip_peer *p = gossip_peers_find(s->table, s->due_pk, 0);
	s->due = 0;
	if (!p || p->self || p->state != GOSSIP_P_ALIVE)
		return 0;
	/* A repair was made on this very pair (ours, theirs): it fixed nothing (trust that
	 * differs, a liar, revoked messages) and would fix nothing again until a side
	 * changes. After a failed one, not before its back-off is over. */
	uint8_t pair[2 * GOSSIP_SUM_LEN];
	memcpy(pair, s->sum, GOSSIP_SUM_LEN);
	memcpy(pair + GOSSIP_SUM_LEN, s->due_sum, GOSSIP_SUM_LEN);
	struct caps *c = caps_find(s, p->pk, 1);
	if (c && ((c->paired && !memcmp(c->pair, pair, sizeof pair)) || (c->backoff && now < c->retry_at)))
		return 0;
	if (c) {
		c->paired = 1;
		memcpy(c->pair, pair, sizeof pair);
	}
	memcpy(pk, s->due_pk, 32);
	s->last_repair = now;
	s->repaired = 1;
	/* The pair must stand two intervals again before the next repair it asks for. */
	for (size_t i = 0; i < SUMS; i++)
		s->sums[i].used = 0;
	return 1;
}

void gossip_swim_repair_done(struct gossip_swim *s, const uint8_t pk[32], int ok, uint64_t max_ms,
                             uint64_t now)
{
	struct caps *c = caps_find(s, pk, 0);
	if (!c)
		return;
	if (ok) {
		c->backoff = 0;
		return;
	}
	/* Failed (reachable by UDP, not by TCP; refused): an interval, doubling to max_ms. */
	uint64_t i = (uint64_t)s->cfg.interval_ms;
	c->backoff = c->backoff ? 2 * c->backoff : (i ? i : 1);
	if (max_ms && c->backoff > max_ms)
		c->backoff = max_ms;
	c->retry_at = now + c->backoff;
}

static void send_probe(struct gossip_swim *s, const struct gossip_peer *to, int type,
                       const uint8_t *v, size_t n)
{
	struct gossip_msg m = {0};
	struct gossip_buf b = {0};
	m.type = (unsigned)type;
	m.value = v;
	m.valuelen = n;
	m.has_value = 1;
	if (gossip_msg_sign(&b, &m, &s->author->id) < 0)
		gossip_warn("%s", gossip_error());
	else
		s->send(s->ctx, to, b.p, b.len);
	gossip_buf_free(&b);
}

/* Sign a set of key to v (CBOR, as bytes) into b. */
static int sign_set(struct gossip_swim *s, struct gossip_buf *b, const char *key,
                    const uint8_t *v, size_t n)
{
	struct gossip_msg m = {0};
	m.type = GOSSIP_T_SET;
	m.key = (const uint8_t *)key;
	m.keylen = strlen(key);
	m.value = v;
	m.valuelen = n;
	m.has_value = 1;
	return gossip_author_sign(s->author, b, &m);
}

/* A claim that p is suspect or dead at its incarnation, to member to (p itself, or the
 * claimer of a claim this confirms); with all, also to every live member (eager: a claim
 * is rare, and each member that finds it news passes it on as rumor). */
static void send_claim(struct gossip_swim *s, const char *key, const struct gossip_peer *p,
                       const struct gossip_peer *to, int all)
{
	struct gossip_buf v = {0}, out = {0};
	if (gossip_cbor_head(&v, GOSSIP_MT_ARRAY, 2) < 0 || gossip_cbor_str(&v, GOSSIP_MT_BSTR, p->pk, 32) < 0 ||
	    gossip_cbor_head(&v, GOSSIP_MT_UINT, p->info.incarnation) < 0 ||
	    sign_set(s, &out, key, v.p, v.len) < 0)
		gossip_warn("%s", gossip_error());
	else {
		for (size_t i = 0; all && i < s->table->n; i++)
			if (live(&s->table->v[i]) && &s->table->v[i] != to)
				s->send(s->ctx, &s->table->v[i], out.p, out.len);
		s->send(s->ctx, to, out.p, out.len);
	}
	gossip_buf_free(&v);
	gossip_buf_free(&out);
}

static void turn(struct gossip_swim *s, struct gossip_peer *p, int state, uint64_t now)
{
	gossip_peer_set_state(p, state, now);
	gossip_event_append(s->dir, now, state == GOSSIP_P_SUSPECT ? "member-suspect" : "member-failed", p);
}

void gossip_swim_self_record(struct gossip_swim *s, uint64_t incarnation, const uint8_t *p, size_t n)
{
	if (incarnation < s->incarnation)
		return;
	s->incarnation = incarnation;
	s->self_record.len = 0;
	if (gossip_buf_put(&s->self_record, p, n) < 0)
		gossip_warn("%s", gossip_error());
}

/* A refutation: health one worse, at most once an interval as it now is (1 + health
 * times the base), as often as an ack to our own round's ping can make it better, so that
 * a member that keeps claiming us down cannot hold our probes 9 times slower. */
static void health_up(struct gossip_swim *s, uint64_t now)
{
	if (s->health >= HEALTH ||
	    (s->health_at && now - s->health_at < (uint64_t)(s->cfg.interval_ms * (1 + s->health))))
		return;
	s->health++;
	s->health_at = now ? now : 1;
}

/* A new incarnation of our member record, signed and sent to every member we know (eager,
 * so that no suspicion timer runs out on it) and by rumor. */
static void refute_now(struct gossip_swim *s, struct gossip_peer *self, uint64_t claimed, uint64_t now)
{
	struct gossip_member m = self->info;
	struct gossip_buf rec = {0}, signed_rec = {0};
	m.incarnation = now > claimed ? now : claimed + 1;
	if (gossip_member_encode(&rec, &m) < 0 || sign_set(s, &signed_rec, GOSSIP_KEY_MEMBER, rec.p, rec.len) < 0) {
		gossip_warn("%s", gossip_error());
		gossip_buf_free(&rec);
		gossip_buf_free(&signed_rec);
		return;
	}
	gossip_buf_free(&rec);
	gossip_buf_free(&s->self_record);
	s->self_record = signed_rec;
	s->incarnation = m.incarnation;
	s->refuted = 1;
	s->refuted_at = now;
	s->refute_due = 0;
	gossip_warn("refuting a claim that this node is down or gone: incarnation %llu",
	            (unsigned long long)s->incarnation);
	for (size_t i = 0; i < s->table->n; i++)
		if (!s->table->v[i].self && s->table->v[i].state != GOSSIP_P_LEFT)
			s->send(s->ctx, &s->table->v[i], s->self_record.p, s->self_record.len);
	s->send(s->ctx, NULL, s->self_record.p, s->self_record.len);
}

/* A claim about an incarnation above ours that no record of ours has (a lie, only we sign
 * our records): said once a minute at most, for a liar may send many. */
static void say_lie(struct gossip_swim *s, uint64_t claimed, uint64_t now)
{
	if (s->lie_said && now - s->lie_said < 60000)
		return;
	gossip_warn("a claim that this node is down at incarnation %llu, above its own (%llu) and no record "
	            "of its own: ignored (a member that lies)",
	            (unsigned long long)claimed, (unsigned long long)s->incarnation);
	s->lie_said = now ? now : 1;
}

/* The least time between two refutations: an interval, or half the suspicion timeout when
 * that is shorter (-S under 2), so that a claim held back is refuted before it can end in
 * a verdict. */
static uint64_t refute_gap(const struct gossip_swim *s)
{
	size_t members = 0;
	for (size_t i = 0; i < s->table->n; i++)
		members += s->table->v[i].state != GOSSIP_P_LEFT;
	uint64_t gap = (uint64_t)s->cfg.interval_ms, half = gossip_suspicion_ms(&s->cfg, members) / 2;
	uint64_t floor = gap / 10 ? gap / 10 : 1;  /* (-S near 0: still a limit) */
	return half < gap ? (half > floor ? half : floor) : gap;
}

/* Claimed suspect or dead at incarnation claimed by claimer (NULL: not known here, or a
 * claim passed on): a new incarnation of our member record says otherwise, unless we said
 * so already; then the claimer gets our newest record, and so does the cluster, by rumor.
 * A claim above our incarnation is about a record observe has not read back yet (a tag,
 * the start's announcement), and is refuted as well, if not further ahead of the clock
 * than a record of ours can be: beyond, it is a lie (only we sign our records), and
 * refuting it would let a liar drive our incarnation to 2^64-1, where no record is newer.
 * 1 when a new incarnation was signed. */
static int refute(struct gossip_swim *s, uint64_t claimed, const struct gossip_peer *claimer,
                  uint64_t now)
{
	struct gossip_peer *self = gossip_peers_find(s->table, s->author->id.pk, 0);
	if (!self || s->left)
		return 0;
	if (claimed > s->incarnation && (claimed == UINT64_MAX || claimed > now + CLAIM_AHEAD_MS)) {
		/* (2^64-1: no incarnation is newer, and a wrap to 0 would make every old claim
		 * new again.) */
		say_lie(s, claimed, now);
		return 0;
	}
	if (claimed > s->incarnation) {
		/* About a record of ours not read back yet: refuted once it is (the claim then
		 * names our incarnation), with what it says; not at once, above the claim, which
		 * would let a liar keep us minutes ahead of the clock, and lose a tag's change. */
		if (!s->ahead_at || claimed > s->ahead_inc)
			s->ahead_inc = claimed;
		if (!s->ahead_at)
			s->ahead_at = now ? now : 1;
	} else if (claimed == s->incarnation) {
		if (!s->refuted || now - s->refuted_at >= refute_gap(s)) {
			refute_now(s, self, claimed, now);
			return 1;
		}
		/* Refuted less than a gap ago: again when it is over. */
		s->refute_due = 1;
		s->refute_inc = claimed;
	}
	if (claimer && s->self_record.len)
		s->send(s->ctx, claimer, s->self_record.p, s->self_record.len);
	if (s->self_record.len)
		s->send(s->ctx, NULL, s->self_record.p, s->self_record.len);
	return 0;
}

void gossip_swim_met(struct gossip_swim *s, const struct gossip_peer *p, const uint8_t *rec, size_t n)
{
	if (p->self)
		return;
	if (s->self_record.len && !s->left)
		s->send(s->ctx, p, s->self_record.p, s->self_record.len);
	for (size_t i = 0; rec && i < s->table->n; i++)
		if (live(&s->table->v[i]) && &s->table->v[i] != p)
			s->send(s->ctx, &s->table->v[i], rec, n);
}

uint64_t gossip_swim_acks(const struct gossip_swim *s)
{
	return s->acks;
}

void gossip_swim_refute_leave(struct gossip_swim *s, uint64_t now)
{
	refute(s, s->incarnation, NULL, now);
}

long gossip_swim_leave(struct gossip_swim *s, struct gossip_buf *out)
{
	struct gossip_msg m = {0};
	long told = 0;
	m.type = GOSSIP_T_DEL;
	m.key = (const uint8_t *)GOSSIP_KEY_MEMBER;
	m.keylen = strlen(GOSSIP_KEY_MEMBER);
	if (gossip_author_sign(s->author, out, &m) < 0)
		return -1;
	s->left = 1;
	for (size_t i = 0; i < s->table->n; i++)
		if (!s->table->v[i].self && s->table->v[i].state != GOSSIP_P_LEFT) {
			s->send(s->ctx, &s->table->v[i], out->p, out->len);
			told++;
		}
	s->send(s->ctx, NULL, out->p, out->len);
	return told;
}

int gossip_swim_left(const struct gossip_swim *s)
{
	return s->left;
}

/* Heard directly from p: a member we think suspect, dead or gone is told so, so that it
 * can refute it (at most once an interval). A member that left has no claim of its own:
 * it is told it is dead, which it refutes all the same, when it did not leave (a stale
 * or replayed leave). */
static void heard_from(struct gossip_swim *s, struct gossip_peer *p, uint64_t now)
{
	if (p->state != GOSSIP_P_LEFT)
		p->last_hb = now;
	if (p->state != GOSSIP_P_ALIVE && gossip_age_ms(now, p->told) >= (uint64_t)s->cfg.interval_ms) {
		p->told = now;
		send_claim(s, p->state == GOSSIP_P_SUSPECT ? GOSSIP_KEY_SUSPECT : GOSSIP_KEY_DEAD, p, p, 0);
	}
}

void gossip_swim_probe(struct gossip_swim *s, const struct gossip_msg *m, const uint8_t *p, size_t n,
                       uint64_t now)
{
	struct gossip_peer *from = gossip_peers_find(s->table, m->origin, 0);
	if (!from || from->self)
		return;
	heard_from(s, from, now);
	if (m->type == GOSSIP_T_PING) {
		/* Acked even when it left: it is evidently up, and is refuting that. A ping with
		 * a summary, or a hello (our own key as the target: no older node sends that),
		 * comes from a node that reads one in the ack. Nothing else is taken from a
		 * ping, which anyone who saw it can replay: summaries, and whether a member reads
		 * them, come from acks to our own pings. */
		int sum = m->valuelen == GOSSIP_NONCE_LEN + GOSSIP_SUM_LEN;
		if (m->valuelen == GOSSIP_NONCE_LEN || sum || !memcmp(m->value + GOSSIP_NONCE_LEN, s->author->id.pk, 32)) {
			uint8_t v[GOSSIP_NONCE_LEN + GOSSIP_SUM_LEN];
			int reads = m->valuelen != GOSSIP_NONCE_LEN;
			memcpy(v, m->value, GOSSIP_NONCE_LEN);
			if (reads && s->have_sum)
				memcpy(v + GOSSIP_NONCE_LEN, s->sum, GOSSIP_SUM_LEN);
			send_probe(s, from, GOSSIP_T_ACK, v,
			           reads && s->have_sum ? sizeof v : GOSSIP_NONCE_LEN);
			return;
		}
		if (from->state == GOSSIP_P_LEFT)
			return;  /* no pings on its behalf until it is back */
		/* Asked to ping a member for the asker: with the asker's nonce, so that the
		 * member's ack, passed back unchanged, answers the asker's own probe. */
		struct gossip_peer *t = gossip_peers_find(s->table, m->value + GOSSIP_NONCE_LEN, 0);
		if (!t || t->self || t->state == GOSSIP_P_LEFT)
			return;
		struct relay *r = &s->relays[0];
		for (size_t i = 0; i < RELAYS; i++)
			if (s->relays[i].until < r->until)
				r = &s->relays[i];
		memcpy(r->nonce, m->value, GOSSIP_NONCE_LEN);
		memcpy(r->asker, from->pk, 32);
		r->until = now + 3 * ack_ms(s);
		send_probe(s, t, GOSSIP_T_PING, m->value, GOSSIP_NONCE_LEN);
		return;
	}
	for (size_t i = 0; i < PROBES; i++)
		if (s->probes[i].active && !memcmp(m->value, s->probes[i].nonce, GOSSIP_NONCE_LEN) &&
		    !memcmp(m->origin, s->probes[i].target, 32)) {
			s->probes[i].active = 0;
			s->acks++;
			if (i == 0 && s->health > 0)
				s->health--;
			/* An ack to our own nonce: fresh, never a replay. */
			if (m->valuelen == GOSSIP_NONCE_LEN + GOSSIP_SUM_LEN) {
				set_caps(s, from, 1);
				saw_summary(s, from, m->value + GOSSIP_NONCE_LEN, now);
			} else if (s->probes[i].hello && !s->probes[i].indirect)
				set_caps(s, from, 0);  /* after indirect pings, it may be a helper's plain relay */
			return;
		}
	for (size_t i = 0; i < RELAYS; i++) {
		struct relay *r = &s->relays[i];
		struct gossip_peer *asker;
		if (r->until >= now && !memcmp(r->nonce, m->value, GOSSIP_NONCE_LEN) &&
		    (asker = gossip_peers_find(s->table, r->asker, 0))) {
			s->send(s->ctx, asker, p, n);
			r->until = 0;
			return;
		}
	}
}

/* Ping t: for the round (claimer NULL), or to check claimer's claim. */
static void start_probe(struct gossip_swim *s, const struct gossip_peer *t, const uint8_t *claimer,
                        uint64_t now)
{
	struct probe *pr = &s->probes[0];
	for (size_t i = 1; claimer && i < PROBES; i++)
		if (!s->probes[i].active || i == PROBES - 1) {
			pr = &s->probes[i];
			break;
		}
	if (!claimer && pr->active)
		return;
	memcpy(pr->target, t->pk, 32);
	if (claimer)
		memcpy(pr->claimer, claimer, 32);
	randombytes_buf(pr->nonce, sizeof pr->nonce);
	pr->start = now;
	pr->indirect = 0;
	pr->graced = 0;
	pr->window = ack_ms(s);
	pr->active = 1;
	pr->hello = 0;
	/* With our summary to a member that reads it; to one not known to, a hello (its own
	 * key after the nonce, which an older node acks as a plain ping); to one that said
	 * no at this incarnation, a plain ping. Without a summary of our own, plain. */
	struct caps *c = s->have_sum ? caps_of(s, t) : NULL;
	uint8_t v[GOSSIP_NONCE_LEN + 32];
	memcpy(v, pr->nonce, GOSSIP_NONCE_LEN);
	pr->sentlen = GOSSIP_NONCE_LEN;
	if (c && c->speaks) {
		memcpy(v + GOSSIP_NONCE_LEN, s->sum, GOSSIP_SUM_LEN);
		pr->sentlen += GOSSIP_SUM_LEN;
	} else if (s->have_sum && !c) {
		memcpy(v + GOSSIP_NONCE_LEN, t->pk, 32);
		pr->hello = 1;
		pr->sentlen += 32;
	}
	memcpy(pr->sent, v, pr->sentlen);
	send_probe(s, t, GOSSIP_T_PING, v, pr->sentlen);
}

int gossip_swim_claim(struct gossip_swim *s, const struct gossip_msg *m, uint64_t now)
{
	struct gossip_cur c = {m->value, m->valuelen, 0};
	struct gossip_ev ev;
	int dead = gossip_msg_key_is(m, GOSSIP_KEY_DEAD);
	if (!m->has_value || m->value_text || gossip_cur_expect(&c, GOSSIP_EV_ARRAY, &ev, "claim") < 0 ||
	    ev.u != 2 || gossip_cur_expect(&c, GOSSIP_EV_BSTR, &ev, "claim") < 0 || ev.len != 32)
		return 0;
	struct gossip_peer *t = gossip_peers_find(s->table, ev.data, 0);
	if (!t || gossip_cur_expect(&c, GOSSIP_EV_UINT, &ev, "claim") < 0)
		return 0;
	if (t->self) {
		if (refute(s, ev.u, gossip_peers_find(s->table, m->origin, 0), now))
			health_up(s, now);
		return 0;
	}
	/* About an incarnation it has since refuted, or a member that left: old news. About
	 * one it never announced (as far as we know): a lie, which its target would not
	 * refute, or news we will have with its record; not ours to act on, nor to pass on. */
	if (ev.u != t->info.incarnation || t->state == GOSSIP_P_LEFT || t->state == GOSSIP_P_DEAD)
		return 0;
	if (!dead && t->state == GOSSIP_P_SUSPECT) {
		/* Another member's own probe failed too: a confirmation of ours. */
		if (t->suspector && memcmp(m->origin, s->author->id.pk, 32))
			t->confirmations++;
		return 0;
	}
	turn(s, t, dead ? GOSSIP_P_DEAD : GOSSIP_P_SUSPECT, now);
	if (!dead)
		start_probe(s, t, m->origin, now);
	return 1;
}

/* The next member to probe: round the live members in a shuffled order, now and then a
 * dead one instead, so that one that is back hears about it. */
static struct gossip_peer *next_target(struct gossip_swim *s)
{
	struct gossip_peers *t = s->table;
	size_t dead = 0;
	for (size_t i = 0; i < t->n; i++)
		dead += t->v[i].state == GOSSIP_P_DEAD;
	if (dead && randombytes_uniform(1000) < (uint32_t)(s->cfg.dead_chance * 1000)) {
		uint32_t k = randombytes_uniform((uint32_t)dead);
		for (size_t i = 0; i < t->n; i++)
			if (t->v[i].state == GOSSIP_P_DEAD && !k--)
				return &t->v[i];
	}
	for (int pass = 0; pass < 2; pass++) {
		while (s->order_pos < s->norder) {
			struct gossip_peer *p = gossip_peers_find(t, s->order[s->order_pos++], 0);
			if (p && live(p))
				return p;
		}
		uint8_t(*o)[32] = realloc(s->order, (t->n + 1) * sizeof *s->order);
		if (!o)
			return NULL;
		s->order = o;
		s->norder = s->order_pos = 0;
		caps_prune(s);
		for (size_t i = 0; i < t->n; i++) {
			if (!live(&t->v[i]))
				continue;
			size_t j = randombytes_uniform((uint32_t)s->norder + 1);
			memcpy(s->order[s->norder], s->order[j], 32);
			memcpy(s->order[j], t->v[i].pk, 32);
			s->norder++;
		}
	}
	return NULL;
}

/* No ack from pr's target t in time; 1 when the table changed. */
static int probe_failed(struct gossip_swim *s, struct probe *pr, struct gossip_peer *t, uint64_t now)
{
	pr->active = 0;
	if (pr != &s->probes[0]) {
		/* Checking a claim: tell the claimer (only), while the target is still suspect. */
		struct gossip_peer *c = gossip_peers_find(s->table, pr->claimer, 0);
		if (c && !c->self && t->state == GOSSIP_P_SUSPECT)
			send_claim(s, GOSSIP_KEY_SUSPECT, t, c, 0);
		return 0;
	}
	if (t->state != GOSSIP_P_ALIVE)
		return 0;
	turn(s, t, GOSSIP_P_SUSPECT, now);
	t->suspector = 1;
	t->confirmations = 0;
	send_claim(s, GOSSIP_KEY_SUSPECT, t, t, 1);
	return 1;
}

/* Suspects are dead after the suspicion timeout when another member confirmed our own
 * suspicion, else after SLOW times that; 1 when the table changed. */
static int time_out_suspects(struct gossip_swim *s, uint64_t now)
{
	struct gossip_peers *t = s->table;
	size_t members = 0;
	int changed = 0;
	for (size_t i = 0; i < t->n; i++)
		members += t->v[i].state != GOSSIP_P_LEFT;
	uint64_t suspicion = gossip_suspicion_ms(&s->cfg, members);
	for (size_t i = 0; i < t->n; i++) {
		struct gossip_peer *p = &t->v[i];
		uint64_t limit = p->suspector && p->confirmations ? suspicion : SLOW * suspicion;
		if (!p->self && p->state == GOSSIP_P_SUSPECT && gossip_age_ms(now, p->since) >= limit) {
			turn(s, p, GOSSIP_P_DEAD, now);
			if (p->suspector)
				send_claim(s, GOSSIP_KEY_DEAD, p, p, 1);
			changed = 1;
		}
	}
	return changed;
}

int gossip_swim_tick(struct gossip_swim *s, uint64_t now)
{
	struct gossip_peers *t = s->table;
	int changed = 0;
	/* A claim above our incarnation: once a record of ours comes up to it, a claim about
	 * our incarnation (past it: old news, our record was sent); none in time, a lie. */
	if (s->ahead_at && s->ahead_inc <= s->incarnation) {
		if (s->ahead_inc == s->incarnation && !s->refute_due) {
			s->refute_due = 1;
			s->refute_inc = s->ahead_inc;
		}
		s->ahead_at = 0;
	} else if (s->ahead_at && now - s->ahead_at >= AHEAD_WAIT_MS) {
		say_lie(s, s->ahead_inc, now);
		s->ahead_at = 0;
	}
	/* A claim about our incarnation held back by the gap: refuted when it is over, unless
	 * a record of ours raised our incarnation past it meanwhile. */
	if (s->refute_due && (!s->refuted || now - s->refuted_at >= refute_gap(s))) {
		struct gossip_peer *self = gossip_peers_find(t, s->author->id.pk, 0);
		s->refute_due = 0;
		if (self && !s->left && s->refute_inc == s->incarnation) {
			refute_now(s, self, s->refute_inc, now);
			health_up(s, now);
		}
	}
	for (size_t i = 0; i < PROBES; i++) {
		struct probe *pr = &s->probes[i];
		struct gossip_peer *target = pr->active ? gossip_peers_find(t, pr->target, 0) : NULL;
		if (!target) {
			pr->active = 0;
			continue;
		}
		uint64_t a = window(s, pr);
		/* A deadline overdue by more than a quarter of the ack window (the machine
		 * stalled, or this process was busy) says nothing of the target: its ack may
		 * be waiting behind the stall. Once a probe, a retry then due is sent at once,
		 * and the verdict waits as long again as the deadline was overdue (the time
		 * the others take to catch up), two ack windows at least and five at most
		 * (gossip-peers(1), Probing). */
		uint64_t due = pr->start + (pr->indirect ? 3 : 1) * a;
		int late = !pr->graced && now > due + a / 4;
		if (late) {
			uint64_t more = now - due < 2 * a ? 2 * a : now - due > 5 * a ? 5 * a : now - due;
			pr->start = now + more - 3 * a;
			pr->graced = 1;
		}
		if (!pr->indirect && (late || now >= pr->start + a)) {
			/* Again directly (one datagram may have been lost), and through INDIRECT
			 * other alive members, chosen at random. */
			uint8_t v[GOSSIP_NONCE_LEN + 32];
			size_t cand = 0;
			memcpy(v, pr->nonce, GOSSIP_NONCE_LEN);
			memcpy(v + GOSSIP_NONCE_LEN, pr->target, 32);
			send_probe(s, target, GOSSIP_T_PING, pr->sent, pr->sentlen);
			/* A member marked as reading summaries missed an ack to one: asked with a
			 * hello again next time (it may have restarted as an older node). */
			struct caps *c;
			if (pr->sentlen == GOSSIP_NONCE_LEN + GOSSIP_SUM_LEN && (c = caps_find(s, pr->target, 0)))
				c->known = 0;
			for (size_t k = 0; k < t->n; k++)
				cand += !t->v[k].self && t->v[k].state == GOSSIP_P_ALIVE && &t->v[k] != target;
			for (size_t k = 0, left = cand, want = INDIRECT; k < t->n && want; k++) {
				struct gossip_peer *h = &t->v[k];
				if (h->self || h->state != GOSSIP_P_ALIVE || h == target)
					continue;
				if (randombytes_uniform((uint32_t)left--) < want) {
					send_probe(s, h, GOSSIP_T_PING, v, sizeof v);
					want--;
				}
			}
			pr->indirect = 1;
		}
		if (now >= pr->start + 3 * a)
			changed |= probe_failed(s, pr, target, now);
	}
	if (now >= s->next_probe && !s->left) {
		double d = s->cfg.interval_ms * (1 + s->health) *
		           (1 + s->cfg.jitter * ((double)randombytes_uniform(2000001) / 1e6 - 1));
		struct gossip_peer *target;
		s->next_probe = now + (uint64_t)d;
		if (!s->probes[0].active && (target = next_target(s)))
			start_probe(s, target, NULL, now);
	}
	return changed | time_out_suspects(s, now);
}

int gossip_swim_wait(const struct gossip_swim *s, uint64_t now)
{
	uint64_t due = s->left ? now + 1000 : s->next_probe;  /* no round's probe once left */
	for (size_t i = 0; i < PROBES; i++)
		if (s->probes[i].active) {
			uint64_t d = s->probes[i].start + (s->probes[i].indirect ? 3 : 1) * window(s, &s->probes[i]);
			due = d < due ? d : due;
		}
	/* A suspect's timeout and a repair wish are judged at the next tick: no later than
	 * 100 ms then, as before. Otherwise the next probe or probe deadline, a second at most. */
	uint64_t cap = s->due ? 100 : 1000;
	if (s->ahead_at)
		cap = 100;  /* waiting for a record of ours to be read back: looked at each tick */
	if (s->refute_due) {
		uint64_t r = s->refuted ? s->refuted_at + refute_gap(s) : now;
		due = r < due ? r : due;
	}
	for (size_t i = 0; i < s->table->n && cap > 100; i++)
		if (s->table->v[i].state == GOSSIP_P_SUSPECT)
			cap = 100;
	return due <= now ? 1 : due - now > cap ? (int)cap : (int)(due - now);
}
