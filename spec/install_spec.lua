-- An installed gleam finds its own Lua modules and library: `gleam run`
-- from any directory with no LUA_PATH set, and `require "gleam"` from a
-- plain luajit pointed at the prefix.
local build = os.getenv("GLEAM_BUILD_DIR")
local src = os.getenv("GLEAM_SOURCE_DIR") or "."

local function sh(cmd)
  local p = assert(io.popen(cmd .. " 2>&1"))
  local out = p:read("*a")
  local ok, _, code = p:close()
  return out, ok == true or code == 0
end

describe("an installed gleam", function()
  local prefix, work

  setup(function()
    prefix = sh("mktemp -d"):gsub("%s+$", "")
    work = sh("mktemp -d"):gsub("%s+$", "")
    local out, ok = sh(string.format("cmake --install '%s' --prefix '%s'", build, prefix))
    assert(ok, out)
    local f = assert(io.open(work .. "/job.lua", "w"))
    f:write([[
local gleam = require "gleam"
local n = gleam.flow():range(1000):filter(function(x) return x % 7 == 0 end):count()
io.write(n, " ", select("#", ...), "\n")
]])
    f:close()
  end)

  teardown(function() sh("rm -rf '" .. prefix .. "' '" .. work .. "'") end)

  it("runs a job from another directory with no Lua paths set", function()
    local out, ok = sh(string.format("cd '%s' && env -u LUA_PATH -u LUA_CPATH '%s/bin/gleam' run job.lua a b",
      work, prefix))
    assert.is_true(ok, out)
    assert.are.equal("142 2\n", out)
  end)

  it("is required from a plain luajit through the prefix's paths", function()
    local out, ok = sh(string.format(
      "cd '%s' && LUA_PATH='%s/share/lua/5.1/?.lua;%s/share/lua/5.1/?/init.lua;;' LUA_CPATH='%s/lib/lua/5.1/?.so;;' luajit job.lua x",
      work, prefix, prefix, prefix))
    assert.is_true(ok, out)
    assert.are.equal("142 1\n", out)
  end)

  it("answers --version", function()
    local out, ok = sh(string.format("'%s/bin/gleam' --version", prefix))
    assert.is_true(ok, out)
    assert.truthy(out:match("^gleam %d+%.%d+%.%d+"), out)
  end)
end)
