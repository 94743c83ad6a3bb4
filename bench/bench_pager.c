/*
 * bench/bench_pager.c: read throughput of a file mapped through machvm's file pager
 * (mvm_file_pager_create + vm_map), beside plain mmap(MAP_SHARED) of the same file
 * measured in the same run with the same thread placement.
 *
 * The file (default 1 GiB, --size) is created in $TMPDIR or /tmp, filled, and read once
 * so that the page cache is warm; it is removed at exit. Access patterns, each over the
 * whole file:
 *   seq touch    one byte per page, in page order
 *   seq copy     memcpy of the whole file, 64 KiB at a time, into a small buffer
 *   rand touch   one byte per page, in a random page order (fixed seed)
 * Methods:
 *   mmap         mmap(MAP_SHARED, PROT_READ) of the file; each repetition maps afresh
 *                (munmap + mmap drop the page tables; the page cache stays warm)
 *   machvm cN    a fresh file pager and vm_map each repetition, cluster N pages per
 *                data_request (mvm_vm_object_set_cluster), N = 16 and 64, so every page
 *                faults: uffd fault -> data_request -> pread by the pager -> data_supply
 *                -> memfd -> UFFDIO_CONTINUE
 * Only the access pattern is timed (not creating the pager, vm_map, unmapping or
 * shutting down).
 *
 * Placement. The program's thread, machvm's kernel threads (fault thread, control thread)
 * and the pager framework's threads (receiver, workers) are all in this process. Every
 * figure is measured "unpinned" (every thread may run on any CPU) and "cpu0" (every
 * thread of the process pinned to CPU 0), and compared only with the mmap baseline of
 * the same placement. On the 2-vCPU VMs we run on, a wake-up across vCPUs costs 25-110 us
 * and a same-CPU hand-off 4-10 us; see the limits in reference/userfaultfd.md.
 *
 * Each figure is the median and the best of --reps repetitions (default 3) after a
 * warm-up run, in MB/s (10^6 bytes per second); the ratio is machvm/mmap of the medians
 * (below 1 = slower than mmap).
 *
 * Usage: bench_pager [--size N[K|M|G]] [--reps R] [--placement unpinned|cpu0]
 *                    [--only seq|copy|rand]
 * Exits 0 with a message where userfaultfd is unavailable.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <mach/mach.h>
#include <machvm/ipc.h>
#include <machvm/pagers.h>
#include <machvm/vm.h>
#include "bench_common.h"

#define MAX_REPS 32
#define COPY_CHUNK (64 * 1024)

static size_t opt_size = (size_t)1 << 30;
static unsigned opt_reps = 3;
static const char *opt_placement;   /* "unpinned", "cpu0" or NULL for both */
static const char *opt_only;        /* "seq", "copy", "rand" or NULL for all */

static char path[4096];
static size_t ps, npages;
static uint32_t *order;             /* the random page order */
static volatile uint64_t sink;

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void
die(const char *what, kern_return_t kr)
{
	fprintf(stderr, "bench_pager: %s: %s (0x%x)\n", what, mvm_errname(kr), (unsigned)kr);
	exit(1);
}

static void
die_errno(const char *what)
{
	fprintf(stderr, "bench_pager: %s: %s\n", what, strerror(errno));
	exit(1);
}

/* ---- placement ------------------------------------------------------------------------ */

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

/* ---- the file ---------------------------------------------------------------------------- */

static void
remove_file(void)
{
	if (path[0] != '\0')
		(void)unlink(path);
}

static void
make_file(void)
{
	const char *dir = getenv("TMPDIR");
	size_t chunk = 1 << 20;
	char *buf = malloc(chunk);
	int fd;

	if (dir == NULL || dir[0] == '\0')
		dir = "/tmp";
	snprintf(path, sizeof(path), "%s/bench_pager.XXXXXX", dir);
	if (buf == NULL || (fd = mkstemp(path)) < 0)
		die_errno("mkstemp");
	atexit(remove_file);
	for (size_t off = 0; off < opt_size; off += chunk) {
		size_t n = opt_size - off < chunk ? opt_size - off : chunk;

		for (size_t i = 0; i < n; i += 8) {
			uint64_t v = (off + i) * 0x9e3779b97f4a7c15ull;

			memcpy(buf + i, &v, n - i < 8 ? n - i : 8);
		}
		if (pwrite(fd, buf, n, (off_t)off) != (ssize_t)n)
			die_errno("pwrite");
	}
	/* Warm the page cache: read it all once. */
	for (size_t off = 0; off < opt_size; off += chunk)
		if (pread(fd, buf, chunk, (off_t)off) < 0)
			die_errno("pread");
	close(fd);
	free(buf);
}

/* ---- access patterns ---------------------------------------------------------------------- */

enum pattern { P_SEQ, P_COPY, P_RAND };
static const char *const pattern_names[] = { "seq touch", "seq copy", "rand touch" };

static double
access_pattern(enum pattern pat, const volatile unsigned char *base)
{
	static unsigned char dst[COPY_CHUNK];
	uint64_t sum = 0;
	double t0 = now_s(), t;

	switch (pat) {
	case P_SEQ:
		for (size_t i = 0; i < npages; i++)
			sum += base[i * ps];
		break;
	case P_COPY:
		for (size_t off = 0; off < opt_size; off += COPY_CHUNK) {
			size_t n = opt_size - off < COPY_CHUNK ? opt_size - off : COPY_CHUNK;

			memcpy(dst, (const void *)(base + off), n);
			sum += dst[n - 1];
		}
		break;
	case P_RAND:
		for (size_t i = 0; i < npages; i++)
			sum += base[(size_t)order[i] * ps];
		break;
	}
	t = now_s() - t0;
	/* Spot check: the data is the file's. */
	{
		uint64_t want = (npages / 2 * ps) * 0x9e3779b97f4a7c15ull, got;

		memcpy(&got, (const void *)(base + npages / 2 * ps), sizeof(got));
		if (got != want) {
			fprintf(stderr, "bench_pager: wrong data at offset %zu\n", npages / 2 * ps);
			exit(1);
		}
	}
	sink += sum;
	return t;
}

/* One repetition; returns seconds for the access pattern. cluster 0: mmap. */
static double
run_once(enum pattern pat, unsigned cluster)
{
	double t;

	if (cluster == 0) {
		int fd = open(path, O_RDONLY | O_CLOEXEC);
		void *p;

		if (fd < 0)
			die_errno("open");
		p = mmap(NULL, opt_size, PROT_READ, MAP_SHARED, fd, 0);
		if (p == MAP_FAILED)
			die_errno("mmap");
		close(fd);
		t = access_pattern(pat, p);
		munmap(p, opt_size);
	} else {
		struct mvm_pager *pager;
		mach_port_t port;
		vm_address_t a = 0;
		kern_return_t kr;

		if ((kr = mvm_file_pager_create(path, MVM_FILE_PAGER_READONLY, NULL, &pager, &port)) !=
		    KERN_SUCCESS)
			die("mvm_file_pager_create", kr);
		if ((kr = vm_map(mach_task_self(), &a, opt_size, 0, TRUE, port, 0, FALSE, VM_PROT_READ,
		    VM_PROT_READ, VM_INHERIT_NONE)) != KERN_SUCCESS)
			die("vm_map", kr);
		if ((kr = mvm_vm_object_set_cluster(port, cluster)) != KERN_SUCCESS)
			die("mvm_vm_object_set_cluster", kr);
		t = access_pattern(pat, (const volatile unsigned char *)a);
		if ((kr = vm_deallocate(mach_task_self(), a, opt_size)) != KERN_SUCCESS)
			die("vm_deallocate", kr);
		if ((kr = mvm_pager_shutdown(pager)) != KERN_SUCCESS)
			die("mvm_pager_shutdown", kr);
	}
	return t;
}

struct result {
	double median, best;        /* MB/s */
};

static const cpu_set_t *placement;  /* of every thread of the process */

static struct result
measure(enum pattern pat, unsigned cluster)
{
	double tput[MAX_REPS];
	struct result r;

	(void)run_once(pat, cluster); /* warm-up: threads, page tables, caches */
	place_all(placement);         /* threads machvm started meanwhile too */
	for (unsigned i = 0; i < opt_reps; i++)
		tput[i] = (double)opt_size / run_once(pat, cluster) / 1e6;
	qsort(tput, opt_reps, sizeof(tput[0]), cmp_double);
	r.best = tput[opt_reps - 1];
	r.median = opt_reps % 2 ? tput[opt_reps / 2] :
	    (tput[opt_reps / 2 - 1] + tput[opt_reps / 2]) / 2;
	return r;
}

/* ---- the report ------------------------------------------------------------------------ */

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
	fprintf(stderr, "usage: bench_pager [--size N[K|M|G]] [--reps R] "
	    "[--placement unpinned|cpu0] [--only seq|copy|rand]\n");
	exit(2);
}

int
main(int argc, char **argv)
{
	static const unsigned clusters[] = { 16, 64 };
	static const char *const only_names[] = { "seq", "copy", "rand" };
	char why[200];
	cpu_set_t all, cpu0;
	uint32_t seed = 2463534242u;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--size") == 0 && i + 1 < argc)
			opt_size = parse_size(argv[++i]);
		else if (strcmp(argv[i], "--reps") == 0 && i + 1 < argc)
			opt_reps = (unsigned)strtoul(argv[++i], NULL, 10);
		else if (strcmp(argv[i], "--placement") == 0 && i + 1 < argc)
			opt_placement = argv[++i];
		else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc)
			opt_only = argv[++i];
		else
			usage();
	}
	ps = (size_t)sysconf(_SC_PAGESIZE);
	opt_size = (opt_size + ps - 1) / ps * ps;
	if (opt_size == 0 || opt_reps == 0 || opt_reps > MAX_REPS ||
	    (opt_placement != NULL && strcmp(opt_placement, "unpinned") != 0 &&
	    strcmp(opt_placement, "cpu0") != 0) ||
	    (opt_only != NULL && strcmp(opt_only, "seq") != 0 && strcmp(opt_only, "copy") != 0 &&
	    strcmp(opt_only, "rand") != 0))
		usage();
	if (mvm_vm_available(why, sizeof(why)) != KERN_SUCCESS) {
		printf("bench_pager: skipped: %s\n", why);
		return 0;
	}
	npages = opt_size / ps;
	if ((order = malloc(npages * sizeof(*order))) == NULL)
		die_errno("malloc");
	for (size_t i = 0; i < npages; i++)
		order[i] = (uint32_t)i;
	for (size_t i = npages - 1; i > 0; i--) {
		size_t j;
		uint32_t tmp;

		seed ^= seed << 13;
		seed ^= seed >> 17;
		seed ^= seed << 5;
		j = seed % (i + 1);
		tmp = order[i];
		order[i] = order[j];
		order[j] = tmp;
	}
	make_file();
	if (sched_getaffinity(0, sizeof(all), &all) != 0)
		die_errno("sched_getaffinity");
	CPU_ZERO(&cpu0);
	CPU_SET(0, &cpu0);

	printf("bench_pager: %zu MiB file %s (page cache warm), %u repetitions (median, best) "
	    "after a warm-up\n", opt_size >> 20, path, opt_reps);
	printf("MB/s = 10^6 bytes/s over the whole file; ratio = machvm/mmap of the medians, same "
	    "placement (below 1 = slower)\n");
	print_load("at start");
	printf("\n%-9s %-11s %-10s %10s %10s %8s %9s\n", "placement", "pattern", "method",
	    "median", "best", "ratio", "us/page");
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
		for (int pat = P_SEQ; pat <= P_RAND; pat++) {
			struct result base;

			if (opt_only != NULL && strcmp(opt_only, only_names[pat]) != 0)
				continue;
			base = measure((enum pattern)pat, 0);
			printf("%-9s %-11s %-10s %10.0f %10.0f %8s %9.3f\n", plname, pattern_names[pat],
			    "mmap", base.median, base.best, "", ps / base.median);
			for (size_t c = 0; c < sizeof(clusters) / sizeof(clusters[0]); c++) {
				struct result m;
				char name[16];

				m = measure((enum pattern)pat, clusters[c]);
				snprintf(name, sizeof(name), "machvm c%u", clusters[c]);
				printf("%-9s %-11s %-10s %10.0f %10.0f %7.3fx %9.3f\n", plname,
				    pattern_names[pat], name, m.median, m.best, m.median / base.median,
				    ps / m.median);
			}
			fflush(stdout);
		}
	}
	printf("\n");
	print_load("at end");
	free(order);
	{
		char buf[256];

		if (mvm_ipc_quiescent(buf, sizeof(buf)) != KERN_SUCCESS) {
			fprintf(stderr, "bench_pager: leak at exit: %s\n", buf);
			return 1;
		}
	}
	return 0;
}
