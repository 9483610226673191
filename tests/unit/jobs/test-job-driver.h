/* The test job driver shared by the job framework tests: a loop that
 * "copies" chunks with pause points, rate limiting and injected errors,
 * and optionally waits in ready like a mirror; plus fixtures and polling
 * helpers (every wait is a poll with a timeout, never a sleep). */
#ifndef CHAINFS_TEST_JOB_DRIVER_H
#define CHAINFS_TEST_JOB_DRIVER_H

#include <stdbool.h>
#include <stdint.h>
#include <glib.h>

#include "jobs/job.h"

#define TIMEOUT_US (20 * G_USEC_PER_SEC)

struct test_job {
    struct job common;
    /* Set before job_start: */
    uint64_t len;
    uint64_t chunk;
    bool goes_ready;            /* wait in ready for complete or cancel */
    enum job_error_policy policy;
    int fail_errno;
    bool fail_prepare;
    /* Atomics: */
    int fail_reads;             /* the next reads that fail */
    int fail_writes_when_ready; /* writes that fail once ready */
    int run_calls;
    int complete_calls;
    int prepare_calls;
    int abort_calls;
    int clean_calls;
    int change_calls;
    int copy_mode;
};

struct fixture {
    struct event_log *log;
    struct job_list *list;
};

/* Jobs freed so far (the driver's free hook counts). */
extern int freed_jobs;
/* Every hook set. */
extern const struct job_driver test_driver;
/* Only run: no optional hooks at all. */
extern const struct job_driver bare_driver;

struct test_job *test_job_of(struct job *job);
int atomic_get(int *value);
void atomic_inc(int *value);
/* cmocka setup/teardown: a fresh event log and a list of 8 jobs. */
int setup(void **state);
int teardown(void **state);
/* A created job of len bytes in chunk-sized steps, failing with EIO. */
struct test_job *new_test_job(struct fixture *f,
                              const struct job_driver *driver,
                              const char *id, uint64_t len, uint64_t chunk);
/* The events so far without time stamps (g_free it). */
char *events_text(struct fixture *f);
void assert_events(struct fixture *f, const char *expected);
/* Poll for a state / a progress offset, failing after TIMEOUT_US. */
void wait_state(struct job *job, enum job_state state);
void wait_offset(struct job *job, uint64_t offset);
/* ok must be false and *errp the error (freed and cleared here). */
void expect_error(bool ok, GError **errp, int code, const char *message);

#endif
