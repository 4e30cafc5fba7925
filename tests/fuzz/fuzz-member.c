/* fuzz-member: member records ({1: incarnation, 2: name, 3: [addresses], 4: {tags}}), the
 * value of a _member message from any trusted node (gossip_member_decode), and what the
 * membership code asks of a decoded one. */
#include "fuzz.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc, (void)argv;
	fuzz_sodium();
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct gossip_member m;
	fuzz_reset();
	if (gossip_member_decode(data, size, &m) < 0)
		return 0;
	if (m.naddrs < 0 || m.naddrs > GOSSIP_MAX_ADDRS || m.ntags < 0 || m.ntags > GOSSIP_MAX_TAGS ||
	    memchr(m.name, 0, sizeof m.name) == NULL)
		abort();
	(void)gossip_member_addr(&m, GOSSIP_UDP);
	(void)gossip_member_addr(&m, GOSSIP_TCP);
	(void)gossip_member_tag(&m, "leader");
	(void)gossip_member_tag(&m, "role");
	/* What gossip-peers observe does with one: keep it, and write it to the peer table. */
	struct gossip_buf b = {0};
	if (gossip_member_encode(&b, &m) < 0)
		abort();
	struct gossip_member again;
	(void)gossip_member_decode(b.p, b.len, &again);
	gossip_buf_free(&b);
	return 0;
}
