/* op_group.c: group_by_key and distinct, after their shuffle.
 * group_by_key holds a shard's rows by key and emits, per key in order of
 * first appearance, the key fields and the array of the rows' rests.
 * distinct passes on the first row of each key as it arrives (it also runs
 * before the shuffle, so duplicates are dropped map-side). */
#include "group.h"
#include "mpk.h"
#include "task.h"

#include "compare.h"

#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

/* group_by_key with a key too big for the budget: when the rows held pass
 * the task's share, the largest groups move to LMDB (their rests, one value
 * per stored row) and the rest of the arena is compacted; later rows of
 * those keys go straight to disk. Such a group is emitted in its place in
 * key order with, instead of the array, an ext value (type GL_GROUP_EXT,
 * an 8-byte token) that the next step, a Lua function, turns into an
 * iterator reading the values from the map (worker.lua). So it is done only
 * when the next op is Lua; otherwise every group stays in memory. */
#define GL_GROUP_EXT 71

/* Live spilled groups by token: the only outputs a Lua step may open by an
 * ext value, so bytes that merely look like one cannot name memory. */
static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static struct reg_ent {
    uint64_t token;
    const gl_output *o;
} *reg;
static size_t nreg, capreg;
static uint64_t reg_next;

static uint64_t reg_add(const gl_output *o)
{
    pthread_mutex_lock(&reg_lock);
    uint64_t token = 0;
    if (!reg_next)
        reg_next = gl_hash_mix((uint64_t)(uintptr_t)&reg_next ^ (uint64_t)getpid() << 32) | 1;
    if (nreg == capreg) {
        size_t cap = capreg ? capreg * 2 : 16;
        struct reg_ent *r = realloc(reg, cap * sizeof *r);
        if (r) {
            reg = r;
            capreg = cap;
        }
    }
    if (nreg < capreg) {
        token = reg_next;
        reg_next = gl_hash_mix(reg_next) | 1;
        reg[nreg++] = (struct reg_ent){token, o};
    }
    pthread_mutex_unlock(&reg_lock);
    return token;
}

static void reg_remove(uint64_t token)
{
    pthread_mutex_lock(&reg_lock);
    for (size_t i = 0; i < nreg; i++)
        if (reg[i].token == token) {
            reg[i] = reg[--nreg];
            break;
        }
    if (!nreg) {
        free(reg);
        reg = NULL;
        capreg = 0;
    }
    pthread_mutex_unlock(&reg_lock);
}

/* Exported for lua/gleam/worker.lua: the values of a spilled group, or
 * NULL if no live group has that token. */
const gl_output *gl_group_lookup(uint64_t token)
{
    const gl_output *o = NULL;
    pthread_mutex_lock(&reg_lock);
    for (size_t i = 0; i < nreg && !o; i++)
        if (reg[i].token == token)
            o = reg[i].o;
    pthread_mutex_unlock(&reg_lock);
    return o;
}

typedef struct groupst {
    gl_groups *g;
    uint64_t share;      /* 0: never spill */
    gl_output **spilled; /* per slot; NULL: in memory */
    uint64_t *tokens;    /* per slot, of spilled ones */
    uint32_t cap;
    uint32_t nspilled;   /* none: rows need no lookup before they are added */
    gl_buf rest;
    gl_opr *op;
} groupst;

static int grow(groupst *s, uint32_t slot)
{
    if (slot < s->cap)
        return 0;
    uint32_t cap = s->cap ? s->cap * 2 : 256;
    while (cap <= slot)
        cap *= 2;
    gl_output **sp = realloc(s->spilled, cap * sizeof *sp);
    if (sp)
        s->spilled = sp;
    uint64_t *tk = realloc(s->tokens, cap * sizeof *tk);
    if (tk)
        s->tokens = tk;
    if (!sp || !tk)
        return -1;
    for (uint32_t i = s->cap; i < cap; i++) {
        s->spilled[i] = NULL;
        s->tokens[i] = 0;
    }
    s->cap = cap;
    return 0;
}

static int spill_append(gl_opr *op, gl_output *o, const uint8_t *row, size_t len)
{
    groupst *s = op->st;
    s->rest.len = 0;
    if (gl_groups_put_rest(&s->rest, s->g, row, len))
        return gl_err_set(&op->t->err, GL_ENOMEM, "group_by_key: out of memory");
    return gl_output_append(o, 0, 0, s->rest.data, s->rest.len, 1, &op->t->err);
}

/* Moves one group's rows (their rests) to LMDB, for gl_groups_shed. */
static int spill_group(void *ctx, uint32_t slot)
{
    groupst *s = ctx;
    gl_opr *op = s->op;
    gl_output *o = gl_output_new(1, 1, op->t->run->store, true);
    if (!o)
        return gl_err_set(&op->t->err, GL_ENOMEM, "group_by_key: out of memory");
    s->spilled[slot] = o;
    s->nspilled++;
    if (!(s->tokens[slot] = reg_add(o)))
        return gl_err_set(&op->t->err, GL_ENOMEM, "group_by_key: out of memory");
    for (uint32_t e = gl_groups_first(s->g, slot, 0); e != GL_GROUP_END; e = gl_groups_next(s->g, e)) {
        size_t len;
        const uint8_t *row = gl_groups_row(s->g, e, &len);
        int rc = spill_append(op, o, row, len);
        if (rc)
            return rc;
    }
    return 0;
}

/* Moves the largest groups to LMDB until half the share is held; only
 * groups of a real size: many small keys are the buckets' job (task.c),
 * and moving them would not pay. */
static int spill_groups(gl_opr *op)
{
    groupst *s = op->st;
    int rc = gl_groups_shed(s->g, 0, s->share / 2, s->share / 16, spill_group, s);
    if (rc == GL_ENOMEM && !op->t->err.code)
        return gl_err_set(&op->t->err, GL_ENOMEM, "group_by_key: out of memory");
    return rc;
}

static int group_push(gl_opr *op, const uint8_t *rows, size_t len, uint64_t nrows)
{
    groupst *s = op->st;
    const uint8_t *p = rows, *end = rows + len;
    for (uint64_t r = 0; r < nrows; r++) {
        const uint8_t *row = p;
        p = gl_row_end(p, end);
        size_t rlen = (size_t)(p - row);
        if (s->nspilled) {
            int64_t f = gl_agg_find(gl_groups_table(s->g), row, rlen);
            if (f >= 0 && (uint32_t)f < s->cap && s->spilled[f]) {
                int rc = spill_append(op, s->spilled[f], row, rlen);
                if (rc)
                    return rc;
                continue;
            }
        }
        int64_t slot = gl_groups_add_row(s->g, 0, row, rlen);
        if (slot < 0 || grow(s, (uint32_t)slot))
            return gl_err_set(&op->t->err, GL_ENOMEM, "group_by_key: out of memory");
    }
    if (s->share && gl_groups_bytes(s->g) > s->share)
        return spill_groups(op);
    return 0;
}

static int put_ext_token(gl_buf *b, uint64_t token)
{
    uint8_t v[10] = {0xd7, GL_GROUP_EXT};
    for (int i = 0; i < 8; i++)
        v[2 + i] = (uint8_t)(token >> (56 - 8 * i));
    return gl_buf_append(b, v, sizeof v);
}

static int group_finish(gl_opr *op)
{
    groupst *s = op->st;
    gl_groups *g = s->g;
    uint32_t n = gl_groups_slots(g), nk = gl_key_values(&op->d->key);
    for (uint32_t slot = 0; slot < n; slot++) {
        size_t klen;
        const uint8_t *key = gl_agg_key(gl_groups_table(g), slot, &klen);
        gl_output *o = slot < s->cap ? s->spilled[slot] : NULL;
        int rc = o ? gl_output_seal(o, 0, &op->t->err) : 0;
        if (rc)
            return rc;
        if (gl_mpk_put_array(&op->out, nk + 1) || gl_buf_append(&op->out, key, klen) ||
            (o ? put_ext_token(&op->out, s->tokens[slot]) : gl_groups_put_rests(&op->out, g, slot, 0)))
            return gl_err_set(&op->t->err, GL_ENOMEM, "group_by_key: out of memory");
        op->out_rows++;
        /* A spilled group's row goes to the Lua step at once, while its
         * values are still there. */
        if ((rc = gl_op_flush(op, o ? 0 : GL_CHUNK_BYTES / 4)))
            return rc;
    }
    return gl_op_flush(op, 0);
}

static void group_destroy(gl_opr *op)
{
    groupst *s = op->st;
    if (!s)
        return;
    for (uint32_t i = 0; i < s->cap; i++)
        if (s->spilled[i]) {
            reg_remove(s->tokens[i]);
            gl_output_free(s->spilled[i]);
        }
    free(s->spilled);
    free(s->tokens);
    gl_buf_free(&s->rest);
    gl_groups_free(s->g);
    free(s);
}

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
    groupst *s = calloc(1, sizeof *s);
    if (!s || !(s->g = gl_groups_new(&op->d->key, 1))) {
        free(s);
        return gl_err_set(&op->t->err, GL_ENOMEM, "group_by_key: out of memory");
    }
    const gl_stage *st = op->t->st;
    if (op->t->run->store && op->index + 1 < st->nops && st->ops[op->index + 1].kind == GL_OP_LUA)
        s->share = gl_store_op_share(op->t->run->store);
    s->op = op;
    op->st = s;
    op->push = group_push;
    op->finish = group_finish;
    op->destroy = group_destroy;
    return 0;
}
