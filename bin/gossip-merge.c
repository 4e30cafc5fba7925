/* gossip-merge: merge messages into the store and print the new ones; answer queries and
 * watch keys; compact; serve and run anti-entropy syncs. */
#include "gossip.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void usage(int code)
{
	fprintf(code ? stderr : stdout,
	        "usage: gossip-merge [-v] [--verified] [--lazy] [--max-skew seconds] [-d dir] [file ...]\n"
	        "       gossip-merge [-ja] [-d dir] [-o origin] get key\n"
	        "       gossip-merge [-j] [-d dir] keys [prefix]\n"
	        "       gossip-merge [-j] [-d dir] dump\n"
	        "       gossip-merge [-d dir] export\n"
	        "       gossip-merge [-jv] [-d dir] digest\n"
	        "       gossip-merge [-d dir] compact\n"
	        "       gossip-merge [-d dir] [--repair] check\n"
	        "       gossip-merge [-jv] [-d dir] watch [prefix]\n"
	        "       gossip-merge [-d dir] [-t seconds] [--max-skew seconds] serve\n"
	        "       gossip-merge [-v] [-d dir] [-t seconds] [--max-skew seconds]\n"
	        "                    [--push | --pull | --push-pull] sync peer\n");
	exit(code);
}

static struct gossip_store *st;
static struct gossip_trust trust;
static uint64_t max_skew_ms;  /* 0: the default */
static int json, all, verbose, quiet_out, verified, lazy, repair;
static int keeping;  /* the summary is kept in DIR/store.root under trusted's id */
static const char *want_origin, *dir;
/* SIGHUP: read trusted again before the next message is judged, as gossip-listen does.
 * A file that does not load leaves the old one in force. */
static void reload(void)
{
	struct gossip_trust t;
	if (gossip_trust_load(&t, dir) < 0) {
		gossip_warn("reload: trusted: %s; keeping the old one", gossip_error());
		return;
	}
	gossip_trust_free(&trust);
	trust = t;  /* in place: the merger and the store's filter point at it */
	trust.max_skew_ms = max_skew_ms;
	/* What the store shows, its summary and the rule it records that summary under
	 * (DIR/store.root) follow the new trusted. */
	gossip_store_set_visible(st, gossip_trust_has, &trust);
	if (keeping) {
		uint8_t rule[16];
		gossip_trust_id(&trust, rule);
		gossip_store_keep_summary(st, rule);
	}
	gossip_warn("reloaded: %zu trusted signers", trust.n);
}

static void print_new(void *ctx, const uint8_t *p, size_t n)
{
	(void)ctx;
	if (quiet_out)
		return;
	if (fwrite(p, 1, n, stdout) != n || fflush(stdout) != 0)
		gossip_die(GOSSIP_EXIT_ERR, "stdout: %s", strerror(errno));
}

static const char *name_of(const uint8_t pk[32])
{
	const struct gossip_signer *s = gossip_trust_find(&trust, pk);
	return s ? s->name : NULL;
}

/* ---- merging ---- */

/* A node's pipeline (--lazy) outlives a store it cannot write (a full disk, a file size
 * limit): the batch is neither stored nor passed on, and comes back by anti-entropy. A
 * batch whose sync failed (an I/O error) was written and passed on, but may be lost at a
 * crash. One line when it starts, one a minute while it lasts, one when a batch is stored
 * (and synced) again (not one of duplicates alone, which writes nothing). 1: carry on; 0:
 * stop (not --lazy). */
static int store_trouble(const struct gossip_merger *mg, int failed)
{
	/* Each kind of trouble (not stored; written, not synced) is said on its own: a change
	 * from one to the other is said at once. */
	static uint64_t batches, unsynced, last_ms[2], written;
	uint64_t now = gossip_mono_ms();
	if (!failed) {
		if ((batches || unsynced) && mg->written > written) {
			char also[96] = "";
			if (unsynced)
				snprintf(also, sizeof also, "%s%llu batches written but not known to be on disk",
				         batches ? ", " : "", (unsigned long long)unsynced);
			if (batches)
				gossip_warn("store: written again (%llu batches were not stored%s; anti-entropy "
				            "brings them back)", (unsigned long long)batches, also);
			else
				gossip_warn("store: written again (%s; anti-entropy brings back what a crash "
				            "loses)", also);
			batches = unsynced = 0;
		}
		return 1;
	}
	if (!mg->lazy)
		return 0;
	written = mg->written;
	int kept = mg->store_failed == 2;
	uint64_t *count = kept ? &unsynced : &batches;
	if (!(*count)++ || gossip_age_ms(now, last_ms[kept]) >= 60000) {
		if (kept)
			gossip_warn("%s; the batch was written and passed on, but may be lost in a crash "
			            "(anti-entropy brings it back)", gossip_error());
		else
			gossip_warn("%s; not stored, tried again with what comes next", gossip_error());
		last_ms[kept] = now;
	}
	return 1;
}

/* Counters for gossip-node status (DIR/stats/merge): of every verb that stores. */
static struct gossip_stats counters;
static uint64_t syncs_done, syncs_failed, serves_done, serves_failed;

static void count_merger(struct gossip_merger *mg)
{
	gossip_stats_open(&counters, dir, "merge");
	gossip_merger_count(&counters, mg);
	gossip_stats_add(&counters, "syncs_done", &syncs_done);
	gossip_stats_add(&counters, "syncs_failed", &syncs_failed);
	gossip_stats_add(&counters, "serves_done", &serves_done);
	gossip_stats_add(&counters, "serves_failed", &serves_failed);
}

/* gossip_wait_input, with the counters written while idle: 1 when a SIGHUP came. */
static int wait_input(int fd)
{
	struct pollfd p = {fd, POLLIN, 0};
	for (;;) {
		if (gossip_hup_taken())
			return 1;
		int r = poll(&p, 1, 1000);
		gossip_stats_tick(&counters, gossip_now_ms());
		if (r > 0)
			return gossip_hup_taken();
	}
}

/* Merge what fd holds. A SIGHUP is taken while waiting for input (so an idle merge
 * reloads at once) and again just before each message: the message after the signal is
 * judged by the new trusted. */
static int merge_fd(struct gossip_merger *mg, int fd, const char *name)
{
	struct gossip_reader r;
	const uint8_t *p;
	size_t n;
	uint64_t off;
	int got, status = GOSSIP_EXIT_OK;
	struct stat sb;
	/* A file is never waited for: its batches are as large as the merger takes. */
	int file = fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode);
	gossip_reader_init(&r, fd, name, &gossip_msg_limits);
	for (;;) {
		if (!gossip_reader_ready(&r) && wait_input(fd)) {
			reload();
			continue;
		}
		if ((got = gossip_reader_next(&r, &p, &n, &off)) != 1)
			break;
		if (gossip_hup_taken())
			reload();
		/* A batch stored on the way (its rival came, or the batch is full) may fail too:
		 * that is the store's trouble; any other failure (memory) ends the merge. */
		mg->store_failed = 0;
		if (gossip_merge_item(mg, p, n, name, off) < 0 && !(mg->store_failed && store_trouble(mg, 1)))
			break;
		/* Store and print what has arrived before waiting for more. */
		if (!file && !gossip_reader_ready(&r) && !store_trouble(mg, gossip_merge_flush(mg) < 0))
			break;
		gossip_stats_tick(&counters, gossip_now_ms());
	}
	int flushed = got == 1 ? -1 : gossip_merge_flush(mg);
	if (gossip_hup_taken())  /* one that came while the last of it was written out */
		reload();
	if (flushed < 0) {
		gossip_warn("%s", gossip_error());
		status = GOSSIP_EXIT_ERR;
	} else if (got < 0) {
		gossip_warn("%s", gossip_error());
		status = GOSSIP_EXIT_ERR;
	}
	gossip_reader_free(&r);
	return status;
}

static int do_merge(int argc, char **argv)
{
	/* User events and key changes into DIR/events, as they are stored. */
	struct gossip_event_recorder rec = {.dir = dir};
	/* Each batch stored records the summary that digest answers from without reading the
	 * store (DIR/store.root): not in a node's pipeline (--lazy). */
	struct gossip_merger mg = {.st = st, .trust = &trust, .on_new = print_new, .verified = verified, .lazy = lazy,
	                           .record_summary = !lazy, .on_stored = gossip_event_record, .sctx = &rec};
	int status = GOSSIP_EXIT_OK;
	gossip_hup_catch();
	count_merger(&mg);
	if (argc == 0)
		status = merge_fd(&mg, 0, "stdin");
	for (int i = 0; i < argc; i++) {
		int s, fd = strcmp(argv[i], "-") == 0 ? 0 : open(argv[i], O_RDONLY | O_CLOEXEC);
		if (fd < 0) {
			gossip_warn("%s: cannot open: %s", argv[i], strerror(errno));
			s = GOSSIP_EXIT_ERR;
		} else {
			s = merge_fd(&mg, fd, fd == 0 ? "stdin" : argv[i]);
			if (fd)
				close(fd);
		}
		if (s > status)
			status = s;
	}
	if (verbose || quiet_out)
		gossip_warn("%llu messages: %llu new, %llu duplicate, %llu stale, %llu rejected, %llu "
		            "equivocating",
		            (unsigned long long)mg.seen, (unsigned long long)mg.added,
		            (unsigned long long)mg.dups, (unsigned long long)mg.stale,
		            (unsigned long long)mg.rejected, (unsigned long long)mg.equivocations);
	gossip_stats_close(&counters);
	gossip_merger_free(&mg);
	gossip_event_recorder_free(&rec);
	if (status == GOSSIP_EXIT_OK && (mg.rejected || mg.equivocations))
		status = GOSSIP_EXIT_NO;
	return status;
}

/* ---- queries ---- */

struct query {
	const char *key, *prefix;
	size_t keylen;
	int found;
	/* get: the best row so far */
	struct gossip_buf best;
	uint64_t best_version;
	uint8_t best_origin[32];
	/* keys */
	char **keys;
	size_t nkeys, cap;
	const uint8_t *origin;
};

static void print_row(const struct gossip_msg *m)
{
	const char *name = name_of(m->origin);
	char id[9], when[32];
	if (json) {
		putchar('{');
		gossip_json_fields(stdout, m, name);
		puts("}");
		return;
	}
	gossip_short_id(id, m->origin);
	gossip_fmt_time(when, m->time);
	printf("%-8s %-5s ", name ? name : id, gossip_type_name(m->type));
	gossip_put_string(stdout, m->key, m->keylen, 0);
	if (m->has_value) {
		putchar(' ');
		if (m->value_text)
			gossip_put_string(stdout, m->value, m->valuelen, 0);
		else {
			fputs("h'", stdout);
			for (size_t i = 0; i < m->valuelen && i < 64; i++)
				printf("%02x", m->value[i]);
			printf(m->valuelen > 64 ? "...' (%zu bytes)" : "'", m->valuelen);
		}
	}
	printf("  v%llu %s\n", (unsigned long long)m->version, when);
}

static int q_get(void *ctx, const struct gossip_entry *e, const uint8_t *p)
{
	struct query *q = ctx;
	struct gossip_msg m;
	if (e->type != GOSSIP_T_SET || gossip_msg_decode(p, e->len, &m) < 0 || m.keylen != q->keylen ||
	    memcmp(m.key, q->key, q->keylen) != 0)
		return 0;
	q->found++;
	/* One row of a register is current; a reserved _ key has one per origin: the newest
	 * write wins, and equal versions (two origins in one millisecond) go to the greater
	 * origin key, so every node answers alike. */
	if (q->best.len == 0 || m.version > q->best_version ||
	    (m.version == q->best_version && memcmp(m.origin, q->best_origin, 32) > 0)) {
		q->best.len = 0;
		if (gossip_buf_put(&q->best, p, e->len) < 0)
			return -1;
		q->best_version = m.version;
		memcpy(q->best_origin, m.origin, 32);
	}
	return 0;
}

/* get: of the key's rows, those current (neither superseded nor expired). */
static int q_get_current(void *ctx, const struct gossip_entry *e, const uint8_t *p)
{
	const char *state = gossip_store_row_state(st, e);
	return strcmp(state, "superseded") && strcmp(state, "expired") ? q_get(ctx, e, p) : 0;
}

/* get -o: the origin's own row, whether it wins or not (the rows come in order, so the
 * last one of the origin is its newest). */
static int q_get_origin(void *ctx, const struct gossip_entry *e, const uint8_t *p)
{
	struct query *q = ctx;
	struct gossip_msg m;
	if (gossip_msg_decode(p, e->len, &m) < 0 || memcmp(m.origin, q->origin, 32) != 0)
		return 0;
	q->best.len = 0;
	q->found = e->type == GOSSIP_T_SET;
	return q->found && gossip_buf_put(&q->best, p, e->len) < 0 ? -1 : 0;
}

/* get --all: every row held, in register order, and what each is. */
static int q_get_all(void *ctx, const struct gossip_entry *e, const uint8_t *p)
{
	struct query *q = ctx;
	struct gossip_msg m;
	const char *state = gossip_store_row_state(st, e);
	if (gossip_msg_decode(p, e->len, &m) < 0 || (q->origin && memcmp(m.origin, q->origin, 32)))
		return 0;
	q->found++;
	const char *name = name_of(m.origin);
	char id[9];
	gossip_short_id(id, m.origin);
	if (json) {
		putchar('{');
		gossip_json_fields(stdout, &m, name);
		printf(",\"state\":\"%s\"}\n", state);
		return 0;
	}
	printf("%s\t%llu\t%s\t%s\t", name ? name : id, (unsigned long long)m.version,
	       gossip_type_name(m.type), state);
	/* Plain text as it is; anything else (bytes, control bytes, a leading quote)
	 * quoted and escaped, so that a line stays one line. */
	int plain = m.has_value && m.value_text && gossip_utf8_valid(m.value, m.valuelen) &&
	            !(m.valuelen && m.value[0] == '"');
	for (size_t i = 0; plain && i < m.valuelen; i++)
		plain = m.value[i] >= 0x20 && m.value[i] != 0x7f;
	if (plain)
		fwrite(m.value, 1, m.valuelen, stdout);
	else if (m.has_value)
		gossip_put_string(stdout, m.value, m.valuelen, 0);
	putchar('\n');
	return 0;
}

static int parse_origin(const char *s, uint8_t pk[32])
{
	if (strlen(s) == 44 && gossip_unb64(pk, 32, s, 44) == 0)
		return 0;
	const struct gossip_signer *sg = gossip_trust_named(&trust, s);
	if (sg)
		memcpy(pk, sg->pk, 32);
	return sg ? 0 : -1;
}

static int do_get(const char *key)
{
	struct query q = {0};
	uint8_t pk[32];
	q.key = key;
	q.keylen = strlen(key);
	if (want_origin) {
		if (parse_origin(want_origin, pk) < 0)
			gossip_die(GOSSIP_EXIT_ERR, "-o %s: not a public key, nor a name in trusted",
			           want_origin);
		q.origin = pk;
	}
	/* The key's rows through the index: the cost is that of the key, not of the store. */
	if (gossip_store_rows(st, (const uint8_t *)key, q.keylen,
	                      all ? q_get_all : q.origin ? q_get_origin : q_get_current, &q) < 0)
		gossip_die(GOSSIP_EXIT_ERR, "%s", gossip_error());
	if (all && !q.found)
		gossip_warn("get --all: no row of \"%s\" is stored%s (never written, or collected "
		            "after its time to live)", key, q.origin ? " from that origin" : "");
	if (!all && q.best.len) {
		struct gossip_msg m;
		gossip_msg_decode(q.best.p, q.best.len, &m);
		if (json)
			print_row(&m);
		else {
			fwrite(m.value, 1, m.valuelen, stdout);
			if (isatty(1))
				putchar('\n');
		}
	}
	gossip_buf_free(&q.best);
	return q.found ? GOSSIP_EXIT_OK : GOSSIP_EXIT_NO;
}

static int q_keys(void *ctx, const struct gossip_entry *e, const uint8_t *p)
{
	struct query *q = ctx;
	struct gossip_msg m;
	if (e->type != GOSSIP_T_SET || gossip_msg_decode(p, e->len, &m) < 0)
		return 0;
	if (q->prefix && (m.keylen < strlen(q->prefix) || memcmp(m.key, q->prefix, strlen(q->prefix))))
		return 0;
	if (q->nkeys == q->cap) {
		q->cap = q->cap ? 2 * q->cap : 256;
		char **k = realloc(q->keys, q->cap * sizeof *k);
		if (!k)
			return -1;
		q->keys = k;
	}
	if (!(q->keys[q->nkeys] = strndup((const char *)m.key, m.keylen)))
		return -1;
	q->nkeys++;
	return 0;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int do_keys(const char *prefix)
{
	struct query q = {0};
	size_t shown = 0;
	q.prefix = prefix;
	if (gossip_store_each(st, 0, q_keys, &q) < 0)
		gossip_die(GOSSIP_EXIT_ERR, "%s", gossip_error());
	if (q.nkeys)
		qsort(q.keys, q.nkeys, sizeof *q.keys, cmp_str);
	for (size_t i = 0; i < q.nkeys; i++) {
		if (i && strcmp(q.keys[i], q.keys[i - 1]) == 0)
			continue;  /* written by several origins */
		shown++;
		if (json) {
			fputs("{\"key\":", stdout);
			gossip_put_string(stdout, (const uint8_t *)q.keys[i], strlen(q.keys[i]), 0);
			puts("}");
		} else if (strpbrk(q.keys[i], "\n\r\t\"\\") || !gossip_utf8_valid((const uint8_t *)q.keys[i], strlen(q.keys[i]))) {
			gossip_put_string(stdout, (const uint8_t *)q.keys[i], strlen(q.keys[i]), 0);
			putchar('\n');
		} else
			puts(q.keys[i]);
	}
	for (size_t i = 0; i < q.nkeys; i++)
		free(q.keys[i]);
	free(q.keys);
	return shown ? GOSSIP_EXIT_OK : GOSSIP_EXIT_NO;
}

static int q_dump(void *ctx, const struct gossip_entry *e, const uint8_t *p)
{
	struct gossip_msg m;
	(*(int *)ctx)++;
	if (gossip_msg_decode(p, e->len, &m) == 0)
		print_row(&m);
	return 0;
}

static int q_export(void *ctx, const struct gossip_entry *e, const uint8_t *p)
{
	(*(int *)ctx)++;
	return fwrite(p, 1, e->len, stdout) == e->len ? 0 : -1;
}

/* ---- watch ---- */

/* Names of the origins seen, from their member records in the store (kept up to date
 * from the records that come by), else from trusted. */
struct origin_name {
	uint8_t pk[32];
	char name[64];  /* "" when unknown */
};

struct watch {
	const char *prefix;
	size_t prefixlen;
	struct origin_name *names;
	size_t nnames, cap;
	uint8_t *buf;  /* GOSSIP_MSG_MAX, for reading a member record */
	int err;  /* errno of the first failed write to stdout */
};

static volatile sig_atomic_t watch_stop;

static void on_stop(int sig)
{
	(void)sig;
	watch_stop = 1;
}

static void name_from_record(struct origin_name *o, const struct gossip_msg *m)
{
	struct gossip_member mb;
	if (m->type == GOSSIP_T_SET && m->has_value && !m->value_text &&
	    gossip_member_decode(m->value, m->valuelen, &mb) == 0 && mb.name[0])
		snprintf(o->name, sizeof o->name, "%s", mb.name);
}

static struct origin_name *origin_of(struct watch *w, const uint8_t pk[32])
{
	for (size_t i = 0; i < w->nnames; i++)
		if (memcmp(w->names[i].pk, pk, 32) == 0)
			return &w->names[i];
	if (w->nnames == w->cap) {
		size_t cap = w->cap ? 2 * w->cap : 64;
		struct origin_name *n = realloc(w->names, cap * sizeof *n);
		if (!n)
			gossip_die(GOSSIP_EXIT_ERR, "out of memory");
		w->names = n;
		w->cap = cap;
	}
	struct origin_name *o = &w->names[w->nnames++];
	memcpy(o->pk, pk, 32);
	o->name[0] = 0;
	/* First seen: its member record as stored now. */
	struct gossip_msg q = {.type = GOSSIP_T_SET, .key = (const uint8_t *)GOSSIP_KEY_MEMBER,
	                       .keylen = strlen(GOSSIP_KEY_MEMBER)};
	uint8_t slot[16];
	memcpy(q.origin, pk, 32);
	gossip_slot(slot, &q);
	const struct gossip_entry *e = gossip_store_find(st, slot);
	struct gossip_msg m;
	if (e && e->type == GOSSIP_T_SET && gossip_store_read(st, e, w->buf) == 0 &&
	    gossip_msg_decode(w->buf, e->len, &m) == 0)
		name_from_record(o, &m);
	return o;
}

/* The key is shown: under the prefix; one of membership's (_...) only when the prefix
 * asks for it. */
static int watch_wants(const struct watch *w, const struct gossip_msg *m)
{
	if (m->keylen < w->prefixlen || memcmp(m->key, w->prefix, w->prefixlen) != 0)
		return 0;
	return !(m->keylen && m->key[0] == '_') || (w->prefixlen && w->prefix[0] == '_');
}

/* A key as text for people: as it is when plain, quoted and escaped otherwise. */
static void put_key(const uint8_t *k, size_t n)
{
	int plain = n > 0 && gossip_utf8_valid(k, n);
	for (size_t i = 0; plain && i < n; i++)
		plain = k[i] > ' ' && k[i] != '"' && k[i] != '\\' && k[i] != 0x7f;
	if (plain)
		fwrite(k, 1, n, stdout);
	else
		gossip_put_string(stdout, k, n, 0);
}

static void put_b64(const uint8_t *p, size_t n)
{
	char *b = malloc(4 * ((n + 2) / 3) + 1);
	if (!b)
		gossip_die(GOSSIP_EXIT_ERR, "out of memory");
	gossip_b64(b, p, n);
	fputs(b, stdout);
	free(b);
}

static int watch_one(void *ctx, const struct gossip_entry *e, const uint8_t *p)
{
	struct watch *w = ctx;
	struct gossip_msg m;
	if ((e->type != GOSSIP_T_SET && e->type != GOSSIP_T_DEL) ||
	    gossip_msg_decode(p, e->len, &m) < 0)
		return 0;  /* events are not key changes */
	struct origin_name *o = origin_of(w, m.origin);
	if (gossip_msg_key_is(&m, GOSSIP_KEY_MEMBER))
		name_from_record(o, &m);
	if (!watch_wants(w, &m))
		return 0;
	const char *name = o->name[0] ? o->name : name_of(m.origin);
	int del = m.type == GOSSIP_T_DEL;
	if (json) {
		char b64[45];
		gossip_b64(b64, m.origin, 32);
		printf("{\"time\":%llu,\"op\":\"%s\",\"key\":", (unsigned long long)m.time,
		       del ? "del" : "set");
		gossip_put_string(stdout, m.key, m.keylen, 0);
		printf(",\"origin\":\"%s\",\"name\":", b64);
		if (name)
			gossip_put_string(stdout, (const uint8_t *)name, strlen(name), 0);
		else
			fputs("null", stdout);
		printf(",\"version\":%llu", (unsigned long long)m.version);
		if (m.has_value && m.value_text) {
			fputs(",\"value\":", stdout);
			gossip_put_string(stdout, m.value, m.valuelen, 0);
		} else if (m.has_value) {
			fputs(",\"value64\":\"", stdout);
			put_b64(m.value, m.valuelen);
			putchar('"');
		}
		puts("}");
	} else {
		char when[32], id[9];
		gossip_fmt_time(when, m.time);
		gossip_short_id(id, m.origin);
		printf("%s %s ", when, del ? "del" : "set");
		put_key(m.key, m.keylen);
		printf(" %s v%llu", name ? name : id, (unsigned long long)m.version);
		if (m.has_value && m.value_text) {
			putchar(' ');
			gossip_put_string(stdout, m.value, m.valuelen, 0);
		} else if (m.has_value) {
			fputs(" b64'", stdout);
			put_b64(m.value, m.valuelen < 48 ? m.valuelen : 48);
			if (m.valuelen > 48)
				printf("...' (%zu bytes)", m.valuelen);
			else
				putchar('\'');
		}
		putchar('\n');
	}
	if (ferror(stdout)) {
		w->err = errno;
		return 1;  /* the reader is gone, or the disk full: stop */
	}
	return 0;
}

/* DIR/trusted as stat sees it, to read it again when it changes. */
static int trusted_changed(struct stat *last)
{
	struct stat sb;
	memset(&sb, 0, sizeof sb);
	(void)stat(gossip_path(dir, "trusted"), &sb);
	int changed = sb.st_ino != last->st_ino || sb.st_size != last->st_size ||
	              sb.st_mtim.tv_sec != last->st_mtim.tv_sec ||
	              sb.st_mtim.tv_nsec != last->st_mtim.tv_nsec;
	*last = sb;
	return changed;
}

/* Print each key change as it is stored, until the reader goes or a signal comes. A
 * look at DIR/store every 50 ms (one stat), and at stdout: a pipe whose reader left
 * reports POLLERR, so the watch ends even while nothing is stored. */
static int do_watch(const char *prefix)
{
	struct watch w = {.prefix = prefix ? prefix : "", .prefixlen = prefix ? strlen(prefix) : 0};
	struct sigaction sa;
	struct stat tst;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_stop;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	gossip_hup_catch();
	trusted_changed(&tst);
	if (!(w.buf = malloc(GOSSIP_MSG_MAX)))
		gossip_die(GOSSIP_EXIT_ERR, "out of memory");
	struct gossip_store_follower *f = gossip_store_follow(st);
	if (!f)
		gossip_die(GOSSIP_EXIT_ERR, "%s", gossip_error());
	if (verbose)
		gossip_warn("watching %s/store%s%s", dir, prefix ? " for keys under " : "",
		            prefix ? prefix : "");
	int status = GOSSIP_EXIT_OK;
	/* Woken at once by a write to DIR/store (inotify), else every 50 ms. */
	static const char *const names[] = {"store", NULL};
	int dw = gossip_dirwatch_open(dir);
	while (!watch_stop) {
		struct pollfd pfd[2] = {{.fd = 1, .events = 0}, {.fd = dw, .events = POLLIN}};
		if (poll(pfd, dw >= 0 ? 2 : 1, 50) > 0 && (pfd[0].revents & (POLLERR | POLLHUP | POLLNVAL)))
			break;  /* the reader is gone */
		if (dw >= 0)
			gossip_dirwatch_wait(dw, names, 0);  /* what woke it, read */
		if (watch_stop)
			break;
		if (gossip_hup_taken() | trusted_changed(&tst))
			reload();
		if (!gossip_store_follow_changed(f))
			continue;
		int r = gossip_store_follow_next(f, watch_one, &w);
		if (fflush(stdout) != 0 || ferror(stdout)) {
			int err = w.err ? w.err : errno;
			if (err != EPIPE) {
				gossip_warn("stdout: %s", strerror(err));
				status = GOSSIP_EXIT_ERR;
			}
			break;
		}
		if (r < 0) {
			gossip_warn("%s", gossip_error());
			status = GOSSIP_EXIT_ERR;
			break;
		}
	}
	gossip_store_follow_free(f);
	free(w.names);
	free(w.buf);
	return status;
}

/* ---- check ---- */

/* Every record read and every signature verified (the store was opened so); the damage
 * listed; with --repair the store rewritten without it (compaction: store.new, fsync,
 * rename), the quarantine kept. 0 clean, 1 damage found (repaired with --repair). */
static int do_check(void)
{
	size_t n;
	uint64_t bytes = 0, count, before, after;
	uint8_t root[16];
	const struct gossip_store_damage *d = gossip_store_damage(st, &n);
	for (size_t i = 0; i < n; i++) {
		printf("%s/store: %s: %llu bytes at offset %llu\n", dir,
		       d[i].torn ? "torn tail" : "damaged", (unsigned long long)d[i].len,
		       (unsigned long long)d[i].off);
		bytes += d[i].len;
	}
	if (gossip_store_summary(st, root, &count) < 0)
		gossip_die(GOSSIP_EXIT_ERR, "%s", gossip_error());
	printf("%s/store: %llu messages verified, %zu damaged region%s (%llu bytes)\n", dir,
	       (unsigned long long)count, n, n == 1 ? "" : "s", (unsigned long long)bytes);
	if (n && repair) {
		gossip_store_unlock(st);
		if (gossip_store_compact(st, &before, &after) < 0)
			gossip_die(GOSSIP_EXIT_ERR, "repair: %s", gossip_error());
		printf("%s/store: repaired: %llu bytes, now %llu; the damage is kept in %s/quarantine\n",
		       dir, (unsigned long long)before, (unsigned long long)after, dir);
	}
	return n ? GOSSIP_EXIT_NO : GOSSIP_EXIT_OK;
}

/* ---- main ---- */

int main(int argc, char **argv)
{
	enum { O_PUSH = 256, O_PULL, O_PUSHPULL, O_TTL, O_ETTL, O_VERIFIED, O_LAZY, O_SKEW, O_REPAIR };
	static const struct option longopts[] = {
		{"dir", required_argument, NULL, 'd'}, {"json", no_argument, NULL, 'j'},
		{"all", no_argument, NULL, 'a'}, {"origin", required_argument, NULL, 'o'},
		{"verbose", no_argument, NULL, 'v'}, {"timeout", required_argument, NULL, 't'},
		{"push", no_argument, NULL, O_PUSH}, {"pull", no_argument, NULL, O_PULL},
		{"push-pull", no_argument, NULL, O_PUSHPULL},
		{"tombstone-ttl", required_argument, NULL, O_TTL},
		{"event-ttl", required_argument, NULL, O_ETTL},
		{"verified", no_argument, NULL, O_VERIFIED}, {"lazy", no_argument, NULL, O_LAZY},
		{"max-skew", required_argument, NULL, O_SKEW}, {"repair", no_argument, NULL, O_REPAIR},
		{"help", no_argument, NULL, 'h'}, {"version", no_argument, NULL, 'V'}, {0}};
	struct gossip_store_opts opts = gossip_store_defaults;
	int c, mode = 0, timeout = 30;
	char *end;

	gossip_init(argv[0]);
	while ((c = getopt_long(argc, argv, "+d:jao:vt:h", longopts, NULL)) != -1) {
		gossip_opt_once(c);
		switch (c) {
		case 'd': dir = optarg; break;
		case 'j': json = 1; break;
		case 'a': all = 1; break;
		case 'o': want_origin = optarg; break;
		case 'v': verbose = 1; break;
		case 't':
			timeout = (int)strtol(optarg, &end, 10);
			if (*end || timeout <= 0 || timeout > 86400)
				gossip_die(GOSSIP_EXIT_ERR, "-t %s: want seconds, 1 to 86400", optarg);
			break;
		case O_PUSH: case O_PULL: case O_PUSHPULL:
			if (mode)
				gossip_die(GOSSIP_EXIT_ERR, "give one of --push, --pull, --push-pull");
			mode = c == O_PUSH ? GOSSIP_PUSH : c == O_PULL ? GOSSIP_PULL : GOSSIP_PUSH_PULL;
			break;
		case O_TTL: case O_ETTL: {
			unsigned long long v = strtoull(optarg, &end, 10);
			if (*end || !*optarg || v == 0 || v > 10ULL * 365 * 86400)
				gossip_die(GOSSIP_EXIT_ERR, "--%s %s: want seconds, at least 1",
				           c == O_TTL ? "tombstone-ttl" : "event-ttl", optarg);
			*(c == O_TTL ? &opts.tombstone_ttl_ms : &opts.event_ttl_ms) = v * 1000;
			break;
		}
		case O_SKEW: {
			unsigned long long v = strtoull(optarg, &end, 10);
			if (*end || !*optarg || v < 1 || v > 365ULL * 86400)
				gossip_die(GOSSIP_EXIT_ERR, "--max-skew %s: want seconds, 1 to 31536000", optarg);
			max_skew_ms = v * 1000;
			break;
		}
		case O_VERIFIED: verified = 1; break;
		case O_LAZY: lazy = 1; break;
		case O_REPAIR: repair = 1; break;
		case 'h': usage(GOSSIP_EXIT_OK); break;
		case 'V': gossip_print_version(); break;
		default: usage(GOSSIP_EXIT_ERR);
		}
	}
	argc -= optind;
	argv += optind;
	const char *verb = argc ? argv[0] : "";
	static const char *const verbs[] = {"get", "keys", "dump", "export", "digest", "compact",
	                                    "serve", "sync", "check", "watch", NULL};
	int v = -1;
	for (int i = 0; verbs[i]; i++)
		if (strcmp(verb, verbs[i]) == 0)
			v = i;
	if ((v == 0 && argc != 2) || (v == 1 && argc > 2) || (v >= 2 && v <= 6 && argc != 1) ||
	    (v == 7 && argc != 2) || (v == 8 && argc != 1) || (repair && v != 8) ||
	    (mode && v != 7) || ((all || want_origin) && v != 0) ||
	    ((verified || lazy) && v >= 0) || (max_skew_ms && (v >= 8 || (v >= 0 && v < 6))))
		usage(GOSSIP_EXIT_ERR);
	dir = gossip_state_dir(dir);
	const char *prefix = NULL;
	if (v == 9) {
		struct stat sb;
		int k = 1;
		if (argc > 1 && strcmp(argv[1], "--") == 0)
			k++;  /* a prefix that starts with - */
		else if (argc > 1 && argv[1][0] == '-')
			gossip_die(GOSSIP_EXIT_ERR, "watch: %s: unknown option; options go before the verb "
			           "(gossip-merge [-jv] [-d dir] watch [prefix])", argv[1]);
		if (argc > k + 1)
			gossip_die(GOSSIP_EXIT_ERR, "watch: give at most one prefix (got %s and %s)",
			           argv[k], argv[k + 1]);
		prefix = argc > k && *argv[k] ? argv[k] : NULL;
		if (stat(dir, &sb) < 0 || !S_ISDIR(sb.st_mode))
			gossip_die(GOSSIP_EXIT_ERR, "watch: %s: %s; give a node's state directory with -d",
			           dir, stat(dir, &sb) < 0 ? strerror(errno) : strerror(ENOTDIR));
	}
	signal(SIGPIPE, SIG_IGN);
	opts.readonly = (v >= 0 && v <= 4) || (v == 8 && !repair) || v == 9;  /* queries write nothing */
	opts.verify_all = v == 8;
	/* A sync that the kept summary ends reads no store, nor a digest it answers. */
	opts.lazy = v == 6 || v == 7 || v == 4;
	if (v == 0)
		opts.key = argv[1];  /* get: that key's rows alone, through DIR/store.keys */
	if (!(st = gossip_store_open(dir, &opts)))
		gossip_die(GOSSIP_EXIT_ERR, "%s", gossip_error());
	if (gossip_trust_load(&trust, dir) < 0)
		gossip_die(GOSSIP_EXIT_ERR, "trusted: %s", gossip_error());
	trust.max_skew_ms = max_skew_ms;
	/* The store shows only what trusted signers wrote: a line removed from trusted hides
	 * its signer's messages from queries and syncs, and compaction drops them. */
	if (v != 8)  /* check keeps every verified message, trusted or not */
		gossip_store_set_visible(st, gossip_trust_has, &trust);
	if (v == 6 || v == 7 || v == 4 || (v < 0 && !lazy)) {  /* the summary in DIR/store.root */
		uint8_t rule[16];
		gossip_trust_id(&trust, rule);
		gossip_store_keep_summary(st, rule);
		keeping = 1;
	}

	int status = GOSSIP_EXIT_OK;
	if (v < 0) {
		quiet_out = isatty(1);  /* messages are for pipes; people get a count */
		status = do_merge(argc, argv);
	} else if ((v <= 3 || v == 8) && gossip_store_lock(st) < 0) {
		gossip_die(GOSSIP_EXIT_ERR, "%s", gossip_error());
	} else if (v == 0) {
		status = do_get(argv[1]);
	} else if (v == 1) {
		status = do_keys(argc > 1 ? argv[1] : NULL);
	} else if (v == 2 || v == 3) {
		int n = 0;
		if (v == 3 && isatty(1))
			gossip_die(GOSSIP_EXIT_ERR, "stdout is a terminal: pipe the export into "
			                            "gossip-inspect or a file");
		if (gossip_store_each(st, 0, v == 2 ? q_dump : q_export, &n) < 0 || fflush(stdout) != 0)
			gossip_die(GOSSIP_EXIT_ERR, "%s", *gossip_error() ? gossip_error() : strerror(errno));
		status = n ? GOSSIP_EXIT_OK : GOSSIP_EXIT_NO;
	} else if (v == 4) {
		uint8_t root[16];
		uint64_t count;
		char hex[33];
		int kept = gossip_store_summary_kept(st, root, &count) == 0;
		if (!kept && (gossip_store_lock(st) < 0 || gossip_store_summary(st, root, &count) < 0))
			gossip_die(GOSSIP_EXIT_ERR, "%s", gossip_error());
		if (verbose)
			gossip_warn(kept ? "digest: from the kept summary (%s/store.root), the store unread"
			                 : "digest: made from the store (%s/store.root does not match it)", dir);
		gossip_hex(hex, root, 16);
		if (json)
			printf("{\"root\":\"%s\",\"count\":%llu,\"origins\":%llu}\n", hex, (unsigned long long)count,
			       (unsigned long long)gossip_store_origins(st));
		else
			printf("%s %llu\n", hex, (unsigned long long)count);
	} else if (v == 8) {
		status = do_check();
	} else if (v == 9) {
		status = do_watch(prefix);
	} else if (v == 5) {
		uint64_t before, after;
		if (gossip_store_compact(st, &before, &after) < 0)
			gossip_die(GOSSIP_EXIT_ERR, "%s", gossip_error());
		printf("compacted %s/store: %llu bytes, now %llu\n", dir, (unsigned long long)before,
		       (unsigned long long)after);
	} else {
		struct gossip_event_recorder rec = {.dir = dir};
		/* A peer that trusts more signers than this store sends their messages at every
		 * sync, refused each time: ten lines, then a count. */
		struct gossip_merger mg = {.st = st, .trust = &trust, .on_new = print_new,
		                           .on_stored = gossip_event_record, .sctx = &rec, .say_max = 10};
		struct gossip_sync_stats s;
		int r;
		count_merger(&mg);
		if (v == 6) {
			mg.on_new = NULL;  /* stdout is the protocol */
			r = gossip_sync_serve(&mg, 0, 1, timeout * 1000, &s);
		} else {
			quiet_out = isatty(1);
			r = gossip_sync_client(&mg, argv[1], mode ? mode : GOSSIP_PUSH_PULL, timeout * 1000, &s);
		}
		if (r < 0) {
			gossip_warn("%s: %s", v == 6 ? "serve" : argv[1], gossip_error());
			status = GOSSIP_EXIT_ERR;
		}
		(*(v == 6 ? (r < 0 ? &serves_failed : &serves_done) : (r < 0 ? &syncs_failed : &syncs_done)))++;
		gossip_stats_close(&counters);
		if (verbose)
			gossip_warn("%s: %s; sent %llu messages, %llu bytes; received %llu messages, %llu "
			            "bytes, %llu new",
			            v == 6 ? "serve" : argv[1],
			            r < 0    ? "failed"
			            : s.kept ? "stores equal (by the kept summary: the store was not read)"
			            : s.equal ? "stores equal" : "stores differed",
			            (unsigned long long)s.sent_msgs, (unsigned long long)s.sent_bytes,
			            (unsigned long long)s.recv_msgs, (unsigned long long)s.recv_bytes,
			            (unsigned long long)mg.added);
		if (r >= 0 && s.want_left)
			gossip_warn("%s: %llu more messages to pull than one sync wants: sync again", argv[1],
			            (unsigned long long)s.want_left);
		if (mg.rejected && status == GOSSIP_EXIT_OK)
			status = GOSSIP_EXIT_NO;
		gossip_merger_free(&mg);
		gossip_event_recorder_free(&rec);
	}
	gossip_store_close(st);
	gossip_trust_free(&trust);
	return status;
}
