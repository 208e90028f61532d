/* group.c: per-key row lists over the aggregation table (see group.h). */
#include "group.h"

#include "err.h"
#include "mpk.h"

#include <stdlib.h>

typedef struct entry {
    size_t off;
    uint32_t len;
    uint32_t next;
} entry;

typedef struct list {
    uint32_t head, tail, n;
    uint64_t bytes;
} list;

struct gl_groups {
    gl_agg *table;
    gl_keyspec key;
    uint32_t sides;
    gl_buf arena;
    entry *e;
    uint32_t ne, cape;
    list *l;       /* [slot * sides + side] */
    uint32_t capl; /* in slots */
};

gl_groups *gl_groups_new(const gl_keyspec *key, uint32_t sides)
{
    gl_groups *g = calloc(1, sizeof *g);
    if (!g || !(g->table = gl_agg_new(key))) {
        free(g);
        return NULL;
    }
    g->key = *key;
    g->sides = sides;
    return g;
}

void gl_groups_free(gl_groups *g)
{
    if (!g)
        return;
    gl_agg_free(g->table);
    gl_buf_free(&g->arena);
    free(g->e);
    free(g->l);
    free(g);
}

static int grow_entries(gl_groups *g, uint32_t cap) { return gl_array_resize(&g->e, &g->cape, cap, sizeof *g->e); }

int gl_groups_reserve(gl_groups *g, uint64_t rows, uint64_t bytes)
{
    uint64_t keys = rows < bytes / 8 ? rows : bytes / 8;
    if (rows >= UINT32_MAX || bytes > SIZE_MAX / 2)
        return 0; /* a hint only: too big to take up front */
    if (gl_agg_reserve(g->table, (uint32_t)keys) || (rows > g->cape && grow_entries(g, (uint32_t)rows)))
        return -1;
    return gl_buf_reserve(&g->arena, (size_t)bytes);
}

int64_t gl_groups_add_row(gl_groups *g, uint32_t side, const uint8_t *row, size_t len)
{
    int64_t s = gl_agg_slot(g->table, row, len);
    if (s < 0)
        return -1;
    uint32_t slot = (uint32_t)(s >> 1);
    if (slot >= g->capl) {
        uint32_t cap = g->capl ? g->capl * 2 : 256;
        list *l = realloc(g->l, (size_t)cap * g->sides * sizeof *l);
        if (!l)
            return -1;
        for (size_t i = (size_t)g->capl * g->sides; i < (size_t)cap * g->sides; i++)
            l[i] = (list){GL_GROUP_END, GL_GROUP_END, 0, 0};
        g->l = l;
        g->capl = cap;
    }
    if (g->ne == g->cape && grow_entries(g, g->cape ? g->cape * 2 : 1024))
        return -1;
    size_t off = g->arena.len;
    if (gl_buf_append(&g->arena, row, len))
        return -1;
    uint32_t id = g->ne++;
    g->e[id] = (entry){off, (uint32_t)len, GL_GROUP_END};
    list *l = &g->l[(size_t)slot * g->sides + side];
    if (l->tail == GL_GROUP_END)
        l->head = id;
    else
        g->e[l->tail].next = id;
    l->tail = id;
    l->n++;
    l->bytes += len;
    return slot;
}

int gl_groups_add(gl_groups *g, uint32_t side, const uint8_t *rows, size_t len, uint64_t nrows)
{
    const uint8_t *p = rows, *end = rows + len;
    for (uint64_t r = 0; r < nrows; r++) {
        const uint8_t *row = p;
        p = gl_row_end(p, end);
        if (gl_groups_add_row(g, side, row, (size_t)(p - row)) < 0)
            return -1;
    }
    return 0;
}

uint32_t gl_groups_slots(const gl_groups *g) { return gl_agg_count(g->table); }
gl_agg *gl_groups_table(gl_groups *g) { return g->table; }

uint32_t gl_groups_first(const gl_groups *g, uint32_t slot, uint32_t side)
{
    return slot < g->capl ? g->l[(size_t)slot * g->sides + side].head : GL_GROUP_END;
}

uint32_t gl_groups_next(const gl_groups *g, uint32_t entry) { return g->e[entry].next; }

const uint8_t *gl_groups_row(const gl_groups *g, uint32_t entry, size_t *len)
{
    *len = g->e[entry].len;
    return g->arena.data + g->e[entry].off;
}

uint32_t gl_groups_size(const gl_groups *g, uint32_t slot, uint32_t side)
{
    return slot < g->capl ? g->l[(size_t)slot * g->sides + side].n : 0;
}

void gl_groups_prefetch(const gl_groups *g, uint32_t slot, uint32_t side)
{
    if (slot < g->capl)
        __builtin_prefetch(&g->l[(size_t)slot * g->sides + side]);
}

size_t gl_groups_bytes(const gl_groups *g) { return g->arena.len; }

void gl_groups_clear(gl_groups *g, uint32_t slot, uint32_t side)
{
    if (slot < g->capl)
        g->l[(size_t)slot * g->sides + side] = (list){GL_GROUP_END, GL_GROUP_END, 0, 0};
}

/* The slot of (side) holding the most bytes of rows, and *bytes those. */
static uint32_t largest(const gl_groups *g, uint32_t side, uint64_t *bytes)
{
    uint32_t n = gl_groups_slots(g), big = 0;
    uint64_t most = 0;
    for (uint32_t s = 0; s < n && s < g->capl; s++) {
        uint64_t b = g->l[(size_t)s * g->sides + side].bytes;
        if (b > most) {
            most = b;
            big = s;
        }
    }
    *bytes = most;
    return big;
}

int gl_groups_shed(gl_groups *g, uint32_t side, uint64_t keep, uint64_t least,
                   int (*move)(void *ctx, uint32_t slot), void *ctx)
{
    bool moved = false;
    while (gl_groups_bytes(g) > keep) {
        uint64_t bytes;
        uint32_t big = largest(g, side, &bytes);
        if (!bytes || bytes < least)
            break;
        int rc = move(ctx, big);
        if (rc)
            return rc;
        gl_groups_clear(g, big, side);
        moved = true;
    }
    return moved && gl_groups_compact(g) ? GL_ENOMEM : 0;
}

int gl_groups_compact(gl_groups *g)
{
    gl_buf fresh = {0};
    entry *e = malloc((g->ne ? g->ne : 1) * sizeof *e);
    if (!e)
        return -1;
    uint32_t ne = 0;
    for (size_t li = 0; li < (size_t)g->capl * g->sides; li++) {
        list *l = &g->l[li];
        uint32_t prev = GL_GROUP_END;
        for (uint32_t x = l->head; x != GL_GROUP_END; x = g->e[x].next) {
            if (gl_buf_append(&fresh, g->arena.data + g->e[x].off, g->e[x].len)) {
                gl_buf_free(&fresh);
                free(e);
                return -1;
            }
            e[ne] = (entry){fresh.len - g->e[x].len, g->e[x].len, GL_GROUP_END};
            if (prev == GL_GROUP_END)
                l->head = ne;
            else
                e[prev].next = ne;
            prev = ne++;
        }
        l->tail = prev;
    }
    gl_buf_free(&g->arena);
    free(g->e);
    g->arena = fresh;
    g->e = e;
    g->ne = ne;
    g->cape = ne ? ne : 1;
    return 0;
}

int gl_groups_put_rest(gl_buf *out, const gl_groups *g, const uint8_t *row, size_t len)
{
    uint32_t n = gl_row_rest_count(row, row + len, &g->key);
    return (n != 1 && gl_mpk_put_array(out, n)) || gl_row_rest_put(out, row, row + len, &g->key) ? -1 : 0;
}

int gl_groups_put_rests(gl_buf *out, const gl_groups *g, uint32_t slot, uint32_t side)
{
    if (gl_mpk_put_array(out, gl_groups_size(g, slot, side)))
        return -1;
    for (uint32_t e = gl_groups_first(g, slot, side); e != GL_GROUP_END; e = gl_groups_next(g, e)) {
        size_t len;
        const uint8_t *row = gl_groups_row(g, e, &len);
        if (gl_groups_put_rest(out, g, row, len))
            return -1;
    }
    return 0;
}
