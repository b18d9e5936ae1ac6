/* Every router, by name. Adding a router: its own file in src/routers/ and one line here. */
#include "moe/router.h"
#include <string.h>

extern const RouterSpec router_topk;
extern const RouterSpec router_mpmoe;

static const RouterSpec *const ROUTERS[] = {
    &router_topk,
    &router_mpmoe,
    NULL,
};

const RouterSpec *const *router_all(void) { return ROUTERS; }

const RouterSpec *router_find(const char *name) {
    for (int i = 0; ROUTERS[i]; i++)
        if (strcmp(ROUTERS[i]->name, name) == 0) return ROUTERS[i];
    return NULL;
}
