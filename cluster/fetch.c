/* fetch.c: the fetching side of shard streams (fetch.h).
 *
 * Lifetime: the gl_fetch outlives its connections, which close on their
 * own schedule; it is freed by the last one's closed callback once the
 * fetch is over (ended, failed or cancelled). */
#include "fetch.h"

#include "conn.h"
#include "opt.h"
#include "stream.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct fconn {
    gl_fetch *f;
    gl_conn *c;           /* NULL once closed */
    uint32_t agent;
    uint32_t *reqs;       /* its fetches (indices into f->reqs), in the order sent */
    uint32_t n, at;       /* reqs[at] is being answered */
    gl_stream_in in;
    bool done;
} fconn;

struct gl_fetch {
    const char *const *addrs;
    const gl_fetch_req *reqs;
    fconn *conns;
    uint32_t nconns, open, left; /* connections open; those with fetches unanswered */
    uint64_t job;
    gl_fetch_cb cb;
    void *ud;
    bool over;
};

static void release(gl_fetch *f)
{
    if (!f->over || f->open)
        return;
    for (uint32_t i = 0; i < f->nconns; i++) {
        free(f->conns[i].reqs);
        gl_stream_in_free(&f->conns[i].in);
    }
    free(f->conns);
    free(f);
}

static void close_all(gl_fetch *f, const char *why)
{
    for (uint32_t i = 0; i < f->nconns; i++)
        if (f->conns[i].c)
            gl_conn_close(f->conns[i].c, "%s", why);
}

static void fail(fconn *fc, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fail(fconn *fc, const char *fmt, ...)
{
    gl_fetch *f = fc->f;
    if (f->over)
        return;
    char msg[GL_TEXT_MAX + 128];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    f->over = true;
    close_all(f, "the fetch failed");
    f->cb(f->ud, GL_EIO, f->addrs[fc->agent], msg);
}

static void on_ready(gl_conn *c)
{
    fconn *fc = c->data;
    for (uint32_t i = 0; i < fc->n; i++) {
        const gl_fetch_req *r = &fc->f->reqs[fc->reqs[i]];
        gl_msg m;
        memset(&m, 0, sizeof m);
        m.type = GL_MSG_FETCH;
        m.job = r->job ? r->job : fc->f->job;
        m.stage = r->stage;
        m.part = r->part;
        m.tasks = r->tasks;
        m.ntasks = r->ntasks;
        if (gl_conn_send(c, &m))
            return; /* closing: closed says why */
    }
}

static void on_msg(gl_conn *c, gl_msg *m)
{
    fconn *fc = c->data;
    gl_fetch *f = fc->f;
    if (f->over)
        return;
    const char *addr = f->addrs[fc->agent];
    if (m->type == GL_MSG_ERROR) {
        fail(fc, "agent %s refused the fetch: %s", addr, m->text);
        return;
    }
    const gl_fetch_req *r = fc->at < fc->n ? &f->reqs[fc->reqs[fc->at]] : NULL;
    if ((m->type != GL_MSG_CHUNK && m->type != GL_MSG_END) || !r || m->job != (r->job ? r->job : f->job) ||
        m->stage != r->stage ||
        m->part != r->part) {
        fail(fc, "agent %s sent an unexpected %s message", addr, gl_msg_name(m->type));
        return;
    }
    if (m->type == GL_MSG_CHUNK) {
        bool asked = false;
        for (uint32_t i = 0; i < r->ntasks && !asked; i++)
            asked = r->tasks[i] == m->task;
        gl_err err = {0};
        if (!asked)
            fail(fc, "agent %s sent rows of task %llu, not asked for", addr, (unsigned long long)m->task);
        else if (gl_stream_in_put(&fc->in, r->into, m->part, (uint32_t)m->task, m->payload, m->npayload, m->nrows,
                                  &err))
            fail(fc, "fetching from agent %s: %s", addr, err.msg);
        return;
    }
    if (!m->ok) {
        fail(fc, "agent %s: %s", addr, m->text);
        return;
    }
    if (gl_stream_in_partial(&fc->in)) {
        fail(fc, "agent %s ended a stream inside a row", addr);
        return;
    }
    if (++fc->at < fc->n)
        return;
    fc->done = true;
    gl_conn_close(c, "fetched");
    if (--f->left == 0) {
        f->over = true;
        f->cb(f->ud, 0, NULL, NULL);
    }
}

static void on_closed(gl_conn *c, const char *why, bool was_ready)
{
    fconn *fc = c->data;
    gl_fetch *f = fc->f;
    fc->c = NULL;
    f->open--;
    if (!fc->done)
        fail(fc, "agent %s: %s", f->addrs[fc->agent], why);
    release(f);
}

static const gl_conn_cb fetch_cb = {on_ready, on_msg, on_closed, NULL};

gl_fetch *gl_fetch_start(uv_loop_t *loop, const gl_secret *secret, const char *role, uint64_t job,
                         const char *const *addrs, const gl_fetch_req *reqs, uint32_t n, gl_fetch_cb cb, void *ud,
                         gl_err *err)
{
    gl_fetch *f = calloc(1, sizeof *f);
    if (!f || !(f->conns = calloc(n, sizeof *f->conns))) {
        free(f);
        gl_err_set(err, GL_ENOMEM, "fetch: out of memory");
        return NULL;
    }
    f->addrs = addrs;
    f->reqs = reqs;
    f->job = job;
    f->cb = cb;
    f->ud = ud;
    /* one connection per agent, its fetches in the order given */
    for (uint32_t i = 0; i < n; i++) {
        fconn *fc = NULL;
        for (uint32_t k = 0; k < f->nconns && !fc; k++)
            if (f->conns[k].agent == reqs[i].agent)
                fc = &f->conns[k];
        if (!fc) {
            fc = &f->conns[f->nconns++];
            fc->f = f;
            fc->agent = reqs[i].agent;
            fc->reqs = malloc(n * sizeof *fc->reqs);
        }
        if (!fc->reqs) {
            f->over = true;
            release(f);
            gl_err_set(err, GL_ENOMEM, "fetch: out of memory");
            return NULL;
        }
        fc->reqs[fc->n++] = i;
    }
    f->left = f->nconns;
    for (uint32_t k = 0; k < f->nconns; k++) {
        fconn *fc = &f->conns[k];
        char host[GL_ADDR_MAX];
        int port;
        gl_err e = {0};
        if (gl_opt_hostport(addrs[fc->agent], host, sizeof host, &port, &e))
            fc->c = NULL;
        else
            fc->c = gl_conn_connect(loop, host, port, secret, role, &fetch_cb, fc);
        if (fc->c) {
            f->open++;
            continue;
        }
        /* an address that does not parse, or no memory: failed now, said from the loop */
        f->over = true;
        close_all(f, "the fetch failed");
        release(f);
        gl_err_set(err, e.code ? e.code : GL_ENOMEM, "fetch: agent %s: %s", addrs[fc->agent],
                   e.code ? e.msg : "out of memory");
        return NULL;
    }
    return f;
}

void gl_fetch_cancel(gl_fetch *f)
{
    if (f->over)
        return;
    f->over = true;
    close_all(f, "the fetch was cancelled");
    release(f);
}

typedef struct sync_end {
    int rc;
    char *lost;
    size_t lostmax;
    gl_err *err;
} sync_end;

static void on_end(void *ud, int rc, const char *lost, const char *msg)
{
    sync_end *e = ud;
    e->rc = rc;
    if (rc) {
        snprintf(e->lost, e->lostmax, "%s", lost);
        gl_err_set(e->err, rc, "%s", msg);
    }
}

int gl_fetch_run(const gl_secret *secret, const char *role, uint64_t job, const char *const *addrs,
                 const gl_fetch_req *reqs, uint32_t n, char *lost, size_t lostmax, gl_err *err)
{
    if (!n)
        return 0;
    uv_loop_t loop;
    if (uv_loop_init(&loop))
        return gl_err_set(err, GL_EIO, "fetch: cannot make an event loop");
    sync_end e = {0, lost, lostmax, err};
    if (!gl_fetch_start(&loop, secret, role, job, addrs, reqs, n, on_end, &e, err))
        e.rc = err->code ? err->code : GL_ENOMEM;
    else
        uv_run(&loop, UV_RUN_DEFAULT);
    gl_loop_drain(&loop);
    return e.rc;
}
