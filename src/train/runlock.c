#include "train/runlock.h"
#include "core/util.h"
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

/* One attempt: the fd holding the lock, -1 (ml_fail) when refused, -2 when the file was
 * replaced between open and flock (a holder removing it on exit): try again. */
static int try_lock(const char *dir, const char *path) {
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
    struct stat a, b;
    if (fstat(fd, &a) != 0 || stat(path, &b) != 0 || a.st_dev != b.st_dev || a.st_ino != b.st_ino) {
        close(fd);
        return -2;
    }
    return fd;
}

int runlock_acquire(const char *dir) {
    char path[4096];
    if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, RUNLOCK_FILE) >= sizeof path) return ml_fail("path too long: %s", dir);
    int fd = -2;
    for (int i = 0; i < 5 && fd == -2; i++) fd = try_lock(dir, path);
    if (fd == -2) return ml_fail("cannot lock %s: it keeps being replaced", path);
    if (fd < 0) return -1;
    char pid[32];
    int n = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) != 0 || pwrite(fd, pid, (size_t)n, 0) != n) {
        close(fd);
        return ml_fail("cannot write the lock file %s: %s", path, strerror(errno));
    }
    return fd;
}

/* Removed while still held, so the folder is left as it was; a process that opened the
 * old file meanwhile sees it replaced and retries on the new one. */
static void release(const char *dir, int fd) {
    char path[4096];
    if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, RUNLOCK_FILE) < sizeof path) unlink(path);
    close(fd);
}

void runlock_end(const char *dir, int fd, int discard, int made_dir, int created) {
    if (fd < 0) return;
    static const char *const FILES[] = {"config.json", "log.jsonl"};
    char path[4096];
    for (int i = 0; discard && created && i < 2; i++)
        if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, FILES[i]) < sizeof path) remove(path);
    release(dir, fd);
    if (discard && made_dir) rmdir(dir); /* fails, harmlessly, when anything else is in it */
}
