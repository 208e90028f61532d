-- gleam.project: map functions that only move fields and add constants,
-- such as function(id, name, n) return name, 1, n end, recognised from
-- their LuaJIT bytecode so the engine can run them in C (op_narrow.c)
-- without decoding a row into Lua values and encoding the result again.
--
-- A function qualifies when it has fixed parameters, no upvalues, no
-- nested functions, and its bytecode is only constant loads (KSHORT, KNUM,
-- KSTR, KPRI, KNIL) and moves (MOV) into slots, then one return of slots.
-- Parameter k is field k of the row (nil past its end, as the Lua call
-- would see it); a constant is written as the Lua encoder writes it. The
-- rows come out with the values the Lua call would give; only their bytes
-- may differ where Lua would have re-encoded a value (a float32 as a
-- double, map entries sorted), as C copies each field's bytes as they are.
local bit = require "bit"
local jutil = require "jit.util"
local codec = require "gleam.codec"

local band, rshift = bit.band, bit.rshift

local M = {}

-- At most this many output fields (the engine's key width, GL_KEY_MAX).
M.MAX = 15

-- Opcode numbers differ between LuaJIT versions, and jit.vmdef (their
-- names) is a file a host's package.path may not reach: learn them from
-- functions made of the opcodes wanted.
local OP = {}
do
  local function ops(f, ...)
    for pc, name in ipairs({ ... }) do OP[band(jutil.funcbc(f, pc), 0xff)] = name end
  end
  ops(function(a, b) return b, a end, "MOV", "MOV", "RET")
  ops(function() end, "RET0")
  ops(function(a) return a end, "RET1")
  ops(function() return 1 end, "KSHORT")
  ops(function() return 0.5 end, "KNUM")
  ops(function() return "s" end, "KSTR")
  ops(function() return true end, "KPRI")
  ops(function() return nil, nil end, "KNIL")
  -- Nine opcodes, each learnt once; else recognise nothing.
  local n, names = 0, {}
  for _, name in pairs(OP) do
    n = n + 1
    names[name] = true
  end
  local distinct = 0
  for _ in pairs(names) do distinct = distinct + 1 end
  if n ~= 9 or distinct ~= 9 then OP = {} end
end

local function opname(op) return OP[op] end

-- The outputs of f as a list of items, { field = k } or { value = v }
-- (n = count), or nil if f is not such a function.
function M.of(f)
  if type(f) ~= "function" then return nil end
  local fi = jutil.funcinfo(f)
  if not fi.bytecodes or fi.isvararg or (fi.upvalues or 0) > 0 or fi.children then return nil end
  local slots = {} -- slot number -> item
  for k = 0, fi.params - 1 do slots[k] = { field = k + 1 } end
  for pc = 1, fi.bytecodes - 1 do
    local ins = jutil.funcbc(f, pc)
    if not ins then return nil end
    local name = opname(band(ins, 0xff))
    local a, d = band(rshift(ins, 8), 0xff), band(rshift(ins, 16), 0xffff)
    if name == "MOV" then
      if not slots[d] then return nil end
      slots[a] = slots[d]
    elseif name == "KSHORT" then
      slots[a] = { value = d >= 0x8000 and d - 0x10000 or d }
    elseif name == "KNUM" then
      local v = jutil.funck(f, d)
      if type(v) ~= "number" then return nil end
      slots[a] = { value = v }
    elseif name == "KSTR" then
      local v = jutil.funck(f, -d - 1)
      if type(v) ~= "string" then return nil end
      slots[a] = { value = v }
    elseif name == "KPRI" then
      if d > 2 then return nil end
      local v = nil
      if d == 1 then v = false elseif d == 2 then v = true end
      slots[a] = { value = v }
    elseif name == "KNIL" then
      for s = a, d do slots[s] = { value = nil } end
    elseif name == "RET0" or name == "RET1" or name == "RET" then
      local n = name == "RET0" and 0 or name == "RET1" and 1 or d - 1
      if n > M.MAX or pc ~= fi.bytecodes - 1 then return nil end
      local out = { n = n }
      for k = 1, n do
        out[k] = slots[a + k - 1]
        if not out[k] then return nil end
      end
      return out
    else
      return nil
    end
  end
  return nil
end

-- The items of g after f: g's parameters are f's outputs.
function M.compose(f_items, g_items)
  local out = { n = g_items.n }
  for k = 1, g_items.n do
    local it = g_items[k]
    if it.field then
      out[k] = it.field <= f_items.n and f_items[it.field] or { value = nil }
    else
      out[k] = it
    end
  end
  return out
end

-- The items as the engine reads them (gl_op_project_init): an array whose
-- entries are a field number, or a one-item array holding a constant.
function M.encode(items)
  local b = { string.char(0x90 + items.n) } -- n <= M.MAX < 16
  for k = 1, items.n do
    local it = items[k]
    b[k + 1] = it.field and codec.pack(it.field) or ("\x91" .. codec.pack(it.value))
  end
  return table.concat(b)
end

return M
