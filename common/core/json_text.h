/* Small JSON text helpers that cJSON does not offer: UTF-8 validation,
 * string escaping and unescaping, and locating the raw text of a member so
 * that a value can be passed on byte-exact (cJSON keeps numbers as doubles).
 * Pure.
 */
#ifndef EVS_JSON_TEXT_H
#define EVS_JSON_TEXT_H

#include <stdbool.h>
#include <stddef.h>

struct json_span {
    const char *ptr; /* borrowed from the scanned document */
    size_t len;
};

/* true when s[0..len) is well-formed UTF-8 (RFC 3629: no overlongs, no
 * surrogates, nothing above U+10FFFF). */
bool json_utf8_valid(const char *s, size_t len);

/* Upper bound of json_escape_string's output for len input bytes. */
#define JSON_ESCAPED_MAX(len) (6 * (len) + 2)

/* Writes s as a JSON string literal, quotes included, to out (which has
 * room for JSON_ESCAPED_MAX(len) bytes). '"', '\\' and control characters
 * are escaped; other bytes are copied. Returns the bytes written. */
size_t json_escape_string(char *out, const char *s, size_t len);

/* Decodes the JSON string literal lit[0..len) (quotes included) into out,
 * which has room for len bytes (decoding never grows the text). \u escapes
 * become UTF-8; a surrogate pair becomes one code point. Returns 0 with
 * *out_len set, or -1 when lit is not a well-formed literal or holds a lone
 * surrogate. */
int json_unescape_string(const char *lit, size_t len, char *out, size_t *out_len);

/* doc[0..len) must be a JSON text that cJSON accepted and whose top level is
 * an object. Finds the member called name (compared after unescaping the
 * key); when a name repeats, the last one wins, as in JavaScript's
 * JSON.parse. Sets *value to the value's raw text, without surrounding
 * blanks. Returns 1 when found, 0 when absent, -1 when doc is not such an
 * object. */
int json_object_member(const char *doc, size_t len, const char *name, struct json_span *value);

#endif
