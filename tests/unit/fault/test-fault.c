/* Unit tests for drivers/fault.c: rule matching (ops, ranges, after,
 * count), that a failed request changes nothing, reloading a changed
 * config, and the hand-over of the wrapped image's backing chain. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>
#include <glib/gstdio.h>

#include "core/chain.h"

#define MiB (1024ULL * 1024)

static char *dir;

static char *path_in_dir(const char *name)
{
    return g_build_filename(dir, name, NULL);
}

static void write_text(const char *name, const char *text)
{
    g_autofree char *tmp = path_in_dir("tmp.conf");
    g_autofree char *path = path_in_dir(name);
    assert_true(g_file_set_contents(tmp, text, -1, NULL));
    assert_int_equal(rename(tmp, path), 0);  /* a new inode: a new stamp */
}

static void create(const char *name, const char *format, uint64_t size,
                   const char *backing, const char *backing_format)
{
    g_autofree char *path = path_in_dir(name);
    struct block_create_opts opts = {
        .size = size, .cluster_size = 4096,
        .backing_name = backing, .backing_format = backing_format,
    };
    GError *err = NULL;
    bool ok = block_driver_by_name(format)->create(path, &opts, &err);
    assert_null(err);
    assert_true(ok);
}

static struct block_node *open_fault(const char *conf, GError **errp)
{
    g_autofree char *path = path_in_dir(conf);
    return chain_open(path, "fault", false, errp);
}

static int setup(void **state)
{
    (void)state;
    GError *err = NULL;
    dir = g_dir_make_tmp("chainfs-fault-XXXXXX", &err);
    assert_non_null(dir);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    g_autofree char *cmd = g_strdup_printf("rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
    g_free(dir);
    return 0;
}

static int rw(struct block_node *node, bool writing, uint64_t offset,
              uint64_t len, int byte)
{
    g_autofree uint8_t *buf = g_malloc(len);
    memset(buf, byte, len);
    if (writing) {
        return node->driver->write(node, offset, len, buf);
    }
    int ret = node->driver->read(node, offset, len, buf);
    for (uint64_t i = 0; ret == 0 && byte >= 0 && i < len; i++) {
        if (buf[i] != byte) {
            return -EILSEQ;     /* wrong data */
        }
    }
    return ret;
}

static void test_rules(void **state)
{
    (void)state;
    create("a.qcow2", "qcow2", 4 * MiB, NULL, NULL);
    write_text("a.conf",
               "[image]\nfile=a.qcow2\nformat=qcow2\n"
               "[rule r1]\nop=write\nerrno=ENOSPC\noffset=1M\nlen=4K\n"
               "after=1\ncount=2\n"
               "[rule r2]\nop=read,flush\nerrno=EPERM\ncount=1\n");
    GError *err = NULL;
    struct block_node *top = open_fault("a.conf", &err);
    assert_null(err);
    assert_string_equal(top->driver->format_name, "fault");
    assert_int_equal(top->size, 4 * MiB);
    assert_null(top->backing);

    /* r1: the range is [1M, 1M+4K); the first match passes. */
    assert_int_equal(rw(top, true, MiB - 4096, 4096, 1), 0); /* no overlap */
    assert_int_equal(rw(top, true, MiB + 4095, 1, 2), 0);    /* after=1 */
    assert_int_equal(rw(top, true, MiB - 1, 2, 3), -ENOSPC);
    assert_int_equal(rw(top, true, MiB, 4096, 4), -ENOSPC);
    assert_int_equal(rw(top, true, MiB, 4096, 5), 0);        /* count=2 */

    /* r2 fails the first read or flush, once. */
    assert_int_equal(rw(top, false, 0, 512, -1), -EPERM);
    assert_int_equal(top->driver->flush(top), 0);
    /* The failed writes changed nothing: byte MiB-1 still holds 1. */
    assert_int_equal(rw(top, false, MiB - 4096, 4096, 1), 0);
    assert_int_equal(rw(top, false, MiB, 4096, 5), 0);

    /* A new config takes effect at the next request, counters afresh. */
    write_text("a.conf",
               "[image]\nfile=a.qcow2\n"
               "[rule z]\nop=zeroes,status\nerrno=EIO\n");
    assert_int_equal(block_node_write_zeroes(top, 0, 4096, 0), -EIO);
    uint64_t pnum;
    assert_int_equal(top->driver->block_status(top, 0, MiB, &pnum), -EIO);
    assert_int_equal(rw(top, true, MiB, 4096, 6), 0);
    /* A broken config keeps the rules in force. */
    write_text("a.conf", "[image\n");
    assert_int_equal(block_node_write_zeroes(top, 0, 4096, 0), -EIO);
    write_text("a.conf", "[image]\nfile=a.qcow2\n");
    assert_int_equal(block_node_write_zeroes(top, 0, 4096, 0), 0);
    assert_int_equal(rw(top, false, 0, 4096, 0), 0);
    assert_int_equal(chain_close(top), 0);
}

static void test_backing_chain(void **state)
{
    (void)state;
    create("base.raw", "raw", 2 * MiB, NULL, NULL);
    g_autofree char *base = path_in_dir("base.raw");
    int fd = open(base, O_WRONLY);
    uint8_t buf[4096];
    memset(buf, 0x42, sizeof(buf));
    assert_int_equal(host_pwrite(fd, buf, sizeof(buf), 8192), 0);
    close(fd);
    g_autofree char *sub = path_in_dir("sub");
    assert_int_equal(g_mkdir(sub, 0755), 0);
    create("sub/top.qcow2", "qcow2", 2 * MiB, "../base.raw", "raw");
    write_text("chain.conf", "[image]\nfile=sub/top.qcow2\n");

    GError *err = NULL;
    struct block_node *top = open_fault("chain.conf", &err);
    assert_null(err);
    /* The backing name is the wrapped image's, resolved from its own
     * directory, and the chain continues below the fault node. */
    g_autofree char *expected = g_build_filename(dir, "sub", "../base.raw",
                                                 NULL);
    assert_string_equal(top->backing_name, expected);
    assert_non_null(top->backing);
    assert_string_equal(top->backing->driver->format_name, "raw");
    assert_int_equal(top->backing->depth, 1);

    /* Reads fall through the wrapped image to the backing file, and a
     * partial-cluster write copies from it. */
    assert_int_equal(rw(top, false, 8192, 4096, 0x42), 0);
    assert_int_equal(rw(top, true, 8192, 512, 0x43), 0);
    assert_int_equal(rw(top, false, 8192, 512, 0x43), 0);
    assert_int_equal(rw(top, false, 8192 + 512, 3584, 0x42), 0);
    uint64_t pnum;
    int flags = block_chain_status(top, 0, 2 * MiB, &pnum);
    assert_true(flags >= 0 && pnum > 0);
    assert_int_equal(chain_close(top), 0);
}

struct worker {
    struct block_node *node;
    unsigned index;
    unsigned failures;
};

static void *worker_run(void *opaque)
{
    struct worker *w = opaque;
    uint8_t buf[8192];
    for (unsigned i = 0; i < 300; i++) {
        uint64_t offset = ((w->index * 300 + i) % 256) * 8192;
        memset(buf, w->index + 1, sizeof(buf));
        int ret = w->node->driver->write(w->node, offset, sizeof(buf), buf);
        ret = ret ? ret : w->node->driver->read(w->node, offset, 4096, buf);
        uint64_t pnum;
        ret = ret ? ret : block_chain_status(w->node, offset, 65536, &pnum);
        w->failures += ret < 0;
    }
    return NULL;
}

/* Many threads through one fault node while its config changes: the rule
 * state and the backing hand-over are race-free (run under TSan). */
static void test_concurrent(void **state)
{
    (void)state;
    create("base.raw", "raw", 2 * MiB, NULL, NULL);
    create("top.qcow2", "qcow2", 2 * MiB, "base.raw", "raw");
    write_text("c.conf", "[image]\nfile=top.qcow2\n"
               "[rule r]\nop=any\noffset=1M\nlen=8K\nafter=3\ncount=5\n");
    GError *err = NULL;
    struct block_node *top = open_fault("c.conf", &err);
    assert_null(err);
    struct worker workers[4];
    pthread_t threads[4];
    for (unsigned i = 0; i < 4; i++) {
        workers[i] = (struct worker){ .node = top, .index = i };
        assert_int_equal(pthread_create(&threads[i], NULL, worker_run,
                                        &workers[i]), 0);
    }
    write_text("c.conf", "[image]\nfile=top.qcow2\n"
               "[rule r]\nop=write\nerrno=ENOSPC\ncount=2\n");
    unsigned failures = 0;
    for (unsigned i = 0; i < 4; i++) {
        pthread_join(threads[i], NULL);
        failures += workers[i].failures;
    }
    /* At most 5 from the first rules and 2 from the second. */
    assert_true(failures <= 7);
    assert_int_equal(chain_close(top), 0);
}

/* Reopening the fault node read-write reopens the wrapped image too. */
static void test_reopen(void **state)
{
    (void)state;
    create("r.qcow2", "qcow2", MiB, NULL, NULL);
    write_text("r.conf", "[image]\nfile=r.qcow2\n");
    g_autofree char *conf = path_in_dir("r.conf");
    GError *err = NULL;
    struct block_node *top = chain_open(conf, "fault", true, &err);
    assert_null(err);
    assert_true(block_node_reopen(top, false, &err));
    assert_null(err);
    assert_int_equal(rw(top, true, 4096, 4096, 0x31), 0);
    assert_true(block_node_reopen(top, true, &err));
    assert_int_equal(rw(top, false, 4096, 4096, 0x31), 0);
    assert_int_equal(chain_close(top), 0);
    /* Left clean and with the data: opens read-write again. */
    top = chain_open(conf, "fault", false, &err);
    assert_null(err);
    assert_int_equal(rw(top, false, 4096, 4096, 0x31), 0);
    assert_int_equal(chain_close(top), 0);
}

static void test_refusals(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        const char *message;
    } cases[] = {
        { "[rule a]\nop=read\n", "no [image] section" },
        { "[image]\nfile=x.conf\nformat=fault\n", "cannot wrap another" },
        { "[image]\nfile=nope.qcow2\n", "cannot open" },
        { "[image]\nfile=a.qcow2\n[rule a]\nop=read\nlen=0\n",
          "empty or overflowing range" },
        { "[image]\nfile=a.qcow2\n[rule a]\nop=read\noffset=18446744073709551615\nlen=2\n",
          "empty or overflowing range" },
        { "[image]\nfile=a.qcow2\n[rule a]\nop=read\ncount=99999999999999999999\n",
          "bad size" },
        { "[image]\nfile=a.qcow2\n[rule a]\nop=read\nerrno=0\n",
          "unknown error" },
    };
    create("a.qcow2", "qcow2", MiB, NULL, NULL);
    for (unsigned i = 0; i < G_N_ELEMENTS(cases); i++) {
        write_text("x.conf", cases[i].text);
        GError *err = NULL;
        assert_null(open_fault("x.conf", &err));
        assert_non_null(err);
        if (!strstr(err->message, cases[i].message)) {
            fail_msg("case %u: %s", i, err->message);
        }
        g_error_free(err);
    }
    /* Never probed. */
    assert_null(block_driver_by_name("fault")->probe);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_rules, setup, teardown),
        cmocka_unit_test_setup_teardown(test_backing_chain, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reopen, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refusals, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
