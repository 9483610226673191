/* chainfs: the control command parser.  The grammar is split in two: a
 * tokenizer that decodes blanks and quotes into words in place, and a
 * schema walk in which every verb and key is a row of a table. */
#include "jobs/command.h"

#include <errno.h>
#include <stddef.h>
#include <string.h>

#include "core/block.h"

#define COMMAND_MAX_WORDS 64
#define KEY_BIT(key) (1u << (COMMAND_KEY_##key))

G_STATIC_ASSERT(COMMAND_KEY__MAX <= 32);
G_STATIC_ASSERT(sizeof(enum command_sync) == sizeof(unsigned));
G_STATIC_ASSERT(sizeof(enum job_error_policy) == sizeof(unsigned));
G_STATIC_ASSERT(sizeof(enum command_bitmap_mode) == sizeof(unsigned));

/* How a key's value is checked and stored. */
enum value_kind {
    VALUE_JOB_ID,       /* char *: a job id */
    VALUE_DISK,         /* char *: a disk name */
    VALUE_PATH,         /* char *: any non-empty string */
    VALUE_FORMAT,       /* char *: [a-z0-9]+ */
    VALUE_CHOICE,       /* an enum: the index in choices */
    VALUE_GRANULARITY,  /* uint64_t: power of two 512..64M */
    VALUE_BUF_SIZE,     /* uint64_t: 0 or 512..1G (then >= granularity) */
    VALUE_SPEED,        /* uint64_t: 0..2^63-1 */
    VALUE_BITMAP,       /* char *: a bitmap name */
    VALUE_BITMAP_LIST,  /* char *: bitmap names, comma-separated */
};

struct key_info {
    const char *name;
    enum value_kind kind;
    size_t field;                   /* offsetof in struct command */
    const char *const *choices;     /* VALUE_CHOICE: NULL-terminated */
};

/* Every sync mode, in enum order; each verb takes some (verb_schema). */
static const char *const sync_choices[] = {
    "full", "top", "none", "bitmap", NULL,
};
static const char *const mirror_sync_choices[] = {
    "full", "top", "none", NULL,
};
static const char *const backup_sync_choices[] = {
    "full", "top", "bitmap", NULL,
};
static const char *const bitmap_mode_choices[] = {
    "on-success", "always", "never", NULL,
};
static const char *const mode_choices[] = {
    "absolute-paths", "existing", NULL,
};
static const char *const policy_choices[] = {
    "report", "ignore", "stop", NULL,
};
static const char *const on_off_choices[] = { "off", "on", NULL };
static const char *const copy_mode_choices[] = {
    "background", "write-blocking", NULL,
};

#define FIELD(name) offsetof(struct command, name)

static const struct key_info key_table[COMMAND_KEY__MAX] = {
    [COMMAND_KEY_ID] = { "id", VALUE_JOB_ID, FIELD(id), NULL },
    [COMMAND_KEY_DISK] = { "disk", VALUE_DISK, FIELD(disk), NULL },
    [COMMAND_KEY_TARGET] = { "target", VALUE_PATH, FIELD(target), NULL },
    [COMMAND_KEY_OVERLAY] = { "overlay", VALUE_PATH, FIELD(overlay), NULL },
    [COMMAND_KEY_FORMAT] = { "format", VALUE_FORMAT, FIELD(format), NULL },
    [COMMAND_KEY_SYNC] = { "sync", VALUE_CHOICE, FIELD(sync), sync_choices },
    [COMMAND_KEY_MODE] = { "mode", VALUE_CHOICE, FIELD(mode), mode_choices },
    [COMMAND_KEY_GRANULARITY] = {
        "granularity", VALUE_GRANULARITY, FIELD(granularity), NULL,
    },
    [COMMAND_KEY_BUF_SIZE] = {
        "buf-size", VALUE_BUF_SIZE, FIELD(buf_size), NULL,
    },
    [COMMAND_KEY_SPEED] = { "speed", VALUE_SPEED, FIELD(speed), NULL },
    [COMMAND_KEY_ON_SOURCE_ERROR] = {
        "on-source-error", VALUE_CHOICE, FIELD(on_source_error),
        policy_choices,
    },
    [COMMAND_KEY_ON_TARGET_ERROR] = {
        "on-target-error", VALUE_CHOICE, FIELD(on_target_error),
        policy_choices,
    },
    [COMMAND_KEY_ON_ERROR] = {
        "on-error", VALUE_CHOICE, FIELD(on_error), policy_choices,
    },
    [COMMAND_KEY_COPY_MODE] = {
        "copy-mode", VALUE_CHOICE, FIELD(copy_mode), copy_mode_choices,
    },
    [COMMAND_KEY_BASE] = { "base", VALUE_PATH, FIELD(base), NULL },
    [COMMAND_KEY_TOP] = { "top", VALUE_PATH, FIELD(top), NULL },
    [COMMAND_KEY_BACKING_FILE] = {
        "backing-file", VALUE_PATH, FIELD(backing_file), NULL,
    },
    [COMMAND_KEY_NAME] = { "name", VALUE_BITMAP, FIELD(name), NULL },
    [COMMAND_KEY_PERSISTENT] = {
        "persistent", VALUE_CHOICE, FIELD(persistent), on_off_choices,
    },
    [COMMAND_KEY_DISABLED] = {
        "disabled", VALUE_CHOICE, FIELD(disabled), on_off_choices,
    },
    [COMMAND_KEY_FROM] = { "from", VALUE_BITMAP_LIST, FIELD(from), NULL },
    [COMMAND_KEY_BITMAP] = { "bitmap", VALUE_BITMAP, FIELD(bitmap), NULL },
    [COMMAND_KEY_BITMAP_MODE] = {
        "bitmap-mode", VALUE_CHOICE, FIELD(bitmap_mode), bitmap_mode_choices,
    },
    [COMMAND_KEY_STORE] = { "store", VALUE_PATH, FIELD(store), NULL },
};

/* What a job verb takes after its ID. */
enum verb_argument {
    ARGUMENT_NONE,
    ARGUMENT_FORCE,     /* the optional word `force` */
    ARGUMENT_SPEED,     /* a required speed */
};

struct verb_schema {
    const char *name;
    uint32_t required;          /* KEY_BITs */
    uint32_t optional;          /* KEY_BITs */
    bool is_job_verb;           /* positional ID, allowed in job ctl */
    enum verb_argument argument;
    enum job_verb job_verb;
    const char *const *sync_choices;    /* the sync= values it takes */
};

static const struct verb_schema verb_table[COMMAND__MAX] = {
    [COMMAND_MIRROR] = {
        "mirror", KEY_BIT(ID) | KEY_BIT(DISK) | KEY_BIT(TARGET),
        KEY_BIT(FORMAT) | KEY_BIT(SYNC) | KEY_BIT(MODE) |
            KEY_BIT(GRANULARITY) | KEY_BIT(BUF_SIZE) | KEY_BIT(SPEED) |
            KEY_BIT(ON_SOURCE_ERROR) | KEY_BIT(ON_TARGET_ERROR) |
            KEY_BIT(COPY_MODE),
        false, ARGUMENT_NONE, 0, mirror_sync_choices,
    },
    [COMMAND_STREAM] = {
        "stream", KEY_BIT(ID) | KEY_BIT(DISK),
        KEY_BIT(BASE) | KEY_BIT(BACKING_FILE) | KEY_BIT(SPEED) |
            KEY_BIT(ON_ERROR),
        false, ARGUMENT_NONE, 0, NULL,
    },
    [COMMAND_COMMIT] = {
        "commit", KEY_BIT(ID) | KEY_BIT(DISK),
        KEY_BIT(TOP) | KEY_BIT(BASE) | KEY_BIT(BACKING_FILE) |
            KEY_BIT(SPEED) | KEY_BIT(ON_ERROR),
        false, ARGUMENT_NONE, 0, NULL,
    },
    [COMMAND_BACKUP] = {
        "backup", KEY_BIT(ID) | KEY_BIT(DISK) | KEY_BIT(TARGET),
        KEY_BIT(FORMAT) | KEY_BIT(SYNC) | KEY_BIT(BITMAP) |
            KEY_BIT(BITMAP_MODE) | KEY_BIT(MODE) | KEY_BIT(GRANULARITY) |
            KEY_BIT(BUF_SIZE) | KEY_BIT(SPEED) | KEY_BIT(ON_SOURCE_ERROR) |
            KEY_BIT(ON_TARGET_ERROR),
        false, ARGUMENT_NONE, 0, backup_sync_choices,
    },
    [COMMAND_SNAPSHOT] = {
        "snapshot", KEY_BIT(DISK) | KEY_BIT(OVERLAY),
        KEY_BIT(FORMAT) | KEY_BIT(MODE),
        false, ARGUMENT_NONE, 0, NULL,
    },
    [COMMAND_COMPLETE] = {
        "complete", 0, 0, true, ARGUMENT_NONE, JOB_VERB_COMPLETE, NULL,
    },
    [COMMAND_CANCEL] = {
        "cancel", 0, 0, true, ARGUMENT_FORCE, JOB_VERB_CANCEL, NULL,
    },
    [COMMAND_PAUSE] = { "pause", 0, 0, true, ARGUMENT_NONE, JOB_VERB_PAUSE,
        NULL },
    [COMMAND_RESUME] = {
        "resume", 0, 0, true, ARGUMENT_NONE, JOB_VERB_RESUME, NULL,
    },
    [COMMAND_SET_SPEED] = {
        "set-speed", 0, 0, true, ARGUMENT_SPEED, JOB_VERB_SET_SPEED, NULL,
    },
    [COMMAND_CHANGE] = {
        "change", KEY_BIT(COPY_MODE), 0, true, ARGUMENT_NONE,
        JOB_VERB_CHANGE, NULL,
    },
    [COMMAND_DISMISS] = {
        "dismiss", 0, 0, true, ARGUMENT_NONE, JOB_VERB_DISMISS, NULL,
    },
    [COMMAND_BITMAP_ADD] = {
        "bitmap-add", KEY_BIT(DISK) | KEY_BIT(NAME),
        KEY_BIT(GRANULARITY) | KEY_BIT(PERSISTENT) | KEY_BIT(DISABLED),
        false, ARGUMENT_NONE, 0, NULL,
    },
    [COMMAND_BITMAP_REMOVE] = {
        "bitmap-remove", KEY_BIT(DISK) | KEY_BIT(NAME), 0,
        false, ARGUMENT_NONE, 0, NULL,
    },
    [COMMAND_BITMAP_CLEAR] = {
        "bitmap-clear", KEY_BIT(DISK) | KEY_BIT(NAME), 0,
        false, ARGUMENT_NONE, 0, NULL,
    },
    [COMMAND_BITMAP_ENABLE] = {
        "bitmap-enable", KEY_BIT(DISK) | KEY_BIT(NAME), 0,
        false, ARGUMENT_NONE, 0, NULL,
    },
    [COMMAND_BITMAP_DISABLE] = {
        "bitmap-disable", KEY_BIT(DISK) | KEY_BIT(NAME), 0,
        false, ARGUMENT_NONE, 0, NULL,
    },
    [COMMAND_BITMAP_MERGE] = {
        "bitmap-merge", KEY_BIT(DISK) | KEY_BIT(NAME) | KEY_BIT(FROM), 0,
        false, ARGUMENT_NONE, 0, NULL,
    },
    [COMMAND_FLEECE] = {
        "fleece", KEY_BIT(ID) | KEY_BIT(DISK),
        KEY_BIT(NAME) | KEY_BIT(BITMAP) | KEY_BIT(STORE),
        false, ARGUMENT_NONE, 0, NULL,
    },
};

/* One decoded word; eq points at its first unquoted '=' or is NULL. */
struct word {
    char *text;
    char *eq;
};

const char *command_verb_name(enum command_verb verb)
{
    return verb < COMMAND__MAX ? verb_table[verb].name : "invalid";
}

const char *command_key_name(enum command_key key)
{
    return key < COMMAND_KEY__MAX ? key_table[key].name : "invalid";
}

bool command_has(const struct command *cmd, enum command_key key)
{
    return key < COMMAND_KEY__MAX && (cmd->present & (1u << key));
}

bool command_job_verb(enum command_verb verb, enum job_verb *job_verb)
{
    if (verb >= COMMAND__MAX || !verb_table[verb].is_job_verb) {
        return false;
    }
    *job_verb = verb_table[verb].job_verb;
    return true;
}

bool command_valid_name(const char *name, size_t max_len)
{
    size_t len = strlen(name);

    if (len == 0 || len > max_len || name[0] == '.') {
        return false;
    }
    return strspn(name, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                        "0123456789._-") == len;
}

bool command_valid_bitmap_name(const char *name)
{
    size_t len = strlen(name);

    if (len == 0 || len > COMMAND_MAX_BITMAP_LEN || name[0] == '.') {
        return false;
    }
    return strspn(name, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                        "0123456789._-@") == len;
}

bool command_is_bitmap_verb(enum command_verb verb)
{
    return verb >= COMMAND_BITMAP_ADD && verb <= COMMAND_BITMAP_MERGE;
}

bool command_parse_size(const char *key, const char *value, uint64_t *size,
                        GError **errp)
{
    static const char suffixes[] = "KMGT";
    uint64_t number = 0;
    const char *p = value;
    const char *suffix;

    if (*p < '0' || *p > '9') {
        goto not_a_size;
    }
    for (; *p >= '0' && *p <= '9'; p++) {
        if (number > (UINT64_MAX - (uint64_t)(*p - '0')) / 10) {
            goto too_large;
        }
        number = number * 10 + (uint64_t)(*p - '0');
    }
    if (*p != '\0') {
        suffix = strchr(suffixes, g_ascii_toupper(*p));
        if (!suffix || p[1] != '\0') {
            goto not_a_size;
        }
        for (int shift = 0; shift <= suffix - suffixes; shift++) {
            if (number > UINT64_MAX / 1024) {
                goto too_large;
            }
            number *= 1024;
        }
    }
    *size = number;
    return true;

not_a_size:
    g_set_error(errp, CHAINFS_ERROR, EINVAL,
                "%s: '%s' is not a size (bytes, or a number with a K, M, G "
                "or T suffix)", key, value);
    return false;
too_large:
    g_set_error(errp, CHAINFS_ERROR, EINVAL, "%s: '%s' is too large",
                key, value);
    return false;
}

/* Split the command into words, decoding quotes in place in storage (the
 * decoded text is never longer).  Returns the number of words or -1. */
static int command_split(char *storage, size_t len, struct word *words,
                         GError **errp)
{
    char *p = storage;
    char *end = storage + len;
    int count = 0;

    for (;;) {
        char *out;
        char *eq = NULL;

        while (p < end && (*p == ' ' || *p == '\t')) {
            p++;
        }
        if (p == end) {
            return count;
        }
        if (count == COMMAND_MAX_WORDS) {
            g_set_error(errp, CHAINFS_ERROR, EINVAL,
                        "command has more than %d words", COMMAND_MAX_WORDS);
            return -1;
        }
        words[count].text = out = p;
        while (p < end && *p != ' ' && *p != '\t') {
            if (*p != '"') {
                if (*p == '=' && !eq) {
                    eq = out;
                }
                *out++ = *p++;
                continue;
            }
            for (p++; p < end && *p != '"'; p++) {
                if (*p == '\\' && p + 1 < end &&
                    (p[1] == '"' || p[1] == '\\')) {
                    p++;
                }
                *out++ = *p;
            }
            if (p == end) {
                g_set_error(errp, CHAINFS_ERROR, EINVAL,
                            "unterminated quote in '%s'", words[count].text);
                return -1;
            }
            p++;
        }
        /* p is at a blank or at the end; out <= p, so the terminator
         * overwrites nothing still to be read once p moves on. */
        if (p < end) {
            p++;
        }
        *out = '\0';
        words[count].eq = eq;
        count++;
    }
}

/* Check and store one key's value. */
static bool command_set_key(struct command *cmd, const char *verb,
                            enum command_key key, char *value, GError **errp)
{
    const struct key_info *info = &key_table[key];
    void *field = (char *)cmd + info->field;
    uint64_t number = 0;

    switch (info->kind) {
    case VALUE_JOB_ID:
    case VALUE_DISK:
        if (!command_valid_name(value, info->kind == VALUE_JOB_ID
                                           ? COMMAND_MAX_ID_LEN
                                           : COMMAND_MAX_DISK_LEN)) {
            g_set_error(errp, CHAINFS_ERROR, EINVAL,
                        "%s: %s: '%s' is not a valid %s ([A-Za-z0-9._-], not "
                        "starting with '.', at most %d characters)", verb,
                        info->name, value,
                        info->kind == VALUE_JOB_ID ? "job id" : "disk name",
                        info->kind == VALUE_JOB_ID ? COMMAND_MAX_ID_LEN
                                                   : COMMAND_MAX_DISK_LEN);
            return false;
        }
        *(char **)field = value;
        return true;
    case VALUE_FORMAT:
        if (strspn(value, "abcdefghijklmnopqrstuvwxyz0123456789") !=
            strlen(value)) {
            g_set_error(errp, CHAINFS_ERROR, EINVAL,
                        "%s: %s: '%s' is not a format name", verb, info->name,
                        value);
            return false;
        }
        *(char **)field = value;
        return true;
    case VALUE_PATH:
        *(char **)field = value;
        return true;
    case VALUE_BITMAP:
    case VALUE_BITMAP_LIST: {
        g_auto(GStrv) names = info->kind == VALUE_BITMAP_LIST
                              ? g_strsplit(value, ",", -1) : NULL;
        const char *const single[] = { value, NULL };
        const char *const *list = names ? (const char *const *)names
                                        : single;

        for (unsigned i = 0; list[i]; i++) {
            if (!command_valid_bitmap_name(list[i])) {
                g_set_error(errp, CHAINFS_ERROR, EINVAL,
                            "%s: %s: '%s' is not a valid bitmap name "
                            "([A-Za-z0-9._-], not starting with '.', at "
                            "most %d characters)", verb, info->name,
                            list[i], COMMAND_MAX_BITMAP_LEN);
                return false;
            }
        }
        *(char **)field = value;
        return true;
    }
    case VALUE_CHOICE:
        for (unsigned i = 0; info->choices[i]; i++) {
            if (strcmp(info->choices[i], value) == 0) {
                *(unsigned *)field = i;
                return true;
            }
        }
        {
            g_autofree char *choices =
                g_strjoinv(", ", (char **)info->choices);

            g_set_error(errp, CHAINFS_ERROR, EINVAL,
                        "%s: %s: '%s' is not one of %s", verb, info->name,
                        value, choices);
        }
        return false;
    case VALUE_GRANULARITY:
    case VALUE_BUF_SIZE:
    case VALUE_SPEED:
        if (!command_parse_size(info->name, value, &number, errp)) {
            g_prefix_error(errp, "%s: ", verb);
            return false;
        }
        break;
    }

    if (info->kind == VALUE_GRANULARITY &&
        (number < 512 || number > 64 * 1024 * 1024 ||
         (number & (number - 1)) != 0)) {
        g_set_error(errp, CHAINFS_ERROR, EINVAL,
                    "%s: granularity: %s is not a power of two from 512 to "
                    "64M", verb, value);
        return false;
    }
    if (info->kind == VALUE_BUF_SIZE && number != 0 &&
        (number < 512 || number > 1024 * 1024 * 1024)) {
        g_set_error(errp, CHAINFS_ERROR, EINVAL,
                    "%s: buf-size: %s is neither 0 nor from 512 to 1G", verb,
                    value);
        return false;
    }
    if (info->kind == VALUE_SPEED && number > INT64_MAX) {
        g_set_error(errp, CHAINFS_ERROR, EINVAL,
                    "%s: speed: %s is larger than 2^63-1", verb, value);
        return false;
    }
    *(uint64_t *)field = number;
    return true;
}

/* A key=value word of verb. */
static bool command_parse_key(struct command *cmd,
                              const struct verb_schema *schema,
                              struct word *word, GError **errp)
{
    const char *name = word->text;
    char *value = word->eq + 1;
    enum command_key key;

    *word->eq = '\0';
    for (key = 0; key < COMMAND_KEY__MAX; key++) {
        if (strcmp(key_table[key].name, name) == 0) {
            break;
        }
    }
    if (key == COMMAND_KEY__MAX ||
        !((schema->required | schema->optional) & (1u << key))) {
        g_set_error(errp, CHAINFS_ERROR, EINVAL, "%s: unknown key '%s'",
                    schema->name, name);
        return false;
    }
    if (cmd->present & (1u << key)) {
        g_set_error(errp, CHAINFS_ERROR, EINVAL, "%s: duplicate key '%s'",
                    schema->name, name);
        return false;
    }
    if (*value == '\0') {
        g_set_error(errp, CHAINFS_ERROR, EINVAL,
                    "%s: empty value for key '%s'", schema->name, name);
        return false;
    }
    if (key == COMMAND_KEY_SYNC && schema->sync_choices &&
        !g_strv_contains(schema->sync_choices, value)) {
        g_autofree char *choices =
            g_strjoinv(", ", (char **)schema->sync_choices);

        g_set_error(errp, CHAINFS_ERROR, EINVAL,
                    "%s: sync: '%s' is not one of %s", schema->name, value,
                    choices);
        return false;
    }
    cmd->present |= 1u << key;
    return command_set_key(cmd, schema->name, key, value, errp);
}

/* A word without '=' of verb: the job ID, then the verb's argument. */
static bool command_parse_positional(struct command *cmd,
                                     const struct verb_schema *schema,
                                     const char *word, unsigned *given,
                                     bool with_id, GError **errp)
{
    unsigned slot = *given + (with_id ? 0 : 1);

    if (schema->is_job_verb && slot == 0) {
        if (!command_valid_name(word, COMMAND_MAX_ID_LEN)) {
            g_set_error(errp, CHAINFS_ERROR, EINVAL,
                        "%s: '%s' is not a valid job id", schema->name, word);
            return false;
        }
        cmd->id = (char *)word;
    } else if (schema->is_job_verb && slot == 1 &&
               schema->argument == ARGUMENT_FORCE && !strcmp(word, "force")) {
        cmd->force = true;
    } else if (schema->is_job_verb && slot == 1 &&
               schema->argument == ARGUMENT_SPEED) {
        if (!command_set_key(cmd, schema->name, COMMAND_KEY_SPEED,
                             (char *)word, errp)) {
            return false;
        }
        cmd->present |= KEY_BIT(SPEED);
    } else {
        g_set_error(errp, CHAINFS_ERROR, EINVAL,
                    "%s: unexpected argument '%s'%s", schema->name, word,
                    schema->is_job_verb ? "" : " (expected key=value)");
        return false;
    }
    (*given)++;
    return true;
}

/* backup: sync=bitmap needs bitmap=, and bitmap-mode= needs a bitmap. */
static bool command_check_backup(const struct command *cmd, GError **errp)
{
    if (cmd->sync == COMMAND_SYNC_BITMAP && !cmd->bitmap) {
        g_set_error(errp, CHAINFS_ERROR, EINVAL,
                    "backup: sync=bitmap needs bitmap=");
        return false;
    }
    if (command_has(cmd, COMMAND_KEY_BITMAP_MODE) && !cmd->bitmap) {
        g_set_error(errp, CHAINFS_ERROR, EINVAL,
                    "backup: bitmap-mode needs bitmap=");
        return false;
    }
    return true;
}

/* The schema walk over the words of one command. */
static bool command_parse_words(struct command *cmd, struct word *words,
                                int count, bool job_ctl, GError **errp)
{
    const struct verb_schema *schema = NULL;
    unsigned positional = 0;

    if (count == 0) {
        g_set_error(errp, CHAINFS_ERROR, EINVAL, "empty command");
        return false;
    }
    if (job_ctl && words[0].eq && words[0].eq - words[0].text == 5 &&
        !strncmp(words[0].text, "speed", 5)) {
        /* `speed=N` is short for `set-speed N` in a job's ctl file. */
        cmd->verb = COMMAND_SET_SPEED;
        schema = &verb_table[COMMAND_SET_SPEED];
        if (!command_parse_positional(cmd, schema, words[0].eq + 1,
                                      &positional, false, errp)) {
            return false;
        }
    } else {
        for (cmd->verb = 0; cmd->verb < COMMAND__MAX; cmd->verb++) {
            if (!words[0].eq &&
                strcmp(verb_table[cmd->verb].name, words[0].text) == 0) {
                schema = &verb_table[cmd->verb];
                break;
            }
        }
        if (!schema) {
            g_set_error(errp, CHAINFS_ERROR, EINVAL, "unknown command '%s'",
                        words[0].text);
            return false;
        }
        if (job_ctl && !schema->is_job_verb) {
            g_set_error(errp, CHAINFS_ERROR, EINVAL,
                        "%s: not a job verb (write it to .jobs/ctl)",
                        schema->name);
            return false;
        }
    }

    for (int i = 1; i < count; i++) {
        bool ok = words[i].eq
            ? command_parse_key(cmd, schema, &words[i], errp)
            : command_parse_positional(cmd, schema, words[i].text,
                                       &positional, !job_ctl, errp);
        if (!ok) {
            return false;
        }
    }

    if (schema->is_job_verb && !job_ctl && positional == 0) {
        g_set_error(errp, CHAINFS_ERROR, EINVAL, "%s: missing job id",
                    schema->name);
        return false;
    }
    if (schema->argument == ARGUMENT_SPEED && !(cmd->present & KEY_BIT(SPEED))) {
        g_set_error(errp, CHAINFS_ERROR, EINVAL, "%s: missing speed",
                    schema->name);
        return false;
    }
    for (enum command_key key = 0; key < COMMAND_KEY__MAX; key++) {
        if ((schema->required & (1u << key)) && !(cmd->present & (1u << key))) {
            g_set_error(errp, CHAINFS_ERROR, EINVAL,
                        "%s: missing required key '%s'", schema->name,
                        key_table[key].name);
            return false;
        }
    }
    if (cmd->verb == COMMAND_BACKUP && !command_check_backup(cmd, errp)) {
        return false;
    }
    if (cmd->buf_size != 0 && cmd->granularity != 0 &&
        cmd->buf_size < cmd->granularity) {
        g_set_error(errp, CHAINFS_ERROR, EINVAL,
                    "%s: buf-size: %" G_GUINT64_FORMAT " is neither 0 nor "
                    "from the granularity (%" G_GUINT64_FORMAT ") to 1G",
                    schema->name, cmd->buf_size, cmd->granularity);
        return false;
    }
    return true;
}

/* Check the raw bytes, copy them to storage and parse. */
static bool command_parse_common(const char *buf, size_t len,
                                 const char *job_id, struct command *cmd,
                                 GError **errp)
{
    struct word words[COMMAND_MAX_WORDS];
    size_t id_len = job_id ? strlen(job_id) + 1 : 0;
    int count;

    memset(cmd, 0, sizeof(*cmd));
    if (len > COMMAND_MAX_BYTES) {
        g_set_error(errp, CHAINFS_ERROR, EINVAL,
                    "command is longer than %d bytes", COMMAND_MAX_BYTES);
        return false;
    }
    if (memchr(buf, '\0', len)) {
        g_set_error(errp, CHAINFS_ERROR, EINVAL, "command contains a NUL byte");
        return false;
    }
    if (len > 0 && buf[len - 1] == '\n') {
        len--;
    }
    for (size_t i = 0; i < len; i++) {
        if ((unsigned char)buf[i] < 0x20 && buf[i] != '\t') {
            g_set_error(errp, CHAINFS_ERROR, EINVAL, "%s",
                        buf[i] == '\n' ? "one command per write (one line)"
                                       : "command contains a control "
                                         "character");
            return false;
        }
    }

    cmd->storage = g_malloc(len + 1 + id_len);
    memcpy(cmd->storage, buf, len);
    cmd->storage[len] = '\0';
    if (job_id) {
        memcpy(cmd->storage + len + 1, job_id, id_len);
    }
    count = command_split(cmd->storage, len, words, errp);
    if (count >= 0 && command_parse_words(cmd, words, count, job_id != NULL,
                                          errp)) {
        if (job_id) {
            cmd->id = cmd->storage + len + 1;
        }
        return true;
    }
    command_clear(cmd);
    return false;
}

bool command_parse(const char *buf, size_t len, struct command *cmd,
                   GError **errp)
{
    return command_parse_common(buf, len, NULL, cmd, errp);
}

bool command_parse_job_ctl(const char *buf, size_t len, const char *job_id,
                           struct command *cmd, GError **errp)
{
    return command_parse_common(buf, len, job_id, cmd, errp);
}

void command_clear(struct command *cmd)
{
    g_free(cmd->storage);
    memset(cmd, 0, sizeof(*cmd));
}
