/*
 * examples/shm_counters.c: processes sharing memory through the coherent shared memory
 * pager, with ordinary loads, stores and atomic instructions.
 *
 *   shm_counters [NPROC [INCREMENTS]]        (defaults: 4 workers, 10000 increments each)
 *
 * One manager process serves a shared memory object (mvm_shm_pager_create) and checks it
 * in under a name; NPROC worker processes look the name up and map the object. The object
 * is a table of NCOUNTERS counters spread over NPAGES pages, each page starting with a
 * spin lock word that guards the counters of that page. Every worker adds 1 to a random
 * counter INCREMENTS times (take the page's lock with an atomic compare-and-swap, add,
 * release the lock with an atomic store) and keeps its own tally of what it added where.
 * The pager keeps the pages coherent across the processes: many readers or one writer
 * per page, so the lock word and its counters move from process to process as they are
 * used. When the workers have unmapped, the manager reads the table, and the parent
 * checks that every counter equals the sum of the workers' tallies (and the total is
 * NPROC x INCREMENTS).
 *
 * The processes. A process whose machvm has started (its first Mach call) must not fork
 * children that use machvm, so the parent makes no Mach call at all: it forks the
 * manager and the workers first, and then only passes bytes over pipes. All of them find
 * each other through the name service, rooted in $MACHVM_RUNTIME_DIR; when that is not
 * set, the parent makes a private directory for this run (and removes it at the end).
 *
 * It uses only the installed API: <mach/mach.h> (vm_map, vm_deallocate), <mach/netname.h>
 * (netname_check_in, netname_look_up), <machvm/pagers.h> (the shm pager) and
 * <machvm/vm.h> (can this process map memory objects?). Build it with
 *
 *   cc -o shm_counters shm_counters.c $(pkg-config --cflags --libs machvm)
 *
 * Exit status: 0 the table is right, 1 something failed, 2 bad usage, 77 this machine
 * cannot map memory objects (no usable userfaultfd).
 */
#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <mach/mach.h>
#include <mach/netname.h>
#include <machvm/pagers.h>
#include <machvm/vm.h>

#define NAME "shm_counters"       /* the name the object is checked in under */
#define NPAGES 16
#define PER_PAGE 4                /* counters per page, after the lock word */
#define NCOUNTERS (NPAGES * PER_PAGE)
#define MAX_PROC 32
#define CHILD_ALARM 60            /* seconds: a child that hangs longer is killed */

/* What a child tells the parent: one record per write, smaller than PIPE_BUF, so the
 * records of different children never mix on the shared pipe. */
enum { REP_READY, REP_DONE, REP_SKIP, REP_FAIL };
struct report {
	int32_t who;                  /* -1: the manager; else the worker's number */
	int32_t what;                 /* REP_* */
	uint64_t counters[NCOUNTERS]; /* a worker's tally, or the manager's table */
	struct mvm_shm_pager_stats st; /* the manager's statistics */
	char why[160];                /* REP_SKIP, REP_FAIL: the reason */
};

static int up[2];                 /* children -> parent: reports */
static int go[2];                 /* parent -> workers: one byte each, "start" */
static int done[2];               /* parent -> manager: one byte, "the workers are done" */

/* Send a report to the parent (a child that cannot has nobody left to tell). */
static void
tell(struct report *r)
{
	if (write(up[1], r, sizeof(*r)) != (ssize_t)sizeof(*r))
		_exit(1);
}

static void
tell_what(int32_t who, int32_t what, const char *why)
{
	struct report r;

	memset(&r, 0, sizeof(r));
	r.who = who;
	r.what = what;
	snprintf(r.why, sizeof(r.why), "%s", why != NULL ? why : "");
	tell(&r);
}

/* ---- the layout of the shared table ---------------------------------------------------- */

/* Page pg of the mapping, as 64-bit words: word 0 is the lock, words 1..PER_PAGE the
 * counters. */
static volatile uint64_t *
page_words(vm_address_t base, unsigned pg)
{
	return (volatile uint64_t *)(base + (vm_size_t)pg * vm_page_size);
}

/* A spin lock in shared memory: 0 free, 1 taken. Taking it writes the page, so the
 * pager gives this process the page for writing (and takes it from the others) first;
 * the lock and the counters it guards then stay here until another process needs them.
 * Waiting, we only read (a read copy of the page), and yield the processor. */
static void
lock_page(volatile uint64_t *lock)
{
	for (;;) {
		uint64_t free_value = 0;

		if (__atomic_compare_exchange_n(lock, &free_value, 1, false, __ATOMIC_ACQUIRE,
		    __ATOMIC_RELAXED))
			return;
		while (__atomic_load_n(lock, __ATOMIC_RELAXED) != 0)
			sched_yield();
	}
}

static void
unlock_page(volatile uint64_t *lock)
{
	__atomic_store_n(lock, 0, __ATOMIC_RELEASE);
}

/* ---- the manager ------------------------------------------------------------------------ */

static void
manager(unsigned nproc)
{
	vm_size_t size = NPAGES * vm_page_size;
	struct mvm_shm_pager *pager;
	struct mvm_shm_pager_stats st;
	struct report r;
	mach_port_t port;
	char *image, why[160], c;
	kern_return_t kr;

	/* 1. The object (zero-filled), and its name for the workers. */
	if ((image = malloc(size)) == NULL) {
		tell_what(-1, REP_FAIL, "manager: out of memory");
		return;
	}
	if ((kr = mvm_shm_pager_create(size, &pager, &port)) != KERN_SUCCESS ||
	    (kr = netname_check_in(name_server_port, NAME, MACH_PORT_NULL, port)) != KERN_SUCCESS) {
		snprintf(why, sizeof(why), "manager: %s (%#x)", mach_error_string(kr), (unsigned)kr);
		tell_what(-1, REP_FAIL, why);
		return;
	}
	tell_what(-1, REP_READY, NULL);

	/* 2. The pager's own thread serves the workers. We wait for the parent's word that
	 * they are done, then for each kernel's memory_object_terminate (its dirty pages
	 * come back before it). */
	if (read(done[0], &c, 1) != 1)
		return; /* the parent is gone */
	do {
		(void)mvm_shm_pager_stats(pager, &st);
		usleep(1000);
	} while (st.terminates + st.deaths < nproc);

	/* 3. Read the table as it is now, and send it with the statistics. */
	kr = mvm_shm_pager_read(pager, 0, image, size);
	(void)mvm_shm_pager_stats(pager, &st);
	(void)netname_check_out(name_server_port, NAME, MACH_PORT_NULL);
	(void)mvm_shm_pager_shutdown(pager);
	if (kr != KERN_SUCCESS) {
		snprintf(why, sizeof(why), "manager: mvm_shm_pager_read: %s", mach_error_string(kr));
		tell_what(-1, REP_FAIL, why);
		return;
	}
	memset(&r, 0, sizeof(r));
	r.who = -1;
	r.what = REP_DONE;
	for (unsigned i = 0; i < NCOUNTERS; i++)
		r.counters[i] = page_words((vm_address_t)image, i / PER_PAGE)[1 + i % PER_PAGE];
	r.st = st;
	tell(&r);
	free(image);
}

/* ---- a worker ---------------------------------------------------------------------------- */

static void
worker(int32_t me, unsigned long increments)
{
	struct report r;
	unsigned seed = (unsigned)getpid();
	vm_address_t base = 0;
	mach_port_t obj;
	char why[200], c;
	kern_return_t kr;

	/* Can this process map memory objects at all (userfaultfd)? */
	if (mvm_vm_available(why, sizeof(why)) != KERN_SUCCESS) {
		tell_what(me, REP_SKIP, why);
		return;
	}
	if (read(go[0], &c, 1) != 1)
		return; /* the parent is gone */

	/* 1. Find the object and map it, read-write. */
	if ((kr = netname_look_up(name_server_port, "", NAME, &obj)) != KERN_SUCCESS) {
		snprintf(why, sizeof(why), "worker %d: netname_look_up(%s): %s (%#x)", (int)me,
		    NAME, mach_error_string(kr), (unsigned)kr);
		tell_what(me, REP_FAIL, why);
		return;
	}
	if ((kr = vm_map(mach_task_self(), &base, NPAGES * vm_page_size, 0, TRUE, obj, 0, FALSE,
	    VM_PROT_READ | VM_PROT_WRITE, VM_PROT_READ | VM_PROT_WRITE, VM_INHERIT_NONE)) !=
	    KERN_SUCCESS) {
		snprintf(why, sizeof(why), "worker %d: vm_map: %s (%#x)", (int)me,
		    mach_error_string(kr), (unsigned)kr);
		tell_what(me, REP_FAIL, why);
		return;
	}

	/* 2. The work: plain loads and stores under the page's lock. r.counters is our
	 * tally of what we added to each counter. */
	memset(&r, 0, sizeof(r));
	r.who = me;
	r.what = REP_DONE;
	for (unsigned long n = 0; n < increments; n++) {
		unsigned i = (unsigned)rand_r(&seed) % NCOUNTERS;
		volatile uint64_t *pg = page_words(base, i / PER_PAGE);

		lock_page(&pg[0]);
		pg[1 + i % PER_PAGE]++;
		unlock_page(&pg[0]);
		r.counters[i]++;
	}

	/* 3. Unmap: the pages we wrote go back to the manager (memory_object_terminate). */
	(void)vm_deallocate(mach_task_self(), base, NPAGES * vm_page_size);
	(void)mach_port_deallocate(mach_task_self(), obj);
	tell(&r);
}

/* ---- the parent ---------------------------------------------------------------------------- */

static pid_t kids[MAX_PROC + 1];
static unsigned nkids;

static void
fork_child(void (*fn)(unsigned, unsigned long), unsigned arg, unsigned long arg2)
{
	pid_t pid;

	fflush(stdout);
	if ((pid = fork()) < 0) {
		perror("fork");
		exit(1);
	}
	if (pid == 0) {
		alarm(CHILD_ALARM);
		close(up[0]);
		close(go[1]);
		close(done[1]);
		fn(arg, arg2);
		exit(0);
	}
	kids[nkids++] = pid;
}

static void
run_manager(unsigned nproc, unsigned long unused)
{
	(void)unused;
	close(go[0]);
	manager(nproc);
}

static void
run_worker(unsigned me, unsigned long increments)
{
	close(done[0]);
	worker((int32_t)me, increments);
}

/* Say how child i (0: the manager, then the workers) ended, when it failed. */
static void
describe_end(unsigned i, int status)
{
	char who[32];

	if (i == 0)
		snprintf(who, sizeof(who), "the manager");
	else
		snprintf(who, sizeof(who), "worker %u", i - 1);
	if (WIFSIGNALED(status))
		fprintf(stderr, "shm_counters: %s (pid %d) was killed by signal %d (%s)\n", who,
		    (int)kids[i], WTERMSIG(status), strsignal(WTERMSIG(status)));
	else
		fprintf(stderr, "shm_counters: %s (pid %d) exited with status %d\n", who,
		    (int)kids[i], WEXITSTATUS(status));
}

/* Remove the private runtime directory (the name service's sockets are in it). */
static void
remove_dir(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	char path[4096];

	while (d != NULL && (de = readdir(d)) != NULL)
		if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0) {
			snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
			(void)unlink(path);
		}
	if (d != NULL)
		closedir(d);
	(void)rmdir(dir);
}

int
main(int argc, char **argv)
{
	unsigned long nproc = argc > 1 ? strtoul(argv[1], NULL, 10) : 4;
	unsigned long increments = argc > 2 ? strtoul(argv[2], NULL, 10) : 10000;
	uint64_t sum[NCOUNTERS] = { 0 }, total = 0;
	static char dir[] = "/tmp/shm_counters-XXXXXX";
	bool own_dir = false, ok = false, all_ended = false;
	unsigned finished = 0;
	struct report r, mgr;
	int rc = 1, status;

	if (argc > 3 || nproc < 1 || nproc > MAX_PROC || increments < 1) {
		fprintf(stderr, "usage: shm_counters [NPROC (1-%d) [INCREMENTS]]\n", MAX_PROC);
		return 2;
	}
	if (getenv("MACHVM_RUNTIME_DIR") == NULL) {
		if (mkdtemp(dir) == NULL) {
			perror("mkdtemp");
			return 1;
		}
		setenv("MACHVM_RUNTIME_DIR", dir, 1);
		own_dir = true;
	}
	printf("shm_counters: %lu workers x %lu increments of %d counters on %d pages "
	    "(a spin lock per page)\n", nproc, increments, NCOUNTERS, NPAGES);

	/* Every process first, before any Mach call; then only pipes. */
	if (pipe(up) != 0 || pipe(go) != 0 || pipe(done) != 0) {
		perror("pipe");
		goto out;
	}
	fork_child(run_manager, (unsigned)nproc, 0);
	for (unsigned i = 0; i < nproc; i++)
		fork_child(run_worker, i, increments);
	close(up[1]);
	close(go[0]);
	close(done[0]);
	signal(SIGPIPE, SIG_IGN); /* a child gone: write() fails, and we say so */

	/* Reports, until the manager's table. A child that dies says nothing: poll, and
	 * look for children that ended early. */
	memset(&mgr, 0, sizeof(mgr));
	for (;;) {
		struct pollfd pfd = { up[0], POLLIN, 0 };

		if (poll(&pfd, 1, 1000) == 0) {
			for (unsigned i = 0; i < nkids; i++)
				if (waitpid(kids[i], &status, WNOHANG) == kids[i] &&
				    !(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
					describe_end(i, status);
					goto out;
				}
			continue;
		}
		if (read(up[0], &r, sizeof(r)) != (ssize_t)sizeof(r)) {
			/* End of file: every child has closed its end, that is, exited. */
			fprintf(stderr, "shm_counters: a process ended without a report\n");
			all_ended = true;
			goto out;
		}
		if (r.what == REP_SKIP) {
			printf("shm_counters: skipped: cannot map memory objects here: %s\n", r.why);
			rc = 77;
			goto out;
		}
		if (r.what == REP_FAIL) {
			fprintf(stderr, "shm_counters: %s\n", r.why);
			goto out;
		}
		if (r.who < 0 && r.what == REP_READY) {
			/* The object is checked in: the workers may start. */
			for (unsigned i = 0; i < nproc; i++)
				if (write(go[1], "g", 1) != 1)
					goto out;
		} else if (r.who >= 0 && r.what == REP_DONE) {
			for (unsigned i = 0; i < NCOUNTERS; i++)
				sum[i] += r.counters[i];
			if (++finished == nproc && write(done[1], "d", 1) != 1)
				goto out;
		} else if (r.who < 0 && r.what == REP_DONE) {
			mgr = r;
			break;
		}
	}

	/* The check: every counter is what the workers say they added to it. */
	ok = mgr.st.deaths == 0;
	for (unsigned i = 0; i < NCOUNTERS; i++) {
		total += mgr.counters[i];
		if (mgr.counters[i] != sum[i]) {
			fprintf(stderr, "shm_counters: counter %u is %llu, the workers added %llu\n",
			    i, (unsigned long long)mgr.counters[i], (unsigned long long)sum[i]);
			ok = false;
		}
	}
	printf("shm_counters: total %llu (expected %llu = %lu x %lu)\n",
	    (unsigned long long)total, (unsigned long long)nproc * increments, nproc, increments);
	ok = ok && total == (uint64_t)nproc * increments;
	printf("shm_counters: the manager: %llu kernels came and went (%llu died); %llu write "
	    "grants, %llu invalidations, %llu downgrades, %llu pages returned dirty\n",
	    (unsigned long long)mgr.st.inits, (unsigned long long)mgr.st.deaths,
	    (unsigned long long)mgr.st.grants, (unsigned long long)mgr.st.invalidations,
	    (unsigned long long)mgr.st.downgrades, (unsigned long long)mgr.st.dirty_returns);
	rc = ok ? 0 : 1;
out:
	/* Every child ends: say how those that failed ended; kill any still running after
	 * a failure. */
	for (unsigned i = 0; i < nkids; i++) {
		pid_t pid = waitpid(kids[i], &status, rc == 0 || all_ended ? 0 : WNOHANG);

		if (pid == 0) {
			kill(kids[i], SIGKILL);
			(void)waitpid(kids[i], &status, 0);
		} else if (pid == kids[i] && !(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
			describe_end(i, status);
			if (rc == 0)
				rc = 1;
		}
	}
	if (own_dir)
		remove_dir(dir);
	printf("shm_counters: %s\n", rc == 0 ? "ok" : rc == 77 ? "skipped" : "FAILED");
	return rc;
}
