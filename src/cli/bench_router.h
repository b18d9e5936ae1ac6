/* moelab bench --router NAME: a router's training step time and generation speed
 * against topk on the same model, measured in one process (src/cli/bench_router.c). */
#ifndef MOELAB_BENCH_ROUTER_H
#define MOELAB_BENCH_ROUTER_H

int bench_router(int argc, char **argv);

#endif
