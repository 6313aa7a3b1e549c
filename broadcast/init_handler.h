/* What a client's message does to its subscriber, whatever the transport:
 * every message is an init (the public contract), answered with
 * {"type":"init","code":...}. A successful init sets the subscriber's
 * credential (and, for a JWT, the timer that ends it at its exp) and adds
 * its event types; the subscriber stays open after a refused one.
 *
 * The limits on the work a client may cause: more than INIT_BURST inits at
 * once, or one every INIT_INTERVAL_MS on average, closes the subscriber
 * with 1008, and so does its credential refused INIT_FAILED_CREDENTIALS_MAX
 * times in a row (after that answer; the earlier refusals leave it open,
 * as the public contract says), so that trying credentials (each a
 * signature verification, up to a millisecond) costs a new connection
 * every few attempts.
 */
#ifndef EVS_INIT_HANDLER_H
#define EVS_INIT_HANDLER_H

#include <stddef.h>
#include <stdint.h>

struct subscriber;

#define INIT_BURST 32
#define INIT_INTERVAL_MS 125
#define INIT_FAILED_CREDENTIALS_MAX 3

/* Handles one client message text[0..len) of sub, answering it through
 * sub->ops->reply. Returns NULL, or the reason sub must now be closed with
 * 1008, which the caller does as soon as its transport allows (the
 * message may arrive inside a parser's callback). Never frees sub. */
const char *init_handler_message(struct subscriber *sub, const uint8_t *text, size_t len);

#endif
