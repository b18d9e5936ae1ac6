#include "cli/commands.h"
#include <stdio.h>
int cmd_analyze(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "moelab analyze: not available yet\n");
    return 1;
}
