/* chainfs: the daemon: parse the command line, open every chain, set up
 * the control plane, mount, detach, serve until unmounted or signalled,
 * then stop the jobs, flush and close.
 *
 * Everything that can fail because of the command line or the images
 * fails before the mount, with one line on stderr: a command that returns
 * success has left a usable mount behind.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <fuse_lowlevel.h>

#include "core/blocker.h"
#include "core/chain.h"
#include "core/disk.h"
#include "core/named-bitmap.h"
#include "core/event-log.h"
#include "drivers/nbd.h"
#include "bitmaps-tree.h"
#include "fs.h"
#include "jobs-tree.h"
#include "jobs/control.h"
#include "jobs/job.h"
#include "log.h"
#include "options.h"

/* At most this many jobs exist at once (concluded ones until dismissed). */
#define MAX_JOBS 256

/* The FUSE loop runs at least this many threads: resolving a command's
 * path may look up files in this very mount, which another thread must
 * serve. */
#define MIN_FUSE_THREADS 2

/* The control plane: jobs, their events and blockers, and .jobs/. */
struct control_plane {
    struct event_log *events;
    struct job_list *jobs;
    struct blocker_set *blockers;
    struct control *control;
    struct jobs_tree *jobs_tree;
    struct bitmaps_tree *bitmaps_tree;
};

static void control_plane_start(struct control_plane *plane,
                                const struct options *opts,
                                const char *mountpoint, GPtrArray *disks,
                                struct chainfs_fs *fs)
{
    plane->events = event_log_new(EVENT_LOG_MIN_KEPT);
    plane->jobs = job_list_new(plane->events, MAX_JOBS);
    plane->blockers = blocker_set_new();
    plane->control = control_new(disks, plane->jobs, plane->blockers,
                                 opts->allow_dirs, mountpoint);
    control_set_allow_remote(plane->control, opts->allow_remote);
    plane->jobs_tree = jobs_tree_new(fs_tree(fs), fs_jobs_dir(fs),
                                     plane->control, plane->jobs,
                                     plane->events);
    for (guint i = 0; i < disks->len; i++) {
        named_bitmaps_set_events(g_ptr_array_index(disks, i), plane->events);
    }
    plane->bitmaps_tree = bitmaps_tree_new(fs_tree(fs), fs_bitmaps_dir(fs),
                                           disks);
}

/* Cancel every job (softly: a ready mirror leaves its target consistent)
 * and wait for all; then the disks may be closed. */
static void control_plane_stop_jobs(struct control_plane *plane)
{
    if (plane->jobs) {
        job_list_free(plane->jobs);
        plane->jobs = NULL;
    }
}

/* After the session has ended: nothing serves .jobs/ any more. */
static void control_plane_free(struct control_plane *plane)
{
    control_plane_stop_jobs(plane);
    jobs_tree_free(plane->jobs_tree);
    bitmaps_tree_free(plane->bitmaps_tree);
    control_free(plane->control);
    blocker_set_free(plane->blockers);
    event_log_free(plane->events);
}

/* The mountpoint, canonical (the daemon changes directory to "/", and
 * unmounting at exit must still find it). */
static char *resolve_mountpoint(const char *mountpoint, GError **errp)
{
    char *canonical = realpath(mountpoint, NULL);
    struct stat st;
    char *result;

    if (!canonical) {
        g_set_error(errp, CHAINFS_ERROR, errno, "%s: %s", mountpoint,
                    g_strerror(errno));
        return NULL;
    }
    if (stat(canonical, &st) < 0 || !S_ISDIR(st.st_mode)) {
        g_set_error(errp, CHAINFS_ERROR, ENOTDIR, "%s: %s", mountpoint,
                    g_strerror(ENOTDIR));
        free(canonical);
        return NULL;
    }
    result = g_strdup(canonical);
    free(canonical);
    return result;
}

/* Close every disk, logging failures; false if any close failed. */
static bool close_disks(GPtrArray *disks)
{
    bool ok = true;

    for (guint i = 0; i < disks->len; i++) {
        struct disk *disk = g_ptr_array_index(disks, i);
        g_autofree char *name = g_strdup(disk->name);
        int ret = disk_close(disk);
        if (ret < 0) {
            log_error("%s: closing the disk failed: %s", name,
                      g_strerror(-ret));
            ok = false;
        }
    }
    g_ptr_array_set_size(disks, 0);
    return ok;
}

/* Open the chain of every --disk and add it to the tree. */
/* Every layer of every chain holds a file open: a chain of a thousand
 * layers needs more than the usual soft limit of 1024.  Raise the soft
 * limit to the hard one (nothing here uses select(2), the one reason for a
 * low soft limit); a chain that still does not fit fails to open with
 * EMFILE, and that error names the limit. */
static void raise_file_limit(void)
{
    struct rlimit lim;

    if (getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur < lim.rlim_max) {
        lim.rlim_cur = lim.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &lim);
    }
}

static bool open_disks(const struct options *opts, struct chainfs_fs *fs,
                       GPtrArray *disks, GError **errp)
{
    chain_set_max_depth(opts->max_chain_depth);
    raise_file_limit();
    for (guint i = 0; i < opts->disks->len; i++) {
        const struct disk_spec *spec = g_ptr_array_index(opts->disks, i);
        struct block_node *top = chain_open(spec->filename, spec->format,
                                            spec->read_only, errp);
        if (!top) {
            return false;
        }
        struct disk *disk = disk_new(spec->name, top, spec->read_only);
        g_ptr_array_add(disks, disk);
        if (!named_bitmaps_load(disk, errp)) {
            return false;
        }
        if (!fs_add_disk(fs, disk)) {
            g_set_error(errp, CHAINFS_ERROR, EEXIST,
                        "disk name '%s' is used twice", spec->name);
            return false;
        }
    }
    return true;
}

/* The mount options libfuse gets: ours first, so the user's override. */
static char *mount_options(const struct options *opts)
{
    /* Permissions are always checked by the kernel against the modes we
     * report (required for allow_other, harmless without). */
    const char *ours = "fsname=chainfs,subtype=chainfs,default_permissions";

    if (!opts->fuse_options) {
        return g_strdup(ours);
    }
    return g_strconcat(ours, ",", opts->fuse_options, NULL);
}

static struct fuse_session *session_new(const struct options *opts,
                                        struct chainfs_fs *fs)
{
    g_autofree char *mount_opts = mount_options(opts);
    char *argv[] = { "chainfs", "-o", mount_opts, NULL };
    struct fuse_args args = FUSE_ARGS_INIT(3, argv);
    struct fuse_session *se;

    se = fuse_session_new(&args, &fs_lowlevel_ops, sizeof(fs_lowlevel_ops),
                          fs);
    fuse_opt_free_args(&args);
    return se;
}

/* Log what failed, with libfuse's reason when it gave one. */
static void log_fuse_failure(const char *what)
{
    g_autofree char *reason = log_take_fuse_error();

    if (reason) {
        log_error("%s: %s", what, reason);
    } else {
        log_error("%s", what);
    }
}

/* Serve requests until unmounted or signalled.  Returns false on a FUSE
 * error (already logged). */
static bool serve(struct fuse_session *se, unsigned threads)
{
    struct fuse_loop_config *config = fuse_loop_cfg_create();
    int ret;

    threads = MAX(threads, MIN_FUSE_THREADS);
    fuse_loop_cfg_set_max_threads(config, threads);
    fuse_loop_cfg_set_idle_threads(config, threads);
    ret = fuse_session_loop_mt(se, config);
    fuse_loop_cfg_destroy(config);
    /* 0: unmounted; > 0: the signal that ended the loop. */
    if (ret < 0) {
        log_error("serving the mount failed: %s", g_strerror(-ret));
        return false;
    }
    return true;
}

static int run(const struct options *opts)
{
    g_autoptr(GError) err = NULL;
    g_autofree char *mountpoint = NULL;
    g_autofree char *max_read = NULL;
    g_autoptr(GPtrArray) disks = g_ptr_array_new();
    struct chainfs_fs *fs = fs_new();
    struct fuse_session *se = NULL;
    struct control_plane plane = { 0 };
    bool signals_set = false, mounted = false, ok = false;

    mountpoint = resolve_mountpoint(opts->mountpoint, &err);
    if (!mountpoint) {
        log_error("%s", err->message);
        goto out;
    }
    /* Before the images are opened, so bad -o options touch nothing. */
    max_read = options_fuse_option(opts, "max_read");
    if (max_read) {
        fs_set_max_read(fs, strtoul(max_read, NULL, 10));
    }
    log_capture_fuse_errors(true);
    se = session_new(opts, fs);
    if (!se) {
        log_fuse_failure("bad FUSE mount options");
        goto out;
    }
    /* An NBD server that hangs up must fail a request, not kill us. */
    signal(SIGPIPE, SIG_IGN);
    nbd_set_request_timeout_ms(opts->nbd_timeout_ms);
    if (!open_disks(opts, fs, disks, &err)) {
        log_error("%s", err->message);
        goto out;
    }
    control_plane_start(&plane, opts, mountpoint, disks, fs);
    /* A shell starts background commands with SIGINT ignored, and libfuse
     * leaves ignored signals alone; but SIGINT and SIGTERM must always
     * shut down cleanly. */
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    if (fuse_set_signal_handlers(se) != 0) {
        log_error("cannot install signal handlers");
        goto out;
    }
    signals_set = true;
    if (fuse_session_mount(se, mountpoint) != 0) {
        g_autofree char *what = g_strdup_printf("%s: mounting failed",
                                                mountpoint);
        log_fuse_failure(what);
        goto out;
    }
    mounted = true;
    log_capture_fuse_errors(false);
    /* Detach only now, so that the command returns once the mount is
     * usable and every startup error above reached the terminal. */
    if (!opts->foreground) {
        if (fuse_daemonize(0) != 0) {
            log_error("cannot run in the background");
            goto out;
        }
        log_to_syslog();
    }
    ok = serve(se, opts->threads);

out:
    log_capture_fuse_errors(false);
    /* Close first: no request is served any more (the loop has ended), and
     * whoever unmounted is likely waiting for the images to be released;
     * unmounting may run fusermount3, which takes a while.  Every layer is
     * flushed and closed even after a failure, so qcow2 images are left
     * clean.  Jobs use the disks: they end first. */
    control_plane_stop_jobs(&plane);
    if (!close_disks(disks)) {
        ok = false;
    }
    if (mounted) {
        fuse_session_unmount(se);
    }
    if (signals_set) {
        fuse_remove_signal_handlers(se);
    }
    if (se) {
        fuse_session_destroy(se);
    }
    fs_free(fs);
    control_plane_free(&plane);
    return ok ? EXIT_SUCCESS : EXIT_FAILURE;
}

int main(int argc, char **argv)
{
    g_autoptr(GError) err = NULL;
    struct options opts;
    int status;

    log_init();
    if (!options_parse(&opts, argc, argv, &err)) {
        log_error("%s", err->message);
        options_clear(&opts);
        return EXIT_FAILURE;
    }
    if (opts.show_help) {
        options_print_help(stdout);
        status = EXIT_SUCCESS;
    } else if (opts.show_version) {
        printf("chainfs %s (FUSE library %s)\n", CHAINFS_VERSION,
               fuse_pkgversion());
        status = EXIT_SUCCESS;
    } else {
        status = run(&opts);
    }
    options_clear(&opts);
    return status;
}
