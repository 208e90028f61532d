-- sources_spec: the file-format sources through the API (README "The API":
-- csv, tsv, msgpack, text on .gz files): field values and types, headers,
-- malformed records (failing the run naming file:line through the gleam
-- executable, or skipped and counted), several files over several shards
-- and workers, and gzip input read the same as the plain file. SQLite's
-- CSV import (sqlite3 .import --csv) is the oracle for RFC 4180 parsing:
-- a random CSV with quotes, separators, CRLF and newlines inside fields
-- must give the same field bytes both ways.
local gleam = require "gleam"
local h = require "helpers"

after_each(h.cleanup)

local row = h.row

-- Shard counts tried for sources (false: the default).
local SHARDS = { false, 1, 3, 7 }

local function gzip(src, dst)
  assert(os.execute(string.format("gzip -c %s > %s", h.quote(src), h.quote(dst))) == 0, "gzip failed")
  return dst
end

-- Runs build(shards) for every worker and shard count and compares its rows
-- with expected (in order with ordered = true, else as multisets).
local function check(build, expected, ordered)
  for _, w in ipairs(h.WORKERS) do
    for _, sh in ipairs(SHARDS) do
      local ctx = h.label { workers = w, shards = tostring(sh) }
      local got = build(sh and { shards = sh } or {}):collect { workers = w }
      if ordered then
        h.assert_rows(expected, got, ctx)
      else
        h.assert_same_rows(expected, got, ctx)
      end
    end
  end
end

-- Returns a copy of opts with more keys.
local function with(opts, more)
  local o = {}
  for k, v in pairs(opts) do o[k] = v end
  for k, v in pairs(more) do o[k] = v end
  return o
end

describe("a CSV file with no quotes", function()
  -- Cut at lines like text (several tasks read one file); with quotes a
  -- record may hold a newline, so such a file stays whole.
  it("is read in pieces with the same rows and the same file:line in errors", function()
    h.with_tmpdir(function(dir)
      local lines = { "n,name" }
      for i = 2, 300000 do lines[i] = (i == 240017 and "x" or tostring(i)) .. ",name" .. i end
      local path = h.write_file(dir .. "/big.csv", table.concat(lines, "\n") .. "\n")
      local want
      for _, sh in ipairs({ 1, 3, 7, 16 }) do
        local rows = gleam.flow():csv(path, { header = true, shards = sh }):collect { workers = 2 }
        assert.are.equal(299999, #rows)
        local got = {}
        for k, r in ipairs(rows) do got[k] = r[1] .. "|" .. r[2] end
        if want then
          assert.are.same(want, got) -- in file order, whatever the pieces
        else
          want = got
          assert.are.equal("2|name2", got[1])
          assert.are.equal("x|name240017", got[240016])
        end
        local ok, err = pcall(function()
          return gleam.flow():csv(path, { header = true, types = { "integer", "string" }, shards = sh }):count()
        end)
        assert.is_false(ok)
        assert.are.equal("csv: " .. path .. ":240017: field 1 is not an integer: 'x'", err)
      end
    end)
  end)

  it("is cut once it is bigger than the smallest piece (1 MiB), and not when it has a quote", function()
    h.with_tmpdir(function(dir)
      local lines = {}
      for i = 1, 100000 do lines[i] = string.format("c%08d,region%03d", i, i % 250) end
      local body = table.concat(lines, "\n") .. "\n" -- 2 MB, under 2 MiB
      local plain = h.write_file(dir .. "/plain.csv", body)
      local quoted = h.write_file(dir .. "/quoted.csv", '"c",r\n' .. body)
      local small = h.write_file(dir .. "/small.csv", body:sub(1, 1000000))
      local function tasks(path)
        return tonumber(gleam.flow():csv(path):explain { workers = 2 }:match("(%d+) tasks? reading csv"))
      end
      assert.are.equal(2, tasks(plain))
      assert.are.equal(1, tasks(quoted))
      assert.are.equal(1, tasks(small))
      assert.are.equal(100000, gleam.flow():csv(plain):count { workers = 2 })
    end)
  end)
end)

describe("a text file's tasks", function()
  -- Four a worker, of at least 1 MiB each, and a multiple of the workers
  -- once there are more than workers: the tasks are of equal size, and
  -- one over a multiple keeps a single worker busy at the end (8 MiB and
  -- 35 bytes on 2 workers made 9 tasks before).
  it("are four a worker, fewer for a small file, and a multiple of the workers", function()
    h.with_tmpdir(function(dir)
      local MiB = 1048576
      local function file(name, bytes)
        local line = string.rep("w", 99) .. "\n"
        local body = string.rep(line, math.floor(bytes / 100)) .. string.rep("x", bytes % 100)
        return h.write_file(dir .. "/" .. name, body)
      end
      local function tasks(path, workers)
        return tonumber(gleam.flow():text(path):explain { workers = workers }:match("(%d+) tasks? reading text"))
      end
      local odd = file("odd.txt", 8 * MiB + 35)
      assert.are.equal(8, tasks(odd, 2))
      assert.are.equal(4, tasks(odd, 1))
      local five = file("five.txt", 5 * MiB)
      assert.are.equal(6, tasks(five, 2))  -- 5 of 1 MiB, rounded up to 6
      assert.are.equal(6, tasks(five, 3))
      assert.are.equal(5, tasks(five, 8))  -- fewer than the workers: as they are
      assert.are.equal(1, tasks(file("half.txt", MiB / 2), 2))
      -- the rows are the file's, in order, however many tasks read it
      local want = gleam.flow():text(odd, { shards = 1 }):collect { workers = 1 }
      assert.are.same(want, gleam.flow():text(odd):collect { workers = 2 })
      assert.are.same(want, gleam.flow():text(odd):collect { workers = 3 })
    end)
  end)
end)

describe("csv", function()
  it("reads quoted fields, header and types = auto", function()
    local dir = h.tmpdir()
    local path = h.write_file(dir .. "/people.csv", table.concat {
      "id,name,score,note\r\n",
      '1,"Smith, Ann",3.5,"said ""hi"""\r\n',
      '2,bob,,"two\nlines"\r\n',
      '"3",cy,1e2,\r\n',
      "\r\n",
      "007,-,-12,9007199254740993\r\n",
      "4,dee,0.25,last", -- no final newline
    })
    local expected = {
      row(1, "Smith, Ann", 3.5, 'said "hi"'),
      row(2, "bob", nil, "two\nlines"),
      row("3", "cy", 100, nil),
      row("007", "-", -12, 9007199254740993LL),
      row(4, "dee", 0.25, "last"),
    }
    check(function(o) return gleam.flow():csv(path, with(o, { header = true, types = "auto" })) end,
      expected, true)
    -- Strings by default, empty fields too; the header is a row without header.
    local got = gleam.flow():csv(path):collect()
    h.assert_rows({
      row("id", "name", "score", "note"),
      row("1", "Smith, Ann", "3.5", 'said "hi"'),
      row("2", "bob", "", "two\nlines"),
      row("3", "cy", "1e2", ""),
      row("007", "-", "-12", "9007199254740993"),
      row("4", "dee", "0.25", "last"),
    }, got)
  end)

  it("reads tsv, and csv with another separator", function()
    local dir = h.tmpdir()
    local tsv = h.write_file(dir .. "/a.tsv", 'k\tv\na,b\t1\n"x\ty"\t-2.5\n')
    h.assert_rows({ row("a,b", 1), row("x\ty", -2.5) },
      gleam.flow():tsv(tsv, { header = true, types = "auto" }):collect())
    local semi = h.write_file(dir .. "/a.txt", 'a;"b;c"\n')
    h.assert_rows({ row("a", "b;c") }, gleam.flow():csv(semi, { sep = ";" }):collect())
  end)

  it("reads several files over any number of shards and workers", function()
    local dir = h.tmpdir()
    local expected = {}
    for f = 1, 5 do
      local lines = { "file,line,text" }
      for i = 1, f * 200 do
        lines[#lines + 1] = string.format('%d,%d,"l%d, f%d\n"', f, i, i, f)
        expected[#expected + 1] = row(f, i, string.format("l%d, f%d\n", i, f))
      end
      h.write_file(string.format("%s/part-%d.csv", dir, f), table.concat(lines, "\n") .. "\n")
    end
    h.write_file(dir .. "/part-6.csv", "") -- an empty file adds nothing
    check(function(o) return gleam.flow():csv(dir .. "/part-*.csv", with(o, { header = true, types = "auto" })) end,
      expected)
    -- Files keep their order in shard order, records theirs within a file.
    h.assert_rows(expected, gleam.flow():csv(dir .. "/part-*.csv", { header = true, types = "auto", shards = 3 })
      :collect { workers = 2 })
    -- And the count through a wide step.
    local counts = gleam.flow():csv(dir .. "/part-*.csv", { header = true, types = "auto" })
      :map(function(f) return f, 1 end)
      :reduce_by_key(gleam.fn.sum)
      :collect { workers = 3 }
    h.assert_same_rows({ row(1, 200), row(2, 400), row(3, 600), row(4, 800), row(5, 1000) }, counts)
  end)

  it("reads .gz files the same as the plain ones", function()
    local dir = h.tmpdir()
    local plain = h.write_file(dir .. "/d.csv", 'a,b\n1,"x\r\ny"\n2,z\n')
    local gz = gzip(plain, dir .. "/d.csv.gz")
    local o = { header = true, types = "auto" }
    h.assert_rows(gleam.flow():csv(plain, o):collect(), gleam.flow():csv(gz, o):collect())
    h.assert_rows({ row(1, "x\r\ny"), row(2, "z") }, gleam.flow():csv(gz, o):collect())
  end)

  it("skips and counts malformed records with on_error = skip", function()
    local dir = h.tmpdir()
    local path = h.write_file(dir .. "/bad.csv", 'a,1\n"b"x,2\nc,3\n"open,4\nd,5\n')
    -- Line 2 has text after a closing quote; the quote opened on line 4 is
    -- never closed, so reading resumes at line 5.
    check(function(o) return gleam.flow():csv(path, with(o, { on_error = "skip", types = "auto" })) end,
      { row("a", 1), row("c", 3), row("d", 5) }, true)
  end)
end)

describe("a malformed csv through the gleam executable", function()
  local files = { ["bad.csv"] = 'name,n\nok,1\n"quoted"junk,2\nfine,3\n' }

  it("fails the run naming the file and line", function()
    local job = [[
local gleam = require "gleam"
for _, r in ipairs(gleam.flow():csv("bad.csv", { header = true }):collect()) do print(r[1]) end
]]
    for _, w in ipairs { 1, 4 } do
      local res = h.run_job(job, { workers = w, files = files })
      assert.equals(1, res.status, res.stderr)
      assert.equals("", res.stdout)
      assert.truthy(res.stderr:find("^gleam: ") and res.stderr:find("csv: bad.csv:3: ", 1, true), res.stderr)
      local _, lines = res.stderr:gsub("\n", "")
      assert.equals(1, lines, res.stderr)
    end
  end)

  it("names the line a multi-line record starts on; tsv says tsv", function()
    local job = [[
local gleam = require "gleam"
gleam.flow():tsv("bad.tsv"):collect()
]]
    local res = h.run_job(job, { files = { ["bad.tsv"] = 'a\tb\n"two\nlines\tstill open\n' } })
    assert.equals(1, res.status, res.stderr)
    assert.truthy(res.stderr:find("tsv: bad.tsv:2: a quoted field is not closed", 1, true), res.stderr)
  end)

  it("with on_error = skip: the good rows, and a warning with the count", function()
    local job = [[
local gleam = require "gleam"
for _, r in ipairs(gleam.flow():csv("bad.csv", { header = true, on_error = "skip" }):collect()) do print(r[1]) end
]]
    local res = h.run_job(job, { workers = 2, files = files })
    assert.equals(0, res.status, res.stderr)
    assert.equals("ok\nfine\n", res.stdout)
    assert.truthy(res.stderr:find("skipped 1 malformed", 1, true), res.stderr)
  end)
end)

describe("text on .gz files", function()
  it("gives the lines of the plain file", function()
    local dir = h.tmpdir()
    local lines = {}
    for i = 1, 60000 do lines[i] = string.format("line %d %s", i, string.rep("x", i % 50)) end
    local plain = h.write_file(dir .. "/big.txt", table.concat(lines, "\n")) -- ~2.7 MB, no final newline
    local gz = gzip(plain, dir .. "/big.txt.gz")
    local want = gleam.flow():text(plain):collect { workers = 8 }
    assert.equals(60000, #want)
    check(function(o) return gleam.flow():text(gz, o) end, want, true)
    -- A glob over both: every line twice.
    local both = {}
    for i, r in ipairs(want) do both[i], both[#want + i] = r, r end
    h.assert_same_rows(both, gleam.flow():text(dir .. "/big.*"):collect { workers = 3 })
  end)

  it("fails on a corrupt .gz naming the file", function()
    local dir = h.tmpdir()
    local plain = h.write_file(dir .. "/a.txt", string.rep("some text\n", 10000))
    local gz = gzip(plain, dir .. "/a.txt.gz")
    local data = h.read_file(gz)
    h.write_file(gz, data:sub(1, math.floor(#data / 2)))
    local ok, err = pcall(function() return gleam.flow():text(gz):collect() end)
    assert.is_false(ok)
    assert.truthy(tostring(err):find("text: '" .. gz .. "': unexpected end of file", 1, true), err)
  end)
end)

describe("msgpack", function()
  it("reads back what save wrote, values and types exactly", function()
    local dir = h.tmpdir()
    local rows = {
      row(1, "a", 0.5, nil),
      row(-2, "", 1e300, true, false),
      row(9007199254740993LL, "x\ny", -0.0, { 1, 2, { k = "v" } }),
      row(nil, nil, nil),
    }
    gleam.flow():rows(rows, { shards = 2 }):save(dir .. "/out", { format = "msgpack" })
    check(function(o) return gleam.flow():msgpack(dir .. "/out/*", o) end, rows)
  end)

  it("fails on a truncated file naming the file and byte", function()
    local dir = h.tmpdir()
    gleam.flow():rows({ row(1, "abc"), row(2, "def") }):save(dir .. "/m.mpk", { format = "msgpack", single = true })
    local data = h.read_file(dir .. "/m.mpk")
    h.write_file(dir .. "/m.mpk", data:sub(1, #data - 1))
    local ok, err = pcall(function() return gleam.flow():msgpack(dir .. "/m.mpk"):collect() end)
    assert.is_false(ok)
    assert.truthy(tostring(err):find("msgpack: " .. dir .. "/m.mpk: malformed row at byte 6", 1, true), err)
  end)
end)

-- SQLite as the oracle ----------------------------------------------------------

-- Splits s on sep keeping empty pieces.
local function split(s, sep)
  local out, pos = {}, 1
  while true do
    local i = s:find(sep, pos, true)
    if not i then
      out[#out + 1] = s:sub(pos)
      return out
    end
    out[#out + 1] = s:sub(pos, i - 1)
    pos = i + #sep
  end
end

local function unhex(s)
  return (s:gsub("%x%x", function(x) return string.char(tonumber(x, 16)) end))
end

-- Returns a random field in CSV form: quoted when it must be, sometimes when
-- it need not be.
local function random_field()
  local pieces = { "a", "b", "z", "0", "42", " ", ",", '"', "\n", "\r\n", "\t", "é", "x y", "-1.5" }
  local n = math.random(0, 6)
  local t = {}
  for i = 1, n do t[i] = pieces[math.random(#pieces)] end
  local v = table.concat(t)
  if v == "" or v:find('[,"\r\n]') or math.random(4) == 1 then
    return '"' .. v:gsub('"', '""') .. '"'
  end
  return v
end

describe("csv against sqlite3 .import", function()
  it("gives the same field values", function()
    local dir = h.tmpdir()
    math.randomseed(20240611)
    local ncol = 4
    local lines = {}
    for i = 1, 3000 do
      local f = {}
      for c = 1, ncol do f[c] = random_field() end
      lines[i] = table.concat(f, ",") .. (math.random(2) == 1 and "\r\n" or "\n")
    end
    local csv = table.concat(lines):gsub("\r?\n$", "") -- and no final newline
    local path = h.write_file(dir .. "/r.csv", csv)

    local cols, hexes = {}, {}
    for c = 1, ncol do cols[c], hexes[c] = "c" .. c, "hex(c" .. c .. ")" end
    h.write_file(dir .. "/load.sql", table.concat({
      "CREATE TABLE t(" .. table.concat(cols, ",") .. ");",
      ".import --csv " .. path .. " t",
      "SELECT " .. table.concat(hexes, " || '|' || ") .. " FROM t ORDER BY rowid;",
    }, "\n") .. "\n")
    local out_path, err_path = dir .. "/sqlite.out", dir .. "/sqlite.err"
    assert(os.execute(string.format("sqlite3 :memory: < %s > %s 2> %s", h.quote(dir .. "/load.sql"),
      h.quote(out_path), h.quote(err_path))) == 0, h.read_file(err_path))
    assert.equals("", h.read_file(err_path))
    local oracle = {}
    for line in h.read_file(out_path):gmatch("([^\n]*)\n") do
      local r = { n = ncol }
      for c, x in ipairs(split(line, "|")) do r[c] = unhex(x) end
      oracle[#oracle + 1] = r
    end
    assert.equals(3000, #oracle)

    h.assert_rows(oracle, gleam.flow():csv(path):collect { workers = 2 })
    -- The same file gzipped.
    h.assert_rows(oracle, gleam.flow():csv(gzip(path, path .. ".gz")):collect())
  end)
end)

describe("csv with declared column types", function()
  it("converts each column as declared, strings past the list", function()
    local dir = h.tmpdir()
    local path = h.write_file(dir .. "/typed.csv", table.concat {
      "id,zip,amount,name,extra\n",
      '007,007,1.5,"x",9\n',
      '"12",010,2,7,\n',
      "3,,,z,1e2\n",
      "-0004,1,-0.25e1,w,x\n",
    })
    local expected = {
      row(7, "007", 1.5, "x", "9"),
      row(12, "010", 2, 7, ""),
      row(3, "", nil, "z", "1e2"),
      row(-4, "1", -2.5, "w", "x"),
    }
    check(function(o)
      return gleam.flow():csv(path, with(o, { header = true, types = { "integer", "string", "number", "auto" } }))
    end, expected, true)
  end)

  it("fails on a field that is not its declared type, naming file, line and field", function()
    local dir = h.tmpdir()
    local path = h.write_file(dir .. "/bad.csv", "1,a\n2,b\nx3,c\n4,d\n")
    local ok, err = pcall(function()
      return gleam.flow():csv(path, { types = { "integer" } }):count()
    end)
    assert.is_false(ok)
    assert.are.equal("csv: " .. path .. ":3: field 1 is not an integer: 'x3'", err)
    assert.are.equal(3, gleam.flow():csv(path, { types = { "number" }, on_error = "skip" }):count())
  end)

  it("refuses an unknown type name at the call", function()
    local ok, err = pcall(function() return gleam.flow():csv("x.csv", { types = { "int" } }) end)
    assert.is_false(ok)
    assert.truthy(err:find('types%[1%] must be "string", "integer", "number" or "auto"'), err)
  end)
end)
