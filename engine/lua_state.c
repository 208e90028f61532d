/* lua_state.c: making a worker's LuaJIT state. The state loads
 * gleam.worker from the driver's package paths, so workers run the same
 * Lua code as the driver whether gleam runs from a build tree or an
 * installed prefix. */
#include "pool.h"

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

static void set_path(lua_State *L, const char *field, const char *value)
{
    if (!value || !*value)
        return;
    lua_getglobal(L, "package");
    lua_pushstring(L, value);
    lua_setfield(L, -2, field);
    lua_pop(L, 1);
}

int gl_lua_worker_open(gl_worker *w, const char *lua_path, const char *lua_cpath)
{
    lua_State *L = luaL_newstate();
    if (!L)
        return gl_err_set(&w->init, GL_ENOMEM, "worker %u: cannot create a Lua state", w->id);
    luaL_openlibs(L);
    set_path(L, "path", lua_path);
    set_path(L, "cpath", lua_cpath);
    lua_getglobal(L, "require");
    lua_pushstring(L, "gleam.worker");
    if (lua_pcall(L, 1, 1, 0)) {
        gl_err_set(&w->init, GL_EINVAL, "worker %u: cannot load gleam.worker: %s", w->id,
                   lua_tostring(L, -1) ? lua_tostring(L, -1) : "?");
        lua_close(L);
        return w->init.code;
    }
    lua_getfield(L, -1, "on_error");
    w->ref_trace = luaL_ref(L, LUA_REGISTRYINDEX);
    w->ref_mod = luaL_ref(L, LUA_REGISTRYINDEX);
    w->L = L;
    return 0;
}

void gl_lua_worker_close(gl_worker *w)
{
    if (w->L)
        lua_close(w->L);
    w->L = NULL;
}
