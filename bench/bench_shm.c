/*
 * bench/bench_shm.c: the coherent shared memory pager (<machvm/pagers.h>) across
 * processes, against baselines measured in the same run with the same placement.
 *
 * Contents: 1. options, placements, helpers  2. the control region and the actor loop
 *           3. the manager  4. the mappers: setup and RPC  5. write ping-pong
 *           6. read-mostly sharing  7. the orchestrator  8. main
 *
 * Processes. The orchestrator (no Mach call, no thread) creates an ordinary shared
 * anonymous region (the control region, outside machvm) and forks three actors, each
 * of which pins itself before its first thread (so every machvm thread of it inherits
 * the placement) and then obeys the orchestrator's orders, given and answered through
 * futexes in the control region (no exec as in bench_node is needed: the orchestrator
 * never starts machvm, so a forked child is as fresh as an executed one):
 *   M   the manager: two shm pagers, obj (2 pages) and rd (--pages + 1 pages),
 *       checked in as bench_shm.PID.obj and bench_shm.PID.rd; it reads their statistics
 *       when told to;
 *   A   maps obj; the RPC client; writes the rd pages; reads them;
 *   B   maps obj; an RPC server thread (a port checked in as bench_shm.PID.rpc, each
 *       request of a header and 64 bytes answered in place through its send-once right,
 *       as in bench_node); reads the rd pages.
 *
 * Measurements (every repetition runs each one once, interleaved, so that a burst of
 * other load hits all alike; medians over --reps):
 *   RPC round trip      the baseline: mach_msg(SEND|RCV) from A to B's port (the message
 *                       crosses the node sockets both ways); --iters round trips; the
 *                       figure is two round trips.
 *   ping-pong, spin     one counter word in page 0 of obj; A waits until it is even and
 *                       increments it, B waits until it is odd and increments it (atomic
 *                       add: a write access). Waiting is loads of the page itself, with
 *                       sched_yield between loads (on a shared CPU a pure spinner would
 *                       starve the others). Every increment moves write ownership: the
 *                       first moves take the waiter's read (a downgrade of the writer)
 *                       and its add (data_unlock: the other copy is flushed); from then
 *                       on the page is migratory and the waiter's read takes it whole
 *                       (the writer flushed, the page supplied writable). Time per move =
 *                       time / --iters increments.
 *   ping-pong, futex    the counter in page 1; each side waits on a futex in the control
 *                       region instead (no load of the page): the side whose turn it is
 *                       adds (a write fault on an absent page: data_request for write, the
 *                       manager flushes the other kernel and supplies the page writable)
 *                       and wakes the other. The same loop with the counter in the
 *                       control region (no machvm) is the futex hand-off alone; the
 *                       difference is the ownership move alone.
 *   read-mostly         rd: A writes word 0 of each of --pages pages (first write), B
 *                       reads them (first read: each a read fault served by the manager
 *                       after a downgrade of A), then A and B at once read every word of
 *                       every page --passes times (warm reads), then both unmap, and B
 *                       maps again and reads each page once (first read with no writer:
 *                       the manager supplies its copy). Baselines, in the same processes
 *                       at the same time: the same loops on a private anonymous mapping
 *                       of the same size (its first read maps the zero page; its first
 *                       write allocates a page). Mean per page.
 * Every figure also checks coherence: each add checks the value it found (the futex
 * ping-pong knows it exactly, the spin one its parity and, at the end, the count), every
 * read checks what A wrote; a wrong value ends the run with exit 1. The manager's
 * statistics around the timed loops give the messages per move or per page.
 *
 * Placements (--placement same|split; default all three; split selects both split ones):
 *   same          A, B and the manager on CPU 0
 *   split         A on CPU 0, B on CPU 1, the manager on CPU 0 (with A)
 *   split/mfree   A on CPU 0, B on CPU 1, the manager unpinned
 * The RPC baseline runs between A and B, so in each placement it crosses CPUs exactly
 * when the ping-pong's two sides do (the manager is the third party only the shm pays).
 *
 * Usage: bench_shm [--iters N] [--pages N] [--passes N] [--reps R] [--quick]
 *                  [--placement same|split]
 * Exit 0, also when userfaultfd is unusable (a line says so) and when CPU 1 is not
 * (the split placements are skipped); exit 1 on an error, coherence errors included.
 */
#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <mach/mach.h>
#include <mach/netname.h>
#include <machvm/machvm.h>
#include <machvm/pagers.h>
#include <machvm/vm.h>
#include "bench_common.h"
#include "bench_rpc.h"

#define PS 4096UL
#define MAX_REPS 64
#define RPC_ID 4600
#define OP_TIMEOUT_US 60e6        /* an order not done by then fails the run */
#define WAIT_TIMEOUT_US 30e6      /* a ping-pong wait that long: the other side is stuck */

/* ---- 1. options, placements, helpers ----------------------------------------------------- */

static unsigned opt_iters = 1000;
static unsigned opt_pages = 256;
static unsigned opt_passes = 20;
static unsigned opt_reps = 5;
static const char *opt_placement;

struct placement {
	const char *name, *group;
	int a_cpu, b_cpu, m_cpu;          /* m_cpu -1: unpinned */
};

static const struct placement placements[] = {
	{ "same", "same", 0, 0, 0 },
	{ "split", "split", 0, 1, 0 },
	{ "split/mfree", "split", 0, 1, -1 },
};

static void actor_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

static void
pin_self(int cpu)
{
	cpu_set_t set;

	if (cpu < 0)
		return;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	if (sched_setaffinity(0, sizeof(set), &set) != 0)
		actor_fail("sched_setaffinity: %s", strerror(errno));
}

static double
best(const double *v, unsigned n)
{
	double b = v[0];

	for (unsigned i = 1; i < n; i++)
		if (v[i] < b)
			b = v[i];
	return b;
}

/* Futexes in the control region (MAP_SHARED: not FUTEX_PRIVATE). */
static void
futex_wait_us(uint32_t *w, uint32_t val, unsigned us)
{
	struct timespec ts = { us / 1000000u, (long)(us % 1000000u) * 1000 };

	(void)syscall(SYS_futex, w, FUTEX_WAIT, val, &ts, NULL, 0);
}

static void
futex_wake(uint32_t *w)
{
	(void)syscall(SYS_futex, w, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}

static uint32_t
ld(const uint32_t *w)
{
	return __atomic_load_n(w, __ATOMIC_SEQ_CST);
}

static void
st(uint32_t *w, uint32_t v)
{
	__atomic_store_n(w, v, __ATOMIC_SEQ_CST);
}

/* ---- 2. the control region and the actor loop -------------------------------------------- */

enum actor_id { ACT_M, ACT_A, ACT_B, NACT };
static const char *const actor_names[NACT] = { "manager", "A", "B" };

enum op {
	OP_NONE, OP_SETUP, OP_QUIT,
	OP_SNAP,                          /* M: statistics into ctl->snap[arg] */
	OP_RPC,                           /* A: arg round trips */
	OP_SPIN, OP_FUTEX, OP_HANDOFF,    /* A and B: arg increments in all (each side half) */
	OP_RD_MAP, OP_RD_WRITE, OP_RD_READ1, OP_RD_WARM, OP_RD_UNMAP, OP_RD_CLEAN,
};

struct slot {
	uint32_t seq;                     /* incremented with each order */
	uint32_t op, arg;
	double res[4];                    /* the order's results */
};

struct snap {
	struct mvm_shm_pager_stats obj, rd;
};

enum { SNAP_0, SNAP_1, NSNAP };

struct ctl {
	uint32_t done, target;            /* orders done; wake the orchestrator at target */
	uint32_t failed, skipped;
	char why[320];                    /* the first failure, or why the run is skipped */
	uint32_t turn;                    /* futex ping-pong: 0 A's turn, 1 B's */
	uint32_t plain;                   /* the hand-off's counter (no machvm) */
	uint32_t seed;                    /* read-mostly: this repetition's data */
	pid_t orch;
	struct snap snap[NSNAP];
	struct slot slot[NACT];
};

static struct ctl *ctl;
static int me = -1;                  /* the actor this process is; -1 the orchestrator */

static void
actor_fail(const char *fmt, ...)
{
	char buf[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	fprintf(stderr, "bench_shm: %s: %s\n", me >= 0 ? actor_names[me] : "orchestrator", buf);
	if (ctl != NULL && __atomic_exchange_n(&ctl->failed, 1, __ATOMIC_SEQ_CST) == 0) {
		snprintf(ctl->why, sizeof(ctl->why), "%s: %s", me >= 0 ? actor_names[me] : "-", buf);
		futex_wake(&ctl->done);
	}
	_exit(1);
}

static void
die_kr(const char *what, kern_return_t kr)
{
	actor_fail("%s: %s (0x%x)", what, mvm_errname(kr), (unsigned)kr);
}

static void
name_of(char *buf, size_t len, const char *what)
{
	snprintf(buf, len, "bench_shm.%d.%s", (int)ctl->orch, what);
}

/* Wait until *w != val (a futex of the other side), failing after WAIT_TIMEOUT_US. */
static void
await_change(uint32_t *w, uint32_t val)
{
	double end = now_us() + WAIT_TIMEOUT_US;

	while (ld(w) == val) {
		futex_wait_us(w, val, 1000000);
		if (ld(&ctl->failed) || now_us() > end)
			actor_fail("the other side is stuck (or failed)");
	}
}

/* This order is done: count it, and wake the orchestrator when all it waits for are. */
static void
order_done(void)
{
	uint32_t n = __atomic_add_fetch(&ctl->done, 1, __ATOMIC_SEQ_CST);

	if (n == ld(&ctl->target))
		futex_wake(&ctl->done);
}

static void m_order(struct slot *s);
static void a_order(struct slot *s);
static void b_order(struct slot *s);

static void
actor_main(int id, int cpu)
{
	struct slot *s;
	uint32_t last = 0, op;

	me = id;
	s = &ctl->slot[id];
	/* Die with the orchestrator (it may be killed by a test timeout). */
	(void)prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != ctl->orch)
		_exit(1);
	signal(SIGPIPE, SIG_IGN);
	pin_self(cpu);
	for (;;) {
		while (ld(&s->seq) == last) {
			futex_wait_us(&s->seq, last, 1000000);
			if (getppid() != ctl->orch)
				_exit(1);
		}
		last = ld(&s->seq);
		op = s->op;                   /* the orchestrator may write the next one once
						 * this one is done */
		if (id == ACT_M)
			m_order(s);
		else if (id == ACT_A)
			a_order(s);
		else
			b_order(s);
		order_done();
		if (op == OP_QUIT)
			_exit(0);
	}
}

/* ---- 3. the manager ---------------------------------------------------------------------- */

static struct {
	struct mvm_shm_pager *obj, *rd;
} mgr;

static void
m_order(struct slot *s)
{
	char name[sizeof(netname_name_t)];
	mach_port_t port;
	kern_return_t kr;

	switch (s->op) {
	case OP_SETUP:
		if ((kr = mvm_shm_pager_create(2 * PS, &mgr.obj, &port)) != KERN_SUCCESS)
			die_kr("mvm_shm_pager_create", kr);
		name_of(name, sizeof(name), "obj");
		if ((kr = netname_check_in(name_server_port, name, MACH_PORT_NULL, port)) != 0)
			die_kr("netname_check_in", kr);
		if ((kr = mvm_shm_pager_create((opt_pages + 1) * PS, &mgr.rd, &port)) != KERN_SUCCESS)
			die_kr("mvm_shm_pager_create", kr);
		name_of(name, sizeof(name), "rd");
		if ((kr = netname_check_in(name_server_port, name, MACH_PORT_NULL, port)) != 0)
			die_kr("netname_check_in", kr);
		break;
	case OP_SNAP:
		if (mvm_shm_pager_stats(mgr.obj, &ctl->snap[s->arg].obj) != KERN_SUCCESS ||
		    mvm_shm_pager_stats(mgr.rd, &ctl->snap[s->arg].rd) != KERN_SUCCESS)
			actor_fail("mvm_shm_pager_stats");
		break;
	case OP_QUIT:
		if (mgr.obj != NULL)
			(void)mvm_shm_pager_shutdown(mgr.obj);
		if (mgr.rd != NULL)
			(void)mvm_shm_pager_shutdown(mgr.rd);
		break;
	default:
		actor_fail("unknown order %u", s->op);
	}
}

/* ---- 4. the mappers: setup and RPC ------------------------------------------------------- */

static struct {
	volatile uint32_t *page;          /* obj: page 0 the spin counter, page 1 the futex one */
	mach_port_t rpc, reply;           /* A: B's RPC port, our reply port */
	uint32_t mine;                    /* futex ping-pong: our increments so far */
	mach_port_t rd_port;
	volatile uint64_t *rd;            /* the rd mapping (opt_pages + 1 pages), or NULL */
	uint64_t *anon;                   /* its private anonymous twin */
} mp;

/* Mean microseconds per round trip over n Mach RPCs from A to B. */
static double
rpc_mach(unsigned n)
{
	kern_return_t kr;
	double us = rpc_trips(mp.rpc, mp.reply, RPC_ID, n, &kr);

	if (us < 0)
		die_kr("RPC round trip", kr);
	return us;
}

static void *
map_object(const char *what, size_t size, mach_port_t *portp)
{
	char name[sizeof(netname_name_t)];
	vm_address_t addr = 0;
	mach_port_t port = *portp;
	kern_return_t kr;

	if (!MACH_PORT_VALID(port)) {
		name_of(name, sizeof(name), what);
		if ((kr = netname_look_up(name_server_port, "", name, &port)) != 0)
			die_kr("netname_look_up", kr);
		*portp = port;
	}
	kr = vm_map(mach_task_self(), &addr, size, 0, TRUE, port, 0, FALSE,
	    VM_PROT_READ | VM_PROT_WRITE, VM_PROT_ALL, VM_INHERIT_NONE);
	if (kr != KERN_SUCCESS)
		die_kr("vm_map", kr);
	return (void *)addr;
}

/* Setup of A or B; false when userfaultfd is unusable (ctl->why says why). */
static bool
mapper_setup(int id)
{
	char name[sizeof(netname_name_t)], why[200];
	mach_port_t obj = MACH_PORT_NULL;
	kern_return_t kr;
	pthread_t t;

	if (mvm_vm_available(why, sizeof(why)) != KERN_SUCCESS) {
		snprintf(ctl->why, sizeof(ctl->why), "%s", why);
		st(&ctl->skipped, 1);
		return false;
	}
	mp.page = map_object("obj", 2 * PS, &obj);
	name_of(name, sizeof(name), "rpc");
	if (id == ACT_B) {
		mach_port_t port;

		if ((kr = mach_port_allocate(mach_task_self(), MACH_PORT_RIGHT_RECEIVE, &port)) != 0)
			die_kr("mach_port_allocate", kr);
		if ((kr = netname_check_in(name_server_port, name, MACH_PORT_NULL, port)) != 0)
			die_kr("netname_check_in", kr);
		if (pthread_create(&t, NULL, rpc_server_main, (void *)(uintptr_t)port) != 0)
			actor_fail("pthread_create");
	} else {
		if ((kr = netname_look_up(name_server_port, "", name, &mp.rpc)) != 0)
			die_kr("netname_look_up", kr);
		if ((kr = mach_port_allocate(mach_task_self(), MACH_PORT_RIGHT_RECEIVE,
		    &mp.reply)) != 0)
			die_kr("mach_port_allocate", kr);
	}
	return true;
}

/* ---- 5. write ping-pong ------------------------------------------------------------------- */

/* Wait by loads of the page until the counter's parity is want; its value. */
static uint32_t
spin_until(volatile uint32_t *c, uint32_t want)
{
	double end = 0;
	unsigned spins = 0;
	uint32_t v;

	while (((v = __atomic_load_n(c, __ATOMIC_SEQ_CST)) & 1) != want) {
		sched_yield();
		if ((++spins & 1023) == 0) {
			if (end == 0)
				end = now_us() + WAIT_TIMEOUT_US;
			else if (now_us() > end || ld(&ctl->failed))
				actor_fail("spin: the other side is stuck (or failed)");
		}
	}
	return v;
}

/*
 * One side of the spin ping-pong: n increments, each after the counter reached our
 * parity (A even, B odd). A times from its first increment to the moment it sees B's
 * last: 2n moves. Returns microseconds per move (A) or 0 (B).
 */
static double
pingpong_spin(volatile uint32_t *c, unsigned n, uint32_t parity)
{
	static uint32_t adds;             /* ours so far */
	double t0 = 0;
	uint32_t v;

	for (unsigned i = 0; i < n; i++) {
		v = spin_until(c, parity);
		if (i == 0)
			t0 = now_us();
		if ((__atomic_fetch_add(c, 1, __ATOMIC_SEQ_CST) & 1) != parity)
			actor_fail("spin: the counter changed under us (%u)", v);
		adds++;
	}
	if (parity == 0) {
		double t;

		v = spin_until(c, 0);
		t = (now_us() - t0) / (2.0 * n);
		if (v != 2 * adds)
			actor_fail("spin: the counter is %u after %u adds each (incoherent)", v, adds);
		return t;
	}
	return 0;
}

/*
 * One side of the futex ping-pong on counter c (the shm page or the control region): n
 * hand-offs each. The k-th add of A must find 2k, of B 2k + 1 (*mine counts ours).
 */
static double
pingpong_futex(volatile uint32_t *c, uint32_t *mine, unsigned n, uint32_t side)
{
	double t0 = now_us();

	for (unsigned i = 0; i < n; i++) {
		uint32_t old;

		if (side == 1)
			await_change(&ctl->turn, 0);
		old = __atomic_fetch_add(c, 1, __ATOMIC_SEQ_CST);
		if (old != 2 * *mine + side)
			actor_fail("futex ping-pong: counter %u, expected %u (incoherent)", old,
			    2 * *mine + side);
		(*mine)++;
		st(&ctl->turn, side ^ 1);
		futex_wake(&ctl->turn);
		if (side == 0)
			await_change(&ctl->turn, 1);
	}
	return (now_us() - t0) / (2.0 * n);
}

/* ---- 6. read-mostly sharing --------------------------------------------------------------- */

#define WORDS (PS / sizeof(uint64_t))

static uint64_t
word0(uint32_t seed, size_t pg)
{
	return ((uint64_t)seed << 32) ^ (pg * 0x9e3779b97f4a7c15ull);
}

static uint64_t *
anon_map(void)
{
	void *p = mmap(NULL, (opt_pages + 1) * PS, PROT_READ | PROT_WRITE,
	    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		actor_fail("mmap: %s", strerror(errno));
	/* machvm maps single pages: no transparent huge pages for the baseline either. */
	(void)madvise(p, (opt_pages + 1) * PS, MADV_NOHUGEPAGE);
	return p;
}

/* Map rd (and its anonymous twin); touch the extra last page of each (the object's
 * init and first request are not first touches of the pages measured). */
static void
rd_map(void)
{
	mp.rd = map_object("rd", (opt_pages + 1) * PS, &mp.rd_port);
	mp.anon = anon_map();
	(void)mp.rd[opt_pages * WORDS];
	(void)((volatile uint64_t *)mp.anon)[opt_pages * WORDS];
}

static void
rd_unmap(void)
{
	kern_return_t kr;

	if (mp.rd != NULL &&
	    (kr = vm_deallocate(mach_task_self(), (vm_address_t)mp.rd, (opt_pages + 1) * PS)) != 0)
		die_kr("vm_deallocate", kr);
	if (mp.anon != NULL)
		munmap(mp.anon, (opt_pages + 1) * PS);
	mp.rd = NULL;
	mp.anon = NULL;
}

/* Mean microseconds per page: write word 0 of each page. */
static double
first_write(volatile uint64_t *m, uint32_t seed)
{
	double t0 = now_us();

	for (size_t pg = 0; pg < opt_pages; pg++)
		m[pg * WORDS] = word0(seed, pg);
	return (now_us() - t0) / opt_pages;
}

/* Mean microseconds per page: read word 0 of each page; check it when check. */
static double
first_read(volatile uint64_t *m, uint32_t seed, bool check)
{
	double t0 = now_us(), t;
	size_t bad = opt_pages;

	for (size_t pg = 0; pg < opt_pages; pg++) {
		uint64_t v = m[pg * WORDS];

		if (check && v != word0(seed, pg) && bad == opt_pages)
			bad = pg;
	}
	t = (now_us() - t0) / opt_pages;
	if (bad != opt_pages)
		actor_fail("read-mostly: page %zu does not hold what A wrote (incoherent)", bad);
	return t;
}

/* Sum every word of every page; the sum must be that of the words 0. */
static uint64_t
sum_pages(const volatile uint64_t *m)
{
	uint64_t s = 0;

	for (size_t pg = 0; pg < opt_pages; pg++) {
		const volatile uint64_t *p = m + pg * WORDS;

		for (size_t i = 0; i < WORDS; i++)
			s += p[i];
	}
	return s;
}

/* Warm reads: passes over rd and over the anonymous twin, alternating; per page. */
static void
warm_reads(uint32_t seed, unsigned passes, double *shm, double *anon)
{
	uint64_t want = 0;
	double ts = 0, ta = 0;

	for (size_t pg = 0; pg < opt_pages; pg++)
		want += word0(seed, pg);
	for (unsigned i = 0; i < passes; i++) {
		double t0 = now_us(), t1;

		if (sum_pages(mp.rd) != want)
			actor_fail("read-mostly: warm read of the shared pages saw other data");
		t1 = now_us();
		if (sum_pages(mp.anon) != want)
			actor_fail("read-mostly: warm read of the private pages saw other data");
		ts += t1 - t0;
		ta += now_us() - t1;
	}
	*shm = ts / passes / opt_pages;
	*anon = ta / passes / opt_pages;
}

static void
mapper_order(struct slot *s, int id)
{
	uint32_t side = id == ACT_A ? 0 : 1;

	memset(s->res, 0, sizeof(s->res));
	switch (s->op) {
	case OP_SETUP:
		(void)mapper_setup(id);
		break;
	case OP_QUIT:
		rd_unmap();
		if (mp.page != NULL)
			(void)vm_deallocate(mach_task_self(), (vm_address_t)mp.page, 2 * PS);
		break;
	case OP_RPC:
		s->res[0] = rpc_mach(s->arg);
		break;
	case OP_SPIN:
		s->res[0] = pingpong_spin(mp.page, s->arg / 2, side);
		break;
	case OP_FUTEX:
		s->res[0] = pingpong_futex(mp.page + PS / sizeof(uint32_t), &mp.mine, s->arg / 2, side);
		break;
	case OP_HANDOFF: {
		static uint32_t plain_mine;

		s->res[0] = pingpong_futex(&ctl->plain, &plain_mine, s->arg / 2, side);
		break;
	}
	case OP_RD_MAP:
		rd_map();
		break;
	case OP_RD_WRITE:                 /* A */
		s->res[1] = first_write(mp.anon, ctl->seed);
		s->res[0] = first_write(mp.rd, ctl->seed);
		break;
	case OP_RD_READ1:                 /* B: A holds every page for writing */
		s->res[1] = first_read(mp.anon, 0, false);
		(void)first_write(mp.anon, ctl->seed);  /* real pages for the warm reads */
		s->res[0] = first_read(mp.rd, ctl->seed, true);
		break;
	case OP_RD_WARM:
		warm_reads(ctl->seed, s->arg, &s->res[0], &s->res[1]);
		break;
	case OP_RD_UNMAP:
		rd_unmap();
		break;
	case OP_RD_CLEAN:                 /* B: nobody holds the pages */
		s->res[1] = first_read(mp.anon, 0, false);
		s->res[0] = first_read(mp.rd, ctl->seed, true);
		break;
	default:
		actor_fail("unknown order %u", s->op);
	}
}

static void
a_order(struct slot *s)
{
	mapper_order(s, ACT_A);
}

static void
b_order(struct slot *s)
{
	mapper_order(s, ACT_B);
}

/* ---- 7. the orchestrator ------------------------------------------------------------------ */

static pid_t pids[NACT];

static void
kill_actors(void)
{
	for (int i = 0; i < NACT; i++)
		if (pids[i] > 0) {
			kill(pids[i], SIGKILL);
			(void)waitpid(pids[i], NULL, 0);
			pids[i] = 0;
		}
}

static void
orch_fail(const char *what)
{
	fprintf(stderr, "bench_shm: %s\n", what);
	kill_actors();
	exit(1);
}

/* Give orders (op, arg) to the actors in mask at once and wait until all are done. */
static void
order(unsigned mask, enum op op, uint32_t arg)
{
	uint32_t target = ld(&ctl->done);
	double end = now_us() + OP_TIMEOUT_US;
	uint32_t d;

	for (int i = 0; i < NACT; i++)
		if (mask & (1u << i))
			target++;
	st(&ctl->target, target);
	/* B first: in the ping-pongs it waits for A, which times. */
	for (int i = NACT - 1; i >= 0; i--)
		if (mask & (1u << i)) {
			struct slot *s = &ctl->slot[i];

			s->op = op;
			s->arg = arg;
			__atomic_add_fetch(&s->seq, 1, __ATOMIC_SEQ_CST);
			futex_wake(&s->seq);
		}
	while ((d = ld(&ctl->done)) < target) {
		futex_wait_us(&ctl->done, d, 200000);
		if (ld(&ctl->failed)) {
			char why[400];

			snprintf(why, sizeof(why), "failed: %s", ctl->why);
			orch_fail(why);
		}
		for (int i = 0; i < NACT; i++) {
			int status;

			if (pids[i] > 0 && waitpid(pids[i], &status, WNOHANG) == pids[i]) {
				char why[200];

				pids[i] = 0;
				if (op == OP_QUIT && WIFEXITED(status) && WEXITSTATUS(status) == 0)
					continue;
				snprintf(why, sizeof(why), "actor %s ended (%s %d) during order %d",
				    actor_names[i], WIFSIGNALED(status) ? "signal" : "exit status",
				    WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status), op);
				orch_fail(why);
			}
		}
		if (now_us() > end)
			orch_fail("an order took too long (an actor is stuck)");
	}
}

#define TO_M (1u << ACT_M)
#define TO_A (1u << ACT_A)
#define TO_B (1u << ACT_B)

static void
snap(int i)
{
	order(TO_M, OP_SNAP, (uint32_t)i);
}

/* Add the manager's statistics from snapshot i to snapshot j to acc. */
static void
stats_add(struct mvm_shm_pager_stats *acc, bool rd, int i, int j)
{
	const struct mvm_shm_pager_stats *x = rd ? &ctl->snap[i].rd : &ctl->snap[i].obj;
	const struct mvm_shm_pager_stats *y = rd ? &ctl->snap[j].rd : &ctl->snap[j].obj;

	acc->read_requests += y->read_requests - x->read_requests;
	acc->write_requests += y->write_requests - x->write_requests;
	acc->unlocks += y->unlocks - x->unlocks;
	acc->stale_unlocks += y->stale_unlocks - x->stale_unlocks;
	acc->supplies += y->supplies - x->supplies;
	acc->grants += y->grants - x->grants;
	acc->migratory_grants += y->migratory_grants - x->migratory_grants;
	acc->invalidations += y->invalidations - x->invalidations;
	acc->downgrades += y->downgrades - x->downgrades;
	acc->returns += y->returns - x->returns;
	acc->dirty_returns += y->dirty_returns - x->dirty_returns;
}

static void
print_stats(const char *indent, const struct mvm_shm_pager_stats *s, double n, const char *per)
{
	printf("%smanager per %s: %.2f grants (%.2f migratory), %.2f invalidations, %.2f "
	    "downgrades; requests %.2f read, %.2f write, %.2f unlock (%.2f stale); %.2f supplies, "
	    "%.2f dirty returns\n",
	    indent, per, s->grants / n, s->migratory_grants / n, s->invalidations / n,
	    s->downgrades / n, s->read_requests / n,
	    s->write_requests / n, s->unlocks / n, s->stale_unlocks / n, s->supplies / n,
	    s->dirty_returns / n);
}

static const char *
cpu_str(int cpu, char *buf, size_t len)
{
	if (cpu < 0)
		snprintf(buf, len, "unpinned");
	else
		snprintf(buf, len, "CPU %d", cpu);
	return buf;
}

static void
run_placement(const struct placement *pl)
{
	double rpc[MAX_REPS], spin[MAX_REPS], fut[MAX_REPS], hand[MAX_REPS];
	double wr[2][MAX_REPS], r1[2][MAX_REPS], cl[2][MAX_REPS], wa[2][MAX_REPS];
	struct mvm_shm_pager_stats s_spin, s_fut, s_wr, s_r1, s_warm, s_cl;
	unsigned n = opt_iters & ~1u, warm = n / 10 + 2;
	int cpus[NACT] = { pl->m_cpu, pl->a_cpu, pl->b_cpu };
	char c1[16], c2[16], c3[16];
	double m, mb, sp, f, h, fb, hb;

	memset(ctl, 0, sizeof(*ctl));
	ctl->orch = getpid();
	memset(&s_spin, 0, sizeof(s_spin));
	s_fut = s_wr = s_r1 = s_warm = s_cl = s_spin;
	fflush(stdout);
	fflush(stderr);
	for (int i = 0; i < NACT; i++) {
		pid_t pid = fork();

		if (pid < 0)
			orch_fail("fork failed");
		if (pid == 0) {
			actor_main(i, cpus[i]);
			_exit(0);
		}
		pids[i] = pid;
	}
	printf("\nplacement %s: A on %s, B on %s, manager on %s (every thread of each "
	    "process)\n", pl->name, cpu_str(pl->a_cpu, c1, sizeof(c1)),
	    cpu_str(pl->b_cpu, c2, sizeof(c2)), cpu_str(pl->m_cpu, c3, sizeof(c3)));
	/* The manager checks in first; B checks in the RPC port A looks up. */
	order(TO_M, OP_SETUP, 0);
	order(TO_B, OP_SETUP, 0);
	if (!ld(&ctl->skipped))
		order(TO_A, OP_SETUP, 0);
	if (ld(&ctl->skipped)) {
		printf("  skipped: userfaultfd is not usable here: %s\n", ctl->why);
		order(TO_A | TO_B, OP_QUIT, 0);
		order(TO_M, OP_QUIT, 0);
		return;
	}

	/* Warm-up of every path (the pages find their places, the node its proxies). */
	order(TO_A, OP_RPC, warm);
	order(TO_A | TO_B, OP_SPIN, warm);
	order(TO_A | TO_B, OP_FUTEX, warm);
	order(TO_A | TO_B, OP_HANDOFF, warm);
	for (unsigned rep = 0; rep < opt_reps; rep++) {
		order(TO_A, OP_RPC, n);
		rpc[rep] = 2 * ctl->slot[ACT_A].res[0];
		snap(0);
		order(TO_A | TO_B, OP_SPIN, n);
		spin[rep] = ctl->slot[ACT_A].res[0];
		snap(1);
		stats_add(&s_spin, false, 0, 1);
		order(TO_A | TO_B, OP_FUTEX, n);
		fut[rep] = ctl->slot[ACT_A].res[0];
		snap(0);
		stats_add(&s_fut, false, 1, 0);
		order(TO_A | TO_B, OP_HANDOFF, n);
		hand[rep] = ctl->slot[ACT_A].res[0];
	}
	/* Medians, and the ratios of the best repetitions too: under other load the best
	 * ones are the closest to an idle machine. */
	m = median(rpc, opt_reps);
	mb = best(rpc, opt_reps);
	printf("  write ping-pong of one page between A and B, %u ownership moves per repetition:\n",
	    n);
	printf("    baseline: two Mach RPC round trips A->B (64-byte request and reply)  %8.2f us"
	    "  (best %.2f)\n", m, mb);
	sp = median(spin, opt_reps);
	printf("    waiting by loads of the page (sched_yield between loads):\n"
	    "      ownership move (A's write, then B's, ...)     %8.2f us  (best %.2f)\n"
	    "      ratio move / two RPCs                         %8.2f     (best/best %.2f; goal <= 2.5)\n",
	    sp, best(spin, opt_reps), sp / m, best(spin, opt_reps) / mb);
	print_stats("      ", &s_spin, (double)n * opt_reps, "move");
	f = median(fut, opt_reps);
	h = median(hand, opt_reps);
	fb = best(fut, opt_reps);
	hb = best(hand, opt_reps);
	printf("    waiting on a futex in ordinary shared memory (no load of the page while "
	    "waiting):\n"
	    "      write of the page + futex hand-off            %8.2f us  (best %.2f)\n"
	    "      futex hand-off alone (counter not in machvm)  %8.2f us  (best %.2f)\n"
	    "      ownership move alone (difference)             %8.2f us  (best-best %.2f)\n"
	    "      ratio (write + hand-off) / two RPCs           %8.2f     (best/best %.2f)\n"
	    "      ratio move alone / two RPCs                   %8.2f     (best/best %.2f; goal <= 2.5)\n",
	    f, fb, h, hb, f - h, fb - hb, f / m, fb / mb, (f - h) / m, (fb - hb) / mb);
	print_stats("      ", &s_fut, (double)n * opt_reps, "move");

	/* Read-mostly sharing; the snapshots bracket exactly the timed loops. */
	for (unsigned rep = 0; rep < opt_reps; rep++) {
		ctl->seed = rep + 1;
		order(TO_A | TO_B, OP_RD_MAP, 0);
		snap(0);
		order(TO_A, OP_RD_WRITE, 0);
		wr[0][rep] = ctl->slot[ACT_A].res[0];
		wr[1][rep] = ctl->slot[ACT_A].res[1];
		snap(1);
		stats_add(&s_wr, true, 0, 1);
		order(TO_B, OP_RD_READ1, 0);
		r1[0][rep] = ctl->slot[ACT_B].res[0];
		r1[1][rep] = ctl->slot[ACT_B].res[1];
		snap(0);
		stats_add(&s_r1, true, 1, 0);
		order(TO_A | TO_B, OP_RD_WARM, opt_passes);
		wa[0][rep] = (ctl->slot[ACT_A].res[0] + ctl->slot[ACT_B].res[0]) / 2;
		wa[1][rep] = (ctl->slot[ACT_A].res[1] + ctl->slot[ACT_B].res[1]) / 2;
		snap(1);
		stats_add(&s_warm, true, 0, 1);
		order(TO_A | TO_B, OP_RD_UNMAP, 0);
		order(TO_B, OP_RD_MAP, 0);
		snap(0);
		order(TO_B, OP_RD_CLEAN, 0);
		cl[0][rep] = ctl->slot[ACT_B].res[0];
		cl[1][rep] = ctl->slot[ACT_B].res[1];
		snap(1);
		stats_add(&s_cl, true, 0, 1);
		order(TO_B, OP_RD_UNMAP, 0);
	}
	printf("  read-mostly sharing, %u pages (%.2f MiB) written by A, read by A and B; mean per "
	    "page:\n", opt_pages, opt_pages * PS / 1048576.0);
	printf("                                                    shm (us)  private anon (us)   ratio\n");
	{
		const char *what[4] = {
			"first write (A; nobody else holds the page)",
			"first read (B; A is writing: a downgrade)",
			"first read (B; no writer: a plain supply)",
			"warm read, 512 words (A and B at once)",
		};
		double (*v[4])[MAX_REPS] = { wr, r1, cl, wa };

		for (int i = 0; i < 4; i++) {
			double x = median(v[i][0], opt_reps), y = median(v[i][1], opt_reps);

			printf("    %-46s %10.3f %12.3f %14.2f\n", what[i], x, y, x / y);
		}
	}
	printf("    (private anon: a first read maps the zero page, a first write allocates one; "
	    "%u warm passes)\n", opt_passes);
	print_stats("    first write, ", &s_wr, (double)opt_pages * opt_reps, "page");
	print_stats("    first read with downgrade, ", &s_r1, (double)opt_pages * opt_reps, "page");
	print_stats("    first read, no writer, ", &s_cl, (double)opt_pages * opt_reps, "page");
	printf("    manager requests during the warm reads: %llu (expected 0)\n",
	    (unsigned long long)(s_warm.read_requests + s_warm.write_requests + s_warm.unlocks));

	order(TO_A | TO_B, OP_QUIT, 0);
	order(TO_M, OP_QUIT, 0);
	for (int i = 0; i < NACT; i++)
		if (pids[i] > 0) {
			(void)waitpid(pids[i], NULL, 0);
			pids[i] = 0;
		}
}

/* ---- 8. main ------------------------------------------------------------------------------- */

int
main(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--iters") == 0 && i + 1 < argc)
			opt_iters = (unsigned)strtoul(argv[++i], NULL, 10);
		else if (strcmp(argv[i], "--pages") == 0 && i + 1 < argc)
			opt_pages = (unsigned)strtoul(argv[++i], NULL, 10);
		else if (strcmp(argv[i], "--passes") == 0 && i + 1 < argc)
			opt_passes = (unsigned)strtoul(argv[++i], NULL, 10);
		else if (strcmp(argv[i], "--reps") == 0 && i + 1 < argc)
			opt_reps = (unsigned)strtoul(argv[++i], NULL, 10);
		else if (strcmp(argv[i], "--quick") == 0) {
			opt_iters = 600;
			opt_pages = 128;
			opt_passes = 10;
			opt_reps = 3;
		} else if (strcmp(argv[i], "--placement") == 0 && i + 1 < argc)
			opt_placement = argv[++i];
		else {
			fprintf(stderr, "usage: bench_shm [--iters N] [--pages N] [--passes N] "
			    "[--reps R] [--quick] [--placement same|split]\n");
			return 2;
		}
	}
	if (opt_reps < 1 || opt_reps > MAX_REPS || opt_iters < 2 || opt_pages < 1 ||
	    opt_passes < 1) {
		fprintf(stderr, "bench_shm: --reps must be 1 to 64, --iters at least 2, --pages "
		    "and --passes at least 1\n");
		return 2;
	}
	ctl = mmap(NULL, sizeof(*ctl), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (ctl == MAP_FAILED) {
		perror("bench_shm: mmap");
		return 1;
	}
	signal(SIGPIPE, SIG_IGN);
	setvbuf(stdout, NULL, _IOLBF, 0);     /* each figure as soon as it is known */
	printf("bench_shm: the coherent shared memory pager across processes against baselines "
	    "measured in the same run\nprocesses: A and B map the object, the manager serves "
	    "it; %u repetitions (median)\n", opt_reps);
	print_load("before");
	for (size_t i = 0; i < sizeof(placements) / sizeof(placements[0]); i++) {
		const struct placement *pl = &placements[i];

		if (opt_placement != NULL && strcmp(opt_placement, pl->group) != 0 &&
		    strcmp(opt_placement, pl->name) != 0)
			continue;
		if (!cpu_usable(pl->a_cpu) || !cpu_usable(pl->b_cpu) ||
		    (pl->m_cpu >= 0 && !cpu_usable(pl->m_cpu))) {
			printf("\nplacement %s: skipped: CPU %d or %d is not usable here\n", pl->name,
			    pl->a_cpu, pl->b_cpu);
			continue;
		}
		run_placement(pl);
		if (ld(&ctl->skipped))
			break;
	}
	print_load("after");
	return 0;
}
