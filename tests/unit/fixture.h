/* fixture.h: what the library's unit tests make their inputs with: identities from fixed
 * seeds, signed messages, and state directories of their own. */
#ifndef FIXTURE_H
#define FIXTURE_H
#include "gossip.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static inline struct gossip_identity ident(unsigned char fill)
{
	struct gossip_identity id = {0};
	unsigned char seed[32];
	memset(seed, fill, 32);
	id.sk = sodium_malloc(64);
	crypto_sign_seed_keypair(id.pk, id.sk, seed);
	strcpy(id.name, "t");
	return id;
}

/* A fresh random identity named name. */
static inline struct gossip_identity named_ident(const char *name)
{
	struct gossip_identity id = {0};
	id.sk = sodium_malloc(64);
	crypto_sign_keypair(id.pk, id.sk);
	snprintf(id.name, sizeof id.name, "%s", name);
	return id;
}

/* Append to b a message by id; value NULL: none. Returns its length (0 on error). */
static inline size_t sign_msg(struct gossip_buf *b, const struct gossip_identity *id, unsigned type,
                              const char *key, const char *value, uint64_t version, uint64_t time)
{
	struct gossip_msg m = {0};
	size_t before = b->len;
	m.type = type;
	m.version = version;
	m.time = time;
	m.key = (const uint8_t *)key;
	m.keylen = key ? strlen(key) : 0;
	if (value) {
		m.value = (const uint8_t *)value;
		m.valuelen = strlen(value);
		m.has_value = 1;
		m.value_text = 1;
	}
	return gossip_msg_sign(b, &m, id) == 0 ? b->len - before : 0;
}

/* A fresh directory under /tmp (exits on failure); rm_dir removes it. */
static inline char *temp_dir(const char *name)
{
	static char dir[256];
	snprintf(dir, sizeof dir, "/tmp/gossip-%s.XXXXXX", name);
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		exit(2);
	}
	return dir;
}

static inline void rm_dir(const char *dir)
{
	char cmd[512];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "# could not remove %s\n", dir);
}

/* How many events name DIR/events holds about member (NULL: about the cluster); with at,
 * also when the first of them happened (0: never). */
static inline int count_events(const char *dir, const char *name, const char *member, uint64_t *at)
{
	struct gossip_event_reader r;
	struct gossip_event e;
	int n = 0;
	if (at)
		*at = 0;
	gossip_event_reader_init(&r, dir, 1);
	while (gossip_event_reader_next(&r, &e) == 1)
		if (!strcmp(e.event, name) && !strcmp(e.name, member ? member : "")) {
			if (at && !n)
				*at = e.time;
			n++;
		}
	gossip_event_reader_free(&r);
	return n;
}

/* "BASE64 NAME\n" for a trusted file. */
static inline void trusted_line(char *out, size_t n, const struct gossip_identity *id, const char *name)
{
	gossip_pub_line(out, n, id->pk, name);
	strcat(out, "\n");
}
#endif
