/* gossip-send: make and sign messages, or forward the messages on stdin, and send them
 * to stdout or to peers: every destination, or K random ones. */
#include "gossip.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void usage(int code)
{
	fprintf(code ? stderr : stdout,
	        "usage: gossip-send [-b] [-d dir] set key value\n"
	        "       gossip-send [-b] [-d dir] -f file set key\n"
	        "       gossip-send [-d dir] del key\n"
	        "       gossip-send [-b] [-d dir] event name [data]\n"
	        "       gossip-send [-b] [-d dir] -f file event name\n"
	        "       gossip-send [-d dir] batch [file]\n"
	        "       gossip-send [-d dir] [-k fanout] [-p peers] [-m mtu] [-w seconds] destination ...\n"
	        "       gossip-send [-d dir] [-k fanout] [-m mtu] [-w seconds] -M\n"
	        "       gossip-send [options] [-t destination] [-p peers] verb ...\n");
	exit(code);
}

struct sender {
	struct gossip_author me;
	struct gossip_buf out;
	int bytes;  /* -b: values are byte strings even when they are valid UTF-8 */
	struct gossip_out peers;  /* where messages go; none: stdout */
	struct gossip_keyring keys;
	int members;  /* -M: the live members in the peer table are the destinations */
	const char *dir;
	struct gossip_peers table;
	struct timespec table_mtime;
	int fanout;
	uint64_t forwarded;  /* copies queued to members (rumor sends), for DIR/stats/send */
	uint64_t forwarded_membership;  /* those of membership traffic */
	struct gossip_stats counters;
};

/* SIGHUP: read the keyring again, so that the next datagram or stream is sealed with
 * its first key (key rotation without a restart). A file that does not load leaves the
 * old keyring in force. The destinations point at s->keys, which is replaced in place. */
static void reload(struct sender *s)
{
	struct gossip_keyring k;
	if (gossip_keyring_load(&k, s->dir) < 0) {
		gossip_warn("reload: keyring: %s; keeping the old one", gossip_error());
		return;
	}
	gossip_keyring_free(&s->keys);
	s->keys = k;
	gossip_warn("reloaded: %zu cluster keys", s->keys.n);
}

/* -M: read the peer table again when gossip-peers observe has rewritten it. */
static void refresh_members(struct sender *s)
{
	struct stat st;
	if (stat(gossip_path(s->dir, "peers"), &st) < 0 ||
	    (st.st_mtim.tv_sec == s->table_mtime.tv_sec && st.st_mtim.tv_nsec == s->table_mtime.tv_nsec))
		return;
	struct gossip_peers t;
	if (gossip_peers_load(&t, s->dir) < 0) {
		gossip_warn("%s", gossip_error());
		return;
	}
	gossip_peers_free(&s->table);
	s->table = t;
	s->table_mtime = st.st_mtim;
}

/* Queue one message: to the chosen members (-M), or to the fixed destinations. */
static int queue_to(struct sender *s, const uint8_t *p, size_t n)
{
	if (!s->members) {
		s->forwarded += s->peers.n;
		return gossip_out_queue(&s->peers, p, n);
	}
	struct gossip_peers_cfg cfg = gossip_peers_defaults;
	size_t k = s->fanout ? (size_t)s->fanout : s->table.n;
	struct gossip_peer **pick = calloc(k + 1, sizeof *pick);
	if (!pick)
		return -1;
	size_t got = gossip_peers_pick(&s->table, &cfg, k, pick);
	for (size_t i = 0; i < got; i++) {
		const char *a = gossip_member_addr(&pick[i]->info, GOSSIP_UDP);
		long idx = a ? gossip_out_index(&s->peers, a) : -1;
		if (idx >= 0 && gossip_out_queue_to(&s->peers, (size_t)idx, p, n) < 0) {
			free(pick);
			return -1;
		}
		s->forwarded += idx >= 0;
	}
	free(pick);
	return 0;
}

/* Queue one message, and count its sends: membership traffic apart, as observe counts. */
static int queue(struct sender *s, const uint8_t *p, size_t n)
{
	struct gossip_msg m;
	uint64_t before = s->forwarded;
	int r = queue_to(s, p, n);
	if (s->forwarded > before && gossip_msg_decode(p, n, &m) == 0 && gossip_msg_is_membership(&m))
		s->forwarded_membership += s->forwarded - before;
	return r;
}

/* Sign one message into s->out; 0, or -1 with the reason in gossip_error(). */
static int make(struct sender *s, int type, const char *key, size_t keylen, const uint8_t *value,
                size_t valuelen, int has_value)
{
	struct gossip_msg m = {0};
	m.type = (unsigned)type;
	m.key = (const uint8_t *)key;
	m.keylen = keylen;
	m.value = value;
	m.valuelen = valuelen;
	m.has_value = has_value;
	m.value_text = has_value && !s->bytes && gossip_utf8_valid(value, valuelen);
	/* Check what can be checked before a version is spent on it. */
	if (keylen == 0 || keylen > GOSSIP_KEY_MAX || !gossip_utf8_valid(m.key, keylen)) {
		gossip_seterr("key must be 1 to %d bytes of UTF-8", GOSSIP_KEY_MAX);
		return -1;
	}
	if (has_value && valuelen > GOSSIP_VALUE_MAX) {
		gossip_seterr("value is %zu bytes, at most %d", valuelen, GOSSIP_VALUE_MAX);
		return -1;
	}
	return gossip_author_sign(&s->me, &s->out, &m);
}

static void flush_out(struct sender *s)
{
	if (!s->peers.n && !s->members) {
		if (gossip_write_all(1, s->out.p, s->out.len) < 0)
			gossip_die(GOSSIP_EXIT_ERR, "stdout: %s", strerror(errno));
	} else {
		size_t at = 0, k;
		while (at < s->out.len &&
		       gossip_cbor_scan(s->out.p + at, s->out.len - at, &gossip_msg_limits, NULL, &k) ==
		               GOSSIP_SCAN_OK) {
			if (queue(s, s->out.p + at, k) < 0)
				gossip_die(GOSSIP_EXIT_ERR, "%s", gossip_error());
			at += k;
		}
		gossip_out_flush(&s->peers);
	}
	s->out.len = 0;
}

/* gossip_wait_input, with the counters written while idle: 1 when a SIGHUP came. */
static int wait_input(struct sender *s)
{
	struct pollfd p = {0, POLLIN, 0};
	for (;;) {
		if (gossip_hup_taken())
			return 1;
		int r = poll(&p, 1, 1000);
		gossip_stats_tick(&s->counters, gossip_now_ms());
		if (r > 0)
			return gossip_hup_taken();
	}
}

/* No verb: forward every message on stdin to the peers, each batch as it arrives. */
static int forward(struct sender *s)
{
	struct gossip_reader r;
	const uint8_t *p;
	size_t n;
	uint64_t off;
	int got, status = GOSSIP_EXIT_OK;
	gossip_reader_init(&r, 0, "stdin", &gossip_msg_limits);
	gossip_stats_open(&s->counters, s->dir, "send");
	gossip_stats_add(&s->counters, "forwarded", &s->forwarded);
	gossip_stats_add(&s->counters, "forwarded_membership", &s->forwarded_membership);
	for (;;) {
		/* A SIGHUP is taken while waiting (an idle sender reloads at once) and before
		 * each message is queued: what is sent after the signal is sealed anew. */
		if (!gossip_reader_ready(&r) && wait_input(s)) {
			reload(s);
			continue;
		}
		if ((got = gossip_reader_next(&r, &p, &n, &off)) != 1)
			break;
		if (gossip_hup_taken())
			reload(s);
		struct gossip_msg m;
		if (gossip_msg_decode(p, n, &m) < 0) {
			gossip_warn("stdin: offset %llu: %s", (unsigned long long)off, gossip_error());
			status = GOSSIP_EXIT_NO;
		} else {
			if (s->members)
				refresh_members(s);
			if (queue(s, p, n) < 0)
				gossip_die(GOSSIP_EXIT_ERR, "%s", gossip_error());
		}
		if (!gossip_reader_ready(&r)) {
			gossip_out_flush(&s->peers);
			gossip_stats_tick(&s->counters, gossip_now_ms());
		}
	}
	gossip_out_flush(&s->peers);
	gossip_stats_close(&s->counters);
	if (got < 0) {
		gossip_warn("%s", gossip_error());
		status = GOSSIP_EXIT_ERR;
	}
	gossip_reader_free(&r);
	return status;
}

/* One batch line: "set KEY VALUE", "set64 KEY BASE64", "del KEY", "event NAME [DATA]",
 * "event64 NAME BASE64"; blank lines and # comments are skipped. */
static int batch_line(struct sender *s, char *line, size_t n)
{
	int r;
	if (n && line[n - 1] == '\r')
		line[--n] = 0;
	if (n == 0 || line[0] == '#')
		return 0;
	char *verb = line, *key, *rest = NULL;
	char *sp = memchr(line, ' ', n);
	if (!sp) {
		gossip_seterr("want a verb and a key");
		return -1;
	}
	*sp = 0;
	key = sp + 1;
	if ((sp = strchr(key, ' '))) {
		*sp = 0;
		rest = sp + 1;
	}
	size_t restlen = rest ? n - (size_t)(rest - line) : 0;
	int b64 = 0, type;
	if (strcmp(verb, "set64") == 0 || strcmp(verb, "event64") == 0) {
		b64 = 1;
		verb[strlen(verb) - 2] = 0;
	}
	if ((type = gossip_type_parse(verb)) < 0) {
		gossip_seterr("unknown verb \"%s\" (set, set64, del, event, event64)", verb);
		return -1;
	}
	if (type == GOSSIP_T_SET && !rest) {
		gossip_seterr("set wants a key and a value");
		return -1;
	}
	if (type == GOSSIP_T_DEL && rest) {
		gossip_seterr("del takes a key only");
		return -1;
	}
	if (b64 && type == GOSSIP_T_EVENT && !rest) {
		gossip_seterr("event64 wants a name and base64 data");
		return -1;
	}
	if (b64) {
		size_t cap = restlen / 4 * 3 + 3, got;
		const char *end;
		uint8_t *bin = malloc(cap);
		if (!bin) {
			gossip_seterr("out of memory");
			return -1;
		}
		if (sodium_base642bin(bin, cap, rest, restlen, NULL, &got, &end,
		                      sodium_base64_VARIANT_ORIGINAL) != 0 || end != rest + restlen) {
			free(bin);
			gossip_seterr("the value is not base64");
			return -1;
		}
		int saved = s->bytes;
		s->bytes = 1;
		r = make(s, type, key, strlen(key), bin, got, 1);
		s->bytes = saved;
		free(bin);
		return r;
	}
	return make(s, type, key, strlen(key), (const uint8_t *)rest, restlen, rest != NULL);
}

static int batch(struct sender *s, const char *path)
{
	int fd = !path || strcmp(path, "-") == 0 ? 0 : open(path, O_RDONLY | O_CLOEXEC);
	const char *name = fd == 0 ? "stdin" : path;
	static char buf[1 << 17];
	size_t have = 0;
	unsigned long lineno = 0;
	if (fd < 0)
		gossip_die(GOSSIP_EXIT_ERR, "%s: cannot open: %s", path, strerror(errno));
	for (;;) {
		if (s->peers.n || s->members) {
			gossip_wait_input(fd);
			if (gossip_hup_taken())
				reload(s);
		}
		ssize_t k = read(fd, buf + have, sizeof buf - 1 - have);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			gossip_die(GOSSIP_EXIT_ERR, "%s: cannot read: %s", name, strerror(errno));
		have += (size_t)k;
		if (k == 0 && have && buf[have - 1] != '\n')
			buf[have++] = '\n';  /* a last line without its newline */
		/* Sign every complete line read so far, then write them in one go, so that a
		 * slow producer's lines go out as they come and a fast one's in large writes. */
		char *p = buf, *nl;
		while ((nl = memchr(p, '\n', have - (size_t)(p - buf)))) {
			*nl = 0;
			lineno++;
			if (batch_line(s, p, (size_t)(nl - p)) < 0) {
				flush_out(s);
				gossip_die(GOSSIP_EXIT_ERR, "%s line %lu: %s", name, lineno, gossip_error());
			}
			p = nl + 1;
		}
		have -= (size_t)(p - buf);
		memmove(buf, p, have);
		if ((s->peers.n || s->members) && gossip_hup_taken())
			reload(s);
		flush_out(s);
		if (k == 0)
			break;
		if (have == sizeof buf - 1)
			gossip_die(GOSSIP_EXIT_ERR, "%s line %lu: line longer than %zu bytes", name,
			           lineno + 1, sizeof buf - 2);
	}
	if (fd != 0)
		close(fd);
	return 0;
}

int main(int argc, char **argv)
{
	enum { O_MTU = 256 };
	static const struct option longopts[] = {
		{"dir", required_argument, NULL, 'd'}, {"file", required_argument, NULL, 'f'},
		{"bytes", no_argument, NULL, 'b'}, {"to", required_argument, NULL, 't'},
		{"peers", required_argument, NULL, 'p'}, {"fanout", required_argument, NULL, 'k'},
		{"mtu", required_argument, NULL, 'm'}, {"timeout", required_argument, NULL, 'w'},
		{"members", no_argument, NULL, 'M'},
		{"help", no_argument, NULL, 'h'}, {"version", no_argument, NULL, 'V'}, {0}};
	const char *dir = NULL, *file = NULL, *peerfile = NULL;
	struct sender s = {0};
	struct gossip_buf value = {0};
	int c, type, fanout = 0, mtu = 1200, timeout = 5;
	char *end;
	const char **to = calloc((size_t)argc, sizeof *to);
	int nto = 0;

	gossip_init(argv[0]);
	while ((c = getopt_long(argc, argv, "+bd:f:t:p:k:m:w:Mh", longopts, NULL)) != -1) {
		if (c != 't')
			gossip_opt_once(c);
		switch (c) {
		case 'b': s.bytes = 1; break;
		case 'd': dir = optarg; break;
		case 'f': file = optarg; break;
		case 't': to[nto++] = optarg; break;
		case 'p': peerfile = optarg; break;
		case 'k':
			fanout = (int)strtol(optarg, &end, 10);
			if (*end || fanout < 1 || fanout > 65536)
				gossip_die(GOSSIP_EXIT_ERR, "-k %s: want a fanout of 1 or more", optarg);
			break;
		case 'm':
			mtu = (int)strtol(optarg, &end, 10);
			if (*end || mtu < 256 || mtu > 65507)
				gossip_die(GOSSIP_EXIT_ERR, "-m %s: want a datagram size of 256 to 65507", optarg);
			break;
		case 'w':
			timeout = (int)strtol(optarg, &end, 10);
			if (*end || timeout < 1 || timeout > 3600)
				gossip_die(GOSSIP_EXIT_ERR, "-w %s: want seconds, 1 to 3600", optarg);
			break;
		case 'M': s.members = 1; break;
		case 'h': usage(GOSSIP_EXIT_OK); break;
		case 'V': gossip_print_version(); break;
		default: usage(GOSSIP_EXIT_ERR);
		}
	}
	argc -= optind;
	argv += optind;
	s.fanout = fanout;
	gossip_out_init(&s.peers, (size_t)mtu, timeout * 1000, fanout, &s.keys);
	dir = gossip_state_dir(dir);
	s.dir = dir;
	const char *verb = argc ? argv[0] : NULL;
	int is_batch = verb && strcmp(verb, "batch") == 0;
	type = verb ? gossip_type_parse(verb) : -1;
	int forwarding = !is_batch && type < 0 && (!verb || strstr(verb, "://") || strncmp(verb, "unix:", 5) == 0);
	if (forwarding) {
		for (int i = 0; i < argc; i++)
			to[nto++] = argv[i];
		if (!nto && !peerfile && !s.members) {
			gossip_warn("no verb and no destination: give set, del, event or batch, or peers");
			usage(GOSSIP_EXIT_ERR);
		}
		if (file || s.bytes)
			usage(GOSSIP_EXIT_ERR);
	} else if (!is_batch && type < 0) {
		gossip_warn("unknown verb \"%s\": give set, del, event or batch", verb);
		usage(GOSSIP_EXIT_ERR);
	} else if (is_batch ? argc > 2 || file
	                    : type == GOSSIP_T_SET ? argc != (file ? 2 : 3)
	                    : type == GOSSIP_T_DEL ? argc != 2 || file
	                                           : argc < 2 || argc > (file ? 2 : 3))
		usage(GOSSIP_EXIT_ERR);
	for (int i = 0; i < nto; i++)
		if (gossip_out_add(&s.peers, to[i]) < 0)
			gossip_die(GOSSIP_EXIT_ERR, "%s", gossip_error());
	if (peerfile && gossip_out_add_file(&s.peers, peerfile) < 0)
		gossip_die(GOSSIP_EXIT_ERR, "peers: %s", gossip_error());
	if (s.members && (nto || peerfile))
		gossip_die(GOSSIP_EXIT_ERR, "-M takes the destinations from the peer table: no -t or -p");
	if (s.members)
		refresh_members(&s);
	else if ((forwarding || fanout || peerfile || nto) && !s.peers.n)
		gossip_die(GOSSIP_EXIT_ERR, "peers: %s lists no destination", peerfile ? peerfile : "-p");
	if (!s.peers.n && !s.members && isatty(1))
		gossip_die(GOSSIP_EXIT_ERR, "stdout is a terminal: pipe the messages into gossip-inspect, "
		                            "gossip-merge, or a file");
	if ((s.peers.n || s.members) && gossip_keyring_load(&s.keys, dir) < 0)
		gossip_die(GOSSIP_EXIT_ERR, "keyring: %s", gossip_error());
	signal(SIGPIPE, SIG_IGN);
	/* Sending to peers from stdin runs as long as its input: SIGHUP reloads the keyring. */
	if (s.peers.n || s.members)
		gossip_hup_catch();

	int status = GOSSIP_EXIT_OK;
	if (forwarding) {
		status = forward(&s);
	} else {
		if (file && gossip_read_file(file, GOSSIP_VALUE_MAX, &value) < 0)
			gossip_die(GOSSIP_EXIT_ERR, "value: %s", gossip_error());
		if (gossip_author_open(&s.me, dir, is_batch ? 1024 : 1) < 0)
			gossip_die(GOSSIP_EXIT_ERR, "%s", gossip_error());
		if (is_batch) {
			batch(&s, argc > 1 ? argv[1] : NULL);
		} else {
			const uint8_t *v = file ? value.p : argc > 2 ? (const uint8_t *)argv[2] : NULL;
			size_t vlen = file ? value.len : argc > 2 ? strlen(argv[2]) : 0;
			if (make(&s, type, argv[1], strlen(argv[1]), v ? v : (const uint8_t *)"", vlen,
			         file || argc > 2) < 0)
				gossip_die(GOSSIP_EXIT_ERR, "%s: %s", verb, gossip_error());
			flush_out(&s);
		}
		if (gossip_author_close(&s.me) < 0)
			gossip_die(GOSSIP_EXIT_ERR, "%s", gossip_error());
	}
	if (s.peers.failures && status == GOSSIP_EXIT_OK)
		status = GOSSIP_EXIT_NO;
	gossip_out_close(&s.peers);
	gossip_peers_free(&s.table);
	gossip_keyring_free(&s.keys);
	gossip_buf_free(&s.out);
	gossip_buf_free(&value);
	free(to);
	return status;
}
