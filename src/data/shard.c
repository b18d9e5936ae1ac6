/* Token shards: writing, validated loading, domain lookup, training and eval batches,
 * and the data folder's meta.json. The format is documented in shard.h. */
#include "data/shard.h"
#include "core/commit.h"
#include "data/tokenizer.h"
#include <cjson/cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define HEADER_BYTES 40
#define DOC_BYTES 16
#define MAX_DOMAINS (1 << 20) /* far above any real use; stops absurd allocations early */

/* ---------------------------------------------------------------- little-endian codec */

static void put_u32(unsigned char *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static void put_u64(unsigned char *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static uint32_t get_u32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t get_u64(const unsigned char *p) {
    return (uint64_t)get_u32(p) | (uint64_t)get_u32(p + 4) << 32;
}
static int host_is_le(void) {
    const uint32_t one = 1;
    unsigned char b;
    memcpy(&b, &one, 1);
    return b == 1;
}

/* ---------------------------------------------------------------- validation */

/* One checker for both directions, so a shard we write is always one we can load. */
static int check_contents(const char *name, int vocab, int n_domains, int64_t n_tokens, int64_t n_docs,
                          const int64_t *doc_start, const int32_t *doc_domain, const uint32_t *tokens) {
    if (vocab <= 0) return ml_fail("%s: vocab_size must be positive, got %d", name, vocab);
    if (n_domains < 0 || n_domains > MAX_DOMAINS) return ml_fail("%s: bad domain count %d", name, n_domains);
    if (n_tokens < 0 || n_docs < 0) return ml_fail("%s: negative token or document count", name);
    if (n_tokens > 0 && n_docs == 0) return ml_fail("%s: %" PRId64 " tokens but no documents", name, n_tokens);
    if (n_docs > 0 && n_domains == 0) return ml_fail("%s: %" PRId64 " documents but no domains", name, n_docs);
    /* Documents tile the token stream: the first starts at 0, starts strictly increase
     * (every document holds at least its end-of-text token) and stay inside the stream. */
    for (int64_t d = 0; d < n_docs; d++) {
        if (d == 0 && doc_start[0] != 0)
            return ml_fail("%s: document 0 starts at token %" PRId64 ", expected 0", name, doc_start[0]);
        if (d > 0 && doc_start[d] <= doc_start[d - 1])
            return ml_fail("%s: doc table out of order: document %" PRId64 " starts at token %" PRId64
                           ", not after document %" PRId64 " at %" PRId64,
                           name, d, doc_start[d], d - 1, doc_start[d - 1]);
        if (doc_start[d] >= n_tokens)
            return ml_fail("%s: document %" PRId64 " starts at token %" PRId64 " but the shard has only %" PRId64
                           " tokens",
                           name, d, doc_start[d], n_tokens);
        if (doc_domain[d] < 0 || doc_domain[d] >= n_domains)
            return ml_fail("%s: document %" PRId64 " has domain id %" PRId32 " but the shard has %d domains", name, d,
                           doc_domain[d], n_domains);
    }
    for (int64_t i = 0; i < n_tokens; i++)
        if (tokens[i] >= (uint32_t)vocab)
            return ml_fail("%s: token %" PRId64 " has id %" PRIu32 ", not below vocab_size %d", name, i, tokens[i],
                           vocab);
    return 0;
}

/* ---------------------------------------------------------------- writing */

typedef struct {
    const ShardView *v;
} WriteCtx;

static int write_bytes(FILE *f, const void *p, size_t n) {
    if (n && fwrite(p, 1, n, f) != n) return ml_fail("short write: %s", strerror(errno));
    return 0;
}

static int write_shard_fn(FILE *f, void *ctx) {
    const ShardView *v = ((WriteCtx *)ctx)->v;
    unsigned char hdr[HEADER_BYTES] = {0};
    memcpy(hdr, SHARD_MAGIC, 8);
    put_u32(hdr + 8, SHARD_VERSION);
    put_u32(hdr + 12, (uint32_t)v->vocab_size);
    put_u32(hdr + 16, (uint32_t)v->n_domains);
    put_u64(hdr + 24, (uint64_t)v->n_tokens);
    put_u64(hdr + 32, (uint64_t)v->n_docs);
    if (write_bytes(f, hdr, sizeof hdr)) return -1;
    for (int d = 0; d < v->n_domains; d++) {
        char name[SHARD_NAME_LEN] = {0};
        memcpy(name, v->domains[d], strlen(v->domains[d])); /* length checked by shard_write */
        if (write_bytes(f, name, sizeof name)) return -1;
    }
    for (int64_t d = 0; d < v->n_docs; d++) {
        unsigned char rec[DOC_BYTES] = {0};
        put_u64(rec, (uint64_t)v->doc_start[d]);
        put_u32(rec + 8, (uint32_t)v->doc_domain[d]);
        if (write_bytes(f, rec, sizeof rec)) return -1;
    }
    /* Tokens go out in encoded chunks so the file is little-endian on any host. */
    enum { CHUNK = 1 << 14 };
    unsigned char buf[CHUNK * 4];
    for (int64_t i = 0; i < v->n_tokens; i += CHUNK) {
        int64_t n = v->n_tokens - i < CHUNK ? v->n_tokens - i : CHUNK;
        for (int64_t j = 0; j < n; j++) put_u32(buf + 4 * j, v->tokens[i + j]);
        if (write_bytes(f, buf, (size_t)n * 4)) return -1;
    }
    return 0;
}

int shard_write(const char *path, const ShardView *v) {
    if (v->n_domains < 0 || v->n_domains > MAX_DOMAINS) return ml_fail("%s: bad domain count %d", path, v->n_domains);
    for (int d = 0; d < v->n_domains; d++) {
        if (!v->domains[d] || !v->domains[d][0]) return ml_fail("%s: domain %d has an empty name", path, d);
        if (strlen(v->domains[d]) >= SHARD_NAME_LEN)
            return ml_fail("%s: domain name '%s' is longer than %d bytes", path, v->domains[d], SHARD_NAME_LEN - 1);
    }
    if (check_contents(path, v->vocab_size, v->n_domains, v->n_tokens, v->n_docs, v->doc_start, v->doc_domain,
                       v->tokens))
        return -1;
    WriteCtx ctx = {v};
    return ml_write_atomic_with(path, write_shard_fn, &ctx);
}

/* ---------------------------------------------------------------- loading */

static int read_exact(FILE *f, void *p, size_t n, const char *path, const char *what) {
    if (n && fread(p, 1, n, f) != n)
        return ml_fail("%s: cannot read %s: %s", path, what, ferror(f) ? strerror(errno) : "unexpected end of file");
    return 0;
}

typedef struct {
    uint32_t vocab, n_domains;
    uint64_t n_tokens, n_docs;
} Header;

/* Checks the header against the real file length before anything is allocated,
 * so a corrupt count can never trigger a huge allocation or a short read. */
static int read_header(FILE *f, const char *path, uint64_t file_len, Header *h) {
    unsigned char hdr[HEADER_BYTES];
    size_t got = fread(hdr, 1, sizeof hdr, f);
    if (got < 8) return ml_fail("%s: truncated: file is %zu bytes, too short for a shard header", path, got);
    if (memcmp(hdr, SHARD_MAGIC, 8) != 0) return ml_fail("%s: bad magic: not a moelab shard (expected \"%s\")", path, SHARD_MAGIC);
    if (got < sizeof hdr)
        return ml_fail("%s: truncated: file is %zu bytes, shorter than the %d-byte header", path, got, HEADER_BYTES);
    uint32_t version = get_u32(hdr + 8);
    if (version != SHARD_VERSION)
        return ml_fail("%s: unsupported shard version %" PRIu32 " (this build reads version %d)", path, version, SHARD_VERSION);
    h->vocab = get_u32(hdr + 12);
    h->n_domains = get_u32(hdr + 16);
    h->n_tokens = get_u64(hdr + 24);
    h->n_docs = get_u64(hdr + 32);
    if (h->vocab == 0 || h->vocab > INT32_MAX) return ml_fail("%s: bad vocab_size %" PRIu32, path, h->vocab);
    if (h->n_domains > MAX_DOMAINS) return ml_fail("%s: bad domain count %" PRIu32, path, h->n_domains);

    uint64_t avail = file_len - HEADER_BYTES, names = (uint64_t)h->n_domains * SHARD_NAME_LEN;
    if (avail < names)
        return ml_fail("%s: truncated: header says %" PRIu32 " domains but file holds %" PRIu64, path, h->n_domains,
                       avail / SHARD_NAME_LEN);
    avail -= names;
    if (h->n_docs > avail / DOC_BYTES)
        return ml_fail("%s: truncated: header says %" PRIu64 " documents but file holds %" PRIu64, path, h->n_docs,
                       avail / DOC_BYTES);
    avail -= h->n_docs * DOC_BYTES;
    if (h->n_tokens > avail / 4)
        return ml_fail("%s: truncated: header says %" PRIu64 " tokens but file holds %" PRIu64, path, h->n_tokens,
                       avail / 4);
    if (avail != h->n_tokens * 4)
        return ml_fail("%s: %" PRIu64 " unexpected trailing bytes after the %" PRIu64 " tokens the header declares", path,
                       avail - h->n_tokens * 4, h->n_tokens);
    return 0;
}

static int read_tables(FILE *f, const char *path, Shard *s) {
    for (int d = 0; d < s->n_domains; d++) {
        if (read_exact(f, s->domains[d], SHARD_NAME_LEN, path, "domain names")) return -1;
        if (!memchr(s->domains[d], 0, SHARD_NAME_LEN) || !s->domains[d][0])
            return ml_fail("%s: domain %d has an empty or unterminated name", path, d);
    }
    unsigned char rec[DOC_BYTES];
    for (int64_t d = 0; d < s->n_docs; d++) {
        if (read_exact(f, rec, sizeof rec, path, "document table")) return -1;
        uint64_t start = get_u64(rec);
        uint32_t dom = get_u32(rec + 8);
        /* Out-of-range values are clamped into ones the checker rejects with a clear message. */
        s->doc_start[d] = start > INT64_MAX ? INT64_MAX : (int64_t)start;
        s->doc_domain[d] = dom > INT32_MAX ? INT32_MAX : (int32_t)dom;
    }
    if (read_exact(f, s->tokens, (size_t)s->n_tokens * 4, path, "tokens")) return -1;
    if (!host_is_le())
        for (int64_t i = 0; i < s->n_tokens; i++) s->tokens[i] = get_u32((const unsigned char *)&s->tokens[i]);
    return 0;
}

int shard_load(Shard *s, const char *path) {
    memset(s, 0, sizeof *s);
    uint64_t size;
    char staged[4096];
    FILE *f = ml_fopen_regular(commit_resolve(path, staged, sizeof staged), &size);
    if (!f) return -1;
    Header h = {0};
    int rc = read_header(f, path, size, &h);
    if (rc == 0) {
        s->vocab_size = (int)h.vocab;
        s->n_domains = (int)h.n_domains;
        s->n_tokens = (int64_t)h.n_tokens;
        s->n_docs = (int64_t)h.n_docs;
        s->domains = ml_calloc(s->n_domains ? (size_t)s->n_domains : 1, SHARD_NAME_LEN);
        s->doc_start = ml_malloc((size_t)s->n_docs * sizeof *s->doc_start);
        s->doc_domain = ml_malloc((size_t)s->n_docs * sizeof *s->doc_domain);
        s->tokens = ml_malloc((size_t)s->n_tokens * sizeof *s->tokens);
        rc = read_tables(f, path, s);
    }
    fclose(f);
    if (rc == 0)
        rc = check_contents(path, s->vocab_size, s->n_domains, s->n_tokens, s->n_docs, s->doc_start, s->doc_domain,
                            s->tokens);
    if (rc != 0) shard_free(s);
    return rc;
}

void shard_free(Shard *s) {
    free(s->domains);
    free(s->doc_start);
    free(s->doc_domain);
    free(s->tokens);
    memset(s, 0, sizeof *s);
}

/* Index of the last document starting at or before token i (documents tile the stream). */
static int64_t doc_index_at(const Shard *s, int64_t i) {
    int64_t lo = 0, hi = s->n_docs - 1;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo + 1) / 2;
        if (s->doc_start[mid] <= i) lo = mid;
        else hi = mid - 1;
    }
    return lo;
}

int shard_domain_at(const Shard *s, int64_t i) {
    if (s->n_docs == 0 || i < 0 || i >= s->n_tokens) return -1;
    return s->doc_domain[doc_index_at(s, i)];
}

/* ---------------------------------------------------------------- training batches */

int loader_init(Loader *l, const Shard *s, int B, int T, uint64_t seed) {
    memset(l, 0, sizeof *l);
    if (B <= 0 || T <= 0) return ml_fail("loader: batch %d and sequence length %d must be positive", B, T);
    if (s->n_tokens < (int64_t)T + 1)
        return ml_fail("loader: the shard holds %" PRId64 " tokens, fewer than one window of %d", s->n_tokens, T + 1);
    l->shard = s;
    l->B = B;
    l->T = T;
    rng_seed(&l->rng, seed);
    return 0;
}

void loader_next(Loader *l, int32_t *inputs, int32_t *targets) {
    const Shard *s = l->shard;
    const int T = l->T;
    /* n_tokens - T possible starts: 0 .. n_tokens-T-1, each window needs T+1 tokens. */
    uint64_t n_starts = (uint64_t)(s->n_tokens - T);
    for (int b = 0; b < l->B; b++) {
        const uint32_t *w = s->tokens + rng_below(&l->rng, n_starts);
        for (int t = 0; t < T; t++) {
            inputs[(size_t)b * T + t] = (int32_t)w[t];
            targets[(size_t)b * T + t] = (int32_t)w[t + 1];
        }
    }
}

/* ---------------------------------------------------------------- eval batches */

/* Windows start every T tokens and predict tokens 1..n_tokens-1, so every token
 * except the first is a target exactly once; the last window may be short. */
static int64_t eval_windows(const Shard *s, int T) {
    if (T <= 0 || s->n_tokens < 2) return 0;
    return (s->n_tokens - 1 + T - 1) / T;
}

int64_t loader_eval_batches(const Shard *s, int B, int T) {
    if (B <= 0) return 0;
    return (eval_windows(s, T) + B - 1) / B;
}

static void fill_row(const Shard *s, int64_t start, int T, int32_t *in, int32_t *tg, int32_t *dom) {
    int64_t d = s->n_docs ? doc_index_at(s, start + 1 < s->n_tokens ? start + 1 : 0) : 0;
    for (int t = 0; t < T; t++) {
        int64_t p = start + t; /* input position; its target is p+1 */
        in[t] = p < s->n_tokens ? (int32_t)s->tokens[p] : 0;
        if (p + 1 < s->n_tokens) {
            tg[t] = (int32_t)s->tokens[p + 1];
            while (d + 1 < s->n_docs && s->doc_start[d + 1] <= p + 1) d++;
            if (dom) dom[t] = s->doc_domain[d];
        } else {
            tg[t] = -1;
            if (dom) dom[t] = -1;
        }
    }
}

/* Batch `batch` of n_sel windows chosen evenly among the shard's n_win (all of them, in
 * order, when n_sel == n_win); rows past n_sel are padding (target -1). */
static int fill_eval_batch(const Shard *s, int B, int T, int64_t batch, int64_t n_sel, int32_t *inputs,
                           int32_t *targets, int32_t *domains) {
    int64_t n_win = eval_windows(s, T);
    int filled = 0;
    for (int r = 0; r < B; r++) {
        size_t off = (size_t)r * T;
        int64_t j = batch * B + r;
        if (batch >= 0 && j < n_sel) {
            int64_t w = n_sel == n_win ? j : (int64_t)((double)j * (double)n_win / (double)n_sel);
            if (w >= n_win) w = n_win - 1;
            fill_row(s, w * T, T, inputs + off, targets + off, domains ? domains + off : NULL);
            filled++;
            continue;
        }
        for (int t = 0; t < T; t++) {
            inputs[off + t] = 0;
            targets[off + t] = -1;
            if (domains) domains[off + t] = -1;
        }
    }
    return filled;
}

int loader_eval_batch(const Shard *s, int B, int T, int64_t batch, int32_t *inputs, int32_t *targets, int32_t *domains) {
    return fill_eval_batch(s, B, T, batch, eval_windows(s, T), inputs, targets, domains);
}

int loader_eval_batch_spread(const Shard *s, int B, int T, int64_t batch, int64_t n_batches, int32_t *inputs,
                             int32_t *targets, int32_t *domains) {
    int64_t n_win = eval_windows(s, T), n_sel = n_batches * B;
    return fill_eval_batch(s, B, T, batch, n_sel < n_win ? n_sel : n_win, inputs, targets, domains);
}

/* ---------------------------------------------------------------- meta.json */

static int meta_fail(DataMeta *m, cJSON *root, int rc) {
    cJSON_Delete(root);
    if (rc != 0) data_meta_free(m);
    return rc;
}

/* A BPE data folder names its tokenizer file; bits per byte need each token's byte length. */
static int meta_bpe_token_bytes(DataMeta *m, const cJSON *root, const char *dir, const char *meta_path) {
    const cJSON *tf = cJSON_GetObjectItemCaseSensitive(root, "tokenizer_file");
    const char *name = cJSON_IsString(tf) ? tf->valuestring : "tokenizer.json";
    if (!name[0] || strchr(name, '/')) return ml_fail("%s: \"tokenizer_file\" must be a file name in the data folder", meta_path);
    char path[4096];
    if (snprintf(path, sizeof path, "%s/%s", dir, name) >= (int)sizeof path) return ml_fail("path too long: %s", dir);
    Tokenizer *t;
    char staged[4096]; /* a data folder being committed: the new file (core/commit.h) */
    if (tok_load(&t, commit_resolve(path, staged, sizeof staged))) return -1;
    int rc = 0;
    if (tok_vocab_size(t) != m->vocab_size)
        rc = ml_fail("%s has %d tokens but %s says vocab_size %d", path, tok_vocab_size(t), meta_path, m->vocab_size);
    for (int v = 0; rc == 0 && v < m->vocab_size; v++) m->token_bytes[v] = tok_token_bytes(t, v);
    tok_free(t);
    return rc;
}

int data_meta_load(DataMeta *m, const char *dir) {
    memset(m, 0, sizeof *m);
    char path[4096];
    if (snprintf(path, sizeof path, "%s/meta.json", dir) >= (int)sizeof path) return ml_fail("path too long: %s", dir);
    char staged[4096];
    char *text = ml_read_file_max(commit_resolve(path, staged, sizeof staged), NULL, ML_READ_MAX_TEXT);
    if (!text) return -1;
    cJSON *root = cJSON_Parse(text);
    free(text);
    if (!root || !cJSON_IsObject(root)) return meta_fail(m, root, ml_fail("%s: not a valid JSON object", path));
    const cJSON *tok = cJSON_GetObjectItemCaseSensitive(root, "tokenizer");
    const cJSON *vs = cJSON_GetObjectItemCaseSensitive(root, "vocab_size");
    if (!cJSON_IsString(tok) || !tok->valuestring[0] || strlen(tok->valuestring) >= sizeof m->tokenizer)
        return meta_fail(m, root, ml_fail("%s: missing or bad \"tokenizer\"", path));
    if (!cJSON_IsNumber(vs) || vs->valuedouble < 1 || vs->valuedouble > (1 << 24) || vs->valuedouble != (int)vs->valuedouble)
        return meta_fail(m, root, ml_fail("%s: missing or bad \"vocab_size\"", path));
    strcpy(m->tokenizer, tok->valuestring);
    m->vocab_size = (int)vs->valuedouble;
    m->token_bytes = ml_calloc((size_t)m->vocab_size, sizeof *m->token_bytes);

    /* An explicit table wins (future tokenizers); the byte tokenizer's is implied. */
    const cJSON *tb = cJSON_GetObjectItemCaseSensitive(root, "token_bytes");
    if (tb) {
        if (!cJSON_IsArray(tb) || cJSON_GetArraySize(tb) != m->vocab_size)
            return meta_fail(m, root, ml_fail("%s: \"token_bytes\" must be an array of vocab_size numbers", path));
        int v = 0;
        const cJSON *e;
        cJSON_ArrayForEach(e, tb) {
            if (!cJSON_IsNumber(e) || e->valuedouble < 0 || e->valuedouble > 1024)
                return meta_fail(m, root, ml_fail("%s: bad token_bytes entry %d", path, v));
            m->token_bytes[v++] = (int)e->valuedouble;
        }
    } else if (strcmp(m->tokenizer, "bytes") == 0) {
        if (m->vocab_size != 257)
            return meta_fail(m, root, ml_fail("%s: tokenizer \"bytes\" needs vocab_size 257, got %d", path, m->vocab_size));
        for (int v = 0; v < 256; v++) m->token_bytes[v] = 1;
        m->token_bytes[256] = 0; /* end-of-text */
    } else if (strcmp(m->tokenizer, "bpe") == 0) {
        if (meta_bpe_token_bytes(m, root, dir, path)) return meta_fail(m, root, -1);
    } else {
        return meta_fail(m, root, ml_fail("%s: unknown tokenizer \"%s\" and no token_bytes table", path, m->tokenizer));
    }
    return meta_fail(m, root, 0);
}

void data_meta_free(DataMeta *m) {
    free(m->token_bytes);
    memset(m, 0, sizeof *m);
}
