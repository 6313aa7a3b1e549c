/* Credential parsing: "<scheme> <token>" (RFC 7235 section 2.1 credentials,
 * where the auth-scheme is case-insensitive). The token is taken as the
 * service's own opaque string, not as base64 user:password (RFC 7617), to
 * stay compatible with the original event-server's clients.
 */
#include "auth/auth.h"

#include <stdbool.h>
#include <string.h>
#include <strings.h>

static bool auth_is_blank(char c)
{
    return c == ' ' || c == '\t';
}

int auth_parse(const char *text, size_t len, struct auth_credential *out)
{
    static const char basic[] = "basic", bearer[] = "bearer";
    enum auth_scheme kind;
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
    if (scheme_len == sizeof(basic) - 1 && strncasecmp(scheme, basic, scheme_len) == 0)
        kind = AUTH_SCHEME_BASIC;
    else if (scheme_len == sizeof(bearer) - 1 && strncasecmp(scheme, bearer, scheme_len) == 0)
        kind = AUTH_SCHEME_BEARER;
    else
        return AUTH_UNRECOGNIZED_SCHEME;

    while (pos < len && auth_is_blank(text[pos]))
        pos++;
    size_t end = len;
    while (end > pos && auth_is_blank(text[end - 1]))
        end--;
    if (end == pos)
        return AUTH_UNAUTHENTICATED;

    if (out != NULL) {
        out->scheme = kind;
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
    if (credential.scheme != AUTH_SCHEME_BASIC)
        return AUTH_UNRECOGNIZED_SCHEME;
    if (!tokens_contains(tokens, credential.token, credential.token_len))
        return AUTH_UNAUTHENTICATED;
    return AUTH_OK;
}

void auth_identity_clear(struct auth_identity *identity)
{
    if (!identity)
        return;
    event_patterns_clear(&identity->publish);
    event_patterns_clear(&identity->subscribe);
    memset(identity, 0, sizeof *identity);
}

/* Adds the grants of every role named in the comma-separated list[0..len). */
static int add_role_list(const struct roles *roles, const char *list, size_t len,
                         struct auth_identity *out)
{
    size_t start = 0;
    while (start <= len) {
        const char *comma = memchr(list + start, ',', len - start);
        size_t end = comma ? (size_t)(comma - list) : len;
        const struct role_rights *rights = roles_find(roles, list + start, end - start);
        if (rights && (event_patterns_merge(&out->publish, &rights->publish) < 0 ||
                       event_patterns_merge(&out->subscribe, &rights->subscribe) < 0))
            return -1;
        start = end + 1;
    }
    return 0;
}

static int identity_from_claims(const struct auth_sources *sources, const struct jwt_claims *c,
                                struct auth_identity *out)
{
    out->scheme = AUTH_SCHEME_BEARER;
    out->expires = c->exp;
    out->depends_on = AUTH_SOURCE_KEYS | (c->role_count > 0 ? AUTH_SOURCE_ROLES : 0);
    memcpy(out->subject, c->subject, sizeof out->subject);
    if (!c->has_roles && !c->has_publish && !c->has_subscribe) {
        out->full_rights = true;
        return 0;
    }
    for (size_t i = 0; i < c->role_count; i++) {
        if (add_role_list(sources->roles, c->roles[i], strlen(c->roles[i]), out) < 0)
            return -1;
    }
    if (event_patterns_merge(&out->publish, &c->publish) < 0 ||
        event_patterns_merge(&out->subscribe, &c->subscribe) < 0)
        return -1;
    return 0;
}

int auth_authenticate(const struct auth_sources *sources, const char *text, size_t len, int64_t now,
                      struct auth_identity *out)
{
    return auth_authenticate_bounded(sources, text, len, now, NULL, out);
}

int auth_authenticate_bounded(const struct auth_sources *sources, const char *text, size_t len,
                              int64_t now, struct jwt_cost *cost, struct auth_identity *out)
{
    struct auth_credential credential;
    int result = auth_parse(text, len, &credential);

    memset(out, 0, sizeof *out);
    if (cost)
        cost->public_key_checked = cost->public_key_failed = false;
    if (result != AUTH_OK)
        return result;
    if (credential.scheme == AUTH_SCHEME_BASIC) {
        const char *roles = NULL;
        if (!tokens_find(sources->tokens, credential.token, credential.token_len, &roles))
            return AUTH_UNAUTHENTICATED;
        out->scheme = AUTH_SCHEME_BASIC;
        out->depends_on = AUTH_SOURCE_TOKENS | (roles ? AUTH_SOURCE_ROLES : 0);
        if (!roles) {
            out->full_rights = true;
            return AUTH_OK;
        }
        if (add_role_list(sources->roles, roles, strlen(roles), out) < 0) {
            auth_identity_clear(out);
            return AUTH_UNAUTHENTICATED;
        }
        return AUTH_OK;
    }
    if (!sources->jwt_keys ||
        jwt_keys_secret_count(sources->jwt_keys) + jwt_keys_public_count(sources->jwt_keys) == 0)
        return AUTH_UNRECOGNIZED_SCHEME;
    struct jwt_claims claims;
    int rc = jwt_verify_bounded(credential.token, credential.token_len, sources->jwt_keys,
                                sources->jwt_cache, &sources->jwt_policy, now, cost, &claims);
    if (rc == JWT_ERR_EXPIRED)
        return AUTH_TOKEN_EXPIRED;
    if (rc == JWT_ERR_REFUSED)
        return AUTH_TOO_MANY_FAILURES;
    if (rc != JWT_OK)
        return AUTH_UNAUTHENTICATED;
    rc = identity_from_claims(sources, &claims, out);
    jwt_claims_clear(&claims);
    if (rc < 0) {
        auth_identity_clear(out);
        return AUTH_UNAUTHENTICATED;
    }
    return AUTH_OK;
}

bool auth_may_publish(const struct auth_identity *identity, const char *type, size_t len)
{
    return identity->full_rights || event_patterns_match(&identity->publish, type, len);
}

bool auth_may_subscribe(const struct auth_identity *identity, const char *type, size_t len)
{
    return identity->full_rights || event_patterns_match(&identity->subscribe, type, len);
}

const char *auth_result_code(int result)
{
    switch (result) {
    case AUTH_OK:
        return "OK";
    case AUTH_UNRECOGNIZED_SCHEME:
        return "AUTH_UNRECOGNIZED_SCHEME";
    case AUTH_TOKEN_EXPIRED:
        return "TOKEN_EXPIRED";
    case AUTH_FORBIDDEN:
        return "FORBIDDEN";
    case AUTH_TOO_MANY_FAILURES:
        return "TOO_MANY_AUTH_FAILURES";
    case AUTH_UNAUTHENTICATED:
    default:
        return "UNAUTHENTICATED";
    }
}
