/* The load tool's publishers: keep-alive HTTP/1.1 connections, one request
 * in flight on each, so that the events of one connection are accepted in
 * the order of their "seq". Each body carries {"p","seq","t"} first in its
 * data and then "pad" bytes up to the configured payload size.
 *
 * event-server: POST /event {"event":..., "data":{...}} with the token;
 * nchan: POST <publisher location> with the data itself as the raw body. */
#include "loadgen.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define RESPONSE_CAP 16384

enum pub_state { PUB_CONNECTING, PUB_IDLE, PUB_SENDING, PUB_WAITING };

struct pub_conn {
    struct lg_pub *owner;
    int fd, index, state;
    uint32_t seq;
    int64_t retry_mono; /* a failed connect is retried from then on */
    char *req;
    size_t req_len, req_off;
    char resp[RESPONSE_CAP + 1];
    size_t resp_len;
    int64_t sent_mono;
};

struct lg_pub {
    const struct lg_config *cfg;
    int epfd, n, rotor;
    struct pub_conn *conns;
    char *pad;
    size_t req_cap;
    struct lg_pub_stats st;
};

static void pub_error(struct lg_pub *p, const char *what)
{
    if (!p->st.first_error[0])
        snprintf(p->st.first_error, sizeof p->st.first_error, "%s", what);
}

static int conn_open(struct pub_conn *c)
{
    struct lg_pub *p = c->owner;
    struct sockaddr_in dst = {.sin_family = AF_INET};
    struct epoll_event ev = {EPOLLIN | EPOLLOUT, {.ptr = c}};
    int one = 1;
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0)
        return -1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    inet_pton(AF_INET, p->cfg->pub_host, &dst.sin_addr);
    dst.sin_port = htons((uint16_t)p->cfg->pub_port);
    if (connect(c->fd, (struct sockaddr *)&dst, sizeof dst) < 0 && errno != EINPROGRESS) {
        close(c->fd);
        c->fd = -1;
        return -1;
    }
    c->state = PUB_CONNECTING;
    c->resp_len = 0;
    epoll_ctl(p->epfd, EPOLL_CTL_ADD, c->fd, &ev);
    return 0;
}

/* The connection broke: a request in flight counts as unanswered; a new
 * connection takes its place. */
static void conn_lost(struct pub_conn *c, const char *why)
{
    struct lg_pub *p = c->owner;
    bool was_connecting = c->state == PUB_CONNECTING;
    if (c->state == PUB_SENDING || c->state == PUB_WAITING) {
        p->st.status[0]++;
        p->st.errors++;
        p->st.answered++;
    }
    pub_error(p, why);
    close(c->fd);
    c->fd = -1;
    c->state = PUB_CONNECTING;
    p->st.reconnects++;
    /* A refused connect is retried after a pause, not in a busy loop. */
    if (was_connecting)
        c->retry_mono = lg_mono_ns() + 100000000;
    else
        conn_open(c);
}

static void set_out(struct pub_conn *c, bool on)
{
    struct epoll_event ev = {EPOLLIN | (on ? EPOLLOUT : 0), {.ptr = c}};
    epoll_ctl(c->owner->epfd, EPOLL_CTL_MOD, c->fd, &ev);
}

static void conn_write(struct pub_conn *c)
{
    while (c->req_off < c->req_len) {
        ssize_t n = send(c->fd, c->req + c->req_off, c->req_len - c->req_off, MSG_NOSIGNAL);
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
            set_out(c, true);
            return;
        }
        if (n <= 0) {
            conn_lost(c, "publisher write failed");
            return;
        }
        c->req_off += (size_t)n;
    }
    if (c->state == PUB_SENDING) {
        c->state = PUB_WAITING;
        set_out(c, false);
    }
}

static void conn_send_next(struct pub_conn *c)
{
    struct lg_pub *p = c->owner;
    const struct lg_config *cfg = p->cfg;
    char data[160];
    int data_len, head_len;
    size_t body_len;
    char *body;

    data_len = snprintf(data, sizeof data, "{\"p\":%d,\"seq\":%u,\"t\":%lld",
                        cfg->pub_base + c->index, c->seq, (long long)lg_now_ns());
    /* The body goes after a header block of at most 1 KiB. */
    body = c->req + 1024;
    body_len = 0;
    if (cfg->proto == LG_PROTO_EVS)
        body_len += (size_t)sprintf(body, "{\"event\":\"%s\",\"data\":", cfg->event);
    memcpy(body + body_len, data, (size_t)data_len);
    body_len += (size_t)data_len;
    if (cfg->payload > 0) {
        memcpy(body + body_len, ",\"pad\":\"", 8);
        body_len += 8;
        memcpy(body + body_len, p->pad, (size_t)cfg->payload);
        body_len += (size_t)cfg->payload;
        body[body_len++] = '"';
    }
    body[body_len++] = '}';
    if (cfg->proto == LG_PROTO_EVS)
        body[body_len++] = '}';
    {
        char head[1024];
        if (cfg->proto == LG_PROTO_EVS)
            head_len = snprintf(head, sizeof head,
                                "POST %s HTTP/1.1\r\nHost: %s:%d\r\nAuthorization: Basic %s\r\n"
                                "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
                                cfg->pub_path, cfg->pub_host, cfg->pub_port, cfg->token, body_len);
        else
            head_len = snprintf(head, sizeof head,
                                "POST %s HTTP/1.1\r\nHost: %s:%d\r\n"
                                "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
                                cfg->pub_path, cfg->pub_host, cfg->pub_port, body_len);
        /* Headers sit right before the body: one contiguous request. */
        memcpy(body - head_len, head, (size_t)head_len);
        c->req_off = (size_t)(1024 - head_len);
        c->req_len = 1024 + body_len;
    }
    c->seq++;
    c->state = PUB_SENDING;
    c->sent_mono = lg_mono_ns();
    if (!p->st.start_ns)
        p->st.start_ns = lg_now_ns();
    p->st.sent++;
    conn_write(c);
}

/* Parses one whole response off the front of c->resp; returns its status,
 * 0 when incomplete, -1 when malformed. */
static int response_take(struct pub_conn *c, bool *close_after)
{
    char *end, *cl, *te;
    size_t head_len, total;
    int status;
    c->resp[c->resp_len] = '\0';
    end = strstr(c->resp, "\r\n\r\n");
    if (!end)
        return c->resp_len >= RESPONSE_CAP ? -1 : 0;
    head_len = (size_t)(end + 4 - c->resp);
    if (strncmp(c->resp, "HTTP/1.", 7) != 0 || sscanf(c->resp + 9, "%3d", &status) != 1)
        return -1;
    *end = '\0'; /* header searches stay in the head */
    cl = strcasestr(c->resp, "\r\ncontent-length:");
    te = strcasestr(c->resp, "\r\ntransfer-encoding: chunked");
    *close_after = strcasestr(c->resp, "\r\nconnection: close") != NULL;
    *end = '\r';
    if (cl) {
        total = head_len + (size_t)strtoul(cl + 17, NULL, 10);
    } else if (te) {
        char *last = strstr(c->resp + head_len, "0\r\n\r\n");
        if (!last)
            return c->resp_len >= RESPONSE_CAP ? -1 : 0;
        total = (size_t)(last + 5 - c->resp);
    } else {
        total = head_len;
    }
    if (total > RESPONSE_CAP)
        return -1;
    if (c->resp_len < total)
        return 0;
    memmove(c->resp, c->resp + total, c->resp_len - total);
    c->resp_len -= total;
    return status;
}

static void conn_read(struct pub_conn *c)
{
    struct lg_pub *p = c->owner;
    ssize_t n = recv(c->fd, c->resp + c->resp_len, RESPONSE_CAP - c->resp_len, 0);
    bool close_after = false;
    int status;
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0) {
        conn_lost(c, n == 0 ? "publisher connection closed by the server"
                            : "publisher connection error");
        return;
    }
    c->resp_len += (size_t)n;
    while ((status = response_take(c, &close_after)) != 0) {
        if (status < 0 || c->state != PUB_WAITING) {
            conn_lost(c, status < 0 ? "malformed response" : "response to no request");
            return;
        }
        p->st.answered++;
        p->st.end_ns = lg_now_ns();
        lg_hist_add(&p->st.latency, (uint64_t)(lg_mono_ns() - c->sent_mono) / 1000);
        if (status / 100 >= 1 && status / 100 <= 5)
            p->st.status[status / 100]++;
        if (status / 100 == 2) {
            p->st.ok++;
        } else {
            p->st.errors++;
            if (!p->st.first_bad_status)
                p->st.first_bad_status = (uint32_t)status;
        }
        c->state = PUB_IDLE;
        if (close_after) {
            close(c->fd);
            p->st.reconnects++;
            conn_open(c);
            return;
        }
    }
}

struct lg_pub *lg_pub_new(const struct lg_config *cfg, int epfd, char *err, size_t err_len)
{
    struct lg_pub *p = calloc(1, sizeof *p);
    if (!p)
        goto fail;
    p->cfg = cfg;
    p->epfd = epfd;
    p->n = cfg->pubs;
    p->req_cap = 1024 + 1024 + (size_t)cfg->payload;
    p->conns = calloc((size_t)p->n, sizeof *p->conns);
    p->pad = malloc((size_t)cfg->payload + 1);
    if (!p->conns || !p->pad)
        goto fail;
    memset(p->pad, 'x', (size_t)cfg->payload);
    for (int i = 0; i < p->n; i++) {
        struct pub_conn *c = &p->conns[i];
        c->owner = p;
        c->index = i;
        c->req = malloc(p->req_cap);
        if (!c->req || conn_open(c) < 0) {
            snprintf(err, err_len, "publisher connection %d: %s", i, strerror(errno));
            goto fail;
        }
    }
    return p;
fail:
    if (!err[0])
        snprintf(err, err_len, "out of memory");
    lg_pub_free(p);
    return NULL;
}

void lg_pub_free(struct lg_pub *p)
{
    if (!p)
        return;
    for (int i = 0; p->conns && i < p->n; i++) {
        if (p->conns[i].fd >= 0)
            close(p->conns[i].fd);
        free(p->conns[i].req);
    }
    free(p->conns);
    free(p->pad);
    free(p);
}

bool lg_pub_owns(struct lg_pub *p, void *tag)
{
    return p && tag >= (void *)p->conns && tag < (void *)(p->conns + p->n);
}

void lg_pub_handle(struct lg_pub *p, void *tag, uint32_t events)
{
    struct pub_conn *c = tag;
    (void)p;
    if (c->fd < 0)
        return;
    if (c->state == PUB_CONNECTING) {
        int e = 0;
        socklen_t e_len = sizeof e;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &e, &e_len);
        if (e) {
            char why[96];
            snprintf(why, sizeof why, "publisher connect: %s", strerror(e));
            conn_lost(c, why);
            return;
        }
        if (events & EPOLLOUT) {
            c->state = PUB_IDLE;
            set_out(c, false);
        }
        if (!(events & EPOLLIN))
            return;
    }
    if ((events & EPOLLOUT) && c->state == PUB_SENDING)
        conn_write(c);
    if (c->fd >= 0 && (events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
        conn_read(c);
}

void lg_pub_kick(struct lg_pub *p, uint64_t allowed)
{
    for (int k = 0; k < p->n && p->st.sent < allowed; k++) {
        struct pub_conn *c = &p->conns[(p->rotor + k) % p->n];
        if (c->fd < 0 && lg_mono_ns() >= c->retry_mono)
            conn_open(c);
        else if (c->state == PUB_IDLE)
            conn_send_next(c);
    }
    p->rotor = (p->rotor + 1) % p->n;
}

bool lg_pub_all_connected(const struct lg_pub *p)
{
    for (int i = 0; i < p->n; i++)
        if (p->conns[i].state == PUB_CONNECTING)
            return false;
    return true;
}

bool lg_pub_idle(const struct lg_pub *p)
{
    for (int i = 0; i < p->n; i++)
        if (p->conns[i].state == PUB_SENDING || p->conns[i].state == PUB_WAITING)
            return false;
    return true;
}

const struct lg_pub_stats *lg_pub_stats(const struct lg_pub *p)
{
    return &p->st;
}

long lg_nchan_subscribers(const struct lg_config *cfg)
{
    struct sockaddr_in dst = {.sin_family = AF_INET};
    struct timeval tv = {2, 0};
    char req[512], resp[4096], *at;
    size_t got = 0;
    long subscribers = -1;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), len;
    if (fd < 0)
        return -1;
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    inet_pton(AF_INET, cfg->pub_host, &dst.sin_addr);
    dst.sin_port = htons((uint16_t)cfg->pub_port);
    len =
        snprintf(req, sizeof req,
                 "GET %s HTTP/1.1\r\nHost: %s:%d\r\nAccept: text/json\r\nConnection: close\r\n\r\n",
                 cfg->pub_path, cfg->pub_host, cfg->pub_port);
    if (connect(fd, (struct sockaddr *)&dst, sizeof dst) == 0 &&
        send(fd, req, (size_t)len, MSG_NOSIGNAL) == len) {
        ssize_t n;
        while (got < sizeof resp - 1 && (n = recv(fd, resp + got, sizeof resp - 1 - got, 0)) > 0)
            got += (size_t)n;
        resp[got] = '\0';
        if (strncmp(resp, "HTTP/1.1 404", 12) == 0)
            subscribers = 0; /* no channel yet */
        else if ((at = strstr(resp, "\"subscribers\":")))
            subscribers = strtol(at + 14, NULL, 10);
    }
    close(fd);
    return subscribers;
}
