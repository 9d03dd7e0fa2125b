#define _GNU_SOURCE
#include <spawn.h>
/* Everything lives in include/csystem.h (static inline); SwiftPM needs one source file. */
#include "csystem.h"


int vp_spawn_close_from(posix_spawn_file_actions_t *actions, int from) {
    return posix_spawn_file_actions_addclosefrom_np(actions, from);
}
