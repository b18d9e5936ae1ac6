/* `moelab tokenizer`: train a byte-level BPE tokenizer, encode and decode with it. */
#include "cli/commands.h"
#include "core/util.h"
#include "data/tokenizer.h"
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static void usage(FILE *f) {
    fprintf(f,
            "usage: moelab tokenizer train --out FILE.json [--vocab N] [--max-bytes B] [--quiet] FILE_OR_DIR...\n"
            "       moelab tokenizer encode --tokenizer FILE.json [--eot] [IN [OUT]]\n"
            "       moelab tokenizer decode --tokenizer FILE.json [--keep-special] [IN [OUT]]\n"
            "       moelab tokenizer info --tokenizer FILE.json\n"
            "\n"
            "Byte-level BPE in Hugging Face's tokenizer.json format (see docs/tokenizer.md).\n"
            "\n"
            "train    learns merges from text files (folders are read recursively in sorted\n"
            "         order, hidden entries and symlinks skipped) and writes FILE.json atomically.\n"
            "  --vocab N        vocab size including the 256 bytes and <|endoftext|> (default %d,\n"
            "                   at least %d)\n"
            "  --max-bytes B    read at most B bytes of input in total (default: all)\n"
            "  --quiet          no progress on stderr\n"
            "encode   text -> token ids, written as decimal numbers separated by single spaces,\n"
            "         with a newline at the end. Any bytes encode (binary, invalid UTF-8).\n"
            "  --eot            append the end-of-text id\n"
            "decode   token ids (decimal, separated by any whitespace) -> the exact bytes.\n"
            "  --keep-special   write <|endoftext|> for the end-of-text id (default: nothing)\n"
            "info     vocab size, merges, end-of-text id.\n"
            "\n"
            "IN and OUT default to stdin and stdout ('-' also means them). OUT is written\n"
            "atomically, so a failed run leaves no partial file.\n"
            "  -h, --help       show this help\n",
            TOK_DEFAULT_VOCAB, TOK_MIN_VOCAB);
}

static int err(const char *msg) {
    fprintf(stderr, "moelab tokenizer: %s\n", msg);
    return 1;
}


static int parse_i64(const char *s, long long lo, long long hi, long long *out) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

typedef struct {
    const char *out, *tok_path;
    long long vocab, max_bytes;
    int quiet, eot, keep_special;
    const char *pos[256]; /* positional arguments */
    int n_pos;
} Args;

/* Parses the flags every subcommand shares; returns 0, 1 on error, 2 after --help. */
static int parse_args(int argc, char **argv, Args *a) {
    char msg[1200];
    int only_pos = 0;
    for (int i = 2; i < argc; i++) {
        const char *f = argv[i], *v;
        int missing = 0;
        if (only_pos || f[0] != '-' || strcmp(f, "-") == 0) {
            if (a->n_pos == (int)(sizeof a->pos / sizeof *a->pos)) return err("too many input arguments");
            a->pos[a->n_pos++] = f;
        } else if (strcmp(f, "--") == 0) only_pos = 1;
        else if (cli_is_help(f)) return usage(stdout), 2;
        else if (strcmp(f, "--quiet") == 0) a->quiet = 1;
        else if (strcmp(f, "--eot") == 0) a->eot = 1;
        else if (strcmp(f, "--keep-special") == 0) a->keep_special = 1;
        else if ((v = cli_flag_value(argc, argv, &i, "--out", &missing))) a->out = v;
        else if ((v = cli_flag_value(argc, argv, &i, "--tokenizer", &missing))) a->tok_path = v;
        else if ((v = cli_flag_value(argc, argv, &i, "--vocab", &missing))) {
            if (parse_i64(v, 1, 1 << 24, &a->vocab) || a->vocab < TOK_MIN_VOCAB) {
                snprintf(msg, sizeof msg, "--vocab must be an integer in [%d, %d] (256 bytes + end-of-text + merges), got '%s'",
                         TOK_MIN_VOCAB, 1 << 24, v);
                return err(msg);
            }
        } else if ((v = cli_flag_value(argc, argv, &i, "--max-bytes", &missing))) {
            if (parse_i64(v, 1, (long long)1 << 50, &a->max_bytes)) {
                snprintf(msg, sizeof msg, "--max-bytes must be a positive integer, got '%s'", v);
                return err(msg);
            }
        } else {
            snprintf(msg, sizeof msg, missing ? "%s needs a value" : "unknown option '%s' (see --help)", f);
            return err(msg);
        }
    }
    return 0;
}

/* ---------------- train ---------------- */

typedef struct {
    TokTrainer *tr;
    long long left; /* bytes still allowed */
    int n_files;
    long long bytes;
} Feed;

static int by_name(const struct dirent **x, const struct dirent **y) { return strcmp((*x)->d_name, (*y)->d_name); }

static int feed_path(Feed *fd, const char *path, int top) {
    struct stat st;
    if ((top ? stat(path, &st) : lstat(path, &st)) != 0) return ml_fail("cannot read '%s': %s", path, strerror(errno));
    if (S_ISLNK(st.st_mode) || fd->left == 0) return 0;
    if (S_ISDIR(st.st_mode)) {
        struct dirent **ents;
        int n = scandir(path, &ents, NULL, by_name), rc = 0;
        if (n < 0) return ml_fail("cannot list folder '%s': %s", path, strerror(errno));
        for (int i = 0; i < n; i++) {
            if (rc == 0 && ents[i]->d_name[0] != '.') {
                size_t l = strlen(path) + strlen(ents[i]->d_name) + 2;
                char *sub = ml_malloc(l);
                snprintf(sub, l, "%s/%s", path, ents[i]->d_name);
                rc = feed_path(fd, sub, 0);
                free(sub);
            }
            free(ents[i]);
        }
        free(ents);
        return rc;
    }
    if (!S_ISREG(st.st_mode)) return top ? ml_fail("'%s' is not a file or folder", path) : 0;
    size_t len;
    char *buf = ml_read_file(path, &len);
    if (!buf) return -1;
    if (fd->left > 0 && (long long)len > fd->left) len = (size_t)fd->left;
    tok_trainer_add(fd->tr, buf, len);
    free(buf);
    fd->n_files++;
    fd->bytes += (long long)len;
    if (fd->left > 0) fd->left -= (long long)len;
    return 0;
}

static int do_train(Args *a) {
    if (!a->out) return err("train needs --out FILE.json (see --help)");
    if (a->n_pos == 0) return err("train needs input files or folders (see --help)");
    Feed fd = {.tr = tok_trainer_new(), .left = a->max_bytes > 0 ? a->max_bytes : -1};
    double t0 = ml_now();
    int rc = 0;
    for (int i = 0; i < a->n_pos && rc == 0; i++) rc = feed_path(&fd, a->pos[i], 1);
    if (rc == 0 && fd.bytes == 0) rc = ml_fail("no text found in the inputs");
    double t_read = ml_now() - t0;
    Tokenizer *t = NULL;
    if (rc == 0) rc = tok_trainer_finish(fd.tr, (int)(a->vocab ? a->vocab : TOK_DEFAULT_VOCAB), !a->quiet, &t);
    tok_trainer_free(fd.tr);
    if (rc == 0) rc = tok_save(t, a->out);
    if (rc) {
        tok_free(t);
        return err(ml_last_error());
    }
    double dt = ml_now() - t0;
    printf("trained %s from %d file%s, %lld bytes: vocab %d, %d merges, %.1fs (%.1fs reading and counting)\n", a->out,
           fd.n_files, fd.n_files == 1 ? "" : "s", fd.bytes, tok_vocab_size(t), tok_n_merges(t), dt, t_read);
    if (a->vocab && tok_vocab_size(t) < a->vocab)
        fprintf(stderr, "moelab tokenizer: note: the text ran out of pairs at vocab %d (asked %lld)\n", tok_vocab_size(t),
                a->vocab);
    tok_free(t);
    return 0;
}

/* ---------------- encode / decode ---------------- */

static char *read_input(const char *path, size_t *len) {
    if (path && strcmp(path, "-") != 0) return ml_read_file(path, len);
    size_t cap = 0;
    char *buf = NULL;
    *len = 0;
    for (;;) {
        ml_reserve((void **)&buf, &cap, *len + (1 << 16) + 1);
        size_t got = fread(buf + *len, 1, cap - *len - 1, stdin);
        *len += got;
        if (got == 0) break;
        if (*len > ML_READ_MAX_TEXT) { /* an endless stream (a device, a pipe that never closes) */
            free(buf);
            ml_fail("stdin holds more than %llu bytes", (unsigned long long)ML_READ_MAX_TEXT);
            return NULL;
        }
    }
    if (ferror(stdin)) {
        free(buf);
        ml_fail("cannot read stdin");
        return NULL;
    }
    buf[*len] = 0;
    return buf;
}

static int write_output(const char *path, const void *data, size_t len) {
    if (path && strcmp(path, "-") != 0) return ml_write_file_atomic(path, data, len);
    if (fwrite(data, 1, len, stdout) != len || fflush(stdout) != 0) return ml_fail("cannot write stdout");
    return 0;
}

/* Writes " 123" (or "123" first); printf is the bottleneck at millions of ids. */
static size_t put_id(char *dst, uint32_t v, int space) {
    char tmp[10];
    size_t n = 0, k = 0;
    do tmp[n++] = (char)('0' + v % 10), v /= 10;
    while (v);
    if (space) dst[k++] = ' ';
    while (n) dst[k++] = tmp[--n];
    return k;
}

static int do_encode(Tokenizer *t, const Args *a) {
    size_t len;
    char *in = read_input(a->n_pos > 0 ? a->pos[0] : NULL, &len);
    if (!in) return -1;
    TokIds ids = {0};
    tok_encode(t, in, len, &ids);
    free(in);
    if (a->eot) tok_ids_push(&ids, (uint32_t)tok_eot_id(t));
    char *txt = ml_malloc(ids.n * 11 + 2);
    size_t k = 0;
    for (size_t i = 0; i < ids.n; i++) k += put_id(txt + k, ids.ids[i], i > 0);
    txt[k++] = '\n';
    free(ids.ids);
    int rc = write_output(a->n_pos > 1 ? a->pos[1] : NULL, txt, k);
    free(txt);
    return rc;
}

static int is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

static int parse_ids(const char *s, size_t len, TokIds *ids) {
    size_t i = 0, line = 1;
    while (i < len) {
        if (is_ws(s[i])) {
            line += s[i] == '\n', i++;
            continue;
        }
        uint64_t v = 0;
        size_t start = i;
        while (i < len && s[i] >= '0' && s[i] <= '9' && v <= UINT32_MAX) v = v * 10 + (uint64_t)(s[i++] - '0');
        if (i == start || v > UINT32_MAX || (i < len && !is_ws(s[i]))) {
            size_t e = start;
            while (e < len && e - start < 20 && !is_ws(s[e])) e++;
            return ml_fail("line %zu: '%.*s' is not a token id (expected decimal numbers separated by whitespace)", line,
                           (int)(e - start), s + start);
        }
        tok_ids_push(ids, (uint32_t)v);
    }
    return 0;
}

static int do_decode(Tokenizer *t, const Args *a) {
    size_t len;
    char *in = read_input(a->n_pos > 0 ? a->pos[0] : NULL, &len);
    if (!in) return -1;
    TokIds ids = {0};
    TokBytes out = {0};
    int rc = parse_ids(in, len, &ids);
    free(in);
    if (rc == 0) rc = tok_decode(t, ids.ids, ids.n, a->keep_special, &out);
    if (rc == 0) rc = write_output(a->n_pos > 1 ? a->pos[1] : NULL, out.data, out.len);
    free(ids.ids);
    free(out.data);
    return rc;
}

int cmd_tokenizer(int argc, char **argv) {
    if (argc < 2 || cli_is_help(argv[1])) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2;
    }
    const char *sub = argv[1];
    Args a;
    memset(&a, 0, sizeof a);
    int rc = parse_args(argc, argv, &a);
    if (rc) return rc == 2 ? 0 : 1;
    if (strcmp(sub, "train") == 0) return do_train(&a);
    int known = !strcmp(sub, "encode") || !strcmp(sub, "decode") || !strcmp(sub, "info");
    if (!known) {
        char msg[300];
        snprintf(msg, sizeof msg, "unknown subcommand '%.200s' (train, encode, decode or info; see --help)", sub);
        return err(msg);
    }
    if (!a.tok_path) return err("--tokenizer FILE.json is required (see --help)");
    if (a.n_pos > 2) return err("at most two arguments: IN and OUT");
    Tokenizer *t;
    if (tok_load(&t, a.tok_path)) return err(ml_last_error());
    if (!strcmp(sub, "encode")) rc = do_encode(t, &a);
    else if (!strcmp(sub, "decode")) rc = do_decode(t, &a);
    else printf("%s: vocab %d, %d merges, end-of-text id %d\n", a.tok_path, tok_vocab_size(t), tok_n_merges(t), tok_eot_id(t));
    tok_free(t);
    return rc ? err(ml_last_error()) : 0;
}
