/* op_join.c: join and cogroup.
 *
 * After a shuffle (GL_OP_COGROUP) a task holds both sides of its shard
 * grouped by key (the right side arrives first, through push2) and emits
 * at finish, per key in order of first appearance: for cogroup the key and
 * the two arrays of rests; for a join every left x right pair as (key
 * fields, left rest, right rest), and for left/right/outer joins an
 * unmatched row with the missing side as nils.
 * Broadcast (GL_OP_BCAST_JOIN): the small side, read whole from the stage
 * that made it, is grouped at init; the other side streams past it and is
 * never shuffled.
 * A missing side is as many nils as that side's widest row has rest
 * fields, so the shape of a joined row does not depend on the partitioning. */
#include "group.h"
#include "mpk.h"
#include "task.h"

#include <stdlib.h>

typedef struct joinst {
    gl_groups *g;
    uint32_t nils[2];   /* rest width of the left and right side */
} joinst;

static uint32_t rest_width(uint32_t width, const gl_keyspec *k)
{
    uint32_t n = width;
    if (k->n == GL_KEY_ROW)
        return 0;
    for (uint32_t i = 0; i < k->n; i++)
        if (k->f[i] <= width && n)
            n--;
    return n;
}

static int put_nils(gl_buf *b, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++)
        if (gl_mpk_put_nil(b))
            return -1;
    return 0;
}

/* Emits one joined row; l or r may be NULL (a missing side). */
static int emit_pair(gl_opr *op, const uint8_t *l, size_t llen, const uint8_t *r, size_t rlen)
{
    joinst *j = op->st;
    const gl_keyspec *k = &op->d->key;
    const uint8_t *kr = l ? l : r;
    size_t krlen = l ? llen : rlen;
    uint32_t nl = l ? gl_row_rest_count(l, l + llen, k) : j->nils[0];
    uint32_t nr = r ? gl_row_rest_count(r, r + rlen, k) : j->nils[1];
    gl_buf *o = &op->out;
    if (gl_mpk_put_array(o, gl_key_values(k) + nl + nr) || gl_row_key_put(o, kr, kr + krlen, k) ||
        (l ? gl_row_rest_put(o, l, l + llen, k) : put_nils(o, nl)) ||
        (r ? gl_row_rest_put(o, r, r + rlen, k) : put_nils(o, nr)))
        return gl_err_set(&op->t->err, GL_ENOMEM, "join: out of memory");
    op->out_rows++;
    return gl_op_flush(op, GL_CHUNK_BYTES / 4);
}

/* Emits the joined rows of left row l (NULL: none) with side `side` of slot. */
static int emit_with(gl_opr *op, uint32_t slot, uint32_t side, const uint8_t *row, size_t len, bool row_is_left)
{
    joinst *j = op->st;
    int rc = 0;
    for (uint32_t e = gl_groups_first(j->g, slot, side); e != GL_GROUP_END && !rc; e = gl_groups_next(j->g, e)) {
        size_t olen;
        const uint8_t *other = gl_groups_row(j->g, e, &olen);
        rc = row_is_left ? emit_pair(op, row, len, other, olen) : emit_pair(op, other, olen, row, len);
    }
    return rc;
}

static int pair_push_left(gl_opr *op, const uint8_t *rows, size_t len, uint64_t nrows)
{
    joinst *j = op->st;
    return gl_groups_add(j->g, 0, rows, len, nrows) ? gl_err_set(&op->t->err, GL_ENOMEM, "join: out of memory") : 0;
}

static int pair_push_right(gl_opr *op, const uint8_t *rows, size_t len, uint64_t nrows)
{
    joinst *j = op->st;
    return gl_groups_add(j->g, 1, rows, len, nrows) ? gl_err_set(&op->t->err, GL_ENOMEM, "join: out of memory") : 0;
}

static int pair_finish(gl_opr *op)
{
    joinst *j = op->st;
    enum gl_join_how how = op->d->how;
    uint32_t n = gl_groups_slots(j->g);
    int rc = 0;
    for (uint32_t s = 0; s < n && !rc; s++) {
        uint32_t nl = gl_groups_size(j->g, s, 0), nr = gl_groups_size(j->g, s, 1);
        if (how == GL_JOIN_COGROUP) {
            size_t klen;
            const uint8_t *key = gl_agg_key(gl_groups_table(j->g), s, &klen);
            if (gl_mpk_put_array(&op->out, gl_key_values(&op->d->key) + 2) || gl_buf_append(&op->out, key, klen) ||
                gl_groups_put_rests(&op->out, j->g, s, 0) || gl_groups_put_rests(&op->out, j->g, s, 1))
                return gl_err_set(&op->t->err, GL_ENOMEM, "cogroup: out of memory");
            op->out_rows++;
            rc = gl_op_flush(op, GL_CHUNK_BYTES / 4);
            continue;
        }
        if (nl && nr) {
            for (uint32_t e = gl_groups_first(j->g, s, 0); e != GL_GROUP_END && !rc; e = gl_groups_next(j->g, e)) {
                size_t len;
                const uint8_t *l = gl_groups_row(j->g, e, &len);
                rc = emit_with(op, s, 1, l, len, true);
            }
        } else if (nl && (how == GL_JOIN_LEFT || how == GL_JOIN_OUTER)) {
            for (uint32_t e = gl_groups_first(j->g, s, 0); e != GL_GROUP_END && !rc; e = gl_groups_next(j->g, e)) {
                size_t len;
                const uint8_t *l = gl_groups_row(j->g, e, &len);
                rc = emit_pair(op, l, len, NULL, 0);
            }
        } else if (nr && (how == GL_JOIN_RIGHT || how == GL_JOIN_OUTER)) {
            for (uint32_t e = gl_groups_first(j->g, s, 1); e != GL_GROUP_END && !rc; e = gl_groups_next(j->g, e)) {
                size_t len;
                const uint8_t *r = gl_groups_row(j->g, e, &len);
                rc = emit_pair(op, NULL, 0, r, len);
            }
        }
    }
    return rc ? rc : gl_op_flush(op, 0);
}

/* Broadcast: the streamed side's rows probe the small side's groups. */
static int bcast_push(gl_opr *op, const uint8_t *rows, size_t len, uint64_t nrows)
{
    joinst *j = op->st;
    bool small_left = op->d->small_left;
    uint32_t side = small_left ? 0 : 1;
    bool keep = op->d->how == (small_left ? GL_JOIN_RIGHT : GL_JOIN_LEFT);
    const uint8_t *p = rows, *end = rows + len;
    for (uint64_t r = 0; r < nrows; r++) {
        const uint8_t *row = p;
        p = gl_row_end(p, end);
        size_t rl = (size_t)(p - row);
        int64_t s = gl_agg_find(gl_groups_table(j->g), row, rl);
        int rc = 0;
        if (s >= 0)
            rc = emit_with(op, (uint32_t)s, side, row, rl, !small_left);
        else if (keep)
            rc = small_left ? emit_pair(op, NULL, 0, row, rl) : emit_pair(op, row, rl, NULL, 0);
        if (rc)
            return rc;
    }
    return gl_op_flush(op, 0);
}

static int bcast_finish(gl_opr *op) { return gl_op_flush(op, 0); }

static void join_destroy(gl_opr *op)
{
    joinst *j = op->st;
    if (j)
        gl_groups_free(j->g);
    free(j);
}

int gl_op_join_init(gl_opr *op)
{
    gl_task *t = op->t;
    joinst *j = calloc(1, sizeof *j);
    if (!j || !(j->g = gl_groups_new(&op->d->key, 2))) {
        free(j);
        return gl_err_set(&t->err, GL_ENOMEM, "join: out of memory");
    }
    op->st = j;
    op->destroy = join_destroy;
    if (op->d->kind == GL_OP_COGROUP) {
        j->nils[0] = rest_width(t->st->width[0], &op->d->key);
        j->nils[1] = rest_width(t->st->width[1], &op->d->key);
        op->push = pair_push_left;
        op->push2 = pair_push_right;
        op->finish = pair_finish;
        return 0;
    }
    /* Broadcast: group the whole small side now. */
    const gl_output *side = t->run->outs[op->d->side_stage];
    uint32_t sidx = op->d->small_left ? 0 : 1;
    j->nils[sidx] = rest_width(side->max_width, &op->d->key);
    for (uint32_t part = 0; part < side->nparts; part++) {
        gl_reader *r = gl_reader_new(side, part);
        const gl_chunk *c;
        int rc = r ? 0 : gl_err_set(&t->err, GL_ENOMEM, "join: out of memory");
        while (!rc && (c = gl_reader_next(r)))
            if (gl_groups_add(j->g, sidx, c->data, c->len, c->nrows))
                rc = gl_err_set(&t->err, GL_ENOMEM, "join: out of memory");
        if (!rc && gl_reader_error(r))
            rc = gl_err_set(&t->err, GL_EIO, "%s", gl_reader_error(r));
        gl_reader_free(r);
        if (rc)
            return rc;
    }
    op->push = bcast_push;
    op->finish = bcast_finish;
    return 0;
}
