/* sync.c: anti-entropy: two stores compare Merkle summaries and send each other only
 * what the other lacks, inside a session (session.c) that is authenticated and encrypted
 * between trusted identities, over any byte stream. gossip(7) documents the protocol.
 *
 * Every sync is bounded, whoever the peer: one deadline for the whole session at both
 * ends (not per read, so a trickle cannot stretch it); the server sends only messages it
 * offered in this session's leaves, each once, so a want cannot amplify; the client takes
 * no more leaves than the server announced, and a server may announce at most
 * SYNC_LEAVES_MAX, so a peer cannot make the client allocate without bound. */
#include "session.h"
#include "store.h"

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* The most messages a peer's store may hold for a sync: at 24 bytes a leaf, the client
 * holds at most 96 MiB of the peer's leaves. gossip(7) documents it. */
enum { SYNC_LEAVES_MAX = 1 << 22 };

struct conn {
	struct session ss;
	int fd;
	pid_t pid;
	struct gossip_sync_stats *s;
};

/* ---- the session's stream ---- */

static int send_out(struct conn *c)
{
	int r = session_flush(&c->ss);
	c->s->sent_bytes = c->ss.sent;
	return r;
}

static int recv_item(struct conn *c, const uint8_t **p, size_t *n)
{
	int r = session_next(&c->ss, p, n);
	c->s->recv_bytes = c->ss.wire.bytes;
	/* On an error the session's message already starts with "peer". */
	return r == 1 ? 0 : -1;
}

/* Refuse what the peer did: our error, and its "peer says". */
static int refuse(struct conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int refuse(struct conn *c, const char *fmt, ...)
{
	char why[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(why, sizeof why, fmt, ap);
	va_end(ap);
	session_refuse(&c->ss, why);
	gossip_seterr("%s", why);
	return -1;
}

/* A command peer: sh -c CMD with its stdin and stdout on one end of a socket pair. */
static int spawn(const char *cmd, pid_t *pid)
{
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
		gossip_seterr("socketpair: %s", strerror(errno));
		return -1;
	}
	if ((*pid = fork()) < 0) {
		gossip_seterr("fork: %s", strerror(errno));
		close(sv[0]);
		close(sv[1]);
		return -1;
	}
	if (*pid == 0) {
		dup2(sv[1], 0);
		dup2(sv[1], 1);
		execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
		_exit(127);
	}
	close(sv[1]);
	return sv[0];
}

static int conn_open(struct conn *c, const char *peer, uint64_t deadline)
{
	struct gossip_addr a;
	uint64_t now = gossip_mono_ms();
	int left = now < deadline ? (int)(deadline - now) : 0;
	c->pid = 0;
	if (strncmp(peer, "tcp://", 6) == 0 || strncmp(peer, "unix:", 5) == 0)
		c->fd = gossip_addr_parse(&a, peer) < 0 ? -1 : gossip_connect(&a, left);
	else
		c->fd = spawn(peer, &c->pid);
	return c->fd < 0 ? -1 : 0;
}

/* Wait for a command peer to exit, until the time given; then stop it (TERM, and KILL
 * half a second later): no command holds a sync past its limit. */
static void reap(pid_t pid, uint64_t until)
{
	int sig = SIGTERM;
	long step = 100000;
	while (waitpid(pid, NULL, WNOHANG) == 0) {
		if (gossip_mono_ms() >= until) {
			kill(pid, sig);
			if (sig == SIGKILL) {
				waitpid(pid, NULL, 0);
				return;
			}
			sig = SIGKILL;
			until = gossip_mono_ms() + 500;
		}
		nanosleep(&(struct timespec){0, step}, NULL);
		if (step < 10000000)
			step *= 2;
	}
}

static void conn_close(struct conn *c, int failed)
{
	c->s->sent_bytes = c->ss.sent;
	c->s->recv_bytes = c->ss.wire.bytes;
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	if (c->pid > 0) {
		/* After a failure the command gets a second to finish (a refused server
		 * exits at once), never past the deadline. */
		uint64_t grace = gossip_mono_ms() + 1000;
		reap(c->pid, failed && grace < c->ss.deadline ? grace : c->ss.deadline);
	}
	session_free(&c->ss);
}

/* This node's identity and cluster keys, from the store's state directory. */
static int auth_load(struct gossip_merger *mg, struct gossip_identity *id,
                     struct gossip_keyring *ring)
{
	const char *dir = gossip_store_dir(mg->st);
	char why[512];
	if (gossip_identity_load(dir, id, 0) < 0) {
		snprintf(why, sizeof why, "%s", gossip_error());
		gossip_seterr("a sync needs this node's key: %s", why);
		return -1;
	}
	if (gossip_keyring_load(ring, dir) < 0) {
		snprintf(why, sizeof why, "%s", gossip_error());
		gossip_seterr("keyring: %s", why);
		gossip_identity_free(id);
		return -1;
	}
	return 0;
}

/* ---- protocol items ---- */

static int put_op(struct gossip_buf *b, const char *op, unsigned nmore)
{
	return gossip_cbor_head(b, GOSSIP_MT_ARRAY, 1 + nmore) < 0 ||
	       gossip_cbor_str(b, GOSSIP_MT_TSTR, op, strlen(op)) < 0 ? -1 : 0;
}

int gossip_sync_starts(const uint8_t *p, size_t n)
{
	struct gossip_buf b = {0};
	int r = 0;
	/* What starts the client's first handshake message, in every version so far. */
	if (put_op(&b, "gossip-sync", 4) == 0) {
		size_t k = n < b.len ? n : b.len;
		r = memcmp(p, b.p, k) != 0 ? 0 : k == b.len ? 1 : -1;
	}
	gossip_buf_free(&b);
	return r;
}

/* Read an item, check it is [op, ...] with nmore more elements, leave the cursor after
 * the op. An ["error", text] from the peer becomes our error. */
static int get_op(struct conn *c, struct gossip_cur *cu, const char *op, unsigned nmore)
{
	struct gossip_ev ev;
	const uint8_t *p;
	size_t n;
	if (recv_item(c, &p, &n) < 0)
		return -1;
	*cu = (struct gossip_cur){p, n, 0};
	if (session_peer_error(p, n))
		return -1;
	if (gossip_cur_expect(cu, GOSSIP_EV_ARRAY, &ev, "sync item") < 0 || ev.u < 1)
		goto bad;
	uint64_t len = ev.u;
	if (gossip_cur_expect(cu, GOSSIP_EV_TSTR, &ev, "sync item") < 0)
		goto bad;
	if (ev.len != strlen(op) || memcmp(ev.data, op, ev.len) != 0 || len != 1 + nmore)
		goto bad;
	return 0;
bad:
	gossip_seterr("peer: not the sync protocol (wanted \"%s\")", op);
	return -1;
}

static int get_bstr(struct gossip_cur *cu, size_t want, const uint8_t **p)
{
	struct gossip_ev ev;
	if (gossip_cur_expect(cu, GOSSIP_EV_BSTR, &ev, "sync item") < 0 || ev.len != want) {
		gossip_seterr("peer: not the sync protocol (a byte string of %zu)", want);
		return -1;
	}
	*p = ev.data;
	return 0;
}

static int get_uint(struct gossip_cur *cu, uint64_t *v, uint64_t max)
{
	struct gossip_ev ev;
	if (gossip_cur_expect(cu, GOSSIP_EV_UINT, &ev, "sync item") < 0 || ev.u > max) {
		gossip_seterr("peer: not the sync protocol (a number)");
		return -1;
	}
	*v = ev.u;
	return 0;
}

static int get_array(struct gossip_cur *cu, uint64_t *n, uint64_t max)
{
	struct gossip_ev ev;
	if (gossip_cur_expect(cu, GOSSIP_EV_ARRAY, &ev, "sync item") < 0 || ev.u > max) {
		gossip_seterr("peer: not the sync protocol (an array)");
		return -1;
	}
	*n = ev.u;
	return 0;
}

/* Send messages: ["msgs", n] and then n messages, straight from the store file. */
static int send_entries(struct conn *c, struct gossip_store *st, struct gossip_entry **v, size_t n)
{
	uint8_t *buf = malloc(GOSSIP_MSG_MAX);
	int r = -1;
	if (!buf || put_op(&c->ss.out, "msgs", 1) < 0 || gossip_cbor_head(&c->ss.out, GOSSIP_MT_UINT, n) < 0)
		goto out;
	for (size_t i = 0; i < n; i++) {
		if (store_read(st, v[i], buf) < 0 || gossip_buf_put(&c->ss.out, buf, v[i]->len) < 0)
			goto out;
		if (c->ss.out.len >= 1 << 20 && send_out(c) < 0)
			goto out;
	}
	c->s->sent_msgs += n;
	r = send_out(c);
out:
	free(buf);
	return r;
}

/* Receive ["msgs", n] and n messages into the merger, storing as they come in batches,
 * so that a peer that fails mid-way leaves every whole message it sent. */
static int recv_msgs(struct conn *c, struct gossip_merger *mg, const char *src, uint64_t max)
{
	struct gossip_cur cu;
	uint64_t n, off;
	const uint8_t *p;
	size_t len;
	if (get_op(c, &cu, "msgs", 1) < 0 || get_uint(&cu, &n, UINT32_MAX) < 0)
		return -1;
	if (n > max)
		return refuse(c, "refused: the peer sends %llu messages, more than the %llu asked for",
		              (unsigned long long)n, (unsigned long long)max);
	for (uint64_t i = 0; i < n; i++) {
		int r = session_next(&c->ss, &p, &len);
		c->s->recv_bytes = c->ss.wire.bytes;
		off = c->ss.off;
		if (r != 1) {
			gossip_merge_flush(mg);
			if (r == 0)
				gossip_seterr("peer: closed the connection after %llu of %llu messages",
				              (unsigned long long)i, (unsigned long long)n);
			return -1;
		}
		c->s->recv_msgs++;
		if (gossip_merge_item(mg, p, len, src, off) < 0)
			return -1;
		if (!session_ready(&c->ss) && gossip_merge_flush(mg) < 0)
			return -1;
	}
	return gossip_merge_flush(mg);
}

/* Append the current entries of level-two bucket b to *all (*n of them, room for *cap). */
static int bucket_add(struct gossip_store *st, const struct store_digest *d, size_t b,
                      struct gossip_entry ***all, size_t *n, size_t *cap)
{
	struct gossip_entry **v;
	size_t nv;
	if (store_bucket(st, d, b, &v, &nv) < 0)
		return -1;
	if (*n + nv > *cap) {
		size_t c = *n + nv > 2 * *cap ? *n + nv : 2 * *cap;
		struct gossip_entry **a = realloc(*all, c * sizeof *a);
		if (!a) {
			free(v);
			gossip_seterr("out of memory");
			return -1;
		}
		*all = a;
		*cap = c;
	}
	if (nv)
		memcpy(*all + *n, v, nv * sizeof *v);
	*n += nv;
	free(v);
	return 0;
}


/* ---- the client ---- */

/* A peer's entry: its slot, version and the first bytes of its message's hash, so that
 * two different messages of one version (an equivocation) are told apart and exchanged,
 * and each store keeps the same one of them (gossip(7), STATE AND MERGE RULES). */
enum { LEAF_HASH = 8 };
struct leaf {
	uint8_t slot[16];
	uint64_t version;
	uint8_t hash[LEAF_HASH];
};

/* Whether our entry e is not what the peer's leaf l says it has: newer, or of the
 * same version but another message. */
static int leaf_behind(const struct leaf *l, const struct gossip_entry *e)
{
	return l->version < e->version || (l->version == e->version && memcmp(l->hash, e->hash, LEAF_HASH));
}

static int by_leaf(const void *a, const void *b)
{
	return memcmp(((const struct leaf *)a)->slot, ((const struct leaf *)b)->slot, 16);
}

int gossip_sync_client(struct gossip_merger *mg, const char *peer, int mode, int timeout_ms,
                       struct gossip_sync_stats *s)
{
	uint64_t deadline = gossip_mono_ms() + (uint64_t)timeout_ms;
	struct conn c = {.fd = -1, .s = s};
	struct gossip_identity id = {0};
	struct gossip_keyring ring = {0};
	struct store_digest d = {0};
	struct gossip_cur cu;
	struct gossip_entry **push = NULL, **mine = NULL;
	struct leaf *leaves = NULL;
	struct gossip_buf want = {0};
	size_t npush = 0, nwant = 0, nleaves = 0, capleaves = 0, nmine = 0, capmine = 0;
	uint8_t diff1[256] = {0}, *diff2 = NULL;
	int r = -1, have_digest = 0;
	static const char *const modes[] = {NULL, "push", "pull", "push-pull"};

	memset(s, 0, sizeof *s);
	session_init(&c.ss, -1, -1, timeout_ms);
	if (auth_load(mg, &id, &ring) < 0)
		goto out;
	if (gossip_store_lock(mg->st) < 0)
		goto out;
	int dr = store_digest_make(&d, mg->st);
	gossip_store_unlock(mg->st);
	if (dr < 0)
		goto out;
	have_digest = 1;
	if (conn_open(&c, peer, deadline) < 0)
		goto out;
	session_init(&c.ss, c.fd, c.fd, timeout_ms);
	c.ss.deadline = deadline;  /* counted from the start, connecting included */
	if (session_client(&c.ss, &(struct session_auth){&id, &ring, mg->trust}) < 0)
		goto out;

	/* 1. Our summary; an equal store ends it here. */
	if (put_op(&c.ss.out, "summary", 3) < 0 ||
	    gossip_cbor_str(&c.ss.out, GOSSIP_MT_TSTR, modes[mode], strlen(modes[mode])) < 0 ||
	    gossip_cbor_str(&c.ss.out, GOSSIP_MT_BSTR, d.root, 16) < 0 ||
	    gossip_cbor_head(&c.ss.out, GOSSIP_MT_UINT, d.count) < 0 || send_out(&c) < 0)
		goto out;
	const uint8_t *p;
	size_t n;
	if (recv_item(&c, &p, &n) < 0)
		goto out;
	if (n == 7 && memcmp(p, "\x81\x65" "equal", 7) == 0) {
		s->equal = 1;
		r = 0;
		goto out;
	}
	/* 2. The peer's level-one hashes and its count: find the buckets that differ. */
	cu = (struct gossip_cur){p, n, 0};
	struct gossip_ev ev;
	const uint8_t *l1;
	uint64_t count;
	if (gossip_cur_expect(&cu, GOSSIP_EV_ARRAY, &ev, "sync item") < 0 || ev.u != 3 ||
	    gossip_cur_expect(&cu, GOSSIP_EV_TSTR, &ev, "sync item") < 0 || ev.len != 2 ||
	    memcmp(ev.data, "l1", 2) != 0 || get_bstr(&cu, 4096, &l1) < 0 ||
	    get_uint(&cu, &count, UINT64_MAX) < 0) {
		if (!session_peer_error(p, n))
			gossip_seterr("peer: not the sync protocol (wanted \"l1\")");
		goto out;
	}
	if (count > SYNC_LEAVES_MAX) {
		refuse(&c, "refused: the server announces %llu messages; a sync takes at most %d",
		       (unsigned long long)count, SYNC_LEAVES_MAX);
		goto out;
	}
	unsigned ndiff1 = 0;
	for (int i = 0; i < 256; i++)
		if (memcmp(l1 + 16 * i, d.l1[i], 16) != 0)
			diff1[i] = 1, ndiff1++;
	/* 3. Our level-two hashes under those buckets. */
	if (put_op(&c.ss.out, "l2", 1) < 0 || gossip_cbor_head(&c.ss.out, GOSSIP_MT_ARRAY, ndiff1) < 0)
		goto out;
	for (int i = 0; i < 256; i++)
		if (diff1[i] && (gossip_cbor_head(&c.ss.out, GOSSIP_MT_ARRAY, 2) < 0 ||
		                 gossip_cbor_head(&c.ss.out, GOSSIP_MT_UINT, (uint64_t)i) < 0 ||
		                 gossip_cbor_str(&c.ss.out, GOSSIP_MT_BSTR, d.l2[i * 256], 4096) < 0))
			goto out;
	if (send_out(&c) < 0)
		goto out;
	/* 4. The peer's entries in the level-two buckets that differ, one item per level-one
	 * bucket: ["leaves", [b2...], [[slot, version, hash8]...]]. No more leaves than the peer
	 * announced messages: that bounds what we hold. */
	if (!(diff2 = calloc(65536, 1))) {
		gossip_seterr("out of memory");
		goto out;
	}
	for (unsigned k = 0; k < ndiff1; k++) {
		uint64_t nb, nl, b2, v;
		const uint8_t *slot;
		if (get_op(&c, &cu, "leaves", 2) < 0 || get_array(&cu, &nb, 256) < 0)
			goto out;
		for (uint64_t i = 0; i < nb; i++) {
			if (get_uint(&cu, &b2, 65535) < 0)
				goto out;
			diff2[b2] = 1;
		}
		if (get_array(&cu, &nl, UINT32_MAX) < 0)
			goto out;
		if (nl > count - nleaves) {
			refuse(&c, "refused: the server sends more leaves than the %llu messages it "
			       "announced", (unsigned long long)count);
			goto out;
		}
		if (nleaves + nl > capleaves) {
			capleaves = nleaves + nl > 2 * capleaves ? nleaves + nl : 2 * capleaves;
			if (capleaves > count)
				capleaves = count;
			struct leaf *nl2 = realloc(leaves, capleaves * sizeof *leaves);
			if (!nl2) {
				gossip_seterr("out of memory");
				goto out;
			}
			leaves = nl2;
		}
		for (uint64_t i = 0; i < nl; i++) {
			uint64_t three;
			const uint8_t *h;
			if (get_array(&cu, &three, 3) < 0 || three != 3 || get_bstr(&cu, 16, &slot) < 0 ||
			    get_uint(&cu, &v, UINT64_MAX) < 0 || get_bstr(&cu, LEAF_HASH, &h) < 0)
				goto out;
			memcpy(leaves[nleaves].slot, slot, 16);
			memcpy(leaves[nleaves].hash, h, LEAF_HASH);
			leaves[nleaves++].version = v;
		}
	}
	if (nleaves)
		qsort(leaves, nleaves, sizeof *leaves, by_leaf);
	/* 5. Compare: push what the peer lacks or has older; want what it has newer, each
	 * slot once (the server refuses a want that repeats). */
	for (size_t b = 0; b < 65536 && (mode & GOSSIP_PUSH); b++) {
		if (!diff2[b])
			continue;
		size_t from = nmine;
		if (bucket_add(mg->st, &d, b, &mine, &nmine, &capmine) < 0)
			goto out;
		for (size_t i = from; i < nmine; i++) {
			struct leaf key, *l;
			memcpy(key.slot, mine[i]->slot, 16);
			l = nleaves ? bsearch(&key, leaves, nleaves, sizeof *leaves, by_leaf) : NULL;
			if (!l || leaf_behind(l, mine[i]))
				mine[npush++] = mine[i];
		}
		nmine = npush;
	}
	push = mine;
	mine = NULL;
	for (size_t i = 0; i < nleaves && (mode & GOSSIP_PULL); i++) {
		if (i && memcmp(leaves[i].slot, leaves[i - 1].slot, 16) == 0)
			continue;
		const struct gossip_entry *e = gossip_store_find(mg->st, leaves[i].slot);
		if (!e || e->version < leaves[i].version ||
		    (e->version == leaves[i].version && memcmp(e->hash, leaves[i].hash, LEAF_HASH))) {
			if (gossip_buf_put(&want, leaves[i].slot, 16) < 0)
				goto out;
			nwant++;
		}
	}
	if (send_entries(&c, mg->st, push, npush) < 0)
		goto out;
	if (put_op(&c.ss.out, "want", 1) < 0 || gossip_cbor_head(&c.ss.out, GOSSIP_MT_ARRAY, nwant) < 0)
		goto out;
	for (size_t i = 0; i < nwant; i++)
		if (gossip_cbor_str(&c.ss.out, GOSSIP_MT_BSTR, want.p + 16 * i, 16) < 0)
			goto out;
	if (send_out(&c) < 0)
		goto out;
	/* 6. What we asked for (no more), then the end. */
	if (recv_msgs(&c, mg, "peer", nwant) < 0 || get_op(&c, &cu, "done", 0) < 0)
		goto out;
	r = 0;
out:
	conn_close(&c, r < 0);
	gossip_identity_free(&id);
	gossip_keyring_free(&ring);
	free(diff2);
	free(push);
	free(mine);
	free(leaves);
	gossip_buf_free(&want);
	if (have_digest)
		store_digest_free(&d);
	return r;
}

/* ---- the server ---- */

/* A slot offered in this session's leaves, and whether it has been wanted. */
struct offer {
	uint8_t slot[16];
	uint8_t wanted;
};

static int by_offer(const void *a, const void *b)
{
	return memcmp(a, b, 16);
}

int gossip_sync_serve(struct gossip_merger *mg, int rfd, int wfd, int timeout_ms,
                      struct gossip_sync_stats *s)
{
	struct conn c = {.fd = -1, .s = s};
	struct gossip_identity id = {0};
	struct gossip_keyring ring = {0};
	struct store_digest d = {0};
	struct gossip_cur cu;
	struct gossip_ev ev;
	struct offer *offers = NULL;
	struct gossip_entry **v = NULL, **lv = NULL;
	size_t noffers = 0, caplv = 0;
	const uint8_t *root;
	uint64_t count, n1;
	uint8_t asked[256] = {0};
	int r = -1, have_digest = 0;

	memset(s, 0, sizeof *s);
	session_init(&c.ss, rfd, wfd, timeout_ms);
	if (auth_load(mg, &id, &ring) < 0) {
		session_refuse(&c.ss, "refused: the server cannot sync (see its log)");
		goto out;
	}
	if (session_server(&c.ss, &(struct session_auth){&id, &ring, mg->trust}) < 0)
		goto out;
	if (get_op(&c, &cu, "summary", 3) < 0 ||
	    gossip_cur_expect(&cu, GOSSIP_EV_TSTR, &ev, "mode") < 0 || get_bstr(&cu, 16, &root) < 0 ||
	    get_uint(&cu, &count, UINT64_MAX) < 0)
		goto out;
	if (gossip_store_lock(mg->st) < 0)
		goto fail;
	int dr = store_digest_make(&d, mg->st);
	gossip_store_unlock(mg->st);
	if (dr < 0)
		goto fail;
	have_digest = 1;
	if (memcmp(root, d.root, 16) == 0 && count == d.count) {
		s->equal = 1;
		r = put_op(&c.ss.out, "equal", 0) < 0 ? -1 : send_out(&c);
		goto out;
	}
	if (put_op(&c.ss.out, "l1", 2) < 0 || gossip_cbor_str(&c.ss.out, GOSSIP_MT_BSTR, d.l1, 4096) < 0 ||
	    gossip_cbor_head(&c.ss.out, GOSSIP_MT_UINT, d.count) < 0 || send_out(&c) < 0)
		goto out;
	if (!(offers = malloc((d.count ? d.count : 1) * sizeof *offers)))
		goto fail;
	/* The client's level-two hashes: answer with our entries where they differ, and
	 * note each one offered. */
	if (get_op(&c, &cu, "l2", 1) < 0 || get_array(&cu, &n1, 256) < 0)
		goto out;
	for (uint64_t k = 0; k < n1; k++) {
		uint64_t two, a;
		const uint8_t *l2;
		uint16_t diff[256];
		unsigned nd = 0;
		size_t nl = 0;
		if (get_array(&cu, &two, 2) < 0 || two != 2 || get_uint(&cu, &a, 255) < 0 ||
		    get_bstr(&cu, 4096, &l2) < 0)
			goto out;
		if (asked[a]++) {
			refuse(&c, "refused: the client asks for level-one bucket %u twice", (unsigned)a);
			goto out;
		}
		for (unsigned j = 0; j < 256; j++)
			if (memcmp(l2 + 16 * j, d.l2[a * 256 + j], 16) != 0) {
				diff[nd++] = (uint16_t)(a * 256 + j);
				if (bucket_add(mg->st, &d, a * 256 + j, &lv, &nl, &caplv) < 0)
					goto fail;
			}
		if (put_op(&c.ss.out, "leaves", 2) < 0 || gossip_cbor_head(&c.ss.out, GOSSIP_MT_ARRAY, nd) < 0)
			goto out;
		for (unsigned j = 0; j < nd; j++)
			if (gossip_cbor_head(&c.ss.out, GOSSIP_MT_UINT, diff[j]) < 0)
				goto out;
		if (nl > d.count - noffers) {  /* the digest and the index part: never so */
			gossip_seterr("store: the summary and the index disagree");
			goto fail;
		}
		if (gossip_cbor_head(&c.ss.out, GOSSIP_MT_ARRAY, nl) < 0)
			goto out;
		for (size_t i = 0; i < nl; i++) {
			if (gossip_cbor_head(&c.ss.out, GOSSIP_MT_ARRAY, 3) < 0 ||
			    gossip_cbor_str(&c.ss.out, GOSSIP_MT_BSTR, lv[i]->slot, 16) < 0 ||
			    gossip_cbor_head(&c.ss.out, GOSSIP_MT_UINT, lv[i]->version) < 0 ||
			    gossip_cbor_str(&c.ss.out, GOSSIP_MT_BSTR, lv[i]->hash, LEAF_HASH) < 0)
				goto out;
			memcpy(offers[noffers].slot, lv[i]->slot, 16);
			offers[noffers++].wanted = 0;
		}
		if (send_out(&c) < 0)
			goto out;
	}
	/* The digest points into the store's index, which merging may move: from here on
	 * the offers (copies) say what was offered. */
	store_digest_free(&d);
	have_digest = 0;
	if (noffers)
		qsort(offers, noffers, sizeof *offers, by_offer);
	/* What the client pushes, then what it wants: only slots offered, each once, so the
	 * reply is bounded by what this server told the client it has. */
	if (recv_msgs(&c, mg, "peer", UINT32_MAX) < 0)
		goto out;
	uint64_t nw;
	if (get_op(&c, &cu, "want", 1) < 0 || get_array(&cu, &nw, UINT32_MAX) < 0)
		goto out;
	if (nw > noffers) {
		refuse(&c, "refused: the client wants %llu messages, more than the %zu offered",
		       (unsigned long long)nw, noffers);
		goto out;
	}
	size_t nv = 0;
	if (!(v = malloc((nw ? nw : 1) * sizeof *v)))
		goto fail;
	for (uint64_t i = 0; i < nw; i++) {
		const uint8_t *slot;
		char hex[33];
		if (get_bstr(&cu, 16, &slot) < 0)
			goto out;
		struct offer *o = bsearch(slot, offers, noffers, sizeof *offers, by_offer);
		gossip_hex(hex, slot, 16);
		if (!o) {
			refuse(&c, "refused: the client wants slot %s, which was not offered", hex);
			goto out;
		}
		if (o->wanted++) {
			refuse(&c, "refused: the client wants slot %s twice", hex);
			goto out;
		}
		/* Our index may have moved on since the summary; send what it holds now. */
		const struct gossip_entry *e = gossip_store_find(mg->st, slot);
		if (e)
			v[nv++] = (struct gossip_entry *)e;
	}
	if (send_entries(&c, mg->st, v, nv) < 0 || put_op(&c.ss.out, "done", 0) < 0 ||
	    send_out(&c) < 0)
		goto out;
	r = 0;
	goto out;
fail:
	session_refuse(&c.ss, gossip_error());
out:
	if (have_digest)
		store_digest_free(&d);
	free(offers);
	free(v);
	free(lv);
	s->sent_bytes = c.ss.sent;
	s->recv_bytes = c.ss.wire.bytes;
	session_free(&c.ss);
	gossip_identity_free(&id);
	gossip_keyring_free(&ring);
	return r;
}
