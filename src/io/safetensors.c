/* safetensors reader and writer.
 *
 * Layout: u64 little-endian N, then N bytes of JSON header, then the data area.
 * Header: {"__metadata__": {str: str}, name: {"dtype", "shape", "data_offsets": [b, e]}}
 * with offsets relative to the data area. The writer packs tensors in add order with
 * no holes (the reference implementation rejects holes) and pads the header with
 * spaces so the data area starts 8-byte aligned. The reader trusts nothing: every
 * size, offset and type is checked before a pointer into the image is handed out. */
#include "io/safetensors.h"
#include "core/util.h"
#include <cjson/cJSON.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors.c copies tensor bytes as they are: it needs a little-endian host"
#endif

/* Header sizes beyond this are corrupt, not big models (the reference reader caps at 100 MB). */
#define ST_MAX_HEADER (100u << 20)
/* JSON numbers are doubles: integers above 2^53 cannot be represented exactly. */
#define ST_MAX_INT 9007199254740992.0

typedef struct { const char *name; size_t size; } DType;
static const DType DTYPES[] = {
    {"F64", 8}, {"F32", 4}, {"F16", 2}, {"BF16", 2}, {"F8_E4M3", 1}, {"F8_E5M2", 1},
    {"I64", 8}, {"I32", 4}, {"I16", 2}, {"I8", 1},
    {"U64", 8}, {"U32", 4}, {"U16", 2}, {"U8", 1}, {"BOOL", 1},
};

/* Bytes per element, 0 for an unknown dtype. */
static size_t dtype_size(const char *dtype) {
    for (size_t i = 0; i < sizeof DTYPES / sizeof DTYPES[0]; i++)
        if (strcmp(DTYPES[i].name, dtype) == 0) return DTYPES[i].size;
    return 0;
}

/* product(shape) * itemsize; -1 on overflow. */
static int tensor_bytes(int ndim, const int64_t *shape, size_t item, uint64_t *out) {
    uint64_t n = item;
    for (int d = 0; d < ndim; d++) {
        if (shape[d] < 0) return -1;
        if (__builtin_mul_overflow(n, (uint64_t)shape[d], &n)) return -1;
    }
    *out = n;
    return 0;
}

/* "[96, 32]" into buf, for error messages. */
static const char *shape_str(char *buf, size_t cap, int ndim, const int64_t *shape) {
    size_t n = (size_t)snprintf(buf, cap, "[");
    for (int d = 0; d < ndim && n < cap; d++)
        n += (size_t)snprintf(buf + n, cap - n, "%s%" PRId64, d ? ", " : "", shape[d]);
    if (n < cap) snprintf(buf + n, cap - n, "]");
    return buf;
}

void st_init(StFile *f) { memset(f, 0, sizeof *f); }

static StTensor *push_tensor(StFile *f) {
    if (f->n == f->cap) {
        f->cap = f->cap ? 2 * f->cap : 16;
        f->tensors = ml_realloc(f->tensors, (size_t)f->cap * sizeof *f->tensors);
    }
    StTensor *t = &f->tensors[f->n++];
    memset(t, 0, sizeof *t);
    return t;
}

/* Problems (unknown dtype, too many dims) are kept in the entry and reported by st_save,
 * since st_add has no way to return an error. */
void st_add(StFile *f, const char *name, const char *dtype, int ndim, const int64_t *shape, const void *data) {
    StTensor *t = push_tensor(f);
    t->name = ml_strdup(name);
    snprintf(t->dtype, sizeof t->dtype, "%s", dtype);
    if (strlen(dtype) >= sizeof t->dtype) t->dtype[0] = 0; /* truncated name: unknown */
    t->ndim = ndim;
    for (int d = 0; d < ndim && d < ST_MAX_DIMS; d++) t->shape[d] = shape[d];
    uint64_t nb = 0;
    size_t item = dtype_size(t->dtype);
    if (item && ndim >= 0 && ndim <= ST_MAX_DIMS && tensor_bytes(ndim, t->shape, item, &nb) == 0) t->nbytes = nb;
    t->data = data;
}

void st_add_meta(StFile *f, const char *key, const char *value) {
    for (int i = 0; i < f->n_meta; i++) {
        if (strcmp(f->meta_keys[i], key) == 0) { /* last value wins, as in a dict */
            free(f->meta_vals[i]);
            f->meta_vals[i] = ml_strdup(value);
            return;
        }
    }
    if (f->n_meta == f->meta_cap) {
        f->meta_cap = f->meta_cap ? 2 * f->meta_cap : 8;
        f->meta_keys = ml_realloc(f->meta_keys, (size_t)f->meta_cap * sizeof *f->meta_keys);
        f->meta_vals = ml_realloc(f->meta_vals, (size_t)f->meta_cap * sizeof *f->meta_vals);
    }
    f->meta_keys[f->n_meta] = ml_strdup(key);
    f->meta_vals[f->n_meta] = ml_strdup(value);
    f->n_meta++;
}

/* ---- writer ---- */

static int cmp_str_ptr(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Everything st_add could not report: bad dtype, rank, shape, missing data, duplicate names. */
static int check_entries(const StFile *f, const char *path) {
    for (int i = 0; i < f->n; i++) {
        const StTensor *t = &f->tensors[i];
        uint64_t nb;
        if (!dtype_size(t->dtype)) return ml_fail("%s: tensor '%s' has an unknown dtype", path, t->name);
        if (t->ndim < 0 || t->ndim > ST_MAX_DIMS)
            return ml_fail("%s: tensor '%s' has %d dims (at most %d)", path, t->name, t->ndim, ST_MAX_DIMS);
        if (tensor_bytes(t->ndim, t->shape, dtype_size(t->dtype), &nb) != 0)
            return ml_fail("%s: tensor '%s' has a negative or overflowing shape", path, t->name);
        if (nb > 0 && !t->data) return ml_fail("%s: tensor '%s' has no data", path, t->name);
        if (strcmp(t->name, "__metadata__") == 0) return ml_fail("%s: '__metadata__' is not a tensor name", path);
    }
    if (f->n < 2) return 0;
    const char **names = ml_malloc((size_t)f->n * sizeof *names);
    for (int i = 0; i < f->n; i++) names[i] = f->tensors[i].name;
    qsort(names, (size_t)f->n, sizeof *names, cmp_str_ptr);
    int rc = 0;
    for (int i = 1; i < f->n && rc == 0; i++)
        if (strcmp(names[i - 1], names[i]) == 0) rc = ml_fail("%s: duplicate tensor name '%s'", path, names[i]);
    free(names);
    return rc;
}

static cJSON *raw_int(uint64_t v) {
    char buf[32];
    snprintf(buf, sizeof buf, "%" PRIu64, v);
    return cJSON_CreateRaw(buf);
}

/* The JSON header text, unpadded (caller frees). */
static char *build_header(const StFile *f) {
    cJSON *root = cJSON_CreateObject();
    if (f->n_meta > 0) {
        cJSON *meta = cJSON_AddObjectToObject(root, "__metadata__");
        for (int i = 0; i < f->n_meta; i++) cJSON_AddStringToObject(meta, f->meta_keys[i], f->meta_vals[i]);
    }
    uint64_t off = 0;
    for (int i = 0; i < f->n; i++) {
        const StTensor *t = &f->tensors[i];
        cJSON *o = cJSON_AddObjectToObject(root, t->name);
        cJSON_AddStringToObject(o, "dtype", t->dtype);
        cJSON *shape = cJSON_AddArrayToObject(o, "shape");
        for (int d = 0; d < t->ndim; d++) cJSON_AddItemToArray(shape, raw_int((uint64_t)t->shape[d]));
        cJSON *offs = cJSON_AddArrayToObject(o, "data_offsets");
        cJSON_AddItemToArray(offs, raw_int(off));
        cJSON_AddItemToArray(offs, raw_int(off + t->nbytes));
        off += t->nbytes;
    }
    char *s = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    if (!s) {
        fprintf(stderr, "moelab: out of memory printing a safetensors header\n");
        exit(2);
    }
    return s;
}

typedef struct {
    const StFile *f;
    const char *header; /* already padded */
    size_t header_len;
} SaveCtx;

static int write_all(FILE *fp, const void *p, size_t n) {
    return n == 0 || fwrite(p, 1, n, fp) == n ? 0 : -1;
}

static int save_fn(FILE *fp, void *ctx) {
    const SaveCtx *c = ctx;
    unsigned char len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)((uint64_t)c->header_len >> (8 * i));
    int rc = write_all(fp, len8, 8) | write_all(fp, c->header, c->header_len);
    for (int i = 0; i < c->f->n && rc == 0; i++) rc = write_all(fp, c->f->tensors[i].data, c->f->tensors[i].nbytes);
    return rc ? ml_fail("short write (disk full?)") : 0;
}

int st_save(const StFile *f, const char *path) {
    if (check_entries(f, path)) return -1;
    char *json = build_header(f);
    size_t n = strlen(json), padded = (n + 8 + 7) / 8 * 8 - 8; /* 8 + header is a multiple of 8 */
    char *header = ml_malloc(padded);
    memcpy(header, json, n);
    memset(header + n, ' ', padded - n);
    free(json);
    SaveCtx c = {f, header, padded};
    int rc = ml_write_atomic_with(path, save_fn, &c);
    free(header);
    if (rc) {
        char why[1024]; /* ml_fail must not read the buffer it writes */
        snprintf(why, sizeof why, "%s", ml_last_error());
        return ml_fail("%s: cannot save: %s", path, why);
    }
    return 0;
}

/* ---- reader ---- */

/* A JSON number that is an integer in [0, 2^53]. */
static int get_uint(const cJSON *it, uint64_t *out) {
    if (!cJSON_IsNumber(it)) return -1;
    double v = it->valuedouble;
    if (!isfinite(v) || v < 0 || v > ST_MAX_INT || v != floor(v)) return -1;
    *out = (uint64_t)v;
    return 0;
}

static int parse_meta(StFile *f, const cJSON *meta, const char *path) {
    if (!cJSON_IsObject(meta)) return ml_fail("%s: '__metadata__' is not an object", path);
    for (const cJSON *it = meta->child; it; it = it->next) {
        if (!cJSON_IsString(it)) return ml_fail("%s: metadata value for '%s' is not a string", path, it->string);
        if (st_meta(f, it->string)) return ml_fail("%s: duplicate metadata key '%s'", path, it->string);
        st_add_meta(f, it->string, it->valuestring);
    }
    return 0;
}

/* One tensor entry: type, shape, offsets against the data area of data_len bytes. */
static int parse_tensor(StFile *f, const cJSON *o, const unsigned char *data, uint64_t data_len, const char *path) {
    const char *name = o->string;
    if (!cJSON_IsObject(o)) return ml_fail("%s: entry '%s' is not an object", path, name);
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(o, "dtype");
    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(o, "shape");
    const cJSON *of = cJSON_GetObjectItemCaseSensitive(o, "data_offsets");
    if (!cJSON_IsString(dt)) return ml_fail("%s: tensor '%s' has no string 'dtype'", path, name);
    size_t item = dtype_size(dt->valuestring);
    if (!item) return ml_fail("%s: tensor '%s' has unknown dtype '%s'", path, name, dt->valuestring);
    if (!cJSON_IsArray(sh)) return ml_fail("%s: tensor '%s' has no 'shape' array", path, name);
    int ndim = cJSON_GetArraySize(sh);
    if (ndim > ST_MAX_DIMS) return ml_fail("%s: tensor '%s' has %d dims (at most %d)", path, name, ndim, ST_MAX_DIMS);
    int64_t shape[ST_MAX_DIMS] = {0};
    int d = 0;
    for (const cJSON *it = sh->child; it; it = it->next, d++) {
        uint64_t v;
        if (get_uint(it, &v)) return ml_fail("%s: tensor '%s': shape entry %d is not a non-negative integer", path, name, d);
        shape[d] = (int64_t)v;
    }
    uint64_t b, e, nb;
    if (!cJSON_IsArray(of) || cJSON_GetArraySize(of) != 2 || get_uint(of->child, &b) || get_uint(of->child->next, &e))
        return ml_fail("%s: tensor '%s': 'data_offsets' must be [begin, end] non-negative integers", path, name);
    if (e < b) return ml_fail("%s: tensor '%s': data_offsets end %" PRIu64 " is before begin %" PRIu64, path, name, e, b);
    char sbuf[160];
    if (tensor_bytes(ndim, shape, item, &nb) != 0)
        return ml_fail("%s: tensor '%s': shape %s overflows", path, name, shape_str(sbuf, sizeof sbuf, ndim, shape));
    if (nb != e - b)
        return ml_fail("%s: tensor '%s': shape %s of %s needs %" PRIu64 " bytes but data_offsets [%" PRIu64 ", %" PRIu64
                       "] hold %" PRIu64, path, name, shape_str(sbuf, sizeof sbuf, ndim, shape), dt->valuestring,
                       nb, b, e, e - b);
    if (e > data_len)
        return ml_fail("%s: truncated: tensor '%s' ends at byte %" PRIu64 " past the data end %" PRIu64, path, name, e,
                       data_len);
    StTensor *t = push_tensor(f);
    t->name = ml_strdup(name);
    snprintf(t->dtype, sizeof t->dtype, "%s", dt->valuestring);
    t->ndim = ndim;
    memcpy(t->shape, shape, sizeof shape);
    t->nbytes = (size_t)nb;
    t->data = data + b;
    return 0;
}

static int cmp_by_offset(const void *pa, const void *pb) {
    const StTensor *a = *(const StTensor *const *)pa, *b = *(const StTensor *const *)pb;
    const unsigned char *da = a->data, *db = b->data;
    if (da != db) return da < db ? -1 : 1;
    return a->nbytes < b->nbytes ? -1 : a->nbytes > b->nbytes;
}

/* Tensors sorted by offset must tile the data area: no overlap, no hole, nothing after. */
static int check_layout(const StFile *f, const unsigned char *data, uint64_t data_len, const char *path) {
    const StTensor **s = ml_malloc((size_t)(f->n ? f->n : 1) * sizeof *s);
    for (int i = 0; i < f->n; i++) s[i] = &f->tensors[i];
    qsort(s, (size_t)f->n, sizeof *s, cmp_by_offset);
    int rc = 0;
    uint64_t pos = 0;
    const char *prev = NULL;
    for (int i = 0; i < f->n && rc == 0; i++) {
        uint64_t b = (uint64_t)((const unsigned char *)s[i]->data - data), e = b + s[i]->nbytes;
        if (b < pos && e > b)
            rc = ml_fail("%s: tensors '%s' and '%s' overlap (byte %" PRIu64 " < %" PRIu64 ")", path, prev, s[i]->name, b, pos);
        else if (b > pos)
            rc = ml_fail("%s: data bytes %" PRIu64 "..%" PRIu64 " belong to no tensor (hole before '%s')", path, pos, b,
                         s[i]->name);
        if (e > pos) {
            pos = e;
            prev = s[i]->name;
        }
        if (!prev) prev = s[i]->name;
    }
    if (rc == 0 && pos != data_len)
        rc = ml_fail("%s: %" PRIu64 " trailing data bytes after the last tensor", path, data_len - pos);
    free(s);
    return rc;
}

static int cmp_tensor_name(const void *a, const void *b) {
    return strcmp((*(const StTensor *const *)a)->name, (*(const StTensor *const *)b)->name);
}

static int check_unique(const StFile *f, const char *path) {
    if (f->n < 2) return 0;
    const StTensor **s = ml_malloc((size_t)f->n * sizeof *s);
    for (int i = 0; i < f->n; i++) s[i] = &f->tensors[i];
    qsort(s, (size_t)f->n, sizeof *s, cmp_tensor_name);
    int rc = 0;
    for (int i = 1; i < f->n && rc == 0; i++)
        if (strcmp(s[i - 1]->name, s[i]->name) == 0) rc = ml_fail("%s: duplicate tensor name '%s'", path, s[i]->name);
    free(s);
    return rc;
}

/* Parses and checks the header of the image already in f. */
static int parse_image(StFile *f, const char *path) {
    const unsigned char *img = f->image;
    size_t len = f->image_len;
    if (len < 8) return ml_fail("%s: truncated: %zu bytes, shorter than the 8-byte header length", path, len);
    uint64_t hlen = 0;
    for (int i = 0; i < 8; i++) hlen |= (uint64_t)img[i] << (8 * i);
    if (hlen > len - 8)
        return ml_fail("%s: truncated or corrupt: header length %" PRIu64 " runs past the end of the file (%zu bytes)",
                       path, hlen, len);
    if (hlen > ST_MAX_HEADER) return ml_fail("%s: header length %" PRIu64 " is implausibly large", path, hlen);
    const char *h = (const char *)img + 8, *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(h, (size_t)hlen, &end, 0);
    if (!root) {
        size_t at = end ? (size_t)(end - h) : 0;
        return ml_fail("%s: header is not valid JSON (near byte %zu of %" PRIu64 ")", path, at, hlen);
    }
    int rc = 0;
    for (const char *p = end; p < h + hlen && rc == 0; p++) /* only padding may follow the object */
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') rc = ml_fail("%s: junk after the header JSON", path);
    if (rc == 0 && !cJSON_IsObject(root)) rc = ml_fail("%s: header is not a JSON object", path);
    const unsigned char *data = img + 8 + hlen;
    uint64_t data_len = len - 8 - hlen;
    for (const cJSON *it = rc ? NULL : root->child; it && rc == 0; it = it->next) {
        if (strcmp(it->string, "__metadata__") == 0) rc = parse_meta(f, it, path);
        else rc = parse_tensor(f, it, data, data_len, path);
    }
    cJSON_Delete(root);
    if (rc == 0) rc = check_unique(f, path);
    if (rc == 0) rc = check_layout(f, data, data_len, path);
    return rc;
}

int st_load(StFile *f, const char *path) {
    st_init(f);
    size_t len = 0;
    char *img = ml_read_file(path, &len);
    if (!img) return -1;
    f->image = img;
    f->image_len = len;
    if (parse_image(f, path) != 0) {
        st_free(f);
        return -1;
    }
    return 0;
}

const StTensor *st_find(const StFile *f, const char *name) {
    for (int i = 0; i < f->n; i++)
        if (strcmp(f->tensors[i].name, name) == 0) return &f->tensors[i];
    return NULL;
}

const char *st_meta(const StFile *f, const char *key) {
    for (int i = 0; i < f->n_meta; i++)
        if (strcmp(f->meta_keys[i], key) == 0) return f->meta_vals[i];
    return NULL;
}

int st_read(const StFile *f, const char *name, const char *dtype, int ndim, const int64_t *shape, void *dst) {
    const StTensor *t = st_find(f, name);
    if (!t) return ml_fail("missing tensor '%s'", name);
    if (strcmp(t->dtype, dtype) != 0)
        return ml_fail("dtype mismatch for '%s': checkpoint has %s, model expects %s", name, t->dtype, dtype);
    int same = t->ndim == ndim;
    for (int d = 0; same && d < ndim; d++) same = t->shape[d] == shape[d];
    if (!same) {
        char a[160], b[160];
        return ml_fail("shape mismatch for '%s': checkpoint has %s, model expects %s", name,
                       shape_str(a, sizeof a, t->ndim, t->shape), shape_str(b, sizeof b, ndim, shape));
    }
    if (t->nbytes) memcpy(dst, t->data, t->nbytes);
    return 0;
}

void st_free(StFile *f) {
    for (int i = 0; i < f->n; i++) free(f->tensors[i].name);
    for (int i = 0; i < f->n_meta; i++) {
        free(f->meta_keys[i]);
        free(f->meta_vals[i]);
    }
    free(f->tensors);
    free(f->meta_keys);
    free(f->meta_vals);
    free(f->image);
    memset(f, 0, sizeof *f);
}
