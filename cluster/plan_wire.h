/* plan_wire.h: a flow's plan as bytes, so a driver can ship it to executors.
 *
 * An executor rebuilds the driver's plan step by step through the same
 * gl_plan_* calls the Lua API made, so every check the engine makes on a
 * step runs again on the executor, on bytes from the network: a plan that
 * decodes is one the engine would have accepted from the API. Step ids come
 * out equal (steps are added in order), so a stage or step named by id on
 * the driver is the same on the executor.
 *
 * Format: a msgpack array [version, steps], each step an array of fixed
 * positions (see plan_wire.c). Host C functions (gleam_register_mapper)
 * live in the driver's process only and are refused at encoding. */
#ifndef GL_PLAN_WIRE_H
#define GL_PLAN_WIRE_H

#include "buf.h"
#include "err.h"
#include "plan.h"

#define GL_PLAN_WIRE_VERSION 2 /* 2: the persist parameter */

/* Appends the encoding of p to out. 0, GL_ENOMEM, or GL_EINVAL (with the
 * step named in err) for a plan that can't travel. */
int gl_plan_encode(const gl_plan *p, gl_buf *out, gl_err *err);

/* Rebuilds a plan from [data, data+len). On success *out is a new plan the
 * caller frees (gl_plan_free); else GL_EINVAL or GL_ENOMEM with err set. */
int gl_plan_decode(const uint8_t *data, size_t len, gl_plan **out, gl_err *err);

#endif
