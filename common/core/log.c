/* Logging to stderr, one record per line.
 *
 * A record is built completely in a stack buffer and handed to the kernel with
 * one write(2). Records are at most LOG_LINE_MAX bytes, which is PIPE_BUF on
 * Linux, so a record written to a pipe (journald, a supervisor) is never
 * interleaved with a record from another process.
 */
#include "core/log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#define LOG_LINE_MAX 4096    /* PIPE_BUF: writes up to this size to a pipe are atomic */
#define LOG_MESSAGE_MAX 2048 /* the formatted message before sanitising */

static const char log_ellipsis[] = "...";

static enum log_level log_current_level = LOG_LEVEL_INFO;
static const char *log_current_program = "event-server";

static const char *const log_level_names[] = {
    [LOG_LEVEL_ERROR] = "error",
    [LOG_LEVEL_WARN] = "warn",
    [LOG_LEVEL_INFO] = "info",
    [LOG_LEVEL_DEBUG] = "debug",
};

int log_level_parse(const char *text, enum log_level *out)
{
    if (text == NULL)
        return -1;
    for (size_t i = 0; i < sizeof(log_level_names) / sizeof(log_level_names[0]); i++) {
        if (strcasecmp(text, log_level_names[i]) == 0) {
            if (out != NULL)
                *out = (enum log_level)i;
            return 0;
        }
    }
    return -1;
}

const char *log_level_name(enum log_level level)
{
    if ((unsigned)level < sizeof(log_level_names) / sizeof(log_level_names[0]))
        return log_level_names[level];
    return "unknown";
}

void log_set_level(enum log_level level)
{
    log_current_level = level;
}

void log_set_program(const char *program)
{
    log_current_program = program != NULL ? program : "event-server";
}

bool log_enabled(enum log_level level)
{
    return level <= log_current_level;
}

/* Appends text to buf[*used..cap), writing control bytes as "\xNN" so that
 * nothing a client sent can start a new line or move the cursor. Stops at the
 * last whole character that fits; returns false when something was left out. */
static bool log_append_sanitised(char *buf, size_t cap, size_t *used, const char *text, size_t len)
{
    static const char hex[] = "0123456789abcdef";

    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)text[i];
        if (c < 0x20 || c == 0x7f) {
            if (cap - *used < 4)
                return false;
            buf[(*used)++] = '\\';
            buf[(*used)++] = 'x';
            buf[(*used)++] = hex[c >> 4];
            buf[(*used)++] = hex[c & 0x0f];
        } else {
            if (cap - *used < 1)
                return false;
            buf[(*used)++] = (char)c;
        }
    }
    return true;
}

static size_t log_format_time(char *buf, size_t cap)
{
    struct timespec now;
    struct tm tm;

    if (clock_gettime(CLOCK_REALTIME, &now) != 0 || gmtime_r(&now.tv_sec, &tm) == NULL)
        return 0;
    size_t n = strftime(buf, cap, "%Y-%m-%dT%H:%M:%S", &tm);
    if (n == 0)
        return 0;
    int m = snprintf(buf + n, cap - n, ".%03ldZ ", now.tv_nsec / 1000000L);
    if (m < 0 || (size_t)m >= cap - n)
        return 0;
    return n + (size_t)m;
}

static void log_write_all(const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = write(STDERR_FILENO, buf, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return; /* nowhere left to report it */
        }
        buf += n;
        len -= (size_t)n;
    }
}

void log_write(enum log_level level, const char *fmt, ...)
{
    char message[LOG_MESSAGE_MAX];
    char line[LOG_LINE_MAX];
    /* Room kept back so that "..." and the newline always fit. */
    const size_t body_cap = sizeof(line) - (sizeof(log_ellipsis) - 1) - 1;
    size_t used = 0;
    bool complete = true;
    int saved_errno = errno;

    if (!log_enabled(level))
        return;

    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(message, sizeof(message), fmt, ap);
    va_end(ap);
    size_t message_len;
    if (n < 0) {
        message_len = 0;
        complete = false;
    } else if ((size_t)n >= sizeof(message)) {
        message_len = sizeof(message) - 1;
        complete = false;
    } else {
        message_len = (size_t)n;
    }

    used = log_format_time(line, body_cap);
    const char *program = log_current_program;
    log_append_sanitised(line, body_cap, &used, program, strlen(program));
    /* The process id tells apart several daemons of one kind (several
     * broadcast daemons on one port), as syslog's "name[pid]" does. */
    char pid[24];
    int pid_len = snprintf(pid, sizeof pid, "[%ld]", (long)getpid());
    if (pid_len > 0 && (size_t)pid_len < body_cap - used) {
        memcpy(line + used, pid, (size_t)pid_len);
        used += (size_t)pid_len;
    }
    const char *name = log_level_name(level);
    if (body_cap - used >= strlen(name) + 3) {
        line[used++] = ' ';
        memcpy(line + used, name, strlen(name));
        used += strlen(name);
        line[used++] = ':';
        line[used++] = ' ';
    }
    if (!log_append_sanitised(line, body_cap, &used, message, message_len))
        complete = false;
    if (!complete) {
        memcpy(line + used, log_ellipsis, sizeof(log_ellipsis) - 1);
        used += sizeof(log_ellipsis) - 1;
    }
    line[used++] = '\n';

    log_write_all(line, used);
    errno = saved_errno;
}
