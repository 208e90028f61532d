/* main.c: the `gleam` executable. The cluster daemons and their client
 * (`gleam master`, `gleam agent`, `gleam status`) are C and start here,
 * with no Lua state; `gleam executor` is C over the Lua state made below.
 * Every other command makes the driver's Lua state, points package.path at
 * gleam's Lua modules (next to the executable when installed, in the source
 * tree when run from a build), preloads the REPL's line editor
 * (gleam.lineedit, lineedit.c), and hands the command line to gleam.cli. */
#include "cluster.h"

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef GLEAM_SOURCE_LUA_DIR
#define GLEAM_SOURCE_LUA_DIR ""
#endif
#ifndef GLEAM_INSTALL_LUA_REL
#define GLEAM_INSTALL_LUA_REL "../share/lua/5.1"
#endif

int luaopen_gleam_lineedit(lua_State *L);

static int exists(const char *path) { return access(path, R_OK) == 0; }

/* Finds the directory holding gleam/init.lua; writes it to out. */
static int lua_dir(char *out, size_t max)
{
    char exe[PATH_MAX - 64];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = 0;
        char *slash = strrchr(exe, '/');
        if (slash) {
            *slash = 0;
            snprintf(out, max, "%s/%s", exe, GLEAM_INSTALL_LUA_REL);
            char probe[PATH_MAX + 32];
            snprintf(probe, sizeof probe, "%s/gleam/init.lua", out);
            if (exists(probe))
                return 0;
        }
    }
    snprintf(out, max, "%s", GLEAM_SOURCE_LUA_DIR);
    char probe[PATH_MAX + 32];
    snprintf(probe, sizeof probe, "%s/gleam/init.lua", out);
    return exists(probe) ? 0 : -1;
}

static int traceback(lua_State *L)
{
    const char *msg = lua_tostring(L, 1);
    luaL_traceback(L, L, msg ? msg : "(error object is not a string)", 1);
    return 1;
}

int main(int argc, char **argv)
{
    static const struct {
        const char *name;
        int (*main)(int, char **);
    } cmds[] = {{"master", gl_master_main}, {"agent", gl_agent_main}, {"status", gl_status_main}};
    for (size_t i = 0; argc > 1 && i < sizeof cmds / sizeof cmds[0]; i++) {
        if (!strcmp(argv[1], cmds[i].name))
            return cmds[i].main(argc - 1, argv + 1);
        if (argc == 3 && !strcmp(argv[1], "help") && !strcmp(argv[2], cmds[i].name)) {
            char *help[] = {argv[2], "--help", NULL};
            return cmds[i].main(2, help);
        }
    }
    char dir[PATH_MAX];
    if (lua_dir(dir, sizeof dir)) {
        fprintf(stderr, "gleam: cannot find gleam's Lua modules (gleam/init.lua)\n");
        return 1;
    }
    lua_State *L = luaL_newstate();
    if (!L) {
        fprintf(stderr, "gleam: cannot create a Lua state\n");
        return 1;
    }
    luaL_openlibs(L);
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "path");
    lua_pushfstring(L, "%s/?.lua;%s/?/init.lua;%s", dir, dir, lua_tostring(L, -1));
    lua_setfield(L, -3, "path");
    lua_pop(L, 1);
    lua_getfield(L, -1, "preload");
    lua_pushcfunction(L, luaopen_gleam_lineedit);
    lua_setfield(L, -2, "gleam.lineedit");
    lua_pop(L, 2);

    if (argc > 1 && !strcmp(argv[1], "executor")) {
        int rc = gl_executor_main(L, argc - 1, argv + 1);
        lua_close(L);
        return rc;
    }

    lua_pushcfunction(L, traceback);
    lua_getglobal(L, "require");
    lua_pushstring(L, "gleam.cli");
    int rc = 1;
    if (lua_pcall(L, 1, 1, 1)) {
        fprintf(stderr, "gleam: %s\n", lua_tostring(L, -1));
    } else {
        lua_getfield(L, -1, "main");
        lua_newtable(L);
        for (int i = 1; i < argc; i++) {
            lua_pushstring(L, argv[i]);
            lua_rawseti(L, -2, i);
        }
        if (lua_pcall(L, 1, 1, 1))
            fprintf(stderr, "gleam: internal error: %s\n", lua_tostring(L, -1));
        else
            rc = (int)lua_tointeger(L, -1);
    }
    fflush(stdout);
    lua_close(L);
    return rc;
}
