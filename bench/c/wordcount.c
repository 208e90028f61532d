/* wordcount: the hand-written C peer of the word-count job.
 *
 *   wordcount FILE THREADS     prints the 100 most frequent words, "word\tcount"
 *
 * Words are runs of ASCII letters and digits, counted as written (as
 * gleam.fn.words). The file is mmapped and split on line boundaries, one
 * part per thread; each thread counts into its own open-addressing table
 * whose keys point into the map (no copies), and the tables are merged at
 * the end. Ties are broken by the word, ascending.
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct { const char *w; uint32_t len; uint32_t hash; uint64_t count; } entry;
typedef struct { entry *e; size_t cap, used; } table;
typedef struct { const char *p, *end; table t; } part;

static unsigned char is_word[256];

static void table_init(table *t, size_t cap) { t->e = calloc(cap, sizeof *t->e); t->cap = cap; t->used = 0; }

static void table_add(table *t, const char *w, uint32_t len, uint32_t h, uint64_t n);

static void table_grow(table *t)
{
    table g;
    table_init(&g, t->cap * 2);
    for (size_t i = 0; i < t->cap; i++)
        if (t->e[i].w) table_add(&g, t->e[i].w, t->e[i].len, t->e[i].hash, t->e[i].count);
    free(t->e);
    *t = g;
}

static void table_add(table *t, const char *w, uint32_t len, uint32_t h, uint64_t n)
{
    size_t mask = t->cap - 1, i = h & mask;
    for (;;) {
        entry *e = &t->e[i];
        if (!e->w) {
            e->w = w; e->len = len; e->hash = h; e->count = n;
            if (++t->used * 2 > t->cap) table_grow(t);
            return;
        }
        if (e->hash == h && e->len == len && memcmp(e->w, w, len) == 0) { e->count += n; return; }
        i = (i + 1) & mask;
    }
}

static void *count_part(void *arg)
{
    part *pt = arg;
    const char *p = pt->p, *end = pt->end;
    table_init(&pt->t, 1 << 17);
    while (p < end) {
        while (p < end && !is_word[(unsigned char)*p]) p++;
        if (p == end) break;
        const char *w = p;
        uint32_t h = 2166136261u;
        while (p < end && is_word[(unsigned char)*p]) { h = (h ^ (unsigned char)*p) * 16777619u; p++; }
        table_add(&pt->t, w, (uint32_t)(p - w), h, 1);
    }
    return NULL;
}

static int by_count(const void *a, const void *b)
{
    const entry *x = a, *y = b;
    if (x->count != y->count) return x->count > y->count ? -1 : 1;
    uint32_t n = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->w, y->w, n);
    return c ? c : (int)x->len - (int)y->len;
}

int main(int argc, char **argv)
{
    if (argc != 3) { fprintf(stderr, "usage: wordcount FILE THREADS\n"); return 2; }
    int nt = atoi(argv[2]);
    if (nt < 1) nt = 1;
    for (int c = 0; c < 256; c++)
        is_word[c] = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
    int fd = open(argv[1], O_RDONLY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0) { perror(argv[1]); return 1; }
    size_t size = (size_t)st.st_size;
    const char *base = size ? mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0) : "";
    if (base == MAP_FAILED) { perror("mmap"); return 1; }
    if (size) madvise((void *)base, size, MADV_SEQUENTIAL);
    part *parts = calloc((size_t)nt, sizeof *parts);
    pthread_t *th = calloc((size_t)nt, sizeof *th);
    const char *p = base, *end = base + size;
    for (int i = 0; i < nt; i++) {
        const char *q = i == nt - 1 ? end : base + size / (size_t)nt * (size_t)(i + 1);
        if (q < p) q = p;
        while (q < end && q[-1] != '\n') q++;
        parts[i].p = p; parts[i].end = q; p = q;
        pthread_create(&th[i], NULL, count_part, &parts[i]);
    }
    for (int i = 0; i < nt; i++) pthread_join(th[i], NULL);
    table *t = &parts[0].t;
    for (int i = 1; i < nt; i++)
        for (size_t j = 0; j < parts[i].t.cap; j++) {
            entry *e = &parts[i].t.e[j];
            if (e->w) table_add(t, e->w, e->len, e->hash, e->count);
        }
    entry *all = malloc((t->used + 1) * sizeof *all);
    size_t n = 0;
    for (size_t j = 0; j < t->cap; j++) if (t->e[j].w) all[n++] = t->e[j];
    qsort(all, n, sizeof *all, by_count);
    for (size_t j = 0; j < n && j < 100; j++)
        printf("%.*s\t%llu\n", (int)all[j].len, all[j].w, (unsigned long long)all[j].count);
    return 0;
}
