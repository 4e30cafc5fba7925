/* gossip-listen: receive on sockets (or inetd's stdin), open sealed traffic, verify and
 * authorize every message, and print the ones that pass, at once. */
#include "gossip.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void usage(int code)
{
	fprintf(code ? stderr : stdout,
	        "usage: gossip-listen [-q] [-d dir] [-a file] [-c connections] [-t seconds] [-s command]\n"
	        "                     [-H socket] [--max-skew seconds] address ...\n"
	        "       gossip-listen [-q] [-d dir] [-s command] [-H socket] [--max-skew seconds] -\n");
	exit(code);
}

enum { R_MALFORMED, R_BADSIG, R_UNTRUSTED, R_FORBIDDEN, R_UNSEALED, R_WRONGKEY, R_TOOBIG,
       R_FUTURE, R_N };
static const char *const reason_names[R_N] = {"malformed", "bad signature", "untrusted",
                                              "key not allowed", "not sealed", "wrong key",
                                              "too large", "from the future"};
/* The same reasons as counters in DIR/stats/listen (gossip-node status). */
static const char *const reason_counters[R_N] = {"refused_malformed", "refused_bad_signature",
                                                 "refused_untrusted", "refused_forbidden",
                                                 "refused_unsealed", "refused_wrong_key",
                                                 "refused_too_large", "refused_future"};
static struct {
	uint64_t datagrams, streams, bytes, accepted, dups, rejected[R_N];
} count;
static struct gossip_stats counters;

static struct gossip_trust trust;
static uint64_t max_skew_ms;  /* 0: the default */
static struct gossip_keyring keys;
static struct gossip_buf out, plain;
static int quiet;
static volatile sig_atomic_t want_stats, want_exit, want_reload;
static const char *statedir, *sync_cmd;
static const char *hand_path;  /* -H: where syncs go first (gossip-peers observe -H) */
/* At most SYNCS_MAX syncs at once, and SYNCS_PER_PEER from one peer address, so that a
 * few bad peers cannot take every slot (each sync ends by its command's time limit); a
 * stream that is no whole sync request after SYNC_WAIT_MS is taken as messages. When
 * DIR/peers names members, syncs from addresses that are no member's (strangers: an
 * outsider, or a node joining) share STRANGER_SLOTS, so that outsiders from many
 * addresses cannot take the slots the members' anti-entropy needs. */
enum { SYNCS_MAX = 16, SYNCS_PER_PEER = 4, STRANGER_SLOTS = 4, SYNCS_PER_STRANGER = 1, SYNC_WAIT_MS = 1000 };
static struct {
	pid_t pid;  /* 0: a free slot */
	int stranger;
	char who[64];
} syncs[SYNCS_MAX];

/* ---- what passes ---- */

/* Messages by hash, direct-mapped so that memory stays fixed: those accepted recently (a
 * duplicate, the common case in gossip, costs no signature check and is not printed
 * again), and recent forgeries (a bad signature under a trusted kid: the same bytes again
 * cost no second check). */
struct hashes {
	uint8_t (*v)[16];
	uint32_t n;
};
static struct hashes seen = {.n = 1 << 16}, forged = {.n = 1 << 12};

static uint8_t *slot_of(const struct hashes *c, const uint8_t h[16])
{
	uint32_t i;
	memcpy(&i, h, 4);
	return c->v[i % c->n];
}

static int known(const struct hashes *c, const uint8_t h[16])
{
	return memcmp(slot_of(c, h), h, 16) == 0;
}

static void remember(struct hashes *c, const uint8_t h[16])
{
	memcpy(slot_of(c, h), h, 16);
}

/* Rejections by source address: what proves nothing about a signer is charged to where
 * it came from. A small table; a new address takes the place of the one with the fewest. */
enum { ADDRS = 64 };
static struct by_addr {
	char addr[320];
	uint64_t count, noted;  /* rejections; the second of the last line in rejects */
} by_addr[ADDRS];

static void charge_addr(const char *src, const char *reason)
{
	struct by_addr *a = NULL, *fewest = &by_addr[0];
	uint64_t sec = gossip_now_ms() / 1000;
	for (int i = 0; i < ADDRS && !a; i++) {
		if (strcmp(by_addr[i].addr, src) == 0)
			a = &by_addr[i];
		else if (by_addr[i].count < fewest->count)
			fewest = &by_addr[i];
	}
	if (!a) {
		a = fewest;
		snprintf(a->addr, sizeof a->addr, "%s", src);
		a->count = a->noted = 0;
	}
	a->count++;
	/* One line per address a second (and at most 20 in all): one flooding address does
	 * not take the others' lines. */
	if (a->noted != sec) {
		a->noted = sec;
		gossip_note_reject_addr(statedir, src, reason);
	}
}

/* One line per rejection, at most 20 a second: a flood must not drown the log. Anything
 * but what a valid signature proves against its signer is charged to the source. */
static struct gossip_rate reject_rate;

static void reject(int reason, const char *src, uint64_t off, const char *why)
{
	struct gossip_rate *rate = &reject_rate;
	uint64_t hidden;
	count.rejected[reason]++;
	if (reason != R_FORBIDDEN && reason != R_FUTURE)
		charge_addr(src, reason_names[reason]);
	if (quiet)
		return;
	int shown = gossip_rate_allow(rate, 20, gossip_now_ms(), &hidden);
	if (hidden)
		gossip_warn("%llu more rejections not shown", (unsigned long long)hidden);
	if (shown)
		gossip_warn("%s: offset %llu: %s", src, (unsigned long long)off, why);
}

/* The messages of one datagram or chunk: a CBOR sequence. A bad item ends it; so does a
 * forgery (a bad signature under a trusted kid), which no member passes on: what follows
 * it is a forger's too, and each would cost a signature check. -1 after a forgery. */
static int take_messages(const uint8_t *p, size_t n, const char *src, uint64_t base)
{
	size_t at = 0, len;
	while (at < n) {
		int s = gossip_cbor_scan(p + at, n - at, &gossip_msg_limits, NULL, &len);
		if (s != GOSSIP_SCAN_OK) {
			if (s == GOSSIP_SCAN_MORE)
				gossip_seterr("truncated item (%zu bytes)", n - at);
			reject(strstr(gossip_error(), "larger") ? R_TOOBIG : R_MALFORMED, src, base + at,
			       gossip_error());
			return 0;
		}
		uint8_t h[16];
		crypto_generichash(h, 16, p + at, len, NULL, 0);
		if (known(&seen, h)) {
			count.dups++;
		} else if (known(&forged, h)) {
			reject(R_BADSIG, src, base + at, "bad signature (the same bytes as a forgery before)");
			return -1;
		} else {
			struct gossip_msg m;
			const struct gossip_signer *sg;
			enum gossip_verdict v = gossip_check(p + at, len, &trust, &m, &sg);
			static const int map[] = {0, R_MALFORMED, R_BADSIG, R_UNTRUSTED, R_FORBIDDEN,
			                          R_FUTURE};
			if (v != GOSSIP_V_OK) {
				/* Only what the signer's own valid signature proves is held against it: a
				 * bad signature or malformed bytes under its kid may be anyone's. */
				if (gossip_verdict_proven(v)) {
					char why[512];
					snprintf(why, sizeof why, "%s", gossip_error());
					gossip_note_proof(statedir, m.origin, gossip_verdict_name(v), p + at, len,
					                  NULL, 0);
					gossip_seterr("%s", why);
				}
				reject(map[v], src, base + at, gossip_error());
				/* (Not a check that could not run: out of memory is no forgery.) */
				if (v == GOSSIP_V_BADSIG && !strstr(gossip_error(), "out of memory")) {
					remember(&forged, h);
					return -1;
				}
			} else {
				remember(&seen, h);
				count.accepted++;
				gossip_buf_put(&out, p + at, len);
			}
		}
		at += len;
	}
	return 0;
}

static void reload(void);

/* One unit as it arrived: sealed (with a keyring) or plain. A reload asked for before
 * it is judged comes first, so the next unit after SIGHUP meets the new files. -1 when it
 * held a forgery, or (with a keyring) did not open: each such unit costs a try of every
 * key, so a stream that sends one is closed, as a forger's is. */
static int take_unit(const uint8_t *p, size_t n, const char *src, uint64_t base)
{
	if (want_reload)
		reload();
	if (!keys.n) {
		/* Sealed traffic at a node without a keyring: say so, not that the bytes are no
		 * message. */
		if (!gossip_looks_sealed(p, n))
			return take_messages(p, n, src, base);
		reject(R_WRONGKEY, src, base, GOSSIP_WRONG_KEY);
		return 0;
	}
	if (gossip_open_sealed(&plain, &keys, p, n) < 0) {
		struct gossip_msg m;
		size_t k;
		/* Say "not sealed" when it is a plain message, "wrong key" otherwise. */
		int plainmsg = gossip_cbor_scan(p, n, &gossip_msg_limits, NULL, &k) == GOSSIP_SCAN_OK &&
		               gossip_msg_decode(p, k, &m) == 0;
		reject(plainmsg ? R_UNSEALED : R_WRONGKEY, src, base,
		       plainmsg ? "not sealed: a node with a keyring takes only sealed traffic"
		                : gossip_looks_sealed(p, n) ? GOSSIP_WRONG_KEY
		                                            : "neither a message nor a sealed item");
		return -1;
	}
	return take_messages(plain.p, plain.len, src, 0);
}

static void flush_out(void)
{
	if (out.len && gossip_write_all(1, out.p, out.len) < 0)
		gossip_die(GOSSIP_EXIT_ERR, "stdout: %s", strerror(errno));
	out.len = 0;
}

static void stats(void)
{
	char r[512];
	size_t k = 0;
	for (int i = 0; i < R_N; i++)
		k += (size_t)snprintf(r + k, sizeof r - k, "%s%llu %s", i ? ", " : "",
		                      (unsigned long long)count.rejected[i], reason_names[i]);
	const struct by_addr *most = &by_addr[0];
	for (int i = 1; i < ADDRS; i++)
		if (by_addr[i].count > most->count)
			most = &by_addr[i];
	char top[400] = "";
	if (most->count)
		snprintf(top, sizeof top, "; most from %s (%llu)", most->addr,
		         (unsigned long long)most->count);
	/* Rejections held back this second are said now, not at the next one. */
	if (reject_rate.refused) {
		gossip_warn("%llu more rejections not shown", (unsigned long long)reject_rate.refused);
		reject_rate.refused = 0;
	}
	gossip_warn("received %llu datagrams, %llu streams, %llu bytes; accepted %llu, duplicates "
	            "%llu; rejected: %s%s",
	            (unsigned long long)count.datagrams, (unsigned long long)count.streams,
	            (unsigned long long)count.bytes, (unsigned long long)count.accepted,
	            (unsigned long long)count.dups, r, top);
}

/* ---- streams ---- */

struct conn {
	int fd;
	struct gossip_buf in;
	uint64_t base, last;  /* stream offset of in.p[0]; last activity (ms) */
	int fresh;  /* nothing read yet: may still be a sync */
	char peer[320];
	char who[64];  /* the peer's address without the port (unix: its uid), for limits */
};

/* Take every whole unit buffered on c; -1 when the stream is bad and must be closed. */
static int take_stream(struct conn *c)
{
	static const struct gossip_limits sealed_lim = {2 * GOSSIP_MSG_MAX, 1, 1};
	const struct gossip_limits *lim = keys.n ? &sealed_lim : &gossip_msg_limits;
	size_t at = 0, len;
	int s = GOSSIP_SCAN_OK;
	int forgery = 0;
	while (!forgery && at < c->in.len &&
	       (s = gossip_cbor_scan(c->in.p + at, c->in.len - at, lim, NULL, &len)) == GOSSIP_SCAN_OK) {
		forgery = take_unit(c->in.p + at, len, c->peer, c->base + at) < 0;
		at += len;
	}
	memmove(c->in.p, c->in.p + at, c->in.len - at);
	c->in.len -= at;
	c->base += at;
	flush_out();
	if (forgery)
		return -1;  /* a forger's stream, or one that does not open: closed (said by reject) */
	if (s == GOSSIP_SCAN_BAD) {
		reject(strstr(gossip_error(), "larger") ? R_TOOBIG : R_MALFORMED, c->peer, c->base,
		       gossip_error());
		return -1;
	}
	return 0;
}

/* Read what is there; 1 at end of stream, -1 to close on error. */
static int read_conn(struct conn *c)
{
	if (gossip_buf_reserve(&c->in, 65536) < 0)
		return -1;
	ssize_t k = read(c->fd, c->in.p + c->in.len, 65536);
	if (k < 0)
		return errno == EINTR || errno == EAGAIN ? 0 : -1;
	if (k == 0) {
		if (c->in.len)
			reject(R_MALFORMED, c->peer, c->base, "stream ended inside an item");
		return 1;
	}
	count.bytes += (uint64_t)k;
	c->in.len += (size_t)k;
	c->last = gossip_now_ms();
	return take_stream(c);
}

static void peer_name(struct conn *c, int fd, int kind)
{
	struct gossip_addr a = {0};
	a.kind = kind == GOSSIP_UNIX ? GOSSIP_UNIX : GOSSIP_TCP;
	a.len = sizeof a.sa;
	if (kind != GOSSIP_UNIX && getpeername(fd, (struct sockaddr *)&a.sa, &a.len) == 0) {
		gossip_addr_text(&a);
		snprintf(c->peer, sizeof c->peer, "%s", a.text);
		/* The host part: tcp://HOST:PORT or tcp://[HOST]:PORT. */
		const char *h = a.text + 6, *colon = strrchr(h, ':');
		snprintf(c->who, sizeof c->who, "%.*s", (int)(colon ? colon - h : (long)strlen(h)), h);
	} else {
		struct ucred cred;
		socklen_t len = sizeof cred;
		snprintf(c->peer, sizeof c->peer, "unix peer");
		if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0)
			snprintf(c->who, sizeof c->who, "uid %u", (unsigned)cred.uid);
		else
			snprintf(c->who, sizeof c->who, "unix");
	}
}

/* ---- syncs on the same port ---- */

/* A stream that starts with a sync request (an array of five whose first element is
 * "gossip-sync"; messages start with tag 18, sealed items with a byte string) belongs to
 * the sync command. 1: it does; 0: it does not; -1: too early to tell. */
static int is_sync(int fd)
{
	uint8_t b[16];
	ssize_t k = recv(fd, b, sizeof b, MSG_PEEK | MSG_DONTWAIT);
	if (k <= 0)
		return k < 0 && (errno == EAGAIN || errno == EINTR) ? -1 : 0;
	return gossip_sync_starts(b, (size_t)k);
}

/* Refuse a sync with the protocol's ["error", why], so that the client can say why. */
static void refuse_sync(int fd, const char *peer, const char *why)
{
	struct gossip_buf b = {0};
	uint8_t junk[512];
	gossip_warn("%s: %s", peer, why);
	/* Take what the client sent, so that closing does not reset the connection before
	 * it reads the refusal. */
	for (int i = 0; i < 8 && recv(fd, junk, sizeof junk, MSG_DONTWAIT) > 0; i++)
		;
	if (gossip_cbor_head(&b, GOSSIP_MT_ARRAY, 2) == 0 &&
	    gossip_cbor_str(&b, GOSSIP_MT_TSTR, "error", 5) == 0 &&
	    gossip_cbor_str(&b, GOSSIP_MT_TSTR, why, strlen(why)) == 0)
		send(fd, b.p, b.len, MSG_DONTWAIT | MSG_NOSIGNAL);
	shutdown(fd, SHUT_WR);
	gossip_buf_free(&b);
}

/* In a sync's own process (it never returns to the listener): signals as a command
 * would have them, and of the listener's descriptors only stderr and the connection, as
 * fd 3 (returned); 0 and 1 are /dev/null. A process that waits for -H's server keeps
 * nothing else open (no listening socket, no other client's connection, not the
 * listener's output), and the command gets only what it is given. */
static int sync_process(int fd)
{
	gossip_exec_signals(1);  /* a reload of the node must not end a sync */
	int c = fcntl(fd, F_DUPFD, 10), null = open("/dev/null", O_RDWR);
	if (c < 0 || null < 0 || dup2(null, 0) < 0 || dup2(null, 1) < 0 || dup2(c, 3) < 0)
		_exit(127);
	close_range(4, ~0U, 0);
	fcntl(3, F_SETFL, fcntl(3, F_GETFL) & ~O_NONBLOCK);
	return 3;
}

/* Hand the connection (fd 3) to -H's server, and once it took it wait until its sync is
 * over (the pair's other end closes), so that the limits below count it; when none takes
 * it within 2 s (none there, its queue full, or it is stopped), return: the command runs
 * instead, and the server, if it looks later, drops it. */
static void hand_to_server(int fd, const char *peer)
{
	int sp[2];
	if (!hand_path || socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) < 0)
		return;
	int sent = gossip_hand_send(hand_path, fd, sp[1], peer) == 0;
	close(sp[1]);  /* the server's, now (or no one's) */
	if (!sent || gossip_hand_given(sp[0], 2000) < 0) {
		close(sp[0]);
		return;
	}
	close(fd);
	/* The server's sync ends within its limit (10 s); a margin over that. */
	struct pollfd pfd = {sp[0], POLLIN, 0};
	while (poll(&pfd, 1, 15000) < 0 && errno == EINTR)
		;
	_exit(0);
}

/* The host of a member's address (tcp://HOST:PORT, udp://[HOST]:PORT) as a peer's who
 * reads (inet_ntop's text, in brackets for IPv6, without a scope); 0 when it is no
 * numeric address (a name: which hosts it names is not known without a lookup). */
static int host_of(char host[64], const char *addr)
{
	const char *h = strstr(addr, "://"), *colon;
	char raw[64], text[INET6_ADDRSTRLEN];
	uint8_t bin[16];
	h = h ? h + 3 : addr;
	colon = strrchr(h, ':');
	snprintf(raw, sizeof raw, "%.*s", (int)(colon ? colon - h : (long)strlen(h)), h);
	size_t n = strlen(raw);
	if (n > 2 && raw[0] == '[' && raw[n - 1] == ']') {
		raw[n - 1] = 0;
		/* A scope (fe80::1%eth0) is no part of the peer's text; the address is. */
		char *scope = strchr(raw, '%');
		if (scope)
			*scope = 0;
		if (inet_pton(AF_INET6, raw + 1, bin) != 1 || !inet_ntop(AF_INET6, bin, text, sizeof text))
			return 0;
		snprintf(host, 64, "[%s]", text);
		return 1;
	}
	if (inet_pton(AF_INET, raw, bin) != 1 || !inet_ntop(AF_INET, bin, text, sizeof text))
		return 0;
	snprintf(host, 64, "%s", text);
	return 1;
}

/* 1 when who is a host of some other member in DIR/peers, 0 when not, -1 when there are
 * no strangers: DIR/peers names no other member's numeric address (a listener outside a
 * node). An address by host name (a lookup would be needed), or one that does not parse,
 * names no host: a member that announces only such is a stranger here (one member's
 * record must not turn the limits off for all). Read again when the file changed, at
 * most every 5 s (a node writes it every second). */
static int member_host(const char *who)
{
	static char (*hosts)[64];
	static size_t nhosts;
	static struct stat was;
	static uint64_t read_at;
	struct stat sb;
	if (!statedir || strncmp(who, "uid ", 4) == 0 || strcmp(who, "unix") == 0)
		return -1;  /* a unix socket's peer is local, allowed by its file's mode */
	uint64_t now = gossip_mono_ms();
	if (!read_at || now - read_at >= 5000) {
		if (stat(gossip_path(statedir, "peers"), &sb) < 0)
			memset(&sb, 0, sizeof sb);
		if (!read_at || sb.st_ino != was.st_ino || sb.st_size != was.st_size ||
		    sb.st_mtim.tv_sec != was.st_mtim.tv_sec || sb.st_mtim.tv_nsec != was.st_mtim.tv_nsec) {
			struct gossip_peers t;
			nhosts = 0;
			was = sb;
			if (sb.st_ino && gossip_peers_load(&t, statedir) == 0) {
				char(*h)[64] = realloc(hosts, (t.n * GOSSIP_MAX_ADDRS + 1) * sizeof *h);
				if (h) {
					hosts = h;
					for (size_t i = 0; i < t.n; i++)
						for (int k = 0; !t.v[i].self && k < t.v[i].info.naddrs; k++) {
							nhosts += host_of(hosts[nhosts], t.v[i].info.addrs[k]);
						}
				}
				gossip_peers_free(&t);
			}
		}
		read_at = now ? now : 1;
	}
	if (!nhosts)
		return -1;
	for (size_t i = 0; i < nhosts; i++)
		if (strcmp(hosts[i], who) == 0)
			return 1;
	return 0;
}

/* Run sh -c sync_cmd with the connection as its stdin and stdout, in a free slot (or hand
 * it to -H's server). */
static void hand_off(int fd, const char *peer, const char *who)
{
	int slot = -1, same = 0, strangers = 0, stranger = member_host(who) == 0;
	char why[256];
	for (int i = 0; i < SYNCS_MAX; i++) {
		if (!syncs[i].pid)
			slot = slot < 0 ? i : slot;
		else {
			same += strcmp(syncs[i].who, who) == 0;
			strangers += syncs[i].stranger;
		}
	}
	if (same >= SYNCS_PER_PEER) {
		snprintf(why, sizeof why, "refused: busy: %d syncs from %s are running, the most one "
		         "peer may have", same, who);
		refuse_sync(fd, peer, why);
		return;
	}
	if (stranger && same >= SYNCS_PER_STRANGER) {
		snprintf(why, sizeof why, "refused: busy: %d syncs from %s, which is no member's address, are "
		         "running, the most it may have", same, who);
		refuse_sync(fd, peer, why);
		return;
	}
	if (stranger && strangers >= STRANGER_SLOTS) {
		snprintf(why, sizeof why, "refused: busy: %d syncs from addresses of no member are running, "
		         "the most they may have", strangers);
		refuse_sync(fd, peer, why);
		return;
	}
	if (slot < 0) {
		snprintf(why, sizeof why, "refused: busy: %d syncs are running, the most at once",
		         SYNCS_MAX);
		refuse_sync(fd, peer, why);
		return;
	}
	pid_t pid = fork();
	if (pid < 0) {
		gossip_warn("%s: cannot start the sync command: %s", peer, strerror(errno));
		return;
	}
	if (pid == 0) {
		fd = sync_process(fd);
		hand_to_server(fd, peer);
		if (dup2(fd, 0) < 0 || dup2(fd, 1) < 0)
			_exit(127);
		close(fd);
		setenv("GOSSIP_PEER", peer, 1);
		execl("/bin/sh", "sh", "-c", sync_cmd, (char *)NULL);
		_exit(127);
	}
	syncs[slot].pid = pid;
	syncs[slot].stranger = stranger;
	snprintf(syncs[slot].who, sizeof syncs[slot].who, "%s", who);
}

static void reap_syncs(void)
{
	int status;
	pid_t pid;
	while ((pid = waitpid(-1, &status, WNOHANG)) > 0)
		for (int i = 0; i < SYNCS_MAX; i++)
			if (syncs[i].pid == pid)
				syncs[i].pid = 0;
}

/* inetd, tcpserver, systemd Accept=yes: one connection on stdin. */
static int serve_stdin(void)
{
	struct conn c = {0};
	const char *ip = getenv("TCPREMOTEIP"), *port = getenv("TCPREMOTEPORT");
	if (!ip)
		ip = getenv("REMOTE_ADDR"), port = getenv("REMOTE_PORT");
	if (ip)
		snprintf(c.peer, sizeof c.peer, "%s%s%s", ip, port ? ":" : "", port ? port : "");
	else
		peer_name(&c, 0, GOSSIP_TCP);
	if (strcmp(c.peer, "unix peer") == 0)
		snprintf(c.peer, sizeof c.peer, "stdin");
	c.fd = 0;
	/* A socket can be looked at without taking the bytes: a sync becomes the command. */
	if (sync_cmd) {
		struct pollfd pfd = {0, POLLIN, 0};
		int s = poll(&pfd, 1, 60000) > 0 ? is_sync(0) : 0;
		/* Part of a request: look again every 10 ms (the bytes stay readable, so poll
		 * would not wait), for SYNC_WAIT_MS at most. */
		for (int i = 0; s < 0 && i < SYNC_WAIT_MS / 10; i++) {
			nanosleep(&(struct timespec){0, 10000000}, NULL);
			s = is_sync(0);
		}
		if (s == 1) {
			int fd = sync_process(0);
			hand_to_server(fd, c.peer);
			if (dup2(fd, 0) < 0 || dup2(fd, 1) < 0)
				gossip_die(GOSSIP_EXIT_ERR, "dup2: %s", strerror(errno));
			close(fd);
			setenv("GOSSIP_PEER", c.peer, 1);
			execl("/bin/sh", "sh", "-c", sync_cmd, (char *)NULL);
			gossip_die(GOSSIP_EXIT_ERR, "/bin/sh: %s", strerror(errno));
		}
	}
	count.streams++;
	for (;;) {
		if (want_stats) {
			want_stats = 0;
			stats();
		}
		if (want_reload)
			reload();
		int r = read_conn(&c);
		if (r != 0 || want_exit)
			break;
	}
	gossip_buf_free(&c.in);
	return GOSSIP_EXIT_OK;
}

static void on_signal(int sig)
{
	if (sig == SIGCHLD)
		return;  /* only to wake poll: the loop reaps */
	if (sig == SIGUSR1)
		want_stats = 1;
	else if (sig == SIGHUP)
		want_reload = 1;
	else
		want_exit = 1;
}

/* SIGHUP: read trusted and keyring again, so keys rotate without a restart. A file
 * that does not load leaves the old one in force. */
static void reload(void)
{
	struct gossip_trust t;
	struct gossip_keyring k;
	want_reload = 0;
	if (gossip_trust_load(&t, statedir) < 0) {
		gossip_warn("reload: trusted: %s; keeping the old one", gossip_error());
		return;
	}
	if (gossip_keyring_load(&k, statedir) < 0) {
		gossip_warn("reload: keyring: %s; keeping the old one", gossip_error());
		gossip_trust_free(&t);
		return;
	}
	gossip_trust_free(&trust);
	gossip_keyring_free(&keys);
	trust = t;
	trust.max_skew_ms = max_skew_ms;
	keys = k;
	gossip_warn("reloaded: %zu trusted signers, %zu cluster keys", trust.n, keys.n);
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"dir", required_argument, NULL, 'd'}, {"addresses", required_argument, NULL, 'a'},
		{"connections", required_argument, NULL, 'c'}, {"timeout", required_argument, NULL, 't'},
		{"quiet", no_argument, NULL, 'q'}, {"sync", required_argument, NULL, 's'},
		{"hand", required_argument, NULL, 'H'},
		{"max-skew", required_argument, NULL, 256},
		{"help", no_argument, NULL, 'h'}, {"version", no_argument, NULL, 'V'}, {0}};
	const char *dir = NULL, *addrfile = NULL;
	int c, maxconn = 128, idle = 60;
	char *end;

	gossip_init(argv[0]);
	while ((c = getopt_long(argc, argv, "d:a:c:t:s:H:qh", longopts, NULL)) != -1) {
		gossip_opt_once(c);
		switch (c) {
		case 'd': dir = optarg; break;
		case 'a': addrfile = optarg; break;
		case 'c':
			maxconn = (int)strtol(optarg, &end, 10);
			if (*end || maxconn < 1 || maxconn > 65536)
				gossip_die(GOSSIP_EXIT_ERR, "-c %s: want 1 to 65536 connections", optarg);
			break;
		case 't':
			idle = (int)strtol(optarg, &end, 10);
			if (*end || idle < 1 || idle > 86400)
				gossip_die(GOSSIP_EXIT_ERR, "-t %s: want seconds, 1 to 86400", optarg);
			break;
		case 'q': quiet = 1; break;
		case 's': sync_cmd = optarg; break;
		case 'H':
			if (!*optarg)
				gossip_die(GOSSIP_EXIT_ERR, "-H: want the path of gossip-peers observe -H's socket");
			hand_path = optarg;
			break;
		case 256: {
			unsigned long long v = strtoull(optarg, &end, 10);
			if (*end || !*optarg || v < 1 || v > 365ULL * 86400)
				gossip_die(GOSSIP_EXIT_ERR, "--max-skew %s: want seconds, 1 to 31536000", optarg);
			max_skew_ms = v * 1000;
			break;
		}
		case 'h': usage(GOSSIP_EXIT_OK); break;
		case 'V': gossip_print_version(); break;
		default: usage(GOSSIP_EXIT_ERR);
		}
	}
	argc -= optind;
	argv += optind;
	if (argc < 1)
		usage(GOSSIP_EXIT_ERR);
	if (hand_path && !sync_cmd)
		gossip_die(GOSSIP_EXIT_ERR, "-H needs -s: the command serves the syncs no server takes");
	dir = gossip_state_dir(dir);
	statedir = dir;
	if (gossip_trust_load(&trust, dir) < 0)
		gossip_die(GOSSIP_EXIT_ERR, "trusted: %s", gossip_error());
	trust.max_skew_ms = max_skew_ms;
	if (gossip_keyring_load(&keys, dir) < 0)
		gossip_die(GOSSIP_EXIT_ERR, "keyring: %s", gossip_error());
	if (!(seen.v = calloc(seen.n, 16)) || !(forged.v = calloc(forged.n, 16)))
		gossip_die(GOSSIP_EXIT_ERR, "out of memory");
	struct sigaction sa = {0};
	sa.sa_handler = on_signal;
	sigaction(SIGUSR1, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	sigaction(SIGCHLD, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	gossip_stats_open(&counters, dir, "listen");
	gossip_stats_add(&counters, "received_datagrams", &count.datagrams);
	gossip_stats_add(&counters, "received_streams", &count.streams);
	gossip_stats_add(&counters, "received_bytes", &count.bytes);
	gossip_stats_add(&counters, "accepted", &count.accepted);
	gossip_stats_add(&counters, "duplicates", &count.dups);
	for (int i = 0; i < R_N; i++)
		gossip_stats_add(&counters, reason_counters[i], &count.rejected[i]);

	if (argc == 1 && strcmp(argv[0], "-") == 0) {
		int r = serve_stdin();
		stats();
		gossip_stats_close(&counters);
		return r;
	}

	/* Listeners first, then connections, in one poll set. */
	int nl = argc;
	struct gossip_addr *addrs = calloc((size_t)nl, sizeof *addrs);
	struct pollfd *pfd = calloc((size_t)(nl + maxconn), sizeof *pfd);
	struct conn *conns = calloc((size_t)maxconn, sizeof *conns);
	uint8_t *dgram = malloc(65536);
	struct gossip_buf list = {0};
	if (!addrs || !pfd || !conns || !dgram)
		gossip_die(GOSSIP_EXIT_ERR, "out of memory");
	/* Every address is bound before any is announced: a port in use is one error, and
	 * nothing (no line, no -a file) says this process listens. */
	for (int i = 0; i < nl; i++) {
		if (gossip_addr_parse(&addrs[i], argv[i]) < 0 || (pfd[i].fd = gossip_listen_on(&addrs[i])) < 0)
			gossip_die(GOSSIP_EXIT_ERR, "%s", gossip_error());
		pfd[i].events = POLLIN;
	}
	for (int i = 0; i < nl; i++) {
		gossip_warn("listening on %s", addrs[i].text);
		gossip_buf_put(&list, addrs[i].text, strlen(addrs[i].text));
		gossip_buf_put(&list, "\n", 1);
	}
	if (addrfile && gossip_write_atomic(addrfile, list.p, list.len, 0644, 0) < 0)
		gossip_die(GOSSIP_EXIT_ERR, "%s", gossip_error());
	gossip_buf_free(&list);
	for (int i = 0; i < maxconn; i++)
		pfd[nl + i].fd = -1, conns[i].fd = -1;

	while (!want_exit) {
		if (want_stats) {
			want_stats = 0;
			stats();
		}
		if (want_reload)
			reload();
		reap_syncs();
		int wait = 1000;
		for (int k = 0; k < maxconn; k++)
			if (conns[k].fd >= 0 && conns[k].fresh == 2)
				wait = 10;
		int r = poll(pfd, (nfds_t)(nl + maxconn), wait);
		if (r < 0 && errno != EINTR)
			gossip_die(GOSSIP_EXIT_ERR, "poll: %s", strerror(errno));
		uint64_t now = gossip_now_ms();
		gossip_stats_tick(&counters, now);
		for (int i = 0; r > 0 && i < nl; i++) {
			if (!(pfd[i].revents & POLLIN))
				continue;
			if (addrs[i].kind == GOSSIP_UDP) {
				/* Drain what is queued, a bounded number at a time. */
				for (int k = 0; k < 64; k++) {
					struct gossip_addr from = {.kind = GOSSIP_UDP};
					from.len = sizeof from.sa;
					ssize_t n = recvfrom(pfd[i].fd, dgram, 65536, MSG_TRUNC,
					                     (struct sockaddr *)&from.sa, &from.len);
					if (n < 0)
						break;
					gossip_addr_text(&from);
					count.datagrams++;
					count.bytes += (uint64_t)n;
					if (n > 65536)
						reject(R_TOOBIG, from.text, 0, "datagram larger than 65536 bytes");
					else
						take_unit(dgram, (size_t)n, from.text, 0);
					flush_out();
				}
				continue;
			}
			int fd = accept4(pfd[i].fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
			if (fd < 0)
				continue;
			/* A free slot, or the connection idle longest makes room. */
			int slot = -1;
			for (int k = 0; k < maxconn && slot < 0; k++)
				if (conns[k].fd < 0)
					slot = k;
			if (slot < 0) {
				slot = 0;
				for (int k = 1; k < maxconn; k++)
					if (conns[k].last < conns[slot].last)
						slot = k;
				close(conns[slot].fd);
			}
			conns[slot].fd = fd;
			conns[slot].in.len = 0;
			conns[slot].base = 0;
			conns[slot].last = now;
			conns[slot].fresh = 1;
			peer_name(&conns[slot], fd, addrs[i].kind);
			pfd[nl + slot].fd = fd;
			pfd[nl + slot].events = POLLIN;
			count.streams++;
		}
		for (int k = 0; k < maxconn; k++) {
			struct conn *cn = &conns[k];
			if (cn->fd < 0)
				continue;
			int done = 0;
			int ready = pfd[nl + k].revents & (POLLIN | POLLHUP | POLLERR);
			if (ready || cn->fresh == 2) {
				int s = sync_cmd && cn->fresh ? is_sync(cn->fd) : 0;
				if (s < 0 && cn->fresh == 2 && gossip_age_ms(now, cn->last) > SYNC_WAIT_MS)
					s = 0;  /* still no whole request: not a sync */
				if (s == 1) {
					hand_off(cn->fd, cn->peer, cn->who);
					done = 1;
				} else if (s == 0) {
					cn->fresh = 0;
					pfd[nl + k].events = POLLIN;
					done = read_conn(cn);
				} else if (ready) {
					/* Part of a sync request: look again shortly, not at every poll. */
					cn->fresh = 2;
					pfd[nl + k].events = 0;
				}
			}
			/* A connection that sends nothing for the idle time (half-open) is closed. */
			if (!done && cn->last + (uint64_t)idle * 1000 < now)
				done = 1;
			if (done) {
				close(cn->fd);
				cn->fd = -1;
				pfd[nl + k].fd = -1;
				if (cn->in.cap > 1 << 20)
					gossip_buf_free(&cn->in);  /* keep memory bounded */
			}
		}
	}
	stats();
	gossip_stats_close(&counters);
	for (int k = 0; k < maxconn; k++) {
		if (conns[k].fd >= 0)
			close(conns[k].fd);
		gossip_buf_free(&conns[k].in);
	}
	free(conns);
	free(pfd);
	free(addrs);
	free(dgram);
	free(seen.v);
	free(forged.v);
	gossip_buf_free(&out);
	gossip_buf_free(&plain);
	gossip_trust_free(&trust);
	gossip_keyring_free(&keys);
	return GOSSIP_EXIT_OK;
}
