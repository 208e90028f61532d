/* store.h: where stages leave rows for the next stage, in memory within a
 * budget and in LMDB past it.
 *
 * A shard is a list of chunks; a chunk holds whole rows, back to back, so
 * any chunk can be handed to a reader as one batch. A stage's output is a
 * grid of shards, one per (partition, producing task): a task writes only
 * its own column, so writers never share a lock, and a reader of partition
 * p reads the column in task order, which makes every run see rows in the
 * same order whatever the thread timing.
 *
 * The store (gl_store) holds a run's memory budget and its LMDB
 * environment. Chunks held in memory count against half the budget; when an
 * append finds that half used, the shard it appends to moves to LMDB (its
 * chunks written in one transaction and freed) and from then on collects
 * rows in one tail chunk that is written out whenever it fills. A shard's
 * chunks in LMDB come before those still in memory. Readers get chunks from
 * LMDB without a copy (pointers into the map, valid until the reader's next
 * chunk); the pages a reader is done with are dropped from the process
 * (madvise), so reading a spilled shard does not grow the resident set. The
 * other half of the budget is shared by the running tasks' operators
 * (gl_store_op_share): sort, group, reduce and join switch to their
 * external forms past it (op_sort.c, task.c). */
#ifndef GL_STORE_H
#define GL_STORE_H

#include "err.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define GL_CHUNK_BYTES (256u * 1024u)

typedef struct gl_chunk {
    uint8_t *data;
    size_t len, cap;
    uint64_t nrows;
} gl_chunk;

/* A cache line each: the shards of one partition are side by side, one
 * per task, and tasks on different threads append to them row by row. */
typedef struct gl_shard {
    _Alignas(64) gl_chunk *chunks; /* in memory, after the ndisk chunks in LMDB */
    size_t n, cap;
    uint64_t rows, bytes;
    uint32_t ndisk;   /* chunks in LMDB, keys (output id, cell, 0..ndisk-1) */
    bool disk;        /* appends go to a tail chunk written to LMDB when full */
} gl_shard;

typedef struct gl_store gl_store;

/* A store with a budget in bytes (0: half of physical memory) for a pool
 * of `workers` threads. dir NULL: a fresh directory under $TMPDIR (or
 * /tmp), made at the first spill and removed when the store is freed; a
 * directory the caller names is made if missing, locked for the store's
 * life (a second process gets a clear error), and kept. Data a killed run
 * left there is cleared when the next store opens it. Returns the store
 * with one reference (gl_store_release), or NULL with err set. */
gl_store *gl_store_new(uint64_t budget, const char *dir, uint32_t workers, gl_err *err);
void gl_store_retain(gl_store *s);
void gl_store_release(gl_store *s);
uint64_t gl_store_budget(const gl_store *s);
/* Bytes one task's operator may hold before it spills. */
uint64_t gl_store_op_share(const gl_store *s);
/* Bytes of chunks held in memory now, across all outputs. */
uint64_t gl_store_mem_used(const gl_store *s);
/* The directory in use, or NULL if nothing has been spilled yet. */
const char *gl_store_dir(const gl_store *s);
/* Flushes everything written so far to the disk (fsync). 0 or GL_EIO. */
int gl_store_sync(gl_store *s, gl_err *err);

typedef struct gl_output {
    uint32_t nparts, ntasks;
    gl_shard *cells; /* [part * ntasks + task] */
    uint32_t max_width; /* the most fields in a row, when the stage tracked it */
    /* the fields above are read by lua/gleam/core.lua */
    gl_store *store;  /* holds a reference; NULL: memory only, no budget */
    uint32_t id;      /* its keys in LMDB */
    size_t tail;      /* a spilled shard writes to LMDB every `tail` bytes */
    bool disk;        /* every shard goes to LMDB */
    /* Its only reader reads each partition once: a reader frees the chunks
     * in memory it has moved past (exec.c sets it). */
    bool consume;
} gl_output;

/* Returns a new empty output (caller frees with gl_output_free), or NULL.
 * store may be NULL (memory only); disk: every shard written to LMDB from
 * the first row (on_disk datasets, sorted runs, spill buckets). */
gl_output *gl_output_new(uint32_t nparts, uint32_t ntasks, gl_store *store, bool disk);
/* Frees the output and deletes its rows from LMDB. */
void gl_output_free(gl_output *o);

static inline gl_shard *gl_output_cell(gl_output *o, uint32_t part, uint32_t task)
{
    return &o->cells[(size_t)part * o->ntasks + task];
}

/* Appends nrows whole rows to shard (part, task); past the budget the
 * shard moves to LMDB. 0, or an error code with err set. */
int gl_output_append(gl_output *o, uint32_t part, uint32_t task, const uint8_t *rows, size_t len,
                     uint64_t nrows, gl_err *err);
/* gl_output_append of one row, inline when it fits the last chunk of a
 * shard held in memory (no new memory is charged then). */
static inline int gl_output_append_row(gl_output *o, uint32_t part, uint32_t task, const uint8_t *row, size_t len,
                                       gl_err *err)
{
    gl_shard *s = gl_output_cell(o, part, task);
    gl_chunk *c = s->n ? &s->chunks[s->n - 1] : NULL;
    if (!c || s->disk || c->cap - c->len < len || !len)
        return gl_output_append(o, part, task, row, len, 1, err);
    memcpy(c->data + c->len, row, len);
    c->len += len;
    c->nrows++;
    s->rows++;
    s->bytes += len;
    return 0;
}

/* Writes out the tail chunks of task's column: call when the task is done. */
int gl_output_seal(gl_output *o, uint32_t task, gl_err *err);

uint64_t gl_output_rows(const gl_output *o);
uint64_t gl_output_part_rows(const gl_output *o, uint32_t part);
uint64_t gl_output_part_bytes(const gl_output *o, uint32_t part);

/* Reads one partition's chunks in order. */
typedef struct gl_reader gl_reader;
/* Returns a reader (free with gl_reader_free) or NULL (out of memory). */
gl_reader *gl_reader_new(const gl_output *o, uint32_t part);
/* The next chunk, borrowed until the next call or gl_reader_free; NULL at
 * the end or on an error (then gl_reader_error is its message). */
const gl_chunk *gl_reader_next(gl_reader *r);
/* NULL, or the one-line message of the error that stopped the reader. */
const char *gl_reader_error(const gl_reader *r);
void gl_reader_free(gl_reader *r);

/* store_lmdb.c, for store_mem.c: chunk i of cell of output o. */
int gl_lmdb_put(gl_output *o, size_t cell, uint32_t seq, const gl_chunk *c, size_t n, gl_err *err);
void gl_lmdb_delete(gl_output *o);

#endif
