-- cluster_netns_spec: a cluster whose hosts are network namespaces
-- (spec/netns.lua): the master and the driver in one, each of two agents
-- in its own, joined by veth pairs on a bridge, every daemon listening on
-- its namespace's 10.213.0.x address, so with a shared secret. The word
-- count example, the join example and the sort example run with `gleam
-- run --master` from the driver's namespace and locally, and the outputs
-- must be the same bytes; the agents' eth0 counters must show the
-- shuffled rows going from agent to agent over the veths, each agent
-- sending its share, and the driver's that it sent only tasks.
--
-- Needs root and `ip netns`; elsewhere the one case is pending with the
-- reason, which ctest reports as a skip (cmake/tests.cmake matches
-- "SKIPPED (cluster_netns_spec)" in the output).
local helpers = require "helpers"
local netns = require "netns"

local env = { GLEAM_SECRET = "netns-spec-" .. string.format("%08x", os.time()) }

local function shown(res)
  return string.format("status %s\nstdout:\n%s\nstderr:\n%s", tostring(res.status), res.stdout, res.stderr)
end

-- Deterministic data -----------------------------------------------------------

-- Lines of words, most of them distinct (so a word count's combined rows
-- are nearly as large as its input), and a few frequent ones for its top
-- 10. (i * 7919 mod a prime is distinct for each i below the prime.)
-- Returns the path and the bytes of the distinct words' rows: each is
-- (word, count) in msgpack, at least the word and 2 bytes.
local function words_file(path, nwords)
  local common = { "gleam", "agent", "master", "shard", "veth", "bridge", "stage", "row", "flow", "lua", "task" }
  local out, line, rows = {}, {}, 0
  for i = 1, nwords do
    if i % 10 == 0 then
      line[#line + 1] = common[(i * 31 % 97) % #common + 1]
    else
      line[#line + 1] = string.format("w%07d", i * 7919 % 9999991)
      rows = rows + #line[#line] + 2
    end
    if #line == 12 or i == nwords then
      out[#out + 1] = table.concat(line, " ") .. "\n"
      line = {}
    end
  end
  return helpers.write_file(path, table.concat(out)), rows
end

-- orders.csv (id,customer,amount in whole units, so sums are exact in any
-- order) and customers.csv (customer,region; some customers have none),
-- for examples/join.lua. Returns the bytes of the orders' rows the join
-- shuffles: (customer, amount), at least the name and 2 bytes each.
local function join_dir(dir, norders, ncustomers)
  local regions = { "north", "south", "east", "west" }
  local o, rows = { "id,customer,amount\n" }, 0
  for i = 1, norders do
    local customer = string.format("customer-%05d", i * 7919 % (ncustomers + 211))
    o[#o + 1] = string.format("%d,%s,%d\n", i, customer, i * 104729 % 100003)
    rows = rows + #customer + 2
  end
  helpers.write_file(dir .. "/orders.csv", table.concat(o))
  local c = { "customer,region\n" }
  for i = 0, ncustomers - 1 do
    c[#c + 1] = string.format("customer-%05d,%s\n", i, regions[i * 13 % 7 % #regions + 1])
  end
  helpers.write_file(dir .. "/customers.csv", table.concat(c))
  return rows
end

local function size(path)
  return #(helpers.read_file(path) or "")
end

-- The spec ----------------------------------------------------------------------

local why_not = netns.unavailable()

describe("a cluster of network namespaces", function()
  if why_not then
    it("runs flows across veth pairs", function()
      pending("SKIPPED (cluster_netns_spec): " .. why_not)
    end)
    return
  end

  local lan, cluster, driver
  setup(function()
    lan = netns.lan({ "m", "a1", "a2" })
    driver = lan.hosts.m
    cluster = helpers.start_cluster{ master_host = lan.hosts.m, agent_hosts = { lan.hosts.a1, lan.hosts.a2 },
      cores = 2, env = env }
  end)
  teardown(function()
    helpers.stop_cluster(cluster)
    helpers.stop_all()
    if lan then
      lan:destroy()
      assert.are.same({}, lan:left())
    end
    helpers.cleanup()
  end)

  it("registers each agent by its own namespace's address", function()
    local res = driver:gleam({ "status", "--master", cluster.master.addr, "--timeout", "5" }, nil, nil, env)
    assert.are.equal(0, res.status, shown(res))
    local agents = {}
    for addr, cores in res.stdout:gmatch("\n(%S+)\t(%d+)\t") do agents[#agents + 1] = addr .. " " .. cores end
    table.sort(agents)
    assert.are.same({ cluster.agents[1].addr .. " 2", cluster.agents[2].addr .. " 2" }, agents)
    assert.truthy(cluster.master.addr:match("^10%.213%.0%.1:%d+$"), cluster.master.addr)
    assert.truthy(cluster.agents[1].addr:match("^10%.213%.0%.2:%d+$"), cluster.agents[1].addr)
    assert.truthy(cluster.agents[2].addr:match("^10%.213%.0%.3:%d+$"), cluster.agents[2].addr)
    -- the hosts are apart: from the driver's namespace an agent's port is
    -- not on 127.0.0.1
    local port = cluster.agents[1].addr:match(":(%d+)$")
    local r = driver:gleam({ "status", "--agent", "127.0.0.1:" .. port, "--timeout", "2" }, nil, nil, env)
    assert.are.equal(1, r.status, shown(r))
    assert.truthy(r.stderr:find("cannot connect", 1, true), shown(r))
  end)

  -- Runs `gleam run JOB ARGS` from dir locally, then with --master from
  -- the driver's namespace; checks the outputs are the same bytes. Rows
  -- pass between stages from agent to agent, never through the driver:
  -- of `crossing`, the bytes of the rows the flow shuffles, the part
  -- a task fetches from the other agent goes over the veths (about half,
  -- with two agents), each agent sends a share, and the driver sends
  -- only tasks. Returns the output.
  local function same_as_local(dir, job, args, crossing)
    local run = { "run", helpers.source_dir .. "/examples/" .. job }
    for _, a in ipairs(args) do run[#run + 1] = a end
    local loc = helpers.gleam(run, dir)
    assert.are.equal(0, loc.status, shown(loc))
    assert.truthy(#loc.stdout > 0, shown(loc))
    assert.truthy(helpers.wait_slots(cluster, nil, 10, env))
    local before = { m = driver:counters(), a1 = lan.hosts.a1:counters(), a2 = lan.hosts.a2:counters() }
    table.insert(run, 2, "--master")
    table.insert(run, 3, cluster.master.addr)
    local clu = driver:gleam(run, dir, nil, env)
    assert.are.equal(0, clu.status, shown(clu))
    assert.are.equal(loc.stdout, clu.stdout)
    local grew = {}
    for name, c in pairs(before) do
      local now = lan.hosts[name]:counters()
      grew[name] = { rx = now.rx - c.rx, tx = now.tx - c.tx }
    end
    local what = string.format("rows %d bytes; driver eth0 rx %d tx %d, a1 tx %d, a2 tx %d",
      crossing, grew.m.rx, grew.m.tx, grew.a1.tx, grew.a2.tx)
    assert.is_true(grew.a1.tx + grew.a2.tx >= crossing / 4, what)
    assert.is_true(grew.a1.tx >= crossing / 16, what)
    assert.is_true(grew.a2.tx >= crossing / 16, what)
    assert.is_true(grew.m.tx < crossing / 8, what)
    return clu.stdout
  end

  -- (inputs over 2 MiB: a text source gets a task per MiB, so stage 1
  -- runs on both agents)
  it("runs the word count example with local mode's output, its rows over the veths", function()
    local dir = helpers.tmpdir()
    local input, rows = words_file(dir .. "/words.txt", 360000)
    local out = same_as_local(dir, "wordcount.lua", { input }, rows)
    assert.are.equal(10, select(2, out:gsub("\n", "")), out)
    assert.truthy(out:find("^%a+\t%d+\n"), out) -- a frequent word first
  end)

  it("runs the join example with local mode's output, its rows over the veths", function()
    local dir = helpers.tmpdir()
    local rows = join_dir(dir, 120000, 3000)
    local out = same_as_local(dir, "join.lua", { dir }, rows)
    -- the four regions and the orders of customers without one
    assert.are.equal(5, select(2, out:gsub("\n", "")), out)
    assert.truthy(out:find("^%(none%)\t%d+\t%d+%.00\neast\t", 1), out)
  end)

  it("runs the sort example with local mode's output, its rows over the veths", function()
    local dir = helpers.tmpdir()
    local input = words_file(dir .. "/lines.txt", 300000)
    -- each line is a row of one string: at least its bytes and a newline's
    local out = same_as_local(dir, "sort.lua", { input }, size(input))
    assert.are.equal(size(input), #out)
  end)
end)
