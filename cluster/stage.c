/* stage.c: stage tasks as payloads, and the executor's run of one
 * (stage.h). Everything read here came from an authenticated peer, and is
 * still checked as bytes: a payload that does not parse, or names a stage,
 * partition, task or agent the plan or the task does not have, is refused
 * with a message. */
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

#define NFIELDS 15

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
             gl_mpk_put_str(b, lj, strlen(lj)) || gl_mpk_put_str(b, t->plan, t->nplan) ||
             (t->nsplits ? gl_buf_append(b, t->splits, t->nsplits) : gl_mpk_put_array(b, 0)) ||
             gl_mpk_put_uint(b, (uint64_t)t->target) ||
             gl_mpk_put_uint(b, t->workers) || gl_mpk_put_uint(b, t->stage) || gl_mpk_put_uint(b, t->task) ||
             gl_mpk_put_str(b, t->dir, t->ndir) || gl_mpk_put_str(b, t->bounds, t->nbounds) ||
             gl_mpk_put_array(b, t->nbound_off);
    for (uint32_t i = 0; !rc && i < t->nbound_off; i++)
        rc = gl_mpk_put_uint(b, t->bound_off[i]);
    rc = rc || gl_mpk_put_uint(b, t->width[0]) || gl_mpk_put_uint(b, t->width[1]) ||
         gl_mpk_put_array(b, t->nagents);
    for (uint32_t i = 0; !rc && i < t->nagents; i++)
        rc = gl_mpk_put_str(b, t->agents[i], strlen(t->agents[i]));
    rc = rc || gl_mpk_put_array(b, t->ninputs);
    for (uint32_t i = 0; !rc && i < t->ninputs; i++) {
        const gl_stage_input *in = &t->inputs[i];
        rc = gl_mpk_put_array(b, in->job ? 5 : 3) || gl_mpk_put_uint(b, in->stage) || gl_mpk_put_uint(b, in->part) ||
             gl_mpk_put_array(b, in->ntasks);
        for (uint32_t k = 0; !rc && k < in->ntasks; k++)
            rc = gl_mpk_put_uint(b, in->holder[k]);
        rc = rc || (in->job && (gl_mpk_put_uint(b, in->job) || gl_mpk_put_uint(b, in->as)));
    }
    return rc ? -1 : 0;
}

static bool file_source(const gl_stage *st)
{
    return st->src == GL_SRC_TEXT || st->src == GL_SRC_CSV || st->src == GL_SRC_MSGPACK;
}

int gl_stage_splits_encode(gl_buf *b, const gl_stages *stages)
{
    uint32_t n = 0;
    for (uint32_t s = 0; s < stages->n; s++)
        n += file_source(&stages->v[s]);
    int rc = gl_mpk_put_array(b, n);
    for (uint32_t s = 0; s < stages->n && !rc; s++) {
        const gl_stage *st = &stages->v[s];
        if (!file_source(st))
            continue;
        uint32_t npieces = st->first[st->ntasks];
        rc = gl_mpk_put_array(b, 4) || gl_mpk_put_uint(b, (uint64_t)st->src_step) ||
             gl_mpk_put_array(b, st->nfiles);
        for (uint32_t f = 0; f < st->nfiles && !rc; f++)
            rc = gl_mpk_put_str(b, st->files[f], strlen(st->files[f]));
        rc = rc || gl_mpk_put_array(b, npieces);
        for (uint32_t i = 0; i < npieces && !rc; i++) {
            const gl_piece *pc = &st->pieces[i];
            rc = gl_mpk_put_array(b, 4) || gl_mpk_put_uint(b, pc->file) || gl_mpk_put_uint(b, pc->start) ||
                 gl_mpk_put_uint(b, pc->end) || gl_mpk_put_uint(b, pc->line);
        }
        rc = rc || gl_mpk_put_array(b, st->ntasks + 1);
        for (uint32_t t = 0; t <= st->ntasks && !rc; t++)
            rc = gl_mpk_put_uint(b, st->first[t]);
    }
    return rc ? -1 : 0;
}

/* Reads one split at c and gives it to its step of plan. */
static int read_split(gl_plan *plan, cur *c, gl_err *err)
{
    if (get_array(c) != 4)
        c->bad = true;
    int step = (int)get_uint(c, INT32_MAX);
    uint32_t nfiles = get_array(c);
    /* every count is bounded by the bytes left, so a lie allocates little */
    size_t left = (size_t)(c->end - c->p);
    if (c->bad || nfiles > left)
        return gl_err_set(err, GL_EINVAL, "executor: malformed file list in the stage task");
    char **files = calloc(nfiles ? nfiles : 1, sizeof *files);
    gl_piece *pieces = NULL;
    uint32_t *first = NULL, npieces = 0, nfirst = 0;
    int rc = files ? 0 : gl_err_set(err, GL_ENOMEM, "executor: out of memory");
    for (uint32_t f = 0; f < nfiles && !rc && !c->bad; f++) {
        size_t len;
        const uint8_t *name = get_bytes(c, &len);
        if (!c->bad && !(files[f] = strndup((const char *)name, len)))
            rc = gl_err_set(err, GL_ENOMEM, "executor: out of memory");
    }
    if (!rc && !c->bad && (npieces = get_array(c)) <= (size_t)(c->end - c->p) &&
        !(pieces = calloc(npieces ? npieces : 1, sizeof *pieces)))
        rc = gl_err_set(err, GL_ENOMEM, "executor: out of memory");
    for (uint32_t i = 0; i < npieces && pieces && !rc && !c->bad; i++) {
        if (get_array(c) != 4)
            c->bad = true;
        pieces[i].file = (uint32_t)get_uint(c, UINT32_MAX);
        pieces[i].start = get_uint(c, UINT64_MAX);
        pieces[i].end = get_uint(c, UINT64_MAX);
        pieces[i].line = get_uint(c, UINT64_MAX);
    }
    if (!rc && !c->bad && pieces && (nfirst = get_array(c)) >= 2 && nfirst <= (size_t)(c->end - c->p) &&
        !(first = malloc(nfirst * sizeof *first)))
        rc = gl_err_set(err, GL_ENOMEM, "executor: out of memory");
    for (uint32_t t = 0; t < nfirst && first && !rc && !c->bad; t++)
        first[t] = (uint32_t)get_uint(c, npieces);
    if (!rc && (c->bad || !first || first[nfirst - 1] != npieces ||
                gl_plan_set_split(plan, step, files, nfiles, pieces, first, nfirst - 1)))
        rc = gl_err_set(err, GL_EINVAL, "executor: malformed file list in the stage task");
    for (uint32_t f = 0; f < nfiles && files; f++)
        free(files[f]);
    free(files);
    free(pieces);
    free(first);
    return rc;
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

struct gl_stage_run {
    gl_plan *plan;
    gl_run run;
    gl_stage *st;
    uint32_t stage, task;
    char **agents;
    uint32_t nagents;
    gl_fetch_req *fetches;
    uint32_t nfetches;
    uint32_t *tasks;     /* the fetches' task lists, back to back */
    gl_task t;
    gl_pool *pool;
};

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

/* The stages st reads, into v (room for GL_INPUTS_MAX + 65); returns how many. */
static uint32_t reads(const gl_stage *st, uint32_t *v, bool *side)
{
    uint32_t n = 0;
    if (st->src == GL_SRC_STAGE)
        side[n] = false, v[n++] = st->src_stage;
    for (uint32_t i = 0; (st->src == GL_SRC_UNION || st->src == GL_SRC_PAIR) && i < st->nsrc; i++)
        side[n] = false, v[n++] = st->src_stages[i];
    for (uint32_t i = 0; i < st->nops && n < GL_INPUTS_MAX + 65; i++)
        if (st->ops[i].kind == GL_OP_BCAST_JOIN)
            side[n] = true, v[n++] = st->ops[i].side_stage;
    return n;
}

/* An empty output for every stage st reads and no fetch filled, so a
 * partition no input row went to still reads as empty. An input read once
 * (not a broadcast side, which a join may read again, nor a stage read
 * twice, as a self-join's) is freed as it is read, as local mode does. */
static int inputs_exist(gl_run *run, const gl_stage *st)
{
    uint32_t need[GL_INPUTS_MAX + 65], n;
    bool side[GL_INPUTS_MAX + 65];
    n = reads(st, need, side);
    for (uint32_t i = 0; i < n; i++)
        if (!run->outs[need[i]] &&
            !(run->outs[need[i]] = gl_output_new(run->stages.v[need[i]].nparts, 1, run->store, false)))
            return -1;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t times = 0;
        for (uint32_t j = 0; j < n; j++)
            times += need[j] == need[i] ? (side[j] ? 2 : 1) : 0;
        run->outs[need[i]]->consume = times == 1; /* read once: freed as it is read */
    }
    return 0;
}

/* Reads the inputs list of a payload: makes each input stage's output (a
 * cell per producing task) and one fetch per input and agent. */
static int read_inputs(gl_stage_run *r, cur *c, uint32_t ninputs, gl_err *err)
{
    const uint8_t *at = c->p;
    /* first pass: how many task numbers, for one allocation */
    size_t total = 0;
    for (uint32_t i = 0; i < ninputs && !c->bad; i++) {
        uint32_t nf = get_array(c);
        if (nf != 3 && nf != 5)
            c->bad = true;
        get_uint(c, UINT32_MAX);
        get_uint(c, UINT32_MAX);
        uint32_t k = get_array(c);
        for (uint32_t j = 0; j < k && !c->bad; j++)
            get_uint(c, UINT32_MAX);
        if (nf == 5) {
            get_uint(c, UINT64_MAX);
            get_uint(c, UINT32_MAX);
        }
        total += k;
    }
    if (c->bad)
        return gl_err_set(err, GL_EINVAL, "executor: malformed inputs in the stage task");
    c->p = at;
    /* a fetch per input and agent at most: ninputs * nagents, bounded by total */
    size_t maxf = total < (size_t)ninputs * r->nagents ? total : (size_t)ninputs * r->nagents;
    r->tasks = malloc((total ? total : 1) * sizeof *r->tasks);
    r->fetches = calloc(maxf ? maxf : 1, sizeof *r->fetches);
    uint32_t *holder = malloc((total ? total : 1) * sizeof *holder);
    if (!r->tasks || !r->fetches || !holder) {
        free(holder);
        return gl_err_set(err, GL_ENOMEM, "executor: out of memory");
    }
    size_t used = 0;
    int rc = 0;
    for (uint32_t i = 0; i < ninputs && !rc; i++) {
        uint32_t nf = get_array(c);
        uint32_t s = (uint32_t)get_uint(c, UINT32_MAX), p = (uint32_t)get_uint(c, UINT32_MAX);
        uint32_t k = get_array(c);
        for (uint32_t j = 0; j < k; j++)
            holder[j] = (uint32_t)get_uint(c, UINT32_MAX);
        uint64_t job = nf == 5 ? get_uint(c, UINT64_MAX) : 0;
        uint32_t as = nf == 5 ? (uint32_t)get_uint(c, UINT32_MAX) : s;
        if (s >= r->run.stages.n || p >= r->run.stages.v[s].nparts || k != r->run.stages.v[s].ntasks) {
            rc = gl_err_set(err, GL_EINVAL, "executor: an input of the stage task does not fit the plan");
            break;
        }
        for (uint32_t j = 0; j < k && !rc; j++)
            if (holder[j] >= r->nagents)
                rc = gl_err_set(err, GL_EINVAL, "executor: an input of the stage task names no agent");
        bool again = false;
        for (uint32_t f = 0; f < r->nfetches; f++)
            again |= r->fetches[f].stage == as && r->fetches[f].job == job && r->fetches[f].part == p;
        if (rc || again)
            continue;
        gl_output *o = r->run.outs[s];
        if (!o && !(o = r->run.outs[s] = gl_output_new(r->run.stages.v[s].nparts, k, r->run.store, false)))
            rc = gl_err_set(err, GL_ENOMEM, "executor: out of memory");
        /* the agents in the order they first hold a task, each with its tasks in order */
        for (uint32_t j = 0; j < k && !rc; j++) {
            bool seen = false;
            for (uint32_t e = 0; e < j && !seen; e++)
                seen = holder[e] == holder[j];
            if (seen)
                continue;
            gl_fetch_req *f = &r->fetches[r->nfetches++];
            *f = (gl_fetch_req){holder[j], as, p, r->tasks + used, 0, o, job};
            for (uint32_t e = j; e < k; e++)
                if (holder[e] == holder[j])
                    f->tasks[f->ntasks++] = e;
            used += f->ntasks;
        }
    }
    free(holder);
    return rc;
}

int gl_stage_open(const uint8_t *payload, size_t n, uint64_t memory, gl_stage_run **out, gl_err *err)
{
    *out = NULL;
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
    uint32_t nsplits = get_array(&c);
    const uint8_t *splits_at = c.p;
    for (uint32_t i = 0; i < nsplits && !c.bad; i++)
        if (!(c.p = gl_mpk_skip(c.p, c.end)))
            c.bad = true;
    int target = (int)get_uint(&c, INT32_MAX);
    uint32_t workers = (uint32_t)get_uint(&c, 1u << 20);
    uint32_t stage = (uint32_t)get_uint(&c, UINT32_MAX);
    uint32_t task = (uint32_t)get_uint(&c, UINT32_MAX);
    const uint8_t *dir = get_bytes(&c, &ndir);
    const uint8_t *bounds = get_bytes(&c, &nbounds);
    uint32_t nb = get_array(&c);
    const uint8_t *bound_at = c.p;
    for (uint32_t i = 0; i < nb && !c.bad; i++)
        get_uint(&c, nbounds);
    uint32_t w0 = (uint32_t)get_uint(&c, UINT32_MAX), w1 = (uint32_t)get_uint(&c, UINT32_MAX);
    uint32_t nagents = get_array(&c);
    const uint8_t *agents_at = c.p;
    for (uint32_t i = 0; i < nagents && !c.bad; i++)
        if (get_bytes(&c, &len) && len >= GL_ADDR_MAX)
            c.bad = true;
    uint32_t ninputs = get_array(&c);
    if (c.bad || !workers || ndir >= 4096)
        return gl_err_set(err, GL_EINVAL, "executor: malformed stage task");
    char cwd[4096];
    memcpy(cwd, dir, ndir);
    cwd[ndir] = 0;
    if (chdir(cwd))
        return gl_err_set(err, GL_EIO, "executor: cannot enter the driver's directory %s: %s", cwd,
                          strerror(errno));

    gl_stage_run *r = calloc(1, sizeof *r);
    if (!r)
        return gl_err_set(err, GL_ENOMEM, "executor: out of memory");
    r->run.id = 1;
    r->stage = stage;
    r->task = task;
    int rc = gl_plan_decode(plan_bytes, nplan, &r->plan, err);
    cur sc = {splits_at, payload + n, false};
    for (uint32_t i = 0; i < nsplits && !rc; i++)
        rc = read_split(r->plan, &sc, err);
    if (!rc)
        rc = gl_plan_stages(r->plan, target, workers, &r->run.stages, err);
    if (rc)
        goto fail;
    r->run.plan = r->plan;
    if (stage >= r->run.stages.n || task >= r->run.stages.v[stage].ntasks) {
        rc = gl_err_set(err, GL_EINVAL, "executor: task %u of stage %u is not in the plan", task, stage);
        goto fail;
    }
    gl_stage *st = r->st = &r->run.stages.v[stage];
    if (nb) {
        if (nb != st->nparts + 1 || st->bound_off) {
            rc = gl_err_set(err, GL_EINVAL, "executor: the range bounds do not fit stage %u", stage);
            goto fail;
        }
        if (!(st->bound_off = malloc(nb * sizeof *st->bound_off)) || gl_buf_append(&st->bounds, bounds, nbounds)) {
            rc = gl_err_set(err, GL_ENOMEM, "executor: out of memory");
            goto fail;
        }
        cur b = {bound_at, payload + n, false};
        for (uint32_t i = 0; i < nb; i++)
            st->bound_off[i] = (uint32_t)get_uint(&b, nbounds);
    }
    st->width[0] = w0;
    st->width[1] = w1;
    if (!(r->agents = calloc(nagents ? nagents : 1, sizeof *r->agents))) {
        rc = gl_err_set(err, GL_ENOMEM, "executor: out of memory");
        goto fail;
    }
    cur a = {agents_at, payload + n, false};
    for (uint32_t i = 0; i < nagents; i++, r->nagents++) {
        const uint8_t *s = get_bytes(&a, &len);
        if (!(r->agents[i] = strndup((const char *)s, len))) {
            rc = gl_err_set(err, GL_ENOMEM, "executor: out of memory");
            goto fail;
        }
    }
    if (!(r->run.store = gl_store_new(memory, NULL, 1, err))) {
        rc = err->code ? err->code : GL_ENOMEM;
        goto fail;
    }
    if (!(r->run.outs = calloc(r->run.stages.n, sizeof *r->run.outs))) {
        rc = gl_err_set(err, GL_ENOMEM, "executor: out of memory");
        goto fail;
    }
    if ((rc = read_inputs(r, &c, ninputs, err)))
        goto fail;
    *out = r;
    return 0;
fail:
    gl_stage_close(r);
    return rc;
}

const gl_fetch_req *gl_stage_fetches(const gl_stage_run *r, uint32_t *n)
{
    *n = r->nfetches;
    return r->fetches;
}

const char *const *gl_stage_agents(const gl_stage_run *r, uint32_t *n)
{
    *n = r->nagents;
    return (const char *const *)r->agents;
}

int gl_stage_exec(gl_stage_run *r, const char *lua_path, const char *lua_cpath, gl_err *err)
{
    gl_run *run = &r->run;
    for (uint32_t s = 0; s < run->stages.n; s++)
        for (uint32_t i = 0; run->outs[s] && i < run->outs[s]->ntasks; i++)
            if (gl_output_seal(run->outs[s], i, err))
                return err->code;
    if (inputs_exist(run, r->st))
        return gl_err_set(err, GL_ENOMEM, "executor: out of memory");
    gl_task *t = &r->t;
    t->run = run;
    t->st = r->st;
    t->index = r->task;
    t->in = r->st->src == GL_SRC_STAGE ? run->outs[r->st->src_stage] : NULL;
    if (!(t->out = gl_output_new(r->st->nparts, r->st->ntasks, run->store, r->st->on_disk)))
        return gl_err_set(err, GL_ENOMEM, "executor: out of memory");
    if (!(r->pool = gl_pool_new(1, lua_path, lua_cpath, err)))
        return err->code ? err->code : GL_ENOMEM;
    one_task o = {t, 0};
    gl_pool_run(r->pool, run_one, &o, 1);
    if (o.rc)
        return gl_err_set(err, t->err.code ? t->err.code : GL_ETASK, "%s", t->err.msg);
    return 0;
}

const gl_output *gl_stage_output(const gl_stage_run *r, uint32_t *stage, uint32_t *task)
{
    *stage = r->stage;
    *task = r->task;
    return r->t.out;
}

int gl_stage_result(const gl_stage_run *r, gl_buf *b, gl_err *err)
{
    const gl_task *t = &r->t;
    const gl_output *o = t->out;
    int rc = gl_mpk_put_array(b, 4) || gl_mpk_put_array(b, o->nparts);
    for (uint32_t p = 0; !rc && p < o->nparts; p++) {
        const gl_shard *sh = &o->cells[(size_t)p * o->ntasks + t->index];
        rc = gl_mpk_put_array(b, 2) || gl_mpk_put_uint(b, sh->rows) || gl_mpk_put_uint(b, sh->bytes);
    }
    rc = rc || gl_mpk_put_array(b, t->nsample);
    for (uint32_t j = 0; !rc && j < t->nsample; j++) {
        size_t a = t->sample_off[j];
        size_t e = j + 1 < t->nsample ? t->sample_off[j + 1] : t->sample.len;
        rc = gl_mpk_put_str(b, t->sample.data + a, e - a);
    }
    rc = rc || gl_mpk_put_uint(b, t->width) || gl_mpk_put_uint(b, t->skipped);
    return rc ? gl_err_set(err, GL_ENOMEM, "executor: out of memory") : 0;
}

void gl_stage_close(gl_stage_run *r)
{
    if (!r)
        return;
    gl_pool_free(r->pool);
    gl_output_free(r->t.out);
    gl_buf_free(&r->t.sample);
    free(r->t.sample_off);
    for (uint32_t s = 0; r->run.outs && s < r->run.stages.n; s++)
        gl_output_free(r->run.outs[s]);
    free(r->run.outs);
    gl_store_release(r->run.store);
    gl_stages_free(&r->run.stages);
    gl_plan_free(r->plan);
    for (uint32_t i = 0; i < r->nagents; i++)
        free(r->agents[i]);
    free(r->agents);
    free(r->fetches);
    free(r->tasks);
    free(r);
}

int gl_stage_result_apply(const uint8_t *p, size_t n, uint32_t nparts, uint64_t *rows, uint64_t *bytes, gl_task *t,
                          gl_err *err)
{
    cur c = {p, p + n, false};
    if (get_array(&c) != 4 || get_array(&c) != nparts)
        return gl_err_set(err, GL_EINVAL, "a task's result has the wrong shape");
    for (uint32_t part = 0; part < nparts; part++) {
        if (get_array(&c) != 2)
            c.bad = true;
        rows[part] = get_uint(&c, UINT64_MAX);
        bytes[part] = get_uint(&c, UINT64_MAX);
    }
    uint32_t nk = get_array(&c);
    if (!c.bad && t && nk && !(t->sample_off = malloc(nk * sizeof *t->sample_off)))
        return gl_err_set(err, GL_ENOMEM, "out of memory");
    for (uint32_t j = 0; j < nk && !c.bad; j++) {
        size_t len;
        const uint8_t *k = get_bytes(&c, &len);
        if (c.bad || !t)
            continue;
        t->sample_off[j] = (uint32_t)t->sample.len;
        if (gl_buf_append(&t->sample, k, len))
            return gl_err_set(err, GL_ENOMEM, "out of memory");
        t->nsample = j + 1;
    }
    uint32_t width = (uint32_t)get_uint(&c, UINT32_MAX);
    uint64_t skipped = get_uint(&c, UINT64_MAX);
    if (c.bad || c.p != c.end)
        return gl_err_set(err, GL_EINVAL, "a task's result is malformed");
    if (t) {
        t->width = width;
        t->skipped = skipped;
    }
    return 0;
}
