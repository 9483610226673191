/* chainfs: the job core, as QEMU's Job/JobDriver.
 *
 * A job is a long-running operation on a disk (mirror, stream, commit) run
 * on its own worker thread.  The framework owns everything that is the
 * same for every job: the state machine and the verb table (both data, in
 * job.c), the worker thread, pause points, interruptible sleeps, the rate
 * limit, progress, the io-status and error policies, the result, events,
 * and the status text.  A job driver holds only what differs: its run
 * loop and a few hooks.
 *
 * State machine (as QEMU's):
 *   created -> running <-> paused;  running -> ready <-> standby;
 *   running|ready -> waiting -> pending -> concluded (success);
 *   created|running|ready|waiting|pending -> aborting -> concluded;
 *   concluded -> null (dismissed).  A job is paused only at a pause point.
 *
 * Locking contract, stated once:
 *  - Each job has one mutex (job->lock) protecting its state, pause and
 *    cancel flags, speed and rate limit, io-status, result and error.
 *    Functions named *_locked require it; every other function here takes
 *    it itself and must be called without it.  Driver hooks are called
 *    without it, except `status`, which must only read the driver's own
 *    atomics or take the driver's own locks.
 *  - Lock order: job list lock, then job->lock, then the event log's lock.
 *  - Progress counters are atomics; the run loop updates them freely.
 *  - A job is reference-counted: the job list holds one reference until
 *    dismiss (which needs concluded, the worker's last step); the worker
 *    holds none, and the last job_unref joins it.  Driver hooks must not
 *    drop the last reference of their own job.
 */
#ifndef CHAINFS_JOB_H
#define CHAINFS_JOB_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <glib.h>

#include "core/ratelimit.h"

struct event_log;
struct op_blocker;
struct job;
struct job_list;

enum job_state {
    JOB_STATE_CREATED,      /* registered, worker not started */
    JOB_STATE_RUNNING,      /* the run loop is working */
    JOB_STATE_PAUSED,       /* blocked in a pause point */
    JOB_STATE_READY,        /* in sync; waits for complete or cancel */
    JOB_STATE_STANDBY,      /* paused while ready */
    JOB_STATE_WAITING,      /* run finished successfully */
    JOB_STATE_PENDING,      /* prepare/commit hooks running */
    JOB_STATE_ABORTING,     /* failed or cancelled; abort hook running */
    JOB_STATE_CONCLUDED,    /* done; result final; waits for dismiss */
    JOB_STATE_NULL,         /* dismissed */
    JOB_STATE__MAX,
};

enum job_verb {
    JOB_VERB_CANCEL,
    JOB_VERB_PAUSE,
    JOB_VERB_RESUME,
    JOB_VERB_SET_SPEED,
    JOB_VERB_COMPLETE,
    JOB_VERB_DISMISS,
    JOB_VERB_CHANGE,
    JOB_VERB__MAX,
};

enum job_io_status {
    JOB_IO_STATUS_OK,
    JOB_IO_STATUS_FAILED,   /* stopped on an error */
    JOB_IO_STATUS_NOSPACE,  /* stopped on ENOSPC */
};

enum job_result {
    JOB_RESULT_NONE,        /* not concluded yet */
    JOB_RESULT_COMPLETED,
    JOB_RESULT_CANCELLED,
    JOB_RESULT_FAILED,
};

/* on-error, on-source-error, on-target-error. */
enum job_error_policy {
    JOB_ERROR_POLICY_REPORT,    /* fail the job */
    JOB_ERROR_POLICY_IGNORE,    /* skip the chunk; it is retried later */
    JOB_ERROR_POLICY_STOP,      /* pause with io-status failed/nospace */
};

/* What the run loop must do after job_handle_error. */
enum job_error_action {
    JOB_ERROR_ACTION_REPORT,    /* return the error from run */
    JOB_ERROR_ACTION_IGNORE,    /* leave the chunk dirty, go on */
    JOB_ERROR_ACTION_STOP,      /* call job_pause_point, then retry */
};

/* mirror and active commit: how guest writes reach the target. */
enum job_copy_mode {
    JOB_COPY_MODE_BACKGROUND,       /* copied later from the dirty bitmap */
    JOB_COPY_MODE_WRITE_BLOCKING,   /* written to the target before ack */
};

/* The options of `change`; has_* says which were given. */
struct job_change_opts {
    bool has_copy_mode;
    enum job_copy_mode copy_mode;
};

struct job_driver {
    const char *job_type;       /* "mirror", "stream", "commit" */
    size_t instance_size;       /* >= sizeof(struct job), which comes first */

    /* The job's work, on the worker thread.  Calls job_pause_point (or
     * job_sleep_ns, job_throttle) often, and returns 0 or a negative errno
     * with *errp set.  Returning after a (hard) cancel is always fine. */
    int (*run)(struct job *job, GError **errp);

    /* `complete` was accepted (state ready or standby): finish the job and
     * switch over.  May be NULL (ENOTSUP). */
    bool (*complete)(struct job *job, GError **errp);

    /* `cancel [force]` was accepted: return whether this is a hard cancel
     * (run stops at once, result cancelled) rather than a soft one the
     * driver finishes itself (mirror when ready).  May be NULL: always hard. */
    bool (*cancel)(struct job *job, bool force);

    /* The speed changed (the rate limit is already updated).  May be NULL. */
    void (*set_speed)(struct job *job, uint64_t speed);

    /* `change` was accepted.  May be NULL (ENOTSUP). */
    bool (*change)(struct job *job, const struct job_change_opts *opts,
                   GError **errp);

    /* In pending after a successful run: make the result visible (pivot).
     * Failure aborts the job.  May be NULL. */
    bool (*prepare)(struct job *job, GError **errp);

    /* After a failed or cancelled run (or failed prepare).  May be NULL. */
    void (*abort)(struct job *job);

    /* Always, just before concluded: release what run used.  May be NULL. */
    void (*clean)(struct job *job);

    /* Append driver status lines (`key: value\n`) after the common ones,
     * before `result:`; see the locking contract.  May be NULL. */
    void (*status)(struct job *job, GString *out);

    /* Free the driver's own fields; the job itself is freed after.  May be
     * NULL. */
    void (*free)(struct job *job);
};

struct job {
    const struct job_driver *driver;
    char *id;
    char *disk_name;
    struct job_list *list;
    struct event_log *events;
    pthread_t thread;
    bool thread_started;
    int refcount;               /* atomic */

    /* Progress (atomics). */
    uint64_t progress_offset;
    uint64_t progress_len;
    uint64_t dirty_bytes;
    uint64_t copied_bytes;

    pthread_mutex_t lock;
    pthread_cond_t cond;        /* broadcast on every change below */
    /* Protected by lock: */
    enum job_state state;
    bool user_paused;           /* `pause` */
    bool error_paused;          /* stopped by an error policy */
    bool cancel_requested;      /* any cancel */
    bool force_cancel;          /* a hard cancel */
    bool completing;            /* `complete` was accepted */
    uint64_t kick_count;        /* wakes job_sleep_ns */
    uint64_t kicks_seen;        /* kick_count when a sleep last returned */
    uint64_t speed;
    uint64_t burst;
    struct ratelimit limit;
    enum job_io_status io_status;
    enum job_result result;
    char *error;                /* set when result is failed */
    /* The disk and layers this job holds (core/blocker.h), released just
     * before the job concludes; blocker_released says that moment came. */
    struct op_blocker *blocker;
    bool blocker_released;
};

/* --- Tables and names ---------------------------------------------------- */

/* Names as in status text, events and error messages. */
const char *job_state_name(enum job_state state);
const char *job_verb_name(enum job_verb verb);
const char *job_io_status_name(enum job_io_status io_status);
const char *job_result_name(enum job_result result);
/* Whether the state machine allows from -> to. */
bool job_transition_allowed(enum job_state from, enum job_state to);
/* Whether verb is accepted in state. */
bool job_verb_allowed(enum job_verb verb, enum job_state state);

/* --- Job list (registry) ------------------------------------------------- */

/* A list of at most max_jobs jobs whose events go to log. */
struct job_list *job_list_new(struct event_log *log, unsigned max_jobs);
/* Cancel every job (soft), wait for all to conclude, dismiss and free;
 * call it last (after it, no job may be used through the list). */
void job_list_free(struct job_list *list);
/* The job with this id, with a reference, or ENOENT "no such job 'ID'". */
struct job *job_list_lookup(struct job_list *list, const char *id,
                            GError **errp);
/* Referenced jobs in creation order; free with job_unref each + the array. */
GPtrArray *job_list_snapshot(struct job_list *list);
/* Cancel every job not concluded (force: hard; a job never started is
 * started to conclude as cancelled) and wait until all are concluded. */
void job_list_cancel_all(struct job_list *list, bool force);

/* --- Lifetime ------------------------------------------------------------ */

/* Register a new job in state created (EEXIST if id is in use, EBUSY when
 * the list is full); returns it with a reference for the caller. */
struct job *job_create(struct job_list *list, const struct job_driver *driver,
                       const char *id, const char *disk_name, GError **errp);
/* Drop a job that failed to set up before job_start (created -> null);
 * consumes the caller's reference. */
void job_early_fail(struct job *job);
/* created -> running: start the worker thread. */
void job_start(struct job *job);
void job_ref(struct job *job);
/* The last reference joins the worker thread and frees the job. */
void job_unref(struct job *job);

/* --- Verbs (from any thread) --------------------------------------------- */

/* EINVAL "job 'ID' is in state 'STATE': cannot VERB" unless verb is
 * allowed in the job's state.  Requires job->lock. */
bool job_apply_verb_locked(struct job *job, enum job_verb verb, GError **errp);
/* Hand the job the blocker of the disk and layers it uses (installed in
 * its set); it is released when the job concludes, or at once if it
 * already has. */
void job_attach_blocker(struct job *job, struct op_blocker *blocker);
/* `cancel [force]`: hard or soft as the driver's cancel hook says; leaves
 * any pause so the job can end. */
bool job_cancel(struct job *job, bool force, GError **errp);
/* `pause`: takes effect at the run loop's next pause point. */
bool job_user_pause(struct job *job, GError **errp);
/* Also clears an error stop (io-status back to ok); the run loop retries. */
bool job_user_resume(struct job *job, GError **errp);
/* `set-speed`: bytes/s, 0 = unlimited, live (wakes a throttled sleep). */
bool job_set_speed(struct job *job, uint64_t speed, GError **errp);
/* `complete`: the driver's complete hook, then job_is_completing. */
bool job_complete(struct job *job, GError **errp);
/* `change`: the driver's change hook (ENOTSUP without one). */
bool job_change(struct job *job, const struct job_change_opts *opts,
                GError **errp);
/* concluded -> null: removes the job from its list. */
bool job_dismiss(struct job *job, GError **errp);

/* --- For the run loop (worker thread) ------------------------------------ */

/* Block while paused (running -> paused, ready -> standby, and back);
 * returns whether the job was hard-cancelled. */
bool job_pause_point(struct job *job);
/* Whether a pause (user or error stop) waits for the next pause point. */
bool job_pause_requested(struct job *job);
/* Sleep ns, waking early on cancel, pause, resume, complete, set-speed or
 * job_kick, also one since the previous sleep returned (so a loop that
 * checks its condition, then sleeps, never misses a wake-up); then a pause
 * point.  Returns whether hard-cancelled. */
bool job_sleep_ns(struct job *job, uint64_t ns);
/* Wait (sleeping, with pause points) until the rate limit admits bytes;
 * returns whether hard-cancelled. */
bool job_throttle(struct job *job, uint64_t bytes);
/* Wake job_sleep_ns (e.g. new dirty data for a ready mirror). */
void job_kick(struct job *job);
/* running -> ready, with a JOB_READY event. */
void job_transition_to_ready(struct job *job);
/* Hard cancel requested (run must stop). */
bool job_is_cancelled(struct job *job);
/* Any cancel requested (a soft cancel lets mirror finish unswitched). */
bool job_cancel_requested(struct job *job);
/* `complete` was accepted. */
bool job_is_completing(struct job *job);
/* Apply an error policy to a failed read (is_read) or write with the
 * positive errno `error`: emits JOB_ERROR; for stop, sets io-status and
 * pauses at the next pause point until `resume`. */
enum job_error_action job_handle_error(struct job *job,
                                       enum job_error_policy policy,
                                       bool is_read, int error);
/* The rate limit burst (the driver's buf-size; 0 = the default). */
void job_set_burst(struct job *job, uint64_t burst);

/* --- Progress and status ------------------------------------------------- */

/* Progress counters for the status text and events (atomic). */
void job_progress_set_len(struct job *job, uint64_t len);
void job_progress_increase_len(struct job *job, uint64_t delta);
void job_progress_add_offset(struct job *job, uint64_t done);
void job_progress_set_dirty(struct job *job, uint64_t dirty);
void job_progress_add_copied(struct job *job, uint64_t copied);
/* The current state (it may change right after). */
enum job_state job_get_state(struct job *job);
/* Wait until the job is in state (or concluded), at most timeout_us (< 0:
 * forever); returns whether it is in state. */
bool job_wait_for_state(struct job *job, enum job_state state,
                        int64_t timeout_us);
/* The `.jobs/ID/status` text (g_free it). */
char *job_status_text(struct job *job);

#endif
