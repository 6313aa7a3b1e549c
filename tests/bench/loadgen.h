/* The benchmark's load tool: shared types of the driver (loadgen.c), the
 * subscriber processes (lg_sub.c), the publishers (lg_pub.c) and the helpers
 * (lg_util.c). It is a client of the public protocols only: HTTP/1.1 POST to
 * publish and RFC 6455 WebSocket to subscribe, either event-server's (an init
 * message, then {"type":"event",...,"data":...} envelopes) or nchan's (a
 * channel URL, then the raw published bodies).
 *
 * Every event's data carries {"p":<publisher connection>,"seq":<number on
 * that connection>,"t":<CLOCK_REALTIME ns when sent>}, so a subscriber can
 * tell loss, reordering and end-to-end latency without any other channel. */
#ifndef LOADGEN_H
#define LOADGEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

enum lg_proto { LG_PROTO_EVS, LG_PROTO_NCHAN };

#define LG_MAX_SERVER_PIDS 64
#define LG_MAX_PUBS 256
#define LG_MAX_PROCS 64

struct lg_config {
    enum lg_proto proto;
    char host[64];     /* the subscribers' destination address (IPv4) */
    char pub_host[64]; /* the publishers' (another "machine"); host unless given */
    int sub_port, pub_port;
    char sub_path[256]; /* WebSocket request target */
    char pub_path[256]; /* POST target */
    char token[256];    /* event-server token */
    char event[256];    /* event type (event-server) */
    bool tls;           /* subscribers speak WSS */
    char since[80];     /* event-server: the init's "since" (an id: its answer must be resumed) */
    /* subscribers */
    int subs;           /* total, over all subscriber processes */
    int procs;          /* subscriber processes */
    int src_addrs;      /* source addresses 127.0.0.1 .. 127.0.0.<src_addrs> */
    int connect_window; /* handshakes in progress at once, per process */
    int slow_bps;       /* > 0: each subscriber reads at most this many bytes/s */
    int rcvbuf;         /* > 0: SO_RCVBUF of each subscriber socket */
    double connect_timeout_s;
    /* publishers */
    int pubs;       /* keep-alive connections */
    int pub_base;   /* the first publisher number in the events' "p" (below it: preloaded ones) */
    long preloaded; /* events published before this run, with "p" under pub_base, that each
                     * subscriber is replayed first (a resume) */
    double rate;    /* events/s over all connections; 0 = flat out */
    long count;     /* events to publish; 0 = until duration */
    double duration_s;
    int window;          /* > 0: at most this many events ahead of the slowest subscriber */
    int payload;         /* bytes of padding in data */
    double drain_s;      /* time subscribers get to receive everything */
    double nchan_wait_s; /* nchan: wait for its channel to count every subscriber */
    /* measured servers */
    pid_t server_pids[LG_MAX_SERVER_PIDS];
    int n_server_pids;
    char label[128];
};

/* Latency histogram, in microseconds: exact below 64, then 32 buckets per
 * power of two (about 3% resolution), up to 2^63. Mergeable by addition. */
#define LG_HIST_BUCKETS (64 + 58 * 32)
struct lg_hist {
    uint64_t count, sum, max;
    uint64_t bucket[LG_HIST_BUCKETS];
};
void lg_hist_add(struct lg_hist *h, uint64_t value_us);
void lg_hist_merge(struct lg_hist *into, const struct lg_hist *from);
/* The value at quantile q (0..1), as the middle of its bucket; 0 when empty. */
uint64_t lg_hist_quantile(const struct lg_hist *h, double q);

/* Messages between the driver and its subscriber processes, over pipes:
 * a struct lg_msg_head, then len bytes of payload. */
enum lg_msg_type {
    LG_MSG_READY = 1, /* child -> driver: struct lg_ready */
    LG_MSG_PROGRESS,  /* child -> driver: uint64_t fewest events any live subscriber has */
    LG_MSG_RESULT,    /* child -> driver: struct lg_sub_result */
    LG_MSG_EXPECT,    /* driver -> child: struct lg_expect */
};
struct lg_msg_head {
    uint32_t type, len;
};
struct lg_ready {
    uint64_t ok, failed;
    char first_error[160];
};
struct lg_expect {
    uint64_t events;     /* events each subscriber should get */
    int64_t deadline_ns; /* CLOCK_REALTIME: stop waiting then */
};
#define LG_CLOSE_CODES 8
struct lg_sub_result {
    uint64_t ready, failed;
    uint64_t received, bytes, lost, reordered, duplicates, unparsed;
    uint64_t complete;                  /* subscribers that got every expected event */
    uint64_t closed_by_server, dropped; /* close frames received; connections lost without one */
    uint16_t close_code[LG_CLOSE_CODES];
    uint64_t close_count[LG_CLOSE_CODES];
    uint64_t pings;
    int64_t first_recv_ns, last_recv_ns;
    /* With preloaded events: subscribers that got them all, and when (from the process's
     * start; the preloaded events' latency is not in latency) */
    uint64_t caught_up;
    struct lg_hist caught_up_after;
    char tls_suite[64];
    struct lg_hist latency;
};

/* lg_util.c */
int64_t lg_now_ns(void);  /* CLOCK_REALTIME */
int64_t lg_mono_ns(void); /* CLOCK_MONOTONIC */
int lg_set_nonblock(int fd);
/* Reads utime+stime of pid in seconds; -1 when the process is gone. */
double lg_proc_cpu_s(pid_t pid);
/* Resets VmHWM to the current VmRSS; -1 when not allowed. */
int lg_proc_reset_hwm(pid_t pid);
/* Reads a "Vm...:" field of /proc/pid/status in KiB; -1 when unreadable. */
long lg_proc_status_kb(pid_t pid, const char *field);
int lg_write_msg(int fd, uint32_t type, const void *payload, uint32_t len);
/* Reads one whole message (blocking); returns its type, 0 on EOF, -1 on error. */
int lg_read_msg(int fd, void *payload, uint32_t cap, uint32_t *len);
void lg_json_escape(char *out, size_t cap, const char *in);

/* TLS client (mbedTLS), one configuration per process. */
struct lg_tls;
int lg_tls_global_init(void);
struct lg_tls *lg_tls_new(int fd);
void lg_tls_free(struct lg_tls *t);
/* Each returns bytes, 0 on a clean close, LG_TLS_AGAIN or LG_TLS_ERROR. */
#define LG_TLS_AGAIN (-2)
#define LG_TLS_ERROR (-1)
int lg_tls_handshake(struct lg_tls *t); /* 1 when done, LG_TLS_AGAIN, LG_TLS_ERROR */
long lg_tls_read(struct lg_tls *t, uint8_t *buf, size_t len);
long lg_tls_write(struct lg_tls *t, const uint8_t *buf, size_t len);
const char *lg_tls_suite(struct lg_tls *t);
bool lg_tls_wants_write(struct lg_tls *t);

/* lg_sub.c: runs one subscriber process of `count` subscribers whose global
 * indexes start at `first`; talks to the driver over to_driver/from_driver.
 * Returns the exit code. */
int lg_sub_run(const struct lg_config *cfg, int first, int count, int to_driver, int from_driver);

/* lg_pub.c: the publishers, driven from the driver's event loop. */
struct lg_pub;
struct lg_pub_stats {
    uint64_t sent, answered, ok, errors, reconnects;
    uint64_t status[6]; /* by class: [2] = 2xx, ... [0] = no answer (connection lost) */
    uint32_t first_bad_status;
    char first_error[160];
    int64_t start_ns, end_ns; /* CLOCK_REALTIME: first send, last answer */
    struct lg_hist latency;
};
struct lg_pub *lg_pub_new(const struct lg_config *cfg, int epfd, char *err, size_t err_len);
void lg_pub_free(struct lg_pub *p);
/* True when fd belongs to the publishers; then handles events on it. */
bool lg_pub_owns(struct lg_pub *p, void *tag);
void lg_pub_handle(struct lg_pub *p, void *tag, uint32_t events);
/* Sends what may be sent now. allowed = events that may have been sent in
 * total (by rate, count and window). */
void lg_pub_kick(struct lg_pub *p, uint64_t allowed);
bool lg_pub_all_connected(const struct lg_pub *p);
bool lg_pub_idle(const struct lg_pub *p); /* no request in flight */
const struct lg_pub_stats *lg_pub_stats(const struct lg_pub *p);
/* nchan: the number of subscribers its channel info reports (blocking), or -1; asked of
 * the publishers' address, which with a shared store (Redis) counts every server's. */
long lg_nchan_subscribers(const struct lg_config *cfg);

#endif
