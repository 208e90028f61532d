/* store_mem.c: chunked shards and stage outputs held in memory. */
#include "store.h"

#include <stdlib.h>
#include <string.h>

int gl_shard_append(gl_shard *s, const uint8_t *rows, size_t len, uint64_t nrows)
{
    if (!len)
        return 0;
    gl_chunk *c = s->n ? &s->chunks[s->n - 1] : NULL;
    if (!c || c->cap - c->len < len) {
        if (s->n == s->cap) {
            size_t cap = s->cap ? s->cap * 2 : 4;
            gl_chunk *p = realloc(s->chunks, cap * sizeof *p);
            if (!p)
                return -1;
            s->chunks = p;
            s->cap = cap;
        }
        size_t cap = len > GL_CHUNK_BYTES ? len : GL_CHUNK_BYTES;
        uint8_t *d = malloc(cap);
        if (!d)
            return -1;
        c = &s->chunks[s->n++];
        *c = (gl_chunk){d, 0, cap, 0};
    }
    memcpy(c->data + c->len, rows, len);
    c->len += len;
    c->nrows += nrows;
    s->rows += nrows;
    s->bytes += len;
    return 0;
}

void gl_shard_free(gl_shard *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->chunks[i].data);
    free(s->chunks);
    memset(s, 0, sizeof *s);
}

gl_output *gl_output_new(uint32_t nparts, uint32_t ntasks)
{
    gl_output *o = calloc(1, sizeof *o);
    if (!o)
        return NULL;
    o->nparts = nparts;
    o->ntasks = ntasks;
    size_t cells = (size_t)nparts * ntasks;
    o->cells = calloc(cells ? cells : 1, sizeof *o->cells);
    if (!o->cells) {
        free(o);
        return NULL;
    }
    return o;
}

void gl_output_free(gl_output *o)
{
    if (!o)
        return;
    size_t cells = (size_t)o->nparts * o->ntasks;
    for (size_t i = 0; i < cells; i++)
        gl_shard_free(&o->cells[i]);
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

uint64_t gl_output_rows(const gl_output *o)
{
    uint64_t n = 0;
    for (uint32_t p = 0; p < o->nparts; p++)
        n += gl_output_part_rows(o, p);
    return n;
}

const gl_chunk *gl_output_next(const gl_output *o, uint32_t part, uint32_t *task, size_t *chunk)
{
    while (*task < o->ntasks) {
        const gl_shard *s = &o->cells[(size_t)part * o->ntasks + *task];
        if (*chunk < s->n)
            return &s->chunks[(*chunk)++];
        (*task)++;
        *chunk = 0;
    }
    return NULL;
}
