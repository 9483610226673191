/* chainfs: the files of the .jobs directory (see jobs-tree.h). */
#include "jobs-tree.h"

#include <errno.h>
#include <pthread.h>
#include <string.h>

struct jobs_tree {
    struct tree *tree;
    struct tree_node *jobs_dir;
    struct control *ctl;
    struct job_list *jobs;
    struct event_log *events;
    /* struct job_entry *: every job directory ever made, freed last
     * because the kernel may use a removed node until the end. */
    GPtrArray *entries;
    /* struct view_entry *: every fleece view file ever made, kept (with a
     * reference on the view) for the same reason.  Views go on the job's
     * thread, so the array has a lock. */
    pthread_mutex_t views_lock;
    GPtrArray *views;
};

/* A fleece view shown as MOUNTPOINT/NAME@SNAP. */
struct view_entry {
    struct fleece_view *view;   /* a reference */
    struct tree_node *node;     /* NULL: the name was taken */
};

/* What the nodes of .jobs/ID/ point to. */
struct job_entry {
    struct jobs_tree *jobs_tree;
    char *id;
    struct tree_node *dir;
};

/* The reply text of a command's outcome. */
static int command_reply(char *ok_reply, GError *error, char **reply)
{
    int ret = 0;

    if (ok_reply) {
        *reply = g_strdup_printf("%s\n", ok_reply);
        g_free(ok_reply);
    } else {
        *reply = g_strdup_printf("error: %s\n", error->message);
        ret = -error->code;
        g_error_free(error);
    }
    return ret;
}

/* ---- .jobs/ctl, last-error, events ---- */

static int write_ctl(struct tree_node *node, const char *buf, size_t len,
                     pid_t pid, char **reply)
{
    struct jobs_tree *jobs_tree = node->data;
    GError *error = NULL;
    char *ok = control_execute(jobs_tree->ctl, NULL, buf, len, pid, &error);

    return command_reply(ok, error, reply);
}

static char *render_last_error(struct tree_node *node)
{
    struct jobs_tree *jobs_tree = node->data;

    return control_last_error(jobs_tree->ctl);
}

static uint64_t events_size(struct tree_node *node)
{
    struct jobs_tree *jobs_tree = node->data;

    return event_log_size(jobs_tree->events);
}

static size_t events_read_at(struct tree_node *node, uint64_t offset,
                             size_t len, void *buf)
{
    struct jobs_tree *jobs_tree = node->data;

    return event_log_read(jobs_tree->events, offset, len, buf);
}

static const struct tree_text_ops ctl_ops = { .write = write_ctl };
static const struct tree_text_ops last_error_ops = {
    .render = render_last_error,
};
static const struct tree_text_ops events_ops = {
    .size = events_size,
    .read_at = events_read_at,
};

/* ---- .jobs/ID/ ---- */

static char *render_status(struct tree_node *node)
{
    struct job_entry *entry = node->data;
    struct job *job = job_list_lookup(entry->jobs_tree->jobs, entry->id,
                                      NULL);
    char *text;

    /* A dismissed job's files may still be open: they read as empty. */
    if (!job) {
        return g_strdup("");
    }
    text = job_status_text(job);
    job_unref(job);
    return text;
}

static int write_job_ctl(struct tree_node *node, const char *buf, size_t len,
                         pid_t pid, char **reply)
{
    struct job_entry *entry = node->data;
    GError *error = NULL;
    char *ok = control_execute(entry->jobs_tree->ctl, entry->id, buf, len,
                               pid, &error);

    return command_reply(ok, error, reply);
}

static const struct tree_text_ops status_ops = { .render = render_status };
static const struct tree_text_ops job_ctl_ops = { .write = write_job_ctl };

static void job_added(void *opaque, const char *job_id)
{
    struct jobs_tree *jobs_tree = opaque;
    struct job_entry *entry = g_new0(struct job_entry, 1);

    entry->jobs_tree = jobs_tree;
    entry->id = g_strdup(job_id);
    g_ptr_array_add(jobs_tree->entries, entry);
    entry->dir = tree_add(jobs_tree->tree, jobs_tree->jobs_dir, job_id,
                          TREE_NODE_DIR, 0755, 0.0, entry);
    /* The control plane refuses the names of the files beside. */
    if (entry->dir) {
        tree_add_text(jobs_tree->tree, entry->dir, "status", 0644,
                      &status_ops, entry);
        tree_add_text(jobs_tree->tree, entry->dir, "ctl", 0600,
                      &job_ctl_ops, entry);
    }
}

static void job_removed(void *opaque, const char *job_id)
{
    struct jobs_tree *jobs_tree = opaque;

    /* The newest entry of that id is the live one. */
    for (guint i = jobs_tree->entries->len; i-- > 0;) {
        struct job_entry *entry = g_ptr_array_index(jobs_tree->entries, i);

        if (strcmp(entry->id, job_id) == 0) {
            if (entry->dir) {
                tree_remove(jobs_tree->tree, entry->dir);
            }
            return;
        }
    }
}

/* ---- MOUNTPOINT/NAME@SNAP ---- */

static bool view_name_free(void *opaque, const char *file_name)
{
    struct jobs_tree *jobs_tree = opaque;

    return !tree_lookup(jobs_tree->tree, jobs_tree->tree->root, file_name);
}

static void view_added(void *opaque, const char *file_name,
                       struct fleece_view *view)
{
    struct jobs_tree *jobs_tree = opaque;
    struct view_entry *entry = g_new0(struct view_entry, 1);

    fleece_view_ref(view);
    entry->view = view;
    /* Not cached: the file goes when the job ends, and its st_blocks
     * changes with discards. */
    entry->node = tree_add(jobs_tree->tree, jobs_tree->tree->root, file_name,
                           TREE_NODE_VIEW, 0400, 0.0, view);
    pthread_mutex_lock(&jobs_tree->views_lock);
    g_ptr_array_add(jobs_tree->views, entry);
    pthread_mutex_unlock(&jobs_tree->views_lock);
}

static void view_removed(void *opaque, struct fleece_view *view)
{
    struct jobs_tree *jobs_tree = opaque;

    pthread_mutex_lock(&jobs_tree->views_lock);
    for (guint i = 0; i < jobs_tree->views->len; i++) {
        struct view_entry *entry = g_ptr_array_index(jobs_tree->views, i);

        if (entry->view == view && entry->node) {
            tree_remove(jobs_tree->tree, entry->node);
            entry->node = NULL;
        }
    }
    pthread_mutex_unlock(&jobs_tree->views_lock);
}

static void view_entry_free(gpointer data)
{
    struct view_entry *entry = data;

    fleece_view_unref(entry->view);
    g_free(entry);
}

static void job_entry_free(gpointer data)
{
    struct job_entry *entry = data;

    g_free(entry->id);
    g_free(entry);
}

struct jobs_tree *jobs_tree_new(struct tree *tree, struct tree_node *jobs_dir,
                                struct control *ctl, struct job_list *jobs,
                                struct event_log *events)
{
    struct jobs_tree *jobs_tree = g_new0(struct jobs_tree, 1);
    struct control_listener listener = {
        .job_added = job_added,
        .job_removed = job_removed,
        .opaque = jobs_tree,
    };
    struct fleece_listener view_listener = {
        .name_free = view_name_free,
        .added = view_added,
        .removed = view_removed,
        .opaque = jobs_tree,
    };

    jobs_tree->tree = tree;
    jobs_tree->jobs_dir = jobs_dir;
    jobs_tree->ctl = ctl;
    jobs_tree->jobs = jobs;
    jobs_tree->events = events;
    jobs_tree->entries = g_ptr_array_new_with_free_func(job_entry_free);
    pthread_mutex_init(&jobs_tree->views_lock, NULL);
    jobs_tree->views = g_ptr_array_new_with_free_func(view_entry_free);
    tree_add_text(tree, jobs_dir, "ctl", 0600, &ctl_ops, jobs_tree);
    tree_add_text(tree, jobs_dir, "events", 0644, &events_ops, jobs_tree);
    tree_add_text(tree, jobs_dir, "last-error", 0644, &last_error_ops,
                  jobs_tree);
    control_set_listener(ctl, &listener);
    control_set_view_listener(ctl, &view_listener);
    return jobs_tree;
}

void jobs_tree_free(struct jobs_tree *jobs_tree)
{
    if (jobs_tree) {
        g_ptr_array_unref(jobs_tree->entries);
        g_ptr_array_unref(jobs_tree->views);
        pthread_mutex_destroy(&jobs_tree->views_lock);
        g_free(jobs_tree);
    }
}
