-- Every example runs, and its output matches an independent oracle
-- (coreutils tr/sort/uniq, or a plain Lua loop).
local src = os.getenv("GLEAM_SOURCE_DIR") or "."
local bin = os.getenv("GLEAM_BIN") or (src .. "/build/gleam")

local sh = require("helpers").sh

local tmp
local function path(name) return tmp .. "/" .. name end

local function write(name, text)
  local f = assert(io.open(path(name), "wb"))
  f:write(text)
  f:close()
end

local seed = 12345
local function rand(n)
  seed = (seed * 1103515245 + 12345) % 2147483648
  return seed % n
end

setup(function()
  tmp = sh("mktemp -d"):gsub("%s+$", "")
  -- text with a skewed vocabulary, mixed case, punctuation, a long line,
  -- an empty line and no newline at the end of the last file
  local words = {}
  for i = 1, 300 do words[i] = ("w" .. i):rep(1 + i % 3) .. (i % 5 == 0 and "X" or "") end
  for f = 1, 3 do
    local lines = {}
    for l = 1, 2000 do
      local t = {}
      for _ = 1, 1 + rand(12) do
        local r = rand(1000)
        t[#t + 1] = words[1 + math.floor(r * r / 1000 / 1000 * 299)]
      end
      lines[l] = table.concat(t, ({ " ", ", ", "--", "\t" })[1 + rand(4)])
    end
    lines[#lines + 1] = ""
    lines[#lines + 1] = ("long" .. f .. " "):rep(500)
    write("in" .. f .. ".txt", table.concat(lines, "\n") .. (f == 3 and "" or "\n"))
  end
  local scores = {}
  for i = 1, 5000 do scores[i] = "name" .. rand(3000) .. "\t" .. rand(100000) end
  write("scores.tsv", table.concat(scores, "\n") .. "\n")
end)

teardown(function() sh("rm -rf '" .. tmp .. "'") end)

local function wordcount_oracle()
  return sh("cat " .. path("in*.txt") .. " | LC_ALL=C tr -cs 'A-Za-z0-9' '\\n' | grep -v '^$' | LC_ALL=C sort | uniq -c"
    .. " | awk '{print $2 \"\\t\" $1}' | LC_ALL=C sort -t '\t' -k2,2nr -k1,1 | head -10")
end

describe("examples/wordcount.lua", function()
  for _, mode in ipairs({ "", "--lua" }) do
    for _, workers in ipairs({ 1, 2, 8 }) do
      it("matches tr | sort | uniq -c " .. mode .. " with " .. workers .. " workers", function()
        local want = wordcount_oracle()
        local got, ok = sh(string.format("%s run --workers %d %s/examples/wordcount.lua %s '%s'",
          bin, workers, src, mode, path("in*.txt")))
        assert.is_true(ok, got)
        assert.are.equal(want, got)
      end)
    end
  end

  it("runs with no arguments on the repository's documents", function()
    local got, ok = sh(bin .. " run " .. src .. "/examples/wordcount.lua")
    assert.is_true(ok, got)
    local lines = 0
    for l in got:gmatch("[^\n]+") do
      assert.truthy(l:match("^[A-Za-z0-9]+\t%d+$"), l)
      lines = lines + 1
    end
    assert.are.equal(10, lines)
  end)
end)

describe("examples/sort.lua", function()
  it("matches LC_ALL=C sort, ascending and descending", function()
    local want = sh("LC_ALL=C sort " .. path("in*.txt"))
    local got, ok = sh(string.format("%s run %s/examples/sort.lua '%s'", bin, src, path("in*.txt")))
    assert.is_true(ok, got)
    assert.are.equal(want, got)
    want = sh("LC_ALL=C sort -r " .. path("in*.txt"))
    got = sh(string.format("%s run --workers 3 %s/examples/sort.lua --desc '%s'", bin, src, path("in*.txt")))
    assert.are.equal(want, got)
  end)
end)

describe("examples/top.lua", function()
  it("matches a plain Lua loop", function()
    local rows = {}
    for line in io.lines(path("scores.tsv")) do
      local name, score = line:match("^([^\t]*)\t(.*)$")
      rows[#rows + 1] = { name, tonumber(score) }
    end
    table.sort(rows, function(a, b)
      if a[2] ~= b[2] then return a[2] > b[2] end
      return a[1] < b[1]
    end)
    local want = {}
    for i = 1, 25 do want[i] = rows[i][1] .. "\t" .. rows[i][2] .. "\n" end
    local got, ok = sh(string.format("%s run %s/examples/top.lua 25 %s", bin, src, path("scores.tsv")))
    assert.is_true(ok, got)
    assert.are.equal(table.concat(want), got)
  end)
end)

-- sqlite3 over the same CSV files is the oracle for the CSV examples.
local function sqlite(sql)
  local data = src .. "/examples/data"
  local script = path("q.sql")
  write("q.sql", table.concat({
    ".mode csv",
    ".import '" .. data .. "/orders.csv' orders",
    ".import '" .. data .. "/customers.csv' customers",
    ".mode tabs",
    sql,
  }, "\n") .. "\n")
  return sh("sqlite3 :memory: < '" .. script .. "'")
end

describe("examples/join.lua", function()
  it("matches sqlite3's left join and group by", function()
    local want = sqlite([[SELECT coalesce(c.region, '(none)'), count(*), printf('%.2f', sum(CAST(o.amount AS REAL)))
      FROM orders o LEFT JOIN customers c ON o.customer = c.customer GROUP BY 1 ORDER BY 1;]])
    for _, w in ipairs({ 1, 2, 8 }) do
      local got, ok = sh(string.format("%s run --workers %d %s/examples/join.lua", bin, w, src))
      assert.is_true(ok, got)
      assert.are.equal(want, got)
    end
  end)
end)

describe("examples/csv.lua", function()
  it("matches sqlite3's group by and order", function()
    local want = sqlite([[SELECT customer, printf('%.2f', sum(CAST(amount AS REAL))) AS total, count(*)
      FROM orders GROUP BY customer ORDER BY sum(CAST(amount AS REAL)) DESC, customer;]])
    for _, w in ipairs({ 1, 2, 8 }) do
      local got, ok = sh(string.format("%s run --workers %d %s/examples/csv.lua", bin, w, src))
      assert.is_true(ok, got)
      assert.are.equal(want, got)
    end
  end)
end)

describe("the README's flow example", function()
  it("runs as written and counts lowercased words like a plain Lua loop", function()
    local f = io.open(src .. "/README.md")
    local text = f:read("*a")
    f:close()
    local at = text:find("<!-- test: spec/examples_spec.lua runs this block -->", 1, true)
    local job = at and text:match("```lua\n(.-)```", at)
    assert.truthy(job, "no marked lua block in README.md")
    write("readme_job.lua", job)
    local got, ok = sh(string.format("%s run '%s' '%s'", bin, path("readme_job.lua"), path("in1.txt")))
    assert.is_true(ok, got)
    -- oracle: the same count in plain Lua, ties broken by the word
    local counts = {}
    for line in io.lines(path("in1.txt")) do
      for w in line:gmatch("[A-Za-z0-9]+") do
        w = w:lower()
        counts[w] = (counts[w] or 0) + 1
      end
    end
    local list = {}
    for w, c in pairs(counts) do list[#list + 1] = { w, c } end
    table.sort(list, function(a, b)
      if a[2] ~= b[2] then return a[2] > b[2] end
      return a[1] < b[1]
    end)
    local want = {}
    for i = 1, math.min(10, #list) do want[i] = list[i][1] .. "\t" .. list[i][2] .. "\n" end
    assert.are.equal(table.concat(want), got)
  end)
end)
