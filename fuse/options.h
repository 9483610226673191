/* chainfs: the command line, parsed into a struct.
 *
 * Parsing only checks and records; it opens no image and mounts nothing,
 * so it can be tested on its own.  Every error is one line that names the
 * option or value at fault.
 */
#ifndef CHAINFS_OPTIONS_H
#define CHAINFS_OPTIONS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <glib.h>

/* --threads accepts 1..OPTIONS_MAX_THREADS. */
#define OPTIONS_MAX_THREADS 256
/* --nbd-timeout accepts up to a day (seconds). */
#define OPTIONS_MAX_NBD_TIMEOUT 86400
/* --max-chain-depth accepts 1..OPTIONS_MAX_CHAIN_DEPTH. */
#define OPTIONS_MAX_CHAIN_DEPTH (1 << 20)

/* One --disk NAME=FILE[,format=F][,read-only=on|off]. */
struct disk_spec {
    char *name;
    char *filename;     /* as given (a URI with --allow-remote) */
    char *format;       /* "qcow2", "raw", or NULL: probe */
    bool read_only;
};

struct options {
    GPtrArray *disks;       /* struct disk_spec *, command-line order */
    bool foreground;
    char *fuse_options;     /* every -o joined with ',', or NULL */
    GPtrArray *allow_dirs;  /* char *, canonical absolute paths */
    bool allow_dirs_given;  /* --allow-dir was used (else the default) */
    bool allow_remote;      /* --allow-remote: NBD URIs are accepted */
    uint64_t nbd_timeout_ms; /* --nbd-timeout: per NBD request; 0: none */
    unsigned threads;       /* 1..OPTIONS_MAX_THREADS */
    unsigned max_chain_depth; /* layers per chain (CHAIN_DEFAULT_MAX_DEPTH) */
    char *mountpoint;       /* as given */
    bool show_help;
    bool show_version;
};

/* Parse argv (getopt_long may permute it).  On success with show_help or
 * show_version set, nothing else is checked.  Errors name the option. */
bool options_parse(struct options *opts, int argc, char **argv,
                   GError **errp) __attribute__((nonnull(1, 3)));

/* Release everything options_parse stored; opts may be reused after. */
void options_clear(struct options *opts) __attribute__((nonnull));

/* Check a disk name: [A-Za-z0-9._-]+, not starting with '.'. */
bool options_disk_name_valid(const char *name) __attribute__((nonnull));

/* The value of the -o option name (the last one given): "" for a flag,
 * NULL if absent.  g_free() it. */
char *options_fuse_option(const struct options *opts, const char *name)
    __attribute__((nonnull));

/* Whether -o options include allow_other (so permissions must be checked
 * by the kernel for other users). */
bool options_allow_other(const struct options *opts) __attribute__((nonnull));

/* The usage text printed by --help. */
void options_print_help(FILE *out) __attribute__((nonnull));

#endif
