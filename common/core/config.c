/* Settings from defaults, the environment and the command line.
 *
 * Every value, whatever its origin, goes through one parser per type, so a
 * default, a variable and a flag accept exactly the same text. Errors name
 * where the bad value came from (the flag or the variable) in their first
 * word, because the operator has to find it in a unit file or a shell line.
 */
#include "core/config.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "core/error_message.h"
#include "core/log.h"

#ifndef EVS_VERSION
#define EVS_VERSION "0.0.0"
#endif

/* Longest part of a bad value repeated in an error message. */
#define CFG_QUOTE_MAX 64

enum cfg_list_mode {
    CFG_LIST_REPLACE, /* the value replaces the list (default, environment, first flag) */
    CFG_LIST_APPEND,  /* the value extends the list (a repeated flag) */
};

/* Copies a user-supplied value for an error message: bounded in length and
 * with control bytes escaped, so the reason stays one short line. */
static void cfg_quote(char *buf, size_t cap, const char *value)
{
    static const char hex[] = "0123456789abcdef";
    size_t used = 0;
    size_t i;

    for (i = 0; value[i] != '\0' && i < CFG_QUOTE_MAX; i++) {
        unsigned char c = (unsigned char)value[i];
        if (used + 5 > cap)
            break;
        if (c < 0x20 || c == 0x7f) {
            buf[used++] = '\\';
            buf[used++] = 'x';
            buf[used++] = hex[c >> 4];
            buf[used++] = hex[c & 0x0f];
        } else {
            buf[used++] = (char)c;
        }
    }
    if (value[i] != '\0' && used + 4 <= cap) {
        memcpy(buf + used, "...", 3);
        used += 3;
    }
    buf[used] = '\0';
}

/* Big enough for CFG_QUOTE_MAX escaped bytes and an ellipsis. */
#define CFG_QUOTE_BUF (CFG_QUOTE_MAX * 4 + 4)

/* Decimal digits only: no sign, no blanks, no base prefix. */
static int cfg_parse_decimal(const char *text, size_t len, uint64_t *out, bool *overflow)
{
    uint64_t value = 0;

    *overflow = false;
    if (len == 0)
        return -1;
    for (size_t i = 0; i < len; i++) {
        if (text[i] < '0' || text[i] > '9')
            return -1;
        unsigned digit = (unsigned)(text[i] - '0');
        if (value > (UINT64_MAX - digit) / 10) {
            *overflow = true;
            return -1;
        }
        value = value * 10 + digit;
    }
    *out = value;
    return 0;
}

static int cfg_parse_bool(const char *text, bool *out)
{
    static const char *const truths[] = {"true", "1", "yes", "on"};
    static const char *const falsehoods[] = {"false", "0", "no", "off"};

    for (size_t i = 0; i < sizeof(truths) / sizeof(truths[0]); i++) {
        if (strcasecmp(text, truths[i]) == 0) {
            *out = true;
            return 0;
        }
        if (strcasecmp(text, falsehoods[i]) == 0) {
            *out = false;
            return 0;
        }
    }
    return -1;
}

/* Frees a list's items and leaves it empty. */
static void cfg_list_clear(struct cfg_list *list)
{
    for (size_t i = 0; i < list->count; i++)
        free(list->items[i]);
    free(list->items);
    list->items = NULL;
    list->count = 0;
}

static bool cfg_is_blank(char c)
{
    return c == ' ' || c == '\t';
}

/* Splits "a,b,c" into list (which must be empty). Blanks around an item are
 * dropped; an empty item is an error, as it is almost always a typo. */
static int cfg_list_split(const char *origin, const char *text, struct cfg_list *list, char *err,
                          size_t err_len)
{
    char quoted[CFG_QUOTE_BUF];
    size_t items = 1;

    for (const char *p = text; *p != '\0'; p++)
        items += *p == ',';
    list->items = calloc(items, sizeof(char *));
    if (list->items == NULL)
        goto out_of_memory;

    const char *item = text;
    for (size_t i = 0; i < items; i++) {
        size_t len = strcspn(item, ",");
        const char *next = item + len + (item[len] == ',' ? 1 : 0);
        while (len > 0 && cfg_is_blank(*item)) {
            item++;
            len--;
        }
        while (len > 0 && cfg_is_blank(item[len - 1]))
            len--;
        if (len == 0) {
            cfg_quote(quoted, sizeof(quoted), text);
            error_message_format(err, err_len, "%s: '%s' has an empty item", origin, quoted);
            goto fail;
        }
        list->items[i] = strndup(item, len);
        if (list->items[i] == NULL)
            goto out_of_memory;
        list->count = i + 1;
        item = next;
    }
    return 0;

out_of_memory:
    error_message_format(err, err_len, "%s: out of memory", origin);
fail:
    cfg_list_clear(list);
    return -1;
}

static int cfg_list_set(const char *origin, const char *text, enum cfg_list_mode mode,
                        struct cfg_list *target, char *err, size_t err_len)
{
    struct cfg_list parsed = {NULL, 0};

    if (cfg_list_split(origin, text, &parsed, err, err_len) != 0)
        return -1;
    if (mode == CFG_LIST_REPLACE || target->count == 0) {
        cfg_list_clear(target);
        *target = parsed;
        return 0;
    }
    if (parsed.count > SIZE_MAX / sizeof(char *) - target->count)
        goto out_of_memory;
    char **grown = realloc(target->items, (target->count + parsed.count) * sizeof(char *));
    if (grown == NULL)
        goto out_of_memory;
    memcpy(grown + target->count, parsed.items, parsed.count * sizeof(char *));
    target->items = grown;
    target->count += parsed.count;
    free(parsed.items);
    return 0;

out_of_memory:
    cfg_list_clear(&parsed);
    error_message_format(err, err_len, "%s: out of memory", origin);
    return -1;
}

static int cfg_size_parse(const char *text, uint64_t *out, bool *overflow)
{
    size_t len = strlen(text);
    unsigned shift = 0;

    *overflow = false;
    if (len > 0) {
        switch (text[len - 1]) {
        case 'k':
        case 'K':
            shift = 10;
            break;
        case 'm':
        case 'M':
            shift = 20;
            break;
        case 'g':
        case 'G':
            shift = 30;
            break;
        default:
            break;
        }
    }
    uint64_t value;
    if (cfg_parse_decimal(text, shift != 0 ? len - 1 : len, &value, overflow) != 0)
        return -1;
    if (value > (UINT64_MAX >> shift)) {
        *overflow = true;
        return -1;
    }
    *out = value << shift;
    return 0;
}

/* Parses value for opt and stores it in opt->target; origin names the value's
 * source in error messages ("--port", "LISTEN_PORT", "--port (default)"). */
static int cfg_apply(const struct cfg_option *opt, const char *origin, const char *value,
                     enum cfg_list_mode mode, char *err, size_t err_len)
{
    char quoted[CFG_QUOTE_BUF];
    uint64_t number = 0;
    bool overflow = false;

    cfg_quote(quoted, sizeof(quoted), value);
    switch (opt->type) {
    case CFG_STRING: {
        char *copy = strdup(value);
        if (copy == NULL) {
            error_message_format(err, err_len, "%s: out of memory", origin);
            return -1;
        }
        char **target = opt->target;
        free(*target);
        *target = copy;
        return 0;
    }
    case CFG_BOOL: {
        bool flag;
        if (cfg_parse_bool(value, &flag) != 0) {
            error_message_format(err, err_len,
                                 "%s: '%s' is not a boolean (true/false, yes/no, on/off, 1/0)",
                                 origin, quoted);
            return -1;
        }
        *(bool *)opt->target = flag;
        return 0;
    }
    case CFG_PORT:
        if (cfg_parse_decimal(value, strlen(value), &number, &overflow) != 0 || number < 1 ||
            number > 65535) {
            error_message_format(err, err_len, "%s: '%s' is not a port number (1-65535)", origin,
                                 quoted);
            return -1;
        }
        *(uint16_t *)opt->target = (uint16_t)number;
        return 0;
    case CFG_UINT:
    case CFG_SIZE: {
        int rc = opt->type == CFG_UINT ? cfg_parse_decimal(value, strlen(value), &number, &overflow)
                                       : cfg_size_parse(value, &number, &overflow);
        bool bounded = opt->min != 0 || opt->max != 0;
        uint64_t min = bounded ? opt->min : 0;
        uint64_t max = bounded ? opt->max : UINT64_MAX;
        if (rc != 0 && !overflow) {
            if (opt->type == CFG_UINT)
                error_message_format(err, err_len, "%s: '%s' is not a number", origin, quoted);
            else
                error_message_format(
                    err, err_len,
                    "%s: '%s' is not a size (bytes, with an optional suffix k, m or g)", origin,
                    quoted);
            return -1;
        }
        if (rc != 0 || number < min || number > max) {
            error_message_format(err, err_len, "%s: '%s' is out of range (%" PRIu64 "-%" PRIu64 ")",
                                 origin, quoted, min, max);
            return -1;
        }
        *(uint64_t *)opt->target = number;
        return 0;
    }
    case CFG_LOG_LEVEL: {
        enum log_level level;
        if (log_level_parse(value, &level) != 0) {
            error_message_format(err, err_len,
                                 "%s: '%s' is not a log level (error, warn, info, debug)", origin,
                                 quoted);
            return -1;
        }
        *(enum log_level *)opt->target = level;
        return 0;
    }
    case CFG_LIST:
        return cfg_list_set(origin, value, mode, opt->target, err, err_len);
    }
    error_message_format(err, err_len, "%s: unsupported option type", origin);
    return -1;
}

/* Gives every target a known starting state: what a missing default means. */
static void cfg_reset(const struct cfg_option *options, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        void *target = options[i].target;
        if (target == NULL)
            continue;
        switch (options[i].type) {
        case CFG_STRING:
            *(char **)target = NULL;
            break;
        case CFG_BOOL:
            *(bool *)target = false;
            break;
        case CFG_PORT:
            *(uint16_t *)target = 0;
            break;
        case CFG_UINT:
        case CFG_SIZE:
            *(uint64_t *)target = 0;
            break;
        case CFG_LOG_LEVEL:
            *(enum log_level *)target = LOG_LEVEL_INFO;
            break;
        case CFG_LIST:
            *(struct cfg_list *)target = (struct cfg_list){NULL, 0};
            break;
        }
    }
}

static const char *cfg_env_lookup(char **envp, const char *name)
{
    size_t len = strlen(name);

    for (char **entry = envp; entry != NULL && *entry != NULL; entry++) {
        if (strncmp(*entry, name, len) == 0 && (*entry)[len] == '=')
            return *entry + len + 1;
    }
    return NULL;
}

static const struct cfg_option *cfg_find(const struct cfg_option *options, size_t count,
                                         const char *name, size_t len, size_t *index)
{
    for (size_t i = 0; i < count; i++) {
        const char *flag = options[i].flag;
        if (flag != NULL && strlen(flag) == len && memcmp(flag, name, len) == 0) {
            *index = i;
            return &options[i];
        }
    }
    return NULL;
}

static bool cfg_looks_like_flag(const char *arg)
{
    return arg[0] == '-' && arg[1] == '-';
}

/* Reads argv[1..argc). Returns CFG_OK, CFG_EXIT after --help/--version, or CFG_ERROR. */
static enum cfg_status cfg_parse_args(const struct cfg_program *program,
                                      const struct cfg_option *options, size_t count, int argc,
                                      char **argv, bool *seen, char *err, size_t err_len)
{
    char quoted[CFG_QUOTE_BUF];

    for (int i = 1; i < argc && argv[i] != NULL; i++) {
        const char *arg = argv[i];

        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            cfg_print_help(program, options, count, stdout);
            fflush(stdout);
            return CFG_EXIT;
        }
        if (strcmp(arg, "--version") == 0) {
            printf("%s %s\n", program->name, EVS_VERSION);
            fflush(stdout);
            return CFG_EXIT;
        }
        if (strcmp(arg, "--") == 0) {
            /* End of options; the daemons take no operands. */
            if (i + 1 < argc && argv[i + 1] != NULL) {
                cfg_quote(quoted, sizeof(quoted), argv[i + 1]);
                error_message_format(err, err_len, "unexpected argument '%s'", quoted);
                return CFG_ERROR;
            }
            return CFG_OK;
        }
        if (arg[0] != '-' || arg[1] == '\0') {
            cfg_quote(quoted, sizeof(quoted), arg);
            error_message_format(err, err_len, "unexpected argument '%s'", quoted);
            return CFG_ERROR;
        }

        size_t name_len = strcspn(arg, "=");
        size_t index = 0;
        const struct cfg_option *opt =
            arg[1] == '-' ? cfg_find(options, count, arg, name_len, &index) : NULL;
        if (opt == NULL) {
            /* One byte more than is quoted, so that a long name shows "...". */
            char name[CFG_QUOTE_MAX + 2];
            size_t shown = name_len < sizeof(name) - 1 ? name_len : sizeof(name) - 1;
            memcpy(name, arg, shown);
            name[shown] = '\0';
            cfg_quote(quoted, sizeof(quoted), name);
            error_message_format(err, err_len, "unknown option '%s'", quoted);
            return CFG_ERROR;
        }

        const char *value;
        if (arg[name_len] == '=') {
            value = arg + name_len + 1;
        } else if (opt->type == CFG_BOOL) {
            value = "true";
        } else if (i + 1 < argc && argv[i + 1] != NULL && !cfg_looks_like_flag(argv[i + 1])) {
            value = argv[++i];
        } else {
            /* A following "--x" is taken for the next flag, not a value: a
             * value that starts with "--" must be given as "--flag=--x". */
            error_message_format(err, err_len, "%s: missing value", opt->flag);
            return CFG_ERROR;
        }

        enum cfg_list_mode mode = seen[index] ? CFG_LIST_APPEND : CFG_LIST_REPLACE;
        seen[index] = true;
        if (cfg_apply(opt, opt->flag, value, mode, err, err_len) != 0)
            return CFG_ERROR;
    }
    return CFG_OK;
}

enum cfg_status cfg_parse(const struct cfg_program *program, const struct cfg_option *options,
                          size_t count, int argc, char **argv, char **envp, char *err,
                          size_t err_len)
{
    enum cfg_status status = CFG_ERROR;
    bool *seen = NULL;
    char origin[256];

    if (err != NULL && err_len > 0)
        err[0] = '\0';
    if (envp == NULL)
        envp = environ;
    cfg_reset(options, count);

    for (size_t i = 0; i < count; i++) {
        if (options[i].default_value == NULL)
            continue;
        snprintf(origin, sizeof(origin), "%s (default)", options[i].flag);
        if (cfg_apply(&options[i], origin, options[i].default_value, CFG_LIST_REPLACE, err,
                      err_len) != 0)
            goto done;
    }
    for (size_t i = 0; i < count; i++) {
        if (options[i].env == NULL)
            continue;
        const char *value = cfg_env_lookup(envp, options[i].env);
        if (value != NULL &&
            cfg_apply(&options[i], options[i].env, value, CFG_LIST_REPLACE, err, err_len) != 0)
            goto done;
    }

    seen = calloc(count != 0 ? count : 1, sizeof(bool));
    if (seen == NULL) {
        error_message_format(err, err_len, "%s: out of memory", program->name);
        goto done;
    }
    status = cfg_parse_args(program, options, count, argc, argv, seen, err, err_len);

done:
    free(seen);
    if (status != CFG_OK)
        cfg_free(options, count);
    return status;
}

void cfg_free(const struct cfg_option *options, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        if (options[i].target == NULL)
            continue;
        if (options[i].type == CFG_STRING) {
            char **target = options[i].target;
            free(*target);
            *target = NULL;
        } else if (options[i].type == CFG_LIST) {
            cfg_list_clear(options[i].target);
        }
    }
}

static const char *cfg_metavar(enum cfg_type type)
{
    switch (type) {
    case CFG_STRING:
        return " VALUE";
    case CFG_BOOL:
        return "[=BOOL]";
    case CFG_PORT:
    case CFG_UINT:
        return " N";
    case CFG_SIZE:
        return " SIZE";
    case CFG_LOG_LEVEL:
        return " LEVEL";
    case CFG_LIST:
        return " VALUE[,VALUE...]";
    }
    return "";
}

void cfg_print_help(const struct cfg_program *program, const struct cfg_option *options,
                    size_t count, void *stream)
{
    FILE *out = stream;

    fprintf(out, "Usage: %s [OPTION]...\n", program->name);
    if (program->summary != NULL)
        fprintf(out, "%s\n", program->summary);
    fprintf(out, "\nOptions (a flag overrides its environment variable):\n");
    for (size_t i = 0; i < count; i++) {
        const struct cfg_option *opt = &options[i];
        fprintf(out, "  %s%s", opt->flag, cfg_metavar(opt->type));
        if (opt->env != NULL && opt->default_value != NULL)
            fprintf(out, "  (env %s, default %s)", opt->env,
                    opt->default_value[0] != '\0' ? opt->default_value : "\"\"");
        else if (opt->env != NULL)
            fprintf(out, "  (env %s)", opt->env);
        else if (opt->default_value != NULL)
            fprintf(out, "  (default %s)",
                    opt->default_value[0] != '\0' ? opt->default_value : "\"\"");
        fprintf(out, "\n");
        if (opt->help != NULL)
            fprintf(out, "      %s\n", opt->help);
    }
    fprintf(out, "  -h, --help\n      Print this help and exit.\n");
    fprintf(out, "  --version\n      Print the program name and version and exit.\n");
    if (program->usage_notes != NULL && program->usage_notes[0] != '\0') {
        size_t len = strlen(program->usage_notes);
        fprintf(out, "\n%s%s", program->usage_notes,
                program->usage_notes[len - 1] == '\n' ? "" : "\n");
    }
}
