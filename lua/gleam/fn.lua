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
  return type(v) == "table" and type(v.builtin) == "string" and M[v.builtin] == v
end

return M
