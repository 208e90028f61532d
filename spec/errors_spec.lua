-- errors_spec: failures and the command line, through the gleam executable
-- (README "Errors", "Running a flow"). Each failure is one line on stderr
-- starting "gleam: ", naming what and where, with exit status 1 for a
-- failed job and 2 for a usage error; results alone go to stdout.
local h = require "helpers"

after_each(h.cleanup)

-- Asserts stderr is exactly one line starting "gleam: "; returns the line
-- without its newline.
local function one_line(res)
  local err = res.stderr
  assert.truthy(err:match("^gleam: "), "stderr starts with 'gleam: ': " .. err)
  assert.equals("\n", err:sub(-1), "stderr ends with a newline: " .. err)
  local _, lines = err:gsub("\n", "")
  assert.equals(1, lines, "stderr is one line: " .. err)
  return err:sub(1, -2)
end

local function has(line, text)
  assert.truthy(line:find(text, 1, true), "expected '" .. text .. "' in: " .. line)
end

-- Asserts a failed job: status 1, nothing on stdout, one line on stderr.
local function failed(res)
  assert.equals(1, res.status, "exit status; stderr: " .. res.stderr)
  assert.equals("", res.stdout)
  return one_line(res)
end

describe("a Lua error inside a step's function", function()
  it("in map: one line naming the step, the job's lines and the row", function()
    local job = [[
local gleam = require "gleam"
local rows = { { "ok", 1 }, { "abc", nil, n = 2 }, { "fine", 2 } }
gleam.flow("e")
  :rows(rows)
  :map(function(s, n) -- STEP
    return s, n + 1 -- BAD
  end)
  :collect()
]]
    local step, bad = h.line_of(job, "-- STEP"), h.line_of(job, "-- BAD")
    for _, w in ipairs { 1, 8 } do
      local line = failed(h.run_job(job, { workers = w }))
      assert.truthy(line:match("^gleam: map "), line)
      has(line, "map (job.lua:" .. step .. ")")
      has(line, "job.lua:" .. bad .. ": attempt to perform arithmetic")
      has(line, "'n'")
      assert.equals('; row ("abc", nil)', line:sub(-#'; row ("abc", nil)'), line)
    end
  end)

  it("abbreviates a long row to about 200 bytes", function()
    local job = [[
local gleam = require "gleam"
local long = string.rep("x", 5000)
gleam.flow("e"):rows({ { long, "tail" } })
  :map(function(s, t) return s + 1 end)
  :collect()
]]
    local line = failed(h.run_job(job))
    has(line, "map (job.lua:4)")
    local row = line:match("; row (.*)$")
    assert.truthy(row, "names the row: " .. line)
    assert.truthy(#row <= 220 and #row >= 150, "row shown in ~200 bytes, got " .. #row .. ": " .. row)
    assert.is_nil(line:find(string.rep("x", 300), 1, true))
    assert.truthy(#line < 600, "the whole line is short: " .. #line)
  end)

  it("in flatmap names flatmap", function()
    local job = [[
local gleam = require "gleam"
gleam.flow("e"):rows({ "a b", "c d" })
  :flatmap(function(line) return line.x.y end) -- STEP
  :collect()
]]
    local step = h.line_of(job, "-- STEP")
    local line = failed(h.run_job(job, { workers = 2 }))
    assert.truthy(line:match("^gleam: flatmap "), line)
    has(line, "flatmap (job.lua:" .. step .. ")")
    has(line, "job.lua:" .. step .. ":")
    assert.truthy(line:match('; row %("[abcd ]+"%)$'), line)
  end)

  -- The iterator a flatmap returns runs after the function has returned:
  -- its errors are the flatmap's too, not those of the step after it.
  -- line:gmatch("...") is recognised and called by the worker itself
  -- (gleam.gmatch); a pattern in an upvalue is not: both name flatmap,
  -- and never a line of gleam's own files.
  it("in flatmap's iterator (a bad pattern, a Lua iterator) names flatmap", function()
    local iters = {
      'function(line) return line:gmatch("a%1") end',
      'function(line) return line:gmatch(pat) end',
      'function(line) local n = 0; return function() n = n + 1; if n > 1 then error("iterator broke") end return line end end',
    }
    for _, it_src in ipairs(iters) do
      local job = [[
local gleam = require "gleam"
local pat = "a%1"
gleam.flow("e"):rows({ "ab cd", "ef" })
  :flatmap(]] .. it_src .. [[) -- STEP
  :map(function(w) return w, 1 end)
  :collect()
]]
      local step = h.line_of(job, "-- STEP")
      local line = failed(h.run_job(job, { workers = 1 }))
      assert.truthy(line:match("^gleam: flatmap %(job.lua:" .. step .. "%): "), line)
      assert.truthy(line:find("invalid capture index", 1, true) or line:find("iterator broke", 1, true), line)
      assert.is_nil(line:find("worker.lua", 1, true), line)
      assert.truthy(line:match('; row %("ab cd"%)$'), line)
    end
  end)

  it("in encoding what a step after a flatmap gave: names that step, not flatmap", function()
    local job = [[
local gleam = require "gleam"
gleam.flow("e"):rows({ "a b" })
  :flatmap(function(line) return line:gmatch("%a+") end)
  :map(function(w) return w, print end) -- STEP
  :collect()
]]
    local step = h.line_of(job, "-- STEP")
    local line = failed(h.run_job(job, { workers = 1 }))
    assert.truthy(line:match("^gleam: map %(job.lua:" .. step .. "%): "), line)
  end)

  it("in flatmap's line:gmatch on a row that is not a string: as Lua says it", function()
    local job = [[
local gleam = require "gleam"
gleam.flow("e"):rows({ "a b", 5 })
  :flatmap(function(line) return line:gmatch("%a+") end) -- STEP
  :collect()
]]
    local step = h.line_of(job, "-- STEP")
    local line = failed(h.run_job(job, { workers = 1 }))
    has(line, "flatmap (job.lua:" .. step .. "): job.lua:" .. step .. ": attempt to index local 'line' (a number value)")
    assert.truthy(line:match("; row %(5%)$"), line)
  end)

  it("in filter names filter", function()
    local job = [[
local gleam = require "gleam"
gleam.flow("e"):range(1000)
  :filter(function(i) return i < "x" end) -- STEP
  :count()
]]
    local step = h.line_of(job, "-- STEP")
    -- every row fails, in every task: still one line
    local line = failed(h.run_job(job, { workers = 8 }))
    assert.truthy(line:match("^gleam: filter "), line)
    has(line, "filter (job.lua:" .. step .. ")")
    has(line, "job.lua:" .. step .. ": attempt to compare")
    assert.truthy(line:match("; row %(%d+%)$"), line)
  end)

  it("in reduce_by_key names reduce_by_key", function()
    local job = [[
local gleam = require "gleam"
gleam.flow("e"):range(1000):map(function(i) return i % 3, i end)
  :reduce_by_key(function(a, b) -- STEP
    if a > 500 then error("too big") end -- BAD
    return a + b
  end)
  :collect()
]]
    local step, bad = h.line_of(job, "-- STEP"), h.line_of(job, "-- BAD")
    local line = failed(h.run_job(job, { workers = 8 }))
    assert.truthy(line:match("^gleam: reduce_by_key "), line)
    has(line, "reduce_by_key (job.lua:" .. step .. ")")
    has(line, "job.lua:" .. bad .. ": too big")
    has(line, "; row (")
  end)

  it("in each names each", function()
    local job = [[
local gleam = require "gleam"
gleam.flow("e"):rows({ "a" })
  :each(function(s) return s + 1 end) -- STEP
  :run()
]]
    local step = h.line_of(job, "-- STEP")
    local line = failed(h.run_job(job))
    has(line, "each")
    has(line, "job.lua:" .. step)
  end)
end)

describe("input errors", function()
  it("a missing input file: one line naming the path", function()
    local line = failed(h.run_job([[
local gleam = require "gleam"
gleam.flow("e"):text("nope.txt"):count()
]]))
    has(line, "'nope.txt'")
    has(line, "text")
  end)

  it("a glob matching nothing: one line naming the glob", function()
    local line = failed(h.run_job([[
local gleam = require "gleam"
gleam.flow("e"):text("data/*.txt"):count()
]]))
    assert.equals("gleam: text: no file matches 'data/*.txt'", line)
  end)

  it("a missing file among existing ones", function()
    local line = failed(h.run_job([[
local gleam = require "gleam"
gleam.flow("e"):text({ "here.txt", "gone.txt" }):count()
]], { files = { ["here.txt"] = "a\nb\n" } }))
    has(line, "'gone.txt'")
  end)
end)

describe("job script errors", function()
  it("a syntax error: the Lua message with file and line", function()
    local line = failed(h.run_job('local gleam = require "gleam"\n\nlocal x = = 1\n'))
    assert.truthy(line:match("^gleam: job%.lua:3: "), line)
    has(line, "'='")
  end)

  it("an error raised by the script itself", function()
    local line = failed(h.run_job('local gleam = require "gleam"\nerror("stop here")\n'))
    assert.equals("gleam: job.lua:2: stop here", line)
  end)

  it("a job file that does not exist", function()
    local res = h.gleam({ "run", "no-such-job.lua" })
    assert.are_not.equals(0, res.status)
    has(one_line(res), "no-such-job.lua")
  end)

  local cases = {
    { "map(42)", "map", "function", "number" },
    { 'top("x")', "top", "number", "string" },
    { 'reduce_by_key("a")', "reduce_by_key", "function", "string" },
    { "sort_by({0})", "sort_by", "field", nil },
    { "filter(true)", "filter", "function", "boolean" },
    { "flatmap({})", "flatmap", "function", "table" },
    { "reduce(nil)", "reduce", "function", "nil" },
    { "printf(1)", "printf", "format", "number" },
    { "each('f')", "each", "function", "string" },
  }
  for _, c in ipairs(cases) do
    local call, method, expected, got = c[1], c[2], c[3], c[4]
    it("wrong argument: ds:" .. call .. " fails at the call naming " .. method, function()
      local job = 'local gleam = require "gleam"\nlocal ds = gleam.flow("e"):range(3)\n\nds:' .. call .. "\n"
      local line = failed(h.run_job(job))
      assert.truthy(line:find("^gleam: job%.lua:4: " .. method .. ": "), line)
      has(line, expected)
      if got then has(line, "got " .. got) end
    end)
  end

  it("a wrong argument inside a chain names the chain's line", function()
    local job = [[
local gleam = require "gleam"
gleam.flow("e"):range(3)
  :map(function(i) return i end)
  :top("ten") -- BAD
  :collect()
]]
    local line = failed(h.run_job(job))
    assert.truthy(line:find("^gleam: job%.lua:" .. h.line_of(job, "-- BAD") .. ": top: "), line)
  end)
end)

describe("the command line", function()
  it("--help prints the usage on stdout, exit 0", function()
    for _, args in ipairs { { "--help" }, { "-h" }, { "help" } } do
      local res = h.gleam(args)
      assert.equals(0, res.status)
      assert.equals("", res.stderr)
      assert.truthy(res.stdout:find("usage: gleam", 1, true), res.stdout)
      assert.truthy(res.stdout:find("run", 1, true), res.stdout)
    end
  end)

  it("run --help prints run's usage on stdout, exit 0", function()
    for _, args in ipairs { { "run", "--help" }, { "run", "-h" }, { "help", "run" } } do
      local res = h.gleam(args)
      assert.equals(0, res.status)
      assert.equals("", res.stderr)
      assert.truthy(res.stdout:find("gleam run", 1, true), res.stdout)
      assert.truthy(res.stdout:find("--workers", 1, true), res.stdout)
    end
  end)

  it("--version prints the version on stdout, exit 0", function()
    local res = h.gleam({ "--version" })
    assert.equals(0, res.status)
    assert.equals("", res.stderr)
    assert.truthy(res.stdout:match("^gleam %d+%.%d+%.%d+"), res.stdout)
    assert.equals("\n", res.stdout:sub(-1))
  end)

  it("an unknown command: exit 2, message on stderr naming it", function()
    for _, cmd in ipairs { "bogus", "--bogus", "-x" } do
      local res = h.gleam({ cmd })
      assert.equals(2, res.status, cmd)
      assert.equals("", res.stdout)
      assert.truthy(res.stderr:match("^gleam: "), res.stderr)
      assert.truthy(res.stderr:find(cmd, 1, true), res.stderr)
    end
  end)

  it("an unknown option of run: exit 2, message on stderr", function()
    local res = h.run_job("print('ran')\n", { args = {} })
    assert.equals(0, res.status)
    res = h.gleam({ "run", "--bogus", "job.lua" })
    assert.equals(2, res.status)
    assert.equals("", res.stdout)
    assert.truthy(res.stderr:match("^gleam: [^\n]*%-%-bogus"), res.stderr)
  end)

  it("bad --workers values and a missing job file are usage errors (exit 2)", function()
    for _, args in ipairs {
      { "run", "--workers", "0", "job.lua" },
      { "run", "--workers", "many", "job.lua" },
      { "run", "--workers" },
      { "run" },
    } do
      local res = h.gleam(args)
      assert.equals(2, res.status, table.concat(args, " "))
      assert.equals("", res.stdout, table.concat(args, " "))
      assert.truthy(res.stderr:match("^gleam: "), res.stderr)
    end
  end)

  it("no command at all is a usage error: exit 2, usage on stderr", function()
    local res = h.gleam({})
    assert.equals(2, res.status)
    assert.equals("", res.stdout, "a usage error prints nothing on stdout")
    assert.truthy(res.stderr:find("usage: gleam", 1, true), res.stderr)
  end)

  it("a job sees its arguments in `arg` (arg[0] the script) and `...`", function()
    local job = [[
local n = select("#", ...)
io.write(arg[0], "|", #arg, "|", table.concat(arg, ","), "|", n, "|", table.concat({ ... }, ","), "\n")
]]
    local res = h.run_job(job, { args = { "a", "b c", "3", "-x", "--workers" } })
    assert.equals("", res.stderr)
    assert.equals(0, res.status)
    assert.equals("job.lua|5|a,b c,3,-x,--workers|5|a,b c,3,-x,--workers\n", res.stdout)
    res = h.run_job(job, { workers = 2 })
    assert.equals("job.lua|0||0|\n", res.stdout)
  end)

  it("the job runs with the --workers given", function()
    local res = h.run_job([[
local gleam = require "gleam"
print(gleam.config.workers, gleam.flow("w"):range(10):count())
]], { workers = 3 })
    assert.equals("", res.stderr)
    assert.equals("3\t10\n", res.stdout)
  end)

  it("stdout holds only results; messages go to stderr", function()
    local job = [[
local gleam = require "gleam"
gleam.flow("p"):rows({ { "b", 2 }, { "a", 1 } }):sort_by(2):printf("%s=%d\n"):run()
local forgotten = gleam.flow("q"):range(3):printf("%d\n") -- never run
]]
    local res = h.run_job(job, { workers = 2 })
    assert.equals(0, res.status)
    assert.equals("a=1\nb=2\n", res.stdout)
    -- a sink that never ran is worth a warning, on stderr
    assert.truthy(res.stderr:match("^gleam: "), res.stderr)
    assert.truthy(res.stderr:find("printf", 1, true), res.stderr)
    -- a failed job prints nothing more on stdout than the rows made before
    res = h.run_job([[
local gleam = require "gleam"
gleam.flow("p"):rows({ "x" }):printf("%s\n"):run()
gleam.flow("q"):rows({ "y" }):map(function(s) return s + 1 end):printf("%s\n"):run()
]])
    assert.equals(1, res.status)
    assert.equals("x\n", res.stdout)
    assert.truthy(one_line(res):match("^gleam: map "))
  end)
end)
