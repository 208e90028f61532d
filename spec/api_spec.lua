-- api_spec: every method of the flow API (README "The API"), checked
-- against a plain Lua computation over the same input, each case run with
-- 1, 2 and 8 workers and several shard counts. Unordered outputs are
-- compared as multisets; sort_by and top exactly, in order.
local gleam = require "gleam"
local h = require "helpers"
local lcg = h.lcg
local ffi = require "ffi"

-- Shard counts tried for every source and wide step (false: the default).
local SHARDS = { false, 1, 3, 7 }

-- Returns { shards = sh } (or {} for the default) merged with t.
local function sopt(sh, t)
  local o = {}
  for k, v in pairs(t or {}) do o[k] = v end
  if sh then o.shards = sh end
  return o
end

-- Runs build(shards) for every worker count and shard count and checks its
-- rows against expected: as multisets, or in order with ordered = true.
-- opts.check(rows, ctx) replaces the comparison with a custom one.
-- Returns the rows of each run.
local function check(build, expected, opts)
  opts = opts or {}
  local runs = {}
  for _, w in ipairs(h.WORKERS) do
    for _, sh in ipairs(opts.shards or SHARDS) do
      local ctx = h.label { workers = w, shards = tostring(sh) }
      local got = build(sh or nil):collect { workers = w }
      if opts.check then
        opts.check(got, ctx)
      elseif opts.ordered then
        h.assert_rows(expected, got, ctx)
      else
        h.assert_same_rows(expected, got, ctx)
      end
      runs[#runs + 1] = { ctx = ctx, rows = got }
    end
  end
  return runs
end

-- Asserts every run gave exactly the same rows in the same order.
local function assert_same_order(runs)
  for i = 2, #runs do
    h.assert_rows(runs[1].rows, runs[i].rows,
      runs[i].ctx .. " differs in order from " .. runs[1].ctx)
  end
end

-- The README's order on values: nil < booleans < numbers < strings <
-- arrays < maps; numbers numerically, strings byte-wise. Returns -1, 0, 1.
-- (Only scalars are compared by value here.)
local function rank(v)
  local t = type(v)
  if t == "nil" then return 0 end
  if t == "boolean" then return 1 end
  if t == "number" or t == "cdata" then return 2 end
  if t == "string" then return 3 end
  if t == "table" then
    if next(v) == nil or v[1] ~= nil then return 4 end
    return 5
  end
  error("no rank for " .. t)
end

local function cmp_value(a, b)
  local ra, rb = rank(a), rank(b)
  if ra ~= rb then return ra < rb and -1 or 1 end
  if ra == 0 then return 0 end
  if ra == 1 then
    if a == b then return 0 end
    return a and 1 or -1
  end
  if ra == 2 or ra == 3 then
    if a == b then return 0 end
    return a < b and -1 or 1
  end
  error("cmp_value: tables are not compared by this helper")
end

local function cmp_row(a, b)
  local n = math.min(a.n, b.n)
  for k = 1, n do
    local c = cmp_value(a[k], b[k])
    if c ~= 0 then return c end
  end
  if a.n == b.n then return 0 end
  return a.n < b.n and -1 or 1
end

-- Returns rows sorted by the key fields (desc if asked), ties by the whole
-- row ascending (ties_desc: descending).
local function sort_rows(rows, fields, desc, ties_desc)
  local out = {}
  for i, r in ipairs(rows) do out[i] = r end
  table.sort(out, function(a, b)
    for _, f in ipairs(fields) do
      local c = cmp_value(a[f], b[f])
      if c ~= 0 then
        if desc then return c > 0 end
        return c < 0
      end
    end
    local c = cmp_row(a, b)
    if ties_desc then return c > 0 end
    return c < 0
  end)
  return out
end

local function first_n(rows, n)
  local out = {}
  for i = 1, math.min(n, #rows) do out[i] = rows[i] end
  return out
end

-- Asserts got equals one of the candidate lists (the ways ties may be
-- broken where the README leaves the direction open).
local function assert_one_of(candidates, got, ctx)
  local msgs = {}
  for _, c in ipairs(candidates) do
    local ok, msg = h.rows_equal(c, got)
    if ok then return end
    msgs[#msgs + 1] = msg
  end
  assert(false, ctx .. ": " .. msgs[1])
end

local function words_of(line)
  local t = {}
  for w in line:gmatch("[A-Za-z0-9]+") do t[#t + 1] = w end
  return t
end


after_each(h.cleanup)

-- Text files used by the text cases, made once for the whole file.
local dir, files = nil, {}
local ALL_LINES = {} -- name -> its lines

local function mkfile(name, content)
  local path = dir .. "/" .. name
  h.write_file(path, content)
  files[name] = path
  ALL_LINES[name] = h.lines_of(content)
  return path
end

local function text_rows(names)
  local out = {}
  for _, n in ipairs(names) do
    for _, l in ipairs(ALL_LINES[n]) do out[#out + 1] = { l, n = 1 } end
  end
  return out
end

setup(function()
  -- made with io.popen directly: helpers.cleanup() runs after each test
  local p = assert(io.popen("mktemp -d \"${TMPDIR:-/tmp}/gleam-api-spec.XXXXXX\""))
  dir = p:read("*l")
  p:close()
  mkfile("one.txt", "alpha beta\nbeta\n\ngamma delta alpha\n")
  mkfile("two.txt", "x\ny y\nz") -- no trailing newline
  mkfile("empty.txt", "")
  mkfile("blank.txt", "\n\n\n")
  mkfile("single.txt", "only line, no newline")
  local rnd = lcg(7)
  local big = {}
  for i = 1, 3000 do
    big[#big + 1] = string.format("%05d %s", i, string.rep(string.char(97 + rnd(26)), rnd(40)))
  end
  mkfile("big.txt", table.concat(big, "\n") .. "\n")
  assert((os.execute("mkdir " .. h.quote(dir .. "/many"))) == 0, "shell command failed")
  for i = 1, 200 do
    local name = string.format("many/f%03d.txt", i)
    local lines = {}
    for j = 1, i % 4 do lines[j] = string.format("file %d line %d", i, j) end
    -- every 7th file has no trailing newline, every 13th is empty
    local content = table.concat(lines, "\n")
    if i % 13 == 0 then content = ""
    elseif i % 7 ~= 0 and content ~= "" then content = content .. "\n" end
    mkfile(name, content)
  end
end)

teardown(function()
  if dir then h.rmtree(dir) end
end)

describe("flow:text", function()
  it("reads one file, a line per row, keeping empty lines", function()
    local expected = text_rows { "one.txt" }
    assert.equals(4, #expected)
    check(function(sh) return gleam.flow("t"):text(files["one.txt"], sopt(sh)) end, expected)
  end)

  it("reads a last line without a trailing newline", function()
    check(function(sh) return gleam.flow("t"):text(files["two.txt"], sopt(sh)) end,
      h.rows_of { "x", "y y", "z" })
    check(function(sh) return gleam.flow("t"):text(files["single.txt"], sopt(sh)) end,
      h.rows_of { "only line, no newline" })
  end)

  it("gives an empty row for each empty line", function()
    check(function(sh) return gleam.flow("t"):text(files["blank.txt"], sopt(sh)) end,
      h.rows_of { "", "", "" })
  end)

  it("gives no rows for an empty file", function()
    check(function(sh) return gleam.flow("t"):text(files["empty.txt"], sopt(sh)) end, {})
    for _, w in ipairs(h.WORKERS) do
      assert.equals(0, gleam.flow("t"):text(files["empty.txt"]):count { workers = w })
    end
  end)

  it("reads a list of files", function()
    local names = { "one.txt", "two.txt", "empty.txt", "blank.txt" }
    local paths = {}
    for i, n in ipairs(names) do paths[i] = files[n] end
    check(function(sh) return gleam.flow("t"):text(paths, sopt(sh)) end, text_rows(names))
  end)

  it("reads the files matching a glob", function()
    local names = { "one.txt", "two.txt", "empty.txt", "blank.txt", "single.txt", "big.txt" }
    check(function(sh) return gleam.flow("t"):text(dir .. "/*.txt", sopt(sh)) end, text_rows(names))
  end)

  it("reads a list mixing globs and paths", function()
    local names = { "one.txt", "two.txt" }
    for i = 10, 19 do names[#names + 1] = string.format("many/f%03d.txt", i) end
    check(function(sh)
      return gleam.flow("t"):text({ files["one.txt"], dir .. "/many/f01?.txt", files["two.txt"] }, sopt(sh))
    end, text_rows(names))
  end)

  it("splits a file on line boundaries for any shard count", function()
    local expected = text_rows { "big.txt" }
    assert.equals(3000, #expected)
    check(function(sh) return gleam.flow("t"):text(files["big.txt"], sopt(sh)) end, expected,
      { shards = { false, 1, 2, 3, 7, 16, 64 } })
  end)

  it("gives every line of 200 small files once", function()
    local names = {}
    for i = 1, 200 do names[i] = string.format("many/f%03d.txt", i) end
    local expected = text_rows(names)
    check(function(sh) return gleam.flow("t"):text(dir .. "/many/*.txt", sopt(sh)) end, expected,
      { shards = { false, 1, 3, 50, 500 } })
    for _, w in ipairs(h.WORKERS) do
      assert.equals(#expected, gleam.flow("t"):text(dir .. "/many/*.txt"):count { workers = w })
    end
  end)

  it("gives more shards than lines without losing or repeating a line", function()
    check(function(sh) return gleam.flow("t"):text(files["one.txt"], sopt(sh)) end,
      text_rows { "one.txt" }, { shards = { 30, 100 } })
  end)
end)

describe("flow:rows", function()
  it("takes row tables, n giving the field count (trailing nils kept), and single values", function()
    local list = {
      { 1, "a" },
      { 2, nil, n = 3 },
      { n = 1 },
      "single",
      42,
      true,
      { "x", { 1, 2 }, { k = "v" } },
    }
    local expected = {
      h.row(1, "a"),
      h.row(2, nil, nil),
      h.row(nil),
      h.row("single"),
      h.row(42),
      h.row(true),
      h.row("x", { 1, 2 }, { k = "v" }),
    }
    check(function(sh) return gleam.flow("r"):rows(list, sopt(sh)) end, expected)
  end)

  it("keeps an empty row table as a row of no fields", function()
    check(function(sh) return gleam.flow("r"):rows({ { n = 0 }, { 1 } }, sopt(sh)) end,
      { h.row(), h.row(1) })
  end)

  it("gives no rows for an empty list", function()
    check(function(sh) return gleam.flow("r"):rows({}, sopt(sh)) end, {})
  end)

  it("keeps value types through the workers: -0.0, inf, nan, int64, bytes, nested tables", function()
    local big, nbig = ffi.new("int64_t", 2 ^ 60), -ffi.new("int64_t", 2 ^ 60) - 7
    local list = {
      { 1, -0.0 }, { 2, math.huge }, { 3, -math.huge }, { 4, 0 / 0 },
      { 5, big }, { 6, nbig }, { 7, 2 ^ 53 }, { 8, -2 ^ 53 }, { 9, 0.1 },
      { 10, "a\0b\255\n" }, { 11, { 1, { 2, { 3 } } } }, { 12, { a = { b = true } } },
      { 13, 1e300 }, { 14, -1.5 }, { 15, 4294967296 }, { 16, -2147483649 },
    }
    local expected = h.rows_of(list)
    -- through a narrow step and through a shuffle (sort_by field 1)
    check(function(sh)
      return gleam.flow("r"):rows(list, sopt(sh)):map(function(...) return ... end)
    end, expected)
    check(function(sh)
      return gleam.flow("r"):rows(list, sopt(sh)):sort_by(1, sopt(sh))
    end, expected, { ordered = true })
    local got = gleam.flow("r"):rows(list):collect { workers = 2 }
    table.sort(got, function(a, b) return a[1] < b[1] end)
    assert.is_true(ffi.istype("int64_t", got[5][2]), "2^60 stays an int64 cdata")
    assert.is_true(got[5][2] == big)
    assert.equals("number", type(got[7][2]))
    assert.is_true(1 / got[1][2] < 0, "-0.0 keeps its sign")
  end)
end)

describe("flow:range", function()
  local function ints(a, b)
    local t = {}
    for i = a, b do t[#t + 1] = { i, n = 1 } end
    return t
  end

  it("range(n) is 1..n", function()
    check(function() return gleam.flow("n"):range(10) end, ints(1, 10), { shards = { false } })
    check(function() return gleam.flow("n"):range(1) end, ints(1, 1), { shards = { false } })
  end)

  it("range(a, b) is a..b", function()
    check(function() return gleam.flow("n"):range(3, 7) end, ints(3, 7), { shards = { false } })
    check(function() return gleam.flow("n"):range(-2, 2) end, ints(-2, 2), { shards = { false } })
    check(function() return gleam.flow("n"):range(5, 5) end, ints(5, 5), { shards = { false } })
  end)

  it("empty ranges give no rows", function()
    check(function() return gleam.flow("n"):range(0) end, {}, { shards = { false } })
    check(function() return gleam.flow("n"):range(-3) end, {}, { shards = { false } })
    check(function() return gleam.flow("n"):range(5, 3) end, {}, { shards = { false } })
  end)

  it("counts a large range", function()
    for _, w in ipairs(h.WORKERS) do
      assert.equals(100000, gleam.flow("n"):range(100000):count { workers = w })
      assert.equals(100001, gleam.flow("n"):range(-50000, 50000):count { workers = w })
    end
  end)
end)

describe("ds:map", function()
  local list = {}
  for i = 1, 500 do list[i] = { i, "s" .. i } end

  it("returns the new row's fields", function()
    local expected = {}
    for i = 1, 500 do expected[i] = h.row(("s" .. i):upper(), i * 2, i % 3 == 0) end
    check(function(sh)
      return gleam.flow("m"):rows(list, sopt(sh))
        :map(function(i, s) return s:upper(), i * 2, i % 3 == 0 end)
    end, expected)
  end)

  it("keeps trailing nils and empty returns as field counts", function()
    local expected = {}
    for i = 1, 500 do
      expected[i] = i % 2 == 0 and h.row(i, nil, nil) or h.row()
    end
    check(function(sh)
      return gleam.flow("m"):rows(list, sopt(sh))
        :map(function(i) if i % 2 == 0 then return i, nil, nil end end)
    end, expected)
  end)

  it("chains", function()
    local expected = {}
    for i = 1, 100 do expected[i] = h.row(i * i + 1) end
    check(function(sh)
      return gleam.flow("m"):rows(h.rows_of((function()
        local t = {}
        for i = 1, 100 do t[i] = i end
        return t
      end)()), sopt(sh)):map(function(i) return i * i end):map(function(x) return x + 1 end)
    end, expected)
  end)
end)

describe("ds:flatmap", function()
  local lines = { "the quick brown fox", "", "jumps over the lazy dog", "the end 42" }

  it("takes an iterator (gmatch)", function()
    local expected = {}
    for _, l in ipairs(lines) do
      for _, w in ipairs(words_of(l)) do expected[#expected + 1] = h.row(w) end
    end
    check(function(sh)
      return gleam.flow("f"):rows(lines, sopt(sh))
        :flatmap(function(line) return line:gmatch("[A-Za-z0-9]+") end)
    end, expected)
  end)

  -- The rows a flatmap of gmatch(pat) gives over text: each match's
  -- values (its captures, or the match).
  local function matches(text, pat)
    local rows = {}
    for _, l in ipairs(text) do
      local it = l:gmatch(pat)
      while true do
        local r = { n = 0 }
        local function take(...) r.n = select("#", ...); for i = 1, r.n do r[i] = (select(i, ...)) end end
        take(it())
        if r[1] == nil then break end
        rows[#rows + 1] = r
      end
    end
    return rows
  end
  local captures_text = { "ab (cd) e", "", "(f)(gh)", "ij kl (m", "no captures here" }
  local capture_patterns = { "%a+", "(%a)(%a*)", "()%a+", "[(]%a", "%((%a)", "(%a+)", "%a" }

  -- worker.lua calls a gmatch iterator for one value once its pattern has
  -- shown it gives one: patterns with and without captures, side by side.
  it("takes gmatch iterators with and without captures", function()
    local text = captures_text
    for _, pat in ipairs(capture_patterns) do
      local expected = matches(text, pat)
      check(function(sh)
        return gleam.flow("f"):rows(text, sopt(sh)):flatmap(function(line) return line:gmatch(pat) end)
      end, expected)
    end
  end)

  -- function(line) return line:gmatch("<constant>") end is recognised
  -- from its bytecode and the worker calls string.gmatch itself
  -- (gleam.gmatch): the same rows, captures or not.
  it("takes line:gmatch with a constant pattern as it takes any function", function()
    local gm = require "gleam.gmatch"
    local text = captures_text
    for _, pat in ipairs(capture_patterns) do
      local expected = matches(text, pat)
      local fn = assert(loadstring(("return function(line, extra) return line:gmatch(%q) end"):format(pat)))()
      assert.equals(pat, gm.pattern_of(fn))
      check(function(sh)
        return gleam.flow("f"):rows(text, sopt(sh)):flatmap(fn)
      end, expected)
    end
    -- not recognised: an upvalue, a call on something else, a second argument
    local pat = "%a+"
    assert.is_nil(gm.pattern_of(function(line) return line:gmatch(pat) end))
    assert.is_nil(gm.pattern_of(function(line) return line:lower():gmatch("%a+") end))
    assert.is_nil(gm.pattern_of(function(line) return line:gmatch("%a+"), 1 end))
    assert.is_nil(gm.pattern_of(function(a, line) return line:gmatch("%a+") end))
    assert.is_nil(gm.pattern_of(function(line) return line:find("%a+") end))
  end)

  it("takes gleam.fn.words", function()
    local expected = {}
    for _, l in ipairs(lines) do
      for _, w in ipairs(words_of(l)) do expected[#expected + 1] = h.row(w) end
    end
    check(function(sh) return gleam.flow("f"):rows(lines, sopt(sh)):flatmap(gleam.fn.words) end, expected)
  end)

  it("takes an array, each item a row", function()
    local expected = {}
    for i = 1, 50 do
      for j = 1, i % 5 do expected[#expected + 1] = h.row(i * 100 + j) end
    end
    check(function(sh)
      return gleam.flow("f"):range(50):map(function(i) return i end)
        :sort_by(1, sopt(sh)) -- reshard, so shard counts matter
        :flatmap(function(i)
          local t = {}
          for j = 1, i % 5 do t[j] = i * 100 + j end
          return t
        end)
    end, expected)
  end)

  it("unpacks table items into fields, from an array or an iterator", function()
    local expected = {}
    for _, l in ipairs(lines) do
      for _, w in ipairs(words_of(l)) do expected[#expected + 1] = h.row(w, #w, nil) end
    end
    check(function(sh)
      return gleam.flow("f"):rows(lines, sopt(sh)):flatmap(function(line)
        local t = {}
        for w in line:gmatch("[A-Za-z0-9]+") do t[#t + 1] = { w, #w, nil, n = 3 } end
        return t
      end)
    end, expected)
    check(function(sh)
      return gleam.flow("f"):rows(lines, sopt(sh)):flatmap(function(line)
        local it = line:gmatch("[A-Za-z0-9]+")
        return function()
          local w = it()
          if w then return { w, #w, nil, n = 3 } end
        end
      end)
    end, expected)
  end)

  it("gives no rows when the function returns nil or an empty array", function()
    check(function(sh)
      return gleam.flow("f"):range(100):map(function(i) return i end):sort_by(1, sopt(sh))
        :flatmap(function(i) if i % 2 == 0 then return nil end return {} end)
    end, {})
    local expected = {}
    for i = 1, 100 do if i % 10 == 0 then expected[#expected + 1] = h.row(i) end end
    check(function(sh)
      return gleam.flow("f"):range(100):map(function(i) return i end):sort_by(1, sopt(sh))
        :flatmap(function(i) if i % 10 == 0 then return { i } end end)
    end, expected)
  end)
end)

describe("ds:filter", function()
  it("keeps the rows where f is true (Lua truth: 0 and '' are true)", function()
    local list = {}
    for i = 1, 300 do list[i] = { i, i % 3 == 0 and false or (i % 3 == 1 and 0 or nil), n = 2 } end
    local expected = {}
    for _, r in ipairs(list) do if r[2] ~= nil and r[2] ~= false then expected[#expected + 1] = h.row(r[1], r[2]) end end
    check(function(sh)
      return gleam.flow("f"):rows(list, sopt(sh)):filter(function(_, v) return v end)
    end, expected)
  end)

  it("keeps whole rows", function()
    local expected = {}
    for i = 1, 200 do if i % 7 == 0 then expected[#expected + 1] = h.row(i, "r" .. i, nil) end end
    check(function(sh)
      local list = {}
      for i = 1, 200 do list[i] = { i, "r" .. i, nil, n = 3 } end
      return gleam.flow("f"):rows(list, sopt(sh)):filter(function(i) return i % 7 == 0 end)
    end, expected)
  end)
end)

describe("ds:select", function()
  local list = {}
  for i = 1, 100 do list[i] = { i, "b" .. i, i * 1.5, "d" .. i } end

  it("gives the fields at those positions, in that order", function()
    local expected = {}
    for i = 1, 100 do expected[i] = h.row("d" .. i, i, i) end
    check(function(sh) return gleam.flow("s"):rows(list, sopt(sh)):select(4, 1, 1) end, expected)
  end)

  it("takes a list", function()
    local expected = {}
    for i = 1, 100 do expected[i] = h.row(i * 1.5) end
    check(function(sh) return gleam.flow("s"):rows(list, sopt(sh)):select { 3 } end, expected)
  end)

  it("gives nil for a position past the row's fields (field count kept)", function()
    -- README: "the fields at those positions"; a missing field is nil.
    local expected = {}
    for i = 1, 100 do expected[i] = h.row(i, nil) end
    check(function(sh) return gleam.flow("s"):rows(list, sopt(sh)):select(1, 9) end, expected)
  end)
end)

describe("ds:reduce_by_key", function()
  local lines = {}
  local rnd = lcg(42)
  local vocab = { "a", "b", "c", "dd", "ee", "fff", "g", "h", "A", "B", "1", "22" }
  for i = 1, 400 do
    local ws = {}
    for j = 1, 1 + rnd(8) do ws[j] = vocab[1 + rnd(#vocab)] end
    lines[i] = table.concat(ws, " ")
  end

  local function word_counts()
    local c = {}
    for _, l in ipairs(lines) do for _, w in ipairs(words_of(l)) do c[w] = (c[w] or 0) + 1 end end
    local out = {}
    for w, n in pairs(c) do out[#out + 1] = h.row(w, n) end
    return out
  end

  it("sums with a Lua function", function()
    check(function(sh)
      return gleam.flow("w"):rows(lines, sopt(sh)):flatmap(gleam.fn.words)
        :map(function(w) return w, 1 end)
        :reduce_by_key(function(a, b) return a + b end, sopt(sh))
    end, word_counts())
  end)

  it("sums with gleam.fn.sum", function()
    check(function(sh)
      return gleam.flow("w"):rows(lines, sopt(sh)):flatmap(gleam.fn.words)
        :map(function(w) return w, 1 end)
        :reduce_by_key(gleam.fn.sum, sopt(sh))
    end, word_counts())
  end)

  it("counts with gleam.fn.count", function()
    check(function(sh)
      return gleam.flow("w"):rows(lines, sopt(sh)):flatmap(gleam.fn.words)
        :reduce_by_key(gleam.fn.count, sopt(sh))
    end, word_counts())
  end)

  -- A Lua chain before a Lua combine runs in one op, its rows never
  -- encoded (worker.lua): the rows, values and order must be those of the
  -- same flow with a C op (select) between them, whatever the values are.
  describe("with a Lua chain before it", function()
    local list = {}
    -- "big": a whole number past 2^53 made on the worker (upvalues travel
    -- encoded, so one written here would arrive as an int64 already).
    local vals = { 1, 2.5, -0.0, "big", 1e300, -7, "s", { 1, 2 }, true, "big2" }
    for i = 1, 300 do list[i] = i end
    local function row_of(i)
      local k = ({ "a", "bb", 3, 4.5, "a", "cc", "bb" })[i % 7 + 1]
      local v = vals[i % #vals + 1]
      if v == "big" then v = 2 ^ 60 + i * 1024 elseif v == "big2" then v = -(2 ^ 53) - 2 end
      return k, v
    end
    -- Shows every value it is given (an int64 shows as 123LL, a table by
    -- its length); a table first value grows in place, as a combine may
    -- when its values are its own copies.
    local function show(x) return type(x) == "table" and ("t" .. #x) or tostring(x) end
    local function red(a, b)
      if type(a) == "table" then a[#a + 1] = show(b); return a end
      return show(a) .. "|" .. show(b)
    end
    local function both(build)
      for _, w in ipairs(h.WORKERS) do
        for _, sh in ipairs({ false, 1, 3 }) do
          local ctx = h.label { workers = w, shards = tostring(sh) }
          local fused = build(sh or nil, false):collect { workers = w }
          local split = build(sh or nil, true):collect { workers = w }
          h.assert_rows(split, fused, ctx)
        end
      end
    end

    it("gives the rows the same flow gives with the rows encoded", function()
      both(function(sh, split)
        local ds = gleam.flow("c"):rows(list, sopt(sh)):map(row_of)
        if split then ds = ds:select(1, 2) end
        return ds:reduce_by_key(red, sopt(sh))
      end)
      -- words from gmatch, counted (the benchmark's shape)
      both(function(sh, split)
        local ds = gleam.flow("c"):rows(lines, sopt(sh))
          :flatmap(function(l) return l:gmatch("%w+") end):map(function(w) return w, 1 end)
        if split then ds = ds:select(1, 2) end
        return ds:reduce_by_key(function(a, b) return a + b end, sopt(sh))
      end)
      -- a combine giving nil for a key, which later rows of it then meet
      both(function(sh, split)
        local ds = gleam.flow("c"):rows(lines, sopt(sh))
          :flatmap(function(l) return l:gmatch("%w+") end):map(function(w) return w, 1 end)
        if split then ds = ds:select(1, 2) end
        return ds:reduce_by_key(function(a, b) if a == 2 then return nil end return (a or 0) + (b or 0) end, sopt(sh))
      end)
      -- two value fields, and a key that is not field 1
      both(function(sh, split)
        local ds = gleam.flow("c"):rows(list, sopt(sh))
          :map(function(i) local k, v = row_of(i); return i % 3, k, type(v) == "number" and v or 1 end)
        if split then ds = ds:select(1, 2, 3) end
        return ds:reduce_by_key(red, sopt(sh, { key = 2 }))
      end)
    end)

    it("fails as the same flow fails with the rows encoded", function()
      local function msg(build)
        local ok, err = pcall(function() return build():collect { workers = 1 } end)
        assert.is_false(ok)
        return (tostring(err):gsub("select %b()", ""))
      end
      -- the combine fails on a row
      local function bad(split)
        return function()
          local ds = gleam.flow("c"):rows({ "x y x", "y x" })
            :flatmap(function(l) return l:gmatch("%w+") end):map(function(w) return w, 1 end)
          if split then ds = ds:select(1, 2) end
          return ds:reduce_by_key(function(a, b) if a > 1 then error("too many") end return a + b end)
        end
      end
      assert.equals(msg(bad(true)), msg(bad(false)))
      -- rows with a different number of value fields
      local function uneven(split)
        return function()
          local ds = gleam.flow("c"):rows({ 1, 2, 3 }):map(function(i) if i == 3 then return "k", 1, 2 end return "k", i end)
          if split then ds = ds:select(1, 2, 3) end
          return ds:reduce_by_key(function(a, b) return a + b end)
        end
      end
      local e = msg(uneven(false))
      assert.truthy(e:find("rows have 2 value fields, earlier rows had 1", 1, true), e)
      -- the same past a flatmap's iterator, which is still on the stack:
      -- the combine's error, not the flatmap's
      e = msg(function()
        return gleam.flow("c"):rows({ "a b c" })
          :flatmap(function(l) return l:gmatch("%a+") end)
          :map(function(w) if w == "c" then return w, 1, 2 end return w, 1 end)
          :reduce_by_key(function(a, b) return a + b end)
      end)
      assert.truthy(e:find("^reduce_by_key %(") and e:find("rows have 2 value fields, earlier rows had 1", 1, true), e)
    end)
  end)

  -- words followed by count skips the row per word (op_narrow.c): the rows
  -- and their order are those of the same count over rows a map passed on.
  it("counts gleam.fn.words in the order rows through a map give", function()
    local long = string.rep("Long9", 8)  -- 40 bytes: not a fixstr
    local text = {}
    for i, l in ipairs(lines) do text[i] = (i % 7 == 0 and (long .. ", ") or "") .. l .. ".!" end
    check(function(sh)
      return gleam.flow("w"):rows(text, sopt(sh)):flatmap(gleam.fn.words)
        :reduce_by_key(gleam.fn.count, sopt(sh))
    end, nil, { check = function(got, ctx)
      local sh = tonumber(ctx:match("shards=(%w+)"))
      local want = gleam.flow("w"):rows(text, sopt(sh)):flatmap(gleam.fn.words)
        :map(function(w) return w end):reduce_by_key(gleam.fn.count, sopt(sh))
        :collect { workers = tonumber(ctx:match("workers=(%d+)")) }
      h.assert_rows(want, got, ctx)
    end })
  end)

  -- rows (key, v1, v2): integers and doubles
  local pairs_list = {}
  for i = 1, 600 do pairs_list[i] = { "k" .. (i % 17), i, i * 0.5 } end
  local function two_sums()
    local s = {}
    for _, r in ipairs(pairs_list) do
      local t = s[r[1]] or { 0, 0 }
      s[r[1]] = t
      t[1], t[2] = t[1] + r[2], t[2] + r[3]
    end
    local out = {}
    for k, t in pairs(s) do out[#out + 1] = h.row(k, t[1], t[2]) end
    return out
  end

  it("combines two value fields with a Lua function", function()
    check(function(sh)
      return gleam.flow("v"):rows(pairs_list, sopt(sh))
        :reduce_by_key(function(a1, a2, b1, b2) return a1 + b1, a2 + b2 end, sopt(sh))
    end, two_sums())
  end)

  it("combines two value fields with gleam.fn.sum", function()
    check(function(sh)
      return gleam.flow("v"):rows(pairs_list, sopt(sh)):reduce_by_key(gleam.fn.sum, sopt(sh))
    end, two_sums())
  end)

  it("combines with a non-sum function (max, min)", function()
    local m = {}
    for _, r in ipairs(pairs_list) do
      local t = m[r[1]]
      if not t then m[r[1]] = { r[2], r[3] }
      else t[1], t[2] = math.max(t[1], r[2]), math.min(t[2], r[3]) end
    end
    local expected = {}
    for k, t in pairs(m) do expected[#expected + 1] = h.row(k, t[1], t[2]) end
    check(function(sh)
      return gleam.flow("v"):rows(pairs_list, sopt(sh))
        :reduce_by_key(function(a1, a2, b1, b2) return math.max(a1, b1), math.min(a2, b2) end, sopt(sh))
    end, expected)
  end)

  it("takes the key from field 2 (key = {2}): key fields first, then values", function()
    local list = {}
    for i = 1, 500 do list[i] = { i, i % 11 } end
    local s = {}
    for _, r in ipairs(list) do s[r[2]] = (s[r[2]] or 0) + r[1] end
    local expected = {}
    for k, v in pairs(s) do expected[#expected + 1] = h.row(k, v) end
    check(function(sh)
      return gleam.flow("v"):rows(list, sopt(sh))
        :reduce_by_key(function(a, b) return a + b end, sopt(sh, { key = { 2 } }))
    end, expected)
    check(function(sh)
      return gleam.flow("v"):rows(list, sopt(sh)):reduce_by_key(gleam.fn.sum, sopt(sh, { key = { 2 } }))
    end, expected)
  end)

  it("takes a key of two fields (key = {1, 3})", function()
    local list = {}
    for i = 1, 500 do list[i] = { "a" .. (i % 3), i, i % 4 } end
    local s = {}
    for _, r in ipairs(list) do
      local k = r[1] .. "/" .. r[3]
      s[k] = s[k] or { r[1], r[3], 0 }
      s[k][3] = s[k][3] + r[2]
    end
    local expected = {}
    for _, t in pairs(s) do expected[#expected + 1] = h.row(t[1], t[2], t[3]) end
    assert.equals(12, #expected)
    check(function(sh)
      return gleam.flow("v"):rows(list, sopt(sh))
        :reduce_by_key(function(a, b) return a + b end, sopt(sh, { key = { 1, 3 } }))
    end, expected)
    check(function(sh)
      return gleam.flow("v"):rows(list, sopt(sh)):reduce_by_key(gleam.fn.sum, sopt(sh, { key = { 1, 3 } }))
    end, expected)
  end)

  it("keeps keys of different types apart (1, '1', true, 1.5)", function()
    local list = {}
    local keys = { 1, "1", true, 1.5, false, "x" }
    for i = 1, 120 do list[i] = { keys[1 + i % #keys], 1 } end
    local expected = {}
    for _, k in ipairs(keys) do expected[#expected + 1] = h.row(k, 20) end
    check(function(sh)
      return gleam.flow("v"):rows(list, sopt(sh)):reduce_by_key(gleam.fn.sum, sopt(sh))
    end, expected)
  end)

  it("gives no rows for no input", function()
    check(function(sh)
      return gleam.flow("v"):rows({}, sopt(sh)):reduce_by_key(gleam.fn.sum, sopt(sh))
    end, {})
  end)
end)

describe("ds:reduce", function()
  it("combines all rows into one with a Lua function", function()
    check(function(sh)
      return gleam.flow("r"):range(1000):sort_by(1, sopt(sh)):reduce(function(a, b) return a + b end)
    end, { h.row(500500) })
  end)

  it("combines with gleam.fn.sum, field-wise", function()
    local s1, s2 = 0, 0
    for i = 1, 1000 do s1, s2 = s1 + i, s2 + i * i end
    check(function(sh)
      return gleam.flow("r"):range(1000):sort_by(1, sopt(sh))
        :map(function(i) return i, i * i end):reduce(gleam.fn.sum)
    end, { h.row(s1, s2) })
  end)

  it("counts with gleam.fn.count", function()
    check(function(sh)
      return gleam.flow("r"):range(777):sort_by(1, sopt(sh)):reduce(gleam.fn.count)
    end, { h.row(777) })
  end)

  it("combines with a non-sum function (max)", function()
    local list = {}
    local rnd = lcg(3)
    local m = -1
    for i = 1, 500 do list[i] = rnd(100000); m = math.max(m, list[i]) end
    check(function(sh)
      return gleam.flow("r"):rows(list, sopt(sh)):reduce(function(a, b) return math.max(a, b) end)
    end, { h.row(m) })
  end)

  it("gives no rows for no input", function()
    -- The README does not say; no rows in, no row out is the choice here.
    check(function(sh)
      return gleam.flow("r"):rows({}, sopt(sh)):reduce(function(a, b) return a + b end)
    end, {})
  end)
end)

describe("ds:sort_by", function()
  local rnd = lcg(11)
  local list = {}
  for i = 1, 1000 do list[i] = { rnd(100), "s" .. rnd(1000), i } end
  local rows = h.rows_of(list)

  it("sorts ascending by one field, ties by the whole row", function()
    check(function(sh) return gleam.flow("s"):rows(list, sopt(sh)):sort_by(1, sopt(sh)) end,
      sort_rows(rows, { 1 }), { ordered = true })
    check(function(sh) return gleam.flow("s"):rows(list, sopt(sh)):sort_by({ 1 }, sopt(sh)) end,
      sort_rows(rows, { 1 }), { ordered = true })
  end)

  it("defaults to field 1", function()
    check(function(sh) return gleam.flow("s"):rows(list, sopt(sh)):sort_by() end,
      sort_rows(rows, { 1 }), { ordered = true, shards = { false, 1, 3 } })
    local desc = { sort_rows(rows, { 1 }, true), sort_rows(rows, { 1 }, true, true) }
    check(function(sh) return gleam.flow("s"):rows(list, sopt(sh)):sort_by(sopt(sh, { desc = true })) end,
      nil, {
        shards = { false, 1, 3 },
        check = function(got, ctx) assert_one_of(desc, got, ctx) end,
      })
  end)

  it("sorts descending, the same order for any shards and workers", function()
    -- ties are broken by the whole row; the README leaves its direction open
    local desc = { sort_rows(rows, { 1 }, true), sort_rows(rows, { 1 }, true, true) }
    local runs = check(function(sh)
      return gleam.flow("s"):rows(list, sopt(sh)):sort_by(1, sopt(sh, { desc = true }))
    end, nil, { check = function(got, ctx) assert_one_of(desc, got, ctx) end })
    assert_same_order(runs)
  end)

  it("sorts by several fields", function()
    check(function(sh) return gleam.flow("s"):rows(list, sopt(sh)):sort_by({ 2, 1 }, sopt(sh)) end,
      sort_rows(rows, { 2, 1 }), { ordered = true })
    check(function(sh) return gleam.flow("s"):rows(list, sopt(sh)):sort_by({ 1, 3 }, sopt(sh, { desc = true })) end,
      sort_rows(rows, { 1, 3 }, true), { ordered = true })
  end)

  it("orders integers and doubles numerically, int64 included", function()
    local big = ffi.new("int64_t", 2 ^ 60)
    -- (value, id): ids make every row distinct
    -- (any Lua number with no fraction is stored as an integer, so the
    -- doubles here are the fractional ones, +-inf and -1e300)
    local vals = { 3, 1.5, 2, 2.5, -1, 0.25, 1e10, -1e-3, 2 ^ 53, -0.5, big, ffi.new("int64_t", 1e18),
      ffi.new("int64_t", 2e18), -1e300, math.huge, -math.huge, 7, 6.999 }
    local input = {}
    for i, v in ipairs(vals) do input[i] = { v, i } end
    local order = { 16, 14, 5, 10, 8, 6, 2, 3, 4, 1, 18, 17, 7, 9, 12, 11, 13, 15 }
    local expected = {}
    for i, k in ipairs(order) do expected[i] = h.row(vals[k], k) end
    check(function(sh) return gleam.flow("s"):rows(input, sopt(sh)):sort_by(1, sopt(sh)) end,
      expected, { ordered = true })
    local rev = {}
    for i = #expected, 1, -1 do rev[#rev + 1] = expected[i] end
    check(function(sh) return gleam.flow("s"):rows(input, sopt(sh)):sort_by(1, sopt(sh, { desc = true })) end,
      rev, { ordered = true })
  end)

  it("orders strings byte-wise", function()
    local strs = { "b", "a", "", "B", "ab", "a\0", "\195\169", "z", "Z", "aa", "a b", "\255", "~" }
    local expected = {}
    local sorted = {}
    for i, s in ipairs(strs) do sorted[i] = s end
    table.sort(sorted) -- LuaJIT compares strings byte-wise
    for i, s in ipairs(sorted) do expected[i] = h.row(s) end
    assert.same({ "", "B", "Z", "a", "a\0", "a b", "aa", "ab", "b", "z", "~", "\195\169", "\255" }, sorted)
    check(function(sh) return gleam.flow("s"):rows(strs, sopt(sh)):sort_by(1, sopt(sh)) end,
      expected, { ordered = true })
  end)

  it("orders by type: nil < booleans < numbers < strings < arrays < maps", function()
    local input = { { "s" }, { { 1, 2 } }, { n = 1 }, { true }, { 1 }, { "1" }, { false }, { 0.5 }, { { k = 1 } } }
    local expected = {
      h.row(nil), h.row(false), h.row(true), h.row(0.5), h.row(1), h.row("1"), h.row("s"),
      h.row({ 1, 2 }), h.row({ k = 1 }),
    }
    check(function(sh) return gleam.flow("s"):rows(input, sopt(sh)):sort_by(1, sopt(sh)) end,
      expected, { ordered = true })
  end)

  it("keeps the field count of each row", function()
    local input = { { 2, nil, n = 2 }, { 1, nil, nil, n = 3 }, { 3 } }
    check(function(sh) return gleam.flow("s"):rows(input, sopt(sh)):sort_by(1, sopt(sh)) end,
      { h.row(1, nil, nil), h.row(2, nil), h.row(3) }, { ordered = true })
  end)

  it("sorts the lines of many files", function()
    local names = {}
    for i = 1, 200 do names[i] = string.format("many/f%03d.txt", i) end
    local expected = sort_rows(text_rows(names), { 1 })
    check(function(sh) return gleam.flow("t"):text(dir .. "/many/*.txt", sopt(sh)):sort_by(1, sopt(sh)) end,
      expected, { ordered = true })
  end)

  it("gives no rows for no input", function()
    check(function(sh) return gleam.flow("s"):rows({}, sopt(sh)):sort_by(1, sopt(sh)) end, {}, { ordered = true })
  end)
end)

describe("ds:top", function()
  local rnd = lcg(5)
  local list = {}
  for i = 1, 800 do list[i] = { "name" .. rnd(500), rnd(50), i % 2 == 0 and i * 0.5 or i } end
  local rows = h.rows_of(list)

  local function top_check(n, by, desc)
    local candidates = {
      first_n(sort_rows(rows, { by }, desc), n),
      first_n(sort_rows(rows, { by }, desc, true), n),
    }
    return { check = function(got, ctx) assert_one_of(candidates, got, ctx) end }
  end

  it("gives the n rows with the largest field `by`, largest first", function()
    local runs = check(function(sh) return gleam.flow("t"):rows(list, sopt(sh)):top(10, { by = 2 }) end,
      nil, top_check(10, 2, true))
    assert_same_order(runs)
  end)

  it("defaults to field 1", function()
    check(function(sh) return gleam.flow("t"):rows(list, sopt(sh)):top(5) end, nil, top_check(5, 1, true))
    local expected = {}
    for i = 100, 91, -1 do expected[#expected + 1] = h.row(i) end
    check(function(sh)
      return gleam.flow("t"):range(100):sort_by(1, sopt(sh)):top(10)
    end, expected, { ordered = true })
  end)

  it("gives the smallest with desc = false, smallest first", function()
    local runs = check(function(sh)
      return gleam.flow("t"):rows(list, sopt(sh)):top(10, { by = 2, desc = false })
    end, nil, top_check(10, 2, false))
    assert_same_order(runs)
    check(function(sh)
      return gleam.flow("t"):rows(list, sopt(sh)):top(7, { by = 3, desc = false })
    end, nil, top_check(7, 3, false))
  end)

  it("gives every row, in order, when n is larger than the row count", function()
    local small = { { "a", 3 }, { "b", 1 }, { "c", 2 } }
    check(function(sh) return gleam.flow("t"):rows(small, sopt(sh)):top(100, { by = 2 }) end,
      { h.row("a", 3), h.row("c", 2), h.row("b", 1) }, { ordered = true })
    check(function(sh) return gleam.flow("t"):rows(small, sopt(sh)):top(100, { by = 2, desc = false }) end,
      { h.row("b", 1), h.row("c", 2), h.row("a", 3) }, { ordered = true })
  end)

  it("gives no rows for n = 0", function()
    check(function(sh) return gleam.flow("t"):rows(list, sopt(sh)):top(0, { by = 2 }) end, {}, { ordered = true })
  end)

  it("gives no rows for no input", function()
    check(function(sh) return gleam.flow("t"):rows({}, sopt(sh)):top(3) end, {}, { ordered = true })
  end)

  -- Far more rows than n: top sorts and cuts every ~2n rows, and then drops
  -- rows that sort after the n-th it kept (op_sort.c), ties with it kept.
  it("keeps the right rows when many times n rows arrive", function()
    local rnd2 = lcg(11)
    local many = {}
    for i = 1, 12000 do many[i] = { "w" .. rnd2(3000), rnd2(400), i % 3 == 0 and i + 0.5 or i } end
    local mrows = h.rows_of(many)
    for _, case in ipairs { { 100, true }, { 100, false }, { 1500, true }, { 2500, false } } do
      local n, desc = case[1], case[2]
      local candidates = {
        first_n(sort_rows(mrows, { 2 }, desc), n),
        first_n(sort_rows(mrows, { 2 }, desc, true), n),
      }
      check(function(sh)
        return gleam.flow("t"):rows(many, sopt(sh)):top(n, { by = 2, desc = desc })
      end, nil, { shards = { false, 1, 3 }, check = function(got, ctx) assert_one_of(candidates, got, ctx) end })
    end
  end)

  it("breaks ties by the whole row", function()
    -- all keys equal: the result depends only on the rest of the row
    local tied = {}
    for i = 1, 300 do tied[i] = { 1, (i * 37) % 300 } end
    local trows = h.rows_of(tied)
    local candidates = { first_n(sort_rows(trows, { 1 }, true), 5), first_n(sort_rows(trows, { 1 }, true, true), 5) }
    local runs = check(function(sh) return gleam.flow("t"):rows(tied, sopt(sh)):top(5) end, nil, {
      check = function(got, ctx) assert_one_of(candidates, got, ctx) end,
    })
    assert_same_order(runs)
  end)
end)

describe("sinks", function()
  it("collect gives row tables with n", function()
    for _, w in ipairs(h.WORKERS) do
      local got = gleam.flow("c"):range(3):map(function(i) return i, nil end):collect { workers = w }
      assert.equals(3, #got)
      for _, r in ipairs(got) do
        assert.equals("table", type(r))
        assert.equals(2, r.n)
        assert.is_nil(r[2])
      end
    end
  end)

  it("count gives the number of rows", function()
    local lines = h.lines_of(h.read_file(files["big.txt"]))
    local expected = 0
    for _, l in ipairs(lines) do if l:find("a", 1, true) then expected = expected + 1 end end
    for _, w in ipairs(h.WORKERS) do
      for _, sh in ipairs(SHARDS) do
        local ds = gleam.flow("c"):text(files["big.txt"], sopt(sh)):filter(function(l) return l:find("a", 1, true) end)
        assert.equals(expected, ds:count { workers = w }, h.label { workers = w, shards = tostring(sh) })
      end
      assert.equals(0, gleam.flow("c"):range(0):count { workers = w })
      assert.equals("number", type(gleam.flow("c"):range(5):count { workers = w }))
    end
  end)

  it("each calls fn(fields...) on the driver for each row, field count kept", function()
    for _, w in ipairs(h.WORKERS) do
      local got = {}
      gleam.flow("e"):range(50):map(function(i) return i, "x" .. i, nil end)
        :each(function(...) got[#got + 1] = h.row(...) end)
        :run { workers = w }
      local expected = {}
      for i = 1, 50 do expected[i] = h.row(i, "x" .. i, nil) end
      h.assert_same_rows(expected, got, "workers=" .. w)
    end
  end)

  it("each sees sort_by's order", function()
    for _, w in ipairs(h.WORKERS) do
      local got = {}
      gleam.flow("e"):range(200):sort_by(1, { desc = true, shards = 4 })
        :each(function(i) got[#got + 1] = i end)
        :run { workers = w }
      local expected = {}
      for i = 200, 1, -1 do expected[#expected + 1] = i end
      assert.same(expected, got)
    end
  end)

  it("printf's C path (text, %s, %d, %%) prints what string.format prints", function()
    -- Rows of every kind under formats the C path takes: it must hand the
    -- rows it cannot render (doubles, large numbers, booleans, nil, short
    -- rows) to Lua, byte for byte as string.format would print them.
    local job = [[
local gleam = require "gleam"
local ffi = require "ffi"
local vals = { "a", "tab\there", "", "%d", 0, -1, 7, 2^31, -(2^40), 99999999999999, 100000000000000,
  -100000000000000, 2^53 - 1, 2^53, 1.5, -0.25, 1e300, ffi.new("int64_t", -5), ffi.new("int64_t", 2^60) }
local rows = {}
for i = 1, #vals do
  for j = 1, #vals do rows[#rows + 1] = { vals[i], vals[j], n = 2 } end
end
local fmt = arg[1]
local got = {}
gleam.flow():rows(rows, { shards = 3 }):printf(fmt):run()
]]
    for _, fmt in ipairs({ "%s\t%s\n", "<%s|%%|%s>\n", "%s\n", "x%%y\n" }) do
      local res = h.run_job(job, { args = { fmt } })
      assert.equals("", res.stderr)
      assert.equals(0, res.status)
      -- the oracle: string.format on the same rows, in the same order
      local ffi = require "ffi"
      local vals = { "a", "tab\there", "", "%d", 0, -1, 7, 2^31, -(2^40), 99999999999999, 100000000000000,
        -100000000000000, 2^53 - 1, 2^53, 1.5, -0.25, 1e300, ffi.new("int64_t", -5), ffi.new("int64_t", 2^60) }
      local want = {}
      for i = 1, #vals do
        for j = 1, #vals do
          local a, b = vals[i], vals[j]
          if type(a) == "cdata" then a = tostring(a):match("^(%-?%d+)") end
          if type(b) == "cdata" then b = tostring(b):match("^(%-?%d+)") end
          want[#want + 1] = string.format(fmt, a, b)
        end
      end
      assert.equals(table.concat(want), res.stdout)
    end
    -- %d: integers through C, a double through Lua (which truncates)
    local res = h.run_job([[
local gleam = require "gleam"
gleam.flow():rows({ { 1 }, { -42 }, { 2^53 }, { 2.75 } }):printf("%d;"):run()
]])
    assert.equals("", res.stderr)
    assert.equals(string.format("%d;%d;%d;%d;", 1, -42, 2^53, 2.75), res.stdout)
  end)

  it("gleam.config.progress hears where a long job is, then nil once", function()
    local seen, ends = {}, 0
    gleam.config.progress = function(p)
      if p == nil then ends = ends + 1 else seen[#seen + 1] = p end
    end
    local ok, err = pcall(function()
      return gleam.flow():range(1, 3000, { shards = 3 })
        :map(function(x) local t = os.clock() while os.clock() - t < 0.0005 do end return x end)
        :count { workers = 2 }
    end)
    gleam.config.progress = nil
    assert(ok, err)
    assert.are.equal(3000, err)
    assert(#seen >= 2, "progress was called " .. #seen .. " times")
    assert.are.equal(1, ends)
    for _, p in ipairs(seen) do
      assert.are.equal(1, p.stage)
      assert.are.equal(1, p.stages)
      assert.are.equal(3, p.tasks)
      assert(p.done >= 0 and p.done <= 3 and p.rows == p.done * 1000 and p.elapsed > 0, h.show_row(p))
    end
    -- a quick job calls nothing
    ends = 0
    gleam.config.progress = function() ends = ends + 1 end
    gleam.flow():range(1, 10):count()
    gleam.config.progress = nil
    assert.are.equal(0, ends)
  end)

  it("run runs a flow with no driver-side sink", function()
    for _, w in ipairs(h.WORKERS) do
      assert.has_no.errors(function() gleam.flow("r"):range(100):map(function(i) return i end):run { workers = w } end)
    end
  end)

  it("printf writes each row formatted on stdout, in order", function()
    local job = [[
local gleam = require "gleam"
local w = tonumber(arg[1])
gleam.flow("p"):rows({ { "a", 1 }, { "b", 20 }, { "c", 3 }, { "d", 1.5 } })
  :top(4, { by = 2 })
  :printf("%s\t%g\n")
  :run { workers = w }
gleam.flow("q"):range(1000):sort_by(1, { desc = true, shards = 5 }):printf("%d\n"):run { workers = w }
]]
    local expected = { "b\t20\nc\t3\nd\t1.5\na\t1\n" }
    for i = 1000, 1, -1 do expected[#expected + 1] = i .. "\n" end
    expected = table.concat(expected)
    for _, w in ipairs(h.WORKERS) do
      local res = h.run_job(job, { args = { tostring(w) } })
      assert.equals("", res.stderr)
      assert.equals(0, res.status)
      assert.equals(expected, res.stdout)
    end
    -- the CLI's --workers sets the default
    local res = h.run_job((job:gsub("workers = w", "workers = nil")), { workers = 3 })
    assert.equals("", res.stderr)
    assert.equals(0, res.status)
    assert.equals(expected, res.stdout)
  end)
end)

describe("flows", function()
  it("gleam.config.workers sets the default worker count", function()
    local saved = gleam.config.workers
    finally(function() gleam.config.workers = saved end)
    for _, w in ipairs(h.WORKERS) do
      gleam.config.workers = w
      assert.equals(5050, gleam.flow("c"):range(100):reduce(gleam.fn.sum):collect()[1][1])
      assert.equals(100, gleam.flow("c"):range(100):count())
    end
  end)

  it("a dataset runs again, with the same result", function()
    local ds = gleam.flow("again"):range(300):map(function(i) return i % 10, 1 end):reduce_by_key(gleam.fn.sum)
    local first = ds:collect { workers = 2 }
    assert.equals(10, ds:count { workers = 2 })
    h.assert_same_rows(first, ds:collect { workers = 8 })
    h.assert_same_rows(first, ds:collect { workers = 1 })
  end)

  it("two steps may read the same dataset", function()
    for _, w in ipairs(h.WORKERS) do
      local base = gleam.flow("dag"):range(100):map(function(i) return i, i % 2 end)
      local evens = base:filter(function(_, p) return p == 0 end)
      local odds = base:filter(function(_, p) return p == 1 end):map(function(i) return -i end)
      assert.equals(50, evens:count { workers = w })
      local got = odds:collect { workers = w }
      local expected = {}
      for i = 1, 100, 2 do expected[#expected + 1] = h.row(-i) end
      h.assert_same_rows(expected, got, "workers=" .. w)
    end
  end)

  it("word count end to end matches a plain Lua count", function()
    local names = { "one.txt", "two.txt", "big.txt" }
    local c = {}
    for _, n in ipairs(names) do
      for _, l in ipairs(ALL_LINES[n]) do for _, w in ipairs(words_of(l)) do c[w] = (c[w] or 0) + 1 end end
    end
    local all = {}
    for w, n in pairs(c) do all[#all + 1] = h.row(w, n) end
    local expected = first_n(sort_rows(all, { 2 }, true), 10)
    local alt = first_n(sort_rows(all, { 2 }, true, true), 10)
    local runs = check(function(sh)
      return gleam.flow("wc"):text({ files["one.txt"], files["two.txt"], files["big.txt"] }, sopt(sh))
        :flatmap(function(line) return line:gmatch("[A-Za-z0-9]+") end)
        :map(function(w) return w, 1 end)
        :reduce_by_key(function(a, b) return a + b end, sopt(sh))
        :top(10, { by = 2 })
    end, nil, { check = function(got, ctx) assert_one_of({ expected, alt }, got, ctx) end })
    assert_same_order(runs)
  end)

  it("switching worker counts in one process leaves it able to exit cleanly", function()
    -- Each worker count makes a new engine; the old one must be freed once.
    local dir2 = h.tmpdir()
    local script = h.write_file(dir2 .. "/switch.lua", [[
local gleam = require "gleam"
for _, w in ipairs { 1, 2, 8, 1 } do
  assert(gleam.flow("s"):range(10):count { workers = w } == 10)
end
collectgarbage()
collectgarbage()
io.write("done\n")
]])
    local p = assert(io.popen("luajit " .. h.quote(script) .. " 2>&1; echo \"status=$?\""))
    local out = p:read("*a")
    p:close()
    assert.equals("done\nstatus=0\n", out)
  end)
end)
