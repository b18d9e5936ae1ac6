/* `moelab prepare`: turns text files and folders into a byte-level data folder. */
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
            "usage: moelab prepare --out DIR [--val-frac F] [--seed S] FILE_OR_DIR...\n"
            "\n"
            "Builds a byte-level data folder: DIR/train.bin, DIR/val.bin and DIR/meta.json.\n"
            "Tokens are bytes 0..255 plus end-of-text 256 (vocab 257). Folders are read\n"
            "recursively in sorted order (hidden entries and symlinks skipped). Each file is\n"
            "cut at blank lines into documents of at least %d bytes; a document goes to\n"
            "validation by a seeded hash of its index.\n"
            "\n"
            "  --out DIR       output folder (created if needed)\n"
            "  --val-frac F    fraction of documents for validation, in (0,1) (default %g)\n"
            "  --seed S        split seed (default %d)\n"
            "  -h, --help      show this help\n",
            PREPARE_MIN_DOC_BYTES, PREPARE_DEFAULT_VAL_FRAC, PREPARE_DEFAULT_SEED);
}

static int err(const char *msg) {
    fprintf(stderr, "moelab prepare: %s\n", msg);
    return 1;
}

/* Accepts "--flag VALUE" and "--flag=VALUE"; returns the value or NULL if absent. */
static const char *flag_value(int argc, char **argv, int *i, const char *flag, int *missing) {
    size_t n = strlen(flag);
    if (strncmp(argv[*i], flag, n) != 0) return NULL;
    if (argv[*i][n] == '=') return argv[*i] + n + 1;
    if (argv[*i][n] != 0) return NULL;
    if (*i + 1 >= argc) {
        *missing = 1;
        return NULL;
    }
    return argv[++*i];
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

int cmd_prepare(int argc, char **argv) {
    PrepareOptions o = {0};
    o.val_frac = PREPARE_DEFAULT_VAL_FRAC;
    o.seed = PREPARE_DEFAULT_SEED;
    const char **inputs = ml_calloc((size_t)argc, sizeof *inputs);
    int n_in = 0, rc = 0, only_inputs = 0;
    char msg[1200];
    for (int i = 1; i < argc && rc == 0; i++) {
        const char *a = argv[i], *v;
        int missing = 0;
        if (only_inputs || a[0] != '-' || strcmp(a, "-") == 0) {
            inputs[n_in++] = a;
        } else if (strcmp(a, "--") == 0) {
            only_inputs = 1;
        } else if (cli_is_help(a)) {
            usage(stdout);
            free(inputs);
            return 0;
        } else if ((v = flag_value(argc, argv, &i, "--out", &missing))) {
            o.out_dir = v;
        } else if ((v = flag_value(argc, argv, &i, "--val-frac", &missing))) {
            if (parse_frac(v, &o.val_frac)) {
                snprintf(msg, sizeof msg, "--val-frac must be a number in (0, 1), got '%s'", v);
                rc = err(msg);
            }
        } else if ((v = flag_value(argc, argv, &i, "--seed", &missing))) {
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
    if (rc == 0 && n_in == 0) rc = err("no input files or folders given (see --help)");
    if (rc != 0) {
        free(inputs);
        return rc;
    }
    o.inputs = inputs;
    o.n_inputs = n_in;
    PrepareStats st;
    if (prepare_bytes(&o, &st) != 0) {
        free(inputs);
        return err(ml_last_error());
    }
    free(inputs);
    printf("prepared %s from %d file%s: %" PRId64 " documents (%" PRId64 " train, %" PRId64 " val)\n", o.out_dir,
           st.n_files, st.n_files == 1 ? "" : "s", st.docs[0] + st.docs[1], st.docs[0], st.docs[1]);
    printf("  train: %" PRId64 " tokens, %" PRId64 " bytes\n", st.tokens[0], st.bytes[0]);
    printf("  val:   %" PRId64 " tokens, %" PRId64 " bytes\n", st.tokens[1], st.bytes[1]);
    if (st.docs[1] == 0)
        fprintf(stderr, "moelab prepare: warning: only one document, so the validation split is empty\n");
    return 0;
}
