/* Configuration: every setting is a flag and an environment variable.
 *
 * A daemon describes its settings in a table of struct cfg_option; cfg_parse
 * applies the defaults, then the environment, then the command line (so a
 * flag beats a variable), checking each value. Pure: no I/O besides printing
 * --help/--version to stdout. Whether a file named by a setting can be read
 * is the daemon's check, after parsing.
 *
 * Flags take "--name value" or "--name=value". A CFG_BOOL flag given without
 * "=value" means true. A CFG_LIST flag may repeat, and each value may itself
 * be comma-separated; values from the command line replace those from the
 * environment or the default.
 */
#ifndef EVS_CONFIG_H
#define EVS_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

enum cfg_type {
    CFG_STRING,    /* target: char ** (owned, freed by cfg_free) */
    CFG_BOOL,      /* target: bool *; true/false/1/0/yes/no/on/off */
    CFG_PORT,      /* target: uint16_t *; 1..65535 */
    CFG_UINT,      /* target: uint64_t *; decimal, within [min, max] */
    CFG_SIZE,      /* target: uint64_t *; bytes, optional suffix k/K, m/M, g/G (x1024) */
    CFG_LOG_LEVEL, /* target: enum log_level * */
    CFG_LIST,      /* target: struct cfg_list * (owned, freed by cfg_free) */
};

struct cfg_list {
    char **items;
    size_t count;
};

struct cfg_option {
    const char *flag; /* "--port" */
    const char *env;  /* "LISTEN_PORT", or NULL */
    enum cfg_type type;
    const char *default_value; /* parsed like user input; NULL: no default */
    const char *help;          /* one line for --help */
    void *target;
    uint64_t min, max; /* CFG_UINT and CFG_SIZE bounds; 0,0 means none */
};

struct cfg_program {
    const char *name;        /* "event-listen" */
    const char *summary;     /* one line shown by --help */
    const char *usage_notes; /* extra paragraph(s) for --help, or NULL */
};

enum cfg_status {
    CFG_OK = 0,
    CFG_EXIT = 1,   /* --help or --version was printed: exit 0 */
    CFG_ERROR = -1, /* err holds a one-line reason: exit 2 */
};

/* envp: the environment to read (NULL means the process environment).
 * Every target is overwritten (earlier contents are not freed): an option
 * without a default starts as NULL, false, 0, an empty list or
 * LOG_LEVEL_INFO. On CFG_ERROR and CFG_EXIT the strings and lists are already
 * freed (cfg_free is then a harmless no-op); on CFG_OK the caller cfg_frees. */
enum cfg_status cfg_parse(const struct cfg_program *program, const struct cfg_option *options,
                          size_t count, int argc, char **argv, char **envp, char *err,
                          size_t err_len);

/* Frees what cfg_parse allocated into the targets (strings and lists). */
void cfg_free(const struct cfg_option *options, size_t count);

/* Writes the --help text (also used by tests and the man-page-like docs). */
void cfg_print_help(const struct cfg_program *program, const struct cfg_option *options,
                    size_t count, void *stream /* FILE * */);

#endif
