/* engine.h: the local runner: a pool of workers and the loop that runs a
 * plan's stages in order on it. */
#ifndef GL_ENGINE_H
#define GL_ENGINE_H

#include "err.h"
#include "plan.h"
#include "store.h"

#include <stdatomic.h>

typedef struct gl_engine gl_engine;

/* Starts `workers` worker threads (0: one per core) with a memory budget
 * of `memory` bytes (0: half of physical memory) and the store's directory
 * `dir` (NULL: a temporary one, made when first needed; see store.h). The
 * Lua paths are those the workers load gleam.worker from. Returns the
 * engine (free with gl_engine_free) or NULL with err set. */
gl_engine *gl_engine_new(uint32_t workers, uint64_t memory, const char *dir, const char *lua_path,
                         const char *lua_cpath, gl_err *err);
void gl_engine_free(gl_engine *e);
uint32_t gl_engine_workers(const gl_engine *e);
/* The engine's store (borrowed). */
gl_store *gl_engine_store(gl_engine *e);

/* What a run counted besides its rows. */
typedef struct gl_stats {
    uint64_t skipped; /* malformed input lines skipped (csv on_error = "skip") */
    uint32_t stages, tasks;
} gl_stats;

/* Runs the flow ending at dataset `target`. On success *out holds the
 * target's shards in order (caller frees with gl_output_free) and *stats
 * (if not NULL) its counts. `cancel`, if not NULL, stops the run when it
 * becomes non-zero. Not reentrant: one run at a time per engine. */
int gl_engine_run(gl_engine *e, gl_plan *p, int target, atomic_int *cancel, gl_output **out,
                  gl_stats *stats, gl_err *err);

/* Where a run is, for a progress line: stage (1-based) of stages, its
 * tasks finished of total, rows written by the finished tasks of this
 * stage, seconds since the run started. */
typedef struct gl_progress {
    uint32_t stage, stages, done, tasks;
    uint64_t rows;
    double elapsed;
} gl_progress;
typedef void (*gl_progress_fn)(const gl_progress *p);

/* Calls fn about every `ms` milliseconds while a run waits for its tasks,
 * on the thread that called gl_engine_run, and fn(NULL) once when the run
 * ends if it was called during it (fn NULL: no calls). */
void gl_engine_set_progress(gl_engine *e, gl_progress_fn fn, uint32_t ms);

/* Cores the engine would use by default. */
uint32_t gl_cores(void);

#endif
