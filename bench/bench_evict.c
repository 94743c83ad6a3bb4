/*
 * bench/bench_evict.c: the kernel under a resident limit. Memory of an anonymous pager
 * (mvm_anon_pager_create + vm_map) is worked on with a resident limit of --limit bytes
 * (mvm_vm_set_resident_limit), beside the same workload on plain anonymous memory
 * (mmap(MAP_PRIVATE | MAP_ANONYMOUS), no limit) and on the same pager with no limit,
 * measured in the same run with the same thread placement.
 *
 * The working set is twice the limit. Each access adds 1 to the first word of a page
 * (a read and a write: pages become dirty, so evicted pages go back to the pager's swap
 * file and are read back from it). Workloads:
 *   seq scan     every page in order, --passes times (default 2): the clock's worst case,
 *                every access of the limited run misses
 *   hot random   4 accesses per page of the working set, in a fixed pseudo-random
 *                sequence: 90% of them to a hot set of 10% of the pages (which fits in
 *                the limit), 10% to the rest
 * Before the timed part each method touches every page once in order (first-touch
 * faults, and for the limited run a swap file holding every page), so what is timed is
 * the steady state. The counters are checked afterwards: no access was lost.
 *
 * Methods:
 *   mmap         anonymous memory, no limit (the baseline of every ratio)
 *   machvm       the anonymous pager, no limit: every page faults once in the warm-up,
 *                then stays
 *   machvm lim   the anonymous pager with the limit: misses fault, the kernel evicts
 *                (second chance), dirty victims go to the pager with data_return
 * For machvm lim the misses per access (data_request pages over accesses) and the pages
 * evicted are printed too.
 *
 * Placement. The program's thread, machvm's kernel threads (fault thread, control
 * thread) and the pager framework's threads (receiver, workers) all live in this process.
 * Each figure is measured "unpinned" (any thread on any CPU) and "cpu0" (every thread of
 * the process pinned to CPU 0) and compared only with the baseline of the same placement.
 * On the 2-vCPU VMs we run on a wake-up across vCPUs costs 25-110 us and a same-CPU
 * hand-off 4-10 us (reference/userfaultfd.md), which dominates a miss.
 *
 * Each figure is the median and the best of --reps repetitions (default 3), in ns per
 * access; ratio = method/mmap of the medians (above 1 = slower).
 *
 * Usage: bench_evict [--limit N[K|M|G]] [--passes P] [--reps R] [--cluster C]
 *                    [--placement unpinned|cpu0] [--only seq|rand]
 * Exits 0 with a message where userfaultfd is unavailable.
 */
#include <dirent.h>
#include <errno.h>
#include <sched.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <mach/mach.h>
#include <machvm/ipc.h>
#include <machvm/pager.h>
#include <machvm/pagers.h>
#include <machvm/vm.h>
#include "bench_common.h"

#define MAX_REPS 32

static size_t opt_limit = (size_t)32 << 20;
static unsigned opt_passes = 2;
static unsigned opt_reps = 3;
static unsigned opt_cluster = 1;
static const char *opt_placement;   /* "unpinned", "cpu0" or NULL for both */
static const char *opt_only;        /* "seq", "rand" or NULL for both */

static size_t ps, npages, naccess;
static uint32_t *seq_rand;          /* the hot random sequence of pages */

static void
die(const char *what, kern_return_t kr)
{
	fprintf(stderr, "bench_evict: %s: %s (0x%x)\n", what, mvm_errname(kr), (unsigned)kr);
	exit(1);
}

static void
die_errno(const char *what)
{
	fprintf(stderr, "bench_evict: %s: %s\n", what, strerror(errno));
	exit(1);
}

/* Set the affinity of every thread of the process (those machvm started too). */
static void
place_all(const cpu_set_t *set)
{
	DIR *d = opendir("/proc/self/task");
	struct dirent *e;

	if (d == NULL)
		die_errno("opendir /proc/self/task");
	while ((e = readdir(d)) != NULL) {
		pid_t tid = (pid_t)atoi(e->d_name);

		if (tid > 0 && sched_setaffinity(tid, sizeof(*set), set) != 0 && errno != ESRCH)
			die_errno("sched_setaffinity");
	}
	closedir(d);
}

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- workloads ------------------------------------------------------------------------ */

enum workload { W_SEQ, W_RAND };
static const char *const workload_names[] = { "seq scan", "hot random" };

enum method { M_MMAP, M_MACHVM, M_LIMITED };
static const char *const method_names[] = { "mmap", "machvm", "machvm lim" };

static inline void
bump(volatile uint64_t *base, size_t pg)
{
	base[pg * (ps / sizeof(uint64_t))] += 1;
}

/* The timed part; returns seconds. */
static double
workload(enum workload wl, volatile uint64_t *base)
{
	double t0 = now_s();

	if (wl == W_SEQ) {
		for (unsigned p = 0; p < opt_passes; p++)
			for (size_t pg = 0; pg < npages; pg++)
				bump(base, pg);
	} else {
		for (size_t i = 0; i < naccess; i++)
			bump(base, seq_rand[i]);
	}
	return now_s() - t0;
}

/* Every access reached memory: the counters add up (warm-up included). */
static void
check(enum workload wl, volatile uint64_t *base)
{
	uint64_t sum = 0, want;

	for (size_t pg = 0; pg < npages; pg++) {
		uint64_t v = base[pg * (ps / sizeof(uint64_t))];

		if (wl == W_SEQ && v != 1 + opt_passes) {
			fprintf(stderr, "bench_evict: page %zu counts %llu, expected %u\n", pg,
			    (unsigned long long)v, 1 + opt_passes);
			exit(1);
		}
		sum += v;
	}
	want = npages + (wl == W_SEQ ? (uint64_t)opt_passes * npages : naccess);
	if (sum != want) {
		fprintf(stderr, "bench_evict: %llu accesses counted, expected %llu\n",
		    (unsigned long long)sum, (unsigned long long)want);
		exit(1);
	}
}

struct run {
	double warm;                /* seconds of the first touch of every page */
	double secs;
	uint64_t misses;            /* pages requested by the kernel (machvm only) */
	uint64_t evictions;
	uint64_t peak;              /* resident peak, pages */
};

static const cpu_set_t *placement;

static struct run
run_once(enum workload wl, enum method me)
{
	size_t size = npages * ps;
	struct run r;

	memset(&r, 0, sizeof(r));
	if (me == M_MMAP) {
		void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

		if (p == MAP_FAILED)
			die_errno("mmap");
		r.warm = now_s();
		for (size_t pg = 0; pg < npages; pg++)
			bump(p, pg);
		r.warm = now_s() - r.warm;
		r.secs = workload(wl, p);
		check(wl, p);
		munmap(p, size);
	} else {
		struct mvm_pager *pager;
		struct mvm_vm_object_stats os0, os1;
		struct mvm_vm_stats ks0, ks1;
		mach_port_t port;
		vm_address_t a = 0;
		kern_return_t kr;

		if ((kr = mvm_vm_set_resident_limit(me == M_LIMITED ? opt_limit : 0)) != KERN_SUCCESS)
			die("mvm_vm_set_resident_limit", kr);
		if ((kr = mvm_anon_pager_create(size, NULL, NULL, &pager, &port)) != KERN_SUCCESS)
			die("mvm_anon_pager_create", kr);
		if ((kr = vm_map(mach_task_self(), &a, size, 0, TRUE, port, 0, FALSE,
		    VM_PROT_READ | VM_PROT_WRITE, VM_PROT_READ | VM_PROT_WRITE, VM_INHERIT_NONE)) !=
		    KERN_SUCCESS)
			die("vm_map", kr);
		if ((kr = mvm_vm_object_set_cluster(port, opt_cluster)) != KERN_SUCCESS)
			die("mvm_vm_object_set_cluster", kr);
		place_all(placement); /* threads started meanwhile too */
		r.warm = now_s();
		for (size_t pg = 0; pg < npages; pg++)
			bump((volatile uint64_t *)a, pg);
		r.warm = now_s() - r.warm;
		(void)mvm_vm_object_stats(port, &os0);
		(void)mvm_vm_stats(&ks0);
		r.secs = workload(wl, (volatile uint64_t *)a);
		(void)mvm_vm_object_stats(port, &os1);
		(void)mvm_vm_stats(&ks1);
		r.misses = os1.pages_requested - os0.pages_requested;
		r.evictions = ks1.evictions - ks0.evictions;
		r.peak = ks1.resident_peak;
		check(wl, (volatile uint64_t *)a);
		if ((kr = vm_deallocate(mach_task_self(), a, size)) != KERN_SUCCESS)
			die("vm_deallocate", kr);
		if ((kr = mvm_pager_shutdown(pager)) != KERN_SUCCESS)
			die("mvm_pager_shutdown", kr);
		(void)mvm_vm_set_resident_limit(0);
	}
	return r;
}

struct result {
	double median, best;        /* ns per access */
	double warm_median;         /* ns per page of the first touch */
	struct run last;
};

static struct result
measure(enum workload wl, enum method me)
{
	double ns[MAX_REPS], warm[MAX_REPS];
	size_t accesses = wl == W_SEQ ? (size_t)opt_passes * npages : naccess;
	struct result res;

	for (unsigned i = 0; i < opt_reps; i++) {
		res.last = run_once(wl, me);
		ns[i] = res.last.secs * 1e9 / (double)accesses;
		warm[i] = res.last.warm * 1e9 / (double)npages;
	}
	qsort(ns, opt_reps, sizeof(ns[0]), cmp_double);
	qsort(warm, opt_reps, sizeof(warm[0]), cmp_double);
	res.warm_median = opt_reps % 2 ? warm[opt_reps / 2] :
	    (warm[opt_reps / 2 - 1] + warm[opt_reps / 2]) / 2;
	res.best = ns[0];
	res.median = opt_reps % 2 ? ns[opt_reps / 2] : (ns[opt_reps / 2 - 1] + ns[opt_reps / 2]) / 2;
	return res;
}

/* ---- main -------------------------------------------------------------------------------- */

static size_t
parse_size(const char *s)
{
	char *end;
	unsigned long long v = strtoull(s, &end, 10);

	switch (*end) {
	case 'k': case 'K': v <<= 10; break;
	case 'm': case 'M': v <<= 20; break;
	case 'g': case 'G': v <<= 30; break;
	case '\0': break;
	default: return 0;
	}
	return (size_t)v;
}

static void
usage(void)
{
	fprintf(stderr, "usage: bench_evict [--limit N[K|M|G]] [--passes P] [--reps R] "
	    "[--cluster C] [--placement unpinned|cpu0] [--only seq|rand]\n");
	exit(2);
}

int
main(int argc, char **argv)
{
	static const char *const only_names[] = { "seq", "rand" };
	char why[200];
	cpu_set_t all, cpu0;
	uint32_t x = 2463534242u;
	size_t hot;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--limit") == 0 && i + 1 < argc)
			opt_limit = parse_size(argv[++i]);
		else if (strcmp(argv[i], "--passes") == 0 && i + 1 < argc)
			opt_passes = (unsigned)strtoul(argv[++i], NULL, 10);
		else if (strcmp(argv[i], "--reps") == 0 && i + 1 < argc)
			opt_reps = (unsigned)strtoul(argv[++i], NULL, 10);
		else if (strcmp(argv[i], "--cluster") == 0 && i + 1 < argc)
			opt_cluster = (unsigned)strtoul(argv[++i], NULL, 10);
		else if (strcmp(argv[i], "--placement") == 0 && i + 1 < argc)
			opt_placement = argv[++i];
		else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc)
			opt_only = argv[++i];
		else
			usage();
	}
	ps = (size_t)sysconf(_SC_PAGESIZE);
	opt_limit = (opt_limit + ps - 1) / ps * ps;
	if (opt_limit < 64 * ps || opt_passes == 0 || opt_reps == 0 || opt_reps > MAX_REPS ||
	    opt_cluster == 0 || opt_cluster > 64 ||
	    (opt_placement != NULL && strcmp(opt_placement, "unpinned") != 0 &&
	    strcmp(opt_placement, "cpu0") != 0) ||
	    (opt_only != NULL && strcmp(opt_only, "seq") != 0 && strcmp(opt_only, "rand") != 0))
		usage();
	if (mvm_vm_available(why, sizeof(why)) != KERN_SUCCESS) {
		printf("bench_evict: skipped: %s\n", why);
		return 0;
	}
	npages = 2 * opt_limit / ps;
	naccess = 4 * npages;
	hot = npages / 10;
	if ((seq_rand = malloc(naccess * sizeof(*seq_rand))) == NULL)
		die_errno("malloc");
	for (size_t i = 0; i < naccess; i++) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		/* 90% to the hot set (the first tenth of the pages), 10% to the others. */
		if (x % 10 != 0)
			seq_rand[i] = (uint32_t)((x / 10) % hot);
		else
			seq_rand[i] = (uint32_t)(hot + (x / 10) % (npages - hot));
	}
	if (sched_getaffinity(0, sizeof(all), &all) != 0)
		die_errno("sched_getaffinity");
	CPU_ZERO(&cpu0);
	CPU_SET(0, &cpu0);

	printf("bench_evict: resident limit %zu KiB, working set %zu KiB (%zu pages), cluster %u, "
	    "%u repetitions (median, best)\n", opt_limit >> 10, (npages * ps) >> 10, npages,
	    opt_cluster, opt_reps);
	printf("seq scan: %u passes in page order; hot random: %zu accesses, 90%% to %zu hot "
	    "pages\n", opt_passes, naccess, hot);
	printf("ns per access (add 1 to a page's first word); ratio = method/mmap of the medians, "
	    "same placement (above 1 = slower)\n");
	print_load("at start");
	printf("\n%-9s %-11s %-11s %10s %10s %9s %12s %10s %8s\n", "placement", "workload", "method",
	    "median", "best", "ratio", "miss/access", "evicted", "peak");
	for (int pl = 0; pl < 2; pl++) {
		const char *plname = pl == 0 ? "unpinned" : "cpu0";

		if (opt_placement != NULL && strcmp(opt_placement, plname) != 0)
			continue;
		if (pl == 1 && !CPU_ISSET(0, &all)) {
			printf("cpu0: skipped: CPU 0 not available\n");
			continue;
		}
		placement = pl == 0 ? &all : &cpu0;
		place_all(placement);
		for (int wl = W_SEQ; wl <= W_RAND; wl++) {
			struct result base;
			double warm[3] = { 0, 0, 0 };
			size_t accesses = wl == W_SEQ ? (size_t)opt_passes * npages : naccess;

			if (opt_only != NULL && strcmp(opt_only, only_names[wl]) != 0)
				continue;
			base = measure((enum workload)wl, M_MMAP);
			printf("%-9s %-11s %-11s %10.1f %10.1f %9s %12s %10s %8s\n", plname,
			    workload_names[wl], method_names[M_MMAP], base.median, base.best, "", "", "",
			    "");
			for (int me = M_MACHVM; me <= M_LIMITED; me++) {
				struct result r = measure((enum workload)wl, (enum method)me);
				char peak[24] = "";

				if (me == M_LIMITED)
					snprintf(peak, sizeof(peak), "%llu", (unsigned long long)r.last.peak);
				printf("%-9s %-11s %-11s %10.1f %10.1f %8.2fx %12.3f %10llu %8s\n", plname,
				    workload_names[wl], method_names[me], r.median, r.best,
				    r.median / base.median, (double)r.last.misses / (double)accesses,
				    (unsigned long long)r.last.evictions, peak);
				if (wl == W_SEQ)
					warm[me] = r.warm_median;
			}
			if (wl == W_SEQ) {
				warm[M_MMAP] = base.warm_median;
				printf("%-9s %-11s %-11s %10.1f %10s %8.2fx   (mmap %.1f ns/page)\n", plname,
				    "1st touch", "machvm", warm[M_MACHVM], "",
				    warm[M_MACHVM] / warm[M_MMAP], warm[M_MMAP]);
			}
			fflush(stdout);
		}
	}
	printf("\n(miss/access, evicted, peak: last repetition; peak = most pages resident, "
	    "limit %zu pages.\n \"1st touch\": median ns per page of the untimed first pass, for "
	    "reference: a fault with no eviction and no swap read)\n", opt_limit / ps);
	print_load("at end");
	free(seq_rand);
	{
		char buf[256];

		if (mvm_ipc_quiescent(buf, sizeof(buf)) != KERN_SUCCESS) {
			fprintf(stderr, "bench_evict: leak at exit: %s\n", buf);
			return 1;
		}
	}
	return 0;
}
