/* Running another program without a shell: the arguments go to execvp as a vector, so no
 * byte of a name taken from a file or a flag is ever parsed as a command. */
#ifndef MOELAB_SPAWN_H
#define MOELAB_SPAWN_H
#include <stddef.h>

/* Runs argv[0] (searched on PATH when it has no '/') with stdin from /dev/null and stderr
 * inherited (discarded when quiet). Returns at most `max` bytes of its stdout
 * (NUL-terminated, caller frees; the rest is drained and dropped), or NULL (ml_fail) when
 * it could not be started. *status gets the exit status, 127 when it could not be
 * executed, 128 + signal when killed, -1 when it did not start. */
char *ml_spawn_capture(char *const argv[], int quiet, size_t max, int *status, size_t *len);

#endif
