/* test.h: the shared runner of the C unit tests (engine/test/test_*.c).
 *
 * One executable per area, as libuv does it: a file defines its cases with
 * TEST(name) and ends with TEST_MAIN(T(a), T(b), ...). Each CHECK that fails
 * prints file:line and the expression (the first few per case; the rest
 * are counted) and the case goes on, so one run shows every broken
 * property; REQUIRE also leaves the case, for checks the rest depends on.
 * The exit status is non-zero if any check failed. Arguments name the cases
 * to run (all by default). Randomised cases draw from test_rand(), seeded
 * from GLEAM_TEST_SEED (fixed by default) and reported on failure, so a
 * failing run can be repeated exactly. A case that hangs is killed by
 * SIGALRM after TEST_TIMEOUT seconds. */
#ifndef GL_TEST_H
#define GL_TEST_H

#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define TEST_SHOW_MAX 20 /* failure lines printed per case */
#define TEST_TIMEOUT 60  /* seconds a case may take (under ASan too) before SIGALRM ends it */

static struct {
    const char *name;
    unsigned long checks, failed;
    uint64_t seed, rng;
} test_state;

static bool test_fail_(const char *file, int line, const char *what)
{
    test_state.failed++;
    if (test_state.failed <= TEST_SHOW_MAX)
        fprintf(stderr, "%s:%d: %s: check failed: %s\n", file, line, test_state.name, what);
    else if (test_state.failed == TEST_SHOW_MAX + 1)
        fprintf(stderr, "%s: more failures not shown\n", test_state.name);
    return false;
}

static inline bool test_check_(bool ok, const char *file, int line, const char *what)
{
    test_state.checks++;
    return ok ? true : test_fail_(file, line, what);
}

/* Counts a check and reports it when false; yields the result, so a case
 * can skip what depends on it: if (CHECK(p)) use(p). */
#define CHECK(e) test_check_(!!(e), __FILE__, __LINE__, #e)

/* Leaves the case (a void function) when the check fails. */
#define REQUIRE(e) \
    do { \
        test_state.checks++; \
        if (!(e)) { \
            test_fail_(__FILE__, __LINE__, #e); \
            return; \
        } \
    } while (0)

/* Integer equality that shows both values. */
#define CHECK_EQ(a, b) \
    do { \
        int64_t a_ = (int64_t)(a), b_ = (int64_t)(b); \
        test_state.checks++; \
        if (a_ != b_) { \
            char m_[256]; \
            snprintf(m_, sizeof m_, "%s == %s (%" PRId64 " vs %" PRId64 ")", #a, #b, a_, b_); \
            test_fail_(__FILE__, __LINE__, m_); \
        } \
    } while (0)

/* Byte equality of two ranges. */
#define CHECK_MEM(a, alen, b, blen) \
    CHECK((size_t)(alen) == (size_t)(blen) && (!(alen) || !memcmp((a), (b), (size_t)(alen))))

#define TEST(name) static void test_##name(void)

/* Copies n bytes so that they end exactly where an unreadable page
 * starts, so a reader that runs past the end crashes even without ASan
 * (borrowed: valid until the next call). */
static inline const uint8_t *test_guarded(const void *src, size_t n)
{
    static uint8_t *lo;
    static size_t cap;
    size_t pg = (size_t)sysconf(_SC_PAGESIZE);
    if (n > cap || !lo) {
        if (lo)
            munmap(lo, cap + pg);
        size_t want = n > (1u << 20) ? n : (1u << 20);
        cap = (want + pg - 1) / pg * pg;
        lo = mmap(NULL, cap + pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (lo == MAP_FAILED || mprotect(lo + cap, pg, PROT_NONE)) {
            perror("test_guarded: mmap");
            exit(2);
        }
    }
    uint8_t *p = lo + cap - n;
    if (n)
        memcpy(p, src, n);
    return p;
}

typedef struct test_case {
    const char *name;
    void (*fn)(void);
} test_case;

#define T(name) {#name, test_##name}

/* splitmix64: small, fast and good enough to spread test inputs. */
static inline uint64_t test_rand(void)
{
    uint64_t z = (test_state.rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Uniform enough in [0, n) for test sizes. */
static inline uint32_t test_below(uint32_t n) { return n ? (uint32_t)(test_rand() % n) : 0; }

/* Makes a fresh directory under $TMPDIR (or /tmp) named for what, in buf;
 * returns buf, or NULL when it can't. The case removes it with test_rmtree. */
static inline char *test_tmpdir(char *buf, size_t max, const char *what)
{
    const char *base = getenv("TMPDIR");
    snprintf(buf, max, "%s/gleam-test-%s-XXXXXX", base && *base ? base : "/tmp", what);
    return mkdtemp(buf);
}

/* Removes a directory tree; 0 when it went. */
static inline int test_rmtree(const char *dir)
{
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd);
}

static int test_main_(int argc, char **argv, const test_case *cases, size_t n)
{
    const char *s = getenv("GLEAM_TEST_SEED");
    test_state.seed = s ? strtoull(s, NULL, 0) : 0x67656c6d;
    unsigned long nrun = 0, nfailed = 0, checks = 0;
    for (size_t i = 0; i < n; i++) {
        bool wanted = argc < 2;
        for (int a = 1; a < argc; a++)
            wanted |= !strcmp(argv[a], cases[i].name);
        if (!wanted)
            continue;
        test_state.name = cases[i].name;
        test_state.failed = 0;
        test_state.checks = 0;
        test_state.rng = test_state.seed; /* every case sees the same stream */
        /* Named before it runs: a crash (ASan, a guard page) shows where. */
        printf("# %s\n", cases[i].name);
        fflush(stdout);
        alarm(TEST_TIMEOUT); /* a hang fails the run instead of stalling ctest */
        cases[i].fn();
        alarm(0);
        nrun++;
        checks += test_state.checks;
        if (test_state.failed) {
            nfailed++;
            printf("not ok %s (%lu of %lu checks failed, seed 0x%" PRIx64 ")\n", cases[i].name,
                   test_state.failed, test_state.checks, test_state.seed);
        } else {
            printf("ok %s (%lu checks)\n", cases[i].name, test_state.checks);
        }
        fflush(stdout);
    }
    if (!nrun) {
        fprintf(stderr, "no test case matches the arguments\n");
        return 2;
    }
    printf("%lu of %lu cases failed, %lu checks\n", nfailed, nrun, checks);
    return nfailed ? 1 : 0;
}

#define TEST_MAIN(...) \
    int main(int argc, char **argv) \
    { \
        static const test_case cases_[] = {__VA_ARGS__}; \
        return test_main_(argc, argv, cases_, sizeof cases_ / sizeof cases_[0]); \
    }

#endif
