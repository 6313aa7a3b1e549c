#include "process.h"

#include <signal.h>
#include <sys/resource.h>

size_t process_raise_file_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return 1024;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
    }
    return rl.rlim_cur == RLIM_INFINITY ? (size_t)1 << 20 : (size_t)rl.rlim_cur;
}

size_t process_connection_cap(size_t requested, size_t file_limit, size_t reserve)
{
    if (requested)
        return requested;
    return file_limit > reserve * 2 ? file_limit - reserve : file_limit / 2;
}

void process_ignore_sigpipe(void)
{
    signal(SIGPIPE, SIG_IGN);
}
