/* gossip-peers: membership and failure detection: announce, heartbeat, join, leave;
 * observe the message stream into the peer table; list, pick, leader, watch. */
#include "gossip.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void usage(int code)
{
	fprintf(code ? stderr : stdout,
	        "usage: gossip-peers [-d dir] announce [-a address] ... [-t tag=value] ...\n"
	        "       gossip-peers [-d dir] beat [-e seconds] [-J fraction]\n"
	        "       gossip-peers [-d dir] join address ...\n"
	        "       gossip-peers [-d dir] leave\n"
	        "       gossip-peers [-d dir] [-Tp] [-i ms] [-J fraction] [-P phi] [-S mult] [-R seconds] observe\n"
	        "       gossip-peers [-j] [-d dir] list\n"
	        "       gossip-peers [-d dir] [-s] [-n count] pick\n"
	        "       gossip-peers [-j] [-d dir] leader\n"
	        "       gossip-peers [-jA] [-d dir] [-x handler] watch\n");
	exit(code);
}

static const char *dir;
static struct gossip_peers_cfg cfg;
static int json, tee_out, sync_addr, probing;
static double jitter;
static volatile sig_atomic_t stop;

static void on_stop(int sig)
{
	(void)sig;
	stop = 1;
}

/* ---- making membership messages ---- */

struct signer {
	struct gossip_identity id;
	struct gossip_clock clock;
};

static void signer_open(struct signer *s)
{
	if (gossip_identity_load(dir, &s->id, 0) < 0)
		gossip_die(GOSSIP_EXIT_ERR, "key: %s", gossip_error());
	if (gossip_clock_open(&s->clock, dir, 1) < 0)
		gossip_die(GOSSIP_EXIT_ERR, "%s", gossip_error());
}

static void sign(struct signer *s, struct gossip_buf *out, int type, const char *key,
                 const uint8_t *value, size_t n, int has_value)
{
	struct gossip_msg m = {0};
	m.type = (unsigned)type;
	m.key = (const uint8_t *)key;
	m.keylen = strlen(key);
	m.value = value;
	m.valuelen = n;
	m.has_value = has_value;
	m.value_text = has_value && n == 0;
	m.time = gossip_now_ms();
	if (gossip_clock_take(&s->clock, &m.version) < 0 || gossip_msg_sign(out, &m, &s->id) < 0)
		gossip_die(GOSSIP_EXIT_ERR, "%s", gossip_error());
}

static void write_out(const struct gossip_buf *b)
{
	if (gossip_write_all(1, b->p, b->len) < 0)
		gossip_die(GOSSIP_EXIT_ERR, "stdout: %s", strerror(errno));
}

static int do_announce(char **addrs, int naddrs, char **tags, int ntags)
{
	struct signer s;
	struct gossip_member m = {0};
	struct gossip_buf rec = {0}, out = {0};
	if (naddrs > GOSSIP_MAX_ADDRS || ntags > GOSSIP_MAX_TAGS)
		gossip_die(GOSSIP_EXIT_ERR, "at most %d addresses and %d tags", GOSSIP_MAX_ADDRS,
		           GOSSIP_MAX_TAGS);
	for (int i = 0; i < naddrs; i++) {
		struct gossip_addr a;
		if (gossip_addr_parse(&a, addrs[i]) < 0 || strlen(addrs[i]) >= sizeof m.addrs[0])
			gossip_die(GOSSIP_EXIT_ERR, "-a %s", gossip_error());
		strcpy(m.addrs[i], addrs[i]);
	}
	for (int i = 0; i < ntags; i++) {
		const char *eq = strchr(tags[i], '=');
		if (!eq || eq == tags[i] || eq - tags[i] >= 64 || strlen(eq + 1) >= 128 ||
		    strchr(eq + 1, '=') || strpbrk(tags[i], " \t\n"))
			gossip_die(GOSSIP_EXIT_ERR, "-t %s: want key=value (no spaces, key under 64 bytes)",
			           tags[i]);
		strcpy(m.tags[i], tags[i]);
	}
	m.naddrs = naddrs;
	m.ntags = ntags;
	if (isatty(1))
		gossip_die(GOSSIP_EXIT_ERR, "stdout is a terminal: pipe the announcement into gossip-merge");
	signer_open(&s);
	snprintf(m.name, sizeof m.name, "%s", *s.id.name ? s.id.name : "node");
	/* The incarnation rises with every announcement: a restarted node is news. */
	m.incarnation = gossip_now_ms();
	if (gossip_member_encode(&rec, &m) < 0)
		gossip_die(GOSSIP_EXIT_ERR, "%s", gossip_error());
	sign(&s, &out, GOSSIP_T_SET, GOSSIP_KEY_MEMBER, rec.p, rec.len, 1);
	write_out(&out);
	gossip_clock_close(&s.clock);
	gossip_identity_free(&s.id);
	gossip_buf_free(&rec);
	gossip_buf_free(&out);
	return GOSSIP_EXIT_OK;
}

static int do_beat(double every)
{
	struct signer s;
	struct gossip_buf out = {0};
	if (isatty(1))
		gossip_die(GOSSIP_EXIT_ERR, "stdout is a terminal: pipe the heartbeats into gossip-send");
	signer_open(&s);
	signal(SIGPIPE, SIG_IGN);
	do {
		out.len = 0;
		sign(&s, &out, GOSSIP_T_SET, GOSSIP_KEY_HB, (const uint8_t *)"", 0, 1);
		write_out(&out);
		if (every > 0) {
			/* -J: each interval off by up to that fraction, at random. */
			double d = every * (1 + jitter * ((double)randombytes_uniform(2000001) / 1e6 - 1));
			struct timespec ts = {(time_t)d, (long)((d - (time_t)d) * 1e9)};
			nanosleep(&ts, NULL);
		}
	} while (every > 0 && !stop);
	gossip_clock_close(&s.clock);
	gossip_identity_free(&s.id);
	gossip_buf_free(&out);
	return GOSSIP_EXIT_OK;
}

/* ---- the event log: DIR/events, a CBOR sequence of
 * [time, event, id, name, state, [addresses], ["tag=value", ...]] ---- */

static void log_event(const char *event, const struct gossip_peer *p)
{
	struct gossip_buf b = {0};
	int ok = gossip_cbor_head(&b, GOSSIP_MT_ARRAY, 7) == 0 &&
	         gossip_cbor_head(&b, GOSSIP_MT_UINT, gossip_now_ms()) == 0 &&
	         gossip_cbor_str(&b, GOSSIP_MT_TSTR, event, strlen(event)) == 0 &&
	         gossip_cbor_str(&b, GOSSIP_MT_BSTR, p ? p->pk : (const uint8_t *)"", p ? 32 : 0) == 0 &&
	         gossip_cbor_str(&b, GOSSIP_MT_TSTR, p ? p->info.name : "", p ? strlen(p->info.name) : 0) == 0;
	const char *st = p ? gossip_pstate_name(p->state) : "";
	ok = ok && gossip_cbor_str(&b, GOSSIP_MT_TSTR, st, strlen(st)) == 0 &&
	     gossip_cbor_head(&b, GOSSIP_MT_ARRAY, p ? (uint64_t)p->info.naddrs : 0) == 0;
	for (int i = 0; ok && p && i < p->info.naddrs; i++)
		ok = gossip_cbor_str(&b, GOSSIP_MT_TSTR, p->info.addrs[i], strlen(p->info.addrs[i])) == 0;
	ok = ok && gossip_cbor_head(&b, GOSSIP_MT_ARRAY, p ? (uint64_t)p->info.ntags : 0) == 0;
	for (int i = 0; ok && p && i < p->info.ntags; i++)
		ok = gossip_cbor_str(&b, GOSSIP_MT_TSTR, p->info.tags[i], strlen(p->info.tags[i])) == 0;
	int fd = open(gossip_path(dir, "events"), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (!ok || fd < 0 || gossip_write_all(fd, b.p, b.len) < 0)
		gossip_warn("events: cannot write %s: %s", gossip_path(dir, "events"), strerror(errno));
	if (fd >= 0)
		close(fd);
	gossip_buf_free(&b);
	if (!p || !strncmp(event, "partition", 9)) {
		gossip_warn("%s", event);
	}
}

/* ---- observe ---- */

static struct gossip_peers table;
static uint8_t self_pk[32];
static int have_self;

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


/* Milliseconds from then to now; 0 when then is later (stamped after now was taken). */
static uint64_t age(uint64_t now, uint64_t then)
{
	return now > then ? now - then : 0;
}

/* ---- probing (observe -p): SWIM's failure detector ----
 * Every interval this node pings one member, going round the members in a shuffled
 * order. No ack within a fifth of the interval: it asks INDIRECT other members to ping
 * the target for it, and they pass the target's ack back. No ack within three fifths:
 * the target is suspect, and a signed claim says so, to the target itself and to the
 * cluster. A member that hears it is suspected refutes the claim with a new incarnation
 * of its member record. Every member that hears the claim probes the target too, and
 * tells the claimer when it gets no ack either (Lifeguard's independent suspicions):
 * with such a confirmation the claimer declares the target dead after the suspicion
 * timeout, without one only after SLOW times that; so do the others, from when they
 * heard the claim, unless a dead claim comes first. */

enum { INDIRECT = 3, RELAYS = 64, SLOW = 4 };
static struct signer me;
static struct gossip_keyring keyring;
static struct gossip_out pout = {NULL, 0, -1, -1, 1200, 500, 0, NULL, 0, 0, 0};
static uint64_t self_inc;  /* this node's incarnation, raised by each refutation */
/* The probes under way: the round's (slot 0), and confirmations of others' claims. */
enum { PROBES = 16 };
static struct probe {
	int active, indirect;
	uint8_t target[32], nonce[GOSSIP_NONCE_LEN];
	uint8_t claimer[32];  /* a confirmation: who claimed the target suspect */
	uint64_t start;
} probes[PROBES];
static int forward = 1;  /* whether the message just observed goes on (is news here) */
static uint64_t next_probe;
static uint8_t (*order)[32];  /* the round: members in a shuffled order */
static size_t norder, order_pos;
static struct relay {
	uint8_t nonce[GOSSIP_NONCE_LEN], asker[32];
	uint64_t until;
} relays[RELAYS];

static uint64_t ack_ms(void)
{
	return cfg.interval_ms >= 5 ? (uint64_t)(cfg.interval_ms / 5) : 1;
}

static void send_to(const struct gossip_peer *p, const uint8_t *m, size_t n)
{
	const char *a = gossip_member_addr(&p->info, GOSSIP_UDP);
	long i;
	if (a && (i = gossip_out_index(&pout, a)) >= 0)
		gossip_out_queue_to(&pout, (size_t)i, m, n);
}

static void send_probe(const struct gossip_peer *to, int type, const uint8_t *v, size_t n)
{
	struct gossip_msg m = {0};
	struct gossip_buf b = {0};
	m.type = (unsigned)type;
	m.value = v;
	m.valuelen = n;
	m.has_value = 1;
	if (gossip_msg_sign(&b, &m, &me.id) < 0)
		gossip_die(GOSSIP_EXIT_ERR, "%s", gossip_error());
	send_to(to, b.p, b.len);
	gossip_buf_free(&b);
}

/* A claim that p is suspect or dead at its incarnation: to one member (p itself, or the
 * claimer of a claim this confirms), or with all, to every member we know (eager: a
 * claim is rare, and each member that finds it news passes it on as rumor). */
static void claim_rumor(const char *key, const struct gossip_peer *p, const struct gossip_peer *to,
                        int all)
{
	struct gossip_buf v = {0}, out = {0};
	if (gossip_cbor_head(&v, GOSSIP_MT_ARRAY, 2) < 0 || gossip_cbor_str(&v, GOSSIP_MT_BSTR, p->pk, 32) < 0 ||
	    gossip_cbor_head(&v, GOSSIP_MT_UINT, p->info.incarnation) < 0)
		gossip_die(GOSSIP_EXIT_ERR, "%s", gossip_error());
	sign(&me, &out, GOSSIP_T_SET, key, v.p, v.len, 1);
	for (size_t i = 0; all && i < table.n; i++) {
		const struct gossip_peer *q = &table.v[i];
		if (!q->self && q != to && (q->state == GOSSIP_P_ALIVE || q->state == GOSSIP_P_SUSPECT))
			send_to(q, out.p, out.len);
	}
	send_to(to, out.p, out.len);
	gossip_buf_free(&v);
	gossip_buf_free(&out);
}

static void claim(const char *key, const struct gossip_peer *p, int rumor)
{
	claim_rumor(key, p, p, rumor);
}

static void claim_to(const char *key, const struct gossip_peer *p, const struct gossip_peer *to)
{
	claim_rumor(key, p, to, 0);
}

static void set_state(struct gossip_peer *p, int state, uint64_t now)
{
	p->state = state;
	p->since = now;
	if (state == GOSSIP_P_SUSPECT || !p->suspected_at)
		p->suspected_at = now;
	log_event(state == GOSSIP_P_SUSPECT ? "member-suspect" : "member-failed", p);
}

/* Our newest member record, as signed. */
static struct gossip_buf self_rec;

/* Claimed suspect or dead by claimer (or by a claim it passed on): a new incarnation of
 * our member record says otherwise, unless we said so already. Either way the claimer
 * gets our newest record, and so does the cluster, by rumor. */
static void refute(uint64_t claimed, const struct gossip_peer *claimer)
{
	struct gossip_peer *s = have_self ? gossip_peers_find(&table, self_pk, 0) : NULL;
	struct gossip_buf rec = {0};
	if (!s)
		return;
	if (claimed >= self_inc) {
		struct gossip_member m = s->info;
		uint64_t now = gossip_now_ms();
		m.incarnation = self_inc = now > claimed ? now : claimed + 1;
		if (gossip_member_encode(&rec, &m) < 0)
			gossip_die(GOSSIP_EXIT_ERR, "%s", gossip_error());
		self_rec.len = 0;
		sign(&me, &self_rec, GOSSIP_T_SET, GOSSIP_KEY_MEMBER, rec.p, rec.len, 1);
		gossip_buf_free(&rec);
		gossip_warn("refuting a claim that this node is down: incarnation %llu",
		            (unsigned long long)self_inc);
		/* To every member we know (eager), so that no suspicion timer runs out on it. */
		for (size_t i = 0; i < table.n; i++)
			if (!table.v[i].self && table.v[i].state != GOSSIP_P_LEFT)
				send_to(&table.v[i], self_rec.p, self_rec.len);
	} else if (claimer && self_rec.len)
		send_to(claimer, self_rec.p, self_rec.len);
	if (self_rec.len && tee_out && gossip_write_all(1, self_rec.p, self_rec.len) < 0) {
		gossip_warn("stdout: %s; no longer copying the stream", strerror(errno));
		tee_out = 0;
	}
}

static int scan_store(void);

/* A probe or a claim from a signer not in the table: its member record may be in the
 * store already (a join brought it); look, at most every 100 ms. */
static struct gossip_peer *find_origin(const uint8_t pk[32], uint64_t now)
{
	static uint64_t last;
	struct gossip_peer *p = gossip_peers_find(&table, pk, 0);
	if (!p && age(now, last) >= 100) {
		last = now;
		scan_store();
		p = gossip_peers_find(&table, pk, 0);
	}
	return p;
}

/* Heard directly from p: a member we think suspect or dead is told so, so that it can
 * refute it (at most once an interval). */
static void heard_from(struct gossip_peer *p, uint64_t now)
{
	p->last_hb = now;
	if ((p->state == GOSSIP_P_SUSPECT || p->state == GOSSIP_P_DEAD) &&
	    age(now, p->told) >= (uint64_t)cfg.interval_ms) {
		p->told = now;
		claim(p->state == GOSSIP_P_SUSPECT ? GOSSIP_KEY_SUSPECT : GOSSIP_KEY_DEAD, p, 0);
	}
}

static int on_probe(const struct gossip_msg *m, const uint8_t *p, size_t n, uint64_t now)
{
	struct gossip_peer *from = find_origin(m->origin, now);
	if (!from || from->self || from->state == GOSSIP_P_LEFT)
		return 0;
	heard_from(from, now);
	if (m->type == GOSSIP_T_PING) {
		if (m->valuelen == GOSSIP_NONCE_LEN || !memcmp(m->value + GOSSIP_NONCE_LEN, self_pk, 32)) {
			send_probe(from, GOSSIP_T_ACK, m->value, GOSSIP_NONCE_LEN);
			return 0;
		}
		/* Asked to ping a member for the asker: with the asker's nonce, so that the
		 * member's ack, passed back unchanged, answers the asker's own probe. */
		struct gossip_peer *t = gossip_peers_find(&table, m->value + GOSSIP_NONCE_LEN, 0);
		if (!t || t->self || t->state == GOSSIP_P_LEFT)
			return 0;
		struct relay *r = &relays[0];
		for (size_t i = 0; i < RELAYS; i++)
			if (relays[i].until < r->until)
				r = &relays[i];
		memcpy(r->nonce, m->value, GOSSIP_NONCE_LEN);
		memcpy(r->asker, from->pk, 32);
		r->until = now + 3 * ack_ms();
		send_probe(t, GOSSIP_T_PING, m->value, GOSSIP_NONCE_LEN);
		return 0;
	}
	for (size_t i = 0; i < PROBES; i++)
		if (probes[i].active && !memcmp(m->value, probes[i].nonce, GOSSIP_NONCE_LEN) &&
		    !memcmp(m->origin, probes[i].target, 32)) {
			probes[i].active = 0;
			return 0;
		}
	for (size_t i = 0; i < RELAYS; i++) {
		struct relay *r = &relays[i];
		struct gossip_peer *asker;
		if (r->until >= now && !memcmp(r->nonce, m->value, GOSSIP_NONCE_LEN) &&
		    (asker = gossip_peers_find(&table, r->asker, 0))) {
			send_to(asker, p, n);
			r->until = 0;
			break;
		}
	}
	return 0;
}

static void start_probe(const struct gossip_peer *t, const uint8_t *claimer, uint64_t now);
static int claim_news(const struct gossip_msg *m, uint64_t now);

/* A claim about a member; 1 when it changed the table. A claim that is no news here is
 * not passed on. */
static int on_claim(const struct gossip_msg *m, uint64_t now)
{
	int r = claim_news(m, now);
	forward = r;
	return r;
}

static int claim_news(const struct gossip_msg *m, uint64_t now)
{
	struct gossip_cur c = {m->value, m->valuelen, 0};
	struct gossip_ev ev;
	int dead = gossip_msg_key_is(m, GOSSIP_KEY_DEAD);
	if (!m->has_value || m->value_text || gossip_cur_expect(&c, GOSSIP_EV_ARRAY, &ev, "claim") < 0 ||
	    ev.u != 2 || gossip_cur_expect(&c, GOSSIP_EV_BSTR, &ev, "claim") < 0 || ev.len != 32)
		return 0;
	struct gossip_peer *t = gossip_peers_find(&table, ev.data, 0);
	if (!t || gossip_cur_expect(&c, GOSSIP_EV_UINT, &ev, "claim") < 0)
		return 0;
	if (t->self) {
		refute(ev.u, find_origin(m->origin, now));
		return 0;
	}
	/* About an incarnation it has since refuted, or a member that left: old news. */
	if (ev.u < t->info.incarnation || t->state == GOSSIP_P_LEFT || t->state == GOSSIP_P_DEAD)
		return 0;
	if (!dead && t->state == GOSSIP_P_SUSPECT) {
		/* Another member's own probe failed too: a confirmation of ours. */
		if (t->suspector && memcmp(m->origin, self_pk, 32))
			t->confirmations++;
		return 0;
	}
	set_state(t, dead ? GOSSIP_P_DEAD : GOSSIP_P_SUSPECT, now);
	if (!dead)
		start_probe(t, m->origin, now);
	return 1;
}

/* The next member to probe: round the alive and suspect members in a shuffled order,
 * now and then a dead one instead, so that one that is back hears about it. */
static struct gossip_peer *next_target(void)
{
	size_t dead = 0;
	struct gossip_peer *t;
	for (size_t i = 0; i < table.n; i++)
		dead += table.v[i].state == GOSSIP_P_DEAD;
	if (dead && randombytes_uniform(1000) < (uint32_t)(cfg.dead_chance * 1000)) {
		uint32_t k = randombytes_uniform((uint32_t)dead);
		for (size_t i = 0; i < table.n; i++)
			if (table.v[i].state == GOSSIP_P_DEAD && !k--)
				return &table.v[i];
	}
	for (int pass = 0; pass < 2; pass++) {
		while (order_pos < norder) {
			t = gossip_peers_find(&table, order[order_pos++], 0);
			if (t && !t->self && (t->state == GOSSIP_P_ALIVE || t->state == GOSSIP_P_SUSPECT))
				return t;
		}
		uint8_t(*o)[32] = realloc(order, (table.n + 1) * sizeof *order);
		if (!o)
			return NULL;
		order = o;
		norder = order_pos = 0;
		for (size_t i = 0; i < table.n; i++) {
			if (table.v[i].self || (table.v[i].state != GOSSIP_P_ALIVE && table.v[i].state != GOSSIP_P_SUSPECT))
				continue;
			size_t j = randombytes_uniform((uint32_t)norder + 1);
			memcpy(order[norder], order[j], 32);
			memcpy(order[j], table.v[i].pk, 32);
			norder++;
		}
	}
	return NULL;
}

/* Ping t: for the round (slot 0, claimer NULL), or to confirm claimer's claim. */
static void start_probe(const struct gossip_peer *t, const uint8_t *claimer, uint64_t now)
{
	struct probe *pr = &probes[0];
	for (size_t i = 1; claimer && i < PROBES; i++)
		if (!probes[i].active || i == PROBES - 1) {
			pr = &probes[i];
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
	pr->active = 1;
	send_probe(t, GOSSIP_T_PING, pr->nonce, sizeof pr->nonce);
}

/* No ack from pr's target in time. */
static int probe_failed(struct probe *pr, struct gossip_peer *t, uint64_t now)
{
	pr->active = 0;
	if (pr != &probes[0]) {
		/* A confirmation: tell the claimer (only), while the target is still suspect. */
		struct gossip_peer *c = gossip_peers_find(&table, pr->claimer, 0);
		if (c && !c->self && t->state == GOSSIP_P_SUSPECT)
			claim_to(GOSSIP_KEY_SUSPECT, t, c);
		return 0;
	}
	if (t->state != GOSSIP_P_ALIVE)
		return 0;
	set_state(t, GOSSIP_P_SUSPECT, now);
	t->suspector = 1;
	t->confirmations = 0;
	claim(GOSSIP_KEY_SUSPECT, t, 1);
	return 1;
}

/* The probes' clock; 1 when the table changed. */
static int probe_tick(uint64_t now)
{
	int changed = 0;
	uint64_t a = ack_ms();
	for (size_t i = 0; i < PROBES; i++) {
		struct probe *pr = &probes[i];
		struct gossip_peer *t = pr->active ? gossip_peers_find(&table, pr->target, 0) : NULL;
		if (!t) {
			pr->active = 0;
			continue;
		}
		if (!pr->indirect && now >= pr->start + a) {
			/* Again directly (one datagram may have been lost), and through INDIRECT
			 * other alive members, chosen at random. */
			uint8_t v[GOSSIP_NONCE_LEN + 32];
			size_t cand = 0;
			memcpy(v, pr->nonce, GOSSIP_NONCE_LEN);
			memcpy(v + GOSSIP_NONCE_LEN, pr->target, 32);
			send_probe(t, GOSSIP_T_PING, pr->nonce, GOSSIP_NONCE_LEN);
			for (size_t k = 0; k < table.n; k++)
				cand += !table.v[k].self && table.v[k].state == GOSSIP_P_ALIVE && &table.v[k] != t;
			for (size_t k = 0, left = cand, want = INDIRECT; k < table.n && want; k++) {
				struct gossip_peer *h = &table.v[k];
				if (h->self || h->state != GOSSIP_P_ALIVE || h == t)
					continue;
				if (randombytes_uniform((uint32_t)left--) < want) {
					send_probe(h, GOSSIP_T_PING, v, sizeof v);
					want--;
				}
			}
			pr->indirect = 1;
		}
		if (now >= pr->start + 3 * a)
			changed |= probe_failed(pr, t, now);
	}
	if (now >= next_probe) {
		double d = cfg.interval_ms * (1 + jitter * ((double)randombytes_uniform(2000001) / 1e6 - 1));
		struct gossip_peer *t;
		next_probe = now + (uint64_t)d;
		if (!probes[0].active && (t = next_target()))
			start_probe(t, NULL, now);
	}
	gossip_out_flush(&pout);
	return changed;
}

/* How long the reader may wait before the probes' clock needs it (ms). */
static int probe_wait(uint64_t now)
{
	uint64_t due = next_probe;
	for (size_t i = 0; i < PROBES; i++)
		if (probes[i].active) {
			uint64_t d = probes[i].start + (probes[i].indirect ? 3 : 1) * ack_ms();
			due = d < due ? d : due;
		}
	return due <= now ? 1 : due - now > 100 ? 100 : (int)(due - now);
}

/* One message from the stream (from_store: found in the store, not just arrived); 1 when
 * the table changed. */
static int observe_msg(const uint8_t *p, size_t n, uint64_t now, int from_store)
{
	struct gossip_msg m;
	if (gossip_msg_decode(p, n, &m) < 0)
		return 0;
	if (gossip_msg_is_probe(&m)) {
		forward = 0;  /* between two nodes: never copied on */
		return probing && !from_store ? on_probe(&m, p, n, now) : 0;
	}
	if (probing && !from_store && m.type == GOSSIP_T_SET &&
	    (gossip_msg_key_is(&m, GOSSIP_KEY_SUSPECT) || gossip_msg_key_is(&m, GOSSIP_KEY_DEAD)))
		return on_claim(&m, now);
	int hb = gossip_msg_key_is(&m, GOSSIP_KEY_HB), mem = gossip_msg_key_is(&m, GOSSIP_KEY_MEMBER);
	if (!hb && !mem)
		return 0;
	struct gossip_peer *peer = gossip_peers_find(&table, m.origin, 0);
	if (hb) {
		/* A heartbeat from a member we do not know yet waits for its member record; one
		 * found in the store is old news, not a sign of life. */
		if (!peer || from_store || m.type != GOSSIP_T_SET || m.version <= peer->hb_version)
			return 0;
		peer->hb_version = m.version;
		gossip_peer_heard(peer, now);
		if (peer->state == GOSSIP_P_SUSPECT || peer->state == GOSSIP_P_DEAD) {
			int was_dead = peer->state == GOSSIP_P_DEAD;
			peer->state = GOSSIP_P_ALIVE;
			peer->since = now;
			if (was_dead)
				log_event("member-join", peer);
		}
		return 1;
	}
	if (peer && m.version <= peer->member_version)
		return 0;
	if (m.type == GOSSIP_T_DEL) {
		if (!peer)
			return 0;
		peer->member_version = m.version;
		if (peer->state != GOSSIP_P_LEFT) {
			peer->state = GOSSIP_P_LEFT;
			peer->since = now;
			log_event("member-leave", peer);
		}
		return 1;
	}
	struct gossip_member info;
	if (m.type != GOSSIP_T_SET || gossip_member_decode(m.value, m.valuelen, &info) < 0)
		return 0;
	int fresh = !peer;
	if (!peer && !(peer = gossip_peers_find(&table, m.origin, 1)))
		return 0;
	peer->self = have_self && !memcmp(m.origin, self_pk, 32);
	int changed = !fresh && member_changed(&peer->info, &info);
	int back = !fresh && peer->state != GOSSIP_P_ALIVE;
	/* A suspect that answers with a new incarnation was never gone. */
	int refuted = back && peer->state == GOSSIP_P_SUSPECT && info.incarnation > peer->info.incarnation;
	peer->info = info;
	peer->member_version = m.version;
	if (peer->self && info.incarnation >= self_inc) {
		self_inc = info.incarnation;
		self_rec.len = 0;
		gossip_buf_put(&self_rec, p, n);
	}
	if (refuted) {
		peer->state = GOSSIP_P_ALIVE;
		peer->since = now;
		peer->suspector = 0;
		if (changed)
			log_event("member-update", peer);
	} else if (fresh || back) {
		/* Phi starts with its first heartbeat; until then it has a grace period (see
		 * tick), also after a restart, when its old arrival times say nothing. */
		peer->last_hb = 0;
		peer->nint = peer->pos = 0;
		peer->state = GOSSIP_P_ALIVE;
		peer->since = now;
		log_event("member-join", peer);
	} else if (changed)
		log_event("member-update", peer);
	return 1;
}

/* State changes over time; 1 when the table changed. */
static int tick(uint64_t now)
{
	int changed = 0;
	size_t members = 0, alive = 0, suspects_recent = 0, unreachable = 0;
	for (size_t i = 0; i < table.n; i++)
		members += table.v[i].state != GOSSIP_P_LEFT;
	uint64_t suspicion = gossip_suspicion_ms(&cfg, members);
	/* Members that turn suspect within this of each other went at once: twice the
	 * suspicion timeout, and never under 10 intervals, as their phis cross apart. */
	uint64_t window = 2 * suspicion > 10 * cfg.interval_ms ? 2 * suspicion : (uint64_t)(10 * cfg.interval_ms);
	for (size_t i = 0; i < table.n; i++) {
		struct gossip_peer *p = &table.v[i];
		if (p->self) {
			p->state = GOSSIP_P_ALIVE;
			continue;
		}
		double phi = probing ? 0 : gossip_phi(p, now, &cfg);
		/* Not heard since it joined or came back: suspect once the grace period is over,
		 * and no way back but a heartbeat (since restarts with each state). */
		if (!probing && !p->last_hb &&
		    (p->state != GOSSIP_P_ALIVE || age(now, p->since) > (uint64_t)(10 * cfg.interval_ms + cfg.pause_ms)))
			phi = cfg.phi_suspect;
		if (probing) {
			/* Probes make members suspect; the suspicion timeout makes them dead. */
			uint64_t limit = p->suspector && p->confirmations ? suspicion : SLOW * suspicion;
			if (p->state == GOSSIP_P_SUSPECT && age(now, p->since) >= limit) {
				set_state(p, GOSSIP_P_DEAD, now);
				if (p->suspector)
					claim(GOSSIP_KEY_DEAD, p, 1);
				changed = 1;
			}
		} else if (p->state == GOSSIP_P_ALIVE && phi >= cfg.phi_suspect) {
			p->state = GOSSIP_P_SUSPECT;
			p->since = p->suspected_at = now;
			changed = 1;
			log_event("member-suspect", p);
		} else if (p->state == GOSSIP_P_SUSPECT && phi < cfg.phi_suspect) {
			p->state = GOSSIP_P_ALIVE;
			p->since = now;
			changed = 1;
		} else if (p->state == GOSSIP_P_SUSPECT && age(now, p->since) >= suspicion) {
			p->state = GOSSIP_P_DEAD;
			p->since = now;
			changed = 1;
			log_event("member-failed", p);
		}
		/* Reputation recovers a point a minute. */
		if (p->score < 100 && now > table.saved_at) {
			p->score += (double)(now - table.saved_at) / 60000.0;
			if (p->score > 100)
				p->score = 100;
		}
		/* Turned suspect within the window, and not heard from since: whether it is
		 * suspect or dead by now. */
		if ((p->state == GOSSIP_P_SUSPECT || p->state == GOSSIP_P_DEAD) && p->suspected_at &&
		    age(now, p->suspected_at) < window)
			suspects_recent++;
		if (p->state == GOSSIP_P_SUSPECT || p->state == GOSSIP_P_DEAD)
			unreachable++;
		if (p->state != GOSSIP_P_LEFT && (p->state != GOSSIP_P_DEAD || age(now, p->suspected_at) < window))
			alive++;  /* alive until lately: the members a partition is measured against */
	}
	/* Forget the long dead and the long gone. */
	for (size_t i = 0; i < table.n;) {
		struct gossip_peer *p = &table.v[i];
		if ((p->state == GOSSIP_P_DEAD || p->state == GOSSIP_P_LEFT) && age(now, p->since) >= cfg.reap_ms) {
			log_event("member-reap", p);
			table.v[i] = table.v[--table.n];
			changed = 1;
		} else
			i++;
	}
	/* Many members turning suspect at once looks like a partition, not like failures. */
	size_t others = alive ? alive - (have_self ? 1 : 0) : 0;
	if (!table.partition_since && others >= 2 &&
	    (double)suspects_recent >= cfg.partition_share * (double)(others) && suspects_recent >= 2) {
		table.partition_since = now;
		log_event("partition-suspected", NULL);
		changed = 1;
	} else if (table.partition_since && (double)unreachable < cfg.partition_share * (double)(others + unreachable) / 2) {
		table.partition_since = 0;
		log_event("partition-healed", NULL);
		changed = 1;
	}
	table.saved_at = now;
	return changed;
}

/* DIR/rejects: "TIME ORIGIN REASON" lines that gossip-listen and gossip-merge append. */
static off_t rejects_off;
static void read_rejects(void)
{
	char buf[8192];
	int fd = open(gossip_path(dir, "rejects"), O_RDONLY | O_CLOEXEC);
	struct stat st;
	if (fd < 0)
		return;
	if (fstat(fd, &st) == 0 && st.st_size < rejects_off)
		rejects_off = 0;  /* rotated */
	ssize_t k;
	while ((k = pread(fd, buf, sizeof buf - 1, rejects_off)) > 0) {
		buf[k] = 0;
		char *end = strrchr(buf, '\n');
		if (!end)
			break;
		*end = 0;
		rejects_off += end - buf + 1;
		for (char *line = strtok(buf, "\n"); line; line = strtok(NULL, "\n")) {
			char b64[64], reason[96];
			uint8_t pk[32];
			if (sscanf(line, "%*s %63s %95[^\n]", b64, reason) != 2 ||
			    gossip_unb64(pk, 32, b64, strlen(b64)) < 0)
				continue;
			struct gossip_peer *p = gossip_peers_find(&table, pk, 0);
			if (!p)
				continue;
			p->rejected++;
			p->score = p->score > 10 ? p->score - 10 : 0;
			snprintf(p->why, sizeof p->why, "%llu rejected, last: %s", (unsigned long long)p->rejected,
			         reason);
		}
	}
	close(fd);
}

/* Members that reached the store some other way (a join, an anti-entropy sync). */
static struct gossip_store *store;
static struct gossip_store_cursor store_seen;

static int scan_one(void *ctx, const struct gossip_entry *e, const uint8_t *p)
{
	int *dirty = ctx;
	if (e->type != GOSSIP_T_EVENT)
		*dirty |= observe_msg(p, e->len, gossip_now_ms(), 1);
	return 0;
}

static int scan_store(void)
{
	int dirty = 0;
	if (!store && !(store = gossip_store_open(dir, NULL))) {
		gossip_warn("%s", gossip_error());
		return 0;
	}
	if (gossip_store_lock(store) < 0) {
		gossip_warn("%s", gossip_error());
		return 0;
	}
	gossip_store_each_new(store, &store_seen, scan_one, &dirty);
	gossip_store_unlock(store);
	return dirty;
}

static int do_observe(void)
{
	struct gossip_reader r;
	const uint8_t *p;
	size_t n;
	uint64_t off, last_save = 0, last_scan = 0, last_tick = 0;
	char name[64];
	int got, dirty = 1;
	have_self = gossip_pub_load(dir, self_pk, name, sizeof name) == 0;
	if (gossip_peers_load(&table, dir) < 0)
		gossip_die(GOSSIP_EXIT_ERR, "%s", gossip_error());
	/* The arrival times in an old table say nothing about now: every member starts with
	 * a grace period again. */
	for (size_t i = 0; i < table.n; i++) {
		table.v[i].last_hb = 0;
		table.v[i].since = gossip_now_ms();
	}
	if (probing) {
		/* A suspicion from before a restart is not ours to time any more. */
		for (size_t i = 0; i < table.n; i++) {
			if (table.v[i].state == GOSSIP_P_SUSPECT)
				table.v[i].state = GOSSIP_P_ALIVE;
			if (have_self && !memcmp(table.v[i].pk, self_pk, 32))
				self_inc = table.v[i].info.incarnation;
		}
		signer_open(&me);
		if (gossip_keyring_load(&keyring, dir) < 0)
			gossip_die(GOSSIP_EXIT_ERR, "keyring: %s", gossip_error());
		pout.keys = &keyring;
		next_probe = gossip_now_ms() + (uint64_t)randombytes_uniform((uint32_t)cfg.interval_ms + 1);
	}
	table.probing = probing;
	struct stat st;
	if (stat(gossip_path(dir, "rejects"), &st) == 0)
		rejects_off = st.st_size;
	table.saved_at = gossip_now_ms();
	table.interval_ms = cfg.interval_ms;
	table.min_std_ms = cfg.min_std_ms;
	table.pause_ms = cfg.pause_ms;
	gossip_reader_init(&r, 0, "stdin", &gossip_msg_limits);
	r.timeout_ms = 100;
	signal(SIGPIPE, SIG_IGN);
	for (;;) {
		if (probing)
			r.timeout_ms = probe_wait(gossip_now_ms());
		got = gossip_reader_next(&r, &p, &n, &off);
		uint64_t now = gossip_now_ms();
		if (got == 1) {
			forward = 1;
			dirty |= observe_msg(p, n, now, 0);
			if (probing)
				dirty |= probe_tick(now);
			/* Membership matters more than the copy: a reader that went away stops the
			 * copy, not the observer. Probes are between two nodes: never copied. */
			if (tee_out && forward && gossip_write_all(1, p, n) < 0) {
				gossip_warn("stdout: %s; no longer copying the stream", strerror(errno));
				tee_out = 0;
			}
			/* More is buffered: take it first, but never let a busy stream starve the
			 * clock that turns silent peers suspect. */
			if (gossip_reader_ready(&r) && now - last_tick < 100)
				continue;
		} else if (got == 0 || stop) {
			break;
		} else if (!strstr(gossip_error(), "timed out")) {
			gossip_die(GOSSIP_EXIT_ERR, "%s", gossip_error());
		}
		read_rejects();
		if (now - last_scan >= 1000) {
			dirty |= scan_store();
			last_scan = now;
		}
		now = gossip_now_ms();  /* after the scan, which stamps what it finds */
		if (probing)
			dirty |= probe_tick(now);
		dirty |= tick(now);
		last_tick = now;
		if (dirty || now - last_save >= 1000) {
			if (gossip_peers_save(&table, dir) < 0)
				gossip_warn("%s", gossip_error());
			last_save = now;
			dirty = 0;
		}
	}
	tick(gossip_now_ms());
	gossip_peers_save(&table, dir);
	gossip_reader_free(&r);
	if (probing) {
		gossip_out_flush(&pout);
		gossip_out_close(&pout);
		gossip_keyring_free(&keyring);
		gossip_clock_close(&me.clock);
		gossip_identity_free(&me.id);
		gossip_buf_free(&self_rec);
		free(order);
	}
	gossip_store_close(store);
	return got < 0 ? GOSSIP_EXIT_ERR : GOSSIP_EXIT_OK;
}

/* ---- reading the table ---- */

static void load_table(void)
{
	if (gossip_peers_load(&table, dir) < 0)
		gossip_die(GOSSIP_EXIT_ERR, "%s", gossip_error());
	char name[64];
	have_self = gossip_pub_load(dir, self_pk, name, sizeof name) == 0;
	for (size_t i = 0; i < table.n; i++)
		table.v[i].self = have_self && !memcmp(table.v[i].pk, self_pk, 32);
	/* Phi as the observer computes it: with its heartbeat interval. */
	if (table.interval_ms > 0) {
		cfg.interval_ms = table.interval_ms;
		cfg.min_std_ms = table.min_std_ms;
		cfg.pause_ms = table.pause_ms;
	}
}

static void put_json_peer(const struct gossip_peer *p, uint64_t now)
{
	char id[45];
	gossip_b64(id, p->pk, 32);
	printf("{\"id\":\"%s\",\"name\":", id);
	gossip_put_string(stdout, (const uint8_t *)p->info.name, strlen(p->info.name), 0);
	printf(",\"state\":\"%s\",\"self\":%s,\"phi\":%.2f,\"last_heard_ms\":%lld,\"addrs\":[",
	       gossip_pstate_name(p->state), p->self ? "true" : "false",
	       p->self || table.probing ? 0.0 : gossip_phi(p, now, &cfg),
	       p->last_hb ? (long long)(now - p->last_hb) : -1LL);
	for (int i = 0; i < p->info.naddrs; i++) {
		printf("%s", i ? "," : "");
		gossip_put_string(stdout, (const uint8_t *)p->info.addrs[i], strlen(p->info.addrs[i]), 0);
	}
	printf("],\"tags\":{");
	for (int i = 0; i < p->info.ntags; i++) {
		size_t k = strcspn(p->info.tags[i], "=");
		printf("%s", i ? "," : "");
		gossip_put_string(stdout, (const uint8_t *)p->info.tags[i], k, 0);
		putchar(':');
		gossip_put_string(stdout, (const uint8_t *)p->info.tags[i] + k + 1,
		                  strlen(p->info.tags[i] + k + 1), 0);
	}
	printf("},\"score\":%.0f", p->score);
	if (*p->why) {
		printf(",\"why\":");
		gossip_put_string(stdout, (const uint8_t *)p->why, strlen(p->why), 0);
	}
	printf("}");
}

static int do_list(void)
{
	load_table();
	uint64_t now = gossip_now_ms();  /* after reading: nothing in the table is later */
	if (json) {
		for (size_t i = 0; i < table.n; i++) {
			put_json_peer(&table.v[i], now);
			putchar('\n');
		}
		if (table.partition_since)
			printf("{\"partition_suspected_since\":%llu}\n", (unsigned long long)table.partition_since);
		return table.n ? GOSSIP_EXIT_OK : GOSSIP_EXIT_NO;
	}
	if (table.partition_since)
		printf("partition suspected since %llu s ago: many members turned suspect at once\n",
		       (unsigned long long)((now - table.partition_since) / 1000));
	printf("%-16s %-8s %-8s %7s %10s  %-40s %s\n", "NAME", "ID", "STATE", "PHI", "HEARD", "ADDRESSES", "TAGS");
	for (size_t i = 0; i < table.n; i++) {
		const struct gossip_peer *p = &table.v[i];
		char id[9], addrs[600] = "", tags[600] = "", heard[32];
		size_t k = 0;
		gossip_short_id(id, p->pk);
		for (int a = 0; a < p->info.naddrs; a++)
			k += (size_t)snprintf(addrs + k, sizeof addrs - k, "%s%s", a ? "," : "", p->info.addrs[a]);
		k = 0;
		for (int t = 0; t < p->info.ntags; t++)
			k += (size_t)snprintf(tags + k, sizeof tags - k, "%s%s", t ? "," : "", p->info.tags[t]);
		if (p->self)
			snprintf(heard, sizeof heard, "self");
		else if (p->last_hb)
			snprintf(heard, sizeof heard, "%.1fs ago", (double)(now - p->last_hb) / 1000);
		else
			snprintf(heard, sizeof heard, "never");
		printf("%-16s %-8s %-8s %7.2f %10s  %-40s %s", p->info.name, id, gossip_pstate_name(p->state),
		       p->self || table.probing ? 0.0 : gossip_phi(p, now, &cfg), heard, addrs, tags);
		if (p->score < cfg.score_min)
			printf("  [not picked: score %.0f, %s]", p->score, p->why);
		putchar('\n');
	}
	return table.n ? GOSSIP_EXIT_OK : GOSSIP_EXIT_NO;
}

static int do_pick(long count)
{
	load_table();
	struct gossip_peer **out = calloc((size_t)count + 1, sizeof *out);
	size_t got = out ? gossip_peers_pick(&table, &cfg, (size_t)count, out) : 0;
	size_t shown = 0;
	for (size_t i = 0; i < got; i++) {
		const char *a = gossip_member_addr(&out[i]->info, sync_addr ? GOSSIP_TCP : GOSSIP_UDP);
		if (a) {
			puts(a);
			shown++;
		}
	}
	free(out);
	return shown ? GOSSIP_EXIT_OK : GOSSIP_EXIT_NO;
}

static int do_leader(void)
{
	load_table();
	const struct gossip_peer *l = gossip_peers_leader(&table);
	if (!l)
		return GOSSIP_EXIT_NO;
	if (json) {
		put_json_peer(l, gossip_now_ms());
		putchar('\n');
	} else {
		char id[45];
		gossip_b64(id, l->pk, 32);
		printf("%s %s\n", l->info.name, id);
	}
	return GOSSIP_EXIT_OK;
}

/* ---- watch ---- */

struct event {
	uint64_t time;
	char event[32], name[64], state[16], id[45];
	char addrs[600], tags[600];
};

static int parse_event(const uint8_t *p, size_t n, struct event *e)
{
	struct gossip_cur c = {p, n, 0};
	struct gossip_ev ev;
	uint64_t k;
	memset(e, 0, sizeof *e);
	if (gossip_cur_expect(&c, GOSSIP_EV_ARRAY, &ev, "event") < 0 || ev.u != 7 ||
	    gossip_cur_expect(&c, GOSSIP_EV_UINT, &ev, "event") < 0)
		return -1;
	e->time = ev.u;
	if (gossip_cur_expect(&c, GOSSIP_EV_TSTR, &ev, "event") < 0 || ev.len >= sizeof e->event)
		return -1;
	memcpy(e->event, ev.data, ev.len);
	if (gossip_cur_expect(&c, GOSSIP_EV_BSTR, &ev, "event") < 0 || (ev.len != 32 && ev.len))
		return -1;
	if (ev.len)
		gossip_b64(e->id, ev.data, 32);
	if (gossip_cur_expect(&c, GOSSIP_EV_TSTR, &ev, "event") < 0 || ev.len >= sizeof e->name)
		return -1;
	memcpy(e->name, ev.data, ev.len);
	if (gossip_cur_expect(&c, GOSSIP_EV_TSTR, &ev, "event") < 0 || ev.len >= sizeof e->state)
		return -1;
	memcpy(e->state, ev.data, ev.len);
	for (int list = 0; list < 2; list++) {
		char *dst = list ? e->tags : e->addrs;
		size_t at = 0;
		if (gossip_cur_expect(&c, GOSSIP_EV_ARRAY, &ev, "event") < 0)
			return -1;
		k = ev.u;
		for (uint64_t i = 0; i < k; i++) {
			if (gossip_cur_expect(&c, GOSSIP_EV_TSTR, &ev, "event") < 0)
				return -1;
			at += (size_t)snprintf(dst + at, 600 - at > 0 ? 600 - at : 0, "%s%.*s", i ? "," : "",
			                       (int)ev.len, ev.data);
			if (at >= 600)
				at = 599;
		}
	}
	return 0;
}

static void run_handler(const char *handler, const struct event *e)
{
	int fds[2];
	if (pipe(fds) < 0)
		return;
	pid_t pid = fork();
	if (pid == 0) {
		dup2(fds[0], 0);
		close(fds[0]);
		close(fds[1]);
		setenv("GOSSIP_EVENT", e->event, 1);
		setenv("GOSSIP_MEMBER_ID", e->id, 1);
		setenv("GOSSIP_MEMBER_NAME", e->name, 1);
		setenv("GOSSIP_MEMBER_STATE", e->state, 1);
		setenv("GOSSIP_MEMBER_ADDRS", e->addrs, 1);
		setenv("GOSSIP_MEMBER_TAGS", e->tags, 1);
		setenv("GOSSIP_DIR", dir, 1);
		execl("/bin/sh", "sh", "-c", handler, (char *)NULL);
		_exit(127);
	}
	close(fds[0]);
	/* The members on stdin, one line each: name id state addresses tags. */
	struct gossip_peers t;
	if (pid > 0 && gossip_peers_load(&t, dir) == 0) {
		FILE *f = fdopen(fds[1], "w");
		for (size_t i = 0; f && i < t.n; i++) {
			char id[45];
			gossip_b64(id, t.v[i].pk, 32);
			fprintf(f, "%s %s %s", t.v[i].info.name, id, gossip_pstate_name(t.v[i].state));
			for (int a = 0; a < t.v[i].info.naddrs; a++)
				fprintf(f, "%c%s", a ? ',' : ' ', t.v[i].info.addrs[a]);
			for (int g = 0; g < t.v[i].info.ntags; g++)
				fprintf(f, "%c%s", g ? ',' : ' ', t.v[i].info.tags[g]);
			fputc('\n', f);
		}
		if (f)
			fclose(f);
		else
			close(fds[1]);
		gossip_peers_free(&t);
	} else
		close(fds[1]);
	int status;
	if (pid > 0 && waitpid(pid, &status, 0) > 0 && (!WIFEXITED(status) || WEXITSTATUS(status)))
		gossip_warn("handler for %s %s failed (exit %d)", e->event, e->name,
		            WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
}

static int do_watch(const char *handler, int from_start)
{
	char path[4200];  /* our own copy: gossip_path's buffers are reused */
	snprintf(path, sizeof path, "%s", gossip_path(dir, "events"));
	struct stat st;
	off_t off = 0;
	struct gossip_buf b = {0};
	if (!from_start && stat(path, &st) == 0)
		off = st.st_size;
	signal(SIGPIPE, SIG_IGN);
	while (!stop) {
		int fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd >= 0) {
			uint8_t chunk[65536];
			ssize_t k;
			while ((k = pread(fd, chunk, sizeof chunk, off)) > 0) {
				gossip_buf_put(&b, chunk, (size_t)k);
				off += k;
			}
			close(fd);
		}
		size_t at = 0, len;
		int warned = 0;
		while (at < b.len) {
			int sc = gossip_cbor_scan(b.p + at, b.len - at, &gossip_any_limits, NULL, &len);
			if (sc == GOSSIP_SCAN_MORE)
				break;
			if (sc == GOSSIP_SCAN_BAD) {
				/* Not written by gossip-peers observe: say so, and find the next event
				 * after it, a byte at a time. */
				if (!warned++)
					gossip_warn("events: %s is corrupt before offset %lld: skipping it", path,
					            (long long)off);
				at++;
				continue;
			}
			struct event e;
			if (parse_event(b.p + at, len, &e) == 0) {
				char when[32];
				gossip_fmt_time(when, e.time);
				if (json) {
					/* Every string escaped: names and tags come from other nodes. */
					const char *f[][2] = {{"event", e.event}, {"id", e.id}, {"name", e.name},
					                      {"state", e.state}, {"addrs", e.addrs}, {"tags", e.tags}};
					printf("{\"time\":%llu", (unsigned long long)e.time);
					for (size_t i = 0; i < sizeof f / sizeof *f; i++) {
						printf(",\"%s\":", f[i][0]);
						gossip_put_string(stdout, (const uint8_t *)f[i][1], strlen(f[i][1]), 0);
					}
					puts("}");
				} else
					printf("%s %s %s %s %s %s\n", when, e.event, *e.name ? e.name : "-",
					       *e.state ? e.state : "-", *e.addrs ? e.addrs : "-", *e.tags ? e.tags : "-");
				if (fflush(stdout) != 0)
					stop = 1;
				if (handler)
					run_handler(handler, &e);
			}
			at += len;
		}
		if (at) {
			memmove(b.p, b.p + at, b.len - at);
			b.len -= at;
		}
		struct timespec ts = {0, 100000000};
		nanosleep(&ts, NULL);
	}
	gossip_buf_free(&b);
	return GOSSIP_EXIT_OK;
}

/* ---- join and leave ---- */

struct joinctx {
	uint8_t self[32];
	struct gossip_out out;
	struct gossip_buf mine;  /* our own member record */
};

static int join_scan(void *ctx, const struct gossip_entry *e, const uint8_t *p)
{
	struct joinctx *j = ctx;
	struct gossip_msg m;
	struct gossip_member info;
	if (e->type != GOSSIP_T_SET || gossip_msg_decode(p, e->len, &m) < 0 ||
	    !gossip_msg_key_is(&m, GOSSIP_KEY_MEMBER))
		return 0;
	if (!memcmp(m.origin, j->self, 32)) {
		j->mine.len = 0;
		return gossip_buf_put(&j->mine, p, e->len);
	}
	const char *a;
	if (gossip_member_decode(m.value, m.valuelen, &info) == 0 &&
	    (a = gossip_member_addr(&info, GOSSIP_UDP)))
		gossip_out_index(&j->out, a);
	return 0;
}

static int do_join(int argc, char **argv)
{
	struct gossip_store *st;
	struct gossip_trust trust;
	int ok = 0;
	if (!(st = gossip_store_open(dir, NULL)))
		gossip_die(GOSSIP_EXIT_ERR, "%s", gossip_error());
	if (gossip_trust_load(&trust, dir) < 0)
		gossip_die(GOSSIP_EXIT_ERR, "trusted: %s", gossip_error());
	for (int i = 0; i < argc; i++) {
		struct gossip_merger mg = {.st = st, .trust = &trust};
		struct gossip_sync_stats s;
		/* A push-pull sync: the seed learns about us, we about everyone it knows. */
		if (gossip_sync_client(&mg, argv[i], GOSSIP_PUSH_PULL, 10000, &s) < 0)
			gossip_warn("join: %s: %s", argv[i], gossip_error());
		else
			ok++;
		gossip_merger_free(&mg);
	}
	/* Tell every member we now know about us at once (eager), rather than waiting for
	 * anti-entropy to carry our record around. */
	if (ok && gossip_store_lock(st) == 0) {
		struct joinctx j = {{0}, {NULL, 0, -1, -1, 1200, 2000, 0, NULL, 0, 0, 0}, {0}};
		struct gossip_keyring keys;
		char name[64];
		if (gossip_pub_load(dir, j.self, name, sizeof name) == 0 &&
		    gossip_keyring_load(&keys, dir) == 0) {
			j.out.keys = &keys;
			gossip_store_each(st, 0, join_scan, &j);
			if (j.mine.len)
				for (size_t i = 0; i < j.out.n; i++)
					gossip_out_queue_to(&j.out, i, j.mine.p, j.mine.len);
			gossip_out_flush(&j.out);
			gossip_out_close(&j.out);
			gossip_keyring_free(&keys);
		}
		gossip_buf_free(&j.mine);
		gossip_store_unlock(st);
	}
	gossip_store_close(st);
	gossip_trust_free(&trust);
	if (!ok)
		return argc ? GOSSIP_EXIT_NO : GOSSIP_EXIT_ERR;
	return GOSSIP_EXIT_OK;
}

static int do_leave(void)
{
	struct signer s;
	struct gossip_buf out = {0};
	struct gossip_store *st;
	struct gossip_trust trust;
	struct gossip_keyring keys;
	signer_open(&s);
	sign(&s, &out, GOSSIP_T_DEL, GOSSIP_KEY_MEMBER, NULL, 0, 0);
	gossip_clock_close(&s.clock);
	/* Into our own store, then to every live peer at once (eager). */
	if (!(st = gossip_store_open(dir, NULL)))
		gossip_die(GOSSIP_EXIT_ERR, "%s", gossip_error());
	if (gossip_trust_load(&trust, dir) < 0)
		gossip_die(GOSSIP_EXIT_ERR, "trusted: %s", gossip_error());
	struct gossip_merger mg = {.st = st, .trust = &trust};
	if (gossip_merge_item(&mg, out.p, out.len, "leave", 0) < 0 || gossip_merge_flush(&mg) < 0)
		gossip_die(GOSSIP_EXIT_ERR, "%s", gossip_error());
	gossip_merger_free(&mg);
	gossip_store_close(st);
	gossip_trust_free(&trust);
	if (gossip_keyring_load(&keys, dir) < 0)
		gossip_die(GOSSIP_EXIT_ERR, "keyring: %s", gossip_error());
	struct gossip_out o = {NULL, 0, -1, -1, 1200, 2000, 0, &keys, 0, 0, 0};
	load_table();
	for (size_t i = 0; i < table.n; i++) {
		const char *a = gossip_member_addr(&table.v[i].info, GOSSIP_UDP);
		if (!table.v[i].self && table.v[i].state != GOSSIP_P_LEFT && a && gossip_out_add(&o, a) < 0)
			gossip_warn("leave: %s", gossip_error());
	}
	if (o.n) {
		gossip_out_queue(&o, out.p, out.len);
		gossip_out_flush(&o);
	}
	gossip_out_close(&o);
	gossip_keyring_free(&keys);
	gossip_identity_free(&s.id);
	if (!isatty(1))
		write_out(&out);
	gossip_buf_free(&out);
	return GOSSIP_EXIT_OK;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"dir", required_argument, NULL, 'd'}, {"json", no_argument, NULL, 'j'},
		{"address", required_argument, NULL, 'a'}, {"tag", required_argument, NULL, 't'},
		{"every", required_argument, NULL, 'e'}, {"interval", required_argument, NULL, 'i'},
		{"phi", required_argument, NULL, 'P'}, {"suspicion", required_argument, NULL, 'S'},
		{"reap", required_argument, NULL, 'R'}, {"count", required_argument, NULL, 'n'},
		{"sync", no_argument, NULL, 's'}, {"exec", required_argument, NULL, 'x'},
		{"all", no_argument, NULL, 'A'}, {"tee", no_argument, NULL, 'T'},
		{"probe", no_argument, NULL, 'p'},
		{"jitter", required_argument, NULL, 'J'},
		{"partition-share", required_argument, NULL, 256},
		{"score-min", required_argument, NULL, 257},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'}, {0}};
	char **addrs = calloc((size_t)argc, sizeof *addrs), **tags = calloc((size_t)argc, sizeof *tags);
	int naddrs = 0, ntags = 0, c, from_start = 0;
	double every = 0;
	long count = 1;
	const char *handler = NULL, *d = NULL;
	char *end;

	gossip_init(argv[0]);
	cfg = gossip_peers_defaults;
	while ((c = getopt_long(argc, argv, "d:ja:t:e:J:i:P:S:R:n:sx:ATph", longopts, NULL)) != -1) {
		if (c != 'a' && c != 't')
			gossip_opt_once(c);
		switch (c) {
		case 'd': d = optarg; break;
		case 'j': json = 1; break;
		case 'a': addrs[naddrs++] = optarg; break;
		case 't': tags[ntags++] = optarg; break;
		case 'e':
			every = strtod(optarg, &end);
			if (*end || !(every > 0) || every > 3600)
				gossip_die(GOSSIP_EXIT_ERR, "-e %s: want seconds, more than 0", optarg);
			break;
		case 'J':
			jitter = strtod(optarg, &end);
			if (*end || jitter < 0 || jitter >= 1)
				gossip_die(GOSSIP_EXIT_ERR, "-J %s: want a fraction from 0 to below 1", optarg);
			break;
		case 256:
			cfg.partition_share = strtod(optarg, &end);
			if (*end || !(cfg.partition_share > 0) || cfg.partition_share > 1)
				gossip_die(GOSSIP_EXIT_ERR, "--partition-share %s: want a fraction above 0, at most 1", optarg);
			break;
		case 257:
			cfg.score_min = strtod(optarg, &end);
			if (*end || cfg.score_min < 0 || cfg.score_min > 100)
				gossip_die(GOSSIP_EXIT_ERR, "--score-min %s: want 0 to 100", optarg);
			break;
		case 'i':
			cfg.interval_ms = strtod(optarg, &end);
			if (*end || !(cfg.interval_ms >= 1))
				gossip_die(GOSSIP_EXIT_ERR, "-i %s: want the heartbeat interval in ms", optarg);
			cfg.min_std_ms = cfg.interval_ms / 10;
			cfg.pause_ms = cfg.interval_ms * 2;
			break;
		case 'P':
			cfg.phi_suspect = strtod(optarg, &end);
			if (*end || !(cfg.phi_suspect > 0))
				gossip_die(GOSSIP_EXIT_ERR, "-P %s: want a phi threshold above 0", optarg);
			break;
		case 'S':
			cfg.suspicion_mult = strtod(optarg, &end);
			if (*end || !(cfg.suspicion_mult > 0))
				gossip_die(GOSSIP_EXIT_ERR, "-S %s: want a multiplier above 0", optarg);
			break;
		case 'R':
			cfg.reap_ms = strtod(optarg, &end) * 1000;
			if (*end || !(cfg.reap_ms > 0))
				gossip_die(GOSSIP_EXIT_ERR, "-R %s: want seconds", optarg);
			break;
		case 'n':
			count = strtol(optarg, &end, 10);
			if (*end || count < 1 || count > 65536)
				gossip_die(GOSSIP_EXIT_ERR, "-n %s: want a count of 1 or more", optarg);
			break;
		case 's': sync_addr = 1; break;
		case 'x': handler = optarg; break;
		case 'A': from_start = 1; break;
		case 'T': tee_out = 1; break;
		case 'p': probing = 1; break;
		case 'h': usage(GOSSIP_EXIT_OK); break;
		case 'V': gossip_print_version(); break;
		default: usage(GOSSIP_EXIT_ERR);
		}
	}
	argc -= optind;
	argv += optind;
	if (argc < 1)
		usage(GOSSIP_EXIT_ERR);
	dir = gossip_state_dir(d);
	const char *verb = argv[0];
	struct sigaction sa = {0};
	sa.sa_handler = on_stop;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	int r;
	if (!strcmp(verb, "announce") && argc == 1)
		r = do_announce(addrs, naddrs, tags, ntags);
	else if (naddrs || ntags || ((tee_out || probing) && strcmp(verb, "observe")))
		usage(GOSSIP_EXIT_ERR);
	else if (!strcmp(verb, "beat") && argc == 1)
		r = do_beat(every);
	else if (!strcmp(verb, "join") && argc > 1)
		r = do_join(argc - 1, argv + 1);
	else if (!strcmp(verb, "leave") && argc == 1)
		r = do_leave();
	else if (!strcmp(verb, "observe") && argc == 1)
		r = do_observe();
	else if (!strcmp(verb, "list") && argc == 1)
		r = do_list();
	else if (!strcmp(verb, "pick") && argc == 1)
		r = do_pick(count);
	else if (!strcmp(verb, "leader") && argc == 1)
		r = do_leader();
	else if (!strcmp(verb, "watch") && argc == 1)
		r = do_watch(handler, from_start);
	else
		usage(GOSSIP_EXIT_ERR);
	free(addrs);
	free(tags);
	gossip_peers_free(&table);
	return r;
}
