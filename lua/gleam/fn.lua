-- gleam.fn: built-in functions. The planner recognizes them and runs them
-- in C with no Lua call per row (words in flatmap; sum and count in
-- reduce_by_key and reduce). Each is also a plain Lua callable with the
-- same meaning, so a built-in works anywhere a Lua function does, and any
-- Lua function can stand where a built-in does.
local gmatch, select = string.gmatch, select

local M = {}

local function builtin(name, call)
  return setmetatable({ builtin = name }, {
    __call = function(_, ...) return call(...) end,
    __tostring = function() return "gleam.fn." .. name end,
  })
end

-- words(line): the runs of ASCII letters and digits in line, one row each.
M.words = builtin("words", function(line)
  return gmatch(line, "[A-Za-z0-9]+")
end)

-- sum(a1..an, b1..bn): the field-wise sums, as a combiner.
M.sum = builtin("sum", function(...)
  local n = select("#", ...)
  if n == 2 then local a, b = ...; return a + b end
  local h = n / 2
  local t = { ... }
  local r = {}
  for i = 1, h do r[i] = t[i] + t[h + i] end
  return unpack(r, 1, h)
end)

-- count: as the combiner of reduce_by_key, the number of rows of each key;
-- as a function, 1 for any row.
M.count = builtin("count", function() return 1 end)

function M.is_builtin(v)
  return type(v) == "table" and type(v.builtin) == "string" and rawget(M, v.builtin) == v
end

-- Functions a C host registered (gleam_register_mapper/_reducer in
-- gleam.h) appear as gleam.fn.<name>; they run only inside the engine.
local cfn_kinds = { "mapper", "reducer" }
setmetatable(M, {
  __index = function(t, name)
    if type(name) ~= "string" then return nil end
    local C = require("gleam.core").C
    local kind = cfn_kinds[C.gl_cfn_kind(name)]
    if not kind then return nil end
    local f = setmetatable({ builtin = name, cfn = kind }, {
      __call = function() error("gleam.fn." .. name .. " is a host C " .. kind .. ": it runs only in a flow", 2) end,
      __tostring = function() return "gleam.fn." .. name end,
    })
    rawset(t, name, f)
    return f
  end,
})

return M
