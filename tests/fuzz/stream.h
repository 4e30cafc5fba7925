/* stream.h: what the stream protocol harnesses (fuzz-session, fuzz-sync) share with the
 * program that records their seed corpus (record-streams.c): two nodes with fixed
 * identities that trust each other, fixed keyrings, fixed stores, and the library's end
 * of fuzz-session. The recorder runs the very same code as the harnesses, with the same
 * random stream, so that the handshakes it records are the ones the harnesses would have
 * with a real peer: a recorded client's M3 opens under the harness's M2.
 *
 *   alpha  (seed 'a'*32): the library's end in every harness; keyring k, l (k seals);
 *          trusts beta
 *   beta   (seed 'b'*32): the peer; keyring k; trusts alpha
 *   gamma  (seed 'c'*32): a stranger (alpha does not trust it)
 *
 * Cluster keys k and l are 'k'*32 and 'l'*32, as in make-corpus. */
#ifndef FUZZ_STREAM_H
#define FUZZ_STREAM_H
#include "fuzz.h"
#include "session.h"

#include <poll.h>
#include <sys/socket.h>

struct fuzz_node {
	char dir[4200];
	struct gossip_identity id;
	struct gossip_keyring ring;
	struct gossip_trust trust;
	struct session_auth auth;
};

static inline const char *fuzz_name_of(unsigned char fill)
{
	return fill == 'a' ? "alpha" : fill == 'b' ? "beta" : fill == 'c' ? "gamma" : "other";
}

/* DIR/NAME holding exactly p[0..n) with mode (exits on failure). */
static inline void fuzz_put(const char *dir, const char *name, const void *p, size_t n, mode_t mode)
{
	char path[4300];
	snprintf(path, sizeof path, "%s/%s", dir, name);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
	if (fd < 0 || fchmod(fd, mode) < 0 || (n && gossip_write_all(fd, p, n) < 0)) {
		perror(path);
		exit(2);
	}
	close(fd);
}

static inline void fuzz_unlink(const char *dir, const char *name)
{
	char path[4300];
	snprintf(path, sizeof path, "%s/%s", dir, name);
	if (unlink(path) < 0 && errno != ENOENT) {
		perror(path);
		exit(2);
	}
}

/* A node's state directory DIR: DIR/key from the seed fill*32, DIR/key.pub, DIR/trusted
 * with the identities of the fills in trusts (none: no such file), DIR/keyring with the cluster keys of the
 * fills in ring (none: no keyring); all loaded into nd. */
static inline void fuzz_node_make(struct fuzz_node *nd, const char *dir, unsigned char fill,
                                  const char *ring, const char *trusts)
{
	uint8_t pk[32], sk[64], seed[32];
	char b64[64], line[160], text[2048] = "";
	snprintf(nd->dir, sizeof nd->dir, "%s", dir);
	if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
		perror(dir);
		exit(2);
	}
	memset(seed, fill, 32);
	gossip_b64(b64, seed, 32);
	snprintf(line, sizeof line, "%s\n", b64);
	fuzz_put(dir, "key", line, strlen(line), 0600);
	fuzz_identity(pk, sk, fill);
	gossip_pub_line(line, sizeof line - 1, pk, fuzz_name_of(fill));
	strcat(line, "\n");
	fuzz_put(dir, "key.pub", line, strlen(line), 0644);
	for (const char *t = trusts; *t; t++) {
		fuzz_identity(pk, sk, (unsigned char)*t);
		gossip_pub_line(line, sizeof line - 1, pk, fuzz_name_of((unsigned char)*t));
		strcat(strcat(text, line), "\n");
	}
	/* Trusting nobody: no DIR/trusted (an empty one is a known finding:
	 * crashes/trust-no-signer-qsort-null). */
	if (*trusts)
		fuzz_put(dir, "trusted", text, strlen(text), 0644);
	else
		fuzz_unlink(dir, "trusted");
	text[0] = 0;
	for (const char *k = ring; *k; k++) {
		memset(seed, *k, 32);
		gossip_b64(b64, seed, 32);
		strcat(strcat(text, b64), "\n");
	}
	if (*ring)
		fuzz_put(dir, "keyring", text, strlen(text), 0600);
	else
		fuzz_unlink(dir, "keyring");
	if (gossip_identity_load(dir, &nd->id, 0) < 0 || gossip_keyring_load(&nd->ring, dir) < 0 ||
	    gossip_trust_load(&nd->trust, dir) < 0) {
		fprintf(stderr, "fuzz: node %s: %s\n", dir, gossip_error());
		exit(2);
	}
	nd->auth = (struct session_auth){&nd->id, &nd->ring, &nd->trust};
}

static inline void fuzz_node_free(struct fuzz_node *nd)
{
	gossip_identity_free(&nd->id);
	gossip_keyring_free(&nd->ring);
	gossip_trust_free(&nd->trust);
}

/* One message signed by id, appended to b. */
static inline void fuzz_msg(struct gossip_buf *b, const struct gossip_identity *id, unsigned type,
                            const char *key, const char *value, uint64_t version)
{
	struct gossip_msg m = {0};
	m.type = type;
	m.version = version;
	m.time = FUZZ_NOW_MS - 600000 + version * 1000;
	m.key = (const uint8_t *)key;
	m.keylen = key ? strlen(key) : 0;
	if (value) {
		m.value = (const uint8_t *)value;
		m.valuelen = strlen(value);
		m.has_value = 1;
		m.value_text = 1;
	}
	if (gossip_msg_sign(b, &m, id) < 0) {
		fprintf(stderr, "fuzz: cannot sign: %s\n", gossip_error());
		exit(2);
	}
}

/* The stores of alpha (a) and beta (b), as DIR/store files: three messages in common,
 * then each has what the other lacks or holds in an older version (alpha's size=11
 * supersedes size=10, beta's app/x=2 supersedes app/x=1), so that a sync between them
 * moves messages both ways. */
static inline void fuzz_stores(struct gossip_buf *a, struct gossip_buf *b,
                               const struct gossip_identity *alpha, const struct gossip_identity *beta)
{
	struct gossip_buf common = {0};
	fuzz_msg(&common, alpha, GOSSIP_T_SET, "color", "blue", 1);
	fuzz_msg(&common, alpha, GOSSIP_T_EVENT, "deploy", "v2", 2);
	fuzz_msg(&common, beta, GOSSIP_T_SET, "app/y", "1", 2);
	gossip_buf_put(a, common.p, common.len);
	gossip_buf_put(b, common.p, common.len);
	fuzz_msg(a, alpha, GOSSIP_T_SET, "size", "10", 3);
	fuzz_msg(a, beta, GOSSIP_T_SET, "app/x", "1", 1);
	fuzz_msg(a, beta, GOSSIP_T_DEL, "app/z", NULL, 4);
	fuzz_msg(b, alpha, GOSSIP_T_SET, "size", "11", 4);
	fuzz_msg(b, beta, GOSSIP_T_SET, "app/x", "2", 3);
	fuzz_msg(b, beta, GOSSIP_T_EVENT, "restart", NULL, 5);
	gossip_buf_free(&common);
}

/* Put a node's store back as it was (the store bytes; no watermarks, evidence or
 * rejects), so that what one input merged does not change the next. */
static inline void fuzz_store_reset(const struct fuzz_node *nd, const struct gossip_buf *store)
{
	fuzz_put(nd->dir, "store", store->p, store->len, 0600);
	fuzz_unlink(nd->dir, "watermarks");
	fuzz_unlink(nd->dir, "evidence");
	fuzz_unlink(nd->dir, "rejects");
	fuzz_unlink(nd->dir, "rejects.1");
}

/* A socket pair whose buffers hold what a harness puts in them (an input of up to
 * -max_len bytes, and the library's answers). */
static inline void fuzz_socketpair(int sv[2])
{
	int big = 1 << 20;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
		perror("fuzz: socketpair");
		abort();
	}
	for (int i = 0; i < 2; i++) {
		setsockopt(sv[i], SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
		setsockopt(sv[i], SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
	}
}

/* Read and drop what fd brings until it closes, or for ms at most. */
static inline void fuzz_drain(int fd, int ms)
{
	uint8_t junk[8192];
	uint64_t until = gossip_mono_ms() + (uint64_t)ms;
	for (;;) {
		uint64_t now = gossip_mono_ms();
		struct pollfd pfd = {fd, POLLIN, 0};
		if (now >= until || poll(&pfd, 1, (int)(until - now)) <= 0 ||
		    read(fd, junk, sizeof junk) <= 0)
			return;
	}
}

/* With FUZZ_DEBUG set in the environment, the harnesses say on stderr how each input
 * ended (to check that a seed gets as far as it should). */
static inline int fuzz_debug(void)
{
	static int on = -1;
	if (on < 0)
		on = getenv("FUZZ_DEBUG") != NULL;
	return on;
}

/* The library's end of fuzz-session on fd, as the client or the server, with node a:
 * the handshake; then, as the client, one item ["hello"]; then every item the peer sends
 * (64 at most), echoed back sealed at the end. A handshake that succeeds must have proven
 * a trusted peer (or the node itself): anything else aborts. 0: the handshake
 * succeeded. */
static inline int fuzz_session_end(const struct session_auth *a, int fd, int client, int timeout_ms)
{
	struct session s;
	const uint8_t *p;
	size_t n;
	session_init(&s, fd, fd, timeout_ms);
	int r = client ? session_client(&s, a) : session_server(&s, a);
	if (r == 0) {
		if (memcmp(s.peer, a->id->pk, 32) != 0 && !gossip_trust_find(a->trust, s.peer)) {
			fprintf(stderr, "fuzz: the handshake accepted a peer that is not trusted\n");
			abort();
		}
		if (client && (gossip_cbor_head(&s.out, GOSSIP_MT_ARRAY, 1) < 0 ||
		               gossip_cbor_str(&s.out, GOSSIP_MT_TSTR, "hello", 5) < 0 ||
		               session_flush(&s) < 0))
			goto out;
		for (int i = 0; i < 64 && session_next(&s, &p, &n) == 1; i++) {
			if (session_peer_error(p, n) || gossip_buf_put(&s.out, p, n) < 0)
				break;
		}
		if (s.out.len)
			(void)session_flush(&s);
	}
out:
	if (fuzz_debug())
		fprintf(stderr, "fuzz: %s: handshake %s; %llu bytes in, %llu out; last error: %s\n",
		        client ? "client" : "server", r == 0 ? "made" : "refused or failed",
		        (unsigned long long)s.wire.bytes, (unsigned long long)s.sent, gossip_error());
	session_free(&s);
	return r;
}

#endif
