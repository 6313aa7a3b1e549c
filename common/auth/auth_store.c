#include "auth/auth_store.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "auth/jwt_cache.h"
#include "core/clock.h"
#include "core/error_message.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/rate_limit.h"
#include "auth/watched_file.h"

#define JWT_SECRETS_FILE_MAX_BYTES (1024 * 1024)

struct auth_store {
    struct auth_sources sources; /* what callers read */
    struct tokens *tokens;
    struct roles *roles;
    struct jwt_keys *keys; /* secrets of the secrets file + the public keys */
    struct watched_file *tokens_file, *roles_file, *secrets_file;
    const struct cfg_list *public_keys;
    char *secrets_text; /* the last good secrets file, for rebuilding keys on SIGHUP */
    size_t secrets_len;
    void (*changed)(void *arg, unsigned sources);
    void *changed_arg;
    bool starting;
    bool reloading;              /* in auth_store_reload: changes are told once, at its end */
    unsigned reloaded;           /* AUTH_SOURCE_* bits reloaded meanwhile */
    char *start_error;           /* first fatal problem met while starting */
    struct jwt_cache *jwt_cache; /* verified tokens under the current keys */
    struct rate_table *failures; /* failed public-key verifications, per source */
    struct {
        uint64_t public_key_checks;   /* RSA or ECDSA signatures of clients' tokens verified */
        uint64_t public_key_failures; /* ... that did not verify */
        uint64_t refused_unchecked;   /* public-key JWTs refused over a source's budget */
    } cost;
};

/* Publishes the current sources; tells the owner which ones changed
 * (sources: AUTH_SOURCE_* bits), at once or at the end of a reload. */
static void store_changed(struct auth_store *store, unsigned sources)
{
    store->sources.tokens = store->tokens;
    store->sources.roles = store->roles;
    store->sources.jwt_keys = store->keys;
    store->sources.jwt_cache = store->jwt_cache;
    if (store->reloading)
        store->reloaded |= sources;
    else if (!store->starting && sources && store->changed)
        store->changed(store->changed_arg, sources);
}

static void store_fail_start(struct auth_store *store, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void store_fail_start(struct auth_store *store, const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    if (store->start_error)
        return;
    va_start(ap, fmt);
    error_message_vformat(buf, sizeof buf, fmt, ap);
    va_end(ap);
    store->start_error = strdup(buf);
}

/* --- tokens --------------------------------------------------------------- */

static void tokens_loaded(void *arg, struct watched_file *file, const char *text, size_t len,
                          int error, const char *reason)
{
    struct auth_store *store = arg;
    const char *path = watched_file_path(file);
    struct tokens_stats stats;
    struct tokens *tokens;

    if (!text) {
        tokens = tokens_new_empty();
        if (!tokens)
            return;
        if (tokens_count(store->tokens) > 0 || !reason)
            log_warn("tokens file %s cannot be read (%s): every Basic request is rejected until "
                     "it can",
                     path, watched_file_error_text(file, error));
        tokens_free(store->tokens);
        store->tokens = tokens;
        store_changed(store, AUTH_SOURCE_TOKENS);
        return;
    }
    tokens = tokens_parse(text, len, &stats);
    if (!tokens) {
        log_error("tokens file %s: out of memory; keeping the previous tokens", path);
        return;
    }
    tokens_free(store->tokens);
    store->tokens = tokens;
    if (reason)
        log_info("tokens file %s reloaded (%s): %zu tokens", path, reason, stats.accepted);
    else
        log_info("tokens file %s loaded: %zu tokens", path, stats.accepted);
    if (stats.too_short)
        log_warn("tokens file %s: %zu lines ignored, shorter than %d characters", path,
                 stats.too_short, TOKENS_MIN_LEN);
    if (stats.too_long)
        log_warn("tokens file %s: %zu lines ignored, longer than %d characters", path,
                 stats.too_long, TOKENS_MAX_LEN);
    if (stats.accepted == 0)
        log_warn("tokens file %s holds no usable token: every Basic request is rejected", path);
    if (watched_file_world_readable(file))
        log_warn("tokens file %s is readable by every user; chmod o-r it", path);
    store_changed(store, AUTH_SOURCE_TOKENS);
}

/* --- roles ---------------------------------------------------------------- */

static void roles_loaded(void *arg, struct watched_file *file, const char *text, size_t len,
                         int error, const char *reason)
{
    struct auth_store *store = arg;
    const char *path = watched_file_path(file);
    char err[256];
    struct roles *roles;

    if (!text) {
        if (store->starting) {
            store_fail_start(store, "roles file %s cannot be read: %s", path,
                             watched_file_error_text(file, error));
            return;
        }
        log_warn("roles file %s cannot be read (%s): roles grant nothing until it can", path,
                 watched_file_error_text(file, error));
        roles = roles_new_empty();
        if (!roles)
            return;
    } else {
        roles = roles_parse(text, len, err, sizeof err);
        if (!roles) {
            if (store->starting) {
                store_fail_start(store, "roles file %s: %s", path, err);
                return;
            }
            log_error("roles file %s: %s; keeping the previous roles", path, err);
            return;
        }
        log_info("roles file %s %s: %zu roles", path, reason ? "reloaded" : "loaded",
                 roles_count(roles));
    }
    roles_free(store->roles);
    store->roles = roles;
    store_changed(store, AUTH_SOURCE_ROLES);
}

/* --- JWT keys ------------------------------------------------------------- */

/* Builds the key set from the last good secrets plus every public key file.
 * Returns 0, or -1 with err. */
static int rebuild_keys(struct auth_store *store, const char *secrets_text, size_t secrets_len,
                        char *err, size_t err_len)
{
    size_t too_short = 0;
    struct jwt_keys *keys = jwt_keys_parse_secrets(secrets_text ? secrets_text : "",
                                                   secrets_text ? secrets_len : 0, &too_short);
    if (!keys) {
        snprintf(err, err_len, "out of memory loading JWT keys");
        return -1;
    }
    if (too_short)
        log_warn("JWT secrets file: %zu secrets ignored, shorter than 32 bytes", too_short);
    for (size_t i = 0; store->public_keys && i < store->public_keys->count; i++) {
        if (jwt_keys_add_public_key_file(keys, store->public_keys->items[i], err, err_len) < 0) {
            jwt_keys_free(keys);
            return -1;
        }
    }
    jwt_keys_free(store->keys);
    store->keys = keys;
    jwt_cache_invalidate(store->jwt_cache); /* it vouched for the previous keys */
    return 0;
}

static void secrets_loaded(void *arg, struct watched_file *file, const char *text, size_t len,
                           int error, const char *reason)
{
    struct auth_store *store = arg;
    const char *path = watched_file_path(file);
    char err[256];

    if (!text) {
        if (store->starting) {
            store_fail_start(store, "JWT secrets file %s cannot be read: %s", path,
                             watched_file_error_text(file, error));
            return;
        }
        log_warn("JWT secrets file %s cannot be read (%s): no HS256 token is accepted until it "
                 "can",
                 path, watched_file_error_text(file, error));
        text = "";
        len = 0;
    }
    if (rebuild_keys(store, text, len, err, sizeof err) < 0) {
        if (store->starting)
            store_fail_start(store, "%s", err);
        else
            log_error("JWT keys: %s; keeping the previous keys", err);
        return;
    }
    free(store->secrets_text);
    store->secrets_text = strndup(text, len);
    store->secrets_len = store->secrets_text ? len : 0;
    log_info("JWT secrets file %s %s: %zu secrets", path, reason ? "reloaded" : "loaded",
             jwt_keys_secret_count(store->keys));
    if (watched_file_world_readable(file))
        log_warn("JWT secrets file %s is readable by every user; chmod o-r it", path);
    store_changed(store, AUTH_SOURCE_KEYS);
}

/* --- the store ------------------------------------------------------------ */

struct auth_store *auth_store_new(struct event_base *base, const struct auth_store_config *config,
                                  char *err, size_t err_len)
{
    struct auth_store *store = calloc(1, sizeof *store);
    const struct rate_limit failure_limit = {AUTH_STORE_FAILURE_INTERVAL_MS,
                                             AUTH_STORE_FAILURE_BURST};
    uint64_t seed = 0;
    if (!store) {
        snprintf(err, err_len, "out of memory");
        return NULL;
    }
    store->starting = true;
    if (getrandom(&seed, sizeof seed, 0) != sizeof seed)
        seed = (uint64_t)time(NULL) ^ (uint64_t)(uintptr_t)store;
    store->jwt_cache = jwt_cache_new(AUTH_STORE_JWT_CACHE_ENTRIES);
    store->failures = rate_table_new(AUTH_STORE_FAILURE_SOURCES, &failure_limit, seed);
    if (!store->jwt_cache || !store->failures)
        goto oom;
    store->public_keys = config->jwt_public_keys;
    store->sources.jwt_policy = config->jwt_policy;
    store->tokens = tokens_new_empty();
    if (!store->tokens)
        goto oom;
    store->tokens_file =
        watched_file_new(base, config->tokens_file, TOKENS_FILE_MAX_BYTES, tokens_loaded, store);
    if (!store->tokens_file)
        goto oom;
    if (config->roles_file && *config->roles_file) {
        store->roles_file =
            watched_file_new(base, config->roles_file, ROLES_FILE_MAX_BYTES, roles_loaded, store);
        if (!store->roles_file)
            goto oom;
    }
    if (config->jwt_secrets_file && *config->jwt_secrets_file) {
        store->secrets_file = watched_file_new(base, config->jwt_secrets_file,
                                               JWT_SECRETS_FILE_MAX_BYTES, secrets_loaded, store);
        if (!store->secrets_file)
            goto oom;
    } else if (config->jwt_public_keys && config->jwt_public_keys->count > 0) {
        char why[256];
        if (rebuild_keys(store, NULL, 0, why, sizeof why) < 0)
            store_fail_start(store, "%s", why);
    }
    if (store->start_error) {
        snprintf(err, err_len, "%s", store->start_error);
        auth_store_free(store);
        return NULL;
    }
    if (store->keys && jwt_keys_public_count(store->keys) > 0)
        log_info("JWT public keys loaded: %zu", jwt_keys_public_count(store->keys));
    store->starting = false;
    store_changed(store, 0);
    return store;
oom:
    snprintf(err, err_len, "out of memory");
    auth_store_free(store);
    return NULL;
}

const struct auth_sources *auth_store_sources(const struct auth_store *store)
{
    return &store->sources;
}

int auth_store_authenticate(struct auth_store *store, const char *text, size_t len, uint64_t source,
                            struct auth_identity *out)
{
    uint64_t now_ms = clock_now_ms();
    struct jwt_cost cost = {!rate_table_allows(store->failures, source, now_ms), false, false};
    int rc = auth_authenticate_bounded(&store->sources, text, len, (int64_t)time(NULL), &cost, out);
    if (cost.public_key_checked)
        store->cost.public_key_checks++;
    if (cost.public_key_failed) {
        store->cost.public_key_failures++;
        rate_table_charge(store->failures, source, now_ms);
    }
    if (rc == AUTH_TOO_MANY_FAILURES)
        store->cost.refused_unchecked++;
    return rc;
}

void auth_store_write_metrics(const struct auth_store *store, struct evbuffer *out,
                              const char *prefix)
{
    char name[96];
    snprintf(name, sizeof name, "%s_jwt_verifications_total", prefix);
    metrics_single(out, name, "counter",
                   "JWT signatures checked, any algorithm, rechecks of live sessions included "
                   "(a token the cache vouches for is not checked)",
                   jwt_verification_count());
    snprintf(name, sizeof name, "%s_jwt_public_key_checks_total", prefix);
    metrics_single(out, name, "counter", "RS256 and ES256 signatures of clients' tokens verified",
                   store->cost.public_key_checks);
    snprintf(name, sizeof name, "%s_jwt_public_key_failures_total", prefix);
    metrics_single(out, name, "counter", "RS256 and ES256 signatures that did not verify",
                   store->cost.public_key_failures);
    snprintf(name, sizeof name, "%s_jwt_refused_unchecked_total", prefix);
    metrics_single(out, name, "counter",
                   "public-key JWTs refused without verification: their source's budget of "
                   "failed verifications was spent",
                   store->cost.refused_unchecked);
    snprintf(name, sizeof name, "%s_jwt_cached_tokens", prefix);
    metrics_single(out, name, "gauge", "tokens in the cache of verified signatures",
                   jwt_cache_count(store->jwt_cache));
}

void auth_store_reload(struct auth_store *store, const char *reason)
{
    store->reloading = true;
    store->reloaded = 0;
    watched_file_reload(store->tokens_file, reason);
    if (store->roles_file)
        watched_file_reload(store->roles_file, reason);
    if (store->secrets_file) {
        watched_file_reload(store->secrets_file, reason);
    } else if (store->public_keys && store->public_keys->count > 0) {
        char err[256];
        if (rebuild_keys(store, NULL, 0, err, sizeof err) < 0)
            log_error("JWT keys: %s; keeping the previous keys", err);
        else
            store_changed(store, AUTH_SOURCE_KEYS);
    }
    store->reloading = false;
    if (store->reloaded)
        store_changed(store, store->reloaded);
}

void auth_store_set_change_callback(struct auth_store *store,
                                    void (*changed)(void *arg, unsigned sources), void *arg)
{
    store->changed = changed;
    store->changed_arg = arg;
}

void auth_store_free(struct auth_store *store)
{
    if (!store)
        return;
    watched_file_free(store->tokens_file);
    watched_file_free(store->roles_file);
    watched_file_free(store->secrets_file);
    tokens_free(store->tokens);
    roles_free(store->roles);
    jwt_keys_free(store->keys);
    jwt_cache_free(store->jwt_cache);
    rate_table_free(store->failures);
    free(store->start_error);
    free(store->secrets_text);
    free(store);
}
