/* Tests for corpus manifests and multi-domain preparation: parsing and its errors, file
 * listing, gzip/dictzip reading, document cutting, split stability, domain ids, caps,
 * duplicates, the BPE path and failure cases that must write nothing. */
#include "core/util.h"
#include "data/manifest.h"
#include "data/prepare.h"
#include "data/shard.h"
#include "data/tokenizer.h"
#include "testlib.h"
#include <dirent.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

/* ---------------------------------------------------------------- helpers */

static void write_file(const char *path, const void *p, size_t n) {
    char dir[512];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash) *slash = 0, ml_mkdir_p(dir);
    ml_write_file_atomic(path, p, n);
}

static void write_text(const char *path, const char *s) { write_file(path, s, strlen(s)); }

/* gzip with an FEXTRA header field, the way dictzip writes its chunk index. */
static size_t gzip_bytes(const char *s, size_t n, int extra, unsigned char *out, size_t cap) {
    z_stream z;
    memset(&z, 0, sizeof z);
    deflateInit2(&z, 6, Z_DEFLATED, 31, 8, Z_DEFAULT_STRATEGY);
    gz_header h;
    memset(&h, 0, sizeof h);
    unsigned char field[10] = {'R', 'A', 6, 0, 1, 0, 0, 0x40, 1, 0};
    if (extra) {
        h.extra = field;
        h.extra_len = sizeof field;
        deflateSetHeader(&z, &h);
    }
    z.next_in = (unsigned char *)s;
    z.avail_in = (unsigned)n;
    z.next_out = out;
    z.avail_out = (unsigned)cap;
    deflate(&z, Z_FINISH);
    size_t got = cap - z.avail_out;
    deflateEnd(&z);
    return got;
}

static void write_gz(const char *path, const char *s, int extra) {
    size_t cap = strlen(s) + 1024;
    unsigned char *buf = ml_malloc(cap);
    write_file(path, buf, gzip_bytes(s, strlen(s), extra, buf, cap));
    free(buf);
}

static int err_has(const char *a, const char *b) {
    const char *e = ml_last_error();
    return e && strstr(e, a) && (!b || strstr(e, b));
}

static int parse_fails(const char *json, const char *want) {
    Manifest m;
    if (manifest_parse(&m, json, tl_tmp_dir, "t.json") == 0) {
        manifest_free(&m);
        printf("  accepted: %s\n", json);
        return 0;
    }
    if (!err_has("t.json", want)) {
        printf("  error for %s: %s (wanted '%s')\n", json, ml_last_error(), want);
        return 0;
    }
    return 1;
}

/* ---------------------------------------------------------------- parsing */

static void test_parse(void) {
    const char *json = "{\"name\": \"mix\", \"cap_bytes_per_domain\": 5000, \"description\": \"x\", \"domains\": ["
                       "{\"name\": \"a\", \"files\": [\"rel/a.txt\", \"/abs/b\"], \"split\": \"paragraphs\", \"min_doc_bytes\": 10},"
                       "{\"name\": \"b-2\", \"packages\": [\"fortunes\", \"libc6-dev:amd64\"], \"include\": [\"/usr/*\"],"
                       " \"exclude\": [\"*.dat\"], \"split\": \"fortunes\", \"cap_bytes\": 0},"
                       "{\"name\": \"c_3\", \"files\": [\"x\"], \"split\": \"file\"},"
                       "{\"name\": \"d.4\", \"files\": [\"y\"], \"split\": \"entries\", \"cap_bytes\": 77}]}";
    Manifest m;
    CHECK(manifest_parse(&m, json, "/base", "t.json") == 0, "parse: %s", ml_last_error());
    if (m.n_domains != 4) {
        CHECK(0, "4 domains, got %d", m.n_domains);
        manifest_free(&m);
        return;
    }
    CHECK(!strcmp(m.name, "mix") && m.cap_bytes == 5000, "name and default cap");
    const ManifestDomain *a = &m.domains[0], *b = &m.domains[1];
    CHECK(!strcmp(a->name, "a") && a->split == DOC_PARAGRAPHS && a->min_doc_bytes == 10, "domain a");
    CHECK(a->files.n == 2 && !strcmp(a->files.items[0], "/base/rel/a.txt") && !strcmp(a->files.items[1], "/abs/b"),
          "relative files resolve against the manifest's folder: %s", a->files.n ? a->files.items[0] : "");
    CHECK(b->packages.n == 2 && b->include.n == 1 && b->exclude.n == 1 && b->split == DOC_FORTUNES, "domain b");
    CHECK(m.domains[2].split == DOC_FILE && m.domains[3].split == DOC_ENTRIES && m.domains[3].min_doc_bytes == 0,
          "file and entries splits; entries default to one entry per document");
    CHECK(manifest_cap(&m, 0) == 5000 && manifest_cap(&m, 1) == 0 && manifest_cap(&m, 3) == 77, "caps: own or default");
    manifest_free(&m);

    /* A manifest without "name" is named after its file; paths resolve beside it. */
    char p[512];
    write_text(tl_tmp(p, sizeof p, "sub/my-corpus.json"), "{\"domains\": [{\"name\": \"x\", \"files\": [\"t.txt\"]}]}");
    CHECK(manifest_load(&m, p) == 0 && !strcmp(m.name, "my-corpus") && m.domains[0].min_doc_bytes == MANIFEST_DEFAULT_MIN_DOC,
          "name from the file stem: %s", ml_last_error());
    if (m.n_domains) CHECK(strstr(m.domains[0].files.items[0], "/sub/t.txt") != NULL, "resolved beside the manifest");
    manifest_free(&m);
    CHECK(manifest_load(&m, "/nonexistent/c.json") != 0 && err_has("manifest", "/nonexistent/c.json"), "missing file: %s",
          ml_last_error());
}

static void test_parse_errors(void) {
    CHECK(parse_fails("{\"domains\": [", "JSON"), "truncated JSON");
    CHECK(parse_fails("[1]", "object"), "not an object");
    CHECK(parse_fails("{\"domains\": []}", "domains"), "no domains");
    CHECK(parse_fails("{\"domain\": [{\"name\": \"a\", \"files\": [\"x\"]}]}", "unknown key"), "typo at the top");
    CHECK(parse_fails("{\"domains\": [{\"name\": \"a\", \"file\": [\"x\"]}]}", "unknown key \"file\""), "typo in a domain");
    CHECK(parse_fails("{\"domains\": [{\"files\": [\"x\"]}]}", "name"), "no name");
    CHECK(parse_fails("{\"domains\": [{\"name\": \"a b\", \"files\": [\"x\"]}]}", "name"), "space in a name");
    CHECK(parse_fails("{\"domains\": [{\"name\": \"infer\", \"files\": [\"x\"]}]}", "infer"), "reserved name");
    CHECK(parse_fails("{\"domains\": [{\"name\": \"a\", \"files\": [\"x\"]}, {\"name\": \"a\", \"files\": [\"y\"]}]}", "twice"),
          "duplicate domain");
    CHECK(parse_fails("{\"domains\": [{\"name\": \"a\"}]}", "nothing to read"), "no source");
    CHECK(parse_fails("{\"domains\": [{\"name\": \"a\", \"files\": [\"x\"], \"split\": \"lines\"}]}", "split"), "bad split");
    CHECK(parse_fails("{\"domains\": [{\"name\": \"a\", \"files\": [\"x\"], \"split\": \"file\", \"min_doc_bytes\": 5}]}",
                      "min_doc_bytes"),
          "min_doc_bytes on whole files");
    CHECK(parse_fails("{\"domains\": [{\"name\": \"a\", \"files\": [\"x\"], \"include\": [\"*\"]}]}", "include"),
          "include without packages");
    CHECK(parse_fails("{\"domains\": [{\"name\": \"a\", \"packages\": [\"x'; rm -rf /\"]}]}", "package name"),
          "a package name that is not one");
    CHECK(parse_fails("{\"domains\": [{\"name\": \"a\", \"files\": [\"x\"], \"cap_bytes\": -1}]}", "cap_bytes"), "negative cap");
    CHECK(parse_fails("{\"domains\": [{\"name\": \"a\", \"files\": [\"x\"], \"cap_bytes\": 1.5}]}", "cap_bytes"), "fractional cap");
    CHECK(parse_fails("{\"domains\": [{\"name\": \"a\", \"files\": [7]}]}", "files"), "non-string file");
    CHECK(parse_fails("{\"domains\": [{\"name\": \"a\", \"files\": \"x\"}]}", "files"), "files not an array");
    char big[8192] = "{\"domains\": [";
    for (int i = 0; i <= MANIFEST_MAX_DOMAINS; i++)
        snprintf(big + strlen(big), sizeof big - strlen(big), "%s{\"name\": \"d%d\", \"files\": [\"x\"]}", i ? "," : "", i);
    strcat(big, "]}");
    CHECK(parse_fails(big, "at most"), "too many domains");
}

/* ---------------------------------------------------------------- reading and cutting */

static void test_read_gzip(void) {
    char p[512];
    const char *text = "Abdomen \\Ab*do\"men\\, n.\n   The belly.\n\nAbed \\A*bed\"\\, adv.\n   In bed.\n";
    size_t n;
    write_gz(tl_tmp(p, sizeof p, "read/plain.gz"), text, 0);
    char *got = corpus_read_file(p, &n);
    CHECK(got && n == strlen(text) && !memcmp(got, text, n), "gzip decompressed: %s", got ? got : ml_last_error());
    free(got);
    write_gz(tl_tmp(p, sizeof p, "read/dict.dz"), text, 1);
    got = corpus_read_file(p, &n);
    CHECK(got && n == strlen(text) && !memcmp(got, text, n), "dictzip (gzip + FEXTRA) decompressed: %s", ml_last_error());
    free(got);
    write_text(tl_tmp(p, sizeof p, "read/plain.txt"), text);
    got = corpus_read_file(p, &n);
    CHECK(got && n == strlen(text) && !memcmp(got, text, n), "plain file read as is");
    free(got);

    /* Truncated and corrupted streams are errors naming the file, not short texts. */
    unsigned char buf[4096];
    size_t gz = gzip_bytes(text, strlen(text), 0, buf, sizeof buf);
    write_file(tl_tmp(p, sizeof p, "read/cut.gz"), buf, gz / 2);
    got = corpus_read_file(p, &n);
    CHECK(!got && err_has("cut.gz", "corrupt or truncated"), "truncated gzip: %s", ml_last_error());
    free(got);
    buf[gz - 6] ^= 0x55; /* inside the CRC32 */
    write_file(tl_tmp(p, sizeof p, "read/crc.gz"), buf, gz);
    got = corpus_read_file(p, &n);
    CHECK(!got && err_has("crc.gz", NULL), "bad checksum: %s", ml_last_error());
    free(got);
    got = corpus_read_file(tl_tmp(p, sizeof p, "read/none.gz"), &n);
    CHECK(!got && err_has("none.gz", NULL), "missing file");
    free(got);
}

static int docs_are(const char *text, DocSplit split, size_t min, const char *const *want, int n_want) {
    size_t *s, *e;
    int64_t n = corpus_cut_docs(text, strlen(text), split, min, &s, &e);
    int ok = n == n_want;
    for (int64_t i = 0; ok && i < n; i++) ok = e[i] - s[i] == strlen(want[i]) && !memcmp(text + s[i], want[i], e[i] - s[i]);
    if (!ok) {
        printf("  got %lld documents:", (long long)n);
        for (int64_t i = 0; i < n; i++) printf(" [%.*s]", (int)(e[i] - s[i]), text + s[i]);
        printf("\n");
    }
    free(s);
    free(e);
    return ok;
}

static void test_cut_docs(void) {
    const char *f = "One fortune.\n%\nTwo\nlines.\n%\r\n  \n%\nlast, no newline";
    const char *fw[] = {"One fortune.\n", "Two\nlines.\n", "last, no newline"};
    CHECK(docs_are(f, DOC_FORTUNES, 0, fw, 3), "fortunes: separators dropped, blank ones skipped");
    const char *fw2[] = {"50%\n% off\n"};
    CHECK(docs_are("%\n50%\n% off\n%\n", DOC_FORTUNES, 0, fw2, 1), "only a line holding just %% separates");

    const char *d = "Abed \\A*bed\"\\, adv.\n   In bed.\n\n   2. Laid up.\n\nAbele \\A*bele\"\\, n.\n   Poplar.\n\nAbet, v.\n   Aid.\n";
    const char *dw[] = {"Abed \\A*bed\"\\, adv.\n   In bed.\n\n   2. Laid up.\n\n", "Abele \\A*bele\"\\, n.\n   Poplar.\n\n",
                        "Abet, v.\n   Aid.\n"};
    CHECK(docs_are(d, DOC_ENTRIES, 0, dw, 3), "entries: indented senses stay with their headword");
    const char *dw2[] = {"Abed \\A*bed\"\\, adv.\n   In bed.\n\n   2. Laid up.\n\nAbele \\A*bele\"\\, n.\n   Poplar.\n\n",
                         "Abet, v.\n   Aid.\n"};
    CHECK(docs_are(d, DOC_ENTRIES, 50, dw2, 2), "entries grouped to min_doc_bytes");
    const char *pw[] = {"Abed \\A*bed\"\\, adv.\n   In bed.\n\n", "   2. Laid up.\n\n", "Abele \\A*bele\"\\, n.\n   Poplar.\n\n",
                        "Abet, v.\n   Aid.\n"};
    CHECK(docs_are(d, DOC_PARAGRAPHS, 0, pw, 4), "paragraphs cut at every blank line");
    const char *whole[] = {d};
    CHECK(docs_are(d, DOC_FILE, 0, whole, 1), "a file is one document");
    CHECK(docs_are(" \n\t\n", DOC_FILE, 0, NULL, 0) && docs_are("%\n \n%\n", DOC_FORTUNES, 0, NULL, 0), "whitespace is no document");
    const char *lead[] = {"\n\nText.\n"};
    CHECK(docs_are("\n\nText.\n", DOC_PARAGRAPHS, 0, lead, 1), "leading blank lines stay with the first paragraph");
}

/* ---------------------------------------------------------------- file lists */

static void test_domain_files(void) {
    char p[512], json[2048];
    write_text(tl_tmp(p, sizeof p, "fl/dir/b.txt"), "b\n");
    write_text(tl_tmp(p, sizeof p, "fl/dir/a.txt"), "a\n");
    write_text(tl_tmp(p, sizeof p, "fl/dir/skip.dat"), "x\n");
    write_text(tl_tmp(p, sizeof p, "fl/dir/.hidden"), "h\n");
    write_text(tl_tmp(p, sizeof p, "fl/dir/deep/c.txt"), "c\n");
    write_text(tl_tmp(p, sizeof p, "fl/g1.log"), "1\n");
    write_text(tl_tmp(p, sizeof p, "fl/g2.log"), "2\n");
    snprintf(json, sizeof json,
             "{\"domains\": [{\"name\": \"x\", \"files\": [\"fl/dir\", \"fl/g*.log\", \"fl/dir/a.txt\"], \"exclude\": [\"*.dat\"]},"
             "{\"name\": \"miss\", \"files\": [\"fl/nope.txt\"]},"
             "{\"name\": \"noglob\", \"files\": [\"fl/*.zzz\"]},"
             "{\"name\": \"allout\", \"files\": [\"fl/dir\"], \"exclude\": [\"*\"]},"
             "{\"name\": \"nopkg\", \"packages\": [\"moelab-no-such-package\"]}]}");
    Manifest m;
    CHECK(manifest_parse(&m, json, tl_tmp_dir, "t.json") == 0, "parse: %s", ml_last_error());
    if (m.n_domains != 5) return;
    DomainFiles f;
    CHECK(manifest_domain_files(&m, 0, NULL, &f) == 0, "list: %s", ml_last_error());
    const char *want[] = {"fl/dir/a.txt", "fl/dir/b.txt", "fl/dir/deep/c.txt", "fl/g1.log", "fl/g2.log"};
    int ok = f.paths.n == 5;
    for (int i = 0; ok && i < 5; i++) ok = strstr(f.paths.items[i], want[i]) != NULL;
    CHECK(ok, "sorted walk, globs, exclude, hidden skipped, a.txt once: %d files", f.paths.n);
    domain_files_free(&f);
    CHECK(manifest_domain_files(&m, 1, NULL, &f) != 0 && err_has("miss", "nope.txt"), "missing file: %s", ml_last_error());
    CHECK(manifest_domain_files(&m, 2, NULL, &f) != 0 && err_has("matches no file", NULL), "empty glob: %s", ml_last_error());
    CHECK(manifest_domain_files(&m, 3, NULL, &f) != 0 && err_has("allout", "no files"), "all excluded: %s", ml_last_error());
    CHECK(manifest_domain_files(&m, 4, NULL, &f) != 0 && err_has("moelab-no-such-package", NULL), "missing package: %s",
          ml_last_error());
    manifest_free(&m);

    /* base-files is essential on Debian: its license texts come through dpkg's list. */
    if (access("/usr/bin/dpkg-query", X_OK) != 0 || access("/usr/share/common-licenses/GPL-3", R_OK) != 0) {
        printf("  SKIP package listing: no dpkg-query or base-files here -- NOT TESTED\n");
        return;
    }
    CHECK(manifest_parse(&m,
                         "{\"domains\": [{\"name\": \"lic\", \"packages\": [\"base-files\"], "
                         "\"include\": [\"/usr/share/common-licenses/*\"], \"exclude\": [\"GPL-2\"]}]}",
                         tl_tmp_dir, "t.json") == 0,
          "parse: %s", ml_last_error());
    CHECK(manifest_domain_files(&m, 0, NULL, &f) == 0, "package files: %s", ml_last_error());
    int gpl3 = 0, gpl2 = 0, other = 0;
    for (int i = 0; i < f.paths.n; i++) {
        gpl3 += !strcmp(f.paths.items[i], "/usr/share/common-licenses/GPL-3");
        gpl2 += !strcmp(f.paths.items[i], "/usr/share/common-licenses/GPL-2");
        other += strncmp(f.paths.items[i], "/usr/share/common-licenses/", 27) != 0;
    }
    CHECK(gpl3 == 1 && gpl2 == 0 && other == 0, "include and exclude globs over dpkg's list");
    CHECK(f.n_pkgs == 1 && f.pkgs[0].version[0], "package version recorded");
    domain_files_free(&f);
    manifest_free(&m);
}

/* ---------------------------------------------------------------- preparation */

/* Three domains: paragraphs in plain files, fortunes in a gzip'd file, one doc per file. */
static void make_corpus(const char *dir, int variant) {
    char p[512];
    char *big = ml_malloc(1 << 16);
    for (int f = 0; f < 2; f++) {
        size_t n = 0;
        for (int i = 0; i < 60; i++)
            n += (size_t)snprintf(big + n, 1000, "alpha file %d paragraph %d says the experts agree.\nA second line %d.\n\n", f, i, i * 7);
        snprintf(p, sizeof p, "%s/alpha/f%d.txt", dir, f);
        write_text(p, big);
    }
    size_t n = 0;
    for (int i = 0; i < 120; i++) n += (size_t)snprintf(big + n, 1000, "beta fortune number %d: never %d twice.\n%%\n", i, i * 3);
    n += (size_t)snprintf(big + n, 1000, "beta fortune number 5: never 15 twice.\n%%\n"); /* a duplicate */
    snprintf(p, sizeof p, "%s/beta/quotes.gz", dir);
    write_gz(p, big, 0);
    for (int i = 0; i < 30 + 10 * variant; i++) {
        snprintf(big, 1000, "/* gamma source file %d */\nint f%d(void) { return %d; }\n", i, i, i * i);
        snprintf(p, sizeof p, "%s/gamma/s%03d.c", dir, i);
        write_text(p, big);
    }
    free(big);
    snprintf(p, sizeof p, "%s/mix.json", dir);
    write_text(p, "{\"name\": \"mix\", \"domains\": ["
                  "{\"name\": \"alpha\", \"files\": [\"alpha\"], \"split\": \"paragraphs\", \"min_doc_bytes\": 200},"
                  "{\"name\": \"beta\", \"files\": [\"beta/quotes.gz\"], \"split\": \"fortunes\"},"
                  "{\"name\": \"gamma\", \"files\": [\"gamma/*.c\"], \"split\": \"file\"}]}");
}

/* Maps each document's text (byte-level shard) to its split and checks domain ids by prefix. */
typedef struct {
    char **text;
    int *split, *dom;
    int n;
} DocTable;

static int load_docs(const char *out, DocTable *t) {
    static const char *const names[3] = {"alpha", "beta", "gamma"};
    int ok = 1;
    for (int k = 0; k < 2; k++) {
        char p[512];
        snprintf(p, sizeof p, "%s/%s.bin", out, k ? "val" : "train");
        Shard s;
        if (shard_load(&s, p)) return 0;
        ok &= s.n_domains == 3;
        for (int d = 0; ok && d < 3; d++) ok &= !strcmp(s.domains[d], names[d]);
        for (int64_t d = 0; d < s.n_docs; d++) {
            int64_t b = s.doc_start[d], e = d + 1 < s.n_docs ? s.doc_start[d + 1] : s.n_tokens;
            char *x = ml_malloc((size_t)(e - b));
            for (int64_t i = b; i < e - 1; i++) x[i - b] = (char)s.tokens[i];
            x[e - b - 1] = 0;
            ok &= s.tokens[e - 1] == PREPARE_EOT;
            ok &= !strncmp(x, names[s.doc_domain[d]], strlen(names[s.doc_domain[d]])) || (s.doc_domain[d] == 2 && !strncmp(x, "/* gamma", 8));
            t->text = ml_realloc(t->text, (size_t)(t->n + 1) * sizeof *t->text);
            t->split = ml_realloc(t->split, (size_t)(t->n + 1) * sizeof *t->split);
            t->dom = ml_realloc(t->dom, (size_t)(t->n + 1) * sizeof *t->dom);
            t->text[t->n] = x;
            t->split[t->n] = k;
            t->dom[t->n++] = s.doc_domain[d];
        }
        shard_free(&s);
    }
    return ok;
}

static void free_docs(DocTable *t) {
    for (int i = 0; i < t->n; i++) free(t->text[i]);
    free(t->text);
    free(t->split);
    free(t->dom);
    memset(t, 0, sizeof *t);
}

static PrepareOptions opts(const char *manifest, const char *out) {
    PrepareOptions o = {.out_dir = out, .manifest = manifest, .val_frac = 0.2, .seed = 7};
    return o;
}

static void test_prepare_domains(void) {
    char dir[512], man[600], out[512];
    make_corpus(tl_tmp(dir, sizeof dir, "c1"), 0);
    snprintf(man, sizeof man, "%s/mix.json", dir);
    PrepareOptions o = opts(man, tl_tmp(out, sizeof out, "c1out"));
    PrepareStats st;
    CHECK(prepare_data(&o, &st) == 0, "prepare: %s", ml_last_error());
    CHECK(st.n_domains == 3 && st.n_files == 33, "3 domains, 33 files: %d %d", st.n_domains, st.n_files);
    CHECK(st.dom[1].found_docs == 121 && st.dom[1].duplicates == 1, "beta: 121 fortunes, one duplicate: %lld %lld",
          (long long)st.dom[1].found_docs, (long long)st.dom[1].duplicates);
    CHECK(st.dom[2].docs[0] + st.dom[2].docs[1] == 30, "gamma: one document per file");
    for (int d = 0; d < 3; d++)
        CHECK(st.dom[d].docs[0] > 0 && st.dom[d].docs[1] > 0, "domain %d in both splits", d);
    DocTable t = {0};
    CHECK(load_docs(out, &t), "shards: domain table and every document's domain id match its text");
    CHECK(t.n == st.docs[0] + st.docs[1], "documents read back: %d", t.n);
    /* The first quarter of the training shard already mixes all three domains. */
    int seen[3] = {0, 0, 0};
    for (int i = 0; i < t.n / 4; i++) seen[t.dom[i]] = 1;
    CHECK(seen[0] && seen[1] && seen[2], "domains interleave in the shard");
    DataMeta m;
    CHECK(data_meta_load(&m, out) == 0 && m.vocab_size == 257 && !strcmp(m.tokenizer, "bytes"), "meta: %s", ml_last_error());
    data_meta_free(&m);
    char *meta = ml_read_file(tl_tmp(man, sizeof man, "c1out/meta.json"), NULL);
    CHECK(meta && strstr(meta, "\"alpha\"") && strstr(meta, "\"found_documents\"") && strstr(meta, "\"domains\""),
          "meta.json holds per-domain statistics");
    free(meta);

    /* Stability: more gamma files, another alpha file dropped; every document found in
     * both corpora lands in the same split. */
    char dir2[512], out2[512];
    make_corpus(tl_tmp(dir2, sizeof dir2, "c2"), 3);
    unlink(tl_tmp(man, sizeof man, "c2/alpha/f1.txt"));
    snprintf(man, sizeof man, "%s/mix.json", dir2);
    o = opts(man, tl_tmp(out2, sizeof out2, "c2out"));
    CHECK(prepare_data(&o, &st) == 0, "prepare 2: %s", ml_last_error());
    DocTable u = {0};
    CHECK(load_docs(out2, &u), "shards 2");
    int common = 0, same = 0;
    for (int i = 0; i < t.n; i++)
        for (int j = 0; j < u.n; j++)
            if (!strcmp(t.text[i], u.text[j])) {
                common++;
                same += t.split[i] == u.split[j];
            }
    CHECK(common > 100 && same == common, "split stability: %d of %d shared documents kept their split", same, common);
    free_docs(&t);
    free_docs(&u);
}

static void test_caps(void) {
    char man[512], out[512];
    snprintf(man, sizeof man, "%s/c1/mix.json", tl_tmp_dir); /* made by test_prepare_domains */
    PrepareOptions o = opts(man, tl_tmp(out, sizeof out, "capout"));
    o.cap_set = 1;
    o.cap_bytes = 1500;
    PrepareStats st, st2;
    CHECK(prepare_data(&o, &st) == 0, "capped: %s", ml_last_error());
    for (int d = 0; d < 3; d++) {
        int64_t kept = st.dom[d].bytes[0] + st.dom[d].bytes[1];
        CHECK(kept <= 1500 && kept > 1000, "domain %d keeps %lld bytes under the 1500-byte cap", d, (long long)kept);
    }
    CHECK(prepare_data(&o, &st2) == 0 && st2.docs[0] == st.docs[0] && st2.bytes[1] == st.bytes[1], "the same subset again");
    o.seed = 8;
    CHECK(prepare_data(&o, &st2) == 0, "seed 8");
    o.cap_bytes = 1; /* smaller than any document: each domain still keeps one */
    o.seed = 7;
    CHECK(prepare_data(&o, &st) == 0 && st.docs[0] + st.docs[1] == 3, "a tiny cap keeps one document per domain: %lld",
          (long long)(st.docs[0] + st.docs[1]));

    /* Caps from the manifest: a default and a per-domain override (0: none). */
    char p[512];
    write_text(tl_tmp(p, sizeof p, "c1/capped.json"),
               "{\"cap_bytes_per_domain\": 1000, \"domains\": ["
               "{\"name\": \"alpha\", \"files\": [\"alpha\"], \"min_doc_bytes\": 200},"
               "{\"name\": \"beta\", \"files\": [\"beta/quotes.gz\"], \"split\": \"fortunes\", \"cap_bytes\": 0}]}");
    o = opts(p, out);
    CHECK(prepare_data(&o, &st) == 0, "manifest caps: %s", ml_last_error());
    CHECK(st.dom[0].bytes[0] + st.dom[0].bytes[1] <= 1000 && st.dom[1].docs[0] + st.dom[1].docs[1] == 120,
          "alpha capped by the default, beta uncapped");
}

static int no_staging(const char *out) {
    const char *names[] = {"train.bin", "val.bin", "meta.json", "tokenizer.json"};
    char p[600];
    for (int i = 0; i < 4; i++) {
        snprintf(p, sizeof p, "%s/%s.partial", out, names[i]);
        if (ml_file_exists(p)) return 0;
    }
    return 1;
}

static void test_bpe(void) {
    char man[512], out[512], p[512];
    snprintf(man, sizeof man, "%s/c1/mix.json", tl_tmp_dir);
    PrepareOptions o = opts(man, tl_tmp(out, sizeof out, "bpeout"));
    o.vocab = 300;
    PrepareStats st;
    CHECK(prepare_data(&o, &st) == 0, "bpe: %s", ml_last_error());
    CHECK(!strcmp(st.tokenizer, "bpe") && st.vocab_size == 300, "bpe stats: %s %d", st.tokenizer, st.vocab_size);
    CHECK(st.tokens[0] < st.bytes[0], "merges shorten the training split: %lld tokens for %lld bytes", (long long)st.tokens[0],
          (long long)st.bytes[0]);
    DataMeta m;
    Shard s;
    Tokenizer *t = NULL;
    CHECK(data_meta_load(&m, out) == 0 && m.vocab_size == 300 && !strcmp(m.tokenizer, "bpe"), "meta: %s", ml_last_error());
    CHECK(shard_load(&s, tl_tmp(p, sizeof p, "bpeout/val.bin")) == 0, "val shard: %s", ml_last_error());
    CHECK(tok_load(&t, tl_tmp(p, sizeof p, "bpeout/tokenizer.json")) == 0, "tokenizer.json: %s", ml_last_error());
    if (m.token_bytes && s.tokens && t) {
        /* Bits per byte need the byte count: the token lengths add up to the text's bytes. */
        int64_t bytes = 0;
        for (int64_t i = 0; i < s.n_tokens; i++) bytes += m.token_bytes[s.tokens[i]];
        CHECK(bytes == st.bytes[1], "token_bytes from tokenizer.json: %lld vs %lld", (long long)bytes, (long long)st.bytes[1]);
        TokBytes text = {0};
        size_t n0 = (size_t)(s.n_docs > 1 ? s.doc_start[1] : s.n_tokens) - 1; /* the first document, less end-of-text */
        int ok = tok_decode(t, s.tokens, n0, 0, &text) == 0 && text.len > 4;
        ok = ok && (!memcmp(text.data, "alpha", 5) || !memcmp(text.data, "beta", 4) || !memcmp(text.data, "/* g", 4));
        CHECK(ok, "the first document decodes to domain text");
        free(text.data);
    }
    if (t) tok_free(t);
    shard_free(&s);
    data_meta_free(&m);

    /* A given tokenizer is used and copied; a prepare with neither removes a stale one. */
    char out2[512];
    o = opts(man, tl_tmp(out2, sizeof out2, "bpeout2"));
    o.tokenizer = tl_tmp(p, sizeof p, "bpeout/tokenizer.json");
    PrepareStats st2;
    CHECK(prepare_data(&o, &st2) == 0 && st2.vocab_size == 300 && st2.tokens[0] == st.tokens[0], "reuse: %s", ml_last_error());
    o.tokenizer = NULL;
    CHECK(prepare_data(&o, &st2) == 0 && st2.vocab_size == 257 && !ml_file_exists(tl_tmp(p, sizeof p, "bpeout2/tokenizer.json")),
          "byte-level run removes the old tokenizer.json");
}

static void test_failures(void) {
    char man[512], out[512], p[512];
    snprintf(man, sizeof man, "%s/c1/mix.json", tl_tmp_dir);
    PrepareOptions o = opts(man, tl_tmp(out, sizeof out, "failout"));
    PrepareStats st;
    o.vocab = 257;
    CHECK(prepare_data(&o, &st) != 0 && err_has("too small", NULL), "vocab too small: %s", ml_last_error());
    CHECK(!ml_file_exists(out), "nothing written");

    o.vocab = 0;
    write_text(tl_tmp(p, sizeof p, "bad_tok.json"), "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merg");
    o.tokenizer = p;
    CHECK(prepare_data(&o, &st) != 0 && err_has("bad_tok.json", NULL), "corrupt tokenizer: %s", ml_last_error());
    CHECK(!ml_file_exists(out), "nothing written");
    o.tokenizer = NULL;

    /* An empty domain, a missing file, a binary file, a corrupt gzip member. */
    write_text(tl_tmp(p, sizeof p, "c1/empty.txt"), "  \n\n");
    write_file(tl_tmp(p, sizeof p, "c1/bin.dat"), "ab\0cd", 5);
    write_file(tl_tmp(p, sizeof p, "c1/bad.gz"), "\x1f\x8b\x08\x00garbage", 12);
    const char *cases[][2] = {
        {"{\"domains\": [{\"name\": \"a\", \"files\": [\"alpha\"]}, {\"name\": \"e\", \"files\": [\"empty.txt\"]}]}", "'e' has no text"},
        {"{\"domains\": [{\"name\": \"a\", \"files\": [\"alpha\", \"missing.txt\"]}]}", "missing.txt"},
        {"{\"domains\": [{\"name\": \"a\", \"files\": [\"bin.dat\"]}]}", "NUL byte"},
        {"{\"domains\": [{\"name\": \"a\", \"files\": [\"bad.gz\"]}]}", "bad.gz"},
        {"{\"domains\": [{\"name\": \"a\", \"files\": [\"alpha\"]}, {\"name\": \"p\", \"packages\": [\"moelab-no-such-package\"]}]}",
         "not installed"},
    };
    for (int i = 0; i < (int)(sizeof cases / sizeof cases[0]); i++) {
        write_text(tl_tmp(p, sizeof p, "c1/bad.json"), cases[i][0]);
        o = opts(p, out);
        CHECK(prepare_data(&o, &st) != 0 && err_has(cases[i][1], NULL), "case %d: %s", i, ml_last_error());
        CHECK(!ml_file_exists(out), "case %d: nothing written", i);
    }

    /* A failure in a folder that already holds data leaves the old files alone. */
    o = opts(man, out);
    CHECK(prepare_data(&o, &st) == 0, "good run");
    size_t n1, n2;
    char *before = ml_read_file(tl_tmp(p, sizeof p, "failout/train.bin"), &n1);
    write_text(tl_tmp(p, sizeof p, "c1/bad.json"), cases[1][0]);
    o = opts(p, out);
    CHECK(prepare_data(&o, &st) != 0, "failing run");
    char *after = ml_read_file(tl_tmp(p, sizeof p, "failout/train.bin"), &n2);
    CHECK(before && after && n1 == n2 && !memcmp(before, after, n1), "old outputs kept");
    CHECK(no_staging(out), "no staging files left");
    free(before);
    free(after);
}

int main(void) {
    if (tl_mktmp("test_manifest")) return 1;
    RUN(test_parse);
    RUN(test_parse_errors);
    RUN(test_read_gzip);
    RUN(test_cut_docs);
    RUN(test_domain_files);
    RUN(test_prepare_domains);
    RUN(test_caps);
    RUN(test_bpe);
    RUN(test_failures);
    tl_rm_rf(tl_tmp_dir);
    TEST_MAIN_END();
}
