#include "bus_redis.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus/event_id.h"
#include "core/clock.h"
#include "core/list.h"
#include "core/log.h"
#include "core/metrics.h"
#include "redis_publisher.h"

/* One publish, from bus_redis_publish until it is answered (or cancelled)
 * and, when it was sent, its reply has come. */
struct redis_publish {
    struct bus_redis *bus;
    struct publish_event event;
    bus_publish_done_fn done; /* NULL once answered or cancelled */
    void *arg;
    uint64_t deadline_ms;                        /* while waiting */
    enum { P_WAITING, P_SENT, P_FAILING } where; /* the list node is on */
    struct list_node node;
};

struct bus_redis {
    struct event_base *base;
    struct redis_conn *conn;
    struct redis_conn_events conn_events;
    struct redis_publisher *publisher;
    unsigned wait_ms;
    unsigned wait_replicas;
    bool tried;   /* the first connection attempt has ended, either way */
    bool aborted; /* bus_redis_abort: every publish fails */
    bool lost_logged;
    struct list_node waiting; /* for a ready connection, oldest first */
    struct list_node sent;    /* in Redis's hands */
    struct list_node failing; /* to be answered 503 from the loop */
    struct event *wait_timer, *fail_event;
    struct bus_redis_stats stats;
    char url_text[REDIS_URL_MAX + 32];
};

static void publish_free(struct redis_publish *p)
{
    free(p->event.type);
    free(p->event.message);
    free(p);
}

/* Answers p (once), unless it was cancelled. */
static void publish_answer(struct redis_publish *p, int status, const char *id)
{
    bus_publish_done_fn done = p->done;
    p->done = NULL;
    if (!done)
        return;
    if (status == BUS_PUBLISH_OK)
        p->bus->stats.accepted++;
    else
        p->bus->stats.unavailable++;
    done(p->arg, status, id);
}

static void fail_soon(struct bus_redis *bus, struct redis_publish *p)
{
    p->where = P_FAILING;
    list_push_back(&bus->failing, &p->node);
    event_active(bus->fail_event, EV_TIMEOUT, 0);
}

static void fail_event_cb(evutil_socket_t fd, short what, void *arg)
{
    struct bus_redis *bus = arg;
    struct list_node *node;
    while ((node = list_pop_front(&bus->failing))) {
        struct redis_publish *p = list_entry(node, struct redis_publish, node);
        publish_answer(p, BUS_PUBLISH_UNAVAILABLE, NULL);
        publish_free(p);
    }
}

static void reply_cb(void *arg, enum redis_publish_status status, uint64_t run, uint64_t number)
{
    struct redis_publish *p = arg;
    struct bus_redis *bus = p->bus;
    char id[EVENT_ID_LEN + 1];
    list_unlink(&p->node);
    bus->stats.in_flight--;
    if (status == REDIS_PUBLISH_OK) {
        event_id_format(id, run, number);
        publish_answer(p, BUS_PUBLISH_OK, id);
    } else {
        if (status == REDIS_PUBLISH_UNREPLICATED && bus->stats.unreplicated++ % 1000 == 0)
            log_warn("redis %s: fewer than %u replicas confirmed an event in time (%llu so far): "
                     "503",
                     bus->url_text, bus->wait_replicas,
                     (unsigned long long)bus->stats.unreplicated);
        if (status == REDIS_PUBLISH_REFUSED && bus->stats.refused++ % 1000 == 0)
            log_warn("redis %s: the stream refused an event (%llu so far; see the server's log): "
                     "503",
                     bus->url_text, (unsigned long long)bus->stats.refused);
        publish_answer(p, BUS_PUBLISH_UNAVAILABLE, NULL);
    }
    publish_free(p);
}

/* Sends p now; false when it could not be (then p is not queued anywhere). */
static bool publish_send(struct bus_redis *bus, struct redis_publish *p)
{
    if (redis_publisher_publish(bus->publisher, p->event.type, p->event.type_len, p->event.message,
                                p->event.message_len, reply_cb, p) < 0)
        return false;
    p->where = P_SENT;
    list_push_back(&bus->sent, &p->node);
    bus->stats.in_flight++;
    return true;
}

static void arm_wait_timer(struct bus_redis *bus)
{
    struct list_node *front = list_front(&bus->waiting);
    if (front)
        clock_arm_at(bus->wait_timer, list_entry(front, struct redis_publish, node)->deadline_ms);
    else
        event_del(bus->wait_timer);
}

static void wait_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct bus_redis *bus = arg;
    struct list_node *node;
    uint64_t now = clock_now_ms();
    while ((node = list_front(&bus->waiting))) {
        struct redis_publish *p = list_entry(node, struct redis_publish, node);
        if (p->deadline_ms > now)
            break;
        list_unlink(node);
        bus->stats.waiting--;
        publish_answer(p, BUS_PUBLISH_UNAVAILABLE, NULL);
        publish_free(p);
    }
    arm_wait_timer(bus);
}

static void conn_ready_cb(void *arg)
{
    struct bus_redis *bus = arg;
    struct list_node *node;
    bus->tried = true;
    if (bus->lost_logged)
        log_info("redis %s: connected again", bus->url_text);
    bus->lost_logged = false;
    /* The waiting ones, in order. */
    while ((node = list_pop_front(&bus->waiting))) {
        struct redis_publish *p = list_entry(node, struct redis_publish, node);
        bus->stats.waiting--;
        if (!publish_send(bus, p)) {
            publish_answer(p, BUS_PUBLISH_UNAVAILABLE, NULL);
            publish_free(p);
        }
    }
    arm_wait_timer(bus);
}

static void conn_lost_cb(void *arg, const char *reason)
{
    struct bus_redis *bus = arg;
    bus->tried = true;
    if (!bus->lost_logged)
        log_warn("redis %s: %s; publishes wait up to %u ms for it", bus->url_text, reason,
                 bus->wait_ms);
    bus->lost_logged = true;
}

struct bus_redis *bus_redis_new(struct event_base *base, const struct bus_redis_config *config,
                                char *err, size_t err_len)
{
    struct bus_redis *bus = calloc(1, sizeof *bus);
    struct redis_publisher_config pub = {.stream = config->stream,
                                         .max_len = config->max_len,
                                         .wait_replicas = config->wait_replicas,
                                         .wait_timeout_ms = config->wait_replicas_ms,
                                         .base = base};
    if (!bus) {
        snprintf(err, err_len, "out of memory");
        return NULL;
    }
    bus->base = base;
    bus->wait_ms = config->wait_ms;
    bus->wait_replicas = config->wait_replicas;
    list_init(&bus->waiting);
    list_init(&bus->sent);
    list_init(&bus->failing);
    redis_url_format(&config->conn.url, bus->url_text, sizeof bus->url_text);
    bus->conn_events.ready = conn_ready_cb;
    bus->conn_events.lost = conn_lost_cb;
    bus->wait_timer = evtimer_new(base, wait_timer_cb, bus);
    bus->fail_event = event_new(base, -1, 0, fail_event_cb, bus);
    if (!bus->wait_timer || !bus->fail_event ||
        !(bus->conn = redis_conn_new(base, &config->conn, &bus->conn_events, bus))) {
        snprintf(err, err_len, "out of memory");
        goto fail;
    }
    if (!(bus->publisher = redis_publisher_new(bus->conn, &pub, err, err_len)))
        goto fail;
    return bus;
fail:
    redis_conn_free(bus->conn);
    if (bus->wait_timer)
        event_free(bus->wait_timer);
    if (bus->fail_event)
        event_free(bus->fail_event);
    free(bus);
    return NULL;
}

void bus_redis_get_stats(const struct bus_redis *bus, struct bus_redis_stats *out)
{
    *out = bus->stats;
    out->ready = redis_conn_ready(bus->conn);
    redis_conn_get_stats(bus->conn, &out->conn);
}

/* --- behind bus.h ---------------------------------------------------------- */

static void *ops_publish(void *engine, struct publish_event *event, bus_publish_done_fn done,
                         void *arg)
{
    struct bus_redis *bus = engine;
    struct redis_publish *p = calloc(1, sizeof *p);
    if (!p) {
        free(event->type);
        free(event->message);
        memset(event, 0, sizeof *event);
        return NULL;
    }
    p->bus = bus;
    p->event = *event;
    memset(event, 0, sizeof *event);
    p->done = done;
    p->arg = arg;
    if (bus->aborted) {
        fail_soon(bus, p);
    } else if (redis_conn_ready(bus->conn)) {
        if (!publish_send(bus, p))
            fail_soon(bus, p);
    } else {
        p->deadline_ms = clock_now_ms() + bus->wait_ms;
        p->where = P_WAITING;
        list_push_back(&bus->waiting, &p->node);
        bus->stats.waiting++;
        if (!evtimer_pending(bus->wait_timer, NULL))
            arm_wait_timer(bus);
    }
    return p;
}

static void ops_cancel(void *publish)
{
    struct redis_publish *p = publish;
    struct bus_redis *bus = p->bus;
    p->done = NULL;
    if (p->where == P_SENT)
        return; /* freed when its reply comes */
    if (p->where == P_WAITING)
        bus->stats.waiting--;
    list_unlink(&p->node);
    publish_free(p);
    arm_wait_timer(bus);
}

static void ops_abort(void *engine)
{
    struct bus_redis *bus = engine;
    struct list_node *node;
    bus->aborted = true;
    while ((node = list_pop_front(&bus->waiting))) {
        bus->stats.waiting--;
        fail_soon(bus, list_entry(node, struct redis_publish, node));
    }
    /* Those in Redis's hands are answered now; their replies, later, free them. */
    for (node = bus->sent.next; node != &bus->sent; node = node->next)
        publish_answer(list_entry(node, struct redis_publish, node), BUS_PUBLISH_UNAVAILABLE, NULL);
    arm_wait_timer(bus);
}

static bool ops_all_tried(const void *engine)
{
    return ((const struct bus_redis *)engine)->tried;
}

static bool ops_available(const void *engine)
{
    const struct bus_redis *bus = engine;
    return !bus->aborted && redis_conn_ready(bus->conn);
}

static void ops_write_metrics(const void *engine, struct evbuffer *out)
{
    struct bus_redis_stats s;
    bus_redis_get_stats(engine, &s);
    metrics_single(out, "evs_listen_bus_links", "gauge", "configured bus destinations (Redis: 1)",
                   1);
    metrics_single(out, "evs_listen_bus_links_ready", "gauge", "bus destinations ready",
                   s.ready ? 1 : 0);
    metrics_single(out, "evs_listen_bus_reconnects_total", "counter",
                   "bus connections re-established after a loss",
                   s.conn.connects ? s.conn.connects - 1 : 0);
    metrics_single(out, "evs_listen_bus_events_in_flight", "gauge",
                   "events sent to Redis, reply not yet come", s.in_flight);
    metrics_single(out, "evs_listen_bus_events_waiting", "gauge",
                   "events waiting for a ready connection to Redis", s.waiting);
    metrics_single(out, "evs_listen_redis_round_trips_total", "counter", "replies from Redis",
                   s.conn.round_trips);
    metrics_single(out, "evs_listen_redis_errors_total", "counter", "error replies from Redis",
                   s.conn.errors);
    metrics_single(out, "evs_listen_redis_failures_total", "counter",
                   "connection attempts that failed and connections lost", s.conn.failures);
    metrics_single(out, "evs_listen_redis_timeouts_total", "counter",
                   "connections dropped for a late reply", s.conn.timeouts);
    metrics_single(out, "evs_listen_redis_oversized_total", "counter",
                   "connections dropped for a reply over the size limit", s.conn.oversized);
    metrics_single(out, "evs_listen_redis_refused_total", "counter",
                   "events the stream refused (503)", s.refused);
    metrics_single(out, "evs_listen_redis_unreplicated_total", "counter",
                   "events fewer replicas than REDIS_WAIT_REPLICAS confirmed in time (503)",
                   s.unreplicated);
}

static void ops_status(const void *engine, char *buf, size_t len)
{
    const struct bus_redis *bus = engine;
    snprintf(buf, len, "Redis %s %s", bus->url_text,
             redis_conn_ready(bus->conn) ? "ready" : "not ready");
}

static void ops_free(void *engine)
{
    struct bus_redis *bus = engine;
    struct list_node *node;
    ops_abort(bus);
    fail_event_cb(-1, 0, bus);
    /* The sent ones get their NULL replies (answered already) and go. */
    redis_publisher_free(bus->publisher);
    redis_conn_free(bus->conn);
    while ((node = list_pop_front(&bus->sent)))
        publish_free(list_entry(node, struct redis_publish, node));
    event_free(bus->wait_timer);
    event_free(bus->fail_event);
    free(bus);
}

const struct bus_ops bus_redis_ops = {
    ops_publish,   ops_cancel,        ops_abort,  ops_all_tried,
    ops_available, ops_write_metrics, ops_status, ops_free,
};
