/* cfn.h: host C functions in the row loop (gleam_register_mapper and
 * _reducer in gleam.h): the process-wide registry, rows as gleam_value
 * arrays and back, and the ops that call them. */
#ifndef GL_CFN_H
#define GL_CFN_H

#include "buf.h"
#include "gleam.h"

#include <stdint.h>

enum { GL_CFN_NONE, GL_CFN_MAPPER, GL_CFN_REDUCER };

typedef struct gl_cfn {
    char name[64];
    int kind;
    gleam_map_fn map;
    gleam_reduce_fn reduce;
    void *ud;
} gl_cfn;

/* The registered function of that name, or NULL. Entries live as long as
 * the process. */
const gl_cfn *gl_cfn_find(const char *name);

/* Fills a public gleam_error (which may be NULL); returns code. */
int gl_api_error(gleam_error *err, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* For the Lua side (FFI): GL_CFN_NONE, _MAPPER or _REDUCER. */
int gl_cfn_kind(const char *name);

/* Decoded values, reused from row to row: the arena grows to the largest
 * row seen and is never shrunk. Strings point into the decoded bytes. */
typedef struct gl_vals {
    gleam_value *v;
    size_t cap;
} gl_vals;

/* Decodes n msgpack values at p (well formed, ending by end) into the
 * arena; *out points at the n top-level values. 0 ok, -1 out of memory. */
int gl_vals_decode(gl_vals *a, const uint8_t *p, const uint8_t *end, size_t n, const gleam_value **out);
void gl_vals_free(gl_vals *a);

/* Appends the encoding of one value. 0 ok, -1 out of memory or bad type. */
int gl_value_put(gl_buf *out, const gleam_value *v);

#endif
