/* master.c: `gleam master`, the cluster's registry of agents.
 *
 * One libuv loop serves every connection. An agent registers with its first
 * heartbeat and stays in the registry while its heartbeats keep coming; one
 * that misses three of its own intervals is forgotten, and so is one whose
 * connection closes (it stopped or died: its slots must not be granted
 * while the heartbeats run out). The master keeps
 * nothing on disk: restarted, it learns the agents again from their next
 * heartbeats (agents reconnect on their own). A client's status message
 * gets the registry back; a driver's slots message gets executor slots
 * granted from it. A connection that sends a malformed frame, fails
 * the handshake or sends what its role may not is closed and logged; the
 * others go on. */
#include "cluster.h"

#include "conn.h"
#include "log.h"
#include "opt.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MISSED_BEATS 3   /* heartbeats an agent may miss before it is forgotten */
#define SWEEP_MS 100     /* how often the registry is checked for silent agents */

static const char USAGE[] =
    "usage: gleam master [--listen HOST:PORT] [--secret-file FILE]\n"
    "\n"
    "Runs the cluster's master: the registry of agents, which they join with\n"
    "`gleam agent --master HOST:PORT`. An agent that misses 3 heartbeats, or\n"
    "whose connection closes, is forgotten; a restarted master learns the\n"
    "agents again from their next heartbeats. Logs go to stderr. Stops on\n"
    "SIGINT or SIGTERM.\n"
    "\n"
    "options:\n"
    "  --listen HOST:PORT    address to serve on (default 127.0.0.1:45326; port 0\n"
    "                        picks a free one, logged at start)\n"
    "  --secret-file FILE    the cluster's shared secret (default: the environment\n"
    "                        variable GLEAM_SECRET); without one, only a loopback\n"
    "                        address may be used\n"
    "  -h, --help            show this help\n";

typedef struct entry {
    gl_agent_info info;
    uint64_t last_ms; /* loop time of its last heartbeat */
    gl_conn *conn;    /* the connection its last heartbeat came on */
} entry;

static struct {
    uv_loop_t loop;
    uv_tcp_t server;
    uv_timer_t sweep;
    uv_signal_t sigint, sigterm;
    gl_secret secret;
    entry *agents;
    uint32_t n, cap;
} M;

const char *gl_fmt_bytes(unsigned long long n, char *out, unsigned long max)
{
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
    double v = (double)n;
    int u = 0;
    while (v >= 1024 && u < 5) {
        v /= 1024;
        u++;
    }
    snprintf(out, max, u ? "%.1f %s" : "%.0f %s", v, units[u]);
    return out;
}

static entry *find(const char *addr)
{
    for (uint32_t i = 0; i < M.n; i++)
        if (!strcmp(M.agents[i].info.addr, addr))
            return &M.agents[i];
    return NULL;
}

static void heartbeat(gl_conn *c, const gl_agent_info *a)
{
    if (!a->addr[0] || !a->heartbeat_ms) {
        gl_conn_refuse(c, "heartbeat without an address or interval");
        return;
    }
    entry *e = find(a->addr);
    if (!e) {
        if (M.n == GL_AGENTS_MAX) {
            gl_conn_refuse(c, "the master's registry is full");
            return;
        }
        if (M.n == M.cap) {
            uint32_t cap = M.cap ? 2 * M.cap : 16;
            entry *p = realloc(M.agents, cap * sizeof *p);
            if (!p) {
                gl_conn_refuse(c, "the master is out of memory");
                return;
            }
            M.agents = p;
            M.cap = cap;
        }
        e = &M.agents[M.n++];
        char mem[32];
        gl_log(GL_LOG_INFO, "agent %s registered: %u cores, %s memory (from %s)", a->addr, a->cores,
               gl_fmt_bytes(a->memory, mem, sizeof mem), c->peer);
    }
    e->info = *a;
    e->last_ms = uv_now(&M.loop);
    e->conn = c;
}

static void status(gl_conn *c)
{
    gl_msg r;
    memset(&r, 0, sizeof r);
    r.type = GL_MSG_AGENTS;
    r.nagents = M.n;
    r.agents = M.n ? calloc(M.n, sizeof *r.agents) : NULL;
    if (M.n && !r.agents) {
        gl_conn_refuse(c, "the master is out of memory");
        return;
    }
    uint64_t now = uv_now(&M.loop);
    for (uint32_t i = 0; i < M.n; i++) {
        r.agents[i] = M.agents[i].info;
        r.agents[i].age_ms = now - M.agents[i].last_ms;
    }
    gl_conn_send(c, &r);
    gl_msg_free(&r);
}

/* Grants up to want executor slots, one at a time from the agent with the
 * most free slots in the master's view (so a job spreads over the
 * cluster), and counts them as taken until that agent's next heartbeat
 * says how many really are. The answer lists the agents granted from, each
 * with the slots granted on it as its free_slots; it may hold fewer slots
 * than asked for, or none. */
static void grant(gl_conn *c, uint32_t want)
{
    gl_msg r;
    memset(&r, 0, sizeof r);
    r.type = GL_MSG_AGENTS;
    uint32_t *take = calloc(M.n ? M.n : 1, sizeof *take);
    if (!take) {
        gl_conn_refuse(c, "the master is out of memory");
        return;
    }
    uint32_t k = 0;
    for (; k < want; k++) {
        uint32_t best = M.n;
        for (uint32_t i = 0; i < M.n; i++)
            if (M.agents[i].info.free_slots && (best == M.n || M.agents[i].info.free_slots > M.agents[best].info.free_slots))
                best = i;
        if (best == M.n)
            break;
        M.agents[best].info.free_slots--;
        if (!take[best]++)
            r.nagents++;
    }
    r.agents = r.nagents ? calloc(r.nagents, sizeof *r.agents) : NULL;
    uint64_t now = uv_now(&M.loop);
    for (uint32_t i = 0, j = 0; r.agents && i < M.n; i++)
        if (take[i]) {
            r.agents[j] = M.agents[i].info;
            r.agents[j].free_slots = take[i];
            r.agents[j++].age_ms = now - M.agents[i].last_ms;
        }
    free(take);
    if (r.nagents && !r.agents) {
        gl_conn_refuse(c, "the master is out of memory");
        return;
    }
    gl_log(GL_LOG_DEBUG, "granted %s %u of the %u slots it wanted", c->peer, k, want);
    gl_conn_send(c, &r);
    gl_msg_free(&r);
}

static void on_msg(gl_conn *c, gl_msg *m)
{
    bool agent = !strcmp(c->hs.role, "agent");
    if (m->type == GL_MSG_HEARTBEAT && agent) {
        heartbeat(c, &m->agent);
    } else if (m->type == GL_MSG_SLOTS && !strcmp(c->hs.role, "driver")) {
        grant(c, m->want);
    } else if (m->type == GL_MSG_STATUS) {
        status(c);
    } else {
        char why[128];
        snprintf(why, sizeof why, "unexpected %s message from a peer in role '%s'", gl_msg_name(m->type),
                 c->hs.role);
        gl_conn_refuse(c, why);
    }
}

/* An agent whose connection closes is forgotten at once; one that
 * reconnected already heartbeats on its new connection and stays. */
static void on_closed(gl_conn *c, const char *why, bool was_ready)
{
    gl_daemon_closed(c, why, was_ready);
    for (uint32_t i = 0; i < M.n; i++)
        if (M.agents[i].conn == c) {
            gl_log(GL_LOG_INFO, "agent %s forgotten: its connection closed", M.agents[i].info.addr);
            M.agents[i] = M.agents[--M.n];
            break;
        }
}

static const gl_conn_cb conn_cb = {NULL, on_msg, on_closed, NULL};

static void on_connection(uv_stream_t *server, int status)
{
    gl_daemon_accept(server, status, &M.secret, &conn_cb);
}

static void on_sweep(uv_timer_t *t)
{
    uint64_t now = uv_now(&M.loop);
    for (uint32_t i = 0; i < M.n;) {
        entry *e = &M.agents[i];
        uint64_t limit = (uint64_t)MISSED_BEATS * e->info.heartbeat_ms;
        if (now - e->last_ms > limit) {
            gl_log(GL_LOG_WARN, "agent %s forgotten: no heartbeat for %.1f s (it beats every %.1f s)", e->info.addr,
                   (double)(now - e->last_ms) / 1000, e->info.heartbeat_ms / 1000.0);
            M.agents[i] = M.agents[--M.n];
        } else {
            i++;
        }
    }
}

static void on_signal(uv_signal_t *s, int signum)
{
    gl_log(GL_LOG_INFO, "stopping (%s)", signum == SIGINT ? "SIGINT" : "SIGTERM");
    uv_close((uv_handle_t *)&M.server, NULL);
    uv_close((uv_handle_t *)&M.sweep, NULL);
    uv_close((uv_handle_t *)&M.sigint, NULL);
    uv_close((uv_handle_t *)&M.sigterm, NULL);
}

static int usage_error(const char *fmt, const char *arg) { return gl_opt_usage("master", USAGE, fmt, arg); }

int gl_master_main(int argc, char **argv)
{
    const char *listen = "127.0.0.1:45326", *secret_file = NULL;
    const gl_opt opts[] = {{"--listen", &listen}, {"--secret-file", &secret_file}};
    int rc = gl_opt_parse(argc, argv, opts, sizeof opts / sizeof opts[0], "master", USAGE);
    if (rc >= 0)
        return rc;
    gl_log_init("master", getenv("GLEAM_DEBUG") ? GL_LOG_DEBUG : GL_LOG_INFO);
    char host[GL_ADDR_MAX];
    int port;
    gl_err err = {0};
    if (gl_opt_hostport(listen, host, sizeof host, &port, &err))
        return usage_error("--listen: %s", err.msg);
    if (gl_daemon_secret(&M.secret, secret_file, host, listen, "master"))
        return 1;
    signal(SIGPIPE, SIG_IGN);
    uv_loop_init(&M.loop);
    char bound[GL_ADDR_MAX];
    rc = 0;
    if (gl_listen(&M.loop, &M.server, host, port, on_connection, bound, sizeof bound, &err)) {
        gl_log(GL_LOG_ERROR, "%s", err.msg);
        rc = 1;
    } else {
        if (M.secret.set)
            gl_log(GL_LOG_INFO, "listening on %s (secret from %s)", bound, M.secret.from);
        else
            gl_log(GL_LOG_INFO, "listening on %s; no secret configured (--secret-file or GLEAM_SECRET), "
                                "so loopback only", bound);
        uv_timer_init(&M.loop, &M.sweep);
        uv_timer_start(&M.sweep, on_sweep, SWEEP_MS, SWEEP_MS);
        uv_signal_init(&M.loop, &M.sigint);
        uv_signal_init(&M.loop, &M.sigterm);
        uv_signal_start(&M.sigint, on_signal, SIGINT);
        uv_signal_start(&M.sigterm, on_signal, SIGTERM);
        /* Runs until on_signal closed the handles above; connections may remain. */
        while (uv_is_active((uv_handle_t *)&M.sigint) && uv_run(&M.loop, UV_RUN_ONCE))
            ;
    }
    gl_loop_drain(&M.loop);
    free(M.agents);
    return rc;
}
