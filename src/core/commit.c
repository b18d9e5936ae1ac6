#include "core/commit.h"
#include "core/util.h"
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void commit_fault_point(void) {
    static long count;
    const char *e = getenv("MOELAB_COMMIT_FAULT");
    if (e && *e && ++count == atol(e)) raise(SIGKILL);
}

static int join(char *buf, size_t cap, const char *dir, const char *name, const char *suffix) {
    if ((size_t)snprintf(buf, cap, "%s/%s%s", dir, name, suffix) >= cap) return ml_fail("path too long: %s/%s", dir, name);
    return 0;
}

int commit_staged_path(char *buf, size_t cap, const char *dir, const char *name) {
    return join(buf, cap, dir, name, COMMIT_STAGED);
}

/* Makes renames and removals durable; best effort (nothing written is lost without it). */
static void sync_dir(const char *dir) {
    int fd = open(dir, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return;
    (void)fsync(fd);
    close(fd);
}

/* Applies a committed record's lines: rename what is still staged, delete what is listed. */
static int apply(const char *dir, char *record) {
    char from[4096], to[4096];
    for (char *line = strtok(record, "\n"); line; line = strtok(NULL, "\n")) {
        if ((line[0] != '+' && line[0] != '-') || !line[1] || strchr(line + 1, '/')) continue;
        if (join(to, sizeof to, dir, line + 1, "") || join(from, sizeof from, dir, line + 1, COMMIT_STAGED)) return -1;
        if (line[0] == '+' && rename(from, to) != 0 && errno != ENOENT)
            return ml_fail("cannot rename '%s': %s", from, strerror(errno));
        if (line[0] == '-' && remove(to) != 0 && errno != ENOENT)
            return ml_fail("cannot remove '%s': %s", to, strerror(errno));
        commit_fault_point();
    }
    return 0;
}

int commit_publish(const char *dir, const CommitEntry *entries, int n) {
    char rec[4096];
    if (join(rec, sizeof rec, dir, COMMIT_RECORD, "")) return -1;
    size_t len = 0, cap = 64;
    char *text = ml_malloc(cap);
    for (int i = 0; i < n; i++) {
        size_t k = strlen(entries[i].name) + 3;
        ml_reserve((void **)&text, &cap, len + k + 1);
        len += (size_t)snprintf(text + len, k + 1, "%c%s\n", entries[i].install ? '+' : '-', entries[i].name);
    }
    int rc = ml_write_file_atomic(rec, text, len); /* the commit point */
    if (rc == 0) {
        commit_fault_point();
        sync_dir(dir);
        rc = apply(dir, text);
    }
    free(text);
    if (rc == 0) {
        sync_dir(dir);
        if (remove(rec) != 0) rc = ml_fail("cannot remove '%s': %s", rec, strerror(errno));
        commit_fault_point();
    }
    return rc;
}

/* Removes temporary files a killed atomic write left: NAME.new.tmp.* and .commit.tmp.*. */
static void remove_temporaries(const char *dir, const char *const *names, int n) {
    DIR *d = opendir(dir);
    struct dirent *e;
    char prefix[512], path[4096];
    while (d && (e = readdir(d)) != NULL) {
        for (int i = -1; i < n; i++) {
            snprintf(prefix, sizeof prefix, "%s%s.tmp.", i < 0 ? COMMIT_RECORD : names[i], i < 0 ? "" : COMMIT_STAGED);
            if (strncmp(e->d_name, prefix, strlen(prefix)) == 0 && !join(path, sizeof path, dir, e->d_name, "")) remove(path);
        }
    }
    if (d) closedir(d);
}

int commit_recover(const char *dir, const char *const *names, int n) {
    char rec[4096], staged[4096];
    if (join(rec, sizeof rec, dir, COMMIT_RECORD, "")) return -1;
    remove_temporaries(dir, names, n);
    if (ml_file_exists(rec)) {
        char *text = ml_read_file_max(rec, NULL, 1 << 20);
        if (!text) return -1;
        int rc = apply(dir, text);
        free(text);
        sync_dir(dir);
        if (rc == 0 && remove(rec) != 0) rc = ml_fail("cannot remove '%s': %s", rec, strerror(errno));
        return rc;
    }
    for (int i = 0; i < n; i++) {
        if (commit_staged_path(staged, sizeof staged, dir, names[i])) return -1;
        if (remove(staged) != 0 && errno != ENOENT) return ml_fail("cannot remove '%s': %s", staged, strerror(errno));
    }
    return 0;
}

const char *commit_resolve(const char *path, char *buf, size_t cap) {
    const char *slash = strrchr(path, '/');
    size_t dl = slash ? (size_t)(slash - path) : 1;
    char rec[4096];
    snprintf(buf, cap, "%s", path);
    if (dl + strlen(COMMIT_RECORD) + 2 > sizeof rec) return buf;
    snprintf(rec, sizeof rec, "%.*s/%s", (int)dl, slash ? path : ".", COMMIT_RECORD);
    if (!ml_file_exists(rec)) return buf;
    char staged[4096];
    if ((size_t)snprintf(staged, sizeof staged, "%s%s", path, COMMIT_STAGED) >= sizeof staged) return buf;
    if (ml_file_exists(staged)) snprintf(buf, cap, "%s", staged);
    return buf;
}
