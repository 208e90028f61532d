/* buf.c: growth policy for gl_buf (doubling, so appends are amortized O(1)),
 * and resizing of the engine's plain arrays. */
#include "buf.h"

#include <stdlib.h>

int gl_buf_grow(gl_buf *b, size_t extra)
{
    size_t need = b->len + extra;
    if (need < b->len)
        return -1;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need) {
        if (cap > SIZE_MAX / 2)
            return -1;
        cap *= 2;
    }
    uint8_t *p = realloc(b->data, cap);
    if (!p)
        return -1;
    b->data = p;
    b->cap = cap;
    return 0;
}

void gl_buf_free(gl_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

int gl_array_resize(void *p, uint32_t *cap, uint32_t cap_new, size_t size)
{
    void **arr = p;
    void *v = realloc(*arr, (size_t)cap_new * size);
    if (!v && cap_new)
        return -1;
    *arr = v;
    *cap = cap_new;
    return 0;
}
