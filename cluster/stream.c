/* stream.c: a shard's rows as chunk pieces and back (stream.h).
 *
 * The sender reads the store a chunk at a time; a chunk is borrowed until
 * the reader's next call, so a big chunk met while gathering is kept in
 * s->c and sent by the next call, before the reader moves on. */
#include "stream.h"

#include "mpk.h"

int gl_stream_out_open(gl_stream_out *s, const gl_output *o, uint32_t part, gl_err *err)
{
    *s = (gl_stream_out){0};
    if (!(s->r = gl_reader_new(o, part)))
        return gl_err_set(err, GL_ENOMEM, "out of memory reading a shard");
    return 0;
}

/* The next piece of s->c, a chunk over the bound, from s->off: whole rows
 * up to GL_STREAM_PIECE bytes, or a part of one row over the bound. */
static int cut(gl_stream_out *s, const uint8_t **p, size_t *n, uint64_t *nrows, gl_err *err)
{
    const uint8_t *at = s->c->data + s->off, *end = s->c->data + s->c->len, *q = at;
    if (!s->rowleft) {
        uint64_t rows = 0;
        while (q < end) {
            const uint8_t *next = gl_mpk_skip(q, end);
            if (!next)
                return gl_err_set(err, GL_EIO, "a stored chunk does not hold whole rows");
            if (rows && (size_t)(next - at) > GL_STREAM_PIECE)
                break;
            q = next;
            rows++;
            if ((size_t)(q - at) >= GL_STREAM_PIECE)
                break;
        }
        if (rows > 1 || (size_t)(q - at) <= GL_STREAM_MAX) {
            *p = at;
            *n = (size_t)(q - at);
            *nrows = rows;
            s->off += *n;
            return 1;
        }
        s->rowleft = (size_t)(q - at); /* one row over the bound: in pieces */
    }
    *p = at;
    *n = s->rowleft < GL_STREAM_PIECE ? s->rowleft : GL_STREAM_PIECE;
    s->rowleft -= *n;
    *nrows = s->rowleft ? 0 : 1;
    s->off += *n;
    return 1;
}

int gl_stream_out_next(gl_stream_out *s, const uint8_t **p, size_t *n, uint64_t *nrows, gl_err *err)
{
    if (s->c && s->c->len <= GL_STREAM_MAX) {
        /* a big chunk met while gathering: whole, as it lies */
        *p = s->c->data;
        *n = s->c->len;
        *nrows = s->c->nrows;
        s->c = NULL;
        return 1;
    }
    if (s->c && s->off < s->c->len)
        return cut(s, p, n, nrows, err);
    s->c = NULL;
    s->buf.len = 0;
    uint64_t rows = 0;
    const gl_chunk *c;
    while ((c = gl_reader_next(s->r))) {
        if (!c->len)
            continue;
        if (c->len >= GL_STREAM_PIECE) {
            s->c = c;
            s->off = 0;
            if (s->buf.len)
                break; /* the gathered rows first; c goes next call */
            return gl_stream_out_next(s, p, n, nrows, err);
        }
        if (gl_buf_append(&s->buf, c->data, c->len))
            return gl_err_set(err, GL_ENOMEM, "out of memory reading a shard");
        rows += c->nrows;
        if (s->buf.len >= GL_STREAM_PIECE)
            break;
    }
    if (!c && gl_reader_error(s->r))
        return gl_err_set(err, GL_EIO, "%s", gl_reader_error(s->r));
    if (!s->buf.len)
        return 0;
    *p = s->buf.data;
    *n = s->buf.len;
    *nrows = rows;
    return 1;
}

void gl_stream_out_close(gl_stream_out *s)
{
    gl_reader_free(s->r);
    gl_buf_free(&s->buf);
    *s = (gl_stream_out){0};
}

int gl_stream_in_put(gl_stream_in *s, gl_output *o, uint32_t part, uint32_t task, const uint8_t *p, size_t n,
                     uint64_t nrows, gl_err *err)
{
    if (part >= o->nparts || task >= o->ntasks)
        return gl_err_set(err, GL_EINVAL, "rows for partition %u of task %u, which the stage does not have", part,
                          task);
    if (s->carry.len && (s->part != part || s->task != task))
        return gl_err_set(err, GL_EINVAL, "rows of another shard in the middle of a row");
    if (!nrows) {
        /* a piece of a row: kept until the piece that ends it */
        if (gl_buf_append(&s->carry, p, n))
            return gl_err_set(err, GL_ENOMEM, "out of memory receiving rows");
        s->part = part;
        s->task = task;
        return 0;
    }
    if (!s->carry.len)
        return gl_output_append(o, part, task, p, n, nrows, err);
    if (gl_buf_append(&s->carry, p, n))
        return gl_err_set(err, GL_ENOMEM, "out of memory receiving rows");
    int rc = gl_output_append(o, part, task, s->carry.data, s->carry.len, nrows, err);
    gl_buf_free(&s->carry);
    return rc;
}

void gl_stream_in_free(gl_stream_in *s) { gl_buf_free(&s->carry); }
