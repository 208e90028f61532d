/* plan.h: the DAG of a flow and the stages it is cut into.
 *
 * The Lua API adds one step per dataset method; a step's id is the id of
 * the dataset it produces. Planning a target walks back from it: narrow
 * steps (map, flatmap, filter, select) join the stage of their input, and
 * consecutive Lua steps fuse into one op so a row is decoded once for the
 * whole chain (and into a Lua combine after them, which then takes the
 * chain's rows as Lua values); a wide step (reduce_by_key, reduce, top, sort_by) ends the
 * stage with a partitioning sink and starts a new stage that reads those
 * partitions. Stages come out in dependency order. */
#ifndef GL_PLAN_H
#define GL_PLAN_H

#include "buf.h"
#include "err.h"
#include "row.h"

#include <stdbool.h>
#include <stdint.h>

enum gl_step_kind {
    GL_STEP_TEXT,
    GL_STEP_ROWS,
    GL_STEP_RANGE,
    GL_STEP_MAP,
    GL_STEP_FLATMAP,
    GL_STEP_FILTER,
    GL_STEP_SELECT,
    GL_STEP_REDUCE_BY_KEY,
    GL_STEP_REDUCE,
    GL_STEP_SORT,
    GL_STEP_TOP,
    GL_STEP_FOREACH,
    GL_STEP_LOCAL_SORT,
    GL_STEP_LOCAL_TOP,
    GL_STEP_LIMIT,
    GL_STEP_PARTITION,
    GL_STEP_DISTINCT,
    GL_STEP_GROUP,
    GL_STEP_JOIN,
    GL_STEP_COGROUP,
    GL_STEP_UNION,
    GL_STEP_PIPE,
    GL_STEP_PIPE_ARGS,
    GL_STEP_CSV,
    GL_STEP_MSGPACK,
    GL_STEP_SAVE,
    GL_STEP_KINDS
};

enum gl_builtin { GL_FN_NONE, GL_FN_WORDS, GL_FN_SUM, GL_FN_COUNT };

/* Integer parameters of a step (gl_plan_set_int). */
enum gl_param {
    GL_P_SHARDS, GL_P_N, GL_P_FROM, GL_P_TO, GL_P_DESC,
    GL_P_HOW,          /* join: enum gl_join_how */
    GL_P_HEADER,       /* csv: skip the first line of each file */
    GL_P_SEP,          /* csv: the separator byte */
    GL_P_TYPES,        /* csv: 0 strings, 1 numbers where they look like numbers */
    GL_P_SKIP_BAD,     /* csv: skip and count malformed lines instead of failing */
    GL_P_FORMAT,       /* save: enum gl_format */
    GL_P_SINGLE,       /* save: one file */
    GL_P_HINT_BYTES,   /* hint{bytes}: expected size of this dataset */
    GL_P_HINT_ROWS,    /* hint{rows} */
    GL_P_PERSIST,      /* cache()/on_disk(): GL_PERSIST_* bits */
};

/* A persisted dataset ends a stage, so its shards exist as an output. */
enum { GL_PERSIST_CACHE = 1, /* kept in the plan for later runs */
       GL_PERSIST_DISK = 2   /* written to LMDB and synced */ };

/* String parameters of a step (gl_plan_set_str). */
enum gl_sparam { GL_S_CMD, GL_S_PATH, GL_S_TYPES };

enum gl_join_how { GL_JOIN_INNER, GL_JOIN_LEFT, GL_JOIN_RIGHT, GL_JOIN_OUTER, GL_JOIN_COGROUP };
enum gl_format { GL_FMT_TSV, GL_FMT_CSV, GL_FMT_MSGPACK };

/* A side below this many bytes (by its hint) is broadcast to a join. */
#define GL_BROADCAST_BYTES (64ull << 20)

enum gl_op_kind {
    GL_OP_LUA, GL_OP_WORDS, GL_OP_SELECT, GL_OP_AGG, GL_OP_SORT, GL_OP_TOP,
    GL_OP_LIMIT,      /* the first `limit` rows */
    GL_OP_DISTINCT,   /* the first row of each key */
    GL_OP_GROUP,      /* key, then the rest of each row of the key */
    GL_OP_COGROUP,    /* joins and cogroup over two shuffled inputs */
    GL_OP_BCAST_JOIN, /* a join probing a broadcast side held in memory */
    GL_OP_PIPE,       /* rows through a shell command */
    GL_OP_PIPE_ARGS,  /* a shell command per row */
    GL_OP_SAVE,       /* rows written to files */
    GL_OP_CFN,        /* a host C mapper (gleam_register_mapper) */
};
enum gl_agg_mode { GL_AGG_LUA, GL_AGG_SUM, GL_AGG_COUNT, GL_AGG_CFN };
enum gl_src_kind {
    GL_SRC_TEXT, GL_SRC_RANGE, GL_SRC_ROWS, GL_SRC_STAGE,
    GL_SRC_CSV, GL_SRC_MSGPACK,
    GL_SRC_UNION,     /* task t reads one partition of one of src_stages, in order */
    GL_SRC_PAIR,      /* task t reads partition t of src_stages[0] (left) and [1] (right) */
};

#define GL_INPUTS_MAX 64
enum gl_sink_kind { GL_SINK_LOCAL, GL_SINK_HASH, GL_SINK_RANGE };

#define GL_FUSE_MAX 32

typedef struct gl_opdesc {
    enum gl_op_kind kind;
    int step;                 /* the step it runs (the first, for GL_OP_LUA) */
    int steps[GL_FUSE_MAX];   /* GL_OP_LUA: the fused steps in order; GL_OP_AGG
                               * in Lua mode: the Lua chain it runs first */
    uint32_t nsteps;
    gl_keyspec key;           /* agg, sort, top key; select fields */
    enum gl_agg_mode mode;
    bool merge;               /* agg: combining partial results */
    bool desc;
    int64_t limit;            /* top, limit: rows kept */
    enum gl_join_how how;     /* cogroup, bcast_join */
    bool small_left;          /* bcast_join: the broadcast side is the left one */
    uint32_t side_stage;      /* bcast_join: the stage holding the broadcast side */
} gl_opdesc;

/* A byte range of one input file; a text task reads a list of them. */
typedef struct gl_piece {
    uint32_t file;
    uint64_t start, end;
    /* CSV cut at lines: 1 + newlines in [0, start - 1), the line the byte
     * before start is on; 0: the piece is the whole file. */
    uint64_t line;
} gl_piece;

typedef struct gl_stage {
    uint32_t id, ntasks;
    enum gl_src_kind src;
    int src_step;             /* TEXT, RANGE, ROWS */
    uint32_t src_stage;       /* STAGE: reads partition <task> of that stage */
    uint32_t src_stages[GL_INPUTS_MAX]; /* UNION, PAIR */
    uint32_t nsrc;
    uint32_t width[2];        /* PAIR: the widest row (fields) of each input */
    /* TEXT: task t reads pieces[first[t] .. first[t+1]) of files */
    char **files;
    uint32_t nfiles;
    gl_piece *pieces;
    uint32_t *first;
    gl_opdesc *ops;
    uint32_t nops, capops;
    enum gl_sink_kind sink;
    uint32_t nparts;
    gl_keyspec sink_key;
    bool sink_desc;
    bool sample;              /* keep a key sample for the next stage's range sink */
    bool track_width;         /* record the widest row written (joins need it) */
    bool on_disk;             /* its output goes to LMDB and is synced */
    int cache_step;           /* >= 0: the output is that step's cache */
    bool cache_in;            /* the cache exists: nothing runs, it is the output */
    gl_buf bounds;            /* RANGE: nparts-1 keys, back to back */
    uint32_t *bound_off;      /* nparts offsets into bounds (last = len) */
    gl_buf blob;              /* msgpack: what Lua workers need to run the ops */
} gl_stage;

typedef struct gl_plan gl_plan;

/* A text, CSV or msgpack source's files and pieces as planned elsewhere
 * (gl_plan_set_split). */
typedef struct gl_split {
    char **files;
    uint32_t nfiles, ntasks;
    gl_piece *pieces;
    uint32_t *first;          /* ntasks + 1 */
} gl_split;

/* Where a cluster keeps a cached step's shards: the cluster driver's own
 * record (cluster/driver.c: which agents hold each task's output, its
 * per-partition counts, the job and stage that made it), which embeds
 * this head, so the engine holds it without knowing a cluster's types.
 * A local run neither reads nor writes it (it keeps `cached`), and a
 * cluster run reads only this, so the two never mix: each computes the
 * dataset once for itself. release is called once, when the record is
 * dropped (uncache, a replacement, the plan freed); it frees the record
 * and tells the agents to let the shards go. */
typedef struct gl_remote_cache {
    void (*release)(struct gl_remote_cache *r);
} gl_remote_cache;

typedef struct gl_step {
    enum gl_step_kind kind;
    int input;
    char *name, *where;       /* method name and the user's file:line */
    gl_buf fn;                /* serialized Lua function (gleam.closure) */
    enum gl_builtin builtin;
    gl_keyspec key;
    bool has_key;
    int64_t shards, n, from, to;
    bool desc;
    int64_t how, header, sep, types, skip_bad, format, single, hint_bytes, hint_rows;
    char *cmd, *path;
    char *coltypes;           /* csv: a type letter per column (source_csv.c) */
    char *cfn;                /* a host function's name (cfn.h) */
    int inputs[GL_INPUTS_MAX]; /* UNION, JOIN, COGROUP: inputs after `input` */
    uint32_t ninputs;
    char **paths;
    uint32_t npaths;
    gl_buf rows;              /* ROWS: driver rows, back to back */
    uint64_t nrows;
    int64_t persist;          /* GL_PERSIST_* */
    struct gl_output *cached; /* the shards of a cached step, once run locally (owned) */
    gl_remote_cache *remote;  /* ... once run on a cluster (owned): see gl_remote_cache */
    gl_split *split;          /* files and pieces planned elsewhere (owned), or NULL */
} gl_step;

/* Returns a new empty plan (caller frees with gl_plan_free), or NULL. */
gl_plan *gl_plan_new(void);
void gl_plan_free(gl_plan *p);

/* Adds a step reading dataset `input` (-1 for a source). name and where are
 * copied. Returns the new dataset id, or a negative gl_err code. */
int gl_plan_step(gl_plan *p, int kind, int input, const char *name, const char *where);
int gl_plan_set_fn(gl_plan *p, int id, const uint8_t *blob, size_t len);
int gl_plan_set_builtin(gl_plan *p, int id, int builtin);
/* Makes the step run the registered host function `name`. */
int gl_plan_set_cfn(gl_plan *p, int id, const char *name);
int gl_plan_set_key(gl_plan *p, int id, const uint32_t *fields, uint32_t n);
int gl_plan_set_int(gl_plan *p, int id, int param, int64_t v);
int gl_plan_set_str(gl_plan *p, int id, int sparam, const char *v);
int gl_plan_add_path(gl_plan *p, int id, const char *pattern);
/* Gives a text, CSV or msgpack source the files and pieces another process
 * planned for it (the cluster driver's, which its tasks carry): planning
 * then uses them as they are, and lists no files. files[nfiles], and for
 * each of ntasks tasks pieces[first[t] .. first[t + 1]), are copied.
 * 0, GL_EINVAL (not such a source, or a piece naming no file), GL_ENOMEM. */
int gl_plan_set_split(gl_plan *p, int id, char *const *files, uint32_t nfiles, const gl_piece *pieces,
                      const uint32_t *first, uint32_t ntasks);
/* Adds another input to a UNION, JOIN or COGROUP step. */
int gl_plan_add_input(gl_plan *p, int id, int input);
/* Copies nrows encoded rows; they are checked before they are kept. */
int gl_plan_add_rows(gl_plan *p, int id, const uint8_t *rows, size_t len, uint64_t nrows);

const gl_step *gl_plan_get(const gl_plan *p, int id);
/* Hands the shards of cached step id to the plan (it frees them), or drops
 * them with o NULL. */
void gl_plan_cache_put(gl_plan *p, int id, struct gl_output *o);
/* The same for a cluster's record of them (released by the plan), or NULL
 * to release the one there. */
void gl_plan_cache_remote(gl_plan *p, int id, gl_remote_cache *r);
int gl_plan_nsteps(const gl_plan *p);

typedef struct gl_stages {
    gl_stage *v;
    uint32_t n;
} gl_stages;

/* Cuts the flow ending at `target` into stages; `workers` is the default
 * shard count of wide steps. Text sources are globbed and split here, so a
 * missing input is reported before anything runs. On success *out is owned
 * by the caller (gl_stages_free). */
int gl_plan_stages(const gl_plan *p, int target, uint32_t workers, gl_stages *out, gl_err *err);
/* The same, but a step cached by a local run is planned as if it were
 * not yet (its stages run): how a cluster's driver and executors plan, so
 * that they agree on the stages whatever the driver's process kept. */
#define GL_PLAN_NO_LOCAL_CACHE 1
int gl_plan_stages_ex(const gl_plan *p, int target, uint32_t workers, unsigned flags, gl_stages *out,
                      gl_err *err);
void gl_stages_free(gl_stages *s);

/* Appends to *out a few lines of text describing how the flow ending at
 * `target` would run on `workers` workers: its stages, what each reads,
 * its ops (step names and the user's lines) and its output shards
 * (explain.c). Plans without running; *out is the caller's. */
int gl_plan_explain(const gl_plan *p, int target, uint32_t workers, gl_buf *out, gl_err *err);

/* Text sources (source_text.c): globs the patterns and splits the files into
 * ntasks lists of pieces (ntasks 0: chosen from the total size). */
int gl_text_split(const gl_step *s, uint32_t workers, gl_stage *st, gl_err *err);

/* True for a path read whole by one task (.gz, and every CSV or msgpack file). */
bool gl_text_whole_file(const gl_step *s, const char *path);

#endif
