/* task.c: running one task: input, ops, sink (see task.h). */
#include "task.h"

#include "compare.h"
#include "pool.h"
#include "source.h"

#include <stdio.h>
#include <stdlib.h>

int gl_task_fail_row(gl_task *t, int step, const char *what, const uint8_t *row, const uint8_t *end)
{
    const gl_step *s = gl_plan_get(t->run->plan, step);
    char shown[GL_ROW_SHOW + 8];
    gl_row_format(row, end, shown, sizeof shown);
    return gl_err_set(&t->err, GL_ETASK, "%s (%s): %s; row %s", s ? s->name : "?", s ? s->where : "?",
                      what, shown);
}

static bool stopped(const gl_task *t)
{
    return atomic_load(&t->run->failed) || (t->run->cancel && atomic_load(t->run->cancel));
}

static int sample_add(gl_task *t, const uint8_t *row, const uint8_t *end)
{
    if (t->seen++ % t->stride)
        return 0;
    if (!t->sample_off && !(t->sample_off = malloc(2 * GL_SAMPLE_MAX * sizeof *t->sample_off)))
        return -1;
    if (t->nsample == 2 * GL_SAMPLE_MAX) {
        /* Keep every other key and halve the rate: the sample stays an
         * even spread over the rows seen, of bounded size. */
        size_t w = 0;
        for (uint32_t i = 0; i < t->nsample; i += 2) {
            uint32_t a = t->sample_off[i];
            uint32_t b = i + 1 < t->nsample ? t->sample_off[i + 1] : (uint32_t)t->sample.len;
            memmove(t->sample.data + w, t->sample.data + a, b - a);
            t->sample_off[i / 2] = (uint32_t)w;
            w += b - a;
        }
        t->sample.len = w;
        t->nsample /= 2;
        t->stride *= 2;
    }
    t->sample_off[t->nsample++] = (uint32_t)t->sample.len;
    return gl_row_key_put(&t->sample, row, end, &t->st->sink_key);
}

static uint32_t range_part(const gl_stage *st, const uint8_t *row, const uint8_t *end)
{
    /* Partition = number of bounds at or before the row's key in sort order. */
    uint32_t lo = 0, hi = st->nparts - 1;
    while (lo < hi) {
        uint32_t mid = (lo + hi) / 2;
        const uint8_t *b = st->bounds.data + st->bound_off[mid];
        const uint8_t *be = st->bounds.data + st->bound_off[mid + 1];
        int c = gl_row_key_cmp_bytes(row, end, &st->sink_key, b, be);
        if (st->sink_desc)
            c = -c;
        if (c >= 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static void track_width(gl_task *t, const uint8_t *rows, size_t len, uint64_t nrows)
{
    const uint8_t *p = rows, *end = rows + len;
    for (uint64_t r = 0; r < nrows; r++) {
        uint32_t nf;
        gl_row_fields(p, end, &nf);
        if (nf > t->width)
            t->width = nf;
        p = gl_row_end(p, end);
    }
}

static int sink_push(gl_task *t, const uint8_t *rows, size_t len, uint64_t nrows)
{
    const gl_stage *st = t->st;
    if (stopped(t))
        return GL_ECANCEL;
    if (st->track_width)
        track_width(t, rows, len, nrows);
    if (st->sink == GL_SINK_LOCAL || st->nparts == 1) {
        uint32_t part = st->sink == GL_SINK_LOCAL ? t->index : 0;
        if (st->sample) {
            const uint8_t *p = rows, *end = rows + len;
            for (uint64_t r = 0; r < nrows; r++) {
                const uint8_t *row = p;
                p = gl_row_end(p, end);
                if (sample_add(t, row, p))
                    return gl_err_set(&t->err, GL_ENOMEM, "sort: out of memory");
            }
        }
        if (gl_shard_append(gl_output_cell(t->out, part, t->index), rows, len, nrows))
            return gl_err_set(&t->err, GL_ENOMEM, "out of memory storing rows");
        return 0;
    }
    const uint8_t *p = rows, *end = rows + len;
    for (uint64_t r = 0; r < nrows; r++) {
        const uint8_t *row = p;
        p = gl_row_end(p, end);
        uint32_t part;
        if (st->sink == GL_SINK_HASH)
            part = (uint32_t)(gl_hash_mix(gl_row_key_hash(row, p, &st->sink_key, 0x9e3779b97f4a7c15ull) ^
                                          0x632be59bd9b4e019ull) % st->nparts);
        else
            part = range_part(st, row, p);
        if (gl_shard_append(gl_output_cell(t->out, part, t->index), row, (size_t)(p - row), 1))
            return gl_err_set(&t->err, GL_ENOMEM, "out of memory storing rows");
    }
    return 0;
}

int gl_op_emit(gl_opr *op, const uint8_t *rows, size_t len, uint64_t nrows)
{
    if (stopped(op->t))
        return GL_ECANCEL;
    if (op->next)
        return op->next->push(op->next, rows, len, nrows);
    return sink_push(op->t, rows, len, nrows);
}

int gl_op_flush(gl_opr *op, size_t min)
{
    if (!op->out_rows || op->out.len < min)
        return 0;
    int rc = gl_op_emit(op, op->out.data, op->out.len, op->out_rows);
    op->out.len = 0;
    op->out_rows = 0;
    return rc;
}

static int input_emit(void *ctx, const uint8_t *rows, size_t len, uint64_t nrows)
{
    gl_task *t = ctx;
    if (stopped(t))
        return GL_ECANCEL;
    if (t->st->nops)
        return t->ops[0].push(&t->ops[0], rows, len, nrows);
    return sink_push(t, rows, len, nrows);
}

/* Pushes partition `part` of a stage's output to fn (push or push2 of the
 * first op, or the sink when the stage has no ops). */
static int read_part(gl_task *t, const gl_output *o, uint32_t part, bool second)
{
    uint32_t task = 0;
    size_t chunk = 0;
    const gl_chunk *c;
    while ((c = gl_output_next(o, part, &task, &chunk))) {
        int rc;
        if (stopped(t))
            return GL_ECANCEL;
        if (second)
            rc = t->ops[0].push2(&t->ops[0], c->data, c->len, c->nrows);
        else
            rc = input_emit(t, c->data, c->len, c->nrows);
        if (rc)
            return rc;
    }
    return 0;
}

static int read_input(gl_task *t)
{
    const gl_stage *st = t->st;
    const gl_step *src = st->src_step >= 0 ? gl_plan_get(t->run->plan, st->src_step) : NULL;
    switch (st->src) {
    case GL_SRC_TEXT:
        return gl_text_read(st, t->index, input_emit, t, &t->err);
    case GL_SRC_RANGE:
        return gl_range_read(src, t->index, st->ntasks, input_emit, t, &t->err);
    case GL_SRC_ROWS:
        return gl_rows_read(src, t->index, st->ntasks, input_emit, t, &t->err);
    case GL_SRC_STAGE:
        return read_part(t, t->in, t->index, false);
    case GL_SRC_CSV:
        return gl_csv_read(st, src, t->index, input_emit, t, &t->skipped, &t->err);
    case GL_SRC_MSGPACK:
        return gl_msgpack_read(st, t->index, input_emit, t, &t->err);
    case GL_SRC_UNION: {
        /* Task t is partition j of input i, counting the inputs' partitions in order. */
        uint32_t k = t->index;
        for (uint32_t i = 0; i < st->nsrc; i++) {
            const gl_output *o = t->run->outs[st->src_stages[i]];
            if (k < o->nparts)
                return read_part(t, o, k, false);
            k -= o->nparts;
        }
        return 0;
    }
    case GL_SRC_PAIR: {
        if (!st->nops || !t->ops[0].push2)
            return gl_err_set(&t->err, GL_EINVAL, "task: a two-input stage has no two-input op");
        int rc = read_part(t, t->run->outs[st->src_stages[1]], t->index, true);
        return rc ? rc : read_part(t, t->run->outs[st->src_stages[0]], t->index, false);
    }
    }
    return gl_err_set(&t->err, GL_EINVAL, "task: unknown input");
}

int gl_task_run(gl_task *t)
{
    const gl_stage *st = t->st;
    int rc = 0;
    t->stride = 1;
    if (st->nops && !(t->ops = calloc(st->nops, sizeof *t->ops)))
        rc = gl_err_set(&t->err, GL_ENOMEM, "task: out of memory");
    uint32_t made = 0;
    for (; !rc && made < st->nops; made++) {
        gl_opr *op = &t->ops[made];
        op->d = &st->ops[made];
        op->t = t;
        op->index = made;
        op->next = made + 1 < st->nops ? &t->ops[made + 1] : NULL;
        switch (op->d->kind) {
        case GL_OP_LUA: rc = gl_op_lua_init(op); break;
        case GL_OP_WORDS: rc = gl_op_words_init(op); break;
        case GL_OP_SELECT: rc = gl_op_select_init(op); break;
        case GL_OP_AGG:
            rc = op->d->mode == GL_AGG_LUA   ? gl_op_lua_init(op)
                 : op->d->mode == GL_AGG_CFN ? gl_op_cfn_init(op)
                                             : gl_op_agg_init(op);
            break;
        case GL_OP_CFN: rc = gl_op_cfn_init(op); break;
        case GL_OP_SORT:
        case GL_OP_TOP: rc = gl_op_sort_init(op); break;
        case GL_OP_LIMIT: rc = gl_op_limit_init(op); break;
        case GL_OP_DISTINCT:
        case GL_OP_GROUP: rc = gl_op_group_init(op); break;
        case GL_OP_COGROUP:
        case GL_OP_BCAST_JOIN: rc = gl_op_join_init(op); break;
        case GL_OP_PIPE:
        case GL_OP_PIPE_ARGS: rc = gl_op_pipe_init(op); break;
        case GL_OP_SAVE: rc = gl_op_save_init(op); break;
        }
    }
    if (!rc)
        rc = read_input(t);
    for (uint32_t i = 0; !rc && i < st->nops; i++)
        rc = t->ops[i].finish(&t->ops[i]);
    for (uint32_t i = 0; i < made; i++) {
        if (t->ops[i].destroy)
            t->ops[i].destroy(&t->ops[i]);
        gl_buf_free(&t->ops[i].out);
    }
    free(t->ops);
    t->ops = NULL;
    if (rc && !t->err.code)
        gl_err_set(&t->err, rc, rc == GL_ECANCEL ? "cancelled" : "task failed (code %d)", rc);
    return rc;
}
