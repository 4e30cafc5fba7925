/* gossip-query: ask the cluster a question and gather the members' answers (ask), or
 * answer the questions that reach a node's store by running its handlers (answer). */
#include "gossip.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static void usage(int code)
{
	fprintf(code ? stderr : stdout,
	        "usage: gossip-query [-jv] [-d dir] [-n name] ... [-t tag=regex] ... [-T seconds]\n"
	        "                    [-l bytes] [-R relay] [--no-ack] [-a host] [-p host:port]\n"
	        "                    [ask] name [payload | -]\n"
	        "       gossip-query [-d dir] answer [-x handler] ...\n");
	exit(code);
}

enum { HANDLERS_MAX = 32, RUNNING_MAX = 8, DGRAM_MAX = 65507 };

/* ---- both verbs: member records from the store, sending responses ---- */

struct found {
	struct gossip_member *m;
	int ok;
};

static int first_record(void *ctx, const struct gossip_entry *e, const uint8_t *p)
{
	struct found *f = ctx;
	struct gossip_msg m;
	f->ok = gossip_msg_decode(p, e->len, &m) == 0 && m.type == GOSSIP_T_SET &&
	        gossip_msg_key_is(&m, GOSSIP_KEY_MEMBER) && m.has_value &&
	        gossip_member_decode(m.value, m.valuelen, f->m) == 0;
	return 1;
}

/* The member record pk signed, as the store holds it now: 1 found, 0 not (none, a leave,
 * or a signer no longer trusted), -1 the store could not be read. */
static int member_record(struct gossip_store *st, const uint8_t pk[32], struct gossip_member *out)
{
	struct gossip_msg k = {0};
	uint8_t slot[16];
	struct found f = {out, 0};
	k.type = GOSSIP_T_SET;
	memcpy(k.origin, pk, 32);
	k.key = (const uint8_t *)GOSSIP_KEY_MEMBER;
	k.keylen = strlen(GOSSIP_KEY_MEMBER);
	gossip_slot(slot, &k);
	if (gossip_store_lock(st) < 0)
		return -1;
	const struct gossip_entry *e = gossip_store_find(st, slot);
	if (e && e->type == GOSSIP_T_SET)
		gossip_store_each(st, e->off, first_record, &f);
	gossip_store_unlock(st);
	return f.ok;
}

static struct gossip_store *open_store(const char *dir, struct gossip_trust *trust)
{
	struct gossip_store_opts o = gossip_store_defaults;
	o.readonly = 1;
	struct gossip_store *st = gossip_store_open(dir, &o);
	if (st)
		gossip_store_set_visible(st, gossip_trust_has, trust);
	return st;
}

/* ---- ask ---- */

struct answerer {
	uint8_t pk[32];
	char name[64];
	int asked, acked, answered;
};

struct asker {
	const char *dir;
	int json, verbose;
	struct gossip_query q;
	uint8_t id[GOSSIP_QUERY_ID_LEN];
	struct gossip_trust trust;
	struct gossip_keyring keys;
	struct gossip_store *st;
	struct answerer *who;
	size_t nwho;
	size_t asked, acked, answered, refused, dups;
	int said[5];  /* each reason for refusing, said once */
	uint64_t start;  /* gossip_mono_ms() when the query left */
};

static struct answerer *answerer_of(struct asker *a, const uint8_t pk[32], int make)
{
	for (size_t i = 0; i < a->nwho; i++)
		if (!memcmp(a->who[i].pk, pk, 32))
			return &a->who[i];
	if (!make)
		return NULL;
	struct answerer *v = realloc(a->who, (a->nwho + 1) * sizeof *v);
	if (!v)
		gossip_die(GOSSIP_EXIT_ERR, "out of memory");
	a->who = v;
	memset(&v[a->nwho], 0, sizeof *v);
	memcpy(v[a->nwho].pk, pk, 32);
	return &v[a->nwho++];
}

/* The members asked: those alive in this node's table that match the filters. */
static void count_asked(struct asker *a)
{
	struct gossip_peers t;
	if (gossip_peers_load(&t, a->dir) < 0) {
		gossip_warn("%s", gossip_error());
		return;
	}
	for (size_t i = 0; i < t.n; i++) {
		const struct gossip_peer *p = &t.v[i];
		if (p->state != GOSSIP_P_ALIVE || gossip_query_matches(&a->q, &p->info) != 1)
			continue;
		struct answerer *w = answerer_of(a, p->pk, 1);
		snprintf(w->name, sizeof w->name, "%s", p->info.name);
		w->asked = 1;
		a->asked++;
	}
	gossip_peers_free(&t);
}

enum { R_UNTRUSTED, R_OTHER_QUERY, R_FILTERS, R_LIMIT, R_MALFORMED };

static void refuse(struct asker *a, int reason, const char *who, const char *why)
{
	a->refused++;
	if (a->said[reason]++)
		return;
	gossip_warn("refused a response%s%s: %s (each reason is said once; the summary counts them)",
	            who ? " from " : "", who ? who : "", why);
}

/* An answer as text on one line: a trailing newline dropped, control bytes, backslashes
 * and bytes that are not UTF-8 escaped (\n, \t, \\, \xHH). */
static void put_safe(const uint8_t *p, size_t n)
{
	if (n && p[n - 1] == '\n')
		n--;
	for (size_t i = 0; i < n;) {
		size_t k = 1;
		uint8_t c = p[i];
		if (c >= 0x80) {
			k = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : 2;
			if (i + k > n || !gossip_utf8_valid(p + i, k))
				k = 0;
		}
		if (k == 0) {
			printf("\\x%02x", c);
			i++;
			continue;
		}
		if (c == '\\')
			fputs("\\\\", stdout);
		else if (c == '\n')
			fputs("\\n", stdout);
		else if (c == '\t')
			fputs("\\t", stdout);
		else if (c < 0x20 || c == 0x7f)
			printf("\\x%02x", c);
		else
			fwrite(p + i, 1, k, stdout);
		i += k;
	}
}

static void print_response(struct asker *a, const struct answerer *w, const struct gossip_response *r)
{
	uint64_t ms = gossip_age_ms(gossip_mono_ms(), a->start);
	if (a->json) {
		char b64[45];
		gossip_b64(b64, w->pk, 32);
		printf("{\"type\":\"%s\",\"name\":", r->kind == GOSSIP_RESP_ACK ? "ack" : "answer");
		gossip_put_string(stdout, (const uint8_t *)w->name, strlen(w->name), 0);
		printf(",\"id\":\"%s\"", b64);
		if (r->kind == GOSSIP_RESP_ANSWER && gossip_utf8_valid(r->payload, r->paylen)) {
			fputs(",\"answer\":", stdout);
			gossip_put_string(stdout, r->payload, r->paylen, 0);
		} else if (r->kind == GOSSIP_RESP_ANSWER) {
			char *v = malloc(sodium_base64_ENCODED_LEN(r->paylen, sodium_base64_VARIANT_ORIGINAL));
			if (!v)
				gossip_die(GOSSIP_EXIT_ERR, "out of memory");
			gossip_b64(v, r->payload, r->paylen);
			printf(",\"answer64\":\"%s\"", v);
			free(v);
		}
		printf(",\"ms\":%llu}\n", (unsigned long long)ms);
	} else if (r->kind == GOSSIP_RESP_ANSWER) {
		fputs(w->name, stdout);
		putchar('\t');
		put_safe(r->payload, r->paylen);
		putchar('\n');
	} else if (a->verbose) {
		fprintf(stderr, "%s: %s acked after %llu ms\n", gossip_progname, w->name,
		        (unsigned long long)ms);
	}
	fflush(stdout);
}

/* One message of a datagram. */
static void take_response(struct asker *a, const uint8_t *p, size_t n)
{
	struct gossip_msg m;
	const struct gossip_signer *sg;
	struct gossip_response r;
	struct gossip_member rec;
	char id[9];
	if (gossip_check(p, n, &a->trust, &m, &sg) != GOSSIP_V_OK) {
		refuse(a, R_UNTRUSTED, NULL, gossip_error());
		return;
	}
	gossip_short_id(id, m.origin);
	const char *who = sg && sg->name ? sg->name : id;
	if (!gossip_msg_is_response(&m) || gossip_response_decode(m.value, m.valuelen, &r) < 0) {
		refuse(a, R_MALFORMED, who, gossip_msg_is_response(&m) ? gossip_error() : "not a response");
		return;
	}
	if (memcmp(r.id, a->id, sizeof a->id) != 0) {
		refuse(a, R_OTHER_QUERY, who, "it answers another query (not this query's id)");
		return;
	}
	if (r.paylen > a->q.limit) {
		refuse(a, R_LIMIT, who, "its answer is over the limit (-l)");
		return;
	}
	int found = member_record(a->st, m.origin, &rec);
	if (found < 0)
		gossip_die(GOSSIP_EXIT_ERR, "store: %s", gossip_error());
	if (!found || gossip_query_matches(&a->q, &rec) != 1) {
		refuse(a, R_FILTERS, who, found ? "the member does not match the query's filters"
		                                : "no member record of it in the store");
		return;
	}
	struct answerer *w = answerer_of(a, m.origin, 1);
	if (!w->name[0])
		snprintf(w->name, sizeof w->name, "%s", rec.name);
	int *seen = r.kind == GOSSIP_RESP_ACK ? &w->acked : &w->answered;
	if (*seen) {
		a->dups++;  /* a relayed copy, or a replay: nothing new */
		return;
	}
	*seen = 1;
	if (r.kind == GOSSIP_RESP_ACK)
		a->acked++;
	else
		a->answered++;
	print_response(a, w, &r);
}

static void take_datagram(struct asker *a, const uint8_t *p, size_t n)
{
	static struct gossip_buf plain;
	if (a->keys.n) {
		plain.len = 0;
		if (gossip_open_sealed(&plain, &a->keys, p, n) < 0) {
			refuse(a, R_UNTRUSTED, NULL, "a datagram not sealed with a cluster key this node holds");
			return;
		}
		p = plain.p;
		n = plain.len;
	}
	size_t at = 0, len;
	while (at < n && gossip_cbor_scan(p + at, n - at, &gossip_msg_limits, NULL, &len) == GOSSIP_SCAN_OK) {
		take_response(a, p + at, len);
		at += len;
	}
	if (at < n)
		refuse(a, R_MALFORMED, NULL, "bytes that are no message");
}

static int all_answered(const struct asker *a)
{
	for (size_t i = 0; i < a->nwho; i++)
		if (a->who[i].asked && !a->who[i].answered)
			return 0;
	return 1;
}

static void summary(struct asker *a)
{
	uint64_t ms = gossip_age_ms(gossip_mono_ms(), a->start);
	char hex[2 * GOSSIP_QUERY_ID_LEN + 1];
	gossip_hex(hex, a->id, sizeof a->id);
	if (a->json) {
		printf("{\"type\":\"summary\",\"query\":\"%s\",\"asked\":%zu,\"acked\":%zu,\"answered\":%zu,"
		       "\"refused\":%zu,\"duplicates\":%zu,\"ms\":%llu,\"missing\":[",
		       hex, a->asked, a->acked, a->answered, a->refused, a->dups, (unsigned long long)ms);
		int first = 1;
		for (size_t i = 0; i < a->nwho; i++)
			if (a->who[i].asked && !a->who[i].answered) {
				if (!first)
					putchar(',');
				first = 0;
				gossip_put_string(stdout, (const uint8_t *)a->who[i].name, strlen(a->who[i].name), 0);
			}
		printf("]}\n");
		fflush(stdout);
		return;
	}
	fprintf(stderr, "%s: query %.16s: %zu asked, %zu acked, %zu answered in %llu ms", gossip_progname,
	        hex, a->asked, a->acked, a->answered, (unsigned long long)ms);
	if (a->refused)
		fprintf(stderr, ", %zu refused", a->refused);
	const char *sep = "; no answer from ";
	for (size_t i = 0; i < a->nwho; i++)
		if (a->who[i].asked && !a->who[i].answered) {
			fprintf(stderr, "%s%s", sep, a->who[i].name);
			sep = ", ";
		}
	fputc('\n', stderr);
}


/* The host part of udp://HOST:PORT (brackets kept for IPv6). */
static void host_of(const char *addr, char *out, size_t outlen)
{
	const char *h = strstr(addr, "://");
	h = h ? h + 3 : addr;
	const char *colon = strrchr(h, ':');
	size_t k = colon ? (size_t)(colon - h) : strlen(h);
	snprintf(out, outlen, "%.*s", (int)k, h);
}

static int wildcard(const char *host)
{
	return !*host || !strcmp(host, "0.0.0.0") || !strcmp(host, "[::]") || !strcmp(host, "*");
}

/* The host the members reach this node at: where it listens, or what it announced. */
static int reply_host(const char *dir, char *out, size_t outlen)
{
	char addr[300];
	if (gossip_node_udp(dir, addr, sizeof addr)) {
		host_of(addr, out, outlen);
		if (!wildcard(out))
			return 1;
	}
	struct gossip_peers t;
	if (gossip_peers_load(&t, dir) < 0)
		return 0;
	int r = 0;
	for (size_t i = 0; i < t.n && !r; i++) {
		const char *a = t.v[i].self ? gossip_member_addr(&t.v[i].info, GOSSIP_UDP) : NULL;
		if (a) {
			host_of(a, out, outlen);
			r = !wildcard(out);
		}
	}
	gossip_peers_free(&t);
	return r;
}

struct ask_opts {
	const char *dir, *payload, *advertise, *peer;
	int json, verbose, noack;
	double timeout;
	long limit, relay;
};

static int ask(const struct ask_opts *o, struct gossip_query *q)
{
	struct asker a = {.dir = o->dir, .json = o->json, .verbose = o->verbose};
	struct gossip_author me;
	struct gossip_buf payload = {0}, value = {0}, msg = {0};
	char host[300], to[320], bind[400];
	struct gossip_addr here;

	if (o->payload && strcmp(o->payload, "-") == 0) {
		if (gossip_read_file("-", GOSSIP_VALUE_MAX, &payload) < 0)
			gossip_die(GOSSIP_EXIT_ERR, "payload: %s", gossip_error());
	} else if (o->payload && gossip_buf_put(&payload, o->payload, strlen(o->payload)) < 0)
		gossip_die(GOSSIP_EXIT_ERR, "out of memory");
	if (o->peer)
		snprintf(to, sizeof to, "udp://%s", o->peer);
	else if (!gossip_node_udp(o->dir, to, sizeof to))
		gossip_die(GOSSIP_EXIT_ERR, "%s: no node listens here (no %s/listening): start one with "
		           "gossip-node -d %s, or ask through a member with -p host:port", o->dir, o->dir, o->dir);
	if (o->advertise)
		snprintf(host, sizeof host, "%s", o->advertise);
	else if (!reply_host(o->dir, host, sizeof host))
		gossip_die(GOSSIP_EXIT_ERR, "%s: no address of this node the members reach: give the host "
		           "to take answers on with -a host", o->dir);
	snprintf(bind, sizeof bind, "udp://%s:0", host);
	if (gossip_addr_parse(&here, bind) < 0)
		gossip_die(GOSSIP_EXIT_ERR, "-a %s: %s", host, gossip_error());
	int fd = gossip_listen_on(&here);
	if (fd < 0)
		gossip_die(GOSSIP_EXIT_ERR, "%s: %s", bind, gossip_error());
	gossip_addr_text(&here);

	if (gossip_trust_load(&a.trust, o->dir) < 0)
		gossip_die(GOSSIP_EXIT_ERR, "trusted: %s", gossip_error());
	if (gossip_keyring_load(&a.keys, o->dir) < 0)
		gossip_die(GOSSIP_EXIT_ERR, "keyring: %s", gossip_error());
	if (!(a.st = open_store(o->dir, &a.trust)))
		gossip_die(GOSSIP_EXIT_ERR, "store: %s", gossip_error());

	snprintf(q->reply, sizeof q->reply, "%s", here.text);
	q->payload = payload.p;
	q->paylen = payload.len;
	q->deadline = gossip_now_ms() + (uint64_t)(o->timeout * 1000);
	q->limit = (uint64_t)o->limit;
	q->ack = !o->noack;
	q->relay = (unsigned)o->relay;
	if (gossip_query_encode(&value, q) < 0)
		gossip_die(GOSSIP_EXIT_ERR, "%s", gossip_error());
	if (value.len > GOSSIP_VALUE_MAX)
		gossip_die(GOSSIP_EXIT_ERR, "the query is %zu bytes, at most %d: a smaller payload", value.len,
		           GOSSIP_VALUE_MAX);
	a.q = *q;

	if (gossip_author_open(&me, o->dir, 1) < 0)
		gossip_die(GOSSIP_EXIT_ERR, "%s", gossip_error());
	struct gossip_msg m = {0};
	m.type = GOSSIP_T_EVENT;
	m.key = (const uint8_t *)GOSSIP_KEY_QUERY;
	m.keylen = strlen(GOSSIP_KEY_QUERY);
	m.value = value.p;
	m.valuelen = value.len;
	m.has_value = 1;
	if (gossip_author_sign(&me, &msg, &m) < 0)
		gossip_die(GOSSIP_EXIT_ERR, "%s", gossip_error());
	if (gossip_author_close(&me) < 0)
		gossip_die(GOSSIP_EXIT_ERR, "%s", gossip_error());
	gossip_query_id(a.id, msg.p, msg.len);
	a.q.payload = NULL;  /* a.q is for filters and the limit */
	count_asked(&a);
	if (!a.asked)
		gossip_warn("no live member in this node's table matches the query: waiting for answers "
		            "from members it does not know yet");

	/* The node stores it and spreads it by rumor: a datagram, or TCP when it is larger. */
	struct gossip_out out;
	gossip_out_init(&out, 1200, 5000, 0, &a.keys);
	if (gossip_out_add(&out, to) < 0)
		gossip_die(GOSSIP_EXIT_ERR, "%s", gossip_error());
	if (gossip_out_queue(&out, msg.p, msg.len) < 0 || gossip_out_flush(&out) > 0)
		gossip_die(GOSSIP_EXIT_ERR, "%s: the query could not be sent: %s", to, gossip_error());
	gossip_out_close(&out);
	a.start = gossip_mono_ms();

	uint64_t end = a.start + (uint64_t)(o->timeout * 1000);
	uint8_t *dgram = malloc(65536);
	if (!dgram)
		gossip_die(GOSSIP_EXIT_ERR, "out of memory");
	while (!(a.asked && all_answered(&a))) {
		uint64_t now = gossip_mono_ms();
		if (now >= end)
			break;
		struct pollfd p = {fd, POLLIN, 0};
		if (poll(&p, 1, (int)(end - now)) <= 0)
			continue;
		ssize_t k = recv(fd, dgram, 65536, 0);
		if (k > 0)
			take_datagram(&a, dgram, (size_t)k);
	}
	summary(&a);
	int status = a.asked && all_answered(&a) ? GOSSIP_EXIT_OK : GOSSIP_EXIT_NO;
	if (!a.asked && a.answered)
		status = GOSSIP_EXIT_OK;
	free(dgram);
	close(fd);
	free(a.who);
	gossip_store_close(a.st);
	gossip_trust_free(&a.trust);
	gossip_keyring_free(&a.keys);
	gossip_buf_free(&payload);
	gossip_buf_free(&value);
	gossip_buf_free(&msg);
	return status;
}

/* ---- answer ---- */

struct seen_query {
	uint8_t id[GOSSIP_QUERY_ID_LEN];
	uint64_t deadline;  /* 0: an empty cell */
};

struct responder {
	const char *dir;
	struct gossip_handler h[HANDLERS_MAX];
	int nh;
	struct gossip_identity me;
	struct gossip_trust trust;
	struct gossip_keyring keys;
	struct gossip_store *st;
	struct gossip_store_cursor cur;
	struct seen_query *seen;  /* open addressing by a keyed hash of the id */
	size_t nseen, seencap;  /* seencap a power of two, at least twice nseen */
	uint8_t seenkey[crypto_shorthash_KEYBYTES];
	uint64_t swept;  /* when the expired ones were last dropped */
	pid_t running[RUNNING_MAX];
	int first_pass;  /* queries stored before this process started are not answered */
	struct gossip_buf found;  /* the queries a walk of the store found */
	struct gossip_rate refusals;
};

static volatile sig_atomic_t stopping;
static void on_stop(int sig)
{
	(void)sig;
	stopping = 1;
}

static struct seen_query *seen_cell(struct seen_query *t, size_t cap, const uint8_t key[crypto_shorthash_KEYBYTES],
                                    const uint8_t id[GOSSIP_QUERY_ID_LEN])
{
	uint8_t h[crypto_shorthash_BYTES];
	uint64_t x;
	crypto_shorthash(h, id, GOSSIP_QUERY_ID_LEN, key);
	memcpy(&x, h, sizeof x);
	for (size_t c = (size_t)x & (cap - 1);; c = (c + 1) & (cap - 1))
		if (!t[c].deadline || !memcmp(t[c].id, id, GOSSIP_QUERY_ID_LEN))
			return &t[c];
}

/* The table again, without what expired, room for twice as many: 0, or -1 (no memory). */
static int seen_rebuild(struct responder *r, uint64_t now)
{
	size_t live = 0, cap = 64;
	for (size_t i = 0; i < r->seencap; i++)
		live += r->seen[i].deadline >= now;
	while (cap < 4 * (live + 1))
		cap *= 2;
	struct seen_query *t = calloc(cap, sizeof *t);
	if (!t)
		return -1;
	if (!r->seen)
		randombytes_buf(r->seenkey, sizeof r->seenkey);
	for (size_t i = 0; i < r->seencap; i++)
		if (r->seen[i].deadline >= now)
			*seen_cell(t, cap, r->seenkey, r->seen[i].id) = r->seen[i];
	free(r->seen);
	r->seen = t;
	r->seencap = cap;
	r->nseen = live;
	r->swept = now;
	return 0;
}

/* Remembered until its deadline: after a compaction the store shows it again. A lookup
 * costs the same however many are remembered (a member's flood of queries); the expired
 * are dropped at most once a second, or when the table is full. */
static int seen_before(struct responder *r, const uint8_t id[GOSSIP_QUERY_ID_LEN], uint64_t deadline,
                       uint64_t now)
{
	if (r->seen) {
		struct seen_query *c = seen_cell(r->seen, r->seencap, r->seenkey, id);
		if (c->deadline) {
			if (c->deadline < deadline)
				c->deadline = deadline;
			return 1;
		}
	}
	if ((!r->seen || 2 * (r->nseen + 1) > r->seencap || gossip_age_ms(now, r->swept) >= 1000) && seen_rebuild(r, now) < 0)
		return 0;
	struct seen_query *c = seen_cell(r->seen, r->seencap, r->seenkey, id);
	memcpy(c->id, id, GOSSIP_QUERY_ID_LEN);
	c->deadline = deadline ? deadline : 1;
	r->nseen++;
	return 0;
}

/* Sign a response and send it to the reply address and to relay random live members. */
static void respond(struct responder *r, const struct gossip_query *q, const uint8_t id[16], int kind,
                    const uint8_t *p, size_t n)
{
	struct gossip_response resp = {.kind = kind, .payload = p, .paylen = n};
	struct gossip_buf msg = {0};
	struct gossip_out out;
	struct gossip_addr to;
	if (gossip_addr_unicast(&to, q->reply) < 0)
		return;  /* on_query said why */
	memcpy(resp.id, id, GOSSIP_QUERY_ID_LEN);
	snprintf(resp.reply, sizeof resp.reply, "%s", q->reply);
	if (gossip_response_sign(&msg, &resp, &r->me) < 0) {
		gossip_warn("query %s: %s", q->name, gossip_error());
		return;
	}
	gossip_out_init(&out, DGRAM_MAX, 2000, 0, &r->keys);
	if (gossip_out_add(&out, to.text) < 0) {
		gossip_warn("query %s: %s", q->name, gossip_error());
		gossip_buf_free(&msg);
		return;
	}
	if (q->relay) {
		struct gossip_peers t;
		struct gossip_peer *pick[GOSSIP_QUERY_RELAY_MAX];
		struct gossip_peers_cfg cfg = gossip_peers_defaults;
		cfg.dead_chance = 0;
		if (gossip_peers_load(&t, r->dir) == 0) {
			size_t got = gossip_peers_pick(&t, &cfg, q->relay, pick);
			for (size_t i = 0; i < got; i++) {
				const char *a = gossip_member_addr(&pick[i]->info, GOSSIP_UDP);
				if (a)
					gossip_out_add(&out, a);
			}
			gossip_peers_free(&t);
		}
	}
	gossip_out_queue(&out, msg.p, msg.len);
	gossip_out_flush(&out);
	gossip_out_close(&out);
	gossip_buf_free(&msg);
}

static void set_env(const char *name, const char *value)
{
	setenv(name, value, 1);
}

/* The environment of gossip(7)'s handlers, for a query. */
static void query_env(struct responder *r, const struct gossip_member *self, const struct gossip_msg *m,
                      const struct gossip_query *q, const uint8_t id[16])
{
	char b64[45], hex[33], num[32], var[256], tags[GOSSIP_MAX_TAGS * 194] = "";
	const struct gossip_signer *sg = gossip_trust_find(&r->trust, m->origin);
	set_env("GOSSIP_EVENT", "query");
	set_env("GOSSIP_DIR", r->dir);
	set_env("GOSSIP_SELF_NAME", self->name);
	gossip_b64(b64, r->me.pk, 32);
	set_env("GOSSIP_SELF_ID", b64);
	for (int i = 0; i < self->ntags; i++) {
		const char *t = self->tags[i];
		size_t k = strcspn(t, "=");
		snprintf(tags + strlen(tags), sizeof tags - strlen(tags), "%s%s", i ? "," : "", t);
		snprintf(var, sizeof var, "GOSSIP_TAG_%.*s", (int)k, t);
		for (char *c = var + 11; *c; c++) {
			if (*c >= 'a' && *c <= 'z')
				*c = (char)(*c - 'a' + 'A');
			else if (!((*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') || *c == '_'))
				*c = '_';
		}
		set_env(var, t[k] ? t + k + 1 : "");
	}
	set_env("GOSSIP_SELF_TAGS", tags);
	set_env("GOSSIP_QUERY_NAME", q->name);
	gossip_hex(hex, id, GOSSIP_QUERY_ID_LEN);
	set_env("GOSSIP_QUERY_ID", hex);
	snprintf(num, sizeof num, "%llu", (unsigned long long)q->limit);
	set_env("GOSSIP_QUERY_LIMIT", num);
	snprintf(num, sizeof num, "%llu", (unsigned long long)q->deadline);
	set_env("GOSSIP_QUERY_DEADLINE", num);
	gossip_b64(b64, m->origin, 32);
	set_env("GOSSIP_ORIGIN_ID", b64);
	set_env("GOSSIP_ORIGIN_NAME", sg && sg->name ? sg->name : "");
	snprintf(num, sizeof num, "%llu", (unsigned long long)m->version);
	set_env("GOSSIP_VERSION", num);
	snprintf(num, sizeof num, "%llu", (unsigned long long)m->time);
	set_env("GOSSIP_TIME", num);
}

/* In a child of its own: run the handler with the payload on stdin, its stdout (cut at
 * the limit) the answer, killed at the deadline (no answer then). */
static _Noreturn void run_handler(struct responder *r, const char *command, const struct gossip_msg *m,
                                  const struct gossip_query *q, const uint8_t id[16],
                                  const struct gossip_member *self)
{
	int in[2], outp[2];
	signal(SIGTERM, SIG_DFL);
	signal(SIGINT, SIG_DFL);
	signal(SIGPIPE, SIG_IGN);
	if (pipe(in) < 0 || pipe(outp) < 0) {
		gossip_warn("query %s: pipe: %s", q->name, strerror(errno));
		_exit(1);
	}
	query_env(r, self, m, q, id);
	pid_t pid = fork();
	if (pid < 0) {
		gossip_warn("query %s: fork: %s", q->name, strerror(errno));
		_exit(1);
	}
	if (pid == 0) {
		setpgid(0, 0);  /* its own group: the deadline ends whatever it started */
		dup2(in[0], 0);
		dup2(outp[1], 1);
		close(in[0]), close(in[1]), close(outp[0]), close(outp[1]);
		gossip_exec_signals(1);
		execl("/bin/sh", "sh", "-c", command, (char *)NULL);
		_exit(127);
	}
	setpgid(pid, pid);
	close(in[0]);
	close(outp[1]);
	fcntl(in[1], F_SETFL, O_NONBLOCK);
	struct gossip_buf ans = {0};
	size_t fed = 0;
	int infd = in[1], outfd = outp[0], cut = 0;
	uint64_t now = gossip_now_ms();
	uint64_t left = q->deadline > now ? q->deadline - now : 0;
	uint64_t end = gossip_mono_ms() + (left < GOSSIP_QUERY_AHEAD_MS ? left : GOSSIP_QUERY_AHEAD_MS);
	if (q->paylen == 0)
		close(infd), infd = -1;
	while (outfd >= 0 && gossip_mono_ms() < end) {
		struct pollfd p[2] = {{outfd, POLLIN, 0}, {infd, POLLOUT, 0}};
		if (poll(p, infd >= 0 ? 2 : 1, (int)(end - gossip_mono_ms())) <= 0)
			continue;
		if (infd >= 0 && p[1].revents) {
			ssize_t k = write(infd, q->payload + fed, q->paylen - fed);
			if (k > 0)
				fed += (size_t)k;
			if (k < 0 && errno != EAGAIN && errno != EINTR)
				fed = q->paylen;
			if (fed == q->paylen)
				close(infd), infd = -1;
		}
		if (p[0].revents) {
			uint8_t buf[4096];
			ssize_t k = read(outfd, buf, sizeof buf);
			if (k < 0 && errno == EINTR)
				continue;
			if (k <= 0) {
				close(outfd), outfd = -1;
				break;
			}
			size_t room = q->limit - ans.len, take = (size_t)k < room ? (size_t)k : room;
			if (take < (size_t)k)
				cut = 1;
			if (take)
				gossip_buf_put(&ans, buf, take);
		}
	}
	if (infd >= 0)
		close(infd);
	int status = 0, done = 0;
	while (!done && gossip_mono_ms() < end) {
		pid_t w = waitpid(pid, &status, WNOHANG);
		if (w == pid)
			done = 1;
		else
			usleep(10000);
	}
	if (!done) {
		kill(-pid, SIGKILL);
		waitpid(pid, &status, 0);
		gossip_warn("query %s: the handler did not finish by the deadline: killed, no answer", q->name);
		_exit(1);
	}
	if (outfd >= 0)
		close(outfd);
	kill(-pid, SIGKILL);  /* whatever it left behind, holding its output */
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		gossip_warn("query %s: the handler exited with status %d; its output is the answer", q->name,
		            WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
	if (cut)
		gossip_warn("query %s: the answer was cut at the query's limit of %llu bytes", q->name,
		            (unsigned long long)q->limit);
	respond(r, q, id, GOSSIP_RESP_ANSWER, ans.p, ans.len);
	_exit(0);
}

static void reap(struct responder *r)
{
	for (int i = 0; i < RUNNING_MAX; i++)
		if (r->running[i] > 0 && waitpid(r->running[i], NULL, WNOHANG) == r->running[i])
			r->running[i] = 0;
}

/* Handlers still running: reaped every 50 ms; with none, the loop sleeps until the store
 * changes or a signal comes (a second at most), so that an idle answerer costs next to
 * nothing. */
static int running(const struct responder *r)
{
	for (int i = 0; i < RUNNING_MAX; i++)
		if (r->running[i] > 0)
			return 1;
	return 0;
}

static void note(struct responder *r, const char *fmt, const char *name, const char *why)
{
	if (gossip_rate_allow(&r->refusals, 10, gossip_now_ms(), NULL))
		gossip_warn(fmt, name, why);
}

/* The queries among what the store gained, copied for after the walk. */
static int collect(void *ctx, const struct gossip_entry *e, const uint8_t *p)
{
	struct responder *r = ctx;
	struct gossip_msg m;
	if (e->type == GOSSIP_T_EVENT && gossip_msg_decode(p, e->len, &m) == 0 &&
	    gossip_msg_key_is(&m, GOSSIP_KEY_QUERY) && gossip_buf_put(&r->found, p, e->len) < 0)
		gossip_warn("out of memory: a query is lost");
	return 0;
}

static void on_query(struct responder *r, const uint8_t *p, size_t n)
{
	struct gossip_msg m;
	struct gossip_query q;
	const struct gossip_signer *sg;
	uint8_t id[GOSSIP_QUERY_ID_LEN];
	struct gossip_member self;
	if (gossip_msg_decode(p, n, &m) < 0)
		return;
	int isq = gossip_query_of(&m, &q);
	if (isq == 0)
		return;
	gossip_query_id(id, p, n);
	uint64_t now = gossip_now_ms();
	if (isq < 0) {
		if (!r->first_pass && !seen_before(r, id, now + 3600000, now))
			note(r, "a query that is not one refused: %s%s", "", gossip_error());
		return;
	}
	/* Remembered no longer than a query can be answered (one further ahead is refused). */
	uint64_t keep = q.deadline - now < GOSSIP_QUERY_AHEAD_MS ? q.deadline : now + GOSSIP_QUERY_AHEAD_MS;
	if (seen_before(r, id, q.deadline <= now ? q.deadline : keep, now) || r->first_pass)
		return;
	if (gossip_authorize(&m, &r->trust, &sg) != GOSSIP_V_OK) {
		note(r, "query %s refused: %s", q.name, gossip_error());
		return;
	}
	if (now >= q.deadline)
		return;  /* too late: the asker has stopped listening */
	if (q.deadline - now > GOSSIP_QUERY_AHEAD_MS) {
		/* No asker waits that long (-T is at most an hour): such a deadline would only
		 * hold a handler slot, and the list of queries seen, for as long. */
		note(r, "query %s refused: %s", q.name, "its deadline is more than an hour ahead of this node's clock");
		return;
	}
	/* The asker's word: a name would be looked up (this process would wait on DNS), a
	 * multicast or broadcast address would make every answer many. */
	struct gossip_addr to;
	if (gossip_addr_unicast(&to, q.reply) < 0) {
		note(r, "query %s not answered: %s", q.name, gossip_error());
		return;
	}
	int found = member_record(r->st, r->me.pk, &self);
	if (found <= 0) {
		note(r, "query %s not answered: %s", q.name,
		     found < 0 ? gossip_error() : "this node has no member record in its store yet");
		return;
	}
	if (gossip_query_matches(&q, &self) != 1)
		return;
	if (q.ack)
		respond(r, &q, id, GOSSIP_RESP_ACK, NULL, 0);
	const char *command = NULL;
	for (int i = 0; i < r->nh && !command; i++)
		if (gossip_handler_wants(&r->h[i], "query", q.name))
			command = r->h[i].command;
	if (!command)
		return;
	reap(r);
	int slot = -1;
	for (int i = 0; i < RUNNING_MAX && slot < 0; i++)
		if (r->running[i] <= 0)
			slot = i;
	if (slot < 0) {
		note(r, "query %s refused: %s", q.name, "8 handlers run already");
		return;
	}
	fflush(NULL);
	pid_t pid = fork();
	if (pid < 0) {
		note(r, "query %s refused: fork: %s", q.name, strerror(errno));
		return;
	}
	if (pid == 0)
		run_handler(r, command, &m, &q, id, &self);
	r->running[slot] = pid;
	return;
}

static void answer_reload(struct responder *r)
{
	struct gossip_trust t;
	struct gossip_keyring k;
	if (gossip_trust_load(&t, r->dir) < 0)
		gossip_warn("reload: trusted: %s; keeping the old one", gossip_error());
	else {
		gossip_trust_free(&r->trust);
		r->trust = t;  /* in place: the store's visibility reads it */
	}
	if (gossip_keyring_load(&k, r->dir) < 0)
		gossip_warn("reload: keyring: %s; keeping the old one", gossip_error());
	else {
		gossip_keyring_free(&r->keys);
		r->keys = k;
	}
	gossip_warn("reloaded: %zu trusted signers, %zu cluster keys", r->trust.n, r->keys.n);
}

static int answer(const char *dir, char **specs, int nspecs)
{
	struct responder r = {.dir = dir, .first_pass = 1};
	struct stat sb;
	uint64_t ino = 0, size = 0;
	for (int i = 0; i < nspecs; i++)
		if (gossip_handler_parse(specs[i], &r.h[r.nh++]) < 0)
			gossip_die(GOSSIP_EXIT_ERR, "-x %s: %s", specs[i], gossip_error());
	if (gossip_identity_load(dir, &r.me, 0) < 0)
		gossip_die(GOSSIP_EXIT_ERR, "key: %s", gossip_error());
	if (gossip_trust_load(&r.trust, dir) < 0)
		gossip_die(GOSSIP_EXIT_ERR, "trusted: %s", gossip_error());
	if (gossip_keyring_load(&r.keys, dir) < 0)
		gossip_die(GOSSIP_EXIT_ERR, "keyring: %s", gossip_error());
	struct sigaction sa = {0};
	sa.sa_handler = on_stop;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	gossip_hup_catch();
	/* Woken at once by a write to DIR/store (inotify) or a signal. */
	static const char *const names[] = {"store", NULL};
	int dw = gossip_dirwatch_open(dir);
	while (!stopping) {
		if (gossip_hup_taken())
			answer_reload(&r);
		reap(&r);
		if (!r.st && stat(gossip_path(dir, "store"), &sb) == 0 && !(r.st = open_store(dir, &r.trust)))
			gossip_die(GOSSIP_EXIT_ERR, "store: %s", gossip_error());
		if (r.st && stat(gossip_path(dir, "store"), &sb) == 0 &&
		    ((uint64_t)sb.st_ino != ino || (uint64_t)sb.st_size != size)) {
			if (gossip_store_lock(r.st) < 0) {
				gossip_warn("store: %s", gossip_error());
			} else {
				/* Taken under the lock: what is appended after it is seen next time. */
				if (stat(gossip_path(dir, "store"), &sb) == 0)
					ino = (uint64_t)sb.st_ino, size = (uint64_t)sb.st_size;
				gossip_store_each_new(r.st, &r.cur, collect, &r);
				gossip_store_unlock(r.st);
				/* Handled after the walk: a query looks up member records, which locks. */
				size_t at = 0, len;
				while (at < r.found.len && gossip_cbor_scan(r.found.p + at, r.found.len - at,
				                                            &gossip_msg_limits, NULL, &len) == GOSSIP_SCAN_OK) {
					on_query(&r, r.found.p + at, len);
					at += len;
				}
				r.found.len = 0;
			}
		}
		if (r.st)
			r.first_pass = 0;
		gossip_dirwatch_wait(dw, names, running(&r) ? 50 : 1000);
	}
	if (dw >= 0)
		close(dw);
	gossip_store_close(r.st);
	gossip_identity_free(&r.me);
	gossip_trust_free(&r.trust);
	gossip_keyring_free(&r.keys);
	free(r.seen);
	gossip_buf_free(&r.found);
	return GOSSIP_EXIT_OK;
}

/* ---- main ---- */

static double seconds(const char *opt, const char *s)
{
	char *end;
	double v = strtod(s, &end);
	if (!*s || *end || !(v > 0 && v <= 3600))
		gossip_die(GOSSIP_EXIT_ERR, "-%s %s: want a timeout in seconds, above 0 and at most 3600", opt, s);
	return v;
}

static long number(const char *opt, const char *s, long max, const char *what)
{
	char *end;
	long v = strtol(s, &end, 10);
	if (!*s || *end || v < 0 || v > max)
		gossip_die(GOSSIP_EXIT_ERR, "-%s %s: want %s, 0 to %ld", opt, s, what, max);
	return v;
}

int main(int argc, char **argv)
{
	enum { O_NOACK = 256 };
	static const struct option longopts[] = {
		{"dir", required_argument, NULL, 'd'}, {"json", no_argument, NULL, 'j'},
		{"verbose", no_argument, NULL, 'v'}, {"name", required_argument, NULL, 'n'},
		{"tag", required_argument, NULL, 't'}, {"timeout", required_argument, NULL, 'T'},
		{"limit", required_argument, NULL, 'l'}, {"relay", required_argument, NULL, 'R'},
		{"no-ack", no_argument, NULL, O_NOACK}, {"advertise", required_argument, NULL, 'a'},
		{"peer", required_argument, NULL, 'p'}, {"handler", required_argument, NULL, 'x'},
		{"help", no_argument, NULL, 'h'}, {"version", no_argument, NULL, 'V'}, {0}};
	static struct gossip_query q;
	struct ask_opts o = {.timeout = 10, .limit = GOSSIP_ANSWER_DEFAULT};
	char **specs = calloc((size_t)argc + 1, sizeof *specs);
	int nspecs = 0, c, asked_opts = 0;
	const char *dir = NULL;

	gossip_init(argv[0]);
	/* Options before the verb, and (answer's -x) after it. */
	for (int pass = 0; pass < 2; pass++) {
		while ((c = getopt_long(argc, argv, "+d:jvn:t:T:l:R:a:p:x:h", longopts, NULL)) != -1) {
			if (c != 'n' && c != 't' && c != 'x')
				gossip_opt_once(c);
			if (c != 'd' && c != 'x' && c != 'h' && c != 'V')
				asked_opts = 1;
			switch (c) {
			case 'd': dir = optarg; break;
			case 'j': o.json = 1; break;
			case 'v': o.verbose = 1; break;
			case 'n':
				if (q.nnames == GOSSIP_QUERY_NAMES)
					gossip_die(GOSSIP_EXIT_ERR, "-n: at most %d names", GOSSIP_QUERY_NAMES);
				if (!*optarg || strlen(optarg) > 63)
					gossip_die(GOSSIP_EXIT_ERR, "-n %s: want a member's name, 1 to 63 bytes", optarg);
				snprintf(q.names[q.nnames++], sizeof q.names[0], "%s", optarg);
				break;
			case 't': {
				const char *eq = strchr(optarg, '=');
				if (!eq || eq == optarg || (size_t)(eq - optarg) > 190)
					gossip_die(GOSSIP_EXIT_ERR, "-t %s: want tag=regex, such as -t 'role=web.*'", optarg);
				if (q.ntags == GOSSIP_QUERY_TAGS)
					gossip_die(GOSSIP_EXIT_ERR, "-t: at most %d tags", GOSSIP_QUERY_TAGS);
				if (strlen(eq + 1) > GOSSIP_QUERY_REGEX_MAX)
					gossip_die(GOSSIP_EXIT_ERR, "-t %s: a regex of at most %d bytes", optarg,
					           GOSSIP_QUERY_REGEX_MAX);
				snprintf(q.tags[q.ntags].tag, sizeof q.tags[0].tag, "%.*s", (int)(eq - optarg), optarg);
				snprintf(q.tags[q.ntags++].re, sizeof q.tags[0].re, "%s", eq + 1);
				break;
			}
			case 'T': o.timeout = seconds("T", optarg); break;
			case 'l': o.limit = number("l", optarg, GOSSIP_ANSWER_MAX, "the largest answer in bytes"); break;
			case 'R': o.relay = number("R", optarg, GOSSIP_QUERY_RELAY_MAX, "members to relay each answer"); break;
			case O_NOACK: o.noack = 1; break;
			case 'a': o.advertise = optarg; break;
			case 'p': o.peer = optarg; break;
			case 'x': specs[nspecs++] = optarg; break;
			case 'h': usage(GOSSIP_EXIT_OK); break;
			case 'V': gossip_print_version(); break;
			default: usage(GOSSIP_EXIT_ERR);
			}
		}
		if (pass == 0 && optind < argc && !strcmp(argv[optind], "answer")) {
			if (asked_opts)
				gossip_die(GOSSIP_EXIT_ERR, "answer takes -d and -x only: the other options are ask's");
			argc -= optind;
			argv += optind;
			optind = 1;
			continue;
		}
		if (pass == 1) {
			if (optind < argc)
				gossip_die(GOSSIP_EXIT_ERR, "answer: %s: want -x handler specs only", argv[optind]);
			int rc = answer(gossip_state_dir(dir), specs, nspecs);
			free(specs);
			return rc;
		}
		break;
	}
	if (nspecs)
		gossip_die(GOSSIP_EXIT_ERR, "-x is answer's: gossip-query -d DIR answer -x handler");
	argc -= optind;
	argv += optind;
	if (argc && !strcmp(argv[0], "ask"))
		argc--, argv++;
	if (argc < 1)
		gossip_die(GOSSIP_EXIT_ERR, "want the query's name: gossip-query [options] name [payload]");
	if (argc > 2)
		gossip_die(GOSSIP_EXIT_ERR, "%s: want a name and at most one payload (or - for stdin)", argv[2]);
	size_t k = strlen(argv[0]);
	if (k > GOSSIP_QUERY_NAME_MAX)
		gossip_die(GOSSIP_EXIT_ERR, "%.64s...: a query's name is at most %d bytes", argv[0],
		           GOSSIP_QUERY_NAME_MAX);
	snprintf(q.name, sizeof q.name, "%s", argv[0]);
	o.payload = argc > 1 ? argv[1] : NULL;
	o.dir = gossip_state_dir(dir);
	/* Everything the query holds is checked before anything is bound or signed. */
	struct gossip_query check = q;
	struct gossip_buf b = {0};
	snprintf(check.reply, sizeof check.reply, "udp://127.0.0.1:1");
	check.deadline = 1;
	check.limit = (uint64_t)o.limit;
	check.relay = (unsigned)o.relay;
	if (gossip_query_encode(&b, &check) < 0)
		gossip_die(GOSSIP_EXIT_ERR, "%s", gossip_error());
	gossip_buf_free(&b);
	free(specs);
	return ask(&o, &q);
}
