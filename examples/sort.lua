-- Sort: the lines of the files given, in byte order (as `LC_ALL=C sort`),
-- one total order across all shards.
--
--   gleam run examples/sort.lua [--desc] FILE|GLOB ...
local gleam = require "gleam"

local files, desc = {}, false
for _, a in ipairs(arg) do
  if a == "--desc" then desc = true else files[#files + 1] = a end
end
if #files == 0 then
  io.stderr:write("usage: gleam run examples/sort.lua [--desc] FILE|GLOB ...\n")
  os.exit(2)
end

gleam.flow("sort")
  :text(files)
  :sort_by(1, { desc = desc })
  :printf("%s\n")
  :run()
