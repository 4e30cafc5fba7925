/* peers.c: membership: member records, the peer table, phi accrual failure detection,
 * random choice of live peers, the leader. */
#include "gossip.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <math.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const struct gossip_peers_cfg gossip_peers_defaults = {
	.interval_ms = 1000, .phi_suspect = 8, .suspicion_mult = 4, .min_std_ms = 100, .pause_ms = 2000,
	.reap_ms = 3600 * 1000, .partition_share = 0.3, .score_min = 50, .dead_chance = 0.1,
};

const char *gossip_pstate_name(int s)
{
	static const char *const n[] = {"alive", "suspect", "dead", "left"};
	return s >= 0 && s <= GOSSIP_P_LEFT ? n[s] : "unknown";
}

/* ---- member records: {1: incarnation, 2: name, 3: [addresses], 4: {tag: value}} ---- */

static int cmp_tag(const void *a, const void *b)
{
	const char *x = *(char *const *)a, *y = *(char *const *)b;
	size_t kx = strcspn(x, "="), ky = strcspn(y, "=");
	/* Deterministic map order: shorter keys first, then bytewise (RFC 8949 §4.2.1). */
	return kx != ky ? (kx < ky ? -1 : 1) : strncmp(x, y, kx);
}

int gossip_member_encode(struct gossip_buf *b, const struct gossip_member *m)
{
	char *tags[GOSSIP_MAX_TAGS];
	for (int i = 0; i < m->ntags; i++)
		tags[i] = (char *)m->tags[i];
	qsort(tags, (size_t)m->ntags, sizeof *tags, cmp_tag);
	if (gossip_cbor_head(b, GOSSIP_MT_MAP, 4) < 0 || gossip_cbor_head(b, GOSSIP_MT_UINT, 1) < 0 ||
	    gossip_cbor_head(b, GOSSIP_MT_UINT, m->incarnation) < 0 ||
	    gossip_cbor_head(b, GOSSIP_MT_UINT, 2) < 0 ||
	    gossip_cbor_str(b, GOSSIP_MT_TSTR, m->name, strlen(m->name)) < 0 ||
	    gossip_cbor_head(b, GOSSIP_MT_UINT, 3) < 0 ||
	    gossip_cbor_head(b, GOSSIP_MT_ARRAY, (uint64_t)m->naddrs) < 0)
		return -1;
	for (int i = 0; i < m->naddrs; i++)
		if (gossip_cbor_str(b, GOSSIP_MT_TSTR, m->addrs[i], strlen(m->addrs[i])) < 0)
			return -1;
	if (gossip_cbor_head(b, GOSSIP_MT_UINT, 4) < 0 ||
	    gossip_cbor_head(b, GOSSIP_MT_MAP, (uint64_t)m->ntags) < 0)
		return -1;
	for (int i = 0; i < m->ntags; i++) {
		size_t k = strcspn(tags[i], "=");
		if (gossip_cbor_str(b, GOSSIP_MT_TSTR, tags[i], k) < 0 ||
		    gossip_cbor_str(b, GOSSIP_MT_TSTR, tags[i] + k + 1, strlen(tags[i] + k + 1)) < 0)
			return -1;
	}
	return 0;
}

/* A text field of a member record; none of the bytes in no (the separators of the lines
 * handlers and scripts read: "name id state addresses tags", "tag=value,..."). */
static int get_text(struct gossip_cur *c, char *out, size_t outlen, const char *what, const char *no)
{
	struct gossip_ev ev;
	if (gossip_cur_expect(c, GOSSIP_EV_TSTR, &ev, what) < 0)
		return -1;
	if (ev.len >= outlen || !gossip_utf8_valid(ev.data, ev.len)) {
		gossip_seterr("%s: too long or not text", what);
		return -1;
	}
	/* Names, addresses and tags are printed as they are for people: no control bytes. */
	for (size_t i = 0; i < ev.len; i++)
		if (ev.data[i] < 0x20 || ev.data[i] == 0x7f) {
			gossip_seterr("%s: a control character", what);
			return -1;
		} else if (strchr(no, ev.data[i])) {
			gossip_seterr("%s: a '%c'", what, ev.data[i]);
			return -1;
		}
	memcpy(out, ev.data, ev.len);
	out[ev.len] = 0;
	return 0;
}

int gossip_member_decode(const uint8_t *p, size_t n, struct gossip_member *m)
{
	struct gossip_cur c = {p, n, 0};
	struct gossip_ev ev;
	memset(m, 0, sizeof *m);
	if (gossip_cur_expect(&c, GOSSIP_EV_MAP, &ev, "member record") < 0 || ev.u != 4)
		goto bad;
	for (uint64_t f = 1; f <= 4; f++) {
		if (gossip_cur_expect(&c, GOSSIP_EV_UINT, &ev, "member record") < 0 || ev.u != f)
			goto bad;
		if (f == 1) {
			if (gossip_cur_expect(&c, GOSSIP_EV_UINT, &ev, "incarnation") < 0)
				goto bad;
			m->incarnation = ev.u;
		} else if (f == 2) {
			if (get_text(&c, m->name, sizeof m->name, "name", " ") < 0)
				goto bad;
		} else if (f == 3) {
			if (gossip_cur_expect(&c, GOSSIP_EV_ARRAY, &ev, "addresses") < 0 || ev.u > GOSSIP_MAX_ADDRS)
				goto bad;
			m->naddrs = (int)ev.u;
			for (int i = 0; i < m->naddrs; i++)
				if (get_text(&c, m->addrs[i], sizeof m->addrs[i], "address", " ,") < 0)
					goto bad;
		} else {
			if (gossip_cur_expect(&c, GOSSIP_EV_MAP, &ev, "tags") < 0 || ev.u > GOSSIP_MAX_TAGS)
				goto bad;
			m->ntags = (int)ev.u;
			for (int i = 0; i < m->ntags; i++) {
				char k[64], v[128];
				if (get_text(&c, k, sizeof k, "tag", " =") < 0 || get_text(&c, v, sizeof v, "tag value", " =") < 0)
					goto bad;
				/* A key is read back up to its "=": one with "=" in it, or empty, would
				 * mean another tag. Keys in the encoder's order, each once. */
				snprintf(m->tags[i], sizeof m->tags[i], "%s=%s", k, v);
				const char *prev = i ? m->tags[i - 1] : NULL, *cur = m->tags[i];
				if (!*k || strchr(k, '=') || (prev && cmp_tag(&prev, &cur) >= 0))
					goto bad;
			}
		}
	}
	if (c.pos != n)
		goto bad;
	return 0;
bad:
	gossip_seterr("not a member record");
	return -1;
}

/* The address of a kind (GOSSIP_UDP: datagrams, GOSSIP_TCP: syncs), or NULL. */
const char *gossip_member_addr(const struct gossip_member *m, int kind)
{
	const char *want = kind == GOSSIP_UDP ? "udp://" : "tcp://";
	for (int i = 0; i < m->naddrs; i++)
		if (strncmp(m->addrs[i], want, 6) == 0)
			return m->addrs[i];
	return NULL;
}

const char *gossip_member_tag(const struct gossip_member *m, const char *key)
{
	size_t k = strlen(key);
	for (int i = 0; i < m->ntags; i++)
		if (strncmp(m->tags[i], key, k) == 0 && m->tags[i][k] == '=')
			return m->tags[i] + k + 1;
	return NULL;
}

/* ---- phi accrual (Hayashibara et al. 2004) ---- */

double gossip_phi(const struct gossip_peer *p, uint64_t now, const struct gossip_peers_cfg *cfg)
{
	double mean = cfg->interval_ms, var = 0, sd;
	if (!p->last_hb)
		return 0;
	if (p->nint > 0) {
		double sum = 0;
		for (int i = 0; i < p->nint; i++)
			sum += p->intervals[i];
		mean = sum / p->nint;
		for (int i = 0; i < p->nint; i++)
			var += (p->intervals[i] - mean) * (p->intervals[i] - mean);
		var /= p->nint;
	}
	sd = sqrt(var);
	if (sd < cfg->min_std_ms)
		sd = cfg->min_std_ms;
	/* A pause this long is no sign of failure (Akka's acceptable heartbeat pause): relayed
	 * heartbeats, scheduling and GC-like stalls must not make suspects. */
	mean += cfg->pause_ms;
	double t = now > p->last_hb ? (double)(now - p->last_hb) : 0;
	/* P(the next heartbeat comes later than t), arrivals ~ Normal(mean, sd). */
	double tail = 0.5 * erfc((t - mean) / (sd * M_SQRT2));
	if (tail < 1e-300)
		return 300;
	return -log10(tail);
}

void gossip_peer_heard(struct gossip_peer *p, uint64_t now)
{
	if (p->last_hb && now > p->last_hb) {
		p->intervals[p->pos] = (double)(now - p->last_hb);
		p->pos = (p->pos + 1) % GOSSIP_PHI_WINDOW;
		if (p->nint < GOSSIP_PHI_WINDOW)
			p->nint++;
	}
	p->last_hb = now;
}

void gossip_peer_set_state(struct gossip_peer *p, int state, uint64_t now)
{
	p->state = state;
	p->since = now;
	/* Partition detection counts the members that went down lately: from when they turned
	 * suspect, or dead when they never were suspect here. */
	if (state == GOSSIP_P_SUSPECT || (state == GOSSIP_P_DEAD && !p->suspected_at))
		p->suspected_at = now;
}

/* memberlist's suspicion timeout: it grows with log N, so that in a large cluster the
 * word gets around before a suspect is declared dead. */
uint64_t gossip_suspicion_ms(const struct gossip_peers_cfg *cfg, size_t members)
{
	double scale = log10((double)members + 1);
	if (scale < 1)
		scale = 1;
	return (uint64_t)(cfg->suspicion_mult * scale * cfg->interval_ms);
}

/* ---- the table ---- */

struct gossip_peer *gossip_peers_find(struct gossip_peers *t, const uint8_t pk[32], int create)
{
	for (size_t i = 0; i < t->n; i++)
		if (memcmp(t->v[i].pk, pk, 32) == 0)
			return &t->v[i];
	if (!create)
		return NULL;
	struct gossip_peer *v = realloc(t->v, (t->n + 1) * sizeof *v);
	if (!v)
		return NULL;
	t->v = v;
	memset(&v[t->n], 0, sizeof *v);
	memcpy(v[t->n].pk, pk, 32);
	v[t->n].score = 100;
	return &v[t->n++];
}

void gossip_peers_free(struct gossip_peers *t)
{
	free(t->v);
	t->v = NULL;
	t->n = 0;
}

/* The file: a CBOR sequence, one array per peer:
 * [pk, state, since, member version, member record, heartbeat version, last heartbeat,
 *  [intervals...], score, rejected, why]. */
int gossip_peers_save(const struct gossip_peers *t, const char *dir)
{
	struct gossip_buf b = {0}, rec = {0};
	int r = -1;
	if (gossip_cbor_head(&b, GOSSIP_MT_MAP, t->probing ? 6 : 5) < 0 ||
	    gossip_cbor_head(&b, GOSSIP_MT_UINT, 1) < 0 ||
	    gossip_cbor_head(&b, GOSSIP_MT_UINT, t->partition_since) < 0 ||
	    gossip_cbor_head(&b, GOSSIP_MT_UINT, 2) < 0 ||
	    gossip_cbor_head(&b, GOSSIP_MT_UINT, t->saved_at) < 0 ||
	    gossip_cbor_head(&b, GOSSIP_MT_UINT, 3) < 0 ||
	    gossip_cbor_head(&b, GOSSIP_MT_UINT, (uint64_t)t->interval_ms) < 0 ||
	    gossip_cbor_head(&b, GOSSIP_MT_UINT, 4) < 0 ||
	    gossip_cbor_head(&b, GOSSIP_MT_UINT, (uint64_t)t->min_std_ms) < 0 ||
	    gossip_cbor_head(&b, GOSSIP_MT_UINT, 5) < 0 ||
	    gossip_cbor_head(&b, GOSSIP_MT_UINT, (uint64_t)t->pause_ms) < 0 ||
	    (t->probing && (gossip_cbor_head(&b, GOSSIP_MT_UINT, 6) < 0 ||
	                    gossip_cbor_head(&b, GOSSIP_MT_UINT, 1) < 0)))
		goto out;
	for (size_t i = 0; i < t->n; i++) {
		const struct gossip_peer *p = &t->v[i];
		rec.len = 0;
		if (gossip_member_encode(&rec, &p->info) < 0 ||
		    gossip_cbor_head(&b, GOSSIP_MT_ARRAY, 11) < 0 ||
		    gossip_cbor_str(&b, GOSSIP_MT_BSTR, p->pk, 32) < 0 ||
		    gossip_cbor_head(&b, GOSSIP_MT_UINT, (uint64_t)p->state) < 0 ||
		    gossip_cbor_head(&b, GOSSIP_MT_UINT, p->since) < 0 ||
		    gossip_cbor_head(&b, GOSSIP_MT_UINT, p->member_version) < 0 ||
		    gossip_cbor_str(&b, GOSSIP_MT_BSTR, rec.p, rec.len) < 0 ||
		    gossip_cbor_head(&b, GOSSIP_MT_UINT, p->hb_version) < 0 ||
		    gossip_cbor_head(&b, GOSSIP_MT_UINT, p->last_hb) < 0 ||
		    gossip_cbor_head(&b, GOSSIP_MT_ARRAY, (uint64_t)p->nint) < 0)
			goto out;
		for (int k = 0; k < p->nint; k++)
			if (gossip_cbor_head(&b, GOSSIP_MT_UINT, (uint64_t)p->intervals[(p->pos - p->nint + k + GOSSIP_PHI_WINDOW) % GOSSIP_PHI_WINDOW]) < 0)
				goto out;
		if (gossip_cbor_head(&b, GOSSIP_MT_UINT, (uint64_t)p->score) < 0 ||
		    gossip_cbor_head(&b, GOSSIP_MT_UINT, p->rejected) < 0 ||
		    gossip_cbor_str(&b, GOSSIP_MT_TSTR, p->why, strlen(p->why)) < 0)
			goto out;
	}
	/* The table is rebuilt from the store and the stream: no need to wait for the disk. */
	r = gossip_write_replace(gossip_path(dir, "peers"), b.p, b.len, 0644);
out:
	gossip_buf_free(&b);
	gossip_buf_free(&rec);
	return r;
}

void gossip_peers_keep(const struct gossip_peers *t, const char *dir)
{
	static struct gossip_trouble trouble;
	uint64_t missed;
	if (gossip_peers_save(t, dir) == 0) {
		if ((missed = gossip_trouble_over(&trouble)))
			gossip_warn("%s is saved again (after %llu tries)", gossip_path(dir, "peers"),
			            (unsigned long long)missed);
	} else if (gossip_trouble(&trouble, gossip_now_ms()))
		gossip_warn("%s; the table in %s is kept as it was, and saved again when it can be",
		            gossip_error(), gossip_path(dir, "peers"));
}

static int uint_at(struct gossip_cur *c, uint64_t *v)
{
	struct gossip_ev ev;
	if (gossip_cur_expect(c, GOSSIP_EV_UINT, &ev, "peer table") < 0)
		return -1;
	*v = ev.u;
	return 0;
}

/* A number the table keeps as a double (times in ms, a score): at most max, so that it
 * converts back to an integer exactly when the table is saved. */
static int double_at(struct gossip_cur *c, double *d, uint64_t max)
{
	uint64_t v;
	if (uint_at(c, &v) < 0 || v > max)
		return -1;
	*d = (double)v;
	return 0;
}

enum { MS_MAX = 1ULL << 40 };  /* 34 years of milliseconds: far past any interval */

/* The file does not say which entry is this node: the directory's key does. */
static void mark_self(struct gossip_peers *t, const char *dir)
{
	char name[64];
	t->has_self = gossip_pub_load(dir, t->self_pk, name, sizeof name) == 0;
	for (size_t i = 0; i < t->n; i++)
		t->v[i].self = t->has_self && !memcmp(t->v[i].pk, t->self_pk, 32);
}

int gossip_peers_load(struct gossip_peers *t, const char *dir)
{
	struct gossip_buf b = {0};
	const char *path = gossip_path(dir, "peers");
	memset(t, 0, sizeof *t);
	if (access(path, F_OK) != 0) {
		mark_self(t, dir);
		return 0;
	}
	if (gossip_read_file(path, 64u << 20, &b) < 0) {
		if (errno == EISDIR)
			goto bad;
		return -1;
	}
	struct gossip_cur c = {b.p, b.len, 0};
	struct gossip_ev ev;
	uint64_t k, v, pr = 0;
	if (gossip_cur_expect(&c, GOSSIP_EV_MAP, &ev, "peer table") < 0 || (ev.u != 5 && ev.u != 6) ||
	    uint_at(&c, &k) < 0 || uint_at(&c, &t->partition_since) < 0 || uint_at(&c, &k) < 0 ||
	    uint_at(&c, &t->saved_at) < 0 || uint_at(&c, &k) < 0 ||
	    double_at(&c, &t->interval_ms, MS_MAX) < 0 || uint_at(&c, &k) < 0 ||
	    double_at(&c, &t->min_std_ms, MS_MAX) < 0 || uint_at(&c, &k) < 0 ||
	    double_at(&c, &t->pause_ms, MS_MAX) < 0 ||
	    (ev.u == 6 && (uint_at(&c, &k) < 0 || uint_at(&c, &pr) < 0)))
		goto bad;
	t->probing = pr != 0;
	while (c.pos < c.n) {
		uint8_t pk[32];
		const uint8_t *rec;
		size_t reclen;
		if (gossip_cur_expect(&c, GOSSIP_EV_ARRAY, &ev, "peer") < 0 || ev.u != 11 ||
		    gossip_cur_expect(&c, GOSSIP_EV_BSTR, &ev, "peer") < 0 || ev.len != 32)
			goto bad;
		memcpy(pk, ev.data, 32);
		struct gossip_peer *p = gossip_peers_find(t, pk, 1);
		if (!p)
			goto bad;
		if (uint_at(&c, &v) < 0 || v > GOSSIP_P_LEFT)
			goto bad;
		p->state = (int)v;
		if (uint_at(&c, &p->since) < 0 || uint_at(&c, &p->member_version) < 0 ||
		    gossip_cur_expect(&c, GOSSIP_EV_BSTR, &ev, "peer") < 0)
			goto bad;
		rec = ev.data;
		reclen = ev.len;
		/* A record this version refuses (an older one took it: a name with a space)
		 * leaves out its peer, not the table; the store gives it again if it is good. */
		int refused = gossip_member_decode(rec, reclen, &p->info) < 0;
		if (uint_at(&c, &p->hb_version) < 0 ||
		    uint_at(&c, &p->last_hb) < 0 || gossip_cur_expect(&c, GOSSIP_EV_ARRAY, &ev, "peer") < 0 ||
		    ev.u > GOSSIP_PHI_WINDOW)
			goto bad;
		p->nint = (int)ev.u;
		for (int i = 0; i < p->nint; i++)
			if (double_at(&c, &p->intervals[i], MS_MAX) < 0)
				goto bad;
		p->pos = p->nint % GOSSIP_PHI_WINDOW;
		if (double_at(&c, &p->score, 100) < 0 || uint_at(&c, &p->rejected) < 0 ||
		    get_text(&c, p->why, sizeof p->why, "why", "") < 0)
			goto bad;
		if (refused) {
			size_t i = (size_t)(p - t->v);
			memmove(p, p + 1, (t->n - i - 1) * sizeof *p);
			t->n--;
		}
	}
	gossip_buf_free(&b);
	mark_self(t, dir);
	return 0;
bad:
	gossip_buf_free(&b);
	gossip_peers_free(t);
	/* A cache of what the store and the stream say: nothing is lost with it. */
	gossip_seterr("%s is not a peer table (gossip-peers observe writes it): remove it, and "
	              "gossip-peers observe (a running node) makes it again from the store", path);
	return -1;
}

/* ---- choosing ---- */

/* Live peers that may be picked: alive and in good standing. */
static int pickable(const struct gossip_peer *p, const struct gossip_peers_cfg *cfg)
{
	return p->state == GOSSIP_P_ALIVE && p->score >= cfg->score_min && !p->self;
}

size_t gossip_peers_pick(struct gossip_peers *t, const struct gossip_peers_cfg *cfg, size_t k,
                         struct gossip_peer **out)
{
	size_t n = 0, nd = 0;
	struct gossip_peer **live = malloc((t->n + 1) * sizeof *live);
	struct gossip_peer **dead = malloc((t->n + 1) * sizeof *dead);
	if (!live || !dead) {
		free(live);
		free(dead);
		return 0;
	}
	for (size_t i = 0; i < t->n; i++) {
		if (pickable(&t->v[i], cfg))
			live[n++] = &t->v[i];
		else if (!t->v[i].self && (t->v[i].state == GOSSIP_P_DEAD || t->v[i].state == GOSSIP_P_SUSPECT))
			dead[nd++] = &t->v[i];
	}
	/* K distinct live peers at random. */
	size_t got = 0;
	for (; got < k && got < n; got++) {
		size_t j = got + randombytes_uniform((uint32_t)(n - got));
		struct gossip_peer *x = live[got];
		live[got] = live[j];
		live[j] = x;
		out[got] = live[got];
	}
	/* Now and then one unreachable peer instead, so a healed partition reconnects; during
	 * a suspected partition, every other time. */
	double chance = t->partition_since ? 0.5 : cfg->dead_chance;
	if (nd && k > 0 && randombytes_uniform(1000000) < (uint32_t)(chance * 1000000)) {
		struct gossip_peer *d = dead[randombytes_uniform((uint32_t)nd)];
		if (got < k)
			out[got++] = d;
		else
			out[randombytes_uniform((uint32_t)got)] = d;
	}
	free(live);
	free(dead);
	return got;
}

const struct gossip_peer *gossip_peers_leader(const struct gossip_peers *t)
{
	const struct gossip_peer *best = NULL;
	/* Among the alive members (self included) tagged leader=eligible, else among all alive
	 * members: the lowest key. Everyone who sees the same membership agrees. */
	for (int pass = 0; pass < 2 && !best; pass++)
		for (size_t i = 0; i < t->n; i++) {
			const struct gossip_peer *p = &t->v[i];
			const char *tag = gossip_member_tag(&p->info, "leader");
			int eligible = tag && strcmp(tag, "eligible") == 0;
			if (p->state != GOSSIP_P_ALIVE || (pass == 0 && !eligible))
				continue;
			if (!best || memcmp(p->pk, best->pk, 32) < 0)
				best = p;
		}
	return best;
}

/* ---- the node on a directory ---- */

int gossip_node_running(const char *dir, long *pid)
{
	char buf[32] = "";
	*pid = 0;
	int fd = open(gossip_path(dir, "node.lock"), O_RDONLY | O_CLOEXEC);
	if (fd < 0 && errno == ENOENT)
		return 0;
	if (fd < 0) {
		gossip_seterr("%s: %s", gossip_path(dir, "node.lock"), strerror(errno));
		return -1;
	}
	/* A fresh open: a lock of ours elsewhere in this process would not count. Shared: it
	 * fails only on the node's exclusive lock, never on another probe's (gossip-node stop
	 * probes every 50 ms while the stopping node runs gossip-peers leave, which probes). */
	if (flock(fd, LOCK_SH | LOCK_NB) == 0) {
		close(fd);  /* and so released */
		return 0;
	}
	int err = errno;
	close(fd);
	if (err != EWOULDBLOCK) {
		gossip_seterr("%s: %s", gossip_path(dir, "node.lock"), strerror(err));
		return -1;
	}
	int pf = open(gossip_path(dir, "node.pid"), O_RDONLY | O_CLOEXEC);
	if (pf >= 0) {
		ssize_t k = read(pf, buf, sizeof buf - 1);
		buf[k > 0 ? k : 0] = 0;
		close(pf);
		char *end;
		long v = strtol(buf, &end, 10);
		if (end != buf && v > 0)
			*pid = v;
	}
	return 1;
}

/* ---- rumor: the dissemination trees ---- */

struct ranked {
	uint64_t key;
	const uint8_t *pk;
	struct gossip_peer *p;  /* NULL: the origin, not in the table */
};

static int ranked_cmp(const void *a, const void *b)
{
	const struct ranked *x = a, *y = b;
	if (x->key != y->key)
		return x->key < y->key ? -1 : 1;
	return memcmp(x->pk, y->pk, 32);
}

static uint64_t tree_key(int tree, const uint8_t origin[32], const uint8_t pk[32])
{
	uint8_t in[1 + 64], out[8];
	uint64_t v = 0;
	in[0] = (uint8_t)tree;
	memcpy(in + 1, origin, 32);
	memcpy(in + 33, pk, 32);
	crypto_generichash(out, sizeof out, in, sizeof in, NULL, 0);
	for (int i = 0; i < 8; i++)
		v = v << 8 | out[i];
	return v;
}

/* Order v (the members but the origin) for tree: the origin is rank 0, v[i] rank i+1. */
static void tree_order(struct ranked *v, size_t m, int tree, const uint8_t origin[32])
{
	for (size_t i = 0; i < m; i++)
		v[i].key = tree_key(tree, origin, v[i].pk);
	qsort(v, m, sizeof *v, ranked_cmp);
}

size_t gossip_peers_rumor(struct gossip_peers *t, const uint8_t origin[32], size_t k,
                          struct gossip_peer **out)
{
	return gossip_peers_rumor_from(t, origin, k, 0, out);
}

/* In the trees: alive or suspect, and self. A suspicion is one member's view and comes
 * and goes; membership (dead, left) is what every member comes to share, so trees over it
 * agree between members where trees over "alive" would not, and a member that ranks
 * itself differently sends to the wrong children in both. */
static int in_trees(const struct gossip_peer *p)
{
	return p->self || p->state == GOSSIP_P_ALIVE || p->state == GOSSIP_P_SUSPECT;
}

/* Lazy second tree: whether the first tree's path from the origin down to c (w0, ranked)
 * runs through a member this node holds suspect, below this node or where this node is
 * not on it: then the first tree may not bring c the message, and the second does. */
static int in_doubt(const struct ranked *w0, size_t c, size_t k)
{
	for (size_t r = (c - 1) / k; r > 0; r = (r - 1) / k) {
		const struct gossip_peer *p = w0[r - 1].p;
		if (p->self)
			return 0;  /* this node passes it down that path itself */
		if (p->state == GOSSIP_P_SUSPECT)
			return 1;
	}
	return 0;
}

size_t gossip_peers_rumor_from(struct gossip_peers *t, const uint8_t origin[32], size_t k,
                               int how, struct gossip_peer **out)
{
	int off_tree = how & GOSSIP_RUMOR_OFF_TREE;
	/* Lazy only on a settled table: for two intervals after a member changed state here
	 * (joined, died, left, turned suspect or back), the members' views may differ, and so
	 * their ranks; the second tree then sends as the eager one does. */
	if (how & GOSSIP_RUMOR_LAZY) {
		uint64_t now = gossip_now_ms(), settle = 2 * (uint64_t)(t->interval_ms > 0 ? t->interval_ms : 1000);
		for (size_t i = 0; i < t->n && (how & GOSSIP_RUMOR_LAZY); i++)
			if (!t->v[i].self && t->v[i].since && gossip_age_ms(now, t->v[i].since) < settle)
				how &= ~GOSSIP_RUMOR_LAZY;
	}
	size_t m = 0, got = 0, stride = t->n + 1;
	int found = t->has_self && !memcmp(t->self_pk, origin, 32);  /* self is the root */
	struct ranked *v = malloc(stride * GOSSIP_RUMOR_TREES * sizeof *v);
	if (!v || k == 0) {
		free(v);
		return 0;
	}
	for (size_t i = 0; i < t->n; i++) {
		if (!memcmp(t->v[i].pk, origin, 32)) {
			found |= t->v[i].self;
			continue;
		}
		if (in_trees(&t->v[i])) {
			v[m++] = (struct ranked){0, t->v[i].pk, &t->v[i]};
			found |= t->v[i].self;
		}
	}
	if (!found) {
		free(v);
		return 0;  /* no self in the table: nowhere in the trees */
	}
	/* An origin not in the trees here (a joiner, a member back from the dead), or a
	 * message that came off the trees: the trees need their root to start them, and it
	 * may not have; infect-and-die instead, to GOSSIP_RUMOR_TREES * k alive members at
	 * random. */
	struct gossip_peer *o = gossip_peers_find(t, origin, 0);
	if (off_tree || !(o && in_trees(o))) {
		size_t live = 0;
		for (size_t i = 0; i < m; i++)
			if (!v[i].p->self && v[i].p->state == GOSSIP_P_ALIVE)
				v[live++] = v[i];
		for (; got < GOSSIP_RUMOR_TREES * k && got < live; got++) {
			size_t j = got + randombytes_uniform((uint32_t)(live - got));
			struct ranked x = v[got];
			v[got] = v[j];
			v[j] = x;
			out[got] = v[got].p;
		}
		free(v);
		return got;
	}
	/* Each tree's order, made once: self's rank in it, then its children. Its parents
	 * are not left out of its children: the tree that has a member below self may be the
	 * only way to it (leaving it out for being above self in the other tree can cut it
	 * off), and that coincidence is rare (k/N). */
	for (int tree = 1; tree < GOSSIP_RUMOR_TREES; tree++)
		memcpy(v + tree * stride, v, m * sizeof *v);
	/* rank0[p - t->v]: p's rank in the first tree, for the lazy second's doubts. */
	size_t *rank0 = how & GOSSIP_RUMOR_LAZY ? malloc(t->n * sizeof *rank0) : NULL;
	if ((how & GOSSIP_RUMOR_LAZY) && !rank0) {
		free(v);
		return 0;
	}
	for (int tree = 0; tree < GOSSIP_RUMOR_TREES; tree++) {
		struct ranked *w = v + tree * stride;
		size_t rank = 0;  /* self's; 0: self is the origin, the root */
		tree_order(w, m, tree, origin);
		for (size_t i = 0; i < m; i++) {
			if (w[i].p->self)
				rank = i + 1;
			if (rank0 && tree == 0)
				rank0[w[i].p - t->v] = i + 1;
		}
		for (size_t c = k * rank + 1; c <= k * rank + k && c <= m; c++) {
			struct gossip_peer *p = w[c - 1].p;
			int dup = p->self || (rank0 && tree > 0 && !in_doubt(v, rank0[p - t->v], k));
			for (size_t j = 0; j < got && !dup; j++)
				dup = out[j] == p;
			if (!dup)
				out[got++] = p;
		}
	}
	free(rank0);
	free(v);
	return got;
}
