/* op_sort.c: sort_by's per-range sort and top's bounded selection. Rows are
 * kept in one arena with an index of (offset, length); the order is the key
 * (descending if asked), then the whole row ascending, so equal keys still
 * come out in one order whatever the shard count. top keeps at most about

 * 2n rows: past that it sorts and drops all but the first n, and from then
 * on drops on arrival every row that sorts after the n-th it kept.
 *
 * External sort: when the arena and index would pass the task's share of
 * the memory budget, the rows so far are sorted and written to LMDB as a
 * run, and the arena starts again. At the end the last rows are sorted in
 * memory and merged with the runs (a binary heap of cursors; run rows are
 * read in place from the map). The order is total over row bytes, so the
 * merge gives exactly the rows the in-memory sort would. */
#define _GNU_SOURCE
#include "compare.h"
#include "task.h"

#include <stdlib.h>
#include <string.h>

/* A row in the arena, with an order-preserving prefix of its first key
 * field (gl_cmp_prefix): most comparisons end at the prefix. */
typedef struct ent {
    size_t off;
    size_t len;
    uint64_t pfx;
} ent;

typedef struct sortst {
    gl_buf arena;
    ent *v;
    size_t n, cap;
    bool top;
    size_t keep; /* top: rows to keep */
    gl_buf bound; /* top: the keep-th row at the last compact, once there was one */
    uint64_t share; /* bytes before a run is spilled; 0: never */
    gl_output **runs;
    uint32_t *levels;   /* per run: merges it went through */
    size_t nruns;
} sortst;

#define MERGE_FANIN 32

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
    if (a->pfx != b->pfx)
        return (a->pfx < b->pfx) != c->desc ? -1 : 1;
    const uint8_t *pa = c->base + a->off, *pb = c->base + b->off;
    return cmp_rows(c, pa, pa + a->len, pb, pb + b->len);
}

static uint64_t prefix(const gl_opdesc *d, const uint8_t *row, const uint8_t *end)
{
    const uint8_t *fs, *fe;
    if (d->key.n == GL_KEY_ROW) {
        /* The row is an array: its first item decides first (none: it is
         * the least, and 0 is the least prefix). */
        uint32_t n;
        fs = gl_row_fields(row, end, &n);
        return n ? gl_cmp_prefix(fs, end) : 0;
    }
    if (!d->key.n)
        return 0;
    gl_row_field(row, end, d->key.f[0], &fs, &fe);
    return gl_cmp_prefix(fs, fe);
}

/* Sorts by prefix with an LSD radix sort (a byte per pass, passes where
 * every entry has the same byte skipped), then each run of equal prefixes
 * with the full comparison. Descending keys sort by the complemented
 * prefix. Returns false (nothing done) when out of memory. */
static bool radix_sort(ent *v, size_t n, bool desc, const cmpctx *c)
{
    ent *tmp = malloc(n * sizeof *tmp);
    if (!tmp)
        return false;
    uint64_t flip = desc ? ~0ull : 0;
    size_t count[8][256] = {{0}};
    for (size_t i = 0; i < n; i++) {
        uint64_t k = v[i].pfx ^ flip;
        for (int d = 0; d < 8; d++)
            count[d][(k >> (8 * d)) & 0xff]++;
    }
    ent *from = v, *to = tmp;
    for (int d = 0; d < 8; d++) {
        size_t *cnt = count[d];
        if (cnt[(from[0].pfx ^ flip) >> (8 * d) & 0xff] == n)
            continue; /* one value in this byte: the order stands */
        size_t pos = 0;
        for (int b = 0; b < 256; b++) {
            size_t k = cnt[b];
            cnt[b] = pos;
            pos += k;
        }
        for (size_t i = 0; i < n; i++)
            to[cnt[((from[i].pfx ^ flip) >> (8 * d)) & 0xff]++] = from[i];
        ent *x = from;
        from = to;
        to = x;
    }
    if (from != v)
        memcpy(v, from, n * sizeof *v);
    free(tmp);
    for (size_t i = 0; i < n;) {
        size_t j = i + 1;
        while (j < n && v[j].pfx == v[i].pfx)
            j++;
        if (j - i > 1)
            qsort_r(v + i, j - i, sizeof *v, cmp_ent, (void *)c);
        i = j;
    }
    return true;
}

static void sort_all(gl_opr *op)
{
    sortst *s = op->st;
    cmpctx c = {s->arena.data, &op->d->key, op->d->desc};
    if (s->n > 1 && (s->n < 256 || !radix_sort(s->v, s->n, op->d->desc, &c)))
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

static int add_ent(sortst *s, size_t off, size_t len, uint64_t pfx)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 1024;
        ent *v = realloc(s->v, cap * sizeof *v);
        if (!v)
            return -1;
        s->v = v;
        s->cap = cap;
    }
    s->v[s->n++] = (ent){off, len, pfx};
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
        if (gl_buf_append(&s->arena, row, (size_t)(p - row)) || add_ent(s, off, (size_t)(p - row), prefix(op->d, row, p)))
            return gl_err_set(&op->t->err, GL_ENOMEM, "top: out of memory");
    }
    if (s->n >= 2 * (s->keep > 1024 ? s->keep : 1024) && compact(op))
        return gl_err_set(&op->t->err, GL_ENOMEM, "top: out of memory");
    return 0;
}

/* Sorts the rows held and writes them to LMDB as a new run. */
static int merge_down(gl_opr *op);

static int spill_run(gl_opr *op)
{
    sortst *s = op->st;
    gl_task *t = op->t;
    gl_output **v = realloc(s->runs, (s->nruns + 1) * sizeof *v);
    if (v)
        s->runs = v;
    uint32_t *lv = realloc(s->levels, (s->nruns + 1) * sizeof *lv);
    if (lv)
        s->levels = lv;
    if (!v || !lv)
        return gl_err_set(&t->err, GL_ENOMEM, "sort: out of memory");
    s->levels[s->nruns] = 0;
    gl_output *run = gl_output_new(1, 1, t->run->store, true);
    if (!run)
        return gl_err_set(&t->err, GL_ENOMEM, "sort: out of memory");
    s->runs[s->nruns++] = run;
    sort_all(op);
    /* Rows go out in batches of adjacent index entries copied together. */
    gl_buf *b = &op->out;
    uint64_t nb = 0;
    int rc = 0;
    for (size_t i = 0; i < s->n && !rc; i++) {
        if (gl_buf_append(b, s->arena.data + s->v[i].off, s->v[i].len))
            return gl_err_set(&t->err, GL_ENOMEM, "sort: out of memory");
        nb++;
        if (b->len >= GL_CHUNK_BYTES / 4 || i + 1 == s->n) {
            rc = gl_output_append(run, 0, 0, b->data, b->len, nb, &t->err);
            b->len = 0;
            nb = 0;
        }
    }
    if (!rc)
        rc = gl_output_seal(run, 0, &t->err);
    s->arena.len = 0;
    s->n = 0;
    if (!rc && s->nruns >= MERGE_FANIN)
        rc = merge_down(op);
    return rc;
}

static int sort_push(gl_opr *op, const uint8_t *rows, size_t len, uint64_t nrows)
{
    sortst *s = op->st;
    if (s->top && s->bound.len)
        return top_push(op, rows, len, nrows);
    if (s->share && s->n && s->arena.len + len + (s->n + nrows) * sizeof(ent) > s->share) {
        int rc = spill_run(op);
        if (rc)
            return rc;
    }
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
        s->v[s->n++] = (ent){base + (size_t)(row - rows), (size_t)(p - row), prefix(op->d, row, p)};
    }
    if (s->top && s->n >= 2 * (s->keep > 1024 ? s->keep : 1024) && compact(op))
        return gl_err_set(&op->t->err, GL_ENOMEM, "top: out of memory");
    return 0;
}

/* A source of sorted rows for the merge: a run in LMDB, or (rd NULL) the
 * rows still in memory. */
typedef struct cursor {
    gl_reader *rd;
    const uint8_t *p, *end; /* the current row is [p, rowend) */
    const uint8_t *rowend;
    uint64_t left;          /* rows after the current one in this chunk */
    size_t i;               /* memory: index of the current entry */
    uint64_t pfx;           /* the current row's key prefix */
} cursor;

/* Moves to the next row; 1 there is one, 0 the source is done, <0 error. */
static int cursor_next(const gl_opr *op, sortst *s, cursor *c)
{
    if (!c->rd) {
        if (++c->i >= s->n)
            return 0;
        c->p = s->arena.data + s->v[c->i].off;
        c->rowend = c->p + s->v[c->i].len;
        c->pfx = s->v[c->i].pfx;
        return 1;
    }
    if (c->left) {
        c->left--;
        c->p = c->rowend;
        c->rowend = gl_row_end(c->p, c->end);
        c->pfx = prefix(op->d, c->p, c->rowend);
        return 1;
    }
    const gl_chunk *ch;
    do {
        if (!(ch = gl_reader_next(c->rd)))
            return gl_reader_error(c->rd) ? -1 : 0;
    } while (!ch->nrows);
    c->p = ch->data;
    c->end = ch->data + ch->len;
    c->rowend = gl_row_end(c->p, c->end);
    c->left = ch->nrows - 1;
    c->pfx = prefix(op->d, c->p, c->rowend);
    return 1;
}

static int cursor_cmp(const gl_opr *op, const cursor *a, const cursor *b)
{
    if (a->pfx != b->pfx)
        return (a->pfx < b->pfx) != op->d->desc ? -1 : 1;
    int r = gl_row_cmp(a->p, a->rowend, b->p, b->rowend, &op->d->key, false);
    if (r)
        return op->d->desc ? -r : r;
    static const gl_keyspec none;
    return gl_row_cmp(a->p, a->rowend, b->p, b->rowend, &none, true);
}

static void sift_down(const gl_opr *op, cursor *c, size_t *h, size_t n, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, m = i;
        if (l < n && cursor_cmp(op, &c[h[l]], &c[h[m]]) < 0)
            m = l;
        if (l + 1 < n && cursor_cmp(op, &c[h[l + 1]], &c[h[m]]) < 0)
            m = l + 1;
        if (m == i)
            return;
        size_t x = h[i];
        h[i] = h[m];
        h[m] = x;
        i = m;
    }
}

/* Merges runs [from, from + k) (and, with mem, the rows in memory, sorted
 * first) into dst, a new run, or to the next op when dst is NULL. */
static int merge(gl_opr *op, size_t from, size_t k, bool mem, gl_output *dst)
{
    sortst *s = op->st;
    gl_task *t = op->t;
    size_t total = k + (mem ? 1 : 0), n = 0;
    cursor *c = calloc(total ? total : 1, sizeof *c);
    size_t *h = calloc(total ? total : 1, sizeof *h);
    int rc = c && h ? 0 : gl_err_set(&t->err, GL_ENOMEM, "sort: out of memory");
    if (mem)
        sort_all(op);
    for (size_t i = 0; i < total && !rc; i++) {
        int got;
        if (i < k) {
            if (!(c[i].rd = gl_reader_new(s->runs[from + i], 0)))
                rc = gl_err_set(&t->err, GL_ENOMEM, "sort: out of memory");
            got = rc ? 0 : cursor_next(op, s, &c[i]);
        } else {
            c[i].i = (size_t)-1;
            got = cursor_next(op, s, &c[i]);
        }
        if (got < 0)
            rc = gl_err_set(&t->err, GL_EIO, "%s", gl_reader_error(c[i].rd));
        else if (got)
            h[n++] = i;
    }
    for (size_t i = n / 2; i-- > 0 && !rc;)
        sift_down(op, c, h, n, i);
    uint64_t nb = 0;
    while (n && !rc) {
        cursor *top = &c[h[0]];
        if (gl_buf_append(&op->out, top->p, (size_t)(top->rowend - top->p))) {
            rc = gl_err_set(&t->err, GL_ENOMEM, "sort: out of memory");
            break;
        }
        nb++;
        if (!dst) {
            op->out_rows++;
            rc = gl_op_flush(op, GL_CHUNK_BYTES / 4);
        } else if (op->out.len >= GL_CHUNK_BYTES / 4) {
            rc = gl_output_append(dst, 0, 0, op->out.data, op->out.len, nb, &t->err);
            op->out.len = 0;
            nb = 0;
        }
        if (rc)
            break;
        int got = cursor_next(op, s, top);
        if (got < 0)
            rc = gl_err_set(&t->err, GL_EIO, "%s", gl_reader_error(top->rd));
        else if (!got)
            h[0] = h[--n];
        sift_down(op, c, h, n, 0);
    }
    for (size_t i = 0; c && i < total; i++)
        gl_reader_free(c[i].rd);
    free(c);
    free(h);
    if (rc)
        return rc;
    if (!dst)
        return gl_op_flush(op, 0);
    if (nb)
        rc = gl_output_append(dst, 0, 0, op->out.data, op->out.len, nb, &t->err);
    op->out.len = 0;
    return rc ? rc : gl_output_seal(dst, 0, &t->err);
}

/* Tiered merging: when the last MERGE_FANIN runs are of one level, they
 * become one run of the next level. Each row is rewritten once per level
 * (log base MERGE_FANIN of the run count), and the final merge has at most
 * MERGE_FANIN - 1 runs per level to read at once. */
static int merge_down(gl_opr *op)
{
    sortst *s = op->st;
    while (s->nruns >= MERGE_FANIN) {
        size_t from = s->nruns - MERGE_FANIN;
        uint32_t level = s->levels[from];
        for (size_t i = from + 1; i < s->nruns; i++)
            if (s->levels[i] != level)
                return 0;
        gl_output *one = gl_output_new(1, 1, op->t->run->store, true);
        if (!one)
            return gl_err_set(&op->t->err, GL_ENOMEM, "sort: out of memory");
        int rc = merge(op, from, MERGE_FANIN, false, one);
        for (size_t i = from; i < s->nruns; i++)
            gl_output_free(s->runs[i]);
        s->runs[from] = one;
        s->levels[from] = level + 1;
        s->nruns = from + 1;
        if (rc)
            return rc;
    }
    return 0;
}

static int sort_finish(gl_opr *op)
{
    sortst *s = op->st;
    if (s->nruns)
        return merge(op, 0, s->nruns, true, NULL);
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
    for (size_t i = 0; i < s->nruns; i++)
        gl_output_free(s->runs[i]);
    free(s->runs);
    free(s->levels);
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
    else if (op->t->run->store)
        s->share = gl_store_op_share(op->t->run->store);
    op->st = s;
    op->push = sort_push;
    op->finish = sort_finish;
    op->destroy = sort_destroy;
    return 0;
}
