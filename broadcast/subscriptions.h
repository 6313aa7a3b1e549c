/* The subscription index: event type -> subscribed sessions, and session ->
 * its types, so that subscribing, dropping a closed session and fanning out
 * one event each cost O(subscribers involved), never a scan of every
 * connection.
 *
 * Each (session, type) pair is one struct subs_entry that sits in two
 * lists: the topic's doubly linked list of subscribers (for fan-out and O(1)
 * removal) and the session's singly linked list of its entries (for dropping
 * them all when the session ends). A topic exists while it has subscribers.
 * Types are hashed with a per-index random seed (SipHash-style keyed hash is
 * not needed: subscribers are authenticated, but the seed keeps collisions
 * unpredictable). Pure: no I/O, no libevent.
 *
 * Not re-entrant during fan-out: do not add or remove entries of a topic
 * while iterating it. The session code defers closes past the iteration.
 * Adding many types at once, and counting those a session lacks, cost time
 * linear in the types given plus the types the session holds.
 */
#ifndef EVS_SUBSCRIPTIONS_H
#define EVS_SUBSCRIPTIONS_H

#include <stddef.h>
#include <stdint.h>

struct subs_index;
struct subs_topic;

struct subs_entry {
    struct subs_topic *topic;
    void *session; /* borrowed: the subscriber that owns this entry */
    struct subs_entry *topic_prev, *topic_next;
    struct subs_entry *session_next;
};

/* Embedded in each session; zero-initialised means "no subscriptions". */
struct subs_session_list {
    struct subs_entry *head;
    size_t count;
};

struct subs_index *subs_index_new(uint64_t seed);
/* Frees the index and every topic and entry still in it. NULL is a no-op. */
void subs_index_free(struct subs_index *index);

/* Subscribes session (whose list is *list) to type[0..len).
 * Returns 1 when added, 0 when it was already subscribed, -1 when out of memory. */
int subs_add(struct subs_index *index, struct subs_session_list *list, void *session,
             const char *type, size_t len);

/* Subscribes session to each of types[0..count) (lengths in lens) that it
 * does not hold yet, in order; a type repeated in types is added once.
 * Returns how many were added, or -1 when out of memory (those added until
 * then stay). Linear in count plus the types the session holds. */
int subs_add_all(struct subs_index *index, struct subs_session_list *list, void *session,
                 char *const *types, const size_t *lens, size_t count);

/* How many of types[0..count) the session does not hold: what subs_add_all
 * would add, except that a type nobody subscribes to counts each time it is
 * repeated (never fewer than would be added). Linear, as subs_add_all. */
size_t subs_count_missing(struct subs_index *index, const struct subs_session_list *list,
                          char *const *types, const size_t *lens, size_t count);

/* Drops every subscription in *list (and topics left empty); *list is reset. */
void subs_remove_all(struct subs_index *index, struct subs_session_list *list);

/* The topic for type[0..len), or NULL when nobody subscribes to it. */
struct subs_topic *subs_find(const struct subs_index *index, const char *type, size_t len);

/* Fan-out iteration: for (e = subs_topic_first(t); e; e = e->topic_next)
 * Subscribers come in subscription order: a new one is appended at the tail. */
struct subs_entry *subs_topic_first(const struct subs_topic *topic);
size_t subs_topic_count(const struct subs_topic *topic);
/* The topic's event type (NUL-terminated), its length in *len. */
const char *subs_topic_type(const struct subs_topic *topic, size_t *len);

size_t subs_index_topic_count(const struct subs_index *index); /* distinct types */
size_t subs_index_entry_count(const struct subs_index *index); /* (session, type) pairs */

#endif
