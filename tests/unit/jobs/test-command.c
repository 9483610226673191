/* Unit tests for jobs/command.c: the control command parser. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "core/block.h"
#include "jobs/command.h"

static struct command cmd;

static int teardown(void **state)
{
    (void)state;
    command_clear(&cmd);
    return 0;
}

/* Parse a C string that must be accepted. */
static void parse_ok(const char *text)
{
    GError *error = NULL;

    command_clear(&cmd);
    if (!command_parse(text, strlen(text), &cmd, &error)) {
        fail_msg("'%s' rejected: %s", text, error->message);
    }
}

/* Parse len bytes that must be rejected with EINVAL and a message that
 * contains `expected`. */
static void parse_err_len(const char *text, size_t len, const char *job_id,
                          const char *expected)
{
    GError *error = NULL;
    bool ok;

    command_clear(&cmd);
    ok = job_id ? command_parse_job_ctl(text, len, job_id, &cmd, &error)
                : command_parse(text, len, &cmd, &error);
    if (ok) {
        fail_msg("'%.*s' accepted", (int)MIN(len, 200), text);
    }
    assert_non_null(error);
    assert_int_equal(error->domain, CHAINFS_ERROR);
    assert_int_equal(error->code, EINVAL);
    assert_null(strchr(error->message, '\n'));
    if (!strstr(error->message, expected)) {
        fail_msg("'%.*s': message '%s' lacks '%s'", (int)MIN(len, 200), text,
                 error->message, expected);
    }
    assert_null(cmd.storage);
    g_error_free(error);
}

static void parse_err(const char *text, const char *expected)
{
    parse_err_len(text, strlen(text), NULL, expected);
}

static void job_ctl_ok(const char *text, const char *job_id)
{
    GError *error = NULL;

    command_clear(&cmd);
    if (!command_parse_job_ctl(text, strlen(text), job_id, &cmd, &error)) {
        fail_msg("job ctl '%s' rejected: %s", text, error->message);
    }
    assert_string_equal(cmd.id, job_id);
}

static void test_mirror_minimal_defaults(void **state)
{
    (void)state;
    parse_ok("mirror id=m1 disk=vm1 target=/img/t.qcow2");
    assert_int_equal(cmd.verb, COMMAND_MIRROR);
    assert_string_equal(cmd.id, "m1");
    assert_string_equal(cmd.disk, "vm1");
    assert_string_equal(cmd.target, "/img/t.qcow2");
    assert_null(cmd.format);
    assert_int_equal(cmd.sync, COMMAND_SYNC_FULL);
    assert_int_equal(cmd.mode, COMMAND_MODE_ABSOLUTE_PATHS);
    assert_int_equal(cmd.granularity, 0);
    assert_int_equal(cmd.buf_size, 0);
    assert_int_equal(cmd.speed, 0);
    assert_int_equal(cmd.on_source_error, JOB_ERROR_POLICY_REPORT);
    assert_int_equal(cmd.on_target_error, JOB_ERROR_POLICY_REPORT);
    assert_int_equal(cmd.copy_mode, JOB_COPY_MODE_BACKGROUND);
    assert_true(command_has(&cmd, COMMAND_KEY_ID));
    assert_true(command_has(&cmd, COMMAND_KEY_TARGET));
    assert_false(command_has(&cmd, COMMAND_KEY_SPEED));
    assert_false(command_has(&cmd, COMMAND_KEY_SYNC));
}

static void test_backup(void **state)
{
    (void)state;
    parse_ok("backup id=b disk=vm target=/t");
    assert_int_equal(cmd.verb, COMMAND_BACKUP);
    assert_int_equal(cmd.sync, COMMAND_SYNC_FULL);
    assert_null(cmd.bitmap);
    assert_int_equal(cmd.bitmap_mode, COMMAND_BITMAP_MODE_ON_SUCCESS);
    parse_ok("backup id=b disk=vm target=/t sync=bitmap bitmap=b1 "
             "bitmap-mode=always mode=existing format=qcow2 "
             "granularity=64K buf-size=1M speed=1M on-source-error=stop "
             "on-target-error=ignore");
    assert_int_equal(cmd.sync, COMMAND_SYNC_BITMAP);
    assert_string_equal(cmd.bitmap, "b1");
    assert_int_equal(cmd.bitmap_mode, COMMAND_BITMAP_MODE_ALWAYS);
    parse_ok("backup id=b disk=vm target=/t sync=top bitmap=b1 "
             "bitmap-mode=never");
    assert_int_equal(cmd.bitmap_mode, COMMAND_BITMAP_MODE_NEVER);

    parse_err("backup id=b disk=vm target=/t sync=none",
              "backup: sync: 'none' is not one of full, top, bitmap");
    parse_err("mirror id=m disk=vm target=/t sync=bitmap",
              "mirror: sync: 'bitmap' is not one of full, top, none");
    parse_err("backup id=b disk=vm target=/t sync=bitmap",
              "backup: sync=bitmap needs bitmap=");
    parse_err("backup id=b disk=vm target=/t bitmap-mode=always",
              "backup: bitmap-mode needs bitmap=");
    parse_err("backup id=b disk=vm target=/t bitmap=b bitmap-mode=sometimes",
              "backup: bitmap-mode: 'sometimes' is not one of on-success, "
              "always, never");
    parse_err("backup id=b disk=vm target=/t copy-mode=background",
              "backup: unknown key 'copy-mode'");
    parse_err("backup id=b disk=vm", "backup: missing required key 'target'");
}

static void test_mirror_every_key(void **state)
{
    (void)state;
    parse_ok("mirror id=m.1_x-2 disk=vm1 target=/t format=raw sync=top "
             "mode=existing granularity=64K buf-size=1M speed=10M "
             "on-source-error=ignore on-target-error=stop "
             "copy-mode=write-blocking\n");
    assert_string_equal(cmd.id, "m.1_x-2");
    assert_string_equal(cmd.format, "raw");
    assert_int_equal(cmd.sync, COMMAND_SYNC_TOP);
    assert_int_equal(cmd.mode, COMMAND_MODE_EXISTING);
    assert_int_equal(cmd.granularity, 65536);
    assert_int_equal(cmd.buf_size, 1048576);
    assert_int_equal(cmd.speed, 10 * 1048576);
    assert_int_equal(cmd.on_source_error, JOB_ERROR_POLICY_IGNORE);
    assert_int_equal(cmd.on_target_error, JOB_ERROR_POLICY_STOP);
    assert_int_equal(cmd.copy_mode, JOB_COPY_MODE_WRITE_BLOCKING);
    for (enum command_key key = 0; key < COMMAND_KEY__MAX; key++) {
        bool mirror_key = key != COMMAND_KEY_OVERLAY &&
                          key != COMMAND_KEY_ON_ERROR &&
                          key != COMMAND_KEY_BASE && key != COMMAND_KEY_TOP &&
                          key != COMMAND_KEY_BACKING_FILE &&
                          key != COMMAND_KEY_NAME &&
                          key != COMMAND_KEY_PERSISTENT &&
                          key != COMMAND_KEY_DISABLED &&
                          key != COMMAND_KEY_FROM &&
                          key != COMMAND_KEY_BITMAP &&
                          key != COMMAND_KEY_BITMAP_MODE &&
                          key != COMMAND_KEY_STORE;
        assert_int_equal(command_has(&cmd, key), mirror_key);
    }

    parse_ok("mirror id=a disk=b target=c sync=none on-source-error=report "
             "on-target-error=ignore copy-mode=background "
             "mode=absolute-paths format=qcow2");
    assert_int_equal(cmd.sync, COMMAND_SYNC_NONE);
    assert_int_equal(cmd.on_source_error, JOB_ERROR_POLICY_REPORT);
    assert_int_equal(cmd.on_target_error, JOB_ERROR_POLICY_IGNORE);
    assert_int_equal(cmd.copy_mode, JOB_COPY_MODE_BACKGROUND);
    assert_int_equal(cmd.mode, COMMAND_MODE_ABSOLUTE_PATHS);
    parse_ok("mirror id=a disk=b target=c sync=full");
    assert_int_equal(cmd.sync, COMMAND_SYNC_FULL);
}

static void test_stream_commit_snapshot(void **state)
{
    (void)state;
    parse_ok("stream id=s1 disk=vm1");
    assert_int_equal(cmd.verb, COMMAND_STREAM);
    assert_null(cmd.base);
    parse_ok("stream id=s1 disk=vm1 base=/b.qcow2 backing-file=b.qcow2 "
             "speed=1G on-error=stop");
    assert_string_equal(cmd.base, "/b.qcow2");
    assert_string_equal(cmd.backing_file, "b.qcow2");
    assert_int_equal(cmd.speed, 1ull << 30);
    assert_int_equal(cmd.on_error, JOB_ERROR_POLICY_STOP);

    parse_ok("commit id=c1 disk=vm1");
    assert_int_equal(cmd.verb, COMMAND_COMMIT);
    parse_ok("commit id=c1 disk=vm1 top=/m.qcow2 base=/b.qcow2 "
             "backing-file=../b.qcow2 speed=0 on-error=ignore");
    assert_string_equal(cmd.top, "/m.qcow2");
    assert_string_equal(cmd.base, "/b.qcow2");
    assert_string_equal(cmd.backing_file, "../b.qcow2");
    assert_true(command_has(&cmd, COMMAND_KEY_SPEED));
    assert_int_equal(cmd.on_error, JOB_ERROR_POLICY_IGNORE);

    parse_ok("snapshot disk=vm1 overlay=/o.qcow2");
    assert_int_equal(cmd.verb, COMMAND_SNAPSHOT);
    assert_null(cmd.id);
    parse_ok("snapshot disk=vm1 overlay=/o.qcow2 format=qcow2 mode=existing");
    assert_string_equal(cmd.format, "qcow2");
    assert_int_equal(cmd.mode, COMMAND_MODE_EXISTING);

    /* Keys of one verb are unknown to the others. */
    parse_err("stream id=s disk=d target=/t", "stream: unknown key 'target'");
    parse_err("stream id=s disk=d top=/t", "stream: unknown key 'top'");
    parse_err("commit id=s disk=d sync=full", "commit: unknown key 'sync'");
    parse_err("snapshot disk=d overlay=/o id=x", "snapshot: unknown key 'id'");
    parse_err("snapshot disk=d overlay=/o speed=1",
              "snapshot: unknown key 'speed'");
    parse_err("mirror id=a disk=b target=c on-error=stop",
              "mirror: unknown key 'on-error'");
    parse_err("stream id=a disk=b on-source-error=stop",
              "stream: unknown key 'on-source-error'");
}

static void test_missing_required(void **state)
{
    (void)state;
    parse_err("mirror id=m1 disk=vm1", "mirror: missing required key 'target'");
    parse_err("mirror disk=vm1 target=/t", "mirror: missing required key 'id'");
    parse_err("mirror id=m target=/t", "mirror: missing required key 'disk'");
    parse_err("mirror", "mirror: missing required key 'id'");
    parse_err("stream id=s", "stream: missing required key 'disk'");
    parse_err("stream disk=d", "stream: missing required key 'id'");
    parse_err("commit id=c", "commit: missing required key 'disk'");
    parse_err("commit disk=d", "commit: missing required key 'id'");
    parse_err("snapshot disk=d", "snapshot: missing required key 'overlay'");
    parse_err("snapshot overlay=/o", "snapshot: missing required key 'disk'");
    parse_err("change m1", "change: missing required key 'copy-mode'");
}

static void test_job_verbs(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        enum command_verb verb;
        enum job_verb job_verb;
    } verbs[] = {
        { "complete m1", COMMAND_COMPLETE, JOB_VERB_COMPLETE },
        { "cancel m1", COMMAND_CANCEL, JOB_VERB_CANCEL },
        { "pause m1", COMMAND_PAUSE, JOB_VERB_PAUSE },
        { "resume m1", COMMAND_RESUME, JOB_VERB_RESUME },
        { "set-speed m1 0", COMMAND_SET_SPEED, JOB_VERB_SET_SPEED },
        { "change m1 copy-mode=background", COMMAND_CHANGE, JOB_VERB_CHANGE },
        { "dismiss m1", COMMAND_DISMISS, JOB_VERB_DISMISS },
    };
    enum job_verb job_verb;

    for (size_t i = 0; i < G_N_ELEMENTS(verbs); i++) {
        parse_ok(verbs[i].text);
        assert_int_equal(cmd.verb, verbs[i].verb);
        assert_string_equal(cmd.id, "m1");
        assert_false(cmd.force);
        assert_true(command_job_verb(cmd.verb, &job_verb));
        assert_int_equal(job_verb, verbs[i].job_verb);
    }
    assert_false(command_job_verb(COMMAND_MIRROR, &job_verb));
    assert_false(command_job_verb(COMMAND_SNAPSHOT, &job_verb));

    parse_ok("cancel m1 force");
    assert_true(cmd.force);
    parse_ok("set-speed m1 10M\n");
    assert_int_equal(cmd.speed, 10 << 20);
    parse_ok("change m1 copy-mode=write-blocking");
    assert_int_equal(cmd.copy_mode, JOB_COPY_MODE_WRITE_BLOCKING);

    parse_err("complete", "complete: missing job id");
    parse_err("dismiss", "dismiss: missing job id");
    parse_err("cancel", "cancel: missing job id");
    parse_err("set-speed m1", "set-speed: missing speed");
    parse_err("set-speed", "set-speed: missing job id");
    parse_err("pause m1 m2", "pause: unexpected argument 'm2'");
    parse_err("cancel m1 now", "cancel: unexpected argument 'now'");
    parse_err("cancel m1 force force", "cancel: unexpected argument 'force'");
    parse_err("set-speed m1 1 2", "set-speed: unexpected argument '2'");
    parse_err("set-speed m1 fast", "set-speed: speed: 'fast' is not a size");
    parse_err("complete .m1", "complete: '.m1' is not a valid job id");
    parse_err("pause m1 id=m1", "pause: unknown key 'id'");
    parse_err("change m1 copy-mode=fast",
              "change: copy-mode: 'fast' is not one of background, "
              "write-blocking");
    parse_err("change m1 speed=1", "change: unknown key 'speed'");
}

static void test_job_ctl_form(void **state)
{
    (void)state;
    job_ctl_ok("complete", "m1");
    assert_int_equal(cmd.verb, COMMAND_COMPLETE);
    job_ctl_ok("cancel\n", "m1");
    assert_int_equal(cmd.verb, COMMAND_CANCEL);
    assert_false(cmd.force);
    job_ctl_ok("cancel force", "m1");
    assert_true(cmd.force);
    job_ctl_ok("pause", "job-2");
    assert_int_equal(cmd.verb, COMMAND_PAUSE);
    job_ctl_ok("resume", "m1");
    assert_int_equal(cmd.verb, COMMAND_RESUME);
    job_ctl_ok("dismiss", "m1");
    assert_int_equal(cmd.verb, COMMAND_DISMISS);
    job_ctl_ok("set-speed 4K", "m1");
    assert_int_equal(cmd.verb, COMMAND_SET_SPEED);
    assert_int_equal(cmd.speed, 4096);
    job_ctl_ok("speed=1M\n", "m1");
    assert_int_equal(cmd.verb, COMMAND_SET_SPEED);
    assert_int_equal(cmd.speed, 1 << 20);
    job_ctl_ok("speed=0", "m1");
    assert_int_equal(cmd.speed, 0);
    assert_true(command_has(&cmd, COMMAND_KEY_SPEED));
    job_ctl_ok("change copy-mode=write-blocking", "m1");
    assert_int_equal(cmd.verb, COMMAND_CHANGE);
    assert_int_equal(cmd.copy_mode, JOB_COPY_MODE_WRITE_BLOCKING);

    parse_err_len("cancel m1", 9, "m1", "cancel: unexpected argument 'm1'");
    parse_err_len("pause m1", 8, "m1", "pause: unexpected argument 'm1'");
    parse_err_len("mirror id=a disk=b target=c", 27, "m1",
                  "mirror: not a job verb");
    parse_err_len("speed=fast", 10, "m1", "speed: 'fast' is not a size");
    parse_err_len("speed=1 2", 9, "m1", "set-speed: unexpected argument '2'");
    parse_err_len("set-speed", 9, "m1", "set-speed: missing speed");
    parse_err_len("id=m1", 5, "m1", "unknown command 'id=m1'");
    /* speed= is only short for set-speed in a job's ctl file. */
    parse_err("speed=1", "unknown command 'speed=1'");
}

static void test_quoting(void **state)
{
    (void)state;
    parse_ok("mirror id=m disk=d target=\"/my images/t.qcow2\"");
    assert_string_equal(cmd.target, "/my images/t.qcow2");
    parse_ok("mirror id=m disk=d target=\"a\\\"b\\\\c\"");
    assert_string_equal(cmd.target, "a\"b\\c");
    /* Only \" and \\ are escapes; other backslashes stay. */
    parse_ok("mirror id=m disk=d target=\"a\\nb\"");
    assert_string_equal(cmd.target, "a\\nb");
    /* Outside quotes a backslash is an ordinary character. */
    parse_ok("mirror id=m disk=d target=a\\b");
    assert_string_equal(cmd.target, "a\\b");
    /* Quoted parts join the word around them, as in a shell. */
    parse_ok("mirror id=m disk=d target=/x\" y \"z");
    assert_string_equal(cmd.target, "/x y z");
    parse_ok("mirror id=\"m1\" disk=\"d\" target=\"=\"");
    assert_string_equal(cmd.id, "m1");
    assert_string_equal(cmd.target, "=");
    parse_ok("stream id=s disk=d backing-file=\"a=b\ttab\"");
    assert_string_equal(cmd.backing_file, "a=b\ttab");
    /* A value may contain '=' unquoted: only the first one splits. */
    parse_ok("mirror id=m disk=d target=/a=b");
    assert_string_equal(cmd.target, "/a=b");
    /* Blanks: spaces and tabs, any number, before and after. */
    parse_ok("  \tmirror\t id=m   disk=d\t\ttarget=/t  \n");
    assert_string_equal(cmd.target, "/t");
    parse_ok("cancel \"m1\" force");
    assert_string_equal(cmd.id, "m1");
    assert_true(cmd.force);

    parse_err("mirror id=m disk=d target=\"/t", "unterminated quote");
    parse_err("mirror id=m disk=d target=\"/t\\\"", "unterminated quote");
    parse_err("mirror id=m disk=d target=\"\"",
              "mirror: empty value for key 'target'");
    parse_err("mirror id= disk=d target=/t", "mirror: empty value for key 'id'");
    parse_err("mirror id=m disk=d target=/t extra",
              "mirror: unexpected argument 'extra' (expected key=value)");
    parse_err("mirror id=m disk=d target=/t =x", "mirror: unknown key ''");
}

static void test_sizes(void **state)
{
    static const struct {
        const char *text;
        uint64_t value;
    } good[] = {
        { "0", 0 }, { "1", 1 }, { "007", 7 }, { "1K", 1024 },
        { "1k", 1024 }, { "3M", 3 << 20 }, { "2G", 2ull << 30 },
        { "5T", 5ull << 40 }, { "16777215T", 16777215ull << 40 },
        { "18446744073709551615", UINT64_MAX },
        { "17179869183G", 17179869183ull << 30 },
    };
    static const char *const junk[] = {
        "", "x", "-1", "+1", "1.5K", "K", "1KB", " 1", "1 ", "0x10", "1P",
        "1KK", "1e3",
    };
    static const char *const overflow[] = {
        "18446744073709551616", "99999999999999999999999", "16777216T",
        "17179869184G", "17592186044416M", "18014398509481984K",
    };
    GError *error = NULL;
    uint64_t size;

    (void)state;
    for (size_t i = 0; i < G_N_ELEMENTS(good); i++) {
        assert_true(command_parse_size("speed", good[i].text, &size, &error));
        assert_int_equal(size, good[i].value);
    }
    for (size_t i = 0; i < G_N_ELEMENTS(junk); i++) {
        assert_false(command_parse_size("speed", junk[i], &size, &error));
        assert_int_equal(error->code, EINVAL);
        assert_non_null(strstr(error->message, "is not a size"));
        g_clear_error(&error);
    }
    for (size_t i = 0; i < G_N_ELEMENTS(overflow); i++) {
        assert_false(command_parse_size("speed", overflow[i], &size, &error));
        assert_int_equal(error->code, EINVAL);
        assert_non_null(strstr(error->message, "is too large"));
        g_clear_error(&error);
    }
}

static void test_bounds(void **state)
{
    static const char *const good_granularity[] = {
        "512", "1K", "4096", "64K", "1M", "32M", "64M", "67108864",
    };
    static const char *const bad_granularity[] = {
        "0", "1", "256", "511", "1000", "1536", "65535", "128M", "96M",
        "67108865", "1G",
    };
    char text[256];

    (void)state;
    for (size_t i = 0; i < G_N_ELEMENTS(good_granularity); i++) {
        snprintf(text, sizeof(text), "mirror id=m disk=d target=/t "
                 "granularity=%s", good_granularity[i]);
        parse_ok(text);
    }
    for (size_t i = 0; i < G_N_ELEMENTS(bad_granularity); i++) {
        char expected[128];

        snprintf(text, sizeof(text), "mirror id=m disk=d target=/t "
                 "granularity=%s", bad_granularity[i]);
        snprintf(expected, sizeof(expected), "mirror: granularity: %s is not "
                 "a power of two from 512 to 64M", bad_granularity[i]);
        parse_err(text, expected);
    }

    parse_ok("mirror id=m disk=d target=/t buf-size=0");
    assert_int_equal(cmd.buf_size, 0);
    parse_ok("mirror id=m disk=d target=/t buf-size=512");
    parse_ok("mirror id=m disk=d target=/t buf-size=1G");
    assert_int_equal(cmd.buf_size, 1ull << 30);
    parse_ok("mirror id=m disk=d target=/t buf-size=100000");
    parse_err("mirror id=m disk=d target=/t buf-size=511",
              "mirror: buf-size: 511 is neither 0 nor from 512 to 1G");
    parse_err("mirror id=m disk=d target=/t buf-size=1073741825",
              "mirror: buf-size: 1073741825 is neither 0 nor from 512 to 1G");
    parse_err("mirror id=m disk=d target=/t buf-size=2G", "buf-size: 2G");
    /* Against the granularity when both are given, in either order. */
    parse_ok("mirror id=m disk=d target=/t granularity=64K buf-size=64K");
    parse_ok("mirror id=m disk=d target=/t buf-size=0 granularity=64M");
    parse_ok("mirror id=m disk=d target=/t buf-size=1G granularity=64M");
    parse_err("mirror id=m disk=d target=/t granularity=64K buf-size=4K",
              "mirror: buf-size: 4096 is neither 0 nor from the granularity "
              "(65536) to 1G");
    parse_err("mirror id=m disk=d target=/t buf-size=32M granularity=64M",
              "buf-size: 33554432 is neither 0 nor from the granularity");

    parse_ok("mirror id=m disk=d target=/t speed=0");
    parse_ok("mirror id=m disk=d target=/t speed=9223372036854775807");
    assert_int_equal(cmd.speed, INT64_MAX);
    parse_ok("stream id=m disk=d speed=8388607T");
    parse_err("mirror id=m disk=d target=/t speed=9223372036854775808",
              "mirror: speed: 9223372036854775808 is larger than 2^63-1");
    parse_err("commit id=m disk=d speed=8388608T",
              "commit: speed: 8388608T is larger than 2^63-1");
    parse_err("commit id=m disk=d speed=18446744073709551616",
              "commit: speed: '18446744073709551616' is too large");
    parse_err("set-speed m1 9223372036854775808", "larger than 2^63-1");
    parse_err("mirror id=m disk=d target=/t speed=1.5M",
              "mirror: speed: '1.5M' is not a size");
}

static void test_names_and_choices(void **state)
{
    char text[512];
    char name[200];

    (void)state;
    memset(name, 'a', 128);
    name[128] = '\0';
    snprintf(text, sizeof(text), "stream id=%s disk=d", name);
    parse_ok(text);
    name[128] = 'a';
    name[129] = '\0';
    snprintf(text, sizeof(text), "stream id=%s disk=d", name);
    parse_err(text, "is not a valid job id");
    snprintf(text, sizeof(text), "stream id=s disk=%s", name);
    parse_ok(text);

    parse_err("stream id=.s disk=d", "stream: id: '.s' is not a valid job id");
    parse_err("stream id=a/b disk=d", "stream: id: 'a/b' is not a valid job id");
    parse_err("stream id=\"a b\" disk=d", "'a b' is not a valid job id");
    parse_err("stream id=s disk=.d", "stream: disk: '.d' is not a valid disk");
    parse_err("stream id=s disk=v:m", "'v:m' is not a valid disk name");
    parse_err("mirror id=m disk=d target=/t format=Qcow2",
              "mirror: format: 'Qcow2' is not a format name");
    parse_err("mirror id=m disk=d target=/t sync=half",
              "mirror: sync: 'half' is not one of full, top, none");
    parse_err("mirror id=m disk=d target=/t mode=new",
              "mirror: mode: 'new' is not one of absolute-paths, existing");
    parse_err("mirror id=m disk=d target=/t on-source-error=retry",
              "mirror: on-source-error: 'retry' is not one of report, "
              "ignore, stop");
    parse_err("mirror id=m disk=d target=/t on-target-error=Stop",
              "mirror: on-target-error: 'Stop' is not one of");
    parse_err("stream id=s disk=d on-error=", "empty value for key 'on-error'");
    parse_err("commit id=s disk=d on-error=x", "commit: on-error: 'x'");
}

static void test_bitmap_commands(void **state)
{
    g_autofree char *long_name = g_strnfill(COMMAND_MAX_BITMAP_LEN, 'b');
    g_autofree char *too_long = g_strnfill(COMMAND_MAX_BITMAP_LEN + 1, 'b');
    g_autofree char *text = NULL;

    (void)state;
    parse_ok("bitmap-add disk=vm name=b1");
    assert_int_equal(cmd.verb, COMMAND_BITMAP_ADD);
    assert_true(command_is_bitmap_verb(cmd.verb));
    assert_string_equal(cmd.name, "b1");
    assert_int_equal(cmd.persistent, 0);
    assert_int_equal(cmd.disabled, 0);
    assert_int_equal(cmd.granularity, 0);

    parse_ok("bitmap-add disk=vm name=b.2_x-y granularity=4K persistent=on "
             "disabled=on");
    assert_int_equal(cmd.persistent, 1);
    assert_int_equal(cmd.disabled, 1);
    assert_int_equal(cmd.granularity, 4096);

    parse_ok("bitmap-merge disk=vm name=b1 from=b2,b3@snap");
    assert_string_equal(cmd.from, "b2,b3@snap");
    parse_ok("bitmap-remove disk=vm name=b1@snap");
    assert_int_equal(cmd.verb, COMMAND_BITMAP_REMOVE);
    assert_false(command_is_bitmap_verb(COMMAND_SNAPSHOT));

    text = g_strdup_printf("bitmap-clear disk=vm name=%s", long_name);
    parse_ok(text);
    g_free(text);
    text = g_strdup_printf("bitmap-clear disk=vm name=%s", too_long);
    parse_err(text, "is not a valid bitmap name");

    parse_err("bitmap-add disk=vm", "bitmap-add: missing required key 'name'");
    parse_err("bitmap-add name=b", "bitmap-add: missing required key 'disk'");
    parse_err("bitmap-add disk=vm name=.b", "not a valid bitmap name");
    parse_err("bitmap-add disk=vm name=a/b", "not a valid bitmap name");
    parse_err("bitmap-add disk=vm name=b persistent=yes",
              "persistent: 'yes' is not one of off, on");
    parse_err("bitmap-add disk=vm name=b granularity=3K",
              "not a power of two");
    parse_err("bitmap-enable disk=vm name=b granularity=4K",
              "bitmap-enable: unknown key 'granularity'");
    parse_err("bitmap-merge disk=vm name=b", "missing required key 'from'");
    parse_err("bitmap-merge disk=vm name=b from=a,,c",
              "from: '' is not a valid bitmap name");
    parse_err("bitmap-disable disk=vm name=b id=x",
              "bitmap-disable: unknown key 'id'");
}

static void test_bad_commands(void **state)
{
    static const char nul[] = "mirror id=m\0 disk=d target=/t";
    char *text;
    size_t len;

    (void)state;
    parse_err("frobnicate id=x", "unknown command 'frobnicate'");
    parse_err("MIRROR id=m disk=d target=/t", "unknown command 'MIRROR'");
    parse_err("mirror id=m disk=d target=/t foo=1", "mirror: unknown key 'foo'");
    parse_err("mirror id=m disk=d target=/t ID=1", "mirror: unknown key 'ID'");
    parse_err("mirror id=m disk=d target=/t id=n", "mirror: duplicate key 'id'");
    parse_err("mirror id=m disk=d target=/t speed=1 speed=1",
              "mirror: duplicate key 'speed'");
    parse_err("", "empty command");
    parse_err("\n", "empty command");
    parse_err(" \t ", "empty command");
    parse_err("cancel m1\ncancel m2", "one command per write");
    parse_err("cancel m1\n\n", "one command per write");
    parse_err("cancel m1\r\n", "control character");
    parse_err_len(nul, sizeof(nul) - 1, NULL, "NUL byte");
    parse_err_len(nul, sizeof(nul) - 1, "m1", "NUL byte");

    /* 64 KiB is the most one write may hold. */
    len = COMMAND_MAX_BYTES;
    text = g_malloc(len + 2);
    memset(text, 'x', len + 1);
    memcpy(text, "mirror id=m disk=d target=/", 27);
    text[len + 1] = '\0';
    parse_err_len(text, len + 1, NULL, "longer than 65536 bytes");
    command_clear(&cmd);
    assert_true(command_parse(text, len, &cmd, NULL));
    assert_int_equal(strlen(cmd.target), len - 26);
    text[len - 1] = '\n';
    command_clear(&cmd);
    assert_true(command_parse(text, len, &cmd, NULL));
    assert_int_equal(strlen(cmd.target), len - 27);
    g_free(text);

    /* A bounded number of words. */
    text = g_strnfill(200, ' ');
    for (int i = 0; i < 65; i++) {
        text[i * 2] = 'x';
    }
    parse_err(text, "more than 64 words");
    g_free(text);
}

/* fleece: id= disk= required; name=, bitmap=, store= optional. */
static void test_fleece(void **state)
{
    parse_ok("fleece id=f disk=vm name=s bitmap=b store=\"/x y/s.qcow2\"");
    assert_int_equal(cmd.verb, COMMAND_FLEECE);
    assert_string_equal(cmd.name, "s");
    assert_string_equal(cmd.bitmap, "b");
    assert_string_equal(cmd.store, "/x y/s.qcow2");

    parse_err("fleece id=f", "fleece: missing required key 'disk'");
    parse_err("fleece id=f disk=vm target=t", "fleece: unknown key 'target'");
    (void)state;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_mirror_minimal_defaults, teardown),
        cmocka_unit_test_teardown(test_mirror_every_key, teardown),
        cmocka_unit_test_teardown(test_backup, teardown),
        cmocka_unit_test_teardown(test_stream_commit_snapshot, teardown),
        cmocka_unit_test_teardown(test_missing_required, teardown),
        cmocka_unit_test_teardown(test_job_verbs, teardown),
        cmocka_unit_test_teardown(test_job_ctl_form, teardown),
        cmocka_unit_test_teardown(test_quoting, teardown),
        cmocka_unit_test_teardown(test_sizes, teardown),
        cmocka_unit_test_teardown(test_bounds, teardown),
        cmocka_unit_test_teardown(test_names_and_choices, teardown),
        cmocka_unit_test_teardown(test_bitmap_commands, teardown),
        cmocka_unit_test_teardown(test_fleece, teardown),
        cmocka_unit_test_teardown(test_bad_commands, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
