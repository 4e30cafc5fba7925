/* fuzz-msg: one message as it arrives from a peer: the COSE_Sign1 and payload decoder
 * (gossip_msg_decode), the verdict against a fixed trust list (gossip_check: alpha may
 * write anything, beta only under app/, gamma is a stranger), so that the signature is
 * verified for trusted signers, and the JSON that gossip-inspect -j and gossip-merge -j
 * print (gossip_json_fields, to /dev/null). */
#include "fuzz.h"

static struct gossip_trust trust;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc, (void)argv;
	uint8_t pk[32], sk[64];
	char a[45], b[45], text[256];
	fuzz_sodium();
	fuzz_devnull();
	fuzz_identity(pk, sk, 'a');
	gossip_b64(a, pk, 32);
	fuzz_identity(pk, sk, 'b');
	gossip_b64(b, pk, 32);
	snprintf(text, sizeof text, "# fuzz\n%s alpha\nprefix=app/,prefix=_ %s beta\n", a, b);
	if (gossip_trust_parse(&trust, text, strlen(text), "trusted") < 0 || trust.n != 2) {
		fprintf(stderr, "fuzz: trust: %s\n", gossip_error());
		exit(2);
	}
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct gossip_msg m, m2;
	const struct gossip_signer *signer;
	fuzz_reset();
	int decoded = gossip_msg_decode(data, size, &m) == 0;
	enum gossip_verdict v = gossip_check(data, size, &trust, &m2, &signer);
	/* gossip_check decodes the same way, and says why anything but OK. */
	if (decoded != (v != GOSSIP_V_MALFORMED) || (v == GOSSIP_V_OK && !signer))
		abort();
	(void)gossip_verdict_name(v);
	if (!decoded)
		return 0;
	/* Everything a decoded message points at lies inside the input. */
	if ((m.keylen && (m.key < data || m.key + m.keylen > data + size)) ||
	    (m.has_value && m.valuelen && (m.value < data || m.value + m.valuelen > data + size)))
		abort();
	(void)gossip_msg_is_news(&m);
	(void)gossip_type_name(m.type);
	uint8_t slot[16];
	gossip_slot(slot, &m);
	FILE *f = fuzz_devnull();
	fputc('{', f);
	gossip_json_fields(f, &m, signer ? signer->name : NULL);
	fputs("}\n", f);

	/* A decoded message is canonical: its payload re-encodes to the same bytes. */
	struct gossip_buf b = {0};
	if (gossip_msg_payload(&b, &m) < 0 || b.len != m.cose.paylen ||
	    memcmp(b.p, m.cose.payload, b.len) != 0)
		abort();
	gossip_buf_free(&b);
	return 0;
}
