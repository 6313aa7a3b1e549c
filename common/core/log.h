/* Logging: one line per record on stderr, with a level.
 *
 * Format: "2026-11-28T05:51:17.123Z event-listen[4242] warn: <message>".
 * The message is sanitised: control characters (including CR and LF) are
 * written as "\xNN", so a record is always exactly one line whatever a
 * client sent. Never pass a token, a key or event data to these functions.
 */
#ifndef EVS_LOG_H
#define EVS_LOG_H

#include <stdbool.h>

enum log_level {
    LOG_LEVEL_ERROR = 0,
    LOG_LEVEL_WARN = 1,
    LOG_LEVEL_INFO = 2,
    LOG_LEVEL_DEBUG = 3,
};

/* Parses "error", "warn", "info" or "debug" (case-insensitive).
 * Returns 0, or -1 for any other text. */
int log_level_parse(const char *text, enum log_level *out);
const char *log_level_name(enum log_level level);

/* Process-wide settings; defaults are LOG_LEVEL_INFO and "event-server".
 * program is borrowed and must outlive every log call. */
void log_set_level(enum log_level level);
void log_set_program(const char *program);
bool log_enabled(enum log_level level);

void log_write(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_error(...) log_write(LOG_LEVEL_ERROR, __VA_ARGS__)
#define log_warn(...) log_write(LOG_LEVEL_WARN, __VA_ARGS__)
#define log_info(...) log_write(LOG_LEVEL_INFO, __VA_ARGS__)
#define log_debug(...)                                                                             \
    do {                                                                                           \
        if (log_enabled(LOG_LEVEL_DEBUG))                                                          \
            log_write(LOG_LEVEL_DEBUG, __VA_ARGS__);                                               \
    } while (0)

#endif
