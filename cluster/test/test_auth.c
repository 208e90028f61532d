/* test_auth.c: HMAC-SHA256 against RFC 4231's test vectors, and the
 * handshake state machine (cluster/auth.c) played between two in-memory
 * sides: matching secrets agree, a wrong secret is refused on either side,
 * replayed or out-of-order messages fail, and every message that crosses
 * goes through the real encoder and decoder. */
#include "test.h"

#include "auth.h"

#include <stdlib.h>

static size_t unhex(const char *h, uint8_t *out)
{
    size_t n = strlen(h) / 2;
    for (size_t i = 0; i < n; i++) {
        unsigned v;
        sscanf(h + 2 * i, "%2x", &v);
        out[i] = (uint8_t)v;
    }
    return n;
}

/* RFC 4231 section 4: test cases 1-4, 6 and 7 (5 is a truncated MAC). */
TEST(rfc4231_vectors)
{
    static const struct {
        const char *key, *data, *mac;
    } v[] = {
        {"0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b", "4869205468657265",
         "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"},
        {"4a656665", "7768617420646f2079612077616e7420666f72206e6f7468696e673f",
         "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"},
        {"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
         "dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd",
         "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe"},
        {"0102030405060708090a0b0c0d0e0f10111213141516171819",
         "cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd",
         "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b"},
        {"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
         "54657374205573696e67204c6172676572205468616e20426c6f636b2d53697a65204b6579202d2048617368204b6579204669727374",
         "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"},
        {"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
         "5468697320697320612074657374207573696e672061206c6172676572207468616e20626c6f636b2d73697a65206b657920616e642061206c6172676572207468616e20626c6f636b2d73697a6520646174612e20546865206b6579206e6565647320746f20626520686173686564206265666f7265206265696e6720757365642062792074686520484d414320616c676f726974686d2e",
         "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2"},
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        uint8_t key[256], data[256], want[32], got[32];
        size_t kn = unhex(v[i].key, key), dn = unhex(v[i].data, data);
        unhex(v[i].mac, want);
        /* whole, and split in two parts at every point: the parts are one message */
        for (size_t cut = 0; cut <= dn; cut += dn / 5 + 1) {
            const void *parts[] = {data, data + cut};
            size_t lens[] = {cut, dn - cut};
            gl_hmac_sha256(key, kn, parts, lens, 2, got);
            if (!CHECK_MEM(got, 32, want, 32))
                fprintf(stderr, "  RFC 4231 vector %zu, cut at %zu\n", i, cut);
        }
    }
}

TEST(random_bytes)
{
    uint8_t a[32] = {0}, b[32] = {0}, zero[32] = {0};
    REQUIRE(gl_auth_random(a, 32, NULL) == 0);
    REQUIRE(gl_auth_random(b, 32, NULL) == 0);
    CHECK(memcmp(a, b, 32) != 0);
    CHECK(memcmp(a, zero, 32) != 0);
}

static gl_secret secret_of(const char *k)
{
    gl_secret s;
    memset(&s, 0, sizeof s);
    if (k) {
        s.len = strlen(k);
        memcpy(s.key, k, s.len);
        s.set = true;
    }
    return s;
}

/* Sends m through the encoder and the stream decoder into got. */
static bool cross(const gl_msg *m, gl_msg *got)
{
    gl_buf b = {0};
    gl_wire_reader r = {0};
    bool ok = gl_wire_encode(&b, m, NULL) == 0 && gl_wire_feed(&r, b.data, b.len, NULL) == 0 &&
              gl_wire_next(&r, got, NULL) == 1;
    gl_buf_free(&b);
    gl_wire_reader_free(&r);
    return ok;
}

/* Plays the handshake; returns the listener's and connector's results in
 * *lrc and *crc (1 done, <0 failed) and their errors. */
static void play(const gl_secret *ls, const gl_secret *cs, int *lrc, int *crc, gl_err *lerr, gl_err *cerr)
{
    gl_hs l, c;
    gl_msg m, in;
    bool send;
    *lrc = *crc = 0;
    REQUIRE(gl_hs_start(&l, true, ls, NULL, &m, &send, lerr) == 0 && send);
    bool csend;
    gl_msg cm;
    REQUIRE(gl_hs_start(&c, false, cs, "agent", &cm, &csend, cerr) == 0 && !csend);
    REQUIRE(cross(&m, &in));                       /* hello */
    *crc = gl_hs_step(&c, &in, &cm, &csend, cerr);
    REQUIRE(*crc == 0 && csend);
    REQUIRE(cross(&cm, &in));                      /* auth */
    CHECK(!strcmp(in.role, "agent"));
    *lrc = gl_hs_step(&l, &in, &m, &send, lerr);
    REQUIRE(send);                                 /* welcome or error */
    REQUIRE(cross(&m, &in));
    *crc = gl_hs_step(&c, &in, &cm, &csend, cerr);
    CHECK(!csend);
}

TEST(handshake_same_secret)
{
    gl_secret s = secret_of("correct horse"), none = secret_of(NULL);
    int lrc, crc;
    gl_err le = {0}, ce = {0};
    play(&s, &s, &lrc, &crc, &le, &ce);
    CHECK_EQ(lrc, 1);
    CHECK_EQ(crc, 1);
    play(&none, &none, &lrc, &crc, &le, &ce); /* no secret on both sides: empty key */
    CHECK_EQ(lrc, 1);
    CHECK_EQ(crc, 1);
}

TEST(handshake_wrong_secret)
{
    gl_secret a = secret_of("correct horse"), b = secret_of("correct horsf"), none = secret_of(NULL);
    const gl_secret *pairs[][2] = {{&a, &b}, {&b, &a}, {&a, &none}, {&none, &a}};
    for (int i = 0; i < 4; i++) {
        int lrc, crc;
        gl_err le = {0}, ce = {0};
        play(pairs[i][0], pairs[i][1], &lrc, &crc, &le, &ce);
        CHECK(lrc < 0);
        CHECK(strstr(le.msg, "wrong secret") != NULL);
        CHECK(crc < 0); /* the connector learns why from the error message */
        CHECK(strstr(ce.msg, "handshake refused by the peer: wrong secret") != NULL);
    }
}

/* A listener that does not know the secret can't fake its welcome. */
TEST(handshake_fake_listener)
{
    gl_secret s = secret_of("k");
    gl_hs c;
    gl_msg m, out;
    bool send;
    gl_err err = {0};
    REQUIRE(gl_hs_start(&c, false, &s, "client", &out, &send, &err) == 0);
    memset(&m, 0, sizeof m);
    m.type = GL_MSG_HELLO;
    m.version = GL_WIRE_VERSION;
    REQUIRE(gl_hs_step(&c, &m, &out, &send, &err) == 0 && send && out.type == GL_MSG_AUTH);
    memset(&m, 0, sizeof m);
    m.type = GL_MSG_WELCOME;
    memcpy(m.mac, out.mac, GL_MAC_LEN); /* reflecting the connector's own MAC */
    CHECK(gl_hs_step(&c, &m, &out, &send, &err) < 0);
    CHECK(strstr(err.msg, "does not know the secret") != NULL);
}

/* An auth recorded from one handshake does not pass another (new nonce). */
TEST(handshake_replay)
{
    gl_secret s = secret_of("k");
    gl_hs l1, l2, c;
    gl_msg h1, h2, a, out;
    bool send;
    gl_err err = {0};
    REQUIRE(gl_hs_start(&l1, true, &s, NULL, &h1, &send, &err) == 0);
    REQUIRE(gl_hs_start(&l2, true, &s, NULL, &h2, &send, &err) == 0);
    CHECK(memcmp(h1.nonce, h2.nonce, GL_NONCE_LEN) != 0);
    REQUIRE(gl_hs_start(&c, false, &s, "agent", &out, &send, &err) == 0);
    REQUIRE(gl_hs_step(&c, &h1, &a, &send, &err) == 0);
    CHECK_EQ(gl_hs_step(&l2, &a, &out, &send, &err), GL_EINVAL);
    CHECK(send && out.type == GL_MSG_ERROR);
    CHECK_EQ(gl_hs_step(&l1, &a, &out, &send, &err), 1);
}

/* Anything but the expected message fails the handshake, with an error
 * sent back; a wrong protocol version names both. */
TEST(handshake_out_of_order)
{
    gl_secret s = secret_of("k");
    gl_hs l, c;
    gl_msg m, out;
    bool send;
    gl_err err = {0};
    REQUIRE(gl_hs_start(&l, true, &s, NULL, &out, &send, &err) == 0);
    memset(&m, 0, sizeof m);
    m.type = GL_MSG_STATUS;
    CHECK_EQ(gl_hs_step(&l, &m, &out, &send, &err), GL_EINVAL);
    CHECK(send && out.type == GL_MSG_ERROR);
    CHECK(strstr(err.msg, "unexpected status") != NULL);
    CHECK_EQ(l.state, GL_HS_FAILED);
    REQUIRE(gl_hs_start(&c, false, &s, "agent", &out, &send, &err) == 0);
    memset(&m, 0, sizeof m);
    m.type = GL_MSG_HELLO;
    m.version = GL_WIRE_VERSION + 1;
    CHECK_EQ(gl_hs_step(&c, &m, &out, &send, &err), GL_EINVAL);
    CHECK(strstr(err.msg, "version 2, this gleam 1") != NULL);
}

TEST(secret_sources)
{
    gl_secret s;
    gl_err err = {0};
    char path[] = "/tmp/gleam-test-secret.XXXXXX";
    int fd = mkstemp(path);
    REQUIRE(fd >= 0);
    REQUIRE(write(fd, "s3cret\n", 7) == 7);
    close(fd);
    unsetenv("GLEAM_SECRET");
    CHECK_EQ(gl_secret_load(&s, NULL, &err), 0);
    CHECK(!s.set);
    setenv("GLEAM_SECRET", "from-env", 1);
    CHECK_EQ(gl_secret_load(&s, NULL, &err), 0);
    CHECK(s.set && s.len == 8 && !memcmp(s.key, "from-env", 8));
    CHECK_EQ(gl_secret_load(&s, path, &err), 0); /* the file wins */
    CHECK(s.set && s.len == 6 && !memcmp(s.key, "s3cret", 6));
    REQUIRE(truncate(path, 0) == 0);
    CHECK_EQ(gl_secret_load(&s, path, &err), GL_EINVAL);
    CHECK(strstr(err.msg, "is empty") != NULL);
    unlink(path);
    CHECK_EQ(gl_secret_load(&s, path, &err), GL_EIO);
    CHECK(strstr(err.msg, path) != NULL);
    setenv("GLEAM_SECRET", "\n", 1);
    CHECK_EQ(gl_secret_load(&s, NULL, &err), GL_EINVAL);
    unsetenv("GLEAM_SECRET");
}

TEST_MAIN(T(rfc4231_vectors), T(random_bytes), T(handshake_same_secret), T(handshake_wrong_secret),
          T(handshake_fake_listener), T(handshake_replay), T(handshake_out_of_order), T(secret_sources))
