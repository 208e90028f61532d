-- gleam.repl: the REPL's evaluator, printer and completer. The line
-- editing loop is C (cli/lineedit.c, over libedit); it hands each line to
-- session:feed and asks session:complete for tab completion. The
-- non-interactive modes (`gleam repl -e CHUNK`, `gleam repl < FILE`) feed
-- the same session from gleam.cli.
--
-- Variables persist from one input to the next, and as locals, not
-- globals: every name the session knows is declared as a local at the top
-- of each input's chunk, and its value read back when the input is done.
-- So a function typed at the prompt holds `n` or `ds` as an upvalue, which
-- travels to the workers by value, as a local of a job file does (a global
-- would be nil there). A top-level `local` statement of an input is made
-- an assignment to a session variable (gleam.toplocal), so `local ds =
-- f:text(...)` keeps ds for later lines.
local ffi = require "ffi"
local gleam = require "gleam"
local core = require "gleam.core"
local pretty = require "gleam.pretty"
local toplocal = require "gleam.toplocal"

local M = {}

-- LuaJIT allows 200 locals per function: the most recent names are locals,
-- older ones stay reachable through the chunk's environment.
local MAX_LOCALS = 180
-- And 60 upvalues: values are read back by getters of this many each.
local GETTER_SIZE = 50

-- The chunk's name for its helper that packs an expression's values.
local PACK = "__gleam_repl_pack"

local KEYWORDS = {}
for w in ([[and break do else elseif end false for function goto if in local nil
  not or repeat return then true until while]]):gmatch("%a+") do KEYWORDS[w] = true end

local function is_name(k)
  return type(k) == "string" and k:match("^[%a_][%w_]*$") ~= nil and not KEYWORDS[k]
end

-- One line each, for .help; spec/repl_spec.lua checks that every method
-- of a flow and of a dataset is here.
M.HELP_COMMANDS = {
  { ".help", "this list" },
  { ".exit", "leave the REPL (Ctrl-D does too)" },
  { "Ctrl-C", "cancel the running job (twice: leave), or clear the line" },
  { "Tab", "complete a name, a table field (a.b.) or a method (ds:)" },
}
M.HELP_FLOW = {
  { "text(paths, {shards})", "a row per line of the files (.gz too)" },
  { "csv(paths, {header, ...})", "a row per CSV record" },
  { "tsv(paths, {header, ...})", "a row per TSV record" },
  { "msgpack(paths)", "the rows save{format = \"msgpack\"} wrote" },
  { "rows(list, {shards})", "rows from a Lua table" },
  { "range(n) or (a, b)", "the integers 1..n or a..b" },
}
M.HELP_DATASET = {
  { "map(fn)", "fn(fields...) returns the new row" },
  { "flatmap(fn)", "fn returns an iterator or array of rows" },
  { "filter(fn)", "the rows for which fn(fields...) is true" },
  { "select(i, j, ...)", "the fields at those positions" },
  { "foreach(fn)", "fn(fields...) on the workers, rows unchanged" },
  { "pipe(cmd)", "rows as lines through a shell command" },
  { "pipe_as_args(cmd)", "cmd once per row, fields as $1, $2, ..." },
  { "local_sort(fields, {desc})", "sorts each shard on its own" },
  { "local_top(n, {by, desc})", "the top n rows of each shard" },
  { "limit(n)", "the first n rows, in shard order" },
  { "hint{bytes, rows}", "the expected size, for planning" },
  { "cache()", "keep the shards for later lines, on agents too" },
  { "uncache()", "drop the kept shards" },
  { "on_disk()", "write the shards to LMDB on disk, synced" },
  { "reduce_by_key(fn, {key})", "combines the values of each key" },
  { "reduce(fn)", "all rows combined into one" },
  { "sort_by(fields, {desc})", "one order across all shards" },
  { "top(n, {by, desc})", "the n rows with the largest field by" },
  { "partition(n, {key})", "n shards by the hash of the key" },
  { "distinct({key})", "the first row of each key" },
  { "group_by_key({key})", "the key, then the rest of its rows" },
  { "join(other, {how, key})", "rows with equal keys meet" },
  { "cogroup(other, {key})", "the key, the left rows, the right rows" },
  { "union(other, ...)", "the rows of all, shards in turn" },
  { "printf(fmt)", "each row printed with fmt, at :run()" },
  { "each(fn)", "fn(fields...) on the driver, at :run()" },
  { "run()", "runs a printf or each sink" },
  { "save(path, {format, ...})", "writes the rows as tsv, csv or msgpack" },
  { "collect()", "runs; the rows as a list of row tables" },
  { "count()", "runs; the number of rows" },
  { "show(n)", "runs; prints the first n rows as a table" },
  { "explain()", "the plan (stages, shards), without running" },
}

local function help_text()
  local out = { "commands:" }
  local function section(list, prefix)
    local w = 0
    for _, e in ipairs(list) do w = math.max(w, #prefix + #e[1]) end
    for _, e in ipairs(list) do
      out[#out + 1] = string.format("  %-" .. w .. "s  %s", prefix .. e[1], e[2])
    end
  end
  section(M.HELP_COMMANDS, "")
  out[#out + 1] = "sources (f is a flow; gleam.flow(name) makes another):"
  section(M.HELP_FLOW, "f:")
  out[#out + 1] = "dataset methods (nothing runs until collect, count, show, save or run):"
  section(M.HELP_DATASET, "ds:")
  out[#out + 1] = "An expression's value is printed; a dataset's value is its plan."
  return table.concat(out, "\n") .. "\n"
end
M.help_text = help_text

local Session = {}
Session.__index = Session

-- Returns a new session: `gleam` and a flow `f` are there already.
-- opts: out, err (files; default io.stdout, io.stderr), chunkname.
function M.session(opts)
  opts = opts or {}
  local s = setmetatable({
    vars = {}, order = {}, known = {},
    out = opts.out or io.stdout, err = opts.err or io.stderr,
    chunkname = opts.chunkname or "stdin",
    pending = nil, pending_line = 1, line = 0,
  }, Session)
  local vars = s.vars
  s.env = setmetatable({}, {
    __index = function(_, k)
      local v = vars[k]
      if v ~= nil then return v end
      return _G[k]
    end,
    __newindex = function(_, k, v) s:set(k, v) end,
  })
  s:set("gleam", gleam)
  s:set("f", gleam.flow("repl"))
  return s
end

-- Sets session variable k.
function Session:set(k, v)
  if not self.known[k] and is_name(k) then
    self.known[k] = true
    self.order[#self.order + 1] = k
  end
  self.vars[k] = v
end

-- The worker count jobs of this session run on.
function M.workers()
  local w = gleam.config.workers or 0
  if w == 0 then w = tonumber(core.C.gl_cores()) end
  return w
end

-- The agents of the master at addr, from `gleam status` run by this very
-- executable: their count and cores, or nil and the one-line error.
local function cluster_size(addr)
  pcall(ffi.cdef, "long readlink(const char *path, char *buf, size_t size);")
  local buf = ffi.new("char[4096]")
  local n = tonumber(ffi.C.readlink("/proc/self/exe", buf, 4095))
  if n <= 0 then return nil, "cannot find the gleam executable" end
  local q = function(s) return "'" .. s:gsub("'", "'\\''") .. "'" end
  local p = io.popen(q(ffi.string(buf, n)) .. " status --master " .. q(addr) .. " 2>&1; echo \"[exit $?]\"")
  local out = p:read("*a")
  p:close()
  local body, code = out:match("^(.*)%[exit (%d+)%]\n$")
  if code ~= "0" then return nil, ((body or out):gsub("^gleam[%w ]*: ", ""):gsub("\n.*", "")) end
  local agents, cores = 0, 0
  for line in body:gmatch("[^\n]+") do
    local c = line:match("^%S+\t(%d+)\t")
    if c then
      agents, cores = agents + 1, cores + tonumber(c)
    end
  end
  return agents, cores
end

-- The first lines of a session; nil and a message when the cluster named
-- by --master cannot be asked.
function M.banner()
  local head = string.format("gleam %s REPL (%s), ", gleam.version, jit.version)
  local where
  if gleam.config.master then
    local agents, cores = cluster_size(gleam.config.master)
    if not agents then return nil, "cannot ask master " .. gleam.config.master .. ": " .. cores end
    where = string.format("on master %s: %d agent%s, %d cores", gleam.config.master, agents,
      agents == 1 and "" or "s", cores)
  else
    local w = M.workers()
    where = string.format("local with %d worker%s", w, w == 1 and "" or "s")
  end
  return head .. where .. ".\n" ..
    "f is a flow to start from; .help lists commands and methods; Ctrl-D leaves.\n"
end

-- Compiling -------------------------------------------------------------------

-- True when a compile error only says the input ended too soon.
local function incomplete(err)
  return err ~= nil and err:sub(-7) == "'<eof>'"
end

-- Compiles src (an input; first_line is its first line's number for
-- messages) into a runnable. Returns it, or nil and the error, and true
-- when the input is only unfinished.
function Session:compile(src, first_line)
  local name = "=" .. self.chunkname
  local body = src:gsub("^%s*=", "return ", 1)
  local is_expr = loadstring("return " .. body, name) ~= nil
  local declared
  if is_expr then
    -- Through a helper, so a call in the expression is not a tail call
    -- (a tail call would lose the line error() reports).
    body = "return " .. PACK .. "(" .. body .. ")"
  else
    -- (padded so a syntax error names the input's real line)
    local _, err = loadstring(string.rep("\n", (first_line or 1) - 1) .. body, name)
    if err then return nil, err, incomplete(err) end
    local rewritten, names = toplocal.rewrite(body)
    if #names > 0 and loadstring(rewritten, name) then body, declared = rewritten, names end
  end
  -- The names made locals: the latest MAX_LOCALS, with those this input declares.
  local locals, seen = {}, {}
  for _, n in ipairs(declared or {}) do
    if not seen[n] then locals[#locals + 1], seen[n] = n, true end
  end
  for i = #self.order, 1, -1 do
    if #locals >= MAX_LOCALS then break end
    local n = self.order[i]
    if not seen[n] then locals[#locals + 1], seen[n] = n, true end
  end
  local getters = {}
  for i = 1, #locals, GETTER_SIZE do
    getters[#getters + 1] = "function() return " ..
      table.concat(locals, ", ", i, math.min(i + GETTER_SIZE - 1, #locals)) .. " end"
  end
  -- Everything before the user's text is on line 1, and the user's first
  -- line is pushed down to first_line, so messages name the real lines.
  local code = "local " .. PACK .. (#locals > 0 and (", " .. table.concat(locals, ", ")) or "") .. " = ...; " ..
    "return function(...) " .. string.rep("\n", (first_line or 1) - 1) .. body ..
    "\nend" .. (#getters > 0 and (", " .. table.concat(getters, ", ")) or "")
  local chunk, err = loadstring(code, name)
  if not chunk then return nil, err, false end
  setfenv(chunk, self.env)
  return { chunk = chunk, locals = locals, is_expr = is_expr }
end

-- Running and printing ----------------------------------------------------------

local function pack(...) return { n = select("#", ...), ... } end

local function message(e)
  if type(e) == "string" then return e end
  local ok, s = pcall(tostring, e)
  return ok and s or "(error object is not a string)"
end

-- Writes the values an input returned.
function Session:print_values(n, ...)
  for i = 1, n do
    local v = select(i, ...)
    if gleam.is_dataset(v) then
      local ok, text = pcall(v.explain, v)
      if ok then
        self.out:write(text)
      else
        self.out:write(tostring(v), "\n")
        self.err:write("gleam: cannot plan it: ", message(text), "\n")
      end
    else
      self.out:write(pretty.value(v), "\n")
    end
  end
  self.out:flush()
end

-- Runs a compiled input. Returns true, or false and the error message.
function Session:run(c)
  -- A name new to the session starts as the global of that name, so
  -- `local print = print` keeps print.
  local vals = { pack }
  for i, n in ipairs(c.locals) do
    if self.known[n] then vals[i + 1] = self.vars[n] else vals[i + 1] = rawget(_G, n) end
  end
  local res = { pcall(c.chunk, unpack(vals, 1, #c.locals + 1)) }
  if not res[1] then return false, message(res[2]) end
  local body = res[2]
  local out = pack(xpcall(body, message))
  -- Assignments made before an error stay, as they would for globals.
  local k = 1
  for g = 3, #res do
    local got = { res[g]() }
    for j = 1, GETTER_SIZE do
      local name = c.locals[k]
      if not name then break end
      self:set(name, got[j])
      k = k + 1
    end
  end
  if not out[1] then return false, out[2] end
  -- An expression's values come packed; a statement's are what it returned.
  local r = c.is_expr and out[2] or { n = out.n - 1, unpack(out, 2, out.n) }
  local ok, err = pcall(self.print_values, self, r.n, unpack(r, 1, r.n))
  if not ok then return false, message(err) end
  return true
end

-- Evaluates one whole input (a chunk of one or more lines). Returns true,
-- or false and the error message (already written to self.err).
function Session:eval(src, first_line)
  local c, err = self:compile(src, first_line)
  local ok = c ~= nil
  if ok then ok, err = self:run(c) end
  io.stdout:flush()
  if not ok then
    self.err:write("gleam: ", err, "\n")
    self.err:flush()
    return false, err
  end
  return true
end

-- Feeds one line. Returns "more" when the input so far is unfinished,
-- "ok" when it ran, "error" when it failed (the message is written),
-- "exit" for .exit.
function Session:feed(line)
  self.line = self.line + 1
  if self.pending == nil then
    local cmd = line:match("^%s*%.(%a+)%s*$")
    if cmd == "help" then
      self.out:write(help_text())
      return "ok"
    elseif cmd == "exit" or cmd == "quit" then
      return "exit"
    elseif cmd then
      self.err:write("gleam: unknown command ." .. cmd .. " (.help lists them)\n")
      return "error"
    end
    if line:match("^%s*$") then return "ok" end
    self.pending, self.pending_line = line, self.line
  else
    self.pending = self.pending .. "\n" .. line
  end
  local c, err, more = self:compile(self.pending, self.pending_line)
  if not c and more then return "more" end
  self.pending = nil
  if not c then
    self.err:write("gleam: ", err, "\n")
    return "error"
  end
  local ok, rerr = self:run(c)
  io.stdout:flush()
  if not ok then
    self.err:write("gleam: ", rerr, "\n")
    self.err:flush()
    return "error"
  end
  return "ok"
end

-- True while an unfinished input waits for more lines.
function Session:continuing()
  return self.pending ~= nil
end

-- Drops an unfinished input (Ctrl-C at the prompt).
function Session:reset()
  self.pending = nil
end

-- Completion --------------------------------------------------------------------

-- A session variable or global, without running any __index but ours.
function Session:lookup(name)
  local v = self.vars[name]
  if v == nil then v = rawget(_G, name) end
  return v
end

local function add_keys(t, into)
  if type(t) ~= "table" then return end
  for k in pairs(t) do
    if is_name(k) then into[k] = true end
  end
end

-- Returns the completions of word (a name, a.b.c. or a.b:c), sorted.
function Session:complete(word)
  local keys = {}
  local path, sep, part = word:match("^(.*)([.:])([%w_]*)$")
  if not path then
    part = word
    for _, n in ipairs(self.order) do keys[n] = true end
    add_keys(_G, keys)
    for k in pairs(KEYWORDS) do keys[k] = true end
  else
    local v
    for name in (path .. "."):gmatch("([^.]*)%.") do
      if name == "" or not is_name(name) then return {} end
      if v == nil then
        v = self:lookup(name)
      elseif type(v) == "table" then
        v = rawget(v, name)
      else
        v = nil
      end
      if v == nil then return {} end
    end
    local mt = getmetatable(v)
    local index = type(mt) == "table" and rawget(mt, "__index") or nil
    if type(v) == "string" then index = string end
    if sep == "." then
      add_keys(v, keys)
      if type(index) == "table" then add_keys(index, keys) end
    elseif type(index) == "table" then
      for k, f in pairs(index) do
        if is_name(k) and type(f) == "function" and k:sub(1, 1) ~= "_" then keys[k] = true end
      end
    end
  end
  local list = {}
  for k in pairs(keys) do
    if k:sub(1, #part) == part then list[#list + 1] = (path and path .. sep or "") .. k end
  end
  table.sort(list)
  return list
end

-- Interactive mode ----------------------------------------------------------------

-- Runs the prompt loop of cli/lineedit.c on a new session. Returns the
-- exit status.
function M.interactive(lineedit)
  local s = M.session()
  -- Ctrl-C sets the editor's flag; the engine polls it between batches.
  gleam.config.cancel = ffi.cast("int *", lineedit.cancel_flag)
  -- A job running longer than a second shows where it is on stderr
  -- (cli/lineedit.c prints it: no Lua runs while the engine waits, so the
  -- Ctrl-C hook cannot fire inside the engine).
  gleam.config.progress = ffi.cast("gl_progress_fn", lineedit.progress_fn)
  local home = os.getenv("HOME")
  local banner, why = M.banner()
  if not banner then
    io.stderr:write("gleam: ", why, "\n")
    gleam.config.cancel = nil
    gleam.config.progress = nil
    return 1
  end
  io.stdout:write(banner)
  io.stdout:flush()
  local rc = lineedit.loop {
    history = home and home ~= "" and (home .. "/.gleam_history") or nil,
    feed = function(line) return s:feed(line) end,
    continuing = function() return s:continuing() end,
    reset = function() s:reset() end,
    complete = function(word) return s:complete(word) end,
  }
  gleam.config.cancel = nil
  gleam.config.progress = nil
  return rc
end

return M
