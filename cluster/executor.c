/* executor.c: `gleam executor`, started by an agent for one task.
 *
 * Its control channel is the pipe pair the agent made: one task frame on
 * stdin (then end of file), one done frame on stdout, both through the
 * wire module. Nothing else may reach that stdout, so the frames go to a
 * private copy of the descriptor and fd 1 becomes stderr: a user function
 * that prints writes to the agent's log instead of corrupting the channel.
 * No socket and no handshake: only the agent that spawned the executor
 * holds the pipes. The task runs in the driver's kind of Lua state, the
 * one main.c made: a stage task (stage.h) through the engine's task
 * runtime, a function call through gleam.executor. */
#include "cluster.h"

#include "stage.h"
#include "wire.h"

#include <errno.h>
#include <fcntl.h>
#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

int gl_executor_main(lua_State *L, int argc, char **argv)
{
    if (argc > 1) {
        fprintf(stderr, "gleam executor: takes no arguments; it is started by `gleam agent`, "
                        "which sends its task on stdin\n");
        return 2;
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
        /* a stage task: the engine's task runtime, in C (stage.c) */
        lua_getglobal(L, "package");
        lua_getfield(L, -1, "path");
        lua_getfield(L, -2, "cpath");
        gl_err terr = {0};
        /* the agent's share of its memory for each executor (agent.c) */
        const char *mem = getenv("GLEAM_EXECUTOR_MEMORY");
        uint64_t budget = mem ? strtoull(mem, NULL, 10) : 0;
        int trc = gl_stage_exec(task.payload, task.npayload, budget, lua_tostring(L, -2), lua_tostring(L, -1),
                                &result, &terr);
        lua_pop(L, 3);
        done.ok = trc == 0;
        if (done.ok) {
            done.payload = result.data;
            done.npayload = result.len;
        } else {
            snprintf(done.text, sizeof done.text, "%.*s", (int)sizeof done.text - 1, terr.msg);
        }
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
