/* Child processes: `moelab compare` runs trainings as children of the same binary,
 * `moelab report` runs gnuplot. Plain fork/exec, so a child can be tied to our life. */
#ifndef MOELAB_PROC_H
#define MOELAB_PROC_H
#include <sys/types.h>

/* Starts argv[0] (a path) with argv. stdin is /dev/null; stdout and stderr are appended
 * to log_path (NULL: inherited). The child gets SIGTERM if this process dies, so an
 * interrupted sweep leaves no orphans training on. Returns the pid, or -1 (ml_fail). */
pid_t proc_spawn(char *const argv[], const char *log_path);
/* Waits for pid (-1: any child). Returns the pid that ended (-1 when there is none);
 * *code gets its exit status, or 128 + the signal that killed it. */
pid_t proc_wait(pid_t pid, int *code);
/* Spawn and wait; returns the child's exit code, or -1 when it could not start. */
int proc_run(char *const argv[], const char *log_path);

/* This binary's path (/proc/self/exe), so children are the same build; NULL on failure. */
const char *proc_self_exe(void);
/* The first executable `name` on PATH (caller frees), or NULL. */
char *proc_which(const char *name);
/* Online CPU cores. */
int proc_cores(void);

#endif
