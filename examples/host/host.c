/* host.c: a C program that embeds gleam. It registers its own tokenizer
 * as gleam.fn.tokenize, runs word count over the files named on its
 * command line with it, and prints the ten most frequent words as
 * "word<TAB>count" lines, as examples/wordcount.lua does.
 *
 *   cc host.c -o host $(pkg-config --cflags --libs gleam)
 *   ./host README.md notes.txt
 */
#include <gleam.h>

#include <stdio.h>
#include <string.h>

static int word_byte(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

/* A mapper: each run of ASCII letters and digits of field 1 becomes a row. */
static int tokenize(void *ud, const gleam_value *fields, size_t n, gleam_emitter *out)
{
    (void)ud;
    if (n < 1 || fields[0].type != GLEAM_BYTES)
        return gleam_emit_error(out, "tokenize needs a string in field 1");
    const char *s = fields[0].as.bytes.data, *end = s + fields[0].as.bytes.len;
    while (s < end) {
        while (s < end && !word_byte((unsigned char)*s))
            s++;
        const char *w = s;
        while (s < end && word_byte((unsigned char)*s))
            s++;
        if (s > w) {
            gleam_value word = {.type = GLEAM_BYTES, .as.bytes = {w, (size_t)(s - w)}};
            int rc = gleam_emit(out, &word, 1);
            if (rc)
                return rc;
        }
    }
    return 0;
}

static const char *FLOW =
    "local gleam = require 'gleam'\n"
    "return gleam.flow('host word count')\n"
    "  :text(arg)\n"
    "  :flatmap(gleam.fn.tokenize)\n"
    "  :reduce_by_key(gleam.fn.count)\n"
    "  :top(10, { by = 2 })\n";

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s FILE...\n", argv[0]);
        return 2;
    }
    gleam_error err;
    if (gleam_register_mapper("tokenize", tokenize, NULL, &err)) {
        fprintf(stderr, "host: %s\n", err.message);
        return 1;
    }
    gleam_options o;
    gleam_options_init(&o);
    gleam_engine *e;
    if (gleam_engine_new(&o, &e, &err)) {
        fprintf(stderr, "host: %s\n", err.message);
        return 1;
    }
    gleam_rows *rows;
    if (gleam_run_string(e, FLOW, "host.lua", argc - 1, (const char *const *)argv + 1, &rows, &err)) {
        fprintf(stderr, "host: %s\n", err.message);
        gleam_engine_free(e);
        return 1;
    }
    const gleam_value *f;
    size_t n;
    int rc;
    while ((rc = gleam_rows_next(rows, &f, &n, &err)) == 1)
        if (n == 2 && f[0].type == GLEAM_BYTES && f[1].type == GLEAM_INT)
            printf("%.*s\t%lld\n", (int)f[0].as.bytes.len, f[0].as.bytes.data, (long long)f[1].as.i);
    if (rc < 0)
        fprintf(stderr, "host: %s\n", err.message);
    gleam_rows_free(rows);
    gleam_engine_free(e);
    return rc < 0;
}
