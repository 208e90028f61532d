-- gleam.gmatch: flatmap functions of the form
--   function(line) return line:gmatch("pattern") end
-- recognised from their LuaJIT bytecode, so a worker can call
-- string.gmatch itself with the pattern it read there. Without this it
-- must tell each returned iterator apart (jit.util.funcinfo and
-- debug.getupvalue, two C calls and a table per row: 9% of a Lua word
-- count's instructions).
local jutil = require "jit.util"

local M = {}

-- The function with the same bytecode as f and the pattern "x", for
-- f's parameter count: the instruction words hold slot and constant
-- numbers only, so they match whatever f's pattern is.
local refs = {}
local function reference(nparams)
  if not refs[nparams] then
    local names = {}
    for k = 1, nparams do names[k] = "a" .. k end
    local src = "return function(" .. table.concat(names, ",") .. ") return a1:gmatch('x') end"
    refs[nparams] = assert(loadstring(src))()
  end
  return refs[nparams]
end

-- The pattern of f if f is function(s, ...) return s:gmatch(<constant
-- string>) end with fixed parameters and no upvalues; else nil.
function M.pattern_of(f)
  if type(f) ~= "function" then return nil end
  local fi = jutil.funcinfo(f)
  if not fi.bytecodes or fi.isvararg or (fi.upvalues or 0) > 0 or fi.children then return nil end
  if fi.params < 1 or fi.params > 8 then return nil end
  local ref = reference(fi.params)
  if jutil.funcinfo(ref).bytecodes ~= fi.bytecodes then return nil end
  for pc = 1, fi.bytecodes - 1 do
    if jutil.funcbc(f, pc) ~= jutil.funcbc(ref, pc) then return nil end
  end
  -- Constants: "gmatch" then the pattern, as in the reference.
  if jutil.funck(f, -1) ~= "gmatch" or jutil.funck(f, -3) ~= nil then return nil end
  local pat = jutil.funck(f, -2)
  if type(pat) ~= "string" then return nil end
  -- A pattern gmatch rejects keeps the user's own call, whose error
  -- names the step.
  if not pcall(function() for _ in string.gmatch("", pat) do end end) then return nil end
  return pat
end

return M
