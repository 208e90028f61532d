/* wire.c: encoding and decoding of every cluster message (wire.h).
 *
 * Bodies are written with the engine's msgpack writers and read with its
 * checked reader (engine/mpk.h), which never reads past the end it is
 * given. A decoded message holds copies, never pointers into the frame. */
#include "wire.h"

#include "mpk.h"

#include <stdlib.h>
#include <string.h>

static const char *const names[GL_MSG_TYPES] = {
    [GL_MSG_HELLO] = "hello",         [GL_MSG_AUTH] = "auth",     [GL_MSG_WELCOME] = "welcome",
    [GL_MSG_ERROR] = "error",         [GL_MSG_HEARTBEAT] = "heartbeat",
    [GL_MSG_STATUS] = "status",       [GL_MSG_AGENTS] = "agents",
    [GL_MSG_TASK] = "task",           [GL_MSG_DONE] = "done",     [GL_MSG_SLOTS] = "slots",
    [GL_MSG_CHUNK] = "chunk",         [GL_MSG_FETCH] = "fetch",   [GL_MSG_END] = "end",
    [GL_MSG_DROP] = "drop",           [GL_MSG_KEEP] = "keep",     [GL_MSG_UNKEEP] = "unkeep",
};

const char *gl_msg_name(int type)
{
    return type > 0 && type < GL_MSG_TYPES ? names[type] : "?";
}

/* ---- encoding ---- */

static int put_key(gl_buf *b, const char *k) { return gl_mpk_put_str(b, k, strlen(k)); }

static int put_kstr(gl_buf *b, const char *k, const char *v)
{
    return put_key(b, k) || gl_mpk_put_str(b, v, strlen(v)) ? -1 : 0;
}

static int put_kbytes(gl_buf *b, const char *k, const uint8_t *v, size_t n)
{
    return put_key(b, k) || gl_mpk_put_str(b, v, n) ? -1 : 0;
}

static int put_kuint(gl_buf *b, const char *k, uint64_t v)
{
    return put_key(b, k) || gl_mpk_put_uint(b, v) ? -1 : 0;
}

/* The agent's fields, without a map header: 6 pairs, 7 with age. */
static int put_agent(gl_buf *b, const gl_agent_info *a, bool age)
{
    if (put_kstr(b, "addr", a->addr) || put_kuint(b, "cores", a->cores) ||
        put_kuint(b, "slots", a->free_slots) || put_kuint(b, "memory", a->memory) ||
        put_kuint(b, "stored", a->stored) || put_kuint(b, "hb_ms", a->heartbeat_ms))
        return -1;
    return age ? put_kuint(b, "age_ms", a->age_ms) : 0;
}

static bool str_fits(const char *s, size_t cap) { return memchr(s, 0, cap) != NULL; }

int gl_wire_encode(gl_buf *out, const gl_msg *m, gl_err *err)
{
    size_t start = out->len;
    if (gl_buf_append(out, "\0\0\0\0", 4))
        return gl_err_set(err, GL_ENOMEM, "wire: out of memory encoding %s", gl_msg_name(m->type));
    int rc = -1;
    gl_buf *b = out;
    switch (m->type) {
    case GL_MSG_HELLO:
        rc = gl_mpk_put_map(b, 3) || put_kstr(b, "t", "hello") || put_kuint(b, "v", m->version) ||
             put_kbytes(b, "nonce", m->nonce, GL_NONCE_LEN);
        break;
    case GL_MSG_AUTH:
        if (!str_fits(m->role, GL_ROLE_MAX))
            goto inval;
        rc = gl_mpk_put_map(b, 4) || put_kstr(b, "t", "auth") || put_kstr(b, "role", m->role) ||
             put_kbytes(b, "nonce", m->nonce, GL_NONCE_LEN) || put_kbytes(b, "mac", m->mac, GL_MAC_LEN);
        break;
    case GL_MSG_WELCOME:
        rc = gl_mpk_put_map(b, 2) || put_kstr(b, "t", "welcome") || put_kbytes(b, "mac", m->mac, GL_MAC_LEN);
        break;
    case GL_MSG_ERROR:
        if (!str_fits(m->text, GL_TEXT_MAX))
            goto inval;
        rc = gl_mpk_put_map(b, 2) || put_kstr(b, "t", "error") || put_kstr(b, "text", m->text);
        break;
    case GL_MSG_HEARTBEAT:
        if (!str_fits(m->agent.addr, GL_ADDR_MAX))
            goto inval;
        rc = gl_mpk_put_map(b, 7) || put_kstr(b, "t", "heartbeat") || put_agent(b, &m->agent, false);
        break;
    case GL_MSG_STATUS:
        rc = gl_mpk_put_map(b, 1) || put_kstr(b, "t", "status");
        break;
    case GL_MSG_AGENTS:
        if (m->nagents > GL_AGENTS_MAX)
            goto inval;
        rc = gl_mpk_put_map(b, 2) || put_kstr(b, "t", "agents") || put_key(b, "agents") ||
             gl_mpk_put_array(b, m->nagents);
        for (uint32_t i = 0; !rc && i < m->nagents; i++) {
            if (!str_fits(m->agents[i].addr, GL_ADDR_MAX))
                goto inval;
            rc = gl_mpk_put_map(b, 7) || put_agent(b, &m->agents[i], true);
        }
        break;
    case GL_MSG_TASK:
        rc = gl_mpk_put_map(b, 4 + (m->parts > 0) + m->disk) || put_kstr(b, "t", "task") ||
             put_kuint(b, "job", m->job) || put_kuint(b, "task", m->task) ||
             put_kbytes(b, "payload", m->payload, m->npayload) || (m->parts && put_kuint(b, "parts", m->parts)) ||
             (m->disk && (put_key(b, "disk") || gl_mpk_put_bool(b, true)));
        break;
    case GL_MSG_DONE:
        if (!str_fits(m->text, GL_TEXT_MAX) || !str_fits(m->lost, GL_ADDR_MAX))
            goto inval;
        rc = gl_mpk_put_map(b, m->lost[0] ? 7 : 6) || put_kstr(b, "t", "done") || put_kuint(b, "job", m->job) ||
             put_kuint(b, "task", m->task) || put_key(b, "ok") || gl_mpk_put_bool(b, m->ok) ||
             put_kstr(b, "text", m->text) || put_kbytes(b, "payload", m->payload, m->npayload) ||
             (m->lost[0] && put_kstr(b, "lost", m->lost));
        break;
    case GL_MSG_CHUNK:
        if (m->npayload > GL_WIRE_CHUNK_MAX || m->task > UINT32_MAX)
            goto inval;
        rc = gl_mpk_put_map(b, 7) || put_kstr(b, "t", "chunk") || put_kuint(b, "job", m->job) ||
             put_kuint(b, "stage", m->stage) || put_kuint(b, "task", m->task) || put_kuint(b, "part", m->part) ||
             put_kuint(b, "nrows", m->nrows) || put_kbytes(b, "rows", m->payload, m->npayload);
        break;
    case GL_MSG_FETCH:
        if (!m->ntasks || m->ntasks > GL_FETCH_TASKS_MAX)
            goto inval;
        rc = gl_mpk_put_map(b, 5) || put_kstr(b, "t", "fetch") || put_kuint(b, "job", m->job) ||
             put_kuint(b, "stage", m->stage) || put_kuint(b, "part", m->part) || put_key(b, "tasks") ||
             gl_mpk_put_array(b, m->ntasks);
        for (uint32_t i = 0; !rc && i < m->ntasks; i++)
            rc = gl_mpk_put_uint(b, m->tasks[i]);
        break;
    case GL_MSG_END:
        if (!str_fits(m->text, GL_TEXT_MAX))
            goto inval;
        rc = gl_mpk_put_map(b, 6) || put_kstr(b, "t", "end") || put_kuint(b, "job", m->job) ||
             put_kuint(b, "stage", m->stage) || put_kuint(b, "part", m->part) || put_key(b, "ok") ||
             gl_mpk_put_bool(b, m->ok) || put_kstr(b, "text", m->text);
        break;
    case GL_MSG_DROP:
        rc = gl_mpk_put_map(b, 2) || put_kstr(b, "t", "drop") || put_kuint(b, "job", m->job);
        break;
    case GL_MSG_KEEP:
    case GL_MSG_UNKEEP:
        rc = gl_mpk_put_map(b, 3) || put_kstr(b, "t", gl_msg_name(m->type)) || put_kuint(b, "job", m->job) ||
             put_kuint(b, "stage", m->stage);
        break;
    case GL_MSG_SLOTS:
        rc = gl_mpk_put_map(b, 2) || put_kstr(b, "t", "slots") || put_kuint(b, "want", m->want);
        break;
    default:
        goto inval;
    }
    if (rc) {
        out->len = start;
        return gl_err_set(err, GL_ENOMEM, "wire: out of memory encoding %s", gl_msg_name(m->type));
    }
    size_t n = out->len - start - 4;
    if (n > GL_WIRE_MAX) {
        out->len = start;
        return gl_err_set(err, GL_EINVAL, "wire: %s message of %zu bytes is over the %u-byte frame bound",
                          gl_msg_name(m->type), n, GL_WIRE_MAX);
    }
    uint8_t *p = out->data + start;
    p[0] = (uint8_t)(n >> 24);
    p[1] = (uint8_t)(n >> 16);
    p[2] = (uint8_t)(n >> 8);
    p[3] = (uint8_t)n;
    return 0;
inval:
    out->len = start;
    return gl_err_set(err, GL_EINVAL, "wire: cannot encode a %s message: a field is out of range",
                      gl_msg_name(m->type));
}

/* ---- decoding ---- */

/* Field bits, for "which were present". */
enum {
    F_T = 1 << 0, F_V = 1 << 1, F_ROLE = 1 << 2, F_NONCE = 1 << 3, F_MAC = 1 << 4,
    F_TEXT = 1 << 5, F_ADDR = 1 << 6, F_CORES = 1 << 7, F_SLOTS = 1 << 8, F_MEMORY = 1 << 9,
    F_STORED = 1 << 10, F_HB = 1 << 11, F_AGE = 1 << 12, F_AGENTS = 1 << 13,
    F_JOB = 1 << 14, F_TASK = 1 << 15, F_OK = 1 << 16, F_PAYLOAD = 1 << 17, F_WANT = 1 << 18,
    F_PARTS = 1 << 19, F_LOST = 1 << 20, F_STAGE = 1 << 21, F_PART = 1 << 22, F_NROWS = 1 << 23,
    F_TASKS = 1 << 24,
};
#define F_AGENT (F_ADDR | F_CORES | F_SLOTS | F_MEMORY | F_STORED | F_HB)

static const unsigned required[GL_MSG_TYPES] = {
    [GL_MSG_HELLO] = F_V | F_NONCE,
    [GL_MSG_AUTH] = F_ROLE | F_NONCE | F_MAC,
    [GL_MSG_WELCOME] = F_MAC,
    [GL_MSG_ERROR] = F_TEXT,
    [GL_MSG_HEARTBEAT] = F_AGENT,
    [GL_MSG_STATUS] = 0,
    [GL_MSG_AGENTS] = F_AGENTS,
    [GL_MSG_TASK] = F_JOB | F_TASK | F_PAYLOAD,
    [GL_MSG_DONE] = F_JOB | F_TASK | F_OK | F_TEXT | F_PAYLOAD,
    [GL_MSG_SLOTS] = F_WANT,
    [GL_MSG_CHUNK] = F_JOB | F_STAGE | F_TASK | F_PART | F_NROWS | F_PAYLOAD,
    [GL_MSG_FETCH] = F_JOB | F_STAGE | F_PART | F_TASKS,
    [GL_MSG_END] = F_JOB | F_STAGE | F_PART | F_OK | F_TEXT,
    [GL_MSG_DROP] = F_JOB,
    [GL_MSG_KEEP] = F_JOB | F_STAGE,
    [GL_MSG_UNKEEP] = F_JOB | F_STAGE,
};

typedef struct dec {
    const uint8_t *end;
    gl_err *err;
} dec;

static bool key_is(const gl_mpk_head *k, const char *name)
{
    size_t n = strlen(name);
    return k->n == n && !memcmp(k->body, name, n);
}

static int bad(dec *d, const char *what, const gl_mpk_head *key)
{
    if (key)
        return gl_err_set(d->err, GL_EINVAL, "wire: malformed frame: field '%.*s' %s",
                          (int)(key->n > 32 ? 32 : key->n), (const char *)key->body, what);
    return gl_err_set(d->err, GL_EINVAL, "wire: malformed frame: %s", what);
}

/* A non-negative integer no larger than max. */
static int get_uint(dec *d, const gl_mpk_head *k, const gl_mpk_head *v, uint64_t max, uint64_t *out)
{
    if (v->cls != GL_MPK_NUM || v->num.kind == GL_NUM_DOUBLE)
        return bad(d, "is not an integer", k);
    if (v->num.kind == GL_NUM_INT && v->num.v.i < 0)
        return bad(d, "is negative", k);
    uint64_t u = v->num.kind == GL_NUM_UINT ? v->num.v.u : (uint64_t)v->num.v.i;
    if (u > max)
        return bad(d, "is out of range", k);
    *out = u;
    return 0;
}

/* A string shorter than cap with no NUL byte, copied with its NUL. */
static int get_str(dec *d, const gl_mpk_head *k, const gl_mpk_head *v, char *dst, size_t cap)
{
    if (v->cls != GL_MPK_STR)
        return bad(d, "is not a string", k);
    if (v->n >= cap)
        return bad(d, "is too long", k);
    if (memchr(v->body, 0, v->n))
        return bad(d, "holds a NUL byte", k);
    memcpy(dst, v->body, v->n);
    dst[v->n] = 0;
    return 0;
}

/* Exactly n bytes. */
static int get_bytes(dec *d, const gl_mpk_head *k, const gl_mpk_head *v, uint8_t *dst, size_t n)
{
    if (v->cls != GL_MPK_STR)
        return bad(d, "is not a byte string", k);
    if (v->n != n)
        return bad(d, "has the wrong length", k);
    memcpy(dst, v->body, n);
    return 0;
}

/* Text for a log line: cut to fit, control bytes shown as '?'. */
static int get_text(dec *d, const gl_mpk_head *k, const gl_mpk_head *v, char *dst, size_t cap)
{
    if (v->cls != GL_MPK_STR)
        return bad(d, "is not a string", k);
    size_t n = v->n < cap - 1 ? v->n : cap - 1;
    for (size_t i = 0; i < n; i++) {
        uint8_t c = v->body[i];
        dst[i] = c < 0x20 || c == 0x7f ? '?' : (char)c;
    }
    dst[n] = 0;
    return 0;
}

/* Bytes of at most max, copied (the message owns them). */
static int get_payload(dec *d, const gl_mpk_head *k, const gl_mpk_head *v, size_t max, gl_msg *m)
{
    if (v->cls != GL_MPK_STR)
        return bad(d, "is not a byte string", k);
    if (v->n > max)
        return bad(d, "is too long", k);
    if (m->payload)
        return bad(d, "appears twice", k);
    m->payload = malloc(v->n ? v->n : 1);
    if (!m->payload)
        return gl_err_set(d->err, GL_ENOMEM, "wire: out of memory for a %u-byte payload", v->n);
    memcpy(m->payload, v->body, v->n);
    m->npayload = v->n;
    return 0;
}

/* One field of an agent; *bit gets its F_ bit, 0 if the key is not one. */
static int agent_field(dec *d, const gl_mpk_head *k, const gl_mpk_head *v, gl_agent_info *a, unsigned *bit)
{
    uint64_t u = 0;
    int rc = 0;
    *bit = 0;
    if (key_is(k, "addr")) {
        *bit = F_ADDR;
        return get_str(d, k, v, a->addr, GL_ADDR_MAX);
    }
    if (key_is(k, "cores")) {
        *bit = F_CORES;
        if (!(rc = get_uint(d, k, v, UINT32_MAX, &u)))
            a->cores = (uint32_t)u;
    } else if (key_is(k, "slots")) {
        *bit = F_SLOTS;
        if (!(rc = get_uint(d, k, v, UINT32_MAX, &u)))
            a->free_slots = (uint32_t)u;
    } else if (key_is(k, "memory")) {
        *bit = F_MEMORY;
        if (!(rc = get_uint(d, k, v, UINT64_MAX, &u)))
            a->memory = u;
    } else if (key_is(k, "stored")) {
        *bit = F_STORED;
        if (!(rc = get_uint(d, k, v, UINT64_MAX, &u)))
            a->stored = u;
    } else if (key_is(k, "hb_ms")) {
        *bit = F_HB;
        if (!(rc = get_uint(d, k, v, UINT32_MAX, &u)))
            a->heartbeat_ms = (uint32_t)u;
    } else if (key_is(k, "age_ms")) {
        *bit = F_AGE;
        if (!(rc = get_uint(d, k, v, UINT64_MAX, &u)))
            a->age_ms = u;
    }
    return rc;
}

/* Reads a map header at *p (must be a map). */
static int map_head(dec *d, const uint8_t **p, uint32_t *n, const char *what)
{
    gl_mpk_head h;
    const uint8_t *q = gl_mpk_head_read(*p, d->end, &h);
    if (!q)
        return bad(d, "truncated msgpack", NULL);
    if (h.cls != GL_MPK_MAP)
        return bad(d, what, NULL);
    *n = h.n;
    *p = q;
    return 0;
}

/* Reads one key (a string) and the head of its value; *vstart is where the
 * value begins, *p moves past the value's head. */
static int pair_head(dec *d, const uint8_t **p, gl_mpk_head *k, gl_mpk_head *v, const uint8_t **vstart)
{
    const uint8_t *q = gl_mpk_head_read(*p, d->end, k);
    if (!q)
        return bad(d, "truncated msgpack", NULL);
    if (k->cls != GL_MPK_STR)
        return bad(d, "a map key is not a string", NULL);
    *vstart = q;
    q = gl_mpk_head_read(q, d->end, v);
    if (!q)
        return bad(d, "truncated msgpack", NULL);
    *p = q;
    return 0;
}

/* Moves *p past the value starting at vstart whose head has been read. */
static int skip_value(dec *d, const uint8_t **p, const uint8_t *vstart)
{
    const uint8_t *q = gl_mpk_skip(vstart, d->end);
    if (!q)
        return bad(d, "truncated or too deeply nested msgpack", NULL);
    *p = q;
    return 0;
}

/* A fetch's task numbers: 1 to GL_FETCH_TASKS_MAX integers. */
static int decode_tasks(dec *d, const gl_mpk_head *k, const gl_mpk_head *v, const uint8_t **p, gl_msg *m)
{
    if (v->cls != GL_MPK_ARRAY)
        return bad(d, "is not an array", k);
    if (!v->n)
        return bad(d, "is empty", k);
    if (v->n > GL_FETCH_TASKS_MAX || v->n > (size_t)(d->end - *p))
        return bad(d, "holds too many items", k);
    if (m->tasks)
        return bad(d, "appears twice", k);
    if (!(m->tasks = malloc(v->n * sizeof *m->tasks)))
        return gl_err_set(d->err, GL_ENOMEM, "wire: out of memory decoding %u tasks", v->n);
    m->ntasks = v->n;
    for (uint32_t i = 0; i < v->n; i++) {
        gl_mpk_head h;
        const uint8_t *q = gl_mpk_head_read(*p, d->end, &h);
        uint64_t u;
        int rc;
        if (!q)
            return bad(d, "truncated msgpack", NULL);
        if ((rc = get_uint(d, k, &h, UINT32_MAX, &u)))
            return rc;
        m->tasks[i] = (uint32_t)u;
        *p = q;
    }
    return 0;
}

static int decode_agents(dec *d, const gl_mpk_head *k, const gl_mpk_head *v, const uint8_t **p, gl_msg *m)
{
    if (v->cls != GL_MPK_ARRAY)
        return bad(d, "is not an array", k);
    if (v->n > GL_AGENTS_MAX || v->n > (size_t)(d->end - *p))
        return bad(d, "holds too many items", k);
    if (m->agents)
        return bad(d, "appears twice", k);
    m->agents = v->n ? calloc(v->n, sizeof *m->agents) : NULL;
    if (v->n && !m->agents)
        return gl_err_set(d->err, GL_ENOMEM, "wire: out of memory decoding %u agents", v->n);
    m->nagents = v->n;
    for (uint32_t i = 0; i < v->n; i++) {
        uint32_t npairs;
        int rc = map_head(d, p, &npairs, "an agent is not a map");
        if (rc)
            return rc;
        unsigned seen = 0;
        for (uint32_t j = 0; j < npairs; j++) {
            gl_mpk_head ik, iv;
            const uint8_t *vstart;
            unsigned bit;
            if ((rc = pair_head(d, p, &ik, &iv, &vstart)) ||
                (rc = agent_field(d, &ik, &iv, &m->agents[i], &bit)) || (rc = skip_value(d, p, vstart)))
                return rc;
            seen |= bit;
        }
        if ((seen & (F_AGENT | F_AGE)) != (F_AGENT | F_AGE))
            return bad(d, "an agent lacks a field", NULL);
    }
    return 0;
}

int gl_wire_decode(const uint8_t *body, size_t len, gl_msg *m, gl_err *err)
{
    memset(m, 0, sizeof *m);
    dec d = {body + len, err};
    const uint8_t *p = body;
    if (!len)
        return bad(&d, "empty frame", NULL);
    const uint8_t *whole = gl_mpk_skip(p, d.end);
    if (!whole)
        return bad(&d, "truncated or too deeply nested msgpack", NULL);
    if (whole != d.end)
        return bad(&d, "bytes after the message", NULL);
    uint32_t npairs;
    int rc = map_head(&d, &p, &npairs, "the message is not a map");
    if (rc)
        return rc;
    /* The type first, wherever it is: the other fields' meaning depends on it. */
    const uint8_t *fields = p;
    for (uint32_t i = 0; i < npairs && !m->type; i++) {
        gl_mpk_head k, v;
        const uint8_t *vstart;
        if ((rc = pair_head(&d, &p, &k, &v, &vstart)))
            return rc;
        if (key_is(&k, "t")) {
            if (v.cls != GL_MPK_STR)
                return bad(&d, "is not a string", &k);
            for (int t = 1; t < GL_MSG_TYPES; t++)
                if (v.n == strlen(names[t]) && !memcmp(v.body, names[t], v.n))
                    m->type = (enum gl_msg_type)t;
            if (!m->type)
                return gl_err_set(err, GL_EINVAL, "wire: malformed frame: unknown message type '%.*s'",
                                  (int)(v.n > 32 ? 32 : v.n), (const char *)v.body);
        }
        if ((rc = skip_value(&d, &p, vstart)))
            return rc;
    }
    if (!m->type)
        return bad(&d, "no type ('t')", NULL);
    p = fields;
    unsigned seen = 0;
    for (uint32_t i = 0; i < npairs; i++) {
        gl_mpk_head k, v;
        const uint8_t *vstart;
        unsigned bit = 0;
        uint64_t u;
        if ((rc = pair_head(&d, &p, &k, &v, &vstart)))
            goto fail;
        switch (m->type) {
        case GL_MSG_HELLO:
            if (key_is(&k, "v")) {
                bit = F_V;
                if (!(rc = get_uint(&d, &k, &v, UINT32_MAX, &u)))
                    m->version = (uint32_t)u;
            } else if (key_is(&k, "nonce")) {
                bit = F_NONCE;
                rc = get_bytes(&d, &k, &v, m->nonce, GL_NONCE_LEN);
            }
            break;
        case GL_MSG_AUTH:
            if (key_is(&k, "role")) {
                bit = F_ROLE;
                rc = get_str(&d, &k, &v, m->role, GL_ROLE_MAX);
            } else if (key_is(&k, "nonce")) {
                bit = F_NONCE;
                rc = get_bytes(&d, &k, &v, m->nonce, GL_NONCE_LEN);
            } else if (key_is(&k, "mac")) {
                bit = F_MAC;
                rc = get_bytes(&d, &k, &v, m->mac, GL_MAC_LEN);
            }
            break;
        case GL_MSG_WELCOME:
            if (key_is(&k, "mac")) {
                bit = F_MAC;
                rc = get_bytes(&d, &k, &v, m->mac, GL_MAC_LEN);
            }
            break;
        case GL_MSG_ERROR:
            if (key_is(&k, "text")) {
                bit = F_TEXT;
                rc = get_text(&d, &k, &v, m->text, GL_TEXT_MAX);
            }
            break;
        case GL_MSG_HEARTBEAT:
            rc = agent_field(&d, &k, &v, &m->agent, &bit);
            break;
        case GL_MSG_TASK:
        case GL_MSG_DONE:
        case GL_MSG_CHUNK:
        case GL_MSG_FETCH:
        case GL_MSG_END:
        case GL_MSG_DROP:
        case GL_MSG_KEEP:
        case GL_MSG_UNKEEP: {
            /* the fields these share; each type takes only its own (required[], and
             * the checks below: a field of another type is an unknown key) */
            enum gl_msg_type t = m->type;
            bool rows = t == GL_MSG_CHUNK, shard = rows || t == GL_MSG_FETCH || t == GL_MSG_END,
                 kept = t == GL_MSG_KEEP || t == GL_MSG_UNKEEP;
            if (key_is(&k, "job")) {
                bit = F_JOB;
                rc = get_uint(&d, &k, &v, UINT64_MAX, &m->job);
            } else if ((t == GL_MSG_TASK || t == GL_MSG_DONE || rows) && key_is(&k, "task")) {
                bit = F_TASK;
                rc = get_uint(&d, &k, &v, rows ? UINT32_MAX : UINT64_MAX, &m->task);
            } else if ((t == GL_MSG_TASK || t == GL_MSG_DONE) && key_is(&k, "payload")) {
                bit = F_PAYLOAD;
                rc = get_payload(&d, &k, &v, SIZE_MAX, m);
            } else if (rows && key_is(&k, "rows")) {
                bit = F_PAYLOAD;
                rc = get_payload(&d, &k, &v, GL_WIRE_CHUNK_MAX, m);
            } else if ((t == GL_MSG_DONE || t == GL_MSG_END) && key_is(&k, "ok")) {
                bit = F_OK;
                if (v.cls != GL_MPK_BOOL)
                    rc = bad(&d, "is not a boolean", &k);
                else
                    m->ok = v.b;
            } else if ((t == GL_MSG_DONE || t == GL_MSG_END) && key_is(&k, "text")) {
                bit = F_TEXT;
                rc = get_text(&d, &k, &v, m->text, GL_TEXT_MAX);
            } else if (t == GL_MSG_DONE && key_is(&k, "lost")) {
                bit = F_LOST;
                rc = get_str(&d, &k, &v, m->lost, GL_ADDR_MAX);
            } else if (t == GL_MSG_TASK && key_is(&k, "parts")) {
                bit = F_PARTS;
                if (!(rc = get_uint(&d, &k, &v, UINT32_MAX, &u)))
                    m->parts = (uint32_t)u;
            } else if (t == GL_MSG_TASK && key_is(&k, "disk")) {
                if (v.cls != GL_MPK_BOOL)
                    rc = bad(&d, "is not a boolean", &k);
                else
                    m->disk = v.b;
            } else if ((shard || kept) && key_is(&k, "stage")) {
                bit = F_STAGE;
                if (!(rc = get_uint(&d, &k, &v, UINT32_MAX, &u)))
                    m->stage = (uint32_t)u;
            } else if (shard && key_is(&k, "part")) {
                bit = F_PART;
                if (!(rc = get_uint(&d, &k, &v, UINT32_MAX, &u)))
                    m->part = (uint32_t)u;
            } else if (rows && key_is(&k, "nrows")) {
                bit = F_NROWS;
                rc = get_uint(&d, &k, &v, UINT64_MAX, &m->nrows);
            } else if (t == GL_MSG_FETCH && key_is(&k, "tasks")) {
                if ((rc = decode_tasks(&d, &k, &v, &p, m)))
                    goto fail;
                seen |= F_TASKS;
                continue; /* p is past the array already */
            }
            break;
        }
        case GL_MSG_SLOTS:
            if (key_is(&k, "want")) {
                bit = F_WANT;
                if (!(rc = get_uint(&d, &k, &v, UINT32_MAX, &u)))
                    m->want = (uint32_t)u;
            }
            break;
        case GL_MSG_AGENTS:
            if (key_is(&k, "agents")) {
                bit = F_AGENTS;
                if ((rc = decode_agents(&d, &k, &v, &p, m)))
                    goto fail;
                seen |= bit;
                continue; /* p is past the array already */
            }
            break;
        default:
            break;
        }
        if (rc || (rc = skip_value(&d, &p, vstart)))
            goto fail;
        seen |= bit;
    }
    if ((seen & required[m->type]) != required[m->type]) {
        rc = gl_err_set(err, GL_EINVAL, "wire: malformed frame: a %s message lacks a field",
                        gl_msg_name(m->type));
        goto fail;
    }
    return 0;
fail:
    gl_msg_free(m);
    return rc;
}

void gl_msg_free(gl_msg *m)
{
    free(m->tasks);
    m->tasks = NULL;
    m->ntasks = 0;
    free(m->agents);
    m->agents = NULL;
    m->nagents = 0;
    free(m->payload);
    m->payload = NULL;
    m->npayload = 0;
}

/* ---- stream ---- */

int gl_wire_feed(gl_wire_reader *r, const void *p, size_t n, gl_err *err)
{
    /* Drop consumed bytes before growing, so the buffer stays about one
     * frame long however long the stream runs. */
    if (r->off && (r->off == r->buf.len || r->buf.cap - r->buf.len < n)) {
        memmove(r->buf.data, r->buf.data + r->off, r->buf.len - r->off);
        r->buf.len -= r->off;
        r->off = 0;
    }
    if (gl_buf_append(&r->buf, p, n))
        return gl_err_set(err, GL_ENOMEM, "wire: out of memory buffering %zu bytes", n);
    return 0;
}

int gl_wire_next(gl_wire_reader *r, gl_msg *m, gl_err *err)
{
    size_t have = r->buf.len - r->off;
    if (have < 4)
        return 0;
    const uint8_t *p = r->buf.data + r->off;
    uint32_t n = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
    uint32_t max = r->max ? r->max : GL_WIRE_MAX;
    if (n > max)
        return gl_err_set(err, GL_EINVAL, "wire: frame of %u bytes is over the %u-byte bound", n, max);
    if (!n)
        return gl_err_set(err, GL_EINVAL, "wire: malformed frame: empty frame");
    if (have - 4 < n)
        return 0;
    int rc = gl_wire_decode(p + 4, n, m, err);
    if (rc)
        return rc;
    r->off += 4 + (size_t)n;
    return 1;
}

void gl_wire_reader_free(gl_wire_reader *r)
{
    gl_buf_free(&r->buf);
    r->off = 0;
}
