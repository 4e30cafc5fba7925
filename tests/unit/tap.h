/* tap.h: the few TAP helpers the library's unit tests print with. */
#ifndef TAP_H
#define TAP_H
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int tap_n, tap_failed;
#define ok(cond, ...)                                                             \
	do {                                                                      \
		int ok_ = !!(cond);                                               \
		printf("%s %d - ", ok_ ? "ok" : "not ok", ++tap_n);               \
		printf(__VA_ARGS__);                                              \
		putchar('\n');                                                    \
		if (!ok_) {                                                       \
			tap_failed++;                                             \
			printf("#   failed at %s:%d: %s\n", __FILE__, __LINE__, #cond); \
		}                                                                 \
	} while (0)
#define is_str(got, want, ...)                                                    \
	do {                                                                      \
		const char *g_ = (got), *w_ = (want);                             \
		ok(strcmp(g_, w_) == 0, __VA_ARGS__);                             \
		if (strcmp(g_, w_))                                               \
			printf("#   got  \"%s\"\n#   want \"%s\"\n", g_, w_);      \
	} while (0)
static inline int tap_done(void)
{
	printf("1..%d\n", tap_n);
	return tap_failed ? 1 : 0;
}
/* Hex text to bytes; returns the length. */
static inline size_t unhex(unsigned char *out, const char *hex)
{
	size_t n = strlen(hex) / 2;
	for (size_t i = 0; i < n; i++)
		sscanf(hex + 2 * i, "%2hhx", &out[i]);
	return n;
}
#endif
