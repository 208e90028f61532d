-- Word count with plain Lua closures (gmatch), the same answer as
-- wordcount.lua: the 100 most frequent words of FILE, "word\tcount".
--
--   gleam run bench/jobs/wordcount_lua.lua FILE
local gleam = require "gleam"

gleam.flow("bench word count (Lua)")
  :text(arg[1])
  :flatmap(function(line) return line:gmatch("[A-Za-z0-9]+") end)
  :map(function(word) return word, 1 end)
  :reduce_by_key(function(a, b) return a + b end)
  :top(100, { by = 2 })
  :printf("%s\t%d\n")
  :run()
