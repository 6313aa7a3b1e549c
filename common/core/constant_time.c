#include "core/constant_time.h"

unsigned constant_time_equal(const void *a, const void *b, size_t len)
{
    const unsigned char *x = a, *y = b;
    unsigned diff = 0;
    for (size_t i = 0; i < len; i++)
        diff |= (unsigned)(x[i] ^ y[i]);
    /* diff is 0..255: bit 8 of diff - 1 is set exactly when diff == 0. */
    return ((diff - 1u) >> 8) & 1u;
}
