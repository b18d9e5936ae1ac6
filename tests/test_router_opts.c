/* The typed router option table: defaults, parsing, range and key checks. */
#include "moe/router_opts.h"
#include "testlib.h"
#include <stddef.h>

typedef struct {
    double frac;
    int every, mode;
} Opts;

static const RouterOption TABLE[] = {
    {"frac", ROPT_FLOAT, offsetof(Opts, frac), 0.25, 0, 1, NULL, "a fraction"},
    {"every", ROPT_INT, offsetof(Opts, every), 3, 1, 100, NULL, "a period"},
    {"mode", ROPT_ENUM, offsetof(Opts, mode), 1, 0, 0, "alpha|beta|gamma", "a choice"},
    {0}};

static void test_defaults_and_values(void) {
    Opts o;
    CHECK(router_opts_parse("t", TABLE, "", &o) == 0, "empty options");
    CHECK(o.frac == 0.25 && o.every == 3 && o.mode == 1, "defaults %g %d %d", o.frac, o.every, o.mode);
    CHECK(router_opts_parse("t", TABLE, "every=7,mode=gamma,frac=0.5", &o) == 0, "valid options");
    CHECK(o.frac == 0.5 && o.every == 7 && o.mode == 2, "parsed %g %d %d", o.frac, o.every, o.mode);
}

static void test_refusals(void) {
    Opts o;
    const char *bad[] = {"nope=1", "frac=2", "frac=-0.1", "every=1.5", "every=0", "mode=delta", "frac", "frac=",
                         "=1", "frac=abc", "frac=nan", "every=1e400"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CHECK(router_opts_parse("t", TABLE, bad[i], &o) != 0, "'%s' was accepted", bad[i]);
    CHECK(router_opts_parse("t", NULL, "x=1", &o) != 0, "a router without options took one");
    CHECK(router_opts_parse("t", NULL, "", NULL) == 0, "a router without options refused none");
}

int main(void) {
    RUN(test_defaults_and_values);
    RUN(test_refusals);
    TEST_MAIN_END();
}
