/* Unit tests for common/net/tls.c: loading the certificate and key.
 *
 * The certificates are made at test time with the openssl command (installed
 * by scripts/deps) in a temporary folder: EC and RSA self-signed pairs, a CA
 * with a leaf (for chain files), an expired and a not-yet-valid certificate
 * (signed with `openssl ca`, which takes explicit dates), and files that are
 * not certificates at all.
 *
 * Which pair a server uses is observed the way a client sees it: an accepted
 * connection made by tls_server_wrap over a socketpair is driven through a
 * real handshake by an mbedTLS client in this process, and the certificate it
 * receives is compared byte for byte with the file's.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include <event2/bufferevent.h>
#include <event2/event.h>
#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/net_sockets.h>
#include <mbedtls/ssl.h>
#include <mbedtls/x509_crt.h>

#include "core/log.h"
#include "net/tls.h"

#define CAPTURE_MAX 16384

static char dir[] = "/tmp/evs-test-tls-XXXXXX";

/* The script that makes every file the tests use, run in dir. */
static const char make_files[] =
    "set -e\n"
    "exec >gen.log 2>&1\n"
    "ec() { openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
    "-keyout \"$1.key\" -out \"$1.crt\" -days 30 -subj \"/CN=$2\" -set_serial \"$3\"; }\n"
    "ec first first.example 4097\n"
    "ec second second.example 4098\n"
    "openssl req -x509 -newkey rsa:2048 -nodes -keyout rsa.key -out rsa.crt -days 30 "
    "-subj /CN=rsa.example\n"
    /* a CA and a leaf it signs */
    "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key "
    "-out ca.crt -days 30 -subj /CN=test-ca\n"
    "openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout leaf.key "
    "-out leaf.csr -subj /CN=leaf.example\n"
    "openssl x509 -req -in leaf.csr -CA ca.crt -CAkey ca.key -set_serial 4099 -days 30 "
    "-out leaf.crt\n"
    "cat leaf.crt ca.crt >chain.crt\n"
    "cat ca.crt leaf.crt >chain-ca-first.crt\n"
    /* expired and not yet valid: openssl ca takes explicit dates */
    "touch index.txt\n"
    "echo 1000 >serial\n"
    "printf '[ca]\\ndefault_ca=d\\n[d]\\ndatabase=index.txt\\nnew_certs_dir=.\\nserial=serial\\n"
    "default_md=sha256\\npolicy=p\\nunique_subject=no\\n[p]\\ncommonName=supplied\\n' >ca.cnf\n"
    "dated() { openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout \"$1.key\" "
    "-out \"$1.csr\" -subj \"/CN=$1\"; openssl ca -batch -config ca.cnf -selfsign -keyfile "
    "\"$1.key\" -in \"$1.csr\" -out \"$1.crt\" -notext -startdate \"$2\" -enddate \"$3\"; }\n"
    "dated expired 20200101000000Z 20200102030405Z\n"
    "dated future 20990304050607Z 20990405000000Z\n"
    /* files that are not what they claim */
    "printf 'this is not a certificate\\n' >notpem.crt\n"
    "printf 'this is not a key\\n' >notpem.key\n"
    ": >empty.crt\n"
    "head -c 300 first.crt >truncated.crt\n"
    "openssl pkey -in first.key -aes256 -passout pass:secret -out encrypted.key\n"
    "mkdir adir\n";

struct capture {
    FILE *file;
    int saved_stderr;
    char text[CAPTURE_MAX];
};

static void capture_begin(struct capture *c)
{
    c->file = tmpfile();
    assert_non_null(c->file);
    c->saved_stderr = dup(STDERR_FILENO);
    assert_true(c->saved_stderr >= 0);
    assert_true(dup2(fileno(c->file), STDERR_FILENO) >= 0);
}

static void capture_end(struct capture *c)
{
    size_t len;
    assert_true(dup2(c->saved_stderr, STDERR_FILENO) >= 0);
    close(c->saved_stderr);
    assert_int_equal(fseek(c->file, 0, SEEK_SET), 0);
    len = fread(c->text, 1, sizeof(c->text) - 1, c->file);
    c->text[len] = '\0';
    fclose(c->file);
}

/* dir/name, in one of 8 rotating buffers: copy it to keep it longer. */
static const char *path_of(const char *name)
{
    static char paths[8][512];
    static unsigned next;
    char *p = paths[next++ % 8];
    snprintf(p, sizeof paths[0], "%s/%s", dir, name);
    return p;
}

static int make_dir(void **state)
{
    char cmd[sizeof dir + 32];
    FILE *script;
    if (!mkdtemp(dir))
        return -1;
    snprintf(cmd, sizeof cmd, "%s/gen.sh", dir);
    script = fopen(cmd, "w");
    if (!script)
        return -1;
    fputs(make_files, script);
    fclose(script);
    snprintf(cmd, sizeof cmd, "cd %s && sh gen.sh", dir);
    if (system(cmd) != 0) {
        fprintf(stderr, "making the test certificates failed; see %s/gen.log\n", dir);
        return -1;
    }
    log_set_level(LOG_LEVEL_INFO);
    return 0;
}

static int remove_dir(void **state)
{
    char cmd[sizeof dir + 16];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* tls_server_new that must fail: returns its reason, checked to be one
 * line that names the file at fault. It runs in a child process, so that a
 * crash (or a sanitizer report) fails this test alone, not the program. */
static const char *expect_failure_as(const char *cert, const char *key, const char *blamed,
                                     bool as_nobody)
{
    static char err[512];
    int fds[2], status;
    ssize_t n;
    pid_t pid;

    memset(err, 0, sizeof err);
    assert_int_equal(pipe(fds), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        char child_err[512] = "";
        struct tls_server *server;
        close(fds[0]);
        /* root reads any file: permissions are tested as nobody */
        if (as_nobody && geteuid() == 0 && (setgid(65534) != 0 || setuid(65534) != 0))
            _exit(4);
        server = tls_server_new(cert, key, child_err, sizeof child_err);
        if (server) {
            tls_server_free(server);
            snprintf(child_err, sizeof child_err, "<succeeded>");
        }
        n = write(fds[1], child_err, strlen(child_err));
        _exit(n < 0 ? 3 : 0);
    }
    close(fds[1]);
    n = read(fds[0], err, sizeof err - 1);
    close(fds[0]);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fail_msg("tls_server_new(%s, %s) crashed (wait status 0x%x)", cert, key, (unsigned)status);
    assert_true(n > 0);
    if (strcmp(err, "<succeeded>") == 0)
        fail_msg("tls_server_new(%s, %s) succeeded", cert, key);
    assert_null(strchr(err, '\n'));
    if (!strstr(err, blamed))
        fail_msg("reason \"%s\" does not name %s", err, blamed);
    return err;
}

static const char *expect_failure(const char *cert, const char *key, const char *blamed)
{
    return expect_failure_as(cert, key, blamed, false);
}

static struct tls_server *expect_success(const char *cert, const char *key, struct capture *log)
{
    char err[512] = "";
    struct tls_server *server;
    capture_begin(log);
    server = tls_server_new(cert, key, err, sizeof err);
    capture_end(log);
    if (!server)
        fail_msg("tls_server_new(%s, %s) failed: %s", cert, key, err);
    return server;
}

/* --- a client handshake against tls_server_wrap ----------------------------------------------- */

static int fd_send(void *ctx, const unsigned char *buf, size_t len)
{
    ssize_t n = write(*(int *)ctx, buf, len);
    if (n < 0)
        return errno == EAGAIN ? MBEDTLS_ERR_SSL_WANT_WRITE : MBEDTLS_ERR_NET_SEND_FAILED;
    return (int)n;
}

static int fd_recv(void *ctx, unsigned char *buf, size_t len)
{
    ssize_t n = read(*(int *)ctx, buf, len);
    if (n < 0)
        return errno == EAGAIN ? MBEDTLS_ERR_SSL_WANT_READ : MBEDTLS_ERR_NET_RECV_FAILED;
    if (n == 0)
        return MBEDTLS_ERR_NET_CONN_RESET;
    return (int)n;
}

/* A server connection whose client side is not yet driven. */
struct pending_conn {
    struct event_base *base;
    struct bufferevent *bev;
    int client_fd;
};

static void pending_open(struct pending_conn *pc, struct tls_server *server)
{
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    assert_int_equal(fcntl(sv[0], F_SETFL, O_NONBLOCK), 0);
    assert_int_equal(fcntl(sv[1], F_SETFL, O_NONBLOCK), 0);
    pc->base = event_base_new();
    assert_non_null(pc->base);
    pc->bev = tls_server_wrap(pc->base, sv[0], server);
    assert_non_null(pc->bev);
    bufferevent_enable(pc->bev, EV_READ | EV_WRITE);
    pc->client_fd = sv[1];
}

/* Runs the handshake; copies the server certificate's DER into der.
 * Returns the handshake result (0 on success). */
static int pending_handshake(struct pending_conn *pc, const char *alpn_out, unsigned char *der,
                             size_t *der_len)
{
    static const char *alpn[] = {"http/1.1", NULL};
    mbedtls_entropy_context entropy;
    mbedtls_ctr_drbg_context drbg;
    mbedtls_ssl_config conf;
    mbedtls_ssl_context ssl;
    time_t deadline = time(NULL) + 20;
    int rc;

    mbedtls_entropy_init(&entropy);
    mbedtls_ctr_drbg_init(&drbg);
    mbedtls_ssl_config_init(&conf);
    mbedtls_ssl_init(&ssl);
    assert_int_equal(mbedtls_ctr_drbg_seed(&drbg, mbedtls_entropy_func, &entropy, NULL, 0), 0);
    assert_int_equal(mbedtls_ssl_config_defaults(&conf, MBEDTLS_SSL_IS_CLIENT,
                                                 MBEDTLS_SSL_TRANSPORT_STREAM,
                                                 MBEDTLS_SSL_PRESET_DEFAULT),
                     0);
    mbedtls_ssl_conf_authmode(&conf, MBEDTLS_SSL_VERIFY_NONE);
    mbedtls_ssl_conf_rng(&conf, mbedtls_ctr_drbg_random, &drbg);
    assert_int_equal(mbedtls_ssl_conf_alpn_protocols(&conf, alpn), 0);
    assert_int_equal(mbedtls_ssl_setup(&ssl, &conf), 0);
    mbedtls_ssl_set_bio(&ssl, &pc->client_fd, fd_send, fd_recv, NULL);

    for (;;) {
        rc = mbedtls_ssl_handshake(&ssl);
        if (rc != MBEDTLS_ERR_SSL_WANT_READ && rc != MBEDTLS_ERR_SSL_WANT_WRITE)
            break;
        if (time(NULL) > deadline) {
            rc = -1;
            break;
        }
        event_base_loop(pc->base, EVLOOP_NONBLOCK);
    }
    if (rc == 0) {
        const mbedtls_x509_crt *peer = mbedtls_ssl_get_peer_cert(&ssl);
        const char *proto = mbedtls_ssl_get_alpn_protocol(&ssl);
        assert_non_null(peer);
        assert_true(peer->raw.len <= *der_len);
        memcpy(der, peer->raw.p, peer->raw.len);
        *der_len = peer->raw.len;
        if (alpn_out) {
            assert_non_null(proto);
            assert_string_equal(proto, alpn_out);
        }
    }
    mbedtls_ssl_free(&ssl);
    mbedtls_ssl_config_free(&conf);
    mbedtls_ctr_drbg_free(&drbg);
    mbedtls_entropy_free(&entropy);
    return rc;
}

static void pending_close(struct pending_conn *pc)
{
    bufferevent_free(pc->bev);
    close(pc->client_fd);
    event_base_free(pc->base);
}

/* Asserts that a connection's handshake presents the (first) certificate
 * of cert_file. */
static void assert_presents(struct pending_conn *pc, const char *cert_file)
{
    unsigned char der[8192];
    size_t der_len = sizeof der;
    mbedtls_x509_crt expected;
    int rc = pending_handshake(pc, "http/1.1", der, &der_len);
    if (rc != 0)
        fail_msg("handshake failed: -0x%04x", (unsigned)-rc);
    mbedtls_x509_crt_init(&expected);
    assert_int_equal(mbedtls_x509_crt_parse_file(&expected, cert_file), 0);
    if (expected.raw.len != der_len || memcmp(expected.raw.p, der, der_len) != 0)
        fail_msg("the server presented another certificate than %s", cert_file);
    mbedtls_x509_crt_free(&expected);
}

static void assert_new_connection_presents(struct tls_server *server, const char *cert_file)
{
    struct pending_conn pc;
    pending_open(&pc, server);
    assert_presents(&pc, cert_file);
    pending_close(&pc);
}

/* --- loading ---------------------------------------------------------------------------------- */

static void test_ec_pair_loads_without_warning_and_is_served(void **state)
{
    struct capture log;
    struct tls_server *server = expect_success(path_of("first.crt"), path_of("first.key"), &log);
    assert_null(strstr(log.text, "warn"));
    assert_new_connection_presents(server, path_of("first.crt"));
    tls_server_free(server);
}

static void test_rsa_pair_loads_and_is_served(void **state)
{
    struct capture log;
    struct tls_server *server = expect_success(path_of("rsa.crt"), path_of("rsa.key"), &log);
    assert_new_connection_presents(server, path_of("rsa.crt"));
    tls_server_free(server);
}

static void test_missing_certificate_file_is_refused_naming_it(void **state)
{
    const char *err =
        expect_failure(path_of("nothing.crt"), path_of("first.key"), path_of("nothing.crt"));
    assert_non_null(strstr(err, "No such file"));
}

static void test_missing_key_file_is_refused_naming_it(void **state)
{
    const char *err =
        expect_failure(path_of("first.crt"), path_of("nothing.key"), path_of("nothing.key"));
    assert_non_null(strstr(err, "No such file"));
}

static void test_key_file_without_read_permission_is_refused_naming_it(void **state)
{
    char key[512];
    const char *err;
    snprintf(key, sizeof key, "%s", path_of("noperm.key"));
    assert_int_equal(chmod(dir, 0711), 0);
    assert_int_equal(chmod(path_of("first.crt"), 0644), 0);
    {
        char cmd[1200];
        snprintf(cmd, sizeof cmd, "cp '%s' '%s' && chmod 000 '%s'", path_of("first.key"), key, key);
        assert_int_equal(system(cmd), 0);
    }
    err = expect_failure_as(path_of("first.crt"), key, key, true);
    if (!strstr(err, "Permission denied"))
        fail_msg("reason \"%s\" does not say the permission is missing", err);
    unlink(key);
}

/* A directory cannot be read as a file, whoever asks. */
static void test_certificate_path_that_is_a_directory_is_refused_naming_it(void **state)
{
    const char *err = expect_failure(path_of("adir"), path_of("first.key"), path_of("adir"));
    if (!strstr(err, "irectory"))
        fail_msg("reason \"%s\" does not say the path is a directory", err);
}

static void test_key_path_that_is_a_directory_is_refused_naming_it(void **state)
{
    const char *err = expect_failure(path_of("first.crt"), path_of("adir"), path_of("adir"));
    if (!strstr(err, "irectory"))
        fail_msg("reason \"%s\" does not say the path is a directory", err);
}

static void test_certificate_file_that_is_not_pem_is_refused_naming_it(void **state)
{
    expect_failure(path_of("notpem.crt"), path_of("first.key"), path_of("notpem.crt"));
}

static void test_empty_certificate_file_is_refused_naming_it(void **state)
{
    expect_failure(path_of("empty.crt"), path_of("first.key"), path_of("empty.crt"));
}

static void test_truncated_certificate_file_is_refused_naming_it(void **state)
{
    expect_failure(path_of("truncated.crt"), path_of("first.key"), path_of("truncated.crt"));
}

static void test_key_file_that_is_not_pem_is_refused_naming_it(void **state)
{
    expect_failure(path_of("first.crt"), path_of("notpem.key"), path_of("notpem.key"));
}

static void test_key_given_as_certificate_is_refused_naming_it(void **state)
{
    expect_failure(path_of("first.key"), path_of("first.key"), path_of("first.key"));
}

static void test_passphrase_protected_key_is_refused_naming_it(void **state)
{
    expect_failure(path_of("first.crt"), path_of("encrypted.key"), path_of("encrypted.key"));
}

static void test_key_of_another_certificate_is_refused_as_not_matching(void **state)
{
    const char *err =
        expect_failure(path_of("first.crt"), path_of("second.key"), path_of("second.key"));
    assert_non_null(strstr(err, "does not match"));
    assert_non_null(strstr(err, path_of("first.crt")));
}

static void test_rsa_key_for_ec_certificate_is_refused_as_not_matching(void **state)
{
    const char *err = expect_failure(path_of("first.crt"), path_of("rsa.key"), path_of("rsa.key"));
    assert_non_null(strstr(err, "does not match"));
}

static void test_expired_certificate_loads_with_a_warning_giving_its_date(void **state)
{
    struct capture log;
    struct tls_server *server =
        expect_success(path_of("expired.crt"), path_of("expired.key"), &log);
    assert_non_null(strstr(log.text, " warn: "));
    assert_non_null(strstr(log.text, "expired"));
    assert_non_null(strstr(log.text, "2020-01-02 03:04:05"));
    assert_non_null(strstr(log.text, path_of("expired.crt")));
    assert_new_connection_presents(server, path_of("expired.crt"));
    tls_server_free(server);
}

static void test_not_yet_valid_certificate_loads_with_a_warning_giving_its_date(void **state)
{
    struct capture log;
    struct tls_server *server = expect_success(path_of("future.crt"), path_of("future.key"), &log);
    assert_non_null(strstr(log.text, " warn: "));
    assert_non_null(strstr(log.text, "2099-03-04 05:06:07"));
    tls_server_free(server);
}

static void test_chain_file_with_leaf_first_loads_and_serves_the_leaf(void **state)
{
    struct capture log;
    struct tls_server *server = expect_success(path_of("chain.crt"), path_of("leaf.key"), &log);
    assert_null(strstr(log.text, "warn"));
    assert_new_connection_presents(server, path_of("leaf.crt"));
    tls_server_free(server);
}

static void test_chain_file_with_ca_first_is_refused_as_not_matching(void **state)
{
    const char *err =
        expect_failure(path_of("chain-ca-first.crt"), path_of("leaf.key"), path_of("leaf.key"));
    assert_non_null(strstr(err, "does not match"));
}

/* --- reloading -------------------------------------------------------------------------------- */

/* Copies src over dst (through a rename, as a deployment tool would). */
static void install(const char *src, const char *dst)
{
    char cmd[2200];
    snprintf(cmd, sizeof cmd, "cp '%s' '%s.tmp' && mv '%s.tmp' '%s'", src, dst, dst, dst);
    assert_int_equal(system(cmd), 0);
}

static void test_reload_with_bad_files_keeps_the_old_pair(void **state)
{
    char cert[512], key[512];
    char err[512];
    struct capture log;
    struct tls_server *server;

    snprintf(cert, sizeof cert, "%s", path_of("live.crt"));
    snprintf(key, sizeof key, "%s", path_of("live.key"));
    install(path_of("first.crt"), cert);
    install(path_of("first.key"), key);
    server = expect_success(cert, key, &log);

    /* a key that does not match */
    install(path_of("second.key"), key);
    err[0] = '\0';
    assert_int_equal(tls_server_reload(server, err, sizeof err), -1);
    assert_non_null(strstr(err, "does not match"));
    assert_null(strchr(err, '\n'));
    assert_new_connection_presents(server, path_of("first.crt"));

    /* a certificate that is not one */
    install(path_of("notpem.crt"), cert);
    err[0] = '\0';
    assert_int_equal(tls_server_reload(server, err, sizeof err), -1);
    assert_non_null(strstr(err, cert));
    assert_new_connection_presents(server, path_of("first.crt"));

    /* files gone */
    assert_int_equal(unlink(cert), 0);
    err[0] = '\0';
    assert_int_equal(tls_server_reload(server, err, sizeof err), -1);
    assert_non_null(strstr(err, cert));
    assert_new_connection_presents(server, path_of("first.crt"));

    tls_server_free(server);
    unlink(key);
}

static void test_reload_with_good_files_switches_new_connections_only(void **state)
{
    char cert[512], key[512];
    char err[512];
    struct capture log;
    struct tls_server *server;
    struct pending_conn opened_before;

    snprintf(cert, sizeof cert, "%s", path_of("live2.crt"));
    snprintf(key, sizeof key, "%s", path_of("live2.key"));
    install(path_of("first.crt"), cert);
    install(path_of("first.key"), key);
    server = expect_success(cert, key, &log);
    /* accepted before the reload, handshake after it */
    pending_open(&opened_before, server);

    install(path_of("second.crt"), cert);
    install(path_of("second.key"), key);
    err[0] = '\0';
    if (tls_server_reload(server, err, sizeof err) != 0)
        fail_msg("reload failed: %s", err);
    assert_new_connection_presents(server, path_of("second.crt"));
    assert_presents(&opened_before, path_of("first.crt"));

    /* the connection outlives the server's hold on the old pair, and the
     * server itself: freed in either order without a leak (ASan) */
    install(path_of("rsa.crt"), cert);
    install(path_of("rsa.key"), key);
    assert_int_equal(tls_server_reload(server, err, sizeof err), 0);
    assert_new_connection_presents(server, path_of("rsa.crt"));
    tls_server_free(server);
    pending_close(&opened_before);
    unlink(cert);
    unlink(key);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ec_pair_loads_without_warning_and_is_served),
        cmocka_unit_test(test_rsa_pair_loads_and_is_served),
        cmocka_unit_test(test_missing_certificate_file_is_refused_naming_it),
        cmocka_unit_test(test_missing_key_file_is_refused_naming_it),
        cmocka_unit_test(test_key_file_without_read_permission_is_refused_naming_it),
        cmocka_unit_test(test_certificate_path_that_is_a_directory_is_refused_naming_it),
        cmocka_unit_test(test_key_path_that_is_a_directory_is_refused_naming_it),
        cmocka_unit_test(test_certificate_file_that_is_not_pem_is_refused_naming_it),
        cmocka_unit_test(test_empty_certificate_file_is_refused_naming_it),
        cmocka_unit_test(test_truncated_certificate_file_is_refused_naming_it),
        cmocka_unit_test(test_key_file_that_is_not_pem_is_refused_naming_it),
        cmocka_unit_test(test_key_given_as_certificate_is_refused_naming_it),
        cmocka_unit_test(test_passphrase_protected_key_is_refused_naming_it),
        cmocka_unit_test(test_key_of_another_certificate_is_refused_as_not_matching),
        cmocka_unit_test(test_rsa_key_for_ec_certificate_is_refused_as_not_matching),
        cmocka_unit_test(test_expired_certificate_loads_with_a_warning_giving_its_date),
        cmocka_unit_test(test_not_yet_valid_certificate_loads_with_a_warning_giving_its_date),
        cmocka_unit_test(test_chain_file_with_leaf_first_loads_and_serves_the_leaf),
        cmocka_unit_test(test_chain_file_with_ca_first_is_refused_as_not_matching),
        cmocka_unit_test(test_reload_with_bad_files_keeps_the_old_pair),
        cmocka_unit_test(test_reload_with_good_files_switches_new_connections_only),
    };
    return cmocka_run_group_tests(tests, make_dir, remove_dir);
}
