/* test_csv.c: the file-format sources: CSV and TSV (source_csv.c), msgpack
 * files (source_msgpack.c), gzip input and whole-file splitting
 * (source_text.c).
 *
 * Files are written to a temp dir, split with gl_text_split as the planner
 * does, and read by calling the readers directly with a collecting emit
 * callback. Every batch is checked to hold exactly the rows it claims, and
 * rows are rendered to one line each (strings quoted, numbers tagged by
 * kind) so a case states its expected output as text. A random CSV
 * writer is the oracle for chunk boundaries: quoting, embedded newlines
 * and CRLF land at every offset of the reader's chunks. */
#include "test.h"

#include "mpk.h"
#include "plan.h"
#include "row.h"
#include "source.h"

#include <sys/stat.h>
#include <zlib.h>

/* ---- helpers ---- */

static char tmpdir[256];

static void tmpdir_remove(void)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", tmpdir);
}

/* Returns the path of `name` in this run's temp dir, made on first use and
 * removed at exit (borrowed: valid for the next fifteen calls). */
static const char *tmp_path(const char *name)
{
    static char path[16][512];
    static int k;
    if (!tmpdir[0]) {
        const char *base = getenv("TMPDIR");
        snprintf(tmpdir, sizeof tmpdir, "%s/gleam-test-csv.XXXXXX", base && *base ? base : "/tmp");
        if (!mkdtemp(tmpdir)) {
            perror("mkdtemp");
            exit(2);
        }
        atexit(tmpdir_remove);
    }
    k = (k + 1) % 16;
    snprintf(path[k], sizeof path[k], "%s/%s", tmpdir, name);
    return path[k];
}

/* Writes n bytes as the file `name` in the temp dir (gzipped if the name
 * ends in ".gz"); returns its path (borrowed, see tmp_path). */
static const char *write_file(const char *name, const void *data, size_t n)
{
    const char *path = tmp_path(name);
    size_t len = strlen(name);
    if (len > 3 && !strcmp(name + len - 3, ".gz")) {
        gzFile gz = gzopen(path, "wb");
        if (!gz || (n && gzwrite(gz, data, (unsigned)n) != (int)n) || gzclose(gz) != Z_OK) {
            perror(path);
            exit(2);
        }
        return path;
    }
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, n, f) != n || fclose(f)) {
        perror(path);
        exit(2);
    }
    return path;
}

static const char *write_str(const char *name, const char *s) { return write_file(name, s, strlen(s)); }

/* What the emit callback collected. */
typedef struct sink {
    gl_buf rows;
    uint64_t nrows, batches;
    size_t max_batch;
    bool bad_batch;
} sink;

static int collect(void *ctx, const uint8_t *rows, size_t len, uint64_t nrows)
{
    sink *s = ctx;
    if (!gl_rows_valid(rows, len, nrows))
        s->bad_batch = true;
    s->batches++;
    s->nrows += nrows;
    if (len > s->max_batch)
        s->max_batch = len;
    return gl_buf_append(&s->rows, rows, len) ? GL_ENOMEM : 0;
}

static void render_value(gl_buf *out, const uint8_t **pp, const uint8_t *end)
{
    gl_mpk_head h;
    const uint8_t *start = *pp, *p = gl_mpk_head_read(start, end, &h);
    char tmp[64];
    if (!p) {
        gl_buf_append(out, "?", 1);
        *pp = end;
        return;
    }
    *pp = p;
    switch (h.cls) {
    case GL_MPK_NIL:
        gl_buf_append(out, "nil", 3);
        break;
    case GL_MPK_BOOL:
        gl_buf_append(out, h.b ? "true" : "false", h.b ? 4 : 5);
        break;
    case GL_MPK_NUM:
        if (h.num.kind == GL_NUM_DOUBLE)
            snprintf(tmp, sizeof tmp, "d%.17g", h.num.v.d);
        else if (h.num.kind == GL_NUM_UINT)
            snprintf(tmp, sizeof tmp, "u%" PRIu64, h.num.v.u);
        else
            snprintf(tmp, sizeof tmp, "%" PRId64, h.num.v.i);
        gl_buf_append(out, tmp, strlen(tmp));
        break;
    case GL_MPK_STR:
        gl_buf_append(out, "\"", 1);
        for (uint32_t i = 0; i < h.n; i++) {
            uint8_t c = h.body[i];
            const char *esc = c == '\n' ? "\\n" : c == '\r' ? "\\r" : c == '\t' ? "\\t" : c == '"' ? "\\\"" : NULL;
            if (esc)
                gl_buf_append(out, esc, 2);
            else
                gl_buf_append(out, &c, 1);
        }
        gl_buf_append(out, "\"", 1);
        break;
    case GL_MPK_ARRAY:
        gl_buf_append(out, "[", 1);
        for (uint32_t i = 0; i < h.n; i++) {
            if (i)
                gl_buf_append(out, ",", 1);
            render_value(out, pp, end);
        }
        gl_buf_append(out, "]", 1);
        break;
    default:
        gl_buf_append(out, "<other>", 7);
        *pp = gl_mpk_skip(start, end);
        if (!*pp)
            *pp = end;
    }
}

/* One line per row: its fields joined by ','; caller frees the string. */
static char *render(const sink *s)
{
    gl_buf out = {0};
    const uint8_t *p = s->rows.data, *end = p + s->rows.len;
    while (p < end) {
        gl_mpk_head h;
        const uint8_t *q = gl_mpk_head_read(p, end, &h);
        if (!q || h.cls != GL_MPK_ARRAY)
            break;
        p = q;
        for (uint32_t i = 0; i < h.n; i++) {
            if (i)
                gl_buf_append(&out, ",", 1);
            render_value(&out, &p, end);
        }
        gl_buf_append(&out, "\n", 1);
    }
    gl_buf_append(&out, "\0", 1);
    return (char *)out.data;
}

/* Options of one csv read. */
typedef struct copts {
    int sep, header, types, skip_bad;
    const char *name; /* method name: "csv" (default) or "tsv" */
    const char *coltypes; /* declared column types, or NULL */
} copts;

typedef struct result {
    int rc;
    gl_err err;
    uint64_t skipped;
    sink out;
    char *text; /* rendered rows (caller frees with result_free) */
} result;

static void result_free(result *r)
{
    gl_buf_free(&r->out.rows);
    free(r->text);
}

/* Splits the files as the planner does (kind, shards) into *st. */
static int split(int kind, const char **paths, uint32_t n, int64_t shards, uint32_t workers, gl_stage *st,
                 gl_err *err)
{
    gl_step s = {.kind = kind, .paths = (char **)paths, .npaths = n, .shards = shards};
    memset(st, 0, sizeof *st);
    return gl_text_split(&s, workers, st, err);
}

static void stage_free(gl_stage *st)
{
    gl_stage *v = malloc(sizeof *v);
    *v = *st;
    gl_stages s = {v, 1};
    gl_stages_free(&s);
}

/* Reads the files, in order, as one csv task. */
static result read_csv(const char **paths, uint32_t n, copts o)
{
    result r = {0};
    gl_step s = {.kind = GL_STEP_CSV,
                 .name = (char *)(o.name ? o.name : "csv"),
                 .paths = (char **)paths,
                 .npaths = n,
                 .shards = 1,
                 .sep = o.sep ? o.sep : ',',
                 .header = o.header,
                 .types = o.types,
                 .skip_bad = o.skip_bad,
                 .coltypes = (char *)o.coltypes};
    gl_stage st = {0};
    r.rc = gl_text_split(&s, 1, &st, &r.err);
    if (!r.rc)
        r.rc = gl_csv_read(&st, &s, 0, collect, &r.out, &r.skipped, &r.err);
    stage_free(&st);
    r.text = render(&r.out);
    if (r.out.bad_batch)
        r.rc = 99;
    return r;
}

static result read_one(const char *path, copts o) { return read_csv(&path, 1, o); }

/* Reads the files as one task of `reader` (text or msgpack). */
static result read_with(int kind, const char **paths, uint32_t n)
{
    result r = {0};
    gl_stage st;
    r.rc = split(kind, paths, n, 1, 1, &st, &r.err);
    if (!r.rc)
        r.rc = kind == GL_STEP_MSGPACK ? gl_msgpack_read(&st, 0, collect, &r.out, &r.err)
                                       : gl_text_read(&st, 0, collect, &r.out, &r.err);
    stage_free(&st);
    r.text = render(&r.out);
    if (r.out.bad_batch)
        r.rc = 99;
    return r;
}

/* Checks the rendered rows, showing both on a mismatch. */
#define CHECK_ROWS(r, want) \
    do { \
        if (!CHECK(!strcmp((r).text, (want)))) \
            fprintf(stderr, "  want:\n%s  got:\n%s  (rc %d: %s)\n", (want), (r).text, (r).rc, (r).err.msg); \
    } while (0)

#define CHECK_MSG(r, sub) \
    do { \
        if (!CHECK(strstr((r).err.msg, (sub)) != NULL)) \
            fprintf(stderr, "  message '%s' lacks '%s'\n", (r).err.msg, (sub)); \
    } while (0)

/* ---- csv ---- */

TEST(quoting)
{
    const char *p = write_str("q.csv", "a,\"b,c\",\"d\"\"e\"\n"
                                        "\"multi\nline\",x\r\n"
                                        "\n\r\n"
                                        "\"\",,\"\"\"\"\n"
                                        "has \"inner\" quote,\"\"\n"
                                        "lone\rcr,z\n"
                                        "last,row");
    result r = read_one(p, (copts){0});
    CHECK_EQ(r.rc, 0);
    CHECK_ROWS(r, "\"a\",\"b,c\",\"d\\\"e\"\n"
                  "\"multi\\nline\",\"x\"\n"
                  "\"\",\"\",\"\\\"\"\n"
                  "\"has \\\"inner\\\" quote\",\"\"\n"
                  "\"lone\\rcr\",\"z\"\n"
                  "\"last\",\"row\"\n");
    CHECK_EQ(r.out.nrows, 6);
    result_free(&r);
}

TEST(crlf_and_empty_fields)
{
    const char *p = write_str("crlf.csv", "a,,c\r\n,\r\n\"q\"\r\n\"x\r\ny\",\"\"\r\nend,\r");
    result r = read_one(p, (copts){0});
    CHECK_EQ(r.rc, 0);
    CHECK_ROWS(r, "\"a\",\"\",\"c\"\n"
                  "\"\",\"\"\n"
                  "\"q\"\n"
                  "\"x\\r\\ny\",\"\"\n"
                  "\"end\",\"\"\n");
    result_free(&r);
    /* An empty file and one of empty lines give no rows. */
    const char *files[] = {write_str("empty.csv", ""), write_str("blank.csv", "\n\r\n\n")};
    r = read_csv(files, 2, (copts){0});
    CHECK_EQ(r.rc, 0);
    CHECK_ROWS(r, "");
    result_free(&r);
}

TEST(header)
{
    const char *files[] = {
        write_str("h1.csv", "\n\"name\",age\nann,31\nbob,42\n"),
        write_str("h2.csv", "name,age\r\ncy,7"),
        write_str("h3.csv", "name,age\n"),
        write_str("h4.csv", "\xef\xbb\xbfname,age\ndee,1\n"),
    };
    result r = read_csv(files, 4, (copts){.header = 1, .types = 1});
    CHECK_EQ(r.rc, 0);
    CHECK_ROWS(r, "\"ann\",31\n\"bob\",42\n\"cy\",7\n\"dee\",1\n");
    result_free(&r);
    /* Without header the first record is a row; the BOM is not data. */
    r = read_csv(files + 3, 1, (copts){0});
    CHECK_ROWS(r, "\"name\",\"age\"\n\"dee\",\"1\"\n");
    result_free(&r);
}

TEST(types_auto)
{
    const char *p = write_str("t.csv",
                              "12,-7,+3,0,-0,007,1e5,1.5,-,,\"12\",\"\"\n"
                              "9223372036854775807,-9223372036854775808,9223372036854775808,-9223372036854775809\n"
                              "inf,nan,-inf,0x10, 5,5 ,.5,5.,1E-2,-0.0,1e999,00.5,1e,e5,1.2.3,--1,0.25e+2\n");
    /* Past int64 a number is a double, stored as Lua stores one: the
     * double nearest -2^63-1 is -2^63, integral, so it becomes an integer. */
    result r = read_one(p, (copts){.types = 1});
    CHECK_EQ(r.rc, 0);
    CHECK_ROWS(r, "12,-7,3,0,0,\"007\",100000,d1.5,\"-\",nil,\"12\",\"\"\n"
                  "9223372036854775807,-9223372036854775808,d9.2233720368547758e+18,-9223372036854775808\n"
                  "\"inf\",\"nan\",\"-inf\",\"0x10\",\" 5\",\"5 \",d0.5,5,d0.01,d-0,\"1e999\",\"00.5\",\"1e\",\"e5\","
                  "\"1.2.3\",\"--1\",25\n");
    result_free(&r);
    /* types = strings: everything stays a string, empty ones too. */
    r = read_one(p, (copts){.types = 0});
    const char *strings = "\"12\",\"-7\",\"+3\",\"0\",\"-0\",\"007\",\"1e5\",\"1.5\",\"-\",\"\",\"12\",\"\"\n";
    CHECK(!strncmp(r.text, strings, strlen(strings)));
    result_free(&r);
}

TEST(tsv)
{
    const char *p = write_str("a.tsv", "a\tb c\t\"x\ty\"\n1,5\t\t2\n");
    result r = read_one(p, (copts){.sep = '\t', .types = 1, .name = "tsv"});
    CHECK_EQ(r.rc, 0);
    CHECK_ROWS(r, "\"a\",\"b c\",\"x\\ty\"\n\"1,5\",nil,2\n");
    result_free(&r);
    p = write_str("bad.tsv", "ok\n\"x\"y\n");
    r = read_one(p, (copts){.sep = '\t', .name = "tsv"});
    CHECK_EQ(r.rc, GL_EINVAL);
    CHECK_MSG(r, "tsv: ");
    CHECK_MSG(r, "bad.tsv:2: ");
    result_free(&r);
}

TEST(malformed)
{
    char want[600];
    /* A character after a closing quote, on the record's own line. */
    const char *p = write_str("m1.csv", "a,b\n\"x\"y,z\nc,d\n");
    result r = read_one(p, (copts){0});
    CHECK_EQ(r.rc, GL_EINVAL);
    snprintf(want, sizeof want, "csv: %s:2: ", p);
    CHECK_MSG(r, want);
    CHECK_MSG(r, "after a closing quote");
    result_free(&r);
    r = read_one(p, (copts){.skip_bad = 1});
    CHECK_EQ(r.rc, 0);
    CHECK_EQ(r.skipped, 1);
    CHECK_ROWS(r, "\"a\",\"b\"\n\"c\",\"d\"\n");
    result_free(&r);

    /* A quote opened on line 2 runs on and closes before "f": the record
     * starts on line 2; skipping it resumes at line 3. */
    p = write_str("m2.csv", "a\n\"open,x\nc,d\ne,\"f\"\n");
    r = read_one(p, (copts){0});
    CHECK_EQ(r.rc, GL_EINVAL);
    snprintf(want, sizeof want, "%s:2: ", p);
    CHECK_MSG(r, want);
    result_free(&r);
    r = read_one(p, (copts){.skip_bad = 1});
    CHECK_EQ(r.skipped, 1);
    CHECK_ROWS(r, "\"a\"\n\"c\",\"d\"\n\"e\",\"f\"\n");
    result_free(&r);

    /* A quote never closed. */
    p = write_str("m3.csv", "a\n\"open\nb\nc,q\n");
    r = read_one(p, (copts){0});
    CHECK_EQ(r.rc, GL_EINVAL);
    snprintf(want, sizeof want, "csv: %s:2: a quoted field is not closed", p);
    CHECK_MSG(r, want);
    result_free(&r);
    r = read_one(p, (copts){.skip_bad = 1, .types = 1});
    CHECK_EQ(r.rc, 0);
    CHECK_EQ(r.skipped, 1);
    CHECK_ROWS(r, "\"a\"\n\"b\"\n\"c\",\"q\"\n");
    result_free(&r);

    /* Line numbers count the newlines inside quotes; CRLF after a closing
     * quote is a line end, CR and anything else is not. Two bad records. */
    p = write_str("m4.csv", "h\n\"ok\nfine\",1\r\n\"bad\nrec\"x\nz\n\"q\"\rw\nlast\n");
    r = read_one(p, (copts){0});
    snprintf(want, sizeof want, "%s:4: ", p);
    CHECK_MSG(r, want);
    result_free(&r);
    r = read_one(p, (copts){.skip_bad = 1});
    CHECK_EQ(r.skipped, 2);
    CHECK_ROWS(r, "\"h\"\n\"ok\\nfine\",\"1\"\n\"rec\\\"x\"\n\"z\"\n\"last\"\n");
    result_free(&r);

    /* A bad header still is the header. */
    p = write_str("m5.csv", "\"h\"x\n1\n");
    r = read_one(p, (copts){.skip_bad = 1, .header = 1});
    CHECK_EQ(r.skipped, 1);
    CHECK_ROWS(r, "\"1\"\n");
    result_free(&r);
    /* The skipped count adds up over files. */
    const char *files[] = {tmp_path("m1.csv"), tmp_path("m3.csv"), tmp_path("m4.csv")};
    r = read_csv(files, 3, (copts){.skip_bad = 1});
    CHECK_EQ(r.skipped, 4);
    CHECK_EQ(r.out.nrows, 2 + 3 + 5);
    result_free(&r);
}

/* Lines without quotes are read in place (fast_line); these are the
 * edges where they must read as the state machine does. */
TEST(lines_read_in_place)
{
    /* 17 and 20 fields: the row header is wider than one byte. */
    const char *p = write_str("wide.csv", "1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17\n"
                                          "a,b,c,d,e,f,g,h,i,j,k,l,m,n,o,p,q,r,s,t\r\nx\n");
    result r = read_one(p, (copts){.types = 1});
    CHECK_EQ(r.rc, 0);
    CHECK_ROWS(r, "1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17\n"
                  "\"a\",\"b\",\"c\",\"d\",\"e\",\"f\",\"g\",\"h\",\"i\",\"j\",\"k\",\"l\",\"m\",\"n\",\"o\",\"p\","
                  "\"q\",\"r\",\"s\",\"t\"\n\"x\"\n");
    result_free(&r);

    /* CRLF ends a line; a lone CR is data; a quote inside a field is data. */
    p = write_str("cr.csv", "a,b\r\nc\rd,e\r\n\r\nf\"g,h\n");
    r = read_one(p, (copts){0});
    CHECK_EQ(r.rc, 0);
    CHECK_ROWS(r, "\"a\",\"b\"\n\"c\\rd\",\"e\"\n\"f\\\"g\",\"h\"\n");
    result_free(&r);

    /* Declared types: each field read once; a bad one names its line,
     * after lines read in place and before them. */
    p = write_str("typed.csv", "id,x\n1,2.5\n007,-3\n\n2,x\n3,4\n");
    r = read_one(p, (copts){.header = 1, .coltypes = "in"});
    CHECK_EQ(r.rc, GL_EINVAL);
    char want[600];
    snprintf(want, sizeof want, "csv: %s:5: field 2 is not a number: 'x'", p);
    CHECK_MSG(r, want);
    result_free(&r);
    r = read_one(p, (copts){.header = 1, .coltypes = "in", .skip_bad = 1});
    CHECK_EQ(r.rc, 0);
    CHECK_EQ(r.skipped, 1);
    CHECK_ROWS(r, "1,d2.5\n7,-3\n3,4\n");
    result_free(&r);

    /* A bad field before a quote that opens a field running on to the next
     * line: the record is both lines, skipped whole. */
    p = write_str("multi.csv", "x,\"two\nlines\"\n5,z\n");
    r = read_one(p, (copts){.coltypes = "i", .skip_bad = 1});
    CHECK_EQ(r.skipped, 1);
    CHECK_ROWS(r, "5,\"z\"\n");
    result_free(&r);

    /* A number longer than the stack copy strtod reads: 0.0...01e150. */
    char line[200];
    memset(line, '0', 150);
    memcpy(line, "0.", 2);
    memcpy(line + 150, "1e150\n", 7);
    p = write_str("long_number.csv", line);
    r = read_one(p, (copts){.coltypes = "n"});
    CHECK_EQ(r.rc, 0);
    CHECK_ROWS(r, "10\n"); /* 1e-149 * 1e150 */
    result_free(&r);
}

TEST(missing_file)
{
    /* The split stats the file first; the reader reports one gone since. */
    const char *p = write_str("gone.csv", "a\n");
    gl_step s = {.kind = GL_STEP_CSV, .name = "csv", .paths = (char **)&p, .npaths = 1, .shards = 1, .sep = ','};
    gl_stage st = {0};
    gl_err err = {0};
    sink out = {0};
    uint64_t skipped = 0;
    REQUIRE(gl_text_split(&s, 1, &st, &err) == 0);
    unlink(p);
    CHECK_EQ(gl_csv_read(&st, &s, 0, collect, &out, &skipped, &err), GL_EIO);
    char want[600];
    snprintf(want, sizeof want, "csv: cannot read '%s': No such file or directory", p);
    CHECK(!strcmp(err.msg, want));
    memset(&err, 0, sizeof err);
    CHECK_EQ(gl_msgpack_read(&st, 0, collect, &out, &err), GL_EIO);
    CHECK(strstr(err.msg, "msgpack: cannot read") != NULL);
    stage_free(&st);
    gl_buf_free(&out.rows);
}

/* Appends a random field to csv (quoted when it must be, sometimes when it
 * need not be) and its rendering to want. */
static void random_field(gl_buf *csv, gl_buf *want, uint8_t sep)
{
    static const char alphabet[] = "ab,\t\"\n\r xyz09";
    char f[40];
    uint32_t n = test_below(3) ? test_below(8) : test_below(40);
    for (uint32_t i = 0; i < n; i++)
        f[i] = alphabet[test_below(sizeof alphabet - 1)];
    bool must = n == 0 || memchr(f, sep, n) || memchr(f, '"', n) || memchr(f, '\n', n) || memchr(f, '\r', n);
    bool quote = must || test_below(4) == 0;
    if (quote) {
        gl_buf_append(csv, "\"", 1);
        for (uint32_t i = 0; i < n; i++)
            gl_buf_append(csv, f[i] == '"' ? "\"\"" : &f[i], f[i] == '"' ? 2 : 1);
        gl_buf_append(csv, "\"", 1);
    } else {
        gl_buf_append(csv, f, n);
    }
    gl_buf_append(want, "\"", 1);
    for (uint32_t i = 0; i < n; i++) {
        uint8_t c = (uint8_t)f[i];
        const char *esc = c == '\n' ? "\\n" : c == '\r' ? "\\r" : c == '\t' ? "\\t" : c == '"' ? "\\\"" : NULL;
        gl_buf_append(want, esc ? esc : (const char *)&c, esc ? 2 : 1);
    }
    gl_buf_append(want, "\"", 1);
}

/* Random records (about `bytes` of them) written in RFC 4180 form with LF
 * or CRLF ends and a few long fields; both buffers are caller-freed. */
static void random_csv(gl_buf *csv, gl_buf *want, size_t bytes, uint8_t sep)
{
    while (csv->len < bytes) {
        uint32_t nf = 1 + test_below(6);
        for (uint32_t i = 0; i < nf; i++) {
            if (i) {
                gl_buf_append(csv, &sep, 1);
                gl_buf_append(want, ",", 1);
            }
            random_field(csv, want, sep);
        }
        if (test_below(10000) == 0) { /* a field longer than a read chunk */
            gl_buf_append(csv, &sep, 1);
            gl_buf_append(want, ",\"", 2);
            gl_buf_append(csv, "\"", 1);
            size_t n = 300000 + test_below(100000);
            for (size_t i = 0; i < n; i++) {
                char c = "q\n\"s"[test_below(4)];
                gl_buf_append(csv, c == '"' ? "\"\"" : &c, c == '"' ? 2 : 1);
                gl_buf_append(want, c == '"' ? "\\\"" : c == '\n' ? "\\n" : &c, c == '"' || c == '\n' ? 2 : 1);
            }
            gl_buf_append(csv, "\"", 1);
            gl_buf_append(want, "\"", 1);
        }
        if (test_below(2))
            gl_buf_append(csv, "\r\n", 2);
        else
            gl_buf_append(csv, "\n", 1);
        gl_buf_append(want, "\n", 1);
    }
    gl_buf_append(want, "\0", 1);
}

TEST(random_round_trip)
{
    for (int round = 0; round < 3; round++) {
        uint8_t sep = round == 1 ? '\t' : ',';
        gl_buf csv = {0}, want = {0};
        random_csv(&csv, &want, 3u << 20, sep);
        const char *files[] = {write_file(round == 2 ? "rand.csv.gz" : "rand.csv", csv.data, csv.len)};
        result r = read_csv(files, 1, (copts){.sep = sep});
        CHECK_EQ(r.rc, 0);
        if (!CHECK(!strcmp(r.text, (char *)want.data))) {
            size_t i = 0;
            while (r.text[i] && r.text[i] == want.data[i])
                i++;
            fprintf(stderr, "  round %d: first difference at rendered byte %zu\n", round, i);
        }
        CHECK(r.out.batches > 10);
        /* A batch is handed on once it passes GL_BATCH_BYTES: at most one
         * record beyond it. */
        CHECK(r.out.max_batch < GL_BATCH_BYTES + 500000);
        result_free(&r);
        gl_buf_free(&csv);
        gl_buf_free(&want);
    }
}

TEST(long_record)
{
    /* A line past the record limit (64 MiB) fails, or is skipped alone. */
    size_t n = (64u << 20) + 10;
    char *big = malloc(n + 20);
    REQUIRE(big);
    memcpy(big, "a\n", 2);
    memset(big + 2, 'x', n);
    memcpy(big + 2 + n, "\nb\n", 3);
    const char *p = write_file("long.csv", big, n + 5);
    free(big);
    result r = read_one(p, (copts){0});
    CHECK_EQ(r.rc, GL_EINVAL);
    CHECK_MSG(r, "long.csv:2: record longer than");
    result_free(&r);
    r = read_one(p, (copts){.skip_bad = 1});
    CHECK_EQ(r.skipped, 1);
    CHECK_ROWS(r, "\"a\"\n\"b\"\n");
    result_free(&r);
    unlink(p);
}

/* ---- gzip ---- */

TEST(gzip)
{
    const char *csv = "id,name\n1,\"x\ny\"\n2,z\n";
    const char *files[] = {write_str("g.csv.gz", csv), write_str("g.csv", csv)};
    result a = read_csv(files, 1, (copts){.header = 1, .types = 1});
    result b = read_csv(files + 1, 1, (copts){.header = 1, .types = 1});
    CHECK_EQ(a.rc, 0);
    CHECK_ROWS(a, b.text);
    CHECK_ROWS(a, "1,\"x\\ny\"\n2,\"z\"\n");
    result_free(&a);
    result_free(&b);

    /* Text on a .gz file: the lines of the decompressed stream. */
    const char *lines = "one\ntwo\r\n\nfour";
    const char *t[] = {write_str("t.txt.gz", lines), write_str("t.txt", lines)};
    a = read_with(GL_STEP_TEXT, t, 1);
    b = read_with(GL_STEP_TEXT, t + 1, 1);
    CHECK_EQ(a.rc, 0);
    CHECK_ROWS(a, b.text);
    CHECK_EQ(a.out.nrows, 4);
    result_free(&a);
    result_free(&b);

    /* A gz cut short, and one with a corrupt body. */
    gl_buf big = {0};
    for (int i = 0; i < 20000; i++) {
        char line[64];
        int k = snprintf(line, sizeof line, "%d,%u\n", i, (unsigned)test_rand());
        gl_buf_append(&big, line, (size_t)k);
    }
    const char *gz = write_file("cut.csv.gz", big.data, big.len);
    struct stat sb;
    REQUIRE(stat(gz, &sb) == 0);
    REQUIRE(truncate(gz, sb.st_size / 2) == 0);
    a = read_one(gz, (copts){0});
    CHECK_EQ(a.rc, GL_EIO);
    CHECK_MSG(a, "csv: '");
    CHECK_MSG(a, "cut.csv.gz': unexpected end of file");
    result_free(&a);
    const char *tg[] = {gz};
    a = read_with(GL_STEP_TEXT, tg, 1);
    CHECK_EQ(a.rc, GL_EIO);
    CHECK_MSG(a, "text: '");
    CHECK_MSG(a, "cut.csv.gz': unexpected end of file");
    result_free(&a);

    gz = write_file("bad.csv.gz", big.data, big.len);
    FILE *f = fopen(gz, "r+b");
    REQUIRE(f);
    fseek(f, 100, SEEK_SET);
    fwrite("\xff\xff\xff\xff\xff\xff\xff\xff", 1, 8, f);
    fclose(f);
    a = read_one(gz, (copts){0});
    CHECK_EQ(a.rc, GL_EIO);
    CHECK(strstr(a.err.msg, "bad.csv.gz': ") != NULL);
    result_free(&a);
    gl_buf_free(&big);

    /* A skipped multi-line record in a gz file seeks back in the stream. */
    gz = write_str("skip.csv.gz", "a\n\"open\nb\nc\n");
    a = read_one(gz, (copts){.skip_bad = 1});
    CHECK_EQ(a.skipped, 1);
    CHECK_ROWS(a, "\"a\"\n\"b\"\n\"c\"\n");
    result_free(&a);
}

/* ---- msgpack ---- */

/* Writes nrows rows of mixed values, one long; returns them in b. */
static void msgpack_rows(gl_buf *b, uint32_t nrows)
{
    for (uint32_t i = 0; i < nrows; i++) {
        gl_mpk_put_array(b, 4);
        gl_mpk_put_int(b, (int64_t)i - 5);
        gl_mpk_put_double(b, i + 0.5);
        if (i == nrows / 2) {
            static char longs[3u << 20];
            memset(longs, 'L', sizeof longs);
            gl_mpk_put_str(b, longs, sizeof longs); /* a row longer than a read chunk */
        } else {
            char s[32];
            gl_mpk_put_str(b, s, (size_t)snprintf(s, sizeof s, "row %u", i));
        }
        gl_mpk_put_array(b, 2);
        gl_mpk_put_nil(b);
        gl_mpk_put_bool(b, i & 1);
    }
}

TEST(msgpack)
{
    gl_buf b = {0};
    msgpack_rows(&b, 100000);
    const char *files[] = {write_file("r.mpk", b.data, b.len), write_file("r.mpk.gz", b.data, b.len),
                           write_file("e.mpk", "", 0)};
    for (int k = 0; k < 2; k++) {
        result r = read_with(GL_STEP_MSGPACK, files + k, 1);
        CHECK_EQ(r.rc, 0);
        CHECK_EQ(r.out.nrows, 100000);
        CHECK_MEM(r.out.rows.data, r.out.rows.len, b.data, b.len);
        CHECK(r.out.batches > 10);
        CHECK(r.out.max_batch < (4u << 20));
        result_free(&r);
    }
    result r = read_with(GL_STEP_MSGPACK, files, 3);
    CHECK_EQ(r.rc, 0);
    CHECK_EQ(r.out.nrows, 200000);
    result_free(&r);

    /* Cut inside the last row: reported at that row's first byte. */
    gl_buf small = {0};
    msgpack_rows(&small, 3);
    size_t last = 0;
    const uint8_t *p = small.data, *end = p + small.len;
    for (int i = 0; i < 2; i++)
        p = gl_row_end(p, end);
    last = (size_t)(p - small.data);
    const char *cut = write_file("cut.mpk", small.data, small.len - 1);
    const char *cf[] = {cut};
    r = read_with(GL_STEP_MSGPACK, cf, 1);
    CHECK_EQ(r.rc, GL_EINVAL);
    char want[600];
    snprintf(want, sizeof want, "msgpack: %s: malformed row at byte %zu", cut, last);
    CHECK(!strcmp(r.err.msg, want));
    result_free(&r);

    /* Not rows at all: fails at once, at byte 0. */
    const char *junk[] = {write_str("junk.mpk", "hello, world\n")};
    r = read_with(GL_STEP_MSGPACK, junk, 1);
    CHECK_EQ(r.rc, GL_EINVAL);
    CHECK_MSG(r, "junk.mpk: malformed row at byte 0");
    CHECK_EQ(r.out.nrows, 0);
    result_free(&r);
    /* A value that is not an array after good rows. */
    gl_buf mixed = {0};
    gl_mpk_put_array(&mixed, 1);
    gl_mpk_put_int(&mixed, 1);
    gl_mpk_put_int(&mixed, 7);
    const char *mf[] = {write_file("mixed.mpk", mixed.data, mixed.len)};
    r = read_with(GL_STEP_MSGPACK, mf, 1);
    CHECK_EQ(r.rc, GL_EINVAL);
    CHECK_MSG(r, "mixed.mpk: malformed row at byte 2");
    result_free(&r);
    gl_buf_free(&mixed);
    gl_buf_free(&small);
    gl_buf_free(&b);
}

/* ---- splitting ---- */

TEST(whole_file_split)
{
    gl_step csv = {.kind = GL_STEP_CSV}, text = {.kind = GL_STEP_TEXT}, mp = {.kind = GL_STEP_MSGPACK};
    CHECK(gl_text_whole_file(&csv, "a.csv"));
    CHECK(gl_text_whole_file(&mp, "a.mpk"));
    CHECK(gl_text_whole_file(&text, "a.txt.gz"));
    CHECK(!gl_text_whole_file(&text, "a.txt"));
    CHECK(!gl_text_whole_file(&text, "a.gzip"));

    /* Several csv files: one piece each, in order, packed several per task. */
    char big[3000];
    memset(big, 'x', sizeof big);
    big[sizeof big - 1] = '\n';
    const char *files[] = {write_file("s1.csv", big, 1000), write_file("s2.csv", big, 3000),
                           write_file("s3.csv", big, 10), write_file("s4.csv", big, 0),
                           write_file("s5.csv", big, 2000)};
    for (int64_t shards = 1; shards <= 7; shards++) {
        gl_stage st;
        gl_err err = {0};
        REQUIRE(split(GL_STEP_CSV, files, 5, shards, 4, &st, &err) == 0);
        CHECK_EQ(st.ntasks, shards);
        CHECK_EQ(st.first[0], 0);
        CHECK_EQ(st.first[st.ntasks], 5); /* an empty file too: it may be a pipe */
        uint64_t want_end[] = {1000, 3000, 10, 0, 2000};
        for (uint32_t i = 0; i < st.first[st.ntasks] && i < 5; i++) {
            CHECK_EQ(st.pieces[i].file, i);
            CHECK_EQ(st.pieces[i].start, 0);
            CHECK_EQ(st.pieces[i].end, want_end[i]);
        }
        for (uint32_t t = 0; t < st.ntasks; t++)
            CHECK(st.first[t] <= st.first[t + 1]);
        if (shards == 2) { /* by the files' middles: 500, 2500 | 4005, 4010, 5010 */
            CHECK_EQ(st.first[1], 2);
        }
        stage_free(&st);
    }
    /* Default task count: small files share one task. */
    gl_stage st;
    gl_err err = {0};
    REQUIRE(split(GL_STEP_CSV, files, 5, 0, 4, &st, &err) == 0);
    CHECK_EQ(st.ntasks, 1);
    stage_free(&st);
    /* An empty whole file at the very end still lands in the last task. */
    const char *tail[] = {files[0], files[3]};
    REQUIRE(split(GL_STEP_CSV, tail, 2, 3, 4, &st, &err) == 0);
    CHECK_EQ(st.first[3] - st.first[2], 1);
    CHECK_EQ(st.pieces[st.first[2]].file, 1);
    stage_free(&st);
    /* A pipe (size 0 to stat) is read whole. */
    int fds[2];
    REQUIRE(pipe(fds) == 0);
    REQUIRE(write(fds[1], "p,1\nq,2\n", 8) == 8);
    close(fds[1]);
    char pipe_path[64];
    snprintf(pipe_path, sizeof pipe_path, "/dev/fd/%d", fds[0]);
    result r = read_one(pipe_path, (copts){.types = 1});
    CHECK_EQ(r.rc, 0);
    CHECK_ROWS(r, "\"p\",1\n\"q\",2\n");
    result_free(&r);
    close(fds[0]);

    /* Text: a plain file is cut in byte ranges, a .gz one stays whole. */
    size_t n = 3u << 20;
    char *lines = malloc(n);
    REQUIRE(lines);
    for (size_t i = 0; i < n; i++)
        lines[i] = i % 100 == 99 ? '\n' : 'a' + (char)(i % 26);
    const char *tf[] = {write_file("big.txt", lines, n), write_file("big.txt.gz", lines, n)};
    free(lines);
    REQUIRE(split(GL_STEP_TEXT, tf, 2, 6, 4, &st, &err) == 0);
    uint32_t plain = 0, gz = 0;
    struct stat sb;
    REQUIRE(stat(tf[1], &sb) == 0);
    for (uint32_t i = 0; i < st.first[st.ntasks]; i++) {
        if (st.pieces[i].file == 0) {
            plain++;
        } else {
            gz++;
            CHECK_EQ(st.pieces[i].start, 0);
            CHECK_EQ(st.pieces[i].end, sb.st_size);
        }
    }
    CHECK(plain >= 5);
    CHECK_EQ(gz, 1);
    /* Every task together reads each line once. */
    uint64_t rows = 0;
    for (uint32_t t = 0; t < st.ntasks; t++) {
        sink out = {0};
        REQUIRE(gl_text_read(&st, t, collect, &out, &err) == 0);
        CHECK(!out.bad_batch);
        rows += out.nrows;
        gl_buf_free(&out.rows);
    }
    CHECK_EQ(rows, 2 * ((n + 99) / 100)); /* the last line has no newline */
    stage_free(&st);
}

TEST_MAIN(T(quoting), T(crlf_and_empty_fields), T(header), T(types_auto), T(tsv), T(malformed), T(lines_read_in_place),
          T(missing_file), T(random_round_trip), T(long_record), T(gzip), T(msgpack), T(whole_file_split))
