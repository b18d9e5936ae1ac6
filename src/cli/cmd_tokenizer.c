#include "cli/commands.h"
#include <stdio.h>
int cmd_tokenizer(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "moelab tokenizer: not available yet\n");
    return 1;
}
