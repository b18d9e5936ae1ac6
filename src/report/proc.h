/* Child processes: `moelab compare` runs trainings as children of the same binary,
 * `moelab report` runs gnuplot. Plain fork/exec, so a child can be tied to our life. */
#ifndef MOELAB_PROC_H
#define MOELAB_PROC_H
#include <sys/types.h>

/* Runs the program at path with argv. stdin is /dev/null; stdout and stderr are appended
 * to log_path (NULL: inherited). The child gets SIGTERM if this process dies, so an
 * interrupted sweep leaves no orphans training on. PROC_SELF as path runs this very
 * binary: the inode that is running, even when a rebuild has replaced the file since.
 * Returns the pid, or -1 (ml_fail). */
#define PROC_SELF "/proc/self/exe"
pid_t proc_spawn(const char *path, char *const argv[], const char *log_path);
/* Waits for pid (-1: any child). Returns the pid that ended (-1 when there is none);
 * *code gets its exit status, or 128 + the signal that killed it. */
pid_t proc_wait(pid_t pid, int *code);
/* Spawn and wait; returns the child's exit code, or -1 when it could not start. */
int proc_run(const char *path, char *const argv[], const char *log_path);

/* This binary's path (where /proc/self/exe points); NULL on failure. */
const char *proc_self_exe(void);
/* The first executable `name` on PATH (caller frees), or NULL. */
char *proc_which(const char *name);
/* Online CPU cores. */
int proc_cores(void);

#endif
