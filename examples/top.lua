-- Top: the N best-scoring entries of tab-separated "name<TAB>score" lines,
-- highest score first (ties by name).
--
--   gleam run examples/top.lua N FILE|GLOB ...
local gleam = require "gleam"

local n = tonumber(arg[1])
if not n or #arg < 2 then
  io.stderr:write("usage: gleam run examples/top.lua N FILE|GLOB ...\n")
  os.exit(2)
end

gleam.flow("top")
  :text({ select(2, unpack(arg)) })
  :map(function(line)
    local name, score = line:match("^([^\t]*)\t(.*)$")
    return name, tonumber(score)
  end)
  :filter(function(name, score) return score ~= nil end)
  :top(n, { by = 2 })
  :printf("%s\t%d\n")
  :run()
