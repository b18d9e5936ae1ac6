/* Corpus manifests (see manifest.h): parsing and validation, listing each domain's files
 * (paths, folders, globs, Debian package lists), reading possibly gzip'd files, and
 * cutting text into documents. */
#include "data/manifest.h"
#include "core/spawn.h"
#include "core/util.h"
#include "data/glob_bounded.h"
#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fnmatch.h>
#include <glob.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

/* ---------------------------------------------------------------- small helpers */

void strlist_add(StrList *l, const char *s) {
    if ((l->n & (l->n - 1)) == 0) /* grow at powers of two */
        l->items = ml_realloc(l->items, (size_t)(l->n ? 2 * l->n : 1) * sizeof *l->items);
    l->items[l->n++] = ml_strdup(s);
}

void strlist_free(StrList *l) {
    for (int i = 0; i < l->n; i++) free(l->items[i]);
    free(l->items);
    l->items = NULL;
    l->n = 0;
}

static char *join_path(const char *dir, const char *name) {
    size_t dl = strlen(dir), n = dl + strlen(name) + 2;
    char *p = ml_malloc(n);
    snprintf(p, n, (dl && dir[dl - 1] == '/') ? "%s%s" : "%s/%s", dir, name);
    return p;
}

static const char *const SPLIT_NAMES[] = {"file", "fortunes", "entries", "paragraphs"};

const char *doc_split_name(DocSplit s) { return SPLIT_NAMES[s]; }

/* ---------------------------------------------------------------- parsing */

static int name_ok(const char *s) {
    size_t n = strlen(s);
    if (n == 0 || n > MANIFEST_NAME_MAX) return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-' ||
              c == '.'))
            return 0;
    }
    return 1;
}

/* Debian package names (policy 5.6.1), optionally with ":arch". Checked strictly
 * because the name goes on a dpkg-query command line. */
static int package_ok(const char *s) {
    if (!((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= '0' && s[0] <= '9')) || strlen(s) > 100) return 0;
    int colon = 0;
    for (const char *p = s; *p; p++) {
        char c = *p;
        if (c == ':' && !colon) colon = 1;
        else if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || (!colon && (c == '+' || c == '.'))))
            return 0;
    }
    return s[strlen(s) - 1] != ':';
}

static int get_count(const cJSON *v, const char *origin, const char *where, const char *key, int64_t *out) {
    if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > 9007199254740992.0 ||
        v->valuedouble != (double)(int64_t)v->valuedouble)
        return ml_fail("%s: %s: \"%s\" must be a non-negative integer", origin, where, key);
    *out = (int64_t)v->valuedouble;
    return 0;
}

static int get_strings(const cJSON *v, const char *origin, const char *where, const char *key, StrList *out,
                       const char *base_dir) {
    if (!cJSON_IsArray(v)) return ml_fail("%s: %s: \"%s\" must be an array of strings", origin, where, key);
    const cJSON *e;
    cJSON_ArrayForEach(e, v) {
        if (!cJSON_IsString(e) || !e->valuestring[0])
            return ml_fail("%s: %s: \"%s\" must hold non-empty strings", origin, where, key);
        if (base_dir && e->valuestring[0] != '/') {
            char *p = join_path(base_dir, e->valuestring);
            strlist_add(out, p);
            free(p);
        } else {
            strlist_add(out, e->valuestring);
        }
    }
    return 0;
}

static int parse_split(const cJSON *v, const char *origin, const char *where, DocSplit *out) {
    if (cJSON_IsString(v))
        for (int s = 0; s < 4; s++)
            if (strcmp(v->valuestring, SPLIT_NAMES[s]) == 0) {
                *out = (DocSplit)s;
                return 0;
            }
    return ml_fail("%s: %s: \"split\" must be one of \"file\", \"fortunes\", \"entries\", \"paragraphs\"", origin, where);
}

static int parse_domain(const cJSON *o, const char *origin, const char *base_dir, ManifestDomain *d) {
    char where[96];
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(o, "name");
    if (!cJSON_IsString(name) || !name_ok(name->valuestring) || !strcmp(name->valuestring, "infer"))
        return ml_fail("%s: every domain needs a \"name\" of 1-%d letters, digits, '-', '_' or '.' (not \"infer\")",
                       origin, MANIFEST_NAME_MAX);
    strcpy(d->name, name->valuestring);
    snprintf(where, sizeof where, "domain '%s'", d->name);
    d->split = DOC_PARAGRAPHS;
    d->min_doc_bytes = -1;
    d->cap_bytes = -1;
    const cJSON *e;
    cJSON_ArrayForEach(e, o) {
        const char *k = e->string;
        int rc = 0;
        if (!strcmp(k, "name") || !strcmp(k, "description")) continue;
        if (!strcmp(k, "split")) rc = parse_split(e, origin, where, &d->split);
        else if (!strcmp(k, "min_doc_bytes")) rc = get_count(e, origin, where, k, &d->min_doc_bytes);
        else if (!strcmp(k, "cap_bytes")) rc = get_count(e, origin, where, k, &d->cap_bytes);
        else if (!strcmp(k, "files")) rc = get_strings(e, origin, where, k, &d->files, base_dir);
        else if (!strcmp(k, "packages")) rc = get_strings(e, origin, where, k, &d->packages, NULL);
        else if (!strcmp(k, "include")) rc = get_strings(e, origin, where, k, &d->include, NULL);
        else if (!strcmp(k, "exclude")) rc = get_strings(e, origin, where, k, &d->exclude, NULL);
        else rc = ml_fail("%s: %s: unknown key \"%s\"", origin, where, k);
        if (rc) return -1;
    }
    for (int i = 0; i < d->packages.n; i++)
        if (!package_ok(d->packages.items[i]))
            return ml_fail("%s: %s: '%s' is not a Debian package name", origin, where, d->packages.items[i]);
    if (d->files.n == 0 && d->packages.n == 0)
        return ml_fail("%s: %s has no \"files\" and no \"packages\": nothing to read", origin, where);
    if (d->include.n && !d->packages.n)
        return ml_fail("%s: %s: \"include\" filters \"packages\", and there are none", origin, where);
    if (d->min_doc_bytes >= 0 && (d->split == DOC_FILE || d->split == DOC_FORTUNES))
        return ml_fail("%s: %s: \"min_doc_bytes\" applies to split \"entries\" or \"paragraphs\" only", origin, where);
    if (d->min_doc_bytes < 0) d->min_doc_bytes = d->split == DOC_PARAGRAPHS ? MANIFEST_DEFAULT_MIN_DOC : 0;
    return 0;
}

static int parse_root(Manifest *m, const cJSON *root, const char *base_dir, const char *origin) {
    if (!cJSON_IsObject(root)) return ml_fail("%s: not a JSON object", origin);
    const cJSON *doms = NULL, *e;
    cJSON_ArrayForEach(e, root) {
        const char *k = e->string;
        if (!strcmp(k, "description")) continue;
        if (!strcmp(k, "name")) {
            if (!cJSON_IsString(e) || !name_ok(e->valuestring))
                return ml_fail("%s: \"name\" must be 1-%d letters, digits, '-', '_' or '.'", origin, MANIFEST_NAME_MAX);
            free(m->name);
            m->name = ml_strdup(e->valuestring);
        } else if (!strcmp(k, "cap_bytes_per_domain")) {
            if (get_count(e, origin, "manifest", k, &m->cap_bytes)) return -1;
        } else if (!strcmp(k, "domains")) {
            doms = e;
        } else {
            return ml_fail("%s: unknown key \"%s\" (known: name, description, cap_bytes_per_domain, domains)", origin, k);
        }
    }
    if (!cJSON_IsArray(doms) || cJSON_GetArraySize(doms) == 0)
        return ml_fail("%s: \"domains\" must be a non-empty array", origin);
    int n = cJSON_GetArraySize(doms);
    if (n > MANIFEST_MAX_DOMAINS) return ml_fail("%s: %d domains, at most %d are supported", origin, n, MANIFEST_MAX_DOMAINS);
    m->domains = ml_calloc((size_t)n, sizeof *m->domains);
    cJSON_ArrayForEach(e, doms) {
        if (!cJSON_IsObject(e)) return ml_fail("%s: domain %d is not an object", origin, m->n_domains);
        ManifestDomain *d = &m->domains[m->n_domains++];
        if (parse_domain(e, origin, base_dir, d)) return -1;
        for (int j = 0; j + 1 < m->n_domains; j++)
            if (!strcmp(m->domains[j].name, d->name)) return ml_fail("%s: domain '%s' is listed twice", origin, d->name);
    }
    return 0;
}

static int parse_text(Manifest *m, const char *json, const char *base_dir, const char *origin) {
    memset(m, 0, sizeof *m);
    m->path = ml_strdup(origin);
    cJSON *root = cJSON_Parse(json);
    int rc = root ? parse_root(m, root, base_dir, origin) : ml_fail("%s: not valid JSON", origin);
    cJSON_Delete(root);
    if (rc) manifest_free(m);
    return rc;
}

int manifest_parse(Manifest *m, const char *json, const char *base_dir, const char *origin) {
    if (parse_text(m, json, base_dir, origin)) return -1;
    if (!m->name) m->name = ml_strdup("corpus");
    return 0;
}

int manifest_load(Manifest *m, const char *path) {
    memset(m, 0, sizeof *m);
    char *text = ml_read_file_max(path, NULL, ML_READ_MAX_TEXT);
    if (!text) {
        char why[512];
        snprintf(why, sizeof why, "%s", ml_last_error());
        return ml_fail("cannot read the manifest: %s", why);
    }
    char *dir = ml_strdup(path), *slash = strrchr(dir, '/');
    if (slash) slash[1] = 0;
    else strcpy(dir, ".");
    int rc = parse_text(m, text, dir, path);
    free(text);
    free(dir);
    if (rc == 0 && !m->name) { /* no "name": the file's stem */
        const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
        m->name = ml_strdup(base);
        char *dot = strrchr(m->name, '.');
        if (dot && dot != m->name) *dot = 0;
    }
    return rc;
}

void manifest_from_inputs(Manifest *m, const char *domain, const char *const *inputs, int n_inputs, DocSplit split,
                          int64_t min_doc_bytes) {
    memset(m, 0, sizeof *m);
    m->name = ml_strdup("inputs");
    m->path = ml_strdup("");
    m->domains = ml_calloc(1, sizeof *m->domains);
    m->n_domains = 1;
    ManifestDomain *d = &m->domains[0];
    snprintf(d->name, sizeof d->name, "%s", domain);
    d->split = split;
    d->min_doc_bytes = min_doc_bytes;
    d->cap_bytes = 0;
    for (int i = 0; i < n_inputs; i++) strlist_add(&d->files, inputs[i]);
}

void manifest_free(Manifest *m) {
    for (int i = 0; i < m->n_domains; i++) {
        ManifestDomain *d = &m->domains[i];
        strlist_free(&d->files);
        strlist_free(&d->packages);
        strlist_free(&d->include);
        strlist_free(&d->exclude);
    }
    free(m->domains);
    free(m->name);
    free(m->path);
    memset(m, 0, sizeof *m);
}

int64_t manifest_cap(const Manifest *m, int d) {
    int64_t c = m->domains[d].cap_bytes;
    return c >= 0 ? c : m->cap_bytes;
}

/* ---------------------------------------------------------------- listing files */

typedef struct {
    DomainFiles *out;
    const ManifestDomain *dom;
    int has_skip;
    dev_t skip_dev;
    ino_t skip_ino;
} Lister;

static int glob_match(const char *pat, const char *path) {
    const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    return fnmatch(pat, strchr(pat, '/') ? path : base, 0) == 0;
}

static int excluded(const ManifestDomain *d, const char *path) {
    for (int i = 0; i < d->exclude.n; i++)
        if (glob_match(d->exclude.items[i], path)) return 1;
    return 0;
}

static void add_file(Lister *ls, const char *path) {
    if (!excluded(ls->dom, path)) strlist_add(&ls->out->paths, path);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Sorted name order, so the corpus does not depend on the file system. Hidden entries
 * and symlinks (which also rules out cycles) are skipped. */
static int walk_dir(Lister *ls, const char *dir) {
    DIR *dh = opendir(dir);
    if (!dh) return ml_fail("cannot open folder '%s': %s", dir, strerror(errno));
    StrList names = {0};
    struct dirent *e;
    errno = 0;
    while ((e = readdir(dh)) != NULL)
        if (e->d_name[0] != '.') strlist_add(&names, e->d_name);
    int rc = errno ? ml_fail("cannot list folder '%s': %s", dir, strerror(errno)) : 0;
    closedir(dh);
    if (names.n) qsort(names.items, (size_t)names.n, sizeof *names.items, cmp_str);
    for (int i = 0; i < names.n && rc == 0; i++) {
        char *p = join_path(dir, names.items[i]);
        struct stat st;
        if (lstat(p, &st) != 0) rc = ml_fail("cannot stat '%s': %s", p, strerror(errno));
        else if (S_ISDIR(st.st_mode) && !(ls->has_skip && st.st_dev == ls->skip_dev && st.st_ino == ls->skip_ino))
            rc = walk_dir(ls, p);
        else if (S_ISREG(st.st_mode)) add_file(ls, p);
        free(p);
    }
    strlist_free(&names);
    return rc;
}

/* An explicit path must exist: a typo should fail loudly, not shrink the corpus. */
static int add_path(Lister *ls, const char *path, int from_glob) {
    struct stat st;
    if (stat(path, &st) != 0)
        return ml_fail("domain '%s': cannot read '%s': %s", ls->dom->name, path, strerror(errno));
    if (S_ISDIR(st.st_mode)) {
        if (ls->has_skip && st.st_dev == ls->skip_dev && st.st_ino == ls->skip_ino) {
            if (from_glob) return 0;
            return ml_fail("input folder '%s' is the output folder", path);
        }
        return walk_dir(ls, path);
    }
    if (!S_ISREG(st.st_mode)) return ml_fail("domain '%s': '%s' is not a regular file or folder", ls->dom->name, path);
    add_file(ls, path);
    return 0;
}

static int add_files_entry(Lister *ls, const char *entry) {
    if (!strpbrk(entry, "*?[")) return add_path(ls, entry, 0);
    glob_t g;
    int over = 0, grc = glob_bounded(entry, &g, &over);
    int rc = 0;
    if (over)
        return ml_fail("domain '%s': '%s' would read more than %ld folder entries: name the folders, or use fewer "
                       "wildcards", ls->dom->name, entry, GLOB_BOUNDED_ENTRIES);
    if (grc == GLOB_NOMATCH) rc = ml_fail("domain '%s': '%s' matches no file", ls->dom->name, entry);
    else if (grc != 0) rc = ml_fail("domain '%s': cannot expand '%s'", ls->dom->name, entry);
    for (size_t i = 0; rc == 0 && i < g.gl_pathc; i++) rc = add_path(ls, g.gl_pathv[i], 1);
    if (grc == 0 || grc == GLOB_NOMATCH) globfree(&g);
    return rc;
}

/* Runs dpkg-query with these arguments (a vector: a package name is never parsed by a
 * shell); returns its output (NUL-terminated) and exit status. */
static char *run_query(const char *opt1, const char *opt2, const char *pkg, int *status) {
    char *argv[] = {"dpkg-query", (char *)opt1, (char *)opt2, "--", (char *)pkg, NULL};
    if (!opt2) argv[2] = "--", argv[3] = (char *)pkg, argv[4] = NULL;
    return ml_spawn_capture(argv, 1, (size_t)1 << 30, status, NULL);
}

/* Checks the package is installed and records its version; files come from `dpkg-query -L`
 * (what `dpkg -L` prints), keeping regular files that match an include glob. */
static int add_package(Lister *ls, const char *pkg) {
    const ManifestDomain *d = ls->dom;
    int st;
    char *info = run_query("-W", "-f=${db:Status-Abbrev}|${Version}", pkg, &st);
    int installed = info && st == 0 && strncmp(info, "ii", 2) == 0 && strchr(info, '|');
    if (!installed) {
        free(info);
        if (st == 127 || st == -1)
            return ml_fail("domain '%s': package lists need dpkg-query (a Debian system); cannot look up '%s'", d->name, pkg);
        return ml_fail("domain '%s': Debian package '%s' is not installed (install it with: apt-get install %s; "
                       "for corpus/debian-mix.json: sudo scripts/corpus.sh)",
                       d->name, pkg, pkg);
    }
    DomainFiles *out = ls->out;
    out->pkgs = ml_realloc(out->pkgs, (size_t)(out->n_pkgs + 1) * sizeof *out->pkgs);
    out->pkgs[out->n_pkgs].name = ml_strdup(pkg);
    out->pkgs[out->n_pkgs++].version = ml_strdup(strchr(info, '|') + 1);
    free(info);

    char *list = run_query("-L", NULL, pkg, &st);
    if (!list || st != 0) {
        free(list);
        return ml_fail("domain '%s': 'dpkg-query -L %s' failed", d->name, pkg);
    }
    StrList found = {0};
    for (char *line = strtok(list, "\n"); line; line = strtok(NULL, "\n")) {
        struct stat sb;
        if (line[0] != '/') continue; /* "diverted by ..." notes */
        int inc = d->include.n == 0;
        for (int i = 0; i < d->include.n && !inc; i++) inc = glob_match(d->include.items[i], line);
        if (inc && lstat(line, &sb) == 0 && S_ISREG(sb.st_mode)) strlist_add(&found, line);
    }
    free(list);
    if (found.n == 0) {
        strlist_free(&found);
        return ml_fail("domain '%s': package '%s' has no regular file matching \"include\"", d->name, pkg);
    }
    qsort(found.items, (size_t)found.n, sizeof *found.items, cmp_str);
    for (int i = 0; i < found.n; i++) add_file(ls, found.items[i]);
    strlist_free(&found);
    return 0;
}

typedef struct {
    dev_t dev;
    ino_t ino;
    int idx;
} FileKey;

static int cmp_key(const void *a, const void *b) {
    const FileKey *x = a, *y = b;
    if (x->dev != y->dev) return x->dev < y->dev ? -1 : 1;
    if (x->ino != y->ino) return x->ino < y->ino ? -1 : 1;
    return x->idx - y->idx;
}

/* A file reached twice (a folder and a glob, two packages) is read once, at its first place. */
static void drop_duplicates(StrList *l) {
    FileKey *k = ml_malloc((size_t)(l->n ? l->n : 1) * sizeof *k);
    char *dup = ml_calloc((size_t)(l->n ? l->n : 1), 1);
    for (int i = 0; i < l->n; i++) {
        struct stat st;
        k[i].dev = 0;
        k[i].ino = 0;
        if (stat(l->items[i], &st) == 0) k[i].dev = st.st_dev, k[i].ino = st.st_ino;
        k[i].idx = i;
    }
    qsort(k, (size_t)l->n, sizeof *k, cmp_key);
    for (int i = 1; i < l->n; i++)
        if (k[i].dev == k[i - 1].dev && k[i].ino == k[i - 1].ino && k[i].ino != 0) dup[k[i].idx] = 1;
    int w = 0;
    for (int i = 0; i < l->n; i++) {
        if (dup[i]) free(l->items[i]);
        else l->items[w++] = l->items[i];
    }
    l->n = w;
    free(k);
    free(dup);
}

int manifest_domain_files(const Manifest *m, int di, const char *skip_dir, DomainFiles *out) {
    memset(out, 0, sizeof *out);
    Lister ls = {out, &m->domains[di], 0, 0, 0};
    struct stat st;
    if (skip_dir && stat(skip_dir, &st) == 0 && S_ISDIR(st.st_mode)) {
        ls.has_skip = 1;
        ls.skip_dev = st.st_dev;
        ls.skip_ino = st.st_ino;
    }
    const ManifestDomain *d = ls.dom;
    int rc = 0;
    for (int i = 0; rc == 0 && i < d->files.n; i++) rc = add_files_entry(&ls, d->files.items[i]);
    for (int i = 0; rc == 0 && i < d->packages.n; i++) rc = add_package(&ls, d->packages.items[i]);
    if (rc == 0) drop_duplicates(&out->paths);
    if (rc == 0 && out->paths.n == 0) rc = ml_fail("domain '%s': no files found (all excluded or empty folders)", d->name);
    if (rc) domain_files_free(out);
    return rc;
}

void domain_files_free(DomainFiles *f) {
    strlist_free(&f->paths);
    for (int i = 0; i < f->n_pkgs; i++) {
        free(f->pkgs[i].name);
        free(f->pkgs[i].version);
    }
    free(f->pkgs);
    memset(f, 0, sizeof *f);
}

/* ---------------------------------------------------------------- reading */

#define MAX_FILE_BYTES ((size_t)1 << 31) /* a bound on decompressed size: a gzip bomb fails cleanly */

char *corpus_read_file(const char *path, size_t *len) {
    int fd = ml_open_regular(path, NULL);
    if (fd < 0) return NULL;
    gzFile f = gzdopen(fd, "rb"); /* reads plain files unchanged */
    if (!f) {
        close(fd);
        return ml_fail("cannot open '%s': %s", path, strerror(errno)), NULL;
    }
    gzbuffer(f, 1 << 17);
    size_t n = 0, cap = 1 << 16;
    char *buf = ml_malloc(cap + 1);
    int got;
    while ((got = gzread(f, buf + n, (unsigned)(cap - n))) > 0) {
        n += (size_t)got;
        if (n == cap) {
            if (cap >= MAX_FILE_BYTES) break;
            buf = ml_realloc(buf, (cap *= 2) + 1);
        }
    }
    int err;
    const char *msg = gzerror(f, &err);
    char why[160];
    snprintf(why, sizeof why, "%s", msg ? msg : "read error");
    gzclose(f);
    if (got < 0 || (err != Z_OK && err != Z_STREAM_END)) {
        free(buf);
        return ml_fail("'%s': corrupt or truncated compressed data (%s)", path, why), NULL;
    }
    if (n >= MAX_FILE_BYTES) {
        free(buf);
        return ml_fail("'%s': more than %zu bytes once decompressed", path, MAX_FILE_BYTES), NULL;
    }
    buf[n] = 0;
    if (len) *len = n;
    return buf;
}

/* ---------------------------------------------------------------- documents */

static int is_space(unsigned char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' || c == '\v'; }

static int all_space(const char *p, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!is_space((unsigned char)p[i])) return 0;
    return 1;
}

typedef struct {
    size_t *starts, *ends;
    int64_t n, cap;
} Cuts;

static void cut_add(Cuts *c, const char *buf, size_t s, size_t e) {
    if (all_space(buf + s, e - s)) return;
    if (c->n == c->cap) {
        c->cap = c->cap ? 2 * c->cap : 64;
        c->starts = ml_realloc(c->starts, (size_t)c->cap * sizeof *c->starts);
        c->ends = ml_realloc(c->ends, (size_t)c->cap * sizeof *c->ends);
    }
    c->starts[c->n] = s;
    c->ends[c->n++] = e;
}

static size_t line_end(const char *buf, size_t len, size_t pos) {
    const char *nl = memchr(buf + pos, '\n', len - pos);
    return nl ? (size_t)(nl - buf) + 1 : len;
}

/* A line holding only "%" (a fortune separator), with or without "\r". */
static int is_percent_line(const char *p, size_t n) {
    return (n >= 1 && p[0] == '%') && (n == 1 || (n == 2 && p[1] == '\n') || (n == 3 && p[1] == '\r' && p[2] == '\n'));
}

/* Blank-line cuts: a cut falls at the start of a (column-0, for entries) text line that
 * follows a blank line, once the document holds min_bytes. Blank lines stay with the
 * text they follow, so the documents tile the file exactly. */
static void cut_blocks(Cuts *c, const char *buf, size_t len, size_t min_bytes, int col0) {
    size_t start = 0, pos = 0;
    int prev_blank = 0;
    while (pos < len) {
        size_t e = line_end(buf, len, pos);
        int blank = all_space(buf + pos, e - pos);
        if (!blank && prev_blank && pos - start >= min_bytes && (!col0 || !is_space((unsigned char)buf[pos])) &&
            !all_space(buf + start, pos - start)) {
            cut_add(c, buf, start, pos);
            start = pos;
        }
        prev_blank = blank;
        pos = e;
    }
    cut_add(c, buf, start, len);
}

int64_t corpus_cut_docs(const char *buf, size_t len, DocSplit split, size_t min_doc_bytes, size_t **starts,
                        size_t **ends) {
    Cuts c = {0};
    if (split == DOC_FILE) {
        cut_add(&c, buf, 0, len);
    } else if (split == DOC_FORTUNES) {
        size_t start = 0, pos = 0;
        while (pos < len) {
            size_t e = line_end(buf, len, pos);
            if (is_percent_line(buf + pos, e - pos)) {
                cut_add(&c, buf, start, pos);
                start = e;
            }
            pos = e;
        }
        cut_add(&c, buf, start, len);
    } else {
        cut_blocks(&c, buf, len, min_doc_bytes, split == DOC_ENTRIES);
    }
    *starts = c.starts;
    *ends = c.ends;
    return c.n;
}
