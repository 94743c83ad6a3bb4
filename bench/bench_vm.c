/*
 * bench/bench_vm.c: the in-process kernel's page-in and flush paths, with a manager in a
 * thread of the same process serving from memory, each figure printed beside bare
 * userfaultfd baselines measured in the same run with the same thread placement.
 *
 * Contents: 1. options and placement  2. timing and statistics  3. the manager
 *           4. the bare userfaultfd handler  5. sequential fault-in  6. random fault
 *           latency  7. lock_request flush  8. main
 *
 * Measurements (the object is --pages pages, 64 MiB by default):
 *   sequential   read one byte of each page in order, fresh object each repetition;
 *                us/page and MB/s, with cluster 1 and 16 (mvm_vm_object_set_cluster)
 *   random       read --faults pages in a fixed random order, cluster 1; the latency of
 *                each fault at the faulting thread, p50 and p99 over every repetition
 *   flush        dirty every page, then memory_object_lock_request(RETURN_DIRTY, flush)
 *                over the whole object with the object port as reply, timed until
 *                lock_completed arrives (the manager stores each data_return); us/page
 *
 * Baselines, doing the ioctls machvm does:
 *   bare memfd   a handler thread on its own userfaultfd over a memfd MAP_SHARED mapping
 *                registered MISSING | MINOR | WP (as machvm's): on a missing page it
 *                pwrite()s the cluster from the store into the memfd, then
 *                UFFDIO_CONTINUE (MODE_WP for a read, as machvm maps clean pages) at the
 *                faulting page only; the cluster's other pages then take MINOR faults,
 *                which it answers with UFFDIO_CONTINUE, exactly as machvm does
 *   bare memfd, fault-around   the same, but CONTINUE maps the whole cluster at once
 *                (what machvm could do; only differs from the above with cluster > 1)
 *   bare anon COPY   a private anonymous mapping registered MISSING, UFFDIO_COPY of the
 *                cluster from the store (for reference: the cheapest uffd page-in)
 *   bare flush   UFFDIO_WRITEPROTECT over the range, pread() of the dirty pages into the
 *                store, fallocate(PUNCH_HOLE): once over the whole range, and in runs of
 *                32 pages (machvm's data_return size, so the same syscalls machvm makes)
 *
 * Placement. machvm's fault and control threads are created when the kernel starts and
 * are never pinned by machvm; they inherit the affinity of the thread that starts it.
 * So each placement runs in its own process (this program re-executes itself with
 * --placement): the process pins itself to the "handler CPU" before the kernel starts,
 * which puts the kernel's threads, the manager thread and the bare handler thread there,
 * then the measuring (faulting) thread pins itself to CPU 0.
 *   same-CPU    everything on CPU 0
 *   cross-CPU   faulting thread on CPU 0; kernel threads, manager, bare handler on CPU 1
 * The bare flush runs in the measuring thread (it needs no other thread). machvm's
 * lock_request is served in the thread that sends it, the measuring thread, as a Mach
 * kernel serves a call to a kernel object (the control thread only serves calls that
 * arrive while it is busy); the manager, on the handler CPU, stores the data_returns.
 * Likewise the manager's data_supply is served in the manager's thread.
 *
 * Each measurement runs --reps times (default 5; 3 with --quick) after a smaller
 * warm-up; the median and the best repetition are printed, and the ratio machvm/bare
 * of the medians (above 1 is slower).
 *
 * Usage: bench_vm [--pages N] [--faults N] [--reps R] [--quick]
 *                 [--only seq|rand|flush] [--placement same|cross] [--machvm-only]
 *   --only, --placement   run a subset; --machvm-only   no baselines, no ratios (e.g.
 *                         under perf record: the profile is then machvm's alone)
 * Exits 0 with a "skipped" line when userfaultfd is not usable here.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <mach/mach.h>
#include <machvm/ipc.h>
#include <machvm/memory_object.h>
#include <machvm/vm.h>
#include "sys/uffd_compat.h"
#include "bench_common.h"

extern char **environ;

#define PS 4096UL
#define MAX_REPS 64
#define RUN_PAGES 32            /* machvm's data_return size (DATA_RETURN_MAX) */
#define BIG_CLUSTER 16

/* ---- 1. options and placement --------------------------------------------------------- */

static size_t opt_pages = 16384;        /* 64 MiB */
static size_t opt_faults = 4096;
static unsigned opt_reps = 5;
static bool opt_quick;
static const char *opt_only;            /* "seq", "rand", "flush" or NULL for all */
static const char *opt_placement;       /* "same", "cross" or NULL: both, in children */
static bool opt_machvm_only;            /* no baselines (for perf record) */

struct placement {
	const char *name;
	int fault_cpu, handler_cpu;
};

static const struct placement placements[] = {
	{ "same-CPU", 0, 0 },
	{ "cross-CPU", 0, 1 },
};

static const struct placement *pl;

static void
die(const char *what)
{
	fprintf(stderr, "bench_vm: %s\n", what);
	exit(1);
}

static void
die_errno(const char *what)
{
	fprintf(stderr, "bench_vm: %s: %s\n", what, strerror(errno));
	exit(1);
}

static void
die_kr(const char *what, kern_return_t kr)
{
	fprintf(stderr, "bench_vm: %s: %s (0x%x)\n", what, mvm_errname(kr), (unsigned)kr);
	exit(1);
}

static void
pin_self(int cpu)
{
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	if (sched_setaffinity(0, sizeof(set), &set) != 0)
		die_errno("sched_setaffinity");
}

static bool
want(const char *what)
{
	return opt_only == NULL || strcmp(opt_only, what) == 0;
}

/* ---- 2. timing and statistics ------------------------------------------------------------ */

struct result {
	double median, min;     /* microseconds per page (or per fault) */
};

static struct result
summarize(double *v, unsigned n)
{
	struct result r;

	r.median = median(v, n); /* sorts v */
	r.min = v[0];
	return r;
}

/* The q-quantile (0..1) of sorted v. */
static double
quantile(const double *v, size_t n, double q)
{
	size_t i = (size_t)(q * (double)(n - 1) + 0.5);

	return v[i < n ? i : n - 1];
}

/* The store every figure pages in from (and the flush returns into). */
static unsigned char *store;

static unsigned char
pattern(size_t pg)
{
	return (unsigned char)(pg * 7 + 1);
}

static void
store_fill(void)
{
	for (size_t pg = 0; pg < opt_pages; pg++)
		memset(store + pg * PS, pattern(pg), PS);
}

/* ---- 3. the manager ------------------------------------------------------------------------ *
 *
 * One object port served by one thread (mach_msg_server). Every repetition maps the same
 * port again: the last unmapping terminates the cache object, the next vm_map makes a
 * new one (a new memfd, nothing resident) and sends init again on the same port.
 */

struct mgr {
	mach_port_t object;
	pthread_t thread;
	pthread_mutex_t mtx;
	pthread_cond_t cond;
	mach_port_t ctl;                /* control port of the current cache object */
	uint64_t lock_completed;        /* lock_completed messages received */
	uint64_t pages_returned;        /* pages received by data_return */
	uint64_t errors;                /* calls that failed in the manager */
	uint64_t inits, terminates;     /* cache objects begun and ended */
};

static struct mgr mgr;

static kern_return_t
m_init(void *ctx, memory_object_t obj, mach_port_seqno_t seqno, memory_object_control_t ctl,
    memory_object_name_t name, vm_size_t page_size)
{
	(void)ctx;
	(void)obj;
	(void)seqno;
	(void)name;
	(void)page_size;
	pthread_mutex_lock(&mgr.mtx);
	mgr.ctl = ctl;
	mgr.inits++;
	pthread_mutex_unlock(&mgr.mtx);
	if (memory_object_ready(ctl, FALSE, MEMORY_OBJECT_COPY_DELAY) != KERN_SUCCESS) {
		pthread_mutex_lock(&mgr.mtx);
		mgr.errors++;
		pthread_mutex_unlock(&mgr.mtx);
	}
	return KERN_SUCCESS;
}

static kern_return_t
m_terminate(void *ctx, memory_object_t obj, mach_port_seqno_t seqno, memory_object_control_t ctl,
    memory_object_name_t name)
{
	(void)ctx;
	(void)obj;
	(void)seqno;
	/* The control and name receive rights arrive here, under the names of the send
	 * rights earlier messages gave us: destroy the lot. */
	(void)mach_port_destroy(mach_task_self(), ctl);
	(void)mach_port_destroy(mach_task_self(), name);
	pthread_mutex_lock(&mgr.mtx);
	if (mgr.ctl == ctl)
		mgr.ctl = MACH_PORT_NULL;
	mgr.terminates++;
	pthread_cond_broadcast(&mgr.cond);
	pthread_mutex_unlock(&mgr.mtx);
	return KERN_SUCCESS;
}

static kern_return_t
m_data_request(void *ctx, memory_object_t obj, mach_port_seqno_t seqno,
    memory_object_control_t ctl, vm_offset_t off, vm_size_t len, vm_prot_t access)
{
	kern_return_t kr;

	(void)ctx;
	(void)obj;
	(void)seqno;
	(void)access;
	if (off + len > opt_pages * PS)
		kr = memory_object_data_error(ctl, off, len, KERN_INVALID_ADDRESS);
	else
		kr = memory_object_data_supply(ctl, off, (vm_offset_t)(store + off),
		    (mach_msg_type_number_t)len, FALSE, VM_PROT_NONE, FALSE, MACH_PORT_NULL);
	if (kr != KERN_SUCCESS) {
		pthread_mutex_lock(&mgr.mtx);
		mgr.errors++;
		pthread_mutex_unlock(&mgr.mtx);
	}
	return KERN_SUCCESS;
}

static kern_return_t
m_data_unlock(void *ctx, memory_object_t obj, mach_port_seqno_t seqno,
    memory_object_control_t ctl, vm_offset_t off, vm_size_t len, vm_prot_t access)
{
	(void)ctx;
	(void)obj;
	(void)seqno;
	(void)access;
	/* Not expected (pages are supplied unlocked); grant it anyway. */
	(void)memory_object_lock_request(ctl, off, len, MEMORY_OBJECT_RETURN_NONE, FALSE,
	    VM_PROT_NONE, MACH_PORT_NULL);
	return KERN_SUCCESS;
}

static kern_return_t
m_data_return(void *ctx, memory_object_t obj, mach_port_seqno_t seqno,
    memory_object_control_t ctl, vm_offset_t off, vm_offset_t data, mach_msg_type_number_t count,
    boolean_t dirty, boolean_t kernel_copy)
{
	(void)ctx;
	(void)obj;
	(void)seqno;
	(void)ctl;
	(void)dirty;
	(void)kernel_copy;
	if (off + count <= opt_pages * PS)
		memcpy(store + off, (const void *)data, count);
	(void)vm_deallocate(mach_task_self(), data, count);
	pthread_mutex_lock(&mgr.mtx);
	mgr.pages_returned += count / PS;
	pthread_mutex_unlock(&mgr.mtx);
	return KERN_SUCCESS;
}

static kern_return_t
m_lock_completed(void *ctx, memory_object_t reply, mach_port_seqno_t seqno,
    memory_object_control_t ctl, vm_offset_t off, vm_size_t len)
{
	(void)ctx;
	(void)reply;
	(void)seqno;
	(void)ctl;
	(void)off;
	(void)len;
	pthread_mutex_lock(&mgr.mtx);
	mgr.lock_completed++;
	pthread_cond_broadcast(&mgr.cond);
	pthread_mutex_unlock(&mgr.mtx);
	return KERN_SUCCESS;
}

static const struct mvm_memory_object_ops mgr_ops = {
	.version = MVM_MEMORY_OBJECT_OPS_VERSION,
	.init = m_init,
	.terminate = m_terminate,
	.data_request = m_data_request,
	.data_unlock = m_data_unlock,
	.data_return = m_data_return,
	.lock_completed = m_lock_completed,
};

static boolean_t
mgr_demux(mach_msg_header_t *in, mach_msg_header_t *out)
{
	return mvm_memory_object_server(&mgr_ops, NULL, in, out);
}

static void *
mgr_main(void *arg)
{
	mach_msg_return_t mr;

	(void)arg;
	pin_self(pl->handler_cpu);
	mr = mach_msg_server(mgr_demux, 8192, mgr.object);
	if (mr != MACH_RCV_PORT_DIED && mr != MACH_RCV_INVALID_NAME)
		die_kr("manager: mach_msg_server", mr);
	return NULL;
}

static void
mgr_start(void)
{
	kern_return_t kr;

	pthread_mutex_init(&mgr.mtx, NULL);
	pthread_cond_init(&mgr.cond, NULL);
	if ((kr = mach_port_allocate(mach_task_self(), MACH_PORT_RIGHT_RECEIVE, &mgr.object)) != 0 ||
	    (kr = mach_port_insert_right(mach_task_self(), mgr.object, mgr.object,
	    MACH_MSG_TYPE_MAKE_SEND)) != 0)
		die_kr("manager port", kr);
	if (pthread_create(&mgr.thread, NULL, mgr_main, NULL) != 0)
		die("pthread_create (manager)");
}

static void
mgr_stop(void)
{
	kern_return_t kr;
	struct timespec dl;

	/*
	 * The last unmapping's terminate may still be queued: take it first. Destroyed
	 * unread, it would take the control and name receive rights with it and leave the
	 * send rights earlier messages gave us as dead names.
	 */
	clock_gettime(CLOCK_REALTIME, &dl);
	dl.tv_sec += 5;
	pthread_mutex_lock(&mgr.mtx);
	while (mgr.terminates < mgr.inits &&
	    pthread_cond_timedwait(&mgr.cond, &mgr.mtx, &dl) == 0)
		;
	pthread_mutex_unlock(&mgr.mtx);
	/* Destroying the receive right ends mach_msg_server with MACH_RCV_PORT_DIED. */
	if ((kr = mach_port_destroy(mach_task_self(), mgr.object)) != KERN_SUCCESS)
		die_kr("mach_port_destroy (manager)", kr);
	pthread_join(mgr.thread, NULL);
	pthread_mutex_destroy(&mgr.mtx);
	pthread_cond_destroy(&mgr.cond);
}

static uint64_t
mgr_get(const uint64_t *field)
{
	uint64_t v;

	pthread_mutex_lock(&mgr.mtx);
	v = *field;
	pthread_mutex_unlock(&mgr.mtx);
	return v;
}

/* Map the object (a fresh cache object) with cluster `cluster`; wait until it is ready,
 * so that no figure includes init/ready. */
static volatile unsigned char *
mvm_map_object(size_t npages, unsigned cluster)
{
	vm_address_t a = 0;
	struct mvm_vm_object_stats st;
	kern_return_t kr;
	double t0;

	if ((kr = vm_map(mach_task_self(), &a, npages * PS, 0, TRUE, mgr.object, 0, FALSE,
	    VM_PROT_ALL, VM_PROT_ALL, VM_INHERIT_NONE)) != KERN_SUCCESS)
		die_kr("vm_map", kr);
	if ((kr = mvm_vm_object_set_cluster(mgr.object, cluster)) != KERN_SUCCESS)
		die_kr("mvm_vm_object_set_cluster", kr);
	t0 = now_us();
	for (;;) {
		struct timespec ts = { 0, 50000 };

		if ((kr = mvm_vm_object_stats(mgr.object, &st)) != KERN_SUCCESS)
			die_kr("mvm_vm_object_stats", kr);
		if (st.ready)
			break;
		if (now_us() - t0 > 10e6)
			die("the manager did not answer init within 10 s");
		nanosleep(&ts, NULL);
	}
	return (volatile unsigned char *)a;
}

static void
mvm_unmap_object(volatile unsigned char *p, size_t npages)
{
	kern_return_t kr;

	if ((kr = vm_deallocate(mach_task_self(), (vm_address_t)p, npages * PS)) != KERN_SUCCESS)
		die_kr("vm_deallocate", kr);
}

static struct mvm_vm_object_stats
mvm_stats(void)
{
	struct mvm_vm_object_stats st;
	kern_return_t kr;

	if ((kr = mvm_vm_object_stats(mgr.object, &st)) != KERN_SUCCESS)
		die_kr("mvm_vm_object_stats", kr);
	return st;
}

/* ---- 4. the bare userfaultfd handler ---------------------------------------------------- *
 *
 * One handler thread on one userfaultfd, serving whichever region is published in
 * bare.cur. A region is a memfd MAP_SHARED mapping (pwrite + CONTINUE) or a private
 * anonymous one (COPY).
 */

struct region {
	pthread_mutex_t mtx;            /* (m): the handler holds it while serving a batch */
	unsigned char *base;
	size_t npages;
	int memfd;                      /* -1: anonymous, UFFDIO_COPY */
	unsigned cluster;
	bool around;                    /* CONTINUE the whole cluster, not just the page */
	unsigned char *incache;         /* (m) per page: in the memfd */
	uint64_t faults;                /* (m) handler's count */
	uint64_t errors;                /* (m) */
};

/*
 * The measuring thread reads a region's counters and reuses or frees it only under its
 * mutex: what orders those accesses after the handler's is the fault being resolved,
 * which ThreadSanitizer cannot see.
 */
static uint64_t
region_get(struct region *r, const uint64_t *field)
{
	uint64_t v;

	pthread_mutex_lock(&r->mtx);
	v = *field;
	pthread_mutex_unlock(&r->mtx);
	return v;
}

static struct {
	int uffd;
	int stopfd;
	pthread_t thread;
	_Atomic(struct region *) cur;
} bare = { -1, -1, 0, NULL };

static int
open_uffd(void)
{
	int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);

	if (fd < 0 && (errno == EPERM || errno == EACCES)) {
		int dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);

		if (dev >= 0) {
			fd = ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
			close(dev);
		}
	}
	return fd;
}

/* A userfaultfd with the features the baselines use, or -1 with the reason in why. */
static int
bare_uffd(char *why, size_t len)
{
	const uint64_t need = UFFD_FEATURE_MISSING_SHMEM | UFFD_FEATURE_MINOR_SHMEM |
	    UFFD_FEATURE_WP_HUGETLBFS_SHMEM;
	struct uffdio_api api = { .api = UFFD_API, .features = need };
	int fd = open_uffd();

	if (fd < 0) {
		snprintf(why, len, "userfaultfd is not available here (%s)", strerror(errno));
		return -1;
	}
	if (ioctl(fd, UFFDIO_API, &api) != 0) {
		snprintf(why, len, "UFFDIO_API with shmem MISSING/MINOR/WP failed (%s)",
		    strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

static void
bare_wake(uintptr_t addr, size_t len)
{
	struct uffdio_range rg = { addr, len };

	(void)ioctl(bare.uffd, UFFDIO_WAKE, &rg);
}

static void
bare_fault(struct region *r, const struct uffd_msg *msg)
{
	uintptr_t addr = msg->arg.pagefault.address & ~(uintptr_t)(PS - 1);
	uint64_t flags = msg->arg.pagefault.flags;
	size_t pg = (addr - (uintptr_t)r->base) / PS, n = 1, map_n = 1;

	r->faults++;
	if (flags & UFFD_PAGEFAULT_FLAG_WP) {
		struct uffdio_writeprotect wp = { { addr, PS }, 0 };

		if (ioctl(bare.uffd, UFFDIO_WRITEPROTECT, &wp) != 0)
			bare_wake(addr, PS);
		return;
	}
	if (r->memfd < 0) {
		struct uffdio_copy c;

		while (n < r->cluster && pg + n < r->npages)
			n++;
		c = (struct uffdio_copy){ .dst = addr, .src = (uintptr_t)(store + pg * PS),
		    .len = n * PS, .mode = 0 };
		if (ioctl(bare.uffd, UFFDIO_COPY, &c) != 0) {
			if (errno != EEXIST)
				r->errors++;
			bare_wake(addr, PS);
		}
		return;
	}
	if (!r->incache[pg]) {
		/* Missing: the cluster goes into the memfd, as data_supply does. */
		while (n < r->cluster && pg + n < r->npages && !r->incache[pg + n])
			n++;
		if (pwrite(r->memfd, store + pg * PS, n * PS, (off_t)(pg * PS)) != (ssize_t)(n * PS))
			r->errors++;
		memset(r->incache + pg, 1, n);
		if (r->around)
			map_n = n;
	}
	{
		/* Clean pages are mapped write-protected, as machvm maps them. */
		struct uffdio_continue c = { { addr, map_n * PS },
		    (flags & UFFD_PAGEFAULT_FLAG_WRITE) ? 0 : UFFDIO_CONTINUE_MODE_WP, 0 };

		if (ioctl(bare.uffd, UFFDIO_CONTINUE, &c) != 0) {
			if (errno != EEXIST)
				r->errors++;
			bare_wake(addr, PS);
		}
	}
}

static void *
bare_main(void *arg)
{
	struct uffd_msg msgs[64];

	(void)arg;
	pin_self(pl->handler_cpu);
	for (;;) {
		struct pollfd pfd[2] = { { bare.uffd, POLLIN, 0 }, { bare.stopfd, POLLIN, 0 } };
		struct region *r;
		ssize_t n;

		if (poll(pfd, 2, -1) < 0)
			continue;
		if (pfd[1].revents & POLLIN)
			return NULL;
		n = read(bare.uffd, msgs, sizeof(msgs));
		if (n <= 0)
			continue;
		r = atomic_load_explicit(&bare.cur, memory_order_acquire);
		if (r != NULL)
			pthread_mutex_lock(&r->mtx);
		for (ssize_t i = 0; i < n / (ssize_t)sizeof(msgs[0]); i++) {
			if (msgs[i].event != UFFD_EVENT_PAGEFAULT)
				continue;
			if (r == NULL) {
				bare_wake(msgs[i].arg.pagefault.address & ~(uintptr_t)(PS - 1), PS);
				continue;
			}
			bare_fault(r, &msgs[i]);
		}
		if (r != NULL)
			pthread_mutex_unlock(&r->mtx);
	}
}

static void
bare_start(void)
{
	char why[200];

	if ((bare.uffd = bare_uffd(why, sizeof(why))) < 0)
		die(why);
	if ((bare.stopfd = eventfd(0, EFD_CLOEXEC)) < 0)
		die_errno("eventfd");
	if (pthread_create(&bare.thread, NULL, bare_main, NULL) != 0)
		die("pthread_create (bare handler)");
}

static void
bare_stop(void)
{
	uint64_t one = 1;

	if (write(bare.stopfd, &one, sizeof(one)) != sizeof(one))
		die_errno("write (eventfd)");
	pthread_join(bare.thread, NULL);
	close(bare.stopfd);
	close(bare.uffd);
}

/* Map and register a region; publish it to the handler. */
static void
bare_map(struct region *r, size_t npages, bool anon, unsigned cluster, bool around)
{
	struct uffdio_register reg;
	void *p;

	memset(r, 0, sizeof(*r));
	pthread_mutex_init(&r->mtx, NULL);
	r->npages = npages;
	r->cluster = cluster;
	r->around = around;
	r->memfd = -1;
	if (anon) {
		p = mmap(NULL, npages * PS, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	} else {
		if ((r->memfd = memfd_create("bench-bare", MFD_CLOEXEC)) < 0)
			die_errno("memfd_create");
		if (ftruncate(r->memfd, (off_t)(npages * PS)) != 0)
			die_errno("ftruncate");
		p = mmap(NULL, npages * PS, PROT_READ | PROT_WRITE, MAP_SHARED, r->memfd, 0);
	}
	if (p == MAP_FAILED)
		die_errno("mmap");
	r->base = p;
	if ((r->incache = calloc(npages, 1)) == NULL)
		die("out of memory");
	memset(&reg, 0, sizeof(reg));
	reg.range.start = (uintptr_t)p;
	reg.range.len = npages * PS;
	reg.mode = anon ? UFFDIO_REGISTER_MODE_MISSING : UFFDIO_REGISTER_MODE_MISSING |
	    UFFDIO_REGISTER_MODE_MINOR | UFFDIO_REGISTER_MODE_WP;
	if (ioctl(bare.uffd, UFFDIO_REGISTER, &reg) != 0)
		die_errno("UFFDIO_REGISTER");
	atomic_store_explicit(&bare.cur, r, memory_order_release);
}

/* Unpublish, unregister and unmap; returns the handler's error count. */
static uint64_t
bare_unmap(struct region *r)
{
	struct uffdio_range rg = { (uintptr_t)r->base, r->npages * PS };

	uint64_t errors;

	atomic_store_explicit(&bare.cur, NULL, memory_order_release);
	if (ioctl(bare.uffd, UFFDIO_UNREGISTER, &rg) != 0)
		die_errno("UFFDIO_UNREGISTER");
	/* The handler may still be in a batch that read the old pointer: wait it out. */
	pthread_mutex_lock(&r->mtx);
	errors = r->errors;
	munmap(r->base, r->npages * PS);
	if (r->memfd >= 0)
		close(r->memfd);
	free(r->incache);
	pthread_mutex_unlock(&r->mtx);
	pthread_mutex_destroy(&r->mtx);
	return errors;
}

/* ---- 5. sequential fault-in ------------------------------------------------------------ */

enum method { M_BARE, M_BARE_AROUND, M_BARE_COPY, M_MACHVM };

static const char *const method_name[] = {
	[M_BARE] = "bare memfd pwrite+CONTINUE",
	[M_BARE_AROUND] = "bare memfd, fault-around",
	[M_BARE_COPY] = "bare anon COPY",
	[M_MACHVM] = "machvm",
};

/* Read one byte per page in order; returns microseconds; counts wrong bytes. */
static double
touch_seq(volatile unsigned char *p, size_t npages, size_t *bad)
{
	double t0 = now_us(), t;

	for (size_t pg = 0; pg < npages; pg++)
		if (p[pg * PS] != pattern(pg))
			(*bad)++;
	t = now_us() - t0;
	return t;
}

/* One repetition: microseconds per page. */
static double
seq_once(enum method m, size_t npages, unsigned cluster, uint64_t *faults)
{
	size_t bad = 0;
	double us;

	if (m == M_MACHVM) {
		volatile unsigned char *p = mvm_map_object(npages, cluster);
		struct mvm_vm_object_stats st;

		us = touch_seq(p, npages, &bad);
		st = mvm_stats();
		*faults = st.faults;
		if (st.pages_supplied != npages)
			die("machvm: not every page was supplied once");
		mvm_unmap_object(p, npages);
	} else {
		struct region r;

		bare_map(&r, npages, m == M_BARE_COPY, cluster, m == M_BARE_AROUND);
		us = touch_seq(r.base, npages, &bad);
		*faults = region_get(&r, &r.faults);
		if (bare_unmap(&r) != 0)
			die("bare handler: an ioctl or pwrite failed");
	}
	if (bad != 0)
		die("a page read back wrong contents");
	return us / (double)npages;
}

static struct result
seq_measure(enum method m, unsigned cluster, uint64_t *faults)
{
	double per[MAX_REPS];
	uint64_t f = 0;

	(void)seq_once(m, opt_pages / 10 + 16 < opt_pages ? opt_pages / 10 + 16 : opt_pages,
	    cluster, &f);
	for (unsigned i = 0; i < opt_reps; i++)
		per[i] = seq_once(m, opt_pages, cluster, faults);
	return summarize(per, opt_reps);
}

static double goal_seq_ratio = 0;

static void
sequential(void)
{
	static const unsigned clusters[] = { 1, BIG_CLUSTER };

	printf("\nsequential fault-in, one read per page, fresh object each repetition\n");
	printf("%-9s %7s %-28s %9s %9s %9s %8s %8s\n", "placement", "cluster", "method",
	    "us/page", "min", "MB/s", "faults", "/bare");
	for (size_t c = 0; c < sizeof(clusters) / sizeof(clusters[0]); c++) {
		unsigned cl = clusters[c];
		struct result base = { 0, 0 };

		for (enum method m = M_BARE; m <= M_MACHVM; m++) {
			struct result r;
			uint64_t faults = 0;

			if ((m == M_BARE_AROUND && cl == 1) || (opt_machvm_only && m != M_MACHVM))
				continue; /* identical to M_BARE, or not asked for */
			r = seq_measure(m, cl, &faults);
			if (m == M_BARE)
				base = r;
			printf("%-9s %7u %-28s %9.2f %9.2f %9.0f %8.2f", pl->name, cl, method_name[m],
			    r.median, r.min, (double)PS / r.median, (double)faults / (double)opt_pages);
			if (m != M_BARE && base.median > 0)
				printf(" %7.2fx", r.median / base.median);
			printf("\n");
			fflush(stdout);
			if (m == M_MACHVM && cl == 1 && base.median > 0)
				goal_seq_ratio = r.median / base.median;
		}
	}
	printf("(faults: uffd faults per page; MB/s = 4096 B / median us)\n");
}

/* ---- 6. random fault latency --------------------------------------------------------------- */

static size_t *perm;

/* A fixed pseudo-random order of the pages (xorshift, Fisher-Yates). */
static void
make_perm(void)
{
	uint64_t x = 0x9e3779b97f4a7c15ULL;

	if ((perm = malloc(opt_pages * sizeof(*perm))) == NULL)
		die("out of memory");
	for (size_t i = 0; i < opt_pages; i++)
		perm[i] = i;
	for (size_t i = opt_pages - 1; i > 0; i--) {
		size_t j, t;

		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		j = (size_t)(x % (i + 1));
		t = perm[i];
		perm[i] = perm[j];
		perm[j] = t;
	}
}

/* Touch nf pages in perm order, one latency per fault into lat; returns mean us. */
static double
touch_rand(volatile unsigned char *p, size_t nf, double *lat, size_t *bad)
{
	double sum = 0;

	for (size_t i = 0; i < nf; i++) {
		size_t pg = perm[i];
		double t0 = now_us();
		unsigned char v = p[pg * PS];

		lat[i] = now_us() - t0;
		sum += lat[i];
		if (v != pattern(pg))
			(*bad)++;
	}
	return sum / (double)nf;
}

struct latency {
	struct result mean;     /* mean per repetition: median and best */
	double p50, p99;        /* over every fault of every repetition */
};

static struct latency
rand_measure(enum method m, size_t nf)
{
	double per[MAX_REPS];
	double *lat = malloc((size_t)opt_reps * nf * sizeof(double));
	double warm[64];
	struct latency l;

	if (lat == NULL)
		die("out of memory");
	for (unsigned i = 0; i <= opt_reps; i++) {
		/* Repetition 0 is a warm-up of a few faults. */
		size_t n = i == 0 ? (nf < 64 ? nf : 64) : nf;
		double *out = i == 0 ? warm : lat + (size_t)(i - 1) * nf;
		size_t bad = 0;
		double mean;

		if (m == M_MACHVM) {
			volatile unsigned char *p = mvm_map_object(opt_pages, 1);

			mean = touch_rand(p, n, out, &bad);
			mvm_unmap_object(p, opt_pages);
		} else {
			struct region r;

			bare_map(&r, opt_pages, m == M_BARE_COPY, 1, false);
			mean = touch_rand(r.base, n, out, &bad);
			if (bare_unmap(&r) != 0)
				die("bare handler: an ioctl or pwrite failed");
		}
		if (bad != 0)
			die("a page read back wrong contents");
		if (i > 0)
			per[i - 1] = mean;
	}
	l.mean = summarize(per, opt_reps);
	qsort(lat, (size_t)opt_reps * nf, sizeof(double), cmp_double);
	l.p50 = quantile(lat, (size_t)opt_reps * nf, 0.50);
	l.p99 = quantile(lat, (size_t)opt_reps * nf, 0.99);
	free(lat);
	return l;
}

static double goal_rand_ratio[2];      /* p50, p99 */

static void
random_faults(void)
{
	static const enum method ms[] = { M_BARE, M_BARE_COPY, M_MACHVM };
	size_t nf = opt_faults < opt_pages ? opt_faults : opt_pages;
	struct latency base = { { 0, 0 }, 0, 0 };

	printf("\nrandom single-page faults, cluster 1: %zu faults per repetition in a "
	    "%zu-page object (us per fault)\n", nf, opt_pages);
	printf("%-9s %-28s %9s %9s %9s %9s %8s %8s\n", "placement", "method", "p50", "p99",
	    "mean", "min mean", "p50/bare", "p99/bare");
	for (size_t i = 0; i < sizeof(ms) / sizeof(ms[0]); i++) {
		struct latency l;

		if (opt_machvm_only && ms[i] != M_MACHVM)
			continue;
		l = rand_measure(ms[i], nf);
		if (ms[i] == M_BARE)
			base = l;
		printf("%-9s %-28s %9.2f %9.2f %9.2f %9.2f", pl->name, method_name[ms[i]], l.p50,
		    l.p99, l.mean.median, l.mean.min);
		if (ms[i] != M_BARE && base.p50 > 0)
			printf(" %7.2fx %7.2fx", l.p50 / base.p50, l.p99 / base.p99);
		printf("\n");
		fflush(stdout);
		if (ms[i] == M_MACHVM && base.p50 > 0) {
			goal_rand_ratio[0] = l.p50 / base.p50;
			goal_rand_ratio[1] = l.p99 / base.p99;
		}
	}
	printf("(p50/p99 over all repetitions' faults; mean: median and best repetition)\n");
}

/* ---- 7. lock_request flush ------------------------------------------------------------- */

/* Write one byte per page (making every page resident and dirty). */
static void
dirty_all(volatile unsigned char *p, size_t npages, unsigned char mark)
{
	for (size_t pg = 0; pg < npages; pg++)
		p[pg * PS] = mark;
}

static void
check_store(size_t npages, unsigned char mark)
{
	for (size_t pg = 0; pg < npages; pg++)
		if (store[pg * PS] != mark)
			die("the flush did not bring a dirty page back to the store");
}

static void
xpread(int fd, unsigned char *buf, size_t len, off_t off)
{
	while (len > 0) {
		ssize_t n = pread(fd, buf, len, off);

		if (n <= 0)
			die_errno("pread");
		buf += n;
		len -= (size_t)n;
		off += n;
	}
}

/* The bare flush of [pg, pg + n): write-protect, read back, punch out. */
static void
bare_flush_range(struct region *r, size_t pg, size_t n)
{
	struct uffdio_writeprotect wp = { { (uintptr_t)r->base + pg * PS, n * PS },
	    UFFDIO_WRITEPROTECT_MODE_WP };

	if (ioctl(bare.uffd, UFFDIO_WRITEPROTECT, &wp) != 0)
		die_errno("UFFDIO_WRITEPROTECT");
	xpread(r->memfd, store + pg * PS, n * PS, (off_t)(pg * PS));
	if (fallocate(r->memfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)(pg * PS),
	    (off_t)(n * PS)) != 0)
		die_errno("fallocate");
}

enum flush_method { F_BARE, F_BARE_RUNS, F_MACHVM };

static const char *const flush_name[] = {
	[F_BARE] = "bare WP+pread+punch, 1 range",
	[F_BARE_RUNS] = "bare, 32-page runs",
	[F_MACHVM] = "machvm lock_request",
};

static struct result
flush_measure(enum flush_method fm, size_t npages)
{
	double per[MAX_REPS];
	volatile unsigned char *p = NULL;
	struct region r;

	if (fm == F_MACHVM)
		p = mvm_map_object(npages, BIG_CLUSTER);
	else
		bare_map(&r, npages, false, BIG_CLUSTER, false);
	for (unsigned i = 0; i <= opt_reps; i++) {
		unsigned char mark = (unsigned char)(0x80 + fm * 16 + i);
		double t0, t;

		/* Every page resident and dirty; in machvm a write to a missing page is
		 * supplied and mapped writable at once (no write-protect fault). */
		dirty_all(fm == F_MACHVM ? p : r.base, npages, mark);
		if (fm == F_MACHVM) {
			struct mvm_vm_object_stats st = mvm_stats();
			uint64_t want_done = mgr_get(&mgr.lock_completed) + 1;
			uint64_t returned = mgr_get(&mgr.pages_returned);
			mach_port_t ctl;
			kern_return_t kr;
			struct timespec dl;

			if (st.dirty != npages || st.resident != npages)
				die("machvm: pages not all resident and dirty before the flush");
			pthread_mutex_lock(&mgr.mtx);
			ctl = mgr.ctl;
			pthread_mutex_unlock(&mgr.mtx);
			clock_gettime(CLOCK_REALTIME, &dl);
			dl.tv_sec += 60;
			t0 = now_us();
			if ((kr = memory_object_lock_request(ctl, 0, npages * PS,
			    MEMORY_OBJECT_RETURN_DIRTY, TRUE, VM_PROT_NO_CHANGE, mgr.object)) != 0)
				die_kr("memory_object_lock_request", kr);
			pthread_mutex_lock(&mgr.mtx);
			while (mgr.lock_completed < want_done)
				if (pthread_cond_timedwait(&mgr.cond, &mgr.mtx, &dl) == ETIMEDOUT)
					die("no lock_completed within 60 s");
			pthread_mutex_unlock(&mgr.mtx);
			t = now_us() - t0;
			st = mvm_stats();
			if (mgr_get(&mgr.pages_returned) - returned != npages || st.resident != 0)
				die("machvm: the flush did not return and drop every page");
		} else {
			(void)region_get(&r, &r.faults); /* after the handler's reads of the store */
			t0 = now_us();
			if (fm == F_BARE) {
				bare_flush_range(&r, 0, npages);
			} else {
				for (size_t pg = 0; pg < npages; pg += RUN_PAGES)
					bare_flush_range(&r, pg, npages - pg < RUN_PAGES ?
					    npages - pg : RUN_PAGES);
			}
			t = now_us() - t0;
			pthread_mutex_lock(&r.mtx);
			memset(r.incache, 0, npages); /* punched: missing again */
			pthread_mutex_unlock(&r.mtx);
		}
		check_store(npages, mark);
		if (i > 0)
			per[i - 1] = t / (double)npages; /* repetition 0 is the warm-up */
	}
	if (fm == F_MACHVM)
		mvm_unmap_object(p, npages);
	else if (bare_unmap(&r) != 0)
		die("bare handler: an ioctl or pwrite failed");
	return summarize(per, opt_reps);
}

static double goal_flush_ratio;

static void
flush(void)
{
	struct result base = { 0, 0 }, m;

	printf("\nlock_request(RETURN_DIRTY, flush) of %zu dirty pages, until lock_completed "
	    "(us per page)\n", opt_pages);
	printf("%-9s %-30s %9s %9s %9s %8s %8s\n", "placement", "method", "us/page", "min",
	    "MB/s", "/bare", "/runs");
	if (!opt_machvm_only) {
		struct result runs;

		base = flush_measure(F_BARE, opt_pages);
		runs = flush_measure(F_BARE_RUNS, opt_pages);
		printf("%-9s %-30s %9.3f %9.3f %9.0f\n", pl->name, flush_name[F_BARE], base.median,
		    base.min, (double)PS / base.median);
		printf("%-9s %-30s %9.3f %9.3f %9.0f %7.2fx\n", pl->name, flush_name[F_BARE_RUNS],
		    runs.median, runs.min, (double)PS / runs.median, runs.median / base.median);
		fflush(stdout);
		m = flush_measure(F_MACHVM, opt_pages);
		printf("%-9s %-30s %9.3f %9.3f %9.0f %7.2fx %7.2fx\n", pl->name, flush_name[F_MACHVM],
		    m.median, m.min, (double)PS / m.median, m.median / base.median,
		    m.median / runs.median);
		goal_flush_ratio = m.median / base.median;
	} else {
		m = flush_measure(F_MACHVM, opt_pages);
		printf("%-9s %-30s %9.3f %9.3f %9.0f\n", pl->name, flush_name[F_MACHVM], m.median,
		    m.min, (double)PS / m.median);
	}
	printf("(the bare flush runs in the measuring thread; machvm's lock_request is served "
	    "in the measuring thread too, the manager storing the returns on the handler CPU)\n");
	fflush(stdout);
}

/* ---- 8. main ------------------------------------------------------------------------------ */

static void
usage(void)
{
	fprintf(stderr, "usage: bench_vm [--pages N] [--faults N] [--reps R] [--quick] "
	    "[--only seq|rand|flush] [--placement same|cross] [--machvm-only]\n");
	exit(2);
}

/* Run this program again for each placement; every child prints its own section. */
static int
run_children(int argc, char **argv)
{
	int status = 0;

	for (size_t i = 0; i < sizeof(placements) / sizeof(placements[0]); i++) {
		const struct placement *p = &placements[i];
		char **av = calloc((size_t)argc + 3, sizeof(char *));
		pid_t pid;
		int st, r;

		if (av == NULL)
			die("out of memory");
		if (!cpu_usable(p->fault_cpu) || !cpu_usable(p->handler_cpu)) {
			printf("\n%s: skipped: CPU %d or %d not available\n", p->name, p->fault_cpu,
			    p->handler_cpu);
			free(av);
			continue;
		}
		for (int j = 0; j < argc; j++)
			av[j] = argv[j];
		av[argc] = (char *)"--placement";
		av[argc + 1] = (char *)p->name;
		fflush(stdout);
		if ((r = posix_spawn(&pid, "/proc/self/exe", NULL, NULL, av, environ)) != 0) {
			errno = r;
			die_errno("posix_spawn");
		}
		free(av);
		if (waitpid(pid, &st, 0) < 0)
			die_errno("waitpid");
		if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
			fprintf(stderr, "bench_vm: the %s run failed (status 0x%x)\n", p->name, st);
			status = 1;
		}
	}
	return status;
}

static void
print_goals(void)
{
	if (opt_machvm_only)
		return;
	printf("\ngoals (%s): ", pl->name);
	if (want("rand"))
		printf("fault latency at most 1.3x bare: p50 %.2fx, p99 %.2fx: %s; ",
		    goal_rand_ratio[0], goal_rand_ratio[1],
		    goal_rand_ratio[0] <= 1.3 ? "met" : "NOT met");
	if (want("seq"))
		printf("sequential cluster 1: %.2fx; ", goal_seq_ratio);
	if (want("flush"))
		printf("flush at most 1.5x bare: %.2fx: %s", goal_flush_ratio,
		    goal_flush_ratio <= 1.5 ? "met" : "NOT met");
	printf("\n");
}

int
main(int argc, char **argv)
{
	bool reps_set = false, faults_set = false, pages_set = false;
	char why[256];
	kern_return_t kr;
	int fd;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--quick") == 0) {
			opt_quick = true;
		} else if (strcmp(argv[i], "--pages") == 0 && i + 1 < argc) {
			opt_pages = strtoul(argv[++i], NULL, 10);
			pages_set = true;
		} else if (strcmp(argv[i], "--faults") == 0 && i + 1 < argc) {
			opt_faults = strtoul(argv[++i], NULL, 10);
			faults_set = true;
		} else if (strcmp(argv[i], "--reps") == 0 && i + 1 < argc) {
			opt_reps = (unsigned)strtoul(argv[++i], NULL, 10);
			reps_set = true;
		} else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc) {
			opt_only = argv[++i];
		} else if (strcmp(argv[i], "--placement") == 0 && i + 1 < argc) {
			opt_placement = argv[++i];
		} else if (strcmp(argv[i], "--machvm-only") == 0) {
			opt_machvm_only = true;
		} else {
			usage();
		}
	}
	if (opt_only != NULL && strcmp(opt_only, "seq") != 0 && strcmp(opt_only, "rand") != 0 &&
	    strcmp(opt_only, "flush") != 0)
		usage();
	if (opt_quick) {
		if (!reps_set)
			opt_reps = 3;
		if (!pages_set)
			opt_pages = 4096;
		if (!faults_set)
			opt_faults = 1024;
	}
	if (opt_pages < 2 || opt_pages > ((size_t)1 << 22) || opt_faults == 0 || opt_reps == 0 ||
	    opt_reps > MAX_REPS)
		usage();

	if (opt_placement == NULL) {
		/* Probe without starting machvm's kernel (the children do that, pinned). */
		if ((fd = bare_uffd(why, sizeof(why))) < 0) {
			printf("bench_vm: skipped: %s\n", why);
			return 0;
		}
		close(fd);
		printf("bench_vm: %zu pages (%zu MiB), %u repetitions (median, best); random: "
		    "%zu faults\n", opt_pages, opt_pages * PS >> 20, opt_reps,
		    opt_faults < opt_pages ? opt_faults : opt_pages);
		printf("ratios: machvm/baseline of the medians, same placement; above 1 = slower\n");
		print_load("at start");
		fflush(stdout);
		{
			int st = run_children(argc, argv);

			printf("\n");
			print_load("at end");
			return st;
		}
	}
	for (size_t i = 0; i < sizeof(placements) / sizeof(placements[0]); i++)
		if (strncmp(opt_placement, placements[i].name, strlen(opt_placement)) == 0 &&
		    opt_placement[0] != '\0')
			pl = &placements[i];
	if (pl == NULL)
		usage();
	if (!cpu_usable(pl->fault_cpu) || !cpu_usable(pl->handler_cpu)) {
		printf("%s: skipped: CPU %d or %d not available\n", pl->name, pl->fault_cpu,
		    pl->handler_cpu);
		return 0;
	}
	/* Before the kernel starts: its threads inherit this mask. */
	pin_self(pl->handler_cpu);
	if ((kr = mvm_vm_available(why, sizeof(why))) != KERN_SUCCESS) {
		printf("bench_vm: skipped: %s\n", why);
		return 0;
	}
	if ((store = mmap(NULL, opt_pages * PS, PROT_READ | PROT_WRITE,
	    MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0)) == MAP_FAILED)
		die_errno("mmap (store)");
	store_fill();
	make_perm();
	mgr_start();
	bare_start();
	pin_self(pl->fault_cpu);
	printf("\n== %s: faulting thread on CPU %d; bare handler, manager and machvm's "
	    "fault and control threads on CPU %d ==\n", pl->name, pl->fault_cpu, pl->handler_cpu);
	fflush(stdout);

	if (want("seq"))
		sequential();
	if (want("rand"))
		random_faults();
	if (want("flush")) {
		flush();
		store_fill();
	}
	print_goals();

	bare_stop();
	mgr_stop();
	if (mgr.errors != 0)
		die("the manager saw failed calls");
	free(perm);
	munmap(store, opt_pages * PS);
	if (mvm_ipc_quiescent(why, sizeof(why)) != KERN_SUCCESS) {
		fprintf(stderr, "bench_vm: leak at the end: %s\n", why);
		return 1;
	}
	return 0;
}
