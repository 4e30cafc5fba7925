/* fuzz-trust: trusted text (DIR/trusted: "[prefix=P,...] BASE64KEY [name]" lines), parsed
 * by gossip_trust_parse, then every lookup the verdict code makes on the result. */
#include "fuzz.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc, (void)argv;
	fuzz_sodium();
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct gossip_trust t = {0};
	fuzz_reset();
	if (gossip_trust_parse(&t, (const char *)data, size, "trusted") == 0) {
		for (size_t i = 0; i < t.n; i++) {
			const struct gossip_signer *s = &t.v[i];
			/* Sorted and unique: each signer is found where it is. */
			if (gossip_trust_find(&t, s->pk) != s || (i && memcmp(t.v[i - 1].pk, s->pk, 32) >= 0))
				abort();
			if (s->name)
				(void)gossip_trust_named(&t, s->name);
			(void)gossip_trust_allows(s, (const uint8_t *)"app/x", 5);
			(void)gossip_trust_allows(s, (const uint8_t *)"", 0);
			/* A key that is a signer's prefix is one it may write. */
			if (s->nprefixes && !gossip_trust_allows(s, (const uint8_t *)s->prefixes[0],
			                                         strlen(s->prefixes[0])))
				abort();
		}
		(void)gossip_trust_named(&t, "alpha");
	}
	/* On failure too: what was parsed before the bad line is the caller's to free. */
	gossip_trust_free(&t);
	return 0;
}
