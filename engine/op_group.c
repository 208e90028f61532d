/* op_group.c: group_by_key and distinct, after their shuffle.
 * group_by_key holds a shard's rows by key and emits, per key in order of
 * first appearance, the key fields and the array of the rows' rests.
 * distinct passes on the first row of each key as it arrives (it also runs
 * before the shuffle, so duplicates are dropped map-side). */
#include "group.h"
#include "mpk.h"
#include "task.h"

#include <stdlib.h>

static int group_push(gl_opr *op, const uint8_t *rows, size_t len, uint64_t nrows)
{
    if (gl_groups_add(op->st, 0, rows, len, nrows))
        return gl_err_set(&op->t->err, GL_ENOMEM, "group_by_key: out of memory");
    return 0;
}

static int group_finish(gl_opr *op)
{
    gl_groups *g = op->st;
    uint32_t n = gl_groups_slots(g), nk = gl_key_values(&op->d->key);
    for (uint32_t s = 0; s < n; s++) {
        size_t klen;
        const uint8_t *key = gl_agg_key(gl_groups_table(g), s, &klen);
        if (gl_mpk_put_array(&op->out, nk + 1) || gl_buf_append(&op->out, key, klen) ||
            gl_groups_put_rests(&op->out, g, s, 0))
            return gl_err_set(&op->t->err, GL_ENOMEM, "group_by_key: out of memory");
        op->out_rows++;
        int rc = gl_op_flush(op, GL_CHUNK_BYTES / 4);
        if (rc)
            return rc;
    }
    return gl_op_flush(op, 0);
}

static void group_destroy(gl_opr *op) { gl_groups_free(op->st); }

static int distinct_push(gl_opr *op, const uint8_t *rows, size_t len, uint64_t nrows)
{
    const uint8_t *p = rows, *end = rows + len;
    for (uint64_t r = 0; r < nrows; r++) {
        const uint8_t *row = p;
        p = gl_row_end(p, end);
        int64_t s = gl_agg_slot(op->st, row, (size_t)(p - row));
        if (s < 0)
            return gl_err_set(&op->t->err, GL_ENOMEM, "distinct: out of memory");
        if (s & 1) {
            if (gl_buf_append(&op->out, row, (size_t)(p - row)))
                return gl_err_set(&op->t->err, GL_ENOMEM, "distinct: out of memory");
            op->out_rows++;
        }
    }
    return gl_op_flush(op, 0);
}

static int distinct_finish(gl_opr *op) { return gl_op_flush(op, 0); }
static void distinct_destroy(gl_opr *op) { gl_agg_free(op->st); }

int gl_op_group_init(gl_opr *op)
{
    if (op->d->kind == GL_OP_DISTINCT) {
        if (!(op->st = gl_agg_new(&op->d->key)))
            return gl_err_set(&op->t->err, GL_ENOMEM, "distinct: out of memory");
        op->push = distinct_push;
        op->finish = distinct_finish;
        op->destroy = distinct_destroy;
        return 0;
    }
    if (!(op->st = gl_groups_new(&op->d->key, 1)))
        return gl_err_set(&op->t->err, GL_ENOMEM, "group_by_key: out of memory");
    op->push = group_push;
    op->finish = group_finish;
    op->destroy = group_destroy;
    return 0;
}
