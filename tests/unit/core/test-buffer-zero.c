/* Unit tests for core/buffer-zero.c: every length around the head and the
 * word loop, every alignment, and a nonzero byte at every position. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>
#include <glib.h>

#include "core/buffer-zero.h"

/* Longer than the head plus several rounds of eight words. */
#define MAX_LEN 300
#define MAX_SHIFT 16

static void test_empty(void **state)
{
    (void)state;
    static const unsigned char one = 1;
    assert_true(buffer_is_zero(&one, 0));
}

/* All zeros reads as zero at any alignment and length. */
static void test_zeros(void **state)
{
    (void)state;
    g_autofree unsigned char *buf = g_malloc0(MAX_LEN + MAX_SHIFT);

    for (size_t shift = 0; shift < MAX_SHIFT; shift++) {
        for (size_t len = 0; len <= MAX_LEN; len++) {
            assert_true(buffer_is_zero(buf + shift, len));
        }
    }
}

/* One nonzero byte anywhere in the range is found; one just outside it
 * (before or after) is not looked at. */
static void test_one_nonzero_byte(void **state)
{
    (void)state;
    g_autofree unsigned char *buf = g_malloc0(MAX_LEN + 2 * MAX_SHIFT);

    for (size_t shift = 1; shift < MAX_SHIFT; shift++) {
        for (size_t len = 1; len <= MAX_LEN; len++) {
            unsigned char *p = buf + shift;
            for (size_t pos = 0; pos < len; pos++) {
                p[pos] = 0x80;
                assert_false(buffer_is_zero(p, len));
                p[pos] = 0;
            }
            p[-1] = 1;
            p[len] = 1;
            assert_true(buffer_is_zero(p, len));
            p[-1] = 0;
            p[len] = 0;
        }
    }
}

/* A large buffer: zero, then with its last byte set. */
static void test_large(void **state)
{
    (void)state;
    const size_t len = 4 << 20;
    g_autofree unsigned char *buf = g_malloc0(len);

    assert_true(buffer_is_zero(buf, len));
    buf[len - 1] = 1;
    assert_false(buffer_is_zero(buf, len));
    assert_true(buffer_is_zero(buf, len - 1));
    buf[len / 2] = 1;
    assert_false(buffer_is_zero(buf, len - 1));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty),
        cmocka_unit_test(test_zeros),
        cmocka_unit_test(test_one_nonzero_byte),
        cmocka_unit_test(test_large),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
