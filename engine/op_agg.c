/* op_agg.c: reduce_by_key and reduce with the built-in combiners, all in C.
 * sum adds each value field (integers stay integers until they would
 * overflow, then become doubles, as Lua numbers would); count counts rows,
 * and its merge phase is a sum of the counts. Rows come out in order of
 * first appearance of their key: key fields, then the combined values. */
#include "agg.h"
#include "mpk.h"
#include "task.h"

#include <stdio.h>
#include <stdlib.h>

typedef struct aggst {
    gl_agg *table;
    gl_num *vals;   /* slot * nv + j */
    size_t cap;     /* in slots */
    int32_t nv;     /* value fields; -1 until the first row */
} aggst;

static void add(gl_num *acc, const gl_num *v)
{
    if (acc->kind == GL_NUM_INT && v->kind == GL_NUM_INT) {
        int64_t r;
        if (!__builtin_add_overflow(acc->v.i, v->v.i, &r)) {
            acc->v.i = r;
            return;
        }
    }
    double a = acc->kind == GL_NUM_INT ? (double)acc->v.i : acc->kind == GL_NUM_UINT ? (double)acc->v.u : acc->v.d;
    double b = v->kind == GL_NUM_INT ? (double)v->v.i : v->kind == GL_NUM_UINT ? (double)v->v.u : v->v.d;
    acc->kind = GL_NUM_DOUBLE;
    acc->v.d = a + b;
}

static bool is_key_field(const gl_keyspec *k, uint32_t f)
{
    for (uint32_t i = 0; i < k->n; i++)
        if (k->f[i] == f)
            return true;
    return false;
}

/* Room for the values of one more slot (slots are dense: the new one is
 * a->cap at most). 0 ok, -1 out of memory. */
static int grow(aggst *a)
{
    size_t cap = a->cap ? a->cap * 2 : 1024;
    gl_num *v = realloc(a->vals, cap * (size_t)(a->nv ? a->nv : 1) * sizeof *v);
    if (!v)
        return -1;
    a->vals = v;
    a->cap = cap;
    return 0;
}

static int agg_push(gl_opr *op, const uint8_t *rows, size_t len, uint64_t nrows)
{
    aggst *a = op->st;
    gl_task *t = op->t;
    const gl_keyspec *k = &op->d->key;
    bool count = op->d->mode == GL_AGG_COUNT;
    const uint8_t *p = rows, *end = rows + len;
    for (uint64_t r = 0; r < nrows; r++) {
        /* One walk over the row's fields finds its end and its values;
         * the slot lookup reads only the row (the bound is the batch's). */
        const uint8_t *row = p;
        int64_t s = gl_agg_slot(a->table, row, (size_t)(end - row));
        if (s < 0)
            return gl_err_set(&t->err, GL_ENOMEM, "reduce: out of memory");
        uint32_t slot = (uint32_t)(s >> 1);
        uint32_t nf;
        const uint8_t *f = gl_row_fields(row, end, &nf);
        /* Value fields: those not in the key (a key field past the row's
         * end is a nil key field, not a value). */
        int32_t nv = (int32_t)nf;
        for (uint32_t i = 0; i < k->n; i++)
            nv -= k->f[i] <= nf;
        if (count)
            nv = 1;
        if (a->nv < 0)
            a->nv = nv < 0 ? 0 : nv;
        if (nv != a->nv) {
            char what[96];
            snprintf(what, sizeof what, "rows have %d value fields, earlier rows had %d", nv, a->nv);
            p = gl_row_end(row, end);
            return gl_task_fail_row(t, op->d->step, what, row, p);
        }
        if (slot >= a->cap && grow(a))
            return gl_err_set(&t->err, GL_ENOMEM, "reduce: out of memory");
        gl_num *acc = &a->vals[(size_t)slot * a->nv];
        if (count) {
            if (s & 1)
                acc->kind = GL_NUM_INT, acc->v.i = 0;
            acc->v.i++;
            p = gl_row_end(row, end);
            continue;
        }
        int32_t j = 0;
        for (uint32_t i = 1; i <= nf; i++) {
            if (is_key_field(k, i)) {
                f = gl_field_end(f, end);
                continue;
            }
            gl_mpk_head h;
            const uint8_t *q = gl_mpk_head_read(f, end, &h);
            if (!q || h.cls != GL_MPK_NUM) {
                char what[64];
                snprintf(what, sizeof what, "field %u is not a number", i);
                return gl_task_fail_row(t, op->d->step, what, row, gl_row_end(row, end));
            }
            f = q; /* a number's header is the whole value */
            if (s & 1)
                acc[j] = h.num;
            else
                add(&acc[j], &h.num);
            j++;
        }
        p = f;
    }
    return 0;
}

bool gl_op_agg_counts_first(const gl_opr *op)
{
    const gl_opdesc *d = op->d;
    return d->kind == GL_OP_AGG && d->mode == GL_AGG_COUNT && !d->merge && d->key.n == 1 && d->key.f[0] == 1 &&
           op->push == agg_push;
}

int gl_op_agg_count_str(gl_opr *op, const void *s, size_t n)
{
    aggst *a = op->st;
    int64_t sl = gl_agg_slot_str(a->table, s, n);
    if (sl < 0)
        return gl_err_set(&op->t->err, GL_ENOMEM, "reduce: out of memory");
    uint32_t slot = (uint32_t)(sl >> 1);
    a->nv = 1; /* what agg_push finds for count */
    if (slot >= a->cap && grow(a))
        return gl_err_set(&op->t->err, GL_ENOMEM, "reduce: out of memory");
    gl_num *acc = &a->vals[slot];
    if (sl & 1)
        acc->kind = GL_NUM_INT, acc->v.i = 0;
    acc->v.i++;
    return 0;
}

static int put_num(gl_buf *b, const gl_num *n)
{
    switch (n->kind) {
    case GL_NUM_INT: return gl_mpk_put_int(b, n->v.i);
    case GL_NUM_UINT: return gl_mpk_put_uint(b, n->v.u);
    default: return gl_mpk_put_double(b, n->v.d);
    }
}

static int agg_finish(gl_opr *op)
{
    aggst *a = op->st;
    uint32_t n = gl_agg_count(a->table);
    uint32_t nk = op->d->key.n;
    for (uint32_t s = 0; s < n; s++) {
        size_t klen;
        const uint8_t *key = gl_agg_key(a->table, s, &klen);
        int rc = gl_mpk_put_array(&op->out, nk + (uint32_t)a->nv) | gl_buf_append(&op->out, key, klen);
        for (int32_t j = 0; j < a->nv; j++)
            rc |= put_num(&op->out, &a->vals[(size_t)s * a->nv + j]);
        if (rc)
            return gl_err_set(&op->t->err, GL_ENOMEM, "reduce: out of memory");
        op->out_rows++;
        if ((rc = gl_op_flush(op, GL_CHUNK_BYTES / 4)))
            return rc;
    }
    return gl_op_flush(op, 0);
}

static void agg_destroy(gl_opr *op)
{
    aggst *a = op->st;
    if (!a)
        return;
    gl_agg_free(a->table);
    free(a->vals);
    free(a);
}

static size_t agg_held(gl_opr *op)
{
    aggst *a = op->st;
    return gl_agg_bytes(a->table) + a->cap * (size_t)(a->nv > 0 ? a->nv : 1) * sizeof(gl_num);
}

int gl_op_agg_init(gl_opr *op)
{
    aggst *a = calloc(1, sizeof *a);
    if (!a || !(a->table = gl_agg_new(&op->d->key))) {
        free(a);
        return gl_err_set(&op->t->err, GL_ENOMEM, "reduce: out of memory");
    }
    a->nv = -1;
    op->st = a;
    op->push = agg_push;
    op->finish = agg_finish;
    op->destroy = agg_destroy;
    op->held = op->d->merge ? NULL : agg_held;
    return 0;
}
