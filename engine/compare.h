/* compare.h: the one total order and the one hash over msgpack values.
 *
 * Order: nil < booleans (false < true) < numbers < strings < arrays < maps <
 * ext. Numbers compare by value across integer and double (1 == 1.0,
 * -0.0 == 0), NaN after every other number and equal to itself. Strings
 * compare byte-wise, a prefix first. Arrays compare item by item, then by
 * length. Maps by size, then pair by pair in stored order. The hash agrees
 * with the order: values that compare equal hash equal. Sort, shuffle, top
 * and aggregation all use these, in C and (through the FFI) in Lua. */
#ifndef GL_COMPARE_H
#define GL_COMPARE_H

#include <stddef.h>
#include <stdint.h>

/* Compares the values at *a and *b and advances both past them. The values
 * must be well formed (gl_mpk_skip succeeded on them). Returns <0, 0, >0. */
int gl_cmp_next(const uint8_t **a, const uint8_t *ea, const uint8_t **b, const uint8_t *eb);

/* Compares two sequences of n values each. */
int gl_cmp_seq(const uint8_t *a, const uint8_t *ea, const uint8_t *b, const uint8_t *eb, uint32_t n);

/* A 64-bit summary of the value at p that agrees with the order where it
 * can: if gl_cmp_prefix(a) < gl_cmp_prefix(b) then a < b. Equal prefixes
 * say nothing (compare the values). The top byte is the class; strings
 * keep their first 7 bytes, numbers the top 56 bits of an order-preserving
 * form of their double value. */
uint64_t gl_cmp_prefix(const uint8_t *p, const uint8_t *end);

/* Hashes the value at *p and advances past it. */
uint64_t gl_hash_next(const uint8_t **p, const uint8_t *end, uint64_t seed);

uint64_t gl_hash_bytes(const void *p, size_t n, uint64_t seed);

/* What gl_hash_next gives a string value with these bytes, for callers that
 * hold the bytes without an encoding (a word found in a line). */
uint64_t gl_hash_str(const void *s, size_t n, uint64_t seed);

static inline uint64_t gl_hash_mix(uint64_t h)
{
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 33;
    return h;
}

#endif
