/* Credential parsing: "<scheme> <token>" (RFC 7235 section 2.1 credentials,
 * where the auth-scheme is case-insensitive). The token is taken as the
 * service's own opaque string, not as base64 user:password (RFC 7617), to
 * stay compatible with the original event-server's clients.
 */
#include "auth.h"

#include <stdbool.h>
#include <strings.h>

static bool auth_is_blank(char c)
{
    return c == ' ' || c == '\t';
}

int auth_parse(const char *text, size_t len, struct auth_credential *out)
{
    static const char basic[] = "basic";
    size_t pos = 0;

    if (text == NULL)
        return AUTH_UNAUTHENTICATED;
    while (pos < len && auth_is_blank(text[pos]))
        pos++;
    if (pos == len)
        return AUTH_UNAUTHENTICATED;

    const char *scheme = text + pos;
    while (pos < len && !auth_is_blank(text[pos]))
        pos++;
    size_t scheme_len = (size_t)(text + pos - scheme);
    if (scheme_len != sizeof(basic) - 1 || strncasecmp(scheme, basic, scheme_len) != 0)
        return AUTH_UNRECOGNIZED_SCHEME;

    while (pos < len && auth_is_blank(text[pos]))
        pos++;
    size_t end = len;
    while (end > pos && auth_is_blank(text[end - 1]))
        end--;
    if (end == pos)
        return AUTH_UNAUTHENTICATED;

    if (out != NULL) {
        out->scheme = AUTH_SCHEME_BASIC;
        out->token = text + pos;
        out->token_len = end - pos;
    }
    return AUTH_OK;
}

int auth_check(const struct tokens *tokens, const char *text, size_t len)
{
    struct auth_credential credential;
    int result = auth_parse(text, len, &credential);

    if (result != AUTH_OK)
        return result;
    if (!tokens_contains(tokens, credential.token, credential.token_len))
        return AUTH_UNAUTHENTICATED;
    return AUTH_OK;
}

const char *auth_result_code(int result)
{
    switch (result) {
    case AUTH_OK:
        return "OK";
    case AUTH_UNRECOGNIZED_SCHEME:
        return "AUTH_UNRECOGNIZED_SCHEME";
    case AUTH_UNAUTHENTICATED:
    default:
        return "UNAUTHENTICATED";
    }
}
