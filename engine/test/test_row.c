/* test_row.c: the msgpack codec (mpk.c) and the row helpers (row.c).
 *
 * msgpack-c is the oracle: what our writers produce must unpack with
 * msgpack_unpack_next to the values written, and what msgpack-c's packer
 * produces (random nested values, every encoding form it has) must be
 * walked by gl_mpk_skip and gl_mpk_head_read exactly as msgpack-c reads it.
 * Malformed input is read from bytes that end right at an unreadable page,
 * so a read past the end crashes the test even without ASan. */
#include "test.h"

#include "compare.h"
#include "mpk.h"
#include "row.h"

#include <math.h>
#include <msgpack.h>
#include <unistd.h>

/* ---- helpers ---- */

/* Unpacks exactly one value filling [p, p+n) with msgpack-c. */
static bool unpack_one(msgpack_unpacked *u, const void *p, size_t n)
{
    size_t off = 0;
    return msgpack_unpack_next(u, p, n, &off) == MSGPACK_UNPACK_SUCCESS && off == n;
}

/* The bytes msgpack-c's packer writes for an int64 (its smallest form). */
static void msgpack_int_bytes(msgpack_sbuffer *sb, int64_t v)
{
    msgpack_packer pk;
    msgpack_sbuffer_clear(sb);
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    msgpack_pack_int64(&pk, v);
}

static bool same_bits(double a, double b) { return !memcmp(&a, &b, sizeof a); }

/* memcmp that allows NULL for empty ranges (msgpack-c's empty strings). */
static bool same_mem(const void *a, const void *b, size_t n) { return !n || !memcmp(a, b, n); }

static void put_be64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (56 - 8 * i));
}

/* ---- (a) our writers, read back by msgpack-c ---- */

static const struct {
    int64_t v;
    size_t len; /* canonical (smallest) encoding */
} int_cases[] = {
    {0, 1}, {1, 1}, {127, 1}, {128, 2}, {255, 2}, {256, 3}, {65535, 3}, {65536, 5},
    {4294967295ll, 5}, {4294967296ll, 9}, {INT64_MAX, 9}, {INT64_MIN, 9},
    {-1, 1}, {-32, 1}, {-33, 2}, {-128, 2}, {-129, 3}, {-32768, 3}, {-32769, 5},
    {INT32_MIN, 5}, {(int64_t)INT32_MIN - 1, 9}, {INT32_MAX, 5},
};

TEST(put_int_unpacks)
{
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    for (size_t i = 0; i < sizeof int_cases / sizeof int_cases[0]; i++) {
        int64_t v = int_cases[i].v;
        gl_buf b = {0};
        REQUIRE(gl_mpk_put_int(&b, v) == 0);
        CHECK_EQ(b.len, int_cases[i].len);
        if (!CHECK(unpack_one(&u, b.data, b.len)))
            continue;
        if (v >= 0) {
            CHECK(u.data.type == MSGPACK_OBJECT_POSITIVE_INTEGER);
            CHECK(u.data.via.u64 == (uint64_t)v);
        } else {
            CHECK(u.data.type == MSGPACK_OBJECT_NEGATIVE_INTEGER);
            CHECK_EQ(u.data.via.i64, v);
        }
        /* The same bytes as msgpack-c's packer: both use the smallest form. */
        msgpack_int_bytes(&sb, v);
        CHECK_MEM(b.data, b.len, sb.data, sb.size);
        /* And our own reader agrees. */
        gl_mpk_head h;
        CHECK(gl_mpk_head_read(b.data, b.data + b.len, &h) == b.data + b.len);
        CHECK(h.cls == GL_MPK_NUM && h.num.kind == GL_NUM_INT && h.num.v.i == v);
        CHECK(gl_mpk_skip(b.data, b.data + b.len) == b.data + b.len);
        gl_buf_free(&b);
    }
    msgpack_sbuffer_destroy(&sb);
    msgpack_unpacked_destroy(&u);
}

TEST(put_uint_unpacks)
{
    static const struct {
        uint64_t v;
        size_t len;
    } cases[] = {
        {0, 1}, {127, 1}, {128, 2}, {255, 2}, {256, 3}, {65535, 3}, {65536, 5},
        {4294967295u, 5}, {4294967296u, 9}, {(uint64_t)INT64_MAX, 9},
        {(uint64_t)INT64_MAX + 1, 9}, {UINT64_MAX, 9},
    };
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint64_t v = cases[i].v;
        gl_buf b = {0};
        REQUIRE(gl_mpk_put_uint(&b, v) == 0);
        CHECK_EQ(b.len, cases[i].len);
        if (CHECK(unpack_one(&u, b.data, b.len)))
            CHECK(u.data.type == MSGPACK_OBJECT_POSITIVE_INTEGER && u.data.via.u64 == v);
        gl_mpk_head h;
        CHECK(gl_mpk_head_read(b.data, b.data + b.len, &h) == b.data + b.len);
        CHECK(h.cls == GL_MPK_NUM);
        /* GL_NUM_UINT only above INT64_MAX. */
        if (v > (uint64_t)INT64_MAX)
            CHECK(h.num.kind == GL_NUM_UINT && h.num.v.u == v);
        else
            CHECK(h.num.kind == GL_NUM_INT && (uint64_t)h.num.v.i == v);
        gl_buf_free(&b);
    }
    msgpack_unpacked_destroy(&u);
}

TEST(put_double_unpacks)
{
    const double cases[] = {0.0, -0.0, 1.0, -1.5, 0.1, 1e300, -1e-300, 5e-324, 1.7976931348623157e308,
                            INFINITY, -INFINITY, NAN, -NAN, 9007199254740993.0};
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        double v = cases[i];
        gl_buf b = {0};
        REQUIRE(gl_mpk_put_double(&b, v) == 0);
        CHECK_EQ(b.len, 9);
        CHECK_EQ(b.data[0], 0xcb);
        if (CHECK(unpack_one(&u, b.data, b.len)))
            CHECK(u.data.type == MSGPACK_OBJECT_FLOAT64 && same_bits(u.data.via.f64, v));
        gl_mpk_head h;
        CHECK(gl_mpk_head_read(b.data, b.data + b.len, &h) == b.data + b.len);
        CHECK(h.cls == GL_MPK_NUM && h.num.kind == GL_NUM_DOUBLE && same_bits(h.num.v.d, v));
        gl_buf_free(&b);
    }
    msgpack_unpacked_destroy(&u);
}

TEST(put_nil_bool_unpack)
{
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    gl_buf b = {0};
    REQUIRE(gl_mpk_put_nil(&b) == 0);
    if (CHECK(unpack_one(&u, b.data, b.len)))
        CHECK(u.data.type == MSGPACK_OBJECT_NIL);
    for (int v = 0; v < 2; v++) {
        b.len = 0;
        REQUIRE(gl_mpk_put_bool(&b, v) == 0);
        if (CHECK(unpack_one(&u, b.data, b.len)))
            CHECK(u.data.type == MSGPACK_OBJECT_BOOLEAN && u.data.via.boolean == (bool)v);
        gl_mpk_head h;
        CHECK(gl_mpk_head_read(b.data, b.data + b.len, &h) == b.data + 1);
        CHECK(h.cls == GL_MPK_BOOL && h.b == (bool)v);
    }
    gl_buf_free(&b);
    msgpack_unpacked_destroy(&u);
}

TEST(put_str_unpacks)
{
    static const struct {
        size_t n, head;
    } cases[] = {{0, 1}, {1, 1}, {31, 1}, {32, 2}, {255, 2}, {256, 3}, {65535, 3}, {65536, 5}, {70001, 5}};
    uint8_t *s = malloc(70001);
    REQUIRE(s);
    for (size_t i = 0; i < 70001; i++)
        s[i] = i % 3 ? (uint8_t)(i * 37 + 11) : 0; /* embedded zeros */
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t n = cases[i].n;
        gl_buf b = {0};
        REQUIRE(gl_mpk_put_str(&b, s, n) == 0);
        CHECK_EQ(b.len, cases[i].head + n);
        if (CHECK(unpack_one(&u, b.data, b.len))) {
            CHECK(u.data.type == MSGPACK_OBJECT_STR);
            CHECK_MEM(u.data.via.str.ptr, u.data.via.str.size, s, n);
        }
        gl_mpk_head h;
        CHECK(gl_mpk_head_read(b.data, b.data + b.len, &h) == b.data + b.len);
        CHECK(h.cls == GL_MPK_STR && h.n == n && h.body == b.data + cases[i].head);
        CHECK(gl_mpk_skip(b.data, b.data + b.len) == b.data + b.len);
        gl_buf_free(&b);
    }
    msgpack_unpacked_destroy(&u);
    free(s);
}

TEST(put_array_map_unpack)
{
    static const struct {
        uint32_t n;
        size_t head;
    } cases[] = {{0, 1}, {1, 1}, {15, 1}, {16, 3}, {65535, 3}, {65536, 5}};
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    for (int map = 0; map < 2; map++) {
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
            uint32_t n = cases[i].n;
            gl_buf b = {0};
            REQUIRE((map ? gl_mpk_put_map(&b, n) : gl_mpk_put_array(&b, n)) == 0);
            CHECK_EQ(b.len, cases[i].head);
            for (uint32_t k = 0; k < n; k++) {
                REQUIRE(gl_mpk_put_int(&b, (int64_t)k - 40) == 0);
                if (map)
                    REQUIRE(gl_mpk_put_str(&b, "v", 1) == 0);
            }
            if (CHECK(unpack_one(&u, b.data, b.len))) {
                const msgpack_object *o = &u.data;
                CHECK(o->type == (map ? MSGPACK_OBJECT_MAP : MSGPACK_OBJECT_ARRAY));
                CHECK_EQ(map ? o->via.map.size : o->via.array.size, n);
                unsigned long bad = 0;
                for (uint32_t k = 0; k < n; k++) {
                    const msgpack_object *item = map ? &o->via.map.ptr[k].key : &o->via.array.ptr[k];
                    int64_t want = (int64_t)k - 40;
                    bad += want < 0 ? item->via.i64 != want : item->via.u64 != (uint64_t)want;
                    if (map)
                        bad += o->via.map.ptr[k].val.type != MSGPACK_OBJECT_STR;
                }
                CHECK_EQ(bad, 0);
            }
            gl_mpk_head h;
            CHECK(gl_mpk_head_read(b.data, b.data + b.len, &h) == b.data + cases[i].head);
            CHECK(h.cls == (map ? GL_MPK_MAP : GL_MPK_ARRAY) && h.n == n);
            CHECK(h.body == b.data + cases[i].head);
            CHECK(gl_mpk_skip(b.data, b.data + b.len) == b.data + b.len);
            gl_buf_free(&b);
        }
    }
    msgpack_unpacked_destroy(&u);
}

/* ---- (b) msgpack-c's bytes, walked by our reader ---- */

static void gen_bytes(uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        p[i] = test_below(4) ? (uint8_t)test_rand() : 0;
}

static double gen_double(void)
{
    static const double specials[] = {0.0, -0.0, 1.0, -1.0, 0.5, INFINITY, -INFINITY, NAN,
                                      9007199254740992.0, 9223372036854775808.0, 1e300};
    if (test_below(3))
        return specials[test_below(sizeof specials / sizeof specials[0])];
    uint64_t bits = test_rand();
    double d;
    memcpy(&d, &bits, 8);
    return d;
}

/* A random value in every encoding msgpack-c's packer has. */
static void gen_value(msgpack_packer *pk, int depth)
{
    static uint8_t body[70000];
    uint64_t r = test_rand();
    int shift = (int)test_below(64);
    size_t n;
    switch (test_below(depth < 4 ? 24 : 20)) {
    case 0: msgpack_pack_nil(pk); break;
    case 1: msgpack_pack_true(pk); break;
    case 2: msgpack_pack_false(pk); break;
    case 3: msgpack_pack_int64(pk, (int64_t)test_below(300) - 100); break;
    case 4: msgpack_pack_int64(pk, (int64_t)(r >> shift)); break;
    case 5: msgpack_pack_int64(pk, -(int64_t)(r >> (shift | 1))); break;
    case 6: msgpack_pack_uint64(pk, r >> shift); break;
    /* Fixed widths: non-canonical forms our reader must accept too. */
    case 7: msgpack_pack_fix_uint8(pk, (uint8_t)r); break;
    case 8: msgpack_pack_fix_uint16(pk, (uint16_t)r); break;
    case 9: msgpack_pack_fix_uint32(pk, (uint32_t)r); break;
    case 10: msgpack_pack_fix_uint64(pk, r >> shift); break;
    case 11:
        switch (r & 3) {
        case 0: msgpack_pack_fix_int8(pk, (int8_t)(r >> 8)); break;
        case 1: msgpack_pack_fix_int16(pk, (int16_t)(r >> 8)); break;
        case 2: msgpack_pack_fix_int32(pk, (int32_t)(r >> 8)); break;
        default: msgpack_pack_fix_int64(pk, (int64_t)r >> shift); break;
        }
        break;
    case 12: msgpack_pack_float(pk, (float)gen_double()); break;
    case 13: msgpack_pack_double(pk, gen_double()); break;
    case 14:
    case 15:
    case 16: {
        static const size_t lens[] = {0, 1, 5, 31, 32, 33, 255, 256, 300};
        n = test_below(2) ? test_below(40) : lens[test_below(sizeof lens / sizeof lens[0])];
        if (depth == 0 && !test_below(400))
            n = 65535 + test_below(3); /* str16 / str32 */
        gen_bytes(body, n);
        if (test_below(3)) {
            msgpack_pack_str(pk, n);
            msgpack_pack_str_body(pk, body, n);
        } else {
            msgpack_pack_bin(pk, n);
            msgpack_pack_bin_body(pk, body, n);
        }
        break;
    }
    case 17:
    case 18:
    case 19: {
        static const size_t lens[] = {1, 2, 4, 8, 16, 0, 3, 17, 255, 256, 300};
        n = lens[test_below(sizeof lens / sizeof lens[0])];
        gen_bytes(body, n);
        msgpack_pack_ext(pk, n, (int8_t)test_rand());
        msgpack_pack_ext_body(pk, body, n);
        break;
    }
    case 20:
    case 21:
        n = depth < 2 && !test_below(8) ? 15 + test_below(4) : test_below(5);
        msgpack_pack_array(pk, n);
        for (size_t i = 0; i < n; i++)
            gen_value(pk, depth + 1);
        break;
    default:
        n = depth < 2 && !test_below(8) ? 15 + test_below(4) : test_below(4);
        msgpack_pack_map(pk, n);
        for (size_t i = 0; i < 2 * n; i++)
            gen_value(pk, depth + 1);
        break;
    }
}

/* Walks the value at p with gl_mpk_head_read beside msgpack-c's object.
 * Returns p past the value, or NULL at the first disagreement. */
static const uint8_t *walk(const uint8_t *p, const uint8_t *end, const msgpack_object *o)
{
    gl_mpk_head h;
    const uint8_t *q = gl_mpk_head_read(p, end, &h);
    if (!CHECK(q != NULL))
        return NULL;
    bool ok;
    switch (o->type) {
    case MSGPACK_OBJECT_NIL: ok = h.cls == GL_MPK_NIL; break;
    case MSGPACK_OBJECT_BOOLEAN: ok = h.cls == GL_MPK_BOOL && h.b == o->via.boolean; break;
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        ok = h.cls == GL_MPK_NUM &&
             (o->via.u64 > (uint64_t)INT64_MAX ? h.num.kind == GL_NUM_UINT && h.num.v.u == o->via.u64
                                                : h.num.kind == GL_NUM_INT && h.num.v.i == (int64_t)o->via.u64);
        break;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        ok = h.cls == GL_MPK_NUM && h.num.kind == GL_NUM_INT && h.num.v.i == o->via.i64;
        break;
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64:
        ok = h.cls == GL_MPK_NUM && h.num.kind == GL_NUM_DOUBLE &&
             (same_bits(h.num.v.d, o->via.f64) || (isnan(h.num.v.d) && isnan(o->via.f64)));
        break;
    case MSGPACK_OBJECT_STR:
        ok = h.cls == GL_MPK_STR && h.n == o->via.str.size && same_mem(h.body, o->via.str.ptr, h.n) &&
             q == h.body + h.n;
        break;
    case MSGPACK_OBJECT_BIN:
        ok = h.cls == GL_MPK_STR && h.n == o->via.bin.size && same_mem(h.body, o->via.bin.ptr, h.n) &&
             q == h.body + h.n;
        break;
    case MSGPACK_OBJECT_EXT:
        ok = h.cls == GL_MPK_EXT && h.n == o->via.ext.size && h.ext_type == o->via.ext.type &&
             same_mem(h.body, o->via.ext.ptr, h.n) && q == h.body + h.n;
        break;
    case MSGPACK_OBJECT_ARRAY:
        if (!CHECK(h.cls == GL_MPK_ARRAY && h.n == o->via.array.size && h.body == q))
            return NULL;
        for (uint32_t i = 0; i < h.n && q; i++)
            q = walk(q, end, &o->via.array.ptr[i]);
        return q;
    case MSGPACK_OBJECT_MAP:
        if (!CHECK(h.cls == GL_MPK_MAP && h.n == o->via.map.size && h.body == q))
            return NULL;
        for (uint32_t i = 0; i < h.n && q; i++) {
            q = walk(q, end, &o->via.map.ptr[i].key);
            if (q)
                q = walk(q, end, &o->via.map.ptr[i].val);
        }
        return q;
    default: ok = false; break;
    }
    return CHECK(ok) ? q : NULL;
}

/* Random values packed by msgpack-c, kept for the truncation test. */
#define NRANDOM 3000
static msgpack_sbuffer random_all;
static size_t random_off[NRANDOM + 1];

static void make_random_values(void)
{
    if (random_all.data)
        return;
    msgpack_sbuffer_init(&random_all);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &random_all, msgpack_sbuffer_write);
    for (int i = 0; i < NRANDOM; i++) {
        random_off[i] = random_all.size;
        gen_value(&pk, 0);
    }
    random_off[NRANDOM] = random_all.size;
}

TEST(reader_walks_msgpack_c_values)
{
    make_random_values();
    const uint8_t *all = (const uint8_t *)random_all.data, *end = all + random_all.size;
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    size_t off = 0;
    unsigned long bad_skip = 0, bad_walk = 0;
    for (int i = 0; i < NRANDOM; i++) {
        const uint8_t *p = all + random_off[i], *vend = all + random_off[i + 1];
        REQUIRE(off == random_off[i]);
        REQUIRE(msgpack_unpack_next(&u, random_all.data, random_all.size, &off) == MSGPACK_UNPACK_SUCCESS);
        REQUIRE(off == random_off[i + 1]);
        /* Exactly the value, whether the buffer ends there or runs on. */
        bad_skip += gl_mpk_skip(p, end) != vend;
        bad_skip += gl_mpk_skip(p, vend) != vend;
        bad_walk += walk(p, vend, &u.data) != vend;
    }
    CHECK_EQ(bad_skip, 0);
    CHECK_EQ(bad_walk, 0);
    /* And back to back, the walk lands on msgpack-c's boundaries. */
    const uint8_t *p = all;
    for (int i = 0; i < NRANDOM && p; i++) {
        CHECK(p == all + random_off[i]);
        p = gl_mpk_skip(p, end);
    }
    CHECK(p == end);
    msgpack_unpacked_destroy(&u);
}

/* Encodings msgpack-c's packer never writes but the format allows. */
TEST(reader_accepts_long_forms)
{
    static const uint8_t arr16[] = {0xdc, 0x00, 0x02, 0x01, 0xc0};
    static const uint8_t arr32[] = {0xdd, 0x00, 0x00, 0x00, 0x01, 0xa1, 'x'};
    static const uint8_t map16[] = {0xde, 0x00, 0x01, 0x01, 0x02};
    static const uint8_t map32[] = {0xdf, 0x00, 0x00, 0x00, 0x00};
    static const uint8_t str16[] = {0xda, 0x00, 0x01, 'z'};
    static const uint8_t str32[] = {0xdb, 0x00, 0x00, 0x00, 0x00};
    static const uint8_t u64small[] = {0xcf, 0, 0, 0, 0, 0, 0, 0, 5};
    static const struct {
        const uint8_t *p;
        size_t n;
        enum gl_mpk_class cls;
        uint32_t count;
        size_t head;
    } cases[] = {
        {arr16, sizeof arr16, GL_MPK_ARRAY, 2, 3}, {arr32, sizeof arr32, GL_MPK_ARRAY, 1, 5},
        {map16, sizeof map16, GL_MPK_MAP, 1, 3},   {map32, sizeof map32, GL_MPK_MAP, 0, 5},
        {str16, sizeof str16, GL_MPK_STR, 1, 4},   {str32, sizeof str32, GL_MPK_STR, 0, 5},
        {u64small, sizeof u64small, GL_MPK_NUM, 0, 9},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const uint8_t *p = test_guarded(cases[i].p, cases[i].n), *end = p + cases[i].n;
        gl_mpk_head h;
        CHECK(gl_mpk_head_read(p, end, &h) == p + cases[i].head);
        CHECK(h.cls == cases[i].cls && h.n == cases[i].count);
        CHECK(gl_mpk_skip(p, end) == end);
    }
    gl_mpk_head h;
    CHECK(gl_mpk_head_read(u64small, u64small + 9, &h) && h.num.kind == GL_NUM_INT && h.num.v.i == 5);
}

/* ---- (c) malformed input ---- */

static unsigned long truncations_accepted(const uint8_t *v, size_t n, size_t cut)
{
    const uint8_t *p = test_guarded(v, cut);
    gl_mpk_head h;
    const uint8_t *q = gl_mpk_head_read(p, p + cut, &h);
    unsigned long bad = q != NULL && q > p + cut;
    bad += gl_mpk_skip(p, p + cut) != NULL;
    return bad;
}

TEST(every_truncation_is_malformed)
{
    make_random_values();
    const uint8_t *all = (const uint8_t *)random_all.data;
    unsigned long bad = 0, tried = 0;
    for (int i = 0; i < NRANDOM; i++) {
        const uint8_t *v = all + random_off[i];
        size_t n = random_off[i + 1] - random_off[i];
        if (n <= 600) {
            for (size_t cut = 0; cut < n; cut++, tried++)
                bad += truncations_accepted(v, n, cut);
        } else {
            /* Big values: the cuts near the ends and a spread between. */
            for (size_t cut = 0; cut < 40; cut++, tried++)
                bad += truncations_accepted(v, n, cut);
            for (size_t cut = n - 40; cut < n; cut++, tried++)
                bad += truncations_accepted(v, n, cut);
            for (int k = 0; k < 40; k++, tried++)
                bad += truncations_accepted(v, n, test_below((uint32_t)n));
        }
        /* The whole value still reads from a guarded copy. */
        const uint8_t *p = test_guarded(v, n);
        bad += gl_mpk_skip(p, p + n) != p + n;
    }
    CHECK_EQ(bad, 0);
    CHECK(tried > 50000);
}

TEST(truncated_own_encodings)
{
    /* Every header size of every class, cut at every byte. */
    gl_buf b = {0};
    uint8_t s[300] = {0};
    const int64_t ints[] = {200, 60000, 70000, 5000000000ll, -100, -1000, -100000, -5000000000ll};
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++)
        gl_mpk_put_int(&b, ints[i]);
    gl_mpk_put_uint(&b, UINT64_MAX);
    gl_mpk_put_double(&b, 1.5);
    gl_mpk_put_str(&b, s, 0);
    gl_mpk_put_str(&b, s, 5);
    gl_mpk_put_str(&b, s, 40);
    gl_mpk_put_str(&b, s, 300);
    gl_mpk_put_array(&b, 2);
    gl_mpk_put_nil(&b);
    gl_mpk_put_bool(&b, true);
    gl_mpk_put_map(&b, 17);
    for (int i = 0; i < 34; i++)
        gl_mpk_put_int(&b, i);
    REQUIRE(b.data);
    unsigned long bad = 0;
    const uint8_t *p = b.data, *end = b.data + b.len;
    while (p < end) {
        const uint8_t *q = gl_mpk_skip(p, end);
        REQUIRE(q != NULL);
        for (size_t cut = 0; cut < (size_t)(q - p); cut++)
            bad += truncations_accepted(p, (size_t)(q - p), cut);
        p = q;
    }
    CHECK_EQ(bad, 0);
    gl_buf_free(&b);
}

TEST(reserved_byte_c1)
{
    static const uint8_t c1[] = {0xc1};
    static const uint8_t in_array[] = {0x92, 0x01, 0xc1};
    static const uint8_t as_key[] = {0x81, 0xc1, 0x01};
    gl_mpk_head h;
    const uint8_t *p = test_guarded(c1, 1);
    CHECK(gl_mpk_head_read(p, p + 1, &h) == NULL);
    CHECK(gl_mpk_skip(p, p + 1) == NULL);
    p = test_guarded(in_array, sizeof in_array);
    CHECK(gl_mpk_skip(p, p + sizeof in_array) == NULL);
    uint32_t nf;
    CHECK(gl_row_check(p, p + sizeof in_array, &nf) == NULL);
    p = test_guarded(as_key, sizeof as_key);
    CHECK(gl_mpk_skip(p, p + sizeof as_key) == NULL);
}

TEST(huge_counts_in_short_buffers)
{
    static const uint8_t arr[] = {0xdd, 0xff, 0xff, 0xff, 0xff, 0x01, 0x02, 0x03};
    static const uint8_t map[] = {0xdf, 0xff, 0xff, 0xff, 0xff, 0x01, 0x02};
    static const uint8_t map_half[] = {0xdf, 0x80, 0x00, 0x00, 0x00, 0x01, 0x02}; /* 2^31 pairs */
    static const uint8_t arr16[] = {0xdc, 0xff, 0xff, 0x01};
    static const uint8_t str[] = {0xdb, 0xff, 0xff, 0xff, 0xff, 'a', 'b'};
    static const uint8_t bin[] = {0xc6, 0xff, 0xff, 0xff, 0xff, 'a'};
    static const uint8_t ext[] = {0xc9, 0xff, 0xff, 0xff, 0xff, 0x01, 'a'};
    static const struct {
        const uint8_t *p;
        size_t n;
    } cases[] = {{arr, sizeof arr}, {map, sizeof map}, {map_half, sizeof map_half}, {arr16, sizeof arr16},
                 {str, sizeof str}, {bin, sizeof bin},  {ext, sizeof ext}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const uint8_t *p = test_guarded(cases[i].p, cases[i].n);
        CHECK(gl_mpk_skip(p, p + cases[i].n) == NULL);
    }
    /* The payload readers refuse what does not fit, too. */
    gl_mpk_head h;
    const uint8_t *p = test_guarded(str, sizeof str);
    CHECK(gl_mpk_head_read(p, p + sizeof str, &h) == NULL);
    uint32_t nf;
    p = test_guarded(arr, sizeof arr);
    CHECK(gl_row_check(p, p + sizeof arr, &nf) == NULL);
    CHECK(!gl_rows_valid(p, sizeof arr, 1));
}

/* n arrays, each holding the next, the innermost holding 1. */
static void nest(gl_buf *b, int n, bool maps)
{
    for (int i = 0; i < n; i++) {
        if (maps) {
            gl_mpk_put_map(b, 1);
            gl_mpk_put_nil(b); /* key; the value is the next level */
        } else {
            gl_mpk_put_array(b, 1);
        }
    }
    gl_mpk_put_int(b, 1);
}

TEST(nesting_limit)
{
    for (int maps = 0; maps < 2; maps++) {
        gl_buf b = {0};
        nest(&b, GL_MPK_MAX_DEPTH, maps);
        const uint8_t *p = test_guarded(b.data, b.len);
        CHECK(gl_mpk_skip(p, p + b.len) == p + b.len);
        b.len = 0;
        nest(&b, GL_MPK_MAX_DEPTH + 1, maps);
        p = test_guarded(b.data, b.len);
        CHECK(gl_mpk_skip(p, p + b.len) == NULL);
        b.len = 0;
        nest(&b, 100000, maps);
        p = test_guarded(b.data, b.len);
        CHECK(gl_mpk_skip(p, p + b.len) == NULL);
        gl_buf_free(&b);
    }
}

/* The limit is on depth, not on how many containers a value holds: a row
 * of many small arrays (pairs, say) is not nested at all. */
TEST(many_siblings_are_not_deep)
{
    gl_buf b = {0};
    gl_mpk_put_array(&b, 1000);
    for (int i = 0; i < 1000; i++) {
        gl_mpk_put_array(&b, 2);
        gl_mpk_put_int(&b, i);
        gl_mpk_put_str(&b, "x", 1);
    }
    const uint8_t *p = test_guarded(b.data, b.len);
    CHECK(gl_mpk_skip(p, p + b.len) == p + b.len);
    uint32_t nf = 0;
    CHECK(gl_row_check(p, p + b.len, &nf) == p + b.len);
    CHECK_EQ(nf, 1000);
    CHECK(gl_rows_valid(p, b.len, 1));

    /* Deep and then wide: siblings after a deep branch are back at depth 1. */
    b.len = 0;
    gl_mpk_put_array(&b, 300);
    nest(&b, GL_MPK_MAX_DEPTH - 1, false);
    for (int i = 1; i < 300; i++) {
        gl_mpk_put_map(&b, 1);
        gl_mpk_put_int(&b, i);
        gl_mpk_put_int(&b, i);
    }
    p = test_guarded(b.data, b.len);
    CHECK(gl_mpk_skip(p, p + b.len) == p + b.len);
    /* ... but a branch one deeper is still refused. */
    b.len = 0;
    gl_mpk_put_array(&b, 2);
    nest(&b, GL_MPK_MAX_DEPTH, false);
    gl_mpk_put_nil(&b);
    p = test_guarded(b.data, b.len);
    CHECK(gl_mpk_skip(p, p + b.len) == NULL);
    gl_buf_free(&b);
}

/* ---- (d) numbers written the way Lua writes them ---- */

TEST(put_number_canonical)
{
    static const struct {
        double v;
        uint8_t bytes[9];
        size_t n;
    } ints[] = {
        {0.0, {0x00}, 1},
        {1.0, {0x01}, 1},
        {-1.0, {0xff}, 1},
        {127.0, {0x7f}, 1},
        {128.0, {0xcc, 0x80}, 2},
        {-33.0, {0xd0, 0xdf}, 2},
        {65536.0, {0xce, 0x00, 0x01, 0x00, 0x00}, 5},
        {4294967296.0, {0xcf, 0, 0, 0, 1, 0, 0, 0, 0}, 9},
        {9007199254740992.0, {0xcf, 0x00, 0x20, 0, 0, 0, 0, 0, 0}, 9},
        {-9223372036854775808.0, {0xd3, 0x80, 0, 0, 0, 0, 0, 0, 0}, 9},
        {9223372036854774784.0, {0xcf, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfc, 0x00}, 9},
    };
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
        gl_buf b = {0};
        REQUIRE(gl_mpk_put_number(&b, ints[i].v) == 0);
        CHECK_MEM(b.data, b.len, ints[i].bytes, ints[i].n);
        gl_buf_free(&b);
    }
    /* Everything else stays a double, bit for bit (-0.0 keeps its sign). */
    const double dbl[] = {-0.0, 0.5, -2.5, 1e-300, 9223372036854775808.0, -9223372036854777856.0, 1e19,
                          18446744073709551616.0, INFINITY, -INFINITY, NAN};
    for (size_t i = 0; i < sizeof dbl / sizeof dbl[0]; i++) {
        gl_buf b = {0};
        REQUIRE(gl_mpk_put_number(&b, dbl[i]) == 0);
        uint8_t want[9] = {0xcb};
        uint64_t bits;
        memcpy(&bits, &dbl[i], 8);
        put_be64(want + 1, bits);
        CHECK_MEM(b.data, b.len, want, 9);
        gl_buf_free(&b);
    }
    /* Random integral doubles in range match gl_mpk_put_int byte for byte. */
    unsigned long bad = 0;
    for (int i = 0; i < 2000; i++) {
        int64_t v = (int64_t)(test_rand() >> (1 + test_below(63)));
        if (test_below(2))
            v = -v;
        double d = (double)v;
        if (d >= 9223372036854775808.0)
            continue;
        gl_buf a = {0}, c = {0};
        gl_mpk_put_number(&a, d);
        gl_mpk_put_int(&c, (int64_t)d);
        bad += a.len != c.len || memcmp(a.data, c.data, a.len);
        gl_buf_free(&a);
        gl_buf_free(&c);
    }
    CHECK_EQ(bad, 0);
}

/* ---- (e) rows ---- */

/* (10, "b", {1, 2}) followed by (nil) and then a stray 7. */
static size_t make_rows(gl_buf *b, size_t *ends)
{
    gl_mpk_put_array(b, 3);
    gl_mpk_put_int(b, 10);
    gl_mpk_put_str(b, "b", 1);
    gl_mpk_put_array(b, 2);
    gl_mpk_put_int(b, 1);
    gl_mpk_put_int(b, 2);
    ends[0] = b->len;
    gl_mpk_put_array(b, 1);
    gl_mpk_put_nil(b);
    ends[1] = b->len;
    gl_mpk_put_int(b, 7);
    return b->len;
}

TEST(row_check_and_rows_valid)
{
    gl_buf b = {0};
    size_t ends[2];
    size_t len = make_rows(&b, ends);
    const uint8_t *p = b.data, *end = p + len;
    uint32_t nf = 99;
    CHECK(gl_row_check(p, end, &nf) == p + ends[0]);
    CHECK_EQ(nf, 3);
    CHECK(gl_row_check(p + ends[0], end, &nf) == p + ends[1]);
    CHECK_EQ(nf, 1);
    CHECK(gl_row_check(p + ends[1], end, &nf) == NULL); /* 7 is not a row */
    CHECK(gl_row_end(p, end) == p + ends[0]);

    CHECK(gl_rows_valid(p, ends[1], 2));
    CHECK(gl_rows_valid(p, ends[0], 1));
    CHECK(!gl_rows_valid(p, ends[1], 1)); /* bytes left over */
    CHECK(!gl_rows_valid(p, ends[1], 3)); /* fewer rows than claimed */
    CHECK(!gl_rows_valid(p, len, 3));     /* a non-row */
    CHECK(!gl_rows_valid(p, ends[1] - 1, 2));
    CHECK(gl_rows_valid(p, 0, 0));
    CHECK(!gl_rows_valid(p, ends[0], 0));

    static const uint8_t empty[] = {0x90};
    static const uint8_t map[] = {0x80};
    CHECK(gl_row_check(empty, empty + 1, &nf) == empty + 1 && nf == 0);
    CHECK(gl_row_check(map, map + 1, &nf) == NULL);
    CHECK(gl_row_check(map, map, &nf) == NULL);

    /* Every cut of a valid batch is refused. */
    unsigned long bad = 0;
    for (size_t cut = 0; cut < ends[1]; cut++) {
        const uint8_t *g = test_guarded(b.data, cut);
        bad += gl_rows_valid(g, cut, 2);
        bad += cut < ends[0] && gl_row_check(g, g + cut, &nf) != NULL;
    }
    CHECK_EQ(bad, 0);
    gl_buf_free(&b);
}

TEST(row_field)
{
    gl_buf b = {0};
    size_t ends[2];
    make_rows(&b, ends);
    const uint8_t *row = b.data, *end = b.data + ends[0];
    const uint8_t *fs, *fe;
    uint32_t nf;
    CHECK(gl_row_fields(row, end, &nf) == row + 1 && nf == 3);
    gl_row_field(row, end, 1, &fs, &fe);
    CHECK(fs == row + 1 && fe == row + 2 && *fs == 10);
    gl_row_field(row, end, 2, &fs, &fe);
    CHECK_MEM(fs, fe - fs, "\xa1" "b", 2);
    CHECK(fs >= row && fe <= end);
    gl_row_field(row, end, 3, &fs, &fe);
    CHECK_MEM(fs, fe - fs, "\x92\x01\x02", 3);
    CHECK(fe == end);
    /* Missing fields (and field 0) read as nil. */
    const uint32_t missing[] = {0, 4, 1000, UINT32_MAX};
    for (size_t i = 0; i < sizeof missing / sizeof missing[0]; i++) {
        gl_row_field(row, end, missing[i], &fs, &fe);
        CHECK(fe - fs == 1 && *fs == 0xc0);
    }
    /* A non-row has no fields. */
    static const uint8_t seven[] = {0x07};
    CHECK(gl_row_fields(seven, seven + 1, &nf) == seven + 1 && nf == 0);
    gl_row_field(seven, seven + 1, 1, &fs, &fe);
    CHECK(fe - fs == 1 && *fs == 0xc0);
    gl_buf_free(&b);
}

TEST(row_key_put)
{
    gl_buf b = {0}, k = {0};
    size_t ends[2];
    make_rows(&b, ends);
    const uint8_t *row = b.data, *end = b.data + ends[0];
    gl_keyspec k31 = {2, {3, 1}};
    REQUIRE(gl_row_key_put(&k, row, end, &k31) == 0);
    CHECK_MEM(k.data, k.len, "\x92\x01\x02\x0a", 4);
    /* Appends: the buffer is not reset. */
    gl_keyspec k5 = {1, {5}};
    REQUIRE(gl_row_key_put(&k, row, end, &k5) == 0);
    CHECK_MEM(k.data, k.len, "\x92\x01\x02\x0a\xc0", 5);
    gl_keyspec none = {0};
    size_t before = k.len;
    REQUIRE(gl_row_key_put(&k, row, end, &none) == 0);
    CHECK_EQ(k.len, before);
    /* The key bytes compare equal to the row's key. */
    k.len = 0;
    gl_keyspec k21 = {2, {2, 1}};
    REQUIRE(gl_row_key_put(&k, row, end, &k21) == 0);
    CHECK(gl_row_key_cmp_bytes(row, end, &k21, k.data, k.data + k.len) == 0);
    CHECK(gl_row_key_cmp_bytes(row, end, &k31, k.data, k.data + k.len) > 0); /* array > string */
    gl_buf_free(&k);
    gl_buf_free(&b);
}

/* gl_mpk_size1 sizes a value by its first byte exactly as the reader
 * does, and gl_mpk_next and gl_row_end take the same steps as the skip. */
TEST(size1_agrees_with_reader)
{
    uint8_t buf[40] = {0};
    unsigned long bad = 0;
    for (int c = 0; c < 256; c++) {
        buf[0] = (uint8_t)c;
        size_t n = gl_mpk_size1[c];
        if (!n)
            continue;
        bad += gl_mpk_skip(buf, buf + sizeof buf) != buf + n;
        bad += gl_mpk_next(buf, buf + sizeof buf) != buf + n;
        bad += gl_mpk_next(buf, buf + n - 1) != NULL; /* cut short: malformed */
    }
    CHECK_EQ(bad, 0);
    /* Rows of random values (some not sized by their first byte). */
    make_random_values();
    const uint8_t *all = (const uint8_t *)random_all.data;
    gl_buf b = {0};
    bad = 0;
    for (int i = 0; i + 40 < NRANDOM; i += 7) {
        uint32_t nf = (uint32_t)(test_rand() % 40);
        b.len = 0;
        gl_mpk_put_array(&b, nf);
        for (uint32_t f = 0; f < nf; f++)
            gl_buf_append(&b, all + random_off[i + f], random_off[i + f + 1] - random_off[i + f]);
        const uint8_t *row = b.data, *end = row + b.len;
        bad += gl_row_end(row, end) != end;
        /* Keys of several fields, in one walk or field by field. */
        gl_keyspec k = {0};
        k.n = 1 + (uint32_t)(test_rand() % 4);
        for (uint32_t j = 0; j < k.n; j++)
            k.f[j] = 1 + (uint32_t)(test_rand() % 42);
        uint64_t h = 7;
        gl_buf want = {0}, got = {0};
        for (uint32_t j = 0; j < k.n; j++) {
            const uint8_t *fs, *fe;
            gl_row_field(row, end, k.f[j], &fs, &fe);
            gl_buf_append(&want, fs, (size_t)(fe - fs));
            h = gl_hash_next(&fs, fe, h);
        }
        gl_row_key_put(&got, row, end, &k);
        bad += got.len != want.len || memcmp(got.data, want.data, got.len);
        bad += gl_row_key_hash(row, end, &k, 7) != h;
        gl_buf_free(&want);
        gl_buf_free(&got);
    }
    CHECK_EQ(bad, 0);
    gl_buf_free(&b);
}

static void format(const gl_buf *b, char *out, size_t max)
{
    memset(out, 'Z', max + 1); /* out has room for max + 1 */
    gl_row_format(b->data, b->data + b->len, out, max);
}

TEST(row_format)
{
    gl_buf b = {0};
    char out[512];
    gl_mpk_put_array(&b, 10);
    gl_mpk_put_str(&b, "a", 1);
    gl_mpk_put_int(&b, -5);
    gl_mpk_put_nil(&b);
    gl_mpk_put_bool(&b, true);
    gl_mpk_put_double(&b, 1.5);
    gl_mpk_put_array(&b, 2);
    gl_mpk_put_int(&b, 1);
    gl_mpk_put_str(&b, "x", 1);
    gl_mpk_put_map(&b, 1);
    gl_mpk_put_str(&b, "k", 1);
    gl_mpk_put_bool(&b, false);
    gl_mpk_put_str(&b, "q\"\\\n\x80", 5);
    gl_mpk_put_uint(&b, UINT64_MAX);
    gl_mpk_put_array(&b, 0);
    const char *want = "(\"a\", -5, nil, true, 1.5, {1, \"x\"}, {[\"k\"] = false}, "
                       "\"q\\\"\\\\\\10\\128\", 18446744073709551615, {})";
    format(&b, out, sizeof out - 1);
    CHECK(!strcmp(out, want));
    size_t full = strlen(want);

    /* An exact fit is not abbreviated. */
    format(&b, out, full + 1);
    CHECK(!strcmp(out, want));
    /* One byte short is: cut, marked, terminated. */
    for (size_t max = 5; max <= full; max++) {
        format(&b, out, max);
        size_t n = strlen(out);
        if (!CHECK(n == max - 1))
            break;
        CHECK(!memcmp(out + n - 3, "...", 3));
        CHECK(!memcmp(out, want, n - 3));
    }
    /* Tiny buffers stay terminated and within bounds. */
    for (size_t max = 1; max < 5; max++) {
        format(&b, out, max);
        CHECK(strlen(out) < max);
        CHECK(out[max] == 'Z');
    }
    out[0] = 'Z';
    gl_row_format(b.data, b.data + b.len, out, 0);
    CHECK(out[0] == 'Z');

    /* Malformed bytes render without reading past the end. */
    for (size_t cut = 0; cut < b.len; cut++) {
        const uint8_t *g = test_guarded(b.data, cut);
        gl_row_format(g, g + cut, out, sizeof out);
        CHECK(strlen(out) < sizeof out);
        CHECK(strstr(out, "<malformed>") != NULL);
    }
    gl_buf_free(&b);
}

TEST_MAIN(T(size1_agrees_with_reader), T(put_int_unpacks), T(put_uint_unpacks), T(put_double_unpacks), T(put_nil_bool_unpack),
          T(put_str_unpacks), T(put_array_map_unpack), T(reader_walks_msgpack_c_values),
          T(reader_accepts_long_forms), T(every_truncation_is_malformed), T(truncated_own_encodings),
          T(reserved_byte_c1), T(huge_counts_in_short_buffers), T(nesting_limit),
          T(many_siblings_are_not_deep), T(put_number_canonical), T(row_check_and_rows_valid), T(row_field),
          T(row_key_put), T(row_format))
