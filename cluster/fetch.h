/* fetch.h: fetching shards from agents, for an executor's inputs and the
 * driver's final output.
 *
 * One connection per agent (the usual handshake, in the caller's role),
 * over which that agent's fetches are sent at once and answered one after
 * another, each as a stream of chunk messages and an end (shard.h);
 * connections to different agents run at the same time. A chunk of
 * (part, task) is appended to cell (part, task) of its fetch's output, so
 * the partition reads back in task order however the streams interleave.
 * The first failure ends the whole fetch: an agent that can't be reached,
 * goes away mid-stream, or ends a fetch with an error ("shard not here"),
 * or a malformed stream. */
#ifndef GL_FETCH_H
#define GL_FETCH_H

#include "auth.h"
#include "err.h"

#include <stdint.h>
#include <uv.h>

struct gl_output;

typedef struct gl_fetch_req {
    uint32_t agent;         /* an index into the addresses */
    uint32_t stage, part;
    uint32_t *tasks;        /* the producing tasks held there, in order */
    uint32_t ntasks;
    struct gl_output *into; /* has the stage's nparts and ntasks */
    uint64_t job;           /* the job whose shards these are; 0: the fetch's (a cached
                             * dataset's shards keep the job and stage that made them) */
} gl_fetch_req;

typedef struct gl_fetch gl_fetch;

/* How a fetch ended: rc 0 (every stream ended well) or an error, with
 * lost the address of the agent it failed on and msg one line. */
typedef void (*gl_fetch_cb)(void *ud, int rc, const char *lost, const char *msg);

/* Starts the n (> 0) fetches of reqs for job on loop. addrs, reqs (their
 * tasks, their outputs) and secret are borrowed until the callback or
 * gl_fetch_cancel; cb is called once, from the loop, never from here.
 * NULL with err set when out of memory. */
gl_fetch *gl_fetch_start(uv_loop_t *loop, const gl_secret *secret, const char *role, uint64_t job,
                         const char *const *addrs, const gl_fetch_req *reqs, uint32_t n, gl_fetch_cb cb, void *ud,
                         gl_err *err);

/* Stops a fetch whose callback has not come: it never will. What was
 * appended stays appended. */
void gl_fetch_cancel(gl_fetch *f);

/* The same on a loop of its own, returning when it is over: 0, or an
 * error with the failing agent's address in lost (lostmax bytes). */
int gl_fetch_run(const gl_secret *secret, const char *role, uint64_t job, const char *const *addrs,
                 const gl_fetch_req *reqs, uint32_t n, char *lost, size_t lostmax, gl_err *err);

#endif
