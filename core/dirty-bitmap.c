/* chainfs: dirty bitmaps, hierarchical like QEMU's HBitmap.
 *
 * Level 0 holds one bit per chunk.  Bit j of level n+1 is set exactly when
 * word j of level n is non-zero, up to a top level of a single word.  So a
 * search for the next dirty chunk climbs while words are empty and
 * descends straight to the first set bit: O(levels) instead of a scan of
 * clean words, which keeps a 1 TiB disk with a few dirty chunks cheap.
 *
 * Ranges work in whole chunks: a byte range touches every chunk it
 * overlaps, and an unaligned offset is widened to the chunk that holds it.
 * One mutex per bitmap guards the bits and the count; every operation is
 * short (no I/O), so a plain mutex is cheaper than anything cleverer.  It
 * is a pthread mutex rather than a GMutex: glib's futex-based GMutex is
 * invisible to ThreadSanitizer, which then reports every bit as a race.
 */
#include <endian.h>
#include <pthread.h>
#include <string.h>
#include <glib.h>

#include "dirty-bitmap.h"

#define BITS_PER_WORD 64
#define MAX_LEVELS 12 /* 64^12 bits is far beyond any 64-bit size */

struct dirty_bitmap {
    uint64_t size;
    uint32_t granularity;
    unsigned chunk_shift;      /* log2(granularity) */

    pthread_mutex_t lock;
    uint64_t dirty_chunks;     /* set bits of level 0 */
    unsigned nlevels;
    uint64_t nbits[MAX_LEVELS];
    uint64_t *levels[MAX_LEVELS]; /* [0] is one bit per chunk */
};

static uint64_t words_for(uint64_t nbits)
{
    return (nbits + BITS_PER_WORD - 1) / BITS_PER_WORD;
}

/* Mask of bits first..last (inclusive) within one word. */
static uint64_t word_mask(unsigned first, unsigned last)
{
    uint64_t high = last == BITS_PER_WORD - 1 ? ~0ULL
                                              : (1ULL << (last + 1)) - 1;
    return high & (~0ULL << first);
}

struct dirty_bitmap *dirty_bitmap_new(uint64_t size, uint32_t granularity)
{
    g_assert(granularity >= 512 && (granularity & (granularity - 1)) == 0);

    struct dirty_bitmap *bitmap = g_new0(struct dirty_bitmap, 1);
    bitmap->size = size;
    bitmap->granularity = granularity;
    bitmap->chunk_shift = __builtin_ctz(granularity);
    pthread_mutex_init(&bitmap->lock, NULL);

    uint64_t nbits = (size >> bitmap->chunk_shift) +
                     ((size & (granularity - 1)) != 0);
    for (unsigned level = 0;; level++) {
        g_assert(level < MAX_LEVELS);
        uint64_t nwords = MAX(words_for(nbits), 1);
        bitmap->nbits[level] = nbits;
        bitmap->levels[level] = g_new0(uint64_t, nwords);
        bitmap->nlevels = level + 1;
        if (nwords == 1) {
            break;
        }
        nbits = nwords;
    }
    return bitmap;
}

void dirty_bitmap_free(struct dirty_bitmap *bitmap)
{
    if (!bitmap) {
        return;
    }
    for (unsigned level = 0; level < bitmap->nlevels; level++) {
        g_free(bitmap->levels[level]);
    }
    pthread_mutex_destroy(&bitmap->lock);
    g_free(bitmap);
}

uint64_t dirty_bitmap_size(const struct dirty_bitmap *bitmap)
{
    return bitmap->size;
}

uint32_t dirty_bitmap_granularity(const struct dirty_bitmap *bitmap)
{
    return bitmap->granularity;
}

/* Set bits first..last of a level and the parent bits of every word they
 * touch; returns how many level-0 bits were newly set. */
static uint64_t set_bits(struct dirty_bitmap *bitmap, unsigned level,
                         uint64_t first, uint64_t last)
{
    uint64_t *words = bitmap->levels[level];
    uint64_t first_word = first / BITS_PER_WORD;
    uint64_t last_word = last / BITS_PER_WORD;
    uint64_t newly_set = 0;

    for (uint64_t w = first_word; w <= last_word; w++) {
        unsigned lo = w == first_word ? first % BITS_PER_WORD : 0;
        unsigned hi = w == last_word ? last % BITS_PER_WORD
                                     : BITS_PER_WORD - 1;
        uint64_t mask = word_mask(lo, hi);
        newly_set += __builtin_popcountll(mask & ~words[w]);
        words[w] |= mask;
    }
    if (level + 1 < bitmap->nlevels) {
        /* Every touched word is now non-zero. */
        set_bits(bitmap, level + 1, first_word, last_word);
    }
    return newly_set;
}

/* Clear bits first..last of a level, and the parent bits of the words that
 * became empty; returns how many bits were cleared at this level. */
static uint64_t reset_bits(struct dirty_bitmap *bitmap, unsigned level,
                           uint64_t first, uint64_t last)
{
    uint64_t *words = bitmap->levels[level];
    uint64_t first_word = first / BITS_PER_WORD;
    uint64_t last_word = last / BITS_PER_WORD;
    uint64_t cleared = 0;

    for (uint64_t w = first_word; w <= last_word; w++) {
        unsigned lo = w == first_word ? first % BITS_PER_WORD : 0;
        unsigned hi = w == last_word ? last % BITS_PER_WORD
                                     : BITS_PER_WORD - 1;
        uint64_t mask = word_mask(lo, hi);
        cleared += __builtin_popcountll(mask & words[w]);
        words[w] &= ~mask;
    }
    if (level + 1 < bitmap->nlevels) {
        /* Words strictly inside the range are now empty; the two end words
         * may still hold bits outside it. */
        uint64_t lo = words[first_word] ? first_word + 1 : first_word;
        uint64_t hi = words[last_word] ? last_word : last_word + 1;
        if (lo < hi) {
            reset_bits(bitmap, level + 1, lo, hi - 1);
        }
    }
    return cleared;
}

/* First set bit at or after pos in a level, or -1. */
static int64_t find_next_set(const struct dirty_bitmap *bitmap,
                             unsigned level, uint64_t pos)
{
    const uint64_t *words = bitmap->levels[level];

    if (pos >= bitmap->nbits[level]) {
        return -1;
    }
    uint64_t w = pos / BITS_PER_WORD;
    uint64_t word = words[w] & (~0ULL << (pos % BITS_PER_WORD));
    if (word) {
        return w * BITS_PER_WORD + __builtin_ctzll(word);
    }
    if (level + 1 == bitmap->nlevels) {
        return -1; /* the top level is a single word */
    }
    int64_t next_word = find_next_set(bitmap, level + 1, w + 1);
    if (next_word < 0) {
        return -1;
    }
    return next_word * BITS_PER_WORD + __builtin_ctzll(words[next_word]);
}

/* First clear bit of level 0 in [pos, limit), or limit. */
static uint64_t find_next_clear(const struct dirty_bitmap *bitmap,
                                uint64_t pos, uint64_t limit)
{
    const uint64_t *words = bitmap->levels[0];

    while (pos < limit) {
        uint64_t w = pos / BITS_PER_WORD;
        uint64_t word = ~words[w] & (~0ULL << (pos % BITS_PER_WORD));
        if (word) {
            return MIN(w * BITS_PER_WORD + __builtin_ctzll(word), limit);
        }
        pos = (w + 1) * BITS_PER_WORD;
    }
    return limit;
}

/* The chunk range [*first, *last] touched by a byte range, clipped to the
 * bitmap; false if it is empty. */
static bool chunk_range(const struct dirty_bitmap *bitmap, uint64_t offset,
                        uint64_t len, uint64_t *first, uint64_t *last)
{
    if (len == 0 || offset >= bitmap->size) {
        return false;
    }
    uint64_t end = offset + MIN(len, bitmap->size - offset);
    *first = offset >> bitmap->chunk_shift;
    *last = (end - 1) >> bitmap->chunk_shift;
    return true;
}

void dirty_bitmap_set(struct dirty_bitmap *bitmap, uint64_t offset,
                      uint64_t len)
{
    uint64_t first, last;

    if (!chunk_range(bitmap, offset, len, &first, &last)) {
        return;
    }
    pthread_mutex_lock(&bitmap->lock);
    bitmap->dirty_chunks += set_bits(bitmap, 0, first, last);
    pthread_mutex_unlock(&bitmap->lock);
}

void dirty_bitmap_reset(struct dirty_bitmap *bitmap, uint64_t offset,
                        uint64_t len)
{
    uint64_t first, last;

    if (!chunk_range(bitmap, offset, len, &first, &last)) {
        return;
    }
    pthread_mutex_lock(&bitmap->lock);
    bitmap->dirty_chunks -= reset_bits(bitmap, 0, first, last);
    pthread_mutex_unlock(&bitmap->lock);
}

void dirty_bitmap_set_all(struct dirty_bitmap *bitmap)
{
    dirty_bitmap_set(bitmap, 0, bitmap->size);
}

void dirty_bitmap_reset_all(struct dirty_bitmap *bitmap)
{
    pthread_mutex_lock(&bitmap->lock);
    for (unsigned level = 0; level < bitmap->nlevels; level++) {
        memset(bitmap->levels[level], 0,
               MAX(words_for(bitmap->nbits[level]), 1) * sizeof(uint64_t));
    }
    bitmap->dirty_chunks = 0;
    pthread_mutex_unlock(&bitmap->lock);
}

bool dirty_bitmap_get(struct dirty_bitmap *bitmap, uint64_t offset)
{
    if (offset >= bitmap->size) {
        return false;
    }
    uint64_t bit = offset >> bitmap->chunk_shift;
    pthread_mutex_lock(&bitmap->lock);
    bool dirty = bitmap->levels[0][bit / BITS_PER_WORD] &
                 (1ULL << (bit % BITS_PER_WORD));
    pthread_mutex_unlock(&bitmap->lock);
    return dirty;
}

uint64_t dirty_bitmap_count(struct dirty_bitmap *bitmap)
{
    pthread_mutex_lock(&bitmap->lock);
    uint64_t bytes = bitmap->dirty_chunks << bitmap->chunk_shift;
    uint64_t last_bit = bitmap->nbits[0] - 1;
    if (bitmap->nbits[0] > 0 &&
        bitmap->levels[0][last_bit / BITS_PER_WORD] &
        (1ULL << (last_bit % BITS_PER_WORD))) {
        /* The last chunk may extend past the end of the disk. */
        bytes -= (bitmap->nbits[0] << bitmap->chunk_shift) - bitmap->size;
    }
    pthread_mutex_unlock(&bitmap->lock);
    return bytes;
}

/* First dirty chunk whose start lies in [chunk of offset, end), or -1.
 * Called with the lock held. */
static int64_t next_dirty_chunk(const struct dirty_bitmap *bitmap,
                                uint64_t offset, uint64_t end)
{
    end = MIN(end, bitmap->size);
    if (offset >= end) {
        return -1;
    }
    int64_t bit = find_next_set(bitmap, 0, offset >> bitmap->chunk_shift);
    if (bit < 0 || ((uint64_t)bit << bitmap->chunk_shift) >= end) {
        return -1;
    }
    return bit;
}

int64_t dirty_bitmap_next_dirty(struct dirty_bitmap *bitmap, uint64_t offset,
                                uint64_t end)
{
    pthread_mutex_lock(&bitmap->lock);
    int64_t bit = next_dirty_chunk(bitmap, offset, end);
    pthread_mutex_unlock(&bitmap->lock);
    return bit < 0 ? -1 : bit << bitmap->chunk_shift;
}

/* Find the dirty area as dirty_bitmap_next_dirty_area() describes, as chunk
 * numbers [*first, *first + *count).  Called with the lock held. */
static bool find_dirty_area(const struct dirty_bitmap *bitmap,
                            uint64_t offset, uint64_t end, uint64_t max_len,
                            uint64_t *first, uint64_t *count)
{
    int64_t start = next_dirty_chunk(bitmap, offset, end);
    if (start < 0) {
        return false;
    }
    end = MIN(end, bitmap->size);
    uint64_t end_chunk = ((end - 1) >> bitmap->chunk_shift) + 1;
    uint64_t max_chunks = MAX(max_len >> bitmap->chunk_shift, 1);
    uint64_t limit = (uint64_t)start + MIN(max_chunks, end_chunk - start);

    *first = start;
    *count = find_next_clear(bitmap, start, limit) - start;
    return true;
}

/* Turn a chunk run into bytes, clipped to the bitmap's size. */
static void area_to_bytes(const struct dirty_bitmap *bitmap, uint64_t first,
                          uint64_t count, uint64_t *offset, uint64_t *len)
{
    *offset = first << bitmap->chunk_shift;
    *len = MIN(count << bitmap->chunk_shift, bitmap->size - *offset);
}

bool dirty_bitmap_next_dirty_area(struct dirty_bitmap *bitmap,
                                  uint64_t *offset, uint64_t end,
                                  uint64_t max_len, uint64_t *len)
{
    uint64_t first, count;

    pthread_mutex_lock(&bitmap->lock);
    bool found = find_dirty_area(bitmap, *offset, end, max_len, &first,
                                 &count);
    pthread_mutex_unlock(&bitmap->lock);
    if (found) {
        area_to_bytes(bitmap, first, count, offset, len);
    }
    return found;
}

bool dirty_bitmap_take_dirty_area(struct dirty_bitmap *bitmap,
                                  uint64_t *offset, uint64_t end,
                                  uint64_t max_len, uint64_t *len)
{
    uint64_t first, count;

    pthread_mutex_lock(&bitmap->lock);
    bool found = find_dirty_area(bitmap, *offset, end, max_len, &first,
                                 &count);
    if (found) {
        bitmap->dirty_chunks -= reset_bits(bitmap, 0, first,
                                           first + count - 1);
    }
    pthread_mutex_unlock(&bitmap->lock);
    if (found) {
        area_to_bytes(bitmap, first, count, offset, len);
    }
    return found;
}

void dirty_bitmap_for_each_run(struct dirty_bitmap *bitmap,
                               bool (*fn)(void *opaque, uint64_t offset,
                                          uint64_t len),
                               void *opaque)
{
    uint64_t pos = 0, first, count, offset, len;

    pthread_mutex_lock(&bitmap->lock);
    while (find_dirty_area(bitmap, pos, bitmap->size, UINT64_MAX, &first,
                           &count)) {
        area_to_bytes(bitmap, first, count, &offset, &len);
        if (!fn(opaque, offset, len)) {
            break;
        }
        pos = (first + count) << bitmap->chunk_shift;
    }
    pthread_mutex_unlock(&bitmap->lock);
}

/* A snapshot of runs, so dst's lock is never taken under src's. */
static bool collect_run(void *opaque, uint64_t offset, uint64_t len)
{
    uint64_t run[2] = { offset, len };
    g_array_append_vals(opaque, run, 2);
    return true;
}

void dirty_bitmap_merge(struct dirty_bitmap *dst, struct dirty_bitmap *src)
{
    GArray *runs = g_array_new(false, false, sizeof(uint64_t));

    dirty_bitmap_for_each_run(src, collect_run, runs);
    for (guint i = 0; i + 1 < runs->len; i += 2) {
        dirty_bitmap_set(dst, g_array_index(runs, uint64_t, i),
                         g_array_index(runs, uint64_t, i + 1));
    }
    g_array_unref(runs);
}

uint64_t dirty_bitmap_chunks(const struct dirty_bitmap *bitmap)
{
    return bitmap->nbits[0];
}

bool dirty_bitmap_serialize(struct dirty_bitmap *bitmap, uint64_t first_chunk,
                            size_t nbytes, void *buf)
{
    uint8_t *out = buf;
    uint64_t first_word = first_chunk / BITS_PER_WORD;
    uint64_t nwords = words_for(bitmap->nbits[0]);
    bool any = false;

    g_assert(first_chunk % BITS_PER_WORD == 0);
    memset(buf, 0, nbytes);
    pthread_mutex_lock(&bitmap->lock);
    for (size_t i = 0; i * 8 < nbytes && first_word + i < nwords; i++) {
        uint64_t word = htole64(bitmap->levels[0][first_word + i]);
        memcpy(out + i * 8, &word, MIN(8, nbytes - i * 8));
        any |= word != 0;
    }
    pthread_mutex_unlock(&bitmap->lock);
    return any;
}

void dirty_bitmap_deserialize(struct dirty_bitmap *bitmap,
                              uint64_t first_chunk, size_t nbytes,
                              const void *buf)
{
    const uint8_t *in = buf;
    uint64_t nbits = bitmap->nbits[0];

    g_assert(first_chunk % BITS_PER_WORD == 0);
    pthread_mutex_lock(&bitmap->lock);
    for (size_t i = 0; i * 8 < nbytes; i++) {
        uint64_t word = 0;
        uint64_t bit0 = first_chunk + i * BITS_PER_WORD;
        if (bit0 >= nbits) {
            break;
        }
        memcpy(&word, in + i * 8, MIN(8, nbytes - i * 8));
        word = le64toh(word);
        if (nbits - bit0 < BITS_PER_WORD) {
            word &= word_mask(0, nbits - bit0 - 1);
        }
        /* Set run by run, so the upper levels stay exact. */
        while (word) {
            unsigned lo = __builtin_ctzll(word);
            uint64_t rest = ~word & (~0ULL << lo);
            unsigned hi = rest ? __builtin_ctzll(rest) - 1 : BITS_PER_WORD - 1;
            bitmap->dirty_chunks += set_bits(bitmap, 0, bit0 + lo, bit0 + hi);
            word &= ~word_mask(lo, hi);
        }
    }
    pthread_mutex_unlock(&bitmap->lock);
}
