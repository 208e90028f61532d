/* test_agg.c: the slot table of agg.c (reduce_by_key and reduce).
 *
 * A slot is found by key value, not key bytes (1 and 1.0 share one), slots
 * are numbered in order of first appearance, and the table keeps working
 * through its rehashes. Random rows are checked against a plain list of
 * distinct keys searched with the order of compare.h. */
#include "test.h"

#include "agg.h"
#include "compare.h"
#include "mpk.h"
#include "row.h"

#include <math.h>

static void put_s(gl_buf *b, const char *s) { gl_mpk_put_str(b, s, strlen(s)); }

/* Slot lookups of the row in b (the whole buffer). */
static int64_t slot(gl_agg *a, const gl_buf *b) { return gl_agg_slot(a, b->data, b->len); }

static bool key_is(const gl_agg *a, uint32_t s, const void *bytes, size_t n)
{
    size_t len = 0;
    const uint8_t *k = gl_agg_key(a, s, &len);
    return len == n && (!n || !memcmp(k, bytes, n));
}

TEST(key_first_field)
{
    gl_keyspec k = {1, {1}};
    gl_agg *a = gl_agg_new(&k);
    REQUIRE(a);
    CHECK_EQ(gl_agg_nkeys(a), 1);
    CHECK_EQ(gl_agg_count(a), 0);
    gl_buf r = {0};
#define ROW(put1, s) (r.len = 0, gl_mpk_put_array(&r, 2), put1, put_s(&r, s), slot(a, &r))
    CHECK_EQ(ROW(gl_mpk_put_int(&r, 1), "x"), 0 * 2 + 1);          /* new slot 0 */
    CHECK_EQ(ROW(gl_mpk_put_int(&r, 2), "y"), 1 * 2 + 1);          /* new slot 1 */
    CHECK_EQ(ROW(gl_mpk_put_double(&r, 1.0), "z"), 0 * 2);         /* 1.0 is 1 */
    CHECK_EQ(ROW(gl_mpk_put_int(&r, 1), "w"), 0 * 2);              /* known */
    CHECK_EQ(ROW(gl_mpk_put_double(&r, 2.5), "w"), 2 * 2 + 1);
    CHECK_EQ(ROW(gl_mpk_put_double(&r, -0.0), "w"), 3 * 2 + 1);
    CHECK_EQ(ROW(gl_mpk_put_int(&r, 0), "w"), 3 * 2);              /* -0.0 is 0 */
    CHECK_EQ(ROW(put_s(&r, "1"), "w"), 4 * 2 + 1);                 /* "1" is not 1 */
    CHECK_EQ(ROW(gl_mpk_put_double(&r, NAN), "w"), 5 * 2 + 1);
    CHECK_EQ(ROW(gl_mpk_put_double(&r, -NAN), "w"), 5 * 2);        /* NaN equals NaN */
#undef ROW
    CHECK_EQ(gl_agg_count(a), 6);
    /* Keys keep the bytes of their first appearance. */
    CHECK(key_is(a, 0, "\x01", 1));
    CHECK(key_is(a, 1, "\x02", 1));
    CHECK(key_is(a, 4, "\xa1" "1", 2));
    size_t len;
    const uint8_t *kb = gl_agg_key(a, 3, &len);
    gl_mpk_head h;
    CHECK(len == 9 && gl_mpk_head_read(kb, kb + len, &h) == kb + 9 && h.num.kind == GL_NUM_DOUBLE &&
          signbit(h.num.v.d));
    /* A one-field row keyed on field 1, and a row missing it (nil). */
    r.len = 0;
    gl_mpk_put_array(&r, 1);
    gl_mpk_put_int(&r, 2);
    CHECK_EQ(slot(a, &r), 1 * 2);
    r.len = 0;
    gl_mpk_put_array(&r, 0);
    CHECK_EQ(slot(a, &r), 6 * 2 + 1);
    CHECK(key_is(a, 6, "\xc0", 1));
    r.len = 0;
    gl_mpk_put_array(&r, 1);
    gl_mpk_put_nil(&r);
    CHECK_EQ(slot(a, &r), 6 * 2);
    CHECK(gl_agg_bytes(a) > 0);
    gl_buf_free(&r);
    gl_agg_free(a);
}

TEST(key_two_fields_reversed)
{
    gl_keyspec k = {2, {2, 1}};
    gl_agg *a = gl_agg_new(&k);
    REQUIRE(a);
    CHECK_EQ(gl_agg_nkeys(a), 2);
    gl_buf r = {0};
#define ROW(x, s) (r.len = 0, gl_mpk_put_array(&r, 3), gl_mpk_put_int(&r, x), put_s(&r, s), \
                   gl_mpk_put_int(&r, 99), slot(a, &r))
    CHECK_EQ(ROW(1, "a"), 0 * 2 + 1);
    CHECK_EQ(ROW(1, "b"), 1 * 2 + 1);
    CHECK_EQ(ROW(2, "a"), 2 * 2 + 1);
    CHECK_EQ(ROW(1, "a"), 0 * 2);
    CHECK_EQ(ROW(2, "a"), 2 * 2);
#undef ROW
    /* Key bytes: field 2 then field 1. */
    CHECK(key_is(a, 0, "\xa1" "a" "\x01", 3));
    CHECK(key_is(a, 1, "\xa1" "b" "\x01", 3));
    CHECK(key_is(a, 2, "\xa1" "a" "\x02", 3));
    /* The third field is not part of the key; 1.0 in field 1 is 1. */
    r.len = 0;
    gl_mpk_put_array(&r, 2);
    gl_mpk_put_double(&r, 1.0);
    put_s(&r, "b");
    CHECK_EQ(slot(a, &r), 1 * 2);
    CHECK_EQ(gl_agg_count(a), 3);
    gl_buf_free(&r);
    gl_agg_free(a);
}

TEST(no_key_one_group)
{
    gl_keyspec k = {0};
    gl_agg *a = gl_agg_new(&k);
    REQUIRE(a);
    CHECK_EQ(gl_agg_nkeys(a), 0);
    gl_buf r = {0};
    for (int i = 0; i < 1000; i++) {
        r.len = 0;
        gl_mpk_put_array(&r, 1 + i % 3);
        for (int f = 0; f <= i % 3; f++)
            gl_mpk_put_int(&r, i * 7 + f);
        CHECK_EQ(slot(a, &r), i ? 0 : 1);
    }
    CHECK_EQ(gl_agg_count(a), 1);
    size_t len = 99;
    gl_agg_key(a, 0, &len);
    CHECK_EQ(len, 0);
    gl_buf_free(&r);
    gl_agg_free(a);
}

/* Far more keys than the first index holds: slots stay dense and in first
 * appearance order through every rehash, and the old keys are still found
 * (by integer and by an equal double). */
TEST(many_keys_rehash)
{
    enum { N = 100000 };
    gl_keyspec k = {1, {1}};
    gl_agg *a = gl_agg_new(&k);
    REQUIRE(a);
    gl_buf r = {0};
    size_t bytes0 = gl_agg_bytes(a);
    unsigned long bad = 0;
    for (int64_t i = 0; i < N; i++) {
        r.len = 0;
        gl_mpk_put_array(&r, 1);
        /* Spread out and mixed: ints, strings. */
        if (i % 2)
            gl_mpk_put_int(&r, (i * 2654435761) % 1000000007);
        else {
            char s[32];
            snprintf(s, sizeof s, "key-%" PRId64, i);
            put_s(&r, s);
        }
        bad += slot(a, &r) != i * 2 + 1;
    }
    CHECK_EQ(bad, 0);
    CHECK_EQ(gl_agg_count(a), N);
    CHECK(gl_agg_bytes(a) > bytes0);
    bad = 0;
    for (int64_t i = N - 1; i >= 0; i--) {
        r.len = 0;
        gl_mpk_put_array(&r, 1);
        if (i % 2) {
            gl_mpk_put_double(&r, (double)((i * 2654435761) % 1000000007));
        } else {
            char s[32];
            snprintf(s, sizeof s, "key-%" PRId64, i);
            put_s(&r, s);
        }
        bad += slot(a, &r) != i * 2;
        /* gl_agg_key gives back the first bytes seen (the integer, not the double). */
        size_t len;
        const uint8_t *kb = gl_agg_key(a, (uint32_t)i, &len);
        gl_mpk_head h;
        if (i % 2)
            bad += !gl_mpk_head_read(kb, kb + len, &h) || h.num.kind != GL_NUM_INT ||
                   h.num.v.i != (i * 2654435761) % 1000000007;
        else
            bad += len != r.len - 1 || memcmp(kb, r.data + 1, len);
    }
    CHECK_EQ(bad, 0);
    CHECK_EQ(gl_agg_count(a), N);
    gl_buf_free(&r);
    gl_agg_free(a);
}

/* A value from a small domain, in several encodings of equal values. */
static void gen_field(gl_buf *b)
{
    uint32_t v = test_below(40);
    switch (test_below(6)) {
    case 0: gl_mpk_put_int(b, v); break;
    case 1: gl_mpk_put_double(b, v); break;
    case 2: gl_mpk_put_double(b, v + 0.5); break;
    case 3: {
        char s[8];
        snprintf(s, sizeof s, "%u", v);
        put_s(b, s);
        break;
    }
    case 4: gl_mpk_put_nil(b); break;
    default:
        gl_mpk_put_array(b, 2);
        gl_mpk_put_int(b, v % 3);
        gl_mpk_put_double(b, v % 2);
        break;
    }
}

/* The table against a plain list of distinct keys. */
TEST(random_rows_against_a_list)
{
    const gl_keyspec specs[] = {{1, {1}}, {2, {2, 1}}, {0}, {2, {3, 2}}};
    enum { ROWS = 3000 };
    for (size_t s = 0; s < sizeof specs / sizeof specs[0]; s++) {
        const gl_keyspec *k = &specs[s];
        gl_agg *a = gl_agg_new(k);
        REQUIRE(a);
        gl_buf keys = {0}, r = {0};
        size_t *koff = malloc((ROWS + 1) * sizeof *koff);
        REQUIRE(koff);
        uint32_t nkeys = 0;
        unsigned long bad = 0;
        for (int i = 0; i < ROWS; i++) {
            r.len = 0;
            uint32_t nf = 1 + test_below(3);
            gl_mpk_put_array(&r, nf);
            for (uint32_t f = 0; f < nf; f++)
                gen_field(&r);
            /* Reference: the first listed key equal to this row's. */
            uint32_t want = nkeys;
            for (uint32_t j = 0; j < nkeys && want == nkeys; j++)
                if (!gl_row_key_cmp_bytes(r.data, r.data + r.len, k, keys.data + koff[j], keys.data + koff[j + 1]))
                    want = j;
            bool fresh = want == nkeys;
            if (fresh) {
                koff[nkeys] = keys.len;
                gl_row_key_put(&keys, r.data, r.data + r.len, k);
                koff[++nkeys] = keys.len;
            }
            bad += slot(a, &r) != (int64_t)want * 2 + fresh;
            /* Found again, with the hash given as a batch caller gives it. */
            uint64_t h = gl_agg_hash(a, r.data, r.len);
            gl_agg_prefetch(a, h);
            bad += gl_agg_find_hashed(a, r.data, r.len, h) != (int64_t)want;
            bad += gl_agg_find(a, r.data, r.len) != (int64_t)want;
        }
        CHECK_EQ(bad, 0);
        CHECK_EQ(gl_agg_count(a), nkeys);
        for (uint32_t j = 0; j < nkeys; j++)
            bad += !key_is(a, j, keys.data + koff[j], koff[j + 1] - koff[j]);
        CHECK_EQ(bad, 0);
        /* Enough keys and enough repeats to mean something. */
        if (k->n == 1)
            CHECK(nkeys > 100 && nkeys < ROWS / 4);
        free(koff);
        gl_buf_free(&keys);
        gl_buf_free(&r);
        gl_agg_free(a);
    }
}

/* Room made up front, before and between keys, keeps every key where it
 * was found. */
TEST(reserve_keeps_keys)
{
    gl_keyspec k = {1, {1}};
    gl_agg *a = gl_agg_new(&k);
    REQUIRE(a);
    gl_buf r = {0};
    unsigned long bad = 0;
    for (int i = 0; i < 6000; i++) {
        if (i == 0 || i == 100)
            REQUIRE(gl_agg_reserve(a, i == 0 ? 50 : 5000) == 0);
        r.len = 0;
        gl_mpk_put_array(&r, 1);
        gl_mpk_put_int(&r, i % 3000);
        bad += slot(a, &r) != (i < 3000 ? (int64_t)i * 2 + 1 : (int64_t)(i - 3000) * 2);
    }
    CHECK_EQ(bad, 0);
    CHECK_EQ(gl_agg_count(a), 3000);
    CHECK(gl_agg_reserve(a, 10) == 0); /* less than there is: nothing to do */
    CHECK(gl_agg_reserve(a, 2000000000u) == -1);
    gl_buf_free(&r);
    gl_agg_free(a);
}

/* A string key by its bytes finds the slot its row finds, whichever came
 * first and however the row encoded it (fixstr, str8, str16). */
TEST(string_key_without_a_row)
{
    gl_keyspec k = {1, {1}};
    gl_agg *a = gl_agg_new(&k);
    REQUIRE(a);
    gl_buf r = {0};
    char longs[300];
    memset(longs, 'x', sizeof longs);
    CHECK_EQ(gl_agg_slot_str(a, "the", 3), 0 * 2 + 1);
    r.len = 0;
    gl_mpk_put_array(&r, 2);
    put_s(&r, "the");
    gl_mpk_put_int(&r, 1);
    CHECK_EQ(slot(a, &r), 0 * 2);
    CHECK(key_is(a, 0, "\xa3" "the", 4));
    /* "dog" first as str8 (not canonical), then by bytes. */
    r.len = 0;
    gl_mpk_put_array(&r, 1);
    gl_buf_append(&r, "\xd9\x03" "dog", 5);
    CHECK_EQ(slot(a, &r), 1 * 2 + 1);
    CHECK_EQ(gl_agg_slot_str(a, "dog", 3), 1 * 2);
    CHECK_EQ(gl_agg_slot_str(a, "do", 2), 2 * 2 + 1);
    CHECK_EQ(gl_agg_slot_str(a, "", 0), 3 * 2 + 1);
    CHECK(key_is(a, 3, "\xa0", 1));
    CHECK_EQ(gl_agg_slot_str(a, longs, 40), 4 * 2 + 1);
    CHECK_EQ(gl_agg_slot_str(a, longs, 300), 5 * 2 + 1);
    r.len = 0;
    gl_mpk_put_array(&r, 1);
    gl_mpk_put_str(&r, longs, 300);
    CHECK_EQ(slot(a, &r), 5 * 2);
    /* A number is not the string of its digits. */
    r.len = 0;
    gl_mpk_put_array(&r, 1);
    gl_mpk_put_int(&r, 7);
    CHECK_EQ(slot(a, &r), 6 * 2 + 1);
    CHECK_EQ(gl_agg_slot_str(a, "7", 1), 7 * 2 + 1);
    /* Through rehashes, both ways. */
    unsigned long bad = 0;
    for (int i = 0; i < 20000; i++) {
        char w[16];
        int n = snprintf(w, sizeof w, "w%d", i);
        bad += gl_agg_slot_str(a, w, (size_t)n) != (int64_t)(8 + i) * 2 + 1;
    }
    for (int i = 0; i < 20000; i++) {
        char w[16];
        snprintf(w, sizeof w, "w%d", i);
        r.len = 0;
        gl_mpk_put_array(&r, 1);
        put_s(&r, w);
        bad += slot(a, &r) != (int64_t)(8 + i) * 2;
    }
    CHECK_EQ(bad, 0);
    gl_buf_free(&r);
    gl_agg_free(a);
}

/* An index entry holds a key's length up to 65534 bytes; longer keys
 * keep theirs in the slot. Keys of lengths around that limit, differing
 * only in their last byte, each keep their own slot through rehashes,
 * found by row and by bytes. */
TEST(long_keys)
{
    gl_keyspec k = {1, {1}};
    gl_agg *a = gl_agg_new(&k);
    REQUIRE(a);
    enum { BIG = 70000 };
    char *s = malloc(BIG + 1);
    REQUIRE(s);
    memset(s, 'k', BIG + 1);
    static const size_t lens[] = {65530, 65531, 65532, 65533, 65534, 65535, 65536, 65537, BIG};
    enum { NL = sizeof lens / sizeof lens[0] };
    gl_buf r = {0};
    uint32_t next = 0;
    for (size_t i = 0; i < NL; i++)
        for (char last = 'a'; last <= 'b'; last++) {
            s[lens[i] - 1] = last;
            CHECK_EQ(gl_agg_slot_str(a, s, lens[i]), (int64_t)next++ * 2 + 1);
            s[lens[i] - 1] = 'k';
        }
    for (int i = 0; i < 5000; i++) { /* rehashes */
        char w[16];
        int n = snprintf(w, sizeof w, "w%d", i);
        gl_agg_slot_str(a, w, (size_t)n);
    }
    next = 0;
    for (size_t i = 0; i < NL; i++)
        for (char last = 'a'; last <= 'b'; last++) {
            s[lens[i] - 1] = last;
            r.len = 0;
            gl_mpk_put_array(&r, 2);
            gl_mpk_put_str(&r, s, lens[i]);
            gl_mpk_put_int(&r, 1);
            CHECK_EQ(slot(a, &r), (int64_t)next * 2);
            CHECK_EQ(gl_agg_slot_str(a, s, lens[i]), (int64_t)next * 2);
            size_t len = 0;
            const uint8_t *key = gl_agg_key(a, next, &len);
            CHECK(len > lens[i] && !memcmp(key + len - lens[i], s, lens[i]));
            s[lens[i] - 1] = 'k';
            next++;
        }
    CHECK_EQ(gl_agg_count(a), next + 5000);
    free(s);
    gl_buf_free(&r);
    gl_agg_free(a);
}

TEST_MAIN(T(key_first_field), T(key_two_fields_reversed), T(no_key_one_group), T(many_keys_rehash),
          T(random_rows_against_a_list), T(string_key_without_a_row), T(reserve_keeps_keys), T(long_keys))
