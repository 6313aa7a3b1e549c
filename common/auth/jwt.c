/* JWT verification: JWS compact serialisation (RFC 7515 §7.1), HS256, RS256
 * and ES256 (RFC 7518 §3), and the registered claims of RFC 7519 §4.1.
 *
 * Order of work, chosen so that nothing unauthenticated is interpreted
 * beyond what is needed to pick the key: every length is checked before any
 * decoding, all three parts are decoded (strict base64url), the header is
 * parsed to read "alg", the signature is checked (or found in the cache of
 * verified tokens), and only then are the claims parsed and judged.
 */
#include "auth/jwt.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <mbedtls/ecdsa.h>
#include <mbedtls/error.h>
#include <mbedtls/md.h>
#include <mbedtls/pk.h>
#include <mbedtls/platform_util.h>
#include <mbedtls/sha256.h>

#include "core/constant_time.h"
#include "core/error_message.h"
#include "core/json_text.h"
#include "auth/jwt_cache.h"
#include "auth/roles.h"
#include "core/text_lines.h"

#define JWT_HMAC_LEN 32
#define JWT_ES256_SIG_LEN 64
/* The largest RSA modulus mbedTLS handles (MBEDTLS_MPI_MAX_SIZE bytes). */
#define JWT_MAX_SIG_LEN 1024
#define JWT_RSA_MIN_BITS 2048
#define JWT_SECRET_MIN_LEN 32
/* From 2^53 on, integers are not exact in a double (RFC 7493 §2.2):
 * 2^53 + 1 would read as 2^53, so that value is refused too. */
#define JWT_TIME_LIMIT 9007199254740992.0

/* One process, one thread: a plain counter (jwt_verification_count). */
static uint64_t jwt_verifications;

struct jwt_secret {
    unsigned char *bytes;
    size_t len;
};

enum jwt_alg { JWT_ALG_HS256, JWT_ALG_RS256, JWT_ALG_ES256 };

struct jwt_keys {
    struct jwt_secret *secrets;
    size_t secret_count;
    mbedtls_pk_context **publics;
    size_t public_count;
};

/* ---- keys ---- */

static struct jwt_keys *jwt_keys_new(void)
{
    return calloc(1, sizeof(struct jwt_keys));
}

void jwt_keys_free(struct jwt_keys *keys)
{
    if (keys == NULL)
        return;
    for (size_t i = 0; i < keys->secret_count; i++) {
        mbedtls_platform_zeroize(keys->secrets[i].bytes, keys->secrets[i].len);
        free(keys->secrets[i].bytes);
    }
    free(keys->secrets);
    for (size_t i = 0; i < keys->public_count; i++) {
        mbedtls_pk_free(keys->publics[i]);
        free(keys->publics[i]);
    }
    free(keys->publics);
    free(keys);
}

size_t jwt_keys_secret_count(const struct jwt_keys *keys)
{
    return keys != NULL ? keys->secret_count : 0;
}

size_t jwt_keys_public_count(const struct jwt_keys *keys)
{
    return keys != NULL ? keys->public_count : 0;
}

static int jwt_keys_add_secret(struct jwt_keys *keys, const unsigned char *secret, size_t len)
{
    if (keys->secret_count >= SIZE_MAX / sizeof(struct jwt_secret))
        return -1;
    struct jwt_secret *grown =
        realloc(keys->secrets, (keys->secret_count + 1) * sizeof(struct jwt_secret));
    if (grown == NULL)
        return -1;
    keys->secrets = grown;
    unsigned char *copy = malloc(len);
    if (copy == NULL)
        return -1;
    memcpy(copy, secret, len);
    keys->secrets[keys->secret_count].bytes = copy;
    keys->secrets[keys->secret_count].len = len;
    keys->secret_count++;
    return 0;
}

struct jwt_keys *jwt_keys_parse_secrets(const char *text, size_t len, size_t *too_short)
{
    size_t short_lines = 0;
    struct jwt_keys *keys = jwt_keys_new();
    if (keys == NULL)
        goto fail;

    /* The line rules of the tokens file (text_lines.h): line ends and the
     * blanks around a secret are an editor's, not the secret's. */
    struct text_lines lines;
    struct text_line line;
    text_lines_init(&lines, text, len);
    while (text_lines_next(&lines, &line)) {
        /* A NUL cannot come from an editor: the line is damage, not a key. */
        if (memchr(line.text, '\0', line.len) != NULL)
            continue;
        if (line.len < JWT_SECRET_MIN_LEN) {
            short_lines++;
            continue;
        }
        if (jwt_keys_add_secret(keys, (const unsigned char *)line.text, line.len) != 0)
            goto fail;
    }
    if (too_short != NULL)
        *too_short = short_lines;
    return keys;

fail:
    jwt_keys_free(keys);
    return NULL;
}

struct jwt_keys *jwt_keys_from_secret(const unsigned char *secret, size_t len)
{
    if (secret == NULL || len == 0)
        return NULL;
    struct jwt_keys *keys = jwt_keys_new();
    if (keys == NULL || jwt_keys_add_secret(keys, secret, len) != 0) {
        jwt_keys_free(keys);
        return NULL;
    }
    return keys;
}

int jwt_keys_add_public_key_file(struct jwt_keys *keys, const char *path, char *err, size_t err_len)
{
    mbedtls_pk_context *pk = calloc(1, sizeof(*pk));
    if (keys == NULL || path == NULL || pk == NULL) {
        error_message_format(err, err_len, "%s",
                             pk == NULL ? "out of memory" : "no key set or path");
        free(pk);
        return -1;
    }
    mbedtls_pk_init(pk);

    int ret = mbedtls_pk_parse_public_keyfile(pk, path);
    if (ret != 0) {
        char reason[128];
        mbedtls_strerror(ret, reason, sizeof(reason));
        error_message_format(err, err_len, "%s: not a PEM public key: %s", path, reason);
        goto fail;
    }
    switch (mbedtls_pk_get_type(pk)) {
    case MBEDTLS_PK_RSA:
        /* RFC 7518 §3.3: a key of 2048 bits or larger MUST be used. */
        if (mbedtls_pk_get_bitlen(pk) < JWT_RSA_MIN_BITS) {
            error_message_format(err, err_len, "%s: RSA key of %zu bits, at least %d required",
                                 path, mbedtls_pk_get_bitlen(pk), JWT_RSA_MIN_BITS);
            goto fail;
        }
        break;
    case MBEDTLS_PK_ECKEY:
        /* ES256 is ECDSA on P-256 only (RFC 7518 §3.4). */
        if (mbedtls_pk_ec(*pk)->grp.id != MBEDTLS_ECP_DP_SECP256R1) {
            error_message_format(err, err_len, "%s: EC key not on P-256 (ES256 needs P-256)", path);
            goto fail;
        }
        break;
    default:
        error_message_format(err, err_len, "%s: neither an RSA nor an EC public key", path);
        goto fail;
    }

    if (keys->public_count >= SIZE_MAX / sizeof(*keys->publics)) {
        error_message_format(err, err_len, "out of memory");
        goto fail;
    }
    mbedtls_pk_context **grown =
        realloc(keys->publics, (keys->public_count + 1) * sizeof(*keys->publics));
    if (grown == NULL) {
        error_message_format(err, err_len, "out of memory");
        goto fail;
    }
    keys->publics = grown;
    keys->publics[keys->public_count++] = pk;
    return 0;

fail:
    mbedtls_pk_free(pk);
    free(pk);
    return -1;
}

static bool jwt_keys_have_type(const struct jwt_keys *keys, mbedtls_pk_type_t type)
{
    for (size_t i = 0; i < keys->public_count; i++) {
        if (mbedtls_pk_get_type(keys->publics[i]) == type)
            return true;
    }
    return false;
}

/* ---- base64url ---- */

static int jwt_base64url_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '-')
        return 62;
    if (c == '_')
        return 63;
    return -1;
}

/* Bytes that len characters of unpadded base64url decode to. */
static size_t jwt_base64url_decoded_len(size_t len)
{
    size_t rest = len % 4;
    return len / 4 * 3 + (rest > 1 ? rest - 1 : 0);
}

int jwt_base64url_decode(const char *in, size_t len, unsigned char *out, size_t *out_len)
{
    /* One character holds 6 bits: it cannot end a byte on its own. */
    if (len % 4 == 1 || (in == NULL && len != 0))
        return -1;
    uint32_t acc = 0;
    unsigned bits = 0;
    size_t written = 0;
    for (size_t i = 0; i < len; i++) {
        int value = jwt_base64url_value((unsigned char)in[i]);
        if (value < 0)
            return -1;
        acc = (acc << 6) | (uint32_t)value;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[written++] = (unsigned char)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    /* RFC 4648 §3.5: the pad bits of the last character are zero; any other
     * value would give one byte string several encodings. */
    if (acc != 0)
        return -1;
    *out_len = written;
    return 0;
}

/* ---- JSON ---- */

/* true when a string of the JSON text holds \u0000: cJSON would keep the
 * escaped NUL and every C string comparison would stop at it, so
 * "admin\u0000x" would read as "admin". Bounded by len, no recursion. */
static bool jwt_json_has_escaped_nul(const char *text, size_t len)
{
    bool in_string = false;
    for (size_t i = 0; i < len; i++) {
        if (text[i] == '"') {
            in_string = !in_string;
        } else if (in_string && text[i] == '\\' && i + 1 < len) {
            if (text[i + 1] == 'u' && len - i >= 6 && memcmp(text + i + 2, "0000", 4) == 0)
                return true;
            i++;
        }
    }
    return false;
}

/* Parses text[0..len) as one JSON object with unique member names (RFC 7515
 * §4 and RFC 7519 §4 allow refusing duplicates, which removes any doubt
 * about which value another parser would see). NULL when it is not. */
static cJSON *jwt_parse_object(const char *text, size_t len)
{
    if (memchr(text, '\0', len) != NULL || !json_utf8_valid(text, len) ||
        jwt_json_has_escaped_nul(text, len))
        return NULL;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, len, &end, false);
    if (root == NULL)
        return NULL;
    if (!cJSON_IsObject(root) || end == NULL || end < text || end > text + len)
        goto fail;
    /* Only JSON blanks may follow the object (RFC 8259 §2). */
    for (const char *p = end; p < text + len; p++) {
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r')
            goto fail;
    }
    for (const cJSON *a = root->child; a != NULL; a = a->next) {
        if (a->string == NULL)
            goto fail;
        for (const cJSON *b = a->next; b != NULL; b = b->next) {
            if (b->string != NULL && strcmp(a->string, b->string) == 0)
                goto fail;
        }
    }
    return root;

fail:
    cJSON_Delete(root);
    return NULL;
}

/* ---- signatures ---- */

static int jwt_verify_hs256(const struct jwt_keys *keys, const unsigned char *input,
                            size_t input_len, const unsigned char *sig, size_t sig_len)
{
    const mbedtls_md_info_t *md = mbedtls_md_info_from_type(MBEDTLS_MD_SHA256);
    if (md == NULL)
        return JWT_ERR_NOMEM;
    /* The length is public (RFC 7518 §3.2), so refusing on it leaks nothing. */
    if (sig_len != JWT_HMAC_LEN)
        return JWT_ERR_SIGNATURE;

    /* Every secret is tried in full, so the time depends on the number of
     * secrets, never on which one (if any) matched. */
    volatile unsigned found = 0;
    for (size_t i = 0; i < keys->secret_count; i++) {
        unsigned char mac[JWT_HMAC_LEN];
        if (mbedtls_md_hmac(md, keys->secrets[i].bytes, keys->secrets[i].len, input, input_len,
                            mac) != 0)
            continue;
        found |= constant_time_equal(mac, sig, JWT_HMAC_LEN);
        mbedtls_platform_zeroize(mac, sizeof(mac));
    }
    return found != 0 ? JWT_OK : JWT_ERR_SIGNATURE;
}

static int jwt_verify_rs256(const struct jwt_keys *keys, const unsigned char hash[32],
                            const unsigned char *sig, size_t sig_len)
{
    for (size_t i = 0; i < keys->public_count; i++) {
        mbedtls_pk_context *pk = keys->publics[i];
        if (mbedtls_pk_get_type(pk) != MBEDTLS_PK_RSA)
            continue;
        /* RSASSA-PKCS1-v1_5 (RFC 7518 §3.3): the padding of a parsed key.
         * pk_verify also refuses a signature longer than the modulus. */
        if (mbedtls_pk_verify(pk, MBEDTLS_MD_SHA256, hash, 32, sig, sig_len) == 0)
            return JWT_OK;
    }
    return JWT_ERR_SIGNATURE;
}

static int jwt_verify_es256(const struct jwt_keys *keys, const unsigned char hash[32],
                            const unsigned char *sig, size_t sig_len)
{
    /* RFC 7518 §3.4: the signature is R || S, 32 bytes each, not DER. */
    if (sig_len != JWT_ES256_SIG_LEN)
        return JWT_ERR_SIGNATURE;

    int status = JWT_ERR_SIGNATURE;
    mbedtls_mpi r, s;
    mbedtls_mpi_init(&r);
    mbedtls_mpi_init(&s);
    if (mbedtls_mpi_read_binary(&r, sig, 32) != 0 ||
        mbedtls_mpi_read_binary(&s, sig + 32, 32) != 0) {
        status = JWT_ERR_NOMEM;
        goto done;
    }
    for (size_t i = 0; i < keys->public_count; i++) {
        mbedtls_pk_context *pk = keys->publics[i];
        if (mbedtls_pk_get_type(pk) != MBEDTLS_PK_ECKEY)
            continue;
        mbedtls_ecp_keypair *ec = mbedtls_pk_ec(*pk);
        if (ec == NULL || ec->grp.id != MBEDTLS_ECP_DP_SECP256R1)
            continue;
        /* ecdsa_verify refuses r or s outside 1..n-1 (SEC 1 §4.1.4). */
        if (mbedtls_ecdsa_verify(&ec->grp, hash, 32, &ec->Q, &r, &s) == 0) {
            status = JWT_OK;
            break;
        }
    }
done:
    mbedtls_mpi_free(&r);
    mbedtls_mpi_free(&s);
    return status;
}

/* ---- claims ---- */

/* Reads a NumericDate (RFC 7519 §2): a JSON number, integral or not.
 * Returns 1 when present and usable, 0 when absent, -1 otherwise. */
static int jwt_claim_time(const cJSON *root, const char *name, double *value)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(root, name);
    if (item == NULL)
        return 0;
    if (!cJSON_IsNumber(item))
        return -1;
    double v = item->valuedouble;
    if (!isfinite(v) || v >= JWT_TIME_LIMIT || v <= -JWT_TIME_LIMIT)
        return -1;
    *value = v;
    return 1;
}

/* An optional string claim: 1 present (sets *out), 0 absent, -1 not a string. */
static int jwt_claim_string(const cJSON *root, const char *name, const char **out)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(root, name);
    if (item == NULL)
        return 0;
    if (!cJSON_IsString(item) || item->valuestring == NULL)
        return -1;
    *out = item->valuestring;
    return 1;
}

/* RFC 7519 §4.1.3: "aud" is one string or an array of strings; the
 * verifier's audience must be among them. */
static int jwt_check_audience(const cJSON *root, const char *audience)
{
    bool required = audience != NULL && audience[0] != '\0';
    const cJSON *aud = cJSON_GetObjectItemCaseSensitive(root, "aud");
    if (aud == NULL)
        return required ? JWT_ERR_CLAIMS : JWT_OK;
    if (cJSON_IsString(aud))
        return !required || strcmp(aud->valuestring, audience) == 0 ? JWT_OK : JWT_ERR_CLAIMS;
    if (!cJSON_IsArray(aud))
        return JWT_ERR_CLAIMS;
    bool found = false;
    size_t count = 0;
    for (const cJSON *item = aud->child; item != NULL; item = item->next) {
        if (++count > JWT_MAX_LIST || !cJSON_IsString(item))
            return JWT_ERR_CLAIMS;
        if (required && strcmp(item->valuestring, audience) == 0)
            found = true;
    }
    return !required || found ? JWT_OK : JWT_ERR_CLAIMS;
}

/* Copies a subject for log lines: at most JWT_SUBJECT_MAX bytes, cut only
 * between characters, with C0, DEL and C1 controls (which a terminal may
 * obey) and broken sequences replaced by '?'. */
static void jwt_copy_subject(char *out, const char *in)
{
    size_t o = 0;
    const unsigned char *p = (const unsigned char *)in;
    while (*p != '\0') {
        unsigned char c = *p;
        size_t seq = c < 0x80    ? 1
                     : c >= 0xf8 ? 0
                     : c >= 0xf0 ? 4
                     : c >= 0xe0 ? 3
                     : c >= 0xc0 ? 2
                                 : 0;
        bool broken = seq == 0;
        for (size_t k = 1; k < seq && !broken; k++)
            broken = (p[k] & 0xc0) != 0x80;
        bool control = c < 0x20 || c == 0x7f || (c == 0xc2 && seq == 2 && !broken && p[1] < 0xa0);
        if (broken || control) {
            if (o + 1 > JWT_SUBJECT_MAX)
                break;
            out[o++] = '?';
            p += broken ? 1 : seq;
            continue;
        }
        if (o + seq > JWT_SUBJECT_MAX)
            break;
        memcpy(out + o, p, seq);
        o += seq;
        p += seq;
    }
    out[o] = '\0';
}

/* Reads an optional array-of-strings claim with at most JWT_MAX_LIST
 * entries. Returns 1 present, 0 absent, -1 wrong shape. */
static int jwt_claim_array(const cJSON *root, const char *name, const cJSON **array)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(root, name);
    if (item == NULL)
        return 0;
    if (!cJSON_IsArray(item))
        return -1;
    size_t count = 0;
    for (const cJSON *entry = item->child; entry != NULL; entry = entry->next) {
        if (++count > JWT_MAX_LIST || !cJSON_IsString(entry) || entry->valuestring == NULL)
            return -1;
    }
    *array = item;
    return 1;
}

static int jwt_read_roles(const cJSON *root, struct jwt_claims *out)
{
    const cJSON *array = NULL;
    int present = jwt_claim_array(root, "roles", &array);
    if (present <= 0)
        return present < 0 ? JWT_ERR_CLAIMS : JWT_OK;
    out->has_roles = true;
    size_t count = (size_t)cJSON_GetArraySize(array);
    if (count == 0)
        return JWT_OK;
    out->roles = calloc(count, sizeof(char *));
    if (out->roles == NULL)
        return JWT_ERR_NOMEM;
    for (const cJSON *entry = array->child; entry != NULL; entry = entry->next) {
        size_t len = strlen(entry->valuestring);
        if (!role_name_valid(entry->valuestring, len))
            return JWT_ERR_CLAIMS;
        char *copy = malloc(len + 1);
        if (copy == NULL)
            return JWT_ERR_NOMEM;
        memcpy(copy, entry->valuestring, len + 1);
        out->roles[out->role_count++] = copy;
    }
    return JWT_OK;
}

static int jwt_read_patterns(const cJSON *root, const char *name, struct event_patterns *list,
                             bool *has)
{
    const cJSON *array = NULL;
    int present = jwt_claim_array(root, name, &array);
    if (present <= 0)
        return present < 0 ? JWT_ERR_CLAIMS : JWT_OK;
    *has = true;
    for (const cJSON *entry = array->child; entry != NULL; entry = entry->next) {
        size_t len = strlen(entry->valuestring);
        if (!event_pattern_valid(entry->valuestring, len))
            return JWT_ERR_CLAIMS;
        if (event_patterns_add(list, entry->valuestring, len) != 0)
            return JWT_ERR_NOMEM;
    }
    return JWT_OK;
}

static int jwt_check_claims(const cJSON *root, const struct jwt_policy *policy, int64_t now,
                            struct jwt_claims *out)
{
    double exp = 0, nbf = 0, iat = 0;
    int has_exp = jwt_claim_time(root, "exp", &exp);
    int has_nbf = jwt_claim_time(root, "nbf", &nbf);
    int has_iat = jwt_claim_time(root, "iat", &iat);
    if (has_exp != 1 || has_nbf < 0 || has_iat < 0)
        return JWT_ERR_CLAIMS;

    double leeway = 0;
    if (policy != NULL && policy->leeway_s > 0)
        leeway = (double)policy->leeway_s;
    double t = (double)now;
    /* RFC 7519 §4.1.4: valid only while now is before exp. */
    if (t >= exp + leeway)
        return JWT_ERR_EXPIRED;
    /* §4.1.5: valid from nbf on; an iat in the future is as suspect. */
    if (has_nbf == 1 && t + leeway < nbf)
        return JWT_ERR_NOT_YET_VALID;
    if (has_iat == 1 && iat > t + leeway)
        return JWT_ERR_NOT_YET_VALID;

    const char *iss = NULL, *sub = NULL;
    int has_iss = jwt_claim_string(root, "iss", &iss);
    int has_sub = jwt_claim_string(root, "sub", &sub);
    if (has_iss < 0 || has_sub < 0)
        return JWT_ERR_CLAIMS;
    const char *issuer = policy != NULL ? policy->issuer : NULL;
    if (issuer != NULL && issuer[0] != '\0' && (has_iss != 1 || strcmp(iss, issuer) != 0))
        return JWT_ERR_CLAIMS;
    int status = jwt_check_audience(root, policy != NULL ? policy->audience : NULL);
    if (status != JWT_OK)
        return status;

    /* Rounded down: a session ends no later than the token says. |exp| is
     * below 2^53, so the conversion is exact for the integral part. */
    out->exp = (int64_t)exp;
    if ((double)out->exp > exp)
        out->exp--;
    if (has_sub == 1)
        jwt_copy_subject(out->subject, sub);
    status = jwt_read_roles(root, out);
    if (status == JWT_OK)
        status = jwt_read_patterns(root, "publish", &out->publish, &out->has_publish);
    if (status == JWT_OK)
        status = jwt_read_patterns(root, "subscribe", &out->subscribe, &out->has_subscribe);
    return status;
}

/* ---- verification ---- */

static int jwt_check_header(const cJSON *header, const struct jwt_keys *keys, enum jwt_alg *alg)
{
    /* RFC 7515 §4.1.11: an extension the recipient does not understand
     * makes the JWS invalid, and this verifier understands none. */
    if (cJSON_GetObjectItemCaseSensitive(header, "crit") != NULL)
        return JWT_ERR_MALFORMED;
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(header, "alg");
    if (!cJSON_IsString(item) || item->valuestring == NULL)
        return JWT_ERR_ALGORITHM;
    /* Algorithm names are case-sensitive (RFC 7515 §4.1.1). Each is
     * accepted only with its own kind of key: that is what keeps a public
     * key from ever being used as an HMAC secret. */
    const char *name = item->valuestring;
    if (strcmp(name, "HS256") == 0 && keys->secret_count > 0)
        *alg = JWT_ALG_HS256;
    else if (strcmp(name, "RS256") == 0 && jwt_keys_have_type(keys, MBEDTLS_PK_RSA))
        *alg = JWT_ALG_RS256;
    else if (strcmp(name, "ES256") == 0 && jwt_keys_have_type(keys, MBEDTLS_PK_ECKEY))
        *alg = JWT_ALG_ES256;
    else
        return JWT_ERR_ALGORITHM;
    return JWT_OK;
}

/* Checks the signature of the signing input (RFC 7515 §5.2: the first two
 * parts as sent) with the algorithm the header named, unless the cache
 * vouches for the token. */
static int jwt_check_signature(const char *token, size_t len, size_t input_len, enum jwt_alg alg,
                               const struct jwt_keys *keys, struct jwt_cache *cache,
                               const unsigned char *sig, size_t sig_len, struct jwt_cost *cost)
{
    const unsigned char *input = (const unsigned char *)token;
    unsigned char digest[JWT_CACHE_DIGEST_LEN];
    bool cacheable = cache != NULL && jwt_cache_digest(token, len, digest) == 0;
    int status;

    if (cacheable && jwt_cache_contains(cache, digest))
        return JWT_OK;
    jwt_verifications++;
    if (alg == JWT_ALG_HS256) {
        status = jwt_verify_hs256(keys, input, input_len, sig, sig_len);
    } else {
        unsigned char hash[32];
        if (cost != NULL && cost->public_key_refused)
            return JWT_ERR_REFUSED;
        if (mbedtls_sha256_ret(input, input_len, hash, 0) != 0)
            return JWT_ERR_NOMEM;
        status = alg == JWT_ALG_RS256 ? jwt_verify_rs256(keys, hash, sig, sig_len)
                                      : jwt_verify_es256(keys, hash, sig, sig_len);
        if (cost != NULL) {
            cost->public_key_checked = true;
            cost->public_key_failed = status == JWT_ERR_SIGNATURE;
        }
    }
    if (status == JWT_OK && cacheable)
        jwt_cache_insert(cache, digest);
    return status;
}

int jwt_verify(const char *token, size_t len, const struct jwt_keys *keys,
               const struct jwt_policy *policy, int64_t now, struct jwt_claims *claims)
{
    return jwt_verify_bounded(token, len, keys, NULL, policy, now, NULL, claims);
}

int jwt_verify_bounded(const char *token, size_t len, const struct jwt_keys *keys,
                       struct jwt_cache *cache, const struct jwt_policy *policy, int64_t now,
                       struct jwt_cost *cost, struct jwt_claims *claims)
{
    unsigned char header_text[JWT_MAX_HEADER_LEN + 1];
    unsigned char claims_text[JWT_MAX_CLAIMS_LEN + 1];
    unsigned char sig[JWT_MAX_SIG_LEN + 1];
    size_t header_len, claims_len, sig_len;
    struct jwt_claims result;
    cJSON *header = NULL, *body = NULL;
    int status = JWT_ERR_MALFORMED;
    enum jwt_alg alg = JWT_ALG_HS256;

    memset(&result, 0, sizeof(result));
    if (cost != NULL)
        cost->public_key_checked = cost->public_key_failed = false;
    if (claims != NULL)
        memset(claims, 0, sizeof(*claims));
    if (keys == NULL)
        return JWT_ERR_ALGORITHM;
    if (token == NULL || len == 0 || len > JWT_MAX_LEN)
        return JWT_ERR_MALFORMED;

    /* RFC 7515 §7.1: exactly three parts. Five would be a JWE. */
    const char *dot1 = memchr(token, '.', len);
    const char *dot2 =
        dot1 != NULL ? memchr(dot1 + 1, '.', len - (size_t)(dot1 + 1 - token)) : NULL;
    if (dot2 == NULL || memchr(dot2 + 1, '.', len - (size_t)(dot2 + 1 - token)) != NULL)
        return JWT_ERR_MALFORMED;
    const char *parts[3] = {token, dot1 + 1, dot2 + 1};
    size_t part_lens[3] = {(size_t)(dot1 - token), (size_t)(dot2 - dot1 - 1),
                           len - (size_t)(dot2 + 1 - token)};
    if (jwt_base64url_decoded_len(part_lens[0]) > JWT_MAX_HEADER_LEN ||
        jwt_base64url_decoded_len(part_lens[1]) > JWT_MAX_CLAIMS_LEN ||
        jwt_base64url_decoded_len(part_lens[2]) > JWT_MAX_SIG_LEN)
        return JWT_ERR_MALFORMED;
    if (jwt_base64url_decode(parts[0], part_lens[0], header_text, &header_len) != 0 ||
        jwt_base64url_decode(parts[1], part_lens[1], claims_text, &claims_len) != 0 ||
        jwt_base64url_decode(parts[2], part_lens[2], sig, &sig_len) != 0)
        return JWT_ERR_MALFORMED;

    header = jwt_parse_object((const char *)header_text, header_len);
    if (header == NULL)
        goto done;
    status = jwt_check_header(header, keys, &alg);
    if (status != JWT_OK)
        goto done;

    status = jwt_check_signature(token, len, (size_t)(dot2 - token), alg, keys, cache, sig, sig_len,
                                 cost);
    if (status != JWT_OK)
        goto done;

    body = jwt_parse_object((const char *)claims_text, claims_len);
    if (body == NULL) {
        status = JWT_ERR_MALFORMED;
        goto done;
    }
    status = jwt_check_claims(body, policy, now, &result);

done:
    cJSON_Delete(header);
    cJSON_Delete(body);
    if (status == JWT_OK && claims != NULL)
        *claims = result;
    else
        jwt_claims_clear(&result);
    return status;
}

void jwt_claims_clear(struct jwt_claims *claims)
{
    if (claims == NULL)
        return;
    for (size_t i = 0; i < claims->role_count; i++)
        free(claims->roles[i]);
    free(claims->roles);
    event_patterns_clear(&claims->publish);
    event_patterns_clear(&claims->subscribe);
    memset(claims, 0, sizeof(*claims));
}

int64_t jwt_end_time(int64_t exp, const struct jwt_policy *policy)
{
    int64_t leeway = policy != NULL && policy->leeway_s > 0 ? policy->leeway_s : 0;
    int64_t end;
    if (__builtin_add_overflow(exp, leeway, &end))
        return INT64_MAX; /* leeway is positive: only the top can be passed */
    return end;
}

uint64_t jwt_verification_count(void)
{
    return jwt_verifications;
}

const char *jwt_status_text(int status)
{
    switch (status) {
    case JWT_OK:
        return "ok";
    case JWT_ERR_MALFORMED:
        return "malformed token";
    case JWT_ERR_ALGORITHM:
        return "algorithm not accepted";
    case JWT_ERR_SIGNATURE:
        return "bad signature";
    case JWT_ERR_EXPIRED:
        return "token expired";
    case JWT_ERR_NOT_YET_VALID:
        return "token not yet valid";
    case JWT_ERR_CLAIMS:
        return "claims refused";
    case JWT_ERR_NOMEM:
        return "out of memory";
    case JWT_ERR_REFUSED:
        return "signature left unchecked";
    default:
        return "unknown error";
    }
}
