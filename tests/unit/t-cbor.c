/* t-cbor: CBOR events, item scanning with limits, sequences, encoding and notation. */
#include "gossip.h"
#include "tap.h"

#include <signal.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int scan_hex(const char *hex, const struct gossip_limits *lim, size_t *len)
{
	unsigned char b[512];
	size_t n = unhex(b, hex);
	return gossip_cbor_scan(b, n, lim, NULL, len);
}

static const char *diag_hex(const char *hex)
{
	static char out[1024];
	unsigned char b[512];
	size_t n = unhex(b, hex);
	FILE *f = fmemopen(out, sizeof out, "w");
	if (gossip_diag(f, b, n, 1) < 0)
		fputs("(error)", f);
	fclose(f);
	return out;
}

static volatile sig_atomic_t alarms, arm, woken;
static void on_alarm(int sig)
{
	(void)sig;
	if (++alarms >= 75 && !arm)
		signal(SIGALRM, SIG_IGN);  /* 1.5 s of signals, then none */
	if (arm)
		woken = 1;
}

static const char *fmt(double d)
{
	static char out[40];
	gossip_fmt_double(out, d);
	return out;
}

int main(void)
{
	struct gossip_ev ev;
	unsigned char b[600];
	size_t len;

	/* Events. */
	unhex(b, "1903e8");
	ok(gossip_cbor_event(b, 3, &ev) == 3 && ev.type == GOSSIP_EV_UINT && ev.u == 1000 && ev.width == 2,
	   "uint16 head");
	ok(gossip_cbor_event(b, 2, &ev) == 0, "a head cut short asks for more");
	unhex(b, "f0");
	ok(gossip_cbor_event(b, 1, &ev) == 1 && ev.type == GOSSIP_EV_SIMPLE && ev.u == 16, "simple(16)");
	unhex(b, "d2");
	ok(gossip_cbor_event(b, 1, &ev) == 1 && ev.type == GOSSIP_EV_TAG && ev.u == 18,
	   "tag 18 in one byte (libcbor 0.8 rejects tags 6..20)");
	unhex(b, "f818");
	ok(gossip_cbor_event(b, 2, &ev) == -1, "0xf8 0x18 is not well-formed (RFC 8949 3.3)");
	unhex(b, "1c");
	ok(gossip_cbor_event(b, 1, &ev) == -1, "reserved additional information 28");
	unhex(b, "5bfffffffffffffff7000000");
	ok(gossip_cbor_event(b, 12, &ev) == 0, "a string longer than the input asks for more");

	/* Whole items. */
	ok(scan_hex("8301820203820405", &gossip_any_limits, &len) == GOSSIP_SCAN_OK && len == 8,
	   "nested arrays scan to their end");
	ok(scan_hex("9f018202039f0405ffff", &gossip_any_limits, &len) == GOSSIP_SCAN_OK && len == 10,
	   "indefinite arrays");
	ok(scan_hex("bf6346756ef563416d7421ff00", &gossip_any_limits, &len) == GOSSIP_SCAN_OK && len == 12,
	   "an indefinite map ends at its break, not at the end of input");
	ok(scan_hex("c11a514b67b0", &gossip_any_limits, &len) == GOSSIP_SCAN_OK && len == 6, "tags");
	int all_more = 1;
	const char *item = "a26161016162820203";
	for (size_t k = 1; k < strlen(item) / 2; k++) {
		char pre[64];
		snprintf(pre, sizeof pre, "%.*s", (int)(2 * k), item);
		if (scan_hex(pre, &gossip_any_limits, &len) != GOSSIP_SCAN_MORE)
			all_more = 0;
	}
	ok(all_more, "every proper prefix of an item asks for more");
	/* A head that declares more than the limit is refused at once, whole or nested, not
	 * after the limit's worth of bytes have come (a peer would stall there instead). */
	struct gossip_limits small = {1000, 100, 8};
	ok(scan_hex("5a4519dcb1", &small, &len) == GOSSIP_SCAN_BAD, "a string head over the limit");
	ok(scan_hex("82015903e9", &small, &len) == GOSSIP_SCAN_BAD, "a nested string head over the limit");
	ok(scan_hex("82015903e0", &small, &len) == GOSSIP_SCAN_MORE, "a string head within it waits");
	ok(scan_hex("ff", &gossip_any_limits, &len) == GOSSIP_SCAN_BAD && len == 0,
	   "a break at the top is not well-formed");
	ok(scan_hex("8201ff", &gossip_any_limits, &len) == GOSSIP_SCAN_BAD && len == 2,
	   "a break in a definite array, reported at its offset");
	ok(scan_hex("5f4101ff", &gossip_any_limits, &len) == GOSSIP_SCAN_OK, "indefinite byte string");
	ok(scan_hex("5f6161ff", &gossip_any_limits, &len) == GOSSIP_SCAN_BAD,
	   "a text chunk in an indefinite byte string");
	ok(scan_hex("bf01ff", &gossip_any_limits, &len) == GOSSIP_SCAN_BAD, "a map key without value");
	struct gossip_limits lim = {64, 3, 10};
	ok(scan_hex("818181818100", &lim, &len) == GOSSIP_SCAN_BAD &&
	   strstr(gossip_error(), "deeper than 3"), "nesting limit: %s", gossip_error());
	ok(scan_hex("81818100", &lim, &len) == GOSSIP_SCAN_OK, "nesting at the limit passes");
	ok(scan_hex("8b0102030405060708090a0b", &lim, &len) == GOSSIP_SCAN_BAD &&
	   strstr(gossip_error(), "more than 10"), "item count limit: %s", gossip_error());
	ok(scan_hex("9b00ffffffffffffff", &lim, &len) == GOSSIP_SCAN_BAD,
	   "a huge declared array fails at once");
	memset(b, 0, sizeof b);
	b[0] = 0x59, b[1] = 0x01, b[2] = 0x00;  /* 256-byte string, over the limit of 64 */
	ok(gossip_cbor_scan(b, 259, &lim, NULL, &len) == GOSSIP_SCAN_BAD &&
	   strstr(gossip_error(), "larger than 64"), "size limit: %s", gossip_error());
	/* A deep nest within the default limits must not recurse: 100 levels. */
	memset(b, 0x81, 100);
	b[100] = 0;
	ok(gossip_cbor_scan(b, 101, &gossip_any_limits, NULL, &len) == GOSSIP_SCAN_OK && len == 101,
	   "100 levels of nesting");

	/* Sequences from a pipe, with offsets; a torn tail is an error at its offset. */
	int fds[2];
	if (pipe(fds) == 0) {
		struct gossip_reader r;
		const uint8_t *it;
		uint64_t off;
		size_t n = unhex(b, "01" "8202" "03" "a1616101" "8301");
		write(fds[1], b, n);
		close(fds[1]);
		gossip_reader_init(&r, fds[0], "pipe", &gossip_any_limits);
		int g1 = gossip_reader_next(&r, &it, &len, &off);
		ok(g1 == 1 && len == 1 && off == 0, "first item");
		int g2 = gossip_reader_next(&r, &it, &len, &off);
		ok(g2 == 1 && len == 3 && off == 1 && it[0] == 0x82, "second item at offset 1");
		int g3 = gossip_reader_next(&r, &it, &len, &off);
		ok(g3 == 1 && off == 4 && len == 4, "third item at offset 4");
		int g5 = gossip_reader_next(&r, &it, &len, &off);
		ok(g5 == -1 && strstr(gossip_error(), "offset 8: truncated"), "torn tail: %s",
		   gossip_error());
		gossip_reader_free(&r);
		close(fds[0]);
	}

	/* A prefix says what it needs at least, so that a reader fed a byte at a time scans
	 * again only once that has come (a peer's 1-byte frames cost a scan per head). */
	ok(scan_hex("5903e800010203", &gossip_any_limits, &len) == GOSSIP_SCAN_MORE && len == 1003,
	   "a 1000-byte string begun needs its end (%zu)", len);
	ok(scan_hex("82015903e8", &gossip_any_limits, &len) == GOSSIP_SCAN_MORE && len == 1005,
	   "nested, from the item's start (%zu)", len);
	ok(scan_hex("5903", &gossip_any_limits, &len) == GOSSIP_SCAN_MORE && len == 3,
	   "a head cut short needs the rest of the head (%zu)", len);
	ok(scan_hex("8201", &gossip_any_limits, &len) == GOSSIP_SCAN_MORE && len == 3,
	   "an array short of an item needs one byte more (%zu)", len);

	/* The same walk over a buffer that grows a byte at a time, going on where it stopped:
	 * the same answers as a scan of the whole, and nothing walked twice (an array of a
	 * thousand small items, each head walked when its byte comes). */
	{
		const char *items[] = {"a26161016162820203", "9f018202039f0405ffff", "bf6346756ef563416d7421ff",
		                       "c11a514b67b0", "5f41014102ff", "d28443a10127a104582000"};
		int same = 1;
		struct gossip_scan sc = {0};
		for (size_t i = 0; i < sizeof items / sizeof *items; i++) {
			uint8_t it[64];
			size_t n = unhex(it, items[i]), whole, got = 0;
			int want = gossip_cbor_scan(it, n, &gossip_any_limits, NULL, &whole), r = GOSSIP_SCAN_MORE;
			for (size_t k = 1; k <= n && r == GOSSIP_SCAN_MORE; k++)
				r = gossip_scan_next(&sc, it, k, &gossip_any_limits, &got);
			if (r != want || got != whole)
				same = 0;
			gossip_scan_reset(&sc);
		}
		ok(same, "a walk fed a byte at a time ends as a scan of the whole");
		static uint8_t arr[1003];
		arr[0] = 0x99, arr[1] = 0x03, arr[2] = 0xe8;  /* 1000 zeros */
		int on = 1, r = GOSSIP_SCAN_MORE;
		size_t got = 0;
		for (size_t k = 1; k <= sizeof arr && r == GOSSIP_SCAN_MORE; k++) {
			r = gossip_scan_next(&sc, arr, k, &gossip_any_limits, &got);
			if (r == GOSSIP_SCAN_MORE && (got != (k < 3 ? 3 : k + 1) || sc.pos != (k < 3 ? 0 : k)))
				on = 0;
		}
		ok(on && r == GOSSIP_SCAN_OK && got == sizeof arr, "an array trickled is walked on, never again from its start");
		arr[500] = 0xff;  /* a break in a definite array */
		r = GOSSIP_SCAN_MORE;
		for (size_t k = 1; k <= sizeof arr && r == GOSSIP_SCAN_MORE; k++)
			r = gossip_scan_next(&sc, arr, k, &gossip_any_limits, &got);
		ok(r == GOSSIP_SCAN_BAD && got == 500 && strstr(gossip_error(), "break"),
		   "a bad byte trickled is found at its offset (%zu: %s)", got, gossip_error());
		arr[500] = 0;
		ok(gossip_scan_next(&sc, arr, sizeof arr, &gossip_any_limits, &got) == GOSSIP_SCAN_OK && got == sizeof arr,
		   "and the walk starts afresh after it");
		gossip_scan_free(&sc);
	}

	/* Items trickled in pieces, one right after a trickled one: each comes whole (what a
	 * scan found missing is asked for that item only). */
	if (pipe(fds) == 0) {
		static uint8_t big[3003];
		big[0] = 0x59, big[1] = 0x0b, big[2] = 0xb8;  /* a 3000-byte string */
		pid_t pid = fork();
		if (pid == 0) {
			close(fds[0]);
			struct timespec ms = {0, 2000000};
			for (size_t i = 0; i < 40; i++) {  /* 40 bytes one at a time, then the rest */
				write(fds[1], big + i, 1);
				nanosleep(&ms, NULL);
			}
			write(fds[1], big + 40, sizeof big - 40);
			write(fds[1], "\x01\x82\x02\x03\x59\x0b\xb8", 7);  /* 1, [2, 3], a string begun */
			nanosleep(&ms, NULL);
			write(fds[1], big + 3, 3000);
			_exit(0);
		}
		close(fds[1]);
		struct gossip_reader r;
		const uint8_t *it;
		uint64_t off;
		gossip_reader_init(&r, fds[0], "pipe", &gossip_any_limits);
		int g1 = gossip_reader_next(&r, &it, &len, &off);
		int ok1 = g1 == 1 && len == 3003 && off == 0;
		int g2 = gossip_reader_next(&r, &it, &len, &off);
		int ok2 = g2 == 1 && len == 1 && off == 3003 && it[0] == 1;
		int g3 = gossip_reader_next(&r, &it, &len, &off);
		int ok3 = g3 == 1 && len == 3 && off == 3004;
		int g4 = gossip_reader_next(&r, &it, &len, &off);
		int ok4 = g4 == 1 && len == 3003 && off == 3007 && !memcmp(it, big, 3003);
		int g5 = gossip_reader_next(&r, &it, &len, &off);
		ok(ok1 && ok2 && ok3 && ok4 && g5 == 0, "trickled items come whole, and the ones after them (%d %d %d %d %d)",
		   g1, g2, g3, g4, g5);
		gossip_reader_free(&r);
		close(fds[0]);
		waitpid(pid, NULL, 0);
	}

	/* A wait with a signal every 20 ms: it ends when its time is up (a signal does not
	 * start it again; the timer stops after 1.5 s, so that a wait started again each
	 * time ends too, late), and at the first signal that finds the wake flag set. */
	if (pipe(fds) == 0) {
		struct gossip_reader r;
		const uint8_t *it;
		uint64_t off;
		struct sigaction sa = {0};
		sa.sa_handler = on_alarm;
		sigaction(SIGALRM, &sa, NULL);
		struct itimerval iv = {{0, 20000}, {0, 20000}};
		setitimer(ITIMER_REAL, &iv, NULL);
		int quiet[2];  /* a wake fd that never turns readable */
		if (pipe(quiet) < 0)
			return 1;
		gossip_reader_init(&r, fds[0], "pipe", &gossip_any_limits);
		r.timeout_ms = 200;
		r.wake_fd = quiet[0];
		r.wake_flag = &woken;
		uint64_t t0 = gossip_mono_ms();
		int g = gossip_reader_next(&r, &it, &len, &off);
		uint64_t took = gossip_mono_ms() - t0;
		ok(g == -1 && strstr(gossip_error(), "timed out after") && took >= 200 && took < 1000 && alarms >= 3,
		   "signals that leave the wake flag clear neither end a wait nor start it again: over after %llu ms, "
		   "%d signals (%s)", (unsigned long long)took, (int)alarms, gossip_error());
		alarms = 0;
		arm = 1;
		r.timeout_ms = 5000;
		g = gossip_reader_next(&r, &it, &len, &off);
		ok(g == -1 && strstr(gossip_error(), "timed out: woken") && woken, "a signal that sets the wake flag ends it: %s",
		   gossip_error());
		struct itimerval off_ = {{0, 0}, {0, 0}};
		setitimer(ITIMER_REAL, &off_, NULL);
		gossip_reader_free(&r);
		close(fds[0]);
		close(fds[1]);
		close(quiet[0]);
		close(quiet[1]);
	}

	/* Encoding: shortest heads from libcbor. */
	struct gossip_buf e = {0};
	gossip_cbor_head(&e, GOSSIP_MT_UINT, 23);
	gossip_cbor_head(&e, GOSSIP_MT_UINT, 24);
	gossip_cbor_head(&e, GOSSIP_MT_UINT, 65536);
	gossip_cbor_str(&e, GOSSIP_MT_TSTR, "a", 1);
	gossip_cbor_head(&e, GOSSIP_MT_TAG, 18);
	char hex[64];
	gossip_hex(hex, e.p, e.len);
	is_str(hex, "17" "1818" "1a00010000" "6161" "d2", "shortest heads");
	gossip_buf_free(&e);

	/* Numbers as RFC 8949 Appendix A writes them. */
	is_str(fmt(1.0), "1.0", "1.0");
	is_str(fmt(1.1), "1.1", "1.1");
	is_str(fmt(-4.1), "-4.1", "-4.1");
	is_str(fmt(100000.0), "100000.0", "100000.0");
	is_str(fmt(1.0e300), "1.0e+300", "1.0e+300");
	is_str(fmt(5.960464477539063e-8), "5.960464477539063e-8", "smallest half subnormal");
	is_str(fmt(0.00006103515625), "0.00006103515625", "smallest half normal");
	is_str(fmt(3.4028234663852886e+38), "3.4028234663852886e+38", "largest single");
	is_str(fmt(0.5), "0.5", "0.5");
	is_str(fmt(123456789012345680000.0), "123456789012345680000.0", "21 digits stay plain");
	is_str(fmt(1e21), "1.0e+21", "1e21 goes to exponent form");
	is_str(fmt(-0.0), "-0.0", "negative zero");

	/* Notation. */
	is_str(diag_hex("c249010000000000000000"), "18446744073709551616", "bignum");
	is_str(diag_hex("c349010000000000000000"), "-18446744073709551617", "negative bignum");
	is_str(diag_hex("3bffffffffffffffff"), "-18446744073709551616", "most negative int");
	is_str(diag_hex("c24100"), "0", "bignum zero");
	is_str(diag_hex("c2a0"), "2({})", "tag 2 on a map stays a tag");
	is_str(diag_hex("bf61610161629f0203ffff"), "{_ \"a\": 1, \"b\": [_ 2, 3]}", "indefinite map");
	is_str(diag_hex("7f657374726561646d696e67ff"), "(_ \"strea\", \"ming\")", "chunked text");
	is_str(diag_hex("64f0908591"), "\"\\ud800\\udd51\"", "astral text as surrogates");
	is_str(diag_hex("d28443a10127a104420102410a40"),
	       "18([<<{1: -8}>>, {4: h'0102'}, <<10>>, h''])",
	       "COSE_Sign1 shows embedded CBOR");
	is_str(diag_hex("8443a10127a0430a0b0c40"), "[h'a10127', {}, h'0a0b0c', h'']",
	       "without tag 18 nothing is embedded");

	/* UTF-8. */
	ok(gossip_utf8_valid((const uint8_t *)"\xc3\xbc", 2), "valid two-byte");
	ok(!gossip_utf8_valid((const uint8_t *)"\xc0\xaf", 2), "overlong rejected");
	ok(!gossip_utf8_valid((const uint8_t *)"\xed\xa0\x80", 3), "surrogate rejected");
	ok(!gossip_utf8_valid((const uint8_t *)"\xe6\xb0", 2), "truncated rejected");
	return tap_done();
}
