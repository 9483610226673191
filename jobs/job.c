/* chainfs: the job core: state machine and verbs as data, the worker
 * thread, pause points, sleeps, rate limit, error policy, events and the
 * status text (see job.h). */
#include "jobs/job.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "core/block.h"
#include "core/blocker.h"
#include "core/deadline.h"
#include "core/event-log.h"
#include "jobs/job-internal.h"

static const char *const job_state_names[JOB_STATE__MAX] = {
    [JOB_STATE_CREATED] = "created",
    [JOB_STATE_RUNNING] = "running",
    [JOB_STATE_PAUSED] = "paused",
    [JOB_STATE_READY] = "ready",
    [JOB_STATE_STANDBY] = "standby",
    [JOB_STATE_WAITING] = "waiting",
    [JOB_STATE_PENDING] = "pending",
    [JOB_STATE_ABORTING] = "aborting",
    [JOB_STATE_CONCLUDED] = "concluded",
    [JOB_STATE_NULL] = "null",
};

static const char *const job_verb_names[JOB_VERB__MAX] = {
    [JOB_VERB_CANCEL] = "cancel",
    [JOB_VERB_PAUSE] = "pause",
    [JOB_VERB_RESUME] = "resume",
    [JOB_VERB_SET_SPEED] = "set-speed",
    [JOB_VERB_COMPLETE] = "complete",
    [JOB_VERB_DISMISS] = "dismiss",
    [JOB_VERB_CHANGE] = "change",
};

/* job_transition_table[from][to]: the state machine, as QEMU's JobSTT. */
static const bool job_transition_table[JOB_STATE__MAX][JOB_STATE__MAX] = {
    [JOB_STATE_CREATED] = {
        [JOB_STATE_RUNNING] = true, [JOB_STATE_ABORTING] = true,
        [JOB_STATE_NULL] = true,
    },
    [JOB_STATE_RUNNING] = {
        [JOB_STATE_PAUSED] = true, [JOB_STATE_READY] = true,
        [JOB_STATE_WAITING] = true, [JOB_STATE_ABORTING] = true,
    },
    [JOB_STATE_PAUSED] = { [JOB_STATE_RUNNING] = true },
    [JOB_STATE_READY] = {
        [JOB_STATE_STANDBY] = true, [JOB_STATE_WAITING] = true,
        [JOB_STATE_ABORTING] = true,
    },
    [JOB_STATE_STANDBY] = { [JOB_STATE_READY] = true },
    [JOB_STATE_WAITING] = {
        [JOB_STATE_PENDING] = true, [JOB_STATE_ABORTING] = true,
    },
    [JOB_STATE_PENDING] = {
        [JOB_STATE_CONCLUDED] = true, [JOB_STATE_ABORTING] = true,
    },
    [JOB_STATE_ABORTING] = { [JOB_STATE_CONCLUDED] = true },
    [JOB_STATE_CONCLUDED] = { [JOB_STATE_NULL] = true },
};

#define JOB_STATES_ACTIVE \
    [JOB_STATE_CREATED] = true, [JOB_STATE_RUNNING] = true, \
    [JOB_STATE_PAUSED] = true, [JOB_STATE_READY] = true, \
    [JOB_STATE_STANDBY] = true

/* job_verb_table[verb][state]: which verb each state accepts (INTERFACE.md
 * section 3), as QEMU's JobVerbTable. */
static const bool job_verb_table[JOB_VERB__MAX][JOB_STATE__MAX] = {
    [JOB_VERB_CANCEL] = {
        JOB_STATES_ACTIVE, [JOB_STATE_WAITING] = true,
        [JOB_STATE_PENDING] = true, [JOB_STATE_ABORTING] = true,
    },
    [JOB_VERB_PAUSE] = { JOB_STATES_ACTIVE },
    [JOB_VERB_RESUME] = { JOB_STATES_ACTIVE },
    [JOB_VERB_SET_SPEED] = { JOB_STATES_ACTIVE },
    [JOB_VERB_CHANGE] = { JOB_STATES_ACTIVE },
    [JOB_VERB_COMPLETE] = {
        [JOB_STATE_READY] = true, [JOB_STATE_STANDBY] = true,
    },
    [JOB_VERB_DISMISS] = { [JOB_STATE_CONCLUDED] = true },
};

const char *job_state_name(enum job_state state)
{
    return state < JOB_STATE__MAX ? job_state_names[state] : "invalid";
}

const char *job_verb_name(enum job_verb verb)
{
    return verb < JOB_VERB__MAX ? job_verb_names[verb] : "invalid";
}

const char *job_io_status_name(enum job_io_status io_status)
{
    static const char *const names[] = {
        [JOB_IO_STATUS_OK] = "ok",
        [JOB_IO_STATUS_FAILED] = "failed",
        [JOB_IO_STATUS_NOSPACE] = "nospace",
    };
    return io_status < G_N_ELEMENTS(names) ? names[io_status] : "invalid";
}

const char *job_result_name(enum job_result result)
{
    static const char *const names[] = {
        [JOB_RESULT_NONE] = "none",
        [JOB_RESULT_COMPLETED] = "completed",
        [JOB_RESULT_CANCELLED] = "cancelled",
        [JOB_RESULT_FAILED] = "failed",
    };
    return result < G_N_ELEMENTS(names) ? names[result] : "invalid";
}

bool job_transition_allowed(enum job_state from, enum job_state to)
{
    return from < JOB_STATE__MAX && to < JOB_STATE__MAX &&
           job_transition_table[from][to];
}

bool job_verb_allowed(enum job_verb verb, enum job_state state)
{
    return verb < JOB_VERB__MAX && state < JOB_STATE__MAX &&
           job_verb_table[verb][state];
}

/* --- Events and transitions ---------------------------------------------- */

/* Emit EVENT id=ID offset=N len=N [error=MSG]; requires job->lock. */
static void job_event_progress_locked(struct job *job, const char *event,
                                      const char *error)
{
    char offset[24];
    char len[24];
    struct event_field fields[] = {
        { "id", job->id },
        { "offset", offset },
        { "len", len },
        { "error", error },
    };

    snprintf(offset, sizeof(offset), "%" PRIu64,
             __atomic_load_n(&job->progress_offset, __ATOMIC_RELAXED));
    snprintf(len, sizeof(len), "%" PRIu64,
             __atomic_load_n(&job->progress_len, __ATOMIC_RELAXED));
    event_log_append_fields(job->events, event, fields, error ? 4 : 3);
}

/* One lookup in the table; an illegal transition is a bug in the caller. */
static void job_state_transition_locked(struct job *job, enum job_state to)
{
    if (!job_transition_allowed(job->state, to)) {
        g_error("job '%s': illegal transition %s -> %s", job->id,
                job_state_name(job->state), job_state_name(to));
    }
    job->state = to;
    event_log_append(job->events, "JOB_STATE", "id", job->id,
                     "state", job_state_name(to), NULL);
    pthread_cond_broadcast(&job->cond);
}

bool job_apply_verb_locked(struct job *job, enum job_verb verb, GError **errp)
{
    if (job_verb_allowed(verb, job->state)) {
        return true;
    }
    g_set_error(errp, CHAINFS_ERROR, EINVAL,
                "job '%s' is in state '%s': cannot %s", job->id,
                job_state_name(job->state), job_verb_name(verb));
    return false;
}

/* Wake every sleep and wait of the job; requires job->lock. */
static void job_kick_locked(struct job *job)
{
    job->kick_count++;
    pthread_cond_broadcast(&job->cond);
}

void job_kick(struct job *job)
{
    pthread_mutex_lock(&job->lock);
    job_kick_locked(job);
    pthread_mutex_unlock(&job->lock);
}

/* --- Blockers ------------------------------------------------------------ */

/* A concluded job blocks nothing: let go of the disk and layers before the
 * state says concluded, so whoever sees that state may use them. */
static void job_release_blocker(struct job *job)
{
    struct op_blocker *blocker;

    pthread_mutex_lock(&job->lock);
    blocker = job->blocker;
    job->blocker = NULL;
    job->blocker_released = true;
    pthread_mutex_unlock(&job->lock);
    op_blocker_release(blocker);
}

void job_attach_blocker(struct job *job, struct op_blocker *blocker)
{
    pthread_mutex_lock(&job->lock);
    if (!job->blocker_released) {
        g_assert(!job->blocker);
        job->blocker = blocker;
        blocker = NULL;
    }
    pthread_mutex_unlock(&job->lock);
    op_blocker_release(blocker);
}

/* --- Lifetime ------------------------------------------------------------ */

struct job *job_create(struct job_list *list, const struct job_driver *driver,
                       const char *id, const char *disk_name, GError **errp)
{
    struct job *job;
    pthread_condattr_t attr;

    g_assert(driver->instance_size >= sizeof(struct job) && driver->run);
    job = g_malloc0(driver->instance_size);
    job->driver = driver;
    job->id = g_strdup(id);
    job->disk_name = g_strdup(disk_name);
    job->list = list;
    job->events = job_list_events(list);
    job->refcount = 1;
    job->state = JOB_STATE_CREATED;
    pthread_mutex_init(&job->lock, NULL);
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&job->cond, &attr);
    pthread_condattr_destroy(&attr);
    ratelimit_init(&job->limit, NULL, NULL);

    if (!job_list_add(list, job, errp)) {
        job_unref(job);
        return NULL;
    }
    pthread_mutex_lock(&job->lock);
    event_log_append(job->events, "JOB_STATE", "id", job->id,
                     "state", job_state_name(job->state), NULL);
    pthread_mutex_unlock(&job->lock);
    return job;
}

void job_ref(struct job *job)
{
    __atomic_fetch_add(&job->refcount, 1, __ATOMIC_RELAXED);
}

static void job_free(struct job *job)
{
    if (job->driver->free) {
        job->driver->free(job);
    }
    op_blocker_release(job->blocker);
    pthread_cond_destroy(&job->cond);
    pthread_mutex_destroy(&job->lock);
    g_free(job->error);
    g_free(job->disk_name);
    g_free(job->id);
    g_free(job);
}

void job_unref(struct job *job)
{
    if (__atomic_sub_fetch(&job->refcount, 1, __ATOMIC_ACQ_REL) != 0) {
        return;
    }
    if (job->thread_started) {
        /* The worker holds no reference: the list's lasts until dismiss,
         * which needs concluded, the worker's last step.  So this is never
         * the worker, and the join waits at most for it to return. */
        g_assert(!pthread_equal(job->thread, pthread_self()));
        pthread_join(job->thread, NULL);
    }
    job_free(job);
}

void job_early_fail(struct job *job)
{
    job_release_blocker(job);
    pthread_mutex_lock(&job->lock);
    job_state_transition_locked(job, JOB_STATE_NULL);
    pthread_mutex_unlock(&job->lock);
    job_list_remove(job->list, job);
    job_unref(job);
}

/* --- Completion (on the worker thread) ----------------------------------- */

/* Settle the result after run returned ret: waiting -> pending (prepare)
 * or aborting, then concluded, then the final event. */
static void job_finish(struct job *job, int ret, GError *error)
{
    const struct job_driver *driver = job->driver;
    bool succeeded;

    pthread_mutex_lock(&job->lock);
    succeeded = ret == 0 && !job->force_cancel &&
                job->state != JOB_STATE_CREATED;
    if (succeeded) {
        job_state_transition_locked(job, JOB_STATE_WAITING);
        job_state_transition_locked(job, JOB_STATE_PENDING);
        pthread_mutex_unlock(&job->lock);
        g_clear_error(&error);
        succeeded = !driver->prepare || driver->prepare(job, &error);
        if (!succeeded && !error) {
            g_set_error(&error, CHAINFS_ERROR, EIO, "job '%s': prepare failed",
                        job->id);
        }
        pthread_mutex_lock(&job->lock);
    }
    if (succeeded) {
        job->result = JOB_RESULT_COMPLETED;
    } else {
        job_state_transition_locked(job, JOB_STATE_ABORTING);
        if (job->force_cancel) {
            job->result = JOB_RESULT_CANCELLED;
        } else {
            job->result = JOB_RESULT_FAILED;
            job->error = error ? g_strdup(error->message)
                               : g_strdup(g_strerror(ret < 0 ? -ret : EIO));
            g_strdelimit(job->error, "\n", ' ');
        }
    }
    pthread_mutex_unlock(&job->lock);
    g_clear_error(&error);

    if (!succeeded && driver->abort) {
        driver->abort(job);
    }
    if (driver->clean) {
        driver->clean(job);
    }
    job_release_blocker(job);

    /* The final event comes after the state so that a reader who saw it
     * finds the status concluded, with its result. */
    pthread_mutex_lock(&job->lock);
    job_state_transition_locked(job, JOB_STATE_CONCLUDED);
    job_event_progress_locked(job, job->result == JOB_RESULT_CANCELLED
                                       ? "JOB_CANCELLED" : "JOB_COMPLETED",
                              job->error);
    pthread_mutex_unlock(&job->lock);
}

static void *job_worker(void *opaque)
{
    struct job *job = opaque;
    GError *error = NULL;
    int ret = -ECANCELED;
    bool started;

    pthread_mutex_lock(&job->lock);
    started = job->state == JOB_STATE_RUNNING;
    pthread_mutex_unlock(&job->lock);
    if (started) {
        ret = job->driver->run(job, &error);
        if (ret < 0 && !error && !job_is_cancelled(job)) {
            g_set_error(&error, CHAINFS_ERROR, -ret, "%s", g_strerror(-ret));
        }
    }
    job_finish(job, ret, error);
    return NULL;
}

void job_start(struct job *job)
{
    int err;

    pthread_mutex_lock(&job->lock);
    if (job->state != JOB_STATE_CREATED || job->thread_started) {
        pthread_mutex_unlock(&job->lock);
        return;
    }
    /* Cancelled before start: the worker only concludes it. */
    if (!job->force_cancel) {
        job_state_transition_locked(job, JOB_STATE_RUNNING);
    }
    err = pthread_create(&job->thread, NULL, job_worker, job);
    job->thread_started = err == 0;
    pthread_mutex_unlock(&job->lock);

    if (err != 0) {
        GError *error = g_error_new(CHAINFS_ERROR, err,
                                    "job '%s': cannot start a thread: %s",
                                    job->id, g_strerror(err));
        job_finish(job, -err, error);
    }
}

/* --- Verbs ---------------------------------------------------------------- */

bool job_cancel(struct job *job, bool force, GError **errp)
{
    bool hard = true;
    bool started;

    pthread_mutex_lock(&job->lock);
    if (!job_apply_verb_locked(job, JOB_VERB_CANCEL, errp)) {
        pthread_mutex_unlock(&job->lock);
        return false;
    }
    if (job->force_cancel || job->state == JOB_STATE_ABORTING) {
        pthread_mutex_unlock(&job->lock);
        return true;
    }
    job->cancel_requested = true;
    started = job->state != JOB_STATE_CREATED;
    pthread_mutex_unlock(&job->lock);

    /* A job not started yet always stops at once. */
    if (started && job->driver->cancel) {
        hard = job->driver->cancel(job, force);
    }

    pthread_mutex_lock(&job->lock);
    job->force_cancel |= hard;
    /* A cancelled job must reach its end, so it leaves any pause. */
    job->user_paused = false;
    job->error_paused = false;
    job_kick_locked(job);
    pthread_mutex_unlock(&job->lock);
    return true;
}

bool job_user_pause(struct job *job, GError **errp)
{
    bool ok;

    pthread_mutex_lock(&job->lock);
    ok = job_apply_verb_locked(job, JOB_VERB_PAUSE, errp);
    if (ok) {
        job->user_paused = true;
        job_kick_locked(job);
    }
    pthread_mutex_unlock(&job->lock);
    return ok;
}

bool job_user_resume(struct job *job, GError **errp)
{
    bool ok;

    pthread_mutex_lock(&job->lock);
    ok = job_apply_verb_locked(job, JOB_VERB_RESUME, errp);
    if (ok) {
        job->user_paused = false;
        job->error_paused = false;
        job->io_status = JOB_IO_STATUS_OK;
        job_kick_locked(job);
    }
    pthread_mutex_unlock(&job->lock);
    return ok;
}

bool job_set_speed(struct job *job, uint64_t speed, GError **errp)
{
    pthread_mutex_lock(&job->lock);
    if (!job_apply_verb_locked(job, JOB_VERB_SET_SPEED, errp)) {
        pthread_mutex_unlock(&job->lock);
        return false;
    }
    if (speed > INT64_MAX) {
        pthread_mutex_unlock(&job->lock);
        g_set_error(errp, CHAINFS_ERROR, EINVAL,
                    "speed: %" PRIu64 " is larger than 2^63-1", speed);
        return false;
    }
    job->speed = speed;
    ratelimit_set_speed(&job->limit, speed, job->burst);
    job_kick_locked(job);
    pthread_mutex_unlock(&job->lock);

    if (job->driver->set_speed) {
        job->driver->set_speed(job, speed);
    }
    return true;
}

void job_set_burst(struct job *job, uint64_t burst)
{
    pthread_mutex_lock(&job->lock);
    job->burst = burst;
    ratelimit_set_speed(&job->limit, job->speed, burst);
    pthread_mutex_unlock(&job->lock);
}

/* The hook or ENOTSUP naming the job and its type. */
static bool job_check_hook(struct job *job, const void *hook,
                           enum job_verb verb, GError **errp)
{
    if (hook) {
        return true;
    }
    g_set_error(errp, CHAINFS_ERROR, ENOTSUP, "job '%s': %s jobs cannot %s",
                job->id, job->driver->job_type, job_verb_name(verb));
    return false;
}

bool job_complete(struct job *job, GError **errp)
{
    bool ok;

    pthread_mutex_lock(&job->lock);
    ok = job_apply_verb_locked(job, JOB_VERB_COMPLETE, errp) &&
         job_check_hook(job, (const void *)job->driver->complete,
                        JOB_VERB_COMPLETE, errp);
    if (ok && job->cancel_requested) {
        g_set_error(errp, CHAINFS_ERROR, EINVAL,
                    "job '%s' is being cancelled: cannot complete", job->id);
        ok = false;
    }
    pthread_mutex_unlock(&job->lock);
    if (!ok || !job->driver->complete(job, errp)) {
        return false;
    }
    pthread_mutex_lock(&job->lock);
    job->completing = true;
    job_kick_locked(job);
    pthread_mutex_unlock(&job->lock);
    return true;
}

bool job_change(struct job *job, const struct job_change_opts *opts,
                GError **errp)
{
    bool ok;

    pthread_mutex_lock(&job->lock);
    ok = job_apply_verb_locked(job, JOB_VERB_CHANGE, errp) &&
         job_check_hook(job, (const void *)job->driver->change,
                        JOB_VERB_CHANGE, errp);
    pthread_mutex_unlock(&job->lock);
    if (!ok || !job->driver->change(job, opts, errp)) {
        return false;
    }
    job_kick(job);
    return true;
}

bool job_dismiss(struct job *job, GError **errp)
{
    pthread_mutex_lock(&job->lock);
    if (!job_apply_verb_locked(job, JOB_VERB_DISMISS, errp)) {
        pthread_mutex_unlock(&job->lock);
        return false;
    }
    job_state_transition_locked(job, JOB_STATE_NULL);
    pthread_mutex_unlock(&job->lock);
    job_list_remove(job->list, job);
    return true;
}

/* --- For the run loop ---------------------------------------------------- */

bool job_pause_point(struct job *job)
{
    bool cancelled;

    pthread_mutex_lock(&job->lock);
    if ((job->user_paused || job->error_paused) && !job->cancel_requested &&
        (job->state == JOB_STATE_RUNNING || job->state == JOB_STATE_READY)) {
        enum job_state resume_to = job->state;

        job_state_transition_locked(job, resume_to == JOB_STATE_READY
                                             ? JOB_STATE_STANDBY
                                             : JOB_STATE_PAUSED);
        while ((job->user_paused || job->error_paused) &&
               !job->cancel_requested) {
            pthread_cond_wait(&job->cond, &job->lock);
        }
        job_state_transition_locked(job, resume_to);
    }
    cancelled = job->force_cancel;
    pthread_mutex_unlock(&job->lock);
    return cancelled;
}

bool job_pause_requested(struct job *job)
{
    bool paused;

    pthread_mutex_lock(&job->lock);
    paused = (job->user_paused || job->error_paused) &&
             !job->cancel_requested;
    pthread_mutex_unlock(&job->lock);
    return paused;
}

bool job_sleep_ns(struct job *job, uint64_t ns)
{
    if (ns > 0) {
        struct timespec deadline = deadline_after_ns(ns);

        /* A kick since the last sleep returned counts too: the run loop
         * may have checked its condition just before that kick. */
        pthread_mutex_lock(&job->lock);
        while (job->kicks_seen == job->kick_count && !job->force_cancel &&
               !job->user_paused && !job->error_paused) {
            if (pthread_cond_timedwait(&job->cond, &job->lock,
                                       &deadline) != 0) {
                break;
            }
        }
        job->kicks_seen = job->kick_count;
        pthread_mutex_unlock(&job->lock);
    }
    return job_pause_point(job);
}

bool job_throttle(struct job *job, uint64_t bytes)
{
    for (;;) {
        uint64_t delay;

        pthread_mutex_lock(&job->lock);
        delay = job->force_cancel ? 0
                                  : ratelimit_calculate_delay(&job->limit,
                                                              bytes);
        pthread_mutex_unlock(&job->lock);
        if (delay == 0) {
            return job_is_cancelled(job);
        }
        if (job_sleep_ns(job, delay)) {
            return true;
        }
    }
}

void job_transition_to_ready(struct job *job)
{
    pthread_mutex_lock(&job->lock);
    job_state_transition_locked(job, JOB_STATE_READY);
    job_event_progress_locked(job, "JOB_READY", NULL);
    pthread_mutex_unlock(&job->lock);
}

/* Read one bool field under the job's lock. */
static bool job_get_flag(struct job *job, const bool *flag)
{
    bool value;

    pthread_mutex_lock(&job->lock);
    value = *flag;
    pthread_mutex_unlock(&job->lock);
    return value;
}

bool job_is_cancelled(struct job *job)
{
    return job_get_flag(job, &job->force_cancel);
}

bool job_cancel_requested(struct job *job)
{
    return job_get_flag(job, &job->cancel_requested);
}

bool job_is_completing(struct job *job)
{
    return job_get_flag(job, &job->completing);
}

enum job_error_action job_handle_error(struct job *job,
                                       enum job_error_policy policy,
                                       bool is_read, int error)
{
    static const enum job_error_action actions[] = {
        [JOB_ERROR_POLICY_REPORT] = JOB_ERROR_ACTION_REPORT,
        [JOB_ERROR_POLICY_IGNORE] = JOB_ERROR_ACTION_IGNORE,
        [JOB_ERROR_POLICY_STOP] = JOB_ERROR_ACTION_STOP,
    };
    static const char *const action_names[] = {
        [JOB_ERROR_ACTION_REPORT] = "report",
        [JOB_ERROR_ACTION_IGNORE] = "ignore",
        [JOB_ERROR_ACTION_STOP] = "stop",
    };
    enum job_error_action action = actions[policy];

    pthread_mutex_lock(&job->lock);
    event_log_append(job->events, "JOB_ERROR", "id", job->id,
                     "operation", is_read ? "read" : "write",
                     "action", action_names[action], NULL);
    if (action == JOB_ERROR_ACTION_STOP && !job->cancel_requested) {
        job->error_paused = true;
        job->io_status = error == ENOSPC ? JOB_IO_STATUS_NOSPACE
                                         : JOB_IO_STATUS_FAILED;
        job_kick_locked(job);
    }
    pthread_mutex_unlock(&job->lock);
    return action;
}

/* --- Progress and status ------------------------------------------------- */

void job_progress_set_len(struct job *job, uint64_t len)
{
    __atomic_store_n(&job->progress_len, len, __ATOMIC_RELAXED);
}

void job_progress_increase_len(struct job *job, uint64_t delta)
{
    __atomic_fetch_add(&job->progress_len, delta, __ATOMIC_RELAXED);
}

void job_progress_add_offset(struct job *job, uint64_t done)
{
    __atomic_fetch_add(&job->progress_offset, done, __ATOMIC_RELAXED);
}

void job_progress_set_dirty(struct job *job, uint64_t dirty)
{
    __atomic_store_n(&job->dirty_bytes, dirty, __ATOMIC_RELAXED);
}

void job_progress_add_copied(struct job *job, uint64_t copied)
{
    __atomic_fetch_add(&job->copied_bytes, copied, __ATOMIC_RELAXED);
}

enum job_state job_get_state(struct job *job)
{
    enum job_state state;

    pthread_mutex_lock(&job->lock);
    state = job->state;
    pthread_mutex_unlock(&job->lock);
    return state;
}

bool job_wait_for_state(struct job *job, enum job_state state,
                        int64_t timeout_us)
{
    struct timespec deadline = deadline_after_us(timeout_us > 0 ? timeout_us
                                                                : 0);
    bool reached;

    pthread_mutex_lock(&job->lock);
    while (job->state != state && job->state < JOB_STATE_CONCLUDED &&
           timeout_us != 0) {
        if (timeout_us < 0) {
            pthread_cond_wait(&job->cond, &job->lock);
        } else if (pthread_cond_timedwait(&job->cond, &job->lock,
                                          &deadline) != 0) {
            break;
        }
    }
    reached = job->state == state;
    pthread_mutex_unlock(&job->lock);
    return reached;
}

char *job_status_text(struct job *job)
{
    GString *out = g_string_sized_new(256);

    pthread_mutex_lock(&job->lock);
    g_string_append_printf(out,
        "id: %s\ntype: %s\ndisk: %s\nstate: %s\n"
        "offset: %" PRIu64 "\nlen: %" PRIu64 "\nspeed: %" PRIu64 "\n"
        "io-status: %s\ndirty: %" PRIu64 "\ncopied: %" PRIu64 "\n",
        job->id, job->driver->job_type, job->disk_name,
        job_state_name(job->state),
        __atomic_load_n(&job->progress_offset, __ATOMIC_RELAXED),
        __atomic_load_n(&job->progress_len, __ATOMIC_RELAXED),
        job->speed, job_io_status_name(job->io_status),
        __atomic_load_n(&job->dirty_bytes, __ATOMIC_RELAXED),
        __atomic_load_n(&job->copied_bytes, __ATOMIC_RELAXED));
    if (job->driver->status) {
        job->driver->status(job, out);
    }
    g_string_append_printf(out, "result: %s\n",
                           job_result_name(job->result));
    if (job->error) {
        g_string_append_printf(out, "error: %s\n", job->error);
    }
    pthread_mutex_unlock(&job->lock);
    return g_string_free(out, FALSE);
}
