/* Files of one folder replaced together (a checkpoint's model and optimizer, a data
 * folder's shards, meta.json and tokenizer.json), so that a kill at any instant leaves
 * either all the old files or all the new ones.
 *
 * Sequence: each new file is written completely under NAME.new (itself atomically, via
 * a temporary file); then the commit record DIR/.commit is written (atomically), listing
 * "+NAME" for each file to install and "-NAME" for each to delete; then the renames and
 * deletions; then the record is removed. The record's arrival is the commit point:
 *   - a writer that starts (commit_recover) finishes a committed set (the record exists:
 *     rename what is still staged, delete what is listed) or drops an uncommitted one
 *     (no record: remove the staged files and temporary files);
 *   - a reader resolves each path (commit_resolve): while a record exists, a staged
 *     NAME.new is the file, else NAME. No reader ever sees a mix. */
#ifndef MOELAB_COMMIT_H
#define MOELAB_COMMIT_H
#include <stddef.h>

#define COMMIT_RECORD ".commit"
#define COMMIT_STAGED ".new"

typedef struct {
    const char *name; /* file name in the folder */
    int install;      /* 1: NAME.new replaces NAME; 0: NAME is deleted */
} CommitEntry;

/* DIR/NAME.new: where a file of the set is written before commit_publish. */
int commit_staged_path(char *buf, size_t cap, const char *dir, const char *name);
/* Commits the staged files of entries[n] (all must be complete) and installs them. */
int commit_publish(const char *dir, const CommitEntry *entries, int n);
/* Finishes or drops an interrupted set in dir (see above); only a writer that holds the
 * folder calls it. The staged names dropped are those of `names` (n of them). */
int commit_recover(const char *dir, const char *const *names, int n);
/* The file a reader should open for `path` (DIR/NAME): DIR/NAME.new while a commit record
 * says it is being installed, else path. Writes into buf, returns buf. */
const char *commit_resolve(const char *path, char *buf, size_t cap);

/* Test hook: with MOELAB_COMMIT_FAULT=N in the environment, the process is killed
 * (SIGKILL, nothing cleaned up) at the Nth point of the save sequences; each file
 * written, the record, each rename and the record's removal is one point. */
void commit_fault_point(void);

#endif
