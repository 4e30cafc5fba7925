/* fuzz-sealed: a sealed item as gossip-listen takes it from a datagram or a stream of a
 * node with a keyring: gossip_open_sealed with a fixed keyring of two keys (fills 'k'
 * and 'l', as tests/fuzz/make-corpus seals the seeds), then, as gossip-listen does, the
 * plaintext read as a CBOR sequence of messages, each decoded. */
#include "fuzz.h"

static struct gossip_keyring keys;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc, (void)argv;
	uint8_t k[32], l[32];
	char text[100];
	fuzz_sodium();
	fuzz_dir("sealed");
	memset(k, 'k', 32);
	memset(l, 'l', 32);
	gossip_b64(text, k, 32);
	strcat(text, "\n");
	gossip_b64(text + strlen(text), l, 32);
	strcat(text, "\n");
	fuzz_file("keyring", (const uint8_t *)text, strlen(text), 0600);
	if (gossip_keyring_load(&keys, fuzz_dir_path) < 0 || keys.n != 2) {
		fprintf(stderr, "fuzz: keyring: %s\n", gossip_error());
		exit(2);
	}
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct gossip_buf plain = {0};
	fuzz_reset();
	if (gossip_open_sealed(&plain, &keys, data, size) == 0) {
		size_t at = 0, len;
		while (at < plain.len &&
		       gossip_cbor_scan(plain.p + at, plain.len - at, &gossip_msg_limits, NULL, &len) ==
		               GOSSIP_SCAN_OK) {
			struct gossip_msg m;
			(void)gossip_msg_decode(plain.p + at, len, &m);
			at += len;
		}
	}
	gossip_buf_free(&plain);
	return 0;
}
