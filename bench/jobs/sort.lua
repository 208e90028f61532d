-- Sort: the lines of FILE (100-byte records) in byte order, as
-- `LC_ALL=C sort` prints them.
--
--   gleam run bench/jobs/sort.lua FILE > OUT
local gleam = require "gleam"

gleam.flow("bench sort")
  :text(arg[1])
  :sort_by(1)
  :printf("%s\n")
  :run()
