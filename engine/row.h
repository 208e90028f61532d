/* row.h: a row is one msgpack array; its fields are the array's items.
 * A field past the end of a row reads as nil, so (1, nil) and (1) share a
 * key, but rows keep their own field counts everywhere. Keys are lists of
 * 1-based field positions; a key's bytes are its fields' encodings, one
 * after another (that is what hash tables store and range bounds hold). */
#ifndef GL_ROW_H
#define GL_ROW_H

#include "buf.h"
#include "mpk.h"

#include <stdbool.h>
#include <stdint.h>

#define GL_KEY_MAX 16
#define GL_KEY_ROW 0xffffffffu  /* n: the whole row is the key */

typedef struct gl_keyspec {
    uint32_t n;                 /* 0: no key fields (one group); GL_KEY_ROW: the whole row */
    uint32_t f[GL_KEY_MAX];     /* 1-based field positions */
} gl_keyspec;

/* How many msgpack values a key's bytes hold. */
static inline uint32_t gl_key_values(const gl_keyspec *k) { return k->n == GL_KEY_ROW ? 1 : k->n; }

/* Checks that [p, end) starts with one well-formed row (an array). Returns
 * the end of that row and its field count, or NULL if malformed. */
const uint8_t *gl_row_check(const uint8_t *p, const uint8_t *end, uint32_t *nfields);

/* Checks that [p, p+len) holds exactly nrows well-formed rows. */
bool gl_rows_valid(const uint8_t *p, size_t len, uint64_t nrows);

/* Field count and start of the first field of a well-formed row. */
const uint8_t *gl_row_fields_slow(const uint8_t *row, const uint8_t *end, uint32_t *nfields);
static inline const uint8_t *gl_row_fields(const uint8_t *row, const uint8_t *end, uint32_t *nfields)
{
    if (row < end && (*row & 0xf0) == 0x90) { /* fixarray: fewer than 16 fields */
        *nfields = *row & 0x0f;
        return row + 1;
    }
    return gl_row_fields_slow(row, end, nfields);
}

/* Walks a well-formed row once: fs[0..n) get the starts of its first n =
 * min(fields, upto) fields and fs[n] the end of the last of them; *rowend
 * (if not NULL) the row's end. Returns n. fs has room for upto + 1. */
#define GL_SPLIT_MAX 32
uint32_t gl_row_split(const uint8_t *row, const uint8_t *end, uint32_t upto, const uint8_t **fs,
                      const uint8_t **rowend);

/* The highest field position in a key (0 for none or the whole row). */
uint32_t gl_key_max_field(const gl_keyspec *k);

/* Appends the key's bytes (its fields' encodings in key order) to out. */
int gl_row_key_put(gl_buf *out, const uint8_t *row, const uint8_t *end, const gl_keyspec *k);

uint64_t gl_row_key_hash(const uint8_t *row, const uint8_t *end, const gl_keyspec *k, uint64_t seed);

/* The fields of a row that are not key fields ("the rest"), in order:
 * how many there are, and their encodings appended to out. */
uint32_t gl_row_rest_count(const uint8_t *row, const uint8_t *end, const gl_keyspec *k);
int gl_row_rest_put(gl_buf *out, const uint8_t *row, const uint8_t *end, const gl_keyspec *k);

/* Compares the keys of two rows; then, if `whole`, the whole rows (the tie
 * break that makes sort and top give one order whatever the shard count). */
int gl_row_cmp(const uint8_t *a, const uint8_t *ea, const uint8_t *b, const uint8_t *eb,
               const gl_keyspec *k, bool whole);

/* Compares a row's key with key bytes made by gl_row_key_put. */
int gl_row_key_cmp_bytes(const uint8_t *row, const uint8_t *end, const gl_keyspec *k,
                         const uint8_t *key, const uint8_t *kend);

/* The end of the field (any value) at p, or end if it is malformed. */
static inline const uint8_t *gl_field_end(const uint8_t *p, const uint8_t *end)
{
    const uint8_t *r = gl_mpk_next(p, end);
    return r ? r : end;
}

/* Locates field k (1-based) of a well-formed row; a missing field is a nil
 * that points at a static byte. */
static inline void gl_row_field(const uint8_t *row, const uint8_t *end, uint32_t k, const uint8_t **fs,
                                const uint8_t **fe)
{
    uint32_t n;
    const uint8_t *p = gl_row_fields(row, end, &n);
    if (k < 1 || k > n) {
        *fs = (const uint8_t *)"\xc0";
        *fe = *fs + 1;
        return;
    }
    for (uint32_t i = 1; i < k; i++)
        p = gl_field_end(p, end);
    *fs = p;
    *fe = gl_field_end(p, end);
}

/* Rows of a batch one after another: returns the end of the row at p
 * (end if it is malformed). A row of fewer than 16 fields that
 * gl_mpk_size1 sizes is walked inline. */
const uint8_t *gl_row_end_slow(const uint8_t *p, const uint8_t *end);
static inline const uint8_t *gl_row_end(const uint8_t *p, const uint8_t *end)
{
    if (p < end && (*p & 0xf0) == 0x90) {
        const uint8_t *q = p + 1;
        for (uint32_t n = *p & 0x0f; n; n--) {
            size_t s = q < end ? gl_mpk_size1[*q] : 0;
            if (!s || (size_t)(end - q) < s)
                return gl_row_end_slow(p, end);
            q += s;
        }
        return q;
    }
    return gl_row_end_slow(p, end);
}

/* Writes a readable rendering of a row, cut past `max` bytes, for errors. */
void gl_row_format(const uint8_t *row, const uint8_t *end, char *out, size_t max);

#endif
