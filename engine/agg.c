/* agg.c: open addressing with linear probing over slot numbers; keys live
 * back to back in one arena. Equal keys can have different bytes (1 and
 * 1.0), so a byte mismatch with an equal hash falls back to the order. */
#include "agg.h"

#include "compare.h"

#include <stdlib.h>
#include <string.h>

typedef struct slot {
    uint64_t hash;
    size_t koff;
    uint32_t klen;
} slot;

struct gl_agg {
    gl_keyspec key;
    gl_buf keys;
    gl_buf scratch;
    slot *slots;
    uint32_t n, cap;
    uint32_t *index; /* slot + 1; 0 is empty */
    uint32_t mask;
};

gl_agg *gl_agg_new(const gl_keyspec *key)
{
    gl_agg *a = calloc(1, sizeof *a);
    if (!a)
        return NULL;
    a->key = *key;
    a->mask = 1023;
    a->index = calloc(a->mask + 1, sizeof *a->index);
    /* Both buffers get storage now: an empty key (reduce, n = 0) must not
     * leave NULL pointers for memcpy and memcmp, even for 0 bytes. */
    if (!a->index || gl_buf_reserve(&a->keys, 1) || gl_buf_reserve(&a->scratch, 1)) {
        gl_agg_free(a);
        return NULL;
    }
    return a;
}

void gl_agg_free(gl_agg *a)
{
    if (!a)
        return;
    gl_buf_free(&a->keys);
    gl_buf_free(&a->scratch);
    free(a->slots);
    free(a->index);
    free(a);
}

static int rehash(gl_agg *a)
{
    uint32_t size = (a->mask + 1) * 2;
    uint32_t *idx = calloc(size, sizeof *idx);
    if (!idx)
        return -1;
    for (uint32_t s = 0; s < a->n; s++) {
        uint32_t b = (uint32_t)a->slots[s].hash & (size - 1);
        while (idx[b])
            b = (b + 1) & (size - 1);
        idx[b] = s + 1;
    }
    free(a->index);
    a->index = idx;
    a->mask = size - 1;
    return 0;
}

/* Puts the row's key in a->scratch and returns its hash and bucket; *found
 * is the slot + 1 holding it, or 0 with the bucket where it would go. */
static int lookup(gl_agg *a, const uint8_t *row, size_t len, uint64_t *hash, uint32_t *bucket, uint32_t *found)
{
    const uint8_t *end = row + len;
    a->scratch.len = 0;
    if (gl_row_key_put(&a->scratch, row, end, &a->key))
        return -1;
    const uint8_t *k = a->scratch.data, *ke = k + a->scratch.len;
    uint64_t h = 0x243f6a8885a308d3ull;
    for (const uint8_t *p = k; p < ke;)
        h = gl_hash_next(&p, ke, h);
    uint32_t b = (uint32_t)h & a->mask;
    *hash = h;
    *found = 0;
    for (;;) {
        uint32_t s = a->index[b];
        if (!s)
            break;
        slot *sl = &a->slots[s - 1];
        if (sl->hash == h) {
            const uint8_t *sk = a->keys.data + sl->koff;
            if ((sl->klen == a->scratch.len && !memcmp(sk, k, sl->klen)) ||
                !gl_cmp_seq(sk, sk + sl->klen, k, ke, gl_key_values(&a->key))) {
                *found = s;
                break;
            }
        }
        b = (b + 1) & a->mask;
    }
    *bucket = b;
    return 0;
}

int64_t gl_agg_find(gl_agg *a, const uint8_t *row, size_t len)
{
    uint64_t h;
    uint32_t b, found;
    if (lookup(a, row, len, &h, &b, &found))
        return -1;
    return found ? (int64_t)found - 1 : -1;
}

int64_t gl_agg_slot(gl_agg *a, const uint8_t *row, size_t len)
{
    uint64_t h;
    uint32_t b, found;
    if (lookup(a, row, len, &h, &b, &found))
        return -1;
    if (found)
        return (int64_t)(found - 1) * 2;
    if (a->n == a->cap) {
        uint32_t cap = a->cap ? a->cap * 2 : 256;
        slot *v = realloc(a->slots, cap * sizeof *v);
        if (!v)
            return -1;
        a->slots = v;
        a->cap = cap;
    }
    size_t koff = a->keys.len;
    if (gl_buf_append(&a->keys, a->scratch.data, a->scratch.len))
        return -1;
    a->slots[a->n] = (slot){h, koff, (uint32_t)a->scratch.len};
    a->index[b] = ++a->n;
    if (a->n * 2 > a->mask && rehash(a))
        return -1;
    return (int64_t)(a->n - 1) * 2 + 1;
}

const uint8_t *gl_agg_key(const gl_agg *a, uint32_t slot, size_t *len)
{
    *len = a->slots[slot].klen;
    return a->keys.data + a->slots[slot].koff;
}

uint32_t gl_agg_count(const gl_agg *a) { return a->n; }
uint32_t gl_agg_nkeys(const gl_agg *a) { return a->key.n; }

size_t gl_agg_bytes(const gl_agg *a)
{
    return a->keys.cap + (size_t)a->cap * sizeof(slot) + (size_t)(a->mask + 1) * sizeof(uint32_t);
}
