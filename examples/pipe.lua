-- Pipe: word count with a Unix pipeline doing the counting, as the
-- original Gleam README showed. Each shard's words go through its own
-- `sort | uniq -c`, which gives partial counts; reduce_by_key adds up the
-- counts of the shards, and the 10 most frequent words are printed.
--
--   gleam run examples/pipe.lua [FILE|GLOB ...]
--
-- Words are runs of ASCII letters and digits, counted as written, the same
-- as `tr -cs 'A-Za-z0-9' '\n' | sort | uniq -c`. With no arguments it
-- counts this repository's README.md.
local gleam = require "gleam"

local args = { ... }
if #args == 0 then
  local here = (arg[0]:match("^(.*)/[^/]*$") or ".") .. "/.."
  args = { here .. "/README.md" }
end

gleam.flow("pipe word count")
  :text(args)
  :flatmap(gleam.fn.words)
  :pipe("sort | uniq -c")
  -- uniq -c prints "<spaces><count> <word>"; rows come back as strings
  :map(function(line)
    local count, word = line:match("^%s*(%d+) (.*)$")
    return word, tonumber(count)
  end)
  :reduce_by_key(gleam.fn.sum)
  :top(10, { by = 2 })
  :printf("%s\t%d\n")
  :run()
