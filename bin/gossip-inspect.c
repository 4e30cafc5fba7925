/* gossip-inspect: show messages to a person (or JSON lines to a script) with a verdict. */
#include "gossip.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void usage(int code)
{
	fprintf(code ? stderr : stdout, "usage: gossip-inspect [-j | --diag] [-d dir] [file ...]\n");
	exit(code);
}

enum { HUMAN, JSON, DIAG };
static int mode = HUMAN;
static struct gossip_trust trust;

static void put_value(FILE *f, const struct gossip_msg *m)
{
	enum { SHOW = 256 };
	size_t n = m->valuelen > SHOW ? SHOW : m->valuelen;
	if (m->value_text) {
		/* Cut at a character boundary. */
		while (n < m->valuelen && n > 0 && (m->value[n] & 0xc0) == 0x80)
			n--;
		gossip_put_string(f, m->value, n, 0);
	} else {
		fputs("h'", f);
		for (size_t i = 0; i < n; i++)
			fprintf(f, "%02x", m->value[i]);
		fputc('\'', f);
	}
	if (n < m->valuelen)
		fprintf(f, " ... (%zu bytes; -j shows all)", m->valuelen);
	else if (!m->value_text)
		fprintf(f, " (%zu bytes)", m->valuelen);
}

/* What a share of an aggregation run holds (gossip(7), AGGREGATION). */
static void show_share(const struct gossip_msg *m)
{
	struct gossip_share s;
	char hex[2 * GOSSIP_AGG_ID_LEN + 1], num[40];
	if (gossip_share_decode(m->value, m->valuelen, &s) < 0) {
		printf("\n  share    not one: %s", gossip_error());
		return;
	}
	gossip_hex(hex, s.id, sizeof s.id);
	printf("\n  run      %s\n  round    %llu", hex, (unsigned long long)s.round);
	gossip_fmt_double(num, s.mass.s);
	printf("\n  sum      %s", num);
	gossip_fmt_double(num, s.mass.w);
	printf("\n  weight   %s", num);
	char to[9];
	gossip_short_id(to, s.to);
	printf("\n  to       %s", to);
}

/* What a query or a response holds, below its value (gossip(7), QUERIES); a share's. */
static void show_query(const struct gossip_msg *m)
{
	struct gossip_query q;
	struct gossip_response r;
	char hex[2 * GOSSIP_QUERY_ID_LEN + 1], when[32];
	if (gossip_msg_is_share(m)) {
		show_share(m);
		return;
	}
	if (gossip_msg_is_response(m)) {
		if (gossip_response_decode(m->value, m->valuelen, &r) < 0) {
			printf("\n  response not one: %s", gossip_error());
			return;
		}
		gossip_hex(hex, r.id, sizeof r.id);
		printf("\n  query    %s\n  kind     %s", hex, r.kind == GOSSIP_RESP_ACK ? "ack" : "answer");
		if (r.kind == GOSSIP_RESP_ANSWER) {
			printf("\n  answer   ");
			gossip_put_string(stdout, r.payload, r.paylen > 256 ? 256 : r.paylen, 0);
			if (r.paylen > 256)
				printf(" ... (%zu bytes)", r.paylen);
		}
		printf("\n  reply    %s", r.reply);
		return;
	}
	int k = gossip_query_of(m, &q);
	if (k == 0)
		return;
	if (k < 0) {
		printf("\n  query    not one: %s", gossip_error());
		return;
	}
	gossip_query_id(r.id, m->bytes, m->nbytes);
	gossip_hex(hex, r.id, sizeof r.id);
	gossip_fmt_time(when, q.deadline);
	printf("\n  query    ");
	gossip_put_string(stdout, (const uint8_t *)q.name, strlen(q.name), 0);
	printf(" (id %s)\n  reply    %s\n  deadline %s\n  limit    %llu bytes, ack %d, relay %u", hex,
	       q.reply, when, (unsigned long long)q.limit, q.ack, q.relay);
	for (int i = 0; i < q.nnames; i++)
		printf("\n  member   %s", q.names[i]);
	for (int i = 0; i < q.ntags; i++)
		printf("\n  tag      %s=~^(%s)$", q.tags[i].tag, q.tags[i].re);
}

static void human(const struct gossip_msg *m, const struct gossip_signer *sg, int sig_ok,
                  enum gossip_verdict v, uint64_t off, size_t len)
{
	char id[9], when[32];
	printf("message at offset %llu (%zu bytes)\n", (unsigned long long)off, len);
	if (v == GOSSIP_V_MALFORMED) {
		printf("  verdict  REJECTED: %s\n\n", gossip_error());
		return;
	}
	gossip_short_id(id, m->origin);
	printf("  origin   %s", id);
	if (sg && sg->name)
		printf(" (%s)", sg->name);
	printf("\n  type     %s", gossip_type_name(m->type));
	if (!gossip_msg_is_probe(m)) {
		printf("\n  key      ");
		gossip_put_string(stdout, m->key, m->keylen, 0);
	}
	if (m->has_value) {
		printf("\n  value    ");
		put_value(stdout, m);
	}
	show_query(m);
	gossip_fmt_time(when, m->time);
	if (gossip_msg_is_probe(m))
		printf("\n");
	else
		printf("\n  version  %llu\n  time     %s\n", (unsigned long long)m->version, when);
	if (v == GOSSIP_V_OK)
		printf("  verdict  ok: good signature, trusted signer\n\n");
	else if (v == GOSSIP_V_BADSIG)
		printf("  verdict  REJECTED: %s\n\n", gossip_error());
	else
		printf("  verdict  REJECTED: %s (signature %s)\n\n", gossip_error(),
		       sig_ok ? "good" : "bad");
}

static void json(const struct gossip_msg *m, const struct gossip_signer *sg, int sig_ok,
                 enum gossip_verdict v, uint64_t off)
{
	printf("{\"offset\":%llu", (unsigned long long)off);
	if (v != GOSSIP_V_MALFORMED) {
		putchar(',');
		gossip_json_fields(stdout, m, sg ? sg->name : NULL);
		printf(",\"signature\":\"%s\",\"trusted\":%s", sig_ok ? "good" : "bad",
		       sg ? "true" : "false");
	}
	printf(",\"verified\":%s", v == GOSSIP_V_OK ? "true" : "false");
	if (v != GOSSIP_V_OK) {
		printf(",\"error\":");
		gossip_put_string(stdout, (const uint8_t *)gossip_error(), strlen(gossip_error()), 0);
	}
	printf("}\n");
}

/* One origin of a watermark record, as a line or a JSON object. */
static void watermark(void *ctx, const uint8_t pk[32], uint64_t version)
{
	int *first = ctx;
	char b64[4 * ((32 + 2) / 3) + 1];
	const struct gossip_signer *sg = gossip_trust_find(&trust, pk);
	gossip_b64(b64, pk, 32);
	if (mode == JSON) {
		printf("%s{\"origin\":\"%s\",\"name\":", *first ? "" : ",", b64);
		if (sg && sg->name)
			gossip_put_string(stdout, (const uint8_t *)sg->name, strlen(sg->name), 0);
		else
			printf("null");
		printf(",\"version\":%llu}", (unsigned long long)version);
	} else
		printf("  %s %s  %llu\n", b64, sg && sg->name ? sg->name : "-", (unsigned long long)version);
	*first = 0;
}

/* A compaction's watermark record (not a message): shown as what it is. 1 when item was
 * one (a damaged one is left to the message check, which rejects it). */
static int watermarks(const uint8_t *item, size_t len, uint64_t off)
{
	int first = 1;
	if (gossip_store_watermarks(item, len, NULL, NULL) != 1)
		return 0;
	if (mode == JSON)
		printf("{\"offset\":%llu,\"watermarks\":[", (unsigned long long)off);
	else
		printf("watermarks (offset %llu; the store's record of collected deletes: versions at "
		       "or below are stale)\n", (unsigned long long)off);
	gossip_store_watermarks(item, len, watermark, &first);
	printf(mode == JSON ? "]}\n" : "\n");
	fflush(stdout);
	return 1;
}

/* 0 when every item verified (or, with --diag, was well-formed), 1 when one did not,
 * 2 when the input could not be read as a CBOR sequence. */
static int inspect(int fd, const char *name)
{
	struct gossip_reader r;
	const uint8_t *item;
	size_t len;
	uint64_t off;
	int got, status = GOSSIP_EXIT_OK;

	gossip_reader_init(&r, fd, name, &gossip_any_limits);
	while ((got = gossip_reader_next(&r, &item, &len, &off)) == 1) {
		if (mode == DIAG) {
			gossip_diag(stdout, item, len, 1);
			putchar('\n');
			continue;
		}
		if (watermarks(item, len, off))
			continue;
		struct gossip_msg m;
		const struct gossip_signer *sg;
		enum gossip_verdict v = gossip_check(item, len, &trust, &m, &sg);
		int sig_ok = v == GOSSIP_V_OK;
		if (v != GOSSIP_V_OK) {
			char why[512];
			snprintf(why, sizeof why, "%s", gossip_error());
			if (v != GOSSIP_V_MALFORMED && v != GOSSIP_V_BADSIG)
				sig_ok = gossip_msg_verify(&m) == 0;
			gossip_seterr("%s", why);
			gossip_warn("%s: offset %llu: %s", name, (unsigned long long)off, why);
			status = GOSSIP_EXIT_NO;
		}
		if (mode == JSON)
			json(&m, sg, sig_ok, v, off);
		else
			human(&m, sg, sig_ok, v, off, len);
		fflush(stdout);
	}
	fflush(stdout);
	if (got < 0) {
		gossip_warn("%s", gossip_error());
		status = GOSSIP_EXIT_ERR;
	}
	gossip_reader_free(&r);
	return status;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"dir", required_argument, NULL, 'd'}, {"json", no_argument, NULL, 'j'},
		{"diag", no_argument, NULL, 'D'}, {"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'}, {0}};
	const char *dir = NULL;
	int c, status = GOSSIP_EXIT_OK;

	gossip_init(argv[0]);
	while ((c = getopt_long(argc, argv, "d:jh", longopts, NULL)) != -1) {
		gossip_opt_once(c);
		switch (c) {
		case 'd': dir = optarg; break;
		case 'j': mode = mode == HUMAN ? JSON : -1; break;
		case 'D': mode = mode == HUMAN ? DIAG : -1; break;
		case 'h': usage(GOSSIP_EXIT_OK); break;
		case 'V': gossip_print_version(); break;
		default: usage(GOSSIP_EXIT_ERR);
		}
	}
	if (mode < 0)
		gossip_die(GOSSIP_EXIT_ERR, "-j and --diag exclude each other");
	if (mode != DIAG && gossip_trust_load(&trust, gossip_state_dir(dir)) < 0)
		gossip_die(GOSSIP_EXIT_ERR, "trusted: %s", gossip_error());
	if (optind == argc)
		status = inspect(0, "stdin");
	for (int i = optind; i < argc; i++) {
		int s, fd = strcmp(argv[i], "-") == 0 ? 0 : open(argv[i], O_RDONLY | O_CLOEXEC);
		if (fd < 0) {
			gossip_warn("%s: cannot open: %s", argv[i], strerror(errno));
			s = GOSSIP_EXIT_ERR;
		} else {
			s = inspect(fd, fd == 0 ? "stdin" : argv[i]);
			if (fd != 0)
				close(fd);
		}
		if (s > status)
			status = s;
	}
	gossip_trust_free(&trust);
	return status;
}
