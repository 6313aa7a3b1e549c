/* The live tokens file: loads it, re-reads it when it changes (checked
 * every TOKEN_STORE_POLL_MS, so a change takes effect within a second, with
 * or without a restart) and on request (SIGHUP). A file that disappears or
 * becomes unreadable revokes every token. Polling stat() rather than inotify
 * follows replaced files and symlink swaps (as Kubernetes secrets and
 * editors that rename do) at the cost of a few syscalls a second.
 */
#ifndef EVS_TOKEN_STORE_H
#define EVS_TOKEN_STORE_H

#include "tokens.h"

#define TOKEN_STORE_POLL_MS 250

struct event_base;
struct token_store;

/* Loads path now (logging what it found) and starts watching it. The path
 * is copied. Returns NULL only when out of memory. */
struct token_store *token_store_new(struct event_base *base, const char *path);

/* The current set; never NULL. Borrowed: valid until the next reload, that
 * is, until control returns to the event loop. */
const struct tokens *token_store_tokens(const struct token_store *store);

/* Re-reads the file now; reason is for the log line ("SIGHUP"). */
void token_store_reload(struct token_store *store, const char *reason);

void token_store_free(struct token_store *store);

#endif
