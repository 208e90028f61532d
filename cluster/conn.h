/* conn.h: one cluster connection on libuv TCP, either side.
 *
 * A gl_conn reads the stream into a wire reader, runs the handshake
 * (auth.h) on the first messages, and only then hands messages to its
 * owner. It never logs: whatever ends it (a malformed or oversized frame,
 * a failed handshake, the peer going away, the handshake deadline) is
 * passed as one line to the owner's closed callback, and the owner's other
 * connections are untouched. The owner never frees a gl_conn: it asks for
 * gl_conn_close, and the conn frees itself after the closed callback. */
#ifndef GL_CONN_H
#define GL_CONN_H

#include "auth.h"
#include "wire.h"

#include <stdbool.h>
#include <uv.h>

#define GL_HANDSHAKE_MS 10000 /* a peer must finish the handshake within this */

typedef struct gl_conn gl_conn;

typedef struct gl_conn_cb {
    /* The handshake is over; the peer knows the secret. */
    void (*ready)(gl_conn *c);
    /* A message after the handshake; m is freed when this returns. */
    void (*msg)(gl_conn *c, gl_msg *m);
    /* The connection is gone: why (one line), and whether it got past the
     * handshake. c is freed right after this returns. */
    void (*closed)(gl_conn *c, const char *why, bool was_ready);
    /* Optional: a queued message has been written, so the write queue
     * (gl_conn_queued) is shorter. A sender that streams calls gl_conn_send
     * only while that queue is below its bound, and goes on from here: the
     * peer's reading speed then sets the pace, and nothing piles up. */
    void (*drained)(gl_conn *c);
} gl_conn_cb;

struct gl_conn {
    uv_tcp_t tcp;
    uv_timer_t timer;         /* the handshake deadline */
    uv_getaddrinfo_t gai;     /* connecting: the name lookup */
    uv_connect_t creq;
    gl_wire_reader rd;
    gl_hs hs;
    const gl_conn_cb *cb;     /* borrowed */
    const gl_secret *secret;  /* borrowed */
    char role[GL_ROLE_MAX];   /* connecting: the role claimed */
    void *data;               /* the owner's */
    char peer[GL_ADDR_MAX];   /* "ip:port" of the other side (or the name being connected to) */
    char why[GL_TEXT_MAX + 128];
    int handles;              /* open handles; freed at 0 */
    bool ready, closing, connected, resolving;
    bool shutting;            /* gl_conn_close_flushed: closing once the queue is written */
    bool eof;                 /* the peer closed its side after the handshake */
};

/* Accepts a pending connection on server and starts the listener's side of
 * the handshake. A failed accept arrives at cb->closed; NULL only when out
 * of memory. */
gl_conn *gl_conn_accept(uv_stream_t *server, const gl_secret *secret, const gl_conn_cb *cb, void *data);

/* Connects to host:port (a name or an address) and runs the connector's
 * side of the handshake as role. Failures, the name lookup's included,
 * arrive at cb->closed. NULL only when out of memory. */
gl_conn *gl_conn_connect(uv_loop_t *loop, const char *host, int port, const gl_secret *secret,
                         const char *role, const gl_conn_cb *cb, void *data);

/* Queues m. 0, or an error (the conn is then closing). */
int gl_conn_send(gl_conn *c, const gl_msg *m);

/* Bytes queued on c and not yet written to the socket. */
size_t gl_conn_queued(const gl_conn *c);

/* Closes c once what is queued has been written (a goodbye message
 * arrives); why is what closed gets. */
void gl_conn_close_flushed(gl_conn *c, const char *why);

/* Closes c (once; later calls do nothing). why is what closed gets. */
void gl_conn_close(gl_conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Sends an error message with text, then closes once it is written. */
void gl_conn_refuse(gl_conn *c, const char *text);

/* Formats a socket address as "ip:port". */
void gl_addr_str(const struct sockaddr *sa, char *out, size_t max);

#endif
