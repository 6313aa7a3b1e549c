/* Init message bytes -> init_message_parse, with the result's invariants. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "init_message.h"

#define FUZZ_MAX_EVENTS 1024

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct init_message msg;
    int status = init_message_parse((const char *)data, size, FUZZ_MAX_EVENTS, &msg);
    const char *code = init_status_code(status);

    if (!code || code[0] == '\0')
        abort();
    if (status != INIT_OK) {
        if (status != INIT_INVALID_SYNTAX && status != INIT_EVENTS_MISSING &&
            status != INIT_TOO_MANY_EVENTS && status != INIT_NOMEM && status != INIT_INVALID_SINCE)
            abort();
        if (msg.events || msg.event_lens || msg.event_count || msg.authentication)
            abort();
        return 0;
    }

    if (msg.event_count > FUZZ_MAX_EVENTS || (msg.event_count > 0 && !msg.events))
        abort();
    for (size_t i = 0; i < msg.event_count; i++) {
        size_t len = msg.event_lens[i];
        if (len < 1 || len > INIT_TYPE_MAX || len > size || strlen(msg.events[i]) != len)
            abort();
    }
    if (msg.authentication &&
        (msg.authentication_len > size || strlen(msg.authentication) != msg.authentication_len))
        abort();
    if (!msg.authentication && msg.authentication_len != 0)
        abort();
    /* An id to resume from is a well-formed id, and nothing else is kept. */
    if (msg.since == INIT_SINCE_ID) {
        if (!event_id_valid(msg.since_id, msg.since_len) || strlen(msg.since_id) != msg.since_len)
            abort();
    } else if (msg.since_len != 0 || msg.since_id[0] != '\0' || msg.since > INIT_SINCE_NOW) {
        abort();
    }
    init_message_clear(&msg);
    return 0;
}
