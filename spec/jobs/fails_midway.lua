-- A job whose map fails on one row in the middle of a run with several
-- stages in flight: used to check that a failed run frees everything.
local gleam = require "gleam"
gleam.flow("fails")
  :range(200000)
  :map(function(x) return x % 1000, x end)
  :reduce_by_key(function(a, b) return a + b end)
  :map(function(k, v)
    if k == 777 then error("boom at " .. k) end
    return k, v
  end)
  :sort_by(2)
  :collect()
