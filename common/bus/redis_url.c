#include "redis_url.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "core/error_message.h"

/* Parses the decimal number in [s, end) into *out; false unless it is all
 * digits, without a leading zero, and at most max. */
static bool parse_number(const char *s, const char *end, unsigned max, unsigned *out)
{
    unsigned long v = 0;
    if (s == end || end - s > 10 || (*s == '0' && end - s > 1))
        return false;
    for (const char *c = s; c < end; c++) {
        if (*c < '0' || *c > '9')
            return false;
        v = v * 10 + (unsigned long)(*c - '0');
    }
    if (v > max)
        return false;
    *out = (unsigned)v;
    return true;
}

static bool is_alnum(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

/* A host name: labels of letters, digits and '-' (not first or last) joined
 * by dots (RFC 1123 §2.1); an IPv4 address is one. */
static bool valid_name(const char *s, size_t len)
{
    size_t label = 0;
    if (len == 0 || len > REDIS_URL_HOST_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (c == '.') {
            if (label == 0 || s[i - 1] == '-')
                return false;
            label = 0;
        } else if (is_alnum(c) || (c == '-' && label > 0)) {
            if (++label > 63)
                return false;
        } else {
            return false;
        }
    }
    return label > 0 && s[len - 1] != '-';
}

/* What may be inside the brackets: hex digits, ':' and '.' (an embedded
 * IPv4 address); getaddrinfo judges the rest. */
static bool valid_ipv6(const char *s, size_t len)
{
    bool colon = false;
    if (len < 2 || len > 45)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (c == ':')
            colon = true;
        else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') ||
                   c == '.'))
            return false;
    }
    return colon;
}

/* An ACL user name: what Redis allows that also reads plainly in a URL. */
static bool valid_user(const char *s, size_t len)
{
    if (len == 0 || len > REDIS_URL_USER_MAX)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!is_alnum(s[i]) && s[i] != '-' && s[i] != '_' && s[i] != '.')
            return false;
    return true;
}

static int parse_tcp(const char *s, struct redis_url *out, char *err, size_t err_len)
{
    const char *end = s + strlen(s), *at, *host, *host_end, *port = NULL, *slash;
    size_t host_len;

    slash = memchr(s, '/', (size_t)(end - s));
    at = memchr(s, '@', (size_t)((slash ? slash : end) - s));
    if (at) {
        if (memchr(s, ':', (size_t)(at - s))) {
            error_message_format(
                err, err_len, "REDIS_URL: no password in the URL; put it in REDIS_PASSWORD_FILE");
            return -1;
        }
        if (!valid_user(s, (size_t)(at - s))) {
            error_message_format(
                err, err_len,
                "REDIS_URL: the user must be 1 to %d letters, digits, '-', '_' or '.'",
                REDIS_URL_USER_MAX);
            return -1;
        }
        memcpy(out->user, s, (size_t)(at - s));
        out->user[at - s] = '\0';
        s = at + 1;
    }
    if (memchr(s, '?', (size_t)(end - s)) || memchr(s, '#', (size_t)(end - s))) {
        error_message_format(err, err_len, "REDIS_URL: a redis:// URL takes no query or fragment");
        return -1;
    }
    host_end = slash ? slash : end;
    if (*s == '[') {
        const char *close = memchr(s, ']', (size_t)(host_end - s));
        if (!close || !valid_ipv6(s + 1, (size_t)(close - s - 1))) {
            error_message_format(err, err_len, "REDIS_URL: a bad IPv6 address");
            return -1;
        }
        host = s + 1;
        host_len = (size_t)(close - host);
        if (close + 1 < host_end) {
            if (close[1] != ':') {
                error_message_format(err, err_len, "REDIS_URL: ':' or '/' must follow ']'");
                return -1;
            }
            port = close + 2;
        }
    } else {
        const char *colon = memchr(s, ':', (size_t)(host_end - s));
        host = s;
        host_len = (size_t)((colon ? colon : host_end) - s);
        if (colon)
            port = colon + 1;
        if (!valid_name(host, host_len)) {
            error_message_format(err, err_len, "REDIS_URL: the host must be a name or an address");
            return -1;
        }
    }
    memcpy(out->host, host, host_len);
    out->host[host_len] = '\0';
    out->port = REDIS_URL_DEFAULT_PORT;
    if (port && (!parse_number(port, host_end, 65535, &out->port) || out->port == 0)) {
        error_message_format(err, err_len, "REDIS_URL: the port must be 1 to 65535");
        return -1;
    }
    if (slash && slash + 1 < end && !parse_number(slash + 1, end, REDIS_URL_DB_MAX, &out->db)) {
        error_message_format(err, err_len, "REDIS_URL: the database must be a number, 0 to %d",
                             REDIS_URL_DB_MAX);
        return -1;
    }
    return 0;
}

static int parse_unix(const char *s, struct redis_url *out, char *err, size_t err_len)
{
    const char *query = strchr(s, '?');
    size_t len = query ? (size_t)(query - s) : strlen(s);

    if (len == 0 || s[0] != '/') {
        error_message_format(err, err_len, "REDIS_URL: a unix: URL names an absolute path");
        return -1;
    }
    if (len > REDIS_URL_PATH_MAX) {
        error_message_format(err, err_len, "REDIS_URL: the socket path is over %d bytes",
                             REDIS_URL_PATH_MAX);
        return -1;
    }
    for (size_t i = 0; i < len; i++) {
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f || s[i] == '#') {
            error_message_format(err, err_len, "REDIS_URL: a control character or '#' in the path");
            return -1;
        }
    }
    memcpy(out->path, s, len);
    out->path[len] = '\0';
    if (query && (strncmp(query, "?db=", 4) != 0 ||
                  !parse_number(query + 4, query + strlen(query), REDIS_URL_DB_MAX, &out->db))) {
        error_message_format(err, err_len, "REDIS_URL: the only query is ?db=N, N 0 to %d",
                             REDIS_URL_DB_MAX);
        return -1;
    }
    return 0;
}

int redis_url_parse(const char *text, struct redis_url *out, char *err, size_t err_len)
{
    size_t len = strnlen(text, REDIS_URL_MAX + 1);

    memset(out, 0, sizeof *out);
    if (len > REDIS_URL_MAX) {
        error_message_format(err, err_len, "REDIS_URL is over %d bytes", REDIS_URL_MAX);
        return -1;
    }
    for (size_t i = 0; i < len; i++) {
        if ((unsigned char)text[i] <= 0x20 || (unsigned char)text[i] >= 0x7f) {
            error_message_format(err, err_len, "REDIS_URL holds a space or a byte outside ASCII");
            return -1;
        }
    }
    if (strncmp(text, "redis://", 8) == 0) {
        out->kind = REDIS_URL_TCP;
        return parse_tcp(text + 8, out, err, err_len);
    }
    if (strncmp(text, "unix:", 5) == 0) {
        out->kind = REDIS_URL_UNIX;
        return parse_unix(text + 5, out, err, err_len);
    }
    if (strncmp(text, "rediss://", 9) == 0) {
        error_message_format(
            err, err_len,
            "REDIS_URL: TLS to Redis (rediss://) is not supported: Debian's hiredis "
            "0.14 has none (see SECURITY.md for a safe path to a remote Redis)");
        return -1;
    }
    error_message_format(err, err_len,
                         "REDIS_URL: REDIS_URL must be redis://[user@]host[:port][/db] or "
                         "unix:/path[?db=N]");
    return -1;
}

int redis_url_format(const struct redis_url *url, char *out, size_t out_len)
{
    if (url->kind == REDIS_URL_UNIX)
        return snprintf(out, out_len, "unix:%s?db=%u", url->path, url->db);
    return snprintf(out, out_len, "redis://%s%s%s%s%s:%u/%u", url->user, url->user[0] ? "@" : "",
                    strchr(url->host, ':') ? "[" : "", url->host, strchr(url->host, ':') ? "]" : "",
                    url->port, url->db);
}
