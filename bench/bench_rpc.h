/*
 * bench/bench_rpc.h: the Mach RPC round trip the cross-process benchmarks use as their
 * baseline (bench_node, bench_shm): a 64-byte request to a server port with a send-once
 * reply right, answered in place by a server thread. Included by each (static).
 * Thread safety: rpc_trips() on one reply port from one thread at a time.
 */
#ifndef MVM_BENCH_RPC_H
#define MVM_BENCH_RPC_H

#include <stdint.h>
#include <mach/mach.h>
#include "bench_common.h"

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"

#define RPC_WORDS 16              /* 64 bytes of payload */

struct rpc_msg {
	mach_msg_header_t head;
	mach_msg_type_t data_type;        /* INTEGER_32 x RPC_WORDS */
	int32_t data[RPC_WORDS];
};

static void
rpc_set_data_type(mach_msg_type_t *t)
{
	*t = (mach_msg_type_t){ .msgt_name = MACH_MSG_TYPE_INTEGER_32, .msgt_size = 32,
		.msgt_number = RPC_WORDS, .msgt_inline = 1 };
}

/* A server thread: answers every request on port (arg) in place, id + 100. */
static void *
rpc_server_main(void *arg)
{
	mach_port_t port = (mach_port_t)(uintptr_t)arg;
	union {
		struct rpc_msg m;
		char buf[512];
	} u;
	mach_msg_option_t opt = MACH_RCV_MSG;
	mach_msg_size_t send_size = 0;

	for (;;) {
		kern_return_t kr = mach_msg(&u.m.head, opt, send_size, sizeof(u), port,
		    MACH_MSG_TIMEOUT_NONE, MACH_PORT_NULL);

		if (kr != MACH_MSG_SUCCESS) {
			/* A reply that could not go (the client died): receive only. */
			opt = MACH_RCV_MSG;
			send_size = 0;
			continue;
		}
		/* Reply in place: the same payload, to the send-once right. */
		u.m.head.msgh_bits = MACH_MSGH_BITS(MACH_MSGH_BITS_REMOTE(u.m.head.msgh_bits), 0);
		u.m.head.msgh_local_port = MACH_PORT_NULL;
		u.m.head.msgh_id += 100;
		u.m.head.msgh_size = sizeof(u.m);
		opt = MACH_SEND_MSG | MACH_RCV_MSG;
		send_size = sizeof(u.m);
	}
	return NULL;
}

/*
 * n round trips with message id `id` to server, replies on reply: the mean microseconds
 * per round trip, or -1 with *kr set (a failed mach_msg; KERN_FAILURE: a wrong reply).
 */
static double
rpc_trips(mach_port_t server, mach_port_t reply, mach_msg_id_t id, unsigned n,
    kern_return_t *kr)
{
	union {
		struct rpc_msg m;
		char buf[512];
	} u;
	double t0 = now_us();

	for (unsigned i = 0; i < n; i++) {
		u.m.head.msgh_bits = MACH_MSGH_BITS(MACH_MSG_TYPE_COPY_SEND,
		    MACH_MSG_TYPE_MAKE_SEND_ONCE);
		u.m.head.msgh_size = sizeof(u.m);
		u.m.head.msgh_remote_port = server;
		u.m.head.msgh_local_port = reply;
		u.m.head.msgh_id = id;
		rpc_set_data_type(&u.m.data_type);
		u.m.data[0] = (int32_t)i;
		*kr = mach_msg(&u.m.head, MACH_SEND_MSG | MACH_RCV_MSG, sizeof(u.m), sizeof(u), reply,
		    MACH_MSG_TIMEOUT_NONE, MACH_PORT_NULL);
		if (*kr != MACH_MSG_SUCCESS)
			return -1;
		if (u.m.head.msgh_id != id + 100 || u.m.data[0] != (int32_t)i) {
			*kr = KERN_FAILURE;
			return -1;
		}
	}
	*kr = KERN_SUCCESS;
	return (now_us() - t0) / n;
}

#pragma GCC diagnostic pop

#endif /* MVM_BENCH_RPC_H */
