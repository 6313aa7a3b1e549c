/* A real redis-server for the unit tests (Debian's), started in a
 * temporary folder with requirepass on a UNIX socket and a loopback port,
 * and stopped by PID. Include after <cmocka.h>. */
#ifndef EVS_REDIS_TEST_SERVER_H
#define EVS_REDIS_TEST_SERVER_H

#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define REDIS_TEST_PASSWORD "test-password-of-a-decent-length"
#define REDIS_TEST_START_S 10

struct redis_test_server {
    pid_t pid;
    char dir[64];
    char sock[108];
    int port;
    int master_port; /* set before redis_test_server_start: a replica of that port's */
};

static inline int redis_test_free_port(void)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    int fd = socket(AF_INET, SOCK_STREAM, 0), port;
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    port = ntohs(a.sin_port);
    close(fd);
    return port;
}

/* redis-server on s->sock and 127.0.0.1:s->port, with requirepass, no
 * persistence; returns once its log says it accepts connections (read from
 * its stdout; the pipe is closed then, and Redis ignores SIGPIPE). */
static inline void redis_test_server_start(struct redis_test_server *s)
{
    char port[16], master[16], log[8192];
    size_t have = 0;
    int out[2];
    time_t deadline = time(NULL) + REDIS_TEST_START_S;
    snprintf(port, sizeof port, "%d", s->port);
    snprintf(master, sizeof master, "%d", s->master_port);
    assert_int_equal(pipe(out), 0);
    s->pid = fork();
    assert_true(s->pid >= 0);
    if (s->pid == 0) {
        /* It goes with the test, even one that crashed before its teardown. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        dup2(out[1], 1);
        dup2(out[1], 2);
        close(out[0]);
        close(out[1]);
        if (s->master_port)
            execlp("redis-server", "redis-server", "--port", port, "--bind", "127.0.0.1",
                   "--unixsocket", s->sock, "--unixsocketperm", "700", "--requirepass",
                   REDIS_TEST_PASSWORD, "--save", "", "--appendonly", "no", "--dir", s->dir,
                   "--replicaof", "127.0.0.1", master, "--masterauth", REDIS_TEST_PASSWORD,
                   (char *)NULL);
        else
            execlp("redis-server", "redis-server", "--port", port, "--bind", "127.0.0.1",
                   "--unixsocket", s->sock, "--unixsocketperm", "700", "--requirepass",
                   REDIS_TEST_PASSWORD, "--save", "", "--appendonly", "no", "--dir", s->dir,
                   (char *)NULL);
        _exit(127);
    }
    close(out[1]);
    for (;;) {
        struct pollfd pfd = {out[0], POLLIN, 0};
        ssize_t n;
        log[have] = '\0';
        if (strstr(log, "Ready to accept connections"))
            break;
        if (time(NULL) > deadline || have == sizeof log - 1)
            fail_msg("redis-server did not start within %d s:\n%s", REDIS_TEST_START_S, log);
        if (poll(&pfd, 1, 1000) <= 0)
            continue;
        n = read(out[0], log + have, sizeof log - 1 - have);
        if (n <= 0)
            fail_msg("redis-server exited (is it installed?):\n%s", log);
        have += (size_t)n;
    }
    close(out[0]);
}

static inline void redis_test_server_stop(struct redis_test_server *s, int sig)
{
    if (s->pid > 0) {
        kill(s->pid, sig);
        waitpid(s->pid, NULL, 0);
        s->pid = 0;
    }
}

/* A new server in a new temporary folder named after prefix. */
static inline void redis_test_server_open(struct redis_test_server *s, const char *prefix)
{
    memset(s, 0, sizeof *s);
    snprintf(s->dir, sizeof s->dir, "/tmp/%s-XXXXXX", prefix);
    assert_non_null(mkdtemp(s->dir));
    snprintf(s->sock, sizeof s->sock, "%s/redis.sock", s->dir);
    s->port = redis_test_free_port();
    redis_test_server_start(s);
}

/* Stops it (SIGKILL) and removes its folder. */
static inline void redis_test_server_close(struct redis_test_server *s)
{
    char path[160];
    redis_test_server_stop(s, SIGKILL);
    unlink(s->sock);
    snprintf(path, sizeof path, "%s/dump.rdb", s->dir);
    unlink(path);
    rmdir(s->dir);
}

#endif
