/* infile.h: an input file read front to back, plain or gzip (by its
 * ".gz" name), for the sources that read whole files (csv, msgpack).
 * Errors name the source (`who`) and the path. */
#ifndef GL_INFILE_H
#define GL_INFILE_H

#include "err.h"

#include <stdint.h>
#include <sys/types.h>
#include <zlib.h>

typedef struct gl_infile {
    int fd;
    gzFile gz;
} gl_infile;

int gl_infile_open(gl_infile *f, const char *who, const char *path, gl_err *err);
/* Returns the bytes read into buf (0 at the end) or a negative code. */
ssize_t gl_infile_read(gl_infile *f, uint8_t *buf, size_t cap, const char *who, const char *path, gl_err *err);
/* Moves to offset off of the (decompressed) stream. */
int gl_infile_seek(gl_infile *f, uint64_t off, const char *who, const char *path, gl_err *err);
void gl_infile_close(gl_infile *f);

#endif
