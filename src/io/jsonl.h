/* JSON text streams that stay valid JSON and report write errors: every line written is
 * passed through json_finite (a NaN or an infinity printed by %f is not JSON: it becomes
 * null), and a failed write (full disk, file size limit, closed pipe) fails the fprintf,
 * fflush or fclose that caused it, so callers that check those see it at once. */
#ifndef MOELAB_JSONL_H
#define MOELAB_JSONL_H
#include <stddef.h>
#include <stdio.h>

/* Appends to path (created 0644 when missing). NULL (ml_fail) when it cannot be opened. */
FILE *jsonl_open(const char *path);
/* The same over an open descriptor (e.g. 1 for stdout); fclose leaves fd open. */
FILE *jsonl_fdopen(int fd);
/* Copies text to out (capacity at least 4/3 of n + 1 bytes) with every bare nan, -nan,
 * inf or -inf token outside strings replaced by null. Returns the new length. */
size_t json_finite(const char *text, size_t n, char *out);

#endif
