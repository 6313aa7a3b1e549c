/* A configuration file that is re-read when it changes.
 *
 * The file's identity (device, inode, type and mode, size, modification and
 * change times to the nanosecond) is checked every WATCHED_FILE_POLL_MS.
 * Polling stat() rather than inotify follows replaced files and symlink
 * swaps (editors that rename, Kubernetes secrets) at the cost of a few
 * syscalls a second.
 *
 * When a change is applied. A file rewritten in place (`cat new > file`,
 * editors that write in place) is first truncated, then written, possibly
 * in several steps; a version caught in between must never be applied, as
 * it would revoke what the file grants. So a change found by polling is
 * applied only once it has settled:
 *   - the new identity was seen unchanged by WATCHED_FILE_SETTLE_POLLS
 *     consecutive polls (at least one poll interval without any write);
 *   - an empty file (size 0), which is what every in-place rewrite starts
 *     with, must stay so for WATCHED_FILE_EMPTY_SETTLE_POLLS polls (over a
 *     second);
 *   - the read itself is whole: the identity seen by fstat() before and
 *     after reading equals the settled one, or the change counts as new and
 *     settles again.
 * Polls are at least WATCHED_FILE_POLL_MS apart whatever the loop does, so
 * a change takes effect 250 to 500 ms after the last write (an emptied
 * file, 1 to 1.25 s). A file replaced by rename(2) is whole from the
 * start and follows the same rule. The first load (in watched_file_new) and
 * watched_file_reload (SIGHUP: the operator says the file is ready) read at
 * once, with the same check that the read is whole.
 *
 * The file is opened O_NONBLOCK and must be a regular file: a FIFO, device,
 * socket or directory at the path is never read (so a FIFO cannot stall the
 * event loop) and is reported as EINVAL. A file over max_bytes is never
 * read and is reported as EFBIG.
 */
#ifndef EVS_WATCHED_FILE_H
#define EVS_WATCHED_FILE_H

#include <stddef.h>

#define WATCHED_FILE_POLL_MS 250
#define WATCHED_FILE_SETTLE_POLLS 2
#define WATCHED_FILE_EMPTY_SETTLE_POLLS 5

struct event_base;
struct watched_file;

/* text[0..len) is the file's content (NUL-terminated, borrowed for the
 * call) and error is 0, or text is NULL and error is an errno value (ENOENT,
 * EACCES, EFBIG when over max_bytes, EINVAL when not a regular file):
 * watched_file_error_text says which in words.
 * Other failures (EMFILE, ENOMEM, EIO, a file that changed while being
 * read...) keep the last version and are retried at the next poll, without
 * a call.
 * reason is NULL for the first load, else what caused the reload. file is
 * the watched file itself (valid during the call, also during the first
 * load inside watched_file_new). */
typedef void (*watched_file_load_fn)(void *arg, struct watched_file *file, const char *text,
                                     size_t len, int error, const char *reason);

/* Loads path at once (calling load) and starts watching it on base. path
 * is copied. NULL when out of memory. */
struct watched_file *watched_file_new(struct event_base *base, const char *path, size_t max_bytes,
                                      watched_file_load_fn load, void *arg);

/* Reads the file now and hands it to load (SIGHUP), changed or not. */
void watched_file_reload(struct watched_file *file, const char *reason);

/* One poll, as the timer runs every WATCHED_FILE_POLL_MS: stat()s the file
 * and applies a settled change (see above). For tests, which call it
 * directly instead of waiting for the timer. */
void watched_file_poll(struct watched_file *file);

const char *watched_file_path(const struct watched_file *file);
/* Whether the file is readable by users other than its owner and group (for a warning). */
int watched_file_world_readable(const struct watched_file *file);

/* error (as passed to load) in words for a log line: "not a regular file:
 * a FIFO", "larger than 16 MiB", or strerror's text. Valid until the next
 * call on file. */
const char *watched_file_error_text(struct watched_file *file, int error);

void watched_file_free(struct watched_file *file);

#endif
