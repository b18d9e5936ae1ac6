/* Unit tests of the sweep and report library (src/report): run-spec parsing, run configs,
 * reading logs that lack keys or end in a half-written line, grouping runs by label,
 * mean/sd and seed-paired deltas, and the CSV/Markdown tables. */
#include "core/util.h"
#include "report/results.h"
#include "report/runlog.h"
#include "report/sweep.h"
#include "testlib.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>


static void write_text(const char *dir, const char *name, const char *text) {
    char *p = path_join(dir, name);
    ml_mkdir_p(dir);
    ml_write_file_atomic(p, text, strlen(text));
    free(p);
}

static void test_parse_runs(void) {
    Sweep s;
    sweep_init(&s);
    int rc = sweep_parse_runs(&s, " a:topk:--renorm 1 --aux-coef=0.01 ; ;b : topk ;c:topk:--d_expert 64");
    CHECK(rc == 0, "parse failed: %s", ml_last_error());
    CHECK(s.n_specs == 3, "%d specs", s.n_specs);
    if (s.n_specs == 3) {
        CHECK(strcmp(s.specs[0].label, "a") == 0 && strcmp(s.specs[0].router, "topk") == 0, "spec 0");
        CHECK(s.specs[0].flags.n == 2 && strcmp(s.specs[0].flags.flag[1], "--aux-coef") == 0 &&
                  strcmp(s.specs[0].flags.value[1], "0.01") == 0, "--key=value form");
        CHECK(strcmp(s.specs[1].label, "b") == 0 && s.specs[1].flags.n == 0, "spaces around fields");
        CHECK(strcmp(s.specs[2].flags.flag[0], "--d-expert") == 0, "underscores normalised: %s", s.specs[2].flags.flag[0]);
    }
    const char *bad[] = {"a", "a:nosuch", "a:topk;a:topk", "a b:topk", "a:topk:--seed 2", "a:topk:--steps 9",
                         "a:topk:--batch 2", "a:topk:--router topk", "a:topk:--nosuch 1", "a:topk:--renorm", "a:topk:renorm 1",
                         "a:topk:--renorm x", ";;", NULL};
    for (int i = 0; bad[i]; i++) CHECK(sweep_parse_runs(&s, bad[i]) != 0, "accepted bad spec '%s'", bad[i]);
    sweep_free(&s);
}

static void test_variants_and_config(void) {
    Sweep s;
    sweep_init(&s);
    CHECK(sweep_parse_variants(&s, "topk,topk-norenorm,topk-noaux") == 0, "variants: %s", ml_last_error());
    CHECK(sweep_parse_variants(&s, "topk,bogus") != 0, "accepted an unknown variant");
    CHECK(sweep_parse_variants(&s, "topk-norenorm, topk") == 0, "variants again");
    CHECK(sweep_add_base_flag(&s, "--layers", "3") == 1, "base flag");
    CHECK(sweep_add_base_flag(&s, "--steps", "40") == 1, "the shared budget is a base flag");
    CHECK(sweep_add_base_flag(&s, "--seed", "4") < 0, "--seed accepted as a base flag");
    CHECK(sweep_add_base_flag(&s, "--data", "x") == 0, "--data taken for a config flag");
    TrainConfig tc;
    CHECK(sweep_run_config(&s, 0, 7, 3, 257, &tc) == 0, "config: %s", ml_last_error());
    CHECK(tc.model.n_layers == 3 && tc.steps == 40 && tc.seed == 7 && tc.threads == 3 && tc.model.renorm == 0 &&
              tc.model.vocab_size == 257 && strcmp(tc.model.router, "topk") == 0,
          "layers %d steps %d seed %llu threads %d renorm %d", tc.model.n_layers, tc.steps, (unsigned long long)tc.seed,
          tc.threads, tc.model.renorm);
    char name[64];
    sweep_run_name(&s, 1, 2, name, sizeof name);
    CHECK(strcmp(name, "topk-s2") == 0, "run name %s", name);
    /* A config that fails validation is an error before anything runs. */
    CHECK(sweep_add_base_flag(&s, "--heads", "5") == 1, "heads");
    CHECK(sweep_run_config(&s, 0, 1, 1, 257, &tc) != 0, "heads not dividing d_model accepted");
    sweep_free(&s);
}

static void test_stats(void) {
    double v[] = {1, 3, NAN, 2};
    Stat st = stat_of(v, 4);
    CHECK(st.n == 3 && fabs(st.mean - 2) < 1e-12 && fabs(st.sd - 1) < 1e-12, "n %d mean %g sd %g", st.n, st.mean, st.sd);
    st = stat_of(v, 1);
    CHECK(st.n == 1 && isnan(st.sd), "one value: sd %g", st.sd);
    st = stat_of(v + 2, 1);
    CHECK(st.n == 0 && isnan(st.mean), "no value");
    char buf[64];
    Stat d = {-0.01234, 0.005, 2};
    stat_format(&d, "%+.4f", buf, sizeof buf);
    CHECK(strcmp(buf, "-0.0123 ± 0.0050") == 0, "'%s'", buf);
    stat_format(&st, "%.3f", buf, sizeof buf);
    CHECK(strcmp(buf, "–") == 0, "'%s'", buf);
}

static void test_json_scalar(void) {
    cJSON *j = cJSON_Parse("{\"a\":2,\"b\":[1,[2,3],\"x\"],\"c\":null,\"d\":[],\"n\":{\"m\":{\"k\":5}}}");
    CHECK(json_scalar(j, "a") == 2, "number");
    CHECK(fabs(json_scalar(j, "b") - 2) < 1e-12, "nested mean %g", json_scalar(j, "b"));
    CHECK(isnan(json_scalar(j, "c")) && isnan(json_scalar(j, "d")) && isnan(json_scalar(j, "zz")), "null, empty, missing");
    const cJSON *k = json_find(j, "k", 3);
    CHECK(k && k->valuedouble == 5, "json_find nested");
    CHECK(json_find(j, "k", 1) == NULL, "json_find depth limit");
    cJSON_Delete(j);
}

/* A run folder with a log that has a garbage line and a half-written last line. */
static void make_run(const char *dir, int seed, double bpb, double tps) {
    char buf[4096];
    int n = 0;
    for (int s = 1; s <= 12; s++)
        n += snprintf(buf + n, sizeof buf - n, "{\"step\":%d,\"loss\":%g,\"tok_per_s\":%g,\"aux\":%g}\n", s, 5.0 - s * 0.1,
                      tps + s, s > 2 ? 1.0 : 3.0);
    n += snprintf(buf + n, sizeof buf - n, "not json\n{\"step\":12,\"val_loss\":%g,\"val_bpb\":%g,\"val_bpb_code\":%g}\n{\"step\":13,\"lo",
                  bpb * 0.69, bpb, bpb + 1);
    write_text(dir, "log.jsonl", buf);
    snprintf(buf, sizeof buf, "{\"seed\":%d,\"steps\":12,\"router\":\"topk\",\"renorm\":%d,\"lr\":0.00999999978}", seed,
             strstr(dir, "/b-") ? 0 : 1);
    write_text(dir, "config.json", buf);
}

static void test_runlog(void) {
    char *dir = path_join(tl_tmp_dir, "one");
    make_run(dir, 1, 2.0, 100);
    RunLog r;
    CHECK(runlog_load(&r, dir) == 0, "load: %s", ml_last_error());
    CHECK(r.n_train == 12 && r.n_eval == 1 && r.bad_lines == 2, "train %d eval %d bad %d", r.n_train, r.n_eval, r.bad_lines);
    CHECK(fabs(runlog_final(&r, "val_bpb") - 2.0) < 1e-12, "final val_bpb");
    CHECK(fabs(runlog_final(&r, "aux") - 1.0) < 1e-12, "aux: mean of the last 10 steps %g", runlog_final(&r, "aux"));
    CHECK(fabs(runlog_median(&r, "tok_per_s") - 106.5) < 1e-9, "median %g", runlog_median(&r, "tok_per_s"));
    CHECK(isnan(runlog_final(&r, "load_cv")), "missing key is NAN");
    CHECK(r.ckpt_step == -1 && strcmp(r.name, "one") == 0, "no checkpoint, name %s", r.name);
    runlog_free(&r);
    char *none = path_join(tl_tmp_dir, "none");
    CHECK(runlog_load(&r, none) != 0, "a folder without log.jsonl loaded");
    free(none);
    free(dir);
    /* A null loss is a divergence; a null routing metric the router does not define is not. */
    char *healthy = path_join(tl_tmp_dir, "healthy"), *diverged = path_join(tl_tmp_dir, "diverged");
    write_text(healthy, "log.jsonl", "{\"step\":1,\"loss\":2.5,\"grad_norm\":1,\"route_entropy\":null}\n"
                                      "{\"step\":2,\"loss\":2.4,\"grad_norm\":1,\"sel_mass\":null}\n");
    write_text(diverged, "log.jsonl", "{\"step\":1,\"loss\":2.5,\"grad_norm\":1}\n"
                                       "{\"step\":2,\"loss\":null,\"grad_norm\":null}\n");
    CHECK(runlog_load(&r, healthy) == 0 && r.nonfinite == 0, "undefined routing metrics counted as non-finite: %d",
          r.nonfinite);
    runlog_free(&r);
    CHECK(runlog_load(&r, diverged) == 0 && r.nonfinite == 1, "a null loss not counted: %d", r.nonfinite);
    runlog_free(&r);
    free(healthy), free(diverged);
}

static void test_runset_table(void) {
    char *sw = path_join(tl_tmp_dir, "sweep");
    const char *names[] = {"a-s1", "a-s2", "b-s1", "b-s2"};
    double bpb[] = {2.0, 2.2, 2.1, 2.4};
    for (int i = 0; i < 4; i++) {
        char *d = path_join(sw, names[i]);
        make_run(d, i % 2 + 1, bpb[i], i < 2 ? 100 : 50);
        free(d);
    }
    write_text(sw, "sweep.json", "{\"runs\":[{\"label\":\"b\"},{\"label\":\"a\"}]}");
    RunSet set = {0};
    CHECK(runset_add(&set, sw) == 0, "runset: %s", ml_last_error());
    runset_group(&set);
    CHECK(set.n_runs == 4 && set.n_groups == 2, "%d runs, %d groups", set.n_runs, set.n_groups);
    if (set.n_groups == 2) {
        CHECK(strcmp(set.groups[0].label, "b") == 0, "sweep.json order: first group %s", set.groups[0].label);
        CHECK(strcmp(set.groups[0].flags, "renorm=0") == 0, "distinguishing flags '%s'", set.groups[0].flags);
        CHECK(set.n_domains == 1 && strcmp(set.domains[0], "code") == 0, "domains");
        Table t;
        table_build(&set, 0, &t);
        int bpb_col = -1, dom = -1, load = -1;
        for (int c = 0; c < t.n_cols; c++) {
            if (strcmp(t.cols[c].name, "val_bpb") == 0) bpb_col = c;
            if (strcmp(t.cols[c].name, "val_bpb_code") == 0) dom = c;
            if (strcmp(t.cols[c].name, "load_cv") == 0) load = c;
        }
        CHECK(bpb_col >= 0 && dom >= 0 && load < 0, "columns: val_bpb %d, val_bpb_code %d, load_cv %d", bpb_col, dom, load);
        if (bpb_col >= 0) {
            Stat a = t.cell[1 * t.n_cols + bpb_col];
            CHECK(a.n == 2 && fabs(a.mean - 2.1) < 1e-9, "group a val_bpb mean %g", a.mean);
        }
        /* a - b paired by seed: (2.0-2.1, 2.2-2.4) -> mean -0.15 */
        CHECK(fabs(t.delta[1].mean + 0.15) < 1e-9 && t.delta[1].n == 2, "paired delta %g (n %d)", t.delta[1].mean, t.delta[1].n);
        char *csv = path_join(tl_tmp_dir, "r.csv");
        CHECK(results_write_csv(&set, &t, csv) == 0, "csv");
        char *text = ml_read_file(csv, NULL);
        CHECK(text && strncmp(text, "variant,router,flags,seeds,val_loss_mean,", 41) == 0, "csv header");
        CHECK(text && strstr(text, "\nb,topk,renorm=0,2,"), "csv row: %s", text ? text : "");
        free(text);
        free(csv);
        char *md = results_markdown(&set, &t, "note");
        CHECK(strstr(md, "| a | topk | renorm=1 | 2 |") && strstr(md, "(baseline)"), "markdown: %.300s", md);
        free(md);
        table_free(&t);
        /* finished_only: none of these runs has a checkpoint, so no cell counts */
        table_build(&set, 1, &t);
        CHECK(t.n_cols == 0 || t.cell[0].n == 0, "unfinished runs counted");
        table_free(&t);
    }
    runset_free(&set);
    free(sw);
}

int main(void) {
    if (tl_mktmp("test_report")) return 1;
    RUN(test_parse_runs);
    RUN(test_variants_and_config);
    RUN(test_stats);
    RUN(test_json_scalar);
    RUN(test_runlog);
    RUN(test_runset_table);
    tl_rm_rf(tl_tmp_dir);
    TEST_MAIN_END();
}
