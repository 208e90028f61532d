/* err.h: errors the library returns. A function that can fail takes a
 * gl_err the caller owns, fills it with one line that names what and where,
 * and returns its negative code; nothing in the library prints. */
#ifndef GL_ERR_H
#define GL_ERR_H

enum {
    GL_OK = 0,
    GL_EINVAL = -1,  /* bad argument or input */
    GL_ENOMEM = -2,
    GL_EIO = -3,     /* a file could not be read */
    GL_ETASK = -4,   /* a user function failed */
    GL_ECANCEL = -5,
    GL_EDONE = -6,   /* not a failure: the task needs no more input (limit) */
};

typedef struct gl_err {
    int code;
    char msg[1024];
} gl_err;

/* Formats the message (cut to fit) and returns code. err may be NULL. */
int gl_err_set(gl_err *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
