#include "net/net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

static int set_common_options(int fd, bool reuse_port)
{
    int one = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0)
        return -1;
    if (reuse_port && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0)
        return -1;
    return 0;
}

int net_listen_tcp(const char *address, uint16_t port, bool reuse_port, int backlog, char *err,
                   size_t err_len)
{
    struct addrinfo hints, *res = NULL, *ai;
    char port_text[8];
    int fd = -1, rc, saved = 0;
    const char *host = (address && *address) ? address : NULL;

    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    snprintf(port_text, sizeof port_text, "%u", (unsigned)port);
    rc = getaddrinfo(host, port_text, &hints, &res);
    if (rc != 0) {
        snprintf(err, err_len, "cannot resolve bind address '%s': %s", host ? host : "*",
                 gai_strerror(rc));
        return -1;
    }
    /* Without an address, prefer the IPv6 wildcard: it is dual-stack. */
    for (int pass = 0; pass < 2 && fd < 0; pass++) {
        for (ai = res; ai; ai = ai->ai_next) {
            if (!host && pass == 0 && ai->ai_family != AF_INET6)
                continue;
            fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                        ai->ai_protocol);
            if (fd < 0) {
                saved = errno;
                continue;
            }
            if (ai->ai_family == AF_INET6 && !host) {
                int zero = 0;
                setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
            }
            if (set_common_options(fd, reuse_port) == 0 &&
                bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, backlog) == 0)
                break;
            saved = errno;
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(res);
    if (fd < 0)
        snprintf(err, err_len, "cannot listen on %s port %u: %s", host ? host : "*", (unsigned)port,
                 strerror(saved));
    return fd;
}

static int fill_unix_address(const char *path, struct sockaddr_un *sun)
{
    memset(sun, 0, sizeof *sun);
    sun->sun_family = AF_UNIX;
    if (strlen(path) >= sizeof sun->sun_path) {
        errno = ENAMETOOLONG;
        return -1;
    }
    strcpy(sun->sun_path, path);
    return 0;
}

/* true when something accepts connections at path right now. */
static bool unix_socket_is_live(const struct sockaddr_un *sun)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    bool live;
    if (fd < 0)
        return true; /* cannot tell: do not steal */
    live = connect(fd, (const struct sockaddr *)sun, sizeof *sun) == 0 || errno == EAGAIN;
    close(fd);
    return live;
}

int net_listen_unix(const char *path, int backlog, char *err, size_t err_len)
{
    struct sockaddr_un sun;
    struct stat st;
    int fd;

    if (fill_unix_address(path, &sun) < 0) {
        snprintf(err, err_len, "bus socket path too long (max %zu bytes): %s",
                 sizeof sun.sun_path - 1, path);
        return -1;
    }
    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            snprintf(err, err_len, "%s exists and is not a socket", path);
            return -1;
        }
        if (unix_socket_is_live(&sun)) {
            snprintf(err, err_len, "%s is in use by another process", path);
            return -1;
        }
        unlink(path); /* stale: left by a process that died */
    }
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, err_len, "socket: %s", strerror(errno));
        return -1;
    }
    if (bind(fd, (struct sockaddr *)&sun, sizeof sun) < 0 || chmod(path, 0660) < 0 ||
        listen(fd, backlog) < 0) {
        snprintf(err, err_len, "cannot listen on %s: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

int net_connect_unix(const char *path)
{
    struct sockaddr_un sun;
    int fd;
    if (fill_unix_address(path, &sun) < 0)
        return -1;
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (connect(fd, (struct sockaddr *)&sun, sizeof sun) < 0 && errno != EINPROGRESS &&
        errno != EAGAIN) {
        int saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    return fd;
}

void net_format_address(const struct sockaddr *sa, socklen_t len, char *out, size_t out_len)
{
    char host[INET6_ADDRSTRLEN];
    if (sa->sa_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in)) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
        snprintf(out, out_len, "%s:%u", host, (unsigned)ntohs(in->sin_port));
    } else if (sa->sa_family == AF_INET6 && len >= (socklen_t)sizeof(struct sockaddr_in6)) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) {
            inet_ntop(AF_INET, &in6->sin6_addr.s6_addr[12], host, sizeof host);
            snprintf(out, out_len, "%s:%u", host, (unsigned)ntohs(in6->sin6_port));
        } else {
            inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
            snprintf(out, out_len, "[%s]:%u", host, (unsigned)ntohs(in6->sin6_port));
        }
    } else {
        snprintf(out, out_len, "unix");
    }
}

/* Tags keep the three kinds of key apart (an IPv6 prefix may take any
 * value, but global unicast ones start with 2000::/3, never with 0). */
#define NET_SOURCE_IPV4 (UINT64_C(1) << 32)
#define NET_SOURCE_OTHER UINT64_C(1)

uint64_t net_source_key(const struct sockaddr *sa, socklen_t len)
{
    uint64_t key = 0;
    if (sa->sa_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in)) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        return NET_SOURCE_IPV4 | ntohl(in->sin_addr.s_addr);
    }
    if (sa->sa_family == AF_INET6 && len >= (socklen_t)sizeof(struct sockaddr_in6)) {
        const uint8_t *bytes = ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;
        if (IN6_IS_ADDR_V4MAPPED(&((const struct sockaddr_in6 *)sa)->sin6_addr))
            return NET_SOURCE_IPV4 | (uint64_t)bytes[12] << 24 | (uint64_t)bytes[13] << 16 |
                   (uint64_t)bytes[14] << 8 | bytes[15];
        for (int i = 0; i < 8; i++)
            key = key << 8 | bytes[i];
        return key ? key : NET_SOURCE_OTHER;
    }
    return NET_SOURCE_OTHER;
}

uint16_t net_local_port(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
        return 0;
    if (ss.ss_family == AF_INET)
        return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    if (ss.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return 0;
}

void net_tune_accepted(int fd, const struct sockaddr *sa)
{
    int one = 1, unsent = NET_TCP_UNSENT_MAX;
    if (sa->sa_family != AF_INET && sa->sa_family != AF_INET6)
        return;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt(fd, IPPROTO_TCP, TCP_NOTSENT_LOWAT, &unsent, sizeof unsent);
}
