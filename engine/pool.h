/* pool.h: the local task host: worker threads, each with its own LuaJIT
 * state, made once per engine and reused by every stage of every run. A
 * stage is handed to the pool as ntasks numbered tasks; idle workers take
 * the next number until none are left, and gl_pool_run returns when every
 * task has finished. */
#ifndef GL_POOL_H
#define GL_POOL_H

#include "err.h"

#include <stdint.h>

typedef struct lua_State lua_State;

struct gl_worker {
    uint32_t id;
    lua_State *L;
    int ref_mod;   /* registry ref: the gleam.worker module */
    int ref_trace; /* registry ref: its error handler */
    gl_err init;   /* why the Lua state could not be made, if it could not */
    uint32_t agg_keys; /* keys the last Lua combine on this worker ended with */
};

typedef struct gl_worker gl_worker;
typedef struct gl_pool gl_pool;
typedef void (*gl_job_fn)(void *ctx, gl_worker *w, uint32_t task);

/* Starts n workers whose Lua states search lua_path/lua_cpath. Returns the
 * pool (free with gl_pool_free) or NULL with err set. */
gl_pool *gl_pool_new(uint32_t n, const char *lua_path, const char *lua_cpath, gl_err *err);
void gl_pool_free(gl_pool *p);
uint32_t gl_pool_size(const gl_pool *p);

/* Runs fn(ctx, worker, i) for i in [0, ntasks) and waits for all of them.
 * One run at a time per pool. */
void gl_pool_run(gl_pool *p, gl_job_fn fn, void *ctx, uint32_t ntasks);
/* The same, calling tick(tctx, tasks finished) on the calling thread about
 * every tick_ms while it waits (tick NULL: never). */
void gl_pool_run_ticking(gl_pool *p, gl_job_fn fn, void *ctx, uint32_t ntasks, void (*tick)(void *, uint32_t),
                         void *tctx, uint32_t tick_ms);

/* lua_state.c: a worker's Lua state with gleam.worker loaded. */
int gl_lua_worker_open(gl_worker *w, const char *lua_path, const char *lua_cpath);
void gl_lua_worker_close(gl_worker *w);

#endif
