/* chainfs: the files of the .jobs directory (INTERFACE.md sections 2-6).
 *
 *   .jobs/ctl          0600  write a command; read the reply to it
 *   .jobs/last-error   0644  the last rejected command and why
 *   .jobs/events       0644  the event log, read live (tail -f works)
 *   .jobs/ID/status    0644  the job's status text, rendered at each read
 *   .jobs/ID/ctl       0600  write a job verb without the ID
 *   NAME@SNAP          0400  a fleece job's view, in the root, while the
 *                            job runs (view-file.h)
 *
 * A job's directory appears when the control plane creates the job and
 * vanishes when it is dismissed (the control plane's listener).  Replies
 * end in a newline: `ok`, `ok id=ID` or `error: MESSAGE`.
 *
 * Thread-safety: the files are served from any FUSE thread; the job
 * directories change under the control plane's lock, the tree keeps its
 * own (tree.h).
 */
#ifndef CHAINFS_JOBS_TREE_H
#define CHAINFS_JOBS_TREE_H

#include "core/event-log.h"
#include "jobs/control.h"
#include "jobs/job.h"
#include "tree.h"

struct jobs_tree;

/* Fill jobs_dir and become ctl's listener.  Nothing is owned. */
struct jobs_tree *jobs_tree_new(struct tree *tree, struct tree_node *jobs_dir,
                                struct control *ctl, struct job_list *jobs,
                                struct event_log *events)
    __attribute__((nonnull));

/* Free what the files point to; after the session ended (the tree's nodes
 * stay until tree_free but are no longer served). */
void jobs_tree_free(struct jobs_tree *jobs_tree);

#endif
