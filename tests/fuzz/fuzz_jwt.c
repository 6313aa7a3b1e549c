/* Fuzz target: jwt_verify on arbitrary bytes, with a fixed HS256 secret and
 * fixed ES256 (P-256) and RS256 public keys, at a fixed time.
 *
 * Each input is used three ways: as a token; as claims JSON under an HS256
 * header, signed here with the fixed secret, so that the claim checks are
 * reached past the signature; and, when it holds a newline, as a header
 * and claims pair signed the same way. Invariants checked: a verified token
 * has exactly three parts within the limits, an exp not past, a sanitised
 * subject, valid role names and patterns without repeats; a refused one
 * leaves the claims empty; a token signed with the configured secret under
 * an HS256 header never fails on its signature or algorithm; base64url
 * decoding is exact (re-encoding gives back the input). Through a cache of
 * verified tokens (jwt_verify_bounded) every token gets the answer it gets
 * without one, and once cached it keeps it when public-key checks are
 * refused; an uncached one is then refused or answered as without. The
 * input is also read as a secrets file: it yields exactly the secrets and
 * short lines that its lines (text_lines.h) make by the rules of jwt.h.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <mbedtls/md.h>

#include "core/json_text.h"
#include "auth/jwt.h"
#include "auth/jwt_cache.h"
#include "auth/roles.h"
#include "core/text_lines.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_NOW INT64_C(1700000000)
#define FUZZ_LEEWAY 30
#define FUZZ_SECRET "fuzz-secret-0123456789abcdef0123456789"

/* The seeds in tests/fuzz/corpus/jwt/ are signed with the private halves. */
static const char fuzz_ec_pem[] =
    "-----BEGIN PUBLIC KEY-----\n"
    "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE/q13SnfmlC+H/EaLgDblWGcfhJXv\n"
    "HtwP/FUq8fAdHxzJHCIlu2xF7OzE5+PSrzMTxPcIitK9+wu5oMO+wTePMg==\n"
    "-----END PUBLIC KEY-----\n";

static const char fuzz_rsa_pem[] =
    "-----BEGIN PUBLIC KEY-----\n"
    "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAmb0lPHWPURIi/+ZNx3ig\n"
    "d5wyQRolVXhzEqGTEmBRbysjmEZbfa/RjJB3Y7cQ4983M5nyVOuzcvEW3k2GrjSU\n"
    "kvMH0aWKcbpxpFfjK7sia6i3T3mJh5B92NoQzgi7VhT6CSkNzrYVsAoJFKAMg1AG\n"
    "uQi8nEWfudZnL9bZ/BalNhkvIs8v5bkx/pyccVz9CANfIe9gi0+TxeaQYO/l8hIX\n"
    "ZTBGy5poyqpxSOw6f44W8LvcVPSltLBodqimT1wlhwvksv3WJCPahLv7Djh4OZdm\n"
    "g7O9wte7EmD2POSrjngGXu21U3aJIN/tk5aC4Dg8FHPVKiosLrCVizl+dPAHld5/\n"
    "rwIDAQAB\n"
    "-----END PUBLIC KEY-----\n";

static struct jwt_keys *fuzz_keys;
static struct jwt_cache *fuzz_cache; /* kept across inputs, as in a daemon */

static void fuzz_add_pem(const char *pem)
{
    char path[] = "/tmp/fuzz_jwt_key.XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0)
        abort();
    size_t len = strlen(pem);
    if (write(fd, pem, len) != (ssize_t)len)
        abort();
    close(fd);
    char err[256];
    int status = jwt_keys_add_public_key_file(fuzz_keys, path, err, sizeof(err));
    unlink(path);
    if (status != 0) {
        fprintf(stderr, "fuzz_jwt: %s\n", err);
        abort();
    }
}

static void fuzz_init(void)
{
    if (fuzz_keys != NULL)
        return;
    fuzz_keys = jwt_keys_parse_secrets(FUZZ_SECRET "\n", strlen(FUZZ_SECRET) + 1, NULL);
    if (fuzz_keys == NULL)
        abort();
    fuzz_add_pem(fuzz_ec_pem);
    fuzz_add_pem(fuzz_rsa_pem);
    if (jwt_keys_secret_count(fuzz_keys) != 1 || jwt_keys_public_count(fuzz_keys) != 2)
        abort();
    fuzz_cache = jwt_cache_new(256);
    if (fuzz_cache == NULL)
        abort();
}

/* The cache changes the work, never the answer. */
static void fuzz_check_cached(const char *token, size_t len, const struct jwt_policy *policy,
                              int expected)
{
    struct jwt_cost cost = {false, false, false};
    if (jwt_verify_bounded(token, len, fuzz_keys, fuzz_cache, policy, FUZZ_NOW, &cost, NULL) !=
        expected)
        abort();
    if (cost.public_key_failed && expected != JWT_ERR_SIGNATURE)
        abort();
    cost.public_key_refused = true;
    int again =
        jwt_verify_bounded(token, len, fuzz_keys, fuzz_cache, policy, FUZZ_NOW, &cost, NULL);
    if (cost.public_key_checked || (again != expected && again != JWT_ERR_REFUSED) ||
        (again == JWT_ERR_REFUSED && expected == JWT_OK))
        abort();
}

static const char fuzz_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* Unpadded base64url; out has room for (len + 2) / 3 * 4 bytes. */
static size_t fuzz_b64url(const unsigned char *in, size_t len, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < len)
            v |= (uint32_t)in[i + 1] << 8;
        if (i + 2 < len)
            v |= in[i + 2];
        size_t chars = len - i >= 3 ? 4 : len - i + 1;
        for (size_t k = 0; k < chars; k++)
            out[o++] = fuzz_alphabet[(v >> (18 - 6 * k)) & 63];
    }
    return o;
}

static bool fuzz_claims_empty(const struct jwt_claims *claims)
{
    static const struct jwt_claims zero;
    return memcmp(claims, &zero, sizeof(zero)) == 0;
}

static void fuzz_check_patterns(const struct event_patterns *list, bool has)
{
    if (!has && (list->count != 0 || list->items != NULL))
        abort();
    if (list->count > JWT_MAX_LIST)
        abort();
    for (size_t i = 0; i < list->count; i++) {
        if (!event_pattern_valid(list->items[i], strlen(list->items[i])))
            abort();
        for (size_t j = 0; j < i; j++) {
            if (strcmp(list->items[i], list->items[j]) == 0)
                abort();
        }
    }
}

static int fuzz_verify(const char *token, size_t len, const struct jwt_policy *policy)
{
    struct jwt_claims claims;
    int status = jwt_verify(token, len, fuzz_keys, policy, FUZZ_NOW, &claims);
    if (status > 0 || status < JWT_ERR_NOMEM)
        abort();
    if (status != JWT_OK) {
        if (!fuzz_claims_empty(&claims))
            abort();
        return status;
    }

    if (len > JWT_MAX_LEN)
        abort();
    size_t dots = 0;
    for (size_t i = 0; i < len; i++)
        dots += token[i] == '.';
    if (dots != 2)
        abort();
    int64_t leeway = policy != NULL && policy->leeway_s > 0 ? policy->leeway_s : 0;
    /* exp is rounded down, so it may sit one second below now - leeway. */
    if (claims.exp + leeway < FUZZ_NOW)
        abort();

    size_t sub_len = strnlen(claims.subject, sizeof(claims.subject));
    if (sub_len > JWT_SUBJECT_MAX || !json_utf8_valid(claims.subject, sub_len))
        abort();
    for (size_t i = 0; i < sub_len; i++) {
        unsigned char c = (unsigned char)claims.subject[i];
        if (c < 0x20 || c == 0x7f || (c == 0xc2 && (unsigned char)claims.subject[i + 1] < 0xa0))
            abort();
    }

    if (!claims.has_roles && (claims.role_count != 0 || claims.roles != NULL))
        abort();
    if (claims.role_count > JWT_MAX_LIST)
        abort();
    for (size_t i = 0; i < claims.role_count; i++) {
        if (!role_name_valid(claims.roles[i], strlen(claims.roles[i])))
            abort();
    }
    fuzz_check_patterns(&claims.publish, claims.has_publish);
    fuzz_check_patterns(&claims.subscribe, claims.has_subscribe);

    jwt_claims_clear(&claims);
    if (!fuzz_claims_empty(&claims))
        abort();
    return status;
}

/* base64url(header) "." base64url(claims) "." HMAC with the fixed secret. */
static int fuzz_verify_signed(const unsigned char *header, size_t header_len,
                              const unsigned char *claims, size_t claims_len,
                              const struct jwt_policy *policy)
{
    static char token[2 * JWT_MAX_LEN];
    if (header_len > JWT_MAX_HEADER_LEN || claims_len > JWT_MAX_CLAIMS_LEN)
        return JWT_ERR_MALFORMED;
    size_t len = fuzz_b64url(header, header_len, token);
    token[len++] = '.';
    len += fuzz_b64url(claims, claims_len, token + len);
    unsigned char mac[32];
    if (mbedtls_md_hmac(mbedtls_md_info_from_type(MBEDTLS_MD_SHA256),
                        (const unsigned char *)FUZZ_SECRET, strlen(FUZZ_SECRET),
                        (const unsigned char *)token, len, mac) != 0)
        abort();
    token[len++] = '.';
    len += fuzz_b64url(mac, sizeof(mac), token + len);
    if (len > JWT_MAX_LEN)
        return JWT_ERR_MALFORMED;
    return fuzz_verify(token, len, policy);
}

static void fuzz_check_base64url(const uint8_t *data, size_t size)
{
    static unsigned char decoded[JWT_MAX_LEN];
    static char encoded[JWT_MAX_LEN * 2];
    if (size > JWT_MAX_LEN)
        return;
    size_t decoded_len = 0;
    if (jwt_base64url_decode((const char *)data, size, decoded, &decoded_len) != 0)
        return;
    if (decoded_len != size * 3 / 4)
        abort();
    /* Strict decoding is injective: the input is the one encoding. */
    if (fuzz_b64url(decoded, decoded_len, encoded) != size || memcmp(encoded, data, size) != 0)
        abort();
}

/* The input as a secrets file: one secret per line of 32 bytes or more
 * holding no NUL, shorter lines counted. */
static void fuzz_check_secrets_file(const char *text, size_t size)
{
    size_t secrets = 0, short_lines = 0, too_short = 0;
    struct text_lines lines;
    struct text_line line;
    text_lines_init(&lines, text, size);
    while (text_lines_next(&lines, &line)) {
        if (memchr(line.text, '\0', line.len) != NULL)
            continue;
        if (line.len < 32)
            short_lines++;
        else
            secrets++;
    }
    struct jwt_keys *keys = jwt_keys_parse_secrets(text, size, &too_short);
    if (keys == NULL)
        return; /* out of memory */
    if (jwt_keys_secret_count(keys) != secrets || too_short != short_lines)
        abort();
    jwt_keys_free(keys);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const struct jwt_policy lenient = {.leeway_s = FUZZ_LEEWAY};
    static const struct jwt_policy strict = {.leeway_s = 0, .issuer = "fuzz", .audience = "fuzz"};
    static const char hs256[] = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";
    fuzz_init();

    const char *text = (const char *)data;
    int first = fuzz_verify(text, size, &lenient);
    if (fuzz_verify(text, size, &lenient) != first)
        abort();
    fuzz_check_cached(text, size, &lenient, first);
    (void)fuzz_verify(text, size, &strict);
    (void)fuzz_verify(text, size, NULL);

    /* Signed with the configured secret under an HS256 header: neither the
     * algorithm nor the signature can be what fails. */
    int status =
        fuzz_verify_signed((const unsigned char *)hs256, strlen(hs256), data, size, &lenient);
    if (status == JWT_ERR_SIGNATURE || status == JWT_ERR_ALGORITHM)
        abort();
    (void)fuzz_verify_signed((const unsigned char *)hs256, strlen(hs256), data, size, &strict);

    const uint8_t *newline = memchr(data, '\n', size);
    if (newline != NULL) {
        size_t header_len = (size_t)(newline - data);
        (void)fuzz_verify_signed(data, header_len, newline + 1, size - header_len - 1, &lenient);
    }

    fuzz_check_base64url(data, size);
    fuzz_check_secrets_file(text, size);
    return 0;
}
