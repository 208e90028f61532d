-- closure_spec: user functions travel to the workers by value (README
-- "Functions travel by value"): upvalues of every kind that may travel do,
-- with 1, 2 and 8 workers, and the ones that may not are refused when the
-- step is added, naming the step, the upvalue and the line.
local gleam = require "gleam"
local h = require "helpers"
local ffi = require "ffi"

local SRC = debug.getinfo(1, "S").short_src

-- Runs build() with every worker count; checks the rows as a multiset.
local function check(build, expected)
  for _, w in ipairs(h.WORKERS) do
    h.assert_same_rows(expected, build():collect { workers = w }, "workers=" .. w)
  end
end

-- Expected rows: fn(i) for i = 1..n, as rows.
local function expect(n, fn)
  local out = {}
  for i = 1, n do out[i] = h.row(fn(i)) end
  return out
end

-- Several shards so the function runs in several tasks on each worker.
local function src(n) return gleam.flow("c"):range(n):sort_by(1, { shards = 4 }) end

describe("upvalues that travel", function()
  it("numbers, strings, booleans", function()
    local n, s, yes, no, neg, frac = 10, "pre-", true, false, -3, 0.5
    local huge, tiny = math.huge, -1e-300
    local f = function(i) return i + n, s .. i, yes, no, neg * frac, huge, tiny end
    check(function() return src(100):map(f) end,
      expect(100, function(i) return i + 10, "pre-" .. i, true, false, -1.5, math.huge, -1e-300 end))
  end)

  it("a nil upvalue", function()
    local nothing
    check(function() return src(10):map(function(i) return i, nothing == nil end) end,
      expect(10, function(i) return i, true end))
  end)

  it("nested tables", function()
    local conf = { scale = 3, names = { "a", "b", "c" }, deep = { deeper = { v = "x", [1.5] = "y", [true] = "z" } } }
    check(function()
      return src(60):map(function(i)
        return conf.scale * i, conf.names[1 + i % 3], conf.deep.deeper.v, conf.deep.deeper[1.5], conf.deep.deeper[true]
      end)
    end, expect(60, function(i) return 3 * i, ({ "a", "b", "c" })[1 + i % 3], "x", "y", "z" end))
  end)

  it("a large table", function()
    local squares = {}
    for i = 1, 5000 do squares[i] = i * i end
    check(function() return src(5000):map(function(i) return squares[i] end) end,
      expect(5000, function(i) return i * i end))
  end)

  it("shared tables stay shared (one copy, two references)", function()
    local shared = { v = 1 }
    local holder = { a = shared, b = shared }
    local s1, s2 = shared, shared
    check(function()
      return src(30):map(function(i)
        holder.a.last = i -- a write through one reference is seen through the other
        return holder.a == holder.b, s1 == s2, s1 == holder.a, holder.b.last == i
      end)
    end, expect(30, function() return true, true, true, true end))
  end)

  it("cyclic tables", function()
    local node = { name = "n" }
    node.self = node
    local ring = { id = 1 }
    ring.next = { id = 2, next = ring }
    check(function()
      return src(20):map(function(i)
        return node.self.self.self.name, ring.next.next == ring, ring.next.next.next.id, i
      end)
    end, expect(20, function(i) return "n", true, 2, i end))
  end)

  it("nested local functions", function()
    local function sq(x) return x * x end
    local function add1(x) return sq(x) + 1 end
    local ops = { double = function(x) return 2 * x end, compose = function(f, g) return function(x) return f(g(x)) end end }
    check(function()
      return src(50):map(function(i)
        local both = ops.compose(ops.double, add1)
        return add1(i), ops.double(i), both(i)
      end)
    end, expect(50, function(i) return i * i + 1, 2 * i, 2 * (i * i + 1) end))
  end)

  it("a recursive local function (an upvalue of itself)", function()
    local function fact(k)
      if k <= 1 then return 1 end
      return k * fact(k - 1)
    end
    check(function() return src(12):map(function(i) return fact(i) end) end,
      expect(12, function(i)
        local r = 1
        for k = 2, i do r = r * k end
        return r
      end))
  end)

  it("mutually recursive local functions", function()
    local is_odd
    local function is_even(k) if k == 0 then return true end return is_odd(k - 1) end
    is_odd = function(k) if k == 0 then return false end return is_even(k - 1) end
    check(function() return src(20):map(function(i) return i, is_even(i) end) end,
      expect(20, function(i) return i, i % 2 == 0 end))
  end)

  it("int64 cdata", function()
    local big = ffi.new("int64_t", 2 ^ 60)
    local neg = -big
    local one = 1LL
    check(function()
      return src(10):map(function(i) return big + i, neg - i, tostring(big), one * i end)
    end, expect(10, function(i)
      return big + i, neg - i, "1152921504606846976LL", i
    end))
  end)

  it("a loaded module, looked up on the worker", function()
    local str = string
    local bit = require "bit"
    local tbl = table
    local ffi2 = require "ffi"
    check(function()
      return src(40):map(function(i)
        return str.rep("a", i % 4), bit.band(i, 3), tbl.concat({ i, i }, ","), str == string,
          ffi2.sizeof("int32_t")
      end)
    end, expect(40, function(i) return string.rep("a", i % 4), i % 4, i .. "," .. i, true, 4 end))
  end)

  it("a module's function", function()
    local fmt = string.format
    local band, floor, concat = bit.band, math.floor, table.concat
    check(function()
      return src(40):map(function(i)
        return fmt("%03d", i), band(i, 5), floor(i / 3), concat({ "x", i }), fmt == string.format
      end)
    end, expect(40, function(i)
      return string.format("%03d", i), bit.band(i, 5), math.floor(i / 3), "x" .. i, true
    end))
  end)

  it("upvalues of filter, flatmap, reduce_by_key and reduce functions", function()
    local keep, sep, weight = 3, ",", 10
    local function add(a, b) return a + b end
    local data = {}
    for i = 1, 90 do data[i] = string.format("k%d,%d", i % keep, i) end
    local expected = {}
    for k = 0, keep - 1 do
      local s = 0
      for i = 1, 90 do if i % keep == k and i % 2 == 0 then s = s + i * weight end end
      expected[#expected + 1] = h.row("k" .. k, s)
    end
    for _, w in ipairs(h.WORKERS) do
      local got = gleam.flow("c"):rows(data, { shards = 3 })
        :flatmap(function(line)
          local t = {}
          for part in line:gmatch("[^" .. sep .. "]+") do t[#t + 1] = part end
          return { { t[1], tonumber(t[2]) } }
        end)
        :filter(function(_, v) return v % 2 == 0 end)
        :map(function(k, v) return k, v * weight end)
        :reduce_by_key(function(a, b) return add(a, b) end)
        :collect { workers = w }
      h.assert_same_rows(expected, got, "workers=" .. w)
      local total = gleam.flow("c"):range(10):reduce(function(a, b) return add(a, b) * 1 end):collect { workers = w }
      h.assert_rows({ h.row(55) }, total, "reduce, workers=" .. w)
    end
  end)

  it("globals of the driver are not sent", function()
    rawset(_G, "gleam_spec_global_helper", function(x) return x end)
    finally(function() rawset(_G, "gleam_spec_global_helper", nil) end)
    local ok, err = pcall(function()
      return src(5):map(function(i) return gleam_spec_global_helper(i) end):collect { workers = 2 }
    end)
    assert.is_false(ok)
    assert.matches("gleam_spec_global_helper", tostring(err), 1, true)
  end)
end)

describe("upvalues that are refused when the step is added", function()
  -- Adds the step `method` with f and returns the error message and the
  -- line of the call; fails if the step was accepted.
  local function refused(method, f, ...)
    local ds = gleam.flow("r"):range(3)
    local ok, err = pcall(ds[method], ds, f, ...); local line = debug.getinfo(1, "l").currentline
    assert.is_false(ok, method .. " accepted a function it cannot ship")
    assert.equals("string", type(err))
    return err, line
  end

  -- The message names the step, the upvalue and the line of the call.
  local function assert_names(err, line, method, upvalue)
    assert.is_nil(err:find("\n"), "one line: " .. err)
    assert.truthy(err:find(method, 1, true), "names the step '" .. method .. "': " .. err)
    assert.truthy(err:find("'" .. upvalue .. "'", 1, true), "names the upvalue '" .. upvalue .. "': " .. err)
    assert.truthy(err:find(SRC .. ":" .. line, 1, true), "names the line " .. SRC .. ":" .. line .. ": " .. err)
  end

  it("a coroutine", function()
    local co = coroutine.create(function() end)
    local err, line = refused("map", function(i) return i, co end)
    assert_names(err, line, "map", "co")
  end)

  it("a userdata (io.stdout)", function()
    local out = io.stdout
    local err, line = refused("map", function(i) out:write(i) end)
    assert_names(err, line, "map", "out")
  end)

  it("a cdata that is not an int64", function()
    local buf = ffi.new("int[1]")
    local err, line = refused("map", function(i) buf[0] = i; return i end)
    assert_names(err, line, "map", "buf")
  end)

  it("a C function no module holds", function()
    -- coroutine.wrap returns a C function held by no loaded module
    local gen = coroutine.wrap(function() coroutine.yield(1) end)
    local err, line = refused("map", function(i) return gen(), i end)
    assert_names(err, line, "map", "gen")
    local iter = string.gmatch("a b", "%a")
    err, line = refused("map", function(i) return iter(), i end)
    assert_names(err, line, "map", "iter")
  end)

  it("inside a table upvalue, naming the upvalue", function()
    local cfg = { log = io.stderr, n = 1 }
    local err, line = refused("map", function(i) return i + cfg.n end)
    assert_names(err, line, "map", "cfg")
  end)

  it("inside a nested function, naming its upvalue", function()
    local co = coroutine.create(function() end)
    local function helper() return coroutine.status(co) end
    local err, line = refused("map", function(i) return helper(), i end)
    -- either name locates the problem; the innermost one is the most precise
    assert.truthy(err:find("'co'", 1, true) or err:find("'helper'", 1, true), err)
    assert.truthy(err:find("map", 1, true), err)
    assert.truthy(err:find(SRC .. ":" .. line, 1, true), err)
  end)

  it("in filter, flatmap, reduce_by_key and reduce, naming that step", function()
    local co = coroutine.create(function() end)
    for _, method in ipairs { "filter", "flatmap", "reduce_by_key", "reduce" } do
      local err, line = refused(method, function(a) return co and a end)
      assert_names(err, line, method, "co")
    end
  end)

  it("before any run, leaving the flow usable", function()
    local out = io.stdout
    local ds = gleam.flow("r"):range(5)
    local ok = pcall(ds.map, ds, function(i) out:write(i) end)
    assert.is_false(ok)
    -- the dataset is still fine for other steps
    assert.equals(5, ds:map(function(i) return i end):count { workers = 2 })
  end)
end)

describe("closures keep upvalue types", function()
  it("int64 upvalues arrive as int64 (small ones too), uint64 as uint64", function()
    local ffi = require "ffi"
    local small, big, u = 10LL, -2LL ^ 62, 18446744073709551615ULL
    local r = gleam.flow("i64"):range(1)
      :map(function() return tostring(small / 4), tostring(big), tostring(u), tostring(ffi.typeof(small)) end)
      :collect { workers = 2 }
    assert.same({ n = 4, "2LL", "-4611686018427387904LL", "18446744073709551615ULL", "ctype<int64_t>" }, r[1])
  end)

  it("base functions kept in locals travel by name", function()
    local tostring, type, select = tostring, type, select
    local r = gleam.flow("base"):range(2)
      :map(function(x) return tostring(x) .. type(x), select("#", x, x) end)
      :collect { workers = 2 }
    assert.same({ { n = 2, "1number", 2 }, { n = 2, "2number", 2 } }, r)
  end)
end)

describe("closures sharing an upvalue", function()
  it("still share it on the worker (one counter, not two copies)", function()
    local counter = 0
    local function inc() counter = counter + 1 end
    local function get() return counter end
    local r = gleam.flow("shared"):range(4, { shards = 1 })
      :map(function() inc(); return get() end)
      :collect { workers = 1 }
    assert.same({ { n = 1, 1 }, { n = 1, 2 }, { n = 1, 3 }, { n = 1, 4 } }, r)
    -- the driver's counter is untouched: upvalues travel by value
    assert.equals(0, counter)
  end)
end)
