/* driver.c: gl_cluster_run, a flow's stages on a cluster (driver.h).
 *
 * The driver cuts the plan into stages exactly as local mode does, with
 * the worker count set to the executor slots the master granted, and runs
 * them in order. Each task of a stage goes to an agent with a free slot as
 * one task message (stage.h): the plan's bytes, the files its sources read
 * and how they are cut (as the driver listed them: executors list none),
 * which task, and where its input partitions are. The executor fetches them from the agents holding
 * them and writes its output to its own agent, which keeps it until the
 * job ends; its done tells the driver each output partition's rows and
 * bytes. So the driver keeps no rows between stages: for each stage, which
 * agent holds each task's output and what it counts. It places a task on
 * the agent (with a free slot) already holding the most bytes of its
 * input, and, when the last stage is done, fetches that stage's partitions
 * from the agents (fetch.h) into its own store (budgeted, spilling to LMDB
 * like local mode's), which gl_cluster_run returns. After a stage that
 * samples keys for a range sink, the driver cuts the bounds with the
 * engine's own gl_stage_bounds, so partitions and therefore sorted output
 * come out as in local mode.
 *
 * A task that fails (an executor that crashed or was killed, or a Lua
 * error) runs again, on another agent when there is one, up to
 * max_attempts; then its last message is the job's error. A Lua error
 * thus fails the job with the same message as local mode.
 *
 * An agent that goes away mid-job costs its running tasks (each loss
 * counts as an attempt) and the outputs it held. Those of the running
 * stage run again; those of earlier stages are marked lost and run again
 * only when a task that reads them has to run (its inputs first, stage
 * order), and a task whose input fetch failed because its agent was gone
 * goes back to the queue without counting an attempt. An agent that fails
 * to serve a shard it should hold is treated as gone. A task that already
 * succeeded and was lost starts its attempts afresh. A job none of whose
 * granted agents can be reached (an agent that hangs, or whose death the
 * master has not seen yet, still has its slots granted) asks the master
 * again, as when no slot is free.
 *
 * One libuv loop per call, run on the calling thread until the job ends.
 * At the end (success, failure or cancel) every agent used is told to drop
 * the job's shards, and every connection is closed, which also tells the
 * agents to drop them and to kill the job's executors.
 *
 * Cached datasets (ds:cache()). The driver and its executors plan every
 * step (GL_PLAN_NO_LOCAL_CACHE: what a local run kept is not the
 * cluster's), so they agree on the stages. When a job has computed a
 * stage whose output is a cached dataset, before it ends the driver asks
 * each agent holding part of it to keep those shards past the job, over
 * the process's session connection to that agent (session.h), and
 * records in the plan (gl_plan_cache_remote) a `kept`: the job and stage
 * the agents know the shards by, which agent holds each task's output,
 * and each partition's rows and bytes: what the driver knows of a stage
 * it ran. A later run of the plan in this process takes such a stage as
 * done, its tasks on those agents, when the record fits the stage (the
 * same tasks and partitions: the same shard counts) and every holder is
 * one of the agents granted and its session connection still open; the
 * stages that only it reads are not run at all. Its readers fetch the
 * kept shards (by their old job and stage, stage.h) with locality as for
 * any input. A record that does not fit is ignored: the stage runs, and
 * its new record replaces the old one. An agent lost mid-job while it
 * held kept shards that a task still needs makes the driver drop that
 * record and run the job again from the start, which computes the dataset
 * from its lineage (the skipped stages have never run in this job: their
 * range bounds and widths are unknown). The shards are let go when the
 * record is released: ds:uncache(), a new record, the plan freed (unkeep,
 * at once), or when the process ends (its session connections close).
 * An on_disk() dataset's tasks tell their agent to write its shards to
 * LMDB. */
#define _GNU_SOURCE
#include "driver.h"

#include "cluster.h"
#include "conn.h"
#include "fetch.h"
#include "opt.h"
#include "plan_wire.h"
#include "session.h"
#include "stage.h"
#include "task.h"

#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { T_QUEUED, T_RUNNING, T_DONE, T_LOST };

/* Why a job ends to run again from the start: kept shards a task needs
 * were lost (run_again), or none of the agents granted could be reached
 * (the master may still grant the slots of an agent that hangs, until it
 * misses its heartbeats, and the others' while a job that just ended held
 * them). */
enum { AGAIN_NO, AGAIN_CACHE, AGAIN_SLOTS };

/* No slot free: the driver asks the master again this often, this long. */
#define SLOT_WAIT_MS 100
#define SLOT_WAIT_MAX_MS 30000

typedef struct dagent {
    gl_conn *c;
    char addr[GL_ADDR_MAX];
    uint32_t slots, busy;
    bool ready, gone;
    bool evicted;        /* closed by the driver: it failed to serve a shard */
} dagent;

typedef struct dtask {
    int state;
    uint32_t attempts;
    int32_t agent;       /* running: where; done: who holds its output; else -1 */
    int32_t failed_on;   /* where its last attempt failed; -1 */
} dtask;

/* What the driver keeps of a stage's output. */
typedef struct dstage {
    dtask *tasks;
    uint64_t *rows, *bytes; /* [task * nparts + part], for done tasks */
    gl_task *first;         /* samples, widths, skipped lines, until its first completion */
    uint32_t ndone, max_width;
    bool reused;            /* a cached dataset's, kept by an earlier job: from_job's stage from_stage */
    bool skipped;           /* read only by reused stages: not run */
    uint64_t from_job;
    uint32_t from_stage;
} dstage;

/* The record of a cached dataset's shards on the agents, which the plan
 * keeps (gl_remote_cache, plan.h). */
typedef struct kept {
    gl_remote_cache head;
    uint64_t job;
    uint32_t stage, ntasks, nparts, max_width;
    uint32_t workers;            /* the job's worker count (its stages' shard counts follow it) */
    char (*holder)[GL_ADDR_MAX]; /* per task: the agent holding its output */
    uint64_t *rows, *bytes;      /* [task * nparts + part] */
} kept;

typedef struct drv {
    uv_loop_t loop;
    uv_timer_t tick, ask;  /* the cancel check; asking the master again */
    uint32_t asks;
    gl_secret secret;
    gl_conn *master;
    char master_addr[GL_ADDR_MAX];
    dagent *agents;
    const char **addrs;  /* the agents' addresses, as tasks and fetches name them */
    uint64_t *local;     /* pick_agent's scratch: input bytes per agent */
    uint32_t nagents, nresolved, nready;
    gl_plan *plan;
    int target;
    atomic_int *cancel;
    uint32_t max_attempts;
    gl_buf plan_bytes;
    gl_buf splits;       /* the file sources' files and pieces, as tasks carry them */
    char cwd[4096];
    gl_stages stages;
    dstage *ds;
    bool started;
    uint32_t workers;    /* the slots granted: the stages' default shard count */
    uint32_t s;          /* stages before s have completed once; s runs for the first time */
    gl_store *store;
    gl_output *result;   /* the last stage's partitions, fetched */
    gl_fetch *fetch;     /* fetching them */
    gl_fetch_req *freqs;
    uint32_t *ftasks;
    uint64_t job;
    gl_stats stats;
    int rc;
    gl_err *err;
    bool finished, fetched;
    int again;           /* AGAIN_*: why the job is to run again from the start */
    bool count_only;     /* gl_cluster_count: the last stage's rows are counted where they are */
    uint64_t count;
} drv;

static void close_all(drv *d)
{
    if (d->fetch)
        gl_fetch_cancel(d->fetch);
    d->fetch = NULL;
    if (d->master)
        gl_conn_close(d->master, "the job ended");
    gl_msg drop;
    memset(&drop, 0, sizeof drop);
    drop.type = GL_MSG_DROP;
    drop.job = d->job;
    for (uint32_t i = 0; i < d->nagents; i++) {
        gl_conn *c = d->agents[i].c;
        if (!c)
            continue;
        if (c->ready && d->started && !gl_conn_send(c, &drop))
            gl_conn_close_flushed(c, "the job ended");
        else
            gl_conn_close(c, "the job ended");
    }
    if (!uv_is_closing((uv_handle_t *)&d->tick))
        uv_close((uv_handle_t *)&d->tick, NULL);
    if (!uv_is_closing((uv_handle_t *)&d->ask))
        uv_close((uv_handle_t *)&d->ask, NULL);
}

/* Ends the job: rc 0 (success) or an error whose message is fmt. */
__attribute__((format(printf, 3, 4))) static void finish(drv *d, int rc, const char *fmt, ...)
{
    if (d->finished)
        return;
    d->finished = true;
    d->rc = rc;
    if (rc && fmt) {
        va_list ap;
        va_start(ap, fmt);
        char msg[sizeof d->err->msg];
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
        gl_err_set(d->err, rc, "%s", msg);
    }
    close_all(d);
}

#define MAX_READS (GL_INPUTS_MAX + 64)

/* The stages st reads, into v (at most MAX_READS); returns how many. */
static uint32_t reads(const gl_stage *st, uint32_t *v)
{
    uint32_t n = 0;
    if (st->src == GL_SRC_STAGE)
        v[n++] = st->src_stage;
    for (uint32_t i = 0; (st->src == GL_SRC_UNION || st->src == GL_SRC_PAIR) && i < st->nsrc; i++)
        v[n++] = st->src_stages[i];
    for (uint32_t i = 0; i < st->nops && n < MAX_READS; i++)
        if (st->ops[i].kind == GL_OP_BCAST_JOIN)
            v[n++] = st->ops[i].side_stage;
    return n;
}

/* Whether every stage s reads has all its outputs on live agents. */
static bool inputs_ready(const drv *d, uint32_t s)
{
    uint32_t in[MAX_READS], n = reads(&d->stages.v[s], in);
    for (uint32_t k = 0; k < n; k++)
        if (d->ds[in[k]].ndone < d->stages.v[in[k]].ntasks)
            return false;
    return true;
}

/* One input partition of a task: partition part of stage's output. */
typedef struct inref {
    uint32_t stage, part;
} inref;

/* realloc that frees the old block when it fails. */
static inref *grow_refs(inref *r, uint32_t cap)
{
    inref *q = realloc(r, cap * sizeof *r);
    if (!q)
        free(r);
    return q;
}

/* The partitions task i of stage s reads, in the order it reads them,
 * each once, into v (caller frees); returns how many, or -1 (no memory). */
static int task_inputs(const drv *d, uint32_t s, uint32_t i, inref **v)
{
    const gl_stage *st = &d->stages.v[s];
    uint32_t n = 0, cap = 4;
    inref *r = malloc(cap * sizeof *r);
#define PUSH(S, P) \
    do { \
        bool dup_ = false; \
        for (uint32_t k_ = 0; k_ < n && !dup_; k_++) \
            dup_ = r[k_].stage == (S) && r[k_].part == (P); \
        if (!dup_ && n == cap && (cap *= 2, !(r = grow_refs(r, cap)))) \
            return -1; \
        if (!dup_) \
            r[n++] = (inref){(S), (P)}; \
    } while (0)
    if (!r)
        return -1;
    if (st->src == GL_SRC_STAGE)
        PUSH(st->src_stage, i);
    if (st->src == GL_SRC_PAIR)
        for (uint32_t k = 0; k < 2; k++)
            PUSH(st->src_stages[k], i);
    if (st->src == GL_SRC_UNION) {
        /* task i is partition j of input k, counting the inputs' partitions in order (task.c) */
        uint32_t j = i;
        for (uint32_t k = 0; k < st->nsrc; k++) {
            uint32_t np = d->stages.v[st->src_stages[k]].nparts;
            if (j < np) {
                PUSH(st->src_stages[k], j);
                break;
            }
            j -= np;
        }
    }
    for (uint32_t k = 0; k < st->nops; k++)
        if (st->ops[k].kind == GL_OP_BCAST_JOIN)
            for (uint32_t p = 0; p < d->stages.v[st->ops[k].side_stage].nparts; p++)
                PUSH(st->ops[k].side_stage, p);
#undef PUSH
    *v = r;
    return (int)n;
}

/* The task message's payload for task i of stage s; caller frees *payload. */
static int task_payload(drv *d, uint32_t s, uint32_t i, gl_buf *payload)
{
    const gl_stage *st = &d->stages.v[s];
    inref *refs = NULL;
    int n = task_inputs(d, s, i, &refs);
    if (n < 0)
        return GL_ENOMEM;
    gl_stage_input *in = calloc(n ? (size_t)n : 1, sizeof *in);
    uint32_t **hold = calloc(d->stages.n, sizeof *hold); /* per input stage: who holds each task's output */
    int rc = in && hold ? 0 : GL_ENOMEM;
    for (int k = 0; k < n && !rc; k++) {
        uint32_t r = refs[k].stage, nt = d->stages.v[r].ntasks;
        if (!hold[r] && !(hold[r] = malloc((nt ? nt : 1) * sizeof **hold))) {
            rc = GL_ENOMEM;
            break;
        }
        for (uint32_t t = 0; t < nt; t++)
            hold[r][t] = (uint32_t)d->ds[r].tasks[t].agent;
        in[k] = (gl_stage_input){r, refs[k].part, hold[r], nt, d->ds[r].from_job, d->ds[r].from_stage};
    }
    if (!rc) {
        gl_stage_task t = {
            .plan = d->plan_bytes.data, .nplan = d->plan_bytes.len, .splits = d->splits.data,
            .nsplits = d->splits.len, .target = d->target,
            .workers = d->workers, .stage = s, .task = i, .dir = d->cwd, .ndir = strlen(d->cwd),
            .bounds = st->bounds.data, .nbounds = st->bounds.len,
            .bound_off = st->bound_off, .nbound_off = st->bound_off ? st->nparts + 1 : 0,
            .width = {st->width[0], st->width[1]}, .agents = d->addrs, .nagents = d->nagents,
            .inputs = in, .ninputs = (uint32_t)n};
        rc = gl_stage_task_encode(payload, &t) ? GL_ENOMEM : 0;
    }
    for (uint32_t r = 0; hold && r < d->stages.n; r++)
        free(hold[r]);
    free(hold);
    free(in);
    free(refs);
    return rc;
}

/* The agent for task i of stage s: one with a free slot, not the one it
 * last failed on when another will do; of those, the one holding the most
 * bytes of its input, then the least busy. -1: none free, or no memory. */
static int32_t pick_agent(drv *d, uint32_t s, uint32_t i)
{
    const dtask *t = &d->ds[s].tasks[i];
    inref *refs = NULL;
    int n = task_inputs(d, s, i, &refs);
    if (n < 0)
        return -1;
    memset(d->local, 0, d->nagents * sizeof *d->local);
    for (int k = 0; k < n; k++) {
        const dstage *in = &d->ds[refs[k].stage];
        uint32_t np = d->stages.v[refs[k].stage].nparts;
        for (uint32_t u = 0; u < d->stages.v[refs[k].stage].ntasks; u++)
            if (in->tasks[u].agent >= 0)
                d->local[in->tasks[u].agent] += in->bytes[(size_t)u * np + refs[k].part];
    }
    free(refs);
    int32_t best = -1;
    for (uint32_t a = 0; a < d->nagents; a++) {
        dagent *g = &d->agents[a];
        if (!g->ready || g->gone || g->busy >= g->slots)
            continue;
        if (best < 0) {
            best = (int32_t)a;
            continue;
        }
        bool fresh = (int32_t)a != t->failed_on, best_fresh = best != t->failed_on;
        if (fresh != best_fresh) {
            if (fresh)
                best = (int32_t)a;
            continue;
        }
        if (d->local[a] != d->local[best]) {
            if (d->local[a] > d->local[best])
                best = (int32_t)a;
            continue;
        }
        if (g->busy < d->agents[best].busy)
            best = (int32_t)a;
    }
    return best;
}

/* Sends task i of stage s to agent a. 0, or the job is finished. */
static int send_task(drv *d, uint32_t s, uint32_t i, int32_t a)
{
    gl_buf payload = {0};
    int rc = task_payload(d, s, i, &payload);
    if (rc) {
        gl_buf_free(&payload);
        finish(d, rc, "driver: out of memory making task %u of stage %u", i, s);
        return rc;
    }
    if (payload.len > GL_WIRE_MAX - 4096) {
        char sz[32];
        finish(d, GL_EINVAL, "driver: task %u of stage %u is %s, more than a cluster frame holds (the plan, with "
               "its functions and the rows of rows() sources, travels in every task)",
               i, s, gl_fmt_bytes(payload.len, sz, sizeof sz));
        gl_buf_free(&payload);
        return GL_EINVAL;
    }
    gl_msg m;
    memset(&m, 0, sizeof m);
    m.type = GL_MSG_TASK;
    m.job = d->job;
    m.task = ((uint64_t)s << 32) | i;
    m.payload = payload.data;
    m.npayload = payload.len;
    m.parts = d->stages.v[s].nparts;
    m.disk = d->stages.v[s].on_disk;
    dtask *t = &d->ds[s].tasks[i];
    t->state = T_RUNNING;
    t->agent = a;
    t->attempts++;
    d->agents[a].busy++;
    gl_conn_send(d->agents[a].c, &m);
    gl_buf_free(&payload);
    return 0;
}

static void start_fetch(drv *d);
static bool inputs_ready_last(const drv *d);

/* Kept shards of stage s that a task needs were lost with their agent:
 * the record goes, and the job ends, to run again from the start. */
static void run_again(drv *d, uint32_t s)
{
    const gl_stage *st = &d->stages.v[s];
    if (st->cache_step >= 0 && d->ds[s].reused)
        gl_plan_cache_remote(d->plan, st->cache_step, NULL);
    d->again = AGAIN_CACHE;
    finish(d, GL_EIO, "cluster: an agent holding a cached dataset's shards was lost mid-job");
}

/* The highest stage that may run: the one running for the first time, or
 * the last once every stage has completed. */
static uint32_t top_stage(const drv *d) { return d->s < d->stages.n ? d->s : d->stages.n - 1; }

static void dispatch(drv *d)
{
    if (d->finished || !d->started || !d->stages.n)
        return;
    uint32_t top = top_stage(d);
    /* Lost outputs that a queued task reads run again: the highest stage
     * first, so that their own lost inputs are queued in turn. */
    for (uint32_t s = top + 1; s-- > 0;) {
        bool queued = false;
        for (uint32_t i = 0; i < d->stages.v[s].ntasks && !queued; i++)
            queued = d->ds[s].tasks[i].state == T_QUEUED;
        uint32_t in[MAX_READS], n = queued ? reads(&d->stages.v[s], in) : 0;
        for (uint32_t k = 0; k < n; k++)
            for (uint32_t i = 0; i < d->stages.v[in[k]].ntasks; i++) {
                if (d->ds[in[k]].tasks[i].state != T_LOST)
                    continue;
                if (d->ds[in[k]].reused || d->ds[in[k]].skipped) {
                    run_again(d, in[k]);
                    return;
                }
                d->ds[in[k]].tasks[i].state = T_QUEUED;
            }
    }
    for (uint32_t s = 0; s <= top; s++) {
        if (!inputs_ready(d, s))
            continue;
        for (uint32_t i = 0; i < d->stages.v[s].ntasks; i++) {
            if (d->ds[s].tasks[i].state != T_QUEUED)
                continue;
            int32_t a = pick_agent(d, s, i);
            if (a < 0)
                return;
            if (send_task(d, s, i, a))
                return;
        }
    }
    if (d->s == d->stages.n && !d->fetch && !d->fetched && inputs_ready_last(d))
        start_fetch(d);
}

static void start_stage(drv *d);

/* Frees the first runs' samples of a stage of ntasks. */
static void free_first(dstage *ds, uint32_t ntasks)
{
    for (uint32_t i = 0; ds->first && i < ntasks; i++) {
        gl_buf_free(&ds->first[i].sample);
        free(ds->first[i].sample_off);
    }
    free(ds->first);
    ds->first = NULL;
}

/* Stage d->s has completed for the first time: its counts, the range
 * bounds of the next stage, and the next stage's turn. */
static void stage_complete(drv *d)
{
    gl_stage *st = &d->stages.v[d->s];
    dstage *ds = &d->ds[d->s];
    for (uint32_t i = 0; i < st->ntasks; i++) {
        d->stats.skipped += ds->first[i].skipped;
        if (ds->first[i].width > ds->max_width)
            ds->max_width = ds->first[i].width;
    }
    d->stats.stages++;
    d->stats.tasks += st->ntasks;
    int rc = 0;
    if (st->sample && d->s + 1 < d->stages.n)
        rc = gl_stage_bounds(&d->stages.v[d->s + 1], ds->first, st->ntasks);
    free_first(ds, st->ntasks);
    if (rc) {
        finish(d, GL_ENOMEM, "sort: out of memory");
        return;
    }
    d->s++;
    if (d->s < d->stages.n)
        start_stage(d);
}

static void start_stage(drv *d)
{
    /* kept by an earlier job, or read only by such: nothing runs */
    for (; d->s < d->stages.n && (d->ds[d->s].reused || d->ds[d->s].skipped); d->s++)
        d->stats.stages += d->ds[d->s].reused;
    if (d->s == d->stages.n)
        return;
    gl_stage *st = &d->stages.v[d->s];
    if (st->src == GL_SRC_PAIR)
        for (uint32_t i = 0; i < 2; i++)
            st->width[i] = d->ds[st->src_stages[i]].max_width;
    if (!(d->ds[d->s].first = calloc(st->ntasks ? st->ntasks : 1, sizeof(gl_task)))) {
        finish(d, GL_ENOMEM, "driver: out of memory");
        return;
    }
    if (!st->ntasks)
        stage_complete(d);
}

/* ---- the last stage's rows, back to the driver ---- */

static bool inputs_ready_last(const drv *d)
{
    return d->ds[d->stages.n - 1].ndone == d->stages.v[d->stages.n - 1].ntasks;
}

static void on_fetched(void *ud, int rc, const char *lost, const char *msg);

/* ---- cached datasets ---- */

static int32_t agent_at(const drv *d, const char *addr);

static void kept_release(gl_remote_cache *h)
{
    kept *k = (kept *)h;
    for (uint32_t t = 0; k->holder && t < k->ntasks; t++) {
        bool seen = false;
        for (uint32_t u = 0; u < t && !seen; u++)
            seen = !strcmp(k->holder[u], k->holder[t]);
        if (!seen)
            gl_session_unkeep(k->holder[t], k->job, k->stage);
    }
    free(k->holder);
    free(k->rows);
    free(k->bytes);
    free(k);
}

/* The record of stage s's output, as this job left it; NULL when out of memory. */
static kept *kept_new(const drv *d, uint32_t s)
{
    const gl_stage *st = &d->stages.v[s];
    size_t cells = (size_t)st->ntasks * st->nparts;
    kept *k = calloc(1, sizeof *k);
    if (!k)
        return NULL;
    *k = (kept){{kept_release}, d->job, s, st->ntasks, st->nparts, d->ds[s].max_width, d->workers, NULL, NULL, NULL};
    if (!(k->holder = calloc(st->ntasks ? st->ntasks : 1, sizeof *k->holder)) ||
        !(k->rows = malloc((cells ? cells : 1) * sizeof *k->rows)) ||
        !(k->bytes = malloc((cells ? cells : 1) * sizeof *k->bytes))) {
        k->ntasks = 0;
        kept_release(&k->head);
        return NULL;
    }
    for (uint32_t t = 0; t < st->ntasks; t++)
        snprintf(k->holder[t], GL_ADDR_MAX, "%s", d->addrs[d->ds[s].tasks[t].agent]);
    memcpy(k->rows, d->ds[s].rows, cells * sizeof *k->rows);
    memcpy(k->bytes, d->ds[s].bytes, cells * sizeof *k->bytes);
    return k;
}

/* The job is done: the agents keep the shards of the cached datasets it
 * computed, and the plan records where. An agent that can't keep them
 * costs only the record: a later run computes the dataset again. */
static void keep_cached(drv *d)
{
    for (uint32_t s = 0; s < d->stages.n; s++) {
        const gl_stage *st = &d->stages.v[s];
        if (st->cache_step < 0 || d->ds[s].reused || d->ds[s].skipped || d->ds[s].ndone < st->ntasks)
            continue;
        kept *k = kept_new(d, s);
        bool ok = k != NULL;
        for (uint32_t t = 0; ok && t < st->ntasks; t++) {
            bool seen = false;
            for (uint32_t u = 0; u < t && !seen; u++)
                seen = d->ds[s].tasks[u].agent == d->ds[s].tasks[t].agent;
            gl_err e = {0};
            ok = seen || !gl_session_keep(k->holder[t], d->job, s, &e);
        }
        if (ok)
            gl_plan_cache_remote(d->plan, st->cache_step, &k->head);
        else if (k)
            kept_release(&k->head);
    }
}

/* The worker count to plan with: that of the first kept dataset the
 * stages read (planned with `workers`) whose record was made with
 * another, else workers. */
static uint32_t kept_workers(const drv *d, uint32_t workers)
{
    for (uint32_t s = 0; s < d->stages.n; s++) {
        const gl_stage *st = &d->stages.v[s];
        const kept *k = st->cache_step >= 0 ? (const kept *)gl_plan_get(d->plan, st->cache_step)->remote : NULL;
        if (k && k->workers != workers)
            return k->workers;
    }
    return workers;
}

/* The stages whose output an earlier job kept (a record that fits, on
 * agents granted to this job and still in the session) are done, where
 * they are; the stages only they read are skipped. */
static void reuse_cached(drv *d)
{
    uint32_t n = d->stages.n;
    for (uint32_t s = 0; s < n; s++) {
        const gl_stage *st = &d->stages.v[s];
        const kept *k = st->cache_step >= 0 ? (const kept *)gl_plan_get(d->plan, st->cache_step)->remote : NULL;
        if (!k || k->ntasks != st->ntasks || k->nparts != st->nparts)
            continue;
        bool ok = true;
        for (uint32_t t = 0; t < k->ntasks && ok; t++) {
            int32_t a = agent_at(d, k->holder[t]);
            ok = a >= 0 && d->agents[a].ready && !d->agents[a].gone && gl_session_alive(k->holder[t]);
        }
        if (!ok)
            continue;
        dstage *ds = &d->ds[s];
        for (uint32_t t = 0; t < k->ntasks; t++)
            ds->tasks[t] = (dtask){T_DONE, 0, agent_at(d, k->holder[t]), -1};
        size_t cells = (size_t)k->ntasks * k->nparts;
        memcpy(ds->rows, k->rows, cells * sizeof *ds->rows);
        memcpy(ds->bytes, k->bytes, cells * sizeof *ds->bytes);
        ds->ndone = k->ntasks;
        ds->max_width = k->max_width;
        ds->reused = true;
        ds->from_job = k->job;
        ds->from_stage = k->stage;
    }
    /* from the last stage back: what a stage that runs reads must be there */
    bool *need = calloc(n ? n : 1, sizeof *need);
    if (!need)
        return; /* then everything runs */
    need[n - 1] = true;
    for (uint32_t s = n; s-- > 0;) {
        uint32_t in[MAX_READS], m = need[s] && !d->ds[s].reused ? reads(&d->stages.v[s], in) : 0;
        for (uint32_t k = 0; k < m; k++)
            need[in[k]] = true;
    }
    for (uint32_t s = 0; s < n; s++) {
        if (need[s] || d->ds[s].reused)
            continue;
        d->ds[s].skipped = true;
        for (uint32_t t = 0; t < d->stages.v[s].ntasks; t++)
            d->ds[s].tasks[t].state = T_LOST;
    }
    free(need);
}

/* Fetches every partition of the last stage: from each agent, for each
 * partition, the tasks whose output there has rows, into d->result. */
static void start_fetch(drv *d)
{
    uint32_t last = d->stages.n - 1, np = d->stages.v[last].nparts, nt = d->stages.v[last].ntasks;
    const dstage *ds = &d->ds[last];
    if (d->count_only) {
        /* the tasks' results counted them: no row moves */
        for (size_t c = 0; c < (size_t)np * nt; c++)
            d->count += ds->rows[c];
        d->fetched = true;
        keep_cached(d);
        finish(d, 0, NULL);
        return;
    }
    free(d->freqs);
    free(d->ftasks);
    d->freqs = calloc((size_t)d->nagents * np + 1, sizeof *d->freqs);
    d->ftasks = malloc(((size_t)np * nt + 1) * sizeof *d->ftasks);
    if (!d->result)
        d->result = gl_output_new(np, nt, d->store, false);
    if (!d->freqs || !d->ftasks || !d->result) {
        finish(d, GL_ENOMEM, "driver: out of memory");
        return;
    }
    uint32_t n = 0, used = 0;
    for (uint32_t a = 0; a < d->nagents; a++)
        for (uint32_t p = 0; p < np; p++) {
            gl_fetch_req *r = &d->freqs[n];
            *r = (gl_fetch_req){a, last, p, d->ftasks + used, 0, d->result, 0};
            for (uint32_t t = 0; t < nt; t++)
                if (ds->tasks[t].agent == (int32_t)a && ds->rows[(size_t)t * np + p])
                    r->tasks[r->ntasks++] = t;
            used += r->ntasks;
            n += r->ntasks > 0;
        }
    if (!n) {
        d->fetched = true;
        finish(d, 0, NULL);
        return;
    }
    gl_err err = {0};
    if (!(d->fetch = gl_fetch_start(&d->loop, &d->secret, "driver", d->job, d->addrs, d->freqs, n, on_fetched, d,
                                    &err)))
        finish(d, err.code ? err.code : GL_ENOMEM, "driver: %s", err.msg);
}

static int32_t agent_at(const drv *d, const char *addr)
{
    for (uint32_t a = 0; a < d->nagents; a++)
        if (!strcmp(d->agents[a].addr, addr))
            return (int32_t)a;
    return -1;
}

static void agent_lost(drv *d, int32_t a, const char *why);

/* An agent failed to serve a shard it should hold: it is treated as gone,
 * at once (its connection's close comes later, and meanwhile nothing must
 * be asked of it again). */
static void evict(drv *d, int32_t a, const char *why)
{
    dagent *g = &d->agents[a];
    if (g->gone || !g->c)
        return;
    gl_conn *c = g->c;
    g->c = NULL;
    g->evicted = true;
    gl_conn_close(c, "it could not serve a shard: %s", why);
    agent_lost(d, a, why);
}

static void on_fetched(void *ud, int rc, const char *lost, const char *msg)
{
    drv *d = ud;
    d->fetch = NULL;
    if (d->finished)
        return;
    if (!rc) {
        d->result->max_width = d->ds[d->stages.n - 1].max_width;
        d->fetched = true;
        keep_cached(d);
        finish(d, 0, NULL);
        return;
    }
    /* Start again from nothing once the lost outputs have run again. */
    gl_output_free(d->result);
    d->result = NULL;
    int32_t a = agent_at(d, lost);
    if (a < 0) {
        finish(d, GL_EIO, "cluster: fetching the job's output: %s", msg);
        return;
    }
    evict(d, a, msg); /* its closed callback queues what it held */
}

/* ---- agents ---- */

static void start_job(drv *d)
{
    uint32_t workers = 0;
    for (uint32_t a = 0; a < d->nagents; a++)
        if (d->agents[a].ready)
            workers += d->agents[a].slots;
    if (!workers) {
        d->again = AGAIN_SLOTS;
        finish(d, GL_EIO, "cluster: none of the %u agents the master at %s granted could be reached",
               d->nagents, d->master_addr);
        return;
    }
    gl_err perr = {0};
    if (gl_plan_stages_ex(d->plan, d->target, workers, GL_PLAN_NO_LOCAL_CACHE, &d->stages, &perr)) {
        finish(d, perr.code, "%s", perr.msg);
        return;
    }
    /* The shard counts of wide steps follow the worker count, which is
     * the slots granted, which vary from job to job: a job that reads a
     * kept dataset is planned with the count it was made with, so that
     * its stages come out as they did then. */
    uint32_t then = kept_workers(d, workers);
    if (then != workers) {
        gl_stages_free(&d->stages);
        workers = then;
        if (gl_plan_stages_ex(d->plan, d->target, workers, GL_PLAN_NO_LOCAL_CACHE, &d->stages, &perr)) {
            finish(d, perr.code, "%s", perr.msg);
            return;
        }
    }
    d->workers = workers;
    if (!d->stages.n) {
        finish(d, GL_EINVAL, "driver: the flow has no stages");
        return;
    }
    if (gl_stage_splits_encode(&d->splits, &d->stages)) {
        finish(d, GL_ENOMEM, "driver: out of memory");
        return;
    }
    d->started = true;
    if (!(d->ds = calloc(d->stages.n, sizeof *d->ds))) {
        finish(d, GL_ENOMEM, "driver: out of memory");
        return;
    }
    for (uint32_t s = 0; s < d->stages.n; s++) {
        const gl_stage *st = &d->stages.v[s];
        size_t cells = (size_t)st->ntasks * st->nparts;
        dstage *ds = &d->ds[s];
        if (!(ds->tasks = calloc(st->ntasks ? st->ntasks : 1, sizeof *ds->tasks)) ||
            !(ds->rows = calloc(cells ? cells : 1, sizeof *ds->rows)) ||
            !(ds->bytes = calloc(cells ? cells : 1, sizeof *ds->bytes))) {
            finish(d, GL_ENOMEM, "driver: out of memory");
            return;
        }
        for (uint32_t i = 0; i < st->ntasks; i++)
            ds->tasks[i] = (dtask){T_QUEUED, 0, -1, -1};
    }
    reuse_cached(d);
    start_stage(d);
    dispatch(d);
}

static int32_t agent_of(const drv *d, const gl_conn *c)
{
    for (uint32_t a = 0; a < d->nagents; a++)
        if (d->agents[a].c == c)
            return (int32_t)a;
    return -1;
}

static void agent_ready(gl_conn *c)
{
    drv *d = c->data;
    d->agents[agent_of(d, c)].ready = true;
    d->nready++;
    if (++d->nresolved == d->nagents)
        start_job(d);
}

/* A done task of stage s: what its output holds. */
static int task_done(drv *d, uint32_t s, uint32_t i, int32_t a, const gl_msg *m, gl_err *err)
{
    dstage *ds = &d->ds[s];
    uint32_t np = d->stages.v[s].nparts;
    gl_task *first = ds->first ? &ds->first[i] : NULL;
    if (first) {
        /* a rerun before the stage's first completion: its sample again */
        gl_buf_free(&first->sample);
        free(first->sample_off);
        *first = (gl_task){0};
    }
    int rc = gl_stage_result_apply(m->payload, m->npayload, np, ds->rows + (size_t)i * np,
                                   ds->bytes + (size_t)i * np, first, err);
    if (rc)
        return rc;
    ds->tasks[i].state = T_DONE;
    ds->tasks[i].agent = a;
    ds->ndone++;
    if (ds->ndone == d->stages.v[s].ntasks && s == d->s)
        stage_complete(d);
    return 0;
}

static void agent_msg(gl_conn *c, gl_msg *m)
{
    drv *d = c->data;
    if (d->finished)
        return;
    int32_t a = agent_of(d, c);
    uint32_t s = (uint32_t)(m->task >> 32), i = (uint32_t)m->task;
    if (m->type != GL_MSG_DONE || m->job != d->job || !d->started || s >= d->stages.n ||
        i >= d->stages.v[s].ntasks || d->ds[s].tasks[i].state != T_RUNNING || d->ds[s].tasks[i].agent != a) {
        gl_conn_close(c, "unexpected %s message from agent %s", gl_msg_name(m->type), c->peer);
        return;
    }
    dtask *t = &d->ds[s].tasks[i];
    d->agents[a].busy--;
    t->agent = -1;
    if (m->ok) {
        gl_err e = {0};
        if (task_done(d, s, i, a, m, &e)) {
            finish(d, e.code, "driver: %s (task %u of stage %u, from agent %s)", e.msg, i, s, c->peer);
            return;
        }
    } else if (m->lost[0] && agent_at(d, m->lost) >= 0) {
        /* an input agent failed it: not the task's fault */
        t->state = T_QUEUED;
        t->attempts--;
        evict(d, agent_at(d, m->lost), m->text);
    } else if (t->attempts >= d->max_attempts) {
        finish(d, GL_ETASK, "%s", m->text);
        return;
    } else {
        t->state = T_QUEUED;
        t->failed_on = a;
    }
    dispatch(d);
}

/* Agent g is gone: what ran there runs again, and what it held is lost. */
static void lose_agent(drv *d, int32_t g, const char *why)
{
    for (uint32_t s = 0; s <= top_stage(d) && !d->finished; s++) {
        dstage *ds = &d->ds[s];
        /* its outputs are needed now if this stage has not completed yet,
         * or is the last one and its rows are not fetched yet */
        bool needed = s >= d->s || s == d->stages.n - 1;
        for (uint32_t i = 0; i < d->stages.v[s].ntasks; i++) {
            dtask *t = &ds->tasks[i];
            if (t->agent != g)
                continue;
            t->agent = -1;
            if (t->state == T_RUNNING) {
                if (t->attempts >= d->max_attempts && !d->agents[g].evicted) {
                    finish(d, GL_EIO, "cluster: task %u of stage %u was on agent %s, lost: %s (attempt %u of %u)",
                           i, s, d->agents[g].addr, why, t->attempts, d->max_attempts);
                    return;
                }
                if (d->agents[g].evicted)
                    t->attempts--;
                t->state = T_QUEUED;
                t->failed_on = g;
            } else if (t->state == T_DONE) {
                /* kept shards come back only with a new run (run_again) */
                t->state = needed && !ds->reused ? T_QUEUED : T_LOST;
                t->attempts = 0; /* it did succeed: its attempts start again */
                ds->ndone--;
            }
        }
    }
}

/* Agent a is gone (its connection closed, or the driver gave up on it). */
static void agent_lost(drv *d, int32_t a, const char *why)
{
    dagent *g = &d->agents[a];
    g->gone = true;
    if (d->finished)
        return;
    bool left = false;
    for (uint32_t k = 0; k < d->nagents; k++)
        left |= d->agents[k].ready && !d->agents[k].gone && d->agents[k].slots; /* that can run tasks */
    if (!left) {
        finish(d, GL_EIO, "cluster: lost agent %s mid-job, the last one: %s", g->addr, why);
        return;
    }
    if (!d->started)
        return;
    if (d->fetch) {
        /* the last stage's rows are fetched again once what it held has run again */
        gl_fetch_cancel(d->fetch);
        d->fetch = NULL;
        gl_output_free(d->result);
        d->result = NULL;
    }
    lose_agent(d, a, why);
    dispatch(d);
}

static void agent_closed(gl_conn *c, const char *why, bool was_ready)
{
    drv *d = c->data;
    int32_t a = agent_of(d, c);
    if (a < 0)
        return; /* evicted: handled then */
    d->agents[a].c = NULL;
    if (was_ready) {
        agent_lost(d, a, why);
        return;
    }
    d->agents[a].gone = true;
    if (!d->finished && ++d->nresolved == d->nagents)
        start_job(d);
}

static const gl_conn_cb agent_cb = {agent_ready, agent_msg, agent_closed, NULL};

/* ---- the master ---- */

static void master_ready(gl_conn *c)
{
    gl_msg m;
    memset(&m, 0, sizeof m);
    m.type = GL_MSG_SLOTS;
    m.want = 4096; /* all there are */
    gl_conn_send(c, &m);
}

static void on_ask(uv_timer_t *h);

static void master_msg(gl_conn *c, gl_msg *m)
{
    drv *d = c->data;
    if (m->type != GL_MSG_AGENTS || d->agents) {
        finish(d, GL_EIO, "cluster: unexpected %s message from the master at %s", gl_msg_name(m->type),
               d->master_addr);
        return;
    }
    if (!m->nagents) {
        /* Slots come back with the agents' next heartbeats: ask again. */
        if (++d->asks * SLOT_WAIT_MS >= SLOT_WAIT_MAX_MS) {
            finish(d, GL_EIO, "cluster: the master at %s has had no free executor slots for %d s (no agents, or all busy)",
                   d->master_addr, SLOT_WAIT_MAX_MS / 1000);
            return;
        }
        uv_timer_start(&d->ask, on_ask, SLOT_WAIT_MS, 0);
        return;
    }
    /* and the agents holding kept datasets' shards, with or without free
     * slots: the job may read them */
    uint32_t cap = m->nagents;
    for (int id = 0; id < gl_plan_nsteps(d->plan); id++) {
        const kept *k = (const kept *)gl_plan_get(d->plan, id)->remote;
        cap += k ? k->ntasks : 0;
    }
    if (!(d->agents = calloc(cap, sizeof *d->agents)) || !(d->addrs = calloc(cap, sizeof *d->addrs)) ||
        !(d->local = calloc(cap, sizeof *d->local))) {
        finish(d, GL_ENOMEM, "driver: out of memory");
        return;
    }
    for (uint32_t a = 0; a < m->nagents; a++) {
        snprintf(d->agents[a].addr, sizeof d->agents[a].addr, "%s", m->agents[a].addr);
        d->agents[a].slots = m->agents[a].free_slots;
    }
    d->nagents = m->nagents;
    for (int id = 0; id < gl_plan_nsteps(d->plan); id++) {
        const kept *k = (const kept *)gl_plan_get(d->plan, id)->remote;
        for (uint32_t t = 0; k && t < k->ntasks; t++)
            if (agent_at(d, k->holder[t]) < 0 && gl_session_alive(k->holder[t]))
                snprintf(d->agents[d->nagents++].addr, GL_ADDR_MAX, "%s", k->holder[t]);
    }
    for (uint32_t a = 0; a < d->nagents; a++)
        d->addrs[a] = d->agents[a].addr;
    for (uint32_t a = 0; a < d->nagents; a++) {
        dagent *g = &d->agents[a];
        char host[GL_ADDR_MAX];
        int port;
        gl_err e = {0};
        if (gl_opt_hostport(g->addr, host, sizeof host, &port, &e) ||
            !(g->c = gl_conn_connect(&d->loop, host, port, &d->secret, "driver", &agent_cb, d))) {
            g->gone = true;
            d->nresolved++;
        }
    }
    /* The slots are ours; the master is not needed for the rest of the job. */
    d->master = NULL;
    gl_conn_close(c, "slots granted");
    if (d->nresolved == d->nagents && !d->finished)
        start_job(d);
}

static void master_closed(gl_conn *c, const char *why, bool was_ready)
{
    drv *d = c->data;
    if (d->master == c)
        d->master = NULL;
    if (!d->agents)
        finish(d, GL_EIO, "cluster: cannot get executor slots from the master at %s: %s", d->master_addr, why);
}

static const gl_conn_cb master_cb = {master_ready, master_msg, master_closed, NULL};

static void on_ask(uv_timer_t *h)
{
    drv *d = h->data;
    if (d->master && !d->finished)
        master_ready(d->master);
}

static void on_tick(uv_timer_t *h)
{
    drv *d = h->data;
    if (d->cancel && atomic_load(d->cancel))
        finish(d, GL_ECANCEL, "cancelled");
}

/* One run of the job; *again (AGAIN_*) says whether it ended to run again.
 * With count, the last stage's rows are counted into *count, not fetched
 * (*out stays NULL). */
static int run_once(const char *master, uint32_t max_attempts, gl_plan *p, int target, atomic_int *cancel,
                    gl_output **out, uint64_t *count, gl_stats *stats, gl_err *err, int *again)
{
    *out = NULL;
    *again = AGAIN_NO;
    drv *d = calloc(1, sizeof *d);
    if (!d)
        return gl_err_set(err, GL_ENOMEM, "driver: out of memory");
    d->count_only = count != NULL;
    d->plan = p;
    d->target = target;
    d->cancel = cancel;
    d->max_attempts = max_attempts ? max_attempts : GL_MAX_ATTEMPTS;
    d->err = err;
    snprintf(d->master_addr, sizeof d->master_addr, "%s", master);
    char host[GL_ADDR_MAX];
    int port, rc;
    if ((rc = gl_opt_hostport(master, host, sizeof host, &port, err)) || (rc = gl_secret_load(&d->secret, NULL, err)) ||
        (rc = gl_plan_encode(p, &d->plan_bytes, err)) ||
        (rc = gl_auth_random((uint8_t *)&d->job, sizeof d->job, err))) {
        gl_buf_free(&d->plan_bytes);
        free(d);
        return rc;
    }
    if (!getcwd(d->cwd, sizeof d->cwd)) {
        gl_buf_free(&d->plan_bytes);
        free(d);
        return gl_err_set(err, GL_EIO, "driver: cannot read the working directory");
    }
    if (!(d->store = gl_store_new(0, NULL, 1, err))) {
        gl_buf_free(&d->plan_bytes);
        free(d);
        return err->code ? err->code : GL_ENOMEM;
    }
    /* A write to an agent that has just gone is an error on that
     * connection, not the end of the process. */
    struct sigaction ign = {.sa_handler = SIG_IGN}, old_pipe;
    sigaction(SIGPIPE, &ign, &old_pipe);
    uv_loop_init(&d->loop);
    uv_timer_init(&d->loop, &d->tick);
    d->tick.data = d;
    uv_timer_start(&d->tick, on_tick, 100, 100);
    uv_timer_init(&d->loop, &d->ask);
    d->ask.data = d;
    if (!(d->master = gl_conn_connect(&d->loop, host, port, &d->secret, "driver", &master_cb, d)))
        finish(d, GL_ENOMEM, "driver: out of memory");
    uv_run(&d->loop, UV_RUN_DEFAULT);
    gl_loop_drain(&d->loop);
    sigaction(SIGPIPE, &old_pipe, NULL);

    rc = d->rc;
    *again = d->again;
    if (!rc) {
        *out = d->result;
        d->result = NULL;
        if (count)
            *count = d->count;
    }
    if (stats)
        *stats = d->stats;
    gl_output_free(d->result);
    for (uint32_t s = 0; d->ds && s < d->stages.n; s++) {
        dstage *ds = &d->ds[s];
        free_first(ds, d->stages.v[s].ntasks);
        free(ds->tasks);
        free(ds->rows);
        free(ds->bytes);
    }
    free(d->ds);
    free(d->freqs);
    free(d->ftasks);
    free(d->agents);
    free(d->addrs);
    free(d->local);
    gl_stages_free(&d->stages);
    gl_store_release(d->store);
    gl_buf_free(&d->plan_bytes);
    gl_buf_free(&d->splits);
    free(d);
    return rc;
}

/* Each run again for kept shards drops a record of them: at most one
 * per cached dataset; a few are plenty. */
#define MAX_AGAIN 4

static int run(const char *master, uint32_t max_attempts, gl_plan *p, int target, atomic_int *cancel,
               gl_output **out, uint64_t *count, gl_stats *stats, gl_err *err)
{
    int again = AGAIN_NO, rc, runs = 0;
    uint32_t waited = 0;
    while ((rc = run_once(master, max_attempts, p, target, cancel, out, count, stats, err, &again)) && again) {
        if (again == AGAIN_CACHE && ++runs > MAX_AGAIN)
            break;
        if (again == AGAIN_SLOTS) {
            /* as when the master has no free slot: ask again a while */
            if ((waited += SLOT_WAIT_MS) >= SLOT_WAIT_MAX_MS)
                break;
            uv_sleep(SLOT_WAIT_MS);
        }
        if (cancel && atomic_load(cancel))
            return gl_err_set(err, GL_ECANCEL, "cancelled");
    }
    return rc;
}

int gl_cluster_run(const char *master, uint32_t max_attempts, gl_plan *p, int target, atomic_int *cancel,
                   gl_output **out, gl_stats *stats, gl_err *err)
{
    return run(master, max_attempts, p, target, cancel, out, NULL, stats, err);
}

int gl_cluster_count(const char *master, uint32_t max_attempts, gl_plan *p, int target, atomic_int *cancel,
                     uint64_t *rows, gl_stats *stats, gl_err *err)
{
    gl_output *none;
    *rows = 0;
    return run(master, max_attempts, p, target, cancel, &none, rows, stats, err);
}
