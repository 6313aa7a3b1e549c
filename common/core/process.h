/* Process-wide set-up shared by both daemons. */
#ifndef EVS_PROCESS_H
#define EVS_PROCESS_H

#include <stddef.h>

/* Raises the soft RLIMIT_NOFILE to the hard limit and returns the soft
 * limit in force afterwards. */
size_t process_raise_file_limit(void);

/* The connection cap to use: requested when non-zero, else the file limit
 * minus reserve (descriptors kept for the daemon's own files and sockets). */
size_t process_connection_cap(size_t requested, size_t file_limit, size_t reserve);

/* Sends libevent's own messages through log.h (as "libevent: ..."), so
 * that every line on stderr has the same form. quiet drops them instead,
 * for a moment where failures are expected. */
void process_route_libevent_logs(int quiet);

struct event_base;
struct event;

/* The daemon's signals, caught from the moment this is called (a SIGHUP
 * must never kill a daemon that is still starting): SIGHUP runs reload,
 * SIGTERM and SIGINT run stop, each with arg, inside the event loop. */
struct process_signals {
    struct event *hup, *term, *intr;
};
int process_signals_catch(struct process_signals *signals, struct event_base *base,
                          void (*reload)(int, short, void *), void (*stop)(int, short, void *),
                          void *arg);
void process_signals_free(struct process_signals *signals);

/* Ignores SIGPIPE: a write to a closed socket must come back as EPIPE. */
void process_ignore_sigpipe(void);

#endif
