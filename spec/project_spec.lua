-- Maps that only move fields and add constants (gleam.project) run in C:
-- which functions qualify, and that a flow gives the same rows with them
-- as with the same function run in Lua (an upvalue keeps a function out).
local ffi = require "ffi"
local gleam = require "gleam"
local codec = require "gleam.codec"
local closure = require "gleam.closure"
local project = require "gleam.project"
local worker = require "gleam.worker"
local h = require "helpers"

local int64 = ffi.typeof("int64_t")

-- The items of f as text: $k for field k, else the constant.
local function items(f)
  local it = project.of(f)
  if not it then return nil end
  local t = {}
  for k = 1, it.n do t[k] = it[k].field and ("$" .. it[k].field) or tostring(it[k].value) end
  return table.concat(t, " ")
end

describe("gleam.project", function()
  it("recognises moves of parameters and constants", function()
    assert.equal("$2 $3", items(function(id, customer, amount) return customer, amount end))
    assert.equal("$3 1 $2", items(function(customer, amount, region) return region, 1, amount end))
    assert.equal("$1", items(function(a) return a end))
    assert.equal("", items(function() end))
    assert.equal("", items(function(a) return end))
    assert.equal("$2 x 2.5 nil true false $1", items(function(a, b) return b, "x", 2.5, nil, true, false, a end))
    assert.equal("nil $2 nil", items(function(a, b) local x, y; return x, b, y end))
    assert.equal("-3 100000 1e+300", items(function() return -3, 100000, 1e300 end))
    assert.equal("$1 $1", items(function(a) local b = a; return b, a end))
  end)

  it("leaves every other function to Lua", function()
    local u = 1
    assert.is_nil(project.of(function(a, b) return a + b end))
    assert.is_nil(project.of(function(a) return a, u end))
    assert.is_nil(project.of(function(...) return ... end))
    assert.is_nil(project.of(function(a) if a then return a end return 1 end))
    assert.is_nil(project.of(function(a) return a.x end))
    assert.is_nil(project.of(function(a) return tostring(a) end))
    assert.is_nil(project.of(function(a) return function() return a end end))
    assert.is_nil(project.of(function() return 1LL end))
    assert.is_nil(project.of(function() return -0.0 end))
    assert.is_nil(project.of(function(a) return a, a, a, a, a, a, a, a, a, a, a, a, a, a, a, a end))
    assert.is_nil(project.of(print))
    assert.is_nil(project.of(gleam.fn.count))
  end)

  it("composes maps and encodes what the engine reads", function()
    local f = project.of(function(a, b, c) return c, 7, a end)
    local g = project.of(function(x, y, z, w) return z, y, w, "k" end)
    local fg = project.compose(f, g)
    assert.equal(4, fg.n)
    assert.same({ { field = 1 }, { value = 7 }, { value = nil }, { value = "k" } }, { fg[1], fg[2], fg[3], fg[4] })
    assert.equal("\x94\x01\x91\x07\x91\xc0\x91\xa1k", project.encode(fg))
  end)

  it("is what the worker hands the engine for a chain of such maps", function()
    local function op(...)
      local steps = {}
      for i, f in ipairs({ ... }) do
        steps[i] = { kind = "map", name = "map", where = "spec", fn = closure.dump(f, "map") }
      end
      local blob = codec.pack({ { op = 0, kind = "chain", steps = steps } })
      return worker.op_new(codec.u8p(blob), #blob, 0, nil, nil)
    end
    local push, finish, spec = op(function(a, b) return b, a end, function(x, y) return y, 1 end)
    assert.is_nil(push)
    assert.is_nil(finish)
    assert.equal("\x92\x01\x91\x01", spec)
    local u = 0
    push, finish, spec = op(function(a, b) return b, a end, function(x) return x + u end)
    assert.is_function(push)
    assert.is_function(finish)
    assert.is_nil(spec)
  end)
end)

-- Rows of every kind of value, some shorter than the maps' parameters.
local values = { 1, -1, 300, 70000, 2 ^ 40, 0.5, -0.0, 1 / 0, "", "s", string.rep("x", 40), true, false,
  int64(2) ^ 62, { 1, 2 }, { k = "v", [2] = 3 } }
local rows = {}
for i = 1, 600 do
  local n = i % 5
  local r = { n = n }
  for k = 1, n do r[k] = values[(i * 7 + k * 3) % #values + 1] end
  rows[i] = r
end

describe("a map run in C", function()
  local nothing = nil
  -- Each case: a projection, and the same function kept in Lua.
  local cases = {
    { function(a, b, c) return c, a end, function(a, b, c) local _ = nothing; return c, a end },
    { function(a, b) return b, 1, "k", nil, true, a end,
      function(a, b) local _ = nothing; return b, 1, "k", nil, true, a end },
    { function(a, b, c, d, e, f) return f, e, d end, function(a, b, c, d, e, f) local _ = nothing; return f, e, d end },
    { function() return end, function() local _ = nothing; return end },
    { function(a) return a, a end, function(a) local _ = nothing; return a, a end },
  }

  it("gives the rows Lua gives", function()
    for i, c in ipairs(cases) do
      for _, w in ipairs({ 1, 2 }) do
        local fast = gleam.flow():rows(rows, { shards = 3 }):map(c[1]):collect { workers = w }
        local slow = gleam.flow():rows(rows, { shards = 3 }):map(c[2]):collect { workers = w }
        h.assert_rows(slow, fast, h.label { case = i, workers = w })
      end
    end
  end)

  it("composes with other steps: maps after maps, a Lua combine, a join", function()
    local f = gleam.flow()
    local left = f:rows({ { 1, "a", 10 }, { 2, "b", 20 }, { 1, "c", 30 } }, { shards = 2 })
      :map(function(id, name, v) return name, id, v end)
      :map(function(name, id, v) return id, v end)
    local sums = left:reduce_by_key(function(a, b) return a + b end):sort_by(1):collect()
    assert.same({ { 1, 40, n = 2 }, { 2, 20, n = 2 } }, sums)
    local right = f:rows({ { 1, "one" }, { 2, "two" } })
    local joined = left:join(right):map(function(id, v, word) return word, 1, v end)
      :reduce_by_key(gleam.fn.sum):sort_by(1):collect()
    assert.same({ { "one", 2, 40, n = 3 }, { "two", 1, 20, n = 3 } }, joined)
  end)
end)
