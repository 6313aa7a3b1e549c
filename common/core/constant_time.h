/* Comparing secrets (HMACs, token digests, the metrics token) in time that
 * depends on the length alone: an early exit at the first differing byte
 * would tell an attacker, by timing, how much of a guess was right. Pure. */
#ifndef EVS_CONSTANT_TIME_H
#define EVS_CONSTANT_TIME_H

#include <stddef.h>

/* 1 when the len bytes at a and at b are the same, else 0 (never another
 * value, so callers may use it as a mask bit); 1 when len is 0. Reads
 * every byte of both, with no branch on their content. */
unsigned constant_time_equal(const void *a, const void *b, size_t len);

#endif
