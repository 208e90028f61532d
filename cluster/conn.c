/* conn.c: a cluster connection (conn.h).
 *
 * Lifetime: a conn counts what libuv still holds of it (the tcp and timer
 * handles, a pending name lookup); gl_conn_close starts closing them and the
 * last close callback calls the owner's closed callback and frees the conn.
 * So a conn stays valid inside every callback, even one that closed it. */
#include "conn.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct wreq {
    uv_write_t req;
    gl_buf b;
} wreq;

void gl_addr_str(const struct sockaddr *sa, char *out, size_t max)
{
    char ip[64] = "?";
    int port = 0;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)sa;
        uv_ip4_name(a, ip, sizeof ip);
        port = ntohs(a->sin_port);
        snprintf(out, max, "%s:%d", ip, port);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)sa;
        uv_ip6_name(a, ip, sizeof ip);
        port = ntohs(a->sin6_port);
        snprintf(out, max, "[%s]:%d", ip, port);
    } else {
        snprintf(out, max, "?");
    }
}

static void finish(gl_conn *c)
{
    if (c->cb && c->cb->closed)
        c->cb->closed(c, c->why, c->ready);
    gl_wire_reader_free(&c->rd);
    free(c);
}

static void on_close(uv_handle_t *h)
{
    gl_conn *c = h->data;
    if (--c->handles == 0)
        finish(c);
}

void gl_conn_close(gl_conn *c, const char *fmt, ...)
{
    if (c->closing)
        return;
    c->closing = true;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->why, sizeof c->why, fmt, ap);
    va_end(ap);
    if (c->connected)
        uv_read_stop((uv_stream_t *)&c->tcp);
    uv_close((uv_handle_t *)&c->timer, on_close);
    uv_close((uv_handle_t *)&c->tcp, on_close);
    if (c->resolving)
        uv_cancel((uv_req_t *)&c->gai); /* its callback still comes, and frees */
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    gl_conn *c = req->data;
    free(req);
    char why[sizeof c->why];
    memcpy(why, c->why, sizeof why); /* gl_conn_close writes c->why */
    gl_conn_close(c, "%s", why);
}

size_t gl_conn_queued(const gl_conn *c) { return uv_stream_get_write_queue_size((const uv_stream_t *)&c->tcp); }

void gl_conn_close_flushed(gl_conn *c, const char *why)
{
    if (c->closing || c->shutting)
        return;
    if (!c->connected) {
        gl_conn_close(c, "%s", why);
        return;
    }
    snprintf(c->why, sizeof c->why, "%s", why);
    uv_read_stop((uv_stream_t *)&c->tcp);
    uv_shutdown_t *req = malloc(sizeof *req);
    if (!req || uv_shutdown(req, (uv_stream_t *)&c->tcp, on_shutdown)) {
        free(req);
        gl_conn_close(c, "%s", why);
        return;
    }
    req->data = c;
    c->connected = false; /* reading is over */
    c->shutting = true;
}

static void on_write(uv_write_t *req, int status)
{
    wreq *w = (wreq *)req;
    gl_conn *c = req->data;
    gl_buf_free(&w->b);
    free(w);
    if (status < 0 && status != UV_ECANCELED)
        gl_conn_close(c, "write to %s: %s", c->peer, uv_strerror(status));
    else if (!c->closing && c->ready && c->cb->drained)
        c->cb->drained(c);
}

int gl_conn_send(gl_conn *c, const gl_msg *m)
{
    if (c->closing)
        return GL_ECANCEL;
    wreq *w = calloc(1, sizeof *w);
    gl_err err = {0};
    int rc = w ? gl_wire_encode(&w->b, m, &err) : gl_err_set(&err, GL_ENOMEM, "out of memory");
    if (rc) {
        if (w)
            gl_buf_free(&w->b);
        free(w);
        gl_conn_close(c, "sending %s to %s: %s", gl_msg_name(m->type), c->peer, err.msg);
        return rc;
    }
    w->req.data = c;
    uv_buf_t b = uv_buf_init((char *)w->b.data, (unsigned)w->b.len);
    int e = uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, on_write);
    if (e) {
        gl_buf_free(&w->b);
        free(w);
        gl_conn_close(c, "write to %s: %s", c->peer, uv_strerror(e));
        return GL_EIO;
    }
    return 0;
}

void gl_conn_refuse(gl_conn *c, const char *text)
{
    gl_msg m;
    memset(&m, 0, sizeof m);
    m.type = GL_MSG_ERROR;
    snprintf(m.text, sizeof m.text, "%.*s", (int)sizeof m.text - 1, text);
    if (gl_conn_send(c, &m) == 0)
        gl_conn_close_flushed(c, text);
}

static void handshake(gl_conn *c, const gl_msg *m)
{
    gl_msg out;
    bool send = false;
    gl_err err = {0};
    int rc = gl_hs_step(&c->hs, m, &out, &send, &err);
    if (send && gl_conn_send(c, &out))
        return;
    if (rc < 0) {
        if (send)
            gl_conn_close_flushed(c, err.msg);
        else
            gl_conn_close(c, "%s", err.msg);
        return;
    }
    if (rc == 1) {
        c->ready = true;
        c->rd.max = GL_WIRE_MAX;
        uv_timer_stop(&c->timer);
        if (c->cb->ready)
            c->cb->ready(c);
    }
}

/* One read buffer for every connection of the process: libuv calls
 * on_read right after on_alloc on the loop's one thread, and on_read
 * copies what it got into the connection's reader before returning. */
static char rbuf[64 << 10];

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    *buf = uv_buf_init(rbuf, sizeof rbuf);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    gl_conn *c = s->data;
    if (c->closing || !c->connected)
        return;
    if (n < 0) {
        c->eof = n == UV_EOF && c->ready;
        if (n == UV_EOF)
            gl_conn_close(c, "%s closed the connection%s", c->peer, c->ready ? "" : " during the handshake");
        else
            gl_conn_close(c, "read from %s: %s", c->peer, uv_strerror((int)n));
        return;
    }
    gl_err err = {0};
    if (n > 0 && gl_wire_feed(&c->rd, buf->base, (size_t)n, &err)) {
        gl_conn_close(c, "%s: %s", c->peer, err.msg);
        return;
    }
    while (!c->closing && c->connected) {
        gl_msg m;
        int rc = gl_wire_next(&c->rd, &m, &err);
        if (rc == 0)
            return;
        if (rc < 0) {
            gl_conn_close(c, "%s: %s", c->peer, err.msg);
            return;
        }
        if (!c->ready)
            handshake(c, &m);
        else if (c->cb->msg)
            c->cb->msg(c, &m);
        gl_msg_free(&m);
    }
}

static void on_deadline(uv_timer_t *t)
{
    gl_conn *c = t->data;
    gl_conn_close(c, "%s: no handshake within %d s", c->peer, GL_HANDSHAKE_MS / 1000);
}

/* A conn with its tcp and timer handles, the deadline running. */
static gl_conn *conn_new(uv_loop_t *loop, const gl_secret *secret, const gl_conn_cb *cb, void *data)
{
    gl_conn *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->cb = cb;
    c->data = data;
    c->secret = secret;
    uv_tcp_init(loop, &c->tcp);
    uv_timer_init(loop, &c->timer);
    c->tcp.data = c->timer.data = c->gai.data = c;
    c->handles = 2;
    c->rd.max = GL_WIRE_HS_MAX;
    uv_timer_start(&c->timer, on_deadline, GL_HANDSHAKE_MS, 0);
    return c;
}

/* The stream is up: read, and start this side of the handshake. */
static void start(gl_conn *c, bool listener)
{
    struct sockaddr_storage ss;
    int len = sizeof ss;
    if (!uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len))
        gl_addr_str((struct sockaddr *)&ss, c->peer, sizeof c->peer);
    c->connected = true;
    uv_tcp_nodelay(&c->tcp, 1);
    int e = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    if (e) {
        gl_conn_close(c, "read from %s: %s", c->peer, uv_strerror(e));
        return;
    }
    gl_msg out;
    bool send = false;
    gl_err err = {0};
    if (gl_hs_start(&c->hs, listener, c->secret, c->role, &out, &send, &err)) {
        gl_conn_close(c, "%s", err.msg);
        return;
    }
    if (send)
        gl_conn_send(c, &out);
}

gl_conn *gl_conn_accept(uv_stream_t *server, const gl_secret *secret, const gl_conn_cb *cb, void *data)
{
    gl_conn *c = conn_new(server->loop, secret, cb, data);
    if (!c)
        return NULL;
    snprintf(c->peer, sizeof c->peer, "a new connection");
    int e = uv_accept(server, (uv_stream_t *)&c->tcp);
    if (e) {
        gl_conn_close(c, "accept: %s", uv_strerror(e));
        return c;
    }
    start(c, true);
    return c;
}

static void on_connect(uv_connect_t *req, int status)
{
    gl_conn *c = req->data;
    if (c->closing)
        return;
    if (status < 0) {
        gl_conn_close(c, "cannot connect to %s: %s", c->peer, uv_strerror(status));
        return;
    }
    start(c, false);
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    gl_conn *c = req->data;
    c->handles--;
    c->resolving = false;
    if (c->closing) {
        uv_freeaddrinfo(res);
        if (!c->handles)
            finish(c);
        return;
    }
    if (status < 0) {
        gl_conn_close(c, "cannot resolve %s: %s", c->peer, uv_strerror(status));
        return;
    }
    c->creq.data = c;
    int e = uv_tcp_connect(&c->creq, &c->tcp, res->ai_addr, on_connect);
    uv_freeaddrinfo(res);
    if (e)
        gl_conn_close(c, "cannot connect to %s: %s", c->peer, uv_strerror(e));
}

gl_conn *gl_conn_connect(uv_loop_t *loop, const char *host, int port, const gl_secret *secret,
                         const char *role, const gl_conn_cb *cb, void *data)
{
    gl_conn *c = conn_new(loop, secret, cb, data);
    if (!c)
        return NULL;
    snprintf(c->peer, sizeof c->peer, strchr(host, ':') ? "[%s]:%d" : "%s:%d", host, port);
    snprintf(c->role, sizeof c->role, "%s", role);
    char ports[16];
    snprintf(ports, sizeof ports, "%d", port);
    struct addrinfo hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    c->handles++;
    c->resolving = true;
    int e = uv_getaddrinfo(loop, &c->gai, on_resolved, host, ports, &hints);
    if (e) {
        c->handles--;
        c->resolving = false;
        gl_conn_close(c, "cannot resolve %s: %s", c->peer, uv_strerror(e));
    }
    return c;
}
