/* Unit tests for NBD URI parsing (drivers/nbd-uri.c). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "core/block.h"
#include "drivers/nbd-uri.h"

/* Parse uri, expecting success. */
static struct nbd_uri parse_ok(const char *uri)
{
    struct nbd_uri out;
    GError *error = NULL;

    if (!nbd_uri_parse(uri, &out, &error)) {
        fail_msg("%s: %s", uri, error->message);
    }
    return out;
}

/* Parse uri, expecting errno code and a message naming the URI. */
static void parse_fails(const char *uri, int code)
{
    struct nbd_uri out;
    GError *error = NULL;

    assert_false(nbd_uri_parse(uri, &out, &error));
    assert_non_null(error);
    if (error->code != code) {
        fail_msg("%s: expected errno %d, got %d: %s", uri, code, error->code,
                 error->message);
    }
    assert_non_null(strstr(error->message, uri));
    g_error_free(error);
}

static void test_tcp(void **state)
{
    (void)state;
    struct nbd_uri u = parse_ok("nbd://example.com:10810/disk%201");
    assert_int_equal(u.transport, NBD_URI_TCP);
    assert_string_equal(u.host, "example.com");
    assert_string_equal(u.port, "10810");
    assert_string_equal(u.export, "disk 1");
    assert_null(u.socket);
    nbd_uri_clear(&u);

    u = parse_ok("NBD://10.250.0.2");
    assert_string_equal(u.host, "10.250.0.2");
    assert_string_equal(u.port, "10809");
    assert_string_equal(u.export, "");
    nbd_uri_clear(&u);

    u = parse_ok("nbd://[::1]:9/");
    assert_string_equal(u.host, "::1");
    assert_string_equal(u.port, "9");
    assert_string_equal(u.export, "");
    nbd_uri_clear(&u);
}

static void test_unix(void **state)
{
    (void)state;
    struct nbd_uri u = parse_ok("nbd+unix:///exp?socket=/run/a%20b.sock");
    assert_int_equal(u.transport, NBD_URI_UNIX);
    assert_null(u.host);
    assert_string_equal(u.export, "exp");
    assert_string_equal(u.socket, "/run/a b.sock");
    nbd_uri_clear(&u);

    u = parse_ok("nbd+unix://?socket=/s");
    assert_string_equal(u.export, "");
    assert_string_equal(u.socket, "/s");
    nbd_uri_clear(&u);
}

static void test_malformed(void **state)
{
    (void)state;
    parse_fails("nbd:///x", EINVAL);                    /* no host */
    parse_fails("nbd://h:0/x", EINVAL);
    parse_fails("nbd://h:65536/x", EINVAL);
    parse_fails("nbd://h:1a/x", EINVAL);
    parse_fails("nbd://[::1/x", EINVAL);
    parse_fails("nbd://[::1]x/y", EINVAL);
    parse_fails("nbd://h/x#frag", EINVAL);
    parse_fails("nbd://h/%4", EINVAL);
    parse_fails("nbd://h/%00", EINVAL);
    parse_fails("nbd://h/x?socket=/s", EINVAL);         /* TCP has none */
    parse_fails("nbd://h/x?foo=1", EINVAL);
    parse_fails("nbd+unix:///x", EINVAL);               /* no socket */
    parse_fails("nbd+unix:///x?socket=", EINVAL);
    parse_fails("nbd+unix:///x?socket=rel", EINVAL);
    parse_fails("nbd+unix:///x?socket=/a&socket=/b", EINVAL);
    parse_fails("nbd+unix://host/x?socket=/s", EINVAL);
    parse_fails("not a uri", EINVAL);
}

static void test_unsupported(void **state)
{
    (void)state;
    parse_fails("nbds://h/x", ENOTSUP);
    parse_fails("nbds+unix:///x?socket=/s", ENOTSUP);
    parse_fails("nbd://h/x?tls=require", ENOTSUP);
    parse_fails("nbd+unix:///x?socket=/s&tls-certificates=/c", ENOTSUP);
    parse_fails("nbd://user@h/x", ENOTSUP);
    parse_fails("nbd+vsock://2/x", ENOTSUP);
    parse_fails("nbd+ssh://h/x", ENOTSUP);
}

static void test_scheme_family(void **state)
{
    (void)state;
    assert_true(nbd_uri_scheme_known("nbd://h/"));
    assert_true(nbd_uri_scheme_known("nbds+unix:///"));
    assert_true(nbd_uri_scheme_known("NBD+VSOCK://2"));
    assert_false(nbd_uri_scheme_known("http://h/"));
    assert_false(nbd_uri_scheme_known("nbdx://h/"));
    assert_true(block_name_is_uri("nbd+unix:///?socket=/s"));
    assert_false(block_name_is_uri("nbd:unix:/s"));     /* QEMU legacy */
    assert_false(block_name_is_uri("/images/a:b.qcow2"));
    assert_false(block_name_is_uri("1nbd://h"));
    assert_true(block_driver_for_uri("nbd://h/") != NULL);
    assert_null(block_driver_for_uri("http://h/"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tcp),
        cmocka_unit_test(test_unix),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_unsupported),
        cmocka_unit_test(test_scheme_family),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
