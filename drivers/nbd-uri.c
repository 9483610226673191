/* chainfs: parsing NBD URIs (see nbd-uri.h). */
#include "drivers/nbd-uri.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/block.h"

#define NBD_DEFAULT_PORT "10809"

void nbd_uri_clear(struct nbd_uri *uri)
{
    g_free(uri->host);
    g_free(uri->port);
    g_free(uri->export);
    g_free(uri->socket);
    memset(uri, 0, sizeof(*uri));
}

/* The scheme of uri, lower-cased (uri is a URI: block_name_is_uri). */
static char *uri_scheme(const char *uri)
{
    const char *colon = strstr(uri, "://");

    return colon ? g_ascii_strdown(uri, colon - uri) : g_strdup("");
}

bool nbd_uri_scheme_known(const char *uri)
{
    g_autofree char *scheme = uri_scheme(uri);

    return strcmp(scheme, "nbd") == 0 || strcmp(scheme, "nbds") == 0 ||
           g_str_has_prefix(scheme, "nbd+") ||
           g_str_has_prefix(scheme, "nbds+");
}

/* Percent-decode len bytes at s; NULL (errp set) for a bad escape or a
 * NUL byte. */
static char *percent_decode(const char *uri, const char *what, const char *s,
                            size_t len, GError **errp)
{
    GString *out = g_string_sized_new(len);

    for (size_t i = 0; i < len; i++) {
        if (s[i] != '%') {
            g_string_append_c(out, s[i]);
            continue;
        }
        if (i + 2 >= len) {
            goto bad;
        }
        int high = g_ascii_xdigit_value(s[i + 1]);
        int low = high < 0 ? -1 : g_ascii_xdigit_value(s[i + 2]);
        if (high < 0 || low < 0 || (high == 0 && low == 0)) {
            goto bad;
        }
        g_string_append_c(out, (char)(high * 16 + low));
        i += 2;
    }
    return g_string_free(out, FALSE);

bad:
    g_string_free(out, TRUE);
    g_set_error(errp, CHAINFS_ERROR, EINVAL,
                "%s: bad percent escape in the %s", uri, what);
    return NULL;
}

/* The transport of a supported scheme; ENOTSUP with the reason for the
 * others. */
static bool parse_scheme(const char *uri, struct nbd_uri *out, GError **errp)
{
    g_autofree char *scheme = uri_scheme(uri);

    if (strcmp(scheme, "nbd") == 0) {
        out->transport = NBD_URI_TCP;
        return true;
    }
    if (strcmp(scheme, "nbd+unix") == 0) {
        out->transport = NBD_URI_UNIX;
        return true;
    }
    if (g_str_has_prefix(scheme, "nbds")) {
        g_set_error(errp, CHAINFS_ERROR, ENOTSUP,
                    "%s: TLS (%s://) is not supported", uri, scheme);
    } else if (strcmp(scheme, "nbd+vsock") == 0) {
        g_set_error(errp, CHAINFS_ERROR, ENOTSUP,
                    "%s: vsock is not supported", uri);
    } else {
        g_set_error(errp, CHAINFS_ERROR, ENOTSUP,
                    "%s: unsupported NBD transport '%s' (nbd:// or "
                    "nbd+unix://)", uri, scheme);
    }
    return false;
}

/* HOST[:PORT] or [ADDRESS][:PORT] of an nbd:// URI. */
static bool parse_authority(const char *uri, const char *auth, size_t len,
                            struct nbd_uri *out, GError **errp)
{
    const char *end = auth + len;
    const char *port = NULL;

    if (memchr(auth, '@', len)) {
        g_set_error(errp, CHAINFS_ERROR, ENOTSUP,
                    "%s: a user name (TLS) is not supported", uri);
        return false;
    }
    if (len > 0 && auth[0] == '[') {
        const char *close = memchr(auth, ']', len);
        if (!close || close == auth + 1 ||
            (close + 1 < end && close[1] != ':')) {
            g_set_error(errp, CHAINFS_ERROR, EINVAL,
                        "%s: bad IPv6 address in brackets", uri);
            return false;
        }
        out->host = g_strndup(auth + 1, close - auth - 1);
        port = close + 1 < end ? close + 2 : NULL;
    } else {
        const char *colon = memchr(auth, ':', len);
        out->host = g_strndup(auth, (colon ? colon : end) - auth);
        port = colon ? colon + 1 : NULL;
    }
    if (out->host[0] == '\0') {
        g_set_error(errp, CHAINFS_ERROR, EINVAL, "%s: no host", uri);
        return false;
    }
    if (!port) {
        out->port = g_strdup(NBD_DEFAULT_PORT);
        return true;
    }
    out->port = g_strndup(port, end - port);
    char *rest;
    unsigned long value = strtoul(out->port, &rest, 10);
    if (!g_ascii_isdigit(out->port[0]) || *rest != '\0' || value == 0 ||
        value > 65535) {
        g_set_error(errp, CHAINFS_ERROR, EINVAL, "%s: bad port '%s'", uri,
                    out->port);
        return false;
    }
    return true;
}

/* One KEY=VALUE of the query. */
static bool parse_query_item(const char *uri, const char *item, size_t len,
                             struct nbd_uri *out, GError **errp)
{
    const char *eq = memchr(item, '=', len);
    g_autofree char *key = g_strndup(item, eq ? (size_t)(eq - item) : len);

    if (g_str_has_prefix(key, "tls")) {
        g_set_error(errp, CHAINFS_ERROR, ENOTSUP,
                    "%s: TLS (%s=) is not supported", uri, key);
        return false;
    }
    if (strcmp(key, "socket") != 0) {
        g_set_error(errp, CHAINFS_ERROR, EINVAL,
                    "%s: unknown query parameter '%s' (only socket=)", uri,
                    key);
        return false;
    }
    if (out->transport != NBD_URI_UNIX) {
        g_set_error(errp, CHAINFS_ERROR, EINVAL,
                    "%s: socket= needs nbd+unix://", uri);
        return false;
    }
    if (out->socket) {
        g_set_error(errp, CHAINFS_ERROR, EINVAL, "%s: socket= given twice",
                    uri);
        return false;
    }
    if (!eq) {
        g_set_error(errp, CHAINFS_ERROR, EINVAL, "%s: socket= needs a path",
                    uri);
        return false;
    }
    out->socket = percent_decode(uri, "socket path", eq + 1,
                                 item + len - eq - 1, errp);
    return out->socket != NULL;
}

static bool parse_query(const char *uri, const char *query,
                        struct nbd_uri *out, GError **errp)
{
    while (*query) {
        size_t len = strcspn(query, "&;");
        if (len > 0 && !parse_query_item(uri, query, len, out, errp)) {
            return false;
        }
        query += len + (query[len] ? 1 : 0);
    }
    return true;
}

/* What a unix URI must have: no host, an absolute socket path. */
static bool check_unix(const char *uri, size_t auth_len,
                       const struct nbd_uri *out, GError **errp)
{
    if (auth_len > 0) {
        g_set_error(errp, CHAINFS_ERROR, EINVAL,
                    "%s: nbd+unix:// takes no host (nbd+unix:///EXPORT?"
                    "socket=PATH)", uri);
        return false;
    }
    if (!out->socket || out->socket[0] == '\0') {
        g_set_error(errp, CHAINFS_ERROR, EINVAL,
                    "%s: nbd+unix:// needs ?socket=PATH", uri);
        return false;
    }
    if (out->socket[0] != '/') {
        g_set_error(errp, CHAINFS_ERROR, EINVAL,
                    "%s: socket= must be an absolute path", uri);
        return false;
    }
    return true;
}

static bool parse_uri(const char *uri, struct nbd_uri *out, GError **errp)
{
    if (!block_name_is_uri(uri)) {
        g_set_error(errp, CHAINFS_ERROR, EINVAL,
                    "%s: not a URI (nbd://HOST[:PORT]/EXPORT or "
                    "nbd+unix:///EXPORT?socket=PATH)", uri);
        return false;
    }
    if (!parse_scheme(uri, out, errp)) {
        return false;
    }
    const char *auth = strstr(uri, "://") + 3;
    if (strchr(auth, '#')) {
        g_set_error(errp, CHAINFS_ERROR, EINVAL,
                    "%s: a fragment ('#') is not allowed", uri);
        return false;
    }
    size_t auth_len = strcspn(auth, "/?");
    const char *path = auth + auth_len;
    size_t path_len = strcspn(path, "?");
    const char *query = path[path_len] == '?' ? path + path_len + 1 : "";

    if (out->transport == NBD_URI_TCP &&
        !parse_authority(uri, auth, auth_len, out, errp)) {
        return false;
    }
    /* "/EXPORT": the leading slash separates, it is not part of it. */
    if (path_len > 0) {
        path++;
        path_len--;
    }
    out->export = percent_decode(uri, "export name", path, path_len, errp);
    if (!out->export || !parse_query(uri, query, out, errp)) {
        return false;
    }
    if (out->transport == NBD_URI_UNIX) {
        return check_unix(uri, auth_len, out, errp);
    }
    return true;
}

bool nbd_uri_parse(const char *uri, struct nbd_uri *out, GError **errp)
{
    memset(out, 0, sizeof(*out));
    if (!parse_uri(uri, out, errp)) {
        nbd_uri_clear(out);
        return false;
    }
    return true;
}
