/* fuzz-clock: DIR/clock (the last version reserved, as gossip-send and every signer
 * leave it) read by a clock that reserves blocks of versions, takes some, gives the rest
 * back on close, and is opened again: versions must rise strictly throughout (gossip.h's
 * promise), whatever the file held. The time is fixed (fuzz.h). */
#include "fuzz.h"

static const char *dir;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc, (void)argv;
	fuzz_sodium();
	dir = fuzz_dir("clock");
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct gossip_clock c;
	uint64_t v, last = 0;
	fuzz_reset();
	fuzz_file("clock", data, size, 0600);
	for (int round = 0; round < 2; round++) {
		if (gossip_clock_open(&c, dir, 3) < 0)
			abort();
		for (int i = 0; i < 4; i++) {
			if (gossip_clock_take(&c, &v) < 0)
				break;
			if (v <= last)
				abort();
			last = v;
		}
		(void)gossip_clock_close(&c);
	}
	return 0;
}
