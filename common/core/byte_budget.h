/* A budget of bytes shared by many holders (the request bodies of every
 * connection of a server): each holder reserves bytes before it keeps them
 * and releases what it reserved when it frees them, so that the total held
 * never passes the limit. Reserving may be done in steps (a body whose size
 * is only learned as it arrives). Pure.
 */
#ifndef EVS_BYTE_BUDGET_H
#define EVS_BYTE_BUDGET_H

#include <stdbool.h>
#include <stdint.h>

struct byte_budget {
    uint64_t limit; /* 0: no limit */
    uint64_t used;
};

/* Takes bytes from the budget: true when they fit under the limit (then
 * the holder owes them back), false when they would pass it (nothing is
 * taken). */
bool byte_budget_reserve(struct byte_budget *budget, uint64_t bytes);

/* Gives back bytes taken by byte_budget_reserve. */
void byte_budget_release(struct byte_budget *budget, uint64_t bytes);

#endif
