/* store.h: where stages leave rows for the next stage (the in-memory store).
 *
 * A shard is a list of chunks; a chunk holds whole rows, back to back, so
 * any chunk can be handed to a reader as one batch. A stage's output is a
 * grid of shards, one per (partition, producing task): a task writes only
 * its own column, so writers never share a lock, and a reader of partition
 * p reads the column in task order, which makes every run see rows in the
 * same order whatever the thread timing. */
#ifndef GL_STORE_H
#define GL_STORE_H

#include <stddef.h>
#include <stdint.h>

#define GL_CHUNK_BYTES (256u * 1024u)

typedef struct gl_chunk {
    uint8_t *data;
    size_t len, cap;
    uint64_t nrows;
} gl_chunk;

typedef struct gl_shard {
    gl_chunk *chunks;
    size_t n, cap;
    uint64_t rows, bytes;
} gl_shard;

/* Appends nrows whole rows. 0 ok, -1 out of memory. */
int gl_shard_append(gl_shard *s, const uint8_t *rows, size_t len, uint64_t nrows);
void gl_shard_free(gl_shard *s);

typedef struct gl_output {
    uint32_t nparts, ntasks;
    gl_shard *cells; /* [part * ntasks + task] */
    uint32_t max_width; /* the most fields in a row, when the stage tracked it */
} gl_output;

/* Returns a new empty output (caller frees with gl_output_free), or NULL. */
gl_output *gl_output_new(uint32_t nparts, uint32_t ntasks);
void gl_output_free(gl_output *o);

static inline gl_shard *gl_output_cell(gl_output *o, uint32_t part, uint32_t task)
{
    return &o->cells[(size_t)part * o->ntasks + task];
}

uint64_t gl_output_rows(const gl_output *o);
uint64_t gl_output_part_rows(const gl_output *o, uint32_t part);

/* Walks the chunks of one partition in order: *task and *chunk start at 0.
 * Returns the next chunk (borrowed: valid while the output lives) or NULL. */
const gl_chunk *gl_output_next(const gl_output *o, uint32_t part, uint32_t *task, size_t *chunk);

#endif
