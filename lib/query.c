/* query.c: queries (events named _query) and their responses (type 6): the values'
 * deterministic CBOR, the query id, and the filters a member must match to answer. */
#include "gossip.h"

#include <regex.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

enum { F_NAME = 1, F_PAYLOAD, F_REPLY, F_DEADLINE, F_LIMIT, F_ACK, F_RELAY, F_NAMES, F_TAGS };

/* Text a person will see (names, tags, the reply address): UTF-8, no control bytes. */
static int plain_text(const uint8_t *p, size_t n)
{
	if (!gossip_utf8_valid(p, n))
		return 0;
	for (size_t i = 0; i < n; i++)
		if (p[i] < 0x20 || p[i] == 0x7f)
			return 0;
	return 1;
}

static int check_text(const char *s, size_t min, size_t max, const char *what)
{
	size_t n = strlen(s);
	if (n < min || n > max || !plain_text((const uint8_t *)s, n)) {
		gossip_seterr("%s must be %zu to %zu bytes of text without control characters", what,
		              min, max);
		return -1;
	}
	return 0;
}

/* What regcomp will build for a regex, roughly: glibc copies an atom once for each
 * repetition a bound allows ("(a{1,1000}){1,1000}" is a million copies, gigabytes, for
 * 21 bytes of query), so the cost of an atom is the product of the bounds around it. */
enum { COST_MAX = 2000 };

/* A bound {m}, {m,} or {m,n} at s (just past the '{'): the copies it makes (the larger
 * number, m + 1 for {m,}; at most 100001), and its length in *len; 0 when it is no bound. */
static uint64_t bound_at(const char *s, size_t *len)
{
	uint64_t v[2] = {0, 0};
	int k = 0, digits = 0, comma = 0;
	const char *c = s;
	for (; *c && *c != '}'; c++) {
		if (*c >= '0' && *c <= '9') {
			v[k] = v[k] >= 10000 ? 100000 : v[k] * 10 + (uint64_t)(*c - '0');
			digits = 1;
		} else if (*c == ',' && !comma) {
			comma = 1;
			k = 1;
		} else
			return 0;
	}
	if (*c != '}' || !digits)
		return 0;
	*len = (size_t)(c - s) + 1;
	uint64_t most = comma && c[-1] == ',' ? v[0] + 1 : v[0] > v[1] ? v[0] : v[1];
	return most ? most : 1;
}

static int too_costly(const char *text)
{
	gossip_seterr("regular expression \"%.64s\" is too costly: its repetitions make more than %d "
	              "copies of what they repeat (nested bounds multiply)", text, COST_MAX);
	return -1;
}

/* Refuse a regex that regcomp would blow up (see above), and back-references (\1 to
 * \9: not POSIX ERE, and matching them can take exponential time). Costs only grow as
 * the regex is read, so the first one over the limit refuses it. */
static int check_cost(const char *text)
{
	uint64_t sum[GOSSIP_QUERY_REGEX_MAX + 2], last[GOSSIP_QUERY_REGEX_MAX + 2];
	int depth = 0;
	sum[0] = last[0] = 0;
	for (const char *c = text; *c;) {
		uint64_t atom = 1, times;
		size_t len = 1;
		if (*c == '\\' && c[1] >= '1' && c[1] <= '9') {
			gossip_seterr("regular expression \"%.64s\": a back-reference (\\%c) is not POSIX ERE, "
			              "and may take exponential time: refused", text, c[1]);
			return -1;
		}
		if (*c == '(' && depth <= GOSSIP_QUERY_REGEX_MAX) {
			sum[++depth] = 0;
			last[depth] = 0;
			c++;
			continue;
		}
		if (*c == '|') {
			last[depth] = 0;
			c++;
			continue;
		}
		if (*c == '*' || *c == '+' || *c == '?' || (*c == '{' && bound_at(c + 1, &len))) {
			/* A repetition of the atom before it: a+ is aa*, a{m,n} up to n copies. */
			times = *c == '+' ? 2 : *c == '{' ? bound_at(c + 1, &len) : 1;
			sum[depth] += last[depth] * (times - 1);
			last[depth] *= times;
			if (sum[depth] > COST_MAX)
				return too_costly(text);
			c += *c == '{' ? len + 1 : 1;
			continue;
		}
		if (*c == ')' && depth > 0) {
			atom = sum[depth--] + 1;
		} else if (*c == '\\' && c[1]) {
			len = 2;
		} else if (*c == '[') {
			/* A bracket expression is one atom: to its closing ']' (a ']' first is in
			 * it, and so is what [: :], [. .] and [= =] hold). */
			const char *e = c + 1;
			if (*e == '^')
				e++;
			if (*e == ']')
				e++;
			while (*e && *e != ']') {
				if (*e == '[' && (e[1] == ':' || e[1] == '.' || e[1] == '=')) {
					const char *close = strchr(e + 2, e[1]);
					e = close && close[1] == ']' ? close + 2 : e + 1;
				} else
					e++;
			}
			len = (size_t)(e - c) + (*e ? 1 : 0);
		}
		sum[depth] += atom;
		last[depth] = atom;
		if (sum[depth] > COST_MAX)
			return too_costly(text);
		c += len;
	}
	return 0;
}

/* A tag's regex as the filter uses it: anchored, so that it matches the whole value. */
static int compile(regex_t *re, const char *text)
{
	size_t n = strlen(text);
	if (n > GOSSIP_QUERY_REGEX_MAX || check_cost(text) < 0) {
		if (n > GOSSIP_QUERY_REGEX_MAX)
			gossip_seterr("a tag's regular expression is at most %d bytes", GOSSIP_QUERY_REGEX_MAX);
		return -1;
	}
	char *anchored = malloc(n + 5);
	if (!anchored) {
		gossip_seterr("out of memory");
		return -1;
	}
	snprintf(anchored, n + 5, "^(%s)$", text);
	int r = regcomp(re, anchored, REG_EXTENDED | REG_NOSUB);
	free(anchored);
	if (r != 0) {
		char why[128];
		regerror(r, re, why, sizeof why);
		gossip_seterr("regular expression \"%.64s\": %s", text, why);
		return -1;
	}
	return 0;
}

/* udp://HOST:PORT by its form (no name is looked up: a decoder must not wait on DNS). */
static int check_reply(const char *reply)
{
	if (check_text(reply, 1, GOSSIP_QUERY_REPLY_MAX, "the reply address") < 0)
		return -1;
	const char *host = reply + 6, *colon = strrchr(reply, ':');
	char *end;
	long port = colon ? strtol(colon + 1, &end, 10) : 0;
	if (strncmp(reply, "udp://", 6) != 0 || !colon || colon <= host || !colon[1] || *end || port < 1 ||
	    port > 65535 || strchr(host, '/') || strchr(host, ' ')) {
		gossip_seterr("the reply address \"%.64s\" is not udp://host:port", reply);
		return -1;
	}
	return 0;
}

/* The checks a query's fields must pass, shared by making and reading one. */
static int check_query(const struct gossip_query *q)
{
	if (check_text(q->name, 1, GOSSIP_QUERY_NAME_MAX, "a query's name") < 0 || check_reply(q->reply) < 0)
		return -1;
	if (q->paylen > GOSSIP_VALUE_MAX) {
		gossip_seterr("a query's payload is %zu bytes, at most %d", q->paylen, GOSSIP_VALUE_MAX);
		return -1;
	}
	if (q->limit > GOSSIP_ANSWER_MAX) {
		gossip_seterr("a query's limit is %llu bytes, at most %d", (unsigned long long)q->limit,
		              GOSSIP_ANSWER_MAX);
		return -1;
	}
	if (q->ack != 0 && q->ack != 1) {
		gossip_seterr("a query's ack is 0 or 1");
		return -1;
	}
	if (q->relay > GOSSIP_QUERY_RELAY_MAX) {
		gossip_seterr("a query's relay is %u, at most %d", q->relay, GOSSIP_QUERY_RELAY_MAX);
		return -1;
	}
	if (q->deadline == 0) {
		gossip_seterr("a query has no deadline");
		return -1;
	}
	if (q->nnames < 0 || q->nnames > GOSSIP_QUERY_NAMES || q->ntags < 0 || q->ntags > GOSSIP_QUERY_TAGS) {
		gossip_seterr("a query names at most %d members and %d tags", GOSSIP_QUERY_NAMES,
		              GOSSIP_QUERY_TAGS);
		return -1;
	}
	for (int i = 0; i < q->nnames; i++)
		if (check_text(q->names[i], 1, 63, "a member's name") < 0)
			return -1;
	for (int i = 0; i < q->ntags; i++) {
		regex_t re;
		if (check_text(q->tags[i].tag, 1, 190, "a tag") < 0 || strchr(q->tags[i].tag, '=') ||
		    check_text(q->tags[i].re, 0, GOSSIP_QUERY_REGEX_MAX, "a tag's regular expression") < 0) {
			if (strchr(q->tags[i].tag, '='))
				gossip_seterr("a tag has no '=' in its name");
			return -1;
		}
		for (int j = 0; j < i; j++)
			if (!strcmp(q->tags[i].tag, q->tags[j].tag)) {
				gossip_seterr("tag %.64s is filtered twice", q->tags[i].tag);
				return -1;
			}
		if (compile(&re, q->tags[i].re) < 0)
			return -1;
		regfree(&re);
	}
	return 0;
}

/* Deterministic map order (RFC 8949 §4.2.1): shorter keys first, then bytewise. */
static int cmp_key(const char *x, const char *y)
{
	size_t kx = strlen(x), ky = strlen(y);
	return kx != ky ? (kx < ky ? -1 : 1) : strcmp(x, y);
}

static int cmp_tag(const void *a, const void *b)
{
	return cmp_key(*(const char *const *)a, *(const char *const *)b);
}

static int put_uint(struct gossip_buf *b, uint64_t field, uint64_t v)
{
	return gossip_cbor_head(b, GOSSIP_MT_UINT, field) < 0 || gossip_cbor_head(b, GOSSIP_MT_UINT, v) < 0
	               ? -1
	               : 0;
}

static int put_text(struct gossip_buf *b, const char *s)
{
	return gossip_cbor_str(b, GOSSIP_MT_TSTR, s, strlen(s));
}

int gossip_query_encode(struct gossip_buf *b, const struct gossip_query *q)
{
	if (check_query(q) < 0)
		return -1;
	const char *order[GOSSIP_QUERY_TAGS];
	for (int i = 0; i < q->ntags; i++)
		order[i] = q->tags[i].tag;
	qsort(order, (size_t)q->ntags, sizeof *order, cmp_tag);
	if (gossip_cbor_head(b, GOSSIP_MT_MAP, 7 + (q->nnames > 0) + (q->ntags > 0)) < 0 ||
	    gossip_cbor_head(b, GOSSIP_MT_UINT, F_NAME) < 0 || put_text(b, q->name) < 0 ||
	    gossip_cbor_head(b, GOSSIP_MT_UINT, F_PAYLOAD) < 0 ||
	    gossip_cbor_str(b, GOSSIP_MT_BSTR, q->payload ? (const void *)q->payload : "", q->paylen) < 0 ||
	    gossip_cbor_head(b, GOSSIP_MT_UINT, F_REPLY) < 0 || put_text(b, q->reply) < 0 ||
	    put_uint(b, F_DEADLINE, q->deadline) < 0 || put_uint(b, F_LIMIT, q->limit) < 0 ||
	    put_uint(b, F_ACK, (uint64_t)q->ack) < 0 || put_uint(b, F_RELAY, q->relay) < 0)
		return -1;
	if (q->nnames) {
		if (gossip_cbor_head(b, GOSSIP_MT_UINT, F_NAMES) < 0 ||
		    gossip_cbor_head(b, GOSSIP_MT_ARRAY, (uint64_t)q->nnames) < 0)
			return -1;
		for (int i = 0; i < q->nnames; i++)
			if (put_text(b, q->names[i]) < 0)
				return -1;
	}
	if (q->ntags) {
		if (gossip_cbor_head(b, GOSSIP_MT_UINT, F_TAGS) < 0 ||
		    gossip_cbor_head(b, GOSSIP_MT_MAP, (uint64_t)q->ntags) < 0)
			return -1;
		for (int i = 0; i < q->ntags; i++) {
			const char *re = NULL;
			for (int j = 0; j < q->ntags && !re; j++)
				if (q->tags[j].tag == order[i])
					re = q->tags[j].re;
			if (put_text(b, order[i]) < 0 || put_text(b, re) < 0)
				return -1;
		}
	}
	return 0;
}

/* A text string into out (outlen bytes with its NUL); refused when longer or not text. */
static int get_text(struct gossip_cur *c, char *out, size_t outlen, const char *what)
{
	struct gossip_ev ev;
	if (gossip_cur_next(c, &ev, what) < 0)
		return -1;
	if (ev.type != GOSSIP_EV_TSTR) {
		gossip_seterr("%s is not a definite-length text string", what);
		return -1;
	}
	if (ev.len >= outlen || !plain_text(ev.data, ev.len)) {
		gossip_seterr("%s is longer than %zu bytes or not text", what, outlen - 1);
		return -1;
	}
	memcpy(out, ev.data, ev.len);
	out[ev.len] = 0;
	return 0;
}

static int get_uint(struct gossip_cur *c, uint64_t *v, const char *what)
{
	struct gossip_ev ev;
	if (gossip_cur_next(c, &ev, what) < 0)
		return -1;
	if (ev.type != GOSSIP_EV_UINT) {
		gossip_seterr("%s is not an unsigned integer", what);
		return -1;
	}
	*v = ev.u;
	return 0;
}

int gossip_query_decode(const uint8_t *p, size_t n, struct gossip_query *q)
{
	struct gossip_cur c = {p, n, 0};
	struct gossip_ev ev;
	uint64_t v, last = 0;
	memset(q, 0, sizeof *q);
	if (gossip_cur_next(&c, &ev, "query") < 0)
		return -1;
	if (ev.type != GOSSIP_EV_MAP || ev.u < 7 || ev.u > 9) {
		gossip_seterr("a query is a map of 7 to 9 fields");
		return -1;
	}
	uint64_t fields = ev.u;
	for (uint64_t i = 0; i < fields; i++) {
		if (get_uint(&c, &v, "a query's field") < 0)
			return -1;
		if (v < F_NAME || v > F_TAGS) {
			gossip_seterr("a query has an unknown field %llu", (unsigned long long)v);
			return -1;
		}
		if (v <= last) {
			gossip_seterr("a query's fields are out of order or repeated (field %llu)",
			              (unsigned long long)v);
			return -1;
		}
		if (v != last + 1 && (v <= F_RELAY || last < F_RELAY)) {
			gossip_seterr("a query lacks field %llu", (unsigned long long)last + 1);
			return -1;
		}
		last = v;
		switch (v) {
		case F_NAME:
			if (get_text(&c, q->name, sizeof q->name, "a query's name") < 0)
				return -1;
			break;
		case F_PAYLOAD:
			if (gossip_cur_next(&c, &ev, "a query's payload") < 0)
				return -1;
			if (ev.type != GOSSIP_EV_BSTR) {
				gossip_seterr("a query's payload is not a definite-length byte string");
				return -1;
			}
			q->payload = ev.data;
			q->paylen = ev.len;
			break;
		case F_REPLY:
			if (get_text(&c, q->reply, sizeof q->reply, "a query's reply address") < 0)
				return -1;
			break;
		case F_DEADLINE:
			if (get_uint(&c, &q->deadline, "a query's deadline") < 0)
				return -1;
			break;
		case F_LIMIT:
			if (get_uint(&c, &q->limit, "a query's limit") < 0)
				return -1;
			break;
		case F_ACK:
			if (get_uint(&c, &v, "a query's ack") < 0)
				return -1;
			if (v > 1) {
				gossip_seterr("a query's ack is 0 or 1");
				return -1;
			}
			q->ack = (int)v;
			break;
		case F_RELAY:
			if (get_uint(&c, &v, "a query's relay") < 0)
				return -1;
			if (v > GOSSIP_QUERY_RELAY_MAX) {
				gossip_seterr("a query's relay is %llu, at most %d", (unsigned long long)v,
				              GOSSIP_QUERY_RELAY_MAX);
				return -1;
			}
			q->relay = (unsigned)v;
			break;
		case F_NAMES:
			if (gossip_cur_next(&c, &ev, "a query's names") < 0)
				return -1;
			if (ev.type != GOSSIP_EV_ARRAY || ev.u < 1 || ev.u > GOSSIP_QUERY_NAMES) {
				gossip_seterr("a query's names are an array of 1 to %d names", GOSSIP_QUERY_NAMES);
				return -1;
			}
			q->nnames = (int)ev.u;
			for (int k = 0; k < q->nnames; k++)
				if (get_text(&c, q->names[k], sizeof q->names[k], "a member's name") < 0)
					return -1;
			break;
		case F_TAGS:
			if (gossip_cur_next(&c, &ev, "a query's tags") < 0)
				return -1;
			if (ev.type != GOSSIP_EV_MAP || ev.u < 1 || ev.u > GOSSIP_QUERY_TAGS) {
				gossip_seterr("a query's tags are a map of 1 to %d tags", GOSSIP_QUERY_TAGS);
				return -1;
			}
			q->ntags = (int)ev.u;
			for (int k = 0; k < q->ntags; k++) {
				if (get_text(&c, q->tags[k].tag, sizeof q->tags[k].tag, "a tag") < 0 ||
				    get_text(&c, q->tags[k].re, sizeof q->tags[k].re, "a tag's regular expression") < 0)
					return -1;
				if (k && cmp_key(q->tags[k - 1].tag, q->tags[k].tag) >= 0) {
					gossip_seterr("a query's tags are out of order or repeated (%.64s)",
					              q->tags[k].tag);
					return -1;
				}
			}
			break;
		}
	}
	if (c.pos != n) {
		gossip_seterr("%zu bytes after a query", n - c.pos);
		return -1;
	}
	return check_query(q);
}

int gossip_query_of(const struct gossip_msg *m, struct gossip_query *q)
{
	if (m->type != GOSSIP_T_EVENT || !gossip_msg_key_is(m, GOSSIP_KEY_QUERY))
		return 0;
	if (!m->has_value || m->value_text) {
		gossip_seterr("a query's value is not a byte string");
		return -1;
	}
	return gossip_query_decode(m->value, m->valuelen, q) < 0 ? -1 : 1;
}

void gossip_query_id(uint8_t id[GOSSIP_QUERY_ID_LEN], const uint8_t *p, size_t n)
{
	crypto_generichash(id, GOSSIP_QUERY_ID_LEN, p, n, NULL, 0);
}

int gossip_query_matches(const struct gossip_query *q, const struct gossip_member *m)
{
	if (q->nnames) {
		int found = 0;
		for (int i = 0; i < q->nnames && !found; i++)
			found = !strcmp(q->names[i], m->name);
		if (!found)
			return 0;
	}
	for (int i = 0; i < q->ntags; i++) {
		const char *v = gossip_member_tag(m, q->tags[i].tag);
		regex_t re;
		if (!v)
			return 0;
		if (compile(&re, q->tags[i].re) < 0)
			return -1;
		int r = regexec(&re, v, 0, NULL, 0);
		regfree(&re);
		if (r != 0)
			return 0;
	}
	return 1;
}

int gossip_response_encode(struct gossip_buf *b, const struct gossip_response *r)
{
	if (r->kind != GOSSIP_RESP_ACK && r->kind != GOSSIP_RESP_ANSWER) {
		gossip_seterr("a response is an ack (1) or an answer (2)");
		return -1;
	}
	if ((r->kind == GOSSIP_RESP_ACK && r->paylen) || r->paylen > GOSSIP_ANSWER_MAX) {
		gossip_seterr("an answer is at most %d bytes; an ack has none", GOSSIP_ANSWER_MAX);
		return -1;
	}
	if (check_reply(r->reply) < 0)
		return -1;
	if (gossip_cbor_head(b, GOSSIP_MT_ARRAY, 4) < 0 ||
	    gossip_cbor_str(b, GOSSIP_MT_BSTR, r->id, GOSSIP_QUERY_ID_LEN) < 0 ||
	    gossip_cbor_head(b, GOSSIP_MT_UINT, (uint64_t)r->kind) < 0 ||
	    gossip_cbor_str(b, GOSSIP_MT_BSTR, r->payload ? (const void *)r->payload : "", r->paylen) < 0 ||
	    put_text(b, r->reply) < 0)
		return -1;
	return 0;
}

int gossip_response_decode(const uint8_t *p, size_t n, struct gossip_response *r)
{
	struct gossip_cur c = {p, n, 0};
	struct gossip_ev ev;
	uint64_t kind;
	memset(r, 0, sizeof *r);
	if (gossip_cur_next(&c, &ev, "response") < 0)
		return -1;
	if (ev.type != GOSSIP_EV_ARRAY || ev.u != 4) {
		gossip_seterr("a response is an array of 4: [id, kind, payload, reply]");
		return -1;
	}
	if (gossip_cur_next(&c, &ev, "a response's id") < 0)
		return -1;
	if (ev.type != GOSSIP_EV_BSTR || ev.len != GOSSIP_QUERY_ID_LEN) {
		gossip_seterr("a response's id is not a %d-byte string", GOSSIP_QUERY_ID_LEN);
		return -1;
	}
	memcpy(r->id, ev.data, GOSSIP_QUERY_ID_LEN);
	if (get_uint(&c, &kind, "a response's kind") < 0)
		return -1;
	if (kind != GOSSIP_RESP_ACK && kind != GOSSIP_RESP_ANSWER) {
		gossip_seterr("a response's kind is 1 (ack) or 2 (answer), not %llu", (unsigned long long)kind);
		return -1;
	}
	r->kind = (int)kind;
	if (gossip_cur_next(&c, &ev, "a response's payload") < 0)
		return -1;
	if (ev.type != GOSSIP_EV_BSTR) {
		gossip_seterr("a response's payload is not a definite-length byte string");
		return -1;
	}
	r->payload = ev.data;
	r->paylen = ev.len;
	if (get_text(&c, r->reply, sizeof r->reply, "a response's reply address") < 0)
		return -1;
	if (c.pos != n) {
		gossip_seterr("%zu bytes after a response", n - c.pos);
		return -1;
	}
	if ((r->kind == GOSSIP_RESP_ACK && r->paylen) || r->paylen > GOSSIP_ANSWER_MAX) {
		gossip_seterr("an answer is at most %d bytes; an ack has none", GOSSIP_ANSWER_MAX);
		return -1;
	}
	return check_reply(r->reply);
}

int gossip_response_sign(struct gossip_buf *b, const struct gossip_response *r,
                         const struct gossip_identity *id)
{
	struct gossip_buf v = {0};
	struct gossip_msg m = {0};
	int rc = -1;
	if (gossip_response_encode(&v, r) < 0)
		goto out;
	m.type = GOSSIP_T_RESPONSE;
	m.value = v.p;
	m.valuelen = v.len;
	m.has_value = 1;
	rc = gossip_msg_sign(b, &m, id);
out:
	gossip_buf_free(&v);
	return rc;
}
