/* The cache of verified tokens (see jwt_cache.h): a set-associative table
 * of digests, indexed by the digest's first bytes (SHA-256 output is
 * uniform, and only tokens with a valid signature get in, so nobody can
 * aim at one set), each set evicting its least recently used entry.
 */
#include "auth/jwt_cache.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <mbedtls/sha256.h>

#define JWT_CACHE_WAYS 4

struct jwt_cache_entry {
    unsigned char digest[JWT_CACHE_DIGEST_LEN];
    uint64_t used; /* 0: empty; else the cache's clock at the last use */
};

struct jwt_cache {
    size_t set_count; /* a power of two */
    size_t count;
    uint64_t clock;
    struct jwt_cache_entry *entries;
};

struct jwt_cache *jwt_cache_new(size_t capacity)
{
    struct jwt_cache *cache = calloc(1, sizeof *cache);
    size_t sets = 1;

    if (!cache)
        return NULL;
    while (sets * JWT_CACHE_WAYS < capacity && sets < SIZE_MAX / 2 / JWT_CACHE_WAYS)
        sets *= 2;
    cache->entries = calloc(sets * JWT_CACHE_WAYS, sizeof *cache->entries);
    if (!cache->entries) {
        free(cache);
        return NULL;
    }
    cache->set_count = sets;
    return cache;
}

void jwt_cache_free(struct jwt_cache *cache)
{
    if (!cache)
        return;
    free(cache->entries);
    free(cache);
}

int jwt_cache_digest(const char *token, size_t len, unsigned char digest[JWT_CACHE_DIGEST_LEN])
{
    return mbedtls_sha256_ret((const unsigned char *)token, len, digest, 0) == 0 ? 0 : -1;
}

static struct jwt_cache_entry *jwt_cache_set(const struct jwt_cache *cache,
                                             const unsigned char digest[JWT_CACHE_DIGEST_LEN])
{
    uint64_t index;
    memcpy(&index, digest, sizeof index);
    return &cache->entries[(size_t)(index & (cache->set_count - 1)) * JWT_CACHE_WAYS];
}

bool jwt_cache_contains(struct jwt_cache *cache, const unsigned char digest[JWT_CACHE_DIGEST_LEN])
{
    struct jwt_cache_entry *set = jwt_cache_set(cache, digest);
    for (size_t i = 0; i < JWT_CACHE_WAYS; i++) {
        if (set[i].used && memcmp(set[i].digest, digest, JWT_CACHE_DIGEST_LEN) == 0) {
            set[i].used = ++cache->clock;
            return true;
        }
    }
    return false;
}

void jwt_cache_insert(struct jwt_cache *cache, const unsigned char digest[JWT_CACHE_DIGEST_LEN])
{
    struct jwt_cache_entry *set = jwt_cache_set(cache, digest), *slot = &set[0];
    for (size_t i = 0; i < JWT_CACHE_WAYS; i++) {
        if (set[i].used && memcmp(set[i].digest, digest, JWT_CACHE_DIGEST_LEN) == 0) {
            set[i].used = ++cache->clock;
            return;
        }
        if (set[i].used < slot->used)
            slot = &set[i]; /* an empty one (0) or the least recently used */
    }
    if (!slot->used)
        cache->count++;
    memcpy(slot->digest, digest, JWT_CACHE_DIGEST_LEN);
    slot->used = ++cache->clock;
}

void jwt_cache_invalidate(struct jwt_cache *cache)
{
    if (!cache)
        return;
    memset(cache->entries, 0, cache->set_count * JWT_CACHE_WAYS * sizeof *cache->entries);
    cache->count = 0;
}

size_t jwt_cache_count(const struct jwt_cache *cache)
{
    return cache ? cache->count : 0;
}
