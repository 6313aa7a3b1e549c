/* The monotonic clock every deadline and duration is measured on.
 *
 * CLOCK_MONOTONIC, because a wall-clock step (NTP, an operator) must
 * neither stretch nor cut a wait. Its origin is arbitrary (boot, on
 * Linux): only differences between two readings mean anything.
 */
#ifndef EVS_CLOCK_H
#define EVS_CLOCK_H

#include <stdint.h>

struct event;

/* Nanoseconds of the monotonic clock; for durations finer than a
 * millisecond (latency histograms). */
uint64_t clock_now_ns(void);

/* Milliseconds of the same clock, truncated: clock_now_ns() / 1000000. */
uint64_t clock_now_ms(void);

/* Adds the timer event (evtimer_add) so that it fires once deadline_ms
 * (on clock_now_ms) has come: at once, on the next loop turn, when it
 * already has. A timer already pending is moved to the new deadline.
 * Returns evtimer_add's result: 0, or -1. */
int clock_arm_at(struct event *timer, uint64_t deadline_ms);

#endif
