/* chainfs: allocation maps of read-only backing layers (see layer-map.h). */
#include <errno.h>
#include <string.h>

#include "layer-map.h"

struct layer_map {
    size_t count;
    struct layer_extent extents[];
};

/* A node that was tried and is too fragmented to map. */
static struct layer_map unmappable;

static bool may_map(const struct block_node *node)
{
    return node->read_only && node->depth > 0;
}

/* Build node's map with one driver status call per run: NULL when the
 * driver fails (the caller asks the driver itself) or &unmappable. */
static struct layer_map *build(struct block_node *node)
{
    g_autoptr(GArray) extents = g_array_new(false, false,
                                            sizeof(struct layer_extent));
    uint64_t offset = 0;

    while (offset < node->size) {
        uint64_t n;
        int status = node->driver->block_status(node, offset,
                                                node->size - offset, &n);
        if (status < 0 || n == 0) {
            return NULL;
        }
        if (status & BLOCK_STATUS_ALLOCATED) {
            struct layer_extent *last = extents->len == 0 ? NULL :
                &g_array_index(extents, struct layer_extent,
                               extents->len - 1);
            if (last && last->end == offset && last->status == status) {
                last->end += n;
            } else if (extents->len == LAYER_MAP_MAX_EXTENTS) {
                return &unmappable;
            } else {
                struct layer_extent e = { offset, offset + n, status };
                g_array_append_val(extents, e);
            }
        }
        offset += n;
    }
    struct layer_map *map = g_malloc(sizeof(*map) + extents->len *
                                     sizeof(struct layer_extent));
    map->count = extents->len;
    if (extents->len > 0) {
        memcpy(map->extents, extents->data,
               extents->len * sizeof(struct layer_extent));
    }
    return map;
}

static struct layer_map *get_map(struct block_node *node)
{
    struct layer_map *map = __atomic_load_n(&node->layer_map,
                                            __ATOMIC_ACQUIRE);
    if (map) {
        return map;
    }
    map = build(node);
    if (!map) {
        return NULL;
    }
    struct layer_map *expected = NULL;
    if (!__atomic_compare_exchange_n(&node->layer_map, &expected, map, false,
                                     __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
        if (map != &unmappable) {
            g_free(map);
        }
        map = expected;
    }
    return map;
}

/* The status of [offset, offset + len) from map: the first extent that
 * ends after offset decides. */
static int map_status(const struct layer_map *map, uint64_t offset,
                      uint64_t len, uint64_t *pnum)
{
    size_t lo = 0, hi = map->count;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (map->extents[mid].end <= offset) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    if (lo == map->count) {
        *pnum = len;
        return 0;
    }
    const struct layer_extent *e = &map->extents[lo];
    if (e->start > offset) {
        *pnum = MIN(len, e->start - offset);
        return 0;
    }
    *pnum = MIN(len, e->end - offset);
    return e->status;
}

int layer_status(struct block_node *node, uint64_t offset, uint64_t len,
                 uint64_t *pnum)
{
    if (may_map(node) && len > 0) {
        struct layer_map *map = get_map(node);
        if (map && map != &unmappable) {
            return map_status(map, offset, len, pnum);
        }
    }
    return node->driver->block_status(node, offset, len, pnum);
}

bool layer_map_unallocated(struct block_node *node, uint64_t offset,
                           uint64_t len, uint64_t *pnum)
{
    if (!may_map(node) || len == 0) {
        return false;
    }
    struct layer_map *map = get_map(node);
    return map && map != &unmappable && map_status(map, offset, len, pnum) == 0;
}

bool layer_map_extents(struct block_node *node,
                       const struct layer_extent **extents, size_t *count)
{
    if (!may_map(node)) {
        return false;
    }
    struct layer_map *map = get_map(node);
    if (!map || map == &unmappable) {
        return false;
    }
    *extents = map->extents;
    *count = map->count;
    return true;
}

void layer_map_clear(struct block_node *node)
{
    struct layer_map *map = node->layer_map;
    node->layer_map = NULL;
    if (map != &unmappable) {
        g_free(map);
    }
}

size_t layer_map_bytes(struct block_node *node)
{
    struct layer_map *map = __atomic_load_n(&node->layer_map,
                                            __ATOMIC_ACQUIRE);
    if (!map || map == &unmappable) {
        return 0;
    }
    return sizeof(*map) + map->count * sizeof(struct layer_extent);
}
