/* chainfs: deadlines for pthread_cond_timedwait on condition variables
 * that wait on CLOCK_MONOTONIC (pthread_condattr_setclock), so that
 * changes of the wall clock never cut a wait short or stretch it. */
#ifndef CHAINFS_DEADLINE_H
#define CHAINFS_DEADLINE_H

#include <stdint.h>
#include <time.h>

/* The monotonic time ns nanoseconds from now (capped at about 68 years,
 * which keeps tv_sec from overflowing). */
static inline struct timespec deadline_after_ns(uint64_t ns)
{
    const uint64_t max_ns = (uint64_t)INT32_MAX * 1000000000ull;
    struct timespec deadline;

    if (ns > max_ns) {
        ns = max_ns;
    }
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += ns / 1000000000ull;
    deadline.tv_nsec += ns % 1000000000ull;
    if (deadline.tv_nsec >= 1000000000) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000;
    }
    return deadline;
}

/* The same, from microseconds. */
static inline struct timespec deadline_after_us(uint64_t us)
{
    return deadline_after_ns(us > UINT64_MAX / 1000 ? UINT64_MAX : us * 1000);
}

#endif
