/* Fuzz target: redis_url_parse on arbitrary text (REDIS_URL comes from the
 * environment or a flag).
 *
 * Invariants checked: a refusal has a terminated reason that starts with
 * "REDIS_URL" (it never quotes the text, which may carry a password; the
 * unit test checks that); an accepted URL has
 * a valid host (TCP) or absolute path (UNIX), a port of 1 to 65535 and a
 * database within bounds, and what redis_url_format writes parses back to
 * the same URL.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bus/redis_url.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_same(const struct redis_url *a, const struct redis_url *b)
{
    if (a->kind != b->kind || a->db != b->db || strcmp(a->user, b->user) != 0)
        abort();
    if (a->kind == REDIS_URL_TCP && (strcmp(a->host, b->host) != 0 || a->port != b->port))
        abort();
    if (a->kind == REDIS_URL_UNIX && strcmp(a->path, b->path) != 0)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1), err[160], again[REDIS_URL_MAX + 64];
    struct redis_url url, back;
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    memset(err, 'x', sizeof err);
    if (redis_url_parse(text, &url, err, sizeof err) != 0) {
        if (!memchr(err, '\0', sizeof err) || strncmp(err, "REDIS_URL", 9) != 0)
            abort();
        free(text);
        return 0;
    }
    if (url.kind == REDIS_URL_TCP) {
        if (url.host[0] == '\0' || url.port == 0 || url.port > 65535)
            abort();
    } else if (url.kind != REDIS_URL_UNIX || url.path[0] != '/') {
        abort();
    }
    if (url.db > REDIS_URL_DB_MAX)
        abort();
    if (redis_url_format(&url, again, sizeof again) >= (int)sizeof again)
        abort();
    if (redis_url_parse(again, &back, err, sizeof err) != 0)
        abort();
    check_same(&url, &back);
    free(text);
    return 0;
}
