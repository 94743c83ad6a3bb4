/*
 * src/sys/sys.h: the only way machvm calls Linux.
 *
 * Every call goes through one table of function pointers (tests may override an entry,
 * SQLite-style) and a countdown injector (tests may make the Nth call fail with a chosen
 * errno). Wrappers return a result and report failure as -errno (or NULL plus *err), so
 * errno never travels further; mvm__kr_from_errno() turns it into a kern_return_t once,
 * at this boundary.
 *
 * Thread safety: all wrappers may be called from any thread.
 */
#ifndef MVM_SYS_SYS_H
#define MVM_SYS_SYS_H

#include <stddef.h>
#include <stdint.h>
#include <pthread.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <time.h>
#include <mach/kern_return.h>
#include <machvm/sys.h>

/* The function types behind each table entry (what mvm_sys_override() takes). */
typedef void *mvm_sys_malloc_fn(size_t size);
typedef void *mvm_sys_calloc_fn(size_t n, size_t size);
typedef void *mvm_sys_realloc_fn(void *p, size_t size);
typedef void *mvm_sys_mmap_fn(void *addr, size_t len, int prot, int flags, int fd, off_t off);
typedef int mvm_sys_munmap_fn(void *addr, size_t len);
typedef void *mvm_sys_mremap_fn(void *old, size_t old_len, size_t new_len, int flags, void *new_addr);
typedef int mvm_sys_madvise_fn(void *addr, size_t len, int advice);
typedef ssize_t mvm_sys_process_vm_readv_fn(pid_t pid, const struct iovec *local,
    unsigned long liovcnt, const struct iovec *remote, unsigned long riovcnt,
    unsigned long flags);
typedef int mvm_sys_futex_wait_fn(uint32_t *addr, uint32_t val, const struct timespec *abs_mono);
typedef int mvm_sys_futex_wake_fn(uint32_t *addr, int n);

/* Allocation. NULL means ENOMEM (real or injected). */
void *mvm__malloc(size_t size);
void *mvm__calloc(size_t n, size_t size);
void *mvm__realloc(void *p, size_t size);
void mvm__free(void *p);

/* Memory mappings. Return MAP_FAILED-free results: NULL and *err = errno on failure. */
void *mvm__mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off, int *err);
int mvm__munmap(void *addr, size_t len); /* 0 or -errno */
void *mvm__mremap(void *old, size_t old_len, size_t new_len, int flags, void *new_addr, int *err);
int mvm__madvise(void *addr, size_t len, int advice);

/*
 * Copy len bytes from our own address src into dst without faulting on a bad src:
 * 0, or -EFAULT when src is not readable.
 */
int mvm__copy_checked(void *dst, const void *src, size_t len);

/*
 * Futex on a 32-bit word, process-private. wait: 0 when woken (or the value differed),
 * -ETIMEDOUT, -EINTR. abs_mono is an absolute CLOCK_MONOTONIC deadline or NULL.
 */
int mvm__futex_wait(uint32_t *addr, uint32_t val, const struct timespec *abs_mono);
void mvm__futex_wake(uint32_t *addr, int n);

/* Files, userfaultfd, signals. Each returns the result or -errno. */
typedef long mvm_sys_userfaultfd_fn(int flags);
typedef int mvm_sys_uffd_ioctl_fn(int fd, unsigned long req, void *arg);
typedef int mvm_sys_memfd_create_fn(const char *name, unsigned flags);
typedef int mvm_sys_ftruncate_fn(int fd, off_t len);
typedef int mvm_sys_fallocate_fn(int fd, int mode, off_t off, off_t len);
typedef ssize_t mvm_sys_pread_fn(int fd, void *buf, size_t len, off_t off);
typedef ssize_t mvm_sys_pwrite_fn(int fd, const void *buf, size_t len, off_t off);
typedef ssize_t mvm_sys_read_fn(int fd, void *buf, size_t len);
struct pollfd;
typedef int mvm_sys_poll_fn(struct pollfd *fds, unsigned long n, int timeout);
typedef int mvm_sys_sigqueue_fn(pid_t tgid, pid_t tid, int sig, void *siginfo);

int mvm__userfaultfd(int flags);                           /* fd or -errno */
int mvm__uffd_ioctl(int fd, unsigned long req, void *arg); /* 0 or -errno */
int mvm__memfd_create(const char *name, unsigned flags);   /* fd or -errno */
int mvm__ftruncate(int fd, off_t len);
int mvm__fallocate(int fd, int mode, off_t off, off_t len);
ssize_t mvm__pread(int fd, void *buf, size_t len, off_t off);  /* whole or -errno */
ssize_t mvm__pwrite(int fd, const void *buf, size_t len, off_t off);
ssize_t mvm__read(int fd, void *buf, size_t len);
int mvm__poll(struct pollfd *fds, unsigned long n, int timeout);
/* Queue signal `sig` (SI_QUEUE) with si_addr `addr` and si_value `value` to thread tid. */
int mvm__sigqueue_thread(pid_t tid, int sig, void *addr, void *value);
struct sigaction;
int mvm__sigaction(int sig, const struct sigaction *act, struct sigaction *old);
/* Deliver `sig` to the calling thread with its default action (async-signal-safe). */
void mvm__raise_default(int sig);
void mvm__close(int fd);
/*
 * Start one of machvm's own threads with every asynchronous signal blocked, so that a
 * handler the program installs never runs on a kernel, node or pager thread (where it
 * could fault on memory that thread serves, or re-enter a lock it holds). Synchronous
 * signals (SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGTRAP, SIGSYS) stay open. 0 or an errno.
 */
int mvm__thread_start(pthread_t *thread, void *(*fn)(void *), void *arg);

/*
 * Sockets, events and files for the node layer (src/ipc/node.c). Each returns the result
 * (an fd, a byte count, 0) or -errno; sockets and fds are made close-on-exec.
 */
struct sockaddr;
struct msghdr;
struct epoll_event;
struct stat;
typedef int mvm_sys_socket_fn(int domain, int type, int protocol);
typedef int mvm_sys_bind_fn(int fd, const struct sockaddr *sa, unsigned len);
typedef int mvm_sys_listen_fn(int fd, int backlog);
typedef int mvm_sys_accept_fn(int fd, struct sockaddr *sa, unsigned *len, int flags);
typedef int mvm_sys_connect_fn(int fd, const struct sockaddr *sa, unsigned len);
typedef ssize_t mvm_sys_sendmsg_fn(int fd, const struct msghdr *m, int flags);
typedef ssize_t mvm_sys_recvmsg_fn(int fd, struct msghdr *m, int flags);
typedef int mvm_sys_getsockopt_fn(int fd, int level, int opt, void *val, unsigned *len);
typedef int mvm_sys_epoll_create_fn(int flags);
typedef int mvm_sys_epoll_ctl_fn(int epfd, int op, int fd, struct epoll_event *ev);
typedef int mvm_sys_epoll_wait_fn(int epfd, struct epoll_event *ev, int n, int timeout);
typedef int mvm_sys_eventfd_fn(unsigned initval, int flags);
typedef ssize_t mvm_sys_write_fn(int fd, const void *buf, size_t len);
typedef int mvm_sys_fcntl_fn(int fd, int cmd, long arg);
typedef ssize_t mvm_sys_getrandom_fn(void *buf, size_t len, unsigned flags);
typedef int mvm_sys_open_fn(const char *path, int flags, unsigned mode);
typedef int mvm_sys_unlink_fn(const char *path);
typedef int mvm_sys_link_fn(const char *from, const char *to);
typedef int mvm_sys_mkdir_fn(const char *path, unsigned mode);
typedef int mvm_sys_fstat_fn(int fd, struct stat *st);

int mvm__socket(int domain, int type, int protocol);
int mvm__bind(int fd, const struct sockaddr *sa, unsigned len);
int mvm__listen(int fd, int backlog);
int mvm__accept(int fd);
int mvm__connect(int fd, const struct sockaddr *sa, unsigned len);
ssize_t mvm__sendmsg(int fd, const struct msghdr *m, int flags);   /* EINTR retried */
ssize_t mvm__recvmsg(int fd, struct msghdr *m, int flags);         /* EINTR retried */
int mvm__getsockopt(int fd, int level, int opt, void *val, unsigned *len);
int mvm__epoll_create(void);
int mvm__epoll_ctl(int epfd, int op, int fd, struct epoll_event *ev);
int mvm__epoll_wait(int epfd, struct epoll_event *ev, int n, int timeout); /* EINTR -> 0 */
int mvm__eventfd(void);
ssize_t mvm__write(int fd, const void *buf, size_t len);
int mvm__fcntl(int fd, int cmd, long arg);
int mvm__getrandom(void *buf, size_t len);                          /* 0 or -errno, whole */
int mvm__open(const char *path, int flags, unsigned mode);
int mvm__unlink(const char *path);
int mvm__link(const char *from, const char *to);
int mvm__mkdir(const char *path, unsigned mode);
int mvm__fstat(int fd, struct stat *st);

/* errno -> kern_return_t, the one conversion point. */
kern_return_t mvm__kr_from_errno(int err);

/* The system page size, known after first use. */
size_t mvm__page_size(void);

#define MVM_ROUND_PAGE(x) (((x) + mvm__page_size() - 1) & ~(mvm__page_size() - 1))
#define MVM_TRUNC_PAGE(x) ((x) & ~(mvm__page_size() - 1))

#endif /* MVM_SYS_SYS_H */
