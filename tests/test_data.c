/* Tests for token shards, the loaders, meta.json and byte-level preparation. */
#include "core/util.h"
#include "data/prepare.h"
#include "data/shard.h"
#include "testlib.h"
#include <dirent.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---------------------------------------------------------------- helpers */

static int file_equal(const char *a, const char *b) {
    size_t na, nb;
    char *x = ml_read_file(a, &na), *y = ml_read_file(b, &nb);
    int eq = x && y && na == nb && memcmp(x, y, na) == 0;
    free(x);
    free(y);
    return eq;
}

static void write_text(const char *path, const char *s) { ml_write_file_atomic(path, s, strlen(s)); }

/* A small shard: tokens[i] = i % vocab, documents at the given starts, domain d % n_domains. */
typedef struct {
    const char *names[3];
    int64_t starts[8];
    int32_t doms[8];
    uint32_t toks[4096];
    ShardView v;
} TestShard;

static void make_shard(TestShard *ts, int vocab, int64_t n_tokens, int n_docs) {
    memset(ts, 0, sizeof *ts);
    ts->names[0] = "alpha";
    ts->names[1] = "beta";
    ts->names[2] = "gamma";
    for (int64_t i = 0; i < n_tokens; i++) ts->toks[i] = (uint32_t)(i % vocab);
    for (int d = 0; d < n_docs; d++) {
        ts->starts[d] = d * n_tokens / n_docs;
        ts->doms[d] = d % 3;
    }
    ts->v = (ShardView){vocab, 3, ts->names, n_tokens, n_docs, ts->starts, ts->doms, ts->toks};
}

/* ---------------------------------------------------------------- shards */

static void test_shard_roundtrip(void) {
    TestShard ts;
    make_shard(&ts, 500, 1000, 5);
    char p[256];
    tl_tmp(p, sizeof p, "rt.bin");
    CHECK(shard_write(p, &ts.v) == 0, "write: %s", ml_last_error());
    Shard s;
    CHECK(shard_load(&s, p) == 0, "load: %s", ml_last_error());
    if (s.tokens == NULL) return;
    CHECK(s.vocab_size == 500 && s.n_domains == 3 && s.n_tokens == 1000 && s.n_docs == 5, "header");
    CHECK(!strcmp(s.domains[1], "beta") && !strcmp(s.domains[2], "gamma"), "names");
    CHECK(!memcmp(s.tokens, ts.toks, 1000 * 4), "tokens");
    CHECK(!memcmp(s.doc_start, ts.starts, 5 * 8) && !memcmp(s.doc_domain, ts.doms, 5 * 4), "doc table");
    /* documents start at 0,200,400,600,800 with domains 0,1,2,0,1 */
    CHECK(shard_domain_at(&s, 0) == 0 && shard_domain_at(&s, 199) == 0, "doc 0");
    CHECK(shard_domain_at(&s, 200) == 1 && shard_domain_at(&s, 399) == 1, "doc 1");
    CHECK(shard_domain_at(&s, 400) == 2 && shard_domain_at(&s, 999) == 1, "docs 2, 4");
    CHECK(shard_domain_at(&s, 1000) == -1 && shard_domain_at(&s, -1) == -1, "out of range");
    shard_free(&s);
    CHECK(s.tokens == NULL, "freed");

    /* An empty shard is valid too (a split may be empty). */
    ShardView e = {257, 1, ts.names, 0, 0, NULL, NULL, NULL};
    CHECK(shard_write(p, &e) == 0, "write empty: %s", ml_last_error());
    CHECK(shard_load(&s, p) == 0 && s.n_tokens == 0, "load empty: %s", ml_last_error());
    shard_free(&s);
}

static void test_shard_write_rejects(void) {
    TestShard ts;
    make_shard(&ts, 100, 300, 3);
    char p[256];
    tl_tmp(p, sizeof p, "rej.bin");
    ts.toks[7] = 100;
    CHECK(shard_write(p, &ts.v) != 0 && strstr(ml_last_error(), "vocab"), "token >= vocab: %s", ml_last_error());
    CHECK(!ml_file_exists(p), "nothing written");
    ts.toks[7] = 7;
    ts.doms[1] = 3;
    CHECK(shard_write(p, &ts.v) != 0 && strstr(ml_last_error(), "domain"), "bad domain: %s", ml_last_error());
}

/* Writes a valid shard, patches `len` bytes at `off` (or truncates when len < 0) and loads it. */
static int load_patched(const char *name, long off, const void *bytes, long len, char *path, size_t cap) {
    TestShard ts;
    make_shard(&ts, 300, 1000, 4); /* header 40 + names 192 + docs 64 = tokens at 296 */
    tl_tmp(path, cap, name);
    if (shard_write(path, &ts.v)) return 0;
    size_t n;
    char *buf = ml_read_file(path, &n);
    if (len < 0) n = (size_t)off;
    else memcpy(buf + off, bytes, (size_t)len);
    ml_write_file_atomic(path, buf, n);
    free(buf);
    Shard s;
    int rc = shard_load(&s, path);
    if (rc == 0) shard_free(&s);
    return rc;
}

static int err_has(const char *a, const char *b) {
    return strstr(ml_last_error(), a) != NULL && (b == NULL || strstr(ml_last_error(), b) != NULL);
}

static void test_shard_corrupt(void) {
    char p[256];
    const long tok0 = 40 + 3 * 64 + 4 * 16;
    CHECK(load_patched("trunc.bin", tok0 + 512 * 4, NULL, -1, p, sizeof p) != 0 &&
              err_has("trunc.bin", "header says 1000 tokens but file holds 512"),
          "truncated: %s", ml_last_error());
    CHECK(load_patched("short.bin", 20, NULL, -1, p, sizeof p) != 0 && err_has("short.bin", "truncated"),
          "short header: %s", ml_last_error());
    CHECK(load_patched("magic.bin", 0, "XLSHARD1", 8, p, sizeof p) != 0 && err_has("magic.bin", "magic"),
          "bad magic: %s", ml_last_error());
    CHECK(load_patched("ver.bin", 8, "\x02\0\0\0", 4, p, sizeof p) != 0 && err_has("ver.bin", "version 2"),
          "version: %s", ml_last_error());
    /* token 5 := 300 = vocab_size */
    CHECK(load_patched("tok.bin", tok0 + 5 * 4, "\x2c\x01\0\0", 4, p, sizeof p) != 0 && err_has("tok.bin", "vocab_size 300"),
          "token >= vocab: %s", ml_last_error());
    /* document 2's domain id := 3 with 3 domains */
    CHECK(load_patched("dom.bin", 40 + 192 + 2 * 16 + 8, "\x03\0\0\0", 4, p, sizeof p) != 0 &&
              err_has("dom.bin", "domain id 3"),
          "domain: %s", ml_last_error());
    /* document 2 starts at 100, before document 1 at 250 */
    CHECK(load_patched("order.bin", 40 + 192 + 2 * 16, "\x64\0\0\0\0\0\0\0", 8, p, sizeof p) != 0 &&
              err_has("order.bin", "out of order"),
          "doc order: %s", ml_last_error());
    /* document 3 starts at 5000, past the 1000 tokens (and is still monotone) */
    CHECK(load_patched("past.bin", 40 + 192 + 3 * 16, "\x88\x13\0\0\0\0\0\0", 8, p, sizeof p) != 0 &&
              err_has("past.bin", "only 1000 tokens"),
          "doc past end: %s", ml_last_error());
    /* header claims 2^40 documents: must be rejected before any allocation */
    CHECK(load_patched("ndocs.bin", 32, "\0\0\0\0\0\x01\0\0", 8, p, sizeof p) != 0 && err_has("ndocs.bin", "truncated"),
          "huge doc count: %s", ml_last_error());
    /* header claims fewer tokens than stored */
    CHECK(load_patched("trail.bin", 24, "\xe7\x03\0\0\0\0\0\0", 8, p, sizeof p) != 0 && err_has("trail.bin", "trailing"),
          "trailing bytes: %s", ml_last_error());
    Shard s;
    CHECK(shard_load(&s, "/nonexistent/moelab.bin") != 0 && err_has("/nonexistent/moelab.bin", NULL), "missing: %s",
          ml_last_error());
}

/* ---------------------------------------------------------------- loaders */

static int load_test_shard(Shard *s, const char *name, int vocab, int64_t n, int docs) {
    TestShard ts;
    make_shard(&ts, vocab, n, docs);
    char p[256];
    tl_tmp(p, sizeof p, name);
    if (shard_write(p, &ts.v)) return -1;
    return shard_load(s, p);
}

static void test_loader_determinism(void) {
    Shard s;
    if (load_test_shard(&s, "ld.bin", 4000, 3000, 6)) { CHECK(0, "setup: %s", ml_last_error()); return; }
    enum { B = 4, T = 16, N = B * T };
    int32_t i1[N], t1[N], i2[N], t2[N], i3[N], t3[N];
    Loader a, b, c;
    CHECK(loader_init(&a, &s, B, T, 42) == 0 && loader_init(&b, &s, B, T, 42) == 0 && loader_init(&c, &s, B, T, 43) == 0,
          "init");
    int same = 1, differ = 0;
    for (int step = 0; step < 5; step++) {
        loader_next(&a, i1, t1);
        loader_next(&b, i2, t2);
        loader_next(&c, i3, t3);
        same &= !memcmp(i1, i2, sizeof i1) && !memcmp(t1, t2, sizeof t1);
        differ |= memcmp(i1, i3, sizeof i1) != 0;
    }
    CHECK(same, "same seed gives the same batches");
    CHECK(differ, "a different seed gives different batches");
    /* The Loader is plain data: a copy resumes exactly where the original is. */
    Loader saved = a;
    loader_next(&a, i1, t1);
    loader_next(&saved, i2, t2);
    CHECK(!memcmp(i1, i2, sizeof i1) && !memcmp(t1, t2, sizeof t1), "copied state resumes");
    Loader d;
    CHECK(loader_init(&d, &s, 1, 3000, 1) != 0, "window longer than the shard is refused");
    CHECK(loader_init(&d, &s, 1, 2999, 1) == 0, "window of exactly the shard is fine");
    int32_t *bi = ml_malloc(2999 * sizeof *bi), *bt = ml_malloc(2999 * sizeof *bt);
    loader_next(&d, bi, bt);
    CHECK(bi[0] == 0 && bt[2998] == 2999, "the only window is the whole shard");
    free(bi);
    free(bt);
    shard_free(&s);
}

static void test_loader_shift(void) {
    Shard s;
    if (load_test_shard(&s, "sh.bin", 4000, 500, 3)) { CHECK(0, "setup: %s", ml_last_error()); return; }
    enum { B = 8, T = 32, N = B * T };
    int32_t in[N], tg[N];
    Loader l;
    loader_init(&l, &s, B, T, 7);
    int ok = 1;
    for (int step = 0; step < 50; step++) {
        loader_next(&l, in, tg);
        for (int b = 0; b < B; b++) {
            int32_t st = in[b * T];
            ok &= st >= 0 && st + T < 500; /* the window lies inside the shard */
            for (int t = 0; t < T; t++) ok &= in[b * T + t] == st + t && tg[b * T + t] == st + t + 1;
        }
    }
    CHECK(ok, "windows are contiguous and targets are inputs shifted by one");
    shard_free(&s);
}

static void test_eval_batches(void) {
    Shard s;
    if (load_test_shard(&s, "ev.bin", 4000, 103, 3)) { CHECK(0, "setup: %s", ml_last_error()); return; }
    enum { B = 4, T = 8, N = B * T };
    /* targets 1..102 in windows of 8: 13 windows, 4 batches, the last holding one row */
    CHECK(loader_eval_batches(&s, B, T) == 4, "batches: %lld", (long long)loader_eval_batches(&s, B, T));
    int32_t in[N], tg[N], dom[N];
    int32_t next = 1, rows = 0;
    int ok = 1;
    for (int64_t b = 0; b < 4; b++) {
        int filled = loader_eval_batch(&s, B, T, b, in, tg, dom);
        rows += filled;
        for (int i = 0; i < N; i++) {
            if (tg[i] < 0) {
                ok &= dom[i] == -1 && (i / T >= filled || next == 103);
                continue;
            }
            ok &= tg[i] == next && in[i] == next - 1 && dom[i] == shard_domain_at(&s, next);
            next++;
        }
        if (b == 3) CHECK(filled == 1 && tg[T] == -1 && tg[N - 1] == -1, "last batch padded: filled %d", filled);
    }
    CHECK(ok, "targets cover 1..102 in order with their domains");
    CHECK(next == 103 && rows == 13, "covered up to %d in %d rows", next, rows);
    CHECK(loader_eval_batch(&s, B, T, 4, in, tg, NULL) == 0 && tg[0] == -1, "past the end is empty");
    shard_free(&s);
}

/* A partial evaluation takes windows spread over the whole shard, each a whole window. */
static void test_eval_spread(void) {
    Shard s;
    if (load_test_shard(&s, "evs.bin", 4000, 1001, 3)) { CHECK(0, "setup: %s", ml_last_error()); return; }
    enum { B = 4, T = 8, N = B * T };
    int32_t in[N], tg[N], dom[N];
    /* 1000 targets: 125 windows; 2 batches of 4 rows pick windows 0, 15, 31, ..., 109 */
    int32_t first[2 * B];
    int ok = 1;
    for (int64_t b = 0; b < 2; b++) {
        ok &= loader_eval_batch_spread(&s, B, T, b, 2, in, tg, dom) == B;
        for (int r = 0; r < B; r++) {
            first[b * B + r] = tg[r * T];
            for (int t = 0; t < T; t++) ok &= tg[r * T + t] == tg[r * T] + t && in[r * T + t] == tg[r * T + t] - 1;
        }
    }
    CHECK(ok, "whole windows of consecutive targets");
    CHECK(first[0] == 1 && first[7] == 1 + 8 * (7 * 125 / 8) && first[4] > 400 && first[4] < 600, "spread: %d .. %d .. %d",
          first[0], first[4], first[7]);
    /* Asking for at least every batch is the plain order. */
    int32_t in2[N], tg2[N];
    loader_eval_batch_spread(&s, B, T, 3, 100, in, tg, NULL);
    loader_eval_batch(&s, B, T, 3, in2, tg2, NULL);
    CHECK(!memcmp(tg, tg2, sizeof tg) && !memcmp(in, in2, sizeof in), "n_batches >= all: same as loader_eval_batch");
    CHECK(loader_eval_batch_spread(&s, B, T, 2, 2, in, tg, NULL) == 0 && tg[0] == -1, "past the selection is empty");
    shard_free(&s);
}

/* ---------------------------------------------------------------- meta.json */

static void test_meta(void) {
    char dir[256], p[300];
    tl_tmp(dir, sizeof dir, "meta");
    ml_mkdir_p(dir);
    snprintf(p, sizeof p, "%s/meta.json", dir);
    write_text(p, "{\"tokenizer\": \"bytes\", \"vocab_size\": 257}");
    DataMeta m;
    CHECK(data_meta_load(&m, dir) == 0, "load: %s", ml_last_error());
    CHECK(!strcmp(m.tokenizer, "bytes") && m.vocab_size == 257, "fields");
    if (m.token_bytes) CHECK(m.token_bytes[0] == 1 && m.token_bytes[255] == 1 && m.token_bytes[256] == 0, "token bytes");
    data_meta_free(&m);
    write_text(p, "{\"tokenizer\": \"bytes\", \"vocab_size\": 300}");
    CHECK(data_meta_load(&m, dir) != 0 && err_has("257", NULL), "bad vocab: %s", ml_last_error());
    write_text(p, "{\"tokenizer\": \"bpe\"");
    CHECK(data_meta_load(&m, dir) != 0 && err_has("meta.json", "JSON"), "bad JSON: %s", ml_last_error());
    CHECK(data_meta_load(&m, "/nonexistent") != 0, "missing folder");
}

/* ---------------------------------------------------------------- preparation */

/* Paragraphs of pseudo-random words separated by blank lines. */
static char *gen_text(uint64_t seed, size_t target) {
    static const char *words[] = {"the", "expert", "router", "token", "gate", "mixture", "of", "load", "balance", "layer"};
    Rng r;
    rng_seed(&r, seed);
    char *s = ml_malloc(target + 256);
    size_t n = 0;
    while (n < target) {
        int lines = 2 + (int)rng_below(&r, 6);
        for (int l = 0; l < lines; l++) {
            int w = 4 + (int)rng_below(&r, 10);
            for (int k = 0; k < w; k++) n += (size_t)sprintf(s + n, k ? " %s" : "%s", words[rng_below(&r, 10)]);
            s[n++] = '\n';
        }
        s[n++] = '\n';
    }
    s[n] = 0;
    return s;
}

static void test_split_docs(void) {
    char *t = gen_text(3, 50000);
    size_t len = strlen(t), *ends;
    int64_t n = prepare_split_docs(t, len, 4096, &ends);
    CHECK(n >= 8, "many documents from one file: %lld", (long long)n);
    size_t start = 0;
    int ok = 1;
    for (int64_t d = 0; d < n; d++) {
        ok &= ends[d] > start && (d == n - 1 || ends[d] - start >= 4096);
        ok &= d == n - 1 || (ends[d] >= 2 && t[ends[d] - 1] == '\n' && t[ends[d] - 2] == '\n'); /* cut after a blank line */
        start = ends[d];
    }
    CHECK(ok && n > 0 && ends[n - 1] == len, "documents tile the text, each at least 4096 bytes but the last");
    free(ends);
    free(t);
    CHECK(prepare_split_docs(" \n\n\t\n", 5, 4096, &ends) == 0 && ends == NULL, "whitespace is no document");
    CHECK(prepare_split_docs("abc", 3, 4096, &ends) == 1 && ends[0] == 3, "short text is one document");
    free(ends);
}

/* Builds tl_tmp_dir/corpus: a.txt, sub/b.txt, sub/deeper/c.md, an empty file and a hidden file. */
static size_t make_corpus(char *dir, size_t cap) {
    tl_tmp(dir, cap, "corpus");
    char p[512];
    snprintf(p, sizeof p, "%s/sub/deeper", dir);
    ml_mkdir_p(p);
    const char *names[3] = {"a.txt", "sub/b.txt", "sub/deeper/c.md"};
    size_t total = 0;
    for (int i = 0; i < 3; i++) {
        char *t = gen_text(10 + (uint64_t)i, 30000 + 10000 * (size_t)i);
        snprintf(p, sizeof p, "%s/%s", dir, names[i]);
        write_text(p, t);
        total += strlen(t);
        free(t);
    }
    snprintf(p, sizeof p, "%s/empty.txt", dir);
    write_text(p, "");
    snprintf(p, sizeof p, "%s/.hidden", dir);
    write_text(p, "never read\n");
    return total;
}

static int check_split_shard(const char *path, int64_t *docs, int64_t *tokens) {
    Shard s;
    if (shard_load(&s, path)) return 0;
    int ok = s.vocab_size == 257 && s.n_domains == 1 && !strcmp(s.domains[0], "default");
    /* each document ends with end-of-text, which appears nowhere else */
    for (int64_t d = 0; d < s.n_docs; d++) {
        int64_t e = d + 1 < s.n_docs ? s.doc_start[d + 1] : s.n_tokens;
        ok &= s.tokens[e - 1] == 256;
        for (int64_t i = s.doc_start[d]; i < e - 1; i++) ok &= s.tokens[i] < 256;
    }
    *docs = s.n_docs;
    *tokens = s.n_tokens;
    shard_free(&s);
    return ok;
}

static void test_prepare_split(void) {
    char corpus[256], out[256], out2[256], p[512], q[512];
    size_t total = make_corpus(corpus, sizeof corpus);
    tl_tmp(out, sizeof out, "prep/out");
    tl_tmp(out2, sizeof out2, "prep2");
    const char *inputs[1] = {corpus};
    PrepareOptions o = {.out_dir = out, .inputs = inputs, .n_inputs = 1, .val_frac = 0.05, .seed = 1234};
    PrepareStats st;
    CHECK(prepare_bytes(&o, &st) == 0, "prepare: %s", ml_last_error());
    CHECK(st.n_files == 4, "files: %d (3 texts + 1 empty, hidden skipped)", st.n_files);
    CHECK(st.docs[0] > 0 && st.docs[1] > 0, "both splits non-empty: %lld/%lld", (long long)st.docs[0], (long long)st.docs[1]);
    CHECK(st.bytes[0] + st.bytes[1] == (int64_t)total, "every byte kept");
    CHECK(st.tokens[0] + st.tokens[1] == (int64_t)total + st.docs[0] + st.docs[1], "one end-of-text per document");
    int64_t docs, toks;
    snprintf(p, sizeof p, "%s/train.bin", out);
    CHECK(check_split_shard(p, &docs, &toks) && docs == st.docs[0] && toks == st.tokens[0], "train shard: %s", ml_last_error());
    snprintf(p, sizeof p, "%s/val.bin", out);
    CHECK(check_split_shard(p, &docs, &toks) && docs == st.docs[1] && toks == st.tokens[1], "val shard: %s", ml_last_error());
    DataMeta m;
    CHECK(data_meta_load(&m, out) == 0 && m.vocab_size == 257, "meta: %s", ml_last_error());
    data_meta_free(&m);

    /* Same inputs and seed: byte-identical outputs, in the same folder and in another. */
    char *before[3];
    const char *files[3] = {"train.bin", "val.bin", "meta.json"};
    for (int k = 0; k < 3; k++) {
        snprintf(p, sizeof p, "%s/%s", out, files[k]);
        before[k] = ml_read_file(p, NULL);
    }
    CHECK(prepare_bytes(&o, &st) == 0, "rerun: %s", ml_last_error());
    o.out_dir = out2;
    CHECK(prepare_bytes(&o, &st) == 0, "second folder: %s", ml_last_error());
    for (int k = 0; k < 3; k++) {
        size_t n;
        snprintf(p, sizeof p, "%s/%s", out, files[k]);
        char *after = ml_read_file(p, &n);
        CHECK(before[k] && after && !memcmp(before[k], after, n), "%s unchanged by a rerun", files[k]);
        snprintf(q, sizeof q, "%s/%s", out2, files[k]);
        if (k < 2) CHECK(file_equal(p, q), "%s identical in another folder", files[k]);
        free(after);
        free(before[k]);
    }
    snprintf(p, sizeof p, "%s/train.bin.partial", out);
    CHECK(!ml_file_exists(p), "no staging files left");

    /* Another seed moves documents between the splits. */
    o.seed = 99;
    o.val_frac = 0.3;
    CHECK(prepare_bytes(&o, &st) == 0, "seed 99: %s", ml_last_error());
    snprintf(p, sizeof p, "%s/train.bin", out);
    snprintf(q, sizeof q, "%s/train.bin", out2);
    CHECK(!file_equal(p, q), "a different seed gives a different split");
}

static void test_prepare_failures(void) {
    char corpus[256], out[256], p[512];
    tl_tmp(corpus, sizeof corpus, "corpus"); /* made by test_prepare_split */
    tl_tmp(out, sizeof out, "fail/out");
    const char *inputs[2] = {corpus, "/nonexistent/moelab-input.txt"};
    PrepareOptions o = {.out_dir = out, .inputs = inputs, .n_inputs = 2, .val_frac = 0.05, .seed = 1};
    PrepareStats st;
    CHECK(prepare_bytes(&o, &st) != 0 && err_has("/nonexistent/moelab-input.txt", NULL), "missing input: %s",
          ml_last_error());
    CHECK(!ml_file_exists(out), "no output folder after a failed input");

    snprintf(p, sizeof p, "%s/empty.txt", corpus);
    inputs[0] = p;
    o.n_inputs = 1;
    CHECK(prepare_bytes(&o, &st) != 0 && err_has("no text", NULL), "empty input: %s", ml_last_error());
    CHECK(!ml_file_exists(out), "no output folder after empty input");

    o.val_frac = 1.5;
    inputs[0] = corpus;
    CHECK(prepare_bytes(&o, &st) != 0 && err_has("val_frac", NULL), "bad val_frac: %s", ml_last_error());

    /* One short document: it trains, validation is empty but valid. */
    snprintf(p, sizeof p, "%s/one.txt", tl_tmp_dir);
    write_text(p, "just one line\n");
    inputs[0] = p;
    o.val_frac = 0.5;
    CHECK(prepare_bytes(&o, &st) == 0 && st.docs[0] == 1 && st.docs[1] == 0, "single document: %s", ml_last_error());
}

int main(void) {
    if (tl_mktmp("test_data")) return 1;
    RUN(test_shard_roundtrip);
    RUN(test_shard_write_rejects);
    RUN(test_shard_corrupt);
    RUN(test_loader_determinism);
    RUN(test_loader_shift);
    RUN(test_eval_batches);
    RUN(test_eval_spread);
    RUN(test_meta);
    RUN(test_split_docs);
    RUN(test_prepare_split);
    RUN(test_prepare_failures);
    tl_rm_rf(tl_tmp_dir);
    TEST_MAIN_END();
}
