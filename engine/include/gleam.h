/* gleam.h: the public C API of libgleam, for host applications.
 *
 *   gleam_engine *e;
 *   gleam_error err;
 *   gleam_options o;
 *   gleam_options_init(&o);
 *   if (gleam_engine_new(&o, &e, &err)) { fprintf(stderr, "%s\n", err.message); ... }
 *   gleam_rows *rows;
 *   const char *argv[] = {"data.txt"};
 *   if (gleam_run_string(e, "local gleam = require 'gleam'\n"
 *                           "return gleam.flow():text(arg):flatmap(gleam.fn.words)"
 *                           ":reduce_by_key(gleam.fn.count):top(10, {by = 2})",
 *                        "wc", 1, argv, &rows, &err)) ...
 *   const gleam_value *f; size_t n;
 *   while (gleam_rows_next(rows, &f, &n, &err) == 1) printf("%.*s %lld\n", ...);
 *   gleam_rows_free(rows);
 *   gleam_engine_free(e);
 *
 * A flow is Lua (the API of `require "gleam"`), given as a file or a
 * string; the chunk returns the dataset whose rows the host wants (or
 * nothing, when it ran its own sinks). Rows come back as typed values; the
 * host never touches Lua or msgpack. Hosts can add their own row functions
 * in C (gleam_register_mapper/_reducer) and use them by name in flows as
 * gleam.fn.<name>.
 *
 * Errors: every function that can fail returns 0 (or, for iterators, 1 for
 * a row and 0 at the end) or a negative GLEAM_E* code, and fills the
 * gleam_error the caller passes (which may be NULL) with the same one-line
 * message the gleam command prints.
 *
 * Threads: an engine, and the rows it returned, are used by one thread at
 * a time; different engines may run in different threads. Registered
 * functions are process-wide and are called concurrently from the engine's
 * worker threads. */
#ifndef GLEAM_H
#define GLEAM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define GLEAM_VERSION "0.1.0"
#define GLEAM_VERSION_MAJOR 0
#define GLEAM_VERSION_MINOR 1
#define GLEAM_VERSION_PATCH 0

/* The library's version string (static storage; never freed). It can
 * differ from GLEAM_VERSION when the host runs against another build. */
const char *gleam_version(void);

enum {
    GLEAM_OK = 0,
    GLEAM_EINVAL = -1, /* a bad argument, or bad input data */
    GLEAM_ENOMEM = -2,
    GLEAM_EIO = -3,    /* a file could not be read or written */
    GLEAM_EJOB = -4,   /* the flow failed: a Lua error, a failed step */
};

typedef struct gleam_error {
    int code;
    char message[1024];
} gleam_error;

/* ---- values ---- */

typedef enum gleam_type {
    GLEAM_NIL,
    GLEAM_BOOL,
    GLEAM_INT,    /* as.i */
    GLEAM_UINT,   /* as.u: integers above INT64_MAX */
    GLEAM_DOUBLE, /* as.d */
    GLEAM_BYTES,  /* as.bytes: a string, not NUL-terminated */
    GLEAM_ARRAY,  /* as.list: n items */
    GLEAM_MAP,    /* as.list: n pairs, items[2k] a key and items[2k+1] its value */
} gleam_type;

typedef struct gleam_value {
    gleam_type type;
    union {
        int b;
        int64_t i;
        uint64_t u;
        double d;
        struct {
            const char *data;
            size_t len;
        } bytes;
        struct {
            const struct gleam_value *items;
            size_t n;
        } list;
    } as;
} gleam_value;

/* ---- engines ---- */

typedef struct gleam_options {
    unsigned workers; /* worker threads; 0: one per core */
    /* The memory budget in bytes; 0: half of physical memory. Past it,
     * stage outputs move to LMDB and sort, group, reduce and join spill. */
    unsigned long long memory;
    /* The directory of the on-disk store (copied); NULL: a temporary one,
     * made when first needed and removed by gleam_engine_free. A named
     * directory is made if missing, kept, and locked while in use. */
    const char *dir;
} gleam_options;

/* Fills o with the defaults. Call it first, so fields added in later
 * versions get their defaults too. */
void gleam_options_init(gleam_options *o);

typedef struct gleam_engine gleam_engine;

/* Makes an engine: a Lua state for flows and, at the first run, its worker
 * threads. On success *out is owned by the caller (gleam_engine_free). */
int gleam_engine_new(const gleam_options *o, gleam_engine **out, gleam_error *err);
void gleam_engine_free(gleam_engine *e);

/* ---- running flows ---- */

typedef struct gleam_rows gleam_rows;

/* Runs the Lua chunk in the file at path (or in the string chunk, named
 * `name` in messages) with argc arguments, which it sees in the global
 * table `arg` and as `...`. If the chunk returns a dataset, that dataset is
 * run and *rows (caller frees with gleam_rows_free) iterates its rows in
 * shard order; if it returns nothing, *rows iterates no rows. */
int gleam_run_file(gleam_engine *e, const char *path, int argc, const char *const *argv, gleam_rows **rows,
                   gleam_error *err);
int gleam_run_string(gleam_engine *e, const char *chunk, const char *name, int argc, const char *const *argv,
                     gleam_rows **rows, gleam_error *err);

/* The next row: 1 and its n fields in *fields, 0 at the end, or a negative
 * code. The values (strings and nested lists included) are borrowed until
 * the next call or gleam_rows_free. */
int gleam_rows_next(gleam_rows *r, const gleam_value **fields, size_t *n, gleam_error *err);
uint64_t gleam_rows_count(const gleam_rows *r);
void gleam_rows_free(gleam_rows *r);

/* ---- host functions in the row loop ---- */

typedef struct gleam_emitter gleam_emitter;

/* A mapper gets each row's fields (borrowed for the call) and emits any
 * number of rows with gleam_emit: one for map, the row or none for filter,
 * many for flatmap. Return 0, or a negative code after gleam_emit_error to
 * fail the task (the message names the step and the row). Called from
 * worker threads, concurrently: it must be thread-safe. */
typedef int (*gleam_map_fn)(void *ud, const gleam_value *fields, size_t n, gleam_emitter *out);

/* Emits a row of n fields (copied). 0, or a negative code to return. */
int gleam_emit(gleam_emitter *out, const gleam_value *fields, size_t n);

/* Sets the failure message of the current call; returns GLEAM_EJOB. */
int gleam_emit_error(gleam_emitter *out, const char *message);

/* A reducer combines the n value fields of a and b into out[0..n): as
 * function(a1..an, b1..bn) in reduce_by_key and reduce. out's values may
 * point into a or b, or at memory of ud that stays valid until the next
 * call on the same thread. Return 0, or a negative code to fail. */
typedef int (*gleam_reduce_fn)(void *ud, const gleam_value *a, const gleam_value *b, size_t n, gleam_value *out);

/* Makes fn usable in flows as gleam.fn.<name> (a mapper in map, flatmap
 * and filter; a reducer in reduce_by_key and reduce), in every engine of
 * this process. Names are letters, digits and '_'; a name cannot be
 * registered twice nor shadow a built-in (words, sum, count). */
int gleam_register_mapper(const char *name, gleam_map_fn fn, void *ud, gleam_error *err);
int gleam_register_reducer(const char *name, gleam_reduce_fn fn, void *ud, gleam_error *err);

#ifdef __cplusplus
}
#endif

#endif
