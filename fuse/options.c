/* chainfs: command-line parsing (see options.h). */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/block.h"
#include "drivers/nbd.h"
#include "core/chain.h"
#include "options.h"

enum {
    OPT_ALLOW_DIR = 256,
    OPT_ALLOW_REMOTE,
    OPT_NBD_TIMEOUT,
    OPT_THREADS,
    OPT_MAX_CHAIN_DEPTH,
    OPT_VERSION,
    OPT_HELP,
};

static const struct option long_options[] = {
    { "disk",       required_argument, NULL, 'd' },
    { "foreground", no_argument,       NULL, 'f' },
    { "allow-dir",  required_argument, NULL, OPT_ALLOW_DIR },
    { "allow-remote", no_argument,     NULL, OPT_ALLOW_REMOTE },
    { "nbd-timeout", required_argument, NULL, OPT_NBD_TIMEOUT },
    { "threads",    required_argument, NULL, OPT_THREADS },
    { "max-chain-depth", required_argument, NULL, OPT_MAX_CHAIN_DEPTH },
    { "version",    no_argument,       NULL, OPT_VERSION },
    { "help",       no_argument,       NULL, OPT_HELP },
    { NULL, 0, NULL, 0 },
};

/* Leading ':' makes getopt report a missing argument as ':' rather than
 * '?', so the two errors get their own messages. */
static const char short_options[] = ":d:fo:h";

void options_print_help(FILE *out)
{
    fputs(
"Usage: chainfs [OPTIONS] MOUNTPOINT\n"
"Expose qcow2/raw image chains as plain files under MOUNTPOINT.\n"
"\n"
"  -d, --disk NAME=FILE[,format=qcow2|raw|fault][,read-only=on|off]\n"
"                         expose the chain whose top layer is FILE as\n"
"                         MOUNTPOINT/NAME (repeatable; ',,' in FILE is a\n"
"                         literal comma; without format= the top is probed)\n"
"  -d, --disk NAME=URI[,read-only=on|off]\n"
"                         serve an NBD export (nbd://HOST[:PORT]/EXPORT or\n"
"                         nbd+unix:///EXPORT?socket=PATH) as MOUNTPOINT/NAME\n"
"                         (needs --allow-remote)\n"
"  -f, --foreground       stay in the foreground and log to stderr\n"
"  -o OPT[,OPT...]        FUSE mount options (allow_other, ...)\n"
"      --allow-dir DIR    a directory where jobs may create or open files\n"
"                         (repeatable; default: the disks' directories)\n"
"      --allow-remote     accept NBD URIs for --disk and as job targets\n"
"      --nbd-timeout SECONDS\n"
"                         an NBD request without a reply by then fails\n"
"                         with EIO and drops its connection (default 30;\n"
"                         decimals allowed; 0: wait forever)\n"
"      --threads N        worker threads (1-256; default: number of CPUs)\n"
"      --max-chain-depth N\n"
"                         refuse chains of more than N layers (1-1048576;\n"
"                         default 4096); each layer holds one open file\n"
"      --version          print the version and exit\n"
"  -h, --help             print this help and exit\n"
"\n"
"Unmount with 'fusermount3 -u MOUNTPOINT'.  See chainfs(1).\n", out);
}

static void disk_spec_free(gpointer data)
{
    struct disk_spec *spec = data;

    g_free(spec->name);
    g_free(spec->filename);
    g_free(spec->format);
    g_free(spec);
}

bool options_disk_name_valid(const char *name)
{
    if (name[0] == '\0' || name[0] == '.' || strlen(name) > NAME_MAX) {
        return false;
    }
    for (const char *p = name; *p; p++) {
        if (!g_ascii_isalnum(*p) && *p != '.' && *p != '_' && *p != '-') {
            return false;
        }
    }
    return true;
}

/* Copy the value starting at *p up to the next single ',' (",," stands for
 * a literal comma, as in QEMU), and leave *p after that comma or at the
 * terminating NUL. */
static char *take_value(const char **p)
{
    GString *value = g_string_new(NULL);
    const char *s = *p;

    while (*s) {
        if (*s == ',') {
            if (s[1] != ',') {
                s++;
                break;
            }
            s++;
        }
        g_string_append_c(value, *s);
        s++;
    }
    *p = s;
    return g_string_free(value, FALSE);
}

static bool parse_on_off(const char *arg, const char *value, bool *result,
                         GError **errp)
{
    if (strcmp(value, "on") == 0) {
        *result = true;
    } else if (strcmp(value, "off") == 0) {
        *result = false;
    } else {
        g_set_error(errp, CHAINFS_ERROR, EINVAL,
                    "--disk '%s': read-only must be 'on' or 'off', not '%s'",
                    arg, value);
        return false;
    }
    return true;
}

/* Apply one KEY=VALUE sub-option of --disk to spec. */
static bool parse_disk_suboption(struct disk_spec *spec, const char *arg,
                                 const char *item, bool *seen_format,
                                 bool *seen_read_only, GError **errp)
{
    const char *eq = strchr(item, '=');
    g_autofree char *key = eq ? g_strndup(item, eq - item) : g_strdup(item);
    const char *value = eq ? eq + 1 : NULL;

    if (strcmp(key, "format") != 0 && strcmp(key, "read-only") != 0) {
        g_set_error(errp, CHAINFS_ERROR, EINVAL,
                    "--disk '%s': unknown option '%s' (format= or "
                    "read-only=)", arg, key);
        return false;
    }
    if (!value) {
        g_set_error(errp, CHAINFS_ERROR, EINVAL,
                    "--disk '%s': '%s' needs a value", arg, key);
        return false;
    }
    if (strcmp(key, "format") == 0) {
        if (*seen_format) {
            g_set_error(errp, CHAINFS_ERROR, EINVAL,
                        "--disk '%s': format= given twice", arg);
            return false;
        }
        *seen_format = true;
        if (!block_driver_by_name(value)) {
            g_set_error(errp, CHAINFS_ERROR, EINVAL,
                        "--disk '%s': unknown format '%s' (qcow2, raw or "
                        "fault)",
                        arg, value);
            return false;
        }
        spec->format = g_strdup(value);
        return true;
    }
    if (*seen_read_only) {
        g_set_error(errp, CHAINFS_ERROR, EINVAL,
                    "--disk '%s': read-only= given twice", arg);
        return false;
    }
    *seen_read_only = true;
    return parse_on_off(arg, value, &spec->read_only, errp);
}

/* Parse NAME=FILE[,KEY=VALUE...]. */
static struct disk_spec *parse_disk(const char *arg, GError **errp)
{
    struct disk_spec *spec = g_new0(struct disk_spec, 1);
    const char *eq = strchr(arg, '=');
    bool seen_format = false, seen_read_only = false;

    if (!eq) {
        g_set_error(errp, CHAINFS_ERROR, EINVAL,
                    "--disk '%s': expected NAME=FILE", arg);
        goto fail;
    }
    spec->name = g_strndup(arg, eq - arg);
    if (!options_disk_name_valid(spec->name)) {
        g_set_error(errp, CHAINFS_ERROR, EINVAL,
                    "--disk '%s': bad disk name '%s' (letters, digits, "
                    "'.', '_', '-', not starting with '.')", arg, spec->name);
        goto fail;
    }

    const char *p = eq + 1;
    spec->filename = take_value(&p);
    if (spec->filename[0] == '\0') {
        g_set_error(errp, CHAINFS_ERROR, EINVAL,
                    "--disk '%s': missing FILE after '%s='", arg, spec->name);
        goto fail;
    }
    while (*p) {
        g_autofree char *item = take_value(&p);
        if (!parse_disk_suboption(spec, arg, item, &seen_format,
                                  &seen_read_only, errp)) {
            goto fail;
        }
    }
    return spec;

fail:
    disk_spec_free(spec);
    return NULL;
}

static bool add_disk(struct options *opts, const char *arg, GError **errp)
{
    struct disk_spec *spec = parse_disk(arg, errp);

    if (!spec) {
        return false;
    }
    for (guint i = 0; i < opts->disks->len; i++) {
        struct disk_spec *other = g_ptr_array_index(opts->disks, i);
        if (strcmp(other->name, spec->name) == 0) {
            g_set_error(errp, CHAINFS_ERROR, EEXIST,
                        "--disk '%s': disk name '%s' is used twice",
                        arg, spec->name);
            disk_spec_free(spec);
            return false;
        }
    }
    g_ptr_array_add(opts->disks, spec);
    return true;
}

static void add_unique_dir(GPtrArray *dirs, char *canonical)
{
    for (guint i = 0; i < dirs->len; i++) {
        if (strcmp(g_ptr_array_index(dirs, i), canonical) == 0) {
            g_free(canonical);
            return;
        }
    }
    g_ptr_array_add(dirs, canonical);
}

static bool add_allow_dir(struct options *opts, const char *arg,
                          GError **errp)
{
    char *canonical = realpath(arg, NULL);
    struct stat st;

    if (!canonical) {
        g_set_error(errp, CHAINFS_ERROR, errno, "--allow-dir %s: %s",
                    arg, g_strerror(errno));
        return false;
    }
    if (stat(canonical, &st) < 0 || !S_ISDIR(st.st_mode)) {
        g_set_error(errp, CHAINFS_ERROR, ENOTDIR, "--allow-dir %s: %s",
                    arg, g_strerror(ENOTDIR));
        free(canonical);
        return false;
    }
    add_unique_dir(opts->allow_dirs, g_strdup(canonical));
    free(canonical);
    opts->allow_dirs_given = true;
    return true;
}

/* Without --allow-dir, jobs may use the directories holding the disks'
 * images.  An image that cannot be resolved is skipped here: opening it
 * fails later with a better message.  A URI has no directory. */
static void add_default_allow_dirs(struct options *opts)
{
    for (guint i = 0; i < opts->disks->len; i++) {
        struct disk_spec *spec = g_ptr_array_index(opts->disks, i);
        char *canonical = block_name_is_uri(spec->filename)
                          ? NULL : realpath(spec->filename, NULL);
        if (canonical) {
            add_unique_dir(opts->allow_dirs, g_path_get_dirname(canonical));
            free(canonical);
        }
    }
}

/* A --disk naming a URI needs --allow-remote, and the export is the raw
 * disk: no format sits on top. */
static bool check_remote_disks(const struct options *opts, GError **errp)
{
    for (guint i = 0; i < opts->disks->len; i++) {
        struct disk_spec *spec = g_ptr_array_index(opts->disks, i);
        if (!block_name_is_uri(spec->filename)) {
            continue;
        }
        if (!opts->allow_remote) {
            g_set_error(errp, CHAINFS_ERROR, EACCES,
                        "--disk '%s=%s': a URI needs --allow-remote",
                        spec->name, spec->filename);
            return false;
        }
        if (spec->format && strcmp(spec->format, "raw") != 0) {
            g_set_error(errp, CHAINFS_ERROR, EINVAL,
                        "--disk '%s=%s': format '%s' is not supported for a "
                        "URI (the export is the raw disk)", spec->name,
                        spec->filename, spec->format);
            return false;
        }
    }
    return true;
}

static bool parse_threads(struct options *opts, const char *arg,
                          GError **errp)
{
    char *end;
    unsigned long value;

    errno = 0;
    value = strtoul(arg, &end, 10);
    if (!g_ascii_isdigit(arg[0]) || *end != '\0' || errno != 0 ||
        value < 1 || value > OPTIONS_MAX_THREADS) {
        g_set_error(errp, CHAINFS_ERROR, EINVAL,
                    "--threads '%s': expected a number from 1 to %d",
                    arg, OPTIONS_MAX_THREADS);
        return false;
    }
    opts->threads = value;
    return true;
}

/* --nbd-timeout SECONDS: decimal seconds up to a day, 0 for none. */
static bool parse_nbd_timeout(struct options *opts, const char *arg,
                              GError **errp)
{
    char *end;
    double seconds;

    errno = 0;
    seconds = g_ascii_strtod(arg, &end);
    if (!(g_ascii_isdigit(arg[0]) || arg[0] == '.') || *end != '\0' ||
        errno != 0 || !(seconds >= 0 && seconds <= OPTIONS_MAX_NBD_TIMEOUT) ||
        (seconds > 0 && seconds < 0.001)) {
        g_set_error(errp, CHAINFS_ERROR, EINVAL,
                    "--nbd-timeout '%s': expected seconds from 0.001 to %d, "
                    "or 0", arg, OPTIONS_MAX_NBD_TIMEOUT);
        return false;
    }
    opts->nbd_timeout_ms = (uint64_t)(seconds * 1000 + 0.5);
    return true;
}

static bool parse_max_chain_depth(struct options *opts, const char *arg,
                                  GError **errp)
{
    char *end;
    unsigned long value;

    errno = 0;
    value = strtoul(arg, &end, 10);
    if (!g_ascii_isdigit(arg[0]) || *end != '\0' || errno != 0 ||
        value < 1 || value > OPTIONS_MAX_CHAIN_DEPTH) {
        g_set_error(errp, CHAINFS_ERROR, EINVAL,
                    "--max-chain-depth '%s': expected a number from 1 to %d",
                    arg, OPTIONS_MAX_CHAIN_DEPTH);
        return false;
    }
    opts->max_chain_depth = value;
    return true;
}

static void add_fuse_options(struct options *opts, const char *arg)
{
    if (arg[0] == '\0') {
        return;
    }
    if (!opts->fuse_options) {
        opts->fuse_options = g_strdup(arg);
    } else {
        char *joined = g_strconcat(opts->fuse_options, ",", arg, NULL);
        g_free(opts->fuse_options);
        opts->fuse_options = joined;
    }
}

char *options_fuse_option(const struct options *opts, const char *name)
{
    g_auto(GStrv) items = NULL;
    char *value = NULL;
    size_t len = strlen(name);

    if (!opts->fuse_options) {
        return NULL;
    }
    items = g_strsplit(opts->fuse_options, ",", -1);
    for (char **item = items; *item; item++) {
        if (strncmp(*item, name, len) == 0 &&
            ((*item)[len] == '\0' || (*item)[len] == '=')) {
            g_free(value);
            value = g_strdup((*item)[len] ? *item + len + 1 : "");
        }
    }
    return value;
}

bool options_allow_other(const struct options *opts)
{
    g_autofree char *value = options_fuse_option(opts, "allow_other");

    return value != NULL;
}

static unsigned default_threads(void)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);

    if (cpus < 1) {
        return 1;
    }
    return cpus > OPTIONS_MAX_THREADS ? OPTIONS_MAX_THREADS : (unsigned)cpus;
}

static void options_init(struct options *opts)
{
    memset(opts, 0, sizeof(*opts));
    opts->disks = g_ptr_array_new_with_free_func(disk_spec_free);
    opts->allow_dirs = g_ptr_array_new_with_free_func(g_free);
    opts->threads = default_threads();
    opts->nbd_timeout_ms = NBD_DEFAULT_REQUEST_TIMEOUT_MS;
    opts->max_chain_depth = CHAIN_DEFAULT_MAX_DEPTH;
}

void options_clear(struct options *opts)
{
    if (opts->disks) {
        g_ptr_array_unref(opts->disks);
    }
    if (opts->allow_dirs) {
        g_ptr_array_unref(opts->allow_dirs);
    }
    g_free(opts->fuse_options);
    g_free(opts->mountpoint);
    memset(opts, 0, sizeof(*opts));
}

/* The option getopt just rejected, as the user typed it: a long option is
 * the last argument consumed; a short one is in optopt. */
static const char *rejected_option(int argc, char **argv, char *buf,
                                   size_t size)
{
    const char *last = optind > 0 && optind <= argc ? argv[optind - 1] : "";

    if (g_str_has_prefix(last, "--")) {
        snprintf(buf, size, "%.*s", (int)strcspn(last, "="), last);
    } else if (optopt > 0 && optopt < 256) {
        snprintf(buf, size, "-%c", optopt);
    } else {
        snprintf(buf, size, "%s", last);
    }
    return buf;
}

/* Handle one option returned by getopt_long. */
static bool apply_option(struct options *opts, int c, int argc, char **argv,
                         GError **errp)
{
    char buf[256];

    switch (c) {
    case 'd':
        return add_disk(opts, optarg, errp);
    case 'f':
        opts->foreground = true;
        return true;
    case 'o':
        add_fuse_options(opts, optarg);
        return true;
    case OPT_ALLOW_DIR:
        return add_allow_dir(opts, optarg, errp);
    case OPT_ALLOW_REMOTE:
        opts->allow_remote = true;
        return true;
    case OPT_NBD_TIMEOUT:
        return parse_nbd_timeout(opts, optarg, errp);
    case OPT_THREADS:
        return parse_threads(opts, optarg, errp);
    case OPT_MAX_CHAIN_DEPTH:
        return parse_max_chain_depth(opts, optarg, errp);
    case OPT_VERSION:
        opts->show_version = true;
        return true;
    case 'h':
    case OPT_HELP:
        opts->show_help = true;
        return true;
    case ':':
        g_set_error(errp, CHAINFS_ERROR, EINVAL,
                    "option '%s' requires an argument",
                    rejected_option(argc, argv, buf, sizeof(buf)));
        return false;
    default:
        g_set_error(errp, CHAINFS_ERROR, EINVAL,
                    "unknown option '%s' (see --help)",
                    rejected_option(argc, argv, buf, sizeof(buf)));
        return false;
    }
}

bool options_parse(struct options *opts, int argc, char **argv,
                   GError **errp)
{
    int c;

    options_init(opts);
    /* optind = 0 makes glibc's getopt start over, so parsing can run more
     * than once in a process (the unit tests do). */
    optind = 0;
    opterr = 0;
    while ((c = getopt_long(argc, argv, short_options, long_options,
                            NULL)) != -1) {
        if (!apply_option(opts, c, argc, argv, errp)) {
            return false;
        }
    }
    if (opts->show_help || opts->show_version) {
        return true;
    }

    if (optind >= argc) {
        g_set_error(errp, CHAINFS_ERROR, EINVAL,
                    "missing MOUNTPOINT (see --help)");
        return false;
    }
    if (optind + 1 < argc) {
        g_set_error(errp, CHAINFS_ERROR, EINVAL,
                    "unexpected argument '%s' after MOUNTPOINT '%s'",
                    argv[optind + 1], argv[optind]);
        return false;
    }
    opts->mountpoint = g_strdup(argv[optind]);

    if (opts->disks->len == 0) {
        g_set_error(errp, CHAINFS_ERROR, EINVAL,
                    "no disk given (use --disk NAME=FILE)");
        return false;
    }
    if (!check_remote_disks(opts, errp)) {
        return false;
    }
    if (!opts->allow_dirs_given) {
        add_default_allow_dirs(opts);
    }
    /* A read-only mount must not leave the images writable underneath:
     * -o ro makes every disk read-only, as read-only=on would. */
    g_autofree char *ro = options_fuse_option(opts, "ro");
    if (ro) {
        for (guint i = 0; i < opts->disks->len; i++) {
            struct disk_spec *spec = g_ptr_array_index(opts->disks, i);
            spec->read_only = true;
        }
    }
    return true;
}
