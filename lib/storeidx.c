/* storeidx.c: DIR/store.idx, an image of the store's index (store.h), so that opening a
 * large store reads its tables instead of decoding and hashing every message again.
 *
 * A cache, never the truth: the log (DIR/store) is. The image names the store file it was
 * made from (inode), how far it indexed it (end) and the hash of the last bytes before
 * end, and a hash of its own contents. An image that does not match the file (another
 * inode, a file now shorter than end or with other bytes before it, a torn or damaged
 * image, another version or machine) is not used: the store is indexed from its start,
 * as without one, and a writer replaces it. What was appended after end is indexed as
 * usual (catch_up). The image is written by a writer under the store's lock, to
 * store.idx.new and renamed over store.idx: a reader sees the old image or the new one.
 *
 * Layout (host byte order and struct sizes, both checked): the header below, then the
 * n entries of the slot table (placed again in a table of cap on reading), the origins,
 * their table, the registers (each in its on-disk form followed by its slot list), the
 * registers' table and the damage list. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <sodium.h>

#include "store.h"

enum {
	IDX_VERSION = 1,
	IDX_TAIL = 4096,  /* the store bytes before end that the image's hash names */
	IDX_MIN = 1 << 20  /* a store smaller than this is indexed fast enough without one */
};
static const char idx_magic[8] = "gsidx\r\n";

struct idx_head {
	char magic[8];
	uint32_t version, order;  /* order: 0x01020304 as the host writes it */
	uint32_t entry_size, reg_size, origin_size, damage_size;
	uint64_t ino, end;
	uint8_t tail[16];  /* BLAKE2b-128 of the store's bytes [end - IDX_TAIL, end) */
	uint64_t cap, n, norigins, ocap, nregs, rcap, nslots, ndmg;
	uint64_t live_bytes, dead_bytes;
	uint8_t body[16];  /* BLAKE2b-128 of everything after the header */
};

/* A register as stored: its slot list is in one run after all registers. */
struct idx_reg {
	uint8_t kid[16];
	uint64_t top_version, floor_version, floor_time;
	uint8_t floor_origin[32];
	uint32_t top_origin, top_len, nslots, pad;
};

static int tail_hash(int fd, uint64_t end, uint8_t out[16])
{
	uint8_t buf[IDX_TAIL];
	size_t n = end < IDX_TAIL ? (size_t)end : IDX_TAIL;
	if (pread(fd, buf, n, (off_t)(end - n)) != (ssize_t)n)
		return -1;
	crypto_generichash(out, 16, buf, n, NULL, 0);
	return 0;
}

/* The image's body as a stream: buffered both ways, and hashed as it passes. */
struct stream {
	int fd;
	crypto_generichash_state h;
	size_t pos, len;
	uint8_t buf[1 << 16];
};

static struct stream *stream_new(int fd)
{
	struct stream *s = malloc(sizeof *s);
	if (s) {
		s->fd = fd;
		s->pos = s->len = 0;
		crypto_generichash_init(&s->h, NULL, 0, 16);
	}
	return s;
}

static int get(struct stream *s, void *p, size_t n)
{
	uint8_t *q = p;
	for (size_t got = 0; got < n;) {
		if (s->pos == s->len) {
			ssize_t k = read(s->fd, s->buf, sizeof s->buf);
			if (k < 0 && errno == EINTR)
				continue;
			if (k <= 0)
				return -1;
			crypto_generichash_update(&s->h, s->buf, (size_t)k);
			s->pos = 0;
			s->len = (size_t)k;
		}
		size_t take = n - got < s->len - s->pos ? n - got : s->len - s->pos;
		memcpy(q + got, s->buf + s->pos, take);
		s->pos += take;
		got += take;
	}
	return 0;
}

static int flush(struct stream *s)
{
	for (size_t put = 0; put < s->len;) {
		ssize_t k = write(s->fd, s->buf + put, s->len - put);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return -1;
		put += (size_t)k;
	}
	crypto_generichash_update(&s->h, s->buf, s->len);
	s->len = 0;
	return 0;
}

static int put(struct stream *s, const void *p, size_t n)
{
	const uint8_t *q = p;
	while (n) {
		if (s->len == sizeof s->buf && flush(s) < 0)
			return -1;
		size_t take = n < sizeof s->buf - s->len ? n : sizeof s->buf - s->len;
		memcpy(s->buf + s->len, q, take);
		s->len += take;
		q += take;
		n -= take;
	}
	return 0;
}

/* A table's size: none yet, or a power of two. */
static int pow2(uint64_t x)
{
	return !(x & (x - 1));
}

static void *alloc(uint64_t n)
{
	return malloc(n ? (size_t)n : 1);
}

int store_index_load(struct gossip_store *st)
{
	struct idx_head h;
	struct stat sb, ib;
	uint8_t sum[16];
	struct gossip_entry *tab = NULL, e;
	struct gossip_origin_wm *origins = NULL;
	uint32_t *otab = NULL, *rtab = NULL;
	struct store_reg *regs = NULL;
	struct gossip_store_damage *dmg = NULL;
	struct stream *s = NULL;
	size_t built = 0;
	int ok = 0, fd;

	if (st->norigins || st->nregs || st->n || st->end || st->opts.verify_all)
		return 0;
	if ((fd = open(gossip_path(st->dir, "store.idx"), O_RDONLY | O_CLOEXEC)) < 0)
		return 0;
	if (fstat(fd, &ib) < 0 || fstat(st->fd, &sb) < 0 ||
	    pread(fd, &h, sizeof h, 0) != (ssize_t)sizeof h || memcmp(h.magic, idx_magic, 8) ||
	    h.version != IDX_VERSION || h.order != 0x01020304 ||
	    h.entry_size != sizeof(struct gossip_entry) || h.reg_size != sizeof(struct idx_reg) ||
	    h.origin_size != sizeof(struct gossip_origin_wm) ||
	    h.damage_size != sizeof(struct gossip_store_damage) || h.ino != st->ino ||
	    h.end > (uint64_t)sb.st_size || h.end < IDX_MIN || !pow2(h.cap) || h.n * 10 > h.cap * 7 ||
	    !pow2(h.ocap) || h.norigins > h.ocap / 2 || !pow2(h.rcap) || h.nregs > h.rcap / 2 ||
	    h.nslots > h.n || h.ndmg > 1u << 20)
		goto out;
	/* The size it must have, so that a torn image is refused before anything is read. */
	uint64_t body = h.n * sizeof *tab + h.ocap / 2 * sizeof *origins + h.ocap * sizeof *otab +
	                h.nregs * sizeof(struct idx_reg) + h.nslots * 16 + h.rcap * sizeof *rtab +
	                h.ndmg * sizeof *dmg;
	if ((uint64_t)ib.st_size != sizeof h + body || tail_hash(st->fd, h.end, sum) < 0 ||
	    memcmp(sum, h.tail, 16) || lseek(fd, sizeof h, SEEK_SET) < 0 || !(s = stream_new(fd)))
		goto out;
	if (!(tab = calloc(h.cap ? h.cap : 1, sizeof *tab)) ||
	    !(origins = alloc(h.ocap / 2 * sizeof *origins)) || !(otab = alloc(h.ocap * sizeof *otab)) ||
	    !(rtab = alloc(h.rcap * sizeof *rtab)) || !(regs = calloc(h.rcap / 2 + 1, sizeof *regs)) ||
	    !(dmg = alloc(h.ndmg * sizeof *dmg)))
		goto out;
	/* The entries, placed as the index places them (storing them as they lie in the
	 * table would write the empty places too). */
	for (uint64_t i = 0; i < h.n; i++) {
		if (get(s, &e, sizeof e) < 0 || !e.used)
			goto out;
		size_t at = store_home(e.slot, h.cap);
		while (tab[at].used)
			at = (at + 1) & (h.cap - 1);
		tab[at] = e;
	}
	if (get(s, origins, h.ocap / 2 * sizeof *origins) < 0 || get(s, otab, h.ocap * sizeof *otab) < 0)
		goto out;
	/* The registers, each with its own slot list (they grow one by one after this). */
	for (uint64_t i = 0, left = h.nslots; i < h.nregs; i++, built++) {
		struct store_reg *r = &regs[i];
		struct idx_reg x;
		if (get(s, &x, sizeof x) < 0 || x.nslots > left)
			goto out;
		memcpy(r->kid, x.kid, 16);
		r->top_version = x.top_version;
		r->top_origin = x.top_origin;
		r->top_len = x.top_len;
		r->floor_version = x.floor_version;
		r->floor_time = x.floor_time;
		memcpy(r->floor_origin, x.floor_origin, 32);
		r->nslots = r->slotcap = x.nslots;
		left -= x.nslots;
		if (r->nslots && (!(r->slots = malloc(r->nslots * 16)) || get(s, r->slots, r->nslots * 16) < 0))
			goto out;
	}
	if (get(s, rtab, h.rcap * sizeof *rtab) < 0 || get(s, dmg, h.ndmg * sizeof *dmg) < 0)
		goto out;
	crypto_generichash_final(&s->h, sum, 16);
	if (s->pos != s->len || memcmp(sum, h.body, 16))
		goto out;
	/* In place of the empty index the lock has just made. */
	free(st->tab);
	free(st->origins);
	free(st->otab);
	free(st->regs);
	free(st->rtab);
	free(st->dmg);
	st->tab = tab;
	st->cap = h.cap;
	st->n = h.n;
	st->origins = origins;
	st->otab = otab;
	st->norigins = h.norigins;
	st->ocap = h.ocap;
	st->regs = regs;
	st->rtab = rtab;
	st->nregs = h.nregs;
	st->rcap = h.rcap;
	st->dmg = dmg;
	st->ndmg = st->dmgcap = h.ndmg;
	st->live_bytes = h.live_bytes;
	st->dead_bytes = h.dead_bytes;
	st->end = st->idx_end = h.end;
	st->idx_ino = h.ino;
	st->epoch++;
	tab = NULL, origins = NULL, otab = rtab = NULL, regs = NULL, dmg = NULL;
	ok = 1;
out:
	if (regs)
		for (size_t i = 0; i <= built && i < h.nregs; i++)
			free(regs[i].slots);
	free(tab);
	free(origins);
	free(otab);
	free(rtab);
	free(regs);
	free(dmg);
	free(s);
	close(fd);
	return ok;
}

/* Write the image (the caller holds the store's lock, as a writer). */
static int save(struct gossip_store *st)
{
	char tmp[4200];
	struct idx_head h = {0};
	struct stream *s = NULL;
	struct gossip_origin_wm zero = {0};
	int fd, r = -1;
	uint64_t nslots = 0;

	memcpy(h.magic, idx_magic, 8);
	h.version = IDX_VERSION;
	h.order = 0x01020304;
	h.entry_size = sizeof(struct gossip_entry);
	h.reg_size = sizeof(struct idx_reg);
	h.origin_size = sizeof(struct gossip_origin_wm);
	h.damage_size = sizeof(struct gossip_store_damage);
	h.ino = st->ino;
	h.end = st->end;
	for (size_t i = 0; i < st->nregs; i++)
		nslots += st->regs[i].nslots;
	h.cap = st->cap, h.n = st->n, h.norigins = st->norigins, h.ocap = st->ocap;
	h.nregs = st->nregs, h.rcap = st->rcap, h.nslots = nslots, h.ndmg = st->ndmg;
	h.live_bytes = st->live_bytes, h.dead_bytes = st->dead_bytes;
	if (tail_hash(st->fd, st->end, h.tail) < 0)
		return -1;
	/* Never the room the store itself needs: written only with four times its size
	 * free. */
	struct statvfs fs;
	uint64_t size = sizeof h + h.n * sizeof(struct gossip_entry) +
	                (h.ocap / 2) * sizeof(struct gossip_origin_wm) + h.ocap * 4 +
	                h.nregs * sizeof(struct idx_reg) + nslots * 16 + h.rcap * 4 +
	                h.ndmg * sizeof(struct gossip_store_damage);
	if (fstatvfs(st->fd, &fs) < 0 || (uint64_t)fs.f_bavail * fs.f_frsize / 4 < size)
		return -1;
	snprintf(tmp, sizeof tmp, "%s/store.idx.new", st->dir);
	if ((fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600)) < 0)
		return -1;
	if (!(s = stream_new(fd)) || lseek(fd, sizeof h, SEEK_SET) < 0)
		goto out;
	for (size_t i = 0; i < st->cap; i++)
		if (st->tab[i].used && put(s, &st->tab[i], sizeof *st->tab) < 0)
			goto out;
	/* The origins' array holds ocap / 2 (what origin_id keeps room for): the unused
	 * places are written as zeros, so that the image does not depend on what memory held. */
	for (size_t i = 0; i < h.ocap / 2; i++)
		if (put(s, i < st->norigins ? &st->origins[i] : &zero, sizeof zero) < 0)
			goto out;
	if (put(s, st->otab, st->ocap * sizeof *st->otab) < 0)
		goto out;
	for (size_t i = 0; i < st->nregs; i++) {
		const struct store_reg *g = &st->regs[i];
		struct idx_reg x = {0};
		memcpy(x.kid, g->kid, 16);
		x.top_version = g->top_version;
		x.floor_version = g->floor_version;
		x.floor_time = g->floor_time;
		memcpy(x.floor_origin, g->floor_origin, 32);
		x.top_origin = g->top_origin;
		x.top_len = g->top_len;
		x.nslots = g->nslots;
		if (put(s, &x, sizeof x) < 0 || put(s, g->slots, g->nslots * 16) < 0)
			goto out;
	}
	if (put(s, st->rtab, st->rcap * sizeof *st->rtab) < 0)
		goto out;
	for (size_t i = 0; i < st->ndmg; i++) {
		struct gossip_store_damage d;
		memset(&d, 0, sizeof d);  /* its padding too */
		d.off = st->dmg[i].off, d.len = st->dmg[i].len, d.torn = st->dmg[i].torn;
		if (put(s, &d, sizeof d) < 0)
			goto out;
	}
	if (flush(s) < 0)
		goto out;
	crypto_generichash_final(&s->h, h.body, 16);
	/* No fsync: a crash may leave zeros or half an image, which its hashes refuse. */
	if (pwrite(fd, &h, sizeof h, 0) != (ssize_t)sizeof h || close(fd) < 0) {
		fd = -1;
		goto out;
	}
	fd = -1;
	if (rename(tmp, gossip_path(st->dir, "store.idx")) < 0)
		goto out;
	r = 0;
out:
	free(s);
	if (fd >= 0)
		close(fd);
	if (r < 0)
		unlink(tmp);
	return r;
}

void store_index_save(struct gossip_store *st, uint64_t read, int closing)
{
	if (st->opts.readonly || !st->locked || st->fd < 0 || st->end < IDX_MIN)
		return;
	uint64_t have = st->idx_ino == st->ino ? st->idx_end : 0;
	uint64_t lacks = st->end >= have ? st->end - have : st->end;
	uint64_t want = st->end / 16 > IDX_MIN ? st->end / 16 : IDX_MIN;
	if (lacks < want || (!closing && read < want))
		return;
	/* A failure is ignored, as DIR/store.sum's are: the store is intact, and opening it
	 * reads it whole until an image can be written. Not tried again before the store
	 * has grown as much again, written or not. */
	(void)save(st);
	st->idx_ino = st->ino;
	st->idx_end = st->end;
}
