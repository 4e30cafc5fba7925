/* t-query: queries and responses: round trips, the encodings refused, the id, the filters,
 * and the type 6 message that carries a response. */
#include "gossip.h"
#include "tap.h"
#include "fixture.h"

static struct gossip_query base(void)
{
	static struct gossip_query q;
	memset(&q, 0, sizeof q);
	snprintf(q.name, sizeof q.name, "uptime");
	q.payload = (const uint8_t *)"hi";
	q.paylen = 2;
	snprintf(q.reply, sizeof q.reply, "udp://127.0.0.1:5000");
	q.deadline = 1700000000000ull;
	q.limit = 1024;
	q.ack = 1;
	q.relay = 2;
	return q;
}

/* The value as hex: the map the test writes by hand. */
static int decodes_hex(const char *hex, struct gossip_query *q)
{
	unsigned char b[1024];
	size_t n = unhex(b, hex);
	return gossip_query_decode(b, n, q);
}

static void refused_hex(const char *hex, const char *why, const char *what)
{
	struct gossip_query q;
	ok(decodes_hex(hex, &q) < 0, "refused: %s", what);
	ok(strstr(gossip_error(), why) != NULL, "%s: says \"%s\" (%s)", what, why, gossip_error());
}

static struct gossip_member member(const char *name, const char *tag1, const char *tag2)
{
	struct gossip_member m = {0};
	snprintf(m.name, sizeof m.name, "%s", name);
	if (tag1)
		snprintf(m.tags[m.ntags++], sizeof m.tags[0], "%s", tag1);
	if (tag2)
		snprintf(m.tags[m.ntags++], sizeof m.tags[0], "%s", tag2);
	return m;
}

int main(void)
{
	if (sodium_init() < 0)
		return 2;
	struct gossip_buf b = {0};
	struct gossip_query q = base(), d;

	/* A reply address names one host: not a group, a broadcast or none, in IPv4 or
	 * IPv6, nor in IPv6's mapping of IPv4 (which leaves as the IPv4 address). */
	struct gossip_addr to;
	const char *one[] = {"udp://127.0.0.1:5000", "udp://[::1]:5000", "udp://[::ffff:127.0.0.1]:5000"};
	const char *many[] = {"udp://224.0.0.1:5000", "udp://255.255.255.255:5000", "udp://0.0.0.0:5000",
	                      "udp://[ff02::1]:5000", "udp://[::]:5000", "udp://[::ffff:224.0.0.1]:5000",
	                      "udp://[::ffff:239.255.255.250]:1900", "udp://[::ffff:255.255.255.255]:5000",
	                      "udp://[::ffff:0.0.0.0]:5000", "udp://127.0.0.1:0"};
	for (size_t i = 0; i < sizeof one / sizeof *one; i++)
		ok(gossip_addr_unicast(&to, one[i]) == 0, "%s: one host's", one[i]);
	for (size_t i = 0; i < sizeof many / sizeof *many; i++)
		ok(gossip_addr_unicast(&to, many[i]) < 0 && strstr(gossip_error(), "not one host's address"),
		   "%s: refused (%s)", many[i], gossip_error());

	/* A round trip without filters, and its exact bytes. */
	ok(gossip_query_encode(&b, &q) == 0, "a query encodes");
	ok(gossip_query_decode(b.p, b.len, &d) == 0, "and decodes (%s)", gossip_error());
	is_str(d.name, "uptime", "name");
	ok(d.paylen == 2 && !memcmp(d.payload, "hi", 2), "payload");
	is_str(d.reply, "udp://127.0.0.1:5000", "reply");
	ok(d.deadline == q.deadline && d.limit == 1024 && d.ack == 1 && d.relay == 2,
	   "deadline, limit, ack, relay");
	ok(d.nnames == 0 && d.ntags == 0, "no filters");
	/* With filters: tags come out in deterministic order whatever the order given. */
	q = base();
	q.nnames = 2;
	snprintf(q.names[0], sizeof q.names[0], "n1");
	snprintf(q.names[1], sizeof q.names[1], "n2");
	q.ntags = 2;
	snprintf(q.tags[0].tag, sizeof q.tags[0].tag, "role");
	snprintf(q.tags[0].re, sizeof q.tags[0].re, "web.*");
	snprintf(q.tags[1].tag, sizeof q.tags[1].tag, "dc");
	snprintf(q.tags[1].re, sizeof q.tags[1].re, "eu|us");
	b.len = 0;
	ok(gossip_query_encode(&b, &q) == 0, "a query with filters encodes");
	ok(gossip_query_decode(b.p, b.len, &d) == 0, "and decodes (%s)", gossip_error());
	ok(d.nnames == 2 && !strcmp(d.names[1], "n2"), "names kept in order");
	ok(d.ntags == 2 && !strcmp(d.tags[0].tag, "dc") && !strcmp(d.tags[1].re, "web.*"),
	   "tags sorted: shorter first");
	struct gossip_buf b2 = {0};
	ok(gossip_query_encode(&b2, &d) == 0 && b2.len == b.len && !memcmp(b2.p, b.p, b.len),
	   "decode then encode gives the same bytes");
	gossip_buf_free(&b2);

	/* Filters. */
	struct gossip_member web = member("n1", "role=web-1", "dc=eu");
	struct gossip_member db = member("n2", "role=db", "dc=eu");
	struct gossip_member bare = member("n1", NULL, NULL);
	ok(gossip_query_matches(&d, &web) == 1, "n1, role=web-1, dc=eu matches");
	ok(gossip_query_matches(&d, &db) == 0, "role=db does not match web.*");
	ok(gossip_query_matches(&d, &bare) == 0, "a member without the tags does not match");
	struct gossip_member other = member("n3", "role=web", "dc=us");
	ok(gossip_query_matches(&d, &other) == 0, "a name not listed does not match");
	q = base();
	q.ntags = 1;
	snprintf(q.tags[0].tag, sizeof q.tags[0].tag, "role");
	snprintf(q.tags[0].re, sizeof q.tags[0].re, "web");
	ok(gossip_query_matches(&q, &web) == 0, "the regex matches the whole value: web is not web-1");
	snprintf(q.tags[0].re, sizeof q.tags[0].re, "web-[0-9]+|db");
	ok(gossip_query_matches(&q, &web) == 1 && gossip_query_matches(&q, &db) == 1,
	   "alternation is grouped: ^(web-[0-9]+|db)$");
	q = base();
	ok(gossip_query_matches(&q, &bare) == 1, "no filters: every member");

	/* Refused at encoding. */
	q = base();
	q.relay = 6;
	b.len = 0;
	ok(gossip_query_encode(&b, &q) < 0 && strstr(gossip_error(), "relay"), "relay 6 is refused");
	q = base();
	q.limit = GOSSIP_ANSWER_MAX + 1;
	ok(gossip_query_encode(&b, &q) < 0 && strstr(gossip_error(), "limit"), "a limit over the max");
	q = base();
	snprintf(q.reply, sizeof q.reply, "tcp://127.0.0.1:1");
	ok(gossip_query_encode(&b, &q) < 0 && strstr(gossip_error(), "udp://"), "a tcp reply address");
	q = base();
	q.ntags = 1;
	snprintf(q.tags[0].tag, sizeof q.tags[0].tag, "role");
	snprintf(q.tags[0].re, sizeof q.tags[0].re, "(web");
	ok(gossip_query_encode(&b, &q) < 0 && strstr(gossip_error(), "regular expression"),
	   "a regex that does not compile (%s)", gossip_error());
	q = base();
	q.name[0] = 0;
	ok(gossip_query_encode(&b, &q) < 0, "an empty name");

	/* Refused at decoding: hand-made maps. The good one first:
	 * {1: "q", 2: h'', 3: "udp://h:1", 4: 1, 5: 0, 6: 0, 7: 0} */
#define G "016171024003697564703a2f2f683a310401050006000700"
	ok(decodes_hex("a7" G, &d) == 0, "a minimal hand-made query decodes (%s)", gossip_error());
	refused_hex("a7016171024003697564703a2f2f683a3104180105000600" "0700", "deterministic",
	            "a deadline not in its shortest form");
	refused_hex("a7024001617103697564703a2f2f683a310401050006000700", "lacks field 1",
	            "fields out of order");
	refused_hex("a6016171024003697564703a2f2f683a31040105000600", "7 to 9",
	            "a map of 6 fields (relay missing)");
	refused_hex("a7016171024003697564703a2f2f683a310401050006020700", "ack", "ack 2");
	refused_hex("a7016171024003697564703a2f2f683a310401050006000706", "relay", "relay 6");
	refused_hex("a7" G "00", "after a query", "a byte after the map");
	refused_hex("a7016171025f40ff03697564703a2f2f683a310401050006000700", "payload",
	            "an indefinite-length payload");
	refused_hex("a8" G "0880", "names", "an empty names array");
	refused_hex("a8" G "09a264726f6c6561786264636178", "out of order",
	            "tags not in deterministic order (role before dc)");
	refused_hex("a8" G "0a00", "unknown field", "an unknown field 10");
	refused_hex("a8" G "0800", "names", "names that are not an array");

	/* The id is the hash of the whole signed message. */
	struct gossip_identity id = ident(7);
	q = base();
	b.len = 0;
	gossip_query_encode(&b, &q);
	struct gossip_msg m = {0};
	struct gossip_buf sm = {0};
	m.type = GOSSIP_T_EVENT;
	m.version = 1;
	m.time = 2;
	m.key = (const uint8_t *)GOSSIP_KEY_QUERY;
	m.keylen = strlen(GOSSIP_KEY_QUERY);
	m.value = b.p;
	m.valuelen = b.len;
	m.has_value = 1;
	ok(gossip_msg_sign(&sm, &m, &id) == 0, "a query message signs");
	struct gossip_msg dm;
	ok(gossip_msg_decode(sm.p, sm.len, &dm) == 0 && gossip_query_of(&dm, &d) == 1,
	   "gossip_query_of finds it");
	uint8_t qid[16], h[16];
	gossip_query_id(qid, sm.p, sm.len);
	crypto_generichash(h, 16, sm.p, sm.len, NULL, 0);
	ok(!memcmp(qid, h, 16), "the id is BLAKE2b-128 of the signed message");
	m.value_text = 1;
	m.value = (const uint8_t *)"x";
	m.valuelen = 1;
	sm.len = 0;
	gossip_msg_sign(&sm, &m, &id);
	ok(gossip_msg_decode(sm.p, sm.len, &dm) == 0 && gossip_query_of(&dm, &d) < 0,
	   "a _query with a text value is a refused query");

	/* Responses: round trip, the message, refusals. */
	struct gossip_response r = {.kind = GOSSIP_RESP_ANSWER, .payload = (const uint8_t *)"up 3 days",
	                            .paylen = 9}, dr;
	memcpy(r.id, qid, 16);
	snprintf(r.reply, sizeof r.reply, "udp://127.0.0.1:5000");
	sm.len = 0;
	ok(gossip_response_sign(&sm, &r, &id) == 0, "a response signs");
	ok(gossip_msg_decode(sm.p, sm.len, &dm) == 0, "and decodes as a message (%s)", gossip_error());
	ok(dm.type == GOSSIP_T_RESPONSE && gossip_msg_is_response(&dm) && gossip_msg_is_probe(&dm) &&
	   gossip_msg_is_news(&dm), "type 6: probe-shaped news");
	is_str(gossip_type_name(6), "response", "its type's name");
	ok(gossip_msg_verify(&dm) == 0, "its signature verifies");
	ok(gossip_response_decode(dm.value, dm.valuelen, &dr) == 0 && dr.kind == 2 && dr.paylen == 9 &&
	   !memcmp(dr.id, qid, 16) && !strcmp(dr.reply, r.reply), "its value round-trips");
	r.kind = GOSSIP_RESP_ACK;
	b.len = 0;
	ok(gossip_response_encode(&b, &r) < 0, "an ack with a payload is refused");
	r.paylen = 0;
	ok(gossip_response_encode(&b, &r) == 0 && gossip_response_decode(b.p, b.len, &dr) == 0 &&
	   dr.kind == 1, "an ack round-trips");
	unsigned char raw[256];
	size_t n = unhex(raw, "8450" "00000000000000000000000000000000" "0340" "697564703a2f2f683a31");
	ok(gossip_response_decode(raw, n, &dr) < 0 && strstr(gossip_error(), "kind"), "kind 3 is refused");
	n = unhex(raw, "844f" "000000000000000000000000000000" "0140" "697564703a2f2f683a31");
	ok(gossip_response_decode(raw, n, &dr) < 0 && strstr(gossip_error(), "16-byte"),
	   "a 15-byte id is refused");
	/* A response message with a version, or a text value, is no response. */
	sm.len = 0;
	m = (struct gossip_msg){.type = GOSSIP_T_RESPONSE, .version = 1, .value = (const uint8_t *)"x",
	                        .valuelen = 1, .has_value = 1};
	ok(gossip_msg_sign(&sm, &m, &id) < 0 && strstr(gossip_error(), "only a type and a value"),
	   "a response with a version is refused");
	m.version = 0;
	m.value_text = 1;
	ok(gossip_msg_sign(&sm, &m, &id) < 0 && strstr(gossip_error(), "byte string"),
	   "a response with a text value is refused");
	m.type = 8;
	m.value_text = 0;
	ok(gossip_msg_sign(&sm, &m, &id) < 0 && strstr(gossip_error(), "unknown message type 8"),
	   "type 8 is still unknown");

	gossip_identity_free(&id);
	gossip_buf_free(&sm);
	gossip_buf_free(&b);
	return tap_done();
}
