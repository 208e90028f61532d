-- cluster_cache_spec: ds:cache() on a cluster (`gleam run --master`),
-- real processes on free loopback ports. A script caches a dataset and
-- runs several sinks on it: the first computes it and the agents keep its
-- shards past that job; the next ones start no executor for it or for
-- anything before it (the agents' logs name each executor's job and task,
-- whose stage is task >> 32), place their tasks on the agents holding
-- their input, and print local mode's output. The agents'
-- stored bytes (`gleam status --agent`) fall to 0 at ds:uncache() and when
-- the driver is killed with SIGKILL; an agent killed while it holds cached
-- shards costs the next run a recompute, with the same rows (killed under
-- a task that reads them, the job runs again from the start); a dataset
-- cached by a local run is computed again on the cluster, and the
-- reverse, with the same rows; an on_disk() dataset's shards go to the
-- agents' LMDB.
local helpers = require "helpers"

local cluster

local shown = helpers.shown

local function agents_log() return helpers.logs(cluster.agents) end

local function all_stored() return helpers.stored(cluster.agents) end

-- The log lengths of the agents now, to read what they log from here on.
local function marks()
  local m = {}
  for i, a in ipairs(cluster.agents) do m[i] = #(helpers.read_file(a.log) or "") end
  return m
end

-- The executors started since marks m, by job: { [job] = { [stage] = n } }.
local function executors_since(m)
  local jobs = {}
  for i, a in ipairs(cluster.agents) do
    local log = (helpers.read_file(a.log) or ""):sub((m[i] or 0) + 1)
    for id, job in log:gmatch("task (%d+) of job (%d+): executor pid %d+ started") do
      jobs[job] = jobs[job] or {}
      local s = math.floor(tonumber(id) / 2 ^ 32)
      jobs[job][s] = (jobs[job][s] or 0) + 1
    end
  end
  return jobs
end

-- The executors started between marks from and to (nil: now), each
-- { stage, index, agent (its number) }.
local function placed(from, to)
  local v = {}
  for i, a in ipairs(cluster.agents) do
    local log = (helpers.read_file(a.log) or ""):sub(from[i] + 1, to and to[i] or nil)
    for id in log:gmatch("task (%d+) of job %d+: executor pid %d+ started") do
      local n = tonumber(id)
      v[#v + 1] = { stage = math.floor(n / 2 ^ 32), index = n % 2 ^ 32, agent = i }
    end
  end
  return v
end

-- Whether some executor started since marks m is done.
local function log_has_done(m)
  for i, a in ipairs(cluster.agents) do
    if (helpers.read_file(a.log) or ""):sub(m[i] + 1):find(" done\n") then return true end
  end
  return false
end

-- The jobs whose executors started since marks m, and how many of them
-- computed the cached dataset (ran its stage 0).
local function computed_since(m)
  local n, computed = 0, 0
  for _, st in pairs(executors_since(m)) do
    n = n + 1
    computed = computed + (st[0] and 1 or 0)
  end
  return n, computed
end

-- Waits for the driver drv to end; what it wrote must be want.
local function ends_with(drv, want)
  assert.truthy(helpers.wait_for(60, function() return not helpers.alive(drv) end), "the job did not end")
  assert.are.equal(want, helpers.read_file(drv.log), agents_log())
end

-- Waits, in a job, for the test: touches arg[1]/name .. ".ready", then
-- polls for arg[1]/name .. ".go".
local SYNC = [[
local gleam = require "gleam"
local ffi = require "ffi"
pcall(ffi.cdef, "int poll(void *fds, unsigned long n, int timeout);")
local function sync(name)
  io.open(arg[1] .. "/" .. name .. ".ready", "w"):close()
  while not io.open(arg[1] .. "/" .. name .. ".go", "r") do ffi.C.poll(nil, 0, 50) end
end
local function show(rows)
  table.sort(rows, function(a, b) return a[1] < b[1] end)
  for _, r in ipairs(rows) do print(r[1], r[2]) end
end
]]

-- The cached dataset: a reduce of 20000 rows to 101 keys. Its stages are
-- 0 (range, map, the map-side combine) and 1 (the merge: the cached one).
local CACHED = [[
local ds = gleam.flow("c"):range(1, 20000):map(function(x) return x % 101, x end)
  :reduce_by_key(function(a, b) return a + b end):cache()
]]

-- Writes job.lua (SYNC, CACHED, then body) in a new directory, runs it
-- locally, and returns the directory and the local output.
local function job(body)
  local dir = helpers.tmpdir()
  helpers.write_file(dir .. "/job.lua", SYNC .. CACHED .. body)
  local want = helpers.gleam({ "run", "job.lua", dir, "local" }, dir)
  assert.are.equal(0, want.status, shown(want))
  return dir, want.stdout
end

local function touch(dir, name) helpers.write_file(dir .. "/" .. name .. ".go", "") end
local function ready(dir, name)
  return helpers.wait_for(30, function() return helpers.read_file(dir .. "/" .. name .. ".ready") end)
end

-- Two sinks on the cached dataset (with sync points when run on a
-- cluster: arg[2] is not "local").
local TWO_SINKS = [[
local on = arg[2] ~= "local"
print(ds:count())
if on then sync("first") end
show(ds:filter(function(k) return k < 7 end):collect())
print(ds:map(function(k, v) return k, v * 2 end):sort_by(2, { desc = true }):collect()[1][2])
]]

describe("ds:cache() on a cluster", function()
  setup(function() cluster = helpers.start_cluster({ agents = 3, cores = 2 }) end)
  teardown(function()
    helpers.stop_cluster(cluster)
    helpers.stop_all()
    helpers.cleanup()
  end)

  it("keeps the shards for the next sinks, which start no executor for the cached stage", function()
    assert.truthy(helpers.wait_slots(cluster))
    local dir, want = job(TWO_SINKS)
    touch(dir, "first") -- its sync point answered before it asks
    local m = marks()
    local r = helpers.gleam({ "run", "--master", cluster.master.addr, "job.lua", dir, "cluster" }, dir)
    assert.are.equal(want, r.stdout, shown(r) .. agents_log())
    assert.are.equal(0, r.status, shown(r))
    local jobs = executors_since(m)
    assert.are.equal(3, (computed_since(m)), agents_log())
    -- the first job computes stages 0 and 1 (the cached one) and reads it in
    -- stage 2; the next ones run only what reads it
    local first
    for j, st in pairs(jobs) do if st[0] then assert.is_nil(first, agents_log()) first = j end end
    assert.truthy(first, agents_log())
    assert.truthy(jobs[first][1] and jobs[first][2] and not jobs[first][3], agents_log())
    for j, st in pairs(jobs) do
      if j ~= first then
        assert.is_nil(st[0], agents_log())
        assert.is_nil(st[1], agents_log())
      end
    end
    -- the driver has ended: its session is gone, and so are the shards
    assert.truthy(helpers.wait_for(5, function() return all_stored() == 0 end), "stored: " .. all_stored())
  end)

  it("frees the agents' kept shards at ds:uncache(), and computes the dataset again after it", function()
    local dir, want = job([[
print(ds:count())
if arg[2] ~= "local" then sync("cached") end
ds:uncache()
if arg[2] ~= "local" then sync("uncached") end
show(ds:filter(function(k) return k < 3 end):collect())
]])
    local m = marks()
    local drv = helpers.spawn({ "run", "--master", cluster.master.addr, dir .. "/job.lua", dir, "cluster" })
    assert.truthy(ready(dir, "cached"), helpers.read_file(drv.log))
    local held = all_stored()
    assert.truthy(held > 0, "no shards kept: " .. agents_log())
    touch(dir, "cached")
    assert.truthy(ready(dir, "uncached"), helpers.read_file(drv.log))
    assert.are.equal(0, all_stored())
    touch(dir, "uncached")
    ends_with(drv, want)
    -- the second job computed it again
    assert.are.same({ 2, 2 }, { computed_since(m) }, agents_log())
  end)

  it("frees the agents' kept shards when the driver is killed", function()
    local dir = job(TWO_SINKS)
    local drv = helpers.spawn({ "run", "--master", cluster.master.addr, dir .. "/job.lua", dir, "cluster" })
    assert.truthy(ready(dir, "first"), helpers.read_file(drv.log))
    assert.truthy(all_stored() > 0, "no shards kept: " .. agents_log())
    helpers.kill(drv, "KILL")
    assert.truthy(helpers.wait_for(5, function() return all_stored() == 0 end), "stored: " .. all_stored())
  end)

  it("computes a dataset cached by a local run again on the cluster, and the reverse, with the same rows", function()
    local dir = helpers.tmpdir()
    helpers.write_file(dir .. "/job.lua", SYNC .. CACHED .. [[
local master = arg[2]
local function some(opts) show(ds:filter(function(k) return k < 4 end):collect(opts)) end
some()                       -- local: cached here
some{ master = master }      -- computed on the cluster, and kept there
some()                       -- the local cache
some{ master = master }      -- the cluster's
]])
    local m = marks()
    local r = helpers.gleam({ "run", "job.lua", dir, cluster.master.addr }, dir)
    assert.are.equal(0, r.status, shown(r))
    local block = "0\t1989801\n1\t1990000\n2\t1990199\n3\t1970397\n"
    assert.are.equal(block:rep(4), r.stdout)
    assert.are.same({ 2, 1 }, { computed_since(m) }, agents_log())
  end)

  it("writes an on_disk() cached dataset's shards to the agents' LMDB", function()
    local dir = helpers.tmpdir()
    helpers.write_file(dir .. "/job.lua", SYNC .. [[
local ds = gleam.flow("d"):range(1, 30000):map(function(x) return x, ("%08d"):format(x) end):on_disk():cache()
print(ds:count())
if arg[2] ~= "local" then sync("kept") end
print(ds:filter(function(k) return k % 1000 == 0 end):count())
]])
    local want = helpers.gleam({ "run", "job.lua", dir, "local" }, dir)
    assert.are.equal(0, want.status, shown(want))
    local drv = helpers.spawn({ "run", "--master", cluster.master.addr, dir .. "/job.lua", dir, "cluster" })
    assert.truthy(ready(dir, "kept"), helpers.read_file(drv.log))
    -- the rows are in the agents' LMDB files (DIR/shards), not only in memory
    local found = 0
    for _, a in ipairs(cluster.agents) do
      local adir = a.args[#a.args - 2]
      local p = io.popen("grep -c -a 00029999 " .. helpers.quote(adir) .. "/shards/data.mdb 2>/dev/null")
      found = found + (tonumber((p:read("*a") or ""):match("(%d+)%s*$")) or 0)
      p:close()
    end
    touch(dir, "kept")
    ends_with(drv, want.stdout)
    assert.truthy(found > 0, "no agent's LMDB holds the rows: " .. agents_log())
  end)

  -- These kill an agent: they come last.
  it("runs a job again from the start when an agent holding kept shards a task needs is lost mid-job", function()
    local dir, want = job([[
print(ds:count())
if arg[2] ~= "local" then sync("first") end
show(ds:map(function(k, v)
  if k == 17 then -- the task of key 17 naps
    pcall(ffi.cdef, "int poll(void *fds, unsigned long n, int timeout);")
    ffi.C.poll(nil, 0, 2000)
  end
  return k, v
end):collect())
]])
    local m = marks()
    local drv = helpers.spawn({ "run", "--master", cluster.master.addr, dir .. "/job.lua", dir, "cluster" })
    assert.truthy(ready(dir, "first"), helpers.read_file(drv.log))
    -- every slot free again, so that the job runs on every agent
    assert.truthy(helpers.wait_slots(cluster))
    local before = marks()
    touch(dir, "first")
    -- the napping task: the one executor of the second job still running
    local napper
    assert.truthy(helpers.wait_for(20, function()
      local running = {}
      for i, a in ipairs(cluster.agents) do
        local log = (helpers.read_file(a.log) or ""):sub(before[i] + 1)
        for pid in log:gmatch("executor pid (%d+) started") do
          local e = { pid = tonumber(pid), agent = a }
          if helpers.alive(e) then running[#running + 1] = e end
        end
      end
      if #running == 1 and log_has_done(before) then napper = running[1] end
      return napper
    end), agents_log())
    assert.truthy(helpers.stored({ napper.agent }) > 0, "the napping task's agent keeps nothing: " .. agents_log())
    -- the tasks reading the kept stage went where their input is: task i
    -- of stage 2 to the agent that made task i of stage 1, slots allowing
    local made, reads, near = {}, 0, 0
    for _, e in ipairs(placed(m, before)) do
      if e.stage == 1 then made[e.index] = e.agent end
    end
    for _, e in ipairs(placed(before)) do
      if e.stage == 2 then
        reads = reads + 1
        near = near + (made[e.index] == e.agent and 1 or 0)
      end
    end
    assert.truthy(reads > 0 and near * 2 > reads, near .. " of " .. reads .. " near their input: " .. agents_log())
    helpers.kill(napper.agent)
    ends_with(drv, want)
    -- the first job and the second's second run computed the dataset
    assert.are.same({ 3, 2 }, { computed_since(m) }, agents_log())
  end)

  it("computes the kept shards of an agent killed between two sinks again, with the same rows", function()
    local dir, want = job(TWO_SINKS)
    local m = marks()
    local drv = helpers.spawn({ "run", "--master", cluster.master.addr, dir .. "/job.lua", dir, "cluster" })
    assert.truthy(ready(dir, "first"), helpers.read_file(drv.log))
    local victim
    for _, a in ipairs(cluster.agents) do
      if helpers.stored({ a }) > 0 then victim = a end
    end
    assert.truthy(victim, "no agent keeps shards: " .. agents_log())
    helpers.kill(victim)
    touch(dir, "first")
    ends_with(drv, want)
    -- the second job made the dataset again (stage 0 ran), and the third
    -- used what the second kept
    assert.are.same({ 3, 2 }, { computed_since(m) }, agents_log())
  end)
end)
