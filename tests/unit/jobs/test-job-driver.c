/* The test job driver and helpers (see test-job-driver.h). */
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

int freed_jobs;

struct test_job *test_job_of(struct job *job)
{
    return (struct test_job *)job;   /* common comes first */
}

int atomic_get(int *value)
{
    return __atomic_load_n(value, __ATOMIC_SEQ_CST);
}

void atomic_inc(int *value)
{
    __atomic_fetch_add(value, 1, __ATOMIC_SEQ_CST);
}

/* Consume one injected failure, if any is left. */
static bool take_failure(int *count)
{
    int left = atomic_get(count);

    while (left > 0) {
        if (__atomic_compare_exchange_n(count, &left, left - 1, false,
                                        __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {
            return true;
        }
    }
    return false;
}

/* Apply the policy to one failed operation: 1 = retry, 0 = go on, -errno
 * = fail the job. */
static int test_job_error(struct test_job *t, bool is_read, GError **errp)
{
    switch (job_handle_error(&t->common, t->policy, is_read, t->fail_errno)) {
    case JOB_ERROR_ACTION_REPORT:
        g_set_error(errp, CHAINFS_ERROR, t->fail_errno, "%s test: %s",
                    is_read ? "read from" : "write to",
                    g_strerror(t->fail_errno));
        return -t->fail_errno;
    case JOB_ERROR_ACTION_IGNORE:
        return 1;
    case JOB_ERROR_ACTION_STOP:
        return job_pause_point(&t->common) ? -ECANCELED : 1;
    }
    return -EINVAL;
}

static int test_job_run(struct job *job, GError **errp)
{
    struct test_job *t = test_job_of(job);
    uint64_t done = 0;

    atomic_inc(&t->run_calls);
    job_progress_set_len(job, t->len);
    job_progress_set_dirty(job, t->len);
    while (done < t->len) {
        uint64_t n = MIN(t->chunk, t->len - done);

        if (job_throttle(job, n)) {
            return -ECANCELED;
        }
        if (take_failure(&t->fail_reads)) {
            int ret = test_job_error(t, true, errp);

            if (ret < 0) {
                return ret;
            }
            continue;
        }
        done += n;
        job_progress_add_offset(job, n);
        job_progress_add_copied(job, n);
        job_progress_set_dirty(job, t->len - done);
        if (job_pause_point(job)) {
            return -ECANCELED;
        }
    }
    if (!t->goes_ready) {
        return 0;
    }
    job_transition_to_ready(job);
    while (!job_is_completing(job) && !job_cancel_requested(job)) {
        if (take_failure(&t->fail_writes_when_ready)) {
            int ret = test_job_error(t, false, errp);

            if (ret < 0) {
                return ret;
            }
            continue;
        }
        if (job_sleep_ns(job, 60ull * 1000000000)) {
            return -ECANCELED;
        }
    }
    return 0;
}

static bool test_job_complete(struct job *job, GError **errp)
{
    (void)errp;
    atomic_inc(&test_job_of(job)->complete_calls);
    return true;
}

/* Soft cancel when ready, as a mirror. */
static bool test_job_cancel(struct job *job, bool force)
{
    enum job_state state = job_get_state(job);

    return force || (state != JOB_STATE_READY && state != JOB_STATE_STANDBY);
}

static bool test_job_change(struct job *job, const struct job_change_opts *opts,
                            GError **errp)
{
    (void)errp;
    atomic_inc(&test_job_of(job)->change_calls);
    if (opts->has_copy_mode) {
        __atomic_store_n(&test_job_of(job)->copy_mode, opts->copy_mode,
                         __ATOMIC_SEQ_CST);
    }
    return true;
}

static bool test_job_prepare(struct job *job, GError **errp)
{
    struct test_job *t = test_job_of(job);

    atomic_inc(&t->prepare_calls);
    if (t->fail_prepare) {
        g_set_error(errp, CHAINFS_ERROR, EIO, "switching to test: failed");
        return false;
    }
    return true;
}

static void test_job_abort(struct job *job)
{
    atomic_inc(&test_job_of(job)->abort_calls);
}

static void test_job_clean(struct job *job)
{
    atomic_inc(&test_job_of(job)->clean_calls);
}

static void test_job_status(struct job *job, GString *out)
{
    g_string_append_printf(out, "copy-mode: %s\n",
                           atomic_get(&test_job_of(job)->copy_mode)
                               ? "write-blocking" : "background");
}

static void test_job_free(struct job *job)
{
    (void)job;
    atomic_inc(&freed_jobs);
}

const struct job_driver test_driver = {
    .job_type = "test",
    .instance_size = sizeof(struct test_job),
    .run = test_job_run,
    .complete = test_job_complete,
    .cancel = test_job_cancel,
    .change = test_job_change,
    .prepare = test_job_prepare,
    .abort = test_job_abort,
    .clean = test_job_clean,
    .status = test_job_status,
    .free = test_job_free,
};

/* Same, with no optional hooks at all. */
const struct job_driver bare_driver = {
    .job_type = "bare",
    .instance_size = sizeof(struct test_job),
    .run = test_job_run,
};


int setup(void **state)
{
    struct fixture *f = g_new0(struct fixture, 1);

    f->log = event_log_new(0);
    f->list = job_list_new(f->log, 8);
    __atomic_store_n(&freed_jobs, 0, __ATOMIC_SEQ_CST);
    *state = f;
    return 0;
}

int teardown(void **state)
{
    struct fixture *f = *state;

    job_list_free(f->list);
    event_log_free(f->log);
    g_free(f);
    return 0;
}

struct test_job *new_test_job(struct fixture *f,
                                     const struct job_driver *driver,
                                     const char *id, uint64_t len,
                                     uint64_t chunk)
{
    GError *error = NULL;
    struct job *job = job_create(f->list, driver, id, "vm1", &error);

    if (!job) {
        fail_msg("job_create %s: %s", id, error->message);
    }
    test_job_of(job)->len = len;
    test_job_of(job)->chunk = chunk;
    test_job_of(job)->fail_errno = EIO;
    return test_job_of(job);
}

/* The events so far without time stamps, one string. */
char *events_text(struct fixture *f)
{
    uint64_t size = event_log_size(f->log);
    g_autofree char *raw = g_malloc0(size + 1);
    GString *out = g_string_new(NULL);
    g_auto(GStrv) lines = NULL;

    event_log_read(f->log, 0, size, raw);
    lines = g_strsplit(raw, "\n", -1);
    for (char **line = lines; *line && **line; line++) {
        g_string_append(out, strchr(*line, ' ') + 1);
        g_string_append_c(out, '\n');
    }
    return g_string_free(out, FALSE);
}

void assert_events(struct fixture *f, const char *expected)
{
    g_autofree char *text = events_text(f);

    assert_string_equal(text, expected);
}

void wait_state(struct job *job, enum job_state state)
{
    if (!job_wait_for_state(job, state, TIMEOUT_US)) {
        fail_msg("job %s: state %s, expected %s", job->id,
                 job_state_name(job_get_state(job)), job_state_name(state));
    }
}

/* Poll the progress offset until it reaches at least offset. */
void wait_offset(struct job *job, uint64_t offset)
{
    int64_t deadline = g_get_monotonic_time() + TIMEOUT_US;

    while (__atomic_load_n(&job->progress_offset, __ATOMIC_SEQ_CST) < offset) {
        assert_true(g_get_monotonic_time() < deadline);
        event_log_wait(job->events, event_log_size(job->events), 1000);
    }
}

/* ok must be false and *errp the error; takes *errp. */
void expect_error(bool ok, GError **errp, int code, const char *message)
{
    GError *error = *errp;

    *errp = NULL;
    assert_false(ok);
    assert_non_null(error);
    assert_int_equal(error->domain, CHAINFS_ERROR);
    assert_int_equal(error->code, code);
    assert_string_equal(error->message, message);
    g_error_free(error);
}
