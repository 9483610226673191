/* Unit tests for the job framework's error policies (report, ignore,
 * stop with resume) and failed completion, with the test job driver. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "core/block.h"
#include "core/event-log.h"
#include "jobs/job.h"

#include "test-job-driver.h"

static void test_error_report(void **state)
{
    struct fixture *f = *state;
    struct test_job *t = new_test_job(f, &test_driver, "e1", 64 << 10, 4096);
    g_autofree char *status = NULL;

    t->policy = JOB_ERROR_POLICY_REPORT;
    t->fail_reads = 1;
    job_start(&t->common);
    wait_state(&t->common, JOB_STATE_CONCLUDED);
    assert_int_equal(t->common.result, JOB_RESULT_FAILED);
    status = job_status_text(&t->common);
    assert_string_equal(status,
        "id: e1\ntype: test\ndisk: vm1\nstate: concluded\noffset: 0\n"
        "len: 65536\nspeed: 0\nio-status: ok\ndirty: 65536\ncopied: 0\n"
        "copy-mode: background\nresult: failed\n"
        "error: read from test: Input/output error\n");
    assert_events(f,
        "JOB_STATE id=e1 state=created\n"
        "JOB_STATE id=e1 state=running\n"
        "JOB_ERROR id=e1 operation=read action=report\n"
        "JOB_STATE id=e1 state=aborting\n"
        "JOB_STATE id=e1 state=concluded\n"
        "JOB_COMPLETED id=e1 offset=0 len=65536 "
        "error=\"read from test: Input/output error\"\n");
    assert_int_equal(atomic_get(&t->abort_calls), 1);
    job_unref(&t->common);
}

static void test_error_ignore(void **state)
{
    struct fixture *f = *state;
    struct test_job *t = new_test_job(f, &test_driver, "e2", 16 << 10, 4096);

    t->policy = JOB_ERROR_POLICY_IGNORE;
    t->fail_reads = 3;
    job_start(&t->common);
    wait_state(&t->common, JOB_STATE_CONCLUDED);
    assert_int_equal(t->common.result, JOB_RESULT_COMPLETED);
    assert_int_equal(t->common.io_status, JOB_IO_STATUS_OK);
    assert_events(f,
        "JOB_STATE id=e2 state=created\n"
        "JOB_STATE id=e2 state=running\n"
        "JOB_ERROR id=e2 operation=read action=ignore\n"
        "JOB_ERROR id=e2 operation=read action=ignore\n"
        "JOB_ERROR id=e2 operation=read action=ignore\n"
        "JOB_STATE id=e2 state=waiting\n"
        "JOB_STATE id=e2 state=pending\n"
        "JOB_STATE id=e2 state=concluded\n"
        "JOB_COMPLETED id=e2 offset=16384 len=16384\n");
    job_unref(&t->common);
}

static void test_error_stop_resume(void **state)
{
    struct fixture *f = *state;
    struct test_job *t = new_test_job(f, &test_driver, "e3", 16 << 10, 4096);
    struct test_job *u = new_test_job(f, &test_driver, "e4", 16 << 10, 4096);
    GError *error = NULL;

    /* ENOSPC: io-status nospace until resume, which retries. */
    t->policy = JOB_ERROR_POLICY_STOP;
    t->fail_errno = ENOSPC;
    t->fail_reads = 1;
    job_start(&t->common);
    wait_state(&t->common, JOB_STATE_PAUSED);
    {
        g_autofree char *status = job_status_text(&t->common);

        assert_non_null(strstr(status, "state: paused\n"));
        assert_non_null(strstr(status, "io-status: nospace\n"));
    }
    assert_true(job_user_resume(&t->common, &error));
    wait_state(&t->common, JOB_STATE_CONCLUDED);
    assert_int_equal(t->common.result, JOB_RESULT_COMPLETED);
    assert_int_equal(t->common.io_status, JOB_IO_STATUS_OK);
    assert_int_equal(t->common.progress_offset, 16 << 10);

    /* EIO while ready: standby with io-status failed. */
    u->policy = JOB_ERROR_POLICY_STOP;
    u->goes_ready = true;
    u->fail_writes_when_ready = 1;
    job_start(&u->common);
    wait_state(&u->common, JOB_STATE_STANDBY);
    {
        g_autofree char *status = job_status_text(&u->common);

        assert_non_null(strstr(status, "io-status: failed\n"));
    }
    assert_true(job_user_resume(&u->common, &error));
    wait_state(&u->common, JOB_STATE_READY);
    assert_true(job_complete(&u->common, &error));
    wait_state(&u->common, JOB_STATE_CONCLUDED);
    assert_int_equal(u->common.result, JOB_RESULT_COMPLETED);
    {
        g_autofree char *events = events_text(f);

        assert_non_null(strstr(events,
            "JOB_STATE id=e3 state=running\n"
            "JOB_ERROR id=e3 operation=read action=stop\n"
            "JOB_STATE id=e3 state=paused\n"
            "JOB_STATE id=e3 state=running\n"));
        assert_non_null(strstr(events,
            "JOB_READY id=e4 offset=16384 len=16384\n"
            "JOB_ERROR id=e4 operation=write action=stop\n"
            "JOB_STATE id=e4 state=standby\n"
            "JOB_STATE id=e4 state=ready\n"));
    }
    job_unref(&t->common);
    job_unref(&u->common);
}

static void test_prepare_fails(void **state)
{
    struct fixture *f = *state;
    struct test_job *t = new_test_job(f, &test_driver, "pf", 4096, 4096);

    t->fail_prepare = true;
    job_start(&t->common);
    wait_state(&t->common, JOB_STATE_CONCLUDED);
    assert_int_equal(t->common.result, JOB_RESULT_FAILED);
    assert_string_equal(t->common.error, "switching to test: failed");
    assert_int_equal(atomic_get(&t->abort_calls), 1);
    assert_events(f,
        "JOB_STATE id=pf state=created\n"
        "JOB_STATE id=pf state=running\n"
        "JOB_STATE id=pf state=waiting\n"
        "JOB_STATE id=pf state=pending\n"
        "JOB_STATE id=pf state=aborting\n"
        "JOB_STATE id=pf state=concluded\n"
        "JOB_COMPLETED id=pf offset=4096 len=4096 "
        "error=\"switching to test: failed\"\n");
    job_unref(&t->common);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_error_report, setup, teardown),
        cmocka_unit_test_setup_teardown(test_error_ignore, setup, teardown),
        cmocka_unit_test_setup_teardown(test_error_stop_resume, setup, teardown),
        cmocka_unit_test_setup_teardown(test_prepare_fails, setup, teardown),
    };

    return cmocka_run_group_tests_name("job errors", tests, NULL, NULL);
}
