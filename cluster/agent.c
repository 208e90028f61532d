/* agent.c: `gleam agent`, one per machine.
 *
 * It serves on its own address (--listen) and keeps one connection to the
 * master, over which it heartbeats every interval: its address, cores,
 * memory, free executor slots and the bytes of shards it holds. The first
 * heartbeat registers it. When the master can't be reached or goes away,
 * the agent tries again every interval, so a restarted master has it back
 * within one interval of coming up; it logs each change of that state
 * once, not each attempt. On its own port it answers status with itself.
 *
 * A driver (a peer in role "driver") sends tasks; each runs in its own
 * `gleam executor` process (uv_spawn), at most --cores at once, the rest
 * queued in arrival order. The task goes to the executor's stdin; on its
 * stdout come the task's output partitions as chunk messages, which the
 * agent writes into a pending shard (shard.h), then its done message. A
 * successful done commits the shard (it must count the rows received) and
 * goes on to the driver; an executor that ended without one (crashed,
 * killed) leaves no shard, and the driver gets a done that says how it
 * ended.
 *
 * The agent keeps its shards, one store for all, until their job ends,
 * and streams them to executors of other agents and to drivers that fetch
 * them, with back pressure (shard.h). A job's shards go when its driver
 * says drop, or when that driver's connection ends, which also drops its
 * queued tasks and kills its executors. The shards of a cached dataset
 * outlive their job: the driver's process says keep for them over its
 * session connection (a driver connection that sends no tasks: session.h),
 * and they go when it says unkeep (ds:uncache()) or that connection ends,
 * which is when the driver's process ends, however it ends: the kernel
 * closes a killed process's sockets. A task of an on_disk() dataset says
 * so, and its shard is written to LMDB.
 *
 * --memory is split in two halves: the shards keep their rows in memory
 * within one (the store's rule: half its budget of --memory) and spill to
 * LMDB under DIR/shards past it; the running executors share the other,
 * each with --memory / 2 / --cores as its store's budget (fetched inputs,
 * operators, output), spilling under DIR/tmp. Both directories are cleared
 * at start: a killed agent's data belongs to jobs that are over. */
#define _GNU_SOURCE
#include "cluster.h"

#include "conn.h"
#include "log.h"
#include "opt.h"
#include "shard.h"
#include "task.h"

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
    "and reconnects when the master restarts. It runs the tasks drivers send\n"
    "in `gleam executor` processes, at most --cores at once, keeps the shards\n"
    "they write until their job ends (memory, then LMDB under DIR/shards), or\n"
    "while their driver's process lives for a cached dataset, and serves them\n"
    "to the executors and drivers that fetch them. Logs go to stderr.\n"
    "Stops on SIGINT or SIGTERM.\n"
    "\n"
    "options:\n"
    "  --master HOST:PORT    the master to join (required)\n"
    "  --dir DIR             where the agent keeps its data (required; made if missing)\n"
    "  --listen HOST:PORT    address to serve on (default 127.0.0.1:45327; port 0\n"
    "                        picks a free one, logged at start)\n"
    "  --cores N             executor slots: executors run at once (default: the\n"
    "                        CPUs this process may use)\n"
    "  --memory SIZE         memory, e.g. 512M or 16G (default: half the RAM): the\n"
    "                        shards held keep within SIZE / 2 and spill to LMDB\n"
    "                        under DIR/shards past it; each executor's budget is\n"
    "                        SIZE / 2 / --cores, past which it spills under DIR/tmp\n"
    "  --heartbeat SECONDS   heartbeat interval, 0.05 to 60 (default 1)\n"
    "  --secret-file FILE    the cluster's shared secret (default: the environment\n"
    "                        variable GLEAM_SECRET); without one, only a loopback\n"
    "                        address may be used\n"
    "  -h, --help            show this help\n";

/* A task, queued or running in an executor process. */
typedef struct gl_exec {
    uv_process_t proc;
    uv_pipe_t in, out;       /* the executor's stdin and stdout */
    gl_wire_reader rd;
    gl_conn *driver;         /* who asked; NULL once it is gone */
    uint64_t job, task;
    gl_shard_put *put;       /* the shard its chunks go to (a stage task), until done */
    gl_buf frame;            /* the task frame, until written */
    gl_msg done;             /* what the executor answered, if have_done */
    bool have_done, exited;
    int64_t status;
    int signal, handles;
    struct gl_exec *next;
} gl_exec;

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
    gl_exec *queue, *queue_tail;      /* tasks waiting for a slot, in arrival order */
    gl_exec *running;
    uint32_t nrunning;
    char exe[4096];                   /* this program, which executors run */
    char **exec_env;                  /* the executors' environment (exec_env_make) */
    gl_shards *shards;
} A;

extern char **environ;

/* The variables exec_env_make sets for executors (and frees). */
static bool ours(const char *v)
{
    return !strncmp(v, "TMPDIR=", 7) || !strncmp(v, "GLEAM_EXECUTOR_MEMORY=", 22) ||
           !strncmp(v, "GLEAM_SECRET_FILE=", 18) || !strncmp(v, "GLEAM_AGENT_PID=", 16);
}

/* The executors' environment: ours, with TMPDIR set to DIR/tmp (where an
 * executor's store spills; cleared at start, as a killed executor leaves
 * its files), GLEAM_EXECUTOR_MEMORY to their half of this agent's memory
 * over its cores, so executors running at once keep within it together,
 * and GLEAM_SECRET_FILE naming the secret file when there is one (else
 * they have GLEAM_SECRET as we do), for fetching from other agents, and
 * GLEAM_AGENT_PID, so an executor can tell it outlived us (executor.c).
 * 0, or an error in err. */
static int exec_env_make(const char *dir, const char *secret_file, gl_err *err)
{
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s/tmp", dir);
    if (gl_save_remove(tmp, err))
        return err->code;
    if (mkdir(tmp, 0700) && errno != EEXIST)
        return gl_err_set(err, GL_EIO, "cannot make %s: %s", tmp, strerror(errno));
    char secret[PATH_MAX];
    if (secret_file && !realpath(secret_file, secret))
        return gl_err_set(err, GL_EIO, "--secret-file %s: %s", secret_file, strerror(errno));
    size_t n = 0;
    while (environ[n])
        n++;
    if (!(A.exec_env = calloc(n + 5, sizeof *A.exec_env)))
        return gl_err_set(err, GL_ENOMEM, "out of memory");
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (!ours(environ[i]))
            A.exec_env[k++] = environ[i];
    if (asprintf(&A.exec_env[k++], "TMPDIR=%s", tmp) < 0 ||
        asprintf(&A.exec_env[k++], "GLEAM_EXECUTOR_MEMORY=%llu",
                 (unsigned long long)(A.self.memory / 2 / (A.self.cores ? A.self.cores : 1))) < 0 ||
        asprintf(&A.exec_env[k++], "GLEAM_AGENT_PID=%ld", (long)getpid()) < 0 ||
        (secret_file && asprintf(&A.exec_env[k++], "GLEAM_SECRET_FILE=%s", secret) < 0))
        return gl_err_set(err, GL_ENOMEM, "out of memory");
    return 0;
}

static void start_queued(void);

static void send_heartbeat(void)
{
    gl_msg m;
    memset(&m, 0, sizeof m);
    m.type = GL_MSG_HEARTBEAT;
    m.agent = A.self;
    m.agent.free_slots = A.self.cores - A.nrunning;
    m.agent.stored = gl_shards_stored(A.shards);
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

static const gl_conn_cb master_cb = {master_ready, master_msg, master_closed, NULL};

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

/* ---- executors ---- */

static void exec_free(gl_exec *e)
{
    gl_shard_put_abort(e->put); /* not committed: no done, or a failed one */
    gl_buf_free(&e->frame);
    gl_wire_reader_free(&e->rd);
    gl_msg_free(&e->done);
    free(e);
}

/* Every handle of e is closed: pass on how the task ended, free a slot. */
static void exec_finish(gl_exec *e)
{
    for (gl_exec **p = &A.running; *p; p = &(*p)->next)
        if (*p == e) {
            *p = e->next;
            break;
        }
    A.nrunning--;
    gl_msg done;
    memset(&done, 0, sizeof done);
    if (e->have_done) {
        done = e->done;
    } else {
        done.type = GL_MSG_DONE;
        done.job = e->job;
        done.task = e->task;
        if (e->signal)
            snprintf(done.text, sizeof done.text, "the executor of task %llu was killed by signal %d",
                     (unsigned long long)e->task, e->signal);
        else
            snprintf(done.text, sizeof done.text, "the executor of task %llu exited with status %lld and no result",
                     (unsigned long long)e->task, (long long)e->status);
    }
    done.job = e->job;
    done.task = e->task;
    if (done.ok)
        gl_log(GL_LOG_INFO, "task %llu of job %llu done", (unsigned long long)e->task, (unsigned long long)e->job);
    else
        gl_log(GL_LOG_WARN, "task %llu of job %llu failed: %s", (unsigned long long)e->task,
               (unsigned long long)e->job, done.text);
    if (e->driver)
        gl_conn_send(e->driver, &done);
    exec_free(e);
    start_queued();
}

static void exec_closed(uv_handle_t *h)
{
    gl_exec *e = h->data;
    if (--e->handles == 0)
        exec_finish(e);
}

static void exec_close_pipe(uv_pipe_t *p)
{
    if (!uv_is_closing((uv_handle_t *)p))
        uv_close((uv_handle_t *)p, exec_closed);
}

static void on_exec_exit(uv_process_t *proc, int64_t status, int signal)
{
    gl_exec *e = proc->data;
    e->exited = true;
    e->status = status;
    e->signal = signal;
    uv_close((uv_handle_t *)proc, exec_closed);
}

static void kill_exec(gl_exec *e, const char *why)
{
    if (!e->exited && uv_process_kill(&e->proc, SIGKILL) == 0)
        gl_log(GL_LOG_WARN, "task %llu of job %llu: killed its executor (pid %d): %s", (unsigned long long)e->task,
               (unsigned long long)e->job, e->proc.pid, why);
}

static void exec_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    static char rbuf[64 << 10]; /* consumed by exec_read before the next read */
    *buf = uv_buf_init(rbuf, sizeof rbuf);
}

/* A done from e's executor: a successful one commits its shard, which
 * must hold what the done counts; a failed one, or one whose driver is
 * gone, drops it. */
static void exec_done(gl_exec *e, gl_msg *m)
{
    e->done = *m;
    e->have_done = true;
    if (!e->put)
        return;
    gl_err err = {0};
    if (m->ok && e->driver && gl_shard_put_commit(e->put, m->payload, m->npayload, &err)) {
        e->done.ok = false;
        snprintf(e->done.text, sizeof e->done.text, "agent %.200s: task %llu: %.250s", A.self.addr,
                 (unsigned long long)e->task, err.msg);
    } else if (!m->ok || !e->driver) {
        gl_shard_put_abort(e->put);
    }
    e->put = NULL; /* committed (which frees the put) or aborted */
}

static void exec_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    gl_exec *e = s->data;
    if (n < 0) {
        exec_close_pipe(&e->out); /* the end, or an error: either way the exit says the rest */
        return;
    }
    gl_err err = {0};
    int rc = n > 0 ? gl_wire_feed(&e->rd, buf->base, (size_t)n, &err) : 0;
    gl_msg m;
    while (!rc && (rc = gl_wire_next(&e->rd, &m, &err)) == 1) {
        rc = 0;
        if (m.type == GL_MSG_CHUNK && e->put && !e->have_done && m.job == e->job &&
            ((uint64_t)m.stage << 32 | m.task) == e->task) {
            rc = gl_shard_put_rows(e->put, m.part, m.payload, m.npayload, m.nrows, &err);
            gl_msg_free(&m);
        } else if (m.type == GL_MSG_DONE && !e->have_done) {
            exec_done(e, &m); /* e->done owns what m did */
        } else {
            gl_msg_free(&m);
            rc = gl_err_set(&err, GL_EINVAL, "unexpected %s message", gl_msg_name(m.type));
        }
    }
    if (rc < 0) {
        kill_exec(e, err.msg);
        exec_close_pipe(&e->out);
    }
}

static void on_task_written(uv_write_t *req, int status)
{
    gl_exec *e = req->data;
    free(req);
    gl_buf_free(&e->frame);
    exec_close_pipe(&e->in); /* the end of stdin tells the executor the task is whole */
}

/* Starts e's executor; e is on the running list. */
static void exec_spawn(gl_exec *e)
{
    char *args[] = {A.exe, "executor", NULL};
    uv_stdio_container_t stdio[3];
    uv_pipe_init(&A.loop, &e->in, 0);
    uv_pipe_init(&A.loop, &e->out, 0);
    e->in.data = e->out.data = e->proc.data = e;
    stdio[0].flags = UV_CREATE_PIPE | UV_READABLE_PIPE;
    stdio[0].data.stream = (uv_stream_t *)&e->in;
    stdio[1].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
    stdio[1].data.stream = (uv_stream_t *)&e->out;
    stdio[2].flags = UV_INHERIT_FD;
    stdio[2].data.fd = 2;
    uv_process_options_t o;
    memset(&o, 0, sizeof o);
    o.file = A.exe;
    o.args = args;
    o.env = A.exec_env;
    o.exit_cb = on_exec_exit;
    o.stdio = stdio;
    o.stdio_count = 3;
    e->handles = 3;
    int r = uv_spawn(&A.loop, &e->proc, &o);
    if (r) {
        e->exited = true;
        e->status = -1;
        gl_log(GL_LOG_ERROR, "cannot start an executor (%s executor): %s", A.exe, uv_strerror(r));
        uv_close((uv_handle_t *)&e->proc, exec_closed);
        exec_close_pipe(&e->in);
        exec_close_pipe(&e->out);
        return;
    }
    gl_log(GL_LOG_INFO, "task %llu of job %llu: executor pid %d started", (unsigned long long)e->task,
           (unsigned long long)e->job, e->proc.pid);
    uv_read_start((uv_stream_t *)&e->out, exec_alloc, exec_read);
    uv_write_t *req = malloc(sizeof *req);
    uv_buf_t b = uv_buf_init((char *)e->frame.data, (unsigned)e->frame.len);
    if (!req || uv_write(req, (uv_stream_t *)&e->in, &b, 1, on_task_written)) {
        free(req);
        kill_exec(e, "cannot write its task");
        exec_close_pipe(&e->in);
        return;
    }
    req->data = e;
}

static void start_queued(void)
{
    while (A.queue && A.nrunning < A.self.cores && uv_is_active((uv_handle_t *)&A.sigint)) {
        gl_exec *e = A.queue;
        A.queue = e->next;
        if (!A.queue)
            A.queue_tail = NULL;
        e->next = A.running;
        A.running = e;
        A.nrunning++;
        exec_spawn(e);
    }
}

/* Queues a driver's task. */
static void add_task(gl_conn *c, const gl_msg *m)
{
    gl_exec *e = calloc(1, sizeof *e);
    gl_err err = {0};
    if (!e || gl_wire_encode(&e->frame, m, &err)) {
        if (e)
            exec_free(e);
        gl_conn_refuse(c, "the agent is out of memory");
        return;
    }
    e->driver = c;
    e->job = m->job;
    e->task = m->task;
    e->rd.max = GL_WIRE_MAX;
    if (m->parts && (gl_shards_owner(A.shards, c, m->job, &err) ||
                     !(e->put = gl_shard_put_new(A.shards, m->job, (uint32_t)(m->task >> 32), (uint32_t)m->task,
                                                 m->parts, m->disk, &err)))) {
        exec_free(e);
        gl_conn_refuse(c, "the agent is out of memory");
        return;
    }
    if (A.queue_tail)
        A.queue_tail->next = e;
    else
        A.queue = e;
    A.queue_tail = e;
    start_queued();
}

/* The driver c is gone: its queued tasks go, its executors are killed. */
static void drop_driver(gl_conn *c)
{
    for (gl_exec **p = &A.queue; *p;) {
        gl_exec *e = *p;
        if (e->driver == c) {
            *p = e->next;
            exec_free(e);
        } else {
            p = &e->next;
        }
    }
    A.queue_tail = NULL;
    for (gl_exec *e = A.queue; e; e = e->next)
        A.queue_tail = e;
    for (gl_exec *e = A.running; e; e = e->next)
        if (e->driver == c) {
            e->driver = NULL;
            kill_exec(e, "its driver is gone");
        }
}

/* ---- the agent's own port ---- */

static void peer_msg(gl_conn *c, gl_msg *m)
{
    if (m->type == GL_MSG_STATUS) {
        gl_msg r;
        memset(&r, 0, sizeof r);
        r.type = GL_MSG_AGENTS;
        gl_agent_info self = A.self;
        self.free_slots = A.self.cores - A.nrunning;
        self.stored = gl_shards_stored(A.shards);
        r.agents = &self;
        r.nagents = 1;
        gl_conn_send(c, &r);
        return;
    }
    if (m->type == GL_MSG_TASK && !strcmp(c->hs.role, "driver")) {
        add_task(c, m);
        return;
    }
    gl_err err = {0};
    if (gl_shards_msg(A.shards, c, m, &err)) /* fetch, drop, keep, unkeep */
        gl_conn_refuse(c, err.msg);
}

static void peer_drained(gl_conn *c) { gl_shards_drained(A.shards, c); }

static void peer_closed(gl_conn *c, const char *why, bool was_ready)
{
    gl_shards_gone(A.shards, c);
    drop_driver(c);
    gl_daemon_closed(c, why, was_ready);
}

static const gl_conn_cb peer_cb = {NULL, peer_msg, peer_closed, peer_drained};

static void on_connection(uv_stream_t *server, int status)
{
    gl_daemon_accept(server, status, &A.secret, &peer_cb);
}

static void on_signal(uv_signal_t *s, int signum)
{
    gl_log(GL_LOG_INFO, "stopping (%s)", signum == SIGINT ? "SIGINT" : "SIGTERM");
    uv_close((uv_handle_t *)&A.server, NULL);
    uv_close((uv_handle_t *)&A.beat, NULL);
    uv_close((uv_handle_t *)&A.sigint, NULL);
    uv_close((uv_handle_t *)&A.sigterm, NULL);
    while (A.queue) {
        gl_exec *e = A.queue;
        A.queue = e->next;
        exec_free(e);
    }
    A.queue_tail = NULL;
    for (gl_exec *e = A.running; e; e = e->next) {
        e->driver = NULL;
        kill_exec(e, "the agent is stopping");
    }
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

static int usage_error(const char *fmt, const char *arg) { return gl_opt_usage("agent", USAGE, fmt, arg); }

int gl_agent_main(int argc, char **argv)
{
    const char *master = NULL, *dir = NULL, *listen = "127.0.0.1:45327", *secret_file = NULL;
    const char *cores = NULL, *memory = NULL, *beat = NULL;
    const gl_opt opts[] = {{"--master", &master}, {"--dir", &dir},       {"--listen", &listen},
                           {"--secret-file", &secret_file}, {"--cores", &cores}, {"--memory", &memory},
                           {"--heartbeat", &beat}};
    int rc = gl_opt_parse(argc, argv, opts, sizeof opts / sizeof opts[0], "agent", USAGE);
    if (rc >= 0)
        return rc;
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
    if (gl_daemon_secret(&A.secret, secret_file, lhost, listen, "agent"))
        return 1;
    char shards[PATH_MAX];
    snprintf(shards, sizeof shards, "%s/shards", dir);
    if (make_dir(dir, &err) || exec_env_make(dir, secret_file, &err) ||
        !(A.shards = gl_shards_new(A.self.memory, shards, &err))) {
        fprintf(stderr, "gleam agent: %s\n", err.msg);
        return 1;
    }
    size_t exelen = sizeof A.exe;
    if (uv_exepath(A.exe, &exelen)) {
        fprintf(stderr, "gleam agent: cannot find its own executable, which executors run\n");
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);
    uv_loop_init(&A.loop);
    rc = 0;
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
    for (size_t i = 0; A.exec_env && A.exec_env[i]; i++)
        if (ours(A.exec_env[i]))
            free(A.exec_env[i]); /* ours; the rest are environ's */
    free(A.exec_env);
    gl_shards_free(A.shards);
    return rc;
}
