/* chainfs: the fault format, a layer that makes chosen requests fail.
 *
 * Like QEMU's blkdebug, it wraps a real image and forwards every request
 * to it, except those that a rule says must fail with a given errno.  The
 * file given to chainfs is a small config file (GKeyFile), so nothing new
 * is needed on the command line:
 *
 *     chainfs -d vm=/img/faults.conf,format=fault MNT
 *
 *     [image]
 *     file=top.qcow2      # relative names: against the config's directory
 *     format=qcow2        # optional; probed (qcow2, else raw) when absent
 *
 *     [rule full-disk]    # rules are tried in file order
 *     op=write,zeroes     # read, write, zeroes, flush, status or any
 *     errno=ENOSPC        # EIO (default), ENOSPC, EPERM, ... or a number
 *     offset=1M           # with len: the byte range a request must
 *     len=64K             # overlap (default: every request)
 *     after=10            # let the first 10 matching requests pass (0)
 *     count=1             # then fail this many, 0 = forever (0)
 *
 * A rule counts each request that matches it and reaches it; the first
 * rule that fires fails the request before anything is forwarded, so a
 * failed write changes nothing.  A flush matches only rules without a
 * range.  The config file is re-read when it changes (checked on every
 * request: write the new version elsewhere and rename it over the old
 * one); the rules and their counters then start afresh, and a config that
 * does not parse keeps the old rules.  [image] is read only at open.
 *
 * The wrapped image's backing chain becomes the fault node's chain: the
 * fault node records the image's backing file (resolved to an absolute
 * path) as its own, chain_open opens the layers below it, and .chains
 * lists the config file at depth 0 with format "fault" standing for the
 * image.  The wrapped node reads its backing through node->backing, which
 * is copied from the fault node's whenever the latter changes (that only
 * happens while the disk is drained).  Never probed: probe is NULL.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/block.h"
#include "core/chain.h"

/* Request kinds a rule can match. */
enum {
    FAULT_OP_READ   = 1 << 0,
    FAULT_OP_WRITE  = 1 << 1,
    FAULT_OP_ZEROES = 1 << 2, /* write_zeroes: zero-range and discard */
    FAULT_OP_FLUSH  = 1 << 3,
    FAULT_OP_STATUS = 1 << 4, /* block_status: SEEK_DATA, st_blocks, ... */
    FAULT_OP_ANY    = (1 << 5) - 1,
};

/* A config file this large is a mistake. */
#define FAULT_CONFIG_MAX_BYTES (1 << 20)

struct fault_rule {
    unsigned ops;       /* FAULT_OP_* mask */
    int error;          /* positive errno returned to the caller */
    bool ranged;        /* false: matches every offset (and flushes) */
    uint64_t offset;
    uint64_t len;
    uint64_t after;     /* matching requests to let through first */
    uint64_t count;     /* failures before the rule retires; 0: forever */
    uint64_t matched;   /* requests seen that matched */
    uint64_t failed;    /* requests failed so far */
};

/* What identifies one version of the config file. */
struct fault_stamp {
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtime;
    struct timespec ctime;
};

struct fault_state {
    struct block_node *inner;   /* the wrapped image (one layer) */

    pthread_mutex_t lock;       /* protects everything below */
    GArray *rules;              /* struct fault_rule */
    struct fault_stamp stamp;   /* the config version last parsed */
    struct block_node *synced_backing; /* what inner->backing was set to */
};

static const struct {
    const char *name;
    int value;
} fault_errnos[] = {
    { "EIO", EIO },       { "ENOSPC", ENOSPC }, { "EPERM", EPERM },
    { "EACCES", EACCES }, { "EROFS", EROFS },   { "EDQUOT", EDQUOT },
    { "EFBIG", EFBIG },   { "ENOMEM", ENOMEM }, { "EINVAL", EINVAL },
    { "EAGAIN", EAGAIN }, { "ETIMEDOUT", ETIMEDOUT },
    { "ENOTSUP", ENOTSUP },
};

static const struct {
    const char *name;
    unsigned mask;
} fault_ops[] = {
    { "read", FAULT_OP_READ },     { "write", FAULT_OP_WRITE },
    { "zeroes", FAULT_OP_ZEROES }, { "flush", FAULT_OP_FLUSH },
    { "status", FAULT_OP_STATUS }, { "any", FAULT_OP_ANY },
};

/* Parse a size: plain bytes or a K, M, G, T suffix (powers of 1024). */
static bool parse_size(const char *text, uint64_t *value)
{
    char *end;

    if (!g_ascii_isdigit(text[0])) {
        return false;
    }
    errno = 0;
    uint64_t n = g_ascii_strtoull(text, &end, 10);
    if (errno != 0) {
        return false;
    }
    unsigned shift = 0;
    switch (g_ascii_toupper(*end)) {
    case '\0': break;
    case 'K': shift = 10; end++; break;
    case 'M': shift = 20; end++; break;
    case 'G': shift = 30; end++; break;
    case 'T': shift = 40; end++; break;
    default: return false;
    }
    if (*end != '\0' || (shift && n > (UINT64_MAX >> shift))) {
        return false;
    }
    *value = n << shift;
    return true;
}

static bool parse_errno(const char *text, int *value)
{
    for (unsigned i = 0; i < G_N_ELEMENTS(fault_errnos); i++) {
        if (g_ascii_strcasecmp(text, fault_errnos[i].name) == 0) {
            *value = fault_errnos[i].value;
            return true;
        }
    }
    uint64_t n;
    if (parse_size(text, &n) && g_ascii_isdigit(text[strlen(text) - 1]) &&
        n > 0 && n < 4096) {
        *value = (int)n;
        return true;
    }
    return false;
}

/* A rule key's value as a size, or the default when the key is absent. */
static bool rule_size(GKeyFile *kf, const char *group, const char *key,
                      uint64_t fallback, uint64_t *value, bool *present,
                      const char *filename, GError **errp)
{
    g_autofree char *text = g_key_file_get_value(kf, group, key, NULL);
    if (present) {
        *present = text != NULL;
    }
    if (!text) {
        *value = fallback;
        return true;
    }
    g_strstrip(text);
    if (!parse_size(text, value)) {
        g_set_error(errp, CHAINFS_ERROR, EINVAL,
                    "%s: [%s] %s: bad size '%s'", filename, group, key, text);
        return false;
    }
    return true;
}

static bool parse_rule(GKeyFile *kf, const char *group,
                       struct fault_rule *rule, const char *filename,
                       GError **errp)
{
    static const char *const known[] = {
        "op", "errno", "offset", "len", "after", "count", NULL,
    };
    g_auto(GStrv) keys = g_key_file_get_keys(kf, group, NULL, NULL);
    for (unsigned i = 0; keys && keys[i]; i++) {
        if (!g_strv_contains(known, keys[i])) {
            g_set_error(errp, CHAINFS_ERROR, EINVAL,
                        "%s: [%s]: unknown key '%s'", filename, group,
                        keys[i]);
            return false;
        }
    }

    *rule = (struct fault_rule){ .error = EIO };
    g_auto(GStrv) ops = g_key_file_get_string_list(kf, group, "op", NULL,
                                                   NULL);
    if (!ops || !ops[0]) {
        g_set_error(errp, CHAINFS_ERROR, EINVAL,
                    "%s: [%s]: op= is required (read, write, zeroes, flush, "
                    "status or any)", filename, group);
        return false;
    }
    for (unsigned i = 0; ops[i]; i++) {
        g_strstrip(ops[i]);
        unsigned mask = 0;
        for (unsigned j = 0; j < G_N_ELEMENTS(fault_ops); j++) {
            if (strcmp(ops[i], fault_ops[j].name) == 0) {
                mask = fault_ops[j].mask;
            }
        }
        if (!mask) {
            g_set_error(errp, CHAINFS_ERROR, EINVAL,
                        "%s: [%s] op: unknown operation '%s'", filename,
                        group, ops[i]);
            return false;
        }
        rule->ops |= mask;
    }

    g_autofree char *err = g_key_file_get_value(kf, group, "errno", NULL);
    if (err && !parse_errno(g_strstrip(err), &rule->error)) {
        g_set_error(errp, CHAINFS_ERROR, EINVAL,
                    "%s: [%s] errno: unknown error '%s'", filename, group,
                    err);
        return false;
    }

    bool has_offset, has_len;
    if (!rule_size(kf, group, "offset", 0, &rule->offset, &has_offset,
                   filename, errp) ||
        !rule_size(kf, group, "len", 0, &rule->len, &has_len, filename,
                   errp) ||
        !rule_size(kf, group, "after", 0, &rule->after, NULL, filename,
                   errp) ||
        !rule_size(kf, group, "count", 0, &rule->count, NULL, filename,
                   errp)) {
        return false;
    }
    rule->ranged = has_offset || has_len;
    if (rule->ranged && !has_len) {
        rule->len = UINT64_MAX - rule->offset;  /* to the end */
    }
    if (rule->ranged && (rule->len == 0 ||
                         rule->offset > UINT64_MAX - rule->len)) {
        g_set_error(errp, CHAINFS_ERROR, EINVAL,
                    "%s: [%s]: empty or overflowing range", filename, group);
        return false;
    }
    return true;
}

/* [image] takes file= and format= only. */
static bool check_image_keys(GKeyFile *kf, const char *filename,
                             GError **errp)
{
    static const char *const known[] = { "file", "format", NULL };
    g_auto(GStrv) keys = g_key_file_get_keys(kf, "image", NULL, NULL);
    for (unsigned i = 0; keys && keys[i]; i++) {
        if (!g_strv_contains(known, keys[i])) {
            g_set_error(errp, CHAINFS_ERROR, EINVAL,
                        "%s: [image]: unknown key '%s'", filename, keys[i]);
            return false;
        }
    }
    return true;
}

/* Parse a config's text into its rules; *image and *format (may be NULL)
 * receive the [image] keys when those pointers are given. */
static GArray *parse_config(const char *text, size_t len,
                            const char *filename, char **image,
                            char **format, GError **errp)
{
    g_autoptr(GKeyFile) kf = g_key_file_new();
    g_autoptr(GError) err = NULL;

    g_key_file_set_list_separator(kf, ',');
    if (!g_key_file_load_from_data(kf, text, len, G_KEY_FILE_NONE, &err)) {
        g_set_error(errp, CHAINFS_ERROR, EINVAL, "%s: bad fault config: %s",
                    filename, err->message);
        return NULL;
    }
    g_autoptr(GArray) rules = g_array_new(false, false,
                                          sizeof(struct fault_rule));
    g_auto(GStrv) groups = g_key_file_get_groups(kf, NULL);
    bool has_image = false;
    for (unsigned i = 0; groups[i]; i++) {
        if (strcmp(groups[i], "image") == 0) {
            if (!check_image_keys(kf, filename, errp)) {
                return NULL;
            }
            has_image = true;
            continue;
        }
        if (!g_str_has_prefix(groups[i], "rule")) {
            g_set_error(errp, CHAINFS_ERROR, EINVAL,
                        "%s: unknown section [%s] (image or rule NAME)",
                        filename, groups[i]);
            return NULL;
        }
        struct fault_rule rule;
        if (!parse_rule(kf, groups[i], &rule, filename, errp)) {
            return NULL;
        }
        g_array_append_val(rules, rule);
    }
    if (!has_image) {
        g_set_error(errp, CHAINFS_ERROR, EINVAL,
                    "%s: fault config has no [image] section", filename);
        return NULL;
    }
    if (image) {
        *image = g_key_file_get_string(kf, "image", "file", NULL);
        if (!*image || !**image) {
            g_free(*image);
            *image = NULL;
            g_set_error(errp, CHAINFS_ERROR, EINVAL,
                        "%s: [image]: file= is required", filename);
            return NULL;
        }
        *format = g_key_file_get_string(kf, "image", "format", NULL);
    }
    return g_steal_pointer(&rules);
}

static void stamp_of(const struct stat *st, struct fault_stamp *stamp)
{
    *stamp = (struct fault_stamp){
        .dev = st->st_dev, .ino = st->st_ino, .size = st->st_size,
        .mtime = st->st_mtim, .ctime = st->st_ctim,
    };
}

static bool stamp_equal(const struct fault_stamp *a,
                        const struct fault_stamp *b)
{
    return a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
           a->mtime.tv_sec == b->mtime.tv_sec &&
           a->mtime.tv_nsec == b->mtime.tv_nsec &&
           a->ctime.tv_sec == b->ctime.tv_sec &&
           a->ctime.tv_nsec == b->ctime.tv_nsec;
}

/* Read the whole (small) config file from fd. */
static char *read_config(int fd, const char *filename, size_t *len,
                         GError **errp)
{
    struct stat st;
    if (fstat(fd, &st) < 0 || st.st_size > FAULT_CONFIG_MAX_BYTES) {
        g_set_error(errp, CHAINFS_ERROR, EFBIG,
                    "%s: fault config missing or larger than 1 MiB",
                    filename);
        return NULL;
    }
    char *text = g_malloc(st.st_size + 1);
    int ret = host_pread(fd, text, st.st_size, 0);
    if (ret < 0) {
        g_set_error(errp, CHAINFS_ERROR, -ret, "%s: cannot read: %s",
                    filename, g_strerror(-ret));
        g_free(text);
        return NULL;
    }
    text[st.st_size] = '\0';
    *len = st.st_size;
    return text;
}

/* If the config file changed since it was parsed, parse it again and
 * start over with its rules.  Runs without the lock held. */
static void reload_if_changed(struct block_node *node, struct fault_state *s)
{
    struct stat st;
    struct fault_stamp now;

    if (stat(node->filename, &st) < 0) {
        return;     /* mid-rename or removed: keep what we have */
    }
    stamp_of(&st, &now);
    pthread_mutex_lock(&s->lock);
    bool same = stamp_equal(&now, &s->stamp);
    pthread_mutex_unlock(&s->lock);
    if (same) {
        return;
    }

    int fd = open(node->filename, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return;
    }
    size_t len = 0;
    GArray *rules = NULL;
    g_autofree char *text = NULL;
    if (fstat(fd, &st) == 0) {
        stamp_of(&st, &now);
        text = read_config(fd, node->filename, &len, NULL);
    }
    close(fd);
    if (text) {
        rules = parse_config(text, len, node->filename, NULL, NULL, NULL);
    }

    pthread_mutex_lock(&s->lock);
    if (!stamp_equal(&now, &s->stamp)) {
        s->stamp = now;     /* a bad version is not parsed again */
        if (rules) {
            GArray *old = s->rules;
            s->rules = g_steal_pointer(&rules);
            g_array_unref(old);
        }
    }
    pthread_mutex_unlock(&s->lock);
    if (rules) {
        g_array_unref(rules);
    }
}

/* Account one request; returns the negative errno it must fail with, or 0
 * to forward it.  Also hands a changed backing chain to the inner node. */
static int fault_check(struct block_node *node, unsigned op,
                       uint64_t offset, uint64_t len)
{
    struct fault_state *s = node->opaque;
    int ret = 0;

    reload_if_changed(node, s);
    pthread_mutex_lock(&s->lock);
    if (s->synced_backing != node->backing) {
        s->synced_backing = node->backing;
        s->inner->backing = node->backing;
    }
    for (unsigned i = 0; i < s->rules->len; i++) {
        struct fault_rule *rule = &g_array_index(s->rules, struct fault_rule,
                                                 i);
        if (!(rule->ops & op)) {
            continue;
        }
        if (rule->ranged) {
            if (op == FAULT_OP_FLUSH || offset >= rule->offset + rule->len ||
                offset + MAX(len, 1) <= rule->offset) {
                continue;
            }
        }
        rule->matched++;
        if (rule->matched <= rule->after ||
            (rule->count && rule->failed >= rule->count)) {
            continue;
        }
        rule->failed++;
        ret = -rule->error;
        break;
    }
    pthread_mutex_unlock(&s->lock);
    return ret;
}

static bool fault_open(struct block_node *node, GError **errp)
{
    size_t len;
    g_autofree char *text = read_config(node->fd, node->filename, &len,
                                        errp);
    if (!text) {
        return false;
    }
    g_autofree char *image = NULL;
    g_autofree char *format = NULL;
    g_autoptr(GArray) rules = parse_config(text, len, node->filename, &image,
                                           &format, errp);
    if (!rules) {
        return false;
    }
    if (format && strcmp(format, "fault") == 0) {
        g_set_error(errp, CHAINFS_ERROR, EINVAL,
                    "%s: [image]: a fault layer cannot wrap another",
                    node->filename);
        return false;
    }

    g_autofree char *dir = g_path_get_dirname(node->filename);
    g_autofree char *path = g_path_is_absolute(image) ?
        g_strdup(image) : g_build_filename(dir, image, NULL);
    struct block_node *inner = block_node_open(path, format, node->read_only,
                                               errp);
    if (!inner) {
        return false;
    }
    if (inner->backing_name) {
        char *backing = chain_resolve_backing(path, inner->backing_name,
                                              errp);
        if (!backing) {
            block_node_close(inner);
            return false;
        }
        node->backing_name = backing;
        node->backing_format = g_strdup(inner->backing_format);
    }

    struct fault_state *s = g_new0(struct fault_state, 1);
    struct stat st;
    if (fstat(node->fd, &st) == 0) {
        stamp_of(&st, &s->stamp);
    }
    s->inner = inner;
    s->rules = g_steal_pointer(&rules);
    pthread_mutex_init(&s->lock, NULL);
    node->size = inner->size;
    node->opaque = s;
    return true;
}

static int fault_close(struct block_node *node)
{
    struct fault_state *s = node->opaque;
    if (!s) {
        return 0;
    }
    /* The layers below belong to the fault node's chain, not the inner
     * node: chain_close closes them. */
    s->inner->backing = NULL;
    int ret = block_node_close(s->inner);
    g_array_unref(s->rules);
    pthread_mutex_destroy(&s->lock);
    g_free(s);
    node->opaque = NULL;
    return ret;
}

static int fault_read(struct block_node *node, uint64_t offset, uint64_t len,
                      void *buf)
{
    struct fault_state *s = node->opaque;
    int ret = fault_check(node, FAULT_OP_READ, offset, len);
    return ret < 0 ? ret : s->inner->driver->read(s->inner, offset, len, buf);
}

static int fault_write(struct block_node *node, uint64_t offset,
                       uint64_t len, const void *buf)
{
    struct fault_state *s = node->opaque;
    int ret = fault_check(node, FAULT_OP_WRITE, offset, len);
    return ret < 0 ? ret : s->inner->driver->write(s->inner, offset, len,
                                                   buf);
}

static int fault_write_zeroes(struct block_node *node, uint64_t offset,
                              uint64_t len, int flags)
{
    struct fault_state *s = node->opaque;
    int ret = fault_check(node, FAULT_OP_ZEROES, offset, len);
    return ret < 0 ? ret : block_node_write_zeroes(s->inner, offset, len,
                                                   flags);
}

static int fault_flush(struct block_node *node)
{
    struct fault_state *s = node->opaque;
    int ret = fault_check(node, FAULT_OP_FLUSH, 0, 0);
    return ret < 0 ? ret : s->inner->driver->flush(s->inner);
}

static int fault_block_status(struct block_node *node, uint64_t offset,
                              uint64_t len, uint64_t *pnum)
{
    struct fault_state *s = node->opaque;
    int ret = fault_check(node, FAULT_OP_STATUS, offset, len);
    return ret < 0 ? ret : s->inner->driver->block_status(s->inner, offset,
                                                          len, pnum);
}

static bool fault_set_backing(struct block_node *node,
                              const char *backing_name,
                              const char *backing_format, GError **errp)
{
    struct fault_state *s = node->opaque;
    if (!s->inner->driver->set_backing) {
        g_set_error(errp, CHAINFS_ERROR, ENOTSUP,
                    "%s: format %s cannot change its backing file",
                    s->inner->filename, s->inner->driver->format_name);
        return false;
    }
    if (!s->inner->driver->set_backing(s->inner, backing_name,
                                       backing_format, errp)) {
        return false;
    }
    /* As at open: the name as the inner image's directory resolves it. */
    char *resolved = NULL;
    if (s->inner->backing_name) {
        resolved = chain_resolve_backing(s->inner->filename,
                                         s->inner->backing_name, NULL);
    }
    g_free(node->backing_name);
    g_free(node->backing_format);
    node->backing_name = resolved ? resolved
                                  : g_strdup(s->inner->backing_name);
    node->backing_format = g_strdup(s->inner->backing_format);
    return true;
}

static bool fault_grow(struct block_node *node, uint64_t new_size,
                       GError **errp)
{
    struct fault_state *s = node->opaque;
    if (!s->inner->driver->grow) {
        g_set_error(errp, CHAINFS_ERROR, ENOTSUP,
                    "%s: format %s cannot grow", s->inner->filename,
                    s->inner->driver->format_name);
        return false;
    }
    if (!s->inner->driver->grow(s->inner, new_size, errp)) {
        return false;
    }
    node->size = s->inner->size;
    return true;
}

/* The config file was reopened by the core; the wrapped image follows. */
static bool fault_reopen(struct block_node *node, bool read_only,
                         GError **errp)
{
    struct fault_state *s = node->opaque;
    return block_node_reopen(s->inner, read_only, errp);
}

const struct block_driver fault_driver = {
    .format_name = "fault",
    .probe = NULL,      /* only ever chosen by name */
    .open = fault_open,
    .close = fault_close,
    .read = fault_read,
    .write = fault_write,
    .write_zeroes = fault_write_zeroes,
    .flush = fault_flush,
    .block_status = fault_block_status,
    .create = NULL,
    .set_backing = fault_set_backing,
    .grow = fault_grow,
    .reopen = fault_reopen,
};
