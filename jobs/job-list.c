/* chainfs: the job list: jobs by id, in creation order, bounded. */
#include "jobs/job.h"

#include <errno.h>
#include <pthread.h>

#include "core/block.h"
#include "jobs/job-internal.h"

struct job_list {
    pthread_mutex_t lock;
    struct event_log *events;
    unsigned max_jobs;
    /* Protected by lock; each job holds one reference for the list. */
    GHashTable *by_id;      /* id -> struct job * */
    GPtrArray *in_order;    /* struct job *, oldest first */
};

struct job_list *job_list_new(struct event_log *log, unsigned max_jobs)
{
    struct job_list *list = g_new0(struct job_list, 1);

    pthread_mutex_init(&list->lock, NULL);
    list->events = log;
    list->max_jobs = max_jobs;
    list->by_id = g_hash_table_new(g_str_hash, g_str_equal);
    list->in_order = g_ptr_array_new();
    return list;
}

struct event_log *job_list_events(struct job_list *list)
{
    return list->events;
}

bool job_list_add(struct job_list *list, struct job *job, GError **errp)
{
    bool ok = false;

    pthread_mutex_lock(&list->lock);
    if (g_hash_table_contains(list->by_id, job->id)) {
        g_set_error(errp, CHAINFS_ERROR, EEXIST, "job id '%s' is in use",
                    job->id);
    } else if (list->in_order->len >= list->max_jobs) {
        g_set_error(errp, CHAINFS_ERROR, EBUSY,
                    "too many jobs (%u): dismiss concluded jobs first",
                    list->max_jobs);
    } else {
        job_ref(job);
        g_hash_table_insert(list->by_id, job->id, job);
        g_ptr_array_add(list->in_order, job);
        ok = true;
    }
    pthread_mutex_unlock(&list->lock);
    return ok;
}

void job_list_remove(struct job_list *list, struct job *job)
{
    bool removed;

    pthread_mutex_lock(&list->lock);
    removed = g_hash_table_lookup(list->by_id, job->id) == job;
    if (removed) {
        g_hash_table_remove(list->by_id, job->id);
        g_ptr_array_remove(list->in_order, job);
    }
    pthread_mutex_unlock(&list->lock);
    if (removed) {
        job_unref(job);
    }
}

struct job *job_list_lookup(struct job_list *list, const char *id,
                            GError **errp)
{
    struct job *job;

    pthread_mutex_lock(&list->lock);
    job = g_hash_table_lookup(list->by_id, id);
    if (job) {
        job_ref(job);
    }
    pthread_mutex_unlock(&list->lock);
    if (!job) {
        g_set_error(errp, CHAINFS_ERROR, ENOENT, "no such job '%s'", id);
    }
    return job;
}

GPtrArray *job_list_snapshot(struct job_list *list)
{
    GPtrArray *jobs;

    pthread_mutex_lock(&list->lock);
    jobs = g_ptr_array_sized_new(list->in_order->len);
    for (unsigned i = 0; i < list->in_order->len; i++) {
        struct job *job = g_ptr_array_index(list->in_order, i);

        job_ref(job);
        g_ptr_array_add(jobs, job);
    }
    pthread_mutex_unlock(&list->lock);
    return jobs;
}

void job_list_cancel_all(struct job_list *list, bool force)
{
    GPtrArray *jobs = job_list_snapshot(list);

    for (unsigned i = 0; i < jobs->len; i++) {
        struct job *job = g_ptr_array_index(jobs, i);

        /* Concluded jobs refuse cancel; that is fine here.  A job never
         * started is started now, only to conclude as cancelled. */
        job_cancel(job, force, NULL);
        if (job_get_state(job) == JOB_STATE_CREATED) {
            job_start(job);
        }
    }
    for (unsigned i = 0; i < jobs->len; i++) {
        struct job *job = g_ptr_array_index(jobs, i);

        job_wait_for_state(job, JOB_STATE_CONCLUDED, -1);
        job_unref(job);
    }
    g_ptr_array_free(jobs, TRUE);
}

void job_list_free(struct job_list *list)
{
    GPtrArray *jobs;

    if (!list) {
        return;
    }
    job_list_cancel_all(list, false);
    jobs = job_list_snapshot(list);
    for (unsigned i = 0; i < jobs->len; i++) {
        struct job *job = g_ptr_array_index(jobs, i);

        job_dismiss(job, NULL);
        job_unref(job);
    }
    g_ptr_array_free(jobs, TRUE);
    g_hash_table_destroy(list->by_id);
    g_ptr_array_free(list->in_order, TRUE);
    pthread_mutex_destroy(&list->lock);
    g_free(list);
}
