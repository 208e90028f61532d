/* store_lmdb.c: the LMDB side of the store (see store.h): the environment,
 * chunk writes, deletes and zero-copy reads.
 *
 * One environment per store, in its directory, opened at the first spill
 * (at once when the caller chose the directory, so a bad one is reported
 * before anything runs). The directory is held with an exclusive flock on
 * `gleam.lock` for the store's life: a second gleam process gets a clear
 * error instead of sharing the environment, and a killed process's lock
 * goes with it. At open, readers left by a killed process are cleared
 * (mdb_reader_check) and the rows it left are dropped: spilled rows belong
 * to one run.
 *
 * A chunk is one LMDB value under the 12-byte key (output id, cell,
 * sequence), big-endian so a cursor walks an output's keys in order; the
 * value is the row count (8 bytes, little-endian) and the rows. Values this
 * size live in contiguous overflow pages, so a reader hands out a pointer
 * into the map. The environment runs with MDB_NOSYNC: spilled rows need no
 * durability, and on_disk stages call gl_store_sync when they are written.
 *
 * The map is sized at open to the free space on the directory's disk plus
 * what the data file already holds, so the store can grow until the disk
 * is full; MDB_MAP_FULL and ENOSPC are reported naming the directory.
 * GLEAM_LMDB_MAPSIZE (bytes) caps the map, which is how the tests reach
 * that error without filling a disk. */
#define _GNU_SOURCE
#include "store_int.h"

#include "task.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <unistd.h>

/* A fault on a file mapping maps the page cache's whole folio around the
 * address (up to a PMD, 2 MiB, on current kernels; 64 KiB of fault-around
 * on older ones), so drops reach that far past the bytes used. */
#define FOLIO_WINDOW ((uintptr_t)2 << 20)

static uint64_t phys_memory(void)
{
    long pages = sysconf(_SC_PHYS_PAGES), size = sysconf(_SC_PAGESIZE);
    return pages > 0 && size > 0 ? (uint64_t)pages * (uint64_t)size : (1ull << 30);
}

gl_store *gl_store_new(uint64_t budget, const char *dir, uint32_t workers, gl_err *err)
{
    gl_store *s = calloc(1, sizeof *s);
    if (!s || (dir && !(s->dir = strdup(dir)))) {
        free(s);
        gl_err_set(err, GL_ENOMEM, "store: out of memory");
        return NULL;
    }
    atomic_init(&s->refs, 1);
    s->budget = budget ? budget : phys_memory() / 2;
    s->workers = workers ? workers : 1;
    s->mem_limit = s->budget / 2;
    s->op_share = s->budget / 2 / s->workers;
    s->lockfd = -1;
    pthread_mutex_init(&s->lock, NULL);
    if (dir) {
        gl_err e = {0};
        if (gl_store_open(s, &e)) {
            gl_err_set(err, e.code, "%s", e.msg);
            gl_store_release(s);
            return NULL;
        }
    }
    return s;
}

void gl_store_retain(gl_store *s) { atomic_fetch_add(&s->refs, 1); }

void gl_store_release(gl_store *s)
{
    if (!s || atomic_fetch_sub(&s->refs, 1) != 1)
        return;
    if (s->env)
        mdb_env_close(s->env);
    if (s->own_dir && s->dir)
        gl_save_remove(s->dir, NULL);
    if (s->lockfd >= 0)
        close(s->lockfd);
    pthread_mutex_destroy(&s->lock);
    free(s->dir);
    free(s);
}

uint64_t gl_store_budget(const gl_store *s) { return s->budget; }
uint64_t gl_store_op_share(const gl_store *s) { return s->op_share; }
uint64_t gl_store_mem_used(const gl_store *s) { return atomic_load(&s->used); }
const char *gl_store_dir(const gl_store *s) { return atomic_load(&s->opened) ? s->dir : NULL; }

static int lmdb_error(gl_store *s, int rc, const char *what, gl_err *err)
{
    if (rc == MDB_MAP_FULL)
        return gl_err_set(err, GL_EIO, "store: no room left in %s: its LMDB map is full", s->dir);
    if (rc == ENOSPC)
        return gl_err_set(err, GL_EIO, "store: no space left on the disk of %s", s->dir);
    return gl_err_set(err, GL_EIO, "store: %s in %s: %s", what, s->dir, mdb_strerror(rc));
}

static size_t map_size(const char *dir)
{
    const char *cap = getenv("GLEAM_LMDB_MAPSIZE");
    if (cap && *cap)
        return (size_t)strtoull(cap, NULL, 10);
    uint64_t size = 0;
    struct statvfs v;
    if (statvfs(dir, &v) == 0)
        size = (uint64_t)v.f_bavail * v.f_frsize;
    char path[4096];
    struct stat st;
    snprintf(path, sizeof path, "%s/data.mdb", dir);
    if (stat(path, &st) == 0)
        size += (uint64_t)st.st_size;
    if (size < (64ull << 20))
        size = 64ull << 20;
    return (size_t)size;
}

/* The map's address range, for madvise. LMDB does not say where it mapped
 * (mdb_env_info's me_mapaddr is only set for MDB_FIXEDMAP), so it is looked
 * up in /proc/self/maps by the data file's device and inode. Not found: no
 * pages are dropped, which costs memory, not correctness. */
static void find_map(gl_store *s)
{
    char path[4096];
    struct stat st;
    snprintf(path, sizeof path, "%s/data.mdb", s->dir);
    FILE *f = fopen("/proc/self/maps", "re");
    if (!f || stat(path, &st)) {
        if (f)
            fclose(f);
        return;
    }
    char line[4096 + 128];
    while (fgets(line, sizeof line, f)) {
        unsigned long a, b, ino;
        unsigned maj, min;
        if (sscanf(line, "%lx-%lx %*s %*s %x:%x %lu", &a, &b, &maj, &min, &ino) == 5 && ino == st.st_ino &&
            makedev(maj, min) == st.st_dev && b - a > (unsigned long)(s->mapend - s->map)) {
            s->map = a;
            s->mapend = b;
        }
    }
    fclose(f);
}

static int open_env(gl_store *s, gl_err *err)
{
    if (!s->dir) {
        const char *tmp = getenv("TMPDIR");
        char path[4096];
        snprintf(path, sizeof path, "%s/gleam-XXXXXX", tmp && *tmp ? tmp : "/tmp");
        if (!mkdtemp(path))
            return gl_err_set(err, GL_EIO, "store: cannot make a directory '%s': %s", path, strerror(errno));
        if (!(s->dir = strdup(path))) {
            rmdir(path);
            return gl_err_set(err, GL_ENOMEM, "store: out of memory");
        }
        s->own_dir = true;
    } else if (mkdir(s->dir, 0700) && errno != EEXIST) {
        return gl_err_set(err, GL_EIO, "store: cannot make directory '%s': %s", s->dir, strerror(errno));
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/gleam.lock", s->dir);
    if ((s->lockfd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600)) < 0)
        return gl_err_set(err, GL_EIO, "store: cannot open '%s': %s", path, strerror(errno));
    if (flock(s->lockfd, LOCK_EX | LOCK_NB))
        return gl_err_set(err, GL_EIO, "store: directory '%s' is in use by another gleam process", s->dir);
    int rc = mdb_env_create(&s->env);
    if (!rc)
        rc = mdb_env_set_maxreaders(s->env, 1024);
    if (!rc)
        rc = mdb_env_set_mapsize(s->env, map_size(s->dir));
    if (!rc)
        rc = mdb_env_open(s->env, s->dir, MDB_NOSYNC | MDB_NOMETASYNC | MDB_NOTLS, 0600);
    if (rc)
        return lmdb_error(s, rc, "cannot open the LMDB environment", err);
    int dead;
    mdb_reader_check(s->env, &dead);
    find_map(s);
    MDB_txn *txn;
    if ((rc = mdb_txn_begin(s->env, NULL, 0, &txn)))
        return lmdb_error(s, rc, "cannot begin a transaction", err);
    if ((rc = mdb_dbi_open(txn, NULL, 0, &s->dbi)) || (rc = mdb_drop(txn, s->dbi, 0)) ||
        (rc = mdb_txn_commit(txn))) {
        if (rc != MDB_SUCCESS)
            mdb_txn_abort(txn);
        return lmdb_error(s, rc, "cannot clear the rows of an earlier run", err);
    }
    return 0;
}

/* Opens the environment once; a failure is kept and returned again. */
int gl_store_open(gl_store *s, gl_err *err)
{
    if (atomic_load(&s->opened))
        return 0;
    pthread_mutex_lock(&s->lock);
    int rc = 0;
    if (s->open_err.code)
        rc = gl_err_set(err, s->open_err.code, "%s", s->open_err.msg);
    else if (!atomic_load(&s->opened)) {
        if ((rc = open_env(s, &s->open_err)))
            gl_err_set(err, rc, "%s", s->open_err.msg);
        else
            atomic_store(&s->opened, true);
    }
    pthread_mutex_unlock(&s->lock);
    return rc;
}

int gl_store_sync(gl_store *s, gl_err *err)
{
    if (!atomic_load(&s->opened))
        return 0;
    int rc = mdb_env_sync(s->env, 1);
    return rc ? lmdb_error(s, rc, "cannot sync", err) : 0;
}

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static void make_key(uint8_t k[12], uint32_t id, uint32_t cell, uint32_t seq)
{
    put_be32(k, id);
    put_be32(k + 4, cell);
    put_be32(k + 8, seq);
}

int gl_lmdb_put(gl_output *o, size_t cell, uint32_t seq, const gl_chunk *c, size_t n, gl_err *err)
{
    gl_store *s = o->store;
    int rc = gl_store_open(s, err);
    if (rc)
        return rc;
    MDB_txn *txn;
    if ((rc = mdb_txn_begin(s->env, NULL, 0, &txn)))
        return lmdb_error(s, rc, "cannot begin a transaction", err);
    for (size_t i = 0; i < n && !rc; i++) {
        uint8_t k[12];
        make_key(k, o->id, (uint32_t)cell, seq + (uint32_t)i);
        MDB_val key = {sizeof k, k}, val = {8 + c[i].len, NULL};
        if (!(rc = mdb_put(txn, s->dbi, &key, &val, MDB_RESERVE))) {
            uint64_t nrows = c[i].nrows;
            memcpy(val.mv_data, &nrows, 8); /* little-endian hosts only, as the map itself */
            memcpy((uint8_t *)val.mv_data + 8, c[i].data, c[i].len);
        }
    }
    if (rc) {
        mdb_txn_abort(txn);
        return lmdb_error(s, rc, "cannot write rows", err);
    }
    if ((rc = mdb_txn_commit(txn)))
        return lmdb_error(s, rc, "cannot write rows", err);
    return 0;
}

static void drop_map(gl_store *s);

/* Drops [p, p + len) and the folios around it from the process: a
 * neighbour some reader is using faults back in. */
static void drop_range(const gl_store *s, uintptr_t p, size_t len)
{
    uintptr_t a = p > FOLIO_WINDOW ? (p - FOLIO_WINDOW) & ~(FOLIO_WINDOW - 1) : 0;
    uintptr_t b = (p + len + 2 * FOLIO_WINDOW - 1) & ~(FOLIO_WINDOW - 1);
    if (a < s->map)
        a = s->map;
    if (b > s->mapend)
        b = s->mapend;
    if (b > a)
        madvise((void *)a, b - a, MADV_DONTNEED);
}

void gl_lmdb_delete(gl_output *o)
{
    gl_store *s = o->store;
    MDB_txn *txn;
    MDB_cursor *cur;
    if (!s || !atomic_load(&s->opened) || mdb_txn_begin(s->env, NULL, 0, &txn))
        return;
    if (mdb_cursor_open(txn, s->dbi, &cur)) {
        mdb_txn_abort(txn);
        return;
    }
    uint8_t k[12];
    make_key(k, o->id, 0, 0);
    MDB_val key = {sizeof k, k}, val;
    int rc = mdb_cursor_get(cur, &key, &val, MDB_SET_RANGE);
    while (!rc && key.mv_size == 12 && memcmp(key.mv_data, k, 4) == 0) {
        /* Deleting reads the value's first page, and that fault maps its
         * whole folio: drop it at once, or a large output's delete would
         * map a good part of it. */
        uintptr_t at = (uintptr_t)val.mv_data;
        if (mdb_cursor_del(cur, 0))
            break;
        drop_range(s, at, 1);
        rc = mdb_cursor_get(cur, &key, &val, MDB_NEXT); /* after a delete: the item that moved up */
    }
    mdb_cursor_close(cur);
    /* A failed delete leaves garbage the next open clears: nothing to report. */
    mdb_txn_commit(txn);
}

struct gl_reader {
    const gl_output *o;
    uint32_t part, task;
    size_t chunk;          /* in the cell: < ndisk from LMDB, then memory */
    MDB_txn *txn;
    gl_chunk view;
    uintptr_t drop, droplen;
    gl_chunk *done;        /* consume: the memory chunk handed out last */
    char err[512];
};

gl_reader *gl_reader_new(const gl_output *o, uint32_t part)
{
    gl_reader *r = calloc(1, sizeof *r);
    if (r) {
        r->o = o;
        r->part = part;
    }
    return r;
}

/* Every DROP_EVERY bytes read from LMDB, the whole used part of the map
 * is dropped from the process too: LMDB's own reads (tree pages, the
 * edges of values) add up otherwise. Pages a reader is using fault back in
 * from the page cache at the same address, so no pointer goes stale. */
#define DROP_EVERY (8u << 20)

static void drop_map(gl_store *s)
{
    MDB_envinfo info;
    MDB_stat st;
    if (!s->map || mdb_env_info(s->env, &info) || mdb_env_stat(s->env, &st))
        return;
    uintptr_t used = (uintptr_t)(info.me_last_pgno + 1) * st.ms_psize;
    madvise((void *)s->map, used < s->mapend - s->map ? used : s->mapend - s->map, MADV_DONTNEED);
}

/* The reader is done with the pages of its last LMDB chunk: drop them from
 * the process (the file and page cache keep them), so reading a spilled
 * shard does not add its size to the resident set. */
static void drop_pages(gl_reader *r)
{
    if (!r->droplen)
        return;
    drop_range(r->o->store, r->drop, r->droplen);
    r->droplen = 0;
}

const gl_chunk *gl_reader_next(gl_reader *r)
{
    const gl_output *o = r->o;
    drop_pages(r);
    if (r->done) {
        gl_chunk_release(o->store, r->done);
        r->done = NULL;
    }
    if (r->err[0])
        return NULL;
    while (r->part < o->nparts && r->task < o->ntasks) {
        size_t cell = (size_t)r->part * o->ntasks + r->task;
        const gl_shard *s = &o->cells[cell];
        if (r->chunk < s->ndisk) {
            gl_store *st = o->store;
            int rc = 0;
            if (!r->txn && (rc = mdb_txn_begin(st->env, NULL, MDB_RDONLY, &r->txn)))
                r->txn = NULL;
            uint8_t k[12];
            make_key(k, o->id, (uint32_t)cell, (uint32_t)r->chunk);
            MDB_val key = {sizeof k, k}, val;
            if (!rc)
                rc = mdb_get(r->txn, st->dbi, &key, &val);
            if (!rc && val.mv_size < 8)
                rc = MDB_CORRUPTED;
            if (rc) {
                snprintf(r->err, sizeof r->err, "store: cannot read rows in %s: %s", st->dir, mdb_strerror(rc));
                return NULL;
            }
            r->chunk++;
            uint64_t nrows;
            memcpy(&nrows, val.mv_data, 8);
            r->view = (gl_chunk){(uint8_t *)val.mv_data + 8, val.mv_size - 8, 0, nrows};
            r->drop = (uintptr_t)val.mv_data;
            r->droplen = val.mv_size;
            uint64_t was = atomic_fetch_add(&st->read, val.mv_size);
            if (was / DROP_EVERY != (was + val.mv_size) / DROP_EVERY)
                drop_map(st);
            return &r->view;
        }
        size_t m = r->chunk - s->ndisk;
        if (m < s->n) {
            r->chunk++;
            if (!s->chunks[m].len)
                continue;
            if (o->consume)
                r->done = (gl_chunk *)&s->chunks[m]; /* the one reader: its to free */
            return &s->chunks[m];
        }
        r->task++;
        r->chunk = 0;
    }
    return NULL;
}

const char *gl_reader_error(const gl_reader *r) { return r->err[0] ? r->err : NULL; }

void gl_reader_free(gl_reader *r)
{
    if (!r)
        return;
    drop_pages(r);
    if (r->done)
        gl_chunk_release(r->o->store, r->done);
    if (r->txn)
        mdb_txn_abort(r->txn);
    free(r);
}
