/* mpk.c: msgpack headers read and written by hand. msgpack-c's unpacker
 * builds an object tree in a zone per value, which is too slow for the row
 * loop; the tests check this reader against msgpack-c. */
#include "mpk.h"

#include <math.h>
#include <string.h>

static inline uint16_t be16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }
static inline uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static inline uint64_t be64(const uint8_t *p) { return (uint64_t)be32(p) << 32 | be32(p + 4); }

static inline void num_u(gl_mpk_head *h, uint64_t u)
{
    if (u > INT64_MAX) {
        h->num.kind = GL_NUM_UINT;
        h->num.v.u = u;
    } else {
        h->num.kind = GL_NUM_INT;
        h->num.v.i = (int64_t)u;
    }
}

static inline void num_i(gl_mpk_head *h, int64_t i)
{
    h->num.kind = GL_NUM_INT;
    h->num.v.i = i;
}

#define NEED(k) do { if ((size_t)(end - p) < (size_t)(k)) return NULL; } while (0)

const uint8_t *gl_mpk_head_read(const uint8_t *p, const uint8_t *end, gl_mpk_head *h)
{
    NEED(1);
    uint8_t c = *p++;
    h->n = 0;
    if (c <= 0x7f) {
        h->cls = GL_MPK_NUM;
        num_i(h, c);
        return p;
    }
    if (c >= 0xe0) {
        h->cls = GL_MPK_NUM;
        num_i(h, (int8_t)c);
        return p;
    }
    if (c >= 0xa0 && c <= 0xbf) {
        h->cls = GL_MPK_STR;
        h->n = c & 0x1f;
        goto payload;
    }
    if (c >= 0x90 && c <= 0x9f) {
        h->cls = GL_MPK_ARRAY;
        h->n = c & 0x0f;
        h->body = p;
        return p;
    }
    if (c >= 0x80 && c <= 0x8f) {
        h->cls = GL_MPK_MAP;
        h->n = c & 0x0f;
        h->body = p;
        return p;
    }
    switch (c) {
    case 0xc0: h->cls = GL_MPK_NIL; return p;
    case 0xc2: h->cls = GL_MPK_BOOL; h->b = false; return p;
    case 0xc3: h->cls = GL_MPK_BOOL; h->b = true; return p;
    case 0xcc: NEED(1); h->cls = GL_MPK_NUM; num_i(h, p[0]); return p + 1;
    case 0xcd: NEED(2); h->cls = GL_MPK_NUM; num_i(h, be16(p)); return p + 2;
    case 0xce: NEED(4); h->cls = GL_MPK_NUM; num_i(h, be32(p)); return p + 4;
    case 0xcf: NEED(8); h->cls = GL_MPK_NUM; num_u(h, be64(p)); return p + 8;
    case 0xd0: NEED(1); h->cls = GL_MPK_NUM; num_i(h, (int8_t)p[0]); return p + 1;
    case 0xd1: NEED(2); h->cls = GL_MPK_NUM; num_i(h, (int16_t)be16(p)); return p + 2;
    case 0xd2: NEED(4); h->cls = GL_MPK_NUM; num_i(h, (int32_t)be32(p)); return p + 4;
    case 0xd3: NEED(8); h->cls = GL_MPK_NUM; num_i(h, (int64_t)be64(p)); return p + 8;
    case 0xca: {
        NEED(4);
        uint32_t u = be32(p);
        float f;
        memcpy(&f, &u, 4);
        h->cls = GL_MPK_NUM;
        h->num.kind = GL_NUM_DOUBLE;
        h->num.v.d = f;
        return p + 4;
    }
    case 0xcb: {
        NEED(8);
        uint64_t u = be64(p);
        h->cls = GL_MPK_NUM;
        h->num.kind = GL_NUM_DOUBLE;
        memcpy(&h->num.v.d, &u, 8);
        return p + 8;
    }
    case 0xd9: case 0xc4: NEED(1); h->cls = GL_MPK_STR; h->n = p[0]; p += 1; goto payload;
    case 0xda: case 0xc5: NEED(2); h->cls = GL_MPK_STR; h->n = be16(p); p += 2; goto payload;
    case 0xdb: case 0xc6: NEED(4); h->cls = GL_MPK_STR; h->n = be32(p); p += 4; goto payload;
    case 0xdc: NEED(2); h->cls = GL_MPK_ARRAY; h->n = be16(p); h->body = p + 2; return p + 2;
    case 0xdd: NEED(4); h->cls = GL_MPK_ARRAY; h->n = be32(p); h->body = p + 4; return p + 4;
    case 0xde: NEED(2); h->cls = GL_MPK_MAP; h->n = be16(p); h->body = p + 2; return p + 2;
    case 0xdf: NEED(4); h->cls = GL_MPK_MAP; h->n = be32(p); h->body = p + 4; return p + 4;
    case 0xd4: case 0xd5: case 0xd6: case 0xd7: case 0xd8:
        NEED(1);
        h->cls = GL_MPK_EXT;
        h->n = 1u << (c - 0xd4);
        h->ext_type = (int8_t)p[0];
        p += 1;
        goto payload;
    case 0xc7: NEED(2); h->cls = GL_MPK_EXT; h->n = p[0]; h->ext_type = (int8_t)p[1]; p += 2; goto payload;
    case 0xc8: NEED(3); h->cls = GL_MPK_EXT; h->n = be16(p); h->ext_type = (int8_t)p[2]; p += 3; goto payload;
    case 0xc9: NEED(5); h->cls = GL_MPK_EXT; h->n = be32(p); h->ext_type = (int8_t)p[4]; p += 5; goto payload;
    default: return NULL; /* 0xc1 is never used */
    }
payload:
    NEED(h->n);
    h->body = p;
    return p + h->n;
}

/* Sizes by first byte (mpk.h): fixint 1, fixmap/fixarray only when empty,
 * fixstr 1 + length, nil and booleans 1, float32 5, float64 9, uint8..64
 * and int8..64 2/3/5/9, fixext 1..16 two bytes of header more. */
#define R16(v) v, v, v, v, v, v, v, v, v, v, v, v, v, v, v, v
#define FIXSTR(b) b + 1, b + 2, b + 3, b + 4, b + 5, b + 6, b + 7, b + 8
const uint8_t gl_mpk_size1[256] = {
    R16(1), R16(1), R16(1), R16(1), R16(1), R16(1), R16(1), R16(1),       /* 0x00-0x7f */
    1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,                       /* 0x80-0x8f */
    1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,                       /* 0x90-0x9f */
    FIXSTR(0), FIXSTR(8), FIXSTR(16), FIXSTR(24),                         /* 0xa0-0xbf */
    1, 0, 1, 1, 0, 0, 0, 0, 0, 0, 5, 9, 2, 3, 5, 9,                       /* 0xc0-0xcf */
    2, 3, 5, 9, 3, 4, 6, 10, 18, 0, 0, 0, 0, 0, 0, 0,                     /* 0xd0-0xdf */
    R16(1), R16(1),                                                       /* 0xe0-0xff */
};
#undef R16
#undef FIXSTR

/* Returns p past the value if gl_mpk_size1 sizes it and it fits before
 * end, else NULL (gl_mpk_head_read then reads it, or finds it malformed).
 * p < end. */
static inline const uint8_t *skip_small(const uint8_t *p, const uint8_t *end)
{
    size_t n = gl_mpk_size1[*p];
    return n && (size_t)(end - p) >= n ? p + n : NULL;
}

const uint8_t *gl_mpk_skip(const uint8_t *p, const uint8_t *end)
{
    /* Iterative: left[d] counts the values still to skip in the open
     * container at depth d (depth 0: the value itself), so the depth drops
     * again when a container ends and only real nesting counts. The first
     * value is tried before the loop: most values are scalars. */
    const uint8_t *q = p < end ? skip_small(p, end) : NULL;
    if (q)
        return q;
    gl_mpk_head h0;
    q = gl_mpk_head_read(p, end, &h0);
    if (!q)
        return NULL;
    if ((h0.cls != GL_MPK_ARRAY && h0.cls != GL_MPK_MAP) || !h0.n)
        return q;
    uint64_t items0 = h0.cls == GL_MPK_MAP ? 2ull * h0.n : h0.n;
    if (items0 > (uint64_t)(end - q))
        return NULL; /* each item takes at least one byte */
    uint64_t left[GL_MPK_MAX_DEPTH + 1];
    int depth = 1;
    left[0] = 0;
    left[1] = items0;
    p = q;
    while (depth >= 0) {
        if (!left[depth]) {
            depth--;
            continue;
        }
        left[depth]--;
        const uint8_t *n1 = p < end ? skip_small(p, end) : NULL;
        if (n1) {
            p = n1;
            continue;
        }
        gl_mpk_head h;
        p = gl_mpk_head_read(p, end, &h);
        if (!p)
            return NULL;
        if ((h.cls == GL_MPK_ARRAY || h.cls == GL_MPK_MAP) && h.n) {
            if (++depth > GL_MPK_MAX_DEPTH)
                return NULL;
            uint64_t items = h.cls == GL_MPK_MAP ? 2ull * h.n : h.n;
            /* Each item takes at least one byte: reject counts the input cannot hold. */
            if (items > (uint64_t)(end - p))
                return NULL;
            left[depth] = items;
        }
    }
    return p;
}

#define PUT(b, n) do { if (gl_buf_reserve(b, n)) return -1; } while (0)

static inline void w16(uint8_t *p, uint16_t v) { p[0] = v >> 8; p[1] = (uint8_t)v; }
static inline void w32(uint8_t *p, uint32_t v)
{
    p[0] = v >> 24; p[1] = (uint8_t)(v >> 16); p[2] = (uint8_t)(v >> 8); p[3] = (uint8_t)v;
}
static inline void w64(uint8_t *p, uint64_t v) { w32(p, (uint32_t)(v >> 32)); w32(p + 4, (uint32_t)v); }

int gl_mpk_put_nil(gl_buf *b)
{
    PUT(b, 1);
    b->data[b->len++] = 0xc0;
    return 0;
}

int gl_mpk_put_bool(gl_buf *b, bool v)
{
    PUT(b, 1);
    b->data[b->len++] = v ? 0xc3 : 0xc2;
    return 0;
}

uint8_t *gl_mpk_w_uint(uint8_t *p, uint64_t v)
{
    if (v < 0x80) {
        p[0] = (uint8_t)v;
        return p + 1;
    } else if (v <= 0xff) {
        p[0] = 0xcc; p[1] = (uint8_t)v;
        return p + 2;
    } else if (v <= 0xffff) {
        p[0] = 0xcd; w16(p + 1, (uint16_t)v);
        return p + 3;
    } else if (v <= 0xffffffffu) {
        p[0] = 0xce; w32(p + 1, (uint32_t)v);
        return p + 5;
    }
    p[0] = 0xcf; w64(p + 1, v);
    return p + 9;
}

uint8_t *gl_mpk_w_int_slow(uint8_t *p, int64_t v)
{
    if (v >= 0)
        return gl_mpk_w_uint(p, (uint64_t)v);
    if (v >= -32) {
        p[0] = (uint8_t)(int8_t)v;
        return p + 1;
    } else if (v >= INT8_MIN) {
        p[0] = 0xd0; p[1] = (uint8_t)(int8_t)v;
        return p + 2;
    } else if (v >= INT16_MIN) {
        p[0] = 0xd1; w16(p + 1, (uint16_t)(int16_t)v);
        return p + 3;
    } else if (v >= INT32_MIN) {
        p[0] = 0xd2; w32(p + 1, (uint32_t)(int32_t)v);
        return p + 5;
    }
    p[0] = 0xd3; w64(p + 1, (uint64_t)v);
    return p + 9;
}

int gl_mpk_put_uint(gl_buf *b, uint64_t v)
{
    PUT(b, GL_MPK_NUM_MAX);
    b->len = (size_t)(gl_mpk_w_uint(b->data + b->len, v) - b->data);
    return 0;
}

int gl_mpk_put_int(gl_buf *b, int64_t v)
{
    PUT(b, GL_MPK_NUM_MAX);
    b->len = (size_t)(gl_mpk_w_int(b->data + b->len, v) - b->data);
    return 0;
}

int gl_mpk_put_double(gl_buf *b, double v)
{
    PUT(b, 9);
    uint64_t u;
    memcpy(&u, &v, 8);
    b->data[b->len] = 0xcb;
    w64(b->data + b->len + 1, u);
    b->len += 9;
    return 0;
}

int gl_mpk_put_number(gl_buf *b, double v)
{
    if (v >= -9223372036854775808.0 && v < 9223372036854775808.0 && v == floor(v) &&
        !(v == 0 && signbit(v)))
        return gl_mpk_put_int(b, (int64_t)v);
    return gl_mpk_put_double(b, v);
}

int gl_mpk_put_str(gl_buf *b, const void *s, size_t n)
{
    if (n > UINT32_MAX)
        return -1;
    PUT(b, 5 + n);
    b->len = (size_t)(gl_mpk_w_str(b->data + b->len, s, n) - b->data);
    return 0;
}

static int put_container(gl_buf *b, uint32_t n, uint8_t fix, uint8_t c16)
{
    PUT(b, 5);
    uint8_t *p = b->data + b->len;
    if (n < 16) {
        p[0] = fix | (uint8_t)n;
        b->len += 1;
    } else if (n <= 0xffff) {
        p[0] = c16; w16(p + 1, (uint16_t)n);
        b->len += 3;
    } else {
        p[0] = c16 + 1; w32(p + 1, n);
        b->len += 5;
    }
    return 0;
}

int gl_mpk_put_array(gl_buf *b, uint32_t n) { return put_container(b, n, 0x90, 0xdc); }
int gl_mpk_put_map(gl_buf *b, uint32_t n) { return put_container(b, n, 0x80, 0xde); }
