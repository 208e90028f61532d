-- gleam.worker: the Lua half of a task, loaded once in each worker's Lua
-- state. For each Lua op of a stage the engine calls op_new, which loads
-- the user functions and returns push(rows, len, nrows) and finish(). push
-- decodes a batch through the FFI, runs the rows through the functions in
-- one loop LuaJIT can trace, and encodes the output rows into the op's
-- buffer; it returns how many rows it wrote. The engine calls it once per
-- batch, never per row.
local ffi = require "ffi"
local codec = require "gleam.codec"
local closure = require "gleam.closure"
local gfn = require "gleam.fn"
local project = require "gleam.project"
local gmatch = require "gleam.gmatch"
local core = require "gleam.core"

local C = core.C
local decode, skip, row_header, u8p = codec.decode, codec.skip, codec.row_header, codec.u8p
local ffi_cast = ffi.cast
local select, type, tonumber, floor, unpack = select, type, tonumber, math.floor, unpack

local M = {}

-- GLEAM_JIT_LOG=file: LuaJIT's trace log of the workers (jit.v), for
-- finding trace aborts in the row loop.
if os.getenv("GLEAM_JIT_LOG") then require("jit.v").start(os.getenv("GLEAM_JIT_LOG")) end

-- The op whose user code is running, for the error handler.
local current
-- This file, as error messages name it.
local OWN_SOURCE = debug.getinfo(1, "S").source
local HERE = debug.getinfo(1, "S").short_src .. ":"

-- A group too big for memory arrives as ext 71 holding a token; its values
-- are read from LMDB as the user's loop asks for them (op_group.c).
ffi.cdef [[
const gl_output *gl_group_lookup(uint64_t token);
]]
-- A cdata, not a table: #values is the count, and ipairs, pairs or
-- values[i] fail loudly instead of seeing an empty table.
local function release(v)
  if v.rd ~= nil then
    C.gl_reader_free(v.rd)
    v.rd = nil
  end
end
local group_values = ffi.metatype("gl_group_values", {
  __len = function(v) return tonumber(v.count) end,
  __call = function(v)
    while v.left == 0 do
      if v.rd == nil then return nil end
      local c = C.gl_reader_next(v.rd)
      if c == nil then
        local err = C.gl_reader_error(v.rd)
        err = err ~= nil and ffi.string(err) or nil
        release(v)
        if err then error(err, 0) end
        return nil
      end
      v.p, v.i, v.left = c.data, 0, c.nrows
    end
    local x, i = decode(v.p, tonumber(v.i))
    v.i = i
    v.left = v.left - 1
    v.n = v.n + 1
    return tonumber(v.n), x
  end,
  __index = function(_, k)
    error("gleam: these group values were too big for memory and are read from disk: iterate them once " ..
      "with `for i, v in values do` or gleam.values(values) (#values is their count), not values["
      .. tostring(k) .. "]", 2)
  end,
  __tostring = function(v) return "gleam group values (" .. tonumber(v.count) .. ", read from disk)" end,
  __gc = release,
})

codec.ext_handlers[71] = function(p, n)
  local token = 0ULL
  for k = 0, n - 1 do token = token * 256 + p[k] end
  local out = n == 8 and C.gl_group_lookup(token) or nil
  if out == nil then
    error("gleam: group values (msgpack ext type 71) that are not live: a group too big for memory " ..
      "can be read only by the step right after group_by_key", 0)
  end
  local rd = C.gl_reader_new(out, 0)
  if rd == nil then error("gleam: out of memory", 0) end
  return group_values(rd, nil, 0, 0, 0, C.gl_output_rows(out))
end

local function load_step(s)
  local f
  if s.fn then
    f = closure.load(s.fn)
  elseif s.builtin then
    f = gfn[s.builtin]
  else
    error("gleam: step " .. s.name .. " has no function", 0)
  end
  return f
end

-- Chain building: each step wraps the next; the last writes the row.

local function item(nxt, v, ...)
  if v == nil then return nil end
  if type(v) == "table" and select("#", ...) == 0 and getmetatable(v) == nil then
    nxt(unpack(v, 1, v.n or #v))
  else
    nxt(v, ...)
  end
  return v
end

-- string.gmatch's iterator is a C function. Called for all of its values,
-- the unknown count keeps the row loop in LuaJIT's interpreter (most of a
-- Lua word count's time went there); called for one value, the loop is
-- compiled. It gives the same count at every match - its pattern's
-- captures, or 1 - so the count is learnt at a pattern's first match and
-- a one-value pattern is then called for one value. (Telling the iterator
-- apart costs a small table per flatmap call.)
local funcinfo = require("jit.util").funcinfo
local getupvalue = debug.getupvalue
local GMATCH = funcinfo(string.gmatch("", "")).ffid
local gmatch_values = {}  -- pattern -> values per match

local function first_match(nxt, pat, v, ...)
  if v == nil then return nil end
  gmatch_values[pat] = select("#", ...) + 1
  nxt(v, ...)
  return v
end

-- Passes each match of the gmatch iterator r (state s, control c) on.
local function each_match(nxt, pat, r, s, c)
  if not gmatch_values[pat] then
    c = first_match(nxt, pat, r(s, c))
    if c == nil then return end
  end
  if gmatch_values[pat] == 1 then
    while true do
      c = r(s, c)
      if c == nil then return end
      nxt(c)
    end
  end
  while true do
    c = item(nxt, r(s, c))
    if c == nil then return end
  end
end

-- What line:gmatch(...) calls, while user code has not replaced it.
local STRLIB, string_gmatch = string, string.gmatch

local function wrap(kind, f, nxt, name)
  if kind == "map" then
    return function(...) return nxt(f(...)) end
  elseif kind == "filter" then
    return function(...) if f(...) then return nxt(...) end end
  elseif kind == "foreach" then
    return function(...)
      f(...)
      return nxt(...)
    end
  elseif kind == "flatmap" then
    -- Passes on the items of what f returned.
    local function spread(r, s, c)
      local tr = type(r)
      if tr == "function" then
        if GMATCH and funcinfo(r).ffid == GMATCH then
          local _, pat = getupvalue(r, 2)
          return each_match(nxt, pat, r, s, c)
        end
        while true do
          c = item(nxt, r(s, c))
          if c == nil then break end
        end
      elseif tr == "table" then
        for k = 1, r.n or #r do
          local v = r[k]
          if type(v) == "table" and getmetatable(v) == nil then
            nxt(unpack(v, 1, v.n or #v))
          else
            nxt(v)
          end
        end
      elseif r ~= nil then
        error(name .. ": the function must return an iterator or an array, not a " .. tr, 0)
      end
    end
    local pat = gmatch.pattern_of(f)
    if pat then
      -- f is function(line) return line:gmatch(pat) end: call it as f
      -- would, knowing what comes back.
      return function(line, ...)
        local mt = type(line) == "string" and getmetatable(line)
        if type(mt) == "table" and rawget(mt, "__index") == STRLIB and rawget(STRLIB, "gmatch") == string_gmatch then
          each_match(nxt, pat, string_gmatch(line, pat))
        else
          spread(f(line, ...))
        end
      end
    end
    -- Not tail calls: on_error finds this frame when the iterator fails.
    return function(...) spread(f(...)) end
  end
  error("gleam: cannot chain a " .. tostring(kind) .. " step", 0)
end

-- Calls f with the n fields of the row at p[i]; returns the offset after it.
local scratch = {}
local function feed(f, p, i)
  local n
  n, i = row_header(p, i)
  if n == 1 then
    local a
    a, i = decode(p, i)
    f(a)
  elseif n == 2 then
    local a, b
    a, i = decode(p, i)
    b, i = decode(p, i)
    f(a, b)
  elseif n == 3 then
    local a, b, c
    a, i = decode(p, i)
    b, i = decode(p, i)
    c, i = decode(p, i)
    f(a, b, c)
  elseif n == 0 then
    f()
  else
    local t = scratch
    for k = 1, n do t[k], i = decode(p, i) end
    f(unpack(t, 1, n))
  end
  return i
end

-- A chain of maps that only move fields and add constants (gleam.project),
-- as the engine runs it; nil for any other chain.
local function projection(d)
  local items
  for _, s in ipairs(d.steps) do
    if s.kind ~= "map" or not s.fn then return nil end
    local it = project.of(load_step(s))
    if not it then return nil end
    items = items and project.compose(items, it) or it
  end
  return items and project.encode(items)
end

local function chain_op(d, out)
  local spec = projection(d)
  if spec then return nil, nil, spec end
  local enc = codec.encoder(out)
  local rows = 0
  local steps = {}
  local function sink(...)
    enc.row(select("#", ...), ...)
    rows = rows + 1
  end
  local run = sink
  for k = #d.steps, 1, -1 do
    local s = d.steps[k]
    local f = load_step(s)
    run = wrap(s.kind, f, run, s.name)
    steps[k] = { fn = f, name = s.name, where = s.where, wrapper = run }
  end
  local op = { steps = steps }
  local function push(ptr, len, nrows)
    current = op
    local p = ffi_cast(u8p, ptr)
    op.p, op.rows = p, 0
    rows = 0
    enc.begin()
    local i = 0
    for _ = 1, nrows do
      op.row = i
      i = feed(run, p, i)
    end
    enc.commit()
    current = nil
    return rows
  end
  local function finish() return 0, false end
  return push, finish
end

-- A combine's Lua tables start with room for the keys the engine made
-- room for in its table (lua_op.c: as many as the last combine here met).
local table_new = require "table.new"

-- Whole numbers within +-2^53 and fractions: numbers an encode and decode
-- give back unchanged (larger whole numbers come back as int64 cdata).
local TWO53 = 2 ^ 53

-- A combine (reduce_by_key, reduce with a Lua function): rows find their
-- slot in the engine's table (agg.c) by their key bytes, and the combined
-- values live in a Lua array by slot. With a chain (d.chain: the Lua steps
-- before it, fused by the planner), the chain's rows arrive as Lua values
-- instead of encoded rows: a (string, number) row keyed on field 1 finds
-- its slot in a Lua table of the string keys (a new key takes the next
-- slot and reaches the engine's table later, with others, through
-- gl_agg_slot_strs), and any other row is encoded and combined as the
-- engine would have passed it, so values and errors are the same either way.
local function agg_op(d, out, agg, room)
  local enc = codec.encoder(out)
  local s = d.step
  local f = load_step(s)
  local reduce = { fn = f, name = s.name, where = s.where }
  local steps = {}
  local run
  local chain = d.chain or {}
  local op = { steps = steps, reduce = reduce, fallback = reduce }
  local key = d.key
  local iskey = {}
  for _, k in ipairs(key) do iskey[k] = true end
  local nk = #key
  local nv                -- value fields per row, from the first row
  local vpos = {}         -- their field positions
  local acc = table_new(room, 0) -- acc[slot * nv + j]
  local t = {}
  local emitted = 0
  local lenp = ffi.new("size_t[1]")

  local function combine(base, ...)
    -- fn(a1..an, b1..bn) -> n values
    local n = nv
    local args = {}
    for j = 1, n do args[j] = acc[base + j] end
    for j = 1, n do args[n + j] = (select(j, ...)) end
    local r = { f(unpack(args, 1, 2 * n)) }
    for j = 1, n do acc[base + j] = r[j] end
  end

  -- Combines the encoded row at p[i]; returns the offset after it. Key
  -- fields are matched by their bytes, so they are skipped, not decoded.
  local function add_row(p, i)
    local start = i
    local n
    n, i = row_header(p, i)
    for k = 1, n do
      if iskey[k] then i = skip(p, i) else t[k], i = decode(p, i) end
    end
    -- Value fields: the row's fields not in the key (a key field past the
    -- end of the row is a nil key field, not a value).
    local rest = n
    for k = 1, nk do if key[k] <= n then rest = rest - 1 end end
    if not nv then
      nv = rest
      local j = 0
      for k = 1, n do if not iskey[k] then j = j + 1; vpos[j] = k end end
    elseif rest ~= nv then
      error(string.format("rows have %d value fields, earlier rows had %d", rest, nv), 0)
    end
    local s2 = tonumber(C.gl_agg_slot(agg, p + start, i - start))
    if s2 < 0 then error("gleam: out of memory", 0) end
    local slot = floor(s2 / 2)
    local base = slot * nv
    if s2 % 2 == 1 then
      for j = 1, nv do acc[base + j] = t[vpos[j]] end
    elseif nv == 1 then
      acc[base + 1] = f(acc[base + 1], t[vpos[1]])
    elseif nv == 2 then
      acc[base + 1], acc[base + 2] = f(acc[base + 1], acc[base + 2], t[vpos[1]], t[vpos[2]])
    elseif nv > 0 then
      local vals = {}
      for j = 1, nv do vals[j] = t[vpos[j]] end
      combine(base, unpack(vals, 1, nv))
    end
    return i, s2
  end

  local flush             -- fused: adds the pending keys to the table
  if #chain > 0 then
    local last
    local kbuf = codec.new_buf()
    local kenc = codec.encoder(kbuf)
    local fast = false    -- (string, number) rows may skip encoding: key1 and nv == 1
    local key1 = nk == 1 and key[1] == 1
    local slot_of = table_new(0, room) -- every string key in the table (key1) -> its slot
    local nslots = 0      -- slots given out, pending ones included
    -- New string keys get the next slot at once and wait here, encoded,
    -- until the table must agree (before a row goes to it, and at
    -- finish): then one call adds them all, in order.
    local pend = codec.new_buf()
    local penc = codec.encoder(pend)
    local npend = 0

    flush = function()
      if npend == 0 then return end
      penc.commit()
      local n = tonumber(C.gl_agg_slot_strs(agg, pend.data, pend.len))
      pend.len, npend = 0, 0
      if n == -1 then error("gleam: out of memory", 0) end
      if n ~= nslots then error("gleam: the combine's slots are out of step", 0) end
    end

    -- Any other row: encoded as the chain would have written it (errors
    -- there are the chain's), then combined from its bytes.
    local function slow(n, ...)
      kbuf.len = 0
      kenc.begin()
      kenc.row(n, ...)
      kenc.commit()
      flush()
      local p, row = op.p, op.row
      op.fallback, op.p, op.row = reduce, ffi_cast(u8p, kbuf.data), 0
      local _, s2 = add_row(op.p, 0)
      op.fallback, op.p, op.row = last, p, row
      if s2 % 2 == 1 then nslots = nslots + 1 end
      local k = ...
      if key1 and type(k) == "string" then slot_of[k] = floor(s2 / 2) end
      fast = key1 and nv == 1
    end

    -- The row (k, v): on_error finds k and v here when f fails.
    local function sink(...)
      if fast and select("#", ...) == 2 then
        local k, v = ...
        if type(k) == "string" and type(v) == "number" and v >= -TWO53 and v <= TWO53 then
          local slot = slot_of[k]
          if slot then
            acc[slot + 1] = f(acc[slot + 1], v)
            return
          end
          slot = nslots
          nslots = slot + 1
          slot_of[k] = slot
          if npend == 0 then penc.begin() end
          npend = npend + 1
          penc.value(k)
          acc[slot + 1] = v
          return
        end
      end
      return slow(select("#", ...), ...)
    end

    run = sink
    for k = #chain, 1, -1 do
      local cs = chain[k]
      local cf = load_step(cs)
      run = wrap(cs.kind, cf, run, cs.name)
      steps[k] = { fn = cf, name = cs.name, where = cs.where, wrapper = run }
    end
    last = steps[#chain]
    op.fallback = last
    op.sink = sink
  end
  steps[#steps + 1] = reduce

  local function push(ptr, len, nrows)
    current = op
    local p = ffi_cast(u8p, ptr)
    op.p = p
    local i = 0
    if run then
      for _ = 1, nrows do
        op.row = i
        i = feed(run, p, i)
      end
    else
      for _ = 1, nrows do
        op.row = i
        i = add_row(p, i)
      end
    end
    current = nil
    return 0
  end

  local function finish()
    if flush then flush() end
    local total = C.gl_agg_count(agg)
    local upto = emitted + 4096
    if upto > total then upto = total end
    enc.begin()
    local v = nv or 0
    for slot = emitted, upto - 1 do
      local key = C.gl_agg_key(agg, slot, lenp)
      enc.header(nk + v)
      enc.raw(key, tonumber(lenp[0]))
      local base = slot * v
      for j = 1, v do enc.value(acc[base + j]) end
    end
    enc.commit()
    local rows = upto - emitted
    emitted = upto
    return rows, emitted < total
  end
  return push, finish
end

-- Returns push and finish for op number `index` of the stage in the blob;
-- or, for a chain the engine runs in C, nil, nil and its projection. A
-- combine gets the engine's key table (agg) and how many keys it has
-- room for (room).
function M.op_new(blob, len, index, out, agg, room)
  local ops = codec.decode(ffi_cast(u8p, blob), 0)
  local d
  for _, o in ipairs(ops) do
    if o.op == index then d = o end
  end
  if not d then error("gleam: stage has no Lua op " .. index, 0) end
  out = ffi_cast("gl_buf *", out)
  if d.kind == "chain" then return chain_op(d, out) end
  return agg_op(d, out, ffi_cast("gl_agg *", agg), room)
end

-- A flatmap's wrapper (at level w of this function's stack) runs the
-- iterator in a loop (w - 1) after the user's function has returned: an
-- error is the iterator's when what the loop called (w - 2) is not of
-- this file, whose functions are the next steps' wrappers and the sink.
local function in_iterator(w)
  local called = debug.getinfo(w - 2, "S")
  return called ~= nil and called.source ~= OWN_SOURCE
end

-- Error handler for every call into this state: one line naming the step,
-- where it was defined, the error, and the row being processed.
function M.on_error(msg)
  local op = current
  current = nil
  if type(msg) ~= "string" then
    msg = type(msg) == "table" and tostring(msg.msg or msg) or tostring(msg)
  end
  if not op then return msg end
  -- An error a library function raised for code here (a flatmap's gmatch
  -- iterator) is placed at a line of this file: not the user's business.
  if msg:find(HERE, 1, true) == 1 then msg = (msg:gsub("^[^\n]-:%d+: ", "", 1)) end
  -- Find the user function on the stack to know which step failed.
  -- With no user function on the stack the error came from encoding the
  -- output, which follows the last step.
  local step = op.fallback or op.steps[#op.steps]
  local args
  for level = 2, 60 do
    local info = debug.getinfo(level, "fu")
    if not info then break end
    for _, s in ipairs(op.steps) do
      if info.func == s.fn or (info.func == s.wrapper and in_iterator(level + 1)) or
          (type(s.fn) == "table" and info.func == getmetatable(s.fn).__call) then
        step = s
        args = {}
        for k = 1, info.nparams do
          local _, v = debug.getlocal(level, k)
          args[k] = v
        end
        args.n = info.nparams
        break
      end
    end
    if args then break end
  end
  -- A chain step shows its arguments; a combine shows the row it was
  -- combining: a row never encoded is the k and v of the fused sink.
  local shown
  local row
  if step == op.reduce and op.sink then
    for level = 2, 60 do
      local info = debug.getinfo(level, "f")
      if not info then break end
      if info.func == op.sink then
        local got = { n = 2 }
        for i = 1, 20 do
          local name, v = debug.getlocal(level, i)
          if not name then break end
          if name == "k" then got[1] = v elseif name == "v" then got[2] = v end
        end
        row = got
        break
      end
    end
  end
  if args and args.n > 0 and step ~= op.reduce then
    shown = codec.show_row(args)
  elseif row then
    shown = codec.show_row(row)
  elseif op.p and op.row then
    local ok, r = pcall(codec.row_at, op.p, op.row)
    if ok then shown = codec.show_row(r) end
  end
  return string.format("%s (%s): %s%s", step.name, step.where, msg, shown and ("; row " .. shown) or "")
end

return M
