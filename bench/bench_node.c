/*
 * bench/bench_node.c: ports across processes (<machvm/node.h>) against what a program
 * would do by hand between the same two processes, measured in the same run.
 *
 * Contents: 1. options, placement, helpers  2. the server process  3. RPC round trip
 *           4. fault latency  5. the client process  6. main
 *
 * Two processes: the client (the measuring process) and the server, which the client
 * starts (fork, then exec, before either has a machvm thread) with one end of a Unix
 * SOCK_SEQPACKET socketpair. The server offers, at once:
 *   - a Mach RPC port, checked in as bench.PID.rpc: each request (a header and 64 bytes
 *     inline) is answered with a reply of the same size through its send-once right
 *     (receive and reply in one mach_msg call, as a Mach server does);
 *   - a memory object served from memory by the pager framework (read_pages copies from
 *     an in-memory store), checked in as bench.PID.obj;
 *   - on the socketpair, a thread that answers a 96-byte message (the size of the Mach
 *     request) with 96 bytes, and an 8-byte page offset with the 4096 bytes of that page.
 *
 * Measurements:
 *   RPC round trip   --iters round trips per repetition: mach_msg(SEND|RCV) to the RPC
 *                    port (machvm: the message crosses the node sockets both ways) against
 *                    send()+recv() of the same 96 bytes on the socketpair (the raw
 *                    baseline); mean microseconds per round trip, median over --reps.
 *                    Goal: machvm at most 1.2x the raw socket.
 *   fault latency    --pages single-page faults per repetition in a fixed random order,
 *                    each timed at the faulting thread: machvm maps the object (cluster 1,
 *                    a fresh mapping each repetition) so that every fault is a
 *                    data_request to the manager in the server and a data_supply back,
 *                    whose page travels as out-of-line memory; the baseline is a bare
 *                    userfaultfd handler thread in the client over an anonymous mapping
 *                    that, per fault, sends the offset on the socketpair, receives the
 *                    4096 bytes and does UFFDIO_COPY. p50 and p99 over every fault of
 *                    every repetition. Goal: machvm at most 1.3x the baseline.
 *
 * Placement. Every thread of a process inherits the CPU the process pinned itself to
 * before its first thread (machvm's kernel, node and pager threads included):
 *   same-CPU    client and server on CPU 0
 *   split       client on CPU 0, server on CPU 1
 * Each placement runs with its own pair of processes (the client re-executes itself).
 *
 * Usage: bench_node [--iters N] [--pages N] [--reps R] [--quick] [--placement same|split]
 * Exit 0; the fault figures are skipped (with a line saying so) where userfaultfd is not
 * usable, and the split placement where CPU 1 is not.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <mach/mach.h>
#include <mach/netname.h>
#include <machvm/machvm.h>
#include <machvm/node.h>
#include <machvm/pager.h>
#include <machvm/vm.h>
#include "sys/uffd_compat.h"
#include "bench_common.h"
#include "bench_rpc.h"

#define PS 4096UL
#define MAX_REPS 64
#define SOCK_FD 3                 /* the server's end of the socketpair */
#define RPC_ID 4500
#define STORE_PAGES 4096          /* the object: 16 MiB */

/* ---- 1. options, placement, helpers ------------------------------------------------------ */

static unsigned opt_iters = 20000;
static size_t opt_pages = 2048;
static unsigned opt_reps = 5;
static const char *opt_placement;

struct placement {
	const char *name;
	int client_cpu, server_cpu;
};

static const struct placement placements[] = {
	{ "same", 0, 0 },
	{ "split", 0, 1 },
};

static void
die(const char *what)
{
	fprintf(stderr, "bench_node: %s\n", what);
	exit(1);
}

static void
die_errno(const char *what)
{
	fprintf(stderr, "bench_node: %s: %s\n", what, strerror(errno));
	exit(1);
}

static void
die_kr(const char *what, kern_return_t kr)
{
	fprintf(stderr, "bench_node: %s: %s (0x%x)\n", what, mvm_errname(kr), (unsigned)kr);
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

static double
quantile(const double *v, size_t n, double q)
{
	size_t i = (size_t)(q * (double)(n - 1) + 0.5);

	return v[i < n ? i : n - 1];
}

/* The store's page pg: a byte pattern both sides can check. */
static unsigned char
pattern(size_t pg, size_t i)
{
	return (unsigned char)(pg * 13 + i);
}

static void
name_of(char *buf, size_t len, pid_t server, const char *what)
{
	snprintf(buf, len, "bench.%d.%s", (int)server, what);
}

/* ---- 2. the server process ---------------------------------------------------------------- */

static unsigned char *store;

static kern_return_t
store_read(void *upi, vm_offset_t offset, void *buf, vm_size_t len, boolean_t *unavailable,
    boolean_t *write_lock)
{
	(void)upi, (void)unavailable, (void)write_lock;
	if (offset + len > STORE_PAGES * PS)
		return KERN_MEMORY_ERROR;
	memcpy(buf, store + offset, len);
	return KERN_SUCCESS;
}

static const struct mvm_pager_ops store_ops = {
	.version = MVM_PAGER_OPS_VERSION,
	.name = "bench-store",
	.read_pages = store_read,
};

/* Answer the socketpair until it closes (the client is gone), then exit. */
static void
socket_server(int fd)
{
	unsigned char buf[PS];

	for (;;) {
		ssize_t n = recv(fd, buf, sizeof(buf), 0);

		if (n <= 0)
			exit(0);
		if (n == sizeof(uint64_t)) {
			uint64_t off;

			memcpy(&off, buf, sizeof(off));
			if (off + PS > STORE_PAGES * PS)
				off = 0;
			if (send(fd, store + off, PS, 0) != (ssize_t)PS)
				exit(1);
		} else if (send(fd, buf, (size_t)n, 0) != n)
			exit(1);
	}
}

static int
server_main(int cpu)
{
	char name[sizeof(netname_name_t)];
	struct mvm_pager *pager;
	mach_port_t rpc, obj;
	pthread_t t;
	kern_return_t kr;

	pin_self(cpu);
	store = malloc(STORE_PAGES * PS);
	if (store == NULL)
		die("no memory for the store");
	for (size_t pg = 0; pg < STORE_PAGES; pg++)
		for (size_t i = 0; i < PS; i++)
			store[pg * PS + i] = pattern(pg, i);
	if ((kr = mach_port_allocate(mach_task_self(), MACH_PORT_RIGHT_RECEIVE, &rpc)) != 0)
		die_kr("mach_port_allocate", kr);
	name_of(name, sizeof(name), getpid(), "rpc");
	if ((kr = netname_check_in(name_server_port, name, MACH_PORT_NULL, rpc)) != 0)
		die_kr("netname_check_in", kr);
	if ((kr = mvm_pager_create(&store_ops, NULL, NULL, &pager, &obj)) != 0)
		die_kr("mvm_pager_create", kr);
	name_of(name, sizeof(name), getpid(), "obj");
	if ((kr = netname_check_in(name_server_port, name, MACH_PORT_NULL, obj)) != 0)
		die_kr("netname_check_in", kr);
	if (pthread_create(&t, NULL, rpc_server_main, (void *)(uintptr_t)rpc) != 0)
		die("pthread_create");
	if (send(SOCK_FD, "R", 1, 0) != 1)
		die_errno("send");
	socket_server(SOCK_FD);
	return 0;
}

/* ---- 3. RPC round trip -------------------------------------------------------------------- */

/* Mean microseconds per round trip over n Mach RPCs. */
static double
rpc_mach(mach_port_t server, mach_port_t reply, unsigned n)
{
	kern_return_t kr;
	double us = rpc_trips(server, reply, RPC_ID, n, &kr);

	if (us < 0)
		die_kr("RPC round trip", kr);
	return us;
}

/* The same bytes as a raw socket round trip. */
static double
rpc_raw(int fd, unsigned n)
{
	struct rpc_msg m, r;
	double t0;

	memset(&m, 0, sizeof(m));
	rpc_set_data_type(&m.data_type);
	t0 = now_us();
	for (unsigned i = 0; i < n; i++) {
		m.data[0] = (int32_t)i;
		if (send(fd, &m, sizeof(m), 0) != (ssize_t)sizeof(m) ||
		    recv(fd, &r, sizeof(r), 0) != (ssize_t)sizeof(r))
			die_errno("socket round trip");
		if (r.data[0] != (int32_t)i)
			die("wrong socket reply");
	}
	return (now_us() - t0) / n;
}

static void
rpc_bench(pid_t server, int fd)
{
	char name[sizeof(netname_name_t)];
	double vm[MAX_REPS], vr[MAX_REPS], m, r;
	struct mvm_node_stats n0, n1;
	mach_port_t port, reply;
	kern_return_t kr;

	name_of(name, sizeof(name), server, "rpc");
	if ((kr = netname_look_up(name_server_port, "", name, &port)) != 0)
		die_kr("netname_look_up", kr);
	if ((kr = mach_port_allocate(mach_task_self(), MACH_PORT_RIGHT_RECEIVE, &reply)) != 0)
		die_kr("mach_port_allocate", kr);
	(void)rpc_mach(port, reply, opt_iters / 10 + 1);    /* warm-up */
	(void)rpc_raw(fd, opt_iters / 10 + 1);
	/* Interleaved, so that a burst of other load hits both alike. */
	(void)mvm_node_stats(&n0);
	for (unsigned rep = 0; rep < opt_reps; rep++) {
		vm[rep] = rpc_mach(port, reply, opt_iters);
		vr[rep] = rpc_raw(fd, opt_iters);
	}
	(void)mvm_node_stats(&n1);
	m = median(vm, opt_reps);
	r = median(vr, opt_reps);
	printf("  RPC round trip, %zu-byte request and reply, %u per repetition:\n"
	    "    machvm mach_msg across processes  %8.2f us  (best %.2f)\n"
	    "    raw SOCK_SEQPACKET                %8.2f us  (best %.2f)\n"
	    "    ratio machvm/raw                  %8.2f     (goal <= 1.2)\n"
	    "    node frames per round trip: %.2f out, %.2f in (%.0f and %.0f bytes)\n",
	    sizeof(struct rpc_msg), opt_iters, m, vm[0], r, vr[0], m / r,
	    (double)(n1.frames_out - n0.frames_out) / opt_iters / opt_reps,
	    (double)(n1.frames_in - n0.frames_in) / opt_iters / opt_reps,
	    (double)(n1.bytes_out - n0.bytes_out) / opt_iters / opt_reps,
	    (double)(n1.bytes_in - n0.bytes_in) / opt_iters / opt_reps);
	(void)mach_port_deallocate(mach_task_self(), port);
	(void)mach_port_mod_refs(mach_task_self(), reply, MACH_PORT_RIGHT_RECEIVE, -1);
}

/* ---- 4. fault latency --------------------------------------------------------------------- */

/* A fixed pseudo-random order of the STORE_PAGES pages (xorshift, Fisher-Yates). */
static size_t *
random_order(void)
{
	size_t *all = malloc(STORE_PAGES * sizeof(size_t));
	uint64_t x = 0x9e3779b97f4a7c15ull;

	if (all == NULL)
		die("no memory");
	for (size_t i = 0; i < STORE_PAGES; i++)
		all[i] = i;
	for (size_t i = STORE_PAGES - 1; i > 0; i--) {
		size_t j, t;

		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		j = (size_t)(x % (i + 1));
		t = all[i], all[i] = all[j], all[j] = t;
	}
	return all;
}

/* Touch the pages of order[0..n) at base, each timed (us) into lat; checks the data. */
static void
touch_timed(volatile unsigned char *base, const size_t *order, size_t n, double *lat)
{
	for (size_t i = 0; i < n; i++) {
		size_t pg = order[i];
		double t0 = now_us();
		unsigned char c = base[pg * PS + 7];

		lat[i] = now_us() - t0;
		if (c != pattern(pg, 7))
			die("wrong data in a faulted page");
	}
}

static struct {
	int uffd, sock, stop[2];
	_Atomic(unsigned char *) base;   /* the current repetition's mapping */
	pthread_t thread;
} bare = { .uffd = -1 };

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

/* The bare handler: per fault, a socket round trip for the page, then UFFDIO_COPY. */
static void *
bare_main(void *arg)
{
	static unsigned char page[PS] __attribute__((aligned(4096)));
	struct pollfd pfd[2] = { { .fd = bare.uffd, .events = POLLIN },
		{ .fd = bare.stop[0], .events = POLLIN } };

	(void)arg;
	for (;;) {
		struct uffd_msg msg;
		struct uffdio_copy cp;
		unsigned char *base;
		uint64_t off;

		if (poll(pfd, 2, -1) < 0 && errno != EINTR)
			die_errno("poll");
		if (pfd[1].revents)
			return NULL;
		if (read(bare.uffd, &msg, sizeof(msg)) != sizeof(msg)) {
			if (errno == EAGAIN)
				continue;
			die_errno("read uffd");
		}
		if (msg.event != UFFD_EVENT_PAGEFAULT)
			continue;
		base = atomic_load(&bare.base);
		off = (msg.arg.pagefault.address & ~(PS - 1)) - (uintptr_t)base;
		if (send(bare.sock, &off, sizeof(off), 0) != sizeof(off) ||
		    recv(bare.sock, page, PS, 0) != (ssize_t)PS)
			die_errno("bare socket round trip");
		cp = (struct uffdio_copy){ .dst = (uintptr_t)base + off, .src = (uintptr_t)page,
			.len = PS };
		if (ioctl(bare.uffd, UFFDIO_COPY, &cp) != 0 && errno != EEXIST)
			die_errno("UFFDIO_COPY");
	}
}

static bool
bare_start(int sock, char *why, size_t len)
{
	struct uffdio_api api = { .api = UFFD_API };

	bare.sock = sock;
	if ((bare.uffd = open_uffd()) < 0 || ioctl(bare.uffd, UFFDIO_API, &api) != 0) {
		snprintf(why, len, "bare userfaultfd: %s", strerror(errno));
		return false;
	}
	if (pipe(bare.stop) != 0)
		die_errno("pipe");
	if (pthread_create(&bare.thread, NULL, bare_main, NULL) != 0)
		die("pthread_create");
	return true;
}

static void
bare_stop(void)
{
	(void)!write(bare.stop[1], "x", 1);
	pthread_join(bare.thread, NULL);
	close(bare.uffd);
	close(bare.stop[0]);
	close(bare.stop[1]);
}

/* One repetition of the baseline: a fresh registered mapping. */
static void
bare_rep(const size_t *order, size_t n, double *lat)
{
	struct uffdio_register reg;
	void *p = mmap(NULL, STORE_PAGES * PS, PROT_READ | PROT_WRITE,
	    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		die_errno("mmap");
	atomic_store(&bare.base, (unsigned char *)p);
	reg = (struct uffdio_register){ .range = { .start = (uintptr_t)p, .len = STORE_PAGES * PS },
		.mode = UFFDIO_REGISTER_MODE_MISSING };
	if (ioctl(bare.uffd, UFFDIO_REGISTER, &reg) != 0)
		die_errno("UFFDIO_REGISTER");
	touch_timed(p, order, n, lat);
	munmap(p, STORE_PAGES * PS);
}

/* One repetition through machvm: a fresh mapping of the object (the kernel drops its
 * pages at the last unmap: the manager does not let it cache them). */
static void
mvm_rep(mach_port_t obj, const size_t *order, size_t n, double *lat)
{
	vm_address_t addr = 0;
	kern_return_t kr;

	kr = vm_map(mach_task_self(), &addr, STORE_PAGES * PS, 0, TRUE, obj, 0, FALSE, VM_PROT_READ,
	    VM_PROT_READ, VM_INHERIT_NONE);
	if (kr != KERN_SUCCESS)
		die_kr("vm_map", kr);
	touch_timed((volatile unsigned char *)addr, order, n, lat);
	if ((kr = vm_deallocate(mach_task_self(), addr, STORE_PAGES * PS)) != KERN_SUCCESS)
		die_kr("vm_deallocate", kr);
}

static void
fault_bench(pid_t server, int fd)
{
	char name[sizeof(netname_name_t)], why[200];
	size_t n = opt_pages < STORE_PAGES ? opt_pages : STORE_PAGES, total = n * opt_reps;
	double *lm = malloc(total * sizeof(double)), *lb = malloc(total * sizeof(double));
	size_t *order = random_order();
	mach_port_t obj;
	kern_return_t kr;
	double m50, m99, b50, b99;

	if (lm == NULL || lb == NULL)
		die("no memory");
	if (mvm_vm_available(why, sizeof(why)) != KERN_SUCCESS || !bare_start(fd, why, sizeof(why))) {
		printf("  fault latency: skipped: %s\n", why);
		return;
	}
	name_of(name, sizeof(name), server, "obj");
	if ((kr = netname_look_up(name_server_port, "", name, &obj)) != 0)
		die_kr("netname_look_up", kr);
	mvm_rep(obj, order, n / 8 + 1, lm);  /* warm-up */
	bare_rep(order, n / 8 + 1, lb);
	for (unsigned rep = 0; rep < opt_reps; rep++) {
		mvm_rep(obj, order, n, lm + rep * n);
		bare_rep(order, n, lb + rep * n);
	}
	bare_stop();
	qsort(lm, total, sizeof(double), cmp_double);
	qsort(lb, total, sizeof(double), cmp_double);
	m50 = quantile(lm, total, 0.5), m99 = quantile(lm, total, 0.99);
	b50 = quantile(lb, total, 0.5), b99 = quantile(lb, total, 0.99);
	printf("  fault latency, single pages in random order, %zu faults per repetition:\n"
	    "    machvm, manager in the other process  p50 %8.2f us  p99 %8.2f us\n"
	    "    bare uffd + socket round trip + COPY  p50 %8.2f us  p99 %8.2f us\n"
	    "    ratio machvm/bare                     p50 %8.2f     p99 %8.2f     (goal <= 1.3)\n",
	    n, m50, m99, b50, b99, m50 / b50, m99 / b99);
	(void)mach_port_deallocate(mach_task_self(), obj);
	free(lm);
	free(lb);
	free(order);
}

/* ---- 5. the client process ---------------------------------------------------------------- */

static int
client_main(const struct placement *pl, const char *self)
{
	int sv[2], status;
	pid_t server;
	char c, cpu[16];

	pin_self(pl->client_cpu);
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0)
		die_errno("socketpair");
	snprintf(cpu, sizeof(cpu), "%d", pl->server_cpu);
	server = fork();
	if (server < 0)
		die_errno("fork");
	if (server == 0) {
		/* No thread yet in this process, but keep to exec-safe calls anyway. */
		if (dup2(sv[1], SOCK_FD) < 0)
			_exit(127);
		execl(self, "bench_node", "--server", cpu, (char *)NULL);
		_exit(127);
	}
	close(sv[1]);
	if (recv(sv[0], &c, 1, 0) != 1 || c != 'R')
		die("the server did not start");
	printf("\nplacement %s: client process on CPU %d, server process on CPU %d "
	    "(every thread of each process)\n", pl->name, pl->client_cpu, pl->server_cpu);
	rpc_bench(server, sv[0]);
	fault_bench(server, sv[0]);
	close(sv[0]);                     /* the server exits when its socket closes */
	if (waitpid(server, &status, 0) != server)
		die_errno("waitpid");
	return 0;
}

/* ---- 6. main ------------------------------------------------------------------------------- */

int
main(int argc, char **argv)
{
	const char *run = NULL;

	if (argc == 3 && strcmp(argv[1], "--server") == 0)
		return server_main(atoi(argv[2]));
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--iters") == 0 && i + 1 < argc)
			opt_iters = (unsigned)strtoul(argv[++i], NULL, 10);
		else if (strcmp(argv[i], "--pages") == 0 && i + 1 < argc)
			opt_pages = strtoul(argv[++i], NULL, 10);
		else if (strcmp(argv[i], "--reps") == 0 && i + 1 < argc)
			opt_reps = (unsigned)strtoul(argv[++i], NULL, 10);
		else if (strcmp(argv[i], "--quick") == 0) {
			opt_iters = 5000;
			opt_pages = 512;
			opt_reps = 3;
		} else if (strcmp(argv[i], "--placement") == 0 && i + 1 < argc)
			opt_placement = argv[++i];
		else if (strcmp(argv[i], "--run") == 0 && i + 1 < argc)
			run = argv[++i];
		else {
			fprintf(stderr, "usage: bench_node [--iters N] [--pages N] [--reps R] [--quick] "
			    "[--placement same|split]\n");
			return 2;
		}
	}
	if (opt_reps < 1 || opt_reps > MAX_REPS || opt_iters < 1 || opt_pages < 1)
		die("--reps must be 1 to 64, --iters and --pages at least 1");
	signal(SIGPIPE, SIG_IGN);
	if (run != NULL) {
		for (size_t i = 0; i < sizeof(placements) / sizeof(placements[0]); i++)
			if (strcmp(run, placements[i].name) == 0)
				return client_main(&placements[i], "/proc/self/exe");
		die("unknown placement");
	}

	printf("bench_node: ports across processes against the same work by hand between the "
	    "same two processes\n%u repetitions (median; fault quantiles over every fault)\n",
	    opt_reps);
	print_load("before");
	fflush(stdout);
	for (size_t i = 0; i < sizeof(placements) / sizeof(placements[0]); i++) {
		const struct placement *pl = &placements[i];
		char iters[24], pages[24], reps[24];
		int status;
		pid_t pid;

		if (opt_placement != NULL && strcmp(opt_placement, pl->name) != 0)
			continue;
		if (!cpu_usable(pl->client_cpu) || !cpu_usable(pl->server_cpu)) {
			printf("\nplacement %s: skipped: CPU %d or %d is not usable here\n", pl->name,
			    pl->client_cpu, pl->server_cpu);
			continue;
		}
		snprintf(iters, sizeof(iters), "%u", opt_iters);
		snprintf(pages, sizeof(pages), "%zu", opt_pages);
		snprintf(reps, sizeof(reps), "%u", opt_reps);
		fflush(stdout);
		/* Its own client process, pinned before any machvm thread starts. */
		if ((pid = fork()) < 0)
			die_errno("fork");
		if (pid == 0) {
			execl("/proc/self/exe", "bench_node", "--run", pl->name, "--iters", iters,
			    "--pages", pages, "--reps", reps, (char *)NULL);
			_exit(127);
		}
		if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
			die("a placement's client failed");
	}
	print_load("after");
	return 0;
}
