/* mpk.h: the msgpack subset rows are made of, read and written in place.
 *
 * Rows never leave msgpack form in C: these helpers write canonical
 * encodings (the smallest form for each integer, str for all byte strings)
 * into a gl_buf, and walk encoded values without decoding them. Every reader
 * takes an end pointer and returns NULL on truncated or malformed input, so
 * bytes from a file or a socket can be checked before they are trusted.
 * Format: https://github.com/msgpack/msgpack/blob/master/spec.md */
#ifndef GL_MPK_H
#define GL_MPK_H

#include "buf.h"

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

/* Classes in the order keys sort (DESIGN.md, data model). */
enum gl_mpk_class {
    GL_MPK_NIL,
    GL_MPK_BOOL,
    GL_MPK_NUM,
    GL_MPK_STR,
    GL_MPK_ARRAY,
    GL_MPK_MAP,
    GL_MPK_EXT,
};

enum gl_num_kind { GL_NUM_INT, GL_NUM_UINT, GL_NUM_DOUBLE };

typedef struct gl_num {
    enum gl_num_kind kind; /* GL_NUM_UINT only for values above INT64_MAX */
    union {
        int64_t i;
        uint64_t u;
        double d;
    } v;
} gl_num;

/* One value's head: its class and what follows the header. */
typedef struct gl_mpk_head {
    enum gl_mpk_class cls;
    const uint8_t *body; /* first byte after the header */
    uint32_t n;          /* str: byte length; array: items; map: pairs; ext: length */
    int8_t ext_type;
    bool b;              /* GL_MPK_BOOL */
    gl_num num;          /* GL_MPK_NUM */
} gl_mpk_head;

/* Reads the header of the value at p. Returns p past the header (for str and
 * ext: past the payload too), or NULL if the bytes before end are malformed. */
const uint8_t *gl_mpk_head_read(const uint8_t *p, const uint8_t *end, gl_mpk_head *h);

/* Returns p past one whole value (nested arrays and maps included), or NULL.
 * Nesting deeper than GL_MPK_MAX_DEPTH is treated as malformed. */
#define GL_MPK_MAX_DEPTH 256
const uint8_t *gl_mpk_skip(const uint8_t *p, const uint8_t *end);

/* The whole size in bytes of a value that its first byte alone sizes
 * (nil, booleans, every number, fixstr, fixext, empty containers), by that
 * byte; 0 for the others (containers, str/bin/ext with a length field,
 * the unused 0xc1). Rows are mostly such values: walking a row is then a
 * load and an add per field. */
extern const uint8_t gl_mpk_size1[256];

/* gl_mpk_skip, with the values gl_mpk_size1 sizes done inline. */
static inline const uint8_t *gl_mpk_next(const uint8_t *p, const uint8_t *end)
{
    if (p < end) {
        size_t n = gl_mpk_size1[*p];
        if (n && (size_t)(end - p) >= n)
            return p + n;
    }
    return gl_mpk_skip(p, end);
}

/* Unchecked writers for loops that reserved room first: each writes at w
 * and returns w past the value. A number takes at most GL_MPK_NUM_MAX
 * bytes; a string of n bytes at most n + 5 (n < 2^32). */
#define GL_MPK_NUM_MAX 9
uint8_t *gl_mpk_w_uint(uint8_t *w, uint64_t v);
uint8_t *gl_mpk_w_int_slow(uint8_t *w, int64_t v);
static inline uint8_t *gl_mpk_w_int(uint8_t *w, int64_t v)
{
    if (v >= -32 && v < 128) { /* fixint */
        *w = (uint8_t)v;
        return w + 1;
    }
    return gl_mpk_w_int_slow(w, v);
}
static inline uint8_t *gl_mpk_w_str(uint8_t *w, const void *s, size_t n)
{
    if (n < 32) {
        *w++ = (uint8_t)(0xa0 | n);
    } else if (n <= 0xff) {
        *w++ = 0xd9;
        *w++ = (uint8_t)n;
    } else if (n <= 0xffff) {
        *w++ = 0xda;
        *w++ = (uint8_t)(n >> 8);
        *w++ = (uint8_t)n;
    } else {
        *w++ = 0xdb;
        for (int i = 3; i >= 0; i--)
            *w++ = (uint8_t)(n >> (8 * i));
    }
    if (n)
        memcpy(w, s, n);
    return w + n;
}

/* Writers: 0 ok, -1 out of memory. */
int gl_mpk_put_nil(gl_buf *b);
int gl_mpk_put_bool(gl_buf *b, bool v);
int gl_mpk_put_int(gl_buf *b, int64_t v);
int gl_mpk_put_uint(gl_buf *b, uint64_t v);
int gl_mpk_put_double(gl_buf *b, double v);
int gl_mpk_put_str(gl_buf *b, const void *s, size_t n);
int gl_mpk_put_array(gl_buf *b, uint32_t n);
int gl_mpk_put_map(gl_buf *b, uint32_t n);
/* A number written the way Lua writes one: integral doubles in int64 range
 * (but not -0.0) become integers, everything else stays a double. */
int gl_mpk_put_number(gl_buf *b, double v);

#endif
