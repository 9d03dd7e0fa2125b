#ifndef VIOLIN_CZEROMQ_SHIM_H
#define VIOLIN_CZEROMQ_SHIM_H
#include <zmq.h>
#include <errno.h>
#include <stdint.h>
#include <unistd.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>

/* Names the calling thread (15 characters at most), for top -H and perf. */
static inline void violin_set_thread_name(const char *name) { prctl(PR_SET_NAME, name, 0, 0, 0); }

/* A nonblocking eventfd: the waker a poll loop keeps beside its sockets. */
static inline int violin_eventfd(void) { return eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC); }
static inline void violin_eventfd_signal(int fd) { uint64_t one = 1; (void)!write(fd, &one, sizeof one); }
static inline void violin_eventfd_drain(int fd) { uint64_t n; (void)!read(fd, &n, sizeof n); }

/* Error numbers that zmq.h defines through macros Swift cannot import. */
static inline int violin_zmq_eterm(void) { return ETERM; }
static inline int violin_zmq_efsm(void) { return EFSM; }
static inline int violin_zmq_ehostunreach(void) { return EHOSTUNREACH; }
#endif
