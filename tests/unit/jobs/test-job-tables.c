/* Unit tests for the job state machine and verb tables (jobs/job.c),
 * checked cell by cell against the contract written out here. */
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

/* Every legal transition, as QEMU's job state machine has it. */
static const char *const legal_transitions[] = {
    "created>running", "created>aborting", "created>null",
    "running>paused", "running>ready", "running>waiting", "running>aborting",
    "paused>running",
    "ready>standby", "ready>waiting", "ready>aborting",
    "standby>ready",
    "waiting>pending", "waiting>aborting",
    "pending>concluded", "pending>aborting",
    "aborting>concluded",
    "concluded>null",
};

/* Every state each verb accepts (INTERFACE.md section 3). */
static const char *const legal_verbs[] = {
    "cancel:created", "cancel:running", "cancel:paused", "cancel:ready",
    "cancel:standby", "cancel:waiting", "cancel:pending", "cancel:aborting",
    "pause:created", "pause:running", "pause:paused", "pause:ready",
    "pause:standby",
    "resume:created", "resume:running", "resume:paused", "resume:ready",
    "resume:standby",
    "set-speed:created", "set-speed:running", "set-speed:paused",
    "set-speed:ready", "set-speed:standby",
    "change:created", "change:running", "change:paused", "change:ready",
    "change:standby",
    "complete:ready", "complete:standby",
    "dismiss:concluded",
};

static bool listed(const char *const *list, size_t n, const char *item)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(list[i], item) == 0) {
            return true;
        }
    }
    return false;
}

static void test_names(void **state)
{
    static const char *const states[] = {
        "created", "running", "paused", "ready", "standby", "waiting",
        "pending", "aborting", "concluded", "null",
    };
    static const char *const verbs[] = {
        "cancel", "pause", "resume", "set-speed", "complete", "dismiss",
        "change",
    };

    (void)state;
    assert_int_equal(G_N_ELEMENTS(states), JOB_STATE__MAX);
    for (enum job_state s = 0; s < JOB_STATE__MAX; s++) {
        assert_string_equal(job_state_name(s), states[s]);
    }
    assert_int_equal(G_N_ELEMENTS(verbs), JOB_VERB__MAX);
    for (enum job_verb v = 0; v < JOB_VERB__MAX; v++) {
        assert_string_equal(job_verb_name(v), verbs[v]);
    }
    assert_string_equal(job_state_name(JOB_STATE__MAX), "invalid");
    assert_string_equal(job_io_status_name(JOB_IO_STATUS_OK), "ok");
    assert_string_equal(job_io_status_name(JOB_IO_STATUS_FAILED), "failed");
    assert_string_equal(job_io_status_name(JOB_IO_STATUS_NOSPACE), "nospace");
    assert_string_equal(job_result_name(JOB_RESULT_NONE), "none");
    assert_string_equal(job_result_name(JOB_RESULT_COMPLETED), "completed");
    assert_string_equal(job_result_name(JOB_RESULT_CANCELLED), "cancelled");
    assert_string_equal(job_result_name(JOB_RESULT_FAILED), "failed");
}

static void test_transition_table(void **state)
{
    unsigned legal = 0;

    (void)state;
    for (enum job_state from = 0; from < JOB_STATE__MAX; from++) {
        for (enum job_state to = 0; to < JOB_STATE__MAX; to++) {
            char item[64];
            bool expected;

            snprintf(item, sizeof(item), "%s>%s", job_state_name(from),
                     job_state_name(to));
            expected = listed(legal_transitions,
                              G_N_ELEMENTS(legal_transitions), item);
            if (job_transition_allowed(from, to) != expected) {
                fail_msg("transition %s: table says %d", item, !expected);
            }
            legal += expected;
        }
    }
    assert_int_equal(legal, G_N_ELEMENTS(legal_transitions));
    assert_false(job_transition_allowed(JOB_STATE__MAX, JOB_STATE_RUNNING));
    assert_false(job_transition_allowed(JOB_STATE_CREATED, JOB_STATE__MAX));
}

static void test_verb_table(void **state)
{
    unsigned legal = 0;

    (void)state;
    for (enum job_verb verb = 0; verb < JOB_VERB__MAX; verb++) {
        for (enum job_state s = 0; s < JOB_STATE__MAX; s++) {
            char item[64];
            bool expected;

            snprintf(item, sizeof(item), "%s:%s", job_verb_name(verb),
                     job_state_name(s));
            expected = listed(legal_verbs, G_N_ELEMENTS(legal_verbs), item);
            if (job_verb_allowed(verb, s) != expected) {
                fail_msg("verb %s: table says %d", item, !expected);
            }
            legal += expected;
        }
    }
    assert_int_equal(legal, G_N_ELEMENTS(legal_verbs));
    assert_false(job_verb_allowed(JOB_VERB__MAX, JOB_STATE_RUNNING));
}

static int never_run(struct job *job, GError **errp)
{
    (void)job;
    (void)errp;
    fail();
    return 0;
}

static const struct job_driver idle_driver = {
    .job_type = "idle",
    .instance_size = sizeof(struct job),
    .run = never_run,
};

/* job_apply_verb_locked in every state: one lookup, one error naming the
 * job, its state and the verb. */
static void test_apply_verb_messages(void **state)
{
    struct event_log *log = event_log_new(0);
    struct job_list *list = job_list_new(log, 16);
    struct job *job = job_create(list, &idle_driver, "m1", "vm1", NULL);

    (void)state;
    assert_non_null(job);
    for (enum job_state s = 0; s < JOB_STATE__MAX; s++) {
        for (enum job_verb verb = 0; verb < JOB_VERB__MAX; verb++) {
            GError *error = NULL;
            bool ok;

            pthread_mutex_lock(&job->lock);
            job->state = s;
            ok = job_apply_verb_locked(job, verb, &error);
            pthread_mutex_unlock(&job->lock);
            assert_int_equal(ok, job_verb_allowed(verb, s));
            if (ok) {
                assert_null(error);
            } else {
                g_autofree char *expected = g_strdup_printf(
                    "job 'm1' is in state '%s': cannot %s",
                    job_state_name(s), job_verb_name(verb));

                assert_int_equal(error->domain, CHAINFS_ERROR);
                assert_int_equal(error->code, EINVAL);
                assert_string_equal(error->message, expected);
                g_error_free(error);
            }
        }
    }
    pthread_mutex_lock(&job->lock);
    job->state = JOB_STATE_CREATED;
    pthread_mutex_unlock(&job->lock);
    job_early_fail(job);
    job_list_free(list);
    event_log_free(log);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_transition_table),
        cmocka_unit_test(test_verb_table),
        cmocka_unit_test(test_apply_verb_messages),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
