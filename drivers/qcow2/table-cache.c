/* chainfs qcow2: a bounded write-back cache of cluster-sized tables.
 *
 * Used for L2 tables and refcount blocks.  Entries are kept in an LRU
 * queue; when the cache is full the least recently used unpinned entry is
 * evicted, written back first if dirty.  The owner's before_writeback hook
 * runs before such a write so that the owner can honour write ordering
 * (L2 tables only after the refcount blocks they depend on are durable).
 *
 * The bound is a ceiling, not a size: the cache starts small and grows
 * only when it misses a table it evicted a short while ago, the sign that
 * a bigger cache would have hit.  A scan that touches each table once (the
 * st_blocks walk over a huge sparse disk, a job's pass) so stays small,
 * while random I/O over a big disk grows the cache to the ceiling.  The
 * evicted offsets remembered for that test cost 8 bytes each.
 */
#include <errno.h>

#include "qcow2.h"

/* Entries a cache starts with (and at least holds: one operation may pin
 * two or three tables). */
#define TABLE_CACHE_MIN_ENTRIES 8

struct table_cache {
    int fd;
    size_t table_size;
    unsigned max_entries;    /* the ceiling */
    unsigned capacity;       /* the current bound, <= max_entries */
    uint64_t *evicted;       /* ring of the last max_entries evicted offsets */
    unsigned evicted_next;   /* where the next one goes */
    unsigned evicted_count;
    GHashTable *by_offset;   /* uint64_t offset -> struct table_entry * */
    GQueue lru;              /* head: most recently used */
    int (*before_writeback)(void *opaque);
    int (*check_write)(void *opaque, uint64_t offset);
    void *opaque;
};

struct table_cache *table_cache_new(int fd, size_t table_size,
                                    size_t max_bytes,
                                    int (*before_writeback)(void *opaque),
                                    int (*check_write)(void *opaque,
                                                       uint64_t offset),
                                    void *opaque)
{
    struct table_cache *cache = g_new0(struct table_cache, 1);

    cache->fd = fd;
    cache->table_size = table_size;
    cache->max_entries = MAX(max_bytes / table_size, 4);
    cache->capacity = MIN(cache->max_entries, TABLE_CACHE_MIN_ENTRIES);
    cache->evicted = g_new(uint64_t, cache->max_entries);
    cache->by_offset = g_hash_table_new(g_int64_hash, g_int64_equal);
    g_queue_init(&cache->lru);
    cache->before_writeback = before_writeback;
    cache->check_write = check_write;
    cache->opaque = opaque;
    return cache;
}

static void entry_free(struct table_entry *entry)
{
    g_free(entry->data);
    g_free(entry);
}

void table_cache_free(struct table_cache *cache)
{
    if (!cache) {
        return;
    }
    GList *link;
    while ((link = g_queue_pop_head_link(&cache->lru))) {
        entry_free(link->data);
    }
    g_hash_table_destroy(cache->by_offset);
    g_free(cache->evicted);
    g_free(cache);
}

int table_cache_write(struct table_cache *cache, struct table_entry *entry)
{
    if (cache->check_write) {
        int ret = cache->check_write(cache->opaque, entry->offset);
        if (ret < 0) {
            return ret;
        }
    }
    int ret = host_pwrite(cache->fd, entry->data, cache->table_size,
                          entry->offset);
    if (ret == 0) {
        entry->dirty = false;
    }
    return ret;
}

static void remember_evicted(struct table_cache *cache, uint64_t offset)
{
    cache->evicted[cache->evicted_next] = offset;
    cache->evicted_next = (cache->evicted_next + 1) % cache->max_entries;
    cache->evicted_count = MIN(cache->evicted_count + 1, cache->max_entries);
}

/* A miss on offset: grow the bound by one if the table was evicted
 * recently.  A linear search: misses read a whole table from the host,
 * which costs far more than a few dozen compares. */
static void grow_on_recent_miss(struct table_cache *cache, uint64_t offset)
{
    if (cache->capacity == cache->max_entries) {
        return;
    }
    for (unsigned i = 0; i < cache->evicted_count; i++) {
        if (cache->evicted[i] == offset) {
            cache->capacity++;
            return;
        }
    }
}

/* Make room for one more entry by evicting the LRU unpinned one. */
static int evict_one(struct table_cache *cache)
{
    for (GList *link = cache->lru.tail; link; link = link->prev) {
        struct table_entry *entry = link->data;
        if (entry->pins > 0) {
            continue;
        }
        if (entry->dirty) {
            int ret = 0;
            if (cache->before_writeback) {
                ret = cache->before_writeback(cache->opaque);
            }
            if (ret == 0) {
                ret = table_cache_write(cache, entry);
            }
            if (ret < 0) {
                return ret;
            }
        }
        g_queue_unlink(&cache->lru, link);
        g_hash_table_remove(cache->by_offset, &entry->offset);
        remember_evicted(cache, entry->offset);
        entry_free(entry);
        return 0;
    }
    /* Everything pinned: grow past the bound rather than fail. */
    return 0;
}

int table_cache_get(struct table_cache *cache, uint64_t offset, bool load,
                    struct table_entry **out)
{
    struct table_entry *entry = g_hash_table_lookup(cache->by_offset,
                                                    &offset);
    if (entry) {
        g_queue_unlink(&cache->lru, &entry->lru_link);
        g_queue_push_head_link(&cache->lru, &entry->lru_link);
        entry->pins++;
        *out = entry;
        return 0;
    }

    grow_on_recent_miss(cache, offset);
    while (g_queue_get_length(&cache->lru) >= cache->capacity) {
        unsigned before = g_queue_get_length(&cache->lru);
        int ret = evict_one(cache);
        if (ret < 0) {
            return ret;
        }
        if (g_queue_get_length(&cache->lru) == before) {
            break;
        }
    }

    entry = g_new0(struct table_entry, 1);
    entry->offset = offset;
    entry->data = g_malloc0(cache->table_size);
    if (load) {
        int ret = host_pread(cache->fd, entry->data, cache->table_size,
                             offset);
        if (ret < 0) {
            entry_free(entry);
            return ret;
        }
    }
    entry->lru_link.data = entry;
    entry->pins = 1;
    g_queue_push_head_link(&cache->lru, &entry->lru_link);
    g_hash_table_insert(cache->by_offset, &entry->offset, entry);
    *out = entry;
    return 0;
}

void table_cache_put(struct table_cache *cache, struct table_entry *entry)
{
    (void)cache;
    g_assert(entry->pins > 0);
    entry->pins--;
}

int table_cache_flush(struct table_cache *cache)
{
    for (GList *link = cache->lru.head; link; link = link->next) {
        struct table_entry *entry = link->data;
        if (entry->dirty) {
            int ret = table_cache_write(cache, entry);
            if (ret < 0) {
                return ret;
            }
        }
    }
    return 0;
}

bool table_cache_is_dirty(struct table_cache *cache)
{
    for (GList *link = cache->lru.head; link; link = link->next) {
        if (((struct table_entry *)link->data)->dirty) {
            return true;
        }
    }
    return false;
}

unsigned table_cache_count(struct table_cache *cache)
{
    return g_queue_get_length(&cache->lru);
}
