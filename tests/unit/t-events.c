/* t-events: handler specs (-x [FILTER[,FILTER...]=]COMMAND): what is a filter, what is a
 * command, and which events each spec runs for. */
#include "gossip.h"
#include "tap.h"

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

int main(void)
{
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
