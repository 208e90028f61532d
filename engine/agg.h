/* agg.h: the hash table behind reduce_by_key and reduce. It maps a row's
 * key (the encodings of its key fields) to a dense slot number, in order of
 * first appearance, so the values can live wherever the combiner does: in
 * C arrays for the built-ins, in Lua arrays for a Lua function (which calls
 * gl_agg_slot through the FFI, one direct call per row). */
#ifndef GL_AGG_H
#define GL_AGG_H

#include "row.h"

#include <stddef.h>
#include <stdint.h>

typedef struct gl_agg gl_agg;

/* Returns a new table (caller frees with gl_agg_free), or NULL. */
gl_agg *gl_agg_new(const gl_keyspec *key);
void gl_agg_free(gl_agg *a);

/* Makes room for n keys in all (no rehash until there are more): for a
 * caller that knows about how many keys are coming. 0, or -1 out of
 * memory (the table is unchanged then). */
int gl_agg_reserve(gl_agg *a, uint32_t n);

/* Finds or adds the slot of the key of the well-formed row at row; len may
 * run past the row's end (to its batch's end): only the row is read.
 * Returns slot * 2 + 1 for a new slot, slot * 2 for a known one, -1 when
 * out of memory. */
int64_t gl_agg_slot(gl_agg *a, const uint8_t *row, size_t len);

/* As gl_agg_slot for a row whose key is the one string of n bytes at s,
 * for a table keyed by one field: the producer need not encode a row. */
int64_t gl_agg_slot_str(gl_agg *a, const void *s, size_t n);

/* gl_agg_slot_str for each of the msgpack strings back to back in
 * [p, p+len), in order, for a caller that gave slot numbers out ahead
 * (worker.lua). Returns how many slots the table has then, -1 when out of
 * memory, -2 if the bytes are not strings. */
int64_t gl_agg_slot_strs(gl_agg *a, const uint8_t *p, size_t len);

/* The slot of the row's key, or -1 if the key is not in the table. */
int64_t gl_agg_find(gl_agg *a, const uint8_t *row, size_t len);

/* For a caller with many rows to look up: the hash of a row's key (as
 * gl_agg_find computes it), a hint to start loading the table's bucket of
 * a hash, and gl_agg_find with the hash given. Hashing a few rows and
 * prefetching their buckets before finding them overlaps the cache misses
 * of a table bigger than the cache. */
uint64_t gl_agg_hash(const gl_agg *a, const uint8_t *row, size_t len);
void gl_agg_prefetch(const gl_agg *a, uint64_t h);
/* Once the bucket is in: the slot of the first key there whose hash may
 * be h (its entry prefetched), or -1. */
int64_t gl_agg_prefetch_slot(const gl_agg *a, uint64_t h);
int64_t gl_agg_find_hashed(gl_agg *a, const uint8_t *row, size_t len, uint64_t h);

/* The key bytes of a slot (borrowed: valid until the next gl_agg_slot). */
const uint8_t *gl_agg_key(const gl_agg *a, uint32_t slot, size_t *len);
uint32_t gl_agg_count(const gl_agg *a);
uint32_t gl_agg_nkeys(const gl_agg *a);
/* Bytes held by the table (keys and index). */
size_t gl_agg_bytes(const gl_agg *a);

#endif
