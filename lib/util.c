/* util.c: error reporting, the state dir, careful file I/O and text encodings. */
#include "gossip.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <poll.h>
#include <signal.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

const char *gossip_progname = "gossip";
static char errbuf[512];

const char *gossip_error(void)
{
	return errbuf;
}

void gossip_seterr(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(errbuf, sizeof errbuf, fmt, ap);
	va_end(ap);
}

void gossip_init(const char *argv0)
{
	const char *s = strrchr(argv0, '/');
	gossip_progname = s ? s + 1 : argv0;
	if (sodium_init() < 0)
		gossip_die(GOSSIP_EXIT_ERR, "libsodium: cannot initialise");
	/* A file size limit (ulimit -f, systemd's LimitFSIZE=) fails a write (EFBIG), said
	 * and handled as a full disk is, rather than killing the program half way through a
	 * batch. The commands and handlers a program runs get the default back. */
	signal(SIGXFSZ, SIG_IGN);
}

void gossip_exec_signals(int hup_ignored)
{
	static const int sigs[] = {SIGPIPE, SIGXFSZ, SIGCHLD, SIGTERM, SIGINT, SIGQUIT, SIGALRM, SIGUSR1, SIGUSR2};
	for (size_t i = 0; i < sizeof sigs / sizeof *sigs; i++)
		signal(sigs[i], SIG_DFL);
	if (hup_ignored)
		signal(SIGHUP, SIG_IGN);
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
}

/* One write per line: the processes of a node share one log, and a line written in pieces
 * could interleave with another's. A longer line is cut, ending in "...". */
static void vwarn(const char *fmt, va_list ap)
{
	char line[4096];
	int k = snprintf(line, sizeof line, "%s: ", gossip_progname);
	if (k < 0 || (size_t)k >= sizeof line)
		k = 0;
	int m = vsnprintf(line + k, sizeof line - (size_t)k, fmt, ap);
	size_t n = m < 0 ? (size_t)k : (size_t)k + (size_t)m;
	if (n > sizeof line - 2) {
		n = sizeof line - 2;
		memcpy(line + n - 3, "...", 3);
	}
	line[n++] = '\n';
	fflush(stdout);
	fflush(stderr);
	(void)!write(2, line, n);
}

void gossip_warn(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vwarn(fmt, ap);
	va_end(ap);
}

void gossip_die(int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vwarn(fmt, ap);
	va_end(ap);
	exit(code);
}

void gossip_opt_once(int opt)
{
	static unsigned char seen[512];
	if (opt > 0 && opt < 512 && seen[opt]++) {
		if (opt < 256)
			gossip_die(GOSSIP_EXIT_ERR, "option -%c given twice", opt);
		gossip_die(GOSSIP_EXIT_ERR, "an option was given twice");
	}
}

void gossip_print_version(void)
{
	printf("%s (gossip) %s\n", gossip_progname, PACKAGE_VERSION);
	exit(GOSSIP_EXIT_OK);
}

const char *gossip_state_dir(const char *opt)
{
	static char buf[4096];
	const char *e;
	if (opt && *opt)
		return opt;
	if ((e = getenv("GOSSIP_DIR")) && *e)
		return e;
	e = getenv("HOME");
	snprintf(buf, sizeof buf, "%s/.gossip", e && *e ? e : ".");
	return buf;
}

const char *gossip_path(const char *dir, const char *name)
{
	static char bufs[4][4096];
	static unsigned i;
	char *b = bufs[i++ % 4];
	snprintf(b, sizeof bufs[0], "%s/%s", dir, name);
	return b;
}

int gossip_buf_reserve(struct gossip_buf *b, size_t n)
{
	if (n > SIZE_MAX / 2 - b->len) {
		gossip_seterr("out of memory");
		return -1;
	}
	if (b->len + n > b->cap) {
		size_t cap = b->cap ? b->cap : 256;
		while (cap < b->len + n)
			cap *= 2;
		uint8_t *q = realloc(b->p, cap);
		if (!q) {
			gossip_seterr("out of memory");
			return -1;
		}
		b->p = q;
		b->cap = cap;
	}
	return 0;
}

int gossip_buf_put(struct gossip_buf *b, const void *p, size_t n)
{
	if (gossip_buf_reserve(b, n) < 0)
		return -1;
	if (n)
		memcpy(b->p + b->len, p, n);
	b->len += n;
	return 0;
}

void gossip_buf_free(struct gossip_buf *b)
{
	free(b->p);
	b->p = NULL;
	b->len = b->cap = 0;
}

/* Read all of path ("-": stdin), at most max bytes. It never waits for a FIFO to get a
 * writer (the open would block for ever, and a reload with it): a FIFO that nobody writes
 * to is an error, one with a writer (a pipe from <(command)) is read to its end. */
int gossip_read_file(const char *path, size_t max, struct gossip_buf *out)
{
	int fd = strcmp(path, "-") == 0 ? 0 : open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
	const char *name = fd == 0 ? "stdin" : path;
	uint8_t tmp[65536];
	struct stat st;
	int probing = 0;  /* a FIFO opened without waiting: is anybody writing to it? */
	if (fd < 0) {
		gossip_seterr("cannot open %s: %s", path, strerror(errno));
		return -1;
	}
	if (fd != 0) {
		probing = fstat(fd, &st) == 0 && S_ISFIFO(st.st_mode);
		if (!probing)
			fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
	}
	for (;;) {
		ssize_t k = read(fd, tmp, sizeof tmp);
		if (k < 0 && errno == EINTR)
			continue;
		if (probing && (k > 0 || (k < 0 && errno == EAGAIN))) {
			/* A writer: from here on, wait for what it writes. */
			probing = 0;
			fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
			if (k < 0)
				continue;
		}
		if (k < 0) {
			gossip_seterr("cannot read %s: %s", name, strerror(errno));
			goto fail;
		}
		if (k == 0 && probing) {
			gossip_seterr("%s is a FIFO that nobody writes to: put a regular file there", path);
			goto fail;
		}
		if (k == 0)
			break;
		if (out->len + (size_t)k > max) {
			gossip_seterr("%s is larger than %zu bytes", name, max);
			goto fail;
		}
		if (gossip_buf_put(out, tmp, (size_t)k) < 0)
			goto fail;
	}
	if (fd != 0)
		close(fd);
	return 0;
fail:
	if (fd != 0)
		close(fd);
	gossip_buf_free(out);  /* nothing of a file that did not load */
	return -1;
}

int gossip_write_all(int fd, const void *p, size_t n)
{
	const uint8_t *q = p;
	while (n) {
		ssize_t k = write(fd, q, n);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			return -1;
		q += k;
		n -= (size_t)k;
	}
	return 0;
}

static int fsync_dir_of(const char *path)
{
	char tmp[4096];
	snprintf(tmp, sizeof tmp, "%s", path);
	int fd = open(dirname(tmp), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	int r = fsync(fd);
	close(fd);
	return r;
}

static int write_file(const char *path, const void *p, size_t n, int mode, int excl, int durable);

int gossip_write_atomic(const char *path, const void *p, size_t n, int mode, int excl)
{
	return write_file(path, p, n, mode, excl, 1);
}

int gossip_write_replace(const char *path, const void *p, size_t n, int mode)
{
	return write_file(path, p, n, mode, 0, 0);
}

static int write_file(const char *path, const void *p, size_t n, int mode, int excl, int durable)
{
	char tmp[4200];
	struct stat st;
	if (excl && lstat(path, &st) == 0) {
		gossip_seterr("%s exists", path);
		errno = EEXIST;
		return -1;
	}
	snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
	/* A new file of our own: whatever is at that name (a link put there, say to the
	 * store, would have had the write go into its target) is taken away first. */
	(void)unlink(tmp);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
	if (fd < 0) {
		gossip_seterr("cannot create %s: %s", tmp, strerror(errno));
		return -1;
	}
	if (fchmod(fd, (mode_t)mode) < 0 || gossip_write_all(fd, p, n) < 0 || (durable && fsync(fd) < 0)) {
		gossip_seterr("cannot write %s: %s", tmp, strerror(errno));
		close(fd);
		unlink(tmp);
		return -1;
	}
	close(fd);
	/* link() fails on an existing target, so excl holds even against a racing writer. */
	if (excl ? link(tmp, path) : rename(tmp, path)) {
		gossip_seterr(errno == EEXIST ? "%s exists" : "cannot create %s: %s", path,
		              strerror(errno));
		unlink(tmp);
		return -1;
	}
	if (excl)
		unlink(tmp);
	if (durable)
		fsync_dir_of(path);
	return 0;
}

void gossip_b64(char *out, const uint8_t *p, size_t n)
{
	sodium_bin2base64(out, sodium_base64_ENCODED_LEN(n, sodium_base64_VARIANT_ORIGINAL), p, n,
	                  sodium_base64_VARIANT_ORIGINAL);
}

int gossip_unb64(uint8_t *out, size_t outlen, const char *s, size_t slen)
{
	size_t got;
	const char *end;
	if (sodium_base642bin(out, outlen, s, slen, NULL, &got, &end,
	                      sodium_base64_VARIANT_ORIGINAL) != 0 ||
	    got != outlen || end != s + slen)
		return -1;
	return 0;
}

void gossip_hex(char *out, const uint8_t *p, size_t n)
{
	sodium_bin2hex(out, 2 * n + 1, p, n);
}

/* RFC 3629: shortest forms only, no surrogates, nothing above U+10FFFF. */
int gossip_utf8_valid(const uint8_t *p, size_t n)
{
	size_t i = 0;
	while (i < n) {
		uint8_t c = p[i];
		size_t k;
		uint32_t cp;
		if (c < 0x80) {
			i++;
			continue;
		} else if (c >= 0xc2 && c <= 0xdf) {
			k = 1;
			cp = c & 0x1f;
		} else if (c >= 0xe0 && c <= 0xef) {
			k = 2;
			cp = c & 0x0f;
		} else if (c >= 0xf0 && c <= 0xf4) {
			k = 3;
			cp = c & 0x07;
		} else
			return 0;
		if (n - i <= k)
			return 0;
		for (size_t j = 1; j <= k; j++) {
			if ((p[i + j] & 0xc0) != 0x80)
				return 0;
			cp = cp << 6 | (p[i + j] & 0x3f);
		}
		if ((k == 2 && cp < 0x800) || (k == 3 && cp < 0x10000) || cp > 0x10ffff ||
		    (cp >= 0xd800 && cp <= 0xdfff))
			return 0;
		i += k + 1;
	}
	return 1;
}

int gossip_rate_allow(struct gossip_rate *r, unsigned limit, uint64_t now_ms, uint64_t *refused)
{
	if (now_ms / 1000 != r->second) {
		if (refused)
			*refused = r->refused;
		r->second = now_ms / 1000;
		r->taken = r->refused = 0;
	} else if (refused)
		*refused = 0;
	if (r->taken < limit) {
		r->taken++;
		return 1;
	}
	r->refused++;
	return 0;
}

uint64_t gossip_age_ms(uint64_t now, uint64_t then)
{
	return now > then ? now - then : 0;
}

uint64_t gossip_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

uint64_t gossip_mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

void gossip_fmt_time(char *out, uint64_t ms)
{
	time_t s = (time_t)(ms / 1000);
	struct tm tm;
	if (ms / 1000 > (uint64_t)253402300799 || !gmtime_r(&s, &tm)) {
		snprintf(out, 32, "%llu ms", (unsigned long long)ms);
		return;
	}
	size_t k = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(out + k, 32 - k, ".%03uZ", (unsigned)(ms % 1000));
}

void gossip_put_string(FILE *f, const uint8_t *p, size_t n, int ascii)
{
	int valid = gossip_utf8_valid(p, n);
	fputc('"', f);
	for (size_t i = 0; i < n; i++) {
		uint8_t c = p[i];
		if (c == '"' || c == '\\') {
			fputc('\\', f);
			fputc(c, f);
		} else if (c == '\n') {
			fputs("\\n", f);
		} else if (c == '\t') {
			fputs("\\t", f);
		} else if (c == '\r') {
			fputs("\\r", f);
		} else if (c < 0x20 || c == 0x7f) {
			fprintf(f, "\\u%04x", c);
		} else if (c < 0x80) {
			fputc(c, f);
		} else if (!valid) {
			/* Not text: show the byte, never pass it to a terminal raw. */
			fprintf(f, "\\u%04x", c);
		} else {
			size_t k = c >= 0xf0 ? 3 : c >= 0xe0 ? 2 : 1;
			uint32_t cp = c & (0x3f >> k);
			for (size_t j = 1; j <= k; j++)
				cp = cp << 6 | (p[i + j] & 0x3f);
			if (!ascii)
				fwrite(p + i, 1, k + 1, f);
			else if (cp >= 0x10000) {
				cp -= 0x10000;
				fprintf(f, "\\u%04x\\u%04x", 0xd800 + (cp >> 10), 0xdc00 + (cp & 0x3ff));
			} else
				fprintf(f, "\\u%04x", cp);
			i += k;
		}
	}
	fputc('"', f);
}

/* ---- SIGHUP: reload ---- */

static volatile sig_atomic_t hup;

static void on_hup(int sig)
{
	(void)sig;
	hup = 1;
}

void gossip_hup_catch(void)
{
	struct sigaction sa = {0};
	sa.sa_handler = on_hup;
	sa.sa_flags = SA_RESTART;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGHUP, &sa, NULL);
}

int gossip_hup_taken(void)
{
	if (!hup)
		return 0;
	hup = 0;
	return 1;
}

void gossip_wait_input(int fd)
{
	struct pollfd p = {fd, POLLIN, 0};
	/* poll is never restarted after a handler: a SIGHUP ends the wait with EINTR. */
	while (!hup && poll(&p, 1, 1000) == 0)
		;
}

/* ---- waiting for a file of the state directory to change ---- */

int gossip_dirwatch_open(const char *dir)
{
	int fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (fd >= 0 && inotify_add_watch(fd, dir, IN_MODIFY | IN_CREATE | IN_MOVED_TO | IN_CLOSE_WRITE) < 0) {
		int e = errno;
		close(fd);
		fd = -1;
		errno = e;
	}
	if (fd < 0)  /* EMFILE: fs.inotify.max_user_instances; ENOSPC: max_user_watches */
		gossip_warn("cannot watch %s for changes (inotify: %s): looking at it by the clock instead, which "
		            "costs CPU; raise the sysctls fs.inotify.max_user_instances and max_user_watches",
		            dir, strerror(errno));
	return fd;
}

int gossip_dirwatch_wait(int fd, const char *const names[], int ms)
{
	if (fd < 0) {
		/* No inotify (or too many watches): a short sleep stands in for it. */
		struct timespec ts = {0, (long)(ms < 20 ? ms : 20) * 1000000L};
		nanosleep(&ts, NULL);
		return 1;
	}
	uint64_t end = gossip_mono_ms() + (uint64_t)ms;
	for (;;) {
		char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
		ssize_t k;
		int hit = 0;
		while ((k = read(fd, buf, sizeof buf)) > 0) {
			for (char *q = buf; q < buf + k;) {
				const struct inotify_event *ev = (const struct inotify_event *)q;
				for (int i = 0; names[i] && !hit; i++)
					hit = (ev->mask & IN_Q_OVERFLOW) || (ev->len && !strcmp(ev->name, names[i]));
				q += sizeof *ev + ev->len;
			}
		}
		if (hit)
			return 1;
		uint64_t now = gossip_mono_ms();
		if (now >= end)
			return 0;
		struct pollfd p = {fd, POLLIN, 0};
		if (poll(&p, 1, (int)(end - now)) < 0)
			return errno == EINTR ? 0 : -1;
	}
}
