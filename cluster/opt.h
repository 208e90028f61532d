/* opt.h: what the cluster commands share: their options (addresses,
 * sizes, durations), listening, and stopping on SIGINT/SIGTERM. */
#ifndef GL_OPT_H
#define GL_OPT_H

#include "conn.h"
#include "err.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct gl_opt {
    const char *name;  /* "--listen": takes a value, as --listen V or --listen=V */
    const char **val;  /* set to the value */
} gl_opt;

/* Parses a cluster command's arguments (argv[1..]) against opts. Returns
 * -1 to go on, or the exit status to return: 0 after printing usage for
 * -h/--help, 2 after a usage error. cmd names the command in messages. */
int gl_opt_parse(int argc, char **argv, const gl_opt *opts, size_t n, const char *cmd, const char *usage);

/* Prints "gleam CMD: " and fmt (with one string argument), then usage, to
 * stderr; returns 2, a usage error's exit status. */
int gl_opt_usage(const char *cmd, const char *usage, const char *fmt, const char *arg);

/* Splits "host:port" or "[v6addr]:port" (port 0..65535). 0 or GL_EINVAL. */
int gl_opt_hostport(const char *s, char *host, size_t max, int *port, gl_err *err);

/* A byte count: digits with an optional K, M, G or T suffix (powers of
 * 1024, "G", "GB" and "GiB" alike). */
int gl_opt_size(const char *s, uint64_t *out, gl_err *err);

/* A whole number from lo to hi. */
int gl_opt_uint(const char *s, uint64_t lo, uint64_t hi, uint64_t *out);

/* Seconds, fractions allowed, from lo to hi, as milliseconds. */
int gl_opt_seconds(const char *s, double lo, double hi, uint32_t *ms);

/* Whether host is a loopback address or "localhost". */
bool gl_opt_loopback(const char *host);

/* Matches argv[*i] against --name (value in the next argument) or
 * --name=VALUE; returns 1 and sets *val (advancing *i past a separate
 * value), 0 when it is another option, -1 when the value is missing. */
int gl_opt_value(int argc, char **argv, int *i, const char *name, const char **val);

/* Binds tcp to host:port (host an IP address or "localhost") and listens;
 * bound gets the address really bound ("ip:port", the port filled in when
 * 0 was asked). On failure tcp is closed (or was never opened). */
int gl_listen(uv_loop_t *loop, uv_tcp_t *tcp, const char *host, int port, uv_connection_cb cb, char *bound,
              size_t max, gl_err *err);

/* Loads a daemon's secret (file, else GLEAM_SECRET) and, when there is
 * none, allows only a loopback listen host. 0, or 1 after printing one
 * line "gleam CMD: ..." to stderr. */
int gl_daemon_secret(gl_secret *s, const char *file, const char *host, const char *listen, const char *cmd);

/* For a daemon's listening socket: accepts the connection (logging a
 * failure) and starts its handshake. */
void gl_daemon_accept(uv_stream_t *server, int status, const gl_secret *secret, const gl_conn_cb *cb);

/* Logs how a connection a daemon served ended: a peer that said goodbye
 * after the handshake at debug level, anything else as a warning. */
void gl_daemon_closed(gl_conn *c, const char *why, bool was_ready);

/* Closes every connection still open (each a gl_conn, whose tcp handle's
 * data is the conn) and runs the loop until all handles are closed; the
 * caller has closed its own handles first. Then closes the loop. */
void gl_loop_drain(uv_loop_t *loop);

#endif
