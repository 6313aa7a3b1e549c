#include "core/clock.h"

#include <time.h>

#include <event2/event.h>

uint64_t clock_now_ns(void)
{
    struct timespec ts;
    /* CLOCK_MONOTONIC cannot fail on Linux with a valid pointer. */
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t clock_now_ms(void)
{
    return clock_now_ns() / 1000000u;
}

int clock_arm_at(struct event *timer, uint64_t deadline_ms)
{
    uint64_t now = clock_now_ms(), delay = deadline_ms > now ? deadline_ms - now : 0;
    struct timeval tv = {(time_t)(delay / 1000), (suseconds_t)((delay % 1000) * 1000)};
    return evtimer_add(timer, &tv);
}
