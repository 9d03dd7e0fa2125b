#ifndef VIOLIN_CSYSTEM_H
#define VIOLIN_CSYSTEM_H
/* The few system calls the thread primitives need that Swift's Glibc module does not show. */
#include <stdint.h>
#include <unistd.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>

/* Names the calling thread (15 characters at most), for top -H and perf. */
static inline void violin_set_thread_name(const char *name) { prctl(PR_SET_NAME, name, 0, 0, 0); }

/* A nonblocking eventfd: the waker a poll loop keeps beside its sockets or ports. */
static inline int violin_eventfd(void) { return eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC); }
static inline void violin_eventfd_signal(int fd) { uint64_t one = 1; (void)!write(fd, &one, sizeof one); }
static inline void violin_eventfd_drain(int fd) { uint64_t n; (void)!read(fd, &n, sizeof n); }
#include <spawn.h>
/* Every descriptor from `from` up closed in a spawned child (glibc's
 * posix_spawn_file_actions_addclosefrom_np): a child never holds its parent's sockets. */
int vp_spawn_close_from(posix_spawn_file_actions_t *actions, int from);

#endif
