/* The live credentials of a daemon: the tokens file, the roles file, the
 * JWT secrets file and the JWT public keys, each loaded at start and kept
 * current (watched_file.h: a change takes effect once the file is whole,
 * 250 to 500 ms after its last write, without a restart; SIGHUP reloads
 * everything).
 *
 * Failure rules. Tokens file: missing or unreadable revokes every token
 * (logged); at start the daemon runs and rejects every Basic request. Roles
 * and secrets files (optional): at start a configured file that cannot be
 * read or parsed stops the daemon (exit 2, so that a typo never silently
 * changes rights); later, a file that disappears grants nothing, and one
 * that fails to parse is logged and the previous version kept. Public keys
 * are read at start (a bad one stops the daemon) and on SIGHUP.
 *
 * The change callback runs after any of them changed, so that the
 * broadcast daemon can re-check live sessions (revocation), with the
 * AUTH_SOURCE_* bits of what was reloaded: once per file change found by
 * the watcher, and once per auth_store_reload whatever it reloaded.
 *
 * The cost of checking clients' credentials is bounded here too. Tokens
 * whose signature verified are cached (jwt_cache.h; forgotten whenever the
 * keys change, before the change callback runs, so that a recheck verifies
 * under the new keys), so a JWT presented again costs no second RSA or ECDSA
 * verification. And each client network (net_source_key) has a budget of
 * failed public-key verifications, AUTH_STORE_FAILURE_BURST at once and
 * then one per AUTH_STORE_FAILURE_INTERVAL_MS: past it, a public-key JWT
 * from there that is not in the cache is refused unchecked
 * (AUTH_TOO_MANY_FAILURES) until the budget refills. Only failures are
 * charged, so a client sending valid tokens is never held back, and Basic
 * tokens, HS256 tokens and cached JWTs are never refused for the budget.
 */
#ifndef EVS_AUTH_STORE_H
#define EVS_AUTH_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "auth/auth.h"
#include "core/config.h"

struct event_base;
struct evbuffer;
struct auth_store;

struct auth_store_config {
    const char *tokens_file;
    const char *roles_file;                 /* NULL or "": no roles */
    const char *jwt_secrets_file;           /* NULL or "": no HS256 secrets */
    const struct cfg_list *jwt_public_keys; /* PEM files; may be NULL */
    struct jwt_policy jwt_policy;           /* strings borrowed for the store's life */
};

/* Returns NULL with a one-line reason in err (exit 2 material). */
struct auth_store *auth_store_new(struct event_base *base, const struct auth_store_config *config,
                                  char *err, size_t err_len);

/* The current sources; borrowed until control returns to the event loop. */
const struct auth_sources *auth_store_sources(const struct auth_store *store);

#define AUTH_STORE_JWT_CACHE_ENTRIES 4096
#define AUTH_STORE_FAILURE_BURST 10
#define AUTH_STORE_FAILURE_INTERVAL_MS 200
#define AUTH_STORE_FAILURE_SOURCES 4096 /* networks tracked at once */

/* Authenticates the credential text[0..len) of a client from source
 * (net_source_key) now, as auth_authenticate does, within the failure
 * budget of source: AUTH_TOO_MANY_FAILURES when it is spent. */
int auth_store_authenticate(struct auth_store *store, const char *text, size_t len, uint64_t source,
                            struct auth_identity *out);

/* Writes what credential checks have cost, in the Prometheus text format:
 * <prefix>_jwt_verifications_total (jwt_verification_count),
 * <prefix>_jwt_public_key_checks_total, <prefix>_jwt_public_key_failures_total,
 * <prefix>_jwt_refused_unchecked_total and <prefix>_jwt_cached_tokens. */
void auth_store_write_metrics(const struct auth_store *store, struct evbuffer *out,
                              const char *prefix);

/* Re-reads every file and key now (SIGHUP); the change callback then runs
 * once, after all of them were read. */
void auth_store_reload(struct auth_store *store, const char *reason);

/* changed gets the AUTH_SOURCE_* bits of what was reloaded. */
void auth_store_set_change_callback(struct auth_store *store,
                                    void (*changed)(void *arg, unsigned sources), void *arg);

void auth_store_free(struct auth_store *store);

#endif
