/* op_join.c: join and cogroup.
 *
 * After a shuffle (GL_OP_COGROUP) the right side arrives first, through
 * push2. cogroup holds both sides grouped by key and emits at finish, per
 * key in order of first appearance, the key and the two arrays of rests. A
 * join holds only the right side and streams the left past it (see
 * stream_push_left): every left x right pair as (key fields, left rest,
 * right rest), and for left/right/outer joins an unmatched row with the
 * missing side as nils.
 * Broadcast (GL_OP_BCAST_JOIN): the small side, read whole from the stage
 * that made it, is grouped at init; the other side streams past it and is
 * never shuffled.
 * A missing side is as many nils as that side's widest row has rest
 * fields, so the shape of a joined row does not depend on the partitioning. */
#include "group.h"
#include "mpk.h"
#include "task.h"

#include <stdlib.h>

/* A right-side key with more rows than the budget: its rows in LMDB, and
 * the left rows of that key waiting for the next pass over them. */
typedef struct hot {
    gl_output *rows;
    gl_buf pending;     /* left rows, back to back */
    uint64_t npending;
} hot;

typedef struct joinst {
    gl_groups *g;
    uint32_t nils[2];   /* rest width of the left and right side */
    uint64_t share;     /* bytes of right rows held before the largest spill; 0: never */
    hot **hot;          /* per slot: NULL, or the key's rows in LMDB */
    bool *matched;      /* per slot: some left row met it (right, outer joins) */
    uint32_t cap;
    uint32_t nhot;      /* none: right rows need no lookup before they are added */
    gl_opr *op;
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

/* Joins (not cogroup) after a shuffle stream the left side: the right side
 * arrives first and is held by key; each left row meets its key's right
 * rows as it comes, so only the right side is held. A right key whose
 * rows pass a sixteenth of the task's share when the held rows pass the
 * share moves to LMDB; left rows of that key are kept until a quarter of
 * the share, then the key's right rows are read once from disk for all of
 * them (a block nested loop). Right and outer joins emit the right rows no
 * left row met at the end. Rows come out in left order, then unmatched
 * right rows; the set of rows is that of the grouped join. */
static int grow(joinst *j, uint32_t slot)
{
    if (slot < j->cap)
        return 0;
    uint32_t cap = j->cap ? j->cap * 2 : 256;
    while (cap <= slot)
        cap *= 2;
    hot **h = realloc(j->hot, cap * sizeof *h);
    if (h)
        j->hot = h;
    bool *m = realloc(j->matched, cap * sizeof *m);
    if (m)
        j->matched = m;
    if (!h || !m)
        return -1;
    for (uint32_t i = j->cap; i < cap; i++) {
        j->hot[i] = NULL;
        j->matched[i] = false;
    }
    j->cap = cap;
    return 0;
}

/* Moves one right key's rows to LMDB, for gl_groups_shed. */
static int spill_key(void *ctx, uint32_t slot)
{
    joinst *j = ctx;
    gl_opr *op = j->op;
    hot *h = calloc(1, sizeof *h);
    if (!h || !(h->rows = gl_output_new(1, 1, op->t->run->store, true))) {
        free(h);
        return gl_err_set(&op->t->err, GL_ENOMEM, "join: out of memory");
    }
    j->hot[slot] = h;
    j->nhot++;
    for (uint32_t e = gl_groups_first(j->g, slot, 1); e != GL_GROUP_END; e = gl_groups_next(j->g, e)) {
        size_t len;
        const uint8_t *row = gl_groups_row(j->g, e, &len);
        int rc = gl_output_append(h->rows, 0, 0, row, len, 1, &op->t->err);
        if (rc)
            return rc;
    }
    return 0;
}

/* Moves the largest right keys to LMDB until half the share is held (many
 * small keys are the buckets' job, task.c). */
static int spill_right(gl_opr *op)
{
    joinst *j = op->st;
    int rc = gl_groups_shed(j->g, 1, j->share / 2, j->share / 16, spill_key, j);
    if (rc == GL_ENOMEM && !op->t->err.code)
        return gl_err_set(&op->t->err, GL_ENOMEM, "join: out of memory");
    return rc;
}

static int stream_push_right(gl_opr *op, const uint8_t *rows, size_t len, uint64_t nrows)
{
    joinst *j = op->st;
    const uint8_t *p = rows, *end = rows + len;
    for (uint64_t r = 0; r < nrows; r++) {
        const uint8_t *row = p;
        p = gl_row_end(p, end);
        size_t rl = (size_t)(p - row);
        int64_t f = j->nhot ? gl_agg_find(gl_groups_table(j->g), row, rl) : -1;
        if (f >= 0 && (uint32_t)f < j->cap && j->hot[f]) {
            int rc = gl_output_append(j->hot[f]->rows, 0, 0, row, rl, 1, &op->t->err);
            if (rc)
                return rc;
            continue;
        }
        int64_t slot = gl_groups_add_row(j->g, 1, row, rl);
        if (slot < 0 || grow(j, (uint32_t)slot))
            return gl_err_set(&op->t->err, GL_ENOMEM, "join: out of memory");
    }
    if (j->share && gl_groups_bytes(j->g) > j->share)
        return spill_right(op);
    return 0;
}

/* One pass over a hot key's right rows for every left row waiting. */
static int hot_pass(gl_opr *op, hot *h)
{
    if (!h->npending)
        return 0;
    int rc = gl_output_seal(h->rows, 0, &op->t->err);
    gl_reader *rd = rc ? NULL : gl_reader_new(h->rows, 0);
    if (!rc && !rd)
        rc = gl_err_set(&op->t->err, GL_ENOMEM, "join: out of memory");
    const gl_chunk *c;
    while (!rc && (c = gl_reader_next(rd))) {
        const uint8_t *rp = c->data, *rend = c->data + c->len;
        for (uint64_t i = 0; i < c->nrows && !rc; i++) {
            const uint8_t *r = rp;
            rp = gl_row_end(rp, rend);
            const uint8_t *lp = h->pending.data, *lend = lp + h->pending.len;
            for (uint64_t k = 0; k < h->npending && !rc; k++) {
                const uint8_t *l = lp;
                lp = gl_row_end(lp, lend);
                rc = emit_pair(op, l, (size_t)(lp - l), r, (size_t)(rp - r));
            }
        }
    }
    if (!rc && rd && gl_reader_error(rd))
        rc = gl_err_set(&op->t->err, GL_EIO, "%s", gl_reader_error(rd));
    gl_reader_free(rd);
    h->pending.len = 0;
    h->npending = 0;
    return rc;
}

/* Left rows are looked up in a pipeline over a window of the batch, so
 * the cache misses of a right side bigger than the cache overlap instead
 * of coming one after another: a row's key is hashed and its bucket
 * prefetched PROBE_AHEAD rows before it is looked up, and half way there
 * the slot its bucket names (if any) and that slot's row list are
 * prefetched. */
#define PROBE_AHEAD 8
#define PROBE_RING 16 /* a power of two above PROBE_AHEAD */

static int stream_push_left(gl_opr *op, const uint8_t *rows, size_t len, uint64_t nrows)
{
    joinst *j = op->st;
    enum gl_join_how how = op->d->how;
    gl_agg *table = gl_groups_table(j->g);
    const uint8_t *q = rows, *end = rows + len;
    const uint8_t *start[PROBE_RING], *stop[PROBE_RING];
    uint64_t hash[PROBE_RING], hashed = 0;
    int rc = 0;
    for (uint64_t r = 0; r < nrows && !rc; r++) {
        for (; hashed < nrows && hashed <= r + PROBE_AHEAD; hashed++) {
            uint32_t i = hashed % PROBE_RING;
            start[i] = q;
            stop[i] = q = gl_row_end(q, end);
            hash[i] = gl_agg_hash(table, start[i], (size_t)(stop[i] - start[i]));
            gl_agg_prefetch(table, hash[i]);
        }
        if (r + PROBE_AHEAD / 2 < hashed) {
            int64_t s = gl_agg_prefetch_slot(table, hash[(r + PROBE_AHEAD / 2) % PROBE_RING]);
            if (s >= 0)
                gl_groups_prefetch(j->g, (uint32_t)s, 1);
        }
        uint32_t i = r % PROBE_RING;
        const uint8_t *row = start[i];
        size_t rl = (size_t)(stop[i] - row);
        int64_t f = gl_agg_find_hashed(table, row, rl, hash[i]);
        hot *h = f >= 0 && (uint32_t)f < j->cap ? j->hot[f] : NULL;
        if (h) {
            j->matched[f] = true;
            if (gl_buf_append(&h->pending, row, rl))
                return gl_err_set(&op->t->err, GL_ENOMEM, "join: out of memory");
            if (++h->npending, h->pending.len > j->share / 4)
                rc = hot_pass(op, h);
        } else if (f >= 0 && gl_groups_size(j->g, (uint32_t)f, 1)) {
            if ((uint32_t)f < j->cap)
                j->matched[f] = true;
            rc = emit_with(op, (uint32_t)f, 1, row, rl, true);
        } else if (how == GL_JOIN_LEFT || how == GL_JOIN_OUTER) {
            rc = emit_pair(op, row, rl, NULL, 0);
        }
    }
    return rc ? rc : gl_op_flush(op, 0);
}

/* Emits a right row no left row met (right and outer joins). */
static int emit_right_alone(gl_opr *op, const uint8_t *r, size_t len) { return emit_pair(op, NULL, 0, r, len); }

static int stream_finish(gl_opr *op)
{
    joinst *j = op->st;
    enum gl_join_how how = op->d->how;
    bool keep_right = how == GL_JOIN_RIGHT || how == GL_JOIN_OUTER;
    uint32_t n = gl_groups_slots(j->g);
    int rc = 0;
    for (uint32_t s = 0; s < n && !rc; s++) {
        hot *h = s < j->cap ? j->hot[s] : NULL;
        if (h)
            rc = hot_pass(op, h);
        if (rc || !keep_right || (s < j->cap && j->matched[s]))
            continue;
        if (!h) {
            for (uint32_t e = gl_groups_first(j->g, s, 1); e != GL_GROUP_END && !rc; e = gl_groups_next(j->g, e)) {
                size_t len;
                const uint8_t *r = gl_groups_row(j->g, e, &len);
                rc = emit_right_alone(op, r, len);
            }
            continue;
        }
        if ((rc = gl_output_seal(h->rows, 0, &op->t->err)))
            break;
        gl_reader *rd = gl_reader_new(h->rows, 0);
        const gl_chunk *c;
        if (!rd)
            rc = gl_err_set(&op->t->err, GL_ENOMEM, "join: out of memory");
        while (!rc && (c = gl_reader_next(rd))) {
            const uint8_t *rp = c->data, *rend = c->data + c->len;
            for (uint64_t i = 0; i < c->nrows && !rc; i++) {
                const uint8_t *r = rp;
                rp = gl_row_end(rp, rend);
                rc = emit_right_alone(op, r, (size_t)(rp - r));
            }
        }
        if (!rc && rd && gl_reader_error(rd))
            rc = gl_err_set(&op->t->err, GL_EIO, "%s", gl_reader_error(rd));
        gl_reader_free(rd);
    }
    return rc ? rc : gl_op_flush(op, 0);
}

/* cogroup: per key in order of first appearance, both sides' rests. */
static int pair_finish(gl_opr *op)
{
    joinst *j = op->st;
    uint32_t n = gl_groups_slots(j->g);
    int rc = 0;
    for (uint32_t s = 0; s < n && !rc; s++) {
        size_t klen;
        const uint8_t *key = gl_agg_key(gl_groups_table(j->g), s, &klen);
        if (gl_mpk_put_array(&op->out, gl_key_values(&op->d->key) + 2) || gl_buf_append(&op->out, key, klen) ||
            gl_groups_put_rests(&op->out, j->g, s, 0) || gl_groups_put_rests(&op->out, j->g, s, 1))
            return gl_err_set(&op->t->err, GL_ENOMEM, "cogroup: out of memory");
        op->out_rows++;
        rc = gl_op_flush(op, GL_CHUNK_BYTES / 4);
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
    if (!j)
        return;
    for (uint32_t i = 0; i < j->cap; i++)
        if (j->hot[i]) {
            gl_output_free(j->hot[i]->rows);
            gl_buf_free(&j->hot[i]->pending);
            free(j->hot[i]);
        }
    free(j->hot);
    free(j->matched);
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
    j->op = op;
    op->st = j;
    op->destroy = join_destroy;
    if (op->d->kind == GL_OP_COGROUP) {
        j->nils[0] = rest_width(t->st->width[0], &op->d->key);
        j->nils[1] = rest_width(t->st->width[1], &op->d->key);
        if (op->d->how == GL_JOIN_COGROUP) {
            op->push = pair_push_left;
            op->push2 = pair_push_right;
            op->finish = pair_finish;
            return 0;
        }
        if (t->run->store)
            j->share = gl_store_op_share(t->run->store);
        /* The right side's size is known: room for it up front saves the
         * table its rehashes, unless it is too big to hold (buckets). */
        const gl_output *right = t->run->outs[t->st->src_stages[1]];
        uint64_t rbytes = right ? gl_output_part_bytes(right, t->index) : 0;
        if (rbytes && (!j->share || rbytes * 2 <= j->share) &&
            gl_groups_reserve(j->g, gl_output_part_rows(right, t->index), rbytes))
            return gl_err_set(&t->err, GL_ENOMEM, "join: out of memory");
        op->push = stream_push_left;
        op->push2 = stream_push_right;
        op->finish = stream_finish;
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
