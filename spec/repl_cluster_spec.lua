-- repl_cluster_spec: `gleam repl --master` in a real terminal (tmux, as
-- spec/repl_spec.lua does locally), against a master and two agents on
-- free loopback ports. One session, typed step by step, each step's
-- screen checked: the banner names the cluster; a statement continued on
-- a second line; Tab completes a dataset method; collect and count give
-- local mode's values; Ctrl-C cancels a long job, the prompt comes back
-- and the job's executors are gone from the agents; the next job runs; a
-- Lua error, at the prompt or in a task, prints its message and the
-- session goes on; a dataset cached on one line is read on the next with
-- local mode's rows and no executor for its stages, kept on the agents
-- until ds:uncache(); Ctrl-D leaves with status 0.
--
-- The steps run in order on the session setup() starts; a step that
-- needs something new types it itself.
local h = require "helpers"
local term = require "tmux"

local cluster, t
local typed = 0 -- lines fed to the session so far: an error names stdin:<line>

local function has(text, part)
  assert.truthy(text:find(part, 1, true), "expected '" .. part .. "' in:\n" .. text)
end

-- Types a line, counts it, and waits for the next prompt; returns the screen.
local function line(text, timeout)
  typed = typed + 1
  return t:line(text, timeout or 60)
end

-- What `gleam repl` prints for these lines, locally (stdin as a script).
local function local_output(lines)
  local dir = h.tmpdir()
  local script = h.write_file(dir .. "/script.lua", table.concat(lines, "\n") .. "\n")
  local res = h.gleam({ "repl", "--workers", "3" }, dir, script)
  assert.are.equal(0, res.status, res.stderr)
  return res.stdout
end

-- The agents' executors started since `from` (a list of log lengths):
-- their pids.
local function executors_since(from)
  local pids = {}
  for i, a in ipairs(cluster.agents) do
    local log = (h.read_file(a.log) or ""):sub(from[i] + 1)
    for pid in log:gmatch("executor pid (%d+) started") do pids[#pids + 1] = tonumber(pid) end
  end
  return pids
end

-- The stages (task id >> 32) of the executors started since `from`.
local function stages_since(from)
  local stages = {}
  for i, a in ipairs(cluster.agents) do
    local log = (h.read_file(a.log) or ""):sub(from[i] + 1)
    for id in log:gmatch("task (%d+) of job %d+: executor pid %d+ started") do
      stages[#stages + 1] = math.floor(tonumber(id) / 2 ^ 32)
    end
  end
  return stages
end

local function log_lengths()
  local n = {}
  for i, a in ipairs(cluster.agents) do n[i] = #(h.read_file(a.log) or "") end
  return n
end

describe("gleam repl --master in a terminal", function()
  if not term.available() then
    it("runs a session on a cluster", function() pending("tmux is not installed") end)
    return
  end

  -- A step of the session: once one fails the rest are not run (they
  -- would each wait out their timeouts on a session in another state).
  local failed
  local function step(name, fn)
    it(name, function()
      if failed then error("not run: the step before, '" .. failed .. "', failed", 0) end
      local ok, err = pcall(fn)
      if not ok then
        failed = name
        error(err, 0)
      end
    end)
  end

  setup(function()
    cluster = h.start_cluster{ agents = 2, cores = 2 }
    t = term.start_repl({ "--master", cluster.master.addr }, { width = 160 })
  end)
  teardown(function()
    if t then t:kill() end
    h.stop_cluster(cluster)
    h.stop_all()
    h.cleanup()
  end)

  step("names the master, its agents and their cores in the banner", function()
    local screen = t:screen()
    local banner = screen:match("^([^\n]*)\n")
    assert.truthy(banner:match("^gleam %S+ REPL %(LuaJIT %S+%), on master "
      .. cluster.master.addr:gsub("%.", "%%.") .. ": 2 agents, 4 cores%.$"), banner)
    has(screen, "\nf is a flow to start from; .help lists commands and methods; Ctrl-D leaves.\ngleam>")
  end)

  -- The lines whose values are checked against local mode's.
  local SESSION = {
    "local n = 3",
    "ds = f:range(1, 5000):map(function(x)",
    "  return x % 5, x * n end)",
    "ds:reduce_by_key(gleam.fn.sum):sort_by(1):collect()",
    "ds:count()",
  }
  local want = {} -- local mode's output of the collect and the count

  step("continues an unfinished statement on the next line", function()
    want.collect = local_output({ unpack(SESSION, 1, 4) })
    want.count = local_output(SESSION):sub(#want.collect + 1)
    assert.are.equal("5000\n", want.count)
    assert.truthy(want.collect:find("^{\n  { 0, 7507500 },\n"), want.collect) -- one row a line: too wide for one
    line(SESSION[1])
    local screen = line(SESSION[2])
    assert.truthy(screen:match("\ngleam> " .. SESSION[2]:gsub("%p", "%%%0") .. "\n  %.%.%.>\n$"), screen)
    screen = line(SESSION[3])
    assert.truthy(screen:match("\n  %.%.%.> " .. SESSION[3]:gsub("%p", "%%%0") .. "\ngleam>\n$"), screen)
  end)

  step("collects on the cluster with local mode's rows", function()
    local screen = line(SESSION[4])
    has(screen, "gleam> " .. SESSION[4] .. "\n" .. want.collect .. "gleam>")
  end)

  step("completes a dataset method with Tab and counts with local mode's value", function()
    t:type("ds:cou")
    t:keys("Tab")
    t:wait_text("gleam> ds:count")
    t:type("()")
    typed = typed + 1
    t:keys("Enter")
    t:wait(function(s) return s:find("gleam> ds:count()\n" .. want.count .. "gleam>", 1, true) and term.at_prompt(s) end,
      "the count", 60)
  end)

  step("cancels a long job with Ctrl-C: the prompt comes back and its executors are gone", function()
    -- each row sleeps 20 ms: 4 tasks of 25000 rows, far longer than the test
    line("nap = function(x) local ffi = require 'ffi' pcall(ffi.cdef, " ..
      "'int poll(void *fds, unsigned long n, int timeout);') ffi.C.poll(nil, 0, 20) return x end")
    -- a job gets a shard per slot the master grants, and it counts the
    -- slots of the last job taken until the agents' next heartbeats
    assert.truthy(h.wait_slots(cluster))
    local from = log_lengths()
    typed = typed + 1
    t:start_line("f:range(1, 100000):map(nap):count()")
    -- running: an executor per slot, and the REPL waits in the job, so a
    -- Ctrl-C goes to it
    assert.truthy(h.wait_for(30, function() return #executors_since(from) == 4 end),
      "the job's executors did not start:\n" .. t:screen())
    assert.truthy(h.wait_slots(cluster, 0))
    t:keys("C-c")
    local screen = t:wait(term.at_prompt, "the prompt after Ctrl-C", 30)
    has(screen, "gleam> f:range(1, 100000):map(nap):count()\n^C\ngleam: interrupted (Ctrl-C)\ngleam>")
    -- the agents killed the job's executors when its driver hung up
    local pids = executors_since(from)
    local function gone(pid)
      if h.alive({ pid = pid }) then return false end
      for _, a in ipairs(cluster.agents) do
        if (h.read_file(a.log) or ""):find("killed its executor (pid " .. pid .. "): its driver is gone", 1, true) then
          return true
        end
      end
      return false
    end
    for _, pid in ipairs(pids) do
      assert.truthy(h.wait_for(10, function() return gone(pid) end),
        "executor " .. pid .. " of the cancelled job still runs, or no agent says it killed it")
    end
    -- and the master sees every slot free again
    assert.truthy(h.wait_slots(cluster))
  end)

  step("runs the next job after the cancelled one", function()
    local screen = line("ds:filter(function(k) return k == 2 end):count()")
    has(screen, "\n1000\ngleam>")
  end)

  step("prints a Lua error at the prompt and goes on", function()
    local screen = line("error('oops')")
    has(screen, "gleam> error('oops')\ngleam: stdin:" .. typed .. ": oops\ngleam>")
  end)

  step("prints a task's error with local mode's message and goes on", function()
    local job = "f:range(1, 20):map(function(x) if x == 7 then error('no 7') end return x end):count()"
    local loc = h.gleam({ "repl", "-e", job })
    assert.are.equal(1, loc.status)
    local screen = line(job)
    local msg = loc.stderr:gsub("%(command line%):1", "stdin:" .. typed)
    assert.are.equal("gleam: map (stdin:" .. typed .. "): stdin:" .. typed .. ": no 7; row (7)\n", msg)
    has(screen, "gleam> " .. job .. "\n" .. msg .. "gleam>")
    screen = line("ds:count()")
    has(screen, "gleam> ds:count()\n5000\ngleam>")
  end)

  -- The cached dataset's stages are 0 (the map and the map-side combine)
  -- and 1 (the merge); the line that reads it adds stages 2 to 4 (the
  -- filter and a key sample, the range partitions, the sort).
  local CACHE = {
    "sums = ds:reduce_by_key(gleam.fn.sum):cache()",
    "sums:count()",
    "sums:filter(function(k) return k > 1 end):sort_by(1):collect()",
  }

  step("caches a dataset on the agents and reads it on the next line without running its stages", function()
    local all = { unpack(SESSION, 1, 3) }
    for _, l in ipairs(CACHE) do all[#all + 1] = l end
    local want_count = local_output({ unpack(all, 1, 5) })
    local want_rows = local_output(all):sub(#want_count + 1)
    assert.are.equal("5\n", want_count)
    assert.truthy(h.wait_slots(cluster))
    line(CACHE[1])
    local from = log_lengths()
    local screen = line(CACHE[2])
    has(screen, "gleam> " .. CACHE[2] .. "\n5\ngleam>")
    local first = stages_since(from)
    table.sort(first)
    assert.are.equal(0, first[1], "the count did not compute the dataset")
    assert.truthy(h.stored(cluster.agents) > 0, "the agents keep nothing")
    assert.truthy(h.wait_slots(cluster))
    from = log_lengths()
    screen = line(CACHE[3])
    has(screen, "gleam> " .. CACHE[3] .. "\n" .. want_rows .. "gleam>")
    local next = stages_since(from)
    assert.truthy(#next > 0, "no executor ran the line")
    for _, st in ipairs(next) do assert.truthy(st >= 2, "the cached stages ran again") end
  end)

  step("frees the cached shards on the agents at uncache()", function()
    line("sums:uncache()")
    assert.are.equal(0, h.stored(cluster.agents))
  end)

  step("leaves on Ctrl-D with status 0", function()
    t:keys("C-d")
    local screen = t:wait_text("[exited 0]")
    assert.truthy(screen:match("\ngleam> %^D\n%[exited 0%]\n$"), screen)
  end)
end)
