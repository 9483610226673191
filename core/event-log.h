/* chainfs: the append-only event log behind `.jobs/events`.
 *
 * Each event is one line, `SECONDS.MICROSECONDS EVENT key=value ...\n`,
 * with wall-clock time; a value with blanks, quotes or nothing in it is
 * double-quoted with `\"` and `\\` escapes as in the command grammar.
 * The log is a byte stream whose size only grows, and every byte offset
 * keeps meaning the same event forever.  The most recent lines (at least
 * the `kept` given to event_log_new) are kept in a ring, each with its
 * offset in the stream.  The bytes of the lines no longer kept, the
 * dropped prefix [0, D), read as one placeholder line that is not an
 * event: `# N earlier events dropped`, then blanks, then a newline at
 * offset D - 1.  So a reader from offset 0 gets that line and then every
 * kept line, and a reader at an offset X < D (say a `tail -f` that was in
 * the middle of a line dropped meanwhile) gets the tail of the
 * placeholder (blanks, or the end of its text if X is that near the
 * start, then the newline; a line of blanks when X was the start of a
 * dropped line) and then the kept lines: whole lines, in order, each
 * event once, never a fragment of another event.  N and hence the
 * placeholder's text change as more lines are dropped; its shape does
 * not.
 *
 * Short prefixes: the placeholder needs D >= strlen("# N earlier events
 * dropped\n"), 26 bytes plus the digits of N.  So lines beyond `kept` are
 * dropped in whole batches, and only once the batch makes the dropped
 * prefix that long; until then they stay readable in the ring's
 * EVENT_LOG_DROP_SLACK spare slots.  A line is at least 10 bytes (the
 * time stamp `0.000000 ` and the newline), so only the first drop ever
 * waits, for at most 3 lines; after it, each dropped line adds at least 10
 * bytes to D and at most one digit to N.
 *
 * Memory: at most kept + EVENT_LOG_DROP_SLACK lines, each value cut to
 * EVENT_LOG_MAX_VALUE bytes and an event holding at most
 * EVENT_LOG_MAX_FIELDS fields.
 *
 * Thread-safety: every function is thread-safe (one mutex per log).  The
 * notify callback runs after an append, outside that mutex, on the
 * appending thread; it must not block.
 */
#ifndef CHAINFS_EVENT_LOG_H
#define CHAINFS_EVENT_LOG_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <glib.h>

#define EVENT_LOG_MIN_KEPT 1024      /* lines kept at least */
#define EVENT_LOG_DROP_SLACK 8       /* ring slots beyond kept */
#define EVENT_LOG_MAX_FIELDS 16      /* key=value fields per event */
#define EVENT_LOG_MAX_VALUE 4096     /* bytes of a value, longer is cut */

struct event_log;

/* One key=value field of an event. */
struct event_field {
    const char *key;
    const char *value;
};

/* Called after each append with the log's new size. */
typedef void event_log_notify_fn(void *opaque, uint64_t size);

/* A log keeping the last `kept` lines (at least EVENT_LOG_MIN_KEPT). */
struct event_log *event_log_new(unsigned kept);
void event_log_free(struct event_log *log);

/* Set (or clear, with NULL) the append notification. */
void event_log_set_notify(struct event_log *log, event_log_notify_fn *notify,
                          void *opaque);

/* Append `EVENT key=value ...`: key, value pairs ending with a NULL key. */
void event_log_append(struct event_log *log, const char *event, ...)
    __attribute__((nonnull(1, 2), sentinel));

/* Append with the fields given as an array of n (at most
 * EVENT_LOG_MAX_FIELDS). */
void event_log_append_fields(struct event_log *log, const char *event,
                             const struct event_field *fields, size_t n)
    __attribute__((nonnull(1, 2)));

/* The stream's size: every byte ever appended. */
uint64_t event_log_size(struct event_log *log);

/* Copy up to len bytes of the stream from offset into buf (the dropped
 * prefix reading as the placeholder line); returns the number copied, 0
 * at the end. */
size_t event_log_read(struct event_log *log, uint64_t offset, size_t len,
                      void *buf);

/* Wait until the size exceeds `size` or timeout_us passes (< 0: forever);
 * returns the size then. */
uint64_t event_log_wait(struct event_log *log, uint64_t size,
                        int64_t timeout_us);

/* Append value to out, double-quoted and escaped when it holds blanks or
 * quotes or is empty; control characters other than tab become spaces so
 * that an event stays one line.  Only the first EVENT_LOG_MAX_VALUE bytes
 * of value are used. */
void event_log_quote_value(GString *out, const char *value);

#endif
