/*
 * src/sys/sys.c: the Linux call table, fault injection, and errno conversion.
 * This is the only file of libmachvm that calls the Linux system interface for the IPC
 * and VM layers; see sys.h.
 */
#include <errno.h>
#include <linux/futex.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <mach/kern_return.h>
#include "sys/sys.h"

/* ---- defaults ------------------------------------------------------------------ */

static int
default_futex_wait(uint32_t *addr, uint32_t val, const struct timespec *abs_mono)
{
	long r = syscall(SYS_futex, addr, FUTEX_WAIT_BITSET | FUTEX_PRIVATE_FLAG, val, abs_mono,
	    NULL, FUTEX_BITSET_MATCH_ANY);

	if (r == 0)
		return 0;
	return errno == EAGAIN ? 0 : -errno;
}

static int
default_futex_wake(uint32_t *addr, int n)
{
	long r = syscall(SYS_futex, addr, FUTEX_WAKE | FUTEX_PRIVATE_FLAG, n, NULL, NULL, 0);

	return r < 0 ? -errno : (int)r;
}

static ssize_t
default_process_vm_readv(pid_t pid, const struct iovec *l, unsigned long lc,
    const struct iovec *r, unsigned long rc, unsigned long flags)
{
	return process_vm_readv(pid, l, lc, r, rc, flags);
}

static void *
default_mremap(void *old, size_t old_len, size_t new_len, int flags, void *new_addr)
{
	return mremap(old, old_len, new_len, flags, new_addr);
}

static long
default_userfaultfd(int flags)
{
	return syscall(SYS_userfaultfd, flags);
}

static int
default_uffd_ioctl(int fd, unsigned long req, void *arg)
{
	return ioctl(fd, req, arg);
}

static int
default_memfd_create(const char *name, unsigned flags)
{
	return memfd_create(name, flags);
}

static int
default_poll(struct pollfd *fds, unsigned long n, int timeout)
{
	return poll(fds, (nfds_t)n, timeout);
}

static int
default_sigqueue(pid_t tgid, pid_t tid, int sig, void *si)
{
	return (int)syscall(SYS_rt_tgsigqueueinfo, tgid, tid, sig, si);
}

static int
default_accept(int fd, struct sockaddr *sa, unsigned *len, int flags)
{
	return accept4(fd, sa, (socklen_t *)len, flags);
}

static int
default_getsockopt(int fd, int level, int opt, void *val, unsigned *len)
{
	return getsockopt(fd, level, opt, val, (socklen_t *)len);
}

static int
default_fcntl(int fd, int cmd, long arg)
{
	return fcntl(fd, cmd, arg);
}

static int
default_open(const char *path, int flags, unsigned mode)
{
	return open(path, flags, (mode_t)mode);
}

static int
default_mkdir(const char *path, unsigned mode)
{
	return mkdir(path, (mode_t)mode);
}

static int
default_bind(int fd, const struct sockaddr *sa, unsigned len)
{
	return bind(fd, sa, (socklen_t)len);
}

static int
default_connect(int fd, const struct sockaddr *sa, unsigned len)
{
	return connect(fd, sa, (socklen_t)len);
}

struct sys_entry {
	const char *name;
	void *dflt;
	_Atomic(void *) fn;
	/* Injection: fail the call whose ordinal is `fail_at` (and later ones if persist). */
	atomic_ulong count;
	atomic_ulong fail_at;
	atomic_int fail_errno;
	atomic_int persist;
};

static struct sys_entry table[MVM_SYS_CALL_COUNT] = {
	[MVM_SYS_MALLOC] = { .name = "malloc", .dflt = (void *)malloc },
	[MVM_SYS_CALLOC] = { .name = "calloc", .dflt = (void *)calloc },
	[MVM_SYS_REALLOC] = { .name = "realloc", .dflt = (void *)realloc },
	[MVM_SYS_MMAP] = { .name = "mmap", .dflt = (void *)mmap },
	[MVM_SYS_MUNMAP] = { .name = "munmap", .dflt = (void *)munmap },
	[MVM_SYS_MREMAP] = { .name = "mremap", .dflt = (void *)default_mremap },
	[MVM_SYS_MADVISE] = { .name = "madvise", .dflt = (void *)madvise },
	[MVM_SYS_PROCESS_VM_READV] = { .name = "process_vm_readv",
	    .dflt = (void *)default_process_vm_readv },
	[MVM_SYS_FUTEX_WAIT] = { .name = "futex_wait", .dflt = (void *)default_futex_wait },
	[MVM_SYS_FUTEX_WAKE] = { .name = "futex_wake", .dflt = (void *)default_futex_wake },
	[MVM_SYS_USERFAULTFD] = { .name = "userfaultfd", .dflt = (void *)default_userfaultfd },
	[MVM_SYS_UFFD_IOCTL] = { .name = "uffd_ioctl", .dflt = (void *)default_uffd_ioctl },
	[MVM_SYS_MEMFD_CREATE] = { .name = "memfd_create", .dflt = (void *)default_memfd_create },
	[MVM_SYS_FTRUNCATE] = { .name = "ftruncate", .dflt = (void *)ftruncate },
	[MVM_SYS_FALLOCATE] = { .name = "fallocate", .dflt = (void *)fallocate },
	[MVM_SYS_PREAD] = { .name = "pread", .dflt = (void *)pread },
	[MVM_SYS_PWRITE] = { .name = "pwrite", .dflt = (void *)pwrite },
	[MVM_SYS_READ] = { .name = "read", .dflt = (void *)read },
	[MVM_SYS_POLL] = { .name = "poll", .dflt = (void *)default_poll },
	[MVM_SYS_SIGQUEUE] = { .name = "sigqueue", .dflt = (void *)default_sigqueue },
	[MVM_SYS_SOCKET] = { .name = "socket", .dflt = (void *)socket },
	[MVM_SYS_BIND] = { .name = "bind", .dflt = (void *)default_bind },
	[MVM_SYS_LISTEN] = { .name = "listen", .dflt = (void *)listen },
	[MVM_SYS_ACCEPT] = { .name = "accept", .dflt = (void *)default_accept },
	[MVM_SYS_CONNECT] = { .name = "connect", .dflt = (void *)default_connect },
	[MVM_SYS_SENDMSG] = { .name = "sendmsg", .dflt = (void *)sendmsg },
	[MVM_SYS_RECVMSG] = { .name = "recvmsg", .dflt = (void *)recvmsg },
	[MVM_SYS_GETSOCKOPT] = { .name = "getsockopt", .dflt = (void *)default_getsockopt },
	[MVM_SYS_EPOLL_CREATE] = { .name = "epoll_create", .dflt = (void *)epoll_create1 },
	[MVM_SYS_EPOLL_CTL] = { .name = "epoll_ctl", .dflt = (void *)epoll_ctl },
	[MVM_SYS_EPOLL_WAIT] = { .name = "epoll_wait", .dflt = (void *)epoll_wait },
	[MVM_SYS_EVENTFD] = { .name = "eventfd", .dflt = (void *)eventfd },
	[MVM_SYS_WRITE] = { .name = "write", .dflt = (void *)write },
	[MVM_SYS_FCNTL] = { .name = "fcntl", .dflt = (void *)default_fcntl },
	[MVM_SYS_GETRANDOM] = { .name = "getrandom", .dflt = (void *)getrandom },
	[MVM_SYS_OPEN] = { .name = "open", .dflt = (void *)default_open },
	[MVM_SYS_UNLINK] = { .name = "unlink", .dflt = (void *)unlink },
	[MVM_SYS_LINK] = { .name = "link", .dflt = (void *)link },
	[MVM_SYS_MKDIR] = { .name = "mkdir", .dflt = (void *)default_mkdir },
	[MVM_SYS_FSTAT] = { .name = "fstat", .dflt = (void *)fstat },
};

/* Set while any injection is armed, so the common path costs one relaxed load. */
static atomic_int injecting;

static inline void *
fn_of(enum mvm_sys_call c)
{
	void *f = atomic_load_explicit(&table[c].fn, memory_order_acquire);

	return f != NULL ? f : table[c].dflt;
}

/* Count the call; return the errno to fail it with, or 0 to make it. */
static inline int
should_fail(enum mvm_sys_call c)
{
	struct sys_entry *e = &table[c];
	unsigned long n = atomic_fetch_add_explicit(&e->count, 1, memory_order_relaxed) + 1;
	unsigned long at;

	if (!atomic_load_explicit(&injecting, memory_order_relaxed))
		return 0;
	at = atomic_load(&e->fail_at);
	if (at == 0 || n < at)
		return 0;
	if (n == at || atomic_load(&e->persist))
		return atomic_load(&e->fail_errno);
	return 0;
}

/* ---- public control ----------------------------------------------------------- */

int
mvm_sys_inject(enum mvm_sys_call call, unsigned nth, int err, int persist)
{
	struct sys_entry *e;

	if ((unsigned)call >= MVM_SYS_CALL_COUNT)
		return -1;
	e = &table[call];
	atomic_store(&e->fail_errno, err);
	atomic_store(&e->persist, persist != 0);
	atomic_store(&e->fail_at, nth == 0 ? 0 : atomic_load(&e->count) + nth);
	if (nth != 0)
		atomic_store(&injecting, 1);
	return 0;
}

void
mvm_sys_inject_reset(void)
{
	for (int i = 0; i < MVM_SYS_CALL_COUNT; i++)
		atomic_store(&table[i].fail_at, 0);
	atomic_store(&injecting, 0);
}

unsigned long
mvm_sys_count(enum mvm_sys_call call)
{
	if ((unsigned)call >= MVM_SYS_CALL_COUNT)
		return 0;
	return atomic_load(&table[call].count);
}

void *
mvm_sys_override(enum mvm_sys_call call, void *fn)
{
	if ((unsigned)call >= MVM_SYS_CALL_COUNT)
		return NULL;
	void *old = fn_of(call);
	atomic_store_explicit(&table[call].fn, fn, memory_order_release);
	return old;
}

const char *
mvm_sys_name(enum mvm_sys_call call)
{
	if ((unsigned)call >= MVM_SYS_CALL_COUNT)
		return "?";
	return table[call].name;
}

/* ---- wrappers ------------------------------------------------------------------ */

void *
mvm__malloc(size_t size)
{
	if (should_fail(MVM_SYS_MALLOC))
		return NULL;
	return ((mvm_sys_malloc_fn *)fn_of(MVM_SYS_MALLOC))(size);
}

void *
mvm__calloc(size_t n, size_t size)
{
	if (should_fail(MVM_SYS_CALLOC))
		return NULL;
	return ((mvm_sys_calloc_fn *)fn_of(MVM_SYS_CALLOC))(n, size);
}

void *
mvm__realloc(void *p, size_t size)
{
	if (should_fail(MVM_SYS_REALLOC))
		return NULL;
	return ((mvm_sys_realloc_fn *)fn_of(MVM_SYS_REALLOC))(p, size);
}

void
mvm__free(void *p)
{
	free(p);
}

void *
mvm__mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off, int *err)
{
	int e = should_fail(MVM_SYS_MMAP);
	void *p;

	if (e) {
		*err = e;
		return NULL;
	}
	p = ((mvm_sys_mmap_fn *)fn_of(MVM_SYS_MMAP))(addr, len, prot, flags, fd, off);
	if (p == MAP_FAILED) {
		*err = errno;
		return NULL;
	}
	return p;
}

int
mvm__munmap(void *addr, size_t len)
{
	int e = should_fail(MVM_SYS_MUNMAP);

	if (e)
		return -e;
	if (((mvm_sys_munmap_fn *)fn_of(MVM_SYS_MUNMAP))(addr, len) < 0)
		return -errno;
	return 0;
}

void *
mvm__mremap(void *old, size_t old_len, size_t new_len, int flags, void *new_addr, int *err)
{
	int e = should_fail(MVM_SYS_MREMAP);
	void *p;

	if (e) {
		*err = e;
		return NULL;
	}
	p = ((mvm_sys_mremap_fn *)fn_of(MVM_SYS_MREMAP))(old, old_len, new_len, flags, new_addr);
	if (p == MAP_FAILED) {
		*err = errno;
		return NULL;
	}
	return p;
}

int
mvm__madvise(void *addr, size_t len, int advice)
{
	int e = should_fail(MVM_SYS_MADVISE);

	if (e)
		return -e;
	if (((mvm_sys_madvise_fn *)fn_of(MVM_SYS_MADVISE))(addr, len, advice) < 0)
		return -errno;
	return 0;
}

int
mvm__copy_checked(void *dst, const void *src, size_t len)
{
	static pid_t cached;
	pid_t self = __atomic_load_n(&cached, __ATOMIC_RELAXED);
	size_t done = 0;

	if (len == 0)
		return 0;
	if (self == 0) {
		self = getpid();
		__atomic_store_n(&cached, self, __ATOMIC_RELAXED);
	}
	while (done < len) {
		/* Integer arithmetic: src may be any number, NULL included. */
		struct iovec l = { (void *)((uintptr_t)dst + done), len - done };
		struct iovec r = { (void *)((uintptr_t)src + done), len - done };
		int e = should_fail(MVM_SYS_PROCESS_VM_READV);
		ssize_t n;

		if (e)
			return -e;
		n = ((mvm_sys_process_vm_readv_fn *)fn_of(MVM_SYS_PROCESS_VM_READV))(self, &l, 1,
		    &r, 1, 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			/* ESRCH after fork: fall back to our pid anew once. */
			if (errno == ESRCH && self != getpid()) {
				self = getpid();
				__atomic_store_n(&cached, self, __ATOMIC_RELAXED);
				continue;
			}
			return -errno;
		}
		if (n == 0)
			return -EFAULT;
		done += (size_t)n;
	}
	return 0;
}

int
mvm__futex_wait(uint32_t *addr, uint32_t val, const struct timespec *abs_mono)
{
	int e = should_fail(MVM_SYS_FUTEX_WAIT);

	if (e)
		return -e;
	return ((mvm_sys_futex_wait_fn *)fn_of(MVM_SYS_FUTEX_WAIT))(addr, val, abs_mono);
}

void
mvm__futex_wake(uint32_t *addr, int n)
{
	if (should_fail(MVM_SYS_FUTEX_WAKE))
		return;
	(void)((mvm_sys_futex_wake_fn *)fn_of(MVM_SYS_FUTEX_WAKE))(addr, n);
}

#define CALL(id, type) ((type *)fn_of(id))

int
mvm__userfaultfd(int flags)
{
	int e = should_fail(MVM_SYS_USERFAULTFD);
	long r;

	if (e)
		return -e;
	r = CALL(MVM_SYS_USERFAULTFD, mvm_sys_userfaultfd_fn)(flags);
	return r < 0 ? -errno : (int)r;
}

int
mvm__uffd_ioctl(int fd, unsigned long req, void *arg)
{
	int e = should_fail(MVM_SYS_UFFD_IOCTL);

	if (e)
		return -e;
	return CALL(MVM_SYS_UFFD_IOCTL, mvm_sys_uffd_ioctl_fn)(fd, req, arg) < 0 ? -errno : 0;
}

int
mvm__memfd_create(const char *name, unsigned flags)
{
	int e = should_fail(MVM_SYS_MEMFD_CREATE);
	int r;

	if (e)
		return -e;
	r = CALL(MVM_SYS_MEMFD_CREATE, mvm_sys_memfd_create_fn)(name, flags);
	return r < 0 ? -errno : r;
}

int
mvm__ftruncate(int fd, off_t len)
{
	int e = should_fail(MVM_SYS_FTRUNCATE);

	if (e)
		return -e;
	return CALL(MVM_SYS_FTRUNCATE, mvm_sys_ftruncate_fn)(fd, len) < 0 ? -errno : 0;
}

int
mvm__fallocate(int fd, int mode, off_t off, off_t len)
{
	int e = should_fail(MVM_SYS_FALLOCATE);

	if (e)
		return -e;
	return CALL(MVM_SYS_FALLOCATE, mvm_sys_fallocate_fn)(fd, mode, off, len) < 0 ? -errno : 0;
}

ssize_t
mvm__pread(int fd, void *buf, size_t len, off_t off)
{
	size_t done = 0;

	while (done < len) {
		int e = should_fail(MVM_SYS_PREAD);
		ssize_t n;

		if (e)
			return -e;
		n = CALL(MVM_SYS_PREAD, mvm_sys_pread_fn)(fd, (char *)buf + done, len - done,
		    off + (off_t)done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0) {
			memset((char *)buf + done, 0, len - done); /* past the end reads as zeros */
			break;
		}
		done += (size_t)n;
	}
	return (ssize_t)len;
}

ssize_t
mvm__pwrite(int fd, const void *buf, size_t len, off_t off)
{
	size_t done = 0;

	while (done < len) {
		int e = should_fail(MVM_SYS_PWRITE);
		ssize_t n;

		if (e)
			return -e;
		n = CALL(MVM_SYS_PWRITE, mvm_sys_pwrite_fn)(fd, (const char *)buf + done, len - done,
		    off + (off_t)done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		done += (size_t)n;
	}
	return (ssize_t)len;
}

ssize_t
mvm__read(int fd, void *buf, size_t len)
{
	int e = should_fail(MVM_SYS_READ);
	ssize_t n;

	if (e)
		return -e;
	n = CALL(MVM_SYS_READ, mvm_sys_read_fn)(fd, buf, len);
	return n < 0 ? -errno : n;
}

int
mvm__poll(struct pollfd *fds, unsigned long n, int timeout)
{
	int e = should_fail(MVM_SYS_POLL);
	int r;

	if (e)
		return -e;
	r = CALL(MVM_SYS_POLL, mvm_sys_poll_fn)(fds, n, timeout);
	return r < 0 ? -errno : r;
}

int
mvm__sigqueue_thread(pid_t tid, int sig, void *addr, void *value)
{
	siginfo_t si;
	int e = should_fail(MVM_SYS_SIGQUEUE);

	if (e)
		return -e;
	/*
	 * Linux lets a thread send a signal with a kernel si_code (BUS_OBJERR) only to
	 * itself, so this is an SI_QUEUE signal. si_addr and si_value do not overlap in
	 * siginfo_t, so the receiver sees both; machvm's SIGBUS handler turns it into a
	 * BUS_OBJERR signal for the program's handler.
	 */
	memset(&si, 0, sizeof(si));
	si.si_signo = sig;
	si.si_code = SI_QUEUE;
	si.si_addr = addr;
	si.si_value.sival_ptr = value;
	return CALL(MVM_SYS_SIGQUEUE, mvm_sys_sigqueue_fn)(getpid(), tid, sig, &si) < 0 ? -errno : 0;
}

int
mvm__sigaction(int sig, const struct sigaction *act, struct sigaction *old)
{
	return sigaction(sig, act, old) < 0 ? -errno : 0;
}

int
mvm__thread_start(pthread_t *thread, void *(*fn)(void *), void *arg)
{
	static const int sync_sigs[] = { SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGTRAP, SIGSYS };
	sigset_t all, old;
	int r;

	sigfillset(&all);
	for (size_t i = 0; i < sizeof(sync_sigs) / sizeof(sync_sigs[0]); i++)
		sigdelset(&all, sync_sigs[i]);
	(void)pthread_sigmask(SIG_SETMASK, &all, &old);
	r = pthread_create(thread, NULL, fn, arg);
	(void)pthread_sigmask(SIG_SETMASK, &old, NULL);
	return r;
}

void
mvm__raise_default(int sig)
{
	struct sigaction dfl;

	memset(&dfl, 0, sizeof(dfl));
	dfl.sa_handler = SIG_DFL;
	(void)sigaction(sig, &dfl, NULL);
	(void)syscall(SYS_tgkill, getpid(), (pid_t)syscall(SYS_gettid), sig);
}

void
mvm__close(int fd)
{
	if (fd >= 0)
		(void)close(fd);
}

kern_return_t
mvm__kr_from_errno(int err)
{
	if (err < 0)
		err = -err;
	switch (err) {
	case 0:
		return KERN_SUCCESS;
	case ENOMEM:
	case EAGAIN:
	case ENOSPC:
		return KERN_RESOURCE_SHORTAGE;
	case EFAULT:
		return KERN_INVALID_ADDRESS;
	case EINVAL:
	case E2BIG:
		return KERN_INVALID_ARGUMENT;
	case EEXIST:
		return KERN_NO_SPACE;
	case EPERM:
	case EACCES:
		return KERN_PROTECTION_FAILURE;
	case ETIMEDOUT:
		return KERN_TIMEDOUT;
	case EINTR:
		return KERN_INTERRUPTED;
	default:
		return KERN_FAILURE;
	}
}

size_t
mvm__page_size(void)
{
	static size_t cached;
	size_t ps = __atomic_load_n(&cached, __ATOMIC_RELAXED);

	if (ps == 0) {
		ps = (size_t)sysconf(_SC_PAGESIZE);
		__atomic_store_n(&cached, ps, __ATOMIC_RELAXED);
	}
	return ps;
}

/* ---- sockets, events, files (the node layer) ----------------------------------- */

/* The common shape: count, maybe fail, call, map -1 to -errno. */
#define SIMPLE(id, type, ...) do {					\
	int e_ = should_fail(id);					\
	long r_;							\
									\
	if (e_)								\
		return -e_;						\
	r_ = (long)CALL(id, type)(__VA_ARGS__);				\
	return r_ < 0 ? -errno : r_;					\
} while (0)

int
mvm__socket(int domain, int type, int protocol)
{
	SIMPLE(MVM_SYS_SOCKET, mvm_sys_socket_fn, domain, type | SOCK_CLOEXEC, protocol);
}

int
mvm__bind(int fd, const struct sockaddr *sa, unsigned len)
{
	SIMPLE(MVM_SYS_BIND, mvm_sys_bind_fn, fd, sa, len);
}

int
mvm__listen(int fd, int backlog)
{
	SIMPLE(MVM_SYS_LISTEN, mvm_sys_listen_fn, fd, backlog);
}

int
mvm__accept(int fd)
{
	SIMPLE(MVM_SYS_ACCEPT, mvm_sys_accept_fn, fd, NULL, NULL, SOCK_CLOEXEC);
}

int
mvm__connect(int fd, const struct sockaddr *sa, unsigned len)
{
	SIMPLE(MVM_SYS_CONNECT, mvm_sys_connect_fn, fd, sa, len);
}

ssize_t
mvm__sendmsg(int fd, const struct msghdr *m, int flags)
{
	for (;;) {
		int e = should_fail(MVM_SYS_SENDMSG);
		ssize_t r;

		if (e)
			return -e;
		r = CALL(MVM_SYS_SENDMSG, mvm_sys_sendmsg_fn)(fd, m, flags | MSG_NOSIGNAL);
		if (r >= 0)
			return r;
		if (errno != EINTR)
			return -errno;
	}
}

ssize_t
mvm__recvmsg(int fd, struct msghdr *m, int flags)
{
	for (;;) {
		int e = should_fail(MVM_SYS_RECVMSG);
		ssize_t r;

		if (e)
			return -e;
		r = CALL(MVM_SYS_RECVMSG, mvm_sys_recvmsg_fn)(fd, m, flags | MSG_CMSG_CLOEXEC);
		if (r >= 0)
			return r;
		if (errno != EINTR)
			return -errno;
	}
}

int
mvm__getsockopt(int fd, int level, int opt, void *val, unsigned *len)
{
	SIMPLE(MVM_SYS_GETSOCKOPT, mvm_sys_getsockopt_fn, fd, level, opt, val, len);
}

int
mvm__epoll_create(void)
{
	SIMPLE(MVM_SYS_EPOLL_CREATE, mvm_sys_epoll_create_fn, EPOLL_CLOEXEC);
}

int
mvm__epoll_ctl(int epfd, int op, int fd, struct epoll_event *ev)
{
	SIMPLE(MVM_SYS_EPOLL_CTL, mvm_sys_epoll_ctl_fn, epfd, op, fd, ev);
}

int
mvm__epoll_wait(int epfd, struct epoll_event *ev, int n, int timeout)
{
	int e = should_fail(MVM_SYS_EPOLL_WAIT);
	int r;

	if (e)
		return -e;
	r = CALL(MVM_SYS_EPOLL_WAIT, mvm_sys_epoll_wait_fn)(epfd, ev, n, timeout);
	if (r < 0)
		return errno == EINTR ? 0 : -errno;
	return r;
}

int
mvm__eventfd(void)
{
	SIMPLE(MVM_SYS_EVENTFD, mvm_sys_eventfd_fn, 0, EFD_CLOEXEC | EFD_NONBLOCK);
}

ssize_t
mvm__write(int fd, const void *buf, size_t len)
{
	SIMPLE(MVM_SYS_WRITE, mvm_sys_write_fn, fd, buf, len);
}

int
mvm__fcntl(int fd, int cmd, long arg)
{
	SIMPLE(MVM_SYS_FCNTL, mvm_sys_fcntl_fn, fd, cmd, arg);
}

int
mvm__getrandom(void *buf, size_t len)
{
	size_t done = 0;

	while (done < len) {
		int e = should_fail(MVM_SYS_GETRANDOM);
		ssize_t n;

		if (e)
			return -e;
		n = CALL(MVM_SYS_GETRANDOM, mvm_sys_getrandom_fn)((char *)buf + done, len - done, 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		done += (size_t)n;
	}
	return 0;
}

int
mvm__open(const char *path, int flags, unsigned mode)
{
	SIMPLE(MVM_SYS_OPEN, mvm_sys_open_fn, path, flags | O_CLOEXEC, mode);
}

int
mvm__unlink(const char *path)
{
	SIMPLE(MVM_SYS_UNLINK, mvm_sys_unlink_fn, path);
}

int
mvm__link(const char *from, const char *to)
{
	SIMPLE(MVM_SYS_LINK, mvm_sys_link_fn, from, to);
}

int
mvm__mkdir(const char *path, unsigned mode)
{
	SIMPLE(MVM_SYS_MKDIR, mvm_sys_mkdir_fn, path, mode);
}

int
mvm__fstat(int fd, struct stat *st)
{
	SIMPLE(MVM_SYS_FSTAT, mvm_sys_fstat_fn, fd, st);
}
