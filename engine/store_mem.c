/* store_mem.c: shards and stage outputs in memory, and the move of a shard
 * to LMDB when the budget is used up (see store.h). */
#include "store.h"

#include "store_int.h"

#include <stdlib.h>
#include <string.h>

#define FLUSH_TXN (4u << 20)

void gl_chunk_release(gl_store *st, gl_chunk *c)
{
    if (st && c->data)
        atomic_fetch_sub(&st->used, c->cap);
    free(c->data);
    *c = (gl_chunk){0};
}

/* Writes the shard's chunks in memory to LMDB, in order, and frees them. */
static int shard_flush(gl_output *o, size_t cell, gl_err *err)
{
    gl_shard *s = &o->cells[cell];
    size_t n = s->n;
    if (n && !s->chunks[n - 1].len)
        n--; /* an empty tail stays for the next rows */
    if (!n)
        return 0;
    /* In transactions of about FLUSH_TXN bytes: LMDB holds a transaction's
     * pages in malloc'd memory until it commits. */
    size_t done = 0;
    while (done < n) {
        size_t k = 0, bytes = 0;
        while (done + k < n && (k == 0 || bytes + s->chunks[done + k].len <= FLUSH_TXN))
            bytes += s->chunks[done + k++].len;
        int rc = gl_lmdb_put(o, cell, s->ndisk, s->chunks + done, k, err);
        if (rc)
            break;
        for (size_t i = done; i < done + k; i++)
            gl_chunk_release(o->store, &s->chunks[i]);
        s->ndisk += (uint32_t)k;
        done += k;
    }
    memmove(s->chunks, s->chunks + done, (s->n - done) * sizeof *s->chunks);
    s->n -= done;
    return done < n ? (err && err->code ? err->code : GL_EIO) : 0;
}

static int shard_grow(gl_store *st, gl_shard *s, size_t cap)
{
    if (s->n == s->cap) {
        size_t ncap = s->cap ? s->cap * 2 : 4;
        gl_chunk *p = realloc(s->chunks, ncap * sizeof *p);
        if (!p)
            return -1;
        s->chunks = p;
        s->cap = ncap;
    }
    uint8_t *d = malloc(cap);
    if (!d)
        return -1;
    if (st)
        atomic_fetch_add(&st->used, cap);
    s->chunks[s->n++] = (gl_chunk){d, 0, cap, 0};
    return 0;
}

int gl_output_append(gl_output *o, uint32_t part, uint32_t task, const uint8_t *rows, size_t len,
                     uint64_t nrows, gl_err *err)
{
    if (!len)
        return 0;
    size_t cell = (size_t)part * o->ntasks + task;
    gl_shard *s = &o->cells[cell];
    gl_store *st = o->store;
    if (!s->disk && st && (o->disk || atomic_load(&st->used) >= st->mem_limit)) {
        s->disk = true;
        int rc = shard_flush(o, cell, err);
        if (rc)
            return rc;
    }
    size_t size = s->disk ? o->tail : GL_CHUNK_BYTES;
    gl_chunk *c = s->n ? &s->chunks[s->n - 1] : NULL;
    if (s->disk && c && c->len && c->cap - c->len < len) {
        int rc = shard_flush(o, cell, err);
        if (rc)
            return rc;
        c = s->n ? &s->chunks[s->n - 1] : NULL;
    }
    if (!c || c->cap - c->len < len) {
        if (shard_grow(st, s, len > size ? len : size))
            return gl_err_set(err, GL_ENOMEM, "out of memory storing rows");
        c = &s->chunks[s->n - 1];
    }
    memcpy(c->data + c->len, rows, len);
    c->len += len;
    c->nrows += nrows;
    s->rows += nrows;
    s->bytes += len;
    return 0;
}

int gl_output_seal(gl_output *o, uint32_t task, gl_err *err)
{
    for (uint32_t p = 0; p < o->nparts; p++) {
        size_t cell = (size_t)p * o->ntasks + task;
        if (o->cells[cell].disk) {
            int rc = shard_flush(o, cell, err);
            if (rc)
                return rc;
        }
    }
    return 0;
}

gl_output *gl_output_new(uint32_t nparts, uint32_t ntasks, gl_store *store, bool disk)
{
    gl_output *o = calloc(1, sizeof *o);
    if (!o)
        return NULL;
    o->nparts = nparts;
    o->ntasks = ntasks;
    size_t cells = (size_t)nparts * ntasks;
    size_t bytes = (cells ? cells : 1) * sizeof *o->cells; /* a multiple of the alignment */
    o->cells = aligned_alloc(_Alignof(gl_shard), bytes);
    if (o->cells)
        memset(o->cells, 0, bytes);
    if (!o->cells) {
        free(o);
        return NULL;
    }
    if (store) {
        gl_store_retain(store);
        o->store = store;
        o->id = atomic_fetch_add(&store->next_id, 1);
        o->disk = disk;
        /* Tails of every partition of every running task fit in an eighth
         * of the budget, within [16 KiB, 1 MiB]. */
        uint64_t t = store->budget / 8 / ((uint64_t)(nparts ? nparts : 1) * store->workers);
        o->tail = t < (16u << 10) ? (16u << 10) : t > (1u << 20) ? (1u << 20) : (size_t)t;
    }
    return o;
}

void gl_output_free(gl_output *o)
{
    if (!o)
        return;
    size_t cells = (size_t)o->nparts * o->ntasks;
    bool ondisk = false;
    for (size_t i = 0; i < cells; i++) {
        gl_shard *s = &o->cells[i];
        ondisk |= s->ndisk > 0;
        for (size_t j = 0; j < s->n; j++)
            gl_chunk_release(o->store, &s->chunks[j]);
        free(s->chunks);
    }
    if (ondisk)
        gl_lmdb_delete(o);
    if (o->store)
        gl_store_release(o->store);
    free(o->cells);
    free(o);
}

uint64_t gl_output_part_rows(const gl_output *o, uint32_t part)
{
    uint64_t n = 0;
    for (uint32_t t = 0; t < o->ntasks; t++)
        n += o->cells[(size_t)part * o->ntasks + t].rows;
    return n;
}

uint64_t gl_output_part_bytes(const gl_output *o, uint32_t part)
{
    uint64_t n = 0;
    for (uint32_t t = 0; t < o->ntasks; t++)
        n += o->cells[(size_t)part * o->ntasks + t].bytes;
    return n;
}

uint64_t gl_output_rows(const gl_output *o)
{
    uint64_t n = 0;
    for (uint32_t p = 0; p < o->nparts; p++)
        n += gl_output_part_rows(o, p);
    return n;
}
