-- spec/netns.lua: network namespaces as the hosts of a test cluster.
--
-- lan(names) makes a small LAN: a bridge in a namespace of its own, and
-- one namespace per host, whose only interface besides lo is eth0, the
-- end of a veth pair whose other end is on the bridge. Host i has
-- 10.213.0.i on eth0; as every LAN is inside namespaces made for it, two
-- runs in parallel each have their own 10.213.0.0/24 and never meet, and
-- the machine's own namespace gets no address or route. Only the
-- namespaces' names are global: each has the spec process's pid and a
-- random part. A host runs gleam through a script that execs `ip netns
-- exec NS gleam ...` (same pid, so helpers.kill and helpers.stop_all work
-- as on loopback); files are shared, as `ip netns exec` shares the file
-- system. lan:destroy() deletes every namespace (a spec calls it from
-- teardown, after helpers.stop_all()); names a killed run left behind are
-- deleted by the next lan() (only names: the processes in them are not
-- ours to kill).
local ffi = require "ffi"
local h = require "helpers"

local netns = {}

pcall(ffi.cdef, "int getpid(void); unsigned int geteuid(void);")

local PREFIX = "gleam-spec-"
local SUBNET = "10.213.0."

-- Runs `ip ARGS`, not under the sanitizer build's LD_PRELOAD (ip is not
-- instrumented); returns its output and whether it succeeded.
local function ip(args)
  return h.sh("env -u LD_PRELOAD ip " .. args)
end

-- Runs `ip ARGS`, failing with its output when it fails.
local function must(args)
  local out, ok = ip(args)
  if not ok then error("ip " .. args .. ": " .. out, 2) end
  return out
end

local function random_hex(n)
  local f = assert(io.open("/dev/urandom", "rb"))
  local bytes = f:read(n)
  f:close()
  return (bytes:gsub(".", function(c) return string.format("%02x", c:byte()) end))
end

-- Deletes the names of namespaces that runs no longer alive left behind.
local function reap()
  local out = ip("netns list")
  for name in out:gmatch("[^\n]+") do
    name = name:match("^(%S+)")
    local pid = tonumber(name:match("^" .. PREFIX:gsub("%-", "%%-") .. "(%d+)%-"))
    if pid and not h.alive({ pid = pid }) then ip("netns del " .. h.quote(name)) end
  end
end

-- nil when this process can make namespaces and veth pairs on a bridge,
-- else why not, in a few words.
function netns.unavailable()
  if ffi.C.geteuid() ~= 0 then return "not root (namespaces need CAP_SYS_ADMIN)" end
  local _, has_ip = h.sh("command -v ip")
  if not has_ip then return "no ip command (iproute2)" end
  local name = string.format("%s%d-%s-probe", PREFIX, ffi.C.getpid(), random_hex(3))
  local out, ok = ip("netns add " .. name)
  if not ok then return "ip netns add failed: " .. out:gsub("\n$", "") end
  local q = h.quote(name)
  out, ok = ip("-n " .. q .. " link add name br0 type bridge")
  if ok then out, ok = ip("-n " .. q .. " link add name v0 type veth peer name v1") end
  if ok then out, ok = h.sh("env -u LD_PRELOAD ip netns exec " .. q .. " true") end
  ip("netns del " .. q)
  if not ok then return "a bridge or veth pair in a namespace failed: " .. out:gsub("\n$", "") end
  return nil
end

local Host = {}
Host.__index = Host

-- Starts `gleam ARGS` in the background in the host's namespace
-- (helpers.spawn there).
function Host:spawn(args, env)
  return h.with_bin(self.bin, h.spawn, args, env)
end

-- Runs `gleam ARGS` in the host's namespace and waits (helpers.gleam there).
function Host:gleam(args, dir, stdin, env)
  return h.with_bin(self.bin, h.gleam, args, dir, stdin, env)
end

-- The bytes eth0 has received and sent: { rx = n, tx = n }.
function Host:counters()
  local out, ok = h.sh(string.format("env -u LD_PRELOAD ip netns exec %s cat " ..
    "/sys/class/net/eth0/statistics/rx_bytes /sys/class/net/eth0/statistics/tx_bytes", h.quote(self.ns)))
  local rx, tx = out:match("^(%d+)\n(%d+)\n$")
  assert(ok and rx, "cannot read eth0's counters in " .. self.ns .. ": " .. out)
  return { rx = tonumber(rx), tx = tonumber(tx) }
end

local Lan = {}
Lan.__index = Lan

-- Makes the LAN of the hosts named (a list of short names: letters and
-- digits); returns it, with lan.hosts[name] = { name, ns, ip, bin }. On a
-- failure what was made is deleted again before the error.
function netns.lan(names)
  reap()
  local lan = setmetatable({ hosts = {}, made = {},
    id = string.format("%s%d-%s", PREFIX, ffi.C.getpid(), random_hex(3)) }, Lan)
  local ok, err = pcall(function()
    local sw = lan.id .. "-sw"
    lan:add(sw)
    must("-n " .. h.quote(sw) .. " link add name br0 type bridge")
    must("-n " .. h.quote(sw) .. " link set dev br0 up")
    local dir = h.tmpdir()
    for i, name in ipairs(names) do
      assert(name:match("^%w+$") and #name <= 10, "a host's name: letters and digits, at most 10")
      local ns = lan.id .. "-" .. name
      lan:add(ns)
      local qs, qn = h.quote(sw), h.quote(ns)
      -- the pair is made in the switch's namespace (names there are ours
      -- alone), then one end moves to the host and becomes its eth0
      must("-n " .. qs .. " link add name " .. name .. " type veth peer name " .. name .. "-h")
      must("-n " .. qs .. " link set dev " .. name .. "-h netns " .. qn)
      must("-n " .. qs .. " link set dev " .. name .. " master br0")
      must("-n " .. qs .. " link set dev " .. name .. " up")
      must("-n " .. qn .. " link set dev " .. name .. "-h name eth0")
      must("-n " .. qn .. " addr add " .. SUBNET .. i .. "/24 dev eth0")
      must("-n " .. qn .. " link set dev eth0 up")
      must("-n " .. qn .. " link set dev lo up")
      local bin = h.write_file(dir .. "/gleam-" .. name, string.format(
        "#!/bin/sh\n# gleam on host %s: in network namespace %s\nexec ip netns exec %s %s \"$@\"\n",
        name, ns, qn, h.quote(h.bin)))
      os.execute("chmod +x " .. h.quote(bin))
      lan.hosts[name] = setmetatable({ name = name, ns = ns, ip = SUBNET .. i, bin = bin }, Host)
    end
  end)
  if not ok then
    lan:destroy()
    error(err, 0)
  end
  return lan
end

function Lan:add(ns)
  must("netns add " .. h.quote(ns))
  self.made[#self.made + 1] = ns
end

-- Deletes every namespace of the LAN (their veth pairs go with them).
-- Stop the processes in them first: a namespace lives on, nameless, while
-- a process is in it.
function Lan:destroy()
  for i = #self.made, 1, -1 do
    ip("netns del " .. h.quote(self.made[i]))
    self.made[i] = nil
  end
end

-- The names of the LAN's namespaces that still exist.
function Lan:left()
  local out = ip("netns list")
  local left = {}
  for name in out:gmatch("[^\n]+") do
    name = name:match("^(%S+)")
    if name:sub(1, #self.id) == self.id then left[#left + 1] = name end
  end
  return left
end

return netns
