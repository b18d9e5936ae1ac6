/* Fault injection: the checkpoint save sequence is killed (SIGKILL, in a child process)
 * at every point in turn (MOELAB_COMMIT_FAULT=N; prepare's sequence is walked the same
 * way in tests/cli/test_hostile_commit.sh). After each kill a reader
 * must find the old set or the new one, whole, and a writer's recovery must leave exactly
 * that set on disk with no staged or temporary file behind. */
#include "core/commit.h"
#include "core/util.h"
#include "io/checkpoint.h"
#include "testlib.h"
#include <sys/wait.h>

static void tiny(TrainConfig *tc) {
    config_defaults(tc);
    ModelConfig *m = &tc->model;
    m->n_layers = 2;
    m->d_model = 16;
    m->n_heads = 2;
    m->seq_len = 8;
    m->vocab_size = 37;
    m->n_experts = 4;
    m->top_k = 2;
    m->d_expert = 8;
    tc->batch = 2;
}

typedef struct {
    TrainConfig tc;
    Model m;
    AdamW opt;
    TrainState st;
} Ckpt;

/* A checkpoint whose every value encodes its step. */
static void ckpt_make(Ckpt *c, long step) {
    memset(c, 0, sizeof *c);
    tiny(&c->tc);
    if (model_create(&c->m, &c->tc.model)) abort();
    for (size_t i = 0; i < c->m.table.total; i++) c->m.params[i] = (float)step + 1e-3f * (float)(i % 100);
    adamw_init(&c->opt, c->m.table.total);
    for (size_t i = 0; i < c->opt.n; i++) c->opt.m[i] = c->opt.v[i] = (float)step;
    c->opt.t = step;
    c->st.step = step;
    c->st.loader.B = 2;
    c->st.loader.T = 8;
    rng_seed(&c->st.loader.rng, (uint64_t)step);
}

static void ckpt_free(Ckpt *c) {
    model_free(&c->m);
    adamw_free(&c->opt);
}

/* Runs fn(arg) in a child with the fault at point n; 1 when the child was killed, 0 when
 * it finished (n is past the last point), -1 when it failed otherwise. */
static int killed_at(long n, int (*fn)(void *), void *arg) {
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        char v[32];
        snprintf(v, sizeof v, "%ld", n);
        setenv("MOELAB_COMMIT_FAULT", v, 1);
        _exit(fn(arg) == 0 ? 0 : 3);
    }
    int st;
    if (waitpid(pid, &st, 0) != pid) return -1;
    if (WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL) return 1;
    return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
}

/* What a reader sees: the step of a consistent, fully loadable pair; -1 when none. */
static long read_pair(const char *dir) {
    Model m;
    TrainConfig tc;
    if (checkpoint_load_model(dir, &m, &tc)) return -1;
    AdamW opt;
    memset(&opt, 0, sizeof opt);
    TrainState st;
    memset(&st, 0, sizeof st);
    long step = checkpoint_load_state(dir, &m, &opt, &st) == 0 ? st.step : -1;
    /* every value must belong to that step */
    for (size_t i = 0; step >= 0 && i < m.table.total; i++)
        if ((long)m.params[i] != step || (long)opt.v[i] != step) step = -2;
    if (opt.m) adamw_free(&opt);
    model_free(&m);
    return step;
}

static int no_leftovers(const char *dir) {
    DIR *d = opendir(dir);
    struct dirent *e;
    int clean = 1;
    while (d && (e = readdir(d)) != NULL)
        if (strstr(e->d_name, COMMIT_STAGED) || strstr(e->d_name, ".tmp.") || !strcmp(e->d_name, COMMIT_RECORD)) {
            printf("  leftover %s/%s\n", dir, e->d_name);
            clean = 0;
        }
    if (d) closedir(d);
    return clean;
}

static const char *g_dir;
static int save_step2(void *arg) {
    (void)arg;
    Ckpt c;
    ckpt_make(&c, 2);
    int rc = checkpoint_save(g_dir, &c.m, &c.tc, &c.opt, &c.st);
    ckpt_free(&c);
    return rc;
}

static void test_checkpoint_kill_at_every_point(void) {
    char dir[256];
    tl_tmp(dir, sizeof dir, "ckpt");
    g_dir = dir;
    long n, points = 0;
    int saw_old = 0, saw_new = 0;
    for (n = 1; n < 50; n++) {
        tl_rm_rf(dir);
        Ckpt c;
        ckpt_make(&c, 1);
        CHECK(checkpoint_save(dir, &c.m, &c.tc, &c.opt, &c.st) == 0, "%s", ml_last_error());
        ckpt_free(&c);
        int k = killed_at(n, save_step2, NULL);
        CHECK(k >= 0, "the save failed at point %ld", n);
        if (k <= 0) break;
        points++;
        long seen = read_pair(dir);
        CHECK(seen == 1 || seen == 2, "killed at point %ld: a reader found no whole pair (%ld): %s", n, seen, ml_last_error());
        CHECK(checkpoint_recover(dir) == 0, "%s", ml_last_error());
        long after = read_pair(dir);
        CHECK(after == seen, "killed at point %ld: the reader saw step %ld, recovery left %ld", n, seen, after);
        CHECK(no_leftovers(dir), "killed at point %ld: files left after recovery", n);
        saw_old |= after == 1;
        saw_new |= after == 2;
    }
    CHECK(points >= 6, "only %ld kill points in the save sequence", points);
    CHECK(saw_old && saw_new, "the kills never left the old pair (%d) or never the new one (%d)", saw_old, saw_new);
    CHECK(read_pair(dir) == 2 && no_leftovers(dir), "an uninterrupted save did not leave step 2 cleanly");
}

/* A killed atomic write leaves NAME.new.tmp.PID: recovery removes it, readers ignore it. */
static void test_checkpoint_temporaries_cleaned(void) {
    char dir[256], junk[300];
    tl_tmp(dir, sizeof dir, "tmpjunk");
    Ckpt c;
    ckpt_make(&c, 5);
    CHECK(checkpoint_save(dir, &c.m, &c.tc, &c.opt, &c.st) == 0, "%s", ml_last_error());
    ckpt_free(&c);
    snprintf(junk, sizeof junk, "%s/model.safetensors.new.tmp.4242", dir);
    CHECK(ml_write_file_atomic(junk, "half", 4) == 0, "write");
    snprintf(junk, sizeof junk, "%s/optim.safetensors.new", dir); /* staged, never committed */
    CHECK(ml_write_file_atomic(junk, "half", 4) == 0, "write");
    CHECK(read_pair(dir) == 5, "a reader was misled by leftovers");
    CHECK(checkpoint_recover(dir) == 0 && no_leftovers(dir), "leftovers stay");
    CHECK(read_pair(dir) == 5, "recovery broke the pair");
}

int main(void) {
    if (tl_mktmp("commit")) return 1;
    RUN(test_checkpoint_kill_at_every_point);
    RUN(test_checkpoint_temporaries_cleaned);
    tl_rm_rf(tl_tmp_dir);
    TEST_MAIN_END();
}
