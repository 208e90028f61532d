/* test_api.c: the public C API (gleam.h) as a host uses it: engines, flows
 * from strings and files, typed rows, errors, and host mappers and
 * reducers in the row loop. Linked against the shared library, like a
 * host. Run under valgrind by ctest (valgrind_api): 100 flows in one
 * process must leak nothing. */
#include "gleam.h"
#include "test.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static gleam_engine *engine(unsigned workers)
{
    gleam_options o;
    gleam_options_init(&o);
    o.workers = workers;
    gleam_engine *e = NULL;
    gleam_error err;
    int rc = gleam_engine_new(&o, &e, &err);
    if (rc)
        fprintf(stderr, "engine: %s\n", err.message);
    return e;
}

static int run(gleam_engine *e, const char *chunk, gleam_rows **rows, gleam_error *err)
{
    return gleam_run_string(e, chunk, "test", 0, NULL, rows, err);
}

static bool bytes_eq(const gleam_value *v, const char *s, size_t n)
{
    return v->type == GLEAM_BYTES && v->as.bytes.len == n && !memcmp(v->as.bytes.data, s, n);
}

TEST(version)
{
    CHECK(!strcmp(gleam_version(), GLEAM_VERSION));
}

TEST(typed_rows)
{
    gleam_engine *e = engine(2);
    REQUIRE(e);
    gleam_rows *rows = NULL;
    gleam_error err = {0};
    int rc = run(e,
                 "local gleam = require 'gleam'\n"
                 "local ffi = require 'ffi'\n"
                 "return gleam.flow():rows({\n"
                 "  { n = 4, 1, nil, true, 'a\\0b' },\n"
                 "  { n = 3, -2^40, 0.5, ffi.new('uint64_t', 18446744073709551615ULL) },\n"
                 "  { n = 2, { 1, 'x', { 2 } }, { k = 'v' } },\n"
                 "  { n = 0 },\n"
                 "}, { shards = 3 })",
                 &rows, &err);
    REQUIRE(rc == 0);
    CHECK_EQ(gleam_rows_count(rows), 4);
    const gleam_value *f;
    size_t n;
    REQUIRE(gleam_rows_next(rows, &f, &n, &err) == 1);
    CHECK_EQ(n, 4);
    CHECK(f[0].type == GLEAM_INT && f[0].as.i == 1);
    CHECK(f[1].type == GLEAM_NIL);
    CHECK(f[2].type == GLEAM_BOOL && f[2].as.b);
    CHECK(bytes_eq(&f[3], "a\0b", 3));
    REQUIRE(gleam_rows_next(rows, &f, &n, &err) == 1);
    CHECK_EQ(n, 3);
    CHECK(f[0].type == GLEAM_INT && f[0].as.i == -(1LL << 40));
    CHECK(f[1].type == GLEAM_DOUBLE && f[1].as.d == 0.5);
    CHECK(f[2].type == GLEAM_UINT && f[2].as.u == UINT64_MAX);
    REQUIRE(gleam_rows_next(rows, &f, &n, &err) == 1);
    CHECK_EQ(n, 2);
    CHECK(f[0].type == GLEAM_ARRAY && f[0].as.list.n == 3);
    if (f[0].type == GLEAM_ARRAY && f[0].as.list.n == 3) {
        const gleam_value *it = f[0].as.list.items;
        CHECK(it[0].type == GLEAM_INT && it[0].as.i == 1);
        CHECK(bytes_eq(&it[1], "x", 1));
        CHECK(it[2].type == GLEAM_ARRAY && it[2].as.list.n == 1 && it[2].as.list.items[0].as.i == 2);
    }
    CHECK(f[1].type == GLEAM_MAP && f[1].as.list.n == 1);
    if (f[1].type == GLEAM_MAP && f[1].as.list.n == 1) {
        CHECK(bytes_eq(&f[1].as.list.items[0], "k", 1));
        CHECK(bytes_eq(&f[1].as.list.items[1], "v", 1));
    }
    REQUIRE(gleam_rows_next(rows, &f, &n, &err) == 1);
    CHECK_EQ(n, 0);
    CHECK(gleam_rows_next(rows, &f, &n, &err) == 0);
    CHECK(gleam_rows_next(rows, &f, &n, &err) == 0);
    gleam_rows_free(rows);
    gleam_engine_free(e);
}

TEST(no_dataset_no_rows)
{
    gleam_engine *e = engine(1);
    REQUIRE(e);
    gleam_rows *rows = NULL;
    gleam_error err;
    const char *args[] = {"x", "y"};
    REQUIRE(gleam_run_string(e, "assert(#arg == 2 and arg[2] == 'y' and select('#', ...) == 2)", "t", 2, args,
                             &rows, &err) == 0);
    const gleam_value *f;
    size_t n;
    CHECK(gleam_rows_next(rows, &f, &n, &err) == 0);
    CHECK_EQ(gleam_rows_count(rows), 0);
    gleam_rows_free(rows);
    gleam_engine_free(e);
}

TEST(errors_are_one_line_messages)
{
    gleam_engine *e = engine(2);
    REQUIRE(e);
    gleam_rows *rows = (gleam_rows *)1;
    gleam_error err = {0};
    CHECK(run(e, "local x = = 1", &rows, &err) == GLEAM_EJOB);
    CHECK(rows == NULL);
    CHECK(strstr(err.message, "test:1:") != NULL);
    CHECK(run(e,
              "local gleam = require 'gleam'\n"
              "return gleam.flow():rows({{'a', 1}, {'b', nil}})\n"
              "  :map(function(s, n) return s, n + 1 end)",
              &rows, &err) == GLEAM_EJOB);
    CHECK(strstr(err.message, "map (test:3)") != NULL);
    CHECK(strstr(err.message, "row (\"b\", nil)") != NULL);
    CHECK(strchr(err.message, '\n') == NULL);
    CHECK(run(e, "return require('gleam').flow():text('/no/such/dir/*.txt')", &rows, &err) == GLEAM_EJOB);
    CHECK(strstr(err.message, "no file matches '/no/such/dir/*.txt'") != NULL);
    CHECK(gleam_run_file(e, "/no/such/job.lua", 0, NULL, &rows, &err) == GLEAM_EJOB);
    CHECK(strstr(err.message, "/no/such/job.lua") != NULL);
    /* the engine still works after errors */
    REQUIRE(run(e, "return require('gleam').flow():range(10)", &rows, &err) == 0);
    CHECK_EQ(gleam_rows_count(rows), 10);
    gleam_rows_free(rows);
    gleam_engine_free(e);
}

TEST(run_file)
{
    char path[] = "/tmp/gleam-test-api-XXXXXX";
    int fd = mkstemp(path);
    REQUIRE(fd >= 0);
    const char *job = "local gleam = require 'gleam'\nreturn gleam.flow():range(tonumber(arg[1]))\n";
    CHECK(write(fd, job, strlen(job)) == (ssize_t)strlen(job));
    close(fd);
    gleam_engine *e = engine(2);
    REQUIRE(e);
    gleam_rows *rows = NULL;
    gleam_error err;
    const char *args[] = {"7"};
    REQUIRE(gleam_run_file(e, path, 1, args, &rows, &err) == 0);
    int64_t sum = 0;
    const gleam_value *f;
    size_t n;
    while (gleam_rows_next(rows, &f, &n, &err) == 1)
        sum += f[0].as.i;
    CHECK_EQ(sum, 28);
    gleam_rows_free(rows);
    gleam_engine_free(e);
    unlink(path);
}

/* ---- host functions ---- */

/* Emits (field 1 * k) for a number, fails on anything else. */
static int times(void *ud, const gleam_value *f, size_t n, gleam_emitter *out)
{
    int64_t k = *(int64_t *)ud;
    if (n < 1 || f[0].type != GLEAM_INT)
        return gleam_emit_error(out, "times needs an integer");
    gleam_value v = {.type = GLEAM_INT, .as.i = f[0].as.i * k};
    return gleam_emit(out, &v, 1);
}

/* Keeps even numbers (a filter: the row or nothing). */
static int even(void *ud, const gleam_value *f, size_t n, gleam_emitter *out)
{
    (void)ud;
    return n == 1 && f[0].type == GLEAM_INT && f[0].as.i % 2 == 0 ? gleam_emit(out, f, n) : 0;
}

/* Field-wise max of integers. */
static int imax(void *ud, const gleam_value *a, const gleam_value *b, size_t n, gleam_value *out)
{
    (void)ud;
    for (size_t i = 0; i < n; i++)
        out[i] = a[i].as.i >= b[i].as.i ? a[i] : b[i];
    return 0;
}

static int64_t three = 3;

TEST(register_rules)
{
    gleam_error err;
    CHECK(gleam_register_mapper("times", times, &three, &err) == 0);
    CHECK(gleam_register_mapper("times", times, &three, &err) == GLEAM_EINVAL);
    CHECK(strstr(err.message, "registered already") != NULL);
    CHECK(gleam_register_mapper("words", times, NULL, &err) == GLEAM_EINVAL);
    CHECK(gleam_register_mapper("bad name", times, NULL, &err) == GLEAM_EINVAL);
    CHECK(gleam_register_mapper("", times, NULL, &err) == GLEAM_EINVAL);
    CHECK(gleam_register_mapper("even", even, NULL, &err) == 0);
    CHECK(gleam_register_reducer("imax", imax, NULL, &err) == 0);
}

static int64_t sum_rows(gleam_engine *e, const char *chunk, int field)
{
    gleam_rows *rows = NULL;
    gleam_error err;
    if (run(e, chunk, &rows, &err)) {
        fprintf(stderr, "  %s\n", err.message);
        return -1;
    }
    int64_t sum = 0;
    const gleam_value *f;
    size_t n;
    while (gleam_rows_next(rows, &f, &n, &err) == 1)
        sum += (size_t)field < n ? f[field].as.i : 0;
    gleam_rows_free(rows);
    return sum;
}

TEST(host_functions_in_flows)
{
    gleam_engine *e = engine(2);
    REQUIRE(e);
    /* register_rules ran first (TEST_MAIN order) */
    CHECK_EQ(sum_rows(e, "local g = require 'gleam' return g.flow():range(100):map(g.fn.times)", 0), 3 * 5050);
    CHECK_EQ(sum_rows(e, "local g = require 'gleam' return g.flow():range(100):filter(g.fn.even)", 0), 2550);
    /* a reducer, map-side and after the shuffle, against a plain loop */
    int64_t best[7] = {0}, want = 0;
    for (int64_t x = 1; x <= 1000; x++)
        if ((x * 37) % 1001 > best[x % 7])
            best[x % 7] = (x * 37) % 1001;
    for (int i = 0; i < 7; i++)
        want += best[i];
    int64_t got = sum_rows(e,
                           "local g = require 'gleam'\n"
                           "return g.flow():range(1000, {shards = 4})\n"
                           "  :map(function(x) return x % 7, (x * 37) % 1001 end)\n"
                           "  :reduce_by_key(g.fn.imax, {shards = 3})",
                           1);
    CHECK_EQ(got, want);
    /* a failing mapper names the step, its message and the row */
    gleam_rows *rows = NULL;
    gleam_error err;
    CHECK(run(e, "local g = require 'gleam' return g.flow():rows({{1}, {'x'}}):map(g.fn.times)", &rows, &err) ==
          GLEAM_EJOB);
    CHECK(strstr(err.message, "times needs an integer") != NULL);
    CHECK(strstr(err.message, "row (\"x\")") != NULL);
    /* a mapper where a reducer goes is refused when the flow is built */
    CHECK(run(e, "local g = require 'gleam' return g.flow():range(3):reduce(g.fn.times)", &rows, &err) ==
          GLEAM_EJOB);
    CHECK(strstr(err.message, "is a mapper, not a reducer") != NULL);
    gleam_engine_free(e);
}

TEST(hundred_flows_in_one_process)
{
    gleam_engine *e = engine(2);
    REQUIRE(e);
    for (int i = 0; i < 100; i++) {
        char chunk[256];
        snprintf(chunk, sizeof chunk,
                 "local g = require 'gleam'\n"
                 "return g.flow():range(%d):map(function(x) return x %% 3, x end):reduce_by_key(g.fn.sum)", i + 1);
        int64_t want = (int64_t)(i + 1) * (i + 2) / 2;
        if (!CHECK(sum_rows(e, chunk, 1) == want))
            break;
    }
    gleam_engine_free(e);
    /* engines come and go too */
    for (int i = 0; i < 5; i++) {
        gleam_engine *x = engine(1 + i % 2);
        REQUIRE(x);
        CHECK_EQ(sum_rows(x, "return require('gleam').flow():range(10)", 0), 55);
        gleam_engine_free(x);
    }
}

/* A budget far below the data: the rows go through LMDB in the named
 * directory, come back sorted, and a second engine cannot share it. */
TEST(memory_and_dir)
{
    char dir[] = "/tmp/gleam-api-store.XXXXXX";
    REQUIRE(mkdtemp(dir));
    char store[64], data[96];
    snprintf(store, sizeof store, "%s/store", dir);
    snprintf(data, sizeof data, "%s/data.mdb", store);
    gleam_options o;
    gleam_options_init(&o);
    CHECK(o.memory == 0 && o.dir == NULL);
    o.workers = 2;
    o.memory = 1 << 20;
    o.dir = store;
    gleam_engine *e = NULL;
    gleam_error err = {0};
    REQUIRE(gleam_engine_new(&o, &e, &err) == 0);
    gleam_rows *rows = NULL;
    REQUIRE(run(e,
                "local gleam = require 'gleam'\n"
                "return gleam.flow():range(1, 200000, {shards = 4})\n"
                "  :map(function(i) return (i * 7919) % 200003, string.rep('x', 20) end)\n"
                "  :sort_by(1)",
                &rows, &err) == 0);
    CHECK_EQ(gleam_rows_count(rows), 200000);
    const gleam_value *f;
    size_t n;
    int64_t last = -1, seen = 0;
    bool sorted = true;
    while (gleam_rows_next(rows, &f, &n, &err) == 1) {
        sorted &= f[0].type == GLEAM_INT && f[0].as.i > last;
        last = f[0].as.i;
        seen++;
    }
    CHECK(sorted);
    CHECK_EQ(seen, 200000);
    gleam_rows_free(rows);
    struct stat st;
    CHECK(stat(data, &st) == 0 && st.st_size > (4 << 20));

    /* The store opens with the first run. */
    gleam_engine *e2 = NULL;
    REQUIRE(gleam_engine_new(&o, &e2, &err) == 0);
    CHECK(run(e2, "return require('gleam').flow():range(1, 3)", &rows, &err) == GLEAM_EJOB);
    CHECK(strstr(err.message, "is in use by another gleam process") != NULL);
    gleam_engine_free(e2);
    gleam_engine_free(e);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0);
}

TEST_MAIN(T(version), T(typed_rows), T(no_dataset_no_rows), T(errors_are_one_line_messages), T(run_file),
          T(register_rules), T(host_functions_in_flows), T(hundred_flows_in_one_process), T(memory_and_dir))
