/* lua_op.c: ops whose rows go through user Lua functions: a fused chain of
 * map/flatmap/filter steps, and reduce_by_key/reduce with a Lua combiner.
 *
 * C calls into the worker's Lua state once per batch (never per row): the
 * Lua side (gleam.worker) decodes the batch through the FFI, runs the user
 * functions in a loop LuaJIT can trace, and encodes its output rows into
 * op->out, a gl_buf it grows through the FFI. Lua never calls back into C
 * through the Lua API, so no C frame sits between a trace and its data. */
#include "agg.h"
#include "pool.h"
#include "task.h"

#include <lauxlib.h>
#include <lua.h>
#include <stdlib.h>

typedef struct luast {
    gl_agg *agg;
} luast;

/* Calls the function at the top of the stack with nargs arguments under
 * the worker's error handler; leaves nres results. */
static int call(gl_opr *op, int nargs, int nres)
{
    gl_worker *w = op->t->w;
    lua_State *L = w->L;
    int fn = lua_gettop(L) - nargs;
    lua_rawgeti(L, LUA_REGISTRYINDEX, w->ref_trace);
    lua_insert(L, fn);
    int rc = lua_pcall(L, nargs, nres, fn);
    lua_remove(L, fn);
    if (rc) {
        const char *msg = lua_tostring(L, -1);
        gl_err_set(&op->t->err, rc == LUA_ERRMEM ? GL_ENOMEM : GL_ETASK, "%s",
                   msg ? msg : "a Lua function failed with a non-string error");
        lua_pop(L, 1);
        return op->t->err.code;
    }
    return 0;
}

static int take_rows(gl_opr *op)
{
    lua_State *L = op->t->w->L;
    op->out_rows += (uint64_t)lua_tonumber(L, -1);
    lua_pop(L, 1);
    return 0;
}

static int lua_push(gl_opr *op, const uint8_t *rows, size_t len, uint64_t nrows)
{
    lua_State *L = op->t->w->L;
    lua_rawgeti(L, LUA_REGISTRYINDEX, op->ref_push);
    lua_pushlightuserdata(L, (void *)rows);
    lua_pushnumber(L, (lua_Number)len);
    lua_pushnumber(L, (lua_Number)nrows);
    int rc = call(op, 3, 1);
    if (rc)
        return rc;
    take_rows(op);
    return gl_op_flush(op, 0);
}

static int lua_finish(gl_opr *op)
{
    lua_State *L = op->t->w->L;
    for (;;) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, op->ref_finish);
        int rc = call(op, 0, 2);
        if (rc)
            return rc;
        int more = lua_toboolean(L, -1);
        lua_pop(L, 1);
        take_rows(op);
        if ((rc = gl_op_flush(op, 0)))
            return rc;
        if (!more)
            return 0;
    }
}

static void lua_destroy(gl_opr *op)
{
    lua_State *L = op->t->w->L;
    luaL_unref(L, LUA_REGISTRYINDEX, op->ref_push);
    luaL_unref(L, LUA_REGISTRYINDEX, op->ref_finish);
    luast *s = op->st;
    if (s && s->agg) {
        op->t->w->agg_keys = gl_agg_count(s->agg); /* the next combine's room (keys_ahead) */
        gl_agg_free(s->agg);
    }
    free(s);
    /* A task's closures and rows are garbage now; collect them between
     * tasks rather than in the middle of the next one. */
    lua_gc(L, LUA_GCSTEP, 0);
}

/* The key table, and what a key costs in Lua beside it: its value in an
 * array and, fused with a chain, its entry in a table of string keys
 * (with the tables' room to grow). */
#define LUA_KEY_BYTES 96
static size_t lua_held(gl_opr *op)
{
    luast *s = op->st;
    return gl_agg_bytes(s->agg) + (size_t)gl_agg_count(s->agg) * LUA_KEY_BYTES;
}

/* Keys a combine makes room for before it sees them, in its key table
 * and (worker.lua) its Lua tables: as many as the worker's last combine
 * ended with (the map tasks of a stage meet about as many keys each;
 * growing the tables from ~0 to ~85,000 keys, task after task, was 4% of
 * a Lua word count's instructions and 20% of its cache misses), within a
 * quarter of the op's share at ~200 bytes a key (the table's ~100 and
 * Lua's), so room made ahead never makes it emit. */
static uint32_t keys_ahead(const gl_opr *op)
{
    const gl_store *st = op->t->run->store;
    uint64_t most = st ? gl_store_op_share(st) / 4 / (100 + LUA_KEY_BYTES) : 0;
    return op->t->w->agg_keys < most ? op->t->w->agg_keys : (uint32_t)most;
}

int gl_op_lua_init(gl_opr *op)
{
    gl_worker *w = op->t->w;
    lua_State *L = w->L;
    op->ref_push = op->ref_finish = LUA_NOREF;
    luast *s = calloc(1, sizeof *s);
    if (!s)
        return gl_err_set(&op->t->err, GL_ENOMEM, "task: out of memory");
    op->st = s;
    op->destroy = lua_destroy;
    if (op->d->kind == GL_OP_AGG && !(s->agg = gl_agg_new(&op->d->key)))
        return gl_err_set(&op->t->err, GL_ENOMEM, "task: out of memory");
    const gl_buf *blob = &op->t->st->blob;
    lua_rawgeti(L, LUA_REGISTRYINDEX, w->ref_mod);
    lua_getfield(L, -1, "op_new");
    lua_remove(L, -2);
    lua_pushlightuserdata(L, blob->data);
    lua_pushnumber(L, (lua_Number)blob->len);
    lua_pushnumber(L, op->index);
    lua_pushlightuserdata(L, &op->out);
    uint32_t room = 0;
    if (s->agg) {
        room = keys_ahead(op);
        gl_agg_reserve(s->agg, room); /* a hint: out of memory here is not an error */
        lua_pushlightuserdata(L, s->agg);
    } else {
        lua_pushnil(L);
    }
    lua_pushnumber(L, room);
    int rc = call(op, 6, 3);
    if (rc)
        return rc;
    if (lua_type(L, -1) == LUA_TSTRING) {
        /* The chain only moves fields and adds constants (gleam.project):
         * C runs it, and no row goes through Lua. */
        size_t n;
        const char *spec = lua_tolstring(L, -1, &n);
        free(s);
        op->st = NULL;
        op->destroy = NULL;
        rc = gl_op_project_init(op, (const uint8_t *)spec, n);
        lua_pop(L, 3);
        return rc;
    }
    lua_pop(L, 1);
    op->ref_finish = luaL_ref(L, LUA_REGISTRYINDEX);
    op->ref_push = luaL_ref(L, LUA_REGISTRYINDEX);
    op->push = lua_push;
    op->finish = lua_finish;
    if (s->agg && !op->d->merge)
        op->held = lua_held;
    return 0;
}
