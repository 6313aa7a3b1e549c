/* The authentication settings both daemons take, as one block of options
 * (so that the flags, variables and defaults cannot drift apart). */
#ifndef EVS_AUTH_SETTINGS_H
#define EVS_AUTH_SETTINGS_H

#include <stdint.h>

#include "auth/auth_store.h"
#include "core/config.h"

struct auth_settings {
    char *tokens_file;
    char *roles_file;
    char *jwt_secrets_file;
    struct cfg_list jwt_public_keys;
    uint64_t jwt_leeway_s;
    char *jwt_issuer;
    char *jwt_audience;
};

/* The cfg_option entries for s (a struct auth_settings lvalue). */
#define AUTH_SETTINGS_OPTIONS(s)                                                                   \
    {"--tokens",                                                                                   \
     "TOKENS_FILE",                                                                                \
     CFG_STRING,                                                                                   \
     "/tokens/tokens",                                                                             \
     "tokens file: one token per line (optionally followed by its roles), re-read when it "        \
     "changes",                                                                                    \
     &(s).tokens_file,                                                                             \
     0,                                                                                            \
     0},                                                                                           \
        {"--roles",                                                                                \
         "ROLES_FILE",                                                                             \
         CFG_STRING,                                                                               \
         "",                                                                                       \
         "roles file granting publish/subscribe on event-type patterns (empty: no roles)",         \
         &(s).roles_file,                                                                          \
         0,                                                                                        \
         0},                                                                                       \
        {"--jwt-secrets",                                                                          \
         "JWT_SECRETS_FILE",                                                                       \
         CFG_STRING,                                                                               \
         "",                                                                                       \
         "HS256 secrets for Bearer JWTs, one per line (empty: no secrets)",                        \
         &(s).jwt_secrets_file,                                                                    \
         0,                                                                                        \
         0},                                                                                       \
        {"--jwt-public-key",                                                                       \
         "JWT_PUBLIC_KEYS",                                                                        \
         CFG_LIST,                                                                                 \
         NULL,                                                                                     \
         "PEM public key(s) for RS256/ES256 Bearer JWTs; repeat or separate with commas",          \
         &(s).jwt_public_keys,                                                                     \
         0,                                                                                        \
         0},                                                                                       \
        {"--jwt-leeway-s",                                                                         \
         "JWT_LEEWAY_S",                                                                           \
         CFG_UINT,                                                                                 \
         "30",                                                                                     \
         "clock skew allowed when checking a JWT's exp, nbf and iat (seconds)",                    \
         &(s).jwt_leeway_s,                                                                        \
         0,                                                                                        \
         3600},                                                                                    \
        {"--jwt-issuer",                                                                           \
         "JWT_ISSUER",                                                                             \
         CFG_STRING,                                                                               \
         "",                                                                                       \
         "required JWT \"iss\" (empty: any)",                                                      \
         &(s).jwt_issuer,                                                                          \
         0,                                                                                        \
         0},                                                                                       \
    {                                                                                              \
        "--jwt-audience", "JWT_AUDIENCE", CFG_STRING, "",                                          \
            "required entry of the JWT \"aud\" (empty: any)", &(s).jwt_audience, 0, 0              \
    }

static inline void auth_settings_store_config(const struct auth_settings *s,
                                              struct auth_store_config *out)
{
    out->tokens_file = s->tokens_file;
    out->roles_file = s->roles_file;
    out->jwt_secrets_file = s->jwt_secrets_file;
    out->jwt_public_keys = &s->jwt_public_keys;
    out->jwt_policy.leeway_s = (int64_t)s->jwt_leeway_s;
    out->jwt_policy.issuer = s->jwt_issuer;
    out->jwt_policy.audience = s->jwt_audience;
}

/* The daemon's auth store from its settings; NULL with err on a roles,
 * secrets or key file that cannot be used (a bad setting: exit 2). */
static inline struct auth_store *auth_settings_open(struct event_base *base,
                                                    const struct auth_settings *s, char *err,
                                                    size_t err_len)
{
    struct auth_store_config config;
    auth_settings_store_config(s, &config);
    return auth_store_new(base, &config, err, err_len);
}

#endif
