-- gleam: the flow and dataset API.
--
--   local gleam = require "gleam"
--   gleam.flow("words"):text("*.txt"):flatmap(gleam.fn.words)
--     :reduce_by_key(gleam.fn.count):top(10, { by = 2 }):printf("%s\t%d\n"):run()
--
-- Each method adds a step to the flow's plan in the C engine and returns
-- the new dataset; nothing runs until a sink runs (run, collect, count,
-- each). User functions are serialized when the step is added, so a
-- function that cannot travel to a worker is refused at that line.
local ffi = require "ffi"
local core = require "gleam.core"
local codec = require "gleam.codec"
local closure = require "gleam.closure"
local gfn = require "gleam.fn"
local pretty = require "gleam.pretty"

local C = core.C
local STEP, PARAM, BUILTIN, SPARAM, HOW, FORMAT =
  core.step, core.param, core.builtin, core.sparam, core.how, core.format

local gleam = { fn = gfn, version = ffi.string(C.gleam_version()) }
pcall(ffi.cdef, "int getpid(void);")
pcall(ffi.cdef, "int access(const char *path, int mode);")
pcall(ffi.cdef, "char *strerror(int errnum);")

-- Settings the CLI and callers may change before the first run: worker
-- threads (0: one per core), the memory budget (bytes or a size such as
-- "256M"; 0: half of physical memory) and the directory of the on-disk
-- store (nil: a temporary one, removed at exit). progress: nil, or a
-- function called about every quarter second while a job runs with
-- { stage, stages, done, tasks, rows, elapsed } (the stage's tasks done of
-- tasks, rows its finished tasks wrote, seconds since the job began), and
-- once with nil at the end if it was called; it runs inside the engine's
-- wait, so its errors are dropped (or a C gl_progress_fn pointer, called
-- the same way with no Lua in between). cancel: nil, or an
-- `int *` that a driver (the REPL's Ctrl-C) sets non-zero to stop the
-- running job; the run then fails with "cancelled".
gleam.config = { workers = 0, memory = 0, dir = nil, cancel = nil, progress = nil }

local UNITS = { [""] = 1, K = 2 ^ 10, M = 2 ^ 20, G = 2 ^ 30, T = 2 ^ 40 }

-- Bytes in a size: a whole number, or one with a binary unit (K, M, G, T,
-- optionally followed by "B" or "iB"): "256M", "1.5G". Returns nil, message
-- on anything else.
function gleam.parse_size(v)
  if type(v) == "number" then
    if v >= 0 and v == math.floor(v) then return v end
    return nil, "a size must be a whole number of bytes, got " .. tostring(v)
  end
  if type(v) ~= "string" then return nil, "a size must be a number or a string such as 256M, got " .. type(v) end
  local num, unit = v:upper():match("^%s*(%d+%.?%d*)%s*([KMGT]?)I?B?%s*$")
  local n = tonumber(num)
  if not n then return nil, "expected a size such as 256M or 2G, got '" .. v .. "'" end
  return math.floor(n * UNITS[unit])
end

-- Where the user called us from: the first stack frame outside gleam's own
-- modules, as "file:line". Levels would break on tail calls; this does not.
local own_source = debug.getinfo(1, "S").source:match("^@(.*/)[^/]*$") or "\0"

local function caller()
  for level = 2, 50 do
    local info = debug.getinfo(level, "Sl")
    if not info then break end
    local src = info.source
    if info.what ~= "C" and not (src:sub(1, 1) == "@" and src:sub(2, #own_source + 1) == own_source) then
      return info.short_src .. ":" .. (info.currentline or 0)
    end
  end
  return "?"
end

-- Where a step with function f was made: the user's call, or, when a tail
-- call hid it (`return ds:map(f)`), where f is defined.
local function caller_of(f)
  local where = caller()
  if where == "?" and type(f) == "function" then where = closure.where_of(f) end
  return where
end

-- Raises msg at the user's line.
local function usererror(msg)
  error(caller() .. ": " .. msg, 0)
end

local function argerror(method, what, got)
  usererror(string.format("%s: expected %s, got %s", method, what, got))
end

local function check_opts(method, opts)
  if opts ~= nil and type(opts) ~= "table" then argerror(method, "an options table", type(opts)) end
  return opts or {}
end

local function check_count(method, name, v, min)
  if v == nil then return nil end
  if type(v) ~= "number" or v ~= math.floor(v) or v < (min or 0) or v > 2 ^ 53 then
    usererror(string.format("%s: %s must be a whole number >= %d, got %s", method, name, min or 0, tostring(v)))
  end
  return v
end

local function fields_of(method, v, default, repeats)
  if v == nil then return default end
  if type(v) == "number" then v = { v } end
  if type(v) ~= "table" or #v == 0 then
    usererror(method .. ": key fields must be a field number or a list of them")
  end
  local seen = {}
  for _, f in ipairs(v) do
    if type(f) ~= "number" or f < 1 or f ~= math.floor(f) or f > 2 ^ 31 then
      usererror(method .. ": field numbers start at 1, got " .. tostring(f))
    end
    if seen[f] and not repeats then usererror(method .. ": field " .. f .. " is in the key twice") end
    seen[f] = true
  end
  if #v > 16 then usererror(method .. ": at most 16 key fields") end
  return v
end

-- values(v): an iterator (for i, x in gleam.values(v) do) over a group's
-- values, whether group_by_key gave an array or, for a key whose rows did
-- not fit in the memory budget, an iterator that reads them from disk.
function gleam.values(v)
  if ffi.istype("gl_group_values", v) then return v end
  if type(v) ~= "table" then argerror("values", "a group's values (array or iterator)", type(v)) end
  local i, n = 0, codec.array_length(v)
  return function()
    if i >= n then return nil end
    i = i + 1
    return i, v[i]
  end
end

-- Engine --------------------------------------------------------------------

local engine, engine_key

-- The engine for these settings (opts: run's options, over gleam.config);
-- a change of workers, memory or directory makes a new one.
-- The worker count a run with this option would use.
local function worker_count(workers)
  workers = workers or gleam.config.workers or 0
  if workers == 0 then workers = tonumber(C.gl_cores()) end
  return workers
end

local function get_engine(opts)
  local workers = worker_count(opts.workers)
  local memory, why = gleam.parse_size(opts.memory or gleam.config.memory or 0)
  if not memory then usererror("memory: " .. why) end
  local dir = opts.dir or gleam.config.dir
  if dir ~= nil and type(dir) ~= "string" then argerror("run", "dir (a path)", type(dir)) end
  local key = string.format("%d/%d/%s", workers, memory, dir or "")
  if engine and engine_key == key then return engine end
  if engine then
    -- Detach the finalizer first: the engine is freed once, here.
    C.gl_engine_free(ffi.gc(engine, nil))
    engine = nil
  end
  local err = ffi.new("gl_err")
  local e = C.gl_engine_new(workers, memory, dir, package.path, package.cpath, err)
  if e == nil then error(ffi.string(err.msg), 0) end
  engine = ffi.gc(e, C.gl_engine_free)
  engine_key = key
  return engine
end

-- Flow ----------------------------------------------------------------------

local Flow = {}
Flow.__index = Flow
local Dataset = {}
Dataset.__index = Dataset

-- Returns a new, empty flow.
function gleam.flow(name)
  if name ~= nil and type(name) ~= "string" then argerror("flow", "a name (string)", type(name)) end
  local plan = C.gl_plan_new()
  if plan == nil then usererror("flow: out of memory") end
  return setmetatable({ name = name or "flow", plan = ffi.gc(plan, C.gl_plan_free) }, Flow)
end

local function add_step(flow, kind, input, name, where)
  local id = C.gl_plan_step(flow.plan, kind, input, name, where)
  if id < 0 then usererror(name .. ": cannot add step (code " .. id .. ")") end
  return setmetatable({ flow = flow, id = id, step = name, where = where }, Dataset)
end

local function set_key(ds, fields)
  C.gl_plan_set_key(ds.flow.plan, ds.id, ffi.new("uint32_t[?]", #fields, fields), #fields)
end

local function set_shards(ds, method, opts)
  local n = check_count(method, "shards", opts.shards, 1)
  if n then C.gl_plan_set_int(ds.flow.plan, ds.id, PARAM.shards, n) end
end

-- text(paths, {shards}): one row (line) per line of the files; paths is a
-- file name, a glob, or a list of them.
function Flow:text(paths, opts)
  if type(paths) == "string" then paths = { paths } end
  if type(paths) ~= "table" or #paths == 0 then argerror("text", "a path, a glob or a list of them", type(paths)) end
  opts = check_opts("text", opts)
  local ds = add_step(self, STEP.text, -1, "text", caller())
  for _, p in ipairs(paths) do
    if type(p) ~= "string" then argerror("text", "path strings", type(p)) end
    C.gl_plan_add_path(self.plan, ds.id, p)
  end
  set_shards(ds, "text", opts)
  return ds
end

-- rows(list, {shards}): rows from the driver; each item is a row table
-- (fields 1..n, n = t.n or #t) or a single value.
function Flow:rows(list, opts)
  if type(list) ~= "table" then argerror("rows", "a table of rows", type(list)) end
  opts = check_opts("rows", opts)
  local ds = add_step(self, STEP.rows, -1, "rows", caller())
  local buf = codec.new_buf()
  local enc = codec.encoder(buf)
  enc.begin()
  local n = list.n or #list
  for i = 1, n do
    local r = list[i]
    if type(r) == "table" and getmetatable(r) == nil then
      enc.row(r.n or #r, unpack(r, 1, r.n or #r))
    else
      enc.row(1, r)
    end
  end
  enc.commit()
  if C.gl_plan_add_rows(self.plan, ds.id, buf.data, buf.len, n) ~= 0 then
    usererror("rows: cannot store the rows")
  end
  set_shards(ds, "rows", opts)
  return ds
end

-- range(n) is 1..n; range(a, b) is a..b; one row (i) each.
function Flow:range(a, b, opts)
  if type(b) == "table" then opts, b = b, nil end
  if b == nil then a, b = 1, a end
  check_count("range", "a bound", a, -2 ^ 53)
  check_count("range", "a bound", b, -2 ^ 53)
  opts = check_opts("range", opts)
  local ds = add_step(self, STEP.range, -1, "range", caller())
  C.gl_plan_set_int(self.plan, ds.id, PARAM.from, a)
  C.gl_plan_set_int(self.plan, ds.id, PARAM.to, b)
  set_shards(ds, "range", opts)
  return ds
end

local function add_paths(ds, method, paths)
  if type(paths) == "string" then paths = { paths } end
  if type(paths) ~= "table" or #paths == 0 then argerror(method, "a path, a glob or a list of them", type(paths)) end
  for _, p in ipairs(paths) do
    if type(p) ~= "string" then argerror(method, "path strings", type(p)) end
    C.gl_plan_add_path(ds.flow.plan, ds.id, p)
  end
end

local COLTYPE = { string = "s", integer = "i", number = "n", auto = "a" }

local function csv_source(flow, method, paths, opts, sep)
  opts = check_opts(method, opts)
  local ds = add_step(flow, STEP.csv, -1, method, caller())
  add_paths(ds, method, paths)
  local plan, id = flow.plan, ds.id
  sep = opts.sep or sep
  if type(sep) ~= "string" or #sep ~= 1 or sep == '"' or sep == "\n" or sep == "\r" then
    usererror(method .. ": sep must be one character other than a quote or a newline")
  end
  C.gl_plan_set_int(plan, id, PARAM.sep, sep:byte())
  C.gl_plan_set_int(plan, id, PARAM.header, opts.header and 1 or 0)
  local types = opts.types
  if type(types) == "table" then
    -- One declared type per column; columns past the list are strings.
    local letters = {}
    for i, t in ipairs(types) do
      letters[i] = COLTYPE[t]
      if not letters[i] then
        usererror(method .. ': types[' .. i .. '] must be "string", "integer", "number" or "auto"')
      end
    end
    C.gl_plan_set_str(plan, id, SPARAM.types, table.concat(letters))
  elseif types ~= nil and types ~= "auto" and types ~= "string" then
    usererror(method .. ': types must be "auto", "string" or a list of column types')
  end
  C.gl_plan_set_int(plan, id, PARAM.types, types == "auto" and 1 or 0)
  if opts.on_error ~= nil and opts.on_error ~= "skip" and opts.on_error ~= "fail" then
    usererror(method .. ": on_error must be \"skip\" or \"fail\"")
  end
  C.gl_plan_set_int(plan, id, PARAM.skip_bad, opts.on_error == "skip" and 1 or 0)
  set_shards(ds, method, opts)
  return ds
end

-- csv(paths, {header, sep, types, on_error, shards}): one row per record
-- (RFC 4180 quoting); fields are strings, or numbers where they look like
-- numbers with types = "auto", or as declared per column with types =
-- {"string", "integer", "number", "auto", ...}. A malformed line fails the run naming file
-- and line, or is skipped and counted with on_error = "skip".
function Flow:csv(paths, opts) return csv_source(self, "csv", paths, opts, ",") end

-- tsv(paths, opts): csv with a tab separator.
function Flow:tsv(paths, opts) return csv_source(self, "tsv", paths, opts, "\t") end

-- msgpack(paths): rows as save{format = "msgpack"} wrote them.
function Flow:msgpack(paths, opts)
  opts = check_opts("msgpack", opts)
  local ds = add_step(self, STEP.msgpack, -1, "msgpack", caller())
  add_paths(ds, "msgpack", paths)
  set_shards(ds, "msgpack", opts)
  return ds
end

-- sort_by and local_sort: (fields, {desc}) or ({desc}).
local function sort_step(self, kind, method, fields, opts)
  if type(fields) == "table" and fields[1] == nil and opts == nil then fields, opts = nil, fields end
  opts = check_opts(method, opts)
  fields = fields_of(method, fields, { 1 })
  local ds = add_step(self.flow, kind, self.id, method, caller())
  set_key(ds, fields)
  C.gl_plan_set_int(self.flow.plan, ds.id, PARAM.desc, opts.desc and 1 or 0)
  return ds, opts
end

-- top and local_top: (n, {by, desc}), largest first unless desc = false.
local function top_step(self, kind, method, n, opts)
  if type(n) ~= "number" then argerror(method, "a row count (number)", type(n)) end
  check_count(method, "n", n, 0)
  opts = check_opts(method, opts)
  local ds = add_step(self.flow, kind, self.id, method, caller())
  set_key(ds, fields_of(method, opts.by, { 1 }))
  C.gl_plan_set_int(self.flow.plan, ds.id, PARAM.n, n)
  C.gl_plan_set_int(self.flow.plan, ds.id, PARAM.desc, opts.desc == false and 0 or 1)
  return ds
end

-- Narrow steps ---------------------------------------------------------------

-- A built-in is recorded by name: the planner runs it in C where it can
-- (words in flatmap, sum and count as combiners) and as its Lua version
-- elsewhere. A Lua function is serialized now, so one that cannot travel
-- is refused at the user's line.
local function set_fn(ds, method, f)
  if gfn.is_builtin(f) and f.cfn then
    local want = (method == "reduce_by_key" or method == "reduce") and "reducer" or "mapper"
    if f.cfn ~= want then
      error(string.format("%s: gleam.fn.%s is a %s, not a %s", method, f.builtin, f.cfn, want), 0)
    end
    C.gl_plan_set_cfn(ds.flow.plan, ds.id, f.builtin)
    return
  end
  if gfn.is_builtin(f) then
    C.gl_plan_set_builtin(ds.flow.plan, ds.id, BUILTIN[f.builtin])
    return
  end
  local bytes = closure.dump(f, method)
  C.gl_plan_set_fn(ds.flow.plan, ds.id, bytes, #bytes)
end

local function check_fn(method, f)
  if type(f) ~= "function" and not gfn.is_builtin(f) then
    argerror(method, "a function", type(f))
  end
end

local function narrow(self, kind, method, f)
  check_fn(method, f)
  local ds = add_step(self.flow, kind, self.id, method, caller_of(f))
  local ok, err = pcall(set_fn, ds, method, f)
  if not ok then usererror(err) end
  return ds
end

-- map(f): f(fields...) returns the new row's fields.
function Dataset:map(f)
  local ds = narrow(self, STEP.map, "map", f)
  return ds -- not a tail call: narrow() finds the user's line by stack level
end

-- flatmap(f): f returns an iterator (like gmatch) or an array; each item is
-- one row, a table item giving the fields.
function Dataset:flatmap(f)
  local ds = narrow(self, STEP.flatmap, "flatmap", f)
  return ds
end

-- filter(f): keeps the rows for which f(fields...) is true.
function Dataset:filter(f)
  local ds = narrow(self, STEP.filter, "filter", f)
  return ds
end

-- select(i, j, ...) or select{i, j, ...}: the fields at those positions.
function Dataset:select(...)
  local fields = select("#", ...) == 1 and type((...)) == "table" and (...) or { ... }
  fields = fields_of("select", fields, nil, true)
  local ds = add_step(self.flow, STEP.select, self.id, "select", caller())
  C.gl_plan_set_key(self.flow.plan, ds.id, ffi.new("uint32_t[?]", #fields, fields), #fields)
  return ds
end

-- foreach(f): calls f(fields...) on the workers for its side effects; the
-- rows pass on unchanged.
function Dataset:foreach(f)
  local ds = narrow(self, STEP.foreach, "foreach", f)
  return ds
end

local function pipe_step(self, kind, method, cmd)
  if type(cmd) ~= "string" or cmd == "" then argerror(method, "a shell command (string)", type(cmd)) end
  local ds = add_step(self.flow, kind, self.id, method, caller())
  C.gl_plan_set_str(self.flow.plan, ds.id, SPARAM.cmd, cmd)
  return ds
end

-- pipe(cmd): each row goes to `sh -c cmd` as one tab-separated line, and
-- each line it prints comes back as a row of string fields (split on
-- tabs); one process per shard. Tab, newline, carriage return and
-- backslash inside a field travel as \t, \n, \r and \\ both ways.
function Dataset:pipe(cmd) return pipe_step(self, STEP.pipe, "pipe", cmd) end

-- pipe_as_args(cmd): for each row, runs cmd with $1, $2, ... replaced by
-- the row's fields (shell-quoted); each line it prints is a row.
function Dataset:pipe_as_args(cmd) return pipe_step(self, STEP.pipe_as_args, "pipe_as_args", cmd) end

-- local_sort(fields, {desc}): sorts each shard on its own.
function Dataset:local_sort(fields, opts)
  local ds = sort_step(self, STEP.local_sort, "local_sort", fields, opts)
  return ds -- not a tail call (caller() walks the stack)
end

-- local_top(n, {by, desc}): the top n rows of each shard.
function Dataset:local_top(n, opts)
  local ds = top_step(self, STEP.local_top, "local_top", n, opts)
  return ds
end

-- limit(n): the first n rows, in shard order.
function Dataset:limit(n)
  if type(n) ~= "number" then argerror("limit", "a row count (number)", type(n)) end
  check_count("limit", "n", n, 0)
  local ds = add_step(self.flow, STEP.limit, self.id, "limit", caller())
  C.gl_plan_set_int(self.flow.plan, ds.id, PARAM.n, n)
  return ds
end

-- hint{bytes, rows}: the expected size of this dataset, for planning (a
-- join broadcasts a side hinted under 64 MB).
function Dataset:hint(h)
  if type(h) ~= "table" then argerror("hint", "a table {bytes = ..., rows = ...}", type(h)) end
  local bytes = check_count("hint", "bytes", h.bytes, 0)
  local rows = check_count("hint", "rows", h.rows, 0)
  if bytes then C.gl_plan_set_int(self.flow.plan, self.id, PARAM.hint_bytes, bytes) end
  if rows then C.gl_plan_set_int(self.flow.plan, self.id, PARAM.hint_rows, rows) end
  return self
end

-- cache(): the first run that computes this dataset keeps its shards (in
-- memory within the budget, else in LMDB; a cluster run leaves them on the
-- agents, cluster/driver.c) and later runs of this flow in the same
-- process read them instead of computing it again. on_disk(): its
-- shards are written to LMDB and synced to the disk when computed, instead
-- of being held in memory. Both return the dataset; uncache() drops the
-- kept shards (and the mark).
local function persist(ds, cache, disk)
  local marks = ds.flow.persist or {}
  ds.flow.persist = marks
  local m = marks[ds.id] or { cache = false, disk = false }
  if cache ~= nil then m.cache = cache end
  if disk ~= nil then m.disk = disk end
  marks[ds.id] = m
  local v = (m.cache and 1 or 0) + (m.disk and 2 or 0)
  local rc = C.gl_plan_set_int(ds.flow.plan, ds.id, PARAM.persist, v)
  if rc ~= 0 then usererror("cache: cannot mark dataset (code " .. rc .. ")") end
  return ds
end

function Dataset:cache() return persist(self, true, nil) end
function Dataset:uncache() return persist(self, false, nil) end
function Dataset:on_disk() return persist(self, nil, true) end

-- Wide steps -----------------------------------------------------------------

-- reduce_by_key(f, {key, shards}): for rows (key, v1..vn), f(a1..an,
-- b1..bn) returns the n combined values. Rows out: key fields, then values.
function Dataset:reduce_by_key(f, opts)
  check_fn("reduce_by_key", f)
  opts = check_opts("reduce_by_key", opts)
  local key = fields_of("reduce_by_key", opts.key, { 1 })
  local ds = add_step(self.flow, STEP.reduce_by_key, self.id, "reduce_by_key", caller_of(f))
  local ok, err = pcall(set_fn, ds, "reduce_by_key", f)
  if not ok then usererror(err) end
  set_key(ds, key)
  set_shards(ds, "reduce_by_key", opts)
  return ds
end

-- reduce(f): all rows combined into one, as reduce_by_key with no key.
function Dataset:reduce(f)
  check_fn("reduce", f)
  local ds = add_step(self.flow, STEP.reduce, self.id, "reduce", caller_of(f))
  local ok, err = pcall(set_fn, ds, "reduce", f)
  if not ok then usererror(err) end
  return ds
end

-- sort_by(fields, {desc, shards}): one order over all shards.
function Dataset:sort_by(fields, opts)
  local ds, o = sort_step(self, STEP.sort_by, "sort_by", fields, opts)
  set_shards(ds, "sort_by", o)
  return ds
end

-- top(n, {by, desc}): the n rows with the largest field `by` (smallest
-- with desc = false), in order.
function Dataset:top(n, opts)
  local ds = top_step(self, STEP.top, "top", n, opts)
  return ds
end

-- partition(n, {key}): n shards by the hash of the key.
function Dataset:partition(n, opts)
  if type(n) ~= "number" then argerror("partition", "a shard count (number)", type(n)) end
  check_count("partition", "n", n, 1)
  opts = check_opts("partition", opts)
  local ds = add_step(self.flow, STEP.partition, self.id, "partition", caller())
  set_key(ds, fields_of("partition", opts.key, { 1 }))
  C.gl_plan_set_int(self.flow.plan, ds.id, PARAM.shards, n)
  return ds
end

-- distinct({key, shards}): the first row of each key (default: the whole
-- row), in no particular order.
function Dataset:distinct(opts)
  opts = check_opts("distinct", opts)
  local ds = add_step(self.flow, STEP.distinct, self.id, "distinct", caller())
  if opts.key then
    set_key(ds, fields_of("distinct", opts.key))
  else
    C.gl_plan_set_key(self.flow.plan, ds.id, nil, core.key_row)
  end
  set_shards(ds, "distinct", opts)
  return ds
end

-- group_by_key({key, shards}): one row per key: the key fields, then an
-- array with the rest of each of its rows (a rest of one field is that
-- value, of several an array of them).
function Dataset:group_by_key(opts)
  opts = check_opts("group_by_key", opts)
  local ds = add_step(self.flow, STEP.group_by_key, self.id, "group_by_key", caller())
  set_key(ds, fields_of("group_by_key", opts.key, { 1 }))
  set_shards(ds, "group_by_key", opts)
  return ds
end

local function check_dataset(method, other)
  if getmetatable(other) ~= Dataset then argerror(method, "a dataset", type(other)) end
  return other
end

local function two_inputs(self, other, kind, method, opts)
  check_dataset(method, other)
  opts = check_opts(method, opts)
  local ds = add_step(self.flow, kind, self.id, method, caller())
  if other.flow ~= self.flow then
    usererror(method .. ": both datasets must belong to the same flow")
  end
  C.gl_plan_add_input(self.flow.plan, ds.id, other.id)
  set_key(ds, fields_of(method, opts.key, { 1 }))
  set_shards(ds, method, opts)
  return ds, opts
end

-- join(other, {how, key, shards}): rows with equal keys meet: the key
-- fields, then the left row's other fields, then the right row's; a
-- missing side (left, right, outer) gives nils. how: "inner" (default),
-- "left", "right", "outer".
function Dataset:join(other, opts)
  local ds, o = two_inputs(self, other, STEP.join, "join", opts)
  local how = o.how or "inner"
  if HOW[how] == nil then usererror('join: how must be "inner", "left", "right" or "outer"') end
  C.gl_plan_set_int(self.flow.plan, ds.id, PARAM.how, HOW[how])
  return ds
end

-- cogroup(other, {key, shards}): one row per key: the key fields, then an
-- array of the left rows' rests, then an array of the right rows' rests.
function Dataset:cogroup(other, opts)
  local ds = two_inputs(self, other, STEP.cogroup, "cogroup", opts)
  return ds
end

-- union(other, ...): the rows of all, shard lists one after another (no shuffle).
function Dataset:union(...)
  local ds = add_step(self.flow, STEP.union, self.id, "union", caller())
  local n = select("#", ...)
  if n == 0 then argerror("union", "one or more datasets", "none") end
  for i = 1, n do
    local other = check_dataset("union", (select(i, ...)))
    if other.flow ~= self.flow then usererror("union: all datasets must belong to the same flow") end
    if C.gl_plan_add_input(self.flow.plan, ds.id, other.id) ~= 0 then
      usererror("union: too many inputs")
    end
  end
  return ds
end

-- Running and sinks -----------------------------------------------------------

-- The engine calls back into Lua for progress from inside gl_engine_run:
-- one C callback for the process, forwarding to gleam.config.progress.
local progress_cb

local function set_progress(e)
  local fn = gleam.config.progress
  if type(fn) == "cdata" then
    C.gl_engine_set_progress(e, ffi.cast("gl_progress_fn", fn), 250)
    return
  end
  if type(fn) ~= "function" then
    C.gl_engine_set_progress(e, nil, 0)
    return
  end
  -- An error must not leave a callback (LuaJIT cannot unwind through the
  -- C frames): it is dropped, and a Ctrl-C still stops the job through
  -- the cancel flag.
  progress_cb = progress_cb or ffi.cast("gl_progress_fn", function(p)
    local f = gleam.config.progress
    if type(f) ~= "function" then return end
    if p == nil then
      pcall(f, nil)
    else
      pcall(f, { stage = p.stage, stages = p.stages, done = p.done, tasks = p.tasks, rows = tonumber(p.rows),
                 elapsed = p.elapsed })
    end
  end)
  C.gl_engine_set_progress(e, progress_cb, 250)
end

-- Runs the flow up to this dataset; returns the output (a gl_output*).
-- With count on a cluster, returns nil and the number of rows instead:
-- the executors count them and no row moves to the driver.
local function execute(ds, opts, count)
  opts = opts or {}
  local master = opts.master or gleam.config.master
  local out = ffi.new("gl_output *[1]")
  local err = ffi.new("gl_err")
  local stats = ffi.new("gl_stats")
  local rc, rows
  if master then
    if type(master) ~= "string" then argerror("run", "master (\"host:port\")", type(master)) end
    local run = count and core.cluster_count() or core.cluster_run()
    if not run then usererror("run: cluster mode (master) needs the gleam executable (gleam run --master)") end
    local attempts = check_count("run", "max_attempts", opts.max_attempts or gleam.config.max_attempts, 1) or 0
    rows = count and ffi.new("uint64_t[1]")
    rc = run(master, attempts, ds.flow.plan, ds.id, gleam.config.cancel, rows or out, stats, err)
  else
    local e = get_engine(opts)
    set_progress(e)
    rc = C.gl_engine_run(e, ds.flow.plan, ds.id, gleam.config.cancel, out, stats, err)
  end
  if rc ~= 0 then error(ffi.string(err.msg), 0) end
  if stats.skipped > 0 then
    io.stderr:write(string.format("gleam: warning: skipped %d malformed input lines\n", tonumber(stats.skipped)))
  end
  if rows then return nil, tonumber(rows[0]) end
  return ffi.gc(out[0], C.gl_output_free), stats
end
-- The progress callback enters Lua from inside gl_engine_run, which LuaJIT
-- allows only when the calling function is not compiled.
jit.off(execute)

-- Calls fn(row) for each row of the output, in shard order. fast, if
-- given, is fast(chunk, off) -> rows done, new off: it handles rows in
-- place from byte off, and fn gets the rows it leaves.
local function each_row(out, fn, fast)
  for part = 0, out.nparts - 1 do
    local rd = C.gl_reader_new(out, part)
    if rd == nil then error("gleam: out of memory", 0) end
    rd = ffi.gc(rd, C.gl_reader_free)
    while true do
      local c = C.gl_reader_next(rd)
      if c == nil then break end
      local p, i = c.data, 0
      local left = tonumber(c.nrows)
      while left > 0 do
        if fast then
          local done
          done, i = fast(c, i, left)
          left = left - done
        end
        if left > 0 then
          local r
          r, i = codec.row_at(p, i)
          fn(r)
          left = left - 1
        end
      end
    end
    local msg = C.gl_reader_error(rd)
    C.gl_reader_free(ffi.gc(rd, nil))
    if msg ~= nil then error(ffi.string(msg), 0) end
  end
end

local pending = {}

-- A dataset with a driver-side action, run by :run().
local function with_action(ds, action, what, fast)
  local d = setmetatable({ flow = ds.flow, id = ds.id, step = what, where = caller(), action = action,
    fast = fast }, Dataset)
  pending[d] = true
  return d
end

-- Runs the flow; a printf/each/foreach sink added before does its work.
function Dataset:run(opts)
  check_opts("run", opts)
  pending[self] = nil
  local out = execute(self, opts)
  local action = self.action
  if action then
    each_row(out, function(r)
      local ok, err = pcall(action, r)
      if not ok then
        error(string.format("%s (%s): %s; row %s", self.step, self.where, tostring(err), codec.show_row(r)), 0)
      end
    end, self.fast)
  end
  return self
end

-- The conversion letter of each argument of a format, in order.
local function conversions(fmt)
  local list = {}
  for flags, conv in fmt:gmatch("%%([-+ #0]*%d*%.?%d*)([%a%%])") do
    if conv ~= "%" then list[#list + 1] = conv end
  end
  return list
end

-- printf(fmt): each row's fields formatted with fmt on stdout (at :run()).
-- An int64 field prints as its digits under %s, as under %d.
function Dataset:printf(fmt)
  if type(fmt) ~= "string" then argerror("printf", "a format string", type(fmt)) end
  local format, stdout, is_int64 = string.format, io.stdout, codec.is_int64
  local convs = conversions(fmt)
  local args = {}
  -- Text, %s, %d and %% only: rows go through gl_printf_rows in C.
  local simple = not fmt:gsub("%%%%", ""):find("%%[^sd]") and not fmt:find("%z")
  local fast
  if simple then
    local off = ffi.new("size_t[1]")
    fast = function(c, i, left)
      off[0] = i
      local done = tonumber(C.gl_printf_rows(fmt, c.data, c.len, left, off))
      if done < 0 then error("printf: cannot write to stdout: " .. ffi.string(C.strerror(ffi.errno())), 0) end
      return done, tonumber(off[0])
    end
  end
  return with_action(self, function(r)
    if #convs > r.n then
      error(string.format("the format takes %d fields, the row has %d", #convs, r.n), 0)
    end
    for k = 1, r.n do
      local v = r[k]
      if convs[k] == "s" and type(v) == "cdata" and is_int64(v) then
        v = tostring(v):match("^(%-?%d+)")
      end
      args[k] = v
    end
    stdout:write(format(fmt, unpack(args, 1, r.n)))
  end, "printf", fast)
end

-- each(fn): fn(fields...) on the driver for each row, at :run().
function Dataset:each(fn)
  if type(fn) ~= "function" then argerror("each", "a function", type(fn)) end
  return with_action(self, function(r) fn(unpack(r, 1, r.n)) end, "each")
end

-- collect(): the rows, as a list of row tables { f1, ..., n = count }.
function Dataset:collect(opts)
  check_opts("collect", opts)
  local rows = {}
  local out = execute(self, opts)
  each_row(out, function(r) rows[#rows + 1] = r end)
  return rows
end

-- count(): the number of rows.
function Dataset:count(opts)
  check_opts("count", opts)
  local out, rows = execute(self, opts, true)
  return out and tonumber(C.gl_output_rows(out)) or rows
end

-- For the C API (api.c): runs a dataset and hands its output over as an
-- address (the caller frees it); anything else gives nil.
function gleam._output(v)
  if getmetatable(v) ~= Dataset then return nil end
  local out = execute(v)
  ffi.gc(out, nil)
  return tonumber(ffi.cast("uintptr_t", out))
end

-- Sinks that were made but never run, for the CLI to warn about.
function gleam.unrun()
  local list = {}
  for d in pairs(pending) do list[#list + 1] = d.step .. " at " .. d.where end
  table.sort(list)
  return list
end

-- save(path, {format, single, overwrite}): writes the rows under
-- directory `path` as one file per shard (part-00000.tsv, ...), or as the
-- one file `path` with single = true. format: "tsv" (default), "csv",
-- "msgpack" (read back exactly by flow:msgpack). Files are written under a
-- temporary name and moved into place only when the whole run succeeded.
-- Runs now; returns the path.
function Dataset:save(path, opts)
  if type(path) ~= "string" or path == "" then argerror("save", "a path (string)", type(path)) end
  opts = check_opts("save", opts)
  local format = opts.format or "tsv"
  if FORMAT[format] == nil then usererror('save: format must be "tsv", "csv" or "msgpack"') end
  path = path:gsub("/+$", "")
  local exists = ffi.C.access(path, 0) == 0
  if exists then
    if not opts.overwrite then usererror("save: '" .. path .. "' exists (use overwrite = true)") end
  end
  local tmp = string.format("%s.gleam-tmp-%d-%d", path, ffi.C.getpid(), os.time())
  local ds = add_step(self.flow, STEP.save, self.id, "save", caller())
  local plan = self.flow.plan
  C.gl_plan_set_str(plan, ds.id, SPARAM.path, tmp)
  C.gl_plan_set_int(plan, ds.id, PARAM.format, FORMAT[format])
  C.gl_plan_set_int(plan, ds.id, PARAM.single, opts.single and 1 or 0)
  local err = ffi.new("gl_err")
  local ok, msg = pcall(execute, ds, { workers = opts.workers })
  if not ok then
    C.gl_save_remove(tmp, err)
    error(msg, 0)
  end
  if exists and C.gl_save_remove(path, err) ~= 0 then
    C.gl_save_remove(tmp, err)
    usererror("save: " .. ffi.string(err.msg))
  end
  local renamed, rerr = os.rename(tmp, path)
  if not renamed then
    C.gl_save_remove(tmp, err)
    usererror("save: cannot move the output into place: " .. tostring(rerr))
  end
  return path
end

-- explain(): how this dataset would be computed, as text: its stages, what
-- each reads, the steps it runs (with the lines that made them) and its
-- shard counts. Plans without running (text sources are globbed, so a
-- missing input is an error here too).
function Dataset:explain(opts)
  opts = check_opts("explain", opts)
  local buf = ffi.new("gl_buf")
  local err = ffi.new("gl_err")
  local rc = C.gl_plan_explain(self.flow.plan, self.id, worker_count(opts.workers), buf, err)
  local text = rc == 0 and ffi.string(buf.data, buf.len) or nil
  C.gl_buf_free(buf)
  if rc ~= 0 then usererror("explain: " .. ffi.string(err.msg)) end
  return text
end

-- show(n): prints the first n rows (default 20) on stdout as an aligned
-- table, running the flow only up to a limit(n) of this dataset.
function Dataset:show(n, opts)
  n = n or 20
  if type(n) ~= "number" then argerror("show", "a row count (number)", type(n)) end
  check_count("show", "n", n, 0)
  local rows = self:limit(n):collect(opts)
  io.stdout:write(pretty.rows(rows, n))
end

-- True for a dataset (what flow and dataset methods return).
function gleam.is_dataset(v)
  return getmetatable(v) == Dataset
end

function Dataset:__tostring()
  return string.format("gleam dataset %d (%s at %s)", self.id, self.step, self.where)
end

return gleam
