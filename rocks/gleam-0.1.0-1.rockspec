-- gleam as a LuaRocks rock: `require "gleam"` in any LuaJIT program, and
-- the `gleam` command. The cmake build type builds the C core with the
-- project's CMakeLists.txt, GLEAM_LUAROCKS=ON: the Lua modules go to the
-- rock's LUADIR, libgleam as gleam/core.so to its LIBDIR, and bin/gleam
-- carries the engine inside; no tests are built.
--
--   luarocks make                          from a checkout (gleam-scm-1.rockspec)
--   rocks/pack.sh && luarocks install gleam-<version>-1.src.rock
--
-- README.md, "Embedding in Lua (LuaRocks)", has the steps. The top-level
-- gleam-scm-1.rockspec and rocks/gleam-<version>-1.rockspec differ only in
-- `version` and `source` (spec/rock_spec.lua checks it).
rockspec_format = "3.0"
package = "gleam"
version = "0.1.0-1"
source = {
  -- The archive of the checkout that rocks/pack.sh makes and packs into the
  -- .src.rock, offline; replace with the release URL to publish.
  url = "gleam-0.1.0.tar.gz",
  dir = "gleam-0.1.0",
}
description = {
  summary = "Map/reduce and DAG engine: a C core, flows in LuaJIT, all cores",
  detailed = [[
A flow (read, map, reduce by key, join, sort, top, ...) is planned into stages
by a C engine and runs on worker threads, with user functions shipped as
LuaJIT bytecode and rows kept as msgpack bytes. `local gleam = require
"gleam"` runs flows from any LuaJIT program; the `gleam` command runs job
scripts.
]],
  labels = { "mapreduce", "dataflow", "luajit" },
}
supported_platforms = { "linux" }
-- LuaJIT, the Lua 5.1 ABI: the engine runs LuaJIT states on its worker
-- threads and the Lua side reaches C through the FFI, so PUC Lua will not do.
dependencies = { "lua ~> 5.1" }
-- Checked by LuaRocks before the build, so a missing library is reported by
-- name (Debian: libluajit-5.1-dev libuv1-dev liblmdb-dev zlib1g-dev
-- libedit-dev, the last for the gleam command's REPL); CMake then finds
-- them with pkg-config.
external_dependencies = {
  LUAJIT = { header = "luajit-2.1/luajit.h", library = "luajit-5.1" },
  LIBUV = { header = "uv.h", library = "uv" },
  LMDB = { header = "lmdb.h", library = "lmdb" },
  ZLIB = { header = "zlib.h", library = "z" },
  LIBEDIT = { header = "histedit.h", library = "edit" },
}
build = {
  type = "cmake",
  variables = {
    CMAKE_BUILD_TYPE = "RelWithDebInfo",
    CMAKE_INSTALL_PREFIX = "$(PREFIX)",
    CMAKE_INSTALL_BINDIR = "$(BINDIR)",
    GLEAM_LUAROCKS = "ON",
    GLEAM_TESTS = "OFF",
    GLEAM_LUA_DIR = "$(LUADIR)",
    GLEAM_LUA_CDIR = "$(LIBDIR)",
  },
}
