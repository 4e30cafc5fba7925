/* fuzz-reader: CBOR sequences read from a descriptor (gossip_reader), as gossip-merge,
 * gossip-listen and gossip-peers read their input: the input is the whole stream, in a
 * memfd, read with the message limits, the inspection limits and small limits (which
 * reach the size, depth and item limits with short inputs), each with and without a
 * timeout (poll, then read) and asking gossip_reader_ready between items. */
#include "fuzz.h"

#include <sys/mman.h>

static int fd = -1;

static const struct gossip_limits small = {96, 3, 12};

static void read_all(const uint8_t *data, size_t size, const struct gossip_limits *lim,
                     int timeout_ms, int ask_ready)
{
	struct gossip_reader r;
	const uint8_t *item;
	size_t len;
	uint64_t off, next = 0;
	int s;
	if (lseek(fd, 0, SEEK_SET) != 0)
		abort();
	gossip_reader_init(&r, fd, "fuzz", lim);
	r.timeout_ms = timeout_ms;
	for (;;) {
		if (ask_ready)
			(void)gossip_reader_ready(&r);
		if ((s = gossip_reader_next(&r, &item, &len, &off)) != 1)
			break;
		/* Items follow each other, lie inside the stream, and are what it holds there. */
		if (off != next || len == 0 || len > lim->max_size || off + len > size ||
		    memcmp(item, data + off, len) != 0)
			abort();
		next = off + len;
	}
	/* A clean end only after the last byte was taken. */
	if (s == 0 && next != size)
		abort();
	if (r.bytes != size && s == 0)
		abort();
	gossip_reader_free(&r);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc, (void)argv;
	fuzz_sodium();
	if ((fd = memfd_create("fuzz-reader", MFD_CLOEXEC)) < 0) {
		perror("fuzz: memfd_create");
		exit(2);
	}
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fuzz_reset();
	if (ftruncate(fd, 0) < 0 || (size && pwrite(fd, data, size, 0) != (ssize_t)size))
		abort();
	read_all(data, size, &gossip_msg_limits, 0, 0);
	read_all(data, size, &gossip_msg_limits, 1000, 1);
	read_all(data, size, &gossip_any_limits, 0, 1);
	read_all(data, size, &small, 0, 0);
	read_all(data, size, &small, 1000, 1);
	return 0;
}
