/* t-aggregate: aggregation runs and shares: the codecs and what they refuse, the push-sum
 * step (mass kept, convergence of simulated clusters), and a node's part: a run started
 * from its message, shares taken, refused (an outsider, a replay, too much mass), the
 * estimate written. */
#include "gossip.h"
#include "tap.h"
#include "fixture.h"

#include <arpa/inet.h>
#include <math.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

static int decodes_hex(const char *hex, struct gossip_aggregate *a)
{
	unsigned char b[512];
	size_t n = unhex(b, hex);
	return gossip_agg_decode(b, n, a);
}

static void codec(void)
{
	struct gossip_aggregate a = {.fn = GOSSIP_AGG_AVG, .round_ms = 500, .deadline = 1700000000000ull}, d;
	struct gossip_buf b = {0};
	char hex[512];
	snprintf(a.input, sizeof a.input, "tag:load");
	ok(gossip_agg_encode(&b, &a) == 0, "a run encodes");
	gossip_hex(hex, b.p, b.len);
	is_str(hex, "a4010102687461673a6c6f6164031901f4041b0000018bcfe56800", "its bytes: {1: 1, 2: \"tag:load\", 3: 500, 4: deadline}");
	ok(gossip_agg_decode(b.p, b.len, &d) == 0 && d.fn == a.fn && !strcmp(d.input, a.input) &&
	   d.round_ms == 500 && d.deadline == a.deadline, "and decodes to the same run");
	/* Refused: fields out of order, a longer head, count with an input, a round too short. */
	ok(decodes_hex("a4020101687461673a6c6f6164031901f4041b0000018bcfe56800", &d) < 0, "refused: fields out of order");
	ok(decodes_hex("a401180102687461673a6c6f6164031901f4041b0000018bcfe56800", &d) < 0 &&
	   strstr(gossip_error(), "deterministically"), "refused: a longer head than needed (%s)", gossip_error());
	ok(decodes_hex("a4010302687461673a6c6f6164031901f4041b0000018bcfe56800", &d) < 0 &&
	   strstr(gossip_error(), "count takes no input"), "refused: count with an input");
	ok(decodes_hex("a4010102687461673a6c6f616403050414", &d) < 0 && strstr(gossip_error(), "round interval"),
	   "refused: a 5 ms round (%s)", gossip_error());
	ok(decodes_hex("a4010102687461673a6c6f6164031901f4041b0000018bcfe5680000", &d) < 0, "refused: bytes after it");
	/* Inputs. */
	ok(gossip_agg_check_input(GOSSIP_AGG_SUM, "-") == 0 && gossip_agg_check_input(GOSSIP_AGG_MIN, "key:cpu") == 0 &&
	   gossip_agg_check_input(GOSSIP_AGG_COUNT, "") == 0, "inputs: -, key:KEY, none for count");
	ok(gossip_agg_check_input(GOSSIP_AGG_AVG, "") < 0 && gossip_agg_check_input(GOSSIP_AGG_AVG, "tag:") < 0 &&
	   gossip_agg_check_input(GOSSIP_AGG_AVG, "tag:a=b") < 0 && gossip_agg_check_input(GOSSIP_AGG_AVG, "load") < 0 &&
	   gossip_agg_check_input(GOSSIP_AGG_AVG, "key:a\nb") < 0, "refused: no input, an empty tag, '=', no kind, a control byte");
	ok(gossip_agg_fn_parse("max") == GOSSIP_AGG_MAX && gossip_agg_fn_parse("median") < 0 &&
	   !strcmp(gossip_agg_fn_name(GOSSIP_AGG_COUNT), "count"), "function names");
	gossip_buf_free(&b);

	/* Shares. */
	struct gossip_share s = {.round = 7, .mass = {27.5, 0.25}}, t;
	memset(s.id, 0xab, sizeof s.id);
	memset(s.to, 0xcd, sizeof s.to);
	ok(gossip_share_encode(&b, &s) == 0 && b.len == 1 + 17 + 1 + 9 + 9 + 34, "a share encodes: float64 always (%zu bytes)", b.len);
	ok(gossip_share_decode(b.p, b.len, &t) == 0 && t.round == 7 && t.mass.s == 27.5 && t.mass.w == 0.25 &&
	   !memcmp(t.id, s.id, sizeof s.id) && !memcmp(t.to, s.to, sizeof s.to), "and decodes, with its recipient");
	gossip_hex(hex, b.p, b.len);
	unsigned char raw[128];
	/* The weight as a float32 (fa 3e800000): not deterministic here. */
	char h32[256];
	snprintf(h32, sizeof h32, "%.*sfa3e800000%s", (int)(b.len * 2 - 18 - 68), hex, hex + b.len * 2 - 68);
	size_t n = unhex(raw, h32);
	ok(gossip_share_decode(raw, n, &t) < 0 && strstr(gossip_error(), "float64"), "refused: a float32 weight");
	/* An older version's share, [id, round, sum, weight]: it names no recipient. */
	snprintf(h32, sizeof h32, "84%.*s", (int)(b.len * 2 - 2 - 68), hex + 2);
	n = unhex(raw, h32);
	ok(gossip_share_decode(raw, n, &t) < 0 && strstr(gossip_error(), "an array of 5"), "refused: a share of 4 (%s)",
	   gossip_error());
	s.mass.w = -1;
	ok(gossip_share_encode(&b, &s) < 0, "refused: a negative weight");
	s.mass.w = NAN;
	ok(gossip_share_encode(&b, &s) < 0, "refused: a NaN weight");
	gossip_buf_free(&b);

	/* The message: type 7, probe-shaped, news, never versioned. */
	struct gossip_identity id = ident(3);
	struct gossip_msg m;
	s.mass.w = 0.5;
	ok(gossip_share_sign(&b, &s, &id) == 0 && gossip_msg_decode(b.p, b.len, &m) == 0 &&
	   m.type == GOSSIP_T_SHARE && gossip_msg_is_share(&m) && gossip_msg_is_probe(&m) && gossip_msg_is_news(&m) &&
	   !gossip_msg_is_response(&m) && !strcmp(gossip_type_name(m.type), "share") && gossip_msg_verify(&m) == 0,
	   "a share is a signed type 7 message, probe-shaped, news");
	gossip_buf_free(&b);
	struct gossip_msg bad = {.type = GOSSIP_T_SHARE, .version = 1, .value = (const uint8_t *)"x", .valuelen = 1,
	                         .has_value = 1};
	ok(gossip_msg_sign(&b, &bad, &id) < 0 && strstr(gossip_error(), "a share has only a type and a value"),
	   "refused: a share with a version");
	gossip_buf_free(&b);
	gossip_identity_free(&id);
}

/* A simulated cluster of n, each round every member sends its share to a random other
 * (the bench's loop, small): the estimate everywhere after rounds. */
static double simulate(int fn, int n, int rounds, double *spread, double total_lost)
{
	struct gossip_agg_mass *m = calloc((size_t)n, sizeof *m), *in = calloc((size_t)n, sizeof *in);
	struct gossip_rng r;
	gossip_rng_seed(&r, 42, (uint64_t)fn);
	for (int i = 0; i < n; i++)
		m[i] = gossip_agg_initial(fn, i == 0, 1, (double)(i + 1));
	for (int k = 0; k < rounds; k++) {
		for (int i = 0; i < n; i++)
			in[i] = (struct gossip_agg_mass){0, 0};
		for (int i = 0; i < n; i++) {
			struct gossip_agg_mass s = gossip_agg_split(fn, &m[i]);
			uint32_t to = gossip_sim_other(&r, (uint32_t)n, (uint32_t)i);
			if (!gossip_rng_chance(&r, total_lost))
				gossip_agg_take(fn, &in[to], s);
		}
		for (int i = 0; i < n; i++)
			gossip_agg_take(fn, &m[i], in[i]);
	}
	double lo = INFINITY, hi = -INFINITY, e = NAN;
	for (int i = 0; i < n; i++)
		if (gossip_agg_estimate(fn, &m[i], &e)) {
			lo = fmin(lo, e);
			hi = fmax(hi, e);
		}
	gossip_agg_estimate(fn, &m[0], &e);
	*spread = hi - lo;
	free(m);
	free(in);
	return e;
}

static void push_sum(void)
{
	struct gossip_agg_mass a = gossip_agg_initial(GOSSIP_AGG_AVG, 0, 1, 10), b = gossip_agg_initial(GOSSIP_AGG_AVG, 0, 1, 20);
	struct gossip_agg_mass s = gossip_agg_split(GOSSIP_AGG_AVG, &a);
	double e;
	ok(s.s == 5 && s.w == 0.5 && a.s == 5 && a.w == 0.5, "a split halves the mass");
	gossip_agg_take(GOSSIP_AGG_AVG, &b, s);
	ok(a.s + b.s == 30 && a.w + b.w == 2, "a share taken keeps the total mass");
	ok(gossip_agg_estimate(GOSSIP_AGG_AVG, &b, &e) && fabs(e - 25.0 / 1.5) < 1e-12, "the estimate is sum over weight");
	struct gossip_agg_mass none = gossip_agg_initial(GOSSIP_AGG_AVG, 0, 0, 0);
	ok(!gossip_agg_estimate(GOSSIP_AGG_AVG, &none, &e), "no input, no weight: no estimate");
	struct gossip_agg_mass c = gossip_agg_initial(GOSSIP_AGG_COUNT, 0, 0, 0), k = gossip_agg_initial(GOSSIP_AGG_COUNT, 1, 0, 0);
	ok(c.s == 1 && c.w == 0 && k.s == 1 && k.w == 1, "count: 1 everywhere, the weight at the asker");
	struct gossip_agg_mass lo = gossip_agg_initial(GOSSIP_AGG_MIN, 0, 1, 5);
	gossip_agg_take(GOSSIP_AGG_MIN, &lo, (struct gossip_agg_mass){3, 1});
	gossip_agg_take(GOSSIP_AGG_MIN, &lo, (struct gossip_agg_mass){9, 1});
	gossip_agg_take(GOSSIP_AGG_MIN, &lo, (struct gossip_agg_mass){-100, 0});
	ok(lo.s == 3 && lo.w == 1, "min keeps the least seen; a share of weight 0 holds none");
	struct gossip_agg_mass keep = lo, out = gossip_agg_split(GOSSIP_AGG_MIN, &keep);
	ok(out.s == 3 && keep.s == 3, "min sends its extreme and keeps it");

	double spread;
	double avg = simulate(GOSSIP_AGG_AVG, 100, 60, &spread, 0);
	ok(fabs(avg - 50.5) < 50.5 * 1e-6 && spread < 50.5 * 1e-5, "100 members: avg 50.5 after 60 rounds (%.9g, spread %.3g)", avg, spread);
	double cnt = simulate(GOSSIP_AGG_COUNT, 1000, 60, &spread, 0);
	ok(fabs(cnt - 1000) < 1000 * 1e-6, "1000 members: count 1000 after 60 rounds (%.9g)", cnt);
	double sum = simulate(GOSSIP_AGG_SUM, 100, 60, &spread, 0);
	ok(fabs(sum - 5050) < 5050 * 1e-6, "100 members: sum 5050 (%.9g)", sum);
	double mx = simulate(GOSSIP_AGG_MAX, 1000, 30, &spread, 0);
	ok(mx == 1000 && spread == 0, "1000 members: max 1000 everywhere after 30 rounds");
	/* Loss takes mass away at random: the average of what is left stays near. */
	double lossy = simulate(GOSSIP_AGG_AVG, 100, 60, &spread, 0.05);
	ok(fabs(lossy - 50.5) < 50.5 * 0.1 && spread < 1e-3, "5%% loss: avg %.6g, near 50.5, and agreed", lossy);
}

static size_t signed_run(struct gossip_buf *b, const struct gossip_identity *id, const char *input, int fn,
                         uint64_t time, uint64_t round_ms)
{
	struct gossip_aggregate a = {.fn = fn, .round_ms = round_ms, .deadline = time + 60000};
	struct gossip_buf v = {0};
	struct gossip_msg m = {0};
	snprintf(a.input, sizeof a.input, "%s", input);
	gossip_agg_encode(&v, &a);
	m.type = GOSSIP_T_EVENT;
	m.version = 1;
	m.time = time;
	m.key = (const uint8_t *)GOSSIP_KEY_AGGREGATE;
	m.keylen = strlen(GOSSIP_KEY_AGGREGATE);
	m.value = v.p;
	m.valuelen = v.len;
	m.has_value = 1;
	int r = gossip_msg_sign(b, &m, id);
	gossip_buf_free(&v);
	return r == 0 ? b->len : 0;
}

static int share_msg(struct gossip_buf *b, struct gossip_msg *m, const struct gossip_identity *id,
                     const uint8_t *to, const uint8_t *run, uint64_t round, double s, double w)
{
	struct gossip_share sh = {.round = round, .mass = {s, w}};
	memcpy(sh.id, run, GOSSIP_AGG_ID_LEN);
	memcpy(sh.to, to, 32);
	b->len = 0;
	return gossip_share_sign(b, &sh, id) == 0 && gossip_msg_decode(b->p, b->len, m) == 0;
}

static void node_part(void)
{
	char *dir = strdup(temp_dir("agg")), line[256];
	struct gossip_identity me, peer = named_ident("peer"), outsider = named_ident("outsider");
	struct gossip_trust trust = {0};
	struct gossip_peers t = {0};
	struct gossip_buf run = {0}, b = {0};
	struct gossip_msg m;
	struct gossip_agg_status st;
	uint8_t id[GOSSIP_AGG_ID_LEN];
	gossip_identity_create(dir, "me", 0, &me);
	FILE *f = fopen(gossip_path(dir, "aggregate.input"), "w");
	fputs("7\n", f);
	fclose(f);
	trusted_line(line, sizeof line, &peer, "peer");
	gossip_trust_parse(&trust, line, strlen(line), "trusted");
	gossip_peers_load(&t, dir);  /* empty, self known: no one to send to */

	struct gossip_aggregator *g = gossip_aggregator_new(dir);
	uint64_t now = gossip_now_ms();
	signed_run(&run, &peer, "-", GOSSIP_AGG_AVG, now, 1000);
	gossip_msg_decode(run.p, run.len, &m);
	gossip_agg_id(id, run.p, run.len);
	/* A share that comes before its run is kept, then taken when the run starts. */
	share_msg(&b, &m, &peer, me.pk, id, 0, 1, 1);
	ok(gossip_aggregator_share(g, &m, &trust, 3, now) == 1, "a share before its run is kept");
	gossip_msg_decode(run.p, run.len, &m);
	gossip_aggregator_event(g, &m, now);
	gossip_aggregator_tick(g, &t, NULL, now);
	ok(gossip_agg_status_load(dir, id, &st) == 0 && st.round == 0 && st.estimate == 4 && st.received == 1,
	   "started: input 7 and the kept share (1, 1): estimate 4 (%g)", st.estimate);
	share_msg(&b, &m, &peer, me.pk, id, 0, 1, 1);
	ok(gossip_aggregator_share(g, &m, &trust, 3, now) == 0, "refused: a second share of one signer in a round");
	share_msg(&b, &m, &outsider, me.pk, id, 0, 1000, 1);
	ok(gossip_aggregator_share(g, &m, &trust, 3, now) == 0, "refused: an outsider's share");
	/* A share the peer sent to another member, replayed here by an outsider (sealing
	 * does not say to whom): its mass would count twice. */
	share_msg(&b, &m, &peer, peer.pk, id, 1, 4, 1);
	ok(gossip_aggregator_share(g, &m, &trust, 3, now) == 0, "refused: a share sent to another member");
	share_msg(&b, &m, &peer, me.pk, id, 1, 1e9, 50);
	ok(gossip_aggregator_share(g, &m, &trust, 3, now) == 0, "refused: more weight than the run has (3 members)");
	share_msg(&b, &m, &peer, me.pk, id, 9, 1, 1);
	ok(gossip_aggregator_share(g, &m, &trust, 3, now) == 0, "refused: a round far ahead");
	share_msg(&b, &m, &peer, me.pk, id, 1, 4, 1);
	ok(gossip_aggregator_share(g, &m, &trust, 3, now) == 1, "a share of the next round is taken");
	gossip_aggregator_tick(g, &t, NULL, now + 1000);
	ok(gossip_agg_status_load(dir, id, &st) == 0 && st.round == 1 && st.estimate == 4 && st.refused == 5 &&
	   st.low == 1 && st.high == 4 && st.shares == 2,
	   "round 1: (7+1+4)/3 = 4, five refused, the spread of the shares' estimates (%g to %g)", st.low, st.high);
	ok(gossip_aggregator_refused(g) == 5, "refusals counted");
	/* Past the deadline and its linger: dropped, the file removed. */
	gossip_aggregator_tick(g, &t, NULL, now + 60000 + GOSSIP_AGG_LINGER_MS);
	ok(access(gossip_agg_path(dir, id), F_OK) < 0, "a run past its deadline is dropped with its file");
	gossip_msg_decode(run.p, run.len, &m);
	gossip_aggregator_event(g, &m, now + 61000);
	gossip_aggregator_tick(g, &t, NULL, now + 61000);
	ok(access(gossip_agg_path(dir, id), F_OK) < 0, "a run seen again past its deadline is not taken");

	gossip_aggregator_free(g);
	gossip_buf_free(&run);
	gossip_buf_free(&b);
	gossip_trust_free(&trust);
	gossip_peers_free(&t);
	gossip_identity_free(&me);
	gossip_identity_free(&peer);
	gossip_identity_free(&outsider);
	rm_dir(dir);
	free(dir);
}

/* The next share sent to the one peer, at the socket fd; opened with ring (0: opened). */
static int next_share_opens(int fd, const struct gossip_keyring *ring)
{
	uint8_t dg[2048];
	struct pollfd p = {fd, POLLIN, 0};
	if (poll(&p, 1, 2000) != 1)
		return -1;
	ssize_t k = recv(fd, dg, sizeof dg, 0);
	struct gossip_buf out = {0};
	int r = k > 0 ? gossip_open_sealed(&out, ring, dg, (size_t)k) : -1;
	gossip_buf_free(&out);
	return r;
}

/* gossip-keyring(5)'s third step, then a reload, during a run: the next shares are sealed
 * with the new key only (a run lasts up to a day; the retired key must be out of use). */
static void reload_part(void)
{
	char *dir = strdup(temp_dir("aggkeys")), addr[64];
	struct gossip_identity me, peer = named_ident("peer");
	struct gossip_peers t = {0};
	struct gossip_buf run = {0};
	struct gossip_msg m;
	uint8_t k1[32], k2[32];
	char b1[64], b2[64];
	memset(k1, 1, 32), memset(k2, 2, 32);
	gossip_b64(b1, k1, 32), gossip_b64(b2, k2, 32);
	struct gossip_keyring r1 = {sodium_malloc(32), 1}, r2 = {sodium_malloc(32), 1};
	memcpy(r1.keys[0], k1, 32), memcpy(r2.keys[0], k2, 32);
	gossip_identity_create(dir, "me", 0, &me);
	FILE *f = fopen(gossip_path(dir, "keyring"), "w");
	fprintf(f, "%s\n", b1);
	fclose(f);
	chmod(gossip_path(dir, "keyring"), 0600);
	/* The peer: alive, at a socket of this test's. */
	int fd = socket(AF_INET, SOCK_DGRAM, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000001)};
	socklen_t sl = sizeof sa;
	bind(fd, (struct sockaddr *)&sa, sizeof sa);
	getsockname(fd, (struct sockaddr *)&sa, &sl);
	snprintf(addr, sizeof addr, "udp://127.0.0.1:%d", ntohs(sa.sin_port));
	struct gossip_peer *p = gossip_peers_find(&t, peer.pk, 1);
	p->state = GOSSIP_P_ALIVE;
	snprintf(p->info.name, sizeof p->info.name, "peer");
	snprintf(p->info.addrs[0], sizeof p->info.addrs[0], "%s", addr);
	p->info.naddrs = 1;
	struct gossip_aggregator *g = gossip_aggregator_new(dir);
	uint64_t now = gossip_now_ms();
	f = fopen(gossip_path(dir, "aggregate.input"), "w");
	fputs("5\n", f);
	fclose(f);
	signed_run(&run, &peer, "-", GOSSIP_AGG_AVG, now, 100);
	gossip_msg_decode(run.p, run.len, &m);
	gossip_aggregator_event(g, &m, now);
	gossip_aggregator_tick(g, &t, NULL, now);
	ok(next_share_opens(fd, &r1) == 0, "a share sealed with the keyring's key");
	f = fopen(gossip_path(dir, "keyring"), "w");
	fprintf(f, "%s\n", b2);
	fclose(f);
	gossip_aggregator_tick(g, &t, NULL, now + 100);
	ok(next_share_opens(fd, &r1) == 0, "before the reload, still the old key");
	gossip_aggregator_reload(g);
	gossip_aggregator_tick(g, &t, NULL, now + 200);
	uint8_t dg[2048];
	struct pollfd pf = {fd, POLLIN, 0};
	ssize_t k = poll(&pf, 1, 2000) == 1 ? recv(fd, dg, sizeof dg, 0) : -1;
	struct gossip_buf out = {0};
	ok(k > 0 && gossip_open_sealed(&out, &r1, dg, (size_t)k) < 0 && gossip_open_sealed(&out, &r2, dg, (size_t)k) == 0,
	   "after it, the new key only");
	gossip_buf_free(&out);
	/* A keyring that does not load keeps the one in force. */
	f = fopen(gossip_path(dir, "keyring"), "w");
	fprintf(f, "not a key\n");
	fclose(f);
	gossip_aggregator_reload(g);
	gossip_aggregator_tick(g, &t, NULL, now + 300);
	ok(next_share_opens(fd, &r2) == 0, "a damaged keyring at a reload: the old one stays");
	close(fd);
	gossip_aggregator_free(g);
	gossip_keyring_free(&r1), gossip_keyring_free(&r2);
	gossip_buf_free(&run);
	gossip_peers_free(&t);
	gossip_identity_free(&me);
	gossip_identity_free(&peer);
	rm_dir(dir);
	free(dir);
}

int main(void)
{
	gossip_init("t-aggregate");
	codec();
	push_sum();
	node_part();
	reload_part();
	return tap_done();
}
