/* session.h: the authenticated, encrypted stream a sync runs over, private to the library
 * (sync.c uses it; the unit tests drive it over a socket pair). gossip(7) ANTI-ENTROPY is
 * the authority on the handshake and the framing. */
#ifndef GOSSIP_SESSION_H
#define GOSSIP_SESSION_H

#include "gossip.h"

enum {
	SESSION_VERSION = 4,  /* the sync protocol version; 1 (plaintext), 2 (Merkle leaves) and 3
	                        * (ids salted per session) are refused */
	SESSION_SUITE = 1,  /* X25519, Ed25519, BLAKE2b, XChaCha20-Poly1305 (secretstream) */
	SESSION_KID = 8,  /* bytes of a cluster key's id */
	SESSION_FRAME = 65536,  /* plaintext bytes in one frame, at most */
};

/* Who this end is and whom it accepts. */
struct session_auth {
	const struct gossip_identity *id;
	const struct gossip_keyring *ring;  /* NULL or empty: no cluster key is mixed in */
	const struct gossip_trust *trust;  /* NULL: nobody but id itself */
};

struct session_keys;  /* sodium_malloc'd secrets: private to session.c */
struct session {
	int rfd, wfd;
	uint64_t deadline;  /* gossip_mono_ms() after which nothing waits any longer */
	int limit_s;  /* the whole session's limit, for messages */
	struct gossip_reader wire;  /* handshake items, then the peer's header and frames */
	struct gossip_buf wout;  /* wire bytes to send */
	struct gossip_buf out;  /* plaintext sync items, sealed by session_flush */
	struct gossip_buf in;  /* opened plaintext; the next item starts at in_at */
	size_t in_at, ready;
	struct gossip_scan scan;  /* the next item's, while it wants more */
	uint64_t in_base;  /* plaintext offset of in.p[0] */
	uint64_t off;  /* plaintext offset of the item session_next returned last */
	struct session_keys *k;
	int tx_open, rx_open;  /* our stream has begun; the peer's header has arrived */
	int refused;  /* session_refuse has told the peer why */
	uint8_t peer[32];  /* the peer's identity, once it has proven it */
	uint64_t sent;  /* wire bytes sent (wire.bytes counts those received) */
};

/* A session on rfd and wfd that ends timeout_ms from now, whatever happens. */
void session_init(struct session *s, int rfd, int wfd, int timeout_ms);
/* The handshake, as the client (who speaks first) or the server. 0: the peer is who it
 * says and trusted, and s->peer holds its key; -1: refused or failed (the error says
 * why; the peer has been told when it could be). The client's last handshake message
 * leaves with its first session_flush. */
int session_client(struct session *s, const struct session_auth *a);
int session_server(struct session *s, const struct session_auth *a);
/* Seal what is in s->out and send it with anything else pending. */
int session_flush(struct session *s);
/* 1: the next plaintext item (valid until the next call); 0: the peer closed cleanly
 * between items; -1: error ("peer: ..."; a peer's ["error", text] becomes
 * "peer says: text"). */
int session_next(struct session *s, const uint8_t **p, size_t *n);
/* 1 when a whole item is already open (session_next will not wait). */
int session_ready(struct session *s);
/* Tell the peer why we stop: ["error", why], sealed once the session has keys. */
void session_refuse(struct session *s, const char *why);
/* 1 (and the error set to "peer says: text") when p is ["error", text]. */
int session_peer_error(const uint8_t *p, size_t n);
void session_free(struct session *s);

/* The id a client names a cluster key by: keyed BLAKE2b of a fixed label. */
void session_key_id(uint8_t id[SESSION_KID], const uint8_t key[32]);

#endif
