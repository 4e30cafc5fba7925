/* t-sync: the sync session alone, over a socket pair, the server in a child process:
 * trusted peers meet and exchange sealed items; an untrusted client or server is refused
 * by the other, with a reason on both sides; a changed or replayed frame is rejected;
 * cluster keys must match (a keyring in rotation takes both); an old client and a
 * trickle are refused in time. */
#include "session.h"
#include "tap.h"
#include "fixture.h"

#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static struct gossip_identity alice, bob, eve;

/* A trust list of the given identities. */
static struct gossip_trust trust_of(const struct gossip_identity *a, const struct gossip_identity *b)
{
	struct gossip_trust t = {0};
	char text[512] = "", line[160];
	if (a)
		trusted_line(line, sizeof line, a, "a"), strcat(text, line);
	if (b)
		trusted_line(line, sizeof line, b, "b"), strcat(text, line);
	if (gossip_trust_parse(&t, text, strlen(text), "trusted") < 0)
		exit(2);
	return t;
}

/* A keyring of n keys, each 32 bytes of one fill byte. */
static struct gossip_keyring ring_of(const unsigned char *fills, size_t n)
{
	struct gossip_keyring k = {sodium_malloc(32 * (n ? n : 1)), n};
	for (size_t i = 0; i < n; i++)
		memset(k.keys[i], fills[i], 32);
	return k;
}

/* What the server did, as the child tells it. */
enum { SERVE_PLAIN, SERVE_TAMPER, SERVE_REPLAY };
struct outcome {
	int client, server;  /* 0 or -1 */
	char cerr[512], serr[512];
	char got[64];  /* the item the client received, as text */
};

/* Run the server end in a child on one end of a socket pair (reporting on a pipe), the
 * client here; after the handshake the client sends ["hello"], the server answers
 * ["welcome"] (or a changed frame, or the same frame twice). */
static struct outcome meet(const struct session_auth *ca, const struct session_auth *sa, int how)
{
	struct outcome o = {0};
	int sv[2], rep[2];
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0 || pipe(rep) < 0)
		exit(2);
	pid_t pid = fork();
	if (pid == 0) {
		struct session s;
		close(sv[0]);
		close(rep[0]);
		session_init(&s, sv[1], sv[1], 5000);
		int r = session_server(&s, sa);
		const uint8_t *p;
		size_t n;
		if (r == 0 && session_next(&s, &p, &n) == 1) {
			gossip_cbor_head(&s.out, GOSSIP_MT_ARRAY, 1);
			gossip_cbor_str(&s.out, GOSSIP_MT_TSTR, "welcome", 7);
			if (how == SERVE_PLAIN) {
				r = session_flush(&s);
			} else {
				/* Seal into a pipe, take the bytes, and send them changed or twice. */
				int pp[2];
				uint8_t buf[4096];
				if (pipe(pp) < 0)
					_exit(2);
				s.wfd = pp[1];
				session_flush(&s);
				ssize_t k = read(pp[0], buf, sizeof buf);
				if (k < 30)
					_exit(2);
				if (how == SERVE_TAMPER) {
					buf[k - 1] ^= 1;  /* the last byte of the frame's tag */
					r = write(sv[1], buf, (size_t)k) == k ? 0 : -1;
				} else {
					/* The header is 26 bytes; the frame after it goes twice. */
					r = write(sv[1], buf, (size_t)k) == k &&
					    write(sv[1], buf + 26, (size_t)k - 26) == k - 26 ? 0 : -1;
				}
			}
		}
		char msg[520];
		snprintf(msg, sizeof msg, "%d %s", r, r < 0 ? gossip_error() : "");
		if (write(rep[1], msg, strlen(msg)) < 0)
			_exit(2);
		_exit(0);
	}
	close(sv[1]);
	close(rep[1]);
	struct session s;
	session_init(&s, sv[0], sv[0], 5000);
	o.client = session_client(&s, ca);
	if (o.client == 0) {
		const uint8_t *p;
		size_t n;
		gossip_cbor_head(&s.out, GOSSIP_MT_ARRAY, 1);
		gossip_cbor_str(&s.out, GOSSIP_MT_TSTR, "hello", 5);
		if (session_flush(&s) < 0 || session_next(&s, &p, &n) != 1 || session_peer_error(p, n))
			o.client = -1;
		else if (n == 9)
			snprintf(o.got, sizeof o.got, "%.*s", 7, (const char *)p + 2);
		if (o.client == 0 && how == SERVE_REPLAY && session_next(&s, &p, &n) != 1)
			o.client = -1;
	}
	if (o.client < 0)
		snprintf(o.cerr, sizeof o.cerr, "%s", gossip_error());
	session_free(&s);
	close(sv[0]);
	char msg[520] = {0};
	ssize_t k = read(rep[0], msg, sizeof msg - 1);
	close(rep[0]);
	waitpid(pid, NULL, 0);
	if (k > 0) {
		o.server = atoi(msg);
		snprintf(o.serr, sizeof o.serr, "%s", strchr(msg, ' ') ? strchr(msg, ' ') + 1 : "");
	} else
		o.server = 9;
	return o;
}

#define has(s, sub) (strstr((s), (sub)) != NULL)

int main(void)
{
	if (sodium_init() < 0)
		return 1;
	alice = ident(1), bob = ident(2), eve = ident(3);
	struct gossip_trust ab = trust_of(&alice, &bob), only_a = trust_of(&alice, NULL),
	                    only_b = trust_of(&bob, NULL);
	struct gossip_keyring none = {0};
	struct session_auth a = {&alice, &none, &ab}, b = {&bob, &none, &ab};

	struct outcome o = meet(&a, &b, SERVE_PLAIN);
	ok(o.client == 0 && o.server == 0, "trusted peers complete the handshake (%s%s)", o.cerr, o.serr);
	is_str(o.got, "welcome", "a sealed item comes back");

	/* Eve holds a key, but nobody trusts it. */
	struct session_auth e = {&eve, &none, &ab};
	o = meet(&e, &b, SERVE_PLAIN);
	ok(o.client < 0 && o.server < 0, "an untrusted client is refused");
	ok(has(o.serr, "refused: the client's key ") && has(o.serr, "not in the server's trusted"),
	   "the server says why: %s", o.serr);
	ok(has(o.cerr, "peer says: refused: the client's key"), "and the client hears it: %s", o.cerr);

	struct session_auth e_srv = {&eve, &none, &ab};
	o = meet(&a, &e_srv, SERVE_PLAIN);
	ok(o.client < 0 && o.server < 0, "an untrusted server is refused");
	ok(has(o.cerr, "refused: the server's key ") && has(o.cerr, "not in the client's trusted"),
	   "the client says why: %s", o.cerr);
	ok(has(o.serr, "peer says: refused: the server's key"), "and the server hears it: %s", o.serr);

	/* Trust is each side's own: b trusting a is not enough when a does not trust b. */
	struct session_auth a_alone = {&alice, &none, &only_a}, b_trusts_a = {&bob, &none, &only_a};
	o = meet(&a_alone, &b_trusts_a, SERVE_PLAIN);
	ok(o.client < 0 && has(o.cerr, "server's key"), "a client refuses a server it does not trust: %s",
	   o.cerr);
	struct session_auth b_alone = {&bob, &none, &only_b};
	o = meet(&a, &b_alone, SERVE_PLAIN);
	ok(o.server < 0 && has(o.serr, "client's key"), "a server refuses a client it does not trust: %s",
	   o.serr);
	struct session_auth a_null = {&alice, &none, NULL};
	o = meet(&a_null, &(struct session_auth){&alice, &none, NULL}, SERVE_PLAIN);
	ok(o.client == 0 && o.server == 0, "with no trust at all, a node still syncs with itself");

	/* Frames: a changed bit and a replay are both caught. */
	o = meet(&a, &b, SERVE_TAMPER);
	ok(o.client < 0 && has(o.cerr, "peer: a frame does not authenticate"),
	   "a changed frame is rejected: %s", o.cerr);
	o = meet(&a, &b, SERVE_REPLAY);
	ok(o.client < 0 && has(o.cerr, "does not authenticate") && !strcmp(o.got, "welcome"),
	   "a frame sent twice is taken once, then rejected: %s", o.cerr);

	/* Cluster keys. */
	unsigned char k1 = 0x11, k2 = 0x22, both[2] = {0x22, 0x11};
	struct gossip_keyring r1 = ring_of(&k1, 1), r2 = ring_of(&k2, 1), r21 = ring_of(both, 2);
	struct session_auth a1 = {&alice, &r1, &ab}, b1 = {&bob, &r1, &ab}, b2 = {&bob, &r2, &ab},
	                    b21 = {&bob, &r21, &ab};
	o = meet(&a1, &b1, SERVE_PLAIN);
	ok(o.client == 0 && o.server == 0 && !strcmp(o.got, "welcome"), "one cluster key on both sides");
	o = meet(&a1, &b2, SERVE_PLAIN);
	ok(o.client < 0 && o.server < 0 && has(o.serr, "refused: the client's cluster key ") &&
	   has(o.serr, "is not in the server's keyring"), "a wrong cluster key is refused: %s", o.serr);
	ok(has(o.cerr, "peer says: refused: the client's cluster key"), "the client hears it: %s", o.cerr);
	o = meet(&a1, &b21, SERVE_PLAIN);
	ok(o.client == 0 && o.server == 0, "a keyring in rotation takes the old key too");
	o = meet(&a, &b1, SERVE_PLAIN);
	ok(o.server < 0 && has(o.serr, "names no cluster key"), "no key against a keyring: %s", o.serr);
	o = meet(&a1, &b, SERVE_PLAIN);
	ok(o.server < 0 && has(o.serr, "the server has no keyring"), "a key against none: %s", o.serr);
	uint8_t id1[SESSION_KID], id2[SESSION_KID];
	session_key_id(id1, r1.keys[0]);
	session_key_id(id2, r2.keys[0]);
	ok(memcmp(id1, id2, SESSION_KID) != 0, "different keys have different ids");

	/* An old client: version 1's request is refused by name; a trickle runs out of time. */
	int sv[2];
	socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
	static const uint8_t v1[] = "\x85\x6bgossip-sync\x01\x69push-pull\x50"
	                            "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\x00";
	if (write(sv[0], v1, sizeof v1 - 1) < 0)
		return 2;
	struct session s;
	session_init(&s, sv[1], sv[1], 2000);
	int r = session_server(&s, &b);
	ok(r < 0 && has(gossip_error(), "the client speaks sync protocol version 1, the server version 4: upgrade the older node"),
	   "a version 1 client is refused, naming both versions: %s", gossip_error());
	session_free(&s);
	uint8_t back[256];
	ssize_t k = read(sv[0], back, sizeof back);
	ok(k > 10 && memmem(back, (size_t)k, "version 1", 9), "and is told so in the clear");
	close(sv[0]);
	close(sv[1]);
	/* Version 3 (ids salted per session): its first item, refused the same way. */
	socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
	struct gossip_buf v3 = {0};
	uint8_t epk[32] = {1};
	gossip_cbor_head(&v3, GOSSIP_MT_ARRAY, 5);
	gossip_cbor_str(&v3, GOSSIP_MT_TSTR, "gossip-sync", 11);
	gossip_cbor_head(&v3, GOSSIP_MT_UINT, 3);
	gossip_cbor_head(&v3, GOSSIP_MT_UINT, 1);
	gossip_cbor_str(&v3, GOSSIP_MT_BSTR, epk, 0);
	gossip_cbor_str(&v3, GOSSIP_MT_BSTR, epk, 32);
	if (write(sv[0], v3.p, v3.len) < 0)
		return 2;
	gossip_buf_free(&v3);
	session_init(&s, sv[1], sv[1], 2000);
	r = session_server(&s, &b);
	ok(r < 0 && has(gossip_error(), "the client speaks sync protocol version 3, the server version 4: upgrade the older node"),
	   "a version 3 client is refused, naming both versions: %s", gossip_error());
	session_free(&s);
	close(sv[0]);
	close(sv[1]);

	socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
	pid_t pid = fork();
	if (pid == 0) {
		/* One byte of the request every 200 ms: never silent for long, never done. */
		for (int i = 0; i < 40; i++) {
			if (write(sv[0], v1 + i, 1) < 0)
				break;
			usleep(200000);
		}
		_exit(0);
	}
	session_init(&s, sv[1], sv[1], 1000);
	uint64_t t0 = gossip_mono_ms();
	r = session_server(&s, &b);
	uint64_t took = gossip_mono_ms() - t0;
	ok(r < 0 && has(gossip_error(), "timed out after 1 s") && took < 1500,
	   "a trickling client is cut off at the session's limit (%llu ms): %s",
	   (unsigned long long)took, gossip_error());
	session_free(&s);
	close(sv[1]);
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	close(sv[0]);

	gossip_trust_free(&ab);
	gossip_trust_free(&only_a);
	gossip_trust_free(&only_b);
	gossip_keyring_free(&r1);
	gossip_keyring_free(&r2);
	gossip_keyring_free(&r21);
	gossip_identity_free(&alice);
	gossip_identity_free(&bob);
	gossip_identity_free(&eve);
	return tap_done();
}
