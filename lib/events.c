/* events.c: the event log (DIR/events): appending membership changes, reading them back
 * as they come, and running a handler for one. */
#include "gossip.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

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
	int fd = open(gossip_path(dir, "events"), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (!ok || fd < 0 || gossip_write_all(fd, b.p, b.len) < 0)
		gossip_warn("events: cannot write %s: %s", gossip_path(dir, "events"), strerror(errno));
	if (fd >= 0)
		close(fd);
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
	struct stat st;
	memset(r, 0, sizeof *r);
	snprintf(r->path, sizeof r->path, "%s", gossip_path(dir, "events"));
	if (!from_start && stat(r->path, &st) == 0)
		r->off = (uint64_t)st.st_size;
}

/* What the log gained since the last read, after what is left of the buffer. */
static void fill(struct gossip_event_reader *r)
{
	uint8_t chunk[65536];
	ssize_t k;
	if (r->at) {
		memmove(r->buf.p, r->buf.p + r->at, r->buf.len - r->at);
		r->buf.len -= r->at;
		r->at = 0;
	}
	int fd = open(r->path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	while ((k = pread(fd, chunk, sizeof chunk, (off_t)r->off)) > 0) {
		gossip_buf_put(&r->buf, chunk, (size_t)k);
		r->off += (uint64_t)k;
	}
	close(fd);
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
			fill(r);
			r->filled = 1;
			r->warned = 0;
			continue;
		}
		if (sc == GOSSIP_SCAN_BAD) {
			/* Not written by gossip-peers observe: say so (once a read), and find the
			 * next event after it, a byte at a time. */
			if (!r->warned++)
				gossip_warn("events: %s is corrupt before offset %llu: skipping it", r->path,
				            (unsigned long long)r->off);
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
	gossip_buf_free(&r->buf);
}
