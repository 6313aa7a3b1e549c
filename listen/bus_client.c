#include "bus_client.h"

#include <stdio.h>

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "bus/event_id.h"
#include "bus_link.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/metrics.h"
#include "sent_history.h"

/* One event on its way. It is freed when it has completed (reported to the
 * caller) and every link has released its reference to the message. */
struct bus_client_publish {
    struct bus_client *bus;
    struct publish_event event;
    bus_client_publish_done_fn done; /* NULL once cancelled or reported */
    void *done_arg;
    unsigned refs;    /* 1 until completed, plus one per link holding the message */
    unsigned pending; /* links that have neither acked nor failed it */
    bool failed;
    bool completed;
    uint64_t number;      /* of its id; 0 until it first goes out */
    uint64_t deadline_ms; /* clock_now_ms; while waiting for a ready link */
    struct bus_client_publish *wait_next;
};

struct bus_client {
    struct event_base *base;
    struct bus_link **links;
    size_t link_count;
    size_t tried_count;
    unsigned wait_ms;
    uint64_t ready_events;
    struct bus_client_publish *wait_head, *wait_tail; /* FIFO, so deadlines are in order */
    struct event *wait_timer;
    size_t waiting;
    size_t in_flight;
    uint64_t run;         /* of every id this client gives */
    uint64_t last_number; /* the last id's number */
    struct sent_history *history;
    struct event *expire_timer; /* evicts history entries past their age */
    uint64_t history_sent;      /* HISTORY frames sent to (re)connected links */
};

static void publish_unref(struct bus_client_publish *p)
{
    if (--p->refs == 0) {
        publish_event_clear(&p->event);
        free(p);
    }
}

static void publish_release_cb(void *arg)
{
    publish_unref(arg);
}

static void expire_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct bus_client *bus = arg;
    uint64_t next = sent_history_expire(bus->history, clock_now_ms());
    if (next)
        clock_arm_at(bus->expire_timer, next);
}

/* Keeps p, which went out as number, for links that connect later. */
static void history_keep(struct bus_client *bus, struct bus_client_publish *p)
{
    struct sent_entry e = {p->number,
                           clock_now_ms(),
                           p->event.type,
                           p->event.type_len,
                           p->event.message,
                           p->event.message_len,
                           p};
    if (!sent_history_append(bus->history, &e))
        return;
    p->refs++;
    if (!evtimer_pending(bus->expire_timer, NULL))
        expire_timer_cb(-1, 0, bus);
}

/* Sends a link that has just become ready every retained event, as HISTORY
 * frames, then SYNC: a broadcast daemon that restarted holds the same
 * history as the others, and one that only lost its connection gets the
 * events it missed. Nothing waits on their acks. */
static void history_send(struct bus_client *bus, struct bus_link *link)
{
    size_t count = sent_history_count(bus->history);
    for (size_t i = 0; i < count; i++) {
        const struct sent_entry *e = sent_history_at(bus->history, i);
        struct bus_client_publish *p = e->owner;
        p->refs++;
        if (bus_link_send(link, BUS_KIND_HISTORY, bus->run, e->number, e->type, e->type_len,
                          e->message, e->message_len, publish_release_cb, p, NULL) < 0) {
            p->refs--;
            log_warn("bus %s: out of memory sending the history", bus_link_path(link));
            return; /* no SYNC: the broadcast daemon answers resumes UNKNOWN meanwhile */
        }
        bus->history_sent++;
    }
    if (bus_link_send_sync(link, bus->run, bus->last_number) < 0)
        log_warn("bus %s: out of memory sending SYNC", bus_link_path(link));
}

static void publish_complete(struct bus_client_publish *p)
{
    bus_client_publish_done_fn done = p->done;
    char id[EVENT_ID_LEN + 1];
    p->completed = true;
    p->done = NULL;
    if (done && p->failed)
        done(p->done_arg, BUS_PUBLISH_UNAVAILABLE, NULL);
    else if (done) {
        event_id_format(id, p->bus->run, p->number);
        done(p->done_arg, BUS_PUBLISH_OK, id);
    }
    publish_unref(p);
}

static void link_acked_cb(void *arg, void *item)
{
    struct bus_client_publish *p = item;
    struct bus_client *bus = arg;
    bus->in_flight--;
    if (--p->pending == 0)
        publish_complete(p);
}

static void link_failed_cb(void *arg, void *item)
{
    struct bus_client_publish *p = item;
    p->failed = true;
    link_acked_cb(arg, item);
}

/* Sends p on every ready link, numbered with the run's next number (taken
 * back when it went out on none). Returns the number of links it went out
 * on; their acks or failures complete it later, never inside this call. */
static size_t publish_dispatch(struct bus_client *bus, struct bus_client_publish *p)
{
    size_t sent = 0;
    p->number = bus->last_number + 1;
    for (size_t i = 0; i < bus->link_count; i++) {
        struct bus_link *link = bus->links[i];
        if (!bus_link_is_ready(link))
            continue;
        p->refs++;
        p->pending++;
        if (bus_link_send(link, BUS_KIND_EVENT, bus->run, p->number, p->event.type,
                          p->event.type_len, p->event.message, p->event.message_len,
                          publish_release_cb, p, p) < 0) {
            p->refs--;
            p->pending--;
            continue;
        }
        bus->in_flight++;
        sent++;
    }
    if (sent > 0) {
        bus->last_number = p->number;
        history_keep(bus, p);
    } else {
        p->number = 0;
    }
    return sent;
}

static void wait_timer_arm(struct bus_client *bus)
{
    if (!bus->wait_head) {
        evtimer_del(bus->wait_timer);
        return;
    }
    clock_arm_at(bus->wait_timer, bus->wait_head->deadline_ms);
}

static struct bus_client_publish *wait_pop(struct bus_client *bus)
{
    struct bus_client_publish *p = bus->wait_head;
    if (p) {
        bus->wait_head = p->wait_next;
        if (!bus->wait_head)
            bus->wait_tail = NULL;
        p->wait_next = NULL;
        bus->waiting--;
    }
    return p;
}

static void wait_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct bus_client *bus = arg;
    uint64_t now = clock_now_ms();
    while (bus->wait_head && bus->wait_head->deadline_ms <= now) {
        struct bus_client_publish *p = wait_pop(bus);
        p->failed = true;
        publish_complete(p);
    }
    wait_timer_arm(bus);
}

static void link_ready_cb(void *arg, struct bus_link *link)
{
    struct bus_client *bus = arg;
    struct bus_client_publish *p;
    bus->ready_events++;
    history_send(bus, link);
    /* Events that waited for a broadcast daemon go out now, in order. */
    while ((p = wait_pop(bus))) {
        if (publish_dispatch(bus, p) == 0) {
            p->failed = true;
            publish_complete(p);
        }
    }
    wait_timer_arm(bus);
}

static void link_tried_cb(void *arg, struct bus_link *link)
{
    struct bus_client *bus = arg;
    bus->tried_count++;
}

static const struct bus_link_events link_events = {
    .ready = link_ready_cb,
    .acked = link_acked_cb,
    .failed = link_failed_cb,
    .tried = link_tried_cb,
};

struct bus_client *bus_client_new(struct event_base *base, const struct bus_client_config *config)
{
    struct bus_client *bus = calloc(1, sizeof *bus);
    if (!bus)
        return NULL;
    bus->base = base;
    bus->wait_ms = config->wait_ms;
    bus->run = event_id_new_run();
    bus->wait_timer = evtimer_new(base, wait_timer_cb, bus);
    bus->expire_timer = evtimer_new(base, expire_timer_cb, bus);
    bus->history = sent_history_new(&config->history, publish_release_cb);
    bus->links = calloc(config->path_count, sizeof *bus->links);
    if (!bus->wait_timer || !bus->expire_timer || !bus->history || !bus->links)
        goto fail;
    for (size_t i = 0; i < config->path_count; i++) {
        bus->links[i] =
            bus_link_new(base, config->paths[i], config->ack_timeout_ms, &link_events, bus);
        if (!bus->links[i])
            goto fail;
        bus->link_count++;
    }
    return bus;
fail:
    bus_client_free(bus);
    return NULL;
}

void bus_client_abort(struct bus_client *bus)
{
    struct bus_client_publish *p;
    for (size_t i = 0; i < bus->link_count; i++)
        bus_link_free(bus->links[i]);
    bus->link_count = 0;
    while ((p = wait_pop(bus))) {
        p->failed = true;
        publish_complete(p);
    }
    bus->wait_ms = 0;
}

void bus_client_free(struct bus_client *bus)
{
    struct bus_client_publish *p;
    if (!bus)
        return;
    for (size_t i = 0; i < bus->link_count; i++)
        bus_link_free(bus->links[i]);
    while ((p = wait_pop(bus))) {
        p->failed = true;
        publish_complete(p);
    }
    if (bus->wait_timer)
        event_free(bus->wait_timer);
    if (bus->expire_timer)
        event_free(bus->expire_timer);
    sent_history_free(bus->history);
    free(bus->links);
    free(bus);
}

struct bus_client_publish *bus_client_publish(struct bus_client *bus, struct publish_event *event,
                                              bus_client_publish_done_fn done, void *arg)
{
    struct bus_client_publish *p = calloc(1, sizeof *p);
    if (!p) {
        publish_event_clear(event);
        return NULL;
    }
    p->bus = bus;
    p->event = *event;
    memset(event, 0, sizeof *event);
    p->done = done;
    p->done_arg = arg;
    p->refs = 1;
    if (publish_dispatch(bus, p) > 0)
        return p;
    /* No broadcast daemon is ready: wait for one, in order, up to wait_ms
     * (a wait of 0 fails on the next loop turn, not inside this call). */
    p->deadline_ms = clock_now_ms() + bus->wait_ms;
    if (bus->wait_tail)
        bus->wait_tail->wait_next = p;
    else
        bus->wait_head = p;
    bus->wait_tail = p;
    bus->waiting++;
    if (bus->wait_head == p)
        wait_timer_arm(bus);
    return p;
}

void bus_client_publish_cancel(struct bus_client_publish *publish)
{
    publish->done = NULL;
}

void bus_client_get_stats(const struct bus_client *bus, struct bus_client_stats *out)
{
    memset(out, 0, sizeof *out);
    out->links = bus->link_count;
    for (size_t i = 0; i < bus->link_count; i++)
        if (bus_link_is_ready(bus->links[i]))
            out->ready++;
    out->reconnects = bus->ready_events > bus->link_count ? bus->ready_events - bus->link_count : 0;
    out->in_flight = bus->in_flight;
    out->waiting = bus->waiting;
    out->run = bus->run;
    out->numbered = bus->last_number;
    if (bus->history) {
        out->history_events = sent_history_count(bus->history);
        out->history_bytes = sent_history_bytes(bus->history);
    }
    out->history_sent = bus->history_sent;
}

int bus_client_all_tried(const struct bus_client *bus)
{
    return bus->tried_count >= bus->link_count;
}

/* --- behind bus.h ---------------------------------------------------------- */

static void *ops_publish(void *engine, struct publish_event *event, bus_publish_done_fn done,
                         void *arg)
{
    return bus_client_publish(engine, event, done, arg);
}

static void ops_cancel(void *publish)
{
    bus_client_publish_cancel(publish);
}

static void ops_abort(void *engine)
{
    bus_client_abort(engine);
}

static bool ops_all_tried(const void *engine)
{
    return bus_client_all_tried(engine);
}

static bool ops_available(const void *engine)
{
    struct bus_client_stats s;
    bus_client_get_stats(engine, &s);
    return s.ready > 0;
}

static void ops_write_metrics(const void *engine, struct evbuffer *out)
{
    struct bus_client_stats bus;
    bus_client_get_stats(engine, &bus);
    metrics_single(out, "evs_listen_bus_links", "gauge", "configured broadcast daemons", bus.links);
    metrics_single(out, "evs_listen_bus_links_ready", "gauge",
                   "broadcast daemons connected and ready", bus.ready);
    metrics_single(out, "evs_listen_bus_reconnects_total", "counter",
                   "bus connections re-established after a loss", bus.reconnects);
    metrics_single(out, "evs_listen_bus_events_in_flight", "gauge",
                   "events sent on the bus and not yet acked", bus.in_flight);
    metrics_single(out, "evs_listen_bus_events_waiting", "gauge",
                   "events waiting for a broadcast daemon", bus.waiting);
    metrics_single(out, "evs_listen_history_events", "gauge",
                   "events kept for broadcast daemons that connect later", bus.history_events);
    metrics_single(out, "evs_listen_history_bytes", "gauge",
                   "memory those events hold, as HISTORY_BYTES counts it", bus.history_bytes);
    metrics_single(out, "evs_listen_history_sent_total", "counter",
                   "kept events sent to broadcast daemons that connected", bus.history_sent);
}

static void ops_status(const void *engine, char *buf, size_t len)
{
    struct bus_client_stats bus;
    bus_client_get_stats(engine, &bus);
    snprintf(buf, len, "%zu/%zu broadcast daemons connected", bus.ready, bus.links);
}

static void ops_free(void *engine)
{
    bus_client_free(engine);
}

const struct bus_ops bus_client_ops = {
    ops_publish,   ops_cancel,        ops_abort,  ops_all_tried,
    ops_available, ops_write_metrics, ops_status, ops_free,
};
