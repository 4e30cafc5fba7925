/* fuzz-sync: the sync protocol's items (gossip(7) ANTI-ENTROPY, The exchange) as the
 * library parses them behind the session, both roles. The input is the peer's plaintext:
 * a CBOR sequence of sync items and messages. The first input byte picks the library's
 * role: even, gossip_sync_serve (the rest is what the client says: summary, tables
 * asked for, msgs, want); odd, gossip_sync_client in mode 1 + (byte >> 1) % 3 (push,
 * pull, push-pull; the rest is what the server says: equal or tables, msgs, done).
 *
 * The library's end is alpha with its fixed store (stream.h), put back before every
 * input. The peer is beta, in a thread: it makes a real handshake with the library
 * (session_client or session_server, the entry points tests/unit/t-sync uses), then
 * seals the input into frames (session_flush), shuts its end for writing and reads what
 * the library answers until it closes. So the library needs no hook: its item parsers
 * see the input in the clear, behind a real session. As the server the library is
 * given one end of a socket pair; as the client it connects to unix:DIR/sock, where the
 * thread accepts. Every sync has a deadline of two seconds.
 *
 * The random stream is reset before every input. Both ends draw from it (their
 * ephemeral keys and stream headers), always in the same order, since each draw follows
 * a message from the other end: inputs run the same way every time. */
#include "stream.h"

#include <pthread.h>

static struct fuzz_node alpha, beta;
static struct gossip_buf store;  /* alpha's store, as it is before every input */
static int lfd = -1;
static char sock[4300];

enum { TIMEOUT_MS = 2000 };

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	char path[4300];
	struct gossip_buf bstore = {0};
	struct gossip_addr a;
	(void)argc, (void)argv;
	fuzz_sodium();
	const char *dir = fuzz_dir("sync");
	snprintf(path, sizeof path, "%s/alpha", dir);
	fuzz_node_make(&alpha, path, 'a', "kl", "b");
	snprintf(path, sizeof path, "%s/beta", dir);
	fuzz_node_make(&beta, path, 'b', "k", "a");
	fuzz_stores(&store, &bstore, &alpha.id, &beta.id);
	gossip_buf_free(&bstore);
	snprintf(sock, sizeof sock, "unix:%s/sock", dir);
	if (gossip_addr_parse(&a, sock) < 0 || (lfd = gossip_listen_on(&a)) < 0) {
		fprintf(stderr, "fuzz: %s: %s\n", sock, gossip_error());
		exit(2);
	}
	return 0;
}

/* beta: the handshake on fd (or on a connection accepted from lfd), then the input. */
struct peer {
	int fd, serve;
	const uint8_t *p;
	size_t n;
};

static void *peer_run(void *arg)
{
	struct peer *pe = arg;
	struct session s;
	int fd = pe->fd;
	if (pe->serve) {
		struct pollfd pfd = {lfd, POLLIN, 0};
		if (poll(&pfd, 1, TIMEOUT_MS) <= 0 || (fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC)) < 0)
			return NULL;
	}
	session_init(&s, fd, fd, TIMEOUT_MS);
	if ((pe->serve ? session_server(&s, &beta.auth) : session_client(&s, &beta.auth)) == 0 &&
	    gossip_buf_put(&s.out, pe->p, pe->n) == 0)
		(void)session_flush(&s);  /* also sends the client's M3 and stream header */
	shutdown(fd, SHUT_WR);
	fuzz_drain(fd, TIMEOUT_MS);
	session_free(&s);
	if (pe->serve)
		close(fd);
	return NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct gossip_sync_stats stats;
	struct peer pe = {-1, 0, data + 1, size ? size - 1 : 0};
	pthread_t t;
	int sv[2] = {-1, -1};
	if (size == 0)
		return 0;
	fuzz_reset();
	fuzz_store_reset(&alpha, &store);
	struct gossip_store *st = gossip_store_open(alpha.dir, &gossip_store_defaults);
	if (!st) {
		fprintf(stderr, "fuzz: store: %s\n", gossip_error());
		abort();
	}
	gossip_store_set_visible(st, gossip_trust_has, &alpha.trust);
	struct gossip_merger mg = {.st = st, .trust = &alpha.trust};
	pe.serve = data[0] & 1;
	if (!pe.serve) {
		fuzz_socketpair(sv);
		pe.fd = sv[1];
	}
	if (pthread_create(&t, NULL, peer_run, &pe) != 0)
		abort();
	int r;
	if (pe.serve)
		r = gossip_sync_client(&mg, sock, 1 + (data[0] >> 1) % 3, TIMEOUT_MS, &stats);
	else {
		r = gossip_sync_serve(&mg, sv[0], sv[0], TIMEOUT_MS, &stats);
		close(sv[0]);  /* the peer reads to the end */
	}
	pthread_join(t, NULL);
	if (fuzz_debug())
		fprintf(stderr, "fuzz: %s: %s%s; sent %llu messages, received %llu, %llu new\n",
		        pe.serve ? "client" : "server", r == 0 ? "synced" : "failed: ",
		        r == 0 ? (stats.equal ? " (equal)" : "") : gossip_error(),
		        (unsigned long long)stats.sent_msgs, (unsigned long long)stats.recv_msgs,
		        (unsigned long long)mg.added);
	if (sv[1] >= 0)
		close(sv[1]);
	gossip_merger_free(&mg);
	gossip_store_close(st);
	return 0;
}
