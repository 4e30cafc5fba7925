/* fuzz-keyring: the cluster keyring file (DIR/keyring, one base64 key a line, mode 0600)
 * loaded by gossip_keyring_load from a scratch directory; a loaded keyring seals an item
 * and opens it again. */
#include "fuzz.h"

static const char *dir;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc, (void)argv;
	fuzz_sodium();
	dir = fuzz_dir("keyring");
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct gossip_keyring k;
	fuzz_reset();
	fuzz_file("keyring", data, size, 0600);
	if (gossip_keyring_load(&k, dir) < 0)
		return 0;
	if (k.n == 0 || !k.keys)
		abort();
	static const uint8_t plain[] = "\xd2\x84\x43\xa1\x01\x27";
	struct gossip_buf sealed = {0}, opened = {0};
	if (gossip_seal(&sealed, &k, plain, sizeof plain - 1) < 0 ||
	    gossip_open_sealed(&opened, &k, sealed.p, sealed.len) < 0 ||
	    opened.len != sizeof plain - 1 || memcmp(opened.p, plain, opened.len) != 0)
		abort();
	gossip_buf_free(&sealed);
	gossip_buf_free(&opened);
	gossip_keyring_free(&k);
	return 0;
}
