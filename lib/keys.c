/* keys.c: the node's Ed25519 identity (DIR/key, DIR/key.pub) and whom it trusts. */
#include "gossip.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum { KEY_B64_LEN = 44 };  /* base64 of 32 bytes */

static int name_ok(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n >= 64)
		return 0;
	for (; *s; s++)
		if ((unsigned char)*s <= ' ' || *s == 0x7f || *s == '#')
			return 0;
	return 1;
}

void gossip_short_id(char *out, const uint8_t pk[32])
{
	char b[KEY_B64_LEN + 1];
	gossip_b64(b, pk, 32);
	memcpy(out, b, 8);
	out[8] = 0;
}

void gossip_pub_line(char *out, size_t outlen, const uint8_t pk[32], const char *name)
{
	char b[KEY_B64_LEN + 1];
	gossip_b64(b, pk, 32);
	snprintf(out, outlen, "%s %s", b, name);
}

int gossip_identity_create(const char *dir, const char *name, int force,
                           struct gossip_identity *id)
{
	char line[128], *text = NULL;
	uint8_t *seed = NULL;
	int r = -1;

	if (!name_ok(name)) {
		gossip_seterr("name \"%s\" must be 1 to 63 printable characters, no spaces or #", name);
		return -1;
	}
	if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
		gossip_seterr("cannot create %s: %s", dir, strerror(errno));
		return -1;
	}
	if (!force && access(gossip_path(dir, "key"), F_OK) == 0) {
		gossip_seterr("%s exists: use -f to replace it (the old identity is then lost)",
		              gossip_path(dir, "key"));
		return -1;
	}
	memset(id, 0, sizeof *id);
	seed = sodium_malloc(32);
	text = sodium_malloc(KEY_B64_LEN + 2);
	id->sk = sodium_malloc(crypto_sign_SECRETKEYBYTES);
	if (!seed || !text || !id->sk) {
		gossip_seterr("out of memory");
		goto out;
	}
	randombytes_buf(seed, 32);
	crypto_sign_seed_keypair(id->pk, id->sk, seed);
	gossip_b64(text, seed, 32);
	text[KEY_B64_LEN] = '\n';
	snprintf(id->name, sizeof id->name, "%s", name);
	if (gossip_write_atomic(gossip_path(dir, "key"), text, KEY_B64_LEN + 1, 0600, !force) < 0)
		goto out;
	gossip_pub_line(line, sizeof line, id->pk, name);
	strcat(line, "\n");
	if (gossip_write_atomic(gossip_path(dir, "key.pub"), line, strlen(line), 0644, 0) < 0)
		goto out;
	r = 0;
out:
	sodium_free(seed);
	sodium_free(text);
	if (r < 0)
		gossip_identity_free(id);
	return r;
}

/* Split "KEY [NAME]" (already trimmed) into a key and an optional name. */
static int parse_pub(const char *s, uint8_t pk[32], char *name, size_t namelen)
{
	size_t k = strcspn(s, " \t");
	if (k != KEY_B64_LEN || gossip_unb64(pk, 32, s, k) < 0)
		return -1;
	s += k;
	s += strspn(s, " \t");
	if (name)
		snprintf(name, namelen, "%.*s", (int)strcspn(s, " \t\r\n"), s);
	return 0;
}

int gossip_pub_load(const char *dir, uint8_t pk[32], char *name, size_t namelen)
{
	struct gossip_buf b = {0};
	const char *path = gossip_path(dir, "key.pub");
	int r = -1;
	if (gossip_read_file(path, 1024, &b) < 0 || gossip_buf_put(&b, "", 1) < 0)
		goto out;
	if (parse_pub((char *)b.p, pk, name, namelen) < 0) {
		gossip_seterr("%s does not hold a public key line (KEY NAME)", path);
		goto out;
	}
	r = 0;
out:
	gossip_buf_free(&b);
	return r;
}

int gossip_identity_load(const char *dir, struct gossip_identity *id, int ignore_pub)
{
	const char *path = gossip_path(dir, "key");
	char *text = NULL;
	uint8_t *seed = NULL, pub[32];
	struct stat st;
	ssize_t k = 0;
	int r = -1, fd;

	memset(id, 0, sizeof *id);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
		if (errno == ENOENT)
			gossip_seterr("no key in %s: make one with gossip-keygen -d %s", dir, dir);
		else
			gossip_seterr("cannot open %s: %s", path, strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		gossip_seterr("%s is not a regular file", path);
		goto out;
	}
	if (st.st_mode & 077) {
		gossip_seterr("%s is open to group or others (mode %04o): run chmod 600 %s", path,
		              (unsigned)(st.st_mode & 07777), path);
		goto out;
	}
	text = sodium_malloc(128);
	seed = sodium_malloc(32);
	id->sk = sodium_malloc(crypto_sign_SECRETKEYBYTES);
	if (!text || !seed || !id->sk) {
		gossip_seterr("out of memory");
		goto out;
	}
	while ((k = read(fd, text, 127)) < 0 && errno == EINTR)
		;
	if (k < 0) {
		gossip_seterr("cannot read %s: %s", path, strerror(errno));
		goto out;
	}
	while (k > 0 && (text[k - 1] == '\n' || text[k - 1] == '\r' || text[k - 1] == ' '))
		k--;
	if (gossip_unb64(seed, 32, text, (size_t)k) < 0) {
		gossip_seterr("%s does not hold a key (base64 of a 32-byte seed)", path);
		goto out;
	}
	crypto_sign_seed_keypair(id->pk, id->sk, seed);
	if (!ignore_pub && access(gossip_path(dir, "key.pub"), F_OK) == 0) {
		if (gossip_pub_load(dir, pub, id->name, sizeof id->name) < 0)
			goto out;
		if (memcmp(pub, id->pk, 32) != 0) {
			gossip_seterr("%s/key.pub does not match %s: recreate it with gossip-keygen -y -d %s",
			              dir, path, dir);
			goto out;
		}
	}
	r = 0;
out:
	close(fd);
	sodium_free(text);
	sodium_free(seed);
	if (r < 0)
		gossip_identity_free(id);
	return r;
}

void gossip_identity_free(struct gossip_identity *id)
{
	sodium_free(id->sk);
	id->sk = NULL;
}

/* ---- trusted ---- */

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
		if (gossip_trust_find(t, sg.pk)) {
			gossip_seterr("%s line %u: the key is listed twice", name, lineno);
			free_signer(&sg);
			return -1;
		}
		struct gossip_signer *v = realloc(t->v, (t->n + 1) * sizeof *v);
		if (!v) {
			gossip_seterr("out of memory");
			free_signer(&sg);
			return -1;
		}
		t->v = v;
		t->v[t->n++] = sg;
		/* Keep it sorted for gossip_trust_find; lists are small and load once. */
		qsort(t->v, t->n, sizeof *t->v, cmp_signer);
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
	t->v = v;
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
