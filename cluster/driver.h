/* driver.h: running a flow on a cluster, for `gleam run --master`.
 *
 * gl_cluster_run is gl_engine_run (engine.h) with the master's address in
 * place of the engine: the same plan and target, the same output, so
 * collect, printf and each don't know where the rows were made. */
#ifndef GL_DRIVER_H
#define GL_DRIVER_H

#include "engine.h"

#include <stdatomic.h>

#define GL_MAX_ATTEMPTS 3 /* runs of a task before its failure fails the job */

/* Runs the flow ending at `target` on the executors the master at
 * master ("host:port") grants, each task at most max_attempts times (0:
 * GL_MAX_ATTEMPTS). The secret comes from GLEAM_SECRET. On success *out
 * holds the target's shards in order (caller frees with gl_output_free).
 * The shards of cached datasets it computes stay on the agents, recorded
 * in p for its later runs in this process (driver.c). Blocks until the
 * job ends; one job at a time per calling thread. */
int gl_cluster_run(const char *master, uint32_t max_attempts, gl_plan *p, int target, atomic_int *cancel,
                   gl_output **out, gl_stats *stats, gl_err *err);

/* The same, for count(): *rows gets the target's row count, which the
 * executors' results report, and no row is fetched to the driver. */
int gl_cluster_count(const char *master, uint32_t max_attempts, gl_plan *p, int target, atomic_int *cancel,
                     uint64_t *rows, gl_stats *stats, gl_err *err);

#endif
