/* task.c: running one task: input, ops, sink (see task.h). */
#include "task.h"

#include "compare.h"
#include "pool.h"
#include "source.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/* A 64-bit hash to [0, n): the top half scaled by n (Lemire's fast
 * range), not h % n, whose 64-bit division cost a hash sink more than
 * hashing the key. */
static inline uint32_t hash_part(uint64_t h, uint32_t n) { return (uint32_t)(((h >> 32) * n) >> 32); }

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
        return gl_output_append(t->out, part, t->index, rows, len, nrows, &t->err);
    }
    const uint8_t *p = rows, *end = rows + len;
    for (uint64_t r = 0; r < nrows; r++) {
        const uint8_t *row = p;
        p = gl_row_end(p, end);
        uint32_t part;
        if (st->sink == GL_SINK_HASH)
            part = hash_part(gl_hash_mix(gl_row_key_hash(row, p, &st->sink_key, 0x9e3779b97f4a7c15ull) ^
                                         0x632be59bd9b4e019ull), st->nparts);
        else
            part = range_part(st, row, p);
        int rc = gl_output_append_row(t->out, part, t->index, row, (size_t)(p - row), &t->err);
        if (rc)
            return rc;
    }
    return 0;
}

static int op_init(gl_opr *op);
static void op_destroy(gl_opr *op);

/* Pushes a batch to op. A map-side combine that has grown past the task's
 * share of the budget emits its partial results and starts again: they
 * merge after the shuffle like those of any other task. */
static int push_to(gl_opr *op, const uint8_t *rows, size_t len, uint64_t nrows)
{
    int rc = op->push(op, rows, len, nrows);
    gl_store *st = op->t->run->store;
    if (!rc && op->held && st && op->held(op) > gl_store_op_share(st)) {
        rc = op->finish(op);
        if (!rc) {
            op_destroy(op);
            rc = op_init(op);
        }
    }
    return rc;
}

int gl_op_emit(gl_opr *op, const uint8_t *rows, size_t len, uint64_t nrows)
{
    if (stopped(op->t))
        return GL_ECANCEL;
    if (op->next)
        return push_to(op->next, rows, len, nrows);
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
    if (t->input_done)
        return GL_EDONE;
    if (t->st->nops)
        return push_to(&t->ops[0], rows, len, nrows);
    return sink_push(t, rows, len, nrows);
}

/* Pushes partition `part` of a stage's output to fn (push or push2 of the
 * first op, or the sink when the stage has no ops). */
static int read_part(gl_task *t, const gl_output *o, uint32_t part, bool second)
{
    gl_reader *r = gl_reader_new(o, part);
    if (!r)
        return gl_err_set(&t->err, GL_ENOMEM, "task: out of memory");
    const gl_chunk *c;
    int rc = 0;
    while (!rc && (c = gl_reader_next(r))) {
        if (stopped(t))
            rc = GL_ECANCEL;
        else if (t->input_done)
            rc = GL_EDONE;
        else if (second)
            rc = t->ops[0].push2(&t->ops[0], c->data, c->len, c->nrows);
        else
            rc = input_emit(t, c->data, c->len, c->nrows);
    }
    if (!rc && gl_reader_error(r))
        rc = gl_err_set(&t->err, GL_EIO, "%s", gl_reader_error(r));
    gl_reader_free(r);
    return rc;
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

static int op_init(gl_opr *op)
{
    switch (op->d->kind) {
    case GL_OP_LUA: return gl_op_lua_init(op);
    case GL_OP_WORDS: return gl_op_words_init(op);
    case GL_OP_SELECT: return gl_op_select_init(op);
    case GL_OP_AGG:
        return op->d->mode == GL_AGG_LUA   ? gl_op_lua_init(op)
               : op->d->mode == GL_AGG_CFN ? gl_op_cfn_init(op)
                                           : gl_op_agg_init(op);
    case GL_OP_CFN: return gl_op_cfn_init(op);
    case GL_OP_SORT:
    case GL_OP_TOP: return gl_op_sort_init(op);
    case GL_OP_LIMIT: return gl_op_limit_init(op);
    case GL_OP_DISTINCT:
    case GL_OP_GROUP: return gl_op_group_init(op);
    case GL_OP_COGROUP:
    case GL_OP_BCAST_JOIN: return gl_op_join_init(op);
    case GL_OP_PIPE:
    case GL_OP_PIPE_ARGS: return gl_op_pipe_init(op);
    case GL_OP_SAVE: return gl_op_save_init(op);
    }
    return gl_err_set(&op->t->err, GL_EINVAL, "task: unknown op");
}

static void op_destroy(gl_opr *op)
{
    if (op->destroy)
        op->destroy(op);
    op->destroy = NULL;
    op->st = NULL;
    op->out.len = 0;
    op->out_rows = 0;
}

/* Spill buckets (Grace hashing). A stage that starts by grouping its input
 * by key (group_by_key, distinct, a join, the merge side of reduce_by_key)
 * and whose input partition is larger than the task's share of the budget
 * splits that partition by another hash of the key into buckets in LMDB,
 * each meant to fit, and runs its first op once per bucket: all rows of a
 * key land in one bucket, so every key's result is the same as in one
 * pass, and only the order of keys differs. A bucket still too large is
 * split again with another seed, up to BUCKET_DEPTH levels; at most
 * share / 32 KiB buckets per level, so their write buffers (16 KiB tails)
 * take half the share at most. */
#define BUCKET_DEPTH 3

static bool keyed_first_op(const gl_task *t)
{
    const gl_stage *st = t->st;
    if (!t->run->store || !st->nops || (st->src != GL_SRC_STAGE && st->src != GL_SRC_PAIR))
        return false;
    const gl_opdesc *d = &st->ops[0];
    return d->kind == GL_OP_GROUP || d->kind == GL_OP_DISTINCT || d->kind == GL_OP_COGROUP ||
           (d->kind == GL_OP_AGG && d->merge);
}

/* Buckets for a partition of these bytes: 0 if it fits (held rows cost
 * about twice their bytes: index, table, Lua values). */
static uint32_t bucket_count(const gl_task *t, uint64_t bytes)
{
    uint64_t share = gl_store_op_share(t->run->store);
    if (!share || bytes * 2 <= share)
        return 0;
    uint64_t k = bytes * 2 / share + 1, most = share / (32u << 10);
    if (most < 2)
        most = 2;
    return (uint32_t)(k < most ? k : most);
}

static uint64_t split_seed(uint32_t depth) { return 0x8f1bbcdcca62c1d6ull + 0x9e3779b97f4a7c15ull * depth; }

/* Writes partition part of o to bucket output b by key hash. */
static int split(gl_task *t, const gl_output *o, uint32_t part, gl_output *b, uint32_t k, uint32_t depth)
{
    const gl_keyspec *key = &t->st->ops[0].key;
    gl_reader *r = gl_reader_new(o, part);
    if (!r)
        return gl_err_set(&t->err, GL_ENOMEM, "task: out of memory");
    const gl_chunk *c;
    int rc = 0;
    while (!rc && (c = gl_reader_next(r))) {
        const uint8_t *p = c->data, *end = c->data + c->len;
        for (uint64_t i = 0; i < c->nrows && !rc; i++) {
            const uint8_t *row = p;
            p = gl_row_end(p, end);
            uint32_t h = hash_part(gl_hash_mix(gl_row_key_hash(row, p, key, split_seed(depth))), k);
            rc = gl_output_append_row(b, h, 0, row, (size_t)(p - row), &t->err);
        }
        if (!rc && stopped(t))
            rc = GL_ECANCEL;
    }
    if (!rc && gl_reader_error(r))
        rc = gl_err_set(&t->err, GL_EIO, "%s", gl_reader_error(r));
    gl_reader_free(r);
    return rc ? rc : gl_output_seal(b, 0, &t->err);
}

static uint64_t pair_bytes(const gl_output *in[2], uint32_t part)
{
    return gl_output_part_bytes(in[0], part) + (in[1] ? gl_output_part_bytes(in[1], part) : 0);
}

/* Runs the first op over partition part of in[0] (and of in[1], the right
 * side of a two-input stage) in k buckets; *fresh: the op has seen no
 * rows yet. */
static int read_buckets(gl_task *t, const gl_output *in[2], uint32_t part, uint32_t k, uint32_t depth, bool *fresh)
{
    gl_output *b[2] = {NULL, NULL};
    int rc = 0;
    for (uint32_t i = 0; i < (in[1] ? 2u : 1u) && !rc; i++) {
        if (!(b[i] = gl_output_new(k, 1, t->run->store, true)))
            rc = gl_err_set(&t->err, GL_ENOMEM, "task: out of memory");
        else
            rc = split(t, in[i], part, b[i], k, depth);
    }
    gl_opr *op = &t->ops[0];
    const gl_output *sub[2] = {b[0], b[1]};
    for (uint32_t j = 0; j < k && !rc; j++) {
        uint32_t k2 = depth + 1 < BUCKET_DEPTH ? bucket_count(t, pair_bytes(sub, j)) : 0;
        if (k2) {
            rc = read_buckets(t, sub, j, k2, depth + 1, fresh);
            continue;
        }
        if (!*fresh) {
            op_destroy(op);
            if ((rc = op_init(op)))
                break;
        }
        *fresh = false;
        /* Bucket j is partition j of a one-task output. */
        if (b[1])
            rc = read_part(t, b[1], j, true);
        if (!rc)
            rc = read_part(t, b[0], j, false);
        if (!rc)
            rc = op->finish(op);
    }
    gl_output_free(b[0]);
    gl_output_free(b[1]);
    return rc;
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
        rc = op_init(op);
    }
    const gl_output *in[2] = {t->in, NULL};
    if (st->src == GL_SRC_PAIR) {
        in[0] = t->run->outs[st->src_stages[0]];
        in[1] = t->run->outs[st->src_stages[1]];
    }
    uint32_t k = !rc && keyed_first_op(t) ? bucket_count(t, pair_bytes(in, t->index)) : 0;
    bool fresh = true;
    if (!rc)
        rc = k ? read_buckets(t, in, t->index, k, 0, &fresh) : read_input(t);
    if (rc == GL_EDONE) {
        /* A source wraps what emit returned in a message: not an error. */
        rc = 0;
        memset(&t->err, 0, sizeof t->err);
    }
    for (uint32_t i = k ? 1 : 0; !rc && i < st->nops; i++)
        rc = t->ops[i].finish(&t->ops[i]);
    for (uint32_t i = 0; i < made; i++) {
        op_destroy(&t->ops[i]);
        gl_buf_free(&t->ops[i].out);
    }
    free(t->ops);
    t->ops = NULL;
    if (rc && !t->err.code)
        gl_err_set(&t->err, rc, rc == GL_ECANCEL ? "cancelled" : "task failed (code %d)", rc);
    return rc;
}
