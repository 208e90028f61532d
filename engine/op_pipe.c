/* op_pipe.c: rows through shell commands.
 *
 * GL_OP_PIPE (ds:pipe(cmd)) runs one `/bin/sh -c cmd` per task, started at
 * the first batch (or at finish when no row came). Each input row is one
 * line on its stdin; each line it prints on stdout is one output row.
 * GL_OP_PIPE_ARGS (ds:pipe_as_args(cmd)) runs `/bin/sh -c cmd'` once per
 * row, where cmd' is cmd with $1..$9 and ${N} replaced by the row's fields
 * shell-quoted (single quotes: the command gets each field's exact bytes;
 * a NUL byte cannot be passed and fails the row); its stdin is /dev/null
 * and its stdout lines are rows.
 *
 * The line format: fields joined by '\t'; a string as its bytes with '\\',
 * '\t', '\n' and '\r' written as \\ \t \n \r; an integer in decimal; a
 * double as "%.17g" ("inf", "-inf", "nan", "-0"); a boolean as "true" or
 * "false"; nil as nothing. Arrays, maps and ext values fail the task at the
 * row. An output line is split on '\t' into string fields with the escapes
 * undone (other backslashes stay as they are), so a value round-trips
 * through `cat` as its text. A last line without '\n' counts; an empty line
 * is a row of one empty string.
 *
 * Invariants:
 * - Our ends of the child's pipes are non-blocking and close-on-exec and
 *   the child's ends are closed here right after the spawn, so another
 *   task's child never holds them open: closing stdin is an EOF.
 * - Writing stdin and reading stdout/stderr happen in one poll() loop, so
 *   a command that prints before it has read everything cannot deadlock
 *   us. Output becomes rows as it arrives and leaves in GL_BATCH_BYTES
 *   batches: what is held is one input batch, one output batch and the
 *   current unfinished output line.
 * - SIGPIPE is blocked in the writing thread around each write (and one it
 *   raised is consumed), so a command that stops reading (`head -1`) ends
 *   our writing with EPIPE, never the process; its exit status decides.
 * - Every child runs in its own process group and is always reaped: by
 *   finish, or by destroy after a SIGKILL to the group (a failed or
 *   cancelled task).
 * - Only the last TAIL_MAX bytes of stderr are kept, for the error. */
#define _GNU_SOURCE
#include "mpk.h"
#include "source.h"
#include "task.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define READ_BYTES (64u * 1024u)  /* one read of stdout */
#define IN_BATCH (64u * 1024u)    /* input lines gathered before a write round */
#define TAIL_MAX 1024u            /* stderr bytes kept */
#define POLL_MS 100               /* how often a blocked task checks for cancellation */
#define CMD_SHOW 200              /* bytes of a command shown in an error */

#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 34))
#define HAVE_CLOSEFROM 1
#endif

typedef struct child {
    pid_t pid;        /* -1: none, or reaped */
    int in, out, err; /* our ends; -1: closed */
} child;

typedef struct pipe_st {
    const gl_step *s;
    child c;
    bool started;
    gl_buf in;        /* input lines not yet written, from in_off */
    size_t in_off;
    gl_buf line;      /* an output line begun in an earlier read */
    gl_buf cmd;       /* pipe_as_args: this row's command, NUL-terminated */
    uint8_t *rbuf;    /* READ_BYTES, every read of stdout */
    uint8_t tail[TAIL_MAX]; /* ring of the last stderr bytes */
    uint64_t tail_total;    /* stderr bytes ever seen */
} pipe_st;

static bool stopped(const gl_task *t)
{
    return atomic_load(&t->run->failed) || (t->run->cancel && atomic_load(t->run->cancel));
}

static void close_fd(int *fd)
{
    if (*fd >= 0) {
        close(*fd);
        *fd = -1;
    }
}

/* Kills (with its process group) and reaps a running child; closes our ends. */
static void child_kill(child *c)
{
    close_fd(&c->in);
    close_fd(&c->out);
    close_fd(&c->err);
    if (c->pid > 0) {
        /* Not reaped yet, so neither the pid nor the group id can be reused. */
        kill(-c->pid, SIGKILL);
        kill(c->pid, SIGKILL);
        while (waitpid(c->pid, NULL, 0) < 0 && errno == EINTR)
            ;
        c->pid = -1;
    }
}

/* Writes a one-line rendering of text (newlines as "\n") cut to about max
 * bytes into out (size > max + 4). */
static void show_cmd(char *out, size_t size, const char *cmd)
{
    size_t w = 0;
    for (const char *p = cmd; *p && w + 5 < size; p++) {
        if (w >= CMD_SHOW) {
            memcpy(out + w, "...", 3);
            w += 3;
            break;
        }
        if (*p == '\n') {
            out[w++] = '\\';
            out[w++] = 'n';
        } else if ((unsigned char)*p < 0x20) {
            out[w++] = ' ';
        } else {
            out[w++] = *p;
        }
    }
    out[w] = 0;
}

/* The stderr tail on one line (newlines as " | ", other control bytes as
 * spaces, blank ends trimmed), keeping its last part if it needs more than
 * size - 1 bytes. */
static void show_tail(const pipe_st *st, char *out, size_t size)
{
    uint8_t lin[TAIL_MAX];
    uint64_t start = st->tail_total > TAIL_MAX ? st->tail_total - TAIL_MAX : 0;
    size_t n = 0;
    for (uint64_t i = start; i < st->tail_total; i++)
        lin[n++] = st->tail[i % TAIL_MAX];
    size_t a = 0;
    bool cut = start > 0;
    if (cut) { /* start at a whole line if there is one, else at a whole character */
        const uint8_t *nl = memchr(lin, '\n', n);
        if (nl && nl + 1 < lin + n)
            a = (size_t)(nl + 1 - lin);
        while (a < n && (lin[a] & 0xc0) == 0x80)
            a++;
    }
    while (a < n && (lin[a] == '\n' || lin[a] == '\r' || lin[a] == ' ' || lin[a] == '\t'))
        a++;
    while (n > a && (lin[n - 1] == '\n' || lin[n - 1] == '\r' || lin[n - 1] == ' ' || lin[n - 1] == '\t'))
        n--;
    /* Render into a scratch buffer, then keep its end if it is too long. */
    char tmp[3 * TAIL_MAX + 8];
    size_t w = 0;
    if (cut && a < n) {
        memcpy(tmp, "...", 3);
        w = 3;
    }
    for (size_t i = a; i < n; i++) {
        uint8_t ch = lin[i];
        if (ch == '\n') {
            memcpy(tmp + w, " | ", 3);
            w += 3;
        } else if (ch == '\r') {
            continue;
        } else {
            tmp[w++] = ch < 0x20 || ch == 0x7f ? ' ' : (char)ch;
        }
    }
    if (!size)
        return;
    if (w < size) {
        memcpy(out, tmp, w);
        out[w] = 0;
        return;
    }
    if (size < 8) {
        out[0] = 0;
        return;
    }
    size_t keep = size - 4, from = w - keep;
    while (from < w && (((uint8_t)tmp[from] & 0xc0) == 0x80 || tmp[from] == ' ' || tmp[from] == '|'))
        from++;
    memcpy(out, "...", 3);
    memcpy(out + 3, tmp + from, w - from);
    out[3 + w - from] = 0;
}

static void tail_add(pipe_st *st, const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        st->tail[st->tail_total++ % TAIL_MAX] = p[i];
}

/* "exited with status N" or "was killed by signal N". */
static void show_status(char *out, size_t size, int status)
{
    if (WIFEXITED(status))
        snprintf(out, size, "exited with status %d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        snprintf(out, size, "was killed by signal %d", WTERMSIG(status));
    else
        snprintf(out, size, "ended with wait status %d", status);
}

/* Starts `/bin/sh -c cmd` with stdout and stderr piped to us and stdin
 * piped from us (with_stdin) or /dev/null. 0 ok, else an error in err. */
static int child_start(child *c, const char *cmd, bool with_stdin, const gl_step *s, gl_err *err)
{
    int pin[2] = {-1, -1}, pout[2] = {-1, -1}, perr[2] = {-1, -1};
    int rc = 0;
    if ((with_stdin && pipe2(pin, O_CLOEXEC)) || pipe2(pout, O_CLOEXEC) || pipe2(perr, O_CLOEXEC)) {
        rc = gl_err_set(err, GL_EIO, "%s (%s): cannot make pipes: %s", s->name, s->where, strerror(errno));
        goto done;
    }
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t at;
    int e = posix_spawn_file_actions_init(&fa);
    if (e) {
        rc = gl_err_set(err, GL_ENOMEM, "%s (%s): out of memory", s->name, s->where);
        goto done;
    }
    if ((e = posix_spawnattr_init(&at))) {
        posix_spawn_file_actions_destroy(&fa);
        rc = gl_err_set(err, GL_ENOMEM, "%s (%s): out of memory", s->name, s->where);
        goto done;
    }
    if (with_stdin)
        e = posix_spawn_file_actions_adddup2(&fa, pin[0], 0);
    else
        e = posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    if (!e)
        e = posix_spawn_file_actions_adddup2(&fa, pout[1], 1);
    if (!e)
        e = posix_spawn_file_actions_adddup2(&fa, perr[1], 2);
#ifdef HAVE_CLOSEFROM
    /* Descriptors other code opened without close-on-exec stay ours. */
    if (!e)
        e = posix_spawn_file_actions_addclosefrom_np(&fa, 3);
#endif
    /* Its own process group (so destroy can kill a whole pipeline), no
     * blocked signals, and default dispositions: an ignored SIGPIPE would
     * otherwise be inherited and break `yes | head`. */
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    sigdelset(&all, SIGKILL);
    sigdelset(&all, SIGSTOP);
    if (!e)
        e = posix_spawnattr_setflags(&at, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    if (!e)
        e = posix_spawnattr_setpgroup(&at, 0);
    if (!e)
        e = posix_spawnattr_setsigmask(&at, &none);
    if (!e)
        e = posix_spawnattr_setsigdefault(&at, &all);
    if (!e) {
        char *argv[] = {"sh", "-c", (char *)cmd, NULL};
        e = posix_spawn(&c->pid, "/bin/sh", &fa, &at, argv, environ);
        if (e)
            c->pid = -1;
    }
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&at);
    if (e) {
        char shown[CMD_SHOW + 8];
        show_cmd(shown, sizeof shown, s->cmd);
        rc = gl_err_set(err, GL_EIO, "%s (%s): cannot start '%s': %s", s->name, s->where, shown, strerror(e));
        goto done;
    }
    c->in = pin[1], c->out = pout[0], c->err = perr[0];
    pin[1] = pout[0] = perr[0] = -1;
    if (c->in >= 0)
        fcntl(c->in, F_SETFL, fcntl(c->in, F_GETFL) | O_NONBLOCK);
    fcntl(c->out, F_SETFL, fcntl(c->out, F_GETFL) | O_NONBLOCK);
    fcntl(c->err, F_SETFL, fcntl(c->err, F_GETFL) | O_NONBLOCK);
done:
    for (int i = 0; i < 2; i++) {
        close_fd(&pin[i]);
        close_fd(&pout[i]);
        close_fd(&perr[i]);
    }
    return rc;
}

/* write(2) that cannot raise SIGPIPE in the process: the signal is blocked
 * in this thread, and one this write raised is taken off before unblocking. */
static ssize_t write_nosig(int fd, const void *p, size_t n)
{
    sigset_t pipe_set, old, pending;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
    sigpending(&pending);
    bool was_pending = sigismember(&pending, SIGPIPE);
    ssize_t w = write(fd, p, n);
    int e = errno;
    if (w < 0 && e == EPIPE && !was_pending) {
        struct timespec zero = {0, 0};
        while (sigtimedwait(&pipe_set, NULL, &zero) < 0 && errno == EINTR)
            ;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    errno = e;
    return w;
}

/* Output lines to rows ---------------------------------------------------- */

static inline bool esc_char(uint8_t c) { return c == '\\' || c == 't' || c == 'n' || c == 'r'; }

static inline size_t put_str_head(uint8_t *p, size_t n)
{
    if (n < 32) {
        p[0] = 0xa0 | (uint8_t)n;
        return 1;
    }
    if (n <= 0xff) {
        p[0] = 0xd9;
        p[1] = (uint8_t)n;
        return 2;
    }
    if (n <= 0xffff) {
        p[0] = 0xda;
        p[1] = (uint8_t)(n >> 8);
        p[2] = (uint8_t)n;
        return 3;
    }
    p[0] = 0xdb;
    p[1] = (uint8_t)(n >> 24);
    p[2] = (uint8_t)(n >> 16);
    p[3] = (uint8_t)(n >> 8);
    p[4] = (uint8_t)n;
    return 5;
}

/* Appends [p, e) unescaped as a msgpack str; room is reserved by the caller
 * (5 + e - p bytes). */
static void put_unescaped(gl_buf *b, const uint8_t *p, const uint8_t *e)
{
    size_t n = (size_t)(e - p);
    for (const uint8_t *q = p; q < e && (q = memchr(q, '\\', (size_t)(e - q)));) {
        if (q + 1 < e && esc_char(q[1])) {
            n--;
            q += 2;
        } else {
            q++;
        }
    }
    uint8_t *w = b->data + b->len;
    w += put_str_head(w, n);
    while (p < e) {
        const uint8_t *q = memchr(p, '\\', (size_t)(e - p));
        if (!q)
            q = e;
        memcpy(w, p, (size_t)(q - p));
        w += q - p;
        p = q;
        if (p == e)
            break;
        if (p + 1 < e && esc_char(p[1])) {
            uint8_t c = p[1];
            *w++ = c == 't' ? '\t' : c == 'n' ? '\n' : c == 'r' ? '\r' : '\\';
            p += 2;
        } else {
            *w++ = *p++;
        }
    }
    b->len = (size_t)(w - b->data);
}

/* One output line (without its '\n') becomes one row of string fields. */
static int put_line(gl_opr *op, const uint8_t *s, size_t n)
{
    if (n > UINT32_MAX)
        return gl_err_set(&op->t->err, GL_EINVAL, "pipe: an output line is longer than 4 GB");
    uint32_t nf = 1;
    for (const uint8_t *q = s, *e = s + n; q < e && (q = memchr(q, '\t', (size_t)(e - q))); q++)
        nf++;
    if (gl_buf_reserve(&op->out, 5 + n + 5 * (size_t)nf) || gl_mpk_put_array(&op->out, nf))
        return gl_err_set(&op->t->err, GL_ENOMEM, "pipe: out of memory");
    const uint8_t *p = s, *e = s + n;
    for (;;) {
        const uint8_t *t = memchr(p, '\t', (size_t)(e - p));
        if (!t)
            t = e;
        put_unescaped(&op->out, p, t);
        if (t == e)
            break;
        p = t + 1;
    }
    op->out_rows++;
    return 0;
}

/* Turns a chunk of stdout into rows; a line left open waits in st->line. */
static int got_output(gl_opr *op, pipe_st *st, const uint8_t *p, size_t n)
{
    const uint8_t *e = p + n;
    while (p < e) {
        const uint8_t *nl = memchr(p, '\n', (size_t)(e - p));
        if (!nl) {
            if (gl_buf_append(&st->line, p, (size_t)(e - p)))
                return gl_err_set(&op->t->err, GL_ENOMEM, "pipe: out of memory");
            break;
        }
        int rc;
        if (st->line.len) {
            if (gl_buf_append(&st->line, p, (size_t)(nl - p)))
                return gl_err_set(&op->t->err, GL_ENOMEM, "pipe: out of memory");
            rc = put_line(op, st->line.data, st->line.len);
            st->line.len = 0;
        } else {
            rc = put_line(op, p, (size_t)(nl - p));
        }
        if (rc)
            return rc;
        p = nl + 1;
    }
    return gl_op_flush(op, GL_BATCH_BYTES);
}

/* At the end of the output: a last line without '\n' is a row too. */
static int end_output(gl_opr *op, pipe_st *st)
{
    if (!st->line.len)
        return 0;
    int rc = put_line(op, st->line.data, st->line.len);
    st->line.len = 0;
    return rc;
}

/* Rows to lines --------------------------------------------------------------- */

/* Appends one value rendered as text: escaped for a pipe line, or, if
 * `shell`, single-quoted and otherwise exact. Returns 0, -1 out of memory, or a positive reason the
 * value cannot be rendered (1 nested, 2 ext, 3 NUL byte in a shell word). */
static int put_value(gl_buf *b, const gl_mpk_head *h, bool shell)
{
    char num[40];
    size_t nlen = 0;
    switch (h->cls) {
    case GL_MPK_NIL:
        break;
    case GL_MPK_BOOL:
        nlen = (size_t)snprintf(num, sizeof num, "%s", h->b ? "true" : "false");
        break;
    case GL_MPK_NUM:
        if (h->num.kind == GL_NUM_INT)
            nlen = (size_t)snprintf(num, sizeof num, "%" PRId64, h->num.v.i);
        else if (h->num.kind == GL_NUM_UINT)
            nlen = (size_t)snprintf(num, sizeof num, "%" PRIu64, h->num.v.u);
        else if (isnan(h->num.v.d))
            nlen = (size_t)snprintf(num, sizeof num, "nan");
        else if (isinf(h->num.v.d))
            nlen = (size_t)snprintf(num, sizeof num, "%s", h->num.v.d < 0 ? "-inf" : "inf");
        else
            nlen = (size_t)snprintf(num, sizeof num, "%.17g", h->num.v.d);
        break;
    case GL_MPK_STR:
        break;
    case GL_MPK_ARRAY:
    case GL_MPK_MAP:
        return 1;
    case GL_MPK_EXT:
        return 2;
    }
    const uint8_t *s = h->cls == GL_MPK_STR ? h->body : (const uint8_t *)num;
    size_t n = h->cls == GL_MPK_STR ? h->n : nlen;
    if (shell && memchr(s, 0, n))
        return 3;
    /* Worst case: every byte a quote ('\'' is 4 bytes), plus the quotes. */
    if (gl_buf_reserve(b, 4 * n + 2))
        return -1;
    uint8_t *w = b->data + b->len;
    if (shell)
        *w++ = '\'';
    for (const uint8_t *p = s, *e = s + n; p < e; p++) {
        uint8_t c = *p;
        if (shell) {
            /* Inside single quotes every byte is literal but the quote. */
            if (c == '\'') {
                memcpy(w, "'\\''", 4);
                w += 4;
            } else {
                *w++ = c;
            }
            continue;
        }
        switch (c) {
        case '\\': *w++ = '\\'; *w++ = '\\'; break;
        case '\t': *w++ = '\\'; *w++ = 't'; break;
        case '\n': *w++ = '\\'; *w++ = 'n'; break;
        case '\r': *w++ = '\\'; *w++ = 'r'; break;
        default: *w++ = c;
        }
    }
    if (shell)
        *w++ = '\'';
    b->len = (size_t)(w - b->data);
    return 0;
}

static const char *why_not(int reason)
{
    switch (reason) {
    case 1: return "a field is an array or a map; a command takes only strings, numbers, booleans and nil";
    case 2: return "a field is a msgpack ext value; a command takes only strings, numbers, booleans and nil";
    default: return "a field holds a NUL byte, which a command argument cannot carry";
    }
}

/* Appends a row as one input line. 0, or the task's error. */
static int put_row_line(gl_opr *op, pipe_st *st, const uint8_t *row, const uint8_t *end)
{
    uint32_t nf;
    const uint8_t *f = gl_row_fields(row, end, &nf);
    for (uint32_t k = 0; k < nf; k++) {
        gl_mpk_head h;
        const uint8_t *next = gl_mpk_head_read(f, end, &h);
        if (!next)
            return gl_task_fail_row(op->t, op->d->step, "malformed row", row, end);
        if (k && gl_buf_append(&st->in, "\t", 1))
            return gl_err_set(&op->t->err, GL_ENOMEM, "pipe: out of memory");
        int rc = put_value(&st->in, &h, false);
        if (rc < 0)
            return gl_err_set(&op->t->err, GL_ENOMEM, "pipe: out of memory");
        if (rc)
            return gl_task_fail_row(op->t, op->d->step, why_not(rc), row, end);
        f = next;
    }
    if (gl_buf_append(&st->in, "\n", 1))
        return gl_err_set(&op->t->err, GL_ENOMEM, "pipe: out of memory");
    return 0;
}

/* The poll loop ----------------------------------------------------------------- */

/* Moves bytes between us and the child until all of st->in is written (or
 * the child stopped reading); with `drain`, then closes its stdin and goes
 * on until its stdout and stderr are at EOF. 0, GL_ECANCEL, or an error. */
static int pump(gl_opr *op, pipe_st *st, bool drain)
{
    child *c = &st->c;
    const gl_step *s = st->s;
    for (;;) {
        bool want_w = c->in >= 0 && st->in_off < st->in.len;
        if (!want_w) {
            st->in.len = st->in_off = 0;
            if (!drain)
                return 0;
            close_fd(&c->in);
            if (c->out < 0 && c->err < 0)
                return 0;
        }
        if (stopped(op->t))
            return GL_ECANCEL;
        struct pollfd pf[3];
        nfds_t n = 0;
        int iw = -1, io = -1, ie = -1;
        if (want_w) {
            iw = (int)n;
            pf[n++] = (struct pollfd){.fd = c->in, .events = POLLOUT};
        }
        if (c->out >= 0) {
            io = (int)n;
            pf[n++] = (struct pollfd){.fd = c->out, .events = POLLIN};
        }
        if (c->err >= 0) {
            ie = (int)n;
            pf[n++] = (struct pollfd){.fd = c->err, .events = POLLIN};
        }
        int r = poll(pf, n, POLL_MS);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return gl_err_set(&op->t->err, GL_EIO, "%s (%s): poll: %s", s->name, s->where, strerror(errno));
        }
        if (r == 0)
            continue;
        if (iw >= 0 && pf[iw].revents) {
            size_t left = st->in.len - st->in_off;
            ssize_t w = write_nosig(c->in, st->in.data + st->in_off, left);
            if (w > 0) {
                st->in_off += (size_t)w;
            } else if (w < 0 && errno == EPIPE) {
                /* It stopped reading: the rest of the input is dropped and
                 * its exit status says whether that was right. */
                close_fd(&c->in);
            } else if (w < 0 && errno != EAGAIN && errno != EINTR) {
                return gl_err_set(&op->t->err, GL_EIO, "%s (%s): writing to the command: %s", s->name,
                                  s->where, strerror(errno));
            }
        }
        if (io >= 0 && pf[io].revents) {
            ssize_t k = read(c->out, st->rbuf, READ_BYTES);
            if (k > 0) {
                int rc = got_output(op, st, st->rbuf, (size_t)k);
                if (rc)
                    return rc;
            } else if (k == 0) {
                close_fd(&c->out);
            } else if (errno != EAGAIN && errno != EINTR) {
                return gl_err_set(&op->t->err, GL_EIO, "%s (%s): reading from the command: %s", s->name,
                                  s->where, strerror(errno));
            }
        }
        if (ie >= 0 && pf[ie].revents) {
            uint8_t eb[4096];
            ssize_t k = read(c->err, eb, sizeof eb);
            if (k > 0)
                tail_add(st, eb, (size_t)k);
            else if (k == 0 || (errno != EAGAIN && errno != EINTR))
                close_fd(&c->err);
        }
    }
}

/* Waits for the child to end (it has closed its output). Polls with a
 * growing sleep so a cancelled run is noticed. 0 with *status, or an error. */
static int reap(gl_opr *op, pipe_st *st, int *status)
{
    child *c = &st->c;
    long ns = 20000;
    for (;;) {
        pid_t r = waitpid(c->pid, status, WNOHANG);
        if (r == c->pid) {
            c->pid = -1;
            return 0;
        }
        if (r < 0 && errno != EINTR) {
            int e = errno;
            c->pid = -1;
            return gl_err_set(&op->t->err, GL_EIO, "%s (%s): cannot wait for the command: %s", st->s->name,
                              st->s->where, strerror(e));
        }
        if (r == 0) {
            if (stopped(op->t))
                return GL_ECANCEL;
            struct timespec d = {0, ns};
            nanosleep(&d, NULL);
            if (ns < 10000000)
                ns *= 2;
        }
    }
}

/* "'<cmd>' exited with status N[: <stderr tail>]" into out, at most size. */
static void show_failure(const pipe_st *st, int status, char *out, size_t size)
{
    char shown[CMD_SHOW + 8], how[64];
    show_cmd(shown, sizeof shown, st->s->cmd);
    show_status(how, sizeof how, status);
    int n = snprintf(out, size, "'%s' %s", shown, how);
    if (n < 0 || (size_t)n + 16 >= size || !st->tail_total)
        return;
    char *p = out + n;
    size_t room = size - (size_t)n;
    memcpy(p, ": ", 3);
    show_tail(st, p + 2, room - 2);
    if (!p[2])
        *p = 0;
}

/* GL_OP_PIPE ------------------------------------------------------------------------ */

static int pipe_start(gl_opr *op, pipe_st *st)
{
    st->started = true;
    return child_start(&st->c, st->s->cmd, true, st->s, &op->t->err);
}

static int pipe_push(gl_opr *op, const uint8_t *rows, size_t len, uint64_t nrows)
{
    pipe_st *st = op->st;
    int rc;
    if (!st->started && (rc = pipe_start(op, st)))
        return rc;
    const uint8_t *p = rows, *end = rows + len;
    for (uint64_t r = 0; r < nrows && st->c.in >= 0; r++) {
        const uint8_t *row = p;
        p = gl_row_end(p, end);
        if ((rc = put_row_line(op, st, row, p)))
            return rc;
        if (st->in.len >= IN_BATCH && (rc = pump(op, st, false)))
            return rc;
    }
    if (st->c.in < 0)
        st->in.len = st->in_off = 0; /* it stopped reading */
    return pump(op, st, false);
}

static int pipe_finish(gl_opr *op)
{
    pipe_st *st = op->st;
    int rc, status;
    if (!st->started && (rc = pipe_start(op, st)))
        return rc;
    if ((rc = pump(op, st, true)) || (rc = end_output(op, st)) || (rc = reap(op, st, &status)))
        return rc;
    if (status) {
        const gl_step *s = st->s;
        char head[sizeof op->t->err.msg];
        int n = snprintf(head, sizeof head, "%s (%s): ", s->name, s->where);
        if (n < 0 || (size_t)n >= sizeof head)
            n = 0;
        show_failure(st, status, head + n, sizeof head - (size_t)n);
        return gl_err_set(&op->t->err, GL_ETASK, "%s", head);
    }
    return gl_op_flush(op, 0);
}

/* GL_OP_PIPE_ARGS ----------------------------------------------------------------------- */

/* Builds this row's command in st->cmd: $1..$9 and ${N} become the fields
 * quoted (a missing field ''); everything else is copied. 0, or an error. */
static int args_command(gl_opr *op, pipe_st *st, const uint8_t *row, const uint8_t *end)
{
    gl_buf *b = &st->cmd;
    const char *c = st->s->cmd;
    b->len = 0;
    while (*c) {
        const char *d = strchr(c, '$');
        if (!d)
            d = c + strlen(c);
        if (gl_buf_append(b, c, (size_t)(d - c)))
            return gl_err_set(&op->t->err, GL_ENOMEM, "pipe_as_args: out of memory");
        c = d;
        if (!*c)
            break;
        uint32_t k = 0;
        const char *after = NULL;
        if (c[1] >= '1' && c[1] <= '9') {
            k = (uint32_t)(c[1] - '0');
            after = c + 2;
        } else if (c[1] == '{' && c[2] >= '1' && c[2] <= '9') {
            const char *q = c + 2;
            uint64_t v = 0;
            while (*q >= '0' && *q <= '9' && v < 100000000)
                v = v * 10 + (uint64_t)(*q++ - '0');
            if (*q == '}') {
                k = (uint32_t)v;
                after = q + 1;
            }
        }
        if (!after) {
            if (gl_buf_append(b, c, 1))
                return gl_err_set(&op->t->err, GL_ENOMEM, "pipe_as_args: out of memory");
            c++;
            continue;
        }
        const uint8_t *fs, *fe;
        gl_row_field(row, end, k, &fs, &fe);
        gl_mpk_head h;
        if (!gl_mpk_head_read(fs, fe, &h))
            return gl_task_fail_row(op->t, op->d->step, "malformed row", row, end);
        int rc = put_value(b, &h, true);
        if (rc < 0)
            return gl_err_set(&op->t->err, GL_ENOMEM, "pipe_as_args: out of memory");
        if (rc)
            return gl_task_fail_row(op->t, op->d->step, why_not(rc), row, end);
        c = after;
    }
    if (gl_buf_append(b, "", 1))
        return gl_err_set(&op->t->err, GL_ENOMEM, "pipe_as_args: out of memory");
    return 0;
}

static int args_push(gl_opr *op, const uint8_t *rows, size_t len, uint64_t nrows)
{
    pipe_st *st = op->st;
    const uint8_t *p = rows, *end = rows + len;
    for (uint64_t r = 0; r < nrows; r++) {
        const uint8_t *row = p;
        p = gl_row_end(p, end);
        int rc, status;
        if (stopped(op->t))
            return GL_ECANCEL;
        if ((rc = args_command(op, st, row, p)))
            return rc;
        st->tail_total = 0;
        st->line.len = 0;
        if ((rc = child_start(&st->c, (const char *)st->cmd.data, false, st->s, &op->t->err)) ||
            (rc = pump(op, st, true)) || (rc = end_output(op, st)) || (rc = reap(op, st, &status)))
            return rc;
        if (status) {
            /* Room for the step, where and the row gl_task_fail_row adds. */
            char what[600];
            show_failure(st, status, what, sizeof what);
            return gl_task_fail_row(op->t, op->d->step, what, row, p);
        }
        if ((rc = gl_op_flush(op, GL_BATCH_BYTES)))
            return rc;
    }
    return gl_op_flush(op, 0);
}

static int args_finish(gl_opr *op) { return gl_op_flush(op, 0); }

/* ------------------------------------------------------------------------------------- */

static void pipe_destroy(gl_opr *op)
{
    pipe_st *st = op->st;
    if (!st)
        return;
    child_kill(&st->c);
    gl_buf_free(&st->in);
    gl_buf_free(&st->line);
    gl_buf_free(&st->cmd);
    free(st->rbuf);
    free(st);
    op->st = NULL;
}

int gl_op_pipe_init(gl_opr *op)
{
    const gl_step *s = gl_plan_get(op->t->run->plan, op->d->step);
    if (!s || !s->cmd || !s->cmd[0])
        return gl_err_set(&op->t->err, GL_EINVAL, "%s (%s): no command", s ? s->name : "pipe",
                          s ? s->where : "?");
    pipe_st *st = calloc(1, sizeof *st);
    if (!st || !(st->rbuf = malloc(READ_BYTES))) {
        free(st);
        return gl_err_set(&op->t->err, GL_ENOMEM, "%s (%s): out of memory", s->name, s->where);
    }
    st->s = s;
    st->c = (child){.pid = -1, .in = -1, .out = -1, .err = -1};
    op->st = st;
    op->destroy = pipe_destroy;
    if (op->d->kind == GL_OP_PIPE) {
        op->push = pipe_push;
        op->finish = pipe_finish;
    } else {
        op->push = args_push;
        op->finish = args_finish;
    }
    return 0;
}
