/* The load tool's helpers: clocks, the latency histogram, /proc readings of
 * the measured servers, the driver's pipe messages and the TLS client. */
#include "loadgen.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/net_sockets.h>
#include <mbedtls/ssl.h>

int64_t lg_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t lg_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int lg_set_nonblock(int fd)
{
    int flags = fcntl(fd, F_GETFL);
    return flags < 0 ? -1 : fcntl(fd, F_SETFL, flags | O_NONBLOCK);
}

/* --- histogram ------------------------------------------------------------ */

static int hist_index(uint64_t v)
{
    int msb, shift;
    if (v < 64)
        return (int)v;
    msb = 63 - __builtin_clzll(v);
    shift = msb - 5;
    return 64 + (shift - 1) * 32 + (int)((v >> shift) - 32);
}

static uint64_t hist_middle(int index)
{
    int k, shift;
    if (index < 64)
        return (uint64_t)index;
    k = index - 64;
    shift = k / 32 + 1;
    return ((uint64_t)(k % 32 + 32) << shift) + ((uint64_t)1 << shift) / 2;
}

void lg_hist_add(struct lg_hist *h, uint64_t value_us)
{
    h->bucket[hist_index(value_us)]++;
    h->count++;
    h->sum += value_us;
    if (value_us > h->max)
        h->max = value_us;
}

void lg_hist_merge(struct lg_hist *into, const struct lg_hist *from)
{
    for (int i = 0; i < LG_HIST_BUCKETS; i++)
        into->bucket[i] += from->bucket[i];
    into->count += from->count;
    into->sum += from->sum;
    if (from->max > into->max)
        into->max = from->max;
}

uint64_t lg_hist_quantile(const struct lg_hist *h, double q)
{
    uint64_t target, seen = 0;
    if (h->count == 0)
        return 0;
    target = (uint64_t)(q * (double)h->count + 0.999999);
    if (target < 1)
        target = 1;
    for (int i = 0; i < LG_HIST_BUCKETS; i++) {
        seen += h->bucket[i];
        if (seen >= target) {
            uint64_t v = hist_middle(i);
            return v > h->max ? h->max : v;
        }
    }
    return h->max;
}

/* --- /proc ---------------------------------------------------------------- */

double lg_proc_cpu_s(pid_t pid)
{
    char path[64], buf[1024], *p;
    unsigned long utime = 0, stime = 0;
    ssize_t n;
    int fd;
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return -1;
    buf[n] = '\0';
    /* The command name may hold spaces and parentheses: fields count from
     * the last ')'. utime and stime are fields 14 and 15 (proc(5)). */
    p = strrchr(buf, ')');
    if (!p ||
        sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &utime, &stime) != 2)
        return -1;
    return (double)(utime + stime) / (double)sysconf(_SC_CLK_TCK);
}

int lg_proc_reset_hwm(pid_t pid)
{
    char path[64];
    int fd, rc;
    snprintf(path, sizeof path, "/proc/%d/clear_refs", (int)pid);
    fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    /* "5" resets the peak RSS to the current RSS (proc(5), Linux 4.0). */
    rc = write(fd, "5", 1) == 1 ? 0 : -1;
    close(fd);
    return rc;
}

long lg_proc_status_kb(pid_t pid, const char *field)
{
    char path[64], line[256];
    size_t field_len = strlen(field);
    long kb = -1;
    FILE *f;
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    f = fopen(path, "re");
    if (!f)
        return -1;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, field, field_len) == 0 && line[field_len] == ':') {
            kb = strtol(line + field_len + 1, NULL, 10);
            break;
        }
    }
    fclose(f);
    return kb;
}

/* --- driver pipes --------------------------------------------------------- */

static int write_all(int fd, const void *data, size_t len)
{
    const char *p = data;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static int read_all(int fd, void *data, size_t len)
{
    char *p = data;
    while (len > 0) {
        ssize_t n = read(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return n == 0 && p == (char *)data ? 0 : -1;
        p += n;
        len -= (size_t)n;
    }
    return 1;
}

int lg_write_msg(int fd, uint32_t type, const void *payload, uint32_t len)
{
    struct lg_msg_head head = {type, len};
    if (write_all(fd, &head, sizeof head) < 0)
        return -1;
    return len ? write_all(fd, payload, len) : 0;
}

int lg_read_msg(int fd, void *payload, uint32_t cap, uint32_t *len)
{
    struct lg_msg_head head;
    int rc = read_all(fd, &head, sizeof head);
    if (rc <= 0)
        return rc;
    if (head.len > cap)
        return -1;
    if (head.len && read_all(fd, payload, head.len) != 1)
        return -1;
    *len = head.len;
    return (int)head.type;
}

void lg_json_escape(char *out, size_t cap, const char *in)
{
    size_t o = 0;
    for (; *in && o + 7 < cap; in++) {
        unsigned char c = (unsigned char)*in;
        if (c == '"' || c == '\\') {
            out[o++] = '\\';
            out[o++] = (char)c;
        } else if (c < 0x20) {
            o += (size_t)snprintf(out + o, cap - o, "\\u%04x", c);
        } else {
            out[o++] = (char)c;
        }
    }
    out[o] = '\0';
}

/* --- TLS client ----------------------------------------------------------- */

/* The benchmark measures the server's cost of WSS, so the client checks no
 * certificate: the servers under test run on loopback with a throwaway one. */
static mbedtls_entropy_context tls_entropy;
static mbedtls_ctr_drbg_context tls_drbg;
static mbedtls_ssl_config tls_conf;

struct lg_tls {
    mbedtls_ssl_context ssl;
    int fd;
    bool want_write;
};

int lg_tls_global_init(void)
{
    static const char pers[] = "event-server loadgen";
    mbedtls_entropy_init(&tls_entropy);
    mbedtls_ctr_drbg_init(&tls_drbg);
    mbedtls_ssl_config_init(&tls_conf);
    if (mbedtls_ctr_drbg_seed(&tls_drbg, mbedtls_entropy_func, &tls_entropy,
                              (const unsigned char *)pers, sizeof pers - 1) != 0 ||
        mbedtls_ssl_config_defaults(&tls_conf, MBEDTLS_SSL_IS_CLIENT, MBEDTLS_SSL_TRANSPORT_STREAM,
                                    MBEDTLS_SSL_PRESET_DEFAULT) != 0)
        return -1;
    /* One suite for every server, so that WSS figures compare like with like:
     * ECDHE-ECDSA with AES-128-GCM, which event-server's own order picks. */
    static const int suites[] = {MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, 0};
    mbedtls_ssl_conf_ciphersuites(&tls_conf, suites);
    mbedtls_ssl_conf_authmode(&tls_conf, MBEDTLS_SSL_VERIFY_NONE);
    mbedtls_ssl_conf_rng(&tls_conf, mbedtls_ctr_drbg_random, &tls_drbg);
    return 0;
}

static int tls_send(void *ctx, const unsigned char *buf, size_t len)
{
    struct lg_tls *t = ctx;
    ssize_t n = send(t->fd, buf, len, MSG_NOSIGNAL);
    if (n < 0)
        return errno == EAGAIN || errno == EINTR ? MBEDTLS_ERR_SSL_WANT_WRITE
                                                 : MBEDTLS_ERR_NET_SEND_FAILED;
    return (int)n;
}

static int tls_recv(void *ctx, unsigned char *buf, size_t len)
{
    struct lg_tls *t = ctx;
    ssize_t n = recv(t->fd, buf, len, 0);
    if (n < 0)
        return errno == EAGAIN || errno == EINTR ? MBEDTLS_ERR_SSL_WANT_READ
                                                 : MBEDTLS_ERR_NET_RECV_FAILED;
    return (int)n;
}

struct lg_tls *lg_tls_new(int fd)
{
    struct lg_tls *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->fd = fd;
    mbedtls_ssl_init(&t->ssl);
    if (mbedtls_ssl_setup(&t->ssl, &tls_conf) != 0) {
        mbedtls_ssl_free(&t->ssl);
        free(t);
        return NULL;
    }
    mbedtls_ssl_set_bio(&t->ssl, t, tls_send, tls_recv, NULL);
    return t;
}

void lg_tls_free(struct lg_tls *t)
{
    if (!t)
        return;
    mbedtls_ssl_free(&t->ssl);
    free(t);
}

static long tls_result(struct lg_tls *t, int rc)
{
    t->want_write = rc == MBEDTLS_ERR_SSL_WANT_WRITE;
    if (rc >= 0)
        return rc;
    if (rc == MBEDTLS_ERR_SSL_WANT_READ || rc == MBEDTLS_ERR_SSL_WANT_WRITE)
        return LG_TLS_AGAIN;
    if (rc == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY)
        return 0;
    return LG_TLS_ERROR;
}

int lg_tls_handshake(struct lg_tls *t)
{
    long rc = tls_result(t, mbedtls_ssl_handshake(&t->ssl));
    return rc == 0 ? 1 : (int)rc;
}

long lg_tls_read(struct lg_tls *t, uint8_t *buf, size_t len)
{
    return tls_result(t, mbedtls_ssl_read(&t->ssl, buf, len));
}

long lg_tls_write(struct lg_tls *t, const uint8_t *buf, size_t len)
{
    return tls_result(t, mbedtls_ssl_write(&t->ssl, buf, len));
}

const char *lg_tls_suite(struct lg_tls *t)
{
    return mbedtls_ssl_get_ciphersuite(&t->ssl);
}

bool lg_tls_wants_write(struct lg_tls *t)
{
    return t->want_write;
}
