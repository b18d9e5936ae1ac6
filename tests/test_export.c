/* GGUF export: the f16/bf16/q8_0 conversions against exact references, the file layout
 * read back by an independent parser, the architecture choice and refusals.
 * Also a helper for tests/cli/test_export.sh, which runs the file in llama.cpp:
 *   test_export --logits CKPT IDS OTHER.f32 [f16|bf16|q8_0]
 * runs moelab's forward on each line of ids (with the weights rounded as the export stores
 * them in that type) and prints how far OTHER's logits [n, V] are from ours. */
#include "core/util.h"
#include "io/checkpoint.h"
#include "io/gguf.h"
#include "io/gguf_export.h"
#include "testlib.h"
#include <float.h>

/* ---- conversions ---- */

/* The nearest half to x by exhaustive search over all finite halves (ties: even mantissa). */
static uint16_t f16_reference(float x) {
    static float all[0x7c00];
    static int ready;
    if (!ready) {
        for (int h = 0; h < 0x7c00; h++) all[h] = gguf_f16_to_f32((uint16_t)h);
        ready = 1;
    }
    double a = fabs((double)x);
    uint16_t sign = signbit(x) ? 0x8000 : 0;
    if (a >= 65520.0) return sign | 0x7c00; /* past the largest half plus half an ulp */
    int lo = 0, hi = 0x7bff;                /* binary search: all[] increases with h */
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (all[mid] <= a) lo = mid;
        else hi = mid - 1;
    }
    int best = lo;
    if (lo < 0x7bff) {
        double dl = a - all[lo], dh = all[lo + 1] - a;
        if (dh < dl || (dh == dl && (lo & 1))) best = lo + 1;
    }
    return sign | (uint16_t)best;
}

static void test_f16_roundtrip_and_rounding(void) {
    int bad = 0;
    for (uint32_t h = 0; h < 0x10000; h++) { /* every non-NaN half survives half -> float -> half */
        if ((h & 0x7c00) == 0x7c00 && (h & 0x3ff)) continue;
        if (gguf_f32_to_f16(gguf_f16_to_f32((uint16_t)h)) != h) bad++;
    }
    CHECK(bad == 0, "%d halves do not round-trip", bad);
    Rng r;
    rng_seed(&r, 5);
    bad = 0;
    for (int i = 0; i < 300000; i++) { /* random floats over the whole half range, ties included */
        uint32_t u = (uint32_t)rng_next(&r);
        float x;
        memcpy(&x, &u, 4);
        if (i % 3 == 0) x = ldexpf(rng_uniform(&r) * 2 - 1, (int)rng_below(&r, 44) - 26);
        if (i % 3 == 1) x = gguf_f16_to_f32((uint16_t)rng_next(&r)) + (rng_next(&r) & 1 ? 1 : -1) * ldexpf(1, -25);
        if (isnan(x)) continue;
        if (gguf_f32_to_f16(x) != f16_reference(x)) bad++;
    }
    CHECK(bad == 0, "%d floats rounded to a half other than the nearest", bad);
    CHECK((gguf_f32_to_f16(NAN) & 0x7fff) > 0x7c00, "NaN must stay NaN");
    CHECK(gguf_f32_to_f16(1e6f) == 0x7c00 && gguf_f32_to_f16(-1e6f) == 0xfc00, "overflow must give infinity");
}

static void test_bf16(void) {
    CHECK(gguf_f32_to_bf16(1.0f) == 0x3f80, "1.0");
    /* 1 + 2^-8 lies halfway between 1 and 1 + 2^-7: ties to even (1.0) */
    CHECK(gguf_f32_to_bf16(1.0f + 0x1p-8f) == 0x3f80, "tie to even");
    CHECK(gguf_f32_to_bf16(1.0f + 0x1p-8f + 0x1p-20f) == 0x3f81, "above the tie rounds up");
    Rng r;
    rng_seed(&r, 9);
    int bad = 0;
    for (int i = 0; i < 100000; i++) {
        float x = ldexpf(rng_normal(&r), (int)rng_below(&r, 40) - 20), y = gguf_bf16_to_f32(gguf_f32_to_bf16(x));
        if (fabsf(y - x) > fabsf(x) * 0x1p-8f) bad++;
    }
    CHECK(bad == 0, "%d values off by more than half a bf16 ulp", bad);
}

static void test_q8_0(void) {
    float x[GG_QK8_0];
    uint8_t b[34];
    for (int j = 0; j < GG_QK8_0; j++) x[j] = (float)(j - 16) * 0.37f;
    gguf_q8_0_block(x, b);
    uint16_t dh;
    memcpy(&dh, b, 2);
    float d = gguf_f16_to_f32(dh), amax = 16 * 0.37f;
    CHECK(fabsf(d - amax / 127) <= amax / 127 * 1e-3f, "scale %g, expected %g", d, amax / 127);
    /* error: half a step, plus the f16 rounding of the scale (127 steps of 2^-11) */
    CHECK((int8_t)b[2] == -127, "the largest magnitude maps to -127, got %d", (int8_t)b[2]);
    for (int j = 0; j < GG_QK8_0; j++) CHECK(fabsf((int8_t)b[2 + j] * d - x[j]) <= d * 0.6f, "value %d", j);
    memset(x, 0, sizeof x);
    gguf_q8_0_block(x, b);
    for (int j = 0; j < 34; j++) CHECK(b[j] == 0, "an all-zero block is all zero bytes");
    CHECK(gguf_type_size(GG_Q8_0, 64) == 68 && gguf_type_size(GG_F16, 3) == 6, "type sizes");
}

/* ---- the file, read back ---- */

typedef struct {
    const uint8_t *p, *end;
    int bad;
} Rd;
static uint64_t rd(Rd *r, int n) {
    uint64_t v = 0;
    if (r->p + n > r->end) {
        r->bad = 1;
        return 0;
    }
    memcpy(&v, r->p, n);
    r->p += n;
    return v;
}
static void rd_skip(Rd *r, uint64_t n) {
    if ((uint64_t)(r->end - r->p) < n) r->bad = 1;
    else r->p += n;
}
static void rd_value(Rd *r, uint32_t type) {
    static const int size[] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
    if (type == 8) rd_skip(r, rd(r, 8));
    else if (type == 9) {
        uint32_t et = (uint32_t)rd(r, 4);
        uint64_t n = rd(r, 8);
        for (uint64_t i = 0; i < n && !r->bad; i++) rd_value(r, et);
    } else if (type < 13) rd_skip(r, size[type]);
    else r->bad = 1;
}

static void test_layout(void) {
    GgufWriter w;
    gguf_init(&w);
    gguf_kv_str(&w, "general.architecture", "x");
    gguf_kv_u32(&w, "a.n", 7);
    const char *s[] = {"a", "\xc4\xa0", ""};
    size_t l[] = {1, 2, 0};
    gguf_kv_str_arr(&w, "a.tokens", s, l, 3);
    float v[96];
    for (int i = 0; i < 96; i++) v[i] = (float)i / 8;
    int64_t ne1[1] = {3}, ne2[2] = {32, 3}, ne3[2] = {5, 2};
    CHECK(gguf_add_tensor(&w, "t1", 1, ne1, GG_F32, v) == 0, "t1");
    CHECK(gguf_add_tensor(&w, "t2", 2, ne2, GG_Q8_0, v) == 0, "t2");
    CHECK(gguf_add_tensor(&w, "t3", 2, ne3, GG_F16, v) == 0, "t3");
    CHECK(gguf_add_tensor(&w, "bad", 2, ne3, GG_Q8_0, v) != 0, "q8_0 rows of 5 must be refused");
    char path[512];
    snprintf(path, sizeof path, "%s/a.gguf", tl_tmp_dir);
    CHECK(gguf_save(&w, path) == 0, "save: %s", ml_last_error());
    gguf_free(&w);
    size_t len;
    uint8_t *buf = (uint8_t *)ml_read_file(path, &len);
    Rd r = {buf, buf + len, 0};
    CHECK(rd(&r, 4) == 0x46554747u && rd(&r, 4) == 3, "magic and version");
    uint64_t nt = rd(&r, 8), nkv = rd(&r, 8);
    CHECK(nt == 3 && nkv == 3, "3 tensors and 3 keys, got %llu and %llu", (unsigned long long)nt, (unsigned long long)nkv);
    for (uint64_t i = 0; i < nkv && !r.bad; i++) {
        rd_skip(&r, rd(&r, 8));
        rd_value(&r, (uint32_t)rd(&r, 4));
    }
    uint64_t off[3] = {0}, types[3] = {0};
    for (uint64_t i = 0; i < nt && !r.bad; i++) {
        rd_skip(&r, rd(&r, 8));
        uint32_t nd = (uint32_t)rd(&r, 4);
        for (uint32_t d = 0; d < nd; d++) rd(&r, 8);
        types[i] = rd(&r, 4);
        off[i] = rd(&r, 8);
    }
    CHECK(!r.bad, "the header parses within the file");
    size_t data = ((size_t)(r.p - buf) + 31) / 32 * 32;
    CHECK(types[0] == 0 && types[1] == 8 && types[2] == 1, "tensor types");
    CHECK(off[0] == 0 && off[1] % 32 == 0 && off[2] % 32 == 0 && off[1] >= 12 && off[2] >= off[1] + 102, "offsets");
    CHECK(len == data + off[2] + 20, "file ends after the last tensor (%zu vs %zu)", len, (size_t)(data + off[2] + 20));
    if (len == data + off[2] + 20) {
        float f;
        memcpy(&f, buf + data + 4, 4);
        CHECK(f == v[1], "f32 data");
        uint16_t h;
        memcpy(&h, buf + data + off[2] + 18, 2);
        CHECK(gguf_f16_to_f32(h) == v[9], "f16 data");
    }
    free(buf);
}

/* ---- the architecture choice ---- */

static void test_plan(void) {
    Model m;
    memset(&m, 0, sizeof m);
    TrainConfig tc;
    config_defaults(&tc);
    m.cfg = tc.model;
    m.router_rows = m.cfg.n_experts;
    GgufPlan p;
    strcpy(m.cfg.router, "topk");
    m.cfg.renorm = 1;
    CHECK(gguf_plan(&m, &p) == 0 && strcmp(p.arch, "ernie4_5-moe") == 0 && p.renorm, "renormalised top-k: ernie4_5-moe");
    m.cfg.renorm = 0;
    m.cfg.n_shared = 0;
    CHECK(gguf_plan(&m, &p) == 0 && strcmp(p.arch, "deepseek") == 0 && p.zero_shared, "plain top-k: deepseek, zero shared");
    m.cfg.n_shared = 1;
    CHECK(gguf_plan(&m, &p) == 0 && !p.zero_shared, "deepseek with its own shared expert");
    strcpy(m.cfg.router, "mpmoe");
    CHECK(gguf_plan(&m, &p) != 0 && strstr(ml_last_error(), "eval_select=topk"), "mpmoe's greedy rule is refused");
    strcpy(m.cfg.router_opts, "warmup=0.01,eval_select=topk");
    CHECK(gguf_plan(&m, &p) == 0 && p.renorm && strcmp(p.arch, "ernie4_5-moe") == 0, "mpmoe top-k: renormalised");
    strcpy(m.cfg.router, "expert_choice");
    CHECK(gguf_plan(&m, &p) != 0 && strstr(ml_last_error(), "no exact llama.cpp form"), "other routers are refused");
}

/* ---- helper for the llama.cpp comparison ---- */

/* The weights as the export stores them in `type`: matrices rounded (q8_0: per block of 32
 * along each row, f16 for rows that are not whole blocks), norms and router weights f32. */
static void round_like_export(Model *m, GgType type) {
    uint8_t blk[34];
    for (int i = 0; i < m->table.n; i++) {
        const ParamInfo *p = &m->table.items[i];
        if (p->ndim < 2 || strstr(p->name, ".router.")) continue;
        float *w = m->params + p->offset;
        int row = p->shape[p->ndim - 1];
        GgType t = type == GG_Q8_0 && row % GG_QK8_0 ? GG_F16 : type;
        if (t == GG_Q8_0) {
            for (size_t j = 0; j < p->size; j += GG_QK8_0) {
                gguf_q8_0_block(w + j, blk);
                uint16_t dh;
                memcpy(&dh, blk, 2);
                for (int q = 0; q < GG_QK8_0; q++) w[j + q] = (int8_t)blk[2 + q] * gguf_f16_to_f32(dh);
            }
        } else {
            for (size_t j = 0; j < p->size; j++)
                w[j] = t == GG_F16 ? gguf_f16_to_f32(gguf_f32_to_f16(w[j])) : gguf_bf16_to_f32(gguf_f32_to_bf16(w[j]));
        }
    }
}

static int logits_mode(const char *ckpt, const char *ids_path, const char *other_path, GgType type) {
    Model m;
    TrainConfig tc;
    memset(&m, 0, sizeof m);
    size_t len, olen;
    char *text = ml_read_file(ids_path, &len);
    float *other = (float *)ml_read_file(other_path, &olen);
    if (!text || !other || checkpoint_load_model(ckpt, &m, &tc)) {
        fprintf(stderr, "%s\n", ml_last_error());
        return 1;
    }
    int n = 0, V = m.cfg.vocab_size, *ids = ml_malloc(sizeof(int) * (len / 2 + 1)), lines = 0;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) lines++;
    if (olen % ((size_t)V * sizeof(float))) {
        fprintf(stderr, "%s holds %zu bytes, not a whole number of %d-float rows\n", other_path, olen, V);
        return 1;
    }
    if (type != GG_F32) round_like_export(&m, type);
    /* one forward per line of IDS (strtok left NULs between the lines) */
    double maxabs = 0, scale = 0;
    int agree = 0, total = 0;
    char *s = text;
    for (int li = 0; li < lines; li++) {
        while (*s == 0) s++;
        char *next = s + strlen(s), *e;
        n = 0;
        for (; (ids[n] = (int)strtol(s, &e, 10)), e != s; s = e) n++;
        s = next;
        if ((size_t)(total + n) * V * sizeof(float) > olen) {
            fprintf(stderr, "%s has fewer rows than the ids\n", other_path);
            return 1;
        }
        model_forward(&m, ids, NULL, 1, n, ROUTE_INFER);
        const float *ours = m.acts.logits, *theirs = other + (size_t)total * V;
        for (int t = 0; t < n; t++) {
            int a = 0, b = 0;
            for (int v = 0; v < V; v++) {
                size_t i = (size_t)t * V + v;
                maxabs = fmax(maxabs, fabs((double)ours[i] - theirs[i]));
                scale = fmax(scale, fabs((double)ours[i]));
                if (ours[i] > ours[(size_t)t * V + a]) a = v;
                if (theirs[i] > theirs[(size_t)t * V + b]) b = v;
            }
            agree += a == b;
        }
        total += n;
    }
    if ((size_t)total * V * sizeof(float) != olen) {
        fprintf(stderr, "%s has more rows than the ids\n", other_path);
        return 1;
    }
    n = total;
    printf("positions %d maxabs %.3g scale %.3g argmax_agree %d\n", n, maxabs, scale, agree);
    free(ids);
    free(text);
    free(other);
    model_free(&m);
    return 0;
}

int main(int argc, char **argv) {
    if (argc >= 5 && strcmp(argv[1], "--logits") == 0) {
        GgType t = GG_F32;
        if (argc > 5) t = strcmp(argv[5], "f16") == 0 ? GG_F16 : strcmp(argv[5], "bf16") == 0 ? GG_BF16 : GG_Q8_0;
        return logits_mode(argv[2], argv[3], argv[4], t);
    }
    if (tl_mktmp("gguf")) return 1;
    RUN(test_f16_roundtrip_and_rounding);
    RUN(test_bf16);
    RUN(test_q8_0);
    RUN(test_layout);
    RUN(test_plan);
    tl_rm_rf(tl_tmp_dir);
    TEST_MAIN_END();
}
