-- gleam.executor: the Lua half of `gleam executor` (cluster/executor.c).
--
-- A task's payload is msgpack: { fn = a function as gleam.closure dumps
-- it, args = a row (codec.pack_row), luajit = the driver's jit.version }.
-- The function runs once on the args; its results come back as one row.
-- Bytecode runs only if this LuaJIT made the same kind of bytecode: the
-- header's version byte, byte order and GC64 flag must match ours, or the
-- task is refused naming both LuaJITs, rather than loaded.
local ffi = require "ffi"
local codec = require "gleam.codec"
local closure = require "gleam.closure"

local M = {}

-- LuaJIT's bytecode dump header (lj_bcdump.h): "\27LJ", a version byte,
-- then flags. Only byte order (BCDUMP_F_BE) and the GC64 layout
-- (BCDUMP_F_FR2) must match: BCDUMP_F_STRIP says whether debug info was
-- kept, and BCDUMP_F_FFI whether the chunk has cdata constants, which any
-- LuaJIT with the FFI (gleam needs it) loads.
local F_BE, F_FR2 = 1, 8

local function header(bc)
  if type(bc) ~= "string" or bc:sub(1, 3) ~= "\27LJ" or #bc < 5 then return nil end
  return bc:byte(4), bit.band(bc:byte(5), F_BE + F_FR2)
end

local function describe(luajit, version, flags)
  return string.format("%s (bytecode version %d, %s%s)", luajit, version,
    bit.band(flags, F_BE) ~= 0 and "big-endian, " or "", bit.band(flags, F_FR2) ~= 0 and "GC64" or "no GC64")
end

local my_version, my_flags = header(string.dump(function() end))

-- Runs the task in payload; returns true and the result row's bytes, or
-- false and one line saying why.
function M.run(payload)
  local ok, req = pcall(codec.unpack, payload)
  if not ok or type(req) ~= "table" or type(req.fn) ~= "string" or type(req.args) ~= "string" then
    return false, "executor: malformed task payload"
  end
  local okd, d = pcall(codec.unpack, req.fn)
  local version, flags = header(okd and type(d) == "table" and d.bc)
  if not version then return false, "executor: the task's function is not LuaJIT bytecode" end
  if version ~= my_version or flags ~= my_flags then
    return false, string.format("executor: task refused: its bytecode is from %s, this executor runs %s",
      describe(tostring(req.luajit or "?"), version, flags), describe(jit.version, my_version, my_flags))
  end
  local fn = closure.load(req.fn)
  local args = codec.row_at(ffi.cast(codec.u8p, req.args), 0)
  local res = { n = 0 }
  local okc, err = xpcall(function()
    local function pack(...) res = { n = select("#", ...), ... } end
    pack(fn(unpack(args, 1, args.n)))
  end, function(e) return type(e) == "string" and e or tostring(e) end)
  if not okc then return false, err end
  return true, codec.pack_row(unpack(res, 1, res.n))
end

-- What a driver sends: the payload for running fn on the arguments.
function M.payload(fn, ...)
  return codec.pack({ fn = closure.dump(fn, "task"), args = codec.pack_row(...), luajit = jit.version })
end

return M
