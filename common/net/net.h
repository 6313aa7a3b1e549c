/* Socket set-up shared by both daemons: TCP listeners on a bind address and
 * the UNIX-domain sockets of the bus. Every descriptor returned is
 * non-blocking and close-on-exec; the caller owns it.
 */
#ifndef EVS_NET_H
#define EVS_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* Opens a listening TCP socket on address (NULL or "" = all addresses, IPv6
 * dual-stack where available, else IPv4) and port. reuse_port sets
 * SO_REUSEPORT so that several daemons can share the port.
 * Returns the fd, or -1 with a one-line reason in err. */
int net_listen_tcp(const char *address, uint16_t port, bool reuse_port, int backlog, char *err,
                   size_t err_len);

/* Opens a listening UNIX stream socket at path with mode 0660. A socket file
 * left behind by a dead process is replaced; one that a live process still
 * accepts on is not (err says so). Returns the fd, or -1 with err. */
int net_listen_unix(const char *path, int backlog, char *err, size_t err_len);

/* Starts a non-blocking connect to the UNIX stream socket at path.
 * Returns the fd (connected or in progress), or -1 with errno set. */
int net_connect_unix(const char *path);

/* "127.0.0.1:5678", "[::1]:5678" or "unix" for sa into out. */
void net_format_address(const struct sockaddr *sa, socklen_t len, char *out, size_t out_len);

/* The client network that per-source limits count against: an IPv4
 * address (/32), or the /64 prefix of an IPv6 address (one host's usual
 * share; an IPv4-mapped address counts as IPv4). Addresses of other
 * families (a UNIX socket) all share one key. Never 0. */
uint64_t net_source_key(const struct sockaddr *sa, socklen_t len);

/* Unsent bytes the kernel may queue on an accepted TCP connection
 * (TCP_NOTSENT_LOWAT). Beyond this, writes wait in the daemon's own output
 * buffer, where the per-connection limits (MAX_BACKLOG) count them: without
 * it the kernel would hold megabytes per stalled peer, unseen and unbounded
 * by any setting of ours. */
#define NET_TCP_UNSENT_MAX (128 * 1024)

/* Options for a connection accepted from a client: TCP_NODELAY (answers
 * and frames are small and must not wait for Nagle) and the unsent limit
 * above. Does nothing for a UNIX-domain socket; a refused option is
 * ignored (the connection works, only less tightly bounded). */
void net_tune_accepted(int fd, const struct sockaddr *sa);

/* The port a listening socket got (useful after binding port 0), or 0. */
uint16_t net_local_port(int fd);

#endif
