/* chainfs: a rate limiter for job copy speed.
 *
 * A token bucket measured in bytes: tokens accrue at `speed` bytes per
 * second up to `burst` bytes.  A request of n bytes is admitted when the
 * bucket holds min(n, burst) tokens, and then takes n tokens, so the
 * bucket may go into debt and later requests wait for it.  The bytes
 * admitted over any window of T seconds are thus at most
 * speed * T + burst (+ the excess of one request over burst), which is
 * "the average over any window of a second or more, with a burst of at
 * most buf-size" of the contract.
 *
 * Not thread-safe: the owner (a job) serialises calls with its own lock.
 * The clock is injectable so that tests need not sleep.
 */
#ifndef CHAINFS_RATELIMIT_H
#define CHAINFS_RATELIMIT_H

#include <stdbool.h>
#include <stdint.h>

/* Returns a monotonic time in nanoseconds. */
typedef uint64_t ratelimit_clock_fn(void *opaque);

struct ratelimit {
    ratelimit_clock_fn *clock_ns;
    void *clock_opaque;
    uint64_t speed;         /* bytes per second; 0 = unlimited */
    uint64_t burst;         /* bucket capacity in bytes, > 0 when limited */
    int64_t tokens;         /* may be negative: debt of an oversize request */
    uint64_t refill_ns;     /* clock time tokens were last credited */
    uint64_t refill_frac;   /* (ns * speed) mod 1e9 not yet a whole byte */
};

/* The default burst when none is given: 100 ms worth, at least 4 KiB. */
uint64_t ratelimit_default_burst(uint64_t speed);

/* Start unlimited, on clock (NULL: CLOCK_MONOTONIC). */
void ratelimit_init(struct ratelimit *limit, ratelimit_clock_fn *clock_ns,
                    void *clock_opaque);

/* Change the speed (0 = unlimited) and burst (0 = the default) live; a
 * change starts with a full bucket. */
void ratelimit_set_speed(struct ratelimit *limit, uint64_t speed,
                         uint64_t burst);

/* Nanoseconds to sleep before doing n bytes, or 0: go ahead now (the n
 * bytes are then accounted).  After sleeping the returned time, a call
 * with the same n returns 0 unless the speed changed meanwhile. */
uint64_t ratelimit_calculate_delay(struct ratelimit *limit, uint64_t n);

/* The monotonic clock used by default, in nanoseconds. */
uint64_t ratelimit_monotonic_ns(void *opaque);

#endif
