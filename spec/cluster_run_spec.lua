-- cluster_run_spec: `gleam run --master` against a master and three agents,
-- real processes on free loopback ports. Every job runs twice, locally and
-- on the cluster, and the outputs must match: byte for byte where the flow
-- orders its rows (the examples, sort_by, top), as multisets otherwise.
-- Then the failures: a Lua error fails the job with local mode's message
-- after --max-attempts runs; an executor killed with SIGKILL mid-task, an
-- agent killed mid-job (also after it finished a stage whose shards it
-- held) and the master killed mid-job leave the output as it would have
-- been. The agents hold a job's shards only while it runs, and move a
-- task's output larger than one frame, spilling it to LMDB under --dir.
-- count() moves no rows to the driver. (ds:cache() on a cluster:
-- cluster_cache_spec.lua.)
local helpers = require "helpers"

local HB = "0.2" -- agents' heartbeat: granted slots come back this fast

local cluster -- { master, agents }

local function start()
  local m = helpers.spawn({ "master", "--listen", "127.0.0.1:0" })
  m.addr = helpers.listening(m)
  local agents = {}
  for i = 1, 3 do
    local a = helpers.spawn({ "agent", "--master", m.addr, "--listen", "127.0.0.1:0", "--cores", "2",
      "--dir", helpers.tmpdir() .. "/agent" .. i, "--heartbeat", HB })
    a.addr = helpers.listening(a)
    agents[i] = a
  end
  assert.truthy(helpers.wait_for(10, function()
    local log = helpers.read_file(m.log) or ""
    local n = 0
    for _ in log:gmatch("agent [%d%.:]+ registered") do n = n + 1 end
    return n == 3
  end), "the agents did not register: " .. (helpers.read_file(m.log) or ""))
  return { master = m, agents = agents }
end

local shown = helpers.shown

local function agents_log() return helpers.logs(cluster.agents) end

local function count(s, pat)
  local n = 0
  for _ in s:gmatch(pat) do n = n + 1 end
  return n
end


-- Runs `gleam run [extra] JOB ARGS` from dir, locally and with --master.
local function both(dir, job, args, extra)
  local function run(pre)
    local a = { "run" }
    for _, x in ipairs(pre) do a[#a + 1] = x end
    a[#a + 1] = job
    for _, x in ipairs(args or {}) do a[#a + 1] = x end
    return helpers.gleam(a, dir)
  end
  local pre = { "--master", cluster.master.addr }
  for _, x in ipairs(extra or {}) do pre[#pre + 1] = x end
  return run({}), run(pre)
end

local function sorted_lines(s)
  local t = {}
  for l in s:gmatch("[^\n]+") do t[#t + 1] = l end
  table.sort(t)
  return table.concat(t, "\n")
end

-- The head of a job whose map, napping(x, at), sleeps 1.5 s on row `at`.
local NAPPING = [[
local gleam = require "gleam"
local ffi = require "ffi"
local function napping(x, at)
  if x == at then
    pcall(ffi.cdef, "int poll(void *fds, unsigned long n, int timeout);")
    ffi.C.poll(nil, 0, 1500)
  end
end
]]

describe("gleam run --master", function()
  setup(function() cluster = start() end)
  teardown(function()
    helpers.stop_all()
    helpers.cleanup()
  end)

  local src = helpers.source_dir
  local examples = {
    { "wordcount.lua" },
    { "wordcount.lua", { "--lua", src .. "/README.md" } },
    { "sort.lua", { src .. "/README.md" } },
    { "sort.lua", { "--desc", src .. "/examples/*.lua" } },
    { "top.lua", { "7", "scores.tsv" } },
    { "join.lua" },
    { "csv.lua" },
    { "pipe.lua" },
  }
  for _, e in ipairs(examples) do
    local name = e[1] .. " " .. table.concat(e[2] or {}, " "):gsub("[^ ]*/", "")
    it("runs examples/" .. name .. " with local mode's output", function()
      -- scores for top.lua: "name<TAB>score" lines, ties included
      local scores = {}
      for i = 1, 500 do scores[i] = string.format("n%03d\t%d\n", i, i * 37 % 101) end
      local tsv = helpers.write_file(helpers.tmpdir() .. "/scores.tsv", table.concat(scores))
      local args = {}
      for i, a in ipairs(e[2] or {}) do args[i] = a == "scores.tsv" and tsv or a end
      local loc, clu = both(src, src .. "/examples/" .. e[1], args)
      assert.are.equal(0, loc.status, shown(loc))
      assert.are.equal(0, clu.status, shown(clu))
      assert.truthy(#loc.stdout > 0, shown(loc))
      assert.are.equal(loc.stdout, clu.stdout)
    end)
  end

  it("gleam repl --master runs its jobs there and names the cluster in its banner", function()
    local res = helpers.gleam({ "repl", "--master", cluster.master.addr, "-e",
      "io.write(require('gleam.repl').banner())" })
    assert.are.equal(0, res.status, shown(res))
    assert.truthy(res.stdout:find("on master " .. cluster.master.addr .. ": 3 agents, 6 cores.", 1, true),
      res.stdout)
    local job = "f:range(1, 2000):map(function(x) return x % 7, x end):reduce_by_key(gleam.fn.sum):sort_by(1):collect()"
    local loc = helpers.gleam({ "repl", "-e", job })
    local clu = helpers.gleam({ "repl", "--master", cluster.master.addr, "-e", job })
    assert.are.equal(0, loc.status, shown(loc))
    assert.are.equal(0, clu.status, shown(clu))
    assert.truthy(loc.stdout:find("{ 0, 285285 }", 1, true), loc.stdout)
    assert.are.equal(loc.stdout, clu.stdout)
    -- a master nobody answers at: the banner says so
    local bad = helpers.gleam({ "repl", "--master", "127.0.0.1:1", "-e",
      "local b, why = require('gleam.repl').banner() print(b, why)" })
    assert.truthy(bad.stdout:find("^nil\tcannot ask master 127.0.0.1:1: "), bad.stdout)
  end)

  it("runs its tasks on the agents' executors", function()
    local before = count(agents_log(), "executor pid %d+ started")
    local _, clu = both(src, src .. "/examples/wordcount.lua")
    assert.are.equal(0, clu.status, shown(clu))
    local log = agents_log()
    assert.truthy(count(log, "executor pid %d+ started") > before, log)
    -- on more than one agent
    local used = 0
    for _, a in ipairs(cluster.agents) do
      if (helpers.read_file(a.log) or ""):find("started", 1, true) then used = used + 1 end
    end
    assert.truthy(used >= 2, log)
  end)

  -- Operator flows: each prints its rows, one per line, fields tab-separated.
  local prelude = [[
local gleam = require "gleam"
local function show(rows)
  for _, r in ipairs(rows) do
    local t = {}
    for i = 1, r.n do t[i] = type(r[i]) == "table" and "{" .. table.concat(r[i], ",") .. "}" or tostring(r[i]) end
    print(table.concat(t, "\t"))
  end
end
local f = gleam.flow("ops")
local nums = f:range(1, 3000)
]]
  local flows = {
    { "map and filter", false, [[show(nums:map(function(x) return x, x * x % 97 end)
      :filter(function(x, y) return y % 3 ~= 0 end):collect())]] },
    { "reduce_by_key", false, [[show(nums:map(function(x) return x % 37, x end)
      :reduce_by_key(function(a, b) return a + b end):collect())]] },
    { "reduce_by_key with built-ins over text", false, [[show(f:text("words.txt"):flatmap(gleam.fn.words)
      :reduce_by_key(gleam.fn.count):collect())]] },
    { "group_by_key", false, [[show(nums:map(function(x) return x % 11, x end):group_by_key()
      :map(function(k, vs) local n, s = 0, 0 for _, v in ipairs(vs) do n = n + 1 s = s + v end return k, n, s end)
      :collect())]] },
    { "join", false, [[local a = nums:map(function(x) return x % 50, x end)
      local b = f:range(1, 40):map(function(x) return x, "b" .. x end)
      show(a:join(b):collect())]] },
    { "left join", false, [[local a = nums:map(function(x) return x % 50, x end)
      local b = f:range(1, 40):map(function(x) return x, "b" .. x end)
      show(a:join(b, { how = "left" }):collect())]] },
    { "sort_by", true, [[show(nums:map(function(x) return (x * 7919) % 10007, x end):sort_by(1):collect())]] },
    { "sort_by descending", true, [[show(nums:map(function(x) return (x * 7919) % 10007, x end)
      :sort_by(1, { desc = true }):collect())]] },
    { "top", true, [[show(nums:map(function(x) return (x * 31) % 1009, x end):top(15, { by = 1 }):collect())]] },
    { "distinct", false, [[show(nums:map(function(x) return x % 101 end):distinct():collect())]] },
    { "union", false, [[show(nums:filter(function(x) return x % 7 == 0 end)
      :union(f:range(1, 20), nums:filter(function(x) return x > 2990 end)):collect())]] },
    { "printf and count", true, [[nums:filter(function(x) return x % 500 == 0 end):sort_by(1):printf("%d\n"):run()
      print(nums:count())]] },
  }
  for _, fl in ipairs(flows) do
    it("runs " .. fl[1] .. " with local mode's rows" .. (fl[2] and " in order" or ""), function()
      local dir = helpers.tmpdir()
      helpers.write_file(dir .. "/job.lua", prelude .. fl[3] .. "\n")
      local words = {}
      for i = 1, 2000 do words[i] = ("w" .. (i * 13 % 97)) .. (i % 9 == 0 and "\n" or " ") end
      helpers.write_file(dir .. "/words.txt", table.concat(words))
      local loc, clu = both(dir, "job.lua")
      assert.are.equal(0, loc.status, shown(loc))
      assert.are.equal(0, clu.status, shown(clu))
      assert.truthy(#loc.stdout > 0, shown(loc))
      if fl[2] then
        assert.are.equal(loc.stdout, clu.stdout)
      else
        assert.are.equal(sorted_lines(loc.stdout), sorted_lines(clu.stdout))
      end
    end)
  end

  it("fails a job whose Lua raises with local mode's message, after --max-attempts runs", function()
    local dir = helpers.tmpdir()
    helpers.write_file(dir .. "/job.lua", [[
local gleam = require "gleam"
gleam.flow("e"):range(1, 100):map(function(x)
  if x == 42 then error("no 42 here") end
  return x
end):collect()
]])
    local before = count(agents_log(), "failed: map %(job.lua:2%)")
    local loc, clu = both(dir, "job.lua", nil, { "--max-attempts", "2" })
    assert.are.equal(1, loc.status, shown(loc))
    assert.are.equal("gleam: map (job.lua:2): job.lua:3: no 42 here; row (42)\n", loc.stderr)
    assert.are.equal(1, clu.status, shown(clu))
    assert.are.equal(loc.stderr, clu.stderr)
    assert.are.equal("", clu.stdout)
    assert.truthy(helpers.wait_for(3, function()
      return count(agents_log(), "failed: map %(job.lua:2%)") - before == 2
    end), agents_log())
  end)

  -- count() on a cluster adds up the row counts the tasks report: the
  -- driver reads (sockets included, /proc/self/io rchar) far less than
  -- the 20 MB of rows it counts, which collect() does bring.
  it("counts without moving the rows to the driver, with local mode's count", function()
    local dir = helpers.tmpdir()
    helpers.write_file(dir .. "/job.lua", [[
local gleam = require "gleam"
local function read()
  return tonumber(io.open("/proc/self/io"):read("*a"):match("rchar: (%d+)"))
end
local ds = gleam.flow("n"):range(1, 200000):map(function(x) return x, ("x"):rep(100) end)
  :filter(function(x) return x % 7 ~= 0 end)
local at = read()
print(ds:count())
local counted = read() - at
at = read()
print(#ds:collect())
local collected = read() - at
print(counted < 2e6 and collected > 1e7 and "rows stayed" or ("read " .. counted .. " then " .. collected))
]])
    local loc, clu = both(dir, "job.lua")
    assert.are.equal(0, clu.status, shown(clu))
    assert.are.equal("171429\n171429\n", loc.stdout:match("^%d+\n%d+\n"))
    assert.are.equal("171429\n171429\nrows stayed\n", clu.stdout)
  end)

  it("takes the master from a sink's options and from gleam.config", function()
    local dir = helpers.tmpdir()
    helpers.write_file(dir .. "/job.lua", [[
local gleam = require "gleam"
-- the agents' logs (arg[2], ...) grow when one of them runs a task
local function logged()
  local n = 0
  for i = 2, #arg do n = n + #(io.open(arg[i]):read("*a")) end
  return n
end
local before = logged()
local rows = gleam.flow("x"):range(1, 50):map(function(x) return x % 5, x end)
  :reduce_by_key(function(a, b) return a + b end):sort_by(1)
for _, r in ipairs(rows:collect{ master = arg[1] }) do print(r[1], r[2]) end
gleam.config.master = arg[1]
print(rows:count())
local after = logged()
print(after > before and "ran on the agent" or "ran locally")
]])
    local args = { "run", "job.lua", cluster.master.addr }
    for _, a in ipairs(cluster.agents) do args[#args + 1] = a.log end
    local r = helpers.gleam(args, dir)
    assert.are.equal(0, r.status, shown(r))
    assert.are.equal("0\t275\n1\t235\n2\t245\n3\t255\n4\t265\n5\nran on the agent\n", r.stdout)
  end)

  -- Writes job.lua: NAPPING, then source, which sets `rows`, then writes
  -- them to arg[1]. Runs it locally into local.out, then starts it on the
  -- cluster (extra: options before the job) into cluster.out. Returns dir,
  -- the driver, and a function that lists the executors started since,
  -- each { pid, agent (that started it), stage }.
  local function start_job(source, extra)
    local dir = helpers.tmpdir()
    helpers.write_file(dir .. "/job.lua", NAPPING .. source .. [[
local out = assert(io.open(arg[1], "w"))
for _, r in ipairs(rows) do out:write(r[1], "\t", r[2], "\n") end
out:close()
]])
    local loc = helpers.gleam({ "run", "job.lua", dir .. "/local.out" }, dir)
    assert.are.equal(0, loc.status, shown(loc))
    local before = {}
    for i, a in ipairs(cluster.agents) do before[i] = #(helpers.read_file(a.log) or "") end
    local function started()
      local execs = {}
      for i, a in ipairs(cluster.agents) do
        local log = (helpers.read_file(a.log) or ""):sub(before[i] + 1)
        for id, pid in log:gmatch("task (%d+) of job %d+: executor pid (%d+) started") do
          execs[#execs + 1] = { pid = tonumber(pid), agent = a, stage = math.floor(tonumber(id) / 2 ^ 32) }
        end
      end
      return execs
    end
    local args = { "run", "--master", cluster.master.addr }
    for _, x in ipairs(extra or {}) do args[#args + 1] = x end
    args[#args + 1] = dir .. "/job.lua"
    args[#args + 1] = dir .. "/cluster.out"
    return dir, helpers.spawn(args), started
  end

  -- A job one task of which naps 1.5 s on row 300 each time it runs: long
  -- enough to kill something under it, started as start_job does once the
  -- quick tasks are done.
  local function slow_job()
    local dir, drv, started = start_job([[
local rows = gleam.flow("slow"):range(1, 600):map(function(x)
  napping(x, 300)
  return x % 10, x
end):reduce_by_key(function(a, b) return a + b end):sort_by(1):collect()
]])
    assert.truthy(helpers.wait_for(10, function() return #started() > 0 end), agents_log())
    helpers.sleep_ms(600) -- the quick tasks are done; the napping one is not
    return dir, drv, started
  end

  -- The executors of the list still running (the napping one).
  local function running(execs)
    local alive = {}
    for _, e in ipairs(execs) do
      local cmd = helpers.read_file("/proc/" .. e.pid .. "/cmdline") or ""
      if helpers.alive(e) and cmd:find("executor", 1, true) then alive[#alive + 1] = e end
    end
    return alive
  end

  local function same_output(dir, drv)
    assert.truthy(helpers.wait_for(20, function() return not helpers.alive(drv) end), "the job did not end")
    assert.are.equal(helpers.read_file(dir .. "/local.out"), helpers.read_file(dir .. "/cluster.out"),
      helpers.read_file(drv.log))
  end

  it("runs a task again when its executor is killed, with the same output", function()
    local dir, drv, started = slow_job()
    local alive = running(started())
    assert.are.equal(1, #alive, agents_log())
    helpers.kill(alive[1])
    same_output(dir, drv)
    assert.truthy(agents_log():find("was killed by signal 9", 1, true), agents_log())
  end)

  it("gives each executor half its agent's memory over its cores, and spills under the agent's --dir", function()
    local m = helpers.spawn({ "master", "--listen", "127.0.0.1:0" })
    m.addr = helpers.listening(m)
    local adir = helpers.tmpdir() .. "/agent"
    local a = helpers.spawn({ "agent", "--master", m.addr, "--listen", "127.0.0.1:0", "--cores", "2",
      "--memory", "8M", "--dir", adir, "--heartbeat", HB })
    helpers.listening(a)
    assert.truthy(helpers.wait_for(10, function() return (helpers.read_file(m.log) or ""):find("registered") end))
    local dir = helpers.tmpdir()
    -- 2 tasks of ~3 MB each: past half of a 2 MiB executor budget (8M / 2
    -- / 2 cores), not of 8 MiB; the last row naps, so the spill can be seen
    helpers.write_file(dir .. "/job.lua", NAPPING .. [[
local n = gleam.flow("big"):range(1, 60000):map(function(x)
  napping(x, 60000)
  return x, ("y"):rep(100)
end):count()
print(n)
]])
    local drv = helpers.spawn({ "run", "--master", m.addr, dir .. "/job.lua" })
    local spilled = helpers.wait_for(10, function()
      return helpers.sh("ls " .. helpers.quote(adir .. "/tmp") .. "/gleam-*/data.mdb 2>/dev/null"):find("data.mdb", 1, true)
    end)
    assert.truthy(helpers.wait_for(20, function() return not helpers.alive(drv) end), "the job did not end")
    assert.are.equal("60000\n", helpers.read_file(drv.log))
    assert.truthy(spilled, "no executor store spilled under " .. adir .. "/tmp")
    -- and the executor removed it when done
    assert.are.equal("", helpers.sh("ls -A " .. helpers.quote(adir .. "/tmp")))
  end)

  -- A master and 2 agents of --memory 8M and --cores 1, with a secret (the
  -- raw client below speaks the handshake); made by the first test that
  -- wants it, stopped with the rest.
  local small
  local SECRET = "cluster-run-spec-secret"
  local function small_cluster()
    if small then return small end
    local env = { GLEAM_SECRET = SECRET }
    local m = helpers.spawn({ "master", "--listen", "127.0.0.1:0" }, env)
    m.addr, m.host = helpers.listening(m), helpers.LOOPBACK
    local agents, dirs = {}, {}
    for i = 1, 2 do
      dirs[i] = helpers.tmpdir() .. "/agent"
      agents[i] = helpers.spawn({ "agent", "--master", m.addr, "--listen", "127.0.0.1:0", "--cores", "1",
        "--memory", "8M", "--dir", dirs[i], "--heartbeat", HB }, env)
      agents[i].addr = helpers.listening(agents[i])
    end
    assert.truthy(helpers.wait_for(10, function()
      return count(helpers.read_file(m.log) or "", "registered") == 2
    end))
    small = { master = m, agents = agents, dirs = dirs, env = env }
    return small
  end

  -- One task's output of ~75 MB, more than a frame holds, crosses from one
  -- agent to the other, on agents whose 8M of memory sends their shards to
  -- LMDB under --dir; later runs reuse the space the first one's dropped
  -- shards left.
  it("moves a task's output larger than a frame between agents, spilled under their --dir", function()
    local sc = small_cluster()
    local dir = helpers.tmpdir()
    helpers.write_file(dir .. "/job.lua", [[
local gleam = require "gleam"
local rows = gleam.flow("big"):range(1, 700000, { shards = 1 })
  :map(function(x) return x, ("y"):rep(100) end)
  :partition(2)
  :map(function(x, s) return x % 10, #s + x end)
  :reduce_by_key(function(a, b) return a + b end)
  :sort_by(1):collect()
for _, r in ipairs(rows) do print(r[1], r[2]) end
]])
    local loc = helpers.gleam({ "run", "job.lua" }, dir)
    assert.are.equal(0, loc.status, shown(loc))
    assert.are.equal(10, count(loc.stdout, "\n"))
    -- the largest data file of the two agents after each run
    local sizes = {}
    for round = 1, 3 do
      local clu = helpers.gleam({ "run", "--master", sc.master.addr, "job.lua" }, dir, nil, sc.env)
      assert.are.equal(0, clu.status, shown(clu))
      assert.are.equal(loc.stdout, clu.stdout)
      assert.truthy(helpers.wait_for(5, function() return helpers.stored(sc.agents, sc.env) == 0 end))
      sizes[round] = math.max(helpers.file_size(sc.dirs[1] .. "/shards/data.mdb"),
        helpers.file_size(sc.dirs[2] .. "/shards/data.mdb"))
    end
    -- the 75 MB went through LMDB, and later runs reused the room the
    -- dropped shards left (the first-stage task may run on either agent)
    assert.truthy(sizes[1] > 64 * 2 ^ 20, "data.mdb files of " .. sizes[1] .. " bytes")
    assert.truthy(sizes[3] <= sizes[1] * 1.5, table.concat(sizes, " bytes, then "))
  end)

  -- A one-stage job of two tasks: one naps 3 s, the other leaves its ~37 MB
  -- output on its agent, which nobody fetches before the driver does, at
  -- the end. Meanwhile a raw client fetches it and reads nothing for a
  -- second: the agent queues a few MB for it, not the partition; then
  -- every row arrives, and the end.
  it("serves a shard at its reader's pace", function()
    local sc = small_cluster()
    local codec = require "gleam.codec"
    local dir = helpers.tmpdir()
    helpers.write_file(dir .. "/job.lua", NAPPING .. [[
print(gleam.flow("held"):range(1, 700000, { shards = 2 }):map(function(x)
  napping(x, 17)
  napping(x, 17)
  return x, ("y"):rep(100)
end):count())
]])
    local logs = {}
    for i, a in ipairs(sc.agents) do logs[i] = #(helpers.read_file(a.log) or "") end
    -- both slots free, so task 1 ends while task 0 naps: count() moves no
    -- rows, so the job ends when its last task does
    assert.truthy(helpers.wait_slots(sc, nil, 10, sc.env))
    local drv = helpers.spawn({ "run", "--master", sc.master.addr, dir .. "/job.lua" }, sc.env)
    -- the agent holding task 1's output (partition 1: the last stage's
    -- tasks each write their own), and the job
    local holder, job
    assert.truthy(helpers.wait_for(20, function()
      for i, a in ipairs(sc.agents) do
        local j = (helpers.read_file(a.log) or ""):sub(logs[i] + 1):match("task 1 of job (%d+) done")
        if j then holder, job = a, j end
      end
      return holder
    end), "task 1 did not finish")
    local function rss()
      return tonumber((helpers.read_file("/proc/" .. holder.pid .. "/status") or ""):match("VmRSS:%s*(%d+)"))
    end
    local c = helpers.handshake(holder.addr, "executor", SECRET)
    local before = rss()
    c:send(helpers.frame(helpers.msgpack({ t = "fetch", job = helpers.u64(job), stage = 0, part = 1, tasks = { 1 } })))
    helpers.sleep_ms(1000)
    local held = rss() - before
    local bytes, rows, ended = 0, 0, nil
    while not ended do
      local body, why = c:frame(10)
      assert.truthy(body, why)
      local m = codec.unpack(body)
      if m.t == "chunk" then
        bytes, rows = bytes + #m.rows, rows + tonumber(m.nrows)
      else
        ended = m
      end
    end
    c:close()
    assert.are.same({ t = "end", ok = true, text = "" }, { t = ended.t, ok = ended.ok, text = ended.text })
    assert.are.same({ 350000, true }, { rows, bytes > 35e6 })
    assert.truthy(held < 16 * 1024, "the agent grew by " .. held .. " KB while its reader waited")
    assert.truthy(helpers.wait_for(20, function() return not helpers.alive(drv) end), "the job did not end")
    assert.are.equal("700000\n", helpers.read_file(drv.log))
  end)

  -- An agent that no longer has a shard it should (a raw driver told it to
  -- drop the job, while the second stage naps on the other agent): the
  -- next stage's fetch from it ends "shard not here", the driver gives up
  -- on that agent, and what it held is made again on the other, with one
  -- attempt per task: no task is charged for it.
  it("gives up on an agent that can't serve a shard, and makes what it held again", function()
    local sc = small_cluster()
    local dir = helpers.tmpdir()
    helpers.write_file(dir .. "/job.lua", NAPPING .. [[
local rows = gleam.flow("dropped"):range(1, 20000):map(function(x) return x % 101, x end)
  :reduce_by_key(function(a, b) return a + b end)
  :map(function(k, v) napping(k, 17) napping(k, 17) return k, v end)
  :sort_by(1):collect()
for _, r in ipairs(rows) do print(r[1], r[2]) end
]])
    local loc = helpers.gleam({ "run", "job.lua" }, dir)
    assert.are.equal(0, loc.status, shown(loc))
    local logs = {}
    for i, a in ipairs(sc.agents) do logs[i] = #(helpers.read_file(a.log) or "") end
    local function log(i) return (helpers.read_file(sc.agents[i].log) or ""):sub(logs[i] + 1) end
    local drv = helpers.spawn({ "run", "--master", sc.master.addr, "--max-attempts", "1", dir .. "/job.lua" }, sc.env)
    -- the agent whose second-stage task is done while the other's naps
    local quick, job
    assert.truthy(helpers.wait_for(20, function()
      for i = 1, 2 do
        local j = log(i):match("task 429496729[67] of job (%d+) done")
        if j then quick, job = i, j end
      end
      return quick
    end), "no second-stage task finished")
    local c = helpers.handshake(sc.agents[quick].addr, "driver", SECRET)
    c:send(helpers.frame(helpers.msgpack({ t = "drop", job = helpers.u64(job) })))
    assert.truthy(helpers.wait_for(20, function() return not helpers.alive(drv) end), "the job did not end")
    c:close()
    assert.are.equal(loc.stdout, helpers.read_file(drv.log))
    -- the other agent ran the first stage's tasks again
    assert.truthy(count(log(3 - quick), "task [01] of job %d+: executor pid") >= 2, log(3 - quick))
  end)

  -- (SIGTERM: a background process of the spec's shell ignores SIGINT)
  it("stops a job's executors when its driver is stopped", function()
    local _, drv, started = slow_job()
    local alive = running(started())
    assert.are.equal(1, #alive, agents_log())
    helpers.kill(drv, "TERM")
    assert.truthy(helpers.wait_for(5, function() return not helpers.alive(alive[1]) end), agents_log())
    assert.truthy(agents_log():find("killed its executor %(pid " .. alive[1].pid .. "%): its driver is gone"),
      agents_log())
    -- and the shards its finished tasks left are dropped with its connection
    assert.truthy(helpers.wait_for(5, function() return helpers.stored(cluster.agents) == 0 end),
      "stored: " .. helpers.stored(cluster.agents))
  end)

  it("keeps a job's shards on the agents while it runs, and drops them when it ends", function()
    local dir, drv = slow_job()
    -- the quick tasks' outputs are on their agents while the napping one runs
    local mid = helpers.wait_for(3, function()
      local n = helpers.stored(cluster.agents)
      return n > 0 and n
    end)
    same_output(dir, drv)
    assert.truthy(mid, "no agent held a shard mid-job")
    assert.truthy(helpers.wait_for(5, function() return helpers.stored(cluster.agents) == 0 end),
      "stored after the job: " .. helpers.stored(cluster.agents))
  end)

  -- A multi-stage job: reduce_by_key, then a map one task of which naps 3 s,
  -- then sort_by. Once the second stage has started (the first is done,
  -- its shards on every agent), an agent not running the napping task is
  -- killed: the shards it held, of both stages, are made again from what
  -- the others hold, and no task is charged an attempt for it.
  it("makes again the shards an agent killed after the first stage held, with local mode's output", function()
    -- one attempt per task: a task is not charged for the agent's loss
    local dir, drv, started = start_job([[
local rows = gleam.flow("lost"):range(1, 200000):map(function(x) return x % 5003, x end)
  :reduce_by_key(function(a, b) return a + b end)
  :map(function(k, v) napping(k, 17) napping(k, 17) return k, v end)
  :sort_by(2, { desc = true }):collect()
]], { "--max-attempts", "1" })
    local function of_stage(s)
      local n = 0
      for _, e in ipairs(started()) do if e.stage == s then n = n + 1 end end
      return n
    end
    assert.truthy(helpers.wait_for(15, function() return of_stage(1) > 0 end), agents_log())
    local first = of_stage(0)
    -- every task of the second stage has started (there are as many as in
    -- the first), and all but the napping one are done: the agent killed
    -- runs none, so no task would be charged for its loss
    assert.truthy(helpers.wait_for(10, function() return of_stage(1) == first and #running(started()) == 1 end),
      agents_log())
    local napping = running(started())
    local victim
    for _, e in ipairs(started()) do
      if e.stage == 0 and e.agent ~= napping[1].agent and helpers.alive(e.agent) then victim = e.agent end
    end
    assert.truthy(victim, "no other agent ran a task of the first stage: " .. agents_log())
    helpers.kill(victim)
    same_output(dir, drv)
    -- the lost first-stage shards were made again
    assert.truthy(of_stage(0) > first, agents_log())
  end)

  -- These two change the cluster: they come last.
  it("runs the tasks of an agent killed mid-job on the others, with the same output", function()
    local dir, drv, started = slow_job()
    local alive = running(started())
    assert.are.equal(1, #alive, agents_log())
    helpers.kill(alive[1].agent)
    same_output(dir, drv)
    -- its orphaned executor ends when it finds its channel gone
    assert.truthy(helpers.wait_for(5, function() return not helpers.alive(alive[1]) end))
    helpers.kill(alive[1])
  end)

  -- An executor whose agent is killed outright ends at once (the kernel
  -- kills it: PR_SET_PDEATHSIG), not when its task would have ended.
  -- (on a cluster of its own: the shared one has lost agents by now)
  it("ends the executors of an agent killed outright", function()
    local shared = cluster
    cluster = helpers.start_cluster({ agents = 1 })
    finally(function()
      helpers.stop_cluster(cluster)
      cluster = shared
    end)
    local _, drv, started = start_job([[
local rows = gleam.flow("orphan"):range(1, 600):map(function(x)
  if x == 300 and os.getenv("GLEAM_AGENT_PID") then -- only on an executor
    pcall(ffi.cdef, "int poll(void *fds, unsigned long n, int timeout);")
    ffi.C.poll(nil, 0, 60000)
  end
  return x, x
end):collect()
]])
    assert.truthy(helpers.wait_for(10, function() return #running(started()) == 1 end), agents_log())
    local alive = running(started())
    -- let the quick tasks end, so the one running naps
    assert.truthy(helpers.wait_for(10, function()
      return #running(started()) == 1 and running(started())[1].pid == alive[1].pid
    end), agents_log())
    helpers.kill(alive[1].agent)
    assert.truthy(helpers.wait_for(5, function() return not helpers.alive(alive[1]) end),
      "the executor outlived its agent by 5 s")
    helpers.kill(drv, "TERM")
    assert.truthy(helpers.wait_for(10, function() return not helpers.alive(drv) end), "the driver did not end")
  end)

  it("finishes a job whose master is killed mid-job", function()
    local dir, drv = slow_job()
    helpers.kill(cluster.master)
    same_output(dir, drv)
  end)

  it("says why when the master can't be reached, and checks --master", function()
    local dir = helpers.tmpdir()
    helpers.write_file(dir .. "/job.lua", 'require("gleam").flow("x"):range(1, 3):collect()\n')
    local r = helpers.gleam({ "run", "--master", "127.0.0.1:1", "job.lua" }, dir)
    assert.are.equal(1, r.status)
    assert.truthy(r.stderr:find("gleam: cluster: cannot get executor slots from the master at 127.0.0.1:1: ", 1, true),
      r.stderr)
    r = helpers.gleam({ "run", "--master", "nowhere", "job.lua" }, dir)
    assert.are.equal(2, r.status)
    assert.truthy(r.stderr:find("--master needs HOST:PORT", 1, true), r.stderr)
    r = helpers.gleam({ "run", "--max-attempts", "0", "job.lua" }, dir)
    assert.are.equal(2, r.status)
  end)
end)
