#include "init_handler.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/bufferevent.h>
#include <event2/event.h>

#include "auth/auth_store.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/rate_limit.h"
#include "hub.h"
#include "init_message.h"
#include "subscriber.h"
#include "subscriptions.h"

static const struct rate_limit init_rate = {INIT_INTERVAL_MS, INIT_BURST};

/* The expiry timer waits at most this long at a time, then looks at the
 * wall clock again: a far-future exp never makes a huge timer, and a clock
 * set forwards or back is followed within a day. */
#define EXPIRY_MAX_WAIT_S (24 * 3600)

/* Time until sub->ends_at, capped at EXPIRY_MAX_WAIT_S; false when it has
 * come. Differences are taken in seconds before any scaling, so no exp can
 * overflow them. */
static bool expiry_delay(const struct subscriber *sub, struct timeval *tv)
{
    struct timespec now;
    int64_t seconds, delay_us;
    clock_gettime(CLOCK_REALTIME, &now);
    if (sub->ends_at <= (int64_t)now.tv_sec)
        return false;
    seconds = sub->ends_at - (int64_t)now.tv_sec; /* > 0; now.tv_sec >= 0 */
    if (seconds > EXPIRY_MAX_WAIT_S) {
        tv->tv_sec = EXPIRY_MAX_WAIT_S;
        tv->tv_usec = 0;
        return true;
    }
    delay_us = seconds * 1000000 - now.tv_nsec / 1000;
    tv->tv_sec = (time_t)(delay_us / 1000000);
    tv->tv_usec = (suseconds_t)(delay_us % 1000000);
    return true;
}

static void expiry_cb(evutil_socket_t fd, short what, void *arg)
{
    struct subscriber *sub = arg;
    struct timeval tv;
    if (sub->state == SUBSCRIBER_CLOSING)
        return;
    if (expiry_delay(sub, &tv)) {
        evtimer_add(sub->expiry, &tv); /* a capped wait, or a clock set back */
        return;
    }
    sub->hub->counters.expired_closes++;
    hub_end_credential(sub, HUB_CREDENTIAL_EXPIRED);
}

/* Arms the expiry timer for a credential ending at expires (seconds since
 * the epoch; 0: never). The subscriber lasts as long as the credential
 * would be accepted: up to exp plus the configured leeway. */
static int set_expiry(struct subscriber *sub, int64_t expires)
{
    struct timeval tv = {0, 0};
    if (expires == 0) {
        if (sub->expiry)
            evtimer_del(sub->expiry);
        return 0;
    }
    if (!sub->expiry &&
        !(sub->expiry = evtimer_new(bufferevent_get_base(sub->bev), expiry_cb, sub)))
        return -1;
    sub->ends_at = jwt_end_time(expires, &auth_store_sources(sub->hub->auth)->jwt_policy);
    expiry_delay(sub, &tv);
    return evtimer_add(sub->expiry, &tv);
}

/* Whether adding msg's types would pass the per-subscriber limit (types
 * already held do not count twice). */
static bool too_many(const struct subscriber *sub, const struct init_message *msg)
{
    struct hub *hub = sub->hub;
    if (sub->subs.count + msg->event_count <= hub->limits.max_subscriptions)
        return false;
    return sub->subs.count + subs_count_missing(hub->subs, &sub->subs, msg->events, msg->event_lens,
                                                msg->event_count) >
           hub->limits.max_subscriptions;
}

static void reply_init(struct subscriber *sub, const char *code)
{
    char json[96];
    int len = snprintf(json, sizeof json, "{\"type\":\"init\",\"code\":\"%s\"}", code);
    sub->ops->reply(sub, json, (size_t)len);
}

/* A later init adds its types to the earlier ones, and its credential
 * replaces the earlier one (a fresh JWT extends the subscriber) provided
 * it allows every type the subscriber holds. An init naming a type its
 * credential may not subscribe to gets FORBIDDEN and subscribes to none of
 * its types. Returns the close reason, as init_handler_message. */
static const char *handle_init(struct subscriber *sub, const uint8_t *text, size_t len)
{
    struct hub *hub = sub->hub;
    struct init_message msg;
    struct auth_identity identity;
    int rc = init_message_parse((const char *)text, len, hub->limits.max_subscriptions, &msg);
    const char *code = NULL, *close_reason = NULL;
    char *credential = NULL;
    enum hub_resume resume;

    memset(&identity, 0, sizeof identity);
    if (sub->replay) {
        /* Its types are held once the replay has caught up; an init
         * meanwhile could not be answered in order. */
        code = "RESUME_IN_PROGRESS";
        goto reject;
    }
    if (rc != INIT_OK) {
        code = init_status_code(rc);
        goto reject;
    }
    rc = auth_store_authenticate(hub->auth, msg.authentication, msg.authentication_len, sub->source,
                                 &identity);
    if (rc != AUTH_OK) {
        code = auth_result_code(rc);
        if (++sub->failed_credentials >= INIT_FAILED_CREDENTIALS_MAX) {
            hub->counters.auth_failure_closes++;
            log_info("%s %s: %u failed credentials in a row: closing (1008)", sub->ops->name,
                     sub->peer, sub->failed_credentials);
            close_reason = "too many failed credentials";
        }
        goto reject;
    }
    sub->failed_credentials = 0;
    for (size_t i = 0; i < msg.event_count; i++) {
        if (!auth_may_subscribe(&identity, msg.events[i], msg.event_lens[i])) {
            code = auth_result_code(AUTH_FORBIDDEN);
            goto reject;
        }
    }
    if (!subscriber_subscriptions_allowed(sub, &identity)) {
        code = auth_result_code(AUTH_FORBIDDEN);
        goto reject;
    }
    if (too_many(sub, &msg)) {
        code = init_status_code(INIT_TOO_MANY_EVENTS);
        goto reject;
    }
    credential = malloc(msg.authentication_len + 1);
    if (!credential || set_expiry(sub, identity.expires) < 0) {
        code = "INTERNAL_ERROR";
        goto reject;
    }
    memcpy(credential, msg.authentication, msg.authentication_len + 1);
    if (hub_subscribe(sub, &msg, &resume) < 0) {
        code = "INTERNAL_ERROR";
        goto reject;
    }
    /* The credential is kept once the init has fully succeeded: a
     * subscriber holds one exactly when it is authenticated. */
    if (!sub->credential)
        hub_subscriber_authenticated(sub);
    free(sub->credential);
    sub->credential = credential;
    sub->credential_len = msg.authentication_len;
    credential = NULL;
    sub->depends_on = identity.depends_on;
    sub->auth_checked = hub->auth_changes;
    hub->counters.init_ok++;
    if (*identity.subject)
        log_info("%s %s: init OK as %s, %zu subscriptions", sub->ops->name, sub->peer,
                 identity.subject, sub->subs.count);
    else
        log_debug("%s %s: init OK, %zu subscriptions", sub->ops->name, sub->peer, sub->subs.count);
    auth_identity_clear(&identity);
    init_message_clear(&msg);
    hub_reply_init_ok(sub, resume);
    return NULL;
reject:
    hub->counters.init_rejected++;
    log_info("%s %s: init rejected: %s", sub->ops->name, sub->peer, code);
    free(credential);
    auth_identity_clear(&identity);
    init_message_clear(&msg);
    reply_init(sub, code);
    return close_reason;
}

const char *init_handler_message(struct subscriber *sub, const uint8_t *text, size_t len)
{
    if (!rate_bucket_take(&sub->inits, &init_rate, clock_now_ms())) {
        sub->hub->counters.init_rate_closes++;
        log_info("%s %s: more than %d inits at once or %d a second: closing (1008)", sub->ops->name,
                 sub->peer, INIT_BURST, 1000 / INIT_INTERVAL_MS);
        return "too many inits";
    }
    return handle_init(sub, text, len);
}
