-- repl_spec: `gleam repl` (README "The REPL"). The evaluator in-process
-- (persistent locals, printing, completion), the non-interactive modes
-- through the executable (-e and stdin, against known answers), and the
-- prompt in a real terminal: tmux on a private socket types the README's
-- session and other keys, and each step's screen is checked.
local gleam = require "gleam"
local repl = require "gleam.repl"
local h = require "helpers"

after_each(h.cleanup)

local function has(text, part)
  assert.truthy(text:find(part, 1, true), "expected '" .. part .. "' in:\n" .. text)
end

-- A session writing to files; returns it and a function giving what it
-- wrote to stdout and stderr so far.
local function session()
  local dir = h.tmpdir()
  local out = assert(io.open(dir .. "/out", "w+b"))
  local err = assert(io.open(dir .. "/err", "w+b"))
  local s = repl.session { out = out, err = err }
  return s, function()
    out:flush()
    err:flush()
    return h.read_file(dir .. "/out"), h.read_file(dir .. "/err")
  end
end

describe("the evaluator", function()
  it("keeps locals across inputs and ships them to workers as upvalues", function()
    local s, written = session()
    gleam.config.workers = 2
    assert.equals("ok", s:feed("local n = 3"))
    assert.equals("ok", s:feed("local function sq(x) return x * x end"))
    assert.equals("ok", s:feed("local a, b"))
    assert.equals("ok", s:feed("ds = f:range(4):map(function(x) return sq(x) * n end)"))
    assert.equals("ok", s:feed("ds:collect()"))
    assert.equals("ok", s:feed("a, b, n"))
    gleam.config.workers = 0
    local out, err = written()
    assert.equals("", err)
    assert.equals("{ { 3 }, { 12 }, { 27 }, { 48 } }\nnil\nnil\n3\n", out)
  end)

  it("keeps every top-level local of an input, and no nested one", function()
    local s, written = session()
    assert.equals("ok", s:feed("local a = 1 local b = a + 1 do local c = 3 end local d"))
    assert.equals("ok", s:feed("local print = print; local e = function() local g = 7 return g end"))
    assert.equals("ok", s:feed("a, b, c, d, e(), g, print == _G.print"))
    local out, err = written()
    assert.equals("", err)
    assert.equals("1\n2\nnil\nnil\n7\nnil\ntrue\n", out)
  end)

  it("continues an unfinished statement and runs it whole", function()
    local s, written = session()
    assert.equals("more", s:feed("local t = {"))
    assert.is_true(s:continuing())
    assert.equals("more", s:feed("  1, 2,"))
    assert.equals("ok", s:feed("}"))
    assert.equals("more", s:feed("x = f:range(3):"))
    assert.equals("ok", s:feed("  count()"))
    assert.equals("ok", s:feed("#t, x"))
    assert.equals("ok", s:feed("do return 'from a statement' end"))
    assert.equals('2\n3\n"from a statement"\n', (written()))
  end)

  it("prints an error with the line it happened on and goes on", function()
    local s, written = session()
    assert.equals("ok", s:feed("y = 1"))
    assert.equals("error", s:feed("error('boom')"))
    assert.equals("error", s:feed("y = = 2"))
    assert.equals("ok", s:feed("y"))
    local out, err = written()
    assert.equals("1\n", out)
    assert.equals("gleam: stdin:2: boom\ngleam: stdin:3: unexpected symbol near '='\n", err)
  end)

  it("drops an unfinished input on reset", function()
    local s = session()
    assert.equals("more", s:feed("for i = 1, 3 do"))
    s:reset()
    assert.is_false(s:continuing())
    assert.equals("ok", s:feed("z = 1"))
  end)

  it("completes names, fields and methods", function()
    local s = session()
    s:feed("ds = f:range(3)")
    s:feed("local tbl = { alpha = 1, beta = { gamma = 2 } }")
    assert.same({ "ds:map" }, s:complete("ds:ma"))
    assert.same({ "ds:cogroup", "ds:collect", "ds:count" }, s:complete("ds:co"))
    assert.same({ "gleam.fn.words" }, s:complete("gleam.fn.wo"))
    assert.same({ "tbl.beta.gamma" }, s:complete("tbl.beta.g"))
    assert.same({ "tbl" }, s:complete("tb"))
    assert.same({ "string.format" }, s:complete("string.form"))
    assert.same({}, s:complete("nothing.here"))
  end)
end)

describe("gleam.toplocal.rewrite", function()
  local rewrite = require("gleam.toplocal").rewrite
  it("makes top-level locals assignments and lists their names", function()
    local cases = {
      { "local a, b = 1, 2", "a, b = 1, 2", "a,b" },
      { "local c", "c = nil", "c" },
      { "local function f() local g = 1 return g end", "function f() local g = 1 return g end", "f" },
      { "local h = 1 == 1", "h = 1 == 1", "h" },
      { "if x then local i = 1 else local j = 2 end local k = 1e-5",
        "if x then local i = 1 else local j = 2 end k = 1e-5", "k" },
      { "for i = 1, 2 do local l = i end repeat local m = 1 until true",
        "for i = 1, 2 do local l = i end repeat local m = 1 until true", "" },
    }
    for _, c in ipairs(cases) do
      local out, names = rewrite(c[1])
      assert.equals(c[2], out)
      assert.equals(c[3], table.concat(names, ","))
    end
  end)

  it("skips strings, long strings and comments", function()
    local src = "s = 'local a end' -- local b\nt = [==[\nend local c]==] --[[ local d\n]] local e"
    local out, names = rewrite(src)
    assert.equals(src:gsub("local e$", "e = nil"), out)
    assert.equals("e", table.concat(names, ","))
  end)
end)

describe(".help", function()
  it("has a line for every flow and dataset method", function()
    local text = repl.help_text()
    local f = gleam.flow("x")
    for name, v in pairs(getmetatable(f).__index) do
      if type(v) == "function" then has(text, "f:" .. name .. "(") end
    end
    for name, v in pairs(getmetatable(f:range(1)).__index) do
      if type(v) == "function" and not name:match("^__") then
        assert.truthy(text:find("ds:" .. name .. "[({]"), "no .help line for ds:" .. name)
      end
    end
    for line in text:gmatch("[^\n]+") do
      assert.truthy(#line <= 79, "a .help line over 79 columns: " .. line)
    end
  end)
end)

describe("gleam repl -e and stdin", function()
  it("prints each chunk's values", function()
    local res = h.gleam { "repl", "--workers", "2", "-e", "1 + 2", "-e", "local n = 10",
      "-e", "f:range(3):map(function(x) return x * n, 'v' .. x end):collect()",
      "-e", "f:rows({ { 'a', 1 }, { 'b', 2 } }):show()" }
    assert.equals("", res.stderr)
    assert.equals(0, res.status)
    assert.equals('3\n{ { 10, "v1" }, { 20, "v2" }, { 30, "v3" } }\n' ..
      "1  2\n-  -\na  1\nb  2\n(2 rows)\n", res.stdout)
  end)

  it("prints a dataset's plan without running it", function()
    local res = h.gleam { "repl", "--workers", "2", "-e",
      "f:range(10):map(function(x) error('ran') end):reduce_by_key(gleam.fn.sum)" }
    assert.equals("", res.stderr)
    assert.equals(table.concat({
      "dataset 2: reduce_by_key at (command line):1; 2 stages on 2 workers",
      "  stage 1: 2 tasks reading range 1..10 at (command line):1",
      "      map at (command line):1",
      "      reduce_by_key at (command line):1 (combine, sum in C)",
      "      -> 2 shards by hash of field 1",
      "  stage 2: 2 tasks reading the shards of stage 1",
      "      reduce_by_key at (command line):1 (merge, sum in C)",
      "      -> 2 shards out",
    }, "\n") .. "\n", res.stdout)
  end)

  it("keeps a cached dataset for the next inputs, within a memory budget", function()
    -- The map logs each row it sees: the second count must not add lines.
    local dir = h.tmpdir()
    local log = dir .. "/log"
    local res = h.gleam { "repl", "--workers", "2", "--memory", "4M", "-e",
      string.format("ds = f:range(1, 1000):map(function(x) local fh = io.open(%q, 'a') " ..
        "fh:write(x, '\\n') fh:close() return x %% 10, x end):cache()", log),
      "-e", "ds:count()", "-e", "ds:reduce_by_key(gleam.fn.sum):top(1, { by = 2 }):collect()",
      "-e", "ds:filter(function(k) return k == 3 end):count()", "-e", "ds" }
    assert.equals("", res.stderr)
    assert.equals(0, res.status)
    local lines = h.lines_of(res.stdout)
    assert.equals("1000", lines[1])
    assert.equals("{ { 0, 50500 } }", lines[2])
    assert.equals("100", lines[3])
    assert.truthy(lines[5]:match("^  stage 1: the cached shards of map at %(command line%):1 %(nothing runs%)$"), lines[5])
    assert.equals(1000, #h.lines_of(h.read_file(log)))
  end)

  it("stops at the first error with status 1", function()
    local res = h.gleam { "repl", "-e", "error('boom')", "-e", "print('not reached')" }
    assert.equals(1, res.status)
    assert.equals("", res.stdout)
    assert.equals("gleam: (command line):1: boom\n", res.stderr)
  end)

  it("runs stdin's lines as typed, naming the script's lines in errors", function()
    local dir = h.tmpdir()
    local script = h.write_file(dir .. "/script.lua", table.concat({
      "local n = 2",
      "ds = f:range(5):map(function(x)",
      "  return x * n",
      "end)",
      "ds:count()",
      "ds:reduce(function(a, b) return a + b end):collect()",
      "",
      ".help",
      "ds:map(function(x) return x.y end):count()",
      "print('not reached')",
    }, "\n") .. "\n")
    local res = h.gleam({ "repl", "--workers", "3" }, dir, script)
    assert.equals(1, res.status)
    local out = res.stdout
    assert.equals("5\n{ { 30 } }\ncommands:\n", out:sub(1, #"5\n{ { 30 } }\ncommands:\n"))
    assert.falsy(out:find("not reached", 1, true))
    assert.truthy(res.stderr:match("^gleam: map %(stdin:9%): stdin:9: attempt to index .*\n$"), res.stderr)
  end)

  it("fails on an unfinished script", function()
    local dir = h.tmpdir()
    local script = h.write_file(dir .. "/script.lua", "for i = 1, 3 do\n  print(i)\n")
    local res = h.gleam({ "repl" }, dir, script)
    assert.equals(1, res.status)
    assert.equals("gleam: stdin:2: 'end' expected (to close 'for' at line 1) near '<eof>'\n", res.stderr)
  end)

  it("checks its options and documents itself", function()
    local res = h.gleam { "repl", "--master", "x" }
    assert.equals(2, res.status)
    assert.truthy(res.stderr:match("^gleam: %-%-master needs HOST:PORT, got x\n"), res.stderr)
    res = h.gleam { "repl", "--memory", "lots" }
    assert.equals(2, res.status)
    assert.truthy(res.stderr:match("^gleam: %-%-memory: expected a size"), res.stderr)
    has(h.gleam({ "--help" }).stdout, "repl [OPTIONS] [-e CHUNK]")
    local help = h.gleam { "help", "repl" }
    assert.equals(0, help.status)
    has(help.stdout, "usage: gleam repl [--workers N] [--memory SIZE] [--dir DIR] [--master HOST:PORT] [-e CHUNK]...")
    has(help.stdout, "~/.gleam_history")
  end)
end)

-- The terminal ---------------------------------------------------------------

local term = require "tmux"
local at_prompt = term.at_prompt

-- A REPL with `workers` workers in a new tmux server, at its first prompt.
local function start_repl(workers)
  return term.start_repl({ "--workers", tostring(workers) })
end

-- The README's session: lines from the block after the test comment.
local function readme_session()
  local readme = h.read_file(h.source_dir .. "/README.md")
  local block = readme:match("<!%-%- test: spec/repl_spec.lua[^\n]*\n```text\n(.-)```")
  assert(block, "README has no REPL session block")
  return block
end

describe("gleam repl in a terminal", function()
  local t
  after_each(function()
    if t then t:kill() end
    t = nil
  end)

  it("reproduces the README's session", function()
    if not term.available() then pending("tmux is not installed") return end
    local want = readme_session()
    t = start_repl(2)
    -- Type each input line of the README; Ctrl-C where it shows ^C, Ctrl-D at ^D.
    local lines = {}
    for line in want:gmatch("([^\n]*)\n") do lines[#lines + 1] = line end
    for i, line in ipairs(lines) do
      local typed = line:match("^gleam> (.*)$") or line:match("^  %.%.%.> (.*)$")
      if typed == "^D" then
        t:keys("C-d")
      elseif typed and lines[i + 1] == "^C" then
        -- Ctrl-C only once the job runs: one that came while the line was
        -- still being taken (its history saved) went to the line editor,
        -- and the job ran on
        t:start_job(typed)
        t:keys("C-c")
        t:wait(at_prompt, "the prompt after Ctrl-C")
      elseif typed then
        t:line(typed, 60)
      end
    end
    local screen = t:wait_text("[exited 0]")
    local got = screen:gsub("%[exited 0%]\n$", "")
    -- The README's first lines are the command and the banner, whose
    -- versions are checked by pattern; the rest must match exactly.
    local want_rest = want:gsub("^[^\n]*\n[^\n]*\n", "")
    local banner, got_rest = got:match("^([^\n]*)\n(.*)$")
    assert.truthy(banner:match("^gleam %S+ REPL %(LuaJIT %S+%), local with 2 workers%.$"), banner)
    assert.equals(want_rest, got_rest)
    -- The history file has the lines typed.
    local hist = h.read_file(t.home .. "/.gleam_history") or ""
    has(hist, "local\\040n\\040=\\0403")
  end)

  it("completes with Tab, clears a line with Ctrl-C, shows errors and goes on", function()
    if not term.available() then pending("tmux is not installed") return end
    t = start_repl(2)
    t:line("ds = f:range(1, 100)")
    -- one candidate: completed in place
    t:tmux("send-keys -l 'ds:cou'")
    t:keys("Tab")
    t:wait_text("gleam> ds:count")
    t:tmux("send-keys -l '()'")
    t:keys("Enter")
    local screen = t:wait(function(s) return s:find("ds:count()\n100\n", 1, true) and at_prompt(s) end, "the count")
    -- several: listed under the line, which stays as typed
    t:tmux("send-keys -l 'ds:s'")
    t:keys("Tab")
    screen = t:wait_text("ds:save")
    has(screen, "ds:select")
    has(screen, "ds:show")
    has(screen, "ds:sort_by")
    -- fields of a table
    t:keys("C-u")
    t:tmux("send-keys -l 'gleam.fn.wo'")
    t:keys("Tab")
    t:wait_text("gleam> gleam.fn.words")
    -- Ctrl-C at the prompt drops the line
    t:keys("C-c")
    t:wait(function(s) return s:find("gleam.fn.words^C\n", 1, true) and at_prompt(s) end, "a fresh prompt")
    -- UTF-8 typed in the C locale stays UTF-8
    t:line("s = 'h\195\169llo'")
    screen = t:line("#s, s")
    has(screen, "\n6\n\"h\195\169llo\"\n")
    -- an error, then the session goes on with its variables
    screen = t:line("error('oops')")
    has(screen, "gleam: stdin:5: oops\n")
    screen = t:line("ds:filter(function(x) return x > 90 end):count()")
    has(screen, "\n10\n")
    t:keys("C-d")
    t:wait_text("[exited 0]")
  end)

  it("shows a long job's progress on one line and clears it when done", function()
    if not term.available() then pending("tmux is not installed") return end
    t = start_repl(2)
    -- two tasks that each sleep 1 ms a row, 2000 rows: at least two seconds
    -- of wall time however loaded the machine (a spin on os.clock, the
    -- process's CPU time, took one second with two free cores: as long as
    -- the progress line waits, so it was often never drawn)
    t:line("slow = function(x) local ffi = require 'ffi' pcall(ffi.cdef, " ..
      "'int poll(void *fds, unsigned long n, int timeout);') ffi.C.poll(nil, 0, 1) return x end")
    t:start_line("f:range(1, 4000, { shards = 2 }):map(slow):count()")
    local screen = t:wait(function(s) return s:find("stage 1/1: %d/2 tasks, %d+ rows, %d+%.%d s") end,
      "a progress line", 20)
    screen = t:wait(function(s) return s:find("\n4000\n", 1, true) and at_prompt(s) end, "the count", 30)
    -- cleared: the line the count follows holds no progress text
    assert.falsy(screen:find("stage 1/1", 1, true), screen)
    t:keys("C-d")
    t:wait_text("[exited 0]")
  end)

  it("leaves on a second Ctrl-C when a job does not stop at the first", function()
    if not term.available() then pending("tmux is not installed") return end
    t = start_repl(1)
    -- a worker busy in one row: the engine only sees the cancel between batches
    t:line("spin = function(x) local t = os.time() while os.time() - t < 60 do end return x end")
    -- each Ctrl-C once the one before has been taken: two signals that
    -- arrive before the REPL runs again are one
    t:start_job("f:range(1):map(spin):count()")
    t:interrupt()
    t:keys("C-c")
    local screen = t:wait_text("[exited 130]")
    has(screen, "gleam: interrupted twice; leaving the REPL\n")
  end)
end)
