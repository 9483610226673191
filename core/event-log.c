/* chainfs: the append-only event log (see event-log.h). */
#include "core/event-log.h"
#include "core/deadline.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

struct event_line {
    char *text;
    size_t len;
    uint64_t offset;        /* of the first byte in the whole stream */
};

struct event_log {
    pthread_mutex_t lock;
    pthread_cond_t appended;
    /* Protected by lock: */
    struct event_line *ring;
    unsigned kept;          /* lines kept at least */
    unsigned capacity;      /* ring slots: kept + EVENT_LOG_DROP_SLACK */
    unsigned oldest;        /* ring index of the oldest line */
    unsigned count;         /* lines in the ring */
    uint64_t size;          /* bytes ever appended */
    uint64_t dropped_bytes; /* the dropped prefix: offset of the oldest line */
    uint64_t dropped_lines; /* lines no longer kept */
    event_log_notify_fn *notify;
    void *notify_opaque;
};

struct event_log *event_log_new(unsigned kept)
{
    struct event_log *log = g_new0(struct event_log, 1);
    pthread_condattr_t attr;

    log->kept = kept < EVENT_LOG_MIN_KEPT ? EVENT_LOG_MIN_KEPT : kept;
    log->capacity = log->kept + EVENT_LOG_DROP_SLACK;
    log->ring = g_new0(struct event_line, log->capacity);
    pthread_mutex_init(&log->lock, NULL);
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&log->appended, &attr);
    pthread_condattr_destroy(&attr);
    return log;
}

void event_log_free(struct event_log *log)
{
    if (!log) {
        return;
    }
    for (unsigned i = 0; i < log->count; i++) {
        g_free(log->ring[(log->oldest + i) % log->capacity].text);
    }
    g_free(log->ring);
    pthread_cond_destroy(&log->appended);
    pthread_mutex_destroy(&log->lock);
    g_free(log);
}

void event_log_set_notify(struct event_log *log, event_log_notify_fn *notify,
                          void *opaque)
{
    pthread_mutex_lock(&log->lock);
    log->notify = notify;
    log->notify_opaque = opaque;
    pthread_mutex_unlock(&log->lock);
}

void event_log_quote_value(GString *out, const char *value)
{
    const char *end = value + strnlen(value, EVENT_LOG_MAX_VALUE);
    bool needs_quotes = value == end;

    for (const char *p = value; p < end && !needs_quotes; p++) {
        needs_quotes = *p == ' ' || *p == '\t' || *p == '"' ||
                       (unsigned char)*p < 0x20 || *p == 0x7f;
    }
    if (!needs_quotes) {
        g_string_append_len(out, value, end - value);
        return;
    }
    g_string_append_c(out, '"');
    for (const char *p = value; p < end; p++) {
        if (*p == '"' || *p == '\\') {
            g_string_append_c(out, '\\');
            g_string_append_c(out, *p);
        } else if (((unsigned char)*p < 0x20 && *p != '\t') || *p == 0x7f) {
            g_string_append_c(out, ' ');
        } else {
            g_string_append_c(out, *p);
        }
    }
    g_string_append_c(out, '"');
}

/* The placeholder's text for n dropped lines, without its newline, into
 * buf (which holds 64 bytes); returns its length. */
static size_t placeholder_text(uint64_t n, char *buf)
{
    return snprintf(buf, 64, "# %" PRIu64 " earlier events dropped", n);
}

/* Drop the lines beyond kept once, together with the dropped prefix, they
 * are long enough to read as the placeholder line (see event-log.h). */
static void event_log_drop_old_locked(struct event_log *log)
{
    char text[64];
    unsigned excess;
    uint64_t bytes;

    if (log->count <= log->kept) {
        return;
    }
    excess = log->count - log->kept;
    bytes = log->ring[(log->oldest + excess) % log->capacity].offset -
            log->dropped_bytes;
    if (log->dropped_bytes + bytes <
        placeholder_text(log->dropped_lines + excess, text) + 1) {
        return;
    }
    for (unsigned i = 0; i < excess; i++) {
        g_free(log->ring[log->oldest].text);
        log->oldest = (log->oldest + 1) % log->capacity;
    }
    log->count -= excess;
    log->dropped_lines += excess;
    log->dropped_bytes += bytes;
}

/* Append one line: the time stamp, then body (`EVENT key=value ...\n`).
 * The time is taken under the lock so that time stamps follow log order. */
static void event_log_push_line(struct event_log *log, const char *body)
{
    struct event_line *slot;
    event_log_notify_fn *notify;
    void *notify_opaque;
    uint64_t size;
    int64_t now_us;
    char *text;

    pthread_mutex_lock(&log->lock);
    now_us = g_get_real_time();
    text = g_strdup_printf("%" G_GINT64_FORMAT ".%06d %s",
                           now_us / G_USEC_PER_SEC,
                           (int)(now_us % G_USEC_PER_SEC), body);
    g_assert(log->count < log->capacity);
    slot = &log->ring[(log->oldest + log->count) % log->capacity];
    *slot = (struct event_line) { .text = text, .len = strlen(text),
                                  .offset = log->size };
    log->count++;
    log->size += slot->len;
    event_log_drop_old_locked(log);
    size = log->size;
    notify = log->notify;
    notify_opaque = log->notify_opaque;
    pthread_cond_broadcast(&log->appended);
    pthread_mutex_unlock(&log->lock);

    if (notify) {
        notify(notify_opaque, size);
    }
}

void event_log_append_fields(struct event_log *log, const char *event,
                             const struct event_field *fields, size_t n)
{
    g_autoptr(GString) body = g_string_sized_new(128);

    g_assert(n <= EVENT_LOG_MAX_FIELDS);
    g_string_append(body, event);
    for (size_t i = 0; i < n; i++) {
        g_string_append_printf(body, " %s=", fields[i].key);
        event_log_quote_value(body, fields[i].value);
    }
    g_string_append_c(body, '\n');
    event_log_push_line(log, body->str);
}

void event_log_append(struct event_log *log, const char *event, ...)
{
    struct event_field fields[EVENT_LOG_MAX_FIELDS];
    size_t n = 0;
    va_list ap;

    va_start(ap, event);
    for (const char *key = va_arg(ap, const char *); key;
         key = va_arg(ap, const char *)) {
        g_assert(n < G_N_ELEMENTS(fields));
        fields[n].key = key;
        fields[n].value = va_arg(ap, const char *);
        n++;
    }
    va_end(ap);
    event_log_append_fields(log, event, fields, n);
}

uint64_t event_log_size(struct event_log *log)
{
    uint64_t size;

    pthread_mutex_lock(&log->lock);
    size = log->size;
    pthread_mutex_unlock(&log->lock);
    return size;
}

/* The ring position (0 = oldest) of the line holding offset; the caller
 * made sure some kept line does. */
static unsigned event_log_find_line(struct event_log *log, uint64_t offset)
{
    unsigned low = 0;
    unsigned high = log->count - 1;

    while (low < high) {
        unsigned mid = low + (high - low + 1) / 2;

        if (log->ring[(log->oldest + mid) % log->capacity].offset <= offset) {
            low = mid;
        } else {
            high = mid - 1;
        }
    }
    return low;
}

/* Copy the bytes [offset, offset + len) of the placeholder line, which
 * fills the dropped prefix (offset + len <= dropped_bytes), into buf. */
static void event_log_read_placeholder(struct event_log *log,
                                       uint64_t offset, size_t len, char *buf)
{
    char text[64];
    size_t text_len = placeholder_text(log->dropped_lines, text);
    uint64_t newline = log->dropped_bytes - 1;

    memset(buf, ' ', len);
    if (offset < text_len) {
        memcpy(buf, text + offset, MIN(len, text_len - offset));
    }
    if (newline - offset < len) {
        buf[newline - offset] = '\n';
    }
}

/* Copy up to len bytes of the kept lines from offset (inside them) into
 * buf; returns the number copied. */
static size_t event_log_read_lines(struct event_log *log, uint64_t offset,
                                   size_t len, char *buf)
{
    size_t copied = 0;

    for (unsigned pos = event_log_find_line(log, offset);
         pos < log->count && copied < len; pos++) {
        const struct event_line *line =
            &log->ring[(log->oldest + pos) % log->capacity];
        size_t skip = offset > line->offset ? offset - line->offset : 0;
        size_t chunk = MIN(line->len - skip, len - copied);

        memcpy(buf + copied, line->text + skip, chunk);
        copied += chunk;
    }
    return copied;
}

size_t event_log_read(struct event_log *log, uint64_t offset, size_t len,
                      void *buf)
{
    size_t copied = 0;

    pthread_mutex_lock(&log->lock);
    if (offset < log->size) {
        len = MIN(len, log->size - offset);
        if (offset < log->dropped_bytes) {
            copied = MIN(len, log->dropped_bytes - offset);
            event_log_read_placeholder(log, offset, copied, buf);
        }
        if (copied < len) {
            copied += event_log_read_lines(log, offset + copied,
                                           len - copied, (char *)buf + copied);
        }
    }
    pthread_mutex_unlock(&log->lock);
    return copied;
}

uint64_t event_log_wait(struct event_log *log, uint64_t size,
                        int64_t timeout_us)
{
    struct timespec deadline = deadline_after_us(timeout_us > 0 ? timeout_us
                                                                : 0);
    uint64_t now_size;

    pthread_mutex_lock(&log->lock);
    while (log->size <= size && timeout_us != 0) {
        if (timeout_us < 0) {
            pthread_cond_wait(&log->appended, &log->lock);
        } else if (pthread_cond_timedwait(&log->appended, &log->lock,
                                          &deadline) != 0) {
            break;
        }
    }
    now_size = log->size;
    pthread_mutex_unlock(&log->lock);
    return now_size;
}
