/* t-msg: COSE_Sign1 against the public Ed25519 vector, and the gossip message rules. */
#include "gossip.h"
#include "tap.h"
#include "fixture.h"

#include <sodium.h>

/* cose-wg/Examples eddsa-sig-01 (shared/vectors/cose-eddsa-sig-01.json): RFC 8032 test
 * key 1, protected {1: -8, 3: 0}, kid "11", payload "This is the content.". */
static const char *vec_d = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
static const char *vec_out =
	"d28445a201270300a10442313154546869732069732074686520636f6e74656e742e58407142fd2ff96d56db85"
	"bee905a76ba1d0b7321a95c8c4d3607c5781932b7afb8711497dfa751bf40b58b3bcc32300b1487f3db34085ee"
	"f013bf08f4a44d6fef0d";
static const char *vec_tbs =
	"846a5369676e61747572653145a2012703004054546869732069732074686520636f6e74656e742e";

static size_t make(struct gossip_buf *b, const struct gossip_identity *id, unsigned type,
                   const char *key, const char *value)
{
	struct gossip_msg m = {0};
	m.type = type;
	m.version = 42;
	m.time = 1700000000000ULL;
	m.key = (const uint8_t *)key;
	m.keylen = strlen(key);
	if (value) {
		m.value = (const uint8_t *)value;
		m.valuelen = strlen(value);
		m.has_value = 1;
		m.value_text = 1;
	}
	b->len = 0;
	return gossip_msg_sign(b, &m, id) == 0 ? b->len : 0;
}

/* Re-sign an item whose payload or headers were changed, with id's key. */
static void resign(struct gossip_buf *out, const struct gossip_identity *id, const char *prot_hex,
                   const char *kid_hex, const char *payload_hex)
{
	unsigned char prot[64], kid[64], pay[256];
	struct gossip_cose c = {prot, unhex(prot, prot_hex), kid, unhex(kid, kid_hex), pay,
	                        unhex(pay, payload_hex), NULL, 0};
	out->len = 0;
	gossip_cose_sign(out, &c, id->sk);
}

int main(void)
{
	if (sodium_init() < 0)
		return 1;
	unsigned char seed[32], pk[32], sk[64], payload[] = "This is the content.";
	unsigned char prot[5], kid[2] = {'1', '1'};
	unhex(seed, vec_d);
	unhex(prot, "a201270300");
	crypto_sign_seed_keypair(pk, sk, seed);

	/* The COSE layer reproduces the public vector byte for byte. */
	struct gossip_cose c = {prot, 5, kid, 2, payload, 20, NULL, 0};
	struct gossip_buf b = {0};
	char hex[1024];
	gossip_cose_tbs(&b, &c);
	gossip_hex(hex, b.p, b.len);
	is_str(hex, vec_tbs, "Sig_structure (ToBeSign) matches the vector");
	b.len = 0;
	ok(gossip_cose_sign(&b, &c, sk) == 0, "sign");
	gossip_hex(hex, b.p, b.len);
	is_str(hex, vec_out, "COSE_Sign1 matches the vector byte for byte");
	struct gossip_cose p;
	ok(gossip_cose_parse(b.p, b.len, &p) == 0 && p.kidlen == 2 && p.paylen == 20, "parse it back");
	ok(gossip_cose_verify(&p, pk) == 0, "and verify it");
	b.p[b.len - 1] ^= 1;
	ok(gossip_cose_verify(&p, pk) < 0, "a flipped signature bit fails");
	struct gossip_msg m;
	b.p[b.len - 1] ^= 1;
	ok(gossip_msg_decode(b.p, b.len, &m) < 0 && strstr(gossip_error(), "is not EdDSA") == NULL,
	   "the vector is no gossip message: %s", gossip_error());

	/* Messages round-trip. */
	struct gossip_identity a = ident(1), x = ident(2);
	ok(make(&b, &a, GOSSIP_T_SET, "color", "blue") > 0, "sign a set");
	ok(gossip_msg_decode(b.p, b.len, &m) == 0, "decode it");
	ok(m.type == GOSSIP_T_SET && m.version == 42 && m.time == 1700000000000ULL &&
	   m.keylen == 5 && memcmp(m.key, "color", 5) == 0 && m.has_value && m.value_text &&
	   m.valuelen == 4 && memcmp(m.value, "blue", 4) == 0 && memcmp(m.origin, a.pk, 32) == 0,
	   "every field round-trips");
	ok(gossip_msg_verify(&m) == 0, "it verifies");
	gossip_hex(hex, m.cose.payload, m.cose.paylen);
	is_str(hex, "a5010102182a031b0000018bcfe56800046563" "6f6c6f72" "0564626c7565",
	       "payload is the deterministic map {1: 1, 2: 42, 3: time, 4: key, 5: value}");
	ok(make(&b, &a, GOSSIP_T_DEL, "color", NULL) > 0 && gossip_msg_decode(b.p, b.len, &m) == 0 &&
	   !m.has_value, "a delete has no value");
	ok(make(&b, &a, GOSSIP_T_SET, "k", NULL) == 0 && strstr(gossip_error(), "no value"),
	   "a set without a value is refused: %s", gossip_error());

	/* Rejections, each with its reason. */
	struct gossip_buf t = {0};
	const char *good_pay = "a4010202010301046161";  /* {1: 2, 2: 1, 3: 1, 4: "a"} */
	char kidhex[65];
	gossip_hex(kidhex, a.pk, 32);
	resign(&t, &a, "a10127", kidhex, good_pay);
	ok(gossip_msg_decode(t.p, t.len, &m) == 0 && gossip_msg_verify(&m) == 0,
	   "a hand-built delete passes");
	resign(&t, &a, "a10126", kidhex, good_pay);
	ok(gossip_msg_decode(t.p, t.len, &m) < 0 && strstr(gossip_error(), "-7 is not EdDSA"),
	   "wrong alg: %s", gossip_error());
	resign(&t, &a, "a10127", "0102", good_pay);
	ok(gossip_msg_decode(t.p, t.len, &m) < 0 && strstr(gossip_error(), "kid is 2 bytes"),
	   "short kid: %s", gossip_error());
	resign(&t, &a, "a10127", kidhex, "a4010202010301046161" "00");
	ok(gossip_msg_decode(t.p, t.len, &m) < 0 && strstr(gossip_error(), "after the payload"),
	   "trailing payload bytes: %s", gossip_error());
	resign(&t, &a, "a10127", kidhex, "a401020218010301046161");
	ok(gossip_msg_decode(t.p, t.len, &m) < 0 && strstr(gossip_error(), "deterministically"),
	   "a long head for a small number: %s", gossip_error());
	resign(&t, &a, "a10127", kidhex, "a4020101020301046161");
	ok(gossip_msg_decode(t.p, t.len, &m) < 0 && strstr(gossip_error(), "out of order"),
	   "fields out of order: %s", gossip_error());
	resign(&t, &a, "a10127", kidhex, "a5010202010301046161" "0900");
	ok(gossip_msg_decode(t.p, t.len, &m) < 0 && strstr(gossip_error(), "unknown payload field"),
	   "unknown field: %s", gossip_error());
	resign(&t, &a, "a10127", kidhex, "a40109020103010461" "61");
	ok(gossip_msg_decode(t.p, t.len, &m) < 0 && strstr(gossip_error(), "unknown message type 9"),
	   "unknown type: %s", gossip_error());
	resign(&t, &a, "a10127", kidhex, "a5010202010301046161" "0541ff");
	ok(gossip_msg_decode(t.p, t.len, &m) < 0 && strstr(gossip_error(), "del message carries"),
	   "a delete with a value: %s", gossip_error());
	resign(&t, &a, "a10127", kidhex, "a4010102010301046161");
	ok(gossip_msg_decode(t.p, t.len, &m) < 0 && strstr(gossip_error(), "no value"),
	   "a set without a value: %s", gossip_error());
	resign(&t, &a, "a10127", kidhex, "a401020201030104628080");
	ok(gossip_msg_decode(t.p, t.len, &m) < 0 && strstr(gossip_error(), "UTF-8"),
	   "a key that is not UTF-8: %s", gossip_error());
	resign(&t, &a, "a10127", kidhex, "a4010202000301046161");
	ok(gossip_msg_decode(t.p, t.len, &m) < 0 && strstr(gossip_error(), "version 0"),
	   "version 0: %s", gossip_error());
	/* A kid that is not the signer's: the structure is fine, the signature is not. */
	gossip_hex(kidhex, x.pk, 32);
	resign(&t, &a, "a10127", kidhex, good_pay);
	ok(gossip_msg_decode(t.p, t.len, &m) == 0 && gossip_msg_verify(&m) < 0 &&
	   strstr(gossip_error(), "bad signature"), "kid of another key: %s", gossip_error());
	unsigned char raw[16];
	size_t rn = unhex(raw, "8443a10127a0410040");
	ok(gossip_msg_decode(raw, rn, &m) < 0 && strstr(gossip_error(), "untagged"),
	   "untagged: %s", gossip_error());
	rn = unhex(raw, "d28343a10127a04100");
	ok(gossip_msg_decode(raw, rn, &m) < 0 && strstr(gossip_error(), "3 elements"),
	   "three elements: %s", gossip_error());

	/* gossip_check: trust, the signature, then what the signer may do (so a refusal for
	 * that is proven by its signature). */
	struct gossip_trust tr = {0};
	char line[256], b64[45];
	gossip_b64(b64, a.pk, 32);
	snprintf(line, sizeof line, "prefix=app/,prefix=svc/ %s alice\n", b64);
	ok(gossip_trust_parse(&tr, line, strlen(line), "trusted") == 0, "trusted with a restriction");
	const struct gossip_signer *sg;
	make(&b, &a, GOSSIP_T_SET, "app/x", "1");
	ok(gossip_check(b.p, b.len, &tr, &m, &sg) == GOSSIP_V_OK && sg && strcmp(sg->name, "alice") == 0,
	   "allowed prefix passes");
	make(&b, &a, GOSSIP_T_SET, "other", "1");
	ok(gossip_check(b.p, b.len, &tr, &m, &sg) == GOSSIP_V_FORBIDDEN, "other keys are forbidden: %s",
	   gossip_error());
	make(&b, &x, GOSSIP_T_SET, "app/x", "1");
	ok(gossip_check(b.p, b.len, &tr, &m, &sg) == GOSSIP_V_UNTRUSTED && !sg, "unknown signer: %s",
	   gossip_error());
	make(&b, &a, GOSSIP_T_SET, "app/x", "1");
	b.p[b.len - 10] ^= 0x40;
	ok(gossip_check(b.p, b.len, &tr, &m, &sg) == GOSSIP_V_BADSIG, "tampered signature: %s",
	   gossip_error());
	make(&b, &a, GOSSIP_T_SET, "other", "1");
	b.p[b.len - 10] ^= 0x40;
	ok(gossip_check(b.p, b.len, &tr, &m, &sg) == GOSSIP_V_BADSIG &&
	   !gossip_verdict_proven(GOSSIP_V_BADSIG),
	   "a forbidden key under a bad signature is a bad signature, proving nothing");
	make(&b, &a, GOSSIP_T_SET, "app/x", "1");
	b.p[30] ^= 0x01;  /* inside the kid: now another (untrusted) key */
	ok(gossip_check(b.p, b.len, &tr, &m, &sg) == GOSSIP_V_UNTRUSTED, "changed kid is untrusted");

	/* Probes: {1: type, 5: nonce}, signed; any trusted signer may send one. */
	struct gossip_msg pm = {0};
	unsigned char nonce[40] = {1, 2, 3, 4, 5, 6, 7, 8};
	pm.type = GOSSIP_T_PING;
	pm.value = nonce;
	pm.valuelen = GOSSIP_NONCE_LEN;
	pm.has_value = 1;
	b.len = 0;
	ok(gossip_msg_sign(&b, &pm, &a) == 0 && b.len == 122, "a ping is 122 bytes (%zu)", b.len);
	ok(gossip_check(b.p, b.len, &tr, &m, &sg) == GOSSIP_V_OK && m.type == GOSSIP_T_PING &&
	   gossip_msg_is_probe(&m) && gossip_msg_is_news(&m) && m.valuelen == 8 &&
	   !memcmp(m.value, nonce, 8) && !m.version && !m.keylen,
	   "a ping from a restricted signer passes: %s", gossip_error());
	pm.type = GOSSIP_T_ACK;
	b.len = 0;
	ok(gossip_msg_sign(&b, &pm, &a) == 0 && gossip_msg_decode(b.p, b.len, &m) == 0 &&
	   gossip_msg_verify(&m) == 0 && m.type == GOSSIP_T_ACK && !strcmp(gossip_type_name(m.type), "ack"),
	   "an ack signs and verifies");
	pm.valuelen = 40;
	b.len = 0;
	ok(gossip_msg_sign(&b, &pm, &a) < 0 && strstr(gossip_error(), "8-byte nonce"),
	   "an ack carries no target: %s", gossip_error());
	pm.type = GOSSIP_T_PING;
	b.len = 0;
	ok(gossip_msg_sign(&b, &pm, &a) == 0 && gossip_msg_decode(b.p, b.len, &m) == 0 && m.valuelen == 40,
	   "an indirect ping carries the target's key");
	pm.valuelen = 7;
	b.len = 0;
	ok(gossip_msg_sign(&b, &pm, &a) < 0 && strstr(gossip_error(), "8-byte nonce"),
	   "a short nonce: %s", gossip_error());
	pm.valuelen = 8;
	pm.version = 5;
	b.len = 0;
	ok(gossip_msg_sign(&b, &pm, &a) < 0 && strstr(gossip_error(), "only a type and a value"),
	   "a ping with a version: %s", gossip_error());
	resign(&t, &a, "a10127", kidhex, "a301040203054801020304050607" "08");
	ok(gossip_msg_decode(t.p, t.len, &m) < 0, "a ping with a version field: %s", gossip_error());
	resign(&t, &a, "a10127", kidhex, "a2010405470102030405060" "7");
	ok(gossip_msg_decode(t.p, t.len, &m) < 0 && strstr(gossip_error(), "8-byte nonce"),
	   "a hand-built 7-byte nonce: %s", gossip_error());
	resign(&t, &a, "a10127", kidhex, "a2010405680102030405060708");
	ok(gossip_msg_decode(t.p, t.len, &m) < 0 && strstr(gossip_error(), "8-byte nonce"),
	   "a text nonce: %s", gossip_error());
	resign(&t, &a, "a10127", kidhex, "a2010105480102030405060708");
	ok(gossip_msg_decode(t.p, t.len, &m) < 0 && strstr(gossip_error(), "lacks one of type"),
	   "a two-field set: %s", gossip_error());
	ok(gossip_type_parse("ping") < 0 && gossip_type_parse("event") == GOSSIP_T_EVENT,
	   "probes are not a type a person sends");

	gossip_trust_free(&tr);
	gossip_buf_free(&b);
	gossip_buf_free(&t);
	gossip_identity_free(&a);
	gossip_identity_free(&x);
	return tap_done();
}
