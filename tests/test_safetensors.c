/* safetensors: round trip, byte layout, rejection of damaged files, atomic saves.
 * With --write-sample PATH / --check-sample PATH it writes or verifies the fixed sample
 * used by tests/cli/test_safetensors_py.sh to cross-check against numpy/torch. */
#include "core/util.h"
#include "io/safetensors.h"
#include "testlib.h"
#include <cjson/cJSON.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>


static const char *tmp_path(const char *name) {
    static char buf[8][512];
    static int k;
    char *p = buf[k++ % 8];
    snprintf(p, 512, "%s/%s", tl_tmp_dir, name);
    return p;
}

/* ---- the fixed sample (shared with the Python cross-check) ---- */
typedef struct {
    float f32[12];
    double f64[8];
    int64_t i64[5];
    int32_t i32[4];
    uint8_t u8[7], boolv[3];
    uint16_t f16[3], bf16[2];
    float scalar;
} Sample;

static void sample_fill(Sample *s) {
    for (int i = 0; i < 12; i++) s->f32[i] = i * 0.5f - 1.0f;
    for (int i = 0; i < 8; i++) s->f64[i] = i / 3.0;
    for (int i = 0; i < 5; i++) s->i64[i] = (int64_t)i * 1000000000000LL - 7;
    for (int i = 0; i < 4; i++) s->i32[i] = i - 2;
    for (int i = 0; i < 7; i++) s->u8[i] = (uint8_t)(i * 37);
    s->boolv[0] = 1, s->boolv[1] = 0, s->boolv[2] = 1;
    s->f16[0] = 0x3C00, s->f16[1] = 0xC000, s->f16[2] = 0x3800; /* 1.0, -2.0, 0.5 */
    s->bf16[0] = 0x3F80, s->bf16[1] = 0xC040;                    /* 1.0, -3.0 */
    s->scalar = 42.0f;
}

#define SAMPLE_NOTE "h\xc3\xa9llo \"quoted\" \\ back"

/* u8 comes early with an odd size, so later tensors start at unaligned offsets. */
static void sample_add(StFile *f, const Sample *s) {
    st_add(f, "u8", "U8", 1, (int64_t[]){7}, s->u8);
    st_add(f, "f32", "F32", 2, (int64_t[]){3, 4}, s->f32);
    st_add(f, "f64", "F64", 3, (int64_t[]){2, 2, 2}, s->f64);
    st_add(f, "i64", "I64", 1, (int64_t[]){5}, s->i64);
    st_add(f, "i32", "I32", 2, (int64_t[]){2, 2}, s->i32);
    st_add(f, "bool", "BOOL", 1, (int64_t[]){3}, s->boolv);
    st_add(f, "f16", "F16", 1, (int64_t[]){3}, s->f16);
    st_add(f, "bf16", "BF16", 1, (int64_t[]){2}, s->bf16);
    st_add(f, "scalar", "F32", 0, NULL, &s->scalar);
    st_add(f, "empty", "F32", 2, (int64_t[]){0, 3}, NULL);
    st_add_meta(f, "format", "moelab");
    st_add_meta(f, "note", SAMPLE_NOTE);
}

/* 0 when every tensor and metadata value of the sample is in f, else the first difference in why. */
static int sample_compare(const StFile *f, const Sample *s, char *why, size_t cap) {
    StFile ref;
    st_init(&ref);
    sample_add(&ref, s);
    int bad = 0;
    for (int i = 0; i < ref.n && !bad; i++) {
        const StTensor *a = &ref.tensors[i], *b = st_find(f, a->name);
        if (!b) bad = snprintf(why, cap, "missing '%s'", a->name);
        else if (strcmp(a->dtype, b->dtype) || a->ndim != b->ndim || a->nbytes != b->nbytes ||
                 memcmp(a->shape, b->shape, sizeof(int64_t) * a->ndim))
            bad = snprintf(why, cap, "'%s' has a different dtype or shape", a->name);
        else if (a->nbytes && memcmp(a->data, b->data, a->nbytes))
            bad = snprintf(why, cap, "'%s' has different values", a->name);
    }
    if (!bad && f->n != ref.n) bad = snprintf(why, cap, "%d tensors, expected %d", f->n, ref.n);
    for (int i = 0; i < ref.n_meta && !bad; i++) {
        const char *v = st_meta(f, ref.meta_keys[i]);
        if (!v || strcmp(v, ref.meta_vals[i])) bad = snprintf(why, cap, "metadata '%s' differs", ref.meta_keys[i]);
    }
    st_free(&ref);
    return bad ? -1 : 0;
}

/* ---- helpers for hand-made files ---- */

static void write_bytes(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) { perror(path); exit(1); }
    if (n) fwrite(p, 1, n, f);
    fclose(f);
}

/* A file from a header text and `data_len` data bytes (0,1,2,...); hlen overrides the length field when >= 0. */
static void make_file(const char *path, const char *header, size_t data_len, long long hlen) {
    size_t n = strlen(header), total = 8 + n + data_len;
    unsigned char *buf = ml_malloc(total);
    uint64_t h = hlen >= 0 ? (uint64_t)hlen : n;
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)(h >> (8 * i));
    memcpy(buf + 8, header, n);
    for (size_t i = 0; i < data_len; i++) buf[8 + n + i] = (unsigned char)i;
    write_bytes(path, buf, total);
    free(buf);
}

/* st_load must fail, and its message must name the file and contain `want`. */
static void expect_reject(const char *path, const char *want, const char *label) {
    StFile f;
    int rc = st_load(&f, path);
    CHECK(rc == -1, "%s: accepted a bad file", label);
    if (rc != -1) { st_free(&f); return; }
    const char *msg = ml_last_error();
    CHECK(strstr(msg, path) != NULL, "%s: message does not name the file: %s", label, msg);
    CHECK(strstr(msg, want) != NULL, "%s: message '%s' lacks '%s'", label, msg, want);
}

static unsigned char *slurp(const char *path, size_t *n) { return (unsigned char *)ml_read_file(path, n); }

static uint64_t le64(const unsigned char *p) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v |= (uint64_t)p[i] << (8 * i);
    return v;
}

/* ---- tests ---- */

static void test_roundtrip(void) {
    Sample s;
    sample_fill(&s);
    StFile w;
    st_init(&w);
    sample_add(&w, &s);
    st_add_meta(&w, "note", SAMPLE_NOTE); /* re-adding a key replaces it, no duplicate */
    const char *path = tmp_path("rt.safetensors");
    CHECK(st_save(&w, path) == 0, "save: %s", ml_last_error());
    CHECK(w.n_meta == 2, "meta count %d", w.n_meta);
    StFile r;
    int rc = st_load(&r, path);
    CHECK(rc == 0, "load: %s", ml_last_error());
    if (rc == 0) {
        char why[256] = "";
        CHECK(sample_compare(&r, &s, why, sizeof why) == 0, "%s", why);
        CHECK(st_find(&r, "nope") == NULL, "found a missing tensor");
        CHECK(st_meta(&r, "nope") == NULL, "found missing metadata");
        double f64[8];
        CHECK(st_read(&r, "f64", "F64", 3, (int64_t[]){2, 2, 2}, f64) == 0, "st_read: %s", ml_last_error());
        CHECK(memcmp(f64, s.f64, sizeof f64) == 0, "st_read values differ");
        float sc = 0;
        CHECK(st_read(&r, "scalar", "F32", 0, NULL, &sc) == 0 && sc == 42.0f, "scalar read");
        st_free(&r);
    }
    st_free(&w);
    /* an empty file (no tensors, no metadata) is valid too */
    st_init(&w);
    CHECK(st_save(&w, tmp_path("empty.safetensors")) == 0, "save empty: %s", ml_last_error());
    CHECK(st_load(&r, tmp_path("empty.safetensors")) == 0 && r.n == 0, "load empty: %s", ml_last_error());
    st_free(&r);
}

/* The bytes on disk follow the format: LE length, JSON, 8-aligned data start, offsets relative to it, packed. */
static void test_layout(void) {
    Sample s;
    sample_fill(&s);
    StFile w;
    st_init(&w);
    sample_add(&w, &s);
    const char *path = tmp_path("layout.safetensors");
    CHECK(st_save(&w, path) == 0, "save: %s", ml_last_error());
    size_t n = 0;
    unsigned char *img = slurp(path, &n);
    CHECK(img && n >= 8, "read back");
    if (!img || n < 8) { st_free(&w); free(img); return; }
    uint64_t hlen = le64(img), total = 0;
    for (int i = 0; i < w.n; i++) total += w.tensors[i].nbytes;
    CHECK((8 + hlen) % 8 == 0, "data start %llu not 8-aligned", (unsigned long long)(8 + hlen));
    CHECK(8 + hlen + total == n, "file %zu bytes, header %llu + data %llu", n, (unsigned long long)hlen,
          (unsigned long long)total);
    CHECK(img[8] == '{', "header does not start with '{'");
    const char *end = NULL;
    cJSON *h = cJSON_ParseWithLengthOpts((const char *)img + 8, hlen, &end, 0);
    CHECK(h != NULL, "header is not JSON");
    for (const char *p = end; h && p < (const char *)img + 8 + hlen; p++) CHECK(*p == ' ', "padding is not spaces");
    const unsigned char *data = img + 8 + hlen;
    uint64_t expect_begin = 0;
    for (int i = 0; h && i < w.n; i++) {
        const StTensor *t = &w.tensors[i];
        cJSON *o = cJSON_GetObjectItemCaseSensitive(h, t->name);
        cJSON *offs = cJSON_GetObjectItemCaseSensitive(o, "data_offsets");
        CHECK(cJSON_GetArraySize(offs) == 2, "'%s' offsets", t->name);
        if (cJSON_GetArraySize(offs) != 2) continue;
        uint64_t b = (uint64_t)cJSON_GetArrayItem(offs, 0)->valuedouble, e = (uint64_t)cJSON_GetArrayItem(offs, 1)->valuedouble;
        CHECK(b == expect_begin && e - b == t->nbytes, "'%s' at [%llu,%llu], expected begin %llu", t->name,
              (unsigned long long)b, (unsigned long long)e, (unsigned long long)expect_begin);
        CHECK(t->nbytes == 0 || memcmp(data + b, t->data, t->nbytes) == 0, "'%s' bytes differ", t->name);
        CHECK(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(o, "shape")) == t->ndim, "'%s' shape rank", t->name);
        expect_begin = e;
    }
    cJSON *meta = cJSON_GetObjectItemCaseSensitive(h, "__metadata__");
    CHECK(cJSON_IsString(cJSON_GetObjectItemCaseSensitive(meta, "note")), "metadata missing");
    cJSON_Delete(h);
    free(img);
    st_free(&w);
}

static void test_truncated(void) {
    Sample s;
    sample_fill(&s);
    StFile w;
    st_init(&w);
    sample_add(&w, &s);
    const char *good = tmp_path("good.safetensors"), *bad = tmp_path("cut.safetensors");
    CHECK(st_save(&w, good) == 0, "save: %s", ml_last_error());
    st_free(&w);
    size_t n = 0;
    unsigned char *img = slurp(good, &n);
    if (!img) { CHECK(0, "read back"); return; }
    size_t hend = 8 + (size_t)le64(img);
    struct { size_t at; const char *want; } cuts[] = {
        {0, "truncated"}, {3, "truncated"}, {7, "truncated"},                /* inside the length */
        {8, "runs past the end"}, {8 + 10, "runs past the end"}, {hend - 1, "runs past the end"}, /* header */
        {hend + 1, "truncated: tensor"}, {(hend + n) / 2, "truncated: tensor"}, {n - 1, "truncated: tensor"},
    };
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        char label[64];
        snprintf(label, sizeof label, "cut at %zu of %zu", cuts[i].at, n);
        write_bytes(bad, img, cuts[i].at);
        expect_reject(bad, cuts[i].want, label);
    }
    /* the message says which tensor and where the data ends */
    write_bytes(bad, img, n - 1);
    StFile f;
    if (st_load(&f, bad) == 0) st_free(&f);
    CHECK(strstr(ml_last_error(), "ends at byte") && strstr(ml_last_error(), "past the data end"), "%s", ml_last_error());
    free(img);
    CHECK(st_load(&f, tmp_path("does-not-exist")) == -1 && strstr(ml_last_error(), "does-not-exist"), "missing file");
}

static void test_bad_headers(void) {
    const char *p = tmp_path("bad.safetensors");
    make_file(p, "{}", 0, 1000);
    expect_reject(p, "runs past the end", "length larger than the file");
    make_file(p, "{\"a\": {\"dtype\": \"F32\", ", 0, -1);
    expect_reject(p, "not valid JSON", "invalid JSON");
    make_file(p, "", 0, -1);
    expect_reject(p, "not valid JSON", "empty header");
    make_file(p, "[1, 2]", 0, -1);
    expect_reject(p, "not a JSON object", "array header");
    make_file(p, "{} x", 0, -1);
    expect_reject(p, "junk after", "junk after the header");
    make_file(p, "{\"a\":{\"dtype\":\"F33\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, -1);
    expect_reject(p, "unknown dtype 'F33'", "unknown dtype");
    make_file(p, "{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, -1);
    expect_reject(p, "no string 'dtype'", "missing dtype");
    make_file(p, "{\"a\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,20]}}", 20, -1);
    expect_reject(p, "needs 24 bytes", "shape/offset size mismatch");
    make_file(p, "{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4, -1);
    expect_reject(p, "not a non-negative integer", "negative dim");
    make_file(p, "{\"a\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}}", 4, -1);
    expect_reject(p, "not a non-negative integer", "fractional dim");
    make_file(p, "{\"a\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,1]}}", 1, -1);
    expect_reject(p, "9 dims", "too many dims");
    make_file(p, "{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},"
                 "\"b\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[2,6]}}", 6, -1);
    expect_reject(p, "overlap", "overlapping tensors");
    make_file(p, "{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},"
                 "\"b\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]}}", 4, -1);
    expect_reject(p, "overlap", "same range twice");
    make_file(p, "{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[4,8]}}", 6, -1);
    expect_reject(p, "past the data end 6", "offsets out of range");
    make_file(p, "{\"a\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[9,9]}}", 4, -1);
    expect_reject(p, "past the data end", "empty tensor out of range");
    make_file(p, "{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[8,4]}}", 8, -1);
    expect_reject(p, "before begin", "end before begin");
    make_file(p, "{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0]}}", 4, -1);
    expect_reject(p, "[begin, end]", "one offset");
    make_file(p, "{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[2,6]}}", 6, -1);
    expect_reject(p, "hole", "hole in the data");
    make_file(p, "{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]}}", 6, -1);
    expect_reject(p, "trailing", "trailing bytes");
    make_file(p, "{\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]},"
                 "\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[2,4]}}", 4, -1);
    expect_reject(p, "duplicate tensor name 'a'", "duplicate names");
    make_file(p, "{\"__metadata__\":{\"step\":5}}", 0, -1);
    expect_reject(p, "metadata value for 'step' is not a string", "non-string metadata");
    make_file(p, "{\"__metadata__\":[\"x\"]}", 0, -1);
    expect_reject(p, "not an object", "metadata array");
    make_file(p, "{\"a\":[1]}", 0, -1);
    expect_reject(p, "entry 'a' is not an object", "tensor entry not an object");
    /* the minimal valid files are still accepted: zero-size tensors and whitespace padding */
    make_file(p, "{\"z\":{\"dtype\":\"F64\",\"shape\":[0,5],\"data_offsets\":[0,0]}}   ", 0, -1);
    StFile f;
    CHECK(st_load(&f, p) == 0 && f.n == 1 && f.tensors[0].nbytes == 0, "zero-size tensor: %s", ml_last_error());
    st_free(&f);
}

static void test_read_checks(void) {
    float a[6] = {1, 2, 3, 4, 5, 6}, out[6];
    StFile w, r;
    st_init(&w);
    st_add(&w, "layers.0.attn.wqkv.weight", "F32", 2, (int64_t[]){2, 3}, a);
    const char *path = tmp_path("read.safetensors");
    CHECK(st_save(&w, path) == 0, "save: %s", ml_last_error());
    st_free(&w);
    if (st_load(&r, path) != 0) { CHECK(0, "load: %s", ml_last_error()); return; }
    const char *nm = "layers.0.attn.wqkv.weight";
    CHECK(st_read(&r, nm, "F64", 2, (int64_t[]){2, 3}, out) == -1, "wrong dtype accepted");
    CHECK(strstr(ml_last_error(), nm) && strstr(ml_last_error(), "F64"), "%s", ml_last_error());
    CHECK(st_read(&r, nm, "F32", 2, (int64_t[]){3, 2}, out) == -1, "wrong shape accepted");
    CHECK(strstr(ml_last_error(), "shape mismatch for 'layers.0.attn.wqkv.weight': checkpoint has [2, 3], model expects [3, 2]"),
          "%s", ml_last_error());
    CHECK(st_read(&r, nm, "F32", 1, (int64_t[]){6}, out) == -1, "wrong rank accepted");
    CHECK(strstr(ml_last_error(), "[2, 3]") && strstr(ml_last_error(), "[6]"), "%s", ml_last_error());
    CHECK(st_read(&r, "nope", "F32", 1, (int64_t[]){6}, out) == -1 && strstr(ml_last_error(), "'nope'"), "%s",
          ml_last_error());
    CHECK(st_read(&r, nm, "F32", 2, (int64_t[]){2, 3}, out) == 0 && memcmp(a, out, sizeof a) == 0, "good read");
    st_free(&r);
}

/* Saves that fail leave nothing behind and never damage an existing file. */
static void test_failed_save(void) {
    float big[16384];
    for (int i = 0; i < 16384; i++) big[i] = (float)i;
    StFile w;
    st_init(&w);
    st_add(&w, "big", "F32", 1, (int64_t[]){16384}, big);
    const char *nodir = tmp_path("no/such/dir/x.safetensors");
    CHECK(st_save(&w, nodir) == -1, "save into a missing folder succeeded");
    CHECK(strstr(ml_last_error(), nodir) != NULL, "message: %s", ml_last_error());
    CHECK(!ml_file_exists(nodir), "file left behind");

    const char *path = tmp_path("keep.safetensors");
    float old[2] = {7, 8};
    StFile o;
    st_init(&o);
    st_add(&o, "old", "F32", 1, (int64_t[]){2}, old);
    CHECK(st_save(&o, path) == 0, "save: %s", ml_last_error());
    st_free(&o);
    size_t n0 = 0, n1 = 0;
    unsigned char *before = slurp(path, &n0);

    /* An invalid entry is refused before anything is written. */
    StFile bad;
    st_init(&bad);
    st_add(&bad, "x", "F31", 1, (int64_t[]){2}, old);
    CHECK(st_save(&bad, path) == -1 && strstr(ml_last_error(), "'x'"), "bad dtype: %s", ml_last_error());
    st_free(&bad);
    st_init(&bad);
    st_add(&bad, "x", "F32", 1, (int64_t[]){2}, old);
    st_add(&bad, "x", "F32", 1, (int64_t[]){2}, old);
    CHECK(st_save(&bad, path) == -1 && strstr(ml_last_error(), "duplicate"), "duplicate: %s", ml_last_error());
    st_free(&bad);

    /* A write that fails half-way (file size limit, like a full disk) keeps the old file. */
    struct rlimit rl = tl_limit_file_size(4096);
    int rc = st_save(&w, path);
    tl_restore_file_size(rl);
    CHECK(rc == -1, "save past the file size limit succeeded");
    CHECK(rc == -1 && strstr(ml_last_error(), path), "message: %s", ml_last_error());
    unsigned char *after = slurp(path, &n1);
    CHECK(before && after && n0 == n1 && memcmp(before, after, n0) == 0, "existing file changed");
    StFile r;
    CHECK(st_load(&r, path) == 0 && st_find(&r, "old"), "old file no longer loads: %s", ml_last_error());
    st_free(&r);
    /* no temp files are left in the folder */
    char cmd[600];
    snprintf(cmd, sizeof cmd, "ls -a '%s' | grep -q tmp", tl_tmp_dir);
    CHECK(system(cmd) != 0, "temp file left in %s", tl_tmp_dir);
    free(before);
    free(after);
    st_free(&w);
}

static int sample_mode(const char *mode, const char *path) {
    Sample s;
    sample_fill(&s);
    StFile f;
    if (strcmp(mode, "--write-sample") == 0) {
        st_init(&f);
        sample_add(&f, &s);
        int rc = st_save(&f, path);
        st_free(&f);
        if (rc) fprintf(stderr, "%s\n", ml_last_error());
        return rc ? 1 : 0;
    }
    if (st_load(&f, path) != 0) {
        fprintf(stderr, "%s\n", ml_last_error());
        return 1;
    }
    char why[256] = "";
    int rc = sample_compare(&f, &s, why, sizeof why);
    if (rc) fprintf(stderr, "%s: %s\n", path, why);
    st_free(&f);
    return rc ? 1 : 0;
}

int main(int argc, char **argv) {
    if (argc == 3) return sample_mode(argv[1], argv[2]);
    if (tl_mktmp("st")) return 1;
    RUN(test_roundtrip);
    RUN(test_layout);
    RUN(test_truncated);
    RUN(test_bad_headers);
    RUN(test_read_checks);
    RUN(test_failed_save);
    tl_rm_rf(tl_tmp_dir);
    TEST_MAIN_END();
}
