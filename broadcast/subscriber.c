#include "subscriber.h"

#include <event2/bufferevent.h>

#include "net/conn_flush.h"
#include "shared_frame.h"

size_t subscriber_backlog(const struct subscriber *sub)
{
    return conn_output_pending(sub->bev) + shared_frame_tally_overhead(sub->frames_referenced);
}

int subscriber_append(struct subscriber *sub, struct shared_frame *frame, size_t max_backlog)
{
    if (subscriber_backlog(sub) + shared_frame_cost(frame) > max_backlog)
        return -1;
    return shared_frame_append(frame, bufferevent_get_output(sub->bev), &sub->frames_referenced);
}

bool subscriber_subscriptions_allowed(const struct subscriber *sub,
                                      const struct auth_identity *identity)
{
    for (const struct subs_entry *e = sub->subs.head; e; e = e->session_next) {
        size_t len;
        const char *type = subs_topic_type(e->topic, &len);
        if (!auth_may_subscribe(identity, type, len))
            return false;
    }
    for (size_t i = 0; sub->replay && i < sub->replay->count; i++) {
        if (!auth_may_subscribe(identity, sub->replay->types[i], sub->replay->lens[i]))
            return false;
    }
    return true;
}
