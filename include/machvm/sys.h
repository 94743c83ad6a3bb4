/*
 * <machvm/sys.h>: the table through which machvm makes every Linux call, so that tests
 * can override a call or make the Nth call fail. Not for production use.
 *
 * Thread safety: mvm_sys_inject() and mvm_sys_override() may be called while other threads
 * run; the change takes effect for calls that start after it.
 */
#ifndef MACHVM_SYS_H
#define MACHVM_SYS_H

#include <stddef.h>
#include <machvm/export.h>

#ifdef __cplusplus
extern "C" {
#endif

enum mvm_sys_call {
	MVM_SYS_MALLOC,
	MVM_SYS_CALLOC,
	MVM_SYS_REALLOC,
	MVM_SYS_MMAP,
	MVM_SYS_MUNMAP,
	MVM_SYS_MREMAP,
	MVM_SYS_MADVISE,
	MVM_SYS_PROCESS_VM_READV,
	MVM_SYS_FUTEX_WAIT,
	MVM_SYS_FUTEX_WAKE,
	MVM_SYS_USERFAULTFD,
	MVM_SYS_UFFD_IOCTL,
	MVM_SYS_MEMFD_CREATE,
	MVM_SYS_FTRUNCATE,
	MVM_SYS_FALLOCATE,
	MVM_SYS_PREAD,
	MVM_SYS_PWRITE,
	MVM_SYS_READ,
	MVM_SYS_POLL,
	MVM_SYS_SIGQUEUE,
	MVM_SYS_SOCKET,
	MVM_SYS_BIND,
	MVM_SYS_LISTEN,
	MVM_SYS_ACCEPT,
	MVM_SYS_CONNECT,
	MVM_SYS_SENDMSG,
	MVM_SYS_RECVMSG,
	MVM_SYS_GETSOCKOPT,
	MVM_SYS_EPOLL_CREATE,
	MVM_SYS_EPOLL_CTL,
	MVM_SYS_EPOLL_WAIT,
	MVM_SYS_EVENTFD,
	MVM_SYS_WRITE,
	MVM_SYS_FCNTL,
	MVM_SYS_GETRANDOM,
	MVM_SYS_OPEN,
	MVM_SYS_UNLINK,
	MVM_SYS_LINK,
	MVM_SYS_MKDIR,
	MVM_SYS_FSTAT,
	MVM_SYS_CALL_COUNT
};

/*
 * Make the nth next call (1 = the next one) of `call` fail with errno `err`; with
 * `persist`, every call after it fails too. nth = 0 disarms. Returns -1 for a bad call.
 */
MVM_EXTERN int mvm_sys_inject(enum mvm_sys_call call, unsigned nth, int err, int persist);

/* Disarm every injection. */
MVM_EXTERN void mvm_sys_inject_reset(void);

/* How many times `call` has been made (for tests that sweep the Nth failure). */
MVM_EXTERN unsigned long mvm_sys_count(enum mvm_sys_call call);

/*
 * Replace the function behind `call` (a pointer of the call's own type, see
 * src/sys/sys.h); NULL restores the default. Returns the previous function, or NULL for a
 * bad call.
 */
MVM_EXTERN void *mvm_sys_override(enum mvm_sys_call call, void *fn);

/* Name of a call, e.g. "mmap". */
MVM_EXTERN const char *mvm_sys_name(enum mvm_sys_call call);

#ifdef __cplusplus
}
#endif

#endif /* MACHVM_SYS_H */
