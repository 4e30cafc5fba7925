/* events.c: the event log (DIR/events): appending membership changes, reading them back
 * as they come, and running a handler for one; and the logs that rotate at a size
 * (DIR/events, DIR/rejects). */
#include "gossip.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- logs that rotate ---- */

uint64_t gossip_log_max(void)
{
	const char *e = getenv("GOSSIP_LOG_MAX");
	char *end;
	if (e && *e) {
		errno = 0;
		unsigned long long v = strtoull(e, &end, 10);
		if (!errno && !*end && v >= 1024 && v <= (1ULL << 40))
			return v;
	}
	return GOSSIP_LOG_MAX;
}

int gossip_trouble(struct gossip_trouble *t, uint64_t now)
{
	t->failures++;
	if (t->warned_at && now - t->warned_at < 60000)
		return 0;
	t->warned_at = now;
	return 1;
}

uint64_t gossip_trouble_over(struct gossip_trouble *t)
{
	uint64_t was = t->failures;
	t->failures = 0;
	t->warned_at = 0;
	return was;
}

int gossip_log_append(const char *path, const void *p, size_t n)
{
	char old[4200];
	snprintf(old, sizeof old, "%s.1", path);
	/* Writers lock the file they append to, and rename it only while they hold the lock:
	 * a writer that finds, once locked, that the name no longer leads to its file opens
	 * the new one. So no record lands in a file after it was renamed, and a reader that
	 * finds the name moved has the whole of the old file to finish. */
	for (int tries = 0; tries < 64; tries++) {
		struct stat held, named;
		int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
		if (fd < 0) {
			gossip_seterr("cannot open %s: %s", path, strerror(errno));
			return -1;
		}
		if (flock(fd, LOCK_EX) < 0 || fstat(fd, &held) < 0) {
			gossip_seterr("cannot lock %s: %s", path, strerror(errno));
			close(fd);
			return -1;
		}
		if (stat(path, &named) < 0 || named.st_ino != held.st_ino || named.st_dev != held.st_dev) {
			close(fd);
			continue;
		}
		if (held.st_size > 0 && (uint64_t)held.st_size + n > gossip_log_max() &&
		    rename(path, old) == 0) {
			close(fd);
			continue;
		}
		int r = gossip_write_all(fd, p, n);
		if (r < 0) {
			gossip_seterr("cannot write %s: %s", path, strerror(errno));
			/* No torn record for a reader to stumble on: what was written goes. */
			if (ftruncate(fd, held.st_size) < 0) {
				/* A reader skips the stretch, warning once. */
			}
		}
		close(fd);
		return r;
	}
	gossip_seterr("cannot append to %s: it keeps being replaced", path);
	return -1;
}

/* Open path.1 when it is a file not read yet (the log was renamed more than once since the
 * last read, or appeared and was renamed), or path: 0, or -1 when there is neither. */
static int tail_open(struct gossip_log_tail *t)
{
	char old[4300];
	struct stat st, named;
	snprintf(old, sizeof old, "%s.1", t->path);
	int fd = open(old, O_RDONLY | O_CLOEXEC);
	if (fd >= 0 && fstat(fd, &st) == 0 &&
	    (stat(t->path, &named) < 0 || named.st_ino != st.st_ino || named.st_dev != st.st_dev)) {
		int seen = 0;
		for (int i = 0; i < 2; i++)
			seen |= t->done[i][0] == (uint64_t)st.st_dev && t->done[i][1] == (uint64_t)st.st_ino;
		if (!seen)
			goto found;
	}
	if (fd >= 0)
		close(fd);
	if ((fd = open(t->path, O_RDONLY | O_CLOEXEC)) < 0)
		return -1;
	if (fstat(fd, &st) < 0) {
		close(fd);
		return -1;
	}
found:
	t->fd = fd;
	t->dev = (uint64_t)st.st_dev;
	t->ino = (uint64_t)st.st_ino;
	t->off = 0;
	return 0;
}

void gossip_log_tail_init(struct gossip_log_tail *t, const char *path, int from_start)
{
	char old[4300];
	struct stat st;
	memset(t, 0, sizeof *t);
	snprintf(t->path, sizeof t->path, "%s", path);
	t->fd = -1;
	if (from_start) {
		tail_open(t);
		return;
	}
	/* From the end: what path.1 holds is old, and so is what path holds now. */
	snprintf(old, sizeof old, "%s.1", path);
	if (stat(old, &st) == 0) {
		t->done[0][0] = (uint64_t)st.st_dev;
		t->done[0][1] = (uint64_t)st.st_ino;
	}
	if ((t->fd = open(path, O_RDONLY | O_CLOEXEC)) >= 0 && fstat(t->fd, &st) == 0) {
		t->dev = (uint64_t)st.st_dev;
		t->ino = (uint64_t)st.st_ino;
		t->off = (uint64_t)st.st_size;
	}
}

int gossip_log_tail_read(struct gossip_log_tail *t, struct gossip_buf *out)
{
	uint8_t chunk[65536];
	struct stat named;
	ssize_t k;
	if (t->fd < 0 && tail_open(t) < 0)
		return 0;
	/* Whether the name moved, before the file is read: once it has, nothing more is
	 * written to the file held, so reading it to its end reads all of it. */
	int moved = stat(t->path, &named) < 0 || (uint64_t)named.st_ino != t->ino ||
	            (uint64_t)named.st_dev != t->dev;
	while ((k = pread(t->fd, chunk, sizeof chunk, (off_t)t->off)) > 0) {
		if (gossip_buf_put(out, chunk, (size_t)k) < 0)
			return 0;  /* the rest on the next read */
		t->off += (uint64_t)k;
	}
	if (!moved)
		return 0;
	/* Finished: the next read opens the file after it (path.1 when that is one not read,
	 * else path). */
	t->done[1][0] = t->done[0][0];
	t->done[1][1] = t->done[0][1];
	t->done[0][0] = t->dev;
	t->done[0][1] = t->ino;
	close(t->fd);
	t->fd = -1;
	t->off = 0;
	return 1;
}

void gossip_log_tail_close(struct gossip_log_tail *t)
{
	if (t->fd >= 0)
		close(t->fd);
	t->fd = -1;
}

/* ---- the event log ---- */

void gossip_event_append(const char *dir, uint64_t now, const char *event,
                         const struct gossip_peer *p)
{
	struct gossip_buf b = {0};
	int ok = gossip_cbor_head(&b, GOSSIP_MT_ARRAY, 7) == 0 &&
	         gossip_cbor_head(&b, GOSSIP_MT_UINT, now) == 0 &&
	         gossip_cbor_str(&b, GOSSIP_MT_TSTR, event, strlen(event)) == 0 &&
	         gossip_cbor_str(&b, GOSSIP_MT_BSTR, p ? p->pk : (const uint8_t *)"", p ? 32 : 0) == 0 &&
	         gossip_cbor_str(&b, GOSSIP_MT_TSTR, p ? p->info.name : "", p ? strlen(p->info.name) : 0) == 0;
	const char *st = p ? gossip_pstate_name(p->state) : "";
	ok = ok && gossip_cbor_str(&b, GOSSIP_MT_TSTR, st, strlen(st)) == 0 &&
	     gossip_cbor_head(&b, GOSSIP_MT_ARRAY, p ? (uint64_t)p->info.naddrs : 0) == 0;
	for (int i = 0; ok && p && i < p->info.naddrs; i++)
		ok = gossip_cbor_str(&b, GOSSIP_MT_TSTR, p->info.addrs[i], strlen(p->info.addrs[i])) == 0;
	ok = ok && gossip_cbor_head(&b, GOSSIP_MT_ARRAY, p ? (uint64_t)p->info.ntags : 0) == 0;
	for (int i = 0; ok && p && i < p->info.ntags; i++)
		ok = gossip_cbor_str(&b, GOSSIP_MT_TSTR, p->info.tags[i], strlen(p->info.tags[i])) == 0;
	/* A full disk loses events, not the node: one line, then one a minute while it
	 * lasts, and one when events are kept again. */
	static struct gossip_trouble trouble;
	const char *path = gossip_path(dir, "events");
	if (!ok)
		gossip_seterr("%s: %s", path, strerror(ENOMEM));
	uint64_t lost;
	if (ok && gossip_log_append(path, b.p, b.len) == 0) {
		if ((lost = gossip_trouble_over(&trouble)))
			gossip_warn("events: %s is written again (%llu events were lost)", path,
			            (unsigned long long)lost);
	} else {
		if (gossip_trouble(&trouble, gossip_now_ms()))
			gossip_warn("events: %s; events are lost until it can be written (tried with each)",
			            gossip_error());
	}
	gossip_buf_free(&b);
}

static int parse(const uint8_t *p, size_t n, struct gossip_event *e)
{
	struct gossip_cur c = {p, n, 0};
	struct gossip_ev ev;
	memset(e, 0, sizeof *e);
	if (gossip_cur_expect(&c, GOSSIP_EV_ARRAY, &ev, "event") < 0 || ev.u != 7 ||
	    gossip_cur_expect(&c, GOSSIP_EV_UINT, &ev, "event") < 0)
		return -1;
	e->time = ev.u;
	if (gossip_cur_expect(&c, GOSSIP_EV_TSTR, &ev, "event") < 0 || ev.len >= sizeof e->event)
		return -1;
	memcpy(e->event, ev.data, ev.len);
	if (gossip_cur_expect(&c, GOSSIP_EV_BSTR, &ev, "event") < 0 || (ev.len != 32 && ev.len))
		return -1;
	if (ev.len)
		gossip_b64(e->id, ev.data, 32);
	if (gossip_cur_expect(&c, GOSSIP_EV_TSTR, &ev, "event") < 0 || ev.len >= sizeof e->name)
		return -1;
	memcpy(e->name, ev.data, ev.len);
	if (gossip_cur_expect(&c, GOSSIP_EV_TSTR, &ev, "event") < 0 || ev.len >= sizeof e->state)
		return -1;
	memcpy(e->state, ev.data, ev.len);
	for (int list = 0; list < 2; list++) {
		char *dst = list ? e->tags : e->addrs;
		size_t at = 0, max = list ? sizeof e->tags : sizeof e->addrs;
		if (gossip_cur_expect(&c, GOSSIP_EV_ARRAY, &ev, "event") < 0)
			return -1;
		uint64_t k = ev.u;
		for (uint64_t i = 0; i < k; i++) {
			if (gossip_cur_expect(&c, GOSSIP_EV_TSTR, &ev, "event") < 0)
				return -1;
			at += (size_t)snprintf(dst + at, max - at, "%s%.*s", i ? "," : "", (int)ev.len, ev.data);
			if (at >= max)
				at = max - 1;
		}
	}
	return 0;
}

void gossip_event_run(const char *handler, const char *dir, const struct gossip_event *e)
{
	int fds[2];
	if (pipe(fds) < 0)
		return;
	pid_t pid = fork();
	if (pid == 0) {
		/* A node's reload (SIGHUP to its process group) is not the handler's to die of. */
		signal(SIGHUP, SIG_IGN);
		dup2(fds[0], 0);
		close(fds[0]);
		close(fds[1]);
		setenv("GOSSIP_EVENT", e->event, 1);
		setenv("GOSSIP_MEMBER_ID", e->id, 1);
		setenv("GOSSIP_MEMBER_NAME", e->name, 1);
		setenv("GOSSIP_MEMBER_STATE", e->state, 1);
		setenv("GOSSIP_MEMBER_ADDRS", e->addrs, 1);
		setenv("GOSSIP_MEMBER_TAGS", e->tags, 1);
		setenv("GOSSIP_DIR", dir, 1);
		execl("/bin/sh", "sh", "-c", handler, (char *)NULL);
		_exit(127);
	}
	close(fds[0]);
	/* The members on stdin, one line each: name id state addresses tags. */
	struct gossip_peers t;
	if (pid > 0 && gossip_peers_load(&t, dir) == 0) {
		FILE *f = fdopen(fds[1], "w");
		for (size_t i = 0; f && i < t.n; i++) {
			char id[45];
			gossip_b64(id, t.v[i].pk, 32);
			fprintf(f, "%s %s %s", t.v[i].info.name, id, gossip_pstate_name(t.v[i].state));
			for (int a = 0; a < t.v[i].info.naddrs; a++)
				fprintf(f, "%c%s", a ? ',' : ' ', t.v[i].info.addrs[a]);
			for (int g = 0; g < t.v[i].info.ntags; g++)
				fprintf(f, "%c%s", g ? ',' : ' ', t.v[i].info.tags[g]);
			fputc('\n', f);
		}
		if (f)
			fclose(f);
		else
			close(fds[1]);
		gossip_peers_free(&t);
	} else
		close(fds[1]);
	int status;
	if (pid > 0 && waitpid(pid, &status, 0) > 0 && (!WIFEXITED(status) || WEXITSTATUS(status)))
		gossip_warn("handler for %s %s failed (exit %d)", e->event, e->name,
		            WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
}

void gossip_event_reader_init(struct gossip_event_reader *r, const char *dir, int from_start)
{
	memset(r, 0, sizeof *r);
	gossip_log_tail_init(&r->tail, gossip_path(dir, "events"), from_start);
}

int gossip_event_reader_next(struct gossip_event_reader *r, struct gossip_event *e)
{
	for (;;) {
		size_t len = 0;
		int sc = r->at < r->buf.len ? gossip_cbor_scan(r->buf.p + r->at, r->buf.len - r->at,
		                                                &gossip_any_limits, NULL, &len)
		                            : GOSSIP_SCAN_MORE;
		if (sc == GOSSIP_SCAN_MORE) {
			/* One read a pass, so that a log that keeps growing still ends each pass. */
			if (r->filled) {
				r->filled = 0;
				return 0;
			}
			if (r->switched && r->at < r->buf.len) {
				/* The file renamed away is whole: what is left of it is not an event
				 * (a writer that died mid-write), and must not run into the next file. */
				gossip_warn("events: %s.1 ends in an incomplete event: skipping it", r->tail.path);
				r->at = r->buf.len;
			}
			if (r->at) {
				memmove(r->buf.p, r->buf.p + r->at, r->buf.len - r->at);
				r->buf.len -= r->at;
				r->at = 0;
			}
			/* After a rotation, the rest of the old file's events first, then (in the same
			 * pass) the new file. */
			r->switched = gossip_log_tail_read(&r->tail, &r->buf);
			r->filled = !r->switched;
			r->warned = 0;
			continue;
		}
		if (sc == GOSSIP_SCAN_BAD) {
			/* Not written by gossip-peers observe: say so (once a read), and find the
			 * next event after it, a byte at a time. */
			if (!r->warned++)
				gossip_warn("events: %s is corrupt before offset %llu: skipping it", r->tail.path,
				            (unsigned long long)r->tail.off);
			r->at++;
			continue;
		}
		r->at += len;
		if (parse(r->buf.p + r->at - len, len, e) == 0)
			return 1;
	}
}

void gossip_event_reader_free(struct gossip_event_reader *r)
{
	gossip_log_tail_close(&r->tail);
	gossip_buf_free(&r->buf);
}

/* ---- handler specs ---- */

static const char *const member_events[] = {
	"member-join",   "member-update", "member-suspect",      "member-alive",     "member-failed",
	"member-leave",  "member-reap",   "partition-suspected", "partition-healed", NULL};

/* The kind a filter starts with (its length in *len), or NULL. */
static const char *filter_kind(const char *f, size_t n, size_t *len)
{
	static const char *const kinds[] = {"member", "user", "query", "key", "*", NULL};
	for (int i = 0; member_events[i]; i++) {
		size_t k = strlen(member_events[i]);
		if (n >= k && !memcmp(f, member_events[i], k) && (n == k || f[k] == ':')) {
			*len = k;
			return member_events[i];
		}
	}
	for (int i = 0; kinds[i]; i++) {
		size_t k = strlen(kinds[i]);
		if (n >= k && !memcmp(f, kinds[i], k) && (n == k || f[k] == ':' || f[k] == '-')) {
			*len = k;
			return kinds[i];
		}
	}
	return NULL;
}

int gossip_handler_parse(const char *spec, struct gossip_handler *h)
{
	static const char want[] = "want member, member-join, member-update, member-suspect, "
	                           "member-alive, member-failed, member-leave, member-reap, "
	                           "partition-suspected, partition-healed, user[:NAME], "
	                           "query[:NAME], key[:PREFIX] or *";
	memset(h, 0, sizeof *h);
	h->command = spec;
	const char *eq = strchr(spec, '=');
	size_t len;
	/* Filters only when the text before '=' starts like one: "FOO=1 ./h" is a command. */
	const char *comma = eq ? memchr(spec, ',', (size_t)(eq - spec)) : NULL;
	if (eq && filter_kind(spec, (size_t)((comma ? comma : eq) - spec), &len)) {
		for (const char *f = spec; f < eq;) {
			const char *end = memchr(f, ',', (size_t)(eq - f));
			if (!end)
				end = eq;
			size_t n = (size_t)(end - f);
			const char *kind = filter_kind(f, n, &len);
			int takes = kind && (!strcmp(kind, "user") || !strcmp(kind, "query") || !strcmp(kind, "key"));
			if (!kind || (len < n && (!takes || f[len] != ':'))) {
				gossip_seterr("%.*s: not an event filter (%s)", (int)n, f, want);
				return -1;
			}
			if (len < n && len + 1 == n) {
				gossip_seterr("%.*s: want a name after the colon (%.*s:NAME), or no colon", (int)n,
				              f, (int)len, f);
				return -1;
			}
			if (h->nfilters == GOSSIP_HANDLER_FILTERS) {
				gossip_seterr("%.*s: at most %d filters in one handler", (int)(eq - spec), spec,
				              GOSSIP_HANDLER_FILTERS);
				return -1;
			}
			if (n - len > sizeof h->filter[0].arg) {
				gossip_seterr("%.*s...: a filter's name is at most 1024 bytes", 40, f);
				return -1;
			}
			snprintf(h->filter[h->nfilters].kind, sizeof h->filter[0].kind, "%s", kind);
			if (len < n)
				memcpy(h->filter[h->nfilters].arg, f + len + 1, n - len - 1);
			h->nfilters++;
			f = end + (end < eq);
			if (end < eq && f == eq) {
				gossip_seterr("%.*s: not an event filter list (an empty filter after the last "
				              "comma)", (int)(eq - spec), spec);
				return -1;
			}
		}
		h->command = eq + 1;
	}
	const char *c = h->command;
	while (*c == ' ' || *c == '\t')
		c++;
	if (!*c) {
		gossip_seterr("%s: want a command to run%s", spec, eq ? " after the filters" : "");
		return -1;
	}
	return 0;
}

int gossip_handler_wants(const struct gossip_handler *h, const char *event, const char *name)
{
	if (!h->nfilters)
		return 1;
	for (int i = 0; i < h->nfilters; i++) {
		const char *k = h->filter[i].kind, *arg = h->filter[i].arg;
		if (!strcmp(k, "*") || !strcmp(k, event) ||
		    (!strcmp(k, "member") && !strncmp(event, "member-", 7))) {
			if (!*arg)
				return 1;
			if (!name)
				continue;
			if (!strcmp(k, "key") ? !strncmp(name, arg, strlen(arg)) : !strcmp(name, arg))
				return 1;
		}
	}
	return 0;
}
