/* Byte-level BPE: pre-tokenisation, round trips, training (against a slow reference),
 * determinism, the file format and the rejection of corrupt files. */
#include "core/util.h"
#include "data/tokenizer.h"
#include "data/tokenizer_impl.h"
#include "testlib.h"
#include <cjson/cJSON.h>
#include <string.h>
#include <unistd.h>

/* Pseudo-text: words (some UTF-8), numbers, punctuation, contractions and blank lines. */
static char *make_text(uint64_t seed, size_t n, size_t *len) {
    static const char *words[] = {"the", "model", "expert", "router", "token", "tokens", "of", "and", "a", "to",
                                  "in", "is", "that", "for", "it", "with", "as", "was", "on", "be", "by", "this",
                                  "License", "Software", "copyright", "permission", "café", "naïve", "日本語",
                                  "don't", "we're", "it's", "training", "trained", "train", "layer", "layers"};
    static const char *punct[] = {".", ",", ";", ":", "!", "?", " (", ")", " \"", "\"", " -", "..."};
    int nw = (int)(sizeof words / sizeof *words), np = (int)(sizeof punct / sizeof *punct);
    Rng r;
    rng_seed(&r, seed);
    char *s = ml_malloc(n + 64);
    size_t k = 0;
    while (k < n) {
        uint64_t u = rng_below(&r, 100);
        const char *w = u < 80 ? words[rng_below(&r, (uint64_t)nw)] : u < 92 ? punct[rng_below(&r, (uint64_t)np)] : NULL;
        char num[32];
        if (!w && u < 97) snprintf(num, sizeof num, "%d", (int)rng_below(&r, 2000)), w = num;
        if (!w) w = rng_below(&r, 2) ? "\n" : "\n\n";
        if (k && u < 80 && s[k - 1] != '\n') s[k++] = ' ';
        size_t l = strlen(w);
        if (k + l > n) break;
        memcpy(s + k, w, l);
        k += l;
    }
    *len = k;
    return s;
}

static Tokenizer *train_text(const char *s, size_t n, int vocab) {
    const void *b[1] = {s};
    Tokenizer *t = NULL;
    if (tok_train(&t, b, &n, 1, vocab) != 0) printf("  train failed: %s\n", ml_last_error());
    return t;
}

static int roundtrip(Tokenizer *t, const uint8_t *s, size_t n) {
    TokIds ids = {0};
    TokBytes out = {0};
    tok_encode(t, s, n, &ids);
    int ok = tok_decode(t, ids.ids, ids.n, 0, &out) == 0 && out.len == n && (n == 0 || memcmp(out.data, s, n) == 0);
    free(ids.ids);
    free(out.data);
    return ok;
}

static void chunk_list(const char *s, char *out, size_t cap) {
    size_t n = strlen(s), k = 0;
    for (size_t i = 0; i < n;) {
        size_t e = tok_chunk_end((const uint8_t *)s, n, i);
        k += (size_t)snprintf(out + k, cap - k, "[%.*s]", (int)(e - i), s + i);
        i = e;
    }
    out[k] = 0;
}

static void test_pretokenize(void) {
    const char *cases[][2] = {
        {"Hello world", "[Hello][ world]"},
        {"don't we're I'll", "[don]['t][ we]['re][ I]['ll]"},
        {"  a", "[ ][ a]"},
        {"a\n\nb", "[a][\n][\n][b]"},
        {"x  \n", "[x][  \n]"},
        {"123abc 45", "[123][abc][ 45]"},
        {"!!! ?", "[!!!][ ?]"},
        {"''s", "[''][s]"},
        {"caf\xc3\xa9 na\xc3\xafve", "[caf\xc3\xa9][ na\xc3\xafve]"},
        {"a\tb", "[a][\t][b]"},
        {"end ", "[end][ ]"},
    };
    char got[256];
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        chunk_list(cases[i][0], got, sizeof got);
        CHECK(strcmp(got, cases[i][1]) == 0, "'%s' -> %s, want %s", cases[i][0], got, cases[i][1]);
    }
    /* Chunks tile any input, NULs and invalid UTF-8 included. */
    Rng r;
    rng_seed(&r, 7);
    uint8_t buf[512];
    for (int trial = 0; trial < 200; trial++) {
        size_t n = 1 + rng_below(&r, sizeof buf);
        for (size_t i = 0; i < n; i++) buf[i] = (uint8_t)rng_below(&r, 256);
        size_t i = 0;
        while (i < n) {
            size_t e = tok_chunk_end(buf, n, i);
            if (e <= i || e > n) break;
            i = e;
        }
        CHECK(i == n, "chunks do not tile a random string of %zu bytes", n);
    }
}

static void test_byte_map(void) {
    int seen[512] = {0};
    for (int b = 0; b < 256; b++) {
        uint32_t cp = tok_byte_to_cp((uint8_t)b);
        CHECK(cp < 512 && !seen[cp], "byte %d maps to U+%04X twice", b, cp);
        if (cp < 512) seen[cp] = 1;
        CHECK(tok_cp_to_byte(cp) == b, "U+%04X does not map back to %d", cp, b);
    }
    CHECK(tok_byte_to_cp(' ') == 0x120 && tok_byte_to_cp('\n') == 0x10a && tok_byte_to_cp('A') == 'A', "GPT-2 values");
    CHECK(tok_cp_to_byte(0x20ac) == -1 && tok_cp_to_byte(0x20) == -1, "unmapped code points");
}

static void test_roundtrip_random(void) {
    size_t n;
    char *text = make_text(1, 200000, &n);
    Tokenizer *t = train_text(text, n, 600);
    CHECK(t != NULL, "train");
    if (!t) return free(text);
    Rng r;
    rng_seed(&r, 3);
    uint8_t *buf = ml_malloc(5000);
    for (int trial = 0; trial < 300; trial++) {
        size_t len = rng_below(&r, 5000);
        int mode = trial % 4;
        for (size_t i = 0; i < len; i++) {
            if (mode == 0) buf[i] = (uint8_t)rng_below(&r, 256);                    /* any bytes, NULs */
            else if (mode == 1) buf[i] = "\x00\xff\xc3 \n\xe6\x97" "a"[rng_below(&r, 8)]; /* bad UTF-8 pieces */
            else if (mode == 2) buf[i] = (uint8_t)text[(trial * 997 + i) % n];        /* text */
            else buf[i] = rng_below(&r, 10) ? ' ' : 'e';                               /* long runs */
        }
        CHECK(roundtrip(t, buf, len), "trial %d (mode %d, %zu bytes) does not round-trip", trial, mode, len);
    }
    /* A megabyte of spaces and of one letter: long chunks take the heap path. */
    size_t big = 1 << 20;
    uint8_t *sp = ml_malloc(big);
    memset(sp, ' ', big);
    CHECK(roundtrip(t, sp, big), "1 MB of spaces");
    memset(sp, 'e', big);
    CHECK(roundtrip(t, sp, big), "1 MB of 'e'");
    CHECK(roundtrip(t, (const uint8_t *)"", 0), "empty");
    free(sp);
    free(buf);
    tok_free(t);
    free(text);
}

/* The scan (short chunks) and heap (long chunks) BPE must agree exactly. */
static void test_scan_equals_heap(void) {
    size_t n;
    char *text = make_text(2, 100000, &n);
    Tokenizer *t = train_text(text, n, 500);
    CHECK(t != NULL, "train");
    if (!t) return free(text);
    Rng r;
    rng_seed(&r, 5);
    char buf[400];
    for (int trial = 0; trial < 300; trial++) {
        size_t len = 2 + rng_below(&r, sizeof buf - 2);
        size_t start = rng_below(&r, n - len);
        memcpy(buf, text + start, len);
        if (trial % 2) for (size_t i = 0; i < len; i++) buf[i] = "aeht r"[rng_below(&r, 6)];
        TokIds a = {0}, b = {0};
        tok_bpe_chunk(t, (const uint8_t *)buf, len, &a, 1);
        tok_bpe_chunk(t, (const uint8_t *)buf, len, &b, 2);
        CHECK(a.n == b.n && memcmp(a.ids, b.ids, a.n * sizeof *a.ids) == 0, "trial %d: scan and heap differ", trial);
        free(a.ids);
        free(b.ids);
    }
    tok_free(t);
    free(text);
}

static void test_text_compresses(void) {
    size_t n;
    char *text = make_text(4, 300000, &n);
    Tokenizer *t = train_text(text, n, 1000);
    CHECK(t != NULL, "train");
    if (!t) return free(text);
    CHECK(tok_vocab_size(t) == 1000 && tok_eot_id(t) == 256, "vocab %d eot %d", tok_vocab_size(t), tok_eot_id(t));
    CHECK(tok_token_bytes(t, 256) == 0 && tok_is_special(t, 256) && tok_token_bytes(t, 'a') == 1, "token bytes");
    TokIds ids = {0};
    tok_encode(t, text, n, &ids);
    size_t sum = 0;
    for (size_t i = 0; i < ids.n; i++) sum += (size_t)tok_token_bytes(t, (int)ids.ids[i]);
    CHECK(ids.n * 2 < n, "%zu tokens for %zu bytes: no compression", ids.n, n);
    CHECK(sum == n, "token bytes sum to %zu, want %zu", sum, n);
    CHECK(roundtrip(t, (const uint8_t *)text, n), "text round trip");
    /* End-of-text text is plain text to encode; decode drops the special unless asked. */
    TokIds e = {0};
    tok_encode(t, TOK_EOT_TEXT, strlen(TOK_EOT_TEXT), &e);
    int has_eot = 0;
    for (size_t i = 0; i < e.n; i++) has_eot |= e.ids[i] == 256;
    CHECK(!has_eot && e.n > 1, "the end-of-text text became the special id");
    uint32_t two[2] = {'h', 256};
    TokBytes o = {0};
    CHECK(tok_decode(t, two, 2, 0, &o) == 0 && o.len == 1, "special dropped");
    CHECK(tok_decode(t, two, 2, 1, &o) == 0 && o.len == 2 + strlen(TOK_EOT_TEXT), "special kept");
    uint32_t bad = 1000;
    CHECK(tok_decode(t, &bad, 1, 0, &o) != 0 && strstr(ml_last_error(), "out of range"), "id 1000 decoded");
    free(o.data);
    free(e.ids);
    free(ids.ids);
    tok_free(t);
    free(text);
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Slow reference: every chunk occurrence is its own word, and every pair is recounted
 * after every merge (ties: the smallest key, i.e. lowest left then right id). */
static void ref_train(const char *s, size_t n, int vocab, int32_t **merges_out, int *n_merges) {
    char **w = ml_malloc(sizeof(char *) * n);
    int32_t **sym = ml_malloc(sizeof(int32_t *) * n), *len = ml_malloc(sizeof(int32_t) * n);
    int nw = 0;
    for (size_t i = 0; i < n;) {
        size_t e = tok_chunk_end((const uint8_t *)s, n, i);
        if (e - i >= 2) {
            sym[nw] = ml_malloc(sizeof(int32_t) * (e - i));
            for (size_t k = i; k < e; k++) sym[nw][k - i] = (uint8_t)s[k];
            len[nw++] = (int32_t)(e - i);
        }
        i = e;
    }
    char **tok = ml_malloc(sizeof(char *) * (size_t)vocab);
    size_t *tlen = ml_malloc(sizeof(size_t) * (size_t)vocab);
    for (int b = 0; b < 257; b++) tok[b] = ml_malloc(1), tok[b][0] = (char)b, tlen[b] = 1;
    tlen[256] = 0;
    int nt = 257, nm = 0;
    int32_t *mg = ml_malloc(sizeof(int32_t) * 3 * 100000);
    uint64_t *keys = ml_malloc(sizeof(uint64_t) * n);
    for (;;) {
        if (nt >= vocab) break;
        /* Count every adjacent pair by sorting their keys. */
        size_t np = 0;
        for (int x = 0; x < nw; x++)
            for (int i = 0; i + 1 < len[x]; i++) keys[np++] = (uint64_t)sym[x][i] << 32 | (uint32_t)sym[x][i + 1];
        qsort(keys, np, sizeof *keys, cmp_u64);
        int64_t best = 0;
        int32_t ba = 0, bb = 0;
        for (size_t i = 0; i < np;) {
            size_t j = i;
            while (j < np && keys[j] == keys[i]) j++;
            if ((int64_t)(j - i) > best) best = (int64_t)(j - i), ba = (int32_t)(keys[i] >> 32), bb = (int32_t)(uint32_t)keys[i];
            i = j;
        }
        if (best == 0) break;
        int32_t c = -1;
        for (int m = 0; m < nm; m++)
            if (mg[3 * m] == ba && mg[3 * m + 1] == bb) c = mg[3 * m + 2];
        if (c < 0) {
            size_t l = tlen[ba] + tlen[bb];
            char *j = ml_malloc(l);
            memcpy(j, tok[ba], tlen[ba]);
            memcpy(j + tlen[ba], tok[bb], tlen[bb]);
            for (int k = 0; k < nt && c < 0; k++)
                if (k != 256 && tlen[k] == l && memcmp(tok[k], j, l) == 0) c = k;
            if (c < 0) tok[nt] = j, tlen[nt] = l, c = nt++;
            else free(j);
            mg[3 * nm] = ba, mg[3 * nm + 1] = bb, mg[3 * nm + 2] = c, nm++;
        }
        for (int x = 0; x < nw; x++) {
            int32_t o = 0;
            for (int32_t i = 0; i < len[x];)
                if (i + 1 < len[x] && sym[x][i] == ba && sym[x][i + 1] == bb) sym[x][o++] = c, i += 2;
                else sym[x][o++] = sym[x][i++];
            len[x] = o;
        }
    }
    for (int x = 0; x < nw; x++) free(sym[x]);
    for (int k = 0; k < nt; k++) free(tok[k]);
    free(w), free(sym), free(len), free(tok), free(tlen), free(keys);
    *merges_out = mg;
    *n_merges = nm;
}

static void test_matches_reference(void) {
    size_t n;
    char *text = make_text(9, 60000, &n);
    int32_t *mg;
    int nm;
    ref_train(text, n, 700, &mg, &nm);
    Tokenizer *t = train_text(text, n, 700);
    CHECK(t && t->n_merges == nm, "%d merges, reference %d", t ? t->n_merges : -1, nm);
    for (int i = 0; t && i < nm && i < t->n_merges; i++)
        if (memcmp(t->merges + 3 * i, mg + 3 * i, 3 * sizeof(int32_t)) != 0) {
            CHECK(0, "merge %d: (%d %d -> %d), reference (%d %d -> %d)", i, t->merges[3 * i], t->merges[3 * i + 1],
                  t->merges[3 * i + 2], mg[3 * i], mg[3 * i + 1], mg[3 * i + 2]);
            break;
        }
    free(mg);
    tok_free(t);
    free(text);
}

static void test_deterministic_and_reload(void) {
    size_t n;
    char *text = make_text(11, 300000, &n);
    Tokenizer *a = train_text(text, n, 800), *b = train_text(text, n, 800), *c = NULL;
    CHECK(a && b, "train");
    if (!a || !b) return free(text);
    char pa[64], pb[64]; /* per process: several test runs may share /tmp */
    snprintf(pa, sizeof pa, "/tmp/moelab_tok_test_%d_a.json", (int)getpid());
    snprintf(pb, sizeof pb, "/tmp/moelab_tok_test_%d_b.json", (int)getpid());
    CHECK(tok_save(a, pa) == 0 && tok_save(b, pb) == 0, "save: %s", ml_last_error());
    size_t la, lb;
    char *fa = ml_read_file(pa, &la), *fb = ml_read_file(pb, &lb);
    CHECK(fa && fb && la == lb && memcmp(fa, fb, la) == 0, "two trainings differ");
    CHECK(tok_load(&c, pa) == 0, "load: %s", ml_last_error());
    if (c) {
        char *ja = tok_to_json(a), *jc = tok_to_json(c);
        CHECK(strcmp(ja, jc) == 0, "reloaded tokenizer writes a different file");
        TokIds ia = {0}, ic = {0};
        tok_encode(a, text, n, &ia);
        tok_encode(c, text, n, &ic);
        CHECK(ia.n == ic.n && memcmp(ia.ids, ic.ids, ia.n * 4) == 0, "reloaded tokenizer encodes differently");
        for (int id = 0; id < tok_vocab_size(a); id++)
            if (tok_token_bytes(a, id) != tok_token_bytes(c, id)) {
                CHECK(0, "token %d differs", id);
                break;
            }
        free(ja), free(jc), free(ia.ids), free(ic.ids);
        tok_free(c);
    }
    remove(pa), remove(pb);
    free(fa), free(fb);
    tok_free(a), tok_free(b);
    free(text);
}

static void test_vocab_limits(void) {
    size_t n;
    char *text = make_text(12, 20000, &n);
    Tokenizer *t = NULL;
    const void *b[1] = {text};
    CHECK(tok_train(&t, b, &n, 1, 257) != 0 && t == NULL && strstr(ml_last_error(), "vocab size 257"), "257 accepted");
    CHECK(tok_train(&t, b, &n, 1, 10) != 0 && t == NULL, "10 accepted");
    CHECK(tok_train(&t, b, &n, 1, 258) == 0 && t && tok_vocab_size(t) == 258, "258 refused");
    tok_free(t);
    /* No pairs to learn: the vocab stops at bytes + end-of-text. */
    size_t zero = 0;
    CHECK(tok_train(&t, b, &zero, 1, 4096) == 0 && t && tok_vocab_size(t) == 257, "empty text");
    if (t) CHECK(roundtrip(t, (const uint8_t *)text, n), "bytes-only round trip");
    tok_free(t);
    free(text);
}

/* ---- corrupt files: each edit of a valid file must be refused with a message ---- */

static char *edit(const char *json, void (*fn)(cJSON *root)) {
    cJSON *root = cJSON_Parse(json);
    fn(root);
    char *s = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return s;
}

static cJSON *model_of(cJSON *r) { return cJSON_GetObjectItem(r, "model"); }
static cJSON *vocab_of(cJSON *r) { return cJSON_GetObjectItem(model_of(r), "vocab"); }
static cJSON *merges_of(cJSON *r) { return cJSON_GetObjectItem(model_of(r), "merges"); }
static void e_unknown_part(cJSON *r) { cJSON_ReplaceItemInArray(merges_of(r), 0, cJSON_CreateString("zzzq e")); }
static void e_bad_result(cJSON *r) { cJSON_ReplaceItemInArray(merges_of(r), 3, cJSON_CreateString("Ā Ā")); }
static void e_malformed_merge(cJSON *r) { cJSON_ReplaceItemInArray(merges_of(r), 0, cJSON_CreateString("the")); }
static void e_dup_merge(cJSON *r) { cJSON_AddItemToArray(merges_of(r), cJSON_Duplicate(cJSON_GetArrayItem(merges_of(r), 0), 1)); }
static void e_merges_type(cJSON *r) { cJSON_ReplaceItemInObject(model_of(r), "merges", cJSON_CreateNumber(3)); }
static void e_dup_id(cJSON *r) { cJSON_SetNumberValue(cJSON_GetObjectItem(vocab_of(r), "A"), 66); }
static void e_id_range(cJSON *r) { cJSON_SetNumberValue(cJSON_GetObjectItem(vocab_of(r), "A"), 1e9); }
static void e_id_negative(cJSON *r) { cJSON_SetNumberValue(cJSON_GetObjectItem(vocab_of(r), "A"), -1); }
static void e_id_fraction(cJSON *r) { cJSON_SetNumberValue(cJSON_GetObjectItem(vocab_of(r), "A"), 65.5); }
static void e_id_string(cJSON *r) { cJSON_ReplaceItemInObject(vocab_of(r), "A", cJSON_CreateString("65")); }
static void e_gap(cJSON *r) { cJSON_SetNumberValue(cJSON_GetObjectItem(vocab_of(r), "A"), 5000); }
static void e_missing_byte(cJSON *r) {
    cJSON *v = vocab_of(r);
    cJSON_DeleteItemFromObject(v, "A");
    cJSON_AddNumberToObject(v, "ĀĀĀĀĀĀĀĀĀĀĀĀĀĀĀĀĀĀĀĀĀĀĀĀĀĀ", 65); /* keeps ids dense */
}
static void e_not_byte_level(cJSON *r) {
    cJSON *v = vocab_of(r);
    cJSON_DeleteItemFromObject(v, "A");
    cJSON_AddNumberToObject(v, "\xe2\x82\xac", 65); /* the euro sign is not in the byte map */
}
static void e_no_eot(cJSON *r) { cJSON_DeleteItemFromObject(r, "added_tokens"); }
static void e_no_model(cJSON *r) { cJSON_DeleteItemFromObject(r, "model"); }
static void e_model_type(cJSON *r) { cJSON_ReplaceItemInObject(model_of(r), "type", cJSON_CreateString("WordPiece")); }
static void e_vocab_type(cJSON *r) { cJSON_ReplaceItemInObject(model_of(r), "vocab", cJSON_CreateArray()); }
static void e_pretok(cJSON *r) { cJSON_ReplaceItemInObject(r, "pre_tokenizer", cJSON_CreateNull()); }
static void e_normalizer(cJSON *r) { cJSON_ReplaceItemInObject(r, "normalizer", cJSON_CreateObject()); }
static void e_merge_special(cJSON *r) {
    cJSON_ReplaceItemInArray(merges_of(r), 0, cJSON_CreateString("<|endoftext|> A"));
}

static void test_corrupt_files(void) {
    size_t n;
    char *text = make_text(13, 50000, &n);
    Tokenizer *t = train_text(text, n, 300), *u = NULL;
    char *good = tok_to_json(t);
    CHECK(tok_load_json(&u, good, strlen(good), "good") == 0, "the valid file is refused: %s", ml_last_error());
    tok_free(u);
    struct {
        void (*fn)(cJSON *);
        const char *want;
    } cases[] = {
        {e_unknown_part, "not in the vocab"}, {e_bad_result, "makes a token that is not in the vocab"},
        {e_malformed_merge, "is not \"left right\""}, {e_dup_merge, "repeats merge"},
        {e_merges_type, "merges must be an array"}, {e_dup_id, "used twice"},
        {e_id_range, "outside"}, {e_id_negative, "outside"}, {e_id_fraction, "non-integer"},
        {e_id_string, "non-integer"}, {e_gap, "has no token"}, {e_missing_byte, "byte 0x41 has no token"},
        {e_not_byte_level, "not byte-level"}, {e_no_eot, "<|endoftext|>"}, {e_no_model, "no \"model\""},
        {e_model_type, "BPE"}, {e_vocab_type, "vocab must be an object"}, {e_pretok, "ByteLevel"},
        {e_normalizer, "normalizer"}, {e_merge_special, "special"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char *bad = edit(good, cases[i].fn);
        u = NULL;
        int rc = tok_load_json(&u, bad, strlen(bad), "bad.json");
        CHECK(rc != 0 && u == NULL, "case %zu (%s) was accepted", i, cases[i].want);
        CHECK(rc == 0 || strstr(ml_last_error(), cases[i].want), "case %zu: message '%s' lacks '%s'", i, ml_last_error(),
              cases[i].want);
        tok_free(u);
        free(bad);
    }
    const char *not_json[] = {"", "{", "[1,2]", "null", "{\"model\": 3}", "\x00\xff"};
    for (size_t i = 0; i < sizeof not_json / sizeof *not_json; i++) {
        u = NULL;
        CHECK(tok_load_json(&u, not_json[i], strlen(not_json[i]), "x.json") != 0 && !u, "'%s' accepted", not_json[i]);
    }
    CHECK(tok_load_json(&u, good, strlen(good) / 2, "half.json") != 0 && strstr(ml_last_error(), "not valid JSON"),
          "a truncated file: %s", ml_last_error());
    CHECK(tok_load(&u, "/nonexistent/tokenizer.json") != 0, "missing file accepted");
    /* Random damage must never crash (ASan/UBSan builds check the memory side). */
    Rng r;
    rng_seed(&r, 17);
    size_t len = strlen(good);
    char *m = ml_malloc(len + 1);
    int accepted = 0;
    for (int trial = 0; trial < 300; trial++) {
        memcpy(m, good, len + 1);
        for (int k = 0; k < 1 + trial % 5; k++) m[rng_below(&r, len)] = (char)rng_below(&r, 256);
        u = NULL;
        if (tok_load_json(&u, m, len, "fuzz.json") == 0) {
            accepted++;
            CHECK(roundtrip(u, (const uint8_t *)text, 2000), "an accepted damaged file breaks round trips");
        }
        tok_free(u);
    }
    printf("  (%d of 300 randomly damaged files still valid)\n", accepted);
    free(m);
    free(good);
    tok_free(t);
    free(text);
}

/* Files written by other tools: merges as pairs, the special token also in the vocab. */
static void test_hf_variants(void) {
    size_t n;
    char *text = make_text(14, 50000, &n);
    Tokenizer *t = train_text(text, n, 300), *u = NULL;
    char *good = tok_to_json(t);
    cJSON *root = cJSON_Parse(good);
    cJSON *merges = merges_of(root), *pairs = cJSON_CreateArray();
    for (cJSON *e = merges->child; e; e = e->next) {
        char *sp = strchr(e->valuestring, ' ');
        *sp = 0;
        cJSON *p = cJSON_CreateArray();
        cJSON_AddItemToArray(p, cJSON_CreateString(e->valuestring));
        cJSON_AddItemToArray(p, cJSON_CreateString(sp + 1));
        cJSON_AddItemToArray(pairs, p);
    }
    cJSON_ReplaceItemInObject(model_of(root), "merges", pairs);
    char *s = cJSON_Print(root);
    CHECK(tok_load_json(&u, s, strlen(s), "pairs.json") == 0, "merges as pairs: %s", ml_last_error());
    if (u) {
        char *back = tok_to_json(u);
        CHECK(strcmp(back, good) == 0, "merges as pairs read differently");
        free(back);
    }
    tok_free(u);
    free(s);
    cJSON_Delete(root);
    free(good);
    tok_free(t);
    free(text);
}

int main(void) {
    RUN(test_pretokenize);
    RUN(test_byte_map);
    RUN(test_roundtrip_random);
    RUN(test_scan_equals_heap);
    RUN(test_text_compresses);
    RUN(test_matches_reference);
    RUN(test_deterministic_and_reload);
    RUN(test_vocab_limits);
    RUN(test_corrupt_files);
    RUN(test_hf_variants);
    TEST_MAIN_END();
}
