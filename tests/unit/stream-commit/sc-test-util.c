/* Helpers for the stream and commit tests (see sc-test-util.h). */
#include <errno.h>
#include <fcntl.h>
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
#include "jobs/command.h"
#include "jobs/commit.h"
#include "jobs/stream.h"

#include "sc-test-util.h"

static struct job *parse_and_start(struct fixture *f, struct disk *disk,
                                   const char *text, GError **errp)
{
    struct command cmd;
    struct job *job;

    if (!command_parse(text, strlen(text), &cmd, errp)) {
        return NULL;
    }
    if (cmd.verb == COMMAND_STREAM) {
        job = stream_start(f->list, disk, &cmd, errp);
    } else {
        assert_int_equal(cmd.verb, COMMAND_COMMIT);
        job = commit_start(f->list, disk, &cmd, errp);
    }
    command_clear(&cmd);
    return job;
}

struct job *start_job(struct fixture *f, struct disk *disk, const char *text)
{
    GError *error = NULL;
    struct job *job = parse_and_start(f, disk, text, &error);

    if (!job) {
        fail_msg("%s: %s", text, error->message);
    }
    return job;
}

char *start_job_error(struct fixture *f, struct disk *disk, const char *text,
                      int code)
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

/* The image at path alone, as a disk of its own. */
static struct disk *open_layer(const char *path)
{
    GError *error = NULL;
    struct block_node *node = block_node_open(path, NULL, false, &error);

    if (!node) {
        fail_msg("open %s: %s", path, error->message);
    }
    if (node->backing_name) {
        /* Reads of partial clusters need the layers below. */
        block_node_close(node);
        return open_disk(path);
    }
    return disk_new("layer", node, false);
}

void write_layer(const char *path, uint8_t *model, uint64_t offset,
                 uint64_t len, unsigned seed)
{
    struct disk *disk = open_layer(path);

    write_pattern(disk, model, offset, len, seed);
    assert_int_equal(disk_close(disk), 0);
}

void zero_layer(const char *path, uint8_t *model, uint64_t offset,
                uint64_t len)
{
    struct disk *disk = open_layer(path);

    assert_int_equal(disk_write_zeroes(disk, offset, len, 0), 0);
    memset(model + offset, 0, len);
    assert_int_equal(disk_close(disk), 0);
}

void zero_data_layer(const char *path, uint8_t *model, uint64_t offset,
                     uint64_t len)
{
    struct disk *disk = open_layer(path);

    write_zeros_as_data(disk, model, offset, len);
    assert_int_equal(disk_close(disk), 0);
}

void wait_result(struct job *job, enum job_result result)
{
    wait_state(job, JOB_STATE_CONCLUDED);
    if (job->result != result) {
        g_autofree char *status = job_status_text(job);
        fail_msg("job %s: result %s, expected %s\n%s", job->id,
                 job_result_name(job->result), job_result_name(result),
                 status);
    }
}

/* Run argv; stdout in *out.  Returns whether it exited 0. */
static bool run_out(const char *const *argv, char **out)
{
    GError *error = NULL;
    int status = -1;

    if (!g_spawn_sync(NULL, (char **)argv, NULL,
                      G_SPAWN_SEARCH_PATH | G_SPAWN_STDERR_TO_DEV_NULL, NULL,
                      NULL, out, NULL, &status, &error)) {
        fail_msg("%s: %s", argv[0], error->message);
    }
    return g_spawn_check_wait_status(status, NULL);
}

/* Every value of "key": in a JSON text, in order (strings or numbers). */
static GPtrArray *json_values(const char *json, const char *key)
{
    g_autofree char *needle = g_strdup_printf("\"%s\": ", key);
    GPtrArray *values = g_ptr_array_new_with_free_func(g_free);

    for (const char *at = strstr(json, needle); at;
         at = strstr(at, needle)) {
        at += strlen(needle);
        if (*at == '"') {
            at++;
            g_ptr_array_add(values, g_strndup(at, strcspn(at, "\"")));
        } else {
            g_ptr_array_add(values, g_strndup(at, strcspn(at, ",\n}")));
        }
    }
    return values;
}

char *qemu_img_chain(const char *path)
{
    const char *argv[] = { "qemu-img", "info", "-U", "--backing-chain",
                           "--output=json", path, NULL };
    g_autofree char *out = NULL;

    if (!run_out(argv, &out)) {
        fail_msg("qemu-img info %s failed", path);
    }
    g_autoptr(GPtrArray) names = json_values(out, "filename");
    g_autoptr(GPtrArray) formats = json_values(out, "format");
    g_autoptr(GPtrArray) sizes = json_values(out, "virtual-size");
    GString *text = g_string_new(NULL);
    assert_int_equal(names->len, formats->len);
    assert_int_equal(names->len, sizes->len);
    for (unsigned i = 0; i < names->len; i++) {
        g_autofree char *real = realpath(g_ptr_array_index(names, i), NULL);
        assert_non_null(real);
        g_string_append_printf(text, "%u %s %s %s\n", i,
                               (char *)g_ptr_array_index(formats, i),
                               (char *)g_ptr_array_index(sizes, i), real);
    }
    return g_string_free(text, false);
}

char *qemu_img_backing_file(const char *path)
{
    const char *argv[] = { "qemu-img", "info", "-U", "--output=json", path,
                           NULL };
    g_autofree char *out = NULL;

    if (!run_out(argv, &out)) {
        fail_msg("qemu-img info %s failed", path);
    }
    g_autoptr(GPtrArray) names = json_values(out, "backing-filename");
    return names->len ? g_strdup(g_ptr_array_index(names, 0)) : NULL;
}

void assert_chain_matches_qemu(struct disk *disk)
{
    if (!have_qemu_img()) {
        return;
    }
    g_autofree char *ours = disk_describe_chain(disk);
    g_autofree char *top = g_strndup(strrchr(strtok(ours, "\n"), ' ') + 1,
                                     4096);
    g_autofree char *again = disk_describe_chain(disk);
    g_autofree char *theirs = qemu_img_chain(top);
    assert_string_equal(again, theirs);
}

void write_raw_file(const char *path, const uint8_t *model, uint64_t size)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

    assert_true(fd >= 0);
    assert_int_equal(host_pwrite(fd, model, size, 0), 0);
    close(fd);
}

static void *writer_main(void *opaque)
{
    struct writer *w = opaque;
    GRand *rand = g_rand_new_with_seed(42);
    g_autofree uint8_t *buf = g_malloc(64 * KiB);

    while (__atomic_load_n(&w->writes, __ATOMIC_RELAXED) < w->min_writes ||
           !__atomic_load_n(&w->stop, __ATOMIC_ACQUIRE)) {
        uint64_t len = g_rand_int_range(rand, 1, 64 * KiB);
        uint64_t offset = w->start + g_rand_int_range(rand, 0,
                                                      w->end - w->start - len);
        uint8_t seed = g_rand_int(rand);
        for (uint64_t i = 0; i < len; i++) {
            buf[i] = (uint8_t)(seed + i * 13);
        }
        assert_int_equal(disk_write(w->disk, offset, len, buf), 0);
        memcpy(w->model + offset, buf, len);
        __atomic_add_fetch(&w->writes, 1, __ATOMIC_RELEASE);
    }
    g_rand_free(rand);
    return NULL;
}

void writer_start(struct writer *w)
{
    w->writes = 0;
    w->stop = false;
    assert_int_equal(pthread_create(&w->thread, NULL, writer_main, w), 0);
}

void writer_stop(struct writer *w)
{
    __atomic_store_n(&w->stop, true, __ATOMIC_RELEASE);
    pthread_join(w->thread, NULL);
}

void free_paths(char **paths, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        g_free(paths[i]);
    }
}

void check_after_job(struct fixture *f, struct disk *disk,
                     const uint8_t *model, uint64_t size, char **paths,
                     unsigned n)
{
    assert_disk_equals(disk, model, size);
    assert_int_equal(disk_flush(disk), 0);  /* qemu-img reads the files */
    assert_chain_matches_qemu(disk);
    if (!have_qemu_img()) {
        return;
    }
    g_autofree char *ref = path_in(f, "ref.raw");
    write_raw_file(ref, model, size);
    assert_qemu_img_compare(ref, disk->top->filename);
    for (unsigned i = 0; i < n; i++) {
        if (g_str_has_suffix(paths[i], ".qcow2")) {
            assert_qemu_img_check(paths[i]);
        }
    }
}
