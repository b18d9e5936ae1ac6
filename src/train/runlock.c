#include "train/runlock.h"
#include "core/util.h"
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

int runlock_acquire(const char *dir) {
    char path[4096];
    if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, RUNLOCK_FILE) >= sizeof path) return ml_fail("path too long: %s", dir);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) return ml_fail("cannot open the lock file %s: %s", path, strerror(errno));
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int why = errno;
        char pid[32] = "";
        ssize_t n = pread(fd, pid, sizeof pid - 1, 0);
        pid[n > 0 ? n : 0] = 0;
        pid[strcspn(pid, "\n")] = 0;
        close(fd);
        if (why == EWOULDBLOCK)
            return ml_fail("%s is in use by another moelab process (pid %s): one trainer per run folder; wait for it "
                           "to finish, or choose another --out", dir, pid[0] ? pid : "unknown");
        return ml_fail("cannot lock %s: %s", path, strerror(why));
    }
    char pid[32];
    int n = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) != 0 || pwrite(fd, pid, (size_t)n, 0) != n) {
        close(fd);
        return ml_fail("cannot write the lock file %s: %s", path, strerror(errno));
    }
    return fd;
}

void runlock_release(int fd) {
    if (fd >= 0) close(fd); /* drops the lock; the file stays (removing it would race) */
}

void runlock_discard(const char *dir, int made_dir, int created) {
    static const char *const FILES[] = {"config.json", "log.jsonl", RUNLOCK_FILE};
    char path[4096];
    for (int i = created ? 0 : 2; i < 3; i++) {
        if (i == 2 && !made_dir && !created) break;
        if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, FILES[i]) < sizeof path) remove(path);
    }
    if (made_dir) rmdir(dir); /* fails, harmlessly, when anything else is in it */
}
