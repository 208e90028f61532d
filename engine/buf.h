/* buf.h: growable byte buffer, the unit every row batch and store chunk is
 * built from. A gl_buf owns its bytes; gl_buf_free releases them. The layout
 * is shared with Lua through the FFI (lua/gleam/core.lua), so keep it plain. */
#ifndef GL_BUF_H
#define GL_BUF_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef struct gl_buf {
    uint8_t *data;
    size_t len;
    size_t cap;
} gl_buf;

/* Ensures room for `extra` more bytes. 0 ok, -1 out of memory (buf unchanged). */
int gl_buf_grow(gl_buf *b, size_t extra);

static inline int gl_buf_reserve(gl_buf *b, size_t extra)
{
    return b->cap - b->len >= extra ? 0 : gl_buf_grow(b, extra);
}

static inline int gl_buf_append(gl_buf *b, const void *p, size_t n)
{
    if (!n)
        return 0; /* p may be NULL then, which memcpy does not allow */
    if (gl_buf_reserve(b, n))
        return -1;
    memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

void gl_buf_free(gl_buf *b);

/* Resizes the array *p of *cap items of `size` bytes to cap items. 0 ok,
 * -1 out of memory (the array unchanged). */
int gl_array_resize(void *p, uint32_t *cap, uint32_t cap_new, size_t size);

#endif
