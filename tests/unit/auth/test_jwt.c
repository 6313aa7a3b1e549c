/* Unit tests for common/auth/jwt.c: the RFC 7515 A.1 known answer, tokens signed
 * here with mbedTLS (HS256, RS256 with a generated RSA key, ES256 with a
 * generated P-256 key), and every rejection.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include <mbedtls/base64.h>
#include <mbedtls/ctr_drbg.h>
#include <mbedtls/ecdsa.h>
#include <mbedtls/entropy.h>
#include <mbedtls/md.h>
#include <mbedtls/pk.h>
#include <mbedtls/rsa.h>
#include <mbedtls/sha256.h>

#include "auth/jwt.h"
#include "auth/jwt_cache.h"

#define NOW INT64_C(1700000000)
#define LEEWAY 30
#define SECRET_A "secret-A-0123456789abcdef0123456789abcdef"
#define SECRET_B "secret-B-fedcba9876543210fedcba9876543210"
#define SECRET_C "secret-C-not-configured-anywhere-000000000"
#define HS256 "{\"alg\":\"HS256\",\"typ\":\"JWT\"}"
#define RS256 "{\"alg\":\"RS256\",\"typ\":\"JWT\"}"
#define ES256 "{\"alg\":\"ES256\",\"typ\":\"JWT\"}"

/* Keys generated once for the whole group. */
static struct {
    mbedtls_entropy_context entropy;
    mbedtls_ctr_drbg_context drbg;
    mbedtls_pk_context rsa;
    mbedtls_pk_context ec;
    char dir[64];
    char rsa_path[96];
    char ec_path[96];
    char rsa_small_path[96];
    char p384_path[96];
    char garbage_path[96];
    char rsa_pem[2048];
    struct jwt_keys *secrets;  /* SECRET_A */
    struct jwt_keys *publics;  /* the RSA and EC keys only */
    struct jwt_keys *rsa_only; /* the RSA key only */
} fx;

static const struct jwt_policy default_policy = {.leeway_s = LEEWAY};

/* ---- token building ---- */

static char *b64url(const unsigned char *in, size_t len)
{
    size_t cap = (len + 2) / 3 * 4 + 1, out_len = 0;
    unsigned char *out = malloc(cap);
    assert_non_null(out);
    assert_int_equal(mbedtls_base64_encode(out, cap, &out_len, in, len), 0);
    size_t w = 0;
    for (size_t i = 0; i < out_len; i++) {
        unsigned char c = out[i];
        if (c == '=')
            continue;
        out[w++] = c == '+' ? '-' : c == '/' ? '_' : c;
    }
    out[w] = '\0';
    return (char *)out;
}

static char *concat3(const char *a, const char *sep, const char *b)
{
    size_t len = strlen(a) + strlen(sep) + strlen(b) + 1;
    char *out = malloc(len);
    assert_non_null(out);
    snprintf(out, len, "%s%s%s", a, sep, b);
    return out;
}

/* base64url(header) "." base64url(claims) */
static char *signing_input(const char *header, const char *claims)
{
    char *h = b64url((const unsigned char *)header, strlen(header));
    char *c = b64url((const unsigned char *)claims, strlen(claims));
    char *input = concat3(h, ".", c);
    free(h);
    free(c);
    return input;
}

static char *with_signature(char *input, const unsigned char *sig, size_t sig_len)
{
    char *s = b64url(sig, sig_len);
    char *token = concat3(input, ".", s);
    free(s);
    free(input);
    return token;
}

static char *hs256_with_key(const char *header, const char *claims, const unsigned char *key,
                            size_t key_len)
{
    unsigned char mac[32];
    char *input = signing_input(header, claims);
    assert_int_equal(mbedtls_md_hmac(mbedtls_md_info_from_type(MBEDTLS_MD_SHA256), key, key_len,
                                     (const unsigned char *)input, strlen(input), mac),
                     0);
    return with_signature(input, mac, sizeof(mac));
}

static char *hs256(const char *header, const char *claims, const char *secret)
{
    return hs256_with_key(header, claims, (const unsigned char *)secret, strlen(secret));
}

static void hash_input(const char *input, unsigned char hash[32])
{
    assert_int_equal(mbedtls_sha256_ret((const unsigned char *)input, strlen(input), hash, 0), 0);
}

static char *rs256(const char *header, const char *claims)
{
    unsigned char hash[32], sig[MBEDTLS_MPI_MAX_SIZE];
    size_t sig_len = 0;
    char *input = signing_input(header, claims);
    hash_input(input, hash);
    assert_int_equal(mbedtls_pk_sign(&fx.rsa, MBEDTLS_MD_SHA256, hash, 32, sig, &sig_len,
                                     mbedtls_ctr_drbg_random, &fx.drbg),
                     0);
    return with_signature(input, sig, sig_len);
}

static char *es256(const char *header, const char *claims)
{
    unsigned char hash[32], sig[64];
    mbedtls_mpi r, s;
    mbedtls_ecp_keypair *ec = mbedtls_pk_ec(fx.ec);
    char *input = signing_input(header, claims);
    hash_input(input, hash);
    mbedtls_mpi_init(&r);
    mbedtls_mpi_init(&s);
    assert_int_equal(
        mbedtls_ecdsa_sign(&ec->grp, &r, &s, &ec->d, hash, 32, mbedtls_ctr_drbg_random, &fx.drbg),
        0);
    assert_int_equal(mbedtls_mpi_write_binary(&r, sig, 32), 0);
    assert_int_equal(mbedtls_mpi_write_binary(&s, sig + 32, 32), 0);
    mbedtls_mpi_free(&r);
    mbedtls_mpi_free(&s);
    return with_signature(input, sig, sizeof(sig));
}

/* Claims with only exp, relative to NOW. */
static const char *claims_exp(int64_t exp_from_now)
{
    static char text[128];
    snprintf(text, sizeof(text), "{\"sub\":\"u\",\"exp\":%lld}", (long long)(NOW + exp_from_now));
    return text;
}

static int verify_policy(const char *token, const struct jwt_keys *keys,
                         const struct jwt_policy *policy, struct jwt_claims *claims)
{
    return jwt_verify(token, strlen(token), keys, policy, NOW, claims);
}

static int verify(const char *token, const struct jwt_keys *keys)
{
    struct jwt_claims claims;
    int status = verify_policy(token, keys, &default_policy, &claims);
    jwt_claims_clear(&claims);
    return status;
}

/* Verifies and frees the token: the common shape of a rejection test. */
static int verify_owned(char *token, const struct jwt_keys *keys)
{
    int status = verify(token, keys);
    free(token);
    return status;
}

static bool claims_empty(const struct jwt_claims *claims)
{
    struct jwt_claims zero;
    memset(&zero, 0, sizeof(zero));
    return memcmp(claims, &zero, sizeof(zero)) == 0;
}

/* ---- fixture ---- */

static void write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

static void write_public_pem(mbedtls_pk_context *pk, const char *path, char *copy, size_t copy_len)
{
    unsigned char pem[4096];
    assert_int_equal(mbedtls_pk_write_pubkey_pem(pk, pem, sizeof(pem)), 0);
    write_file(path, pem, strlen((char *)pem));
    if (copy != NULL)
        snprintf(copy, copy_len, "%s", (char *)pem);
}

static void gen_ec(mbedtls_pk_context *pk, mbedtls_ecp_group_id group)
{
    mbedtls_pk_init(pk);
    assert_int_equal(mbedtls_pk_setup(pk, mbedtls_pk_info_from_type(MBEDTLS_PK_ECKEY)), 0);
    assert_int_equal(
        mbedtls_ecp_gen_key(group, mbedtls_pk_ec(*pk), mbedtls_ctr_drbg_random, &fx.drbg), 0);
}

static void gen_rsa(mbedtls_pk_context *pk, unsigned bits)
{
    mbedtls_pk_init(pk);
    assert_int_equal(mbedtls_pk_setup(pk, mbedtls_pk_info_from_type(MBEDTLS_PK_RSA)), 0);
    assert_int_equal(
        mbedtls_rsa_gen_key(mbedtls_pk_rsa(*pk), mbedtls_ctr_drbg_random, &fx.drbg, bits, 65537),
        0);
}

static struct jwt_keys *keys_with_files(const char *secrets_text, const char *path1,
                                        const char *path2)
{
    char err[256];
    struct jwt_keys *keys =
        jwt_keys_parse_secrets(secrets_text, secrets_text != NULL ? strlen(secrets_text) : 0, NULL);
    assert_non_null(keys);
    if (path1 != NULL && jwt_keys_add_public_key_file(keys, path1, err, sizeof(err)) != 0)
        fail_msg("%s", err);
    if (path2 != NULL && jwt_keys_add_public_key_file(keys, path2, err, sizeof(err)) != 0)
        fail_msg("%s", err);
    return keys;
}

static int group_setup(void **state)
{
    static const char personal[] = "test_jwt";
    mbedtls_entropy_init(&fx.entropy);
    mbedtls_ctr_drbg_init(&fx.drbg);
    if (mbedtls_ctr_drbg_seed(&fx.drbg, mbedtls_entropy_func, &fx.entropy,
                              (const unsigned char *)personal, sizeof(personal)) != 0)
        return -1;
    const char *tmp = getenv("TMPDIR");
    snprintf(fx.dir, sizeof(fx.dir), "%s/test_jwt.XXXXXX", tmp != NULL && tmp[0] ? tmp : "/tmp");
    if (mkdtemp(fx.dir) == NULL)
        return -1;
    snprintf(fx.rsa_path, sizeof(fx.rsa_path), "%s/rsa.pem", fx.dir);
    snprintf(fx.ec_path, sizeof(fx.ec_path), "%s/ec.pem", fx.dir);
    snprintf(fx.rsa_small_path, sizeof(fx.rsa_small_path), "%s/rsa1024.pem", fx.dir);
    snprintf(fx.p384_path, sizeof(fx.p384_path), "%s/p384.pem", fx.dir);
    snprintf(fx.garbage_path, sizeof(fx.garbage_path), "%s/garbage.pem", fx.dir);

    gen_rsa(&fx.rsa, 2048);
    write_public_pem(&fx.rsa, fx.rsa_path, fx.rsa_pem, sizeof(fx.rsa_pem));
    gen_ec(&fx.ec, MBEDTLS_ECP_DP_SECP256R1);
    write_public_pem(&fx.ec, fx.ec_path, NULL, 0);

    mbedtls_pk_context other;
    gen_rsa(&other, 1024);
    write_public_pem(&other, fx.rsa_small_path, NULL, 0);
    mbedtls_pk_free(&other);
    gen_ec(&other, MBEDTLS_ECP_DP_SECP384R1);
    write_public_pem(&other, fx.p384_path, NULL, 0);
    mbedtls_pk_free(&other);
    const char *garbage = "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n";
    write_file(fx.garbage_path, garbage, strlen(garbage));

    fx.secrets = keys_with_files(SECRET_A "\n", NULL, NULL);
    fx.publics = keys_with_files(NULL, fx.rsa_path, fx.ec_path);
    fx.rsa_only = keys_with_files(NULL, fx.rsa_path, NULL);
    return 0;
}

static int group_teardown(void **state)
{
    jwt_keys_free(fx.secrets);
    jwt_keys_free(fx.publics);
    jwt_keys_free(fx.rsa_only);
    mbedtls_pk_free(&fx.rsa);
    mbedtls_pk_free(&fx.ec);
    mbedtls_ctr_drbg_free(&fx.drbg);
    mbedtls_entropy_free(&fx.entropy);
    const char *paths[] = {fx.rsa_path, fx.ec_path, fx.rsa_small_path, fx.p384_path,
                           fx.garbage_path};
    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++)
        unlink(paths[i]);
    rmdir(fx.dir);
    return 0;
}

/* ---- RFC 7515 appendix A.1 ---- */

/* The A.1 example, byte for byte: its header and claims contain CRLFs. */
#define A1_TOKEN                                                                                   \
    "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9"                                                     \
    ".eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnV" \
    "l"                                                                                            \
    "fQ"                                                                                           \
    ".dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
#define A1_KEY_JWK                                                                                 \
    "AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow"
#define A1_EXP INT64_C(1300819380)

static struct jwt_keys *a1_keys(void)
{
    unsigned char key[64];
    size_t key_len = 0;
    assert_int_equal(jwt_base64url_decode(A1_KEY_JWK, strlen(A1_KEY_JWK), key, &key_len), 0);
    assert_int_equal(key_len, 64);
    struct jwt_keys *keys = jwt_keys_from_secret(key, key_len);
    assert_non_null(keys);
    assert_int_equal(jwt_keys_secret_count(keys), 1);
    return keys;
}

static void test_rfc7515_a1_hs256_example_verifies(void **state)
{
    struct jwt_keys *keys = a1_keys();
    struct jwt_policy policy = {.leeway_s = 0, .issuer = "joe"};
    struct jwt_claims claims;

    assert_int_equal(jwt_verify(A1_TOKEN, strlen(A1_TOKEN), keys, &policy, A1_EXP - 1, &claims),
                     JWT_OK);
    assert_int_equal(claims.exp, A1_EXP);
    assert_string_equal(claims.subject, "");
    assert_false(claims.has_roles);
    assert_false(claims.has_publish);
    assert_false(claims.has_subscribe);
    jwt_claims_clear(&claims);

    /* Its exp is in 2011: at exp itself the token is no longer valid. */
    assert_int_equal(jwt_verify(A1_TOKEN, strlen(A1_TOKEN), keys, &policy, A1_EXP, &claims),
                     JWT_ERR_EXPIRED);
    assert_true(claims_empty(&claims));
    policy.issuer = "bob";
    assert_int_equal(jwt_verify(A1_TOKEN, strlen(A1_TOKEN), keys, &policy, A1_EXP - 1, &claims),
                     JWT_ERR_CLAIMS);
    jwt_keys_free(keys);
}

static void test_rfc7515_a1_with_one_signature_bit_flipped_is_refused(void **state)
{
    struct jwt_keys *keys = a1_keys();
    char token[] = A1_TOKEN;
    /* 'd' (29) -> 'c' (28) flips the low bit of the first 6-bit group:
     * exactly one bit of the MAC changes. */
    char *sig = strrchr(token, '.') + 1;
    assert_int_equal(sig[0], 'd');
    sig[0] = 'c';
    assert_int_equal(jwt_verify(token, strlen(token), keys, NULL, A1_EXP - 1, NULL),
                     JWT_ERR_SIGNATURE);
    jwt_keys_free(keys);
}

static void test_secrets_file_line_with_the_a1_key_bytes_verifies(void **state)
{
    /* The A.1 key has no LF, CR, blank or NUL, and its '#' is not first, so
     * it also works as a line of the secrets file. */
    unsigned char key[66];
    size_t key_len = 0;
    assert_int_equal(jwt_base64url_decode(A1_KEY_JWK, strlen(A1_KEY_JWK), key, &key_len), 0);
    key[key_len] = '\n';
    size_t too_short = 99;
    struct jwt_keys *keys = jwt_keys_parse_secrets((const char *)key, key_len + 1, &too_short);
    assert_non_null(keys);
    assert_int_equal(jwt_keys_secret_count(keys), 1);
    assert_int_equal(too_short, 0);
    assert_int_equal(jwt_verify(A1_TOKEN, strlen(A1_TOKEN), keys, NULL, A1_EXP - 1, NULL), JWT_OK);
    jwt_keys_free(keys);
}

/* ---- valid tokens ---- */

static void test_hs256_token_fills_every_claim(void **state)
{
    char claims_text[512];
    snprintf(claims_text, sizeof(claims_text),
             "{\"sub\":\"alice\",\"exp\":%lld,\"iat\":%lld,\"nbf\":%lld,"
             "\"roles\":[\"dashboard\",\"orders-writer\"],"
             "\"publish\":[\"orders.*\",\"audit\",\"orders.*\"],\"subscribe\":[\"*\"]}",
             (long long)(NOW + 600), (long long)NOW, (long long)(NOW - 10));
    char *token = hs256(HS256, claims_text, SECRET_A);
    struct jwt_claims claims;

    assert_int_equal(verify_policy(token, fx.secrets, &default_policy, &claims), JWT_OK);
    assert_int_equal(claims.exp, NOW + 600);
    assert_string_equal(claims.subject, "alice");
    assert_true(claims.has_roles);
    assert_int_equal(claims.role_count, 2);
    assert_string_equal(claims.roles[0], "dashboard");
    assert_string_equal(claims.roles[1], "orders-writer");
    assert_true(claims.has_publish);
    assert_int_equal(claims.publish.count, 2); /* the repeat is dropped */
    assert_true(event_patterns_match(&claims.publish, "orders.created", 14));
    assert_true(event_patterns_match(&claims.publish, "audit", 5));
    assert_false(event_patterns_match(&claims.publish, "payments", 8));
    assert_true(claims.has_subscribe);
    assert_true(event_patterns_match(&claims.subscribe, "anything", 8));
    jwt_claims_clear(&claims);
    assert_true(claims_empty(&claims));
    free(token);
}

static void test_absent_and_empty_authorization_claims_are_told_apart(void **state)
{
    char claims_text[256];
    struct jwt_claims claims;
    snprintf(claims_text, sizeof(claims_text), "{\"exp\":%lld}", (long long)(NOW + 60));
    char *token = hs256(HS256, claims_text, SECRET_A);
    assert_int_equal(verify_policy(token, fx.secrets, NULL, &claims), JWT_OK);
    assert_false(claims.has_roles || claims.has_publish || claims.has_subscribe);
    assert_string_equal(claims.subject, "");
    jwt_claims_clear(&claims);
    free(token);

    snprintf(claims_text, sizeof(claims_text),
             "{\"exp\":%lld,\"roles\":[],\"publish\":[],\"subscribe\":[]}", (long long)(NOW + 60));
    token = hs256(HS256, claims_text, SECRET_A);
    assert_int_equal(verify_policy(token, fx.secrets, NULL, &claims), JWT_OK);
    assert_true(claims.has_roles && claims.has_publish && claims.has_subscribe);
    assert_int_equal(claims.role_count, 0);
    assert_int_equal(claims.publish.count, 0);
    assert_int_equal(claims.subscribe.count, 0);
    jwt_claims_clear(&claims);
    free(token);
}

static void test_rs256_token_signed_with_the_configured_key_verifies(void **state)
{
    char *token = rs256(RS256, claims_exp(60));
    assert_int_equal(verify(token, fx.publics), JWT_OK);
    assert_int_equal(verify(token, fx.rsa_only), JWT_OK);
    free(token);
}

static void test_es256_token_signed_with_the_configured_key_verifies(void **state)
{
    char *token = es256(ES256, claims_exp(60));
    struct jwt_claims claims;
    assert_int_equal(verify_policy(token, fx.publics, &default_policy, &claims), JWT_OK);
    assert_string_equal(claims.subject, "u");
    jwt_claims_clear(&claims);
    free(token);
}

static void test_secrets_and_public_keys_together_accept_each_kind(void **state)
{
    struct jwt_keys *keys = keys_with_files(SECRET_A "\n", fx.rsa_path, fx.ec_path);
    assert_int_equal(jwt_keys_secret_count(keys), 1);
    assert_int_equal(jwt_keys_public_count(keys), 2);
    assert_int_equal(verify_owned(hs256(HS256, claims_exp(60), SECRET_A), keys), JWT_OK);
    assert_int_equal(verify_owned(rs256(RS256, claims_exp(60)), keys), JWT_OK);
    assert_int_equal(verify_owned(es256(ES256, claims_exp(60)), keys), JWT_OK);
    jwt_keys_free(keys);
}

/* ---- time claims ---- */

static void test_expired_beyond_leeway_is_refused(void **state)
{
    assert_int_equal(verify_owned(hs256(HS256, claims_exp(-LEEWAY - 1), SECRET_A), fx.secrets),
                     JWT_ERR_EXPIRED);
    assert_int_equal(verify_owned(hs256(HS256, claims_exp(-100000), SECRET_A), fx.secrets),
                     JWT_ERR_EXPIRED);
    /* RFC 7519 §4.1.4: now must be before exp (+ leeway), so equality fails. */
    assert_int_equal(verify_owned(hs256(HS256, claims_exp(-LEEWAY), SECRET_A), fx.secrets),
                     JWT_ERR_EXPIRED);
}

static void test_expired_within_leeway_is_accepted(void **state)
{
    assert_int_equal(verify_owned(hs256(HS256, claims_exp(-LEEWAY + 1), SECRET_A), fx.secrets),
                     JWT_OK);
    assert_int_equal(verify_owned(hs256(HS256, claims_exp(-1), SECRET_A), fx.secrets), JWT_OK);

    char *token = hs256(HS256, claims_exp(-1), SECRET_A);
    struct jwt_policy strict = {.leeway_s = 0};
    assert_int_equal(verify_policy(token, fx.secrets, &strict, NULL), JWT_ERR_EXPIRED);
    /* A negative leeway counts as none. */
    struct jwt_policy negative = {.leeway_s = -1000};
    assert_int_equal(verify_policy(token, fx.secrets, &negative, NULL), JWT_ERR_EXPIRED);
    free(token);
}

static void test_fractional_exp_is_a_number_like_any_other(void **state)
{
    char text[128];
    struct jwt_claims claims;
    snprintf(text, sizeof(text), "{\"exp\":%lld.75}", (long long)(NOW + 5));
    char *token = hs256(HS256, text, SECRET_A);
    assert_int_equal(verify_policy(token, fx.secrets, &default_policy, &claims), JWT_OK);
    assert_int_equal(claims.exp, NOW + 5);
    jwt_claims_clear(&claims);
    free(token);

    snprintf(text, sizeof(text), "{\"exp\":%lld.5e0}", (long long)(NOW - LEEWAY));
    assert_int_equal(verify_owned(hs256(HS256, text, SECRET_A), fx.secrets), JWT_OK);
}

static void test_nbf_in_the_future_is_refused_beyond_leeway(void **state)
{
    char text[128];
    snprintf(text, sizeof(text), "{\"exp\":%lld,\"nbf\":%lld}", (long long)(NOW + 600),
             (long long)(NOW + LEEWAY + 1));
    assert_int_equal(verify_owned(hs256(HS256, text, SECRET_A), fx.secrets), JWT_ERR_NOT_YET_VALID);
    snprintf(text, sizeof(text), "{\"exp\":%lld,\"nbf\":%lld}", (long long)(NOW + 600),
             (long long)(NOW + LEEWAY));
    assert_int_equal(verify_owned(hs256(HS256, text, SECRET_A), fx.secrets), JWT_OK);
}

static void test_iat_in_the_future_is_refused_beyond_leeway(void **state)
{
    char text[128];
    snprintf(text, sizeof(text), "{\"exp\":%lld,\"iat\":%lld}", (long long)(NOW + 600),
             (long long)(NOW + LEEWAY + 1));
    assert_int_equal(verify_owned(hs256(HS256, text, SECRET_A), fx.secrets), JWT_ERR_NOT_YET_VALID);
    snprintf(text, sizeof(text), "{\"exp\":%lld,\"iat\":%lld}", (long long)(NOW + 600),
             (long long)(NOW + LEEWAY));
    assert_int_equal(verify_owned(hs256(HS256, text, SECRET_A), fx.secrets), JWT_OK);
}

static void test_missing_or_mistyped_time_claims_are_refused(void **state)
{
    static const char *const bad[] = {
        "{\"sub\":\"no exp\"}",
        "{\"exp\":\"1700000600\"}",
        "{\"exp\":true}",
        "{\"exp\":null}",
        "{\"exp\":[1700000600]}",
        "{\"exp\":1e400}",
        "{\"exp\":-1e400}",
        "{\"exp\":9007199254740993}",
        "{\"exp\":9007199254740992}",
        "{\"exp\":1700000600,\"nbf\":\"0\"}",
        "{\"exp\":1700000600,\"iat\":{}}",
        "{\"exp\":1700000600,\"nbf\":1e309}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char *token = hs256(HS256, bad[i], SECRET_A);
        struct jwt_claims claims;
        int status = verify_policy(token, fx.secrets, &default_policy, &claims);
        if (status != JWT_ERR_CLAIMS)
            fail_msg("%s: got %d", bad[i], status);
        assert_true(claims_empty(&claims));
        free(token);
    }
}

/* Verifies claims text signed with SECRET_A at time now; fills *exp on JWT_OK. */
static int verify_claims_at(const char *claims_text, int64_t now, int64_t *exp)
{
    struct jwt_claims claims;
    char *token = hs256(HS256, claims_text, SECRET_A);
    int status = jwt_verify(token, strlen(token), fx.secrets, &default_policy, now, &claims);
    if (status == JWT_OK && exp != NULL)
        *exp = claims.exp;
    jwt_claims_clear(&claims);
    free(token);
    return status;
}

static void test_far_future_exp_is_kept_exact(void **state)
{
    int64_t exp = 0;
    /* Year 2286: (exp + leeway) * 10^9 would pass INT64_MAX. */
    assert_int_equal(verify_claims_at("{\"exp\":9999999999}", NOW, &exp), JWT_OK);
    assert_int_equal(exp, INT64_C(9999999999));
    /* The largest exp accepted: 2^53 - 1, exact in a double. */
    assert_int_equal(verify_claims_at("{\"exp\":9007199254740991}", NOW, &exp), JWT_OK);
    assert_int_equal(exp, INT64_C(9007199254740991));
    /* Fractional: rounded down. */
    assert_int_equal(verify_claims_at("{\"exp\":9999999999.75}", NOW, &exp), JWT_OK);
    assert_int_equal(exp, INT64_C(9999999999));
}

static void test_time_claims_beyond_2_to_the_53_are_refused_in_either_direction(void **state)
{
    static const char *const bad[] = {
        "{\"exp\":9223372036854775807}",  /* INT64_MAX */
        "{\"exp\":18446744073709551616}", /* 2^64 */
        "{\"exp\":1e300}",
        "{\"exp\":-1e300}",
        "{\"exp\":-9223372036854775808}", /* INT64_MIN */
        "{\"exp\":-9007199254740992}",
        "{\"exp\":1700000600,\"nbf\":1e300}",
        "{\"exp\":1700000600,\"nbf\":-1e300}",
        "{\"exp\":1700000600,\"nbf\":-1e400}",
        "{\"exp\":1700000600,\"nbf\":9223372036854775807}",
        "{\"exp\":1700000600,\"iat\":1e300}",
        "{\"exp\":1700000600,\"iat\":-1e300}",
        "{\"exp\":1700000600,\"iat\":1e400}",
        "{\"exp\":1700000600,\"iat\":-9223372036854775808}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int status = verify_claims_at(bad[i], NOW, NULL);
        if (status != JWT_ERR_CLAIMS)
            fail_msg("%s: got %d", bad[i], status);
    }
}

static void test_time_claims_far_in_the_past_are_ordinary(void **state)
{
    assert_int_equal(verify_claims_at("{\"exp\":-9007199254740991}", NOW, NULL), JWT_ERR_EXPIRED);
    assert_int_equal(verify_claims_at("{\"exp\":-0.5}", NOW, NULL), JWT_ERR_EXPIRED);
    assert_int_equal(verify_claims_at("{\"exp\":1700000600,\"nbf\":-9007199254740991,"
                                      "\"iat\":-9007199254740991}",
                                      NOW, NULL),
                     JWT_OK);
    assert_int_equal(verify_claims_at("{\"exp\":1700000600,\"nbf\":-0.25,\"iat\":0}", NOW, NULL),
                     JWT_OK);
}

static void test_extreme_clock_values_are_judged_without_overflow(void **state)
{
    /* A clock at either end of int64_t: past every exp, before every nbf. */
    assert_int_equal(verify_claims_at("{\"exp\":9007199254740991}", INT64_MAX, NULL),
                     JWT_ERR_EXPIRED);
    assert_int_equal(verify_claims_at("{\"exp\":1700000600}", INT64_MIN, NULL), JWT_OK);
    assert_int_equal(verify_claims_at("{\"exp\":1700000600,\"nbf\":0}", INT64_MIN, NULL),
                     JWT_ERR_NOT_YET_VALID);
    assert_int_equal(
        verify_claims_at("{\"exp\":1700000600,\"iat\":-9007199254740991}", INT64_MIN, NULL),
        JWT_ERR_NOT_YET_VALID);
}

static void test_end_time_is_exp_plus_leeway_saturated(void **state)
{
    struct jwt_policy none = {.leeway_s = 0}, negative = {.leeway_s = -50};
    struct jwt_policy hour = {.leeway_s = 3600}, huge = {.leeway_s = INT64_MAX};
    assert_int_equal(jwt_end_time(INT64_C(9999999999), &default_policy),
                     INT64_C(9999999999) + LEEWAY);
    assert_int_equal(jwt_end_time(NOW, NULL), NOW);
    assert_int_equal(jwt_end_time(NOW, &none), NOW);
    assert_int_equal(jwt_end_time(NOW, &negative), NOW); /* a negative leeway counts as none */
    assert_int_equal(jwt_end_time(INT64_C(9007199254740991), &hour),
                     INT64_C(9007199254740991) + 3600);
    assert_int_equal(jwt_end_time(INT64_MAX, &default_policy), INT64_MAX);
    assert_int_equal(jwt_end_time(INT64_MAX - 10, &default_policy), INT64_MAX);
    assert_int_equal(jwt_end_time(INT64_MAX - LEEWAY, &default_policy), INT64_MAX);
    assert_int_equal(jwt_end_time(NOW, &huge), INT64_MAX);
    assert_int_equal(jwt_end_time(INT64_MIN, &default_policy), INT64_MIN + LEEWAY);
    assert_int_equal(jwt_end_time(-5, &default_policy), LEEWAY - 5);
}

static void test_verification_count_counts_signature_checks_only(void **state)
{
    uint64_t before = jwt_verification_count();
    /* Refused before any cryptography: not counted. */
    assert_int_equal(verify("not-a-token", fx.secrets), JWT_ERR_MALFORMED);
    assert_int_equal(
        verify_owned(hs256("{\"alg\":\"none\"}", claims_exp(60), SECRET_A), fx.secrets),
        JWT_ERR_ALGORITHM);
    assert_int_equal(jwt_verification_count(), before);
    /* One per check, whatever its result. */
    assert_int_equal(verify_owned(hs256(HS256, claims_exp(60), SECRET_A), fx.secrets), JWT_OK);
    assert_int_equal(verify_owned(hs256(HS256, claims_exp(60), SECRET_C), fx.secrets),
                     JWT_ERR_SIGNATURE);
    assert_int_equal(verify_owned(es256(ES256, claims_exp(60)), fx.publics), JWT_OK);
    assert_int_equal(verify_owned(hs256(HS256, claims_exp(-3600), SECRET_A), fx.secrets),
                     JWT_ERR_EXPIRED);
    assert_int_equal(jwt_verification_count(), before + 4);
}

/* ---- signatures and keys ---- */

/* Flips one bit of the decoded signature and re-encodes it. */
static char *flip_signature_bit(const char *token, size_t bit)
{
    const char *dot = strrchr(token, '.');
    unsigned char sig[1100];
    size_t sig_len = 0;
    assert_int_equal(jwt_base64url_decode(dot + 1, strlen(dot + 1), sig, &sig_len), 0);
    assert_true(bit / 8 < sig_len);
    sig[bit / 8] ^= (unsigned char)(1u << (bit % 8));
    char *prefix = strndup(token, (size_t)(dot - token));
    assert_non_null(prefix);
    return with_signature(prefix, sig, sig_len);
}

static void test_one_flipped_signature_bit_is_refused_for_each_algorithm(void **state)
{
    char *tokens[3] = {hs256(HS256, claims_exp(60), SECRET_A), rs256(RS256, claims_exp(60)),
                       es256(ES256, claims_exp(60))};
    const struct jwt_keys *keys[3] = {fx.secrets, fx.publics, fx.publics};
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(verify(tokens[i], keys[i]), JWT_OK);
        assert_int_equal(verify_owned(flip_signature_bit(tokens[i], 0), keys[i]),
                         JWT_ERR_SIGNATURE);
        assert_int_equal(verify_owned(flip_signature_bit(tokens[i], 8 * 31 + 7), keys[i]),
                         JWT_ERR_SIGNATURE);
        free(tokens[i]);
    }
}

static void test_changed_claims_under_a_valid_signature_are_refused(void **state)
{
    char *token = hs256(HS256, claims_exp(60), SECRET_A);
    char *other = hs256(HS256, claims_exp(6000), SECRET_A);
    /* The claims of other with the signature of token. */
    char *first_dot = strchr(token, '.'), *last_dot = strrchr(token, '.');
    char *other_dot = strchr(other, '.'), *other_last = strrchr(other, '.');
    char spliced[1024];
    snprintf(spliced, sizeof(spliced), "%.*s%.*s%s", (int)(first_dot - token), token,
             (int)(other_last - other_dot), other_dot, last_dot);
    assert_int_equal(verify(spliced, fx.secrets), JWT_ERR_SIGNATURE);
    free(token);
    free(other);
}

static void test_wrong_secret_is_refused(void **state)
{
    assert_int_equal(verify_owned(hs256(HS256, claims_exp(60), SECRET_C), fx.secrets),
                     JWT_ERR_SIGNATURE);
    /* A secret sharing a prefix with the configured one is still another key. */
    assert_int_equal(verify_owned(hs256(HS256, claims_exp(60), SECRET_A "x"), fx.secrets),
                     JWT_ERR_SIGNATURE);
}

static void test_every_configured_secret_verifies_for_rotation(void **state)
{
    size_t too_short = 0;
    const char *text = "# old key, retiring\n" SECRET_A "\r\n\n" SECRET_B "\n";
    struct jwt_keys *keys = jwt_keys_parse_secrets(text, strlen(text), &too_short);
    assert_non_null(keys);
    assert_int_equal(jwt_keys_secret_count(keys), 2);
    assert_int_equal(verify_owned(hs256(HS256, claims_exp(60), SECRET_A), keys), JWT_OK);
    assert_int_equal(verify_owned(hs256(HS256, claims_exp(60), SECRET_B), keys), JWT_OK);
    assert_int_equal(verify_owned(hs256(HS256, claims_exp(60), SECRET_C), keys), JWT_ERR_SIGNATURE);
    jwt_keys_free(keys);
}

static void test_secrets_file_with_cr_only_line_endings_gives_every_secret(void **state)
{
    const char *text = SECRET_A "\r# comment\r" SECRET_B "\r";
    struct jwt_keys *keys = jwt_keys_parse_secrets(text, strlen(text), NULL);
    assert_non_null(keys);
    assert_int_equal(jwt_keys_secret_count(keys), 2);
    assert_int_equal(verify_owned(hs256(HS256, claims_exp(60), SECRET_A), keys), JWT_OK);
    assert_int_equal(verify_owned(hs256(HS256, claims_exp(60), SECRET_B), keys), JWT_OK);
    jwt_keys_free(keys);
}

static void test_secrets_file_rules(void **state)
{
    size_t too_short = 0;
    const char *text = "  # comment long enough to be a secret if it were one\n"
                       "short-secret\n"
                       "\t " SECRET_B " \t\r\n"
                       "   \r\n"
                       "0123456789012345678901234567890\n" /* 31 bytes */
                       "with\0nul-0123456789012345678901234567890123\n" SECRET_A;
    size_t len = strlen(text) + 1 + strlen("nul-0123456789012345678901234567890123\n" SECRET_A);
    struct jwt_keys *keys = jwt_keys_parse_secrets(text, len, &too_short);
    assert_non_null(keys);
    assert_int_equal(jwt_keys_secret_count(keys), 2);
    assert_int_equal(jwt_keys_public_count(keys), 0);
    assert_int_equal(too_short, 2);
    /* Blanks around the secret and the CR are not part of it. */
    assert_int_equal(verify_owned(hs256(HS256, claims_exp(60), SECRET_B), keys), JWT_OK);
    assert_int_equal(verify_owned(hs256(HS256, claims_exp(60), SECRET_A), keys), JWT_OK);
    jwt_keys_free(keys);

    keys = jwt_keys_parse_secrets(NULL, 0, NULL);
    assert_non_null(keys);
    assert_int_equal(jwt_keys_secret_count(keys), 0);
    assert_int_equal(verify_owned(hs256(HS256, claims_exp(60), SECRET_A), keys), JWT_ERR_ALGORITHM);
    jwt_keys_free(keys);
    jwt_keys_free(NULL);
    assert_int_equal(jwt_keys_secret_count(NULL), 0);
    assert_int_equal(jwt_keys_public_count(NULL), 0);
    assert_null(jwt_keys_from_secret((const unsigned char *)"x", 0));
}

static void test_public_key_files_that_cannot_serve_are_refused(void **state)
{
    struct jwt_keys *keys = jwt_keys_parse_secrets(NULL, 0, NULL);
    char err[256];
    char missing[128];
    snprintf(missing, sizeof(missing), "%s/missing.pem", fx.dir);

    err[0] = '\0';
    assert_int_equal(jwt_keys_add_public_key_file(keys, missing, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "missing.pem"));
    err[0] = '\0';
    assert_int_equal(jwt_keys_add_public_key_file(keys, fx.garbage_path, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "garbage.pem"));
    err[0] = '\0';
    assert_int_equal(jwt_keys_add_public_key_file(keys, fx.rsa_small_path, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "1024 bits"));
    err[0] = '\0';
    assert_int_equal(jwt_keys_add_public_key_file(keys, fx.p384_path, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "P-256"));
    assert_int_equal(jwt_keys_public_count(keys), 0);
    assert_int_equal(jwt_keys_add_public_key_file(keys, fx.ec_path, NULL, 0), 0);
    assert_int_equal(jwt_keys_public_count(keys), 1);
    jwt_keys_free(keys);
}

/* ---- algorithms ---- */

static char *unsigned_token(const char *header, const char *claims)
{
    char *input = signing_input(header, claims);
    char *token = concat3(input, ".", "");
    free(input);
    return token;
}

static void test_alg_none_is_refused_with_or_without_signature(void **state)
{
    const char *none = "{\"alg\":\"none\",\"typ\":\"JWT\"}";
    assert_int_equal(verify_owned(unsigned_token(none, claims_exp(60)), fx.secrets),
                     JWT_ERR_ALGORITHM);
    assert_int_equal(verify_owned(hs256(none, claims_exp(60), SECRET_A), fx.secrets),
                     JWT_ERR_ALGORITHM);
    assert_int_equal(verify_owned(unsigned_token("{\"alg\":\"None\"}", claims_exp(60)), fx.publics),
                     JWT_ERR_ALGORITHM);
    /* An empty signature on an HS256 header is simply a bad signature. */
    assert_int_equal(verify_owned(unsigned_token(HS256, claims_exp(60)), fx.secrets),
                     JWT_ERR_SIGNATURE);
}

static void test_hs256_is_refused_when_only_public_keys_are_configured(void **state)
{
    assert_int_equal(verify_owned(hs256(HS256, claims_exp(60), SECRET_A), fx.publics),
                     JWT_ERR_ALGORITHM);
}

static void test_rs256_and_es256_are_refused_when_only_secrets_are_configured(void **state)
{
    assert_int_equal(verify_owned(rs256(RS256, claims_exp(60)), fx.secrets), JWT_ERR_ALGORITHM);
    assert_int_equal(verify_owned(es256(ES256, claims_exp(60)), fx.secrets), JWT_ERR_ALGORITHM);
    /* ES256 with an RSA key only: no key of that kind. */
    assert_int_equal(verify_owned(es256(ES256, claims_exp(60)), fx.rsa_only), JWT_ERR_ALGORITHM);
}

static void test_hs256_keyed_with_the_public_key_pem_is_refused(void **state)
{
    /* The classic algorithm confusion: the attacker knows the public key and
     * uses its PEM text as an HMAC secret. */
    const unsigned char *pem = (const unsigned char *)fx.rsa_pem;
    size_t pem_len = strlen(fx.rsa_pem);
    assert_true(pem_len > 100);
    assert_int_equal(verify_owned(hs256_with_key(HS256, claims_exp(60), pem, pem_len), fx.publics),
                     JWT_ERR_ALGORITHM);
    assert_int_equal(verify_owned(hs256_with_key(HS256, claims_exp(60), pem, pem_len), fx.rsa_only),
                     JWT_ERR_ALGORITHM);
    /* With secrets configured too, the PEM is still never an HMAC key. */
    struct jwt_keys *mixed = keys_with_files(SECRET_A "\n", fx.rsa_path, NULL);
    assert_int_equal(verify_owned(hs256_with_key(HS256, claims_exp(60), pem, pem_len), mixed),
                     JWT_ERR_SIGNATURE);
    jwt_keys_free(mixed);
}

static void test_unknown_or_missing_alg_is_refused(void **state)
{
    static const char *const headers[] = {
        "{\"alg\":\"HS512\"}", "{\"alg\":\"hs256\"}", "{\"alg\":\"PS256\"}", "{\"alg\":\"HS256 \"}",
        "{\"alg\":256}",       "{\"alg\":null}",      "{\"typ\":\"JWT\"}",   "{}",
    };
    for (size_t i = 0; i < sizeof(headers) / sizeof(headers[0]); i++) {
        int status = verify_owned(hs256(headers[i], claims_exp(60), SECRET_A), fx.secrets);
        if (status != JWT_ERR_ALGORITHM)
            fail_msg("%s: got %d", headers[i], status);
    }
}

static void test_crit_header_is_refused(void **state)
{
    const char *header = "{\"alg\":\"HS256\",\"crit\":[\"exp\"],\"exp\":1}";
    assert_int_equal(verify_owned(hs256(header, claims_exp(60), SECRET_A), fx.secrets),
                     JWT_ERR_MALFORMED);
    header = "{\"alg\":\"HS256\",\"crit\":[]}";
    assert_int_equal(verify_owned(hs256(header, claims_exp(60), SECRET_A), fx.secrets),
                     JWT_ERR_MALFORMED);
}

/* ---- compact serialisation and base64url ---- */

/* Replaces token[at] by c, or inserts c before it when insert. */
static char *edit(const char *token, size_t at, const char *text, bool insert)
{
    size_t len = strlen(token), add = strlen(text);
    char *out = malloc(len + add + 1);
    assert_non_null(out);
    memcpy(out, token, at);
    memcpy(out + at, text, add);
    size_t rest = insert ? at : at + add;
    memcpy(out + at + add, token + rest, len - rest + 1);
    return out;
}

static void test_malformed_base64url_is_refused(void **state)
{
    char *token = hs256(HS256, claims_exp(60), SECRET_A);
    size_t len = strlen(token);
    size_t dot1 = (size_t)(strchr(token, '.') - token);
    size_t dot2 = (size_t)(strrchr(token, '.') - token);
    assert_int_equal(verify(token, fx.secrets), JWT_OK);

    /* The signature is 43 characters for 32 bytes: '=' would pad it. */
    assert_int_equal(len - dot2 - 1, 43);
    char *padded = concat3(token, "", "=");
    assert_int_equal(verify_owned(padded, fx.secrets), JWT_ERR_MALFORMED);

    const struct {
        size_t at;
        const char *text;
        bool insert;
    } edits[] = {
        {1, "+", false},     {1, "/", false},        {dot1 + 2, "+", false}, {dot2 + 3, "/", false},
        {1, " ", true},      {dot1 + 1, "\n", true}, {dot2 + 1, "\t", true}, {len, " ", true},
        {len, "\r\n", true}, {0, " ", true},         {dot1 + 1, "=", false}, {dot1, "==", true},
        {2, "\x80", false},  {2, "!", false},
    };
    for (size_t i = 0; i < sizeof(edits) / sizeof(edits[0]); i++) {
        char *bad = edit(token, edits[i].at, edits[i].text, edits[i].insert);
        int status = verify_owned(bad, fx.secrets);
        if (status != JWT_ERR_MALFORMED)
            fail_msg("edit %zu: got %d", i, status);
    }
    /* A NUL inside the token, as length-delimited input. */
    char *copy = strdup(token);
    copy[dot1 + 3] = '\0';
    assert_int_equal(jwt_verify(copy, len, fx.secrets, NULL, NOW, NULL), JWT_ERR_MALFORMED);
    free(copy);
    free(token);
}

static void test_nonzero_trailing_bits_are_refused(void **state)
{
    char *token = hs256(HS256, claims_exp(60), SECRET_A);
    size_t len = strlen(token);
    /* 43 characters carry 258 bits for 256: the last character's low two
     * bits are padding and must be zero. */
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    const char *at = strchr(alphabet, token[len - 1]);
    assert_non_null(at);
    size_t value = (size_t)(at - alphabet);
    assert_int_equal(value & 3, 0);
    for (size_t low = 1; low < 4; low++) {
        token[len - 1] = alphabet[value | low];
        assert_int_equal(verify(token, fx.secrets), JWT_ERR_MALFORMED);
    }
    free(token);
}

static void test_wrong_number_of_parts_is_refused(void **state)
{
    char *token = hs256(HS256, claims_exp(60), SECRET_A);
    char *dot2 = strrchr(token, '.');
    char *two = strndup(token, (size_t)(dot2 - token));
    assert_int_equal(verify_owned(two, fx.secrets), JWT_ERR_MALFORMED);
    assert_int_equal(verify_owned(concat3(token, ".", ""), fx.secrets), JWT_ERR_MALFORMED);
    assert_int_equal(verify_owned(concat3(token, ".", "AAAA"), fx.secrets), JWT_ERR_MALFORMED);
    assert_int_equal(verify_owned(concat3(token, ".", "AAAA.AAAA"), fx.secrets), JWT_ERR_MALFORMED);
    static const char *const shapes[] = {
        "", ".", "..", "...", "abc", "a.b", "e30..A", ".e30.", "e30.e30.e30.e30.e30"};
    for (size_t i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++) {
        int status = verify(shapes[i], fx.secrets);
        if (status != JWT_ERR_MALFORMED)
            fail_msg("'%s': got %d", shapes[i], status);
    }
    assert_int_equal(jwt_verify(NULL, 0, fx.secrets, NULL, NOW, NULL), JWT_ERR_MALFORMED);
    /* Three well-formed parts: "{}" has no alg, which is the next check. */
    assert_int_equal(verify("e30.e30.", fx.secrets), JWT_ERR_ALGORITHM);
    free(token);
}

/* A JSON object of exactly size bytes: prefix members then a padding string. */
static char *json_of_size(const char *members, size_t size)
{
    char *out = malloc(size + 1);
    assert_non_null(out);
    int head = snprintf(out, size + 1, "{%s,\"pad\":\"", members);
    assert_true(head > 0 && (size_t)head + 2 <= size);
    memset(out + head, 'p', size - (size_t)head - 2);
    memcpy(out + size - 2, "\"}", 3);
    assert_int_equal(strlen(out), size);
    return out;
}

static void test_header_and_claims_are_limited_in_size(void **state)
{
    char members[64];
    snprintf(members, sizeof(members), "\"exp\":%lld", (long long)(NOW + 60));

    char *header = json_of_size("\"alg\":\"HS256\"", JWT_MAX_HEADER_LEN);
    assert_int_equal(verify_owned(hs256(header, claims_exp(60), SECRET_A), fx.secrets), JWT_OK);
    free(header);
    header = json_of_size("\"alg\":\"HS256\"", JWT_MAX_HEADER_LEN + 1);
    assert_int_equal(verify_owned(hs256(header, claims_exp(60), SECRET_A), fx.secrets),
                     JWT_ERR_MALFORMED);
    free(header);

    char *claims = json_of_size(members, JWT_MAX_CLAIMS_LEN);
    assert_int_equal(verify_owned(hs256(HS256, claims, SECRET_A), fx.secrets), JWT_OK);
    free(claims);
    claims = json_of_size(members, JWT_MAX_CLAIMS_LEN + 1);
    assert_int_equal(verify_owned(hs256(HS256, claims, SECRET_A), fx.secrets), JWT_ERR_MALFORMED);
    free(claims);
}

static void test_oversized_token_is_refused_before_reading(void **state)
{
    char *token = hs256(HS256, claims_exp(60), SECRET_A);
    size_t len = strlen(token);
    char *big = malloc(JWT_MAX_LEN + 2);
    assert_non_null(big);
    /* A valid token followed by bytes up to one past the limit. */
    memcpy(big, token, len);
    memset(big + len, 'A', JWT_MAX_LEN + 1 - len);
    big[JWT_MAX_LEN + 1] = '\0';
    assert_int_equal(jwt_verify(big, JWT_MAX_LEN + 1, fx.secrets, NULL, NOW, NULL),
                     JWT_ERR_MALFORMED);
    /* Only len bytes are read: the same buffer with the right length passes. */
    assert_int_equal(jwt_verify(big, len, fx.secrets, NULL, NOW, NULL), JWT_OK);
    free(big);

    /* An oversized signature part is refused by its length alone. */
    char *sig_big = malloc(3000);
    assert_non_null(sig_big);
    memset(sig_big, 'A', 2000);
    sig_big[2000] = '\0';
    char *input = strndup(token, (size_t)(strrchr(token, '.') - token));
    assert_int_equal(verify_owned(concat3(input, ".", sig_big), fx.secrets), JWT_ERR_MALFORMED);
    free(input);
    free(sig_big);
    free(token);
}

static void test_bad_json_is_refused_as_malformed(void **state)
{
    char exp[64];
    snprintf(exp, sizeof(exp), "\"exp\":%lld", (long long)(NOW + 60));
    char text[256];
    const char *const claims_forms[] = {
        "[1,2]",
        "\"string\"",
        "{",
        "{} {}",
        "{}x",
        "{\"exp\":1700000060,\"exp\":1700000060}",
        "{\"a\":\"\xff\"}",
        "{\"a\":\"\xc0\xaf\"}",
        "",
    };
    for (size_t i = 0; i < sizeof(claims_forms) / sizeof(claims_forms[0]); i++) {
        int status = verify_owned(hs256(HS256, claims_forms[i], SECRET_A), fx.secrets);
        if (status != JWT_ERR_MALFORMED)
            fail_msg("claims %zu: got %d", i, status);
    }
    /* Blanks after the object are JSON; anything else is not. */
    snprintf(text, sizeof(text), "{%s} \r\n\t", exp);
    assert_int_equal(verify_owned(hs256(HS256, text, SECRET_A), fx.secrets), JWT_OK);
    /* Duplicate names in the header. */
    assert_int_equal(
        verify_owned(hs256("{\"alg\":\"none\",\"alg\":\"HS256\"}", claims_exp(60), SECRET_A),
                     fx.secrets),
        JWT_ERR_MALFORMED);
    /* An escaped NUL would cut a role name short. */
    snprintf(text, sizeof(text), "{%s,\"roles\":[\"admin\\u0000x\"]}", exp);
    assert_int_equal(verify_owned(hs256(HS256, text, SECRET_A), fx.secrets), JWT_ERR_MALFORMED);
    /* ... but an escaped backslash followed by "u0000" is just text. */
    snprintf(text, sizeof(text), "{%s,\"note\":\"\\\\u0000\"}", exp);
    assert_int_equal(verify_owned(hs256(HS256, text, SECRET_A), fx.secrets), JWT_OK);
    /* A raw NUL byte in the decoded claims. */
    char raw[64];
    int n = snprintf(raw, sizeof(raw), "{%s,\"a\":\"x", exp);
    raw[n] = '\0';
    memcpy(raw + n + 1, "\"}", 3);
    char *h = b64url((const unsigned char *)HS256, strlen(HS256));
    char *c = b64url((const unsigned char *)raw, (size_t)n + 3);
    char *input = concat3(h, ".", c);
    unsigned char mac[32];
    assert_int_equal(mbedtls_md_hmac(mbedtls_md_info_from_type(MBEDTLS_MD_SHA256),
                                     (const unsigned char *)SECRET_A, strlen(SECRET_A),
                                     (const unsigned char *)input, strlen(input), mac),
                     0);
    assert_int_equal(verify_owned(with_signature(input, mac, 32), fx.secrets), JWT_ERR_MALFORMED);
    free(h);
    free(c);
}

/* ---- iss and aud ---- */

static int verify_iss_aud(const char *extra, const char *issuer, const char *audience)
{
    char text[512];
    snprintf(text, sizeof(text), "{\"exp\":%lld%s}", (long long)(NOW + 60), extra);
    struct jwt_policy policy = {.leeway_s = LEEWAY, .issuer = issuer, .audience = audience};
    char *token = hs256(HS256, text, SECRET_A);
    int status = verify_policy(token, fx.secrets, &policy, NULL);
    free(token);
    return status;
}

static void test_issuer_must_match_when_configured(void **state)
{
    assert_int_equal(verify_iss_aud(",\"iss\":\"auth.example\"", "auth.example", NULL), JWT_OK);
    assert_int_equal(verify_iss_aud(",\"iss\":\"evil.example\"", "auth.example", NULL),
                     JWT_ERR_CLAIMS);
    assert_int_equal(verify_iss_aud(",\"iss\":\"auth.example.\"", "auth.example", NULL),
                     JWT_ERR_CLAIMS);
    assert_int_equal(verify_iss_aud("", "auth.example", NULL), JWT_ERR_CLAIMS);
    assert_int_equal(verify_iss_aud(",\"iss\":[\"auth.example\"]", "auth.example", NULL),
                     JWT_ERR_CLAIMS);
    /* Not configured (NULL or empty): any issuer string passes. */
    assert_int_equal(verify_iss_aud(",\"iss\":\"whoever\"", NULL, NULL), JWT_OK);
    assert_int_equal(verify_iss_aud(",\"iss\":\"whoever\"", "", NULL), JWT_OK);
    assert_int_equal(verify_iss_aud(",\"iss\":5", NULL, NULL), JWT_ERR_CLAIMS);
}

static void test_audience_must_match_as_string_or_array_member(void **state)
{
    assert_int_equal(verify_iss_aud(",\"aud\":\"events\"", NULL, "events"), JWT_OK);
    assert_int_equal(verify_iss_aud(",\"aud\":\"billing\"", NULL, "events"), JWT_ERR_CLAIMS);
    assert_int_equal(verify_iss_aud(",\"aud\":[\"billing\",\"events\"]", NULL, "events"), JWT_OK);
    assert_int_equal(verify_iss_aud(",\"aud\":[\"billing\",\"eventsX\"]", NULL, "events"),
                     JWT_ERR_CLAIMS);
    assert_int_equal(verify_iss_aud(",\"aud\":[]", NULL, "events"), JWT_ERR_CLAIMS);
    assert_int_equal(verify_iss_aud("", NULL, "events"), JWT_ERR_CLAIMS);
    assert_int_equal(verify_iss_aud(",\"aud\":[\"events\",7]", NULL, "events"), JWT_ERR_CLAIMS);
    assert_int_equal(verify_iss_aud(",\"aud\":{\"events\":1}", NULL, "events"), JWT_ERR_CLAIMS);
    assert_int_equal(verify_iss_aud(",\"aud\":[\"x\"]", NULL, NULL), JWT_OK);
    assert_int_equal(verify_iss_aud(",\"aud\":\"x\",\"iss\":\"i\"", "i", ""), JWT_OK);
}

/* ---- authorization claims and subject ---- */

static int verify_extra(const char *extra, struct jwt_claims *claims)
{
    char text[JWT_MAX_CLAIMS_LEN];
    snprintf(text, sizeof(text), "{\"exp\":%lld%s}", (long long)(NOW + 60), extra);
    char *token = hs256(HS256, text, SECRET_A);
    int status = verify_policy(token, fx.secrets, &default_policy, claims);
    free(token);
    return status;
}

static void test_bad_authorization_claims_are_refused(void **state)
{
    static const char *const bad[] = {
        ",\"publish\":[\"orders.*.x\"]",
        ",\"publish\":[\"ok\",\"a**\"]",
        ",\"publish\":[\"\"]",
        ",\"subscribe\":[\"bad\\nline\"]",
        ",\"publish\":\"orders.*\"",
        ",\"publish\":[1]",
        ",\"subscribe\":[null]",
        ",\"roles\":[\"bad role\"]",
        ",\"roles\":[\"\"]",
        ",\"roles\":\"admin\"",
        ",\"roles\":[[\"admin\"]]",
        ",\"sub\":42",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct jwt_claims claims;
        int status = verify_extra(bad[i], &claims);
        if (status != JWT_ERR_CLAIMS)
            fail_msg("%s: got %d", bad[i], status);
        assert_true(claims_empty(&claims));
    }
}

static void test_list_claims_are_limited_in_entries(void **state)
{
    char extra[JWT_MAX_CLAIMS_LEN];
    struct jwt_claims claims;
    for (size_t entries = JWT_MAX_LIST; entries <= JWT_MAX_LIST + 1; entries++) {
        size_t w = (size_t)snprintf(extra, sizeof(extra), ",\"roles\":[");
        for (size_t i = 0; i < entries; i++)
            w += (size_t)snprintf(extra + w, sizeof(extra) - w, "%s\"r%zu\"", i ? "," : "", i);
        snprintf(extra + w, sizeof(extra) - w, "]");
        int status = verify_extra(extra, &claims);
        if (entries == JWT_MAX_LIST) {
            assert_int_equal(status, JWT_OK);
            assert_int_equal(claims.role_count, JWT_MAX_LIST);
            assert_string_equal(claims.roles[JWT_MAX_LIST - 1], "r255");
            jwt_claims_clear(&claims);
        } else {
            assert_int_equal(status, JWT_ERR_CLAIMS);
        }
    }
}

static void test_subject_control_characters_are_replaced(void **state)
{
    struct jwt_claims claims;
    assert_int_equal(
        verify_extra(",\"sub\":\"a\\nb\\r\\u001b[31mc\\u007fd\\u0085e\\u00e9\"", &claims), JWT_OK);
    assert_string_equal(claims.subject, "a?b??[31mc?d?e\xc3\xa9");
    jwt_claims_clear(&claims);
}

static void test_long_subject_is_cut_between_characters(void **state)
{
    char extra[600];
    struct jwt_claims claims;

    /* 127 ASCII bytes then a 2-byte character: it does not fit whole. */
    int w = snprintf(extra, sizeof(extra), ",\"sub\":\"");
    memset(extra + w, 'x', JWT_SUBJECT_MAX - 1);
    snprintf(extra + w + JWT_SUBJECT_MAX - 1, sizeof(extra) - (size_t)w - JWT_SUBJECT_MAX + 1,
             "\xc3\xa9yyy\"");
    assert_int_equal(verify_extra(extra, &claims), JWT_OK);
    assert_int_equal(strlen(claims.subject), JWT_SUBJECT_MAX - 1);
    jwt_claims_clear(&claims);

    memset(extra + w, 'z', 300);
    snprintf(extra + w + 300, sizeof(extra) - (size_t)w - 300, "\"");
    assert_int_equal(verify_extra(extra, &claims), JWT_OK);
    assert_int_equal(strlen(claims.subject), JWT_SUBJECT_MAX);
    assert_int_equal(claims.subject[0], 'z');
    jwt_claims_clear(&claims);
}

/* ---- bounded verification: the cache and the refusal of public-key checks ---- */

static int verify_bounded(const char *token, const struct jwt_keys *keys, struct jwt_cache *cache,
                          bool refused, struct jwt_cost *cost)
{
    struct jwt_claims claims;
    cost->public_key_refused = refused;
    int status =
        jwt_verify_bounded(token, strlen(token), keys, cache, &default_policy, NOW, cost, &claims);
    jwt_claims_clear(&claims);
    return status;
}

static char *forged_es256(void)
{
    unsigned char sig[64];
    for (size_t i = 0; i < sizeof(sig); i++)
        sig[i] = (unsigned char)(i * 37 + 11);
    return with_signature(signing_input(ES256, claims_exp(60)), sig, sizeof(sig));
}

static void test_public_key_check_refused_unless_cached_and_hs256_never(void **state)
{
    struct jwt_keys *keys = keys_with_files(SECRET_A "\n", fx.rsa_path, fx.ec_path);
    struct jwt_cache *cache = jwt_cache_new(16);
    char *es = es256(ES256, claims_exp(60)), *rs = rs256(RS256, claims_exp(60));
    char *hs = hs256(HS256, claims_exp(60), SECRET_A);
    struct jwt_cost cost;

    assert_non_null(cache);
    /* Refused: neither signature is checked, whatever it is worth. */
    assert_int_equal(verify_bounded(es, keys, cache, true, &cost), JWT_ERR_REFUSED);
    assert_false(cost.public_key_checked);
    assert_int_equal(verify_bounded(rs, keys, cache, true, &cost), JWT_ERR_REFUSED);
    assert_false(cost.public_key_checked);
    /* HMAC costs nothing worth refusing. */
    assert_int_equal(verify_bounded(hs, keys, cache, true, &cost), JWT_OK);
    assert_false(cost.public_key_checked);
    /* Once verified, a token is accepted while checks are refused. */
    assert_int_equal(verify_bounded(es, keys, cache, false, &cost), JWT_OK);
    assert_true(cost.public_key_checked);
    assert_false(cost.public_key_failed);
    assert_int_equal(verify_bounded(es, keys, cache, true, &cost), JWT_OK);
    assert_false(cost.public_key_checked);
    assert_int_equal(verify_bounded(rs, keys, cache, true, &cost), JWT_ERR_REFUSED);
    /* A change of keys forgets it. */
    jwt_cache_invalidate(cache);
    assert_int_equal(verify_bounded(es, keys, cache, true, &cost), JWT_ERR_REFUSED);
    free(es);
    free(rs);
    free(hs);
    jwt_cache_free(cache);
    jwt_keys_free(keys);
}

static void test_a_forged_signature_is_checked_every_time_and_never_cached(void **state)
{
    struct jwt_cache *cache = jwt_cache_new(16);
    char *forged = forged_es256();
    struct jwt_cost cost;

    for (int i = 0; i < 3; i++) {
        assert_int_equal(verify_bounded(forged, fx.publics, cache, false, &cost),
                         JWT_ERR_SIGNATURE);
        assert_true(cost.public_key_checked);
        assert_true(cost.public_key_failed);
    }
    assert_int_equal(jwt_cache_count(cache), 0);
    assert_int_equal(verify_bounded(forged, fx.publics, cache, true, &cost), JWT_ERR_REFUSED);
    assert_false(cost.public_key_failed);
    free(forged);
    jwt_cache_free(cache);
}

static void test_cached_token_still_has_its_claims_judged_at_each_use(void **state)
{
    struct jwt_cache *cache = jwt_cache_new(16);
    char *expired = es256(ES256, claims_exp(-LEEWAY - 1));
    char *valid = es256(ES256, claims_exp(10));
    struct jwt_claims claims;
    struct jwt_cost cost = {false, false, false};

    /* A genuine but expired token is cached: repeating it stays cheap. */
    assert_int_equal(verify_bounded(expired, fx.publics, cache, false, &cost), JWT_ERR_EXPIRED);
    assert_true(cost.public_key_checked);
    assert_int_equal(verify_bounded(expired, fx.publics, cache, true, &cost), JWT_ERR_EXPIRED);
    assert_false(cost.public_key_checked);
    /* A cached token that was valid expires like any other, and its claims
     * come out as without the cache. */
    assert_int_equal(verify_bounded(valid, fx.publics, cache, false, &cost), JWT_OK);
    cost.public_key_refused = true;
    assert_int_equal(jwt_verify_bounded(valid, strlen(valid), fx.publics, cache, &default_policy,
                                        NOW, &cost, &claims),
                     JWT_OK);
    assert_int_equal(claims.exp, NOW + 10);
    assert_string_equal(claims.subject, "u");
    jwt_claims_clear(&claims);
    assert_int_equal(jwt_verify_bounded(valid, strlen(valid), fx.publics, cache, &default_policy,
                                        NOW + 10 + LEEWAY, &cost, NULL),
                     JWT_ERR_EXPIRED);
    /* The cache vouches for the exact bytes only. */
    char *other = es256(ES256, claims_exp(10));
    assert_int_equal(verify_bounded(other, fx.publics, cache, true, &cost), JWT_ERR_REFUSED);
    free(other);
    free(expired);
    free(valid);
    jwt_cache_free(cache);
}

/* ---- odds and ends ---- */

static void test_failed_verification_leaves_claims_empty(void **state)
{
    struct jwt_claims claims;
    memset(&claims, 0x5a, sizeof(claims));
    assert_int_equal(verify_extra(",\"roles\":[\"ok\"],\"publish\":[\"a**\"]", &claims),
                     JWT_ERR_CLAIMS);
    assert_true(claims_empty(&claims));
    memset(&claims, 0x5a, sizeof(claims));
    assert_int_equal(jwt_verify("x", 1, fx.secrets, NULL, NOW, &claims), JWT_ERR_MALFORMED);
    assert_true(claims_empty(&claims));
    jwt_claims_clear(&claims);
    jwt_claims_clear(NULL);
}

static void test_base64url_decode_known_answers(void **state)
{
    static const struct {
        const char *in;
        const char *out;
    } good[] = {
        {"", ""},           {"Zg", "f"},          {"Zm8", "fo"},          {"Zm9v", "foo"},
        {"Zm9vYg", "foob"}, {"Zm9vYmE", "fooba"}, {"Zm9vYmFy", "foobar"}, {"-_8", "\xfb\xff"},
    };
    unsigned char out[16];
    size_t out_len;
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        assert_int_equal(jwt_base64url_decode(good[i].in, strlen(good[i].in), out, &out_len), 0);
        assert_int_equal(out_len, strlen(good[i].out));
        assert_memory_equal(out, good[i].out, out_len);
    }
    static const char *const bad[] = {"Z",    "Zm9vY", "Zg==", "Zm8=",   "Zh",  "Zm9",
                                      "Zm+v", "Zm/v",  "Zm v", "Zm9v\n", "Z\0g"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        size_t len = i == sizeof(bad) / sizeof(bad[0]) - 1 ? 3 : strlen(bad[i]);
        if (jwt_base64url_decode(bad[i], len, out, &out_len) != -1)
            fail_msg("'%s' was accepted", bad[i]);
    }
}

static void test_status_texts_are_distinct(void **state)
{
    const int statuses[] = {JWT_OK,
                            JWT_ERR_MALFORMED,
                            JWT_ERR_ALGORITHM,
                            JWT_ERR_SIGNATURE,
                            JWT_ERR_EXPIRED,
                            JWT_ERR_NOT_YET_VALID,
                            JWT_ERR_CLAIMS,
                            JWT_ERR_NOMEM,
                            JWT_ERR_REFUSED,
                            -99};
    size_t n = sizeof(statuses) / sizeof(statuses[0]);
    for (size_t i = 0; i < n; i++) {
        assert_non_null(jwt_status_text(statuses[i]));
        for (size_t j = 0; j < i; j++)
            assert_string_not_equal(jwt_status_text(statuses[i]), jwt_status_text(statuses[j]));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc7515_a1_hs256_example_verifies),
        cmocka_unit_test(test_rfc7515_a1_with_one_signature_bit_flipped_is_refused),
        cmocka_unit_test(test_secrets_file_line_with_the_a1_key_bytes_verifies),
        cmocka_unit_test(test_hs256_token_fills_every_claim),
        cmocka_unit_test(test_absent_and_empty_authorization_claims_are_told_apart),
        cmocka_unit_test(test_rs256_token_signed_with_the_configured_key_verifies),
        cmocka_unit_test(test_es256_token_signed_with_the_configured_key_verifies),
        cmocka_unit_test(test_secrets_and_public_keys_together_accept_each_kind),
        cmocka_unit_test(test_expired_beyond_leeway_is_refused),
        cmocka_unit_test(test_expired_within_leeway_is_accepted),
        cmocka_unit_test(test_fractional_exp_is_a_number_like_any_other),
        cmocka_unit_test(test_nbf_in_the_future_is_refused_beyond_leeway),
        cmocka_unit_test(test_iat_in_the_future_is_refused_beyond_leeway),
        cmocka_unit_test(test_far_future_exp_is_kept_exact),
        cmocka_unit_test(test_time_claims_beyond_2_to_the_53_are_refused_in_either_direction),
        cmocka_unit_test(test_time_claims_far_in_the_past_are_ordinary),
        cmocka_unit_test(test_extreme_clock_values_are_judged_without_overflow),
        cmocka_unit_test(test_end_time_is_exp_plus_leeway_saturated),
        cmocka_unit_test(test_verification_count_counts_signature_checks_only),
        cmocka_unit_test(test_missing_or_mistyped_time_claims_are_refused),
        cmocka_unit_test(test_one_flipped_signature_bit_is_refused_for_each_algorithm),
        cmocka_unit_test(test_changed_claims_under_a_valid_signature_are_refused),
        cmocka_unit_test(test_wrong_secret_is_refused),
        cmocka_unit_test(test_every_configured_secret_verifies_for_rotation),
        cmocka_unit_test(test_secrets_file_with_cr_only_line_endings_gives_every_secret),
        cmocka_unit_test(test_secrets_file_rules),
        cmocka_unit_test(test_public_key_files_that_cannot_serve_are_refused),
        cmocka_unit_test(test_alg_none_is_refused_with_or_without_signature),
        cmocka_unit_test(test_hs256_is_refused_when_only_public_keys_are_configured),
        cmocka_unit_test(test_rs256_and_es256_are_refused_when_only_secrets_are_configured),
        cmocka_unit_test(test_hs256_keyed_with_the_public_key_pem_is_refused),
        cmocka_unit_test(test_unknown_or_missing_alg_is_refused),
        cmocka_unit_test(test_crit_header_is_refused),
        cmocka_unit_test(test_malformed_base64url_is_refused),
        cmocka_unit_test(test_nonzero_trailing_bits_are_refused),
        cmocka_unit_test(test_wrong_number_of_parts_is_refused),
        cmocka_unit_test(test_header_and_claims_are_limited_in_size),
        cmocka_unit_test(test_oversized_token_is_refused_before_reading),
        cmocka_unit_test(test_bad_json_is_refused_as_malformed),
        cmocka_unit_test(test_issuer_must_match_when_configured),
        cmocka_unit_test(test_audience_must_match_as_string_or_array_member),
        cmocka_unit_test(test_bad_authorization_claims_are_refused),
        cmocka_unit_test(test_list_claims_are_limited_in_entries),
        cmocka_unit_test(test_subject_control_characters_are_replaced),
        cmocka_unit_test(test_public_key_check_refused_unless_cached_and_hs256_never),
        cmocka_unit_test(test_a_forged_signature_is_checked_every_time_and_never_cached),
        cmocka_unit_test(test_cached_token_still_has_its_claims_judged_at_each_use),
        cmocka_unit_test(test_long_subject_is_cut_between_characters),
        cmocka_unit_test(test_failed_verification_leaves_claims_empty),
        cmocka_unit_test(test_base64url_decode_known_answers),
        cmocka_unit_test(test_status_texts_are_distinct),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
