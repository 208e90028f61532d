/* shard.c: an agent's shards and the streams that serve them (shard.h).
 *
 * Committed shards are a flat list searched by (job, stage, task): a job
 * has a few shards per task and an agent a few jobs at once, and a search
 * happens once per fetched shard, not per chunk. A shard is freed when its
 * last holder lets go: the list (until dropped or replaced) and each
 * stream reading it. The state of a peer that fetched or sent tasks is its
 * connection's data. */
#include "shard.h"

#include "stage.h"
#include "stream.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct shard {
    uint64_t job;
    uint32_t stage, task;
    gl_output *o;  /* nparts x 1 */
    uint64_t bytes;
    uint32_t refs; /* the list's, while listed, and one per stream reading it */
    const void *keeper; /* the peer that said keep for it, or NULL: its job's */
} shard;

struct gl_shards {
    gl_store *store;
    shard **v;
    size_t n, cap;
    uint64_t stored;
};

struct gl_shard_put {
    gl_shards *s;
    uint64_t job;
    uint32_t stage, task;
    bool disk;
    gl_output *o;
    gl_stream_in in;
};

/* One fetch waiting or being served. */
typedef struct req {
    struct req *next;
    uint64_t job;
    uint32_t stage, part, ntasks;
    uint32_t tasks[];
} req;

typedef struct peer {
    req *head, *tail;
    uint32_t at;        /* head->tasks[at] is being streamed */
    shard *cur;         /* its shard, held; NULL between shards */
    gl_stream_out out;
    uint64_t *jobs;     /* the jobs this driver owns */
    uint32_t njobs, capjobs;
} peer;

gl_shards *gl_shards_new(uint64_t memory, const char *dir, gl_err *err)
{
    gl_shards *s = calloc(1, sizeof *s);
    if (!s) {
        gl_err_set(err, GL_ENOMEM, "out of memory");
        return NULL;
    }
    if (!(s->store = gl_store_new(memory, dir, 1, err))) {
        free(s);
        return NULL;
    }
    return s;
}

static void unref(gl_shards *s, shard *sh)
{
    if (--sh->refs)
        return;
    s->stored -= sh->bytes;
    gl_output_free(sh->o);
    free(sh);
}

/* Takes v[i] off the list. */
static void unlist(gl_shards *s, size_t i)
{
    shard *sh = s->v[i];
    s->v[i] = s->v[--s->n];
    unref(s, sh);
}

void gl_shards_free(gl_shards *s)
{
    if (!s)
        return;
    while (s->n)
        unlist(s, s->n - 1);
    free(s->v);
    gl_store_release(s->store);
    free(s);
}

uint64_t gl_shards_stored(const gl_shards *s) { return s->stored; }

static shard *find(gl_shards *s, uint64_t job, uint32_t stage, uint32_t task, size_t *at)
{
    for (size_t i = 0; i < s->n; i++)
        if (s->v[i]->job == job && s->v[i]->stage == stage && s->v[i]->task == task) {
            if (at)
                *at = i;
            return s->v[i];
        }
    return NULL;
}

void gl_shards_drop(gl_shards *s, uint64_t job)
{
    for (size_t i = s->n; i-- > 0;)
        if (s->v[i]->job == job && !s->v[i]->keeper)
            unlist(s, i);
}

/* Deletes the shards keeper kept: those of (job, stage), or all with all. */
static void drop_kept(gl_shards *s, const void *keeper, bool all, uint64_t job, uint32_t stage)
{
    for (size_t i = s->n; i-- > 0;)
        if (s->v[i]->keeper == keeper && (all || (s->v[i]->job == job && s->v[i]->stage == stage)))
            unlist(s, i);
}

/* ---- puts ---- */

/* Room for one more shard in the list. 0 or -1. */
static int grow(gl_shards *s)
{
    if (s->n < s->cap)
        return 0;
    size_t cap = s->cap ? 2 * s->cap : 64;
    shard **v = realloc(s->v, cap * sizeof *v);
    if (!v)
        return -1;
    s->v = v;
    s->cap = cap;
    return 0;
}

gl_shard_put *gl_shard_put_new(gl_shards *s, uint64_t job, uint32_t stage, uint32_t task, uint32_t nparts,
                               bool disk, gl_err *err)
{
    gl_shard_put *p = calloc(1, sizeof *p);
    if (!p || !(p->o = gl_output_new(nparts, 1, s->store, disk))) {
        free(p);
        gl_err_set(err, GL_ENOMEM, "out of memory");
        return NULL;
    }
    p->s = s;
    p->job = job;
    p->stage = stage;
    p->task = task;
    p->disk = disk;
    return p;
}

int gl_shard_put_rows(gl_shard_put *p, uint32_t part, const uint8_t *rows, size_t n, uint64_t nrows, gl_err *err)
{
    return gl_stream_in_put(&p->in, p->o, part, 0, rows, n, nrows, err);
}

void gl_shard_put_abort(gl_shard_put *p)
{
    if (!p)
        return;
    gl_output_free(p->o);
    gl_stream_in_free(&p->in);
    free(p);
}

int gl_shard_put_commit(gl_shard_put *p, const uint8_t *result, size_t n, gl_err *err)
{
    gl_shards *s = p->s;
    uint32_t nparts = p->o->nparts;
    uint64_t *counts = calloc(2 * (size_t)(nparts ? nparts : 1), sizeof *counts);
    int rc = counts ? 0 : gl_err_set(err, GL_ENOMEM, "out of memory");
    if (!rc)
        rc = gl_stage_result_apply(result, n, nparts, counts, counts + nparts, NULL, err);
    uint64_t bytes = 0;
    for (uint32_t i = 0; !rc && i < nparts; i++) {
        if (counts[i] != gl_output_part_rows(p->o, i) || counts[nparts + i] != gl_output_part_bytes(p->o, i))
            rc = gl_err_set(err, GL_EINVAL,
                            "the executor's output was cut short: partition %u has %llu rows of the %llu it says",
                            i, (unsigned long long)gl_output_part_rows(p->o, i), (unsigned long long)counts[i]);
        bytes += counts[nparts + i];
    }
    if (!rc && gl_stream_in_partial(&p->in))
        rc = gl_err_set(err, GL_EINVAL, "the executor's output ends inside a row");
    free(counts);
    shard *sh = NULL;
    if (!rc && (!(sh = calloc(1, sizeof *sh)) || grow(s)))
        rc = gl_err_set(err, GL_ENOMEM, "out of memory");
    if (!rc)
        rc = gl_output_seal(p->o, 0, err);
    if (!rc && p->disk)
        rc = gl_store_sync(s->store, err);
    if (rc) {
        free(sh);
        gl_shard_put_abort(p);
        return rc;
    }
    size_t at;
    if (find(s, p->job, p->stage, p->task, &at))
        unlist(s, at); /* a rerun's shard replaces the earlier one */
    *sh = (shard){p->job, p->stage, p->task, p->o, bytes, 1, NULL};
    s->v[s->n++] = sh;
    s->stored += bytes;
    p->o = NULL;
    gl_shard_put_abort(p);
    return 0;
}

/* ---- serving ---- */

static peer *peer_of(gl_conn *c)
{
    if (!c->data)
        c->data = calloc(1, sizeof(peer));
    return c->data;
}

int gl_shards_owner(gl_shards *s, gl_conn *c, uint64_t job, gl_err *err)
{
    peer *pe = peer_of(c);
    if (!pe)
        return gl_err_set(err, GL_ENOMEM, "out of memory");
    for (uint32_t i = 0; i < pe->njobs; i++)
        if (pe->jobs[i] == job)
            return 0;
    if (pe->njobs == pe->capjobs) {
        uint32_t cap = pe->capjobs ? 2 * pe->capjobs : 4;
        uint64_t *v = realloc(pe->jobs, cap * sizeof *v);
        if (!v)
            return gl_err_set(err, GL_ENOMEM, "out of memory");
        pe->jobs = v;
        pe->capjobs = cap;
    }
    pe->jobs[pe->njobs++] = job;
    return 0;
}

int gl_shards_keep(gl_shards *s, gl_conn *c, uint64_t job, uint32_t stage, bool keep, gl_err *err)
{
    peer *pe = peer_of(c);
    if (!pe)
        return gl_err_set(err, GL_ENOMEM, "the agent is out of memory");
    if (!keep) {
        drop_kept(s, pe, false, job, stage);
        return 0;
    }
    for (size_t i = 0; i < s->n; i++)
        if (s->v[i]->job == job && s->v[i]->stage == stage)
            s->v[i]->keeper = pe;
    return 0;
}

/* The shard being streamed is done with. */
static void stream_close(gl_shards *s, peer *pe)
{
    if (!pe->cur)
        return;
    gl_stream_out_close(&pe->out);
    unref(s, pe->cur);
    pe->cur = NULL;
}

/* Ends the fetch at the head: its end message, and the next one's turn. */
static void end(gl_shards *s, gl_conn *c, peer *pe, const char *text)
{
    req *q = pe->head;
    stream_close(s, pe);
    gl_msg m;
    memset(&m, 0, sizeof m);
    m.type = GL_MSG_END;
    m.job = q->job;
    m.stage = q->stage;
    m.part = q->part;
    m.ok = text == NULL;
    snprintf(m.text, sizeof m.text, "%s", text ? text : "");
    gl_conn_send(c, &m);
    pe->head = q->next;
    if (!pe->head)
        pe->tail = NULL;
    pe->at = 0;
    free(q);
}

/* Sends what c's queue has room for. */
static void pump(gl_shards *s, gl_conn *c)
{
    peer *pe = c->data;
    while (pe && pe->head && !c->closing && gl_conn_queued(c) < GL_SHARD_QUEUE) {
        req *q = pe->head;
        gl_err err = {0};
        if (!pe->cur) {
            if (pe->at == q->ntasks) {
                end(s, c, pe, NULL);
                continue;
            }
            shard *sh = find(s, q->job, q->stage, q->tasks[pe->at], NULL);
            if (!sh || q->part >= sh->o->nparts) {
                char why[160];
                snprintf(why, sizeof why, "shard not here: task %u of stage %u of job %llu%s", q->tasks[pe->at],
                         q->stage, (unsigned long long)q->job, sh ? " has no such partition" : "");
                end(s, c, pe, why);
                continue;
            }
            if (gl_stream_out_open(&pe->out, sh->o, q->part, &err)) {
                end(s, c, pe, err.msg);
                continue;
            }
            sh->refs++;
            pe->cur = sh;
        }
        const uint8_t *p;
        size_t n;
        uint64_t nrows;
        int r = gl_stream_out_next(&pe->out, &p, &n, &nrows, &err);
        if (r < 0) {
            end(s, c, pe, err.msg);
            continue;
        }
        if (r == 0) {
            stream_close(s, pe);
            pe->at++;
            continue;
        }
        gl_msg m;
        memset(&m, 0, sizeof m);
        m.type = GL_MSG_CHUNK;
        m.job = q->job;
        m.stage = q->stage;
        m.task = q->tasks[pe->at];
        m.part = q->part;
        m.nrows = nrows;
        m.payload = (uint8_t *)p;
        m.npayload = n;
        gl_conn_send(c, &m);
    }
}

void gl_shards_drained(gl_shards *s, gl_conn *c) { pump(s, c); }

int gl_shards_msg(gl_shards *s, gl_conn *c, const gl_msg *m, gl_err *err)
{
    const char *role = c->hs.role;
    bool driver = !strcmp(role, "driver");
    if (m->type == GL_MSG_DROP && driver) {
        gl_shards_drop(s, m->job);
        return 0;
    }
    if ((m->type == GL_MSG_KEEP || m->type == GL_MSG_UNKEEP) && driver) {
        if (gl_shards_keep(s, c, m->job, m->stage, m->type == GL_MSG_KEEP, err))
            return GL_EINVAL;
        if (m->type == GL_MSG_KEEP)
            gl_conn_send(c, m); /* the answer: they are kept */
        return 0;
    }
    if (m->type != GL_MSG_FETCH || (!driver && strcmp(role, "executor")))
        return gl_err_set(err, GL_EINVAL, "unexpected %s message from a peer in role '%s'", gl_msg_name(m->type),
                          role);
    peer *pe = peer_of(c);
    req *q = malloc(sizeof *q + m->ntasks * sizeof *q->tasks);
    if (!pe || !q) {
        free(q);
        return gl_err_set(err, GL_ENOMEM, "the agent is out of memory");
    }
    q->next = NULL;
    q->job = m->job;
    q->stage = m->stage;
    q->part = m->part;
    q->ntasks = m->ntasks;
    memcpy(q->tasks, m->tasks, m->ntasks * sizeof *q->tasks);
    bool idle = !pe->head;
    if (pe->tail)
        pe->tail->next = q;
    else
        pe->head = q;
    pe->tail = q;
    if (idle)
        pump(s, c);
    return 0;
}

void gl_shards_gone(gl_shards *s, gl_conn *c)
{
    peer *pe = c->data;
    if (!pe)
        return;
    stream_close(s, pe);
    while (pe->head) {
        req *q = pe->head;
        pe->head = q->next;
        free(q);
    }
    for (uint32_t i = 0; i < pe->njobs; i++)
        gl_shards_drop(s, pe->jobs[i]);
    drop_kept(s, pe, true, 0, 0);
    free(pe->jobs);
    free(pe);
    c->data = NULL;
}
