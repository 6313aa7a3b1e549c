/* Fuzz target for listen/publish_body.c: any accepted body must yield a
 * message that is valid UTF-8 JSON carrying the decoded type, and that
 * message, parsed as a body, must reproduce itself. */
#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/json_text.h"
#include "publish_body.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_message(const struct publish_event *ev)
{
    if (ev->type == NULL || ev->message == NULL)
        abort();
    if (ev->type_len == 0 || ev->type_len > PUBLISH_TYPE_MAX || strlen(ev->type) != ev->type_len)
        abort();
    if (strlen(ev->message) != ev->message_len)
        abort();
    if (!json_utf8_valid(ev->message, ev->message_len))
        abort();

    const char *end = NULL;
    cJSON *msg = cJSON_ParseWithLengthOpts(ev->message, ev->message_len + 1, &end, 1);
    if (msg == NULL || !cJSON_IsObject(msg))
        abort();
    cJSON *type = cJSON_GetObjectItemCaseSensitive(msg, "type");
    cJSON *event = cJSON_GetObjectItemCaseSensitive(msg, "event");
    if (!cJSON_IsString(type) || strcmp(type->valuestring, "event") != 0)
        abort();
    if (!cJSON_IsString(event) || strcmp(event->valuestring, ev->type) != 0)
        abort();
    int members = cJSON_GetArraySize(msg);
    if (members != 2 && !(members == 3 && cJSON_HasObjectItem(msg, "data")))
        abort();
    cJSON_Delete(msg);

    struct publish_event again;
    if (publish_body_parse(ev->message, ev->message_len, &again, NULL) != PUBLISH_BODY_OK)
        abort();
    if (again.message_len != ev->message_len ||
        memcmp(again.message, ev->message, ev->message_len) != 0 ||
        again.type_len != ev->type_len || memcmp(again.type, ev->type, ev->type_len) != 0)
        abort();
    publish_event_clear(&again);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* An exact-size copy, so that a read past the body's end is caught. */
    char *body = malloc(size ? size : 1);
    if (body == NULL)
        return 0;
    memcpy(body, data, size);

    struct publish_event ev;
    const char *reason = NULL;
    int rc = publish_body_parse(body, size, &ev, &reason);
    if (reason == NULL)
        abort();
    if (rc == PUBLISH_BODY_OK) {
        check_message(&ev);
    } else if (ev.type != NULL || ev.message != NULL || ev.type_len != 0 || ev.message_len != 0) {
        abort();
    }
    publish_event_clear(&ev);
    free(body);
    return 0;
}
