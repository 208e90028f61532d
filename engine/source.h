/* source.h: the rows a stage starts from. Each reader produces batches of
 * whole rows and hands them to `emit`, which returns 0 to go on or a
 * negative code to stop (the task failed or was cancelled). */
#ifndef GL_SOURCE_H
#define GL_SOURCE_H

#include "err.h"
#include "plan.h"

typedef int (*gl_emit_fn)(void *ctx, const uint8_t *rows, size_t len, uint64_t nrows);

/* Rows in a batch before it is handed on. */
#define GL_BATCH_BYTES (64u * 1024u)

int gl_text_read(const gl_stage *st, uint32_t task, gl_emit_fn emit, void *ctx, gl_err *err);
int gl_range_read(const gl_step *s, uint32_t task, uint32_t ntasks, gl_emit_fn emit, void *ctx, gl_err *err);
int gl_rows_read(const gl_step *s, uint32_t task, uint32_t ntasks, gl_emit_fn emit, void *ctx, gl_err *err);

#endif
