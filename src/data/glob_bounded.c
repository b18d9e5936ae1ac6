#define _GNU_SOURCE /* GLOB_ALTDIRFUNC */
#include "data/glob_bounded.h"
#include <dirent.h>
#include <string.h>
#include <sys/stat.h>

/* glob runs on one thread at a time here (prepare lists files before its parallel part). */
static long g_left;
static int g_over;

static void *bounded_opendir(const char *name) { return g_over ? NULL : opendir(name); }

static void *bounded_readdir(void *d) {
    if (g_over) return NULL;
    if (--g_left < 0) {
        g_over = 1;
        return NULL;
    }
    return readdir((DIR *)d);
}

static void bounded_closedir(void *d) { closedir((DIR *)d); }

int glob_bounded(const char *pattern, glob_t *g, int *over) {
    memset(g, 0, sizeof *g);
    g->gl_opendir = bounded_opendir;
    g->gl_readdir = (struct dirent *(*)(void *))bounded_readdir;
    g->gl_closedir = bounded_closedir;
    g->gl_stat = stat;
    g->gl_lstat = lstat;
    g_left = GLOB_BOUNDED_ENTRIES;
    g_over = 0;
    int rc = glob(pattern, GLOB_ALTDIRFUNC, NULL, g);
    *over = g_over;
    if (g_over) {
        if (rc == 0 || rc == GLOB_NOMATCH) globfree(g);
        return GLOB_ABORTED;
    }
    return rc;
}
