/* raw: the baseline for bench/run: a plain libsodium Ed25519 sign and verify loop over
 * inputs the size of a message's Sig_structure. Prints "sign N/s" and "verify N/s", per
 * second of this process's CPU time, so that other load on the machine does not count. */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	int n = argc > 1 ? atoi(argv[1]) : 20000;
	size_t len = argc > 2 ? (size_t)atoi(argv[2]) : 100;
	unsigned char pk[32], sk[64], *msg = malloc(len), *sig = malloc(64 * (size_t)n);
	if (sodium_init() < 0 || !msg || !sig || n <= 0)
		return 2;
	crypto_sign_keypair(pk, sk);
	randombytes_buf(msg, len);
	double t0 = now();
	for (int i = 0; i < n; i++) {
		msg[0] = (unsigned char)i;  /* a different input each time, as in real use */
		crypto_sign_detached(sig + 64 * i, NULL, msg, len, sk);
	}
	double t1 = now();
	int bad = 0;
	for (int i = 0; i < n; i++) {
		msg[0] = (unsigned char)i;
		bad += crypto_sign_verify_detached(sig + 64 * i, msg, len, pk) != 0;
	}
	double t2 = now();
	printf("sign %.0f\nverify %.0f\n", n / (t1 - t0), n / (t2 - t1));
	free(msg);
	free(sig);
	return bad ? 1 : 0;
}
