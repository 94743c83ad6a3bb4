/*
 * tests/integration/test_vm_lock.c: page locks, data_unlock and memory_object_lock_request
 * against the in-process kernel, with the scripted manager asserting the exact message
 * sequence.
 *
 * Part 1, data_unlock: a write to a write-locked page asks for access 2 and completes
 * once the manager lowers the lock; read locks ask for access 1, and the access asked is
 * cumulative; two threads on one page send one unlock; answers may come in any order, or
 * after the page was flushed, without harm; a VM_PROT_NO_CHANGE answer or the same lock
 * again makes the waiting thread ask afresh; a manager refuses by flushing the page and
 * answering the data_request that follows with data_error, which is SIGBUS (BUS_OBJERR).
 *
 * Part 2, lock_request: absent and requested pages count as done at once; RETURN_NONE,
 * RETURN_DIRTY and RETURN_ALL with and without flush; runs of at most 32 pages, split at
 * gaps and where the action changes; the manager's own unrounded offset and size come
 * back; a lock value write-protects; a bad lock value is refused with no completion, the
 * reply right coming back as a send-once notification.
 *
 * Unless a test says otherwise, the reply port of a lock request is the object port
 * itself, so lock_completed is logged after every data_return the request caused. A
 * second manager's object port serves as the "separate reply port", where there is no
 * ordering against the object port.
 *
 * Threads that fault never call cmocka: each records what happened in a struct access,
 * and the main thread checks after joining it.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>
#include <time.h>

#include <machvm/vm.h>
#include "mvm_test.h"
#include "mvm_mgr.h"

#define PG 4096
#define WAIT_MS 5000

/* ---- helpers ---------------------------------------------------------------------------- */

/* One access by a thread of its own: a read or a write of one byte. */
struct access {
	pthread_t th;
	volatile unsigned char *addr;
	bool write;
	unsigned char val;          /* the byte written, or the byte read */
	atomic_int done;            /* 0 running, 1 finished, 2 got SIGBUS */
	int sig_code;
	void *sig_addr;
};

static __thread struct access *cur_access;
static __thread sigjmp_buf bus_env;

/*
 * The kernel's SIGBUS action, taken in main() right after the kernel started. cmocka
 * replaces the SIGBUS action around each test with signal(), which also drops SA_SIGINFO
 * when it puts the old one back, so a test that expects SIGBUS reinstalls this one for as
 * long as it needs it.
 */
static struct sigaction kernel_sigbus;

/*
 * Installed in main() before the kernel starts, so the kernel chains its SIGBUS to this
 * handler with si_code BUS_OBJERR. A SIGBUS in a thread that is not one of ours is real:
 * it takes the default action.
 */
static void
on_sigbus(int sig, siginfo_t *si, void *uctx)
{
	struct access *a = cur_access;

	(void)uctx;
	if (a == NULL) {
		signal(sig, SIG_DFL);
		raise(sig);
		return;
	}
	a->sig_code = si->si_code;
	a->sig_addr = si->si_addr;
	siglongjmp(bus_env, 1);
}

static void *
access_main(void *arg)
{
	struct access *a = arg;

	cur_access = a;
	if (sigsetjmp(bus_env, 1) != 0) {
		cur_access = NULL;
		atomic_store(&a->done, 2);
		return NULL;
	}
	if (a->write)
		*a->addr = a->val;
	else
		a->val = *a->addr;
	cur_access = NULL;
	atomic_store(&a->done, 1);
	return NULL;
}

static void
access_start(struct access *a, vm_address_t addr, bool write, unsigned char val)
{
	memset(a, 0, sizeof(*a));
	a->addr = (volatile unsigned char *)addr;
	a->write = write;
	a->val = val;
	atomic_init(&a->done, 0);
	assert_int_equal(pthread_create(&a->th, NULL, access_main, a), 0);
}

/* Join the thread (within WAIT_MS) and return how it ended (1 or 2). */
static int
access_join(struct access *a)
{
	struct timespec dl;

	clock_gettime(CLOCK_REALTIME, &dl);
	dl.tv_sec += WAIT_MS / 1000;
	if (pthread_timedjoin_np(a->th, NULL, &dl) != 0)
		fail_msg("a faulting thread is still blocked after %d ms", WAIT_MS);
	return atomic_load(&a->done);
}

/* Wait until the manager has logged n lines starting with prefix. */
#define AWAIT(m, prefix, n) await_((m), (prefix), (n), __FILE__, __LINE__)
static void
await_(struct mvm_mgr *m, const char *prefix, int n, const char *file, int line)
{
	if (mvm_mgr_wait(m, prefix, n, WAIT_MS) < n) {
		mvm_mgr_dump(m);
		fail_msg("%s:%d: no %d \"%s\" lines after %d ms", file, line, n, prefix, WAIT_MS);
	}
}

static struct mvm_vm_object_stats
stats(struct mvm_mgr *m)
{
	struct mvm_vm_object_stats st;

	assert_kr(mvm_vm_object_stats(m->object, &st), KERN_SUCCESS);
	return st;
}

/* Wait until the kernel has taken n faults on the object (each one is dispatched, parked
 * or not, before the statistics can be read again). */
static void
wait_faults(struct mvm_mgr *m, uint64_t n)
{
	for (int i = 0; i < WAIT_MS; i++) {
		if (stats(m).faults >= n)
			return;
		struct timespec ts = { 0, 1000000 };
		nanosleep(&ts, NULL);
	}
	fail_msg("the kernel saw %llu faults, not %llu", (unsigned long long)stats(m).faults,
	    (unsigned long long)n);
}

static void
lock(struct mvm_mgr *m, vm_offset_t off, vm_size_t size, memory_object_return_t ret,
    boolean_t flush, vm_prot_t lock_value, mach_port_t reply)
{
	assert_kr(memory_object_lock_request(m->ctl, off, size, ret, flush, lock_value, reply),
	    KERN_SUCCESS);
}

/*
 * The kernel's control thread finishes its last messages on its own time: the send-once
 * notification it sends its own notify port when it cancels an object's dead-name request
 * at termination, and the data of the last supply, freed after the faulting threads are
 * woken. Give it a moment before the quiescence check, which still fails on whatever is
 * left after that.
 */
static void
settle(void)
{
	/* mvm_ipc_quiescent() itself waits up to a second for the kernel's threads. */
	(void)mvm_ipc_quiescent(NULL, 0);
}
#define QUIESCENT() \
	do { \
		settle(); \
		MVM_TEST_QUIESCENT(); \
	} while (0)

/*
 * The manager's answer to init: ready, as its default would, and then a sign under the
 * manager's lock (m->arg set) that m->ctl is stored. The support manager logs "init"
 * before it stores the control port, so the log line alone does not make m->ctl safe to
 * read from the test thread.
 */
static bool
init_ready(struct mvm_mgr *m, memory_object_control_t ctl)
{
	(void)memory_object_ready(ctl, m->may_cache, MEMORY_OBJECT_COPY_DELAY);
	pthread_mutex_lock(&m->mtx);
	m->arg = m;
	pthread_cond_broadcast(&m->cond);
	pthread_mutex_unlock(&m->mtx);
	return true;
}

static struct mvm_mgr *
start_mgr(void)
{
	struct mvm_mgr *m = mvm_mgr_start();

	m->policy.init = init_ready;
	return m;
}

/* Wait until init_ready has run. */
static void
wait_init(struct mvm_mgr *m)
{
	struct timespec dl;
	bool seen;

	clock_gettime(CLOCK_REALTIME, &dl);
	dl.tv_sec += WAIT_MS / 1000;
	pthread_mutex_lock(&m->mtx);
	while (m->arg == NULL && pthread_cond_timedwait(&m->cond, &m->mtx, &dl) != ETIMEDOUT)
		;
	seen = m->arg != NULL && MACH_PORT_VALID(m->ctl);
	pthread_mutex_unlock(&m->mtx);
	if (!seen)
		fail_msg("the manager did not answer init within %d ms", WAIT_MS);
}

/* Map pages of the manager's object and see the init. */
static vm_address_t
map_object(struct mvm_mgr *m, size_t pages)
{
	vm_address_t a = 0;

	assert_kr(vm_map(mach_task_self(), &a, pages * PG, 0, TRUE, m->object, 0, FALSE,
	    VM_PROT_ALL, VM_PROT_ALL, VM_INHERIT_NONE), KERN_SUCCESS);
	MVM_MGR_EXPECT(m, "init page_size=4096");
	wait_init(m);
	return a;
}

static void
unmap(vm_address_t a, size_t pages)
{
	assert_kr(vm_deallocate(mach_task_self(), a, pages * PG), KERN_SUCCESS);
}

/* ---- 1. data_unlock ----------------------------------------------------------------------- */

/* A write to a page supplied with lock WRITE asks for access 2 and completes after the
 * manager's lock_request(VM_PROT_NONE); reads never ask. */
static void
unlock_write_lock(void **state)
{
	struct mvm_mgr *m;
	struct access w;
	volatile unsigned char *p;
	vm_address_t a;

	(void)state;
	mvm_test_require_uffd();
	m = start_mgr();
	m->supply_lock = VM_PROT_WRITE;
	m->manual_unlocks = true;
	a = map_object(m, 2);
	p = (volatile unsigned char *)a;
	assert_int_equal(p[0], mvm_mgr_pattern(0));
	assert_int_equal(p[100], mvm_mgr_pattern(100));
	MVM_MGR_EXPECT(m, "data_request off=0 len=4096 access=1");
	access_start(&w, a + 5, true, 0x11);
	AWAIT(m, "data_unlock", 1);
	assert_int_equal(atomic_load(&w.done), 0);
	lock(m, 0, PG, MEMORY_OBJECT_RETURN_NONE, FALSE, VM_PROT_NONE, m->object);
	assert_int_equal(access_join(&w), 1);
	MVM_MGR_EXPECT(m, "data_unlock off=0 len=4096 access=2", "lock_completed off=0 len=4096");
	assert_int_equal(p[5], 0x11);
	/* Unlocked now: more writes ask nothing. */
	p[6] = 0x12;
	assert_int_equal(stats(m).data_unlocks, 1);
	assert_int_equal(stats(m).dirty, 1);
	unmap(a, 2);
	MVM_MGR_EXPECT(m, "data_return off=0 len=4096 dirty=1 kcopy=0", "terminate");
	assert_int_equal(m->store[0][5], 0x11);
	assert_int_equal(m->store[0][6], 0x12);
	assert_int_equal(m->store[0][7], mvm_mgr_pattern(7));
	mvm_mgr_stop(m);
	QUIESCENT();
}

/* A page supplied with lock READ|WRITE: a read asks for access 1; a write while that
 * unlock is outstanding asks for 3 (cumulative); one answer lets both through. */
static void
unlock_read_lock_cumulative(void **state)
{
	struct mvm_mgr *m;
	struct access r, w;
	vm_address_t a;

	(void)state;
	mvm_test_require_uffd();
	m = start_mgr();
	m->supply_lock = VM_PROT_READ | VM_PROT_WRITE;
	m->manual_unlocks = true;
	a = map_object(m, 1);
	access_start(&r, a + 3, false, 0);
	AWAIT(m, "data_unlock", 1);
	access_start(&w, a + 8, true, 0x77);
	AWAIT(m, "data_unlock", 2);
	assert_int_equal(atomic_load(&r.done), 0);
	assert_int_equal(atomic_load(&w.done), 0);
	lock(m, 0, PG, MEMORY_OBJECT_RETURN_NONE, FALSE, VM_PROT_NONE, m->object);
	assert_int_equal(access_join(&r), 1);
	assert_int_equal(access_join(&w), 1);
	MVM_MGR_EXPECT(m, "data_request off=0 len=4096 access=1",
	    "data_unlock off=0 len=4096 access=1", "data_unlock off=0 len=4096 access=3",
	    "lock_completed off=0 len=4096");
	assert_int_equal(r.val, mvm_mgr_pattern(3));
	assert_int_equal(((volatile unsigned char *)a)[8], 0x77);
	unmap(a, 1);
	MVM_MGR_EXPECT(m, "data_return off=0 len=4096 dirty=1 kcopy=0", "terminate");
	assert_int_equal(m->store[0][8], 0x77);
	mvm_mgr_stop(m);
	QUIESCENT();
}

/* lock_request(lock_value READ) on a mapped, readable page: the next read asks for 1. */
static void
unlock_read_after_lock_request(void **state)
{
	struct mvm_mgr *m;
	struct access r;
	vm_address_t a;

	(void)state;
	mvm_test_require_uffd();
	m = start_mgr();
	m->manual_unlocks = true;
	a = map_object(m, 1);
	assert_int_equal(((volatile unsigned char *)a)[0], mvm_mgr_pattern(0));
	lock(m, 0, PG, MEMORY_OBJECT_RETURN_NONE, FALSE, VM_PROT_READ, m->object);
	AWAIT(m, "lock_completed", 1);
	MVM_MGR_EXPECT(m, "data_request off=0 len=4096 access=1", "lock_completed off=0 len=4096");
	access_start(&r, a + 9, false, 0);
	AWAIT(m, "data_unlock", 1);
	assert_int_equal(atomic_load(&r.done), 0);
	lock(m, 0, PG, MEMORY_OBJECT_RETURN_NONE, FALSE, VM_PROT_NONE, m->object);
	assert_int_equal(access_join(&r), 1);
	assert_int_equal(r.val, mvm_mgr_pattern(9));
	MVM_MGR_EXPECT(m, "data_unlock off=0 len=4096 access=1", "lock_completed off=0 len=4096");
	unmap(a, 1);
	MVM_MGR_EXPECT(m, "terminate");
	mvm_mgr_stop(m);
	QUIESCENT();
}

/* Two threads write the same locked page: one data_unlock, one answer, both done. */
static void
unlock_duplicate(void **state)
{
	struct mvm_mgr *m;
	struct access w1, w2;
	vm_address_t a;
	uint64_t faults;

	(void)state;
	mvm_test_require_uffd();
	m = start_mgr();
	m->supply_lock = VM_PROT_WRITE;
	m->manual_unlocks = true;
	a = map_object(m, 1);
	assert_int_equal(((volatile unsigned char *)a)[0], mvm_mgr_pattern(0));
	access_start(&w1, a + 1, true, 0x21);
	AWAIT(m, "data_unlock", 1);
	faults = stats(m).faults;
	access_start(&w2, a + 2, true, 0x22);
	wait_faults(m, faults + 1);
	/* The second writer is parked on the page and asked nothing. */
	assert_int_equal(mvm_mgr_count(m, "data_unlock"), 1);
	assert_int_equal(atomic_load(&w1.done), 0);
	assert_int_equal(atomic_load(&w2.done), 0);
	lock(m, 0, PG, MEMORY_OBJECT_RETURN_NONE, FALSE, VM_PROT_NONE, m->object);
	assert_int_equal(access_join(&w1), 1);
	assert_int_equal(access_join(&w2), 1);
	MVM_MGR_EXPECT(m, "data_request off=0 len=4096 access=1",
	    "data_unlock off=0 len=4096 access=2", "lock_completed off=0 len=4096");
	assert_int_equal(stats(m).data_unlocks, 1);
	unmap(a, 1);
	MVM_MGR_EXPECT(m, "data_return off=0 len=4096 dirty=1 kcopy=0", "terminate");
	assert_int_equal(m->store[0][1], 0x21);
	assert_int_equal(m->store[0][2], 0x22);
	mvm_mgr_stop(m);
	QUIESCENT();
}

/* Unlocks of two pages answered in the opposite order, then an extra answer for a page
 * nobody waits on: each answer releases exactly its own page, the extra one nothing. */
static void
unlock_out_of_order(void **state)
{
	struct mvm_mgr *m;
	struct access w0, w1;
	volatile unsigned char *p;
	vm_address_t a;

	(void)state;
	mvm_test_require_uffd();
	m = start_mgr();
	m->supply_lock = VM_PROT_WRITE;
	m->manual_unlocks = true;
	a = map_object(m, 2);
	p = (volatile unsigned char *)a;
	assert_int_equal(p[0], mvm_mgr_pattern(0));
	assert_int_equal(p[PG], mvm_mgr_pattern(PG));
	access_start(&w0, a + 10, true, 0x30);
	AWAIT(m, "data_unlock", 1);
	access_start(&w1, a + PG + 10, true, 0x31);
	AWAIT(m, "data_unlock", 2);
	lock(m, PG, PG, MEMORY_OBJECT_RETURN_NONE, FALSE, VM_PROT_NONE, m->object);
	assert_int_equal(access_join(&w1), 1);
	AWAIT(m, "lock_completed", 1);
	assert_int_equal(atomic_load(&w0.done), 0);
	lock(m, 0, PG, MEMORY_OBJECT_RETURN_NONE, FALSE, VM_PROT_NONE, m->object);
	assert_int_equal(access_join(&w0), 1);
	MVM_MGR_EXPECT(m, "data_request off=0 len=4096 access=1",
	    "data_request off=4096 len=4096 access=1", "data_unlock off=0 len=4096 access=2",
	    "data_unlock off=4096 len=4096 access=2", "lock_completed off=4096 len=4096",
	    "lock_completed off=0 len=4096");
	/* A duplicate answer for page 1: harmless, the page stays as it is. */
	lock(m, PG, PG, MEMORY_OBJECT_RETURN_NONE, FALSE, VM_PROT_NONE, m->object);
	MVM_MGR_EXPECT(m, "lock_completed off=4096 len=4096");
	p[11] = 0x32;
	p[PG + 11] = 0x33;
	assert_int_equal(stats(m).data_unlocks, 2);
	unmap(a, 2);
	MVM_MGR_EXPECT(m, "data_return off=0 len=8192 dirty=1 kcopy=0", "terminate");
	assert_int_equal(m->store[0][10], 0x30);
	assert_int_equal(m->store[1][10], 0x31);
	assert_int_equal(m->store[0][11], 0x32);
	assert_int_equal(m->store[1][11], 0x33);
	mvm_mgr_stop(m);
	QUIESCENT();
}

/* The manager flushes a page while a writer waits for its unlock, then answers the stale
 * unlock: the page is requested again by then, so the answer does nothing, and the page
 * supplied afterwards (write-locked again) still needs an unlock of its own. */
static void
unlock_stale_after_flush(void **state)
{
	struct mvm_mgr *m;
	struct access w;
	vm_address_t a;

	(void)state;
	mvm_test_require_uffd();
	m = start_mgr();
	m->manual_requests = true;
	m->manual_unlocks = true;
	a = map_object(m, 1);
	access_start(&w, a + 4, true, 0x44);
	AWAIT(m, "data_request", 1);
	assert_kr(mvm_mgr_supply(m, 0, PG, VM_PROT_WRITE, FALSE, MACH_PORT_NULL), KERN_SUCCESS);
	AWAIT(m, "data_unlock", 1);
	lock(m, 0, PG, MEMORY_OBJECT_RETURN_NONE, TRUE, VM_PROT_NO_CHANGE, m->object);
	AWAIT(m, "lock_completed", 1);
	MVM_MGR_EXPECT(m, "data_request off=0 len=4096 access=3",
	    "data_unlock off=0 len=4096 access=2", "data_request off=0 len=4096 access=3",
	    "lock_completed off=0 len=4096");
	/* The stale answer to the first unlock. */
	lock(m, 0, PG, MEMORY_OBJECT_RETURN_NONE, FALSE, VM_PROT_NONE, m->object);
	MVM_MGR_EXPECT(m, "lock_completed off=0 len=4096");
	assert_int_equal(atomic_load(&w.done), 0);
	assert_kr(mvm_mgr_supply(m, 0, PG, VM_PROT_WRITE, FALSE, MACH_PORT_NULL), KERN_SUCCESS);
	AWAIT(m, "data_unlock", 1);
	MVM_MGR_EXPECT(m, "data_unlock off=0 len=4096 access=2");
	assert_int_equal(atomic_load(&w.done), 0);
	lock(m, 0, PG, MEMORY_OBJECT_RETURN_NONE, FALSE, VM_PROT_NONE, m->object);
	assert_int_equal(access_join(&w), 1);
	MVM_MGR_EXPECT(m, "lock_completed off=0 len=4096");
	assert_int_equal(((volatile unsigned char *)a)[4], 0x44);
	assert_int_equal(((volatile unsigned char *)a)[5], mvm_mgr_pattern(5));
	unmap(a, 1);
	MVM_MGR_EXPECT(m, "data_return off=0 len=4096 dirty=1 kcopy=0", "terminate");
	assert_int_equal(m->store[0][4], 0x44);
	mvm_mgr_stop(m);
	QUIESCENT();
}

/* An answer that does not lower the lock (NO_CHANGE, or the same lock again) makes the
 * waiting writer ask afresh instead of leaving it stuck; the next answer grants. */
static void
unlock_answer_keeps_lock(vm_prot_t answer)
{
	struct mvm_mgr *m;
	struct access w;
	vm_address_t a;

	mvm_test_require_uffd();
	m = start_mgr();
	m->supply_lock = VM_PROT_WRITE;
	m->manual_unlocks = true;
	a = map_object(m, 1);
	assert_int_equal(((volatile unsigned char *)a)[0], mvm_mgr_pattern(0));
	access_start(&w, a + 9, true, 0x99);
	AWAIT(m, "data_unlock", 1);
	lock(m, 0, PG, MEMORY_OBJECT_RETURN_NONE, FALSE, answer, m->object);
	AWAIT(m, "lock_completed", 1);
	assert_int_equal(atomic_load(&w.done), 0);
	/* The fresh unlock is sent while the answer is carried out, before its completion. */
	MVM_MGR_EXPECT(m, "data_request off=0 len=4096 access=1",
	    "data_unlock off=0 len=4096 access=2", "data_unlock off=0 len=4096 access=2",
	    "lock_completed off=0 len=4096");
	lock(m, 0, PG, MEMORY_OBJECT_RETURN_NONE, FALSE, VM_PROT_NONE, m->object);
	assert_int_equal(access_join(&w), 1);
	MVM_MGR_EXPECT(m, "lock_completed off=0 len=4096");
	assert_int_equal(stats(m).data_unlocks, 2);
	unmap(a, 1);
	MVM_MGR_EXPECT(m, "data_return off=0 len=4096 dirty=1 kcopy=0", "terminate");
	assert_int_equal(m->store[0][9], 0x99);
	mvm_mgr_stop(m);
	QUIESCENT();
}

static void
unlock_no_change_answer(void **state)
{
	(void)state;
	unlock_answer_keeps_lock(VM_PROT_NO_CHANGE);
}

static void
unlock_same_lock_again(void **state)
{
	(void)state;
	unlock_answer_keeps_lock(VM_PROT_WRITE);
}

/* Refusal: flush the page, then answer the data_request (now for access 3) with
 * data_error. The writer gets SIGBUS with BUS_OBJERR at the page; a later access asks
 * again and may succeed. */
static void
unlock_refused_sigbus(void **state)
{
	struct mvm_mgr *m;
	struct access w, r;
	struct sigaction cmocka_sigbus;
	vm_address_t a;

	(void)state;
	mvm_test_require_uffd();
	m = start_mgr();
	m->manual_requests = true;
	m->manual_unlocks = true;
	assert_int_equal(sigaction(SIGBUS, &kernel_sigbus, &cmocka_sigbus), 0);
	a = map_object(m, 1);
	access_start(&w, a + 2, true, 0x55);
	AWAIT(m, "data_request", 1);
	assert_kr(mvm_mgr_supply(m, 0, PG, VM_PROT_WRITE, FALSE, MACH_PORT_NULL), KERN_SUCCESS);
	AWAIT(m, "data_unlock", 1);
	lock(m, 0, PG, MEMORY_OBJECT_RETURN_NONE, TRUE, VM_PROT_NO_CHANGE, m->object);
	AWAIT(m, "lock_completed", 1);
	MVM_MGR_EXPECT(m, "data_request off=0 len=4096 access=3",
	    "data_unlock off=0 len=4096 access=2", "data_request off=0 len=4096 access=3",
	    "lock_completed off=0 len=4096");
	assert_int_equal(atomic_load(&w.done), 0);
	assert_kr(memory_object_data_error(m->ctl, 0, PG, KERN_MEMORY_ERROR), KERN_SUCCESS);
	assert_int_equal(access_join(&w), 2);
	assert_int_equal(sigaction(SIGBUS, &cmocka_sigbus, NULL), 0);
	assert_int_equal(w.sig_code, BUS_OBJERR);
	assert_int_equal((uintptr_t)w.sig_addr & ~(uintptr_t)(PG - 1), a);
	assert_int_equal(stats(m).errors, 1);
	assert_int_equal(stats(m).resident, 0);
	/* Only the threads waiting then saw the error: a new access asks again. */
	access_start(&r, a + 2, false, 0);
	AWAIT(m, "data_request", 1);
	assert_kr(mvm_mgr_supply(m, 0, PG, VM_PROT_NONE, FALSE, MACH_PORT_NULL), KERN_SUCCESS);
	assert_int_equal(access_join(&r), 1);
	assert_int_equal(r.val, mvm_mgr_pattern(2));
	MVM_MGR_EXPECT(m, "data_request off=0 len=4096 access=1");
	unmap(a, 1);
	MVM_MGR_EXPECT(m, "terminate");
	mvm_mgr_stop(m);
	QUIESCENT();
}

/* ---- 2. lock_request ----------------------------------------------------------------------- */

/* No page resident: completion at once, nothing returned; a lock value set then does not
 * touch pages supplied later. Also answered on a separate reply port. */
static void
lock_request_absent_pages(void **state)
{
	struct mvm_mgr *m, *m2;
	volatile unsigned char *p;
	vm_address_t a;

	(void)state;
	mvm_test_require_uffd();
	m = start_mgr();
	m2 = start_mgr();
	a = map_object(m, 4);
	p = (volatile unsigned char *)a;
	lock(m, 0, 4 * PG, MEMORY_OBJECT_RETURN_ALL, TRUE, VM_PROT_NO_CHANGE, m->object);
	MVM_MGR_EXPECT(m, "lock_completed off=0 len=16384");
	lock(m, PG, 2 * PG, MEMORY_OBJECT_RETURN_DIRTY, FALSE, VM_PROT_WRITE, m2->object);
	AWAIT(m2, "lock_completed", 1);
	MVM_MGR_EXPECT(m2, "lock_completed off=4096 len=8192");
	assert_int_equal(p[PG + 1], mvm_mgr_pattern(PG + 1));
	p[PG + 2] = 0x5a; /* supplied with lock NONE: writable without an unlock */
	MVM_MGR_EXPECT(m, "data_request off=4096 len=4096 access=1");
	assert_int_equal(stats(m).data_returns, 0);
	unmap(a, 4);
	MVM_MGR_EXPECT(m, "data_return off=4096 len=4096 dirty=1 kcopy=0", "terminate");
	mvm_mgr_stop(m2);
	mvm_mgr_stop(m);
	QUIESCENT();
}

/* A page requested but not supplied yet counts as done: the flush completes at once, and
 * the supply that comes later still fills the page for the waiting thread. */
static void
lock_request_requested_page(void **state)
{
	struct mvm_mgr *m;
	struct access r;
	vm_address_t a;

	(void)state;
	mvm_test_require_uffd();
	m = start_mgr();
	m->manual_requests = true;
	a = map_object(m, 2);
	access_start(&r, a + PG + 7, false, 0);
	AWAIT(m, "data_request", 1);
	lock(m, PG, PG, MEMORY_OBJECT_RETURN_ALL, TRUE, VM_PROT_WRITE, m->object);
	AWAIT(m, "lock_completed", 1);
	assert_int_equal(atomic_load(&r.done), 0);
	MVM_MGR_EXPECT(m, "data_request off=4096 len=4096 access=1",
	    "lock_completed off=4096 len=4096");
	assert_kr(mvm_mgr_supply(m, PG, PG, VM_PROT_NONE, FALSE, MACH_PORT_NULL), KERN_SUCCESS);
	assert_int_equal(access_join(&r), 1);
	assert_int_equal(r.val, mvm_mgr_pattern(PG + 7));
	assert_int_equal(stats(m).resident, 1);
	unmap(a, 2);
	MVM_MGR_EXPECT(m, "terminate");
	mvm_mgr_stop(m);
	QUIESCENT();
}

/* RETURN_NONE + flush discards dirty data: the next read asks again and gets the store's
 * old data. */
static void
lock_request_flush_discards_dirty(void **state)
{
	struct mvm_mgr *m;
	volatile unsigned char *p;
	vm_address_t a;

	(void)state;
	mvm_test_require_uffd();
	m = start_mgr();
	a = map_object(m, 2);
	p = (volatile unsigned char *)a;
	p[10] = 0xaa;
	assert_int_equal(p[PG], mvm_mgr_pattern(PG));
	lock(m, 0, 2 * PG, MEMORY_OBJECT_RETURN_NONE, TRUE, VM_PROT_NO_CHANGE, m->object);
	MVM_MGR_EXPECT(m, "data_request off=0 len=4096 access=3",
	    "data_request off=4096 len=4096 access=1", "lock_completed off=0 len=8192");
	assert_int_equal(stats(m).resident, 0);
	assert_int_equal(stats(m).dirty, 0);
	assert_int_equal(p[10], mvm_mgr_pattern(10));
	MVM_MGR_EXPECT(m, "data_request off=0 len=4096 access=1");
	assert_int_equal(m->store[0][10], mvm_mgr_pattern(10));
	unmap(a, 2);
	MVM_MGR_EXPECT(m, "terminate");
	mvm_mgr_stop(m);
	QUIESCENT();
}

/* RETURN_DIRTY without flush returns the dirty pages (kernel_copy TRUE), one return per
 * contiguous run, and keeps them resident and clean; the next write dirties again, the
 * next clean returns only that page, and a clean with nothing dirty returns nothing. */
static void
lock_request_return_dirty_keeps(void **state)
{
	struct mvm_mgr *m, *m2;
	volatile unsigned char *p;
	vm_address_t a;
	struct mvm_vm_object_stats st;

	(void)state;
	mvm_test_require_uffd();
	m = start_mgr();
	m2 = start_mgr();
	a = map_object(m, 3);
	p = (volatile unsigned char *)a;
	p[1] = 0xa1;
	assert_int_equal(p[PG + 1], mvm_mgr_pattern(PG + 1));
	p[2 * PG + 2] = 0xa2;
	MVM_MGR_EXPECT(m, "data_request off=0 len=4096 access=3",
	    "data_request off=4096 len=4096 access=1", "data_request off=8192 len=4096 access=3");
	lock(m, 0, 3 * PG, MEMORY_OBJECT_RETURN_DIRTY, FALSE, VM_PROT_NO_CHANGE, m->object);
	MVM_MGR_EXPECT(m, "data_return off=0 len=4096 dirty=1 kcopy=1",
	    "data_return off=8192 len=4096 dirty=1 kcopy=1", "lock_completed off=0 len=12288");
	assert_int_equal(m->store[0][1], 0xa1);
	assert_int_equal(m->store[2][2], 0xa2);
	st = stats(m);
	assert_int_equal(st.resident, 3);
	assert_int_equal(st.dirty, 0);
	/* Still resident: reads ask nothing, and a write dirties the page again. */
	assert_int_equal(p[1], 0xa1);
	assert_int_equal(p[2 * PG + 2], 0xa2);
	p[3] = 0xb3;
	assert_int_equal(stats(m).dirty, 1);
	/* Answered on a separate reply port: the return still goes to the object port. */
	lock(m, 0, 3 * PG, MEMORY_OBJECT_RETURN_DIRTY, FALSE, VM_PROT_NO_CHANGE, m2->object);
	AWAIT(m2, "lock_completed", 1);
	MVM_MGR_EXPECT(m2, "lock_completed off=0 len=12288");
	MVM_MGR_EXPECT(m, "data_return off=0 len=4096 dirty=1 kcopy=1");
	assert_int_equal(m->store[0][3], 0xb3);
	lock(m, 0, 3 * PG, MEMORY_OBJECT_RETURN_DIRTY, FALSE, VM_PROT_NO_CHANGE, m->object);
	MVM_MGR_EXPECT(m, "lock_completed off=0 len=12288");
	assert_int_equal(stats(m).data_returns, 3);
	assert_int_equal(stats(m).data_requests, 3);
	unmap(a, 3);
	MVM_MGR_EXPECT(m, "terminate");
	mvm_mgr_stop(m2);
	mvm_mgr_stop(m);
	QUIESCENT();
}

/* RETURN_DIRTY + flush: dirty pages come back with kernel_copy FALSE, clean precious pages
 * are discarded without a return; nothing stays resident. */
static void
lock_request_return_dirty_flush(void **state)
{
	struct mvm_mgr *m;
	volatile unsigned char *p;
	vm_address_t a;

	(void)state;
	mvm_test_require_uffd();
	m = start_mgr();
	m->supply_precious = TRUE;
	a = map_object(m, 3);
	p = (volatile unsigned char *)a;
	assert_int_equal(p[0], mvm_mgr_pattern(0));
	p[PG + 5] = 0xc5;
	assert_int_equal(p[2 * PG], mvm_mgr_pattern(2 * PG));
	MVM_MGR_EXPECT(m, "data_request off=0 len=4096 access=1",
	    "data_request off=4096 len=4096 access=3", "data_request off=8192 len=4096 access=1");
	lock(m, 0, 3 * PG, MEMORY_OBJECT_RETURN_DIRTY, TRUE, VM_PROT_NO_CHANGE, m->object);
	MVM_MGR_EXPECT(m, "data_return off=4096 len=4096 dirty=1 kcopy=0",
	    "lock_completed off=0 len=12288");
	assert_int_equal(m->store[1][5], 0xc5);
	assert_int_equal(stats(m).resident, 0);
	/* The precious pages are gone: unmapping returns nothing. */
	unmap(a, 3);
	MVM_MGR_EXPECT(m, "terminate");
	mvm_mgr_stop(m);
	QUIESCENT();
}

/* RETURN_ALL without flush returns clean precious pages (dirty FALSE, kernel_copy TRUE)
 * and they stay precious: a second RETURN_ALL returns them again, RETURN_DIRTY does not,
 * and the last unmapping returns them with kernel_copy FALSE. */
static void
lock_request_return_all_precious(void **state)
{
	struct mvm_mgr *m;
	volatile unsigned char *p;
	vm_address_t a;

	(void)state;
	mvm_test_require_uffd();
	m = start_mgr();
	m->supply_precious = TRUE;
	a = map_object(m, 3);
	p = (volatile unsigned char *)a;
	assert_int_equal(p[0], mvm_mgr_pattern(0));
	assert_int_equal(p[PG], mvm_mgr_pattern(PG));
	MVM_MGR_EXPECT(m, "data_request off=0 len=4096 access=1",
	    "data_request off=4096 len=4096 access=1");
	lock(m, 0, 3 * PG, MEMORY_OBJECT_RETURN_ALL, FALSE, VM_PROT_NO_CHANGE, m->object);
	MVM_MGR_EXPECT(m, "data_return off=0 len=8192 dirty=0 kcopy=1",
	    "lock_completed off=0 len=12288");
	lock(m, 0, 3 * PG, MEMORY_OBJECT_RETURN_ALL, FALSE, VM_PROT_NO_CHANGE, m->object);
	MVM_MGR_EXPECT(m, "data_return off=0 len=8192 dirty=0 kcopy=1",
	    "lock_completed off=0 len=12288");
	lock(m, 0, 3 * PG, MEMORY_OBJECT_RETURN_DIRTY, FALSE, VM_PROT_NO_CHANGE, m->object);
	MVM_MGR_EXPECT(m, "lock_completed off=0 len=12288");
	assert_int_equal(stats(m).resident, 2);
	assert_int_equal(p[PG + 3], mvm_mgr_pattern(PG + 3));
	unmap(a, 3);
	MVM_MGR_EXPECT(m, "data_return off=0 len=8192 dirty=0 kcopy=0", "terminate");
	mvm_mgr_stop(m);
	QUIESCENT();
}

/* 70 dirty pages come back as runs of 32 + 32 + 6; with flush, a dirty range that does not
 * start at 0 is split at 32 pages too. (A page still busy from the fault that dirtied it
 * also ends a run, as in GNU Mach, so the test first makes sure the fault thread is done:
 * a page beyond the range is read through it.) */
static void
lock_request_runs_of_32(void **state)
{
	enum { N = 70 };
	struct mvm_mgr *m;
	volatile unsigned char *p;
	vm_address_t a;

	(void)state;
	mvm_test_require_uffd();
	m = start_mgr();
	a = map_object(m, N + 1);
	p = (volatile unsigned char *)a;
	for (size_t i = 0; i < N; i++)
		p[i * PG] = (unsigned char)(i + 1);
	assert_int_equal(mvm_mgr_count(m, "data_request"), N);
	mvm_mgr_clear(m);
	lock(m, 0, N * PG, MEMORY_OBJECT_RETURN_DIRTY, FALSE, VM_PROT_NO_CHANGE, m->object);
	MVM_MGR_EXPECT(m, "data_return off=0 len=131072 dirty=1 kcopy=1",
	    "data_return off=131072 len=131072 dirty=1 kcopy=1",
	    "data_return off=262144 len=24576 dirty=1 kcopy=1", "lock_completed off=0 len=286720");
	for (size_t i = 0; i < N; i++)
		assert_int_equal(m->store[i][0], (unsigned char)(i + 1));
	/* Pages 5..40 dirty again, the rest clean: two runs, 32 + 4, all flushed. */
	for (size_t i = 5; i <= 40; i++)
		p[i * PG + 1] = (unsigned char)(i + 2);
	assert_int_equal(p[N * PG], mvm_mgr_pattern(N * PG));
	lock(m, 0, N * PG, MEMORY_OBJECT_RETURN_ALL, TRUE, VM_PROT_NO_CHANGE, m->object);
	MVM_MGR_EXPECT(m, "data_request off=286720 len=4096 access=1",
	    "data_return off=20480 len=131072 dirty=1 kcopy=0",
	    "data_return off=151552 len=16384 dirty=1 kcopy=0", "lock_completed off=0 len=286720");
	for (size_t i = 5; i <= 40; i++)
		assert_int_equal(m->store[i][1], (unsigned char)(i + 2));
	assert_int_equal(stats(m).resident, 1);
	unmap(a, N + 1);
	MVM_MGR_EXPECT(m, "terminate");
	mvm_mgr_stop(m);
	QUIESCENT();
}

/* Runs end at a clean page, at an absent page, and where the action changes (a dirty page
 * next to a clean precious one under RETURN_ALL). */
static void
lock_request_separate_runs(void **state)
{
	struct mvm_mgr *m;
	volatile unsigned char *p;
	vm_address_t a;

	(void)state;
	mvm_test_require_uffd();
	m = start_mgr();
	m->supply_precious = TRUE;
	a = map_object(m, 6);
	p = (volatile unsigned char *)a;
	/* Pages 0, 1, 3, 5 dirty; 2 clean (precious); 4 absent. */
	p[0] = 1;
	p[PG] = 2;
	assert_int_equal(p[2 * PG], mvm_mgr_pattern(2 * PG));
	p[3 * PG] = 4;
	p[5 * PG] = 6;
	assert_int_equal(mvm_mgr_count(m, "data_request"), 5);
	mvm_mgr_clear(m);
	lock(m, 0, 6 * PG, MEMORY_OBJECT_RETURN_DIRTY, FALSE, VM_PROT_NO_CHANGE, m->object);
	MVM_MGR_EXPECT(m, "data_return off=0 len=8192 dirty=1 kcopy=1",
	    "data_return off=12288 len=4096 dirty=1 kcopy=1",
	    "data_return off=20480 len=4096 dirty=1 kcopy=1", "lock_completed off=0 len=24576");
	p[PG + 1] = 3;
	p[3 * PG + 1] = 5;
	lock(m, 0, 6 * PG, MEMORY_OBJECT_RETURN_ALL, FALSE, VM_PROT_NO_CHANGE, m->object);
	MVM_MGR_EXPECT(m, "data_return off=0 len=4096 dirty=0 kcopy=1",
	    "data_return off=4096 len=4096 dirty=1 kcopy=1",
	    "data_return off=8192 len=4096 dirty=0 kcopy=1",
	    "data_return off=12288 len=4096 dirty=1 kcopy=1",
	    "data_return off=20480 len=4096 dirty=0 kcopy=1", "lock_completed off=0 len=24576");
	assert_int_equal(m->store[1][1], 3);
	assert_int_equal(m->store[3][1], 5);
	unmap(a, 6);
	MVM_MGR_EXPECT(m, "data_return off=0 len=16384 dirty=0 kcopy=0",
	    "data_return off=20480 len=4096 dirty=0 kcopy=0", "terminate");
	mvm_mgr_stop(m);
	QUIESCENT();
}

/* lock_completed echoes the manager's own offset and size, not rounded to pages; the
 * request covers every page the range touches. */
static void
lock_request_unrounded_echo(void **state)
{
	struct mvm_mgr *m, *m2;
	volatile unsigned char *p;
	vm_address_t a;

	(void)state;
	mvm_test_require_uffd();
	m = start_mgr();
	m2 = start_mgr();
	a = map_object(m, 3);
	p = (volatile unsigned char *)a;
	p[0] = 0x10;
	p[PG] = 0x11;
	p[2 * PG] = 0x12;
	mvm_mgr_clear(m);
	lock(m, 100, 5000, MEMORY_OBJECT_RETURN_DIRTY, FALSE, VM_PROT_NO_CHANGE, m->object);
	MVM_MGR_EXPECT(m, "data_return off=0 len=8192 dirty=1 kcopy=1",
	    "lock_completed off=100 len=5000");
	lock(m, 2 * PG + 1, 1, MEMORY_OBJECT_RETURN_ALL, FALSE, VM_PROT_NO_CHANGE, m2->object);
	AWAIT(m2, "lock_completed", 1);
	MVM_MGR_EXPECT(m2, "lock_completed off=8193 len=1");
	MVM_MGR_EXPECT(m, "data_return off=8192 len=4096 dirty=1 kcopy=1");
	unmap(a, 3);
	MVM_MGR_EXPECT(m, "terminate");
	mvm_mgr_stop(m2);
	mvm_mgr_stop(m);
	QUIESCENT();
}

/* lock_value WRITE write-protects a page already dirty and writable: reads go on, the
 * next write asks for access 2. */
static void
lock_request_write_lock_protects(void **state)
{
	struct mvm_mgr *m;
	struct access w;
	volatile unsigned char *p;
	vm_address_t a;

	(void)state;
	mvm_test_require_uffd();
	m = start_mgr();
	m->manual_unlocks = true;
	a = map_object(m, 1);
	p = (volatile unsigned char *)a;
	p[0] = 0x01;
	p[1] = 0x02;
	lock(m, 0, PG, MEMORY_OBJECT_RETURN_NONE, FALSE, VM_PROT_WRITE, m->object);
	MVM_MGR_EXPECT(m, "data_request off=0 len=4096 access=3", "lock_completed off=0 len=4096");
	assert_int_equal(p[1], 0x02);
	assert_int_equal(p[2], mvm_mgr_pattern(2));
	access_start(&w, a + 2, true, 0x03);
	AWAIT(m, "data_unlock", 1);
	assert_int_equal(atomic_load(&w.done), 0);
	lock(m, 0, PG, MEMORY_OBJECT_RETURN_NONE, FALSE, VM_PROT_NONE, m->object);
	assert_int_equal(access_join(&w), 1);
	MVM_MGR_EXPECT(m, "data_unlock off=0 len=4096 access=2", "lock_completed off=0 len=4096");
	assert_int_equal(p[2], 0x03);
	unmap(a, 1);
	MVM_MGR_EXPECT(m, "data_return off=0 len=4096 dirty=1 kcopy=0", "terminate");
	assert_int_equal(m->store[0][0], 0x01);
	assert_int_equal(m->store[0][2], 0x03);
	mvm_mgr_stop(m);
	QUIESCENT();
}

/* A lock value beyond VM_PROT_ALL that is not VM_PROT_NO_CHANGE is refused: no
 * lock_completed, nothing changes, and the unused reply right comes back to the reply port
 * as a send-once notification. */
static void
lock_request_bad_lock_value(void **state)
{
	static const vm_prot_t bad[] = { 0x10, VM_PROT_NO_CHANGE | VM_PROT_WRITE, 0x7fffffff };
	struct mvm_mgr *m;
	volatile unsigned char *p;
	vm_address_t a;
	mach_port_t reply;

	(void)state;
	mvm_test_require_uffd();
	m = start_mgr();
	a = map_object(m, 1);
	p = (volatile unsigned char *)a;
	p[0] = 0x42;
	MVM_MGR_EXPECT(m, "data_request off=0 len=4096 access=3");
	assert_kr(mach_port_allocate(mach_task_self(), MACH_PORT_RIGHT_RECEIVE, &reply),
	    KERN_SUCCESS);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		union {
			mach_msg_header_t h;
			_Alignas(8) char buf[512];
		} msg;

		memset(&msg, 0, sizeof(msg));
		lock(m, 0, PG, MEMORY_OBJECT_RETURN_ALL, TRUE, bad[i], reply);
		assert_kr(mach_msg(&msg.h, MACH_RCV_MSG | MACH_RCV_TIMEOUT, 0, sizeof(msg), reply,
		    WAIT_MS, MACH_PORT_NULL), MACH_MSG_SUCCESS);
		assert_int_equal(msg.h.msgh_id, MACH_NOTIFY_SEND_ONCE);
	}
	/* The flush was not carried out: the page is still resident and dirty. */
	assert_int_equal(stats(m).resident, 1);
	assert_int_equal(stats(m).dirty, 1);
	assert_int_equal(p[0], 0x42);
	/* A valid request after them completes normally, and nothing else came meanwhile. */
	lock(m, 0, PG, MEMORY_OBJECT_RETURN_NONE, FALSE, VM_PROT_NO_CHANGE, m->object);
	MVM_MGR_EXPECT(m, "lock_completed off=0 len=4096");
	assert_kr(mach_port_mod_refs(mach_task_self(), reply, MACH_PORT_RIGHT_RECEIVE, -1),
	    KERN_SUCCESS);
	unmap(a, 1);
	MVM_MGR_EXPECT(m, "data_return off=0 len=4096 dirty=1 kcopy=0", "terminate");
	assert_int_equal(m->store[0][0], 0x42);
	mvm_mgr_stop(m);
	QUIESCENT();
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(unlock_write_lock),
		cmocka_unit_test(unlock_read_lock_cumulative),
		cmocka_unit_test(unlock_read_after_lock_request),
		cmocka_unit_test(unlock_duplicate),
		cmocka_unit_test(unlock_out_of_order),
		cmocka_unit_test(unlock_stale_after_flush),
		cmocka_unit_test(unlock_no_change_answer),
		cmocka_unit_test(unlock_same_lock_again),
		cmocka_unit_test(unlock_refused_sigbus),
		cmocka_unit_test(lock_request_absent_pages),
		cmocka_unit_test(lock_request_requested_page),
		cmocka_unit_test(lock_request_flush_discards_dirty),
		cmocka_unit_test(lock_request_return_dirty_keeps),
		cmocka_unit_test(lock_request_return_dirty_flush),
		cmocka_unit_test(lock_request_return_all_precious),
		cmocka_unit_test(lock_request_runs_of_32),
		cmocka_unit_test(lock_request_separate_runs),
		cmocka_unit_test(lock_request_unrounded_echo),
		cmocka_unit_test(lock_request_write_lock_protects),
		cmocka_unit_test(lock_request_bad_lock_value),
	};
	struct sigaction sa;

	/* Before any kernel call: the kernel chains its SIGBUS to the handler it finds. Then
	 * start the kernel and keep its action (see kernel_sigbus). */
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = on_sigbus;
	sa.sa_flags = SA_SIGINFO;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGBUS, &sa, NULL) != 0)
		return 1;
	(void)mvm_vm_available(NULL, 0);
	if (sigaction(SIGBUS, NULL, &kernel_sigbus) != 0)
		return 1;
	return cmocka_run_group_tests_name("vm_lock", tests, NULL, NULL);
}
