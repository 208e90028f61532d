/* test_stream.c: a shard's rows as chunk pieces and back (cluster/stream.c).
 *
 * Partitions of every shape go out as pieces and come back the same bytes
 * and row counts: many small store chunks (gathered), a chunk between the
 * gathering size and the bound (sent as it lies), an append of a huge
 * batch (cut at rows), a single row over the bound (cut anywhere, nrows 0
 * until its last piece). Every piece stays within the wire's bound, and a
 * receiver refuses pieces that don't fit. */
#include "test.h"

#include "mpk.h"
#include "stream.h"

/* n rows (i, "x" * width) from row first, back to back. */
static void rows(gl_buf *b, uint64_t first, uint64_t n, size_t width)
{
    char *pad = malloc(width + 1);
    memset(pad, 'x', width);
    for (uint64_t i = 0; i < n; i++) {
        gl_mpk_put_array(b, 2);
        gl_mpk_put_uint(b, first + i);
        gl_mpk_put_str(b, pad, width);
    }
    free(pad);
}

static void all_bytes(const gl_output *o, uint32_t part, gl_buf *out, uint64_t *nrows)
{
    gl_reader *r = gl_reader_new(o, part);
    const gl_chunk *c;
    *nrows = 0;
    while ((c = gl_reader_next(r))) {
        gl_buf_append(out, c->data, c->len);
        *nrows += c->nrows;
    }
    gl_reader_free(r);
}

/* Streams partition 0 of from into cell (0, 1) of a fresh output and
 * checks the bytes, the counts and the pieces' sizes; returns the pieces. */
static int roundtrip(const gl_output *from)
{
    gl_output *to = gl_output_new(1, 2, NULL, false);
    gl_stream_out so;
    gl_stream_in si = {0};
    gl_err err = {0};
    if (!CHECK(gl_stream_out_open(&so, from, 0, &err) == 0))
        return 0;
    const uint8_t *p;
    size_t n;
    uint64_t nrows;
    int k, pieces = 0;
    while ((k = gl_stream_out_next(&so, &p, &n, &nrows, &err)) == 1) {
        pieces++;
        CHECK(n > 0 && n <= GL_STREAM_MAX);
        CHECK_EQ(0, gl_stream_in_put(&si, to, 0, 1, p, n, nrows, &err));
    }
    CHECK_EQ(0, k);
    CHECK(!gl_stream_in_partial(&si));
    gl_buf a = {0}, b = {0};
    uint64_t ra, rb;
    all_bytes(from, 0, &a, &ra);
    all_bytes(to, 0, &b, &rb);
    CHECK_EQ(ra, rb);
    CHECK_EQ(gl_output_part_rows(from, 0), gl_output_cell(to, 0, 1)->rows);
    CHECK_MEM(a.data, a.len, b.data, b.len);
    gl_buf_free(&a);
    gl_buf_free(&b);
    gl_stream_out_close(&so);
    gl_stream_in_free(&si);
    gl_output_free(to);
    return pieces;
}

TEST(small_chunks_gathered)
{
    gl_output *o = gl_output_new(1, 1, NULL, false);
    gl_err err = {0};
    uint64_t at = 0;
    for (int i = 0; i < 2000; i++) {
        gl_buf b = {0};
        uint64_t n = 1 + test_below(40);
        rows(&b, at, n, test_below(100));
        at += n;
        REQUIRE(gl_output_append(o, 0, 0, b.data, b.len, n, &err) == 0);
        gl_buf_free(&b);
    }
    uint64_t bytes = gl_output_part_bytes(o, 0);
    int pieces = roundtrip(o);
    /* about one piece per GL_STREAM_PIECE */
    CHECK(pieces <= (int)(bytes / GL_STREAM_PIECE) + 1);
    gl_output_free(o);
    /* an empty partition: no piece */
    o = gl_output_new(1, 1, NULL, false);
    CHECK_EQ(0, roundtrip(o));
    gl_output_free(o);
}

/* Appends n rows (first.., width) to partition 0 of o as one batch. */
static void add(gl_output *o, uint64_t first, uint64_t n, size_t width)
{
    gl_buf b = {0};
    gl_err err = {0};
    rows(&b, first, n, width);
    CHECK_EQ(0, gl_output_append(o, 0, 0, b.data, b.len, n, &err));
    gl_buf_free(&b);
}

TEST(big_chunks)
{
    gl_output *o = gl_output_new(1, 1, NULL, false);
    /* small rows, then a 3 MB append (one chunk, sent as it lies), small
     * rows, a 20 MB append (cut at rows), one row of 18 MB (cut anywhere),
     * one of 2 MB (sent whole), and small rows again */
    add(o, 0, 10, 50);
    add(o, 10, 3000, 1000);
    add(o, 3010, 5, 10);
    add(o, 3015, 20000, 1000);
    add(o, 23015, 1, 18u << 20);
    add(o, 23016, 1, 2u << 20);
    add(o, 23017, 7, 10);
    CHECK(roundtrip(o) > 30);
    gl_output_free(o);
}

TEST(receiver_refuses)
{
    gl_output *o = gl_output_new(2, 2, NULL, false);
    gl_stream_in si = {0};
    gl_err err = {0};
    gl_buf b = {0};
    rows(&b, 0, 1, 10);
    CHECK_EQ(GL_EINVAL, gl_stream_in_put(&si, o, 2, 0, b.data, b.len, 1, &err));
    CHECK(strstr(err.msg, "partition 2 of task 0") != NULL);
    CHECK_EQ(GL_EINVAL, gl_stream_in_put(&si, o, 0, 2, b.data, b.len, 1, &err));
    /* a row begun in one cell can't go on in another */
    CHECK_EQ(0, gl_stream_in_put(&si, o, 0, 0, b.data, 3, 0, &err));
    CHECK(gl_stream_in_partial(&si));
    CHECK_EQ(GL_EINVAL, gl_stream_in_put(&si, o, 1, 0, b.data + 3, b.len - 3, 1, &err));
    CHECK_EQ(0, gl_stream_in_put(&si, o, 0, 0, b.data + 3, b.len - 3, 1, &err));
    CHECK(!gl_stream_in_partial(&si));
    CHECK_EQ(1u, gl_output_cell(o, 0, 0)->rows);
    CHECK_EQ(b.len, gl_output_cell(o, 0, 0)->bytes);
    gl_buf_free(&b);
    gl_stream_in_free(&si);
    gl_output_free(o);
}

TEST_MAIN(T(small_chunks_gathered), T(big_chunks), T(receiver_refuses))
