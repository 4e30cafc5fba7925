/* t-events: handler specs (-x [FILTER[,FILTER...]=]COMMAND): what is a filter, what is a
 * command, and which events each spec runs for; message records (user events and key
 * changes) written by the recorder and read back, and places in the log. */
#include "fixture.h"
#include "tap.h"

#include <sys/stat.h>

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

int main(void)
{
	if (sodium_init() < 0)
		return 1;
	records();
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
