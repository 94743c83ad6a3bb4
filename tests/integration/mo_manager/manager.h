/*
 * tests/integration/mo_manager/manager.h: what the Mach-only manager shows the test.
 * Thread safety: single-threaded test code.
 */
#ifndef MO_MANAGER_H
#define MO_MANAGER_H

#include <mach/mach.h>

struct manager_stats {
	int inits, requests, terminates;
	mach_port_seqno_t last_seqno;
};

extern struct manager_stats manager_stats;

/* Serve one message on object with memory_object_server (or the seqnos_ one). */
mach_msg_return_t manager_serve_once(mach_port_t object, int seqnos);

#endif /* MO_MANAGER_H */
