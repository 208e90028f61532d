/* agent.c: `gleam agent`, one per machine.
 *
 * It serves on its own address (--listen) and keeps one connection to the
 * master, over which it heartbeats every interval: its address, cores,
 * memory, free executor slots and stored bytes. The first heartbeat
 * registers it. When the master can't be reached or goes away, the agent
 * tries again every interval, so a restarted master has it back within one
 * interval of coming up; it logs each change of that state once, not each
 * attempt. On its own port it answers status with itself.
 *
 * Executors, stores and shard serving (issue 7, later steps) are not here
 * yet: free slots are all the cores and stored bytes are 0. */
#include "cluster.h"

#include "conn.h"
#include "log.h"
#include "opt.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char USAGE[] =
    "usage: gleam agent --master HOST:PORT --dir DIR [--listen HOST:PORT] [--cores N]\n"
    "                   [--memory SIZE] [--heartbeat SECONDS] [--secret-file FILE]\n"
    "\n"
    "Runs a cluster agent: it registers with the master and heartbeats to it,\n"
    "and reconnects when the master restarts. Logs go to stderr. Stops on\n"
    "SIGINT or SIGTERM.\n"
    "\n"
    "options:\n"
    "  --master HOST:PORT    the master to join (required)\n"
    "  --dir DIR             where the agent keeps its data (required; made if missing)\n"
    "  --listen HOST:PORT    address to serve on (default 127.0.0.1:45327; port 0\n"
    "                        picks a free one, logged at start)\n"
    "  --cores N             executor slots (default: the CPUs this process may use)\n"
    "  --memory SIZE         store memory, e.g. 512M or 16G (default: half the RAM)\n"
    "  --heartbeat SECONDS   heartbeat interval, 0.05 to 60 (default 1)\n"
    "  --secret-file FILE    the cluster's shared secret (default: the environment\n"
    "                        variable GLEAM_SECRET); without one, only a loopback\n"
    "                        address may be used\n"
    "  -h, --help            show this help\n";

static struct {
    uv_loop_t loop;
    uv_tcp_t server;
    uv_timer_t beat;
    uv_signal_t sigint, sigterm;
    gl_secret secret;
    char master_host[GL_ADDR_MAX], master_addr[GL_ADDR_MAX];
    int master_port;
    gl_conn *master;         /* NULL while not connected */
    gl_agent_info self;
    int listen_port;         /* the port really bound */
    bool wildcard;           /* listening on every interface: advertise the one facing the master */
    char last_why[GL_TEXT_MAX + 128]; /* the last failure logged, so a repeat isn't */
} A;

static void send_heartbeat(void)
{
    gl_msg m;
    memset(&m, 0, sizeof m);
    m.type = GL_MSG_HEARTBEAT;
    m.agent = A.self;
    gl_conn_send(A.master, &m);
}

static void master_ready(gl_conn *c)
{
    if (A.wildcard) {
        /* Advertise the address the master reaches us on, with our port. */
        struct sockaddr_storage ss;
        int len = sizeof ss;
        if (!uv_tcp_getsockname(&c->tcp, (struct sockaddr *)&ss, &len)) {
            if (ss.ss_family == AF_INET)
                ((struct sockaddr_in *)&ss)->sin_port = htons((uint16_t)A.listen_port);
            else
                ((struct sockaddr_in6 *)&ss)->sin6_port = htons((uint16_t)A.listen_port);
            gl_addr_str((struct sockaddr *)&ss, A.self.addr, sizeof A.self.addr);
        }
    }
    gl_log(GL_LOG_INFO, "joined the master at %s as %s", A.master_addr, A.self.addr);
    A.last_why[0] = 0;
    send_heartbeat();
}

static void master_msg(gl_conn *c, gl_msg *m)
{
    char why[128];
    snprintf(why, sizeof why, "unexpected %s message from the master", gl_msg_name(m->type));
    gl_conn_refuse(c, why);
}

static void master_closed(gl_conn *c, const char *why, bool was_ready)
{
    A.master = NULL;
    if (!uv_is_active((uv_handle_t *)&A.sigint))
        return; /* stopping */
    if (was_ready)
        gl_log(GL_LOG_WARN, "lost the master at %s: %s; reconnecting every %.1f s", A.master_addr, why,
               A.self.heartbeat_ms / 1000.0);
    else if (strcmp(why, A.last_why))
        gl_log(GL_LOG_WARN, "cannot join the master at %s: %s; trying every %.1f s", A.master_addr, why,
               A.self.heartbeat_ms / 1000.0);
    snprintf(A.last_why, sizeof A.last_why, "%s", was_ready ? "" : why);
}

static const gl_conn_cb master_cb = {master_ready, master_msg, master_closed};

static void on_beat(uv_timer_t *t)
{
    if (A.master) {
        if (A.master->ready)
            send_heartbeat();
        return;
    }
    A.master = gl_conn_connect(&A.loop, A.master_host, A.master_port, &A.secret, "agent", &master_cb, NULL);
    if (!A.master)
        gl_log(GL_LOG_ERROR, "out of memory connecting to the master");
}

/* ---- the agent's own port ---- */

static void peer_msg(gl_conn *c, gl_msg *m)
{
    if (m->type == GL_MSG_STATUS) {
        gl_msg r;
        memset(&r, 0, sizeof r);
        r.type = GL_MSG_AGENTS;
        r.agents = &A.self;
        r.nagents = 1;
        gl_conn_send(c, &r);
        return;
    }
    char why[128];
    snprintf(why, sizeof why, "unexpected %s message from a peer in role '%s'", gl_msg_name(m->type), c->hs.role);
    gl_conn_refuse(c, why);
}

static void peer_closed(gl_conn *c, const char *why, bool was_ready)
{
    if (was_ready && c->eof)
        gl_log(GL_LOG_DEBUG, "%s (%s) disconnected", c->peer, c->hs.role);
    else
        gl_log(GL_LOG_WARN, "closed the connection of %s: %s", c->peer, why);
}

static const gl_conn_cb peer_cb = {NULL, peer_msg, peer_closed};

static void on_connection(uv_stream_t *server, int status)
{
    if (status < 0) {
        gl_log(GL_LOG_WARN, "accept: %s", uv_strerror(status));
        return;
    }
    if (!gl_conn_accept(server, &A.secret, &peer_cb, NULL))
        gl_log(GL_LOG_ERROR, "out of memory accepting a connection");
}

static void on_signal(uv_signal_t *s, int signum)
{
    gl_log(GL_LOG_INFO, "stopping (%s)", signum == SIGINT ? "SIGINT" : "SIGTERM");
    uv_close((uv_handle_t *)&A.server, NULL);
    uv_close((uv_handle_t *)&A.beat, NULL);
    uv_close((uv_handle_t *)&A.sigint, NULL);
    uv_close((uv_handle_t *)&A.sigterm, NULL);
}

/* ---- start ---- */

/* mkdir -p dir, then checks it is a writable directory. */
static int make_dir(const char *dir, gl_err *err)
{
    char p[PATH_MAX];
    if (snprintf(p, sizeof p, "%s", dir) >= (int)sizeof p)
        return gl_err_set(err, GL_EINVAL, "--dir %s: path too long", dir);
    for (char *s = p + 1; *s; s++) {
        if (*s != '/')
            continue;
        *s = 0;
        if (mkdir(p, 0755) && errno != EEXIST)
            return gl_err_set(err, GL_EIO, "--dir %s: cannot make %s: %s", dir, p, strerror(errno));
        *s = '/';
    }
    if (mkdir(p, 0755) && errno != EEXIST)
        return gl_err_set(err, GL_EIO, "--dir %s: %s", dir, strerror(errno));
    struct stat st;
    if (stat(p, &st) || !S_ISDIR(st.st_mode))
        return gl_err_set(err, GL_EIO, "--dir %s: not a directory", dir);
    if (access(p, W_OK | X_OK))
        return gl_err_set(err, GL_EIO, "--dir %s: %s", dir, strerror(errno));
    return 0;
}

static int usage_error(const char *fmt, const char *arg)
{
    fprintf(stderr, "gleam agent: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n%s", USAGE);
    return 2;
}

int gl_agent_main(int argc, char **argv)
{
    const char *master = NULL, *dir = NULL, *listen = "127.0.0.1:45327", *secret_file = NULL;
    const char *cores = NULL, *memory = NULL, *beat = NULL;
    struct {
        const char *name;
        const char **val;
    } opts[] = {{"--master", &master}, {"--dir", &dir}, {"--listen", &listen}, {"--secret-file", &secret_file},
                {"--cores", &cores},   {"--memory", &memory}, {"--heartbeat", &beat}};
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            fputs(USAGE, stdout);
            return 0;
        }
        int r = 0;
        for (size_t k = 0; !r && k < sizeof opts / sizeof opts[0]; k++) {
            r = gl_opt_value(argc, argv, &i, opts[k].name, opts[k].val);
            if (r < 0)
                return usage_error("%s needs a value", opts[k].name);
        }
        if (!r)
            return usage_error("unknown option %s", argv[i]);
    }
    if (!master)
        return usage_error("%s", "--master HOST:PORT is required");
    if (!dir)
        return usage_error("%s", "--dir DIR is required");
    gl_err err = {0};
    char lhost[GL_ADDR_MAX];
    int lport;
    if (gl_opt_hostport(master, A.master_host, sizeof A.master_host, &A.master_port, &err))
        return usage_error("--master: %s", err.msg);
    if (gl_opt_hostport(listen, lhost, sizeof lhost, &lport, &err))
        return usage_error("--listen: %s", err.msg);
    snprintf(A.master_addr, sizeof A.master_addr, "%s", master);
    uint64_t v;
    A.self.cores = uv_available_parallelism();
    if (cores) {
        if (gl_opt_uint(cores, 1, 4096, &v))
            return usage_error("--cores needs a whole number from 1 to 4096, got %s", cores);
        A.self.cores = (uint32_t)v;
    }
    A.self.memory = uv_get_total_memory() / 2;
    if (memory) {
        if (gl_opt_size(memory, &v, &err))
            return usage_error("--memory: %s", err.msg);
        if (!v)
            return usage_error("%s", "--memory needs a size above 0");
        A.self.memory = v;
    }
    A.self.heartbeat_ms = 1000;
    if (beat && gl_opt_seconds(beat, 0.05, 60, &A.self.heartbeat_ms))
        return usage_error("--heartbeat needs seconds from 0.05 to 60, got %s", beat);
    A.self.free_slots = A.self.cores;

    gl_log_init("agent", getenv("GLEAM_DEBUG") ? GL_LOG_DEBUG : GL_LOG_INFO);
    if (gl_secret_load(&A.secret, secret_file, &err)) {
        fprintf(stderr, "gleam agent: %s\n", err.msg);
        return 1;
    }
    if (!A.secret.set && !gl_opt_loopback(lhost)) {
        fprintf(stderr, "gleam agent: no secret (--secret-file or GLEAM_SECRET): "
                        "refusing to listen on %s, which is not a loopback address\n", listen);
        return 1;
    }
    if (make_dir(dir, &err)) {
        fprintf(stderr, "gleam agent: %s\n", err.msg);
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);
    uv_loop_init(&A.loop);
    int rc = 0;
    if (gl_listen(&A.loop, &A.server, lhost, lport, on_connection, A.self.addr, sizeof A.self.addr, &err)) {
        gl_log(GL_LOG_ERROR, "%s", err.msg);
        rc = 1;
    } else {
        struct sockaddr_storage ss;
        int len = sizeof ss;
        uv_tcp_getsockname(&A.server, (struct sockaddr *)&ss, &len);
        A.listen_port = ntohs(ss.ss_family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port
                                                      : ((struct sockaddr_in6 *)&ss)->sin6_port);
        A.wildcard = !strcmp(lhost, "0.0.0.0") || !strcmp(lhost, "::");
        char mem[32];
        gl_log(GL_LOG_INFO, "listening on %s; %u cores, %s memory, data in %s; %s", A.self.addr, A.self.cores,
               gl_fmt_bytes(A.self.memory, mem, sizeof mem), dir,
               A.secret.set ? "secret configured"
                            : "no secret configured (--secret-file or GLEAM_SECRET), so loopback only");
        uv_timer_init(&A.loop, &A.beat);
        uv_timer_start(&A.beat, on_beat, 0, A.self.heartbeat_ms);
        uv_signal_init(&A.loop, &A.sigint);
        uv_signal_init(&A.loop, &A.sigterm);
        uv_signal_start(&A.sigint, on_signal, SIGINT);
        uv_signal_start(&A.sigterm, on_signal, SIGTERM);
        while (uv_is_active((uv_handle_t *)&A.sigint) && uv_run(&A.loop, UV_RUN_ONCE))
            ;
    }
    gl_loop_drain(&A.loop);
    return rc;
}
