/* Unit tests for core/event-log.c. */
#include <pthread.h>
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

static void test_ring_wrap(void **state)
{
    struct event_log *log = event_log_new(10);  /* at least 1024 kept */
    uint64_t line_start[3000];
    uint64_t size;
    g_autofree char *kept = NULL;
    char buf[256];
    size_t got;

    (void)state;
    for (int i = 0; i < 3000; i++) {
        char value[16];

        snprintf(value, sizeof(value), "%04d", i);
        line_start[i] = event_log_size(log);
        event_log_append(log, "EVENT", "n", value, NULL);
    }
    size = event_log_size(log);

    /* The size counts every byte ever appended. */
    assert_true(size > line_start[2999]);
    assert_int_equal(size - line_start[2999], size - line_start[2998] -
                     (line_start[2999] - line_start[2998]));

    /* Reading from a fallen-off offset starts at the oldest kept line. */
    kept = read_all(log, 0);
    {
        g_auto(GStrv) lines = g_strsplit(kept, "\n", -1);
        int64_t stamp;

        assert_int_equal(g_strv_length(lines), 1024 + 1);
        assert_string_equal(after_stamp(lines[0], &stamp), "EVENT n=1976");
        assert_string_equal(after_stamp(lines[1023], &stamp), "EVENT n=2999");
    }
    assert_int_equal(strlen(kept), size - line_start[1976]);
    got = event_log_read(log, line_start[100] + 3, sizeof(buf), buf);
    assert_true(got > 0);
    assert_memory_equal(buf, kept, got);

    /* Kept offsets read exactly, also in the middle of a line. */
    got = event_log_read(log, line_start[2500] + 5, sizeof(buf), buf);
    assert_int_equal(got, sizeof(buf));
    assert_memory_equal(buf, kept + (line_start[2500] + 5 - line_start[1976]),
                        got);
    got = event_log_read(log, line_start[1976], 10, buf);
    assert_memory_equal(buf, kept, 10);
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

int main(int argc, char **argv)
{
    const struct CMUnitTest unit_tests[] = {
        cmocka_unit_test(test_format),
        cmocka_unit_test(test_quoting),
        cmocka_unit_test(test_offsets),
        cmocka_unit_test(test_ring_wrap),
        cmocka_unit_test(test_long_value),
        cmocka_unit_test(test_notify_and_wait),
    };
    const struct CMUnitTest thread_tests[] = {
        cmocka_unit_test(test_concurrent_appends),
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
