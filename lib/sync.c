/* sync.c: anti-entropy: two stores compare Merkle summaries over any byte stream and
 * send each other only what the other lacks. gossip(7) documents the protocol. */
#include "store.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

enum { PROTO_VERSION = 1 };

struct conn {
	int rfd, wfd;
	pid_t pid;
	int timeout_ms;
	struct gossip_reader rd;
	struct gossip_buf out;
	struct gossip_sync_stats *s;
};

/* ---- the byte stream ---- */

static int send_out(struct conn *c)
{
	if (gossip_send_timed(c->wfd, c->out.p, c->out.len, c->timeout_ms) < 0) {
		char why[512];
		snprintf(why, sizeof why, "%s", gossip_error());
		gossip_seterr("peer: %s", why);
		return -1;
	}
	c->s->sent_bytes += c->out.len;
	c->out.len = 0;
	return 0;
}

static int recv_item(struct conn *c, const uint8_t **p, size_t *n)
{
	uint64_t off;
	int r = gossip_reader_next(&c->rd, p, n, &off);
	c->s->recv_bytes = c->rd.bytes;
	if (r == 0)
		gossip_seterr("peer: closed the connection mid-sync");
	/* On an error the reader's message already starts with "peer: ". */
	return r == 1 ? 0 : -1;
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

static int conn_open(struct conn *c, const char *peer)
{
	int fd;
	struct gossip_addr a;
	c->pid = 0;
	if (strncmp(peer, "tcp://", 6) == 0 || strncmp(peer, "unix:", 5) == 0)
		fd = gossip_addr_parse(&a, peer) < 0 ? -1 : gossip_connect(&a, c->timeout_ms);
	else
		fd = spawn(peer, &c->pid);
	if (fd < 0)
		return -1;
	c->rfd = c->wfd = fd;
	return 0;
}

static void conn_close(struct conn *c, int failed)
{
	if (c->rfd >= 0)
		close(c->rfd);
	if (c->wfd >= 0 && c->wfd != c->rfd)
		close(c->wfd);
	c->rfd = c->wfd = -1;
	if (c->pid > 0) {
		if (failed)
			kill(c->pid, SIGTERM);
		waitpid(c->pid, NULL, 0);
	}
	gossip_reader_free(&c->rd);
	gossip_buf_free(&c->out);
}

/* ---- protocol items ---- */

static int put_op(struct gossip_buf *b, const char *op, unsigned nmore);

/* The hello: ["gossip-sync", version, mode, root, count]. */
static int put_hello(struct gossip_buf *b)
{
	return put_op(b, "gossip-sync", 4) < 0 || gossip_cbor_head(b, GOSSIP_MT_UINT, PROTO_VERSION) < 0 ? -1 : 0;
}

int gossip_sync_starts(const uint8_t *p, size_t n)
{
	struct gossip_buf b = {0};
	int r = 0;
	if (put_op(&b, "gossip-sync", 4) == 0) {  /* what starts a hello, in any version */
		size_t k = n < b.len ? n : b.len;
		r = memcmp(p, b.p, k) != 0 ? 0 : k == b.len ? 1 : -1;
	}
	gossip_buf_free(&b);
	return r;
}

static int put_op(struct gossip_buf *b, const char *op, unsigned nmore)
{
	return gossip_cbor_head(b, GOSSIP_MT_ARRAY, 1 + nmore) < 0 ||
	       gossip_cbor_str(b, GOSSIP_MT_TSTR, op, strlen(op)) < 0 ? -1 : 0;
}

/* 1 (and the error set to what the peer said) when p is ["error", text]. */
static int peer_error(const uint8_t *p, size_t n)
{
	struct gossip_cur e = {p, n, 0};
	struct gossip_ev ev;
	char saved[512];
	int r = 0;
	snprintf(saved, sizeof saved, "%s", gossip_error());
	if (gossip_cur_expect(&e, GOSSIP_EV_ARRAY, &ev, "") == 0 && ev.u == 2 &&
	    gossip_cur_expect(&e, GOSSIP_EV_TSTR, &ev, "") == 0 && ev.len == 5 &&
	    memcmp(ev.data, "error", 5) == 0 && gossip_cur_expect(&e, GOSSIP_EV_TSTR, &ev, "") == 0) {
		snprintf(saved, sizeof saved, "peer says: %.*s", (int)(ev.len > 200 ? 200 : ev.len),
		         ev.data);
		r = 1;
	}
	gossip_seterr("%s", saved);
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
	if (peer_error(p, n))
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
	if (!buf || put_op(&c->out, "msgs", 1) < 0 || gossip_cbor_head(&c->out, GOSSIP_MT_UINT, n) < 0)
		goto out;
	for (size_t i = 0; i < n; i++) {
		if (store_read(st, v[i], buf) < 0 || gossip_buf_put(&c->out, buf, v[i]->len) < 0)
			goto out;
		if (c->out.len >= 1 << 20 && send_out(c) < 0)
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
static int recv_msgs(struct conn *c, struct gossip_merger *mg, const char *src)
{
	struct gossip_cur cu;
	uint64_t n, off;
	const uint8_t *p;
	size_t len;
	if (get_op(c, &cu, "msgs", 1) < 0 || get_uint(&cu, &n, UINT32_MAX) < 0)
		return -1;
	for (uint64_t i = 0; i < n; i++) {
		int r = gossip_reader_next(&c->rd, &p, &len, &off);
		c->s->recv_bytes = c->rd.bytes;
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
		if (!gossip_reader_ready(&c->rd) && gossip_merge_flush(mg) < 0)
			return -1;
	}
	return gossip_merge_flush(mg);
}

/* The entries of one level-two bucket. */
static void bucket(const struct store_digest *d, size_t b, struct gossip_entry ***v, size_t *n)
{
	*v = d->sorted + d->start[b];
	*n = d->start[b + 1] - d->start[b];
}

/* ---- the client ---- */

struct leaf {
	uint8_t slot[16];
	uint64_t version;
};

static int by_leaf(const void *a, const void *b)
{
	return memcmp(((const struct leaf *)a)->slot, ((const struct leaf *)b)->slot, 16);
}

int gossip_sync_client(struct gossip_merger *mg, const char *peer, int mode, int timeout_ms,
                       struct gossip_sync_stats *s)
{
	struct conn c = {-1, -1, 0, timeout_ms, {0}, {0}, s};
	struct store_digest d;
	struct gossip_cur cu;
	struct gossip_entry **push = NULL;
	struct leaf *leaves = NULL;
	struct gossip_buf want = {0};
	size_t npush = 0, nwant = 0, nleaves = 0, capleaves = 0;
	uint8_t diff1[256] = {0};
	int r = -1;
	static const char *const modes[] = {NULL, "push", "pull", "push-pull"};

	memset(s, 0, sizeof *s);
	if (gossip_store_lock(mg->st) < 0)
		return -1;
	int dr = store_digest_make(&d, mg->st);
	gossip_store_unlock(mg->st);
	if (dr < 0)
		return -1;
	if (conn_open(&c, peer) < 0)
		goto out;
	gossip_reader_init(&c.rd, c.rfd, "peer", &gossip_any_limits);
	c.rd.timeout_ms = timeout_ms;

	/* 1. Our summary; an equal store ends it here. */
	if (put_hello(&c.out) < 0 ||
	    gossip_cbor_str(&c.out, GOSSIP_MT_TSTR, modes[mode], strlen(modes[mode])) < 0 ||
	    gossip_cbor_str(&c.out, GOSSIP_MT_BSTR, d.root, 16) < 0 ||
	    gossip_cbor_head(&c.out, GOSSIP_MT_UINT, d.count) < 0 || send_out(&c) < 0)
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
	/* 2. The peer's level-one hashes: find the buckets that differ. */
	cu = (struct gossip_cur){p, n, 0};
	struct gossip_ev ev;
	const uint8_t *l1;
	if (gossip_cur_expect(&cu, GOSSIP_EV_ARRAY, &ev, "sync item") < 0 || ev.u != 2 ||
	    gossip_cur_expect(&cu, GOSSIP_EV_TSTR, &ev, "sync item") < 0 || ev.len != 2 ||
	    memcmp(ev.data, "l1", 2) != 0 || get_bstr(&cu, 4096, &l1) < 0) {
		if (!peer_error(p, n))
			gossip_seterr("peer: not the sync protocol (wanted \"l1\")");
		goto out;
	}
	unsigned ndiff1 = 0;
	for (int i = 0; i < 256; i++)
		if (memcmp(l1 + 16 * i, d.l1[i], 16) != 0)
			diff1[i] = 1, ndiff1++;
	/* 3. Our level-two hashes under those buckets. */
	if (put_op(&c.out, "l2", 1) < 0 || gossip_cbor_head(&c.out, GOSSIP_MT_ARRAY, ndiff1) < 0)
		goto out;
	for (int i = 0; i < 256; i++)
		if (diff1[i] && (gossip_cbor_head(&c.out, GOSSIP_MT_ARRAY, 2) < 0 ||
		                 gossip_cbor_head(&c.out, GOSSIP_MT_UINT, (uint64_t)i) < 0 ||
		                 gossip_cbor_str(&c.out, GOSSIP_MT_BSTR, d.l2[i * 256], 4096) < 0))
			goto out;
	if (send_out(&c) < 0)
		goto out;
	/* 4. The peer's entries in the level-two buckets that differ, one item per level-one
	 * bucket: ["leaves", [b2...], [[slot, version]...]]. */
	uint8_t *diff2 = calloc(65536, 1);
	if (!diff2) {
		gossip_seterr("out of memory");
		goto out;
	}
	for (unsigned k = 0; k < ndiff1; k++) {
		uint64_t nb, nl, b2, v;
		const uint8_t *slot;
		if (get_op(&c, &cu, "leaves", 2) < 0 || get_array(&cu, &nb, 256) < 0)
			goto out2;
		for (uint64_t i = 0; i < nb; i++) {
			if (get_uint(&cu, &b2, 65535) < 0)
				goto out2;
			diff2[b2] = 1;
		}
		if (get_array(&cu, &nl, UINT32_MAX) < 0)
			goto out2;
		for (uint64_t i = 0; i < nl; i++) {
			uint64_t two;
			if (get_array(&cu, &two, 2) < 0 || two != 2 || get_bstr(&cu, 16, &slot) < 0 ||
			    get_uint(&cu, &v, UINT64_MAX) < 0)
				goto out2;
			if (nleaves == capleaves) {
				capleaves = capleaves ? 2 * capleaves : 1024;
				struct leaf *nl2 = realloc(leaves, capleaves * sizeof *leaves);
				if (!nl2) {
					gossip_seterr("out of memory");
					goto out2;
				}
				leaves = nl2;
			}
			memcpy(leaves[nleaves].slot, slot, 16);
			leaves[nleaves++].version = v;
		}
	}
	if (nleaves)
		qsort(leaves, nleaves, sizeof *leaves, by_leaf);
	/* 5. Compare: push what the peer lacks or has older; want what it has newer. */
	if (!(push = malloc((d.count ? d.count : 1) * sizeof *push)))
		goto out2;
	for (size_t b = 0; b < 65536; b++) {
		if (!diff2[b])
			continue;
		struct gossip_entry **v;
		size_t nv;
		bucket(&d, b, &v, &nv);
		for (size_t i = 0; i < nv; i++) {
			struct leaf key, *l;
			memcpy(key.slot, v[i]->slot, 16);
			l = nleaves ? bsearch(&key, leaves, nleaves, sizeof *leaves, by_leaf) : NULL;
			if ((!l || l->version < v[i]->version) && (mode & GOSSIP_PUSH))
				push[npush++] = v[i];
		}
	}
	for (size_t i = 0; i < nleaves && (mode & GOSSIP_PULL); i++) {
		const struct gossip_entry *e = gossip_store_find(mg->st, leaves[i].slot);
		if (!e || e->version < leaves[i].version) {
			if (gossip_buf_put(&want, leaves[i].slot, 16) < 0)
				goto out2;
			nwant++;
		}
	}
	if (send_entries(&c, mg->st, push, npush) < 0)
		goto out2;
	if (put_op(&c.out, "want", 1) < 0 || gossip_cbor_head(&c.out, GOSSIP_MT_ARRAY, nwant) < 0)
		goto out2;
	for (size_t i = 0; i < nwant; i++)
		if (gossip_cbor_str(&c.out, GOSSIP_MT_BSTR, want.p + 16 * i, 16) < 0)
			goto out2;
	if (send_out(&c) < 0)
		goto out2;
	/* 6. What we asked for, then the end. */
	if (recv_msgs(&c, mg, "peer") < 0 || get_op(&c, &cu, "done", 0) < 0)
		goto out2;
	r = 0;
out2:
	free(diff2);
out:
	conn_close(&c, r < 0);
	free(push);
	free(leaves);
	gossip_buf_free(&want);
	store_digest_free(&d);
	return r;
}

/* ---- the server ---- */

static void send_error(struct conn *c, const char *why)
{
	c->out.len = 0;
	if (put_op(&c->out, "error", 1) == 0 && gossip_cbor_str(&c->out, GOSSIP_MT_TSTR, why, strlen(why)) == 0)
		send_out(c);
}

int gossip_sync_serve(struct gossip_merger *mg, int rfd, int wfd, int timeout_ms,
                      struct gossip_sync_stats *s)
{
	struct conn c = {rfd, wfd, 0, timeout_ms, {0}, {0}, s};
	struct store_digest d = {0};
	struct gossip_cur cu;
	struct gossip_ev ev;
	const uint8_t *root;
	uint64_t ver, count, n1;
	int r = -1, have_digest = 0;

	memset(s, 0, sizeof *s);
	gossip_reader_init(&c.rd, rfd, "peer", &gossip_any_limits);
	c.rd.timeout_ms = timeout_ms;
	if (get_op(&c, &cu, "gossip-sync", 4) < 0 || get_uint(&cu, &ver, UINT32_MAX) < 0)
		goto out;
	if (ver != PROTO_VERSION) {
		gossip_seterr("peer speaks sync protocol version %llu, this is %d",
		              (unsigned long long)ver, PROTO_VERSION);
		send_error(&c, gossip_error());
		goto out;
	}
	if (gossip_cur_expect(&cu, GOSSIP_EV_TSTR, &ev, "mode") < 0 || get_bstr(&cu, 16, &root) < 0 ||
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
		r = put_op(&c.out, "equal", 0) < 0 ? -1 : send_out(&c);
		goto out;
	}
	if (put_op(&c.out, "l1", 1) < 0 || gossip_cbor_str(&c.out, GOSSIP_MT_BSTR, d.l1, 4096) < 0 ||
	    send_out(&c) < 0)
		goto out;
	/* The client's level-two hashes: answer with our entries where they differ. */
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
		for (unsigned j = 0; j < 256; j++)
			if (memcmp(l2 + 16 * j, d.l2[a * 256 + j], 16) != 0) {
				diff[nd++] = (uint16_t)(a * 256 + j);
				nl += d.start[a * 256 + j + 1] - d.start[a * 256 + j];
			}
		if (put_op(&c.out, "leaves", 2) < 0 || gossip_cbor_head(&c.out, GOSSIP_MT_ARRAY, nd) < 0)
			goto out;
		for (unsigned j = 0; j < nd; j++)
			if (gossip_cbor_head(&c.out, GOSSIP_MT_UINT, diff[j]) < 0)
				goto out;
		if (gossip_cbor_head(&c.out, GOSSIP_MT_ARRAY, nl) < 0)
			goto out;
		for (unsigned j = 0; j < nd; j++) {
			struct gossip_entry **v;
			size_t nv;
			bucket(&d, diff[j], &v, &nv);
			for (size_t i = 0; i < nv; i++)
				if (gossip_cbor_head(&c.out, GOSSIP_MT_ARRAY, 2) < 0 ||
				    gossip_cbor_str(&c.out, GOSSIP_MT_BSTR, v[i]->slot, 16) < 0 ||
				    gossip_cbor_head(&c.out, GOSSIP_MT_UINT, v[i]->version) < 0)
					goto out;
		}
		if (send_out(&c) < 0)
			goto out;
	}
	/* What the client pushes, then what it wants. */
	if (recv_msgs(&c, mg, "peer") < 0)
		goto out;
	uint64_t nw;
	if (get_op(&c, &cu, "want", 1) < 0 || get_array(&cu, &nw, UINT32_MAX) < 0)
		goto out;
	struct gossip_entry **v = malloc((nw ? nw : 1) * sizeof *v);
	size_t nv = 0;
	if (!v)
		goto fail;
	for (uint64_t i = 0; i < nw; i++) {
		const uint8_t *slot;
		if (get_bstr(&cu, 16, &slot) < 0) {
			free(v);
			goto out;
		}
		/* Our index may have moved on since the summary; send what it holds now. */
		const struct gossip_entry *e = gossip_store_find(mg->st, slot);
		if (e)
			v[nv++] = (struct gossip_entry *)e;
	}
	r = send_entries(&c, mg->st, v, nv);
	free(v);
	if (r < 0 || put_op(&c.out, "done", 0) < 0 || send_out(&c) < 0) {
		r = -1;
		goto out;
	}
	r = 0;
	goto out;
fail:
	send_error(&c, gossip_error());
out:
	if (have_digest)
		store_digest_free(&d);
	gossip_reader_free(&c.rd);
	gossip_buf_free(&c.out);
	return r;
}
