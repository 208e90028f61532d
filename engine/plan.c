/* plan.c: building the DAG and cutting it into stages (see plan.h). */
#include "plan.h"

#include "mpk.h"
#include "store.h"

#include <stdlib.h>
#include <string.h>

struct gl_plan {
    gl_step *steps;
    int n, cap;
};

gl_plan *gl_plan_new(void) { return calloc(1, sizeof(gl_plan)); }

static void split_free(gl_split *sp)
{
    if (!sp)
        return;
    for (uint32_t i = 0; sp->files && i < sp->nfiles; i++)
        free(sp->files[i]);
    free(sp->files);
    free(sp->pieces);
    free(sp->first);
    free(sp);
}

/* Copies files, pieces and first into *dst_files, *dst_pieces and
 * *dst_first (a split's or a stage's fields, which own them). 0 or -1
 * (out of memory; what was copied is the owner's to free). */
static int split_copy(char ***dst_files, char *const *files, uint32_t nfiles, gl_piece **dst_pieces,
                      const gl_piece *pieces, uint32_t npieces, uint32_t **dst_first, const uint32_t *first,
                      uint32_t ntasks)
{
    char **f = *dst_files = calloc(nfiles ? nfiles : 1, sizeof *f);
    *dst_pieces = malloc((npieces ? npieces : 1) * sizeof **dst_pieces);
    *dst_first = malloc(((size_t)ntasks + 1) * sizeof **dst_first);
    if (!f || !*dst_pieces || !*dst_first)
        return -1;
    for (uint32_t i = 0; i < nfiles; i++)
        if (!(f[i] = strdup(files[i])))
            return -1;
    memcpy(*dst_pieces, pieces, npieces * sizeof *pieces);
    memcpy(*dst_first, first, ((size_t)ntasks + 1) * sizeof *first);
    return 0;
}

static void step_free(gl_step *s)
{
    split_free(s->split);
    free(s->name);
    free(s->where);
    free(s->cmd);
    free(s->path);
    free(s->coltypes);
    free(s->cfn);
    gl_buf_free(&s->fn);
    gl_buf_free(&s->rows);
    gl_output_free(s->cached);
    if (s->remote)
        s->remote->release(s->remote);
    for (uint32_t i = 0; i < s->npaths; i++)
        free(s->paths[i]);
    free(s->paths);
}

void gl_plan_free(gl_plan *p)
{
    if (!p)
        return;
    for (int i = 0; i < p->n; i++)
        step_free(&p->steps[i]);
    free(p->steps);
    free(p);
}

static gl_step *get(gl_plan *p, int id) { return id >= 0 && id < p->n ? &p->steps[id] : NULL; }

const gl_step *gl_plan_get(const gl_plan *p, int id) { return get((gl_plan *)p, id); }

void gl_plan_cache_put(gl_plan *p, int id, gl_output *o)
{
    gl_step *s = get(p, id);
    if (!s) {
        gl_output_free(o);
        return;
    }
    gl_output_free(s->cached);
    s->cached = o;
}

void gl_plan_cache_remote(gl_plan *p, int id, gl_remote_cache *r)
{
    gl_step *s = get(p, id);
    gl_remote_cache *old = s ? s->remote : r;
    if (s)
        s->remote = r;
    if (old)
        old->release(old);
}
int gl_plan_nsteps(const gl_plan *p) { return p->n; }

int gl_plan_set_split(gl_plan *p, int id, char *const *files, uint32_t nfiles, const gl_piece *pieces,
                      const uint32_t *first, uint32_t ntasks)
{
    gl_step *s = get(p, id);
    if (!s || (s->kind != GL_STEP_TEXT && s->kind != GL_STEP_CSV && s->kind != GL_STEP_MSGPACK) || !ntasks ||
        first[0])
        return GL_EINVAL;
    for (uint32_t t = 0; t < ntasks; t++)
        if (first[t + 1] < first[t])
            return GL_EINVAL;
    uint32_t npieces = first[ntasks];
    for (uint32_t i = 0; i < npieces; i++)
        if (pieces[i].file >= nfiles || pieces[i].start > pieces[i].end)
            return GL_EINVAL;
    gl_split *sp = calloc(1, sizeof *sp);
    if (!sp)
        return GL_ENOMEM;
    sp->nfiles = nfiles;
    sp->ntasks = ntasks;
    if (split_copy(&sp->files, files, nfiles, &sp->pieces, pieces, npieces, &sp->first, first, ntasks)) {
        split_free(sp);
        return GL_ENOMEM;
    }
    split_free(s->split);
    s->split = sp;
    return 0;
}

static bool is_source(int kind)
{
    return kind == GL_STEP_TEXT || kind == GL_STEP_ROWS || kind == GL_STEP_RANGE || kind == GL_STEP_CSV ||
           kind == GL_STEP_MSGPACK;
}

int gl_plan_step(gl_plan *p, int kind, int input, const char *name, const char *where)
{
    if (kind < 0 || kind >= GL_STEP_KINDS)
        return GL_EINVAL;
    if (is_source(kind) ? input != -1 : !get(p, input))
        return GL_EINVAL;
    if (p->n == p->cap) {
        int cap = p->cap ? p->cap * 2 : 16;
        gl_step *s = realloc(p->steps, (size_t)cap * sizeof *s);
        if (!s)
            return GL_ENOMEM;
        p->steps = s;
        p->cap = cap;
    }
    gl_step *s = &p->steps[p->n];
    memset(s, 0, sizeof *s);
    s->kind = kind;
    s->input = input;
    s->name = strdup(name ? name : "?");
    s->where = strdup(where ? where : "?");
    if (!s->name || !s->where) {
        step_free(s);
        return GL_ENOMEM;
    }
    s->key.n = 1;
    s->key.f[0] = 1;
    s->sep = ',';
    return p->n++;
}

int gl_plan_set_fn(gl_plan *p, int id, const uint8_t *blob, size_t len)
{
    gl_step *s = get(p, id);
    if (!s)
        return GL_EINVAL;
    s->fn.len = 0;
    return gl_buf_append(&s->fn, blob, len) ? GL_ENOMEM : 0;
}

int gl_plan_set_builtin(gl_plan *p, int id, int builtin)
{
    gl_step *s = get(p, id);
    if (!s || builtin < GL_FN_NONE || builtin > GL_FN_COUNT)
        return GL_EINVAL;
    s->builtin = builtin;
    return 0;
}

int gl_plan_set_cfn(gl_plan *p, int id, const char *name)
{
    gl_step *s = get(p, id);
    if (!s || !name)
        return GL_EINVAL;
    char *copy = strdup(name);
    if (!copy)
        return GL_ENOMEM;
    free(s->cfn);
    s->cfn = copy;
    return 0;
}

int gl_plan_set_key(gl_plan *p, int id, const uint32_t *fields, uint32_t n)
{
    gl_step *s = get(p, id);
    if (s && n == GL_KEY_ROW) {
        s->key.n = GL_KEY_ROW;
        s->has_key = true;
        return 0;
    }
    if (!s || n > GL_KEY_MAX)
        return GL_EINVAL;
    for (uint32_t i = 0; i < n; i++) {
        if (fields[i] < 1)
            return GL_EINVAL;
        for (uint32_t j = 0; j < i && s->kind != GL_STEP_SELECT; j++)
            if (fields[j] == fields[i])
                return GL_EINVAL; /* a field twice in a key (select may repeat one) */
    }
    s->key.n = n;
    if (n)
        memcpy(s->key.f, fields, n * sizeof *fields);
    s->has_key = true;
    return 0;
}

int gl_plan_set_int(gl_plan *p, int id, int param, int64_t v)
{
    gl_step *s = get(p, id);
    if (!s)
        return GL_EINVAL;
    switch (param) {
    case GL_P_SHARDS: if (v < 0 || v > 1 << 20) return GL_EINVAL; s->shards = v; return 0;
    case GL_P_N: s->n = v; return 0;
    case GL_P_FROM: s->from = v; return 0;
    case GL_P_TO: s->to = v; return 0;
    case GL_P_DESC: s->desc = v != 0; return 0;
    case GL_P_HOW: if (v < 0 || v > GL_JOIN_COGROUP) return GL_EINVAL; s->how = v; return 0;
    case GL_P_HEADER: s->header = v != 0; return 0;
    case GL_P_SEP: if (v < 1 || v > 255 || v == '"' || v == '\n' || v == '\r') return GL_EINVAL; s->sep = v; return 0;
    case GL_P_TYPES: s->types = v; return 0;
    case GL_P_SKIP_BAD: s->skip_bad = v != 0; return 0;
    case GL_P_FORMAT: if (v < 0 || v > GL_FMT_MSGPACK) return GL_EINVAL; s->format = v; return 0;
    case GL_P_SINGLE: s->single = v != 0; return 0;
    case GL_P_HINT_BYTES: s->hint_bytes = v; return 0;
    case GL_P_HINT_ROWS: s->hint_rows = v; return 0;
    case GL_P_PERSIST:
        if (v < 0 || v > (GL_PERSIST_CACHE | GL_PERSIST_DISK))
            return GL_EINVAL;
        s->persist = v;
        if (!(v & GL_PERSIST_CACHE)) {
            gl_output_free(s->cached);
            s->cached = NULL;
            gl_plan_cache_remote(p, id, NULL);
        }
        return 0;
    }
    return GL_EINVAL;
}

int gl_plan_set_str(gl_plan *p, int id, int sparam, const char *v)
{
    gl_step *s = get(p, id);
    if (!s || !v || sparam < GL_S_CMD || sparam > GL_S_TYPES)
        return GL_EINVAL;
    if (sparam == GL_S_TYPES && v[strspn(v, "sina")])
        return GL_EINVAL;
    char *copy = strdup(v);
    if (!copy)
        return GL_ENOMEM;
    char **slot = sparam == GL_S_CMD ? &s->cmd : sparam == GL_S_PATH ? &s->path : &s->coltypes;
    free(*slot);
    *slot = copy;
    return 0;
}

int gl_plan_add_input(gl_plan *p, int id, int input)
{
    gl_step *s = get(p, id);
    if (!s || !get(p, input) || input >= id || s->ninputs >= GL_INPUTS_MAX - 1 ||
        (s->kind != GL_STEP_UNION && s->kind != GL_STEP_JOIN && s->kind != GL_STEP_COGROUP))
        return GL_EINVAL;
    s->inputs[s->ninputs++] = input;
    return 0;
}

int gl_plan_add_path(gl_plan *p, int id, const char *pattern)
{
    gl_step *s = get(p, id);
    if (!s || (s->kind != GL_STEP_TEXT && s->kind != GL_STEP_CSV && s->kind != GL_STEP_MSGPACK))
        return GL_EINVAL;
    char **v = realloc(s->paths, (s->npaths + 1) * sizeof *v);
    if (!v)
        return GL_ENOMEM;
    s->paths = v;
    if (!(v[s->npaths] = strdup(pattern)))
        return GL_ENOMEM;
    s->npaths++;
    return 0;
}

int gl_plan_add_rows(gl_plan *p, int id, const uint8_t *rows, size_t len, uint64_t nrows)
{
    gl_step *s = get(p, id);
    if (!s || s->kind != GL_STEP_ROWS || !gl_rows_valid(rows, len, nrows))
        return GL_EINVAL;
    if (gl_buf_append(&s->rows, rows, len))
        return GL_ENOMEM;
    s->nrows += nrows;
    return 0;
}

/* ---- planning ---- */

typedef struct planner {
    const gl_plan *p;
    gl_stages *out;
    uint32_t workers;
    gl_err *err;
    uint32_t *readers; /* per step: how many steps of this flow read it */
    int64_t *kept;     /* per step read more than once: the stage holding it, or -1 */
    unsigned flags;    /* GL_PLAN_* */
} planner;

static int new_stage(planner *pl, uint32_t *id)
{
    gl_stages *o = pl->out;
    gl_stage *v = realloc(o->v, (o->n + 1) * sizeof *v);
    if (!v)
        return gl_err_set(pl->err, GL_ENOMEM, "planner: out of memory");
    o->v = v;
    memset(&v[o->n], 0, sizeof v[o->n]);
    v[o->n].id = o->n;
    v[o->n].src_step = -1;
    v[o->n].cache_step = -1;
    *id = o->n++;
    return 0;
}

static int add_op(planner *pl, uint32_t sid, gl_opdesc op)
{
    gl_stage *st = &pl->out->v[sid];
    if (st->nops == st->capops) {
        uint32_t cap = st->capops ? st->capops * 2 : 4;
        gl_opdesc *v = realloc(st->ops, cap * sizeof *v);
        if (!v)
            return gl_err_set(pl->err, GL_ENOMEM, "planner: out of memory");
        st->ops = v;
        st->capops = cap;
    }
    st->ops[st->nops++] = op;
    return 0;
}

static uint32_t wide_parts(planner *pl, const gl_step *s)
{
    return s->shards > 0 ? (uint32_t)s->shards : pl->workers;
}

static gl_keyspec leading_key(uint32_t n)
{
    gl_keyspec k = {.n = n};
    for (uint32_t i = 0; i < n; i++)
        k.f[i] = i + 1;
    return k;
}

/* Ends stage sid with a sink and opens the stage that reads it. */
static int cut(planner *pl, uint32_t sid, enum gl_sink_kind sink, uint32_t nparts,
               gl_keyspec key, bool desc, uint32_t *next)
{
    gl_stage *st = &pl->out->v[sid];
    st->sink = sink;
    st->nparts = sink == GL_SINK_LOCAL ? st->ntasks : nparts;
    st->sink_key = key;
    st->sink_desc = desc;
    int rc = new_stage(pl, next);
    if (rc)
        return rc;
    gl_stage *nx = &pl->out->v[*next];
    nx->src = GL_SRC_STAGE;
    nx->src_stage = sid;
    nx->ntasks = pl->out->v[sid].nparts;
    return 0;
}

static int plan_ds(planner *pl, int id, uint32_t *sid);

static int plan_source(planner *pl, int id, const gl_step *s, uint32_t *sid)
{
    int rc = new_stage(pl, sid);
    if (rc)
        return rc;
    gl_stage *st = &pl->out->v[*sid];
    st->src_step = id;
    switch (s->kind) {
    case GL_STEP_TEXT:
    case GL_STEP_CSV:
    case GL_STEP_MSGPACK: {
        st->src = s->kind == GL_STEP_TEXT ? GL_SRC_TEXT : s->kind == GL_STEP_CSV ? GL_SRC_CSV : GL_SRC_MSGPACK;
        const gl_split *sp = s->split;
        if (!sp)
            return gl_text_split(s, pl->workers, st, pl->err);
        /* as the driver planned it: no file is listed here */
        st->nfiles = sp->nfiles;
        st->ntasks = sp->ntasks;
        if (split_copy(&st->files, sp->files, sp->nfiles, &st->pieces, sp->pieces, sp->first[sp->ntasks], &st->first,
                       sp->first, sp->ntasks))
            return gl_err_set(pl->err, GL_ENOMEM, "planner: out of memory");
        return 0;
    }
    case GL_STEP_RANGE: {
        st->src = GL_SRC_RANGE;
        int64_t count = s->to >= s->from ? s->to - s->from + 1 : 0;
        uint64_t t = s->shards > 0 ? (uint64_t)s->shards : pl->workers;
        if (!s->shards && (uint64_t)count < t)
            t = count > 0 ? (uint64_t)count : 1;
        st->ntasks = (uint32_t)t;
        return 0;
    }
    case GL_STEP_ROWS: {
        st->src = GL_SRC_ROWS;
        uint64_t t = s->shards > 0 ? (uint64_t)s->shards : pl->workers;
        if (!s->shards && s->nrows < t)
            t = s->nrows ? s->nrows : 1;
        st->ntasks = (uint32_t)t;
        return 0;
    }
    default:
        return gl_err_set(pl->err, GL_EINVAL, "planner: step %d is not a source", id);
    }
}

static int plan_narrow(planner *pl, int id, const gl_step *s, uint32_t sid)
{
    gl_stage *st = &pl->out->v[sid];
    gl_opdesc op = {.step = id};
    if (s->kind == GL_STEP_SELECT) {
        op.kind = GL_OP_SELECT;
        op.key = s->key;
        return add_op(pl, sid, op);
    }
    if (s->cfn && (s->kind == GL_STEP_MAP || s->kind == GL_STEP_FLATMAP || s->kind == GL_STEP_FILTER)) {
        op.kind = GL_OP_CFN;
        return add_op(pl, sid, op);
    }
    if (s->kind == GL_STEP_FLATMAP && s->builtin == GL_FN_WORDS) {
        op.kind = GL_OP_WORDS;
        return add_op(pl, sid, op);
    }
    if (s->kind == GL_STEP_PIPE || s->kind == GL_STEP_PIPE_ARGS) {
        op.kind = s->kind == GL_STEP_PIPE ? GL_OP_PIPE : GL_OP_PIPE_ARGS;
        return add_op(pl, sid, op);
    }
    gl_opdesc *last = st->nops ? &st->ops[st->nops - 1] : NULL;
    if (last && last->kind == GL_OP_LUA && last->nsteps < GL_FUSE_MAX) {
        last->steps[last->nsteps++] = id;
        return 0;
    }
    op.kind = GL_OP_LUA;
    op.steps[0] = id;
    op.nsteps = 1;
    return add_op(pl, sid, op);
}

/* Ends an open stage with a sink, without opening the next one. */
static void close_stage(planner *pl, uint32_t sid, enum gl_sink_kind sink, uint32_t nparts, gl_keyspec key)
{
    gl_stage *st = &pl->out->v[sid];
    st->sink = sink;
    st->nparts = sink == GL_SINK_LOCAL ? st->ntasks : nparts;
    st->sink_key = key;
}

/* union: each input keeps its shards; the union's shards are theirs, in
 * input order. */
static int plan_union(planner *pl, const gl_step *s, uint32_t *sid)
{
    uint32_t ins[GL_INPUTS_MAX], n = 0, tasks = 0;
    int all[GL_INPUTS_MAX];
    all[0] = s->input;
    memcpy(all + 1, s->inputs, s->ninputs * sizeof *all);
    for (uint32_t i = 0; i <= s->ninputs; i++) {
        int rc = plan_ds(pl, all[i], &ins[n]);
        if (rc)
            return rc;
        close_stage(pl, ins[n], GL_SINK_LOCAL, 0, (gl_keyspec){0});
        tasks += pl->out->v[ins[n]].nparts;
        n++;
    }
    int rc = new_stage(pl, sid);
    if (rc)
        return rc;
    gl_stage *st = &pl->out->v[*sid];
    st->src = GL_SRC_UNION;
    memcpy(st->src_stages, ins, n * sizeof *ins);
    st->nsrc = n;
    st->ntasks = tasks ? tasks : 1;
    return 0;
}

/* A side is small when hinted so, or when it is rows handed over by the
 * driver (through narrow steps that do not multiply rows) under the bound. */
static bool small(const gl_plan *p, const gl_step *s)
{
    for (; s; s = gl_plan_get(p, s->input)) {
        if (s->hint_bytes > 0)
            return (uint64_t)s->hint_bytes <= GL_BROADCAST_BYTES;
        if (s->kind == GL_STEP_ROWS)
            return s->rows.len <= GL_BROADCAST_BYTES;
        if (s->kind != GL_STEP_MAP && s->kind != GL_STEP_FILTER && s->kind != GL_STEP_SELECT &&
            s->kind != GL_STEP_FOREACH)
            return false;
    }
    return false;
}

/* join and cogroup. Both sides are hash partitioned by the key into the
 * same number of shards and met shard by shard; or, for an inner or left
 * join whose right side is hinted small (or inner/right with a small left
 * side), the small side is held whole in memory by every task of the other
 * side, which is not shuffled at all. */
static int plan_join(planner *pl, int id, const gl_step *s, uint32_t *sid)
{
    const gl_step *left = gl_plan_get(pl->p, s->input), *right = gl_plan_get(pl->p, s->inputs[0]);
    if (!left || !right || s->ninputs != 1)
        return gl_err_set(pl->err, GL_EINVAL, "%s (%s): needs two inputs", s->name, s->where);
    enum gl_join_how how = s->kind == GL_STEP_COGROUP ? GL_JOIN_COGROUP : (enum gl_join_how)s->how;
    bool bright = small(pl->p, right) && (how == GL_JOIN_INNER || how == GL_JOIN_LEFT);
    bool bleft = !bright && small(pl->p, left) && (how == GL_JOIN_INNER || how == GL_JOIN_RIGHT);
    int rc;
    if (bright || bleft) {
        uint32_t side;
        if ((rc = plan_ds(pl, bright ? s->inputs[0] : s->input, &side)))
            return rc;
        close_stage(pl, side, GL_SINK_LOCAL, 0, (gl_keyspec){0});
        pl->out->v[side].track_width = true;
        if ((rc = plan_ds(pl, bright ? s->input : s->inputs[0], sid)))
            return rc;
        pl->out->v[*sid].track_width = true;
        return add_op(pl, *sid, (gl_opdesc){.kind = GL_OP_BCAST_JOIN, .step = id, .key = s->key, .how = how,
                                            .small_left = bleft, .side_stage = side});
    }
    uint32_t nparts = wide_parts(pl, s), l, r;
    if ((rc = plan_ds(pl, s->input, &l)))
        return rc;
    close_stage(pl, l, GL_SINK_HASH, nparts, s->key);
    pl->out->v[l].track_width = true;
    if ((rc = plan_ds(pl, s->inputs[0], &r)))
        return rc;
    close_stage(pl, r, GL_SINK_HASH, nparts, s->key);
    pl->out->v[r].track_width = true;
    if ((rc = new_stage(pl, sid)))
        return rc;
    gl_stage *st = &pl->out->v[*sid];
    st->src = GL_SRC_PAIR;
    st->src_stages[0] = l;
    st->src_stages[1] = r;
    st->nsrc = 2;
    st->ntasks = nparts;
    return add_op(pl, *sid, (gl_opdesc){.kind = GL_OP_COGROUP, .step = id, .key = s->key, .how = how});
}

/* Opens a stage that reads the kept output of stage `from`, shard by shard. */
static int read_kept(planner *pl, uint32_t from, uint32_t *sid)
{
    int rc = new_stage(pl, sid);
    if (rc)
        return rc;
    gl_stage *st = &pl->out->v[*sid];
    st->src = GL_SRC_STAGE;
    st->src_stage = from;
    st->ntasks = pl->out->v[from].nparts;
    return 0;
}

static int plan_step(planner *pl, int id, uint32_t *sid);

/* A dataset that several steps read is computed once: its stage is ended
 * there (its shards kept as they are) and each reader starts a stage that
 * reads those shards. */
static int plan_ds(planner *pl, int id, uint32_t *sid)
{
    if (id < 0 || id >= gl_plan_nsteps(pl->p))
        return gl_err_set(pl->err, GL_EINVAL, "planner: no dataset %d", id);
    const gl_step *s = gl_plan_get(pl->p, id);
    if (pl->readers[id] < 2 && !s->persist)
        return plan_step(pl, id, sid);
    if (pl->kept[id] < 0) {
        uint32_t st;
        int rc;
        if (s->cached && !(pl->flags & GL_PLAN_NO_LOCAL_CACHE)) {
            /* Shards of an earlier run: a stage with nothing to run. */
            if ((rc = new_stage(pl, &st)))
                return rc;
            pl->out->v[st].cache_in = true;
            pl->out->v[st].nparts = s->cached->nparts;
            pl->out->v[st].ntasks = 0;
        } else {
            if ((rc = plan_step(pl, id, &st)))
                return rc;
            close_stage(pl, st, GL_SINK_LOCAL, 0, (gl_keyspec){0});
            pl->out->v[st].on_disk = (s->persist & GL_PERSIST_DISK) != 0;
        }
        if (s->persist & GL_PERSIST_CACHE)
            pl->out->v[st].cache_step = id;
        pl->kept[id] = st;
    }
    return read_kept(pl, (uint32_t)pl->kept[id], sid);
}

static int plan_step(planner *pl, int id, uint32_t *sid)
{
    const gl_step *s = gl_plan_get(pl->p, id);
    if (!s)
        return gl_err_set(pl->err, GL_EINVAL, "planner: no dataset %d", id);
    if (is_source(s->kind))
        return plan_source(pl, id, s, sid);
    if (s->kind == GL_STEP_UNION)
        return plan_union(pl, s, sid);
    if (s->kind == GL_STEP_JOIN || s->kind == GL_STEP_COGROUP)
        return plan_join(pl, id, s, sid);
    int rc = plan_ds(pl, s->input, sid);
    if (rc)
        return rc;
    switch (s->kind) {
    case GL_STEP_MAP:
    case GL_STEP_FLATMAP:
    case GL_STEP_FILTER:
    case GL_STEP_SELECT:
    case GL_STEP_FOREACH:
    case GL_STEP_PIPE:
    case GL_STEP_PIPE_ARGS:
        return plan_narrow(pl, id, s, *sid);
    case GL_STEP_LOCAL_SORT:
        return add_op(pl, *sid, (gl_opdesc){.kind = GL_OP_SORT, .step = id, .key = s->key, .desc = s->desc});
    case GL_STEP_LOCAL_TOP:
        return add_op(pl, *sid, (gl_opdesc){.kind = GL_OP_TOP, .step = id, .key = s->key, .desc = s->desc,
                                            .limit = s->n});
    case GL_STEP_LIMIT: {
        /* The first n rows of each task, then the first n of those in task
         * order: the first n rows of the dataset in shard order. */
        gl_opdesc op = {.kind = GL_OP_LIMIT, .step = id, .limit = s->n};
        if ((rc = add_op(pl, *sid, op)) || (rc = cut(pl, *sid, GL_SINK_HASH, 1, (gl_keyspec){0}, false, sid)))
            return rc;
        return add_op(pl, *sid, op);
    }
    case GL_STEP_PARTITION:
        return cut(pl, *sid, GL_SINK_HASH, wide_parts(pl, s), s->key, false, sid);
    case GL_STEP_DISTINCT: {
        gl_opdesc op = {.kind = GL_OP_DISTINCT, .step = id, .key = s->key};
        if ((rc = add_op(pl, *sid, op)) || (rc = cut(pl, *sid, GL_SINK_HASH, wide_parts(pl, s), s->key, false, sid)))
            return rc;
        return add_op(pl, *sid, op);
    }
    case GL_STEP_GROUP:
        if ((rc = cut(pl, *sid, GL_SINK_HASH, wide_parts(pl, s), s->key, false, sid)))
            return rc;
        return add_op(pl, *sid, (gl_opdesc){.kind = GL_OP_GROUP, .step = id, .key = s->key});
    case GL_STEP_SAVE: {
        if (s->single && (rc = cut(pl, *sid, GL_SINK_HASH, 1, (gl_keyspec){0}, false, sid)))
            return rc;
        return add_op(pl, *sid, (gl_opdesc){.kind = GL_OP_SAVE, .step = id});
    }
    case GL_STEP_REDUCE_BY_KEY:
    case GL_STEP_REDUCE: {
        bool bykey = s->kind == GL_STEP_REDUCE_BY_KEY;
        gl_opdesc op = {.kind = GL_OP_AGG, .step = id};
        op.key = bykey ? s->key : (gl_keyspec){0};
        op.mode = s->cfn                     ? GL_AGG_CFN
                  : s->builtin == GL_FN_SUM   ? GL_AGG_SUM
                  : s->builtin == GL_FN_COUNT ? GL_AGG_COUNT
                                              : GL_AGG_LUA;
        /* A Lua chain before a Lua combine joins it: its rows go to the
         * combine as Lua values, never encoded into rows and decoded again
         * (which also made every string key twice). */
        gl_stage *st = &pl->out->v[*sid];
        gl_opdesc *last = st->nops ? &st->ops[st->nops - 1] : NULL;
        if (op.mode == GL_AGG_LUA && last && last->kind == GL_OP_LUA) {
            memcpy(op.steps, last->steps, last->nsteps * sizeof *op.steps);
            op.nsteps = last->nsteps;
            st->nops--;
        }
        if ((rc = add_op(pl, *sid, op)))
            return rc;
        /* Combined rows lead with their key fields. */
        gl_keyspec k = leading_key(op.key.n);
        if ((rc = cut(pl, *sid, GL_SINK_HASH, bykey ? wide_parts(pl, s) : 1, k, false, sid)))
            return rc;
        op.key = k;
        op.merge = true;
        op.nsteps = 0; /* the chain ran before the shuffle */
        if (op.mode == GL_AGG_COUNT)
            op.mode = GL_AGG_SUM;
        return add_op(pl, *sid, op);
    }
    case GL_STEP_TOP: {
        gl_opdesc op = {.kind = GL_OP_TOP, .step = id, .key = s->key, .desc = s->desc, .limit = s->n};
        if ((rc = add_op(pl, *sid, op)))
            return rc;
        if ((rc = cut(pl, *sid, GL_SINK_HASH, 1, (gl_keyspec){0}, false, sid)))
            return rc;
        return add_op(pl, *sid, op);
    }
    case GL_STEP_SORT: {
        /* Sampled range partitioning: the input is kept as it is and
         * sampled, a second stage sends each row to its range, and each
         * range is sorted on its own. Shards in order are one order. */
        gl_stage *st = &pl->out->v[*sid];
        st->sample = true;
        uint32_t ranger, sorter;
        if ((rc = cut(pl, *sid, GL_SINK_LOCAL, 0, s->key, s->desc, &ranger)))
            return rc;
        if ((rc = cut(pl, ranger, GL_SINK_RANGE, wide_parts(pl, s), s->key, s->desc, &sorter)))
            return rc;
        *sid = sorter;
        gl_opdesc op = {.kind = GL_OP_SORT, .step = id, .key = s->key, .desc = s->desc};
        return add_op(pl, sorter, op);
    }
    default:
        return gl_err_set(pl->err, GL_EINVAL, "planner: step %s has an unknown kind", s->name);
    }
}

/* ---- the blob Lua workers read: one entry per Lua op ---- */

static const char *step_kind_name(int k)
{
    static const char *names[] = {"text", "rows", "range", "map", "flatmap", "filter", "select",
                                  "reduce_by_key", "reduce", "sort_by", "top", "foreach", "local_sort",
                                  "local_top", "limit", "partition", "distinct", "group_by_key", "join",
                                  "cogroup", "union", "pipe", "pipe_as_args", "csv", "msgpack", "save"};
    _Static_assert(sizeof names / sizeof *names == GL_STEP_KINDS, "a name per step kind");
    return k >= 0 && k < GL_STEP_KINDS ? names[k] : "?";
}

static const char *builtin_name(int b)
{
    static const char *names[] = {NULL, "words", "sum", "count"};
    return b > 0 && b <= GL_FN_COUNT ? names[b] : NULL;
}

static int put_cstr(gl_buf *b, const char *s) { return gl_mpk_put_str(b, s, strlen(s)); }

static int put_step(gl_buf *b, const gl_step *s)
{
    const char *bi = builtin_name(s->builtin);
    int rc = gl_mpk_put_map(b, 5);
    rc |= put_cstr(b, "kind") | put_cstr(b, step_kind_name(s->kind));
    rc |= put_cstr(b, "name") | put_cstr(b, s->name);
    rc |= put_cstr(b, "where") | put_cstr(b, s->where);
    rc |= put_cstr(b, "fn");
    rc |= s->fn.len ? gl_mpk_put_str(b, s->fn.data, s->fn.len) : gl_mpk_put_nil(b);
    rc |= put_cstr(b, "builtin");
    rc |= bi ? put_cstr(b, bi) : gl_mpk_put_nil(b);
    return rc;
}

static int build_blob(const gl_plan *p, gl_stage *st)
{
    gl_buf *b = &st->blob;
    uint32_t nlua = 0;
    for (uint32_t i = 0; i < st->nops; i++)
        nlua += st->ops[i].kind == GL_OP_LUA || (st->ops[i].kind == GL_OP_AGG && st->ops[i].mode == GL_AGG_LUA);
    int rc = gl_mpk_put_array(b, nlua);
    for (uint32_t i = 0; i < st->nops; i++) {
        const gl_opdesc *op = &st->ops[i];
        if (op->kind == GL_OP_LUA) {
            rc |= gl_mpk_put_map(b, 3);
            rc |= put_cstr(b, "op") | gl_mpk_put_int(b, i);
            rc |= put_cstr(b, "kind") | put_cstr(b, "chain");
            rc |= put_cstr(b, "steps") | gl_mpk_put_array(b, op->nsteps);
            for (uint32_t j = 0; j < op->nsteps; j++)
                rc |= put_step(b, gl_plan_get(p, op->steps[j]));
        } else if (op->kind == GL_OP_AGG && op->mode == GL_AGG_LUA) {
            rc |= gl_mpk_put_map(b, 6);
            rc |= put_cstr(b, "op") | gl_mpk_put_int(b, i);
            rc |= put_cstr(b, "kind") | put_cstr(b, "agg");
            rc |= put_cstr(b, "chain") | gl_mpk_put_array(b, op->nsteps);
            for (uint32_t j = 0; j < op->nsteps; j++)
                rc |= put_step(b, gl_plan_get(p, op->steps[j]));
            rc |= put_cstr(b, "merge") | gl_mpk_put_bool(b, op->merge);
            rc |= put_cstr(b, "key") | gl_mpk_put_array(b, op->key.n);
            for (uint32_t j = 0; j < op->key.n; j++)
                rc |= gl_mpk_put_int(b, op->key.f[j]);
            rc |= put_cstr(b, "step") | put_step(b, gl_plan_get(p, op->step));
        }
    }
    return rc ? GL_ENOMEM : 0;
}

/* Counts, for each step the target depends on, the steps that read it. */
static void count_readers(const gl_plan *p, int id, uint32_t *readers, bool *seen)
{
    const gl_step *s = gl_plan_get(p, id);
    if (!s || seen[id])
        return;
    seen[id] = true;
    if (s->input >= 0) {
        readers[s->input]++;
        count_readers(p, s->input, readers, seen);
    }
    for (uint32_t i = 0; i < s->ninputs; i++) {
        readers[s->inputs[i]]++;
        count_readers(p, s->inputs[i], readers, seen);
    }
}

int gl_plan_stages(const gl_plan *p, int target, uint32_t workers, gl_stages *out, gl_err *err)
{
    return gl_plan_stages_ex(p, target, workers, 0, out, err);
}

int gl_plan_stages_ex(const gl_plan *p, int target, uint32_t workers, unsigned flags, gl_stages *out,
                      gl_err *err)
{
    memset(out, 0, sizeof *out);
    size_t n = (size_t)(gl_plan_nsteps(p) > 0 ? gl_plan_nsteps(p) : 1);
    uint32_t *readers = calloc(n, sizeof *readers);
    int64_t *kept = malloc(n * sizeof *kept);
    bool *seen = calloc(n, sizeof *seen);
    if (!readers || !kept || !seen) {
        free(readers);
        free(kept);
        free(seen);
        return gl_err_set(err, GL_ENOMEM, "planner: out of memory");
    }
    for (size_t i = 0; i < n; i++)
        kept[i] = -1;
    count_readers(p, target, readers, seen);
    free(seen);
    planner pl = {p, out, workers ? workers : 1, err, readers, kept, flags};
    uint32_t last;
    int rc = plan_ds(&pl, target, &last);
    free(readers);
    free(kept);
    if (!rc) {
        gl_stage *st = &out->v[last];
        st->sink = GL_SINK_LOCAL;
        st->nparts = st->ntasks;
        for (uint32_t i = 0; i < out->n && !rc; i++)
            if (build_blob(p, &out->v[i]))
                rc = gl_err_set(err, GL_ENOMEM, "planner: out of memory");
    }
    if (rc)
        gl_stages_free(out);
    return rc;
}

void gl_stages_free(gl_stages *s)
{
    for (uint32_t i = 0; i < s->n; i++) {
        gl_stage *st = &s->v[i];
        for (uint32_t f = 0; f < st->nfiles; f++)
            free(st->files[f]);
        free(st->files);
        free(st->pieces);
        free(st->first);
        free(st->ops);
        free(st->bound_off);
        gl_buf_free(&st->bounds);
        gl_buf_free(&st->blob);
    }
    free(s->v);
    memset(s, 0, sizeof *s);
}
