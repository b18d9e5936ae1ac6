/* Corpus manifests: a JSON file naming domains and where each domain's text comes from.
 *
 *   {
 *     "name": "debian-mix",
 *     "cap_bytes_per_domain": 2000000,          optional default cap, 0 = none
 *     "domains": [
 *       {"name": "quotes-en", "split": "fortunes",
 *        "packages": ["fortunes", "fortunes-min"],
 *        "include": ["/usr/share/games/fortunes/[!.]*"],
 *        "exclude": ["*.dat", "*.u8"]},
 *       {"name": "notes", "files": ["notes/", "extra/[a-z]*.txt.gz"], "split": "paragraphs",
 *        "min_doc_bytes": 2048, "cap_bytes": 500000}
 *     ]
 *   }
 *
 * A domain takes files from "files" (paths relative to the manifest's folder: a file,
 * a folder walked recursively in sorted order, or a glob) and from "packages" (every
 * regular file `dpkg-query -L PKG` lists that matches an "include" glob). "exclude" globs
 * drop files from both. In include/exclude globs `*` also matches `/`, and a pattern
 * without `/` is matched against the file's base name. Symlinks and hidden entries of
 * walked folders are skipped, so a file reached two ways is read once.
 *
 * Files compressed with gzip (.gz, and dictd's .dz, which is gzip with an index) are
 * recognised by content and decompressed while reading.
 *
 * "split" says how a file is cut into documents:
 *   "file"        the whole file is one document (source files, man pages);
 *   "fortunes"    entries separated by lines holding only "%" (the fortune format);
 *   "entries"     cut before a line that starts in column 0 after a blank line
 *                 (dictionary entries), grouping entries to at least min_doc_bytes;
 *   "paragraphs"  cut before any non-blank line after a blank line, grouping paragraphs
 *                 to at least min_doc_bytes (default 4096; the plain-files default).
 * Whitespace-only documents are dropped. */
#ifndef MOELAB_MANIFEST_H
#define MOELAB_MANIFEST_H
#include <stddef.h>
#include <stdint.h>

#define MANIFEST_NAME_MAX 48 /* domain names become log keys (val_loss_<name>); "infer" is reserved */
#define MANIFEST_DEFAULT_MIN_DOC 4096
#define MANIFEST_MAX_DOMAINS 64 /* per-domain evaluation keeps a fixed table */

typedef enum { DOC_FILE, DOC_FORTUNES, DOC_ENTRIES, DOC_PARAGRAPHS } DocSplit;

typedef struct {
    char **items;
    int n;
} StrList;

typedef struct {
    char name[MANIFEST_NAME_MAX + 1];
    DocSplit split;
    int64_t min_doc_bytes; /* entries / paragraphs only */
    int64_t cap_bytes;     /* -1: the manifest default; 0: no cap */
    StrList files;         /* resolved against the manifest's folder */
    StrList packages, include, exclude;
} ManifestDomain;

typedef struct {
    char *name;      /* "name", else the file's stem */
    char *path;      /* the file it came from ("" when parsed from memory) */
    int64_t cap_bytes; /* default cap per domain, 0: none */
    ManifestDomain *domains;
    int n_domains;
} Manifest;

/* Reads and validates a manifest: unknown keys, bad names, duplicate domains, a domain
 * with no source, and bad values are errors naming the file and the key. */
int manifest_load(Manifest *m, const char *path);
/* Same from JSON text; relative "files" resolve against base_dir; origin names it in errors. */
int manifest_parse(Manifest *m, const char *json, const char *base_dir, const char *origin);
void manifest_free(Manifest *m);
/* A one-domain manifest over plain files and folders (what `prepare FILE...` uses). */
void manifest_from_inputs(Manifest *m, const char *domain, const char *const *inputs, int n_inputs,
                          DocSplit split, int64_t min_doc_bytes);
/* The cap in force for domain d (0: none). */
int64_t manifest_cap(const Manifest *m, int d);
const char *doc_split_name(DocSplit s);

/* One package a domain read, with the installed version (so a corpus can be reproduced). */
typedef struct {
    char *name, *version;
} PackageInfo;

typedef struct {
    StrList paths; /* sorted within each source, in source order, each path once */
    PackageInfo *pkgs;
    int n_pkgs;
} DomainFiles;

/* Lists domain d's files. skip_dir (may be NULL) is a folder never walked into (the
 * output folder). Fails on a missing file, a glob or package glob matching nothing,
 * a package that is not installed, or a domain with no files at all. */
int manifest_domain_files(const Manifest *m, int d, const char *skip_dir, DomainFiles *out);
void domain_files_free(DomainFiles *f);

/* Reads a whole file, decompressing gzip/dictzip by its magic bytes; NUL-terminated.
 * A corrupt or truncated gzip stream is an error naming the file. */
char *corpus_read_file(const char *path, size_t *len);

/* Cuts text into documents: doc i is buf[starts[i] .. ends[i]). Returns the count
 * (0 when no document holds a non-whitespace byte); the arrays are the caller's. */
int64_t corpus_cut_docs(const char *buf, size_t len, DocSplit split, size_t min_doc_bytes, size_t **starts,
                        size_t **ends);

void strlist_add(StrList *l, const char *s);
void strlist_free(StrList *l);

#endif
