/* source_csv.c: CSV and TSV files as rows, one row per record.
 *
 * Format: RFC 4180 (https://www.rfc-editor.org/rfc/rfc4180) with the
 * separator as a parameter (',' for csv, '\t' for tsv). A field is quoted
 * when it starts with '"'; inside quotes "" is one quote and separators and
 * newlines are data. Records end at LF or CRLF (or the end of the file);
 * empty lines are skipped; a UTF-8 byte order mark at the start of a file
 * is dropped. Lenient where RFC 4180 forbids but the input is unambiguous:
 * a quote inside an unquoted field and a CR not followed by LF are data.
 * Malformed: a character other than a separator or a line end right after
 * a closing quote, a quote still open at the end of the file, and records
 * longer than RECORD_MAX bytes or RECORD_FIELDS fields (what an unclosed
 * quote in a big file turns into, caught before it eats memory).
 *
 * Types ("auto"): an unquoted field of digits with an optional sign that
 * fits int64 is an integer; one of the decimal form [sign] digits [.
 * digits] [e [sign] digits] a number (as Lua would store it: integral
 * values become integers); an unquoted empty field nil. A leading zero
 * before another digit ("007", "01.5") keeps the field a string, so codes
 * like zip codes keep their zeros; "inf", "nan", hex and padded numbers
 * stay strings; a quoted field is always a string.
 *
 * Declared types (a letter per column, from types = {"integer", ...}):
 * 's' string; 'i' integer (leading zeros allowed, an empty unquoted field
 * nil); 'n' number (an integer if integral, else a double); 'a' auto as
 * above. A field that is not what its column declares makes the record
 * malformed; columns past the list are strings. Numbers are read in the C
 * locale whatever the process's locale is.
 *
 * Invariants: the parser is a state machine fed one chunk at a time, so a
 * record may span chunks and memory is one chunk plus the current record
 * (field bytes unescaped into one buffer, reused) plus one batch. Line
 * numbers are physical lines, 1-based; a record is reported at the line it
 * starts on. A skipped record resumes parsing at the end of the line the
 * record starts on: by streaming on when the error is on that line, by
 * seeking back (lseek, or gzseek which re-inflates) when the record had
 * already run past it. A file is one piece (gl_text_whole_file), unless it
 * has no quote character at all: then every newline ends a record and the
 * planner cuts it at lines like text (source_text.c), each piece carrying
 * the line number it starts near so errors still name file:line; the
 * header is the first piece's. ".gz" files are read through zlib. */
#define _GNU_SOURCE /* strtod_l */
#include "mpk.h"
#include "plan.h"
#include "infile.h"
#include "source.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <locale.h>
#include <pthread.h>
#include <stdio.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#define CHUNK_BYTES (256u << 10)
#define RECORD_MAX (64u << 20)
#define RECORD_FIELDS (1u << 20)

/* One field of the current record: bytes [off, off+len) of csv.fbuf. */
typedef struct field {
    uint32_t off, len;
    bool quoted;
} field;

enum state {
    S_START, /* at the start of a field */
    S_UNQ,   /* in an unquoted field */
    S_Q,     /* in a quoted field */
    S_QQ,    /* just after a quote in a quoted field: "" or the closing one */
    S_CR,    /* just after a CR where a record may end */
    S_SKIP,  /* dropping the rest of a bad record's line */
};

/* parse() results beside 0 and negative codes. */
#define RESYNC 1 /* seek to csv.resync and go on from there */

typedef struct csv {
    const char *who, *path;
    uint8_t sep;
    bool types, skip_bad, header;
    const char *coltypes; /* declared column types, or NULL */
    size_t ncoltypes;
    enum state state;
    bool cr_quoted;      /* S_CR after a closing quote: only LF may follow */
    gl_buf fbuf;         /* the current record's fields, unescaped, back to back */
    field *f;            /* its finished fields (reused) */
    uint32_t nf, capf;
    uint32_t cur_off;    /* start of the current field in fbuf */
    bool cur_quoted;
    uint64_t line;       /* physical line of the next byte, 1-based */
    uint64_t rec_line;   /* the line the current record starts on */
    uint64_t rec_nl;     /* stream offset past the record's first newline, 0 none yet */
    uint64_t resync;     /* RESYNC: where to go on */
    uint64_t *skipped;
    gl_buf batch;
    uint64_t nrows;
    gl_emit_fn emit;
    void *ctx;
    gl_err *err;
} csv;

static void rec_reset(csv *c)
{
    c->fbuf.len = 0;
    c->nf = 0;
    c->cur_off = 0;
    c->cur_quoted = false;
    c->state = S_START;
    c->rec_nl = 0;
    c->rec_line = c->line;
}

static int bad(csv *c, const char *what)
{
    if (!c->skip_bad)
        return gl_err_set(c->err, GL_EINVAL, "%s: %s:%" PRIu64 ": %s", c->who, c->path, c->rec_line, what);
    (*c->skipped)++;
    c->header = false; /* a bad first record still was the header */
    if (c->rec_nl) {
        c->resync = c->rec_nl;
        c->line = c->rec_line + 1;
        rec_reset(c);
        return RESYNC;
    }
    rec_reset(c);
    c->state = S_SKIP;
    return 0;
}

static int append(csv *c, const uint8_t *p, size_t n)
{
    if (c->fbuf.len + n > RECORD_MAX)
        return bad(c, "record longer than 64 MiB (a quote left open?)");
    return gl_buf_append(&c->fbuf, p, n) ? gl_err_set(c->err, GL_ENOMEM, "%s: out of memory", c->who) : 0;
}

static int end_field(csv *c)
{
    if (c->nf == c->capf) {
        if (c->nf == RECORD_FIELDS)
            return bad(c, "more than 1048576 fields in a record");
        uint32_t cap = c->capf ? c->capf * 2 : 64;
        field *f = realloc(c->f, cap * sizeof *f);
        if (!f)
            return gl_err_set(c->err, GL_ENOMEM, "%s: out of memory", c->who);
        c->f = f;
        c->capf = cap;
    }
    c->f[c->nf++] = (field){c->cur_off, (uint32_t)c->fbuf.len - c->cur_off, c->cur_quoted};
    c->cur_off = (uint32_t)c->fbuf.len;
    c->cur_quoted = false;
    c->state = S_START;
    return 0;
}

/* An integer: optional sign, digits without a leading zero, in int64. */
static bool as_int(const uint8_t *p, size_t n, int64_t *out)
{
    size_t i = 0;
    bool neg = false;
    if (n && (p[0] == '-' || p[0] == '+')) {
        neg = p[0] == '-';
        i = 1;
    }
    if (i == n || n - i > 19 || (p[i] == '0' && n - i > 1))
        return false;
    uint64_t v = 0;
    for (; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return false;
        v = v * 10 + (uint64_t)(p[i] - '0'); /* 19 digits cannot wrap */
    }
    if (v > (neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX))
        return false;
    *out = neg ? (int64_t)(0 - v) : (int64_t)v;
    return true;
}

/* [sign] digits [. digits] [(e|E) [sign] digits], at least one digit
 * before the exponent, no leading zero before another digit. */
static bool decimal_form(const uint8_t *p, size_t n)
{
    size_t i = 0, d1 = 0, d2 = 0;
    if (i < n && (p[i] == '-' || p[i] == '+'))
        i++;
    size_t lead = i;
    for (; i < n && p[i] >= '0' && p[i] <= '9'; i++)
        d1++;
    if (d1 > 1 && p[lead] == '0')
        return false;
    if (i < n && p[i] == '.')
        for (i++; i < n && p[i] >= '0' && p[i] <= '9'; i++)
            d2++;
    if (!d1 && !d2)
        return false;
    if (i < n && (p[i] == 'e' || p[i] == 'E')) {
        size_t de = 0;
        if (++i < n && (p[i] == '-' || p[i] == '+'))
            i++;
        for (; i < n && p[i] >= '0' && p[i] <= '9'; i++)
            de++;
        if (!de)
            return false;
    }
    return i == n;
}

static int put_auto(csv *c, const field *fd, bool detect);

static locale_t c_locale;
static pthread_once_t c_locale_once = PTHREAD_ONCE_INIT;
static void make_c_locale(void) { c_locale = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0); }

/* strtod in the C locale over exactly n bytes (p[n] must be writable: the
 * byte after a field always is, room for it was reserved when the record
 * ended). Returns false unless all n bytes are a finite number. */
static bool as_double(uint8_t *p, size_t n, double *out)
{
    pthread_once(&c_locale_once, make_c_locale);
    uint8_t saved = p[n];
    p[n] = 0;
    char *end;
    double d = c_locale ? strtod_l((const char *)p, &end, c_locale) : strtod((const char *)p, &end);
    p[n] = saved;
    *out = d;
    return n && end == (char *)p + n && isfinite(d);
}

/* An integer with any number of leading zeros (a declared integer column). */
static bool as_int_lenient(const uint8_t *p, size_t n, int64_t *out)
{
    size_t i = 0;
    if (n && (p[0] == '-' || p[0] == '+'))
        i = 1;
    size_t z = i;
    while (z + 1 < n && p[z] == '0')
        z++;
    if (z == i)
        return as_int(p, n, out);
    uint8_t tmp[24];
    if (n - z > 19)
        return false;
    size_t m = 0;
    if (i)
        tmp[m++] = p[0];
    memcpy(tmp + m, p + z, n - z);
    return as_int(tmp, m + n - z, out);
}

/* Checks field i of the record against its declared type: 0 ok, or a
 * message naming what is wrong in what (size 96). */
static int check_type(csv *c, uint32_t i, const field *fd, char *what)
{
    char t = i < c->ncoltypes ? c->coltypes[i] : 's';
    if (t != 'i' && t != 'n')
        return 0;
    if (!fd->len && !fd->quoted)
        return 0; /* nil */
    uint8_t *p = c->fbuf.data + fd->off;
    int64_t iv;
    double d;
    if (t == 'i' ? as_int_lenient(p, fd->len, &iv) : (as_int_lenient(p, fd->len, &iv) || as_double(p, fd->len, &d)))
        return 0;
    snprintf(what, 96, "field %u is not %s: '%.*s'", i + 1, t == 'i' ? "an integer" : "a number",
             fd->len > 40 ? 40 : (int)fd->len, (const char *)p);
    return -1;
}

static int put_field(csv *c, uint32_t i, const field *fd)
{
    char t = c->coltypes ? (i < c->ncoltypes ? c->coltypes[i] : 's') : 0;
    if (t == 'i' || t == 'n') {
        uint8_t *p = c->fbuf.data + fd->off;
        int64_t iv;
        double d;
        if (!fd->len && !fd->quoted)
            return gl_mpk_put_nil(&c->batch);
        if (as_int_lenient(p, fd->len, &iv))
            return gl_mpk_put_int(&c->batch, iv);
        if (as_double(p, fd->len, &d))
            return gl_mpk_put_number(&c->batch, d);
        return gl_mpk_put_str(&c->batch, p, fd->len); /* check_type ruled this out */
    }
    if (t == 's')
        return gl_mpk_put_str(&c->batch, c->fbuf.data + fd->off, fd->len);
    return put_auto(c, fd, t == 'a' || (!t && c->types));
}

static int put_auto(csv *c, const field *fd, bool detect)
{
    uint8_t *p = c->fbuf.data + fd->off;
    if (detect && !fd->quoted) {
        int64_t iv;
        if (!fd->len)
            return gl_mpk_put_nil(&c->batch);
        if (as_int(p, fd->len, &iv))
            return gl_mpk_put_int(&c->batch, iv);
        double d;
        if (decimal_form(p, fd->len) && as_double(p, fd->len, &d))
            return gl_mpk_put_number(&c->batch, d);
    }
    return gl_mpk_put_str(&c->batch, p, fd->len);
}

static int end_record(csv *c)
{
    uint64_t skipped = *c->skipped;
    int rc = end_field(c);
    if (rc)
        return rc;
    if (*c->skipped != skipped) {
        rec_reset(c); /* too many fields, skipped: the line ends here all the same */
        return 0;
    }
    bool empty = c->nf == 1 && !c->f[0].quoted && !c->f[0].len;
    if (!empty && c->header) {
        c->header = false;
    } else if (!empty) {
        if (gl_buf_reserve(&c->fbuf, 1))
            return gl_err_set(c->err, GL_ENOMEM, "%s: out of memory", c->who);
        char what[96];
        for (uint32_t i = 0; c->coltypes && i < c->nf; i++) {
            if (!check_type(c, i, &c->f[i], what))
                continue;
            /* The record has ended: skipping it drops nothing after it. */
            if (!c->skip_bad)
                return gl_err_set(c->err, GL_EINVAL, "%s: %s:%" PRIu64 ": %s", c->who, c->path, c->rec_line, what);
            (*c->skipped)++;
            rec_reset(c);
            return 0;
        }
        if (gl_mpk_put_array(&c->batch, c->nf))
            return gl_err_set(c->err, GL_ENOMEM, "%s: out of memory", c->who);
        for (uint32_t i = 0; i < c->nf; i++)
            if (put_field(c, i, &c->f[i]))
                return gl_err_set(c->err, GL_ENOMEM, "%s: out of memory", c->who);
        c->nrows++;
        if (c->batch.len >= GL_BATCH_BYTES) {
            rc = c->emit(c->ctx, c->batch.data, c->batch.len, c->nrows);
            c->batch.len = 0;
            c->nrows = 0;
            if (rc)
                return rc;
        }
    }
    rec_reset(c);
    return 0;
}

/* Feeds bytes [buf, buf+n), at stream offset base, to the state machine.
 * Returns 0, RESYNC or a negative code. */
static int parse(csv *c, const uint8_t *buf, size_t n, uint64_t base)
{
    const uint8_t sep = c->sep;
    size_t i = 0;
    int rc = 0;
    while (i < n && !rc) {
        uint8_t ch = buf[i];
        switch (c->state) {
        case S_START:
            if (ch == '"') {
                c->cur_quoted = true;
                c->state = S_Q;
                i++;
            } else {
                c->state = S_UNQ; /* the same byte again, as unquoted */
            }
            break;
        case S_UNQ: {
            size_t j = i;
            while (j < n && buf[j] != sep && buf[j] != '\n' && buf[j] != '\r')
                j++;
            if (j > i && (rc = append(c, buf + i, j - i)))
                break;
            i = j;
            if (i == n || c->state != S_UNQ)
                break;
            ch = buf[i++];
            if (ch == sep) {
                rc = end_field(c);
            } else if (ch == '\n') {
                c->line++;
                rc = end_record(c);
            } else {
                c->state = S_CR;
                c->cr_quoted = false;
            }
            break;
        }
        case S_Q: {
            size_t j = i;
            for (; j < n && buf[j] != '"'; j++)
                if (buf[j] == '\n') {
                    c->line++;
                    if (!c->rec_nl)
                        c->rec_nl = base + j + 1;
                }
            if (j > i && (rc = append(c, buf + i, j - i)))
                break;
            i = j;
            if (i < n && c->state == S_Q) {
                c->state = S_QQ;
                i++;
            }
            break;
        }
        case S_QQ:
            if (ch == '"') {
                c->state = S_Q;
                rc = append(c, buf + i, 1);
            } else if (ch == sep) {
                rc = end_field(c);
            } else if (ch == '\n') {
                c->line++;
                rc = end_record(c);
            } else if (ch == '\r') {
                c->state = S_CR;
                c->cr_quoted = true;
            } else {
                rc = bad(c, "a character after a closing quote");
                continue; /* S_SKIP drops this line from here */
            }
            i++;
            break;
        case S_CR:
            if (ch == '\n') {
                c->line++;
                rc = end_record(c);
                i++;
            } else if (c->cr_quoted) {
                rc = bad(c, "a character after a closing quote");
            } else {
                c->state = S_UNQ; /* a lone CR is data; this byte again */
                rc = append(c, (const uint8_t *)"\r", 1);
            }
            break;
        case S_SKIP: {
            const uint8_t *nl = memchr(buf + i, '\n', n - i);
            if (!nl) {
                i = n;
                break;
            }
            i = (size_t)(nl - buf) + 1;
            c->line++;
            rec_reset(c);
            break;
        }
        }
    }
    return rc;
}

/* At the end of the stream: finishes the last record. */
static int finish(csv *c)
{
    switch (c->state) {
    case S_Q:
        return bad(c, "a quoted field is not closed before the end of the file");
    case S_SKIP:
        return 0;
    default:
        return end_record(c); /* nothing pending reads as an empty line */
    }
}

/* A piece cut from a file with no quotes (pc->line set): its records are
 * the lines that start in [start, end), as text reads them. Moves f to the
 * first such line and sets c->line; *none when there is none. */
static int seek_piece(csv *c, gl_infile *f, const gl_piece *pc, uint8_t *chunk, uint64_t *pos, bool *none,
                      gl_err *err)
{
    *pos = 0;
    *none = false;
    c->line = pc->line;
    if (pc->start == 0)
        return 0;
    uint64_t at = pc->start - 1;
    int rc = gl_infile_seek(f, at, c->who, c->path, err);
    while (!rc) {
        ssize_t got = gl_infile_read(f, chunk, CHUNK_BYTES, c->who, c->path, err);
        if (got <= 0) {
            *none = true;
            return (int)got;
        }
        const uint8_t *nl = memchr(chunk, '\n', (size_t)got);
        if (nl) {
            *pos = at + (uint64_t)(nl - chunk) + 1;
            c->line++;
            return gl_infile_seek(f, *pos, c->who, c->path, err);
        }
        at += (uint64_t)got;
    }
    return rc;
}

static int read_file(csv *c, const gl_piece *pc, uint8_t *chunk, gl_err *err)
{
    gl_infile f;
    int rc = gl_infile_open(&f, c->who, c->path, err);
    if (rc)
        return rc;
    c->line = 1;
    rec_reset(c);
    uint64_t pos = 0; /* stream offset of the next chunk */
    uint64_t limit = UINT64_MAX; /* a cut piece: past the newline ending its last line */
    bool cut = pc->line != 0, none = false;
    if (cut && ((rc = seek_piece(c, &f, pc, chunk, &pos, &none, err)) || none)) {
        gl_infile_close(&f);
        return rc;
    }
    for (;;) {
        ssize_t got = pos >= limit ? 0 : gl_infile_read(&f, chunk, CHUNK_BYTES, c->who, c->path, err);
        if (got < 0) {
            rc = (int)got;
            break;
        }
        if (cut && limit == UINT64_MAX && pos + (uint64_t)got >= pc->end) {
            uint64_t from = pc->end - 1 > pos ? pc->end - 1 - pos : 0;
            const uint8_t *nl = memchr(chunk + from, '\n', (size_t)got - from);
            if (nl)
                limit = pos + (uint64_t)(nl - chunk) + 1;
        }
        if (pos + (uint64_t)got > limit)
            got = (ssize_t)(limit - pos);
        size_t skip = 0;
        if (pos == 0 && got >= 3 && !memcmp(chunk, "\xef\xbb\xbf", 3))
            skip = 3; /* a UTF-8 byte order mark */
        rc = got ? parse(c, chunk + skip, (size_t)got - skip, pos + skip) : finish(c);
        pos += (uint64_t)got;
        if (rc == RESYNC) {
            if ((rc = gl_infile_seek(&f, c->resync, c->who, c->path, err)))
                break;
            pos = c->resync;
            continue;
        }
        if (rc || !got)
            break;
    }
    gl_infile_close(&f);
    return rc;
}

int gl_csv_read(const gl_stage *st, const gl_step *s, uint32_t task, gl_emit_fn emit, void *ctx,
                uint64_t *skipped, gl_err *err)
{
    uint64_t dummy = 0;
    csv c = {
        .who = s->name && !strcmp(s->name, "tsv") ? "tsv" : "csv",
        .sep = (uint8_t)s->sep,
        .types = s->types == 1,
        .coltypes = s->coltypes,
        .ncoltypes = s->coltypes ? strlen(s->coltypes) : 0,
        .skip_bad = s->skip_bad != 0,
        .skipped = skipped ? skipped : &dummy,
        .emit = emit,
        .ctx = ctx,
        .err = err,
    };
    uint8_t *chunk = malloc(CHUNK_BYTES);
    if (!chunk)
        return gl_err_set(err, GL_ENOMEM, "%s: out of memory", c.who);
    int rc = 0;
    for (uint32_t i = st->first[task]; i < st->first[task + 1] && !rc; i++) {
        c.path = st->files[st->pieces[i].file];
        c.header = s->header != 0 && st->pieces[i].start == 0;
        rc = read_file(&c, &st->pieces[i], chunk, err);
    }
    if (!rc && c.nrows)
        rc = emit(ctx, c.batch.data, c.batch.len, c.nrows);
    if (rc && !err->code)
        gl_err_set(err, rc, "%s: stopped reading '%s'", c.who, c.path);
    free(chunk);
    free(c.f);
    gl_buf_free(&c.fbuf);
    gl_buf_free(&c.batch);
    return rc;
}
