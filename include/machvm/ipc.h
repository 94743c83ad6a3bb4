/*
 * <machvm/ipc.h>: machvm's own view of the IPC layer: counters, and the quiescence check
 * that every test ends with.
 * Thread safety: every function may be called from any thread; the counters are a
 * consistent snapshot taken under the IPC lock.
 */
#ifndef MACHVM_IPC_H
#define MACHVM_IPC_H

#include <stddef.h>
#include <stdint.h>
#include <mach/mach_types.h>
#include <machvm/export.h>

#ifdef __cplusplus
extern "C" {
#endif

struct mvm_ipc_stats {
	uint64_t names;          /* names in use in the task's name space */
	uint64_t ports;          /* live port objects (including ones only in messages) */
	uint64_t port_sets;      /* live port sets */
	uint64_t kmsgs;          /* messages allocated (queued or in transit) */
	uint64_t kmsgs_queued;   /* messages waiting on queues */
	uint64_t vm_bytes;       /* bytes of vm_allocate and out-of-line memory not yet freed */
	uint64_t msgs_sent;      /* messages enqueued since start */
	uint64_t msgs_received;  /* messages dequeued since start */
	uint64_t notifications;  /* notifications generated since start */
};

/* Snapshot of the IPC layer's counters. */
MVM_EXTERN void mvm_ipc_stats(struct mvm_ipc_stats *stats);

/*
 * Quiescence: KERN_SUCCESS when no name is in use, no port, set or message is alive and
 * every byte of IPC memory is freed; otherwise KERN_FAILURE, with a description of what
 * is left written to buf (at most len bytes, NUL-terminated) when buf is not NULL.
 * The calling thread's MIG reply port, if any, is ignored. machvm's own threads finish
 * work in flight asynchronously, so the check waits up to one second for them before it
 * fails.
 */
MVM_EXTERN kern_return_t mvm_ipc_quiescent(char *buf, size_t len);

/* Name of a kern_return_t / mach_msg_return_t / MIG code, e.g. "KERN_INVALID_NAME". */
MVM_EXTERN const char *mvm_errname(kern_return_t code);
/* Human text for the same codes (what mach_error_string() returns). */
MVM_EXTERN const char *mvm_strerror(kern_return_t code);

#ifdef __cplusplus
}
#endif

#endif /* MACHVM_IPC_H */
