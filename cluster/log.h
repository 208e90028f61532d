/* log.h: the daemons' logger. One line per event on stderr:
 *
 *   2026-11-25T18:30:00.123Z master info: agent 10.0.0.7:45327 registered
 *
 * time (UTC), the process's component (set once by gl_log_init), the
 * level, the text. Peers' text reaches a line only through the wire
 * decoder, which has replaced control bytes, so a line is always one line. */
#ifndef GL_LOG_H
#define GL_LOG_H

enum gl_log_level { GL_LOG_ERROR, GL_LOG_WARN, GL_LOG_INFO, GL_LOG_DEBUG };

/* component: borrowed for the life of the process ("master", "agent"). */
void gl_log_init(const char *component, enum gl_log_level max);

void gl_log(enum gl_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
