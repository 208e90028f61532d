/* api.c: the public C API (gleam.h) over the Lua API. An engine is a
 * LuaJIT state with `require "gleam"` loaded, found next to the library
 * (installed) or in the source tree (a build); a run loads the host's
 * chunk into it, and when the chunk returns a dataset, runs it and keeps
 * its output, which gleam_rows_next decodes row by row into typed values.
 * Errors are the messages the CLI would print. */
#define _GNU_SOURCE /* dladdr */
#include "gleam.h"

#include "cfn.h"
#include "store.h"

#include <dlfcn.h>
#include <lauxlib.h>
#include <limits.h>
#include <lua.h>
#include <lualib.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "row.h"

#ifndef GLEAM_SOURCE_LUA_DIR
#define GLEAM_SOURCE_LUA_DIR ""
#endif

struct gleam_engine {
    lua_State *L;
};

struct gleam_rows {
    gl_output *out; /* NULL: no rows */
    uint32_t part;
    gl_reader *rd;  /* over partition part */
    const gl_chunk *cur;
    const uint8_t *p; /* next row in cur */
    uint64_t left;    /* rows left in cur */
    gl_vals vals;
};

void gleam_options_init(gleam_options *o) { memset(o, 0, sizeof *o); }

/* The directory holding gleam/init.lua: share/lua/5.1 beside the installed
 * library, else the source tree of this build. */
static int lua_dir(char *out, size_t max)
{
    Dl_info info;
    if (dladdr((void *)gleam_version, &info) && info.dli_fname) {
        char lib[PATH_MAX - 64];
        snprintf(lib, sizeof lib, "%s", info.dli_fname);
        char *slash = strrchr(lib, '/');
        if (slash) {
            *slash = 0;
            const char *rel[] = {"../share/lua/5.1", "../../share/lua/5.1", "../../../share/lua/5.1"};
            for (size_t i = 0; i < sizeof rel / sizeof *rel; i++) {
                char probe[PATH_MAX + 96];
                snprintf(out, max, "%s/%s", lib, rel[i]);
                snprintf(probe, sizeof probe, "%s/gleam/init.lua", out);
                if (access(probe, R_OK) == 0)
                    return 0;
            }
        }
    }
    snprintf(out, max, "%s", GLEAM_SOURCE_LUA_DIR);
    char probe[PATH_MAX + 64];
    snprintf(probe, sizeof probe, "%s/gleam/init.lua", out);
    return access(probe, R_OK) == 0 ? 0 : -1;
}

/* Message handler: keeps the message (the CLI prints no traceback either). */
static int on_error(lua_State *L)
{
    if (!lua_isstring(L, 1)) {
        lua_getglobal(L, "tostring");
        lua_pushvalue(L, 1);
        lua_call(L, 1, 1);
    }
    return 1;
}

/* Calls the function below nargs arguments under on_error. */
static int call(lua_State *L, int nargs, int nres, gleam_error *err)
{
    int base = lua_gettop(L) - nargs;
    lua_pushcfunction(L, on_error);
    lua_insert(L, base);
    int rc = lua_pcall(L, nargs, nres, base);
    lua_remove(L, base);
    if (rc) {
        gl_api_error(err, rc == LUA_ERRMEM ? GLEAM_ENOMEM : GLEAM_EJOB, "%s", lua_tostring(L, -1));
        lua_pop(L, 1);
        return rc == LUA_ERRMEM ? GLEAM_ENOMEM : GLEAM_EJOB;
    }
    return 0;
}

int gleam_engine_new(const gleam_options *o, gleam_engine **out, gleam_error *err)
{
    *out = NULL;
    char dir[PATH_MAX];
    if (lua_dir(dir, sizeof dir))
        return gl_api_error(err, GLEAM_EIO, "gleam: cannot find gleam's Lua modules (gleam/init.lua)");
    gleam_engine *e = calloc(1, sizeof *e);
    if (!e || !(e->L = luaL_newstate())) {
        free(e);
        return gl_api_error(err, GLEAM_ENOMEM, "gleam: out of memory");
    }
    lua_State *L = e->L;
    luaL_openlibs(L);
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "path");
    lua_pushfstring(L, "%s/?.lua;%s/?/init.lua;%s", dir, dir, lua_tostring(L, -1));
    lua_setfield(L, -3, "path");
    lua_pop(L, 2);
    lua_getglobal(L, "require");
    lua_pushstring(L, "gleam");
    int rc = call(L, 1, 1, err);
    if (!rc) {
        lua_getfield(L, -1, "config");
        lua_pushnumber(L, o ? o->workers : 0);
        lua_setfield(L, -2, "workers");
        lua_pushnumber(L, o ? (lua_Number)o->memory : 0);
        lua_setfield(L, -2, "memory");
        if (o && o->dir) {
            lua_pushstring(L, o->dir);
            lua_setfield(L, -2, "dir");
        }
        lua_pop(L, 2);
        *out = e;
        return 0;
    }
    lua_close(L);
    free(e);
    return rc;
}

void gleam_engine_free(gleam_engine *e)
{
    if (!e)
        return;
    lua_close(e->L); /* finalizers free the worker pool and plans */
    free(e);
}

/* Runs the loaded chunk (on the stack) with the arguments; hands back the
 * rows of the dataset it returns. */
static int run_chunk(gleam_engine *e, int argc, const char *const *argv, gleam_rows **rows, gleam_error *err)
{
    lua_State *L = e->L;
    int top = lua_gettop(L) - 1;
    lua_newtable(L);
    for (int i = 0; i < argc; i++) {
        lua_pushstring(L, argv[i]);
        lua_rawseti(L, -2, i + 1);
    }
    lua_setglobal(L, "arg");
    for (int i = 0; i < argc; i++)
        lua_pushstring(L, argv[i]);
    int rc = call(L, argc, 1, err);
    if (rc) {
        lua_settop(L, top);
        return rc;
    }
    gleam_rows *r = calloc(1, sizeof *r);
    if (!r) {
        lua_settop(L, top);
        return gl_api_error(err, GLEAM_ENOMEM, "gleam: out of memory");
    }
    /* gleam._output(value) runs a dataset and returns its output as an
     * address, or nil for anything else. */
    lua_getglobal(L, "require");
    lua_pushstring(L, "gleam");
    lua_call(L, 1, 1);
    lua_getfield(L, -1, "_output");
    lua_remove(L, -2);
    lua_insert(L, -2);
    if ((rc = call(L, 1, 1, err))) {
        free(r);
        lua_settop(L, top);
        return rc;
    }
    if (lua_isnumber(L, -1))
        r->out = (gl_output *)(uintptr_t)lua_tonumber(L, -1);
    lua_settop(L, top);
    *rows = r;
    return 0;
}

int gleam_run_file(gleam_engine *e, const char *path, int argc, const char *const *argv, gleam_rows **rows,
                   gleam_error *err)
{
    *rows = NULL;
    if (luaL_loadfile(e->L, path)) {
        gl_api_error(err, GLEAM_EJOB, "%s", lua_tostring(e->L, -1));
        lua_pop(e->L, 1);
        return GLEAM_EJOB;
    }
    return run_chunk(e, argc, argv, rows, err);
}

int gleam_run_string(gleam_engine *e, const char *chunk, const char *name, int argc, const char *const *argv,
                     gleam_rows **rows, gleam_error *err)
{
    *rows = NULL;
    char chunkname[256];
    snprintf(chunkname, sizeof chunkname, "=%s", name ? name : "chunk");
    if (luaL_loadbuffer(e->L, chunk, strlen(chunk), chunkname)) {
        gl_api_error(err, GLEAM_EJOB, "%s", lua_tostring(e->L, -1));
        lua_pop(e->L, 1);
        return GLEAM_EJOB;
    }
    return run_chunk(e, argc, argv, rows, err);
}

int gleam_rows_next(gleam_rows *r, const gleam_value **fields, size_t *n, gleam_error *err)
{
    if (!r->out)
        return 0;
    while (!r->left) {
        const gl_chunk *c = NULL;
        while (r->part < r->out->nparts) {
            if (!r->rd && !(r->rd = gl_reader_new(r->out, r->part)))
                return gl_api_error(err, GLEAM_ENOMEM, "gleam: out of memory");
            if ((c = gl_reader_next(r->rd)))
                break;
            if (gl_reader_error(r->rd))
                return gl_api_error(err, GLEAM_EIO, "%s", gl_reader_error(r->rd));
            gl_reader_free(r->rd);
            r->rd = NULL;
            r->part++;
        }
        if (!c)
            return 0;
        r->cur = c;
        r->p = c->data;
        r->left = c->nrows;
    }
    const uint8_t *end = r->cur->data + r->cur->len;
    const uint8_t *row = r->p;
    r->p = gl_row_end(row, end);
    r->left--;
    uint32_t nf;
    const uint8_t *f = gl_row_fields(row, r->p, &nf);
    if (gl_vals_decode(&r->vals, f, r->p, nf, fields))
        return gl_api_error(err, GLEAM_ENOMEM, "gleam: out of memory");
    *n = nf;
    return 1;
}

uint64_t gleam_rows_count(const gleam_rows *r) { return r->out ? gl_output_rows(r->out) : 0; }

void gleam_rows_free(gleam_rows *r)
{
    if (!r)
        return;
    gl_reader_free(r->rd);
    gl_output_free(r->out);
    gl_vals_free(&r->vals);
    free(r);
}
