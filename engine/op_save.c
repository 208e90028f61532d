/* op_save.c: the GL_OP_SAVE op (Dataset:save) writes every row it gets to
 * a file and emits nothing downstream; and gl_save_remove, which the driver
 * uses to clear a failed or replaced output.
 *
 * Files. The step's `path` is a temporary name the driver picked; the
 * driver renames it into place only when the whole run succeeded, and
 * removes it (gl_save_remove) when the run failed, so a reader never sees a
 * partial output. Without `single`, `path` is a directory, made with mkdir -p
 * semantics by whichever task gets there first (EEXIST is fine: every task
 * of the stage races for it), and task i writes `path/part-%05u.<ext>`
 * (ext tsv, csv or msgpack). The file is created at init, so an empty shard
 * still gives an (empty) file and the set of files depends only on the
 * shard count. With `single`, the planner has gathered every row into one
 * task, in shard order, and `path` is the file itself (its parent
 * directories are made as above).
 *
 * Writing. Rows are rendered into one buffer of SAVE_BUF bytes per task,
 * allocated at init, and written with write(2) when it fills (a larger
 * msgpack batch goes straight from the batch), so the row loop makes no
 * syscall and no allocation of its own. finish drains the buffer, fsyncs
 * and closes; any failure (a full disk included) fails the task with GL_EIO
 * "save: cannot write '<file>': <reason>". A failed task leaves its file
 * behind for the driver to remove with the rest of the temporary path.
 *
 * Formats.
 *  - msgpack: the row bytes as they are, back to back (each row one msgpack
 *    array); flow:msgpack reads them back exactly, field counts included.
 *  - tsv: fields joined by '\t', each row ended by "\n". Strings are their
 *    bytes with '\\' -> "\\\\", tab -> "\\t", newline -> "\\n", CR -> "\\r",
 *    so a line is always one row. Integers in decimal (all 64 bits), doubles
 *    as "%.17g" (exact round trip; -0.0 is "-0", and "inf", "-inf", "nan"),
 *    booleans "true"/"false", nil an empty field.
 *  - csv: RFC 4180 (https://www.rfc-editor.org/rfc/rfc4180) fields
 *    separated by ',', except that lines end in "\n", not "\r\n" (what Unix
 *    tools and our own csv reader expect; most RFC 4180 readers take both).
 *    A field is quoted, with '"' doubled inside, when it holds ',', '"',
 *    CR or LF, or starts or ends with a space or tab; an empty string is
 *    written "" so that it differs from nil (an empty field) and a row of
 *    one empty string is not a blank line. Numbers, booleans and nil as tsv.
 *  In tsv and csv a row with no fields, or with one nil field, is an empty
 *  line: those formats cannot tell them apart (msgpack can). A nested table
 *  (array or map) or an ext value in a field fails the task naming the step
 *  and the row: tsv and csv hold only scalars.
 *
 * gl_save_remove never follows a symlink: a link is removed, not what it
 * points at, and a directory is walked through descriptors opened with
 * O_NOFOLLOW relative to their parent, so a link swapped in midway cannot
 * lead the removal out of the tree.
 *
 * Exported for lua/gleam/core.lua (its cdef declares it):
 *
 *   Removes the file or directory tree at path without following symlinks.
 *   A missing path (or one under a file, ENOTDIR) is success. Returns 0,
 *   or GL_EIO with "cannot remove '<path>': <reason>" in err (err may be
 *   NULL).
 *   int gl_save_remove(const char *path, gl_err *err);
 */
#define _GNU_SOURCE
#include "mpk.h"
#include "task.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int gl_save_remove(const char *path, gl_err *err);

#define SAVE_BUF (256u * 1024u)
#define SAVE_NUM 40 /* room for any rendered number */

typedef struct save_state {
    int fd;
    enum gl_format fmt;
    char *file;  /* owned: the file written, for messages */
    uint8_t *buf; /* owned: SAVE_BUF bytes */
    size_t len;
} save_state;

static const char *reason(int e, char *tmp, size_t n)
{
    return strerror_r(e, tmp, n); /* GNU: returns a string, maybe not tmp */
}

static int io_fail(gl_opr *op, int e)
{
    save_state *s = op->st;
    char tmp[128];
    return gl_err_set(&op->t->err, GL_EIO, "save: cannot write '%s': %s", s->file, reason(e, tmp, sizeof tmp));
}

/* Writes n bytes at p to the file, whatever short writes happen. */
static int write_all(gl_opr *op, const uint8_t *p, size_t n)
{
    save_state *s = op->st;
    while (n) {
        ssize_t k = write(s->fd, p, n > (1u << 30) ? (1u << 30) : n);
        if (k < 0) {
            if (errno == EINTR)
                continue;
            return io_fail(op, errno);
        }
        if (k == 0)
            return io_fail(op, ENOSPC); /* no progress: treat as a full disk */
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

static int drain(gl_opr *op)
{
    save_state *s = op->st;
    int rc = s->len ? write_all(op, s->buf, s->len) : 0;
    s->len = 0;
    return rc;
}

/* Makes room for n bytes (n <= SAVE_BUF) in the buffer. */
static inline int room(gl_opr *op, size_t n)
{
    save_state *s = op->st;
    return SAVE_BUF - s->len >= n ? 0 : drain(op);
}

static int put(gl_opr *op, const void *p, size_t n)
{
    save_state *s = op->st;
    if (n >= SAVE_BUF) {
        /* Big: skip the copy. */
        int rc = drain(op);
        return rc ? rc : write_all(op, p, n);
    }
    int rc = room(op, n);
    if (rc)
        return rc;
    memcpy(s->buf + s->len, p, n);
    s->len += n;
    return 0;
}

static inline int put_byte(gl_opr *op, uint8_t c)
{
    save_state *s = op->st;
    int rc = room(op, 1);
    if (!rc)
        s->buf[s->len++] = c;
    return rc;
}

/* A number, boolean or nil as text (the same in tsv and csv). */
static int put_scalar(gl_opr *op, const gl_mpk_head *h)
{
    save_state *s = op->st;
    int rc = room(op, SAVE_NUM);
    if (rc)
        return rc;
    char *out = (char *)s->buf + s->len;
    int n = 0;
    switch (h->cls) {
    case GL_MPK_NIL: break;
    case GL_MPK_BOOL: n = snprintf(out, SAVE_NUM, "%s", h->b ? "true" : "false"); break;
    case GL_MPK_NUM:
        if (h->num.kind == GL_NUM_INT)
            n = snprintf(out, SAVE_NUM, "%" PRId64, h->num.v.i);
        else if (h->num.kind == GL_NUM_UINT)
            n = snprintf(out, SAVE_NUM, "%" PRIu64, h->num.v.u);
        else if (isnan(h->num.v.d))
            n = snprintf(out, SAVE_NUM, "nan"); /* never "-nan" */
        else if (isinf(h->num.v.d))
            n = snprintf(out, SAVE_NUM, "%s", h->num.v.d < 0 ? "-inf" : "inf");
        else
            n = snprintf(out, SAVE_NUM, "%.17g", h->num.v.d);
        break;
    default: break;
    }
    s->len += (size_t)n;
    return 0;
}

/* tsv: a string's bytes with \\ \t \n \r escaped. Runs between escapes are
 * copied whole. */
static int put_tsv_str(gl_opr *op, const uint8_t *p, uint32_t n)
{
    const uint8_t *e = p + n, *run = p;
    for (; p < e; p++) {
        char esc;
        switch (*p) {
        case '\\': esc = '\\'; break;
        case '\t': esc = 't'; break;
        case '\n': esc = 'n'; break;
        case '\r': esc = 'r'; break;
        default: continue;
        }
        int rc = put(op, run, (size_t)(p - run));
        if (!rc)
            rc = put(op, (const uint8_t[]){'\\', (uint8_t)esc}, 2);
        if (rc)
            return rc;
        run = p + 1;
    }
    return put(op, run, (size_t)(e - run));
}

static bool csv_needs_quotes(const uint8_t *p, uint32_t n)
{
    if (!n)
        return true; /* "" is an empty string; an empty field is nil */
    if (p[0] == ' ' || p[0] == '\t' || p[n - 1] == ' ' || p[n - 1] == '\t')
        return true;
    for (uint32_t i = 0; i < n; i++)
        if (p[i] == ',' || p[i] == '"' || p[i] == '\n' || p[i] == '\r')
            return true;
    return false;
}

static int put_csv_str(gl_opr *op, const uint8_t *p, uint32_t n)
{
    if (!csv_needs_quotes(p, n))
        return put(op, p, n);
    int rc = put_byte(op, '"');
    const uint8_t *e = p + n, *run = p;
    for (; !rc && p < e; p++) {
        if (*p != '"')
            continue;
        /* Copy through this quote, then the run restarts at it: doubled. */
        rc = put(op, run, (size_t)(p + 1 - run));
        run = p;
    }
    if (!rc)
        rc = put(op, run, (size_t)(e - run));
    return rc ? rc : put_byte(op, '"');
}

static int push_msgpack(gl_opr *op, const uint8_t *rows, size_t len, uint64_t nrows)
{
    return put(op, rows, len);
}

static int push_text(gl_opr *op, const uint8_t *rows, size_t len, uint64_t nrows)
{
    save_state *s = op->st;
    bool csv = s->fmt == GL_FMT_CSV;
    const uint8_t *p = rows, *end = rows + len;
    for (uint64_t r = 0; r < nrows; r++) {
        const uint8_t *row = p;
        const uint8_t *rend = gl_row_end(row, end);
        uint32_t nf;
        const uint8_t *f = gl_row_fields(row, rend, &nf);
        for (uint32_t i = 0; i < nf; i++) {
            gl_mpk_head h;
            const uint8_t *next = gl_mpk_head_read(f, rend, &h);
            int rc = 0;
            if (i && (rc = put_byte(op, csv ? ',' : '\t')))
                return rc;
            if (!next)
                return gl_task_fail_row(op->t, op->d->step, "a malformed row", row, rend);
            if (h.cls == GL_MPK_ARRAY || h.cls == GL_MPK_MAP || h.cls == GL_MPK_EXT) {
                char what[128];
                snprintf(what, sizeof what, "field %u is a %s, which a %s file cannot hold", i + 1,
                         h.cls == GL_MPK_EXT ? "msgpack ext value" : "table", csv ? "csv" : "tsv");
                return gl_task_fail_row(op->t, op->d->step, what, row, rend);
            }
            if (h.cls == GL_MPK_STR)
                rc = csv ? put_csv_str(op, h.body, h.n) : put_tsv_str(op, h.body, h.n);
            else
                rc = put_scalar(op, &h);
            if (rc)
                return rc;
            f = next;
        }
        int rc = put_byte(op, '\n');
        if (rc)
            return rc;
        p = rend;
    }
    return 0;
}

static int save_finish(gl_opr *op)
{
    save_state *s = op->st;
    int rc = drain(op);
    if (rc)
        return rc;
    if (fsync(s->fd) && errno != EINVAL && errno != EROFS) /* EINVAL: a file that cannot sync (a pipe) */
        return io_fail(op, errno);
    int fd = s->fd;
    s->fd = -1;
    if (close(fd) && errno != EINTR) /* NFS reports late write errors here */
        return io_fail(op, errno);
    return 0;
}

static void save_destroy(gl_opr *op)
{
    save_state *s = op->st;
    if (!s)
        return;
    if (s->fd >= 0)
        close(s->fd);
    free(s->file);
    free(s->buf);
    free(s);
    op->st = NULL;
}

/* mkdir -p: makes every missing directory of path[0 .. n). Safe when tasks
 * race to make the same ones: a directory that appears meanwhile is fine. */
static int make_dirs(gl_opr *op, const char *path, size_t n)
{
    char *d = strndup(path, n);
    if (!d)
        return gl_err_set(&op->t->err, GL_ENOMEM, "save: out of memory");
    struct stat sb;
    if ((!mkdir(d, 0777) || (errno == EEXIST && !stat(d, &sb) && S_ISDIR(sb.st_mode)))) {
        free(d);
        return 0; /* the usual case: only the last one was missing, or none */
    }
    int rc = 0;
    for (size_t i = 1; i <= n && !rc; i++) {
        if (i < n && d[i] != '/')
            continue;
        if (i < n && d[i - 1] == '/')
            continue; /* "a//b" */
        d[i] = 0;
        int e = 0;
        if (mkdir(d, 0777))
            e = errno != EEXIST ? errno : stat(d, &sb) ? errno : S_ISDIR(sb.st_mode) ? 0 : ENOTDIR;
        if (e) {
            char tmp[128];
            rc = gl_err_set(&op->t->err, GL_EIO, "save: cannot create directory '%s': %s", d,
                            reason(e, tmp, sizeof tmp));
        }
        if (i < n)
            d[i] = '/';
    }
    free(d);
    return rc;
}

int gl_op_save_init(gl_opr *op)
{
    const gl_step *step = gl_plan_get(op->t->run->plan, op->d->step);
    if (!step || !step->path || !step->path[0])
        return gl_err_set(&op->t->err, GL_EINVAL, "save: no output path");
    if (step->format < GL_FMT_TSV || step->format > GL_FMT_MSGPACK)
        return gl_err_set(&op->t->err, GL_EINVAL, "save: unknown format %" PRId64, step->format);
    save_state *s = calloc(1, sizeof *s);
    if (!s)
        return gl_err_set(&op->t->err, GL_ENOMEM, "save: out of memory");
    s->fd = -1;
    s->fmt = (enum gl_format)step->format;
    op->st = s;
    op->push = s->fmt == GL_FMT_MSGPACK ? push_msgpack : push_text;
    op->finish = save_finish;
    op->destroy = save_destroy;

    const char *path = step->path;
    size_t plen = strlen(path);
    while (plen > 1 && path[plen - 1] == '/')
        plen--;
    int rc;
    if (step->single && op->t->st->ntasks > 1) /* they would all truncate one file */
        return gl_err_set(&op->t->err, GL_EINVAL, "save: single = true, but %u tasks write", op->t->st->ntasks);
    if (step->single) {
        s->file = strndup(path, plen);
        const char *slash = s->file ? strrchr(s->file, '/') : NULL;
        rc = !s->file ? gl_err_set(&op->t->err, GL_ENOMEM, "save: out of memory")
             : slash && slash > s->file ? make_dirs(op, s->file, (size_t)(slash - s->file))
                                        : 0;
    } else {
        static const char *const ext[] = {"tsv", "csv", "msgpack"};
        if (asprintf(&s->file, "%.*s/part-%05u.%s", (int)plen, path, op->t->index, ext[s->fmt]) < 0) {
            s->file = NULL;
            return gl_err_set(&op->t->err, GL_ENOMEM, "save: out of memory");
        }
        rc = make_dirs(op, path, plen);
    }
    if (rc)
        return rc;
    if (!(s->buf = malloc(SAVE_BUF)))
        return gl_err_set(&op->t->err, GL_ENOMEM, "save: out of memory");
    s->fd = open(s->file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    if (s->fd < 0)
        return io_fail(op, errno);
    return 0;
}

/* Removal ------------------------------------------------------------------ */

static int remove_fail(gl_err *err, const char *path, const char *name, int e)
{
    char tmp[128];
    if (name)
        return gl_err_set(err, GL_EIO, "cannot remove '%s/%s': %s", path, name, reason(e, tmp, sizeof tmp));
    return gl_err_set(err, GL_EIO, "cannot remove '%s': %s", path, reason(e, tmp, sizeof tmp));
}

#define REMOVE_DEPTH 128

/* Empties the directory open as dfd (taken: closed here) and everything
 * under it. `path` names it in messages. */
static int remove_under(int dfd, const char *path, int depth, gl_err *err)
{
    if (depth > REMOVE_DEPTH) {
        close(dfd);
        return gl_err_set(err, GL_EIO, "cannot remove '%s': nested deeper than %d directories", path,
                          REMOVE_DEPTH);
    }
    DIR *dir = fdopendir(dfd);
    if (!dir) {
        int e = errno;
        close(dfd);
        return remove_fail(err, path, NULL, e);
    }
    int rc = 0;
    struct dirent *de;
    for (;;) {
        errno = 0;
        if (!(de = readdir(dir))) {
            if (errno)
                rc = remove_fail(err, path, NULL, errno);
            break;
        }
        const char *name = de->d_name;
        if (!strcmp(name, ".") || !strcmp(name, ".."))
            continue;
        if (!unlinkat(dfd, name, 0) || errno == ENOENT)
            continue; /* a file, a link, or gone already */
        if (errno != EISDIR && errno != EPERM) {
            rc = remove_fail(err, path, name, errno);
            break;
        }
        /* A directory (Linux says EISDIR; POSIX allows EPERM). O_NOFOLLOW:
         * if a link replaced it meanwhile, the open fails, not follows. */
        int sub = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (sub < 0) {
            rc = errno == ENOENT ? 0 : remove_fail(err, path, name, errno);
            if (rc)
                break;
            continue;
        }
        char *subpath = NULL;
        if (asprintf(&subpath, "%s/%s", path, name) < 0) {
            close(sub);
            rc = gl_err_set(err, GL_ENOMEM, "cannot remove '%s': out of memory", path);
            break;
        }
        rc = remove_under(sub, subpath, depth + 1, err);
        free(subpath);
        if (rc)
            break;
        if (unlinkat(dfd, name, AT_REMOVEDIR) && errno != ENOENT) {
            rc = remove_fail(err, path, name, errno);
            break;
        }
    }
    closedir(dir); /* closes dfd */
    return rc;
}

int gl_save_remove(const char *path, gl_err *err)
{
    if (!path || !path[0])
        return gl_err_set(err, GL_EINVAL, "cannot remove an empty path");
    struct stat sb;
    if (lstat(path, &sb)) {
        if (errno == ENOENT || errno == ENOTDIR)
            return 0; /* nothing there (ENOTDIR: a parent is a file) */
        return remove_fail(err, path, NULL, errno);
    }
    if (!S_ISDIR(sb.st_mode)) {
        if (unlink(path) && errno != ENOENT)
            return remove_fail(err, path, NULL, errno);
        return 0;
    }
    int dfd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (dfd < 0)
        return errno == ENOENT ? 0 : remove_fail(err, path, NULL, errno);
    int rc = remove_under(dfd, path, 0, err);
    if (rc)
        return rc;
    if (rmdir(path) && errno != ENOENT)
        return remove_fail(err, path, NULL, errno);
    return 0;
}
