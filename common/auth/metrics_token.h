/* The bearer token that guards GET /metrics (metrics_endpoint.h), for both
 * daemons.
 *
 * It is given inline (METRICS_TOKEN / --metrics-token: as a flag it is
 * visible to every local user in ps and /proc/PID/cmdline) or, preferably,
 * in a file (METRICS_TOKEN_FILE / --metrics-token-file), never both. The
 * file holds the token alone: blanks and line ends around it are dropped
 * (so "echo token > file" works), and a file that is then empty, holds
 * more than one line or a control character is refused. It is read at
 * start (where a file that cannot be used stops the daemon: a bad setting)
 * and again when it changes and on SIGHUP (where one that cannot be used
 * keeps the previous token, with a log line: the metrics never fall open).
 */
#ifndef EVS_METRICS_TOKEN_H
#define EVS_METRICS_TOKEN_H

#include <stddef.h>

#include "core/config.h"

#define METRICS_TOKEN_FILE_MAX_BYTES 4096

struct event_base;
struct metrics_token;

struct metrics_token_settings {
    char *token; /* "" when not given */
    char *file;  /* "" when not given */
};

/* The cfg_option entries for s (a struct metrics_token_settings lvalue). */
#define METRICS_TOKEN_OPTIONS(s)                                                                   \
    {"--metrics-token",                                                                            \
     "METRICS_TOKEN",                                                                              \
     CFG_STRING,                                                                                   \
     "",                                                                                           \
     "when set, GET /metrics needs \"Authorization: Bearer <token>\" (a flag shows in ps: "        \
     "prefer --metrics-token-file)",                                                               \
     &(s).token,                                                                                   \
     0,                                                                                            \
     0},                                                                                           \
    {                                                                                              \
        "--metrics-token-file", "METRICS_TOKEN_FILE", CFG_STRING, "",                              \
            "file holding the metrics token instead, re-read when it changes and on SIGHUP",       \
            &(s).file, 0, 0                                                                        \
    }

/* Pure: the token held by a token file's text[0..len): on success returns
 * 0 with the token at text[*start..*start + *token_len); else -1 with
 * *reason ("is empty", "holds more than one line", "holds a control
 * character"; static). */
int metrics_token_parse(const char *text, size_t len, size_t *start, size_t *token_len,
                        const char **reason);

/* The token from the settings (borrowed only during the call); with a file,
 * reads it now and watches it on base. NULL with a one-line reason in err
 * when both are set, the file cannot be read or holds no usable token (a
 * bad setting: exit 2), or when out of memory. The caller frees it. */
struct metrics_token *metrics_token_open(struct event_base *base,
                                         const struct metrics_token_settings *settings, char *err,
                                         size_t err_len);

/* The current token, or NULL when none is set (/metrics is open). Borrowed
 * until the next reload: ask again for each request. t may be NULL. */
const char *metrics_token_get(const struct metrics_token *t);

/* Re-reads the file now (SIGHUP); no-op without one. reason is for the log. */
void metrics_token_reload(struct metrics_token *t, const char *reason);

/* NULL: no-op. */
void metrics_token_free(struct metrics_token *t);

#endif
