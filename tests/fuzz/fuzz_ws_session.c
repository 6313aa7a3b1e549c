/* Fuzz target for a whole WebSocket session: raw client bytes -> the real
 * WebSocket transport (broadcast/ws_transport.c over wslay, a libevent socket
 * bufferevent and a hub), as the daemon runs it after a good handshake.
 *
 * Per input: a fresh event base, hub and UNIX socketpair. The server end is
 * a socket bufferevent handed to ws_transport_start (which writes the 101
 * answer); the client end is a plain non-blocking socket. The input is
 * written to the client end in a few chunks, with the event loop run a
 * bounded number of times (EVLOOP_NONBLOCK) after each, and events fanned
 * out to the types the seeds subscribe to in between. The hub's timers are
 * far in the future, so nothing depends on the clock.
 *
 * The last bytes of the input pick the chunking, whether the client reads
 * what the server sends (a client that never reads meets the backlog
 * limit), how many events are fanned out and how large they are, and
 * whether the client half-closes at the end. The seeds begin with valid
 * masked frames, so those bytes still make sense as frames.
 *
 * Checked: ASan/UBSan/LSan (no leak after teardown); every session,
 * connection and shared frame released; and what the server sent is a 101
 * answer followed by well-formed server frames (unmasked, no RSV bits,
 * known opcodes, short unfragmented control frames), with no frame after
 * a close frame and no event before the first successful init reply.
 */
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "auth/auth_store.h"
#include "net/conn_flush.h"
#include "bus/event_id.h"
#include "hub.h"
#include "core/log.h"
#include "ws_transport.h"
#include "shared_frame.h"

/* The token the seeds authenticate with (tests/fuzz/make_ws_corpus.py). */
#define FUZZ_TOKEN "fuzz-token-0123456789abcdef"
#define MAX_CHUNKS 6
#define LOOPS_PER_STEP 4
#define OUTPUT_CAP (1024 * 1024)

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct event_base *auth_base; /* never dispatched: the tokens file is never polled */
static struct auth_store *auth;
static uint8_t output[OUTPUT_CAP]; /* what the server sent, per input */

static const struct hub_limits fuzz_limits = {
    .max_message = 4096,
    .max_backlog = 8192,
    .init_timeout_ms = 3600 * 1000,
    .ping_interval_ms = 3600 * 1000,
    .close_timeout_ms = 3600 * 1000,
    .max_subscriptions = 16,
    .history = {.max_events = 8, .max_bytes = 16384, .ttl_ms = 3600 * 1000},
};

/* One event from the bus, numbered in order, so that inits with "since"
 * find ids in the history, miss them and replay them. */
static void fuzz_fanout(struct hub *hub, const char *type, const char *message, size_t len)
{
    static uint64_t number;
    struct hub_event ev = {
        .type = (const uint8_t *)type,
        .type_len = strlen(type),
        .message = (const uint8_t *)message,
        .message_len = len,
        .id_offset = event_message_id_offset((const uint8_t *)message, len),
        .run = 1,
        .number = ++number,
    };
    if (ev.id_offset == 0)
        abort(); /* the bus side refuses such a message; the fuzzer never builds one */
    hub_fanout(hub, &ev);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    const char *tmp = getenv("TMPDIR");
    char path[4096], err[512];
    static const char tokens[] = "# fuzz tokens\n" FUZZ_TOKEN "\nshort\n";
    struct auth_store_config config;
    int fd;

    signal(SIGPIPE, SIG_IGN);
    log_set_level(getenv("EVS_FUZZ_LOG") ? LOG_LEVEL_DEBUG : LOG_LEVEL_ERROR);
    snprintf(path, sizeof path, "%s/evs-fuzz-tokens-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    fd = mkstemp(path);
    if (fd < 0 || write(fd, tokens, sizeof tokens - 1) != (ssize_t)(sizeof tokens - 1)) {
        perror("fuzz_ws_session: tokens file");
        abort();
    }
    close(fd);
    memset(&config, 0, sizeof config);
    config.tokens_file = path;
    auth_base = event_base_new();
    if (!auth_base || !(auth = auth_store_new(auth_base, &config, err, sizeof err))) {
        fprintf(stderr, "fuzz_ws_session: auth store: %s\n", err);
        abort();
    }
    /* Read once; the watcher never runs, so the file is not needed any more. */
    unlink(path);
    return 0;
}

/* --- the knobs, from the input's tail ------------------------------------ */

static uint64_t rng_next(uint64_t *state)
{
    /* splitmix64 */
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* --- the client end ------------------------------------------------------ */

struct client {
    int fd;
    bool reads;
    uint8_t *out; /* what the server sent, up to OUTPUT_CAP */
    size_t out_len;
};

static void client_read(struct client *c)
{
    uint8_t buf[16384];
    for (;;) {
        ssize_t n = recv(c->fd, buf, sizeof buf, 0);
        if (n <= 0)
            return;
        size_t keep = (size_t)n;
        if (keep > OUTPUT_CAP - c->out_len)
            keep = OUTPUT_CAP - c->out_len;
        memcpy(c->out + c->out_len, buf, keep);
        c->out_len += keep;
    }
}

static void run_loop(struct event_base *base, struct client *c)
{
    for (int i = 0; i < LOOPS_PER_STEP; i++) {
        event_base_loop(base, EVLOOP_NONBLOCK);
        if (c->reads)
            client_read(c);
    }
}

/* Writes all of data, running the loop while the socket is full (bounded:
 * a server that stopped reading makes the rest of the chunk moot). */
static void client_write(struct event_base *base, struct client *c, const uint8_t *data, size_t len)
{
    int stalls = 0;
    while (len > 0 && stalls < 8) {
        ssize_t n = send(c->fd, data, len, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                return; /* the server closed: nothing more to say */
            stalls++;
            run_loop(base, c);
            continue;
        }
        data += n;
        len -= (size_t)n;
    }
}

/* --- what the server sent ------------------------------------------------ */

static void check_server_output(const uint8_t *p, size_t len)
{
    static const char status_line[] = "HTTP/1.1 101 ";
    const uint8_t *end = p + len, *head_end;
    bool close_seen = false, init_ok_seen = false;

    if (len == 0)
        return; /* never got to write anything before teardown */
    if (len < sizeof status_line - 1)
        return; /* a prefix of the answer; checked for what it is below */
    if (memcmp(p, status_line, sizeof status_line - 1) != 0)
        abort();
    head_end = memmem(p, len, "\r\n\r\n", 4);
    if (!head_end)
        return;
    p = head_end + 4;
    while (p < end) {
        size_t avail = (size_t)(end - p), pos = 2;
        uint64_t n;
        if (avail < 2)
            return;
        uint8_t b0 = p[0], b1 = p[1], opcode = b0 & 0x0f;
        bool fin = b0 & 0x80;
        if (b0 & 0x70)
            abort(); /* RSV bits: no extension was negotiated */
        if (b1 & 0x80)
            abort(); /* a server never masks */
        n = b1 & 0x7f;
        if (n == 126) {
            if (avail < 4)
                return;
            n = (uint64_t)p[2] << 8 | p[3];
            pos = 4;
        } else if (n == 127) {
            if (avail < 10)
                return;
            n = 0;
            for (int i = 0; i < 8; i++)
                n = n << 8 | p[2 + i];
            pos = 10;
        }
        if (opcode >= 8 && (n > 125 || !fin))
            abort(); /* control frames are short and never fragmented */
        if (opcode != 0x0 && opcode != 0x1 && opcode != 0x2 && opcode != 0x8 && opcode != 0x9 &&
            opcode != 0xa)
            abort();
        if (avail - pos < n)
            return; /* the connection ended mid-frame */
        if (close_seen)
            abort(); /* nothing may follow a close frame */
        if (opcode == 0x8) {
            close_seen = true;
            if (n == 1)
                abort();
        }
        if (opcode == 0x1) {
            /* {"type":"init","code":"OK"}, or with "resumed" after it. */
            static const char init_ok[] = "{\"type\":\"init\",\"code\":\"OK\"";
            static const char event[] = "{\"type\":\"event\"";
            if (n > sizeof init_ok - 1 && memcmp(p + pos, init_ok, sizeof init_ok - 1) == 0 &&
                (p[pos + sizeof init_ok - 1] == '}' || p[pos + sizeof init_ok - 1] == ','))
                init_ok_seen = true;
            if (n >= sizeof event - 1 && memcmp(p + pos, event, sizeof event - 1) == 0 &&
                !init_ok_seen)
                abort(); /* an event before any successful init */
        }
        p += pos + n;
    }
}

/* --- one input ----------------------------------------------------------- */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct event_base *base;
    struct bufferevent *bev;
    struct hub hub;
    struct client client = {.fd = -1};
    size_t cuts[MAX_CHUNKS + 1];
    uint64_t state = 0x5eed;
    int sv[2], nchunks, fanouts, event_size;
    bool half_close;
    char message[2048];

    /* The knobs: the last 8 bytes (all of the input is still sent). */
    for (size_t i = size > 8 ? size - 8 : 0; i < size; i++)
        state = state << 8 | data[i];
    state ^= size;
    uint64_t knobs = rng_next(&state);
    nchunks = 1 + (int)(knobs % MAX_CHUNKS);
    client.reads = ((knobs >> 8) & 7) != 0; /* one input in eight never reads */
    fanouts = (int)((knobs >> 12) & 3);
    event_size = ((knobs >> 16) & 3) == 0 ? 1500 : 40;
    half_close = (knobs >> 20) & 1;

    cuts[0] = 0;
    cuts[nchunks] = size;
    for (int i = 1; i < nchunks; i++)
        cuts[i] = size ? (size_t)(rng_next(&state) % (size + 1)) : 0;
    for (int i = 1; i < nchunks; i++) /* insertion sort of the inner cuts */
        for (int j = i; j > 1 && cuts[j - 1] > cuts[j]; j--) {
            size_t t = cuts[j];
            cuts[j] = cuts[j - 1];
            cuts[j - 1] = t;
        }

    /* An event message as the bus would carry it, padded to event_size. */
    {
        int n =
            snprintf(message, sizeof message, "{\"type\":\"event\",\"event\":\"a\",\"data\":\"");
        memset(message + n, 'x', (size_t)event_size);
        memcpy(message + n + event_size, "\"}", 3);
    }
    size_t message_len = strlen(message);

    base = event_base_new();
    if (!base)
        abort();
    if (hub_init(&hub, base, &fuzz_limits, auth) < 0)
        abort();
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0)
        abort();
    /* Small kernel buffers, so that a client that does not read soon leaves
     * bytes in the session's own output, where the backlog limit applies. */
    {
        int small = 4096;
        setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
        setsockopt(sv[1], SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    }
    client.fd = sv[1];
    client.out = output;
    bev = bufferevent_socket_new(base, sv[0], BEV_OPT_CLOSE_ON_FREE);
    if (!bev)
        abort();
    conn_track_open(); /* as the HTTP server counts an accepted connection */
    ws_transport_start(&hub, bev, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", "fuzz", 1);
    run_loop(base, &client);

    for (int i = 0; i < nchunks; i++) {
        client_write(base, &client, data + cuts[i], cuts[i + 1] - cuts[i]);
        run_loop(base, &client);
        for (int f = 0; f < fanouts; f++) {
            fuzz_fanout(&hub, "a", message, message_len);
            fuzz_fanout(&hub, "news", message, message_len);
            fuzz_fanout(&hub, "unrouted", message, message_len);
        }
        run_loop(base, &client);
    }
    if (half_close) {
        shutdown(client.fd, SHUT_WR);
        run_loop(base, &client);
    }
    fuzz_fanout(&hub, "a", message, message_len);
    run_loop(base, &client);

    /* Teardown, as the daemon does at exit. */
    hub_free(&hub);
    conn_flush_abort_all();
    if (hub.counters.sessions_open != 0 || conn_open_count() != 0 || conn_flush_count() != 0)
        abort();
    /* libevent frees a bufferevent's buffers in a finalizer, which runs in
     * the loop or at event_base_free: only then are the frames released. */
    event_base_free(base);
    if (shared_frame_live_count() != 0 || shared_frame_live_bytes() != 0)
        abort();          /* a queued event frame was never released */
    client_read(&client); /* whatever was still in the socket */
    close(client.fd);
    check_server_output(client.out, client.out_len);
    return 0;
}
