/* Data preparation (see prepare.h): read every domain's files, cut them into documents,
 * drop duplicates, cap, split and order by seeded hashes of the text, tokenise, and
 * write two shards, meta.json and tokenizer.json. */
#include "data/prepare.h"
#include "core/commit.h"
#include "core/util.h"
#include "data/shard.h"
#include "data/tokenizer.h"
#include <cjson/cJSON.h>
#include <errno.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { TRAIN = 0, VAL = 1 };
static const char *const SPLIT_NAMES[2] = {"train", "val"};

/* ---------------------------------------------------------------- hashing */

static uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* FNV-1a over the text, finished with a mixer: the document's identity. */
static uint64_t text_hash(const char *p, size_t n) {
    uint64_t h = 0xCBF29CE484222325ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)p[i]) * 0x100000001B3ull;
    return mix64(h ^ n);
}

static double to01(uint64_t h) { return (double)(h >> 11) * (1.0 / 9007199254740992.0); }

/* Separate salts keep the split, the cap choice and the order independent of each other. */
static double split_score(uint64_t text_h, uint64_t seed) { return to01(mix64(text_h ^ mix64(seed ^ 0x5117))); }
static uint64_t order_key(uint64_t text_h, uint64_t seed) { return mix64(text_h ^ mix64(seed ^ 0x0DE7)); }

int prepare_is_val(const char *text, size_t len, uint64_t seed, double val_frac) {
    return split_score(text_hash(text, len), seed) < val_frac;
}

int64_t prepare_split_docs(const char *buf, size_t len, size_t min_bytes, size_t **ends) {
    size_t *starts;
    int64_t n = corpus_cut_docs(buf, len, DOC_PARAGRAPHS, min_bytes, &starts, ends);
    free(starts);
    if (n > 0) (*ends)[n - 1] = len; /* trailing whitespace belongs to the last document */
    return n;
}

/* ---------------------------------------------------------------- documents */

typedef struct {
    const char *text;
    size_t len;
    uint64_t hash, key;
    int dom, split; /* split: TRAIN, VAL, or -1 when dropped */
    int64_t index;  /* position in reading order, the final tie-break */
} Doc;

typedef struct {
    Doc *docs;
    int64_t n, cap;
    char **bufs; /* file contents the documents point into */
    int n_bufs;
    StrList *files; /* per domain, for meta.json */
    PackageInfo **pkgs;
    int *n_pkgs;
} Corpus;

static void corpus_free(Corpus *c, int n_domains) {
    for (int i = 0; i < c->n_bufs; i++) free(c->bufs[i]);
    free(c->bufs);
    free(c->docs);
    for (int d = 0; c->files && d < n_domains; d++) {
        DomainFiles f = {c->files[d], c->pkgs[d], c->n_pkgs[d]};
        domain_files_free(&f);
    }
    free(c->files);
    free(c->pkgs);
    free(c->n_pkgs);
    memset(c, 0, sizeof *c);
}

static void add_doc(Corpus *c, const char *text, size_t len, int dom) {
    if (c->n == c->cap) {
        c->cap = c->cap ? 2 * c->cap : 1024;
        c->docs = ml_realloc(c->docs, (size_t)c->cap * sizeof *c->docs);
    }
    Doc *d = &c->docs[c->n];
    d->text = text;
    d->len = len;
    d->hash = text_hash(text, len);
    d->dom = dom;
    d->split = TRAIN;
    d->index = c->n++;
}

/* A NUL byte means a binary file slipped through the globs (fortune .dat indexes, say). */
static int check_text(const char *path, const char *buf, size_t len) {
    const char *z = memchr(buf, 0, len);
    if (z) return ml_fail("'%s' holds a NUL byte at offset %zu: not text (exclude it in the manifest)", path, (size_t)(z - buf));
    return 0;
}

static int read_domain(Corpus *c, const Manifest *m, int d, const PrepareOptions *o, PrepareDomainStats *ds) {
    const ManifestDomain *md = &m->domains[d];
    DomainFiles f;
    if (manifest_domain_files(m, d, o->out_dir, &f)) return -1;
    c->files[d] = f.paths;
    c->pkgs[d] = f.pkgs;
    c->n_pkgs[d] = f.n_pkgs;
    ds->files = f.paths.n;
    for (int i = 0; i < f.paths.n; i++) {
        size_t len, *starts, *ends;
        char *buf = corpus_read_file(f.paths.items[i], &len);
        if (!buf) return -1;
        c->bufs = ml_realloc(c->bufs, (size_t)(c->n_bufs + 1) * sizeof *c->bufs);
        c->bufs[c->n_bufs++] = buf;
        if (o->manifest && check_text(f.paths.items[i], buf, len)) return -1;
        int64_t nd = corpus_cut_docs(buf, len, md->split, (size_t)md->min_doc_bytes, &starts, &ends);
        if (md->split == DOC_PARAGRAPHS && nd > 0) ends[nd - 1] = len;
        for (int64_t k = 0; k < nd; k++) {
            add_doc(c, buf + starts[k], ends[k] - starts[k], d);
            ds->found_docs++;
            ds->found_bytes += (int64_t)(ends[k] - starts[k]);
        }
        free(starts);
        free(ends);
    }
    if (ds->found_docs == 0) {
        if (!o->manifest)
            return ml_fail("no text found in the inputs (%d file%s, all empty or whitespace)", f.paths.n, f.paths.n == 1 ? "" : "s");
        return ml_fail("domain '%s' has no text (%d file%s, all empty or whitespace)", md->name, f.paths.n, f.paths.n == 1 ? "" : "s");
    }
    return 0;
}

static int cmp_hash(const void *a, const void *b) {
    const Doc *x = *(Doc *const *)a, *y = *(Doc *const *)b;
    if (x->hash != y->hash) return x->hash < y->hash ? -1 : 1;
    return x->index < y->index ? -1 : x->index > y->index;
}

static int cmp_key(const void *a, const void *b) {
    const Doc *x = *(Doc *const *)a, *y = *(Doc *const *)b;
    if (x->key != y->key) return x->key < y->key ? -1 : 1;
    return x->index < y->index ? -1 : x->index > y->index;
}

static Doc **doc_ptrs(Corpus *c) {
    Doc **p = ml_malloc((size_t)(c->n ? c->n : 1) * sizeof *p);
    for (int64_t i = 0; i < c->n; i++) p[i] = &c->docs[i];
    return p;
}

/* Exact copies (same text) keep their first occurrence only. */
static void drop_duplicates(Corpus *c, PrepareStats *st) {
    Doc **p = doc_ptrs(c);
    qsort(p, (size_t)c->n, sizeof *p, cmp_hash);
    for (int64_t i = 1; i < c->n; i++) {
        Doc *b = p[i];
        for (int64_t j = i - 1; j >= 0 && p[j]->hash == b->hash; j--)
            if (p[j]->split >= 0 && p[j]->len == b->len && memcmp(p[j]->text, b->text, b->len) == 0) {
                b->split = -1;
                st->dom[b->dom].duplicates++;
                break;
            }
    }
    free(p);
}

/* A domain over its cap keeps documents in order of their seeded key until the next one
 * would pass the cap (at least one document stays). */
static void apply_caps(Corpus *c, const Manifest *m, const PrepareOptions *o, PrepareStats *st) {
    Doc **p = doc_ptrs(c);
    for (int64_t i = 0; i < c->n; i++) c->docs[i].key = order_key(c->docs[i].hash, o->seed);
    qsort(p, (size_t)c->n, sizeof *p, cmp_key);
    int64_t used[MANIFEST_MAX_DOMAINS] = {0};
    int full[MANIFEST_MAX_DOMAINS] = {0};
    for (int d = 0; d < m->n_domains; d++) st->dom[d].cap_bytes = o->cap_set ? o->cap_bytes : manifest_cap(m, d);
    for (int64_t i = 0; i < c->n; i++) {
        Doc *x = p[i];
        if (x->split < 0) continue;
        int64_t cap = st->dom[x->dom].cap_bytes;
        if (cap > 0 && (full[x->dom] || (used[x->dom] > 0 && used[x->dom] + (int64_t)x->len > cap))) {
            full[x->dom] = 1;
            x->split = -1;
            continue;
        }
        used[x->dom] += (int64_t)x->len;
    }
    free(p);
}

static void assign_splits(Corpus *c, const PrepareOptions *o) {
    int64_t count[2] = {0, 0};
    Doc *best[2] = {NULL, NULL}; /* the train doc most nearly val, the val doc most nearly train */
    for (int64_t i = 0; i < c->n; i++) {
        Doc *x = &c->docs[i];
        if (x->split < 0) continue;
        double s = split_score(x->hash, o->seed);
        x->split = s < o->val_frac ? VAL : TRAIN;
        count[x->split]++;
        Doc **b = &best[x->split];
        if (!*b || (x->split == TRAIN ? s < split_score((*b)->hash, o->seed) : s > split_score((*b)->hash, o->seed))) *b = x;
    }
    /* Training needs a document, and with two or more neither split may be empty:
     * move the one nearest the threshold over. */
    if (count[TRAIN] == 0 && count[VAL] > 0) best[VAL]->split = TRAIN;
    if (count[VAL] == 0 && count[TRAIN] >= 2) best[TRAIN]->split = VAL;
}

/* ---------------------------------------------------------------- tokenising */

typedef struct {
    Tokenizer *tok; /* NULL: bytes */
    int vocab, eot;
    char kind[16];
} Tok;

static int setup_tokenizer(Tok *t, const PrepareOptions *o, Doc **order[2], const int64_t n[2]) {
    memset(t, 0, sizeof *t);
    if (o->tokenizer) {
        if (tok_load(&t->tok, o->tokenizer)) return -1;
    } else if (o->vocab > 0) {
        if (o->vocab < TOK_MIN_VOCAB) return ml_fail("--vocab %d is too small: at least %d (256 bytes, end-of-text, one merge)", o->vocab, TOK_MIN_VOCAB);
        TokTrainer *tr = tok_trainer_new();
        for (int64_t i = 0; i < n[TRAIN]; i++) tok_trainer_add(tr, order[TRAIN][i]->text, order[TRAIN][i]->len);
        int rc = tok_trainer_finish(tr, o->vocab, o->verbose, &t->tok);
        tok_trainer_free(tr);
        if (rc) return -1;
    } else {
        strcpy(t->kind, "bytes");
        t->vocab = PREPARE_VOCAB;
        t->eot = PREPARE_EOT;
        return 0;
    }
    strcpy(t->kind, "bpe");
    t->vocab = tok_vocab_size(t->tok);
    t->eot = tok_eot_id(t->tok);
    if (t->eot < 0 || t->eot >= t->vocab) return ml_fail("the tokenizer has no end-of-text token \"%s\"", TOK_EOT_TEXT);
    return 0;
}

typedef struct {
    uint32_t *tok;
    int64_t n_tok;
    int64_t *start;
    int32_t *dom;
    int64_t n_docs, bytes;
} SplitBuf;

static void split_free(SplitBuf *b) {
    free(b->tok);
    free(b->start);
    free(b->dom);
    memset(b, 0, sizeof *b);
}

/* Encodes one split, documents in parallel (a tokenizer copy per thread: its encode
 * cache is not shared), then lays the ids out in order with end-of-text after each. */
static int encode_split(const Tok *t, Doc **docs, int64_t n, SplitBuf *b) {
    TokIds *ids = ml_calloc((size_t)(n ? n : 1), sizeof *ids);
    char *json = t->tok ? tok_to_json(t->tok) : NULL;
    int rc = 0;
#pragma omp parallel reduction(| : rc)
    {
        Tokenizer *mine = NULL;
        if (json && tok_load_json(&mine, json, strlen(json), "tokenizer copy")) rc = -1;
#pragma omp for schedule(dynamic, 16)
        for (int64_t i = 0; i < n; i++) {
            if (!mine) continue;
            tok_encode(mine, docs[i]->text, docs[i]->len, &ids[i]);
        }
        if (mine) tok_free(mine);
    }
    free(json);
    int64_t total = 0;
    for (int64_t i = 0; i < n; i++) total += (t->tok ? (int64_t)ids[i].n : (int64_t)docs[i]->len) + 1;
    b->tok = ml_malloc((size_t)(total ? total : 1) * sizeof *b->tok);
    b->start = ml_malloc((size_t)(n ? n : 1) * sizeof *b->start);
    b->dom = ml_malloc((size_t)(n ? n : 1) * sizeof *b->dom);
    for (int64_t i = 0; i < n; i++) {
        b->start[i] = b->n_tok;
        b->dom[i] = docs[i]->dom;
        if (t->tok) {
            memcpy(b->tok + b->n_tok, ids[i].ids, ids[i].n * sizeof *b->tok);
            b->n_tok += (int64_t)ids[i].n;
        } else {
            for (size_t k = 0; k < docs[i]->len; k++) b->tok[b->n_tok++] = (unsigned char)docs[i]->text[k];
        }
        b->tok[b->n_tok++] = (uint32_t)t->eot;
        b->bytes += (int64_t)docs[i]->len;
        free(ids[i].ids);
    }
    b->n_docs = n;
    free(ids);
    if (rc) split_free(b);
    return rc;
}

/* ---------------------------------------------------------------- meta.json */

static cJSON *split_stats_json(const PrepareStats *st, int k) {
    cJSON *s = cJSON_CreateObject();
    char file[16];
    snprintf(file, sizeof file, "%s.bin", SPLIT_NAMES[k]);
    cJSON_AddStringToObject(s, "file", file);
    cJSON_AddNumberToObject(s, "documents", (double)st->docs[k]);
    cJSON_AddNumberToObject(s, "tokens", (double)st->tokens[k]);
    cJSON_AddNumberToObject(s, "bytes", (double)st->bytes[k]);
    cJSON *doms = cJSON_AddObjectToObject(s, "domains");
    for (int d = 0; d < st->n_domains; d++) {
        cJSON *x = cJSON_AddObjectToObject(doms, st->dom[d].name);
        cJSON_AddNumberToObject(x, "documents", (double)st->dom[d].docs[k]);
        cJSON_AddNumberToObject(x, "tokens", (double)st->dom[d].tokens[k]);
        cJSON_AddNumberToObject(x, "bytes", (double)st->dom[d].bytes[k]);
    }
    return s;
}

static cJSON *corpus_json(const Manifest *m, const Corpus *c, const PrepareStats *st) {
    cJSON *corpus = cJSON_CreateObject();
    cJSON_AddStringToObject(corpus, "name", m->name);
    if (m->path[0]) cJSON_AddStringToObject(corpus, "manifest", m->path);
    cJSON *arr = cJSON_AddArrayToObject(corpus, "domains");
    for (int d = 0; d < m->n_domains; d++) {
        const PrepareDomainStats *ds = &st->dom[d];
        cJSON *x = cJSON_CreateObject();
        cJSON_AddItemToArray(arr, x);
        cJSON_AddStringToObject(x, "name", ds->name);
        cJSON_AddStringToObject(x, "split", doc_split_name(m->domains[d].split));
        if (m->domains[d].split == DOC_ENTRIES || m->domains[d].split == DOC_PARAGRAPHS)
            cJSON_AddNumberToObject(x, "min_doc_bytes", (double)m->domains[d].min_doc_bytes);
        cJSON_AddNumberToObject(x, "cap_bytes", (double)ds->cap_bytes);
        cJSON_AddNumberToObject(x, "found_documents", (double)ds->found_docs);
        cJSON_AddNumberToObject(x, "found_bytes", (double)ds->found_bytes);
        cJSON_AddNumberToObject(x, "duplicates", (double)ds->duplicates);
        cJSON *pk = cJSON_AddObjectToObject(x, "packages");
        for (int i = 0; i < c->n_pkgs[d]; i++) cJSON_AddStringToObject(pk, c->pkgs[d][i].name, c->pkgs[d][i].version);
        cJSON *files = cJSON_AddArrayToObject(x, "files");
        for (int i = 0; i < c->files[d].n; i++) cJSON_AddItemToArray(files, cJSON_CreateString(c->files[d].items[i]));
    }
    return corpus;
}

static char *meta_json(const PrepareOptions *o, const Manifest *m, const Corpus *c, const PrepareStats *st, const Tok *t) {
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "format", "moelab-data");
    cJSON_AddNumberToObject(root, "version", 1);
    cJSON_AddStringToObject(root, "tokenizer", t->kind);
    if (t->tok) cJSON_AddStringToObject(root, "tokenizer_file", "tokenizer.json");
    cJSON_AddNumberToObject(root, "vocab_size", t->vocab);
    cJSON_AddNumberToObject(root, "eot_token", t->eot);
    cJSON *doms = cJSON_AddArrayToObject(root, "domains");
    for (int d = 0; d < st->n_domains; d++) cJSON_AddItemToArray(doms, cJSON_CreateString(st->dom[d].name));
    cJSON *split = cJSON_AddObjectToObject(root, "split");
    cJSON_AddNumberToObject(split, "val_frac", o->val_frac);
    if (o->seed <= (1ull << 53)) {
        cJSON_AddNumberToObject(split, "seed", (double)o->seed);
    } else { /* a JSON number would lose bits */
        char s[32];
        snprintf(s, sizeof s, "%llu", (unsigned long long)o->seed);
        cJSON_AddStringToObject(split, "seed", s);
    }
    cJSON_AddStringToObject(split, "rule", "document text hash; exact duplicates dropped; seeded cap per domain");
    cJSON *splits = cJSON_AddObjectToObject(root, "splits");
    for (int k = 0; k < 2; k++) cJSON_AddItemToObject(splits, SPLIT_NAMES[k], split_stats_json(st, k));
    cJSON_AddItemToObject(root, "corpus", corpus_json(m, c, st));
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

/* ---------------------------------------------------------------- outputs */

enum { OUT_TRAIN, OUT_VAL, OUT_TOK, OUT_META, N_OUT };
static const char *const OUT_NAMES[N_OUT] = {"train.bin", "val.bin", "tokenizer.json", "meta.json"};

static int write_one(int k, const char *path, const SplitBuf sp[2], const Tok *t, const PrepareStats *st,
                     const char *meta, const PrepareOptions *o) {
    if (k == OUT_META) return ml_write_file_atomic(path, meta, strlen(meta));
    if (k == OUT_TOK) {
        if (!o->tokenizer) return tok_save(t->tok, path);
        size_t n; /* a given tokenizer is copied byte for byte */
        char *text = ml_read_file_max(o->tokenizer, &n, ML_READ_MAX_TEXT);
        if (!text) return -1;
        int rc = ml_write_file_atomic(path, text, n);
        free(text);
        return rc;
    }
    const char *names[MANIFEST_MAX_DOMAINS];
    for (int d = 0; d < st->n_domains; d++) names[d] = st->dom[d].name;
    const SplitBuf *b = &sp[k];
    ShardView v = {t->vocab, st->n_domains, names, b->n_tok, b->n_docs, b->start, b->dom, b->tok};
    return shard_write(path, &v);
}

/* Each file is first written (atomically) under its staged name; only when all are
 * complete are they committed together (io/commit.h), so a failed or killed run adds
 * nothing and a reader never sees files of two runs. A byte-level run deletes a
 * tokenizer.json left by an earlier run in the same commit, so the folder says one thing. */
static int write_outputs(const PrepareOptions *o, const SplitBuf sp[2], const Tok *t, const PrepareStats *st,
                         const char *meta) {
    if (commit_recover(o->out_dir, OUT_NAMES, N_OUT)) return -1;
    char staged[4096];
    CommitEntry set[N_OUT];
    int rc = 0;
    for (int k = 0; rc == 0 && k < N_OUT; k++) {
        set[k] = (CommitEntry){OUT_NAMES[k], k != OUT_TOK || t->tok};
        if (!set[k].install) continue;
        rc = commit_staged_path(staged, sizeof staged, o->out_dir, OUT_NAMES[k]);
        if (rc == 0) rc = write_one(k, staged, sp, t, st, meta, o);
        if (rc == 0) commit_fault_point();
    }
    if (rc == 0) rc = commit_publish(o->out_dir, set, N_OUT);
    if (rc != 0) commit_recover(o->out_dir, OUT_NAMES, N_OUT);
    return rc;
}

/* ---------------------------------------------------------------- driver */

static int check_options(const PrepareOptions *o) {
    if (!o->out_dir || !o->out_dir[0]) return ml_fail("no output folder given");
    if (!o->manifest && o->n_inputs <= 0) return ml_fail("no input files or folders given");
    if (o->manifest && o->n_inputs > 0) return ml_fail("give either a manifest or input files, not both");
    if (!(o->val_frac > 0 && o->val_frac < 1)) return ml_fail("val_frac must be in (0, 1), got %g", o->val_frac);
    if (o->tokenizer && o->vocab > 0) return ml_fail("give either a tokenizer file or a vocab size to train, not both");
    if (o->vocab != 0 && o->vocab < TOK_MIN_VOCAB)
        return ml_fail("vocab size %d is too small: at least %d (256 bytes, end-of-text, one merge)", o->vocab, TOK_MIN_VOCAB);
    if (o->cap_set && o->cap_bytes < 0) return ml_fail("the cap per domain must be >= 0, got %lld", (long long)o->cap_bytes);
    return 0;
}

static void stats_add(PrepareStats *st, const SplitBuf *b, int k) {
    st->docs[k] = b->n_docs;
    st->tokens[k] = b->n_tok;
    st->bytes[k] = b->bytes;
    for (int64_t i = 0; i < b->n_docs; i++) {
        int64_t e = i + 1 < b->n_docs ? b->start[i + 1] : b->n_tok;
        PrepareDomainStats *ds = &st->dom[b->dom[i]];
        ds->docs[k]++;
        ds->tokens[k] += e - b->start[i];
    }
}

/* Lays out split k: each domain's documents in key order, the domains merged so that every
 * prefix holds each domain in proportion to its bytes (the next document comes from the
 * domain furthest behind its share). The trainer's periodic evaluation reads a prefix of
 * the validation shard, so it sees every domain, long source files included. */
static void interleave(Doc **by_key, int64_t n_all, int k, int n_domains, const PrepareStats *st, Doc **out, int64_t *n_out) {
    Doc **lists = ml_malloc((size_t)(n_all ? n_all : 1) * sizeof *lists);
    int64_t begin[MANIFEST_MAX_DOMAINS + 1] = {0}, next[MANIFEST_MAX_DOMAINS], done[MANIFEST_MAX_DOMAINS] = {0};
    for (int64_t i = 0; i < n_all; i++)
        if (by_key[i]->split == k) begin[by_key[i]->dom + 1]++;
    for (int d = 0; d < n_domains; d++) begin[d + 1] += begin[d];
    for (int d = 0; d < n_domains; d++) next[d] = begin[d];
    for (int64_t i = 0; i < n_all; i++)
        if (by_key[i]->split == k) lists[next[by_key[i]->dom]++] = by_key[i];
    for (int d = 0; d < n_domains; d++) next[d] = begin[d];
    *n_out = 0;
    for (;;) {
        int best = -1;
        double best_share = 2.0;
        for (int d = 0; d < n_domains; d++) {
            if (next[d] == begin[d + 1]) continue;
            double share = (double)done[d] / (double)(st->dom[d].bytes[k] ? st->dom[d].bytes[k] : 1);
            if (share < best_share) best = d, best_share = share;
        }
        if (best < 0) break;
        Doc *x = lists[next[best]++];
        done[best] += (int64_t)x->len;
        out[(*n_out)++] = x;
    }
    free(lists);
}

/* Reads, de-duplicates, caps, splits and orders; fills order[k] with split k's documents. */
static int build_corpus(Corpus *c, const Manifest *m, const PrepareOptions *o, PrepareStats *st, Doc **order[2],
                        int64_t n[2]) {
    c->files = ml_calloc((size_t)m->n_domains, sizeof *c->files);
    c->pkgs = ml_calloc((size_t)m->n_domains, sizeof *c->pkgs);
    c->n_pkgs = ml_calloc((size_t)m->n_domains, sizeof *c->n_pkgs);
    st->n_domains = m->n_domains;
    for (int d = 0; d < m->n_domains; d++) {
        snprintf(st->dom[d].name, sizeof st->dom[d].name, "%s", m->domains[d].name);
        if (o->verbose) fprintf(stderr, "prepare: reading domain %s\n", m->domains[d].name);
        if (read_domain(c, m, d, o, &st->dom[d])) return -1;
        st->n_files += st->dom[d].files;
    }
    drop_duplicates(c, st);
    apply_caps(c, m, o, st);
    assign_splits(c, o);
    Doc **p = doc_ptrs(c);
    qsort(p, (size_t)c->n, sizeof *p, cmp_key);
    for (int k = 0; k < 2; k++) {
        order[k] = ml_malloc((size_t)(c->n ? c->n : 1) * sizeof **order);
        n[k] = 0;
        for (int d = 0; d < m->n_domains; d++) st->dom[d].bytes[k] = 0;
    }
    for (int64_t i = 0; i < c->n; i++)
        if (p[i]->split >= 0) st->dom[p[i]->dom].bytes[p[i]->split] += (int64_t)p[i]->len;
    for (int k = 0; k < 2; k++) interleave(p, c->n, k, m->n_domains, st, order[k], &n[k]);
    free(p);
    return 0;
}

static int run(const PrepareOptions *o, const Manifest *m, PrepareStats *st) {
    Corpus c = {0};
    Doc **order[2] = {NULL, NULL};
    int64_t n[2] = {0, 0};
    SplitBuf sp[2] = {{0}};
    Tok t = {0};
    int rc = build_corpus(&c, m, o, st, order, n);
    if (rc == 0 && o->verbose) fprintf(stderr, "prepare: %lld train and %lld val documents; tokenizer\n", (long long)n[0], (long long)n[1]);
    if (rc == 0) rc = setup_tokenizer(&t, o, order, n);
    for (int k = 0; rc == 0 && k < 2; k++) {
        rc = encode_split(&t, order[k], n[k], &sp[k]);
        if (rc == 0) stats_add(st, &sp[k], k);
    }
    if (rc == 0) {
        strcpy(st->tokenizer, t.kind);
        st->vocab_size = t.vocab;
        int existed = ml_file_exists(o->out_dir);
        char *meta = meta_json(o, m, &c, st, &t);
        rc = ml_mkdir_p(o->out_dir);
        if (rc == 0) rc = write_outputs(o, sp, &t, st, meta);
        if (rc != 0 && !existed) rmdir(o->out_dir); /* only succeeds when we left it empty */
        free(meta);
    }
    if (t.tok) tok_free(t.tok);
    for (int k = 0; k < 2; k++) {
        split_free(&sp[k]);
        free(order[k]);
    }
    corpus_free(&c, m->n_domains);
    return rc;
}

int prepare_data(const PrepareOptions *o, PrepareStats *st) {
    memset(st, 0, sizeof *st);
    if (check_options(o)) return -1;
    Manifest m;
    if (o->manifest) {
        if (manifest_load(&m, o->manifest)) return -1;
    } else {
        manifest_from_inputs(&m, "default", o->inputs, o->n_inputs, DOC_PARAGRAPHS, PREPARE_MIN_DOC_BYTES);
    }
    int rc = run(o, &m, st);
    manifest_free(&m);
    if (rc) {
        int keep_files = st->n_files;
        memset(st, 0, sizeof *st);
        st->n_files = keep_files;
    }
    return rc;
}

int prepare_bytes(const PrepareOptions *o, PrepareStats *st) { return prepare_data(o, st); }
