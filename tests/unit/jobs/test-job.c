/* Unit tests for the job framework (jobs/job.c, jobs/job-list.c): the
 * lifecycle, verbs, events and status text, with the test job driver. */
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

static void test_run_to_completion(void **state)
{
    struct fixture *f = *state;
    struct test_job *t = new_test_job(f, &test_driver, "t1", 1 << 20, 64 << 10);
    struct job *job = &t->common;
    g_autofree char *status = NULL;
    GError *error = NULL;

    assert_int_equal(job_get_state(job), JOB_STATE_CREATED);
    status = job_status_text(job);
    assert_string_equal(status,
        "id: t1\ntype: test\ndisk: vm1\nstate: created\noffset: 0\nlen: 0\n"
        "speed: 0\nio-status: ok\ndirty: 0\ncopied: 0\n"
        "copy-mode: background\nresult: none\n");
    g_free(g_steal_pointer(&status));

    job_start(job);
    wait_state(job, JOB_STATE_CONCLUDED);
    status = job_status_text(job);
    assert_string_equal(status,
        "id: t1\ntype: test\ndisk: vm1\nstate: concluded\noffset: 1048576\n"
        "len: 1048576\nspeed: 0\nio-status: ok\ndirty: 0\ncopied: 1048576\n"
        "copy-mode: background\nresult: completed\n");
    assert_int_equal(atomic_get(&t->run_calls), 1);
    assert_int_equal(atomic_get(&t->prepare_calls), 1);
    assert_int_equal(atomic_get(&t->abort_calls), 0);
    assert_int_equal(atomic_get(&t->clean_calls), 1);
    assert_events(f,
        "JOB_STATE id=t1 state=created\n"
        "JOB_STATE id=t1 state=running\n"
        "JOB_STATE id=t1 state=waiting\n"
        "JOB_STATE id=t1 state=pending\n"
        "JOB_STATE id=t1 state=concluded\n"
        "JOB_COMPLETED id=t1 offset=1048576 len=1048576\n");

    /* Concluded: only dismiss is accepted. */
    expect_error(job_user_pause(job, &error), &error, EINVAL,
                 "job 't1' is in state 'concluded': cannot pause");
    expect_error(job_cancel(job, false, &error), &error, EINVAL,
                 "job 't1' is in state 'concluded': cannot cancel");
    expect_error(job_set_speed(job, 5, &error), &error, EINVAL,
                 "job 't1' is in state 'concluded': cannot set-speed");
    assert_true(job_dismiss(job, &error));
    assert_int_equal(job_get_state(job), JOB_STATE_NULL);
    assert_null(job_list_lookup(f->list, "t1", &error));
    expect_error(false, &error, ENOENT, "no such job 't1'");
    assert_int_equal(atomic_get(&freed_jobs), 0);   /* we still hold it */
    job_unref(job);
    assert_int_equal(atomic_get(&freed_jobs), 1);
}

static void test_pause_resume(void **state)
{
    struct fixture *f = *state;
    struct test_job *t = new_test_job(f, &test_driver, "p1", 1 << 20, 4096);
    struct job *job = &t->common;
    GError *error = NULL;
    uint64_t offset;
    uint64_t events_size;
    g_autofree char *status = NULL;

    /* 64 KiB/s with 4 KiB chunks: 16 s, far longer than the test. */
    assert_true(job_set_speed(job, 64 << 10, &error));
    job_set_burst(job, 4096);
    /* Pausing a job not yet started takes effect once it runs. */
    assert_true(job_user_pause(job, &error));
    job_start(job);
    wait_state(job, JOB_STATE_PAUSED);

    /* Nothing moves while paused: no event, no progress. */
    offset = __atomic_load_n(&job->progress_offset, __ATOMIC_SEQ_CST);
    events_size = event_log_size(f->log);
    assert_int_equal(event_log_wait(f->log, events_size, 200000), events_size);
    assert_int_equal(__atomic_load_n(&job->progress_offset, __ATOMIC_SEQ_CST),
                     offset);
    status = job_status_text(job);
    assert_non_null(strstr(status, "state: paused\n"));
    assert_non_null(strstr(status, "speed: 65536\n"));

    /* Pause is idempotent; resume runs it again. */
    assert_true(job_user_pause(job, &error));
    assert_true(job_user_resume(job, &error));
    wait_state(job, JOB_STATE_RUNNING);
    wait_offset(job, offset + 8192);

    /* Pause while sleeping in the rate limit wakes the sleep. */
    assert_true(job_user_pause(job, &error));
    wait_state(job, JOB_STATE_PAUSED);
    assert_true(job_user_resume(job, &error));
    wait_state(job, JOB_STATE_RUNNING);

    /* complete is refused before ready. */
    expect_error(job_complete(job, &error), &error, EINVAL,
                 "job 'p1' is in state 'running': cannot complete");

    /* Unlimited speed wakes the sleep and lets it finish. */
    assert_true(job_set_speed(job, 0, &error));
    wait_state(job, JOB_STATE_CONCLUDED);
    assert_int_equal(job->result, JOB_RESULT_COMPLETED);
    assert_events(f,
        "JOB_STATE id=p1 state=created\n"
        "JOB_STATE id=p1 state=running\n"
        "JOB_STATE id=p1 state=paused\n"
        "JOB_STATE id=p1 state=running\n"
        "JOB_STATE id=p1 state=paused\n"
        "JOB_STATE id=p1 state=running\n"
        "JOB_STATE id=p1 state=waiting\n"
        "JOB_STATE id=p1 state=pending\n"
        "JOB_STATE id=p1 state=concluded\n"
        "JOB_COMPLETED id=p1 offset=1048576 len=1048576\n");
    job_unref(job);
}

static void test_cancel_while_sleeping(void **state)
{
    struct fixture *f = *state;
    struct test_job *t = new_test_job(f, &test_driver, "c1", 1 << 20, 65536);
    struct job *job = &t->common;
    GError *error = NULL;
    int64_t start;

    /* 1 byte/s: the second chunk waits for 15 hours. */
    assert_true(job_set_speed(job, 1, &error));
    job_start(job);
    wait_offset(job, 65536);
    assert_int_equal(job_get_state(job), JOB_STATE_RUNNING);

    start = g_get_monotonic_time();
    assert_true(job_cancel(job, false, &error));
    wait_state(job, JOB_STATE_CONCLUDED);
    assert_true(g_get_monotonic_time() - start < 5 * G_USEC_PER_SEC);
    assert_int_equal(job->result, JOB_RESULT_CANCELLED);
    assert_int_equal(atomic_get(&t->prepare_calls), 0);
    assert_int_equal(atomic_get(&t->abort_calls), 1);
    assert_int_equal(atomic_get(&t->clean_calls), 1);
    assert_events(f,
        "JOB_STATE id=c1 state=created\n"
        "JOB_STATE id=c1 state=running\n"
        "JOB_STATE id=c1 state=aborting\n"
        "JOB_STATE id=c1 state=concluded\n"
        "JOB_CANCELLED id=c1 offset=65536 len=1048576\n");
    {
        g_autofree char *status = job_status_text(job);

        assert_non_null(strstr(status, "result: cancelled\n"));
        assert_null(strstr(status, "error:"));
    }
    job_unref(job);
}

static void test_cancel_paused_and_created(void **state)
{
    struct fixture *f = *state;
    struct test_job *t = new_test_job(f, &test_driver, "c2", 1 << 20, 4096);
    struct test_job *u = new_test_job(f, &test_driver, "c3", 1 << 20, 4096);
    GError *error = NULL;

    assert_true(job_user_pause(&t->common, &error));
    job_start(&t->common);
    wait_state(&t->common, JOB_STATE_PAUSED);
    assert_true(job_cancel(&t->common, false, &error));
    wait_state(&t->common, JOB_STATE_CONCLUDED);
    assert_int_equal(t->common.result, JOB_RESULT_CANCELLED);

    /* Cancelled before it started: run is never called. */
    assert_true(job_cancel(&u->common, true, &error));
    job_start(&u->common);
    wait_state(&u->common, JOB_STATE_CONCLUDED);
    assert_int_equal(u->common.result, JOB_RESULT_CANCELLED);
    assert_int_equal(atomic_get(&u->run_calls), 0);
    assert_int_equal(atomic_get(&u->abort_calls), 1);
    job_unref(&t->common);
    job_unref(&u->common);
}

static void test_ready_complete(void **state)
{
    struct fixture *f = *state;
    struct test_job *t = new_test_job(f, &test_driver, "m1", 256 << 10,
                                      64 << 10);
    struct job *job = &t->common;
    struct job_change_opts change = {
        .has_copy_mode = true, .copy_mode = JOB_COPY_MODE_WRITE_BLOCKING,
    };
    GError *error = NULL;

    t->goes_ready = true;
    job_start(job);
    wait_state(job, JOB_STATE_READY);
    assert_true(job_change(job, &change, &error));
    {
        g_autofree char *status = job_status_text(job);

        assert_string_equal(status,
            "id: m1\ntype: test\ndisk: vm1\nstate: ready\noffset: 262144\n"
            "len: 262144\nspeed: 0\nio-status: ok\ndirty: 0\n"
            "copied: 262144\ncopy-mode: write-blocking\nresult: none\n");
    }
    /* Paused while ready is standby; complete is accepted there too. */
    assert_true(job_user_pause(job, &error));
    wait_state(job, JOB_STATE_STANDBY);
    assert_true(job_complete(job, &error));
    assert_int_equal(atomic_get(&t->complete_calls), 1);
    assert_true(job_user_resume(job, &error));
    wait_state(job, JOB_STATE_CONCLUDED);
    assert_int_equal(job->result, JOB_RESULT_COMPLETED);
    assert_events(f,
        "JOB_STATE id=m1 state=created\n"
        "JOB_STATE id=m1 state=running\n"
        "JOB_STATE id=m1 state=ready\n"
        "JOB_READY id=m1 offset=262144 len=262144\n"
        "JOB_STATE id=m1 state=standby\n"
        "JOB_STATE id=m1 state=ready\n"
        "JOB_STATE id=m1 state=waiting\n"
        "JOB_STATE id=m1 state=pending\n"
        "JOB_STATE id=m1 state=concluded\n"
        "JOB_COMPLETED id=m1 offset=262144 len=262144\n");
    job_unref(job);
}

static void test_ready_cancel_soft_and_hard(void **state)
{
    struct fixture *f = *state;
    struct test_job *soft = new_test_job(f, &test_driver, "s", 4096, 4096);
    struct test_job *hard = new_test_job(f, &test_driver, "h", 4096, 4096);
    GError *error = NULL;

    soft->goes_ready = hard->goes_ready = true;
    job_start(&soft->common);
    job_start(&hard->common);
    wait_state(&soft->common, JOB_STATE_READY);
    wait_state(&hard->common, JOB_STATE_READY);

    /* A soft cancel of a ready job finishes it: result completed. */
    assert_true(job_cancel(&soft->common, false, &error));
    assert_false(job_complete(&soft->common, &error));
    assert_int_equal(error->code, EINVAL);
    g_clear_error(&error);
    wait_state(&soft->common, JOB_STATE_CONCLUDED);
    assert_int_equal(soft->common.result, JOB_RESULT_COMPLETED);
    assert_int_equal(atomic_get(&soft->prepare_calls), 1);

    /* cancel force: result cancelled. */
    assert_true(job_cancel(&hard->common, true, &error));
    wait_state(&hard->common, JOB_STATE_CONCLUDED);
    assert_int_equal(hard->common.result, JOB_RESULT_CANCELLED);
    assert_int_equal(atomic_get(&hard->prepare_calls), 0);
    assert_int_equal(atomic_get(&hard->abort_calls), 1);
    job_unref(&soft->common);
    job_unref(&hard->common);
}


static void test_bare_driver(void **state)
{
    struct fixture *f = *state;
    struct test_job *t = new_test_job(f, &bare_driver, "b1", 4096, 4096);
    struct job_change_opts change = { .has_copy_mode = true };
    GError *error = NULL;

    t->goes_ready = true;
    expect_error(job_change(&t->common, &change, &error), &error, ENOTSUP,
                 "job 'b1': bare jobs cannot change");
    job_start(&t->common);
    wait_state(&t->common, JOB_STATE_READY);
    expect_error(job_complete(&t->common, &error), &error, ENOTSUP,
                 "job 'b1': bare jobs cannot complete");
    /* No cancel hook: always a hard cancel. */
    assert_true(job_cancel(&t->common, false, &error));
    wait_state(&t->common, JOB_STATE_CONCLUDED);
    assert_int_equal(t->common.result, JOB_RESULT_CANCELLED);
    {
        g_autofree char *status = job_status_text(&t->common);

        assert_null(strstr(status, "copy-mode"));
    }
    job_unref(&t->common);
}

static void test_registry(void **state)
{
    struct fixture *f = *state;
    struct job *jobs[8];
    struct job *job;
    GError *error = NULL;
    GPtrArray *snapshot;

    for (int i = 0; i < 8; i++) {
        char id[8];

        snprintf(id, sizeof(id), "j%d", i);
        jobs[i] = &new_test_job(f, &test_driver, id, 4096, 4096)->common;
    }
    assert_null(job_create(f->list, &test_driver, "j3", "vm1", &error));
    expect_error(false, &error, EEXIST, "job id 'j3' is in use");
    assert_null(job_create(f->list, &test_driver, "j8", "vm1", &error));
    expect_error(false, &error, EBUSY,
                 "too many jobs (8): dismiss concluded jobs first");

    snapshot = job_list_snapshot(f->list);
    assert_int_equal(snapshot->len, 8);
    for (unsigned i = 0; i < snapshot->len; i++) {
        assert_ptr_equal(g_ptr_array_index(snapshot, i), jobs[i]);
        job_unref(g_ptr_array_index(snapshot, i));
    }
    g_ptr_array_free(snapshot, TRUE);

    /* A job that fails to set up leaves no trace but its events. */
    job_early_fail(jobs[7]);
    assert_null(job_list_lookup(f->list, "j7", NULL));
    job = job_create(f->list, &test_driver, "j7", "vm1", &error);
    assert_non_null(job);
    test_job_of(job)->len = test_job_of(job)->chunk = 4096;

    /* Dismiss only when concluded, and it frees the id. */
    expect_error(job_dismiss(jobs[0], &error), &error, EINVAL,
                 "job 'j0' is in state 'created': cannot dismiss");
    job_start(jobs[0]);
    wait_state(jobs[0], JOB_STATE_CONCLUDED);
    assert_true(job_dismiss(jobs[0], &error));
    job_unref(jobs[0]);
    jobs[0] = job_create(f->list, &test_driver, "j0", "vm1", &error);
    assert_non_null(jobs[0]);
    test_job_of(jobs[0])->len = test_job_of(jobs[0])->chunk = 4096;

    job_start(job);
    job_unref(job);
    for (int i = 0; i < 7; i++) {
        struct job *found = job_list_lookup(f->list, jobs[i]->id, &error);

        assert_ptr_equal(found, jobs[i]);
        job_unref(found);
        job_start(jobs[i]);
        job_unref(jobs[i]);
    }
    /* teardown: job_list_free waits for all and dismisses them. */
}

static void test_list_free_cancels(void **state)
{
    struct fixture *f = *state;
    struct test_job *t = new_test_job(f, &test_driver, "long", 1 << 30, 4096);
    struct test_job *r = new_test_job(f, &test_driver, "rdy", 4096, 4096);
    struct test_job *idle = new_test_job(f, &test_driver, "idle", 4096, 4096);
    GError *error = NULL;

    assert_true(job_set_speed(&t->common, 1, &error));
    r->goes_ready = true;
    job_start(&t->common);
    job_start(&r->common);
    wait_state(&r->common, JOB_STATE_READY);
    job_unref(&t->common);
    job_unref(&r->common);
    job_unref(&idle->common);
    /* teardown frees the list: cancels the running one (hard, it is not
     * ready), the ready one (soft: completed) and the one never started,
     * waits and frees all three. */
    job_list_free(f->list);
    f->list = NULL;
    assert_int_equal(atomic_get(&freed_jobs), 3);
    {
        g_autofree char *events = events_text(f);

        assert_non_null(strstr(events, "JOB_CANCELLED id=long "));
        assert_non_null(strstr(events, "JOB_COMPLETED id=rdy "));
        const char *aborting = strstr(events,
                                      "JOB_STATE id=idle state=aborting\n");
        const char *concluded = strstr(events,
                                       "JOB_STATE id=idle state=concluded\n");
        const char *cancelled = strstr(events,
                                       "JOB_CANCELLED id=idle offset=0 len=0\n");

        /* The three jobs end concurrently: their lines interleave. */
        assert_non_null(aborting);
        assert_true(concluded > aborting);
        assert_true(cancelled > concluded);
        assert_null(strstr(events, "JOB_STATE id=idle state=running\n"));
        assert_non_null(strstr(events, "JOB_STATE id=long state=null\n"));
        assert_non_null(strstr(events, "JOB_STATE id=rdy state=null\n"));
    }
}


int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_run_to_completion, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pause_resume, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel_while_sleeping, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel_paused_and_created, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ready_complete, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ready_cancel_soft_and_hard, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bare_driver, setup, teardown),
        cmocka_unit_test_setup_teardown(test_registry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list_free_cancels, setup, teardown),
    };

    return cmocka_run_group_tests_name("job framework", tests, NULL, NULL);
}
