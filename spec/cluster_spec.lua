-- Cluster daemons as real processes on loopback: gleam master and gleam
-- agent on free ports (port 0, the bound address read from the log),
-- queried with gleam status and with a raw TCP client that speaks the wire
-- protocol (and mis-speaks it). Every daemon is killed after each test,
-- failed or not.
local helpers = require "helpers"

local HB = "0.5" -- agents' heartbeat interval in these tests, seconds (3 missed: forgotten)

-- The cases decide which secret each process has.
assert(os.getenv("GLEAM_SECRET") == nil, "unset GLEAM_SECRET to run the cluster specs")

-- Parses gleam status output into { [addr] = { cores, free, memory, stored, age } }.
local function parse_status(out)
  local agents, n = {}, 0
  for line in out:gmatch("[^\n]+") do
    local addr, cores, free, mem, stored, age = line:match("^(%S+)\t(%d+)\t(%d+)\t(%d+)\t(%d+)\t([%d%.]+)$")
    if addr then
      agents[addr] = { cores = tonumber(cores), free = tonumber(free), memory = tonumber(mem),
                       stored = tonumber(stored), age = tonumber(age) }
      n = n + 1
    end
  end
  return agents, n
end

-- Runs gleam status against addr (opts: agent = ask an agent, secret_file,
-- env = { NAME = value }); returns the result plus agents and their count.
local function status(addr, opts)
  opts = opts or {}
  local args = { "status", opts.agent and "--agent" or "--master", addr, "--timeout", "5" }
  if opts.secret_file then
    args[#args + 1] = "--secret-file"
    args[#args + 1] = opts.secret_file
  end
  local res = helpers.gleam(args, nil, nil, opts.env)
  res.agents, res.n = parse_status(res.stdout)
  return res
end

local function start_master(extra, env)
  local args = { "master", "--listen", "127.0.0.1:0" }
  for _, a in ipairs(extra or {}) do args[#args + 1] = a end
  local m = helpers.spawn(args, env)
  m.addr = helpers.listening(m)
  return m
end

local function start_agent(master_addr, extra, env)
  local args = { "agent", "--master", master_addr, "--listen", "127.0.0.1:0",
                 "--dir", helpers.tmpdir() .. "/agent", "--heartbeat", HB }
  for _, a in ipairs(extra or {}) do args[#args + 1] = a end
  local a = helpers.spawn(args, env)
  a.addr = helpers.listening(a)
  return a
end

local function log_of(d) return helpers.read_file(d.log) or "" end

-- Waits until the master lists exactly the agents in want (a set of
-- addresses); returns the last status (opts as for status).
local function wait_agents(master, want, seconds, opts)
  local res
  helpers.wait_for(seconds or 10, function()
    res = status(master.addr, opts)
    if res.status ~= 0 then return false end
    for addr in pairs(want) do if not res.agents[addr] then return false end end
    for addr in pairs(res.agents) do if not want[addr] then return false end end
    return true
  end)
  return res
end

local handshake = helpers.handshake

local function set(...)
  local s = {}
  for _, d in ipairs({ ... }) do s[d.addr] = true end
  return s
end

local function shown(res)
  return string.format("status %s\nstdout:\n%s\nstderr:\n%s", tostring(res.status), res.stdout, res.stderr)
end

describe("gleam master and agents", function()
  after_each(function()
    helpers.stop_all()
    helpers.cleanup()
  end)

  it("registers agents with what they offer and reports them", function()
    local m = start_master()
    local a1 = start_agent(m.addr, { "--cores", "3", "--memory", "1G" })
    local a2 = start_agent(m.addr, { "--cores", "2", "--memory", "512M" })
    local res = wait_agents(m, set(a1, a2))
    assert.are.equal(0, res.status, shown(res))
    assert.are.equal(2, res.n, shown(res))
    assert.are.same({ cores = 3, free = 3, memory = 1073741824, stored = 0 },
      { cores = res.agents[a1.addr].cores, free = res.agents[a1.addr].free,
        memory = res.agents[a1.addr].memory, stored = res.agents[a1.addr].stored })
    assert.are.equal(2, res.agents[a2.addr].cores)
    assert.are.equal(512 * 1048576, res.agents[a2.addr].memory)
    assert.is_true(res.agents[a1.addr].age < 1, shown(res))
    assert.truthy(res.stdout:match("^agent\tcores\tfree_slots\tmemory\tstored\theartbeat_age_s\n"))
    -- an agent answers status about itself on its own port
    local own = status(a1.addr, { agent = true })
    assert.are.equal(0, own.status, shown(own))
    assert.are.equal(1, own.n)
    assert.are.equal(3, own.agents[a1.addr].cores)
    -- the start-up lines say there is no secret, so loopback only
    assert.truthy(log_of(m):find("no secret configured", 1, true))
    assert.truthy(log_of(a1):find("loopback only", 1, true))
    assert.truthy(log_of(m):find("agent " .. a1.addr .. " registered: 3 cores, 1.0 GiB memory", 1, true), log_of(m))
  end)

  -- A master and two agents, both registered.
  local function two_agents()
    local m = start_master()
    local a1, a2 = start_agent(m.addr), start_agent(m.addr)
    assert.are.equal(2, wait_agents(m, set(a1, a2)).n)
    return m, a1, a2
  end

  -- (stopped, not killed: its connection stays open, only the beats stop)
  it("forgets an agent that misses its heartbeats, and only that one", function()
    local m, a1, a2 = two_agents()
    os.execute("kill -STOP " .. a2.pid)
    -- 3 missed beats of 0.5 s: gone well within 5 s
    local res = wait_agents(m, set(a1), 5)
    assert.are.equal(1, res.n, shown(res))
    assert.truthy(res.agents[a1.addr])
    assert.truthy(log_of(m):find("agent " .. a2.addr .. " forgotten: no heartbeat", 1, true), log_of(m))
    -- the live one stays, its heartbeat fresh, over many intervals
    helpers.sleep_ms(2500)
    res = status(m.addr)
    assert.are.equal(1, res.n, shown(res))
    assert.is_true(res.agents[a1.addr].age < 1.5, shown(res))
    assert.falsy(log_of(m):find("agent " .. a1.addr .. " forgotten", 1, true))
  end)

  -- An agent killed outright closes its connection: forgotten for that,
  -- not after its missed heartbeats (the log says which).
  it("forgets at once an agent whose connection closes", function()
    local m, a1, a2 = two_agents()
    helpers.kill(a2)
    local res = wait_agents(m, set(a1), 5)
    assert.are.equal(1, res.n, shown(res))
    assert.truthy(log_of(m):find("agent " .. a2.addr .. " forgotten: its connection closed", 1, true), log_of(m))
  end)

  it("rebuilds its registry after a restart from the agents' next heartbeats", function()
    local m, a1, a2 = two_agents()
    helpers.kill(m)
    -- while the master is down, a query fails with one clear line
    local down = status(m.addr)
    assert.are.equal(1, down.status)
    assert.truthy(down.stderr:find("cannot query the master at " .. m.addr .. ": cannot connect", 1, true), down.stderr)
    local m2 = helpers.spawn({ "master", "--listen", m.addr })
    m2.addr = helpers.listening(m2)
    assert.are.equal(m.addr, m2.addr)
    local res = wait_agents(m2, set(a1, a2), 5)
    assert.are.equal(2, res.n, shown(res))
    assert.truthy(log_of(a1):find("lost the master at " .. m.addr, 1, true), log_of(a1))
    -- an agent started while no master runs joins once one comes up
    helpers.kill(m2)
    local a3 = start_agent(m.addr)
    assert.truthy(helpers.wait_for(5, function()
      return log_of(a3):find("cannot join the master at " .. m.addr, 1, true)
    end), log_of(a3))
    local m3 = helpers.spawn({ "master", "--listen", m.addr })
    m3.addr = helpers.listening(m3)
    assert.are.equal(3, wait_agents(m3, set(a1, a2, a3), 5).n)
  end)

  it("refuses a peer with the wrong secret, and serves those with the right one", function()
    local dir = helpers.tmpdir()
    local good = helpers.write_file(dir .. "/secret", "s3cret-of-the-cluster\n")
    local bad = helpers.write_file(dir .. "/wrong", "another secret\n")
    local m = start_master({ "--secret-file", good })
    assert.truthy(log_of(m):find("secret from --secret-file", 1, true), log_of(m))
    local a1 = start_agent(m.addr, { "--secret-file", good })
    -- the same secret from the environment, without its newline
    local a2 = start_agent(m.addr, nil, { GLEAM_SECRET = "s3cret-of-the-cluster" })
    local intruder = start_agent(m.addr, { "--secret-file", bad })
    local res = wait_agents(m, set(a1, a2), 5, { secret_file = good })
    assert.are.equal(0, res.status, shown(res))
    assert.are.equal(2, res.n, shown(res))
    assert.falsy(res.agents[intruder.addr])
    helpers.sleep_ms(1500) -- several attempts: still out, and logged once each side
    res = status(m.addr, { secret_file = good })
    assert.are.equal(2, res.n, shown(res))
    assert.truthy(log_of(m):find("handshake refused: wrong secret", 1, true), log_of(m))
    local _, tries = log_of(intruder):gsub("cannot join the master", "")
    assert.are.equal(1, tries, log_of(intruder))
    assert.truthy(log_of(intruder):find("handshake refused by the peer: wrong secret", 1, true), log_of(intruder))
    -- gleam status with the wrong secret, or none, is refused with one line
    for _, opts in ipairs({ { secret_file = bad }, {} }) do
      local r = status(m.addr, opts)
      assert.are.equal(1, r.status, shown(r))
      assert.are.equal("", r.stdout)
      assert.are.equal(
        "gleam status: cannot query the master at " .. m.addr .. ": handshake refused by the peer: wrong secret\n",
        r.stderr)
    end
    -- an agent's own port checks the secret too
    local r = status(a1.addr, { agent = true, secret_file = bad })
    assert.are.equal(1, r.status, shown(r))
    assert.are.equal(0, status(a1.addr, { agent = true, secret_file = good }).status)
  end)

  it("listens beyond loopback only with a secret", function()
    local r = helpers.gleam({ "master", "--listen", "0.0.0.0:0" })
    assert.are.equal(1, r.status)
    assert.are.equal("gleam master: no secret (--secret-file or GLEAM_SECRET): refusing to listen on "
      .. "0.0.0.0:0, which is not a loopback address\n", r.stderr)
    r = helpers.gleam({ "agent", "--master", "127.0.0.1:1", "--listen", "0.0.0.0:0", "--dir", helpers.tmpdir() })
    assert.are.equal(1, r.status)
    assert.truthy(r.stderr:find("refusing to listen on 0.0.0.0:0", 1, true), r.stderr)
    local m = helpers.spawn({ "master", "--listen", "0.0.0.0:0" }, { GLEAM_SECRET = "k" })
    local addr = helpers.listening(m)
    assert.truthy(addr:match("^0%.0%.0%.0:%d+$"), addr)
    local port = addr:match(":(%d+)$")
    local res = status("127.0.0.1:" .. port, { env = { GLEAM_SECRET = "k" } })
    assert.are.equal(0, res.status, shown(res))
    -- an agent on every interface advertises the address facing the master
    local a = helpers.spawn({ "agent", "--master", "127.0.0.1:" .. port, "--listen", "0.0.0.0:0",
      "--dir", helpers.tmpdir(), "--heartbeat", HB }, { GLEAM_SECRET = "k" })
    local aport = helpers.listening(a):match(":(%d+)$")
    local want = { ["127.0.0.1:" .. aport] = true }
    local got
    helpers.wait_for(5, function()
      got = status("127.0.0.1:" .. port, { env = { GLEAM_SECRET = "k" } })
      return got.agents["127.0.0.1:" .. aport]
    end)
    assert.are.same(want, (function() local s = {} for k in pairs(got.agents) do s[k] = true end return s end)())
    -- a secret file that is missing or empty stops the daemon with one line
    r = helpers.gleam({ "master", "--listen", "127.0.0.1:0", "--secret-file", "/nonexistent/secret" })
    assert.are.equal(1, r.status)
    assert.are.equal("gleam master: secret file /nonexistent/secret: No such file or directory\n", r.stderr)
  end)

  it("grants drivers executor slots, spread over the agents, until heartbeats say otherwise", function()
    local S = "slots-spec-secret"
    local env = { GLEAM_SECRET = S }
    local codec = require "gleam.codec"
    local m = start_master({}, env)
    local a2 = start_agent(m.addr, { "--cores", "2", "--heartbeat", "1" }, env)
    local a3 = start_agent(m.addr, { "--cores", "3", "--heartbeat", "1" }, env)
    assert.are.equal(2, wait_agents(m, set(a2, a3), 5, { env = env }).n)
    local c = handshake(m.addr, "driver", S)
    -- returns { [addr] = slots granted }, and their sum
    local function ask(want)
      c:send(helpers.frame(helpers.msgpack({ t = "slots", want = want })))
      local body = assert(c:frame(5))
      local r = codec.unpack(body)
      assert.are.equal("agents", r.t)
      local got, sum = {}, 0
      for _, a in ipairs(r.agents) do
        got[a.addr] = a.slots
        sum = sum + a.slots
      end
      return got, sum
    end
    local got, sum = ask(4)
    assert.are.equal(4, sum)
    -- spread (the most free first: 3, then 2 and 2, ...), never past an agent's cores
    assert.is_true(got[a2.addr] >= 1 and got[a2.addr] <= 2 and got[a3.addr] >= 2 and got[a3.addr] <= 3)
    got, sum = ask(4) -- only one is left in the master's view
    assert.are.equal(1, sum)
    got, sum = ask(1)
    assert.are.equal(0, sum)
    -- the agents' next heartbeats (nothing runs on them) give all the slots back
    helpers.sleep_ms(2500)
    got, sum = ask(100)
    assert.are.same({ [a2.addr] = 2, [a3.addr] = 3 }, got)
    c:close()
    -- only a driver may ask
    local client = handshake(m.addr, "client", S)
    client:send(helpers.frame(helpers.msgpack({ t = "slots", want = 1 })))
    local body = client:frame(5)
    assert.truthy(body and body:find("unexpected slots message from a peer in role 'client'", 1, true), body)
    assert.is_true(client:closed_within(3))
    client:close()
  end)

  it("rejects bad options with a usage error", function()
    local cases = {
      { { "agent", "--dir", "/tmp/x" }, "gleam agent: --master HOST:PORT is required" },
      { { "agent", "--master", "nowhere", "--dir", "/tmp/x" }, "gleam agent: --master: 'nowhere' is not HOST:PORT" },
      { { "agent", "--master", "h:1", "--dir", "/tmp/x", "--memory", "lots" },
        "gleam agent: --memory: 'lots' is not a size" },
      { { "agent", "--master", "h:1", "--dir", "/tmp/x", "--cores", "0" },
        "gleam agent: --cores needs a whole number from 1 to 4096, got 0" },
      { { "master", "--listen", "127.0.0.1:99999" }, "gleam master: --listen: '127.0.0.1:99999' is not HOST:PORT" },
      { { "master", "--bogus" }, "gleam master: unknown option --bogus" },
      { { "status" }, "gleam status: give one of --master HOST:PORT or --agent HOST:PORT" },
    }
    for _, c in ipairs(cases) do
      local r = helpers.gleam(c[1])
      assert.are.equal(2, r.status, table.concat(c[1], " ") .. ": " .. r.stderr)
      assert.are.equal(c[2], r.stderr:match("^[^\n]*"):sub(1, #c[2]), r.stderr)
      assert.truthy(r.stderr:find("\nusage: gleam ", 1, true))
    end
    local r = helpers.gleam({ "help", "agent" })
    assert.are.equal(0, r.status)
    assert.truthy(r.stdout:find("--heartbeat SECONDS", 1, true))
  end)
end)

describe("bad frames", function()
  after_each(function()
    helpers.stop_all()
    helpers.cleanup()
  end)

  local SECRET = "frame-test-secret"

  local heartbeat = { t = "heartbeat", addr = "10.9.9.9:1", cores = 1, slots = 1, memory = 1, stored = 0, hb_ms = 200 }
  local function with(t, k, v)
    local copy = {}
    for key, val in pairs(t) do copy[key] = val end
    copy[k] = v
    return copy
  end

  -- Each case: what to send (after the handshake when authed), and what
  -- the daemon's log must then say.
  local lcg = helpers.lcg(7)
  local junk = {}
  for i = 1, 300 do junk[i] = string.char(lcg(256)) end
  local cases = {
    { "random bytes", false, table.concat(junk) },
    { "a length past the handshake's bound", false, string.char(0, 0, 16, 1) .. ("x"):rep(100),
      "frame of 4097 bytes is over the 4096-byte bound" },
    { "a huge length", true, "\255\255\255\255" .. ("x"):rep(100), "over the 67108864-byte bound" },
    { "one byte over the bound", true, string.char(4, 0, 0, 1), "frame of 67108865 bytes is over the 67108864-byte bound" },
    { "an empty frame", false, "\0\0\0\0", "empty frame" },
    { "a body that is not msgpack", false, helpers.frame("\193\193"), "malformed frame" },
    { "a truncated body", false, helpers.frame(helpers.msgpack({ t = "status" })):sub(1, 7), nil, true },
    { "a message other than auth first", false, helpers.frame(helpers.msgpack({ t = "status" })),
      "unexpected status message" },
    { "an auth with a wrongly typed nonce", false,
      helpers.frame(helpers.msgpack({ t = "auth", role = "agent", nonce = 5, mac = ("m"):rep(32) })),
      "field 'nonce' is not a byte string" },
    { "a heartbeat with cores as a string", true,
      helpers.frame(helpers.msgpack(with(heartbeat, "cores", "8"))), "field 'cores' is not an integer" },
    { "a heartbeat lacking its address", true,
      helpers.frame(helpers.msgpack(with(heartbeat, "addr", nil))), "a heartbeat message lacks a field" },
    { "an unknown type", true, helpers.frame(helpers.msgpack({ t = "shutdown" })), "unknown message type 'shutdown'" },
    { "a frame that is an array", true, helpers.frame(helpers.msgpack({ "status" })), "the message is not a map" },
    { "a message the role may not send", true, helpers.frame(helpers.msgpack({ t = "agents", agents = {} })),
      "unexpected agents message" },
    { "a task from a peer that is not a driver", true,
      helpers.frame(helpers.msgpack({ t = "task", job = 1, task = 1, payload = "x" })),
      "unexpected task message from a peer in role 'agent'" },
    { "a fetch from a peer that is neither an executor nor a driver", true,
      helpers.frame(helpers.msgpack({ t = "fetch", job = 1, stage = 0, part = 0, tasks = { 0 } })),
      "unexpected fetch message from a peer in role 'agent'" },
    { "a drop from a peer that is not a driver", true,
      helpers.frame(helpers.msgpack({ t = "drop", job = 1 })), "unexpected drop message from a peer in role 'agent'" },
    { "rows nobody asked for", true,
      helpers.frame(helpers.msgpack({ t = "chunk", job = 1, stage = 0, task = 0, part = 0, nrows = 1, rows = "\145\1" })),
      "unexpected chunk message from a peer in role 'agent'" },
    { "a fetch naming no task", true,
      helpers.frame(helpers.msgpack({ t = "fetch", job = 1, stage = 0, part = 0, tasks = {} })),
      "field 'tasks' is empty" },
  }

  it("closes a connection that does not finish the handshake in 10 s", function()
    local m = start_master()
    local silent = assert(helpers.tcp(m.addr))
    local slow = assert(helpers.tcp(m.addr))
    slow:send(string.char(0, 0, 0, 20) .. "partial") -- a frame that never completes
    assert.truthy(silent:frame(5), "no hello")
    helpers.sleep_ms(8000)
    assert.are.equal(0, status(m.addr).status) -- served meanwhile
    assert.is_true(silent:closed_within(4))
    assert.is_true(slow:closed_within(1))
    silent:close()
    slow:close()
    -- the log line follows the close (it is written once the handles are closed)
    local n = 0
    helpers.wait_for(3, function()
      local _, count = log_of(m):gsub("no handshake within 10 s", "")
      n = count
      return n == 2
    end)
    assert.are.equal(2, n, log_of(m))
  end)

  for _, target in ipairs({ "master", "agent" }) do
    it("closes only the offending connection, and the " .. target .. " keeps serving", function()
      local m = start_master({}, { GLEAM_SECRET = SECRET })
      local a = start_agent(m.addr, nil, { GLEAM_SECRET = SECRET })
      local d = target == "master" and m or a
      local query = { env = { GLEAM_SECRET = SECRET } }
      assert.are.equal(1, wait_agents(m, set(a), 5, query).n)
      query.agent = target == "agent"
      -- a good client connected before the bad ones must stay served
      local keep = handshake(d.addr, "client", SECRET)
      for _, case in ipairs(cases) do
        local name, authed, bytes, logged, client_closes = case[1], case[2], case[3], case[4], case[5]
        local before = #log_of(d)
        local c = authed and handshake(d.addr, "agent", SECRET) or assert(helpers.tcp(d.addr))
        assert.is_true(c:send(bytes) or true)
        if client_closes then
          c:close() -- the daemon sees a frame cut short, then the end
        else
          assert.is_true(c:closed_within(5), name .. ": the " .. target .. " did not close the connection")
          c:close()
        end
        assert.is_true(helpers.alive(d), name .. ": the " .. target .. " died; its log:\n" .. log_of(d))
        local new = ""
        helpers.wait_for(3, function()
          new = log_of(d):sub(before + 1)
          return new:find("closed the connection of", 1, true)
        end)
        assert.truthy(new:find("closed the connection of 127.0.0.1:", 1, true), name .. ": no log line:\n" .. new)
        if logged then assert.truthy(new:find(logged, 1, true), name .. ": log lacks '" .. logged .. "':\n" .. new) end
        -- one line per closed connection, never a multi-line dump
        local _, lines = new:gsub("\n", "")
        assert.are.equal(1, lines, name .. ":\n" .. new)
        -- and a fresh client is served
        local res = status(d.addr, query)
        assert.are.equal(0, res.status, name .. ": " .. shown(res))
      end
      -- the connection opened first still works
      keep:send(helpers.frame(helpers.msgpack({ t = "status" })))
      local reply = keep:frame(5)
      assert.truthy(reply and reply:find("\166agents", 1, true), "the first client is no longer served")
      keep:close()
      -- the agent stayed registered through all of it
      if target == "agent" then
        assert.are.equal(1, status(m.addr, { env = query.env }).n)
      end
    end)
  end
end)

describe("executors", function()
  local ffi = require "ffi"
  local codec = require "gleam.codec"
  local executor = require "gleam.executor"

  after_each(function()
    helpers.stop_all()
    helpers.cleanup()
  end)

  -- Sleeps ms in the executor (travels with ffi as a module upvalue).
  local function nap(ms)
    pcall(ffi.cdef, "int poll(void *fds, unsigned long n, int timeout);")
    ffi.C.poll(nil, 0, ms)
    return ms
  end

  local function send_task(c, job, task, payload)
    assert.is_true(c:send(helpers.frame(helpers.msgpack({ t = "task", job = job, task = task, payload = payload }))))
  end

  -- Reads one done message; returns it decoded, its result row decoded.
  local function done(c, seconds)
    local body, why = c:frame(seconds or 10)
    assert.truthy(body, "no done message: " .. tostring(why))
    local m = codec.unpack(body)
    assert.are.equal("done", m.t)
    if m.ok then m.row = codec.row_at(ffi.cast(codec.u8p, m.payload), 0) end
    return m
  end

  -- A secret, so that openssl (the spec's HMAC oracle) has a key.
  local S = "executor-spec-secret"
  local env = { GLEAM_SECRET = S }

  local function cluster(cores)
    local m = start_master({}, env)
    local a = start_agent(m.addr, { "--cores", tostring(cores or 2) }, env)
    return m, a
  end

  it("runs a driver's function in an executor and returns its results", function()
    local _, a = cluster()
    local c = handshake(a.addr, "driver", S)
    local k = 10
    send_task(c, 7, 1, executor.payload(function(x, y, s) return x * k + y, s:rep(2), nil end, 2, 3, "ab"))
    local d = done(c)
    assert.is_true(d.ok, d.text)
    assert.are.same({ job = 7, task = 1 }, { job = d.job, task = d.task })
    helpers.assert_rows({ helpers.row(23, "abab", nil) }, { d.row })
    assert.truthy(log_of(a):find("task 1 of job 7: executor pid %d+ started"), log_of(a))
    assert.truthy(log_of(a):find("task 1 of job 7 done", 1, true))
    -- what the function prints goes to the agent's log, not into the channel
    send_task(c, 7, 2, executor.payload(function() print("hello from a task") return 1 end))
    d = done(c)
    assert.is_true(d.ok, d.text)
    assert.truthy(helpers.wait_for(2, function() return log_of(a):find("hello from a task", 1, true) end))
    c:close()
  end)

  it("fails a task whose function raises, naming the file and line", function()
    local _, a = cluster()
    local c = handshake(a.addr, "driver", S)
    local line = debug.getinfo(1, "l").currentline + 1
    send_task(c, 1, 1, executor.payload(function(x) error("no good: " .. x) end, "row 5"))
    local d = done(c)
    assert.is_false(d.ok)
    assert.truthy(d.text:find("cluster_spec.lua:" .. line .. ": no good: row 5", 1, true), d.text)
    c:close()
  end)

  it("runs at most --cores executors at once and queues the rest", function()
    local m, a = cluster(1)
    local c = handshake(a.addr, "driver", S)
    send_task(c, 1, 1, executor.payload(nap, 1500))
    send_task(c, 1, 2, executor.payload(nap, 10))
    -- while the first runs, no slot is free, on the agent and at the master
    assert.truthy(helpers.wait_for(3, function()
      local r = status(a.addr, { agent = true, env = env })
      return r.agents[a.addr] and r.agents[a.addr].free == 0
    end), "the agent never showed its slot taken")
    assert.truthy(helpers.wait_for(3, function()
      local r = status(m.addr, { env = env })
      return r.agents[a.addr] and r.agents[a.addr].free == 0
    end), "the master never saw the slot taken")
    local d1, d2 = done(c), done(c)
    assert.are.same({ 1, 2 }, { d1.task, d2.task })
    assert.is_true(d1.ok and d2.ok)
    assert.are.equal(1500, d1.row[1])
    -- the second executor started only after the first was done
    local log = log_of(a)
    local first_done = log:find("task 1 of job 1 done", 1, true)
    local second_start = log:find("task 2 of job 1: executor pid", 1, true)
    assert.truthy(first_done and second_start and first_done < second_start, log)
    assert.truthy(helpers.wait_for(3, function()
      return status(a.addr, { agent = true, env = env }).agents[a.addr].free == 1
    end))
    c:close()
  end)

  it("reports an executor killed mid-task", function()
    local _, a = cluster()
    local c = handshake(a.addr, "driver", S)
    send_task(c, 3, 9, executor.payload(nap, 30000))
    local pid = helpers.wait_for(5, function()
      return tonumber(log_of(a):match("task 9 of job 3: executor pid (%d+) started"))
    end)
    assert.truthy(pid, log_of(a))
    helpers.sleep_ms(300)
    helpers.kill({ pid = pid })
    local d = done(c)
    assert.is_false(d.ok)
    assert.are.equal("the executor of task 9 was killed by signal 9", d.text)
    -- the agent goes on: the next task runs
    send_task(c, 3, 10, executor.payload(function() return "still here" end))
    d = done(c)
    assert.is_true(d.ok, d.text)
    assert.are.equal("still here", d.row[1])
    c:close()
  end)

  it("kills a driver's executors and drops its queue when the driver goes", function()
    local _, a = cluster(1)
    local c = handshake(a.addr, "driver", S)
    send_task(c, 4, 1, executor.payload(nap, 30000))
    send_task(c, 4, 2, executor.payload(nap, 10))
    local pid = helpers.wait_for(5, function()
      return tonumber(log_of(a):match("task 1 of job 4: executor pid (%d+) started"))
    end)
    assert.truthy(pid, log_of(a))
    c:close()
    assert.truthy(helpers.wait_for(5, function() return not helpers.alive({ pid = pid }) end),
      "the executor outlived its driver")
    assert.truthy(helpers.wait_for(3, function()
      return log_of(a):find("killed its executor (pid " .. pid .. "): its driver is gone", 1, true)
    end), log_of(a))
    helpers.sleep_ms(300)
    assert.falsy(log_of(a):find("task 2 of job 4: executor", 1, true), log_of(a))
    -- the slot is free again for another driver
    local c2 = handshake(a.addr, "driver", S)
    send_task(c2, 5, 1, executor.payload(function() return 1 end))
    assert.is_true(done(c2).ok)
    c2:close()
  end)

  it("refuses bytecode from another LuaJIT, naming both", function()
    local _, a = cluster()
    local c = handshake(a.addr, "driver", S)
    local d = codec.unpack(require("gleam.closure").dump(function() return 1 end, "task"))
    local flags = d.bc:byte(5)
    d.bc = d.bc:sub(1, 4) .. string.char(bit.bxor(flags, 8)) .. d.bc:sub(6) -- the other GC64 mode
    send_task(c, 1, 1, codec.pack({ fn = codec.pack(d), args = codec.pack_row(), luajit = "LuaJIT 9.9-other" }))
    local r = done(c)
    assert.is_false(r.ok)
    local mine = bit.band(flags, 8) ~= 0 and "GC64" or "no GC64"
    local theirs = bit.band(flags, 8) ~= 0 and "no GC64" or "GC64"
    assert.are.equal("executor: task refused: its bytecode is from LuaJIT 9.9-other (bytecode version 2, "
      .. theirs .. "), this executor runs " .. jit.version .. " (bytecode version 2, " .. mine .. ")", r.text)
    -- a function with cdata constants (the FFI flag) is not refused for it
    send_task(c, 1, 2, executor.payload(function() return tonumber(0x7fffffffffffffffLL % 1000) end))
    r = done(c)
    assert.is_true(r.ok, r.text)
    assert.are.equal(807, r.row[1])
    c:close()
  end)

  it("is started only by an agent", function()
    local r = helpers.gleam({ "executor", "--help" })
    assert.are.equal(2, r.status)
    assert.truthy(r.stderr:find("it is started by `gleam agent`", 1, true), r.stderr)
    r = helpers.gleam({ "executor" }) -- stdin is /dev/null: no task
    assert.are.equal(1, r.status)
    assert.are.equal("gleam executor: reading the task: the input ended before a whole frame\n", r.stderr)
  end)
end)

describe("the README's cluster walkthrough", function()
  after_each(function()
    helpers.stop_all()
    helpers.cleanup()
  end)

  it("runs as written, on free ports", function()
    local text = helpers.read_file(helpers.source_dir .. "/README.md")
    local at = text:find("<!-- test: spec/cluster_spec.lua runs this block", 1, true)
    local block = at and text:match("```sh\n(.-)```", at)
    assert.truthy(block, "no marked sh block in README.md")
    local lines = {}
    for l in block:gsub("\\\n%s*", " "):gmatch("[^\n]+") do
      lines[#lines + 1] = (l:gsub("%s+#.*$", ""))
    end
    assert.are.equal(5, #lines, block)
    local gen = lines[1]:match("^export GLEAM_SECRET=%$%((.*)%)$")
    assert.truthy(gen, lines[1])
    local secret = helpers.sh(gen):gsub("%s+$", "")
    assert.is_true(#secret >= 32, secret)
    local env = { GLEAM_SECRET = secret }
    -- a command line's words, "build/gleam" dropped; the fixed ports, the
    -- master's host and the data directory swapped for the test's own
    local port = "0"
    local function words(l)
      local w = {}
      for x in l:gmatch("%S+") do
        x = x:gsub("^HOST:45326$", "127.0.0.1:" .. port):gsub(":4532[67]$", ":0")
        w[#w + 1] = (x:gsub("^/var/lib/gleam$", helpers.tmpdir() .. "/gleam"))
      end
      assert.are.equal("build/gleam", table.remove(w, 1))
      return w
    end
    local m = helpers.spawn(words(lines[2]), env)
    port = helpers.listening(m):match(":(%d+)$")
    local a = helpers.spawn(words(lines[3]), env)
    helpers.listening(a)
    local res
    helpers.wait_for(10, function()
      res = helpers.gleam(words(lines[4]), nil, nil, env)
      res.agents, res.n = parse_status(res.stdout)
      return res.n == 1
    end)
    assert.are.equal(0, res.status, shown(res))
    local _, agent = next(res.agents)
    assert.are.same({ cores = 8, memory = 16 * 2 ^ 30 }, { cores = agent.cores, memory = agent.memory })
    -- terminal 3: the flow on the cluster, from the source tree, as locally
    local run = helpers.gleam(words(lines[5]), helpers.source_dir, nil, env)
    assert.are.equal(0, run.status, shown(run))
    local loc = helpers.gleam({ "run", "examples/wordcount.lua" }, helpers.source_dir)
    assert.are.equal(0, loc.status, shown(loc))
    assert.truthy(#run.stdout > 0)
    assert.are.equal(loc.stdout, run.stdout)
    assert.truthy((helpers.read_file(a.log) or ""):find("executor pid %d+ started"), helpers.read_file(a.log))
  end)
end)
