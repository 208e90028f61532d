/* executor.c: `gleam executor`, started by an agent for one task.
 *
 * Its control channel is the pipe pair the agent made: one task frame on
 * stdin (then end of file), and on stdout the task's output as chunk
 * frames (puts, which the agent keeps as this task's shard) and then one
 * done frame, all through the wire module. Nothing else may reach that
 * stdout, so the frames go to a private copy of the descriptor and fd 1
 * becomes stderr: a user function that prints writes to the agent's log
 * instead of corrupting the channel. The writes block while the agent is
 * behind, which is the puts' back pressure. Only the agent that spawned
 * the executor holds the pipes.
 *
 * The task runs in the driver's kind of Lua state, the one main.c made: a
 * function call through gleam.executor, or a stage task (stage.h) through
 * the engine's task runtime. A stage task first fetches its input
 * partitions from the agents holding them (fetch.h, in role "executor",
 * with the secret the agent passed down: GLEAM_SECRET, or the file named
 * by GLEAM_SECRET_FILE) into its own store, which keeps within
 * GLEAM_EXECUTOR_MEMORY and spills under $TMPDIR; its done then reports
 * each output partition's rows and bytes, its key sample, widest row and
 * skipped lines. A task that failed because an input could not be fetched
 * says which agent failed it (done's lost), so the driver can tell a lost
 * agent from a failing task. */
#include "cluster.h"

#include "fetch.h"
#include "stage.h"
#include "stream.h"
#include "wire.h"

#include <errno.h>
#include <fcntl.h>
#include <lauxlib.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

static int write_all(int fd, const uint8_t *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Reads stdin to its end (at most one frame's worth) and decodes one task. */
static int read_task(gl_msg *m, gl_err *err)
{
    gl_wire_reader r = {0};
    uint8_t buf[64 << 10];
    int rc = 0;
    for (;;) {
        ssize_t n = read(0, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = gl_err_set(err, GL_EIO, "reading the task: %s", strerror(errno));
            break;
        }
        if (n == 0)
            break;
        if ((rc = gl_wire_feed(&r, buf, (size_t)n, err)))
            break;
        if (gl_wire_pending(&r) > GL_WIRE_MAX + 4u) {
            rc = gl_err_set(err, GL_EINVAL, "reading the task: more than one frame");
            break;
        }
    }
    if (!rc) {
        rc = gl_wire_next(&r, m, err);
        if (rc == 0)
            rc = gl_err_set(err, GL_EINVAL, "reading the task: the input ended before a whole frame");
        else if (rc == 1 && m->type != GL_MSG_TASK) {
            gl_msg_free(m);
            rc = gl_err_set(err, GL_EINVAL, "reading the task: a %s message instead", gl_msg_name(m->type));
        } else if (rc == 1 && gl_wire_pending(&r)) {
            gl_msg_free(m);
            rc = gl_err_set(err, GL_EINVAL, "reading the task: bytes after the task");
        } else if (rc == 1) {
            rc = 0;
        }
    }
    gl_wire_reader_free(&r);
    return rc;
}

/* Writes the task's output partitions to fd as chunk frames. */
static int put_output(int fd, gl_stage_run *r, uint64_t job, gl_err *err)
{
    uint32_t stage, task;
    const gl_output *o = gl_stage_output(r, &stage, &task);
    gl_buf frame = {0};
    int rc = 0;
    for (uint32_t part = 0; part < o->nparts && !rc; part++) {
        gl_stream_out s;
        if ((rc = gl_stream_out_open(&s, o, part, err)))
            break;
        gl_msg m;
        memset(&m, 0, sizeof m);
        m.type = GL_MSG_CHUNK;
        m.job = job;
        m.stage = stage;
        m.task = task;
        m.part = part;
        const uint8_t *p;
        int k;
        while (!rc && (k = gl_stream_out_next(&s, &p, &m.npayload, &m.nrows, err)) == 1) {
            m.payload = (uint8_t *)p;
            frame.len = 0;
            if (!(rc = gl_wire_encode(&frame, &m, err)) && write_all(fd, frame.data, frame.len))
                rc = gl_err_set(err, GL_EIO, "executor: writing its output to the agent: %s", strerror(errno));
        }
        if (!rc && k < 0)
            rc = k;
        gl_stream_out_close(&s);
    }
    gl_buf_free(&frame);
    return rc;
}

/* Fetches the task's inputs: 0, or an error, with the agent that failed
 * it in lost. SIGPIPE is ignored meanwhile (a write to an agent that went
 * away is an error, not the end), and restored for the task's own code. */
static int fetch_inputs(gl_stage_run *r, uint64_t job, char *lost, size_t lostmax, gl_err *err)
{
    uint32_t nf, na;
    const gl_fetch_req *f = gl_stage_fetches(r, &nf);
    const char *const *agents = gl_stage_agents(r, &na);
    if (!nf)
        return 0;
    gl_secret secret;
    int rc = gl_secret_load(&secret, getenv("GLEAM_SECRET_FILE"), err);
    if (rc)
        return rc;
    struct sigaction ign = {.sa_handler = SIG_IGN}, old;
    sigaction(SIGPIPE, &ign, &old);
    rc = gl_fetch_run(&secret, "executor", job, agents, f, nf, lost, lostmax, err);
    sigaction(SIGPIPE, &old, NULL);
    return rc;
}

/* Runs a stage task: done gets its outcome, result its payload. */
static void stage_task(lua_State *L, const gl_msg *task, int out, gl_msg *done, gl_buf *result)
{
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "path");
    lua_getfield(L, -2, "cpath");
    gl_err terr = {0};
    /* the agent's share of its memory for each executor (agent.c) */
    const char *mem = getenv("GLEAM_EXECUTOR_MEMORY");
    uint64_t budget = mem ? strtoull(mem, NULL, 10) : 0;
    gl_stage_run *r = NULL;
    int trc = gl_stage_open(task->payload, task->npayload, budget, &r, &terr);
    if (!trc && (trc = fetch_inputs(r, task->job, done->lost, sizeof done->lost, &terr))) {
        char why[sizeof terr.msg];
        memcpy(why, terr.msg, sizeof why);
        gl_err_set(&terr, trc, "executor: fetching the task's input: %s", why);
    }
    if (!trc)
        trc = gl_stage_exec(r, lua_tostring(L, -2), lua_tostring(L, -1), &terr);
    if (!trc)
        trc = put_output(out, r, task->job, &terr);
    if (!trc)
        trc = gl_stage_result(r, result, &terr);
    lua_pop(L, 3);
    gl_stage_close(r);
    done->ok = trc == 0;
    if (done->ok) {
        done->payload = result->data;
        done->npayload = result->len;
    } else {
        snprintf(done->text, sizeof done->text, "%.*s", (int)sizeof done->text - 1, terr.msg);
    }
}

int gl_executor_main(lua_State *L, int argc, char **argv)
{
    if (argc > 1) {
        fprintf(stderr, "gleam executor: takes no arguments; it is started by `gleam agent`, "
                        "which sends its task on stdin\n");
        return 2;
    }
    /* An agent killed outright (kill -9, a crash) can't stop its
     * executors; the kernel does, when this process's parent dies. The
     * agent may have died before this call: then our parent is no longer
     * the pid it gave us. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    const char *agent = getenv("GLEAM_AGENT_PID");
    if (agent && (long)getppid() != strtol(agent, NULL, 10)) {
        fprintf(stderr, "gleam executor: its agent (pid %s) is gone\n", agent);
        return 1;
    }
    /* close-on-exec: a process the task starts must not hold the channel
     * open, or the agent would not see its end when the executor exits */
    int out = fcntl(1, F_DUPFD_CLOEXEC, 3);
    if (out < 0 || dup2(2, 1) < 0) {
        fprintf(stderr, "gleam executor: cannot set up stdout: %s\n", strerror(errno));
        return 1;
    }
    gl_msg task;
    gl_err err = {0};
    if (read_task(&task, &err)) {
        fprintf(stderr, "gleam executor: %s\n", err.msg);
        close(out);
        return 1;
    }
    gl_msg done;
    memset(&done, 0, sizeof done);
    done.type = GL_MSG_DONE;
    done.job = task.job;
    done.task = task.task;

    gl_buf result = {0};
    if (gl_stage_task_is(task.payload, task.npayload)) {
        stage_task(L, &task, out, &done, &result);
        goto send;
    }
    lua_getglobal(L, "require");
    lua_pushstring(L, "gleam.executor");
    if (lua_pcall(L, 1, 1, 0)) {
        snprintf(done.text, sizeof done.text, "executor: %.400s", lua_tostring(L, -1));
    } else {
        lua_getfield(L, -1, "run");
        lua_pushlstring(L, (const char *)task.payload, task.npayload);
        if (lua_pcall(L, 1, 2, 0)) {
            snprintf(done.text, sizeof done.text, "executor: %.400s", lua_tostring(L, -1));
        } else {
            size_t n = 0;
            const char *s = lua_tolstring(L, -1, &n);
            done.ok = lua_toboolean(L, -2);
            if (done.ok) {
                done.payload = (uint8_t *)s;
                done.npayload = n;
            } else {
                /* cut to fit a log line */
                snprintf(done.text, sizeof done.text, "%.*s", (int)sizeof done.text - 1, s ? s : "?");
            }
        }
    }
send:;
    gl_buf b = {0};
    int rc = gl_wire_encode(&b, &done, &err);
    if (rc) {
        /* a result over the frame bound: report that instead */
        done.payload = NULL;
        done.npayload = 0;
        done.ok = false;
        snprintf(done.text, sizeof done.text, "executor: the result does not fit a frame: %.400s", err.msg);
        rc = gl_wire_encode(&b, &done, &err);
    }
    if (!rc && write_all(out, b.data, b.len))
        fprintf(stderr, "gleam executor: writing the result: %s\n", strerror(errno));
    gl_buf_free(&b);
    gl_buf_free(&result);
    gl_msg_free(&task);
    close(out);
    return rc ? 1 : 0;
}
