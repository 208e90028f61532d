/* lua_core.c: libgleam as a Lua C module. `require "gleam.core"` opens the
 * library into a Lua process (a plain luajit embedding gleam); the Lua side
 * then reaches the engine through the FFI (lua/gleam/core.lua). */
#include "gleam.h"

#include <lauxlib.h>
#include <lua.h>

const char *gleam_version(void) { return GLEAM_VERSION; }

int luaopen_gleam_core(lua_State *L)
{
    lua_newtable(L);
    lua_pushstring(L, GLEAM_VERSION);
    lua_setfield(L, -2, "version");
    return 1;
}
