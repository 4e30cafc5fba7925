/* fuzz.h: what every libFuzzer harness shares: fixed identities and cluster keys (the
 * same fixed seeds tests/fuzz/make-corpus signs and seals the seed corpus with), a fixed
 * clock and a fixed random stream (so that every input runs the same way each time), and
 * a scratch state directory for the decoders that read files.
 *
 * Harnesses are built by `make fuzz` with -Wl,--wrap=gossip_now_ms: the library's calls
 * to gossip_now_ms() (store expiry, clock reservations) land in __wrap_gossip_now_ms
 * below, so no result depends on the time of day. */
#ifndef FUZZ_H
#define FUZZ_H
#include "gossip.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The time every harness runs at: ten minutes after the seed corpus was made (its
 * events and deletes are still live; a fuzzed time of day decides the rest). */
#define FUZZ_NOW_MS 1796280120000ULL  /* 2026-12-03T06:42:00Z */
uint64_t __wrap_gossip_now_ms(void);
uint64_t __wrap_gossip_now_ms(void)
{
	return FUZZ_NOW_MS;
}

/* The seed corpus's signers: alpha (fill 'a'), beta ('b'), gamma ('c'); cluster keys
 * fill 'k' and 'l'. */
static inline void fuzz_identity(uint8_t pk[32], uint8_t sk[64], unsigned char fill)
{
	unsigned char seed[32];
	memset(seed, fill, 32);
	crypto_sign_seed_keypair(pk, sk, seed);
}

/* A deterministic random stream (splitmix64), reset before every input. */
static uint64_t fuzz_rng;
static inline uint64_t fuzz_next(void)
{
	uint64_t z = (fuzz_rng += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}
static inline const char *fuzz_rng_name(void)
{
	return "fuzz";
}
static inline uint32_t fuzz_rng_random(void)
{
	return (uint32_t)fuzz_next();
}
static inline void fuzz_rng_buf(void *const buf, const size_t size)
{
	uint8_t *p = buf;
	for (size_t i = 0; i < size; i++)
		p[i] = (uint8_t)fuzz_next();
}
static struct randombytes_implementation fuzz_randombytes = {
	fuzz_rng_name, fuzz_rng_random, NULL, NULL, fuzz_rng_buf, NULL,
};
static inline void fuzz_reset(void)
{
	fuzz_rng = 0;
}

/* libsodium with the fixed random stream; exits when it cannot start. */
static inline void fuzz_sodium(void)
{
	randombytes_set_implementation(&fuzz_randombytes);
	if (sodium_init() < 0) {
		fprintf(stderr, "fuzz: libsodium cannot start\n");
		exit(2);
	}
}

/* /dev/null, for what decoders print. */
static inline FILE *fuzz_devnull(void)
{
	static FILE *f;
	if (!f && !(f = fopen("/dev/null", "w"))) {
		perror("fuzz: /dev/null");
		exit(2);
	}
	return f;
}

/* The scratch state directory, made once under $TMPDIR (make fuzz points it at
 * /dev/shm when it can: the store and the clock fsync) and removed at exit. */
static char fuzz_dir_path[4096];
static inline int fuzz_rm(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb, (void)flag, (void)ftw;
	return remove(path);
}
static inline void fuzz_cleanup(void)
{
	if (fuzz_dir_path[0])
		nftw(fuzz_dir_path, fuzz_rm, 16, FTW_DEPTH | FTW_PHYS);
}
static inline const char *fuzz_dir(const char *name)
{
	if (!fuzz_dir_path[0]) {
		const char *tmp = getenv("TMPDIR");
		snprintf(fuzz_dir_path, sizeof fuzz_dir_path, "%s/gossip-fuzz-%s.XXXXXX",
		         tmp && *tmp ? tmp : "/tmp", name);
		if (!mkdtemp(fuzz_dir_path)) {
			perror("fuzz: mkdtemp");
			exit(2);
		}
		atexit(fuzz_cleanup);
	}
	return fuzz_dir_path;
}

/* DIR/NAME holding exactly p[0..n) with mode; NULL p removes it. Exits on failure: the
 * harness, not the library, is broken then. */
static inline void fuzz_file(const char *name, const uint8_t *p, size_t n, mode_t mode)
{
	char path[4200];
	snprintf(path, sizeof path, "%s/%s", fuzz_dir_path, name);
	if (!p) {
		if (unlink(path) < 0 && errno != ENOENT) {
			perror(path);
			exit(2);
		}
		return;
	}
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
	if (fd < 0 || fchmod(fd, mode) < 0 || (n && gossip_write_all(fd, p, n) < 0)) {
		perror(path);
		exit(2);
	}
	close(fd);
}

#endif
