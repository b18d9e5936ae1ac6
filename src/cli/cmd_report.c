#include "cli/commands.h"
#include <stdio.h>
int cmd_report(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "moelab report: not available yet\n");
    return 1;
}
