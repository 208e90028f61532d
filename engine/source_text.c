/* source_text.c: text files as rows, one row (line) per line.
 *
 * Splitting: the matched files are laid end to end and cut into tasks of
 * about equal bytes, so a large file becomes several byte ranges and many
 * small files share one task. A line belongs to the range its first byte
 * is in: a reader starting mid-file skips to the first line that starts in
 * its range, and reads past its end to finish its last line. The newline
 * is not part of the row. */
#include "mpk.h"
#include "plan.h"
#include "source.h"

#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MIN_SPLIT (1u << 20)
#define MAX_SPLIT (64u << 20)

static bool has_magic(const char *s) { return strpbrk(s, "*?[") != NULL; }

static int add_file(gl_stage *st, const char *path, uint64_t **sizes, gl_err *err)
{
    struct stat sb;
    if (stat(path, &sb))
        return gl_err_set(err, GL_EIO, "text: cannot read '%s': %s", path, strerror(errno));
    if (S_ISDIR(sb.st_mode))
        return gl_err_set(err, GL_EIO, "text: '%s' is a directory", path);
    char **f = realloc(st->files, (st->nfiles + 1) * sizeof *f);
    if (!f)
        return gl_err_set(err, GL_ENOMEM, "text: out of memory");
    st->files = f;
    uint64_t *z = realloc(*sizes, (st->nfiles + 1) * sizeof *z);
    if (!z)
        return gl_err_set(err, GL_ENOMEM, "text: out of memory");
    *sizes = z;
    if (!(f[st->nfiles] = strdup(path)))
        return gl_err_set(err, GL_ENOMEM, "text: out of memory");
    z[st->nfiles++] = (uint64_t)sb.st_size;
    return 0;
}

static int add_piece(gl_stage *st, uint32_t *n, uint32_t *cap, gl_piece pc)
{
    if (*n == *cap) {
        *cap = *cap ? *cap * 2 : 16;
        gl_piece *p = realloc(st->pieces, *cap * sizeof *p);
        if (!p)
            return -1;
        st->pieces = p;
    }
    st->pieces[(*n)++] = pc;
    return 0;
}

int gl_text_split(const gl_step *s, uint32_t workers, gl_stage *st, gl_err *err)
{
    uint64_t *sizes = NULL;
    int rc = 0;
    for (uint32_t i = 0; i < s->npaths && !rc; i++) {
        const char *pat = s->paths[i];
        if (!has_magic(pat)) {
            rc = add_file(st, pat, &sizes, err);
            continue;
        }
        glob_t g;
        int gr = glob(pat, 0, NULL, &g);
        if (gr == GLOB_NOMATCH)
            rc = gl_err_set(err, GL_EIO, "text: no file matches '%s'", pat);
        else if (gr)
            rc = gl_err_set(err, GL_EIO, "text: cannot list '%s'", pat);
        for (size_t j = 0; !gr && j < g.gl_pathc && !rc; j++) {
            struct stat sb;
            if (stat(g.gl_pathv[j], &sb) == 0 && S_ISDIR(sb.st_mode))
                continue; /* a pattern like "dir/x*" may match directories: skip them */
            rc = add_file(st, g.gl_pathv[j], &sizes, err);
        }
        if (!gr)
            globfree(&g);
    }
    uint64_t total = 0;
    for (uint32_t i = 0; i < st->nfiles; i++)
        total += sizes[i];
    uint64_t ntasks;
    if (s->shards > 0) {
        ntasks = (uint64_t)s->shards;
    } else {
        uint64_t split = total / ((uint64_t)workers * 4);
        split = split < MIN_SPLIT ? MIN_SPLIT : split > MAX_SPLIT ? MAX_SPLIT : split;
        ntasks = (total + split - 1) / split;
        if (!ntasks)
            ntasks = 1;
    }
    if (!rc && !(st->first = calloc(ntasks + 1, sizeof *st->first)))
        rc = gl_err_set(err, GL_ENOMEM, "text: out of memory");
    uint32_t cap = 0, npieces = 0;
    if (!rc) {
        /* Task t takes bytes [t*total/ntasks, (t+1)*total/ntasks) of the
         * files laid end to end. */
        st->ntasks = (uint32_t)ntasks;
        for (uint64_t t = 0; t < ntasks && !rc; t++) {
            uint64_t lo = total * t / ntasks, hi = total * (t + 1) / ntasks;
            uint64_t fbase = 0;
            st->first[t] = npieces;
            for (uint32_t f = 0; f < st->nfiles && !rc; f++) {
                uint64_t a = fbase, b = fbase + sizes[f];
                fbase = b;
                if (b <= lo || a >= hi)
                    continue;
                gl_piece pc = {f, (lo > a ? lo : a) - a, (hi < b ? hi : b) - a};
                if (add_piece(st, &npieces, &cap, pc))
                    rc = gl_err_set(err, GL_ENOMEM, "text: out of memory");
            }
        }
        st->first[ntasks] = npieces;
    }
    free(sizes);
    return rc;
}

typedef struct reader {
    gl_buf batch;
    uint64_t nrows;
    gl_emit_fn emit;
    void *ctx;
} reader;

static int line(reader *r, const uint8_t *p, size_t n)
{
    if (gl_mpk_put_array(&r->batch, 1) || gl_mpk_put_str(&r->batch, p, n))
        return GL_ENOMEM;
    r->nrows++;
    if (r->batch.len >= GL_BATCH_BYTES) {
        int rc = r->emit(r->ctx, r->batch.data, r->batch.len, r->nrows);
        r->batch.len = 0;
        r->nrows = 0;
        return rc;
    }
    return 0;
}

#define READ_BYTES (1u << 20)

static int read_piece(reader *r, const char *path, const gl_piece *pc, gl_buf *io, gl_err *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return gl_err_set(err, GL_EIO, "text: cannot read '%s': %s", path, strerror(errno));
    uint64_t off = pc->start;
    bool skip = false; /* skipping the line that began before our range */
    if (off > 0) {
        off--;
        skip = true;
    }
    int rc = 0;
    io->len = 0;
    uint64_t line_start = off; /* file offset of io->data[0] */
    bool done = false;
    while (!done && !rc) {
        if (gl_buf_reserve(io, READ_BYTES)) {
            rc = gl_err_set(err, GL_ENOMEM, "text: out of memory");
            break;
        }
        ssize_t got = pread(fd, io->data + io->len, READ_BYTES, (off_t)off);
        if (got < 0) {
            if (errno == EINTR)
                continue;
            rc = gl_err_set(err, GL_EIO, "text: cannot read '%s': %s", path, strerror(errno));
            break;
        }
        off += (uint64_t)got;
        io->len += (size_t)got;
        size_t pos = 0;
        for (;;) {
            if (line_start >= pc->end && !skip) {
                done = true;
                break;
            }
            uint8_t *nl = memchr(io->data + pos, '\n', io->len - pos);
            if (!nl) {
                if (got == 0 && pos < io->len && !skip)
                    rc = line(r, io->data + pos, io->len - pos); /* last line, no newline */
                if (got == 0)
                    done = true;
                break;
            }
            size_t n = (size_t)(nl - (io->data + pos));
            if (skip)
                skip = false;
            else if ((rc = line(r, io->data + pos, n)))
                break;
            pos += n + 1;
            line_start += n + 1;
        }
        memmove(io->data, io->data + pos, io->len - pos);
        io->len -= pos;
    }
    close(fd);
    if (rc && !err->code)
        gl_err_set(err, rc, "text: stopped reading '%s'", path);
    return rc;
}

int gl_text_read(const gl_stage *st, uint32_t task, gl_emit_fn emit, void *ctx, gl_err *err)
{
    reader r = {.emit = emit, .ctx = ctx};
    gl_buf io = {0};
    int rc = 0;
    for (uint32_t i = st->first[task]; i < st->first[task + 1] && !rc; i++)
        rc = read_piece(&r, st->files[st->pieces[i].file], &st->pieces[i], &io, err);
    if (!rc && r.nrows)
        rc = emit(ctx, r.batch.data, r.batch.len, r.nrows);
    gl_buf_free(&r.batch);
    gl_buf_free(&io);
    return rc;
}
