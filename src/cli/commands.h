/* Subcommands of the moelab CLI; each parses its own flags and prints --help. */
#ifndef MOELAB_COMMANDS_H
#define MOELAB_COMMANDS_H
#include "data/shard.h"
#include "model/model.h"

int cmd_prepare(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_sample(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_tokenizer(int argc, char **argv);
int cmd_analyze(int argc, char **argv);
int cmd_compare(int argc, char **argv);
int cmd_report(int argc, char **argv);
int cmd_route(int argc, char **argv);
int cmd_export(int argc, char **argv);

/* Shared flag helper: true when argv[i] is -h or --help. */
int cli_is_help(const char *arg);
/* Matches argv[*i] against "--flag VALUE" or "--flag=VALUE": returns the value (advancing
 * *i past a separate value) or NULL when argv[*i] is another flag; sets *missing when
 * the flag is last with no value. */
const char *cli_flag_value(int argc, char **argv, int *i, const char *flag, int *missing);
/* Loads CHECKPOINT (run folder or .safetensors) and DATA/<split>.bin, checking they share a vocabulary. */
/* --router-opts at evaluation: the loaded model's routers re-made with other options (e.g.
 * mpmoe eval_select=topk); their state (counts, Sigma) stays as loaded. */
int cli_router_opts(Model *m, const char *opts);
int cli_load_model_and_split(const char *ckpt, const char *data, const char *split, Model *m, TrainConfig *tc, Shard *s);
/* Says on stderr when m (loaded from ckpt) holds NaN or Inf values. */
void cli_warn_nonfinite(const char *ckpt, const Model *m);

#endif
