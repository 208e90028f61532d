/* session.c: the session connections of a driver process (session.h).
 *
 * The loop is made on first use and never closed; its handles are the
 * session connections and one deadline timer, armed only while a call
 * waits. A connection that closes (the agent went, or a call gave up on
 * it) leaves its entry, with c NULL, so the next keep to that agent opens
 * a new one; what the old one kept is gone with it, which is how the
 * driver learns that those shards must be made again. */
#include "session.h"

#include "conn.h"
#include "opt.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct sconn {
    char addr[GL_ADDR_MAX];
    gl_conn *c;          /* NULL once closed */
    bool ready, acked;
    uint64_t job;        /* the keep awaited */
    uint32_t stage;
    char why[GL_TEXT_MAX + 128]; /* why it closed */
    struct sconn *next;
} sconn;

static struct {
    pthread_mutex_t mu;
    bool init;
    uv_loop_t loop;
    uv_timer_t deadline;
    bool expired;
    gl_secret secret;
    sconn *conns;
} S = {.mu = PTHREAD_MUTEX_INITIALIZER};

static void on_ready(gl_conn *c) { ((sconn *)c->data)->ready = true; }

static void on_msg(gl_conn *c, gl_msg *m)
{
    sconn *sc = c->data;
    if (m->type == GL_MSG_KEEP && m->job == sc->job && m->stage == sc->stage)
        sc->acked = true;
    else
        gl_conn_close(c, "unexpected %s message from agent %s", gl_msg_name(m->type), sc->addr);
}

static void on_closed(gl_conn *c, const char *why, bool was_ready)
{
    sconn *sc = c->data;
    sc->c = NULL;
    sc->ready = false;
    snprintf(sc->why, sizeof sc->why, "%s", why);
}

static const gl_conn_cb session_cb = {on_ready, on_msg, on_closed, NULL};

static void on_deadline(uv_timer_t *t) { S.expired = true; }

/* Under the lock: the loop, the first time. 0 or an error. */
static int start(gl_err *err)
{
    if (S.init)
        return 0;
    int rc = gl_secret_load(&S.secret, NULL, err);
    if (rc)
        return rc;
    uv_loop_init(&S.loop);
    uv_timer_init(&S.loop, &S.deadline);
    S.init = true;
    return 0;
}

/* Runs the loop until *flag is set, sc's connection closes, or
 * GL_SESSION_MS pass (then it is closed). */
static void wait_for(sconn *sc, const bool *flag)
{
    S.expired = false;
    uv_timer_start(&S.deadline, on_deadline, GL_SESSION_MS, 0);
    while (sc->c && !*flag && !S.expired)
        uv_run(&S.loop, UV_RUN_ONCE);
    uv_timer_stop(&S.deadline);
    if (sc->c && !*flag) {
        gl_conn_close(sc->c, "agent %s did not answer within %d s", sc->addr, GL_SESSION_MS / 1000);
        while (sc->c)
            uv_run(&S.loop, UV_RUN_ONCE);
    }
}

/* Notices connections closed since the last call (their agents gone). */
static void poll_closed(void)
{
    uv_run(&S.loop, UV_RUN_NOWAIT);
    uv_run(&S.loop, UV_RUN_NOWAIT);
}

static sconn *find(const char *addr)
{
    for (sconn *sc = S.conns; sc; sc = sc->next)
        if (!strcmp(sc->addr, addr))
            return sc;
    return NULL;
}

/* The lock, with SIGPIPE ignored: a write to an agent just gone is an
 * error on its connection, not the end of the process. */
static void enter(struct sigaction *old)
{
    pthread_mutex_lock(&S.mu);
    struct sigaction ign = {.sa_handler = SIG_IGN};
    sigaction(SIGPIPE, &ign, old);
}

static void leave(const struct sigaction *old)
{
    sigaction(SIGPIPE, old, NULL);
    pthread_mutex_unlock(&S.mu);
}

int gl_session_keep(const char *addr, uint64_t job, uint32_t stage, gl_err *err)
{
    struct sigaction old;
    enter(&old);
    int rc = start(err);
    sconn *sc = rc ? NULL : find(addr);
    if (!rc && !sc) {
        if (!(sc = calloc(1, sizeof *sc))) {
            rc = gl_err_set(err, GL_ENOMEM, "driver: out of memory");
        } else {
            snprintf(sc->addr, sizeof sc->addr, "%s", addr);
            sc->next = S.conns;
            S.conns = sc;
        }
    }
    if (!rc) {
        poll_closed();
        char host[GL_ADDR_MAX];
        int port;
        if (!sc->c && !(rc = gl_opt_hostport(addr, host, sizeof host, &port, err))) {
            snprintf(sc->why, sizeof sc->why, "out of memory");
            sc->c = gl_conn_connect(&S.loop, host, port, &S.secret, "driver", &session_cb, sc);
        }
        if (!rc)
            wait_for(sc, &sc->ready);
    }
    if (!rc && sc->c) {
        gl_msg m;
        memset(&m, 0, sizeof m);
        m.type = GL_MSG_KEEP;
        m.job = sc->job = job;
        m.stage = sc->stage = stage;
        sc->acked = false;
        if (!gl_conn_send(sc->c, &m))
            wait_for(sc, &sc->acked);
    }
    if (!rc && (!sc->c || !sc->acked))
        rc = gl_err_set(err, GL_EIO, "cluster: agent %s can't keep a cached dataset's shards: %s", addr, sc->why);
    leave(&old);
    return rc;
}

bool gl_session_alive(const char *addr)
{
    struct sigaction old;
    enter(&old);
    bool alive = false;
    if (S.init) {
        poll_closed();
        sconn *sc = find(addr);
        alive = sc && sc->c && sc->ready;
    }
    leave(&old);
    return alive;
}

void gl_session_unkeep(const char *addr, uint64_t job, uint32_t stage)
{
    struct sigaction old;
    enter(&old);
    sconn *sc = S.init ? find(addr) : NULL;
    if (sc)
        poll_closed();
    if (sc && sc->c && sc->ready) {
        gl_msg m;
        memset(&m, 0, sizeof m);
        m.type = GL_MSG_UNKEEP;
        m.job = job;
        m.stage = stage;
        if (!gl_conn_send(sc->c, &m)) {
            /* written when the socket takes it: usually at once */
            S.expired = false;
            uv_timer_start(&S.deadline, on_deadline, GL_SESSION_MS, 0);
            while (sc->c && gl_conn_queued(sc->c) && !S.expired)
                uv_run(&S.loop, UV_RUN_ONCE);
            uv_timer_stop(&S.deadline);
        }
    }
    leave(&old);
}
