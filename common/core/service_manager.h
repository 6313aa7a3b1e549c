/* The service manager's side of a daemon's life (systemd), optional.
 *
 * Readiness and status go to the service manager with sd_notify when the
 * daemon was built with libsystemd and started by a manager that set
 * NOTIFY_SOCKET; otherwise every call here does nothing, so the same binary
 * runs by hand, in Docker or under systemd. The watchdog is pinged from a
 * timer on the event loop at half WATCHDOG_USEC, so a loop that hangs stops
 * the pings and gets the daemon restarted.
 *
 * Socket activation: service_manager_take_socket returns a socket the
 * manager passed down (LISTEN_FDS, named by FileDescriptorName=), so that
 * the bus socket and the ports can outlive a restart of the daemon.
 */
#ifndef EVS_SERVICE_MANAGER_H
#define EVS_SERVICE_MANAGER_H

#include <stdbool.h>

struct event_base;
struct service_manager;

/* status_fn(arg, buf, len) writes a one-line status ("12 sessions, ...");
 * it is sent with READY=1, on every watchdog ping and every few seconds. */
typedef void (*service_status_fn)(void *arg, char *buf, unsigned len);

/* NULL only when out of memory. Starts the watchdog timer when asked for. */
struct service_manager *service_manager_new(struct event_base *base, service_status_fn status_fn,
                                            void *arg);
void service_manager_free(struct service_manager *sm);

void service_manager_ready(struct service_manager *sm);
void service_manager_reloading(struct service_manager *sm);
void service_manager_stopping(struct service_manager *sm);

/* The inherited socket named name, made non-blocking and close-on-exec, or
 * -1 when there is none. Each socket can be taken once. */
int service_manager_take_socket(const char *name);

#endif
