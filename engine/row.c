/* row.c: field access, keys and rendering on msgpack rows. */
#include "row.h"

#include "compare.h"
#include "mpk.h"

#include <math.h>
#include <stdio.h>

static const uint8_t nil_byte[1] = {0xc0};

const uint8_t *gl_row_check(const uint8_t *p, const uint8_t *end, uint32_t *nfields)
{
    gl_mpk_head h;
    if (!gl_mpk_head_read(p, end, &h) || h.cls != GL_MPK_ARRAY)
        return NULL;
    *nfields = h.n;
    return gl_mpk_skip(p, end);
}

bool gl_rows_valid(const uint8_t *p, size_t len, uint64_t nrows)
{
    const uint8_t *end = p + len;
    uint32_t nf;
    for (uint64_t i = 0; i < nrows; i++) {
        p = gl_row_check(p, end, &nf);
        if (!p)
            return false;
    }
    return p == end;
}

const uint8_t *gl_row_end_slow(const uint8_t *p, const uint8_t *end)
{
    const uint8_t *r = gl_mpk_skip(p, end);
    return r ? r : end;
}

const uint8_t *gl_row_fields_slow(const uint8_t *row, const uint8_t *end, uint32_t *nfields)
{
    gl_mpk_head h;
    const uint8_t *p = gl_mpk_head_read(row, end, &h);
    if (!p || h.cls != GL_MPK_ARRAY) {
        *nfields = 0;
        return end;
    }
    *nfields = h.n;
    return p;
}

/* The highest field of the key, if the key is several fields all within
 * GL_SPLIT_MAX; else 0 (locate each field on its own). */
static uint32_t split_upto(const gl_keyspec *k)
{
    if (k->n < 2 || k->n == GL_KEY_ROW)
        return 0;
    uint32_t m = gl_key_max_field(k);
    return m <= GL_SPLIT_MAX ? m : 0;
}

uint32_t gl_key_max_field(const gl_keyspec *k)
{
    uint32_t m = 0;
    for (uint32_t i = 0; k->n != GL_KEY_ROW && i < k->n; i++)
        m = k->f[i] > m ? k->f[i] : m;
    return m;
}

uint32_t gl_row_split(const uint8_t *row, const uint8_t *end, uint32_t upto, const uint8_t **fs,
                      const uint8_t **rowend)
{
    uint32_t nf;
    const uint8_t *p = gl_row_fields(row, end, &nf);
    uint32_t n = nf < upto ? nf : upto;
    for (uint32_t i = 0; i < n; i++) {
        fs[i] = p;
        p = gl_field_end(p, end);
    }
    fs[n] = p;
    if (rowend) {
        for (uint32_t i = n; i < nf; i++)
            p = gl_field_end(p, end);
        *rowend = p;
    }
    return n;
}

/* Field f (1-based) of a split row, or the nil of a missing field. */
static inline void split_field(const uint8_t **fs, uint32_t n, uint32_t f, const uint8_t **s, const uint8_t **e)
{
    if (f >= 1 && f <= n) {
        *s = fs[f - 1];
        *e = fs[f];
    } else {
        *s = nil_byte;
        *e = nil_byte + 1;
    }
}

int gl_row_key_put(gl_buf *out, const uint8_t *row, const uint8_t *end, const gl_keyspec *k)
{
    if (k->n == GL_KEY_ROW)
        return gl_buf_append(out, row, (size_t)(gl_row_end(row, end) - row));
    uint32_t upto = split_upto(k);
    const uint8_t *fs[GL_SPLIT_MAX + 1];
    uint32_t n = upto ? gl_row_split(row, end, upto, fs, NULL) : 0;
    for (uint32_t i = 0; i < k->n; i++) {
        const uint8_t *s, *e;
        if (upto)
            split_field(fs, n, k->f[i], &s, &e);
        else
            gl_row_field(row, end, k->f[i], &s, &e);
        if (gl_buf_append(out, s, (size_t)(e - s)))
            return -1;
    }
    return 0;
}

static bool in_key(const gl_keyspec *k, uint32_t f)
{
    if (k->n == GL_KEY_ROW)
        return true;
    for (uint32_t i = 0; i < k->n; i++)
        if (k->f[i] == f)
            return true;
    return false;
}

uint32_t gl_row_rest_count(const uint8_t *row, const uint8_t *end, const gl_keyspec *k)
{
    uint32_t nf, n = 0;
    gl_row_fields(row, end, &nf);
    if (k->n == 1)
        return nf - (k->f[0] <= nf);
    for (uint32_t i = 1; i <= nf; i++)
        n += !in_key(k, i);
    return n;
}

int gl_row_rest_put(gl_buf *out, const uint8_t *row, const uint8_t *end, const gl_keyspec *k)
{
    uint32_t nf;
    const uint8_t *p = gl_row_fields(row, end, &nf);
    if (k->n == 1 && k->f[0] == 1 && nf) {
        /* The rest is the fields after the first, back to back. */
        const uint8_t *q = p = gl_field_end(p, end);
        for (uint32_t i = 1; i < nf; i++)
            q = gl_field_end(q, end);
        return gl_buf_append(out, p, (size_t)(q - p));
    }
    for (uint32_t i = 1; i <= nf; i++) {
        const uint8_t *fe = gl_field_end(p, end);
        if (!in_key(k, i) && gl_buf_append(out, p, (size_t)(fe - p)))
            return -1;
        p = fe;
    }
    return 0;
}

uint64_t gl_row_key_hash(const uint8_t *row, const uint8_t *end, const gl_keyspec *k, uint64_t seed)
{
    if (k->n == GL_KEY_ROW)
        return gl_hash_next(&row, end, seed);
    if (k->n == 1) {
        const uint8_t *s, *e;
        gl_row_field(row, end, k->f[0], &s, &e);
        return gl_hash_next(&s, e, seed);
    }
    uint32_t upto = split_upto(k);
    const uint8_t *fs[GL_SPLIT_MAX + 1];
    uint32_t n = upto ? gl_row_split(row, end, upto, fs, NULL) : 0;
    uint64_t h = seed;
    for (uint32_t i = 0; i < k->n; i++) {
        const uint8_t *s, *e;
        if (upto)
            split_field(fs, n, k->f[i], &s, &e);
        else
            gl_row_field(row, end, k->f[i], &s, &e);
        h = gl_hash_next(&s, e, h);
    }
    return h;
}

int gl_row_cmp(const uint8_t *a, const uint8_t *ea, const uint8_t *b, const uint8_t *eb,
               const gl_keyspec *k, bool whole)
{
    if (k->n == GL_KEY_ROW)
        return gl_cmp_next(&a, ea, &b, eb);
    for (uint32_t i = 0; i < k->n; i++) {
        const uint8_t *as, *ae, *bs, *be;
        gl_row_field(a, ea, k->f[i], &as, &ae);
        gl_row_field(b, eb, k->f[i], &bs, &be);
        int c = gl_cmp_next(&as, ae, &bs, be);
        if (c)
            return c;
    }
    if (!whole)
        return 0;
    return gl_cmp_next(&a, ea, &b, eb);
}

int gl_row_key_cmp_bytes(const uint8_t *row, const uint8_t *end, const gl_keyspec *k,
                         const uint8_t *key, const uint8_t *kend)
{
    if (k->n == GL_KEY_ROW)
        return gl_cmp_next(&row, end, &key, kend);
    for (uint32_t i = 0; i < k->n; i++) {
        const uint8_t *fs, *fe;
        gl_row_field(row, end, k->f[i], &fs, &fe);
        int c = gl_cmp_next(&fs, fe, &key, kend);
        if (c)
            return c;
    }
    return 0;
}

/* Rendering: Lua-like literals, so a message shows ("a", 1, nil). */
typedef struct fmt {
    char *out;
    size_t len, max;
    bool cut; /* something did not fit */
} fmt;

static void put(fmt *f, const char *s, size_t n)
{
    size_t i = 0;
    for (; i < n && f->len + 1 < f->max; i++)
        f->out[f->len++] = s[i];
    f->cut |= i < n;
    f->out[f->len] = 0;
}

static void puts_(fmt *f, const char *s) { put(f, s, strlen(s)); }

static const uint8_t *fmt_value(fmt *f, const uint8_t *p, const uint8_t *end, int depth)
{
    gl_mpk_head h;
    const uint8_t *q = gl_mpk_head_read(p, end, &h);
    char tmp[64];
    if (!q) {
        puts_(f, "<malformed>");
        return end;
    }
    switch (h.cls) {
    case GL_MPK_NIL: puts_(f, "nil"); return q;
    case GL_MPK_BOOL: puts_(f, h.b ? "true" : "false"); return q;
    case GL_MPK_NUM:
        if (h.num.kind == GL_NUM_INT)
            snprintf(tmp, sizeof tmp, "%lld", (long long)h.num.v.i);
        else if (h.num.kind == GL_NUM_UINT)
            snprintf(tmp, sizeof tmp, "%llu", (unsigned long long)h.num.v.u);
        else
            snprintf(tmp, sizeof tmp, "%.17g", h.num.v.d);
        puts_(f, tmp);
        return q;
    case GL_MPK_STR:
        put(f, "\"", 1);
        for (uint32_t i = 0; i < h.n && f->len + 1 < f->max; i++) {
            uint8_t c = h.body[i];
            if (c == '"' || c == '\\') {
                tmp[0] = '\\'; tmp[1] = (char)c;
                put(f, tmp, 2);
            } else if (c < 0x20 || c >= 0x7f) {
                snprintf(tmp, sizeof tmp, "\\%u", c);
                puts_(f, tmp);
            } else {
                put(f, (const char *)&c, 1);
            }
        }
        put(f, "\"", 1);
        return q;
    case GL_MPK_EXT:
        snprintf(tmp, sizeof tmp, "<ext %d, %u bytes>", h.ext_type, h.n);
        puts_(f, tmp);
        return q;
    case GL_MPK_ARRAY:
    case GL_MPK_MAP: {
        bool map = h.cls == GL_MPK_MAP;
        puts_(f, depth ? "{" : "(");
        for (uint32_t i = 0; i < h.n; i++) {
            if (i)
                puts_(f, ", ");
            if (map) {
                puts_(f, "[");
                q = fmt_value(f, q, end, depth + 1);
                puts_(f, "] = ");
            }
            q = fmt_value(f, q, end, depth + 1);
            if (f->len + 1 >= f->max) {
                f->cut = true; /* the closing bracket at least is lost */
                return end;
            }
        }
        puts_(f, depth ? "}" : ")");
        return q;
    }
    }
    return end;
}

void gl_row_format(const uint8_t *row, const uint8_t *end, char *out, size_t max)
{
    if (!max)
        return;
    fmt f = {out, 0, max, false};
    out[0] = 0;
    fmt_value(&f, row, end, 0);
    if (f.cut && max > 4)
        memcpy(out + max - 4, "...", 4);
}
