/* test_stage.c: stage tasks through bytes (cluster/stage.c).
 *
 * A task encoded as the driver does and run as the executor does gives
 * the rows the local engine gives for that task; a task from another kind
 * of LuaJIT is refused naming both; every truncation of a task and of a
 * result is refused with a message, never read out of bounds. */
#define _GNU_SOURCE
#include "test.h"

#include "driver.h"
#include "mpk.h"
#include "plan_wire.h"
#include "stage.h"
#include "task.h"

#include <unistd.h>

/* range(1, 100) in 2 shards: one stage of 2 source tasks. */
static gl_plan *plan(int *target)
{
    gl_plan *p = gl_plan_new();
    int r = gl_plan_step(p, GL_STEP_RANGE, -1, "range", "job.lua:1");
    gl_plan_set_int(p, r, GL_P_FROM, 1);
    gl_plan_set_int(p, r, GL_P_TO, 100);
    gl_plan_set_int(p, r, GL_P_SHARDS, 2);
    *target = r;
    return p;
}

static void encode(gl_buf *payload, gl_plan *p, int target, uint32_t task)
{
    gl_buf pb = {0};
    gl_err err = {0};
    char cwd[4096];
    REQUIRE(gl_plan_encode(p, &pb, &err) == 0);
    REQUIRE(getcwd(cwd, sizeof cwd));
    gl_stage_task t = {.plan = pb.data, .nplan = pb.len, .target = target, .workers = 2, .stage = 0,
                       .task = task, .dir = cwd, .ndir = strlen(cwd)};
    REQUIRE(gl_stage_task_encode(payload, &t) == 0);
    gl_buf_free(&pb);
}

/* Task `task` of the plan above, as the driver sends it. */
static void task_payload(gl_buf *payload, uint32_t task)
{
    int target;
    gl_plan *p = plan(&target);
    encode(payload, p, target, task);
    gl_plan_free(p);
}

static void part_bytes(const gl_output *o, uint32_t part, gl_buf *out)
{
    gl_reader *r = gl_reader_new(o, part);
    const gl_chunk *c;
    while ((c = gl_reader_next(r)))
        gl_buf_append(out, c->data, c->len);
    gl_reader_free(r);
}

TEST(runs_as_locally)
{
    int target;
    gl_plan *p = plan(&target);
    gl_err err = {0};
    gl_engine *e = gl_engine_new(2, 0, NULL, getenv("LUA_PATH"), NULL, &err);
    if (!e)
        fprintf(stderr, "  %s\n", err.msg);
    REQUIRE(e);
    gl_output *local = NULL;
    REQUIRE(gl_engine_run(e, p, target, NULL, &local, NULL, &err) == 0);
    gl_output *o = gl_output_new(local->nparts, local->ntasks, NULL, false);
    for (uint32_t i = 0; i < local->ntasks; i++) {
        gl_buf payload = {0}, result = {0};
        encode(&payload, p, target, i);
        CHECK(gl_stage_task_is(payload.data, payload.len));
        int rc = gl_stage_exec(payload.data, payload.len, 0, getenv("LUA_PATH"), NULL, &result, &err);
        CHECK_EQ(0, rc);
        if (rc)
            fprintf(stderr, "  %s\n", err.msg);
        gl_task t = {0};
        CHECK_EQ(0, gl_stage_result_apply(result.data, result.len, o, i, &t, &err));
        gl_buf_free(&t.sample);
        free(t.sample_off);
        gl_buf_free(&payload);
        gl_buf_free(&result);
    }
    for (uint32_t part = 0; part < local->nparts; part++) {
        gl_buf a = {0}, b = {0};
        part_bytes(local, part, &a);
        part_bytes(o, part, &b);
        CHECK(a.len > 0);
        CHECK_MEM(a.data, a.len, b.data, b.len);
        gl_buf_free(&a);
        gl_buf_free(&b);
    }
    CHECK_EQ(100u, gl_output_rows(o));
    gl_output_free(o);
    gl_output_free(local);
    gl_engine_free(e);
    gl_plan_free(p);
}

TEST(other_luajit_refused)
{
    gl_buf payload = {0}, result = {0};
    task_payload(&payload, 0);
    uint8_t *at = memmem(payload.data, payload.len, "LuaJIT", 6);
    REQUIRE(at);
    at[5] = 'X';
    gl_err err = {0};
    CHECK_EQ(GL_EINVAL, gl_stage_exec(payload.data, payload.len, 0, getenv("LUA_PATH"), NULL, &result, &err));
    char mine[128];
    gl_stage_luajit(mine, sizeof mine);
    CHECK(strstr(err.msg, "executor: task refused: its bytecode is from LuaJIX"));
    CHECK(strstr(err.msg, mine));
    CHECK_EQ(0u, result.len);
    gl_buf_free(&payload);
}

TEST(truncations_refused)
{
    gl_buf payload = {0}, result = {0};
    task_payload(&payload, 1);
    gl_err err = {0};
    REQUIRE(gl_stage_exec(payload.data, payload.len, 0, getenv("LUA_PATH"), NULL, &result, &err) == 0);
    for (size_t n = 0; n < payload.len; n++) {
        /* a copy of exactly n bytes, so ASan sees a read past them */
        uint8_t *cut = malloc(n ? n : 1);
        memcpy(cut, payload.data, n);
        gl_buf out = {0};
        gl_err e = {0};
        CHECK(gl_stage_exec(cut, n, 0, getenv("LUA_PATH"), NULL, &out, &e) != 0);
        CHECK(e.msg[0] != 0);
        gl_buf_free(&out);
        free(cut);
    }
    gl_output *o = gl_output_new(2, 2, NULL, false);
    for (size_t n = 0; n < result.len; n++) {
        uint8_t *cut = malloc(n ? n : 1);
        memcpy(cut, result.data, n);
        gl_task t = {0};
        gl_err e = {0};
        CHECK(gl_stage_result_apply(cut, n, o, 1, &t, &e) != 0);
        gl_buf_free(&t.sample);
        free(t.sample_off);
        free(cut);
    }
    gl_output_free(o);
    /* a result for another number of partitions */
    o = gl_output_new(3, 2, NULL, false);
    gl_task t = {0};
    CHECK_EQ(GL_EINVAL, gl_stage_result_apply(result.data, result.len, o, 1, &t, &err));
    gl_output_free(o);
    gl_buf_free(&payload);
    gl_buf_free(&result);
}

TEST_MAIN(T(runs_as_locally), T(other_luajit_refused), T(truncations_refused))
