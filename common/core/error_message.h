/* Writing a reason into a caller's error buffer: the `char *err, size_t
 * err_len` pair that fallible functions take as their last arguments. Pure. */
#ifndef EVS_ERROR_MESSAGE_H
#define EVS_ERROR_MESSAGE_H

#include <stdarg.h>
#include <stddef.h>

/* Formats like snprintf into err, truncated to err_len - 1 bytes and always
 * terminated. Does nothing when err is NULL or err_len is 0, so callers may
 * pass either when they do not want the reason. */
void error_message_format(char *err, size_t err_len, const char *format, ...)
    __attribute__((format(printf, 3, 4)));

/* The same, from a va_list, for functions that take a format of their own. */
void error_message_vformat(char *err, size_t err_len, const char *format, va_list ap)
    __attribute__((format(printf, 3, 0)));

#endif
