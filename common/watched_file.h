/* A configuration file that is re-read when it changes.
 *
 * The file's identity (device, inode, size, modification and change times)
 * is checked every WATCHED_FILE_POLL_MS; when any of them differs, or on
 * watched_file_reload (SIGHUP), the whole file is read again and handed to
 * the owner's load callback. Polling stat() rather than inotify follows
 * replaced files and symlink swaps (editors that rename, Kubernetes
 * secrets) at the cost of a few syscalls a second.
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

struct event_base;
struct watched_file;

/* text[0..len) is the file's content (NUL-terminated, borrowed for the
 * call) and error is 0, or text is NULL and error is an errno value (ENOENT,
 * EACCES, EFBIG when over max_bytes, EINVAL when not a regular file):
 * watched_file_error_text says which in words.
 * Other failures (EMFILE, ENOMEM, EIO...) keep the last version and are
 * retried at the next poll, without a call.
 * reason is NULL for the first load, else what caused the reload. file is
 * the watched file itself (valid during the call, also during the first
 * load inside watched_file_new). */
typedef void (*watched_file_load_fn)(void *arg, struct watched_file *file, const char *text,
                                     size_t len, int error, const char *reason);

/* Loads path at once (calling load) and starts watching it. path is copied.
 * NULL when out of memory. */
struct watched_file *watched_file_new(struct event_base *base, const char *path, size_t max_bytes,
                                      watched_file_load_fn load, void *arg);

void watched_file_reload(struct watched_file *file, const char *reason);

/* One poll, as the timer runs every WATCHED_FILE_POLL_MS: stat()s the file
 * and reads it again when it changed. For tests, which call it directly
 * instead of waiting for the timer. */
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
