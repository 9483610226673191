/* Unit tests for core/event-log.c. */
#include <pthread.h>
#include <stdbool.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <glib.h>

#include "core/event-log.h"

/* The whole readable log as a string (g_free it). */
static char *read_all(struct event_log *log, uint64_t offset)
{
    uint64_t size = event_log_size(log);
    char *buf = g_malloc0(size + 1);
    size_t got = event_log_read(log, offset, size, buf);

    buf[got] = '\0';
    return buf;
}

/* The part of line after the time stamp, checking the stamp's format. */
static const char *after_stamp(const char *line, int64_t *stamp_us)
{
    char *end;
    long long seconds = strtoll(line, &end, 10);

    assert_true(end > line);
    assert_int_equal(*end, '.');
    for (int i = 1; i <= 6; i++) {
        assert_true(end[i] >= '0' && end[i] <= '9');
    }
    assert_int_equal(end[7], ' ');
    *stamp_us = seconds * G_USEC_PER_SEC + atoi(end + 1);
    return end + 8;
}

static void test_format(void **state)
{
    struct event_log *log = event_log_new(0);
    int64_t before = g_get_real_time();
    int64_t after;
    int64_t stamp;
    g_autofree char *text = NULL;
    const struct event_field fields[] = {
        { "id", "c1" }, { "offset", "0" }, { "len", "4096" },
        { "error", "write to /img/base.qcow2: No space left on device" },
    };

    (void)state;
    assert_int_equal(event_log_size(log), 0);
    event_log_append(log, "JOB_STATE", "id", "m1", "state", "running", NULL);
    event_log_append_fields(log, "JOB_COMPLETED", fields, 4);
    event_log_append(log, "PING", NULL);
    after = g_get_real_time();

    text = read_all(log, 0);
    {
        g_auto(GStrv) lines = g_strsplit(text, "\n", -1);

        assert_int_equal(g_strv_length(lines), 4);
        assert_string_equal(lines[3], "");
        assert_string_equal(after_stamp(lines[0], &stamp),
                            "JOB_STATE id=m1 state=running");
        assert_true(stamp >= before - 1 && stamp <= after);
        assert_string_equal(after_stamp(lines[1], &stamp),
                            "JOB_COMPLETED id=c1 offset=0 len=4096 error=\"write "
                            "to /img/base.qcow2: No space left on device\"");
        assert_string_equal(after_stamp(lines[2], &stamp), "PING");
    }
    assert_int_equal(event_log_size(log), strlen(text));
    event_log_free(log);
}

static void test_quoting(void **state)
{
    static const struct {
        const char *value;
        const char *quoted;
    } cases[] = {
        { "plain", "plain" },
        { "/a/b.qcow2", "/a/b.qcow2" },
        { "a=b", "a=b" },
        { "back\\slash", "back\\slash" },
        { "two words", "\"two words\"" },
        { "tab\there", "\"tab\there\"" },
        { "say \"hi\"", "\"say \\\"hi\\\"\"" },
        { "q\"", "\"q\\\"\"" },
        { "a\\ b", "\"a\\\\ b\"" },
        { "", "\"\"" },
        { "line\nbreak", "\"line break\"" },
        { "cr\r", "\"cr \"" },
    };

    (void)state;
    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        g_autoptr(GString) out = g_string_new(NULL);
        struct event_log *log = event_log_new(0);
        g_autofree char *expected = g_strdup_printf("E k=%s", cases[i].quoted);
        g_autofree char *text = NULL;
        int64_t stamp;

        event_log_quote_value(out, cases[i].value);
        assert_string_equal(out->str, cases[i].quoted);

        event_log_append(log, "E", "k", cases[i].value, NULL);
        text = read_all(log, 0);
        assert_int_equal(text[strlen(text) - 1], '\n');
        text[strlen(text) - 1] = '\0';
        assert_null(strchr(text, '\n'));
        assert_string_equal(after_stamp(text, &stamp), expected);
        event_log_free(log);
    }
}

static void test_offsets(void **state)
{
    struct event_log *log = event_log_new(0);
    g_autofree char *all = NULL;
    uint64_t last_size = 0;
    char buf[64];

    (void)state;
    for (int i = 0; i < 50; i++) {
        char value[16];

        snprintf(value, sizeof(value), "%d", i);
        event_log_append(log, "EVENT", "n", value, NULL);
        assert_true(event_log_size(log) > last_size);
        last_size = event_log_size(log);
    }
    all = read_all(log, 0);
    assert_int_equal(strlen(all), last_size);

    /* Any offset and length give exactly those bytes of the stream. */
    for (uint64_t offset = 0; offset <= last_size; offset += 7) {
        for (size_t len = 1; len < sizeof(buf); len += 13) {
            size_t got = event_log_read(log, offset, len, buf);
            size_t want = MIN(len, last_size - offset);

            assert_int_equal(got, want);
            assert_memory_equal(buf, all + offset, got);
        }
    }
    assert_int_equal(event_log_read(log, last_size, sizeof(buf), buf), 0);
    assert_int_equal(event_log_read(log, last_size + 100, sizeof(buf), buf), 0);
    event_log_free(log);
}

/* The dropped prefix of a wrapped log read from 0: one line of length
 * `dropped`, `# N earlier events dropped` then blanks then a newline. */
static void assert_placeholder(const char *text, uint64_t dropped,
                               uint64_t n)
{
    g_autofree char *head = g_strdup_printf("# %" G_GUINT64_FORMAT
                                            " earlier events dropped", n);
    size_t head_len = strlen(head);

    assert_true(dropped >= head_len + 1);
    assert_memory_equal(text, head, head_len);
    for (uint64_t i = head_len; i < dropped - 1; i++) {
        assert_int_equal(text[i], ' ');
    }
    assert_int_equal(text[dropped - 1], '\n');
}

/* Append `count` lines `EVENT n=NNNN` numbered from first, checking that
 * the size grows by each line; line_start gets each line's offset. */
static void append_numbered(struct event_log *log, int first, int count,
                            uint64_t *line_start)
{
    for (int i = first; i < first + count; i++) {
        uint64_t before = event_log_size(log);
        char value[16];

        snprintf(value, sizeof(value), "%04d", i);
        line_start[i] = before;
        event_log_append(log, "EVENT", "n", value, NULL);
        assert_true(event_log_size(log) > before);
    }
}

/* Check the kept lines after the placeholder: `EVENT n=first` to
 * `EVENT n=last`, one each, in order, time stamps not decreasing. */
static void assert_kept_lines(const char *text, int first, int last)
{
    g_auto(GStrv) lines = g_strsplit(text, "\n", -1);
    int64_t last_stamp = 0;

    assert_int_equal(g_strv_length(lines), last - first + 2);
    for (int i = first; i <= last; i++) {
        g_autofree char *want = g_strdup_printf("EVENT n=%04d", i);
        int64_t stamp;

        assert_string_equal(after_stamp(lines[i - first], &stamp), want);
        assert_true(stamp >= last_stamp);
        last_stamp = stamp;
    }
    assert_string_equal(lines[last - first + 1], "");
}

static void test_ring_wrap(void **state)
{
    struct event_log *log = event_log_new(10);  /* at least 1024 kept */
    static uint64_t line_start[3000];
    uint64_t size;
    uint64_t dropped;
    g_autofree char *all = NULL;
    char buf[256];
    size_t got;

    (void)state;
    append_numbered(log, 0, 3000, line_start);
    size = event_log_size(log);
    dropped = line_start[1976];

    /* The size counts every byte ever appended: offsets never move. */
    all = read_all(log, 0);
    assert_int_equal(strlen(all), size);
    assert_placeholder(all, dropped, 1976);
    assert_kept_lines(all + dropped, 1976, 2999);

    /* Kept offsets read exactly, also in the middle of a line. */
    got = event_log_read(log, line_start[2500] + 5, sizeof(buf), buf);
    assert_int_equal(got, sizeof(buf));
    assert_memory_equal(buf, all + line_start[2500] + 5, got);

    /* Inside the dropped prefix: the placeholder's tail, then the kept
     * lines, whether the offset was a line start or inside a line. */
    for (int i = 100; i < 103; i++) {
        for (uint64_t skip = 0; skip < 4; skip++) {
            g_autofree char *rest = read_all(log, line_start[i] + skip);
            size_t tail = dropped - line_start[i] - skip;

            assert_int_equal(strlen(rest), size - line_start[i] - skip);
            assert_int_equal(strspn(rest, " "), tail - 1);
            assert_int_equal(rest[tail - 1], '\n');
            assert_kept_lines(rest + tail, 1976, 2999);
        }
    }
    event_log_free(log);
}

/* Read the whole stream from offset in reads of the sizes in sizes[],
 * cycling, into one string (g_free it). */
static char *read_in_pieces(struct event_log *log, uint64_t offset,
                            const size_t *sizes, size_t n_sizes)
{
    GString *out = g_string_new(NULL);
    char buf[512];
    size_t got;

    for (size_t i = 0;; i++) {
        size_t len = sizes[i % n_sizes];

        assert_true(len <= sizeof(buf));
        got = event_log_read(log, offset, len, buf);
        if (got == 0) {
            break;
        }
        assert_true(got <= len);
        g_string_append_len(out, buf, got);
        offset += got;
    }
    return g_string_free(out, FALSE);
}

static void test_wrap_every_offset(void **state)
{
    struct event_log *log = event_log_new(0);
    static uint64_t line_start[2500];
    static const size_t sizes[] = { 1, 7, 64, 3, 512, 29, 2, 100 };
    uint64_t size;
    uint64_t dropped;
    g_autofree char *all = NULL;
    g_autofree char *pieces = NULL;

    (void)state;
    append_numbered(log, 0, 2500, line_start);
    size = event_log_size(log);
    dropped = line_start[2500 - 1024];
    all = read_all(log, 0);
    assert_placeholder(all, dropped, 2500 - 1024);
    assert_kept_lines(all + dropped, 2500 - 1024, 2499);

    /* Reads of arbitrary sizes add up to the one big read. */
    pieces = read_in_pieces(log, 0, sizes, G_N_ELEMENTS(sizes));
    assert_string_equal(pieces, all);

    /* From every offset near the placeholder's start and end (and every
     * 37th elsewhere): exactly the stream's bytes from there. */
    for (uint64_t offset = 0; offset <= size;
         offset += offset < 100 || (offset + 1000 > dropped &&
                                    offset < dropped + 1000) ? 1 : 37) {
        uint64_t len = size - offset;
        g_autofree char *buf = g_malloc(len + 1);

        assert_int_equal(event_log_read(log, offset, len + 1, buf), len);
        assert_memory_equal(buf, all + offset, len);
    }
    /* A short read inside the placeholder stops where asked; at the end
     * there is nothing. */
    {
        char buf[8];

        assert_int_equal(event_log_read(log, dropped - 3, 2, buf), 2);
        assert_memory_equal(buf, "  ", 2);
        assert_int_equal(event_log_read(log, dropped - 1, 8, buf), 8);
        assert_memory_equal(buf, all + dropped - 1, 8);
        assert_int_equal(event_log_read(log, size, sizeof(buf), buf), 0);
    }
    event_log_free(log);
}

/* A reader that read part of a line before it was dropped reads on with
 * the rest of the placeholder line (the end of its text if it was that
 * near the start, else blanks) and a newline, never a fragment of a later
 * line. */
static void test_wrap_under_reader(void **state)
{
    struct event_log *log = event_log_new(0);
    static uint64_t line_start[1100];
    const char *text = "# 76 earlier events dropped";
    uint64_t near = 10;
    uint64_t far;
    char buf[64];
    g_autofree char *near_rest = NULL;
    g_autofree char *far_rest = NULL;
    g_autofree char *all = NULL;

    (void)state;
    append_numbered(log, 0, 1024, line_start);
    far = line_start[1] - 2;
    assert_true(far > strlen(text));
    assert_int_equal(event_log_read(log, 0, far, buf), far);
    append_numbered(log, 1024, 76, line_start);

    near_rest = read_all(log, near);
    far_rest = read_all(log, far);
    all = read_all(log, 0);
    assert_placeholder(all, line_start[76], 76);
    assert_string_equal(near_rest, all + near);
    assert_memory_equal(near_rest, text + near, strlen(text) - near);
    assert_int_equal(strspn(far_rest, " "), line_start[76] - far - 1);
    assert_int_equal(far_rest[line_start[76] - far - 1], '\n');
    assert_kept_lines(far_rest + line_start[76] - far, 76, 1099);
    event_log_free(log);
}

/* The number of decimal digits of n. */
static size_t decimal_digits(unsigned n)
{
    char text[16];

    return snprintf(text, sizeof(text), "%u", n);
}

/* Tiny lines: the first drop waits until the dropped lines are long
 * enough for the placeholder's text, then drops them all at once. */
static void test_wrap_short_prefix(void **state)
{
    struct event_log *log = event_log_new(0);
    uint64_t line_len;
    uint64_t last_size;
    unsigned batch = 1;

    (void)state;
    for (int i = 0; i < EVENT_LOG_MIN_KEPT; i++) {
        event_log_append(log, "E", NULL);
    }
    last_size = event_log_size(log);
    line_len = last_size / EVENT_LOG_MIN_KEPT;
    assert_int_equal(line_len, strlen("1764000000.123456 E\n"));

    /* The smallest batch of such lines that holds "# N earlier events
     * dropped\n": 26 bytes and N's digits. */
    while (batch * line_len < 26 + decimal_digits(batch)) {
        batch++;
    }
    assert_true(batch >= 2);    /* one 20-byte line is too short */

    for (unsigned i = 1; i <= batch; i++) {
        g_autofree char *all = NULL;

        event_log_append(log, "E", NULL);
        assert_true(event_log_size(log) > last_size);
        last_size = event_log_size(log);
        all = read_all(log, 0);
        assert_int_equal(strlen(all), last_size);
        if (i < batch) {
            /* Not dropped yet: the first line is still an event. */
            int64_t stamp;

            assert_memory_equal(after_stamp(all, &stamp), "E\n", 2);
        } else {
            assert_placeholder(all, batch * line_len, batch);
        }
    }

    /* From then on each line beyond the kept ones is dropped at once. */
    for (unsigned i = 1; i <= 100; i++) {
        g_autofree char *all = NULL;

        event_log_append(log, "E", NULL);
        all = read_all(log, 0);
        assert_placeholder(all, (batch + i) * line_len, batch + i);
        assert_int_equal(strlen(all), line_len * (EVENT_LOG_MIN_KEPT + batch
                                                  + i));
    }
    event_log_free(log);
}

/* Values are cut to EVENT_LOG_MAX_VALUE bytes, so lines stay bounded. */
static void test_long_value(void **state)
{
    struct event_log *log = event_log_new(0);
    g_autofree char *value = g_strnfill(3 * EVENT_LOG_MAX_VALUE, 'x');
    g_autofree char *text = NULL;
    g_autofree char *want = NULL;
    int64_t stamp;

    (void)state;
    event_log_append(log, "E", "k", value, NULL);
    text = read_all(log, 0);
    value[EVENT_LOG_MAX_VALUE] = '\0';
    want = g_strdup_printf("E k=%s\n", value);
    assert_string_equal(after_stamp(text, &stamp), want);
    event_log_free(log);
}

static uint64_t notified_size;
static int notified_count;

static void on_append(void *opaque, uint64_t size)
{
    assert_ptr_equal(opaque, &notified_size);
    notified_size = size;
    notified_count++;
}

static void test_notify_and_wait(void **state)
{
    struct event_log *log = event_log_new(0);

    (void)state;
    event_log_set_notify(log, on_append, &notified_size);
    event_log_append(log, "ONE", NULL);
    assert_int_equal(notified_count, 1);
    assert_int_equal(notified_size, event_log_size(log));
    event_log_set_notify(log, NULL, NULL);
    event_log_append(log, "TWO", NULL);
    assert_int_equal(notified_count, 1);

    /* Already larger: returns at once; not growing: times out. */
    assert_int_equal(event_log_wait(log, 0, -1), event_log_size(log));
    assert_int_equal(event_log_wait(log, event_log_size(log), 0),
                     event_log_size(log));
    assert_int_equal(event_log_wait(log, event_log_size(log), 20000),
                     event_log_size(log));
    event_log_free(log);
}

#define APPENDERS 4
#define APPENDS 500

static void *append_many(void *opaque)
{
    struct event_log *log = opaque;
    char value[16];

    for (int i = 0; i < APPENDS; i++) {
        snprintf(value, sizeof(value), "%d", i);
        event_log_append(log, "EVENT", "n", value, NULL);
    }
    return NULL;
}

static void *wait_for_growth(void *opaque)
{
    struct event_log *log = opaque;

    return (void *)(uintptr_t)event_log_wait(log, 0, 10 * G_USEC_PER_SEC);
}

static void test_concurrent_appends(void **state)
{
    struct event_log *log = event_log_new(APPENDERS * APPENDS);
    pthread_t threads[APPENDERS];
    pthread_t waiter;
    void *waited;
    g_autofree char *text = NULL;
    int64_t last_stamp = 0;

    (void)state;
    /* A waiter blocked on an empty log wakes when the first line lands. */
    assert_int_equal(pthread_create(&waiter, NULL, wait_for_growth, log), 0);
    for (int i = 0; i < APPENDERS; i++) {
        assert_int_equal(pthread_create(&threads[i], NULL, append_many, log),
                         0);
    }
    for (int i = 0; i < APPENDERS; i++) {
        pthread_join(threads[i], NULL);
    }
    pthread_join(waiter, &waited);
    assert_true((uintptr_t)waited > 0);

    text = read_all(log, 0);
    {
        g_auto(GStrv) lines = g_strsplit(text, "\n", -1);
        int seen[APPENDS] = { 0 };

        assert_int_equal(g_strv_length(lines), APPENDERS * APPENDS + 1);
        for (int i = 0; i < APPENDERS * APPENDS; i++) {
            int64_t stamp;
            const char *rest = after_stamp(lines[i], &stamp);
            int n;

            assert_true(stamp >= last_stamp);
            last_stamp = stamp;
            assert_int_equal(sscanf(rest, "EVENT n=%d", &n), 1);
            assert_true(n >= 0 && n < APPENDS);
            seen[n]++;
        }
        for (int n = 0; n < APPENDS; n++) {
            assert_int_equal(seen[n], APPENDERS);
        }
    }
    event_log_free(log);
}

/* Appender of the tail test: `EVENT t=T n=N`, N from 0 to APPENDS - 1. */
struct tail_appender {
    struct event_log *log;
    int t;
    int *finished;          /* appenders done, atomic */
};

static void *append_numbered_by_thread(void *opaque)
{
    struct tail_appender *appender = opaque;
    char t[16];
    char n[16];

    snprintf(t, sizeof(t), "%d", appender->t);
    for (int i = 0; i < APPENDS; i++) {
        snprintf(n, sizeof(n), "%d", i);
        event_log_append(appender->log, "EVENT", "t", t, "n", n, NULL);
    }
    __atomic_add_fetch(appender->finished, 1, __ATOMIC_RELEASE);
    return NULL;
}

/* Whether line (no newline) is the end of an overtaken reader's line:
 * at most one time stamp's worth of an event, then blanks. */
static bool is_overtaken_line(const char *line)
{
    size_t len = strlen(line);
    const char *event = strstr(line, "EVENT");

    return len > 0 && line[len - 1] == ' ' &&
           (!event || !strstr(event + 1, "EVENT")) &&
           strchr(line, '.') == strrchr(line, '.');
}

/* A `tail -f` reader racing appenders that wrap the ring: it sees whole
 * lines, each event at most once and in each appender's order; lines it
 * was reading when they were dropped end in blanks. */
static void test_tail_while_wrapping(void **state)
{
    struct event_log *log = event_log_new(0);
    struct tail_appender appenders[APPENDERS];
    pthread_t threads[APPENDERS];
    GString *seen = g_string_new(NULL);
    uint64_t offset = 0;
    size_t len = 1;
    char buf[512];
    int next_n[APPENDERS] = { 0 };
    int events = 0;
    int finished = 0;
    int overtaken = 0;

    (void)state;
    for (int i = 0; i < APPENDERS; i++) {
        appenders[i] = (struct tail_appender) {
            .log = log, .t = i, .finished = &finished,
        };
        assert_int_equal(pthread_create(&threads[i], NULL,
                                        append_numbered_by_thread,
                                        &appenders[i]), 0);
    }
    /* Read as tail does, in reads of changing sizes, until the end once
     * every appender is done. */
    for (;;) {
        bool done = __atomic_load_n(&finished, __ATOMIC_ACQUIRE) == APPENDERS;
        size_t got = event_log_read(log, offset, len, buf);

        g_string_append_len(seen, buf, got);
        offset += got;
        len = (len * 7 + 31) % sizeof(buf) + 1;    /* 1 to sizeof(buf) */
        if (got == 0) {
            if (done) {
                break;
            }
            event_log_wait(log, offset, 1000);
        } else if (offset < 4000) {
            g_usleep(500);  /* lag behind at first: get overtaken */
        }
    }
    for (int i = 0; i < APPENDERS; i++) {
        pthread_join(threads[i], NULL);
    }
    assert_int_equal(offset, event_log_size(log));
    assert_int_equal(seen->str[seen->len - 1], '\n');

    {
        g_auto(GStrv) lines = g_strsplit(seen->str, "\n", -1);
        guint n_lines = g_strv_length(lines);

        for (guint i = 0; i + 1 < n_lines; i++) {
            int64_t stamp;
            int t;
            int n;
            int end = 0;

            if (lines[i][0] == '#') {
                continue;
            }
            if (is_overtaken_line(lines[i])) {
                overtaken++;
                continue;
            }
            assert_int_equal(sscanf(after_stamp(lines[i], &stamp),
                                    "EVENT t=%d n=%d%n", &t, &n, &end), 2);
            assert_int_equal(after_stamp(lines[i], &stamp)[end], '\0');
            assert_true(t >= 0 && t < APPENDERS);
            assert_true(n >= next_n[t]);
            next_n[t] = n + 1;
            events++;
        }
        assert_true(events >= EVENT_LOG_MIN_KEPT);
        print_message("%d events, %d lines overtaken\n", events, overtaken);
    }
    /* Kept bytes never change: the reader saw the kept lines as they are
     * now, every one of them. */
    {
        g_autofree char *all = read_all(log, 0);
        size_t dropped = strchr(all, '\n') + 1 - all;

        assert_int_equal(all[0], '#');
        assert_int_equal(seen->len, strlen(all));
        assert_memory_equal(seen->str + dropped, all + dropped,
                            seen->len - dropped);
    }
    g_string_free(seen, TRUE);
    event_log_free(log);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest unit_tests[] = {
        cmocka_unit_test(test_format),
        cmocka_unit_test(test_quoting),
        cmocka_unit_test(test_offsets),
        cmocka_unit_test(test_ring_wrap),
        cmocka_unit_test(test_wrap_every_offset),
        cmocka_unit_test(test_wrap_under_reader),
        cmocka_unit_test(test_wrap_short_prefix),
        cmocka_unit_test(test_long_value),
        cmocka_unit_test(test_notify_and_wait),
    };
    const struct CMUnitTest thread_tests[] = {
        cmocka_unit_test(test_concurrent_appends),
        cmocka_unit_test(test_tail_while_wrapping),
    };

    /* `--thread`: only the threaded tests (for the 'thread' suite). */
    if (argc > 1 && strcmp(argv[1], "--thread") == 0) {
        return cmocka_run_group_tests_name("event-log threads", thread_tests,
                                           NULL, NULL);
    }
    return cmocka_run_group_tests_name("event-log", unit_tests, NULL, NULL) |
           cmocka_run_group_tests_name("event-log threads", thread_tests,
                                       NULL, NULL);
}
