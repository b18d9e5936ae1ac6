#include "core/spawn.h"
#include "core/util.h"
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* In the child: only async-signal-safe calls between fork and exec. */
static void child(char *const argv[], int out_fd, int quiet) {
    signal(SIGPIPE, SIG_DFL); /* ignored signals stay ignored across exec */
    signal(SIGXFSZ, SIG_DFL);
    int null_fd = open("/dev/null", O_RDWR);
    if (null_fd >= 0) {
        dup2(null_fd, 0);
        if (quiet) dup2(null_fd, 2);
    }
    dup2(out_fd, 1);
    execvp(argv[0], argv);
    _exit(127);
}

static char *drain(int fd, size_t max, size_t *len) {
    size_t n = 0, cap = max < 4096 ? max : 4096;
    char *buf = ml_malloc(cap + 1), sink[4096];
    for (;;) {
        if (n == cap && cap < max) buf = ml_realloc(buf, (cap = cap * 2 < max ? cap * 2 : max) + 1);
        char *dst = n < cap ? buf + n : sink;
        size_t room = n < cap ? cap - n : sizeof sink;
        ssize_t got = read(fd, dst, room);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) break;
        if (dst != sink) n += (size_t)got;
    }
    buf[n] = 0;
    if (len) *len = n;
    return buf;
}

char *ml_spawn_capture(char *const argv[], int quiet, size_t max, int *status, size_t *len) {
    int fds[2];
    *status = -1;
    if (pipe(fds) != 0) {
        ml_fail("cannot run %s: pipe: %s", argv[0], strerror(errno));
        return NULL;
    }
    fflush(NULL); /* buffered output must not be written twice */
    pid_t pid = fork();
    if (pid < 0) {
        close(fds[0]);
        close(fds[1]);
        ml_fail("cannot run %s: fork: %s", argv[0], strerror(errno));
        return NULL;
    }
    if (pid == 0) {
        close(fds[0]);
        child(argv, fds[1], quiet);
    }
    close(fds[1]);
    char *out = drain(fds[0], max ? max : 1, len);
    close(fds[0]);
    int st;
    pid_t r;
    do r = waitpid(pid, &st, 0);
    while (r < 0 && errno == EINTR);
    if (r < 0) ml_fail("waiting for %s failed: %s", argv[0], strerror(errno));
    else *status = WIFEXITED(st) ? WEXITSTATUS(st) : WIFSIGNALED(st) ? 128 + WTERMSIG(st) : -1;
    return out;
}
