-- save_spec: Dataset:save (README "save"; engine/op_save.c). Rows with
-- awkward values are saved as msgpack, tsv and csv with 1, 2 and 8 workers
-- and several shard counts, and read back: msgpack by flow:msgpack, exactly
-- and in shard order; tsv and csv by the plain parsers below (csv also by
-- sqlite3's .import), against a rendering of collect() of the same dataset.
-- Then: single = true (one file, in shard order), overwrite, a failed run
-- leaving nothing behind, unwritable paths and a full disk giving one clear
-- line, and gl_save_remove through the FFI.
local gleam = require "gleam"
local h = require "helpers"
local ffi = require "ffi"
local core = require "gleam.core"

after_each(h.cleanup)

local SHARDS = { 1, 3, 7 }
local FORMATS = { "msgpack", "tsv", "csv" }
local int64_t, uint64_t = ffi.typeof("int64_t"), ffi.typeof("uint64_t")

-- Files and directories -----------------------------------------------------

-- Names in dir (sorted), or nil if dir cannot be listed.
local function list(dir)
  local p = io.popen("ls -A " .. h.quote(dir) .. " 2>/dev/null; echo \"rc=$?\"")
  local names = {}
  for line in p:lines() do names[#names + 1] = line end
  p:close()
  if names[#names] ~= "rc=0" then return nil end
  names[#names] = nil
  table.sort(names)
  return names
end

local function is_dir(path)
  return os.execute("test -d " .. h.quote(path)) == 0
end

local function is_file(path)
  return os.execute("test -f " .. h.quote(path)) == 0
end

-- The contents of a saved output, the parts concatenated in order (a
-- directory) or the one file. Also returns the part names.
local function contents(path)
  if not is_dir(path) then return assert(h.read_file(path), "no file " .. path), { } end
  local names, parts = list(path), {}
  for i, n in ipairs(names) do parts[i] = assert(h.read_file(path .. "/" .. n)) end
  return table.concat(parts), names
end

-- Asserts a directory output has exactly part-00000.<ext> .. part-<n-1>.<ext>.
local function assert_parts(path, n, ext, ctx)
  local names = list(path)
  assert(names, ctx .. ": no directory " .. path)
  local want = {}
  for i = 0, n - 1 do want[#want + 1] = string.format("part-%05d.%s", i, ext) end
  assert.same(want, names, ctx .. ": the part files")
end

-- Asserts nothing in dir but the names listed in keep (a set), and in
-- particular nothing named like target or a temporary of it.
local function assert_clean(dir, target, keep, ctx)
  local base = target:match("[^/]+$")
  for _, n in ipairs(list(dir)) do
    if not (keep and keep[n]) then
      assert(false, string.format("%s: left behind in %s: %s", ctx, dir, n))
    end
    assert.falsy(n:find(".gleam-tmp-", 1, true), ctx .. ": a temporary left behind: " .. n)
    assert.are_not.equals(base, n, ctx .. ": the target exists after a failed run")
  end
end

-- Rendering as tsv and csv write values --------------------------------------

-- A field's text: integers in decimal, doubles %.17g (-0, inf, -inf, nan),
-- booleans true/false, nil empty; strings as they are.
local function render(v)
  local tv = type(v)
  if tv == "nil" then return "" end
  if tv == "boolean" then return tostring(v) end
  if tv == "string" then return v end
  if tv == "cdata" then
    if ffi.istype(int64_t, v) then return (tostring(v):gsub("LL$", "")) end
    if ffi.istype(uint64_t, v) then return (tostring(v):gsub("ULL$", "")) end
  end
  assert(tv == "number", "render: " .. tv)
  if v ~= v then return "nan" end
  if v == math.huge then return "inf" end
  if v == -math.huge then return "-inf" end
  if v == 0 and 1 / v < 0 then return "-0" end
  -- An integral Lua number in int64 range travels as a msgpack integer.
  if v == math.floor(v) and math.abs(v) < 2 ^ 62 then return string.format("%.0f", v) end
  return string.format("%.17g", v)
end

-- The fields of a collected row as the text formats hold them: a list of
-- { text, str = the value was a string }. tsv and csv cannot tell a row of
-- no fields from a row of one nil: both are an empty line, read back as
-- one empty field.
local function text_fields(r)
  local out = {}
  for k = 1, r.n do out[k] = { render(r[k]), str = type(r[k]) == "string" } end
  if r.n == 0 then out[1] = { "", str = false } end
  return out
end

-- Plain parsers -----------------------------------------------------------------

-- tsv: one row per "\n"-ended line, fields split on tabs, \\ \t \n \r
-- unescaped. Returns a list of rows, each a list of strings.
local UNESC = { ["\\"] = "\\", t = "\t", n = "\n", r = "\r" }
local function parse_tsv(s)
  assert(s == "" or s:sub(-1) == "\n", "tsv: the last line ends in a newline")
  local rows = {}
  for line in s:gmatch("([^\n]*)\n") do
    local fields = {}
    for f in (line .. "\t"):gmatch("([^\t]*)\t") do
      assert.falsy(f:find("\r", 1, true), "tsv: a raw CR in a field")
      local un = f:gsub("\\(.)", function(c) return assert(UNESC[c], "tsv: bad escape \\" .. c) end)
      fields[#fields + 1] = un
    end
    rows[#rows + 1] = fields
  end
  return rows
end

-- csv (RFC 4180, "\n" line ends): returns a list of rows, each a list of
-- { text, quoted = bool }.
local function parse_csv(s)
  local rows, row, i, n = {}, {}, 1, #s
  assert(s == "" or s:sub(-1) == "\n", "csv: the last line ends in a newline")
  while i <= n do
    local c = s:sub(i, i)
    if c == '"' then
      local parts = {}
      i = i + 1
      while true do
        local q = assert(s:find('"', i, true), "csv: unterminated quote")
        parts[#parts + 1] = s:sub(i, q - 1)
        if s:sub(q + 1, q + 1) == '"' then
          parts[#parts + 1] = '"'
          i = q + 2
        else
          i = q + 1
          break
        end
      end
      row[#row + 1] = { table.concat(parts), quoted = true }
      c = s:sub(i, i)
      assert(c == "," or c == "\n", "csv: text after a closing quote at byte " .. i)
    else
      local e = s:find("[,\n]", i) or n + 1
      local f = s:sub(i, e - 1)
      assert.falsy(f:find('["\r]'), "csv: a quote or CR in an unquoted field: " .. f)
      assert.falsy(f:find("^[ \t]") or f:find("[ \t]$"), "csv: unquoted leading or trailing space: " .. f)
      row[#row + 1] = { f, quoted = false }
      i = e
      c = s:sub(i, i)
    end
    i = i + 1
    if c == "\n" then
      rows[#rows + 1] = row
      row = {}
    end
  end
  assert(#row == 0, "csv: a last line without a newline")
  return rows
end

-- Compares parsed text rows with collected rows; ctx names the case.
local function assert_text_rows(expected, parsed, csv, ctx)
  assert.equals(#expected, #parsed, ctx .. ": rows read back")
  for i, r in ipairs(expected) do
    local want, got = text_fields(r), parsed[i]
    local where = string.format("%s: row %d %s", ctx, i, h.show_row(r))
    assert.equals(#want, #got, where .. ": fields")
    for k, w in ipairs(want) do
      local g = got[k]
      if csv then
        assert.equals(w[1], g[1], where .. ": field " .. k)
        -- "" is an empty string, an unquoted empty field nil (or a no-field row)
        if w[1] == "" then assert.equals(w.str, g.quoted, where .. ": field " .. k .. " quoted") end
      else
        assert.equals(w[1], g, where .. ": field " .. k)
      end
    end
  end
end

-- Data --------------------------------------------------------------------------

local AWKWARD = {
  h.row("tab\there", "new\nline", "cr\rret", "back\\slash", "\\t literal"),
  h.row('quo"te', "com,ma", '"', ",", '""', "a,\"b\"\r\nc"),
  h.row("", "", ""),
  h.row(nil, 1, nil),
  h.row(1, nil, nil, nil),
  h.row(nil),
  h.row(),
  h.row(" lead", "trail ", " ", "\tt", "t\t", "x y"),
  h.row(2 ^ 53, ffi.new("int64_t", 2 ^ 53) + 1, -ffi.new("int64_t", 2 ^ 53) - 1,
    9223372036854775807LL, -9223372036854775807LL - 1,
    18446744073709551615ULL),
  h.row(-0.0, 0, 0 / 0, math.huge, -math.huge),
  h.row(0.1, 1 / 3, -2.5e-300, 1e300, 5e-324, 123456789.125),
  h.row(true, false, nil, "true", "nil"),
  h.row("ünï\0cödé", "\1\2\127", "#hash", "'single'"),
}

-- The awkward rows, many plain rows, and one string larger than the
-- 256 KB write buffer.
local function dataset_rows()
  local rows = {}
  for _, r in ipairs(AWKWARD) do rows[#rows + 1] = r end
  for i = 1, 3000 do
    rows[#rows + 1] = h.row(i, "w" .. i .. (i % 7 == 0 and "\t," or ""), i % 3 == 0 and nil or i / 8,
      i % 5 == 0)
    if i == 1500 then rows[#rows + 1] = h.row("big", string.rep("ab\t\n,\"", 60000)) end
  end
  return rows
end

local ROWS = dataset_rows()

local function data(shards)
  return gleam.flow("s"):rows(ROWS, { shards = shards })
end

-- Round trips -------------------------------------------------------------------

describe("save", function()
  it("round-trips every format, every worker and shard count", function()
    local dir = h.tmpdir()
    for _, w in ipairs(h.WORKERS) do
      for _, sh in ipairs(SHARDS) do
        local expected = data(sh):collect { workers = w }
        assert.equals(#ROWS, #expected)
        for _, fmt in ipairs(FORMATS) do
          local ctx = h.label { workers = w, shards = sh, format = fmt }
          local out = string.format("%s/out-%d-%d-%s", dir, w, sh, fmt)
          assert.equals(out, data(sh):save(out, { format = fmt, workers = w }))
          assert_parts(out, sh, fmt, ctx)
          if fmt == "msgpack" then
            local back = gleam.flow("b"):msgpack(out .. "/*.msgpack"):collect { workers = w }
            h.assert_rows(expected, back, ctx)
          else
            local text = contents(out)
            if fmt == "tsv" then
              assert_text_rows(expected, parse_tsv(text), false, ctx)
            else
              assert_text_rows(expected, parse_csv(text), true, ctx)
            end
          end
        end
      end
    end
  end)

  it("writes the awkward values byte for byte as documented", function()
    local dir = h.tmpdir()
    local rows = {
      h.row("a\tb\\c\nd\re", nil, "", 7),
      h.row('q"x', "c,d", " s", "e ", "plain"),
      h.row(-0.0, 0 / 0, math.huge, -math.huge, 0.1, true, false),
      h.row(ffi.new("int64_t", 2 ^ 53) + 1, 18446744073709551615ULL, -42),
      h.row(),
      h.row(nil),
      h.row(""),
    }
    local tsv = table.concat {
      "a\\tb\\\\c\\nd\\re\t\t\t7\n",
      'q"x\tc,d\t s\te \tplain\n',
      "-0\tnan\tinf\t-inf\t0.10000000000000001\ttrue\tfalse\n",
      "9007199254740993\t18446744073709551615\t-42\n",
      "\n",
      "\n",
      "\n",
    }
    local csv = table.concat {
      '"a\tb\\c\nd\re",,"",7\n',
      '"q""x","c,d"," s","e ",plain\n',
      "-0,nan,inf,-inf,0.10000000000000001,true,false\n",
      "9007199254740993,18446744073709551615,-42\n",
      "\n",
      "\n",
      '""\n',
    }
    for _, w in ipairs(h.WORKERS) do
      for _, sh in ipairs { 1, 3 } do
        for fmt, want in pairs { tsv = tsv, csv = csv } do
          local ctx = h.label { workers = w, shards = sh, format = fmt }
          local out = string.format("%s/%s-%d-%d", dir, fmt, w, sh)
          gleam.flow("g"):rows(rows, { shards = sh }):save(out, { format = fmt, workers = w })
          assert.equals(want, (contents(out)), ctx)
        end
      end
    end
  end)

  it("creates a file for every shard, empty ones included", function()
    local dir = h.tmpdir()
    for _, w in ipairs(h.WORKERS) do
      for _, fmt in ipairs(FORMATS) do
        local out = string.format("%s/few-%d-%s", dir, w, fmt)
        gleam.flow("f"):rows({ { 1 }, { 2 } }, { shards = 7 }):save(out, { format = fmt, workers = w })
        assert_parts(out, 7, fmt, h.label { workers = w, format = fmt })
        local text, names = contents(out)
        local empty = 0
        for _, n in ipairs(names) do
          if h.read_file(out .. "/" .. n) == "" then empty = empty + 1 end
        end
        assert.equals(5, empty, "empty part files")
        if fmt ~= "msgpack" then assert.equals("1\n2\n", text) end
      end
    end
    -- an empty dataset still gives its parts
    local out = dir .. "/none"
    gleam.flow("f"):rows({}, { shards = 3 }):save(out)
    assert_parts(out, 3, "tsv", "empty dataset")
    assert.equals("", (contents(out)))
  end)

  it("keeps nested tables in msgpack and refuses them in tsv and csv", function()
    local dir = h.tmpdir()
    local rows = { h.row(1, "a"), h.row(2, { 3, { x = 4 } }), { 5, nil, n = 3 } }
    for _, w in ipairs(h.WORKERS) do
      local out = string.format("%s/nested-%d", dir, w)
      gleam.flow("n"):rows(rows, { shards = 2 }):save(out, { format = "msgpack", workers = w })
      h.assert_rows(gleam.flow("n"):rows(rows, { shards = 2 }):collect { workers = w },
        gleam.flow("b"):msgpack(out .. "/*.msgpack"):collect { workers = w }, "nested msgpack")
      for _, fmt in ipairs { "tsv", "csv" } do
        local target = string.format("%s/nested-%d-%s", dir, w, fmt)
        local ok, msg = pcall(function()
          gleam.flow("n"):rows(rows, { shards = 2 }):save(target, { format = fmt, workers = w })
        end)
        assert.falsy(ok, fmt .. ": a nested table must fail")
        msg = tostring(msg)
        assert.truthy(msg:find("^save %(.-save_spec%.lua:%d+%)"), "names the step and line: " .. msg)
        assert.truthy(msg:find("field 2 is a table", 1, true), msg)
        assert.truthy(msg:find(fmt, 1, true), msg)
        assert.truthy(msg:find("; row (2, {", 1, true), "names the row: " .. msg)
        assert.falsy(msg:find("\n", 1, true), "one line: " .. msg)
        assert.is_nil(io.open(target), "no output after a failure")
      end
    end
    local keep = {}
    for _, w in ipairs(h.WORKERS) do keep["nested-" .. w] = true end
    assert_clean(dir, dir .. "/nested-x", keep, "nested")
  end)
end)

describe("save with single = true", function()
  it("writes one file in shard order", function()
    local dir = h.tmpdir()
    local rows = {}
    for i = 1, 2000 do rows[i] = h.row((i * 7919) % 2003, "v" .. i, i % 2 == 0 and "x\ty" or nil) end
    for _, w in ipairs(h.WORKERS) do
      for _, sh in ipairs(SHARDS) do
        local function sorted()
          return gleam.flow("o"):rows(rows, { shards = sh }):sort_by(1, { shards = sh })
        end
        local expected = sorted():collect { workers = w }
        for _, fmt in ipairs(FORMATS) do
          local ctx = h.label { workers = w, shards = sh, format = fmt }
          local out = string.format("%s/one-%d-%d.%s", dir, w, sh, fmt)
          sorted():save(out, { format = fmt, single = true, workers = w })
          assert.truthy(is_file(out), ctx .. ": a regular file")
          local text = h.read_file(out)
          if fmt == "msgpack" then
            h.assert_rows(expected, gleam.flow("b"):msgpack(out):collect { workers = w }, ctx)
          elseif fmt == "tsv" then
            assert_text_rows(expected, parse_tsv(text), false, ctx)
          else
            assert_text_rows(expected, parse_csv(text), true, ctx)
          end
          -- sort_by's order, checked on its own too
          if fmt ~= "msgpack" then
            local prev = -1
            for line in text:gmatch("[^\n]+") do
              local k = tonumber(line:match("^%d+"))
              assert.truthy(k >= prev, ctx .. ": in key order")
              prev = k
            end
          end
        end
      end
    end
  end)

  it("makes the parent directories", function()
    local dir = h.tmpdir()
    local out = dir .. "/a/b/c.tsv"
    gleam.flow("p"):rows({ { 1 }, { 2 } }, { shards = 2 }):save(out, { single = true })
    assert.equals("1\n2\n", h.read_file(out))
    assert.same({ "c.tsv" }, list(dir .. "/a/b"))
    local out2 = dir .. "/x/y/z"
    gleam.flow("p"):rows({ { 1 }, { 2 } }, { shards = 2 }):save(out2)
    assert_parts(out2, 2, "tsv", "nested directories")
  end)
end)

describe("csv read by sqlite3", function()
  it("imports the same strings", function()
    if os.execute("command -v sqlite3 >/dev/null 2>&1") ~= 0 then
      pending("sqlite3 is not installed")
      return
    end
    local dir = h.tmpdir()
    local strs = { "plain", "com,ma", 'quo"te', "new\nline", "cr\rlf\r\n", " lead", "trail ", "",
      '""', ",\"\n", "tab\there", "back\\slash", "ünï", string.rep("long,\"", 1000) }
    local rows = {}
    for i = 1, #strs do
      rows[i] = h.row(i, strs[i], strs[(i % #strs) + 1], strs[((i + 5) % #strs) + 1])
    end
    for _, w in ipairs { 1, 8 } do
      local out = string.format("%s/sq-%d.csv", dir, w)
      gleam.flow("q"):rows(rows, { shards = 3 }):save(out, { format = "csv", single = true, workers = w })
      local script = h.write_file(dir .. "/import.sql", table.concat({
        "CREATE TABLE t(a, b, c, d);",
        ".import --csv " .. out .. " t",
        "SELECT a || ':' || hex(b) || ':' || hex(c) || ':' || hex(d) FROM t ORDER BY rowid;",
      }, "\n") .. "\n")
      local p = io.popen("sqlite3 :memory: < " .. h.quote(script) .. " 2>&1")
      local got = p:read("*a")
      p:close()
      local want = {}
      local function hex(s) return (s:gsub(".", function(c) return string.format("%02X", c:byte()) end)) end
      for i, r in ipairs(rows) do want[i] = i .. ":" .. hex(r[2]) .. ":" .. hex(r[3]) .. ":" .. hex(r[4]) end
      assert.equals(table.concat(want, "\n") .. "\n", got, "workers=" .. w)
    end
  end)
end)

-- Overwrite and failures ------------------------------------------------------------

describe("save over an existing path", function()
  it("fails without overwrite and replaces with overwrite = true", function()
    local dir = h.tmpdir()
    for _, single in ipairs { false, true } do
      local target = dir .. (single and "/one.tsv" or "/many")
      -- an existing directory with a stray file, and an existing file
      for _, old in ipairs { "dir", "file" } do
        if old == "dir" then
          assert((os.execute("mkdir -p " .. h.quote(target) .. " && echo old > " .. h.quote(target .. "/stray"))) == 0, "shell command failed")
        else
          h.write_file(target, "old\n")
        end
        local ok, msg = pcall(function()
          gleam.flow("w"):rows({ { 1 } }):save(target, { single = single })
        end)
        assert.falsy(ok)
        assert.truthy(tostring(msg):find("exists (use overwrite = true)", 1, true), tostring(msg))
        if old == "dir" then
          assert.equals("old\n", h.read_file(target .. "/stray"), "untouched")
        else
          assert.equals("old\n", h.read_file(target), "untouched")
        end
        for _, w in ipairs(h.WORKERS) do
          gleam.flow("w"):rows({ { 1 }, { 2 } }, { shards = 2 }):save(target,
            { single = single, overwrite = true, workers = w })
          if single then
            assert.truthy(is_file(target))
            assert.equals("1\n2\n", h.read_file(target))
          else
            assert_parts(target, 2, "tsv", "overwritten")
            assert.equals("1\n2\n", (contents(target)))
          end
        end
        assert_clean(dir, "/none", { [target:match("[^/]+$")] = true }, "overwrite")
        h.rmtree(target)
      end
    end
  end)

  it("accepts a trailing slash and returns the path", function()
    local dir = h.tmpdir()
    local out = gleam.flow("w"):rows({ { 1 } }):save(dir .. "/slash/")
    assert.equals(dir .. "/slash", out)
    assert_parts(out, 1, "tsv", "trailing slash")
  end)
end)

describe("a failed save", function()
  it("leaves no output and no temporary after a map fails midway", function()
    local rows = {}
    for i = 1, 64 do rows[i] = { i, string.rep("x", 1000) } end
    for _, w in ipairs(h.WORKERS) do
      for _, single in ipairs { false, true } do
        for _, fmt in ipairs(FORMATS) do
          local dir = h.tmpdir()
          local target = dir .. "/out"
          local ok, msg = pcall(function()
            gleam.flow("x"):rows(rows, { shards = 8 })
              :map(function(i, s)
                if i == 60 then error("boom at 60") end -- late: earlier shards are written first
                return i, s
              end)
              :save(target, { format = fmt, single = single, workers = w })
          end)
          local ctx = h.label { workers = w, single = single, format = fmt }
          assert.falsy(ok, ctx)
          assert.truthy(tostring(msg):find("boom at 60", 1, true), ctx .. ": " .. tostring(msg))
          assert.same({}, list(dir), ctx .. ": nothing left in the parent")
        end
      end
    end
  end)

  it("leaves an existing output alone when the new run fails", function()
    local dir = h.tmpdir()
    local target = dir .. "/keep"
    gleam.flow("k"):rows({ { 1 } }):save(target)
    local ok = pcall(function()
      gleam.flow("k"):rows({ { 1 }, { 2 } }, { shards = 2 })
        :map(function(i) if i == 2 then error("no") end return i end)
        :save(target, { overwrite = true })
    end)
    assert.falsy(ok)
    assert.equals("1\n", (contents(target)))
    assert.same({ "keep" }, list(dir))
  end)

  it("under a regular file fails with one clear line", function()
    local dir = h.tmpdir()
    h.write_file(dir .. "/somefile", "x\n")
    for _, w in ipairs(h.WORKERS) do
      for _, single in ipairs { false, true } do
        for _, target in ipairs { dir .. "/somefile/out", dir .. "/somefile/deeper/out" } do
          local ctx = h.label { workers = w, single = single, target = target }
          local ok, msg = pcall(function()
            gleam.flow("u"):rows({ { 1 }, { 2 } }, { shards = 4 }):save(target, { single = single, workers = w })
          end)
          msg = tostring(msg)
          assert.falsy(ok, ctx)
          assert.truthy(msg:find("^save: cannot create directory '" .. dir:gsub("%p", "%%%0") .. "/somefile'"),
            ctx .. ": " .. msg)
          assert.truthy(msg:find("Not a directory", 1, true), ctx .. ": " .. msg)
          assert.falsy(msg:find("\n", 1, true), ctx .. ": one line: " .. msg)
        end
      end
    end
    assert.same({ "somefile" }, list(dir))
    assert.equals("x\n", h.read_file(dir .. "/somefile"))
  end)

  it("under a regular file fails the gleam command with one line on stderr", function()
    local job = [[
local gleam = require "gleam"
gleam.flow("u"):rows({ { 1 }, { 2 } }):save("somefile/out")
]]
    for _, w in ipairs { 1, 8 } do
      local res = h.run_job(job, { workers = w, files = { somefile = "x\n" } })
      assert.equals(1, res.status, "exit status; stderr: " .. res.stderr)
      assert.equals("", res.stdout)
      local _, lines = res.stderr:gsub("\n", "")
      assert.equals(1, lines, "one line: " .. res.stderr)
      assert.truthy(res.stderr:find("^gleam: save: cannot create directory '[^\n]*somefile': Not a directory\n$"),
        res.stderr)
    end
  end)

  it("on a full disk fails with one line naming the file", function()
    -- A file size limit makes write(2) fail as a full disk does (EFBIG
    -- instead of ENOSPC, the same path in op_save.c). SIGXFSZ is ignored
    -- meanwhile, and both are restored after.
    if ffi.os ~= "Linux" then
      pending("needs Linux's RLIMIT_FSIZE")
      return
    end
    pcall(ffi.cdef, [[
      typedef struct { uint64_t cur, max; } gl_spec_rlimit;
      int getrlimit(int resource, gl_spec_rlimit *r);
      int setrlimit(int resource, const gl_spec_rlimit *r);
      typedef void (*gl_spec_sighandler)(int);
      gl_spec_sighandler signal(int sig, gl_spec_sighandler h);
    ]])
    local RLIMIT_FSIZE, SIGXFSZ = 1, 25
    local old = ffi.new("gl_spec_rlimit")
    assert.equals(0, ffi.C.getrlimit(RLIMIT_FSIZE, old))
    local dir = h.tmpdir()
    local rows = {}
    for i = 1, 400 do rows[i] = { i, string.rep("z", 4000) } end
    local results = {}
    for _, w in ipairs { 1, 8 } do
      for _, single in ipairs { false, true } do
        local target = string.format("%s/full-%d-%s", dir, w, tostring(single))
        local old_handler = ffi.C.signal(SIGXFSZ, ffi.cast("gl_spec_sighandler", 1)) -- SIG_IGN
        local lim = ffi.new("gl_spec_rlimit", 300 * 1024, old.max)
        assert.equals(0, ffi.C.setrlimit(RLIMIT_FSIZE, lim))
        local ok, msg = pcall(function()
          gleam.flow("d"):rows(rows, { shards = 2 }):save(target, { single = single, workers = w })
        end)
        ffi.C.setrlimit(RLIMIT_FSIZE, old)
        ffi.C.signal(SIGXFSZ, old_handler)
        results[#results + 1] = { ok = ok, msg = tostring(msg), target = target }
      end
    end
    for _, r in ipairs(results) do
      assert.falsy(r.ok, r.target)
      assert.truthy(r.msg:find("^save: cannot write '" .. r.target:gsub("%p", "%%%0") .. "%.gleam%-tmp%-"), r.msg)
      assert.truthy(r.msg:find("File too large", 1, true), r.msg)
      assert.falsy(r.msg:find("\n", 1, true), "one line: " .. r.msg)
    end
    assert.same({}, list(dir), "nothing left behind")
  end)
end)

-- gl_save_remove ----------------------------------------------------------------------

describe("gl_save_remove", function()
  local C = core.C
  local function remove(path)
    local err = ffi.new("gl_err")
    local rc = C.gl_save_remove(path, err)
    return rc, ffi.string(err.msg)
  end

  it("removes a file, a tree, and succeeds on a missing path", function()
    local dir = h.tmpdir()
    h.write_file(dir .. "/f", "x")
    assert.equals(0, (remove(dir .. "/f")))
    assert.same({}, list(dir))
    assert((os.execute("mkdir -p " .. h.quote(dir .. "/t/a/b/c") .. " " .. h.quote(dir .. "/t/e"))) == 0, "shell command failed")
    for _, f in ipairs { "/t/1", "/t/a/2", "/t/a/b/c/3", "/t/.hidden" } do h.write_file(dir .. f, "y") end
    assert.equals(0, (remove(dir .. "/t")))
    assert.same({}, list(dir))
    assert.equals(0, (remove(dir .. "/missing")))
    assert.equals(0, (remove(dir .. "/missing/deeper")))
    h.write_file(dir .. "/file", "z")
    assert.equals(0, (remove(dir .. "/file/under")), "ENOTDIR is missing too")
    assert.equals("z", h.read_file(dir .. "/file"))
  end)

  it("does not follow symlinks", function()
    local dir = h.tmpdir()
    assert((os.execute("mkdir -p " .. h.quote(dir .. "/outside/sub") .. " " .. h.quote(dir .. "/tree/in"))) == 0, "shell command failed")
    h.write_file(dir .. "/outside/keep", "k")
    h.write_file(dir .. "/outside/sub/keep2", "k2")
    h.write_file(dir .. "/tree/in/f", "f")
    local status_ = os.execute(table.concat({
      "ln -s " .. h.quote(dir .. "/outside") .. " " .. h.quote(dir .. "/tree/to_dir"),
      "ln -s " .. h.quote(dir .. "/outside/keep") .. " " .. h.quote(dir .. "/tree/in/to_file"),
      "ln -s " .. h.quote(dir .. "/nowhere") .. " " .. h.quote(dir .. "/tree/dangling"),
      "ln -s " .. h.quote(dir .. "/outside") .. " " .. h.quote(dir .. "/link"),
    }, " && "))
    assert.equals(0, status_, "making the links failed")
    assert.equals(0, (remove(dir .. "/tree")))
    assert.equals(0, (remove(dir .. "/link")), "a link to a directory")
    assert.same({ "outside" }, list(dir))
    assert.equals("k", h.read_file(dir .. "/outside/keep"))
    assert.equals("k2", h.read_file(dir .. "/outside/sub/keep2"))
  end)

  it("reports what it cannot remove", function()
    -- procfs refuses unlink even to root
    if not h.read_file("/proc/version") then
      pending("no /proc")
      return
    end
    local rc, msg = remove("/proc/version")
    assert.equals(-3, rc) -- GL_EIO
    assert.truthy(msg:find("^cannot remove '/proc/version': "), msg)
  end)
end)
