/* shard.h: an agent's shards: the output partitions of the stage tasks its
 * executors ran, kept until the job ends, and served to whoever fetches
 * them.
 *
 * One store (store.h) per agent holds them: chunks in memory within its
 * budget, LMDB under its directory past it. A shard is named by (job,
 * stage, task) and holds one cell per partition. It is written by a put
 * (an executor's chunk messages, on its pipe) and becomes visible only
 * when the put commits, at the executor's successful done; an aborted put
 * (the executor crashed mid-stream) leaves nothing. A committed shard
 * never changes: a rerun of the same (job, stage, task) replaces it whole.
 *
 * Serving: a fetch names (job, stage, part) and the producing tasks; the
 * agent streams cell part of each task's shard, in that order, as chunk
 * messages, then an end (ok, or "shard not here" when one is missing). A
 * connection's fetches are served one after another, in arrival order.
 * Back pressure: the next piece is read from the store only while the
 * connection's write queue is under GL_SHARD_QUEUE, so a slow reader holds
 * the agent to its pace and a 1 GB shard never sits in memory on its way
 * out. A stream holds its shard, so a drop or a replacement mid-stream
 * frees it only when the stream is done.
 *
 * A job's shards go when its driver says drop, or when the connection of
 * the driver that sent its tasks closes; but the shards of a stage that a
 * driver's connection has said keep for (a cached dataset) are that
 * connection's from then on: they outlive their job, and go when it says
 * unkeep for them or closes (driver.c's session). An on_disk() dataset's
 * shards are written to the LMDB and synced when committed. */
#ifndef GL_SHARD_H
#define GL_SHARD_H

#include "conn.h"
#include "err.h"
#include "store.h"

#include <stdint.h>

#define GL_SHARD_QUEUE (4u << 20) /* bytes queued on a connection before its streams wait */

typedef struct gl_shards gl_shards;
typedef struct gl_shard_put gl_shard_put;

/* The agent's shards, in a store of `memory` bytes (store.h: half of it
 * holds chunks in memory) whose LMDB is in dir (made if missing; a killed
 * agent's rows there are cleared). NULL with err set. Free with
 * gl_shards_free. */
gl_shards *gl_shards_new(uint64_t memory, const char *dir, gl_err *err);
void gl_shards_free(gl_shards *s);

/* Bytes of rows held in committed shards. */
uint64_t gl_shards_stored(const gl_shards *s);

/* A pending shard of nparts partitions for (job, stage, task), its rows
 * in LMDB when disk; NULL with err set. Ends with commit or abort, which
 * free it. */
gl_shard_put *gl_shard_put_new(gl_shards *s, uint64_t job, uint32_t stage, uint32_t task, uint32_t nparts,
                               bool disk, gl_err *err);
/* A chunk message's rows for partition part (pieces of a row as stream.h). */
int gl_shard_put_rows(gl_shard_put *p, uint32_t part, const uint8_t *rows, size_t n, uint64_t nrows, gl_err *err);
/* Commits the put whose done carried the result payload `result`
 * (stage.h): the rows and bytes it counts for each partition must be those
 * received, or the put is aborted with GL_EINVAL. 0 or an error. */
int gl_shard_put_commit(gl_shard_put *p, const uint8_t *result, size_t n, gl_err *err);
void gl_shard_put_abort(gl_shard_put *p);

/* Handles a fetch, drop, keep or unkeep message from c, a peer in role
 * "executor" or "driver" (all but fetch: "driver" only; a keep is answered
 * with itself once done); a task message's job from a driver is
 * passed to gl_shards_owner first, so the job's shards go with that
 * driver. 0, or GL_EINVAL (the caller refuses the peer) with err set.
 * Sets c->data to this module's state of the peer. */
int gl_shards_msg(gl_shards *s, gl_conn *c, const gl_msg *m, gl_err *err);

/* keep: the shards of (job, stage) become driver c's, past their job;
 * else (unkeep) those of them c kept are deleted. 0 or GL_ENOMEM. */
int gl_shards_keep(gl_shards *s, gl_conn *c, uint64_t job, uint32_t stage, bool keep, gl_err *err);

/* Records that job belongs to driver c. 0 or GL_ENOMEM. */
int gl_shards_owner(gl_shards *s, gl_conn *c, uint64_t job, gl_err *err);

/* c's write queue shrank: its stream goes on (conn.h's drained). */
void gl_shards_drained(gl_shards *s, gl_conn *c);

/* c is closing: its streams end, and the jobs it owns are dropped. */
void gl_shards_gone(gl_shards *s, gl_conn *c);

/* Deletes job's shards but the kept ones (those being streamed go when
 * their streams end). */
void gl_shards_drop(gl_shards *s, uint64_t job);

#endif
