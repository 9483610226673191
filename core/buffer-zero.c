/* chainfs: whether a buffer holds only zero bytes (see buffer-zero.h). */
#include "core/buffer-zero.h"

#include <stdint.h>

/* How many leading bytes are checked one by one before the word loop. */
#define BUFFER_ZERO_HEAD 16

/* A word that may alias any buffer (the bytes were written as bytes). */
typedef uint64_t __attribute__((may_alias)) zero_word;

/* Whether the words [w, w + n) are all zero; eight at a time, OR-ed
 * together, so the compiler may vectorize the loop. */
static bool words_are_zero(const zero_word *w, size_t n)
{
    for (; n >= 8; n -= 8, w += 8) {
        if ((w[0] | w[1] | w[2] | w[3] | w[4] | w[5] | w[6] | w[7]) != 0) {
            return false;
        }
    }
    for (; n > 0; n--, w++) {
        if (*w != 0) {
            return false;
        }
    }
    return true;
}

bool buffer_is_zero(const void *buf, size_t len)
{
    const unsigned char *p = buf;
    const unsigned char *end = p + len;

    /* The head, then bytes up to a word boundary. */
    for (size_t i = 0; p < end && (i < BUFFER_ZERO_HEAD ||
                                   (uintptr_t)p % sizeof(zero_word) != 0);
         i++, p++) {
        if (*p != 0) {
            return false;
        }
    }
    size_t words = (size_t)(end - p) / sizeof(zero_word);
    if (!words_are_zero((const zero_word *)p, words)) {
        return false;
    }
    for (p += words * sizeof(zero_word); p < end; p++) {
        if (*p != 0) {
            return false;
        }
    }
    return true;
}
