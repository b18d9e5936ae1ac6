#include "cli/commands.h"
#include <stdio.h>
int cmd_bench(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "moelab bench: not built yet\n");
    return 1;
}
