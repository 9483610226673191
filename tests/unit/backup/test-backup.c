/* Unit tests for the backup job: the point-in-time content under a
 * concurrent writer (against a model), sync=full|top|bitmap, the bitmap
 * modes, a sparse target, target sizes and the refusals. */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "core/chain.h"
#include "core/named-bitmap.h"
#include "jobs/backup.h"
#include "jobs/command.h"
#include "mirror-test-util.h"

#define SIZE (8 * MiB)

static struct job *start_backup_cmd(struct fixture *f, struct disk *disk,
                                    const char *text, GError **errp)
{
    struct command cmd;

    if (!command_parse(text, strlen(text), &cmd, errp)) {
        return NULL;
    }
    struct job *job = backup_start(f->list, disk, &cmd, errp);
    command_clear(&cmd);
    return job;
}

static struct job *start_backup(struct fixture *f, struct disk *disk,
                                const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    g_autofree char *text = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    GError *error = NULL;
    struct job *job = start_backup_cmd(f, disk, text, &error);
    if (!job) {
        fail_msg("%s: %s", text, error->message);
    }
    return job;
}

static void expect_refusal(struct fixture *f, struct disk *disk, int code,
                           const char *needle, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    g_autofree char *text = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    GError *error = NULL;
    struct job *job = start_backup_cmd(f, disk, text, &error);
    if (job) {
        fail_msg("%s: started", text);
    }
    if (error->code != code || !strstr(error->message, needle)) {
        fail_msg("%s: %d %s", text, error->code, error->message);
    }
    g_error_free(error);
}

static void finish(struct job *job, const char *result)
{
    wait_state(job, JOB_STATE_CONCLUDED);
    g_autofree char *value = status_value(job, "result");
    if (strcmp(value, result) != 0) {
        g_autofree char *status = job_status_text(job);
        fail_msg("result %s, expected %s:\n%s", value, result, status);
    }
    GError *error = NULL;
    assert_true(job_dismiss(job, &error));
    job_unref(job);
}

/* --- Point in time under a writer ---------------------------------------- */

struct writer {
    struct disk *disk;
    uint8_t *model;
    int stop;
    int writes;
};

static void *writer_thread(void *opaque)
{
    struct writer *w = opaque;

    while (!__atomic_load_n(&w->stop, __ATOMIC_SEQ_CST) || w->writes < 100) {
        uint64_t offset = g_random_int_range(0, SIZE / (16 * KiB)) * 16 * KiB;
        write_pattern(w->disk, w->model, offset, 16 * KiB, ++w->writes);
    }
    return NULL;
}

static void test_full_under_writer(void **state)
{
    struct fixture *f = *state;
    g_autofree char *path = path_in(f, "disk.qcow2");
    g_autofree char *target = path_in(f, "b.qcow2");
    g_autofree uint8_t *model = g_malloc0(SIZE);

    create_image(path, "qcow2", SIZE, 65536, NULL, NULL);
    struct disk *disk = open_disk(path);
    write_pattern(disk, model, 0, 3 * MiB, 1);
    write_zeros_as_data(disk, model, 4 * MiB, 1 * MiB);
    g_autofree uint8_t *instant = g_memdup2(model, SIZE);

    struct job *job = start_backup(f, disk, "backup id=b disk=vm target=%s "
                                   "speed=2M buf-size=64K", target);
    struct writer w = { disk, model, 0, 0 };
    pthread_t thread;
    assert_int_equal(pthread_create(&thread, NULL, writer_thread, &w), 0);
    g_usleep(200 * 1000);
    job_set_speed(job, 0, NULL);     /* it may have finished already */
    finish(job, "completed");
    __atomic_store_n(&w.stop, 1, __ATOMIC_SEQ_CST);
    pthread_join(thread, NULL);

    assert_disk_equals(disk, model, SIZE);
    assert_image_equals(target, instant, SIZE);
    /* Sparse: the written zeros and the holes hold no data. */
    struct block_node *t = chain_open(target, "qcow2", true, NULL);
    assert_non_null(t);
    assert_int_equal(node_data_bytes(t, 3 * MiB, SIZE - 3 * MiB), 0);
    chain_close(t);
    if (have_qemu_img()) {
        assert_qemu_img_check(target);
    }
    assert_int_equal(disk_close(disk), 0);
}

/* --- sync=top ------------------------------------------------------------ */

static void test_sync_top(void **state)
{
    struct fixture *f = *state;
    g_autofree char *base = path_in(f, "base.raw");
    g_autofree char *path = path_in(f, "top.qcow2");
    g_autofree char *target = path_in(f, "t.qcow2");
    g_autofree uint8_t *model = g_malloc0(SIZE);

    create_image(base, "raw", SIZE, 0, NULL, NULL);
    struct disk *bd = open_disk(base);
    write_pattern(bd, model, 0, SIZE, 2);
    assert_int_equal(disk_close(bd), 0);
    create_image(path, "qcow2", SIZE, 65536, base, "raw");
    struct disk *disk = open_disk(path);
    write_pattern(disk, model, 1 * MiB, 256 * KiB, 3);
    g_autofree uint8_t *instant = g_memdup2(model, SIZE);

    finish(start_backup(f, disk, "backup id=t disk=vm target=%s sync=top",
                        target), "completed");
    write_pattern(disk, model, 1 * MiB, 4 * KiB, 4);
    assert_image_equals(target, instant, SIZE);
    struct block_node *t = chain_open(target, NULL, true, NULL);
    assert_non_null(t);
    assert_string_equal(t->backing->filename, base);
    assert_int_equal(node_data_bytes(t, 0, SIZE), 256 * KiB);
    chain_close(t);
    assert_int_equal(disk_close(disk), 0);
}

/* --- sync=bitmap and the bitmap modes ------------------------------------ */

static uint64_t bitmap_count(struct disk *disk, const char *name)
{
    g_autofree char *status = named_bitmap_status(disk, name);
    const char *line = strstr(status, "count: ");
    assert_non_null(line);
    return g_ascii_strtoull(line + 7, NULL, 10);
}

static void test_bitmap_modes(void **state)
{
    struct fixture *f = *state;
    g_autofree char *path = path_in(f, "disk.qcow2");
    g_autofree char *full = path_in(f, "full.qcow2");
    g_autofree char *inc = path_in(f, "inc.qcow2");
    g_autofree char *never = path_in(f, "never.qcow2");
    g_autofree char *small = path_in(f, "small.qcow2");
    g_autofree char *large = path_in(f, "large.qcow2");
    g_autofree uint8_t *model = g_malloc0(SIZE);

    create_image(path, "qcow2", SIZE, 65536, NULL, NULL);
    struct disk *disk = open_disk(path);
    write_pattern(disk, model, 0, 2 * MiB, 5);
    expect_refusal(f, disk, ENOENT, "b1",
                   "backup id=x disk=vm target=%s sync=bitmap bitmap=b1", full);
    assert_true(named_bitmap_add(disk, "b1", 65536, false, false, NULL));
    write_pattern(disk, model, 5 * MiB, 4 * KiB, 6);

    finish(start_backup(f, disk, "backup id=f disk=vm target=%s bitmap=b1",
                        full), "completed");
    assert_int_equal(bitmap_count(disk, "b1"), 0);
    assert_image_equals(full, model, SIZE);

    write_pattern(disk, model, 3 * MiB, 100 * KiB, 7);
    g_autofree uint8_t *instant = g_memdup2(model, SIZE);
    create_image(inc, "qcow2", SIZE, 65536, full, "qcow2");
    finish(start_backup(f, disk, "backup id=i disk=vm target=%s "
                        "mode=existing sync=bitmap bitmap=b1", inc),
           "completed");
    assert_int_equal(bitmap_count(disk, "b1"), 0);
    assert_image_equals(inc, instant, SIZE);
    struct block_node *t = chain_open(inc, NULL, true, NULL);
    assert_int_equal(node_data_bytes(t, 0, SIZE), 128 * KiB);
    chain_close(t);

    write_pattern(disk, model, 6 * MiB, 4 * KiB, 8);
    finish(start_backup(f, disk, "backup id=n disk=vm target=%s "
                        "sync=bitmap bitmap=b1 bitmap-mode=never", never),
           "completed");
    assert_int_equal(bitmap_count(disk, "b1"), 64 * KiB);

    /* Existing targets: smaller refused, larger written up to the size. */
    create_image(small, "qcow2", SIZE - MiB, 65536, NULL, NULL);
    expect_refusal(f, disk, EINVAL, "bytes, the disk",
                   "backup id=s disk=vm target=%s mode=existing", small);
    create_image(large, "qcow2", 2 * SIZE, 65536, NULL, NULL);
    finish(start_backup(f, disk, "backup id=l disk=vm target=%s "
                        "mode=existing", large), "completed");
    struct block_node *l = chain_open(large, NULL, true, NULL);
    g_autofree uint8_t *buf = g_malloc(SIZE);
    assert_int_equal(l->driver->read(l, 0, SIZE, buf), 0);
    assert_memory_equal(buf, model, SIZE);
    assert_int_equal(node_data_bytes(l, SIZE, SIZE), 0);
    chain_close(l);
    assert_int_equal(bitmap_count(disk, "b1"), 64 * KiB);
    assert_int_equal(disk_close(disk), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_full_under_writer, mirror_setup,
                                        mirror_teardown),
        cmocka_unit_test_setup_teardown(test_sync_top, mirror_setup,
                                        mirror_teardown),
        cmocka_unit_test_setup_teardown(test_bitmap_modes, mirror_setup,
                                        mirror_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
