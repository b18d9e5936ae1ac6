#define _GNU_SOURCE /* fopencookie */
#include "io/jsonl.h"
#include "core/util.h"
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct {
    int fd, own;
    char *line; /* bytes since the last newline */
    size_t len, cap;
} Sink;

static int word_char(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.'; }

/* A token starting at t that printf wrote for a non-finite double: [-]nan, [-]inf, [-]infinity. */
static size_t nonfinite_at(const char *t, size_t n) {
    size_t i = t[0] == '-' ? 1 : 0;
    static const char *const W[] = {"infinity", "nan", "inf"};
    for (int w = 0; w < 3; w++) {
        size_t k = strlen(W[w]);
        if (i + k <= n && strncasecmp(t + i, W[w], k) == 0 && (i + k == n || !word_char(t[i + k]))) return i + k;
    }
    return 0;
}

size_t json_finite(const char *text, size_t n, char *out) {
    size_t o = 0;
    int in_str = 0;
    for (size_t i = 0; i < n;) {
        char c = text[i];
        if (in_str) {
            out[o++] = c;
            if (c == '\\' && i + 1 < n) out[o++] = text[++i];
            else if (c == '"') in_str = 0;
            i++;
            continue;
        }
        size_t k = (i == 0 || !word_char(text[i - 1])) ? nonfinite_at(text + i, n - i) : 0;
        if (k) {
            memcpy(out + o, "null", 4);
            o += 4;
            i += k;
            continue;
        }
        if (c == '"') in_str = 1;
        out[o++] = c;
        i++;
    }
    return o;
}

static int write_all(int fd, const char *p, size_t n) {
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int flush_line(Sink *s) {
    if (!s->len) return 0;
    char *clean = ml_malloc(s->len / 3 * 4 + 8);
    size_t n = json_finite(s->line, s->len, clean);
    int rc = write_all(s->fd, clean, n);
    free(clean);
    s->len = 0;
    return rc;
}

static ssize_t sink_write(void *c, const char *buf, size_t n) {
    Sink *s = c;
    for (size_t i = 0; i < n; i++) {
        ml_reserve((void **)&s->line, &s->cap, s->len + 1);
        s->line[s->len++] = buf[i];
        if (buf[i] == '\n' && flush_line(s)) return -1;
    }
    return (ssize_t)n;
}

static int sink_close(void *c) {
    Sink *s = c;
    int rc = flush_line(s);
    if (s->own && close(s->fd) != 0) rc = -1;
    free(s->line);
    free(s);
    return rc;
}

static FILE *wrap(int fd, int own) {
    Sink *s = ml_calloc(1, sizeof *s);
    s->fd = fd;
    s->own = own;
    cookie_io_functions_t io = {NULL, sink_write, NULL, sink_close};
    FILE *f = fopencookie(s, "w", io);
    if (!f) {
        free(s);
        if (own) close(fd);
        ml_fail("cannot open a JSON stream: %s", strerror(errno));
    }
    return f;
}

FILE *jsonl_open(const char *path) {
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) return ml_fail("cannot open %s: %s", path, strerror(errno)), NULL;
    return wrap(fd, 1);
}

FILE *jsonl_fdopen(int fd) { return wrap(fd, 0); }
