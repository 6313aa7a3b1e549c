#include "net/tls.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/error.h>
#include <mbedtls/pk.h>
#include <mbedtls/ssl.h>
#include <mbedtls/x509_crt.h>

#include "core/log.h"

/* Plaintext encrypted per record at most (the TLS maximum fragment). */
#define TLS_RECORD_PLAINTEXT 16384

static const int tls_ciphersuites[] = {
    MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    MBEDTLS_TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    MBEDTLS_TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    MBEDTLS_TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    MBEDTLS_TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    0,
};

static const char *tls_alpn[] = {"http/1.1", NULL};

/* One loaded certificate and key with the mbedTLS configuration using them.
 * Reference counted: the server holds one reference while it is current,
 * and every connection made with it holds one. */
struct tls_config {
    unsigned refs;
    mbedtls_ssl_config conf;
    mbedtls_x509_crt chain;
    mbedtls_pk_context key;
};

struct tls_server {
    char *cert_file, *key_file;
    mbedtls_entropy_context entropy;
    mbedtls_ctr_drbg_context drbg;
    struct tls_config *current;
};

struct tls_conn {
    mbedtls_ssl_context ssl;
    struct tls_config *config;
    struct bufferevent *under;  /* the socket bufferevent: ciphertext */
    struct bufferevent *filter; /* what the application uses: plaintext */
    bool handshake_done;
    bool failed;      /* a TLS error: nothing more is read or written */
    bool peer_closed; /* the peer's close_notify came */
    bool close_notify_sent;
};

static void config_unref(struct tls_config *config)
{
    if (config && --config->refs == 0) {
        mbedtls_ssl_config_free(&config->conf);
        mbedtls_x509_crt_free(&config->chain);
        mbedtls_pk_free(&config->key);
        free(config);
    }
}

/* "<file>: <reason>" for a file that cannot be read as one, else 0. */
static int check_readable(const char *what, const char *path, char *err, size_t err_len)
{
    struct stat st;
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, err_len, "%s %s cannot be read: %s", what, path, strerror(errno));
        return -1;
    }
    if (fstat(fileno(f), &st) == 0 && !S_ISREG(st.st_mode)) {
        snprintf(err, err_len, "%s %s cannot be read: %s", what, path,
                 S_ISDIR(st.st_mode) ? "Is a directory" : "not a regular file");
        fclose(f);
        return -1;
    }
    fclose(f);
    return 0;
}

static void describe_mbedtls(int rc, char *buf, size_t len)
{
    mbedtls_strerror(rc, buf, len);
}

static void warn_about_dates(const char *path, const mbedtls_x509_crt *crt)
{
    const mbedtls_x509_time *to = &crt->valid_to, *from = &crt->valid_from;
    if (mbedtls_x509_time_is_past(to))
        log_warn("TLS certificate %s expired on %04d-%02d-%02d %02d:%02d:%02d UTC; clients will "
                 "refuse it",
                 path, to->year, to->mon, to->day, to->hour, to->min, to->sec);
    if (mbedtls_x509_time_is_future(from))
        log_warn("TLS certificate %s is not valid before %04d-%02d-%02d %02d:%02d:%02d UTC", path,
                 from->year, from->mon, from->day, from->hour, from->min, from->sec);
}

static struct tls_config *config_load(struct tls_server *server, char *err, size_t err_len)
{
    struct tls_config *config = calloc(1, sizeof *config);
    char why[160];
    struct stat st;
    int rc;

    if (!config) {
        snprintf(err, err_len, "out of memory loading TLS settings");
        return NULL;
    }
    config->refs = 1;
    mbedtls_ssl_config_init(&config->conf);
    mbedtls_x509_crt_init(&config->chain);
    mbedtls_pk_init(&config->key);

    if (check_readable("TLS certificate", server->cert_file, err, err_len) < 0 ||
        check_readable("TLS key", server->key_file, err, err_len) < 0)
        goto fail;
    rc = mbedtls_x509_crt_parse_file(&config->chain, server->cert_file);
    if (rc != 0) {
        describe_mbedtls(rc, why, sizeof why);
        snprintf(err, err_len, "TLS certificate %s: %s", server->cert_file, why);
        goto fail;
    }
    rc = mbedtls_pk_parse_keyfile(&config->key, server->key_file, NULL);
    if (rc != 0) {
        describe_mbedtls(rc, why, sizeof why);
        snprintf(err, err_len, "TLS key %s: %s", server->key_file, why);
        goto fail;
    }
    if (mbedtls_pk_check_pair(&config->chain.pk, &config->key) != 0) {
        snprintf(err, err_len, "TLS key %s does not match the certificate %s", server->key_file,
                 server->cert_file);
        goto fail;
    }
    warn_about_dates(server->cert_file, &config->chain);
    if (stat(server->key_file, &st) == 0 && (st.st_mode & S_IROTH))
        log_warn("TLS key %s is readable by every user; chmod o-r it", server->key_file);

    rc = mbedtls_ssl_config_defaults(&config->conf, MBEDTLS_SSL_IS_SERVER,
                                     MBEDTLS_SSL_TRANSPORT_STREAM, MBEDTLS_SSL_PRESET_DEFAULT);
    if (rc == 0)
        rc = mbedtls_ssl_conf_own_cert(&config->conf, &config->chain, &config->key);
    if (rc == 0)
        rc = mbedtls_ssl_conf_alpn_protocols(&config->conf, tls_alpn);
    if (rc != 0) {
        describe_mbedtls(rc, why, sizeof why);
        snprintf(err, err_len, "TLS set-up: %s", why);
        goto fail;
    }
    mbedtls_ssl_conf_rng(&config->conf, mbedtls_ctr_drbg_random, &server->drbg);
    mbedtls_ssl_conf_min_version(&config->conf, MBEDTLS_SSL_MAJOR_VERSION_3,
                                 MBEDTLS_SSL_MINOR_VERSION_3);
    mbedtls_ssl_conf_ciphersuites(&config->conf, tls_ciphersuites);
#if defined(MBEDTLS_SSL_RENEGOTIATION)
    mbedtls_ssl_conf_renegotiation(&config->conf, MBEDTLS_SSL_RENEGOTIATION_DISABLED);
#endif
    return config;
fail:
    config_unref(config);
    return NULL;
}

struct tls_server *tls_server_new(const char *cert_file, const char *key_file, char *err,
                                  size_t err_len)
{
    static const char personalization[] = "event-server";
    struct tls_server *server = calloc(1, sizeof *server);
    int rc;
    if (!server) {
        snprintf(err, err_len, "out of memory");
        return NULL;
    }
    mbedtls_entropy_init(&server->entropy);
    mbedtls_ctr_drbg_init(&server->drbg);
    server->cert_file = strdup(cert_file);
    server->key_file = strdup(key_file);
    if (!server->cert_file || !server->key_file) {
        snprintf(err, err_len, "out of memory");
        goto fail;
    }
    rc = mbedtls_ctr_drbg_seed(&server->drbg, mbedtls_entropy_func, &server->entropy,
                               (const unsigned char *)personalization, sizeof personalization - 1);
    if (rc != 0) {
        snprintf(err, err_len, "cannot seed the TLS random generator");
        goto fail;
    }
    server->current = config_load(server, err, err_len);
    if (!server->current)
        goto fail;
    return server;
fail:
    tls_server_free(server);
    return NULL;
}

int tls_server_reload(struct tls_server *server, char *err, size_t err_len)
{
    struct tls_config *config = config_load(server, err, err_len);
    if (!config)
        return -1;
    config_unref(server->current);
    server->current = config;
    return 0;
}

void tls_server_free(struct tls_server *server)
{
    if (!server)
        return;
    config_unref(server->current);
    mbedtls_ctr_drbg_free(&server->drbg);
    mbedtls_entropy_free(&server->entropy);
    free(server->cert_file);
    free(server->key_file);
    free(server);
}

/* --- the connection -------------------------------------------------------- */

/* mbedTLS writes ciphertext straight into the socket bufferevent's output,
 * which never refuses bytes, so a record is never half-written. */
static int bio_send(void *arg, const unsigned char *buf, size_t len)
{
    struct tls_conn *tc = arg;
    if (evbuffer_add(bufferevent_get_output(tc->under), buf, len) < 0)
        return MBEDTLS_ERR_SSL_ALLOC_FAILED;
    return (int)len;
}

static int bio_recv(void *arg, unsigned char *buf, size_t len)
{
    struct tls_conn *tc = arg;
    int n = evbuffer_remove(bufferevent_get_input(tc->under), buf, len);
    return n > 0 ? n : MBEDTLS_ERR_SSL_WANT_READ;
}

/* libevent 2.1's filter ignores an error returned by the input filter, so
 * the application is told through an event, deferred so that it never runs
 * inside whatever code is writing to the connection. */
static void conn_fail(struct tls_conn *tc, short what, int rc)
{
    if (tc->failed)
        return;
    tc->failed = true;
    if (rc != 0 && log_enabled(LOG_LEVEL_DEBUG)) {
        char why[160];
        describe_mbedtls(rc, why, sizeof why);
        log_debug("TLS connection ended: %s", why);
    }
    bufferevent_trigger_event(tc->filter, what, BEV_TRIG_DEFER_CALLBACKS);
}

/* The peer's close_notify: the application sees an EOF, and the stream is
 * not failed, so that our own close_notify still goes out. */
static void conn_peer_closed(struct tls_conn *tc)
{
    if (tc->failed || tc->peer_closed)
        return;
    tc->peer_closed = true;
    bufferevent_trigger_event(tc->filter, BEV_EVENT_READING | BEV_EVENT_EOF,
                              BEV_TRIG_DEFER_CALLBACKS);
}

static enum bufferevent_filter_result tls_filter_in(struct evbuffer *src, struct evbuffer *dst,
                                                    ev_ssize_t limit,
                                                    enum bufferevent_flush_mode mode, void *arg)
{
    struct tls_conn *tc = arg;
    bool produced = false;
    int rc;

    if (tc->failed)
        return BEV_ERROR;
    if (tc->peer_closed) {
        evbuffer_drain(src, evbuffer_get_length(src)); /* nothing counts after close_notify */
        return BEV_NEED_MORE;
    }
    if (!tc->handshake_done) {
        rc = mbedtls_ssl_handshake(&tc->ssl);
        if (rc == MBEDTLS_ERR_SSL_WANT_READ || rc == MBEDTLS_ERR_SSL_WANT_WRITE)
            return BEV_NEED_MORE;
        if (rc != 0) {
            conn_fail(tc, BEV_EVENT_READING | BEV_EVENT_ERROR, rc);
            return BEV_ERROR;
        }
        tc->handshake_done = true;
    }
    /* The filter only runs while the socket has input, but mbedTLS may hold
     * decrypted records of its own: read until it has nothing left. */
    for (;;) {
        struct evbuffer_iovec v;
        if (evbuffer_reserve_space(dst, TLS_RECORD_PLAINTEXT, &v, 1) < 1) {
            conn_fail(tc, BEV_EVENT_READING | BEV_EVENT_ERROR, 0);
            return BEV_ERROR;
        }
        rc = mbedtls_ssl_read(&tc->ssl, v.iov_base, v.iov_len);
        if (rc > 0) {
            v.iov_len = (size_t)rc;
            evbuffer_commit_space(dst, &v, 1);
            produced = true;
            continue;
        }
        evbuffer_commit_space(dst, &v, 0);
        if (rc == MBEDTLS_ERR_SSL_WANT_READ || rc == MBEDTLS_ERR_SSL_WANT_WRITE)
            break;
        if (rc == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY || rc == 0)
            conn_peer_closed(tc);
        else
            conn_fail(tc, BEV_EVENT_READING | BEV_EVENT_ERROR, rc);
        break;
    }
    return produced ? BEV_OK : BEV_NEED_MORE;
}

static enum bufferevent_filter_result tls_filter_out(struct evbuffer *src, struct evbuffer *dst,
                                                     ev_ssize_t limit,
                                                     enum bufferevent_flush_mode mode, void *arg)
{
    struct tls_conn *tc = arg;
    unsigned char plain[TLS_RECORD_PLAINTEXT];

    if (tc->failed)
        return BEV_ERROR;
    if (!tc->handshake_done)
        return BEV_NEED_MORE; /* nothing is sent before a request, which needs the handshake */
    if (tc->peer_closed) {
        /* TLS 1.2 has no half-close: the answer to a close_notify is our
         * own, at once, and what was still to be written is dropped
         * (RFC 5246 §7.2.1), so that the connection can end now. */
        evbuffer_drain(src, evbuffer_get_length(src));
        if (!tc->close_notify_sent) {
            tc->close_notify_sent = true;
            mbedtls_ssl_close_notify(&tc->ssl);
        }
        return BEV_OK;
    }
    /* Small frames are gathered into full records: one record per event
     * frame would cost a header, a tag and a cipher call each. */
    while (evbuffer_get_length(src) > 0) {
        ev_ssize_t n = evbuffer_copyout(src, plain, sizeof plain);
        int rc = mbedtls_ssl_write(&tc->ssl, plain, (size_t)n);
        if (rc > 0) {
            evbuffer_drain(src, (size_t)rc);
            continue;
        }
        if (rc == MBEDTLS_ERR_SSL_WANT_WRITE || rc == MBEDTLS_ERR_SSL_WANT_READ)
            break;
        conn_fail(tc, BEV_EVENT_WRITING | BEV_EVENT_ERROR, rc);
        return BEV_ERROR;
    }
    /* The application is finishing the stream: end it with close_notify
     * (RFC 5246 §7.2.1), so the peer can tell it from a truncation. */
    if (mode == BEV_FINISHED && evbuffer_get_length(src) == 0 && !tc->close_notify_sent) {
        tc->close_notify_sent = true;
        mbedtls_ssl_close_notify(&tc->ssl);
    }
    return BEV_OK;
}

static void tls_conn_free(void *arg)
{
    struct tls_conn *tc = arg;
    mbedtls_ssl_free(&tc->ssl);
    config_unref(tc->config);
    free(tc);
}

struct bufferevent *tls_server_wrap(struct event_base *base, int fd, void *arg)
{
    struct tls_server *server = arg;
    struct tls_conn *tc = calloc(1, sizeof *tc);
    if (!tc)
        return NULL; /* the caller closes fd */
    mbedtls_ssl_init(&tc->ssl);
    tc->config = server->current;
    tc->config->refs++;
    if (mbedtls_ssl_setup(&tc->ssl, &tc->config->conf) != 0) {
        tls_conn_free(tc);
        return NULL;
    }
    mbedtls_ssl_set_bio(&tc->ssl, tc, bio_send, bio_recv, NULL);
    tc->under = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (!tc->under) {
        tls_conn_free(tc);
        return NULL;
    }
    tc->filter = bufferevent_filter_new(tc->under, tls_filter_in, tls_filter_out,
                                        BEV_OPT_CLOSE_ON_FREE, tls_conn_free, tc);
    if (!tc->filter) {
        bufferevent_setfd(tc->under, -1); /* fd stays open: the caller closes it */
        bufferevent_free(tc->under);
        tls_conn_free(tc);
        return NULL;
    }
    return tc->filter;
}
