/* plan_wire.c: encoding a plan, and rebuilding one through the plan API
 * (plan_wire.h).
 *
 * A step is the array
 *   [kind, input, name, where, fn, builtin, key, ints, cmd, path, coltypes,
 *    inputs, paths, rows, nrows]
 * where key is nil (the default key) or [n, field...] (n = GL_KEY_ROW: no
 * fields), ints holds the integer parameters in enum gl_param order, cmd,
 * path and coltypes are strings or nil (ints end with GL_P_PERSIST, which
 * changes where stages are cut, so it must travel), fn and rows are byte strings. */
#include "plan_wire.h"

#include "mpk.h"

#include <stdlib.h>
#include <string.h>

#define NFIELDS 15
#define NINTS (GL_P_PERSIST - GL_P_SHARDS + 1)

/* The integer parameters of s, in enum gl_param order. */
static void ints_of(const gl_step *s, int64_t *v)
{
    const int64_t all[NINTS] = {s->shards, s->n, s->from, s->to, s->desc, s->how, s->header,
                                s->sep, s->types, s->skip_bad, s->format, s->single,
                                s->hint_bytes, s->hint_rows, s->persist};
    memcpy(v, all, sizeof all);
}

static int put_opt_str(gl_buf *b, const char *s)
{
    return s ? gl_mpk_put_str(b, s, strlen(s)) : gl_mpk_put_nil(b);
}

static int put_step(gl_buf *b, const gl_step *s)
{
    int64_t ints[NINTS];
    ints_of(s, ints);
    int rc = gl_mpk_put_array(b, NFIELDS) || gl_mpk_put_uint(b, (uint64_t)s->kind) || gl_mpk_put_int(b, s->input) ||
             gl_mpk_put_str(b, s->name, strlen(s->name)) || gl_mpk_put_str(b, s->where, strlen(s->where)) ||
             gl_mpk_put_str(b, s->fn.data, s->fn.len) || gl_mpk_put_uint(b, (uint64_t)s->builtin);
    if (!rc && !s->has_key) {
        rc = gl_mpk_put_nil(b);
    } else if (!rc) {
        uint32_t nf = s->key.n == GL_KEY_ROW ? 0 : s->key.n;
        rc = gl_mpk_put_array(b, 1 + nf) || gl_mpk_put_uint(b, s->key.n);
        for (uint32_t i = 0; !rc && i < nf; i++)
            rc = gl_mpk_put_uint(b, s->key.f[i]);
    }
    rc = rc || gl_mpk_put_array(b, NINTS);
    for (int i = 0; !rc && i < NINTS; i++)
        rc = gl_mpk_put_int(b, ints[i]);
    rc = rc || put_opt_str(b, s->cmd) || put_opt_str(b, s->path) || put_opt_str(b, s->coltypes) ||
         gl_mpk_put_array(b, s->ninputs);
    for (uint32_t i = 0; !rc && i < s->ninputs; i++)
        rc = gl_mpk_put_int(b, s->inputs[i]);
    rc = rc || gl_mpk_put_array(b, s->npaths);
    for (uint32_t i = 0; !rc && i < s->npaths; i++)
        rc = gl_mpk_put_str(b, s->paths[i], strlen(s->paths[i]));
    return rc || gl_mpk_put_str(b, s->rows.data, s->rows.len) || gl_mpk_put_uint(b, s->nrows) ? -1 : 0;
}

int gl_plan_encode(const gl_plan *p, gl_buf *out, gl_err *err)
{
    size_t start = out->len;
    int n = gl_plan_nsteps(p);
    for (int i = 0; i < n; i++) {
        const gl_step *s = gl_plan_get(p, i);
        if (s->cfn)
            return gl_err_set(err, GL_EINVAL,
                              "%s (%s): the host function '%s' lives in the driver's process and can't run on a cluster",
                              s->name, s->where, s->cfn);
    }
    int rc = gl_mpk_put_array(out, 2) || gl_mpk_put_uint(out, GL_PLAN_WIRE_VERSION) ||
             gl_mpk_put_array(out, (uint32_t)n);
    for (int i = 0; !rc && i < n; i++)
        rc = put_step(out, gl_plan_get(p, i));
    if (rc) {
        out->len = start;
        return gl_err_set(err, GL_ENOMEM, "plan: out of memory encoding %d steps", n);
    }
    return 0;
}

/* ---- decoding ---- */

typedef struct cur {
    const uint8_t *p, *end;
    gl_err *err;
    int step;
} cur;

static int bad(cur *c, const char *what)
{
    if (c->step < 0)
        return gl_err_set(c->err, GL_EINVAL, "plan: malformed: %s", what);
    return gl_err_set(c->err, GL_EINVAL, "plan: malformed at step %d: %s", c->step, what);
}

static int head(cur *c, gl_mpk_head *h)
{
    const uint8_t *q = gl_mpk_head_read(c->p, c->end, h);
    if (!q)
        return bad(c, "truncated msgpack");
    c->p = q;
    return 0;
}

static int get_int(cur *c, int64_t lo, int64_t hi, int64_t *v)
{
    gl_mpk_head h;
    if (head(c, &h))
        return GL_EINVAL;
    if (h.cls != GL_MPK_NUM || h.num.kind != GL_NUM_INT || h.num.v.i < lo || h.num.v.i > hi)
        return bad(c, "an integer is missing or out of range");
    *v = h.num.v.i;
    return 0;
}

static int get_array(cur *c, uint32_t max, uint32_t *n)
{
    gl_mpk_head h;
    if (head(c, &h))
        return GL_EINVAL;
    if (h.cls != GL_MPK_ARRAY || h.n > max)
        return bad(c, "an array is missing or too long");
    *n = h.n;
    return 0;
}

/* Bytes (borrowed from the input); nil allowed when *nil is not NULL. */
static int get_bytes(cur *c, const uint8_t **p, uint32_t *n, bool *nil)
{
    gl_mpk_head h;
    if (head(c, &h))
        return GL_EINVAL;
    if (nil && h.cls == GL_MPK_NIL) {
        *nil = true;
        return 0;
    }
    if (h.cls != GL_MPK_STR)
        return bad(c, "a string is missing");
    if (nil)
        *nil = false;
    *p = h.body;
    *n = h.n;
    return 0;
}

/* A string as a new NUL-terminated copy (caller frees); *out NULL for nil
 * when nil_ok. */
static int get_str(cur *c, char **out, bool nil_ok)
{
    const uint8_t *p;
    uint32_t n;
    bool nil = false;
    *out = NULL;
    if (get_bytes(c, &p, &n, nil_ok ? &nil : NULL))
        return GL_EINVAL;
    if (nil)
        return 0;
    if (memchr(p, 0, n))
        return bad(c, "a string holds a NUL byte");
    if (!(*out = malloc((size_t)n + 1)))
        return gl_err_set(c->err, GL_ENOMEM, "plan: out of memory");
    memcpy(*out, p, n);
    (*out)[n] = 0;
    return 0;
}

/* Rebuilds one step through the API. */
static int decode_step(cur *c, gl_plan *p)
{
    uint32_t nf;
    int64_t kind, input, builtin, v;
    char *name = NULL, *where = NULL, *strs[3] = {NULL, NULL, NULL};
    int rc = get_array(c, NFIELDS, &nf);
    if (!rc && nf != NFIELDS)
        rc = bad(c, "a step has the wrong number of fields");
    if (rc || (rc = get_int(c, 0, GL_STEP_KINDS - 1, &kind)) || (rc = get_int(c, -1, c->step - 1, &input)) ||
        (rc = get_str(c, &name, false)) || (rc = get_str(c, &where, false)))
        goto out;
    int id = gl_plan_step(p, (int)kind, (int)input, name, where);
    if (id != c->step) {
        rc = id == GL_ENOMEM ? gl_err_set(c->err, GL_ENOMEM, "plan: out of memory") : bad(c, "the engine refused the step");
        goto out;
    }
    const uint8_t *fn;
    uint32_t fnlen;
    if ((rc = get_bytes(c, &fn, &fnlen, NULL)) || (rc = get_int(c, 0, GL_FN_COUNT, &builtin)))
        goto out;
    if ((fnlen && gl_plan_set_fn(p, id, fn, fnlen)) || (builtin && gl_plan_set_builtin(p, id, (int)builtin))) {
        rc = bad(c, "the engine refused its function");
        goto out;
    }
    /* key: nil or [n, fields...] */
    gl_mpk_head h;
    const uint8_t *save = c->p;
    if ((rc = head(c, &h)))
        goto out;
    if (h.cls != GL_MPK_NIL) {
        c->p = save;
        uint32_t n;
        int64_t kn;
        uint32_t f[GL_KEY_MAX];
        if ((rc = get_array(c, GL_KEY_MAX + 1, &n)))
            goto out;
        if (n < 1 || (rc = get_int(c, 0, GL_KEY_ROW, &kn)))
            goto out_bad_key;
        if (kn == GL_KEY_ROW ? n != 1 : (uint32_t)kn != n - 1)
            goto out_bad_key;
        for (uint32_t i = 0; i + 1 < n; i++) {
            if ((rc = get_int(c, 1, UINT32_MAX, &v)))
                goto out;
            f[i] = (uint32_t)v;
        }
        if (gl_plan_set_key(p, id, f, (uint32_t)kn))
            goto out_bad_key;
    }
    uint32_t n;
    if ((rc = get_array(c, NINTS, &n)))
        goto out;
    if (n != NINTS) {
        rc = bad(c, "the step has the wrong number of parameters");
        goto out;
    }
    for (int i = 0; i < NINTS; i++) {
        if ((rc = get_int(c, INT64_MIN, INT64_MAX, &v)))
            goto out;
        if (gl_plan_set_int(p, id, GL_P_SHARDS + i, v)) {
            rc = bad(c, "the engine refused a parameter");
            goto out;
        }
    }
    for (int i = 0; i < 3; i++)
        if ((rc = get_str(c, &strs[i], true)))
            goto out;
    for (int i = 0; i < 3; i++)
        if (strs[i] && gl_plan_set_str(p, id, GL_S_CMD + i, strs[i])) {
            rc = bad(c, "the engine refused a string parameter");
            goto out;
        }
    if ((rc = get_array(c, GL_INPUTS_MAX, &n)))
        goto out;
    for (uint32_t i = 0; i < n; i++)
        if ((rc = get_int(c, 0, id - 1, &v)) || (rc = gl_plan_add_input(p, id, (int)v) ? bad(c, "the engine refused an input") : 0))
            goto out;
    if ((rc = get_array(c, (uint32_t)(c->end - c->p), &n)))
        goto out;
    for (uint32_t i = 0; i < n; i++) {
        char *path;
        if ((rc = get_str(c, &path, false)))
            goto out;
        int e = gl_plan_add_path(p, id, path);
        free(path);
        if (e) {
            rc = bad(c, "the engine refused a path");
            goto out;
        }
    }
    const uint8_t *rows;
    uint32_t rowlen;
    int64_t nrows;
    if ((rc = get_bytes(c, &rows, &rowlen, NULL)) || (rc = get_int(c, 0, INT64_MAX, &nrows)))
        goto out;
    if ((rowlen || nrows) && gl_plan_add_rows(p, id, rows, rowlen, (uint64_t)nrows))
        rc = bad(c, "the engine refused its rows");
    goto out;
out_bad_key:
    rc = bad(c, "a malformed key");
out:
    free(name);
    free(where);
    for (int i = 0; i < 3; i++)
        free(strs[i]);
    return rc;
}

int gl_plan_decode(const uint8_t *data, size_t len, gl_plan **out, gl_err *err)
{
    *out = NULL;
    cur c = {data, data + len, err, -1};
    uint32_t n;
    int64_t version;
    int rc = get_array(&c, 2, &n);
    if (!rc && n != 2)
        rc = bad(&c, "not a plan");
    if (rc || (rc = get_int(&c, 0, INT32_MAX, &version)))
        return rc;
    if (version != GL_PLAN_WIRE_VERSION)
        return gl_err_set(err, GL_EINVAL, "plan: version %lld, this gleam reads version %d", (long long)version,
                          GL_PLAN_WIRE_VERSION);
    if ((rc = get_array(&c, (uint32_t)(c.end - c.p), &n)))
        return rc;
    gl_plan *p = gl_plan_new();
    if (!p)
        return gl_err_set(err, GL_ENOMEM, "plan: out of memory");
    for (uint32_t i = 0; i < n && !rc; i++) {
        c.step = (int)i;
        rc = decode_step(&c, p);
    }
    if (!rc && c.p != c.end)
        rc = gl_err_set(err, GL_EINVAL, "plan: bytes after the plan");
    if (rc) {
        gl_plan_free(p);
        return rc;
    }
    *out = p;
    return 0;
}
