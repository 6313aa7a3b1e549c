#include "bus/event_id.h"

#include <string.h>
#include <sys/random.h>
#include <time.h>

bool event_id_valid(const char *text, size_t len)
{
    if (len == 0 || len > EVENT_ID_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = text[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              c == '.' || c == '_' || c == ':' || c == '-'))
            return false;
    }
    return true;
}

static void hex16(char *out, uint64_t v)
{
    static const char digits[] = "0123456789abcdef";
    for (int i = 15; i >= 0; i--) {
        out[i] = digits[v & 15];
        v >>= 4;
    }
}

size_t event_id_format(char out[EVENT_ID_LEN + 1], uint64_t run, uint64_t number)
{
    hex16(out, run);
    out[16] = '-';
    hex16(out + 17, number);
    out[EVENT_ID_LEN] = '\0';
    return EVENT_ID_LEN;
}

static int unhex16(const char *text, uint64_t *out)
{
    uint64_t v = 0;
    for (int i = 0; i < 16; i++) {
        char c = text[i];
        unsigned d;
        if (c >= '0' && c <= '9')
            d = (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            d = (unsigned)(c - 'a' + 10);
        else
            return -1;
        v = v << 4 | d;
    }
    *out = v;
    return 0;
}

int event_id_parse_run(const char *text, size_t len, uint64_t *run)
{
    uint64_t r;
    if (len != 16 || unhex16(text, &r) < 0 || r == 0)
        return -1;
    *run = r;
    return 0;
}

int event_id_parse(const char *text, size_t len, uint64_t *run, uint64_t *number)
{
    uint64_t r, n;
    if (len != EVENT_ID_LEN || text[16] != '-' || unhex16(text, &r) < 0 ||
        unhex16(text + 17, &n) < 0 || n == 0)
        return -1;
    *run = r;
    *number = n;
    return 0;
}

uint64_t event_id_new_run(void)
{
    struct timespec now;
    uint16_t noise = 0;
    uint64_t run;
    clock_gettime(CLOCK_REALTIME, &now);
    if (getrandom(&noise, sizeof noise, 0) != sizeof noise)
        noise = (uint16_t)now.tv_nsec;
    run = ((uint64_t)now.tv_sec * 1000000u + (uint64_t)now.tv_nsec / 1000u) << 12;
    run |= noise & 0xfffu;
    return run ? run : 1;
}

size_t event_message_id_offset(const uint8_t *message, size_t len)
{
    static const char head[] = "{\"type\":\"event\",\"event\":\"";
    size_t i = sizeof head - 1;
    if (len <= i || memcmp(message, head, i) != 0)
        return 0;
    /* The event's JSON string, escapes skipped over (RFC 8259 §7). */
    while (i < len && message[i] != '"') {
        if (message[i] == '\\')
            i++;
        i++;
    }
    if (i >= len)
        return 0;
    i++; /* the closing quote */
    if (i >= len || (message[i] != ',' && message[i] != '}'))
        return 0;
    return i;
}
