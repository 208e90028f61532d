/* exec.c: running a plan. Stages run one after another, each as one pool
 * run of its tasks; a stage's output is freed as soon as the stage reading
 * it is done. The first task to fail stops the others at their next batch,
 * and its message is the run's error. */
#define _GNU_SOURCE
#include "compare.h"
#include "engine.h"
#include "pool.h"
#include "task.h"

#include <stdlib.h>
#include <string.h>
#include <uv.h>

struct gl_engine {
    gl_pool *pool;
    gl_store *store;
    uint64_t runs;
    gl_progress_fn progress;
    uint32_t progress_ms;
};

void gl_engine_set_progress(gl_engine *e, gl_progress_fn fn, uint32_t ms)
{
    e->progress = fn;
    e->progress_ms = ms ? ms : 250;
}

uint32_t gl_cores(void)
{
    unsigned n = uv_available_parallelism();
    return n ? n : 1;
}

gl_engine *gl_engine_new(uint32_t workers, uint64_t memory, const char *dir, const char *lua_path,
                         const char *lua_cpath, gl_err *err)
{
    gl_engine *e = calloc(1, sizeof *e);
    if (!e) {
        gl_err_set(err, GL_ENOMEM, "engine: out of memory");
        return NULL;
    }
    workers = workers ? workers : gl_cores();
    if (!(e->store = gl_store_new(memory, dir, workers, err)) ||
        !(e->pool = gl_pool_new(workers, lua_path, lua_cpath, err))) {
        gl_store_release(e->store);
        free(e);
        return NULL;
    }
    return e;
}

void gl_engine_free(gl_engine *e)
{
    if (!e)
        return;
    gl_pool_free(e->pool);
    gl_store_release(e->store);
    free(e);
}

gl_store *gl_engine_store(gl_engine *e) { return e->store; }

uint32_t gl_engine_workers(const gl_engine *e) { return gl_pool_size(e->pool); }

typedef struct stage_run {
    gl_run *run;
    gl_task *tasks;
    atomic_int first; /* index + 1 of the first failed task */
    _Atomic uint64_t rows; /* written by the finished tasks */
    gl_progress at;
    gl_progress_fn progress;
    uint64_t start;   /* uv_hrtime of the run's start */
    bool *ticked;
} stage_run;

static void tick(void *ctx, uint32_t done)
{
    stage_run *sr = ctx;
    sr->at.done = done;
    sr->at.rows = atomic_load(&sr->rows);
    sr->at.elapsed = (double)(uv_hrtime() - sr->start) / 1e9;
    *sr->ticked = true;
    sr->progress(&sr->at);
}

static void task_job(void *ctx, gl_worker *w, uint32_t i)
{
    stage_run *sr = ctx;
    gl_task *t = &sr->tasks[i];
    t->w = w;
    if ((gl_task_run(t) || gl_output_seal(t->out, t->index, &t->err)) && t->err.code != GL_ECANCEL) {
        int none = 0;
        if (atomic_compare_exchange_strong(&sr->first, &none, (int)i + 1))
            atomic_store(&sr->run->failed, 1);
    }
    uint64_t rows = 0;
    for (uint32_t p = 0; p < t->out->nparts; p++)
        rows += gl_output_cell(t->out, p, t->index)->rows;
    atomic_fetch_add(&sr->rows, rows);
}

typedef struct keyref {
    const uint8_t *p;
    size_t len;
} keyref;

typedef struct boundctx {
    uint32_t nk;
    bool desc;
} boundctx;

static int cmp_key(const void *x, const void *y, void *arg)
{
    const keyref *a = x, *b = y;
    const boundctx *c = arg;
    int r = gl_cmp_seq(a->p, a->p + a->len, b->p, b->p + b->len, c->nk);
    return c->desc ? -r : r;
}

int gl_stage_bounds(gl_stage *next, const gl_task *tasks, uint32_t ntasks)
{
    size_t n = 0;
    for (uint32_t i = 0; i < ntasks; i++)
        n += tasks[i].nsample;
    keyref *v = malloc((n ? n : 1) * sizeof *v);
    if (!(next->bound_off = calloc(next->nparts + 1, sizeof *next->bound_off)) || !v) {
        free(v);
        return -1;
    }
    size_t k = 0;
    for (uint32_t i = 0; i < ntasks; i++)
        for (uint32_t j = 0; j < tasks[i].nsample; j++) {
            size_t a = tasks[i].sample_off[j];
            size_t b = j + 1 < tasks[i].nsample ? tasks[i].sample_off[j + 1] : tasks[i].sample.len;
            v[k++] = (keyref){tasks[i].sample.data + a, b - a};
        }
    boundctx c = {gl_key_values(&next->sink_key), next->sink_desc};
    qsort_r(v, n, sizeof *v, cmp_key, &c);
    int rc = 0;
    for (uint32_t p = 1; p < next->nparts && !rc; p++) {
        next->bound_off[p - 1] = (uint32_t)next->bounds.len;
        if (n)
            rc = gl_buf_append(&next->bounds, v[n * p / next->nparts].p, v[n * p / next->nparts].len);
        else
            rc = gl_buf_append(&next->bounds, "\xc0", 1);  /* no rows: any bound will do */
    }
    next->bound_off[next->nparts - 1] = (uint32_t)next->bounds.len;
    next->bound_off[next->nparts] = (uint32_t)next->bounds.len;
    free(v);
    return rc;
}

static void free_tasks(gl_task *tasks, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        gl_buf_free(&tasks[i].sample);
        free(tasks[i].sample_off);
    }
    free(tasks);
}

/* Calls fn(run, stage index) for each output stage st reads. */
static void each_input(gl_run *run, const gl_stage *st, void (*fn)(gl_run *, uint32_t, uint32_t *), uint32_t *left)
{
    if (st->src == GL_SRC_STAGE)
        fn(run, st->src_stage, left);
    for (uint32_t i = 0; (st->src == GL_SRC_UNION || st->src == GL_SRC_PAIR) && i < st->nsrc; i++)
        fn(run, st->src_stages[i], left);
    for (uint32_t i = 0; i < st->nops; i++)
        if (st->ops[i].kind == GL_OP_BCAST_JOIN)
            fn(run, st->ops[i].side_stage, left);
}

/* Marks output s consumable when the stage about to run is its last
 * reader and reads each partition once (its main input, not a broadcast
 * side, which every task reads whole), and no later run keeps it. */
static void mark_consumed(gl_run *run, const gl_stage *st, uint32_t s, const uint32_t *left)
{
    gl_output *o = run->outs[s];
    if (!o || left[s] != 1 || run->stages.v[s].cache_step >= 0)
        return;
    for (uint32_t i = 0; i < st->nops; i++)
        if (st->ops[i].kind == GL_OP_BCAST_JOIN && st->ops[i].side_stage == s)
            return;
    o->consume = true;
}

static void count_reader(gl_run *run, uint32_t s, uint32_t *left)
{
    (void)run;
    left[s]++;
}

/* An output is freed when the last stage reading it is done (a dataset
 * read by several steps is kept for all of them), unless the plan keeps it
 * as a cached dataset's shards. */
static bool plan_owns(const gl_run *run, uint32_t s)
{
    int id = run->stages.v[s].cache_step;
    return id >= 0 && run->outs[s] && gl_plan_get(run->plan, id)->cached == run->outs[s];
}

static void release(gl_run *run, uint32_t s, uint32_t *left)
{
    if (left[s] && --left[s] == 0) {
        if (!plan_owns(run, s))
            gl_output_free(run->outs[s]);
        run->outs[s] = NULL;
    }
}

int gl_engine_run(gl_engine *e, gl_plan *p, int target, atomic_int *cancel, gl_output **out,
                  gl_stats *stats, gl_err *err)
{
    gl_run run = {.id = ++e->runs, .plan = p, .cancel = cancel, .store = e->store};
    uint64_t start = uv_hrtime();
    bool ticked = false;
    gl_stats st_total = {0};
    *out = NULL;
    int rc = gl_plan_stages(p, target, gl_pool_size(e->pool), &run.stages, err);
    if (rc)
        return rc;
    run.outs = calloc(run.stages.n, sizeof *run.outs);
    uint32_t *left = calloc(run.stages.n ? run.stages.n : 1, sizeof *left);
    if (!run.outs || !left)
        rc = gl_err_set(err, GL_ENOMEM, "engine: out of memory");
    for (uint32_t s = 0; !rc && s < run.stages.n; s++)
        each_input(&run, &run.stages.v[s], count_reader, left);
    for (uint32_t s = 0; s < run.stages.n && !rc; s++) {
        gl_stage *st = &run.stages.v[s];
        if (st->cache_in) {
            /* The shards of a cached dataset, from an earlier run: the
             * plan owns them (release leaves them alone). */
            run.outs[s] = gl_plan_get(p, st->cache_step)->cached;
            st_total.stages++;
            continue;
        }
        gl_task *tasks = calloc(st->ntasks ? st->ntasks : 1, sizeof *tasks);
        run.outs[s] = gl_output_new(st->nparts, st->ntasks, e->store, st->on_disk);
        if (!tasks || !run.outs[s]) {
            free(tasks);
            rc = gl_err_set(err, GL_ENOMEM, "engine: out of memory");
            break;
        }
        if (st->src == GL_SRC_PAIR)
            for (uint32_t i = 0; i < 2; i++)
                st->width[i] = run.outs[st->src_stages[i]]->max_width;
        if (st->src == GL_SRC_STAGE)
            mark_consumed(&run, st, st->src_stage, left);
        for (uint32_t i = 0; (st->src == GL_SRC_UNION || st->src == GL_SRC_PAIR) && i < st->nsrc; i++)
            mark_consumed(&run, st, st->src_stages[i], left);
        for (uint32_t i = 0; i < st->ntasks; i++) {
            tasks[i].run = &run;
            tasks[i].st = st;
            tasks[i].index = i;
            tasks[i].out = run.outs[s];
            tasks[i].in = st->src == GL_SRC_STAGE ? run.outs[st->src_stage] : NULL;
        }
        stage_run sr = {.run = &run, .tasks = tasks, .progress = e->progress, .start = start, .ticked = &ticked};
        sr.at = (gl_progress){.stage = s + 1, .stages = run.stages.n, .tasks = st->ntasks};
        gl_pool_run_ticking(e->pool, task_job, &sr, st->ntasks, e->progress ? tick : NULL, &sr, e->progress_ms);
        int first = atomic_load(&sr.first);
        if (first) {
            gl_err *te = &tasks[first - 1].err;
            rc = gl_err_set(err, te->code, "%s", te->msg);
        } else if (cancel && atomic_load(cancel)) {
            rc = gl_err_set(err, GL_ECANCEL, "cancelled");
        } else if (st->sample && s + 1 < run.stages.n && gl_stage_bounds(&run.stages.v[s + 1], tasks, st->ntasks)) {
            rc = gl_err_set(err, GL_ENOMEM, "sort: out of memory");
        } else if (st->on_disk) {
            rc = gl_store_sync(e->store, err);
        }
        st_total.stages++;
        st_total.tasks += st->ntasks;
        for (uint32_t i = 0; i < st->ntasks; i++) {
            st_total.skipped += tasks[i].skipped;
            if (tasks[i].width > run.outs[s]->max_width)
                run.outs[s]->max_width = tasks[i].width;
        }
        free_tasks(tasks, st->ntasks);
        each_input(&run, st, release, left);
        if (!rc && st->cache_step >= 0)
            gl_plan_cache_put(p, st->cache_step, run.outs[s]); /* kept for later runs */
    }
    if (ticked)
        e->progress(NULL);
    if (stats)
        *stats = st_total;
    if (!rc && run.stages.n) {
        *out = run.outs[run.stages.n - 1];
        run.outs[run.stages.n - 1] = NULL;
    }
    for (uint32_t s = 0; run.outs && s < run.stages.n; s++)
        if (!plan_owns(&run, s))
            gl_output_free(run.outs[s]);
    free(run.outs);
    free(left);
    gl_stages_free(&run.stages);
    return rc;
}
