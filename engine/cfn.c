/* cfn.c: the registry of host functions, gleam_value <-> msgpack, and the
 * ops that run host mappers and reducers (see cfn.h). A mapper is called
 * once per row with the row decoded into a reused arena; what it emits is
 * encoded straight into the op's output batch. A reducer keeps, per key,
 * the encoded value fields of the partial result. */
#include "cfn.h"

#include "agg.h"
#include "mpk.h"
#include "source.h"
#include "task.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#define CFN_MAX 256

static gl_cfn registry[CFN_MAX];
static int nregistry;
static uv_once_t registry_once = UV_ONCE_INIT;
static uv_mutex_t registry_mu;

static void registry_init(void) { uv_mutex_init(&registry_mu); }

const gl_cfn *gl_cfn_find(const char *name)
{
    uv_once(&registry_once, registry_init);
    uv_mutex_lock(&registry_mu);
    const gl_cfn *f = NULL;
    for (int i = 0; i < nregistry && !f; i++)
        if (!strcmp(registry[i].name, name))
            f = &registry[i];
    uv_mutex_unlock(&registry_mu);
    return f;
}

int gl_cfn_kind(const char *name)
{
    const gl_cfn *f = gl_cfn_find(name);
    return f ? f->kind : GL_CFN_NONE;
}

int gl_api_error(gleam_error *err, int code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->message, sizeof err->message, fmt, ap);
        va_end(ap);
        err->code = code;
    }
    return code;
}

static int add(const char *name, int kind, gleam_map_fn map, gleam_reduce_fn reduce, void *ud, gleam_error *err)
{
    size_t n = name ? strlen(name) : 0;
    if (!n || n >= sizeof registry[0].name || name[strspn(name, "abcdefghijklmnopqrstuvwxyz"
                                                                "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")])
        return gl_api_error(err, GLEAM_EINVAL, "gleam_register: '%s' is not a name (letters, digits, _)",
                         name ? name : "(null)");
    if (!map && !reduce)
        return gl_api_error(err, GLEAM_EINVAL, "gleam_register: no function given for '%s'", name);
    static const char *builtins[] = {"words", "sum", "count", "is_builtin"};
    for (size_t i = 0; i < sizeof builtins / sizeof *builtins; i++)
        if (!strcmp(name, builtins[i]))
            return gl_api_error(err, GLEAM_EINVAL, "gleam_register: '%s' is a built-in", name);
    uv_once(&registry_once, registry_init);
    uv_mutex_lock(&registry_mu);
    int rc = 0;
    for (int i = 0; i < nregistry && !rc; i++)
        if (!strcmp(registry[i].name, name))
            rc = gl_api_error(err, GLEAM_EINVAL, "gleam_register: '%s' is registered already", name);
    if (!rc && nregistry == CFN_MAX)
        rc = gl_api_error(err, GLEAM_ENOMEM, "gleam_register: more than %d functions", CFN_MAX);
    if (!rc) {
        gl_cfn *f = &registry[nregistry];
        memcpy(f->name, name, n + 1);
        f->kind = kind;
        f->map = map;
        f->reduce = reduce;
        f->ud = ud;
        nregistry++;
    }
    uv_mutex_unlock(&registry_mu);
    return rc;
}

int gleam_register_mapper(const char *name, gleam_map_fn fn, void *ud, gleam_error *err)
{
    return add(name, GL_CFN_MAPPER, fn, NULL, ud, err);
}

int gleam_register_reducer(const char *name, gleam_reduce_fn fn, void *ud, gleam_error *err)
{
    return add(name, GL_CFN_REDUCER, NULL, fn, ud, err);
}

/* ---- values ---- */

/* Counts the values (nested ones included) of n values at p. */
static size_t count_values(const uint8_t **p, const uint8_t *end, size_t n)
{
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        gl_mpk_head h;
        const uint8_t *q = gl_mpk_head_read(*p, end, &h);
        if (!q) {
            *p = end;
            return total;
        }
        total++;
        if (h.cls == GL_MPK_ARRAY || h.cls == GL_MPK_MAP) {
            *p = q;
            total += count_values(p, end, h.cls == GL_MPK_MAP ? 2u * h.n : h.n);
        } else {
            *p = q;
        }
    }
    return total;
}

/* Decodes n values at *p into dst[0..n), nested items from *next on. */
static void decode_into(gleam_value *dst, size_t n, gleam_value *arena, size_t *next, const uint8_t **p,
                        const uint8_t *end)
{
    for (size_t i = 0; i < n; i++) {
        gleam_value *v = &dst[i];
        gl_mpk_head h;
        const uint8_t *q = gl_mpk_head_read(*p, end, &h);
        if (!q) {
            v->type = GLEAM_NIL;
            *p = end;
            continue;
        }
        *p = q;
        switch (h.cls) {
        case GL_MPK_NIL: v->type = GLEAM_NIL; break;
        case GL_MPK_BOOL: v->type = GLEAM_BOOL; v->as.b = h.b; break;
        case GL_MPK_NUM:
            if (h.num.kind == GL_NUM_INT) {
                v->type = GLEAM_INT;
                v->as.i = h.num.v.i;
            } else if (h.num.kind == GL_NUM_UINT) {
                v->type = GLEAM_UINT;
                v->as.u = h.num.v.u;
            } else {
                v->type = GLEAM_DOUBLE;
                v->as.d = h.num.v.d;
            }
            break;
        case GL_MPK_STR:
        case GL_MPK_EXT: /* an ext travels as its payload bytes */
            v->type = GLEAM_BYTES;
            v->as.bytes.data = (const char *)h.body;
            v->as.bytes.len = h.n;
            break;
        case GL_MPK_ARRAY:
        case GL_MPK_MAP: {
            size_t items = h.cls == GL_MPK_MAP ? 2u * h.n : h.n;
            v->type = h.cls == GL_MPK_MAP ? GLEAM_MAP : GLEAM_ARRAY;
            gleam_value *block = arena + *next;
            *next += items;
            v->as.list.items = block;
            v->as.list.n = h.n;
            decode_into(block, items, arena, next, p, end);
            break;
        }
        }
    }
}

int gl_vals_decode(gl_vals *a, const uint8_t *p, const uint8_t *end, size_t n, const gleam_value **out)
{
    const uint8_t *q = p;
    size_t total = count_values(&q, end, n);
    if (total < n)
        total = n;
    if (total > a->cap) {
        size_t cap = a->cap ? a->cap : 16;
        while (cap < total)
            cap *= 2;
        gleam_value *v = realloc(a->v, cap * sizeof *v);
        if (!v)
            return -1;
        a->v = v;
        a->cap = cap;
    }
    size_t next = n;
    decode_into(a->v, n, a->v, &next, &p, end);
    *out = a->v;
    return 0;
}

void gl_vals_free(gl_vals *a)
{
    free(a->v);
    a->v = NULL;
    a->cap = 0;
}

int gl_value_put(gl_buf *out, const gleam_value *v)
{
    switch (v->type) {
    case GLEAM_NIL: return gl_mpk_put_nil(out);
    case GLEAM_BOOL: return gl_mpk_put_bool(out, v->as.b != 0);
    case GLEAM_INT: return gl_mpk_put_int(out, v->as.i);
    case GLEAM_UINT: return gl_mpk_put_uint(out, v->as.u);
    case GLEAM_DOUBLE: return gl_mpk_put_double(out, v->as.d);
    case GLEAM_BYTES: return gl_mpk_put_str(out, v->as.bytes.data, v->as.bytes.len);
    case GLEAM_ARRAY:
    case GLEAM_MAP: {
        size_t items = v->type == GLEAM_MAP ? 2 * v->as.list.n : v->as.list.n;
        if (v->as.list.n > UINT32_MAX ||
            (v->type == GLEAM_MAP ? gl_mpk_put_map(out, (uint32_t)v->as.list.n)
                                  : gl_mpk_put_array(out, (uint32_t)v->as.list.n)))
            return -1;
        for (size_t i = 0; i < items; i++)
            if (gl_value_put(out, &v->as.list.items[i]))
                return -1;
        return 0;
    }
    }
    return -1;
}

/* ---- the mapper op ---- */

struct gleam_emitter {
    gl_opr *op;
    char msg[512];
    bool failed_emit;
};

typedef struct mapst {
    const gl_cfn *fn;
    gl_vals vals;
    gleam_emitter em;
} mapst;

int gleam_emit(gleam_emitter *out, const gleam_value *fields, size_t n)
{
    gl_opr *op = out->op;
    size_t mark = op->out.len;
    int rc = n > UINT32_MAX ? -1 : gl_mpk_put_array(&op->out, (uint32_t)n);
    for (size_t i = 0; i < n && !rc; i++)
        rc = gl_value_put(&op->out, &fields[i]);
    if (rc) {
        op->out.len = mark;
        snprintf(out->msg, sizeof out->msg, "gleam_emit: a value of unknown type or out of memory");
        out->failed_emit = true;
        return GLEAM_EINVAL;
    }
    op->out_rows++;
    return 0;
}

int gleam_emit_error(gleam_emitter *out, const char *message)
{
    snprintf(out->msg, sizeof out->msg, "%s", message ? message : "failed");
    return GLEAM_EJOB;
}

static int map_push(gl_opr *op, const uint8_t *rows, size_t len, uint64_t nrows)
{
    mapst *m = op->st;
    const uint8_t *p = rows, *end = rows + len;
    for (uint64_t r = 0; r < nrows; r++) {
        const uint8_t *row = p;
        p = gl_row_end(p, end);
        uint32_t nf;
        const uint8_t *f = gl_row_fields(row, p, &nf);
        const gleam_value *fields;
        if (gl_vals_decode(&m->vals, f, p, nf, &fields))
            return gl_err_set(&op->t->err, GL_ENOMEM, "%s: out of memory", m->fn->name);
        m->em.msg[0] = 0;
        m->em.failed_emit = false;
        int rc = m->fn->map(m->fn->ud, fields, nf, &m->em);
        if (rc || m->em.failed_emit) {
            char what[600];
            snprintf(what, sizeof what, "gleam.fn.%s: %s", m->fn->name,
                     m->em.msg[0] ? m->em.msg : "failed");
            return gl_task_fail_row(op->t, op->d->step, what, row, p);
        }
        if ((rc = gl_op_flush(op, GL_BATCH_BYTES)))
            return rc;
    }
    return gl_op_flush(op, 0);
}

static int map_finish(gl_opr *op) { return gl_op_flush(op, 0); }

static void map_destroy(gl_opr *op)
{
    mapst *m = op->st;
    if (m)
        gl_vals_free(&m->vals);
    free(m);
}

/* ---- the reducer op: reduce_by_key and reduce with a host reducer ---- */

typedef struct slotval {
    uint8_t *data; /* the encoded value fields */
    uint32_t len, cap;
} slotval;

typedef struct redst {
    const gl_cfn *fn;
    gl_agg *table;
    slotval *v;
    size_t cap;
    int64_t nv; /* value fields; -1 until the first row */
    gl_vals a, b;
    gleam_value *out;
    gl_buf scratch, enc;
} redst;

static int store(slotval *sv, const uint8_t *p, size_t n)
{
    if (n > sv->cap) {
        uint8_t *d = realloc(sv->data, n);
        if (!d)
            return -1;
        sv->data = d;
        sv->cap = (uint32_t)n;
    }
    if (n)
        memcpy(sv->data, p, n);
    sv->len = (uint32_t)n;
    return 0;
}

static int red_push(gl_opr *op, const uint8_t *rows, size_t len, uint64_t nrows)
{
    redst *s = op->st;
    const gl_keyspec *k = &op->d->key;
    const uint8_t *p = rows, *end = rows + len;
    for (uint64_t r = 0; r < nrows; r++) {
        const uint8_t *row = p;
        p = gl_row_end(p, end);
        int64_t sl = gl_agg_slot(s->table, row, (size_t)(p - row));
        if (sl < 0)
            return gl_err_set(&op->t->err, GL_ENOMEM, "reduce: out of memory");
        size_t slot = (size_t)(sl >> 1);
        int64_t nv = gl_row_rest_count(row, p, k);
        if (s->nv < 0) {
            s->nv = nv;
            if (!(s->out = calloc(nv ? (size_t)nv : 1, sizeof *s->out)))
                return gl_err_set(&op->t->err, GL_ENOMEM, "reduce: out of memory");
        }
        if (nv != s->nv) {
            char what[96];
            snprintf(what, sizeof what, "rows have %lld value fields, earlier rows had %lld", (long long)nv,
                     (long long)s->nv);
            return gl_task_fail_row(op->t, op->d->step, what, row, p);
        }
        if (slot >= s->cap) {
            size_t cap = s->cap ? s->cap * 2 : 1024;
            slotval *v = realloc(s->v, cap * sizeof *v);
            if (!v)
                return gl_err_set(&op->t->err, GL_ENOMEM, "reduce: out of memory");
            memset(v + s->cap, 0, (cap - s->cap) * sizeof *v);
            s->v = v;
            s->cap = cap;
        }
        s->scratch.len = 0;
        if (gl_row_rest_put(&s->scratch, row, p, k))
            return gl_err_set(&op->t->err, GL_ENOMEM, "reduce: out of memory");
        if (sl & 1) {
            if (store(&s->v[slot], s->scratch.data, s->scratch.len))
                return gl_err_set(&op->t->err, GL_ENOMEM, "reduce: out of memory");
            continue;
        }
        const gleam_value *va, *vb;
        slotval *sv = &s->v[slot];
        if (gl_vals_decode(&s->a, sv->data, sv->data + sv->len, (size_t)nv, &va) ||
            gl_vals_decode(&s->b, s->scratch.data, s->scratch.data + s->scratch.len, (size_t)nv, &vb))
            return gl_err_set(&op->t->err, GL_ENOMEM, "reduce: out of memory");
        int rc = s->fn->reduce(s->fn->ud, va, vb, (size_t)nv, s->out);
        if (rc) {
            char what[128];
            snprintf(what, sizeof what, "gleam.fn.%s failed (code %d)", s->fn->name, rc);
            return gl_task_fail_row(op->t, op->d->step, what, row, p);
        }
        /* The result may point into a or b: encode it before storing. */
        s->enc.len = 0;
        for (int64_t j = 0; j < nv && !rc; j++)
            rc = gl_value_put(&s->enc, &s->out[j]);
        if (rc || store(sv, s->enc.data, s->enc.len))
            return gl_err_set(&op->t->err, GL_EINVAL, "gleam.fn.%s: a result of unknown type", s->fn->name);
    }
    return 0;
}

static int red_finish(gl_opr *op)
{
    redst *s = op->st;
    uint32_t n = gl_agg_count(s->table), nk = gl_key_values(&op->d->key);
    for (uint32_t sl = 0; sl < n; sl++) {
        size_t klen;
        const uint8_t *key = gl_agg_key(s->table, sl, &klen);
        if (gl_mpk_put_array(&op->out, nk + (uint32_t)s->nv) || gl_buf_append(&op->out, key, klen) ||
            gl_buf_append(&op->out, s->v[sl].data, s->v[sl].len))
            return gl_err_set(&op->t->err, GL_ENOMEM, "reduce: out of memory");
        op->out_rows++;
        int rc = gl_op_flush(op, GL_CHUNK_BYTES / 4);
        if (rc)
            return rc;
    }
    return gl_op_flush(op, 0);
}

static void red_destroy(gl_opr *op)
{
    redst *s = op->st;
    if (!s)
        return;
    for (size_t i = 0; i < s->cap; i++)
        free(s->v[i].data);
    free(s->v);
    gl_agg_free(s->table);
    gl_vals_free(&s->a);
    gl_vals_free(&s->b);
    free(s->out);
    gl_buf_free(&s->scratch);
    gl_buf_free(&s->enc);
    free(s);
}

/* Keys and values: the values' encoded bytes are about the keys' again. */
static size_t red_held(gl_opr *op)
{
    redst *s = op->st;
    return 2 * gl_agg_bytes(s->table) + s->cap * sizeof *s->v;
}

int gl_op_cfn_init(gl_opr *op)
{
    const gl_step *st = gl_plan_get(op->t->run->plan, op->d->step);
    const gl_cfn *fn = st && st->cfn ? gl_cfn_find(st->cfn) : NULL;
    bool reducer = op->d->kind == GL_OP_AGG;
    if (!fn || fn->kind != (reducer ? GL_CFN_REDUCER : GL_CFN_MAPPER))
        return gl_err_set(&op->t->err, GL_EINVAL, "%s (%s): gleam.fn.%s is not a registered %s", st ? st->name : "?",
                          st ? st->where : "?", st && st->cfn ? st->cfn : "?", reducer ? "reducer" : "mapper");
    if (reducer) {
        redst *s = calloc(1, sizeof *s);
        if (!s || !(s->table = gl_agg_new(&op->d->key))) {
            free(s);
            return gl_err_set(&op->t->err, GL_ENOMEM, "reduce: out of memory");
        }
        s->fn = fn;
        s->nv = -1;
        op->st = s;
        op->push = red_push;
        op->finish = red_finish;
        op->destroy = red_destroy;
        op->held = op->d->merge ? NULL : red_held;
        return 0;
    }
    mapst *m = calloc(1, sizeof *m);
    if (!m)
        return gl_err_set(&op->t->err, GL_ENOMEM, "map: out of memory");
    m->fn = fn;
    m->em.op = op;
    op->st = m;
    op->push = map_push;
    op->finish = map_finish;
    op->destroy = map_destroy;
    return 0;
}
