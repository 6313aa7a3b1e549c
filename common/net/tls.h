/* TLS for both daemons through mbedTLS (Debian's 2.28).
 *
 * libevent 2.1 has no mbedTLS bufferevent, so a TLS connection is a filter
 * bufferevent over the socket one: the input filter runs the handshake and
 * decrypts, the output filter encrypts. To the HTTP server and the
 * WebSocket sessions it is just a bufferevent, so their code is the same
 * with and without TLS. (Closing such a layered connection without losing
 * its last bytes is conn_flush.h's job.)
 *
 * Policy: TLS 1.2 (1.3 is not built into Debian's mbedTLS 2.28), ECDHE key
 * exchange with AES-GCM or ChaCha20-Poly1305 only, no renegotiation, ALPN
 * "http/1.1". The handshake is bounded by the caller's request/handshake
 * timeout, since it happens before the first request byte.
 *
 * Certificates: the certificate file may hold a chain (leaf first). Start-up
 * refuses a missing or unreadable file, a file that does not parse, and a
 * key that does not match the certificate; an expired (or not yet valid)
 * certificate is only a warning, with its date. tls_server_reload (SIGHUP)
 * loads both files again: new connections use the new ones, open
 * connections keep theirs, and a failed reload keeps the old pair.
 */
#ifndef EVS_TLS_H
#define EVS_TLS_H

#include <stddef.h>

struct event_base;
struct bufferevent;
struct tls_server;

/* Loads cert_file and key_file (paths copied). Returns NULL with a one-line
 * reason in err. */
struct tls_server *tls_server_new(const char *cert_file, const char *key_file, char *err,
                                  size_t err_len);

/* Loads the files again. Returns 0, or -1 with err (the old pair stays). */
int tls_server_reload(struct tls_server *server, char *err, size_t err_len);

/* An http_bev_factory_fn: wraps the accepted socket fd into a TLS server
 * connection that owns it; on failure returns NULL and fd is left to the
 * caller. arg is the struct tls_server *. */
struct bufferevent *tls_server_wrap(struct event_base *base, int fd, void *arg);

void tls_server_free(struct tls_server *server);

#endif
