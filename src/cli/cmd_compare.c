#include "cli/commands.h"
#include <stdio.h>
int cmd_compare(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "moelab compare: not available yet\n");
    return 1;
}
