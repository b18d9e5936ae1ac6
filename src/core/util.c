#include "core/util.h"
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static _Thread_local char g_err[1024];

int ml_fail(const char *fmt, ...) {
    /* Format into a local buffer first: callers may pass ml_last_error() as an argument. */
    char tmp[sizeof g_err];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    memcpy(g_err, tmp, sizeof g_err);
    return -1;
}

const char *ml_last_error(void) { return g_err[0] ? g_err : "unknown error"; }

static void oom(size_t n) {
    fprintf(stderr, "moelab: out of memory allocating %zu bytes\n", n);
    exit(2);
}

void *ml_malloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) oom(n);
    return p;
}

void *ml_calloc(size_t count, size_t size) {
    void *p = calloc(count ? count : 1, size ? size : 1);
    if (!p) oom(count * size);
    return p;
}

void *ml_realloc(void *p, size_t n) {
    void *q = realloc(p, n ? n : 1);
    if (!q) oom(n);
    return q;
}

char *ml_strdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = ml_malloc(n);
    memcpy(d, s, n);
    return d;
}

void ml_reserve(void **buf, size_t *cap, size_t n) {
    if (n <= *cap) return;
    size_t c = *cap ? *cap : 64;
    while (c < n) c *= 2;
    *buf = ml_realloc(*buf, c);
    *cap = c;
}

int ml_open_regular(const char *path, uint64_t *size) {
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return ml_fail("cannot open '%s': %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return ml_fail("'%s' is not a regular file (a folder, FIFO or device is not read)", path);
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl != -1) (void)fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
    if (size) *size = (uint64_t)st.st_size;
    return fd;
}

FILE *ml_fopen_regular(const char *path, uint64_t *size) {
    int fd = ml_open_regular(path, size);
    if (fd < 0) return NULL;
    FILE *f = fdopen(fd, "rb");
    if (!f) {
        ml_fail("cannot open '%s': %s", path, strerror(errno));
        close(fd);
    }
    return f;
}

char *ml_read_file_max(const char *path, size_t *len, uint64_t max) {
    uint64_t size;
    int fd = ml_open_regular(path, &size);
    if (fd < 0) return NULL;
    if (size > max || size > SIZE_MAX - 1) {
        close(fd);
        ml_fail("'%s' is %llu bytes, more than the %llu this file may hold", path, (unsigned long long)size,
                (unsigned long long)max);
        return NULL;
    }
    char *buf = ml_malloc((size_t)size + 1);
    size_t n = 0;
    while (n < size) {
        ssize_t got = read(fd, buf + n, (size_t)size - n);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) break;
        n += (size_t)got;
    }
    close(fd);
    if (n != size) {
        free(buf);
        ml_fail("error reading '%s': %s", path, n < size ? "it shrank while being read" : strerror(errno));
        return NULL;
    }
    buf[n] = 0;
    if (len) *len = n;
    return buf;
}

char *ml_read_file(const char *path, size_t *len) { return ml_read_file_max(path, len, ML_READ_MAX); }

int ml_write_atomic_with(const char *path, int (*write_fn)(FILE *f, void *ctx), void *ctx) {
    size_t n = strlen(path) + 32;
    char *tmp = ml_malloc(n);
    snprintf(tmp, n, "%s.tmp.%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        ml_fail("cannot create '%s': %s", tmp, strerror(errno));
        free(tmp);
        return -1;
    }
    int rc = write_fn(f, ctx);
    if (rc == 0 && fflush(f) != 0) rc = ml_fail("cannot write '%s': %s", tmp, strerror(errno));
    if (rc == 0 && fsync(fileno(f)) != 0) rc = ml_fail("cannot sync '%s': %s", tmp, strerror(errno));
    if (fclose(f) != 0 && rc == 0) rc = ml_fail("cannot close '%s': %s", tmp, strerror(errno));
    if (rc == 0 && rename(tmp, path) != 0) rc = ml_fail("cannot rename to '%s': %s", path, strerror(errno));
    if (rc != 0) remove(tmp);
    free(tmp);
    return rc;
}

typedef struct { const void *data; size_t len; } Blob;

static int write_blob(FILE *f, void *ctx) {
    Blob *b = ctx;
    if (b->len && fwrite(b->data, 1, b->len, f) != b->len) return ml_fail("short write: %s", strerror(errno));
    return 0;
}

int ml_write_file_atomic(const char *path, const void *data, size_t len) {
    Blob b = {data, len};
    return ml_write_atomic_with(path, write_blob, &b);
}

int ml_mkdir_p(const char *path) {
    char buf[4096];
    if (strlen(path) >= sizeof buf) return ml_fail("path too long: %s", path);
    strcpy(buf, path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        if (mkdir(buf, 0777) != 0 && errno != EEXIST) return ml_fail("cannot create folder '%s': %s", buf, strerror(errno));
        *p = '/';
    }
    if (mkdir(buf, 0777) != 0 && errno != EEXIST) return ml_fail("cannot create folder '%s': %s", buf, strerror(errno));
    struct stat st;
    if (stat(buf, &st) != 0 || !S_ISDIR(st.st_mode)) return ml_fail("'%s' exists and is not a folder", buf);
    return 0;
}

int ml_file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

double ml_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

void rng_seed(Rng *r, uint64_t seed) {
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&seed);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t rng_next(Rng *r) {
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

float rng_uniform(Rng *r) { return (rng_next(r) >> 40) * (1.0f / 16777216.0f); }

float rng_normal(Rng *r) {
    /* Box-Muller; one value per call keeps the state trivially serialisable. */
    double u1 = ((rng_next(r) >> 11) + 1.0) * (1.0 / 9007199254740993.0);
    double u2 = (rng_next(r) >> 11) * (1.0 / 9007199254740992.0);
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

uint64_t rng_below(Rng *r, uint64_t n) { return n ? rng_next(r) % n : 0; }
