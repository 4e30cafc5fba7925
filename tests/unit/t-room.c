/* t-room: a batch with no room that the file system's free space does not show (a quota).
 * This kernel may have no quotas, so this program stands in for one: its own write() and
 * fallocate() (linked before libc's) refuse, with EDQUOT, what would take the store file
 * past a limit, as a quota does, and pass everything else to the kernel. The first batch
 * past it fails at its write (cut back, the store read whole); the next ones, within a
 * minute, fail before they are indexed (room taken first), with nothing to undo; with room
 * again they are stored. Then what the failed write's cut and read cannot vouch for: a
 * stored message damaged during the write, or during the read, and a cut that fails
 * (its ftruncate and pread stand in too). */
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
/* Another program's change in place: a byte at flip_at flipped (through flip_fd) when the
 * write past the quota comes, or at 2000 just after the first read from the start of the
 * file (flip_on_read); the cut failing (trunc_fails). */
static int flip_fd = -1, flip_on_read, trunc_fails;
static long long flip_at = -1;

static void flip(long long at)
{
	uint8_t b;
	if (syscall(SYS_pread64, flip_fd, &b, 1, (off_t)at) == 1) {
		b ^= 1;
		(void)!syscall(SYS_pwrite64, flip_fd, &b, 1, (off_t)at);
	}
}

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
			if (flip_at >= 0) {
				flip(flip_at);
				flip_at = -1;
			}
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

int ftruncate(int fd, off_t len)
{
	if (fd == quota_fd && trunc_fails) {
		errno = EIO;
		return -1;
	}
	return syscall(SYS_ftruncate, fd, len) < 0 ? -1 : 0;
}

static ssize_t pread_flip(int fd, void *p, size_t n, off_t off)
{
	ssize_t r = syscall(SYS_pread64, fd, p, n, off);
	if (flip_on_read && fd == quota_fd && r > 0 && off == 0) {
		flip_on_read = 0;
		flip(2000);
	}
	return r;
}
ssize_t pread(int fd, void *p, size_t n, off_t off)
{
	return pread_flip(fd, p, n, off);
}
ssize_t pread64(int fd, void *p, size_t n, off_t off)
{
	return pread_flip(fd, p, n, off);
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

static void test_quota(const struct gossip_identity *id)
{
	const struct gossip_identity a = *id;
	char *dir = strdup(temp_dir("t-room"));
	struct gossip_store *st = gossip_store_open(dir, NULL);
	ok(st && batch(st, &a, "a", 40) == 0, "40 messages stored");
	struct gossip_store *y = gossip_store_open(dir, NULL);  /* a second writer, of the same chain */
	ok(y && batch(y, &a, "x", 2) == 0 && batch(st, &a, "a", 1) == 0 && st->custody && y->custody,
	   "a second writer stores, both in custody");
	long long size = file_end(st->fd);
	quota_fd = st->fd;
	quota_limit = size + 1000;  /* room for a few messages, not for a batch of 20 */

	ok(batch(st, &a, "b", 20) < 0 && strstr(gossip_error(), "Disk quota exceeded"),
	   "a batch past the quota fails at its write: %s", gossip_error());
	ok(file_end(st->fd) == size && st->failed == 1 && st->room_until > gossip_mono_ms(),
	   "the file is cut back (%lld, was %lld), read whole once (%llu), and room is taken for a while",
	   file_end(st->fd), size, (unsigned long long)st->failed);

	fallocates = 0;
	for (int i = 0; i < 3; i++) {
		char p[16];
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
	ok(batch(st, &a, "d", 2) == 0 && fallocates == 4 && file_end(st->fd) > size && st->failed == 1 &&
	   st->rereads == 0 && classify(st, &a, "y3") == GOSSIP_DUP,
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
}

/* Two writers of one chain (x and y) in custody in a fresh store; the quota set just above
 * x's file, so that x's next batch of 20 fails at its write. */
static char *two_writers(const char *name, const struct gossip_identity *a, struct gossip_store **x,
                         struct gossip_store **y)
{
	char *dir = strdup(temp_dir(name));
	*x = gossip_store_open(dir, NULL);
	*y = gossip_store_open(dir, NULL);
	ok(*x && *y && batch(*x, a, "a", 40) == 0 && batch(*y, a, "x", 2) == 0 && batch(*x, a, "a", 1) == 0 &&
	   (*x)->custody && (*y)->custody, "%s: two writers of one chain, in custody", name);
	flip_fd = open(gossip_path(dir, "store"), O_RDWR | O_CLOEXEC);
	quota_fd = *x ? (*x)->fd : -1;
	quota_limit = *x ? file_end((*x)->fd) + 500 : -1;
	return dir;
}

static void end_writers(char *dir, struct gossip_store *x, struct gossip_store *y)
{
	quota_fd = -1;
	quota_limit = -1;
	gossip_store_close(x);
	gossip_store_close(y);
	close(flip_fd);
	rm_dir(dir);
	free(dir);
}

/* A stored message damaged by another program while the batch is written: the read after
 * the cut finds it, so the index is not the one the chain's writers hold: a chain of its
 * own, and the other writer reads the store again (it would keep the lost message). */
static void test_damaged_during_write(const struct gossip_identity *a)
{
	struct gossip_store *x, *y;
	char *dir = two_writers("t-room-flip-write", a, &x, &y);
	size_t n = x ? x->n : 0;
	flip_at = 2000;
	ok(x && batch(x, a, "b", 20) < 0 && flip_at < 0, "a batch past the quota fails; a byte was flipped meanwhile");
	ok(x && x->n < n, "the read after the cut set the damaged message aside (%zu entries, %zu before)",
	   x ? x->n : 0, n);
	quota_limit = -1;
	uint64_t was = y ? y->rereads : 0;
	ok(y && batch(y, a, "y", 1) == 0 && y->rereads > was, "the other writer of the chain reads the store again");
	end_writers(dir, x, y);
}

/* The file changed during the read after the cut: that read takes no custody, and the
 * other writer reads again. */
static void test_damaged_during_read(const struct gossip_identity *a)
{
	struct gossip_store *x, *y;
	char *dir = two_writers("t-room-flip-read", a, &x, &y);
	flip_on_read = 1;
	ok(x && batch(x, a, "b", 20) < 0 && flip_on_read == 0, "a batch past the quota fails; the file changes during the read after the cut");
	ok(x && !x->custody, "no custody of a file that changed under its read");
	quota_limit = -1;
	uint64_t was = y ? y->rereads : 0;
	ok(y && batch(y, a, "y", 1) == 0 && y->rereads > was, "the other writer reads the store again");
	end_writers(dir, x, y);
}

/* Nothing written and the cut failing: the index, which held the batch, is not kept (it
 * would take the batch's messages for stored, and the next batch would skip them). */
static void test_cut_fails(const struct gossip_identity *a)
{
	char *dir = strdup(temp_dir("t-room-cut"));
	struct gossip_store *st = gossip_store_open(dir, NULL);
	ok(st && batch(st, a, "a", 10) == 0, "10 messages stored");
	quota_fd = st ? st->fd : -1;
	quota_limit = st ? file_end(st->fd) : -1;  /* no room at all */
	trunc_fails = 1;
	if (st)  /* a writer whose next read again is not due (its back-off): no help from that */
		st->retry_at = gossip_mono_ms() + 600000;
	ok(st && batch(st, a, "b", 3) < 0 && strstr(gossip_error(), "Disk quota exceeded"),
	   "a batch with no room fails, and so does the cut after it: %s", gossip_error());
	trunc_fails = 0;
	quota_limit = -1;
	ok(st && batch(st, a, "b", 3) == 0 && st->custody, "with room, the batch is stored");
	gossip_store_close(st);
	quota_fd = -1;
	st = gossip_store_open(dir, NULL);
	ok(st && classify(st, a, "b1") == GOSSIP_DUP && classify(st, a, "b3") == GOSSIP_DUP &&
	   classify(st, a, "a10") == GOSSIP_DUP, "opened again, the store holds it");
	gossip_store_close(st);
	rm_dir(dir);
	free(dir);
}

int main(void)
{
	if (sodium_init() < 0)
		return 1;
	struct gossip_identity a = ident(1);
	/* The file system under /tmp must take room (fallocate) for this to mean anything. */
	char *dir = strdup(temp_dir("t-room-probe"));
	int probe = open(gossip_path(dir, "probe"), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	int can = probe >= 0 && syscall(SYS_fallocate, probe, 1 /* FALLOC_FL_KEEP_SIZE */, 0, 4096) == 0;
	if (probe >= 0)
		close(probe);
	rm_dir(dir);
	free(dir);
	if (!can) {
		printf("ok 1 # SKIP the file system under /tmp takes no room ahead (fallocate)\n");
		tap_n = 1;
	} else {
		test_quota(&a);
		test_damaged_during_write(&a);
		test_damaged_during_read(&a);
		test_cut_fails(&a);
	}
	gossip_identity_free(&a);
	return tap_done();
}
