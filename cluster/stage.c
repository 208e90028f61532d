/* stage.c: stage tasks as payloads, and the executor's run of one
 * (stage.h). Everything read here came from an authenticated peer, and is
 * still checked as bytes: a payload that does not parse, or names a stage
 * or partition the plan does not have, is refused with a message. */
#define _GNU_SOURCE
#include "stage.h"

#include "mpk.h"
#include "plan_wire.h"
#include "pool.h"
#include "task.h"

#include <errno.h>
#include <lauxlib.h>
#include <luajit.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define NFIELDS 13

/* A reader over msgpack bytes; the first malformed value sets bad and
 * every later read returns zero. */
typedef struct cur {
    const uint8_t *p, *end;
    bool bad;
} cur;

static bool head(cur *c, gl_mpk_head *h, enum gl_mpk_class cls)
{
    const uint8_t *q = c->bad ? NULL : gl_mpk_head_read(c->p, c->end, h);
    if (!q || h->cls != cls) {
        c->bad = true;
        return false;
    }
    c->p = q;
    return true;
}

static uint64_t get_uint(cur *c, uint64_t max)
{
    gl_mpk_head h;
    if (!head(c, &h, GL_MPK_NUM))
        return 0;
    uint64_t v = h.num.kind == GL_NUM_UINT ? h.num.v.u : (uint64_t)h.num.v.i;
    if (h.num.kind == GL_NUM_DOUBLE || (h.num.kind == GL_NUM_INT && h.num.v.i < 0) || v > max) {
        c->bad = true;
        return 0;
    }
    return v;
}

static const uint8_t *get_bytes(cur *c, size_t *n)
{
    gl_mpk_head h;
    *n = 0;
    if (!head(c, &h, GL_MPK_STR))
        return NULL;
    *n = h.n;
    return h.body;
}

static uint32_t get_array(cur *c)
{
    gl_mpk_head h;
    return head(c, &h, GL_MPK_ARRAY) ? h.n : 0;
}

static int dump_writer(lua_State *L, const void *p, size_t n, void *ud)
{
    gl_buf *b = ud;
    return b->len < 5 ? gl_buf_append(b, p, n) : 0;
}

/* LuaJIT's bytecode header (lj_bcdump.h): "\33LJ", a version byte, then
 * flags, of which byte order (1) and the GC64 layout (8) must match for
 * bytecode to load; gleam.executor checks the same for function tasks. */
void gl_stage_luajit(char *out, size_t max)
{
    int version = 0, flags = 0;
    lua_State *L = luaL_newstate();
    gl_buf b = {0};
    if (L && !luaL_loadstring(L, "return 0")) {
        lua_dump(L, dump_writer, &b);
        if (b.len >= 5 && !memcmp(b.data, "\33LJ", 3)) {
            version = b.data[3];
            flags = b.data[4] & 9;
        }
    }
    if (L)
        lua_close(L);
    gl_buf_free(&b);
    snprintf(out, max, "%s (bytecode version %d, %s%s)", LUAJIT_VERSION, version, flags & 1 ? "big-endian, " : "",
             flags & 8 ? "GC64" : "no GC64");
}

int gl_stage_task_encode(gl_buf *b, const gl_stage_task *t)
{
    char lj[128];
    gl_stage_luajit(lj, sizeof lj);
    int rc = gl_mpk_put_array(b, NFIELDS) || gl_mpk_put_str(b, GL_STAGE_MAGIC, strlen(GL_STAGE_MAGIC)) ||
             gl_mpk_put_str(b, lj, strlen(lj)) ||
             gl_mpk_put_str(b, t->plan, t->nplan) || gl_mpk_put_uint(b, (uint64_t)t->target) ||
             gl_mpk_put_uint(b, t->workers) || gl_mpk_put_uint(b, t->stage) || gl_mpk_put_uint(b, t->task) ||
             gl_mpk_put_str(b, t->dir, t->ndir) || gl_mpk_put_str(b, t->bounds, t->nbounds) ||
             gl_mpk_put_array(b, t->nbound_off);
    for (uint32_t i = 0; !rc && i < t->nbound_off; i++)
        rc = gl_mpk_put_uint(b, t->bound_off[i]);
    rc = rc || gl_mpk_put_uint(b, t->width[0]) || gl_mpk_put_uint(b, t->width[1]) ||
         gl_mpk_put_array(b, t->ninputs);
    for (uint32_t i = 0; !rc && i < t->ninputs; i++) {
        const gl_stage_input *in = &t->inputs[i];
        rc = gl_mpk_put_array(b, 4) || gl_mpk_put_uint(b, in->stage) || gl_mpk_put_uint(b, in->part) ||
             gl_mpk_put_uint(b, in->nrows) || gl_mpk_put_str(b, in->rows, in->len);
    }
    return rc ? -1 : 0;
}

int gl_stage_task_is(const uint8_t *p, size_t n)
{
    cur c = {p, p + n, false};
    if (get_array(&c) != NFIELDS)
        return 0;
    size_t len;
    const uint8_t *m = get_bytes(&c, &len);
    return !c.bad && len == strlen(GL_STAGE_MAGIC) && !memcmp(m, GL_STAGE_MAGIC, len);
}

typedef struct one_task {
    gl_task *t;
    int rc;
} one_task;

static void run_one(void *ctx, gl_worker *w, uint32_t i)
{
    one_task *o = ctx;
    o->t->w = w;
    o->rc = gl_task_run(o->t) || gl_output_seal(o->t->out, o->t->index, &o->t->err);
}

/* An empty output for every stage st reads, so a partition no input row
 * went to still reads as empty. */
static int inputs_exist(gl_run *run, const gl_stage *st)
{
    uint32_t need[GL_INPUTS_MAX + 1 + 64], n = 0;
    if (st->src == GL_SRC_STAGE)
        need[n++] = st->src_stage;
    for (uint32_t i = 0; (st->src == GL_SRC_UNION || st->src == GL_SRC_PAIR) && i < st->nsrc; i++)
        need[n++] = st->src_stages[i];
    for (uint32_t i = 0; i < st->nops && n < sizeof need / sizeof *need; i++)
        if (st->ops[i].kind == GL_OP_BCAST_JOIN)
            need[n++] = st->ops[i].side_stage;
    for (uint32_t i = 0; i < n; i++)
        if (!run->outs[need[i]] &&
            !(run->outs[need[i]] = gl_output_new(run->stages.v[need[i]].nparts, 1, run->store, false)))
            return -1;
    return 0;
}

/* Appends partition p of o (only this task's column holds rows) as [nrows, rows]. */
static int put_part(gl_buf *b, const gl_output *o, uint32_t p, gl_buf *tmp, gl_err *err)
{
    gl_reader *r = gl_reader_new(o, p);
    if (!r)
        return gl_err_set(err, GL_ENOMEM, "executor: out of memory");
    tmp->len = 0;
    uint64_t nrows = 0;
    const gl_chunk *c;
    int rc = 0;
    while (!rc && (c = gl_reader_next(r))) {
        rc = gl_buf_append(tmp, c->data, c->len);
        nrows += c->nrows;
    }
    if (!rc && gl_reader_error(r))
        rc = gl_err_set(err, GL_EIO, "%s", gl_reader_error(r));
    gl_reader_free(r);
    if (rc)
        return rc < 0 && rc != GL_EIO ? gl_err_set(err, GL_ENOMEM, "executor: out of memory") : rc;
    if (gl_mpk_put_array(b, 2) || gl_mpk_put_uint(b, nrows) || gl_mpk_put_str(b, tmp->data, tmp->len))
        return gl_err_set(err, GL_ENOMEM, "executor: out of memory");
    return 0;
}

static int encode_result(gl_buf *b, gl_task *t, gl_err *err)
{
    gl_buf tmp = {0};
    int rc = gl_mpk_put_array(b, 4) || gl_mpk_put_array(b, t->out->nparts) ? GL_ENOMEM : 0;
    for (uint32_t p = 0; !rc && p < t->out->nparts; p++)
        rc = put_part(b, t->out, p, &tmp, err);
    gl_buf_free(&tmp);
    if (rc)
        return rc;
    rc = gl_mpk_put_array(b, t->nsample);
    for (uint32_t j = 0; !rc && j < t->nsample; j++) {
        size_t a = t->sample_off[j];
        size_t e = j + 1 < t->nsample ? t->sample_off[j + 1] : t->sample.len;
        rc = gl_mpk_put_str(b, t->sample.data + a, e - a);
    }
    rc = rc || gl_mpk_put_uint(b, t->width) || gl_mpk_put_uint(b, t->skipped);
    return rc ? gl_err_set(err, GL_ENOMEM, "executor: out of memory") : 0;
}

int gl_stage_exec(const uint8_t *payload, size_t n, uint64_t memory, const char *lua_path, const char *lua_cpath,
                  gl_buf *out, gl_err *err)
{
    cur c = {payload, payload + n, false};
    size_t len, nplan, ndir, nbounds, nlj;
    if (get_array(&c) != NFIELDS)
        c.bad = true;
    get_bytes(&c, &len);
    const uint8_t *lj = get_bytes(&c, &nlj);
    char mine[128];
    gl_stage_luajit(mine, sizeof mine);
    if (!c.bad && (nlj != strlen(mine) || memcmp(lj, mine, nlj)))
        return gl_err_set(err, GL_EINVAL, "executor: task refused: its bytecode is from %.*s, this executor runs %s",
                          (int)(nlj > 200 ? 200 : nlj), (const char *)lj, mine);
    const uint8_t *plan_bytes = get_bytes(&c, &nplan);
    int target = (int)get_uint(&c, INT32_MAX);
    uint32_t workers = (uint32_t)get_uint(&c, 1u << 20);
    uint32_t stage = (uint32_t)get_uint(&c, UINT32_MAX);
    uint32_t task = (uint32_t)get_uint(&c, UINT32_MAX);
    const uint8_t *dir = get_bytes(&c, &ndir);
    const uint8_t *bounds = get_bytes(&c, &nbounds);
    uint32_t nb = get_array(&c);
    uint32_t *bound_off = nb && !c.bad ? malloc(nb * sizeof *bound_off) : NULL;
    if (nb && !c.bad && !bound_off)
        return gl_err_set(err, GL_ENOMEM, "executor: out of memory");
    for (uint32_t i = 0; i < nb && !c.bad; i++)
        bound_off[i] = (uint32_t)get_uint(&c, nbounds);
    uint32_t w0 = (uint32_t)get_uint(&c, UINT32_MAX), w1 = (uint32_t)get_uint(&c, UINT32_MAX);
    uint32_t ninputs = get_array(&c);
    if (c.bad || !workers || ndir >= 4096) {
        free(bound_off);
        return gl_err_set(err, GL_EINVAL, "executor: malformed stage task");
    }
    char cwd[4096];
    memcpy(cwd, dir, ndir);
    cwd[ndir] = 0;
    if (chdir(cwd)) {
        free(bound_off);
        return gl_err_set(err, GL_EIO, "executor: cannot enter the driver's directory %s: %s", cwd,
                          strerror(errno));
    }

    gl_plan *plan = NULL;
    gl_run run = {.id = 1};
    gl_pool *pool = NULL;
    gl_task t = {0};
    int rc = gl_plan_decode(plan_bytes, nplan, &plan, err);
    if (!rc)
        rc = gl_plan_stages(plan, target, workers, &run.stages, err);
    if (rc) {
        free(bound_off);
        goto out;
    }
    run.plan = plan;
    if (stage >= run.stages.n || task >= run.stages.v[stage].ntasks) {
        free(bound_off);
        rc = gl_err_set(err, GL_EINVAL, "executor: task %u of stage %u is not in the plan", task, stage);
        goto out;
    }
    gl_stage *st = &run.stages.v[stage];
    if (nb) {
        if (nb != st->nparts + 1 || st->bound_off) {
            free(bound_off);
            rc = gl_err_set(err, GL_EINVAL, "executor: the range bounds do not fit stage %u", stage);
            goto out;
        }
        st->bound_off = bound_off;
        if (gl_buf_append(&st->bounds, bounds, nbounds)) {
            rc = gl_err_set(err, GL_ENOMEM, "executor: out of memory");
            goto out;
        }
    }
    st->width[0] = w0;
    st->width[1] = w1;
    if (!(run.store = gl_store_new(memory, NULL, 1, err))) {
        rc = err->code ? err->code : GL_ENOMEM;
        goto out;
    }
    if (!(run.outs = calloc(run.stages.n, sizeof *run.outs))) {
        rc = gl_err_set(err, GL_ENOMEM, "executor: out of memory");
        goto out;
    }
    for (uint32_t i = 0; i < ninputs && !rc; i++) {
        if (get_array(&c) != 4)
            c.bad = true;
        uint32_t s = (uint32_t)get_uint(&c, run.stages.n ? run.stages.n - 1 : 0);
        uint32_t p = (uint32_t)get_uint(&c, UINT32_MAX);
        uint64_t nrows = get_uint(&c, UINT64_MAX);
        const uint8_t *rows = get_bytes(&c, &len);
        if (c.bad || p >= run.stages.v[s].nparts) {
            rc = gl_err_set(err, GL_EINVAL, "executor: malformed input of stage %u", stage);
            break;
        }
        if (!run.outs[s] && !(run.outs[s] = gl_output_new(run.stages.v[s].nparts, 1, run.store, false)))
            rc = gl_err_set(err, GL_ENOMEM, "executor: out of memory");
        else if (nrows)
            rc = gl_output_append(run.outs[s], p, 0, rows, len, nrows, err);
    }
    for (uint32_t s = 0; !rc && s < run.stages.n; s++)
        if (run.outs[s] && gl_output_seal(run.outs[s], 0, err))
            rc = err->code;
    if (!rc && inputs_exist(&run, st))
        rc = gl_err_set(err, GL_ENOMEM, "executor: out of memory");
    if (rc)
        goto out;

    t.run = &run;
    t.st = st;
    t.index = task;
    t.in = st->src == GL_SRC_STAGE ? run.outs[st->src_stage] : NULL;
    if (!(t.out = gl_output_new(st->nparts, st->ntasks, run.store, st->on_disk)) ||
        !(pool = gl_pool_new(1, lua_path, lua_cpath, err))) {
        rc = t.out ? (err->code ? err->code : GL_ENOMEM) : gl_err_set(err, GL_ENOMEM, "executor: out of memory");
        goto out;
    }
    one_task o = {&t, 0};
    gl_pool_run(pool, run_one, &o, 1);
    if (o.rc)
        rc = gl_err_set(err, t.err.code ? t.err.code : GL_ETASK, "%s", t.err.msg);
    else
        rc = encode_result(out, &t, err);
out:
    gl_pool_free(pool);
    gl_output_free(t.out);
    gl_buf_free(&t.sample);
    free(t.sample_off);
    for (uint32_t s = 0; run.outs && s < run.stages.n; s++)
        gl_output_free(run.outs[s]);
    free(run.outs);
    gl_store_release(run.store);
    gl_stages_free(&run.stages);
    gl_plan_free(plan);
    return rc;
}

int gl_stage_result_apply(const uint8_t *p, size_t n, gl_output *o, uint32_t task, gl_task *t, gl_err *err)
{
    cur c = {p, p + n, false};
    if (get_array(&c) != 4 || get_array(&c) != o->nparts)
        return gl_err_set(err, GL_EINVAL, "driver: a task's result has the wrong shape");
    for (uint32_t part = 0; part < o->nparts; part++) {
        size_t len;
        if (get_array(&c) != 2)
            c.bad = true;
        uint64_t nrows = get_uint(&c, UINT64_MAX);
        const uint8_t *rows = get_bytes(&c, &len);
        if (c.bad)
            return gl_err_set(err, GL_EINVAL, "driver: a task's result is malformed");
        int rc = nrows ? gl_output_append(o, part, task, rows, len, nrows, err) : 0;
        if (rc)
            return rc;
    }
    uint32_t nk = get_array(&c);
    if (!c.bad && nk && !(t->sample_off = malloc(nk * sizeof *t->sample_off)))
        return gl_err_set(err, GL_ENOMEM, "driver: out of memory");
    for (uint32_t j = 0; j < nk && !c.bad; j++) {
        size_t len;
        const uint8_t *k = get_bytes(&c, &len);
        t->sample_off[j] = (uint32_t)t->sample.len;
        if (!c.bad && gl_buf_append(&t->sample, k, len))
            return gl_err_set(err, GL_ENOMEM, "driver: out of memory");
        t->nsample = j + 1;
    }
    t->width = (uint32_t)get_uint(&c, UINT32_MAX);
    t->skipped = get_uint(&c, UINT64_MAX);
    if (c.bad)
        return gl_err_set(err, GL_EINVAL, "driver: a task's result is malformed");
    return gl_output_seal(o, task, err);
}
