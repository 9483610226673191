/* Unit tests for the control plane: the executor's checks and errnos,
 * snapshot, blockers around a running mirror, the listener, last-error.
 * Real qcow2 images in a scratch directory; no FUSE. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "core/block.h"
#include "core/blocker.h"
#include "core/chain.h"
#include "core/disk.h"
#include "core/event-log.h"
#include "jobs/control.h"
#include "jobs/job.h"
#include "../core/test-util.h"

#define SIZE (4 * 1024 * 1024)

struct fixture {
    char *dir;
    char *allowed;
    char *mnt;
    GPtrArray *disks;
    struct event_log *events;
    struct job_list *jobs;
    struct blocker_set *blockers;
    struct control *ctl;
    GString *listened;          /* "+ID -ID ..." from the listener */
};

static void create_qcow2(const char *path, const char *backing)
{
    struct block_create_opts opts = {
        .size = SIZE,
        .backing_name = backing,
        .backing_format = backing ? "qcow2" : NULL,
    };
    GError *err = NULL;

    assert_true(block_driver_by_name("qcow2")->create(path, &opts, &err));
}

static struct disk *open_disk(const char *name, const char *path,
                              bool read_only)
{
    GError *err = NULL;
    struct block_node *top = chain_open(path, NULL, read_only, &err);

    if (!top) {
        fail_msg("%s", err->message);
    }
    return disk_new(name, top, read_only);
}

static void job_added(void *opaque, const char *id)
{
    g_string_append_printf(opaque, "+%s ", id);
}

static void job_removed(void *opaque, const char *id)
{
    g_string_append_printf(opaque, "-%s ", id);
}

static int setup(void **state)
{
    struct fixture *f = g_new0(struct fixture, 1);
    g_autoptr(GPtrArray) allow = g_ptr_array_new();
    g_autofree char *a = NULL, *ro = NULL;
    struct control_listener listener = { job_added, job_removed, NULL };

    f->dir = test_dir_new();
    f->allowed = g_build_filename(f->dir, "allowed", NULL);
    f->mnt = g_build_filename(f->allowed, "mnt", NULL);
    mkdir(f->allowed, 0755);
    mkdir(f->mnt, 0755);
    a = g_build_filename(f->allowed, "a.qcow2", NULL);
    ro = g_build_filename(f->allowed, "ro.qcow2", NULL);
    create_qcow2(a, NULL);
    create_qcow2(ro, NULL);
    f->disks = g_ptr_array_new();
    g_ptr_array_add(f->disks, open_disk("vm", a, false));
    g_ptr_array_add(f->disks, open_disk("ro", ro, true));
    f->events = event_log_new(0);
    f->jobs = job_list_new(f->events, 16);
    f->blockers = blocker_set_new();
    g_ptr_array_add(allow, f->allowed);
    f->ctl = control_new(f->disks, f->jobs, f->blockers, allow, f->mnt);
    f->listened = g_string_new(NULL);
    listener.opaque = f->listened;
    control_set_listener(f->ctl, &listener);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;

    job_list_free(f->jobs);
    control_free(f->ctl);
    blocker_set_free(f->blockers);
    for (guint i = 0; i < f->disks->len; i++) {
        assert_int_equal(disk_close(g_ptr_array_index(f->disks, i)), 0);
    }
    g_ptr_array_unref(f->disks);
    event_log_free(f->events);
    test_dir_remove(f->dir);
    g_string_free(f->listened, TRUE);
    g_free(f->mnt);
    g_free(f->allowed);
    g_free(f->dir);
    g_free(f);
    return 0;
}

/* Execute a command string; returns the reply (NULL on error, *code set). */
static char *run(struct fixture *f, const char *job_id, int *code,
                 const char *fmt, ...) G_GNUC_PRINTF(4, 5);
static char *run(struct fixture *f, const char *job_id, int *code,
                 const char *fmt, ...)
{
    va_list ap;
    g_autofree char *command = NULL;
    GError *err = NULL;
    char *reply;

    va_start(ap, fmt);
    command = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    reply = control_execute(f->ctl, job_id, command, strlen(command),
                            getpid(), &err);
    *code = reply ? 0 : err->code;
    g_clear_error(&err);
    return reply;
}

/* The command fails with errno code. */
#define assert_fails(f, errno_code, ...) do { \
        int code_; \
        char *reply_ = run(f, NULL, &code_, __VA_ARGS__); \
        if (reply_) { \
            fail_msg("succeeded: %s", reply_); \
        } \
        assert_int_equal(code_, errno_code); \
    } while (0)

static struct disk *disk_of(struct fixture *f, unsigned i)
{
    return g_ptr_array_index(f->disks, i);
}

/* snapshot: new top, old top read-only below it, data kept, new writes
 * only in the overlay. */
static void test_snapshot(void **state)
{
    struct fixture *f = *state;
    struct disk *disk = disk_of(f, 0);
    g_autofree char *reply = NULL;
    g_autofree char *chain = NULL;
    g_autofree char *expected = NULL;
    char buf[4096], data[4096];
    int code;

    memset(data, 0x5a, sizeof(data));
    assert_int_equal(disk_write(disk, 8192, sizeof(data), data), 0);
    reply = run(f, NULL, &code, "snapshot disk=vm overlay=%s/s1.qcow2",
                f->allowed);
    assert_non_null(reply);
    assert_string_equal(reply, "ok");
    chain = disk_describe_chain(disk);
    expected = g_strdup_printf("0 qcow2 %d %s/s1.qcow2\n1 qcow2 %d "
                               "%s/a.qcow2\n", SIZE, f->allowed, SIZE,
                               f->allowed);
    assert_string_equal(chain, expected);
    assert_true(disk->top->backing->read_only);
    assert_string_equal(disk->top->backing_name, disk->top->backing->filename);
    assert_int_equal(disk_read(disk, 8192, sizeof(buf), buf), 0);
    assert_memory_equal(buf, data, sizeof(buf));
    memset(data, 0x77, sizeof(data));
    assert_int_equal(disk_write(disk, 8192, sizeof(data), data), 0);
    assert_int_equal(disk->top->backing->driver->read(disk->top->backing,
                                                      8192, sizeof(buf), buf),
                     0);
    assert_int_equal(buf[0], 0x5a);

    assert_fails(f, EEXIST, "snapshot disk=vm overlay=%s/s1.qcow2",
                 f->allowed);
    /* mode=existing: an overlay of the current top, made beforehand. */
    g_autofree char *s2 = g_strdup_printf("%s/s2.qcow2", f->allowed);
    create_qcow2(s2, "s1.qcow2");
    g_free(reply);
    reply = run(f, NULL, &code, "snapshot disk=vm overlay=%s mode=existing",
                s2);
    assert_non_null(reply);
    assert_string_equal(disk->top->filename, s2);
    assert_int_equal(disk_read(disk, 8192, sizeof(buf), buf), 0);
    assert_int_equal(buf[0], 0x77);
    /* ... but not one whose backing is some other file. */
    g_autofree char *s3 = g_strdup_printf("%s/s3.qcow2", f->allowed);
    create_qcow2(s3, "s1.qcow2");
    assert_fails(f, EINVAL, "snapshot disk=vm overlay=%s mode=existing", s3);
    /* Relative to the writer's working directory. */
    g_autofree char *cwd = g_get_current_dir();
    assert_int_equal(chdir(f->allowed), 0);
    g_free(reply);
    reply = run(f, NULL, &code, "snapshot disk=vm overlay=rel.qcow2");
    assert_int_equal(chdir(cwd), 0);
    assert_non_null(reply);
    assert_true(g_str_has_suffix(disk->top->filename, "/allowed/rel.qcow2"));
}

/* Each check's errno, and last-error. */
static void test_errors(void **state)
{
    struct fixture *f = *state;
    g_autofree char *outside = g_build_filename(f->dir, "x.qcow2", NULL);
    g_autofree char *last = NULL;
    g_autofree char *expected = NULL;
    struct stat st;

    assert_fails(f, EINVAL, "snapshot disk=vm");
    assert_fails(f, EINVAL, "snap disk=vm overlay=x");
    assert_fails(f, ENOENT, "snapshot disk=nope overlay=%s/n.qcow2",
                 f->allowed);
    assert_fails(f, EROFS, "snapshot disk=ro overlay=%s/n.qcow2", f->allowed);
    assert_fails(f, EACCES, "snapshot disk=vm overlay=%s", outside);
    assert_fails(f, EACCES, "snapshot disk=vm overlay=%s/../x.qcow2",
                 f->allowed);
    assert_fails(f, EACCES, "snapshot disk=vm overlay=%s/n.qcow2", f->mnt);
    assert_fails(f, EACCES, "snapshot disk=vm overlay=%s/../mnt/n",
                 f->mnt);
    assert_fails(f, ENOENT, "snapshot disk=vm overlay=%s/no/n.qcow2",
                 f->allowed);
    assert_fails(f, ENOENT, "snapshot disk=vm overlay=%s/n.qcow2 "
                 "mode=existing", f->allowed);
    assert_fails(f, ENOTSUP, "snapshot disk=vm overlay=%s/n.qcow2 format=raw",
                 f->allowed);
    assert_fails(f, EINVAL, "stream id=s disk=vm backing-file=x");
    assert_fails(f, EINVAL, "commit id=c disk=vm");
    assert_fails(f, EINVAL, "mirror id=events disk=vm target=%s/t.qcow2",
                 f->allowed);
    assert_fails(f, ENOENT, "cancel nojob");
    assert_fails(f, EBUSY, "snapshot disk=vm overlay=%s/a.qcow2 "
                 "mode=existing", f->allowed);
    assert_true(stat(outside, &st) < 0 && errno == ENOENT);

    last = control_last_error(f->ctl);
    expected = g_strdup_printf("snapshot disk=vm overlay=%s/a.qcow2 "
                               "mode=existing\nerror: %s/a.qcow2 is a layer "
                               "of disk 'vm'\n", f->allowed, f->allowed);
    assert_string_equal(last, expected);
    assert_string_equal(f->listened->str, "");
    assert_int_equal(event_log_size(f->events), 0);
}

/* A running mirror blocks its disk and its target until it concludes;
 * the listener hears of it; job verbs work through the job-ctl form. */
static void test_mirror_blocks(void **state)
{
    struct fixture *f = *state;
    g_autofree char *reply = NULL;
    GError *err = NULL;
    struct job *job;
    int code;

    reply = run(f, NULL, &code, "mirror id=m1 disk=vm target=%s/t.qcow2 "
                "speed=4K buf-size=4K granularity=4K", f->allowed);
    assert_non_null(reply);
    assert_string_equal(reply, "ok id=m1");
    assert_string_equal(f->listened->str, "+m1 ");
    assert_fails(f, EEXIST, "mirror id=m1 disk=ro target=%s/u.qcow2",
                 f->allowed);
    assert_fails(f, EBUSY, "snapshot disk=vm overlay=%s/s.qcow2", f->allowed);
    assert_fails(f, EBUSY, "mirror id=m2 disk=vm target=%s/u.qcow2",
                 f->allowed);
    /* The target is written by m1: nobody else may use it. */
    g_autofree char *t = g_strdup_printf("%s/t.qcow2", f->allowed);
    assert_non_null(f->blockers);
    struct stat st;
    assert_int_equal(stat(t, &st), 0);
    assert_false(blocker_check_file(f->blockers, st.st_dev, st.st_ino, t,
                                    BLOCKER_USE_WRITE, &err));
    g_autofree char *busy = g_strdup_printf("%s is in use by job 'm1'", t);
    assert_string_equal(err->message, busy);
    g_clear_error(&err);

    g_free(reply);
    reply = control_execute(f->ctl, "m1", "speed=1M", 8, 0, &err);
    assert_non_null(reply);
    g_free(reply);
    reply = control_execute(f->ctl, "m1", "dismiss", 7, 0, &err);
    assert_null(reply);
    assert_int_equal(err->code, EINVAL);
    g_clear_error(&err);
    reply = control_execute(f->ctl, "m1", "cancel force", 12, 0, &err);
    assert_non_null(reply);
    job = job_list_lookup(f->jobs, "m1", NULL);
    assert_true(job_wait_for_state(job, JOB_STATE_CONCLUDED, 30000000));
    job_unref(job);
    /* Concluded, not dismissed: blocks nothing. */
    g_free(reply);
    reply = run(f, NULL, &code, "snapshot disk=vm overlay=%s/s.qcow2",
                f->allowed);
    assert_non_null(reply);
    g_free(reply);
    reply = run(f, NULL, &code, "dismiss m1");
    assert_non_null(reply);
    assert_string_equal(f->listened->str, "+m1 -m1 ");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_snapshot, setup, teardown),
        cmocka_unit_test_setup_teardown(test_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mirror_blocks, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
