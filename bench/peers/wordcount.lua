-- Word count as a plain single-process LuaJIT script (no gleam): the 100
-- most frequent words of FILE, "word\tcount", ties by word.
--
--   luajit bench/peers/wordcount.lua FILE
local counts = {}
for line in io.lines(arg[1]) do
  for w in line:gmatch("[A-Za-z0-9]+") do counts[w] = (counts[w] or 0) + 1 end
end
local all = {}
for w, n in pairs(counts) do all[#all + 1] = { w, n } end
table.sort(all, function(a, b) if a[2] ~= b[2] then return a[2] > b[2] end return a[1] < b[1] end)
local out = {}
for i = 1, math.min(100, #all) do out[i] = all[i][1] .. "\t" .. all[i][2] end
if #out > 0 then io.write(table.concat(out, "\n"), "\n") end
