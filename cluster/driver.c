/* driver.c: gl_cluster_run, a flow's stages on a cluster (driver.h).
 *
 * The driver cuts the plan into stages exactly as local mode does, with
 * the worker count set to the executor slots the master granted, and runs
 * them in order. Each task of a stage goes to an agent with a free slot as
 * one task message (stage.h): the plan's bytes, which task, and its input
 * rows; the agent runs it in a `gleam executor` and passes its done message
 * back with the task's output partitions, which the driver keeps in its own
 * store (budgeted, spilling to LMDB like local mode's) as that stage's
 * output. After a stage that samples keys for a range sink, the driver
 * cuts the bounds with the engine's own gl_stage_bounds, so partitions and
 * therefore sorted output come out as in local mode.
 *
 * A task that fails (an executor that crashed or was killed, or a Lua
 * error) runs again, on another agent when there is one, up to
 * max_attempts; then its last message is the job's error. A Lua error
 * thus fails the job with the same message as local mode.
 *
 * One libuv loop per call, run on the calling thread until the job ends;
 * every connection is closed before returning, which also tells the agents
 * to kill the job's executors. An agent that goes away mid-job costs only
 * its running tasks, which run again on the others (each loss counts as an
 * attempt), since stage outputs are on the driver. Not yet here (issue 7):
 * rows move through the driver rather than between agents, so a task's
 * input and output are bounded by the frame size. */
#define _GNU_SOURCE
#include "driver.h"

#include "cluster.h"
#include "conn.h"
#include "opt.h"
#include "plan_wire.h"
#include "stage.h"
#include "task.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { T_QUEUED, T_RUNNING, T_DONE };

/* No slot free: the driver asks the master again this often, this long. */
#define SLOT_WAIT_MS 100
#define SLOT_WAIT_MAX_MS 30000

typedef struct dagent {
    gl_conn *c;
    char addr[GL_ADDR_MAX];
    uint32_t slots, busy;
    bool ready, gone;
} dagent;

typedef struct dtask {
    int state;
    uint32_t attempts;
    int32_t agent; /* where it runs or last ran; -1 never */
} dtask;

typedef struct drv {
    uv_loop_t loop;
    uv_timer_t tick, ask;  /* the cancel check; asking the master again */
    uint32_t asks;
    gl_secret secret;
    gl_conn *master;
    char master_addr[GL_ADDR_MAX];
    dagent *agents;
    uint32_t nagents, nresolved, nready;
    const gl_plan *plan;
    int target;
    atomic_int *cancel;
    uint32_t max_attempts;
    gl_buf plan_bytes;
    char cwd[4096];
    gl_stages stages;
    bool started;
    uint32_t workers;    /* the slots granted: the stages' default shard count */
    gl_output **outs;
    uint32_t *left;      /* stages still to read each output */
    gl_store *store;
    uint32_t s;          /* the stage running */
    dtask *tasks;
    gl_task *results;    /* the running stage's samples, widths, skipped lines */
    uint32_t ndone;
    uint64_t job;
    gl_stats stats;
    int rc;
    gl_err *err;
    bool finished;
} drv;

static void close_all(drv *d)
{
    if (d->master)
        gl_conn_close(d->master, "the job ended");
    for (uint32_t i = 0; i < d->nagents; i++)
        if (d->agents[i].c)
            gl_conn_close(d->agents[i].c, "the job ended");
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

/* Appends partition part of output o (every task's column, in order) to
 * the inputs as one entry; rows are copied into *keep. */
static int add_input(gl_stage_input *in, uint32_t *n, uint32_t stage, const gl_output *o, uint32_t part,
                     gl_buf *keep)
{
    gl_reader *r = gl_reader_new(o, part);
    if (!r)
        return GL_ENOMEM;
    gl_buf b = {0};
    uint64_t nrows = 0;
    const gl_chunk *c;
    int rc = 0;
    while (!rc && (c = gl_reader_next(r))) {
        rc = gl_buf_append(&b, c->data, c->len) ? GL_ENOMEM : 0;
        nrows += c->nrows;
    }
    if (!rc && gl_reader_error(r))
        rc = GL_EIO;
    gl_reader_free(r);
    if (rc) {
        gl_buf_free(&b);
        return rc;
    }
    *keep = b;
    in[*n] = (gl_stage_input){stage, part, nrows, b.data, b.len};
    (*n)++;
    return 0;
}

#define MAX_INPUTS (GL_INPUTS_MAX + 64)

/* The task message for task i of the running stage; caller frees *payload. */
static int task_payload(drv *d, uint32_t i, gl_buf *payload)
{
    const gl_stage *st = &d->stages.v[d->s];
    gl_stage_input in[MAX_INPUTS];
    gl_buf keep[MAX_INPUTS];
    uint32_t n = 0;
    int rc = 0;
    if (st->src == GL_SRC_STAGE)
        rc = add_input(in, &n, st->src_stage, d->outs[st->src_stage], i, &keep[n]);
    if (st->src == GL_SRC_PAIR)
        for (uint32_t k = 0; k < 2 && !rc; k++)
            rc = add_input(in, &n, st->src_stages[k], d->outs[st->src_stages[k]], i, &keep[n]);
    if (st->src == GL_SRC_UNION) {
        /* task i is partition j of input k, counting the inputs' partitions in order (task.c) */
        uint32_t j = i;
        for (uint32_t k = 0; k < st->nsrc; k++) {
            const gl_output *o = d->outs[st->src_stages[k]];
            if (j < o->nparts) {
                rc = add_input(in, &n, st->src_stages[k], o, j, &keep[n]);
                break;
            }
            j -= o->nparts;
        }
    }
    for (uint32_t k = 0; k < st->nops && !rc; k++)
        if (st->ops[k].kind == GL_OP_BCAST_JOIN) {
            const gl_output *o = d->outs[st->ops[k].side_stage];
            for (uint32_t p = 0; p < o->nparts && !rc && n < MAX_INPUTS; p++)
                rc = add_input(in, &n, st->ops[k].side_stage, o, p, &keep[n]);
        }
    if (!rc) {
        gl_stage_task t = {
            .plan = d->plan_bytes.data, .nplan = d->plan_bytes.len, .target = d->target,
            .workers = d->workers, .stage = d->s, .task = i, .dir = d->cwd, .ndir = strlen(d->cwd),
            .bounds = st->bounds.data, .nbounds = st->bounds.len,
            .bound_off = st->bound_off, .nbound_off = st->bound_off ? st->nparts + 1 : 0,
            .width = {st->width[0], st->width[1]}, .inputs = in, .ninputs = n};
        rc = gl_stage_task_encode(payload, &t) ? GL_ENOMEM : 0;
    }
    for (uint32_t k = 0; k < n; k++)
        gl_buf_free(&keep[k]);
    return rc;
}

/* The agent for a task: one with a free slot, not the one it failed on
 * when another will do. -1: none free. */
static int32_t pick_agent(drv *d, const dtask *t)
{
    int32_t best = -1;
    for (uint32_t a = 0; a < d->nagents; a++) {
        dagent *g = &d->agents[a];
        if (!g->ready || g->gone || g->busy >= g->slots)
            continue;
        if (best < 0 || (best == t->agent && (int32_t)a != t->agent) ||
            (((int32_t)a != t->agent) == (best != t->agent) && g->busy < d->agents[best].busy))
            best = (int32_t)a;
    }
    return best;
}

static void dispatch(drv *d)
{
    const gl_stage *st = &d->stages.v[d->s];
    for (uint32_t i = 0; i < st->ntasks && !d->finished; i++) {
        dtask *t = &d->tasks[i];
        if (t->state != T_QUEUED)
            continue;
        int32_t a = pick_agent(d, t);
        if (a < 0)
            return;
        gl_buf payload = {0};
        int rc = task_payload(d, i, &payload);
        if (rc) {
            gl_buf_free(&payload);
            finish(d, rc, "driver: out of memory making task %u of stage %u", i, d->s);
            return;
        }
        if (payload.len > GL_WIRE_MAX - 4096) {
            char sz[32];
            finish(d, GL_EINVAL,
                   "driver: task %u of stage %u has %s of input, more than a cluster frame holds "
                   "(rows pass through the driver in this version)",
                   i, d->s, gl_fmt_bytes(payload.len, sz, sizeof sz));
            gl_buf_free(&payload);
            return;
        }
        gl_msg m;
        memset(&m, 0, sizeof m);
        m.type = GL_MSG_TASK;
        m.job = d->job;
        m.task = ((uint64_t)d->s << 32) | i;
        m.payload = payload.data;
        m.npayload = payload.len;
        t->state = T_RUNNING;
        t->agent = a;
        t->attempts++;
        d->agents[a].busy++;
        gl_conn_send(d->agents[a].c, &m);
        gl_buf_free(&payload);
    }
}

static void start_stage(drv *d);

/* The stages whose output st reads, into v (at most MAX_INPUTS); returns how many. */
static uint32_t reads(const gl_stage *st, uint32_t *v)
{
    uint32_t n = 0;
    if (st->src == GL_SRC_STAGE)
        v[n++] = st->src_stage;
    for (uint32_t i = 0; (st->src == GL_SRC_UNION || st->src == GL_SRC_PAIR) && i < st->nsrc; i++)
        v[n++] = st->src_stages[i];
    for (uint32_t i = 0; i < st->nops && n < MAX_INPUTS; i++)
        if (st->ops[i].kind == GL_OP_BCAST_JOIN)
            v[n++] = st->ops[i].side_stage;
    return n;
}

static void stage_done(drv *d)
{
    gl_stage *st = &d->stages.v[d->s];
    gl_output *o = d->outs[d->s];
    for (uint32_t i = 0; i < st->ntasks; i++) {
        d->stats.skipped += d->results[i].skipped;
        if (d->results[i].width > o->max_width)
            o->max_width = d->results[i].width;
    }
    d->stats.stages++;
    d->stats.tasks += st->ntasks;
    int rc = 0;
    if (st->sample && d->s + 1 < d->stages.n)
        rc = gl_stage_bounds(&d->stages.v[d->s + 1], d->results, st->ntasks);
    for (uint32_t i = 0; i < st->ntasks; i++) {
        gl_buf_free(&d->results[i].sample);
        free(d->results[i].sample_off);
    }
    free(d->results);
    free(d->tasks);
    d->results = NULL;
    d->tasks = NULL;
    /* An output is freed once the last stage reading it is done. */
    uint32_t in[MAX_INPUTS], nin = reads(st, in);
    for (uint32_t k = 0; k < nin; k++)
        if (d->left[in[k]] && --d->left[in[k]] == 0) {
            gl_output_free(d->outs[in[k]]);
            d->outs[in[k]] = NULL;
        }
    if (rc) {
        finish(d, GL_ENOMEM, "sort: out of memory");
        return;
    }
    d->s++;
    if (d->s == d->stages.n)
        finish(d, 0, NULL);
    else
        start_stage(d);
}

static void start_stage(drv *d)
{
    gl_stage *st = &d->stages.v[d->s];
    if (st->cache_in) {
        finish(d, GL_EINVAL, "driver: a dataset cached by a local run can't be read on a cluster");
        return;
    }
    if (st->src == GL_SRC_PAIR)
        for (uint32_t i = 0; i < 2; i++)
            st->width[i] = d->outs[st->src_stages[i]]->max_width;
    d->outs[d->s] = gl_output_new(st->nparts, st->ntasks, d->store, st->on_disk);
    d->tasks = calloc(st->ntasks ? st->ntasks : 1, sizeof *d->tasks);
    d->results = calloc(st->ntasks ? st->ntasks : 1, sizeof *d->results);
    if (!d->outs[d->s] || !d->tasks || !d->results) {
        finish(d, GL_ENOMEM, "driver: out of memory");
        return;
    }
    for (uint32_t i = 0; i < st->ntasks; i++)
        d->tasks[i].agent = -1;
    d->ndone = 0;
    if (!st->ntasks)
        stage_done(d);
    else
        dispatch(d);
}

static void start_job(drv *d)
{
    uint32_t workers = 0;
    for (uint32_t a = 0; a < d->nagents; a++)
        if (d->agents[a].ready)
            workers += d->agents[a].slots;
    if (!workers) {
        finish(d, GL_EIO, "cluster: none of the %u agents the master at %s granted could be reached",
               d->nagents, d->master_addr);
        return;
    }
    d->workers = workers;
    gl_err perr = {0};
    if (gl_plan_stages(d->plan, d->target, workers, &d->stages, &perr)) {
        finish(d, perr.code, "%s", perr.msg);
        return;
    }
    d->started = true;
    if (!(d->outs = calloc(d->stages.n ? d->stages.n : 1, sizeof *d->outs)) ||
        !(d->left = calloc(d->stages.n ? d->stages.n : 1, sizeof *d->left))) {
        finish(d, GL_ENOMEM, "driver: out of memory");
        return;
    }
    for (uint32_t s = 0; s < d->stages.n; s++) {
        uint32_t in[MAX_INPUTS], nin = reads(&d->stages.v[s], in);
        for (uint32_t k = 0; k < nin; k++)
            d->left[in[k]]++;
    }
    if (!d->stages.n)
        finish(d, 0, NULL);
    else
        start_stage(d);
}

/* ---- agents ---- */

static void agent_ready(gl_conn *c)
{
    drv *d = c->data;
    for (uint32_t a = 0; a < d->nagents; a++)
        if (d->agents[a].c == c)
            d->agents[a].ready = true;
    d->nready++;
    if (++d->nresolved == d->nagents)
        start_job(d);
}

static void agent_msg(gl_conn *c, gl_msg *m)
{
    drv *d = c->data;
    if (d->finished)
        return;
    uint32_t s = (uint32_t)(m->task >> 32), i = (uint32_t)m->task;
    if (m->type != GL_MSG_DONE || m->job != d->job || s != d->s || !d->started || i >= d->stages.v[s].ntasks ||
        d->tasks[i].state != T_RUNNING) {
        gl_conn_close(c, "unexpected %s message from agent %s", gl_msg_name(m->type), c->peer);
        return;
    }
    dtask *t = &d->tasks[i];
    d->agents[t->agent].busy--;
    if (m->ok) {
        gl_err e = {0};
        int rc = gl_stage_result_apply(m->payload, m->npayload, d->outs[s], i, &d->results[i], &e);
        if (rc) {
            finish(d, rc, "%s (task %u of stage %u, from agent %s)", e.msg, i, s, c->peer);
            return;
        }
        t->state = T_DONE;
        if (++d->ndone == d->stages.v[s].ntasks) {
            stage_done(d);
            return;
        }
    } else if (t->attempts >= d->max_attempts) {
        finish(d, GL_ETASK, "%s", m->text);
        return;
    } else {
        t->state = T_QUEUED;
    }
    dispatch(d);
}

static void agent_closed(gl_conn *c, const char *why, bool was_ready)
{
    drv *d = c->data;
    dagent *g = NULL;
    for (uint32_t a = 0; a < d->nagents; a++)
        if (d->agents[a].c == c)
            g = &d->agents[a];
    if (!g)
        return;
    g->c = NULL;
    g->gone = true;
    if (d->finished)
        return;
    if (!was_ready) {
        if (++d->nresolved == d->nagents)
            start_job(d);
        return;
    }
    /* Its running tasks go back to the queue for the other agents: every
     * stage's output is on the driver, so nothing else was lost. */
    bool left = false;
    for (uint32_t a = 0; a < d->nagents; a++)
        left |= d->agents[a].ready && !d->agents[a].gone;
    if (!left) {
        finish(d, GL_EIO, "cluster: lost agent %s mid-job, the last one: %s", g->addr, why);
        return;
    }
    if (!d->started || !d->tasks)
        return;
    for (uint32_t i = 0; i < d->stages.v[d->s].ntasks; i++)
        if (d->tasks[i].state == T_RUNNING && &d->agents[d->tasks[i].agent] == g) {
            if (d->tasks[i].attempts >= d->max_attempts) {
                finish(d, GL_EIO, "cluster: task %u of stage %u was on agent %s, lost: %s (attempt %u of %u)", i,
                       d->s, g->addr, why, d->tasks[i].attempts, d->max_attempts);
                return;
            }
            d->tasks[i].state = T_QUEUED;
        }
    dispatch(d);
}

static const gl_conn_cb agent_cb = {agent_ready, agent_msg, agent_closed};

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
    if (!(d->agents = calloc(m->nagents, sizeof *d->agents))) {
        finish(d, GL_ENOMEM, "driver: out of memory");
        return;
    }
    d->nagents = m->nagents;
    for (uint32_t a = 0; a < m->nagents; a++) {
        dagent *g = &d->agents[a];
        snprintf(g->addr, sizeof g->addr, "%s", m->agents[a].addr);
        g->slots = m->agents[a].free_slots;
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
    if (d->nresolved == d->nagents)
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

static const gl_conn_cb master_cb = {master_ready, master_msg, master_closed};

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

int gl_cluster_run(const char *master, uint32_t max_attempts, gl_plan *p, int target, atomic_int *cancel,
                   gl_output **out, gl_stats *stats, gl_err *err)
{
    *out = NULL;
    drv *d = calloc(1, sizeof *d);
    if (!d)
        return gl_err_set(err, GL_ENOMEM, "driver: out of memory");
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

    rc = d->rc;
    if (!rc && d->stages.n) {
        *out = d->outs[d->stages.n - 1];
        d->outs[d->stages.n - 1] = NULL;
    } else if (!rc) {
        rc = gl_err_set(err, GL_EINVAL, "driver: the flow has no stages");
    }
    if (stats)
        *stats = d->stats;
    for (uint32_t s = 0; d->outs && s < d->stages.n; s++)
        gl_output_free(d->outs[s]);
    if (d->results)
        for (uint32_t i = 0; d->s < d->stages.n && i < d->stages.v[d->s].ntasks; i++) {
            gl_buf_free(&d->results[i].sample);
            free(d->results[i].sample_off);
        }
    free(d->results);
    free(d->tasks);
    free(d->outs);
    free(d->left);
    free(d->agents);
    gl_stages_free(&d->stages);
    gl_store_release(d->store);
    gl_buf_free(&d->plan_bytes);
    free(d);
    return rc;
}
