/*
 * tests/integration/test_shm_kill.c: the coherent shared memory pager (mvm_shm_pager_*,
 * <machvm/pagers.h>) with its manager and its kernels in different processes: coherence
 * across processes, and processes killed (SIGKILL) while they hold pages, while the
 * manager waits for them, or the manager itself.
 *
 * The actors (see mvm_node_test.h): a manager creates the pager and checks its port in
 * as "shm"; mappers look it up and map it read-write. Every page access of a mapper is
 * made by a thread of its own under sigsetjmp, so that a SIGBUS is reported instead of
 * killing the actor, and an access that blocks can be watched from outside. Page
 * contents are versions: version v of page pg is the words (v << 40 | pg << 20 | j),
 * version 0 is zeros; a page whose word 0 was overwritten with MARK and whose other
 * words are version v reads as SIG_MIXED | v. Anything else reads as SIG_BAD.
 *
 * The tests:
 *   basic_coherence:      A writes, B reads what A wrote, B writes, A reads it; the
 *                         manager's mvm_shm_pager_read sees the newest data, also of
 *                         pages a kernel is writing at that moment; the statistics
 *                         count exactly the requests, grants, flushes and downgrades
 *                         this sequence needs. Both unmap: the dirty pages they held
 *                         come back (the manager reads them after both terminated).
 *   kill_writer_holding:  A holds write access to page P with data it never returned
 *                         (version 2; the manager has version 1); A is killed. B then
 *                         reads P without hanging and sees version 1 (A's unreturned
 *                         write is lost, as documented), writes it, and the manager
 *                         counts one death.
 *   kill_while_flushing / kill_while_downgrading: as above, but A is stopped (SIGSTOP)
 *                         and B writes P (the manager flushes A) or reads it (the
 *                         manager asks A to downgrade): B's access blocks, and stays
 *                         blocked for 200 ms while the manager still serves other pages
 *                         and other requests of B; A is killed: B's access completes
 *                         within seconds, with version 1 under it.
 *   kill_manager:         the manager is killed while A holds pages and one of A's
 *                         threads waits in a fault (B, stopped, holds the page for
 *                         writing): the waiting thread gets SIGBUS (BUS_OBJERR); pages
 *                         A does not hold fault with SIGBUS; pages it holds stay
 *                         readable, a page it holds for writing stays writable; a write
 *                         to a page it holds read-only (it needs the manager's unlock)
 *                         gets SIGBUS rather than hang. B resumes and likewise. Both
 *                         unmap (vm_deallocate returns KERN_SUCCESS) and exit cleanly.
 *   read_returns:         many mvm_shm_pager_read calls served at once, the caller's
 *                         stack scribbled on after each: the server must be done with
 *                         the read (which lives on the caller's stack) when the call
 *                         returns.
 *   bad_arguments:        create of size 0, NULL out-parameters, reads outside the
 *                         object or overflowing, stats and shutdown of NULL.
 *   map_beyond_end:       a kernel that maps more than the object: the pages past the
 *                         end fault with SIGBUS (the manager answers data_error).
 *
 * userfaultfd: mvm_test_require_uffd() after nt_setup() asks a child process (the test
 * process never starts machvm); without it the tests are skipped, or fail with
 * MACHVM_REQUIRE_UFFD=1.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>

#include <machvm/pagers.h>
#include <machvm/vm.h>
#include "mvm_node_test.h"
#include "mvm_vmtest.h"   /* on_sigbus, bus_jb, bus_code, bus_addr */

#define NP 8                      /* pages of the object in most tests */
#define WORDS (PG / sizeof(uint64_t))
#define MARK 0x4d41524b4d41524bull
#define SIG_MIXED 0x10000u
#define SIG_BAD 0xfffffu
#define BLOCK_MS 200              /* an access that must block is watched this long */
#define DONE_MS 5000              /* an access that must complete gets this long */
#ifndef READS
#define READS 3000                /* mvm_shm_pager_read calls of each read_returns thread */
#endif
#define READERS 3

/* ---- page contents -------------------------------------------------------------------- */

static uint64_t
word_of(size_t pg, uint32_t v, size_t j)
{
	return v == 0 ? 0 : ((uint64_t)v << 40) | ((uint64_t)pg << 20) | j;
}

/* What page pg holds: its version, SIG_MIXED | v, or SIG_BAD. Reads word 1 first. */
static uint32_t
page_sig(const volatile uint64_t *w, size_t pg)
{
	uint64_t w1 = w[1];
	uint32_t v = (uint32_t)(w1 >> 40);

	for (size_t j = 1; j < WORDS; j++)
		if (w[j] != word_of(pg, v, j))
			return SIG_BAD;
	if (w[0] == word_of(pg, v, 0))
		return v;
	if (w[0] == MARK)
		return SIG_MIXED | v;
	return SIG_BAD;
}

/* Writes word 0 first (the first access is a write fault). */
static void
page_fill(volatile uint64_t *w, size_t pg, uint32_t v)
{
	for (size_t j = 0; j < WORDS; j++)
		w[j] = word_of(pg, v, j);
}

/* ---- orders and reports ----------------------------------------------------------------- */

/* An order: op, page, version. */
#define CMD(op, pg, v) (((uint64_t)(op) << 56) | ((uint64_t)(pg) << 32) | (uint32_t)(v))
#define CMD_OP(c) ((unsigned)((c) >> 56))
#define CMD_PG(c) ((size_t)(((c) >> 32) & 0xffffff))
#define CMD_V(c) ((uint32_t)(c))

/* A report: a tag (which answer it is) and a value. */
enum { TAG_REPLY = 1, TAG_ASYNC = 2 };
#define REPORT(tag, v) (((uint64_t)(tag) << 48) | ((v) & 0xffffffffffffull))
#define REPORT_TAG(r) ((unsigned)((r) >> 48))
#define REPORT_VAL(r) ((r) & 0xffffffffffffull)

/* Results of an access: a page_sig (reads), 0 (writes), or one of these. */
#define R_BUS (1ull << 40)        /* | si_code: SIGBUS at the page accessed */
#define R_BUS_ELSEWHERE (1ull << 41) /* SIGBUS at an address outside the page */
#define R_HUNG (1ull << 42)       /* not finished after DONE_MS */
#define BUS_OK (R_BUS | BUS_OBJERR)

/* Mapper orders. */
enum { C_READ = 1, C_WRITE, C_WRITE0, C_ASYNC_READ, C_ASYNC_WRITE0, C_UNMAP, C_EXIT };
/* Manager orders (arg of G_STAT, G_WAIT: a statistics field, ST(field)). */
enum { G_READ = 20, G_STAT, G_WAIT, G_SHUTDOWN, G_EXIT };
#define ST(field) (offsetof(struct mvm_shm_pager_stats, field) / sizeof(uint64_t))

static void
reply(uint64_t v)
{
	nt_tell(REPORT(TAG_REPLY, v));
}

/* ---- the mapper ---------------------------------------------------------------------------- */

enum { OP_READ, OP_WRITE, OP_WRITE0 };

struct op {
	int kind;
	size_t pg;
	uint32_t v;
	bool async;                   /* report the result with TAG_ASYNC when done */
	atomic_bool done;
	uint64_t result;
};

#define MAX_OPS 64
static struct op ops[MAX_OPS];
static unsigned nops;
static volatile uint64_t *map_base;

static volatile uint64_t *
page_addr(size_t pg)
{
	return map_base + pg * WORDS;
}

static __attribute__((noinline)) uint64_t
op_access(struct op *o)
{
	volatile uint64_t *w = page_addr(o->pg);

	switch (o->kind) {
	case OP_READ:
		return page_sig(w, o->pg);
	case OP_WRITE:
		page_fill(w, o->pg, o->v);
		return 0;
	default:
		w[0] = MARK;
		/* What the rest of the page held when we got it. */
		return page_sig(w, o->pg);
	}
}

static void *
op_main(void *arg)
{
	struct op *o = arg;
	sigjmp_buf jb;

	if (sigsetjmp(jb, 1) == 0) {
		bus_jb = &jb;
		o->result = op_access(o);
		bus_jb = NULL;
	} else {
		uintptr_t a = (uintptr_t)bus_addr, p = (uintptr_t)page_addr(o->pg);

		bus_jb = NULL;
		o->result = (a >= p && a < p + PG ? R_BUS : R_BUS_ELSEWHERE) | (uint32_t)bus_code;
	}
	atomic_store(&o->done, true);
	if (o->async)
		nt_tell(REPORT(TAG_ASYNC, o->result));
	return NULL;
}

static struct op *
op_start(int kind, size_t pg, uint32_t v, bool async)
{
	struct op *o;
	pthread_t th;
	pthread_attr_t at;

	NT_CHECK(nops < MAX_OPS);
	/* The accesses of the ops that finished come before this one (they reported to
	 * the orchestrator, which then ordered this one: an order TSan cannot see). */
	for (unsigned i = 0; i < nops; i++)
		(void)atomic_load(&ops[i].done);
	o = &ops[nops++];
	o->kind = kind;
	o->pg = pg;
	o->v = v;
	o->async = async;
	atomic_init(&o->done, false);
	NT_EQ(pthread_attr_init(&at), 0);
	NT_EQ(pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED), 0);
	NT_EQ(pthread_create(&th, &at, op_main, o), 0);
	pthread_attr_destroy(&at);
	return o;
}

/* Run one access and wait for it (DONE_MS at most: R_HUNG, the thread stays blocked). */
static uint64_t
op_run(int kind, size_t pg, uint32_t v)
{
	struct op *o = op_start(kind, pg, v, false);
	uint64_t end = nt_now_ms() + DONE_MS;

	while (!atomic_load(&o->done)) {
		if (nt_now_ms() > end)
			return R_HUNG;
		nt_sleep_ms(1);
	}
	return o->result;
}

static void
install_on_sigbus(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = on_sigbus;
	sa.sa_flags = SA_SIGINFO;
	sigemptyset(&sa.sa_mask);
	NT_EQ(sigaction(SIGBUS, &sa, NULL), 0);
}

/* A mapper of npages pages of "shm" (any number: past the object's end too). */
static void
mapper(long npages)
{
	mach_port_t obj;
	vm_address_t a = 0;
	vm_size_t size = (vm_size_t)npages * PG;

	/* Before the first machvm call: the kernel's handler chains to ours. */
	install_on_sigbus();
	NT_EQ(sysconf(_SC_PAGESIZE), PG);
	obj = nt_look_up("shm");
	NT_KR(vm_map(SELF, &a, size, 0, TRUE, obj, 0, FALSE, VM_PROT_READ | VM_PROT_WRITE,
	    VM_PROT_ALL, VM_INHERIT_NONE), KERN_SUCCESS);
	map_base = (volatile uint64_t *)a;
	reply(0);
	for (;;) {
		uint64_t c = nt_await();

		switch (CMD_OP(c)) {
		case C_READ:
			reply(op_run(OP_READ, CMD_PG(c), 0));
			break;
		case C_WRITE:
			reply(op_run(OP_WRITE, CMD_PG(c), CMD_V(c)));
			break;
		case C_WRITE0:
			reply(op_run(OP_WRITE0, CMD_PG(c), 0));
			break;
		case C_ASYNC_READ:
			op_start(OP_READ, CMD_PG(c), 0, true);
			reply(0);
			break;
		case C_ASYNC_WRITE0:
			op_start(OP_WRITE0, CMD_PG(c), 0, true);
			reply(0);
			break;
		case C_UNMAP:
			reply((uint32_t)vm_deallocate(SELF, a, size));
			break;
		case C_EXIT:
			return;
		default:
			nt_fail(__FILE__, __LINE__, "unknown order %llx", (unsigned long long)c);
		}
	}
}

/* ---- the manager ------------------------------------------------------------------------- */

static uint64_t
stat_field(struct mvm_shm_pager *s, size_t idx)
{
	struct mvm_shm_pager_stats st;

	NT_KR(mvm_shm_pager_stats(s, &st), KERN_SUCCESS);
	return ((const uint64_t *)&st)[idx];
}

/* The manager of an object of npages pages. */
static void
manager(long npages)
{
	static uint64_t buf[WORDS];
	struct mvm_shm_pager *s = NULL;
	mach_port_t port = MACH_PORT_NULL;

	NT_KR(mvm_shm_pager_create((vm_size_t)npages * PG, &s, &port), KERN_SUCCESS);
	nt_check_in("shm", port);
	reply(0);
	for (;;) {
		uint64_t c = nt_await(), end, v;

		switch (CMD_OP(c)) {
		case G_READ:
			NT_KR(mvm_shm_pager_read(s, CMD_PG(c) * PG, buf, PG), KERN_SUCCESS);
			reply(page_sig(buf, CMD_PG(c)));
			break;
		case G_STAT:
			reply(stat_field(s, CMD_PG(c)));
			break;
		case G_WAIT:
			/* Until the field reaches v (the counts follow messages in flight). */
			end = nt_now_ms() + NT_TMO / 2;
			while ((v = stat_field(s, CMD_PG(c))) < CMD_V(c) && nt_now_ms() < end)
				nt_sleep_ms(2);
			reply(v);
			break;
		case G_SHUTDOWN:
			nt_check_out("shm");
			reply((uint32_t)mvm_shm_pager_shutdown(s));
			s = NULL;
			break;
		case G_EXIT:
			NT_CHECK(s == NULL);
			/* Nothing of the pager is left: no rights to the kernels' ports. */
			NT_SETTLE(1, 0);
			NT_QUIESCENT();
			return;
		default:
			nt_fail(__FILE__, __LINE__, "unknown order %llx", (unsigned long long)c);
		}
	}
}

/* ---- the orchestrator ---------------------------------------------------------------------- */

/* Reports that came before the one awaited, per actor. */
#define STASH 16
static uint64_t stash[NT_MAX][STASH];
static unsigned nstash[NT_MAX];

static int
setup(void **state)
{
	memset(nstash, 0, sizeof(nstash));
	return nt_setup(state);
}

/* The scheduler state of process pid ('T': stopped), for diagnostics. */
static char
proc_state(pid_t pid)
{
	char path[64], buf[256], *p;
	FILE *f;
	size_t n;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	if ((f = fopen(path, "r")) == NULL)
		return '?';
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	p = strrchr(buf, ')');
	return p != NULL && p[1] == ' ' ? p[2] : '?';
}

/* Stop process pid and wait until it is stopped (SIGSTOP takes effect when each of its
 * threads next runs: on a loaded machine, later than kill() returns). */
static void
stop_process(pid_t pid)
{
	uint64_t end = nt_now_ms() + 5000;

	assert_int_equal(kill(pid, SIGSTOP), 0);
	while (proc_state(pid) != 'T') {
		if (nt_now_ms() > end)
			fail_msg("process %d did not stop (state %c)", (int)pid, proc_state(pid));
		nt_sleep_ms(1);
	}
}

/* The actor's next report tagged `tag`, if one comes within ms. */
static bool
hear_within(struct nt_actor *a, unsigned tag, int ms, uint64_t *val)
{
	unsigned i = (unsigned)(a - nt_actors);
	uint64_t end = nt_now_ms() + (uint64_t)ms, r;

	for (unsigned k = 0; k < nstash[i]; k++)
		if (REPORT_TAG(stash[i][k]) == tag) {
			*val = REPORT_VAL(stash[i][k]);
			memmove(&stash[i][k], &stash[i][k + 1], (nstash[i] - k - 1) * sizeof(r));
			nstash[i]--;
			return true;
		}
	for (;;) {
		int64_t left = (int64_t)(end - nt_now_ms());

		if (left < 0 || !nt_read_full(a->from, &r, sizeof(r), (int)left))
			return false;
		if (REPORT_TAG(r) == tag) {
			*val = REPORT_VAL(r);
			return true;
		}
		assert_true(nstash[i] < STASH);
		stash[i][nstash[i]++] = r;
	}
}

static uint64_t
hear_tag(struct nt_actor *a, unsigned tag)
{
	uint64_t v = 0;

	if (!hear_within(a, tag, NT_TMO + 2000, &v)) {
		int st = nt_reap(a, 1000);

		fail_msg("actor %s (pid %d) reported nothing: %s %d", a->name, (int)a->pid,
		    WIFSIGNALED(st) ? "killed by signal" : "exited with status",
		    WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
	}
	return v;
}

/* Give an order and wait for its answer. */
static uint64_t
ask(struct nt_actor *a, unsigned op, size_t pg, uint32_t v)
{
	nt_order(a, CMD(op, pg, v));
	return hear_tag(a, TAG_REPLY);
}

#define EXPECT(a, op, pg, v, want) expect_((a), (op), (pg), (v), (want), #op, __LINE__)
static void
expect_(struct nt_actor *a, unsigned op, size_t pg, uint32_t v, uint64_t want, const char *opname,
    int line)
{
	uint64_t got = ask(a, op, pg, v);

	if (got != want)
		fail_msg("line %d: %s %s page %zu (v %u): got 0x%llx, expected 0x%llx%s", line,
		    a->name, opname, pg, v, (unsigned long long)got, (unsigned long long)want,
		    got == R_HUNG ? " (the access hangs)" : "");
}

#define EXPECT_STAT(m, field, want) \
	expect_((m), G_STAT, ST(field), 0, (want), "stat " #field, __LINE__)
/* For the counts that only grow: they may follow what the test saw by a moment (the
 * pager counts a supply after sending it); exact all the same. */
#define EXPECT_WAIT(m, field, want) \
	expect_((m), G_WAIT, ST(field), (want), (want), "wait " #field, __LINE__)

static struct nt_actor *
start(const char *name, void (*fn)(long), long arg)
{
	struct nt_actor *a = nt_spawn(name, fn, arg);

	assert_int_equal(hear_tag(a, TAG_REPLY), 0);
	return a;
}

static void
finish_mapper(struct nt_actor *a)
{
	nt_order(a, CMD(C_EXIT, 0, 0));
	nt_expect_ok(a);
}

static void
finish_manager(struct nt_actor *m)
{
	EXPECT(m, G_SHUTDOWN, 0, 0, KERN_SUCCESS);
	nt_order(m, CMD(G_EXIT, 0, 0));
	nt_expect_ok(m);
}

/* ---- basic coherence ------------------------------------------------------------------------ */

static void
test_basic_coherence(void **state)
{
	struct nt_actor *m, *a, *b;
	static const uint32_t after_b[4] = { 1, 2, 2, 1 };

	(void)state;
	mvm_test_require_uffd();
	m = start("manager", manager, NP);
	a = start("A", mapper, NP);
	b = start("B", mapper, NP);

	/* A writes pages 0-3 (write faults: data_request for writing, granted); B reads
	 * them (A is asked to downgrade: it returns its data and keeps a read copy). */
	for (size_t pg = 0; pg < 4; pg++)
		EXPECT(a, C_WRITE, pg, 1, 0);
	for (size_t pg = 0; pg < 4; pg++)
		EXPECT(b, C_READ, pg, 0, 1);
	/* B writes pages 1 and 2, which it holds read-only (data_unlock; A's copies are
	 * flushed); A reads B's data. */
	EXPECT(b, C_WRITE, 1, 2, 0);
	EXPECT(b, C_WRITE, 2, 2, 0);
	for (size_t pg = 0; pg < 4; pg++)
		EXPECT(a, C_READ, pg, 0, after_b[pg]);
	/* Pages a kernel writes while the manager reads them: the read fetches them. */
	EXPECT(a, C_WRITE, 5, 3, 0);
	EXPECT(b, C_WRITE, 6, 4, 0);
	EXPECT(m, G_READ, 5, 0, 3);
	EXPECT(m, G_READ, 6, 0, 4);
	for (size_t pg = 0; pg < 4; pg++)
		EXPECT(m, G_READ, pg, 0, after_b[pg]);
	EXPECT(m, G_READ, 4, 0, 0);
	EXPECT(m, G_READ, 7, 0, 0);
	EXPECT(b, C_READ, 5, 0, 3);
	EXPECT(a, C_READ, 6, 0, 4);

	EXPECT_WAIT(m, inits, 2);
	EXPECT_STAT(m, kernels, 2);
	EXPECT_STAT(m, terminates, 0);
	EXPECT_STAT(m, deaths, 0);
	EXPECT_STAT(m, refused, 0);
	EXPECT_WAIT(m, write_requests, 6);  /* A 0-3, A 5, B 6 */
	EXPECT_WAIT(m, unlocks, 2);         /* B 1, 2 */
	EXPECT_STAT(m, stale_unlocks, 0);
	/* B's unlocks of 1 and 2, which it shared only with their last writer, made
	 * them migratory: A's reads of them took them from B whole (flush) and were
	 * answered with write access (2 grants more). */
	EXPECT_WAIT(m, grants, 10);
	EXPECT_WAIT(m, migratory_grants, 2);
	/* Reads: B 0-3; A 1, 2 (flushed by B's writes); B 5; A 6. */
	EXPECT_WAIT(m, read_requests, 8);
	EXPECT_WAIT(m, supplies, 14);
	EXPECT_WAIT(m, invalidations, 4);   /* A's copies of 1, 2; then B's */
	/* A for B's reads of 0-3, A and B for the manager's reads of 5 and 6 (each
	 * returned a dirty page), A for the manager's reads of 1 and 2 (A was granted
	 * write by its migratory read, but wrote nothing: no data, and the pages are
	 * not migratory any more). Dirty: those 6, and B's pages 1, 2 flushed. */
	EXPECT_WAIT(m, downgrades, 8);
	EXPECT_WAIT(m, dirty_returns, 8);

	/* Dirty pages held at unmap come back with it: A writes page 5 again (held
	 * read-only by A and B: unlocked, B's copy flushed), B writes page 7. */
	EXPECT(a, C_WRITE, 5, 5, 0);
	EXPECT(b, C_WRITE, 7, 6, 0);
	EXPECT_WAIT(m, invalidations, 5);
	EXPECT_WAIT(m, grants, 12);
	EXPECT_STAT(m, migratory_grants, 2);
	EXPECT(a, C_UNMAP, 0, 0, KERN_SUCCESS);
	EXPECT(b, C_UNMAP, 0, 0, KERN_SUCCESS);
	EXPECT_WAIT(m, terminates, 2);
	EXPECT_STAT(m, kernels, 0);
	EXPECT_STAT(m, deaths, 0);
	EXPECT(m, G_READ, 5, 0, 5);
	EXPECT(m, G_READ, 7, 0, 6);
	EXPECT(m, G_READ, 6, 0, 4);
	for (size_t pg = 0; pg < 4; pg++)
		EXPECT(m, G_READ, pg, 0, after_b[pg]);
	finish_mapper(a);
	finish_mapper(b);
	finish_manager(m);
}

/* ---- a writer is killed -------------------------------------------------------------------- */

/*
 * Page P: A writes version 1, the manager reads it (A returns it and keeps a read copy),
 * A writes version 2 (granted by an unlock; never returned). The manager holds version 1.
 */
static void
writer_holds(struct nt_actor *m, struct nt_actor *a, size_t p)
{
	EXPECT(a, C_WRITE, p, 1, 0);
	EXPECT(m, G_READ, p, 0, 1);
	EXPECT(a, C_WRITE, p, 2, 0);
	EXPECT(a, C_READ, p, 0, 2);
}

static void
test_kill_writer_holding(void **state)
{
	const size_t p = 1;
	struct nt_actor *m, *a, *b;

	(void)state;
	mvm_test_require_uffd();
	m = start("manager", manager, 4);
	a = start("A", mapper, 4);
	b = start("B", mapper, 4);
	writer_holds(m, a, p);
	EXPECT(b, C_READ, 0, 0, 0);
	EXPECT(b, C_READ, 2, 0, 0);
	EXPECT(b, C_WRITE, 3, 7, 0);
	nt_kill(a);
	/* At once, whether or not the manager has seen the death yet: A's version 2 is
	 * lost, B gets the manager's version 1. */
	EXPECT(b, C_READ, p, 0, 1);
	EXPECT(b, C_WRITE, p, 3, 0);
	EXPECT(b, C_READ, p, 0, 3);
	EXPECT(b, C_READ, 0, 0, 0);
	EXPECT_WAIT(m, deaths, 1);
	EXPECT_STAT(m, kernels, 1);
	EXPECT_WAIT(m, inits, 2);
	EXPECT_STAT(m, terminates, 0);
	EXPECT(m, G_READ, p, 0, 3);
	EXPECT(m, G_READ, 3, 0, 7);
	EXPECT(b, C_UNMAP, 0, 0, KERN_SUCCESS);
	EXPECT_WAIT(m, terminates, 1);
	EXPECT_STAT(m, kernels, 0);
	EXPECT_WAIT(m, deaths, 1);
	EXPECT(m, G_READ, p, 0, 3);
	finish_mapper(b);
	finish_manager(m);
}

/* ---- a kernel is killed while the manager waits for it ---------------------------------------- */

static void
kill_while_asked(bool flush)
{
	const size_t p = 0;
	struct nt_actor *m, *a, *b;
	uint64_t v, t0, before;

	mvm_test_require_uffd();
	m = start("manager", manager, 4);
	a = start("A", mapper, 4);
	b = start("B", mapper, 4);
	writer_holds(m, a, p);
	EXPECT(b, C_READ, 1, 0, 0);
	before = ask(m, G_STAT, flush ? ST(invalidations) : ST(downgrades), 0);
	stop_process(a->pid);
	/* B writes word 0 of P (the manager flushes A) or reads P (A must downgrade): A is
	 * stopped, so B's access waits. */
	EXPECT(b, flush ? C_ASYNC_WRITE0 : C_ASYNC_READ, p, 0, 0);
	if (hear_within(b, TAG_ASYNC, BLOCK_MS, &v))
		fail_msg("B's access to page %zu completed (0x%llx) while A, which holds it for "
		    "writing, is stopped (A's state %c; manager: %llu downgrades, %llu "
		    "invalidations, before %llu)", p, (unsigned long long)v, proc_state(a->pid),
		    (unsigned long long)ask(m, G_STAT, ST(downgrades), 0),
		    (unsigned long long)ask(m, G_STAT, ST(invalidations), 0),
		    (unsigned long long)before);
	/* The manager serves the rest meanwhile; it has asked A once. */
	expect_(m, G_WAIT, flush ? ST(invalidations) : ST(downgrades), (uint32_t)before + 1,
	    before + 1, "wait asked", __LINE__);
	EXPECT_STAT(m, kernels, 2);
	EXPECT(m, G_READ, 2, 0, 0);
	EXPECT(b, C_READ, 3, 0, 0);
	EXPECT(b, C_WRITE, 3, 4, 0);
	EXPECT(m, G_READ, 3, 0, 4);
	if (hear_within(b, TAG_ASYNC, 0, &v))
		fail_msg("B's access to page %zu completed (0x%llx) while A is stopped", p,
		    (unsigned long long)v);
	t0 = nt_now_ms();
	nt_kill(a);
	/* A counts as having answered: B's access completes, over version 1 (A's version
	 * 2 was never returned). */
	if (!hear_within(b, TAG_ASYNC, DONE_MS, &v))
		fail_msg("B's access to page %zu still blocked %d ms after A was killed", p, DONE_MS);
	print_message("B's access completed %llu ms after A's death\n",
	    (unsigned long long)(nt_now_ms() - t0));
	assert_int_equal(v, flush ? (SIG_MIXED | 1) : 1);
	EXPECT_WAIT(m, deaths, 1);
	EXPECT_STAT(m, kernels, 1);
	EXPECT(m, G_READ, p, 0, flush ? (SIG_MIXED | 1) : 1);
	EXPECT(b, C_WRITE, p, 3, 0);
	EXPECT(m, G_READ, p, 0, 3);
	EXPECT(b, C_UNMAP, 0, 0, KERN_SUCCESS);
	EXPECT_WAIT(m, terminates, 1);
	EXPECT_STAT(m, kernels, 0);
	EXPECT(m, G_READ, p, 0, 3);
	finish_mapper(b);
	finish_manager(m);
}

static void
test_kill_while_flushing(void **state)
{
	(void)state;
	kill_while_asked(true);
}

static void
test_kill_while_downgrading(void **state)
{
	(void)state;
	kill_while_asked(false);
}

/* ---- the manager is killed ------------------------------------------------------------------- */

static void
test_kill_manager(void **state)
{
	struct nt_actor *m, *a, *b;
	uint64_t v, t0;

	(void)state;
	mvm_test_require_uffd();
	m = start("manager", manager, NP);
	a = start("A", mapper, NP);
	b = start("B", mapper, NP);
	/* A holds page 0 read-only, page 1 for writing; B holds pages 2 and 5 for writing. */
	EXPECT(a, C_READ, 0, 0, 0);
	EXPECT(a, C_WRITE, 1, 1, 0);
	EXPECT(b, C_WRITE, 2, 5, 0);
	EXPECT(b, C_WRITE, 5, 6, 0);
	/* B stopped: A's write to page 2 waits for B's flush. */
	stop_process(b->pid);
	EXPECT(a, C_ASYNC_WRITE0, 2, 0, 0);
	if (hear_within(a, TAG_ASYNC, BLOCK_MS, &v))
		fail_msg("A's write to page 2 completed (0x%llx) while B, which holds it, is "
		    "stopped", (unsigned long long)v);
	EXPECT_WAIT(m, invalidations, 1);
	t0 = nt_now_ms();
	nt_kill(m);
	/* At once: a page A does not hold. */
	EXPECT(a, C_READ, 3, 0, BUS_OK);
	/* The thread that waited in the fault is woken with SIGBUS. */
	if (!hear_within(a, TAG_ASYNC, DONE_MS, &v))
		fail_msg("A's write to page 2 still blocked %d ms after the manager's death",
		    DONE_MS);
	print_message("the blocked write got SIGBUS %llu ms after the manager's death\n",
	    (unsigned long long)(nt_now_ms() - t0));
	assert_int_equal(v, BUS_OK);
	/* What A holds stays; the rest fails, again and again. */
	EXPECT(a, C_READ, 0, 0, 0);
	EXPECT(a, C_READ, 1, 0, 1);
	EXPECT(a, C_WRITE, 1, 9, 0);
	EXPECT(a, C_READ, 1, 0, 9);
	EXPECT(a, C_READ, 3, 0, BUS_OK);
	EXPECT(a, C_WRITE, 4, 1, BUS_OK);
	EXPECT(a, C_READ, 2, 0, BUS_OK);
	/* Page 0 is held read-only: writing it needs an unlock nobody can give. */
	EXPECT(a, C_WRITE0, 0, 0, BUS_OK);

	/* B resumes: it holds page 5 (never asked for); page 2 was being flushed when the
	 * manager died (the request reached B's socket before the death: B flushes it
	 * first, so page 2 is gone too); page 6 it never had. */
	assert_int_equal(kill(b->pid, SIGCONT), 0);
	EXPECT(b, C_READ, 5, 0, 6);
	EXPECT(b, C_READ, 6, 0, BUS_OK);
	EXPECT(b, C_READ, 2, 0, BUS_OK);
	EXPECT(b, C_WRITE, 5, 8, 0);
	EXPECT(b, C_READ, 5, 0, 8);
	/* Unmapping a mapping whose manager is dead does not wait for it. */
	EXPECT(b, C_UNMAP, 0, 0, KERN_SUCCESS);
	EXPECT(a, C_UNMAP, 0, 0, KERN_SUCCESS);
	finish_mapper(a);
	finish_mapper(b);
}

/* ---- bad arguments --------------------------------------------------------------------------- */

static void
bad_arguments(long arg)
{
	static uint8_t buf[3 * PG + 1];
	struct mvm_shm_pager *s = NULL;
	struct mvm_shm_pager_stats st;
	mach_port_t port = MACH_PORT_NULL;
	const vm_size_t size = 3 * PG;

	(void)arg;
	NT_KR(mvm_shm_pager_create(0, &s, &port), KERN_INVALID_ARGUMENT);
	NT_KR(mvm_shm_pager_create(PG, NULL, &port), KERN_INVALID_ARGUMENT);
	NT_KR(mvm_shm_pager_create(PG, &s, NULL), KERN_INVALID_ARGUMENT);
	NT_KR(mvm_shm_pager_create((vm_size_t)1 << 62, &s, &port), KERN_INVALID_ARGUMENT);
	/* 2 pages and a byte: rounded up to 3 pages, zero-filled. */
	NT_KR(mvm_shm_pager_create(2 * PG + 1, &s, &port), KERN_SUCCESS);
	NT_CHECK(MACH_PORT_VALID(port));
	memset(buf, 0xa5, sizeof(buf));
	NT_KR(mvm_shm_pager_read(s, 0, buf, size), KERN_SUCCESS);
	for (size_t i = 0; i < size; i++)
		NT_EQ(buf[i], 0);
	NT_EQ(buf[size], 0xa5);
	NT_KR(mvm_shm_pager_read(s, size - 1, buf, 1), KERN_SUCCESS);
	NT_KR(mvm_shm_pager_read(s, PG - 3, buf, 7), KERN_SUCCESS); /* across a page */
	NT_KR(mvm_shm_pager_read(s, size, buf, 0), KERN_SUCCESS);
	NT_KR(mvm_shm_pager_read(s, size, buf, 1), KERN_INVALID_ARGUMENT);
	NT_KR(mvm_shm_pager_read(s, 0, buf, size + 1), KERN_INVALID_ARGUMENT);
	NT_KR(mvm_shm_pager_read(s, size + 1, buf, 0), KERN_INVALID_ARGUMENT);
	NT_KR(mvm_shm_pager_read(s, (vm_offset_t)-1, buf, 2), KERN_INVALID_ARGUMENT);
	NT_KR(mvm_shm_pager_read(s, PG, buf, (vm_size_t)0 - PG), KERN_INVALID_ARGUMENT);
	NT_KR(mvm_shm_pager_read(s, 0, NULL, 1), KERN_INVALID_ARGUMENT);
	NT_KR(mvm_shm_pager_read(NULL, 0, buf, 1), KERN_INVALID_ARGUMENT);
	NT_KR(mvm_shm_pager_stats(s, NULL), KERN_INVALID_ARGUMENT);
	NT_KR(mvm_shm_pager_stats(NULL, &st), KERN_INVALID_ARGUMENT);
	NT_KR(mvm_shm_pager_stats(s, &st), KERN_SUCCESS);
	NT_EQ(st.kernels, 0);
	NT_EQ(st.inits, 0);
	NT_EQ(st.read_requests, 0);
	NT_KR(mvm_shm_pager_shutdown(NULL), KERN_INVALID_ARGUMENT);
	NT_KR(mvm_shm_pager_shutdown(s), KERN_SUCCESS);
	NT_QUIESCENT();
}

static void
test_bad_arguments(void **state)
{
	struct nt_actor *x;

	(void)state;
	x = nt_spawn("alone", bad_arguments, 0);
	nt_expect_ok(x);
}

/*
 * mvm_shm_pager_read of pages nobody holds, many times, the caller's stack scribbled on
 * after each: the server must not look at the read (on the caller's stack) once its last
 * page is copied, since the caller may have returned by then.
 */
static __attribute__((noinline)) void
scribble(void)
{
	volatile uint8_t junk[4096];

	for (size_t i = 0; i < sizeof(junk); i++)
		junk[i] = 0xff;
}

struct reader {
	struct mvm_shm_pager *s;
	long n;
	vm_offset_t off;
};

static void *
reader_main(void *arg)
{
	const struct reader *r = arg;
	uint64_t w;

	for (long i = 0; i < r->n; i++) {
		w = 1;
		NT_KR(mvm_shm_pager_read(r->s, r->off + (vm_offset_t)(i % 4) * PG, &w, sizeof(w)),
		    KERN_SUCCESS);
		NT_EQ(w, 0);
		scribble();
	}
	return NULL;
}

/* Threads read at once (each completion wakes the others, so a caller is often running
 * already when its read completes, and returns at once). */
static void
many_reads(long n)
{
	struct mvm_shm_pager *s = NULL;
	mach_port_t port = MACH_PORT_NULL;
	struct reader r[READERS];
	pthread_t th[READERS];

	NT_KR(mvm_shm_pager_create(4 * PG, &s, &port), KERN_SUCCESS);
	for (int i = 0; i < READERS; i++) {
		r[i] = (struct reader){ s, n, (vm_offset_t)i * 8 };
		NT_EQ(pthread_create(&th[i], NULL, reader_main, &r[i]), 0);
	}
	for (int i = 0; i < READERS; i++)
		NT_EQ(pthread_join(th[i], NULL), 0);
	NT_KR(mvm_shm_pager_shutdown(s), KERN_SUCCESS);
	NT_QUIESCENT();
}

static void
test_read_returns(void **state)
{
	struct nt_actor *x;

	(void)state;
	x = nt_spawn("reader", many_reads, READS);
	nt_expect_ok(x);
}

/* A kernel maps 4 pages of an object of 2: the manager answers data_error past its end. */
static void
test_map_beyond_end(void **state)
{
	struct nt_actor *m, *a;

	(void)state;
	mvm_test_require_uffd();
	m = start("manager", manager, 2);
	a = start("A", mapper, 4);
	EXPECT(a, C_READ, 0, 0, 0);
	EXPECT(a, C_READ, 3, 0, BUS_OK);
	EXPECT(a, C_WRITE, 2, 1, BUS_OK);
	EXPECT(a, C_WRITE, 1, 1, 0);
	EXPECT(m, G_READ, 1, 0, 1);
	EXPECT(a, C_READ, 2, 0, BUS_OK);
	EXPECT_STAT(m, kernels, 1);
	EXPECT(a, C_UNMAP, 0, 0, KERN_SUCCESS);
	EXPECT_WAIT(m, terminates, 1);
	finish_mapper(a);
	finish_manager(m);
}

int
main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_basic_coherence, setup, nt_teardown),
		cmocka_unit_test_setup_teardown(test_kill_writer_holding, setup, nt_teardown),
		cmocka_unit_test_setup_teardown(test_kill_while_flushing, setup, nt_teardown),
		cmocka_unit_test_setup_teardown(test_kill_while_downgrading, setup, nt_teardown),
		cmocka_unit_test_setup_teardown(test_kill_manager, setup, nt_teardown),
		cmocka_unit_test_setup_teardown(test_bad_arguments, setup, nt_teardown),
		cmocka_unit_test_setup_teardown(test_read_returns, setup, nt_teardown),
		cmocka_unit_test_setup_teardown(test_map_beyond_end, setup, nt_teardown),
	};

	if (argc > 1)
		cmocka_set_test_filter(argv[1]);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
