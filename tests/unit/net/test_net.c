/* Unit tests for common/net/net.c: TCP and UNIX listeners on real sockets
 * (loopback and a temporary folder), their options, and the addresses
 * written in log lines. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#include <arpa/inet.h>

#include "net/net.h"

static void assert_nonblocking_cloexec(int fd)
{
    assert_true(fcntl(fd, F_GETFL) & O_NONBLOCK);
    assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
}

static int connect_tcp(const char *ip, uint16_t port)
{
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, ip, &sin.sin_addr);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    if (connect(fd, (struct sockaddr *)&sin, sizeof sin) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static void test_tcp_listener_on_port_zero_gets_a_port_and_accepts(void **state)
{
    char err[256] = "";
    int fd = net_listen_tcp("127.0.0.1", 0, false, 16, err, sizeof err);
    assert_true(fd >= 0);
    assert_nonblocking_cloexec(fd);
    uint16_t port = net_local_port(fd);
    assert_true(port != 0);

    int client = connect_tcp("127.0.0.1", port);
    assert_true(client >= 0);
    int accepted = accept(fd, NULL, NULL);
    assert_true(accepted >= 0);
    close(accepted);
    close(client);
    close(fd);
}

static void test_tcp_listener_on_all_addresses_takes_ipv4_too(void **state)
{
    char err[256] = "";
    int fd = net_listen_tcp(NULL, 0, false, 16, err, sizeof err);
    assert_true(fd >= 0);
    int client = connect_tcp("127.0.0.1", net_local_port(fd));
    assert_true(client >= 0);
    close(client);
    close(fd);
}

static void test_tcp_port_in_use_is_refused_with_a_reason(void **state)
{
    char err[256] = "";
    int first = net_listen_tcp("127.0.0.1", 0, false, 16, err, sizeof err);
    assert_true(first >= 0);
    uint16_t port = net_local_port(first);
    int second = net_listen_tcp("127.0.0.1", port, false, 16, err, sizeof err);
    assert_int_equal(second, -1);
    char expected[64];
    snprintf(expected, sizeof expected, "cannot listen on 127.0.0.1 port %u", (unsigned)port);
    assert_non_null(strstr(err, expected));
    assert_non_null(strstr(err, strerror(EADDRINUSE)));
    close(first);
}

static void test_tcp_port_is_shared_with_reuse_port(void **state)
{
    char err[256] = "";
    int first = net_listen_tcp("127.0.0.1", 0, true, 16, err, sizeof err);
    assert_true(first >= 0);
    int second = net_listen_tcp("127.0.0.1", net_local_port(first), true, 16, err, sizeof err);
    assert_true(second >= 0);
    assert_int_equal(net_local_port(second), net_local_port(first));
    close(second);
    close(first);
}

static void test_tcp_bad_bind_address_is_refused_with_a_reason(void **state)
{
    char err[256] = "";
    assert_int_equal(net_listen_tcp("not an address", 0, false, 16, err, sizeof err), -1);
    assert_non_null(strstr(err, "cannot resolve bind address 'not an address'"));
}

struct folder {
    char dir[64];
    char path[128];
};

static int folder_setup(void **state)
{
    struct folder *f = calloc(1, sizeof *f);
    strcpy(f->dir, "/tmp/test_net.XXXXXX");
    if (mkdtemp(f->dir) == NULL)
        return -1;
    snprintf(f->path, sizeof f->path, "%s/bus.sock", f->dir);
    *state = f;
    return 0;
}

static int folder_teardown(void **state)
{
    struct folder *f = *state;
    unlink(f->path);
    rmdir(f->dir);
    free(f);
    return 0;
}

static void test_unix_listener_has_mode_0660_and_accepts(void **state)
{
    struct folder *f = *state;
    char err[256] = "";
    int fd = net_listen_unix(f->path, 16, err, sizeof err);
    assert_true(fd >= 0);
    assert_nonblocking_cloexec(fd);
    struct stat st;
    assert_int_equal(lstat(f->path, &st), 0);
    assert_true(S_ISSOCK(st.st_mode));
    assert_int_equal(st.st_mode & 0777, 0660);

    int client = net_connect_unix(f->path);
    assert_true(client >= 0);
    assert_nonblocking_cloexec(client);
    int accepted = accept(fd, NULL, NULL);
    assert_true(accepted >= 0);
    close(accepted);
    close(client);
    close(fd);
}

static void test_unix_stale_socket_is_replaced_a_live_one_is_not(void **state)
{
    struct folder *f = *state;
    char err[256] = "";
    int live = net_listen_unix(f->path, 16, err, sizeof err);
    assert_true(live >= 0);
    assert_int_equal(net_listen_unix(f->path, 16, err, sizeof err), -1);
    assert_non_null(strstr(err, "is in use by another process"));

    close(live); /* the socket file stays, as after a crash */
    struct stat st;
    assert_int_equal(lstat(f->path, &st), 0);
    int again = net_listen_unix(f->path, 16, err, sizeof err);
    assert_true(again >= 0);
    int client = net_connect_unix(f->path);
    assert_true(client >= 0);
    close(client);
    close(again);
}

static void test_unix_path_that_is_no_socket_is_left_alone(void **state)
{
    struct folder *f = *state;
    char err[256] = "";
    FILE *file = fopen(f->path, "w");
    assert_non_null(file);
    fputs("keep me", file);
    fclose(file);
    assert_int_equal(net_listen_unix(f->path, 16, err, sizeof err), -1);
    assert_non_null(strstr(err, "exists and is not a socket"));
    struct stat st;
    assert_int_equal(lstat(f->path, &st), 0);
    assert_true(S_ISREG(st.st_mode));
}

static void test_unix_path_too_long_is_refused(void **state)
{
    char path[200];
    memset(path, 'a', sizeof path - 1);
    path[0] = '/';
    path[sizeof path - 1] = '\0';
    char err[256] = "";
    assert_int_equal(net_listen_unix(path, 16, err, sizeof err), -1);
    assert_non_null(strstr(err, "bus socket path too long"));
    errno = 0;
    assert_int_equal(net_connect_unix(path), -1);
    assert_int_equal(errno, ENAMETOOLONG);
}

static void test_unix_connect_to_nothing_fails_with_errno(void **state)
{
    struct folder *f = *state;
    errno = 0;
    assert_int_equal(net_connect_unix(f->path), -1);
    assert_int_equal(errno, ENOENT);
}

static void test_format_address(void **state)
{
    char out[64];
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(5678)};
    inet_pton(AF_INET, "127.0.0.1", &sin.sin_addr);
    net_format_address((struct sockaddr *)&sin, sizeof sin, out, sizeof out);
    assert_string_equal(out, "127.0.0.1:5678");

    struct sockaddr_in6 sin6 = {.sin6_family = AF_INET6, .sin6_port = htons(8081)};
    inet_pton(AF_INET6, "::1", &sin6.sin6_addr);
    net_format_address((struct sockaddr *)&sin6, sizeof sin6, out, sizeof out);
    assert_string_equal(out, "[::1]:8081");

    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    net_format_address((struct sockaddr *)&sun, sizeof sun, out, sizeof out);
    assert_string_equal(out, "unix");

    /* A length too short for the family is not read past. */
    net_format_address((struct sockaddr *)&sin, 4, out, sizeof out);
    assert_string_equal(out, "unix");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tcp_listener_on_port_zero_gets_a_port_and_accepts),
        cmocka_unit_test(test_tcp_listener_on_all_addresses_takes_ipv4_too),
        cmocka_unit_test(test_tcp_port_in_use_is_refused_with_a_reason),
        cmocka_unit_test(test_tcp_port_is_shared_with_reuse_port),
        cmocka_unit_test(test_tcp_bad_bind_address_is_refused_with_a_reason),
        cmocka_unit_test_setup_teardown(test_unix_listener_has_mode_0660_and_accepts, folder_setup,
                                        folder_teardown),
        cmocka_unit_test_setup_teardown(test_unix_stale_socket_is_replaced_a_live_one_is_not,
                                        folder_setup, folder_teardown),
        cmocka_unit_test_setup_teardown(test_unix_path_that_is_no_socket_is_left_alone,
                                        folder_setup, folder_teardown),
        cmocka_unit_test(test_unix_path_too_long_is_refused),
        cmocka_unit_test_setup_teardown(test_unix_connect_to_nothing_fails_with_errno, folder_setup,
                                        folder_teardown),
        cmocka_unit_test(test_format_address),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
