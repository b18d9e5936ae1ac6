#include "core/dist.h"
#include "core/util.h"
#include <stdlib.h>
#include <string.h>

#ifdef MOELAB_MPI
#include <mpi.h>

static int started;
static MPI_Comm comms[DIST_N_GROUPS];
static MPI_Request *reqs;
static int n_reqs, cap_reqs;
static double comm_seconds; /* inside blocking MPI calls and waits, since the start */

/* mpirun (Open MPI) and other launchers set these; a plain run stays out of MPI, so it
 * neither pays MPI's start-up nor depends on a working MPI installation. */
static int launched(void) {
    const char *v[] = {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE"};
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++)
        if (getenv(v[i])) return 1;
    return 0;
}

int dist_init(int *argc, char ***argv) {
    if (started || !launched()) return 0;
    if (MPI_Init(argc, argv) != MPI_SUCCESS) return ml_fail("MPI_Init failed");
    started = 1;
    /* The gradient reductions get their own communicator, so their order never
     * interleaves with the blocking collectives of the rest of the step. */
    MPI_Comm_dup(MPI_COMM_WORLD, &comms[DIST_WORLD]);
    MPI_Comm_split(MPI_COMM_WORLD, 0, 0, &comms[DIST_DP]);
    int rank;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_split(MPI_COMM_WORLD, rank, 0, &comms[DIST_EP]);
    return 0;
}

void dist_finalize(int failed) {
    if (!started) return;
    /* A rank that fails alone must not wait in MPI_Finalize for ranks that wait for it. */
    if (failed && dist_size(DIST_WORLD) > 1) MPI_Abort(MPI_COMM_WORLD, 1);
    dist_wait_all();
    free(reqs);
    reqs = NULL;
    n_reqs = cap_reqs = 0;
    for (int g = 0; g < DIST_N_GROUPS; g++) MPI_Comm_free(&comms[g]);
    MPI_Finalize();
    started = 0;
}

int dist_built_with_mpi(void) { return 1; }

int dist_rank(DistGroup g) {
    int r = 0;
    if (started) MPI_Comm_rank(comms[g], &r);
    return r;
}

int dist_size(DistGroup g) {
    int n = 1;
    if (started) MPI_Comm_size(comms[g], &n);
    return n;
}

int dist_set_expert_parallel(int P) {
    int N = dist_size(DIST_WORLD);
    if (P < 1 || N % P) return ml_fail("--expert-parallel %d must divide the number of processes (%d)", P, N);
    if (!started) return 0;
    int r = dist_rank(DIST_WORLD);
    MPI_Comm_free(&comms[DIST_EP]);
    MPI_Comm_free(&comms[DIST_DP]);
    MPI_Comm_split(MPI_COMM_WORLD, r / P, r % P, &comms[DIST_EP]);
    MPI_Comm_split(MPI_COMM_WORLD, r % P, r / P, &comms[DIST_DP]);
    return 0;
}

/* MPI counts are ints: long buffers go in chunks. */
#define CHUNK (1 << 28)

void dist_sum_double(double *x, size_t n, DistGroup g) {
    if (!started || dist_size(g) == 1) return;
    double t0 = ml_now();
    for (size_t i = 0; i < n; i += CHUNK)
        MPI_Allreduce(MPI_IN_PLACE, x + i, (int)(n - i < CHUNK ? n - i : CHUNK), MPI_DOUBLE, MPI_SUM, comms[g]);
    comm_seconds += ml_now() - t0;
}

void dist_sum_float(float *x, size_t n, DistGroup g) {
    if (!started || dist_size(g) == 1) return;
    double t0 = ml_now();
    for (size_t i = 0; i < n; i += CHUNK)
        MPI_Allreduce(MPI_IN_PLACE, x + i, (int)(n - i < CHUNK ? n - i : CHUNK), MPI_FLOAT, MPI_SUM, comms[g]);
    comm_seconds += ml_now() - t0;
}

void dist_isum_float(float *x, size_t n, DistGroup g) {
    if (!started || dist_size(g) == 1 || n == 0) return;
    for (size_t i = 0; i < n; i += CHUNK) {
        if (n_reqs == cap_reqs) {
            cap_reqs = cap_reqs ? 2 * cap_reqs : 64;
            reqs = ml_realloc(reqs, cap_reqs * sizeof *reqs);
        }
        MPI_Iallreduce(MPI_IN_PLACE, x + i, (int)(n - i < CHUNK ? n - i : CHUNK), MPI_FLOAT, MPI_SUM, comms[g],
                       &reqs[n_reqs++]);
    }
}

void dist_progress(void) {
    int done;
    double t0 = ml_now();
    if (n_reqs) MPI_Testall(n_reqs, reqs, &done, MPI_STATUSES_IGNORE);
    comm_seconds += ml_now() - t0;
}

double dist_wait_all(void) {
    if (!n_reqs) return 0.0;
    double t0 = ml_now();
    MPI_Waitall(n_reqs, reqs, MPI_STATUSES_IGNORE);
    n_reqs = 0;
    comm_seconds += ml_now() - t0;
    return ml_now() - t0;
}

void dist_minmax_u64(uint64_t x, uint64_t *min, uint64_t *max, DistGroup g) {
    *min = *max = x;
    if (!started) return;
    MPI_Allreduce(&x, min, 1, MPI_UINT64_T, MPI_MIN, comms[g]);
    MPI_Allreduce(&x, max, 1, MPI_UINT64_T, MPI_MAX, comms[g]);
}

int dist_all_ok(int ok) {
    if (!started) return ok != 0;
    int v = ok != 0, all;
    MPI_Allreduce(&v, &all, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    return all;
}

void dist_bcast(void *buf, size_t bytes, int root, DistGroup g) {
    if (!started) return;
    for (size_t i = 0; i < bytes; i += CHUNK)
        MPI_Bcast((char *)buf + i, (int)(bytes - i < CHUNK ? bytes - i : CHUNK), MPI_BYTE, root, comms[g]);
}

void dist_alltoall_int(const int *send, int *recv, int n, DistGroup g) {
    if (!started) {
        memcpy(recv, send, n * sizeof(int));
        return;
    }
    double t0 = ml_now();
    MPI_Alltoall(send, n, MPI_INT, recv, n, MPI_INT, comms[g]);
    comm_seconds += ml_now() - t0;
}

void dist_alltoallv_float(const float *send, const int *scounts, const int *sdispls, float *recv,
                          const int *rcounts, const int *rdispls, DistGroup g) {
    if (!started) {
        memcpy(recv + rdispls[0], send + sdispls[0], scounts[0] * sizeof(float));
        return;
    }
    double t0 = ml_now();
    MPI_Alltoallv(send, scounts, sdispls, MPI_FLOAT, recv, rcounts, rdispls, MPI_FLOAT, comms[g]);
    comm_seconds += ml_now() - t0;
}

void dist_allgather_float(float *buf, size_t n, DistGroup g) {
    if (!started || dist_size(g) == 1) return;
    if (n > CHUNK) { /* past an int count: each rank broadcasts its block */
        for (int q = 0; q < dist_size(g); q++) dist_bcast(buf + (size_t)q * n, n * sizeof(float), q, g);
        return;
    }
    MPI_Allgather(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, buf, (int)n, MPI_FLOAT, comms[g]);
}

double dist_comm_seconds(void) { return comm_seconds; }

void dist_abort(int code) {
    if (started) MPI_Abort(MPI_COMM_WORLD, code);
    exit(code);
}

#else /* one process: the same calls, nothing to exchange */

int dist_init(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    return 0;
}
void dist_finalize(int failed) { (void)failed; }
int dist_built_with_mpi(void) { return 0; }
int dist_rank(DistGroup g) {
    (void)g;
    return 0;
}
int dist_size(DistGroup g) {
    (void)g;
    return 1;
}
int dist_set_expert_parallel(int P) {
    return P == 1 ? 0 : ml_fail("--expert-parallel %d needs %d processes: run under mpirun (this build has no MPI)", P, P);
}
void dist_sum_double(double *x, size_t n, DistGroup g) {
    (void)x, (void)n, (void)g;
}
void dist_sum_float(float *x, size_t n, DistGroup g) {
    (void)x, (void)n, (void)g;
}
void dist_isum_float(float *x, size_t n, DistGroup g) {
    (void)x, (void)n, (void)g;
}
void dist_progress(void) {}
double dist_wait_all(void) { return 0.0; }
void dist_minmax_u64(uint64_t x, uint64_t *min, uint64_t *max, DistGroup g) {
    (void)g;
    *min = *max = x;
}
int dist_all_ok(int ok) { return ok != 0; }
void dist_bcast(void *buf, size_t bytes, int root, DistGroup g) {
    (void)buf, (void)bytes, (void)root, (void)g;
}
void dist_alltoall_int(const int *send, int *recv, int n, DistGroup g) {
    (void)g;
    memcpy(recv, send, n * sizeof(int));
}
void dist_alltoallv_float(const float *send, const int *scounts, const int *sdispls, float *recv,
                          const int *rcounts, const int *rdispls, DistGroup g) {
    (void)rcounts, (void)g;
    memcpy(recv + rdispls[0], send + sdispls[0], scounts[0] * sizeof(float));
}
void dist_allgather_float(float *buf, size_t n, DistGroup g) {
    (void)buf, (void)n, (void)g;
}
double dist_comm_seconds(void) { return 0.0; }
void dist_abort(int code) { exit(code); }

#endif
