/* pool.c: worker threads over libuv's thread primitives. */
#include "pool.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

struct gl_pool {
    uv_mutex_t mu;
    uv_cond_t work, done;
    gl_job_fn fn;
    void *ctx;
    uint32_t next, total, finished;
    bool quit;
    uint32_t n, ready;
    gl_worker *w;
    uv_thread_t *th;
    char *path, *cpath;
};

typedef struct start {
    gl_pool *p;
    uint32_t i;
} start;

static void worker_main(void *arg)
{
    gl_pool *p = ((start *)arg)->p;
    gl_worker *w = &p->w[((start *)arg)->i];
    free(arg);
    gl_lua_worker_open(w, p->path, p->cpath);
    uv_mutex_lock(&p->mu);
    p->ready++;
    uv_cond_broadcast(&p->done);
    for (;;) {
        while (!p->quit && p->next >= p->total)
            uv_cond_wait(&p->work, &p->mu);
        if (p->quit)
            break;
        uint32_t i = p->next++;
        gl_job_fn fn = p->fn;
        void *ctx = p->ctx;
        uv_mutex_unlock(&p->mu);
        fn(ctx, w, i);
        uv_mutex_lock(&p->mu);
        if (++p->finished == p->total)
            uv_cond_broadcast(&p->done);
    }
    uv_mutex_unlock(&p->mu);
    gl_lua_worker_close(w);
}

gl_pool *gl_pool_new(uint32_t n, const char *lua_path, const char *lua_cpath, gl_err *err)
{
    gl_pool *p = calloc(1, sizeof *p);
    if (!p || !n)
        goto nomem;
    p->n = n;
    p->w = calloc(n, sizeof *p->w);
    p->th = calloc(n, sizeof *p->th);
    p->path = strdup(lua_path ? lua_path : "");
    p->cpath = strdup(lua_cpath ? lua_cpath : "");
    if (!p->w || !p->th || !p->path || !p->cpath)
        goto nomem;
    if (uv_mutex_init(&p->mu) || uv_cond_init(&p->work) || uv_cond_init(&p->done))
        goto nomem;
    uint32_t started = 0;
    for (; started < n; started++) {
        start *s = malloc(sizeof *s);
        p->w[started].id = started;
        if (!s)
            break;
        *s = (start){p, started};
        if (uv_thread_create(&p->th[started], worker_main, s)) {
            free(s);
            break;
        }
    }
    uv_mutex_lock(&p->mu);
    while (p->ready < started)
        uv_cond_wait(&p->done, &p->mu);
    uv_mutex_unlock(&p->mu);
    int bad = -1;
    for (uint32_t i = 0; i < started && bad < 0; i++)
        if (p->w[i].init.code)
            bad = (int)i;
    if (started < n || bad >= 0) {
        if (bad >= 0)
            gl_err_set(err, p->w[bad].init.code, "%s", p->w[bad].init.msg);
        else
            gl_err_set(err, GL_ENOMEM, "cannot start %u worker threads", n);
        p->n = started;
        gl_pool_free(p);
        return NULL;
    }
    return p;
nomem:
    gl_err_set(err, GL_ENOMEM, "cannot start worker pool");
    if (p) {
        free(p->w);
        free(p->th);
        free(p->path);
        free(p->cpath);
        free(p);
    }
    return NULL;
}

void gl_pool_free(gl_pool *p)
{
    if (!p)
        return;
    uv_mutex_lock(&p->mu);
    p->quit = true;
    uv_cond_broadcast(&p->work);
    uv_mutex_unlock(&p->mu);
    for (uint32_t i = 0; i < p->n; i++)
        uv_thread_join(&p->th[i]);
    uv_cond_destroy(&p->work);
    uv_cond_destroy(&p->done);
    uv_mutex_destroy(&p->mu);
    free(p->w);
    free(p->th);
    free(p->path);
    free(p->cpath);
    free(p);
}

uint32_t gl_pool_size(const gl_pool *p) { return p->n; }

void gl_pool_run(gl_pool *p, gl_job_fn fn, void *ctx, uint32_t ntasks)
{
    gl_pool_run_ticking(p, fn, ctx, ntasks, NULL, NULL, 0);
}

void gl_pool_run_ticking(gl_pool *p, gl_job_fn fn, void *ctx, uint32_t ntasks, void (*tick)(void *, uint32_t),
                         void *tctx, uint32_t tick_ms)
{
    if (!ntasks)
        return;
    uv_mutex_lock(&p->mu);
    p->fn = fn;
    p->ctx = ctx;
    p->finished = 0;
    p->next = 0;
    p->total = ntasks;
    uv_cond_broadcast(&p->work);
    while (p->finished < p->total) {
        if (!tick) {
            uv_cond_wait(&p->done, &p->mu);
            continue;
        }
        if (uv_cond_timedwait(&p->done, &p->mu, (uint64_t)tick_ms * 1000000u) == UV_ETIMEDOUT) {
            uint32_t done = p->finished;
            /* The callback runs unlocked: it may take its time (it prints). */
            uv_mutex_unlock(&p->mu);
            tick(tctx, done);
            uv_mutex_lock(&p->mu);
        }
    }
    p->total = 0;
    p->next = 0;
    uv_mutex_unlock(&p->mu);
}
