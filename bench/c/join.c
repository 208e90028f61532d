/* join: the hand-written C peer of the join + aggregate job.
 *
 *   join ORDERS.csv CUSTOMERS.csv    "region\tcount\tsum" per region, by region
 *
 * An inner join of orders (id,customer,amount) with customers
 * (customer,region) on customer, then the number of orders and the sum of
 * amounts per region. Customers go into an open-addressing hash table
 * (keys point into the mmapped file); orders are streamed past it.
 * Both files have a header line; fields are plain (no quoting).
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct { const char *k; uint32_t len, hash; int val; } slot;
typedef struct { slot *s; size_t cap, used; } table;
typedef struct { const char *name; uint32_t len; long long count, sum; } region;

static uint32_t hash(const char *p, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)p[i]) * 16777619u;
    return h;
}

static slot *lookup(table *t, const char *k, uint32_t len, uint32_t h)
{
    size_t mask = t->cap - 1, i = h & mask;
    while (t->s[i].k && !(t->s[i].hash == h && t->s[i].len == len && memcmp(t->s[i].k, k, len) == 0))
        i = (i + 1) & mask;
    return &t->s[i];
}

static const char *map_file(const char *path, size_t *size)
{
    int fd = open(path, O_RDONLY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0) { perror(path); exit(1); }
    *size = (size_t)st.st_size;
    const char *p = *size ? mmap(NULL, *size, PROT_READ, MAP_PRIVATE, fd, 0) : "";
    if (p == MAP_FAILED) { perror("mmap"); exit(1); }
    return p;
}

static int by_name(const void *a, const void *b)
{
    const region *x = a, *y = b;
    uint32_t n = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->name, y->name, n);
    return c ? c : (int)x->len - (int)y->len;
}

int main(int argc, char **argv)
{
    if (argc != 3) { fprintf(stderr, "usage: join ORDERS.csv CUSTOMERS.csv\n"); return 2; }
    size_t cs, os;
    const char *c = map_file(argv[2], &cs), *ce = c + cs;
    const char *o = map_file(argv[1], &os), *oe = o + os;
    size_t lines = 0;
    for (const char *p = c; p < ce; p++) lines += *p == '\n';
    table cust = { calloc(1, sizeof(slot)), 1, 0 }, reg = { calloc(1024, sizeof(slot)), 1024, 0 };
    while (cust.cap < lines * 2 + 2) cust.cap *= 2;
    cust.s = realloc(cust.s, cust.cap * sizeof(slot));
    memset(cust.s, 0, cust.cap * sizeof(slot));
    region *regions = calloc(1024, sizeof *regions);
    int nreg = 0;
    const char *p = memchr(c, '\n', cs);
    p = p ? p + 1 : ce;
    while (p < ce) {  /* customer,region */
        const char *comma = memchr(p, ',', (size_t)(ce - p)), *nl = memchr(p, '\n', (size_t)(ce - p));
        if (!nl) nl = ce;
        if (!comma || comma > nl) { p = nl + 1; continue; }
        const char *r = comma + 1;
        uint32_t rl = (uint32_t)(nl - r), rh = hash(r, rl);
        slot *rs = lookup(&reg, r, rl, rh);
        if (!rs->k) {
            if (nreg == 512) { fprintf(stderr, "join: more than 512 regions\n"); return 1; }
            *rs = (slot){ r, rl, rh, nreg };
            regions[nreg++] = (region){ r, rl, 0, 0 };
        }
        uint32_t kl = (uint32_t)(comma - p), kh = hash(p, kl);
        slot *ks = lookup(&cust, p, kl, kh);
        if (!ks->k) *ks = (slot){ p, kl, kh, rs->val };
        p = nl + 1;
    }
    p = memchr(o, '\n', os);
    p = p ? p + 1 : oe;
    while (p < oe) {  /* id,customer,amount */
        const char *c1 = memchr(p, ',', (size_t)(oe - p));
        if (!c1) break;
        const char *k = c1 + 1, *c2 = memchr(k, ',', (size_t)(oe - k));
        if (!c2) break;
        long long amount = 0;
        const char *q = c2 + 1;
        int neg = q < oe && *q == '-';
        if (neg) q++;
        while (q < oe && *q >= '0' && *q <= '9') amount = amount * 10 + (*q++ - '0');
        if (neg) amount = -amount;
        uint32_t kl = (uint32_t)(c2 - k);
        slot *s = lookup(&cust, k, kl, hash(k, kl));
        if (s->k) { regions[s->val].count++; regions[s->val].sum += amount; }
        const char *nl = memchr(q, '\n', (size_t)(oe - q));
        p = nl ? nl + 1 : oe;
    }
    qsort(regions, (size_t)nreg, sizeof *regions, by_name);
    for (int i = 0; i < nreg; i++)
        if (regions[i].count)
            printf("%.*s\t%lld\t%lld\n", (int)regions[i].len, regions[i].name, regions[i].count, regions[i].sum);
    return 0;
}
