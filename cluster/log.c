/* log.c: formatting one log line (log.h). The line is built whole and
 * written with one call, so lines from a daemon never interleave. */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <sys/time.h>
#include <time.h>

static const char *component = "gleam";
static enum gl_log_level max_level = GL_LOG_INFO;

void gl_log_init(const char *c, enum gl_log_level max)
{
    component = c;
    max_level = max;
}

void gl_log(enum gl_log_level level, const char *fmt, ...)
{
    static const char *const names[] = {"error", "warn", "info", "debug"};
    if (level > max_level)
        return;
    char line[2048];
    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    gmtime_r(&tv.tv_sec, &tm);
    int n = (int)strftime(line, sizeof line, "%Y-%m-%dT%H:%M:%S", &tm);
    n += snprintf(line + n, sizeof line - (size_t)n, ".%03dZ %s %s: ", (int)(tv.tv_usec / 1000), component,
                  names[level]);
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
    va_end(ap);
    if (m < 0)
        m = 0;
    n = n + m < (int)sizeof line - 1 ? n + m : (int)sizeof line - 2; /* cut to fit */
    line[n++] = '\n';
    fwrite(line, 1, (size_t)n, stderr);
    fflush(stderr);
}
