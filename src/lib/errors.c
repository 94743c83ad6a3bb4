/*
 * src/lib/errors.c: names and texts of kern_return_t, mach_msg_return_t and MIG codes,
 * from one X-macro list.
 */
#include <stdio.h>

#include <mach/mach.h>
#include <machvm/ipc.h>

#define MVM_ERRORS(X) \
	X(KERN_SUCCESS, "success") \
	X(KERN_INVALID_ADDRESS, "invalid address") \
	X(KERN_PROTECTION_FAILURE, "protection failure") \
	X(KERN_NO_SPACE, "no space available") \
	X(KERN_INVALID_ARGUMENT, "invalid argument") \
	X(KERN_FAILURE, "failure") \
	X(KERN_RESOURCE_SHORTAGE, "resource shortage") \
	X(KERN_NOT_RECEIVER, "not receiver") \
	X(KERN_NO_ACCESS, "no access") \
	X(KERN_MEMORY_FAILURE, "memory failure (object destroyed)") \
	X(KERN_MEMORY_ERROR, "memory error (manager could not supply)") \
	X(KERN_NOT_IN_SET, "not in set") \
	X(KERN_NAME_EXISTS, "name exists") \
	X(KERN_ABORTED, "aborted") \
	X(KERN_INVALID_NAME, "invalid name") \
	X(KERN_INVALID_TASK, "invalid task") \
	X(KERN_INVALID_RIGHT, "invalid right") \
	X(KERN_INVALID_VALUE, "invalid value") \
	X(KERN_UREFS_OVERFLOW, "user references overflow") \
	X(KERN_INVALID_CAPABILITY, "invalid capability") \
	X(KERN_RIGHT_EXISTS, "right exists") \
	X(KERN_INVALID_HOST, "invalid host") \
	X(KERN_MEMORY_PRESENT, "memory present") \
	X(KERN_WRITE_PROTECTION_FAILURE, "write protection failure") \
	X(KERN_TERMINATED, "terminated") \
	X(KERN_TIMEDOUT, "timed out") \
	X(KERN_INTERRUPTED, "interrupted") \
	X(MACH_SEND_IN_PROGRESS, "send: thread waiting for send") \
	X(MACH_SEND_INVALID_DATA, "send: bogus in-line data") \
	X(MACH_SEND_INVALID_DEST, "send: bogus destination port") \
	X(MACH_SEND_TIMED_OUT, "send: timed out") \
	X(MACH_SEND_WILL_NOTIFY, "send: will notify") \
	X(MACH_SEND_NOTIFY_IN_PROGRESS, "send: notify in progress") \
	X(MACH_SEND_INTERRUPTED, "send: interrupted") \
	X(MACH_SEND_MSG_TOO_SMALL, "send: message too small or truncated") \
	X(MACH_SEND_INVALID_REPLY, "send: bogus reply port") \
	X(MACH_SEND_INVALID_RIGHT, "send: bogus port right in message body") \
	X(MACH_SEND_INVALID_NOTIFY, "send: bogus notify port or unsupported notify option") \
	X(MACH_SEND_INVALID_MEMORY, "send: invalid out-of-line memory") \
	X(MACH_SEND_NO_BUFFER, "send: no message buffer") \
	X(MACH_SEND_NO_NOTIFY, "send: resource shortage for notification") \
	X(MACH_SEND_INVALID_TYPE, "send: invalid type descriptor") \
	X(MACH_SEND_INVALID_HEADER, "send: invalid header") \
	X(MACH_RCV_IN_PROGRESS, "receive: thread waiting for receive") \
	X(MACH_RCV_INVALID_NAME, "receive: bogus name for receive port or set") \
	X(MACH_RCV_TIMED_OUT, "receive: timed out") \
	X(MACH_RCV_TOO_LARGE, "receive: message too large for buffer") \
	X(MACH_RCV_INTERRUPTED, "receive: interrupted") \
	X(MACH_RCV_PORT_CHANGED, "receive: port moved into a set or away") \
	X(MACH_RCV_INVALID_NOTIFY, "receive: bogus notify port or unsupported notify option") \
	X(MACH_RCV_INVALID_DATA, "receive: bogus message buffer") \
	X(MACH_RCV_PORT_DIED, "receive: port or set destroyed while waiting") \
	X(MACH_RCV_IN_SET, "receive: port is a member of a set") \
	X(MACH_RCV_HEADER_ERROR, "receive: error receiving message header") \
	X(MACH_RCV_BODY_ERROR, "receive: error receiving message body") \
	X(MIG_TYPE_ERROR, "MIG: type check failure") \
	X(MIG_REPLY_MISMATCH, "MIG: wrong reply message id") \
	X(MIG_REMOTE_ERROR, "MIG: server detected error") \
	X(MIG_BAD_ID, "MIG: bad request message id") \
	X(MIG_BAD_ARGUMENTS, "MIG: server type check failure") \
	X(MIG_NO_REPLY, "MIG: no reply should be sent") \
	X(MIG_EXCEPTION, "MIG: server raised exception") \
	X(MIG_ARRAY_TOO_LARGE, "MIG: array not large enough") \
	X(MIG_SERVER_DIED, "MIG: server died") \
	X(MIG_DESTROY_REQUEST, "MIG: destroy request with no reply")

struct err_desc {
	kern_return_t code;
	const char *name;
	const char *text;
};

#define X(c, t) { c, #c, t },
static const struct err_desc errs[] = { MVM_ERRORS(X) };
#undef X

static const struct err_desc *
find(kern_return_t code)
{
	/* MACH_MSG_IPC_SPACE and friends are flags on a receive error. */
	kern_return_t base = code;

	if (((unsigned)code & 0xf0000000u) == 0x10000000u && (code & MACH_MSG_MASK))
		base = code & ~MACH_MSG_MASK;
	for (size_t i = 0; i < sizeof(errs) / sizeof(errs[0]); i++)
		if (errs[i].code == base)
			return &errs[i];
	return NULL;
}

const char *
mvm_errname(kern_return_t code)
{
	const struct err_desc *d = find(code);

	return d != NULL ? d->name : "unknown error code";
}

const char *
mvm_strerror(kern_return_t code)
{
	const struct err_desc *d = find(code);

	return d != NULL ? d->text : "unknown error code";
}

const char *
mach_error_string(kern_return_t code)
{
	return mvm_strerror(code);
}
