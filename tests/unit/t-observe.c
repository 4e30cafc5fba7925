/* t-observe: the peer table from signed messages on a fake clock: joins, refuted
 * suspicions, leaves, phi on heartbeats to suspect and dead, reaping, partitions,
 * reputation from DIR/rejects, member records caught up from the store and passed on
 * once, and a leave of this node's refuted while it runs. */
#include "gossip.h"
#include "tap.h"
#include "fixture.h"

#include <sodium.h>
#include <stdlib.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum { MEMBERS = 7 };
static const uint64_t T0 = 1000000000;

static char dir[] = "/tmp/gossip-t-observe.XXXXXX";
static struct gossip_identity ids[MEMBERS];  /* ids[0] is this node */

/* Member i's message: a set of key to value (empty: an empty text string), or a delete. */
static void msg_by(struct gossip_buf *b, int i, unsigned type, const char *key, uint64_t version,
                   const uint8_t *value, size_t n)
{
	struct gossip_msg m = {0};
	m.type = type;
	m.version = version;
	m.time = gossip_now_ms();  /* the store keeps no delete past its time to live */
	m.key = (const uint8_t *)key;
	m.keylen = strlen(key);
	m.value = value;
	m.valuelen = n;
	m.has_value = type == GOSSIP_T_SET;
	m.value_text = m.has_value && n == 0;
	b->len = 0;
	gossip_msg_sign(b, &m, &ids[i]);
}

static void record_by(struct gossip_buf *b, int i, uint64_t version, uint64_t incarnation)
{
	struct gossip_member rec = {0};
	struct gossip_buf v = {0};
	rec.incarnation = incarnation;
	snprintf(rec.name, sizeof rec.name, "n%d", i);
	snprintf(rec.addrs[0], sizeof rec.addrs[0], "udp://127.0.0.1:%d", 7000 + i);
	rec.naddrs = 1;
	gossip_member_encode(&v, &rec);
	msg_by(b, i, GOSSIP_T_SET, GOSSIP_KEY_MEMBER, version, v.p, v.len);
	gossip_buf_free(&v);
}

static int observe(struct gossip_observer *o, const struct gossip_buf *b, uint64_t now, int *pass_on)
{
	int ignored;
	return gossip_observe_msg(o, b->p, b->len, now, pass_on ? pass_on : &ignored);
}

static struct gossip_peer *peer(struct gossip_peers *t, int i)
{
	return gossip_peers_find(t, ids[i].pk, 0);
}

static int state(struct gossip_peers *t, int i)
{
	struct gossip_peer *p = peer(t, i);
	return p ? p->state : -1;
}

static int events(const char *name, const char *member)
{
	return count_events(dir, name, member, NULL);
}

static uint64_t event_time(const char *name, const char *member)
{
	uint64_t at;
	count_events(dir, name, member, &at);
	return at;
}

/* Tick every 100 ms from *now until member i is in state s, at most until limit. */
static int tick_until(struct gossip_observer *o, struct gossip_peers *t, uint64_t *now, int i, int s,
                      uint64_t limit)
{
	for (; *now <= limit; *now += 100) {
		gossip_observe_tick(o, *now);
		if (state(t, i) == s)
			return 1;
	}
	return 0;
}

static void write_file(const char *name, const char *text, const char *mode)
{
	FILE *f = fopen(gossip_path(dir, name), mode);
	fputs(text, f);
	fclose(f);
}

/* Put a message into DIR/store, as a join or a sync would. */
static int store_put(const struct gossip_buf *b)
{
	struct gossip_store *st = gossip_store_open(dir, NULL);
	struct gossip_trust trust;
	if (!st || gossip_trust_load(&trust, dir) < 0)
		return -1;
	struct gossip_merger mg = {.st = st, .trust = &trust};
	int r = gossip_merge_item(&mg, b->p, b->len, "test", 0) < 0 || gossip_merge_flush(&mg) < 0 ? -1 : 0;
	gossip_merger_free(&mg);
	gossip_store_close(st);
	gossip_trust_free(&trust);
	return r;
}

static size_t news;
static struct gossip_buf news_seen;
static void count_news(void *ctx, const uint8_t *p, size_t n)
{
	(void)ctx;
	news++;
	news_seen.len = 0;
	gossip_buf_put(&news_seen, p, n);
}

static size_t acks;
static uint8_t ack_sum[GOSSIP_SUM_LEN];  /* the summary in the last ack, if any */
static int ack_has_sum;
static void count_acks(void *ctx, const struct gossip_peer *to, const uint8_t *p, size_t n)
{
	struct gossip_msg m;
	(void)ctx;
	if (!to || gossip_msg_decode(p, n, &m) < 0 || m.type != GOSSIP_T_ACK)
		return;
	acks++;
	if ((ack_has_sum = m.valuelen == GOSSIP_NONCE_LEN + GOSSIP_SUM_LEN))
		memcpy(ack_sum, m.value + GOSSIP_NONCE_LEN, GOSSIP_SUM_LEN);
}

/* The summary o's prober acks a hello from member i with (0 when none). */
static int summary_acked(struct gossip_observer *o, int i, uint64_t now, uint8_t sum[GOSSIP_SUM_LEN])
{
	struct gossip_buf b = {0};
	uint8_t v[GOSSIP_NONCE_LEN + 32];
	struct gossip_msg m = {0};
	randombytes_buf(v, GOSSIP_NONCE_LEN);
	memcpy(v + GOSSIP_NONCE_LEN, ids[0].pk, 32);
	m.type = GOSSIP_T_PING;
	m.value = v;
	m.valuelen = sizeof v;
	m.has_value = 1;
	gossip_msg_sign(&b, &m, &ids[i]);
	ack_has_sum = 0;
	observe(o, &b, now, NULL);
	gossip_buf_free(&b);
	memcpy(sum, ack_sum, GOSSIP_SUM_LEN);
	return ack_has_sum;
}

/* The first bytes of DIR/store's summary as a fresh reader with DIR/trusted sees it. */
static int summary_now(uint8_t sum[GOSSIP_SUM_LEN])
{
	struct gossip_store *st = gossip_store_open(dir, NULL);
	struct gossip_trust trust;
	uint8_t root[16];
	uint64_t count;
	int r = -1;
	if (!st || gossip_trust_load(&trust, dir) < 0)
		return -1;
	gossip_store_set_visible(st, gossip_trust_has, &trust);
	if (gossip_store_lock(st) == 0 && gossip_store_summary(st, root, &count) == 0) {
		memcpy(sum, root, GOSSIP_SUM_LEN);
		r = 0;
	}
	gossip_store_unlock(st);
	gossip_store_close(st);
	gossip_trust_free(&trust);
	return r;
}

int main(void)
{
	if (sodium_init() < 0 || !mkdtemp(dir))
		return 1;
	char line[200], trusted[2000] = "";
	for (int i = 0; i < MEMBERS; i++) {
		char name[16];
		snprintf(name, sizeof name, "n%d", i);
		ids[i] = named_ident(name);
		gossip_pub_line(line, sizeof line, ids[i].pk, name);
		strcat(line, "\n");
		if (i == 0)
			write_file("key.pub", line, "w");
		else
			strcat(trusted, line);
	}
	write_file("trusted", trusted, "w");
	struct gossip_peers_cfg cfg = gossip_peers_defaults;  /* 1 s heartbeats, 2 s pause, phi 8 */
	cfg.reap_ms = 30000;
	struct gossip_peers t;
	struct gossip_buf b = {0};
	uint64_t now = T0, v = 10;
	int pass_on;

	ok(gossip_peers_load(&t, dir) == 0 && t.n == 0 && t.has_self && !memcmp(t.self_pk, ids[0].pk, 32),
	   "no table yet: empty, and this node known from key.pub");
	struct gossip_observer *o = gossip_observer_new(&t, &cfg, dir, NULL, now);

	/* Joins, and this node itself. */
	record_by(&b, 1, v++, 100);
	ok(observe(o, &b, now, &pass_on) == 1 && pass_on && state(&t, 1) == GOSSIP_P_ALIVE &&
	   events("member-join", "n1") == 1, "a member record: a join, in the event log");
	ok(observe(o, &b, now, NULL) == 0, "the same record again is no news");
	record_by(&b, 0, v++, 100);
	ok(observe(o, &b, now, NULL) == 1 && peer(&t, 0)->self, "this node's own record is marked self");

	/* Phi on heartbeats (n1), and a grace period for a member that never beats (n2). */
	record_by(&b, 2, v++, 100);
	observe(o, &b, now, NULL);
	for (int k = 0; k < 20; k++) {
		now += 1000;
		msg_by(&b, 1, GOSSIP_T_SET, GOSSIP_KEY_HB, v++, (const uint8_t *)"", 0);
		observe(o, &b, now, NULL);
		gossip_observe_tick(o, now);
	}
	uint64_t last = now;
	ok(state(&t, 1) == GOSSIP_P_ALIVE && peer(&t, 1)->nint == 19, "heartbeats every second: alive");
	ok(state(&t, 2) == GOSSIP_P_DEAD && event_time("member-suspect", "n2") == T0 + 13000 &&
	   event_time("member-failed", "n2") == T0 + 17000,
	   "a member that never beats: suspect after its grace period (12 s), dead 4 s later");
	ok(tick_until(o, &t, &now, 1, GOSSIP_P_SUSPECT, last + 10000) && now > last + 3000 &&
	   now < last + 4000 && events("member-suspect", "n1") == 1,
	   "silent: suspect once phi reaches 8, 3 to 4 s after the last heartbeat (%.1f s)",
	   (double)(now - last) / 1000);
	record_by(&b, 1, v++, 200);
	ok(observe(o, &b, now, NULL) == 1 && state(&t, 1) == GOSSIP_P_ALIVE && events("member-join", "n1") == 1 &&
	   events("member-alive", "n1") == 1,
	   "a newer incarnation of a suspect: alive again (member-alive), not a new join");
	gossip_observe_tick(o, now += 100);
	uint64_t since = now;
	ok(state(&t, 1) == GOSSIP_P_SUSPECT && tick_until(o, &t, &now, 1, GOSSIP_P_DEAD, since + 10000) &&
	   now == since + 4000 && events("member-failed", "n1") == 1,
	   "still silent: suspect again, and dead after the suspicion timeout, 4 intervals");
	msg_by(&b, 1, GOSSIP_T_SET, GOSSIP_KEY_HB, v++, (const uint8_t *)"", 0);
	ok(observe(o, &b, now, NULL) == 1 && state(&t, 1) == GOSSIP_P_ALIVE && events("member-join", "n1") == 2,
	   "a heartbeat brings it back: a join");

	/* A leave, and reaping. */
	record_by(&b, 3, v++, 100);
	observe(o, &b, now, NULL);
	msg_by(&b, 3, GOSSIP_T_DEL, GOSSIP_KEY_MEMBER, v++, NULL, 0);
	ok(observe(o, &b, now, &pass_on) == 1 && pass_on && state(&t, 3) == GOSSIP_P_LEFT &&
	   events("member-leave", "n3") == 1 && events("member-failed", "n3") == 0,
	   "a delete of the member record: left, not failed");
	since = now;
	for (now = since + 1000; now < since + 30000; now += 1000) {  /* n1 keeps beating */
		msg_by(&b, 1, GOSSIP_T_SET, GOSSIP_KEY_HB, v++, (const uint8_t *)"", 0);
		observe(o, &b, now, NULL);
		gossip_observe_tick(o, now);
	}
	gossip_observe_tick(o, since + 29999);
	uint64_t reaped = event_time("member-reap", "n2");
	ok(state(&t, 3) == GOSSIP_P_LEFT && state(&t, 2) == -1 && reaped >= T0 + 17000 + 30000 &&
	   reaped < T0 + 17000 + 31000,
	   "the left kept until reap_ms; the dead forgotten reap_ms after they died (at the next tick)");
	now = since + 30000;
	ok(gossip_observe_tick(o, now) == 1 && state(&t, 3) == -1 && state(&t, 1) == GOSSIP_P_ALIVE &&
	   events("member-reap", "n3") == 1, "forgotten after reap_ms (30 s): member-reap");
	ok(events("partition-suspected", NULL) == 0, "one member at a time is no partition");

	/* Reputation. */
	char b64[45];
	gossip_b64(b64, ids[1].pk, 32);
	snprintf(line, sizeof line, "%llu %s bad signature\n", (unsigned long long)now, b64);
	for (int k = 0; k < 3; k++)
		write_file("rejects", line, "a");
	write_file("rejects", "1 AAAA not a key\n", "a");
	gossip_observe_rejects(o);
	ok(peer(&t, 1)->score == 70 && peer(&t, 1)->rejected == 3 &&
	   !strcmp(peer(&t, 1)->why, "3 rejected, last: bad signature"), "3 rejected lines: 10 points each");
	snprintf(line, sizeof line, "%llu %s forbidden key", (unsigned long long)now, b64);
	write_file("rejects", line, "a");
	gossip_observe_rejects(o);
	ok(peer(&t, 1)->rejected == 3, "half a line waits for its end");
	write_file("rejects", "\n", "a");
	gossip_observe_rejects(o);
	ok(peer(&t, 1)->score == 60 && !strcmp(peer(&t, 1)->why, "4 rejected, last: forbidden key"),
	   "then it counts");
	gossip_observe_tick(o, now);
	gossip_observe_tick(o, now + 60000);
	ok(peer(&t, 1)->score > 60.99 && peer(&t, 1)->score < 61.01, "a point back a minute (%.2f)",
	   peer(&t, 1)->score);

	/* Reputation across the renaming of DIR/rejects to rejects.1 (small logs here): every
	 * line counted once, wherever the renaming falls between two reads. */
	setenv("GOSSIP_LOG_MAX", "1024", 1);
	char rejects[4200], rejects1[4300];
	snprintf(rejects, sizeof rejects, "%s", gossip_path(dir, "rejects"));
	snprintf(rejects1, sizeof rejects1, "%s.1", rejects);
	snprintf(line, sizeof line, "%llu %s bad signature\n", (unsigned long long)now, b64);
	size_t per_file = 1024 / strlen(line), written = 0;
	uint64_t before = peer(&t, 1)->rejected;
	struct stat st1, st2;
	int appended = 1;
	for (size_t k = 0; k < per_file + 3; k++)
		appended &= gossip_log_append(rejects, line, strlen(line)) == 0, written++;
	stat(rejects1, &st1);
	gossip_observe_rejects(o);
	ok(appended && peer(&t, 1)->rejected - before == written,
	   "lines written just before a renaming and after it: each counted once (%llu of %zu)",
	   (unsigned long long)(peer(&t, 1)->rejected - before), written);
	/* The new file grows past the point the old one was read to before the next read. */
	struct stat at_read;
	stat(rejects, &at_read);
	for (size_t k = 0; k < per_file + per_file / 2; k++)
		appended &= gossip_log_append(rejects, line, strlen(line)) == 0, written++;
	struct stat grown;
	stat(rejects1, &st2);
	stat(rejects, &grown);
	gossip_observe_rejects(o);
	ok(appended && st2.st_ino != st1.st_ino && grown.st_size > at_read.st_size &&
	   peer(&t, 1)->rejected - before == written,
	   "renamed, and the new file already longer than the old one was read: each counted once "
	   "(%llu of %zu)", (unsigned long long)(peer(&t, 1)->rejected - before), written);
	/* Reads at any point between appends, across many renamings. */
	size_t renamings = 0;
	for (int round = 0; round < 300; round++) {
		uint32_t n = 1 + randombytes_uniform(8);
		stat(rejects1, &st1);
		for (uint32_t k = 0; k < n; k++)
			appended &= gossip_log_append(rejects, line, strlen(line)) == 0, written++;
		if (stat(rejects1, &st2) == 0 && st2.st_ino != st1.st_ino)
			renamings++;
		gossip_observe_rejects(o);
	}
	ok(appended && renamings > 50 && peer(&t, 1)->rejected - before == written,
	   "%zu renamings, reads at random points: %llu of %zu lines counted", renamings,
	   (unsigned long long)(peer(&t, 1)->rejected - before), written);
	/* Half a line left at the end of a file that is then renamed away never ends: it is
	 * dropped, and does not run into the first line of the next file. */
	write_file("rejects", "1 ", "a");
	gossip_observe_rejects(o);
	rename(rejects, rejects1);
	gossip_log_append(rejects, line, strlen(line));
	written++;
	gossip_observe_rejects(o);
	ok(peer(&t, 1)->rejected - before == written, "half a line in a file renamed away: dropped");
	unsetenv("GOSSIP_LOG_MAX");
	gossip_observer_free(o);
	gossip_peers_free(&t);

	/* Partitions: two of five others fall silent at once. */
	gossip_peers_load(&t, dir);
	now = T0;
	o = gossip_observer_new(&t, &cfg, dir, NULL, now);
	for (int i = 0; i < 6; i++) {
		record_by(&b, i, v++, 100);
		observe(o, &b, now, NULL);
	}
	for (int k = 0; k < 30; k++) {
		now += 1000;
		for (int i = 1; i < 6; i++) {
			msg_by(&b, i, GOSSIP_T_SET, GOSSIP_KEY_HB, v++, (const uint8_t *)"", 0);
			if (k < 20 || i < 4)
				observe(o, &b, now, NULL);
		}
		gossip_observe_tick(o, now);
	}
	ok(state(&t, 4) != GOSSIP_P_ALIVE && state(&t, 5) != GOSSIP_P_ALIVE && t.partition_since &&
	   events("partition-suspected", NULL) == 1, "40%% of the others suspect at once: a partition");
	for (int i = 4; i < 6; i++) {
		msg_by(&b, i, GOSSIP_T_SET, GOSSIP_KEY_HB, v++, (const uint8_t *)"", 0);
		observe(o, &b, now, NULL);
	}
	gossip_observe_tick(o, now);
	ok(!t.partition_since && events("partition-healed", NULL) == 1, "heard again: healed");
	gossip_observer_free(o);
	gossip_peers_free(&t);

	/* Probing: probes are never passed on; a signer only the store knows is caught up
	 * before its ping is answered; the store's member records, once a look. */
	struct gossip_author me = {0};
	me.id = ids[0];
	if (gossip_clock_open(&me.clock, dir, 1) < 0)
		return 1;
	gossip_peers_load(&t, dir);
	now = T0;
	struct gossip_swim *s = gossip_swim_new(&t, &cfg, &me, dir, count_acks, NULL, now);
	o = gossip_observer_new(&t, &cfg, dir, s, now);
	record_by(&b, 6, v++, 100);
	ok(store_put(&b) == 0 && !peer(&t, 6), "n6's record is in the store, not in the table");
	struct gossip_msg m = {0};
	uint8_t nonce[GOSSIP_NONCE_LEN] = {1, 2, 3};
	m.type = GOSSIP_T_PING;
	m.value = nonce;
	m.valuelen = sizeof nonce;
	m.has_value = 1;
	b.len = 0;
	gossip_msg_sign(&b, &m, &ids[6]);
	ok(observe(o, &b, now, &pass_on) == 1 && !pass_on && state(&t, 6) == GOSSIP_P_ALIVE && acks == 1 &&
	   events("member-join", "n6") == 1, "a ping from n6: its record from the store, then an ack");
	gossip_observer_on_news(o, count_news, NULL);
	news = 0;
	record_by(&b, 5, v++, 100);
	store_put(&b);
	ok(gossip_observe_store(o, now) == 1 && state(&t, 5) == GOSSIP_P_ALIVE && gossip_observe_store(o, now) == 0,
	   "a look at the store: new member records, once");
	ok(news == 1 && news_seen.len == b.len && !memcmp(news_seen.p, b.p, b.len),
	   "the store's new record is passed on (to be rumored), once");
	ok(observe(o, &b, now, &pass_on) == 0 && !pass_on && news == 1,
	   "the same record then on the stream: not passed on again");
	record_by(&b, 5, v++, 200);
	ok(observe(o, &b, now, &pass_on) == 1 && pass_on, "a newer one on the stream is passed on");
	store_put(&b);
	ok(gossip_observe_store(o, now) == 0 && news == 1, "and not again when the store has it too");
	/* A leave of this node's, signed after the observer started: refuted, not obeyed. */
	record_by(&b, 0, v++, 100);
	observe(o, &b, now, NULL);
	msg_by(&b, 0, GOSSIP_T_DEL, GOSSIP_KEY_MEMBER, v++, NULL, 0);
	ok(observe(o, &b, now, &pass_on) == 1 && state(&t, 0) == GOSSIP_P_ALIVE && events("member-leave", "n0") == 0,
	   "a leave of this node's while it runs: still alive, no member-leave");

	/* Repair: the summary its acks carry follows the store, and trust. */
	uint8_t sum0[GOSSIP_SUM_LEN], sum1[GOSSIP_SUM_LEN], want[GOSSIP_SUM_LEN];
	now += 1001;
	gossip_observe_store(o, now);
	ok(summary_acked(o, 6, now, sum0) && summary_now(want) == 0 && !memcmp(sum0, want, GOSSIP_SUM_LEN),
	   "a hello is acked with the store's summary");
	msg_by(&b, 4, GOSSIP_T_SET, "revoked-soon", v++, (const uint8_t *)"1", 1);
	store_put(&b);
	now += 1001;
	gossip_observe_store(o, now);
	ok(summary_acked(o, 6, now, sum1) && summary_now(want) == 0 && !memcmp(sum1, want, GOSSIP_SUM_LEN) &&
	   memcmp(sum1, sum0, GOSSIP_SUM_LEN), "n4 writes a value: the summary acked changes with the store");
	/* n4 is removed from trusted, and the node reloaded: its messages are hidden, and
	 * the summary is made afresh (not the one kept from before). */
	{
		char tr[2000] = "";
		for (int i = 1; i < MEMBERS; i++) {
			char name[16];
			if (i == 4)
				continue;
			snprintf(name, sizeof name, "n%d", i);
			gossip_pub_line(line, sizeof line, ids[i].pk, name);
			strcat(line, "\n");
			strcat(tr, line);
		}
		write_file("trusted", tr, "w");
	}
	gossip_observe_reload(o);
	now += 1001;
	gossip_observe_store(o, now);
	ok(summary_acked(o, 6, now, sum1) && summary_now(want) == 0 && !memcmp(sum1, want, GOSSIP_SUM_LEN),
	   "n4 revoked and the node reloaded: the summary acked is the store's without n4's messages");
	/* Another process (a compaction) holds the store's lock: the once-an-interval look
	 * for the summary does not wait for it, it skips that interval. */
	{
		int fds[2];
		char c;
		if (pipe(fds) < 0)
			return 1;
		pid_t pid = fork();
		if (pid == 0) {
			int fd = open(gossip_path(dir, "store.lock"), O_RDWR | O_CLOEXEC);
			if (fd < 0 || flock(fd, LOCK_EX) < 0)
				_exit(1);
			if (write(fds[1], "x", 1) != 1)
				_exit(1);
			usleep(1500000);
			_exit(0);
		}
		close(fds[1]);
		if (read(fds[0], &c, 1) != 1)
			return 1;
		close(fds[0]);
		struct timespec t0, t1;
		now += 1001;
		clock_gettime(CLOCK_MONOTONIC, &t0);
		gossip_observe_store(o, now);
		clock_gettime(CLOCK_MONOTONIC, &t1);
		long ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
		waitpid(pid, NULL, 0);
		ok(ms < 500, "the store locked by another process: the summary look skipped, not waited (%ld ms)", ms);
	}
	gossip_observer_free(o);
	gossip_swim_free(s);
	gossip_peers_free(&t);

	gossip_buf_free(&b);
	gossip_buf_free(&news_seen);
	for (int i = 1; i < MEMBERS; i++)
		gossip_identity_free(&ids[i]);
	gossip_author_close(&me);
	rm_dir(dir);
	return tap_done();
}
