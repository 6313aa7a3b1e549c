#include "redis_reader.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus/event_id.h"
#include "bus/redis_stream.h"
#include "core/clock.h"
#include "core/error_message.h"
#include "core/log.h"

#define ID_MAX 44 /* "<u64>-<u64>" */
#define REPLY_MARGIN_MS 2000
#define ERROR_RETRY_MS 1000            /* after a refused read: no loop of refusals */
#define OURS_FIELDS_MAX (3 + 16 + 255) /* "e", "t", "m", an epoch and a type */

/* The next entry of a range, without its content: its id, the bytes of its
 * field names and values, and how many they are; {} when there is none.
 * KEYS[1] the stream; ARGV XRANGE or XREVRANGE, and the range's ends. */
static const char PEEK_SCRIPT[] =
    "local e = redis.call(ARGV[1], KEYS[1], ARGV[2], ARGV[3], 'COUNT', 1)[1]\n"
    "if not e then return {} end\n"
    "local n = 0\n"
    "for _, s in ipairs(e[2]) do n = n + #s end\n"
    "return {e[1], n, #e[2]}\n";

struct redis_reader {
    struct redis_conn *conn;
    struct redis_conn_events conn_events;
    struct redis_reader_config config;
    char stream[REDIS_STREAM_MAX + 1];
    char meta[REDIS_STREAM_META_MAX + 1]; /* where listen daemons count: the stream's end */
    uint64_t stream_seq;                  /* its count, as last asked */
    uint64_t last_number;                 /* of the last live event read */
    uint64_t seq_asked_ms;
    char block[16], count[16];
    redis_reader_event_fn on_event;
    void *arg;
    bool started;   /* has its starting point */
    bool in_flight; /* a command of it is waiting for its reply */
    unsigned asked; /* entries the XRANGE in flight asked for */
    /* After a connection dropped for a reply over the size limit: the reads
     * still to go one entry at a time, each after a peek at its size (see
     * lost_cb). */
    unsigned careful;
    bool peek_top;       /* the stream's last entry was too large: the start peeks at it first */
    struct event *retry; /* after an error reply */
    char last_id[ID_MAX + 1];
    char load_end[ID_MAX + 1];  /* the stream's end at the start, while loading; else "" */
    char load_from[ID_MAX + 2]; /* where the load's next XRANGE starts: "-", then "(<id>" */
    uint64_t last_run; /* the epoch of the last live event read, or of the end at the start */
    /* At the last reset: the epoch and id last read. Its entries up to that
     * id were delivered already, should the stream hold them still (only
     * its meta key was made again). */
    uint64_t reset_run;
    char reset_last[ID_MAX + 1];
    struct redis_reader_stats stats;
};

static void read_next(struct redis_reader *r);
static void load_next(struct redis_reader *r);
static bool stream_id_before(const char *a, const char *b);
static bool parse_stream_id(const char *s, uint64_t *ms, uint64_t *seq);
static void ready_cb(void *arg);

static void retry_cb(evutil_socket_t fd, short what, void *arg)
{
    ready_cb(arg);
}

static void retry_later(struct redis_reader *r)
{
    struct timeval tv = {ERROR_RETRY_MS / 1000, (ERROR_RETRY_MS % 1000) * 1000};
    event_add(r->retry, &tv);
}

/* Sends the argc NUL-terminated strings of argv as the reader's one
 * command in flight (timeout_ms as redis_conn_command takes it). Returns
 * whether it went. */
static bool send_command(struct redis_reader *r, int argc, const char **argv, unsigned timeout_ms,
                         redis_conn_done_fn done)
{
    size_t lens[8];
    for (int i = 0; i < argc; i++)
        lens[i] = strlen(argv[i]);
    if (redis_conn_command(r->conn, argc, argv, lens, timeout_ms, done, r) < 0)
        return false;
    r->in_flight = true;
    return true;
}

static bool is_string(const redisReply *x)
{
    return x && (x->type == REDIS_REPLY_STRING || x->type == REDIS_REPLY_STATUS) && x->str;
}

static bool field_is(const redisReply *x, const char *name)
{
    return is_string(x) && x->len == strlen(name) && memcmp(x->str, name, x->len) == 0;
}

/* "<n>-1" with n from 1: the ids listen/redis_publisher.c gives. */
static bool parse_our_id(const char *s, size_t len, uint64_t *n)
{
    uint64_t v = 0;
    size_t i = 0;
    if (len < 3 || s[0] == '0')
        return false;
    for (; i < len && s[i] >= '0' && s[i] <= '9'; i++) {
        if (v > (UINT64_MAX - 9) / 10)
            return false;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    if (i == 0 || len - i != 2 || s[i] != '-' || s[i + 1] != '1')
        return false;
    *n = v;
    return true;
}

static bool parse_epoch(const redisReply *x, uint64_t *out)
{
    return is_string(x) && event_id_parse_run(x->str, x->len, out) == 0;
}

int redis_reader_parse_entry(const redisReply *entry, size_t max_message,
                             struct redis_reader_event *ev, const char **id, size_t *id_len)
{
    const redisReply *rid, *fields;
    memset(ev, 0, sizeof *ev);
    if (!entry || entry->type != REDIS_REPLY_ARRAY || entry->elements != 2 || !entry->element)
        return -1;
    rid = entry->element[0];
    fields = entry->element[1];
    if (!is_string(rid) || rid->len > ID_MAX || !fields || fields->type != REDIS_REPLY_ARRAY ||
        (fields->elements && !fields->element))
        return -1;
    *id = rid->str;
    *id_len = rid->len;
    if (!parse_our_id(rid->str, rid->len, &ev->number) || fields->elements != 6 ||
        !field_is(fields->element[0], "e") || !parse_epoch(fields->element[1], &ev->run) ||
        !field_is(fields->element[2], "t") || !is_string(fields->element[3]) ||
        !field_is(fields->element[4], "m") || !is_string(fields->element[5]))
        return 0;
    ev->type = fields->element[3]->str;
    ev->type_len = fields->element[3]->len;
    ev->message = fields->element[5]->str;
    ev->message_len = fields->element[5]->len;
    if (ev->type_len < 1 || ev->type_len > 255 || ev->message_len > max_message ||
        !(ev->id_offset = event_message_id_offset((const uint8_t *)ev->message, ev->message_len)))
        return 0;
    return 1;
}

/* An entry not delivered: counted, and logged once per REDIS_READER_LOG_EVERY. */
static void count_skipped(struct redis_reader *r, const char *id, const char *why)
{
    if (r->stats.skipped++ % REDIS_READER_LOG_EVERY == 0)
        log_warn("redis: stream %s: entry %s %s: skipped (%" PRIu64 " so far)", r->stream, id, why,
                 r->stats.skipped);
}

/* One stream entry: delivered when it is ours, skipped when not; its id
 * goes to last (ID_MAX + 1 bytes). history_only: one the load reads.
 * Returns false when it is not even an entry (the reply is not the
 * stream's). */
static bool take_entry(struct redis_reader *r, const redisReply *entry, bool history_only,
                       char *last)
{
    struct redis_reader_event ev;
    const char *id;
    size_t id_len;
    int rc = redis_reader_parse_entry(entry, r->config.max_message, &ev, &id, &id_len);
    if (rc < 0)
        return false;
    memcpy(last, id, id_len);
    last[id_len] = '\0';
    if (rc == 0) {
        count_skipped(r, last, "is not an event of ours");
        return true;
    }
    if (!history_only && r->reset_run && ev.run == r->reset_run &&
        !stream_id_before(r->reset_last, last))
        return true; /* read before the reset */
    r->stats.entries++;
    if (history_only) {
        r->stats.loaded++;
    } else {
        r->last_run = ev.run;
        r->last_number = ev.number;
    }
    ev.history_only = history_only;
    r->on_event(r->arg, &ev);
    return true;
}

/* --- stepping past an entry too large to read ------------------------------
 *
 * An entry whose reply is over the size limit (bus/redis_reply.h) cannot be
 * read: its reply drops the connection, and a read from the same id after
 * the reconnect would meet it again, for ever. After such a drop the reader
 * reads one entry at a time, each after a peek at its size (PEEK_SCRIPT),
 * and steps past one it could not take, as a skipped entry. */

struct peek {
    char id[ID_MAX + 1];
    uint64_t size;     /* bytes of its field names and values */
    uint64_t elements; /* how many they are */
};

/* The peek script's reply, untrusted: 1 with *out for an entry, 0 when the
 * range has none, -1 for an error or a reply of another shape. */
static int parse_peek(const redisReply *reply, struct peek *out)
{
    const redisReply *id, *size, *elements;
    uint64_t ms, seq;
    if (!reply || reply->type != REDIS_REPLY_ARRAY || (reply->elements && !reply->element))
        return -1;
    if (reply->elements == 0)
        return 0;
    if (reply->elements != 3)
        return -1;
    id = reply->element[0];
    size = reply->element[1];
    elements = reply->element[2];
    if (!is_string(id) || id->len > ID_MAX || memchr(id->str, '\0', id->len) || !size ||
        size->type != REDIS_REPLY_INTEGER || size->integer < 0 || !elements ||
        elements->type != REDIS_REPLY_INTEGER || elements->integer < 0)
        return -1;
    memcpy(out->id, id->str, id->len);
    out->id[id->len] = '\0';
    if (!parse_stream_id(out->id, &ms, &seq))
        return -1;
    out->size = (uint64_t)size->integer;
    out->elements = (uint64_t)elements->integer;
    return 1;
}

/* Whether the reader could not take the entry whole: over what one of ours
 * can be (one it would read only to skip it), or over a reply's limits. */
static bool too_large(const struct redis_reader *r, const struct peek *p)
{
    uint64_t max = r->config.max_message < REDIS_REPLY_STRING_MAX - OURS_FIELDS_MAX
                       ? OURS_FIELDS_MAX + r->config.max_message
                       : REDIS_REPLY_STRING_MAX;
    return p->size > max || p->elements > REDIS_REPLY_ELEMENTS_MAX;
}

static void skip_too_large(struct redis_reader *r, const struct peek *p)
{
    char why[80];
    snprintf(why, sizeof why, "of %" PRIu64 " bytes is too large to read", p->size);
    count_skipped(r, p->id, why);
}

/* EVAL PEEK_SCRIPT 1 <stream> <command> <start> <end>. */
static void peek(struct redis_reader *r, const char *command, const char *start, const char *end,
                 redis_conn_done_fn done)
{
    const char *argv[7] = {"EVAL", PEEK_SCRIPT, "1", r->stream, command, start, end};
    send_command(r, 7, argv, 0, done);
}

/* What the peek replies share: 1 with *p, 0 when there is no entry (the
 * careful reads end: nothing is in the way), -1 when the reply is of no use
 * (they end too, logged, and the reader starts again after a while). */
static int peek_reply_take(struct redis_reader *r, const redisReply *reply, struct peek *p)
{
    int rc = parse_peek(reply, p);
    if (rc <= 0)
        r->careful = 0;
    if (rc < 0) {
        r->stats.errors++;
        log_warn("redis: the size of the next entry of %s: %s", r->stream,
                 redis_reply_is_error(reply) && reply->str ? reply->str
                                                           : "a reply of another shape");
        retry_later(r);
    }
    return rc;
}

static bool loading(const struct redis_reader *r)
{
    return r->load_end[0] != '\0';
}

/* The start is over (loaded, or nothing to load): live reading follows. */
static void load_done(struct redis_reader *r)
{
    r->load_end[0] = '\0';
    log_info("redis: reading stream %s after %s (%" PRIu64 " events of its history loaded)",
             r->stream, r->last_id, r->stats.loaded);
    if (r->config.on_loaded)
        r->config.on_loaded(r->arg);
}

/* XRANGE <stream> <load_from> <load_end> COUNT <count>: the next part of
 * the stream's past. */
static void load_reply(void *arg, const redisReply *reply)
{
    struct redis_reader *r = arg;
    r->in_flight = false;
    if (!reply)
        return; /* the connection is gone: ready_cb goes on from load_from */
    if (reply->type != REDIS_REPLY_ARRAY) {
        r->stats.errors++;
        log_warn("redis: XRANGE on %s: %s", r->stream,
                 reply->type == REDIS_REPLY_ERROR ? reply->str : "a reply of another shape");
        retry_later(r);
        return;
    }
    for (size_t i = 0; i < reply->elements; i++) {
        if (!take_entry(r, reply->element[i], true, r->load_from + 1)) {
            r->stats.errors++;
            log_warn("redis: XRANGE on %s: an entry of another shape: the load ends there",
                     r->stream);
            load_done(r);
            break;
        }
        r->load_from[0] = '(';
    }
    if (loading(r) && (reply->elements < r->asked || strcmp(r->load_from + 1, r->load_end) == 0))
        load_done(r);
    if (loading(r))
        load_next(r);
    else
        read_next(r);
}

static void load_ask(struct redis_reader *r, const char *count, unsigned asked)
{
    const char *argv[6] = {"XRANGE", r->stream, r->load_from, r->load_end, "COUNT", count};
    if (send_command(r, 6, argv, 0, load_reply))
        r->asked = asked;
}

/* The peek before a careful XRANGE: the next entry of the load's range. */
static void load_peek_reply(void *arg, const redisReply *reply)
{
    struct redis_reader *r = arg;
    struct peek p;
    int rc;
    r->in_flight = false;
    if (!reply)
        return;
    if ((rc = peek_reply_take(r, reply, &p)) < 0)
        return;
    if (rc == 0) {
        load_next(r);
        return;
    }
    r->careful--;
    if (!too_large(r, &p)) {
        load_ask(r, "1", 1);
        return;
    }
    skip_too_large(r, &p);
    snprintf(r->load_from, sizeof r->load_from, "(%s", p.id);
    if (strcmp(p.id, r->load_end) == 0) {
        load_done(r);
        read_next(r);
    } else {
        load_next(r);
    }
}

static void load_next(struct redis_reader *r)
{
    if (r->in_flight || !redis_conn_ready(r->conn))
        return;
    if (r->careful)
        peek(r, "XRANGE", r->load_from, r->load_end, load_peek_reply);
    else
        load_ask(r, r->count, r->config.count);
}

static void read_reply(void *arg, const redisReply *reply)
{
    struct redis_reader *r = arg;
    const redisReply *streams, *entries;
    r->in_flight = false;
    if (!reply)
        return; /* the connection is gone: ready_cb goes on from last_id */
    r->stats.reads++;
    if (reply->type == REDIS_REPLY_NIL) {
        /* BLOCK ran out with nothing new: a moment to see whether the
         * stream was reset, which XREAD from our id would never show. */
        ready_cb(r);
        return;
    }
    streams = reply;
    if (streams->type != REDIS_REPLY_ARRAY || streams->elements != 1 ||
        streams->element[0]->type != REDIS_REPLY_ARRAY || streams->element[0]->elements != 2 ||
        (entries = streams->element[0]->element[1])->type != REDIS_REPLY_ARRAY) {
        r->stats.errors++;
        log_warn("redis: XREAD on %s: %s", r->stream,
                 reply->type == REDIS_REPLY_ERROR ? reply->str : "a reply of another shape");
        retry_later(r);
        return;
    }
    for (size_t i = 0; i < entries->elements; i++) {
        if (!take_entry(r, entries->element[i], false, r->last_id)) {
            r->stats.errors++;
            log_warn("redis: XREAD on %s: an entry of another shape", r->stream);
            break;
        }
    }
    read_next(r);
}

static void seq_reply(void *arg, const redisReply *reply)
{
    struct redis_reader *r = arg;
    uint64_t seq = 0;
    if (!reply || reply->type != REDIS_REPLY_STRING || !reply->str || reply->len == 0 ||
        reply->len > 19)
        return; /* no count (yet), or not one: the lag stays as it was */
    for (size_t i = 0; i < reply->len; i++) {
        if (reply->str[i] < '0' || reply->str[i] > '9')
            return;
        seq = seq * 10 + (uint64_t)(reply->str[i] - '0');
    }
    r->stream_seq = seq;
}

/* HGET <stream>:meta seq, before an XREAD at most once per
 * REDIS_READER_LAG_EVERY_MS: how far the stream's end is ahead. */
static void ask_seq(struct redis_reader *r)
{
    const char *argv[3] = {"HGET", r->meta, "seq"};
    size_t lens[3] = {4, strlen(r->meta), 3};
    uint64_t now = clock_now_ms();
    if (now - r->seq_asked_ms < REDIS_READER_LAG_EVERY_MS)
        return;
    if (redis_conn_command(r->conn, 3, argv, lens, 0, seq_reply, r) == 0)
        r->seq_asked_ms = now;
}

static void read_ask(struct redis_reader *r, const char *count)
{
    const char *argv[8] = {"XREAD", "BLOCK",   r->block,  "COUNT",
                           count,   "STREAMS", r->stream, r->last_id};
    ask_seq(r);
    send_command(r, 8, argv, r->config.block_ms + REPLY_MARGIN_MS, read_reply);
}

/* The peek before a careful XREAD: the next entry after last_id. */
static void read_peek_reply(void *arg, const redisReply *reply)
{
    struct redis_reader *r = arg;
    struct peek p;
    int rc;
    r->in_flight = false;
    if (!reply)
        return;
    if ((rc = peek_reply_take(r, reply, &p)) < 0)
        return;
    if (rc == 0) {
        read_next(r);
        return;
    }
    r->careful--;
    if (!too_large(r, &p)) {
        read_ask(r, "1");
        return;
    }
    skip_too_large(r, &p);
    snprintf(r->last_id, sizeof r->last_id, "%s", p.id);
    read_next(r);
}

static void read_next(struct redis_reader *r)
{
    char after[ID_MAX + 2];
    if (r->in_flight || !redis_conn_ready(r->conn))
        return;
    if (r->careful) {
        snprintf(after, sizeof after, "(%s", r->last_id);
        peek(r, "XRANGE", after, "+", read_peek_reply);
    } else {
        read_ask(r, r->count);
    }
}

/* A stream entry id, "<ms>-<seq>", as two numbers; false if it is not one. */
static bool parse_stream_id(const char *s, uint64_t *ms, uint64_t *seq)
{
    char *end;
    if (*s < '0' || *s > '9')
        return false;
    *ms = strtoull(s, &end, 10);
    if (*end != '-' || end[1] < '0' || end[1] > '9')
        return false;
    *seq = strtoull(end + 1, &end, 10);
    return *end == '\0';
}

/* Whether id a comes before id b in a stream. */
static bool stream_id_before(const char *a, const char *b)
{
    uint64_t am, as, bm, bs;
    if (!parse_stream_id(a, &am, &as) || !parse_stream_id(b, &bm, &bs))
        return false;
    return am < bm || (am == bm && as < bs);
}

/* XREVRANGE <stream> + - COUNT 1: where a new reader starts, and, for one
 * that reads already, whether the stream was reset since (deleted,
 * flushed, or a Redis restarted without its data): its last entry is then
 * before the last one read, and it is read again from its start (the
 * entries carry a new epoch, so the history sees a new run). */
static void start_at(struct redis_reader *r, const char *top, uint64_t top_run);

static void start_reply(void *arg, const redisReply *reply)
{
    char top[ID_MAX + 1] = "0-0";
    uint64_t top_run = 0;
    struct redis_reader *r = arg;
    r->in_flight = false;
    if (!reply)
        return;
    if (reply->type != REDIS_REPLY_ARRAY) {
        r->stats.errors++;
        log_warn("redis: XREVRANGE on %s: %s", r->stream,
                 reply->type == REDIS_REPLY_ERROR ? reply->str : "a reply of another shape");
        retry_later(r);
        return;
    }
    if (reply->elements > 0) {
        const redisReply *entry = reply->element[0];
        if (entry->type != REDIS_REPLY_ARRAY || entry->elements != 2 ||
            !is_string(entry->element[0]) || entry->element[0]->len > ID_MAX) {
            r->stats.errors++;
            retry_later(r);
            return;
        }
        memcpy(top, entry->element[0]->str, entry->element[0]->len);
        top[entry->element[0]->len] = '\0';
        {
            struct redis_reader_event ev;
            const char *id;
            size_t id_len;
            if (redis_reader_parse_entry(entry, r->config.max_message, &ev, &id, &id_len) == 1)
                top_run = ev.run;
        }
    }
    start_at(r, top, top_run);
}

/* The stream's last entry is top ("0-0": none), of epoch top_run (0: not
 * an event of ours). */
static void start_at(struct redis_reader *r, const char *top, uint64_t top_run)
{
    if (!r->started) {
        snprintf(r->last_id, sizeof r->last_id, "%s", top);
        r->last_run = top_run;
        r->started = true;
        if (r->config.load_history && strcmp(top, "0-0") != 0) {
            snprintf(r->load_end, sizeof r->load_end, "%s", top);
            snprintf(r->load_from, sizeof r->load_from, "-");
            log_info("redis: loading the history of stream %s, up to %s", r->stream, top);
        } else {
            load_done(r);
        }
    } else if (stream_id_before(top, r->last_id) ||
               (top_run && r->last_run && top_run != r->last_run)) {
        r->stats.resets++;
        log_warn("redis: stream %s was reset (its last entry %s, epoch %016" PRIx64
                 ", against %s, epoch %016" PRIx64 ", the last read): reading it from its start",
                 r->stream, top, top_run, r->last_id, r->last_run);
        r->reset_run = r->last_run;
        memcpy(r->reset_last, r->last_id, sizeof r->reset_last);
        snprintf(r->last_id, sizeof r->last_id, "0-0");
        if (loading(r))
            load_done(r); /* what it was loading is gone */
    }
    if (loading(r))
        load_next(r);
    else
        read_next(r);
}

static void start_ask(struct redis_reader *r)
{
    const char *argv[6] = {"XREVRANGE", r->stream, "+", "-", "COUNT", "1"};
    send_command(r, 6, argv, 0, start_reply);
}

/* The peek before XREVRANGE: the stream's last entry, which XREVRANGE would
 * read whole. One too large is where the reader starts, or reads on after,
 * as one not of ours; it is skipped when the reading comes to it. */
static void start_peek_reply(void *arg, const redisReply *reply)
{
    struct redis_reader *r = arg;
    struct peek p;
    int rc;
    r->in_flight = false;
    if (!reply)
        return;
    if ((rc = peek_reply_take(r, reply, &p)) < 0)
        return;
    r->peek_top = rc > 0 && too_large(r, &p);
    if (r->peek_top)
        start_at(r, p.id, 0);
    else
        start_ask(r);
}

static void ready_cb(void *arg)
{
    struct redis_reader *r = arg;
    if (r->in_flight || !redis_conn_ready(r->conn))
        return; /* a retry that came after a reconnect, or after the connection went */
    if (r->careful || r->peek_top)
        peek(r, "XREVRANGE", "+", "-", start_peek_reply);
    else
        start_ask(r);
}

static void lost_cb(void *arg, const char *reason)
{
    struct redis_reader *r = arg;
    r->in_flight = false;
    log_warn("redis: reading %s: %s (again after a backoff)", r->stream, reason);
    if (redis_conn_lost_to_oversized(r->conn)) {
        /* Most likely a stream entry too large in the reply of a read, one
         * of the next count; the next reads go one entry at a time, each
         * after a peek, that many at most. Only a peek's answer skips an
         * entry: a drop for anything else costs a few peeks, no event. */
        r->careful = r->config.count;
        log_warn("redis: reading %s: the next %u entries one at a time, each after a look at "
                 "its size",
                 r->stream, r->config.count);
    }
}

struct redis_reader *redis_reader_new(struct event_base *base,
                                      const struct redis_reader_config *config,
                                      redis_reader_event_fn on_event, void *arg, char *err,
                                      size_t err_len)
{
    struct redis_reader *r;
    struct redis_conn_config conn = config->conn;
    if (redis_stream_check(config->stream, err, err_len) < 0)
        return NULL;
    if (config->block_ms < 1 || config->block_ms > 60000 || config->count < 1 ||
        config->count > REDIS_READER_COUNT_MAX) {
        error_message_format(err, err_len,
                             "the stream reader's block time or count is out of range");
        return NULL;
    }
    if (!(r = calloc(1, sizeof *r))) {
        error_message_format(err, err_len, "out of memory");
        return NULL;
    }
    r->config = *config;
    snprintf(r->stream, sizeof r->stream, "%s", config->stream);
    redis_stream_meta_key(r->stream, r->meta);
    r->config.stream = r->stream;
    snprintf(r->block, sizeof r->block, "%u", config->block_ms);
    snprintf(r->count, sizeof r->count, "%u", config->count);
    snprintf(r->last_id, sizeof r->last_id, "0-0");
    r->on_event = on_event;
    r->arg = arg;
    r->conn_events.ready = ready_cb;
    r->conn_events.lost = lost_cb;
    conn.reply_timeout_ms = conn.reply_timeout_ms ? conn.reply_timeout_ms : REPLY_MARGIN_MS;
    r->retry = evtimer_new(base, retry_cb, r);
    if (!r->retry || !(r->conn = redis_conn_new(base, &conn, &r->conn_events, r))) {
        if (r->retry)
            event_free(r->retry);
        free(r);
        error_message_format(err, err_len, "out of memory");
        return NULL;
    }
    return r;
}

void redis_reader_free(struct redis_reader *r)
{
    if (!r)
        return;
    redis_conn_free(r->conn); /* its pending read is answered NULL: nothing follows */
    event_free(r->retry);
    free(r);
}

bool redis_reader_reading(const struct redis_reader *r)
{
    return r->started && redis_conn_ready(r->conn);
}

const char *redis_reader_last_id(const struct redis_reader *r)
{
    return r->last_id;
}

void redis_reader_get_stats(const struct redis_reader *r, struct redis_reader_stats *out)
{
    *out = r->stats;
    out->lag = r->stream_seq > r->last_number ? r->stream_seq - r->last_number : 0;
    redis_conn_get_stats(r->conn, &out->conn);
}
