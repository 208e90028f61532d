/* explain.c: a dataset's plan as text, for people (the REPL prints it when
 * an expression is a dataset). It plans the target exactly as a run would
 * (gl_plan_stages: text sources are globbed and split, so shard counts are
 * the real ones) and describes each stage: what it reads, its ops with the
 * step names and the user's lines, and how its output is sharded. Nothing
 * runs. */
#include "plan.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

/* Appends printf-style text to b; -1 when out of memory. */
static int put(gl_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int put(gl_buf *b, const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (n < 0)
        return -1;
    return gl_buf_append(b, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
}

static const char *plural(uint64_t n) { return n == 1 ? "" : "s"; }

static int put_key(gl_buf *b, const gl_keyspec *k)
{
    if (k->n == GL_KEY_ROW)
        return put(b, "the whole row");
    int rc = put(b, "field%s ", plural(k->n));
    for (uint32_t i = 0; i < k->n && !rc; i++)
        rc = put(b, i ? ",%u" : "%u", k->f[i]);
    return rc;
}

static int put_source(gl_buf *b, const gl_plan *p, const gl_stage *st)
{
    const gl_step *s = gl_plan_get(p, st->src_step);
    switch (st->src) {
    case GL_SRC_TEXT:
    case GL_SRC_CSV:
    case GL_SRC_MSGPACK: {
        int rc = put(b, "%s of %u file%s", s->name, st->nfiles, plural(st->nfiles));
        for (uint32_t i = 0; i < st->nfiles && i < 3 && !rc; i++)
            rc = put(b, "%s%s", i ? ", " : " (", st->files[i]);
        if (!rc && st->nfiles)
            rc = put(b, "%s)", st->nfiles > 3 ? ", ..." : "");
        return rc ? rc : put(b, " at %s", s->where);
    }
    case GL_SRC_RANGE:
        return put(b, "range %lld..%lld at %s", (long long)s->from, (long long)s->to, s->where);
    case GL_SRC_ROWS:
        return put(b, "%llu row%s from the driver at %s", (unsigned long long)s->nrows, plural(s->nrows),
                   s->where);
    case GL_SRC_STAGE:
        return put(b, "the shards of stage %u", st->src_stage + 1);
    case GL_SRC_UNION: {
        int rc = put(b, "the shards of stages");
        for (uint32_t i = 0; i < st->nsrc && !rc; i++)
            rc = put(b, "%s%u", i ? ", " : " ", st->src_stages[i] + 1);
        return rc;
    }
    case GL_SRC_PAIR:
        return put(b, "stage %u (left) and stage %u (right), shard by shard", st->src_stages[0] + 1,
                   st->src_stages[1] + 1);
    }
    return put(b, "?");
}

static const char *agg_mode(enum gl_agg_mode m)
{
    switch (m) {
    case GL_AGG_SUM: return "sum in C";
    case GL_AGG_COUNT: return "count in C";
    case GL_AGG_CFN: return "host function";
    default: return "Lua";
    }
}

static const char *how_name(enum gl_join_how h)
{
    static const char *names[] = {"inner", "left", "right", "outer", "cogroup"};
    return h >= GL_JOIN_INNER && h <= GL_JOIN_COGROUP ? names[h] : "?";
}

static int put_op(gl_buf *b, const gl_plan *p, const gl_opdesc *op)
{
    const gl_step *s = gl_plan_get(p, op->step);
    int rc = 0;
    if (op->kind == GL_OP_LUA || (op->kind == GL_OP_AGG && op->nsteps)) {
        /* A Lua chain (a combine may have taken one in: it is listed first). */
        for (uint32_t i = 0; i < op->nsteps && !rc; i++) {
            const gl_step *f = gl_plan_get(p, op->steps[i]);
            rc = put(b, "%s%s at %s", i ? ", " : "      ", f->name, f->where);
        }
        if (!rc && op->nsteps > 1)
            rc = put(b, " (fused: one Lua call per batch)");
        if (rc || op->kind == GL_OP_LUA)
            return rc ? rc : put(b, "\n");
        rc = put(b, "\n");
    }
    rc = put(b, "      %s at %s", s->name, s->where);
    switch (op->kind) {
    case GL_OP_WORDS: rc = rc ? rc : put(b, " (words, in C)"); break;
    case GL_OP_CFN: rc = rc ? rc : put(b, " (host function %s)", s->cfn); break;
    case GL_OP_AGG:
        rc = rc ? rc : put(b, " (%s, %s)", op->merge ? "merge" : "combine", agg_mode(op->mode));
        break;
    case GL_OP_SORT: rc = rc ? rc : put(b, " (sort each shard)"); break;
    case GL_OP_TOP: rc = rc ? rc : put(b, " (top %lld)", (long long)op->limit); break;
    case GL_OP_LIMIT: rc = rc ? rc : put(b, " (first %lld)", (long long)op->limit); break;
    case GL_OP_COGROUP:
        rc = rc ? rc : put(b, " (%s)", how_name(op->how));
        break;
    case GL_OP_BCAST_JOIN:
        rc = rc ? rc : put(b, " (%s; the %s side, stage %u, held in memory)", how_name(op->how),
                           op->small_left ? "left" : "right", op->side_stage + 1);
        break;
    default: break;
    }
    return rc ? rc : put(b, "\n");
}

static int put_sink(gl_buf *b, const gl_stage *st, bool last)
{
    if (last)
        return put(b, "      -> %u shard%s out\n", st->nparts, plural(st->nparts));
    switch (st->sink) {
    case GL_SINK_HASH:
        if (st->nparts == 1)
            return put(b, "      -> 1 shard\n");
        return put(b, "      -> %u shards by hash of ", st->nparts) || put_key(b, &st->sink_key) ||
               put(b, "\n");
    case GL_SINK_RANGE:
        return put(b, "      -> %u shards by range of ", st->nparts) || put_key(b, &st->sink_key) ||
               put(b, "\n");
    default:
        return put(b, "      -> %u shard%s kept as they are%s%s%s\n", st->nparts, plural(st->nparts),
                   st->sample ? " (and a key sample)" : "", st->cache_step >= 0 ? " (cached for later runs)" : "",
                   st->on_disk ? " (on disk)" : "");
    }
}

int gl_plan_explain(const gl_plan *p, int target, uint32_t workers, gl_buf *out, gl_err *err)
{
    const gl_step *t = gl_plan_get(p, target);
    if (!t)
        return gl_err_set(err, GL_EINVAL, "explain: no dataset %d", target);
    gl_stages stages;
    int rc = gl_plan_stages(p, target, workers, &stages, err);
    if (rc)
        return rc;
    rc = put(out, "dataset %d: %s at %s; %u stage%s on %u worker%s\n", target, t->name, t->where, stages.n,
             plural(stages.n), workers, plural(workers));
    for (uint32_t i = 0; i < stages.n && !rc; i++) {
        const gl_stage *st = &stages.v[i];
        if (st->cache_in) {
            const gl_step *c = gl_plan_get(p, st->cache_step);
            rc = put(out, "  stage %u: the cached shards of %s at %s (nothing runs)\n", i + 1, c->name, c->where);
        } else {
            rc = put(out, "  stage %u: %u task%s reading ", i + 1, st->ntasks, plural(st->ntasks)) ||
                 put_source(out, p, st) || put(out, "\n");
        }
        for (uint32_t j = 0; j < st->nops && !rc; j++)
            rc = put_op(out, p, &st->ops[j]);
        if (!rc)
            rc = put_sink(out, st, i + 1 == stages.n);
    }
    gl_stages_free(&stages);
    return rc ? gl_err_set(err, GL_ENOMEM, "explain: out of memory") : 0;
}
