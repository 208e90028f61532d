/* source_rows.c: the integer range and rows handed over by the driver.
 * Both are cut into ntasks contiguous runs, so shard order is row order. */
#include "mpk.h"
#include "row.h"
#include "source.h"

int gl_range_read(const gl_step *s, uint32_t task, uint32_t ntasks, gl_emit_fn emit, void *ctx, gl_err *err)
{
    if (s->to < s->from)
        return 0;
    uint64_t count = (uint64_t)(s->to - s->from) + 1;
    /* count * task can overflow for huge ranges; split with 128-bit math. */
    uint64_t lo = (uint64_t)((unsigned __int128)count * task / ntasks);
    uint64_t hi = (uint64_t)((unsigned __int128)count * (task + 1) / ntasks);
    gl_buf b = {0};
    uint64_t n = 0;
    int rc = 0;
    for (uint64_t i = lo; i < hi && !rc; i++) {
        if (gl_mpk_put_array(&b, 1) || gl_mpk_put_int(&b, s->from + (int64_t)i)) {
            rc = gl_err_set(err, GL_ENOMEM, "range: out of memory");
            break;
        }
        if (++n == 4096) {
            rc = emit(ctx, b.data, b.len, n);
            b.len = 0;
            n = 0;
        }
    }
    if (!rc && n)
        rc = emit(ctx, b.data, b.len, n);
    gl_buf_free(&b);
    return rc;
}

int gl_rows_read(const gl_step *s, uint32_t task, uint32_t ntasks, gl_emit_fn emit, void *ctx, gl_err *err)
{
    (void)err;
    uint64_t lo = s->nrows * task / ntasks, hi = s->nrows * (task + 1) / ntasks;
    const uint8_t *p = s->rows.data, *end = p + s->rows.len;
    for (uint64_t i = 0; i < lo; i++)
        p = gl_row_end(p, end);
    const uint8_t *start = p;
    uint64_t n = 0;
    for (uint64_t i = lo; i < hi; i++) {
        p = gl_row_end(p, end);
        if (++n == 4096 || i + 1 == hi) {
            int rc = emit(ctx, start, (size_t)(p - start), n);
            if (rc)
                return rc;
            start = p;
            n = 0;
        }
    }
    return 0;
}
