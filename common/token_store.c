#include "token_store.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/event.h>

#include "log.h"

/* What identifies one version of the file: a change to any of these means
 * it was rewritten, replaced or re-linked. */
struct file_signature {
    bool present;
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtime, ctime;
};

struct token_store {
    char *path;
    struct tokens *tokens;
    struct file_signature seen;
    struct event *poll;
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
    return a->present == b->present && a->dev == b->dev && a->ino == b->ino &&
           a->size == b->size && a->mtime.tv_sec == b->mtime.tv_sec &&
           a->mtime.tv_nsec == b->mtime.tv_nsec && a->ctime.tv_sec == b->ctime.tv_sec &&
           a->ctime.tv_nsec == b->ctime.tv_nsec;
}

/* Reads the whole file into a new buffer. Returns 0, or -1 with errno set
 * (EFBIG when it is over the size limit, EINVAL when not a regular file). */
static int read_tokens_file(const char *path, char **text, size_t *len, mode_t *mode)
{
    struct stat st;
    size_t got = 0;
    char *buf = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return -1;
    if (fstat(fd, &st) < 0)
        goto fail;
    if (!S_ISREG(st.st_mode)) {
        errno = EINVAL;
        goto fail;
    }
    if ((uint64_t)st.st_size > TOKENS_FILE_MAX_BYTES) {
        errno = EFBIG;
        goto fail;
    }
    *mode = st.st_mode;
    buf = malloc((size_t)st.st_size + 1);
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
        errno = EAGAIN; /* changed under us: the next poll reads it again */
        goto fail;
    }
    close(fd);
    *text = buf;
    *len = got;
    return 0;
fail:
    {
        int saved = errno;
        free(buf);
        close(fd);
        errno = saved;
    }
    return -1;
}

static void store_replace(struct token_store *store, struct tokens *tokens)
{
    tokens_free(store->tokens);
    store->tokens = tokens;
}

void token_store_reload(struct token_store *store, const char *reason)
{
    struct tokens_stats stats;
    struct tokens *tokens;
    char *text = NULL;
    size_t len = 0;
    mode_t mode = 0;

    store->seen = signature_of(store->path);
    if (read_tokens_file(store->path, &text, &len, &mode) < 0) {
        int err = errno;
        struct tokens *empty;
        if (err == EAGAIN) {
            memset(&store->seen, 0, sizeof store->seen);
            return;
        }
        empty = tokens_new_empty();
        if (!empty)
            return;
        if (tokens_count(store->tokens) > 0 || !reason)
            log_warn("tokens file %s cannot be read (%s): every request is rejected until it "
                     "can",
                     store->path, err == EFBIG ? "larger than 16 MiB" : strerror(err));
        store_replace(store, empty);
        return;
    }
    tokens = tokens_parse(text, len, &stats);
    free(text);
    if (!tokens) {
        log_error("tokens file %s: out of memory; keeping the previous tokens", store->path);
        return;
    }
    store_replace(store, tokens);
    if (reason)
        log_info("tokens file %s reloaded (%s): %zu tokens", store->path, reason, stats.accepted);
    else
        log_info("tokens file %s loaded: %zu tokens", store->path, stats.accepted);
    if (stats.too_short)
        log_warn("tokens file %s: %zu lines ignored, shorter than %d characters", store->path,
                 stats.too_short, TOKENS_MIN_LEN);
    if (stats.too_long)
        log_warn("tokens file %s: %zu lines ignored, longer than %d characters", store->path,
                 stats.too_long, TOKENS_MAX_LEN);
    if (stats.accepted == 0)
        log_warn("tokens file %s holds no usable token: every request is rejected", store->path);
    if (mode & S_IROTH)
        log_warn("tokens file %s is readable by every user; chmod o-r it", store->path);
}

static void store_poll_cb(evutil_socket_t fd, short what, void *arg)
{
    struct token_store *store = arg;
    struct file_signature now = signature_of(store->path);
    if (!signature_equal(&now, &store->seen))
        token_store_reload(store, "file changed");
}

struct token_store *token_store_new(struct event_base *base, const char *path)
{
    struct timeval tv = {0, TOKEN_STORE_POLL_MS * 1000};
    struct token_store *store = calloc(1, sizeof *store);
    if (!store)
        return NULL;
    store->path = strdup(path);
    store->tokens = tokens_new_empty();
    store->poll = event_new(base, -1, EV_PERSIST, store_poll_cb, store);
    if (!store->path || !store->tokens || !store->poll) {
        token_store_free(store);
        return NULL;
    }
    token_store_reload(store, NULL);
    event_add(store->poll, &tv);
    return store;
}

const struct tokens *token_store_tokens(const struct token_store *store)
{
    return store->tokens;
}

void token_store_free(struct token_store *store)
{
    if (!store)
        return;
    if (store->poll)
        event_free(store->poll);
    tokens_free(store->tokens);
    free(store->path);
    free(store);
}
