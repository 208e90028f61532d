-- Word count: the most frequent words of the files given, or of this
-- repository's own documents when none are given.
--
--   gleam run examples/wordcount.lua [--lua] [FILE|GLOB ...]
--
-- Words are runs of ASCII letters and digits, counted as written (no case
-- folding), the same as `tr -cs 'A-Za-z0-9' '\n'`. By default the built-ins
-- run in C; --lua does the same with plain Lua closures.
local gleam = require "gleam"

local args, use_lua = {}, false
for _, a in ipairs(arg) do
  if a == "--lua" then use_lua = true else args[#args + 1] = a end
end
if #args == 0 then
  local here = (arg[0]:match("^(.*)/[^/]*$") or ".") .. "/.."
  args = { here .. "/README.md", here .. "/examples/*.lua" }
end

local lines = gleam.flow("word count"):text(args)
local counts
if use_lua then
  counts = lines
    :flatmap(function(line) return line:gmatch("[A-Za-z0-9]+") end)
    :map(function(word) return word, 1 end)
    :reduce_by_key(function(a, b) return a + b end)
else
  counts = lines:flatmap(gleam.fn.words):reduce_by_key(gleam.fn.count)
end

counts:top(10, { by = 2 }):printf("%s\t%d\n"):run()
