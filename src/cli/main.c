/* moelab: train, evaluate and look inside Mixture-of-Experts language models. */
#include "cli/commands.h"
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

int cli_is_help(const char *arg) { return strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0; }

const char *cli_flag_value(int argc, char **argv, int *i, const char *flag, int *missing) {
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

static const struct {
    const char *name;
    int (*fn)(int, char **);
    const char *summary;
} COMMANDS[] = {
    {"prepare", cmd_prepare, "turn text files or folders into token shards"},
    {"train", cmd_train, "train a model (or --resume one)"},
    {"eval", cmd_eval, "loss and bits per byte of a checkpoint on a split"},
    {"sample", cmd_sample, "generate text from a checkpoint"},
    {"info", cmd_info, "config and parameter counts of a checkpoint"},
    {"bench", cmd_bench, "tokens/s and MFU of moelab vs the PyTorch mirror"},
    {"tokenizer", cmd_tokenizer, "train, apply and invert a byte-level BPE tokenizer"},
    {"analyze", cmd_analyze, "routing metrics of a checkpoint on a data split"},
    {"compare", cmd_compare, "train routers x seeds on the same budget and tabulate them"},
    {"report", cmd_report, "a self-contained HTML report of run folders"},
    {"route", cmd_route, "apply a router's selection to dumped router logits"},
    {"export", cmd_export, "write a checkpoint as a GGUF file for llama.cpp"},
};

static void usage(FILE *f) {
    fprintf(f, "usage: moelab COMMAND [FLAGS]   (moelab COMMAND --help for its flags)\n\ncommands:\n");
    for (size_t i = 0; i < sizeof COMMANDS / sizeof COMMANDS[0]; i++)
        fprintf(f, "  %-10s %s\n", COMMANDS[i].name, COMMANDS[i].summary);
}

/* Output that could not be written is an error with a message, whatever the command. */
static int finish(int rc) {
    errno = 0;
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "moelab: cannot write standard output: %s\n", errno ? strerror(errno) : "write error");
        return rc ? rc : 1;
    }
    return rc;
}

int main(int argc, char **argv) {
    /* A closed pipe or a file size limit fails the write (checked) instead of killing us silently. */
    signal(SIGPIPE, SIG_IGN);
    signal(SIGXFSZ, SIG_IGN);
    if (argc < 2 || cli_is_help(argv[1])) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 1 : 0;
    }
    for (size_t i = 0; i < sizeof COMMANDS / sizeof COMMANDS[0]; i++)
        if (strcmp(argv[1], COMMANDS[i].name) == 0) return finish(COMMANDS[i].fn(argc - 1, argv + 1));
    fprintf(stderr, "moelab: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 1;
}
