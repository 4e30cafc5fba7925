/* t-swim: the prober on a fake clock, its messages captured instead of sent: a ping and
 * its ack, the retry and indirect pings, suspicion and its claim, Lifeguard's confirmation
 * and the slow dead timeout without one, refutation, relays. */
#include "gossip.h"
#include "tap.h"
#include "fixture.h"

#include <sodium.h>
#include <stdlib.h>

enum { MEMBERS = 6, T0 = 1000000 };

static char dir[] = "/tmp/gossip-t-swim.XXXXXX";
static struct gossip_identity ids[MEMBERS];  /* ids[0] is this node */

/* What the prober sent: to member `to`, or (-1) to the cluster by rumor. */
static struct sent {
	int to;
	int ours;  /* a message this node signed (not one it passes on) */
	struct gossip_buf b;
	struct gossip_msg m;
} sent[512];
static size_t nsent;

static int member_of(const uint8_t pk[32])
{
	for (int i = 0; i < MEMBERS; i++)
		if (!memcmp(ids[i].pk, pk, 32))
			return i;
	return -2;
}

static void capture(void *ctx, const struct gossip_peer *to, const uint8_t *p, size_t n)
{
	(void)ctx;
	if (nsent == sizeof sent / sizeof *sent)
		abort();
	struct sent *x = &sent[nsent++];
	x->to = to ? member_of(to->pk) : -1;
	x->b.len = 0;
	gossip_buf_put(&x->b, p, n);
	x->ours = gossip_msg_decode(x->b.p, x->b.len, &x->m) == 0 && gossip_msg_verify(&x->m) == 0 &&
	          !memcmp(x->m.origin, ids[0].pk, 32);
}

/* This node and n - 1 others, all alive at incarnation 100. */
static void make_table(struct gossip_peers *t, int n)
{
	memset(t, 0, sizeof *t);
	for (int i = 0; i < n; i++) {
		struct gossip_peer *p = gossip_peers_find(t, ids[i].pk, 1);
		p->info.incarnation = 100;
		snprintf(p->info.name, sizeof p->info.name, "n%d", i);
		snprintf(p->info.addrs[0], sizeof p->info.addrs[0], "udp://127.0.0.1:%d", 7000 + i);
		p->info.naddrs = 1;
		p->self = i == 0;
	}
	memcpy(t->self_pk, ids[0].pk, 32);
	t->has_self = 1;
}

static struct gossip_peer *peer(struct gossip_peers *t, int i)
{
	return gossip_peers_find(t, ids[i].pk, 0);
}

/* Hand a message member i signed to the prober as if it had arrived. */
static int arrive(struct gossip_swim *s, const struct gossip_buf *b, uint64_t now)
{
	struct gossip_msg m;
	if (gossip_msg_decode(b->p, b->len, &m) < 0 || gossip_msg_verify(&m) < 0)
		return -1;
	if (gossip_msg_is_probe(&m)) {
		gossip_swim_probe(s, &m, b->p, b->len, now);
		return 0;
	}
	return gossip_swim_claim(s, &m, now);
}

static void probe_by(struct gossip_buf *b, int i, unsigned type, const uint8_t *v, size_t n)
{
	struct gossip_msg m = {0};
	m.type = type;
	m.value = v;
	m.valuelen = n;
	m.has_value = 1;
	b->len = 0;
	gossip_msg_sign(b, &m, &ids[i]);
}

/* Member i's claim that member j is suspect or dead at incarnation inc. */
static void claim_by(struct gossip_buf *b, int i, const char *key, int j, uint64_t inc)
{
	struct gossip_buf v = {0};
	struct gossip_msg m = {0};
	gossip_cbor_head(&v, GOSSIP_MT_ARRAY, 2);
	gossip_cbor_str(&v, GOSSIP_MT_BSTR, ids[j].pk, 32);
	gossip_cbor_head(&v, GOSSIP_MT_UINT, inc);
	m.type = GOSSIP_T_SET;
	m.version = 500;
	m.time = T0;
	m.key = (const uint8_t *)key;
	m.keylen = strlen(key);
	m.value = v.p;
	m.valuelen = v.len;
	m.has_value = 1;
	b->len = 0;
	gossip_msg_sign(b, &m, &ids[i]);
	gossip_buf_free(&v);
}

/* How many of our own member records were sent since mark with an incarnation in
 * [lo, hi] (each copy: to a member, or by rumor). */
static size_t records_since(size_t mark, uint64_t lo, uint64_t hi)
{
	size_t n = 0;
	struct gossip_member r;
	for (size_t k = mark; k < nsent; k++)
		n += sent[k].ours && sent[k].m.type == GOSSIP_T_SET &&
		     gossip_member_decode(sent[k].m.value, sent[k].m.valuelen, &r) == 0 && r.incarnation >= lo &&
		     r.incarnation <= hi;
	return n;
}

static int is_ping(const struct sent *x, size_t valuelen)
{
	return x->ours && x->to >= 0 && x->m.type == GOSSIP_T_PING && x->m.valuelen == valuelen;
}

/* Whether x is this node's claim (key) that member j is down at incarnation inc. */
static int is_claim(const struct sent *x, const char *key, int j, uint64_t inc)
{
	struct gossip_cur c = {x->m.value, x->m.valuelen, 0};
	struct gossip_ev ev;
	return x->ours && x->m.type == GOSSIP_T_SET && gossip_msg_key_is(&x->m, key) &&
	       gossip_cur_expect(&c, GOSSIP_EV_ARRAY, &ev, "claim") == 0 && ev.u == 2 &&
	       gossip_cur_expect(&c, GOSSIP_EV_BSTR, &ev, "claim") == 0 && ev.len == 32 &&
	       !memcmp(ev.data, ids[j].pk, 32) && gossip_cur_expect(&c, GOSSIP_EV_UINT, &ev, "claim") == 0 &&
	       ev.u == inc;
}

/* Members 1..n-1 each got exactly one claim (key) that member j is down at inc, from
 * mark on, and nobody else got one. */
static int claim_to_each(size_t mark, int n, const char *key, int j, uint64_t inc)
{
	int got[MEMBERS] = {0};
	for (size_t k = mark; k < nsent; k++)
		if (is_claim(&sent[k], key, j, inc) && (sent[k].to <= 0 || got[sent[k].to]++))
			return 0;
	for (int i = 1; i < n; i++)
		if (got[i] != 1)
			return 0;
	return 1;
}

/* The clock ticks; every member but silent answers the round's pings at once. */
static int tick(struct gossip_swim *s, uint64_t now, int silent)
{
	size_t mark = nsent;
	int changed = gossip_swim_tick(s, now);
	struct gossip_buf ack = {0};
	for (size_t k = mark; k < nsent; k++)
		if (is_ping(&sent[k], GOSSIP_NONCE_LEN) && sent[k].to != silent) {
			probe_by(&ack, sent[k].to, GOSSIP_T_ACK, sent[k].m.value, GOSSIP_NONCE_LEN);
			arrive(s, &ack, now);
		}
	gossip_buf_free(&ack);
	return changed;
}

static int events(const char *name, const char *member)
{
	return count_events(dir, name, member, NULL);
}

/* One interval in a table of this node and member 1: the clock ticks to the next ping,
 * which member 1 acks at once (when ack) with sum after the nonce (when not NULL). The
 * ping's length, or 0 when there was none. */
static size_t round_ack(struct gossip_swim *s, uint64_t *now, int ack, const uint8_t *sum)
{
	struct gossip_buf b = {0};
	uint8_t v[GOSSIP_NONCE_LEN + GOSSIP_SUM_LEN];
	size_t mark = nsent, len = 0;
	*now += 1001;
	gossip_swim_tick(s, *now);
	for (size_t k = mark; k < nsent && !len; k++)
		if (sent[k].ours && sent[k].to == 1 && sent[k].m.type == GOSSIP_T_PING)
			len = sent[k].m.valuelen, memcpy(v, sent[k].m.value, GOSSIP_NONCE_LEN);
	if (len && ack) {
		if (sum)
			memcpy(v + GOSSIP_NONCE_LEN, sum, GOSSIP_SUM_LEN);
		probe_by(&b, 1, GOSSIP_T_ACK, v, sum ? sizeof v : GOSSIP_NONCE_LEN);
		arrive(s, &b, *now + 5);
	}
	gossip_buf_free(&b);
	return len;
}

int main(void)
{
	if (sodium_init() < 0 || !mkdtemp(dir))
		return 1;
	for (int i = 0; i < MEMBERS; i++) {
		char name[16];
		snprintf(name, sizeof name, "n%d", i);
		ids[i] = named_ident(name);
	}
	struct gossip_author me = {0};
	me.id = ids[0];
	if (gossip_clock_open(&me.clock, dir, 1) < 0)
		return 1;
	struct gossip_peers_cfg cfg = gossip_peers_defaults;
	cfg.interval_ms = 1000;  /* acks due within 200 ms; suspect at 600 ms */
	cfg.suspicion_mult = 1;  /* suspect to dead: 1 s with a confirmation, 4 s without */
	cfg.dead_chance = 0;
	struct gossip_peers t;
	struct gossip_buf b = {0};

	/* A ping and its ack. */
	make_table(&t, 2);
	struct gossip_swim *s = gossip_swim_new(&t, &cfg, &me, dir, capture, NULL, T0);
	ok(gossip_swim_wait(s, T0) >= 1 && gossip_swim_wait(s, T0) <= 1000, "the clock wants a tick within a second");
	/* A ping of the member's (anyone who saw one can replay it), and an ack to a nonce
	 * that is not ours: neither is an answer to this node (a join goes on). */
	static const uint8_t other_nonce[GOSSIP_NONCE_LEN] = {1, 2, 3, 4, 5, 6, 7, 8};
	probe_by(&b, 1, GOSSIP_T_PING, other_nonce, GOSSIP_NONCE_LEN);
	arrive(s, &b, T0 + 10);
	probe_by(&b, 1, GOSSIP_T_ACK, other_nonce, GOSSIP_NONCE_LEN);
	arrive(s, &b, T0 + 20);
	ok(gossip_swim_acks(s) == 0, "a member's ping, an ack to another nonce: no ack of ours counted");
	size_t own0 = nsent;  /* the ack this node sent to the member's ping */
	gossip_swim_tick(s, T0 + 1000);
	ok(nsent == own0 + 1 && is_ping(&sent[own0], GOSSIP_NONCE_LEN) && sent[own0].to == 1,
	   "within an interval the only other member gets a signed ping with a nonce");
	ok(gossip_swim_wait(s, T0 + 1150) == 50, "the clock wants a tick when the ack is due");
	probe_by(&b, 1, GOSSIP_T_ACK, sent[own0].m.value, GOSSIP_NONCE_LEN);
	arrive(s, &b, T0 + 1100);
	ok(gossip_swim_acks(s) == 1, "the ack to our own ping is counted");
	gossip_swim_tick(s, T0 + 1200);
	gossip_swim_tick(s, T0 + 1600);
	ok(nsent == own0 + 1 && peer(&t, 1)->state == GOSSIP_P_ALIVE && peer(&t, 1)->last_hb == T0 + 1100,
	   "an ack clears the probe: heard, no retry, no suspicion");
	gossip_swim_free(s);
	gossip_peers_free(&t);

	/* A deadline that passes while this node does not run (a stalled machine, a busy
	 * process) is no verdict on the target: once a probe, the stage happens late and the
	 * verdict waits as long again as the stall (two fifths at least, an interval at most). */
	char *late_dir = strdup(temp_dir("t-swim-late"));  /* its events apart */
	struct gossip_peers_cfg steady = cfg;
	steady.jitter = 0;  /* rounds exactly an interval apart */
	for (int part = 0; part < 9; part++) {
		nsent = 0;
		make_table(&t, MEMBERS);
		s = gossip_swim_new(&t, part == 8 ? &steady : &cfg, &me, late_dir, capture, NULL, T0);
		gossip_swim_tick(s, T0 + 1000);
		int y = sent[0].to;
		uint8_t yn[GOSSIP_NONCE_LEN];
		memcpy(yn, sent[0].m.value, GOSSIP_NONCE_LEN);
		switch (part) {
		case 0:
			gossip_swim_tick(s, T0 + 1500);  /* the retry was due at 1200 */
			ok(nsent == 5 && peer(&t, y)->state == GOSSIP_P_ALIVE,
			   "woken 300 ms after the retry was due: the retry and 3 indirect pings now (%zu sent), no verdict",
			   nsent);
			gossip_swim_tick(s, T0 + 1799);
			ok(peer(&t, y)->state == GOSSIP_P_ALIVE, "no verdict within 2/5 of the interval after");
			probe_by(&b, y, GOSSIP_T_ACK, yn, GOSSIP_NONCE_LEN);
			arrive(s, &b, T0 + 1799);
			gossip_swim_tick(s, T0 + 1800);
			gossip_swim_tick(s, T0 + 3000);
			ok(peer(&t, y)->state == GOSSIP_P_ALIVE, "the ack that came after the stall clears the probe");
			break;
		case 1:
			gossip_swim_tick(s, T0 + 1200);
			gossip_swim_tick(s, T0 + 2000);  /* the verdict was due at 1600 */
			ok(peer(&t, y)->state == GOSSIP_P_ALIVE, "woken 400 ms after the verdict was due: no verdict yet");
			gossip_swim_tick(s, T0 + 2399);
			ok(peer(&t, y)->state == GOSSIP_P_ALIVE, "none within 400 ms more");
			ok(gossip_swim_tick(s, T0 + 2400) == 1 && peer(&t, y)->state == GOSSIP_P_SUSPECT,
			   "still no ack 400 ms after waking: suspect");
			ok(gossip_swim_wait(s, T0 + 2400) <= 100, "with a suspect, the clock wants a tick within 100 ms");
			break;
		case 2:
			gossip_swim_tick(s, T0 + 1500);  /* late once: the verdict at 1900 */
			ok(gossip_swim_tick(s, T0 + 2500) == 1 && peer(&t, y)->state == GOSSIP_P_SUSPECT,
			   "late a second time: the verdict at once (more time only once a probe)");
			break;
		case 3:
			gossip_swim_tick(s, T0 + 1200);
			gossip_swim_tick(s, T0 + 9600);  /* a stall of 8 s */
			gossip_swim_tick(s, T0 + 10599);
			ok(peer(&t, y)->state == GOSSIP_P_ALIVE, "after a stall of 8 s: no verdict within an interval");
			ok(gossip_swim_tick(s, T0 + 10600) == 1 && peer(&t, y)->state == GOSSIP_P_SUSPECT,
			   "and the verdict an interval after waking, not 8 s");
			break;
		case 4:
			gossip_swim_tick(s, T0 + 1700);  /* the retry 500 ms overdue, more than 2/5 */
			ok(nsent == 5, "woken 500 ms after the retry was due: the retry and indirect pings at once (%zu sent)",
			   nsent);
			gossip_swim_tick(s, T0 + 2199);
			ok(peer(&t, y)->state == GOSSIP_P_ALIVE, "no verdict within 500 ms after");
			ok(gossip_swim_tick(s, T0 + 2200) == 1 && peer(&t, y)->state == GOSSIP_P_SUSPECT,
			   "the verdict 500 ms after waking");
			break;
		case 5:
			gossip_swim_tick(s, T0 + 1300);  /* 100 ms overdue: the verdict 2/5 after, not 100 ms */
			gossip_swim_tick(s, T0 + 1699);
			ok(nsent == 5 && peer(&t, y)->state == GOSSIP_P_ALIVE, "woken 100 ms late: no verdict within 2/5 after");
			ok(gossip_swim_tick(s, T0 + 1700) == 1 && peer(&t, y)->state == GOSSIP_P_SUSPECT,
			   "the verdict 2/5 of the interval after waking");
			break;
		case 6:
			gossip_swim_tick(s, T0 + 1250);  /* late by a twentieth: a scheduler's noise */
			ok(gossip_swim_tick(s, T0 + 1600) == 1 && peer(&t, y)->state == GOSSIP_P_SUSPECT,
			   "50 ms late (a twentieth of the interval): no more time, suspect at three fifths");
			break;
		case 7:
			gossip_swim_tick(s, T0 + 1251);
			gossip_swim_tick(s, T0 + 1650);
			ok(peer(&t, y)->state == GOSSIP_P_ALIVE, "51 ms late: more time");
			ok(gossip_swim_tick(s, T0 + 1651) == 1 && peer(&t, y)->state == GOSSIP_P_SUSPECT,
			   "the verdict 2/5 after waking");
			break;
		default:
			/* A probe that had its grace, answered; the next one has a grace of its own. */
			gossip_swim_tick(s, T0 + 1500);
			probe_by(&b, y, GOSSIP_T_ACK, yn, GOSSIP_NONCE_LEN);
			arrive(s, &b, T0 + 1500);
			size_t mark0 = nsent;
			gossip_swim_tick(s, T0 + 2000);
			int z = nsent == mark0 + 1 ? sent[mark0].to : -1;
			gossip_swim_tick(s, T0 + 2500);
			gossip_swim_tick(s, T0 + 2899);
			ok(z > 0 && peer(&t, z)->state == GOSSIP_P_ALIVE,
			   "the next probe, woken 300 ms late too: more time as well (n%d)", z);
			ok(z > 0 && gossip_swim_tick(s, T0 + 2900) == 1 && peer(&t, z)->state == GOSSIP_P_SUSPECT,
			   "its verdict 2/5 after waking");
		}
		gossip_swim_free(s);
		gossip_peers_free(&t);
	}
	rm_dir(late_dir);
	free(late_dir);

	/* No ack: a retry and indirect pings, then suspicion. */
	nsent = 0;
	make_table(&t, MEMBERS);
	s = gossip_swim_new(&t, &cfg, &me, dir, capture, NULL, T0);
	gossip_swim_tick(s, T0 + 1000);
	int x = sent[0].to;
	uint8_t nonce[GOSSIP_NONCE_LEN];
	memcpy(nonce, sent[0].m.value, GOSSIP_NONCE_LEN);
	ok(nsent == 1 && x > 0, "the round pings one member (n%d)", x);
	gossip_swim_tick(s, T0 + 1199);
	ok(nsent == 1, "no retry before a fifth of the interval");
	gossip_swim_tick(s, T0 + 1200);
	int direct = 0, indirect = 0, helpers[MEMBERS] = {0}, bad = 0;
	for (size_t k = 1; k < nsent; k++) {
		if (is_ping(&sent[k], GOSSIP_NONCE_LEN) && sent[k].to == x &&
		    !memcmp(sent[k].m.value, nonce, GOSSIP_NONCE_LEN))
			direct++;
		else if (is_ping(&sent[k], GOSSIP_NONCE_LEN + 32) && sent[k].to != x &&
		         !memcmp(sent[k].m.value, nonce, GOSSIP_NONCE_LEN) &&
		         !memcmp(sent[k].m.value + GOSSIP_NONCE_LEN, ids[x].pk, 32) && !helpers[sent[k].to]++)
			indirect++;
		else
			bad++;
	}
	ok(direct == 1 && indirect == 3 && !bad,
	   "after a fifth: the same ping again, and 3 other members asked to ping it (%d, %d, %d)",
	   direct, indirect, bad);
	gossip_swim_tick(s, T0 + 1599);
	ok(peer(&t, x)->state == GOSSIP_P_ALIVE, "not suspect before three fifths");
	size_t mark = nsent;
	ok(gossip_swim_tick(s, T0 + 1600) == 1 && peer(&t, x)->state == GOSSIP_P_SUSPECT &&
	   peer(&t, x)->suspector, "after three fifths without an ack: suspect");
	ok(nsent - mark == MEMBERS - 1 && claim_to_each(mark, MEMBERS, GOSSIP_KEY_SUSPECT, x, 100),
	   "a signed suspect claim goes to every other member, the suspect included");
	char xname[16];
	snprintf(xname, sizeof xname, "n%d", x);
	ok(events("member-suspect", xname) == 1, "member-suspect in the event log");

	/* Another member's probe failed too: the suspicion timeout, not SLOW times it. */
	int other = x == 1 ? 2 : 1;
	claim_by(&b, other, GOSSIP_KEY_SUSPECT, x, 100);
	ok(arrive(s, &b, T0 + 1700) == 0 && peer(&t, x)->confirmations == 1,
	   "a suspect claim from another member is no news, but a confirmation");
	tick(s, T0 + 2000, x);
	tick(s, T0 + 2599, x);
	ok(peer(&t, x)->state == GOSSIP_P_SUSPECT, "still suspect just before the suspicion timeout");
	mark = nsent;
	tick(s, T0 + 2600, x);
	ok(peer(&t, x)->state == GOSSIP_P_DEAD && claim_to_each(mark, MEMBERS, GOSSIP_KEY_DEAD, x, 100),
	   "confirmed: dead after the suspicion timeout, and a dead claim to every member");
	ok(events("member-failed", xname) == 1, "member-failed in the event log");
	gossip_swim_free(s);
	gossip_peers_free(&t);

	/* Without a confirmation, SLOW (4) times as long. */
	make_table(&t, MEMBERS);
	s = gossip_swim_new(&t, &cfg, &me, dir, capture, NULL, T0);
	uint64_t now = T0;
	int y = 0;
	for (; now <= T0 + 6000 && !y; now += 100) {
		tick(s, now, 3);
		y = peer(&t, 3)->state == GOSSIP_P_SUSPECT ? 3 : 0;
	}
	uint64_t since = peer(&t, 3)->since;
	ok(y == 3 && !peer(&t, 3)->confirmations, "a silent member turns suspect, unconfirmed");
	for (now = since + 100; now < since + 4000; now += 100)
		tick(s, now, 3);
	ok(peer(&t, 3)->state == GOSSIP_P_SUSPECT, "still suspect after 3.9 s");
	tick(s, since + 4000, 3);
	ok(peer(&t, 3)->state == GOSSIP_P_DEAD, "dead at 4 times the suspicion timeout");
	ok(peer(&t, 1)->state == GOSSIP_P_ALIVE && peer(&t, 5)->state == GOSSIP_P_ALIVE,
	   "members that answer stay alive");
	gossip_swim_free(s);
	gossip_peers_free(&t);

	/* A claim about this node: refuted with a new incarnation. */
	make_table(&t, 5);
	peer(&t, 4)->state = GOSSIP_P_LEFT;
	s = gossip_swim_new(&t, &cfg, &me, dir, capture, NULL, T0);
	mark = nsent;
	claim_by(&b, 2, GOSSIP_KEY_SUSPECT, 0, 100);
	ok(arrive(s, &b, T0 + 500) == 0, "a claim about this node is not news to pass on");
	int to[MEMBERS] = {0}, rumor = 0, others = 0;
	struct gossip_member rec = {0};
	for (size_t k = mark; k < nsent; k++) {
		if (sent[k].ours && sent[k].m.type == GOSSIP_T_SET && gossip_msg_key_is(&sent[k].m, GOSSIP_KEY_MEMBER) &&
		    gossip_member_decode(sent[k].m.value, sent[k].m.valuelen, &rec) == 0 && rec.incarnation > 100)
			sent[k].to == -1 ? rumor++ : sent[k].to >= 0 ? to[sent[k].to]++ : others++;
		else
			others++;
	}
	ok(to[1] == 1 && to[2] == 1 && to[3] == 1 && !to[4] && rumor == 1 && !others,
	   "a member record with a higher incarnation (%llu) to every member but the one that left, "
	   "and by rumor", (unsigned long long)rec.incarnation);
	struct gossip_buf first = {0};
	gossip_buf_put(&first, sent[nsent - 1].b.p, sent[nsent - 1].b.len);
	mark = nsent;
	claim_by(&b, 3, GOSSIP_KEY_DEAD, 0, 100);
	arrive(s, &b, T0 + 600);
	ok(nsent - mark == 2 && sent[mark].to == 3 && sent[mark + 1].to == -1 &&
	   sent[mark].b.len == first.len && !memcmp(sent[mark].b.p, first.p, first.len),
	   "a claim about the refuted incarnation: the same record again, to the claimer and by rumor");
	gossip_buf_free(&first);
	gossip_swim_free(s);
	gossip_peers_free(&t);

	/* A graceful leave: the delete of this node's record, signed, to every member but the
	 * one that left and by rumor; then nothing of this node's is refuted, and no round's
	 * probe starts, but pings are still acked. */
	make_table(&t, 5);
	peer(&t, 4)->state = GOSSIP_P_LEFT;
	s = gossip_swim_new(&t, &cfg, &me, dir, capture, NULL, T0);
	ok(!gossip_swim_left(s), "not left at the start");
	gossip_swim_self_record(s, 100, (const uint8_t *)"its record", 10);
	mark = nsent;
	gossip_swim_met(s, peer(&t, 3), NULL, 0);
	ok(nsent == mark + 1 && sent[mark].to == 3 && sent[mark].b.len == 10, "a member met is sent this node's record");
	struct gossip_buf lv = {0};
	mark = nsent;
	ok(gossip_swim_leave(s, &lv) == 3 && gossip_swim_left(s), "left: three members told");
	memset(to, 0, sizeof to);
	rumor = others = 0;
	for (size_t k = mark; k < nsent; k++) {
		if (sent[k].ours && sent[k].m.type == GOSSIP_T_DEL && gossip_msg_key_is(&sent[k].m, GOSSIP_KEY_MEMBER) &&
		    sent[k].b.len == lv.len && !memcmp(sent[k].b.p, lv.p, lv.len))
			sent[k].to == -1 ? rumor++ : sent[k].to >= 0 ? to[sent[k].to]++ : others++;
		else
			others++;
	}
	ok(to[1] == 1 && to[2] == 1 && to[3] == 1 && !to[4] && !to[0] && rumor == 1 && !others,
	   "the signed delete of its member record, to every member but the one that left, and by rumor");
	mark = nsent;
	claim_by(&b, 2, GOSSIP_KEY_DEAD, 0, 100);
	arrive(s, &b, T0 + 500);
	gossip_swim_refute_leave(s, T0 + 500);
	size_t records = 0;
	for (size_t k = mark; k < nsent; k++)
		records += sent[k].ours && sent[k].m.type == GOSSIP_T_SET;
	ok(records == 0, "a claim and a leave of this node's after it left: not refuted (%zu records)", records);
	mark = nsent;
	gossip_swim_met(s, peer(&t, 3), NULL, 0);
	ok(nsent == mark, "a member met after the leave is not sent this node's record");
	ok(gossip_swim_wait(s, T0 + 5000) >= 100, "no round's probe due: the clock sleeps (%d ms)",
	   gossip_swim_wait(s, T0 + 5000));
	mark = nsent;
	tick(s, T0 + 5000, -1);
	tick(s, T0 + 9000, -1);
	size_t pings = 0;
	for (size_t k = mark; k < nsent; k++)
		pings += sent[k].ours && sent[k].m.type == GOSSIP_T_PING;
	ok(pings == 0, "no probe in 8 s after the leave (%zu pings)", pings);
	uint8_t lvn[GOSSIP_NONCE_LEN];
	randombytes_buf(lvn, sizeof lvn);
	probe_by(&b, 1, GOSSIP_T_PING, lvn, sizeof lvn);
	mark = nsent;
	arrive(s, &b, T0 + 9100);
	ok(nsent > mark && sent[mark].to == 1 && sent[mark].m.type == GOSSIP_T_ACK, "a ping is still acked");
	gossip_buf_free(&lv);
	gossip_swim_free(s);
	gossip_peers_free(&t);

	/* Lifeguard's local health: a new claim that this node is down (it was too slow to
	 * answer) makes its ack windows and interval twice as long; an ack to its own round's
	 * ping makes them as before. */
	make_table(&t, 3);
	s = gossip_swim_new(&t, &cfg, &me, dir, capture, NULL, T0);
	claim_by(&b, 2, GOSSIP_KEY_SUSPECT, 0, 100);
	arrive(s, &b, T0 + 10);
	mark = nsent;
	gossip_swim_tick(s, T0 + 1000);
	int h = -1;
	uint8_t hn[GOSSIP_NONCE_LEN];
	for (size_t k = mark; k < nsent; k++)
		if (is_ping(&sent[k], GOSSIP_NONCE_LEN))
			h = sent[k].to, memcpy(hn, sent[k].m.value, GOSSIP_NONCE_LEN);
	mark = nsent;
	gossip_swim_tick(s, T0 + 1399);
	ok(h > 0 && nsent == mark, "after a claim that this node is down: no retry within twice the ack window");
	gossip_swim_tick(s, T0 + 1400);
	ok(nsent > mark, "the retry at twice the ack window");
	probe_by(&b, h, GOSSIP_T_ACK, hn, GOSSIP_NONCE_LEN);
	arrive(s, &b, T0 + 1450);
	mark = nsent;
	gossip_swim_tick(s, T0 + 9000);
	for (size_t k = mark; k < nsent; k++)
		if (is_ping(&sent[k], GOSSIP_NONCE_LEN))
			h = sent[k].to, memcpy(hn, sent[k].m.value, GOSSIP_NONCE_LEN);
	mark = nsent;
	gossip_swim_tick(s, T0 + 9200);
	ok(nsent > mark, "acked: the next ping's retry at the ack window again");
	probe_by(&b, h, GOSSIP_T_ACK, hn, GOSSIP_NONCE_LEN);
	arrive(s, &b, T0 + 9250);
	claim_by(&b, 2, GOSSIP_KEY_SUSPECT, 0, 100);  /* the refuted incarnation: old news */
	arrive(s, &b, T0 + 9300);
	gossip_swim_tick(s, T0 + 19000);
	mark = nsent;
	gossip_swim_tick(s, T0 + 19200);
	ok(nsent > mark, "a claim about an incarnation already refuted changes nothing");
	gossip_swim_free(s);
	gossip_peers_free(&t);

	/* At most 9 times: ten claims, each at the incarnation the last refuted, each an
	 * interval as health makes it after the last (each refuted, each raising health),
	 * the window is 1800 ms. */
	make_table(&t, 3);
	s = gossip_swim_new(&t, &cfg, &me, dir, capture, NULL, T0);
	uint64_t inc = 100, at10 = T0 + 10;
	for (int k = 0; k < 10; k++, at10 += 1000 * (uint64_t)(k + 1)) {
		claim_by(&b, 2, GOSSIP_KEY_SUSPECT, 0, inc);
		arrive(s, &b, at10);
		inc = at10;  /* refuted at now */
	}
	gossip_swim_tick(s, at10);
	mark = nsent;
	gossip_swim_tick(s, at10 + 1799);
	ok(nsent == mark, "ten claims: no retry within 9 ack windows");
	gossip_swim_tick(s, at10 + 1800);
	ok(nsent > mark, "the retry at 9 ack windows: no more");
	gossip_swim_free(s);
	gossip_peers_free(&t);

	/* A member that claims this node down at each new incarnation, an interval apart:
	 * each refuted, but health rises only once an interval as health makes it (here no
	 * ack lowers it): 3 after 5 s, not 5; so the round's retry waits 4 windows. */
	make_table(&t, 3);
	s = gossip_swim_new(&t, &cfg, &me, dir, capture, NULL, T0);
	inc = 100;
	at10 = T0 + 10;
	for (int k = 0; k < 6; k++, at10 += 1000) {
		claim_by(&b, 2, GOSSIP_KEY_SUSPECT, 0, inc);
		arrive(s, &b, at10);
		inc = at10;
	}
	gossip_swim_tick(s, at10);
	mark = nsent;
	gossip_swim_tick(s, at10 + 799);
	ok(nsent == mark, "a claim each interval for 5 s: no retry within 4 ack windows");
	gossip_swim_tick(s, at10 + 800);
	ok(nsent > mark, "the retry at 4 ack windows (health 3), not 6");
	/* A claim far above this node's incarnation and clock (more than 5 minutes ahead): a
	 * lie, not refuted (a liar would drive it to 2^64-1, where nothing is newer), no
	 * health. (One above its incarnation but not its clock: below.) */
	uint64_t lies[] = {at10 + 1900 + 300001, 2 * inc, UINT64_MAX};
	for (size_t k = 0; k < 3; k++) {
		mark = nsent;
		claim_by(&b, 2, GOSSIP_KEY_SUSPECT, 0, lies[k]);
		arrive(s, &b, at10 + 1900);
		ok(nsent == mark, "a claim far above this node's incarnation and clock (%llu, its own %llu): ignored, "
		   "nothing sent", (unsigned long long)lies[k], (unsigned long long)inc);
	}
	/* Above its incarnation but at most 5 minutes ahead of its clock: about a record of its
	 * own not read back yet (a tag's): held until it is, then refuted above it; when none
	 * comes up to it within 2 s, a lie. */
	uint64_t xa = at10 + 1900 + 300000, t1 = at10 + 1900;
	mark = nsent;
	claim_by(&b, 2, GOSSIP_KEY_SUSPECT, 0, xa);
	arrive(s, &b, t1);
	ok(records_since(mark, inc + 1, UINT64_MAX) == 0, "a claim above its incarnation, within 5 minutes of its clock: "
	   "not refuted at once (a liar would keep it minutes ahead of the clock)");
	ok(gossip_swim_wait(s, t1) <= 100, "while it waits for its record the clock looks every 100 ms");
	gossip_swim_self_record(s, xa, (const uint8_t *)"its record", 10);
	gossip_swim_tick(s, t1 + 100);
	ok(records_since(mark, xa + 1, xa + 1) == 3, "its record read back: refuted above it, to both members and by rumor");
	mark = nsent;
	claim_by(&b, 2, GOSSIP_KEY_SUSPECT, 0, xa + 2);  /* its own is xa + 1 now */
	arrive(s, &b, t1 + 200);
	gossip_swim_tick(s, t1 + 2199);
	gossip_swim_tick(s, t1 + 2200);
	gossip_swim_tick(s, t1 + 5000);
	ok(records_since(mark, xa + 2, UINT64_MAX) == 0, "no record of its own came up to it in 2 s: not refuted");
	gossip_swim_free(s);
	gossip_peers_free(&t);

	/* A claim within a gap of a refutation (half the suspicion timeout here, 500 ms, as
	 * it is shorter than an interval): refuted once the gap is over, once for all that
	 * came meanwhile, and not when a record of ours raised it past them meanwhile. */
	make_table(&t, 3);
	s = gossip_swim_new(&t, &cfg, &me, dir, capture, NULL, T0);
	claim_by(&b, 2, GOSSIP_KEY_SUSPECT, 0, 100);
	arrive(s, &b, T0 + 10);  /* refuted: T0 + 10 */
	size_t recs1, recs2;
	mark = nsent;
	for (int k = 0; k < 5; k++) {
		claim_by(&b, 2, GOSSIP_KEY_DEAD, 0, T0 + 10);
		arrive(s, &b, T0 + 20 + (uint64_t)k);
	}
	ok(records_since(mark, T0 + 11, UINT64_MAX) == 0 && nsent > mark, "five claims within the gap: the same record to the claimer, no new one");
	ok(gossip_swim_wait(s, T0 + 400) <= 110, "the refutation due at the gap's end wakes the clock (%d ms)",
	   gossip_swim_wait(s, T0 + 400));
	mark = nsent;
	gossip_swim_tick(s, T0 + 509);
	recs1 = records_since(mark, 0, UINT64_MAX);
	gossip_swim_tick(s, T0 + 510);
	gossip_swim_tick(s, T0 + 3000);
	recs2 = records_since(mark, T0 + 510, T0 + 510);
	ok(recs1 == 0 && recs2 == 3, "refuted at the gap's end, once: to both members and by rumor (%zu, %zu)",
	   recs1, recs2);
	claim_by(&b, 2, GOSSIP_KEY_SUSPECT, 0, T0 + 510);
	arrive(s, &b, T0 + 3010);  /* a gap on: refuted at once */
	claim_by(&b, 2, GOSSIP_KEY_SUSPECT, 0, T0 + 3010);
	arrive(s, &b, T0 + 3020);  /* due at T0 + 3510 ... */
	gossip_swim_self_record(s, T0 + 3500, (const uint8_t *)"its record", 10);  /* ... but raised */
	mark = nsent;
	gossip_swim_tick(s, T0 + 3510);
	ok(records_since(mark, 0, UINT64_MAX) == 0, "a refutation due about an incarnation since raised by a record of ours: none");
	gossip_swim_free(s);
	gossip_peers_free(&t);

	/* Another member's claim about a member at an incarnation it never announced (as far
	 * as this node knows, 100): no suspicion, not passed on. */
	make_table(&t, 4);
	s = gossip_swim_new(&t, &cfg, &me, dir, capture, NULL, T0);
	uint64_t above[] = {101, UINT64_MAX};
	for (size_t k = 0; k < 2; k++) {
		claim_by(&b, 2, k ? GOSSIP_KEY_DEAD : GOSSIP_KEY_SUSPECT, 3, above[k]);
		ok(arrive(s, &b, T0 + 10) == 0 && peer(&t, 3)->state == GOSSIP_P_ALIVE,
		   "a claim about another member above its incarnation (%llu): ignored", (unsigned long long)above[k]);
	}
	claim_by(&b, 2, GOSSIP_KEY_SUSPECT, 3, 100);
	ok(arrive(s, &b, T0 + 20) == 1 && peer(&t, 3)->state == GOSSIP_P_SUSPECT, "at its incarnation: suspect");
	gossip_swim_free(s);
	gossip_peers_free(&t);

	/* A probe keeps the ack window it started with when health falls meanwhile: a check
	 * of another member's claim, started at twice the window, is not cut short. */
	make_table(&t, 4);
	s = gossip_swim_new(&t, &cfg, &me, dir, capture, NULL, T0);
	mark = nsent;
	gossip_swim_tick(s, T0 + 1000);
	for (size_t k = mark; k < nsent; k++)
		if (is_ping(&sent[k], GOSSIP_NONCE_LEN))
			h = sent[k].to, memcpy(hn, sent[k].m.value, GOSSIP_NONCE_LEN);
	int zc = h == 1 ? 2 : 1, cl = h == 3 || zc == 3 ? (h == 2 || zc == 2 ? 1 : 2) : 3;
	claim_by(&b, 2, GOSSIP_KEY_SUSPECT, 0, 100);  /* health 1 */
	arrive(s, &b, T0 + 1010);
	claim_by(&b, cl, GOSSIP_KEY_SUSPECT, zc, 100);  /* checked with a 400 ms window */
	arrive(s, &b, T0 + 1020);
	probe_by(&b, h, GOSSIP_T_ACK, hn, GOSSIP_NONCE_LEN);  /* the round's ack: health 0 */
	arrive(s, &b, T0 + 1030);
	mark = nsent;
	for (uint64_t at = T0 + 1100; at < T0 + 2220; at += 20)
		gossip_swim_tick(s, at);
	int told = 0;
	for (size_t k = mark; k < nsent; k++)
		told += sent[k].to == cl && is_claim(&sent[k], GOSSIP_KEY_SUSPECT, zc, 100);
	ok(h > 0 && zc != h && cl != zc && cl != h && !told, "no confirmation to the claimer within 3 windows of 400 ms");
	gossip_swim_tick(s, T0 + 2220);
	for (size_t k = mark; k < nsent; k++)
		told += sent[k].to == cl && is_claim(&sent[k], GOSSIP_KEY_SUSPECT, zc, 100);
	ok(told == 1, "then the confirmation");
	gossip_swim_free(s);
	gossip_peers_free(&t);

	/* Pings from others: acked; relayed for an asker, whose ack goes back unchanged. */
	make_table(&t, 3);
	s = gossip_swim_new(&t, &cfg, &me, dir, capture, NULL, T0);
	uint8_t ask[GOSSIP_NONCE_LEN + 32];
	randombytes_buf(ask, GOSSIP_NONCE_LEN);
	mark = nsent;
	probe_by(&b, 1, GOSSIP_T_PING, ask, GOSSIP_NONCE_LEN);
	arrive(s, &b, T0 + 10);
	ok(nsent == mark + 1 && sent[mark].ours && sent[mark].to == 1 && sent[mark].m.type == GOSSIP_T_ACK &&
	   !memcmp(sent[mark].m.value, ask, GOSSIP_NONCE_LEN), "a ping is acked with its nonce");
	memcpy(ask + GOSSIP_NONCE_LEN, ids[2].pk, 32);
	mark = nsent;
	probe_by(&b, 1, GOSSIP_T_PING, ask, sizeof ask);
	arrive(s, &b, T0 + 20);
	ok(nsent == mark + 1 && is_ping(&sent[mark], GOSSIP_NONCE_LEN) && sent[mark].to == 2 &&
	   !memcmp(sent[mark].m.value, ask, GOSSIP_NONCE_LEN),
	   "asked to ping n2 for n1: a ping to n2 with n1's nonce");
	mark = nsent;
	struct gossip_buf ack = {0};
	probe_by(&ack, 2, GOSSIP_T_ACK, ask, GOSSIP_NONCE_LEN);
	arrive(s, &ack, T0 + 30);
	ok(nsent == mark + 1 && sent[mark].to == 1 && sent[mark].b.len == ack.len &&
	   !memcmp(sent[mark].b.p, ack.p, ack.len), "n2's ack goes back to n1 unchanged");
	arrive(s, &ack, T0 + 40);
	ok(nsent == mark + 1, "only once");
	gossip_buf_free(&ack);
	gossip_swim_free(s);
	gossip_peers_free(&t);

	/* Repair: summaries in pings and acks, and when they start a push-pull sync. */
	nsent = 0;
	cfg.jitter = 0;  /* a ping exactly every interval */
	make_table(&t, 2);
	s = gossip_swim_new(&t, &cfg, &me, dir, capture, NULL, T0);
	uint8_t mine[GOSSIP_SUM_LEN] = {0xaa, 0xaa}, theirs[GOSSIP_SUM_LEN] = {0xbb, 0xbb};
	uint8_t v[GOSSIP_NONCE_LEN + 32], pk[32];
	now = T0 + 1001;
	gossip_swim_tick(s, now);
	ok(nsent == 1 && is_ping(&sent[0], GOSSIP_NONCE_LEN), "no summary of our own yet: a plain ping");
	probe_by(&b, 1, GOSSIP_T_ACK, sent[0].m.value, GOSSIP_NONCE_LEN);
	arrive(s, &b, now + 5);
	gossip_swim_summary(s, mine, T0);
	now += 1001;
	mark = nsent;
	gossip_swim_tick(s, now);
	ok(nsent == mark + 1 && is_ping(&sent[mark], GOSSIP_NONCE_LEN + 32) &&
	   !memcmp(sent[mark].m.value + GOSSIP_NONCE_LEN, ids[1].pk, 32),
	   "a member not known to read summaries gets a hello: its own key after the nonce");
	/* An older node acks the hello as a plain ping. */
	probe_by(&b, 1, GOSSIP_T_ACK, sent[mark].m.value, GOSSIP_NONCE_LEN);
	arrive(s, &b, now + 5);
	now += 1001;
	mark = nsent;
	gossip_swim_tick(s, now);
	ok(nsent == mark + 1 && is_ping(&sent[mark], GOSSIP_NONCE_LEN),
	   "acked without a summary: plain pings to it from then on");
	probe_by(&b, 1, GOSSIP_T_ACK, sent[mark].m.value, GOSSIP_NONCE_LEN);
	arrive(s, &b, now + 5);
	/* A new incarnation (a restart: maybe upgraded): asked again; a summary in its ack. */
	peer(&t, 1)->info.incarnation++;
	now += 1001;
	mark = nsent;
	gossip_swim_tick(s, now);
	ok(nsent == mark + 1 && is_ping(&sent[mark], GOSSIP_NONCE_LEN + 32), "at a new incarnation: a hello again");
	memcpy(v, sent[mark].m.value, GOSSIP_NONCE_LEN);
	memcpy(v + GOSSIP_NONCE_LEN, theirs, GOSSIP_SUM_LEN);
	probe_by(&b, 1, GOSSIP_T_ACK, v, GOSSIP_NONCE_LEN + GOSSIP_SUM_LEN);
	uint64_t seen1 = now + 5;
	arrive(s, &b, seen1);
	ok(!gossip_swim_repair(s, 0, seen1, pk), "a summary that differs, seen once: no repair (it may be in flight)");
	now += 1001;
	mark = nsent;
	gossip_swim_tick(s, now);
	ok(nsent == mark + 1 && is_ping(&sent[mark], GOSSIP_NONCE_LEN + GOSSIP_SUM_LEN) &&
	   !memcmp(sent[mark].m.value + GOSSIP_NONCE_LEN, mine, GOSSIP_SUM_LEN),
	   "to a member that reads summaries: pings carry ours");
	memcpy(v, sent[mark].m.value, GOSSIP_NONCE_LEN);
	probe_by(&b, 1, GOSSIP_T_ACK, v, GOSSIP_NONCE_LEN + GOSSIP_SUM_LEN);
	arrive(s, &b, now + 5);
	ok(!gossip_swim_repair(s, 0, now + 5, pk), "the same pair after one interval: not yet");
	now += 1001;
	gossip_swim_tick(s, now);
	memcpy(v, sent[nsent - 1].m.value, GOSSIP_NONCE_LEN);
	probe_by(&b, 1, GOSSIP_T_ACK, v, GOSSIP_NONCE_LEN + GOSSIP_SUM_LEN);
	arrive(s, &b, now + 5);
	ok(!gossip_swim_repair(s, 1, now + 5, pk), "standing two intervals, but a repair under way: none");
	ok(gossip_swim_repair(s, 0, now + 6, pk) && !memcmp(pk, ids[1].pk, 32),
	   "standing two intervals: a repair with the member whose summary differs");
	ok(!gossip_swim_repair(s, 0, now + 7, pk), "taken once");
	gossip_swim_free(s);

	/* Acks from this node: a summary only to those that read it. */
	s = gossip_swim_new(&t, &cfg, &me, dir, capture, NULL, T0);
	gossip_swim_summary(s, mine, T0);
	randombytes_buf(v, GOSSIP_NONCE_LEN);
	mark = nsent;
	probe_by(&b, 1, GOSSIP_T_PING, v, GOSSIP_NONCE_LEN);
	arrive(s, &b, T0 + 10);
	ok(nsent == mark + 1 && sent[mark].m.type == GOSSIP_T_ACK && sent[mark].m.valuelen == GOSSIP_NONCE_LEN,
	   "a plain ping (an older node's): a plain ack");
	memcpy(v + GOSSIP_NONCE_LEN, ids[0].pk, 32);
	mark = nsent;
	probe_by(&b, 1, GOSSIP_T_PING, v, GOSSIP_NONCE_LEN + 32);
	arrive(s, &b, T0 + 20);
	ok(nsent == mark + 1 && sent[mark].m.type == GOSSIP_T_ACK &&
	   sent[mark].m.valuelen == GOSSIP_NONCE_LEN + GOSSIP_SUM_LEN &&
	   !memcmp(sent[mark].m.value + GOSSIP_NONCE_LEN, mine, GOSSIP_SUM_LEN),
	   "a hello: acked with our summary");
	/* Pings with a summary (each fresh) for three intervals: acked with ours, but nothing
	 * is taken from them (anyone who saw one can replay it): no repair, and it is not
	 * marked as reading summaries (our next ping to it is a hello). */
	int taken = 0;
	uint64_t at = T0 + 100;
	for (; at <= T0 + 3100; at += 250) {
		randombytes_buf(v, GOSSIP_NONCE_LEN);
		memcpy(v + GOSSIP_NONCE_LEN, theirs, GOSSIP_SUM_LEN);
		probe_by(&b, 1, GOSSIP_T_PING, v, GOSSIP_NONCE_LEN + GOSSIP_SUM_LEN);
		mark = nsent;
		arrive(s, &b, at);
		taken += gossip_swim_repair(s, 0, at, pk);
	}
	ok(nsent == mark + 1 && sent[mark].m.valuelen == GOSSIP_NONCE_LEN + GOSSIP_SUM_LEN,
	   "a ping with a summary: acked with ours");
	ok(taken == 0, "a member's pings with a summary for three intervals: no repair (acks to our pings only)");
	now = T0;
	ok(round_ack(s, &now, 1, NULL) == GOSSIP_NONCE_LEN + 32,
	   "its pings and hellos teach nothing: our ping to it is a hello");
	gossip_swim_free(s);

	/* Summaries from acks to our own pings. A value in flight: a differing summary,
	 * then ours becomes the same. */
	s = gossip_swim_new(&t, &cfg, &me, dir, capture, NULL, T0);
	gossip_swim_summary(s, mine, T0);
	now = T0;
	round_ack(s, &now, 1, theirs);  /* the hello, acked with a summary */
	taken = gossip_swim_repair(s, 0, now + 6, pk);
	round_ack(s, &now, 1, theirs);
	gossip_swim_summary(s, theirs, now + 10);
	for (int k = 0; k < 4; k++) {
		round_ack(s, &now, 1, theirs);
		taken += gossip_swim_repair(s, 0, now + 6, pk);
	}
	ok(taken == 0, "a summary that ours comes to match: no repair");
	/* Ours changes while theirs stands: the pair stands from the change. */
	uint8_t third[GOSSIP_SUM_LEN] = {0xcc, 0xcc};
	gossip_swim_summary(s, third, now + 10);
	uint64_t changed = now + 10, due = 0;
	for (int k = 0; k < 5 && !due; k++) {
		round_ack(s, &now, 1, theirs);
		if (gossip_swim_repair(s, 0, now + 6, pk))
			due = now + 6;
	}
	ok(due >= changed + 2000, "ours changed: the pair stands from then (a repair %llu ms after the change)",
	   (unsigned long long)(due - changed));
	/* The same pair again (a liar, trust that differs, revoked messages: a repair that
	 * fixes nothing): never again on that pair, though it stands 20 intervals. */
	int busy_taken = 0;
	taken = 0;
	for (int k = 0; k < 20; k++) {
		round_ack(s, &now, 1, theirs);
		busy_taken += gossip_swim_repair(s, 1, now + 6, pk);
		taken += gossip_swim_repair(s, 0, now + 6, pk);
	}
	ok(busy_taken == 0, "none while one is under way");
	ok(taken == 0, "the pair a repair was made on, standing 20 intervals more: %d repairs", taken);
	gossip_swim_repair_done(s, ids[1].pk, 1, 60000, now);
	/* Theirs changes: a new pair, repaired once it stands. */
	uint8_t fourth[GOSSIP_SUM_LEN] = {0xdd, 0xdd};
	taken = 0;
	for (int k = 0; k < 6; k++) {
		round_ack(s, &now, 1, fourth);
		taken += gossip_swim_repair(s, 0, now + 6, pk);
	}
	ok(taken == 1, "theirs changed: a new pair, one repair (%d)", taken);
	/* That one failed (no TCP): the member backs off an interval, doubling, up to the
	 * cap, whatever pairs come. */
	uint64_t fails[5];
	for (int f = 0; f < 5; f++) {
		gossip_swim_repair_done(s, ids[1].pk, 0, 8000, now + 6);
		uint64_t failed = now + 6;
		fails[f] = 0;
		for (int k = 0; k < 20 && !fails[f]; k++) {
			uint8_t pair[GOSSIP_SUM_LEN] = {(uint8_t)f, (uint8_t)(k / 3)};  /* a new pair every 3 */
			round_ack(s, &now, 1, pair);
			if (gossip_swim_repair(s, 0, now + 6, pk))
				fails[f] = now + 6 - failed;
		}
	}
	ok(fails[0] >= 2000 && fails[1] >= 2000 && fails[2] >= 4000 && fails[3] >= 8000 && fails[4] >= 8000 &&
	   fails[4] < 12100,
	   "failed repairs back off: next ones %llu, %llu, %llu, %llu, %llu ms later (1, 2, 4, 8 s capped at 8)",
	   (unsigned long long)fails[0], (unsigned long long)fails[1], (unsigned long long)fails[2],
	   (unsigned long long)fails[3], (unsigned long long)fails[4]);
	/* A member that reads summaries misses a direct ack: asked with a hello again. */
	ok(round_ack(s, &now, 1, theirs) == GOSSIP_NONCE_LEN + GOSSIP_SUM_LEN, "it reads summaries: ours in the ping");
	ok(round_ack(s, &now, 0, NULL) == GOSSIP_NONCE_LEN + GOSSIP_SUM_LEN, "a ping it does not ack");
	gossip_swim_tick(s, now + 201);  /* its retry, also missed: asked indirectly */
	gossip_swim_tick(s, now + 601);  /* no ack by three fifths: suspect */
	size_t len = round_ack(s, &now, 1, theirs);
	ok(len == GOSSIP_NONCE_LEN + 32, "missed: the next is a hello");
	/* A replayed hello of its marks nothing: an older node after a restart stays plain. */
	peer(&t, 1)->info.incarnation++;
	peer(&t, 1)->state = GOSSIP_P_ALIVE;  /* its restart refuted the suspicion */
	round_ack(s, &now, 1, NULL);  /* a hello, acked plain: an older node */
	randombytes_buf(v, GOSSIP_NONCE_LEN);
	memcpy(v + GOSSIP_NONCE_LEN, ids[0].pk, 32);
	probe_by(&b, 1, GOSSIP_T_PING, v, GOSSIP_NONCE_LEN + 32);
	arrive(s, &b, now + 500);
	ok(round_ack(s, &now, 1, NULL) == GOSSIP_NONCE_LEN, "a hello replayed to us: still a plain ping to an older node");
	/* A member gone from the table (reaped) is forgotten at the round's reshuffle: back,
	 * it is asked with a hello again, whatever it said before. */
	peer(&t, 1)->info.incarnation++;
	round_ack(s, &now, 1, theirs);  /* the hello, acked with a summary */
	ok(round_ack(s, &now, 1, theirs) == GOSSIP_NONCE_LEN + GOSSIP_SUM_LEN, "it reads summaries again");
	t.n = 1;  /* member 1 reaped (its entry stays in memory, to come back) */
	now += 1001;
	gossip_swim_tick(s, now);
	t.n = 2;
	ok(round_ack(s, &now, 1, theirs) == GOSSIP_NONCE_LEN + 32, "reaped, then back: a hello");
	at = now + 10000;
	/* An outsider (not in the table) with a summary: nothing. */
	taken = 0;
	for (int k = 0; k < 40; k++, at += 100) {
		randombytes_buf(v, GOSSIP_NONCE_LEN);
		probe_by(&b, 4, GOSSIP_T_PING, v, GOSSIP_NONCE_LEN + GOSSIP_SUM_LEN);
		mark = nsent;
		arrive(s, &b, at);
		taken += gossip_swim_repair(s, 0, at, pk) + (int)(nsent - mark);
	}
	ok(taken == 0, "an outsider's pings with a summary: no ack, no repair");
	gossip_swim_free(s);

	/* A plain ack to a hello after the retry may be a helper's relay (plain): no verdict. */
	s = gossip_swim_new(&t, &cfg, &me, dir, capture, NULL, T0);
	gossip_swim_summary(s, mine, T0);
	now = T0 + 1001;
	mark = nsent;
	gossip_swim_tick(s, now);
	ok(nsent == mark + 1 && is_ping(&sent[mark], GOSSIP_NONCE_LEN + 32), "a hello");
	memcpy(v, sent[mark].m.value, GOSSIP_NONCE_LEN);
	mark = nsent;
	gossip_swim_tick(s, now + 201);
	ok(nsent > mark && is_ping(&sent[mark], GOSSIP_NONCE_LEN + 32), "its retry: the hello again");
	probe_by(&b, 1, GOSSIP_T_ACK, v, GOSSIP_NONCE_LEN);
	arrive(s, &b, now + 250);
	now += 1001;
	mark = nsent;
	gossip_swim_tick(s, now);
	ok(nsent == mark + 1 && is_ping(&sent[mark], GOSSIP_NONCE_LEN + 32),
	   "a plain ack after indirect pings began: asked again, not taken for an older node");
	gossip_swim_free(s);
	gossip_peers_free(&t);

	for (size_t k = 0; k < sizeof sent / sizeof *sent; k++)
		gossip_buf_free(&sent[k].b);
	gossip_buf_free(&b);
	for (int i = 1; i < MEMBERS; i++)
		gossip_identity_free(&ids[i]);
	gossip_author_close(&me);
	rm_dir(dir);
	return tap_done();
}
