/* The tokenizer file: Hugging Face `tokenizers`' tokenizer.json for byte-level BPE.
 * Writing builds the whole JSON text and saves it atomically; reading checks every
 * field it relies on and reports the first problem through ml_fail. */
#include "core/util.h"
#include "data/tokenizer_impl.h"
#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---------------- writing ---------------- */

/* Appends the byte-level (GPT-2 mapped) UTF-8 text of n bytes to buf. */
static size_t put_mapped(char *buf, const uint8_t *s, size_t n) {
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t cp = tok_byte_to_cp(s[i]);
        if (cp < 0x80) buf[k++] = (char)cp;
        else {
            buf[k++] = (char)(0xc0 | (cp >> 6));
            buf[k++] = (char)(0x80 | (cp & 0x3f));
        }
    }
    buf[k] = 0;
    return k;
}

/* The vocab key of token id: a special token's text, else its mapped bytes. */
static char *token_key(const Tokenizer *t, int id) {
    size_t n;
    const uint8_t *s = tok_token(t, id, &n);
    char *k = ml_malloc(2 * n + 1);
    if (t->special[id]) {
        memcpy(k, s, n);
        k[n] = 0;
    } else {
        put_mapped(k, s, n);
    }
    return k;
}

static cJSON *byte_level(int add_prefix_space) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "type", "ByteLevel");
    cJSON_AddBoolToObject(o, "add_prefix_space", add_prefix_space);
    cJSON_AddBoolToObject(o, "trim_offsets", 1);
    cJSON_AddBoolToObject(o, "use_regex", 1);
    return o;
}

static cJSON *added_tokens(const Tokenizer *t) {
    cJSON *a = cJSON_CreateArray();
    for (int id = 0; id < t->vocab_size; id++) {
        if (!t->special[id]) continue;
        char *k = token_key(t, id);
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "id", id);
        cJSON_AddStringToObject(o, "content", k);
        cJSON_AddBoolToObject(o, "single_word", 0);
        cJSON_AddBoolToObject(o, "lstrip", 0);
        cJSON_AddBoolToObject(o, "rstrip", 0);
        cJSON_AddBoolToObject(o, "normalized", 0);
        cJSON_AddBoolToObject(o, "special", 1);
        cJSON_AddItemToArray(a, o);
        free(k);
    }
    return a;
}

static cJSON *bpe_model(const Tokenizer *t) {
    cJSON *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "type", "BPE");
    cJSON_AddNullToObject(m, "dropout");
    cJSON_AddNullToObject(m, "unk_token");
    cJSON_AddNullToObject(m, "continuing_subword_prefix");
    cJSON_AddNullToObject(m, "end_of_word_suffix");
    cJSON_AddBoolToObject(m, "fuse_unk", 0);
    cJSON_AddBoolToObject(m, "byte_fallback", 0);
    cJSON_AddBoolToObject(m, "ignore_merges", 0);
    char **keys = ml_malloc(sizeof(char *) * t->vocab_size);
    cJSON *vocab = cJSON_AddObjectToObject(m, "vocab");
    for (int id = 0; id < t->vocab_size; id++) {
        keys[id] = token_key(t, id);
        cJSON_AddNumberToObject(vocab, keys[id], id);
    }
    /* "left right": a byte-level key never holds a plain space (it maps to U+0120). */
    cJSON *merges = cJSON_AddArrayToObject(m, "merges");
    for (int r = 0; r < t->n_merges; r++) {
        const char *a = keys[t->merges[3 * r]], *b = keys[t->merges[3 * r + 1]];
        size_t la = strlen(a), lb = strlen(b);
        char *s = ml_malloc(la + lb + 2);
        memcpy(s, a, la);
        s[la] = ' ';
        memcpy(s + la + 1, b, lb + 1);
        cJSON_AddItemToArray(merges, cJSON_CreateString(s));
        free(s);
    }
    for (int id = 0; id < t->vocab_size; id++) free(keys[id]);
    free(keys);
    return m;
}

char *tok_to_json(const Tokenizer *t) {
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "version", "1.0");
    cJSON_AddNullToObject(root, "truncation");
    cJSON_AddNullToObject(root, "padding");
    cJSON_AddItemToObject(root, "added_tokens", added_tokens(t));
    cJSON_AddNullToObject(root, "normalizer");
    cJSON_AddItemToObject(root, "pre_tokenizer", byte_level(0));
    cJSON_AddNullToObject(root, "post_processor");
    cJSON_AddItemToObject(root, "decoder", byte_level(1));
    cJSON_AddItemToObject(root, "model", bpe_model(t));
    char *s = cJSON_Print(root);
    cJSON_Delete(root);
    if (!s) {
        fprintf(stderr, "moelab: out of memory writing tokenizer JSON\n");
        exit(2);
    }
    return s;
}

int tok_save(const Tokenizer *t, const char *path) {
    char *s = tok_to_json(t);
    size_t n = strlen(s);
    s[n] = '\n'; /* cJSON leaves the NUL here; the file ends with a newline instead */
    int rc = ml_write_file_atomic(path, s, n + 1);
    free(s);
    return rc;
}

/* ---------------- reading ---------------- */

typedef struct {
    const char *what;
    int V;
    char **key;        /* [V] vocab key or added-token text per id, NULL while unassigned */
    uint8_t *special;  /* [V] */
    BytesMap by_key;   /* key text -> id */
    uint8_t *data;     /* token bytes */
    uint64_t *off;     /* [V + 1] */
    int32_t *merges;
    int n_merges;
} Reader;

static int get_id(const Reader *r, const cJSON *v, const char *ctx, const char *name, int *id) {
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble))
        return ml_fail("%s: %s '%s' has a non-integer id", r->what, ctx, name);
    if (v->valuedouble < 0 || v->valuedouble >= TOK_MAX_VOCAB)
        return ml_fail("%s: %s '%s' has id %.0f, outside [0, %d)", r->what, ctx, name, v->valuedouble, TOK_MAX_VOCAB);
    *id = (int)v->valuedouble;
    return 0;
}

/* Records key -> id; an id or key used twice is an error unless it is the same pair
 * (an added token that also appears in the vocab, as in GPT-2's file). */
static int assign(Reader *r, const char *key, int id, int special, int *cap) {
    if (id >= *cap) {
        int c = *cap;
        while (c <= id) c *= 2;
        r->key = ml_realloc(r->key, sizeof(char *) * c);
        r->special = ml_realloc(r->special, c);
        for (int i = *cap; i < c; i++) r->key[i] = NULL, r->special[i] = 0;
        *cap = c;
    }
    size_t n = strlen(key);
    int created;
    uint64_t *v = bm_put(&r->by_key, (const uint8_t *)key, n, bm_hash((const uint8_t *)key, n), &created);
    if (!created && (int)*v != id) return ml_fail("%s: token '%s' has two ids, %d and %d", r->what, key, (int)*v, id);
    if (r->key[id] && strcmp(r->key[id], key) != 0)
        return ml_fail("%s: id %d is used twice, by '%s' and '%s'", r->what, id, r->key[id], key);
    *v = (uint64_t)id;
    if (!r->key[id]) r->key[id] = ml_strdup(key);
    r->special[id] |= (uint8_t)special;
    if (id + 1 > r->V) r->V = id + 1;
    return 0;
}

static int read_vocab(Reader *r, const cJSON *vocab, const cJSON *added, int *cap) {
    if (!cJSON_IsObject(vocab)) return ml_fail("%s: model.vocab must be an object", r->what);
    for (const cJSON *e = vocab->child; e; e = e->next) {
        int id = 0;
        if (get_id(r, e, "vocab token", e->string, &id) || assign(r, e->string, id, 0, cap)) return -1;
    }
    if (added && !cJSON_IsArray(added)) return ml_fail("%s: added_tokens must be an array", r->what);
    for (const cJSON *e = added ? added->child : NULL; e; e = e->next) {
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(e, "content");
        if (!cJSON_IsString(c) || !c->valuestring[0])
            return ml_fail("%s: an added token has no \"content\" text", r->what);
        int id = 0;
        if (get_id(r, cJSON_GetObjectItemCaseSensitive(e, "id"), "added token", c->valuestring, &id) ||
            assign(r, c->valuestring, id, 1, cap))
            return -1;
    }
    if (r->V < 257) return ml_fail("%s: the vocab has %d tokens; a byte-level one needs at least 257", r->what, r->V);
    for (int id = 0; id < r->V; id++)
        if (!r->key[id]) return ml_fail("%s: id %d has no token (ids must run 0..%d without gaps)", r->what, id, r->V - 1);
    return 0;
}

/* Maps a vocab key back to bytes through the inverse of GPT-2's byte-to-unicode table. */
static int unmap_key(const Reader *r, const char *key, uint8_t *out, size_t *n) {
    const uint8_t *s = (const uint8_t *)key;
    size_t k = 0;
    for (size_t i = 0; s[i];) {
        uint32_t cp;
        if (s[i] < 0x80) cp = s[i++];
        else if ((s[i] & 0xe0) == 0xc0 && (s[i + 1] & 0xc0) == 0x80) cp = (uint32_t)(s[i] & 0x1f) << 6 | (s[i + 1] & 0x3f), i += 2;
        else cp = UINT32_MAX, i++;
        int b = tok_cp_to_byte(cp);
        if (b < 0) return ml_fail("%s: vocab token '%s' is not byte-level text (a character outside GPT-2's byte map)", r->what, key);
        out[k++] = (uint8_t)b;
    }
    if (k == 0) return ml_fail("%s: the vocab has an empty token", r->what);
    *n = k;
    return 0;
}

static int token_bytes_all(Reader *r) {
    size_t total = 0;
    for (int id = 0; id < r->V; id++) total += strlen(r->key[id]);
    r->data = ml_malloc(total + 1);
    r->off = ml_malloc(sizeof(uint64_t) * (r->V + 1));
    r->off[0] = 0;
    for (int id = 0; id < r->V; id++) {
        size_t n = strlen(r->key[id]);
        if (r->special[id]) memcpy(r->data + r->off[id], r->key[id], n);
        else if (unmap_key(r, r->key[id], r->data + r->off[id], &n)) return -1;
        r->off[id + 1] = r->off[id] + n;
    }
    return 0;
}

static int lookup(const Reader *r, const char *key, size_t n, int idx, const char *merge) {
    uint64_t *v = bm_find(&r->by_key, (const uint8_t *)key, n, bm_hash((const uint8_t *)key, n));
    if (!v) return ml_fail("%s: merge %d ('%s') uses '%.*s', which is not in the vocab", r->what, idx, merge, (int)n, key);
    return (int)*v;
}

/* Merges are "left right" strings (older files) or ["left", "right"] pairs (newer). */
static int read_merges(Reader *r, const cJSON *merges) {
    if (!cJSON_IsArray(merges)) return ml_fail("%s: model.merges must be an array", r->what);
    int n = cJSON_GetArraySize(merges), i = 0;
    r->merges = ml_malloc(sizeof(int32_t) * 3 * (size_t)(n ? n : 1));
    BytesMap by_bytes;
    bm_init(&by_bytes, 2 * (size_t)r->V);
    for (int id = 0; id < r->V; id++) {
        if (r->special[id]) continue;
        int created;
        const uint8_t *s = r->data + r->off[id];
        size_t len = r->off[id + 1] - r->off[id];
        *bm_put(&by_bytes, s, len, bm_hash(s, len), &created) = (uint64_t)id;
    }
    int rc = 0;
    for (const cJSON *e = merges->child; e && rc == 0; e = e->next, i++) {
        const char *a = NULL, *b = NULL, *sp = NULL, *text = "?";
        size_t la = 0, lb = 0;
        if (cJSON_IsString(e) && (sp = strchr(e->valuestring, ' ')) && !strchr(sp + 1, ' ')) {
            text = e->valuestring, a = text, la = (size_t)(sp - text), b = sp + 1, lb = strlen(b);
        } else if (cJSON_IsArray(e) && cJSON_GetArraySize(e) == 2 && cJSON_IsString(e->child) &&
                   cJSON_IsString(e->child->next)) {
            a = e->child->valuestring, la = strlen(a), b = e->child->next->valuestring, lb = strlen(b), text = a;
        }
        if (!a || !la || !lb) {
            rc = ml_fail("%s: merge %d is not \"left right\" or [\"left\", \"right\"]", r->what, i);
            break;
        }
        int ia = lookup(r, a, la, i, text), ib = ia < 0 ? -1 : lookup(r, b, lb, i, text);
        if (ia < 0 || ib < 0) rc = -1;
        else if (r->special[ia] || r->special[ib]) rc = ml_fail("%s: merge %d ('%s') uses a special token", r->what, i, text);
        if (rc) break;
        /* The result is the token whose bytes are the two parts joined. */
        size_t na = r->off[ia + 1] - r->off[ia], nb = r->off[ib + 1] - r->off[ib];
        uint8_t *joined = ml_malloc(na + nb);
        memcpy(joined, r->data + r->off[ia], na);
        memcpy(joined + na, r->data + r->off[ib], nb);
        uint64_t *v = bm_find(&by_bytes, joined, na + nb, bm_hash(joined, na + nb));
        free(joined);
        if (!v) rc = ml_fail("%s: merge %d ('%s') makes a token that is not in the vocab", r->what, i, text);
        else r->merges[3 * i] = ia, r->merges[3 * i + 1] = ib, r->merges[3 * i + 2] = (int32_t)*v;
    }
    r->n_merges = i;
    bm_free(&by_bytes);
    return rc;
}

/* The parts around the model that change how text becomes ids must be byte-level ones. */
static int check_pipeline(const Reader *r, const cJSON *root, const cJSON *model) {
    const cJSON *pt = cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer");
    const cJSON *dec = cJSON_GetObjectItemCaseSensitive(root, "decoder");
    const cJSON *norm = cJSON_GetObjectItemCaseSensitive(root, "normalizer");
    const cJSON *ty = cJSON_GetObjectItemCaseSensitive(model, "type");
    if (!cJSON_IsString(ty) || strcmp(ty->valuestring, "BPE") != 0)
        return ml_fail("%s: model.type must be \"BPE\"", r->what);
    const cJSON *pt_ty = cJSON_GetObjectItemCaseSensitive(pt, "type");
    if (!cJSON_IsString(pt_ty) || strcmp(pt_ty->valuestring, "ByteLevel") != 0)
        return ml_fail("%s: pre_tokenizer must be {\"type\": \"ByteLevel\"} (moelab reads byte-level BPE only)", r->what);
    const cJSON *dec_ty = cJSON_GetObjectItemCaseSensitive(dec, "type");
    if (dec && !cJSON_IsNull(dec) && (!cJSON_IsString(dec_ty) || strcmp(dec_ty->valuestring, "ByteLevel") != 0))
        return ml_fail("%s: decoder must be ByteLevel or null", r->what);
    if (norm && !cJSON_IsNull(norm)) return ml_fail("%s: normalizers are not supported (normalizer must be null)", r->what);
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(pt, "add_prefix_space")))
        return ml_fail("%s: pre_tokenizer.add_prefix_space=true is not supported", r->what);
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(model, "ignore_merges")))
        return ml_fail("%s: model.ignore_merges=true is not supported", r->what);
    const char *affix[2] = {"continuing_subword_prefix", "end_of_word_suffix"};
    for (int k = 0; k < 2; k++) {
        const cJSON *a = cJSON_GetObjectItemCaseSensitive(model, affix[k]);
        if (cJSON_IsString(a) && a->valuestring[0]) return ml_fail("%s: model.%s must be empty", r->what, affix[k]);
    }
    return 0;
}

static void reader_free(Reader *r, int cap) {
    for (int i = 0; i < cap; i++) free(r->key ? r->key[i] : NULL);
    free(r->key);
    free(r->special);
    bm_free(&r->by_key);
    free(r->data);
    free(r->off);
    free(r->merges);
}

int tok_load_json(Tokenizer **out, const char *json, size_t len, const char *what) {
    *out = NULL;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(json, len, &end, 0);
    if (!root) return ml_fail("%s: not valid JSON (error near byte %zu)", what, end ? (size_t)(end - json) : (size_t)0);
    Reader r = {.what = what};
    int cap = 512, rc = -1;
    r.key = ml_calloc(cap, sizeof(char *));
    r.special = ml_calloc(cap, 1);
    bm_init(&r.by_key, 1024);
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    if (!cJSON_IsObject(root) || !cJSON_IsObject(model)) ml_fail("%s: no \"model\" object (not a tokenizer.json)", what);
    else if (check_pipeline(&r, root, model) == 0 &&
             read_vocab(&r, cJSON_GetObjectItemCaseSensitive(model, "vocab"), cJSON_GetObjectItemCaseSensitive(root, "added_tokens"), &cap) == 0 &&
             token_bytes_all(&r) == 0 && read_merges(&r, cJSON_GetObjectItemCaseSensitive(model, "merges")) == 0) {
        uint64_t *eot = bm_find(&r.by_key, (const uint8_t *)TOK_EOT_TEXT, strlen(TOK_EOT_TEXT),
                                bm_hash((const uint8_t *)TOK_EOT_TEXT, strlen(TOK_EOT_TEXT)));
        if (!eot || !r.special[*eot]) ml_fail("%s: no special token \"%s\" in added_tokens", what, TOK_EOT_TEXT);
        else if (tok_build(out, r.V, r.data, r.off, r.special, (int)*eot, r.merges, r.n_merges) != 0)
            ml_fail("%s: %s", what, ml_last_error());
        else rc = 0;
    }
    cJSON_Delete(root);
    reader_free(&r, cap);
    return rc;
}

int tok_load(Tokenizer **out, const char *path) {
    size_t len;
    *out = NULL;
    char *s = ml_read_file_max(path, &len, ML_READ_MAX_TEXT);
    if (!s) return -1;
    int rc = tok_load_json(out, s, len, path);
    free(s);
    return rc;
}
