/* source_msgpack.c: files of back-to-back msgpack rows (arrays), as save
 * writes them with format "msgpack"; ".gz" files are read through zlib.
 *
 * Invariants: each file is one piece (gl_text_whole_file), read front to
 * back in chunks; every row is checked with gl_row_check before it is
 * passed on, and batches (about GL_BATCH_BYTES) hold whole rows only,
 * handed on in place from the read buffer (no copy). Memory is the read buffer, which holds at most one
 * chunk plus one unfinished row; a row that is still incomplete past
 * ROW_MAX bytes (or that does not start as an array) is malformed, so a
 * corrupt file fails instead of being read whole into memory. A row that is
 * incomplete at the end of the file is reported at its first byte. */
#include "mpk.h"
#include "plan.h"
#include "row.h"
#include "infile.h"
#include "source.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#define CHUNK_BYTES (1u << 20)
#define ROW_MAX (256u << 20)

/* True if p starts an array header (fixarray, array 16, array 32). */
static bool array_head(uint8_t b) { return (b & 0xf0) == 0x90 || b == 0xdc || b == 0xdd; }

static int read_file(const char *path, gl_buf *io, gl_emit_fn emit, void *ctx, gl_err *err)
{
    gl_infile f;
    int rc = gl_infile_open(&f, "msgpack", path, err);
    if (rc)
        return rc;
    io->len = 0;
    uint64_t base = 0; /* file (stream) offset of io->data[0] */
    size_t want = CHUNK_BYTES;
    for (;;) {
        if (gl_buf_reserve(io, want)) {
            rc = gl_err_set(err, GL_ENOMEM, "msgpack: out of memory");
            break;
        }
        ssize_t got = gl_infile_read(&f, io->data + io->len, want, "msgpack", path, err);
        if (got < 0) {
            rc = (int)got;
            break;
        }
        io->len += (size_t)got;
        const uint8_t *p = io->data, *end = io->data + io->len, *start = p;
        uint64_t n = 0;
        for (;;) {
            uint32_t nf;
            const uint8_t *q = p < end && array_head(*p) ? gl_row_check(p, end, &nf) : NULL;
            if (q) {
                p = q;
                n++;
                if ((size_t)(p - start) >= GL_BATCH_BYTES) {
                    if ((rc = emit(ctx, start, (size_t)(p - start), n)))
                        break;
                    start = p;
                    n = 0;
                }
                continue;
            }
            /* Not a whole row: more bytes may finish it, unless it cannot be one. */
            bool broken = p < end && (!array_head(*p) || (size_t)(end - p) > ROW_MAX);
            if (broken || (got == 0 && p < end))
                rc = gl_err_set(err, GL_EINVAL, "msgpack: %s: malformed row at byte %" PRIu64, path,
                                base + (uint64_t)(p - io->data));
            break;
        }
        if (n && !rc)
            rc = emit(ctx, start, (size_t)(p - start), n);
        if (rc && !err->code)
            gl_err_set(err, rc, "msgpack: stopped reading '%s'", path);
        if (rc || got == 0)
            break;
        size_t used = (size_t)(p - io->data);
        memmove(io->data, p, io->len - used);
        io->len -= used;
        base += used;
        /* A row longer than a chunk: read as much again as is pending
         * before checking it again, so a long row is checked O(log) times. */
        want = io->len > CHUNK_BYTES ? io->len : CHUNK_BYTES;
    }
    gl_infile_close(&f);
    return rc;
}

int gl_msgpack_read(const gl_stage *st, uint32_t task, gl_emit_fn emit, void *ctx, gl_err *err)
{
    gl_buf io = {0};
    int rc = 0;
    for (uint32_t i = st->first[task]; i < st->first[task + 1] && !rc; i++)
        rc = read_file(st->files[st->pieces[i].file], &io, emit, ctx, err);
    gl_buf_free(&io);
    return rc;
}
