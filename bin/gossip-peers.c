/* gossip-peers: membership and failure detection: announce, heartbeat, join, leave;
 * observe the message stream into the peer table; list, pick, leader, watch; aggregate
 * over every member. */
#include "gossip.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static void usage(int code)
{
	fprintf(code ? stderr : stdout,
	        "usage: gossip-peers [-d dir] announce [-a address] ... [-t tag=value] ...\n"
	        "       gossip-peers [-d dir] beat [-e seconds] [-J fraction]\n"
	        "       gossip-peers [-d dir] join address ...\n"
	        "       gossip-peers [-d dir] leave\n"
	        "       gossip-peers [-d dir] [-Tp] [-r arity] [-i seconds] [-J fraction] [-P phi] [-S mult]\n"
	        "                    [-R seconds] [-e seconds] [-H socket] [--announce file]\n"
	        "                    [--join address ...] [--leave file] [--second-tree always|doubt] observe\n"
	        "       gossip-peers [-d dir] -r arity [--second-tree always|doubt] rumor\n"
	        "       gossip-peers [-j] [-d dir] list\n"
	        "       gossip-peers [-d dir] [-s] [-n count] pick\n"
	        "       gossip-peers [-j] [-d dir] leader\n"
	        "       gossip-peers [-jA] [-d dir] [-x handler] ... [-c seconds] [-k seconds]\n"
	        "                    [--ready file] watch\n"
	        "       gossip-peers [-d dir] tag name=value ...\n"
	        "       gossip-peers [-d dir] untag name ...\n"
	        "       gossip-peers [-j] [-d dir] tags\n"
	        "       gossip-peers [-d dir] force-leave name|id\n"
	        "       gossip-peers [-j] [-d dir] [-e error] [-r seconds] [-T seconds] aggregate function [input]\n");
	exit(code);
}

/* What the command line asks for. */
struct opts {
	const char *dir;
	struct gossip_peers_cfg cfg;
	int json, tee, sync_addr, probing, from_start;
	long rumor;  /* observe -r: the arity of the rumor's trees (0: no rumor) */
	int lazy, second_tree;  /* --second-tree: doubt is GOSSIP_RUMOR_LAZY; given at all */
	double every;  /* beat -e, observe -e: seconds */
	long count;  /* pick -n */
	struct gossip_handler *handlers;  /* watch -x */
	int nhandlers;
	uint64_t limit_ms, coalesce_ms;  /* watch -k, -c */
	const char *ready;  /* watch --ready */
	const char *hand;  /* observe -H: serve the syncs gossip-listen -H hands over there */
	const char *announce;  /* observe --announce: this start's announcement, to store and send */
	const char *leave;  /* observe --leave: once this file is there, leave the cluster */
	char **seeds;  /* observe --join */
	int nseeds;
	char **addrs, **tags;  /* announce -a, -t */
	int naddrs, ntags;
};

static volatile sig_atomic_t stop;

static volatile sig_atomic_t want_reload;

static void on_hup(int sig)
{
	(void)sig;
	want_reload = 1;
}

static void on_stop(int sig)
{
	(void)sig;
	stop = 1;
}

/* ---- making membership messages ---- */

static void author_open(struct gossip_author *a, const char *dir)
{
	if (gossip_author_open(a, dir, 1) < 0)
		gossip_die(GOSSIP_EXIT_ERR, "%s", gossip_error());
}

/* A set of key to value (bytes; an empty text string when n is 0), or a delete of key. */
static void sign(struct gossip_author *a, struct gossip_buf *out, int type, const char *key,
                 const uint8_t *value, size_t n)
{
	struct gossip_msg m = {0};
	m.type = (unsigned)type;
	m.key = (const uint8_t *)key;
	m.keylen = strlen(key);
	m.value = value;
	m.valuelen = n;
	m.has_value = type == GOSSIP_T_SET;
	m.value_text = m.has_value && n == 0;
	if (gossip_author_sign(a, out, &m) < 0)
		gossip_die(GOSSIP_EXIT_ERR, "%s", gossip_error());
}

static void write_out(const struct gossip_buf *b)
{
	if (gossip_write_all(1, b->p, b->len) < 0)
		gossip_die(GOSSIP_EXIT_ERR, "stdout: %s", strerror(errno));
}

/* ---- tags: DIR/tags, the node's own tags, one name=value a line ---- */

struct taglist {
	char v[GOSSIP_MAX_TAGS][192];
	int n;
};

/* Whether tag is name=value as a member record holds it: a name of 1 to 63 bytes, a
 * value under 128, no second '=', no white space. */
static int tag_ok(const char *tag)
{
	const char *eq = strchr(tag, '=');
	return eq && eq != tag && eq - tag < 64 && strlen(eq + 1) < 128 && !strchr(eq + 1, '=') &&
	       !strpbrk(tag, " \t\n");
}

static void check_tag(const char *what, const char *tag)
{
	if (!tag_ok(tag))
		gossip_die(GOSSIP_EXIT_ERR, "%s %s: want key=value (no spaces, key under 64 bytes)", what, tag);
}

static int tag_find(const struct taglist *l, const char *name, size_t k)
{
	for (int i = 0; i < l->n; i++)
		if (strcspn(l->v[i], "=") == k && !strncmp(l->v[i], name, k))
			return i;
	return -1;
}

/* Set name=value: in place of the same name, else at the end. */
static void tag_set(struct taglist *l, const char *tag)
{
	int i = tag_find(l, tag, strcspn(tag, "="));
	if (i < 0 && l->n >= GOSSIP_MAX_TAGS)
		gossip_die(GOSSIP_EXIT_ERR, "%s: at most %d tags", tag, GOSSIP_MAX_TAGS);
	snprintf(l->v[i < 0 ? l->n++ : i], sizeof l->v[0], "%s", tag);
}

static void tag_del(struct taglist *l, const char *name)
{
	int i = tag_find(l, name, strlen(name));
	if (i >= 0) {
		memmove(l->v[i], l->v[i + 1], (size_t)(l->n - i - 1) * sizeof l->v[0]);
		l->n--;
	}
}

/* DIR/tags (missing: none). */
static void tags_load(struct taglist *l, const char *dir)
{
	const char *path = gossip_path(dir, "tags");
	struct gossip_buf b = {0};
	l->n = 0;
	if (access(path, F_OK) < 0 && errno == ENOENT)
		return;
	if (gossip_read_file(path, 1 << 16, &b) < 0 || gossip_buf_put(&b, "", 1) < 0)
		gossip_die(GOSSIP_EXIT_ERR, "%s", gossip_error());
	char *line = (char *)b.p, *next;
	for (unsigned no = 1; line && *line; line = next, no++) {
		if ((next = strchr(line, '\n')))
			*next++ = 0;
		if (!*line)
			continue;
		if (!tag_ok(line))
			gossip_die(GOSSIP_EXIT_ERR, "%s: line %u: %s: want key=value (no spaces, key under 64 "
			           "bytes); correct or remove the line", path, no, line);
		tag_set(l, line);
	}
	gossip_buf_free(&b);
}

/* 0, or -1 with the error set. */
static int tags_save(const struct taglist *l, const char *dir)
{
	struct gossip_buf b = {0};
	for (int i = 0; i < l->n; i++)
		if (gossip_buf_put(&b, l->v[i], strlen(l->v[i])) < 0 || gossip_buf_put(&b, "\n", 1) < 0)
			gossip_die(GOSSIP_EXIT_ERR, "%s", strerror(ENOMEM));
	int r = gossip_write_atomic(gossip_path(dir, "tags"), b.p ? (const void *)b.p : "", b.len, 0644, 0);
	gossip_buf_free(&b);
	return r;
}

static int do_announce(const struct opts *o)
{
	struct gossip_author a;
	struct gossip_member m = {0};
	struct gossip_buf rec = {0}, out = {0};
	struct taglist tags;
	if (o->naddrs > GOSSIP_MAX_ADDRS || o->ntags > GOSSIP_MAX_TAGS)
		gossip_die(GOSSIP_EXIT_ERR, "at most %d addresses and %d tags", GOSSIP_MAX_ADDRS,
		           GOSSIP_MAX_TAGS);
	for (int i = 0; i < o->naddrs; i++) {
		struct gossip_addr addr;
		if (gossip_addr_parse(&addr, o->addrs[i]) < 0 || strlen(o->addrs[i]) >= sizeof m.addrs[0])
			gossip_die(GOSSIP_EXIT_ERR, "-a %s", gossip_error());
		strcpy(m.addrs[i], o->addrs[i]);
	}
	for (int i = 0; i < o->ntags; i++)
		check_tag("-t", o->tags[i]);
	/* The tags set at runtime (gossip-peers tag), then -t over the same names; what -t
	 * sets is kept in DIR/tags too, for the runtime verbs to start from. */
	tags_load(&tags, o->dir);
	for (int i = 0; i < o->ntags; i++)
		tag_set(&tags, o->tags[i]);
	m.naddrs = o->naddrs;
	m.ntags = tags.n;
	memcpy(m.tags, tags.v, sizeof m.tags);
	if (isatty(1))
		gossip_die(GOSSIP_EXIT_ERR, "stdout is a terminal: pipe the announcement into gossip-merge");
	/* The announcement matters more than the file (a full disk): a warning. */
	if (o->ntags && tags_save(&tags, o->dir) < 0)
		gossip_warn("%s; the tags are announced, but not kept for gossip-peers tag", gossip_error());
	author_open(&a, o->dir);
	snprintf(m.name, sizeof m.name, "%s", *a.id.name ? a.id.name : "node");
	/* The incarnation rises with every announcement: a restarted node is news. Above the
	 * one its table last had (a refutation's, or the clock's before it stepped back), or
	 * the members would hold the old record and their claims about it, which this node
	 * could not refute. */
	m.incarnation = gossip_now_ms();
	struct gossip_peers t;
	if (gossip_peers_load(&t, o->dir) == 0) {
		const struct gossip_peer *self = gossip_peers_find(&t, a.id.pk, 0);
		if (self && m.incarnation <= self->info.incarnation && self->info.incarnation < UINT64_MAX)
			m.incarnation = self->info.incarnation + 1;
		gossip_peers_free(&t);
	}
	if (gossip_member_encode(&rec, &m) < 0)
		gossip_die(GOSSIP_EXIT_ERR, "%s", gossip_error());
	sign(&a, &out, GOSSIP_T_SET, GOSSIP_KEY_MEMBER, rec.p, rec.len);
	write_out(&out);
	gossip_author_close(&a);
	gossip_buf_free(&rec);
	gossip_buf_free(&out);
	return GOSSIP_EXIT_OK;
}

static int do_beat(const struct opts *o)
{
	struct gossip_author a;
	struct gossip_buf out = {0};
	if (isatty(1))
		gossip_die(GOSSIP_EXIT_ERR, "stdout is a terminal: pipe the heartbeats into gossip-send");
	author_open(&a, o->dir);
	signal(SIGPIPE, SIG_IGN);
	do {
		if (want_reload) {
			/* Nothing to re-read: a beat is signed with DIR/key alone, which a reload
			 * does not change (a new key is a new member). */
			want_reload = 0;
			gossip_warn("reloaded: nothing to re-read (beat signs with %s only)",
			            gossip_path(o->dir, "key"));
		}
		out.len = 0;
		sign(&a, &out, GOSSIP_T_SET, GOSSIP_KEY_HB, (const uint8_t *)"", 0);
		write_out(&out);
		if (o->every > 0) {
			/* -J: each interval off by up to that fraction, at random. */
			double d = o->every * (1 + o->cfg.jitter * ((double)randombytes_uniform(2000001) / 1e6 - 1));
			struct timespec ts = {(time_t)d, (long)((d - (time_t)d) * 1e9)};
			while (nanosleep(&ts, &ts) < 0 && errno == EINTR && !stop)
				;  /* a reload does not shorten the interval */
		}
	} while (o->every > 0 && !stop);
	gossip_author_close(&a);
	gossip_buf_free(&out);
	return GOSSIP_EXIT_OK;
}

/* ---- observe ---- */

/* Where observe's output goes: the copy of the stream (-T), the rumor (-r), and the
 * prober's datagrams. */
struct outlet {
	const char *dir;
	int tee;  /* -T, until stdout fails */
	size_t rumor;  /* -r: the trees' arity; 0: no rumor */
	int lazy;  /* --second-tree doubt: GOSSIP_RUMOR_LAZY, else 0 */
	struct gossip_peers *table;
	struct gossip_out out;
	struct gossip_buf pending;  /* the store's news, until the table that has it is saved */
	uint64_t forwarded;  /* rumor sends, for DIR/stats/observe */
	uint64_t forwarded_membership;  /* those of them that were membership traffic */
};

/* A message on as rumor: to this node's children in the trees rooted at its origin
 * (gossip_peers_rumor), queued; sent at the next flush, with whatever else goes to the
 * same member, in as few datagrams as it fits in. */
static void rumor_out(struct outlet *ol, const uint8_t *p, size_t n, int off_tree)
{
	struct gossip_msg m;
	struct gossip_peer *to[GOSSIP_RUMOR_TREES * 64];
	const char *a;
	long i;
	if (gossip_msg_decode(p, n, &m) < 0)
		return;
	/* Membership traffic (few, and what the trees themselves rest on) always goes along
	 * both trees; values and events along the second only in doubt with --second-tree doubt. */
	int membership = gossip_msg_is_membership(&m);
	size_t k = gossip_peers_rumor_from(ol->table, m.origin, ol->rumor,
	                                   (off_tree ? GOSSIP_RUMOR_OFF_TREE : 0) | (membership ? 0 : ol->lazy), to);
	for (size_t j = 0; j < k; j++)
		if ((a = gossip_member_addr(&to[j]->info, GOSSIP_UDP)) && (i = gossip_out_index(&ol->out, a)) >= 0 &&
		    gossip_out_queue_to(&ol->out, (size_t)i, p, n) == 0) {
			ol->forwarded++;
			ol->forwarded_membership += membership;
		}
}

static void copy_out(struct outlet *ol, const uint8_t *p, size_t n)
{
	if (ol->rumor)
		rumor_out(ol, p, n, 0);
	/* Membership matters more than the copy: a reader that went away stops the copy, not
	 * the observer. */
	if (ol->tee && gossip_write_all(1, p, n) < 0) {
		gossip_warn("stdout: %s; no longer copying the stream", strerror(errno));
		ol->tee = 0;
	}
}

/* A member record that reached the store some other way: on as rumor, like the stream,
 * once the table is saved. gossip-send -M picks the members to tell from the saved table:
 * before, a member found in the same look could not be told. */
static void news_out(void *ctx, const uint8_t *p, size_t n)
{
	struct outlet *ol = ctx;
	if ((ol->tee || ol->rumor) && gossip_buf_put(&ol->pending, p, n) < 0)
		gossip_warn("observe: %s", strerror(ENOMEM));
}

/* In the anti-entropy child: what its sync stored, on as rumor from this node's place in
 * the trees (a member that missed a message is the one whose children most likely missed
 * it too); at the end (p NULL), sent, and the sends added to DIR/stats/rumor. */
static void brought_out(void *ctx, const uint8_t *p, size_t n)
{
	struct outlet *ol = ctx;
	static uint64_t sent, membership;  /* this child's */
	if (!ol->rumor)
		return;
	if (p) {
		uint64_t before = ol->forwarded, before_membership = ol->forwarded_membership;
		/* Along both trees: what a sync brings is where the trees failed, and this
		 * child's table is as it was when the round began (its own copy: the parent's
		 * setting is untouched). */
		ol->lazy = 0;
		rumor_out(ol, p, n, 0);
		sent += ol->forwarded - before;
		membership += ol->forwarded_membership - before_membership;
		return;
	}
	gossip_out_flush(&ol->out);
	struct gossip_stats counters;
	gossip_stats_open(&counters, ol->dir, "rumor");
	gossip_stats_add(&counters, "forwarded", &sent);
	gossip_stats_add(&counters, "forwarded_membership", &membership);
	gossip_stats_close(&counters);
}

static void save_table(const struct gossip_peers *t, const char *dir)
{
	gossip_peers_keep(t, dir);  /* a failure warns, at most once a minute */
}

/* GOSSIP_SUMMARY (gossip-peers(1), ENVIRONMENT), for tests: "off" sends no summary (as a
 * node from before summaries), hex bytes always the same one (a member that lies). */
static void pin_summary(struct gossip_swim *swim, uint64_t now)
{
	const char *e = getenv("GOSSIP_SUMMARY");
	uint8_t sum[GOSSIP_SUM_LEN];
	size_t n = 0;
	if (!e || !*e)
		return;
	if (!strcmp(e, "off"))
		gossip_swim_pin_summary(swim, NULL, now);
	else if (sodium_hex2bin(sum, sizeof sum, e, strlen(e), NULL, &n, NULL) == 0 && n == sizeof sum)
		gossip_swim_pin_summary(swim, sum, now);
	else
		gossip_die(GOSSIP_EXIT_ERR, "GOSSIP_SUMMARY: %s: want off or %d bytes in hex", e, GOSSIP_SUM_LEN);
}

static void prober_send(void *ctx, const struct gossip_peer *to, const uint8_t *p, size_t n)
{
	struct outlet *ol = ctx;
	const char *a;
	long i;
	if (!to)
		copy_out(ol, p, n);
	else if ((a = gossip_member_addr(&to->info, GOSSIP_UDP)) && (i = gossip_out_index(&ol->out, a)) >= 0)
		gossip_out_queue_to(&ol->out, (size_t)i, p, n);
}

/* SIGHUP: trusted again, and with probes the keyring, so that a rotated cluster key seals
 * the probes from now on. A file that does not load leaves the old one in force. One
 * line says what is in force. */
static void reload(struct gossip_observer *obs, struct gossip_keyring *keyring, const char *dir)
{
	long signers = gossip_observe_reload(obs);
	if (keyring) {
		struct gossip_keyring k;
		if (gossip_keyring_load(&k, dir) < 0)
			gossip_warn("reload: keyring: %s; keeping the old one", gossip_error());
		else {
			gossip_keyring_free(keyring);
			*keyring = k;  /* in place: the outlet seals with it */
		}
	}
	if (signers < 0)
		return;
	if (keyring)
		gossip_warn("reloaded: %ld trusted signers, %zu cluster keys", signers, keyring->n);
	else
		gossip_warn("reloaded: %ld trusted signers", signers);
}

/* A graceful stop (gossip-node's DIR/leave, --leave): the members are told first, while
 * this node still answers; the file goes once they were (gossip-node waits for that); then
 * the leave is stored. The moment it left (monotonic ms), or 0. */
static uint64_t leave(struct gossip_observer *obs, struct gossip_swim *swim, struct outlet *ol,
                      const char *path)
{
	struct gossip_buf lv = {0};
	long told;
	uint64_t at = 0;
	/* Signed, sent and stored whatever comes: the node's stop follows at once, and a
	 * signal would end a wait for the clock's or the store's lock. They are taken after. */
	sigset_t stops, was;
	sigemptyset(&stops);
	sigaddset(&stops, SIGTERM);
	sigaddset(&stops, SIGINT);
	sigaddset(&stops, SIGHUP);
	sigprocmask(SIG_BLOCK, &stops, &was);
	/* A join ended now may have just stored the members it met, not yet looked at: a look
	 * first, if the store's lock is free (a leave never waits for it before it is sent). */
	gossip_observe_end_join(obs);
	gossip_observe_store(obs, gossip_now_ms());
	if ((told = gossip_swim_leave(swim, &lv)) < 0) {
		gossip_warn("--leave: %s; not leaving (the members will see this node fail)", gossip_error());
		gossip_observer_leave_on(obs, NULL);
	} else {
		gossip_out_flush(&ol->out);
		gossip_warn("leaving the cluster (%s is there): the leave sent to %ld members", path, told);
		gossip_observe_left(obs, lv.p, lv.len);
		at = gossip_mono_ms();
	}
	gossip_buf_free(&lv);
	sigprocmask(SIG_SETMASK, &was, NULL);
	return at;
}

static int do_observe(const struct opts *o)
{
	struct gossip_peers table;
	struct gossip_author author;
	struct gossip_keyring keyring;
	struct outlet ol = {.dir = o->dir, .tee = o->tee, .rumor = (size_t)o->rumor, .lazy = o->lazy, .table = &table};
	struct gossip_stats counters;
	struct gossip_swim *swim = NULL;
	struct gossip_reader r;
	const uint8_t *p;
	size_t n;
	uint64_t off, now = gossip_now_ms(), last_save = 0, last_tick = 0;
	int got, dirty = 1;
	/* When this node left (--leave; 0: not), and how long it runs on, answering, before
	 * it ends itself: ten intervals, five seconds at least. */
	uint64_t left_at = 0, left_grace = 10 * (uint64_t)o->cfg.interval_ms;
	if (left_grace < 5000)
		left_grace = 5000;
	if (gossip_peers_load(&table, o->dir) < 0)
		gossip_die(GOSSIP_EXIT_ERR, "%s", gossip_error());
	if (o->probing || o->rumor) {
		if (gossip_keyring_load(&keyring, o->dir) < 0)
			gossip_die(GOSSIP_EXIT_ERR, "keyring: %s", gossip_error());
		gossip_out_init(&ol.out, 1200, 500, 0, &keyring);
	}
	gossip_stats_open(&counters, o->dir, "observe");
	gossip_stats_add(&counters, "forwarded", &ol.forwarded);
	gossip_stats_add(&counters, "forwarded_membership", &ol.forwarded_membership);
	gossip_stats_add(&counters, "sent_datagrams", &ol.out.datagrams);
	gossip_stats_add(&counters, "sent_bytes", &ol.out.sent_bytes);
	if (o->probing) {
		author_open(&author, o->dir);
		if (!(swim = gossip_swim_new(&table, &o->cfg, &author, o->dir, prober_send, &ol, now)))
			gossip_die(GOSSIP_EXIT_ERR, "observe: %s", strerror(ENOMEM));
	}
	struct gossip_observer *obs = gossip_observer_new(&table, &o->cfg, o->dir, swim, now);
	if (!obs)
		gossip_die(GOSSIP_EXIT_ERR, "observe: %s", strerror(ENOMEM));
	gossip_observer_on_news(obs, news_out, &ol);
	if (swim) {
		gossip_stats_add(&counters, "repairs", gossip_observe_repairs(obs));
		pin_summary(swim, now);
	}
	gossip_reader_init(&r, 0, "stdin", &gossip_msg_limits);
	if (o->hand) {
		/* Without it gossip-listen runs its command for every sync: slower, not wrong. */
		if (gossip_observer_serve(obs, o->hand) < 0)
			gossip_warn("-H %s; the syncs go to gossip-listen's command", gossip_error());
		gossip_stats_add(&counters, "serves_done", gossip_observe_serves(obs, 0));
		gossip_stats_add(&counters, "serves_failed", gossip_observe_serves(obs, 1));
	}
	if (o->every > 0) {
		gossip_observer_anti_entropy(obs, (uint64_t)(o->every * 1000 + 0.5), brought_out, &ol, now);
		gossip_stats_add(&counters, "syncs_done", gossip_observe_syncs(obs, 0));
		gossip_stats_add(&counters, "syncs_failed", gossip_observe_syncs(obs, 1));
	}
	/* A node's start (gossip-node): its announcement stored and sent, then its join, with
	 * the store observe keeps open: neither reads the whole store again. */
	gossip_observer_start(obs, o->announce, o->seeds, o->nseeds, now);
	gossip_observer_leave_on(obs, o->leave);
	/* Woken by a hand-off or a change in DIR; else asleep until the clock needs a tick. */
	r.wake_fd = gossip_observe_fd(obs);
	/* A reload at once. A stop between messages or at the next tick (a second at most):
	 * the prober answers pings until then (a node's graceful stop has left already, by
	 * --leave; one that could not leaves once all its processes have ended). */
	r.wake_flag = &want_reload;
	signal(SIGPIPE, SIG_IGN);
	/* A stop is seen between messages: a stream that never pauses must not hold it off. */
	while (!stop) {
		now = gossip_now_ms();
		int wait = gossip_observe_wait(obs, now), w;
		if (swim && (w = gossip_swim_wait(swim, now)) < wait)
			wait = w;
		r.timeout_ms = wait;
		got = gossip_reader_next(&r, &p, &n, &off);
		now = gossip_now_ms();
		if (got == 1) {
			int pass_on, changed = gossip_observe_msg(obs, p, n, now, &pass_on);
			dirty |= changed;
			if (swim)  /* probe timers stay exact under a busy stream */
				dirty |= gossip_swim_tick(swim, now);
			if (pass_on && changed) {
				/* A new member is among those gossip-send may tell. */
				save_table(&table, o->dir);
				last_save = now;
				dirty = 0;
			}
			if (pass_on)
				copy_out(&ol, p, n);
			/* What came together goes out together: flushed when nothing more is
			 * buffered, so a burst leaves in few datagrams. */
			if (!gossip_reader_ready(&r))
				gossip_out_flush(&ol.out);
			/* More is buffered: take it first, but never let a busy stream starve the
			 * clock that turns silent peers suspect. */
			if (gossip_reader_ready(&r) && now - last_tick < 100)
				continue;
		} else if (got == 0) {
			break;
		} else if (!stop && !strstr(gossip_error(), "timed out")) {
			gossip_die(GOSSIP_EXIT_ERR, "%s", gossip_error());
		}
		if (want_reload) {
			want_reload = 0;
			reload(obs, swim || ol.rumor ? &keyring : NULL, o->dir);
		}
		gossip_observe_rejects(obs);
		gossip_observe_hand(obs);
		if (gossip_observe_leave_due(obs))
			left_at = leave(obs, swim, &ol, o->leave);
		/* Left, and not stopped: not a member any more, so not running either (a stop
		 * comes at once after a leave gossip-node asked for). */
		if (left_at && gossip_mono_ms() - left_at >= left_grace) {
			gossip_warn("left the cluster %.1f s ago, and nothing stopped this node: ending",
			            (double)(gossip_mono_ms() - left_at) / 1000);
			break;
		}
		dirty |= gossip_observe_look(obs, now);
		/* Again: a probe's timer starts when its ping leaves, after the store was read. */
		now = gossip_now_ms();
		dirty |= gossip_observe_tick(obs, now);
		gossip_out_flush(&ol.out);
		last_tick = now;
		if (dirty || now - last_save >= 1000) {
			save_table(&table, o->dir);
			last_save = now;
			dirty = 0;
		}
		if (ol.pending.len) {
			for (size_t at = 0, k; at < ol.pending.len; at += k)
				if (gossip_cbor_scan(ol.pending.p + at, ol.pending.len - at, &gossip_msg_limits, NULL, &k) !=
				    GOSSIP_SCAN_OK)
					break;
				else if (ol.rumor)  /* off the trees: a sync brought it here */
					rumor_out(&ol, ol.pending.p + at, k, 1);
			size_t arity = ol.rumor;  /* the copy only: the rumor went above */
			ol.rumor = 0;
			copy_out(&ol, ol.pending.p, ol.pending.len);
			ol.rumor = arity;
			ol.pending.len = 0;
			gossip_out_flush(&ol.out);
		}
		gossip_stats_tick(&counters, now);
	}
	/* Told to stop, or the stream ended: a TERM to the node's whole group (systemd's
	 * default) reached every process at once, and the node's shell is about to ask for
	 * the leave. A moment for it (0.2 s), then the members are told all the same; none
	 * when no request could be taken (the start still under way). */
	for (int i = 0; !left_at && i < 20 && gossip_observe_leave_possible(obs) && !gossip_observe_leave_due(obs); i++)
		nanosleep(&(struct timespec){0, 10 * 1000000L}, NULL);
	if (gossip_observe_leave_due(obs))
		leave(obs, swim, &ol, o->leave);
	gossip_buf_free(&ol.pending);
	gossip_observe_tick(obs, gossip_now_ms());
	gossip_peers_save(&table, o->dir);
	gossip_reader_free(&r);
	gossip_stats_close(&counters);  /* before the observer: it holds the repairs counter */
	gossip_observer_free(obs);
	if (swim || ol.rumor) {
		gossip_out_flush(&ol.out);
		gossip_out_close(&ol.out);
		gossip_keyring_free(&keyring);
	}
	if (swim) {
		gossip_swim_free(swim);
		gossip_author_close(&author);
	}
	gossip_peers_free(&table);
	return GOSSIP_EXIT_OK;  /* the end of the stream, or a stop (an error has died above) */
}

/* rumor: the messages on stdin (what a sync brought) on along the trees from this node's
 * place in them, as observe -r passes on what the stream brings: a member that missed a
 * message, and has it from a sync, is the one whose children most likely missed it too. */
static int do_rumor(const struct opts *o)
{
	struct gossip_peers table;
	struct gossip_keyring keyring;
	struct gossip_reader r;
	struct gossip_stats counters;
	struct outlet ol = {.rumor = (size_t)o->rumor, .lazy = o->lazy, .table = &table};
	const uint8_t *p;
	size_t n;
	uint64_t off;
	int got;
	if (gossip_peers_load(&table, o->dir) < 0)
		gossip_die(GOSSIP_EXIT_ERR, "%s", gossip_error());
	if (gossip_keyring_load(&keyring, o->dir) < 0)
		gossip_die(GOSSIP_EXIT_ERR, "keyring: %s", gossip_error());
	gossip_out_init(&ol.out, 1200, 500, 0, &keyring);
	gossip_stats_open(&counters, o->dir, "rumor");
	gossip_stats_add(&counters, "forwarded", &ol.forwarded);
	gossip_stats_add(&counters, "forwarded_membership", &ol.forwarded_membership);
	gossip_reader_init(&r, 0, "stdin", &gossip_msg_limits);
	while ((got = gossip_reader_next(&r, &p, &n, &off)) == 1) {
		rumor_out(&ol, p, n, 0);  /* from this node's place in the trees */
		if (!gossip_reader_ready(&r))
			gossip_out_flush(&ol.out);
	}
	gossip_out_flush(&ol.out);
	gossip_stats_close(&counters);
	gossip_out_close(&ol.out);
	gossip_keyring_free(&keyring);
	gossip_reader_free(&r);
	gossip_peers_free(&table);
	if (got < 0)
		gossip_die(GOSSIP_EXIT_ERR, "%s", gossip_error());
	return GOSSIP_EXIT_OK;
}

/* ---- reading the table ---- */

/* The table, and phi as the observer computes it: with its heartbeat interval. */
static void load_table(struct gossip_peers *t, struct opts *o)
{
	if (gossip_peers_load(t, o->dir) < 0)
		gossip_die(GOSSIP_EXIT_ERR, "%s", gossip_error());
	if (t->interval_ms > 0) {
		o->cfg.interval_ms = t->interval_ms;
		o->cfg.min_std_ms = t->min_std_ms;
		o->cfg.pause_ms = t->pause_ms;
	}
}

static double phi_of(const struct gossip_peers *t, const struct gossip_peer *p, uint64_t now,
                     const struct opts *o)
{
	return p->self || t->probing ? 0.0 : gossip_phi(p, now, &o->cfg);
}

static void put_json_peer(const struct gossip_peers *t, const struct gossip_peer *p, uint64_t now,
                          const struct opts *o)
{
	char id[45];
	gossip_b64(id, p->pk, 32);
	printf("{\"id\":\"%s\",\"name\":", id);
	gossip_put_string(stdout, (const uint8_t *)p->info.name, strlen(p->info.name), 0);
	printf(",\"state\":\"%s\",\"self\":%s,\"phi\":%.2f,\"last_heard_ms\":%lld,\"addrs\":[",
	       gossip_pstate_name(p->state), p->self ? "true" : "false", phi_of(t, p, now, o),
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

static void put_peer_line(const struct gossip_peers *t, const struct gossip_peer *p, uint64_t now,
                          const struct opts *o)
{
	char id[9], addrs[600] = "", tags[600] = "", heard[32];
	size_t k = 0;
	gossip_short_id(id, p->pk);
	for (int i = 0; i < p->info.naddrs; i++)
		k += (size_t)snprintf(addrs + k, sizeof addrs - k, "%s%s", i ? "," : "", p->info.addrs[i]);
	k = 0;
	for (int i = 0; i < p->info.ntags; i++)
		k += (size_t)snprintf(tags + k, sizeof tags - k, "%s%s", i ? "," : "", p->info.tags[i]);
	if (p->self)
		snprintf(heard, sizeof heard, "self");
	else if (p->last_hb)
		snprintf(heard, sizeof heard, "%.1fs ago", (double)(now - p->last_hb) / 1000);
	else
		snprintf(heard, sizeof heard, "never");
	printf("%-16s %-8s %-8s %7.2f %10s  %-40s %s", p->info.name, id, gossip_pstate_name(p->state),
	       phi_of(t, p, now, o), heard, addrs, tags);
	if (p->score < o->cfg.score_min)
		printf("  [not picked: score %.0f, %s]", p->score, p->why);
	putchar('\n');
}

static int do_list(struct opts *o)
{
	struct gossip_peers t;
	load_table(&t, o);
	uint64_t now = gossip_now_ms();  /* after reading: nothing in the table is later */
	int r = t.n ? GOSSIP_EXIT_OK : GOSSIP_EXIT_NO;
	if (o->json) {
		for (size_t i = 0; i < t.n; i++) {
			put_json_peer(&t, &t.v[i], now, o);
			putchar('\n');
		}
		if (t.partition_since)
			printf("{\"partition_suspected_since\":%llu}\n", (unsigned long long)t.partition_since);
	} else {
		if (t.partition_since)
			printf("partition suspected since %llu s ago: many members turned suspect at once\n",
			       (unsigned long long)((now - t.partition_since) / 1000));
		printf("%-16s %-8s %-8s %7s %10s  %-40s %s\n", "NAME", "ID", "STATE", "PHI", "HEARD",
		       "ADDRESSES", "TAGS");
		for (size_t i = 0; i < t.n; i++)
			put_peer_line(&t, &t.v[i], now, o);
	}
	gossip_peers_free(&t);
	return r;
}

static int do_pick(struct opts *o)
{
	struct gossip_peers t;
	load_table(&t, o);
	struct gossip_peer **out = calloc((size_t)o->count + 1, sizeof *out);
	size_t got = out ? gossip_peers_pick(&t, &o->cfg, (size_t)o->count, out) : 0;
	size_t shown = 0;
	for (size_t i = 0; i < got; i++) {
		const char *a = gossip_member_addr(&out[i]->info, o->sync_addr ? GOSSIP_TCP : GOSSIP_UDP);
		if (a) {
			puts(a);
			shown++;
		}
	}
	free(out);
	gossip_peers_free(&t);
	return shown ? GOSSIP_EXIT_OK : GOSSIP_EXIT_NO;
}

static int do_leader(struct opts *o)
{
	struct gossip_peers t;
	load_table(&t, o);
	const struct gossip_peer *l = gossip_peers_leader(&t);
	if (l && o->json) {
		put_json_peer(&t, l, gossip_now_ms(), o);
		putchar('\n');
	} else if (l) {
		char id[45];
		gossip_b64(id, l->pk, 32);
		printf("%s %s\n", l->info.name, id);
	}
	gossip_peers_free(&t);
	return l ? GOSSIP_EXIT_OK : GOSSIP_EXIT_NO;
}

/* ---- watch ---- */

/* A name, key or payload as one word of text: control bytes, spaces and backslashes
 * escaped (\xHH), so that a line stays one line of fields. */
static void put_word(const uint8_t *p, size_t n)
{
	if (!n)
		fputs("-", stdout);
	for (size_t i = 0; i < n; i++) {
		if (p[i] <= 0x20 || p[i] == 0x7f || p[i] == '\\')
			printf("\\x%02x", p[i]);
		else
			putchar(p[i]);
	}
}

static void put_event(const struct gossip_event *e, int json)
{
	int msg = e->kind != GOSSIP_EVENT_MEMBER;
	if (json && msg) {
		printf("{\"time\":%llu,\"event\":\"%s\",\"name\":", (unsigned long long)e->time, e->event);
		gossip_put_string(stdout, (const uint8_t *)e->key, e->keylen, 0);
		if (e->kind == GOSSIP_EVENT_KEY)
			printf(",\"op\":\"%s\"", e->op);
		printf(",\"origin\":\"%s\",\"version\":%llu,\"origin_time\":%llu,\"size\":%zu", e->origin,
		       (unsigned long long)e->version, (unsigned long long)e->msg_time, e->valuelen);
		if (gossip_utf8_valid(e->value, e->valuelen)) {
			fputs(",\"value\":", stdout);
			gossip_put_string(stdout, e->value, e->valuelen, 0);
		} else {
			char *b = malloc(4 * ((e->valuelen + 2) / 3) + 1);
			if (b) {
				gossip_b64(b, e->value, e->valuelen);
				printf(",\"value_base64\":\"%s\"", b);
				free(b);
			}
		}
		puts("}");
	} else if (json) {
		/* Every string escaped: names and tags come from other nodes. */
		const char *f[][2] = {{"event", e->event}, {"id", e->id}, {"name", e->name},
		                      {"state", e->state}, {"addrs", e->addrs}, {"tags", e->tags}};
		printf("{\"time\":%llu", (unsigned long long)e->time);
		for (size_t i = 0; i < sizeof f / sizeof *f; i++) {
			printf(",\"%s\":", f[i][0]);
			gossip_put_string(stdout, (const uint8_t *)f[i][1], strlen(f[i][1]), 0);
		}
		puts("}");
	} else if (msg) {
		/* TIME user NAME ORIGIN VERSION SIZE, or TIME key KEY OP ORIGIN VERSION SIZE */
		char when[32];
		gossip_fmt_time(when, e->time);
		printf("%s %s ", when, e->event);
		put_word((const uint8_t *)e->key, e->keylen);
		if (e->kind == GOSSIP_EVENT_KEY)
			printf(" %s", e->op);
		printf(" %s %llu %zu\n", e->origin, (unsigned long long)e->version, e->valuelen);
	} else {
		char when[32];
		gossip_fmt_time(when, e->time);
		printf("%s %s %s %s %s %s\n", when, e->event, *e->name ? e->name : "-",
		       *e->state ? e->state : "-", *e->addrs ? e->addrs : "-", *e->tags ? e->tags : "-");
	}
}

/* Where to start: with handlers, at the place kept in DIR/events.pos (delivered once
 * across restarts); else, or when it is lost, at the end (or with -A the start). */
static void watch_start(const struct opts *o, struct gossip_event_reader *r)
{
	struct gossip_log_pos at;
	if (o->nhandlers && gossip_log_pos_load(o->dir, &at) == 0) {
		if (gossip_event_reader_at(r, o->dir, &at) == 0)
			return;
		gossip_warn("watch: %s; starting at the end of %s: the events logged between are not "
		            "delivered to the handlers", gossip_error(), gossip_path(o->dir, "events"));
		return;
	}
	gossip_event_reader_init(r, o->dir, o->from_start);
}

static int do_watch(const struct opts *o)
{
	struct gossip_event_reader r;
	struct gossip_event e;
	struct gossip_log_pos at;
	struct gossip_runner *run = NULL;
	int held = 0;  /* e was read and printed, and waits for room in the queue */
	signal(SIGPIPE, SIG_IGN);
	if (o->nhandlers) {
		struct gossip_runner_cfg cfg = {.dir = o->dir, .handlers = o->handlers,
		                                .nhandlers = o->nhandlers, .limit_ms = o->limit_ms,
		                                .coalesce_ms = o->coalesce_ms, .max_events = 1024,
		                                .max_bytes = 16 << 20, .keep_place = 1};
		if (!(run = gossip_runner_new(&cfg)))
			gossip_die(GOSSIP_EXIT_ERR, "watch: %s", gossip_error());
		/* Key changes are logged (by gossip-merge) only while a handler wants them. */
		const char *keys = gossip_path(o->dir, "events.keys");
		if (gossip_handlers_want_keys(o->handlers, o->nhandlers)) {
			if (gossip_write_replace(keys, "", 0, 0644) < 0)
				gossip_die(GOSSIP_EXIT_ERR, "%s", gossip_error());
		} else if (unlink(keys) < 0 && errno != ENOENT)
			gossip_die(GOSSIP_EXIT_ERR, "cannot remove %s: %s", keys, strerror(errno));
	}
	watch_start(o, &r);
	if (run) {
		gossip_event_reader_pos(&r, &at);
		gossip_runner_start_at(run, &at);
	}
	static const char *const names[] = {"events", "events.1", NULL};
	int dw = gossip_dirwatch_open(o->dir);
	if (o->ready && gossip_write_replace(o->ready, "", 0, 0644) < 0)
		gossip_die(GOSSIP_EXIT_ERR, "%s", gossip_error());
	while (!stop) {
		uint64_t now = gossip_mono_ms();
		for (;;) {
			if (!held) {
				if (gossip_event_reader_next(&r, &e) != 1)
					break;
				gossip_event_reader_pos(&r, &at);
				put_event(&e, o->json);
				if (fflush(stdout) != 0 && !run)
					stop = 1;
				held = 1;
			}
			if (run && gossip_runner_offer(run, &e, &at, now) < 0) {
				if (gossip_runner_full(run))
					gossip_warn("watch: the handlers are behind (1024 events or 16 MiB wait): "
					            "reading %s waits for them (nothing is lost while it keeps "
					            "the rest)", gossip_path(o->dir, "events"));
				break;
			}
			held = 0;
			if (stop)
				break;
		}
		if (run)
			gossip_runner_tick(run, now);
		/* Woken at once by a write to DIR/events (inotify) or a signal; else every 50
		 * ms while the handlers have work (their limits, coalescing windows, queue),
		 * every second when they have none: an idle watch costs next to nothing. */
		gossip_dirwatch_wait(dw, names, held || (run && gossip_runner_busy(run)) ? 50 : 1000);
	}
	if (dw >= 0)
		close(dw);
	gossip_runner_free(run);
	gossip_event_reader_free(&r);
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

static struct gossip_store *open_store(const struct opts *o)
{
	struct gossip_store *st = gossip_store_open(o->dir, NULL);
	if (!st)
		gossip_die(GOSSIP_EXIT_ERR, "%s", gossip_error());
	return st;
}

static void load_trust(struct gossip_trust *t, const struct opts *o)
{
	if (gossip_trust_load(t, o->dir) < 0)
		gossip_die(GOSSIP_EXIT_ERR, "trusted: %s", gossip_error());
}

static int do_join(const struct opts *o, int argc, char **argv)
{
	struct gossip_store *st = open_store(o);
	struct gossip_trust trust;
	int ok = 0;
	load_trust(&trust, o);
	for (int i = 0; i < argc; i++) {
		struct gossip_merger mg = {.st = st, .trust = &trust};
		if (gossip_join_sync(&mg, argv[i]) < 0)
			gossip_join_failed(argv[i], gossip_error());
		else
			ok++;
		gossip_merger_free(&mg);
	}
	/* Tell every member we now know about us at once (eager), rather than waiting for
	 * anti-entropy to carry our record around. */
	if (ok && gossip_store_lock(st) == 0) {
		struct joinctx j = {0};
		struct gossip_keyring keys;
		char name[64];
		if (gossip_pub_load(o->dir, j.self, name, sizeof name) == 0 &&
		    gossip_keyring_load(&keys, o->dir) == 0) {
			gossip_out_init(&j.out, 1200, 2000, 0, &keys);
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

static int do_leave(struct opts *o)
{
	struct gossip_author a;
	struct gossip_buf out = {0};
	struct gossip_store *st;
	struct gossip_trust trust;
	struct gossip_keyring keys;
	struct gossip_out dests;
	struct gossip_peers t;
	long pid;
	/* A running node would refute the leave at once: its members would see it go and
	 * come back. Stopping it is the leave. */
	int running = gossip_node_running(o->dir, &pid);
	if (running < 0)
		gossip_die(GOSSIP_EXIT_ERR, "%s", gossip_error());
	if (running && pid)
		gossip_die(GOSSIP_EXIT_ERR, "%s: a node is running here (pid %ld); stop it with gossip-node -d %s stop, "
		           "which leaves the cluster", o->dir, pid, o->dir);
	if (running)
		gossip_die(GOSSIP_EXIT_ERR, "%s: a node is running here; stop it with gossip-node -d %s stop, "
		           "which leaves the cluster", o->dir, o->dir);
	author_open(&a, o->dir);
	sign(&a, &out, GOSSIP_T_DEL, GOSSIP_KEY_MEMBER, NULL, 0);
	gossip_author_close(&a);
	/* Into our own store, then to every live peer at once (eager). */
	st = open_store(o);
	load_trust(&trust, o);
	struct gossip_merger mg = {.st = st, .trust = &trust};
	if (gossip_merge_item(&mg, out.p, out.len, "leave", 0) < 0 || gossip_merge_flush(&mg) < 0)
		gossip_die(GOSSIP_EXIT_ERR, "%s", gossip_error());
	gossip_merger_free(&mg);
	gossip_store_close(st);
	gossip_trust_free(&trust);
	if (gossip_keyring_load(&keys, o->dir) < 0)
		gossip_die(GOSSIP_EXIT_ERR, "keyring: %s", gossip_error());
	gossip_out_init(&dests, 1200, 2000, 0, &keys);
	load_table(&t, o);
	for (size_t i = 0; i < t.n; i++) {
		const char *addr = gossip_member_addr(&t.v[i].info, GOSSIP_UDP);
		if (!t.v[i].self && t.v[i].state != GOSSIP_P_LEFT && addr && gossip_out_add(&dests, addr) < 0)
			gossip_warn("leave: %s", gossip_error());
	}
	if (dests.n) {
		gossip_out_queue(&dests, out.p, out.len);
		gossip_out_flush(&dests);
	}
	gossip_out_close(&dests);
	gossip_keyring_free(&keys);
	gossip_peers_free(&t);
	if (!isatty(1))
		write_out(&out);
	gossip_buf_free(&out);
	return GOSSIP_EXIT_OK;
}

/* ---- tag, untag, tags, force-leave: changes on a running node ---- */

/* Store a message this node signed, then send it to every member the table shows alive
 * or suspect (eager: each that finds it news passes it on as rumor). */
static void store_and_spread(struct opts *o, const struct gossip_buf *msg, const char *what)
{
	struct gossip_store *st = open_store(o);
	struct gossip_trust trust;
	struct gossip_keyring keys;
	struct gossip_out dests;
	struct gossip_peers t;
	load_trust(&trust, o);
	struct gossip_merger mg = {.st = st, .trust = &trust};
	if (gossip_merge_item(&mg, msg->p, msg->len, what, 0) < 0 || gossip_merge_flush(&mg) < 0)
		gossip_die(GOSSIP_EXIT_ERR, "%s", gossip_error());
	if (mg.rejected)
		gossip_die(GOSSIP_EXIT_ERR, "%s: this node's own store refused it (see above)", what);
	gossip_merger_free(&mg);
	gossip_store_close(st);
	gossip_trust_free(&trust);
	if (gossip_keyring_load(&keys, o->dir) < 0)
		gossip_die(GOSSIP_EXIT_ERR, "keyring: %s", gossip_error());
	gossip_out_init(&dests, 1200, 2000, 0, &keys);
	load_table(&t, o);
	for (size_t i = 0; i < t.n; i++) {
		const char *addr = gossip_member_addr(&t.v[i].info, GOSSIP_UDP);
		if (!t.v[i].self && (t.v[i].state == GOSSIP_P_ALIVE || t.v[i].state == GOSSIP_P_SUSPECT) &&
		    addr && gossip_out_add(&dests, addr) < 0)
			gossip_warn("%s: %s", what, gossip_error());
	}
	if (dests.n) {
		gossip_out_queue(&dests, msg->p, msg->len);
		gossip_out_flush(&dests);
	}
	gossip_out_close(&dests);
	gossip_keyring_free(&keys);
	gossip_peers_free(&t);
}

struct own_record {
	uint8_t pk[32];
	uint64_t version;
	struct gossip_member info;
	int found;
};

static int own_scan(void *ctx, const struct gossip_entry *e, const uint8_t *p)
{
	struct own_record *r = ctx;
	struct gossip_msg m;
	struct gossip_member info;
	if (e->type == GOSSIP_T_SET && gossip_msg_decode(p, e->len, &m) == 0 &&
	    gossip_msg_key_is(&m, GOSSIP_KEY_MEMBER) && !memcmp(m.origin, r->pk, 32) &&
	    (!r->found || m.version > r->version) && gossip_member_decode(m.value, m.valuelen, &info) == 0) {
		r->info = info;
		r->version = m.version;
		r->found = 1;
	}
	return 0;
}

/* A running node's member record again, with tags: a new incarnation, above the stored
 * record's and the table's (a refutation may have raised it), signed, stored and spread.
 * The node's observe finds it in the store and takes it as its own (its refutations and
 * introductions carry it from then on). */
static void reannounce(struct opts *o, const struct taglist *tags, const char *what)
{
	struct own_record r = {0};
	char name[64];
	if (gossip_pub_load(o->dir, r.pk, name, sizeof name) < 0)
		gossip_die(GOSSIP_EXIT_ERR, "%s", gossip_error());
	struct gossip_store *st = open_store(o);
	if (gossip_store_lock(st) < 0)
		gossip_die(GOSSIP_EXIT_ERR, "%s", gossip_error());
	gossip_store_each(st, 0, own_scan, &r);
	gossip_store_unlock(st);
	gossip_store_close(st);
	if (!r.found)
		gossip_die(GOSSIP_EXIT_ERR, "%s: no member record of this node in %s/store yet: the tags are "
		           "in %s/tags; try again once the node has started", what, o->dir, o->dir);
	struct gossip_peers t;
	load_table(&t, o);
	struct gossip_peer *self = gossip_peers_find(&t, r.pk, 0);
	uint64_t inc = gossip_now_ms();
	if (inc <= r.info.incarnation)
		inc = r.info.incarnation + 1;
	if (self && inc <= self->info.incarnation)
		inc = self->info.incarnation + 1;
	gossip_peers_free(&t);
	struct gossip_member m = r.info;
	m.incarnation = inc;
	m.ntags = tags->n;
	memcpy(m.tags, tags->v, sizeof m.tags);
	struct gossip_author a;
	struct gossip_buf rec = {0}, out = {0};
	if (gossip_member_encode(&rec, &m) < 0)
		gossip_die(GOSSIP_EXIT_ERR, "%s", gossip_error());
	author_open(&a, o->dir);
	sign(&a, &out, GOSSIP_T_SET, GOSSIP_KEY_MEMBER, rec.p, rec.len);
	gossip_author_close(&a);
	store_and_spread(o, &out, what);
	gossip_buf_free(&rec);
	gossip_buf_free(&out);
}

/* tag name=value ... and untag name ...: DIR/tags changed (every argument checked first:
 * a bad one changes nothing), and on a running node a new member record at once. */
static int do_tag(struct opts *o, int untag, int argc, char **argv)
{
	const char *what = untag ? "untag" : "tag";
	for (int i = 0; i < argc; i++) {
		const char *a = argv[i];
		if (!untag)
			check_tag(what, a);
		else if (!*a || strlen(a) >= 64 || strpbrk(a, "= \t\n"))
			gossip_die(GOSSIP_EXIT_ERR, "%s %s: want a tag's name (no '=', no spaces, under 64 bytes)",
			           what, a);
	}
	struct taglist tags;
	tags_load(&tags, o->dir);
	for (int i = 0; i < argc; i++) {
		if (untag)
			tag_del(&tags, argv[i]);
		else
			tag_set(&tags, argv[i]);
	}
	long pid;
	int running = gossip_node_running(o->dir, &pid);
	if (running < 0)
		gossip_die(GOSSIP_EXIT_ERR, "%s", gossip_error());
	if (tags_save(&tags, o->dir) < 0)
		gossip_die(GOSSIP_EXIT_ERR, "%s", gossip_error());
	if (!running) {
		gossip_warn("%s: no node is running here: the tags are in %s/tags, announced at its next "
		            "start", o->dir, o->dir);
		return GOSSIP_EXIT_OK;
	}
	reannounce(o, &tags, what);
	return GOSSIP_EXIT_OK;
}

static int do_tags(struct opts *o)
{
	struct taglist tags;
	tags_load(&tags, o->dir);
	if (o->json)
		putchar('{');
	for (int i = 0; i < tags.n; i++) {
		size_t k = strcspn(tags.v[i], "=");
		if (!o->json) {
			puts(tags.v[i]);
			continue;
		}
		printf("%s", i ? "," : "");
		gossip_put_string(stdout, (const uint8_t *)tags.v[i], k, 0);
		putchar(':');
		gossip_put_string(stdout, (const uint8_t *)tags.v[i] + k + 1, strlen(tags.v[i] + k + 1), 0);
	}
	if (o->json)
		puts("}");
	return GOSSIP_EXIT_OK;
}

/* The member named by its name, its id (the key, base64) or its short id, as gossip-peers
 * list shows them. */
static struct gossip_peer *member_named(struct gossip_peers *t, const char *what, const char *arg)
{
	struct gossip_peer *found = NULL;
	uint8_t pk[32];
	int by_key = gossip_unb64(pk, 32, arg, strlen(arg)) == 0, n = 0;
	for (size_t i = 0; i < t->n; i++) {
		char id[9];
		gossip_short_id(id, t->v[i].pk);
		if (by_key ? !memcmp(pk, t->v[i].pk, 32) : (!strcmp(arg, id) || !strcmp(arg, t->v[i].info.name))) {
			found = &t->v[i];
			n++;
		}
	}
	if (n > 1)
		gossip_die(GOSSIP_EXIT_ERR, "%s %s: %d members go by that name; give the id (gossip-peers list)",
		           what, arg, n);
	return found;
}

static int do_force_leave(struct opts *o, const char *arg)
{
	struct gossip_peers t;
	load_table(&t, o);
	struct gossip_peer *p = member_named(&t, "force-leave", arg);
	const char *state = p ? gossip_pstate_name(p->state) : "";
	if (!p)
		gossip_warn("force-leave %s: no such member in this node's table (see gossip-peers -d %s list)",
		            arg, o->dir);
	else if (p->self)
		gossip_warn("force-leave %s: refused: that is this node; stop it with gossip-node -d %s stop, "
		            "which leaves the cluster", arg, o->dir);
	else if (p->state == GOSSIP_P_ALIVE)
		gossip_warn("force-leave %s: refused: it is %s here; only a member that failed (dead) or is "
		            "suspect can be forced out (an alive one would refute it and come back)", arg, state);
	else if (p->state == GOSSIP_P_LEFT)
		gossip_warn("force-leave %s: refused: it is %s already", arg, state);
	if (!p || p->self || p->state == GOSSIP_P_ALIVE || p->state == GOSSIP_P_LEFT) {
		gossip_peers_free(&t);
		return GOSSIP_EXIT_NO;
	}
	/* The member's key and the incarnation it failed at: a member that comes back with
	 * a newer one is not forced out. */
	uint8_t v[40];
	memcpy(v, p->pk, 32);
	for (int i = 0; i < 8; i++)
		v[32 + i] = (uint8_t)(p->info.incarnation >> (56 - 8 * i));
	gossip_peers_free(&t);
	struct gossip_author a;
	struct gossip_buf out = {0};
	struct gossip_msg m = {0};
	m.type = GOSSIP_T_EVENT;
	m.key = (const uint8_t *)GOSSIP_KEY_FORCE_LEAVE;
	m.keylen = strlen(GOSSIP_KEY_FORCE_LEAVE);
	m.value = v;
	m.valuelen = sizeof v;
	m.has_value = 1;
	author_open(&a, o->dir);
	if (gossip_author_sign(&a, &out, &m) < 0)
		gossip_die(GOSSIP_EXIT_ERR, "%s", gossip_error());
	gossip_author_close(&a);
	store_and_spread(o, &out, "force-leave");
	gossip_buf_free(&out);
	return GOSSIP_EXIT_OK;
}

/* ---- aggregate: a push-sum run over every member ---- */

/* A number of seconds from lo to hi, or a one-line error (exit 2). */
static double seconds(const char *opt, const char *arg, double lo, double hi)
{
	char *end;
	double v = strtod(arg, &end);
	if (*end || end == arg || !(v >= lo) || !(v <= hi))
		gossip_die(GOSSIP_EXIT_ERR, "%s %s: want seconds from %g to %g (fractions allowed)", opt, arg, lo, hi);
	return v;
}

static void put_num(double v, const char *fmt, int json)
{
	if (isnan(v))
		fputs(json ? "null" : "-", stdout);
	else
		printf(fmt, v);
}

/* One round as the asker sees it: its own node's estimate and the spread. */
static void put_round(const struct gossip_agg_status *s, int json)
{
	double spread = s->high - s->low;
	if (json) {
		printf("{\"round\":%llu,\"estimate\":", (unsigned long long)s->round);
		put_num(s->estimate, "%.17g", 1);
		fputs(",\"spread\":", stdout);
		put_num(spread, "%.17g", 1);
		fputs(",\"low\":", stdout);
		put_num(s->low, "%.17g", 1);
		fputs(",\"high\":", stdout);
		put_num(s->high, "%.17g", 1);
		printf(",\"shares\":%llu}\n", (unsigned long long)s->shares);
	} else {
		printf("%llu ", (unsigned long long)s->round);
		put_num(s->estimate, "%.10g", 0);
		putchar(' ');
		put_num(spread, "%.3g", 0);
		putchar('\n');
	}
	fflush(stdout);
}

/* Rounds of stability that end a run; runs asked again when members fail. */
enum { AGG_STABLE_ROUNDS = 3, AGG_RESTARTS = 3 };

/* The members alive when a run was asked (this node among them). */
struct agg_members {
	uint8_t (*pk)[32];
	size_t n, others;
};

/* Take the alive members now; the least rounds a run needs among them: as many as rumor
 * needs to reach every member, and two more. */
static uint64_t agg_members_load(struct agg_members *w, struct opts *o)
{
	struct gossip_peers t;
	load_table(&t, o);
	free(w->pk);
	w->n = w->others = 0;
	if (!(w->pk = calloc(t.n ? t.n : 1, 32)))
		gossip_die(GOSSIP_EXIT_ERR, "aggregate: %s", strerror(ENOMEM));
	for (size_t i = 0; i < t.n; i++)
		if (t.v[i].state == GOSSIP_P_ALIVE || t.v[i].self) {
			memcpy(w->pk[w->n++], t.v[i].pk, 32);
			w->others += !t.v[i].self;
		}
	gossip_peers_free(&t);
	return (uint64_t)ceil(log2((double)(w->n ? w->n : 1))) + 2;
}

/* 1 when one of them is dead or gone from the table now (its name in gone). */
static int agg_members_lost(const struct agg_members *w, struct opts *o, char *gone, size_t n)
{
	struct gossip_peers t;
	int lost = 0;
	load_table(&t, o);
	for (size_t i = 0; i < w->n && !lost; i++) {
		struct gossip_peer *p = gossip_peers_find(&t, w->pk[i], 0);
		if (!p || p->state == GOSSIP_P_DEAD || p->state == GOSSIP_P_LEFT) {
			lost = 1;
			if (p && p->info.name[0])
				snprintf(gone, n, "%s", p->info.name);
			else
				gossip_short_id(gone, w->pk[i]);
		}
	}
	gossip_peers_free(&t);
	return lost;
}

/* Sign the run, store it and send it to every live member; its id. */
static void agg_publish(struct opts *o, const struct gossip_aggregate *a, uint8_t id[GOSSIP_AGG_ID_LEN])
{
	struct gossip_buf value = {0}, msg = {0};
	struct gossip_author au;
	struct gossip_msg m = {0};
	if (gossip_agg_encode(&value, a) < 0)
		gossip_die(GOSSIP_EXIT_ERR, "aggregate: %s", gossip_error());
	m.type = GOSSIP_T_EVENT;
	m.key = (const uint8_t *)GOSSIP_KEY_AGGREGATE;
	m.keylen = strlen(GOSSIP_KEY_AGGREGATE);
	m.value = value.p;
	m.valuelen = value.len;
	m.has_value = 1;
	author_open(&au, o->dir);
	if (gossip_author_sign(&au, &msg, &m) < 0)
		gossip_die(GOSSIP_EXIT_ERR, "aggregate: %s", gossip_error());
	gossip_author_close(&au);
	gossip_agg_id(id, msg.p, msg.len);
	store_and_spread(o, &msg, "aggregate");
	gossip_buf_free(&msg);
	gossip_buf_free(&value);
}

/* aggregate FUNCTION [INPUT]: publish the run (stored, spread, then carried by rumor and
 * anti-entropy), then follow this node's estimate (DIR/aggregate/ID, written by its
 * observe) round by round until it is stable to the relative error for three rounds, at
 * least log2(members) + 2 rounds in, with the spread (the estimates of the last four
 * rounds' shares) as narrow: exit 0; at the timeout, exit 1. A member that fails during the
 * run (dead in this node's table) makes it ask again, among the survivors. Its own options. */
static int aggregate_main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"dir", required_argument, NULL, 'd'}, {"json", no_argument, NULL, 'j'},
		{"error", required_argument, NULL, 'e'}, {"round", required_argument, NULL, 'r'},
		{"timeout", required_argument, NULL, 'T'}, {"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'}, {0}};
	struct opts o = {.cfg = gossip_peers_defaults};
	const char *d = NULL;
	double err = 0.01, round_s = 0.5, timeout_s = 30;
	char *end;
	int c;
	while ((c = getopt_long(argc, argv, "d:je:r:T:h", longopts, NULL)) != -1) {
		gossip_opt_once(c);
		switch (c) {
		case 'd': d = optarg; break;
		case 'j': o.json = 1; break;
		case 'e':
			err = strtod(optarg, &end);
			if (*end || end == optarg || !(err > 0) || !(err < 1))
				gossip_die(GOSSIP_EXIT_ERR, "-e %s: want a relative error above 0 and below 1 (0.01 is 1%%)",
				           optarg);
			break;
		case 'r': round_s = seconds("-r", optarg, GOSSIP_AGG_ROUND_MIN / 1000.0, GOSSIP_AGG_ROUND_MAX / 1000.0); break;
		case 'T': timeout_s = seconds("-T", optarg, 0.1, 86400); break;
		case 'h': usage(GOSSIP_EXIT_OK); break;
		case 'V': gossip_print_version(); break;
		default: usage(GOSSIP_EXIT_ERR);
		}
	}
	argc -= optind;
	argv += optind;
	if (argc < 2 || argc > 3 || strcmp(argv[0], "aggregate"))
		usage(GOSSIP_EXIT_ERR);
	struct gossip_aggregate a = {.fn = gossip_agg_fn_parse(argv[1])};
	if (a.fn < 0)
		gossip_die(GOSSIP_EXIT_ERR, "aggregate %s: want a function: avg, sum, count, min or max", argv[1]);
	if (argc == 2 && a.fn != GOSSIP_AGG_COUNT)
		gossip_die(GOSSIP_EXIT_ERR, "aggregate %s: want an input: tag:NAME, key:KEY or -", argv[1]);
	if (argc == 3 && (strlen(argv[2]) >= sizeof a.input || gossip_agg_check_input(a.fn, argv[2]) < 0))
		gossip_die(GOSSIP_EXIT_ERR, "aggregate %s: %s", argv[1],
		           strlen(argv[2]) >= sizeof a.input ? "the input is too long" : gossip_error());
	if (argc == 3)
		snprintf(a.input, sizeof a.input, "%s", argv[2]);
	o.dir = gossip_state_dir(d);
	long pid;
	if (gossip_node_running(o.dir, &pid) != 1)
		gossip_die(GOSSIP_EXIT_ERR, "%s: no node runs here: the run is computed by the running nodes; "
		           "start this one with gossip-node -d %s", o.dir, o.dir);
	uint64_t round_ms = (uint64_t)(round_s * 1000 + 0.5), limit = (uint64_t)(timeout_s * 1000 + 0.5);
	a.round_ms = round_ms;
	a.deadline = gossip_now_ms() + limit;

	struct agg_members was = {0};
	uint8_t id[GOSSIP_AGG_ID_LEN];
	uint64_t min_rounds = agg_members_load(&was, &o);
	agg_publish(&o, &a, id);

	struct gossip_agg_status s, last = {0};
	uint64_t started = gossip_mono_ms(), seen = UINT64_MAX;
	int stable = 0, have = 0, restarts = 0;
	double prev = NAN;
	long nap = (long)(round_ms / 5 ? round_ms / 5 : 1);
	for (;;) {
		if (gossip_agg_status_load(o.dir, id, &s) == 0 && s.round != seen) {
			seen = s.round;
			last = s;
			have = 1;
			put_round(&s, o.json);
			double tol = err * fmax(fabs(s.estimate), 1e-12), spread = s.high - s.low;
			int ok = !isnan(s.estimate) && s.round + 1 >= min_rounds && (!was.others || s.shares >= 2) &&
			         fabs(s.estimate - prev) <= tol && spread <= tol;
			stable = ok ? stable + 1 : 0;
			prev = s.estimate;
			if (stable >= AGG_STABLE_ROUNDS)
				break;
			/* A member that failed took its mass along: the survivors' answer is a new run
			 * without it (the others have it suspect at least by now, and pick it no more). */
			char gone[64];
			if (restarts < AGG_RESTARTS && agg_members_lost(&was, &o, gone, sizeof gone)) {
				restarts++;
				gossip_warn("aggregate: %s failed during the run: asking again without it", gone);
				min_rounds = agg_members_load(&was, &o);
				agg_publish(&o, &a, id);
				seen = UINT64_MAX;
				stable = 0;
				prev = NAN;
			}
		}
		if (stop || gossip_age_ms(gossip_mono_ms(), started) >= limit)
			break;
		struct timespec ts = {nap / 1000, (nap % 1000) * 1000000};
		nanosleep(&ts, NULL);
	}
	free(was.pk);
	if (stable >= AGG_STABLE_ROUNDS)
		return GOSSIP_EXIT_OK;
	if (!have)
		gossip_warn("aggregate: no estimate within %g s: is this node's observe running (gossip-node -d %s "
		            "status)?", timeout_s, o.dir);
	else
		gossip_warn("aggregate: no estimate stable to %g within %g s (the last: %.10g, spread %.3g); "
		            "try a longer -T or a larger -e", err, timeout_s, last.estimate, last.high - last.low);
	return GOSSIP_EXIT_NO;
}

/* The verb: the first word that is not an option or an option's argument (any verb's:
 * aggregate has options of its own, parsed apart). */
static const char *verb_of(int argc, char **argv)
{
	static const char *const with_arg[] = {"dir", "error", "round", "timeout", "address", "tag",
	                                       "every", "interval", "phi", "suspicion", "reap", "count",
	                                       "exec", "jitter", "partition-share", "score-min",
	                                       "coalesce", "limit", "ready", "second-tree", NULL};
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (!strcmp(a, "--"))
			return i + 1 < argc ? argv[i + 1] : NULL;
		if (a[0] != '-' || !a[1])
			return a;
		if (a[1] == '-') {
			for (int k = 0; with_arg[k]; k++)
				if (!strcmp(a + 2, with_arg[k]))
					i++;
			continue;
		}
		for (const char *c = a + 1; *c; c++)
			if (strchr("deTratJiPSRnxck", *c)) {
				i += !c[1];  /* -e 0.1, not -e0.1 */
				break;
			}
	}
	return NULL;
}

/* -i: seconds, fractions allowed, as everywhere; at most 60. It was milliseconds once:
 * such a value is refused, never taken as seconds. */
static double interval_ms(const char *arg)
{
	char *end;
	double v = strtod(arg, &end);
	if (*end || end == arg || !(v >= 0.001))
		gossip_die(GOSSIP_EXIT_ERR, "-i %s: want seconds, at least 0.001 and at most 60 "
		           "(fractions allowed: -i 0.5)", arg);
	if (v > 60 && v / 1000 >= 0.001 && v / 1000 <= 60)
		gossip_die(GOSSIP_EXIT_ERR, "-i %s: the interval is in seconds now (fractions allowed: "
		           "-i %g), at most 60", arg, v / 1000);
	if (v > 60)
		gossip_die(GOSSIP_EXIT_ERR, "-i %s: the interval is in seconds now (fractions allowed: "
		           "-i 0.5), at most 60", arg);
	return v * 1000;
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
		{"probe", no_argument, NULL, 'p'}, {"rumor", required_argument, NULL, 'r'},
		{"jitter", required_argument, NULL, 'J'},
		{"announce", required_argument, NULL, 259}, {"join", required_argument, NULL, 260},
		{"leave", required_argument, NULL, 261},
		{"second-tree", required_argument, NULL, 262},
		{"partition-share", required_argument, NULL, 256},
		{"score-min", required_argument, NULL, 257},
		{"coalesce", required_argument, NULL, 'c'},
		{"limit", required_argument, NULL, 'k'},
		{"ready", required_argument, NULL, 258},
		{"hand", required_argument, NULL, 'H'},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'}, {0}};
	struct opts o = {.cfg = gossip_peers_defaults, .count = 1, .limit_ms = 60000};
	const char *d = NULL;
	char *end;
	int c;

	gossip_init(argv[0]);
	const char *v0 = verb_of(argc, argv);
	if (v0 && !strcmp(v0, "aggregate")) {
		struct sigaction sa = {0};
		sa.sa_handler = on_stop;
		sigaction(SIGTERM, &sa, NULL);
		sigaction(SIGINT, &sa, NULL);
		return aggregate_main(argc, argv);
	}
	o.addrs = calloc((size_t)argc, sizeof *o.addrs);
	o.tags = calloc((size_t)argc, sizeof *o.tags);
	o.handlers = calloc(GOSSIP_RUNNER_HANDLERS, sizeof *o.handlers);
	o.seeds = calloc((size_t)argc, sizeof *o.seeds);
	if (!o.addrs || !o.tags || !o.handlers || !o.seeds)
		gossip_die(GOSSIP_EXIT_ERR, "out of memory");
	while ((c = getopt_long(argc, argv, "d:ja:t:e:J:i:P:S:R:n:r:sx:c:k:H:ATph", longopts, NULL)) != -1) {
		if (c != 'a' && c != 't' && c != 'x' && c != 260)
			gossip_opt_once(c);
		switch (c) {
		case 'd': d = optarg; break;
		case 'j': o.json = 1; break;
		case 'a': o.addrs[o.naddrs++] = optarg; break;
		case 't': o.tags[o.ntags++] = optarg; break;
		case 'e':
			o.every = strtod(optarg, &end);
			if (*end || !(o.every >= 0.001) || o.every > 86400)
				gossip_die(GOSSIP_EXIT_ERR, "-e %s: want seconds, 0.001 to 86400", optarg);
			break;
		case 'J':
			o.cfg.jitter = strtod(optarg, &end);
			if (*end || o.cfg.jitter < 0 || o.cfg.jitter >= 1)
				gossip_die(GOSSIP_EXIT_ERR, "-J %s: want a fraction from 0 to below 1", optarg);
			break;
		case 256:
			o.cfg.partition_share = strtod(optarg, &end);
			if (*end || !(o.cfg.partition_share > 0) || o.cfg.partition_share > 1)
				gossip_die(GOSSIP_EXIT_ERR, "--partition-share %s: want a fraction above 0, at most 1", optarg);
			break;
		case 257:
			o.cfg.score_min = strtod(optarg, &end);
			if (*end || o.cfg.score_min < 0 || o.cfg.score_min > 100)
				gossip_die(GOSSIP_EXIT_ERR, "--score-min %s: want 0 to 100", optarg);
			break;
		case 'i':
			o.cfg.interval_ms = interval_ms(optarg);
			o.cfg.min_std_ms = o.cfg.interval_ms / 10;
			o.cfg.pause_ms = o.cfg.interval_ms * 2;
			break;
		case 'P':
			o.cfg.phi_suspect = strtod(optarg, &end);
			if (*end || !(o.cfg.phi_suspect > 0))
				gossip_die(GOSSIP_EXIT_ERR, "-P %s: want a phi threshold above 0", optarg);
			break;
		case 'S':
			o.cfg.suspicion_mult = strtod(optarg, &end);
			if (*end || !(o.cfg.suspicion_mult > 0) || o.cfg.suspicion_mult > 1000)
				gossip_die(GOSSIP_EXIT_ERR, "-S %s: want a multiplier above 0, at most 1000", optarg);
			break;
		case 'R':
			o.cfg.reap_ms = strtod(optarg, &end) * 1000;
			if (*end || !(o.cfg.reap_ms > 0) || o.cfg.reap_ms > 10 * 365 * 86400e3)
				gossip_die(GOSSIP_EXIT_ERR, "-R %s: want seconds, at most ten years", optarg);
			break;
		case 'n':
			o.count = strtol(optarg, &end, 10);
			if (*end || o.count < 1 || o.count > 65536)
				gossip_die(GOSSIP_EXIT_ERR, "-n %s: want a count of 1 or more", optarg);
			break;
		case 'r':
			o.rumor = strtol(optarg, &end, 10);
			if (*end || !*optarg || o.rumor < 1 || o.rumor > 64)
				gossip_die(GOSSIP_EXIT_ERR, "-r %s: want the rumor trees' arity, 1 to 64", optarg);
			break;
		case 's': o.sync_addr = 1; break;
		case 'x':
			if (o.nhandlers == GOSSIP_RUNNER_HANDLERS)
				gossip_die(GOSSIP_EXIT_ERR, "-x %s: at most %d handlers", optarg, GOSSIP_RUNNER_HANDLERS);
			if (gossip_handler_parse(optarg, &o.handlers[o.nhandlers]) < 0)
				gossip_die(GOSSIP_EXIT_ERR, "-x %s: %s", optarg, gossip_error());
			o.nhandlers++;
			break;
		case 'c':
		case 'k': {
			double v = strtod(optarg, &end);
			if (*end || !*optarg || v < 0 || v > 86400 || (c == 'c' && !(v > 0)))
				gossip_die(GOSSIP_EXIT_ERR, c == 'c' ? "-c %s: want a window in seconds, above 0, at most 86400"
				                                     : "-k %s: want seconds, 0 (no limit) to 86400", optarg);
			*(c == 'c' ? &o.coalesce_ms : &o.limit_ms) = (uint64_t)(v * 1000);
			if (c == 'c' && !o.coalesce_ms)
				o.coalesce_ms = 1;
			break;
		}
		case 258: o.ready = optarg; break;
		case 'H':
			if (!*optarg)
				gossip_die(GOSSIP_EXIT_ERR, "-H: want a path for the socket gossip-listen -H hands syncs to");
			o.hand = optarg;
			break;
		case 259:
			if (!*optarg)
				gossip_die(GOSSIP_EXIT_ERR, "--announce: want the file gossip-peers announce wrote");
			o.announce = optarg;
			break;
		case 260:
			if (!*optarg)
				gossip_die(GOSSIP_EXIT_ERR, "--join: want a seed's address, as gossip-peers join takes it");
			o.seeds[o.nseeds++] = optarg;
			break;
		case 261:
			if (!*optarg)
				gossip_die(GOSSIP_EXIT_ERR, "--leave: want the file whose coming makes observe leave the cluster");
			o.leave = optarg;
			break;
		case 262:
			if (strcmp(optarg, "always") && strcmp(optarg, "doubt"))
				gossip_die(GOSSIP_EXIT_ERR, "--second-tree %s: want always (both trees send every message) or "
				           "doubt (the second only below a suspect)", optarg);
			o.lazy = !strcmp(optarg, "doubt") ? GOSSIP_RUMOR_LAZY : 0;
			o.second_tree = 1;
			break;
		case 'A': o.from_start = 1; break;
		case 'T': o.tee = 1; break;
		case 'p': o.probing = 1; break;
		case 'h': usage(GOSSIP_EXIT_OK); break;
		case 'V': gossip_print_version(); break;
		default: usage(GOSSIP_EXIT_ERR);
		}
	}
	argc -= optind;
	argv += optind;
	if (argc < 1)
		usage(GOSSIP_EXIT_ERR);
	o.dir = gossip_state_dir(d);
	const char *verb = argv[0];
	/* Without the prober nothing judges a claim news, and every copy of one would be
	 * passed on: observe's rumor needs it. */
	if (o.rumor && !o.probing && !strcmp(verb, "observe"))
		gossip_die(GOSSIP_EXIT_ERR, "observe -r needs -p: the prober judges which claims are news");
	if (o.second_tree && !o.rumor)
		gossip_die(GOSSIP_EXIT_ERR, "--second-tree needs -r: it says how the rumor's second tree sends");
	if (o.leave && !o.probing && !strcmp(verb, "observe"))
		gossip_die(GOSSIP_EXIT_ERR, "observe --leave needs -p: the prober signs the leave and stops refuting it");
	struct sigaction sa = {0};
	sa.sa_handler = on_stop;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	if (!strcmp(verb, "observe") || !strcmp(verb, "beat")) {
		sa.sa_handler = on_hup;
		sigaction(SIGHUP, &sa, NULL);  /* re-read the files; other verbs end on it as before */
	}
	int r;
	if (strcmp(verb, "watch") && (o.nhandlers || o.coalesce_ms || o.limit_ms != 60000 || o.ready))
		usage(GOSSIP_EXIT_ERR);  /* watch's options */
	if (!strcmp(verb, "announce") && argc == 1)
		r = do_announce(&o);
	else if (o.naddrs || o.ntags || ((o.rumor || o.second_tree) && strcmp(verb, "observe") && strcmp(verb, "rumor")) ||
	         ((o.tee || o.probing || o.hand || o.announce || o.leave || o.nseeds) && strcmp(verb, "observe")))
		usage(GOSSIP_EXIT_ERR);
	else if (!strcmp(verb, "beat") && argc == 1)
		r = do_beat(&o);
	else if (!strcmp(verb, "join") && argc > 1)
		r = do_join(&o, argc - 1, argv + 1);
	else if (!strcmp(verb, "leave") && argc == 1)
		r = do_leave(&o);
	else if (!strcmp(verb, "observe") && argc == 1)
		r = do_observe(&o);
	else if (!strcmp(verb, "rumor") && argc == 1 && o.rumor)
		r = do_rumor(&o);
	else if (!strcmp(verb, "list") && argc == 1)
		r = do_list(&o);
	else if (!strcmp(verb, "pick") && argc == 1)
		r = do_pick(&o);
	else if (!strcmp(verb, "leader") && argc == 1)
		r = do_leader(&o);
	else if (!strcmp(verb, "watch") && argc == 1)
		r = do_watch(&o);
	else if ((!strcmp(verb, "tag") || !strcmp(verb, "untag")) && argc > 1)
		r = do_tag(&o, verb[0] == 'u', argc - 1, argv + 1);
	else if (!strcmp(verb, "tags") && argc == 1)
		r = do_tags(&o);
	else if (!strcmp(verb, "force-leave") && argc == 2)
		r = do_force_leave(&o, argv[1]);
	else
		usage(GOSSIP_EXIT_ERR);
	free(o.addrs);
	free(o.tags);
	free(o.handlers);
	free(o.seeds);
	return r;
}
