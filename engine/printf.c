/* printf.c: the fast path of ds:printf. A format made only of text, %s,
 * %d and %% is applied to rows in C, written to stdout with no Lua value
 * made per row, while each field is one whose Lua rendering is known: a
 * string under %s (its bytes), an integer under %s or %d (its digits; under
 * %s only below 1e14, where Lua's "%.14g" still prints every digit). The
 * first row that needs anything else stops it, and the driver formats that
 * row in Lua, so the output is byte for byte what string.format gives.
 *
 * Exported for lua/gleam/core.lua (its cdef declares it):
 *
 *   Formats rows from byte *off of the nrows rows at p (len bytes) until
 *   the end or a row it cannot do; *off is left at that row. Returns the
 *   rows written, or -1 if writing to stdout failed (errno says why).
 *   int64_t gl_printf_rows(const char *fmt, const uint8_t *p, size_t len, uint64_t nrows, size_t *off);
 */
#include "mpk.h"
#include "row.h"

#include <stdio.h>
#include <string.h>

int64_t gl_printf_rows(const char *fmt, const uint8_t *p, size_t len, uint64_t nrows, size_t *off);

/* Renders one row into buf; false if some field is not for the fast path. */
static bool render(const char *fmt, const uint8_t *row, const uint8_t *end, char *buf, size_t cap, size_t *n)
{
    uint32_t nf;
    const uint8_t *f = gl_row_fields(row, end, &nf);
    size_t w = 0;
    uint32_t k = 0;
    for (const char *c = fmt; *c; c++) {
        if (*c != '%' || c[1] == '%') {
            if (w == cap)
                return false;
            buf[w++] = *c;
            c += *c == '%';
            continue;
        }
        char conv = *++c;
        if ((conv != 's' && conv != 'd') || k++ >= nf || !f)
            return false;
        gl_mpk_head h;
        const uint8_t *next = gl_mpk_head_read(f, end, &h);
        if (!next)
            return false;
        if (conv == 's' && h.cls == GL_MPK_STR) {
            if (cap - w < h.n)
                return false;
            memcpy(buf + w, h.body, h.n);
            w += h.n;
        } else if (h.cls == GL_MPK_NUM && h.num.kind == GL_NUM_INT) {
            int64_t v = h.num.v.i;
            int64_t lim = conv == 's' ? 100000000000000ll : 9007199254740992ll;
            if (v >= lim || v <= -lim || cap - w < 24)
                return false;
            char tmp[24];
            int t = 0;
            uint64_t u = v < 0 ? (uint64_t)-v : (uint64_t)v;
            do
                tmp[t++] = (char)('0' + u % 10);
            while (u /= 10);
            if (v < 0)
                buf[w++] = '-';
            while (t)
                buf[w++] = tmp[--t];
        } else {
            return false;
        }
        f = gl_field_end(f, end);
    }
    *n = w;
    return true;
}

int64_t gl_printf_rows(const char *fmt, const uint8_t *p, size_t len, uint64_t nrows, size_t *off)
{
    const uint8_t *end = p + len;
    size_t at = *off;
    int64_t done = 0;
    char buf[4096];
    flockfile(stdout);
    for (uint64_t r = 0; r < nrows && at < len; r++) {
        const uint8_t *row = p + at;
        const uint8_t *rend = gl_row_end(row, end);
        size_t n;
        if (!rend || !render(fmt, row, rend, buf, sizeof buf, &n))
            break;
        if (fwrite_unlocked(buf, 1, n, stdout) != n) {
            done = -1;
            break;
        }
        at = (size_t)(rend - p);
        done++;
    }
    funlockfile(stdout);
    *off = at;
    return done;
}
