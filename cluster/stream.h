/* stream.h: the rows of a shard as a stream of chunk messages (wire.h),
 * both ways: cut from a store's partition on the sending side, appended to
 * a store's cell on the receiving side.
 *
 * A piece holds whole rows, back to back, as a store chunk does, and is
 * sent as it lies in the store: store chunks are gathered up to about
 * GL_STREAM_PIECE bytes (one copy into the piece), and one chunk already
 * that big, up to GL_STREAM_MAX, goes out as it is (no copy). No row is
 * looked at, with one exception: a store chunk over GL_STREAM_MAX (one
 * append of a huge batch) is cut at row boundaries, and a single row over
 * it is cut anywhere into pieces that say nrows 0, the last saying 1. The
 * receiver keeps such pieces until the row is whole, so a store never
 * holds part of a row. So a piece is at most GL_STREAM_MAX bytes, well
 * within the wire's GL_WIRE_CHUNK_MAX. */
#ifndef GL_STREAM_H
#define GL_STREAM_H

#include "buf.h"
#include "err.h"
#include "store.h"

#include <stdbool.h>
#include <stdint.h>

#define GL_STREAM_PIECE (1u << 20) /* the size pieces are gathered to */
#define GL_STREAM_MAX (4u << 20)   /* the largest piece */

typedef struct gl_stream_out {
    gl_reader *r;
    const gl_chunk *c; /* a store chunk to send next, borrowed from r */
    size_t off;        /* where in c the next piece starts, when c is cut */
    size_t rowleft;    /* bytes left of a row cut anywhere */
    gl_buf buf;        /* a gathered piece */
} gl_stream_out;

/* Starts reading partition part of o (every task's column, in order).
 * o must not change while the stream reads it. 0 or GL_ENOMEM. */
int gl_stream_out_open(gl_stream_out *s, const gl_output *o, uint32_t part, gl_err *err);

/* The next piece: 1 with *p (borrowed until the next call), *n and *nrows
 * set; 0 at the end; or an error (a store that cannot be read). */
int gl_stream_out_next(gl_stream_out *s, const uint8_t **p, size_t *n, uint64_t *nrows, gl_err *err);

void gl_stream_out_close(gl_stream_out *s);

/* The receiving side of one stream: pieces of a row cut in pieces wait
 * here. */
typedef struct gl_stream_in {
    gl_buf carry;
    uint32_t part, task; /* the cell the carried row belongs to */
} gl_stream_in;

/* Appends a piece to cell (part, task) of o. 0, GL_EINVAL (a piece that
 * continues a row of another cell, or a cell o does not have), or the
 * store's error. */
int gl_stream_in_put(gl_stream_in *s, gl_output *o, uint32_t part, uint32_t task, const uint8_t *p, size_t n,
                     uint64_t nrows, gl_err *err);

/* Whether a row is cut short (its stream ended inside it). */
static inline bool gl_stream_in_partial(const gl_stream_in *s) { return s->carry.len > 0; }

void gl_stream_in_free(gl_stream_in *s);

#endif
