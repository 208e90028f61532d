/* op_narrow.c: narrow ops that run in C with no Lua call: the words
 * tokenizer (gleam.fn.words), select and the maps gleam.project
 * recognised (projections), and limit. */
#include "mpk.h"
#include "source.h"
#include "task.h"

#include <stdlib.h>

/* Word bytes (ASCII letters and digits) by table: one load per byte, no
 * branch on which range a byte falls in, as the tokenizer tests every
 * byte of the text. */
static const uint8_t word_tab[256] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0,
    0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0,
    0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
};

static inline bool word_byte(uint8_t c) { return word_tab[c]; }

/* Each word (a run of ASCII letters and digits) of field 1 becomes a row.
 * When the next op counts rows by field 1 (reduce_by_key(gleam.fn.count)),
 * each word goes to it as bytes instead: encoding a row per word only for
 * the count to parse it again was most of the word count's time. */
static int words_push(gl_opr *op, const uint8_t *rows, size_t len, uint64_t nrows)
{
    gl_opr *count = op->next && gl_op_agg_counts_first(op->next) ? op->next : NULL;
    const uint8_t *p = rows, *end = rows + len;
    for (uint64_t r = 0; r < nrows; r++) {
        /* Rows from text are (line): the field's end is the row's end. */
        const uint8_t *row = p;
        gl_mpk_head rh, h;
        const uint8_t *f = gl_mpk_head_read(row, end, &rh);
        const uint8_t *q = f && rh.cls == GL_MPK_ARRAY && rh.n ? gl_mpk_head_read(f, end, &h) : NULL;
        p = q && rh.n == 1 ? q : gl_row_end(row, end);
        if (!q || h.cls != GL_MPK_STR)
            return gl_task_fail_row(op->t, op->d->step, "gleam.fn.words needs a string in field 1", row, p);
        const uint8_t *s = h.body, *se = h.body + h.n;
        while (s < se) {
            while (s < se && !word_byte(*s))
                s++;
            const uint8_t *w = s;
            while (s < se && word_byte(*s))
                s++;
            if (s == w)
                continue;
            if (count) {
                int rc = gl_op_agg_count_str(count, w, (size_t)(s - w));
                if (rc)
                    return rc;
                continue;
            }
            if (gl_buf_reserve(&op->out, 6 + (size_t)(s - w)))
                return gl_err_set(&op->t->err, GL_ENOMEM, "words: out of memory");
            op->out.data[op->out.len++] = 0x91;
            gl_mpk_put_str(&op->out, w, (size_t)(s - w));
            op->out_rows++;
        }
        int rc = gl_op_flush(op, GL_BATCH_BYTES);
        if (rc)
            return rc;
    }
    return gl_op_flush(op, 0);
}

/* A projection: each output field is a field of the input row or a
 * constant. select has only fields; a Lua map that gleam.project
 * recognised (lua_op.c hands it here) may have constants too. */
typedef struct proj {
    gl_keyspec out;                 /* input field positions; 0: the next constant */
    uint32_t upto;                  /* the highest of them */
    gl_buf consts;                  /* the constants' encodings, back to back */
    uint32_t coff[GL_KEY_MAX + 1];  /* constant i is consts[coff[i], coff[i + 1]) */
} proj;

/* One walk over each row finds the fields it takes (when they are among
 * the first GL_SPLIT_MAX) and the row's end; the new row is written in one
 * reserve. */
static int proj_push(gl_opr *op, const uint8_t *rows, size_t len, uint64_t nrows)
{
    const proj *pj = op->st;
    const gl_keyspec *k = &pj->out;
    bool split = pj->upto <= GL_SPLIT_MAX;
    const uint8_t *p = rows, *end = rows + len;
    for (uint64_t r = 0; r < nrows; r++) {
        const uint8_t *row = p, *fs[GL_SPLIT_MAX + 1], *s[GL_KEY_MAX], *e[GL_KEY_MAX];
        uint32_t n = 0;
        if (split)
            n = gl_row_split(row, end, pj->upto, fs, &p);
        else
            p = gl_row_end(row, end);
        size_t need = 5;
        for (uint32_t i = 0, c = 0; i < k->n; i++) {
            uint32_t f = k->f[i];
            if (!f) {
                s[i] = pj->consts.data + pj->coff[c];
                e[i] = pj->consts.data + pj->coff[++c];
            } else if (!split) {
                gl_row_field(row, p, f, &s[i], &e[i]);
            } else if (f <= n) {
                s[i] = fs[f - 1];
                e[i] = fs[f];
            } else {
                s[i] = (const uint8_t *)"\xc0"; /* a field past the row's end is nil */
                e[i] = s[i] + 1;
            }
            need += (size_t)(e[i] - s[i]);
        }
        if (gl_buf_reserve(&op->out, need) || gl_mpk_put_array(&op->out, k->n))
            return gl_err_set(&op->t->err, GL_ENOMEM, "select: out of memory");
        uint8_t *w = op->out.data + op->out.len;
        for (uint32_t i = 0; i < k->n; i++) {
            memcpy(w, s[i], (size_t)(e[i] - s[i]));
            w += e[i] - s[i];
        }
        op->out.len = (size_t)(w - op->out.data);
        op->out_rows++;
    }
    return gl_op_flush(op, 0);
}

static int pass_finish(gl_opr *op) { return gl_op_flush(op, 0); }

/* limit: the first `limit` rows that reach it, the rest dropped. */
static int limit_push(gl_opr *op, const uint8_t *rows, size_t len, uint64_t nrows)
{
    int64_t *left = op->st;
    if (*left <= 0)
        return 0;
    uint64_t take = nrows < (uint64_t)*left ? nrows : (uint64_t)*left;
    const uint8_t *p = rows, *end = rows + len;
    for (uint64_t r = 0; r < take; r++)
        p = gl_row_end(p, end);
    *left -= (int64_t)take;
    int rc = gl_op_emit(op, rows, (size_t)(p - rows), take);
    if (!rc && *left <= 0 && op->t->st->src != GL_SRC_PAIR) {
        /* Rows that would come later are dropped anyway: stop reading
         * input, when nothing before this op needs all of it (a sort, an
         * aggregate, a join, a file written, a command fed). */
        bool streaming = true;
        for (uint32_t i = 0; i < op->index; i++) {
            enum gl_op_kind k = op->t->st->ops[i].kind;
            streaming &= k == GL_OP_LUA || k == GL_OP_WORDS || k == GL_OP_SELECT || k == GL_OP_CFN ||
                         k == GL_OP_LIMIT;
        }
        op->t->input_done |= streaming;
    }
    return rc;
}

static void limit_destroy(gl_opr *op) { free(op->st); }

int gl_op_limit_init(gl_opr *op)
{
    int64_t *left = malloc(sizeof *left);
    if (!left)
        return gl_err_set(&op->t->err, GL_ENOMEM, "limit: out of memory");
    *left = op->d->limit;
    op->st = left;
    op->push = limit_push;
    op->finish = pass_finish;
    op->destroy = limit_destroy;
    return 0;
}

int gl_op_words_init(gl_opr *op)
{
    op->push = words_push;
    op->finish = pass_finish;
    return 0;
}

static void proj_destroy(gl_opr *op)
{
    proj *pj = op->st;
    if (pj)
        gl_buf_free(&pj->consts);
    free(pj);
}

static int proj_init(gl_opr *op, proj *pj)
{
    pj->upto = gl_key_max_field(&pj->out);
    op->st = pj;
    op->push = proj_push;
    op->finish = pass_finish;
    op->destroy = proj_destroy;
    return 0;
}

int gl_op_select_init(gl_opr *op)
{
    proj *pj = calloc(1, sizeof *pj);
    if (!pj)
        return gl_err_set(&op->t->err, GL_ENOMEM, "select: out of memory");
    pj->out = op->d->key;
    return proj_init(op, pj);
}

int gl_op_project_init(gl_opr *op, const uint8_t *spec, size_t len)
{
    const uint8_t *p = spec, *end = spec + len;
    gl_mpk_head h;
    proj *pj = calloc(1, sizeof *pj);
    if (!pj)
        return gl_err_set(&op->t->err, GL_ENOMEM, "map: out of memory");
    int rc = 0;
    if (!(p = gl_mpk_head_read(p, end, &h)) || h.cls != GL_MPK_ARRAY || h.n > GL_KEY_MAX)
        rc = GL_EINVAL;
    pj->out.n = rc ? 0 : h.n;
    for (uint32_t i = 0, c = 0; i < pj->out.n && !rc; i++) {
        if (!(p = gl_mpk_head_read(p, end, &h))) {
            rc = GL_EINVAL;
        } else if (h.cls == GL_MPK_NUM && h.num.kind == GL_NUM_INT && h.num.v.i >= 1 && h.num.v.i <= UINT32_MAX) {
            pj->out.f[i] = (uint32_t)h.num.v.i;
        } else if (h.cls == GL_MPK_ARRAY && h.n == 1) { /* [constant] */
            const uint8_t *v = p;
            if (!(p = gl_mpk_skip(v, end)))
                rc = GL_EINVAL;
            else if (gl_buf_append(&pj->consts, v, (size_t)(p - v)))
                rc = GL_ENOMEM;
            pj->out.f[i] = 0;
            pj->coff[++c] = (uint32_t)pj->consts.len;
        } else {
            rc = GL_EINVAL;
        }
    }
    if (!rc && p == end)
        return proj_init(op, pj);
    gl_buf_free(&pj->consts);
    free(pj);
    return rc == GL_ENOMEM ? gl_err_set(&op->t->err, GL_ENOMEM, "map: out of memory")
                           : gl_err_set(&op->t->err, GL_EINVAL, "map: a malformed projection");
}
