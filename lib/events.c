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

int gossip_event_logged(const struct gossip_msg *m)
{
	return (m->type == GOSSIP_T_EVENT || m->type == GOSSIP_T_SET || m->type == GOSSIP_T_DEL) &&
	       m->keylen && m->key[0] != '_';
}

void gossip_event_record(void *recorder, const uint8_t *p, size_t n)
{
	struct gossip_event_recorder *r = recorder;
	struct gossip_msg m;
	if (p) {
		/* A message the merger stored decodes. */
		if (gossip_msg_decode(p, n, &m) < 0 || !gossip_event_logged(&m))
			return;
		if (m.type != GOSSIP_T_EVENT) {
			uint64_t now = gossip_mono_ms();
			if (!r->keys_at || now - r->keys_at >= 1000) {
				r->keys = access(gossip_path(r->dir, "events.keys"), F_OK) == 0;
				r->keys_at = now;
			}
			if (!r->keys)
				return;
		}
		if (gossip_cbor_head(&r->buf, GOSSIP_MT_ARRAY, 3) < 0 ||
		    gossip_cbor_head(&r->buf, GOSSIP_MT_UINT, gossip_now_ms()) < 0 ||
		    gossip_cbor_str(&r->buf, GOSSIP_MT_TSTR, "message", 7) < 0 ||
		    gossip_cbor_str(&r->buf, GOSSIP_MT_BSTR, p, n) < 0)
			r->lost++;  /* out of memory: counted with what the disk refuses */
		return;
	}
	if (!r->buf.len)
		return;
	const char *path = gossip_path(r->dir, "events");
	uint64_t lost;
	if (gossip_log_append(path, r->buf.p, r->buf.len) == 0) {
		if ((lost = gossip_trouble_over(&r->trouble)))
			gossip_warn("events: %s is written again (%llu batches of events were lost)", path,
			            (unsigned long long)lost);
	} else if (gossip_trouble(&r->trouble, gossip_now_ms())) {
		gossip_warn("events: %s; events are lost until it can be written (stored all the same)",
		            gossip_error());
	}
	r->buf.len = 0;
}

void gossip_event_recorder_free(struct gossip_event_recorder *r)
{
	gossip_buf_free(&r->buf);
}

/* A message record: the message decoded, and its signature checked again (it was when
 * stored; but a reader that lost its place and picks up again inside a record must not
 * take a record some payload holds for one: a member could sign only its own). */
static int parse_message(struct gossip_cur *c, struct gossip_event *e)
{
	struct gossip_ev ev;
	struct gossip_msg m;
	if (gossip_cur_expect(c, GOSSIP_EV_BSTR, &ev, "event") < 0 ||
	    gossip_msg_decode(ev.data, ev.len, &m) < 0 || !gossip_event_logged(&m) ||
	    gossip_msg_verify(&m) < 0)
		return -1;
	e->kind = m.type == GOSSIP_T_EVENT ? GOSSIP_EVENT_USER : GOSSIP_EVENT_KEY;
	snprintf(e->event, sizeof e->event, "%s", m.type == GOSSIP_T_EVENT ? "user" : "key");
	e->keylen = m.keylen < GOSSIP_KEY_MAX ? m.keylen : GOSSIP_KEY_MAX;
	memcpy(e->key, m.key, e->keylen);
	e->key[e->keylen] = 0;
	snprintf(e->op, sizeof e->op, "%s", m.type == GOSSIP_T_DEL ? "del" : m.type == GOSSIP_T_SET ? "set" : "");
	gossip_b64(e->origin, m.origin, 32);
	e->version = m.version;
	e->msg_time = m.time;
	e->value = m.value;
	e->valuelen = m.has_value ? m.valuelen : 0;
	e->msg = ev.data;
	e->msglen = ev.len;
	return 0;
}

static int parse(const uint8_t *p, size_t n, struct gossip_event *e)
{
	struct gossip_cur c = {p, n, 0};
	struct gossip_ev ev;
	memset(e, 0, sizeof *e);
	if (gossip_cur_expect(&c, GOSSIP_EV_ARRAY, &ev, "event") < 0 || (ev.u != 7 && ev.u != 3))
		return -1;
	uint64_t items = ev.u;
	if (gossip_cur_expect(&c, GOSSIP_EV_UINT, &ev, "event") < 0)
		return -1;
	e->time = ev.u;
	if (gossip_cur_expect(&c, GOSSIP_EV_TSTR, &ev, "event") < 0 || ev.len >= sizeof e->event)
		return -1;
	memcpy(e->event, ev.data, ev.len);
	if (items == 3)
		return strcmp(e->event, "message") ? -1 : parse_message(&c, e);
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

void gossip_event_reader_init(struct gossip_event_reader *r, const char *dir, int from_start)
{
	memset(r, 0, sizeof *r);
	gossip_log_tail_init(&r->tail, gossip_path(dir, "events"), from_start);
	r->dev = r->tail.dev;
	r->ino = r->tail.ino;
	r->base = r->tail.off;
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
				r->base += r->at;
				r->at = 0;
			}
			/* After a rotation, the rest of the old file's events first, then (in the same
			 * pass) the new file. */
			size_t had = r->buf.len;
			uint64_t from = r->tail.fd >= 0 ? r->tail.off : 0;
			r->switched = gossip_log_tail_read(&r->tail, &r->buf);
			if (r->tail.fd >= 0 || r->switched) {
				/* What buf holds is of the file read (the tail still names it when it
				 * finished it), up to where the read ended. */
				r->dev = r->tail.dev;
				r->ino = r->tail.ino;
				r->base = from + (r->buf.len - had) - r->buf.len;
			}
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

void gossip_event_reader_pos(const struct gossip_event_reader *r, struct gossip_log_pos *p)
{
	p->dev = r->dev;
	p->ino = r->ino;
	p->off = r->base + r->at;
}

int gossip_event_reader_at(struct gossip_event_reader *r, const char *dir,
                           const struct gossip_log_pos *at)
{
	char path[4200], old[4300];
	struct stat st, other;
	snprintf(path, sizeof path, "%s", gossip_path(dir, "events"));
	snprintf(old, sizeof old, "%s.1", path);
	if (!at->dev && !at->ino && !at->off) {
		/* Kept when there was no log yet: all of it is after. */
		gossip_event_reader_init(r, dir, 1);
		return 0;
	}
	for (int i = 0; i < 2; i++) {
		int fd = open(i ? path : old, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue;
		if (fstat(fd, &st) < 0 || (uint64_t)st.st_dev != at->dev || (uint64_t)st.st_ino != at->ino ||
		    (uint64_t)st.st_size < at->off) {
			close(fd);
			continue;
		}
		memset(r, 0, sizeof *r);
		gossip_log_tail_init(&r->tail, path, 0);
		gossip_log_tail_close(&r->tail);
		memset(r->tail.done, 0, sizeof r->tail.done);
		/* In DIR/events: what DIR/events.1 holds is older. In events.1: it is read to
		 * its end (the name no longer leads to it), then DIR/events from its start. */
		if (i && stat(old, &other) == 0) {
			r->tail.done[0][0] = (uint64_t)other.st_dev;
			r->tail.done[0][1] = (uint64_t)other.st_ino;
		}
		r->tail.fd = fd;
		r->tail.dev = r->dev = at->dev;
		r->tail.ino = r->ino = at->ino;
		r->tail.off = r->base = at->off;
		return 0;
	}
	gossip_event_reader_init(r, dir, 0);
	gossip_seterr("the place kept in %s.pos is in neither %s nor %s (the log was renamed "
	              "twice since, or replaced)", path, path, old);
	return -1;
}

int gossip_log_pos_load(const char *dir, struct gossip_log_pos *p)
{
	struct gossip_buf b = {0};
	unsigned long long d, i, o;
	char end;
	if (gossip_read_file(gossip_path(dir, "events.pos"), 256, &b) < 0)
		return -1;
	int r = -1;
	if (gossip_buf_put(&b, "", 1) == 0 &&
	    sscanf((const char *)b.p, "%llu %llu %llu%c", &d, &i, &o, &end) == 4 && end == '\n') {
		p->dev = d;
		p->ino = i;
		p->off = o;
		r = 0;
	} else
		gossip_seterr("%s: not a place in the log (want DEVICE INODE OFFSET)",
		              gossip_path(dir, "events.pos"));
	gossip_buf_free(&b);
	return r;
}

int gossip_log_pos_save(const char *dir, const struct gossip_log_pos *p)
{
	char line[96];
	int n = snprintf(line, sizeof line, "%llu %llu %llu\n", (unsigned long long)p->dev,
	                 (unsigned long long)p->ino, (unsigned long long)p->off);
	return gossip_write_replace(gossip_path(dir, "events.pos"), line, (size_t)n, 0644);
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

/* ---- the handler runner ---- */

/* An event waiting for handlers: a copy of what the reader gave (the value and the
 * members on stdin in data), the handlers still to run it (bits), and the place in the
 * log that is delivered once it has been (has_pos). */
struct job {
	struct gossip_event e;
	uint8_t *data;  /* value, then (members) the stdin text */
	size_t ndata;
	uint32_t want;
	struct gossip_log_pos pos;
	int has_pos;
	uint64_t seq;
};

struct hstate {
	uint64_t next;  /* the seq of the next event to look at */
	pid_t pid;  /* running, or 0 */
	uint64_t started, stopped_at;
	int warned, killed;
	struct job *job;  /* the one running (in the queue until it ends) */
};

struct gossip_runner {
	struct gossip_runner_cfg cfg;
	struct hstate h[GOSSIP_RUNNER_HANDLERS];
	struct job **q;  /* ring: seq head .. tail-1 at q[seq % cap] */
	size_t cap;
	uint64_t head, tail;
	size_t bytes;
	/* The coalescing window: its jobs, in order of first appearance. */
	struct job **win;
	size_t nwin;
	uint64_t win_start;
	struct gossip_log_pos win_pos;
	int win_has_pos;
	/* The place delivered, and the one last written to DIR/events.pos. */
	struct gossip_log_pos done, saved;
	int has_done;
	int full_warned;
};

static size_t job_size(const struct job *j)
{
	return sizeof *j + j->ndata;
}

static void job_free(struct job *j)
{
	if (j) {
		free(j->data);
		free(j);
	}
}

static uint32_t wanted_by(const struct gossip_runner *r, const struct gossip_event *e)
{
	uint32_t w = 0;
	const char *name = e->kind == GOSSIP_EVENT_MEMBER ? NULL : e->key;
	/* A NUL in its name would end it there (deploy\0...: deploy's handler, and
	 * GOSSIP_USER_EVENT=deploy): no handler runs for it. */
	if (name && memchr(name, 0, e->keylen))
		return 0;
	for (int i = 0; i < r->cfg.nhandlers; i++)
		if (gossip_handler_wants(&r->cfg.handlers[i], e->event, name))
			w |= 1u << i;
	return w;
}

/* A member's line on stdin: name id state addresses tags. */
static int member_line(struct gossip_buf *b, const char *name, const char *id, const char *state,
                       const char *addrs, const char *tags)
{
	char line[1600];
	int n = snprintf(line, sizeof line, "%s %s %s%s%s%s%s\n", name, id, state, *addrs ? " " : "",
	                 addrs, *tags ? " " : "", tags);
	return gossip_buf_put(b, line, n < (int)sizeof line ? (size_t)n : sizeof line - 1);
}

static struct job *job_new(const struct gossip_event *e)
{
	struct job *j = calloc(1, sizeof *j);
	if (!j)
		return NULL;
	j->e = *e;
	j->e.msg = NULL;
	j->e.msglen = 0;
	if (e->kind != GOSSIP_EVENT_MEMBER && e->valuelen) {
		if (!(j->data = malloc(e->valuelen))) {
			free(j);
			return NULL;
		}
		memcpy(j->data, e->value, e->valuelen);
		j->ndata = e->valuelen;
	}
	j->e.value = j->data;
	return j;
}

struct gossip_runner *gossip_runner_new(const struct gossip_runner_cfg *cfg)
{
	struct gossip_runner *r = calloc(1, sizeof *r);
	if (!r || cfg->nhandlers > GOSSIP_RUNNER_HANDLERS) {
		free(r);
		gossip_seterr(r ? "at most %d handlers" : "out of memory", GOSSIP_RUNNER_HANDLERS);
		return NULL;
	}
	r->cfg = *cfg;
	r->cap = cfg->max_events ? cfg->max_events : 1;
	r->q = calloc(r->cap, sizeof *r->q);
	r->win = calloc(r->cap, sizeof *r->win);
	if (!r->q || !r->win) {
		free(r->q);
		free(r->win);
		free(r);
		gossip_seterr("out of memory");
		return NULL;
	}
	return r;
}

static int full(const struct gossip_runner *r, size_t more)
{
	return r->tail - r->head + r->nwin >= r->cap || r->bytes + more > r->cfg.max_bytes;
}

/* Into the queue (room checked). */
static void push(struct gossip_runner *r, struct job *j)
{
	j->seq = r->tail;
	r->q[r->tail++ % r->cap] = j;
}

/* Merge e into the coalescing window: 0, 1 (a new job), -1 (no memory). */
static int coalesce(struct gossip_runner *r, const struct gossip_event *e, uint32_t want)
{
	for (size_t i = 0; i < r->nwin; i++) {
		struct job *j = r->win[i];
		if (strcmp(j->e.event, e->event))
			continue;
		if (e->kind == GOSSIP_EVENT_MEMBER) {
			/* Once per event; each member once, on stdin. */
			const char *text = (const char *)j->data;
			size_t idlen = strlen(e->id);
			int seen = 0;
			for (size_t at = 0; at < j->ndata && !seen && idlen;) {
				const char *nl = memchr(text + at, '\n', j->ndata - at);
				size_t len = nl ? (size_t)(nl - text) - at : j->ndata - at;
				const char *sp = memchr(text + at, ' ', len);
				seen = sp && (size_t)(sp - text) + 1 + idlen < j->ndata &&
				       !memcmp(sp + 1, e->id, idlen) && sp[1 + idlen] == ' ';
				at += len + 1;
			}
			struct gossip_buf b = {j->data, j->ndata, j->ndata};
			if (!seen && member_line(&b, e->name, e->id, e->state, e->addrs, e->tags) < 0)
				return -1;
			r->bytes += b.len - j->ndata;
			j->e = *e;
			j->e.msg = j->e.value = NULL;
			j->data = b.p;
			j->ndata = b.len;
			j->want |= want;
			return 0;
		}
		if (j->e.keylen != e->keylen || memcmp(j->e.key, e->key, e->keylen))
			continue;
		if (e->kind == GOSSIP_EVENT_KEY &&
		    (strcmp(j->e.origin, e->origin) || e->version < j->e.version))
			continue;  /* another origin's key; or older than the one kept */
		struct job *n = job_new(e);
		if (!n)
			return -1;
		n->want = want;
		r->bytes += job_size(n);
		r->bytes -= job_size(j);
		job_free(j);
		r->win[i] = n;
		return 0;
	}
	struct job *j = job_new(e);
	if (!j)
		return -1;
	if (e->kind == GOSSIP_EVENT_MEMBER) {
		struct gossip_buf b = {0};
		if (member_line(&b, e->name, e->id, e->state, e->addrs, e->tags) < 0) {
			job_free(j);
			return -1;
		}
		j->data = b.p;
		j->ndata = b.len;
	}
	j->want = want;
	r->bytes += job_size(j);
	r->win[r->nwin++] = j;
	return 1;
}

int gossip_runner_offer(struct gossip_runner *r, const struct gossip_event *e,
                        const struct gossip_log_pos *at, uint64_t now)
{
	uint32_t want = wanted_by(r, e);
	size_t more = sizeof(struct job) + e->valuelen + 1600;
	if (r->cfg.coalesce_ms) {
		if (want) {
			if (full(r, more))
				return -1;
			if (!r->nwin && !r->win_has_pos)
				r->win_start = now;
			if (coalesce(r, e, want) < 0) {
				gossip_warn("handlers: out of memory: the %s event is not delivered", e->event);
			}
		}
		if (r->nwin || r->win_has_pos || r->tail > r->head) {
			if (!r->nwin && !r->win_has_pos)
				r->win_start = now;
			r->win_pos = *at;
			r->win_has_pos = 1;
		} else {
			r->done = *at;
			r->has_done = 1;
		}
		return 0;
	}
	if (!want) {
		/* Nothing to run: delivered once what comes before it is. */
		if (r->tail > r->head) {
			struct job *last = r->q[(r->tail - 1) % r->cap];
			last->pos = *at;
			last->has_pos = 1;
		} else {
			r->done = *at;
			r->has_done = 1;
		}
		return 0;
	}
	if (full(r, more))
		return -1;
	struct job *j = job_new(e);
	if (!j) {
		gossip_warn("handlers: out of memory: the %s event is not delivered", e->event);
		return 0;
	}
	j->want = want;
	j->pos = *at;
	j->has_pos = 1;
	r->bytes += job_size(j);
	push(r, j);
	return 0;
}

/* The stdin of a handler: an unnamed file holding what it reads. */
static int stdin_file(const uint8_t *p, size_t n, const char *dir, int members)
{
	FILE *f = tmpfile();
	if (!f)
		return -1;
	if (members) {
		/* The members, one line each: name id state addresses tags. */
		struct gossip_peers t;
		if (gossip_peers_load(&t, dir) == 0) {
			for (size_t i = 0; i < t.n; i++) {
				char id[45];
				gossip_b64(id, t.v[i].pk, 32);
				fprintf(f, "%s %s %s", t.v[i].info.name, id, gossip_pstate_name(t.v[i].state));
				for (int a = 0; a < t.v[i].info.naddrs; a++)
					fprintf(f, "%c%s", a ? ',' : ' ', t.v[i].info.addrs[a]);
				for (int g = 0; g < t.v[i].info.ntags; g++)
					fprintf(f, "%c%s", g ? ',' : ' ', t.v[i].info.tags[g]);
				fputc('\n', f);
			}
			gossip_peers_free(&t);
		}
	} else if (n)
		fwrite(p, 1, n, f);
	if (fflush(f) != 0) {
		fclose(f);
		return -1;
	}
	int fd = dup(fileno(f));
	fclose(f);
	if (fd >= 0)
		lseek(fd, 0, SEEK_SET);
	return fd;
}

/* In the child: GOSSIP_TAG_<TAG> for each of this node's tags. */
static void set_tag_env(const char *tag)
{
	char name[256] = "GOSSIP_TAG_";
	const char *eq = strchr(tag, '=');
	size_t k = strlen(name);
	for (const char *c = tag; *c && c != eq && k < sizeof name - 1; c++) {
		char u = *c >= 'a' && *c <= 'z' ? (char)(*c - 'a' + 'A') : *c;
		name[k++] = (u >= 'A' && u <= 'Z') || (u >= '0' && u <= '9') || u == '_' ? u : '_';
	}
	name[k] = 0;
	setenv(name, eq ? eq + 1 : "", 1);
}

/* Who signed it: its member record's name, else its name in DIR/trusted, else "". */
static void origin_name(char *out, size_t n, const struct gossip_peers *t, const char *dir,
                        const uint8_t pk[32])
{
	*out = 0;
	for (size_t i = 0; t && i < t->n; i++)
		if (!memcmp(t->v[i].pk, pk, 32)) {
			snprintf(out, n, "%s", t->v[i].info.name);
			return;
		}
	struct gossip_trust tr;
	if (gossip_trust_load(&tr, dir) == 0) {
		const struct gossip_signer *s = gossip_trust_find(&tr, pk);
		if (s && s->name)
			snprintf(out, n, "%s", s->name);
		gossip_trust_free(&tr);
	}
}

static pid_t start(struct gossip_runner *r, int hi, const struct job *j)
{
	const char *dir = r->cfg.dir;
	const struct gossip_event *e = &j->e;
	int coalesced = e->kind == GOSSIP_EVENT_MEMBER && r->cfg.coalesce_ms;
	int in = stdin_file(j->data, j->ndata, dir, e->kind == GOSSIP_EVENT_MEMBER && !coalesced);
	if (in < 0) {
		gossip_warn("handler %s: cannot make its stdin: %s", r->cfg.handlers[hi].command,
		            strerror(errno));
		return -1;
	}
	/* This node and the origin, from the table, before the fork. */
	struct gossip_peers t;
	int have = gossip_peers_load(&t, dir) == 0;
	uint8_t self[32], origin[32];
	char selfname[64] = "", selfid[45] = "", oname[64] = "", selftags[3200] = "";
	const struct gossip_member *mine = NULL;
	if (gossip_pub_load(dir, self, selfname, sizeof selfname) == 0) {
		gossip_b64(selfid, self, 32);
		for (size_t i = 0; have && i < t.n; i++)
			if (!memcmp(t.v[i].pk, self, 32))
				mine = &t.v[i].info;
	}
	for (int g = 0; mine && g < mine->ntags; g++) {
		size_t k = strlen(selftags);
		snprintf(selftags + k, sizeof selftags - k, "%s%s", g ? "," : "", mine->tags[g]);
	}
	if (e->kind != GOSSIP_EVENT_MEMBER && gossip_unb64(origin, 32, e->origin, strlen(e->origin)) == 0)
		origin_name(oname, sizeof oname, have ? &t : NULL, dir, origin);
	fflush(NULL);
	pid_t pid = fork();
	if (pid == 0) {
		setpgid(0, 0);  /* stopped whole at the limit, with what it started */
		gossip_exec_signals(1);
		dup2(in, 0);
		close(in);
		char num[32];
		setenv("GOSSIP_EVENT", e->event, 1);
		setenv("GOSSIP_DIR", dir, 1);
		setenv("GOSSIP_SELF_NAME", selfname, 1);
		setenv("GOSSIP_SELF_ID", selfid, 1);
		setenv("GOSSIP_SELF_TAGS", selftags, 1);
		for (int g = 0; mine && g < mine->ntags; g++)
			set_tag_env(mine->tags[g]);
		if (e->kind == GOSSIP_EVENT_MEMBER) {
			setenv("GOSSIP_MEMBER_ID", e->id, 1);
			setenv("GOSSIP_MEMBER_NAME", e->name, 1);
			setenv("GOSSIP_MEMBER_STATE", e->state, 1);
			setenv("GOSSIP_MEMBER_ADDRS", e->addrs, 1);
			setenv("GOSSIP_MEMBER_TAGS", e->tags, 1);
		} else {
			setenv(e->kind == GOSSIP_EVENT_USER ? "GOSSIP_USER_EVENT" : "GOSSIP_KEY", e->key, 1);
			if (e->kind == GOSSIP_EVENT_KEY)
				setenv("GOSSIP_KEY_OP", e->op, 1);
			setenv("GOSSIP_ORIGIN_NAME", oname, 1);
			setenv("GOSSIP_ORIGIN_ID", e->origin, 1);
			snprintf(num, sizeof num, "%llu", (unsigned long long)e->version);
			setenv("GOSSIP_VERSION", num, 1);
			snprintf(num, sizeof num, "%llu", (unsigned long long)e->msg_time);
			setenv("GOSSIP_TIME", num, 1);
		}
		execl("/bin/sh", "sh", "-c", r->cfg.handlers[hi].command, (char *)NULL);
		_exit(127);
	}
	close(in);
	if (have)
		gossip_peers_free(&t);
	if (pid < 0)
		gossip_warn("handler %s: cannot start it: %s", r->cfg.handlers[hi].command, strerror(errno));
	return pid;
}

/* What the event is about, for a line on stderr. */
static void about(char *out, size_t n, const struct gossip_event *e)
{
	const char *name = e->kind == GOSSIP_EVENT_MEMBER ? e->name : e->key;
	size_t k = (size_t)snprintf(out, n, "%s%s%s%s", e->event, *name ? " " : "",
	                            e->kind == GOSSIP_EVENT_KEY ? e->op : "",
	                            e->kind == GOSSIP_EVENT_KEY ? " " : "");
	for (const char *c = name; *c && k + 4 < n; c++)
		out[k++] = (unsigned char)*c < 0x20 || *c == 0x7f ? '?' : *c;
	out[k < n ? k : n - 1] = 0;
}

static void finished(struct gossip_runner *r, int hi, int status)
{
	struct hstate *h = &r->h[hi];
	char what[128];
	about(what, sizeof what, &h->job->e);
	if (!h->killed && (!WIFEXITED(status) || WEXITSTATUS(status)))
		gossip_warn("handler %s for %s failed (exit %d)", r->cfg.handlers[hi].command, what,
		            WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
	h->job->want &= ~(1u << hi);
	h->next = h->job->seq + 1;
	h->pid = 0;
	h->job = NULL;
	h->warned = h->killed = 0;
}

static void keep_place(struct gossip_runner *r);
static void pop_delivered(struct gossip_runner *r);

/* Ended, or past the limit. */
static void reap(struct gossip_runner *r, uint64_t now)
{
	for (int i = 0; i < r->cfg.nhandlers; i++) {
		struct hstate *h = &r->h[i];
		int status;
		if (!h->pid)
			continue;
		pid_t w = waitpid(h->pid, &status, WNOHANG);
		if (w == h->pid || (w < 0 && errno == ECHILD)) {
			finished(r, i, w == h->pid ? status : 0);
			continue;
		}
		if (r->cfg.limit_ms && !h->killed && now - h->started >= r->cfg.limit_ms) {
			char what[128];
			about(what, sizeof what, &h->job->e);
			gossip_warn("handler %s for %s (pid %ld) still runs after %llu s: stopping it "
			            "(SIGTERM to its process group, SIGKILL in 5 s)",
			            r->cfg.handlers[i].command, what, (long)h->pid,
			            (unsigned long long)(r->cfg.limit_ms / 1000));
			kill(-h->pid, SIGTERM);
			h->killed = 1;
			h->stopped_at = now;
		} else if (h->killed == 1 && now - h->stopped_at >= 5000) {
			kill(-h->pid, SIGKILL);
			h->killed = 2;
		}
	}
}

int gossip_runner_tick(struct gossip_runner *r, uint64_t now)
{
	int running = 0;
	reap(r, now);
	/* A coalescing window that is over goes to the queue whole (room was kept for it). */
	if (r->cfg.coalesce_ms && (r->nwin || r->win_has_pos) && now - r->win_start >= r->cfg.coalesce_ms) {
		for (size_t i = 0; i < r->nwin; i++)
			push(r, r->win[i]);
		if (r->nwin) {
			r->win[r->nwin - 1]->pos = r->win_pos;
			r->win[r->nwin - 1]->has_pos = r->win_has_pos;
		} else if (r->tail > r->head) {
			r->q[(r->tail - 1) % r->cap]->pos = r->win_pos;
			r->q[(r->tail - 1) % r->cap]->has_pos = 1;
		} else {
			r->done = r->win_pos;
			r->has_done = 1;
		}
		r->nwin = 0;
		r->win_has_pos = 0;
	}
	pop_delivered(r);
	if (r->full_warned && !full(r, 0) && r->tail - r->head < r->cap / 2)
		r->full_warned = 0;
	/* Each idle handler: its next event. */
	for (int i = 0; i < r->cfg.nhandlers; i++) {
		struct hstate *h = &r->h[i];
		if (h->pid) {
			running++;
			continue;
		}
		if (h->next < r->head)
			h->next = r->head;
		for (; h->next < r->tail; h->next++) {
			struct job *j = r->q[h->next % r->cap];
			if (!(j->want & (1u << i)))
				continue;
			pid_t pid = start(r, i, j);
			if (pid < 0) {
				j->want &= ~(1u << i);  /* reported; not tried again */
				continue;
			}
			h->pid = pid;
			h->job = j;
			h->started = now;
			running++;
			break;
		}
	}
	keep_place(r);
	return running;
}

int gossip_runner_busy(const struct gossip_runner *r)
{
	for (int i = 0; i < r->cfg.nhandlers; i++)
		if (r->h[i].pid)
			return 1;
	return r->tail > r->head || r->nwin || r->win_has_pos;
}

/* Delivered to every handler that wants it: out of the queue, and the place moves. */
static void pop_delivered(struct gossip_runner *r)
{
	while (r->head < r->tail && !r->q[r->head % r->cap]->want) {
		struct job *j = r->q[r->head % r->cap];
		if (j->has_pos) {
			r->done = j->pos;
			r->has_done = 1;
		}
		r->bytes -= job_size(j);
		job_free(j);
		r->q[r->head++ % r->cap] = NULL;
	}
}

static void keep_place(struct gossip_runner *r)
{
	if (r->cfg.keep_place && r->has_done &&
	    (r->done.dev != r->saved.dev || r->done.ino != r->saved.ino || r->done.off != r->saved.off)) {
		if (gossip_log_pos_save(r->cfg.dir, &r->done) == 0)
			r->saved = r->done;
		else
			gossip_warn("%s", gossip_error());
	}
}

void gossip_runner_start_at(struct gossip_runner *r, const struct gossip_log_pos *at)
{
	r->done = *at;
	r->has_done = 1;
	r->saved.dev = r->saved.ino = r->saved.off = UINT64_MAX;
	keep_place(r);
}

int gossip_runner_full(struct gossip_runner *r)
{
	if (r->full_warned)
		return 0;
	r->full_warned = 1;
	return 1;
}

void gossip_runner_free(struct gossip_runner *r)
{
	if (!r)
		return;
	/* What ended is delivered; what runs is stopped, and run again at the next start. */
	reap(r, gossip_mono_ms());
	pop_delivered(r);
	keep_place(r);
	for (int i = 0; i < r->cfg.nhandlers; i++)
		if (r->h[i].pid)
			kill(-r->h[i].pid, SIGTERM);
	for (uint64_t s = r->head; s < r->tail; s++)
		job_free(r->q[s % r->cap]);
	for (size_t i = 0; i < r->nwin; i++)
		job_free(r->win[i]);
	free(r->q);
	free(r->win);
	free(r);
}

int gossip_handlers_want_keys(const struct gossip_handler *h, int n)
{
	for (int i = 0; i < n; i++) {
		if (!h[i].nfilters)
			return 1;
		for (int f = 0; f < h[i].nfilters; f++)
			if (!strcmp(h[i].filter[f].kind, "key") || !strcmp(h[i].filter[f].kind, "*"))
				return 1;
	}
	return 0;
}
