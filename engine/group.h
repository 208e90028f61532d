/* group.h: rows grouped by key, for group_by_key, cogroup and joins. Keys
 * get dense slots in order of first appearance (agg.h); each slot keeps,
 * per side (one for group_by_key, two for joins), the list of its rows in
 * arrival order. Rows are copied into one arena; lists are indexes into an
 * entry array, so adding a row allocates nothing but amortized growth. */
#ifndef GL_GROUP_H
#define GL_GROUP_H

#include "agg.h"
#include "buf.h"

#define GL_GROUP_END UINT32_MAX

typedef struct gl_groups gl_groups;

/* Returns an empty grouping (free with gl_groups_free), or NULL. */
gl_groups *gl_groups_new(const gl_keyspec *key, uint32_t sides);
void gl_groups_free(gl_groups *g);

/* Makes room for `rows` rows of `bytes` bytes in all, for a caller that
 * knows what is coming (a join's right side): the table for as many keys
 * (but no more than a key per 8 bytes of rows), the entries and the
 * arena. 0, or -1 out of memory. */
int gl_groups_reserve(gl_groups *g, uint64_t rows, uint64_t bytes);

/* Adds the nrows rows of a batch to `side`. 0 ok, -1 out of memory. */
int gl_groups_add(gl_groups *g, uint32_t side, const uint8_t *rows, size_t len, uint64_t nrows);

/* Adds one row and returns its slot, or -1 when out of memory. */
int64_t gl_groups_add_row(gl_groups *g, uint32_t side, const uint8_t *row, size_t len);

uint32_t gl_groups_slots(const gl_groups *g);
gl_agg *gl_groups_table(gl_groups *g);

/* The first entry of (slot, side), then the next of an entry; GL_GROUP_END
 * at the end. Entry rows are borrowed until the grouping is freed. */
uint32_t gl_groups_first(const gl_groups *g, uint32_t slot, uint32_t side);
uint32_t gl_groups_next(const gl_groups *g, uint32_t entry);
const uint8_t *gl_groups_row(const gl_groups *g, uint32_t entry, size_t *len);
uint32_t gl_groups_size(const gl_groups *g, uint32_t slot, uint32_t side);
/* Starts loading the list of (slot, side), for a caller about to read it. */
void gl_groups_prefetch(const gl_groups *g, uint32_t slot, uint32_t side);

/* Bytes of rows held (the arena). */
size_t gl_groups_bytes(const gl_groups *g);
/* Empties (slot, side); the slot keeps its key and place. Its rows stay in
 * the arena until gl_groups_compact. */
void gl_groups_clear(gl_groups *g, uint32_t slot, uint32_t side);
/* Sheds the largest groups of `side` while more than `keep` bytes of rows
 * are held, each one of at least `least` bytes (smaller ones are left):
 * move(ctx, slot) takes the slot's rows away (they are read through
 * gl_groups_first/next), the slot is emptied, and the arena is compacted at
 * the end. Returns 0, move's first non-zero result, or GL_ENOMEM when the
 * compaction runs out of memory. */
int gl_groups_shed(gl_groups *g, uint32_t side, uint64_t keep, uint64_t least,
                   int (*move)(void *ctx, uint32_t slot), void *ctx);
/* Rebuilds the arena with only the rows still in lists. 0, or -1 out of
 * memory (the grouping is unchanged then). */
int gl_groups_compact(gl_groups *g);

/* Appends one row's rest (non-key fields): one field as that value,
 * several as an array. */
int gl_groups_put_rest(gl_buf *out, const gl_groups *g, const uint8_t *row, size_t len);

/* Appends an array with the rest (non-key fields) of every row of (slot,
 * side): a rest of one field as that value, of several as an array. */
int gl_groups_put_rests(gl_buf *out, const gl_groups *g, uint32_t slot, uint32_t side);

#endif
