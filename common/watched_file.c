#include "watched_file.h"

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
 * it was rewritten, replaced or re-linked. */
struct file_signature {
    bool present;
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtime, ctime;
};

struct watched_file {
    char *path;
    size_t max_bytes;
    watched_file_load_fn load;
    void *arg;
    struct file_signature seen;
    mode_t mode;
    struct event *poll;
    char error_text[96];
};

static struct file_signature signature_of(const char *path)
{
    struct file_signature sig;
    struct stat st;
    memset(&sig, 0, sizeof sig);
    if (stat(path, &st) == 0) {
        sig.present = true;
        sig.dev = st.st_dev;
        sig.ino = st.st_ino;
        sig.size = st.st_size;
        sig.mtime = st.st_mtim;
        sig.ctime = st.st_ctim;
    }
    return sig;
}

static bool signature_equal(const struct file_signature *a, const struct file_signature *b)
{
    return a->present == b->present && a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
           a->mtime.tv_sec == b->mtime.tv_sec && a->mtime.tv_nsec == b->mtime.tv_nsec &&
           a->ctime.tv_sec == b->ctime.tv_sec && a->ctime.tv_nsec == b->ctime.tv_nsec;
}

/* Reads the whole file into a new NUL-terminated buffer, never blocking:
 * the file is opened O_NONBLOCK and only a regular file is read. *mode is
 * what fstat() saw, set whenever the file could be opened. Returns 0, or
 * -1 with errno set (EFBIG over the limit, EINVAL not a regular file,
 * EAGAIN when it grew while being read). */
static int read_whole(const char *path, size_t max_bytes, char **text, size_t *len, mode_t *mode)
{
    struct stat st;
    size_t got = 0;
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
    *mode = st.st_mode;
    if (!S_ISREG(st.st_mode)) {
        errno = EINVAL;
        goto fail;
    }
    if ((uint64_t)st.st_size > max_bytes) {
        errno = EFBIG;
        goto fail;
    }
    buf = malloc((size_t)st.st_size + 2);
    if (!buf)
        goto fail;
    /* Read up to one byte past the size seen, to notice a file still growing. */
    while (got <= (size_t)st.st_size) {
        ssize_t n = read(fd, buf + got, (size_t)st.st_size + 1 - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            goto fail;
        if (n == 0)
            break;
        got += (size_t)n;
    }
    if (got > (size_t)st.st_size) {
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

void watched_file_reload(struct watched_file *file, const char *reason)
{
    char *text = NULL;
    size_t len = 0;

    file->seen = signature_of(file->path);
    if (read_whole(file->path, file->max_bytes, &text, &len, &file->mode) < 0) {
        int error = errno;
        /* Only errors that say something about the file itself reach the
         * owner (which may then revoke what the file granted). A passing
         * failure of this process (out of descriptors or memory, a file
         * still being written) keeps the last version and is retried at the
         * next poll. */
        if (error != ENOENT && error != EACCES && error != EPERM && error != ENOTDIR &&
            error != ELOOP && error != EINVAL && error != EFBIG)
            error = EAGAIN;
        if (error == EAGAIN) {
            /* Being written: forget the signature so the next poll retries. */
            memset(&file->seen, 0, sizeof file->seen);
            file->seen.present = true;
            return;
        }
        file->load(file->arg, file, NULL, 0, error, reason);
        return;
    }
    file->load(file->arg, file, text, len, 0, reason);
    free(text);
}

void watched_file_poll(struct watched_file *file)
{
    struct file_signature now = signature_of(file->path);
    if (!signature_equal(&now, &file->seen))
        watched_file_reload(file, "file changed");
}

static void poll_cb(evutil_socket_t fd, short what, void *arg)
{
    watched_file_poll(arg);
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
    file->poll = event_new(base, -1, EV_PERSIST, poll_cb, file);
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
    return S_ISREG(file->mode) && (file->mode & S_IROTH) != 0;
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
                 file_kind(file->mode));
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
