/* test_plan.c: the planner (plan.c): which steps fuse into one op, where
 * wide steps cut stages, what sinks and task counts the stages get, and
 * which inputs it refuses. Sources are ranges and driver rows, so no file
 * is read. */
#include "test.h"

#include "mpk.h"
#include "plan.h"
#include "store.h"

#include <msgpack.h>

static int step(gl_plan *p, int kind, int input)
{
    static const char *names[] = {"text", "rows", "range", "map", "flatmap", "filter", "select",
                                  "reduce_by_key", "reduce", "sort_by", "top"};
    int id = gl_plan_step(p, kind, input, kind >= 0 && kind < GL_STEP_KINDS ? names[kind] : "?",
                          "test_plan.c:1");
    /* Lua steps carry a function; its bytes do not matter to the planner. */
    if (id >= 0 && (kind == GL_STEP_MAP || kind == GL_STEP_FLATMAP || kind == GL_STEP_FILTER ||
                    kind == GL_STEP_REDUCE_BY_KEY || kind == GL_STEP_REDUCE))
        gl_plan_set_fn(p, id, (const uint8_t *)"fn", 2);
    return id;
}

static int range(gl_plan *p, int64_t from, int64_t to)
{
    int id = step(p, GL_STEP_RANGE, -1);
    gl_plan_set_int(p, id, GL_P_FROM, from);
    gl_plan_set_int(p, id, GL_P_TO, to);
    return id;
}

static bool key_is(const gl_keyspec *k, uint32_t n, const uint32_t *f)
{
    if (k->n != n)
        return false;
    for (uint32_t i = 0; i < n; i++)
        if (k->f[i] != f[i])
            return false;
    return true;
}

#define KEY(k, ...) key_is(&(k), sizeof((uint32_t[]){__VA_ARGS__}) / sizeof(uint32_t), (uint32_t[]){__VA_ARGS__})

/* Plans target; on failure reports the planner's message. */
static int plan(const gl_plan *p, int target, uint32_t workers, gl_stages *out)
{
    gl_err err = {0};
    int rc = gl_plan_stages(p, target, workers, out, &err);
    if (rc)
        fprintf(stderr, "  planning %d: %s\n", target, err.msg);
    return rc;
}

/* What every plan keeps: stages in dependency order, each stage reading
 * the partitions of the one before, and a local sink at the end. */
static void check_shape(const gl_stages *s)
{
    for (uint32_t i = 0; i < s->n; i++) {
        const gl_stage *st = &s->v[i];
        CHECK_EQ(st->id, i);
        CHECK(st->ntasks >= 1);
        if (st->src == GL_SRC_STAGE) {
            CHECK(st->src_stage < i);
            if (st->src_stage < i)
                CHECK_EQ(st->ntasks, s->v[st->src_stage].nparts);
        }
        if (st->sink == GL_SINK_LOCAL)
            CHECK_EQ(st->nparts, st->ntasks);
        /* The Lua blob is one msgpack value, an array with an entry per Lua op. */
        uint32_t nlua = 0;
        for (uint32_t o = 0; o < st->nops; o++)
            nlua += st->ops[o].kind == GL_OP_LUA || (st->ops[o].kind == GL_OP_AGG && st->ops[o].mode == GL_AGG_LUA);
        gl_mpk_head h;
        CHECK(gl_mpk_skip(st->blob.data, st->blob.data + st->blob.len) == st->blob.data + st->blob.len);
        CHECK(gl_mpk_head_read(st->blob.data, st->blob.data + st->blob.len, &h) && h.cls == GL_MPK_ARRAY &&
              h.n == nlua);
    }
    if (s->n) {
        CHECK(s->v[s->n - 1].sink == GL_SINK_LOCAL);
        CHECK_EQ(s->v[s->n - 1].nparts, s->v[s->n - 1].ntasks);
    }
}

TEST(narrow_chain_fuses)
{
    gl_plan *p = gl_plan_new();
    REQUIRE(p);
    int src = range(p, 1, 100);
    int m1 = step(p, GL_STEP_MAP, src);
    int f = step(p, GL_STEP_FILTER, m1);
    int m2 = step(p, GL_STEP_MAP, f);
    REQUIRE(m2 >= 0);
    CHECK_EQ(gl_plan_nsteps(p), 4);
    gl_stages s;
    REQUIRE(plan(p, m2, 4, &s) == 0);
    check_shape(&s);
    REQUIRE(s.n == 1);
    const gl_stage *st = &s.v[0];
    CHECK(st->src == GL_SRC_RANGE && st->src_step == src);
    CHECK_EQ(st->ntasks, 4);
    REQUIRE(st->nops == 1);
    CHECK(st->ops[0].kind == GL_OP_LUA);
    CHECK_EQ(st->ops[0].step, m1);
    REQUIRE(st->ops[0].nsteps == 3);
    CHECK(st->ops[0].steps[0] == m1 && st->ops[0].steps[1] == f && st->ops[0].steps[2] == m2);
    CHECK(st->sink == GL_SINK_LOCAL && st->nparts == 4);

    /* The blob names the three steps of the chain, in order. */
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    size_t off = 0;
    REQUIRE(msgpack_unpack_next(&u, (const char *)st->blob.data, st->blob.len, &off) == MSGPACK_UNPACK_SUCCESS);
    CHECK(off == st->blob.len);
    CHECK(u.data.type == MSGPACK_OBJECT_ARRAY && u.data.via.array.size == 1);
    if (u.data.type == MSGPACK_OBJECT_ARRAY && u.data.via.array.size == 1) {
        const msgpack_object *entry = &u.data.via.array.ptr[0];
        const msgpack_object *steps = NULL;
        for (uint32_t i = 0; entry->type == MSGPACK_OBJECT_MAP && i < entry->via.map.size; i++) {
            const msgpack_object_kv *kv = &entry->via.map.ptr[i];
            if (kv->key.type == MSGPACK_OBJECT_STR && kv->key.via.str.size == 5 && !memcmp(kv->key.via.str.ptr, "steps", 5))
                steps = &kv->val;
        }
        CHECK(steps && steps->type == MSGPACK_OBJECT_ARRAY && steps->via.array.size == 3);
    }
    msgpack_unpacked_destroy(&u);
    gl_stages_free(&s);

    /* Planning a dataset in the middle stops there. */
    REQUIRE(plan(p, f, 4, &s) == 0);
    REQUIRE(s.n == 1 && s.v[0].nops == 1);
    CHECK_EQ(s.v[0].ops[0].nsteps, 2);
    gl_stages_free(&s);
    /* A source alone: one stage, no ops. */
    REQUIRE(plan(p, src, 4, &s) == 0);
    check_shape(&s);
    CHECK(s.n == 1 && s.v[0].nops == 0);
    gl_stages_free(&s);
    gl_plan_free(p);
}

TEST(select_splits_ops_not_stages)
{
    gl_plan *p = gl_plan_new();
    REQUIRE(p);
    int m1 = step(p, GL_STEP_MAP, range(p, 1, 10));
    int sel = step(p, GL_STEP_SELECT, m1);
    REQUIRE(gl_plan_set_key(p, sel, (const uint32_t[]){2, 1}, 2) == 0);
    int m2 = step(p, GL_STEP_MAP, sel);
    int f = step(p, GL_STEP_FILTER, m2);
    gl_stages s;
    REQUIRE(plan(p, f, 2, &s) == 0);
    check_shape(&s);
    REQUIRE(s.n == 1);
    const gl_stage *st = &s.v[0];
    REQUIRE(st->nops == 3);
    CHECK(st->ops[0].kind == GL_OP_LUA && st->ops[0].nsteps == 1 && st->ops[0].steps[0] == m1);
    CHECK(st->ops[1].kind == GL_OP_SELECT && st->ops[1].step == sel);
    CHECK(KEY(st->ops[1].key, 2, 1));
    CHECK(st->ops[2].kind == GL_OP_LUA && st->ops[2].nsteps == 2 && st->ops[2].steps[0] == m2 &&
          st->ops[2].steps[1] == f);
    gl_stages_free(&s);
    gl_plan_free(p);
}

TEST(words_builtin)
{
    static const uint8_t rows[] = {0x91, 0xa3, 'a', ' ', 'b', 0x91, 0xa1, 'c'};
    gl_plan *p = gl_plan_new();
    REQUIRE(p);
    int src = step(p, GL_STEP_ROWS, -1);
    REQUIRE(gl_plan_add_rows(p, src, rows, sizeof rows, 2) == 0);
    int m0 = step(p, GL_STEP_MAP, src);
    int w = step(p, GL_STEP_FLATMAP, m0);
    REQUIRE(gl_plan_set_builtin(p, w, GL_FN_WORDS) == 0);
    int m = step(p, GL_STEP_MAP, w);
    int fm = step(p, GL_STEP_FLATMAP, m); /* a Lua flatmap fuses like a map */
    gl_stages s;
    REQUIRE(plan(p, fm, 8, &s) == 0);
    check_shape(&s);
    REQUIRE(s.n == 1);
    const gl_stage *st = &s.v[0];
    CHECK(st->src == GL_SRC_ROWS && st->src_step == src);
    CHECK_EQ(st->ntasks, 2); /* no more tasks than rows */
    REQUIRE(st->nops == 3);
    CHECK(st->ops[0].kind == GL_OP_LUA && st->ops[0].nsteps == 1);
    CHECK(st->ops[1].kind == GL_OP_WORDS && st->ops[1].step == w);
    CHECK(st->ops[2].kind == GL_OP_LUA && st->ops[2].nsteps == 2 && st->ops[2].steps[1] == fm);
    gl_stages_free(&s);
    gl_plan_free(p);
}

/* Fusion stops at GL_FUSE_MAX steps per op. */
TEST(fusion_limit)
{
    gl_plan *p = gl_plan_new();
    REQUIRE(p);
    int id = range(p, 1, 10);
    for (int i = 0; i < GL_FUSE_MAX + 8; i++)
        id = step(p, GL_STEP_MAP, id);
    gl_stages s;
    REQUIRE(plan(p, id, 1, &s) == 0);
    check_shape(&s);
    REQUIRE(s.n == 1 && s.v[0].nops == 2);
    CHECK_EQ(s.v[0].ops[0].nsteps, GL_FUSE_MAX);
    CHECK_EQ(s.v[0].ops[1].nsteps, 8);
    CHECK_EQ(s.v[0].ops[1].steps[7], id);
    gl_stages_free(&s);
    gl_plan_free(p);
}

TEST(reduce_by_key_cuts_two_stages)
{
    static const struct {
        int builtin;
        enum gl_agg_mode combine, merge;
        int64_t shards;
        uint32_t nparts; /* workers is 5 */
    } cases[] = {
        {GL_FN_COUNT, GL_AGG_COUNT, GL_AGG_SUM, 3, 3},
        {GL_FN_SUM, GL_AGG_SUM, GL_AGG_SUM, 0, 5},
        {GL_FN_NONE, GL_AGG_LUA, GL_AGG_LUA, 7, 7},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        gl_plan *p = gl_plan_new();
        REQUIRE(p);
        int m = step(p, GL_STEP_MAP, range(p, 1, 1000));
        int r = step(p, GL_STEP_REDUCE_BY_KEY, m);
        REQUIRE(gl_plan_set_key(p, r, (const uint32_t[]){3, 2}, 2) == 0);
        REQUIRE(gl_plan_set_builtin(p, r, cases[c].builtin) == 0);
        if (cases[c].shards)
            REQUIRE(gl_plan_set_int(p, r, GL_P_SHARDS, cases[c].shards) == 0);
        gl_stages s;
        REQUIRE(plan(p, r, 5, &s) == 0);
        check_shape(&s);
        REQUIRE(s.n == 2);
        const gl_stage *a = &s.v[0], *b = &s.v[1];
        /* Combine beside the map, then a hash sink on the combined rows,
         * which lead with their key fields. A Lua combine takes the Lua
         * map in (its rows never encoded); a built-in one follows it. */
        const gl_opdesc *comb = &a->ops[a->nops - 1];
        if (cases[c].combine == GL_AGG_LUA) {
            REQUIRE(a->nops == 1);
            CHECK(comb->nsteps == 1 && comb->steps[0] == m);
        } else {
            REQUIRE(a->nops == 2);
            CHECK(a->ops[0].kind == GL_OP_LUA);
            CHECK(comb->nsteps == 0);
        }
        CHECK(comb->kind == GL_OP_AGG && comb->step == r && !comb->merge);
        CHECK(comb->mode == cases[c].combine);
        CHECK(KEY(comb->key, 3, 2));
        CHECK(a->sink == GL_SINK_HASH);
        CHECK_EQ(a->nparts, cases[c].nparts);
        CHECK(KEY(a->sink_key, 1, 2));
        /* Merge: one task per partition. */
        CHECK(b->src == GL_SRC_STAGE && b->src_stage == 0);
        CHECK_EQ(b->ntasks, cases[c].nparts);
        REQUIRE(b->nops == 1);
        CHECK(b->ops[0].kind == GL_OP_AGG && b->ops[0].merge && b->ops[0].step == r && !b->ops[0].nsteps);
        CHECK(b->ops[0].mode == cases[c].merge);
        CHECK(KEY(b->ops[0].key, 1, 2));
        CHECK(b->sink == GL_SINK_LOCAL && b->nparts == cases[c].nparts);
        gl_stages_free(&s);
        gl_plan_free(p);
    }
}

TEST(reduce_is_one_group)
{
    gl_plan *p = gl_plan_new();
    REQUIRE(p);
    int r = step(p, GL_STEP_REDUCE, range(p, 1, 100));
    gl_plan_set_builtin(p, r, GL_FN_SUM);
    gl_plan_set_int(p, r, GL_P_SHARDS, 9); /* no effect: one group, one partition */
    gl_stages s;
    REQUIRE(plan(p, r, 4, &s) == 0);
    check_shape(&s);
    REQUIRE(s.n == 2 && s.v[0].nops == 1 && s.v[1].nops == 1);
    CHECK(s.v[0].ops[0].kind == GL_OP_AGG && s.v[0].ops[0].key.n == 0 && s.v[0].ops[0].mode == GL_AGG_SUM);
    CHECK(s.v[0].sink == GL_SINK_HASH && s.v[0].nparts == 1 && s.v[0].sink_key.n == 0);
    CHECK(s.v[1].ntasks == 1 && s.v[1].ops[0].merge && s.v[1].ops[0].key.n == 0);
    gl_stages_free(&s);
    gl_plan_free(p);
}

TEST(top_two_stages)
{
    gl_plan *p = gl_plan_new();
    REQUIRE(p);
    int t = step(p, GL_STEP_TOP, range(p, 1, 100));
    REQUIRE(gl_plan_set_int(p, t, GL_P_N, 10) == 0);
    REQUIRE(gl_plan_set_int(p, t, GL_P_DESC, 1) == 0);
    REQUIRE(gl_plan_set_key(p, t, (const uint32_t[]){2}, 1) == 0);
    gl_stages s;
    REQUIRE(plan(p, t, 6, &s) == 0);
    check_shape(&s);
    REQUIRE(s.n == 2);
    for (int i = 0; i < 2; i++) {
        REQUIRE(s.v[i].nops == 1);
        const gl_opdesc *op = &s.v[i].ops[0];
        CHECK(op->kind == GL_OP_TOP && op->step == t && op->limit == 10 && op->desc);
        CHECK(KEY(op->key, 2));
    }
    CHECK_EQ(s.v[0].ntasks, 6);
    CHECK(s.v[0].sink == GL_SINK_HASH && s.v[0].nparts == 1);
    CHECK(s.v[1].src == GL_SRC_STAGE && s.v[1].ntasks == 1 && s.v[1].nparts == 1);
    gl_stages_free(&s);
    gl_plan_free(p);
}

TEST(sort_three_stages)
{
    for (int shards = 0; shards <= 4; shards += 4) {
        gl_plan *p = gl_plan_new();
        REQUIRE(p);
        int m = step(p, GL_STEP_MAP, range(p, 1, 100));
        int so = step(p, GL_STEP_SORT, m);
        REQUIRE(gl_plan_set_key(p, so, (const uint32_t[]){2, 1}, 2) == 0);
        REQUIRE(gl_plan_set_int(p, so, GL_P_DESC, 1) == 0);
        if (shards)
            REQUIRE(gl_plan_set_int(p, so, GL_P_SHARDS, shards) == 0);
        gl_stages s;
        REQUIRE(plan(p, so, 3, &s) == 0);
        check_shape(&s);
        REQUIRE(s.n == 3);
        uint32_t parts = shards ? (uint32_t)shards : 3;
        /* Sampled in place, kept locally ... */
        CHECK(s.v[0].sample);
        CHECK(s.v[0].nops == 1 && s.v[0].ops[0].kind == GL_OP_LUA);
        CHECK(s.v[0].sink == GL_SINK_LOCAL && s.v[0].nparts == s.v[0].ntasks);
        /* ... sent to ranges ... */
        CHECK(s.v[1].src == GL_SRC_STAGE && s.v[1].src_stage == 0 && s.v[1].nops == 0);
        CHECK(s.v[1].sink == GL_SINK_RANGE && s.v[1].nparts == parts);
        CHECK(KEY(s.v[1].sink_key, 2, 1) && s.v[1].sink_desc);
        CHECK(!s.v[1].sample);
        /* ... and each range sorted. */
        CHECK(s.v[2].src == GL_SRC_STAGE && s.v[2].src_stage == 1 && s.v[2].ntasks == parts);
        REQUIRE(s.v[2].nops == 1);
        CHECK(s.v[2].ops[0].kind == GL_OP_SORT && s.v[2].ops[0].step == so && s.v[2].ops[0].desc);
        CHECK(KEY(s.v[2].ops[0].key, 2, 1));
        gl_stages_free(&s);
        gl_plan_free(p);
    }
}

TEST(narrow_after_wide_joins_the_later_stage)
{
    gl_plan *p = gl_plan_new();
    REQUIRE(p);
    int r = step(p, GL_STEP_REDUCE_BY_KEY, range(p, 1, 100));
    gl_plan_set_builtin(p, r, GL_FN_COUNT);
    int m = step(p, GL_STEP_MAP, r);
    int f = step(p, GL_STEP_FILTER, m);
    int so = step(p, GL_STEP_SORT, f);
    int m2 = step(p, GL_STEP_MAP, so);
    int t = step(p, GL_STEP_TOP, m2);
    int m3 = step(p, GL_STEP_MAP, t);
    gl_stages s;
    REQUIRE(plan(p, m3, 2, &s) == 0);
    check_shape(&s);
    /* reduce_by_key: 2, sort_by: +2, top: +1 */
    REQUIRE(s.n == 5);
    REQUIRE(s.v[1].nops == 2);
    CHECK(s.v[1].ops[0].kind == GL_OP_AGG && s.v[1].ops[0].merge);
    CHECK(s.v[1].ops[1].kind == GL_OP_LUA && s.v[1].ops[1].nsteps == 2 && s.v[1].ops[1].steps[0] == m &&
          s.v[1].ops[1].steps[1] == f);
    CHECK(s.v[1].sample && s.v[1].sink == GL_SINK_LOCAL);
    CHECK(s.v[2].sink == GL_SINK_RANGE);
    REQUIRE(s.v[3].nops == 3);
    CHECK(s.v[3].ops[0].kind == GL_OP_SORT);
    CHECK(s.v[3].ops[1].kind == GL_OP_LUA && s.v[3].ops[1].steps[0] == m2);
    CHECK(s.v[3].ops[2].kind == GL_OP_TOP && !s.v[3].ops[2].desc);
    CHECK(s.v[3].sink == GL_SINK_HASH && s.v[3].nparts == 1);
    REQUIRE(s.v[4].nops == 2);
    CHECK(s.v[4].ops[0].kind == GL_OP_TOP);
    CHECK(s.v[4].ops[1].kind == GL_OP_LUA && s.v[4].ops[1].steps[0] == m3);
    gl_stages_free(&s);
    gl_plan_free(p);
}

TEST(source_task_counts)
{
    static const struct {
        int64_t from, to, shards;
        uint32_t workers, ntasks;
    } cases[] = {
        {1, 100, 0, 4, 4}, {1, 2, 0, 8, 2}, {5, 4, 0, 8, 1}, {1, 2, 6, 8, 6}, {1, 100, 0, 0, 1},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        gl_plan *p = gl_plan_new();
        REQUIRE(p);
        int src = range(p, cases[c].from, cases[c].to);
        if (cases[c].shards)
            gl_plan_set_int(p, src, GL_P_SHARDS, cases[c].shards);
        gl_stages s;
        REQUIRE(plan(p, src, cases[c].workers, &s) == 0);
        REQUIRE(s.n == 1);
        CHECK_EQ(s.v[0].ntasks, cases[c].ntasks);
        gl_stages_free(&s);
        gl_plan_free(p);
    }
    /* Driver rows: no more tasks than rows, at least one. */
    gl_plan *p = gl_plan_new();
    REQUIRE(p);
    int empty = step(p, GL_STEP_ROWS, -1);
    gl_stages s;
    REQUIRE(plan(p, empty, 8, &s) == 0);
    CHECK(s.n == 1 && s.v[0].ntasks == 1 && s.v[0].src == GL_SRC_ROWS);
    gl_stages_free(&s);
    gl_plan_free(p);
}

TEST(invalid_steps_refused)
{
    gl_plan *p = gl_plan_new();
    REQUIRE(p);
    int src = range(p, 1, 10);
    int m = step(p, GL_STEP_MAP, src);
    REQUIRE(src == 0 && m == 1);
    /* Unknown kinds. */
    CHECK(gl_plan_step(p, GL_STEP_KINDS, m, "x", "y") < 0);
    CHECK(gl_plan_step(p, -1, m, "x", "y") < 0);
    CHECK(gl_plan_step(p, 1000, -1, "x", "y") < 0);
    /* Bad inputs: none, unknown, negative; and a source with an input. */
    CHECK(gl_plan_step(p, GL_STEP_MAP, -1, "x", "y") < 0);
    CHECK(gl_plan_step(p, GL_STEP_MAP, 2, "x", "y") < 0);
    CHECK(gl_plan_step(p, GL_STEP_FILTER, 99, "x", "y") < 0);
    CHECK(gl_plan_step(p, GL_STEP_MAP, -5, "x", "y") < 0);
    CHECK(gl_plan_step(p, GL_STEP_RANGE, 0, "x", "y") < 0);
    CHECK(gl_plan_step(p, GL_STEP_ROWS, m, "x", "y") < 0);
    CHECK_EQ(gl_plan_nsteps(p), 2);
    /* Keys: field 0 anywhere, too many fields, unknown step. */
    uint32_t fields[GL_KEY_MAX + 1];
    for (uint32_t i = 0; i <= GL_KEY_MAX; i++)
        fields[i] = i + 1;
    CHECK(gl_plan_set_key(p, m, (const uint32_t[]){0}, 1) < 0);
    CHECK(gl_plan_set_key(p, m, (const uint32_t[]){2, 0}, 2) < 0);
    CHECK(gl_plan_set_key(p, m, fields, GL_KEY_MAX + 1) < 0);
    CHECK(gl_plan_set_key(p, 7, fields, 1) < 0);
    CHECK(!gl_plan_get(p, m)->has_key);
    CHECK(gl_plan_set_key(p, m, fields, GL_KEY_MAX) == 0);
    CHECK(gl_plan_get(p, m)->key.n == GL_KEY_MAX && gl_plan_get(p, m)->key.f[GL_KEY_MAX - 1] == GL_KEY_MAX);
    /* Other setters. */
    CHECK(gl_plan_set_builtin(p, m, GL_FN_COUNT + 1) < 0);
    CHECK(gl_plan_set_builtin(p, m, -1) < 0);
    CHECK(gl_plan_set_builtin(p, 9, GL_FN_SUM) < 0);
    CHECK(gl_plan_set_int(p, m, 99, 1) < 0);
    CHECK(gl_plan_set_int(p, m, GL_P_SHARDS, -1) < 0);
    CHECK(gl_plan_set_int(p, -1, GL_P_N, 1) < 0);
    CHECK(gl_plan_set_fn(p, 5, (const uint8_t *)"x", 1) < 0);
    CHECK(gl_plan_add_path(p, m, "*.txt") < 0);
    CHECK(gl_plan_get(p, 2) == NULL && gl_plan_get(p, -1) == NULL);
    /* Planning an unknown dataset fails with a message and no stages. */
    gl_stages s;
    gl_err err = {0};
    CHECK(gl_plan_stages(p, 5, 2, &s, &err) < 0);
    CHECK(err.code < 0 && err.msg[0]);
    CHECK(s.n == 0 && s.v == NULL);
    CHECK(gl_plan_stages(p, -1, 2, &s, &err) < 0);
    gl_plan_free(p);
}

TEST(add_rows_checks_rows)
{
    static const uint8_t good[] = {0x92, 0x01, 0xa1, 'x', 0x90};          /* (1, "x"), () */
    static const uint8_t truncated[] = {0x92, 0x01, 0xa2, 'x'};
    static const uint8_t not_row[] = {0x01, 0x90};
    static const uint8_t trailing[] = {0x91, 0x01, 0xc0};
    static const uint8_t bad_byte[] = {0x91, 0xc1};
    static const uint8_t huge[] = {0xdd, 0xff, 0xff, 0xff, 0xff, 0x01};
    gl_plan *p = gl_plan_new();
    REQUIRE(p);
    int src = step(p, GL_STEP_ROWS, -1);
    int r = range(p, 1, 2);
    CHECK(gl_plan_add_rows(p, src, good, sizeof good, 3) < 0);
    CHECK(gl_plan_add_rows(p, src, good, sizeof good, 1) < 0);
    CHECK(gl_plan_add_rows(p, src, truncated, sizeof truncated, 1) < 0);
    CHECK(gl_plan_add_rows(p, src, not_row, sizeof not_row, 2) < 0);
    CHECK(gl_plan_add_rows(p, src, trailing, sizeof trailing, 1) < 0);
    CHECK(gl_plan_add_rows(p, src, bad_byte, sizeof bad_byte, 1) < 0);
    CHECK(gl_plan_add_rows(p, src, huge, sizeof huge, 1) < 0);
    CHECK(gl_plan_add_rows(p, r, good, sizeof good, 2) < 0); /* not a rows source */
    CHECK(gl_plan_add_rows(p, 9, good, sizeof good, 2) < 0);
    const gl_step *st = gl_plan_get(p, src);
    CHECK(st->nrows == 0 && st->rows.len == 0);
    /* Good rows are kept, and batches add up. */
    CHECK(gl_plan_add_rows(p, src, good, sizeof good, 2) == 0);
    CHECK(gl_plan_add_rows(p, src, good, sizeof good, 2) == 0);
    st = gl_plan_get(p, src);
    CHECK(st->nrows == 4 && st->rows.len == 2 * sizeof good);
    CHECK(st->rows.len == 2 * sizeof good && !memcmp(st->rows.data + sizeof good, good, sizeof good));
    gl_stages s;
    REQUIRE(plan(p, src, 3, &s) == 0);
    CHECK(s.n == 1 && s.v[0].ntasks == 3);
    gl_stages_free(&s);
    gl_plan_free(p);
}

TEST(step_copies_names)
{
    gl_plan *p = gl_plan_new();
    REQUIRE(p);
    char name[8] = "range", where[16] = "job.lua:3";
    int id = gl_plan_step(p, GL_STEP_RANGE, -1, name, where);
    REQUIRE(id == 0);
    name[0] = where[0] = 'X';
    const gl_step *st = gl_plan_get(p, id);
    CHECK(!strcmp(st->name, "range") && !strcmp(st->where, "job.lua:3"));
    CHECK(st->kind == GL_STEP_RANGE && st->input == -1);
    int m = gl_plan_step(p, GL_STEP_MAP, id, NULL, NULL);
    CHECK(m == 1 && gl_plan_get(p, m)->name != NULL && gl_plan_get(p, m)->input == id);
    gl_plan_free(p);
}

static int released;
static void count_release(gl_remote_cache *r)
{
    (void)r;
    released++;
}

/* A step cached by a local run is a stage with nothing to run, except
 * when planned for a cluster (GL_PLAN_NO_LOCAL_CACHE); a cluster's record
 * is released once, when replaced, uncached or freed with the plan. */
TEST(cached_step_local_or_cluster)
{
    gl_err err = {0};
    gl_store *store = gl_store_new(0, NULL, 1, &err);
    REQUIRE(store);
    gl_plan *p = gl_plan_new();
    REQUIRE(p);
    int m = step(p, GL_STEP_MAP, range(p, 1, 100));
    REQUIRE(gl_plan_set_int(p, m, GL_P_PERSIST, GL_PERSIST_CACHE) == 0);
    int f = step(p, GL_STEP_FILTER, m);
    gl_stages s;
    REQUIRE(plan(p, f, 3, &s) == 0);
    REQUIRE(s.n == 2);
    CHECK(!s.v[0].cache_in && s.v[0].cache_step == m && s.v[0].ntasks == 3);
    gl_stages_free(&s);
    gl_plan_cache_put(p, m, gl_output_new(3, 3, store, false));
    REQUIRE(plan(p, f, 3, &s) == 0);
    REQUIRE(s.n == 2);
    CHECK(s.v[0].cache_in && s.v[0].ntasks == 0 && s.v[0].nparts == 3);
    gl_stages_free(&s);
    REQUIRE(gl_plan_stages_ex(p, f, 3, GL_PLAN_NO_LOCAL_CACHE, &s, &err) == 0);
    REQUIRE(s.n == 2);
    CHECK(!s.v[0].cache_in && s.v[0].cache_step == m && s.v[0].ntasks == 3);
    gl_stages_free(&s);
    /* the cluster's records */
    gl_remote_cache r1 = {count_release}, r2 = {count_release}, r3 = {count_release};
    released = 0;
    gl_plan_cache_remote(p, m, &r1);
    CHECK(gl_plan_get(p, m)->remote == &r1 && released == 0);
    gl_plan_cache_remote(p, m, &r2); /* replaced */
    CHECK(gl_plan_get(p, m)->remote == &r2 && released == 1);
    REQUIRE(gl_plan_set_int(p, m, GL_P_PERSIST, 0) == 0); /* uncache: both go */
    CHECK(!gl_plan_get(p, m)->remote && !gl_plan_get(p, m)->cached && released == 2);
    gl_plan_cache_remote(p, 999, &r3); /* no such step: released at once */
    CHECK_EQ(3, released);
    REQUIRE(gl_plan_set_int(p, m, GL_P_PERSIST, GL_PERSIST_CACHE) == 0);
    gl_plan_cache_remote(p, m, &r3);
    gl_plan_free(p);
    CHECK_EQ(4, released);
    gl_store_release(store);
}

TEST_MAIN(T(narrow_chain_fuses), T(select_splits_ops_not_stages), T(words_builtin), T(fusion_limit),
          T(reduce_by_key_cuts_two_stages), T(reduce_is_one_group), T(top_two_stages), T(sort_three_stages),
          T(narrow_after_wide_joins_the_later_stage), T(source_task_counts), T(invalid_steps_refused),
          T(add_rows_checks_rows), T(step_copies_names), T(cached_step_local_or_cluster))
