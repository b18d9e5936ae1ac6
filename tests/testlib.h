/* Minimal test harness: RUN(fn) runs one test; CHECK records a failure with a message.
 * Each test prints "PASS name" or "FAIL name"; tests/run_tests.sh counts them. */
#ifndef MOELAB_TESTLIB_H
#define MOELAB_TESTLIB_H
#include "core/util.h"
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

static int tl_failed_checks, tl_passed, tl_failed;

#define CHECK(cond, ...)                                                                 \
    do {                                                                                 \
        if (!(cond)) {                                                                   \
            tl_failed_checks++;                                                          \
            fprintf(stdout, "  check failed at %s:%d: %s: ", __FILE__, __LINE__, #cond); \
            fprintf(stdout, __VA_ARGS__);                                                \
            fprintf(stdout, "\n");                                                       \
        }                                                                                \
    } while (0)

#define RUN(fn)                                                                  \
    do {                                                                         \
        int before_ = tl_failed_checks;                                          \
        fn();                                                                    \
        if (tl_failed_checks == before_) { tl_passed++; printf("PASS %s\n", #fn); } \
        else { tl_failed++; printf("FAIL %s\n", #fn); }                          \
        fflush(stdout);                                                          \
    } while (0)

#define TEST_MAIN_END() \
    do { printf("# %d passed, %d failed\n", tl_passed, tl_failed); return tl_failed ? 1 : 0; } while (0)

/* Max absolute and relative difference between two arrays; rel uses max(|a|,|b|, floor). */
static inline void tl_maxdiff(const float *a, const float *b, size_t n, double floor_, double *abs_out, double *rel_out) {
    double ma = 0, mr = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        double s = fmax(fmax(fabs(a[i]), fabs(b[i])), floor_);
        if (d > ma || isnan(d)) ma = isnan(d) ? INFINITY : d;
        if (d / s > mr || isnan(d)) mr = isnan(d) ? INFINITY : d / s;
    }
    *abs_out = ma;
    *rel_out = mr;
}

/* Central differences (f(x+h) - f(x-h)) / 2h against grad[i] at up to `want` indices (every
 * index in turn when n <= want, else drawn from rng). An index whose +-h changes the routing
 * (*sig after f differs from its value at x) is skipped; at least half must be checked.
 * Relative error |fd - an| / (max(|fd|, |an|) + floor_) must stay below 2e-2; returns the
 * worst and sets *skipped. */
typedef double (*TlLossFn)(void *ctx);
static inline double tl_fd_check(const char *name, float *x, const float *grad, size_t n, TlLossFn f, void *ctx,
                                 const uint64_t *sig, Rng *rng, int want, float h, double floor_, int *skipped) {
    double worst = 0.0;
    int checked = 0;
    *skipped = 0;
    if ((size_t)want > n) want = (int)n;
    f(ctx);
    uint64_t base = *sig;
    for (int s = 0; checked < want && s < 4 * want; s++) {
        size_t i = n <= (size_t)want ? (size_t)s % n : rng_below(rng, n);
        float save = x[i];
        x[i] = save + h;
        double lp = f(ctx);
        uint64_t sp = *sig;
        x[i] = save - h;
        double lm = f(ctx);
        uint64_t sm = *sig;
        x[i] = save;
        if (sp != base || sm != base) {
            (*skipped)++;
            continue;
        }
        checked++;
        double fd = (lp - lm) / (2.0 * h), an = grad[i], err = fabs(fd - an) / (fmax(fabs(fd), fabs(an)) + floor_);
        worst = fmax(worst, err);
        CHECK(err < 2e-2, "%s[%zu]: analytic %.6g vs numeric %.6g", name, i, an, fd);
    }
    CHECK(checked * 2 >= want, "%s: only %d of %d samples away from a routing change", name, checked, want);
    return worst;
}

/* Makes writes past `bytes` fail, as a full disk would; returns the limit to restore
 * with tl_restore_file_size. SIGXFSZ is ignored so the write returns an error instead. */
static inline struct rlimit tl_limit_file_size(rlim_t bytes) {
    struct rlimit old, small;
    getrlimit(RLIMIT_FSIZE, &old);
    small = old;
    small.rlim_cur = bytes;
    signal(SIGXFSZ, SIG_IGN);
    setrlimit(RLIMIT_FSIZE, &small);
    return old;
}

static inline void tl_restore_file_size(struct rlimit old) { setrlimit(RLIMIT_FSIZE, &old); }

/* A test binary's scratch folder (made by the test's main) and helpers for paths in it. */
static char tl_tmp_dir[64];

static inline const char *tl_tmp(char *buf, size_t cap, const char *name) {
    snprintf(buf, cap, "%s/%s", tl_tmp_dir, name);
    return buf;
}

static inline void tl_rm_rf(const char *path);

/* Makes tl_tmp_dir, /tmp/moelab_<tag>_XXXXXX; returns 0, or -1 after printing why. */
static inline int tl_mktmp(const char *tag) {
    snprintf(tl_tmp_dir, sizeof tl_tmp_dir, "/tmp/moelab_%s_XXXXXX", tag);
    if (mkdtemp(tl_tmp_dir)) return 0;
    perror("mkdtemp");
    return -1;
}

static inline void tl_rm_rf(const char *path) {
    struct stat st;
    if (lstat(path, &st) != 0) return;
    if (S_ISDIR(st.st_mode)) {
        DIR *d = opendir(path);
        struct dirent *e;
        while (d && (e = readdir(d)) != NULL) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
            char sub[1024];
            if (snprintf(sub, sizeof sub, "%s/%s", path, e->d_name) >= (int)sizeof sub) continue;
            tl_rm_rf(sub);
        }
        if (d) closedir(d);
        rmdir(path);
    } else {
        unlink(path);
    }
}

#endif
