/* chainfs: owner maps of read-only stretches of a chain (see owner-map.h). */
#include <stdlib.h>
#include <string.h>

#include "layer-map.h"
#include "owner-map.h"

/* An owner_extent's status for a layer's past-the-end range. */
#define OWNER_STATUS_PAST_END (1 << 16)

/* From start to the next extent's start (the last: to the end of
 * everything), layer decides: index into owner_map.layers; layer_count
 * means below. */
struct owner_extent {
    uint64_t start;
    uint32_t layer;
    int32_t status;         /* the owner's block status, PAST_END, or 0 */
};

/* What a map was built over, to check that the chain still is that. */
struct owner_layer {
    struct block_node *node;
    uint64_t size;
    uint64_t reopens;
};

struct owner_map {
    uint64_t epoch;             /* atomic: the epoch it was checked at */
    unsigned layer_count;       /* layers of the stretch */
    struct owner_layer *layers; /* layer_count + 1: the last is below */
    size_t count;               /* extents; 0: the map is not used */
    struct owner_extent *extents;
};

/* Bumped by every reopen and every layer made a backing layer. */
static uint64_t layers_epoch = 1;

static bool may_own(const struct block_node *node)
{
    return node->read_only && node->depth > 0 && node->backing;
}

/* A layer extent, or the range past the end of a layer, tagged with its
 * layer. */
struct owner_input {
    uint64_t start;
    uint64_t end;
    uint32_t layer;
    int32_t status;
};

static int compare_input_start(const void *a, const void *b)
{
    const struct owner_input *x = a, *y = b;
    return x->start < y->start ? -1 : x->start > y->start;
}

/* A binary min-heap of input indices, topmost layer first. */
struct input_heap {
    const struct owner_input *inputs;
    size_t *items;
    size_t len;
};

static bool heap_less(const struct input_heap *h, size_t a, size_t b)
{
    return h->inputs[h->items[a]].layer < h->inputs[h->items[b]].layer;
}

static void heap_swap(struct input_heap *h, size_t a, size_t b)
{
    size_t t = h->items[a];
    h->items[a] = h->items[b];
    h->items[b] = t;
}

static void heap_push(struct input_heap *h, size_t input)
{
    size_t i = h->len++;
    h->items[i] = input;
    while (i > 0 && heap_less(h, i, (i - 1) / 2)) {
        heap_swap(h, i, (i - 1) / 2);
        i = (i - 1) / 2;
    }
}

static void heap_pop(struct input_heap *h)
{
    size_t i = 0;
    h->items[0] = h->items[--h->len];
    for (;;) {
        size_t least = i, l = 2 * i + 1, r = l + 1;
        if (l < h->len && heap_less(h, l, least)) {
            least = l;
        }
        if (r < h->len && heap_less(h, r, least)) {
            least = r;
        }
        if (least == i) {
            return;
        }
        heap_swap(h, i, least);
        i = least;
    }
}

static void emit(GArray *out, uint64_t start, uint32_t layer, int32_t status)
{
    if (out->len > 0) {
        const struct owner_extent *last =
            &g_array_index(out, struct owner_extent, out->len - 1);
        if (last->layer == layer && last->status == status) {
            return;
        }
    }
    struct owner_extent e = { start, layer, status };
    g_array_append_val(out, e);
}

/* Partition [0, end of everything) by the topmost input covering each
 * point (below: layer_count): a sweep over the inputs sorted by start,
 * with the inputs that cover the sweep point in a heap (those that ended
 * are dropped when they reach the top). */
static GArray *merge(GArray *inputs, uint32_t layer_count)
{
    GArray *out = g_array_new(false, false, sizeof(struct owner_extent));
    const struct owner_input *in = (const struct owner_input *)inputs->data;
    g_autofree size_t *items = g_new(size_t, inputs->len + 1);
    struct input_heap heap = { in, items, 0 };
    size_t next = 0;

    qsort(inputs->data, inputs->len, sizeof(*in), compare_input_start);
    for (uint64_t pos = 0; pos < UINT64_MAX;) {
        while (next < inputs->len && in[next].start <= pos) {
            heap_push(&heap, next++);
        }
        while (heap.len > 0 && in[items[0]].end <= pos) {
            heap_pop(&heap);
        }
        uint64_t boundary = next < inputs->len ? in[next].start : UINT64_MAX;
        if (heap.len > 0) {
            const struct owner_input *top = &in[items[0]];
            emit(out, pos, top->layer, top->status);
            boundary = MIN(boundary, top->end);
        } else {
            emit(out, pos, layer_count, 0);
        }
        pos = boundary;
    }
    return out;
}

static struct owner_layer layer_of(struct block_node *node)
{
    return (struct owner_layer){ node, node->size, node->reopens };
}

/* Build the map of the stretch from head down (see owner-map.h). */
static struct owner_map *build(struct block_node *head, uint64_t epoch)
{
    g_autoptr(GArray) layers = g_array_new(false, false,
                                           sizeof(struct owner_layer));
    g_autoptr(GArray) inputs = g_array_new(false, false,
                                           sizeof(struct owner_input));
    struct block_node *node = head;

    for (; node->backing && node->read_only; node = node->backing) {
        const struct layer_extent *extents;
        size_t count;
        if (!layer_map_extents(node, &extents, &count) ||
            inputs->len + count + 1 > OWNER_MAP_MAX_EXTENTS) {
            break;
        }
        uint32_t index = layers->len;
        for (size_t i = 0; i < count; i++) {
            struct owner_input in = { extents[i].start, extents[i].end,
                                      index, extents[i].status };
            g_array_append_val(inputs, in);
        }
        struct owner_input past_end = { node->size, UINT64_MAX, index,
                                        OWNER_STATUS_PAST_END };
        g_array_append_val(inputs, past_end);
        struct owner_layer layer = layer_of(node);
        g_array_append_val(layers, layer);
    }
    struct owner_layer below = layer_of(node);
    g_array_append_val(layers, below);

    unsigned layer_count = layers->len - 1;
    g_autoptr(GArray) extents = layer_count < 2 ?
        g_array_new(false, false, sizeof(struct owner_extent)) :
        merge(inputs, layer_count);
    size_t layer_bytes = layers->len * sizeof(struct owner_layer);
    size_t extent_bytes = extents->len * sizeof(struct owner_extent);
    struct owner_map *map = g_malloc(sizeof(*map) + layer_bytes +
                                     extent_bytes);
    map->epoch = epoch;
    map->layer_count = layer_count;
    map->layers = (struct owner_layer *)(map + 1);
    memcpy(map->layers, layers->data, layer_bytes);
    map->count = extents->len;
    map->extents = (struct owner_extent *)((char *)map->layers + layer_bytes);
    if (extent_bytes > 0) {
        memcpy(map->extents, extents->data, extent_bytes);
    }
    return map;
}

/* Whether the chain from head down is still what map was built over. */
static bool map_matches(const struct owner_map *map, struct block_node *head)
{
    struct block_node *node = head;

    for (unsigned i = 0; i <= map->layer_count; i++) {
        const struct owner_layer *layer = &map->layers[i];
        if (node != layer->node || node->size != layer->size ||
            node->reopens != layer->reopens ||
            (i < map->layer_count && !node->read_only)) {
            return false;
        }
        node = node->backing;
    }
    return true;
}

/* node's map, built if need be and checked at the current epoch; NULL
 * when it does not match the chain (until a drain sweeps it away). */
static struct owner_map *get_map(struct block_node *node)
{
    uint64_t epoch = __atomic_load_n(&layers_epoch, __ATOMIC_ACQUIRE);
    struct owner_map *map = __atomic_load_n(&node->owner_map,
                                            __ATOMIC_ACQUIRE);
    if (!map) {
        map = build(node, epoch);
        struct owner_map *expected = NULL;
        if (__atomic_compare_exchange_n(&node->owner_map, &expected, map,
                                        false, __ATOMIC_ACQ_REL,
                                        __ATOMIC_ACQUIRE)) {
            return map;
        }
        g_free(map);
        map = expected;
    }
    if (__atomic_load_n(&map->epoch, __ATOMIC_ACQUIRE) != epoch) {
        if (!map_matches(map, node)) {
            return NULL;
        }
        __atomic_store_n(&map->epoch, epoch, __ATOMIC_RELEASE);
    }
    return map;
}

bool owner_map_lookup(struct block_node *node, uint64_t offset, uint64_t len,
                      struct owner_run *run)
{
    if (!may_own(node)) {
        return false;
    }
    const struct owner_map *map = get_map(node);
    if (!map || map->count == 0) {
        return false;
    }
    /* The first extent that starts after offset; the one before it (the
     * first starts at 0) decides. */
    size_t lo = 0, hi = map->count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (map->extents[mid].start <= offset) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    const struct owner_extent *e = &map->extents[lo - 1];
    uint64_t end = lo < map->count ? map->extents[lo].start : UINT64_MAX;
    run->len = MIN(len, end - offset);
    run->node = map->layers[e->layer].node;
    run->layer = e->layer;
    run->status = 0;
    if (e->layer == map->layer_count) {
        run->kind = OWNER_BELOW;
    } else if (e->status == OWNER_STATUS_PAST_END) {
        run->kind = OWNER_PAST_END;
    } else {
        run->kind = OWNER_LAYER;
        run->status = e->status;
    }
    return true;
}

void owner_maps_layer_changed(struct block_node *node)
{
    node->reopens++;
    __atomic_add_fetch(&layers_epoch, 1, __ATOMIC_ACQ_REL);
}

void owner_map_clear(struct block_node *node)
{
    g_free(node->owner_map);
    node->owner_map = NULL;
}

void owner_maps_clear_drained(struct block_node *top)
{
    for (struct block_node *node = top; node; node = node->backing) {
        owner_map_clear(node);
    }
}

void owner_maps_sweep_drained(struct block_node *top)
{
    uint64_t epoch = __atomic_load_n(&layers_epoch, __ATOMIC_ACQUIRE);

    for (struct block_node *node = top; node; node = node->backing) {
        struct owner_map *map = node->owner_map;
        if (!map || __atomic_load_n(&map->epoch, __ATOMIC_RELAXED) == epoch) {
            continue;
        }
        if (map_matches(map, node)) {
            __atomic_store_n(&map->epoch, epoch, __ATOMIC_RELAXED);
        } else {
            owner_map_clear(node);
        }
    }
}

size_t owner_map_bytes(struct block_node *node, unsigned *layers)
{
    const struct owner_map *map = __atomic_load_n(&node->owner_map,
                                                  __ATOMIC_ACQUIRE);
    if (layers) {
        *layers = map && map->count ? map->layer_count : 0;
    }
    if (!map || map->count == 0) {
        return 0;
    }
    return sizeof(*map) + (map->layer_count + 1) * sizeof(struct owner_layer) +
           map->count * sizeof(struct owner_extent);
}
