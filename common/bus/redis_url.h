/* REDIS_URL, the address of the Redis server the Redis bus engine uses:
 *
 *   redis://[user@]host[:port][/db]     TCP; host a name, an IPv4 address or
 *                                       an IPv6 address in brackets; port
 *                                       6379 unless given; db 0 unless given
 *   unix:/path/to/redis.sock[?db=N]     a UNIX socket (an absolute path)
 *
 * The password never comes from the URL (it would show in `ps`, in unit
 * files and in logs): "user:password@" is refused, and REDIS_PASSWORD_FILE
 * holds it. "rediss://" (TLS) is refused with the reason: Debian's hiredis
 * 0.14 has no TLS (SECURITY.md says how to reach a remote Redis safely).
 * Pure: no I/O, no allocation.
 */
#ifndef EVS_REDIS_URL_H
#define EVS_REDIS_URL_H

#include <stddef.h>

#define REDIS_URL_MAX 1024     /* longer text is refused before it is looked at */
#define REDIS_URL_USER_MAX 64  /* an ACL user name */
#define REDIS_URL_HOST_MAX 253 /* a DNS name (RFC 1035 §2.3.4), or an address */
#define REDIS_URL_PATH_MAX 107 /* what sun_path holds, with its terminator */
#define REDIS_URL_DB_MAX 1000000
#define REDIS_URL_DEFAULT_PORT 6379

enum redis_url_kind { REDIS_URL_TCP, REDIS_URL_UNIX };

struct redis_url {
    enum redis_url_kind kind;
    char user[REDIS_URL_USER_MAX + 1]; /* empty: the default user */
    char host[REDIS_URL_HOST_MAX + 1]; /* TCP: without the brackets of an IPv6 address */
    unsigned port;                     /* TCP */
    char path[REDIS_URL_PATH_MAX + 1]; /* UNIX */
    unsigned db;                       /* SELECT'ed after connecting when not 0 */
};

/* Parses text into *out. Returns 0, or -1 with the reason in err (for
 * example "redis://h:0: the port must be 1 to 65535"); *out is then
 * unspecified. */
int redis_url_parse(const char *text, struct redis_url *out, char *err, size_t err_len);

/* Writes the URL back, as a log line shows it (never a password: there is
 * none). Returns what snprintf returns. */
int redis_url_format(const struct redis_url *url, char *out, size_t out_len);

#endif
