-- pipe_spec: ds:pipe(cmd) and ds:pipe_as_args(cmd) (engine/op_pipe.c).
-- Rows go to a shell command as tab-separated lines and its output lines
-- come back as rows of strings: round trips through `cat` with every kind
-- of scalar, word count through `sort | uniq -c` in parallel shards
-- against coreutils, commands that print before (or instead of) reading
-- and ones that read everything first, with inputs larger than a pipe
-- buffer, early exits, failures through the gleam executable, shell
-- quoting in pipe_as_args, and examples/pipe.lua against coreutils.
local gleam = require "gleam"
local h = require "helpers"
local lcg = h.lcg

after_each(h.cleanup)

-- Runs a shell command; returns its stdout and whether it exited 0.
local sh = h.sh


-- The text a field becomes on a line (the engine's rendering), unescaped
-- again: what `cat` gives back for it.
local function as_text(v)
  if v == nil then return "" end
  if type(v) == "boolean" then return tostring(v) end
  if type(v) == "number" then
    if v ~= v then return "nan" end
    if v == math.huge then return "inf" end
    if v == -math.huge then return "-inf" end
    if v == math.floor(v) and math.abs(v) < 2 ^ 63 and not (v == 0 and 1 / v < 0) then
      return string.format("%d", v)
    end
    return string.format("%.17g", v)
  end
  return v
end

-- Rows of strings, as a round trip through cat returns them.
local function through_cat(rows)
  local out = {}
  for i, r in ipairs(rows) do
    local n = r.n or #r
    local o = { n = math.max(n, 1) }
    for k = 1, o.n do o[k] = as_text(r[k]) end
    out[i] = o
  end
  return out
end

-- Asserts a failed job: exit status 1, nothing on stdout, exactly one line
-- on stderr starting "gleam: "; returns that line.
local function failed(res)
  assert.equals(1, res.status, "exit status; stderr: " .. res.stderr)
  assert.equals("", res.stdout)
  local err = res.stderr
  assert.truthy(err:match("^gleam: "), "stderr starts with 'gleam: ': " .. err)
  local _, lines = err:gsub("\n", "")
  assert.equals(1, lines, "stderr is one line: " .. err)
  assert.equals("\n", err:sub(-1))
  return err:sub(1, -2)
end

local function has(line, text)
  assert.truthy(line:find(text, 1, true), "expected '" .. text .. "' in: " .. line)
end

describe("pipe", function()
  local tricky = {
    { "plain", "with\ttab", "with\nnewline" },
    { "back\\slash", "\\t is not a tab", "cr\r", "trailing\\" },
    { "", "empty first", "" },
    { "nil between", nil, "x", n = 3 },
    { nil, n = 1 },
    { n = 0 },
    { 0, 1, -1, 42, 2 ^ 31, -2 ^ 40, 2 ^ 53 },
    { 1.5, -0.25, 0.1, 1 / 3, 1e20, -1e-300, -0.0 },
    { math.huge, -math.huge, 0 / 0 },
    { true, false },
    { "mixed", 7, true, nil, 2.5, "tab\tand\\n", n = 6 },
    { "utf-8: żółw ☃", "\1\2 control" },
  }

  it("round-trips every scalar through cat, as strings", function()
    -- many copies, so every shard gets some and batches fill up
    local rows = {}
    for c = 1, 300 do
      for _, r in ipairs(tricky) do
        local t = { n = r.n or #r }
        for k = 1, t.n do t[k] = r[k] end
        if t.n >= 1 and type(t[1]) == "string" then t[1] = t[1] .. "#" .. c end
        rows[#rows + 1] = t
      end
    end
    local want = through_cat(rows)
    for _, w in ipairs(h.WORKERS) do
      for _, shards in ipairs({ 1, 3, 8 }) do
        local got = gleam.flow("cat"):rows(rows, { shards = shards }):pipe("cat"):collect { workers = w }
        h.assert_same_rows(want, got, h.label { workers = w, shards = shards })
      end
    end
  end)

  it("keeps each shard's rows in order through cat", function()
    local rows = {}
    for i = 1, 20000 do rows[i] = { "row " .. i } end
    local got = gleam.flow("order"):rows(rows, { shards = 1 }):pipe("cat"):collect { workers = 2 }
    h.assert_rows(h.rows_of(rows), got)
  end)

  it("gives exact strings for the values it renders", function()
    local got = gleam.flow("fmt")
      :rows({ { 1, -7, 2.5, 0.1, 1e20, -0.0, math.huge, -math.huge, 0 / 0, true, false, nil, "s", n = 13 } },
        { shards = 1 })
      :pipe("cat")
      :collect()
    h.assert_rows({ h.row("1", "-7", "2.5", "0.10000000000000001", "1e+20", "-0", "inf", "-inf", "nan",
      "true", "false", "", "s") }, got)
  end)

  it("splits output lines on tabs and undoes the escapes", function()
    local got = gleam.flow("split")
      :rows({ "x" }, { shards = 1 })
      :pipe([[printf 'a\tb\t\tc\n\n\\\\ \\t \\n \\r \\q\nlast']])
      :collect()
    h.assert_rows({
      h.row("a", "b", "", "c"),
      h.row(""),
      h.row("\\ \t \n \r \\q"),
      h.row("last"),
    }, got)
  end)

  it("runs the command once per shard, also with no input rows", function()
    local got = gleam.flow("empty"):rows({}, { shards = 1 }):pipe("echo hello; wc -l"):collect()
    h.assert_rows({ h.row("hello"), h.row("0") }, got)
    got = gleam.flow("per shard"):range(100, { shards = 4 }):pipe("wc -l | tr -d ' '"):collect { workers = 2 }
    h.assert_same_rows(h.rows_of({ "25", "25", "25", "25" }), got)
  end)

  it("chains two pipes and Lua steps in one stage", function()
    for _, w in ipairs(h.WORKERS) do
      local got = gleam.flow("chain")
        :range(1000, { shards = 3 })
        :pipe("sed 's/^/n/'")
        :map(function(s) return s .. "!" end)
        :pipe("tr n N")
        :collect { workers = w }
      local want = {}
      for i = 1, 1000 do want[i] = { "N" .. i .. "!" } end
      h.assert_same_rows(h.rows_of(want), got, "workers=" .. w)
    end
  end)

  it("counts words through sort | uniq -c in parallel shards, as coreutils does", function()
    local dir = h.tmpdir()
    local rand = lcg(7)
    local lines = {}
    for l = 1, 4000 do
      local t = {}
      for _ = 1, 1 + rand(10) do
        local r = rand(500)
        t[#t + 1] = "w" .. math.floor(r * r / 500)
      end
      lines[l] = table.concat(t, ({ " ", ", ", " -- ", "\t" })[1 + rand(4)])
    end
    local file = h.write_file(dir .. "/words.txt", table.concat(lines, "\n") .. "\n")
    local oracle = sh("LC_ALL=C tr -cs 'A-Za-z0-9' '\\n' < " .. h.quote(file)
      .. " | grep -v '^$' | LC_ALL=C sort | uniq -c")
    local want = {}
    for n, word in oracle:gmatch("(%d+) ([^\n]+)") do want[#want + 1] = { word, tonumber(n) } end
    assert.truthy(#want > 100)
    for _, w in ipairs(h.WORKERS) do
      local partial = gleam.flow("wc")
        :text(file, { shards = 4 })
        :flatmap(gleam.fn.words)
        :pipe("sort | uniq -c")
        :map(function(line)
          local n, word = line:match("^%s*(%d+) (.*)$")
          return word, tonumber(n)
        end)
      -- shards really counted apart: some words have several partial counts
      assert.truthy(partial:count { workers = w } > #want, "partial counts from several shards")
      local got = partial:reduce_by_key(gleam.fn.sum):collect { workers = w }
      h.assert_same_rows(h.rows_of(want), got, "workers=" .. w)
    end
  end)

  describe("does not deadlock with more than a pipe buffer of input", function()
    -- about 6 MB of lines
    local big = {}
    local rand = lcg(99)
    for i = 1, 60000 do big[i] = { string.format("%08d %s", rand(100000000), ("x"):rep(90)) } end

    it("through cat, which prints as it reads", function()
      for _, w in ipairs({ 1, 2 }) do
        local got = gleam.flow("big cat"):rows(big, { shards = 2 }):pipe("cat"):collect { workers = w }
        h.assert_same_rows(h.rows_of(big), got, "workers=" .. w)
      end
    end)

    it("through sort, which reads everything before it prints", function()
      local got = gleam.flow("big sort"):rows(big, { shards = 1 }):pipe("LC_ALL=C sort"):collect { workers = 2 }
      local want = {}
      for i, r in ipairs(big) do want[i] = r[1] end
      table.sort(want)
      h.assert_rows(h.rows_of(want), got)
    end)

    it("through a command that prints more than it reads", function()
      local n = gleam.flow("cat then seq"):rows(big, { shards = 1 }):pipe("cat; seq 1 200000"):count { workers = 2 }
      assert.equals(#big + 200000, n)
      -- and one that never reads at all, then exits: its stdin is dropped
      n = gleam.flow("yes"):rows(big, { shards = 1 }):pipe("yes | head -c 5000000"):count { workers = 2 }
      assert.equals(2500000, n)
    end)

    it("through head -1, which exits early with status 0", function()
      for _, w in ipairs({ 1, 2 }) do
        local got = gleam.flow("head"):rows(big, { shards = 1 }):pipe("head -1"):collect { workers = w }
        h.assert_rows({ h.row(big[1][1]) }, got, "workers=" .. w)
      end
    end)
  end)

  it("takes a last line without a newline as a row", function()
    local got = gleam.flow("no nl"):rows({ "x" }, { shards = 1 }):pipe("printf 'a\\nb'"):collect()
    h.assert_rows({ h.row("a"), h.row("b") }, got)
  end)

  it("fails on a nested field, naming the step and the row", function()
    local ok, err = pcall(function()
      gleam.flow("nested"):rows({ { "a", { 1, 2 } } }, { shards = 1 }):pipe("cat"):collect()
    end)
    assert.is_false(ok)
    assert.truthy(tostring(err):match("^pipe %(.*pipe_spec%.lua:%d+%): .*array or a map.*; row "), err)
  end)

  it("kills the command of a task when another task fails", function()
    local marker = "31.2" .. tostring(os.time() % 1000)
    local t0 = os.time()
    local ok, err = pcall(function()
      gleam.flow("cancel")
        :range(4, { shards = 2 })
        :map(function(i)
          if i == 4 then
            os.execute("sleep 0.5")
            error("boom")
          end
          return i
        end)
        :pipe("sleep " .. marker .. "; cat")
        :collect { workers = 2 }
    end)
    assert.is_false(ok)
    assert.truthy(tostring(err):find("boom", 1, true), err)
    assert.truthy(os.time() - t0 < 20, "the run waited for the command")
    -- (read /proc here: pgrep hangs under the sanitizer build's LD_PRELOAD)
    local left = {}
    for pid in sh("ls /proc"):gmatch("%d+") do
      local f = io.open("/proc/" .. pid .. "/cmdline", "rb")
      local cmdline = f and f:read("*a") or ""
      if f then f:close() end
      if cmdline:find("sleep " .. marker, 1, true) or cmdline:find("sleep\0" .. marker, 1, true) then
        left[#left + 1] = pid .. ": " .. cmdline:gsub("%z", " ")
      end
    end
    assert.equals("", table.concat(left, "; "), "the command was left running")
  end)

  describe("failing commands, through the gleam executable", function()
    it("exit 3: one line naming pipe, where and the status", function()
      local job = [[
local gleam = require "gleam"
gleam.flow("f")
  :range(100)
  :pipe("exit 3") -- PIPE
  :collect()
]]
      local line_no = h.line_of(job, "-- PIPE")
      for _, w in ipairs({ 1, 8 }) do
        local line = failed(h.run_job(job, { workers = w }))
        has(line, "gleam: pipe (job.lua:" .. line_no .. "): 'exit 3' exited with status 3")
      end
    end)

    it("shows the end of its stderr on the same line", function()
      local job = [[
local gleam = require "gleam"
gleam.flow("f")
  :range(100)
  :pipe("echo oops >&2; exit 2") -- PIPE
  :collect()
]]
      local line_no = h.line_of(job, "-- PIPE")
      for _, w in ipairs({ 1, 8 }) do
        local line = failed(h.run_job(job, { workers = w }))
        has(line, "pipe (job.lua:" .. line_no .. ")")
        has(line, "status 2")
        has(line, ": oops")
      end
    end)

    it("keeps only the last part of a long stderr, on one line", function()
      local job = [[
local gleam = require "gleam"
gleam.flow("f"):range(1, { shards = 1 })
  :pipe("seq 1 5000 >&2; echo the-end >&2; exit 1")
  :collect()
]]
      local line = failed(h.run_job(job))
      has(line, "exited with status 1: ...")
      has(line, "4999 | 5000 | the-end")
      assert.truthy(#line < 1100, "message length " .. #line)
    end)

    it("reports a command killed by a signal", function()
      local job = [[
local gleam = require "gleam"
gleam.flow("f"):range(1, { shards = 1 }):pipe("kill -9 $$"):collect()
]]
      local line = failed(h.run_job(job))
      has(line, "'kill -9 $$' was killed by signal 9")
    end)
  end)
end)

describe("pipe_as_args", function()
  local weird = {
    "it's",
    "two  spaces",
    "$HOME",
    "a; echo pwned",
    "`id` $(id)",
    "back\\slash",
    "tab\there",
    "new\nline",
    "'quoted'",
    "",
    "*",
    "-n",
  }

  -- The command must get each field's exact bytes: checked as hex, since
  -- printing the field back would turn its tabs and newlines into
  -- separators of the output.
  it("passes each field shell-quoted, byte for byte", function()
    local rows, want = {}, {}
    for i, f in ipairs(weird) do
      rows[i] = { f }
      want[i] = { n = 1, (f:gsub(".", function(c) return string.format("%02x", c:byte()) end)) }
    end
    for _, w in ipairs(h.WORKERS) do
      local got = gleam.flow("args"):rows(rows, { shards = 3 })
        :pipe_as_args("printf %s $1 | od -An -tx1 | tr -d ' \\n'; echo")
        :collect { workers = w }
      h.assert_same_rows(want, got, "workers=" .. w)
    end
  end)

  it("replaces $1..$9 and ${N}; a missing field is ''", function()
    local row = {}
    for i = 1, 11 do row[i] = "f" .. i end
    local got = gleam.flow("many")
      :rows({ row, { "only", 2.5, true } }, { shards = 1 })
      :pipe_as_args("printf '%s|' $1 $2 $3 $9 ${10} ${11} $12 $0x; echo")
      :collect()
    h.assert_rows({
      h.row("f1|f2|f3|f9|f10|f11|f12|sh" .. "x|"),
      h.row("only|2.5|true||||only2|shx|"), -- $12 is $1 then "2", as in sh
    }, got)
  end)

  it("turns every line it prints into a row, per input row", function()
    local got = gleam.flow("lines")
      :rows({ { 3 }, { 0 }, { 2 } }, { shards = 1 })
      :pipe_as_args("seq 1 $1 | sed 's/^/x\\t/'")
      :collect()
    h.assert_rows(h.rows_of({ { "x", "1" }, { "x", "2" }, { "x", "3" }, { "x", "1" }, { "x", "2" } }), got)
  end)

  it("fails the run naming the step, status, stderr and row", function()
    local job = [[
local gleam = require "gleam"
gleam.flow("f")
  :rows({ { "good", 1 }, { "bad one", 2 }, { "good", 3 } }, { shards = 1 })
  :pipe_as_args("test $1 != 'bad one' || { echo no such thing >&2; exit 5; }; echo $2") -- ARGS
  :collect()
]]
    local line_no = h.line_of(job, "-- ARGS")
    for _, w in ipairs({ 1, 8 }) do
      local line = failed(h.run_job(job, { workers = w }))
      has(line, "gleam: pipe_as_args (job.lua:" .. line_no .. "): ")
      has(line, "exited with status 5: no such thing")
      assert.equals('; row ("bad one", 2)', line:sub(-#'; row ("bad one", 2)'), line)
    end
  end)
end)

describe("examples/pipe.lua", function()
  local function oracle(files)
    return sh("cat " .. files .. " | LC_ALL=C tr -cs 'A-Za-z0-9' '\\n' | grep -v '^$' | LC_ALL=C sort | uniq -c"
      .. " | awk '{print $2 \"\\t\" $1}' | LC_ALL=C sort -t \"$(printf '\\t')\" -k2,2nr -k1,1 | head -10")
  end

  it("matches tr | sort | uniq -c on the same files", function()
    local dir = h.tmpdir()
    local rand = lcg(2024)
    for f = 1, 3 do
      local lines = {}
      for l = 1, 3000 do
        local t = {}
        for _ = 1, 1 + rand(12) do
          local r = rand(800)
          t[#t + 1] = "w" .. math.floor(r * r / 800) .. (r % 7 == 0 and "X" or "")
        end
        lines[l] = table.concat(t, ({ " ", ", ", "--", "\t" })[1 + rand(4)])
      end
      h.write_file(dir .. "/in" .. f .. ".txt", table.concat(lines, "\n") .. (f == 3 and "" or "\n"))
    end
    local want = oracle(h.quote(dir) .. "/in*.txt")
    assert.truthy(#want > 0)
    for _, w in ipairs(h.WORKERS) do
      local res = h.gleam({ "run", "--workers", tostring(w), h.source_dir .. "/examples/pipe.lua",
        dir .. "/in*.txt" })
      assert.equals(0, res.status, res.stderr)
      assert.equals(want, res.stdout, "workers=" .. w)
    end
  end)

  it("counts the repository's README.md with no arguments", function()
    local src = h.source_dir
    if src:sub(1, 1) ~= "/" then src = sh("pwd"):gsub("\n$", "") .. "/" .. src end
    local res = h.gleam({ "run", src .. "/examples/pipe.lua" })
    assert.equals(0, res.status, res.stderr)
    assert.equals(oracle(h.quote(src .. "/README.md")), res.stdout)
  end)
end)
