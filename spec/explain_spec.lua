-- explain_spec: ds:explain() (the plan as text, nothing run), ds:show(n)
-- (the first rows as an aligned table) and gleam.pretty, which the REPL
-- prints values with.
local gleam = require "gleam"
local pretty = require "gleam.pretty"
local h = require "helpers"

after_each(function()
  gleam.config.workers = 0
  h.cleanup()
end)

local function has(text, part)
  assert.truthy(text:find(part, 1, true), "expected '" .. part .. "' in:\n" .. text)
end

-- Returns what fn wrote to stdout.
local function stdout_of(fn)
  local dir = h.tmpdir()
  local path = dir .. "/out"
  local real = io.stdout
  local f = assert(io.open(path, "wb"))
  io.stdout = f -- luacheck: ignore
  local ok, err = pcall(fn)
  io.stdout = real -- luacheck: ignore
  f:close()
  if not ok then error(err, 0) end
  return h.read_file(path)
end

describe("ds:explain()", function()
  it("names the stages, what they read, the steps and the shard counts", function()
    local f = gleam.flow("x")
    local ds = f:range(100)
      :map(function(x) return x % 7, 1 end) -- MAP
      :filter(function(k) return k > 0 end)
      :reduce_by_key(gleam.fn.sum, { shards = 3 })
    local text = ds:explain { workers = 4 }
    local line = debug.getinfo(1, "l").currentline
    local where = "/explain_spec.lua:" .. (line - 4)
    has(text, "dataset 3: reduce_by_key at ")
    has(text, "; 2 stages on 4 workers\n")
    has(text, "  stage 1: 4 tasks reading range 1..100 at ")
    has(text, "      map at ")
    has(text, where .. ", filter at ")
    has(text, "(fused: one Lua call per batch)")
    has(text, "(combine, sum in C)\n      -> 3 shards by hash of field 1\n")
    has(text, "  stage 2: 3 tasks reading the shards of stage 1\n")
    has(text, "(merge, sum in C)\n      -> 3 shards out\n")
  end)

  it("does not run anything", function()
    local ds = gleam.flow("x"):range(10):map(function() error("ran") end)
    has(ds:explain(), "map at ")
  end)

  it("shows joins, sorts, unions and text sources", function()
    local dir = h.tmpdir()
    h.write_file(dir .. "/a.txt", "x\ny\n")
    local f = gleam.flow("x")
    local a = f:text(dir .. "/*.txt"):map(function(l) return l, 1 end)
    local b = f:rows({ { "x", 2 } })
    has(a:join(b, { how = "left" }):explain(), "(left; the right side, stage 1, held in memory)")
    has(a:join(a, { how = "outer", shards = 2 }):explain(), "reading stage 2 (left) and stage 3 (right), shard by shard")
    has(a:explain(), "1 task reading text of 1 file (" .. dir .. "/a.txt) at ")
    local sorted = a:sort_by(2, { shards = 2 }):explain { workers = 2 }
    has(sorted, "kept as they are (and a key sample)")
    has(sorted, "-> 2 shards by range of field 2")
    has(a:union(b):explain(), "reading the shards of stages 1, 2")
  end)

  it("fails on a missing input with one line naming it", function()
    local ok, err = pcall(function() return gleam.flow("x"):text("/nonexistent/*.txt"):explain() end)
    assert.is_false(ok)
    has(err, "explain: ")
    assert.falsy(err:find("\n"), err)
  end)
end)

describe("ds:show(n)", function()
  it("prints the first n rows as an aligned table", function()
    local ds = gleam.flow("x"):rows({ { "a", 1 }, { "bbb", 22 }, { "cc", 333, { 1, 2 } } }, { shards = 1 })
    assert.equals(table.concat({
      "1      2  3",
      "---  ---  --------",
      "a      1",
      "bbb   22",
      "cc   333  { 1, 2 }",
      "(3 rows)",
    }, "\n") .. "\n", stdout_of(function() ds:show() end))
    assert.equals("1     2\n---  --\na     1\nbbb  22\n(first 2 rows)\n", stdout_of(function() ds:select(1, 2):show(2) end))
  end)

  it("prints an empty dataset and refuses a bad count", function()
    assert.equals("(0 rows)\n", stdout_of(function() gleam.flow("x"):range(0):show(5) end))
    assert.has_error(function() gleam.flow("x"):range(3):show("x") end)
  end)
end)

describe("gleam.pretty.value", function()
  it("quotes strings and nests tables, array part first", function()
    assert.equals('"a\\nb\\"c"', pretty.value('a\nb"c'))
    assert.equals('{ 1, "two", { x = 3 }, a = true, ["b c"] = 4 }',
      pretty.value({ 1, "two", { x = 3 }, a = true, ["b c"] = 4 }))
    assert.equals("{ 1, nil, 3 }", pretty.value({ 1, nil, 3, n = 3 }))
    assert.equals("{}", pretty.value({}))
    assert.equals("12345678901LL", pretty.value(12345678901LL))
    assert.equals("0.5", pretty.value(0.5))
  end)

  it("marks cycles and cuts long tables", function()
    local t = { 1 }
    t.self = t
    assert.equals("{ 1, self = <cycle> }", pretty.value(t))
    local long = {}
    for i = 1, 150 do long[i] = i end
    local text = pretty.value(long)
    has(text, "\n  100,\n  ... (50 more)\n}")
  end)
end)
