/* The processes of one training job. Built with MPI (the Makefile adds -DMOELAB_MPI when
 * Open MPI is installed) and started by mpirun, the job has N ranks; otherwise, and
 * whenever the binary runs without a launcher, it is one process and every call below is
 * a no-op (reductions leave the data as is, exchanges copy), so a single process behaves
 * exactly as a build without MPI.
 *
 * Groups: WORLD is every rank. With expert parallelism P, rank r is expert shard
 * r % P of data-parallel replica r / P: EP holds the P ranks of one replica (they split
 * the experts between them), DP the N/P ranks that own the same experts. */
#ifndef MOELAB_DIST_H
#define MOELAB_DIST_H
#include <stddef.h>
#include <stdint.h>

typedef enum { DIST_WORLD, DIST_DP, DIST_EP, DIST_N_GROUPS } DistGroup;

/* Starts MPI when the process was launched by mpirun (else stays one process). */
int dist_init(int *argc, char ***argv);
/* Ends MPI; failed != 0 ends every rank of the job (MPI_Abort), so none is left waiting. */
void dist_finalize(int failed);
/* 1 when this binary was built with MPI. */
int dist_built_with_mpi(void);
int dist_rank(DistGroup g);
int dist_size(DistGroup g);
/* Splits the world into EP groups of P ranks; -1 (ml_fail) when P does not divide N. */
int dist_set_expert_parallel(int P);

/* Blocking sums over a group, in place. */
void dist_sum_double(double *x, size_t n, DistGroup g);
void dist_sum_float(float *x, size_t n, DistGroup g);
/* Non-blocking in-place sum; dist_progress lets pending ones advance (MPI progresses
 * them only inside MPI calls), dist_wait_all completes them all and returns the seconds
 * it waited. */
void dist_isum_float(float *x, size_t n, DistGroup g);
void dist_progress(void);
double dist_wait_all(void);
/* min and max of x over a group. */
void dist_minmax_u64(uint64_t x, uint64_t *min, uint64_t *max, DistGroup g);
/* 1 when every rank passed ok != 0 (so all ranks take the same branch after a failure). */
int dist_all_ok(int ok);
void dist_bcast(void *buf, size_t bytes, int root, DistGroup g);
/* Every rank sends n ints to every other rank of the group: recv[i*n..] came from rank i. */
void dist_alltoall_int(const int *send, int *recv, int n, DistGroup g);
/* Counts and displacements in floats, one per rank of the group. */
void dist_alltoallv_float(const float *send, const int *scounts, const int *sdispls, float *recv,
                          const int *rcounts, const int *rdispls, DistGroup g);
/* buf holds size(g) blocks of n floats; each rank's own block (its rank in g) is sent to all. */
void dist_allgather_float(float *buf, size_t n, DistGroup g);
/* Seconds spent inside blocking exchanges and waits since the start (0 in one process). */
double dist_comm_seconds(void);
/* Ends every process of the job (after a fatal inconsistency). */
void dist_abort(int code);

#endif
