/* compare.c: the total order and hash of compare.h, walking msgpack bytes
 * without building values. */
#include "compare.h"

#include "mpk.h"

#include <math.h>
#include <string.h>

static int cmp_int_double(int64_t i, double d)
{
    if (d != d)
        return -1; /* NaN sorts after every number */
    if (d >= 9223372036854775808.0)
        return -1;
    if (d < -9223372036854775808.0)
        return 1;
    int64_t t = (int64_t)d; /* exact: |d| < 2^63 */
    if (i != t)
        return i < t ? -1 : 1;
    double frac = d - (double)t;
    return frac > 0 ? -1 : frac < 0 ? 1 : 0;
}

static int cmp_uint_double(uint64_t u, double d)
{
    if (d != d)
        return -1;
    if (d >= 18446744073709551616.0)
        return -1;
    if (d < 9223372036854775808.0)
        return 1; /* u > INT64_MAX */
    uint64_t t = (uint64_t)d;
    if (u != t)
        return u < t ? -1 : 1;
    double frac = d - (double)t;
    return frac > 0 ? -1 : frac < 0 ? 1 : 0;
}

static int cmp_num(const gl_num *a, const gl_num *b)
{
    switch (a->kind * 3 + b->kind) {
    case GL_NUM_INT * 3 + GL_NUM_INT:
        return a->v.i < b->v.i ? -1 : a->v.i > b->v.i;
    case GL_NUM_INT * 3 + GL_NUM_UINT:
        return -1;
    case GL_NUM_UINT * 3 + GL_NUM_INT:
        return 1;
    case GL_NUM_UINT * 3 + GL_NUM_UINT:
        return a->v.u < b->v.u ? -1 : a->v.u > b->v.u;
    case GL_NUM_INT * 3 + GL_NUM_DOUBLE:
        return cmp_int_double(a->v.i, b->v.d);
    case GL_NUM_DOUBLE * 3 + GL_NUM_INT:
        return -cmp_int_double(b->v.i, a->v.d);
    case GL_NUM_UINT * 3 + GL_NUM_DOUBLE:
        return cmp_uint_double(a->v.u, b->v.d);
    case GL_NUM_DOUBLE * 3 + GL_NUM_UINT:
        return -cmp_uint_double(b->v.u, a->v.d);
    default: {
        double x = a->v.d, y = b->v.d;
        if (x != x || y != y)
            return (x != x) - (y != y);
        return x < y ? -1 : x > y;
    }
    }
}

int gl_cmp_next(const uint8_t **a, const uint8_t *ea, const uint8_t **b, const uint8_t *eb)
{
    gl_mpk_head ha, hb;
    const uint8_t *pa = gl_mpk_head_read(*a, ea, &ha);
    const uint8_t *pb = gl_mpk_head_read(*b, eb, &hb);
    if (!pa || !pb) {
        /* Malformed input never reaches here (stores hold checked rows);
         * stop the walk rather than read past the end. */
        *a = ea;
        *b = eb;
        return 0;
    }
    if (ha.cls != hb.cls) {
        const uint8_t *ra = gl_mpk_skip(*a, ea), *rb = gl_mpk_skip(*b, eb);
        *a = ra ? ra : ea;
        *b = rb ? rb : eb;
        return ha.cls < hb.cls ? -1 : 1;
    }
    *a = pa;
    *b = pb;
    switch (ha.cls) {
    case GL_MPK_NIL:
        return 0;
    case GL_MPK_BOOL:
        return (int)ha.b - (int)hb.b;
    case GL_MPK_NUM:
        return cmp_num(&ha.num, &hb.num);
    case GL_MPK_STR: {
        uint32_t n = ha.n < hb.n ? ha.n : hb.n;
        int c = n ? memcmp(ha.body, hb.body, n) : 0;
        if (c)
            return c < 0 ? -1 : 1;
        return ha.n < hb.n ? -1 : ha.n > hb.n;
    }
    case GL_MPK_EXT: {
        if (ha.ext_type != hb.ext_type)
            return ha.ext_type < hb.ext_type ? -1 : 1;
        uint32_t n = ha.n < hb.n ? ha.n : hb.n;
        int c = n ? memcmp(ha.body, hb.body, n) : 0;
        if (c)
            return c < 0 ? -1 : 1;
        return ha.n < hb.n ? -1 : ha.n > hb.n;
    }
    case GL_MPK_MAP:
    case GL_MPK_ARRAY: {
        uint64_t na = ha.cls == GL_MPK_MAP ? 2ull * ha.n : ha.n;
        uint64_t nb = hb.cls == GL_MPK_MAP ? 2ull * hb.n : hb.n;
        int result = 0;
        if (ha.cls == GL_MPK_MAP && ha.n != hb.n)
            result = ha.n < hb.n ? -1 : 1;
        uint64_t i = 0;
        for (; i < na && i < nb && result == 0; i++)
            result = gl_cmp_next(a, ea, b, eb);
        /* Leave both pointers past their whole values: each side skips
         * its own items from the first one not compared. */
        uint64_t done = i;
        for (; i < na; i++) {
            const uint8_t *r = gl_mpk_skip(*a, ea);
            *a = r ? r : ea;
        }
        for (uint64_t j = done; j < nb; j++) {
            const uint8_t *r = gl_mpk_skip(*b, eb);
            *b = r ? r : eb;
        }
        if (result)
            return result;
        return na < nb ? -1 : na > nb;
    }
    }
    return 0;
}

uint64_t gl_cmp_prefix(const uint8_t *p, const uint8_t *end)
{
    gl_mpk_head h;
    if (!gl_mpk_head_read(p, end, &h))
        return 0;
    uint64_t v = 0;
    switch (h.cls) {
    case GL_MPK_BOOL:
        v = h.b;
        break;
    case GL_MPK_NUM: {
        double d = h.num.kind == GL_NUM_INT    ? (double)h.num.v.i
                   : h.num.kind == GL_NUM_UINT ? (double)h.num.v.u
                                               : h.num.v.d;
        if (d != d)
            d = NAN; /* one NaN, above every number */
        else if (d == 0)
            d = 0; /* -0 == 0 */
        uint64_t bits;
        memcpy(&bits, &d, 8);
        bits = bits >> 63 ? ~bits : bits | (1ull << 63);
        v = bits >> 8;
        break;
    }
    case GL_MPK_STR:
        for (uint32_t i = 0; i < 7; i++)
            v = v << 8 | (i < h.n ? h.body[i] : 0);
        break;
    default:
        break;
    }
    return (uint64_t)h.cls << 56 | v;
}

int gl_cmp_seq(const uint8_t *a, const uint8_t *ea, const uint8_t *b, const uint8_t *eb, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        int c = gl_cmp_next(&a, ea, &b, eb);
        if (c)
            return c;
    }
    return 0;
}

static inline uint64_t rd64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

/* The last n < 8 bytes as memcpy into a zeroed uint64_t would give them.
 * On a little-endian machine two overlapping loads do it without a call
 * (the bytes where they overlap are the same bytes in the same places). */
static inline uint64_t rd_tail(const uint8_t *p, size_t n)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    if (n >= 4) {
        uint32_t lo, hi;
        memcpy(&lo, p, 4);
        memcpy(&hi, p + n - 4, 4);
        return lo | (uint64_t)hi << (8 * (n - 4));
    }
    if (n >= 2) {
        uint16_t lo, hi;
        memcpy(&lo, p, 2);
        memcpy(&hi, p + n - 2, 2);
        return lo | (uint64_t)hi << (8 * (n - 2));
    }
    return n ? p[0] : 0;
#else
    uint64_t tail = 0;
    if (n)
        memcpy(&tail, p, n);
    return tail;
#endif
}

uint64_t gl_hash_bytes(const void *data, size_t n, uint64_t seed)
{
    const uint8_t *p = data;
    uint64_t h = seed ^ (n * 0x9e3779b97f4a7c15ull);
    while (n >= 8) {
        h = (h ^ gl_hash_mix(rd64(p))) * 0x9e3779b97f4a7c15ull;
        h ^= h >> 29;
        p += 8;
        n -= 8;
    }
    h ^= rd_tail(p, n) + n;
    return gl_hash_mix(h);
}

/* Class tags folded into hashes so nil, false and 0 differ. */
enum { H_NIL = 0x6e, H_BOOL = 0x62, H_NUM = 0x6e75, H_BIGNUM = 0x6e7542, H_NAN = 0x4e614e, H_STR = 0x73, H_ARR = 0x61, H_MAP = 0x6d, H_EXT = 0x65 };

static uint64_t hash_num(const gl_num *n, uint64_t seed)
{
    uint64_t bits;
    /* Values from 2^63 up get their own tag, so -1 and 2^64-1 (same bit
     * pattern) do not collide. */
    uint64_t tag = H_NUM;
    if (n->kind == GL_NUM_DOUBLE) {
        double d = n->v.d;
        if (d != d)
            return gl_hash_mix(seed ^ H_NAN);
        /* An integral double hashes as the integer it equals. */
        if (d == floor(d) && d >= -9223372036854775808.0 && d < 18446744073709551616.0) {
            if (d < 9223372036854775808.0) {
                bits = (uint64_t)(int64_t)d;
            } else {
                bits = (uint64_t)d;
                tag = H_BIGNUM;
            }
        } else {
            memcpy(&bits, &d, 8);
            bits ^= 0x5bd1e9955bd1e995ull;
        }
    } else if (n->kind == GL_NUM_INT) {
        bits = (uint64_t)n->v.i;
    } else {
        bits = n->v.u;
        tag = H_BIGNUM;
    }
    return gl_hash_mix(seed ^ gl_hash_mix(bits ^ tag));
}

uint64_t gl_hash_str(const void *s, size_t n, uint64_t seed) { return gl_hash_bytes(s, n, seed ^ H_STR); }

uint64_t gl_hash_next(const uint8_t **pp, const uint8_t *end, uint64_t seed)
{
    /* Keys are mostly short strings: no need for the whole header read. */
    const uint8_t *s = *pp;
    if (s < end && (*s & 0xe0) == 0xa0 && (size_t)(end - s) > (size_t)(*s & 0x1f)) {
        size_t n = *s & 0x1f;
        *pp = s + 1 + n;
        return gl_hash_str(s + 1, n, seed);
    }
    gl_mpk_head h;
    const uint8_t *p = gl_mpk_head_read(*pp, end, &h);
    if (!p) {
        *pp = end;
        return seed;
    }
    *pp = p;
    switch (h.cls) {
    case GL_MPK_NIL:
        return gl_hash_mix(seed ^ H_NIL);
    case GL_MPK_BOOL:
        return gl_hash_mix(seed ^ (H_BOOL + h.b));
    case GL_MPK_NUM:
        return hash_num(&h.num, seed);
    case GL_MPK_STR:
        return gl_hash_str(h.body, h.n, seed);
    case GL_MPK_EXT:
        return gl_hash_bytes(h.body, h.n, seed ^ H_EXT ^ ((uint64_t)(uint8_t)h.ext_type << 8));
    case GL_MPK_ARRAY:
    case GL_MPK_MAP: {
        uint64_t items = h.cls == GL_MPK_MAP ? 2ull * h.n : h.n;
        uint64_t acc = gl_hash_mix(seed ^ (h.cls == GL_MPK_MAP ? H_MAP : H_ARR) ^ ((uint64_t)h.n << 16));
        for (uint64_t i = 0; i < items; i++)
            acc = gl_hash_next(pp, end, acc);
        return acc;
    }
    }
    return seed;
}
