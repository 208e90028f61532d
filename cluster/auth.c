/* auth.c: secrets, nonces and the handshake state machine (auth.h). */
#include "auth.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

static size_t trim(const uint8_t *p, size_t n)
{
    while (n && (p[n - 1] == '\n' || p[n - 1] == '\r' || p[n - 1] == ' ' || p[n - 1] == '\t'))
        n--;
    return n;
}

int gl_secret_load(gl_secret *s, const char *file, gl_err *err)
{
    memset(s, 0, sizeof *s);
    if (file) {
        FILE *f = fopen(file, "rb");
        if (!f)
            return gl_err_set(err, GL_EIO, "secret file %s: %s", file, strerror(errno));
        size_t n = fread(s->key, 1, sizeof s->key, f);
        int more = fgetc(f) != EOF, bad = ferror(f);
        fclose(f);
        if (bad)
            return gl_err_set(err, GL_EIO, "secret file %s: read error", file);
        if (more)
            return gl_err_set(err, GL_EINVAL, "secret file %s: longer than %d bytes", file, GL_SECRET_MAX);
        s->len = trim(s->key, n);
        if (!s->len)
            return gl_err_set(err, GL_EINVAL, "secret file %s is empty", file);
        snprintf(s->from, sizeof s->from, "--secret-file");
    } else {
        const char *e = getenv("GLEAM_SECRET");
        if (!e)
            return 0;
        size_t n = strlen(e);
        if (n > GL_SECRET_MAX)
            return gl_err_set(err, GL_EINVAL, "GLEAM_SECRET: longer than %d bytes", GL_SECRET_MAX);
        memcpy(s->key, e, n);
        s->len = trim(s->key, n);
        if (!s->len)
            return gl_err_set(err, GL_EINVAL, "GLEAM_SECRET is set but empty");
        snprintf(s->from, sizeof s->from, "GLEAM_SECRET");
    }
    s->set = true;
    return 0;
}

int gl_auth_random(uint8_t *out, size_t n, gl_err *err)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = getrandom(out + got, n - got, 0);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return gl_err_set(err, GL_EIO, "getrandom: %s", strerror(errno));
        }
        got += (size_t)r;
    }
    return 0;
}

void gl_hmac_sha256(const uint8_t *key, size_t keylen, const void *const *parts, const size_t *lens,
                    int nparts, uint8_t out[GL_MAC_LEN])
{
    /* EVP_MAC is OpenSSL 3's interface; HMAC_CTX is deprecated there. */
    static const uint8_t none[1];
    EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    EVP_MAC_CTX *ctx = mac ? EVP_MAC_CTX_new(mac) : NULL;
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string("digest", (char *)"SHA256", 0),
        OSSL_PARAM_construct_end(),
    };
    size_t outlen = 0;
    int ok = ctx && EVP_MAC_init(ctx, keylen ? key : none, keylen, params);
    for (int i = 0; ok && i < nparts; i++)
        ok = EVP_MAC_update(ctx, parts[i], lens[i]);
    ok = ok && EVP_MAC_final(ctx, out, &outlen, GL_MAC_LEN) && outlen == GL_MAC_LEN;
    EVP_MAC_CTX_free(ctx);
    EVP_MAC_free(mac);
    if (!ok) {
        /* libcrypto without SHA-256 or out of memory: no MAC can match. */
        if (gl_auth_random(out, GL_MAC_LEN, NULL))
            memset(out, 0, GL_MAC_LEN);
    }
}

/* label "\0" role "\0" first second, keyed by the secret. */
static void mac_of(const gl_hs *hs, const char *label, const uint8_t *first, const uint8_t *second,
                   uint8_t out[GL_MAC_LEN])
{
    const void *parts[] = {label, hs->role, first, second};
    size_t lens[] = {strlen(label) + 1, strlen(hs->role) + 1, GL_NONCE_LEN, GL_NONCE_LEN};
    gl_hmac_sha256(hs->secret->key, hs->secret->len, parts, lens, 4, out);
}

int gl_hs_start(gl_hs *hs, bool listener, const gl_secret *secret, const char *role, gl_msg *out,
                bool *send, gl_err *err)
{
    memset(hs, 0, sizeof *hs);
    hs->listener = listener;
    hs->secret = secret;
    *send = false;
    int rc = gl_auth_random(hs->mine, GL_NONCE_LEN, err);
    if (rc)
        return rc;
    if (!listener) {
        snprintf(hs->role, sizeof hs->role, "%s", role);
        hs->state = GL_HS_HELLO;
        return 0;
    }
    hs->state = GL_HS_AUTH;
    memset(out, 0, sizeof *out);
    out->type = GL_MSG_HELLO;
    out->version = GL_WIRE_VERSION;
    memcpy(out->nonce, hs->mine, GL_NONCE_LEN);
    *send = true;
    return 0;
}

/* Fails the handshake with why; tell (if not NULL) is sent to the peer. */
static int fail(gl_hs *hs, gl_msg *out, bool *send, gl_err *err, const char *tell, const char *why)
{
    hs->state = GL_HS_FAILED;
    if (tell) {
        memset(out, 0, sizeof *out);
        out->type = GL_MSG_ERROR;
        snprintf(out->text, sizeof out->text, "%.*s", (int)sizeof out->text - 1, tell); /* cut to fit */
        *send = true;
    }
    return gl_err_set(err, GL_EINVAL, "%s", why);
}

int gl_hs_step(gl_hs *hs, const gl_msg *in, gl_msg *out, bool *send, gl_err *err)
{
    *send = false;
    char why[GL_TEXT_MAX + 64];
    if (in->type == GL_MSG_ERROR && hs->state != GL_HS_DONE) {
        snprintf(why, sizeof why, "handshake refused by the peer: %s", in->text);
        return fail(hs, out, send, err, NULL, why);
    }
    switch (hs->state) {
    case GL_HS_HELLO:
        if (in->type != GL_MSG_HELLO)
            break;
        if (in->version != GL_WIRE_VERSION) {
            snprintf(why, sizeof why, "handshake failed: the peer speaks protocol version %u, this gleam %u",
                     in->version, GL_WIRE_VERSION);
            return fail(hs, out, send, err, why, why);
        }
        memcpy(hs->theirs, in->nonce, GL_NONCE_LEN);
        memset(out, 0, sizeof *out);
        out->type = GL_MSG_AUTH;
        snprintf(out->role, sizeof out->role, "%s", hs->role);
        memcpy(out->nonce, hs->mine, GL_NONCE_LEN);
        mac_of(hs, "gleam-v1 auth", hs->theirs, hs->mine, out->mac);
        *send = true;
        hs->state = GL_HS_WELCOME;
        return 0;
    case GL_HS_AUTH: {
        if (in->type != GL_MSG_AUTH)
            break;
        snprintf(hs->role, sizeof hs->role, "%s", in->role);
        memcpy(hs->theirs, in->nonce, GL_NONCE_LEN);
        uint8_t want[GL_MAC_LEN];
        mac_of(hs, "gleam-v1 auth", hs->mine, hs->theirs, want);
        if (CRYPTO_memcmp(want, in->mac, GL_MAC_LEN))
            return fail(hs, out, send, err, "wrong secret", "handshake refused: wrong secret");
        memset(out, 0, sizeof *out);
        out->type = GL_MSG_WELCOME;
        mac_of(hs, "gleam-v1 welcome", hs->theirs, hs->mine, out->mac);
        *send = true;
        hs->state = GL_HS_DONE;
        return 1;
    }
    case GL_HS_WELCOME: {
        if (in->type != GL_MSG_WELCOME)
            break;
        uint8_t want[GL_MAC_LEN];
        mac_of(hs, "gleam-v1 welcome", hs->mine, hs->theirs, want);
        if (CRYPTO_memcmp(want, in->mac, GL_MAC_LEN))
            return fail(hs, out, send, err, NULL,
                        "handshake failed: the peer does not know the secret (wrong secret on one side)");
        hs->state = GL_HS_DONE;
        return 1;
    }
    default:
        return fail(hs, out, send, err, NULL, "handshake already over");
    }
    snprintf(why, sizeof why, "handshake failed: unexpected %s message", gl_msg_name(in->type));
    return fail(hs, out, send, err, why, why);
}
