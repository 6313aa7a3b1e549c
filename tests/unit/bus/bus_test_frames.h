/* Frames built for the bus unit tests (test_bus_codec.c, test_bus_evbuffer.c).
 * Include after <cmocka.h> and "bus/bus_codec.h". */
#ifndef EVS_BUS_TEST_FRAMES_H
#define EVS_BUS_TEST_FRAMES_H

#include <string.h>

/* Builds a whole EVENT frame into out (which must be large enough). */
static inline size_t build_event(uint8_t *out, uint64_t seq, const char *type, const char *message)
{
    size_t message_len = strlen(message);
    size_t head = bus_encode_event_head(out, seq, type, strlen(type), message_len);

    assert_true(head > 0);
    memcpy(out + head, message, message_len);
    return head + message_len;
}

#endif
