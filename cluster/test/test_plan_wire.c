/* test_plan_wire.c: plans through bytes and back (cluster/plan_wire.c).
 *
 * Plans built through the plan API with every kind of step parameter come
 * back step for step equal, and cut into the same stages (tasks, sources,
 * ops, sinks, the blob the Lua workers read) as the original. Truncated,
 * mutated and random bytes either decode to a plan the engine accepted or
 * are refused with a message, never read out of bounds; a host C function
 * is refused when encoding. */
#include "test.h"

#include "mpk.h"
#include "plan_wire.h"

static bool str_eq(const char *a, const char *b) { return (!a && !b) || (a && b && !strcmp(a, b)); }

static bool buf_eq(const gl_buf *a, const gl_buf *b)
{
    return a->len == b->len && (!a->len || !memcmp(a->data, b->data, a->len));
}

static bool step_eq(const gl_step *a, const gl_step *b)
{
    bool ok = a->kind == b->kind && a->input == b->input && str_eq(a->name, b->name) && str_eq(a->where, b->where) &&
              buf_eq(&a->fn, &b->fn) && a->builtin == b->builtin && a->has_key == b->has_key &&
              a->key.n == b->key.n && a->shards == b->shards && a->n == b->n && a->from == b->from &&
              a->to == b->to && a->desc == b->desc && a->how == b->how && a->header == b->header &&
              a->sep == b->sep && a->types == b->types && a->skip_bad == b->skip_bad && a->format == b->format &&
              a->single == b->single && a->hint_bytes == b->hint_bytes && a->hint_rows == b->hint_rows && a->persist == b->persist &&
              str_eq(a->cmd, b->cmd) && str_eq(a->path, b->path) && str_eq(a->coltypes, b->coltypes) &&
              str_eq(a->cfn, b->cfn) && a->ninputs == b->ninputs && a->npaths == b->npaths &&
              buf_eq(&a->rows, &b->rows) && a->nrows == b->nrows;
    for (uint32_t i = 0; ok && a->key.n != GL_KEY_ROW && i < a->key.n; i++)
        ok = a->key.f[i] == b->key.f[i];
    for (uint32_t i = 0; ok && i < a->ninputs; i++)
        ok = a->inputs[i] == b->inputs[i];
    for (uint32_t i = 0; ok && i < a->npaths; i++)
        ok = !strcmp(a->paths[i], b->paths[i]);
    return ok;
}

static bool plans_eq(const gl_plan *a, const gl_plan *b)
{
    if (gl_plan_nsteps(a) != gl_plan_nsteps(b))
        return false;
    for (int i = 0; i < gl_plan_nsteps(a); i++)
        if (!step_eq(gl_plan_get(a, i), gl_plan_get(b, i))) {
            fprintf(stderr, "  step %d differs\n", i);
            return false;
        }
    return true;
}

/* Rows: (k, v) for k in 0..n-1, v = k * 10. */
static void add_rows(gl_plan *p, int id, int n)
{
    gl_buf b = {0};
    for (int k = 0; k < n; k++)
        if (gl_mpk_put_array(&b, 2) || gl_mpk_put_int(&b, k % 7) || gl_mpk_put_int(&b, k * 10))
            abort();
    if (gl_plan_add_rows(p, id, b.data, b.len, (uint64_t)n))
        abort();
    gl_buf_free(&b);
}

#define OK(e) REQUIRE((e) >= 0)

/* A plan using every parameter the API has; *target: a sink-ready step. */
static gl_plan *rich_plan(int *target)
{
    gl_plan *p = gl_plan_new();
    int rows = gl_plan_step(p, GL_STEP_ROWS, -1, "rows", "job.lua:1");
    add_rows(p, rows, 50);
    int range = gl_plan_step(p, GL_STEP_RANGE, -1, "range", "job.lua:2");
    gl_plan_set_int(p, range, GL_P_FROM, -5);
    gl_plan_set_int(p, range, GL_P_TO, INT64_MAX / 3);
    gl_plan_set_int(p, range, GL_P_SHARDS, 3);
    int text = gl_plan_step(p, GL_STEP_TEXT, -1, "text", "job.lua:3");
    gl_plan_add_path(p, text, "data/*.txt");
    gl_plan_add_path(p, text, "more/a b.txt");
    int csv = gl_plan_step(p, GL_STEP_CSV, -1, "csv", "job.lua:4");
    gl_plan_add_path(p, csv, "t.tsv");
    gl_plan_set_int(p, csv, GL_P_SEP, '\t');
    gl_plan_set_int(p, csv, GL_P_HEADER, 1);
    gl_plan_set_int(p, csv, GL_P_TYPES, 1);
    gl_plan_set_int(p, csv, GL_P_SKIP_BAD, 1);
    gl_plan_set_str(p, csv, GL_S_TYPES, "sina");
    int map = gl_plan_step(p, GL_STEP_MAP, rows, "map", "job.lua:5");
    const uint8_t fn[] = {0x1b, 'L', 'J', 2, 0, 0xff, 0x00, 0x80}; /* opaque to the engine */
    gl_plan_set_fn(p, map, fn, sizeof fn);
    int words = gl_plan_step(p, GL_STEP_FLATMAP, map, "flatmap", "job.lua:6");
    gl_plan_set_builtin(p, words, GL_FN_WORDS);
    int red = gl_plan_step(p, GL_STEP_REDUCE_BY_KEY, map, "reduce_by_key", "job.lua:7");
    gl_plan_set_builtin(p, red, GL_FN_SUM);
    uint32_t k1[] = {1};
    gl_plan_set_key(p, red, k1, 1);
    gl_plan_set_int(p, red, GL_P_SHARDS, 4);
    int sel = gl_plan_step(p, GL_STEP_SELECT, red, "select", "job.lua:8");
    uint32_t k2[] = {2, 1, 2};
    gl_plan_set_key(p, sel, k2, 3); /* select may repeat a field */
    int sort = gl_plan_step(p, GL_STEP_SORT, sel, "sort_by", "job.lua:9");
    gl_plan_set_key(p, sort, k1, 1);
    gl_plan_set_int(p, sort, GL_P_DESC, 1);
    int dist = gl_plan_step(p, GL_STEP_DISTINCT, range, "distinct", "job.lua:10");
    gl_plan_set_key(p, dist, NULL, GL_KEY_ROW);
    int grp = gl_plan_step(p, GL_STEP_GROUP, rows, "group_by_key", "job.lua:11");
    gl_plan_set_key(p, grp, NULL, 0);
    int join = gl_plan_step(p, GL_STEP_JOIN, map, "join", "job.lua:12");
    gl_plan_add_input(p, join, red);
    gl_plan_set_int(p, join, GL_P_HOW, GL_JOIN_OUTER);
    gl_plan_set_int(p, join, GL_P_HINT_BYTES, 1 << 30);
    gl_plan_set_int(p, join, GL_P_HINT_ROWS, 12345);
    /* persisted: ends its stage, so the stages differ if it is lost */
    gl_plan_set_int(p, map, GL_P_PERSIST, GL_PERSIST_DISK);
    int uni = gl_plan_step(p, GL_STEP_UNION, map, "union", "job.lua:13");
    gl_plan_add_input(p, uni, dist);
    gl_plan_add_input(p, uni, join);
    int top = gl_plan_step(p, GL_STEP_TOP, uni, "top", "job.lua:14");
    gl_plan_set_int(p, top, GL_P_N, 10);
    int pipe = gl_plan_step(p, GL_STEP_PIPE, top, "pipe", "job.lua:15");
    gl_plan_set_str(p, pipe, GL_S_CMD, "sort -k2 | uniq -c");
    int save = gl_plan_step(p, GL_STEP_SAVE, pipe, "save", "job.lua:16");
    gl_plan_set_str(p, save, GL_S_PATH, "/tmp/out dir");
    gl_plan_set_int(p, save, GL_P_FORMAT, GL_FMT_CSV);
    gl_plan_set_int(p, save, GL_P_SINGLE, 1);
    *target = sort;
    return p;
}

static bool stages_eq(const gl_stages *a, const gl_stages *b)
{
    if (a->n != b->n)
        return false;
    for (uint32_t s = 0; s < a->n; s++) {
        const gl_stage *x = &a->v[s], *y = &b->v[s];
        if (x->ntasks != y->ntasks || x->src != y->src || x->src_step != y->src_step ||
            x->src_stage != y->src_stage || x->nops != y->nops || x->sink != y->sink || x->nparts != y->nparts ||
            x->sample != y->sample || !buf_eq(&x->blob, &y->blob))
            return false;
        for (uint32_t i = 0; i < x->nops; i++)
            if (x->ops[i].kind != y->ops[i].kind || x->ops[i].step != y->ops[i].step)
                return false;
    }
    return true;
}

TEST(roundtrip)
{
    int target;
    gl_plan *p = rich_plan(&target);
    REQUIRE(gl_plan_nsteps(p) == 16);
    gl_buf b = {0};
    gl_err err = {0};
    REQUIRE(gl_plan_encode(p, &b, &err) == 0);
    gl_plan *q = NULL;
    CHECK_EQ(gl_plan_decode(test_guarded(b.data, b.len), b.len, &q, &err), 0);
    if (q) {
        CHECK(plans_eq(p, q));
        /* and it encodes to the same bytes */
        gl_buf b2 = {0};
        CHECK(gl_plan_encode(q, &b2, &err) == 0 && buf_eq(&b, &b2));
        gl_buf_free(&b2);
        /* the stages of a wide flow come out the same */
        gl_stages sa = {0}, sb = {0};
        gl_err ea = {0}, eb = {0};
        int ra = gl_plan_stages(p, target, 3, &sa, &ea), rb = gl_plan_stages(q, target, 3, &sb, &eb);
        CHECK_EQ(ra, 0);
        CHECK_EQ(rb, 0);
        CHECK(sa.n >= 2); /* reduce_by_key and sort_by each end a stage */
        CHECK(!ra && !rb && stages_eq(&sa, &sb));
        gl_stages_free(&sa);
        gl_stages_free(&sb);
        gl_plan_free(q);
    }
    gl_plan_free(p);
    gl_buf_free(&b);
}

TEST(empty_plan)
{
    gl_plan *p = gl_plan_new(), *q = NULL;
    gl_buf b = {0};
    REQUIRE(gl_plan_encode(p, &b, NULL) == 0);
    CHECK_EQ(gl_plan_decode(b.data, b.len, &q, NULL), 0);
    CHECK(q && gl_plan_nsteps(q) == 0);
    gl_plan_free(q);
    gl_plan_free(p);
    gl_buf_free(&b);
}

TEST(host_function_refused)
{
    gl_plan *p = gl_plan_new();
    int r = gl_plan_step(p, GL_STEP_RANGE, -1, "range", "job.c:1");
    int m = gl_plan_step(p, GL_STEP_MAP, r, "map", "job.c:2");
    gl_plan_set_cfn(p, m, "my_mapper");
    gl_buf b = {0};
    gl_err err = {0};
    CHECK_EQ(gl_plan_encode(p, &b, &err), GL_EINVAL);
    CHECK_EQ(b.len, 0);
    CHECK(strstr(err.msg, "map (job.c:2): the host function 'my_mapper'") != NULL);
    gl_plan_free(p);
}

/* Every cut of the encoding is refused; mutations decode to a plan or are
 * refused; nothing reads past the end (guarded pages) or leaks (ASan). */
TEST(truncated_and_mutated)
{
    int target;
    gl_plan *p = rich_plan(&target);
    gl_buf b = {0};
    REQUIRE(gl_plan_encode(p, &b, NULL) == 0);
    for (size_t cut = 0; cut < b.len; cut++) {
        gl_plan *q = NULL;
        gl_err err = {0};
        int rc = gl_plan_decode(test_guarded(b.data, cut), cut, &q, &err);
        if (!CHECK(rc == GL_EINVAL && !q && !strncmp(err.msg, "plan: ", 6)))
            fprintf(stderr, "  cut at %zu: rc %d\n", cut, rc);
        gl_plan_free(q);
    }
    int decoded = 0;
    uint8_t *m = malloc(b.len);
    for (int round = 0; round < 3000; round++) {
        memcpy(m, b.data, b.len);
        for (int f = 0; f < 1 + (int)test_below(3); f++)
            m[test_below((uint32_t)b.len)] = (uint8_t)test_rand();
        gl_plan *q = NULL;
        gl_err err = {0};
        int rc = gl_plan_decode(test_guarded(m, b.len), b.len, &q, &err);
        CHECK(rc == 0 ? q != NULL : (rc == GL_EINVAL && !q && err.msg[0]));
        decoded += rc == 0;
        gl_plan_free(q);
    }
    CHECK(decoded > 0); /* some mutations only change a name or a value */
    for (int round = 0; round < 3000; round++) {
        size_t n = test_below(200);
        for (size_t i = 0; i < n; i++)
            m[i] = (uint8_t)test_rand();
        gl_plan *q = NULL;
        int rc = gl_plan_decode(test_guarded(m, n), n, &q, NULL);
        CHECK(rc == 0 || rc == GL_EINVAL);
        gl_plan_free(q);
    }
    free(m);
    gl_plan_free(p);
    gl_buf_free(&b);
}

/* What the engine refuses through the API, it refuses from bytes. */
TEST(engine_checks_apply)
{
    gl_plan *p = gl_plan_new();
    int c = gl_plan_step(p, GL_STEP_CSV, -1, "csv", "j:1");
    gl_plan_add_path(p, c, "x.csv");
    gl_buf b = {0};
    REQUIRE(gl_plan_encode(p, &b, NULL) == 0);
    /* the separator is the 8th of the step's ints: find ',' (0x2c) encoded
     * as a positive fixint and make it a newline, which set_int refuses */
    uint8_t *sep = memchr(b.data, ',', b.len);
    REQUIRE(sep != NULL);
    *sep = '\n';
    gl_plan *q = NULL;
    gl_err err = {0};
    CHECK_EQ(gl_plan_decode(b.data, b.len, &q, &err), GL_EINVAL);
    CHECK(strstr(err.msg, "step 0: the engine refused a parameter") != NULL);
    CHECK(q == NULL);
    /* a version from elsewhere */
    b.data[1] = 9;
    CHECK_EQ(gl_plan_decode(b.data, b.len, &q, &err), GL_EINVAL);
    CHECK(strstr(err.msg, "version 9") != NULL);
    gl_plan_free(p);
    gl_buf_free(&b);
}

TEST_MAIN(T(roundtrip), T(empty_plan), T(host_function_refused), T(truncated_and_mutated), T(engine_checks_apply))
