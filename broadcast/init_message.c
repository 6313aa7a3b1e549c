/* The subscriber's init message (see init_message.h).
 *
 * Known limit: cJSON hands strings over NUL-terminated, so an escaped
 * "\u0000" inside an event type or the authentication cuts it short there
 * ("a\u0000b" subscribes to "a"). Finding the escape would mean scanning the
 * raw text a second time. It grants nothing: the subscriber could have asked
 * for "a" outright, and a token cut short still has to match a whole token.
 * A raw NUL byte, which RFC 8259 §7 forbids anyway, is rejected up front.
 */
#include "init_message.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "core/json_text.h"

/* RFC 8259 §2: only these may follow the value. */
static bool init_only_blanks(const char *p, const char *end)
{
    for (; p < end; p++)
        if (*p != ' ' && *p != '\t' && *p != '\r' && *p != '\n')
            return false;
    return true;
}

/* The last member called name, as JavaScript's JSON.parse (the original
 * server's parser) would pick it; cJSON_GetObjectItem returns the first. */
static const cJSON *init_member(const cJSON *object, const char *name)
{
    const cJSON *item, *found = NULL;

    cJSON_ArrayForEach(item, object)
    {
        if (item->string && strcmp(item->string, name) == 0)
            found = item;
    }
    return found;
}

/* Checks every entry before counting against max_events, so that the
 * answer follows the order the header documents. */
static int init_check_events(const cJSON *events, size_t max_events, size_t *count)
{
    const cJSON *item;
    size_t n = 0;

    if (!cJSON_IsArray(events))
        return INIT_EVENTS_MISSING;
    cJSON_ArrayForEach(item, events)
    {
        size_t len;
        if (!cJSON_IsString(item) || !item->valuestring)
            return INIT_EVENTS_MISSING;
        len = strlen(item->valuestring);
        if (len == 0 || len > INIT_TYPE_MAX)
            return INIT_EVENTS_MISSING;
        n++;
    }
    if (n > max_events)
        return INIT_TOO_MANY_EVENTS;
    *count = n;
    return INIT_OK;
}

/* "since", when present: a string that is an event id or a keyword. */
static int init_check_since(const cJSON *since, struct init_message *out)
{
    size_t len;
    if (!since)
        return INIT_OK;
    if (!cJSON_IsString(since) || !since->valuestring)
        return INIT_INVALID_SINCE;
    len = strlen(since->valuestring);
    if (!event_id_valid(since->valuestring, len))
        return INIT_INVALID_SINCE;
    if (strcmp(since->valuestring, "oldest") == 0) {
        out->since = INIT_SINCE_OLDEST;
    } else if (strcmp(since->valuestring, "now") == 0) {
        out->since = INIT_SINCE_NOW;
    } else {
        out->since = INIT_SINCE_ID;
        memcpy(out->since_id, since->valuestring, len + 1);
        out->since_len = len;
    }
    return INIT_OK;
}

static char *init_strdup(const char *s, size_t len)
{
    char *copy = malloc(len + 1);

    if (copy)
        memcpy(copy, s, len + 1);
    return copy;
}

int init_message_parse(const char *text, size_t len, size_t max_events, struct init_message *out)
{
    cJSON *root = NULL;
    const cJSON *events, *auth, *item;
    const char *end = NULL;
    size_t count = 0, i = 0;
    int status;

    memset(out, 0, sizeof(*out));
    if (len == 0 || memchr(text, '\0', len) || !json_utf8_valid(text, len))
        return INIT_INVALID_SYNTAX;
    /* cJSON_ParseWithLength accepts trailing garbage after the value, and
     * asking cJSON to reject it needs a NUL terminator that text lacks. So the
     * rest is checked here. cJSON bounds nesting (CJSON_NESTING_LIMIT), which
     * bounds its recursion. An allocation failure inside cJSON is reported as
     * a syntax error: cJSON does not tell the two apart. */
    root = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (!root || !end || end < text || end > text + len || !init_only_blanks(end, text + len)) {
        status = INIT_INVALID_SYNTAX;
        goto done;
    }
    if (!cJSON_IsObject(root)) {
        status = INIT_EVENTS_MISSING;
        goto done;
    }
    events = init_member(root, "events");
    status = init_check_events(events, max_events, &count);
    if (status != INIT_OK)
        goto done;
    status = init_check_since(init_member(root, "since"), out);
    if (status != INIT_OK)
        goto done;

    status = INIT_NOMEM;
    auth = init_member(root, "authentication");
    if (cJSON_IsString(auth) && auth->valuestring) {
        out->authentication_len = strlen(auth->valuestring);
        out->authentication = init_strdup(auth->valuestring, out->authentication_len);
        if (!out->authentication)
            goto done;
    }
    if (count > 0) {
        out->events = calloc(count, sizeof(*out->events));
        out->event_lens = calloc(count, sizeof(*out->event_lens));
        if (!out->events || !out->event_lens)
            goto done;
        cJSON_ArrayForEach(item, events)
        {
            size_t type_len = strlen(item->valuestring);
            out->events[i] = init_strdup(item->valuestring, type_len);
            if (!out->events[i])
                goto done;
            out->event_lens[i] = type_len;
            out->event_count = ++i;
        }
    }
    status = INIT_OK;

done:
    if (status != INIT_OK)
        init_message_clear(out);
    cJSON_Delete(root);
    return status;
}

void init_message_clear(struct init_message *msg)
{
    if (!msg)
        return;
    free(msg->authentication);
    for (size_t i = 0; i < msg->event_count; i++)
        free(msg->events[i]);
    free(msg->events);
    free(msg->event_lens);
    memset(msg, 0, sizeof(*msg));
}

const char *init_status_code(int status)
{
    switch (status) {
    case INIT_OK:
        return "OK";
    case INIT_INVALID_SYNTAX:
        return "INVALID_SYNTAX";
    case INIT_EVENTS_MISSING:
        return "INVALID_EVENTS_MISSING";
    case INIT_TOO_MANY_EVENTS:
        return "TOO_MANY_EVENTS";
    case INIT_INVALID_SINCE:
        return "INVALID_SINCE";
    default:
        return "INTERNAL_ERROR";
    }
}
