/* chainfs: the daemon's log.
 *
 * Messages are one line each.  In the foreground they go to stderr as
 * "chainfs: MESSAGE"; once the daemon runs in the background they go to
 * syslog.  libfuse's own messages are routed here too.  Thread-safe.
 */
#ifndef CHAINFS_LOG_H
#define CHAINFS_LOG_H

#include <stdbool.h>

/* Start logging to stderr and route libfuse's messages through us. */
void log_init(void);

/* While capture is true, keep libfuse's error messages instead of
 * printing them (startup only: not thread-safe). */
void log_capture_fuse_errors(bool capture);

/* The last libfuse error kept while capturing, or NULL; g_free() it. */
char *log_take_fuse_error(void);

/* From now on log to syslog (after the daemon detached from the terminal). */
void log_to_syslog(void);

void log_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_warning(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
