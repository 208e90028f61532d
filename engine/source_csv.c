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
 * (field bytes unescaped into one buffer, reused) plus one batch. A record
 * that starts a line and ends on it within the chunk, with no quote and
 * no CR but one before the LF (most records of most files), is read in
 * place instead, straight from the chunk into the batch; it gives the row
 * the state machine would. Each field is typed and encoded in one go; a
 * record that turns out malformed is taken back out of the batch. Line
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
    gl_buf num;          /* a long number's bytes for strtod */
    uint8_t cls[256];    /* fast_line: 1 the separator, 2 a quote or CR */
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

/* An integer: optional sign, then digits, in int64. A leading zero
 * before another digit makes it not one ("007" stays a string), unless
 * zeros are allowed (a declared integer column). */
static inline bool parse_int(const uint8_t *p, size_t n, bool zeros, int64_t *out)
{
    size_t i = 0;
    bool neg = false;
    if (n && (p[0] == '-' || p[0] == '+')) {
        neg = p[0] == '-';
        i = 1;
    }
    if (i == n)
        return false;
    if (p[i] == '0' && n - i > 1) {
        if (!zeros)
            return false;
        while (i + 1 < n && p[i] == '0')
            i++;
    }
    if (n - i > 19)
        return false;
    uint64_t v = 0;
    for (; i < n; i++) {
        unsigned d = (unsigned)p[i] - '0';
        if (d > 9)
            return false;
        v = v * 10 + d; /* 19 digits cannot wrap */
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

static locale_t c_locale;
static pthread_once_t c_locale_once = PTHREAD_ONCE_INIT;
static void make_c_locale(void) { c_locale = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0); }

/* strtod in the C locale over exactly the n bytes at p, copied to end in
 * a NUL (on the stack, or in c->num when long). Returns false unless all
 * n bytes are a finite number. */
static bool as_double(csv *c, const uint8_t *p, size_t n, double *out)
{
    pthread_once(&c_locale_once, make_c_locale);
    char small[64], *s = small;
    if (n >= sizeof small) {
        c->num.len = 0;
        if (gl_buf_reserve(&c->num, n + 1))
            return false;
        s = (char *)c->num.data;
    }
    memcpy(s, p, n);
    s[n] = 0;
    char *end;
    double d = c_locale ? strtod_l(s, &end, c_locale) : strtod(s, &end);
    *out = d;
    return n && end == s + n && isfinite(d);
}

/* Appends field i of a record, the n bytes at p, to the batch as its
 * column's type says; each field is read once. Returns 0, -1 out of
 * memory, or 1 when it is not what its column declares (type_error says
 * why). */
static inline int put_field(csv *c, uint32_t i, const uint8_t *p, size_t n, bool quoted)
{
    /* Room for the field as a string (n + 5) or a number. */
    if (gl_buf_reserve(&c->batch, n + GL_MPK_NUM_MAX))
        return -1;
    uint8_t *w = c->batch.data + c->batch.len;
    char t = c->coltypes ? (i < c->ncoltypes ? c->coltypes[i] : 's') : 0;
    bool detect = (t == 'a' || (!t && c->types)) && !quoted;
    int64_t iv;
    double d;
    if (t == 'i' || t == 'n') {
        if (!n && !quoted) {
            *w++ = 0xc0;
        } else if (parse_int(p, n, true, &iv)) {
            w = gl_mpk_w_int(w, iv);
        } else if (t == 'n' && as_double(c, p, n, &d)) {
            return gl_mpk_put_number(&c->batch, d);
        } else {
            return 1;
        }
    } else if (detect && !n) {
        *w++ = 0xc0;
    } else if (detect && parse_int(p, n, false, &iv)) {
        w = gl_mpk_w_int(w, iv);
    } else if (detect && decimal_form(p, n) && as_double(c, p, n, &d)) {
        return gl_mpk_put_number(&c->batch, d);
    } else {
        w = gl_mpk_w_str(w, p, n);
    }
    c->batch.len = (size_t)(w - c->batch.data);
    return 0;
}

/* A record whose field i (the n bytes at p) is not of its declared type,
 * found after the record ended: fails the run, or is skipped and counted.
 * Nothing of it was kept, and skipping it drops nothing after it. */
static int bad_type(csv *c, uint32_t i, const uint8_t *p, size_t n)
{
    if (c->skip_bad) {
        (*c->skipped)++;
        return 0;
    }
    char t = i < c->ncoltypes ? c->coltypes[i] : 's';
    return gl_err_set(c->err, GL_EINVAL, "%s: %s:%" PRIu64 ": field %u is not %s: '%.*s'", c->who, c->path,
                      c->rec_line, i + 1, t == 'i' ? "an integer" : "a number", n > 40 ? 40 : (int)n,
                      (const char *)p);
}

/* Emits the batch once it is big enough. */
static int record_done(csv *c)
{
    c->nrows++;
    if (c->batch.len < GL_BATCH_BYTES)
        return 0;
    int rc = c->emit(c->ctx, c->batch.data, c->batch.len, c->nrows);
    c->batch.len = 0;
    c->nrows = 0;
    return rc;
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
        size_t mark = c->batch.len;
        uint32_t i = 0;
        if (gl_mpk_put_array(&c->batch, c->nf))
            return gl_err_set(c->err, GL_ENOMEM, "%s: out of memory", c->who);
        for (; i < c->nf && !rc; i++)
            rc = put_field(c, i, c->fbuf.data + c->f[i].off, c->f[i].len, c->f[i].quoted);
        if (rc < 0)
            return gl_err_set(c->err, GL_ENOMEM, "%s: out of memory", c->who);
        if (rc) {
            c->batch.len = mark;
            rc = bad_type(c, i - 1, c->fbuf.data + c->f[i - 1].off, c->f[i - 1].len);
        } else {
            rc = record_done(c);
        }
        if (rc)
            return rc;
    }
    rec_reset(c);
    return 0;
}

/* fast_line() result: the line is not one for it. */
#define NOT_FAST 2

/* A record that is one whole line [p, e) of the chunk (e at its LF), with
 * no quote and no CR but one before the LF: the common case, read in
 * place, field by field into the batch, without the state machine or a
 * copy. The array header is written for fewer than 16 fields and widened
 * after if there are more. Returns 0 (the line is done and counted),
 * NOT_FAST (the state machine reads it; nothing was kept), or an error
 * code. c->cls marks the separator (1) and quote and CR (2). */
static int fast_line(csv *c, const uint8_t *p, const uint8_t *e)
{
    if (e > p && e[-1] == '\r')
        e--;
    c->rec_line = c->line;
    if (p == e) { /* an empty line */
        c->line++;
        return 0;
    }
    const uint8_t *cls = c->cls;
    size_t mark = c->batch.len;
    if (c->header) {
        while (p < e && cls[*p] != 2)
            p++;
        if (p < e)
            return NOT_FAST;
        c->header = false;
        c->line++;
        return 0;
    }
    if (gl_buf_reserve(&c->batch, 1))
        return gl_err_set(c->err, GL_ENOMEM, "%s: out of memory", c->who);
    c->batch.len++;
    uint32_t nf = 0;
    for (const uint8_t *s = p;; s++) {
        const uint8_t *q = s;
        while (q < e && !cls[*q])
            q++;
        int rc = q < e && cls[*q] == 2 ? NOT_FAST : put_field(c, nf++, s, (size_t)(q - s), false);
        if (rc == 1) {
            /* Not of its type; but a quote further on may open a field that
             * runs past this line: the record's end is the state machine's
             * to find then. */
            const uint8_t *bad = s, *bad_end = q;
            while (q < e && cls[*q] != 2)
                q++;
            rc = q < e ? NOT_FAST : bad_type(c, nf - 1, bad, (size_t)(bad_end - bad));
            c->batch.len = mark;
            if (rc == NOT_FAST)
                return rc;
            c->line++;
            return rc;
        }
        if (rc) {
            c->batch.len = mark;
            return rc == NOT_FAST ? rc : gl_err_set(c->err, GL_ENOMEM, "%s: out of memory", c->who);
        }
        if (q == e)
            break;
        s = q;
    }
    if (nf < 16) {
        c->batch.data[mark] = (uint8_t)(0x90 | nf);
    } else {
        /* Rewrite the header at its full width and move the fields up. */
        gl_buf h = {0};
        size_t body = c->batch.len - mark - 1;
        if (gl_mpk_put_array(&h, nf) || gl_buf_reserve(&c->batch, h.len)) {
            gl_buf_free(&h);
            return gl_err_set(c->err, GL_ENOMEM, "%s: out of memory", c->who);
        }
        memmove(c->batch.data + mark + h.len, c->batch.data + mark + 1, body);
        memcpy(c->batch.data + mark, h.data, h.len);
        c->batch.len = mark + h.len + body;
        gl_buf_free(&h);
    }
    c->line++;
    return record_done(c);
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
            if (!c->nf && ch != '"') {
                /* A record starts here: a whole line without quotes is
                 * read in place. */
                const uint8_t *nl = memchr(buf + i, '\n', n - i);
                if (nl && (rc = fast_line(c, buf + i, nl)) != NOT_FAST) {
                    i = (size_t)(nl - buf) + 1;
                    c->rec_line = c->line;
                    break;
                }
                rc = 0;
            }
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
    c.cls[c.sep] = 1;
    c.cls['"'] = c.cls['\r'] = 2;
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
    gl_buf_free(&c.num);
    return rc;
}
