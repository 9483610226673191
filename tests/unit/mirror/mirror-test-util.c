/* Helpers shared by the mirror tests (see mirror-test-util.h). */
#include <errno.h>
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "core/block.h"
#include "core/chain.h"
#include "core/event-log.h"
#include "jobs/command.h"
#include "jobs/mirror.h"

#include "mirror-test-util.h"

int mirror_setup(void **state)
{
    struct fixture *f = g_new0(struct fixture, 1);
    GError *error = NULL;

    f->dir = g_dir_make_tmp("chainfs-mirror-XXXXXX", &error);
    assert_non_null(f->dir);
    f->log = event_log_new(0);
    f->list = job_list_new(f->log, 16);
    *state = f;
    return 0;
}

int mirror_teardown(void **state)
{
    struct fixture *f = *state;
    const char *argv[] = { "rm", "-rf", f->dir, NULL };

    job_list_free(f->list);
    event_log_free(f->log);
    g_spawn_sync(NULL, (char **)argv, NULL, G_SPAWN_SEARCH_PATH, NULL, NULL,
                 NULL, NULL, NULL, NULL);
    g_free(f->dir);
    g_free(f);
    return 0;
}

char *path_in(struct fixture *f, const char *name)
{
    return g_build_filename(f->dir, name, NULL);
}

void create_image(const char *path, const char *format, uint64_t size,
                  uint32_t cluster_size, const char *backing,
                  const char *backing_format)
{
    const struct block_driver *driver = block_driver_by_name(format);
    struct block_create_opts opts = {
        .size = size, .cluster_size = cluster_size,
        .backing_name = backing, .backing_format = backing_format,
    };
    GError *error = NULL;

    assert_non_null(driver);
    if (!driver->create(path, &opts, &error)) {
        fail_msg("create %s: %s", path, error->message);
    }
}

struct disk *open_disk(const char *path)
{
    GError *error = NULL;
    struct block_node *top = chain_open(path, NULL, false, &error);

    if (!top) {
        fail_msg("open %s: %s", path, error->message);
    }
    return disk_new("vm1", top, false);
}

void write_pattern(struct disk *disk, uint8_t *model, uint64_t offset,
                   uint64_t len, unsigned seed)
{
    g_autofree uint8_t *buf = g_malloc(len);

    for (uint64_t i = 0; i < len; i++) {
        buf[i] = (uint8_t)(seed * 131 + (offset + i) / 512 * 7 + i % 251 + 1);
    }
    assert_int_equal(disk_write(disk, offset, len, buf), 0);
    memcpy(model + offset, buf, len);
}

/* The first offset where a and b differ, or -1. */
void write_zeros_as_data(struct disk *disk, uint8_t *model, uint64_t offset,
                         uint64_t len)
{
    g_autofree uint8_t *zeros = g_malloc0(len);

    assert_int_equal(disk_write(disk, offset, len, zeros), 0);
    memset(model + offset, 0, len);
}

uint64_t node_data_bytes(struct block_node *node, uint64_t offset,
                         uint64_t len)
{
    uint64_t total = 0;

    for (uint64_t end = offset + len; offset < end;) {
        uint64_t pnum;
        int status = node->driver->block_status(node, offset, end - offset,
                                                &pnum);
        assert_true(status >= 0);
        assert_true(pnum > 0);
        pnum = MIN(pnum, end - offset);
        if (status & BLOCK_STATUS_DATA) {
            total += pnum;
        }
        offset += pnum;
    }
    return total;
}

void assert_node_zero_no_data(struct block_node *node, uint64_t offset,
                              uint64_t len)
{
    for (uint64_t end = offset + len; offset < end;) {
        uint64_t pnum;
        int status = node->driver->block_status(node, offset, end - offset,
                                                &pnum);
        assert_true(status >= 0);
        assert_true(pnum > 0);
        if (status & BLOCK_STATUS_DATA) {
            fail_msg("%s: data at %llu (+%llu)", node->filename,
                     (unsigned long long)offset, (unsigned long long)pnum);
        }
        if (status & BLOCK_STATUS_ALLOCATED) {
            assert_true(status & BLOCK_STATUS_ZERO);
        } else if (node->backing) {
            fail_msg("%s: unallocated at %llu (+%llu) over a backing file",
                     node->filename, (unsigned long long)offset,
                     (unsigned long long)pnum);
        }
        offset += MIN(pnum, end - offset);
    }
}

static int64_t first_difference(const uint8_t *a, const uint8_t *b,
                                uint64_t size)
{
    for (uint64_t i = 0; i < size; i++) {
        if (a[i] != b[i]) {
            return i;
        }
    }
    return -1;
}

void assert_disk_equals(struct disk *disk, const uint8_t *model,
                        uint64_t size)
{
    g_autofree uint8_t *buf = g_malloc(MAX(size, 1));

    assert_int_equal(disk_size(disk), size);
    assert_int_equal(disk_read(disk, 0, size, buf), 0);
    int64_t at = first_difference(buf, model, size);
    if (at >= 0) {
        fail_msg("disk differs from the model at %" G_GINT64_FORMAT
                 ": %u, expected %u", at, buf[at], model[at]);
    }
}

void assert_image_equals(const char *path, const uint8_t *model,
                         uint64_t size)
{
    GError *error = NULL;
    struct block_node *top = chain_open(path, NULL, true, &error);

    if (!top) {
        fail_msg("open %s: %s", path, error->message);
    }
    struct disk *disk = disk_new("check", top, true);
    assert_disk_equals(disk, model, size);
    assert_int_equal(disk_close(disk), 0);
}

/* Parse and start; returns the job or NULL with *errp. */
static struct job *parse_and_start(struct fixture *f, struct disk *disk,
                                   const char *text, GError **errp)
{
    struct command cmd;

    if (!command_parse(text, strlen(text), &cmd, errp)) {
        return NULL;
    }
    struct job *job = mirror_start(f->list, disk, &cmd, errp);
    command_clear(&cmd);
    return job;
}

struct job *start_mirror(struct fixture *f, struct disk *disk,
                         const char *text)
{
    GError *error = NULL;
    struct job *job = parse_and_start(f, disk, text, &error);

    if (!job) {
        fail_msg("%s: %s", text, error->message);
    }
    return job;
}

char *start_mirror_error(struct fixture *f, struct disk *disk,
                         const char *text, int code)
{
    GError *error = NULL;
    struct job *job = parse_and_start(f, disk, text, &error);

    if (job) {
        fail_msg("%s: started, expected errno %d", text, code);
    }
    assert_int_equal(error->domain, CHAINFS_ERROR);
    if (error->code != code) {
        fail_msg("%s: error %d (%s), expected %d", text, error->code,
                 error->message, code);
    }
    char *message = g_strdup(error->message);
    g_error_free(error);
    return message;
}

void wait_state(struct job *job, enum job_state state)
{
    if (!job_wait_for_state(job, state, TIMEOUT_US)) {
        g_autofree char *status = job_status_text(job);
        fail_msg("job %s: state %s, expected %s\n%s", job->id,
                 job_state_name(job_get_state(job)), job_state_name(state),
                 status);
    }
}

char *events_text(struct fixture *f)
{
    uint64_t size = event_log_size(f->log);
    g_autofree char *raw = g_malloc0(size + 1);
    GString *out = g_string_new(NULL);
    g_auto(GStrv) lines = NULL;

    event_log_read(f->log, 0, size, raw);
    lines = g_strsplit(raw, "\n", -1);
    for (char **line = lines; *line && **line; line++) {
        g_string_append(out, strchr(*line, ' ') + 1);
        g_string_append_c(out, '\n');
    }
    return g_string_free(out, FALSE);
}

void wait_event(struct fixture *f, const char *needle)
{
    int64_t deadline = g_get_monotonic_time() + TIMEOUT_US;

    for (;;) {
        uint64_t size = event_log_size(f->log);
        g_autofree char *text = events_text(f);
        if (strstr(text, needle)) {
            return;
        }
        if (g_get_monotonic_time() > deadline) {
            fail_msg("no event '%s' in:\n%s", needle, text);
        }
        event_log_wait(f->log, size, 100000);
    }
}

char *status_value(struct job *job, const char *key)
{
    g_autofree char *status = job_status_text(job);
    g_autofree char *prefix = g_strdup_printf("\n%s: ", key);
    char *at = strstr(status, prefix);

    if (!at) {
        return NULL;
    }
    at += strlen(prefix);
    return g_strndup(at, strcspn(at, "\n"));
}

bool have_qemu_img(void)
{
    g_autofree char *path = g_find_program_in_path("qemu-img");
    return path != NULL;
}

/* Run argv; returns the exit status, stdout in *out (may be NULL). */
static int run(const char *const *argv, char **out)
{
    g_autofree char *err = NULL;
    g_autofree char *ignored_out = NULL;
    GError *error = NULL;
    int status = -1;

    if (!g_spawn_sync(NULL, (char **)argv, NULL, G_SPAWN_SEARCH_PATH, NULL,
                      NULL, out ? out : &ignored_out, &err, &status,
                      &error)) {
        fail_msg("%s: %s", argv[0], error->message);
    }
    if (status != 0) {
        print_message("%s: %s", argv[0], err ? err : "");
    }
    return g_spawn_check_wait_status(status, NULL) ? 0 : 1;
}

void assert_qemu_img_compare(const char *a, const char *b)
{
    const char *argv[] = { "qemu-img", "compare", "-U", a, b, NULL };
    assert_int_equal(run(argv, NULL), 0);
}

void assert_qemu_img_check(const char *path)
{
    const char *argv[] = { "qemu-img", "check", "-U", path, NULL };
    g_autofree char *out = NULL;
    int status = run(argv, &out);

    if (status != 0) {
        fail_msg("qemu-img check %s: %s", path, out);
    }
}

uint64_t qemu_img_data_bytes(const char *path)
{
    const char *argv[] = { "qemu-img", "map", "-U", "--output=json", path,
                           NULL };
    g_autofree char *out = NULL;
    uint64_t total = 0;

    assert_int_equal(run(argv, &out), 0);
    g_auto(GStrv) lines = g_strsplit(out, "\n", -1);
    for (char **line = lines; *line; line++) {
        char *length = strstr(*line, "\"length\": ");
        if (length && strstr(*line, "\"data\": true")) {
            total += g_ascii_strtoull(length + strlen("\"length\": "), NULL,
                                      10);
        }
    }
    return total;
}

int fd_of(const char *path)
{
    g_autofree char *real = realpath(path, NULL);
    DIR *dir = opendir("/proc/self/fd");
    struct dirent *entry;
    int found = -1;

    assert_non_null(real);
    assert_non_null(dir);
    while ((entry = readdir(dir))) {
        char link[4096];
        g_autofree char *name = g_strdup_printf("/proc/self/fd/%s",
                                                entry->d_name);
        ssize_t n = readlink(name, link, sizeof(link) - 1);
        if (n <= 0) {
            continue;
        }
        link[n] = '\0';
        int fd = atoi(entry->d_name);
        if (strcmp(link, real) == 0 && (found < 0 || fd < found)) {
            found = fd;
        }
    }
    closedir(dir);
    return found;
}
