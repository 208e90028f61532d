/* opt.c: option parsing, listening and loop shutdown for the cluster
 * commands (opt.h). */
#include "opt.h"

#include "conn.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
