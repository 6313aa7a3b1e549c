/* JSON text helpers: UTF-8 validation, string escaping and unescaping, and a
 * flat member scanner. Nothing here recurses or allocates; every loop is
 * bounded by the length it was given.
 */
#include "core/json_text.h"

#include <stdint.h>
#include <string.h>

bool json_utf8_valid(const char *s, size_t len)
{
    if (len == 0)
        return true;

    const unsigned char *p = (const unsigned char *)s;
    const unsigned char *end = p + len;

    while (p < end) {
        /* Publish bodies are mostly ASCII: test eight bytes per step. */
        if ((size_t)(end - p) >= 8) {
            uint64_t word;
            memcpy(&word, p, sizeof(word));
            if ((word & UINT64_C(0x8080808080808080)) == 0) {
                p += 8;
                continue;
            }
        }
        unsigned char c = *p;
        if (c < 0x80) {
            p++;
            continue;
        }
        /* RFC 3629 section 4: the second byte's range depends on the lead
         * byte, which is what excludes overlongs (C0, C1, E0 80-9F, F0 80-8F),
         * surrogates (ED A0-BF) and code points above U+10FFFF (F4 90-BF,
         * F5-FF). */
        size_t need;
        unsigned char lo = 0x80, hi = 0xbf;
        if (c >= 0xc2 && c <= 0xdf) {
            need = 1;
        } else if (c >= 0xe0 && c <= 0xef) {
            need = 2;
            if (c == 0xe0)
                lo = 0xa0;
            else if (c == 0xed)
                hi = 0x9f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            need = 3;
            if (c == 0xf0)
                lo = 0x90;
            else if (c == 0xf4)
                hi = 0x8f;
        } else {
            return false;
        }
        if ((size_t)(end - p) <= need)
            return false;
        if (p[1] < lo || p[1] > hi)
            return false;
        for (size_t k = 2; k <= need; k++) {
            if ((p[k] & 0xc0) != 0x80)
                return false;
        }
        p += need + 1;
    }
    return true;
}

size_t json_escape_string(char *out, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    char *o = out;

    *o++ = '"';
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        char shortform = 0;

        /* RFC 8259 section 7: quotation mark, reverse solidus and U+0000 to
         * U+001F must be escaped; everything else may be copied. */
        switch (c) {
        case '"':
            shortform = '"';
            break;
        case '\\':
            shortform = '\\';
            break;
        case '\b':
            shortform = 'b';
            break;
        case '\f':
            shortform = 'f';
            break;
        case '\n':
            shortform = 'n';
            break;
        case '\r':
            shortform = 'r';
            break;
        case '\t':
            shortform = 't';
            break;
        default:
            break;
        }
        if (shortform) {
            *o++ = '\\';
            *o++ = shortform;
        } else if (c < 0x20) {
            memcpy(o, "\\u00", 4);
            o[4] = hex[c >> 4];
            o[5] = hex[c & 0xf];
            o += 6;
        } else {
            *o++ = (char)c;
        }
    }
    *o++ = '"';
    return (size_t)(o - out);
}

static int hex_value(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Reads the four hex digits at p[0..4); the caller has checked they exist. */
static long hex4_value(const char *p)
{
    long v = 0;
    for (int k = 0; k < 4; k++) {
        int h = hex_value((unsigned char)p[k]);
        if (h < 0)
            return -1;
        v = (v << 4) | h;
    }
    return v;
}

static size_t utf8_encode(unsigned long cp, char *out)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xc0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xe0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        out[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    out[0] = (char)(0xf0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    out[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

/* Decodes one character of string content starting at p (end excludes the
 * closing quote). Writes at most 4 bytes to out, sets *out_len, and returns
 * the number of input bytes consumed, or 0 when the text there is not valid
 * string content (RFC 8259 section 7). Every form consumes at least as many
 * bytes as it produces, which is why decoding never grows the text. */
static size_t unescape_step(const char *p, const char *end, char out[4], size_t *out_len)
{
    unsigned char c = (unsigned char)*p;

    if (c == '"' || c < 0x20)
        return 0;
    if (c != '\\') {
        out[0] = (char)c;
        *out_len = 1;
        return 1;
    }
    if (end - p < 2)
        return 0;
    *out_len = 1;
    switch (p[1]) {
    case '"':
    case '\\':
    case '/':
        out[0] = p[1];
        return 2;
    case 'b':
        out[0] = '\b';
        return 2;
    case 'f':
        out[0] = '\f';
        return 2;
    case 'n':
        out[0] = '\n';
        return 2;
    case 'r':
        out[0] = '\r';
        return 2;
    case 't':
        out[0] = '\t';
        return 2;
    case 'u':
        break;
    default:
        return 0;
    }
    if (end - p < 6)
        return 0;
    long cp = hex4_value(p + 2);
    if (cp < 0 || (cp >= 0xdc00 && cp <= 0xdfff))
        return 0;
    if (cp < 0xd800 || cp > 0xdbff) {
        *out_len = utf8_encode((unsigned long)cp, out);
        return 6;
    }
    /* A high surrogate must be followed by an escaped low one (section 7). */
    if (end - p < 12 || p[6] != '\\' || p[7] != 'u')
        return 0;
    long low = hex4_value(p + 8);
    if (low < 0xdc00 || low > 0xdfff)
        return 0;
    unsigned long full =
        0x10000 + (((unsigned long)cp - 0xd800) << 10) + ((unsigned long)low - 0xdc00);
    *out_len = utf8_encode(full, out);
    return 12;
}

int json_unescape_string(const char *lit, size_t len, char *out, size_t *out_len)
{
    if (len < 2 || lit[0] != '"' || lit[len - 1] != '"')
        return -1;

    const char *p = lit + 1;
    const char *end = lit + len - 1;
    size_t n = 0;

    while (p < end) {
        char buf[4];
        size_t produced;
        size_t used = unescape_step(p, end, buf, &produced);
        if (used == 0)
            return -1;
        memcpy(out + n, buf, produced);
        n += produced;
        p += used;
    }
    *out_len = n;
    return 0;
}

/* The four blanks of RFC 8259 section 2. */
static bool is_blank(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static size_t skip_blanks(const char *doc, size_t len, size_t i)
{
    while (i < len && is_blank(doc[i]))
        i++;
    return i;
}

/* doc[i] is an opening quote. Returns the index just past the closing quote,
 * or 0 when the string does not end inside doc. */
static size_t skip_string(const char *doc, size_t len, size_t i)
{
    for (i++; i < len; i++) {
        if (doc[i] == '\\')
            i++;
        else if (doc[i] == '"')
            return i + 1;
    }
    return 0;
}

/* Returns the index just past the value starting at doc[i], or 0 when there
 * is none. Containers are skipped by counting brackets rather than by
 * recursion; the caller's document was validated by cJSON, so brackets
 * match, but bounds are still checked on every byte. */
static size_t skip_value(const char *doc, size_t len, size_t i)
{
    if (i >= len)
        return 0;
    char c = doc[i];
    if (c == '"')
        return skip_string(doc, len, i);
    if (c == '{' || c == '[') {
        size_t depth = 0;
        while (i < len) {
            c = doc[i];
            if (c == '"') {
                i = skip_string(doc, len, i);
                if (i == 0)
                    return 0;
                continue;
            }
            if (c == '{' || c == '[') {
                depth++;
            } else if (c == '}' || c == ']') {
                if (--depth == 0)
                    return i + 1;
            }
            i++;
        }
        return 0;
    }
    /* Numbers and the literals true, false and null (sections 3 and 6). */
    size_t start = i;
    while (i < len && ((doc[i] >= '0' && doc[i] <= '9') || (doc[i] >= 'a' && doc[i] <= 'z') ||
                       doc[i] == '-' || doc[i] == '+' || doc[i] == '.' || doc[i] == 'E'))
        i++;
    return i > start ? i : 0;
}

/* Compares the decoded content of the key literal raw[0..len) (quotes
 * excluded) with name, one character at a time, so that keys of any length
 * are compared without a buffer. */
static bool key_equals(const char *raw, size_t len, const char *name, size_t name_len)
{
    const char *p = raw;
    const char *end = raw + len;
    size_t matched = 0;

    if (name_len > len)
        return false;
    if (memchr(raw, '\\', len) == NULL)
        return len == name_len && memcmp(raw, name, len) == 0;
    while (p < end) {
        char buf[4];
        size_t produced;
        size_t used = unescape_step(p, end, buf, &produced);
        if (used == 0 || produced > name_len - matched ||
            memcmp(name + matched, buf, produced) != 0)
            return false;
        matched += produced;
        p += used;
    }
    return matched == name_len;
}

int json_object_member(const char *doc, size_t len, const char *name, struct json_span *value)
{
    size_t name_len = strlen(name);
    struct json_span last = {NULL, 0};
    bool found = false;
    size_t i = skip_blanks(doc, len, 0);

    if (i >= len || doc[i] != '{')
        return -1;
    i = skip_blanks(doc, len, i + 1);
    if (i < len && doc[i] == '}')
        return 0;

    while (i < len) {
        if (doc[i] != '"')
            return -1;
        size_t key_start = i;
        size_t key_end = skip_string(doc, len, i);
        if (key_end == 0)
            return -1;
        i = skip_blanks(doc, len, key_end);
        if (i >= len || doc[i] != ':')
            return -1;
        i = skip_blanks(doc, len, i + 1);
        size_t value_start = i;
        size_t value_end = skip_value(doc, len, i);
        if (value_end == 0)
            return -1;
        if (key_equals(doc + key_start + 1, key_end - key_start - 2, name, name_len)) {
            last.ptr = doc + value_start;
            last.len = value_end - value_start;
            found = true;
        }
        i = skip_blanks(doc, len, value_end);
        if (i >= len)
            return -1;
        if (doc[i] == '}') {
            if (!found)
                return 0;
            *value = last;
            return 1;
        }
        if (doc[i] != ',')
            return -1;
        i = skip_blanks(doc, len, i + 1);
    }
    return -1;
}
