/* trickle: what a trusted sync peer's 1-byte frames cost the side that reads them. A
 * session over a socket pair (the reader in a child), one item sent in frames of 1 byte:
 * an array of N zeros (N heads to walk), and, as the baseline in the same run, a byte
 * string of N bytes (one head). Prints the reader's CPU time for each and their ratio:
 * a reader that walks the item again at each frame makes the array cost grow with N^2. */
#include "session.h"
#include "../tests/unit/fixture.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double cpu(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The reader's CPU seconds for one item of n elements (array) or n bytes (string). */
static double one(const struct session_auth *ca, const struct session_auth *sa, size_t n, int array)
{
	int sv[2], rep[2];
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0 || pipe(rep) < 0)
		exit(2);
	pid_t pid = fork();
	if (pid == 0) {
		struct session s;
		const uint8_t *p;
		size_t k;
		close(sv[0]);
		session_init(&s, sv[1], sv[1], 600000);
		double t0 = cpu(), t = -1;
		if (session_server(&s, sa) == 0 && session_next(&s, &p, &k) == 1)
			t = cpu() - t0;
		if (write(rep[1], &t, sizeof t) != sizeof t)
			_exit(2);
		_exit(0);
	}
	close(sv[1]);
	struct session s;
	session_init(&s, sv[0], sv[0], 600000);
	if (session_client(&s, ca) < 0) {
		fprintf(stderr, "trickle: %s\n", gossip_error());
		exit(2);
	}
	struct gossip_buf item = {0};
	gossip_cbor_head(&item, array ? GOSSIP_MT_ARRAY : GOSSIP_MT_BSTR, n);
	for (size_t i = 0; i < n; i++)
		gossip_buf_put(&item, "", 1);
	for (size_t i = 0; i < item.len; i++) {
		gossip_buf_put(&s.out, item.p + i, 1);
		if (session_flush(&s) < 0) {
			fprintf(stderr, "trickle: %s\n", gossip_error());
			exit(2);
		}
	}
	double t;
	if (read(rep[0], &t, sizeof t) != sizeof t || t < 0)
		exit(2);
	waitpid(pid, NULL, 0);
	session_free(&s);
	gossip_buf_free(&item);
	close(sv[0]), close(rep[0]), close(rep[1]);
	return t;
}

int main(int argc, char **argv)
{
	size_t n = argc > 1 ? (size_t)atol(argv[1]) : 20000;
	int reps = argc > 2 ? atoi(argv[2]) : 3;
	if (sodium_init() < 0)
		return 2;
	struct gossip_identity a = ident(1), b = ident(2);
	struct gossip_trust t = {0};
	char text[512] = "", line[160];
	trusted_line(line, sizeof line, &a, "a"), strcat(text, line);
	trusted_line(line, sizeof line, &b, "b"), strcat(text, line);
	if (gossip_trust_parse(&t, text, strlen(text), "trusted") < 0)
		return 2;
	struct gossip_keyring none = {0};
	struct gossip_session_pair {
		struct session_auth c, s;
	} ab = {{&a, &none, &t}, {&b, &none, &t}};
	printf("# trickle: one item in 1-byte frames, N = %zu, reader CPU s (string = baseline)\n", n);
	double worst = 0;
	for (int r = 0; r < reps; r++) {
		double bs = one(&ab.c, &ab.s, n, 0), ar = one(&ab.c, &ab.s, n, 1);
		printf("string %.3f  array %.3f  ratio %.2f\n", bs, ar, ar / bs);
		if (ar / bs > worst)
			worst = ar / bs;
	}
	printf("target: the array at most 2x the string (worst of %d): %.2f %s\n", reps, worst,
	       worst <= 2 ? "PASS" : "FAIL");
	return 0;
}
