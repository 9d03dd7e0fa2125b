#ifndef VIOLIN_CZEROMQ_SHIM_H
#define VIOLIN_CZEROMQ_SHIM_H
#include <zmq.h>
#include <errno.h>
#include <stdint.h>
#include <unistd.h>

/* Error numbers that zmq.h defines through macros Swift cannot import. */
static inline int violin_zmq_eterm(void) { return ETERM; }
static inline int violin_zmq_efsm(void) { return EFSM; }
static inline int violin_zmq_ehostunreach(void) { return EHOSTUNREACH; }
#endif
