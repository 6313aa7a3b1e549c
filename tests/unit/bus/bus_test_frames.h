/* Frames built for the bus unit tests (test_bus_codec.c, test_bus_evbuffer.c).
 * Include after <cmocka.h> and "bus/bus_codec.h". */
#ifndef EVS_BUS_TEST_FRAMES_H
#define EVS_BUS_TEST_FRAMES_H

#include <string.h>

/* Builds a whole EVENT frame into out (which must be large enough for the
 * frame, not for BUS_EVENT_HEAD_MAX: the head is built aside first). Its id
 * is run 1, number seq. */
static inline size_t build_event(uint8_t *out, uint64_t seq, const char *type, const char *message)
{
    uint8_t head[BUS_EVENT_HEAD_MAX];
    size_t message_len = strlen(message);
    size_t head_len =
        bus_encode_event_head(head, BUS_KIND_EVENT, seq, 1, seq, type, strlen(type), message_len);

    assert_true(head_len > 0);
    memcpy(out, head, head_len);
    memcpy(out + head_len, message, message_len);
    return head_len + message_len;
}

#endif
