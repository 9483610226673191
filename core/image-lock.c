/* chainfs: image locks compatible with QEMU's file-posix driver.
 *
 * QEMU describes what an opener does with a pair of permission masks: the
 * permissions it holds and those it lets others hold.  On the host file,
 * holding permission bit i is a shared lock on byte 100 + i, and refusing
 * to share it is a shared lock on byte 200 + i.  Before taking a
 * permission, an opener checks that nobody locks its "not shared" byte;
 * before refusing to share one, it checks that nobody locks its "held"
 * byte.  Only shared (read) locks are ever taken, so the locks themselves
 * never conflict: conflicts are found by asking F_OFD_GETLK whether an
 * exclusive lock could be taken on a byte.
 *
 * OFD locks belong to the open file description, so our own locks on fd
 * never show up in those checks, and closing fd drops them all.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "block.h"
#include "image-lock.h"

/* QEMU's permission bits (include/block/block-common.h in QEMU 7.2). */
enum {
    PERM_CONSISTENT_READ  = 1 << 0,
    PERM_WRITE            = 1 << 1,
    PERM_WRITE_UNCHANGED  = 1 << 2,
    PERM_RESIZE           = 1 << 3,
    PERM_GRAPH_MOD        = 1 << 4,
    PERM_COUNT            = 5,
    PERM_ALL              = (1 << PERM_COUNT) - 1,
};

static const char *const perm_names[PERM_COUNT] = {
    "consistent read", "write", "write unchanged", "resize", "graph mod",
};

/* Byte offsets of the two lock ranges, as in QEMU's file-posix.c. */
enum {
    LOCK_PERM_BASE   = 100,
    LOCK_SHARED_BASE = 200,
};

struct lock_perms {
    unsigned held;
    unsigned shared;
};

/* What qemu-io takes on an image opened for writing and on a backing file
 * (checked in /proc/locks): bytes 100,101,103,201,203 and 100,201,203.
 * GRAPH_MOD is shared like QEMU does: nothing in QEMU still takes it on a
 * file node, and refusing it would only lock a byte nobody checks. */
static const struct lock_perms mode_perms[] = {
    [IMAGE_LOCK_READER] = {
        .held = PERM_CONSISTENT_READ,
        .shared = PERM_CONSISTENT_READ | PERM_WRITE_UNCHANGED |
                  PERM_GRAPH_MOD,
    },
    [IMAGE_LOCK_WRITER] = {
        .held = PERM_CONSISTENT_READ | PERM_WRITE | PERM_RESIZE,
        .shared = PERM_CONSISTENT_READ | PERM_WRITE_UNCHANGED |
                  PERM_GRAPH_MOD,
    },
};

/* Set (F_RDLCK) or drop (F_UNLCK) our lock on one byte. */
static int lock_byte(int fd, off_t offset, short type)
{
    struct flock fl = {
        .l_type = type,
        .l_whence = SEEK_SET,
        .l_start = offset,
        .l_len = 1,
    };
    if (fcntl(fd, F_OFD_SETLK, &fl) < 0) {
        return -errno;
    }
    return 0;
}

/* 1 if another open file description holds a lock on the byte, 0 if not,
 * or a negative errno. */
static int byte_locked_by_others(int fd, off_t offset)
{
    struct flock fl = {
        .l_type = F_WRLCK,
        .l_whence = SEEK_SET,
        .l_start = offset,
        .l_len = 1,
    };
    if (fcntl(fd, F_OFD_GETLK, &fl) < 0) {
        return -errno;
    }
    return fl.l_type != F_UNLCK;
}

/* The bytes a permission pair locks, as a bitmask: bit i for byte 100 + i,
 * bit PERM_COUNT + i for byte 200 + i. */
static unsigned lock_bytes_of(const struct lock_perms *perms)
{
    return perms->held | ((~perms->shared & PERM_ALL) << PERM_COUNT);
}

static off_t lock_byte_offset(unsigned index)
{
    return index < PERM_COUNT ? LOCK_PERM_BASE + index
                              : LOCK_SHARED_BASE + (index - PERM_COUNT);
}

/* Apply the byte set `want`: lock each byte in it, unlock each in
 * `release`. */
static int apply_lock_bytes(int fd, unsigned want, unsigned release)
{
    for (unsigned i = 0; i < 2 * PERM_COUNT; i++) {
        int ret = 0;
        if (want & (1u << i)) {
            ret = lock_byte(fd, lock_byte_offset(i), F_RDLCK);
        } else if (release & (1u << i)) {
            ret = lock_byte(fd, lock_byte_offset(i), F_UNLCK);
        }
        if (ret < 0) {
            return ret;
        }
    }
    return 0;
}

/* Set errp for a failed check: ret < 0 is an error of the check itself;
 * otherwise another process holds permission perm_index (held) or refuses
 * to share it (!held). */
static void set_lock_error(GError **errp, const char *filename, int ret,
                           bool held, unsigned perm_index)
{
    if (ret < 0) {
        g_set_error(errp, CHAINFS_ERROR, -ret,
                    "%s: cannot check image locks: %s", filename,
                    g_strerror(-ret));
    } else if (held) {
        g_set_error(errp, CHAINFS_ERROR, EBUSY,
                    "%s: image is in use by another process (%s lock held)",
                    filename, perm_names[perm_index]);
    } else {
        g_set_error(errp, CHAINFS_ERROR, EBUSY,
                    "%s: image is in use by another process (it does not "
                    "share %s)", filename, perm_names[perm_index]);
    }
}

/* Check that nobody else holds locks in the way of perms; on a conflict,
 * set errp naming the permission.  Permissions others hold are checked
 * first: "write lock held" is the more useful message. */
static bool check_lock_bytes(int fd, const char *filename,
                             const struct lock_perms *perms, GError **errp)
{
    for (unsigned i = 0; i < PERM_COUNT; i++) {
        if (!(perms->shared & (1u << i))) {
            int ret = byte_locked_by_others(fd, LOCK_PERM_BASE + i);
            if (ret != 0) {
                set_lock_error(errp, filename, ret, true, i);
                return false;
            }
        }
    }
    for (unsigned i = 0; i < PERM_COUNT; i++) {
        if (perms->held & (1u << i)) {
            int ret = byte_locked_by_others(fd, LOCK_SHARED_BASE + i);
            if (ret != 0) {
                set_lock_error(errp, filename, ret, false, i);
                return false;
            }
        }
    }
    return true;
}

bool image_lock(int fd, const char *filename, enum image_lock_mode mode,
                GError **errp)
{
    const struct lock_perms *perms = &mode_perms[mode];
    unsigned want = lock_bytes_of(perms);
    unsigned all = lock_bytes_of(&mode_perms[IMAGE_LOCK_WRITER]) |
                   lock_bytes_of(&mode_perms[IMAGE_LOCK_READER]);
    unsigned reader = lock_bytes_of(&mode_perms[IMAGE_LOCK_READER]);
    int ret;

    /* Check before touching anything, so that a refused mode change leaves
     * the locks as they were in the common case. */
    if (!check_lock_bytes(fd, filename, perms, errp)) {
        return false;
    }

    /* Lock first and check again, as QEMU does: of two openers racing for
     * conflicting modes, at least one sees the other's locks. */
    ret = apply_lock_bytes(fd, want, all & ~want);
    if (ret < 0) {
        g_set_error(errp, CHAINFS_ERROR, -ret, "%s: cannot lock image: %s",
                    filename, g_strerror(-ret));
        apply_lock_bytes(fd, 0, all & ~reader);
        return false;
    }
    if (!check_lock_bytes(fd, filename, perms, errp)) {
        /* Lost a race: keep no more than a reader's locks.  A caller that
         * was opening the file closes fd, which drops those too. */
        apply_lock_bytes(fd, 0, all & ~reader);
        return false;
    }
    return true;
}
