/* The live credentials of a daemon: the tokens file, the roles file, the
 * JWT secrets file and the JWT public keys, each loaded at start and kept
 * current (watched_file.h: a change takes effect within a second, without
 * a restart; SIGHUP reloads everything).
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
 * broadcast daemon can re-check live sessions (revocation).
 */
#ifndef EVS_AUTH_STORE_H
#define EVS_AUTH_STORE_H

#include <stddef.h>

#include "auth.h"
#include "config.h"

struct event_base;
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

/* Re-reads every file and key now (SIGHUP). */
void auth_store_reload(struct auth_store *store, const char *reason);

void auth_store_set_change_callback(struct auth_store *store, void (*changed)(void *arg),
                                    void *arg);

void auth_store_free(struct auth_store *store);

#endif
