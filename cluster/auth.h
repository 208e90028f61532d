/* auth.h: the shared-secret handshake every cluster connection starts with.
 *
 * Mutual challenge/response over HMAC-SHA256 (RFC 2104, OpenSSL's libcrypto),
 * in three messages (wire.h):
 *
 *   listener -> connector  hello   { v, nonce_l }
 *   connector -> listener  auth    { role, nonce_c,
 *                                    mac = HMAC(K, "gleam-v1 auth\0" role "\0" nonce_l nonce_c) }
 *   listener -> connector  welcome { mac = HMAC(K, "gleam-v1 welcome\0" role "\0" nonce_c nonce_l) }
 *                       or error   { text }, then the listener closes
 *
 * Each side proves it knows K over a fresh nonce of the other side's
 * (32 bytes from getrandom), so a recorded exchange can't be replayed, and
 * the two MACs carry different labels, so one side's answer can't be
 * reflected as the other's. MACs are compared in constant time. Without a
 * configured secret K is empty: the handshake still runs (the protocol has
 * one shape) but proves nothing, which is why the daemons then listen on
 * loopback only.
 *
 * The state machine below knows no sockets: conn.c feeds it the messages
 * that arrive and sends what it returns. */
#ifndef GL_AUTH_H
#define GL_AUTH_H

#include "err.h"
#include "wire.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define GL_SECRET_MAX 4096 /* bytes of a secret */

typedef struct gl_secret {
    uint8_t key[GL_SECRET_MAX];
    size_t len;
    bool set;            /* false: no secret configured (key empty) */
    char from[64];       /* where it came from, for the start-up line */
} gl_secret;

/* Loads the secret from file (if not NULL), else from the environment
 * variable GLEAM_SECRET, else leaves it unset. Trailing newlines and
 * spaces are dropped; an empty or unreadable secret is an error. */
int gl_secret_load(gl_secret *s, const char *file, gl_err *err);

/* Fills out with n random bytes from getrandom(2). */
int gl_auth_random(uint8_t *out, size_t n, gl_err *err);

/* HMAC-SHA256 of the parts, concatenated, under key. */
void gl_hmac_sha256(const uint8_t *key, size_t keylen, const void *const *parts, const size_t *lens,
                    int nparts, uint8_t out[GL_MAC_LEN]);

enum gl_hs_state { GL_HS_HELLO, GL_HS_AUTH, GL_HS_WELCOME, GL_HS_DONE, GL_HS_FAILED };

typedef struct gl_hs {
    bool listener;
    enum gl_hs_state state;   /* what this side waits for */
    const gl_secret *secret;  /* borrowed */
    char role[GL_ROLE_MAX];   /* connector: the role it claims; listener: the one it was told */
    uint8_t mine[GL_NONCE_LEN], theirs[GL_NONCE_LEN];
} gl_hs;

/* Starts a handshake. A listener gets its hello in *out (*send set); a
 * connector, which speaks second, gets nothing. role: what a connector
 * claims to be ("agent", "client"); ignored for a listener. 0 or an error
 * (no randomness). */
int gl_hs_start(gl_hs *hs, bool listener, const gl_secret *secret, const char *role, gl_msg *out,
                bool *send, gl_err *err);

/* Feeds one message that arrived during the handshake. Returns 0 (go on),
 * 1 (done: the peer proved it knows the secret), or a negative code with
 * one line in err naming why the handshake failed. In every case *send
 * says whether *out must be sent before going on (or before closing). */
int gl_hs_step(gl_hs *hs, const gl_msg *in, gl_msg *out, bool *send, gl_err *err);

#endif
