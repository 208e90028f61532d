/* agg.c: open addressing with linear probing over slot numbers; keys live
 * back to back in one arena. Equal keys can have different bytes (1 and
 * 1.0), so a byte mismatch with an equal hash falls back to the order.
 * An index entry holds the top half of its key's hash beside the slot
 * number, and where the key's bytes are: a probe passes other keys'
 * buckets on the entry alone (a join's probes mostly find nothing), and
 * a hit goes from the entry to the key's bytes without loading its slot.
 * Index, slot and key were three dependent cache misses a lookup once a
 * table outgrew the cache: 55% of a built-in word count's time. */
#include "agg.h"

#include "compare.h"
#include "mpk.h"

#include <stdlib.h>
#include <string.h>

typedef struct slot {
    uint64_t hash;
    size_t koff;
    uint32_t klen;
} slot;

typedef struct entry {
    uint64_t tag; /* hash >> 32 << 32 | slot + 1; 0 is empty */
    uint64_t key; /* koff << 16 | klen, or | KLEN_LONG: the length is the slot's */
} entry;

#define KLEN_LONG 0xffffu

struct gl_agg {
    gl_keyspec key;
    gl_buf keys;
    gl_buf scratch;
    slot *slots;
    uint32_t n, cap;
    entry *index;
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

/* The hash of a key's bytes (one msgpack value per key field). */
#define KEY_SEED 0x243f6a8885a308d3ull
static uint64_t key_hash(const uint8_t *k, const uint8_t *ke)
{
    uint64_t h = KEY_SEED;
    for (const uint8_t *p = k; p < ke;)
        h = gl_hash_next(&p, ke, h);
    return h;
}

static inline entry entry_of(uint64_t h, uint32_t slot, size_t koff, size_t klen)
{
    return (entry){(h & 0xffffffff00000000ull) | (slot + 1),
                   (uint64_t)koff << 16 | (klen < KLEN_LONG ? klen : KLEN_LONG)};
}
static inline uint32_t entry_slot(entry e) { return (uint32_t)e.tag - 1; }
static inline bool entry_tagged(entry e, uint64_t h) { return (e.tag ^ h) >> 32 == 0; }
static inline size_t entry_koff(entry e) { return (size_t)(e.key >> 16); }
static inline size_t entry_klen(const gl_agg *a, entry e)
{
    size_t n = e.key & KLEN_LONG;
    return n < KLEN_LONG ? n : a->slots[entry_slot(e)].klen;
}

/* Moves the index to one of `size` buckets (a power of two). */
static int rehash_to(gl_agg *a, uint32_t size)
{
    entry *idx = calloc(size, sizeof *idx);
    if (!idx)
        return -1;
    for (uint32_t s = 0; s < a->n; s++) {
        const slot *sl = &a->slots[s];
        uint32_t b = (uint32_t)sl->hash & (size - 1);
        while (idx[b].tag)
            b = (b + 1) & (size - 1);
        idx[b] = entry_of(sl->hash, s, sl->koff, sl->klen);
    }
    free(a->index);
    a->index = idx;
    a->mask = size - 1;
    return 0;
}

static int rehash(gl_agg *a) { return rehash_to(a, (a->mask + 1) * 2); }

static int grow_slots(gl_agg *a, uint32_t cap) { return gl_array_resize(&a->slots, &a->cap, cap, sizeof *a->slots); }

int gl_agg_reserve(gl_agg *a, uint32_t n)
{
    if (n > (1u << 30))
        return -1;
    uint32_t size = a->mask + 1;
    while (n * 2 > size - 1) /* the load add() keeps: at most half full */
        size *= 2;
    if (size > a->mask + 1 && rehash_to(a, size))
        return -1;
    return n > a->cap ? grow_slots(a, n) : 0;
}

/* The row's key bytes: in place when the key is one field (nothing to
 * copy), else gathered into a->scratch. Borrowed until the next lookup. */
static int key_of(gl_agg *a, const uint8_t *row, size_t len, const uint8_t **k, const uint8_t **ke)
{
    const uint8_t *end = row + len;
    if (a->key.n == 1) {
        gl_row_field(row, end, a->key.f[0], k, ke);
        return 0;
    }
    a->scratch.len = 0;
    if (gl_row_key_put(&a->scratch, row, end, &a->key))
        return -1;
    *k = a->scratch.data;
    *ke = *k + a->scratch.len;
    return 0;
}

/* Returns slot + 1 of the key [k, ke) with hash h, or 0 and sets *bucket
 * where it would go. */
static uint32_t probe(const gl_agg *a, const uint8_t *k, const uint8_t *ke, uint64_t h, uint32_t *bucket)
{
    size_t klen = (size_t)(ke - k);
    uint32_t b = (uint32_t)h & a->mask;
    for (;;) {
        entry e = a->index[b];
        if (!e.tag)
            break;
        if (entry_tagged(e, h)) {
            const uint8_t *sk = a->keys.data + entry_koff(e);
            size_t sn = entry_klen(a, e);
            if ((sn == klen && !memcmp(sk, k, klen)) || (a->slots[entry_slot(e)].hash == h &&
                                                         !gl_cmp_seq(sk, sk + sn, k, ke, gl_key_values(&a->key)))) {
                *bucket = b;
                return entry_slot(e) + 1;
            }
        }
        b = (b + 1) & a->mask;
    }
    *bucket = b;
    return 0;
}

/* Adds slot a->n for the key whose bytes were just appended to a->keys at
 * koff, in bucket b. Returns its slot * 2 + 1, or -1. */
static int64_t add(gl_agg *a, size_t koff, uint64_t h, uint32_t b)
{
    if (a->n == a->cap && grow_slots(a, a->cap ? a->cap * 2 : 256))
        return -1;
    size_t klen = a->keys.len - koff;
    a->slots[a->n] = (slot){h, koff, (uint32_t)klen};
    a->index[b] = entry_of(h, a->n++, koff, klen);
    if (a->n * 2 > a->mask && rehash(a))
        return -1;
    return (int64_t)(a->n - 1) * 2 + 1;
}

int64_t gl_agg_find(gl_agg *a, const uint8_t *row, size_t len)
{
    const uint8_t *k, *ke;
    if (key_of(a, row, len, &k, &ke))
        return -1;
    uint32_t b, found = probe(a, k, ke, key_hash(k, ke), &b);
    return found ? (int64_t)found - 1 : -1;
}

/* key_hash of the key's bytes is the running gl_hash_next over its fields,
 * which gl_row_key_hash computes without gathering them. */
uint64_t gl_agg_hash(const gl_agg *a, const uint8_t *row, size_t len)
{
    return gl_row_key_hash(row, row + len, &a->key, KEY_SEED);
}

void gl_agg_prefetch(const gl_agg *a, uint64_t h) { __builtin_prefetch(&a->index[(uint32_t)h & a->mask]); }

int64_t gl_agg_prefetch_slot(const gl_agg *a, uint64_t h)
{
    for (uint32_t b = (uint32_t)h & a->mask;; b = (b + 1) & a->mask) {
        entry e = a->index[b];
        if (!e.tag)
            return -1;
        if (entry_tagged(e, h)) {
            __builtin_prefetch(a->keys.data + entry_koff(e));
            return entry_slot(e);
        }
    }
}

int64_t gl_agg_find_hashed(gl_agg *a, const uint8_t *row, size_t len, uint64_t h)
{
    const uint8_t *k, *ke;
    if (key_of(a, row, len, &k, &ke))
        return -1;
    uint32_t b, found = probe(a, k, ke, h, &b);
    return found ? (int64_t)found - 1 : -1;
}

int64_t gl_agg_slot(gl_agg *a, const uint8_t *row, size_t len)
{
    const uint8_t *k, *ke;
    if (key_of(a, row, len, &k, &ke))
        return -1;
    uint64_t h = key_hash(k, ke);
    uint32_t b, found = probe(a, k, ke, h, &b);
    if (found)
        return (int64_t)(found - 1) * 2;
    size_t koff = a->keys.len;
    if (gl_buf_append(&a->keys, k, (size_t)(ke - k)))
        return -1;
    return add(a, koff, h, b);
}

/* The string key's slot without a row: the hash is the one key_hash gives
 * the encoded string (gl_hash_str), and a stored key matches if it decodes
 * to a string of the same bytes, however it was encoded. */
int64_t gl_agg_slot_str(gl_agg *a, const void *str, size_t n)
{
    const uint8_t *s = str;
    uint64_t h = gl_hash_str(s, n, KEY_SEED);
    uint32_t b = (uint32_t)h & a->mask;
    for (;;) {
        entry e = a->index[b];
        if (!e.tag)
            break;
        if (entry_tagged(e, h)) {
            const uint8_t *sk = a->keys.data + entry_koff(e);
            size_t sn = entry_klen(a, e);
            /* Most keys are short strings stored as fixstr: one byte of
             * header, then the bytes. */
            if (sn == n + 1 && sk[0] == 0xa0 + n && n < 32) {
                if (!memcmp(sk + 1, s, n))
                    return (int64_t)entry_slot(e) * 2;
            } else {
                gl_mpk_head hd;
                if (gl_mpk_head_read(sk, sk + sn, &hd) == sk + sn && hd.cls == GL_MPK_STR && hd.n == n &&
                    (!n || !memcmp(hd.body, s, n)))
                    return (int64_t)entry_slot(e) * 2;
            }
        }
        b = (b + 1) & a->mask;
    }
    size_t koff = a->keys.len;
    if (gl_mpk_put_str(&a->keys, s, n))
        return -1;
    return add(a, koff, h, b);
}

int64_t gl_agg_slot_strs(gl_agg *a, const uint8_t *p, size_t len)
{
    const uint8_t *end = p + len;
    while (p < end) {
        gl_mpk_head h;
        const uint8_t *q = gl_mpk_head_read(p, end, &h);
        if (!q || h.cls != GL_MPK_STR)
            return -2;
        if (gl_agg_slot_str(a, h.body, h.n) < 0)
            return -1;
        p = q;
    }
    return a->n;
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
    return a->keys.cap + (size_t)a->cap * sizeof(slot) + (size_t)(a->mask + 1) * sizeof(*a->index);
}
