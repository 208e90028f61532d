/* test_stage.c: stage tasks through bytes (cluster/stage.c).
 *
 * Tasks encoded as the driver does and run as the executor does give the
 * rows the local engine gives: a source stage, and a shuffle, whose tasks
 * fetch their input partitions from where the first stage's tasks left
 * them (here, outputs standing for the agents' shards, moved through the
 * stream code as chunk messages would be). A text source's tasks read the
 * files as the driver listed and cut them. A task from another kind of
 * LuaJIT is refused naming both; every truncation of a task and of a
 * result is refused with a message, never read out of bounds. */
#define _GNU_SOURCE
#include "test.h"

#include "driver.h"
#include "mpk.h"
#include "plan_wire.h"
#include "stage.h"
#include "stream.h"
#include "task.h"

#include <unistd.h>

/* range(1, 100) in 2 shards: one stage of 2 source tasks; with parts, a
 * partition into that many shards after it: a second stage. */
static gl_plan *plan(int *target, int parts)
{
    gl_plan *p = gl_plan_new();
    int r = gl_plan_step(p, GL_STEP_RANGE, -1, "range", "job.lua:1");
    gl_plan_set_int(p, r, GL_P_FROM, 1);
    gl_plan_set_int(p, r, GL_P_TO, 100);
    gl_plan_set_int(p, r, GL_P_SHARDS, 2);
    *target = r;
    if (parts) {
        uint32_t key = 1;
        *target = gl_plan_step(p, GL_STEP_PARTITION, r, "partition", "job.lua:2");
        gl_plan_set_int(p, *target, GL_P_SHARDS, parts);
        gl_plan_set_key(p, *target, &key, 1);
    }
    return p;
}

/* When not 0: the job whose kept shards encode's input is, as stage kept_as. */
static uint64_t kept_job;
static uint32_t kept_as;

/* Task `task` of stage `stage`, whose inputs are all held by agent 0. */
static void encode(gl_buf *payload, gl_plan *p, int target, uint32_t stage, uint32_t task)
{
    gl_buf pb = {0};
    gl_err err = {0};
    char cwd[4096];
    REQUIRE(gl_plan_encode(p, &pb, &err) == 0);
    REQUIRE(getcwd(cwd, sizeof cwd));
    gl_stages stages = {0};
    REQUIRE(gl_plan_stages(p, target, 2, &stages, &err) == 0);
    uint32_t holder[16] = {0};
    gl_stage_input in = {stage ? stage - 1 : 0, task, holder, stage ? stages.v[stage - 1].ntasks : 0, kept_job, kept_as};
    const char *agents[] = {"127.0.0.1:1"};
    gl_buf splits = {0};
    REQUIRE(gl_stage_splits_encode(&splits, &stages) == 0);
    gl_stage_task t = {.plan = pb.data, .nplan = pb.len, .splits = splits.data, .nsplits = splits.len,
                       .target = target, .workers = 2, .stage = stage, .task = task, .dir = cwd,
                       .ndir = strlen(cwd), .agents = agents, .nagents = 1, .inputs = &in, .ninputs = stage ? 1 : 0};
    REQUIRE(gl_stage_task_encode(payload, &t) == 0);
    gl_stages_free(&stages);
    gl_buf_free(&splits);
    gl_buf_free(&pb);
}

/* Task `task` of the one-stage plan, as the driver sends it. */
static void task_payload(gl_buf *payload, uint32_t task)
{
    int target;
    gl_plan *p = plan(&target, 0);
    encode(payload, p, target, 0, task);
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

/* Copies partition part of from (its one column) to cell (part, task) of
 * to, as a stream of pieces. */
static void stream(const gl_output *from, uint32_t part, gl_output *to, uint32_t task)
{
    gl_stream_out so;
    gl_stream_in si = {0};
    gl_err err = {0};
    REQUIRE(gl_stream_out_open(&so, from, part, &err) == 0);
    const uint8_t *p;
    size_t n;
    uint64_t nrows;
    while (gl_stream_out_next(&so, &p, &n, &nrows, &err) == 1)
        CHECK_EQ(0, gl_stream_in_put(&si, to, part, task, p, n, nrows, &err));
    CHECK(!gl_stream_in_partial(&si));
    gl_stream_out_close(&so);
    gl_stream_in_free(&si);
}

/* Runs every task of a plan of one or two stages as executors would, each
 * task's output kept apart as an agent keeps it, and compares the last
 * stage's partitions with local mode's. */
static void run_plan(int parts)
{
    int target;
    gl_plan *p = plan(&target, parts);
    gl_err err = {0};
    gl_engine *e = gl_engine_new(2, 0, NULL, getenv("LUA_PATH"), NULL, &err);
    if (!e)
        fprintf(stderr, "  %s\n", err.msg);
    REQUIRE(e);
    gl_output *local = NULL;
    REQUIRE(gl_engine_run(e, p, target, NULL, &local, NULL, &err) == 0);
    gl_stages stages = {0};
    REQUIRE(gl_plan_stages(p, target, 2, &stages, &err) == 0);
    gl_output *held[2][16] = {{0}}; /* [stage][task]: nparts x 1, as an agent holds them */
    for (uint32_t s = 0; s < stages.n; s++)
        for (uint32_t i = 0; i < stages.v[s].ntasks; i++) {
            gl_buf payload = {0}, result = {0};
            encode(&payload, p, target, s, i);
            CHECK(gl_stage_task_is(payload.data, payload.len));
            gl_stage_run *r = NULL;
            int rc = gl_stage_open(payload.data, payload.len, 0, &r, &err);
            REQUIRE(rc == 0);
            uint32_t nf, na;
            const gl_fetch_req *f = gl_stage_fetches(r, &nf);
            gl_stage_agents(r, &na);
            CHECK_EQ(s ? 1u : 0u, nf);
            CHECK_EQ(1u, na);
            for (uint32_t k = 0; k < nf; k++) {
                CHECK_EQ(stages.v[s - 1].ntasks, f[k].ntasks);
                for (uint32_t t = 0; t < f[k].ntasks; t++)
                    stream(held[s - 1][f[k].tasks[t]], f[k].part, f[k].into, f[k].tasks[t]);
            }
            rc = gl_stage_exec(r, getenv("LUA_PATH"), NULL, &err);
            CHECK_EQ(0, rc);
            if (rc)
                fprintf(stderr, "  %s\n", err.msg);
            REQUIRE(gl_stage_result(r, &result, &err) == 0);
            uint32_t stage, task;
            const gl_output *o = gl_stage_output(r, &stage, &task);
            CHECK_EQ(s, stage);
            CHECK_EQ(i, task);
            gl_output *h = held[s][i] = gl_output_new(o->nparts, 1, NULL, false);
            uint64_t rows[16], bytes[16];
            gl_task t = {0};
            CHECK_EQ(0, gl_stage_result_apply(result.data, result.len, o->nparts, rows, bytes, &t, &err));
            for (uint32_t part = 0; part < o->nparts; part++) {
                gl_buf b = {0};
                part_bytes(o, part, &b);
                CHECK_EQ(0, gl_output_append(h, part, 0, b.data, b.len, gl_output_part_rows(o, part), &err));
                CHECK_EQ(b.len, bytes[part]);
                CHECK_EQ(gl_output_part_rows(o, part), rows[part]);
                gl_buf_free(&b);
            }
            gl_buf_free(&t.sample);
            free(t.sample_off);
            gl_stage_close(r);
            gl_buf_free(&payload);
            gl_buf_free(&result);
        }
    uint32_t last = stages.n - 1;
    CHECK_EQ(parts ? 2u : 1u, stages.n);
    CHECK_EQ(local->nparts, stages.v[last].nparts);
    for (uint32_t part = 0; part < local->nparts; part++) {
        gl_buf a = {0}, b = {0};
        part_bytes(local, part, &a);
        for (uint32_t i = 0; i < stages.v[last].ntasks; i++)
            part_bytes(held[last][i], part, &b);
        CHECK(a.len > 0);
        CHECK_MEM(a.data, a.len, b.data, b.len);
        gl_buf_free(&a);
        gl_buf_free(&b);
    }
    CHECK_EQ(100u, gl_output_rows(local));
    for (uint32_t s = 0; s < stages.n; s++)
        for (uint32_t i = 0; i < stages.v[s].ntasks; i++)
            gl_output_free(held[s][i]);
    gl_stages_free(&stages);
    gl_output_free(local);
    gl_engine_free(e);
    gl_plan_free(p);
}

TEST(runs_as_locally) { run_plan(0); }

TEST(shuffles_as_locally) { run_plan(3); }

/* A text source's tasks read the files the driver listed, cut as it cut
 * them: a file that matches the glob only after the driver planned is not
 * read, and every truncation of such a task is refused. */
TEST(file_list_from_the_driver)
{
    char dir[256];
    REQUIRE(test_tmpdir(dir, sizeof dir, "stage"));
    char path[300], pattern[300];
    snprintf(path, sizeof path, "%s/a.txt", dir);
    snprintf(pattern, sizeof pattern, "%s/*.txt", dir);
    FILE *f = fopen(path, "w");
    REQUIRE(f);
    for (int i = 0; i < 3000; i++)
        fprintf(f, "line %d of a\n", i);
    fclose(f);
    gl_plan *p = gl_plan_new();
    int target = gl_plan_step(p, GL_STEP_TEXT, -1, "text", "job.lua:1");
    gl_plan_add_path(p, target, pattern);
    gl_plan_set_int(p, target, GL_P_SHARDS, 3);
    gl_buf payload[3] = {{0}};
    for (uint32_t i = 0; i < 3; i++)
        encode(&payload[i], p, target, 0, i);
    /* a second file, seen by any later listing */
    snprintf(path, sizeof path, "%s/b.txt", dir);
    REQUIRE((f = fopen(path, "w")));
    fprintf(f, "not to be read\n");
    fclose(f);
    uint64_t rows = 0;
    gl_err err = {0};
    for (uint32_t i = 0; i < 3; i++) {
        gl_stage_run *r = NULL;
        REQUIRE(gl_stage_open(payload[i].data, payload[i].len, 0, &r, &err) == 0);
        CHECK_EQ(0, gl_stage_exec(r, getenv("LUA_PATH"), NULL, &err));
        uint32_t stage, task;
        const gl_output *o = gl_stage_output(r, &stage, &task);
        rows += gl_output_rows(o);
        gl_stage_close(r);
    }
    CHECK_EQ(3000u, rows);
    for (size_t n = 0; n < payload[1].len; n += 7) {
        uint8_t *cut = malloc(n ? n : 1);
        memcpy(cut, payload[1].data, n);
        gl_stage_run *r = NULL;
        gl_err e = {0};
        CHECK(gl_stage_open(cut, n, 0, &r, &e) != 0);
        CHECK(r == NULL);
        free(cut);
    }
    for (uint32_t i = 0; i < 3; i++)
        gl_buf_free(&payload[i]);
    gl_plan_free(p);
    CHECK_EQ(0, test_rmtree(dir));
}

TEST(other_luajit_refused)
{
    gl_buf payload = {0};
    task_payload(&payload, 0);
    uint8_t *at = memmem(payload.data, payload.len, "LuaJIT", 6);
    REQUIRE(at);
    at[5] = 'X';
    gl_err err = {0};
    gl_stage_run *r = NULL;
    CHECK_EQ(GL_EINVAL, gl_stage_open(payload.data, payload.len, 0, &r, &err));
    CHECK(r == NULL);
    char mine[128];
    gl_stage_luajit(mine, sizeof mine);
    CHECK(strstr(err.msg, "executor: task refused: its bytecode is from LuaJIX"));
    CHECK(strstr(err.msg, mine));
    gl_buf_free(&payload);
}

TEST(truncations_refused)
{
    gl_buf payload = {0}, result = {0};
    int target;
    gl_plan *p = plan(&target, 3);
    encode(&payload, p, target, 1, 1); /* a task with an input */
    gl_plan_free(p);
    gl_err err = {0};
    gl_stage_run *r = NULL;
    REQUIRE(gl_stage_open(payload.data, payload.len, 0, &r, &err) == 0);
    REQUIRE(gl_stage_exec(r, getenv("LUA_PATH"), NULL, &err) == 0);
    REQUIRE(gl_stage_result(r, &result, &err) == 0);
    gl_stage_close(r);
    for (size_t n = 0; n < payload.len; n++) {
        /* a copy of exactly n bytes, so ASan sees a read past them */
        uint8_t *cut = malloc(n ? n : 1);
        memcpy(cut, payload.data, n);
        gl_err e = {0};
        r = NULL;
        CHECK(gl_stage_open(cut, n, 0, &r, &e) != 0);
        CHECK(r == NULL);
        CHECK(e.msg[0] != 0);
        free(cut);
    }
    uint64_t rows[3], bytes[3];
    for (size_t n = 0; n < result.len; n++) {
        uint8_t *cut = malloc(n ? n : 1);
        memcpy(cut, result.data, n);
        gl_task t = {0};
        gl_err e = {0};
        CHECK(gl_stage_result_apply(cut, n, 3, rows, bytes, &t, &e) != 0);
        gl_buf_free(&t.sample);
        free(t.sample_off);
        free(cut);
    }
    /* a result for another number of partitions */
    gl_task t = {0};
    CHECK_EQ(GL_EINVAL, gl_stage_result_apply(result.data, result.len, 2, rows, bytes, &t, &err));
    CHECK_EQ(0, gl_stage_result_apply(result.data, result.len, 3, rows, bytes, NULL, &err));
    gl_buf_free(&payload);
    gl_buf_free(&result);
}

/* An input kept from an earlier job is fetched by that job and the stage
 * it had there, into the input's own output. */
TEST(kept_input_fetched_by_its_job)
{
    int target;
    gl_plan *p = plan(&target, 3);
    gl_buf payload = {0};
    kept_job = 1ull << 60;
    kept_as = 7;
    encode(&payload, p, target, 1, 2);
    kept_job = 0;
    gl_stage_run *r = NULL;
    gl_err err = {0};
    REQUIRE(gl_stage_open(payload.data, payload.len, 0, &r, &err) == 0);
    uint32_t nf;
    const gl_fetch_req *f = gl_stage_fetches(r, &nf);
    REQUIRE(nf == 1);
    CHECK(f[0].job == 1ull << 60 && f[0].stage == 7 && f[0].part == 2 && f[0].agent == 0);
    CHECK(f[0].into != NULL && f[0].ntasks == 2);
    gl_stage_close(r);
    gl_buf_free(&payload);
    gl_plan_free(p);
}

TEST_MAIN(T(runs_as_locally), T(shuffles_as_locally), T(file_list_from_the_driver), T(other_luajit_refused),
          T(truncations_refused), T(kept_input_fetched_by_its_job))
