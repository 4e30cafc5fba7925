/* t-room: a batch with no room that the file system's free space does not show (a quota).
 * This kernel may have no quotas, so this program stands in for one: its own write() and
 * fallocate() (linked before libc's) refuse, with EDQUOT, what would take the store file
 * past a limit, as a quota does, and pass everything else to the kernel. The first batch
 * past it fails at its write (cut back, the store read whole); the next ones, within a
 * minute, fail before they are indexed (room taken first), with nothing to undo; with room
 * again they are stored. */
#include "store-fixture.h"
#include "tap.h"
#include "fixture.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

static const uint64_t T = 1700000000000ULL;

/* The quota: the store file's descriptor and its limit in bytes (-1: none). */
static int quota_fd = -1;
static long long quota_limit = -1;
static int fallocates;  /* calls that reached the stand-in for the store file */

static long long file_end(int fd)
{
	struct stat sb;
	return fstat(fd, &sb) == 0 ? (long long)sb.st_size : 0;
}

ssize_t write(int fd, const void *p, size_t n)
{
	if (fd == quota_fd && quota_limit >= 0) {
		int fl = fcntl(fd, F_GETFL);
		long long at = fl >= 0 && (fl & O_APPEND) ? file_end(fd) : (long long)lseek(fd, 0, SEEK_CUR);
		if (at + (long long)n > quota_limit) {
			if (at >= quota_limit) {
				errno = EDQUOT;
				return -1;
			}
			n = (size_t)(quota_limit - at);  /* what fits, as a quota writes it */
		}
	}
	return syscall(SYS_write, fd, p, n);
}

int fallocate(int fd, int mode, off_t off, off_t len)
{
	if (fd == quota_fd) {
		fallocates++;
		if (quota_limit >= 0 && (long long)(off + len) > quota_limit) {
			errno = EDQUOT;
			return -1;
		}
	}
	long r = syscall(SYS_fallocate, fd, mode, off, len);
	return r < 0 ? -1 : 0;
}

/* A batch of n sets of keys PREFIX1..n (about 200 bytes each) appended to st. */
static int batch(struct gossip_store *st, const struct gossip_identity *a, const char *prefix, int n)
{
	struct gossip_buf b = {0};
	char key[64], value[160];
	memset(value, 'v', sizeof value - 1);
	value[sizeof value - 1] = 0;
	for (int i = 1; i <= n; i++) {
		snprintf(key, sizeof key, "%s%d", prefix, i);
		sign_msg(&b, a, GOSSIP_T_SET, key, value, 1, T);
	}
	int r = fixture_append(st, &b, 0, NULL);
	gossip_buf_free(&b);
	return r;
}

static enum gossip_class classify(struct gossip_store *st, const struct gossip_identity *id, const char *key)
{
	struct gossip_buf b = {0};
	struct gossip_msg m;
	uint8_t slot[16];
	char value[160];
	memset(value, 'v', sizeof value - 1);
	value[sizeof value - 1] = 0;
	sign_msg(&b, id, GOSSIP_T_SET, key, value, 1, T);
	gossip_msg_decode(b.p, b.len, &m);
	gossip_slot(slot, &m);
	enum gossip_class c = gossip_store_classify(st, &m, slot);
	gossip_buf_free(&b);
	return c;
}

int main(void)
{
	if (sodium_init() < 0)
		return 1;
	char *dir = strdup(temp_dir("t-room"));
	struct gossip_identity a = ident(1);
	struct gossip_store *st = gossip_store_open(dir, NULL);
	ok(st && batch(st, &a, "a", 40) == 0, "40 messages stored");
	if (!st)
		return tap_done();
	/* The file system under /tmp must take room (fallocate) for the rest to mean anything. */
	int probe = open(gossip_path(dir, "probe"), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	int can = probe >= 0 && syscall(SYS_fallocate, probe, 1 /* FALLOC_FL_KEEP_SIZE */, 0, 4096) == 0;
	if (probe >= 0)
		close(probe);
	if (!can) {
		printf("ok %d # SKIP the file system under /tmp takes no room ahead (fallocate)\n", ++tap_n);
		gossip_store_close(st);
		rm_dir(dir);
		return tap_done();
	}
	struct gossip_store *y = gossip_store_open(dir, NULL);  /* a second writer, of the same chain */
	ok(y && batch(y, &a, "x", 2) == 0 && batch(st, &a, "a", 1) == 0 && st->custody && y->custody,
	   "a second writer stores, both in custody");
	long long size = file_end(st->fd);
	quota_fd = st->fd;
	quota_limit = size + 1000;  /* room for a few messages, not for a batch of 20 */

	ok(batch(st, &a, "b", 20) < 0 && strstr(gossip_error(), "Disk quota exceeded"),
	   "a batch past the quota fails at its write: %s", gossip_error());
	ok(file_end(st->fd) == size && st->failed == 1 && st->room_until > gossip_now_ms(),
	   "the file is cut back (%lld, was %lld), read whole once (%llu), and room is taken for a while",
	   file_end(st->fd), size, (unsigned long long)st->failed);

	fallocates = 0;
	for (int i = 0; i < 3; i++) {
		char p[8];
		snprintf(p, sizeof p, "c%d-", i);
		ok(batch(st, &a, p, 20) < 0 && strstr(gossip_error(), "Disk quota exceeded"),
		   "the next batch past the quota fails too: %s", gossip_error());
	}
	ok(fallocates == 3 && st->failed == 1 && file_end(st->fd) == size,
	   "... before anything of them was indexed or written: room refused %d times, no cut or whole read (%llu)",
	   fallocates, (unsigned long long)st->failed);
	ok(classify(st, &a, "a7") == GOSSIP_DUP && classify(st, &a, "b3") == GOSSIP_NEW &&
	   classify(st, &a, "c1-3") == GOSSIP_NEW, "what was stored is, what failed is not");

	ok(st->custody && st->rereads == 0, "the writer keeps custody of the file it cut back: no read again at its next lock");
	ok(y && batch(y, &a, "y", 3) == 0 && y->custody && y->rereads == 0,
	   "another writer of its chain stores after it, keeping custody (no whole read)");
	quota_limit = file_end(st->fd) + 1000;  /* room for a few messages again (y took it) */
	size = file_end(st->fd);
	ok(batch(st, &a, "d", 2) == 0 && file_end(st->fd) > size && st->failed == 1 && st->rereads == 0 &&
	   classify(st, &a, "y3") == GOSSIP_DUP,
	   "a batch within the quota is stored, room taken first (%d); the other's read as an append", fallocates);

	quota_limit = -1;  /* room again */
	ok(batch(st, &a, "b", 20) == 0 && classify(st, &a, "b20") == GOSSIP_DUP && st->failed == 1,
	   "with room again the batch is stored");
	gossip_store_close(st);
	gossip_store_close(y);

	quota_fd = -1;
	st = gossip_store_open(dir, NULL);
	ok(st && classify(st, &a, "a40") == GOSSIP_DUP && classify(st, &a, "b1") == GOSSIP_DUP && classify(st, &a, "y1") == GOSSIP_DUP &&
	   classify(st, &a, "d2") == GOSSIP_DUP && classify(st, &a, "c0-1") == GOSSIP_NEW,
	   "opened again, the store holds the batches stored and none that failed");
	gossip_store_close(st);
	rm_dir(dir);
	free(dir);
	gossip_identity_free(&a);
	return tap_done();
}
