/* loadgen: the load tool of scripts/bench.
 *
 *   loadgen run [OPTION]...   one measured run; prints one JSON line
 *   loadgen port              prints a free TCP port on 127.0.0.1 (20000-32767)
 *
 * A run: fork the subscriber processes (lg_sub.c) and wait until every
 * subscriber has its OK; read the servers' CPU time and RSS from /proc; publish
 * (lg_pub.c) at a rate or flat out, for a count or a duration; tell the
 * subscriber processes how many events each subscriber should have and
 * collect their counts and latency histograms; read /proc again; print the
 * figures. The servers' CPU time is thus taken over publishing and delivery
 * only, not over connecting the subscribers. */
#include "loadgen.h"

#include <errno.h>
#include <getopt.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

struct child {
    pid_t pid;
    int up, down; /* child -> driver, driver -> child */
    struct lg_ready ready;
    uint64_t progress;
    bool have_result;
    struct lg_sub_result result;
};

struct server_sample {
    double cpu[LG_MAX_SERVER_PIDS];
    long rss_kb;
};

static void usage(FILE *out)
{
    fprintf(
        out,
        "usage: loadgen run [OPTION]...   one measured run, printed as one JSON line\n"
        "       loadgen port              print a free TCP port on 127.0.0.1\n"
        "\n"
        "  --proto evs|nchan     event-server (init + envelope) or nchan (raw bodies); evs\n"
        "  --host ADDR           server address (IPv4); 127.0.0.1\n"
        "  --pub-host ADDR       publish to this address instead (another machine's); --host\n"
        "  --sub-port N          WebSocket port\n"
        "  --pub-port N          HTTP port for publishing\n"
        "  --sub-path PATH       WebSocket request target; /\n"
        "  --pub-path PATH       publish target; /event\n"
        "  --token T             event-server token\n"
        "  --event TYPE          event type; bench\n"
        "  --tls                 subscribers use WSS\n"
        "  --since ID            event-server: the init's \"since\"; an id must be resumed\n"
        "  --preloaded N         events published before, which each subscriber is replayed\n"
        "                        first (their \"p\" is below --pub-base); 0\n"
        "  --pub-base P          the publishers' first number in \"p\"; 0\n"
        "  --subs N              subscribers; 0\n"
        "  --procs N             subscriber processes; 0 = one per 15,000 subscribers\n"
        "  --src-addrs K         source addresses 127.0.0.1..127.0.0.K; 0 = one per 2,000\n"
        "  --connect-window N    handshakes in progress per process; 256\n"
        "  --connect-timeout S   time for every subscriber to get its OK; 120\n"
        "  --slow-bps B          subscribers read at most B bytes/s each (after their OK)\n"
        "  --rcvbuf B            SO_RCVBUF of each subscriber socket\n"
        "  --pubs N              publisher connections; 1\n"
        "  --rate R              events/s over all publishers; 0 = flat out\n"
        "  --count N             events to publish; 0 = for --duration\n"
        "  --duration S          publishing time limit; 5\n"
        "  --window N            at most N events ahead of the slowest subscriber; 0 = no limit\n"
        "  --payload B           padding bytes in each event's data; 0\n"
        "  --drain S             time subscribers get to receive everything; 10\n"
        "  --nchan-wait S        nchan: wait until its channel counts every subscriber; 10\n"
        "  --server-pid PID      a server process to measure (repeat)\n"
        "  --label TEXT          copied into the output\n");
}

static int free_port(void)
{
    unsigned seed = (unsigned)lg_now_ns() ^ (unsigned)getpid();
    for (int tries = 0; tries < 2000; tries++) {
        int port = 20000 + (int)(rand_r(&seed) % 12768), one = 1;
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_in a = {.sin_family = AF_INET,
                                .sin_port = htons((uint16_t)port),
                                .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        if (fd < 0)
            return 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, (struct sockaddr *)&a, sizeof a) == 0) {
            close(fd);
            printf("%d\n", port);
            return 0;
        }
        close(fd);
    }
    fprintf(stderr, "loadgen: no free port found\n");
    return 1;
}

static int parse_args(int argc, char **argv, struct lg_config *cfg)
{
    enum {
        O_PROTO = 256,
        O_HOST,
        O_PUB_HOST,
        O_SUB_PORT,
        O_PUB_PORT,
        O_SUB_PATH,
        O_PUB_PATH,
        O_TOKEN,
        O_EVENT,
        O_TLS,
        O_SINCE,
        O_PRELOADED,
        O_PUB_BASE,
        O_SUBS,
        O_PROCS,
        O_SRC,
        O_CWIN,
        O_CTIMEOUT,
        O_SLOW,
        O_RCVBUF,
        O_PUBS,
        O_RATE,
        O_COUNT,
        O_DURATION,
        O_WINDOW,
        O_PAYLOAD,
        O_DRAIN,
        O_NWAIT,
        O_PID,
        O_LABEL,
        O_HELP
    };
    static const struct option opts[] = {
        {"proto", 1, 0, O_PROTO},         {"host", 1, 0, O_HOST},
        {"pub-host", 1, 0, O_PUB_HOST},   {"sub-port", 1, 0, O_SUB_PORT},
        {"pub-port", 1, 0, O_PUB_PORT},   {"sub-path", 1, 0, O_SUB_PATH},
        {"pub-path", 1, 0, O_PUB_PATH},   {"token", 1, 0, O_TOKEN},
        {"event", 1, 0, O_EVENT},         {"tls", 0, 0, O_TLS},
        {"since", 1, 0, O_SINCE},         {"preloaded", 1, 0, O_PRELOADED},
        {"pub-base", 1, 0, O_PUB_BASE},   {"subs", 1, 0, O_SUBS},
        {"procs", 1, 0, O_PROCS},         {"src-addrs", 1, 0, O_SRC},
        {"connect-window", 1, 0, O_CWIN}, {"connect-timeout", 1, 0, O_CTIMEOUT},
        {"slow-bps", 1, 0, O_SLOW},       {"rcvbuf", 1, 0, O_RCVBUF},
        {"pubs", 1, 0, O_PUBS},           {"rate", 1, 0, O_RATE},
        {"count", 1, 0, O_COUNT},         {"duration", 1, 0, O_DURATION},
        {"window", 1, 0, O_WINDOW},       {"payload", 1, 0, O_PAYLOAD},
        {"drain", 1, 0, O_DRAIN},         {"nchan-wait", 1, 0, O_NWAIT},
        {"server-pid", 1, 0, O_PID},      {"label", 1, 0, O_LABEL},
        {"help", 0, 0, O_HELP},           {0, 0, 0, 0},
    };
    int c;
    memset(cfg, 0, sizeof *cfg);
    cfg->proto = LG_PROTO_EVS;
    snprintf(cfg->host, sizeof cfg->host, "127.0.0.1");
    snprintf(cfg->sub_path, sizeof cfg->sub_path, "/");
    snprintf(cfg->pub_path, sizeof cfg->pub_path, "/event");
    snprintf(cfg->event, sizeof cfg->event, "bench");
    cfg->connect_window = 256;
    cfg->connect_timeout_s = 120;
    cfg->pubs = 1;
    cfg->duration_s = 5;
    cfg->drain_s = 10;
    cfg->nchan_wait_s = 10;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case O_PROTO:
            if (strcmp(optarg, "evs") == 0)
                cfg->proto = LG_PROTO_EVS;
            else if (strcmp(optarg, "nchan") == 0)
                cfg->proto = LG_PROTO_NCHAN;
            else
                return -1;
            break;
        case O_HOST:
            snprintf(cfg->host, sizeof cfg->host, "%s", optarg);
            break;
        case O_PUB_HOST:
            snprintf(cfg->pub_host, sizeof cfg->pub_host, "%s", optarg);
            break;
        case O_SUB_PORT:
            cfg->sub_port = atoi(optarg);
            break;
        case O_PUB_PORT:
            cfg->pub_port = atoi(optarg);
            break;
        case O_SUB_PATH:
            snprintf(cfg->sub_path, sizeof cfg->sub_path, "%s", optarg);
            break;
        case O_PUB_PATH:
            snprintf(cfg->pub_path, sizeof cfg->pub_path, "%s", optarg);
            break;
        case O_TOKEN:
            snprintf(cfg->token, sizeof cfg->token, "%s", optarg);
            break;
        case O_EVENT:
            snprintf(cfg->event, sizeof cfg->event, "%s", optarg);
            break;
        case O_TLS:
            cfg->tls = true;
            break;
        case O_SINCE:
            snprintf(cfg->since, sizeof cfg->since, "%s", optarg);
            break;
        case O_PRELOADED:
            cfg->preloaded = atol(optarg);
            break;
        case O_PUB_BASE:
            cfg->pub_base = atoi(optarg);
            break;
        case O_SUBS:
            cfg->subs = atoi(optarg);
            break;
        case O_PROCS:
            cfg->procs = atoi(optarg);
            break;
        case O_SRC:
            cfg->src_addrs = atoi(optarg);
            break;
        case O_CWIN:
            cfg->connect_window = atoi(optarg);
            break;
        case O_CTIMEOUT:
            cfg->connect_timeout_s = atof(optarg);
            break;
        case O_SLOW:
            cfg->slow_bps = atoi(optarg);
            break;
        case O_RCVBUF:
            cfg->rcvbuf = atoi(optarg);
            break;
        case O_PUBS:
            cfg->pubs = atoi(optarg);
            break;
        case O_RATE:
            cfg->rate = atof(optarg);
            break;
        case O_COUNT:
            cfg->count = atol(optarg);
            break;
        case O_DURATION:
            cfg->duration_s = atof(optarg);
            break;
        case O_WINDOW:
            cfg->window = atoi(optarg);
            break;
        case O_PAYLOAD:
            cfg->payload = atoi(optarg);
            break;
        case O_DRAIN:
            cfg->drain_s = atof(optarg);
            break;
        case O_NWAIT:
            cfg->nchan_wait_s = atof(optarg);
            break;
        case O_PID:
            if (cfg->n_server_pids < LG_MAX_SERVER_PIDS)
                cfg->server_pids[cfg->n_server_pids++] = (pid_t)atoi(optarg);
            break;
        case O_LABEL:
            snprintf(cfg->label, sizeof cfg->label, "%s", optarg);
            break;
        case O_HELP:
            usage(stdout);
            exit(0);
        default:
            return -1;
        }
    }
    if (optind != argc || cfg->sub_port <= 0 || cfg->pub_port <= 0 || cfg->subs < 0 ||
        cfg->pubs < 1 || cfg->pubs > LG_MAX_PUBS || cfg->payload < 0 || cfg->duration_s <= 0 ||
        cfg->pub_base < 0 || cfg->pub_base > LG_MAX_PUBS || cfg->preloaded < 0 ||
        (cfg->preloaded > 0 && cfg->pub_base == 0) || cfg->connect_window < 1)
        return -1;
    if (!cfg->pub_host[0])
        snprintf(cfg->pub_host, sizeof cfg->pub_host, "%s", cfg->host);
    if (cfg->procs <= 0)
        cfg->procs = cfg->subs > 0 ? (cfg->subs + 14999) / 15000 : 0;
    if (cfg->procs > LG_MAX_PROCS)
        cfg->procs = LG_MAX_PROCS;
    if (cfg->procs > cfg->subs)
        cfg->procs = cfg->subs;
    if (cfg->src_addrs <= 0)
        cfg->src_addrs = cfg->subs > 2000 ? (cfg->subs + 1999) / 2000 : 1;
    if (cfg->src_addrs > 254)
        return -1;
    return 0;
}

static void sample_servers(const struct lg_config *cfg, struct server_sample *s)
{
    s->rss_kb = 0;
    for (int i = 0; i < cfg->n_server_pids; i++) {
        long kb = lg_proc_status_kb(cfg->server_pids[i], "VmRSS");
        s->cpu[i] = lg_proc_cpu_s(cfg->server_pids[i]);
        s->rss_kb += kb > 0 ? kb : 0;
    }
}

static long servers_field_kb(const struct lg_config *cfg, const char *field)
{
    long sum = 0;
    for (int i = 0; i < cfg->n_server_pids; i++) {
        long kb = lg_proc_status_kb(cfg->server_pids[i], field);
        sum += kb > 0 ? kb : 0;
    }
    return sum;
}

static double ms(uint64_t us)
{
    return (double)us / 1000.0;
}

/* --- the run -------------------------------------------------------------- */

static int run(const struct lg_config *cfg)
{
    static struct child children[LG_MAX_PROCS];
    static struct lg_sub_result total;
    struct server_sample base, before, after;
    struct lg_pub *pub = NULL;
    const struct lg_pub_stats *ps;
    char err[200] = "", first_error[200] = "", label[256];
    int epfd = epoll_create1(EPOLL_CLOEXEC), nprocs = cfg->procs;
    uint64_t subs_ok = 0, subs_failed = 0, sent_allowed, expected;
    long peak_rss = 0, nchan_seen = -1;
    int64_t connect_start = lg_mono_ns(), t0_mono, t0_real, pub_end_real = 0;
    double connect_s, pub_s, deliver_s, cpu_total = 0;
    bool drained = true, results_complete = true, hwm_reset = cfg->n_server_pids > 0;
    struct rusage ru_self, ru_children;

    memset(&total, 0, sizeof total);
    sample_servers(cfg, &base);

    /* Subscriber processes. Each closes every other child's pipes, so that
     * it sees EOF when the driver closes its own. */
    for (int i = 0; i < nprocs; i++) {
        int up[2], down[2], first = (int)((long)cfg->subs * i / nprocs),
                            count = (int)((long)cfg->subs * (i + 1) / nprocs) - first;
        if (pipe2(up, O_CLOEXEC) < 0 || pipe2(down, O_CLOEXEC) < 0) {
            perror("loadgen: pipe");
            return 1;
        }
        children[i].pid = fork();
        if (children[i].pid == 0) {
            close(up[0]);
            close(down[1]);
            for (int j = 0; j < i; j++) {
                close(children[j].up);
                close(children[j].down);
            }
            close(epfd);
            _exit(lg_sub_run(cfg, first, count, up[1], down[0]));
        }
        close(up[1]);
        close(down[0]);
        children[i].up = up[0];
        children[i].down = down[1];
        if (children[i].pid < 0) {
            perror("loadgen: fork");
            return 1;
        }
    }
    for (int i = 0; i < nprocs; i++) {
        uint32_t len;
        int type = lg_read_msg(children[i].up, &children[i].ready, sizeof children[i].ready, &len);
        if (type != LG_MSG_READY) {
            fprintf(stderr, "loadgen: subscriber process %d failed\n", i);
            return 1;
        }
        subs_ok += children[i].ready.ok;
        subs_failed += children[i].ready.failed;
        if (!first_error[0] && children[i].ready.first_error[0])
            snprintf(first_error, sizeof first_error, "%s", children[i].ready.first_error);
    }
    connect_s = (double)(lg_mono_ns() - connect_start) / 1e9;

    /* nchan answers the upgrade before the subscriber is on its channel
     * (with several workers, the channel's owner learns of it over IPC):
     * wait until the channel counts them all. */
    if (cfg->proto == LG_PROTO_NCHAN && subs_ok > 0) {
        int64_t until = lg_mono_ns() + (int64_t)(cfg->nchan_wait_s * 1e9);
        do {
            nchan_seen = lg_nchan_subscribers(cfg);
            if (nchan_seen >= (long)subs_ok)
                break;
            usleep(50000);
        } while (lg_mono_ns() < until);
    }

    pub = lg_pub_new(cfg, epfd, err, sizeof err);
    if (!pub) {
        fprintf(stderr, "loadgen: %s\n", err);
        return 1;
    }
    {
        int64_t until = lg_mono_ns() + 10 * (int64_t)1000000000;
        struct epoll_event evs[64];
        while (!lg_pub_all_connected(pub) && lg_mono_ns() < until) {
            int n = epoll_wait(epfd, evs, 64, 10);
            for (int i = 0; i < n; i++)
                lg_pub_handle(pub, evs[i].data.ptr, evs[i].events);
        }
    }
    for (int i = 0; i < nprocs; i++) {
        struct epoll_event ev = {EPOLLIN, {.ptr = &children[i]}};
        epoll_ctl(epfd, EPOLL_CTL_ADD, children[i].up, &ev);
    }
    usleep(200000); /* let the servers settle before the "ready" reading */
    sample_servers(cfg, &before);
    peak_rss = before.rss_kb;
    /* The peak from here on is the one publishing and delivery caused. */
    for (int i = 0; i < cfg->n_server_pids; i++)
        if (lg_proc_reset_hwm(cfg->server_pids[i]) < 0)
            hwm_reset = false;

    /* Publish. */
    t0_mono = lg_mono_ns();
    t0_real = lg_now_ns();
    {
        int64_t stop_sending = t0_mono + (int64_t)(cfg->duration_s * 1e9);
        int64_t give_up = stop_sending + 30 * (int64_t)1000000000, next_sample = 0;
        uint64_t limit = cfg->count > 0 ? (uint64_t)cfg->count : UINT64_MAX;
        struct epoll_event evs[256];
        for (;;) {
            int64_t now = lg_mono_ns();
            int timeout_ms = 10, n;
            bool sending = now < stop_sending && lg_pub_stats(pub)->sent < limit;
            sent_allowed = sending ? limit : lg_pub_stats(pub)->sent;
            if (sending && cfg->rate > 0) {
                uint64_t by_rate = (uint64_t)((double)(now - t0_mono) / 1e9 * cfg->rate) + 1;
                if (by_rate < sent_allowed)
                    sent_allowed = by_rate;
                timeout_ms = 1;
            }
            if (sending && cfg->window > 0 && nprocs > 0) {
                uint64_t slowest = UINT64_MAX;
                for (int i = 0; i < nprocs; i++)
                    if (children[i].progress < slowest)
                        slowest = children[i].progress;
                if (slowest != UINT64_MAX && slowest + (uint64_t)cfg->window < sent_allowed)
                    sent_allowed = slowest + (uint64_t)cfg->window;
            }
            lg_pub_kick(pub, sent_allowed);
            if (!sending && lg_pub_idle(pub))
                break;
            if (now > give_up) {
                snprintf(err, sizeof err, "publish answers still missing 30 s after the end");
                break;
            }
            if (now >= next_sample) {
                long rss = servers_field_kb(cfg, "VmRSS");
                if (rss > peak_rss)
                    peak_rss = rss;
                next_sample = now + 100000000;
            }
            n = epoll_wait(epfd, evs, 256, timeout_ms);
            for (int i = 0; i < n; i++) {
                void *tag = evs[i].data.ptr;
                if (lg_pub_owns(pub, tag)) {
                    lg_pub_handle(pub, tag, evs[i].events);
                } else {
                    struct child *ch = tag;
                    uint64_t value;
                    uint32_t len;
                    int type = lg_read_msg(ch->up, &value, sizeof value, &len);
                    if (type == LG_MSG_PROGRESS)
                        ch->progress = value;
                    else if (type <= 0)
                        epoll_ctl(epfd, EPOLL_CTL_DEL, ch->up, NULL);
                }
            }
        }
    }
    ps = lg_pub_stats(pub);
    pub_end_real = ps->end_ns ? ps->end_ns : lg_now_ns();
    expected = ps->ok + (uint64_t)cfg->preloaded;

    /* Drain: every subscriber should get every accepted event. */
    {
        struct lg_expect ex = {expected, lg_now_ns() + (int64_t)(cfg->drain_s * 1e9)};
        int64_t give_up = lg_mono_ns() + (int64_t)((cfg->drain_s + 30) * 1e9), next_sample = 0;
        int pending = nprocs;
        for (int i = 0; i < nprocs; i++)
            lg_write_msg(children[i].down, LG_MSG_EXPECT, &ex, sizeof ex);
        while (pending > 0 && lg_mono_ns() < give_up) {
            struct epoll_event evs[64];
            int64_t now = lg_mono_ns();
            int n;
            if (now >= next_sample) {
                long rss = servers_field_kb(cfg, "VmRSS");
                if (rss > peak_rss)
                    peak_rss = rss;
                next_sample = now + 100000000;
            }
            n = epoll_wait(epfd, evs, 64, 50);
            for (int i = 0; i < n; i++) {
                void *tag = evs[i].data.ptr;
                struct child *ch;
                uint32_t len;
                int type;
                if (lg_pub_owns(pub, tag)) {
                    lg_pub_handle(pub, tag, evs[i].events);
                    continue;
                }
                ch = tag;
                type = lg_read_msg(ch->up, &ch->result, sizeof ch->result, &len);
                if (type == LG_MSG_RESULT && len == sizeof ch->result) {
                    ch->have_result = true;
                    pending--;
                } else if (type <= 0) {
                    epoll_ctl(epfd, EPOLL_CTL_DEL, ch->up, NULL);
                    pending--;
                }
            }
        }
        results_complete = pending == 0;
    }
    sample_servers(cfg, &after);
    if (after.rss_kb > peak_rss)
        peak_rss = after.rss_kb;
    for (int i = 0; i < cfg->n_server_pids; i++)
        if (after.cpu[i] >= 0 && before.cpu[i] >= 0)
            cpu_total += after.cpu[i] - before.cpu[i];

    for (int i = 0; i < nprocs; i++) {
        struct lg_sub_result *r = &children[i].result;
        if (!children[i].have_result) {
            results_complete = false;
            continue;
        }
        total.received += r->received;
        total.bytes += r->bytes;
        total.lost += r->lost;
        total.reordered += r->reordered;
        total.duplicates += r->duplicates;
        total.unparsed += r->unparsed;
        total.complete += r->complete;
        total.closed_by_server += r->closed_by_server;
        total.dropped += r->dropped;
        total.pings += r->pings;
        total.caught_up += r->caught_up;
        lg_hist_merge(&total.caught_up_after, &r->caught_up_after);
        for (int k = 0; k < LG_CLOSE_CODES && r->close_code[k]; k++)
            for (int j = 0; j < LG_CLOSE_CODES; j++)
                if (total.close_code[j] == r->close_code[k] || total.close_code[j] == 0) {
                    total.close_code[j] = r->close_code[k];
                    total.close_count[j] += r->close_count[k];
                    break;
                }
        if (r->first_recv_ns && (!total.first_recv_ns || r->first_recv_ns < total.first_recv_ns))
            total.first_recv_ns = r->first_recv_ns;
        if (r->last_recv_ns > total.last_recv_ns)
            total.last_recv_ns = r->last_recv_ns;
        if (!total.tls_suite[0])
            snprintf(total.tls_suite, sizeof total.tls_suite, "%s", r->tls_suite);
        lg_hist_merge(&total.latency, &r->latency);
    }
    drained = results_complete && total.complete == subs_ok;

    /* The subscriber processes end when their pipe closes. */
    for (int i = 0; i < nprocs; i++)
        close(children[i].down);
    for (int i = 0; i < nprocs; i++) {
        waitpid(children[i].pid, NULL, 0);
        close(children[i].up);
    }
    getrusage(RUSAGE_SELF, &ru_self);
    getrusage(RUSAGE_CHILDREN, &ru_children);

    pub_s = (double)(pub_end_real - t0_real) / 1e9;
    deliver_s = total.last_recv_ns > t0_real ? (double)(total.last_recv_ns - t0_real) / 1e9 : 0;
    lg_json_escape(label, sizeof label, cfg->label);

    printf("{\"label\":\"%s\",\"proto\":\"%s\",\"tls\":%s,\"subs\":%d,\"subs_ok\":%llu,"
           "\"subs_failed\":%llu,\"sub_procs\":%d,\"src_addrs\":%d,\"connect_s\":%.3f,",
           label, cfg->proto == LG_PROTO_EVS ? "evs" : "nchan", cfg->tls ? "true" : "false",
           cfg->subs, (unsigned long long)subs_ok, (unsigned long long)subs_failed, nprocs,
           cfg->src_addrs, connect_s);
    if (cfg->proto == LG_PROTO_NCHAN)
        printf("\"nchan_subscribers_seen\":%ld,", nchan_seen);
    printf("\"pubs\":%d,\"rate\":%.1f,\"window\":%d,\"payload\":%d,\"published\":%llu,"
           "\"pub_ok\":%llu,\"pub_errors\":%llu,\"pub_no_answer\":%llu,\"pub_4xx\":%llu,"
           "\"pub_5xx\":%llu,\"pub_first_bad_status\":%u,\"pub_reconnects\":%llu,\"pub_s\":%.3f,"
           "\"pub_rps\":%.1f,\"pub_lat_p50_ms\":%.3f,\"pub_lat_p99_ms\":%.3f,"
           "\"pub_lat_max_ms\":%.3f,",
           cfg->pubs, cfg->rate, cfg->window, cfg->payload, (unsigned long long)ps->sent,
           (unsigned long long)ps->ok, (unsigned long long)ps->errors,
           (unsigned long long)ps->status[0], (unsigned long long)ps->status[4],
           (unsigned long long)ps->status[5], ps->first_bad_status,
           (unsigned long long)ps->reconnects, pub_s, pub_s > 0 ? (double)ps->ok / pub_s : 0.0,
           ms(lg_hist_quantile(&ps->latency, 0.5)), ms(lg_hist_quantile(&ps->latency, 0.99)),
           ms(ps->latency.max));
    printf("\"expected_per_sub\":%llu,\"received\":%llu,\"lost\":%llu,\"reordered\":%llu,"
           "\"duplicates\":%llu,\"unparsed\":%llu,\"complete_subs\":%llu,\"drained\":%s,"
           "\"closed_by_server\":%llu,\"dropped\":%llu,\"close_codes\":{",
           (unsigned long long)expected, (unsigned long long)total.received,
           (unsigned long long)total.lost, (unsigned long long)total.reordered,
           (unsigned long long)total.duplicates, (unsigned long long)total.unparsed,
           (unsigned long long)total.complete, drained ? "true" : "false",
           (unsigned long long)total.closed_by_server, (unsigned long long)total.dropped);
    for (int j = 0; j < LG_CLOSE_CODES && total.close_code[j]; j++)
        printf("%s\"%u\":%llu", j ? "," : "", total.close_code[j],
               (unsigned long long)total.close_count[j]);
    printf("},\"pings\":%llu,\"deliver_s\":%.3f,\"deliveries_per_s\":%.1f,\"e2e_p50_ms\":%.3f,"
           "\"e2e_p99_ms\":%.3f,\"e2e_max_ms\":%.3f,",
           (unsigned long long)total.pings, deliver_s,
           deliver_s > 0 ? (double)total.received / deliver_s : 0.0,
           ms(lg_hist_quantile(&total.latency, 0.5)), ms(lg_hist_quantile(&total.latency, 0.99)),
           ms(total.latency.max));
    printf("\"preloaded\":%ld,\"caught_up_subs\":%llu,\"caught_up_p50_ms\":%.3f,"
           "\"caught_up_max_ms\":%.3f,",
           cfg->preloaded, (unsigned long long)total.caught_up,
           ms(lg_hist_quantile(&total.caught_up_after, 0.5)), ms(total.caught_up_after.max));
    printf("\"srv_cpu_s\":%.3f,\"srv_cpu_us_per_delivery\":%.3f,\"srv_cpu_us_per_publish\":%.3f,"
           "\"srv_cpu_by_pid\":[",
           cpu_total, total.received ? cpu_total * 1e6 / (double)total.received : 0.0,
           ps->ok ? cpu_total * 1e6 / (double)ps->ok : 0.0);
    for (int i = 0; i < cfg->n_server_pids; i++)
        printf("%s[%d,%.3f]", i ? "," : "", (int)cfg->server_pids[i],
               after.cpu[i] >= 0 && before.cpu[i] >= 0 ? after.cpu[i] - before.cpu[i] : -1.0);
    printf("],\"srv_rss_base_kb\":%ld,\"srv_rss_ready_kb\":%ld,\"srv_rss_peak_kb\":%ld,"
           "\"srv_rss_end_kb\":%ld,\"srv_hwm_kb\":%ld,\"srv_hwm_reset\":%s,\"lg_cpu_s\":%.3f,\"tls_"
           "suite\":\"%s\","
           "\"first_error\":",
           base.rss_kb, before.rss_kb, peak_rss, after.rss_kb, servers_field_kb(cfg, "VmHWM"),
           hwm_reset ? "true" : "false",
           (double)(ru_self.ru_utime.tv_sec + ru_self.ru_stime.tv_sec +
                    ru_children.ru_utime.tv_sec + ru_children.ru_stime.tv_sec) +
               (double)(ru_self.ru_utime.tv_usec + ru_self.ru_stime.tv_usec +
                        ru_children.ru_utime.tv_usec + ru_children.ru_stime.tv_usec) /
                   1e6,
           total.tls_suite);
    {
        char escaped[420];
        if (!first_error[0] && ps->first_error[0])
            snprintf(first_error, sizeof first_error, "%s", ps->first_error);
        if (!first_error[0] && err[0])
            snprintf(first_error, sizeof first_error, "%s", err);
        lg_json_escape(escaped, sizeof escaped, first_error);
        printf("\"%s\"}\n", escaped);
    }
    fflush(stdout);
    lg_pub_free(pub);
    close(epfd);
    return 0;
}

int main(int argc, char **argv)
{
    struct lg_config cfg;
    struct rlimit rl;
    signal(SIGPIPE, SIG_IGN);
    if (argc >= 2 && strcmp(argv[1], "port") == 0)
        return free_port();
    if (argc < 2 || strcmp(argv[1], "run") != 0) {
        usage(stderr);
        return 2;
    }
    if (parse_args(argc - 1, argv + 1, &cfg) < 0) {
        usage(stderr);
        return 2;
    }
    /* Each process may hold up to its hard file limit. */
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    return run(&cfg);
}
