/* chainfs: token-bucket rate limiter (see ratelimit.h for the bound it
 * keeps).  Token credit is computed exactly in 128-bit arithmetic, carrying
 * the fraction of a byte between calls, so no rounding drift accumulates
 * at any speed from 1 byte/s to 2^63-1. */
#include "core/ratelimit.h"

#include <time.h>

#define NS_PER_SEC 1000000000ull
/* Keeps tokens, burst and debt far from int64 overflow. */
#define RATELIMIT_MAX_BYTES ((uint64_t)INT64_MAX / 4)

uint64_t ratelimit_monotonic_ns(void *opaque)
{
    struct timespec ts;

    (void)opaque;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * NS_PER_SEC + (uint64_t)ts.tv_nsec;
}

uint64_t ratelimit_default_burst(uint64_t speed)
{
    uint64_t burst = speed / 10;

    if (burst < 4096) {
        burst = 4096;
    }
    return burst > RATELIMIT_MAX_BYTES ? RATELIMIT_MAX_BYTES : burst;
}

void ratelimit_init(struct ratelimit *limit, ratelimit_clock_fn *clock_ns,
                    void *clock_opaque)
{
    *limit = (struct ratelimit) {
        .clock_ns = clock_ns ? clock_ns : ratelimit_monotonic_ns,
        .clock_opaque = clock_opaque,
    };
}

/* Credit the tokens earned since the last refill, capped at the burst. */
static void ratelimit_refill(struct ratelimit *limit, uint64_t now)
{
    unsigned __int128 earned;
    unsigned __int128 whole;

    if (now <= limit->refill_ns) {
        return;
    }
    earned = (unsigned __int128)(now - limit->refill_ns) * limit->speed +
             limit->refill_frac;
    whole = earned / NS_PER_SEC;
    limit->refill_ns = now;
    if (whole >= (unsigned __int128)((int64_t)limit->burst - limit->tokens)) {
        limit->tokens = (int64_t)limit->burst;
        limit->refill_frac = 0;
    } else {
        limit->tokens += (int64_t)whole;
        limit->refill_frac = (uint64_t)(earned % NS_PER_SEC);
    }
}

void ratelimit_set_speed(struct ratelimit *limit, uint64_t speed,
                         uint64_t burst)
{
    uint64_t now = limit->clock_ns(limit->clock_opaque);
    bool was_unlimited = limit->speed == 0;

    if (!was_unlimited) {
        /* Settle what the old speed earned, keeping any debt. */
        ratelimit_refill(limit, now);
    }
    limit->speed = speed;
    if (speed == 0) {
        return;
    }
    if (burst == 0) {
        burst = ratelimit_default_burst(speed);
    }
    limit->burst = burst > RATELIMIT_MAX_BYTES ? RATELIMIT_MAX_BYTES : burst;
    if (was_unlimited || limit->tokens > (int64_t)limit->burst) {
        limit->tokens = (int64_t)limit->burst;
    }
    limit->refill_ns = now;
    limit->refill_frac = 0;
}

uint64_t ratelimit_calculate_delay(struct ratelimit *limit, uint64_t n)
{
    uint64_t need;
    uint64_t deficit;
    unsigned __int128 wait_ns;

    if (limit->speed == 0) {
        return 0;
    }
    ratelimit_refill(limit, limit->clock_ns(limit->clock_opaque));
    if (n > RATELIMIT_MAX_BYTES) {
        n = RATELIMIT_MAX_BYTES;
    }
    need = n < limit->burst ? n : limit->burst;
    if (limit->tokens >= (int64_t)need) {
        limit->tokens -= (int64_t)n;
        return 0;
    }
    deficit = (uint64_t)((int64_t)need - limit->tokens);
    /* Round up: after sleeping this long, refill credits >= deficit. */
    wait_ns = ((unsigned __int128)deficit * NS_PER_SEC - limit->refill_frac +
               limit->speed - 1) / limit->speed;
    return wait_ns > INT64_MAX ? INT64_MAX : (uint64_t)wait_ns;
}
