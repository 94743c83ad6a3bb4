/*
 * <machvm/memory_object.h>: machvm's native way to serve memory objects: ops tables with a
 * context pointer, and a registry from port to (ops, context) for programs that serve
 * several kinds of objects from one server loop.
 *
 * A Mach program instead defines the server routines of <mach/memory_object_server.h> and
 * runs mach_msg_server(memory_object_server, ...); both ways share one description of the
 * protocol (defs/memory_object.mdefs) and the same validation. The generated half of this
 * interface (the ops structs, their demultiplexers, the kernel-side senders and the
 * message size bounds) is <machvm/memory_object_ops.h>, included here.
 *
 * Ops contract. A member is called as member(ctx, request port, seqno, arguments...) after
 * the message passed every check. It runs in the demultiplexing thread with no machvm
 * lock held, may block and may call any machvm function. It returns KERN_SUCCESS when it
 * has taken the message's rights and out-of-line memory; any other result (MIG_NO_REPLY
 * aside) makes mach_msg_server() destroy them. A NULL member answers MIG_BAD_ID.
 * Tables are append-only: set version to MVM_MEMORY_OBJECT_OPS_VERSION.
 *
 * Thread safety: every function may be called from any thread. The registry is protected
 * by its own lock, which is never held while an ops member runs.
 */
#ifndef MACHVM_MEMORY_OBJECT_H
#define MACHVM_MEMORY_OBJECT_H

#include <mach/mach_types.h>
#include <mach/mig_errors.h>
#include <machvm/export.h>
#include <machvm/memory_object_ops.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Serve requests arriving on `port` with ops and ctx (through
 * mvm_memory_object_demux()). KERN_INVALID_ARGUMENT for a null or dead port name or a
 * NULL ops; KERN_NAME_EXISTS when the port is already registered;
 * KERN_RESOURCE_SHORTAGE when memory is short.
 */
MVM_EXTERN kern_return_t mvm_memory_object_register(mach_port_t port,
    const struct mvm_memory_object_ops *ops, void *ctx);

/*
 * Forget `port`. KERN_INVALID_NAME when it is not registered. A demultiplexer that has
 * already looked the port up may still call its ops once: the caller frees ctx only when
 * no server thread can be running for the port (for example after the receive right is
 * destroyed and the server loops have drained).
 */
MVM_EXTERN kern_return_t mvm_memory_object_unregister(mach_port_t port);

/*
 * A demultiplexer for mach_msg_server() that serves each request with the ops and
 * context registered for the port it arrived on (msgh_local_port). It handles both the
 * memory_object and the memory_object_default ids. FALSE, with RetCode MIG_BAD_ID, for
 * an unregistered port or an unknown id, so that it can be chained with other
 * demultiplexers. Use a receive buffer of at least MVM_MEMORY_OBJECT_MSG_SIZE_MAX bytes.
 */
MVM_EXTERN boolean_t mvm_memory_object_demux(mach_msg_header_t *in, mach_msg_header_t *out);

#ifdef __cplusplus
}
#endif

#endif /* MACHVM_MEMORY_OBJECT_H */
