/* sort: the hand-written C peer of the sort job.
 *
 *   sort FILE > OUT      the lines of FILE in byte order (as LC_ALL=C sort)
 *
 * The file is read into memory; the lines are sorted as (first 8 bytes as a
 * big-endian integer, pointer) pairs with an LSD radix sort on that prefix,
 * equal prefixes finished with memcmp, and written out with one buffer.
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct { uint64_t key; const char *line; uint32_t len; } rec;

static int cmp_line(const void *a, const void *b)
{
    const rec *x = a, *y = b;
    uint32_t n = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->line, y->line, n);
    return c ? c : (x->len > y->len) - (x->len < y->len);
}

int main(int argc, char **argv)
{
    if (argc != 2) { fprintf(stderr, "usage: sort FILE\n"); return 2; }
    int fd = open(argv[1], O_RDONLY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0) { perror(argv[1]); return 1; }
    size_t size = (size_t)st.st_size;
    char *data = malloc(size + 1);
    for (size_t got = 0; got < size;) {
        ssize_t r = read(fd, data + got, size - got);
        if (r <= 0) { perror("read"); return 1; }
        got += (size_t)r;
    }
    if (size && data[size - 1] != '\n') data[size++] = '\n';
    size_t n = 0;
    for (size_t i = 0; i < size; i++) if (data[i] == '\n') n++;
    rec *a = malloc((n + 1) * sizeof *a), *b = malloc((n + 1) * sizeof *b);
    size_t k = 0;
    for (char *p = data, *end = data + size; p < end; k++) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        uint64_t key = 0;
        size_t len = (size_t)(nl - p);
        for (size_t j = 0; j < 8; j++) key = key << 8 | (j < len ? (unsigned char)p[j] : 0);
        a[k].key = key; a[k].line = p; a[k].len = (uint32_t)len;
        p = nl + 1;
    }
    for (int shift = 0; shift < 64; shift += 16) {  /* LSD radix, 16 bits a pass */
        size_t *count = calloc(65537, sizeof *count);
        for (size_t i = 0; i < n; i++) count[((a[i].key >> shift) & 0xFFFF) + 1]++;
        for (int i = 0; i < 65536; i++) count[i + 1] += count[i];
        for (size_t i = 0; i < n; i++) b[count[(a[i].key >> shift) & 0xFFFF]++] = a[i];
        rec *t = a; a = b; b = t;
        free(count);
    }
    for (size_t i = 0; i < n;) {  /* equal 8-byte prefixes: the rest decides */
        size_t j = i + 1;
        while (j < n && a[j].key == a[i].key) j++;
        if (j - i > 1) qsort(a + i, j - i, sizeof *a, cmp_line);
        i = j;
    }
    static char out[1 << 20];
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (o + a[i].len + 1 > sizeof out) { fwrite(out, 1, o, stdout); o = 0; }
        if (a[i].len + 1 > sizeof out) { fwrite(a[i].line, 1, a[i].len + 1, stdout); continue; }
        memcpy(out + o, a[i].line, a[i].len + 1);
        o += a[i].len + 1;
    }
    fwrite(out, 1, o, stdout);
    return fflush(stdout) ? 1 : 0;
}
