-- Row fidelity: rows keep their shape, types and bytes through the codec
-- and through a flow with shuffles (field counts with trailing nils, int64
-- edges, -0.0/inf/nan, binary strings, nested tables).
local ffi = require "ffi"
local gleam = require "gleam"
local codec = require "gleam.codec"

local int64, uint64 = ffi.typeof("int64_t"), ffi.typeof("uint64_t")

-- A deterministic PRNG (xorshift32) so failures reproduce.
local seed = 0x2545F491
local function rand(n)
  seed = bit.bxor(seed, bit.lshift(seed, 13))
  seed = bit.bxor(seed, bit.rshift(seed, 17))
  seed = bit.bxor(seed, bit.lshift(seed, 5))
  local u = seed % 0x100000000
  return u % n
end

local specials = {
  0, 1, -1, 127, 128, -32, -33, 255, 256, 65535, 65536, 2 ^ 31, -2 ^ 31, 2 ^ 32, 2 ^ 53, -2 ^ 53,
  0.5, -0.5, 1e300, -1e-300, 1 / 0, -1 / 0, 0 / 0, -0.0, 3.141592653589793,
  int64(2) ^ 62, -int64(2) ^ 62 - 1, 9007199254740993LL, -9223372036854775807LL - 1,
  9223372036854775807LL, uint64(18446744073709551615ULL), uint64(9223372036854775808ULL),
}

local function rand_string()
  local n = ({ 0, 1, 5, 31, 32, 40, 255, 256, 300 })[rand(9) + 1]
  local t = {}
  for i = 1, n do t[i] = string.char(rand(256)) end
  return table.concat(t)
end

local rand_value
local function rand_table(depth)
  local t = {}
  if rand(2) == 0 then
    for i = 1, rand(5) do t[i] = rand_value(depth + 1, true) end
  else
    for _ = 1, rand(4) do t[rand_string() .. "k"] = rand_value(depth + 1, true) end
  end
  return t
end

rand_value = function(depth, nonil)
  local k = rand(nonil and 6 or 7)
  if k == 0 then return specials[rand(#specials) + 1] end
  if k == 1 then return rand(2) == 0 end
  if k == 2 then return rand(1000000) - 500000 end
  if k == 3 then return (rand(1000000) - 500000) / 7 end
  if k == 4 then return rand_string() end
  if k == 5 then return depth < 3 and rand_table(depth) or "leaf" end
  return nil
end

local function rand_row(i)
  local n = rand(8)
  local r = { n = n + 1, i }
  for k = 2, n + 1 do r[k] = rand_value(0) end
  return r
end

local function same(a, b)
  local ta, tb = type(a), type(b)
  if ta ~= tb then return false end
  if ta == "number" then
    if a ~= a then return b ~= b end
    if a == 0 and b == 0 then return 1 / a == 1 / b end
    return a == b
  end
  if ta == "cdata" then
    return ffi.istype(int64, a) == ffi.istype(int64, b) and a == b
  end
  if ta == "table" then
    for k, v in pairs(a) do if not same(v, b[k]) then return false end end
    for k in pairs(b) do if a[k] == nil then return false end end
    return true
  end
  return a == b
end

local function same_row(a, b)
  if a.n ~= b.n then return false end
  for k = 1, a.n do if not same(a[k], b[k]) then return false end end
  return true
end

local rows = {}
for i = 1, 100000 do rows[i] = rand_row(i) end

describe("row fidelity", function()
  it("round-trips 100,000 random rows through the codec", function()
    local bad = 0
    for i = 1, #rows do
      local s = codec.pack_row(unpack(rows[i], 1, rows[i].n))
      local back = codec.row_at(codec.u8p(s), 0)
      if not same_row(rows[i], back) then bad = bad + 1 end
    end
    assert.are.equal(0, bad)
  end)

  it("round-trips them through a flow with map, flatmap and a sort shuffle", function()
    local out = gleam.flow("fidelity")
      :rows(rows, { shards = 3 })
      :map(function(...) return ... end)
      :flatmap(function(...) return { { n = select("#", ...), ... } } end)
      :sort_by(1)
      :collect{ workers = 2 }
    assert.are.equal(#rows, #out)
    local bad, first = 0, nil
    for i = 1, #rows do
      if not same_row(rows[i], out[i]) then
        bad = bad + 1
        first = first or i
      end
    end
    assert.are.equal(0, bad, first and ("first mismatch at row " .. first))
  end)

  it("keeps trailing nils and empty rows", function()
    local out = gleam.flow():rows({ { n = 3, 1, nil, nil }, { n = 0 }, { n = 2, nil, "x" } })
      :map(function(...) return ... end):collect()
    assert.are.same({ { n = 3, 1 }, { n = 0 }, { n = 2, nil, "x" } }, out)
  end)
end)

describe("nested arrays with nils", function()
  it("stay arrays of their length through Lua steps", function()
    local codec = require "gleam.codec"
    local g = gleam.flow("holes"):rows({ { "a", 1 }, { n = 2, "a", nil }, { "a", 3 }, { n = 2, "b", nil } }, { shards = 1 })
      :group_by_key()
    -- through a Lua map (decoded into Lua tables and encoded again)
    local rows = g:map(function(k, v) return k, v end):sort_by(1):collect { workers = 1 }
    -- compare encodings: [1, nil, 3] and [nil] must stay arrays
    local enc = {}
    for i, r in ipairs(rows) do
      local t = codec.pack(r[2])
      enc[i] = (t:gsub(".", function(c) return string.format("%02x", c:byte()) end))
    end
    assert.same({ "9301c003", "91c0" }, enc)
  end)
end)
