/* session.h: a driver process's hold on the shards of its cached
 * datasets, on the agents that keep them (driver.c).
 *
 * A cluster run that computes a cached dataset asks each agent holding
 * part of it to keep those shards past the job (keep, wire.h), over this
 * process's session connection to that agent: one per agent, opened the
 * first time it is needed, on a libuv loop of its own that lives as long
 * as the process and runs only inside these calls (between them the
 * connections sit open: nothing is sent on them unasked). The agent keeps
 * the shards while that connection is open, so they go when this process
 * ends, however it ends (a kill -9 closes its sockets too); when it says
 * unkeep (ds:uncache(), or the record of them dropped with its plan); or
 * with the agent, which the next run notices as its session connection
 * closed (gl_session_alive), and so computes the dataset again.
 *
 * The calls are serialized by a mutex (a process may drive cluster jobs
 * from several threads), and each waits at most GL_SESSION_MS. */
#ifndef GL_SESSION_H
#define GL_SESSION_H

#include "err.h"

#include <stdbool.h>
#include <stdint.h>

#define GL_SESSION_MS 10000

/* Asks the agent at addr ("host:port") to keep the shards of stage of
 * job, over the session connection (opened if need be), and waits for its
 * answer. 0, or GL_EIO with err set (unreachable, gone, or too slow: then
 * the connection is closed, and what it kept goes with it). */
int gl_session_keep(const char *addr, uint64_t job, uint32_t stage, gl_err *err);

/* Whether the session connection to addr is open: what the agent kept
 * over it is still there. */
bool gl_session_alive(const char *addr);

/* Tells the agent at addr to let go of the shards of stage of job it kept
 * for this session (nothing when its connection is gone: so are they). */
void gl_session_unkeep(const char *addr, uint64_t job, uint32_t stage);

#endif
