/* One writer per run folder: an advisory lock (flock) on RUNDIR/.lock, holding the owner's
 * pid so a second trainer is refused at once with a message naming it. The kernel drops
 * the lock when the process exits or crashes (the file, then stale, is harmless); a
 * normal end removes the file. */
#ifndef MOELAB_RUNLOCK_H
#define MOELAB_RUNLOCK_H

#define RUNLOCK_FILE ".lock"

/* Locks dir (which must exist); returns the descriptor to keep open, or -1 (ml_fail). */
int runlock_acquire(const char *dir);
/* Releases the lock (its file is removed). With `discard`, after a start that failed
 * before its first checkpoint, first removes what that start wrote (config.json and
 * log.jsonl when `created`) and then the folder when the start made it and it is empty,
 * so nothing blocks the next try. */
void runlock_end(const char *dir, int fd, int discard, int made_dir, int created);

#endif
