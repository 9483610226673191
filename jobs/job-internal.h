/* chainfs: what job.c and job-list.c share and nobody else uses. */
#ifndef CHAINFS_JOB_INTERNAL_H
#define CHAINFS_JOB_INTERNAL_H

#include "jobs/job.h"

/* Register job under its id, taking a reference (EEXIST, EBUSY). */
bool job_list_add(struct job_list *list, struct job *job, GError **errp);
/* Unregister job and drop the list's reference. */
void job_list_remove(struct job_list *list, struct job *job);
/* The event log of the list's jobs. */
struct event_log *job_list_events(struct job_list *list);

#endif
