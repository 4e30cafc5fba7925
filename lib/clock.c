/* clock.c: per-origin versions that only go up, across crashes, restarts and clock steps. */
#include "gossip.h"

#include <errno.h>
#include <sodium.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* DIR/clock holds the last version reserved, as 20 decimal digits, a space, 8 hex digits
 * of a hash of the 20 digits, and a newline: one write within a sector, so it is never seen
 * half-written, and a changed byte is found. (20 digits and a newline, from before the
 * check, are read too.) */
enum { CLOCK_OLD = 21, CLOCK_REC = 30 };

static void check(char out[9], const char *digits)
{
	uint8_t h[4];
	crypto_generichash(h, sizeof h, (const uint8_t *)digits, 20, NULL, 0);
	snprintf(out, 9, "%02x%02x%02x%02x", h[0], h[1], h[2], h[3]);
}

static int damaged(const char *path)
{
	gossip_seterr("%s is damaged (not a version and its check): the versions this node sent may "
	              "lead the wall clock by %d s, so remove it, then wait %d s before this node signs "
	              "again (or put back a copy)",
	              path, GOSSIP_VERSION_LEAD_MS / 1000, GOSSIP_VERSION_LEAD_MS / 1000);
	return -1;
}

static int read_last(int fd, const char *path, uint64_t *last)
{
	char b[CLOCK_REC + 2], sum[9];
	ssize_t k = pread(fd, b, CLOCK_REC + 1, 0);
	if (k < 0) {
		gossip_seterr("%s: cannot read: %s", path, strerror(errno));
		return -1;
	}
	if (k == 0) {
		*last = 0;
		return 0;
	}
	b[k] = 0;
	int old = k == CLOCK_OLD && b[20] == '\n';
	int now = k == CLOCK_REC && b[20] == ' ' && b[29] == '\n' && (check(sum, b), !memcmp(b + 21, sum, 8));
	if (strspn(b, "0123456789") != 20 || (!old && !now))
		return damaged(path);
	b[20] = 0;
	*last = strtoull(b, NULL, 10);
	return 0;
}

static int write_last(int fd, uint64_t v)
{
	char b[CLOCK_REC + 1], sum[9];
	struct stat st;
	snprintf(b, sizeof b, "%020" PRIu64, v);
	check(sum, b);
	snprintf(b + 20, sizeof b - 20, " %s\n", sum);
	int had = fstat(fd, &st) == 0 && st.st_size >= CLOCK_OLD;
	if (pwrite(fd, b, CLOCK_REC, 0) != CLOCK_REC || fdatasync(fd) < 0) {
		int e = errno;
		/* A full disk can cut the first write of a new file short: leave it empty (a
		 * new clock), not a part of a record. Over an old record, a part written is
		 * found by its check. */
		if (!had && ftruncate(fd, 0) < 0) {
			/* read_last finds a part of a record damaged */
		}
		gossip_seterr("clock: cannot write: %s", strerror(e ? e : ENOSPC));
		return -1;
	}
	return 0;
}

int gossip_clock_open(struct gossip_clock *c, const char *dir, unsigned block)
{
	memset(c, 0, sizeof *c);
	c->block = block ? block : 1;
	c->fd = -1;
	snprintf(c->path, sizeof c->path, "%s", gossip_path(dir, "clock"));
	return 0;
}

/* The longest the clock waits for the wall clock before it gives up. */
enum { WAIT_MAX_MS = 10000 };

static int reserve(struct gossip_clock *c)
{
	uint64_t last, now, start;
	/* Opened on first use, so that a command that fails early leaves no clock file. */
	if (c->fd < 0 && (c->fd = open(c->path, O_RDWR | O_CREAT | O_CLOEXEC, 0600)) < 0) {
		if (errno == EISDIR)
			return damaged(c->path);
		gossip_seterr("clock: cannot open %s: %s", c->path, strerror(errno));
		return -1;
	}
	for (;;) {
		int r = -1;
		uint64_t wait = 0;
		if (flock(c->fd, LOCK_EX) < 0) {
			gossip_seterr("clock: cannot lock: %s", strerror(errno));
			return -1;
		}
		now = gossip_now_ms();
		if (read_last(c->fd, c->path, &last) < 0)
			goto out;
		if (last >= UINT64_MAX - c->block) {
			gossip_seterr("clock: versions are used up");
			goto out;
		}
		start = now > last ? now : last + 1;
		/* A burst runs versions ahead of the wall clock; past the lead receivers allow,
		 * wait for the wall clock rather than sign what they would refuse. */
		if (start + c->block - 1 > now + GOSSIP_VERSION_LEAD_MS) {
			wait = start + c->block - 1 - now - GOSSIP_VERSION_LEAD_MS;
			if (wait > WAIT_MAX_MS) {
				gossip_seterr("clock: %s is %llu s ahead of the wall clock, more than the %d s "
				              "a version may lead it (gossip(7)); wait for the clock to catch up",
				              c->path, (unsigned long long)((last - now) / 1000),
				              GOSSIP_VERSION_LEAD_MS / 1000);
				goto out;
			}
			r = 1;
			goto out;
		}
		if (write_last(c->fd, start + c->block - 1) < 0)
			goto out;
		c->next = start;
		c->limit = start + c->block - 1;
		r = 0;
	out:
		flock(c->fd, LOCK_UN);
		if (r <= 0)
			return r;
		struct timespec ts = {(time_t)(wait / 1000), (long)(wait % 1000) * 1000000L};
		while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
			;
	}
}

int gossip_clock_take(struct gossip_clock *c, uint64_t *version)
{
	if (c->next == 0 || c->next > c->limit) {
		if (reserve(c) < 0)
			return -1;
	}
	*version = c->next++;
	return 0;
}

int gossip_clock_close(struct gossip_clock *c)
{
	uint64_t last;
	int r = 0;
	if (c->fd < 0)
		return 0;
	/* Give back the unused part of the block, unless another process reserved after us. */
	if (c->next && c->next <= c->limit && flock(c->fd, LOCK_EX) == 0) {
		if (read_last(c->fd, c->path, &last) == 0 && last == c->limit)
			r = write_last(c->fd, c->next - 1);
		flock(c->fd, LOCK_UN);
	}
	close(c->fd);
	c->fd = -1;
	return r;
}
