/* The subscription index (see subscriptions.h).
 *
 * Topics live in a chained hash table whose bucket count is a power of two.
 * It doubles when the load factor passes 3/4 and never shrinks: its size is
 * bounded by the most topics ever alive at once, a pointer per bucket, and
 * not shrinking avoids rehashing back and forth when a popular set of types
 * comes and goes with its subscribers. A failed resize is not an error: the
 * table stays correct with longer chains.
 *
 * Whether a session already holds a type is asked of the topic, not of the
 * session's list: each call that adds or counts first stamps the topics of
 * the session's entries with a fresh mark (one walk of its list), then
 * looks each type up in the hash table and reads the mark. A call is thus
 * linear in the types it is given plus those the session holds, where
 * walking the list for every type would be quadratic (a re-init of 1,024
 * types compared each with up to 1,024 held ones). A mark is valid only
 * within the call that set it.
 */
#include "subscriptions.h"

#include <stdlib.h>
#include <string.h>

#define SUBS_BUCKETS_INITIAL 16

struct subs_topic {
    struct subs_topic *hash_next;
    uint64_t hash;
    struct subs_entry *head, *tail; /* subscribers, in subscription order */
    size_t count;
    uint64_t mark; /* == index->mark: held by the session of the current call */
    size_t len;
    char type[]; /* len bytes, then a NUL for debuggers */
};

struct subs_index {
    struct subs_topic **buckets;
    size_t bucket_count; /* a power of two */
    size_t topic_count;
    size_t entry_count;
    uint64_t seed;
    uint64_t mark; /* the stamp of the current call (see the top of the file) */
};

/* The splitmix64 finaliser: a bijection on 64 bits with full avalanche. */
static uint64_t subs_mix(uint64_t z)
{
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

/* Absorbs the type a word at a time into a state that starts from the seed,
 * mixing after each word; the length goes in first so that types differing
 * only in trailing NULs differ. Without the seed, which inputs share a bucket
 * cannot be worked out in advance. */
static uint64_t subs_hash(uint64_t seed, const char *type, size_t len)
{
    uint64_t h = subs_mix(seed ^ ((uint64_t)len * UINT64_C(0x9e3779b97f4a7c15)));
    uint64_t word;

    while (len >= 8) {
        memcpy(&word, type, 8);
        h = subs_mix(h ^ word);
        type += 8;
        len -= 8;
    }
    if (len > 0) {
        word = 0;
        memcpy(&word, type, len);
        h = subs_mix(h ^ word);
    }
    return h;
}

static struct subs_topic **subs_bucket(const struct subs_index *index, uint64_t hash)
{
    return &index->buckets[hash & (index->bucket_count - 1)];
}

static struct subs_topic *subs_lookup(const struct subs_index *index, uint64_t hash,
                                      const char *type, size_t len)
{
    for (struct subs_topic *t = *subs_bucket(index, hash); t; t = t->hash_next)
        if (t->hash == hash && t->len == len && (len == 0 || memcmp(t->type, type, len) == 0))
            return t;
    return NULL;
}

static void subs_grow(struct subs_index *index)
{
    size_t count = index->bucket_count * 2;
    struct subs_topic **buckets;

    if (index->bucket_count > SIZE_MAX / 2 / sizeof(*buckets))
        return;
    buckets = calloc(count, sizeof(*buckets));
    if (!buckets)
        return;
    for (size_t i = 0; i < index->bucket_count; i++) {
        struct subs_topic *t = index->buckets[i], *next;
        for (; t; t = next) {
            next = t->hash_next;
            t->hash_next = buckets[t->hash & (count - 1)];
            buckets[t->hash & (count - 1)] = t;
        }
    }
    free(index->buckets);
    index->buckets = buckets;
    index->bucket_count = count;
}

static struct subs_topic *subs_topic_new(struct subs_index *index, uint64_t hash, const char *type,
                                         size_t len)
{
    struct subs_topic *t, **bucket;

    if (len > SIZE_MAX - sizeof(*t) - 1)
        return NULL;
    t = calloc(1, sizeof(*t) + len + 1);
    if (!t)
        return NULL;
    t->hash = hash;
    t->len = len;
    if (len > 0)
        memcpy(t->type, type, len);

    /* Load factor over 3/4 once this topic is in: double first. */
    if ((index->topic_count + 1) > index->bucket_count / 4 * 3)
        subs_grow(index);
    bucket = subs_bucket(index, hash);
    t->hash_next = *bucket;
    *bucket = t;
    index->topic_count++;
    return t;
}

static void subs_topic_remove(struct subs_index *index, struct subs_topic *topic)
{
    struct subs_topic **p = subs_bucket(index, topic->hash);

    while (*p != topic)
        p = &(*p)->hash_next;
    *p = topic->hash_next;
    index->topic_count--;
    free(topic);
}

struct subs_index *subs_index_new(uint64_t seed)
{
    struct subs_index *index = calloc(1, sizeof(*index));

    if (!index)
        return NULL;
    index->buckets = calloc(SUBS_BUCKETS_INITIAL, sizeof(*index->buckets));
    if (!index->buckets) {
        free(index);
        return NULL;
    }
    index->bucket_count = SUBS_BUCKETS_INITIAL;
    index->seed = seed;
    return index;
}

void subs_index_free(struct subs_index *index)
{
    if (!index)
        return;
    for (size_t i = 0; i < index->bucket_count; i++) {
        struct subs_topic *t = index->buckets[i], *next_topic;
        for (; t; t = next_topic) {
            struct subs_entry *e = t->head, *next_entry;
            for (; e; e = next_entry) {
                next_entry = e->topic_next;
                free(e);
            }
            next_topic = t->hash_next;
            free(t);
        }
    }
    free(index->buckets);
    free(index);
}

/* Stamps every topic the session holds with a fresh mark. */
static void subs_mark_held(struct subs_index *index, const struct subs_session_list *list)
{
    index->mark++;
    for (const struct subs_entry *e = list->head; e; e = e->session_next)
        e->topic->mark = index->mark;
}

/* Subscribes the session to type, which it does not hold. 0, or -1 when out
 * of memory. */
static int subs_add_new(struct subs_index *index, struct subs_session_list *list, void *session,
                        uint64_t hash, struct subs_topic *topic, const char *type, size_t len)
{
    struct subs_entry *entry;

    if (!topic) {
        topic = subs_topic_new(index, hash, type, len);
        if (!topic)
            return -1;
    }
    entry = calloc(1, sizeof(*entry));
    if (!entry) {
        if (topic->count == 0)
            subs_topic_remove(index, topic);
        return -1;
    }
    entry->topic = topic;
    entry->session = session;
    entry->topic_prev = topic->tail;
    if (topic->tail)
        topic->tail->topic_next = entry;
    else
        topic->head = entry;
    topic->tail = entry;
    topic->count++;
    topic->mark = index->mark; /* a repeat later in the same call is a duplicate */

    entry->session_next = list->head;
    list->head = entry;
    list->count++;
    index->entry_count++;
    return 0;
}

int subs_add_all(struct subs_index *index, struct subs_session_list *list, void *session,
                 char *const *types, const size_t *lens, size_t count)
{
    int added = 0;

    subs_mark_held(index, list);
    for (size_t i = 0; i < count; i++) {
        uint64_t hash = subs_hash(index->seed, types[i], lens[i]);
        struct subs_topic *topic = subs_lookup(index, hash, types[i], lens[i]);
        if (topic && topic->mark == index->mark)
            continue;
        if (subs_add_new(index, list, session, hash, topic, types[i], lens[i]) < 0)
            return -1;
        added++;
    }
    return added;
}

int subs_add(struct subs_index *index, struct subs_session_list *list, void *session,
             const char *type, size_t len)
{
    char *types[1] = {(char *)type};
    return subs_add_all(index, list, session, types, &len, 1);
}

size_t subs_count_missing(struct subs_index *index, const struct subs_session_list *list,
                          char *const *types, const size_t *lens, size_t count)
{
    size_t missing = 0;

    subs_mark_held(index, list);
    for (size_t i = 0; i < count; i++) {
        struct subs_topic *topic = subs_find(index, types[i], lens[i]);
        if (topic && topic->mark == index->mark)
            continue;
        if (topic)
            topic->mark = index->mark; /* counted once */
        missing++;
    }
    return missing;
}

void subs_remove_all(struct subs_index *index, struct subs_session_list *list)
{
    struct subs_entry *entry = list->head, *next;

    for (; entry; entry = next) {
        struct subs_topic *topic = entry->topic;

        next = entry->session_next;
        if (entry->topic_prev)
            entry->topic_prev->topic_next = entry->topic_next;
        else
            topic->head = entry->topic_next;
        if (entry->topic_next)
            entry->topic_next->topic_prev = entry->topic_prev;
        else
            topic->tail = entry->topic_prev;
        topic->count--;
        index->entry_count--;
        if (topic->count == 0)
            subs_topic_remove(index, topic);
        free(entry);
    }
    list->head = NULL;
    list->count = 0;
}

struct subs_topic *subs_find(const struct subs_index *index, const char *type, size_t len)
{
    return subs_lookup(index, subs_hash(index->seed, type, len), type, len);
}

struct subs_entry *subs_topic_first(const struct subs_topic *topic)
{
    return topic ? topic->head : NULL;
}

size_t subs_topic_count(const struct subs_topic *topic)
{
    return topic ? topic->count : 0;
}

size_t subs_index_topic_count(const struct subs_index *index)
{
    return index->topic_count;
}

size_t subs_index_entry_count(const struct subs_index *index)
{
    return index->entry_count;
}

const char *subs_topic_type(const struct subs_topic *topic, size_t *len)
{
    *len = topic->len;
    return topic->type;
}
