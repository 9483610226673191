/* chainfs: the parser for one control command (INTERFACE.md section 3).
 *
 * Input is the raw bytes of one write to `.jobs/ctl` (or, in the job-ctl
 * form, to `.jobs/ID/ctl`, without the ID).  The parser checks syntax and
 * values only (every verb's keys come from a schema table in command.c);
 * whether disks, jobs, layers and files exist is the executor's business.
 * Every error is EINVAL in CHAINFS_ERROR with a one-line message naming
 * the verb, key or value.  Pure functions: thread-safe.
 */
#ifndef CHAINFS_COMMAND_H
#define CHAINFS_COMMAND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <glib.h>

#include "jobs/job.h"

#define COMMAND_MAX_BYTES (64 * 1024)
#define COMMAND_MAX_ID_LEN 128      /* job ids */
#define COMMAND_MAX_DISK_LEN 255    /* disk names (a file name) */
#define COMMAND_MAX_BITMAP_LEN 1023 /* bitmap names (qcow2's limit) */

enum command_verb {
    COMMAND_MIRROR,
    COMMAND_STREAM,
    COMMAND_COMMIT,
    COMMAND_BACKUP,
    COMMAND_SNAPSHOT,
    COMMAND_COMPLETE,       /* the job verbs: id names the job */
    COMMAND_CANCEL,
    COMMAND_PAUSE,
    COMMAND_RESUME,
    COMMAND_SET_SPEED,
    COMMAND_CHANGE,
    COMMAND_DISMISS,
    COMMAND_BITMAP_ADD,     /* the bitmap commands: synchronous */
    COMMAND_BITMAP_REMOVE,
    COMMAND_BITMAP_CLEAR,
    COMMAND_BITMAP_ENABLE,
    COMMAND_BITMAP_DISABLE,
    COMMAND_BITMAP_MERGE,
    COMMAND_FLEECE,         /* a job, but no chain change (fleece.h) */
    COMMAND__MAX,
};

/* The keys of all verbs; a bit each in command.present. */
enum command_key {
    COMMAND_KEY_ID,
    COMMAND_KEY_DISK,
    COMMAND_KEY_TARGET,
    COMMAND_KEY_OVERLAY,
    COMMAND_KEY_FORMAT,
    COMMAND_KEY_SYNC,
    COMMAND_KEY_MODE,
    COMMAND_KEY_GRANULARITY,
    COMMAND_KEY_BUF_SIZE,
    COMMAND_KEY_SPEED,
    COMMAND_KEY_ON_SOURCE_ERROR,
    COMMAND_KEY_ON_TARGET_ERROR,
    COMMAND_KEY_ON_ERROR,
    COMMAND_KEY_COPY_MODE,
    COMMAND_KEY_BASE,
    COMMAND_KEY_TOP,
    COMMAND_KEY_BACKING_FILE,
    COMMAND_KEY_NAME,
    COMMAND_KEY_PERSISTENT,
    COMMAND_KEY_DISABLED,
    COMMAND_KEY_FROM,
    COMMAND_KEY_BITMAP,
    COMMAND_KEY_BITMAP_MODE,
    COMMAND_KEY_STORE,
    COMMAND_KEY__MAX,
};

enum command_sync {
    COMMAND_SYNC_FULL,      /* everything the guest sees */
    COMMAND_SYNC_TOP,       /* the top layer's allocated data */
    COMMAND_SYNC_NONE,      /* only new writes (mirror) */
    COMMAND_SYNC_BITMAP,    /* the chunks dirty in a bitmap (backup) */
};

/* backup's bitmap-mode: when the bits it copied leave the bitmap. */
enum command_bitmap_mode {
    COMMAND_BITMAP_MODE_ON_SUCCESS,     /* if the job completes */
    COMMAND_BITMAP_MODE_ALWAYS,         /* also on failure or cancel */
    COMMAND_BITMAP_MODE_NEVER,          /* never */
};

enum command_mode {
    COMMAND_MODE_ABSOLUTE_PATHS,    /* create the file (EEXIST if it exists) */
    COMMAND_MODE_EXISTING,          /* open an existing file */
};

/* A parsed command.  Strings point into `storage`; absent keys read as
 * NULL, 0 or the default, and `present` has a bit (1u << key) for each
 * key given. */
struct command {
    enum command_verb verb;
    uint32_t present;
    char *id;               /* a job's id=, or the verb's job */
    char *disk;
    char *target;
    char *overlay;
    char *format;           /* checked against the drivers later */
    char *base;
    char *top;
    char *backing_file;
    char *name;             /* a bitmap's name */
    char *from;             /* bitmap-merge: names, comma-separated */
    char *bitmap;           /* backup: the bitmap= to copy or clear;
                               fleece: the bitmap to split at the instant */
    char *store;            /* fleece: store=PATH */
    unsigned persistent;    /* on/off: 1/0 */
    unsigned disabled;
    enum command_sync sync;
    enum command_mode mode;
    uint64_t granularity;   /* 0: not given */
    uint64_t buf_size;      /* 0: the default */
    uint64_t speed;         /* bytes/s, 0 = unlimited; also set-speed's N */
    enum job_error_policy on_source_error;
    enum job_error_policy on_target_error;
    enum job_error_policy on_error;
    enum job_copy_mode copy_mode;
    enum command_bitmap_mode bitmap_mode;
    bool force;             /* `cancel ID force` */
    char *storage;          /* owned copy of the input, decoded in place */
};

/* Parse one write to `.jobs/ctl`. */
bool command_parse(const char *buf, size_t len, struct command *cmd,
                   GError **errp);
/* Parse one write to `.jobs/ID/ctl` (the job verbs without the ID, and
 * `speed=N`); cmd->id is set to job_id. */
bool command_parse_job_ctl(const char *buf, size_t len, const char *job_id,
                           struct command *cmd, GError **errp);
/* Release what a successful parse allocated. */
void command_clear(struct command *cmd);

/* Whether key was given. */
bool command_has(const struct command *cmd, enum command_key key);
/* The verb's or key's spelling in commands. */
const char *command_verb_name(enum command_verb verb);
const char *command_key_name(enum command_key key);
/* The job verb a job command maps to; false for mirror/stream/commit and
 * snapshot. */
bool command_job_verb(enum command_verb verb, enum job_verb *job_verb);

/* Parse a size or speed: decimal bytes with an optional K, M, G or T
 * suffix (powers of 1024); EINVAL on junk or overflow, naming key. */
bool command_parse_size(const char *key, const char *value, uint64_t *size,
                        GError **errp);
/* Whether name is a valid bitmap name: [A-Za-z0-9._@-]+, not starting
 * with '.', at most COMMAND_MAX_BITMAP_LEN bytes ('@' is for the bitmaps
 * fleece makes; the executor refuses it in new names). */
bool command_valid_bitmap_name(const char *name);
/* Whether verb is one of the bitmap-* commands. */
bool command_is_bitmap_verb(enum command_verb verb);
/* Whether name is a valid job id or disk name: [A-Za-z0-9._-]+, not
 * starting with '.', at most max_len bytes. */
bool command_valid_name(const char *name, size_t max_len);

#endif
