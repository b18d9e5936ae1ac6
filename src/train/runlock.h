/* One writer per run folder: an advisory lock (flock) on RUNDIR/.lock, holding the owner's
 * pid so a second trainer is refused at once with a message naming it. The kernel drops
 * the lock when the process exits or crashes; a stale file is harmless. */
#ifndef MOELAB_RUNLOCK_H
#define MOELAB_RUNLOCK_H

#define RUNLOCK_FILE ".lock"

/* Locks dir (which must exist); returns the descriptor to keep open, or -1 (ml_fail). */
int runlock_acquire(const char *dir);
void runlock_release(int fd);
/* After a start that failed before its first checkpoint: removes what that start wrote
 * (config.json and log.jsonl when `created`), the lock file, and the folder when the
 * start made it and it is now empty, so nothing blocks the next try. */
void runlock_discard(const char *dir, int made_dir, int created);

#endif
