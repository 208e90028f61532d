/* stage.h: one task of a flow's stage as the payload of a task message,
 * its result as the payload of the done message, and the executor's run
 * of it.
 *
 * The driver and the executor cut the same plan (plan_wire.h) with the
 * same worker count, so gl_plan_stages gives both the same stages: a task
 * is named by (stage, task) and carries only what the driver learned while
 * running the stages before it: the range bounds of its stage's sink, the
 * widest rows of a join's inputs, and its input rows.
 *
 * This step of issue 7 ships a task's input partitions inside the task
 * and its output partitions inside the done message, through the driver;
 * both are bounded by the frame size (GL_WIRE_MAX). The agents' shard
 * store (put/fetch between agents) replaces that transport later; the
 * payloads are the only thing that changes.
 *
 * Task payload, a msgpack array:
 *   ["gleam-stage", luajit, plan, target, workers, stage, task, dir, bounds,
 *    [bound_off...], width0, width1, [[stage, part, nrows, rows]...]]
 * Result payload: [[[nrows, rows] per partition], [key...], width, skipped]
 * where rows are whole msgpack rows back to back, as store.h chunks hold,
 * and luajit names the driver's LuaJIT and the kind of bytecode it makes
 * (gl_stage_luajit): an executor whose LuaJIT makes another kind refuses
 * the task naming both, rather than load the plan's functions. */
#ifndef GL_CLUSTER_STAGE_H
#define GL_CLUSTER_STAGE_H

#include "buf.h"
#include "err.h"

#include <stdint.h>

#define GL_STAGE_MAGIC "gleam-stage"

typedef struct gl_stage_input {
    uint32_t stage, part;
    uint64_t nrows;
    const uint8_t *rows; /* borrowed */
    size_t len;
} gl_stage_input;

typedef struct gl_stage_task {
    const uint8_t *plan; /* borrowed, like every pointer here */
    size_t nplan;
    int target;
    uint32_t workers, stage, task;
    const char *dir;
    size_t ndir;
    const uint8_t *bounds;
    size_t nbounds;
    const uint32_t *bound_off; /* encoding only; decoded into the stage directly */
    uint32_t nbound_off;
    uint32_t width[2];
    const gl_stage_input *inputs;
    uint32_t ninputs;
} gl_stage_task;

/* Appends the task payload to out. 0 or -1 (out of memory). */
int gl_stage_task_encode(gl_buf *out, const gl_stage_task *t);

/* True when a task payload is a stage task (else: a function call, which
 * gleam.executor runs). */
int gl_stage_task_is(const uint8_t *p, size_t n);

/* This process's LuaJIT and its bytecode kind, for people:
 * "LuaJIT 2.1.0-beta3 (bytecode version 2, GC64)". */
void gl_stage_luajit(char *out, size_t max);

/* `gleam executor`'s run of a stage task: payload in, result payload in
 * *out (caller frees). memory: the budget of its store (0: half the RAM;
 * see store.h), which spills under $TMPDIR. lua_path/lua_cpath: what its worker's Lua state
 * searches. 0, or an error with the task's message in err (a Lua error
 * reads as it does in local mode). */
int gl_stage_exec(const uint8_t *payload, size_t n, uint64_t memory, const char *lua_path, const char *lua_cpath,
                  gl_buf *out, gl_err *err);

/* The driver's side of a result: appends its partitions to column `task`
 * of o (which has the stage's nparts) and puts its key sample, widest row
 * and skipped lines into *t (sample, sample_off, nsample, width, skipped;
 * the caller frees sample and sample_off). 0, or GL_EINVAL for a payload
 * that does not fit o, or the store's error. */
struct gl_output;
struct gl_task;
int gl_stage_result_apply(const uint8_t *p, size_t n, struct gl_output *o, uint32_t task, struct gl_task *t,
                          gl_err *err);

#endif
