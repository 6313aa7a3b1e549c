#include "bus/redis_stream.h"

#include <stdio.h>
#include <string.h>

#include "core/error_message.h"

int redis_stream_check(const char *name, char *err, size_t err_len)
{
    size_t len = name ? strnlen(name, REDIS_STREAM_MAX + 1) : 0;
    if (len == 0 || len > REDIS_STREAM_MAX) {
        error_message_format(err, err_len, "REDIS_STREAM must be 1 to %d bytes", REDIS_STREAM_MAX);
        return -1;
    }
    for (size_t i = 0; i < len; i++) {
        if ((unsigned char)name[i] <= 0x20 || name[i] == 0x7f) {
            error_message_format(err, err_len, "REDIS_STREAM holds a space or a control character");
            return -1;
        }
    }
    return 0;
}

void redis_stream_meta_key(const char *name, char *out)
{
    snprintf(out, REDIS_STREAM_META_MAX + 1, "%s" REDIS_STREAM_META_SUFFIX, name);
}
