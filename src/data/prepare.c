/* Byte-level data preparation (see prepare.h): collect input files, cut them into
 * documents, split train/validation by a seeded hash, write two shards and meta.json. */
#include "data/prepare.h"
#include "core/util.h"
#include "data/shard.h"
#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum { TRAIN = 0, VAL = 1 };
static const char *const SPLIT_NAMES[2] = {"train", "val"};

/* ---------------------------------------------------------------- input files */

typedef struct {
    char **paths;
    int n, cap;
    int has_skip;       /* the output folder already exists: never read it back as input */
    dev_t skip_dev;
    ino_t skip_ino;
} FileList;

static void files_add(FileList *fl, const char *path) {
    if (fl->n == fl->cap) {
        fl->cap = fl->cap ? 2 * fl->cap : 16;
        fl->paths = ml_realloc(fl->paths, (size_t)fl->cap * sizeof *fl->paths);
    }
    fl->paths[fl->n++] = ml_strdup(path);
}

static void files_free(FileList *fl) {
    for (int i = 0; i < fl->n; i++) free(fl->paths[i]);
    free(fl->paths);
    memset(fl, 0, sizeof *fl);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static char *join_path(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = ml_malloc(n);
    size_t dl = strlen(dir);
    snprintf(p, n, (dl && dir[dl - 1] == '/') ? "%s%s" : "%s/%s", dir, name);
    return p;
}

/* Entries are visited in sorted name order so the corpus order, and with it the
 * split, does not depend on the file system. Hidden entries (".git", editor files)
 * and anything that is not a regular file or folder (symlinks included, which also
 * rules out cycles) are skipped. */
static int walk_dir(FileList *fl, const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return ml_fail("cannot open folder '%s': %s", dir, strerror(errno));
    char **names = NULL;
    int n = 0, cap = 0;
    struct dirent *e;
    errno = 0;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 32;
            names = ml_realloc(names, (size_t)cap * sizeof *names);
        }
        names[n++] = ml_strdup(e->d_name);
    }
    int rc = errno ? ml_fail("cannot list folder '%s': %s", dir, strerror(errno)) : 0;
    closedir(d);
    if (n) qsort(names, (size_t)n, sizeof *names, cmp_str);
    for (int i = 0; i < n; i++) {
        char *p = join_path(dir, names[i]);
        struct stat st;
        if (rc == 0 && lstat(p, &st) != 0) rc = ml_fail("cannot stat '%s': %s", p, strerror(errno));
        if (rc == 0 && S_ISDIR(st.st_mode) && !(fl->has_skip && st.st_dev == fl->skip_dev && st.st_ino == fl->skip_ino))
            rc = walk_dir(fl, p);
        else if (rc == 0 && S_ISREG(st.st_mode))
            files_add(fl, p);
        free(p);
        free(names[i]);
    }
    free(names);
    return rc;
}

/* Explicit inputs must exist: a typo should fail loudly, not shrink the corpus. */
static int collect_inputs(FileList *fl, const PrepareOptions *o) {
    struct stat st;
    if (stat(o->out_dir, &st) == 0 && S_ISDIR(st.st_mode)) {
        fl->has_skip = 1;
        fl->skip_dev = st.st_dev;
        fl->skip_ino = st.st_ino;
    }
    for (int i = 0; i < o->n_inputs; i++) {
        const char *in = o->inputs[i];
        if (stat(in, &st) != 0) return ml_fail("cannot read input '%s': %s", in, strerror(errno));
        if (S_ISDIR(st.st_mode)) {
            if (fl->has_skip && st.st_dev == fl->skip_dev && st.st_ino == fl->skip_ino)
                return ml_fail("input folder '%s' is the output folder", in);
            if (walk_dir(fl, in)) return -1;
        } else if (S_ISREG(st.st_mode)) {
            files_add(fl, in);
        } else {
            return ml_fail("input '%s' is not a regular file or folder", in);
        }
    }
    return 0;
}

/* ---------------------------------------------------------------- documents */

static int is_space(unsigned char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' || c == '\v'; }

static int all_space(const char *p, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!is_space((unsigned char)p[i])) return 0;
    return 1;
}

int64_t prepare_split_docs(const char *buf, size_t len, size_t min_bytes, size_t **ends) {
    *ends = NULL;
    if (all_space(buf, len)) return 0;
    int64_t n = 0;
    size_t cap = 0, start = 0, pos = 0;
    int prev_blank = 0;
    for (;;) {
        size_t line_start = pos;
        int at_end = pos >= len;
        size_t line_end = len;
        if (!at_end) {
            const char *nl = memchr(buf + pos, '\n', len - pos);
            line_end = nl ? (size_t)(nl - buf) + 1 : len;
        }
        /* Cutting only before a non-blank line keeps blank lines with the paragraph
         * they follow, so every document starts with text and the file is reproduced
         * exactly by concatenating its documents. The end of the buffer always cuts. */
        int blank = at_end || all_space(buf + line_start, line_end - line_start);
        if (at_end || (!blank && prev_blank && line_start - start >= min_bytes)) {
            if ((size_t)n == cap) {
                cap = cap ? 2 * cap : 16;
                *ends = ml_realloc(*ends, cap * sizeof **ends);
            }
            (*ends)[n++] = line_start;
            start = line_start;
        }
        if (at_end) break;
        prev_blank = blank;
        pos = line_end;
    }
    return n;
}

static uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static double doc_hash01(int64_t index, uint64_t seed) {
    uint64_t h = mix64(seed ^ mix64((uint64_t)index + 0x9E3779B97F4A7C15ull));
    return (double)(h >> 11) * (1.0 / 9007199254740992.0);
}

int prepare_is_val(int64_t index, uint64_t seed, double val_frac) { return doc_hash01(index, seed) < val_frac; }

/* ---------------------------------------------------------------- split buffers */

typedef struct {
    uint32_t *tok;
    int64_t n_tok, cap_tok;
    int64_t *start;
    int32_t *dom;
    int64_t n_docs, cap_docs;
    int64_t bytes; /* text bytes, end-of-text tokens excluded */
} SplitBuf;

static void buf_reserve(SplitBuf *b, int64_t more_tok) {
    if (b->n_tok + more_tok > b->cap_tok) {
        int64_t c = b->cap_tok ? b->cap_tok : 1 << 16;
        while (c < b->n_tok + more_tok) c *= 2;
        b->tok = ml_realloc(b->tok, (size_t)c * sizeof *b->tok);
        b->cap_tok = c;
    }
    if (b->n_docs == b->cap_docs) {
        b->cap_docs = b->cap_docs ? 2 * b->cap_docs : 64;
        b->start = ml_realloc(b->start, (size_t)b->cap_docs * sizeof *b->start);
        b->dom = ml_realloc(b->dom, (size_t)b->cap_docs * sizeof *b->dom);
    }
}

static void buf_add_text(SplitBuf *b, const char *p, size_t n, int domain) {
    buf_reserve(b, (int64_t)n + 1);
    b->start[b->n_docs] = b->n_tok;
    b->dom[b->n_docs++] = domain;
    for (size_t i = 0; i < n; i++) b->tok[b->n_tok++] = (unsigned char)p[i];
    b->tok[b->n_tok++] = PREPARE_EOT;
    b->bytes += (int64_t)n;
}

/* Moves document j (tokens include its end-of-text) from one split to the end of the other. */
static void buf_move_doc(SplitBuf *from, int64_t j, SplitBuf *to) {
    int64_t s = from->start[j], e = j + 1 < from->n_docs ? from->start[j + 1] : from->n_tok, n = e - s;
    buf_reserve(to, n);
    to->start[to->n_docs] = to->n_tok;
    to->dom[to->n_docs++] = from->dom[j];
    memcpy(to->tok + to->n_tok, from->tok + s, (size_t)n * sizeof *to->tok);
    to->n_tok += n;
    to->bytes += n - 1;
    memmove(from->tok + s, from->tok + e, (size_t)(from->n_tok - e) * sizeof *from->tok);
    from->n_tok -= n;
    from->bytes -= n - 1;
    for (int64_t k = j + 1; k < from->n_docs; k++) {
        from->start[k - 1] = from->start[k] - n;
        from->dom[k - 1] = from->dom[k];
    }
    from->n_docs--;
}

static void buf_free(SplitBuf *b) {
    free(b->tok);
    free(b->start);
    free(b->dom);
    memset(b, 0, sizeof *b);
}

/* With at least two documents both splits must be non-empty. While one split is empty
 * the other holds every document in index order, so its position j is the global index j;
 * we move the document whose hash lies closest to the threshold. */
static void ensure_both_splits(SplitBuf sp[2], uint64_t seed) {
    int64_t total = sp[TRAIN].n_docs + sp[VAL].n_docs;
    if (total < 2) return;
    for (int dst = 0; dst < 2; dst++) {
        SplitBuf *from = &sp[1 - dst];
        if (sp[dst].n_docs > 0) continue;
        int64_t best = 0;
        for (int64_t j = 1; j < from->n_docs; j++) {
            double h = doc_hash01(j, seed), hb = doc_hash01(best, seed);
            if (dst == VAL ? h < hb : h > hb) best = j;
        }
        buf_move_doc(from, best, &sp[dst]);
    }
}

/* Reads every file and fills both splits; nothing is written here. */
static int build_splits(const FileList *fl, const PrepareOptions *o, SplitBuf sp[2]) {
    int64_t index = 0;
    for (int f = 0; f < fl->n; f++) {
        size_t len;
        char *text = ml_read_file(fl->paths[f], &len);
        if (!text) return -1;
        size_t *ends;
        int64_t nd = prepare_split_docs(text, len, PREPARE_MIN_DOC_BYTES, &ends);
        size_t start = 0;
        for (int64_t d = 0; d < nd; d++, index++) {
            int split = prepare_is_val(index, o->seed, o->val_frac) ? VAL : TRAIN;
            buf_add_text(&sp[split], text + start, ends[d] - start, 0);
            start = ends[d];
        }
        free(ends);
        free(text);
    }
    if (index == 0)
        return ml_fail("no text found in the inputs (%d file%s, all empty or whitespace)", fl->n, fl->n == 1 ? "" : "s");
    ensure_both_splits(sp, o->seed);
    return 0;
}

/* ---------------------------------------------------------------- outputs */

static char *meta_json(const PrepareOptions *o, const FileList *fl, const SplitBuf sp[2]) {
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "format", "moelab-data");
    cJSON_AddNumberToObject(root, "version", 1);
    cJSON_AddStringToObject(root, "tokenizer", "bytes");
    cJSON_AddNumberToObject(root, "vocab_size", PREPARE_VOCAB);
    cJSON_AddNumberToObject(root, "eot_token", PREPARE_EOT);
    cJSON *doms = cJSON_AddArrayToObject(root, "domains");
    cJSON_AddItemToArray(doms, cJSON_CreateString("default"));
    cJSON *split = cJSON_AddObjectToObject(root, "split");
    cJSON_AddNumberToObject(split, "val_frac", o->val_frac);
    if (o->seed <= (1ull << 53)) {
        cJSON_AddNumberToObject(split, "seed", (double)o->seed);
    } else { /* a JSON number would lose bits */
        char s[32];
        snprintf(s, sizeof s, "%llu", (unsigned long long)o->seed);
        cJSON_AddStringToObject(split, "seed", s);
    }
    cJSON_AddNumberToObject(split, "min_doc_bytes", PREPARE_MIN_DOC_BYTES);
    cJSON *splits = cJSON_AddObjectToObject(root, "splits");
    for (int k = 0; k < 2; k++) {
        cJSON *s = cJSON_AddObjectToObject(splits, SPLIT_NAMES[k]);
        char file[16];
        snprintf(file, sizeof file, "%s.bin", SPLIT_NAMES[k]);
        cJSON_AddStringToObject(s, "file", file);
        cJSON_AddNumberToObject(s, "documents", (double)sp[k].n_docs);
        cJSON_AddNumberToObject(s, "tokens", (double)sp[k].n_tok);
        cJSON_AddNumberToObject(s, "bytes", (double)sp[k].bytes);
    }
    cJSON *inputs = cJSON_AddArrayToObject(root, "inputs");
    for (int i = 0; i < fl->n; i++) cJSON_AddItemToArray(inputs, cJSON_CreateString(fl->paths[i]));
    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    if (!text) {
        fprintf(stderr, "moelab: out of memory printing meta.json\n");
        exit(2);
    }
    size_t n = strlen(text); /* end the file with a newline, as text files should */
    char *out = ml_malloc(n + 2);
    memcpy(out, text, n);
    memcpy(out + n, "\n", 2);
    cJSON_free(text);
    return out;
}

static int out_path(char *dst, size_t cap, const char *dir, const char *name, const char *suffix) {
    if ((size_t)snprintf(dst, cap, "%s/%s%s", dir, name, suffix) >= cap) return ml_fail("output path too long: %s", dir);
    return 0;
}

/* Each file is first written (atomically) under a staging name; only when all three are
 * complete are they renamed into place, meta.json last, so a failed run adds nothing. */
static int write_outputs(const char *dir, const SplitBuf sp[2], const char *meta) {
    static const char *const names[3] = {"train.bin", "val.bin", "meta.json"};
    char final[3][4096], staged[3][4096];
    for (int k = 0; k < 3; k++)
        if (out_path(final[k], sizeof final[k], dir, names[k], "") ||
            out_path(staged[k], sizeof staged[k], dir, names[k], ".partial"))
            return -1;
    int rc = 0, written = 0;
    for (; rc == 0 && written < 3; written++) {
        if (written < 2) {
            const SplitBuf *b = &sp[written];
            const char *dom_names[1] = {"default"};
            ShardView v = {PREPARE_VOCAB, 1, dom_names, b->n_tok, b->n_docs, b->start, b->dom, b->tok};
            rc = shard_write(staged[written], &v);
        } else {
            rc = ml_write_file_atomic(staged[written], meta, strlen(meta));
        }
    }
    for (int k = 0; rc == 0 && k < 3; k++)
        if (rename(staged[k], final[k]) != 0) rc = ml_fail("cannot rename '%s': %s", staged[k], strerror(errno));
    if (rc != 0)
        for (int k = 0; k < 3; k++) remove(staged[k]);
    return rc;
}

int prepare_bytes(const PrepareOptions *o, PrepareStats *st) {
    memset(st, 0, sizeof *st);
    if (!o->out_dir || !o->out_dir[0]) return ml_fail("no output folder given");
    if (o->n_inputs <= 0) return ml_fail("no input files or folders given");
    if (!(o->val_frac > 0 && o->val_frac < 1)) return ml_fail("val_frac must be in (0, 1), got %g", o->val_frac);

    FileList fl = {0};
    SplitBuf sp[2] = {{0}};
    int rc = collect_inputs(&fl, o);
    if (rc == 0 && fl.n == 0) rc = ml_fail("no files found in the inputs");
    if (rc == 0) rc = build_splits(&fl, o, sp);
    if (rc == 0) {
        int existed = ml_file_exists(o->out_dir);
        char *meta = meta_json(o, &fl, sp);
        rc = ml_mkdir_p(o->out_dir);
        if (rc == 0) rc = write_outputs(o->out_dir, sp, meta);
        if (rc != 0 && !existed) rmdir(o->out_dir); /* only succeeds when we left it empty */
        free(meta);
    }
    if (rc == 0) {
        st->n_files = fl.n;
        for (int k = 0; k < 2; k++) {
            st->docs[k] = sp[k].n_docs;
            st->tokens[k] = sp[k].n_tok;
            st->bytes[k] = sp[k].bytes;
        }
    }
    buf_free(&sp[0]);
    buf_free(&sp[1]);
    files_free(&fl);
    return rc;
}
