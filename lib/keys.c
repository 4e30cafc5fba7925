/* keys.c: the node's Ed25519 identity (DIR/key, DIR/key.pub). */
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

/* 1 when DIR/trusted names pk: a key this node trusts is one it had. */
static int trusted_names(const char *dir, const uint8_t pk[32])
{
	struct gossip_buf b = {0};
	char k[KEY_B64_LEN + 1];
	int r = 0;
	gossip_b64(k, pk, 32);
	if (gossip_read_file(gossip_path(dir, "trusted"), 16u << 20, &b) == 0 &&
	    gossip_buf_put(&b, "", 1) == 0)
		r = strstr((char *)b.p, k) != NULL;
	gossip_buf_free(&b);
	return r;
}

/* key and key.pub disagree: one of them was changed. Which, DIR/trusted may tell (a node
 * trusts itself): the fix for the one is ruin for the other. */
static void key_mismatch(const char *dir, const char *keypath, const uint8_t pk[32],
                         const uint8_t pub[32])
{
	char path[4200];
	snprintf(path, sizeof path, "%s", keypath);  /* gossip_path's buffer is reused */
	int key_trusted = trusted_names(dir, pk), pub_trusted = trusted_names(dir, pub);
	if (key_trusted && !pub_trusted)
		gossip_seterr("%s/key.pub does not match %s (which %s/trusted names): key.pub is damaged; "
		              "recreate it with gossip-keygen -y -d %s >%s/key.pub",
		              dir, path, dir, dir, dir);
	else if (pub_trusted && !key_trusted)
		gossip_seterr("%s does not match %s/key.pub (which %s/trusted names): the key is damaged; "
		              "put back a copy, or make a new identity (gossip-keygen -f -d %s) for the "
		              "cluster to trust",
		              path, dir, dir, dir);
	else
		gossip_seterr("%s/key.pub does not match %s: one of them is damaged; if the key is whole "
		              "(its public key is the one peers trust), recreate key.pub with "
		              "gossip-keygen -y -d %s >%s/key.pub, else put back a copy of the key",
		              dir, path, dir, dir);
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
			key_mismatch(dir, path, id->pk, pub);
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
