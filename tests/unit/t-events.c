/* t-events: handler specs (-x [FILTER[,FILTER...]=]COMMAND): what is a filter, what is a
 * command, and which events each spec runs for; message records (user events and key
 * changes) written by the recorder and read back, and places in the log; when the runner
 * has work for a later tick (gossip_runner_busy), and the directory watch its callers
 * sleep on (a signal or a write ends the wait). */
#include "fixture.h"
#include "tap.h"

#include <signal.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>

static void parses(const char *spec, const char *command, int nfilters)
{
	struct gossip_handler h;
	int r = gossip_handler_parse(spec, &h);
	ok(r == 0, "%s parses", spec);
	if (r == 0) {
		is_str(h.command, command, "%s: the command", spec);
		ok(h.nfilters == nfilters, "%s: %d filters (got %d)", spec, nfilters, h.nfilters);
	}
}

static void refused(const char *spec, const char *error)
{
	struct gossip_handler h;
	ok(gossip_handler_parse(spec, &h) < 0, "%s is refused", spec);
	ok(strstr(gossip_error(), error) != NULL, "%s: says %s (%s)", spec, error, gossip_error());
}

static int wants(const char *spec, const char *event, const char *name)
{
	struct gossip_handler h;
	return gossip_handler_parse(spec, &h) == 0 && gossip_handler_wants(&h, event, name);
}

/* The recorder logs user events and key changes, not names starting with _, one
 * append a batch; the reader gives them back decoded, and a place in the log resumes
 * after the event it was taken at. */
static void records(void)
{
	char *dir = strdup(temp_dir("t-events"));
	struct gossip_identity id = ident(7);
	struct gossip_buf b = {0};
	size_t n[5];
	n[0] = sign_msg(&b, &id, GOSSIP_T_EVENT, "deploy", "v1", 1, 1000);
	n[1] = sign_msg(&b, &id, GOSSIP_T_SET, "_hb", "x", 2, 1001);
	n[2] = sign_msg(&b, &id, GOSSIP_T_SET, "app/color", "blue", 3, 1002);
	n[3] = sign_msg(&b, &id, GOSSIP_T_EVENT, "_query", "q", 4, 1003);
	n[4] = sign_msg(&b, &id, GOSSIP_T_DEL, "app/color", NULL, 5, 1004);
	/* Without DIR/events.keys (no handler wants key changes), only the user event. */
	struct gossip_event_recorder quiet = {.dir = dir};
	size_t at = 0;
	for (int i = 0; i < 5; i++) {
		gossip_event_record(&quiet, b.p + at, n[i]);
		at += n[i];
	}
	ok(quiet.buf.len > 0 && quiet.buf.len < n[0] + 32, "without events.keys: the user event only");
	gossip_event_recorder_free(&quiet);
	FILE *f = fopen(gossip_path(dir, "events.keys"), "w");
	ok(f && fclose(f) == 0, "events.keys made");
	struct gossip_event_recorder rec = {.dir = dir};
	at = 0;
	for (int i = 0; i < 5; i++) {
		gossip_event_record(&rec, b.p + at, n[i]);
		at += n[i];
	}
	struct stat st;
	ok(stat(gossip_path(dir, "events"), &st) < 0, "nothing is written before the batch ends");
	gossip_event_record(&rec, NULL, 0);
	gossip_event_recorder_free(&rec);

	struct gossip_event_reader r;
	struct gossip_event e;
	struct gossip_log_pos first;
	gossip_event_reader_init(&r, dir, 1);
	ok(gossip_event_reader_next(&r, &e) == 1 && e.kind == GOSSIP_EVENT_USER &&
	       !strcmp(e.event, "user") && !strcmp(e.key, "deploy") && e.valuelen == 2 &&
	       !memcmp(e.value, "v1", 2) && e.version == 1 && e.msg_time == 1000 && e.msglen == n[0],
	   "a user event, decoded");
	gossip_event_reader_pos(&r, &first);
	ok(gossip_event_reader_next(&r, &e) == 1 && e.kind == GOSSIP_EVENT_KEY &&
	       !strcmp(e.key, "app/color") && !strcmp(e.op, "set") && e.valuelen == 4,
	   "a set, decoded (the _hb between is not logged)");
	ok(gossip_event_reader_next(&r, &e) == 1 && e.kind == GOSSIP_EVENT_KEY &&
	       !strcmp(e.op, "del") && e.valuelen == 0 && e.version == 5,
	   "a del (the _query between is not logged)");
	ok(gossip_event_reader_next(&r, &e) == 0, "and nothing else");
	gossip_event_reader_free(&r);

	ok(gossip_log_pos_save(dir, &first) == 0, "a place is saved");
	struct gossip_log_pos back;
	ok(gossip_log_pos_load(dir, &back) == 0 && back.dev == first.dev && back.ino == first.ino &&
	       back.off == first.off,
	   "and loaded");
	ok(gossip_event_reader_at(&r, dir, &back) == 0, "the reader starts at it");
	ok(gossip_event_reader_next(&r, &e) == 1 && !strcmp(e.key, "app/color") && !strcmp(e.op, "set"),
	   "with the event after it");
	gossip_event_reader_free(&r);
	struct gossip_log_pos gone = {first.dev, first.ino + 12345, 1};
	ok(gossip_event_reader_at(&r, dir, &gone) < 0 && strstr(gossip_error(), "neither"),
	   "a place in a file that is gone: an error (%s)", gossip_error());
	gossip_event_reader_free(&r);
	gossip_buf_free(&b);
	sodium_free(id.sk);
	rm_dir(dir);
	free(dir);
}

/* Ticks until the runner has no work (5 s at most): 1 when it got there. */
static int settles(struct gossip_runner *run)
{
	for (int i = 0; i < 500; i++) {
		gossip_runner_tick(run, gossip_mono_ms());
		if (!gossip_runner_busy(run))
			return 1;
		struct timespec ts = {0, 10000000L};
		nanosleep(&ts, NULL);
	}
	return 0;
}

/* Busy while a handler runs, an event waits or a window is open; idle otherwise, so that
 * watch may sleep until the next event. */
static void runner_busy(int coalesce_ms)
{
	char *dir = strdup(temp_dir("t-events-runner"));
	struct gossip_handler h[2];
	ok(gossip_handler_parse("user:deploy=true", &h[0]) == 0 && gossip_handler_parse("user:other=true", &h[1]) == 0,
	   "coalesce %d: two handlers", coalesce_ms);
	struct gossip_runner_cfg cfg = {.dir = dir, .handlers = h, .nhandlers = 2, .coalesce_ms = (uint64_t)coalesce_ms,
	                                .max_events = 16, .max_bytes = 1 << 20};
	struct gossip_runner *run = gossip_runner_new(&cfg);
	ok(run != NULL, "coalesce %d: a runner", coalesce_ms);
	if (!run) {
		free(dir);
		return;
	}
	ok(!gossip_runner_busy(run), "coalesce %d: a new runner has no work", coalesce_ms);
	struct gossip_event e = {.kind = GOSSIP_EVENT_USER, .value = (const uint8_t *)"v1", .valuelen = 2};
	strcpy(e.event, "user");
	strcpy(e.key, "nobody");
	e.keylen = strlen(e.key);
	struct gossip_log_pos at = {1, 2, 100};
	uint64_t now = gossip_mono_ms();
	ok(gossip_runner_offer(run, &e, &at, now) == 0, "coalesce %d: an event no handler wants", coalesce_ms);
	gossip_runner_tick(run, now);
	ok(coalesce_ms || !gossip_runner_busy(run), "coalesce %d: nothing to run, no work", coalesce_ms);
	ok(settles(run), "coalesce %d: its window (if any) closes", coalesce_ms);
	strcpy(e.key, "deploy");
	e.keylen = strlen(e.key);
	at.off = 200;
	now = gossip_mono_ms();
	ok(gossip_runner_offer(run, &e, &at, now) == 0, "coalesce %d: an event a handler wants", coalesce_ms);
	ok(gossip_runner_busy(run), "coalesce %d: taken, work to do", coalesce_ms);
	gossip_runner_tick(run, now);
	ok(gossip_runner_busy(run), "coalesce %d: started or in its window, still work", coalesce_ms);
	ok(settles(run), "coalesce %d: once the handler ended, no work", coalesce_ms);
	gossip_runner_free(run);
	rm_dir(dir);
	free(dir);
}

static volatile sig_atomic_t alarmed;
static void on_alarm(int sig)
{
	(void)sig;
	alarmed = 1;
}

/* A signal ends the wait (0), so that its caller sees the flag the handler set; a write
 * to a watched name ends it with 1; other names do not. */
static void dirwatch(void)
{
	char *dir = strdup(temp_dir("t-events-watch"));
	static const char *const names[] = {"store", NULL};
	int fd = gossip_dirwatch_open(dir);
	ok(fd >= 0, "a directory watch");
	struct sigaction sa = {0};
	sa.sa_handler = on_alarm;  /* no SA_RESTART: a wait is interrupted */
	sigaction(SIGALRM, &sa, NULL);
	struct itimerval it = {{0, 0}, {0, 100000}};
	setitimer(ITIMER_REAL, &it, NULL);
	uint64_t t0 = gossip_mono_ms();
	int r = gossip_dirwatch_wait(fd, names, 20000);
	uint64_t took = gossip_mono_ms() - t0;
	ok(r == 0 && alarmed && took < 10000, "a signal ends a 20 s wait (%d after %llu ms)", r,
	   (unsigned long long)took);
	FILE *f = fopen(gossip_path(dir, "other"), "w");
	ok(f && fputs("x", f) >= 0 && fclose(f) == 0, "another file written");
	ok(gossip_dirwatch_wait(fd, names, 100) == 0, "another name does not end the wait");
	f = fopen(gossip_path(dir, "store"), "w");
	ok(f && fputs("x", f) >= 0 && fclose(f) == 0, "the store written");
	ok(gossip_dirwatch_wait(fd, names, 20000) == 1, "its name ends the wait with 1");
	close(fd);
	rm_dir(dir);
	free(dir);
}

int main(void)
{
	if (sodium_init() < 0)
		return 1;
	records();
	runner_busy(0);
	runner_busy(100);
	dirwatch();
	parses("./h", "./h", 0);
	parses("FOO=1 ./h", "FOO=1 ./h", 0);
	parses("user:deploy=./h", "./h", 1);
	parses("user=FOO=1 ./h", "FOO=1 ./h", 1);
	parses("member-join,member-leave=logger joined", "logger joined", 2);
	parses("key:app/config=./reload", "./reload", 1);
	parses("*=./all", "./all", 1);
	parses("query:uptime,user,member=./h", "./h", 3);

	refused("member-jion=./h", "member-jion: not an event filter");
	refused("user,frob=./h", "frob: not an event filter");
	refused("member:x=./h", "member:x: not an event filter");
	refused("user:=./h", "want a name after the colon");
	refused("user,=./h", "user,: not an event filter list");
	refused("user:deploy=", "want a command to run after the filters");
	refused("user:deploy=  ", "want a command");
	refused("", "want a command");
	refused("user,user,user,user,user,user,user,user,user,user,user,user,user,user,user,user,user=x",
	        "at most 16 filters");

	ok(wants("./h", "member-join", NULL), "no filter: member events");
	ok(wants("./h", "user", "deploy"), "no filter: user events");
	ok(wants("./h", "query", "uptime"), "no filter: queries");
	ok(wants("./h", "key", "app/x"), "no filter: keys");
	ok(wants("*=./h", "partition-healed", NULL), "*: every event");
	ok(wants("member=./h", "member-failed", NULL), "member: member-failed");
	ok(!wants("member=./h", "partition-healed", NULL), "member: not a partition event");
	ok(!wants("member=./h", "user", "deploy"), "member: not a user event");
	ok(wants("member-join=./h", "member-join", NULL), "member-join: member-join");
	ok(!wants("member-join=./h", "member-leave", NULL), "member-join: not member-leave");
	ok(wants("user:deploy=./h", "user", "deploy"), "user:deploy: deploy");
	ok(!wants("user:deploy=./h", "user", "deploy2"), "user:deploy: not deploy2 (a name, not a prefix)");
	ok(!wants("user:deploy=./h", "query", "deploy"), "user:deploy: not the query deploy");
	ok(wants("user=./h", "user", "anything"), "user: any user event");
	ok(wants("query:uptime=./h", "query", "uptime"), "query:uptime: uptime");
	ok(!wants("query:uptime=./h", "query", "load"), "query:uptime: not load");
	ok(wants("key:app/=./h", "key", "app/color"), "key:app/: a key under it");
	ok(!wants("key:app/=./h", "key", "web/color"), "key:app/: not another prefix");
	ok(!wants("key:app/=./h", "user", "app/x"), "key:app/: not a user event named like it");
	ok(wants("user:a,key:b=./h", "key", "bx"), "two filters: either");
	ok(wants("user:a,key:b=./h", "user", "a"), "two filters: either (2)");
	ok(!wants("user:a,key:b=./h", "user", "b"), "two filters: neither");
	return tap_done();
}
