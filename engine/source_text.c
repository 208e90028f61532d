/* source_text.c: text files as rows, one row (line) per line; and the
 * splitting of every file source (text, csv, tsv, msgpack) into tasks.
 *
 * Splitting: the matched files are laid end to end and cut into tasks of
 * about equal bytes, so a large file becomes several byte ranges and many
 * small files share one task. A line belongs to the range its first byte
 * is in: a reader starting mid-file skips to the first line that starts in
 * its range, and reads past its end to finish its last line. The newline
 * is not part of the row.
 *
 * Some files cannot be cut (gl_text_whole_file): a gzip stream has no
 * seekable line starts, and a CSV record may hold newlines inside quotes
 * (a CSV file without a single quote character is cut after all: one read
 * at planning checks, and counts lines for its pieces), so such a file is
 * one piece [0, size) given to the task whose byte range
 * holds the file's middle byte. Files keep their order across tasks either
 * way, so task order is file order. A ".gz" file is read through zlib and
 * its lines are those of the decompressed stream. */
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
#include <zlib.h>

#define MIN_SPLIT (1u << 20)
#define MAX_SPLIT (64u << 20)

static bool has_magic(const char *s) { return strpbrk(s, "*?[") != NULL; }

static bool is_gz(const char *path)
{
    size_t n = strlen(path);
    return n >= 3 && !strcmp(path + n - 3, ".gz");
}

bool gl_text_whole_file(const gl_step *s, const char *path)
{
    return is_gz(path) || s->kind == GL_STEP_CSV || s->kind == GL_STEP_MSGPACK;
}

/* The source's name in messages: the method that made the step. */
static const char *who(const gl_step *s)
{
    if (s->kind == GL_STEP_CSV)
        return s->name && !strcmp(s->name, "tsv") ? "tsv" : "csv";
    return s->kind == GL_STEP_MSGPACK ? "msgpack" : "text";
}

static int add_file(gl_stage *st, const char *w, const char *path, uint64_t **sizes, gl_err *err)
{
    struct stat sb;
    if (stat(path, &sb))
        return gl_err_set(err, GL_EIO, "%s: cannot read '%s': %s", w, path, strerror(errno));
    if (S_ISDIR(sb.st_mode))
        return gl_err_set(err, GL_EIO, "%s: '%s' is a directory", w, path);
    char **f = realloc(st->files, (st->nfiles + 1) * sizeof *f);
    if (!f)
        return gl_err_set(err, GL_ENOMEM, "%s: out of memory", w);
    st->files = f;
    uint64_t *z = realloc(*sizes, (st->nfiles + 1) * sizeof *z);
    if (!z)
        return gl_err_set(err, GL_ENOMEM, "%s: out of memory", w);
    *sizes = z;
    if (!(f[st->nfiles] = strdup(path)))
        return gl_err_set(err, GL_ENOMEM, "%s: out of memory", w);
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

/* A CSV file with no quote character in it: every newline ends a record,
 * so it can be cut at lines as text is (one read at planning). A file no
 * bigger than the smallest split is not worth the read. */
static bool csv_cuttable(const char *path, uint64_t size)
{
    if (size <= MIN_SPLIT || is_gz(path))
        return false;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false; /* the reader will say why */
    static __thread char buf[1u << 16];
    bool quote = false;
    ssize_t n;
    while (!quote && (n = read(fd, buf, sizeof buf)) > 0)
        quote = memchr(buf, '"', (size_t)n) != NULL;
    close(fd);
    return !quote && n == 0;
}

/* Sets .line of the n pieces of one file (in file order): newlines before
 * each start - 1, counted in one pass. */
static void count_lines(const char *path, gl_piece *pcs[], uint32_t n)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    static __thread char buf[1u << 16];
    uint64_t pos = 0, lines = 0;
    uint32_t k = 0;
    while (k < n && pcs[k]->start == 0)
        pcs[k++]->line = 1;
    ssize_t got = 0;
    while (fd >= 0 && k < n && (got = read(fd, buf, sizeof buf)) > 0) {
        size_t off = 0;
        while (off < (size_t)got) {
            uint64_t at = pcs[k]->start - 1; /* the next boundary, a file offset */
            size_t stop = at < pos + (uint64_t)got ? (size_t)(at - pos) : (size_t)got;
            const char *p = buf + off, *e = buf + stop;
            while (p < e && (p = memchr(p, '\n', (size_t)(e - p)))) {
                lines++;
                p++;
            }
            off = stop;
            if (stop < (size_t)got) {
                while (k < n && pcs[k]->start - 1 == at)
                    pcs[k++]->line = 1 + lines;
                if (k == n)
                    break;
            }
        }
        pos += (uint64_t)got;
    }
    while (k < n)
        pcs[k++]->line = 1 + lines;
    if (fd >= 0)
        close(fd);
}

int gl_text_split(const gl_step *s, uint32_t workers, gl_stage *st, gl_err *err)
{
    uint64_t *sizes = NULL;
    const char *w = who(s);
    int rc = 0;
    for (uint32_t i = 0; i < s->npaths && !rc; i++) {
        const char *pat = s->paths[i];
        if (!has_magic(pat)) {
            rc = add_file(st, w, pat, &sizes, err);
            continue;
        }
        glob_t g;
        int gr = glob(pat, 0, NULL, &g);
        if (gr == GLOB_NOMATCH)
            rc = gl_err_set(err, GL_EIO, "%s: no file matches '%s'", w, pat);
        else if (gr)
            rc = gl_err_set(err, GL_EIO, "%s: cannot list '%s'", w, pat);
        for (size_t j = 0; !gr && j < g.gl_pathc && !rc; j++) {
            struct stat sb;
            if (stat(g.gl_pathv[j], &sb) == 0 && S_ISDIR(sb.st_mode))
                continue; /* a pattern like "dir/x*" may match directories: skip them */
            rc = add_file(st, w, g.gl_pathv[j], &sizes, err);
        }
        if (!gr)
            globfree(&g);
    }
    uint64_t total = 0;
    for (uint32_t i = 0; i < st->nfiles; i++)
        total += sizes[i];
    /* Whole files: gz, msgpack, and CSV unless it has no quote at all. */
    bool *whole = rc ? NULL : calloc(st->nfiles ? st->nfiles : 1, sizeof *whole);
    if (!rc && !whole)
        rc = gl_err_set(err, GL_ENOMEM, "%s: out of memory", w);
    for (uint32_t i = 0; !rc && i < st->nfiles; i++)
        whole[i] = gl_text_whole_file(s, st->files[i]) &&
                   !(s->kind == GL_STEP_CSV && csv_cuttable(st->files[i], sizes[i]));
    uint64_t ntasks;
    if (s->shards > 0) {
        ntasks = (uint64_t)s->shards;
    } else {
        /* Four tasks a worker; fewer when they would be under MIN_SPLIT,
         * more when over MAX_SPLIT; then rounded up to a multiple of the
         * workers: tasks are of equal size, and 9 on 2 workers take as long
         * as 10 (100,000,035 bytes made 9 before, the worker doing 5 of
         * them finishing ~10% after the other). */
        uint64_t want = (uint64_t)workers * 4;
        uint64_t most = (total + MIN_SPLIT - 1) / MIN_SPLIT, least = (total + MAX_SPLIT - 1) / MAX_SPLIT;
        ntasks = want < most ? want : most;
        if (ntasks < least)
            ntasks = least;
        if (ntasks > workers && ntasks % workers)
            ntasks += workers - ntasks % workers;
        /* Whole files only: more tasks than files would leave some empty. */
        uint64_t nwhole = 0;
        for (uint32_t i = 0; !rc && i < st->nfiles; i++)
            nwhole += whole[i];
        if (!rc && nwhole == st->nfiles && ntasks > nwhole)
            ntasks = nwhole;
        if (!ntasks)
            ntasks = 1;
    }
    if (!rc && !(st->first = calloc(ntasks + 1, sizeof *st->first)))
        rc = gl_err_set(err, GL_ENOMEM, "%s: out of memory", w);
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
                gl_piece pc = {f, 0, sizes[f], 0};
                if (whole[f]) {
                    /* Kept even when empty: a pipe stats as 0 bytes. */
                    uint64_t mid = a + sizes[f] / 2;
                    if (mid < lo || (mid >= hi && t + 1 < ntasks))
                        continue;
                } else {
                    if (b <= lo || a >= hi)
                        continue;
                    pc.start = (lo > a ? lo : a) - a;
                    pc.end = (hi < b ? hi : b) - a;
                }
                if (add_piece(st, &npieces, &cap, pc))
                    rc = gl_err_set(err, GL_ENOMEM, "%s: out of memory", w);
            }
        }
        st->first[ntasks] = npieces;
    }
    /* CSV files cut at lines: each piece learns the line it starts near. */
    for (uint32_t f = 0; !rc && s->kind == GL_STEP_CSV && f < st->nfiles; f++) {
        if (whole[f])
            continue;
        uint32_t n = 0;
        gl_piece **mine = malloc((npieces ? npieces : 1) * sizeof *mine);
        if (!mine) {
            rc = gl_err_set(err, GL_ENOMEM, "%s: out of memory", w);
            break;
        }
        for (uint32_t i = 0; i < npieces; i++)
            if (st->pieces[i].file == f)
                mine[n++] = &st->pieces[i];
        count_lines(st->files[f], mine, n);
        free(mine);
    }
    free(whole);
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

/* Reads up to READ_BYTES at file offset off (plain) or the next bytes of
 * the decompressed stream (gz) into io's tail. Returns the count, 0 at the
 * end, or a negative code with err set. */
static ssize_t fill(int fd, gzFile gz, uint64_t off, gl_buf *io, const char *path, gl_err *err)
{
    if (gz) {
        int n = gzread(gz, io->data + io->len, READ_BYTES);
        int zerr = Z_OK;
        const char *zmsg = n <= 0 ? gzerror(gz, &zerr) : NULL;
        /* zlib names a stream opened by gzdopen "<fd:N>": the path says more. */
        const char *named = zmsg && zmsg[0] == '<' ? strstr(zmsg, ">: ") : NULL;
        if (named)
            zmsg = named + 3;
        /* A stream cut short ends with Z_BUF_ERROR ("unexpected end of file"). */
        if (n < 0 || (n == 0 && zerr != Z_OK))
            return gl_err_set(err, GL_EIO, "text: '%s': %s", path,
                              zerr == Z_ERRNO ? strerror(errno) : zmsg);
        return n;
    }
    for (;;) {
        ssize_t got = pread(fd, io->data + io->len, READ_BYTES, (off_t)off);
        if (got >= 0)
            return got;
        if (errno != EINTR)
            return gl_err_set(err, GL_EIO, "text: cannot read '%s': %s", path, strerror(errno));
    }
}

static int read_piece(reader *r, const char *path, const gl_piece *pc, gl_buf *io, gl_err *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return gl_err_set(err, GL_EIO, "text: cannot read '%s': %s", path, strerror(errno));
    /* A gz file is always one whole piece: read the stream to its end. */
    gzFile gz = NULL;
    uint64_t off = pc->start, end = pc->end;
    if (is_gz(path)) {
        if (!(gz = gzdopen(fd, "rb"))) {
            close(fd);
            return gl_err_set(err, GL_ENOMEM, "text: out of memory");
        }
        gzbuffer(gz, 256u << 10);
        off = 0;
        end = UINT64_MAX;
    }
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
        ssize_t got = fill(fd, gz, off, io, path, err);
        if (got < 0) {
            rc = (int)got;
            break;
        }
        off += (uint64_t)got;
        io->len += (size_t)got;
        size_t pos = 0;
        for (;;) {
            if (line_start >= end && !skip) {
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
    if (gz)
        gzclose(gz); /* closes fd too */
    else
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
