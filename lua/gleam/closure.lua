-- gleam.closure: user functions as data, so they can run in another Lua
-- state (a worker thread now, an executor process later).
--
-- A function travels as string.dump bytecode (debug info kept, so errors
-- name the user's file and line) plus its upvalues by value: nil, booleans,
-- numbers, strings, int64 cdata, tables (deep, sharing and cycles kept,
-- metatables dropped) and nested Lua functions. A value that is a loaded
-- module, or a field of one (string.format, a require'd library's
-- function), travels as its name and is looked up again on the other side.
-- Anything else (a coroutine, userdata, other cdata, a C function no module
-- holds) is refused when the flow is built, naming the upvalue and where
-- the function was defined.
local ffi = require "ffi"
local codec = require "gleam.codec"

local M = {}

local function where_of(fn)
  local info = debug.getinfo(fn, "S")
  if info.what == "C" then return "[C]" end
  return info.short_src .. ":" .. info.linedefined
end
M.where_of = where_of

-- Maps values held by loaded modules to { module name, field }.
local function module_index()
  local idx = {}
  for name, mod in pairs(package.loaded) do
    if type(name) == "string" then
      if (type(mod) == "table" or type(mod) == "function") and idx[mod] == nil then
        idx[mod] = { name }
      end
    end
  end
  -- Base functions kept in locals (local tostring = tostring) are found
  -- again by name in the worker's _G; only C functions: a global Lua
  -- function of the job script does not exist on workers.
  for k, v in pairs(_G) do
    if type(k) == "string" and type(v) == "function" and idx[v] == nil and debug.getinfo(v, "S").what == "C" then
      idx[v] = { "_G", k }
    end
  end
  for name, mod in pairs(package.loaded) do
    if type(name) == "string" and type(mod) == "table" and name ~= "_G" then
      for k, v in pairs(mod) do
        if (type(v) == "function" or type(v) == "table") and idx[v] == nil and type(k) == "string" then
          idx[v] = { name, k }
        end
      end
    end
  end
  return idx
end

local describe

local function describe_fn(fn, st)
  local mod = st.modules[fn]
  if mod then return { k = "m", name = mod[1], key = mod[2] } end
  -- A function met again (recursion, shared helpers) is a reference, so
  -- a local recursive function ships and stays one function.
  local seen = st.seen[fn]
  if seen then return { k = "r", id = seen } end
  st.n = st.n + 1
  local id = st.n
  st.seen[fn] = id
  local info = debug.getinfo(fn, "Su")
  if info.what == "C" then
    error({ refused = "a C function that no loaded module holds" }, 0)
  end
  local ok, bc = pcall(string.dump, fn)
  if not ok then error({ refused = "a function that cannot be dumped: " .. tostring(bc) }, 0) end
  local ups = {}
  for i = 1, info.nups do
    local name, value = debug.getupvalue(fn, i)
    -- An upvalue another shipped function shares (two closures over one
    -- local) is joined again on the other side, not copied twice.
    local uid = debug.upvalueid(fn, i)
    local first = st.upvals[uid]
    if first then
      ups[i] = { k = "share", f = first[1], i = first[2] }
      goto next_upvalue
    end
    st.upvals[uid] = { id, i }
    do
    local ok2, d = pcall(describe, value, st)
    if not ok2 then
      if type(d) == "table" and d.refused and not d.named then
        error({
          refused = d.refused, named = true,
          msg = string.format("cannot ship upvalue '%s' of the function defined at %s: it is %s",
            name, where_of(fn), d.refused),
        }, 0)
      end
      error(d, 0)
    end
    ups[i] = d
    end
    ::next_upvalue::
  end
  return { k = "f", id = id, bc = bc, ups = ups, nups = info.nups }
end

describe = function(v, st)
  local tv = type(v)
  if tv == "nil" or tv == "boolean" or tv == "number" or tv == "string" then
    return { k = "v", v = v }
  end
  if tv == "cdata" then
    -- int64 travels as two 32-bit halves: the row codec would turn a small
    -- one into a Lua number, and an upvalue keeps its type.
    if codec.is_int64(v) then
      local u = ffi.cast("uint64_t", v)
      return { k = "i64", hi = tonumber(u / 4294967296ULL), lo = tonumber(u % 4294967296ULL),
               unsigned = ffi.istype("uint64_t", v) }
    end
    error({ refused = "a cdata value (" .. tostring(ffi.typeof(v)) .. ")" }, 0)
  end
  if tv == "function" then return describe_fn(v, st) end
  if tv == "table" then
    local mod = st.modules[v]
    if mod then return { k = "m", name = mod[1], key = mod[2] } end
    if getmetatable(v) == codec.ext_mt then return { k = "v", v = v } end
    local id = st.seen[v]
    if id then return { k = "r", id = id } end
    st.n = st.n + 1
    id = st.n
    st.seen[v] = id
    local kv = {}
    for key, val in pairs(v) do
      kv[#kv + 1] = describe(key, st)
      kv[#kv + 1] = describe(val, st)
    end
    return { k = "t", id = id, kv = kv }
  end
  error({ refused = tv == "thread" and "a coroutine" or "a " .. tv }, 0)
end

-- Returns fn as a string of bytes, or raises "<what>: <why>" if it cannot
-- travel. `what` names the step for the message.
function M.dump(fn, what)
  local st = { modules = module_index(), seen = {}, n = 0, upvals = {} }
  local ok, d = pcall(describe_fn, fn, st)
  if not ok then
    if type(d) == "table" then
      error(what .. ": " .. (d.msg or ("cannot ship the function defined at " .. where_of(fn) .. ": it is " .. d.refused)), 0)
    end
    error(d, 0)
  end
  return codec.pack(d)
end

local function resolve_module(name, key)
  local mod = package.loaded[name] or require(name)
  if key == nil then return mod end
  return mod[key]
end

local build

local function build_fn(d, tables)
  local fn = assert(loadstring(d.bc))
  if d.id then tables[d.id] = fn end
  for i = 1, d.nups or 0 do
    local u = d.ups[i]
    if u.k == "share" then
      -- joined once every function is built (see M.load)
      local joins = tables.joins
      joins[#joins + 1] = { fn, i, u.f, u.i }
    else
      debug.setupvalue(fn, i, build(u, tables))
    end
  end
  return fn
end

build = function(d, tables)
  local k = d.k
  if k == "v" then return d.v end
  if k == "i64" then
    local u = ffi.new("uint64_t", d.hi) * 4294967296ULL + d.lo
    return d.unsigned and u or ffi.cast("int64_t", u)
  end
  if k == "f" then return build_fn(d, tables) end
  if k == "m" then return resolve_module(d.name, d.key) end
  if k == "r" then return tables[d.id] end
  if k == "t" then
    local t = {}
    tables[d.id] = t
    local kv = d.kv
    for i = 1, #kv, 2 do
      local key = build(kv[i], tables)
      if key ~= nil then t[key] = build(kv[i + 1], tables) end
    end
    return t
  end
  error("gleam: unknown closure part '" .. tostring(k) .. "'", 0)
end

-- Returns the function described by bytes made by dump().
function M.load(bytes)
  local tables = { joins = {} }
  local fn = build_fn(codec.unpack(bytes), tables)
  for _, j in ipairs(tables.joins) do
    debug.upvaluejoin(j[1], j[2], tables[j[3]], j[4])
  end
  return fn
end

return M
