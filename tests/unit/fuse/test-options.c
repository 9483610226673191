/* Unit tests for fuse/options.c: command-line parsing. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>
#include <glib.h>
#include <glib/gstdio.h>

#include "drivers/nbd.h"
#include "options.h"

/* Parse a NULL-terminated argument list (argv[0] is added). */
static bool parse(struct options *opts, GError **errp, ...)
{
    g_autoptr(GPtrArray) args = g_ptr_array_new_with_free_func(g_free);
    const char *arg;
    va_list ap;
    bool ok;

    g_ptr_array_add(args, g_strdup("chainfs"));
    va_start(ap, errp);
    while ((arg = va_arg(ap, const char *))) {
        g_ptr_array_add(args, g_strdup(arg));
    }
    va_end(ap);
    /* getopt_long permutes argv, so it gets a copy of the pointers. */
    g_autofree char **argv = g_new0(char *, args->len + 1);
    memcpy(argv, args->pdata, args->len * sizeof(char *));
    ok = options_parse(opts, args->len, argv, errp);
    return ok;
}

/* Expect parsing to fail with code and a message containing needle. */
static void expect_error(int code, const char *needle, ...)
{
    g_autoptr(GPtrArray) args = g_ptr_array_new_with_free_func(g_free);
    g_autoptr(GError) err = NULL;
    struct options opts;
    const char *arg;
    va_list ap;

    g_ptr_array_add(args, g_strdup("chainfs"));
    va_start(ap, needle);
    while ((arg = va_arg(ap, const char *))) {
        g_ptr_array_add(args, g_strdup(arg));
    }
    va_end(ap);
    g_autofree char **argv = g_new0(char *, args->len + 1);
    memcpy(argv, args->pdata, args->len * sizeof(char *));

    assert_false(options_parse(&opts, args->len, argv, &err));
    assert_non_null(err);
    if (!strstr(err->message, needle)) {
        fail_msg("message '%s' does not contain '%s'", err->message, needle);
    }
    assert_int_equal(err->code, code);
    assert_null(strchr(err->message, '\n'));
    options_clear(&opts);
}

static struct disk_spec *disk_at(struct options *opts, guint i)
{
    assert_true(i < opts->disks->len);
    return g_ptr_array_index(opts->disks, i);
}

static void test_minimal(void **state)
{
    g_autoptr(GError) err = NULL;
    struct options opts;

    (void)state;
    assert_true(parse(&opts, &err, "-d", "vm=/img/top.qcow2", "/mnt", NULL));
    assert_int_equal(opts.disks->len, 1);
    assert_string_equal(disk_at(&opts, 0)->name, "vm");
    assert_string_equal(disk_at(&opts, 0)->filename, "/img/top.qcow2");
    assert_null(disk_at(&opts, 0)->format);
    assert_false(disk_at(&opts, 0)->read_only);
    assert_string_equal(opts.mountpoint, "/mnt");
    assert_false(opts.foreground);
    assert_null(opts.fuse_options);
    assert_false(options_allow_other(&opts));
    assert_true(opts.threads >= 1 && opts.threads <= OPTIONS_MAX_THREADS);
    assert_int_equal(opts.threads, MIN(sysconf(_SC_NPROCESSORS_ONLN),
                                       OPTIONS_MAX_THREADS));
    assert_false(opts.show_help);
    assert_false(opts.show_version);
    options_clear(&opts);
}

static void test_every_option(void **state)
{
    g_autoptr(GError) err = NULL;
    g_autofree char *dir = g_dir_make_tmp("chainfs-opt-XXXXXX", NULL);
    g_autofree char *canonical = realpath(dir, NULL);
    struct options opts;

    (void)state;
    assert_non_null(canonical);
    assert_true(parse(&opts, &err,
                      "-d", "a=f1,format=qcow2,read-only=on",
                      "--disk", "b=f2,read-only=off,format=raw",
                      "--disk=c=f3",
                      "-f", "-o", "allow_other", "-o", "noatime,fsname=x",
                      "--allow-dir", dir, "--threads", "4", "/mnt", NULL));
    assert_int_equal(opts.disks->len, 3);
    assert_string_equal(disk_at(&opts, 0)->name, "a");
    assert_string_equal(disk_at(&opts, 0)->filename, "f1");
    assert_string_equal(disk_at(&opts, 0)->format, "qcow2");
    assert_true(disk_at(&opts, 0)->read_only);
    assert_string_equal(disk_at(&opts, 1)->name, "b");
    assert_string_equal(disk_at(&opts, 1)->format, "raw");
    assert_false(disk_at(&opts, 1)->read_only);
    assert_string_equal(disk_at(&opts, 2)->name, "c");
    assert_string_equal(disk_at(&opts, 2)->filename, "f3");
    assert_true(opts.foreground);
    assert_string_equal(opts.fuse_options, "allow_other,noatime,fsname=x");
    assert_true(options_allow_other(&opts));
    assert_true(opts.allow_dirs_given);
    assert_int_equal(opts.allow_dirs->len, 1);
    assert_string_equal(g_ptr_array_index(opts.allow_dirs, 0), canonical);
    assert_int_equal(opts.threads, 4);
    assert_string_equal(opts.mountpoint, "/mnt");
    options_clear(&opts);
    g_rmdir(dir);
}

static void test_long_forms_and_order(void **state)
{
    g_autoptr(GError) err = NULL;
    struct options opts;

    (void)state;
    /* GNU style: options may follow the mountpoint. */
    assert_true(parse(&opts, &err, "/mnt", "--foreground", "--threads=8",
                      "--disk", "x.y_z-1=img", NULL));
    assert_true(opts.foreground);
    assert_int_equal(opts.threads, 8);
    assert_string_equal(disk_at(&opts, 0)->name, "x.y_z-1");
    assert_string_equal(opts.mountpoint, "/mnt");
    options_clear(&opts);

    /* Options allow_other only as a whole word. */
    assert_true(parse(&opts, &err, "-d", "a=b", "-o", "allow_others", "/m",
                      NULL));
    assert_false(options_allow_other(&opts));
    options_clear(&opts);
}

static void test_fuse_option_values(void **state)
{
    g_autoptr(GError) err = NULL;
    struct options opts;

    (void)state;
    assert_true(parse(&opts, &err, "-d", "a=b", "-o", "max_read=4096,ro",
                      "-o", "", "-o", "max_read=65536,max_readx=1", "/m",
                      NULL));
    g_autofree char *max_read = options_fuse_option(&opts, "max_read");
    g_autofree char *ro = options_fuse_option(&opts, "ro");
    g_autofree char *missing = options_fuse_option(&opts, "allow_other");
    g_autofree char *prefix = options_fuse_option(&opts, "max");
    assert_string_equal(max_read, "65536");     /* the last one wins */
    assert_string_equal(ro, "");
    assert_null(missing);
    assert_null(prefix);
    assert_string_equal(opts.fuse_options,
                        "max_read=4096,ro,max_read=65536,max_readx=1");
    assert_true(disk_at(&opts, 0)->read_only);  /* -o ro: every disk */
    options_clear(&opts);
}

static void test_comma_in_filename(void **state)
{
    g_autoptr(GError) err = NULL;
    struct options opts;

    (void)state;
    assert_true(parse(&opts, &err, "-d", "vm=a,,b.img,format=raw", "/m",
                      NULL));
    assert_string_equal(disk_at(&opts, 0)->filename, "a,b.img");
    assert_string_equal(disk_at(&opts, 0)->format, "raw");
    options_clear(&opts);
}

static void test_bad_names(void **state)
{
    g_autofree char *long_name = g_strnfill(256, 'a');
    g_autofree char *long_arg = g_strconcat(long_name, "=f", NULL);

    (void)state;
    expect_error(EINVAL, "bad disk name '.hidden'", "-d", ".hidden=f", "/m",
                 NULL);
    expect_error(EINVAL, "bad disk name ''", "-d", "=f", "/m", NULL);
    expect_error(EINVAL, "bad disk name 'a/b'", "-d", "a/b=f", "/m", NULL);
    expect_error(EINVAL, "bad disk name 'a b'", "-d", "a b=f", "/m", NULL);
    expect_error(EINVAL, "bad disk name", "-d", "\xc3\xa9=f", "/m", NULL);
    expect_error(EINVAL, "bad disk name", "-d", long_arg, "/m", NULL);
    expect_error(EINVAL, "expected NAME=FILE", "-d", "vm", "/m", NULL);

    assert_true(options_disk_name_valid("vm"));
    assert_true(options_disk_name_valid("a.b"));
    assert_true(options_disk_name_valid("-x"));
    assert_true(options_disk_name_valid("_"));
    assert_false(options_disk_name_valid("."));
    assert_false(options_disk_name_valid(".."));
    assert_false(options_disk_name_valid(".chains"));
    assert_false(options_disk_name_valid(""));
    assert_false(options_disk_name_valid("a:b"));
}

static void test_duplicate_names(void **state)
{
    (void)state;
    expect_error(EEXIST, "'vm' is used twice", "-d", "vm=a", "-d", "vm=b",
                 "/m", NULL);
}

static void test_suboptions(void **state)
{
    (void)state;
    expect_error(EINVAL, "unknown option 'cache'", "-d", "vm=f,cache=none",
                 "/m", NULL);
    expect_error(EINVAL, "unknown option 'bogus'", "-d", "vm=f,bogus", "/m",
                 NULL);
    expect_error(EINVAL, "unknown format 'vmdk'", "-d", "vm=f,format=vmdk",
                 "/m", NULL);
    expect_error(EINVAL, "unknown format ''", "-d", "vm=f,format=", "/m",
                 NULL);
    expect_error(EINVAL, "'format' needs a value", "-d", "vm=f,format", "/m",
                 NULL);
    expect_error(EINVAL, "format= given twice", "-d",
                 "vm=f,format=raw,format=raw", "/m", NULL);
    expect_error(EINVAL, "read-only= given twice", "-d",
                 "vm=f,read-only=on,read-only=on", "/m", NULL);
    expect_error(EINVAL, "not 'yes'", "-d", "vm=f,read-only=yes", "/m",
                 NULL);
    expect_error(EINVAL, "'read-only' needs a value", "-d", "vm=f,read-only",
                 "/m", NULL);
    expect_error(EINVAL, "missing FILE", "-d", "vm=", "/m", NULL);
    expect_error(EINVAL, "missing FILE", "-d", "vm=,format=raw", "/m", NULL);
}

static void test_threads(void **state)
{
    g_autoptr(GError) err = NULL;
    struct options opts;

    (void)state;
    assert_true(parse(&opts, &err, "-d", "a=b", "--threads", "1", "/m",
                      NULL));
    assert_int_equal(opts.threads, 1);
    options_clear(&opts);
    assert_true(parse(&opts, &err, "-d", "a=b", "--threads", "256", "/m",
                      NULL));
    assert_int_equal(opts.threads, 256);
    options_clear(&opts);

    expect_error(EINVAL, "--threads '0'", "-d", "a=b", "--threads", "0",
                 "/m", NULL);
    expect_error(EINVAL, "--threads '257'", "-d", "a=b", "--threads", "257",
                 "/m", NULL);
    expect_error(EINVAL, "--threads '-1'", "-d", "a=b", "--threads", "-1",
                 "/m", NULL);
    expect_error(EINVAL, "--threads '4x'", "-d", "a=b", "--threads", "4x",
                 "/m", NULL);
    expect_error(EINVAL, "--threads ''", "-d", "a=b", "--threads", "", "/m",
                 NULL);
    expect_error(EINVAL, "--threads '99999999999999999999999'", "-d", "a=b",
                 "--threads", "99999999999999999999999", "/m", NULL);
}

static void test_nbd_timeout(void **state)
{
    g_autoptr(GError) err = NULL;
    struct options opts;

    (void)state;
    assert_true(parse(&opts, &err, "-d", "a=b", "/m", NULL));
    assert_int_equal(opts.nbd_timeout_ms, NBD_DEFAULT_REQUEST_TIMEOUT_MS);
    options_clear(&opts);
    assert_true(parse(&opts, &err, "-d", "a=b", "--nbd-timeout", "0.5", "/m",
                      NULL));
    assert_int_equal(opts.nbd_timeout_ms, 500);
    options_clear(&opts);
    assert_true(parse(&opts, &err, "-d", "a=b", "--nbd-timeout=0", "/m",
                      NULL));
    assert_int_equal(opts.nbd_timeout_ms, 0);
    options_clear(&opts);
    assert_true(parse(&opts, &err, "-d", "a=b", "--nbd-timeout", "86400",
                      "/m", NULL));
    assert_int_equal(opts.nbd_timeout_ms, 86400000);
    options_clear(&opts);

    expect_error(EINVAL, "--nbd-timeout '86401'", "-d", "a=b",
                 "--nbd-timeout", "86401", "/m", NULL);
    expect_error(EINVAL, "--nbd-timeout '-1'", "-d", "a=b",
                 "--nbd-timeout", "-1", "/m", NULL);
    expect_error(EINVAL, "--nbd-timeout '1s'", "-d", "a=b",
                 "--nbd-timeout", "1s", "/m", NULL);
    expect_error(EINVAL, "--nbd-timeout 'nan'", "-d", "a=b",
                 "--nbd-timeout", "nan", "/m", NULL);
    expect_error(EINVAL, "--nbd-timeout '0.0001'", "-d", "a=b",
                 "--nbd-timeout", "0.0001", "/m", NULL);
    expect_error(EINVAL, "--nbd-timeout ''", "-d", "a=b",
                 "--nbd-timeout", "", "/m", NULL);
}

static void test_allow_dir(void **state)
{
    g_autoptr(GError) err = NULL;
    g_autofree char *dir = g_dir_make_tmp("chainfs-opt-XXXXXX", NULL);
    g_autofree char *canonical = realpath(dir, NULL);
    g_autofree char *sub = g_build_filename(dir, "sub", NULL);
    g_autofree char *dotted = g_build_filename(dir, "sub", "..", ".", NULL);
    g_autofree char *link = g_build_filename(dir, "link", NULL);
    g_autofree char *canonical_sub = NULL;
    g_autofree char *file = g_build_filename(dir, "file", NULL);
    g_autofree char *missing = g_build_filename(dir, "missing", NULL);
    struct options opts;

    (void)state;
    assert_int_equal(g_mkdir(sub, 0755), 0);
    assert_int_equal(symlink("sub", link), 0);
    assert_true(g_file_set_contents(file, "", 0, NULL));
    canonical_sub = realpath(sub, NULL);

    /* Spellings of one directory collapse to its canonical path. */
    assert_true(parse(&opts, &err, "-d", "a=b", "--allow-dir", dotted,
                      "--allow-dir", dir, "--allow-dir", link, "/m", NULL));
    assert_true(opts.allow_dirs_given);
    assert_int_equal(opts.allow_dirs->len, 2);
    assert_string_equal(g_ptr_array_index(opts.allow_dirs, 0), canonical);
    assert_string_equal(g_ptr_array_index(opts.allow_dirs, 1),
                        canonical_sub);
    options_clear(&opts);

    expect_error(ENOENT, "No such file or directory", "-d", "a=b",
                 "--allow-dir", missing, "/m", NULL);
    expect_error(ENOTDIR, "Not a directory", "-d", "a=b", "--allow-dir",
                 file, "/m", NULL);

    unlink(file);
    unlink(link);
    g_rmdir(sub);
    g_rmdir(dir);
}

static void test_default_allow_dirs(void **state)
{
    g_autoptr(GError) err = NULL;
    g_autofree char *dir = g_dir_make_tmp("chainfs-opt-XXXXXX", NULL);
    g_autofree char *canonical = realpath(dir, NULL);
    g_autofree char *img1 = g_build_filename(dir, "one.qcow2", NULL);
    g_autofree char *img2 = g_build_filename(dir, "two.raw", NULL);
    g_autofree char *arg1 = g_strconcat("a=", img1, NULL);
    g_autofree char *arg2 = g_strconcat("b=", img2, NULL);
    struct options opts;

    (void)state;
    assert_true(g_file_set_contents(img1, "", 0, NULL));
    assert_true(g_file_set_contents(img2, "", 0, NULL));

    /* Without --allow-dir: the images' directories, once each. */
    assert_true(parse(&opts, &err, "-d", arg1, "-d", arg2,
                      "-d", "c=/nonexistent/x.img", "/m", NULL));
    assert_false(opts.allow_dirs_given);
    assert_int_equal(opts.allow_dirs->len, 1);
    assert_string_equal(g_ptr_array_index(opts.allow_dirs, 0), canonical);
    options_clear(&opts);

    /* --allow-dir replaces the default. */
    assert_true(parse(&opts, &err, "-d", arg1, "--allow-dir", "/", "/m",
                      NULL));
    assert_int_equal(opts.allow_dirs->len, 1);
    assert_string_equal(g_ptr_array_index(opts.allow_dirs, 0), "/");
    options_clear(&opts);

    unlink(img1);
    unlink(img2);
    g_rmdir(dir);
}

static void test_arguments(void **state)
{
    (void)state;
    expect_error(EINVAL, "missing MOUNTPOINT", "-d", "a=b", NULL);
    expect_error(EINVAL, "unexpected argument 'extra'", "-d", "a=b", "/m",
                 "extra", NULL);
    expect_error(EINVAL, "no disk given", "/m", NULL);
    expect_error(EINVAL, "unknown option '-x'", "-x", "-d", "a=b", "/m",
                 NULL);
    expect_error(EINVAL, "unknown option '--bogus'", "--bogus=1", "-d",
                 "a=b", "/m", NULL);
    expect_error(EINVAL, "option '-d' requires an argument", "/m", "-d",
                 NULL);
    expect_error(EINVAL, "option '--disk' requires an argument", "/m",
                 "--disk", NULL);
    expect_error(EINVAL, "option '--threads' requires an argument", "-d",
                 "a=b", "/m", "--threads", NULL);
    expect_error(EINVAL, "unknown option '--foreground'", "-d", "a=b",
                 "--foreground=yes", "/m", NULL);
}

static void test_help_and_version(void **state)
{
    g_autoptr(GError) err = NULL;
    struct options opts;

    (void)state;
    assert_true(parse(&opts, &err, "--help", NULL));
    assert_true(opts.show_help);
    options_clear(&opts);
    assert_true(parse(&opts, &err, "-h", "-d", "bad..=x", NULL));
    assert_true(opts.show_help);
    options_clear(&opts);
    assert_true(parse(&opts, &err, "--version", NULL));
    assert_true(opts.show_version);
    options_clear(&opts);
    /* Errors before --help still count. */
    expect_error(EINVAL, "bad disk name", "-d", ".x=y", "--help", NULL);
}

static void test_help_text(void **state)
{
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);

    (void)state;
    options_print_help(out);
    fclose(out);
    for (const char *word = "--disk\0--foreground\0-o OPT\0--allow-dir\0"
                            "--threads\0--nbd-timeout\0--version\0--help\0"
                            "MOUNTPOINT\0";
         *word; word += strlen(word) + 1) {
        assert_non_null(strstr(text, word));
    }
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_minimal),
        cmocka_unit_test(test_every_option),
        cmocka_unit_test(test_long_forms_and_order),
        cmocka_unit_test(test_fuse_option_values),
        cmocka_unit_test(test_comma_in_filename),
        cmocka_unit_test(test_bad_names),
        cmocka_unit_test(test_duplicate_names),
        cmocka_unit_test(test_suboptions),
        cmocka_unit_test(test_threads),
        cmocka_unit_test(test_nbd_timeout),
        cmocka_unit_test(test_allow_dir),
        cmocka_unit_test(test_default_allow_dirs),
        cmocka_unit_test(test_arguments),
        cmocka_unit_test(test_help_and_version),
        cmocka_unit_test(test_help_text),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
