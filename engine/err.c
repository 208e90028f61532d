/* err.c: filling a gl_err. */
#include "err.h"

#include <stdarg.h>
#include <stdio.h>

int gl_err_set(gl_err *err, int code, const char *fmt, ...)
{
    if (!err)
        return code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    err->code = code;
    return code;
}
