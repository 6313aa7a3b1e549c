/* Unit tests for common/core/config.c: defaults, environment, flags and errors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/config.h"
#include "core/log.h"

#ifndef EVS_VERSION
#define EVS_VERSION "0.0.0"
#endif

struct settings {
    uint16_t port;
    char *bind;
    char *tokens;
    bool tls;
    struct cfg_list bus;
    uint64_t wait_ms;
    uint64_t max_body;
    uint64_t buffer;
    uint64_t count;
    enum log_level log_level;
};

static struct settings s;
static char err[256];

static const struct cfg_program program = {
    .name = "event-test",
    .summary = "Test daemon for the configuration parser.",
    .usage_notes = "Notes: sizes take k, m or g.",
};

static const struct cfg_option options[] = {
    {"--port", "LISTEN_PORT", CFG_PORT, "8080", "TCP port for HTTP.", &s.port, 0, 0},
    {"--bind", "BIND_ADDRESS", CFG_STRING, NULL, "Address to bind.", &s.bind, 0, 0},
    {"--tokens", "TOKENS_FILE", CFG_STRING, "/tokens/tokens", "Tokens file.", &s.tokens, 0, 0},
    {"--tls", "HTTPS_ENABLE", CFG_BOOL, "false", "Serve HTTPS.", &s.tls, 0, 0},
    {"--bus", "BUS_SOCKET", CFG_LIST, "/run/bus.sock", "Bus sockets.", &s.bus, 0, 0},
    {"--bus-wait-ms", "BUS_WAIT_MS", CFG_UINT, "5000", "Wait for the bus.", &s.wait_ms, 1, 60000},
    {"--max-body", "MAX_BODY", CFG_SIZE, "1M", "Largest body.", &s.max_body, 1024, 1 << 30},
    {"--buffer", NULL, CFG_SIZE, "64k", "Buffer size.", &s.buffer, 0, 0},
    {"--count", "COUNT", CFG_UINT, NULL, "A count.", &s.count, 0, 0},
    {"--log-level", "LOG_LEVEL", CFG_LOG_LEVEL, "info", "Log level.", &s.log_level, 0, 0},
};
#define OPTION_COUNT (sizeof(options) / sizeof(options[0]))

#define ARGS(...) ((char *[]){"event-test", __VA_ARGS__, NULL})
#define NO_ARGS ((char *[]){"event-test", NULL})
#define ENV(...) ((char *[]){__VA_ARGS__, NULL})
#define NO_ENV ((char *[]){NULL})

static enum cfg_status parse(char **argv, char **envp)
{
    int argc = 0;
    while (argv[argc] != NULL)
        argc++;
    return cfg_parse(&program, options, OPTION_COUNT, argc, argv, envp, err, sizeof(err));
}

static int setup(void **state)
{
    memset(&s, 0xa5, sizeof(s)); /* garbage: cfg_parse must not read or free it */
    memset(err, 0, sizeof(err));
    return 0;
}

static int teardown(void **state)
{
    cfg_free(options, OPTION_COUNT);
    return 0;
}

/* Captures what is written to stdout (fd 1) between begin and end. */
struct capture {
    FILE *file;
    int saved;
    char text[8192];
};

static void capture_begin(struct capture *c, int fd)
{
    fflush(stdout);
    c->file = tmpfile();
    assert_non_null(c->file);
    c->saved = dup(fd);
    assert_true(c->saved >= 0);
    assert_true(dup2(fileno(c->file), fd) >= 0);
}

static void capture_end(struct capture *c, int fd)
{
    fflush(stdout);
    assert_true(dup2(c->saved, fd) >= 0);
    close(c->saved);
    assert_int_equal(fseek(c->file, 0, SEEK_SET), 0);
    size_t n = fread(c->text, 1, sizeof(c->text) - 1, c->file);
    c->text[n] = '\0';
    fclose(c->file);
}

static void assert_error(char **argv, char **envp, const char *expected)
{
    assert_int_equal(parse(argv, envp), CFG_ERROR);
    assert_string_equal(err, expected);
}

static void test_defaults_apply_when_nothing_is_given(void **state)
{
    assert_int_equal(parse(NO_ARGS, NO_ENV), CFG_OK);
    assert_string_equal(err, "");
    assert_int_equal(s.port, 8080);
    assert_null(s.bind);
    assert_string_equal(s.tokens, "/tokens/tokens");
    assert_false(s.tls);
    assert_int_equal(s.bus.count, 1);
    assert_string_equal(s.bus.items[0], "/run/bus.sock");
    assert_int_equal(s.wait_ms, 5000);
    assert_int_equal(s.max_body, 1024 * 1024);
    assert_int_equal(s.buffer, 64 * 1024);
    assert_int_equal(s.count, 0);
    assert_int_equal(s.log_level, LOG_LEVEL_INFO);
}

static void test_environment_overrides_defaults(void **state)
{
    assert_int_equal(parse(NO_ARGS, ENV("LISTEN_PORT=9000", "BIND_ADDRESS=127.0.0.1",
                                        "HTTPS_ENABLE=yes", "BUS_WAIT_MS=250", "MAX_BODY=2k",
                                        "COUNT=7", "LOG_LEVEL=DEBUG", "UNRELATED=1")),
                     CFG_OK);
    assert_int_equal(s.port, 9000);
    assert_string_equal(s.bind, "127.0.0.1");
    assert_true(s.tls);
    assert_int_equal(s.wait_ms, 250);
    assert_int_equal(s.max_body, 2048);
    assert_int_equal(s.count, 7);
    assert_int_equal(s.log_level, LOG_LEVEL_DEBUG);
    assert_string_equal(s.tokens, "/tokens/tokens");
}

static void test_environment_name_must_match_exactly(void **state)
{
    assert_int_equal(parse(NO_ARGS, ENV("LISTEN_PORTX=1", "XLISTEN_PORT=2", "LISTEN_PORT")),
                     CFG_OK);
    assert_int_equal(s.port, 8080);
}

static void test_flag_beats_environment(void **state)
{
    assert_int_equal(parse(ARGS("--port", "7000", "--log-level=warn", "--tls=off"),
                           ENV("LISTEN_PORT=9000", "LOG_LEVEL=debug", "HTTPS_ENABLE=true")),
                     CFG_OK);
    assert_int_equal(s.port, 7000);
    assert_int_equal(s.log_level, LOG_LEVEL_WARN);
    assert_false(s.tls);
}

static void test_flag_takes_separate_or_equals_value(void **state)
{
    assert_int_equal(
        parse(ARGS("--bind", "::1", "--tokens=/etc/t", "--count", "3", "--buffer=2m"), NO_ENV),
        CFG_OK);
    assert_string_equal(s.bind, "::1");
    assert_string_equal(s.tokens, "/etc/t");
    assert_int_equal(s.count, 3);
    assert_int_equal(s.buffer, 2 * 1024 * 1024);
}

static void test_equals_value_may_contain_equals_and_dashes(void **state)
{
    assert_int_equal(parse(ARGS("--tokens=--odd=name", "--bind", "-x"), NO_ENV), CFG_OK);
    assert_string_equal(s.tokens, "--odd=name");
    assert_string_equal(s.bind, "-x");
}

static void test_last_scalar_flag_wins(void **state)
{
    assert_int_equal(parse(ARGS("--port", "1", "--port=2", "--bind", "a", "--bind", "b"), NO_ENV),
                     CFG_OK);
    assert_int_equal(s.port, 2);
    assert_string_equal(s.bind, "b");
}

static void test_bare_bool_flag_means_true(void **state)
{
    assert_int_equal(parse(ARGS("--tls"), ENV("HTTPS_ENABLE=false")), CFG_OK);
    assert_true(s.tls);
}

static void test_bool_accepts_every_spelling(void **state)
{
    const char *truths[] = {"true", "TRUE", "1", "yes", "Yes", "on", "ON"};
    const char *falsehoods[] = {"false", "False", "0", "no", "NO", "off", "Off"};
    char arg[32];

    for (size_t i = 0; i < sizeof(truths) / sizeof(truths[0]); i++) {
        snprintf(arg, sizeof(arg), "--tls=%s", truths[i]);
        assert_int_equal(parse(ARGS(arg), NO_ENV), CFG_OK);
        assert_true(s.tls);
        cfg_free(options, OPTION_COUNT);
        snprintf(arg, sizeof(arg), "--tls=%s", falsehoods[i]);
        assert_int_equal(parse(ARGS(arg), ENV("HTTPS_ENABLE=1")), CFG_OK);
        assert_false(s.tls);
        cfg_free(options, OPTION_COUNT);
    }
}

static void test_bool_flag_does_not_take_the_next_argument(void **state)
{
    assert_error(ARGS("--tls", "false"), NO_ENV, "unexpected argument 'false'");
}

static void test_empty_string_is_allowed(void **state)
{
    assert_int_equal(parse(ARGS("--bind="), ENV("TOKENS_FILE=")), CFG_OK);
    assert_string_equal(s.bind, "");
    assert_string_equal(s.tokens, "");
    cfg_free(options, OPTION_COUNT);
    assert_int_equal(parse(ARGS("--tokens", ""), ENV("BIND_ADDRESS=x")), CFG_OK);
    assert_string_equal(s.tokens, "");
    assert_string_equal(s.bind, "x");
}

static void test_null_envp_reads_process_environment(void **state)
{
    assert_int_equal(setenv("LISTEN_PORT", "4321", 1), 0);
    assert_int_equal(setenv("BUS_SOCKET", "/a,/b", 1), 0);
    enum cfg_status status = parse(NO_ARGS, NULL);
    unsetenv("LISTEN_PORT");
    unsetenv("BUS_SOCKET");
    assert_int_equal(status, CFG_OK);
    assert_int_equal(s.port, 4321);
    assert_int_equal(s.bus.count, 2);
}

static void test_port_range_and_syntax(void **state)
{
    assert_int_equal(parse(ARGS("--port", "65535"), NO_ENV), CFG_OK);
    assert_int_equal(s.port, 65535);
    cfg_free(options, OPTION_COUNT);
    assert_int_equal(parse(ARGS("--port", "00001"), NO_ENV), CFG_OK);
    assert_int_equal(s.port, 1);
    cfg_free(options, OPTION_COUNT);

    assert_error(ARGS("--port", "abc"), NO_ENV, "--port: 'abc' is not a port number (1-65535)");
    assert_error(ARGS("--port=0"), NO_ENV, "--port: '0' is not a port number (1-65535)");
    assert_error(ARGS("--port=65536"), NO_ENV, "--port: '65536' is not a port number (1-65535)");
    assert_error(ARGS("--port=-1"), NO_ENV, "--port: '-1' is not a port number (1-65535)");
    assert_error(ARGS("--port=+80"), NO_ENV, "--port: '+80' is not a port number (1-65535)");
    assert_error(ARGS("--port= 80"), NO_ENV, "--port: ' 80' is not a port number (1-65535)");
    assert_error(ARGS("--port=80 "), NO_ENV, "--port: '80 ' is not a port number (1-65535)");
    assert_error(ARGS("--port=0x50"), NO_ENV, "--port: '0x50' is not a port number (1-65535)");
    assert_error(ARGS("--port="), NO_ENV, "--port: '' is not a port number (1-65535)");
    assert_error(ARGS("--port=99999999999999999999999"), NO_ENV,
                 "--port: '99999999999999999999999' is not a port number (1-65535)");
}

static void test_uint_bounds_and_overflow(void **state)
{
    assert_int_equal(parse(ARGS("--bus-wait-ms=1", "--count=18446744073709551615"), NO_ENV),
                     CFG_OK);
    assert_int_equal(s.wait_ms, 1);
    assert_int_equal(s.count, UINT64_MAX);
    cfg_free(options, OPTION_COUNT);

    assert_error(ARGS("--bus-wait-ms=0"), NO_ENV, "--bus-wait-ms: '0' is out of range (1-60000)");
    assert_error(ARGS("--bus-wait-ms=60001"), NO_ENV,
                 "--bus-wait-ms: '60001' is out of range (1-60000)");
    assert_error(ARGS("--count=18446744073709551616"), NO_ENV,
                 "--count: '18446744073709551616' is out of range (0-18446744073709551615)");
    assert_error(ARGS("--count=1e3"), NO_ENV, "--count: '1e3' is not a number");
    assert_error(ARGS("--count=-0"), NO_ENV, "--count: '-0' is not a number");
    assert_error(ARGS("--count", "12k"), NO_ENV, "--count: '12k' is not a number");
}

static void test_size_suffixes_multiply_by_powers_of_1024(void **state)
{
    static const struct {
        const char *text;
        uint64_t bytes;
    } cases[] = {
        {"0", 0},
        {"10", 10},
        {"1k", 1024},
        {"3K", 3072},
        {"2m", 2u << 20},
        {"5M", 5u << 20},
        {"1g", 1u << 30},
        {"7G", UINT64_C(7) << 30},
        {"17179869183G", UINT64_C(17179869183) << 30},
        {"18446744073709551615", UINT64_MAX},
    };
    char arg[64];

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        snprintf(arg, sizeof(arg), "--buffer=%s", cases[i].text);
        assert_int_equal(parse(ARGS(arg), NO_ENV), CFG_OK);
        assert_int_equal(s.buffer, cases[i].bytes);
        cfg_free(options, OPTION_COUNT);
    }
}

static void test_size_rejects_bad_text_and_overflow(void **state)
{
    static const char not_size[] = "is not a size (bytes, with an optional suffix k, m or g)";
    char expected[160];

    snprintf(expected, sizeof(expected), "--buffer: 'k' %s", not_size);
    assert_error(ARGS("--buffer=k"), NO_ENV, expected);
    snprintf(expected, sizeof(expected), "--buffer: '10kb' %s", not_size);
    assert_error(ARGS("--buffer=10kb"), NO_ENV, expected);
    snprintf(expected, sizeof(expected), "--buffer: '1t' %s", not_size);
    assert_error(ARGS("--buffer=1t"), NO_ENV, expected);
    snprintf(expected, sizeof(expected), "--buffer: '-1k' %s", not_size);
    assert_error(ARGS("--buffer=-1k"), NO_ENV, expected);
    snprintf(expected, sizeof(expected), "--buffer: '' %s", not_size);
    assert_error(ARGS("--buffer="), NO_ENV, expected);

    assert_error(ARGS("--buffer=17179869184G"), NO_ENV,
                 "--buffer: '17179869184G' is out of range (0-18446744073709551615)");
    assert_error(ARGS("--buffer=18014398509481984k"), NO_ENV,
                 "--buffer: '18014398509481984k' is out of range (0-18446744073709551615)");
    assert_error(ARGS("--buffer=18446744073709551616"), NO_ENV,
                 "--buffer: '18446744073709551616' is out of range (0-18446744073709551615)");
    assert_error(ARGS("--max-body=1023"), NO_ENV,
                 "--max-body: '1023' is out of range (1024-1073741824)");
    assert_error(ARGS("--max-body=2g"), NO_ENV,
                 "--max-body: '2g' is out of range (1024-1073741824)");
}

static void test_bad_bool_and_log_level_are_errors(void **state)
{
    assert_error(ARGS("--tls=maybe"), NO_ENV,
                 "--tls: 'maybe' is not a boolean (true/false, yes/no, on/off, 1/0)");
    assert_error(ARGS("--tls="), NO_ENV,
                 "--tls: '' is not a boolean (true/false, yes/no, on/off, 1/0)");
    assert_error(ARGS("--log-level", "verbose"), NO_ENV,
                 "--log-level: 'verbose' is not a log level (error, warn, info, debug)");
}

static void test_unknown_option_is_an_error(void **state)
{
    assert_error(ARGS("--x"), NO_ENV, "unknown option '--x'");
    assert_error(ARGS("--x=1"), NO_ENV, "unknown option '--x'");
    assert_error(ARGS("--por", "80"), NO_ENV, "unknown option '--por'");
    assert_error(ARGS("--PORT", "80"), NO_ENV, "unknown option '--PORT'");
    assert_error(ARGS("-p", "80"), NO_ENV, "unknown option '-p'");
    assert_error(ARGS("---port", "80"), NO_ENV, "unknown option '---port'");
}

static void test_unknown_option_name_is_bounded_and_escaped(void **state)
{
    char arg[300];
    memset(arg, 'y', sizeof(arg) - 1);
    arg[0] = '-';
    arg[1] = '-';
    arg[2] = '\n';
    arg[sizeof(arg) - 1] = '\0';

    assert_int_equal(parse(ARGS(arg), NO_ENV), CFG_ERROR);
    assert_null(strchr(err, '\n'));
    assert_true(strncmp(err, "unknown option '--\\x0ayyy", 25) == 0);
    assert_non_null(strstr(err, "...'"));
    assert_true(strlen(err) < 100);
}

static void test_flag_without_value_is_an_error(void **state)
{
    assert_error(ARGS("--port"), NO_ENV, "--port: missing value");
    assert_error(ARGS("--bind", "--tls"), NO_ENV, "--bind: missing value");
    assert_error(ARGS("--bus"), NO_ENV, "--bus: missing value");
}

static void test_positional_arguments_are_errors(void **state)
{
    assert_error(ARGS("serve"), NO_ENV, "unexpected argument 'serve'");
    assert_error(ARGS("--port", "80", "extra"), NO_ENV, "unexpected argument 'extra'");
    assert_error(ARGS("-"), NO_ENV, "unexpected argument '-'");
    assert_error(ARGS("--", "file"), NO_ENV, "unexpected argument 'file'");
    assert_int_equal(parse(ARGS("--port", "81", "--"), NO_ENV), CFG_OK);
    assert_int_equal(s.port, 81);
}

static void test_bad_environment_value_names_the_variable(void **state)
{
    assert_error(NO_ARGS, ENV("LISTEN_PORT=70000"),
                 "LISTEN_PORT: '70000' is not a port number (1-65535)");
    assert_error(NO_ARGS, ENV("HTTPS_ENABLE=sometimes"),
                 "HTTPS_ENABLE: 'sometimes' is not a boolean (true/false, yes/no, on/off, 1/0)");
    assert_error(NO_ARGS, ENV("BUS_WAIT_MS=0"), "BUS_WAIT_MS: '0' is out of range (1-60000)");
    assert_error(NO_ARGS, ENV("LOG_LEVEL=loud"),
                 "LOG_LEVEL: 'loud' is not a log level (error, warn, info, debug)");
    assert_error(NO_ARGS, ENV("BUS_SOCKET=/a,,/b"), "BUS_SOCKET: '/a,,/b' has an empty item");
}

static void test_bad_environment_value_is_an_error_even_when_a_flag_overrides_it(void **state)
{
    assert_error(ARGS("--port", "80"), ENV("LISTEN_PORT=abc"),
                 "LISTEN_PORT: 'abc' is not a port number (1-65535)");
}

static void test_every_error_names_the_flag_or_variable_first(void **state)
{
    static const struct {
        const char *arg; /* NULL: env only */
        const char *env; /* NULL: flag only */
        const char *name;
    } cases[] = {
        {"--port=x", NULL, "--port"},
        {"--port=0", NULL, "--port"},
        {"--tls=2", NULL, "--tls"},
        {"--bus-wait-ms=x", NULL, "--bus-wait-ms"},
        {"--bus-wait-ms=99999999", NULL, "--bus-wait-ms"},
        {"--max-body=1x", NULL, "--max-body"},
        {"--max-body=99999999999g", NULL, "--max-body"},
        {"--log-level=x", NULL, "--log-level"},
        {"--bus=a,", NULL, "--bus"},
        {"--bind", NULL, "--bind"},
        {NULL, "LISTEN_PORT=x", "LISTEN_PORT"},
        {NULL, "HTTPS_ENABLE=x", "HTTPS_ENABLE"},
        {NULL, "BUS_WAIT_MS=x", "BUS_WAIT_MS"},
        {NULL, "MAX_BODY=x", "MAX_BODY"},
        {NULL, "COUNT=-1", "COUNT"},
        {NULL, "LOG_LEVEL=x", "LOG_LEVEL"},
        {NULL, "BUS_SOCKET=,", "BUS_SOCKET"},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *argv[] = {"event-test", (char *)cases[i].arg, NULL};
        char *envp[] = {(char *)cases[i].env, NULL};
        assert_int_equal(parse(argv, envp), CFG_ERROR);
        size_t n = strlen(cases[i].name);
        if (strncmp(err, cases[i].name, n) != 0 || err[n] != ':') {
            fail_msg("error '%s' does not start with '%s:'", err, cases[i].name);
        }
        assert_null(strchr(err, '\n'));
    }
}

static void test_bad_value_is_escaped_and_bounded_in_error(void **state)
{
    char value[200];
    memset(value, '9', sizeof(value) - 1);
    value[sizeof(value) - 1] = '\0';
    value[1] = '\r';
    value[2] = '\n';
    char arg[220];
    snprintf(arg, sizeof(arg), "--port=%s", value);

    assert_int_equal(parse(ARGS(arg), NO_ENV), CFG_ERROR);
    assert_null(strchr(err, '\n'));
    assert_null(strchr(err, '\r'));
    assert_true(strncmp(err, "--port: '9\\x0d\\x0a999", 21) == 0);
    assert_non_null(strstr(err, "...' is not a port number (1-65535)"));
}

static void test_error_fits_a_small_buffer(void **state)
{
    char small[8];
    memset(small, 'z', sizeof(small));

    assert_int_equal(cfg_parse(&program, options, OPTION_COUNT, 2, ARGS("--port=x"), NO_ENV, small,
                               sizeof(small)),
                     CFG_ERROR);
    assert_string_equal(small, "--port:");
    assert_int_equal(
        cfg_parse(&program, options, OPTION_COUNT, 2, ARGS("--port=x"), NO_ENV, NULL, 0),
        CFG_ERROR);
}

static void test_errors_are_not_printed(void **state)
{
    struct capture out, errout;

    capture_begin(&out, STDOUT_FILENO);
    capture_begin(&errout, STDERR_FILENO);
    enum cfg_status status = parse(ARGS("--nope"), ENV("LISTEN_PORT=1"));
    capture_end(&errout, STDERR_FILENO);
    capture_end(&out, STDOUT_FILENO);

    assert_int_equal(status, CFG_ERROR);
    assert_string_equal(out.text, "");
    assert_string_equal(errout.text, "");
}

static void test_error_frees_strings_and_lists(void **state)
{
    assert_int_equal(parse(ARGS("--bind", "x", "--bus", "/a", "--port", "bad"), NO_ENV), CFG_ERROR);
    assert_null(s.bind);
    assert_null(s.tokens);
    assert_null(s.bus.items);
    assert_int_equal(s.bus.count, 0);
}

static void test_list_default_and_environment_split_on_commas(void **state)
{
    assert_int_equal(parse(NO_ARGS, ENV("BUS_SOCKET=/a.sock, /b.sock ,/c.sock")), CFG_OK);
    assert_int_equal(s.bus.count, 3);
    assert_string_equal(s.bus.items[0], "/a.sock");
    assert_string_equal(s.bus.items[1], "/b.sock");
    assert_string_equal(s.bus.items[2], "/c.sock");
}

static void test_list_flags_append_and_replace_environment(void **state)
{
    assert_int_equal(parse(ARGS("--bus", "/x", "--port=1", "--bus=/y,/z", "--bus", "/w"),
                           ENV("BUS_SOCKET=/env1,/env2")),
                     CFG_OK);
    assert_int_equal(s.bus.count, 4);
    assert_string_equal(s.bus.items[0], "/x");
    assert_string_equal(s.bus.items[1], "/y");
    assert_string_equal(s.bus.items[2], "/z");
    assert_string_equal(s.bus.items[3], "/w");
}

static void test_list_flag_replaces_default(void **state)
{
    assert_int_equal(parse(ARGS("--bus", "/only"), NO_ENV), CFG_OK);
    assert_int_equal(s.bus.count, 1);
    assert_string_equal(s.bus.items[0], "/only");
}

static void test_list_empty_items_are_errors(void **state)
{
    assert_error(ARGS("--bus=/a,"), NO_ENV, "--bus: '/a,' has an empty item");
    assert_error(ARGS("--bus", ",/a"), NO_ENV, "--bus: ',/a' has an empty item");
    assert_error(ARGS("--bus", "/a, ,/b"), NO_ENV, "--bus: '/a, ,/b' has an empty item");
    assert_error(ARGS("--bus="), NO_ENV, "--bus: '' has an empty item");
    assert_error(ARGS("--bus=/a", "--bus=/b,,"), NO_ENV, "--bus: '/b,,' has an empty item");
    assert_error(NO_ARGS, ENV("BUS_SOCKET="), "BUS_SOCKET: '' has an empty item");
}

static void test_cfg_free_resets_targets_and_is_repeatable(void **state)
{
    assert_int_equal(parse(ARGS("--bind", "x"), NO_ENV), CFG_OK);
    cfg_free(options, OPTION_COUNT);
    assert_null(s.bind);
    assert_null(s.tokens);
    assert_null(s.bus.items);
    assert_int_equal(s.bus.count, 0);
    cfg_free(options, OPTION_COUNT);
    assert_null(s.tokens);
}

static void test_help_prints_to_stdout_and_exits(void **state)
{
    struct capture out;

    capture_begin(&out, STDOUT_FILENO);
    enum cfg_status status = parse(ARGS("--port=1", "--help", "--nonsense"), NO_ENV);
    capture_end(&out, STDOUT_FILENO);

    assert_int_equal(status, CFG_EXIT);
    assert_true(strncmp(out.text, "Usage: event-test", 17) == 0);
    assert_null(s.tokens);

    capture_begin(&out, STDOUT_FILENO);
    status = parse(ARGS("-h"), NO_ENV);
    capture_end(&out, STDOUT_FILENO);
    assert_int_equal(status, CFG_EXIT);
    assert_true(strncmp(out.text, "Usage: event-test", 17) == 0);
}

static void test_version_prints_name_and_version(void **state)
{
    struct capture out;

    capture_begin(&out, STDOUT_FILENO);
    enum cfg_status status = parse(ARGS("--version"), NO_ENV);
    capture_end(&out, STDOUT_FILENO);

    assert_int_equal(status, CFG_EXIT);
    assert_string_equal(out.text, "event-test " EVS_VERSION "\n");
}

static void test_help_text_lists_every_option(void **state)
{
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    assert_non_null(out);
    cfg_print_help(&program, options, OPTION_COUNT, out);
    fclose(out);

    static const char head[] = "Usage: event-test [OPTION]...\n"
                               "Test daemon for the configuration parser.\n";
    assert_true(strncmp(text, head, sizeof(head) - 1) == 0);
    assert_non_null(strstr(text, "\n  --port N  (env LISTEN_PORT, default 8080)\n"
                                 "      TCP port for HTTP.\n"));
    assert_non_null(strstr(text, "\n  --bind VALUE  (env BIND_ADDRESS)\n"
                                 "      Address to bind.\n"));
    assert_non_null(strstr(text, "\n  --tls[=BOOL]  (env HTTPS_ENABLE, default false)\n"));
    assert_non_null(strstr(text, "\n  --bus VALUE[,VALUE...]  (env BUS_SOCKET, "
                                 "default /run/bus.sock)\n"));
    assert_non_null(strstr(text, "\n  --buffer SIZE  (default 64k)\n"));
    assert_non_null(strstr(text, "\n  --log-level LEVEL  (env LOG_LEVEL, default info)\n"));
    assert_non_null(strstr(text, "\n  -h, --help\n"));
    assert_non_null(strstr(text, "\n  --version\n"));
    for (size_t i = 0; i < OPTION_COUNT; i++) {
        char needle[64];
        snprintf(needle, sizeof(needle), "\n  %s", options[i].flag);
        assert_non_null(strstr(text, needle));
    }
    /* Notes come last, on their own line. */
    size_t notes_len = strlen("\nNotes: sizes take k, m or g.\n");
    assert_true(len > notes_len);
    assert_string_equal(text + len - notes_len, "\nNotes: sizes take k, m or g.\n");
    free(text);
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_defaults_apply_when_nothing_is_given),
        T(test_environment_overrides_defaults),
        T(test_environment_name_must_match_exactly),
        T(test_flag_beats_environment),
        T(test_flag_takes_separate_or_equals_value),
        T(test_equals_value_may_contain_equals_and_dashes),
        T(test_last_scalar_flag_wins),
        T(test_bare_bool_flag_means_true),
        T(test_bool_accepts_every_spelling),
        T(test_bool_flag_does_not_take_the_next_argument),
        T(test_empty_string_is_allowed),
        T(test_null_envp_reads_process_environment),
        T(test_port_range_and_syntax),
        T(test_uint_bounds_and_overflow),
        T(test_size_suffixes_multiply_by_powers_of_1024),
        T(test_size_rejects_bad_text_and_overflow),
        T(test_bad_bool_and_log_level_are_errors),
        T(test_unknown_option_is_an_error),
        T(test_unknown_option_name_is_bounded_and_escaped),
        T(test_flag_without_value_is_an_error),
        T(test_positional_arguments_are_errors),
        T(test_bad_environment_value_names_the_variable),
        T(test_bad_environment_value_is_an_error_even_when_a_flag_overrides_it),
        T(test_every_error_names_the_flag_or_variable_first),
        T(test_bad_value_is_escaped_and_bounded_in_error),
        T(test_error_fits_a_small_buffer),
        T(test_errors_are_not_printed),
        T(test_error_frees_strings_and_lists),
        T(test_list_default_and_environment_split_on_commas),
        T(test_list_flags_append_and_replace_environment),
        T(test_list_flag_replaces_default),
        T(test_list_empty_items_are_errors),
        T(test_cfg_free_resets_targets_and_is_repeatable),
        T(test_help_prints_to_stdout_and_exits),
        T(test_version_prints_name_and_version),
        cmocka_unit_test(test_help_text_lists_every_option),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
