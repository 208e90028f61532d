-- spec/helpers.lua: shared helpers for the busted specs.
--
-- Temp dirs and files (tracked, removed by helpers.cleanup(), which every
-- spec calls from after_each/teardown so they go even when a test fails),
-- running the gleam executable on a job with stdout, stderr and the exit
-- status captured separately, and row comparison: a canonical text form
-- of a row (type-tagged, field count included), a sort by it for
-- order-insensitive checks, and a deep compare that names the first
-- differing row.
local ffi = require "ffi"

local helpers = {}

helpers.source_dir = os.getenv("GLEAM_SOURCE_DIR") or "."
helpers.bin = os.getenv("GLEAM_BIN") or (helpers.source_dir .. "/build/gleam")
if helpers.bin:sub(1, 1) ~= "/" then
  -- jobs run from their own directory: make the path absolute
  local p = io.popen("pwd")
  helpers.bin = p:read("*l") .. "/" .. helpers.bin
  p:close()
end
-- Every case runs with each of these worker counts.
helpers.WORKERS = { 1, 2, 8 }

-- Shell --------------------------------------------------------------------

-- Returns s quoted for /bin/sh.
local function quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end
helpers.quote = quote

-- Temp files -----------------------------------------------------------------

local temps = {}

-- Removes a file or directory tree.
function helpers.rmtree(path)
  os.execute("rm -rf " .. quote(path))
end

-- Returns the path of a new empty directory, removed by helpers.cleanup().
function helpers.tmpdir()
  local p = assert(io.popen("mktemp -d \"${TMPDIR:-/tmp}/gleam-spec.XXXXXX\""))
  local dir = p:read("*l")
  p:close()
  assert(dir and dir ~= "", "mktemp -d failed")
  temps[#temps + 1] = dir
  return dir
end

-- Removes every temp dir made so far.
function helpers.cleanup()
  for i = #temps, 1, -1 do
    helpers.rmtree(temps[i])
    temps[i] = nil
  end
end

-- Runs fn(dir) with a fresh temp dir, removed afterwards even on error.
function helpers.with_tmpdir(fn)
  local dir = helpers.tmpdir()
  local ok, err = pcall(fn, dir)
  helpers.rmtree(dir)
  if not ok then error(err, 0) end
end

function helpers.write_file(path, content)
  local f = assert(io.open(path, "wb"))
  f:write(content)
  f:close()
  return path
end

-- The size of a file in bytes (0: no such file).
function helpers.file_size(path)
  local f = io.open(path, "rb")
  if not f then return 0 end
  local n = f:seek("end")
  f:close()
  return n
end

function helpers.read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

-- Returns the lines of s as text() sees them: split on "\n", the newline
-- not part of the line, no extra empty line after a final newline.
function helpers.lines_of(s)
  local lines = {}
  local pos = 1
  while pos <= #s do
    local nl = s:find("\n", pos, true)
    if not nl then
      lines[#lines + 1] = s:sub(pos)
      break
    end
    lines[#lines + 1] = s:sub(pos, nl - 1)
    pos = nl + 1
  end
  return lines
end

-- Running the gleam executable -------------------------------------------------

-- Runs `gleam ARGS...` in dir (default: a temp dir), its stdin the file
-- `stdin` (default /dev/null), with env ({ NAME = value }, optional) added
-- to its environment; returns { status = exit code, stdout = ...,
-- stderr = ... }.
function helpers.gleam(args, dir, stdin, env)
  local own = dir == nil
  dir = dir or helpers.tmpdir()
  local io_dir = helpers.tmpdir()
  local out, err, rc = io_dir .. "/stdout", io_dir .. "/stderr", io_dir .. "/status"
  local cmd = {}
  if env then
    cmd[1] = "env"
    for k, v in pairs(env) do cmd[#cmd + 1] = k .. "=" .. quote(v) end
  end
  cmd[#cmd + 1] = quote(helpers.bin)
  for _, a in ipairs(args) do cmd[#cmd + 1] = quote(a) end
  os.execute(string.format("cd %s && %s >%s 2>%s <%s; echo $? >%s",
    quote(dir), table.concat(cmd, " "), quote(out), quote(err), quote(stdin or "/dev/null"), quote(rc)))
  local res = {
    status = tonumber(helpers.read_file(rc) or ""),
    stdout = helpers.read_file(out) or "",
    stderr = helpers.read_file(err) or "",
  }
  helpers.rmtree(io_dir)
  if own then helpers.rmtree(dir) end
  return res
end

-- A result of helpers.gleam, for an assertion's message.
function helpers.shown(res)
  return string.format("status %s\nstdout:\n%s\nstderr:\n%s", tostring(res.status), res.stdout, res.stderr)
end

-- The logs of a list of daemons (helpers.spawn's), one after another.
function helpers.logs(daemons)
  local t = {}
  for _, d in ipairs(daemons) do t[#t + 1] = helpers.read_file(d.log) or "" end
  return table.concat(t, "\n")
end

-- The bytes of shards the agents of the list hold (`gleam status --agent`,
-- with env as helpers.gleam takes it: the secret, if any), summed over
-- those still running.
function helpers.stored(agents, env)
  local n = 0
  for _, a in ipairs(agents) do
    if helpers.alive(a) then
      local r = helpers.gleam({ "status", "--agent", a.addr, "--timeout", "5" }, nil, nil, env)
      n = n + (tonumber(r.stdout:match("\n%S+\t%d+\t%d+\t%d+\t(%d+)\t")) or 0)
    end
  end
  return n
end

-- Writes source as a job file and runs `gleam run [--workers N] JOB ARGS...`
-- from the job's directory, so messages name the job as opts.name (default
-- "job.lua"). opts: args (list), workers, name, dir, files ({ name =
-- content } written beside the job). Returns the result of helpers.gleam
-- plus job = the job's name.
function helpers.run_job(source, opts)
  opts = opts or {}
  local dir = opts.dir or helpers.tmpdir()
  local name = opts.name or "job.lua"
  helpers.write_file(dir .. "/" .. name, source)
  for fname, content in pairs(opts.files or {}) do
    helpers.write_file(dir .. "/" .. fname, content)
  end
  local args = { "run" }
  if opts.workers then
    args[#args + 1] = "--workers"
    args[#args + 1] = tostring(opts.workers)
  end
  args[#args + 1] = name
  for _, a in ipairs(opts.args or {}) do args[#args + 1] = a end
  local res = helpers.gleam(args, dir)
  res.job = name
  res.dir = dir
  return res
end

-- Returns the line number (1-based) of the first line of source containing
-- the plain text marker.
function helpers.line_of(source, marker)
  local n = 0
  for line in (source .. "\n"):gmatch("([^\n]*)\n") do
    n = n + 1
    if line:find(marker, 1, true) then return n end
  end
  error("marker not found: " .. marker, 2)
end

-- Rows -------------------------------------------------------------------------

local int64_t, uint64_t = ffi.typeof("int64_t"), ffi.typeof("uint64_t")

local function show_number(v)
  if v ~= v then return "nan" end
  if v == math.huge then return "inf" end
  if v == -math.huge then return "-inf" end
  if v == 0 and 1 / v < 0 then return "-0.0" end
  if v == math.floor(v) and math.abs(v) < 2 ^ 63 then return string.format("%.0f", v) end
  return string.format("%.17g", v)
end

local show

local function show_table(t, depth)
  if depth > 20 then return "{...}" end
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  local parts = {}
  for _, k in ipairs(keys) do parts[#parts + 1] = { show(k, depth + 1), show(t[k], depth + 1) } end
  table.sort(parts, function(a, b) return a[1] < b[1] end)
  for i, p in ipairs(parts) do parts[i] = "[" .. p[1] .. "]=" .. p[2] end
  return "{" .. table.concat(parts, ", ") .. "}"
end

-- Returns a canonical text form of any value: type-tagged, so 1 and "1"
-- differ, an int64 beyond 2^53 shows as such, -0.0 and nan are distinct.
show = function(v, depth)
  local tv = type(v)
  if tv == "nil" then return "nil" end
  if tv == "boolean" then return tostring(v) end
  if tv == "number" then return show_number(v) end
  if tv == "string" then return (string.format("%q", v):gsub("\\\n", "\\n")) end
  if tv == "cdata" then
    if ffi.istype(int64_t, v) then return "int64(" .. tostring(v):gsub("LL$", "") .. ")" end
    if ffi.istype(uint64_t, v) then return "uint64(" .. tostring(v):gsub("ULL$", "") .. ")" end
    return "cdata<" .. tostring(ffi.typeof(v)) .. ">"
  end
  if tv == "table" then return show_table(v, depth or 0) end
  return "<" .. tv .. ">"
end
helpers.show = show

-- Returns the canonical text of a row table { f1, ..., n = count }: its
-- fields 1..n and the count, so { 1, n = 2 } and { 1 } differ. A row
-- without n counts as #r fields.
function helpers.show_row(r)
  if type(r) ~= "table" then return "<not a row: " .. show(r) .. ">" end
  local n = r.n
  local parts = {}
  for k = 1, n or #r do parts[k] = show(r[k], 1) end
  local extra = ""
  for k in pairs(r) do
    if k ~= "n" and not (type(k) == "number" and k >= 1 and k <= (n or #r) and k == math.floor(k)) then
      extra = " +fields beyond n"
    end
  end
  return "(" .. table.concat(parts, ", ") .. ")" .. (n and ("#" .. tostring(n)) or "#?") .. extra
end

-- Returns a row table from its fields: row(1, nil) is { 1, nil, n = 2 }.
function helpers.row(...)
  return { n = select("#", ...), ... }
end

-- Returns a sorted copy of a list of rows (by canonical text), for
-- order-insensitive comparison.
function helpers.sorted(rows)
  local keyed = {}
  for i, r in ipairs(rows) do keyed[i] = { helpers.show_row(r), r } end
  table.sort(keyed, function(a, b) return a[1] < b[1] end)
  local out = {}
  for i, k in ipairs(keyed) do out[i] = k[2] end
  return out
end

-- Returns true if the two lists of rows are equal row by row (fields, types,
-- field counts), else false and a message naming the first difference.
function helpers.rows_equal(expected, actual)
  if type(actual) ~= "table" then
    return false, "expected a list of rows, got " .. show(actual)
  end
  local n = math.max(#expected, #actual)
  for i = 1, n do
    local e = expected[i] and helpers.show_row(expected[i]) or "(no row)"
    local a = actual[i] and helpers.show_row(actual[i]) or "(no row)"
    if e ~= a then
      return false, string.format("%d rows expected, %d got; first difference at row %d:\n  expected %s\n  got      %s",
        #expected, #actual, i, e, a)
    end
  end
  return true
end

-- A test failure (not an error) in busted, with msg.
local luassert = require "luassert"
local function fail(msg)
  luassert(false, msg)
end

-- Asserts two lists of rows are equal in order; ctx names the case.
function helpers.assert_rows(expected, actual, ctx)
  local ok, msg = helpers.rows_equal(expected, actual)
  if not ok then fail((ctx and (ctx .. ": ") or "") .. msg) end
end

-- Asserts two lists of rows are equal as multisets.
function helpers.assert_same_rows(expected, actual, ctx)
  if type(actual) ~= "table" then fail((ctx or "") .. ": expected a list of rows, got " .. show(actual)) end
  helpers.assert_rows(helpers.sorted(expected), helpers.sorted(actual), ctx)
end

-- Rows as the API returns them, from a list of plain values / tables:
-- rows_of({ 1, 2 }) is { {1, n=1}, {2, n=1} }; a table item is a row
-- (n = its n or #t).
function helpers.rows_of(list)
  local out = {}
  for i = 1, list.n or #list do
    local v = list[i]
    if type(v) == "table" then
      local r = { n = v.n or #v }
      for k = 1, r.n do r[k] = v[k] end
      out[i] = r
    else
      out[i] = { v, n = 1 }
    end
  end
  return out
end

-- Returns a configuration label for messages.
function helpers.label(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys)
  local parts = {}
  for _, k in ipairs(keys) do parts[#parts + 1] = k .. "=" .. tostring(t[k]) end
  return table.concat(parts, " ")
end

-- A deterministic pseudo-random sequence (specs must not depend on
-- math.random's state): lcg(seed) returns rand(m) in [0, m).
function helpers.lcg(seed)
  local s = seed
  return function(m)
    s = (s * 1103515245 + 12345) % 2147483648
    return s % m
  end
end

-- Runs a shell command; returns its stdout and stderr together and
-- whether it exited 0 (LuaJIT's popen close does not tell: the status is
-- appended by the shell and read back).
function helpers.sh(cmd)
  local p = assert(io.popen("(" .. cmd .. ") 2>&1; echo '[exit '$?']'"))
  local out = p:read("*a")
  p:close()
  local body, code = out:match("^(.*)%[exit (%d+)%]\n$")
  return body or out, code == "0"
end

-- Cluster processes ------------------------------------------------------------

-- Daemons (gleam master / agent) run in the background with their stderr
-- in a log file; each is killed by helpers.stop_all(), which every cluster
-- spec calls from after_each, so none outlives a failing test.

pcall(ffi.cdef, "int poll(void *fds, unsigned long n, int timeout);")

-- Sleeps ms milliseconds.
function helpers.sleep_ms(ms)
  ffi.C.poll(nil, 0, ms)
end

local daemons = {}

-- Starts `gleam ARGS...` in the background (env: { NAME = value } added to
-- its environment) with stderr and stdout in a log file; returns a handle
-- { pid, log (path), args }.
function helpers.spawn(args, env)
  local dir = helpers.tmpdir()
  local log, pidf = dir .. "/log", dir .. "/pid"
  local cmd = { "exec" }
  for k, v in pairs(env or {}) do cmd[#cmd + 1] = k .. "=" .. quote(v) end
  if env then table.insert(cmd, 2, "env") end
  cmd[#cmd + 1] = quote(helpers.bin)
  for _, a in ipairs(args) do cmd[#cmd + 1] = quote(a) end
  os.execute(string.format("(%s >%s 2>&1 </dev/null) & echo $! >%s",
    table.concat(cmd, " "), quote(log), quote(pidf)))
  local pid = tonumber(helpers.read_file(pidf) or "")
  assert(pid, "could not start gleam " .. table.concat(args, " "))
  local d = { pid = pid, log = log, args = args }
  daemons[#daemons + 1] = d
  return d
end

-- Whether the process is still running (not exited, not a zombie). Read
-- from /proc rather than with ps: under the sanitizer build LD_PRELOAD
-- puts ASan into every child, and ps can hang under it.
function helpers.alive(d)
  local f = io.open("/proc/" .. d.pid .. "/stat", "r")
  if not f then return false end
  local stat = f:read("*a") or ""
  f:close()
  local state = stat:match("%) (%a)")
  return state ~= nil and state ~= "Z" and state ~= "X"
end

-- Sends signal sig (default KILL) and waits until the process is gone.
function helpers.kill(d, sig)
  os.execute(string.format("kill -%s %d 2>/dev/null", sig or "KILL", d.pid))
  for _ = 1, 200 do
    if not helpers.alive(d) then return end
    helpers.sleep_ms(25)
  end
end

-- Kills every daemon still running.
function helpers.stop_all()
  for i = #daemons, 1, -1 do
    helpers.kill(daemons[i])
    daemons[i] = nil
  end
end

-- Polls fn() every 50 ms until it returns a true value (returned) or
-- seconds pass (nil).
function helpers.wait_for(seconds, fn)
  local tries = math.ceil(seconds * 20)
  for _ = 1, tries do
    local v = fn()
    if v then return v end
    helpers.sleep_ms(50)
  end
  return nil
end

-- Waits for the daemon to log the address it listens on; returns it.
function helpers.listening(d)
  local addr = helpers.wait_for(10, function()
    return (helpers.read_file(d.log) or ""):match("listening on ([%d%.]+:%d+)")
  end)
  assert(addr, "gleam " .. table.concat(d.args, " ") .. " did not start listening; its log:\n"
    .. (helpers.read_file(d.log) or ""))
  return addr
end

-- A blocking TCP client over the FFI, for speaking (and mis-speaking) the
-- wire protocol to a daemon. Every wait is bounded by a timeout.
pcall(ffi.cdef, [[
int socket(int domain, int type, int protocol);
int connect(int fd, const void *addr, unsigned int len);
long send(int fd, const void *buf, unsigned long n, int flags);
long recv(int fd, void *buf, unsigned long n, int flags);
int close(int fd);
int inet_pton(int af, const char *src, void *dst);
]])
pcall(ffi.cdef, [[
struct spec_sockaddr_in { uint16_t family; uint8_t port[2]; uint8_t addr[4]; uint8_t zero[8]; };
struct spec_pollfd { int fd; short events; short revents; };
]])

local Tcp = {}
Tcp.__index = Tcp

-- Connects to "ip:port"; returns a client or nil and a message.
function helpers.tcp(addr)
  local ip, port = addr:match("^([%d%.]+):(%d+)$")
  port = tonumber(port)
  local sa = ffi.new("struct spec_sockaddr_in")
  sa.family = 2 -- AF_INET
  sa.port[0], sa.port[1] = math.floor(port / 256), port % 256
  assert(ffi.C.inet_pton(2, ip, sa.addr) == 1, "bad address " .. addr)
  local fd = ffi.C.socket(2, 1, 0) -- AF_INET, SOCK_STREAM
  assert(fd >= 0, "socket failed")
  if ffi.C.connect(fd, sa, ffi.sizeof(sa)) ~= 0 then
    ffi.C.close(fd)
    return nil, "cannot connect to " .. addr
  end
  return setmetatable({ fd = fd, buf = "" }, Tcp)
end

-- Sends bytes; false if the peer has gone (MSG_NOSIGNAL: no SIGPIPE).
function Tcp:send(bytes)
  local off = 0
  while off < #bytes do
    local n = ffi.C.send(self.fd, ffi.cast("const char *", bytes) + off, #bytes - off, 0x4000)
    if n <= 0 then return false end
    off = off + tonumber(n)
  end
  return true
end

-- Reads what arrives within ms; returns the bytes and whether the peer
-- closed (EOF or reset).
function Tcp:read_some(ms)
  local p = ffi.new("struct spec_pollfd", { fd = self.fd, events = 1 })
  if ffi.C.poll(p, 1, ms) <= 0 then return "", false end
  local buf = ffi.new("char[65536]")
  local n = tonumber(ffi.C.recv(self.fd, buf, 65536, 0))
  if n <= 0 then return "", true end
  return ffi.string(buf, n), false
end

-- Reads one frame body within seconds; nil and "closed" or "timeout".
function Tcp:frame(seconds)
  local deadline = os.time() + (seconds or 5) + 1
  while true do
    if #self.buf >= 4 then
      local b1, b2, b3, b4 = self.buf:byte(1, 4)
      local n = ((b1 * 256 + b2) * 256 + b3) * 256 + b4
      if #self.buf >= 4 + n then
        local body = self.buf:sub(5, 4 + n)
        self.buf = self.buf:sub(5 + n)
        return body
      end
    end
    if os.time() > deadline then return nil, "timeout" end
    local bytes, closed = self:read_some(100)
    self.buf = self.buf .. bytes
    if closed then return nil, "closed" end
  end
end

-- Whether the peer closes the connection within seconds (what it sends
-- meanwhile is dropped).
function Tcp:closed_within(seconds)
  local deadline = os.time() + seconds + 1
  while os.time() <= deadline do
    local _, closed = self:read_some(100)
    if closed then return true end
  end
  return false
end

function Tcp:close()
  if self.fd then ffi.C.close(self.fd) end
  self.fd = nil
end

-- msgpack, just enough to write any frame the specs need: a Lua table
-- with only string keys is a map, a sequence an array; strings are str.
local U64 = {} -- the metatable of helpers.u64 values

-- A uint64 for helpers.msgpack, from its decimal digits (a Lua number
-- can't hold every job id).
function helpers.u64(digits)
  return setmetatable({ digits = digits }, U64)
end

local function mp(v, out)
  local t = type(v)
  if t == "table" and getmetatable(v) == U64 then
    local n = ffi.new("uint64_t", 0)
    for d in v.digits:gmatch("%d") do n = n * 10 + tonumber(d) end
    local bytes = { string.char(0xcf) }
    for i = 7, 0, -1 do bytes[#bytes + 1] = string.char(tonumber(bit.band(bit.rshift(n, i * 8), 0xff))) end
    out[#out + 1] = table.concat(bytes)
  elseif t == "string" then
    local n = #v
    if n < 32 then out[#out + 1] = string.char(0xa0 + n)
    elseif n < 256 then out[#out + 1] = string.char(0xd9, n)
    else out[#out + 1] = string.char(0xdb, math.floor(n / 16777216) % 256, math.floor(n / 65536) % 256,
      math.floor(n / 256) % 256, n % 256) end
    out[#out + 1] = v
  elseif t == "number" then
    assert(v >= 0 and v < 4294967296 and v == math.floor(v), "mp: only uint32 numbers")
    out[#out + 1] = string.char(0xce, math.floor(v / 16777216) % 256, math.floor(v / 65536) % 256,
      math.floor(v / 256) % 256, v % 256)
  elseif t == "boolean" then
    out[#out + 1] = string.char(v and 0xc3 or 0xc2)
  elseif t == "table" and (#v > 0 or next(v) == nil) then
    out[#out + 1] = string.char(0xdc, math.floor(#v / 256), #v % 256)
    for _, x in ipairs(v) do mp(x, out) end
  elseif t == "table" then
    local keys = {}
    for k in pairs(v) do keys[#keys + 1] = k end
    table.sort(keys)
    out[#out + 1] = string.char(0xde, math.floor(#keys / 256), #keys % 256)
    for _, k in ipairs(keys) do mp(k, out); mp(v[k], out) end
  else
    error("mp: cannot encode a " .. t)
  end
end

-- The bytes of a value in msgpack.
function helpers.msgpack(v)
  local out = {}
  mp(v, out)
  return table.concat(out)
end

-- A frame: the 4-byte big-endian length of body, then body.
function helpers.frame(body)
  local n = #body
  return string.char(math.floor(n / 16777216) % 256, math.floor(n / 65536) % 256,
    math.floor(n / 256) % 256, n % 256) .. body
end

-- Runs the handshake as role over a raw connection to addr; returns the
-- client, ready for messages, or raises.
function helpers.handshake(addr, role, secret)
  local c = assert(helpers.tcp(addr))
  local hello = assert(c:frame(5))
  -- the nonce: a 32-byte str (0xd9 0x20) after the key "nonce"
  local at = hello:find("\165nonce\217\032", 1, true)
  assert(at, "hello without a nonce")
  local nonce_l = hello:sub(at + 8, at + 39)
  assert(#nonce_l == 32, "a short nonce")
  local nonce_c = ("n"):rep(32)
  local mac = helpers.hmac_sha256(secret, "gleam-v1 auth\0" .. role .. "\0" .. nonce_l .. nonce_c)
  c:send(helpers.frame(helpers.msgpack({ t = "auth", role = role, nonce = nonce_c, mac = mac })))
  local welcome = assert(c:frame(5))
  assert(welcome:find("\167welcome", 1, true), "no welcome")
  -- the listener's proof, checked by the same oracle
  local want = helpers.hmac_sha256(secret, "gleam-v1 welcome\0" .. role .. "\0" .. nonce_c .. nonce_l)
  assert(welcome:find(want, 1, true), "the welcome's MAC is not HMAC(secret, nonces)")
  return c
end

-- HMAC-SHA256 of data under key, by the openssl command: an oracle
-- independent of gleam's own.
function helpers.hmac_sha256(key, data)
  local dir = helpers.tmpdir()
  helpers.write_file(dir .. "/data", data)
  local hex = key:gsub(".", function(c) return string.format("%02x", c:byte()) end)
  local out = helpers.sh(string.format("openssl dgst -sha256 -mac HMAC -macopt hexkey:%s -binary %s > %s/mac",
    hex, quote(dir .. "/data"), quote(dir)))
  local mac = helpers.read_file(dir .. "/mac")
  assert(mac and #mac == 32, "openssl dgst failed: " .. out)
  return mac
end

-- Runs fn(...) with helpers.bin set to bin, a program that runs gleam some
-- other way (in a network namespace: spec/netns.lua), and puts it back
-- even when fn fails; returns what fn returns. helpers.gleam and
-- helpers.spawn run helpers.bin, so a wrapper that execs gleam keeps the
-- pid the spec tracks.
function helpers.with_bin(bin, fn, ...)
  local saved = helpers.bin
  helpers.bin = bin
  local res = { pcall(fn, ...) }
  helpers.bin = saved
  if not res[1] then error(res[2], 0) end
  return unpack(res, 2, table.maxn(res))
end

-- A host for helpers.start_cluster: this machine's loopback. A host
-- starts daemons (spawn, as helpers.spawn) and runs commands (gleam, as
-- helpers.gleam) there.
helpers.LOOPBACK = {
  ip = "127.0.0.1",
  spawn = function(_, args, env) return helpers.spawn(args, env) end,
  gleam = function(_, args, dir, stdin, env) return helpers.gleam(args, dir, stdin, env) end,
}

-- Starts a master and its agents and waits until the master has
-- registered them all; returns { master = m, agents = { a1, ... } }, each
-- a daemon (helpers.spawn) with .addr, the address it listens on, and
-- .host. Ports are free ones (port 0, read back from the log); the
-- daemons go with helpers.stop_all(). opts: agents (a count, default 2),
-- cores (each agent's, default 2), heartbeat (seconds, default "0.2", so
-- slots a job took show free again soon), env ({ NAME = value } for every
-- daemon, e.g. GLEAM_SECRET), and where they run: master_host and
-- agent_hosts (a list), each a host like helpers.LOOPBACK (its default):
-- ip, the address to listen on, and the methods spawn and gleam.
function helpers.start_cluster(opts)
  opts = opts or {}
  local mhost = opts.master_host or helpers.LOOPBACK
  local m = mhost:spawn({ "master", "--listen", mhost.ip .. ":0" }, opts.env)
  m.addr, m.host = helpers.listening(m), mhost
  local agents = {}
  for i = 1, opts.agents or (opts.agent_hosts and #opts.agent_hosts) or 2 do
    local host = opts.agent_hosts and opts.agent_hosts[i] or helpers.LOOPBACK
    local a = host:spawn({ "agent", "--master", m.addr, "--listen", host.ip .. ":0",
      "--cores", tostring(opts.cores or 2), "--dir", helpers.tmpdir() .. "/agent" .. i,
      "--heartbeat", opts.heartbeat or "0.2" }, opts.env)
    a.addr, a.host = helpers.listening(a), host
    agents[i] = a
  end
  local log
  local ok = helpers.wait_for(20, function()
    log = helpers.read_file(m.log) or ""
    for _, a in ipairs(agents) do
      if not log:find("agent " .. a.addr .. " registered", 1, true) then return false end
    end
    return true
  end)
  assert(ok, "the agents did not all register; the master's log:\n" .. log)
  return { master = m, agents = agents }
end

-- Waits until `gleam status` shows every agent of cluster c with `free`
-- executor slots (nil: all its cores), asked from the master's host with
-- env ({ NAME = value }: the secret, if any). A driver plans a job with a
-- shard per slot the master grants, and the master counts a job's slots
-- taken until each agent's next heartbeat, so a spec that needs every
-- agent in a job waits for this first. Returns whether it came, and the
-- last status output.
function helpers.wait_slots(c, free, seconds, env)
  local out = ""
  local ok = helpers.wait_for(seconds or 10, function()
    out = c.master.host:gleam({ "status", "--master", c.master.addr, "--timeout", "5" }, nil, nil, env).stdout
    local n = 0
    for _, a in ipairs(c.agents) do
      local cores, f = out:match("\n" .. a.addr:gsub("%p", "%%%0") .. "\t(%d+)\t(%d+)\t")
      if f and tonumber(f) == (free or tonumber(cores)) then n = n + 1 end
    end
    return n == #c.agents
  end)
  return ok, out
end

pcall(ffi.cdef, "long readlink(const char *path, char *buf, size_t size);")

-- The file a process's descriptor fd is open on, or nil.
local function fd_path(pid, fd)
  local buf = ffi.new("char[4096]")
  local n = tonumber(ffi.C.readlink(string.format("/proc/%d/fd/%d", pid, fd), buf, 4095))
  return n > 0 and ffi.string(buf, n) or nil
end

-- Stops a cluster helpers.start_cluster started: the agents with SIGTERM
-- (an agent kills its executors as it stops), then the master. An
-- executor an agent did not get to (the agent died first) runs its task
-- on to the end, so any still running is killed as well: one its agent's
-- log names whose stderr is still that log, so it is surely ours.
function helpers.stop_cluster(c)
  if not c then return end
  for _, a in ipairs(c.agents) do helpers.kill(a, "TERM") end
  for _, a in ipairs(c.agents) do
    for pid in (helpers.read_file(a.log) or ""):gmatch("executor pid (%d+) started") do
      local e = { pid = tonumber(pid) }
      if helpers.alive(e) and fd_path(e.pid, 2) == a.log then helpers.kill(e) end
    end
  end
  helpers.kill(c.master, "TERM")
end

return helpers
