/* gen: the benchmark data, deterministic for a seed on any machine.
 *
 *   gen text    BYTES SEED > words.txt     Zipf text, ~80-byte lines
 *   gen records COUNT SEED > records.txt   100-byte lines, 10-byte keys
 *   gen join    LEFT RIGHT SEED DIR        DIR/orders.csv, DIR/customers.csv
 *
 * Only integer arithmetic and IEEE double sums/divisions feed the output
 * (splitmix64 for randomness, no libm), so the bytes are the same for the
 * same arguments everywhere.
 *
 * text: a vocabulary of 100,000 distinct words (2-12 letters, a few with
 * digits, always starting with a letter), drawn with Zipf's law (s = 1:
 * rank r has weight 1/r), some capitalised, separated by spaces and now
 * and then punctuation. Words are runs of [A-Za-z0-9].
 *
 * records: "KEY PAYLOAD\n", KEY 10 characters of [0-9A-Za-z], the payload
 * the record number in hex padded with a filler to 100 bytes in all (as
 * gensort does, in printable ASCII so that lines sort as text).
 *
 * join: orders.csv "id,customer,amount" (LEFT rows, customer drawn from
 * 5 x RIGHT keys, so about a fifth match; amount an integer in cents),
 * customers.csv "customer,region" (RIGHT rows, every key once, 250 regions).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rng_state;

static uint64_t rng_next(void) /* splitmix64 */
{
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint64_t rng_below(uint64_t n) { return rng_next() % n; }

static double rng_unit(void) { return (double)(rng_next() >> 11) * (1.0 / 9007199254740992.0); }

#define VOCAB 100000

static int gen_text(long long bytes)
{
    static char words[VOCAB][16];
    static double cdf[VOCAB];
    /* Distinct words: an open-addressed set rejects repeats. */
    size_t cap = 1 << 18;
    uint32_t *set = calloc(cap, sizeof *set);
    if (!set) return 1;
    for (int i = 0; i < VOCAB;) {
        int len = 2 + (int)rng_below(4) + (int)rng_below(4) + (int)rng_below(4);
        char *w = words[i];
        w[0] = 'a' + (char)rng_below(26);
        for (int j = 1; j < len; j++)
            w[j] = rng_below(40) == 0 ? '0' + (char)rng_below(10) : 'a' + (char)rng_below(26);
        w[len] = 0;
        uint64_t h = 1469598103934665603ull;
        for (int j = 0; j < len; j++) h = (h ^ (unsigned char)w[j]) * 1099511628211ull;
        size_t k = h & (cap - 1);
        int dup = 0;
        while (set[k]) {
            if (strcmp(words[set[k] - 1], w) == 0) { dup = 1; break; }
            k = (k + 1) & (cap - 1);
        }
        if (dup) continue;
        set[k] = (uint32_t)(i + 1);
        i++;
    }
    free(set);
    double sum = 0;
    for (int i = 0; i < VOCAB; i++) { sum += 1.0 / (double)(i + 1); cdf[i] = sum; }

    static char buf[1 << 16];
    size_t n = 0;
    long long written = 0;
    while (written < bytes) {
        char line[256];
        int len = 0;
        int target = 60 + (int)rng_below(41);  /* 60..100, mean 80 */
        while (len < target) {
            double u = rng_unit() * sum;
            int lo = 0, hi = VOCAB - 1;
            while (lo < hi) {  /* first rank whose cdf exceeds u */
                int mid = (lo + hi) / 2;
                if (cdf[mid] > u) hi = mid; else lo = mid + 1;
            }
            const char *w = words[lo];
            size_t wl = strlen(w);
            if (len > 0) {
                uint64_t p = rng_below(100);
                const char *sep = p < 4 ? ", " : p < 6 ? ". " : p < 7 ? "; " : p < 8 ? " - " : " ";
                size_t sl = strlen(sep);
                memcpy(line + len, sep, sl);
                len += (int)sl;
            }
            memcpy(line + len, w, wl);
            if (len == 0 || rng_below(20) == 0) line[len] = (char)(line[len] - 'a' + 'A');
            len += (int)wl;
        }
        line[len++] = rng_below(3) == 0 ? '.' : ' ';
        if (line[len - 1] == ' ') len--;
        line[len++] = '\n';
        if (n + (size_t)len > sizeof buf) { fwrite(buf, 1, n, stdout); n = 0; }
        memcpy(buf + n, line, (size_t)len);
        n += (size_t)len;
        written += len;
    }
    fwrite(buf, 1, n, stdout);
    return ferror(stdout) ? 1 : 0;
}

static const char ALNUM[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

static int gen_records(long long count)
{
    static char buf[1 << 16];
    size_t n = 0;
    for (long long i = 0; i < count; i++) {
        char *r = buf + n;
        for (int j = 0; j < 10; j++) r[j] = ALNUM[rng_below(62)];
        r[10] = ' ';
        int w = snprintf(r + 11, 20, "%016llX", (unsigned long long)i);
        for (int j = 11 + w; j < 99; j++) r[j] = (char)('A' + (j + i) % 26);
        r[99] = '\n';
        n += 100;
        if (n + 100 > sizeof buf) { fwrite(buf, 1, n, stdout); n = 0; }
    }
    fwrite(buf, 1, n, stdout);
    return ferror(stdout) ? 1 : 0;
}

static int gen_join(long long left, long long right, const char *dir)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/customers.csv", dir);
    FILE *c = fopen(path, "w");
    if (!c) { perror(path); return 1; }
    fputs("customer,region\n", c);
    /* Keys c0000000..: customers hold every fifth one, in a shuffled order. */
    long long *ids = malloc((size_t)right * sizeof *ids);
    if (!ids) return 1;
    for (long long i = 0; i < right; i++) ids[i] = i * 5;
    for (long long i = right - 1; i > 0; i--) {
        long long j = (long long)rng_below((uint64_t)i + 1), t = ids[i];
        ids[i] = ids[j]; ids[j] = t;
    }
    for (long long i = 0; i < right; i++)
        fprintf(c, "c%08lld,region%03d\n", ids[i], (int)rng_below(250));
    free(ids);
    if (fclose(c)) return 1;
    snprintf(path, sizeof path, "%s/orders.csv", dir);
    FILE *o = fopen(path, "w");
    if (!o) { perror(path); return 1; }
    fputs("id,customer,amount\n", o);
    for (long long i = 0; i < left; i++)
        fprintf(o, "%lld,c%08lld,%d\n", i + 1, (long long)rng_below((uint64_t)right * 5),
                (int)(1 + rng_below(100000)));
    return fclose(o) ? 1 : 0;
}

int main(int argc, char **argv)
{
    if (argc == 4 && strcmp(argv[1], "text") == 0) {
        rng_state = strtoull(argv[3], NULL, 10);
        return gen_text(atoll(argv[2]));
    }
    if (argc == 4 && strcmp(argv[1], "records") == 0) {
        rng_state = strtoull(argv[3], NULL, 10);
        return gen_records(atoll(argv[2]));
    }
    if (argc == 6 && strcmp(argv[1], "join") == 0) {
        rng_state = strtoull(argv[4], NULL, 10);
        return gen_join(atoll(argv[2]), atoll(argv[3]), argv[5]);
    }
    fprintf(stderr, "usage: gen text BYTES SEED | gen records COUNT SEED | gen join LEFT RIGHT SEED DIR\n");
    return 2;
}
