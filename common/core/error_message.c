#include "core/error_message.h"

#include <stdio.h>

void error_message_vformat(char *err, size_t err_len, const char *format, va_list ap)
{
    if (err == NULL || err_len == 0)
        return;
    vsnprintf(err, err_len, format, ap);
}

void error_message_format(char *err, size_t err_len, const char *format, ...)
{
    va_list ap;
    va_start(ap, format);
    error_message_vformat(err, err_len, format, ap);
    va_end(ap);
}
