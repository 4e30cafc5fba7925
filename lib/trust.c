/* trust.c: whom a node trusts (DIR/trusted) and to write what; the verdict on one
 * message (decoded, authorized, verified); rejections noted for reputation. */
#include "gossip.h"

#include <fcntl.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

enum { KEY_B64_LEN = 44 };  /* base64 of 32 bytes */

static int cmp_signer(const void *a, const void *b)
{
	return memcmp(((const struct gossip_signer *)a)->pk, ((const struct gossip_signer *)b)->pk, 32);
}

static void free_signer(struct gossip_signer *s)
{
	free(s->name);
	for (size_t i = 0; i < s->nprefixes; i++)
		free(s->prefixes[i]);
	free(s->prefixes);
}

/* Options are comma-separated, like authorized_keys: prefix=P may be repeated. */
static int parse_options(struct gossip_signer *s, char *opt)
{
	for (char *o = strtok(opt, ","); o; o = strtok(NULL, ",")) {
		if (strncmp(o, "prefix=", 7) != 0 || !o[7]) {
			gossip_seterr("unknown option \"%s\" (known: prefix=KEYPREFIX)", o);
			return -1;
		}
		char **v = realloc(s->prefixes, (s->nprefixes + 1) * sizeof *v);
		if (!v || !(v[s->nprefixes] = strdup(o + 7))) {
			if (v)
				s->prefixes = v;
			gossip_seterr("out of memory");
			return -1;
		}
		s->prefixes = v;
		s->nprefixes++;
	}
	return 0;
}

static int parse_line(struct gossip_signer *s, char *line)
{
	char *tok[4] = {NULL};
	int n = 0;
	for (char *t = strtok(line, " \t"); t; t = strtok(NULL, " \t"))
		if (n < 4)
			tok[n++] = t;
		else
			n++;
	int k = 0;
	if (n == 0) {
		gossip_seterr("empty line");
		return -1;
	}
	if (strlen(tok[0]) != KEY_B64_LEN || gossip_unb64(s->pk, 32, tok[0], KEY_B64_LEN) < 0)
		k = 1;  /* options first */
	if (k && (n < 2 || strlen(tok[1]) != KEY_B64_LEN ||
	          gossip_unb64(s->pk, 32, tok[1], KEY_B64_LEN) < 0)) {
		gossip_seterr("no public key (44 characters of base64, as gossip-keygen prints it)");
		return -1;
	}
	if (n > k + 2) {
		gossip_seterr("unexpected text after the name");
		return -1;
	}
	if (k) {
		/* strtok is done with the line; parse_options may use it again. */
		char *opt = strdup(tok[0]);
		int r = opt ? parse_options(s, opt) : -1;
		free(opt);
		if (r < 0)
			return -1;
	}
	if (n > k + 1 && !(s->name = strdup(tok[k + 1]))) {
		gossip_seterr("out of memory");
		return -1;
	}
	return 0;
}

int gossip_trust_parse(struct gossip_trust *t, const char *text, size_t len, const char *name)
{
	unsigned lineno = 0;
	size_t i = 0;
	while (i < len) {
		size_t e = i;
		while (e < len && text[e] != '\n')
			e++;
		char line[1024];
		lineno++;
		if (e - i >= sizeof line) {
			gossip_seterr("%s line %u: line too long", name, lineno);
			return -1;
		}
		memcpy(line, text + i, e - i);
		line[e - i] = 0;
		i = e + 1;
		char *s = line + strspn(line, " \t\r");
		s[strcspn(s, "\r")] = 0;
		if (!*s || *s == '#')
			continue;
		struct gossip_signer sg = {0};
		if (parse_line(&sg, s) < 0) {
			char why[512];
			snprintf(why, sizeof why, "%s", gossip_error());
			gossip_seterr("%s line %u: %s", name, lineno, why);
			free_signer(&sg);
			return -1;
		}
		/* Room doubles, and the list is sorted once at the end: a trusted file of
		 * many thousand lines loads in linear time and one sort. */
		if ((t->n & (t->n - 1)) == 0) {
			struct gossip_signer *v = realloc(t->v, (t->n ? 2 * t->n : 1) * sizeof *v);
			if (!v) {
				gossip_seterr("out of memory");
				free_signer(&sg);
				return -1;
			}
			t->v = v;
		}
		sg.line = lineno;
		t->v[t->n++] = sg;
	}
	if (t->n > 1)  /* t->v is NULL when no line names a signer */
		qsort(t->v, t->n, sizeof *t->v, cmp_signer);
	for (size_t k = 1; k < t->n; k++)
		if (!memcmp(t->v[k - 1].pk, t->v[k].pk, 32)) {
			unsigned later = t->v[k].line > t->v[k - 1].line ? t->v[k].line : t->v[k - 1].line;
			gossip_seterr("%s line %u: the key is listed twice", name, later);
			return -1;
		}
	return 0;
}

int gossip_trust_load(struct gossip_trust *t, const char *dir)
{
	struct gossip_buf b = {0};
	const char *path = gossip_path(dir, "trusted");
	uint8_t pk[32];
	char name[64];
	memset(t, 0, sizeof *t);
	if (access(path, F_OK) == 0) {
		if (gossip_read_file(path, 16u << 20, &b) < 0 ||
		    gossip_trust_parse(t, (char *)b.p, b.len, path) < 0) {
			gossip_buf_free(&b);
			gossip_trust_free(t);
			return -1;
		}
		gossip_buf_free(&b);
	}
	if (access(gossip_path(dir, "key.pub"), F_OK) != 0)
		return 0;
	if (gossip_pub_load(dir, pk, name, sizeof name) < 0) {
		gossip_trust_free(t);
		return -1;
	}
	struct gossip_signer *self = (struct gossip_signer *)gossip_trust_find(t, pk);
	if (self) {
		self->self = 1;
		return 0;
	}
	struct gossip_signer *v = realloc(t->v, (t->n + 1) * sizeof *v);
	if (!v) {
		gossip_seterr("out of memory");
		gossip_trust_free(t);
		return -1;
	}
	t->v = v;  /* no longer a power of two: nothing is added after this */
	memset(&t->v[t->n], 0, sizeof *t->v);
	memcpy(t->v[t->n].pk, pk, 32);
	t->v[t->n].self = 1;
	t->v[t->n].name = *name ? strdup(name) : NULL;
	t->n++;
	qsort(t->v, t->n, sizeof *t->v, cmp_signer);
	return 0;
}

const struct gossip_signer *gossip_trust_find(const struct gossip_trust *t, const uint8_t pk[32])
{
	struct gossip_signer key;
	if (!t->n)
		return NULL;
	memcpy(key.pk, pk, 32);
	return bsearch(&key, t->v, t->n, sizeof *t->v, cmp_signer);
}

int gossip_trust_has(void *t, const uint8_t pk[32])
{
	return gossip_trust_find(t, pk) != NULL;
}

void gossip_trust_id(const struct gossip_trust *t, uint8_t id[16])
{
	crypto_generichash_state h;
	crypto_generichash_init(&h, (const uint8_t *)"gossip trust id", 15, 16);
	for (size_t i = 0; i < t->n; i++)  /* sorted by key (gossip_trust_find) */
		crypto_generichash_update(&h, t->v[i].pk, 32);
	crypto_generichash_final(&h, id, 16);
}

const struct gossip_signer *gossip_trust_named(const struct gossip_trust *t, const char *name)
{
	for (size_t i = 0; i < t->n; i++)
		if (t->v[i].name && strcmp(t->v[i].name, name) == 0)
			return &t->v[i];
	return NULL;
}

int gossip_trust_allows(const struct gossip_signer *s, const uint8_t *key, size_t keylen)
{
	if (!s->prefixes)
		return 1;
	for (size_t i = 0; i < s->nprefixes; i++) {
		size_t n = strlen(s->prefixes[i]);
		if (n <= keylen && memcmp(key, s->prefixes[i], n) == 0)
			return 1;
	}
	return 0;
}

void gossip_trust_free(struct gossip_trust *t)
{
	for (size_t i = 0; i < t->n; i++)
		free_signer(&t->v[i]);
	free(t->v);
	t->v = NULL;
	t->n = 0;
}

const char *gossip_verdict_name(enum gossip_verdict v)
{
	static const char *const names[] = {"ok", "malformed", "bad signature", "untrusted signer",
	                                    "key not allowed", "from the future"};
	return names[v];
}

int gossip_verdict_proven(enum gossip_verdict v)
{
	return v == GOSSIP_V_FORBIDDEN || v == GOSSIP_V_FUTURE;
}

static const char *who(const struct gossip_signer *s, char id[9])
{
	gossip_short_id(id, s->pk);
	return s->name ? s->name : id;
}

static enum gossip_verdict lookup(const struct gossip_msg *m, const struct gossip_trust *t,
                                  const struct gossip_signer **signer)
{
	*signer = gossip_trust_find(t, m->origin);
	if (!*signer) {
		char id[9];
		gossip_short_id(id, m->origin);
		gossip_seterr("untrusted signer %s: its key is not in trusted", id);
		return GOSSIP_V_UNTRUSTED;
	}
	return GOSSIP_V_OK;
}

/* What a trusted signer may do: write within its prefix=, at times and versions that
 * are not further ahead of this node's clock than an honest signer's can be. */
static enum gossip_verdict allowed(const struct gossip_msg *m, const struct gossip_trust *t,
                                   const struct gossip_signer *s)
{
	char id[9];
	/* A probe writes nothing and carries no version: any trusted signer may send one. */
	if (gossip_msg_is_probe(m))
		return GOSSIP_V_OK;
	if (!gossip_trust_allows(s, m->key, m->keylen)) {
		gossip_seterr("signer %s may not write this key: it is outside its prefix= in trusted",
		              who(s, id));
		return GOSSIP_V_FORBIDDEN;
	}
	uint64_t now = gossip_now_ms(), skew = t->max_skew_ms ? t->max_skew_ms : GOSSIP_MAX_SKEW_MS;
	if (m->time > now + skew) {
		gossip_seterr("message from the future: signer %s's time is %llu s ahead of this "
		              "node's clock, more than the %llu s allowed (--max-skew)", who(s, id),
		              (unsigned long long)((m->time - now) / 1000), (unsigned long long)(skew / 1000));
		return GOSSIP_V_FUTURE;
	}
	if (m->version > now + skew + GOSSIP_VERSION_LEAD_MS) {
		gossip_seterr("message from the future: signer %s's version %llu leads this node's "
		              "clock by %llu s, more than --max-skew (%llu s) and %d s allow", who(s, id),
		              (unsigned long long)m->version,
		              (unsigned long long)((m->version - now) / 1000),
		              (unsigned long long)(skew / 1000), GOSSIP_VERSION_LEAD_MS / 1000);
		return GOSSIP_V_FUTURE;
	}
	return GOSSIP_V_OK;
}

enum gossip_verdict gossip_authorize(const struct gossip_msg *m, const struct gossip_trust *t,
                                     const struct gossip_signer **signer)
{
	enum gossip_verdict v = lookup(m, t, signer);
	return v != GOSSIP_V_OK ? v : allowed(m, t, *signer);
}

enum gossip_verdict gossip_check_msg(const struct gossip_msg *m, const struct gossip_trust *t,
                                     const struct gossip_signer **signer)
{
	enum gossip_verdict v;
	/* Trust is a lookup, a signature check is not: strangers cost no crypto. The
	 * signature comes before what the signer may do, so that a refusal for what it did
	 * is proven by its own signature. */
	if ((v = lookup(m, t, signer)) != GOSSIP_V_OK)
		return v;
	if (gossip_msg_verify(m) < 0) {
		char id[9];
		/* (A check that could not run, out of memory, says so: it is no forgery.) */
		if (!strstr(gossip_error(), "out of memory"))
			gossip_seterr("bad signature: it does not verify with the kid's key (%s)",
			              who(*signer, id));
		return GOSSIP_V_BADSIG;
	}
	return allowed(m, t, *signer);
}

enum gossip_verdict gossip_check(const uint8_t *p, size_t n, const struct gossip_trust *t,
                                 struct gossip_msg *m, const struct gossip_signer **signer)
{
	*signer = NULL;
	if (gossip_msg_decode(p, n, m) < 0)
		return GOSSIP_V_MALFORMED;
	return gossip_check_msg(m, t, signer);
}

/* ---- reputation: rejects and evidence ---- */

/* One "TIME WHO REASON" line in DIR/rejects, rotated to rejects.1 at gossip_log_max().
 * Reputation is advisory: a full disk must not stop the node, only say so, once a
 * minute at most. */
static void reject_line(const char *dir, const char *whom, const char *reason)
{
	static struct gossip_trouble trouble;
	char line[512];
	uint64_t lost;
	int n = snprintf(line, sizeof line, "%llu %s %s\n", (unsigned long long)gossip_now_ms(), whom,
	                 reason);
	if (n >= (int)sizeof line)
		n = (int)sizeof line - 1, line[n - 1] = '\n';
	if (gossip_log_append(gossip_path(dir, "rejects"), line, (size_t)n) == 0) {
		if ((lost = gossip_trouble_over(&trouble)))
			gossip_warn("rejects: %s is written again (%llu rejections were not noted)",
			            gossip_path(dir, "rejects"), (unsigned long long)lost);
	} else if (gossip_trouble(&trouble, gossip_now_ms()))
		gossip_warn("rejects: %s; rejections are not noted until it can be written",
		            gossip_error());
}

static void note_reject(const char *dir, const uint8_t origin[32], const char *reason)
{
	static struct gossip_rate rate;
	char b64[45];
	if (!gossip_rate_allow(&rate, 20, gossip_now_ms(), NULL))
		return;
	gossip_b64(b64, origin, 32);
	reject_line(dir, b64, reason);
}

void gossip_note_reject_addr(const char *dir, const char *addr, const char *reason)
{
	static struct gossip_rate rate;
	char a[320];
	size_t k = 0;
	if (!gossip_rate_allow(&rate, 20, gossip_now_ms(), NULL))
		return;
	/* One word that is never a key: base64 has no ':'. */
	if (!strchr(addr, ':'))
		k = (size_t)snprintf(a, sizeof a, "addr:");
	for (; *addr && k + 1 < sizeof a; addr++)
		a[k++] = (unsigned char)*addr <= ' ' || *addr == 0x7f ? '_' : *addr;
	a[k] = 0;
	reject_line(dir, a, reason);
}

/* Evidence is read whole to find a proof in it: keep it small. A signer is out of every
 * pick after a few proofs; 256 KiB holds about a thousand. */
enum { EVIDENCE_MAX = 256 << 10, RECENT = 1024 };

/* 1 when DIR/evidence (open on fd, locked) holds item already. */
static int evidence_has(int fd, const uint8_t *item, size_t n)
{
	struct stat sb;
	uint8_t *buf;
	int found = 0;
	if (fstat(fd, &sb) < 0 || sb.st_size == 0)
		return 0;
	size_t size = (size_t)sb.st_size;
	if (!(buf = malloc(size)))
		return 0;
	if (pread(fd, buf, size, 0) == (ssize_t)size) {
		size_t at = 0, len;
		while (!found && at < size &&
		       gossip_cbor_scan(buf + at, size - at, &gossip_any_limits, NULL, &len) ==
		               GOSSIP_SCAN_OK) {
			found = len == n && memcmp(buf + at, item, n) == 0;
			at += len;
		}
	}
	free(buf);
	return found;
}

int gossip_note_proof(const char *dir, const uint8_t origin[32], const char *reason,
                      const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
	/* Proofs this process has noted or found noted, by hash: a replayed proof costs
	 * nothing more. */
	static uint8_t recent[RECENT][16];
	static struct gossip_rate full_rate;
	struct gossip_buf item = {0};
	uint8_t h[16], ha[16], hb[16];
	int r = 0;
	if (b) {
		/* The pair in one order, whichever came first: the lower hash first. */
		crypto_generichash(ha, 16, a, alen, NULL, 0);
		crypto_generichash(hb, 16, b, blen, NULL, 0);
		if (memcmp(hb, ha, 16) < 0) {
			const uint8_t *p = a;
			size_t n = alen;
			a = b, alen = blen, b = p, blen = n;
		}
	}
	if (gossip_cbor_head(&item, GOSSIP_MT_ARRAY, b ? 3 : 2) < 0 ||
	    gossip_cbor_str(&item, GOSSIP_MT_TSTR, reason, strlen(reason)) < 0 ||
	    gossip_buf_put(&item, a, alen) < 0 || (b && gossip_buf_put(&item, b, blen) < 0)) {
		gossip_buf_free(&item);
		return 0;
	}
	crypto_generichash_state hs;  /* the proof in this directory */
	crypto_generichash_init(&hs, NULL, 0, 16);
	crypto_generichash_update(&hs, (const uint8_t *)dir, strlen(dir) + 1);
	crypto_generichash_update(&hs, item.p, item.len);
	crypto_generichash_final(&hs, h, 16);
	uint32_t slot;
	memcpy(&slot, h, 4);
	slot %= RECENT;
	if (memcmp(recent[slot], h, 16) == 0)
		goto out;
	int fd = open(gossip_path(dir, "evidence"), O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (fd < 0)
		goto out;
	struct stat sb;
	if (flock(fd, LOCK_EX) < 0 || fstat(fd, &sb) < 0) {
		/* Not kept, not charged. */
	} else if ((uint64_t)sb.st_size + item.len > EVIDENCE_MAX) {
		if (gossip_rate_allow(&full_rate, 1, gossip_now_ms(), NULL))
			gossip_warn("%s/evidence is full (256 KiB): a proof (%s) is neither kept nor "
			            "charged; move the file away to keep more", dir, reason);
	} else if (!evidence_has(fd, item.p, item.len)) {
		if (gossip_write_all(fd, item.p, item.len) == 0) {
			note_reject(dir, origin, reason);
			r = 1;
		} else if (ftruncate(fd, sb.st_size) < 0) {
			/* Evidence is advisory too; a torn tail only hides what follows it. */
		}
	}
	close(fd);  /* and the lock with it */
	memcpy(recent[slot], h, 16);
out:
	gossip_buf_free(&item);
	return r;
}
