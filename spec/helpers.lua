-- spec/helpers.lua: shared helpers for the busted specs.
--
-- Temp dirs and files (tracked, removed by helpers.cleanup(), which every
-- spec calls from after_each/teardown so they go even when a test fails),
-- running the gleam executable on a job with stdout, stderr and the exit
-- status captured separately, and row comparison: a canonical text form
-- of a row (type-tagged, field count included), a sort by it for
-- order-insensitive checks, and a deep compare that names the first
-- differing row.
local ffi = require "ffi"

local helpers = {}

helpers.source_dir = os.getenv("GLEAM_SOURCE_DIR") or "."
helpers.bin = os.getenv("GLEAM_BIN") or (helpers.source_dir .. "/build/gleam")
if helpers.bin:sub(1, 1) ~= "/" then
  -- jobs run from their own directory: make the path absolute
  local p = io.popen("pwd")
  helpers.bin = p:read("*l") .. "/" .. helpers.bin
  p:close()
end
-- Every case runs with each of these worker counts.
helpers.WORKERS = { 1, 2, 8 }

-- Shell --------------------------------------------------------------------

-- Returns s quoted for /bin/sh.
local function quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end
helpers.quote = quote

-- Temp files -----------------------------------------------------------------

local temps = {}

-- Removes a file or directory tree.
function helpers.rmtree(path)
  os.execute("rm -rf " .. quote(path))
end

-- Returns the path of a new empty directory, removed by helpers.cleanup().
function helpers.tmpdir()
  local p = assert(io.popen("mktemp -d \"${TMPDIR:-/tmp}/gleam-spec.XXXXXX\""))
  local dir = p:read("*l")
  p:close()
  assert(dir and dir ~= "", "mktemp -d failed")
  temps[#temps + 1] = dir
  return dir
end

-- Removes every temp dir made so far.
function helpers.cleanup()
  for i = #temps, 1, -1 do
    helpers.rmtree(temps[i])
    temps[i] = nil
  end
end

-- Runs fn(dir) with a fresh temp dir, removed afterwards even on error.
function helpers.with_tmpdir(fn)
  local dir = helpers.tmpdir()
  local ok, err = pcall(fn, dir)
  helpers.rmtree(dir)
  if not ok then error(err, 0) end
end

function helpers.write_file(path, content)
  local f = assert(io.open(path, "wb"))
  f:write(content)
  f:close()
  return path
end

function helpers.read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

-- Returns the lines of s as text() sees them: split on "\n", the newline
-- not part of the line, no extra empty line after a final newline.
function helpers.lines_of(s)
  local lines = {}
  local pos = 1
  while pos <= #s do
    local nl = s:find("\n", pos, true)
    if not nl then
      lines[#lines + 1] = s:sub(pos)
      break
    end
    lines[#lines + 1] = s:sub(pos, nl - 1)
    pos = nl + 1
  end
  return lines
end

-- Running the gleam executable -------------------------------------------------

-- Runs `gleam ARGS...` in dir (default: a temp dir), its stdin the file
-- `stdin` (default /dev/null); returns { status = exit code, stdout = ...,
-- stderr = ... }.
function helpers.gleam(args, dir, stdin)
  local own = dir == nil
  dir = dir or helpers.tmpdir()
  local io_dir = helpers.tmpdir()
  local out, err, rc = io_dir .. "/stdout", io_dir .. "/stderr", io_dir .. "/status"
  local cmd = { quote(helpers.bin) }
  for _, a in ipairs(args) do cmd[#cmd + 1] = quote(a) end
  os.execute(string.format("cd %s && %s >%s 2>%s <%s; echo $? >%s",
    quote(dir), table.concat(cmd, " "), quote(out), quote(err), quote(stdin or "/dev/null"), quote(rc)))
  local res = {
    status = tonumber(helpers.read_file(rc) or ""),
    stdout = helpers.read_file(out) or "",
    stderr = helpers.read_file(err) or "",
  }
  helpers.rmtree(io_dir)
  if own then helpers.rmtree(dir) end
  return res
end

-- Writes source as a job file and runs `gleam run [--workers N] JOB ARGS...`
-- from the job's directory, so messages name the job as opts.name (default
-- "job.lua"). opts: args (list), workers, name, dir, files ({ name =
-- content } written beside the job). Returns the result of helpers.gleam
-- plus job = the job's name.
function helpers.run_job(source, opts)
  opts = opts or {}
  local dir = opts.dir or helpers.tmpdir()
  local name = opts.name or "job.lua"
  helpers.write_file(dir .. "/" .. name, source)
  for fname, content in pairs(opts.files or {}) do
    helpers.write_file(dir .. "/" .. fname, content)
  end
  local args = { "run" }
  if opts.workers then
    args[#args + 1] = "--workers"
    args[#args + 1] = tostring(opts.workers)
  end
  args[#args + 1] = name
  for _, a in ipairs(opts.args or {}) do args[#args + 1] = a end
  local res = helpers.gleam(args, dir)
  res.job = name
  res.dir = dir
  return res
end

-- Returns the line number (1-based) of the first line of source containing
-- the plain text marker.
function helpers.line_of(source, marker)
  local n = 0
  for line in (source .. "\n"):gmatch("([^\n]*)\n") do
    n = n + 1
    if line:find(marker, 1, true) then return n end
  end
  error("marker not found: " .. marker, 2)
end

-- Rows -------------------------------------------------------------------------

local int64_t, uint64_t = ffi.typeof("int64_t"), ffi.typeof("uint64_t")

local function show_number(v)
  if v ~= v then return "nan" end
  if v == math.huge then return "inf" end
  if v == -math.huge then return "-inf" end
  if v == 0 and 1 / v < 0 then return "-0.0" end
  if v == math.floor(v) and math.abs(v) < 2 ^ 63 then return string.format("%.0f", v) end
  return string.format("%.17g", v)
end

local show

local function show_table(t, depth)
  if depth > 20 then return "{...}" end
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  local parts = {}
  for _, k in ipairs(keys) do parts[#parts + 1] = { show(k, depth + 1), show(t[k], depth + 1) } end
  table.sort(parts, function(a, b) return a[1] < b[1] end)
  for i, p in ipairs(parts) do parts[i] = "[" .. p[1] .. "]=" .. p[2] end
  return "{" .. table.concat(parts, ", ") .. "}"
end

-- Returns a canonical text form of any value: type-tagged, so 1 and "1"
-- differ, an int64 beyond 2^53 shows as such, -0.0 and nan are distinct.
show = function(v, depth)
  local tv = type(v)
  if tv == "nil" then return "nil" end
  if tv == "boolean" then return tostring(v) end
  if tv == "number" then return show_number(v) end
  if tv == "string" then return (string.format("%q", v):gsub("\\\n", "\\n")) end
  if tv == "cdata" then
    if ffi.istype(int64_t, v) then return "int64(" .. tostring(v):gsub("LL$", "") .. ")" end
    if ffi.istype(uint64_t, v) then return "uint64(" .. tostring(v):gsub("ULL$", "") .. ")" end
    return "cdata<" .. tostring(ffi.typeof(v)) .. ">"
  end
  if tv == "table" then return show_table(v, depth or 0) end
  return "<" .. tv .. ">"
end
helpers.show = show

-- Returns the canonical text of a row table { f1, ..., n = count }: its
-- fields 1..n and the count, so { 1, n = 2 } and { 1 } differ. A row
-- without n counts as #r fields.
function helpers.show_row(r)
  if type(r) ~= "table" then return "<not a row: " .. show(r) .. ">" end
  local n = r.n
  local parts = {}
  for k = 1, n or #r do parts[k] = show(r[k], 1) end
  local extra = ""
  for k in pairs(r) do
    if k ~= "n" and not (type(k) == "number" and k >= 1 and k <= (n or #r) and k == math.floor(k)) then
      extra = " +fields beyond n"
    end
  end
  return "(" .. table.concat(parts, ", ") .. ")" .. (n and ("#" .. tostring(n)) or "#?") .. extra
end

-- Returns a row table from its fields: row(1, nil) is { 1, nil, n = 2 }.
function helpers.row(...)
  return { n = select("#", ...), ... }
end

-- Returns a sorted copy of a list of rows (by canonical text), for
-- order-insensitive comparison.
function helpers.sorted(rows)
  local keyed = {}
  for i, r in ipairs(rows) do keyed[i] = { helpers.show_row(r), r } end
  table.sort(keyed, function(a, b) return a[1] < b[1] end)
  local out = {}
  for i, k in ipairs(keyed) do out[i] = k[2] end
  return out
end

-- Returns true if the two lists of rows are equal row by row (fields, types,
-- field counts), else false and a message naming the first difference.
function helpers.rows_equal(expected, actual)
  if type(actual) ~= "table" then
    return false, "expected a list of rows, got " .. show(actual)
  end
  local n = math.max(#expected, #actual)
  for i = 1, n do
    local e = expected[i] and helpers.show_row(expected[i]) or "(no row)"
    local a = actual[i] and helpers.show_row(actual[i]) or "(no row)"
    if e ~= a then
      return false, string.format("%d rows expected, %d got; first difference at row %d:\n  expected %s\n  got      %s",
        #expected, #actual, i, e, a)
    end
  end
  return true
end

-- A test failure (not an error) in busted, with msg.
local luassert = require "luassert"
local function fail(msg)
  luassert(false, msg)
end

-- Asserts two lists of rows are equal in order; ctx names the case.
function helpers.assert_rows(expected, actual, ctx)
  local ok, msg = helpers.rows_equal(expected, actual)
  if not ok then fail((ctx and (ctx .. ": ") or "") .. msg) end
end

-- Asserts two lists of rows are equal as multisets.
function helpers.assert_same_rows(expected, actual, ctx)
  if type(actual) ~= "table" then fail((ctx or "") .. ": expected a list of rows, got " .. show(actual)) end
  helpers.assert_rows(helpers.sorted(expected), helpers.sorted(actual), ctx)
end

-- Rows as the API returns them, from a list of plain values / tables:
-- rows_of({ 1, 2 }) is { {1, n=1}, {2, n=1} }; a table item is a row
-- (n = its n or #t).
function helpers.rows_of(list)
  local out = {}
  for i = 1, list.n or #list do
    local v = list[i]
    if type(v) == "table" then
      local r = { n = v.n or #v }
      for k = 1, r.n do r[k] = v[k] end
      out[i] = r
    else
      out[i] = { v, n = 1 }
    end
  end
  return out
end

-- Returns a configuration label for messages.
function helpers.label(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys)
  local parts = {}
  for _, k in ipairs(keys) do parts[#parts + 1] = k .. "=" .. tostring(t[k]) end
  return table.concat(parts, " ")
end

-- A deterministic pseudo-random sequence (specs must not depend on
-- math.random's state): lcg(seed) returns rand(m) in [0, m).
function helpers.lcg(seed)
  local s = seed
  return function(m)
    s = (s * 1103515245 + 12345) % 2147483648
    return s % m
  end
end

-- Runs a shell command; returns its stdout and stderr together and
-- whether it exited 0 (LuaJIT's popen close does not tell: the status is
-- appended by the shell and read back).
function helpers.sh(cmd)
  local p = assert(io.popen("(" .. cmd .. ") 2>&1; echo '[exit '$?']'"))
  local out = p:read("*a")
  p:close()
  local body, code = out:match("^(.*)%[exit (%d+)%]\n$")
  return body or out, code == "0"
end

return helpers
