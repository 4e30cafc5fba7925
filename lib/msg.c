/* msg.c: the gossip message: a deterministic CBOR payload in a COSE_Sign1 (Ed25519). */
#include "gossip.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

/* The protected header: the deterministic encoding of {1: -8} (alg: EdDSA). */
static const uint8_t prot_eddsa[] = {0xa1, 0x01, 0x27};

static int expect_bstr(struct gossip_cur *c, const char *what, const uint8_t **p, size_t *n)
{
	struct gossip_ev ev;
	if (gossip_cur_next(c, &ev, what) < 0)
		return -1;
	if (ev.type != GOSSIP_EV_BSTR) {
		gossip_seterr("%s is not a definite-length byte string", what);
		return -1;
	}
	*p = ev.data;
	*n = ev.len;
	return 0;
}

int gossip_cose_tbs(struct gossip_buf *b, const struct gossip_cose *c)
{
	b->len = 0;
	if (gossip_cbor_head(b, GOSSIP_MT_ARRAY, 4) < 0 ||
	    gossip_cbor_str(b, GOSSIP_MT_TSTR, "Signature1", 10) < 0 ||
	    gossip_cbor_str(b, GOSSIP_MT_BSTR, c->prot, c->protlen) < 0 ||
	    gossip_cbor_str(b, GOSSIP_MT_BSTR, "", 0) < 0 ||
	    gossip_cbor_str(b, GOSSIP_MT_BSTR, c->payload, c->paylen) < 0)
		return -1;
	return 0;
}

int gossip_cose_sign(struct gossip_buf *b, struct gossip_cose *c, const uint8_t sk[64])
{
	struct gossip_buf tbs = {0};
	uint8_t sig[crypto_sign_BYTES];
	int r = -1;
	if (gossip_cose_tbs(&tbs, c) < 0)
		goto out;
	crypto_sign_detached(sig, NULL, tbs.p, tbs.len, sk);
	if (gossip_cbor_head(b, GOSSIP_MT_TAG, 18) < 0 ||
	    gossip_cbor_head(b, GOSSIP_MT_ARRAY, 4) < 0 ||
	    gossip_cbor_str(b, GOSSIP_MT_BSTR, c->prot, c->protlen) < 0 ||
	    gossip_cbor_head(b, GOSSIP_MT_MAP, 1) < 0 ||
	    gossip_cbor_head(b, GOSSIP_MT_UINT, 4) < 0 ||
	    gossip_cbor_str(b, GOSSIP_MT_BSTR, c->kid, c->kidlen) < 0 ||
	    gossip_cbor_str(b, GOSSIP_MT_BSTR, c->payload, c->paylen) < 0 ||
	    gossip_cbor_str(b, GOSSIP_MT_BSTR, sig, sizeof sig) < 0)
		goto out;
	r = 0;
out:
	gossip_buf_free(&tbs);
	return r;
}

int gossip_cose_parse(const uint8_t *p, size_t n, struct gossip_cose *c)
{
	struct gossip_cur cu = {p, n, 0};
	struct gossip_ev ev;
	if (gossip_cur_next(&cu, &ev, "message") < 0)
		return -1;
	if (ev.type != GOSSIP_EV_TAG || ev.u != 18) {
		if (ev.type == GOSSIP_EV_ARRAY)
			gossip_seterr("untagged array: a message is a COSE_Sign1 with tag 18");
		else if (ev.type == GOSSIP_EV_TAG)
			gossip_seterr("tag %llu: a message is a COSE_Sign1 with tag 18",
			              (unsigned long long)ev.u);
		else
			gossip_seterr("not a COSE_Sign1 (tag 18)");
		return -1;
	}
	if (gossip_cur_next(&cu, &ev, "COSE_Sign1") < 0)
		return -1;
	if (ev.type != GOSSIP_EV_ARRAY || ev.u != 4) {
		if (ev.type == GOSSIP_EV_ARRAY)
			gossip_seterr("COSE_Sign1 has %llu elements, want 4", (unsigned long long)ev.u);
		else
			gossip_seterr("COSE_Sign1 is not a definite-length array of 4");
		return -1;
	}
	if (expect_bstr(&cu, "protected header", &c->prot, &c->protlen) < 0)
		return -1;
	if (gossip_cur_next(&cu, &ev, "unprotected header") < 0)
		return -1;
	if (ev.type != GOSSIP_EV_MAP || ev.u != 1) {
		gossip_seterr("unprotected header must be exactly {4: kid}");
		return -1;
	}
	if (gossip_cur_next(&cu, &ev, "unprotected header") < 0)
		return -1;
	if (ev.type != GOSSIP_EV_UINT || ev.u != 4) {
		gossip_seterr("unprotected header must be exactly {4: kid}");
		return -1;
	}
	if (expect_bstr(&cu, "kid", &c->kid, &c->kidlen) < 0 ||
	    expect_bstr(&cu, "payload", &c->payload, &c->paylen) < 0 ||
	    expect_bstr(&cu, "signature", &c->sig, &c->siglen) < 0)
		return -1;
	if (cu.pos != n) {
		gossip_seterr("%zu bytes after the COSE_Sign1 in the same item", n - cu.pos);
		return -1;
	}
	return 0;
}

int gossip_cose_verify(const struct gossip_cose *c, const uint8_t pk[32])
{
	static struct gossip_buf tbs;  /* reused: verification is the hot path */
	if (c->siglen != crypto_sign_BYTES) {
		gossip_seterr("signature is %zu bytes, want 64", c->siglen);
		return -1;
	}
	if (gossip_cose_tbs(&tbs, c) < 0)
		return -1;
	if (crypto_sign_verify_detached(c->sig, tbs.p, tbs.len, pk) != 0) {
		gossip_seterr("bad signature: it does not verify with the kid's key");
		return -1;
	}
	return 0;
}

static const char *const type_names[] = {NULL, "set", "del", "event", "ping", "ack", "response", "share"};

const char *gossip_type_name(unsigned type)
{
	return type < sizeof type_names / sizeof *type_names && type_names[type] ? type_names[type]
	                                                                        : "unknown";
}

int gossip_type_parse(const char *s)
{
	/* The types a person writes; probes are made by gossip-peers observe -p. */
	for (unsigned i = 1; i <= GOSSIP_T_EVENT; i++)
		if (strcmp(s, type_names[i]) == 0)
			return (int)i;
	return -1;
}

int gossip_msg_is_probe(const struct gossip_msg *m)
{
	return m->type == GOSSIP_T_PING || m->type == GOSSIP_T_ACK || m->type == GOSSIP_T_RESPONSE ||
	       m->type == GOSSIP_T_SHARE;
}

int gossip_msg_is_share(const struct gossip_msg *m)
{
	return m->type == GOSSIP_T_SHARE;
}

int gossip_msg_is_response(const struct gossip_msg *m)
{
	return m->type == GOSSIP_T_RESPONSE;
}

int gossip_msg_payload(struct gossip_buf *b, const struct gossip_msg *m)
{
	/* A probe is only its type and its value: {1: type, 5: value}. */
	if (gossip_msg_is_probe(m))
		return gossip_cbor_head(b, GOSSIP_MT_MAP, 2) < 0 ||
		               gossip_cbor_head(b, GOSSIP_MT_UINT, GOSSIP_F_TYPE) < 0 ||
		               gossip_cbor_head(b, GOSSIP_MT_UINT, m->type) < 0 ||
		               gossip_cbor_head(b, GOSSIP_MT_UINT, GOSSIP_F_VALUE) < 0 ||
		               gossip_cbor_str(b, GOSSIP_MT_BSTR, m->value, m->valuelen) < 0
		           ? -1
		           : 0;
	if (gossip_cbor_head(b, GOSSIP_MT_MAP, m->has_value ? 5 : 4) < 0 ||
	    gossip_cbor_head(b, GOSSIP_MT_UINT, GOSSIP_F_TYPE) < 0 ||
	    gossip_cbor_head(b, GOSSIP_MT_UINT, m->type) < 0 ||
	    gossip_cbor_head(b, GOSSIP_MT_UINT, GOSSIP_F_VERSION) < 0 ||
	    gossip_cbor_head(b, GOSSIP_MT_UINT, m->version) < 0 ||
	    gossip_cbor_head(b, GOSSIP_MT_UINT, GOSSIP_F_TIME) < 0 ||
	    gossip_cbor_head(b, GOSSIP_MT_UINT, m->time) < 0 ||
	    gossip_cbor_head(b, GOSSIP_MT_UINT, GOSSIP_F_KEY) < 0 ||
	    gossip_cbor_str(b, GOSSIP_MT_TSTR, m->key, m->keylen) < 0)
		return -1;
	if (m->has_value &&
	    (gossip_cbor_head(b, GOSSIP_MT_UINT, GOSSIP_F_VALUE) < 0 ||
	     gossip_cbor_str(b, m->value_text ? GOSSIP_MT_TSTR : GOSSIP_MT_BSTR, m->value,
	                     m->valuelen) < 0))
		return -1;
	return 0;
}

/* The checks a message's fields must pass, shared by making and reading one. */
static int check_fields(const struct gossip_msg *m)
{
	if (m->type < GOSSIP_T_SET || m->type > GOSSIP_T_SHARE) {
		gossip_seterr("unknown message type %u", m->type);
		return -1;
	}
	if (gossip_msg_is_response(m) || gossip_msg_is_share(m)) {
		/* What the value holds is query.c's or aggregate.c's to judge
		 * (gossip_response_decode, gossip_share_decode): here the shape, as for a probe. */
		const char *what = gossip_msg_is_share(m) ? "a share" : "a response";
		if (m->version || m->time || m->keylen) {
			gossip_seterr("%s has only a type and a value", what);
			return -1;
		}
		if (!m->has_value || m->value_text || m->valuelen == 0 || m->valuelen > GOSSIP_VALUE_MAX) {
			gossip_seterr("the value of %s must be a byte string of 1 to %d bytes", what,
			              GOSSIP_VALUE_MAX);
			return -1;
		}
		return 0;
	}
	if (gossip_msg_is_probe(m)) {
		if (m->version || m->time || m->keylen) {
			gossip_seterr("%s has only a type and a value",
			              m->type == GOSSIP_T_PING ? "a ping" : "an ack");
			return -1;
		}
		/* A nonce; a ping's may be followed by the target of an indirect ping, and a
		 * direct ping's or an ack's by the sender's store summary (gossip(7), THE NODE:
		 * sent only to members that showed they read it). */
		if (!m->has_value || m->value_text ||
		    !(m->valuelen == GOSSIP_NONCE_LEN || m->valuelen == GOSSIP_NONCE_LEN + GOSSIP_SUM_LEN ||
		      (m->type == GOSSIP_T_PING && m->valuelen == GOSSIP_NONCE_LEN + 32))) {
			gossip_seterr("the value of %s must be an %d-byte nonce%s, then an optional %d-byte summary",
			              m->type == GOSSIP_T_PING ? "a ping" : "an ack", GOSSIP_NONCE_LEN,
			              m->type == GOSSIP_T_PING ? " (or a 32-byte target for an indirect ping)" : "",
			              GOSSIP_SUM_LEN);
			return -1;
		}
		return 0;
	}
	if (m->version == 0) {
		gossip_seterr("version 0: versions start at 1");
		return -1;
	}
	if (m->keylen == 0 || m->keylen > GOSSIP_KEY_MAX) {
		gossip_seterr("key is %zu bytes, want 1 to %d", m->keylen, GOSSIP_KEY_MAX);
		return -1;
	}
	if (!gossip_utf8_valid(m->key, m->keylen)) {
		gossip_seterr("key is not valid UTF-8");
		return -1;
	}
	if (m->type == GOSSIP_T_SET && !m->has_value) {
		gossip_seterr("a set message has no value");
		return -1;
	}
	if (m->type == GOSSIP_T_DEL && m->has_value) {
		gossip_seterr("a del message carries a value");
		return -1;
	}
	if (m->has_value && m->valuelen > GOSSIP_VALUE_MAX) {
		gossip_seterr("value is %zu bytes, at most %d", m->valuelen, GOSSIP_VALUE_MAX);
		return -1;
	}
	if (m->has_value && m->value_text && !gossip_utf8_valid(m->value, m->valuelen)) {
		gossip_seterr("value is a text string that is not valid UTF-8");
		return -1;
	}
	return 0;
}

int gossip_msg_sign(struct gossip_buf *b, const struct gossip_msg *m,
                    const struct gossip_identity *id)
{
	struct gossip_buf pay = {0};
	struct gossip_cose c = {prot_eddsa, sizeof prot_eddsa, id->pk, 32, NULL, 0, NULL, 0};
	int r = -1;
	if (check_fields(m) < 0 || gossip_msg_payload(&pay, m) < 0)
		goto out;
	c.payload = pay.p;
	c.paylen = pay.len;
	r = gossip_cose_sign(b, &c, id->sk);
out:
	gossip_buf_free(&pay);
	return r;
}

int gossip_author_open(struct gossip_author *a, const char *dir, unsigned block)
{
	memset(a, 0, sizeof *a);
	a->clock.fd = -1;
	if (gossip_identity_load(dir, &a->id, 0) < 0) {
		char why[512];
		snprintf(why, sizeof why, "%s", gossip_error());
		gossip_seterr("key: %s", why);
		return -1;
	}
	if (gossip_clock_open(&a->clock, dir, block) < 0) {
		gossip_identity_free(&a->id);
		return -1;
	}
	return 0;
}

int gossip_author_close(struct gossip_author *a)
{
	int r = gossip_clock_close(&a->clock);
	gossip_identity_free(&a->id);
	return r;
}

int gossip_author_sign(struct gossip_author *a, struct gossip_buf *b, struct gossip_msg *m)
{
	memcpy(m->origin, a->id.pk, 32);
	m->time = gossip_now_ms();
	if (gossip_clock_take(&a->clock, &m->version) < 0)
		return -1;
	return gossip_msg_sign(b, m, &a->id);
}

static int check_protected(const uint8_t *p, size_t n)
{
	struct gossip_ev ev;
	long k;
	if (n == sizeof prot_eddsa && memcmp(p, prot_eddsa, n) == 0)
		return 0;
	/* Say which algorithm it was, when the header is a plain {1: alg}. */
	if ((k = gossip_cbor_event(p, n, &ev)) > 0 && ev.type == GOSSIP_EV_MAP && ev.u == 1 &&
	    (p += k, n -= (size_t)k, k = gossip_cbor_event(p, n, &ev)) > 0 &&
	    ev.type == GOSSIP_EV_UINT && ev.u == 1 &&
	    (p += k, n -= (size_t)k, k = gossip_cbor_event(p, n, &ev)) > 0 &&
	    (ev.type == GOSSIP_EV_NEGINT || ev.type == GOSSIP_EV_UINT)) {
		if (ev.type == GOSSIP_EV_NEGINT)
			gossip_seterr("algorithm -%llu is not EdDSA (-8)", (unsigned long long)ev.u + 1);
		else
			gossip_seterr("algorithm %llu is not EdDSA (-8)", (unsigned long long)ev.u);
		return -1;
	}
	gossip_seterr("protected header must be exactly {1: -8} (EdDSA)");
	return -1;
}

int gossip_msg_is_news(const struct gossip_msg *m)
{
	return gossip_msg_is_probe(m) || gossip_msg_key_is(m, GOSSIP_KEY_HB) ||
	       gossip_msg_key_is(m, GOSSIP_KEY_SUSPECT) || gossip_msg_key_is(m, GOSSIP_KEY_DEAD);
}

int gossip_msg_is_membership(const struct gossip_msg *m)
{
	if (gossip_msg_is_probe(m))  /* pings and acks; a query's response or a share is not */
		return !gossip_msg_is_response(m) && !gossip_msg_is_share(m);
	return gossip_msg_key_is(m, GOSSIP_KEY_MEMBER) || gossip_msg_key_is(m, GOSSIP_KEY_HB) ||
	       gossip_msg_key_is(m, GOSSIP_KEY_SUSPECT) || gossip_msg_key_is(m, GOSSIP_KEY_DEAD) ||
	       gossip_msg_key_is(m, GOSSIP_KEY_FORCE_LEAVE);
}

int gossip_msg_key_is(const struct gossip_msg *m, const char *key)
{
	size_t k = strlen(key);
	return m->keylen == k && memcmp(m->key, key, k) == 0;
}

int gossip_msg_decode(const uint8_t *p, size_t n, struct gossip_msg *m)
{
	struct gossip_ev ev;
	memset(m, 0, sizeof *m);
	m->bytes = p;
	m->nbytes = n;
	if (gossip_cose_parse(p, n, &m->cose) < 0 || check_protected(m->cose.prot, m->cose.protlen) < 0)
		return -1;
	if (m->cose.kidlen != 32) {
		gossip_seterr("kid is %zu bytes, want a 32-byte Ed25519 public key", m->cose.kidlen);
		return -1;
	}
	if (m->cose.siglen != crypto_sign_BYTES) {
		gossip_seterr("signature is %zu bytes, want 64", m->cose.siglen);
		return -1;
	}
	memcpy(m->origin, m->cose.kid, 32);

	struct gossip_cur c = {m->cose.payload, m->cose.paylen, 0};
	if (gossip_cur_next(&c, &ev, "payload") < 0)
		return -1;
	if (ev.type != GOSSIP_EV_MAP || (ev.u != 2 && ev.u != 4 && ev.u != 5)) {
		gossip_seterr("payload is not a map of 4 or 5 fields (2 for a probe)");
		return -1;
	}
	uint64_t fields = ev.u, last = 0, seen = 0;
	for (uint64_t i = 0; i < fields; i++) {
		if (gossip_cur_next(&c, &ev, "payload") < 0)
			return -1;
		if (ev.type != GOSSIP_EV_UINT || ev.u < GOSSIP_F_TYPE || ev.u > GOSSIP_F_VALUE) {
			gossip_seterr("unknown payload field");
			return -1;
		}
		if (ev.u <= last) {
			gossip_seterr("payload fields out of order or repeated (field %llu)",
			              (unsigned long long)ev.u);
			return -1;
		}
		uint64_t field = last = ev.u;
		seen |= 1u << field;
		if (gossip_cur_next(&c, &ev, "payload") < 0)
			return -1;
		int want_uint = field <= GOSSIP_F_TIME;
		if (want_uint ? ev.type != GOSSIP_EV_UINT
		              : !(ev.type == GOSSIP_EV_TSTR ||
		                  (field == GOSSIP_F_VALUE && ev.type == GOSSIP_EV_BSTR))) {
			gossip_seterr("payload field %llu has the wrong type", (unsigned long long)field);
			return -1;
		}
		switch (field) {
		case GOSSIP_F_TYPE:
			m->type = ev.u > 255 ? 255 : (unsigned)ev.u;
			break;
		case GOSSIP_F_VERSION: m->version = ev.u; break;
		case GOSSIP_F_TIME: m->time = ev.u; break;
		case GOSSIP_F_KEY:
			m->key = ev.data;
			m->keylen = ev.len;
			break;
		case GOSSIP_F_VALUE:
			m->value = ev.data;
			m->valuelen = ev.len;
			m->has_value = 1;
			m->value_text = ev.type == GOSSIP_EV_TSTR;
			break;
		}
	}
	if (c.pos != c.n) {
		gossip_seterr("%zu bytes after the payload map", c.n - c.pos);
		return -1;
	}
	if (gossip_msg_is_probe(m) ? seen != 0x22 : (seen & 0x1e) != 0x1e) {
		gossip_seterr(gossip_msg_is_probe(m) ? "a probe is exactly {1: type, 5: value}"
		                                     : "payload lacks one of type, version, time, key");
		return -1;
	}
	return check_fields(m);
}

int gossip_msg_verify(const struct gossip_msg *m)
{
	return gossip_cose_verify(&m->cose, m->origin);
}

void gossip_json_fields(FILE *f, const struct gossip_msg *m, const char *name)
{
	char b64[45];
	gossip_b64(b64, m->origin, 32);
	fprintf(f, "\"origin\":\"%s\"", b64);
	if (name) {
		fputs(",\"name\":", f);
		gossip_put_string(f, (const uint8_t *)name, strlen(name), 0);
	}
	fprintf(f, ",\"type\":\"%s\"", gossip_type_name(m->type));
	if (!gossip_msg_is_probe(m)) {
		fputs(",\"key\":", f);
		gossip_put_string(f, m->key, m->keylen, 0);
	}
	if (m->has_value && m->value_text) {
		fputs(",\"value\":", f);
		gossip_put_string(f, m->value, m->valuelen, 0);
		fputs(",\"encoding\":\"text\"", f);
	} else if (m->has_value) {
		char *vb = malloc(sodium_base64_ENCODED_LEN(m->valuelen, sodium_base64_VARIANT_ORIGINAL));
		if (vb) {
			gossip_b64(vb, m->value, m->valuelen);
			fprintf(f, ",\"value\":\"%s\",\"encoding\":\"base64\"", vb);
			free(vb);
		}
	}
	if (!gossip_msg_is_probe(m))
		fprintf(f, ",\"version\":%llu,\"time\":%llu", (unsigned long long)m->version,
		        (unsigned long long)m->time);
}
