/* op_sort.c: sort_by's per-range sort and top's bounded selection. Rows are
 * kept in one arena with an index of (offset, length); the order is the key
 * (descending if asked), then the whole row ascending, so equal keys still
 * come out in one order whatever the shard count. top keeps at most about
 * 2n rows: past that it sorts and drops all but the first n, and from then
 * on drops on arrival every row that sorts after the n-th it kept. */
#define _GNU_SOURCE
#include "task.h"

#include <stdlib.h>

typedef struct ent {
    size_t off;
    size_t len;
} ent;

typedef struct sortst {
    gl_buf arena;
    ent *v;
    size_t n, cap;
    bool top;
    size_t keep; /* top: rows to keep */
    gl_buf bound; /* top: the keep-th row at the last compact, once there was one */
} sortst;

typedef struct cmpctx {
    const uint8_t *base;
    const gl_keyspec *key;
    bool desc;
} cmpctx;

static int cmp_rows(const cmpctx *c, const uint8_t *pa, const uint8_t *ea, const uint8_t *pb, const uint8_t *eb)
{
    int r = gl_row_cmp(pa, ea, pb, eb, c->key, false);
    if (r)
        return c->desc ? -r : r;
    static const gl_keyspec none;
    return gl_row_cmp(pa, ea, pb, eb, &none, true);
}

static int cmp_ent(const void *x, const void *y, void *arg)
{
    const cmpctx *c = arg;
    const ent *a = x, *b = y;
    const uint8_t *pa = c->base + a->off, *pb = c->base + b->off;
    return cmp_rows(c, pa, pa + a->len, pb, pb + b->len);
}

static void sort_all(gl_opr *op)
{
    sortst *s = op->st;
    cmpctx c = {s->arena.data, &op->d->key, op->d->desc};
    if (s->n > 1)
        qsort_r(s->v, s->n, sizeof *s->v, cmp_ent, &c);
}

/* Keeps the first s->keep rows in order, in a fresh arena. */
static int compact(gl_opr *op)
{
    sortst *s = op->st;
    sort_all(op);
    if (s->n > s->keep)
        s->n = s->keep;
    gl_buf fresh = {0};
    for (size_t i = 0; i < s->n; i++) {
        size_t off = fresh.len;
        if (gl_buf_append(&fresh, s->arena.data + s->v[i].off, s->v[i].len)) {
            gl_buf_free(&fresh);
            return -1;
        }
        s->v[i].off = off;
    }
    gl_buf_free(&s->arena);
    s->arena = fresh;
    s->bound.len = 0;
    if (s->keep && s->n == s->keep)
        return gl_buf_append(&s->bound, s->arena.data + s->v[s->n - 1].off, s->v[s->n - 1].len);
    return 0;
}

static int add_ent(sortst *s, size_t off, size_t len)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 1024;
        ent *v = realloc(s->v, cap * sizeof *v);
        if (!v)
            return -1;
        s->v = v;
        s->cap = cap;
    }
    s->v[s->n++] = (ent){off, len};
    return 0;
}

/* top with a bound: a row that sorts after it has `keep` rows before it
 * already, so it is dropped without being stored or sorted. Rows equal to
 * the bound are kept: what reaches the final sort still holds every row
 * that could be among the first `keep`. */
static int top_push(gl_opr *op, const uint8_t *rows, size_t len, uint64_t nrows)
{
    sortst *s = op->st;
    cmpctx c = {NULL, &op->d->key, op->d->desc};
    const uint8_t *b = s->bound.data, *be = b + s->bound.len;
    const uint8_t *p = rows, *end = rows + len;
    for (uint64_t r = 0; r < nrows; r++) {
        const uint8_t *row = p;
        p = gl_row_end(p, end);
        if (cmp_rows(&c, row, p, b, be) > 0)
            continue;
        size_t off = s->arena.len;
        if (gl_buf_append(&s->arena, row, (size_t)(p - row)) || add_ent(s, off, (size_t)(p - row)))
            return gl_err_set(&op->t->err, GL_ENOMEM, "top: out of memory");
    }
    if (s->n >= 2 * (s->keep > 1024 ? s->keep : 1024) && compact(op))
        return gl_err_set(&op->t->err, GL_ENOMEM, "top: out of memory");
    return 0;
}

static int sort_push(gl_opr *op, const uint8_t *rows, size_t len, uint64_t nrows)
{
    sortst *s = op->st;
    if (s->top && s->bound.len)
        return top_push(op, rows, len, nrows);
    size_t base = s->arena.len;
    if (gl_buf_append(&s->arena, rows, len))
        return gl_err_set(&op->t->err, GL_ENOMEM, "sort: out of memory");
    const uint8_t *p = rows, *end = rows + len;
    for (uint64_t r = 0; r < nrows; r++) {
        const uint8_t *row = p;
        p = gl_row_end(p, end);
        if (s->n == s->cap) {
            size_t cap = s->cap ? s->cap * 2 : 1024;
            ent *v = realloc(s->v, cap * sizeof *v);
            if (!v)
                return gl_err_set(&op->t->err, GL_ENOMEM, "sort: out of memory");
            s->v = v;
            s->cap = cap;
        }
        s->v[s->n++] = (ent){base + (size_t)(row - rows), (size_t)(p - row)};
    }
    if (s->top && s->n >= 2 * (s->keep > 1024 ? s->keep : 1024) && compact(op))
        return gl_err_set(&op->t->err, GL_ENOMEM, "top: out of memory");
    return 0;
}

static int sort_finish(gl_opr *op)
{
    sortst *s = op->st;
    sort_all(op);
    size_t n = s->top && s->keep < s->n ? s->keep : s->n;
    for (size_t i = 0; i < n; i++) {
        if (gl_buf_append(&op->out, s->arena.data + s->v[i].off, s->v[i].len))
            return gl_err_set(&op->t->err, GL_ENOMEM, "sort: out of memory");
        op->out_rows++;
        int rc = gl_op_flush(op, GL_CHUNK_BYTES / 4);
        if (rc)
            return rc;
    }
    return gl_op_flush(op, 0);
}

static void sort_destroy(gl_opr *op)
{
    sortst *s = op->st;
    if (!s)
        return;
    gl_buf_free(&s->arena);
    gl_buf_free(&s->bound);
    free(s->v);
    free(s);
}

int gl_op_sort_init(gl_opr *op)
{
    sortst *s = calloc(1, sizeof *s);
    if (!s)
        return gl_err_set(&op->t->err, GL_ENOMEM, "sort: out of memory");
    s->top = op->d->kind == GL_OP_TOP;
    if (s->top)
        s->keep = op->d->limit > 0 ? (size_t)op->d->limit : 0;
    op->st = s;
    op->push = sort_push;
    op->finish = sort_finish;
    op->destroy = sort_destroy;
    return 0;
}
