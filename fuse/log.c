/* chainfs: the daemon's log (see log.h). */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <syslog.h>
#include <glib.h>
#include <fuse_log.h>

#include "log.h"

static bool use_syslog;

/* While capturing (startup, one thread), libfuse's errors are kept here
 * instead of printed, to become part of our own one-line message. */
static bool capturing;
static char *captured;

/* Write one message; trailing newlines are dropped, one is added. */
static void emit(int priority, char *message)
{
    size_t len = strlen(message);

    while (len > 0 && message[len - 1] == '\n') {
        message[--len] = '\0';
    }
    if (use_syslog) {
        syslog(priority, "%s", message);
    } else {
        fprintf(stderr, "chainfs: %s\n", message);
    }
}

static void log_message(int priority, const char *fmt, va_list ap)
{
    g_autofree char *message = g_strdup_vprintf(fmt, ap);

    emit(priority, message);
}

/* libfuse sometimes builds one message from several calls: fragments are
 * collected until a newline ends the line. */
static pthread_mutex_t libfuse_lock = PTHREAD_MUTEX_INITIALIZER;
static GString *libfuse_line;

/* libfuse prefixes most messages with "fuse: "; ours say "chainfs: ", so
 * that prefix is dropped.  Debug traces (-o debug) pass through as is. */
static void log_from_libfuse(enum fuse_log_level level, const char *fmt,
                             va_list ap)
{
    g_autofree char *fragment = g_strdup_vprintf(fmt, ap);
    g_autofree char *message = NULL;
    char *text;
    int priority = level <= FUSE_LOG_ERR ? LOG_ERR :
                   level <= FUSE_LOG_WARNING ? LOG_WARNING :
                   level <= FUSE_LOG_INFO ? LOG_INFO : LOG_DEBUG;

    if (level >= FUSE_LOG_DEBUG) {
        if (use_syslog) {
            syslog(LOG_DEBUG, "%s", fragment);
        } else {
            fputs(fragment, stderr);
        }
        return;
    }

    pthread_mutex_lock(&libfuse_lock);
    if (!libfuse_line) {
        libfuse_line = g_string_new(NULL);
    }
    g_string_append(libfuse_line, fragment);
    if (!g_str_has_suffix(libfuse_line->str, "\n")) {
        pthread_mutex_unlock(&libfuse_lock);
        return;
    }
    message = g_strdup(libfuse_line->str);
    g_string_truncate(libfuse_line, 0);
    pthread_mutex_unlock(&libfuse_lock);

    text = message;
    if (g_str_has_prefix(text, "fuse: ")) {
        text += strlen("fuse: ");
    }
    if (capturing && priority <= LOG_ERR) {
        g_free(captured);
        captured = g_strchomp(g_strdup(text));
        return;
    }
    emit(priority, text);
}

void log_init(void)
{
    use_syslog = false;
    fuse_set_log_func(log_from_libfuse);
}

void log_capture_fuse_errors(bool capture)
{
    capturing = capture;
}

char *log_take_fuse_error(void)
{
    char *message = captured;

    captured = NULL;
    return message;
}

void log_to_syslog(void)
{
    openlog("chainfs", LOG_PID, LOG_DAEMON);
    use_syslog = true;
}

void log_error(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    log_message(LOG_ERR, fmt, ap);
    va_end(ap);
}

void log_warning(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    log_message(LOG_WARNING, fmt, ap);
    va_end(ap);
}

void log_info(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    log_message(LOG_INFO, fmt, ap);
    va_end(ap);
}
