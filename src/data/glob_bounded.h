/* glob(3) with a bound on the work: a pattern of wildcard folders, level after level from
 * the root, would walk the whole file system (and /proc without end), so every folder
 * entry glob reads is counted and the expansion stops, refused, past a budget. */
#ifndef MOELAB_GLOB_BOUNDED_H
#define MOELAB_GLOB_BOUNDED_H
#include <glob.h>

#define GLOB_BOUNDED_ENTRIES 200000L /* folder entries read per pattern */

/* glob(pattern, 0, ...) reading at most GLOB_BOUNDED_ENTRIES entries. Returns glob's code,
 * or GLOB_ABORTED with *over set when the budget ran out (g is then freed). */
int glob_bounded(const char *pattern, glob_t *g, int *over);

#endif
