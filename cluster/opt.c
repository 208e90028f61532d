/* opt.c: option parsing, listening and loop shutdown for the cluster
 * commands (opt.h). */
#include "opt.h"

#include "conn.h"
#include "log.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int gl_opt_usage(const char *cmd, const char *usage, const char *fmt, const char *arg)
{
    fprintf(stderr, "gleam %s: ", cmd);
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n%s", usage);
    return 2;
}

int gl_opt_parse(int argc, char **argv, const gl_opt *opts, size_t n, const char *cmd, const char *usage)
{
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            fputs(usage, stdout);
            return 0;
        }
        int r = 0;
        for (size_t k = 0; !r && k < n; k++) {
            r = gl_opt_value(argc, argv, &i, opts[k].name, opts[k].val);
            if (r < 0)
                return gl_opt_usage(cmd, usage, "%s needs a value", opts[k].name);
        }
        if (!r)
            return gl_opt_usage(cmd, usage, "unknown option %s", argv[i]);
    }
    return -1;
}

int gl_opt_hostport(const char *s, char *host, size_t max, int *port, gl_err *err)
{
    const char *colon, *h = s;
    size_t hn;
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (!close || close[1] != ':')
            goto bad;
        h = s + 1;
        hn = (size_t)(close - h);
        colon = close + 1;
    } else {
        colon = strrchr(s, ':');
        if (!colon)
            goto bad;
        hn = (size_t)(colon - s);
    }
    if (!hn || hn >= max)
        goto bad;
    uint64_t p;
    if (gl_opt_uint(colon + 1, 0, 65535, &p))
        goto bad;
    memcpy(host, h, hn);
    host[hn] = 0;
    *port = (int)p;
    return 0;
bad:
    return gl_err_set(err, GL_EINVAL, "'%s' is not HOST:PORT", s);
}

int gl_opt_uint(const char *s, uint64_t lo, uint64_t hi, uint64_t *out)
{
    if (!s || !isdigit((unsigned char)s[0]))
        return -1;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

int gl_opt_size(const char *s, uint64_t *out, gl_err *err)
{
    if (!s || !isdigit((unsigned char)s[0]))
        goto bad;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno)
        goto bad;
    int shift = 0;
    switch (toupper((unsigned char)*end)) {
    case 0: break;
    case 'K': shift = 10; end++; break;
    case 'M': shift = 20; end++; break;
    case 'G': shift = 30; end++; break;
    case 'T': shift = 40; end++; break;
    default: goto bad;
    }
    if (shift && (!strcmp(end, "B") || !strcmp(end, "iB")))
        end += strlen(end);
    if (*end || (shift && v > (UINT64_MAX >> shift)))
        goto bad;
    *out = (uint64_t)v << shift;
    return 0;
bad:
    return gl_err_set(err, GL_EINVAL, "'%s' is not a size (a number of bytes, or with K, M, G or T)", s ? s : "");
}

int gl_opt_seconds(const char *s, double lo, double hi, uint32_t *ms)
{
    if (!s || !*s)
        return -1;
    char *end;
    double v = strtod(s, &end);
    if (*end || !(v >= lo && v <= hi))
        return -1;
    *ms = (uint32_t)(v * 1000 + 0.5);
    return 0;
}

bool gl_opt_loopback(const char *host)
{
    if (!strcmp(host, "localhost") || !strcmp(host, "::1"))
        return true;
    struct sockaddr_in a;
    return !uv_ip4_addr(host, 0, &a) && (ntohl(a.sin_addr.s_addr) >> 24) == 127;
}

int gl_opt_value(int argc, char **argv, int *i, const char *name, const char **val)
{
    const char *a = argv[*i];
    size_t n = strlen(name);
    if (strncmp(a, name, n))
        return 0;
    if (a[n] == '=') {
        *val = a + n + 1;
        return 1;
    }
    if (a[n])
        return 0;
    if (*i + 1 >= argc)
        return -1;
    *val = argv[++*i];
    return 1;
}

int gl_listen(uv_loop_t *loop, uv_tcp_t *tcp, const char *host, int port, uv_connection_cb cb, char *bound,
              size_t max, gl_err *err)
{
    struct sockaddr_storage ss;
    const char *ip = strcmp(host, "localhost") ? host : "127.0.0.1";
    if (uv_ip4_addr(ip, port, (struct sockaddr_in *)&ss) && uv_ip6_addr(ip, port, (struct sockaddr_in6 *)&ss))
        return gl_err_set(err, GL_EINVAL, "cannot listen on %s:%d: not an IP address", host, port);
    int e = uv_tcp_init(loop, tcp);
    if (e)
        return gl_err_set(err, GL_EIO, "cannot listen on %s:%d: %s", host, port, uv_strerror(e));
    tcp->data = NULL;
    int len = sizeof ss;
    if ((e = uv_tcp_bind(tcp, (struct sockaddr *)&ss, 0)) || (e = uv_listen((uv_stream_t *)tcp, 128, cb)) ||
        (e = uv_tcp_getsockname(tcp, (struct sockaddr *)&ss, &len))) {
        uv_close((uv_handle_t *)tcp, NULL);
        return gl_err_set(err, GL_EIO, "cannot listen on %s:%d: %s", host, port, uv_strerror(e));
    }
    gl_addr_str((struct sockaddr *)&ss, bound, max);
    return 0;
}

int gl_daemon_secret(gl_secret *s, const char *file, const char *host, const char *listen, const char *cmd)
{
    gl_err err = {0};
    if (gl_secret_load(s, file, &err)) {
        fprintf(stderr, "gleam %s: %s\n", cmd, err.msg);
        return 1;
    }
    if (!s->set && !gl_opt_loopback(host)) {
        fprintf(stderr, "gleam %s: no secret (--secret-file or GLEAM_SECRET): "
                        "refusing to listen on %s, which is not a loopback address\n", cmd, listen);
        return 1;
    }
    return 0;
}

void gl_daemon_accept(uv_stream_t *server, int status, const gl_secret *secret, const gl_conn_cb *cb)
{
    if (status < 0)
        gl_log(GL_LOG_WARN, "accept: %s", uv_strerror(status));
    else if (!gl_conn_accept(server, secret, cb, NULL))
        gl_log(GL_LOG_ERROR, "out of memory accepting a connection");
}

void gl_daemon_closed(gl_conn *c, const char *why, bool was_ready)
{
    if (was_ready && c->eof)
        gl_log(GL_LOG_DEBUG, "%s (%s) disconnected", c->peer, c->hs.role);
    else
        gl_log(GL_LOG_WARN, "closed the connection of %s: %s", c->peer, why);
}

static void close_conn(uv_handle_t *h, void *arg)
{
    if (h->type == UV_TCP && h->data && !uv_is_closing(h))
        gl_conn_close(h->data, "shutting down");
}

void gl_loop_drain(uv_loop_t *loop)
{
    uv_walk(loop, close_conn, NULL);
    uv_run(loop, UV_RUN_DEFAULT);
    uv_loop_close(loop);
}
