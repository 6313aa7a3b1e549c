/* One subscriber process of the load tool: up to ~19,000 WebSocket clients
 * on one epoll loop (a process may open at most 20,000 files here).
 *
 * Each client connects from 127.0.0.<1 + index % src_addrs> (bind() before
 * connect(), with IP_BIND_ADDRESS_NO_PORT so that the port is picked per
 * destination and one source address holds ~28,000 clients per server port),
 * upgrades (RFC 6455 §4.1), sends event-server's init message and waits for
 * its OK (nchan needs neither), then reads frames (§5.2): server frames are
 * unmasked, client frames masked (§5.3), pings are answered with pongs
 * (§5.5.3). Only the first PREFIX_CAP bytes of a message are kept, which is
 * where the load tool's publishers put "p", "seq" and "t": a 1 MiB event costs
 * a client no more memory than a small one.
 *
 * Protocol with the driver: READY once every client has its OK or has
 * failed; then, with a window, PROGRESS whenever the fewest events any live
 * client has grows; on EXPECT, RESULT once every live client has the expected
 * count or at the deadline; then it waits for the driver to close the pipe. */
#include "loadgen.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define PREFIX_CAP 192u
#define HANDSHAKE_CAP 2048
#define READ_CAP (64 * 1024)
#define SLOW_TICK_MS 100

enum sub_state { SUB_NEW, SUB_CONNECTING, SUB_TLS, SUB_UPGRADE, SUB_INIT, SUB_READY, SUB_GONE };

struct sub {
    int fd;
    uint8_t state;
    bool complete;  /* has every expected event */
    bool want_out;  /* EPOLLOUT is in its interest set */
    bool slow;      /* read on the slow tick, not from epoll */
    bool was_ready; /* had its OK (counts for loss from then on) */
    /* frame parser */
    uint8_t hdr[14], hdr_have, hdr_need;
    uint8_t opcode, msg_opcode;
    bool fin, in_message;
    uint64_t remaining, message_len;
    uint16_t prefix_len;
    uint8_t ctrl_len;
    uint8_t prefix[PREFIX_CAP + 1];
    uint8_t ctrl[126];
    uint32_t received;
    uint32_t preloaded; /* of them, events published before the run (a resume's replay) */
    /* output not yet written (upgrade request, init, pongs) */
    uint8_t *out;
    uint32_t out_len, out_off;
    char *handshake; /* the upgrade response while it arrives */
    uint32_t handshake_len;
    struct lg_tls *tls;
};

struct sub_proc {
    const struct lg_config *cfg;
    int first, count, epfd, to_driver, from_driver;
    struct sub *subs;
    int32_t *last_seq; /* count x (pub_base + pubs): last seq seen per publisher number */
    int n_pubs;        /* pub_base + pubs */
    int64_t start_ns;  /* CLOCK_REALTIME at the process's start (for caught_up_after) */
    int next_start, in_flight;
    bool ready_sent;
    uint64_t ready, failed;
    char first_error[160];
    /* after EXPECT */
    bool expecting, result_sent;
    uint64_t expected;
    int64_t deadline_ns;
    uint64_t live, live_complete;
    /* window progress: the fewest events a live client has, and how many have that many */
    uint64_t min_received, at_min;
    uint64_t progress_sent;
    bool progress_valid;
    int64_t connect_deadline_mono;
    uint8_t mask[4];
    struct lg_sub_result r;
    uint8_t rbuf[READ_CAP];
    char request[1024];
    size_t request_len;
    uint8_t init_frame[1024];
    size_t init_frame_len;
};

static void note_error(struct sub_proc *p, const char *what)
{
    if (!p->first_error[0])
        snprintf(p->first_error, sizeof p->first_error, "%s", what);
}

/* --- output --------------------------------------------------------------- */

static void set_interest(struct sub_proc *p, struct sub *s, bool want_out)
{
    struct epoll_event ev = {EPOLLIN | (want_out ? EPOLLOUT : 0), {.ptr = s}};
    if (s->slow || s->want_out == want_out)
        return;
    s->want_out = want_out;
    epoll_ctl(p->epfd, EPOLL_CTL_MOD, s->fd, &ev);
}

static long raw_write(struct sub *s, const uint8_t *data, size_t len)
{
    ssize_t n;
    if (s->tls)
        return lg_tls_write(s->tls, data, len);
    n = send(s->fd, data, len, MSG_NOSIGNAL);
    if (n < 0)
        return errno == EAGAIN || errno == EINTR ? LG_TLS_AGAIN : LG_TLS_ERROR;
    return n;
}

/* Writes what is pending; returns -1 when the connection failed. */
static int flush_out(struct sub_proc *p, struct sub *s)
{
    while (s->out && s->out_off < s->out_len) {
        long n = raw_write(s, s->out + s->out_off, s->out_len - s->out_off);
        if (n == LG_TLS_AGAIN) {
            set_interest(p, s, true);
            return 0;
        }
        if (n <= 0)
            return -1;
        s->out_off += (uint32_t)n;
    }
    free(s->out);
    s->out = NULL;
    s->out_len = s->out_off = 0;
    set_interest(p, s, s->tls && lg_tls_wants_write(s->tls));
    return 0;
}

static int queue_out(struct sub_proc *p, struct sub *s, const uint8_t *data, size_t len)
{
    uint8_t *grown = realloc(s->out, s->out_len + len);
    if (!grown)
        return -1;
    memcpy(grown + s->out_len, data, len);
    s->out = grown;
    s->out_len += (uint32_t)len;
    return flush_out(p, s);
}

/* A masked client frame (RFC 6455 §5.2, §5.3); payload under 64 KiB. */
static size_t frame_encode(const uint8_t mask[4], uint8_t opcode, const uint8_t *payload,
                           size_t len, uint8_t *out)
{
    size_t o = 0;
    out[o++] = (uint8_t)(0x80 | opcode);
    if (len < 126) {
        out[o++] = (uint8_t)(0x80 | len);
    } else {
        out[o++] = 0x80 | 126;
        out[o++] = (uint8_t)(len >> 8);
        out[o++] = (uint8_t)len;
    }
    memcpy(out + o, mask, 4);
    o += 4;
    for (size_t i = 0; i < len; i++)
        out[o + i] = payload[i] ^ mask[i % 4];
    return o + len;
}

/* --- ending a client ------------------------------------------------------ */

static void progress_forget(struct sub_proc *p, uint64_t had);

static void sub_end(struct sub_proc *p, struct sub *s, const char *why)
{
    bool was_ready = s->state == SUB_READY;
    if (s->state == SUB_GONE)
        return;
    if (s->fd >= 0)
        close(s->fd); /* also takes it out of the epoll set */
    s->fd = -1;
    lg_tls_free(s->tls);
    s->tls = NULL;
    free(s->out);
    s->out = NULL;
    free(s->handshake);
    s->handshake = NULL;
    s->state = SUB_GONE;
    if (was_ready) {
        p->live--;
        if (s->complete)
            p->live_complete--;
        progress_forget(p, s->received);
        if (why)
            p->r.dropped++;
        return;
    }
    /* Still connecting: it failed. */
    p->failed++;
    p->in_flight--;
    note_error(p, why ? why : "closed during the handshake");
}

/* --- progress (the publishers' window) ------------------------------------ */

static void progress_rescan(struct sub_proc *p)
{
    uint64_t min = UINT64_MAX, at = 0;
    for (int i = 0; i < p->count; i++) {
        struct sub *s = &p->subs[i];
        if (s->state != SUB_READY)
            continue;
        if (s->received < min) {
            min = s->received;
            at = 1;
        } else if (s->received == min) {
            at++;
        }
    }
    p->min_received = min == UINT64_MAX ? 0 : min;
    p->at_min = at;
    p->progress_valid = at > 0;
}

/* A live client that had `had` events got one more, or left. */
static void progress_forget(struct sub_proc *p, uint64_t had)
{
    if (!p->progress_valid || had != p->min_received)
        return;
    if (--p->at_min == 0)
        progress_rescan(p);
}

static void progress_send(struct sub_proc *p)
{
    uint64_t value;
    if (p->cfg->window <= 0 || !p->ready_sent || p->result_sent)
        return;
    /* With no live client left, nothing holds the publishers back. */
    value = p->progress_valid ? p->min_received : UINT64_MAX;
    if (value != p->progress_sent) {
        p->progress_sent = value;
        lg_write_msg(p->to_driver, LG_MSG_PROGRESS, &value, sizeof value);
    }
}

/* --- messages ------------------------------------------------------------- */

static bool find_number(const char *text, const char *key, int64_t *out)
{
    const char *at = strstr(text, key);
    char *end;
    long long v;
    if (!at)
        return false;
    v = strtoll(at + strlen(key), &end, 10);
    if (end == at + strlen(key))
        return false;
    *out = v;
    return true;
}

static void sub_became_ready(struct sub_proc *p, struct sub *s)
{
    s->state = SUB_READY;
    s->was_ready = true;
    p->ready++;
    p->in_flight--;
    p->live++;
    if (s->tls && !p->r.tls_suite[0])
        snprintf(p->r.tls_suite, sizeof p->r.tls_suite, "%s", lg_tls_suite(s->tls));
    if (p->cfg->slow_bps > 0) {
        /* From now on it is read only on the slow tick. */
        epoll_ctl(p->epfd, EPOLL_CTL_DEL, s->fd, NULL);
        s->slow = true;
    }
}

static void handle_event(struct sub_proc *p, struct sub *s, uint64_t len, int64_t now_ns)
{
    const char *text = (const char *)s->prefix, *data;
    int64_t pub = -1, seq = -1, sent_ns = 0;
    int32_t *last;

    p->r.bytes += len;
    data = p->cfg->proto == LG_PROTO_EVS ? strstr(text, "\"data\":") : text;
    if (!data || !find_number(data, "\"p\":", &pub) || !find_number(data, "\"seq\":", &seq) ||
        !find_number(data, "\"t\":", &sent_ns) || pub < 0 || pub >= p->n_pubs) {
        p->r.unparsed++;
        return;
    }
    p->r.received++;
    if (!p->r.first_recv_ns)
        p->r.first_recv_ns = now_ns;
    p->r.last_recv_ns = now_ns;
    if (pub < p->cfg->pub_base) {
        /* Replayed: its latency is the time since it was published before the run. */
        if (++s->preloaded == (uint64_t)p->cfg->preloaded) {
            p->r.caught_up++;
            lg_hist_add(&p->r.caught_up_after, (uint64_t)(now_ns - p->start_ns) / 1000);
        }
    } else if (now_ns > sent_ns) {
        lg_hist_add(&p->r.latency, (uint64_t)(now_ns - sent_ns) / 1000);
    } else {
        lg_hist_add(&p->r.latency, 0);
    }
    last = &p->last_seq[(size_t)(s - p->subs) * (size_t)p->n_pubs + (size_t)pub];
    if (seq == *last)
        p->r.duplicates++;
    else if (seq < *last)
        p->r.reordered++;
    if (seq > *last)
        *last = (int32_t)seq;
    s->received++;
    progress_forget(p, s->received - 1);
    if (p->expecting && !s->complete && s->received >= p->expected) {
        s->complete = true;
        p->live_complete++;
    }
}

static void handle_init_answer(struct sub_proc *p, struct sub *s)
{
    const char *text = (const char *)s->prefix, *code;
    char why[96];
    bool by_id = p->cfg->since[0] && strcmp(p->cfg->since, "now") != 0 &&
                 strcmp(p->cfg->since, "oldest") != 0;
    if (strstr(text, "\"type\":\"init\"") && strstr(text, "\"code\":\"OK\"") &&
        (!by_id || strstr(text, "\"resumed\":true"))) {
        sub_became_ready(p, s);
        return;
    }
    code = strstr(text, "\"code\":\"");
    snprintf(why, sizeof why, "init answered %.60s", code ? code + 7 : text);
    sub_end(p, s, why);
}

static void record_close(struct sub_proc *p, struct sub *s)
{
    uint16_t code = s->ctrl_len >= 2 ? (uint16_t)(s->ctrl[0] << 8 | s->ctrl[1]) : 1005;
    int i;
    p->r.closed_by_server++;
    for (i = 0; i < LG_CLOSE_CODES; i++) {
        if (p->r.close_code[i] == code || p->r.close_code[i] == 0) {
            p->r.close_code[i] = code;
            p->r.close_count[i]++;
            break;
        }
    }
    if (s->state != SUB_READY) {
        char why[64];
        snprintf(why, sizeof why, "closed by the server with %u", (unsigned)code);
        sub_end(p, s, why);
    } else {
        sub_end(p, s, NULL);
    }
}

/* Returns false when s ended. */
static bool handle_control(struct sub_proc *p, struct sub *s)
{
    uint8_t frame[160];
    switch (s->opcode) {
    case 0x9: /* ping: a pong with the same payload (§5.5.3) */
        p->r.pings++;
        if (queue_out(p, s, frame, frame_encode(p->mask, 0xA, s->ctrl, s->ctrl_len, frame)) < 0) {
            sub_end(p, s, "write failed");
            return false;
        }
        return true;
    case 0x8:
        record_close(p, s);
        return false;
    default:
        return true;
    }
}

/* Returns false when s ended. */
static bool message_done(struct sub_proc *p, struct sub *s, uint64_t len, int64_t now_ns)
{
    s->prefix[s->prefix_len] = '\0';
    s->in_message = false;
    if (s->state == SUB_INIT) {
        handle_init_answer(p, s);
        return s->state != SUB_GONE;
    }
    handle_event(p, s, len, now_ns);
    return true;
}

/* Feeds bytes from the server into the frame parser. Returns false when s
 * ended. */
static bool feed_frames(struct sub_proc *p, struct sub *s, const uint8_t *data, size_t len,
                        int64_t now_ns)
{
    while (len > 0) {
        if (s->hdr_need == 0 || s->hdr_have < s->hdr_need) {
            /* Frame header (§5.2): 2 bytes, then 2 or 8 of length. */
            if (s->hdr_need == 0)
                s->hdr_need = 2;
            while (len > 0 && s->hdr_have < s->hdr_need) {
                s->hdr[s->hdr_have++] = *data++;
                len--;
                if (s->hdr_have == 2) {
                    uint8_t l7 = s->hdr[1] & 0x7f;
                    if (s->hdr[1] & 0x80) {
                        sub_end(p, s, "masked server frame");
                        return false;
                    }
                    s->hdr_need = (uint8_t)(2 + (l7 == 126 ? 2 : l7 == 127 ? 8 : 0));
                }
            }
            if (s->hdr_have < s->hdr_need)
                return true;
            {
                uint8_t l7 = s->hdr[1] & 0x7f;
                uint64_t plen = l7;
                if (l7 == 126)
                    plen = (uint64_t)s->hdr[2] << 8 | s->hdr[3];
                else if (l7 == 127)
                    for (int i = 2; i < 10; i++)
                        plen = plen << 8 | s->hdr[i];
                s->opcode = s->hdr[0] & 0x0f;
                s->fin = (s->hdr[0] & 0x80) != 0;
                s->remaining = plen;
                if (s->opcode >= 0x8) {
                    if (plen > 125) {
                        sub_end(p, s, "control frame over 125 bytes");
                        return false;
                    }
                    s->ctrl_len = 0;
                } else if (s->opcode != 0) {
                    s->msg_opcode = s->opcode;
                    s->in_message = true;
                    s->prefix_len = 0;
                    s->message_len = 0;
                }
            }
        }
        /* Payload. */
        {
            size_t take = len < s->remaining ? len : (size_t)s->remaining;
            if (s->opcode >= 0x8) {
                memcpy(s->ctrl + s->ctrl_len, data, take);
                s->ctrl_len = (uint8_t)(s->ctrl_len + take);
            } else if (s->prefix_len < PREFIX_CAP) {
                size_t keep = PREFIX_CAP - s->prefix_len < take ? PREFIX_CAP - s->prefix_len : take;
                memcpy(s->prefix + s->prefix_len, data, keep);
                s->prefix_len = (uint16_t)(s->prefix_len + keep);
            }
            if (s->opcode < 0x8)
                s->message_len += take;
            data += take;
            len -= take;
            s->remaining -= take;
        }
        if (s->remaining == 0) {
            uint8_t opcode = s->opcode;
            bool fin = s->fin;
            s->hdr_have = s->hdr_need = 0;
            if (opcode >= 0x8) {
                if (!handle_control(p, s))
                    return false;
            } else if (fin && s->in_message) {
                if (!message_done(p, s, s->message_len, now_ns))
                    return false;
            }
        }
    }
    return true;
}

/* --- the opening handshake ------------------------------------------------ */

static void send_upgrade(struct sub_proc *p, struct sub *s)
{
    s->state = SUB_UPGRADE;
    s->handshake = malloc(HANDSHAKE_CAP);
    s->handshake_len = 0;
    if (!s->handshake || queue_out(p, s, (const uint8_t *)p->request, p->request_len) < 0)
        sub_end(p, s, "could not send the upgrade request");
}

/* Returns false when s ended. */
static bool upgrade_input(struct sub_proc *p, struct sub *s, const uint8_t *data, size_t len,
                          int64_t now_ns)
{
    size_t room = HANDSHAKE_CAP - 1 - s->handshake_len, take = len < room ? len : room;
    char *end;
    size_t head_len;
    memcpy(s->handshake + s->handshake_len, data, take);
    s->handshake_len += (uint32_t)take;
    s->handshake[s->handshake_len] = '\0';
    end = strstr(s->handshake, "\r\n\r\n");
    if (!end) {
        if (s->handshake_len >= HANDSHAKE_CAP - 1) {
            sub_end(p, s, "upgrade response too long");
            return false;
        }
        return true;
    }
    if (strncmp(s->handshake, "HTTP/1.1 101", 12) != 0) {
        char why[120];
        snprintf(why, sizeof why, "upgrade answered: %.80s", s->handshake);
        for (char *c = why; *c; c++)
            if (*c == '\r' || *c == '\n')
                *c = ' ';
        sub_end(p, s, why);
        return false;
    }
    head_len = (size_t)(end + 4 - s->handshake);
    /* Bytes of frames that came with the response. */
    {
        size_t already = s->handshake_len - take; /* before this chunk */
        size_t used = head_len - already;
        data += used;
        len -= used;
    }
    free(s->handshake);
    s->handshake = NULL;
    if (p->cfg->proto == LG_PROTO_EVS) {
        s->state = SUB_INIT;
        if (queue_out(p, s, p->init_frame, p->init_frame_len) < 0) {
            sub_end(p, s, "could not send the init message");
            return false;
        }
    } else {
        sub_became_ready(p, s);
    }
    return len == 0 || feed_frames(p, s, data, len, now_ns);
}

static void sub_start(struct sub_proc *p, struct sub *s, int global_index)
{
    struct sockaddr_in src = {.sin_family = AF_INET}, dst = {.sin_family = AF_INET};
    struct epoll_event ev = {EPOLLIN | EPOLLOUT, {.ptr = s}};
    int one = 1;
    p->in_flight++;
    s->state = SUB_CONNECTING;
    s->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (s->fd < 0) {
        sub_end(p, s, strerror(errno));
        return;
    }
    setsockopt(s->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
    setsockopt(s->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (p->cfg->rcvbuf > 0)
        setsockopt(s->fd, SOL_SOCKET, SO_RCVBUF, &p->cfg->rcvbuf, sizeof p->cfg->rcvbuf);
    src.sin_addr.s_addr = htonl(0x7f000001u + (uint32_t)(global_index % p->cfg->src_addrs));
    inet_pton(AF_INET, p->cfg->host, &dst.sin_addr);
    dst.sin_port = htons((uint16_t)p->cfg->sub_port);
    if (bind(s->fd, (struct sockaddr *)&src, sizeof src) < 0) {
        sub_end(p, s, strerror(errno));
        return;
    }
    if (connect(s->fd, (struct sockaddr *)&dst, sizeof dst) < 0 && errno != EINPROGRESS) {
        char why[96];
        snprintf(why, sizeof why, "connect: %s", strerror(errno));
        sub_end(p, s, why);
        return;
    }
    s->want_out = true;
    epoll_ctl(p->epfd, EPOLL_CTL_ADD, s->fd, &ev);
}

static void start_more(struct sub_proc *p)
{
    while (p->in_flight < p->cfg->connect_window && p->next_start < p->count) {
        int i = p->next_start++;
        sub_start(p, &p->subs[i], p->first + i);
    }
}

static void maybe_ready(struct sub_proc *p)
{
    struct lg_ready ready;
    if (p->ready_sent || p->next_start < p->count || p->in_flight > 0)
        return;
    memset(&ready, 0, sizeof ready);
    ready.ok = p->ready;
    ready.failed = p->failed;
    snprintf(ready.first_error, sizeof ready.first_error, "%s", p->first_error);
    p->ready_sent = true;
    progress_rescan(p);
    lg_write_msg(p->to_driver, LG_MSG_READY, &ready, sizeof ready);
}

/* --- I/O ------------------------------------------------------------------ */

/* Reads once (up to `budget` bytes) and feeds the bytes on. Returns the bytes
 * read, 0 when there was nothing, -1 when s ended. */
static long sub_read(struct sub_proc *p, struct sub *s, size_t budget)
{
    long n;
    int64_t now_ns;
    if (budget > READ_CAP)
        budget = READ_CAP;
    if (s->tls) {
        n = lg_tls_read(s->tls, p->rbuf, budget);
    } else {
        ssize_t got = recv(s->fd, p->rbuf, budget, 0);
        n = got >= 0 ? got : errno == EAGAIN || errno == EINTR ? LG_TLS_AGAIN : LG_TLS_ERROR;
    }
    if (n == LG_TLS_AGAIN)
        return 0;
    if (n <= 0) {
        sub_end(p, s, n == 0 ? "closed by the server" : "connection error");
        return -1;
    }
    now_ns = lg_now_ns();
    if (s->state == SUB_UPGRADE) {
        if (!upgrade_input(p, s, p->rbuf, (size_t)n, now_ns))
            return -1;
    } else if (!feed_frames(p, s, p->rbuf, (size_t)n, now_ns)) {
        return -1;
    }
    return n;
}

static void sub_io(struct sub_proc *p, struct sub *s, uint32_t events)
{
    if (s->state == SUB_CONNECTING) {
        int err = 0;
        socklen_t err_len = sizeof err;
        getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &err_len);
        if (err) {
            char why[96];
            snprintf(why, sizeof why, "connect: %s", strerror(err));
            sub_end(p, s, why);
            return;
        }
        if (p->cfg->tls) {
            s->tls = lg_tls_new(s->fd);
            if (!s->tls) {
                sub_end(p, s, "TLS set-up failed");
                return;
            }
            s->state = SUB_TLS;
        } else {
            set_interest(p, s, false);
            send_upgrade(p, s);
            return;
        }
    }
    if (s->state == SUB_TLS) {
        int rc = lg_tls_handshake(s->tls);
        if (rc == LG_TLS_ERROR) {
            sub_end(p, s, "TLS handshake failed");
            return;
        }
        if (rc == LG_TLS_AGAIN) {
            set_interest(p, s, lg_tls_wants_write(s->tls));
            return;
        }
        set_interest(p, s, false);
        send_upgrade(p, s);
        return;
    }
    if ((events & EPOLLOUT) && flush_out(p, s) < 0) {
        sub_end(p, s, "write failed");
        return;
    }
    if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
        if (s->tls) {
            /* mbedTLS may hold whole records epoll cannot see: read until it
             * would block. */
            long n;
            while ((n = sub_read(p, s, READ_CAP)) > 0)
                ;
        } else {
            sub_read(p, s, READ_CAP);
        }
    }
}

static void slow_tick(struct sub_proc *p)
{
    size_t budget = (size_t)p->cfg->slow_bps * SLOW_TICK_MS / 1000;
    if (budget < 1)
        budget = 1;
    for (int i = 0; i < p->count; i++) {
        struct sub *s = &p->subs[i];
        size_t left = budget;
        if (!s->slow || s->state != SUB_READY)
            continue;
        if (s->out && flush_out(p, s) < 0) {
            sub_end(p, s, "write failed");
            continue;
        }
        while (left > 0) {
            long n = sub_read(p, s, left);
            if (n <= 0)
                break;
            left -= (size_t)n < left ? (size_t)n : left;
        }
    }
}

/* --- driver messages ------------------------------------------------------ */

static void send_result(struct sub_proc *p)
{
    /* Clients that failed before their OK count as failed, not as losing
     * events; one that had its OK and was dropped later lost what it missed. */
    for (int i = 0; i < p->count; i++) {
        struct sub *s = &p->subs[i];
        if (!s->was_ready)
            continue;
        if (s->received < p->expected)
            p->r.lost += p->expected - s->received;
        else
            p->r.complete++;
    }
    p->r.ready = p->ready;
    p->r.failed = p->failed;
    p->result_sent = true;
    lg_write_msg(p->to_driver, LG_MSG_RESULT, &p->r, sizeof p->r);
}

/* Returns false when the driver closed the pipe. */
static bool driver_input(struct sub_proc *p)
{
    struct lg_expect expect;
    uint32_t len;
    int type = lg_read_msg(p->from_driver, &expect, sizeof expect, &len);
    if (type <= 0)
        return false;
    if (type == LG_MSG_EXPECT && len == sizeof expect) {
        p->expecting = true;
        p->expected = expect.events;
        p->deadline_ns = expect.deadline_ns;
        p->live_complete = 0;
        for (int i = 0; i < p->count; i++) {
            struct sub *s = &p->subs[i];
            s->complete = s->state == SUB_READY && s->received >= p->expected;
            p->live_complete += s->complete;
        }
    }
    return true;
}

int lg_sub_run(const struct lg_config *cfg, int first, int count, int to_driver, int from_driver)
{
    static struct sub_proc proc;
    struct sub_proc *p = &proc;
    struct epoll_event events[256], ev = {EPOLLIN, {.ptr = NULL}};
    char init_text[700];
    int64_t next_tick = 0;
    int init_len;

    p->cfg = cfg;
    p->first = first;
    p->count = count;
    p->to_driver = to_driver;
    p->from_driver = from_driver;
    p->progress_sent = UINT64_MAX - 1;
    p->subs = calloc((size_t)count, sizeof *p->subs);
    p->n_pubs = cfg->pub_base + cfg->pubs;
    p->start_ns = lg_now_ns();
    p->last_seq = malloc((size_t)count * (size_t)p->n_pubs * sizeof *p->last_seq);
    p->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (!p->subs || !p->last_seq || p->epfd < 0) {
        fprintf(stderr, "loadgen: subscriber process: out of memory\n");
        return 1;
    }
    memset(p->last_seq, 0xff, (size_t)count * (size_t)p->n_pubs * sizeof *p->last_seq);
    for (int i = 0; i < count; i++)
        p->subs[i].fd = -1;
    {
        uint32_t m = (uint32_t)lg_now_ns() ^ (uint32_t)getpid() * 2654435761u;
        memcpy(p->mask, &m, 4);
    }
    p->request_len = (size_t)snprintf(p->request, sizeof p->request,
                                      "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n"
                                      "Connection: Upgrade\r\n"
                                      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                                      "Sec-WebSocket-Version: 13\r\n\r\n",
                                      cfg->sub_path, cfg->host, cfg->sub_port);
    if (cfg->since[0])
        init_len =
            snprintf(init_text, sizeof init_text,
                     "{\"authentication\":\"Basic %s\",\"events\":[\"%s\"],\"since\":\"%s\"}",
                     cfg->token, cfg->event, cfg->since);
    else
        init_len = snprintf(init_text, sizeof init_text,
                            "{\"authentication\":\"Basic %s\",\"events\":[\"%s\"]}", cfg->token,
                            cfg->event);
    if (init_len < 0 || (size_t)init_len >= sizeof init_text) {
        fprintf(stderr, "loadgen: the init message is too long\n");
        return 1;
    }
    p->init_frame_len =
        frame_encode(p->mask, 0x1, (const uint8_t *)init_text, (size_t)init_len, p->init_frame);
    if (cfg->tls && lg_tls_global_init() < 0) {
        fprintf(stderr, "loadgen: TLS set-up failed\n");
        return 1;
    }
    epoll_ctl(p->epfd, EPOLL_CTL_ADD, from_driver, &ev);
    p->connect_deadline_mono = lg_mono_ns() + (int64_t)(cfg->connect_timeout_s * 1e9);
    start_more(p);
    maybe_ready(p);

    for (;;) {
        int timeout_ms = 10, n;
        if (p->expecting && !p->result_sent) {
            if (p->live_complete >= p->live || lg_now_ns() >= p->deadline_ns)
                send_result(p);
        }
        if (!p->ready_sent && lg_mono_ns() > p->connect_deadline_mono) {
            for (int i = 0; i < p->count; i++)
                if (p->subs[i].state != SUB_READY && p->subs[i].state != SUB_GONE)
                    sub_end(p, &p->subs[i], "no OK within the connect timeout");
            p->failed += (uint64_t)(p->count - p->next_start);
            note_error(p, "connect timeout");
            p->next_start = p->count;
            maybe_ready(p);
        }
        progress_send(p);
        if (cfg->slow_bps > 0) {
            int64_t now = lg_mono_ns();
            if (now >= next_tick) {
                slow_tick(p);
                next_tick = now + (int64_t)SLOW_TICK_MS * 1000000;
            }
        }
        n = epoll_wait(p->epfd, events, 256, timeout_ms);
        if (n < 0 && errno != EINTR)
            break;
        for (int i = 0; i < n; i++) {
            struct sub *s = events[i].data.ptr;
            if (!s) {
                if (!driver_input(p))
                    return 0;
                continue;
            }
            if (s->state == SUB_GONE)
                continue;
            sub_io(p, s, events[i].events);
        }
        if (!p->ready_sent) {
            start_more(p);
            maybe_ready(p);
        }
    }
    return 1;
}
