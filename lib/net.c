/* net.c: addresses (udp://, tcp://, unix:), sockets, and the cluster keyring that seals
 * datagrams and streams with an AEAD. */
#include "gossip.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

/* ---- addresses ---- */

static int split_hostport(const char *s, char *host, size_t hostlen, const char **port)
{
	if (*s == '[') {
		const char *close = strchr(s, ']');
		if (!close || close[1] != ':')
			return -1;
		snprintf(host, hostlen, "%.*s", (int)(close - s - 1), s + 1);
		*port = close + 2;
	} else {
		const char *colon = strrchr(s, ':');
		if (!colon)
			return -1;
		snprintf(host, hostlen, "%.*s", (int)(colon - s), s);
		*port = colon + 1;
	}
	return **port ? 0 : -1;
}

static int addr_parse(struct gossip_addr *a, const char *s, int flags);

int gossip_addr_parse(struct gossip_addr *a, const char *s)
{
	return addr_parse(a, s, 0);
}

int gossip_addr_unicast(struct gossip_addr *a, const char *s)
{
	if (strncmp(s, "udp://", 6) != 0) {
		gossip_seterr("%.64s: want udp://HOST:PORT", s);
		return -1;
	}
	if (addr_parse(a, s, AI_NUMERICHOST) < 0) {
		gossip_seterr("%.64s: not a numeric address (no name is looked up for it)", s);
		return -1;
	}
	int bad = 0, v4 = a->sa.ss_family == AF_INET;
	uint32_t ip = v4 ? ntohl(((const struct sockaddr_in *)&a->sa)->sin_addr.s_addr) : 0;
	if (a->sa.ss_family == AF_INET6) {
		const struct in6_addr *ip6 = &((const struct sockaddr_in6 *)&a->sa)->sin6_addr;
		bad = IN6_IS_ADDR_UNSPECIFIED(ip6) || IN6_IS_ADDR_MULTICAST(ip6);
		/* ::ffff:224.0.0.1 leaves an IPv6 socket as the IPv4 address it maps. */
		if ((v4 = IN6_IS_ADDR_V4MAPPED(ip6)))
			ip = (uint32_t)ip6->s6_addr[12] << 24 | (uint32_t)ip6->s6_addr[13] << 16 |
			     (uint32_t)ip6->s6_addr[14] << 8 | ip6->s6_addr[15];
	}
	if (v4)
		bad = bad || ip == 0 || ip == 0xffffffffu || (ip >> 28) == 0xe;
	if (bad || !((const struct sockaddr_in *)&a->sa)->sin_port) {
		gossip_seterr("%.64s: not one host's address (multicast, broadcast, unspecified or port 0)", s);
		return -1;
	}
	return 0;
}

static int addr_parse(struct gossip_addr *a, const char *s, int flags)
{
	char host[256];
	const char *port;
	struct addrinfo hints = {0}, *res;
	int e;
	memset(a, 0, sizeof *a);
	if (strncmp(s, "unix:", 5) == 0) {
		struct sockaddr_un *un = (struct sockaddr_un *)&a->sa;
		if (!s[5] || strlen(s + 5) >= sizeof un->sun_path) {
			gossip_seterr("%s: want unix:/PATH (at most %zu bytes)", s, sizeof un->sun_path - 1);
			return -1;
		}
		a->kind = GOSSIP_UNIX;
		un->sun_family = AF_UNIX;
		strcpy(un->sun_path, s + 5);
		a->len = sizeof *un;
		snprintf(a->text, sizeof a->text, "%s", s);
		return 0;
	}
	if (strncmp(s, "udp://", 6) == 0)
		a->kind = GOSSIP_UDP;
	else if (strncmp(s, "tcp://", 6) == 0)
		a->kind = GOSSIP_TCP;
	else {
		gossip_seterr("%s: want udp://HOST:PORT, tcp://HOST:PORT or unix:/PATH", s);
		return -1;
	}
	if (split_hostport(s + 6, host, sizeof host, &port) < 0) {
		gossip_seterr("%s: want %.6sHOST:PORT (an IPv6 address in brackets)", s, s);
		return -1;
	}
	hints.ai_socktype = a->kind == GOSSIP_UDP ? SOCK_DGRAM : SOCK_STREAM;
	hints.ai_flags = AI_NUMERICSERV | flags;
	if ((e = getaddrinfo(*host ? host : NULL, port, &hints, &res)) != 0) {
		gossip_seterr("%s: %s", s, gai_strerror(e));
		return -1;
	}
	memcpy(&a->sa, res->ai_addr, res->ai_addrlen);
	a->len = res->ai_addrlen;
	freeaddrinfo(res);
	gossip_addr_text(a);
	return 0;
}

void gossip_addr_text(struct gossip_addr *a)
{
	char host[INET6_ADDRSTRLEN];
	const char *scheme = a->kind == GOSSIP_UDP ? "udp://" : "tcp://";
	if (a->kind == GOSSIP_UNIX)
		return;
	if (a->sa.ss_family == AF_INET6) {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&a->sa;
		inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
		snprintf(a->text, sizeof a->text, "%s[%s]:%u", scheme, host, ntohs(in6->sin6_port));
	} else {
		struct sockaddr_in *in = (struct sockaddr_in *)&a->sa;
		inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
		snprintf(a->text, sizeof a->text, "%s%s:%u", scheme, host, ntohs(in->sin_port));
	}
}

int gossip_addr_as(struct gossip_addr *to, const struct gossip_addr *from, int kind)
{
	*to = *from;
	to->kind = kind;
	gossip_addr_text(to);
	return 0;
}

/* A unix socket path: a live listener (connect succeeds) keeps it and is an error; a
 * stale socket file (nobody accepts) is removed; anything else (a symlink, a directory, a
 * file) is left to bind(), which refuses it. The path is removed only if it is still the
 * very socket found refusing (same device and inode): whoever can write to the directory
 * and swaps something in while we probe does not get it deleted. */
static int unix_claim(const struct gossip_addr *a)
{
	struct stat st, now;
	const char *path = ((const struct sockaddr_un *)&a->sa)->sun_path;
	if (lstat(path, &st) < 0 || !S_ISSOCK(st.st_mode))
		return 0;
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		gossip_seterr("%s: socket: %s", a->text, strerror(errno));
		return -1;
	}
	int r = connect(fd, (const struct sockaddr *)&a->sa, a->len), err = errno;
	close(fd);
	if (r == 0 || err == EAGAIN) {  /* EAGAIN: alive, its backlog full */
		gossip_seterr("%s: in use: a process accepts connections on this socket (another "
		              "gossip-listen?); stop it, or choose another path", a->text);
		return -1;
	}
	if (err == ECONNREFUSED && lstat(path, &now) == 0 && S_ISSOCK(now.st_mode) &&
	    now.st_dev == st.st_dev && now.st_ino == st.st_ino)
		unlink(path);
	return 0;
}

int gossip_listen_on(struct gossip_addr *a)
{
	int one = 1, type = a->kind == GOSSIP_UDP ? SOCK_DGRAM : SOCK_STREAM;
	if (a->kind == GOSSIP_UNIX && unix_claim(a) < 0)
		return -1;
	int fd = socket(a->sa.ss_family, type | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0) {
		gossip_seterr("%s: socket: %s", a->text, strerror(errno));
		return -1;
	}
	/* Ports are exclusive: TCP's SO_REUSEADDR only lets a restart bind past connections
	 * in TIME_WAIT (a live listener still holds the port); on UDP it would let a second
	 * process share the port and take the first one's datagrams, so UDP has none. */
	if (a->kind == GOSSIP_TCP)
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (type == SOCK_DGRAM) {
		/* Room for bursts (and floods) while a batch is being verified. */
		int size = 4 << 20;
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
	}
	if (a->sa.ss_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
	if (bind(fd, (struct sockaddr *)&a->sa, a->len) < 0 ||
	    (type == SOCK_STREAM && listen(fd, 128) < 0)) {
		if (errno == EADDRINUSE && a->kind == GOSSIP_UNIX)
			gossip_seterr("%s: cannot listen: Address already in use: the path is taken by "
			              "something that is not a stale socket (a file, a directory, a "
			              "symlink); remove it, or choose another path", a->text);
		else if (errno == EADDRINUSE)
			gossip_seterr("%s: cannot listen: Address already in use: another process (a "
			              "gossip-listen or node?) holds the port; stop it, or choose "
			              "another port", a->text);
		else
			gossip_seterr("%s: cannot listen: %s", a->text, strerror(errno));
		close(fd);
		return -1;
	}
	if (a->kind != GOSSIP_UNIX) {
		/* Port 0: the kernel chose; say which. */
		a->len = sizeof a->sa;
		getsockname(fd, (struct sockaddr *)&a->sa, &a->len);
		gossip_addr_text(a);
	}
	return fd;
}

int gossip_connect(const struct gossip_addr *a, int timeout_ms)
{
	int fd = socket(a->sa.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0), err = 0;
	socklen_t elen = sizeof err;
	if (fd < 0) {
		gossip_seterr("cannot connect to %s: %s", a->text, strerror(errno));
		return -1;
	}
	if (connect(fd, (const struct sockaddr *)&a->sa, a->len) < 0) {
		struct pollfd p = {fd, POLLOUT, 0};
		int r;
		/* A signal (a SIGHUP to reload) does not end the wait: poll is never restarted
		 * by SA_RESTART, so wait again for what is left of timeout_ms. */
		uint64_t end = gossip_mono_ms() + (uint64_t)(timeout_ms < 0 ? 0 : timeout_ms);
		if (errno != EINPROGRESS)
			err = errno;
		else {
			while ((r = poll(&p, 1, timeout_ms)) < 0 && errno == EINTR) {
				uint64_t now = gossip_mono_ms();
				if (timeout_ms > 0 && now >= end) {
					r = 0;
					break;
				}
				if (timeout_ms > 0)
					timeout_ms = (int)(end - now);
			}
			if (r <= 0)
				err = r == 0 ? ETIMEDOUT : errno;
			else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) < 0)
				err = errno;
		}
		if (err) {
			gossip_seterr("cannot connect to %s: %s", a->text, strerror(err));
			close(fd);
			return -1;
		}
	}
	/* Callers wait with poll(); back to blocking writes bounded by it. */
	int fl = fcntl(fd, F_GETFL);
	fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
	return fd;
}

/* Send all of p; each wait for progress lasts at most timeout_ms (-1: no limit), and
 * none goes past deadline (0: none). */
static int send_all(int fd, const void *p, size_t n, int timeout_ms, uint64_t deadline)
{
	const uint8_t *q = p;
	while (n) {
		struct pollfd pfd = {fd, POLLOUT, 0};
		int wait = timeout_ms;
		if (deadline) {
			uint64_t now = gossip_mono_ms();
			uint64_t left = now < deadline ? deadline - now : 0;
			if (wait < 0 || left < (uint64_t)wait)
				wait = (int)(left > 86400000 ? 86400000 : left);
		}
		int pr = poll(&pfd, 1, wait);
		if (pr < 0 && errno == EINTR)
			continue;
		if (pr == 0) {
			if (timeout_ms >= 0 && wait == timeout_ms)
				gossip_seterr("timed out after %d s waiting to send", timeout_ms / 1000);
			else
				gossip_seterr("timed out: the time limit ran out while sending");
			return -1;
		}
		ssize_t k = send(fd, q, n, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (k < 0 && errno == ENOTSOCK)
			k = write(fd, q, n);
		if (k < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (k < 0) {
			gossip_seterr("cannot send: %s", strerror(errno));
			return -1;
		}
		q += k;
		n -= (size_t)k;
	}
	return 0;
}

int gossip_send_timed(int fd, const void *p, size_t n, int timeout_ms)
{
	return send_all(fd, p, n, timeout_ms, 0);
}

int gossip_send_by(int fd, const void *p, size_t n, uint64_t deadline)
{
	return send_all(fd, p, n, -1, deadline ? deadline : 1);
}

/* ---- the keyring ---- */

/* What a damaged keyring's one line tells the operator to do: every node holds the same
 * keys, so any other node's file is the cure. */
#define KEYRING_FIX "put back a copy of the cluster's keyring from another node (mode 0600)"

int gossip_keyring_load(struct gossip_keyring *k, const char *dir)
{
	const char *path = gossip_path(dir, "keyring");
	struct gossip_buf b = {0};
	struct stat st;
	memset(k, 0, sizeof *k);
	if (stat(path, &st) < 0)
		return errno == ENOENT ? 0 : (gossip_seterr("%s: %s", path, strerror(errno)), -1);
	if (!S_ISREG(st.st_mode)) {
		gossip_seterr("%s is not a regular file: " KEYRING_FIX, path);
		return -1;
	}
	if (st.st_mode & 077) {
		gossip_seterr("%s is open to group or others (mode %04o): run chmod 600 %s", path,
		              (unsigned)(st.st_mode & 07777), path);
		return -1;
	}
	if (gossip_read_file(path, 1 << 16, &b) < 0)
		return -1;
	size_t lines = 1;
	for (size_t i = 0; i < b.len; i++)
		lines += b.p[i] == '\n';
	k->keys = sodium_malloc(lines * 32);
	if (!k->keys) {
		gossip_seterr("out of memory");
		goto fail;
	}
	unsigned no = 0;
	for (size_t i = 0; i < b.len;) {
		size_t e = i;
		while (e < b.len && b.p[e] != '\n')
			e++;
		no++;
		char *s = (char *)b.p + i;
		size_t n = e - i;
		while (n && (*s == ' ' || *s == '\t'))
			s++, n--;
		while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r'))
			n--;
		i = e + 1;
		if (!n || *s == '#')
			continue;
		if (k->n == GOSSIP_KEYRING_MAX) {
			/* Each item received is tried with every key: many keys let an outsider's
			 * junk cost a node that many decryptions an item. */
			gossip_seterr("%s holds more than %d keys: a rotation needs two at a time (see "
			              "gossip-keyring(5)); remove the retired ones", path, GOSSIP_KEYRING_MAX);
			goto fail;
		}
		if (gossip_unb64(k->keys[k->n], 32, s, n) < 0) {
			gossip_seterr("%s line %u: not a key (base64 of 32 bytes, as gossip-keygen -c prints): "
			              "the keyring is damaged; " KEYRING_FIX, path, no);
			goto fail;
		}
		k->n++;
	}
	sodium_memzero(b.p, b.len);
	gossip_buf_free(&b);
	if (k->n == 0) {
		gossip_seterr("%s holds no key: " KEYRING_FIX ", or remove it to turn sealing off", path);
		gossip_keyring_free(k);
		return -1;
	}
	return 0;
fail:
	if (b.p)
		sodium_memzero(b.p, b.len);
	gossip_buf_free(&b);
	gossip_keyring_free(k);
	return -1;
}

void gossip_keyring_free(struct gossip_keyring *k)
{
	sodium_free(k->keys);
	k->keys = NULL;
	k->n = 0;
}

static const uint8_t seal_ad[] = "gossip seal v1";

int gossip_seal(struct gossip_buf *out, const struct gossip_keyring *k, const uint8_t *p, size_t n)
{
	enum { NB = crypto_aead_xchacha20poly1305_ietf_NPUBBYTES };
	size_t len = NB + n + crypto_aead_xchacha20poly1305_ietf_ABYTES;
	unsigned long long clen;
	if (gossip_cbor_head(out, GOSSIP_MT_BSTR, len) < 0 || gossip_buf_reserve(out, len) < 0)
		return -1;
	size_t at = out->len;
	uint8_t *dst = out->p + at;
	randombytes_buf(dst, NB);  /* 192-bit random nonces: no reuse in practice */
	crypto_aead_xchacha20poly1305_ietf_encrypt(dst + NB, &clen, p, n, seal_ad, sizeof seal_ad - 1,
	                                           NULL, dst, k->keys[0]);
	out->len = at + len;
	return 0;
}

int gossip_open_sealed(struct gossip_buf *out, const struct gossip_keyring *k, const uint8_t *item,
                       size_t n)
{
	enum { NB = crypto_aead_xchacha20poly1305_ietf_NPUBBYTES,
	       AB = crypto_aead_xchacha20poly1305_ietf_ABYTES };
	struct gossip_cur cu = {item, n, 0};
	struct gossip_ev ev;
	unsigned long long mlen;
	if (gossip_cur_expect(&cu, GOSSIP_EV_BSTR, &ev, "sealed item") < 0 || cu.pos != n ||
	    ev.len < NB + AB) {
		gossip_seterr("not sealed (a node with a keyring takes only sealed traffic)");
		return -1;
	}
	out->len = 0;
	if (gossip_buf_reserve(out, ev.len) < 0)
		return -1;
	for (size_t i = 0; i < k->n; i++)
		if (crypto_aead_xchacha20poly1305_ietf_decrypt(out->p, &mlen, NULL, ev.data + NB,
		                                               ev.len - NB, seal_ad, sizeof seal_ad - 1,
		                                               ev.data, k->keys[i]) == 0) {
			out->len = (size_t)mlen;
			return 0;
		}
	gossip_seterr("%s", GOSSIP_WRONG_KEY);
	return -1;
}

int gossip_looks_sealed(const uint8_t *item, size_t n)
{
	struct gossip_cur cu = {item, n, 0};
	struct gossip_ev ev;
	return gossip_cur_expect(&cu, GOSSIP_EV_BSTR, &ev, "sealed item") == 0 && cu.pos == n &&
	       ev.len >= crypto_aead_xchacha20poly1305_ietf_NPUBBYTES +
	                         crypto_aead_xchacha20poly1305_ietf_ABYTES;
}

/* The node's own UDP address, from DIR/listening (gossip-listen -a writes it). */
int gossip_node_udp(const char *dir, char *out, size_t outlen)
{
	struct gossip_buf b = {0};
	int r = 0;
	if (gossip_read_file(gossip_path(dir, "listening"), 65536, &b) < 0 || gossip_buf_put(&b, "", 1) < 0) {
		gossip_buf_free(&b);
		return 0;
	}
	for (char *line = (char *)b.p, *next; *line && !r; line = next) {
		next = line + strcspn(line, "\n");
		if (*next)
			*next++ = 0;
		if (!strncmp(line, "udp://", 6) && strlen(line) < outlen) {
			snprintf(out, outlen, "%s", line);
			r = 1;
		}
	}
	gossip_buf_free(&b);
	return r;
}
