/* `moelab prepare`: turns text files and folders, or a corpus manifest, into a data folder. */
#include "cli/commands.h"
#include "core/util.h"
#include "data/prepare.h"
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(f,
            "usage: moelab prepare --out DIR [options] FILE_OR_DIR...\n"
            "       moelab prepare --out DIR --manifest CORPUS.json [options]\n"
            "\n"
            "Builds a data folder: DIR/train.bin, DIR/val.bin, DIR/meta.json, and DIR/tokenizer.json\n"
            "for a BPE tokenizer. Plain inputs form one domain, \"default\": folders are read\n"
            "recursively in sorted order (hidden entries and symlinks skipped) and each file is cut\n"
            "at blank lines into documents of at least %d bytes. A manifest names domains, their\n"
            "files or Debian packages, and how each is cut into documents (corpus/README.md).\n"
            "Exact duplicate documents are dropped; a document goes to validation by a seeded\n"
            "hash of its text, so it lands in the same split whatever else is in the corpus.\n"
            "gzip'd files (.gz, dictd .dz) are read directly.\n"
            "\n"
            "  --out DIR                  output folder (created if needed)\n"
            "  --manifest FILE            corpus manifest (JSON) instead of FILE_OR_DIR inputs\n"
            "  --vocab N                  train a byte-level BPE tokenizer of N tokens on the\n"
            "                             training split (at least 258)\n"
            "  --tokenizer FILE           use this tokenizer.json (copied into DIR)\n"
            "                             (neither: byte-level tokens, vocab 257)\n"
            "  --cap-bytes-per-domain N   keep at most N bytes of each domain, a seeded random\n"
            "                             subset of its documents (0: no cap; default: the\n"
            "                             manifest's caps)\n"
            "  --val-frac F               fraction of documents for validation, in (0,1) (default %g)\n"
            "  --seed S                   split, cap and order seed (default %d)\n"
            "  --quiet                    no progress lines on stderr\n"
            "  -h, --help                 show this help\n",
            PREPARE_MIN_DOC_BYTES, PREPARE_DEFAULT_VAL_FRAC, PREPARE_DEFAULT_SEED);
}

static int err(const char *msg) {
    fprintf(stderr, "moelab prepare: %s\n", msg);
    return 1;
}


static int parse_frac(const char *s, double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v > 0 && v < 1)) return -1;
    *out = v;
    return 0;
}

static int parse_u64(const char *s, uint64_t *out) {
    char *end;
    errno = 0;
    if (!*s || *s == '-') return -1;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end) return -1;
    *out = v;
    return 0;
}

static int parse_int(const char *s, long long lo, long long *out) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < lo) return -1;
    *out = v;
    return 0;
}

static double mb(int64_t b) { return (double)b / 1e6; }

/* The per-domain table: what was found, what was kept, and the tokens of each split
 * (tokens include each document's end-of-text). */
static void print_table(const PrepareStats *st) {
    static const char *const row = "%-14s %6s %9s %8s %6s | %10s %9s %10s | %8s %7s %9s\n";
    printf(row, "domain", "files", "found MB", "docs", "dups", "train docs", "train MB", "train tok", "val docs", "val MB",
           "val tok");
    PrepareDomainStats tot = {.name = "total"};
    for (int d = 0; d <= st->n_domains; d++) {
        const PrepareDomainStats *x = d < st->n_domains ? &st->dom[d] : &tot;
        if (d == st->n_domains) printf("%.*s\n", 113, "-----------------------------------------------------------------"
                                                      "-----------------------------------------------------------------");
        printf("%-14s %6d %9.2f %8" PRId64 " %6" PRId64 " | %10" PRId64 " %9.2f %10" PRId64 " | %8" PRId64 " %7.2f %9" PRId64 "\n",
               x->name, x->files, mb(x->found_bytes), x->found_docs, x->duplicates, x->docs[0], mb(x->bytes[0]), x->tokens[0],
               x->docs[1], mb(x->bytes[1]), x->tokens[1]);
        if (d == st->n_domains) break;
        tot.files += x->files;
        tot.found_bytes += x->found_bytes;
        tot.found_docs += x->found_docs;
        tot.duplicates += x->duplicates;
        for (int k = 0; k < 2; k++) {
            tot.docs[k] += x->docs[k];
            tot.bytes[k] += x->bytes[k];
            tot.tokens[k] += x->tokens[k];
        }
    }
}

int cmd_prepare(int argc, char **argv) {
    PrepareOptions o = {0};
    o.val_frac = PREPARE_DEFAULT_VAL_FRAC;
    o.seed = PREPARE_DEFAULT_SEED;
    const char **inputs = ml_calloc((size_t)argc, sizeof *inputs);
    int n_in = 0, rc = 0, only_inputs = 0, quiet = 0;
    char msg[1200];
    for (int i = 1; i < argc && rc == 0; i++) {
        const char *a = argv[i], *v;
        int missing = 0;
        long long x = 0;
        if (only_inputs || a[0] != '-' || strcmp(a, "-") == 0) {
            inputs[n_in++] = a;
        } else if (strcmp(a, "--") == 0) {
            only_inputs = 1;
        } else if (cli_is_help(a)) {
            usage(stdout);
            free(inputs);
            return 0;
        } else if (strcmp(a, "--quiet") == 0) {
            quiet = 1;
        } else if ((v = cli_flag_value(argc, argv, &i, "--out", &missing))) {
            o.out_dir = v;
        } else if ((v = cli_flag_value(argc, argv, &i, "--manifest", &missing))) {
            o.manifest = v;
        } else if ((v = cli_flag_value(argc, argv, &i, "--tokenizer", &missing))) {
            o.tokenizer = v;
        } else if ((v = cli_flag_value(argc, argv, &i, "--vocab", &missing))) {
            if (parse_int(v, 1, &x) || x > (1 << 24)) {
                snprintf(msg, sizeof msg, "--vocab must be a positive integer, got '%s'", v);
                rc = err(msg);
            }
            o.vocab = (int)x;
        } else if ((v = cli_flag_value(argc, argv, &i, "--cap-bytes-per-domain", &missing))) {
            if (parse_int(v, 0, &x)) {
                snprintf(msg, sizeof msg, "--cap-bytes-per-domain must be a non-negative integer, got '%s'", v);
                rc = err(msg);
            }
            o.cap_set = 1;
            o.cap_bytes = x;
        } else if ((v = cli_flag_value(argc, argv, &i, "--val-frac", &missing))) {
            if (parse_frac(v, &o.val_frac)) {
                snprintf(msg, sizeof msg, "--val-frac must be a number in (0, 1), got '%s'", v);
                rc = err(msg);
            }
        } else if ((v = cli_flag_value(argc, argv, &i, "--seed", &missing))) {
            if (parse_u64(v, &o.seed)) {
                snprintf(msg, sizeof msg, "--seed must be a non-negative integer, got '%s'", v);
                rc = err(msg);
            }
        } else {
            snprintf(msg, sizeof msg, missing ? "%s needs a value" : "unknown option '%s' (see --help)", a);
            rc = err(msg);
        }
    }
    if (rc == 0 && !o.out_dir) rc = err("--out DIR is required (see --help)");
    if (rc == 0 && n_in == 0 && !o.manifest) rc = err("no input files or folders given, and no --manifest (see --help)");
    if (rc == 0 && n_in > 0 && o.manifest) rc = err("give either --manifest or input files, not both");
    if (rc == 0 && o.vocab && o.tokenizer) rc = err("give either --vocab or --tokenizer, not both");
    if (rc != 0) {
        free(inputs);
        return rc;
    }
    o.inputs = inputs;
    o.n_inputs = n_in;
    o.verbose = !quiet && (o.manifest || o.vocab); /* plain byte-level runs take no time worth reporting */
    PrepareStats st;
    double t0 = ml_now();
    if (prepare_data(&o, &st) != 0) {
        free(inputs);
        return err(ml_last_error());
    }
    free(inputs);
    printf("prepared %s from %d file%s: %" PRId64 " documents (%" PRId64 " train, %" PRId64 " val) in %.1f s\n", o.out_dir,
           st.n_files, st.n_files == 1 ? "" : "s", st.docs[0] + st.docs[1], st.docs[0], st.docs[1], ml_now() - t0);
    printf("  tokenizer: %s, vocab %d\n", st.tokenizer, st.vocab_size);
    printf("  train: %" PRId64 " tokens, %" PRId64 " bytes\n", st.tokens[0], st.bytes[0]);
    printf("  val:   %" PRId64 " tokens, %" PRId64 " bytes\n", st.tokens[1], st.bytes[1]);
    print_table(&st);
    if (o.vocab && st.vocab_size < o.vocab)
        fprintf(stderr, "moelab prepare: warning: the training text has pairs for only %d tokens, not the %d asked for\n",
                st.vocab_size, o.vocab);
    if (st.docs[1] == 0)
        fprintf(stderr, "moelab prepare: warning: only one document, so the validation split is empty\n");
    return 0;
}
