-- Word count with the built-ins: the 100 most frequent words of FILE,
-- "word\tcount". Words are runs of ASCII letters and digits (gleam.fn.words).
--
--   gleam run bench/jobs/wordcount.lua FILE
local gleam = require "gleam"

gleam.flow("bench word count")
  :text(arg[1])
  :flatmap(gleam.fn.words)
  :reduce_by_key(gleam.fn.count)
  :top(100, { by = 2 })
  :printf("%s\t%d\n")
  :run()
