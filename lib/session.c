/* session.c: the handshake that opens a sync, and the sealed frames that carry it.
 *
 * A sync hands over the whole store and takes messages in, so each end must know whom it
 * talks to before anything of the store moves, and nobody on the path may read or change
 * what moves. The handshake is SIGMA-I (Krawczyk's sign-and-MAC, as in IKEv2 and TLS
 * 1.3): fresh X25519 keys on both sides; each side signs the transcript with its Ed25519
 * identity (DIR/key); identities travel sealed under keys from the ephemeral secret, the
 * client's only after the server has proven itself. With a keyring the cluster key is
 * mixed into every key, so that without it nothing opens. Then each direction is a
 * libsodium secretstream: authenticated frames that cannot be replayed, dropped,
 * reordered or moved to another session. gossip(7) ANTI-ENTROPY gives the messages byte
 * by byte, the key schedule and the security argument; tests/syncpeer.py is a second
 * implementation written from it. */
#include "session.h"

#include <poll.h>
#include <sodium.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

typedef crypto_secretstream_xchacha20poly1305_state sstate;
enum { HEADER = crypto_secretstream_xchacha20poly1305_HEADERBYTES,
       SEAL = crypto_secretstream_xchacha20poly1305_ABYTES,
       BOX = crypto_aead_xchacha20poly1305_ietf_ABYTES,
       NONCE = crypto_aead_xchacha20poly1305_ietf_NPUBBYTES };

/* Everything secret, in guarded memory that sodium_free wipes. */
struct session_keys {
	sstate tx, rx;
	uint8_t esk[32];  /* our ephemeral X25519 secret */
	uint8_t q[32];  /* the shared X25519 secret */
	uint8_t prk[64];  /* from q and the cluster key: every other key comes from it */
	uint8_t hs[32];  /* a handshake key (used for one box) */
	uint8_t tkey[32], rkey[32];  /* the stream keys, ours and the peer's */
};

/* Handshake items and frames on the wire: flat arrays, or one byte string. */
static const struct gossip_limits wire_limits = {SESSION_FRAME + 64, 1, 8};

static const char SIG_SERVER[] = "gossip-sync 4 server signature";
static const char SIG_CLIENT[] = "gossip-sync 4 client signature";

/* ---- hashing: BLAKE2b over parts, keyed or not ---- */

struct part {
	const void *p;
	size_t n;
};

static void hash(uint8_t *out, size_t outlen, const uint8_t *key, size_t keylen,
                 const struct part *v, int nv)
{
	crypto_generichash_state st;
	crypto_generichash_init(&st, key, keylen, outlen);
	for (int i = 0; i < nv; i++)
		crypto_generichash_update(&st, v[i].p, v[i].n);
	crypto_generichash_final(&st, out, outlen);
	sodium_memzero(&st, sizeof st);
}

void session_key_id(uint8_t id[SESSION_KID], const uint8_t key[32])
{
	/* A MAC of a fixed label: names the key without telling anything about it. */
	static const char label[] = "gossip-sync cluster key id";
	hash(id, SESSION_KID, key, 32, (struct part[]){{label, sizeof label - 1}}, 1);
}

/* prk = BLAKE2b-512(key: the cluster key, or none; "gossip-sync 4 prk" || q). */
static void make_prk(struct session_keys *k, const uint8_t *cluster)
{
	static const char label[] = "gossip-sync 4 prk";
	hash(k->prk, 64, cluster, cluster ? 32 : 0,
	     (struct part[]){{label, sizeof label - 1}, {k->q, 32}}, 2);
}

/* A key for one purpose at one point of the transcript: BLAKE2b-256(key: prk, label || th). */
static void kdf(uint8_t out[32], const struct session_keys *k, const char *label,
                const uint8_t th[32])
{
	hash(out, 32, k->prk, 64, (struct part[]){{label, strlen(label)}, {th, 32}}, 2);
}

/* ---- the wire ---- */

static void timed_out(struct session *s)
{
	gossip_seterr("peer: timed out after %d s (the limit for the whole sync)", s->limit_s);
}

static int wire_send(struct session *s)
{
	if (!s->wout.len)
		return 0;
	if (gossip_send_by(s->wfd, s->wout.p, s->wout.len, s->deadline) < 0) {
		char why[512];
		snprintf(why, sizeof why, "%s", gossip_error());
		if (strstr(why, "timed out"))
			timed_out(s);
		else
			gossip_seterr("peer: %s", why);
		return -1;
	}
	s->sent += s->wout.len;
	s->wout.len = 0;
	return 0;
}

static int wire_next(struct session *s, const uint8_t **p, size_t *n)
{
	uint64_t off;
	s->wire.deadline = s->deadline;
	int r = gossip_reader_next(&s->wire, p, n, &off);
	if (r < 0 && strstr(gossip_error(), "timed out"))
		timed_out(s);
	return r;
}

/* The next handshake item; a peer's ["error", text] or an early end is an error. */
static int hs_next(struct session *s, const uint8_t **p, size_t *n)
{
	int r = wire_next(s, p, n);
	if (r == 0)
		gossip_seterr("peer: closed the connection during the handshake");
	return r == 1 && !session_peer_error(*p, *n) ? 0 : -1;
}

int session_peer_error(const uint8_t *p, size_t n)
{
	struct gossip_cur e = {p, n, 0};
	struct gossip_ev ev;
	char saved[512];
	int r = 0;
	snprintf(saved, sizeof saved, "%s", gossip_error());
	if (gossip_cur_expect(&e, GOSSIP_EV_ARRAY, &ev, "") == 0 && ev.u == 2 &&
	    gossip_cur_expect(&e, GOSSIP_EV_TSTR, &ev, "") == 0 && ev.len == 5 &&
	    memcmp(ev.data, "error", 5) == 0 && gossip_cur_expect(&e, GOSSIP_EV_TSTR, &ev, "") == 0) {
		/* The peer's words, kept short and to printable ASCII: they reach a log. */
		char text[201];
		size_t k = ev.len > 200 ? 200 : ev.len;
		for (size_t i = 0; i < k; i++)
			text[i] = ev.data[i] >= 32 && ev.data[i] < 127 ? (char)ev.data[i] : '?';
		text[k] = 0;
		snprintf(saved, sizeof saved, "peer says: %s", text);
		r = 1;
	}
	gossip_seterr("%s", saved);
	return r;
}

static int put_error(struct gossip_buf *b, const char *why)
{
	return gossip_cbor_head(b, GOSSIP_MT_ARRAY, 2) < 0 ||
	       gossip_cbor_str(b, GOSSIP_MT_TSTR, "error", 5) < 0 ||
	       gossip_cbor_str(b, GOSSIP_MT_TSTR, why, strlen(why)) < 0 ? -1 : 0;
}

/* After a refusal: stop sending and take what the peer still sends until it closes, for
 * a second at most. Closing a socket with unread bytes resets it, and a reset can lose
 * the refusal on its way; the peer closes once it has read it. */
static void linger(struct session *s)
{
	uint8_t junk[4096];
	uint64_t until = gossip_mono_ms() + 1000;
	if (until > s->deadline)
		until = s->deadline;
	shutdown(s->wfd, SHUT_WR);
	for (;;) {
		uint64_t now = gossip_mono_ms();
		struct pollfd pfd = {s->rfd, POLLIN, 0};
		if (now >= until || poll(&pfd, 1, (int)(until - now)) <= 0 ||
		    read(s->rfd, junk, sizeof junk) <= 0)
			return;
	}
}

void session_refuse(struct session *s, const char *why)
{
	char saved[512];
	int r = -1;
	s->refused = 1;
	snprintf(saved, sizeof saved, "%s", gossip_error());
	/* Sealed once we have a stream to the peer; before that the refusal can only be
	 * plain, and says nothing the peer could not learn by trying. */
	if (s->tx_open) {
		s->out.len = 0;
		if (put_error(&s->out, why) == 0)
			r = session_flush(s);
	} else if (put_error(&s->wout, why) == 0)
		r = wire_send(s);
	if (r == 0)
		linger(s);
	gossip_seterr("%s", saved);
}

/* Refuse with one line, said to the peer and kept as our error. */
static int refuse(struct session *s, const char *why)
{
	gossip_seterr("%s", why);
	session_refuse(s, why);
	return -1;
}

static int not_protocol(const char *wanted)
{
	gossip_seterr("peer: not the sync protocol (wanted %s)", wanted);
	return -1;
}

/* ---- the handshake ---- */

void session_init(struct session *s, int rfd, int wfd, int timeout_ms)
{
	memset(s, 0, sizeof *s);
	s->rfd = rfd;
	s->wfd = wfd;
	s->deadline = gossip_mono_ms() + (uint64_t)timeout_ms;
	s->limit_s = (timeout_ms + 999) / 1000;
	gossip_reader_init(&s->wire, rfd, "peer", &wire_limits);
}

static int trusted(const struct session_auth *a, const uint8_t pk[32])
{
	return memcmp(pk, a->id->pk, 32) == 0 || (a->trust && gossip_trust_find(a->trust, pk));
}

/* label || th || pk: what an identity signs (its own key included, so that a signature
 * names its signer as well as the session). */
static void to_sign(uint8_t *out, const char *label, const uint8_t th[32], const uint8_t pk[32])
{
	size_t n = strlen(label);
	memcpy(out, label, n);
	memcpy(out + n, th, 32);
	memcpy(out + n + 32, pk, 32);
}

/* The sealed part of a handshake message: [pk, signature over label || th || pk] under
 * key (used for this one box, so a zero nonce is safe), appended to b as a byte string. */
static int put_proof(struct gossip_buf *b, const struct gossip_identity *id, const char *label,
                     const uint8_t th[32], const uint8_t key[32])
{
	uint8_t msg[128], sig[64], nonce[NONCE] = {0};
	struct gossip_buf plain = {0};
	to_sign(msg, label, th, id->pk);
	crypto_sign_detached(sig, NULL, msg, strlen(label) + 64, id->sk);
	int r = -1;
	if (gossip_cbor_head(&plain, GOSSIP_MT_ARRAY, 2) < 0 ||
	    gossip_cbor_str(&plain, GOSSIP_MT_BSTR, id->pk, 32) < 0 ||
	    gossip_cbor_str(&plain, GOSSIP_MT_BSTR, sig, 64) < 0 ||
	    gossip_cbor_head(b, GOSSIP_MT_BSTR, plain.len + BOX) < 0 ||
	    gossip_buf_reserve(b, plain.len + BOX) < 0)
		goto out;
	crypto_aead_xchacha20poly1305_ietf_encrypt(b->p + b->len, NULL, plain.p, plain.len, NULL, 0,
	                                           NULL, nonce, key);
	b->len += plain.len + BOX;
	r = 0;
out:
	gossip_buf_free(&plain);
	return r;
}

/* A sealed error in place of a proof (the client refusing the server). */
static int put_sealed_error(struct gossip_buf *b, const char *why, const uint8_t key[32])
{
	uint8_t nonce[NONCE] = {0};
	struct gossip_buf plain = {0};
	int r = put_error(&plain, why) < 0 || gossip_cbor_head(b, GOSSIP_MT_BSTR, plain.len + BOX) < 0 ||
	        gossip_buf_reserve(b, plain.len + BOX) < 0 ? -1 : 0;
	if (r == 0) {
		crypto_aead_xchacha20poly1305_ietf_encrypt(b->p + b->len, NULL, plain.p, plain.len, NULL,
		                                           0, NULL, nonce, key);
		b->len += plain.len + BOX;
	}
	gossip_buf_free(&plain);
	return r;
}

/* Open a box into plain; -1 when it does not authenticate. */
static int open_box(struct gossip_buf *plain, const uint8_t *c, size_t n, const uint8_t key[32])
{
	uint8_t nonce[NONCE] = {0};
	plain->len = 0;
	if (n < BOX || gossip_buf_reserve(plain, n) < 0 ||
	    crypto_aead_xchacha20poly1305_ietf_decrypt(plain->p, NULL, NULL, c, n, NULL, 0, nonce, key) != 0)
		return -1;
	plain->len = n - BOX;
	return 0;
}

/* Check an opened proof [pk, sig] against th and label: 0 and *pk, or -1 with a reason. */
static int check_proof(const struct gossip_buf *plain, const char *label, const uint8_t th[32],
                       const uint8_t **pk)
{
	struct gossip_cur cu = {plain->p, plain->len, 0};
	struct gossip_ev ev;
	uint8_t msg[128];
	if (gossip_cur_expect(&cu, GOSSIP_EV_ARRAY, &ev, "") < 0 || ev.u != 2 ||
	    gossip_cur_expect(&cu, GOSSIP_EV_BSTR, &ev, "") < 0 || ev.len != 32)
		return not_protocol("[key, signature]");
	*pk = ev.data;
	if (gossip_cur_expect(&cu, GOSSIP_EV_BSTR, &ev, "") < 0 || ev.len != 64 || cu.pos != cu.n)
		return not_protocol("[key, signature]");
	to_sign(msg, label, th, *pk);
	if (crypto_sign_verify_detached(ev.data, msg, strlen(label) + 64, *pk) != 0) {
		gossip_seterr("signature does not verify");
		return -1;
	}
	return 0;
}

static int keys_alloc(struct session *s)
{
	if (!(s->k = sodium_malloc(sizeof *s->k))) {
		gossip_seterr("out of memory");
		return -1;
	}
	memset(s->k, 0, sizeof *s->k);
	return 0;
}

/* Our stream: its key from th4 by label, its header on the wire (sent with the first
 * frame); the peer's key by the other label, kept for when its header comes. */
static int start_streams(struct session *s, const uint8_t th4[32], const char *ours,
                         const char *theirs)
{
	uint8_t header[HEADER];
	kdf(s->k->tkey, s->k, ours, th4);
	kdf(s->k->rkey, s->k, theirs, th4);
	crypto_secretstream_xchacha20poly1305_init_push(&s->k->tx, header, s->k->tkey);
	sodium_memzero(s->k->tkey, 32);
	s->tx_open = 1;
	return gossip_cbor_str(&s->wout, GOSSIP_MT_BSTR, header, HEADER);
}

int session_client(struct session *s, const struct session_auth *a)
{
	struct gossip_buf m1 = {0}, m2 = {0}, plain = {0};
	uint8_t epk[32], kid[SESSION_KID], th[32];
	const uint8_t *cluster = a->ring && a->ring->n ? a->ring->keys[0] : NULL;
	const uint8_t *p, *es, *box, *pk;
	size_t n, boxlen;
	struct gossip_ev ev;
	int r = -1;

	if (keys_alloc(s) < 0)
		return -1;
	if (cluster)
		session_key_id(kid, cluster);
	crypto_kx_keypair(epk, s->k->esk);
	/* M1 = ["gossip-sync", 4, 1, kid, E_c]: in the clear (nothing to hide yet). */
	if (gossip_cbor_head(&m1, GOSSIP_MT_ARRAY, 5) < 0 ||
	    gossip_cbor_str(&m1, GOSSIP_MT_TSTR, "gossip-sync", 11) < 0 ||
	    gossip_cbor_head(&m1, GOSSIP_MT_UINT, SESSION_VERSION) < 0 ||
	    gossip_cbor_head(&m1, GOSSIP_MT_UINT, SESSION_SUITE) < 0 ||
	    gossip_cbor_str(&m1, GOSSIP_MT_BSTR, kid, cluster ? SESSION_KID : 0) < 0 ||
	    gossip_cbor_str(&m1, GOSSIP_MT_BSTR, epk, 32) < 0 ||
	    gossip_buf_put(&s->wout, m1.p, m1.len) < 0 || wire_send(s) < 0)
		goto out;

	/* M2 = ["hs", E_s, box_s]. A server of another version refuses ours by name. */
	if (hs_next(s, &p, &n) < 0) {
		if (strstr(gossip_error(), "sync protocol version") && !strstr(gossip_error(), "upgrade")) {
			char why[512];
			snprintf(why, sizeof why, "%s: upgrade the older node", gossip_error());
			gossip_seterr("%s", why);
		}
		goto out;
	}
	if (gossip_buf_put(&m2, p, n) < 0)
		goto out;
	struct gossip_cur cu = {m2.p, m2.len, 0};
	if (gossip_cur_expect(&cu, GOSSIP_EV_ARRAY, &ev, "") < 0 || ev.u != 3 ||
	    gossip_cur_expect(&cu, GOSSIP_EV_TSTR, &ev, "") < 0 || ev.len != 2 ||
	    memcmp(ev.data, "hs", 2) != 0 || gossip_cur_expect(&cu, GOSSIP_EV_BSTR, &ev, "") < 0 ||
	    ev.len != 32) {
		not_protocol("the server's handshake");
		goto out;
	}
	es = ev.data;
	if (gossip_cur_expect(&cu, GOSSIP_EV_BSTR, &ev, "") < 0 || cu.pos != cu.n) {
		not_protocol("the server's handshake");
		goto out;
	}
	box = ev.data;
	boxlen = ev.len;
	/* q = X25519(e_c, E_s); a point of small order gives zeros and is refused. */
	if (crypto_scalarmult(s->k->q, s->k->esk, es) != 0) {
		refuse(s, "refused: the server's ephemeral key is not a usable X25519 key");
		goto out;
	}
	make_prk(s->k, cluster);
	/* th2 = H(M1 || E_s): what the server's box key and signature are bound to. */
	hash(th, 32, NULL, 0, (struct part[]){{m1.p, m1.len}, {es, 32}}, 2);
	kdf(s->k->hs, s->k, "server handshake", th);
	if (open_box(&plain, box, boxlen, s->k->hs) < 0) {
		refuse(s, cluster ? "refused: the server's handshake does not open: it holds another "
		                    "cluster key, or the bytes were changed in transit"
		                  : "refused: the server's handshake does not open: it mixes in a "
		                    "cluster key (this client has no keyring), or the bytes were changed");
		goto out;
	}
	if (check_proof(&plain, SIG_SERVER, th, &pk) < 0) {
		char why[512];
		snprintf(why, sizeof why, "refused: the server's handshake: %s", gossip_error());
		refuse(s, why);
		goto out;
	}
	memcpy(s->peer, pk, 32);

	/* M3 = ["hs", box_c] under a key from th3 = H(M1 || M2), which covers the server's
	 * sealed identity: the client's signature names the server it is for. */
	hash(th, 32, NULL, 0, (struct part[]){{m1.p, m1.len}, {m2.p, m2.len}}, 2);
	kdf(s->k->hs, s->k, "client handshake", th);
	struct gossip_buf m3 = {0};
	size_t at = s->wout.len;
	if (gossip_cbor_head(&s->wout, GOSSIP_MT_ARRAY, 2) < 0 ||
	    gossip_cbor_str(&s->wout, GOSSIP_MT_TSTR, "hs", 2) < 0)
		goto out;
	if (!trusted(a, s->peer)) {
		/* Our identity stays with us; the refusal goes sealed, for the server's log. */
		char id[9], why[256];
		gossip_short_id(id, s->peer);
		snprintf(why, sizeof why, "refused: the server's key %s is not in the client's trusted", id);
		if (put_sealed_error(&s->wout, why, s->k->hs) == 0 && wire_send(s) == 0)
			linger(s);
		gossip_seterr("%s", why);
		goto out;
	}
	if (put_proof(&s->wout, a->id, SIG_CLIENT, th, s->k->hs) < 0 ||
	    gossip_buf_put(&m3, s->wout.p + at, s->wout.len - at) < 0) {
		gossip_buf_free(&m3);
		goto out;
	}
	/* th4 = H(M1 || M2 || M3): the session keys cover both identities. M3 and our
	 * stream header leave with the first frame. */
	hash(th, 32, NULL, 0, (struct part[]){{m1.p, m1.len}, {m2.p, m2.len}, {m3.p, m3.len}}, 3);
	gossip_buf_free(&m3);
	if (start_streams(s, th, "client to server", "server to client") < 0)
		goto out;
	r = 0;
out:
	sodium_memzero(s->k->hs, 32);
	gossip_buf_free(&m1);
	gossip_buf_free(&m2);
	gossip_buf_free(&plain);
	return r;
}

int session_server(struct session *s, const struct session_auth *a)
{
	struct gossip_buf m1 = {0}, m2 = {0}, plain = {0};
	uint8_t epk[32], th[32];
	const uint8_t *p, *ec, *kid, *pk, *cluster = NULL;
	size_t n, kidlen;
	struct gossip_ev ev;
	uint64_t version, suite;
	char why[256];
	int r = -1, got;

	if (keys_alloc(s) < 0)
		return -1;
	/* M1 = ["gossip-sync", version, suite, kid, E_c]. The version comes first and is
	 * read alone, so that any other version is refused by name. */
	if ((got = wire_next(s, &p, &n)) <= 0) {
		if (got == 0)
			gossip_seterr("peer: closed the connection before its sync request");
		goto out;
	}
	if (gossip_buf_put(&m1, p, n) < 0)
		goto out;
	struct gossip_cur cu = {m1.p, m1.len, 0};
	if (gossip_cur_expect(&cu, GOSSIP_EV_ARRAY, &ev, "") < 0 || ev.u != 5 ||
	    gossip_cur_expect(&cu, GOSSIP_EV_TSTR, &ev, "") < 0 || ev.len != 11 ||
	    memcmp(ev.data, "gossip-sync", 11) != 0 ||
	    gossip_cur_expect(&cu, GOSSIP_EV_UINT, &ev, "") < 0) {
		not_protocol("\"gossip-sync\"");
		goto out;
	}
	version = ev.u;
	if (version != SESSION_VERSION) {
		snprintf(why, sizeof why, "refused: the client speaks sync protocol version %llu, the "
		         "server version %d: upgrade the older node", (unsigned long long)version,
		         SESSION_VERSION);
		refuse(s, why);
		goto out;
	}
	if (gossip_cur_expect(&cu, GOSSIP_EV_UINT, &ev, "") < 0) {
		not_protocol("a handshake suite");
		goto out;
	}
	suite = ev.u;
	if (suite != SESSION_SUITE) {
		snprintf(why, sizeof why, "refused: the client's handshake suite is %llu, the server "
		         "knows only %d", (unsigned long long)suite, SESSION_SUITE);
		refuse(s, why);
		goto out;
	}
	if (gossip_cur_expect(&cu, GOSSIP_EV_BSTR, &ev, "") < 0 ||
	    (ev.len != 0 && ev.len != SESSION_KID)) {
		not_protocol("a cluster key id");
		goto out;
	}
	kid = ev.data;
	kidlen = ev.len;
	if (gossip_cur_expect(&cu, GOSSIP_EV_BSTR, &ev, "") < 0 || ev.len != 32 || cu.pos != cu.n) {
		not_protocol("an ephemeral key");
		goto out;
	}
	ec = ev.data;
	/* The cluster key the client names, by its id: the server tries each of its keys,
	 * so that a keyring in rotation takes both the old key and the new. */
	char hex[2 * SESSION_KID + 1];
	gossip_hex(hex, kid, kidlen);
	size_t nkeys = a->ring ? a->ring->n : 0;
	for (size_t i = 0; i < nkeys && kidlen && !cluster; i++) {
		uint8_t id[SESSION_KID];
		session_key_id(id, a->ring->keys[i]);
		if (memcmp(id, kid, SESSION_KID) == 0)
			cluster = a->ring->keys[i];
	}
	if (!kidlen && nkeys) {
		refuse(s, "refused: the client names no cluster key, and the server syncs only under "
		          "its keyring");
		goto out;
	}
	if (kidlen && !nkeys) {
		snprintf(why, sizeof why, "refused: the client names cluster key %s, and the server "
		         "has no keyring", hex);
		refuse(s, why);
		goto out;
	}
	if (kidlen && !cluster) {
		snprintf(why, sizeof why, "refused: the client's cluster key %s is not in the "
		         "server's keyring", hex);
		refuse(s, why);
		goto out;
	}

	crypto_kx_keypair(epk, s->k->esk);
	if (crypto_scalarmult(s->k->q, s->k->esk, ec) != 0) {
		refuse(s, "refused: the client's ephemeral key is not a usable X25519 key");
		goto out;
	}
	make_prk(s->k, cluster);
	/* M2 = ["hs", E_s, box_s]: the server proves itself first (SIGMA-I), so that the
	 * client shows its identity only to a server it trusts. */
	hash(th, 32, NULL, 0, (struct part[]){{m1.p, m1.len}, {epk, 32}}, 2);
	kdf(s->k->hs, s->k, "server handshake", th);
	if (gossip_cbor_head(&m2, GOSSIP_MT_ARRAY, 3) < 0 ||
	    gossip_cbor_str(&m2, GOSSIP_MT_TSTR, "hs", 2) < 0 ||
	    gossip_cbor_str(&m2, GOSSIP_MT_BSTR, epk, 32) < 0 ||
	    put_proof(&m2, a->id, SIG_SERVER, th, s->k->hs) < 0 ||
	    gossip_buf_put(&s->wout, m2.p, m2.len) < 0 || wire_send(s) < 0)
		goto out;

	/* M3 = ["hs", box_c]. */
	if (hs_next(s, &p, &n) < 0)
		goto out;
	size_t m3len = n;
	cu = (struct gossip_cur){p, n, 0};
	if (gossip_cur_expect(&cu, GOSSIP_EV_ARRAY, &ev, "") < 0 || ev.u != 2 ||
	    gossip_cur_expect(&cu, GOSSIP_EV_TSTR, &ev, "") < 0 || ev.len != 2 ||
	    memcmp(ev.data, "hs", 2) != 0 || gossip_cur_expect(&cu, GOSSIP_EV_BSTR, &ev, "") < 0 ||
	    cu.pos != cu.n) {
		not_protocol("the client's handshake");
		goto out;
	}
	hash(th, 32, NULL, 0, (struct part[]){{m1.p, m1.len}, {m2.p, m2.len}}, 2);
	kdf(s->k->hs, s->k, "client handshake", th);
	if (open_box(&plain, ev.data, ev.len, s->k->hs) < 0) {
		refuse(s, cluster ? "refused: the client's handshake does not open: it lacks the "
		                    "cluster key, or the bytes were changed in transit"
		                  : "refused: the client's handshake does not open: the bytes were "
		                    "changed in transit, or it mixes in a cluster key");
		goto out;
	}
	/* From here the server's words to the client go sealed. */
	uint8_t th3[32];
	memcpy(th3, th, 32);
	hash(th, 32, NULL, 0, (struct part[]){{m1.p, m1.len}, {m2.p, m2.len}, {p, m3len}}, 3);
	if (start_streams(s, th, "server to client", "client to server") < 0)
		goto out;
	if (session_peer_error(plain.p, plain.len))
		goto out;  /* the client refused us, and said why */
	if (check_proof(&plain, SIG_CLIENT, th3, &pk) < 0) {
		snprintf(why, sizeof why, "refused: the client's handshake: %s", gossip_error());
		refuse(s, why);
		goto out;
	}
	memcpy(s->peer, pk, 32);
	if (!trusted(a, s->peer)) {
		char id[9];
		gossip_short_id(id, s->peer);
		snprintf(why, sizeof why, "refused: the client's key %s is not in the server's trusted", id);
		refuse(s, why);
		goto out;
	}
	r = 0;
out:
	if (s->k)
		sodium_memzero(s->k->hs, 32);
	gossip_buf_free(&m1);
	gossip_buf_free(&m2);
	gossip_buf_free(&plain);
	return r;
}

/* ---- frames ---- */

int session_flush(struct session *s)
{
	if (!s->tx_open) {
		gossip_seterr("no session to send on");
		return -1;
	}
	/* Each frame: a byte string holding one secretstream message (17 bytes more than
	 * its plaintext); a sync item may span frames. */
	for (size_t at = 0; at < s->out.len;) {
		size_t k = s->out.len - at < SESSION_FRAME ? s->out.len - at : SESSION_FRAME;
		if (gossip_cbor_head(&s->wout, GOSSIP_MT_BSTR, k + SEAL) < 0 ||
		    gossip_buf_reserve(&s->wout, k + SEAL) < 0)
			return -1;
		crypto_secretstream_xchacha20poly1305_push(&s->k->tx, s->wout.p + s->wout.len, NULL,
		                                           s->out.p + at, k, NULL, 0,
		                                           crypto_secretstream_xchacha20poly1305_TAG_MESSAGE);
		s->wout.len += k + SEAL;
		at += k;
	}
	s->out.len = 0;
	return wire_send(s);
}

/* Take one wire item after the handshake: the peer's stream header, then frames. */
static int open_frame(struct session *s, const uint8_t *f, size_t fn)
{
	struct gossip_cur cu = {f, fn, 0};
	struct gossip_ev ev;
	if (!s->rx_open) {
		/* Before its header the peer may still refuse in the clear. */
		if (session_peer_error(f, fn))
			return -1;
		if (gossip_cur_expect(&cu, GOSSIP_EV_BSTR, &ev, "") < 0 || ev.len != HEADER ||
		    cu.pos != fn)
			return not_protocol("a stream header");
		crypto_secretstream_xchacha20poly1305_init_pull(&s->k->rx, ev.data, s->k->rkey);
		sodium_memzero(s->k->rkey, 32);
		s->rx_open = 1;
		return 0;
	}
	/* An empty frame is no sender's (session_flush sends none): refused, for each frame
	 * costs a scan of the item it may end. */
	if (gossip_cur_expect(&cu, GOSSIP_EV_BSTR, &ev, "") < 0 || ev.len <= SEAL || cu.pos != fn)
		return not_protocol("a sealed frame");
	unsigned char tag;
	unsigned long long mlen;
	if (gossip_buf_reserve(&s->in, ev.len) < 0)
		return -1;
	if (crypto_secretstream_xchacha20poly1305_pull(&s->k->rx, s->in.p + s->in.len, &mlen, &tag,
	                                               ev.data, ev.len, NULL, 0) != 0 ||
	    tag != crypto_secretstream_xchacha20poly1305_TAG_MESSAGE) {
		gossip_seterr("peer: a frame does not authenticate: changed in transit, replayed, or "
		              "not from the peer");
		return -1;
	}
	s->in.len += (size_t)mlen;
	return 0;
}

/* The next item's scan: OK (its length in s->ready), BAD, or MORE; walked on from where
 * the last scan stopped, once what it found missing is buffered (a peer's 1-byte frames
 * cost one walk of the item, not one per frame). */
static int scan_in(struct session *s)
{
	size_t k;
	if (s->ready)
		return GOSSIP_SCAN_OK;
	if (s->in.len <= s->in_at)
		return GOSSIP_SCAN_MORE;
	int r = gossip_scan_next(&s->scan, s->in.p + s->in_at, s->in.len - s->in_at, &gossip_any_limits, &k);
	if (r == GOSSIP_SCAN_OK)
		s->ready = k;
	return r;
}

int session_ready(struct session *s)
{
	return scan_in(s) == GOSSIP_SCAN_OK;
}

int session_next(struct session *s, const uint8_t **p, size_t *n)
{
	for (;;) {
		int sc = scan_in(s);
		if (sc == GOSSIP_SCAN_OK) {
			*p = s->in.p + s->in_at;
			*n = s->ready;
			s->off = s->in_base + s->in_at;
			s->in_at += s->ready;
			s->ready = 0;
			return 1;
		}
		if (sc == GOSSIP_SCAN_BAD) {
			char why[512];
			snprintf(why, sizeof why, "%s", gossip_error());
			/* Said to the peer too: an honest peer's item that is too large shows
			 * at its end, not as a broken pipe. */
			char told[600];
			snprintf(told, sizeof told, "refused: an item is not the sync protocol (%s)", why);
			session_refuse(s, told);
			gossip_seterr("peer: not the sync protocol (%s)", why);
			return -1;
		}
		/* More is needed: drop what was taken, then open the next frame. */
		if (s->in_at) {
			memmove(s->in.p, s->in.p + s->in_at, s->in.len - s->in_at);
			s->in.len -= s->in_at;
			s->in_base += s->in_at;
			s->in_at = 0;
		}
		const uint8_t *f;
		size_t fn;
		int r = wire_next(s, &f, &fn);
		if (r == 0) {
			if (s->in.len) {
				gossip_seterr("peer: closed the connection inside an item");
				return -1;
			}
			gossip_seterr("peer: closed the connection mid-sync");
			return 0;
		}
		if (r < 0 || open_frame(s, f, fn) < 0)
			return -1;
	}
}

void session_free(struct session *s)
{
	sodium_free(s->k);
	s->k = NULL;
	gossip_reader_free(&s->wire);
	gossip_scan_free(&s->scan);
	gossip_buf_free(&s->wout);
	gossip_buf_free(&s->out);
	gossip_buf_free(&s->in);
}
