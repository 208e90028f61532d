-- The LuaRocks rock, made as README.md's "Embedding in Lua (LuaRocks)"
-- says: its marked sh blocks run as written in a copy of this checkout
-- (point LuaRocks at LuaJIT, `luarocks make --local`, rocks/pack.sh and
-- `luarocks install --tree` of the .src.rock). Then a plain luajit with only
-- that tree on its paths runs flows (word count over files, Lua closures on
-- worker threads) with the output `gleam run` gives, and so does the tree's
-- bin/gleam. Also: a missing library named by LuaRocks, and the rockspecs
-- kept in step.
--
-- Offline and contained: HOME is a temp dir, and LuaRocks' user config (which
-- the README's `luarocks config --scope user` commands then write) is a temp
-- file whose only server is a directory that does not exist, so a lookup
-- would fail at once instead of downloading.
local helpers = require "helpers"

local q = helpers.quote
local src = helpers.source_dir
local MARK = "<!-- test: spec/rock_spec.lua runs this block -->"

-- Runs a shell command; returns its stdout and stderr together, and whether
-- it exited 0 (LuaJIT's popen close does not tell). It starts as a user's
-- shell would: no Lua paths (ctest's point at the build tree) and no
-- sanitizer runtime (the rock is built without).
local function sh(cmd)
  local p = assert(io.popen("env -u LD_PRELOAD -u LUA_PATH -u LUA_CPATH -u LUA_INIT sh -c " .. q(cmd)
    .. " 2>&1; echo \"[exit $?]\""))
  local out = p:read("*a")
  p:close()
  local body, code = out:match("^(.*)%[exit (%d+)%]\n$")
  return body or out, code == "0"
end

local function project_version()
  local cml = assert(helpers.read_file(src .. "/CMakeLists.txt"))
  return assert(cml:match("project%(gleam VERSION ([%d.]+)"))
end

-- The README's sh blocks marked for this spec, in order.
local function readme_blocks()
  local readme = assert(helpers.read_file(src .. "/README.md"))
  local blocks = {}
  for block in readme:gmatch(MARK:gsub("%p", "%%%0") .. "\n```sh\n(.-)\n```") do
    blocks[#blocks + 1] = block
  end
  return blocks
end

local function count_of(s, part)
  local n, pos = 0, 1
  while true do
    local i, j = s:find(part, pos, true)
    if not i then return n end
    n, pos = n + 1, j + 1
  end
end

-- A job with Lua closures (shipped to the workers) over the files in arg.
local JOB = [[
local gleam = require "gleam"
gleam.flow("words")
  :text(arg)
  :flatmap(function(line) return line:gmatch("[A-Za-z]+") end)
  :map(function(w) return w:lower(), 1 end)
  :reduce_by_key(function(a, b) return a + b end)
  :top(8, { by = 2 })
  :printf("%s=%d\n")
  :run{ workers = 3 }
]]

describe("the gleam rock", function()
  local work, env, co, readme_out, readme_ok, tree, files

  -- The environment of a luajit that sees only tree t (no ";;": no defaults).
  local function tree_env(t)
    return string.format("env -u LUA_PATH -u LUA_CPATH LUA_PATH=%s LUA_CPATH=%s",
      q(t .. "/share/lua/5.1/?.lua;" .. t .. "/share/lua/5.1/?/init.lua"),
      q(t .. "/lib/lua/5.1/?.so"))
  end

  local function in_run(cmd)
    return sh("cd " .. q(work .. "/run") .. " && " .. cmd)
  end

  setup(function()
    work = helpers.tmpdir()
    assert(os.execute(string.format("mkdir %s %s", q(work .. "/home"), q(work .. "/run"))) == 0)
    local config = helpers.write_file(work .. "/luarocks-config.lua",
      string.format("rocks_servers = { %q }\n", work .. "/no-server"))
    local jobs = sh("nproc"):match("%d+") or "2"
    env = string.format("HOME=%s LUAROCKS_CONFIG=%s CMAKE_BUILD_PARALLEL_LEVEL=%s",
      q(work .. "/home"), q(config), jobs)

    -- A copy of the checkout (its files as rocks/pack.sh archives them).
    local out, ok = sh(string.format("cd %s && %s/rocks/pack.sh %s/gleam-scm-1.rockspec && unzip -p gleam-scm-1.src.rock gleam-scm.tar.gz | tar -xz",
      q(work), q(src), q(src)))
    assert(ok, out)
    co = work .. "/gleam-scm"

    local blocks = readme_blocks()
    assert(#blocks == 3, "README.md: expected 3 blocks marked for rock_spec, found " .. #blocks)
    readme_out, readme_ok = sh(string.format("cd %s && export %s && set -e\n%s",
      q(co), env, table.concat(blocks, "\n")))
    tree = work .. "/home/gleam-tree"
    helpers.write_file(work .. "/run/job.lua", JOB)
    files = q(src .. "/README.md") .. " " .. q(src .. "/examples/*.lua")
  end)

  teardown(helpers.cleanup)

  it("is made by the README's commands, whose word counts match gleam run's", function()
    assert.is_true(readme_ok, readme_out)
    local want, ok = sh(string.format("cd %s && %s run examples/wordcount.lua README.md", q(co), q(helpers.bin)))
    assert.is_true(ok, want)
    assert.truthy(want:match("^the\t%d+\n"), want)
    -- luajit and gleam from `luarocks make`, luajit on the installed .src.rock
    assert.are.equal(3, count_of(readme_out, want), readme_out)
    assert.truthy(readme_out:find("gleam scm-1 is now installed", 1, true), readme_out)
    assert.truthy(readme_out:find("gleam " .. project_version() .. "-1 is now installed", 1, true), readme_out)
  end)

  it("is packed from the rockspec of CMakeLists.txt's version, with the sources inside", function()
    local v = project_version()
    local out, ok = sh("unzip -Z1 " .. q(co .. "/gleam-" .. v .. "-1.src.rock"))
    assert.is_true(ok, out)
    assert.are.equal("gleam-" .. v .. "-1.rockspec\ngleam-" .. v .. ".tar.gz\n", out)
  end)

  it("installs the modules in the tree's LUADIR, gleam/core.so in its LIBDIR and bin/gleam", function()
    for _, f in ipairs { "/share/lua/5.1/gleam/init.lua", "/share/lua/5.1/gleam/cli.lua",
                         "/lib/lua/5.1/gleam/core.so", "/bin/gleam" } do
      assert.truthy(helpers.read_file(tree .. f), "missing " .. tree .. f)
    end
    local out, ok = sh(env .. " luarocks --tree " .. q(tree) .. " list --porcelain")
    assert.is_true(ok, out)
    assert.truthy(out:match("^gleam\t" .. project_version():gsub("%.", "%%.") .. "%-1\tinstalled"), out)
  end)

  it("is required by a plain luajit with only the tree on its paths", function()
    local out, ok = in_run(tree_env(tree) .. " luajit -e " .. q([[
local gleam = require "gleam"
print(package.searchpath("gleam", package.path))
print(package.searchpath("gleam.core", package.cpath))
print(gleam.version, gleam.flow():range(1000):filter(function(x) return x % 7 == 0 end):count())
]]))
    assert.is_true(ok, out)
    assert.are.equal(string.format("%s/share/lua/5.1/gleam/init.lua\n%s/lib/lua/5.1/gleam/core.so\n%s\t142\n",
      tree, tree, project_version()), out)
  end)

  it("runs Lua closures on worker threads from a plain luajit as `gleam run` does", function()
    local want, ok = in_run(q(helpers.bin) .. " run job.lua " .. files)
    assert.is_true(ok, want)
    assert.are.equal(8, select(2, want:gsub("\n", "")), want)
    local got
    got, ok = in_run(tree_env(tree) .. " luajit job.lua " .. files)
    assert.is_true(ok, got)
    assert.are.equal(want, got)
    -- and word count with the built-ins over the same files
    want, ok = in_run(string.format("%s run %s/examples/wordcount.lua %s", q(helpers.bin), q(src), files))
    assert.is_true(ok, want)
    got, ok = in_run(string.format("%s luajit %s/examples/wordcount.lua %s", tree_env(tree), q(src), files))
    assert.is_true(ok, got)
    assert.are.equal(want, got)
  end)

  it("installs the gleam command, which runs jobs with no Lua paths set", function()
    local want = in_run(q(helpers.bin) .. " run job.lua " .. files)
    for _, t in ipairs { tree, work .. "/home/.luarocks" } do
      local got, ok = in_run(string.format("env -u LUA_PATH -u LUA_CPATH %s run job.lua %s",
        q(t .. "/bin/gleam"), files))
      assert.is_true(ok, got)
      assert.are.equal(want, got)
      got, ok = sh(q(t .. "/bin/gleam") .. " --version")
      assert.is_true(ok, got)
      assert.truthy(got:match("^gleam " .. project_version():gsub("%.", "%%.") .. " "), got)
    end
  end)

  it("names a missing library before building", function()
    local out, ok = sh(string.format("%s luarocks --tree %s install %s LIBUV_DIR=%s", env,
      q(work .. "/tree-missing"), q(co .. "/gleam-" .. project_version() .. "-1.src.rock"),
      q(work .. "/nowhere")))
    assert.is_false(ok, out)
    assert.truthy(out:match("Could not find header file for LIBUV"), out)
    assert.is_nil(helpers.read_file(work .. "/tree-missing/bin/gleam"))
  end)

  it("keeps gleam-scm-1.rockspec and rocks/gleam-<version>-1.rockspec alike but for version and source", function()
    local function body(path)
      local s = assert(helpers.read_file(path), path)
      return (s:gsub('\nversion = "[^"]*"', '\nversion = V'):gsub('\n  url = "[^"]*"', '\n  url = U')
        :gsub('\n  dir = "[^"]*"', '\n  dir = D'))
    end
    local v = project_version()
    local versioned = src .. "/rocks/gleam-" .. v .. "-1.rockspec"
    assert.are.equal(body(versioned), body(src .. "/gleam-scm-1.rockspec"))
    local s = helpers.read_file(versioned)
    assert.truthy(s:find('\nversion = "' .. v .. '-1"', 1, true), versioned .. " names another version")
    assert.truthy(s:find('url = "gleam-' .. v .. '.tar.gz"', 1, true), versioned .. ": source.url")
  end)
end)
