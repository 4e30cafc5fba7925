/* t-out: what gossip_out sends when sealing is turned on (a reload) while messages wait:
 * a message that fitted a datagram unsealed but not sealed goes over TCP to the same host
 * and port, and what was queued after it to that destination still goes. */
#include "gossip.h"
#include "tap.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sodium.h>
#include <sys/socket.h>
#include <unistd.h>

/* A message of about n bytes: a CBOR byte string (the sender looks at items, not what they
 * hold). */
static void item(struct gossip_buf *b, size_t n, uint8_t fill)
{
	uint8_t *x = malloc(n);
	memset(x, fill, n);
	b->len = 0;
	gossip_cbor_str(b, GOSSIP_MT_BSTR, x, n);
	free(x);
}

int main(void)
{
	if (sodium_init() < 0)
		return 2;
	/* A UDP socket and a TCP listener on one port of 127.0.0.1. */
	int u = socket(AF_INET, SOCK_DGRAM, 0), l = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000001)};
	socklen_t sl = sizeof sa;
	if (bind(u, (struct sockaddr *)&sa, sizeof sa) < 0 || getsockname(u, (struct sockaddr *)&sa, &sl) < 0 ||
	    bind(l, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(l, 4) < 0)
		return 2;
	char dest[64];
	snprintf(dest, sizeof dest, "udp://127.0.0.1:%d", ntohs(sa.sin_port));

	struct gossip_keyring none = {0}, ring = {sodium_malloc(32), 1};
	memset(ring.keys[0], 7, 32);
	struct gossip_keyring live = none;  /* what the sender points at: swapped in place */
	struct gossip_out o;
	struct gossip_buf a = {0}, b = {0};
	gossip_out_init(&o, 1200, 2000, 0, &live);
	long i = gossip_out_index(&o, dest);
	item(&a, 1180, 'a');  /* fits 1200 unsealed, not with the seal's 43 bytes */
	item(&b, 100, 'b');
	ok(i >= 0 && gossip_out_queue_to(&o, (size_t)i, a.p, a.len) == 0 &&
	   gossip_out_queue_to(&o, (size_t)i, b.p, b.len) == 0, "two messages queued for a datagram, unsealed");
	live = ring;  /* a reload turned sealing on */
	ok(gossip_out_flush(&o) == 0, "flushed (%s)", gossip_error());
	/* The small one comes as a sealed datagram; the large one over TCP. */
	uint8_t dg[2048];
	struct pollfd p = {u, POLLIN, 0};
	ssize_t k = poll(&p, 1, 2000) == 1 ? recv(u, dg, sizeof dg, 0) : -1;
	struct gossip_buf plain = {0};
	ok(k > 0 && gossip_open_sealed(&plain, &ring, dg, (size_t)k) == 0 && plain.len == b.len &&
	   !memcmp(plain.p, b.p, b.len), "the message after it: a sealed datagram (%zd bytes)", k);
	struct pollfd pl = {l, POLLIN, 0};
	int c = poll(&pl, 1, 2000) == 1 ? accept(l, NULL, NULL) : -1;
	struct gossip_buf got = {0};
	uint8_t buf[4096];
	ssize_t r;
	gossip_out_close(&o);  /* ends the stream */
	while (c >= 0 && (r = read(c, buf, sizeof buf)) > 0)
		gossip_buf_put(&got, buf, (size_t)r);
	plain.len = 0;
	ok(c >= 0 && gossip_open_sealed(&plain, &ring, got.p, got.len) == 0 && plain.len == a.len &&
	   !memcmp(plain.p, a.p, a.len), "the large one: sealed, over TCP to the same port (%zu bytes)", got.len);
	if (c >= 0)
		close(c);
	close(u), close(l);
	gossip_buf_free(&a), gossip_buf_free(&b), gossip_buf_free(&plain), gossip_buf_free(&got);
	gossip_keyring_free(&ring);
	return tap_done();
}
