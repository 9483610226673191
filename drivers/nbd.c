/* chainfs: the nbd driver: an NBD export (libnbd) as a raw layer.
 *
 * Never probed: a node is NBD because its name is an nbd:// or
 * nbd+unix:// URI (drivers/nbd-uri.h); it has no host file (fd -1), no
 * lock (NBD has none) and no backing.  The export is the raw disk.
 *
 * Connections.  One connection, or up to NBD_MAX_CONNS where the server
 * advertises multi-conn (a plain qemu-nbd serves one client at a time).
 * Each connection has a dispatcher thread that runs libnbd's state
 * machine (poll on the socket and on an eventfd that requesters write
 * after queueing a command); requesters issue nbd_aio_* commands from
 * their own threads and wait for the completion callbacks, so many
 * requests are in flight on one connection.  A request is split at the
 * server's maximum request size, all pieces in flight at once, and
 * rounded out to its minimum block size (unaligned writes are
 * read-modify-write, serialised among themselves).
 *
 * Dropped connections.  A request on a connection that dies fails with
 * EIO; the connection is marked dead and never used again.  So does a
 * request without a reply within the request timeout (drivers/nbd.h):
 * a server that hangs without closing the socket must not hold requests
 * forever, so its connection is shut down, which fails every command
 * still in flight on it.  The next
 * request reconnects: a few attempts with a short, growing delay, then
 * EIO; while the server stays away each later request makes one attempt
 * after the grown delay (at most NBD_RETRY_MAX_US), and the delay resets
 * once it is back.  While
 * one request reconnects, the others wait for its outcome rather than
 * each trying again.
 *
 * Locking: exp->lock protects the connection slots and the reconnect
 * state, and is never held across I/O or a connect; conn->lock protects
 * the counters of the requests waiting on that connection (completion
 * callbacks run on the dispatcher with libnbd's handle lock held and take
 * only conn->lock; nobody calls libnbd while holding conn->lock).
 */
#include <errno.h>
#include <inttypes.h>
#include <libnbd.h>
#include <poll.h>
#include <pthread.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/block.h"
#include "drivers/nbd.h"
#include "drivers/nbd-uri.h"

#ifndef ROUND_DOWN
#define ROUND_DOWN(n, align) ((n) / (align) * (align))
#define ROUND_UP(n, align) ROUND_DOWN((n) + (align) - 1, align)
#endif

#define NBD_MAX_CONNS 4
#define NBD_CONNECT_TIMEOUT_MS 5000
#define NBD_RECONNECT_TRIES 3
#define NBD_RETRY_MIN_US (20 * 1000)
#define NBD_RETRY_MAX_US (500 * 1000)
#define NBD_DEFAULT_MAX_REQUEST (32u << 20)   /* the protocol's default */
#define NBD_MAX_STATUS_REQUEST (1u << 30)
#define NBD_MAX_PREFERRED_CLUSTER (64u * 1024)

/* The request timeout (ms, 0: none); set at startup, read atomically. */
static uint64_t nbd_request_timeout_ms = NBD_DEFAULT_REQUEST_TIMEOUT_MS;

void nbd_set_request_timeout_ms(uint64_t timeout_ms)
{
    __atomic_store_n(&nbd_request_timeout_ms, timeout_ms, __ATOMIC_RELAXED);
}

static uint64_t request_timeout_ms(void)
{
    return __atomic_load_n(&nbd_request_timeout_ms, __ATOMIC_RELAXED);
}

/* A connection attempt's bound: the request timeout, at most
 * NBD_CONNECT_TIMEOUT_MS. */
static uint64_t connect_timeout_ms(void)
{
    uint64_t timeout = request_timeout_ms();

    return timeout ? MIN(timeout, NBD_CONNECT_TIMEOUT_MS)
                   : NBD_CONNECT_TIMEOUT_MS;
}

struct nbd_conn {
    struct nbd_handle *h;
    int wake_fd;                /* eventfd: a command queued, or stop */
    pthread_t dispatcher;
    bool dispatching;           /* the dispatcher runs (exp->lock) */
    int refs;                   /* atomic: the slot's + each request's */
    bool dead;                  /* atomic: the handle failed */
    bool stop;                  /* atomic: the dispatcher must return */

    pthread_mutex_t lock;
    pthread_cond_t cond;        /* a command completed, or dead
                                   (CLOCK_MONOTONIC) */
};

struct nbd_export {
    struct nbd_uri uri;
    const char *name;           /* node->filename, for messages */

    /* From the first connection, then read-only. */
    uint64_t export_size;
    uint64_t min_block;         /* >= 1 */
    uint64_t max_request;       /* a multiple of min_block */
    bool can_zero;
    bool can_flush;
    bool has_allocation;        /* base:allocation negotiated */
    unsigned n_conns;

    pthread_mutex_t lock;
    pthread_cond_t cond;        /* a reconnect finished */
    /* Protected by lock: */
    struct nbd_conn *conns[NBD_MAX_CONNS];
    unsigned next_conn;
    bool reconnecting;
    uint64_t failed_rounds;     /* reconnects that gave up */
    int64_t retry_at;           /* monotonic us: no attempt before */
    int64_t retry_delay;        /* us; 0 while the server is there */
    bool outage_logged;

    pthread_mutex_t rmw_lock;   /* unaligned writes */
};

/* One request (all its pieces) waiting on a connection. */
struct nbd_request {
    struct nbd_conn *conn;
    unsigned pending;           /* conn->lock */
    int error;                  /* first positive errno; conn->lock */
    bool status_seen;           /* block status: the first extent */
    uint32_t status_len;
    uint32_t status_flags;
};

/* One piece of a request, so that a command libnbd refused (-1) is told
 * apart from one whose callback ran anyway. */
struct nbd_piece {
    struct nbd_request *req;
    bool completed;             /* conn->lock */
};

/* --- Connections --------------------------------------------------------- */

static bool conn_is_dead(struct nbd_conn *conn)
{
    return __atomic_load_n(&conn->dead, __ATOMIC_ACQUIRE);
}

static void conn_mark_dead(struct nbd_conn *conn)
{
    pthread_mutex_lock(&conn->lock);
    __atomic_store_n(&conn->dead, true, __ATOMIC_RELEASE);
    pthread_cond_broadcast(&conn->cond);
    pthread_mutex_unlock(&conn->lock);
}

static void conn_wake(struct nbd_conn *conn)
{
    uint64_t one = 1;

    (void)!write(conn->wake_fd, &one, sizeof(one));
}

/* Drop a connection whose server stopped answering: shut the socket
 * down, so that the dispatcher sees the end of the stream and libnbd
 * fails every command in flight (their callbacks run with ENOTCONN). */
static void conn_abort(struct nbd_conn *conn)
{
    conn_mark_dead(conn);
    int fd = nbd_aio_get_fd(conn->h);
    if (fd >= 0) {
        (void)shutdown(fd, SHUT_RDWR);
    }
    conn_wake(conn);
}

/* Run the handle's state machine until stopped or the connection dies. */
static void *conn_dispatch(void *opaque)
{
    struct nbd_conn *conn = opaque;

    while (!__atomic_load_n(&conn->stop, __ATOMIC_ACQUIRE)) {
        int fd = nbd_aio_get_fd(conn->h);
        unsigned dir = nbd_aio_get_direction(conn->h);
        if (fd < 0 || nbd_aio_is_dead(conn->h) || nbd_aio_is_closed(conn->h)) {
            break;
        }
        struct pollfd fds[2] = {
            { .fd = fd, .events = ((dir & LIBNBD_AIO_DIRECTION_READ)
                                   ? POLLIN : 0) |
                                  ((dir & LIBNBD_AIO_DIRECTION_WRITE)
                                   ? POLLOUT : 0) },
            { .fd = conn->wake_fd, .events = POLLIN },
        };
        if (poll(fds, 2, -1) < 0) {
            continue;           /* EINTR */
        }
        if (fds[1].revents & POLLIN) {
            uint64_t count;
            (void)!read(conn->wake_fd, &count, sizeof(count));
        }
        int ret = 0;
        short ev = fds[0].revents;
        if ((dir & LIBNBD_AIO_DIRECTION_READ) &&
            (ev & (POLLIN | POLLHUP | POLLERR))) {
            ret = nbd_aio_notify_read(conn->h);
        } else if ((dir & LIBNBD_AIO_DIRECTION_WRITE) &&
                   (ev & (POLLOUT | POLLHUP | POLLERR))) {
            ret = nbd_aio_notify_write(conn->h);
        }
        if (ret < 0) {
            break;
        }
    }
    if (!__atomic_load_n(&conn->stop, __ATOMIC_ACQUIRE)) {
        conn_mark_dead(conn);
    }
    return NULL;
}

/* Connect h as uri says, within connect_timeout_ms().  Errors: ENOENT
 * for a missing socket or export, EIO for anything else. */
static bool handle_connect(struct nbd_handle *h, const struct nbd_uri *uri,
                           const char *name, GError **errp)
{
    int ret;

    if (nbd_set_export_name(h, uri->export) < 0 ||
        nbd_add_meta_context(h, LIBNBD_CONTEXT_BASE_ALLOCATION) < 0) {
        goto fail;
    }
    ret = uri->transport == NBD_URI_UNIX
          ? nbd_aio_connect_unix(h, uri->socket)
          : nbd_aio_connect_tcp(h, uri->host, uri->port);
    uint64_t timeout_ms = connect_timeout_ms();
    int64_t deadline = g_get_monotonic_time() + (int64_t)timeout_ms * 1000;
    while (ret == 0 && nbd_aio_is_connecting(h)) {
        int64_t left = deadline - g_get_monotonic_time();
        if (left <= 0) {
            g_set_error(errp, CHAINFS_ERROR, EIO,
                        "%s: cannot connect: timed out after %" PRIu64 " ms",
                        name, timeout_ms);
            return false;
        }
        ret = nbd_poll(h, (int)MIN(left / 1000 + 1, 1000));
        ret = ret < 0 ? -1 : 0;
    }
    if (ret == 0 && nbd_aio_is_ready(h)) {
        return true;
    }
    if (ret == 0) {
        g_set_error(errp, CHAINFS_ERROR, EIO,
                    "%s: cannot connect: the server closed the connection",
                    name);
        return false;
    }

fail:;
    int err = nbd_get_errno();
    g_set_error(errp, CHAINFS_ERROR, err == ENOENT ? ENOENT : EIO,
                "%s: cannot connect: %s", name, nbd_get_error());
    return false;
}

static void conn_free(struct nbd_conn *conn)
{
    if (conn->h) {
        nbd_close(conn->h);
    }
    if (conn->wake_fd >= 0) {
        close(conn->wake_fd);
    }
    pthread_cond_destroy(&conn->cond);
    pthread_mutex_destroy(&conn->lock);
    g_free(conn);
}

/* A new connection with its dispatcher running (one reference). */
static struct nbd_conn *conn_open(const struct nbd_uri *uri, const char *name,
                                  GError **errp)
{
    struct nbd_conn *conn = g_new0(struct nbd_conn, 1);
    pthread_condattr_t attr;

    pthread_mutex_init(&conn->lock, NULL);
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&conn->cond, &attr);
    pthread_condattr_destroy(&attr);
    conn->refs = 1;
    conn->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    conn->h = nbd_create();
    if (conn->wake_fd < 0 || !conn->h) {
        g_set_error(errp, CHAINFS_ERROR, EIO, "%s: cannot connect: %s",
                    name, conn->h ? g_strerror(errno) : nbd_get_error());
        conn_free(conn);
        return NULL;
    }
    if (!handle_connect(conn->h, uri, name, errp)) {
        conn_free(conn);
        return NULL;
    }
    return conn;
}

/* Start conn's dispatcher for its first request (not at connect: the
 * daemon forks into the background after opening its disks, and threads
 * do not survive a fork).  Called with exp->lock held.  Returns 0 or
 * -EIO. */
static int conn_start_locked(struct nbd_conn *conn)
{
    if (conn->dispatching) {
        return 0;
    }
    if (pthread_create(&conn->dispatcher, NULL, conn_dispatch, conn) != 0) {
        return -EIO;
    }
    conn->dispatching = true;
    return 0;
}

static void conn_ref(struct nbd_conn *conn)
{
    __atomic_add_fetch(&conn->refs, 1, __ATOMIC_RELAXED);
}

/* The last reference stops the dispatcher, says goodbye to the server if
 * the connection is alive, and closes it. */
static void conn_unref(struct nbd_conn *conn)
{
    if (!conn || __atomic_sub_fetch(&conn->refs, 1, __ATOMIC_ACQ_REL) > 0) {
        return;
    }
    __atomic_store_n(&conn->stop, true, __ATOMIC_RELEASE);
    if (conn->dispatching) {
        conn_wake(conn);
        pthread_join(conn->dispatcher, NULL);
    }
    if (!conn_is_dead(conn) && nbd_aio_is_ready(conn->h)) {
        (void)nbd_shutdown(conn->h, 0);
    }
    conn_free(conn);
}

/* --- Reconnecting -------------------------------------------------------- */

/* Replace the connection in slot: a few attempts, waiting for retry_at
 * before each.  Called with exp->lock held and reconnecting set; drops
 * the lock while it sleeps and connects. */
static int reconnect_locked(struct nbd_export *exp, unsigned slot)
{
    /* A few quick attempts right after a drop (a server restarting); once
     * a round has failed, one attempt per request, each after the grown
     * delay, so that I/O during an outage fails within a bounded time. */
    int tries = exp->retry_delay == 0 ? NBD_RECONNECT_TRIES : 1;
    /* No new attempt once one connect timeout has passed: a server that
     * accepts and then hangs costs one attempt, not several. */
    int64_t round_end = g_get_monotonic_time() +
                        (int64_t)connect_timeout_ms() * 1000;

    for (int attempt = 0;
         attempt < tries &&
         (attempt == 0 || g_get_monotonic_time() < round_end);
         attempt++) {
        int64_t now = g_get_monotonic_time();
        struct nbd_conn *old = exp->conns[slot];

        exp->conns[slot] = NULL;
        pthread_mutex_unlock(&exp->lock);
        conn_unref(old);
        if (exp->retry_at > now) {
            g_usleep(exp->retry_at - now);
        }
        GError *error = NULL;
        struct nbd_conn *conn = conn_open(&exp->uri, exp->name, &error);
        if (conn && nbd_get_size(conn->h) < (int64_t)exp->export_size) {
            g_set_error(&error, CHAINFS_ERROR, EIO,
                        "%s: the export shrank to %" PRId64 " bytes", exp->name,
                        nbd_get_size(conn->h));
            conn_unref(conn);
            conn = NULL;
        }
        pthread_mutex_lock(&exp->lock);
        if (conn) {
            exp->conns[slot] = conn;
            exp->retry_delay = 0;
            exp->retry_at = 0;
            if (exp->outage_logged) {
                g_message("%s: reconnected", exp->name);
                exp->outage_logged = false;
            }
            return 0;
        }
        if (!exp->outage_logged) {
            g_warning("%s", error->message);
            exp->outage_logged = true;
        }
        g_error_free(error);
        exp->retry_delay = CLAMP(exp->retry_delay * 2, NBD_RETRY_MIN_US,
                                 NBD_RETRY_MAX_US);
        exp->retry_at = g_get_monotonic_time() + exp->retry_delay;
    }
    exp->failed_rounds++;
    return -EIO;
}

/* A live connection for one request (a reference the caller drops), or
 * -EIO when the server cannot be reached. */
static int export_get_conn(struct nbd_export *exp, struct nbd_conn **connp)
{
    int ret = 0;

    pthread_mutex_lock(&exp->lock);
    unsigned slot = exp->next_conn++ % exp->n_conns;
    for (;;) {
        struct nbd_conn *conn = exp->conns[slot];
        if (conn && !conn_is_dead(conn)) {
            ret = conn_start_locked(conn);
            if (ret == 0) {
                conn_ref(conn);
                *connp = conn;
            }
            pthread_mutex_unlock(&exp->lock);
            return ret;
        }
        if (!exp->reconnecting) {
            break;
        }
        /* Someone is trying already: share its outcome. */
        uint64_t failed = exp->failed_rounds;
        while (exp->reconnecting) {
            pthread_cond_wait(&exp->cond, &exp->lock);
        }
        if (exp->failed_rounds != failed) {
            pthread_mutex_unlock(&exp->lock);
            return -EIO;
        }
    }
    exp->reconnecting = true;
    ret = reconnect_locked(exp, slot);
    exp->reconnecting = false;
    pthread_cond_broadcast(&exp->cond);
    if (ret == 0) {
        ret = conn_start_locked(exp->conns[slot]);
    }
    if (ret == 0) {
        conn_ref(exp->conns[slot]);
        *connp = exp->conns[slot];
    }
    pthread_mutex_unlock(&exp->lock);
    return ret;
}

/* --- Requests ------------------------------------------------------------ */

static int piece_done(void *opaque, int *error)
{
    struct nbd_piece *piece = opaque;
    struct nbd_request *req = piece->req;

    pthread_mutex_lock(&req->conn->lock);
    if (*error != 0 && req->error == 0) {
        req->error = *error;
    }
    piece->completed = true;
    req->pending--;
    pthread_cond_broadcast(&req->conn->cond);
    pthread_mutex_unlock(&req->conn->lock);
    return 1;                   /* retire the command */
}

static int status_extent(void *opaque, const char *metacontext,
                         uint64_t offset, uint32_t *entries,
                         size_t nr_entries, int *error)
{
    struct nbd_piece *piece = opaque;
    struct nbd_request *req = piece->req;

    (void)offset;
    (void)error;
    /* Ordered before piece_done, which publishes it under conn->lock. */
    if (!req->status_seen && nr_entries >= 2 &&
        strcmp(metacontext, LIBNBD_CONTEXT_BASE_ALLOCATION) == 0) {
        req->status_seen = true;
        req->status_len = entries[0];
        req->status_flags = entries[1];
    }
    return 0;
}

enum nbd_op {
    NBD_OP_READ,
    NBD_OP_WRITE,
    NBD_OP_ZERO,
    NBD_OP_FLUSH,
    NBD_OP_STATUS,
};

/* Queue one command; returns libnbd's cookie or -1. */
static int64_t issue(struct nbd_conn *conn, enum nbd_op op, uint64_t offset,
                     uint64_t len, void *buf, uint32_t flags,
                     struct nbd_piece *piece)
{
    nbd_completion_callback done = { .callback = piece_done,
                                     .user_data = piece };

    switch (op) {
    case NBD_OP_READ:
        return nbd_aio_pread(conn->h, buf, len, offset, done, 0);
    case NBD_OP_WRITE:
        return nbd_aio_pwrite(conn->h, buf, len, offset, done, 0);
    case NBD_OP_ZERO:
        return nbd_aio_zero(conn->h, len, offset, done, flags);
    case NBD_OP_FLUSH:
        return nbd_aio_flush(conn->h, done, 0);
    case NBD_OP_STATUS: {
        nbd_extent_callback extent = { .callback = status_extent,
                                       .user_data = piece };
        return nbd_aio_block_status(conn->h, len, offset, extent, done, 0);
    }
    }
    return -1;
}

/* Wait until every piece of req completed.  Past timeout_ms (0: never)
 * the connection is aborted, which completes the rest with an error;
 * returns whether that happened.  Called with conn->lock held. */
static bool wait_pieces_locked(struct nbd_conn *conn, struct nbd_request *req,
                               uint64_t timeout_ms)
{
    struct timespec deadline;
    bool timed_out = false;

    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += timeout_ms / 1000;
    deadline.tv_nsec += (timeout_ms % 1000) * 1000000;
    if (deadline.tv_nsec >= 1000000000) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000;
    }
    while (req->pending > 0) {
        if (timeout_ms == 0 || timed_out) {
            pthread_cond_wait(&conn->cond, &conn->lock);
            continue;
        }
        if (pthread_cond_timedwait(&conn->cond, &conn->lock,
                                   &deadline) == ETIMEDOUT &&
            req->pending > 0) {
            timed_out = true;
            pthread_mutex_unlock(&conn->lock);
            conn_abort(conn);
            pthread_mutex_lock(&conn->lock);
        }
    }
    return timed_out;
}

/* Run op over [offset, offset + len) on conn, split at piece_max, every
 * piece in flight at once; wait for all, for at most the request timeout
 * (*timed_out says whether it passed).  Returns 0 or a negative errno:
 * the server's, or EIO when the connection died or timed out. */
static int conn_run(struct nbd_conn *conn, enum nbd_op op, uint64_t offset,
                    uint64_t len, uint8_t *buf, uint32_t flags,
                    uint64_t piece_max, struct nbd_request *req,
                    bool *timed_out)
{
    size_t n = op == NBD_OP_FLUSH ? 1 : (len + piece_max - 1) / piece_max;
    g_autofree struct nbd_piece *pieces = g_new0(struct nbd_piece, n);

    req->conn = conn;
    for (size_t i = 0; i < n; i++) {
        uint64_t at = i * piece_max;
        uint64_t count = MIN(piece_max, len - at);

        pieces[i].req = req;
        pthread_mutex_lock(&conn->lock);
        req->pending++;
        pthread_mutex_unlock(&conn->lock);
        int64_t cookie = issue(conn, op, offset + at, count,
                               buf ? buf + at : NULL, flags, &pieces[i]);
        if (cookie < 0) {
            int err = nbd_get_errno();
            pthread_mutex_lock(&conn->lock);
            if (!pieces[i].completed) {
                req->pending--;
                if (req->error == 0) {
                    req->error = err ? err : EIO;
                }
            }
            pthread_mutex_unlock(&conn->lock);
            break;
        }
    }
    conn_wake(conn);

    pthread_mutex_lock(&conn->lock);
    *timed_out = wait_pieces_locked(conn, req, request_timeout_ms());
    int error = req->error;
    pthread_mutex_unlock(&conn->lock);
    if (*timed_out) {
        return -EIO;
    }
    if (error == 0) {
        return 0;
    }
    if (conn_is_dead(conn) || nbd_aio_is_dead(conn->h) ||
        nbd_aio_is_closed(conn->h) || error == ENOTCONN) {
        conn_mark_dead(conn);
        return -EIO;            /* the connection dropped */
    }
    return -error;
}

/* Run op on a live connection (reconnecting if needed). */
static int export_run(struct nbd_export *exp, enum nbd_op op, uint64_t offset,
                      uint64_t len, void *buf, uint32_t flags,
                      struct nbd_request *req)
{
    struct nbd_conn *conn;
    uint64_t piece_max = op == NBD_OP_STATUS ? NBD_MAX_STATUS_REQUEST
                                             : exp->max_request;
    int ret = export_get_conn(exp, &conn);

    if (ret < 0) {
        return ret;
    }
    bool timed_out = false;
    ret = conn_run(conn, op, offset, len, buf, flags, piece_max, req,
                   &timed_out);
    if (ret == -EIO && conn_is_dead(conn)) {
        pthread_mutex_lock(&exp->lock);
        if (!exp->outage_logged) {
            if (timed_out) {
                g_warning("%s: no reply within %" PRIu64 " ms: dropping "
                          "the connection", exp->name, request_timeout_ms());
            } else {
                g_warning("%s: connection lost", exp->name);
            }
            exp->outage_logged = true;
        }
        pthread_mutex_unlock(&exp->lock);
    }
    conn_unref(conn);
    return ret;
}

/* --- Alignment ----------------------------------------------------------- */

/* Whether [offset, offset + len) is aligned to the minimum block size. */
static bool is_aligned(const struct nbd_export *exp, uint64_t offset,
                       uint64_t len)
{
    return offset % exp->min_block == 0 && len % exp->min_block == 0;
}

/* Read the blocks covering [offset, offset + len) into a bounce buffer. */
static int read_unaligned(struct nbd_export *exp, uint64_t offset,
                          uint64_t len, uint8_t *buf)
{
    uint64_t start = ROUND_DOWN(offset, exp->min_block);
    uint64_t end = MIN(ROUND_UP(offset + len, exp->min_block),
                       exp->export_size);
    g_autofree uint8_t *bounce = g_malloc(end - start);
    struct nbd_request req = { 0 };
    int ret = export_run(exp, NBD_OP_READ, start, end - start, bounce, 0,
                         &req);

    if (ret == 0) {
        memcpy(buf, bounce + (offset - start), len);
    }
    return ret;
}

/* Read-modify-write: data (NULL: zeros) into the covering blocks. */
static int write_unaligned(struct nbd_export *exp, uint64_t offset,
                           uint64_t len, const uint8_t *data)
{
    uint64_t start = ROUND_DOWN(offset, exp->min_block);
    uint64_t end = MIN(ROUND_UP(offset + len, exp->min_block),
                       exp->export_size);
    g_autofree uint8_t *bounce = g_malloc(end - start);
    struct nbd_request req = { 0 };

    pthread_mutex_lock(&exp->rmw_lock);
    int ret = export_run(exp, NBD_OP_READ, start, end - start, bounce, 0,
                         &req);
    if (ret == 0) {
        if (data) {
            memcpy(bounce + (offset - start), data, len);
        } else {
            memset(bounce + (offset - start), 0, len);
        }
        req = (struct nbd_request){ 0 };
        ret = export_run(exp, NBD_OP_WRITE, start, end - start, bounce, 0,
                         &req);
    }
    pthread_mutex_unlock(&exp->rmw_lock);
    return ret;
}

/* --- Driver callbacks ---------------------------------------------------- */

static bool nbd_node_handles_uri(const char *uri)
{
    return nbd_uri_scheme_known(uri);
}

static bool nbd_node_check_uri(const char *uri, char **local_path,
                               GError **errp)
{
    struct nbd_uri parsed;

    if (!nbd_uri_parse(uri, &parsed, errp)) {
        return false;
    }
    *local_path = g_steal_pointer(&parsed.socket);
    nbd_uri_clear(&parsed);
    return true;
}

/* Take the export's size and limits from the first connection. */
static bool export_learn(struct nbd_export *exp, struct block_node *node,
                         struct nbd_handle *h, GError **errp)
{
    int64_t size = nbd_get_size(h);
    int64_t min = nbd_get_block_size(h, LIBNBD_SIZE_MINIMUM);
    int64_t pref = nbd_get_block_size(h, LIBNBD_SIZE_PREFERRED);
    int64_t max = nbd_get_block_size(h, LIBNBD_SIZE_MAXIMUM);

    if (size < 0) {
        g_set_error(errp, CHAINFS_ERROR, EIO, "%s: cannot get the size: %s",
                    exp->name, nbd_get_error());
        return false;
    }
    if (!node->read_only && nbd_is_read_only(h) == 1) {
        g_set_error(errp, CHAINFS_ERROR, EROFS,
                    "%s: the export is read-only (use read-only=on)",
                    exp->name);
        return false;
    }
    exp->export_size = size;
    exp->min_block = min > 0 ? (uint64_t)min : 1;
    exp->max_request = max > 0 ? MIN((uint64_t)max, NBD_DEFAULT_MAX_REQUEST)
                               : NBD_DEFAULT_MAX_REQUEST;
    exp->max_request = MAX(ROUND_DOWN(exp->max_request, exp->min_block),
                           exp->min_block);
    exp->can_zero = nbd_can_zero(h) == 1;
    exp->can_flush = nbd_can_flush(h) == 1;
    exp->has_allocation =
        nbd_can_meta_context(h, LIBNBD_CONTEXT_BASE_ALLOCATION) == 1;
    exp->n_conns = nbd_can_multi_conn(h) == 1 ? NBD_MAX_CONNS : 1;
    node->size = exp->export_size;
    /* The preferred block size as the allocation unit, so that jobs cut
     * their zero detection there (kept small: it is a hint). */
    if (pref > 0 && (uint64_t)pref <= NBD_MAX_PREFERRED_CLUSTER &&
        (pref & (pref - 1)) == 0) {
        node->cluster_size = pref;
    }
    return true;
}

static void export_free(struct nbd_export *exp)
{
    for (unsigned i = 0; i < NBD_MAX_CONNS; i++) {
        conn_unref(exp->conns[i]);
    }
    nbd_uri_clear(&exp->uri);
    pthread_mutex_destroy(&exp->rmw_lock);
    pthread_cond_destroy(&exp->cond);
    pthread_mutex_destroy(&exp->lock);
    g_free(exp);
}

static bool nbd_node_open(struct block_node *node, GError **errp)
{
    struct nbd_export *exp = g_new0(struct nbd_export, 1);

    pthread_mutex_init(&exp->lock, NULL);
    pthread_cond_init(&exp->cond, NULL);
    pthread_mutex_init(&exp->rmw_lock, NULL);
    exp->name = node->filename;
    if (!nbd_uri_parse(node->filename, &exp->uri, errp)) {
        export_free(exp);
        return false;
    }
    exp->conns[0] = conn_open(&exp->uri, exp->name, errp);
    if (!exp->conns[0] || !export_learn(exp, node, exp->conns[0]->h, errp)) {
        export_free(exp);
        return false;
    }
    node->opaque = exp;
    return true;
}

static int nbd_node_flush(struct block_node *node)
{
    struct nbd_export *exp = node->opaque;
    struct nbd_request req = { 0 };

    if (!exp->can_flush || node->read_only) {
        return 0;
    }
    /* With multi-conn, a flush on one connection covers them all. */
    return export_run(exp, NBD_OP_FLUSH, 0, 0, NULL, 0, &req);
}

static int nbd_node_close(struct block_node *node)
{
    struct nbd_export *exp = node->opaque;
    int ret = 0;

    if (exp) {
        ret = nbd_node_flush(node);
        export_free(exp);
        node->opaque = NULL;
    }
    return ret;
}

static int nbd_node_read(struct block_node *node, uint64_t offset, uint64_t len,
                    void *buf)
{
    struct nbd_export *exp = node->opaque;
    struct nbd_request req = { 0 };

    if (len == 0) {
        return 0;
    }
    if (!is_aligned(exp, offset, len)) {
        return read_unaligned(exp, offset, len, buf);
    }
    return export_run(exp, NBD_OP_READ, offset, len, buf, 0, &req);
}

static int nbd_node_write(struct block_node *node, uint64_t offset, uint64_t len,
                     const void *buf)
{
    struct nbd_export *exp = node->opaque;
    struct nbd_request req = { 0 };

    if (len == 0) {
        return 0;
    }
    if (!is_aligned(exp, offset, len)) {
        return write_unaligned(exp, offset, len, buf);
    }
    return export_run(exp, NBD_OP_WRITE, offset, len, (void *)buf, 0, &req);
}

/* Zero buffers, for servers without NBD_CMD_WRITE_ZEROES. */
static int write_zero_buffers(struct nbd_export *exp, uint64_t offset,
                              uint64_t len)
{
    uint64_t chunk = MIN(len, exp->max_request);
    g_autofree uint8_t *zeros = g_malloc0(chunk);

    while (len > 0) {
        struct nbd_request req = { 0 };
        uint64_t n = MIN(len, chunk);
        int ret = export_run(exp, NBD_OP_WRITE, offset, n, zeros, 0, &req);
        if (ret < 0) {
            return ret;
        }
        offset += n;
        len -= n;
    }
    return 0;
}

/* NBD_CMD_WRITE_ZEROES (never trim: it is advisory), with NO_HOLE unless
 * the caller allows the space to go; unaligned edges and servers without
 * it get zero buffers. */
static int nbd_node_write_zeroes(struct block_node *node, uint64_t offset,
                            uint64_t len, int flags)
{
    struct nbd_export *exp = node->opaque;
    uint64_t start = ROUND_UP(offset, exp->min_block);
    uint64_t end = ROUND_DOWN(offset + len, exp->min_block);
    int ret = 0;

    if (len == 0) {
        return 0;
    }
    if (start >= end) {
        return write_unaligned(exp, offset, len, NULL);
    }
    if (offset < start) {
        ret = write_unaligned(exp, offset, start - offset, NULL);
    }
    if (ret == 0 && end < offset + len) {
        ret = write_unaligned(exp, end, offset + len - end, NULL);
    }
    if (ret < 0) {
        return ret;
    }
    if (!exp->can_zero) {
        return write_zero_buffers(exp, start, end - start);
    }
    struct nbd_request req = { 0 };
    uint32_t nbd_flags = (flags & BLOCK_ZERO_UNMAP) ? 0
                                                    : LIBNBD_CMD_FLAG_NO_HOLE;
    return export_run(exp, NBD_OP_ZERO, start, end - start, NULL, nbd_flags,
                      &req);
}

/* base:allocation's first extent; everything is data without it. */
static int nbd_node_block_status(struct block_node *node, uint64_t offset,
                            uint64_t len, uint64_t *pnum)
{
    struct nbd_export *exp = node->opaque;
    const int data = BLOCK_STATUS_ALLOCATED | BLOCK_STATUS_DATA;
    struct nbd_request req = { 0 };

    *pnum = len;
    if (!exp->has_allocation || len == 0) {
        return data;
    }
    if (offset % exp->min_block != 0) {
        *pnum = MIN(len, exp->min_block - offset % exp->min_block);
        return data;
    }
    uint64_t count = MIN(MIN(len, NBD_MAX_STATUS_REQUEST),
                         exp->export_size - offset);
    count = MIN(ROUND_UP(count, exp->min_block), exp->export_size - offset);
    int ret = export_run(exp, NBD_OP_STATUS, offset, count, NULL, 0, &req);
    if (ret < 0) {
        return ret;
    }
    if (!req.status_seen || req.status_len == 0) {
        return data;
    }
    *pnum = MIN(len, req.status_len);
    return (req.status_flags & LIBNBD_STATE_ZERO)
           ? BLOCK_STATUS_ALLOCATED | BLOCK_STATUS_ZERO : data;
}

const struct block_driver nbd_driver = {
    .format_name = "nbd",
    .probe = NULL,              /* a URI names it; never probed */
    .handles_uri = nbd_node_handles_uri,
    .check_uri = nbd_node_check_uri,
    .open = nbd_node_open,
    .close = nbd_node_close,
    .read = nbd_node_read,
    .write = nbd_node_write,
    .write_zeroes = nbd_node_write_zeroes,
    .flush = nbd_node_flush,
    .block_status = nbd_node_block_status,
};
