-- gleam.core: the FFI face of libgleam. Declarations here mirror the
-- engine's private headers (buf.h, err.h, store.h, plan.h, agg.h, engine.h);
-- change both together. The library is found in the process (the gleam
-- executable links it) or loaded by path from package.cpath (plain luajit).
local ffi = require "ffi"

ffi.cdef [[
typedef struct gl_buf { uint8_t *data; size_t len; size_t cap; } gl_buf;
int gl_buf_grow(gl_buf *b, size_t extra);
void gl_buf_free(gl_buf *b);

typedef struct gl_err { int code; char msg[1024]; } gl_err;

typedef struct gl_chunk { uint8_t *data; size_t len, cap; uint64_t nrows; } gl_chunk;
typedef struct gl_output { uint32_t nparts, ntasks; void *cells; uint32_t max_width; } gl_output;
void gl_output_free(gl_output *o);
uint64_t gl_output_rows(const gl_output *o);
typedef struct gl_reader gl_reader;
gl_reader *gl_reader_new(const gl_output *o, uint32_t part);
const gl_chunk *gl_reader_next(gl_reader *r);
const char *gl_reader_error(const gl_reader *r);
void gl_reader_free(gl_reader *r);
/* A group's values read from LMDB (gleam.worker gives it its methods). */
typedef struct gl_group_values { gl_reader *rd; const uint8_t *p; uint64_t i, left, n, count; } gl_group_values;

typedef struct gl_plan gl_plan;
gl_plan *gl_plan_new(void);
void gl_plan_free(gl_plan *p);
int gl_plan_step(gl_plan *p, int kind, int input, const char *name, const char *where);
int gl_plan_set_fn(gl_plan *p, int id, const uint8_t *blob, size_t len);
int gl_plan_set_builtin(gl_plan *p, int id, int builtin);
int gl_plan_set_key(gl_plan *p, int id, const uint32_t *fields, uint32_t n);
int gl_plan_set_int(gl_plan *p, int id, int param, int64_t v);
int gl_plan_set_str(gl_plan *p, int id, int sparam, const char *v);
int gl_plan_add_path(gl_plan *p, int id, const char *pattern);
int gl_plan_add_input(gl_plan *p, int id, int input);
int gl_save_remove(const char *path, gl_err *err);
int64_t gl_printf_rows(const char *fmt, const uint8_t *p, size_t len, uint64_t nrows, size_t *off);
int gl_plan_add_rows(gl_plan *p, int id, const uint8_t *rows, size_t len, uint64_t nrows);
int gl_plan_explain(const gl_plan *p, int target, uint32_t workers, gl_buf *out, gl_err *err);

typedef struct gl_engine gl_engine;
gl_engine *gl_engine_new(uint32_t workers, uint64_t memory, const char *dir, const char *lua_path,
                         const char *lua_cpath, gl_err *err);
void gl_engine_free(gl_engine *e);
uint32_t gl_engine_workers(const gl_engine *e);
typedef struct gl_stats { uint64_t skipped; uint32_t stages, tasks; } gl_stats;
int gl_engine_run(gl_engine *e, gl_plan *p, int target, int *cancel, gl_output **out,
                  gl_stats *stats, gl_err *err);
uint32_t gl_cores(void);
typedef struct gl_progress { uint32_t stage, stages, done, tasks; uint64_t rows; double elapsed; } gl_progress;
typedef void (*gl_progress_fn)(const gl_progress *p);
void gl_engine_set_progress(gl_engine *e, gl_progress_fn fn, uint32_t ms);

typedef struct gl_agg gl_agg;
int64_t gl_agg_slot(gl_agg *a, const uint8_t *row, size_t len);
int64_t gl_agg_slot_strs(gl_agg *a, const uint8_t *p, size_t len);
const uint8_t *gl_agg_key(const gl_agg *a, uint32_t slot, size_t *len);
uint32_t gl_agg_count(const gl_agg *a);

const char *gleam_version(void);
int gl_cfn_kind(const char *name);
int gl_plan_set_cfn(gl_plan *p, int id, const char *name);
]]

local function in_process()
  local ok = pcall(function() return ffi.C.gleam_version end)
  return ok and ffi.C or nil
end

local C = in_process()
if not C then
  local path = package.searchpath("gleam.core", package.cpath)
  if not path then
    error("gleam: cannot find the native library gleam/core.so on package.cpath", 0)
  end
  -- Loaded with global symbols so worker threads' Lua states find it as ffi.C.
  C = ffi.load(path, true)
end

-- gl_cluster_run and gl_cluster_count (cluster/driver.h) are in the gleam
-- executable only: nil in a plain luajit host.
ffi.cdef [[
int gl_cluster_run(const char *master, uint32_t max_attempts, gl_plan *p, int target, int *cancel,
                   gl_output **out, gl_stats *stats, gl_err *err);
int gl_cluster_count(const char *master, uint32_t max_attempts, gl_plan *p, int target, int *cancel,
                     uint64_t *rows, gl_stats *stats, gl_err *err);
]]
local found = {}
local function getter(name)
  return function()
    if found[name] == nil then
      local ok, f = pcall(function() return ffi.C[name] end)
      found[name] = ok and f or false
    end
    return found[name] or nil
  end
end

return {
  C = C,
  cluster_run = getter("gl_cluster_run"),
  cluster_count = getter("gl_cluster_count"),
  ffi = ffi,
  -- enum values from plan.h
  step = {
    text = 0, rows = 1, range = 2, map = 3, flatmap = 4, filter = 5, select = 6,
    reduce_by_key = 7, reduce = 8, sort_by = 9, top = 10, foreach = 11, local_sort = 12,
    local_top = 13, limit = 14, partition = 15, distinct = 16, group_by_key = 17, join = 18,
    cogroup = 19, union = 20, pipe = 21, pipe_as_args = 22, csv = 23, msgpack = 24, save = 25,
  },
  builtin = { words = 1, sum = 2, count = 3 },
  param = {
    shards = 0, n = 1, from = 2, to = 3, desc = 4, how = 5, header = 6, sep = 7, types = 8,
    skip_bad = 9, format = 10, single = 11, hint_bytes = 12, hint_rows = 13, persist = 14,
  },
  sparam = { cmd = 0, path = 1, types = 2 },
  how = { inner = 0, left = 1, right = 2, outer = 3 },
  format = { tsv = 0, csv = 1, msgpack = 2 },
  key_row = 0xffffffff,
}
