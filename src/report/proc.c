#include "report/proc.h"
#include "core/util.h"
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

pid_t proc_spawn(const char *path, char *const argv[], const char *log_path) {
    int fd = -1;
    if (log_path) {
        fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (fd < 0) return ml_fail("cannot open %s: %s", log_path, strerror(errno));
    }
    int null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    pid_t parent = getpid();
    fflush(NULL); /* buffered output must not be written twice */
    pid_t pid = fork();
    if (pid < 0) {
        if (fd >= 0) close(fd);
        if (null_fd >= 0) close(null_fd);
        return ml_fail("fork failed: %s", strerror(errno));
    }
    if (pid == 0) {
        /* Only async-signal-safe calls between fork and exec. */
        signal(SIGPIPE, SIG_DFL); /* ignored signals stay ignored across exec */
        signal(SIGXFSZ, SIG_DFL);
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (getppid() != parent) _exit(127); /* the parent died before prctl took effect */
        if (null_fd >= 0) dup2(null_fd, 0);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        execv(path, argv);
        static const char msg[] = "moelab: exec failed\n";
        ssize_t w = write(2, msg, sizeof msg - 1);
        (void)w;
        _exit(127);
    }
    if (fd >= 0) close(fd);
    if (null_fd >= 0) close(null_fd);
    return pid;
}

pid_t proc_wait(pid_t pid, int *code) {
    int st;
    pid_t r;
    do r = waitpid(pid, &st, 0);
    while (r < 0 && errno == EINTR);
    if (r < 0) return -1;
    *code = WIFEXITED(st) ? WEXITSTATUS(st) : WIFSIGNALED(st) ? 128 + WTERMSIG(st) : 1;
    return r;
}

int proc_run(const char *path, char *const argv[], const char *log_path) {
    pid_t pid = proc_spawn(path, argv, log_path);
    if (pid < 0) return -1;
    int code;
    if (proc_wait(pid, &code) < 0) return ml_fail("waiting for %s failed: %s", path, strerror(errno));
    return code;
}

const char *proc_self_exe(void) {
    static char path[4096];
    if (path[0]) return path;
    ssize_t n = readlink("/proc/self/exe", path, sizeof path - 1);
    if (n <= 0 || n >= (ssize_t)sizeof path - 1) {
        path[0] = 0;
        ml_fail("cannot read /proc/self/exe: %s", strerror(errno));
        return NULL;
    }
    path[n] = 0;
    return path;
}

char *proc_which(const char *name) {
    const char *env = getenv("PATH");
    if (!env || !*env) env = "/usr/local/bin:/usr/bin:/bin";
    char *copy = ml_strdup(env), *save = NULL;
    for (char *dir = strtok_r(copy, ":", &save); dir; dir = strtok_r(NULL, ":", &save)) {
        size_t n = strlen(dir) + strlen(name) + 2;
        char *p = ml_malloc(n);
        snprintf(p, n, "%s/%s", dir, name);
        if (access(p, X_OK) == 0) {
            free(copy);
            return p;
        }
        free(p);
    }
    free(copy);
    return NULL;
}

int proc_cores(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}
