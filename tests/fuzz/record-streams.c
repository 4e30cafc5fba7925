/* record-streams: records the seed corpus of fuzz-session and fuzz-sync from the library
 * itself: a real client against a real server, each in its own process, over a socket
 * pair (or a sync command), saving what the peer side sent. Built by `make fuzz-record`
 * (into fuzz-out/) and run by make-corpus-streams.
 *
 *   record-streams OUTDIR                   writes OUTDIR/session/ and OUTDIR/sync/
 *   record-streams --serve NODEDIR TAPFILE  (for the sync command) gossip_sync_serve on
 *                                           stdin and stdout, its plaintext items to TAPFILE
 *
 * The library's end runs fuzz_session_end (stream.h) from a freshly reset random stream,
 * exactly as fuzz-session runs it, and the peer draws from another, so the recorded M3
 * (or M2) opens under the harness's own M2 (or M1) and the frames after it under its
 * stream keys. Each seed is the harness's first byte (the library's role) and the peer's
 * bytes: for fuzz-session the wire bytes (every gossip_send_by the peer made), for
 * fuzz-sync its plaintext items (every session_flush), caught with -Wl,--wrap. */
#include "stream.h"

#include <limits.h>
#include <sys/wait.h>

static FILE *tap_wire, *tap_items;

int __real_gossip_send_by(int fd, const void *p, size_t n, uint64_t deadline);
int __wrap_gossip_send_by(int fd, const void *p, size_t n, uint64_t deadline);
int __wrap_gossip_send_by(int fd, const void *p, size_t n, uint64_t deadline)
{
	if (tap_wire && n && (fwrite(p, 1, n, tap_wire) != n || fflush(tap_wire) != 0))
		exit(2);
	return __real_gossip_send_by(fd, p, n, deadline);
}

int __real_session_flush(struct session *s);
int __wrap_session_flush(struct session *s);
int __wrap_session_flush(struct session *s)
{
	if (tap_items && s->out.len &&
	    (fwrite(s->out.p, 1, s->out.len, tap_items) != s->out.len || fflush(tap_items) != 0))
		exit(2);
	return __real_session_flush(s);
}

static char self[PATH_MAX], work[4200], outdir[4200];

static void die(const char *what)
{
	fprintf(stderr, "record-streams: %s: %s\n", what, *gossip_error() ? gossip_error() : strerror(errno));
	exit(2);
}

/* OUTDIR/SUB/NAME: the byte first, then the file from. */
static void save(const char *sub, const char *name, uint8_t first, const char *from)
{
	struct gossip_buf b = {0};
	char path[8600];
	if (gossip_read_file(from, 1 << 20, &b) < 0)
		die(from);
	snprintf(path, sizeof path, "%s/%s", outdir, sub);
	mkdir(path, 0755);
	snprintf(path, sizeof path, "%s/%s/%s", outdir, sub, name);
	FILE *f = fopen(path, "wb");
	if (!f || fputc(first, f) == EOF || (b.len && fwrite(b.p, 1, b.len, f) != b.len) || fclose(f) != 0)
		die(path);
	printf("record-streams: %s/%s: %zu bytes\n", sub, name, b.len + 1);
	gossip_buf_free(&b);
}

/* ---- fuzz-session: wire bytes ---- */

/* What a peer says once the handshake is through: a sync summary (in the first frame,
 * which leaves with a client's M3 and header), two items in one frame, an item cut
 * across two frames, and ["done"]. */
static void put_items(struct session *s)
{
	uint8_t h[16];
	struct gossip_buf want = {0};
	struct gossip_buf *o = &s->out;
	memset(h, 0x11, 16);
	if (gossip_cbor_head(o, GOSSIP_MT_ARRAY, 4) < 0 || gossip_cbor_str(o, GOSSIP_MT_TSTR, "summary", 7) < 0 ||
	    gossip_cbor_str(o, GOSSIP_MT_TSTR, "push-pull", 9) < 0 ||
	    gossip_cbor_str(o, GOSSIP_MT_BSTR, h, 16) < 0 || gossip_cbor_head(o, GOSSIP_MT_UINT, 3) < 0 ||
	    session_flush(s) < 0)
		return;
	if (gossip_cbor_head(o, GOSSIP_MT_ARRAY, 2) < 0 || gossip_cbor_str(o, GOSSIP_MT_TSTR, "l2", 2) < 0 ||
	    gossip_cbor_head(o, GOSSIP_MT_ARRAY, 0) < 0 || gossip_cbor_head(o, GOSSIP_MT_ARRAY, 2) < 0 ||
	    gossip_cbor_str(o, GOSSIP_MT_TSTR, "msgs", 4) < 0 || gossip_cbor_head(o, GOSSIP_MT_UINT, 0) < 0 ||
	    session_flush(s) < 0)
		return;
	if (gossip_cbor_head(&want, GOSSIP_MT_ARRAY, 2) == 0 &&
	    gossip_cbor_str(&want, GOSSIP_MT_TSTR, "want", 4) == 0 &&
	    gossip_cbor_head(&want, GOSSIP_MT_ARRAY, 1) == 0 &&
	    gossip_cbor_str(&want, GOSSIP_MT_BSTR, h, 16) == 0 && gossip_buf_put(o, want.p, 9) == 0 &&
	    session_flush(s) == 0 && gossip_buf_put(o, want.p + 9, want.len - 9) == 0 && session_flush(s) == 0 &&
	    gossip_cbor_head(o, GOSSIP_MT_ARRAY, 1) == 0 && gossip_cbor_str(o, GOSSIP_MT_TSTR, "done", 4) == 0)
		(void)session_flush(s);
	gossip_buf_free(&want);
}

static void peer_client(const struct fuzz_node *nd, int fd)
{
	struct session s;
	session_init(&s, fd, fd, 5000);
	if (session_client(&s, &nd->auth) == 0)
		put_items(&s);
	shutdown(fd, SHUT_WR);
	fuzz_drain(fd, 5000);
	session_free(&s);
}

static void peer_server(const struct fuzz_node *nd, int fd)
{
	struct session s;
	const uint8_t *p;
	size_t n;
	session_init(&s, fd, fd, 5000);
	if (session_server(&s, &nd->auth) == 0 && session_next(&s, &p, &n) == 1)
		put_items(&s);
	shutdown(fd, SHUT_WR);
	fuzz_drain(fd, 5000);
	session_free(&s);
}

/* alpha (the library's end, as fuzz-session runs it) against peer; the peer's bytes
 * saved as session/NAME. */
static void session_seed(const char *name, const struct fuzz_node *alpha, int client,
                         const struct fuzz_node *peer)
{
	char tap[4300];
	int sv[2];
	snprintf(tap, sizeof tap, "%s/tap", work);
	fuzz_socketpair(sv);
	pid_t l = fork();
	if (l == 0) {
		close(sv[1]);
		fuzz_reset();
		(void)fuzz_session_end(&alpha->auth, sv[0], client, 5000);
		_exit(0);
	}
	pid_t p = fork();
	if (p == 0) {
		close(sv[0]);
		fuzz_rng = 0x5eed0000beefULL;  /* another stream than the library's */
		if (!(tap_wire = fopen(tap, "wb")))
			die(tap);
		if (client)
			peer_server(peer, sv[1]);
		else
			peer_client(peer, sv[1]);
		fclose(tap_wire);
		_exit(0);
	}
	if (l < 0 || p < 0)
		die("fork");
	close(sv[0]);
	close(sv[1]);
	waitpid(l, NULL, 0);
	waitpid(p, NULL, 0);
	save("session", name, client ? 1 : 0, tap);
}

/* ---- fuzz-sync: plaintext items ---- */

static int serve(const char *dir, const char *tap)
{
	struct gossip_trust trust;
	struct gossip_sync_stats stats;
	fuzz_rng = 0x5eed0000cafeULL;
	if (!(tap_items = fopen(tap, "wb")) || gossip_trust_load(&trust, dir) < 0)
		die(tap);
	struct gossip_store *st = gossip_store_open(dir, &gossip_store_defaults);
	if (!st)
		die(dir);
	gossip_store_set_visible(st, gossip_trust_has, &trust);
	struct gossip_merger mg = {.st = st, .trust = &trust};
	int r = gossip_sync_serve(&mg, 0, 1, 10000, &stats);
	if (r < 0)
		fprintf(stderr, "record-streams: serve %s: %s\n", dir, gossip_error());
	gossip_merger_free(&mg);
	gossip_store_close(st);
	gossip_trust_free(&trust);
	fclose(tap_items);
	return r < 0;
}

/* client syncs (mode) with a command serving server's store; with mine, the client's
 * items are saved as sync/NAME, else the server's. Both stores are put back first. */
static void sync_seed(const char *name, uint8_t first, const struct fuzz_node *client,
                      const struct gossip_buf *cstore, const struct fuzz_node *server,
                      const struct gossip_buf *sstore, int mode, int mine)
{
	char tap[4300], cmd[13000];
	snprintf(tap, sizeof tap, "%s/tap", work);
	fuzz_store_reset(client, cstore);
	fuzz_store_reset(server, sstore);
	snprintf(cmd, sizeof cmd, "exec '%s' --serve '%s' '%s'", self, server->dir,
	         mine ? "/dev/null" : tap);
	pid_t c = fork();
	if (c == 0) {
		struct gossip_sync_stats stats;
		fuzz_reset();
		if (mine && !(tap_items = fopen(tap, "wb")))
			die(tap);
		struct gossip_store *st = gossip_store_open(client->dir, &gossip_store_defaults);
		if (!st)
			die(client->dir);
		gossip_store_set_visible(st, gossip_trust_has, (void *)&client->trust);
		struct gossip_merger mg = {.st = st, .trust = &client->trust};
		if (gossip_sync_client(&mg, cmd, mode, 10000, &stats) < 0)
			die("sync");
		if (tap_items)
			fclose(tap_items);
		_exit(0);
	}
	int status;
	if (c < 0 || waitpid(c, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status))
		die(name);
	save("sync", name, first, tap);
}

int main(int argc, char **argv)
{
	fuzz_sodium();
	if (argc == 4 && strcmp(argv[1], "--serve") == 0)
		return serve(argv[2], argv[3]);
	if (argc != 2) {
		fprintf(stderr, "usage: record-streams OUTDIR\n");
		return 2;
	}
	ssize_t k = readlink("/proc/self/exe", self, sizeof self - 1);
	if (k < 0)
		die("/proc/self/exe");
	self[k] = 0;
	snprintf(outdir, sizeof outdir, "%s", argv[1]);
	snprintf(work, sizeof work, "%s", fuzz_dir("record"));

	struct fuzz_node alpha, beta, beta_l, beta_none, beta_alone, gamma, equal;
	char d[4300];
#define NODE(v, name, fill, ring, trusts) \
	(snprintf(d, sizeof d, "%s/%s", work, name), fuzz_node_make(&v, d, fill, ring, trusts))
	NODE(alpha, "alpha", 'a', "kl", "b");
	NODE(beta, "beta", 'b', "k", "a");
	NODE(beta_l, "beta-l", 'b', "l", "a");  /* alpha's second key */
	NODE(beta_none, "beta-none", 'b', "", "a");  /* no keyring */
	NODE(beta_alone, "beta-alone", 'b', "k", "");  /* trusts nobody */
	NODE(gamma, "gamma", 'c', "k", "a");  /* trusts alpha; alpha does not trust it */
	NODE(equal, "equal", 'b', "k", "a");  /* beta with alpha's store */

	/* fuzz-session: byte 0 even, alpha serves; odd, alpha is the client. */
	session_seed("server-valid", &alpha, 0, &beta);
	session_seed("server-second-key", &alpha, 0, &beta_l);
	session_seed("server-no-keyring", &alpha, 0, &beta_none);
	session_seed("server-stranger", &alpha, 0, &gamma);
	session_seed("server-client-refuses", &alpha, 0, &beta_alone);
	session_seed("client-valid", &alpha, 1, &beta);
	session_seed("client-stranger", &alpha, 1, &gamma);
	session_seed("client-other-key", &alpha, 1, &beta_l);
	session_seed("client-server-refuses", &alpha, 1, &beta_alone);

	/* fuzz-sync: byte 0 even, alpha serves (the seed is what beta's client says); odd,
	 * alpha is the client in mode 1 + (byte >> 1) % 3 (the seed is what beta serves). */
	struct gossip_buf sa = {0}, sb = {0};
	fuzz_stores(&sa, &sb, &alpha.id, &beta.id);
	static const char *const modes[] = {NULL, "push", "pull", "push-pull"};
	char name[64];
	for (int m = 1; m <= 3; m++) {
		snprintf(name, sizeof name, "server-%s", modes[m]);
		sync_seed(name, 0, &beta, &sb, &alpha, &sa, m, 1);
		snprintf(name, sizeof name, "client-%s", modes[m]);
		sync_seed(name, (uint8_t)(1 | (m - 1) << 1), &alpha, &sa, &beta, &sb, m, 0);
	}
	sync_seed("server-equal", 0, &equal, &sa, &alpha, &sa, GOSSIP_PUSH_PULL, 1);
	sync_seed("client-equal", 1 | 2 << 1, &alpha, &sa, &equal, &sa, GOSSIP_PUSH_PULL, 0);
	gossip_buf_free(&sa);
	gossip_buf_free(&sb);
	fuzz_node_free(&alpha);
	fuzz_node_free(&beta);
	fuzz_node_free(&beta_l);
	fuzz_node_free(&beta_none);
	fuzz_node_free(&beta_alone);
	fuzz_node_free(&gamma);
	fuzz_node_free(&equal);
	return 0;
}
