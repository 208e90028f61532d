/* infile.c: plain or gzip input files (see infile.h). */
#include "infile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <string.h>
#include <unistd.h>

int gl_infile_open(gl_infile *f, const char *who, const char *path, gl_err *err)
{
    f->gz = NULL;
    f->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (f->fd < 0)
        return gl_err_set(err, GL_EIO, "%s: cannot read '%s': %s", who, path, strerror(errno));
    size_t n = strlen(path);
    if (n >= 3 && !strcmp(path + n - 3, ".gz")) {
        if (!(f->gz = gzdopen(f->fd, "rb"))) {
            close(f->fd);
            return gl_err_set(err, GL_ENOMEM, "%s: out of memory", who);
        }
        gzbuffer(f->gz, 256u << 10);
    }
    return 0;
}

ssize_t gl_infile_read(gl_infile *f, uint8_t *buf, size_t cap, const char *who, const char *path, gl_err *err)
{
    if (f->gz) {
        int n = gzread(f->gz, buf, (unsigned)cap);
        int zerr = Z_OK;
        const char *zmsg = n <= 0 ? gzerror(f->gz, &zerr) : NULL;
        /* zlib names a stream opened by gzdopen "<fd:N>": the path says more. */
        const char *named = zmsg && zmsg[0] == '<' ? strstr(zmsg, ">: ") : NULL;
        if (named)
            zmsg = named + 3;
        /* A stream cut short ends with Z_BUF_ERROR ("unexpected end of file"). */
        if (n < 0 || (n == 0 && zerr != Z_OK))
            return gl_err_set(err, GL_EIO, "%s: '%s': %s", who, path,
                              zerr == Z_ERRNO ? strerror(errno) : zmsg);
        return n;
    }
    for (;;) {
        ssize_t n = read(f->fd, buf, cap);
        if (n >= 0)
            return n;
        if (errno != EINTR)
            return gl_err_set(err, GL_EIO, "%s: cannot read '%s': %s", who, path, strerror(errno));
    }
}

int gl_infile_seek(gl_infile *f, uint64_t off, const char *who, const char *path, gl_err *err)
{
    bool ok = f->gz ? gzseek(f->gz, (z_off_t)off, SEEK_SET) == (z_off_t)off
                    : lseek(f->fd, (off_t)off, SEEK_SET) == (off_t)off;
    return ok ? 0 : gl_err_set(err, GL_EIO, "%s: cannot seek in '%s'", who, path);
}

void gl_infile_close(gl_infile *f)
{
    if (f->gz)
        gzclose(f->gz); /* closes fd too */
    else if (f->fd >= 0)
        close(f->fd);
}

