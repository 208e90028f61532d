/* test_shard.c: an agent's shard store (cluster/shard.c), without sockets.
 *
 * A put becomes a shard only when it commits with a result that counts
 * what it received; an aborted put or a short one leaves nothing; a rerun
 * replaces the shard; a drop deletes a job's shards and nothing else, but
 * the kept ones, which go at unkeep or with their keeper; the stored bytes
 * follow, and spilled shards leave the LMDB file reusable.
 * Serving is covered end to end by spec/cluster_run_spec.lua. */
#include "test.h"

#include "mpk.h"
#include "shard.h"

/* n rows of width bytes, back to back. */
static void rows(gl_buf *b, uint64_t n, size_t width)
{
    char pad[4096];
    memset(pad, 'r', sizeof pad);
    for (uint64_t i = 0; i < n; i++) {
        gl_mpk_put_array(b, 2);
        gl_mpk_put_uint(b, i);
        gl_mpk_put_str(b, pad, width);
    }
}

/* A result payload (stage.h) counting rows[p] and bytes[p] per partition. */
static void result(gl_buf *b, uint32_t nparts, const uint64_t *nrows, const uint64_t *bytes)
{
    gl_mpk_put_array(b, 4);
    gl_mpk_put_array(b, nparts);
    for (uint32_t p = 0; p < nparts; p++) {
        gl_mpk_put_array(b, 2);
        gl_mpk_put_uint(b, nrows[p]);
        gl_mpk_put_uint(b, bytes[p]);
    }
    gl_mpk_put_array(b, 0);
    gl_mpk_put_uint(b, 0);
    gl_mpk_put_uint(b, 0);
}

/* Puts n rows of width into each of 2 partitions of (job, stage, task) and
 * commits, counting `extra` rows more than were sent. Returns commit's code. */
static int put_in(gl_shards *s, uint64_t job, uint32_t stage, uint32_t task, uint64_t n, size_t width,
                  uint64_t extra)
{
    gl_err err = {0};
    gl_shard_put *p = gl_shard_put_new(s, job, stage, task, 2, false, &err);
    if (!CHECK(p))
        return -1;
    gl_buf b = {0}, r = {0};
    rows(&b, n, width);
    uint64_t nrows[2] = {n + extra, n}, bytes[2] = {b.len, b.len};
    for (uint32_t part = 0; part < 2; part++)
        CHECK_EQ(0, gl_shard_put_rows(p, part, b.data, b.len, n, &err));
    result(&r, 2, nrows, bytes);
    int rc = gl_shard_put_commit(p, r.data, r.len, &err);
    gl_buf_free(&b);
    gl_buf_free(&r);
    return rc;
}

static int put(gl_shards *s, uint64_t job, uint32_t task, uint64_t n, size_t width, uint64_t extra)
{
    return put_in(s, job, 0, task, n, width, extra);
}

/* The shards of an agent of `memory` bytes, in a new directory (its path
 * into dir); NULL when they can't be made. */
static gl_shards *shards_in(char *dir, size_t max, uint64_t memory)
{
    gl_err err = {0};
    if (!test_tmpdir(dir, max, "shard"))
        return NULL;
    gl_shards *s = gl_shards_new(memory, dir, &err);
    if (!s)
        fprintf(stderr, "  %s\n", err.msg);
    return s;
}

TEST(commit_replace_drop)
{
    gl_err err = {0};
    char dir[256];
    gl_shards *s = shards_in(dir, sizeof dir, 64u << 20);
    REQUIRE(s);
    CHECK_EQ(0u, gl_shards_stored(s));
    CHECK_EQ(0, put(s, 1, 0, 100, 10, 0));
    uint64_t one = gl_shards_stored(s);
    CHECK(one > 2000);
    CHECK_EQ(0, put(s, 1, 1, 100, 10, 0));
    CHECK_EQ(2 * one, gl_shards_stored(s));
    /* a rerun of task 1 replaces its shard */
    CHECK_EQ(0, put(s, 1, 1, 100, 10, 0));
    CHECK_EQ(2 * one, gl_shards_stored(s));
    /* a result that counts rows the put did not get: nothing kept */
    CHECK_EQ(GL_EINVAL, put(s, 2, 0, 100, 10, 1));
    CHECK_EQ(2 * one, gl_shards_stored(s));
    /* an aborted put: nothing kept */
    gl_shard_put *p = gl_shard_put_new(s, 2, 0, 0, 1, false, &err);
    gl_buf b = {0};
    rows(&b, 5, 10);
    CHECK_EQ(0, gl_shard_put_rows(p, 0, b.data, b.len, 5, &err));
    /* a partition the shard does not have */
    CHECK_EQ(GL_EINVAL, gl_shard_put_rows(p, 1, b.data, b.len, 5, &err));
    gl_shard_put_abort(p);
    gl_buf_free(&b);
    CHECK_EQ(2 * one, gl_shards_stored(s));
    /* a job of its own, then drops: only the job named goes */
    CHECK_EQ(0, put(s, 3, 0, 100, 10, 0));
    gl_shards_drop(s, 1);
    CHECK_EQ(one, gl_shards_stored(s));
    gl_shards_drop(s, 3);
    CHECK_EQ(0u, gl_shards_stored(s));
    gl_shards_free(s);
    CHECK_EQ(0, test_rmtree(dir));
}

/* Shards past the budget go to LMDB; dropped, their room is used again. */
TEST(spilled_room_reused)
{
    char dir[256];
    gl_shards *s = shards_in(dir, sizeof dir, 2u << 20);
    REQUIRE(s);
    char path[300];
    snprintf(path, sizeof path, "%s/data.mdb", dir);
    long long size[3] = {0};
    for (int round = 0; round < 3; round++) {
        for (uint32_t t = 0; t < 4; t++)
            CHECK_EQ(0, put(s, 10 + (uint64_t)round, t, 2000, 1000, 0)); /* 2 x 2 MB each */
        CHECK(gl_shards_stored(s) > (15u << 20));
        gl_shards_drop(s, 10 + (uint64_t)round);
        CHECK_EQ(0u, gl_shards_stored(s));
        FILE *f = fopen(path, "rb");
        if (CHECK(f)) {
            fseek(f, 0, SEEK_END);
            size[round] = ftell(f);
            fclose(f);
        }
    }
    /* LMDB reuses a freed page once no transaction can see it, so the
     * second round may add some; the third adds nothing */
    CHECK(size[0] > (8 << 20));
    if (!CHECK(size[1] <= size[0] + size[0] / 2 && size[2] <= size[1]))
        fprintf(stderr, "  data.mdb: %lld, %lld, %lld bytes\n", size[0], size[1], size[2]);
    gl_shards_free(s);
    CHECK_EQ(0, test_rmtree(dir));
}

/* Kept shards outlive their job's drop; they go at unkeep, or with the
 * connection that kept them (a driver's session). No socket: a connection
 * is only a key here. */
TEST(keep_unkeep_gone)
{
    gl_err err = {0};
    char dir[256];
    gl_shards *s = shards_in(dir, sizeof dir, 64u << 20);
    REQUIRE(s);
    gl_conn a, b;
    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    strcpy(a.hs.role, "driver");
    strcpy(b.hs.role, "driver");
    CHECK_EQ(0, put_in(s, 1, 0, 0, 100, 10, 0));
    uint64_t one = gl_shards_stored(s);
    CHECK_EQ(0, put_in(s, 1, 0, 1, 100, 10, 0));
    CHECK_EQ(0, put_in(s, 1, 1, 0, 100, 10, 0));
    CHECK_EQ(0, put_in(s, 2, 3, 0, 100, 10, 0));
    CHECK_EQ(4 * one, gl_shards_stored(s));
    /* a keeps stage 0 of job 1, b stage 3 of job 2 */
    CHECK_EQ(0, gl_shards_keep(s, &a, 1, 0, true, &err));
    CHECK_EQ(0, gl_shards_keep(s, &b, 2, 3, true, &err));
    gl_shards_drop(s, 1);
    gl_shards_drop(s, 2);
    CHECK_EQ(3 * one, gl_shards_stored(s));
    /* unkeep by another connection, or of another stage: nothing goes */
    CHECK_EQ(0, gl_shards_keep(s, &b, 1, 0, false, &err));
    CHECK_EQ(0, gl_shards_keep(s, &a, 1, 1, false, &err));
    CHECK_EQ(3 * one, gl_shards_stored(s));
    CHECK_EQ(0, gl_shards_keep(s, &b, 2, 3, false, &err));
    CHECK_EQ(2 * one, gl_shards_stored(s));
    /* a's connection ends: what it kept goes */
    gl_shards_gone(s, &a);
    CHECK_EQ(0u, gl_shards_stored(s));
    gl_shards_gone(s, &b);
    gl_shards_free(s);
    CHECK_EQ(0, test_rmtree(dir));
}

TEST_MAIN(T(commit_replace_drop), T(spilled_room_reused), T(keep_unkeep_gone))
