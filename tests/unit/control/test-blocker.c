/* Unit tests for core/blocker.c: what a blocker holds and what conflicts. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "core/block.h"
#include "core/blocker.h"

/* A disk held by a blocker is busy, naming the job; others are free. */
static void test_disk(void **state)
{
    struct blocker_set *set = blocker_set_new();
    struct op_blocker *blocker = op_blocker_new("m1", "vm");
    GError *err = NULL;

    (void)state;
    assert_true(blocker_check_disk(set, "vm", NULL));
    op_blocker_install(set, blocker);
    assert_false(blocker_check_disk(set, "vm", &err));
    assert_int_equal(err->code, EBUSY);
    assert_string_equal(err->message, "disk 'vm' is in use by job 'm1'");
    g_clear_error(&err);
    assert_true(blocker_check_disk(set, "vm2", NULL));
    op_blocker_release(blocker);
    assert_true(blocker_check_disk(set, "vm", NULL));
    blocker_set_free(set);
}

/* Reading a file read by a job is fine; writing it, or anything it
 * writes, is not. */
static void test_files(void **state)
{
    struct blocker_set *set = blocker_set_new();
    struct op_blocker *blocker = op_blocker_new("m1", NULL);
    GError *err = NULL;

    (void)state;
    op_blocker_add_file(blocker, 1, 10, BLOCKER_USE_READ);
    op_blocker_add_file(blocker, 1, 20, BLOCKER_USE_WRITE);
    op_blocker_install(set, blocker);
    assert_true(blocker_check_file(set, 1, 10, "/a", BLOCKER_USE_READ, NULL));
    assert_false(blocker_check_file(set, 1, 10, "/a", BLOCKER_USE_WRITE,
                                    &err));
    assert_int_equal(err->code, EBUSY);
    assert_string_equal(err->message, "/a is in use by job 'm1'");
    g_clear_error(&err);
    assert_false(blocker_check_file(set, 1, 20, "/t", BLOCKER_USE_READ, NULL));
    /* Same inode on another device: another file. */
    assert_true(blocker_check_file(set, 2, 20, "/u", BLOCKER_USE_WRITE, NULL));
    assert_true(blocker_check_disk(set, "vm", NULL));
    op_blocker_release(blocker);
    assert_true(blocker_check_file(set, 1, 20, "/t", BLOCKER_USE_WRITE, NULL));
    blocker_set_free(set);
}

/* A blocker never installed can be released (a job that failed early). */
static void test_release_uninstalled(void **state)
{
    (void)state;
    op_blocker_release(op_blocker_new("x", "vm"));
    op_blocker_release(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_disk),
        cmocka_unit_test(test_files),
        cmocka_unit_test(test_release_uninstalled),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
