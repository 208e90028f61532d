-- spill_spec: data larger than the memory budget (README "Memory and
-- disk"). sort_by, reduce_by_key, group_by_key and join run with a budget of
-- a few MB over data several times larger, and must give what the run
-- without a budget gives and what an independent oracle gives (coreutils
-- sort, sqlite3, a plain Lua loop). The store's directory shows that rows
-- really went to LMDB. Then the store's edges: a directory in use, a run
-- killed with SIGKILL and the next run in the same directory, a full store,
-- the temporary directory removed, and the --memory option.
local gleam = require "gleam"
local h = require "helpers"

after_each(h.cleanup)

local TINY = "2M"

-- ~6 MB of lines "k<key>\t<n>\t<padding>" with keys skewed towards small
-- numbers; returns the path and the lines.
local function make_data(dir)
  -- xorshift32: helpers.lcg's low bits repeat with short periods
  local bit = require "bit"
  local x = 2463534242
  local function rand(m)
    x = bit.bxor(x, bit.lshift(x, 13))
    x = bit.bxor(x, bit.rshift(x, 17))
    x = bit.bxor(x, bit.lshift(x, 5))
    return (x % 4294967296) % m
  end
  local lines = {}
  for i = 1, 120000 do
    local k = rand(8) == 0 and 0 or rand(20000)
    lines[i] = string.format("k%05d\t%d\t%s", k, rand(1000), string.rep(string.char(97 + rand(26)), 10 + rand(30)))
  end
  local path = dir .. "/data.tsv"
  h.write_file(path, table.concat(lines, "\n") .. "\n")
  return path, lines
end

local file_size = h.file_size

-- Runs build(flow):collect with the tiny budget in a store under dir and
-- without a budget; checks that the store grew (rows went to LMDB) and
-- returns both results.
local function both(dir, build)
  local store = dir .. "/store"
  local small = build(gleam.flow()):collect { memory = TINY, dir = store, workers = 2 }
  assert(file_size(store .. "/data.mdb") > 1000000, "the run with a " .. TINY .. " budget wrote nothing to LMDB")
  local big = build(gleam.flow()):collect { memory = "4G", workers = 2 }
  return small, big
end

local function f_sort_tiny(path)
  return gleam.flow():text(path):sort_by(1):collect { memory = "128K", workers = 2 }
end

describe("a budget smaller than the data", function()
  local dir, path, lines
  before_each(function()
    dir = h.tmpdir()
    path, lines = make_data(dir)
  end)

  it("sort_by gives coreutils sort's order, as without a budget", function()
    local small, big = both(dir, function(f) return f:text(path):sort_by(1) end)
    local out = h.sh("LC_ALL=C sort " .. h.quote(path))
    local want = h.lines_of(out)
    assert.are.equal(#want, #small)
    for i = 1, #want do
      if small[i][1] ~= want[i] then error(string.format("row %d: %q, sort gives %q", i, small[i][1], want[i])) end
    end
    h.assert_rows(big, small, "unlimited")
    -- 128K: about a hundred sorted runs per task, merged in two tiers
    local tiny = f_sort_tiny(path)
    h.assert_rows(big, tiny, "128K")
  end)

  it("sort_by descending on a numeric field, with ties, as without a budget", function()
    local function build(f)
      return f:text(path):map(function(l)
        local k, n, pad = l:match("^(%S+)\t(%d+)\t(%S+)$")
        return tonumber(n), k, pad
      end):sort_by(1, { desc = true })
    end
    local small, big = both(dir, build)
    h.assert_rows(big, small, "unlimited")
    for i = 2, #small do assert(small[i - 1][1] >= small[i][1], "not descending at row " .. i) end
  end)

  it("reduce_by_key (Lua function and built-in sum) agrees with a plain Lua loop", function()
    -- Keys of (key, value mod 64): too many for the budget even combined.
    local want = {}
    for _, l in ipairs(lines) do
      local k, n = l:match("^(%S+)\t(%d+)")
      k = k .. ":" .. tonumber(n) % 64
      want[k] = (want[k] or 0) + tonumber(n)
    end
    local expected = {}
    for k, v in pairs(want) do expected[#expected + 1] = h.row(k, v) end
    local function pairs_of(f)
      return f:text(path):map(function(l)
        local k, n = l:match("^(%S+)\t(%d+)")
        return k .. ":" .. tonumber(n) % 64, tonumber(n)
      end)
    end
    for _, reducer in ipairs({ function(a, b) return a + b end, gleam.fn.sum }) do
      local small, big = both(dir, function(f) return pairs_of(f):reduce_by_key(reducer) end)
      h.assert_same_rows(expected, small, "budget")
      h.assert_same_rows(big, small, "unlimited")
    end
  end)

  it("group_by_key gives every key all its values, as a plain Lua loop does", function()
    local want = {}
    for _, l in ipairs(lines) do
      local k, n = l:match("^(%S+)\t(%d+)")
      want[k] = want[k] or {}
      table.insert(want[k], tonumber(n))
    end
    -- The order of values inside a group follows the shards: compare sorted.
    local function canon(rows)
      local out = {}
      for _, r in ipairs(rows) do
        local v = {}
        for i, x in ipairs(r[2]) do v[i] = x end
        table.sort(v)
        out[#out + 1] = h.row(r[1], table.concat(v, ","))
      end
      return out
    end
    local expected = {}
    for k, v in pairs(want) do
      table.sort(v)
      expected[#expected + 1] = h.row(k, table.concat(v, ","))
    end
    local small, big = both(dir, function(f)
      return f:text(path):map(function(l)
        local k, n = l:match("^(%S+)\t(%d+)")
        return k, tonumber(n)
      end):group_by_key()
    end)
    h.assert_same_rows(expected, canon(small), "budget")
    h.assert_same_rows(canon(big), canon(small), "unlimited")
  end)

  it("join gives sqlite3's rows, as without a budget", function()
    -- right side: one row per key for a fifth of the keys
    local right = {}
    for k = 0, 19999, 5 do right[#right + 1] = string.format("k%05d,%d", k, k * 3) end
    local rpath = h.write_file(dir .. "/right.csv", table.concat(right, "\n") .. "\n")
    local left = {}
    for i, l in ipairs(lines) do
      local k, n = l:match("^(%S+)\t(%d+)")
      left[i] = k .. "," .. n
    end
    local lpath = h.write_file(dir .. "/left.csv", table.concat(left, "\n") .. "\n")
    local db = dir .. "/j.db"
    -- Tables made first, so .import reads the first line as a row.
    local sql = h.write_file(dir .. "/join.sql", string.format([[
CREATE TABLE l(k TEXT, v INTEGER); CREATE TABLE r(k TEXT, w INTEGER);
.import --csv %s l
.import --csv %s r
SELECT l.k, l.v, r.w FROM l JOIN r ON l.k = r.k;
]], lpath, rpath))
    local out, ok = h.sh(string.format("sqlite3 -batch -csv %s < %s", h.quote(db), h.quote(sql)))
    assert(ok, out)
    local expected = {}
    for _, line in ipairs(h.lines_of(out)) do
      local k, v, w = line:match("^([^,]+),(%d+),(%d+)$")
      assert(k, "sqlite3 line: " .. line)
      expected[#expected + 1] = h.row(k, v, w) -- csv fields are strings
    end
    assert(#expected > 20000, "the oracle join is too small to test anything")
    local small, big = both(dir, function(f)
      local r = f:csv(rpath)
      return f:csv(lpath):join(r)
    end)
    h.assert_same_rows(expected, small, "budget")
    h.assert_same_rows(big, small, "unlimited")
  end)
end)

describe("the store's directory", function()
  it("is refused while another gleam process holds it", function()
    local dir = h.tmpdir()
    local store = dir .. "/store"
    -- This process holds the store from its first run on.
    local n = gleam.flow():range(1, 10):count { dir = store }
    assert.are.equal(10, n)
    h.write_file(dir .. "/job.lua", [[print(require("gleam").flow():range(1, 10):count())]])
    local res = h.gleam({ "run", "--dir", store, "job.lua" }, dir)
    assert.are.equal(1, res.status)
    assert.are.equal("gleam: store: directory '" .. store .. "' is in use by another gleam process\n", res.stderr)
    gleam.config.dir = nil
    assert.are.equal(3, gleam.flow():range(1, 3):count { workers = 1 }) -- lets the store go
  end)

  it("starts cleanly after a run in it was killed with SIGKILL", function()
    local dir = h.tmpdir()
    local path = make_data(dir)
    for i = 1, 3 do h.sh(string.format("cat %s >> %s/big.tsv", h.quote(path), h.quote(dir))) end
    local store = dir .. "/store"
    h.write_file(dir .. "/job.lua", [[
local gleam = require "gleam"
gleam.flow():text(arg[1]):sort_by(1):printf("%s\n"):run()
]])
    -- Start a run, wait until it has written to LMDB, kill it mid-way.
    local out, ok = h.sh(string.format([[
cd %s && { %s run --memory 2M --dir store job.lua big.tsv > killed.out 2>&1 & pid=$!;
  for i in $(seq 1 200); do
    s=$(stat -c %%s store/data.mdb 2>/dev/null || echo 0)
    [ "$s" -gt 4000000 ] && break; sleep 0.05; done
  kill -9 $pid; wait $pid; echo "status $?"; }]], h.quote(dir), h.quote(h.bin)))
    assert(out:find("status 137", 1, true), "the run was not killed mid-way: " .. out)
    assert(file_size(store .. "/data.mdb") > 4000000)
    -- The next run in the same directory: no stale lock, a usable environment.
    local res = h.gleam({ "run", "--memory", "2M", "--dir", "store", "job.lua", "big.tsv" }, dir)
    assert.are.equal("", res.stderr)
    assert.are.equal(0, res.status)
    local want = h.sh("LC_ALL=C sort " .. h.quote(dir .. "/big.tsv"))
    assert(res.stdout == want, "the run after the kill differs from coreutils sort")
  end)

  it("full: a clear error naming the directory, and a non-zero exit", function()
    local dir = h.tmpdir()
    make_data(dir)
    h.write_file(dir .. "/job.lua", [[
local gleam = require "gleam"
print(gleam.flow():text(arg[1]):sort_by(1):count())
]])
    local out, ok = h.sh(string.format(
      "cd %s && GLEAM_LMDB_MAPSIZE=1048576 %s run --memory 1M --dir store job.lua data.tsv; echo \"status $?\"",
      h.quote(dir), h.quote(h.bin)))
    assert(ok)
    assert.are.equal("gleam: store: no room left in store: its LMDB map is full\nstatus 1\n", out)
  end)

  it("is a temporary one by default, removed at exit", function()
    local dir = h.tmpdir()
    make_data(dir)
    h.sh("mkdir " .. h.quote(dir .. "/tmp"))
    -- The job lists $TMPDIR after its run, while the engine (and its store) lives.
    h.write_file(dir .. "/job.lua", [[
local gleam = require "gleam"
print(gleam.flow():text(arg[1]):sort_by(1):count())
io.stdout:flush()
os.execute("ls $TMPDIR")
]])
    local out, ok = h.sh(string.format("cd %s && TMPDIR=%s/tmp %s run --memory 1M job.lua data.tsv",
      h.quote(dir), h.quote(dir), h.quote(h.bin)))
    assert(ok, out)
    assert(out:match("^120000\ngleam%-%w%w%w%w%w%w\n$"), "no temporary store while running: " .. out)
    local left = h.sh("ls -A " .. h.quote(dir .. "/tmp"))
    assert.are.equal("", left)
  end)
end)

describe("gleam run --memory", function()
  it("takes sizes with units and refuses others with a usage error", function()
    local dir = h.tmpdir()
    h.write_file(dir .. "/job.lua", [[print(require("gleam").flow():range(1, 5):count())]])
    for _, m in ipairs({ "3M", "3m", "1G", "512KiB", "4194304", "2.5M" }) do
      local res = h.gleam({ "run", "--memory", m, "job.lua" }, dir)
      assert.are.equal(0, res.status, m .. ": " .. res.stderr)
      assert.are.equal("5\n", res.stdout)
    end
    for _, m in ipairs({ "lots", "0", "-1M", "3X" }) do
      local res = h.gleam({ "run", "--memory", m, "job.lua" }, dir)
      assert.are.equal(2, res.status, m)
      assert(res.stderr:match("^gleam: %-%-memory: "), res.stderr)
    end
  end)

  it("parse_size reads units as powers of 1024", function()
    assert.are.equal(256 * 2 ^ 20, gleam.parse_size("256M"))
    assert.are.equal(2 ^ 30, gleam.parse_size("1g"))
    assert.are.equal(1536, gleam.parse_size("1.5K"))
    assert.are.equal(7, gleam.parse_size(7))
    assert.is_nil(gleam.parse_size("7 apples"))
  end)
end)

describe("ds:cache() and ds:on_disk()", function()
  -- The map appends a line to a log per row it sees, so the log counts how
  -- often the dataset was computed.
  local function logged(f, log, n)
    return f:range(1, n, { shards = 3 }):map(function(i)
      local fh = io.open(log, "a")
      fh:write(i, "\n")
      fh:close()
      return i % 7, i
    end)
  end

  local function lines_in(path)
    local s = h.read_file(path) or ""
    return select(2, s:gsub("\n", ""))
  end

  it("computes a cached dataset once for the runs after it", function()
    local dir = h.tmpdir()
    local log = dir .. "/log"
    local f = gleam.flow()
    local base = logged(f, log, 300):cache()
    local sums = base:reduce_by_key(gleam.fn.sum):collect { workers = 2 }
    assert.are.equal(300, lines_in(log))
    local want = {}
    for i = 1, 300 do want[i % 7] = (want[i % 7] or 0) + i end
    local expected = {}
    for k, v in pairs(want) do expected[#expected + 1] = h.row(k, v) end
    h.assert_same_rows(expected, sums)
    -- Later runs, other steps on top: no new computation, same rows.
    assert.are.equal(300, base:count { workers = 2 })
    assert.are.equal(42, base:filter(function(k) return k == 0 end):count { workers = 1 })
    local top = base:sort_by(2, { desc = true }):limit(2):collect { workers = 2 }
    h.assert_rows({ h.row(300 % 7, 300), h.row(299 % 7, 299) }, top)
    assert.are.equal(300, lines_in(log))
    -- uncache: computed again
    base:uncache()
    assert.are.equal(300, base:count { workers = 2 })
    assert.are.equal(600, lines_in(log))
  end)

  it("keeps a cached dataset that does not fit the budget in LMDB", function()
    local dir = h.tmpdir()
    local f = gleam.flow()
    local big = f:range(1, 200000, { shards = 4 }):map(function(i) return i, string.rep("y", 40) end):cache()
    assert.are.equal(200000, big:count { memory = "2M", dir = dir .. "/store" })
    assert(file_size(dir .. "/store/data.mdb") > 8000000, "the cached shards are not in LMDB")
    local last = big:sort_by(1, { desc = true }):limit(1):collect { memory = "2M", dir = dir .. "/store" }
    h.assert_rows({ h.row(200000, string.rep("y", 40)) }, last)
    big:uncache()
  end)

  it("on_disk writes a dataset to LMDB with any budget and gives the same rows", function()
    local dir = h.tmpdir()
    local f = gleam.flow()
    local d = f:range(1, 50000, { shards = 2 }):map(function(i) return i, tostring(i) end):on_disk()
    local rows = d:filter(function(i) return i % 1000 == 0 end):collect { memory = "4G", dir = dir .. "/store", workers = 2 }
    assert(file_size(dir .. "/store/data.mdb") > 500000, "on_disk rows are not in LMDB")
    local expected = {}
    for i = 1000, 50000, 1000 do expected[#expected + 1] = h.row(i, tostring(i)) end
    h.assert_rows(expected, rows)
  end)
end)

describe("one key with more rows than the budget", function()
  -- 99% of the rows share key 0.
  local function skewed(f)
    return f:range(1, 300000, { shards = 2 }):map(function(i) return i % 100 == 0 and i or 0, i, "pad" end)
  end

  it("group_by_key hands its values to the next step as an iterator from disk", function()
    local function build(f)
      return skewed(f):group_by_key():map(function(k, vs)
        local n, s = 0, 0
        for _, v in gleam.values(vs) do
          n = n + 1
          s = s + v[1]
        end
        return k, n, s, type(vs) == "cdata", #vs
      end)
    end
    local small = build(gleam.flow()):collect { memory = TINY, workers = 2 }
    local big = build(gleam.flow()):collect { memory = "4G", workers = 2 }
    -- the oracle: a plain loop
    local want = { [0] = { 0, 0 } }
    for i = 1, 300000 do
      local k = i % 100 == 0 and i or 0
      want[k] = want[k] or { 0, 0 }
      want[k][1], want[k][2] = want[k][1] + 1, want[k][2] + i
    end
    local expected = {}
    for k, v in pairs(want) do expected[#expected + 1] = h.row(k, v[1], v[2]) end
    local function strip(rows)
      local out, iters = {}, 0
      for _, r in ipairs(rows) do
        out[#out + 1] = h.row(r[1], r[2], r[3])
        assert.are.equal(r[2], r[5]) -- #values is the count either way
        if r[4] then iters = iters + 1 end
      end
      return out, iters
    end
    local s_rows, s_iters = strip(small)
    local b_rows, b_iters = strip(big)
    h.assert_same_rows(expected, s_rows, "budget")
    h.assert_same_rows(expected, b_rows, "unlimited")
    assert.are.equal(1, s_iters) -- key 0, from disk
    assert.are.equal(0, b_iters)
  end)

  it("join: a key with many rows on both sides, right side from disk, in blocks of left rows", function()
    local pad = string.rep("r", 700)
    -- Per key of the join's output: rows, and sums of the left and right
    -- values and of the padding's length (1.2 million rows in all).
    local function build(f, how)
      -- left: 3000 rows of key 0 and one row each for keys 1..2000
      local left = f:range(1, 5000, { shards = 2 }):map(function(i) return i <= 3000 and 0 or i - 3000, i end)
      -- right: 400 wide rows of key 0, keys 1500..2500 once
      local right = f:range(1, 1401, { shards = 2 }):map(function(i)
        if i <= 400 then return 0, i, pad end
        return i + 1099, -i, "x"
      end)
      return left:join(right, { how = how }):map(function(k, l, r, p)
        return k, 1, l or 0, r or 0, p and #p or 0
      end):reduce_by_key(gleam.fn.sum)
    end
    for _, how in ipairs({ "inner", "left", "right", "outer" }) do
      local small = build(gleam.flow(), how):collect { memory = "1M", workers = 2 }
      local big = build(gleam.flow(), how):collect { memory = "4G", workers = 2 }
      h.assert_same_rows(big, small, how)
      -- the oracle: a nested loop over the same rows
      local L, R = {}, {}
      for i = 1, 5000 do L[#L + 1] = { i <= 3000 and 0 or i - 3000, i } end
      for i = 1, 1401 do
        if i <= 400 then R[#R + 1] = { 0, i, 700 } else R[#R + 1] = { i + 1099, -i, 1 } end
      end
      local byk = {}
      for _, r in ipairs(R) do
        byk[r[1]] = byk[r[1]] or {}
        table.insert(byk[r[1]], r)
      end
      local acc, met = {}, {}
      local function add(k, l, r, p)
        local a = acc[k] or { 0, 0, 0, 0 }
        acc[k] = a
        a[1], a[2], a[3], a[4] = a[1] + 1, a[2] + l, a[3] + r, a[4] + p
      end
      for _, l in ipairs(L) do
        local rs = byk[l[1]]
        if rs then
          met[l[1]] = true
          for _, r in ipairs(rs) do add(l[1], l[2], r[2], r[3]) end
        elseif how == "left" or how == "outer" then
          add(l[1], l[2], 0, 0)
        end
      end
      if how == "right" or how == "outer" then
        for _, r in ipairs(R) do
          if not met[r[1]] then add(r[1], 0, r[2], r[3]) end
        end
      end
      local expected = {}
      for k, a in pairs(acc) do expected[#expected + 1] = h.row(k, a[1], a[2], a[3], a[4]) end
      h.assert_same_rows(expected, small, how .. ": the oracle")
    end
  end)

  it("group_by_key without a Lua step after it keeps the group in memory", function()
    local rows = skewed(gleam.flow()):group_by_key():collect { memory = TINY, workers = 2 }
    local n = 0
    for _, r in ipairs(rows) do
      if r[1] == 0 then n = #r[2] end
    end
    assert.are.equal(297000, n)
  end)

  it("spilled values refuse indexing with a clear error instead of looking empty", function()
    local res = h.run_job([[
local gleam = require "gleam"
gleam.flow():range(1, 300000, { shards = 2 }):map(function(i) return i % 100 == 0 and i or 0, i end)
  :group_by_key():map(function(k, vs) return k, vs[1] end):count { memory = "2M" }
]])
    assert.are.equal(1, res.status)
    assert(res.stderr:find("too big for memory and are read from disk: iterate them once", 1, true), res.stderr)
  end)

  it("spilled values can be read only by the step right after group_by_key", function()
    -- a value that merely looks like spilled values names no live group
    -- (a step that reads it: a map that only moves fields copies them in C)
    local res = h.run_job([[
local gleam = require "gleam"
gleam.flow():msgpack(arg[1]):map(function(k, v) return k, #v end):collect()
]], { args = { "forged.msgpack" }, files = { ["forged.msgpack"] = "\x92\x01\xd7\x47\x00\x00\x00\x00\x00\x00\x00\x2a" } })
    assert.are.equal(1, res.status)
    assert(res.stderr:find("group values (msgpack ext type 71) that are not live", 1, true), res.stderr)
  end)
end)
