/*
 * tests/integration/test_vm_attr.c: object attributes, caching and termination against
 * the in-process kernel, with the scripted manager asserting the exact message sequence;
 * and a concurrency check of cleaning and flushing under writers.
 *
 * Attributes: memory_object_get_attributes answers the manager's own thread (before and
 * after ready); change_attributes takes effect and, with a reply port, brings
 * change_completed; an invalid copy strategy is refused (ready leaves the object not
 * ready, change_attributes changes nothing and its reply right comes back as a send-once
 * notification).
 *
 * Caching: an object whose manager said may_cache keeps its pages when its last mapping
 * goes (no terminate; a new vm_map sends no init and finds the pages resident); turning
 * may_cache off on the unmapped object returns its dirty pages, then terminates it, and
 * only then sends change_completed. On a mapped object it only changes the attribute.
 *
 * Termination: dirty pages come back (kernel_copy FALSE, in runs of at most 32 pages)
 * before terminate, byte for byte.
 *
 * Concurrency: writers keep incrementing per-page counters while the manager repeatedly
 * cleans (RETURN_DIRTY) and flushes (RETURN_ALL + flush); no increment is lost.
 */
#include <errno.h>
#include <pthread.h>
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

static void
lock(struct mvm_mgr *m, vm_offset_t off, vm_size_t size, memory_object_return_t ret,
    boolean_t flush, vm_prot_t lock_value, mach_port_t reply)
{
	assert_kr(memory_object_lock_request(m->ctl, off, size, ret, flush, lock_value, reply),
	    KERN_SUCCESS);
}

static vm_address_t
map_pages(struct mvm_mgr *m, size_t pages)
{
	vm_address_t a = 0;

	assert_kr(vm_map(mach_task_self(), &a, pages * PG, 0, TRUE, m->object, 0, FALSE,
	    VM_PROT_ALL, VM_PROT_ALL, VM_INHERIT_NONE), KERN_SUCCESS);
	return a;
}

static void
unmap(vm_address_t a, size_t pages)
{
	assert_kr(vm_deallocate(mach_task_self(), a, pages * PG), KERN_SUCCESS);
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

/* Receive one message on port within WAIT_MS and return its id. */
static mach_msg_id_t
receive_id(mach_port_t port)
{
	union {
		mach_msg_header_t h;
		_Alignas(8) char buf[512];
	} msg;

	memset(&msg, 0, sizeof(msg));
	assert_kr(mach_msg(&msg.h, MACH_RCV_MSG | MACH_RCV_TIMEOUT, 0, sizeof(msg), port, WAIT_MS,
	    MACH_PORT_NULL), MACH_MSG_SUCCESS);
	return msg.h.msgh_id;
}

struct attrs {
	kern_return_t kr;
	boolean_t ready, may_cache;
	memory_object_copy_strategy_t strategy;
};

static struct attrs
get_attrs(memory_object_control_t ctl)
{
	struct attrs at;

	memset(&at, 0, sizeof(at));
	at.kr = memory_object_get_attributes(ctl, &at.ready, &at.may_cache, &at.strategy);
	return at;
}

static void
assert_attrs(struct attrs at, boolean_t ready, boolean_t may_cache,
    memory_object_copy_strategy_t strategy)
{
	assert_kr(at.kr, KERN_SUCCESS);
	assert_int_equal(at.ready, ready);
	assert_int_equal(at.may_cache, may_cache);
	assert_int_equal(at.strategy, strategy);
}

/* What the manager's init hook is to do, and what it saw before and after its ready. */
struct init_script {
	boolean_t may_cache;                      /* of the valid ready */
	memory_object_copy_strategy_t strategy;   /* of the valid ready */
	bool bad_ready_first;                     /* first a ready with an invalid strategy */
	struct attrs before, after;
	bool seen;                                /* (m->mtx) the hook has run */
};

/*
 * The manager's thread: [a refused ready, ] get_attributes, ready, get_attributes; then it
 * says under the manager's lock that it is done. The support manager logs "init" before
 * it stores the control port, so the log line alone does not make m->ctl (or what the
 * hook saw) safe to read from the test thread: wait_init() does.
 */
static bool
init_query(struct mvm_mgr *m, memory_object_control_t ctl)
{
	struct init_script *s = m->arg;

	if (s->bad_ready_first)
		(void)memory_object_ready(ctl, TRUE, 99);
	s->before = get_attrs(ctl);
	(void)memory_object_ready(ctl, s->may_cache, s->strategy);
	s->after = get_attrs(ctl);
	pthread_mutex_lock(&m->mtx);
	s->seen = true;
	pthread_cond_broadcast(&m->cond);
	pthread_mutex_unlock(&m->mtx);
	return true;
}

static struct mvm_mgr *
start_mgr(struct init_script *s)
{
	struct mvm_mgr *m = mvm_mgr_start();

	m->arg = s;
	m->policy.init = init_query;
	return m;
}

/* Wait until init_query has run. */
static void
wait_init(struct mvm_mgr *m)
{
	struct init_script *s = m->arg;
	struct timespec dl;
	bool seen;

	clock_gettime(CLOCK_REALTIME, &dl);
	dl.tv_sec += WAIT_MS / 1000;
	pthread_mutex_lock(&m->mtx);
	while (!s->seen && pthread_cond_timedwait(&m->cond, &m->mtx, &dl) != ETIMEDOUT)
		;
	seen = s->seen && MACH_PORT_VALID(m->ctl);
	pthread_mutex_unlock(&m->mtx);
	if (!seen)
		fail_msg("the manager did not answer init within %d ms", WAIT_MS);
}

/* ---- 1. attributes ------------------------------------------------------------------------ */

/* get_attributes from the manager's own thread sees the object not ready, then ready
 * with the attributes given; change_attributes changes them and answers on its reply
 * port. */
static void
attributes_from_manager_thread(void **state)
{
	struct mvm_mgr *m;
	struct init_script s = { .may_cache = FALSE, .strategy = MEMORY_OBJECT_COPY_NONE };
	volatile unsigned char *p;
	vm_address_t a;

	(void)state;
	mvm_test_require_uffd();
	m = start_mgr(&s);
	a = map_pages(m, 1);
	p = (volatile unsigned char *)a;
	/* The fault waits for the ready the hook sends. */
	assert_int_equal(p[0], mvm_mgr_pattern(0));
	MVM_MGR_EXPECT(m, "init page_size=4096", "data_request off=0 len=4096 access=1");
	wait_init(m);
	assert_attrs(s.before, FALSE, FALSE, MEMORY_OBJECT_COPY_DELAY);
	assert_attrs(s.after, TRUE, FALSE, MEMORY_OBJECT_COPY_NONE);
	assert_kr(memory_object_change_attributes(m->ctl, FALSE, MEMORY_OBJECT_COPY_DELAY,
	    m->object), KERN_SUCCESS);
	MVM_MGR_EXPECT(m, "change_completed may_cache=0 strategy=2");
	assert_attrs(get_attrs(m->ctl), TRUE, FALSE, MEMORY_OBJECT_COPY_DELAY);
	/* Without a reply port: no answer, but the change is made. */
	assert_kr(memory_object_change_attributes(m->ctl, FALSE, MEMORY_OBJECT_COPY_TEMPORARY,
	    MACH_PORT_NULL), KERN_SUCCESS);
	assert_attrs(get_attrs(m->ctl), TRUE, FALSE, MEMORY_OBJECT_COPY_TEMPORARY);
	/* may_cache FALSE on a mapped object does not terminate it. */
	assert_int_equal(stats(m).mappings, 1);
	unmap(a, 1);
	MVM_MGR_EXPECT(m, "terminate");
	mvm_mgr_stop(m);
	QUIESCENT();
}

/* An invalid copy strategy is refused: ready leaves the object not ready (faults go on
 * waiting for a valid one), change_attributes changes nothing and sends no
 * change_completed, its reply right coming back as a send-once notification. */
static void
attributes_invalid_strategy(void **state)
{
	static const memory_object_copy_strategy_t bad[] = { 4, 99, -1 };
	struct mvm_mgr *m;
	struct init_script s = {
		.may_cache = FALSE, .strategy = MEMORY_OBJECT_COPY_DELAY, .bad_ready_first = true,
	};
	mach_port_t reply;
	vm_address_t a;

	(void)state;
	mvm_test_require_uffd();
	m = start_mgr(&s);
	a = map_pages(m, 1);
	assert_int_equal(((volatile unsigned char *)a)[0], mvm_mgr_pattern(0));
	MVM_MGR_EXPECT(m, "init page_size=4096", "data_request off=0 len=4096 access=1");
	wait_init(m);
	/* The refused ready set neither ready nor may_cache. */
	assert_attrs(s.before, FALSE, FALSE, MEMORY_OBJECT_COPY_DELAY);
	assert_attrs(s.after, TRUE, FALSE, MEMORY_OBJECT_COPY_DELAY);
	assert_kr(mach_port_allocate(mach_task_self(), MACH_PORT_RIGHT_RECEIVE, &reply),
	    KERN_SUCCESS);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_kr(memory_object_change_attributes(m->ctl, TRUE, bad[i], reply),
		    KERN_SUCCESS);
		assert_int_equal(receive_id(reply), MACH_NOTIFY_SEND_ONCE);
	}
	assert_kr(mach_port_mod_refs(mach_task_self(), reply, MACH_PORT_RIGHT_RECEIVE, -1),
	    KERN_SUCCESS);
	assert_attrs(get_attrs(m->ctl), TRUE, FALSE, MEMORY_OBJECT_COPY_DELAY);
	/* may_cache is still FALSE: the last unmapping terminates. */
	unmap(a, 1);
	MVM_MGR_EXPECT(m, "terminate");
	mvm_mgr_stop(m);
	QUIESCENT();
}

/* ---- 2. caching ----------------------------------------------------------------------------- */

/* may_cache TRUE: the last unmapping keeps the object and its pages (no terminate, no
 * return); a new vm_map sends no init and finds the pages, dirty data included, without a
 * data_request. Turning may_cache off then returns the dirty page, terminates, and only
 * then answers change_completed. */
static void
may_cache_keeps_pages(void **state)
{
	struct init_script s = { .may_cache = TRUE, .strategy = MEMORY_OBJECT_COPY_DELAY };
	struct mvm_mgr *m;
	volatile unsigned char *p;
	vm_address_t a;
	struct mvm_vm_object_stats st;

	(void)state;
	mvm_test_require_uffd();
	m = start_mgr(&s);
	a = map_pages(m, 2);
	p = (volatile unsigned char *)a;
	assert_int_equal(p[0], mvm_mgr_pattern(0));
	p[PG + 3] = 0x66;
	MVM_MGR_EXPECT(m, "init page_size=4096", "data_request off=0 len=4096 access=1",
	    "data_request off=4096 len=4096 access=3");
	wait_init(m);
	assert_attrs(s.after, TRUE, TRUE, MEMORY_OBJECT_COPY_DELAY);
	unmap(a, 2);
	/* Anything the unmapping sent would come before this completion. */
	lock(m, 0, 2 * PG, MEMORY_OBJECT_RETURN_NONE, FALSE, VM_PROT_NO_CHANGE, m->object);
	MVM_MGR_EXPECT(m, "lock_completed off=0 len=8192");
	st = stats(m);
	assert_int_equal(st.mappings, 0);
	assert_int_equal(st.resident, 2);
	assert_int_equal(st.dirty, 1);
	assert_int_equal(m->terminated, 0);
	/* Mapped again: the same cache object, no init, no data_request. */
	a = map_pages(m, 2);
	p = (volatile unsigned char *)a;
	assert_int_equal(p[0], mvm_mgr_pattern(0));
	assert_int_equal(p[PG + 3], 0x66);
	assert_int_equal(p[PG + 4], mvm_mgr_pattern(PG + 4));
	lock(m, 0, 2 * PG, MEMORY_OBJECT_RETURN_NONE, FALSE, VM_PROT_NO_CHANGE, m->object);
	MVM_MGR_EXPECT(m, "lock_completed off=0 len=8192");
	assert_int_equal(stats(m).data_requests, 2);
	unmap(a, 2);
	assert_kr(memory_object_change_attributes(m->ctl, FALSE, MEMORY_OBJECT_COPY_DELAY,
	    m->object), KERN_SUCCESS);
	MVM_MGR_EXPECT(m, "data_return off=4096 len=4096 dirty=1 kcopy=0", "terminate",
	    "change_completed may_cache=0 strategy=2");
	assert_int_equal(m->store[1][3], 0x66);
	assert_int_equal(m->store[1][4], mvm_mgr_pattern(PG + 4));
	{
		struct mvm_vm_object_stats gone;

		assert_kr(mvm_vm_object_stats(m->object, &gone), KERN_INVALID_NAME);
	}
	mvm_mgr_stop(m);
	QUIESCENT();
}

/* Turning may_cache off on a cached object that is still mapped changes only the
 * attribute; the last unmapping then terminates as usual. A precious page comes back at
 * termination too. */
static void
uncache_while_mapped(void **state)
{
	struct init_script s = { .may_cache = TRUE, .strategy = MEMORY_OBJECT_COPY_DELAY };
	struct mvm_mgr *m;
	volatile unsigned char *p;
	vm_address_t a;

	(void)state;
	mvm_test_require_uffd();
	m = start_mgr(&s);
	m->supply_precious = TRUE;
	a = map_pages(m, 3);
	p = (volatile unsigned char *)a;
	p[1] = 0x71;
	assert_int_equal(p[2 * PG], mvm_mgr_pattern(2 * PG));
	MVM_MGR_EXPECT(m, "init page_size=4096", "data_request off=0 len=4096 access=3",
	    "data_request off=8192 len=4096 access=1");
	wait_init(m);
	assert_kr(memory_object_change_attributes(m->ctl, FALSE, MEMORY_OBJECT_COPY_DELAY,
	    m->object), KERN_SUCCESS);
	MVM_MGR_EXPECT(m, "change_completed may_cache=0 strategy=2");
	assert_attrs(get_attrs(m->ctl), TRUE, FALSE, MEMORY_OBJECT_COPY_DELAY);
	assert_int_equal(stats(m).resident, 2);
	unmap(a, 3);
	MVM_MGR_EXPECT(m, "data_return off=0 len=4096 dirty=1 kcopy=0",
	    "data_return off=8192 len=4096 dirty=0 kcopy=0", "terminate");
	assert_int_equal(m->store[0][1], 0x71);
	mvm_mgr_stop(m);
	QUIESCENT();
}

/* ---- 3. termination -------------------------------------------------------------------------- */

static unsigned char
term_byte(size_t pg, size_t i)
{
	return (unsigned char)(pg * 131 + i * 17 + (i >> 8) * 3 + 5);
}

static uint32_t
fnv1a(const unsigned char *b, size_t n)
{
	uint32_t h = 2166136261u;

	for (size_t i = 0; i < n; i++)
		h = (h ^ b[i]) * 16777619u;
	return h;
}

/* 40 pages written in full (asked for in clusters of 8) and two only read: the last
 * unmapping returns exactly the 40 (32 + 8, kernel_copy FALSE) before terminate, and the
 * store then holds what was written. */
static void
terminate_returns_dirty_pages(void **state)
{
	enum { N = 40 };
	static unsigned char want[N][PG];
	struct mvm_mgr *m;
	unsigned char *p;
	vm_address_t a;
	uint32_t sums[N];

	(void)state;
	mvm_test_require_uffd();
	m = mvm_mgr_start();
	a = map_pages(m, N + 2);
	MVM_MGR_EXPECT(m, "init page_size=4096");
	assert_kr(mvm_vm_object_set_cluster(m->object, 8), KERN_SUCCESS);
	p = (unsigned char *)a;
	for (size_t pg = 0; pg < N; pg++) {
		for (size_t i = 0; i < PG; i++)
			want[pg][i] = term_byte(pg, i);
		memcpy(p + pg * PG, want[pg], PG);
		sums[pg] = fnv1a(want[pg], PG);
	}
	assert_int_equal(((volatile unsigned char *)p)[N * PG + 1], mvm_mgr_pattern(N * PG + 1));
	assert_int_equal(stats(m).dirty, N);
	mvm_mgr_clear(m);
	unmap(a, N + 2);
	MVM_MGR_EXPECT(m, "data_return off=0 len=131072 dirty=1 kcopy=0",
	    "data_return off=131072 len=32768 dirty=1 kcopy=0", "terminate");
	for (size_t pg = 0; pg < N; pg++) {
		assert_int_equal(fnv1a(m->store[pg], PG), sums[pg]);
		assert_memory_equal(m->store[pg], want[pg], PG);
	}
	assert_int_equal(m->store[N][1], mvm_mgr_pattern(N * PG + 1));
	mvm_mgr_stop(m);
	QUIESCENT();
}

/* ---- 4. concurrency ---------------------------------------------------------------------------- */

#define CW_THREADS 4
#define CW_PAGES 16
#define CW_ITER 40

struct cw_writer {
	pthread_t th;
	int id;
	vm_address_t base;
	atomic_bool *stop;
	atomic_ullong rounds;                /* sweeps over all pages, for the main thread */
	unsigned long long count[CW_PAGES];  /* the writer's own count of its increments */
};

/* Each writer owns one 8-byte counter per page (its own cache line) and keeps adding one
 * to each in turn, counting what it did. */
static void *
cw_main(void *arg)
{
	struct cw_writer *w = arg;

	while (!atomic_load_explicit(w->stop, memory_order_relaxed)) {
		for (size_t pg = 0; pg < CW_PAGES; pg++) {
			volatile uint64_t *c = (volatile uint64_t *)(w->base + pg * PG + w->id * 64);

			*c = *c + 1;
			w->count[pg]++;
		}
		atomic_fetch_add_explicit(&w->rounds, 1, memory_order_relaxed);
	}
	return NULL;
}

static unsigned long long
cw_rounds(struct cw_writer *w)
{
	unsigned long long n = 0;

	for (int t = 0; t < CW_THREADS; t++)
		n += atomic_load_explicit(&w[t].rounds, memory_order_relaxed);
	return n;
}

/* Let the writers make progress before the next request (so each one meets writes). */
static void
cw_let_run(struct cw_writer *w)
{
	unsigned long long n = cw_rounds(w);

	for (int i = 0; i < WAIT_MS && cw_rounds(w) < n + CW_THREADS; i++) {
		struct timespec ts = { 0, 1000000 };

		nanosleep(&ts, NULL);
	}
	assert_true(cw_rounds(w) >= n + CW_THREADS);
}

static void
concurrent_writers_no_lost_write(void **state)
{
	static struct cw_writer w[CW_THREADS];
	struct init_script s = { .may_cache = FALSE, .strategy = MEMORY_OBJECT_COPY_DELAY };
	struct mvm_mgr *m;
	atomic_bool stop;
	vm_address_t a;
	int mismatches = 0;

	(void)state;
	mvm_test_require_uffd();
	m = start_mgr(&s);
	a = map_pages(m, CW_PAGES);
	MVM_MGR_EXPECT(m, "init page_size=4096");
	wait_init(m);
	/* The store starts at zero in the writers' counters. */
	for (size_t pg = 0; pg < CW_PAGES; pg++)
		for (int t = 0; t < CW_THREADS; t++)
			memset(&m->store[pg][t * 64], 0, 8);
	atomic_init(&stop, false);
	for (int t = 0; t < CW_THREADS; t++) {
		memset(&w[t], 0, sizeof(w[t]));
		w[t].id = t;
		w[t].base = a;
		w[t].stop = &stop;
		atomic_init(&w[t].rounds, 0);
		assert_int_equal(pthread_create(&w[t].th, NULL, cw_main, &w[t]), 0);
	}
	/* Every writer under way (each has swept all pages once) before the first request. */
	for (int t = 0; t < CW_THREADS; t++)
		for (int i = 0; i < WAIT_MS && atomic_load(&w[t].rounds) == 0; i++) {
			struct timespec ts = { 0, 1000000 };

			nanosleep(&ts, NULL);
		}
	for (int i = 0; i < CW_ITER; i++) {
		cw_let_run(w);
		lock(m, 0, CW_PAGES * PG, MEMORY_OBJECT_RETURN_DIRTY, FALSE, VM_PROT_NO_CHANGE,
		    m->object);
		AWAIT(m, "lock_completed", 1);
		mvm_mgr_clear(m);
		cw_let_run(w);
		lock(m, 0, CW_PAGES * PG, MEMORY_OBJECT_RETURN_ALL, TRUE, VM_PROT_NO_CHANGE,
		    m->object);
		AWAIT(m, "lock_completed", 1);
		mvm_mgr_clear(m);
	}
	atomic_store(&stop, true);
	for (int t = 0; t < CW_THREADS; t++) {
		struct timespec dl;

		clock_gettime(CLOCK_REALTIME, &dl);
		dl.tv_sec += WAIT_MS / 1000;
		if (pthread_timedjoin_np(w[t].th, NULL, &dl) != 0)
			fail_msg("writer %d is still blocked after %d ms", t, WAIT_MS);
	}
	assert_true(stats(m).data_returns >= CW_ITER);
	unmap(a, CW_PAGES);
	AWAIT(m, "terminate", 1);
	for (size_t pg = 0; pg < CW_PAGES; pg++)
		for (int t = 0; t < CW_THREADS; t++) {
			uint64_t got;

			memcpy(&got, &m->store[pg][t * 64], 8);
			if (got != w[t].count[pg]) {
				print_message("page %zu writer %d: store %llu, writer counted %llu\n", pg,
				    t, (unsigned long long)got, w[t].count[pg]);
				mismatches++;
			}
			assert_true(w[t].count[pg] > 0);
		}
	assert_int_equal(mismatches, 0);
	mvm_mgr_stop(m);
	QUIESCENT();
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(attributes_from_manager_thread),
		cmocka_unit_test(attributes_invalid_strategy),
		cmocka_unit_test(may_cache_keeps_pages),
		cmocka_unit_test(uncache_while_mapped),
		cmocka_unit_test(terminate_returns_dirty_pages),
		cmocka_unit_test(concurrent_writers_no_lost_write),
	};

	return cmocka_run_group_tests_name("vm_attr", tests, NULL, NULL);
}
