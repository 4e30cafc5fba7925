/* gossip-order: ordered delivery on top of gossip: publish ordered events (send), and
 * print the ordered events a node's store receives in FIFO, causal or total order. */
#include "gossip.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static void usage(int code)
{
	fprintf(code ? stderr : stdout,
	        "usage: gossip-order [-d dir] [-t destination] send name [payload | -]\n"
	        "       gossip-order [-j] [-d dir] [-t destination] [-g seconds] [-H seconds]\n"
	        "                    [-e seconds] fifo | causal | total [name ...]\n");
	exit(code);
}

struct opts {
	const char *dir, *to;
	int json;
	double gap, beat, ttl;
};

/* A positive number of seconds, or exit 2. */
static double seconds(int opt, const char *s)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (!*s || *end || errno || !(v > 0) || v > 86400 * 365)
		gossip_die(GOSSIP_EXIT_ERR, "-%c %s: want a positive number of seconds", opt, s);
	return v;
}


/* Hand messages to a node (as gossip-send -t does): it stores them and spreads them. */
static int hand_over(const char *dir, const char *to, const struct gossip_buf *msgs)
{
	struct gossip_keyring keys;
	struct gossip_out out;
	struct gossip_reader rd;
	if (gossip_keyring_load(&keys, dir) < 0)
		return -1;
	gossip_out_init(&out, 1200, 5000, 0, &keys);
	int r = gossip_out_add(&out, to);
	for (size_t at = 0; r == 0 && at < msgs->len;) {
		size_t len;
		if (gossip_cbor_scan(msgs->p + at, msgs->len - at, &gossip_msg_limits, NULL, &len) != GOSSIP_SCAN_OK)
			break;
		r = gossip_out_queue(&out, msgs->p + at, len);
		at += len;
	}
	if (r == 0 && gossip_out_flush(&out) > 0)
		r = -1;
	(void)rd;
	gossip_out_close(&out);
	gossip_keyring_free(&keys);
	return r;
}

/* ---- send ---- */

static int do_send(const struct opts *o, int argc, char **argv)
{
	struct gossip_buf payload = {0}, msgs = {0};
	struct stat sb;
	int resent;
	if (argc < 2 || argc > 3)
		gossip_die(GOSSIP_EXIT_ERR, "send: give a name and at most one payload (gossip-order send name "
		                            "[payload | -])");
	if (!o->to && isatty(1))
		gossip_die(GOSSIP_EXIT_ERR, "standard output is a terminal: give the node with -t udp://host:port, "
		                            "or pipe it into gossip-merge");
	if (stat(o->dir, &sb) < 0)
		gossip_die(GOSSIP_EXIT_ERR, "%s: %s; make it with gossip-keygen -d %s", o->dir, strerror(errno), o->dir);
	if (argc == 3 && !strcmp(argv[2], "-")) {
		if (gossip_read_file("-", GOSSIP_ORDER_PAYLOAD_MAX + 1, &payload) < 0)
			gossip_die(GOSSIP_EXIT_ERR, "payload: %s", gossip_error());
	} else if (argc == 3 && gossip_buf_put(&payload, argv[2], strlen(argv[2])) < 0) {
		gossip_die(GOSSIP_EXIT_ERR, "out of memory");
	}
	if (argv[1][0] == '_')
		gossip_die(GOSSIP_EXIT_ERR, "send: %s: names starting with '_' are the toolkit's; choose another",
		           argv[1]);
	if (gossip_order_sign(o->dir, argv[1], payload.p, payload.len, &msgs, &resent) < 0)
		gossip_die(GOSSIP_EXIT_ERR, "%s", gossip_error());
	if (o->to) {
		if (hand_over(o->dir, o->to, &msgs) < 0)
			gossip_die(GOSSIP_EXIT_ERR, "%s: not sent: %s (it goes again with the next send)", o->to,
			           gossip_error());
	} else if (gossip_write_all(1, msgs.p, msgs.len) < 0) {
		gossip_die(GOSSIP_EXIT_ERR, "standard output: %s", gossip_error());
	}
	gossip_buf_free(&payload);
	gossip_buf_free(&msgs);
	return GOSSIP_EXIT_OK;
}

/* ---- the filters ---- */

static volatile sig_atomic_t stop;
static void on_stop(int sig)
{
	(void)sig;
	stop = 1;
}

struct filter {
	const struct opts *o;
	struct gossip_orderer ord;
	struct gossip_trust trust;
	struct gossip_store *st;
	char statepath[4200];
	char **names;
	int nnames;
	uint8_t self[32];
	int fresh;  /* no saved state: each origin starts at its lowest seq in the store */
	uint64_t now;
	char to[300];
	uint64_t last_beat, last_sync;
	pid_t sync_pid;
};

static int feed(void *ctx, const struct gossip_entry *en, const uint8_t *p)
{
	struct filter *f = ctx;
	struct gossip_msg m;
	struct gossip_oev e;
	if (en->type != GOSSIP_T_EVENT || gossip_msg_decode(p, en->len, &m) < 0 || gossip_order_of(&m, &e) != 1)
		return 0;
	int r = gossip_orderer_add(&f->ord, &m, &e, f->now);
	gossip_oev_free(&e);
	if (r == GOSSIP_ORDER_LATE) {
		char k[9];
		gossip_short_id(k, m.origin);
		gossip_warn("%s seq %llu: came after the total order passed it (its sender was taken for "
		            "dead): not delivered", k, (unsigned long long)e.seq);
	}
	return r < 0 ? -1 : 0;
}

static void origin_name(const struct filter *f, const uint8_t pk[32], char *out, size_t n)
{
	const struct gossip_signer *s = gossip_trust_find(&f->trust, pk);
	if (s && s->name)
		snprintf(out, n, "%s", s->name);
	else
		gossip_short_id(out, pk);
}

static int wanted(const struct filter *f, const struct gossip_omsg *m)
{
	if (m->heartbeat)
		return 0;
	if (!f->nnames)
		return 1;
	for (int i = 0; i < f->nnames; i++)
		if (strlen(f->names[i]) == m->namelen && !memcmp(f->names[i], m->name, m->namelen))
			return 1;
	return 0;
}

static int plain(const char *s, size_t n)
{
	if (!n)
		return 0;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] <= ' ' || s[i] == '"' || s[i] == 0x7f)
			return 0;
	return 1;
}

static void print_one(const struct filter *f, const struct gossip_omsg *m)
{
	char name[64], k[45];
	origin_name(f, m->origin, name, sizeof name);
	int text = gossip_utf8_valid(m->payload, m->paylen);
	if (f->o->json) {
		gossip_b64(k, m->origin, 32);
		const struct gossip_signer *s = gossip_trust_find(&f->trust, m->origin);
		printf("{\"origin\":\"%s\",\"name\":", k);
		if (s && s->name)
			gossip_put_string(stdout, (const uint8_t *)s->name, strlen(s->name), 0);
		else
			fputs("null", stdout);
		printf(",\"seq\":%llu,\"lamport\":%llu,\"event\":", (unsigned long long)m->seq,
		       (unsigned long long)m->lamport);
		gossip_put_string(stdout, (const uint8_t *)m->name, m->namelen, 0);
		if (text) {
			fputs(",\"payload\":", stdout);
			gossip_put_string(stdout, m->payload, m->paylen, 0);
		} else {
			char *b = malloc(4 * ((m->paylen + 2) / 3) + 1);
			if (b) {
				gossip_b64(b, m->payload, m->paylen);
				printf(",\"payload64\":\"%s\"", b);
				free(b);
			}
		}
		fputs("}\n", stdout);
		return;
	}
	printf("%s %llu %llu ", name, (unsigned long long)m->seq, (unsigned long long)m->lamport);
	if (plain(m->name, m->namelen))
		fwrite(m->name, 1, m->namelen, stdout);
	else
		gossip_put_string(stdout, (const uint8_t *)m->name, m->namelen, 0);
	putchar(' ');
	if (text) {
		gossip_put_string(stdout, m->payload, m->paylen, 0);
	} else {
		char *b = malloc(4 * ((m->paylen + 2) / 3) + 1);
		if (b) {
			gossip_b64(b, m->payload, m->paylen);
			printf("b64'%s'", b);
			free(b);
		}
	}
	putchar('\n');
}

/* Deliver what can go; -1 when the output is gone. */
static int deliver(struct filter *f)
{
	struct gossip_omsg m;
	uint64_t skipped;
	int r, any = 0;
	while ((r = gossip_orderer_next(&f->ord, f->now, &m, &skipped)) > 0) {
		any = 1;
		if (r == 2) {
			char k[64];
			origin_name(f, m.origin, k, sizeof k);
			gossip_warn("%s: %llu ordered events are gone (older than the stores keep events): skipped", k,
			            (unsigned long long)skipped);
			continue;
		}
		if (r == 3) {
			char k[64];
			origin_name(f, m.origin, k, sizeof k);
			gossip_warn("%s: %llu ordered events an event depends on never came (older than the stores "
			            "keep events): it goes without them", k, (unsigned long long)skipped);
			continue;
		}
		if (wanted(f, &m))
			print_one(f, &m);
		gossip_omsg_free(&m);
	}
	if (!any)
		return 0;
	if (fflush(stdout) == EOF || ferror(stdout))
		return -1;
	/* Saved after it is printed: a crash between repeats the last few, never skips. */
	if (gossip_orderer_save(&f->ord, f->statepath) < 0)
		gossip_warn("%s: %s", f->statepath, gossip_error());
	return 0;
}

/* Total order waits on the live members of the peer table (alive and suspect: a member
 * blocks the order until it is declared dead), self included; no table: every origin. */
static void load_members(struct filter *f)
{
	struct gossip_peers t;
	if (gossip_peers_load(&t, f->o->dir) < 0 || t.n == 0) {
		if (t.n == 0)
			gossip_peers_free(&t);
		return;
	}
	uint8_t(*pks)[32] = calloc(t.n + 1, 32);
	size_t n = 0;
	int self = 0;
	for (size_t i = 0; pks && i < t.n; i++)
		if (t.v[i].state == GOSSIP_P_ALIVE || t.v[i].state == GOSSIP_P_SUSPECT || t.v[i].self) {
			memcpy(pks[n++], t.v[i].pk, 32);
			self |= !memcmp(t.v[i].pk, f->self, 32);
		}
	if (pks && !self)
		memcpy(pks[n++], f->self, 32);
	if (pks)
		gossip_orderer_members(&f->ord, (const uint8_t(*)[32])pks, n);
	free(pks);
	gossip_peers_free(&t);
}

static void heartbeat(struct filter *f, uint64_t mono)
{
	struct gossip_buf msgs = {0};
	int resent;
	if (mono - f->last_beat < (uint64_t)(f->o->beat * 1000) || !gossip_orderer_waits_on(&f->ord, f->self))
		return;
	if (!f->to[0] && !(f->o->to && snprintf(f->to, sizeof f->to, "%s", f->o->to) > 0) &&
	    !gossip_node_udp(f->o->dir, f->to, sizeof f->to))
		return;
	f->last_beat = mono;
	if (gossip_order_sign(f->o->dir, GOSSIP_KEY_ORDER_HB, NULL, 0, &msgs, &resent) < 0 ||
	    hand_over(f->o->dir, f->to, &msgs) < 0)
		gossip_warn("heartbeat: %s", gossip_error());
	gossip_buf_free(&msgs);
}

/* A gap that lasts: anti-entropy with a random live member, in a child. */
static void fill_gaps(struct filter *f, uint64_t mono)
{
	int status;
	if (f->sync_pid > 0 && waitpid(f->sync_pid, &status, WNOHANG) == f->sync_pid)
		f->sync_pid = 0;
	uint64_t gap = (uint64_t)(f->o->gap * 1000);
	if (f->sync_pid > 0 || gossip_orderer_oldest(&f->ord, f->now) < gap || mono - f->last_sync < gap)
		return;
	f->last_sync = mono;
	/* One such sync at a time on the node, one a gap interval: its filters read one
	 * store, so what one brings fills the others' gaps too. DIR/order.gap's lock is held
	 * while a sync runs (by the child, which keeps the descriptor), its time is when the
	 * last one started; a filter that finds either asks again in a quarter second. */
	int lk = open(gossip_path(f->o->dir, "order.gap"), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	struct stat sb;
	if (lk >= 0) {
		int busy = flock(lk, LOCK_EX | LOCK_NB) < 0;
		/* A new file (empty) has no start in it. */
		if (!busy && fstat(lk, &sb) == 0 && sb.st_size > 0) {
			uint64_t at = (uint64_t)sb.st_mtim.tv_sec * 1000 + (uint64_t)sb.st_mtim.tv_nsec / 1000000;
			busy = f->now >= at && f->now - at < gap;
		}
		if (busy) {
			close(lk);
			f->last_sync = mono - gap + (gap < 250 ? gap : 250);
			return;
		}
		if (ftruncate(lk, 1) == 0)  /* else (a full disk) no stamp: the sync goes anyway */
			futimens(lk, NULL);
	}
	pid_t pid = fork();
	if (pid == 0) {
		if (lk >= 0)
			fcntl(lk, F_SETFD, 0);
		int null = open("/dev/null", O_RDWR);
		if (null >= 0) {
			dup2(null, 0);
			dup2(null, 1);
		}
		gossip_exec_signals(0);
		execl("/bin/sh", "sh", "-c",
		      "peer=$(gossip-peers -d \"$1\" -s pick 2>/dev/null) && "
		      "exec gossip-merge -d \"$1\" -t 10 sync \"$peer\" 2>/dev/null",
		      "sh", f->o->dir, (char *)NULL);
		_exit(127);
	}
	if (lk >= 0)
		close(lk);
	if (pid > 0)
		f->sync_pid = pid;
}

static int do_filter(const struct opts *o, int mode, int argc, char **argv)
{
	static struct filter f;
	struct stat sb;
	char pubname[64];
	f.o = o;
	f.names = argv + 1;
	f.nnames = argc - 1;
	for (int i = 0; i < f.nnames; i++)
		if (!f.names[i][0])
			gossip_die(GOSSIP_EXIT_ERR, "%s: an empty name; give event names", argv[0]);
	if (stat(gossip_path(o->dir, "store"), &sb) < 0)
		gossip_die(GOSSIP_EXIT_ERR, "%s: %s; start a node there (gossip-node -d %s), or merge into it",
		           gossip_path(o->dir, "store"), strerror(errno), o->dir);
	if (gossip_pub_load(o->dir, f.self, pubname, sizeof pubname) < 0)
		gossip_die(GOSSIP_EXIT_ERR, "key.pub: %s", gossip_error());
	if (gossip_trust_load(&f.trust, o->dir) < 0)
		gossip_die(GOSSIP_EXIT_ERR, "trusted: %s", gossip_error());
	struct gossip_store_opts so = gossip_store_defaults;
	so.readonly = 1;
	if (!(f.st = gossip_store_open(o->dir, &so)))
		gossip_die(GOSSIP_EXIT_ERR, "store: %s", gossip_error());
	gossip_store_set_visible(f.st, gossip_trust_has, &f.trust);
	gossip_orderer_init(&f.ord, mode);
	f.ord.expire_ms = (uint64_t)(o->ttl * 1000);
	snprintf(f.statepath, sizeof f.statepath, "%s", gossip_path(o->dir, mode == GOSSIP_ORDER_FIFO ? "order.fifo"
	                                                                 : mode == GOSSIP_ORDER_CAUSAL ? "order.causal"
	                                                                                               : "order.total"));
	int loaded = gossip_orderer_load(&f.ord, f.statepath);
	if (loaded < 0)
		gossip_die(GOSSIP_EXIT_ERR, "%s", gossip_error());
	f.fresh = loaded == 0;

	struct sigaction sa = {0};
	sa.sa_handler = on_stop;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	/* The follower first, then what is stored already: nothing falls between (what
	 * both give is a duplicate, dropped). */
	struct gossip_store_follower *fo = gossip_store_follow(f.st);
	if (!fo)
		gossip_die(GOSSIP_EXIT_ERR, "store: %s", gossip_error());
	f.now = gossip_now_ms();
	if (gossip_store_each(f.st, 0, feed, &f) < 0)
		gossip_die(GOSSIP_EXIT_ERR, "store: %s", gossip_error());
	if (f.fresh)  /* each origin from the lowest seq the store still holds */
		for (size_t i = 0; i < f.ord.norigins; i++) {
			uint64_t low = 0;
			for (size_t j = 0; j < f.ord.nheld; j++)
				if (!memcmp(f.ord.held[j].origin, f.ord.origins[i].pk, 32) && (!low || f.ord.held[j].seq < low))
					low = f.ord.held[j].seq;
			if (low)
				gossip_orderer_start(&f.ord, f.ord.origins[i].pk, low);
		}
	if (mode == GOSSIP_ORDER_TOTAL)
		load_members(&f);
	int dw = gossip_dirwatch_open(o->dir);
	static const char *const names[] = {"store", "peers", NULL};
	uint64_t members_at = gossip_mono_ms();
	int status = GOSSIP_EXIT_OK;
	while (!stop) {
		f.now = gossip_now_ms();
		uint64_t mono = gossip_mono_ms();
		if (deliver(&f) < 0) {
			if (errno != EPIPE)
				status = GOSSIP_EXIT_ERR, gossip_warn("standard output: %s", strerror(errno));
			break;
		}
		if (mode == GOSSIP_ORDER_TOTAL) {
			if (mono - members_at >= 200) {
				load_members(&f);
				members_at = mono;
			}
			heartbeat(&f, mono);
		}
		fill_gaps(&f, mono);
		/* The reader gone (head -1 has its line): stop now, not at the next line. */
		struct pollfd out = {1, 0, 0};
		if (poll(&out, 1, 0) == 1 && (out.revents & (POLLERR | POLLHUP)))
			break;
		gossip_dirwatch_wait(dw, names, 50);
		if (stop)
			break;
		if (!gossip_store_follow_changed(fo))
			continue;
		f.now = gossip_now_ms();
		if (gossip_store_follow_next(fo, feed, &f) < 0) {
			/* A stop that cut the wait for the store's lock short is a stop. */
			if (stop)
				break;
			gossip_warn("%s", gossip_error());
			status = GOSSIP_EXIT_ERR;
			break;
		}
	}
	if (f.sync_pid > 0) {
		kill(f.sync_pid, SIGTERM);
		waitpid(f.sync_pid, NULL, 0);
	}
	if (dw >= 0)
		close(dw);
	gossip_orderer_save(&f.ord, f.statepath);
	gossip_store_follow_free(fo);
	gossip_orderer_free(&f.ord);
	gossip_store_close(f.st);
	gossip_trust_free(&f.trust);
	return status;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"dir", required_argument, NULL, 'd'}, {"to", required_argument, NULL, 't'},
		{"json", no_argument, NULL, 'j'}, {"gap", required_argument, NULL, 'g'},
		{"heartbeat", required_argument, NULL, 'H'}, {"event-ttl", required_argument, NULL, 'e'},
		{"help", no_argument, NULL, 'h'}, {"version", no_argument, NULL, 'V'}, {0}};
	struct opts o = {.gap = 2, .beat = 0.5, .ttl = 3600};
	const char *dir = NULL;
	int c;
	gossip_init(argv[0]);
	while ((c = getopt_long(argc, argv, "+d:t:jg:H:e:h", longopts, NULL)) != -1) {
		gossip_opt_once(c);
		switch (c) {
		case 'd': dir = optarg; break;
		case 't': o.to = optarg; break;
		case 'j': o.json = 1; break;
		case 'g': o.gap = seconds('g', optarg); break;
		case 'H': o.beat = seconds('H', optarg); break;
		case 'e': o.ttl = seconds('e', optarg); break;
		case 'h': usage(0); break;
		case 'V': gossip_print_version(); return 0;
		default: usage(GOSSIP_EXIT_ERR);
		}
	}
	argc -= optind;
	argv += optind;
	if (argc < 1)
		gossip_die(GOSSIP_EXIT_ERR, "give a verb: send, fifo, causal or total (gossip-order --help)");
	o.dir = gossip_state_dir(dir);
	if (o.to) {
		struct gossip_addr a;
		if (gossip_addr_parse(&a, o.to) < 0)
			gossip_die(GOSSIP_EXIT_ERR, "-t %s: %s", o.to, gossip_error());
	}
	if (!strcmp(argv[0], "send")) {
		if (o.json)
			gossip_die(GOSSIP_EXIT_ERR, "send: -j is for the filters");
		return do_send(&o, argc, argv);
	}
	int mode = gossip_order_mode_parse(argv[0]);
	if (mode < 0)
		gossip_die(GOSSIP_EXIT_ERR, "%s: not a verb; give send, fifo, causal or total", argv[0]);
	return do_filter(&o, mode, argc, argv);
}
