/* Event ids: what every accepted event is called, on the bus and to
 * subscribers (the "id" member of an event message, the publisher's
 * Event-Id header, an init's "since").
 *
 * To clients an id is opaque: a string of 1..EVENT_ID_MAX characters of
 * [0-9A-Za-z._:-]. The ids this daemon assigns read
 *
 *   <run>-<number>      each 16 lowercase hexadecimal digits
 *
 * run: the epoch of the history the id belongs to, chosen when a listen
 * daemon starts (event_id_new_run: the wall-clock microsecond shifted left
 * by 12 bits, plus 12 random bits), so that a later start has a larger run
 * and no two starts share one. number: the event's place in that run, from
 * 1, one more for every event the listen daemon hands to the bus. Fixed
 * width, so that ids of one run sort as text in the order they were given.
 * Pure, except event_id_new_run.
 */
#ifndef EVS_EVENT_ID_H
#define EVS_EVENT_ID_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The longest id a client may send (the contract). */
#define EVENT_ID_MAX 64
/* The length of every id event_id_format writes. */
#define EVENT_ID_LEN 33

/* Whether text[0..len) is a well-formed id: 1..EVENT_ID_MAX characters,
 * each of [0-9A-Za-z._:-]. Says nothing of whether it names an event. */
bool event_id_valid(const char *text, size_t len);

/* Writes the id of event number of run into out (EVENT_ID_LEN characters
 * and a NUL). Returns EVENT_ID_LEN. */
size_t event_id_format(char out[EVENT_ID_LEN + 1], uint64_t run, uint64_t number);

/* Reads an id event_id_format wrote. Returns 0 and sets *run and *number,
 * or -1 when text[0..len) is not one (another length, upper-case or
 * non-hex digits, no '-' between, or number 0). */
int event_id_parse(const char *text, size_t len, uint64_t *run, uint64_t *number);

/* Reads a run alone, as event_id_format writes it (16 lower-case hex
 * digits): the epoch the Redis engine keeps in its stream. Returns 0 and
 * sets *run, or -1 when text[0..len) is not one or is run 0. */
int event_id_parse_run(const char *text, size_t len, uint64_t *run);

/* A new run for a starting listen daemon (never 0). */
uint64_t event_id_new_run(void);

/* Where an event message gets its "id" member: the message must begin
 * {"type":"event","event":"  and the event's JSON string must end
 * before a ',' or a '}'; the id goes right after that string:
 *   {"type":"event","event":"t"            ,"id":"<id>"  ,"data":...}
 * Returns the offset of that place, or 0 when the message has not that
 * shape (a broadcast daemon refuses such a message from the bus). */
size_t event_message_id_offset(const uint8_t *message, size_t len);

#endif
