#include "auth/watched_file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/event.h>

/* What identifies one version of the file: a change to any of these means
 * it was written, truncated, replaced, re-linked or had its mode changed. */
struct file_signature {
    bool present;
    dev_t dev;
    ino_t ino;
    mode_t mode;
    off_t size;
    struct timespec mtime, ctime;
};

struct watched_file {
    char *path;
    size_t max_bytes;
    watched_file_load_fn load;
    void *arg;
    struct event *poll;
    /* The version last handed to load (its content or its error). Not
     * known before the first load, nor after a read that failed for a
     * passing reason: the next polls then pick the file up again. */
    struct file_signature applied;
    bool applied_known;
    /* A version other than the applied one, and how many consecutive polls
     * have seen it unchanged (0: none pending). */
    struct file_signature pending;
    unsigned pending_polls;
    mode_t mode; /* of the last version read */
    char error_text[96];
};

static struct file_signature signature_from_stat(const struct stat *st)
{
    struct file_signature sig;
    memset(&sig, 0, sizeof sig);
    sig.present = true;
    sig.dev = st->st_dev;
    sig.ino = st->st_ino;
    sig.mode = st->st_mode;
    sig.size = st->st_size;
    sig.mtime = st->st_mtim;
    sig.ctime = st->st_ctim;
    return sig;
}

static struct file_signature signature_of(const char *path)
{
    struct file_signature sig;
    struct stat st;
    if (stat(path, &st) == 0)
        return signature_from_stat(&st);
    memset(&sig, 0, sizeof sig);
    return sig;
}

static bool signature_equal(const struct file_signature *a, const struct file_signature *b)
{
    return a->present == b->present && a->dev == b->dev && a->ino == b->ino && a->mode == b->mode &&
           a->size == b->size && a->mtime.tv_sec == b->mtime.tv_sec &&
           a->mtime.tv_nsec == b->mtime.tv_nsec && a->ctime.tv_sec == b->ctime.tv_sec &&
           a->ctime.tv_nsec == b->ctime.tv_nsec;
}

/* Polls a new version needs before it is applied: an empty regular file
 * waits longer, as truncation is the first step of every in-place rewrite. */
static unsigned settle_polls(const struct file_signature *sig)
{
    if (sig->present && S_ISREG(sig->mode) && sig->size == 0)
        return WATCHED_FILE_EMPTY_SETTLE_POLLS;
    return WATCHED_FILE_SETTLE_POLLS;
}

/* Reads the whole file into a new NUL-terminated buffer, never blocking:
 * the file is opened O_NONBLOCK and only a regular file is read. *sig is
 * what fstat() saw, set whenever the file could be opened. Returns 0, or
 * -1 with errno set: EINVAL not a regular file, EFBIG over max_bytes,
 * EAGAIN changed while being read (its identity before and after the read
 * differ, or it did not hold the bytes its size said). */
static int read_whole(const char *path, size_t max_bytes, char **text, size_t *len,
                      struct file_signature *sig)
{
    struct stat st;
    struct file_signature after;
    size_t got = 0, size;
    char *buf = NULL;
    int saved;
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        if (errno == ENXIO) /* a UNIX socket */
            errno = EINVAL;
        return -1;
    }
    if (fstat(fd, &st) < 0)
        goto fail;
    *sig = signature_from_stat(&st);
    if (!S_ISREG(st.st_mode)) {
        errno = EINVAL;
        goto fail;
    }
    if ((uint64_t)st.st_size > max_bytes) {
        errno = EFBIG;
        goto fail;
    }
    size = (size_t)st.st_size;
    buf = malloc(size + 2);
    if (!buf)
        goto fail;
    /* Read up to one byte past the size seen, to notice a file still growing. */
    while (got <= size) {
        ssize_t n = read(fd, buf + got, size + 1 - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            goto fail;
        if (n == 0)
            break;
        got += (size_t)n;
    }
    if (fstat(fd, &st) < 0)
        goto fail;
    after = signature_from_stat(&st);
    if (got != size || !signature_equal(sig, &after)) {
        errno = EAGAIN;
        goto fail;
    }
    close(fd);
    buf[got] = '\0';
    *text = buf;
    *len = got;
    return 0;
fail:
    saved = errno;
    free(buf);
    close(fd);
    errno = saved;
    return -1;
}

/* Only errors that say something about the file itself reach the owner
 * (which may then revoke what the file granted). A passing failure of this
 * process (out of descriptors or memory, a file still being written) keeps
 * the last version. */
static bool error_is_about_the_file(int error)
{
    return error == ENOENT || error == EACCES || error == EPERM || error == ENOTDIR ||
           error == ELOOP || error == EINVAL || error == EFBIG;
}

/* Reads the file and hands it to load. settled is the identity the polls
 * agreed on (NULL for a read on demand): a file found different from it
 * when opened or read is left to settle again. */
static void load_now(struct watched_file *file, const char *reason,
                     const struct file_signature *settled)
{
    struct file_signature sig = settled ? *settled : signature_of(file->path);
    char *text = NULL;
    size_t len = 0;
    int error = read_whole(file->path, file->max_bytes, &text, &len, &sig) < 0 ? errno : 0;

    if (!error && settled && !signature_equal(&sig, settled)) {
        free(text);
        error = EAGAIN; /* changed since the last poll */
    }
    file->pending_polls = 0;
    if (error && !error_is_about_the_file(error)) {
        file->applied_known = false;
        return;
    }
    file->applied = sig;
    file->applied_known = true;
    if (error) {
        file->load(file->arg, file, NULL, 0, error, reason);
        return;
    }
    file->mode = sig.mode;
    file->load(file->arg, file, text, len, 0, reason);
    free(text);
}

void watched_file_reload(struct watched_file *file, const char *reason)
{
    load_now(file, reason, NULL);
}

void watched_file_poll(struct watched_file *file)
{
    struct file_signature now = signature_of(file->path);
    if (file->applied_known && signature_equal(&now, &file->applied)) {
        file->pending_polls = 0;
        return;
    }
    if (file->pending_polls == 0 || !signature_equal(&now, &file->pending)) {
        /* Changed since the last poll: still being written, maybe. */
        file->pending = now;
        file->pending_polls = 1;
    } else {
        file->pending_polls++;
    }
    if (file->pending_polls >= settle_polls(&now))
        load_now(file, "file changed", &now);
}

/* The timer is re-armed after each poll rather than persistent, so that
 * polls stay WATCHED_FILE_POLL_MS apart even after the loop was held up:
 * the settle rule counts on it. */
static void poll_cb(evutil_socket_t fd, short what, void *arg)
{
    struct watched_file *file = arg;
    struct timeval tv = {0, WATCHED_FILE_POLL_MS * 1000};
    watched_file_poll(file);
    event_add(file->poll, &tv);
}

struct watched_file *watched_file_new(struct event_base *base, const char *path, size_t max_bytes,
                                      watched_file_load_fn load, void *arg)
{
    struct timeval tv = {0, WATCHED_FILE_POLL_MS * 1000};
    struct watched_file *file = calloc(1, sizeof *file);
    if (!file)
        return NULL;
    file->path = strdup(path);
    file->max_bytes = max_bytes;
    file->load = load;
    file->arg = arg;
    file->poll = evtimer_new(base, poll_cb, file);
    if (!file->path || !file->poll) {
        watched_file_free(file);
        return NULL;
    }
    watched_file_reload(file, NULL);
    event_add(file->poll, &tv);
    return file;
}

const char *watched_file_path(const struct watched_file *file)
{
    return file->path;
}

int watched_file_world_readable(const struct watched_file *file)
{
    return (file->mode & S_IROTH) != 0;
}

static const char *file_kind(mode_t mode)
{
    if (S_ISFIFO(mode))
        return "a FIFO";
    if (S_ISDIR(mode))
        return "a directory";
    if (S_ISCHR(mode) || S_ISBLK(mode))
        return "a device";
    if (S_ISSOCK(mode))
        return "a socket";
    return "not a file";
}

const char *watched_file_error_text(struct watched_file *file, int error)
{
    const size_t mib = 1024 * 1024;
    if (error == EINVAL)
        snprintf(file->error_text, sizeof file->error_text, "not a regular file: %s",
                 file_kind(file->applied.mode));
    else if (error == EFBIG && file->max_bytes % mib == 0)
        snprintf(file->error_text, sizeof file->error_text, "larger than %zu MiB",
                 file->max_bytes / mib);
    else if (error == EFBIG)
        snprintf(file->error_text, sizeof file->error_text, "larger than %zu bytes",
                 file->max_bytes);
    else
        snprintf(file->error_text, sizeof file->error_text, "%s", strerror(error));
    return file->error_text;
}

void watched_file_free(struct watched_file *file)
{
    if (!file)
        return;
    if (file->poll)
        event_free(file->poll);
    free(file->path);
    free(file);
}
