/* storekeys.c: DIR/store.keys, where each key's rows lie in DIR/store (an LMDB file).
 *
 * The log stays the truth; this file is an index of it that a query uses to read one
 * key's rows without reading the store (gossip(7), THE KEY INDEX). It holds, for each
 * key id (store.c's key_id), the offsets of the rows that are current in their slots,
 * the offsets of the watermark records, and a meta record: which store file it indexes
 * (inode), how far (end), and a hash of the 64 bytes before end. Only writers write it,
 * under the store's exclusive lock; readers read it under the shared one. That lock is
 * what keeps LMDB's readers and writer apart (MDB_NOLOCK): no lock file of LMDB's own. */
#include "store.h"

#include <errno.h>
#include <lmdb.h>
#include <setjmp.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

struct store_keys {
	MDB_env *env;
	MDB_dbi rows, wms, meta;
	uint64_t ino;  /* of DIR/store.keys when opened */
	int faulted;  /* LMDB faulted on its pages: not used again */
};

/* The transaction under way (one at a time), for the guard to end after a fault. */
static MDB_txn *live_txn;

static int tb(MDB_env *env, unsigned flags, MDB_txn **txn)
{
	int rc = mdb_txn_begin(env, NULL, flags, txn);
	live_txn = rc ? NULL : *txn;
	return rc;
}

static void ta(MDB_txn *txn)
{
	mdb_txn_abort(txn);
	live_txn = NULL;
}

static int tc(MDB_txn *txn)
{
	int rc = mdb_txn_commit(txn);
	live_txn = NULL;
	return rc;
}

/* This boot of the system (zeros when unknown): an index is written without fsync
 * (MDB_NOSYNC), so only one written since this boot is known whole; a crash of the
 * system may have left an older one torn. */
static void boot_id(uint8_t id[16])
{
	char b[64] = {0};
	FILE *f = fopen("/proc/sys/kernel/random/boot_id", "re");
	memset(id, 0, 16);
	if (f && fgets(b, sizeof b, f) && strlen(b) >= 32)
		crypto_generichash(id, 16, (const uint8_t *)b, strlen(b), NULL, 0);
	if (f)
		fclose(f);
}

void store_keys_boot(uint8_t id[16])
{
	static uint8_t cached[16];
	static int done;
	if (!done) {
		boot_id(cached);
		done = 1;
	}
	memcpy(id, cached, 16);
}

/* Room for the map: the file grows only as it is written. */
#define KEYS_MAP ((size_t)1 << (sizeof(size_t) >= 8 ? 36 : 30))
static const uint8_t meta_key[] = "meta";
static const uint8_t magic[4] = {'G', 'K', 'I', '1'};


static int fail(int rc, const char *what)
{
	gossip_seterr("store: %s: %s", what, mdb_strerror(rc));
	return -1;
}

void store_keys_close(struct store_keys *k)
{
	if (!k)
		return;
	if (k->env)  /* NULL once a fault has ended it */
		mdb_env_close(k->env);
	free(k);
}

void store_keys_forget(struct store_keys *k)
{
	mdb_filehandle_t fd;
	MDB_envinfo info;
	if (!k)
		return;
	if (k->env && mdb_env_get_fd(k->env, &fd) == 0)
		close(fd);
	/* Its map (KEYS_MAP of address space) too, which the child's own would need on a
	 * 32-bit system. */
	if (k->env && mdb_env_info(k->env, &info) == 0 && info.me_mapaddr)
		munmap(info.me_mapaddr, info.me_mapsize);
	free(k);
}

static void on_assert(MDB_env *env, const char *msg);

static struct store_keys *open_raw(const char *dir, const char *name, int readonly,
                                   struct store_keys **made)
{
	char path[4200];
	snprintf(path, sizeof path, "%s", gossip_path(dir, name));
	struct store_keys *k = calloc(1, sizeof *k);
	struct stat sb;
	MDB_txn *txn = NULL;
	int rc;
	if (!k) {
		gossip_seterr("store: out of memory");
		return NULL;
	}
	/* Read only when it is a file of this user's that no one else may write: LMDB trusts
	 * its file, so a query of a store that another user can write reads the store whole
	 * (whose messages it verifies) rather than an index that user could have made. */
	int exists = lstat(path, &sb) == 0;
	if (exists && (!S_ISREG(sb.st_mode) || sb.st_uid != geteuid() ||
	               (sb.st_mode & (S_IWGRP | S_IWOTH)))) {
		gossip_seterr("store: %s: not a file of this user's alone", path);
		free(k);
		return NULL;
	}
	if (readonly && lstat(path, &sb) < 0) {
		gossip_seterr("store: %s: %s", path, strerror(errno));
		free(k);
		return NULL;
	}
	if ((rc = mdb_env_create(&k->env)) != 0) {
		fail(rc, path);
		free(k);
		return NULL;
	}
	*made = k;  /* for the guard: what to leave behind if LMDB faults */
	mdb_env_set_assert(k->env, on_assert);  /* a failed check of its pages, as a fault */
	uint8_t boot[16], zero[16] = {0};
	store_keys_boot(boot);
	/* Without a boot id to tell a crash, each write is synced (the meta page lazily). */
	unsigned flags = MDB_NOSUBDIR | MDB_NOLOCK | MDB_NORDAHEAD | (readonly ? MDB_RDONLY : 0) |
	                 (memcmp(boot, zero, 16) ? MDB_NOSYNC : MDB_NOMETASYNC);
	if ((rc = mdb_env_set_maxdbs(k->env, 3)) != 0 || (rc = mdb_env_set_mapsize(k->env, KEYS_MAP)) != 0 ||
	    (rc = mdb_env_open(k->env, path, flags, 0600)) != 0) {
		fail(rc, path);
		store_keys_close(k);
		return NULL;
	}
	/* A file cut short (copied or truncated by hand) would fault LMDB's map where its
	 * pages should be: such a file is not used. */
	MDB_envinfo info;
	MDB_stat ms;
	mdb_filehandle_t fd;
	if (mdb_env_info(k->env, &info) != 0 || mdb_env_stat(k->env, &ms) != 0 ||
	    mdb_env_get_fd(k->env, &fd) != 0 || fstat(fd, &sb) < 0 ||
	    (uint64_t)sb.st_size < ((uint64_t)info.me_last_pgno + 1) * ms.ms_psize) {
		gossip_seterr("store: %s: shorter than its pages", path);
		store_keys_close(k);
		return NULL;
	}
	k->ino = (uint64_t)sb.st_ino;
	/* The tables are made only in a file made here: an existing one (which may be
	 * damaged) is opened with a read-only transaction, and one that lacks them is no
	 * index; nothing is written into it before it has been read as whole (store.c). */
	unsigned create = exists || readonly ? 0 : MDB_CREATE;
	if ((rc = tb(k->env, create ? 0 : MDB_RDONLY, &txn)) != 0 ||
	    (rc = mdb_dbi_open(txn, "rows", MDB_DUPSORT | MDB_DUPFIXED | create, &k->rows)) != 0 ||
	    (rc = mdb_dbi_open(txn, "wm", create, &k->wms)) != 0 ||
	    (rc = mdb_dbi_open(txn, "meta", create, &k->meta)) != 0 ||
	    (rc = tc(txn), txn = NULL, rc) != 0) {
		if (txn)
			ta(txn);
		fail(rc, path);
		store_keys_close(k);
		return NULL;
	}
	return k;
}

int store_keys_faulted(const struct store_keys *k)
{
	return k->faulted;
}

int store_keys_same_file(const struct store_keys *k, const char *dir)
{
	struct stat sb;
	return lstat(gossip_path(dir, "store.keys"), &sb) == 0 && S_ISREG(sb.st_mode) &&
	       (uint64_t)sb.st_ino == k->ino;
}

static int meta_get_raw(struct store_keys *k, struct store_keys_meta *m)
{
	MDB_txn *txn;
	MDB_val key = {sizeof meta_key, (void *)meta_key}, val;
	int rc = tb(k->env, MDB_RDONLY, &txn);
	if (rc != 0)
		return fail(rc, "store.keys");
	rc = mdb_get(txn, k->meta, &key, &val);
	if (rc == 0 && (val.mv_size != 52 || memcmp(val.mv_data, magic, 4) != 0))
		rc = MDB_CORRUPTED;
	if (rc == 0) {
		const uint8_t *p = val.mv_data;
		m->ino = store_get64(p + 4);
		m->end = store_get64(p + 12);
		memcpy(m->tail, p + 20, 16);
		memcpy(m->boot, p + 36, 16);
	}
	ta(txn);
	if (rc == MDB_NOTFOUND)
		return 1;
	return rc ? fail(rc, "store.keys") : 0;
}

static int lookup_raw(struct store_keys *k, int wm, const uint8_t ikey[16], size_t max,
                      uint64_t **offs, size_t *n)
{
	MDB_txn *txn;
	MDB_cursor *c = NULL;
	MDB_val key = {16, (void *)ikey}, val;
	uint64_t *v = NULL;
	size_t cnt = 0, cap = 0;
	int rc = tb(k->env, MDB_RDONLY, &txn);
	*offs = NULL;
	*n = 0;
	if (rc != 0)
		return fail(rc, "store.keys");
	if ((rc = mdb_cursor_open(txn, wm ? k->wms : k->rows, &c)) != 0)
		goto out;
	rc = wm ? mdb_cursor_get(c, &key, &val, MDB_FIRST) : mdb_cursor_get(c, &key, &val, MDB_SET_KEY);
	for (; rc == 0; rc = mdb_cursor_get(c, &key, &val, wm ? MDB_NEXT : MDB_NEXT_DUP)) {
		const uint8_t *p = wm ? key.mv_data : val.mv_data;
		if ((wm ? key.mv_size : val.mv_size) != 8) {
			rc = MDB_CORRUPTED;
			goto out;
		}
		if (cnt == max) {
			rc = MDB_BAD_VALSIZE;  /* more than a caller reads through the index */
			goto out;
		}
		if (cnt == cap) {
			uint64_t *w = realloc(v, (cap = cap ? 2 * cap : 8) * sizeof *v);
			if (!w) {
				rc = ENOMEM;
				goto out;
			}
			v = w;
		}
		v[cnt++] = store_get64(p);
	}
	if (rc == MDB_NOTFOUND)
		rc = 0;
out:
	if (c)
		mdb_cursor_close(c);
	ta(txn);
	if (rc != 0) {
		free(v);
		return fail(rc, "store.keys");
	}
	*offs = v;
	*n = cnt;
	return 0;
}

static int by_change(const void *a, const void *b)
{
	const struct store_keys_change *x = a, *y = b;
	int c = memcmp(x->ikey, y->ikey, 16);
	return c ? c : (x->seq > y->seq) - (x->seq < y->seq);
}

static int by_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return (x > y) - (x < y);
}

/* A key's row in the final set of a whole write. */
struct frow {
	uint8_t ikey[16];
	uint64_t off;
};

static int by_frow(const void *a, const void *b)
{
	const struct frow *x = a, *y = b;
	int c = memcmp(x->ikey, y->ikey, 16);
	return c ? c : (x->off > y->off) - (x->off < y->off);
}

/* The rows and watermark offsets that changes c (sorted by key, then as made) come to,
 * each sorted as LMDB keeps them, without repeats. */
static int final_set(const struct store_keys_change *c, size_t n, struct frow **rows_out,
                     size_t *nrows_out, uint64_t **wm_out, size_t *nwm_out)
{
	struct frow *rows = NULL;
	uint64_t *wm = NULL;
	size_t nrows = 0, rowcap = 0, nwm = 0, wmcap = 0;
	for (size_t i = 0; i < n;) {
		size_t j = i, first = nrows;
		for (; j < n && memcmp(c[j].ikey, c[i].ikey, 16) == 0; j++) {
			if (c[j].wm) {
				if (nwm == wmcap) {
					uint64_t *w = realloc(wm, (wmcap = wmcap ? 2 * wmcap : 16) * sizeof *w);
					if (!w)
						goto oom;
					wm = w;
				}
				wm[nwm++] = c[j].now;
				continue;
			}
			if (c[j].old != UINT64_MAX)
				for (size_t x = first; x < nrows; x++)
					if (rows[x].off == c[j].old) {
						rows[x] = rows[--nrows];
						break;
					}
			if (nrows == rowcap) {
				struct frow *w = realloc(rows, (rowcap = rowcap ? 2 * rowcap : 1024) * sizeof *w);
				if (!w)
					goto oom;
				rows = w;
			}
			memcpy(rows[nrows].ikey, c[j].ikey, 16);
			rows[nrows++].off = c[j].now;
		}
		if (nrows - first > 1)
			qsort(rows + first, nrows - first, sizeof *rows, by_frow);
		i = j;
	}
	size_t m = 0;
	for (size_t x = 0; x < nrows; x++)
		if (!m || by_frow(&rows[x], &rows[m - 1]) != 0)
			rows[m++] = rows[x];
	if (nwm)
		qsort(wm, nwm, sizeof *wm, by_u64);
	size_t w = 0;
	for (size_t x = 0; x < nwm; x++)
		if (!w || wm[x] != wm[w - 1])
			wm[w++] = wm[x];
	*rows_out = rows;
	*nrows_out = m;
	*wm_out = wm;
	*nwm_out = w;
	return 0;
oom:
	free(rows);
	free(wm);
	return ENOMEM;
}

/* Whether the tables hold exactly rows and wm (1), or not (0); an LMDB error else. */
static int holds(MDB_txn *txn, struct store_keys *k, const struct frow *rows, size_t nrows,
                 const uint64_t *wm, size_t nwm)
{
	MDB_cursor *cur;
	MDB_val key, val;
	size_t x = 0;
	int rc, same = 1;
	if ((rc = mdb_cursor_open(txn, k->rows, &cur)) != 0)
		return -rc;
	for (rc = mdb_cursor_get(cur, &key, &val, MDB_FIRST); rc == 0 && same;
	     rc = mdb_cursor_get(cur, &key, &val, MDB_NEXT), x++)
		same = x < nrows && key.mv_size == 16 && val.mv_size == 8 &&
		       memcmp(key.mv_data, rows[x].ikey, 16) == 0 && store_get64(val.mv_data) == rows[x].off;
	mdb_cursor_close(cur);
	if (rc != 0 && rc != MDB_NOTFOUND)
		return -rc;
	if (!same || x != nrows)
		return 0;
	if ((rc = mdb_cursor_open(txn, k->wms, &cur)) != 0)
		return -rc;
	x = 0;
	for (rc = mdb_cursor_get(cur, &key, &val, MDB_FIRST); rc == 0 && same;
	     rc = mdb_cursor_get(cur, &key, &val, MDB_NEXT), x++)
		same = x < nwm && key.mv_size == 8 && store_get64(key.mv_data) == wm[x];
	mdb_cursor_close(cur);
	if (rc != 0 && rc != MDB_NOTFOUND)
		return -rc;
	return same && x == nwm;
}

/* Into empty tables: rows and wm at the end of each B-tree in order (MDB_APPEND: no
 * search, full pages). */
static int append_all(MDB_txn *txn, struct store_keys *k, const struct frow *rows, size_t nrows,
                      const uint64_t *wm, size_t nwm)
{
	uint8_t b[8];
	int rc = 0;
	for (size_t x = 0; x < nrows && rc == 0; x++) {
		MDB_val ik = {16, (void *)rows[x].ikey}, nv = {8, b};
		store_put64(b, rows[x].off);
		rc = mdb_put(txn, k->rows, &ik, &nv,
		             x && memcmp(rows[x].ikey, rows[x - 1].ikey, 16) == 0 ? MDB_APPENDDUP : MDB_APPEND);
	}
	for (size_t x = 0; x < nwm && rc == 0; x++) {
		MDB_val wk = {8, b}, none = {0, NULL};
		store_put64(b, wm[x]);
		rc = mdb_put(txn, k->wms, &wk, &none, MDB_APPEND);
	}
	return rc;
}

static int put_meta(MDB_txn *txn, struct store_keys *k, const struct store_keys_meta *m)
{
	uint8_t mv[52];
	MDB_val key = {sizeof meta_key, (void *)meta_key}, val = {sizeof mv, mv};
	memcpy(mv, magic, 4);
	store_put64(mv + 4, m->ino);
	store_put64(mv + 12, m->end);
	memcpy(mv + 20, m->tail, 16);
	store_keys_boot(mv + 36);
	return mdb_put(txn, k->meta, &key, &val, 0);
}

/* The whole index, from changes c (sorted): unless (verify) the file holds exactly it
 * already with m unchanged (1: nothing written), it is written into a new file,
 * DIR/store.keys.new, renamed over the old one: a file that may be damaged is never
 * written in place, where LMDB would reuse its pages as its damaged free list says. */
static int write_whole(struct store_keys *k, const char *dir, const struct store_keys_change *c,
                       size_t n, int verify, const struct store_keys_meta *m, int unchanged)
{
	struct frow *rows;
	uint64_t *wm;
	size_t nrows, nwm;
	MDB_txn *txn = NULL;
	struct store_keys *nk = NULL, *made = NULL;
	char tmp[4200];
	int rc = final_set(c, n, &rows, &nrows, &wm, &nwm);
	if (rc != 0)
		return fail(rc, "store.keys");
	if (verify && unchanged && (rc = tb(k->env, MDB_RDONLY, &txn)) == 0) {
		int same = holds(txn, k, rows, nrows, wm, nwm);
		ta(txn);
		txn = NULL;
		if (same == 1) {
			rc = 1;  /* it holds exactly that: nothing written */
			goto out;
		}
	}
	rc = 0;
	snprintf(tmp, sizeof tmp, "%s", gossip_path(dir, "store.keys.new"));
	unlink(tmp);
	if (!(nk = open_raw(dir, "store.keys.new", 0, &made))) {
		rc = -1;
		goto out;
	}
	if ((rc = tb(nk->env, 0, &txn)) != 0 ||
	    (rc = append_all(txn, nk, rows, nrows, wm, nwm)) != 0 || (rc = put_meta(txn, nk, m)) != 0 ||
	    (rc = tc(txn), txn = NULL, rc) != 0)
		goto out;
	if (rename(tmp, gossip_path(dir, "store.keys")) < 0) {
		rc = errno;
		goto out;
	}
	/* k is the new file now, opened afresh: the handle that wrote it holds a buffer for
	 * each page it wrote (LMDB keeps them for its next writes), tens of MB at a million
	 * rows, which a node's forked children would copy as they free them. */
	struct store_keys *re = open_raw(dir, "store.keys", 0, &made);
	mdb_env_close(k->env);
	if (re) {
		store_keys_close(nk);
		nk = re;
	}
	*k = *nk;
	free(nk);
	nk = NULL;
out:
	if (txn)
		ta(txn);
	if (nk) {
		store_keys_close(nk);
		unlink(tmp);
	}
	free(rows);
	free(wm);
	if (rc == -1 || rc == 1)
		return rc;
	return rc ? fail(rc, "store.keys") : 0;
}

/* What the file holds, as changes made before c's (its rows and watermark records),
 * then c's made at or after from: for a whole write of both. */
static int held_changes(MDB_txn *txn, struct store_keys *k, struct store_keys_change **out,
                        size_t *nout, const struct store_keys_change *c, size_t n, uint64_t from)
{
	MDB_cursor *cur;
	MDB_val key, val;
	struct store_keys_change *v = NULL;
	size_t cnt = 0, cap = 0;
	uint64_t seq = 0;
	int rc;
	for (int wm = 0; wm < 2; wm++) {
		if ((rc = mdb_cursor_open(txn, wm ? k->wms : k->rows, &cur)) != 0)
			goto out;
		for (rc = mdb_cursor_get(cur, &key, &val, MDB_FIRST); rc == 0;
		     rc = mdb_cursor_get(cur, &key, &val, MDB_NEXT)) {
			if (wm ? key.mv_size != 8 : key.mv_size != 16 || val.mv_size != 8) {
				rc = MDB_CORRUPTED;
				break;
			}
			if (cnt == cap) {
				struct store_keys_change *w = realloc(v, (cap = cap ? 2 * cap : 4096) * sizeof *w);
				if (!w) {
					rc = ENOMEM;
					break;
				}
				v = w;
			}
			struct store_keys_change *e = &v[cnt++];
			memset(e, 0, sizeof *e);
			if (!wm)
				memcpy(e->ikey, key.mv_data, 16);
			e->old = UINT64_MAX;
			e->now = store_get64(wm ? key.mv_data : val.mv_data);
			e->seq = seq++;
			e->wm = wm;
		}
		mdb_cursor_close(cur);
		if (rc != MDB_NOTFOUND)
			goto out;
	}
	rc = 0;
	for (size_t i = 0; i < n; i++) {
		if (c[i].now < from)
			continue;
		if (cnt == cap) {
			struct store_keys_change *w = realloc(v, (cap = cap ? 2 * cap : 4096) * sizeof *w);
			if (!w) {
				rc = ENOMEM;
				goto out;
			}
			v = w;
		}
		v[cnt] = c[i];
		v[cnt++].seq = seq++;
	}
out:
	*out = v;
	*nout = cnt;
	return rc;
}

static int write_raw(struct store_keys *k, const char *dir, int drop, struct store_keys_change *c,
                     size_t n, uint64_t from, const struct store_keys_meta *m, int unchanged)
{
	MDB_txn *txn;
	uint8_t ob[8], nb[8];
	int rc;
	/* By key, then in the order made: a B-tree fills fastest in order, and each key's
	 * changes must apply as they came. */
	if (n)
		qsort(c, n, sizeof *c, by_change);
	if (drop)
		return write_whole(k, dir, c, n, drop == 2, m, unchanged);
	if ((rc = tb(k->env, 0, &txn)) != 0)
		return fail(rc, "store.keys");
	/* Many changes (a bulk merge's; an eighth of what the file holds or more): it is made
	 * anew with them, in order, rather than split and copied page by page (which costs
	 * more, and leaves it at about twice the size). */
	MDB_stat ms;
	if (n >= 4096 && mdb_stat(txn, k->rows, &ms) == 0 && n >= ms.ms_entries / 8) {
		struct store_keys_change *all = NULL;
		size_t na = 0;
		rc = held_changes(txn, k, &all, &na, c, n, from);
		ta(txn);
		if (rc != 0) {
			free(all);
			return fail(rc, "store.keys");
		}
		qsort(all, na, sizeof *all, by_change);
		rc = write_whole(k, dir, all, na, 0, m, 0);
		free(all);
		return rc;
	}
	for (size_t i = 0; i < n; i++) {
		if (c[i].now < from)
			continue;  /* made from bytes the file already indexes */
		MDB_val ik = {16, c[i].ikey}, ov = {8, ob}, nv = {8, nb};
		store_put64(nb, c[i].now);
		if (c[i].wm) {
			MDB_val wk = {8, nb}, none = {0, NULL};
			if ((rc = mdb_put(txn, k->wms, &wk, &none, 0)) != 0)
				goto out;
			continue;
		}
		if (c[i].old != UINT64_MAX) {
			store_put64(ob, c[i].old);
			rc = mdb_del(txn, k->rows, &ik, &ov);
			if (rc != 0 && rc != MDB_NOTFOUND)
				goto out;
		}
		rc = mdb_put(txn, k->rows, &ik, &nv, MDB_NODUPDATA);
		if (rc != 0 && rc != MDB_KEYEXIST)
			goto out;
	}
	if ((rc = put_meta(txn, k, m)) != 0)
		goto out;
	return (rc = tc(txn)) ? fail(rc, "store.keys") : 0;
out:
	ta(txn);
	return fail(rc, "store.keys");
}

/* ---- the guard: LMDB trusts its file's pages, and a damaged page (a bit flipped on
 * disk, a file cut or overwritten by hand) can make it read outside its map (SIGBUS,
 * SIGSEGV). Each call into LMDB runs with those signals caught: a fault ends the call
 * as an error ("damaged"), the handle is not used again, and the store's own file,
 * which never depends on this one, is read instead (and the index made again by the
 * next writer). */

static sigjmp_buf fault_jb;
static volatile sig_atomic_t fault_armed;
static struct sigaction old_bus, old_segv;

static void on_fault(int sig)
{
	if (fault_armed) {
		fault_armed = 0;
		siglongjmp(fault_jb, sig);
	}
	signal(sig, SIG_DFL);
	raise(sig);
}

/* LMDB's own checks of its pages end in abort(): under the guard, a fault instead. */
static void on_assert(MDB_env *env, const char *msg)
{
	(void)env;
	(void)msg;
	if (fault_armed) {
		fault_armed = 0;
		siglongjmp(fault_jb, SIGABRT);
	}
}

static void guard_on(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_fault;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = SA_NODEFER;
	sigaction(SIGBUS, &sa, &old_bus);
	sigaction(SIGSEGV, &sa, &old_segv);
	fault_armed = 1;
}

static void guard_off(void)
{
	fault_armed = 0;
	sigaction(SIGBUS, &old_bus, NULL);
	sigaction(SIGSEGV, &old_segv, NULL);
}

/* After a fault: the transaction under way and the handle's environment are ended
 * (under the guard again: a second fault leaves them), so that nothing leaks. */
static void cleanup(struct store_keys *k)
{
	if (sigsetjmp(fault_jb, 1) == 0) {
		guard_on();
		if (live_txn)
			mdb_txn_abort(live_txn);
		live_txn = NULL;
		if (k && k->env)
			mdb_env_close(k->env);
	}
	guard_off();
	live_txn = NULL;
	if (k)
		k->env = NULL;
}

static int faulted(struct store_keys *k)
{
	if (k && !k->faulted)
		cleanup(k);
	if (k)
		k->faulted = 1;
	gossip_seterr("store: store.keys is damaged (LMDB faulted reading it)");
	return -1;
}

struct store_keys *store_keys_open(const char *dir, int readonly)
{
	static struct store_keys *made;
	made = NULL;
	if (sigsetjmp(fault_jb, 1)) {
		guard_off();
		faulted(made);
		store_keys_close(made);
		return NULL;
	}
	guard_on();
	struct store_keys *k = open_raw(dir, "store.keys", readonly, &made);
	guard_off();
	return k;
}

int store_keys_meta_get(struct store_keys *k, struct store_keys_meta *m)
{
	if (k->faulted)
		return faulted(k);
	if (sigsetjmp(fault_jb, 1))
		return guard_off(), faulted(k);
	guard_on();
	int r = meta_get_raw(k, m);
	guard_off();
	return r;
}

int store_keys_lookup(struct store_keys *k, int wm, const uint8_t ikey[16], size_t max,
                      uint64_t **offs, size_t *n)
{
	*offs = NULL;
	*n = 0;
	if (k->faulted)
		return faulted(k);
	if (sigsetjmp(fault_jb, 1))
		return guard_off(), faulted(k);  /* what it had gathered is lost with the fault */
	guard_on();
	int r = lookup_raw(k, wm, ikey, max, offs, n);
	guard_off();
	return r;
}

int store_keys_write(struct store_keys *k, const char *dir, int drop, struct store_keys_change *c,
                     size_t n, uint64_t from, const struct store_keys_meta *m, int unchanged)
{
	if (k->faulted)
		return faulted(k);
	if (sigsetjmp(fault_jb, 1))
		return guard_off(), faulted(k);
	guard_on();
	int r = write_raw(k, dir, drop, c, n, from, m, unchanged);
	guard_off();
	return r;
}
