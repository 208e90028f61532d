/* status.c: `gleam status`, a one-shot client: it connects to a master (or
 * an agent), passes the handshake, asks for status and prints the agents
 * it is told of, one tab-separated line each under a header, on stdout.
 * Any failure is one line on stderr and exit status 1. */
#include "cluster.h"

#include "conn.h"
#include "opt.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char USAGE[] =
    "usage: gleam status (--master | --agent) HOST:PORT [--secret-file FILE] [--timeout SECONDS]\n"
    "\n"
    "Asks a master for the agents it knows (or an agent about itself) and prints\n"
    "them, one per line: address, cores, free executor slots, memory and stored\n"
    "bytes, and seconds since the last heartbeat, separated by tabs.\n"
    "\n"
    "options:\n"
    "  --master HOST:PORT    the master to ask\n"
    "  --agent HOST:PORT     an agent to ask about itself\n"
    "  --secret-file FILE    the cluster's shared secret (default: the environment\n"
    "                        variable GLEAM_SECRET)\n"
    "  --timeout SECONDS     give up after this long (default 10)\n"
    "  -h, --help            show this help\n";

static struct {
    uv_loop_t loop;
    uv_timer_t timeout;
    gl_secret secret;
    const char *kind, *addr;
    gl_conn *conn;
    int rc;
    bool done;
} S;

static void on_ready(gl_conn *c)
{
    gl_msg m;
    memset(&m, 0, sizeof m);
    m.type = GL_MSG_STATUS;
    gl_conn_send(c, &m);
}

static void on_msg(gl_conn *c, gl_msg *m)
{
    if (m->type == GL_MSG_AGENTS) {
        printf("agent\tcores\tfree_slots\tmemory\tstored\theartbeat_age_s\n");
        for (uint32_t i = 0; i < m->nagents; i++) {
            const gl_agent_info *a = &m->agents[i];
            printf("%s\t%u\t%u\t%llu\t%llu\t%.1f\n", a->addr, a->cores, a->free_slots,
                   (unsigned long long)a->memory, (unsigned long long)a->stored, (double)a->age_ms / 1000);
        }
        fflush(stdout);
        S.rc = 0;
        S.done = true;
        gl_conn_close(c, "done");
    } else if (m->type == GL_MSG_ERROR) {
        fprintf(stderr, "gleam status: the %s at %s says: %s\n", S.kind, S.addr, m->text);
        S.done = true;
        gl_conn_close(c, "refused");
    } else {
        fprintf(stderr, "gleam status: the %s at %s sent an unexpected %s message\n", S.kind, S.addr,
                gl_msg_name(m->type));
        S.done = true;
        gl_conn_close(c, "unexpected");
    }
}

static void on_closed(gl_conn *c, const char *why, bool was_ready)
{
    S.conn = NULL;
    if (!S.done)
        fprintf(stderr, "gleam status: cannot query the %s at %s: %s\n", S.kind, S.addr, why);
    uv_close((uv_handle_t *)&S.timeout, NULL);
}

static const gl_conn_cb cb = {on_ready, on_msg, on_closed, NULL};

static void on_timeout(uv_timer_t *t)
{
    if (S.conn)
        gl_conn_close(S.conn, "no answer in time");
}

static int usage_error(const char *fmt, const char *arg) { return gl_opt_usage("status", USAGE, fmt, arg); }

int gl_status_main(int argc, char **argv)
{
    const char *master = NULL, *agent = NULL, *secret_file = NULL, *timeout = NULL;
    const gl_opt opts[] = {{"--master", &master}, {"--agent", &agent}, {"--secret-file", &secret_file},
                           {"--timeout", &timeout}};
    int rc = gl_opt_parse(argc, argv, opts, sizeof opts / sizeof opts[0], "status", USAGE);
    if (rc >= 0)
        return rc;
    if (!master == !agent)
        return usage_error("%s", "give one of --master HOST:PORT or --agent HOST:PORT");
    S.kind = master ? "master" : "agent";
    S.addr = master ? master : agent;
    char host[GL_ADDR_MAX];
    int port;
    gl_err err = {0};
    if (gl_opt_hostport(S.addr, host, sizeof host, &port, &err))
        return usage_error("%s", err.msg);
    uint32_t ms = 10000;
    if (timeout && gl_opt_seconds(timeout, 0.1, 3600, &ms))
        return usage_error("--timeout needs seconds from 0.1 to 3600, got %s", timeout);
    if (gl_secret_load(&S.secret, secret_file, &err)) {
        fprintf(stderr, "gleam status: %s\n", err.msg);
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);
    uv_loop_init(&S.loop);
    S.rc = 1;
    uv_timer_init(&S.loop, &S.timeout);
    uv_timer_start(&S.timeout, on_timeout, ms, 0);
    S.conn = gl_conn_connect(&S.loop, host, port, &S.secret, "client", &cb, NULL);
    if (!S.conn) {
        fprintf(stderr, "gleam status: out of memory\n");
        uv_close((uv_handle_t *)&S.timeout, NULL);
    }
    uv_run(&S.loop, UV_RUN_DEFAULT);
    uv_loop_close(&S.loop);
    return S.rc;
}
