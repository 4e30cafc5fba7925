/* t-keys: identity files, the trusted format, and versions that only go up. */
#include "gossip.h"
#include "tap.h"

#include <fcntl.h>
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>

static int parse(struct gossip_trust *t, const char *text)
{
	gossip_trust_free(t);
	return gossip_trust_parse(t, text, strlen(text), "trusted");
}

int main(void)
{
	char dir[] = "/tmp/gossip-t-keys.XXXXXX", line[256], b64[45], text[512];
	struct gossip_identity id, id2;
	struct gossip_trust t = {0};
	if (sodium_init() < 0 || !mkdtemp(dir))
		return 1;

	/* Identity. */
	ok(gossip_identity_create(dir, "n1", 0, &id) == 0, "create an identity");
	struct stat st;
	ok(stat(gossip_path(dir, "key"), &st) == 0 && (st.st_mode & 0777) == 0600, "key is mode 0600");
	ok(gossip_identity_create(dir, "n1", 0, &id2) < 0 && strstr(gossip_error(), "use -f"),
	   "no overwrite without force: %s", gossip_error());
	ok(gossip_identity_load(dir, &id2, 0) == 0 && memcmp(id.pk, id2.pk, 32) == 0 &&
	   strcmp(id2.name, "n1") == 0, "load it back, with its name");
	gossip_identity_free(&id2);
	chmod(gossip_path(dir, "key"), 0644);
	ok(gossip_identity_load(dir, &id2, 0) < 0 && strstr(gossip_error(), "chmod 600"),
	   "a key open to others is refused: %s", gossip_error());
	chmod(gossip_path(dir, "key"), 0600);
	ok(gossip_identity_create(dir, "bad name", 1, &id2) < 0, "names have no spaces");

	/* trusted. */
	gossip_b64(b64, id.pk, 32);
	snprintf(text, sizeof text, "# comment\n\n  %s alice\r\n", b64);
	ok(parse(&t, text) == 0 && t.n == 1 && strcmp(t.v[0].name, "alice") == 0 && !t.v[0].prefixes,
	   "a key and a name, comments, blank lines, CRLF");
	ok(gossip_trust_find(&t, id.pk) != NULL, "find it");
	ok(gossip_trust_allows(&t.v[0], (const uint8_t *)"anything", 8), "no prefix: any key");
	snprintf(text, sizeof text, "prefix=a/,prefix=b/ %s\n", b64);
	ok(parse(&t, text) == 0 && t.v[0].nprefixes == 2 && !t.v[0].name, "options without a name");
	ok(gossip_trust_allows(&t.v[0], (const uint8_t *)"b/x", 3) &&
	   !gossip_trust_allows(&t.v[0], (const uint8_t *)"c/x", 3) &&
	   !gossip_trust_allows(&t.v[0], (const uint8_t *)"a", 1), "prefixes restrict");
	/* Found by fuzzing: no signer line at all (sorting an empty list was undefined). */
	ok(parse(&t, "") == 0 && t.n == 0, "an empty trusted file trusts nobody");
	ok(parse(&t, "# only a comment\n\n") == 0 && t.n == 0, "nor does one of comments and blank lines");
	snprintf(text, sizeof text, "size=3 %s\n", b64);
	ok(parse(&t, text) < 0 && strstr(gossip_error(), "line 1: unknown option"), "%s", gossip_error());
	ok(parse(&t, "AAAA alice\n") < 0 && strstr(gossip_error(), "no public key"), "%s", gossip_error());
	snprintf(text, sizeof text, "%s a\n%s b\n", b64, b64);
	ok(parse(&t, text) < 0 && strstr(gossip_error(), "line 2: the key is listed twice"), "%s",
	   gossip_error());
	snprintf(text, sizeof text, "%s a b\n", b64);
	ok(parse(&t, text) < 0 && strstr(gossip_error(), "after the name"), "%s", gossip_error());

	/* trust_load adds the node's own key. */
	gossip_trust_free(&t);
	ok(gossip_trust_load(&t, dir) == 0 && t.n == 1 && t.v[0].self &&
	   strcmp(t.v[0].name, "n1") == 0, "a node trusts itself");
	gossip_trust_free(&t);

	/* Versions. */
	struct gossip_clock c;
	uint64_t v1, v2, v3, v4;
	gossip_clock_open(&c, dir, 1);
	gossip_clock_take(&c, &v1);
	gossip_clock_take(&c, &v2);
	gossip_clock_close(&c);
	gossip_clock_open(&c, dir, 100);
	gossip_clock_take(&c, &v3);
	gossip_clock_close(&c);
	ok(v1 < v2 && v2 < v3, "versions increase across opens (%llu %llu %llu)",
	   (unsigned long long)v1, (unsigned long long)v2, (unsigned long long)v3);
	ok(v1 + 1000 * 60 > gossip_now_ms() && v1 <= gossip_now_ms(), "versions follow the wall clock");
	/* The wall clock stepped back 100 s: versions still go up. */
	int fd = open(gossip_path(dir, "clock"), O_WRONLY | O_TRUNC);
	snprintf(line, sizeof line, "%020llu\n", (unsigned long long)(gossip_now_ms() + 100000));
	write(fd, line, strlen(line));
	close(fd);
	gossip_clock_open(&c, dir, 1);
	gossip_clock_take(&c, &v4);
	gossip_clock_close(&c);
	ok(v4 > gossip_now_ms() + 99000, "a clock behind the last version does not go back");
	/* Versions lead the wall clock by at most GOSSIP_VERSION_LEAD_MS: past it the clock
	 * waits; an hour ahead it is an error rather than versions receivers refuse. */
	fd = open(gossip_path(dir, "clock"), O_WRONLY | O_TRUNC);
	snprintf(line, sizeof line, "%020llu\n",
	         (unsigned long long)(gossip_now_ms() + GOSSIP_VERSION_LEAD_MS + 300));
	write(fd, line, strlen(line));
	close(fd);
	uint64_t t0 = gossip_now_ms();
	gossip_clock_open(&c, dir, 1);
	gossip_clock_take(&c, &v4);
	gossip_clock_close(&c);
	uint64_t t1 = gossip_now_ms();
	ok(t1 - t0 >= 250 && v4 <= t1 + GOSSIP_VERSION_LEAD_MS,
	   "a version past the lead waits for the wall clock (%llu ms)", (unsigned long long)(t1 - t0));
	fd = open(gossip_path(dir, "clock"), O_WRONLY | O_TRUNC);
	snprintf(line, sizeof line, "%020llu\n", (unsigned long long)(gossip_now_ms() + 3600000));
	write(fd, line, strlen(line));
	close(fd);
	gossip_clock_open(&c, dir, 1);
	ok(gossip_clock_take(&c, &v4) < 0 && strstr(gossip_error(), "ahead of the wall clock"),
	   "a clock an hour ahead is an error: %s", gossip_error());
	gossip_clock_close(&c);
	fd = open(gossip_path(dir, "clock"), O_WRONLY | O_TRUNC);
	snprintf(line, sizeof line, "%020llu\n", (unsigned long long)(gossip_now_ms() + 100000));
	write(fd, line, strlen(line));
	close(fd);
	/* Unused reservations are given back: the next version follows the last used. */
	gossip_clock_open(&c, dir, 1000);
	gossip_clock_take(&c, &v1);
	gossip_clock_close(&c);
	gossip_clock_open(&c, dir, 1);
	gossip_clock_take(&c, &v2);
	gossip_clock_close(&c);
	ok(v2 == v1 + 1, "a block's unused versions are returned");
	fd = open(gossip_path(dir, "clock"), O_WRONLY | O_TRUNC);
	write(fd, "junk\n", 5);
	close(fd);
	gossip_clock_open(&c, dir, 1);
	ok(gossip_clock_take(&c, &v1) < 0 && strstr(gossip_error(), "clock is damaged"),
	   "a corrupt clock is an error, never a reset: %s", gossip_error());
	gossip_clock_close(&c);
	/* A digit changed, the record cut: both found by the check, never read as a lower
	 * version. */
	unlink(gossip_path(dir, "clock"));
	gossip_clock_open(&c, dir, 1);
	gossip_clock_take(&c, &v1);
	gossip_clock_close(&c);
	char rec[64] = {0};
	fd = open(gossip_path(dir, "clock"), O_RDWR);
	ssize_t got = read(fd, rec, sizeof rec - 1);
	ok(got == 30 && rec[20] == ' ' && rec[29] == '\n', "the clock is 20 digits, a check and a newline");
	rec[10] = rec[10] == '0' ? '1' : '0';
	pwrite(fd, rec, 30, 0);
	close(fd);
	gossip_clock_open(&c, dir, 1);
	ok(gossip_clock_take(&c, &v2) < 0 && strstr(gossip_error(), "clock is damaged"),
	   "a changed digit is found");
	gossip_clock_close(&c);
	fd = open(gossip_path(dir, "clock"), O_WRONLY | O_TRUNC);
	snprintf(rec, sizeof rec, "%020llu\n", (unsigned long long)v1);
	write(fd, rec, 21);
	close(fd);
	gossip_clock_open(&c, dir, 1);
	ok(gossip_clock_take(&c, &v2) == 0 && v2 > v1, "a clock without a check (as written before) is read");
	gossip_clock_close(&c);

	gossip_identity_free(&id);
	char cmd[300];
	snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
	system(cmd);
	return tap_done();
}
