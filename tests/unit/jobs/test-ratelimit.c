/* Unit tests for core/ratelimit.c, on a fake clock. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <glib.h>

#include "core/ratelimit.h"

#define NS_PER_SEC 1000000000ull

static uint64_t fake_now;

static uint64_t fake_clock(void *opaque)
{
    (void)opaque;
    return fake_now;
}

/* One admitted request. */
struct admitted {
    uint64_t time_ns;
    uint64_t bytes;
};

/* Run a job that wants `request` bytes at a time for `duration_ns` of fake
 * time, sleeping exactly what the limiter says; record what was admitted.
 * Fails if a sleep of the returned delay did not admit the request (that
 * would be spinning). */
static GArray *simulate(struct ratelimit *limit, uint64_t request,
                        uint64_t duration_ns)
{
    GArray *log = g_array_new(FALSE, FALSE, sizeof(struct admitted));
    uint64_t end = fake_now + duration_ns;
    bool slept = false;

    while (fake_now < end) {
        uint64_t delay = ratelimit_calculate_delay(limit, request);

        if (delay == 0) {
            struct admitted a = { fake_now, request };

            g_array_append_val(log, a);
            slept = false;
            continue;
        }
        assert_false(slept);
        fake_now += delay;
        slept = true;
    }
    return log;
}

/* Every window of at least a second holds at most speed * T + burst. */
static void assert_windows_bounded(GArray *log, uint64_t speed, uint64_t burst)
{
    const struct admitted *a = (const struct admitted *)log->data;

    for (unsigned i = 0; i < log->len; i++) {
        uint64_t bytes = 0;

        for (unsigned j = i; j < log->len; j++) {
            uint64_t window = a[j].time_ns - a[i].time_ns;

            bytes += a[j].bytes;
            if (window >= NS_PER_SEC) {
                /* speed * window / 1e9, in 128 bits. */
                unsigned __int128 allowed =
                    (unsigned __int128)speed * window / NS_PER_SEC + burst;
                assert_true((unsigned __int128)bytes <= allowed);
            }
        }
    }
}

static uint64_t total_bytes(GArray *log)
{
    uint64_t total = 0;

    for (unsigned i = 0; i < log->len; i++) {
        total += g_array_index(log, struct admitted, i).bytes;
    }
    return total;
}

static void test_unlimited(void **state)
{
    struct ratelimit limit;

    (void)state;
    fake_now = 1000;
    ratelimit_init(&limit, fake_clock, NULL);
    for (int i = 0; i < 1000; i++) {
        assert_int_equal(ratelimit_calculate_delay(&limit, 1 << 30), 0);
    }
    ratelimit_set_speed(&limit, 1024, 1024);
    assert_int_equal(ratelimit_calculate_delay(&limit, 1024), 0);
    assert_true(ratelimit_calculate_delay(&limit, 1024) > 0);
    ratelimit_set_speed(&limit, 0, 0);
    assert_int_equal(ratelimit_calculate_delay(&limit, UINT64_MAX), 0);
}

static void test_average_rate(void **state)
{
    static const struct {
        uint64_t speed;
        uint64_t burst;
        uint64_t request;
    } cases[] = {
        { 1 << 20, 64 << 10, 16 << 10 },
        { 1 << 20, 64 << 10, 64 << 10 },
        { 10 << 20, 1 << 20, 64 << 10 },
        { 100000, 4096, 4096 },
        { 3333, 4096, 512 },
        /* Requests larger than the burst run into debt. */
        { 1 << 20, 64 << 10, 256 << 10 },
    };

    (void)state;
    for (size_t c = 0; c < G_N_ELEMENTS(cases); c++) {
        struct ratelimit limit;
        GArray *log;
        uint64_t expected = cases[c].speed * 20;
        uint64_t total;
        uint64_t slack = cases[c].burst > cases[c].request
                             ? cases[c].burst : cases[c].request;

        fake_now = 5 * NS_PER_SEC;
        ratelimit_init(&limit, fake_clock, NULL);
        ratelimit_set_speed(&limit, cases[c].speed, cases[c].burst);
        log = simulate(&limit, cases[c].request, 20 * NS_PER_SEC);
        /* The excess of one oversize request is allowed on top. */
        assert_windows_bounded(log, cases[c].speed,
                               cases[c].burst + (cases[c].request > cases[c].burst
                                   ? cases[c].request - cases[c].burst : 0));
        total = total_bytes(log);
        /* Not slower than asked either (within one request and a burst). */
        assert_true(total + slack + cases[c].request >= expected);
        assert_true(total <= expected + slack + cases[c].request);
        g_array_free(log, TRUE);
    }
}

static void test_burst_bounded(void **state)
{
    struct ratelimit limit;
    uint64_t admitted = 0;

    (void)state;
    fake_now = NS_PER_SEC;
    ratelimit_init(&limit, fake_clock, NULL);
    ratelimit_set_speed(&limit, 1 << 20, 256 << 10);
    /* A long idle time does not save up more than the burst. */
    fake_now += 3600 * NS_PER_SEC;
    while (ratelimit_calculate_delay(&limit, 4096) == 0) {
        admitted += 4096;
        assert_true(admitted <= 256 << 10);
    }
    assert_int_equal(admitted, 256 << 10);

    /* The default burst is 100 ms worth, at least 4 KiB. */
    assert_int_equal(ratelimit_default_burst(10 << 20), (10 << 20) / 10);
    assert_int_equal(ratelimit_default_burst(1), 4096);
    ratelimit_set_speed(&limit, 10 << 20, 0);
    fake_now += 3600 * NS_PER_SEC;
    admitted = 0;
    while (ratelimit_calculate_delay(&limit, 1024) == 0) {
        admitted += 1024;
    }
    assert_true(admitted <= (10 << 20) / 10 + 1024);
    assert_true(admitted >= (10 << 20) / 10 - 1024);
}

static void test_speed_changed_live(void **state)
{
    static const uint64_t speeds[] = { 1 << 20, 4 << 20, 100 << 10, 7 << 20 };
    struct ratelimit limit;

    (void)state;
    fake_now = 42;
    ratelimit_init(&limit, fake_clock, NULL);
    for (size_t i = 0; i < G_N_ELEMENTS(speeds); i++) {
        GArray *log;
        uint64_t total;

        ratelimit_set_speed(&limit, speeds[i], 64 << 10);
        log = simulate(&limit, 32 << 10, 5 * NS_PER_SEC);
        assert_windows_bounded(log, speeds[i], 64 << 10);
        total = total_bytes(log);
        assert_true(total >= speeds[i] * 5 - (96 << 10));
        assert_true(total <= speeds[i] * 5 + (96 << 10));
        g_array_free(log, TRUE);
    }

    /* Slowing down keeps the debt: no fresh burst from a speed change. */
    ratelimit_set_speed(&limit, 1 << 20, 64 << 10);
    while (ratelimit_calculate_delay(&limit, 64 << 10) == 0) {
    }
    ratelimit_set_speed(&limit, 1024, 64 << 10);
    assert_true(ratelimit_calculate_delay(&limit, 64 << 10) > 0);

    /* A sleep cut short by a speed-up is followed by a shorter wait. */
    {
        uint64_t slow_delay = ratelimit_calculate_delay(&limit, 64 << 10);
        uint64_t fast_delay;

        ratelimit_set_speed(&limit, 64 << 20, 64 << 10);
        fast_delay = ratelimit_calculate_delay(&limit, 64 << 10);
        assert_true(fast_delay < slow_delay / 1000);
    }

    /* Unlimited takes effect at once. */
    ratelimit_set_speed(&limit, 0, 0);
    assert_int_equal(ratelimit_calculate_delay(&limit, 1 << 30), 0);
}

static void test_extreme_speeds(void **state)
{
    struct ratelimit limit;
    uint64_t delay;

    (void)state;
    fake_now = 0;
    ratelimit_init(&limit, fake_clock, NULL);
    ratelimit_set_speed(&limit, INT64_MAX, 0);
    for (int i = 0; i < 100; i++) {
        fake_now += 1;
        assert_int_equal(ratelimit_calculate_delay(&limit, 1ull << 40), 0);
    }

    ratelimit_set_speed(&limit, 1, 0);
    assert_int_equal(ratelimit_calculate_delay(&limit, 4096), 0);
    delay = ratelimit_calculate_delay(&limit, 4096);
    assert_int_equal(delay, 4096 * NS_PER_SEC);
    fake_now += delay - 1;
    assert_int_equal(ratelimit_calculate_delay(&limit, 4096), 1);
    fake_now += 1;
    assert_int_equal(ratelimit_calculate_delay(&limit, 4096), 0);

    /* Fractions of a byte carry over: 3 bytes/s over 1/3 s steps. */
    ratelimit_set_speed(&limit, 3, 4096);
    while (ratelimit_calculate_delay(&limit, 1) == 0) {
    }
    for (int i = 0; i < 30; i++) {
        fake_now += NS_PER_SEC / 3 + (i % 3 == 0);
        assert_int_equal(ratelimit_calculate_delay(&limit, 1), 0);
        assert_true(ratelimit_calculate_delay(&limit, 1) > 0);
    }
}

static void test_real_clock(void **state)
{
    struct ratelimit limit;

    (void)state;
    ratelimit_init(&limit, NULL, NULL);
    assert_true(ratelimit_monotonic_ns(NULL) > 0);
    ratelimit_set_speed(&limit, 1024, 1024);
    assert_int_equal(ratelimit_calculate_delay(&limit, 1024), 0);
    assert_true(ratelimit_calculate_delay(&limit, 1024) > NS_PER_SEC / 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unlimited),
        cmocka_unit_test(test_average_rate),
        cmocka_unit_test(test_burst_bounded),
        cmocka_unit_test(test_speed_changed_live),
        cmocka_unit_test(test_extreme_speeds),
        cmocka_unit_test(test_real_clock),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
