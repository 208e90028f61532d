-- An installed gleam finds its own Lua modules and library: `gleam run`
-- from any directory with no LUA_PATH set, and `require "gleam"` from a
-- plain luajit pointed at the prefix. C hosts find it too: gleam.pc for
-- pkg-config and lib/cmake/gleam for find_package(gleam), both working from
-- wherever the prefix is (`cmake --install --prefix` into a temp dir here).
local build = os.getenv("GLEAM_BUILD_DIR")
local src = os.getenv("GLEAM_SOURCE_DIR") or "."

local function q(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

-- Runs a shell command; returns its stdout and stderr together, and whether
-- it exited 0 (LuaJIT's popen close does not tell). In the sanitizer build
-- ctest preloads the ASan runtime, which the installed library then needs.
local function sh(cmd)
  local p = assert(io.popen("sh -c " .. q(cmd) .. " 2>&1; echo \"[exit $?]\""))
  local out = p:read("*a")
  p:close()
  local body, code = out:match("^(.*)%[exit (%d+)%]\n$")
  return body or out, code == "0"
end

local function write(path, text)
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
end

local function project_version()
  local f = assert(io.open(src .. "/CMakeLists.txt"))
  local v = f:read("*a"):match("project%(gleam VERSION ([%d.]+)")
  f:close()
  return assert(v)
end

-- A C host of the smallest kind: the library's version at run time and
-- the header's at compile time.
local HOST_C = [[
#include <gleam.h>
#include <stdio.h>
#include <string.h>

int main(void)
{
    printf("%s %s\n", gleam_version(), GLEAM_VERSION);
    return strcmp(gleam_version(), GLEAM_VERSION) != 0;
}
]]

describe("an installed gleam", function()
  local prefix, work

  setup(function()
    prefix = sh("mktemp -d"):gsub("%s+$", "")
    work = sh("mktemp -d"):gsub("%s+$", "")
    local out, ok = sh(string.format("cmake --install %s --prefix %s", q(build), q(prefix)))
    assert(ok, out)
    write(work .. "/job.lua", [[
local gleam = require "gleam"
local n = gleam.flow():range(1000):filter(function(x) return x % 7 == 0 end):count()
io.write(n, " ", select("#", ...), "\n")
]])
    write(work .. "/host.c", HOST_C)
  end)

  teardown(function() sh("rm -rf " .. q(prefix) .. " " .. q(work)) end)

  it("runs a job from another directory with no Lua paths set", function()
    local out, ok = sh(string.format("cd %s && env -u LUA_PATH -u LUA_CPATH %s/bin/gleam run job.lua a b",
      q(work), q(prefix)))
    assert.is_true(ok, out)
    assert.are.equal("142 2\n", out)
  end)

  it("is required from a plain luajit through the prefix's paths", function()
    local out, ok = sh(string.format(
      "cd %s && LUA_PATH=%s LUA_CPATH=%s luajit job.lua x", q(work),
      q(prefix .. "/share/lua/5.1/?.lua;" .. prefix .. "/share/lua/5.1/?/init.lua;;"),
      q(prefix .. "/lib/lua/5.1/?.so;;")))
    assert.is_true(ok, out)
    assert.are.equal("142 1\n", out)
  end)

  it("answers --version", function()
    local out, ok = sh(q(prefix .. "/bin/gleam") .. " --version")
    assert.is_true(ok, out)
    assert.truthy(out:match("^gleam %d+%.%d+%.%d+"), out)
  end)

  describe("for C hosts", function()
    local pc_env

    setup(function()
      pc_env = "PKG_CONFIG_PATH=" .. q(prefix .. "/lib/pkgconfig")
    end)

    it("gives pkg-config the version", function()
      local out, ok = sh(pc_env .. " pkg-config --modversion gleam")
      assert.is_true(ok, out)
      assert.are.equal(project_version() .. "\n", out)
    end)

    it("builds a host with pkg-config against the installed libgleam.so", function()
      local out, ok = sh(string.format(
        "cd %s && %s && cc host.c $(pkg-config --cflags --libs gleam) -Wl,-rpath,$(pkg-config --variable=libdir gleam) -o host-pc",
        q(work), "export " .. pc_env))
      assert.is_true(ok, out)
      local v = project_version()
      out, ok = sh(q(work .. "/host-pc"))
      assert.is_true(ok, out)
      assert.are.equal(v .. " " .. v .. "\n", out)
      -- the library it runs with is the installed one
      out, ok = sh("ldd " .. q(work .. "/host-pc"))
      assert.is_true(ok, out)
      local lib = out:match("libgleam%.so%.%d+ => (%S+)")
      assert.truthy(lib, out)
      local real = sh("readlink -f " .. q(lib))
      local want = sh("readlink -f " .. q(prefix .. "/lib/libgleam.so.0"))
      assert.are.equal(want, real)
    end)

    it("builds a host with CMake's find_package(gleam)", function()
      local v = project_version()
      local proj = work .. "/cmake-host"
      assert(os.execute("mkdir -p " .. q(proj)) == 0)
      write(proj .. "/host.c", HOST_C)
      write(proj .. "/CMakeLists.txt", string.format([[
cmake_minimum_required(VERSION 3.18)
project(host C)
find_package(gleam %s REQUIRED)
message(STATUS "gleam ${gleam_VERSION} at ${gleam_DIR}")
add_executable(host host.c)
target_link_libraries(host PRIVATE gleam::gleam)
]], v))
      local out, ok = sh(string.format(
        "cmake -S %s -B %s/build -DCMAKE_PREFIX_PATH=%s && cmake --build %s/build",
        q(proj), q(proj), q(prefix), q(proj)))
      assert.is_true(ok, out)
      assert.truthy(out:find("gleam " .. v .. " at " .. prefix .. "/lib/cmake/gleam", 1, true), out)
      out, ok = sh(q(proj .. "/build/host"))
      assert.is_true(ok, out)
      assert.are.equal(v .. " " .. v .. "\n", out)
    end)

    it("refuses a find_package(gleam) version it is not compatible with", function()
      local proj = work .. "/cmake-too-new"
      assert(os.execute("mkdir -p " .. q(proj)) == 0)
      write(proj .. "/CMakeLists.txt", [[
cmake_minimum_required(VERSION 3.18)
project(host C)
find_package(gleam 99.0 QUIET)
if(gleam_FOUND)
  message(FATAL_ERROR "gleam 99.0 found")
endif()
]])
      local out, ok = sh(string.format("cmake -S %s -B %s/build -DCMAKE_PREFIX_PATH=%s",
        q(proj), q(proj), q(prefix)))
      assert.is_true(ok, out)
    end)
  end)
end)
