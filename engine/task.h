/* task.h: the task runtime. A task is one stage on one shard: it reads its
 * input in batches, pushes each batch through the stage's ops, and the last
 * op's batches go to the sink, which writes them to this task's column of
 * the stage output. Ops work on whole batches of msgpack rows; only Lua ops
 * (lua_op.c) cross into Lua, once per batch. */
#ifndef GL_TASK_H
#define GL_TASK_H

#include "buf.h"
#include "err.h"
#include "plan.h"
#include "store.h"

#include <stdatomic.h>
#include <stdbool.h>

typedef struct gl_worker gl_worker;
typedef struct gl_task gl_task;
typedef struct gl_opr gl_opr;

struct gl_opr {
    const gl_opdesc *d;
    gl_task *t;
    uint32_t index;
    gl_opr *next; /* NULL: the sink */
    int (*push)(gl_opr *op, const uint8_t *rows, size_t len, uint64_t nrows);
    /* The right-hand input of a two-input op (joins), pushed before push. */
    int (*push2)(gl_opr *op, const uint8_t *rows, size_t len, uint64_t nrows);
    int (*finish)(gl_opr *op);
    void (*destroy)(gl_opr *op);
    /* A map-side combine: the bytes it holds. Past the task's share of the
     * budget it emits them and starts again (task.c). NULL: not bounded so. */
    size_t (*held)(gl_opr *op);
    gl_buf out;   /* staged output rows (Lua writes here through the FFI) */
    uint64_t out_rows;
    void *st;     /* op state */
    int ref_push, ref_finish; /* Lua ops: registry refs */
};

/* Per-run state shared by the tasks of every stage. */
typedef struct gl_run {
    uint64_t id;
    const gl_plan *plan;
    gl_stages stages;
    gl_output **outs;     /* one per stage, NULL once consumed */
    gl_store *store;      /* the engine's: budget and LMDB */
    atomic_int failed;    /* set by the first failing task; others stop early */
    atomic_int *cancel;   /* set from outside (Ctrl-C); may be NULL */
} gl_run;

struct gl_task {
    gl_run *run;
    const gl_stage *st;
    uint32_t index;
    gl_worker *w;
    gl_output *out;
    const gl_output *in;
    gl_opr *ops;
    gl_err err;
    /* key sample for a following range sink: every stride-th row's key */
    gl_buf sample;
    uint32_t *sample_off;
    uint32_t nsample;
    uint64_t stride, seen;
    uint32_t width;      /* the most fields in a row written, if tracked */
    uint64_t skipped;    /* malformed input lines skipped */
    bool input_done;     /* a limit has its rows: stop reading input */
};

#define GL_SAMPLE_MAX 512

/* Hands a batch to the op after `op` (or the sink). */
int gl_op_emit(gl_opr *op, const uint8_t *rows, size_t len, uint64_t nrows);
/* Emits op->out as one batch if it holds at least `min` bytes. */
int gl_op_flush(gl_opr *op, size_t min);

/* Sets the range bounds of stage next (its RANGE sink): nparts-1 keys that
 * cut the pooled key samples of the tasks before it into equal runs
 * (exec.c; the cluster driver calls it with the samples executors sent).
 * 0, or -1 out of memory. */
int gl_stage_bounds(gl_stage *next, const gl_task *tasks, uint32_t ntasks);

/* Runs one task to the end; 0 ok, else the task's error is in t->err. */
int gl_task_run(gl_task *t);

/* Op constructors: set push, finish, destroy and state. */
int gl_op_words_init(gl_opr *op);
int gl_op_select_init(gl_opr *op);
/* op_narrow.c: a Lua chain gleam.project recognised, run in C; spec as
 * gleam.project.encode writes it (copied). */
int gl_op_project_init(gl_opr *op, const uint8_t *spec, size_t len);
int gl_op_agg_init(gl_opr *op);
/* op_agg.c: whether op is a built-in count keyed by field 1, which the op
 * before it may feed one key string at a time (gl_op_agg_count_str, the
 * same as pushing the row (s)) instead of encoding rows for it to parse. */
bool gl_op_agg_counts_first(const gl_opr *op);
int gl_op_agg_count_str(gl_opr *op, const void *s, size_t n);
int gl_op_sort_init(gl_opr *op);
int gl_op_lua_init(gl_opr *op); /* lua_op.c: GL_OP_LUA, and GL_OP_AGG in Lua mode */
int gl_op_limit_init(gl_opr *op);   /* op_narrow.c */
int gl_op_group_init(gl_opr *op);   /* op_group.c: GL_OP_GROUP, GL_OP_DISTINCT */
int gl_op_join_init(gl_opr *op);    /* op_join.c: GL_OP_COGROUP, GL_OP_BCAST_JOIN */
int gl_op_pipe_init(gl_opr *op);    /* op_pipe.c: GL_OP_PIPE, GL_OP_PIPE_ARGS */
int gl_op_save_init(gl_opr *op);    /* op_save.c */
int gl_op_cfn_init(gl_opr *op);     /* cfn.c: GL_OP_CFN, and GL_OP_AGG with a host reducer */

/* op_save.c: removes a file or directory tree without following symlinks;
 * a missing path is success. 0, or GL_EIO with the path in err. */
int gl_save_remove(const char *path, gl_err *err);

/* Formats a row for an error message: abbreviated past ~200 bytes. */
#define GL_ROW_SHOW 200



/* Fails the task at a row: "<step> (<where>): <what>; row (…)". Returns GL_ETASK. */
int gl_task_fail_row(gl_task *t, int step, const char *what, const uint8_t *row, const uint8_t *end);
#endif
