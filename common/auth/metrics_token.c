/* The bearer token that guards GET /metrics: see metrics_token.h. */
#include "auth/metrics_token.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mbedtls/platform_util.h>

#include "core/log.h"
#include "auth/watched_file.h"

struct metrics_token {
    char *token;               /* owned; NULL: none set */
    struct watched_file *file; /* NULL without a file */
    bool starting;             /* inside metrics_token_open */
    char start_error[256];     /* why the first load failed ("" when it did not) */
};

static bool metrics_token_is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

int metrics_token_parse(const char *text, size_t len, size_t *start, size_t *token_len,
                        const char **reason)
{
    size_t begin = 0, end = text != NULL ? len : 0;
    while (end > begin && metrics_token_is_space(text[end - 1]))
        end--;
    while (begin < end && metrics_token_is_space(text[begin]))
        begin++;
    if (begin == end) {
        *reason = "is empty";
        return -1;
    }
    for (size_t i = begin; i < end; i++) {
        unsigned char c = (unsigned char)text[i];
        if (c == '\r' || c == '\n') {
            *reason = "holds more than one line";
            return -1;
        }
        if (c < 0x20 || c == 0x7f) {
            *reason = "holds a control character";
            return -1;
        }
    }
    *start = begin;
    *token_len = end - begin;
    return 0;
}

static void metrics_token_set(struct metrics_token *t, char *token)
{
    if (t->token != NULL) {
        mbedtls_platform_zeroize(t->token, strlen(t->token));
        free(t->token);
    }
    t->token = token;
}

static void metrics_token_loaded(void *arg, struct watched_file *file, const char *text, size_t len,
                                 int error, const char *reason)
{
    struct metrics_token *t = arg;
    const char *path = watched_file_path(file);
    const char *why = NULL;
    char *token = NULL, too_big[48];
    size_t start = 0, token_len = 0;

    snprintf(too_big, sizeof too_big, "is larger than %u bytes", METRICS_TOKEN_FILE_MAX_BYTES);

    if (text == NULL)
        why = error == EFBIG    ? too_big
              : error == EINVAL ? "is not a regular file"
                                : strerror(error);
    else if (metrics_token_parse(text, len, &start, &token_len, &why) == 0 &&
             (token = strndup(text + start, token_len)) == NULL)
        why = "out of memory";
    if (token == NULL) {
        if (t->starting)
            snprintf(t->start_error, sizeof t->start_error, "metrics token file %s: %s", path, why);
        else
            log_warn("metrics token file %s (%s): %s; keeping the previous token", path, reason,
                     why);
        return;
    }
    metrics_token_set(t, token);
    if (!t->starting)
        log_info("metrics token file %s reloaded (%s)", path, reason);
    if (watched_file_world_readable(file))
        log_warn("metrics token file %s is readable by other users", path);
}

struct metrics_token *metrics_token_open(struct event_base *base,
                                         const struct metrics_token_settings *settings, char *err,
                                         size_t err_len)
{
    bool inline_token = settings->token != NULL && *settings->token;
    bool file = settings->file != NULL && *settings->file;
    struct metrics_token *t = calloc(1, sizeof *t);

    if (t == NULL)
        goto nomem;
    if (inline_token && file) {
        snprintf(err, err_len,
                 "METRICS_TOKEN (--metrics-token) and METRICS_TOKEN_FILE (--metrics-token-file) "
                 "are both set: give only one");
        goto fail;
    }
    if (inline_token && (t->token = strdup(settings->token)) == NULL)
        goto nomem;
    if (file) {
        t->starting = true;
        t->file = watched_file_new(base, settings->file, METRICS_TOKEN_FILE_MAX_BYTES,
                                   metrics_token_loaded, t);
        t->starting = false;
        if (t->file == NULL)
            goto nomem;
        if (t->token == NULL && *t->start_error == '\0') /* still being written */
            snprintf(t->start_error, sizeof t->start_error,
                     "metrics token file %s: could not be read whole", settings->file);
        if (*t->start_error) {
            snprintf(err, err_len, "%s", t->start_error);
            goto fail;
        }
        log_info("metrics token read from %s", settings->file);
    }
    return t;
nomem:
    snprintf(err, err_len, "out of memory");
fail:
    metrics_token_free(t);
    return NULL;
}

const char *metrics_token_get(const struct metrics_token *t)
{
    return t != NULL ? t->token : NULL;
}

void metrics_token_reload(struct metrics_token *t, const char *reason)
{
    if (t != NULL && t->file != NULL)
        watched_file_reload(t->file, reason);
}

void metrics_token_free(struct metrics_token *t)
{
    if (t == NULL)
        return;
    watched_file_free(t->file);
    metrics_token_set(t, NULL);
    free(t);
}
