/* stage.h: one task of a flow's stage as the payload of a task message,
 * its result as the payload of the done message, and the executor's run
 * of it.
 *
 * The driver and the executor cut the same plan (plan_wire.h) with the
 * same worker count, so gl_plan_stages gives both the same stages: a task
 * is named by (stage, task) and carries only what the driver learned while
 * running the stages before it: the range bounds of its stage's sink, the
 * widest rows of a join's inputs, and where its input rows are. No rows
 * travel in a task or a result: the executor fetches its input partitions
 * from the agents that hold them (fetch.h) and streams its output
 * partitions to its own agent (shard.h) before its done.
 *
 * An input is partition `part` of stage `stage`, that is cell part of
 * every task of that stage, concatenated in task order (which is what
 * makes a run deterministic); for each of those tasks the payload names
 * the agent that holds its output, as an index into the task's list of
 * agent addresses.
 *
 * The files a text, CSV or msgpack source reads, and how they are cut into
 * its tasks' pieces, are the driver's (splits): an executor plans with
 * them rather than listing the files again, so every process sees the
 * same stages and each task reads the pieces the driver gave it.
 *
 * Task payload, a msgpack array:
 *   ["gleam-stage", luajit, plan, splits, target, workers, stage, task, dir,
 *    bounds, [bound_off...], width0, width1, [addr...],
 *    [[stage, part, [agent...]] or [stage, part, [agent...], job, as]...]]
 * (the second form for a cached dataset's shards, kept from an earlier job:
 * the agents hold them as stage `as` of that job)
 * splits: [[step, [file...], [[file, start, end, line]...], [first...]]...]
 * Result payload: [[[nrows, bytes] per partition], [key...], width, skipped]
 * where luajit names the driver's LuaJIT and the kind of bytecode it makes
 * (gl_stage_luajit): an executor whose LuaJIT makes another kind refuses
 * the task naming both, rather than load the plan's functions. */
#ifndef GL_CLUSTER_STAGE_H
#define GL_CLUSTER_STAGE_H

#include "buf.h"
#include "err.h"

#include <stdint.h>

#define GL_STAGE_MAGIC "gleam-stage"

#include "fetch.h"

/* Partition part of stage's output: holder[t] is the agent (an index into
 * gl_stage_task.agents) holding task t's output, for every task of stage. */
typedef struct gl_stage_input {
    uint32_t stage, part;
    const uint32_t *holder; /* borrowed */
    uint32_t ntasks;
    uint64_t job;           /* 0, or the earlier job whose kept shards these are, */
    uint32_t as;            /* as its stage `as` */
} gl_stage_input;

typedef struct gl_stage_task {
    const uint8_t *plan; /* borrowed, like every pointer here */
    size_t nplan;
    const uint8_t *splits; /* gl_stage_splits_encode's */
    size_t nsplits;
    int target;
    uint32_t workers, stage, task;
    const char *dir;
    size_t ndir;
    const uint8_t *bounds;
    size_t nbounds;
    const uint32_t *bound_off; /* encoding only; decoded into the stage directly */
    uint32_t nbound_off;
    uint32_t width[2];
    const char *const *agents; /* "host:port" */
    uint32_t nagents;
    const gl_stage_input *inputs;
    uint32_t ninputs;
} gl_stage_task;

/* Appends the task payload to out. 0 or -1 (out of memory). */
int gl_stage_task_encode(gl_buf *out, const gl_stage_task *t);

/* Appends the splits of the plan's file sources, as gl_plan_stages cut
 * them into stages, to out. 0 or -1 (out of memory). */
struct gl_stages;
int gl_stage_splits_encode(gl_buf *out, const struct gl_stages *stages);

/* True when a task payload is a stage task (else: a function call, which
 * gleam.executor runs). */
int gl_stage_task_is(const uint8_t *p, size_t n);

/* This process's LuaJIT and its bytecode kind, for people:
 * "LuaJIT 2.1.0-beta3 (bytecode version 2, GC64)". */
void gl_stage_luajit(char *out, size_t max);

/* `gleam executor`'s run of a stage task, in steps: open, fetch what
 * gl_stage_fetches lists, run, then read the output and the result. */
typedef struct gl_stage_run gl_stage_run;

/* Decodes the payload, enters the driver's directory, plans, and makes
 * the task's store (memory: its budget, 0 for half the RAM; see store.h;
 * it spills under $TMPDIR) with an empty output for each input. *out
 * (caller frees with gl_stage_close) or an error in err. */
int gl_stage_open(const uint8_t *payload, size_t n, uint64_t memory, gl_stage_run **out, gl_err *err);

/* The fetches that bring the task's inputs: one per input and agent,
 * naming that agent's tasks in order, each into the input's output (a
 * cell per producing task, so fetches may arrive in any order). Borrowed
 * until gl_stage_close; the agents' addresses likewise. */
const gl_fetch_req *gl_stage_fetches(const gl_stage_run *r, uint32_t *n);
const char *const *gl_stage_agents(const gl_stage_run *r, uint32_t *n);

/* Runs the task on its fetched inputs, in a worker whose Lua state
 * searches lua_path/lua_cpath. 0, or the task's error in err (a Lua error
 * reads as it does in local mode). */
int gl_stage_exec(gl_stage_run *r, const char *lua_path, const char *lua_cpath, gl_err *err);

/* After gl_stage_exec: the output (nparts partitions; only this task's
 * column holds rows), and its index as (stage, task). Borrowed. */
const struct gl_output *gl_stage_output(const gl_stage_run *r, uint32_t *stage, uint32_t *task);

/* The result payload, appended to out. 0 or GL_ENOMEM. */
int gl_stage_result(const gl_stage_run *r, gl_buf *out, gl_err *err);

void gl_stage_close(gl_stage_run *r);

/* Reads a result payload of nparts partitions: rows[p] and bytes[p] get
 * each partition's counts and, when t is not NULL, *t the task's key sample,
 * widest row and skipped lines (sample, sample_off, nsample, width, skipped;
 * the caller frees sample and sample_off). 0, or GL_EINVAL for a payload
 * that is malformed or has another number of partitions. */
struct gl_task;
int gl_stage_result_apply(const uint8_t *p, size_t n, uint32_t nparts, uint64_t *rows, uint64_t *bytes,
                          struct gl_task *t, gl_err *err);

#endif
