/*
 * <machvm/trace.h>: one line of text for a memory object message, for logs and debuggers.
 *
 * The decoder knows every request and reply of the memory object interfaces (the tables
 * are generated from defs/memory_object.mdefs) and reads a message in one of two views,
 * chosen by its header: as received, when the local bits are MACH_MSG_TYPE_PORT_SEND or
 * MACH_MSG_TYPE_PORT_SEND_ONCE (port items then carry the received types, the request
 * port is the local port, and the seqno is shown), or else as about to be sent
 * (dispositions, the remote port). It never reads outside the bytes it is given,
 * whatever they hold.
 *
 * Thread safety: the functions keep no state and may be called from any thread.
 */
#ifndef MACHVM_TRACE_H
#define MACHVM_TRACE_H

#include <stddef.h>
#include <mach/mach_types.h>
#include <mach/mig_errors.h>
#include <machvm/export.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Write one line (no newline) describing msg to buf, at most len bytes including the
 * terminating NUL (nothing is written when len is 0), e.g.
 *   memory_object_data_request(memory_object=0x103, memory_control=0x203, offset=0x2000,
 *   length=0x1000, desired_access=READ) seqno=4
 * The message's own msgh_size bounds what is read. Returns KERN_SUCCESS for a well-formed
 * message of these interfaces, MIG_BAD_ID for an unknown id and MIG_BAD_ARGUMENTS for a
 * malformed one (the line then says what is wrong), as the demultiplexers would.
 */
MVM_EXTERN kern_return_t mvm_mo_decode(const mach_msg_header_t *msg, char *buf, size_t len);

/*
 * The same for `avail` bytes at msg that need not be a whole or aligned message; reads
 * stay within those bytes even when msgh_size claims more.
 */
MVM_EXTERN kern_return_t mvm_mo_decode_bytes(const void *msg, size_t avail, char *buf,
    size_t len);

/*
 * Trace every memory object message this process sends (kernel to manager and manager
 * to kernel), decoded as above and prefixed with its direction, e.g.
 *   "kernel -> manager: memory_object_data_request(...)". fn runs in the sending thread,
 *   possibly with machvm's locks held: it must not call machvm. NULL stops tracing.
 */
typedef void mvm_trace_fn(const char *line, void *arg);
MVM_EXTERN void mvm_trace_set(mvm_trace_fn *fn, void *arg);

#ifdef __cplusplus
}
#endif

#endif /* MACHVM_TRACE_H */
