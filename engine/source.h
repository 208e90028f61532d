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

/* source_csv.c: CSV and TSV files (RFC 4180 quoting); each file is read
 * whole by one task. Malformed lines fail the task naming file and line,
 * or, when the step skips them, are counted in *skipped. */
int gl_csv_read(const gl_stage *st, const gl_step *s, uint32_t task, gl_emit_fn emit, void *ctx,
                uint64_t *skipped, gl_err *err);

/* source_msgpack.c: files of back-to-back msgpack rows (what save writes
 * with format "msgpack"), each checked before it is passed on. */
int gl_msgpack_read(const gl_stage *st, uint32_t task, gl_emit_fn emit, void *ctx, gl_err *err);

#endif
