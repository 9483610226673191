/* chainfs: NBD URIs, parsed without touching the network.
 *
 * The forms of libnbd and QEMU that chainfs serves:
 *
 *     nbd://HOST[:PORT][/EXPORT]          TCP (PORT 10809 by default)
 *     nbd+unix:///[EXPORT]?socket=PATH    a Unix domain socket
 *
 * EXPORT and PATH are percent-decoded; HOST may be an IPv6 address in
 * brackets.  The rest of the family is recognised only to be refused
 * with its reason: TLS (nbds://, nbds+unix://, any tls* query key, a user
 * name) and vsock (nbd+vsock://) are ENOTSUP.  Anything else malformed
 * (a host on a unix URI, no socket=, a relative socket path, an unknown
 * query key, a fragment, a bad port or percent escape) is EINVAL.  Every
 * message names the URI.  A connection goes only where the URI says.
 *
 * No state: every function may be called from any thread.
 */
#ifndef CHAINFS_NBD_URI_H
#define CHAINFS_NBD_URI_H

#include <stdbool.h>
#include <glib.h>

enum nbd_uri_transport {
    NBD_URI_TCP,    /* host and port */
    NBD_URI_UNIX,   /* socket */
};

struct nbd_uri {
    enum nbd_uri_transport transport;
    char *host;     /* TCP: a name or an address, without brackets */
    char *port;     /* TCP: decimal, "10809" when not given */
    char *export;   /* the export name, "" for the default export */
    char *socket;   /* UNIX: an absolute path */
};

/* Whether uri's scheme is of the NBD family (nbd, nbds, nbd+..., nbds+...),
 * whether or not chainfs supports that member. */
bool nbd_uri_scheme_known(const char *uri) __attribute__((nonnull));

/* Parse uri into *out (cleared first; nbd_uri_clear releases it). */
bool nbd_uri_parse(const char *uri, struct nbd_uri *out, GError **errp)
    __attribute__((nonnull(1, 2)));

void nbd_uri_clear(struct nbd_uri *uri) __attribute__((nonnull));

#endif
