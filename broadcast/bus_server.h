/* The broadcast daemon's side of the bus: accepts listen daemons on the
 * UNIX socket, checks their HELLO, routes each EVENT to the hub by the type
 * in the frame (the JSON is never parsed here), and acks. Any number of
 * listen daemons may be connected at once.
 *
 * An ACK is cumulative and is sent after every complete frame that one read
 * brought in has been fanned out, so a burst of events costs one ACK. A peer
 * that breaks the protocol (bad frame, wrong version, sequence gap) is
 * disconnected with a log line; the daemon goes on.
 */
#ifndef EVS_BUS_SERVER_H
#define EVS_BUS_SERVER_H

#include <stddef.h>
#include <stdint.h>

struct event_base;
struct hub;
struct bus_server;

struct bus_server_counters {
    uint64_t peers_accepted;
    uint64_t peers_connected;
    uint64_t protocol_errors;
    uint64_t events;         /* EVENT frames */
    uint64_t history_frames; /* HISTORY frames, kept or skipped */
};

/* Serves on listening socket fd (ownership taken). Returns NULL on failure. */
struct bus_server *bus_server_new(struct event_base *base, int fd, struct hub *hub);

/* For a shutdown: stops accepting and stops taking events. Every peer is
 * disconnected once the acks already queued to it are written; what a
 * listen daemon sent and had not had acked is refused there (503), and its
 * next publishes wait for the next broadcast daemon. So every event this
 * daemon acked was queued to its subscribers, none while it was closing
 * them. */
void bus_server_stop(struct bus_server *server);

const struct bus_server_counters *bus_server_counters(const struct bus_server *server);

/* Closes every peer and the listener. NULL is a no-op. */
void bus_server_free(struct bus_server *server);

#endif
