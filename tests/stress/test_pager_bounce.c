/*
 * tests/stress/test_pager_bounce.c: the pager framework under a bounce stress test,
 * modelled on Linux's selftests/mm/uffd-stress.c.
 *
 * An object of NPAGES pages, served by the faulty pager (no error rules) or by the
 * anonymous pager, is mapped once or twice. NWRITERS writer threads each own one 8-byte
 * slot in every page (slot t at byte offset 8 * t) and repeatedly pick a random page (and
 * a random mapping) and increment their slot, counting every increment in a shadow
 * array in private memory. Meanwhile a control thread makes the pages bounce between
 * the kernel and the pager:
 *   - mvm_pager_sync(wait) and mvm_pager_return(wait) of random ranges;
 *   - mvm_pager_lock(VM_PROT_WRITE) then mvm_pager_lock(VM_PROT_NONE) of a random range
 *     (writers then go through data_unlock), and now and then a read-write lock
 *     (VM_PROT_ALL: the pages are zapped from the mappings) lifted the same way;
 *   - a quiesced phase: flush discards dirty data by definition, so the writers are
 *     parked first; then the whole object is returned (every increment must now be in
 *     the pager's store: checked against the shadow) and flushed, and the writers resume.
 * After a fixed number of control operations the writers stop, the object is synced,
 * and every slot, in the mapping and in the pager's store (mvm_faulty_pager_peek), must
 * equal its initial value plus the shadow count: zero mismatches. Then the whole object
 * is returned once more, and the mapping, re-read from the store, is checked again.
 *
 * Threads that touch mapped memory never call cmocka: failures are recorded and the
 * main thread asserts. Every wait of the test has a timeout (a lost wake-up in the
 * framework makes a writer hang in a fault: the timed join then fails the test).
 *
 * Scale: MVM_STRESS_OPS sets the control operations of each test (default 5000; 1000 in
 * sanitizer builds).
 */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <machvm/pager.h>
#include <machvm/pagers.h>
#include <machvm/vm.h>
#include "mvm_test.h"
#include "mvm_mgr.h"

#define NPAGES 64
#define NWRITERS 4
#define MAXMAPS 2
#define TIMEOUT_S 20          /* generous: only a hang reaches it */

#ifdef MVM_SANITIZER
#define DEFAULT_OPS 1000u
#else
#define DEFAULT_OPS 5000u
#endif

static size_t ps;

static unsigned
total_ops(void)
{
	const char *s = getenv("MVM_STRESS_OPS");
	unsigned long n = s != NULL ? strtoul(s, NULL, 10) : DEFAULT_OPS;

	return n < 10 ? 10 : (unsigned)n;
}

/* ---- failures from other threads --------------------------------------------------------- */

static pthread_mutex_t fail_lock = PTHREAD_MUTEX_INITIALIZER;
static char fail_text[512];
static atomic_uint fail_count;

static void __attribute__((format(printf, 1, 2)))
record_failure(const char *fmt, ...)
{
	va_list ap;

	if (atomic_fetch_add(&fail_count, 1) != 0)
		return;
	pthread_mutex_lock(&fail_lock);
	va_start(ap, fmt);
	vsnprintf(fail_text, sizeof(fail_text), fmt, ap);
	va_end(ap);
	pthread_mutex_unlock(&fail_lock);
}

/* ---- a pause point with timeouts ---------------------------------------------------------- */

/*
 * The control thread asks the writers to park (pause()), each writer parks at its next
 * iteration and waits for resume(); pause() returns once all of them are parked.
 */
struct gate {
	pthread_mutex_t mtx;
	pthread_cond_t cond;
	atomic_bool closing;      /* the writers are asked to park */
	unsigned parked;          /* writers parked now */
	unsigned generation;      /* bumped by each resume */
	unsigned writers;         /* writers still running */
};

static void
deadline(struct timespec *ts)
{
	clock_gettime(CLOCK_REALTIME, ts);
	ts->tv_sec += TIMEOUT_S;
}

/* A writer: park if asked. Returns false on timeout. */
static bool
gate_check(struct gate *g)
{
	struct timespec ts;
	unsigned gen;
	bool ok = true;

	if (!atomic_load(&g->closing))
		return true;
	deadline(&ts);
	pthread_mutex_lock(&g->mtx);
	gen = g->generation;
	g->parked++;
	pthread_cond_broadcast(&g->cond);
	while (g->generation == gen && ok)
		ok = pthread_cond_timedwait(&g->cond, &g->mtx, &ts) != ETIMEDOUT;
	g->parked--;
	pthread_cond_broadcast(&g->cond);
	pthread_mutex_unlock(&g->mtx);
	return ok;
}

/* A writer leaves for good (counts as parked from then on). */
static void
gate_leave(struct gate *g)
{
	pthread_mutex_lock(&g->mtx);
	g->writers--;
	pthread_cond_broadcast(&g->cond);
	pthread_mutex_unlock(&g->mtx);
}

/* The control thread: park every writer. Returns false on timeout. */
static bool
gate_pause(struct gate *g)
{
	struct timespec ts;
	bool ok = true;

	deadline(&ts);
	atomic_store(&g->closing, true);
	pthread_mutex_lock(&g->mtx);
	while (g->parked < g->writers && ok)
		ok = pthread_cond_timedwait(&g->cond, &g->mtx, &ts) != ETIMEDOUT;
	pthread_mutex_unlock(&g->mtx);
	return ok;
}

/* The control thread: let the writers go, and wait until each has left the gate (so
 * that the next pause cannot count a writer that is still on its way out). Returns false
 * on timeout. */
static bool
gate_resume(struct gate *g)
{
	struct timespec ts;
	bool ok = true;

	deadline(&ts);
	pthread_mutex_lock(&g->mtx);
	atomic_store(&g->closing, false);
	g->generation++;
	pthread_cond_broadcast(&g->cond);
	while (g->parked > 0 && ok)
		ok = pthread_cond_timedwait(&g->cond, &g->mtx, &ts) != ETIMEDOUT;
	pthread_mutex_unlock(&g->mtx);
	return ok;
}

/* ---- the run ------------------------------------------------------------------------------ */

struct run {
	struct mvm_pager *pager;
	mach_port_t port;
	bool faulty;                          /* the store can be peeked */
	unsigned nmaps;
	volatile unsigned char *map[MAXMAPS];
	uint64_t initial[NWRITERS][NPAGES];   /* slot values before the run */
	uint64_t shadow[NWRITERS][NPAGES];    /* increments, written by writer t only */
	uint64_t incs[NWRITERS];
	atomic_bool stop;
	struct gate gate;
	unsigned ops;
	/* What the control thread did. */
	unsigned n_sync, n_return, n_lock, n_lock_rw, n_flush, store_checks;
};

struct writer_arg {
	struct run *r;
	unsigned id;
};

static inline uint32_t
xorshift(uint32_t *s)
{
	uint32_t x = *s;

	x ^= x << 13;
	x ^= x >> 17;
	x ^= x << 5;
	return *s = x;
}

static volatile uint64_t *
slot(struct run *r, unsigned map, unsigned t, unsigned pg)
{
	return (volatile uint64_t *)(r->map[map] + pg * ps + t * sizeof(uint64_t));
}

static void *
writer_main(void *p)
{
	struct writer_arg *a = p;
	struct run *r = a->r;
	uint32_t seed = 0x9e3779b9u * (a->id + 1);
	uint64_t n = 0;

	while (!atomic_load_explicit(&r->stop, memory_order_relaxed)) {
		unsigned pg = xorshift(&seed) % NPAGES;
		unsigned m = r->nmaps > 1 ? xorshift(&seed) % r->nmaps : 0;
		volatile uint64_t *s = slot(r, m, a->id, pg);

		*s = *s + 1;
		r->shadow[a->id][pg]++;
		n++;
		if (!gate_check(&r->gate)) {
			record_failure("writer %u: not resumed within %d s", a->id, TIMEOUT_S);
			break;
		}
	}
	r->incs[a->id] = n;
	gate_leave(&r->gate);
	return NULL;
}

/* Compare the pager's store with initial + shadow; count mismatches (writers parked). */
static unsigned
check_store(struct run *r, const char *when)
{
	static unsigned char page[65536];
	unsigned bad = 0;

	if (!r->faulty)
		return 0;
	for (unsigned pg = 0; pg < NPAGES; pg++) {
		kern_return_t kr = mvm_faulty_pager_peek(r->pager, pg * ps, page, ps);

		if (kr != KERN_SUCCESS) {
			record_failure("%s: peek of page %u: %s", when, pg, mvm_errname(kr));
			return 1;
		}
		for (unsigned t = 0; t < NWRITERS; t++) {
			uint64_t v, want = r->initial[t][pg] + r->shadow[t][pg];

			memcpy(&v, page + t * sizeof(v), sizeof(v));
			if (v != want) {
				if (bad == 0)
					record_failure("%s: store page %u slot %u holds %llu, expected %llu",
					    when, pg, t, (unsigned long long)v, (unsigned long long)want);
				bad++;
			}
		}
	}
	return bad;
}

/* A random range of whole pages: [*off, *off + *len). */
static void
random_range(uint32_t *seed, vm_offset_t *off, vm_size_t *len)
{
	unsigned first = xorshift(seed) % NPAGES;
	unsigned n = 1 + xorshift(seed) % (NPAGES - first);

	*off = first * ps;
	*len = n * ps;
}

static void
op_failed(const char *what, kern_return_t kr)
{
	record_failure("control: %s returned %s (0x%x)", what, mvm_errname(kr), (unsigned)kr);
}

static void *
control_main(void *p)
{
	struct run *r = p;
	uint32_t seed = 12345;
	kern_return_t kr;

	for (unsigned i = 0; i < r->ops && atomic_load(&fail_count) == 0; i++) {
		vm_offset_t off;
		vm_size_t len;
		unsigned what = xorshift(&seed) % 16;

		random_range(&seed, &off, &len);
		if (what < 5) {
			if ((kr = mvm_pager_sync(r->pager, off, len, TRUE)) != KERN_SUCCESS)
				op_failed("mvm_pager_sync", kr);
			r->n_sync++;
		} else if (what < 10) {
			if ((kr = mvm_pager_return(r->pager, off, len, TRUE)) != KERN_SUCCESS)
				op_failed("mvm_pager_return", kr);
			r->n_return++;
		} else if (what < 13) {
			if ((kr = mvm_pager_lock(r->pager, off, len, VM_PROT_WRITE, TRUE)) != KERN_SUCCESS ||
			    (kr = mvm_pager_lock(r->pager, off, len, VM_PROT_NONE, TRUE)) != KERN_SUCCESS)
				op_failed("mvm_pager_lock", kr);
			r->n_lock++;
		} else if (what < 14) {
			if ((kr = mvm_pager_lock(r->pager, off, len, VM_PROT_ALL, TRUE)) != KERN_SUCCESS ||
			    (kr = mvm_pager_lock(r->pager, off, len, VM_PROT_NONE, TRUE)) != KERN_SUCCESS)
				op_failed("mvm_pager_lock(VM_PROT_ALL)", kr);
			r->n_lock_rw++;
		} else {
			/* Flush discards dirty data: only with the writers parked, after a return. */
			if (!gate_pause(&r->gate)) {
				record_failure("control: writers did not park within %d s", TIMEOUT_S);
				(void)gate_resume(&r->gate);
				break;
			}
			if ((kr = mvm_pager_return(r->pager, 0, 0, TRUE)) != KERN_SUCCESS)
				op_failed("mvm_pager_return(whole object)", kr);
			(void)check_store(r, "after a whole-object return");
			r->store_checks += r->faulty;
			if ((kr = mvm_pager_flush(r->pager, 0, 0, TRUE)) != KERN_SUCCESS)
				op_failed("mvm_pager_flush", kr);
			r->n_flush++;
			if (!gate_resume(&r->gate)) {
				record_failure("control: writers did not resume within %d s", TIMEOUT_S);
				break;
			}
		}
	}
	return NULL;
}

static bool
timed_join(pthread_t t)
{
	struct timespec ts;

	deadline(&ts);
	return pthread_timedjoin_np(t, NULL, &ts) == 0;
}

/* Count mapping slots that differ from initial + shadow (through mapping m). */
static unsigned
check_mapping(struct run *r, unsigned m, char *first, size_t flen)
{
	unsigned bad = 0;

	for (unsigned pg = 0; pg < NPAGES; pg++)
		for (unsigned t = 0; t < NWRITERS; t++) {
			uint64_t v = *slot(r, m, t, pg), want = r->initial[t][pg] + r->shadow[t][pg];

			if (v != want) {
				if (bad == 0)
					snprintf(first, flen, "mapping %u page %u slot %u holds %llu, expected %llu",
					    m, pg, t, (unsigned long long)v, (unsigned long long)want);
				bad++;
			}
		}
	return bad;
}

static void
bounce(bool faulty, unsigned nmaps)
{
	static struct run run;
	struct run *r = &run;
	struct writer_arg wa[NWRITERS];
	pthread_t writers[NWRITERS], control;
	struct mvm_pager_stats st;
	char why[160];
	uint64_t total = 0;
	unsigned bad;

	mvm_test_require_uffd();
	ps = (size_t)sysconf(_SC_PAGESIZE);
	memset(r, 0, sizeof(*r));
	atomic_store(&fail_count, 0);
	fail_text[0] = '\0';
	pthread_mutex_init(&r->gate.mtx, NULL);
	pthread_cond_init(&r->gate.cond, NULL);
	r->gate.writers = NWRITERS;
	r->faulty = faulty;
	r->nmaps = nmaps;
	r->ops = total_ops();
	if (faulty)
		assert_kr(mvm_faulty_pager_create(NPAGES * ps, NULL, &r->pager, &r->port), KERN_SUCCESS);
	else
		assert_kr(mvm_anon_pager_create(NPAGES * ps, NULL, NULL, &r->pager, &r->port),
		    KERN_SUCCESS);
	for (unsigned m = 0; m < nmaps; m++) {
		vm_address_t a = 0;

		assert_kr(vm_map(mach_task_self(), &a, NPAGES * ps, 0, TRUE, r->port, 0, FALSE,
		    VM_PROT_ALL, VM_PROT_ALL, VM_INHERIT_NONE), KERN_SUCCESS);
		r->map[m] = (volatile unsigned char *)a;
	}
	/* Requests of several pages too: the bounce then splits and merges clusters. */
	assert_kr(mvm_vm_object_set_cluster(r->port, 4), KERN_SUCCESS);
	for (unsigned pg = 0; pg < NPAGES; pg++)
		for (unsigned t = 0; t < NWRITERS; t++)
			r->initial[t][pg] = *slot(r, 0, t, pg);
	if (faulty) {
		/* The faulty pager's pattern, as read through the mapping. */
		unsigned char b = (unsigned char)((NPAGES - 1) * 7 + 8);

		assert_int_equal(*(r->map[0] + (NPAGES - 1) * ps + 8), b);
	}

	for (unsigned t = 0; t < NWRITERS; t++) {
		wa[t] = (struct writer_arg){ r, t };
		assert_int_equal(pthread_create(&writers[t], NULL, writer_main, &wa[t]), 0);
	}
	assert_int_equal(pthread_create(&control, NULL, control_main, r), 0);
	assert_true(timed_join(control));
	atomic_store(&r->stop, true);
	for (unsigned t = 0; t < NWRITERS; t++)
		if (!timed_join(writers[t]))
			fail_msg("writer %u did not stop within %d s (a fault was never resolved?)", t,
			    TIMEOUT_S);
	if (atomic_load(&fail_count) != 0)
		fail_msg("%s", fail_text);
	for (unsigned t = 0; t < NWRITERS; t++)
		total += r->incs[t];
	print_message("%s pager, %u mapping(s): %llu increments; %u sync, %u return, %u lock, "
	    "%u read-write lock, %u flush (%u store checks)\n", faulty ? "faulty" : "anonymous",
	    nmaps, (unsigned long long)total, r->n_sync, r->n_return, r->n_lock, r->n_lock_rw,
	    r->n_flush, r->store_checks);
	assert_true(total > 0);

	/* Everything back in the store, the kernel keeping its copies. */
	assert_kr(mvm_pager_sync(r->pager, 0, 0, TRUE), KERN_SUCCESS);
	for (unsigned m = 0; m < nmaps; m++) {
		bad = check_mapping(r, m, why, sizeof(why));
		if (bad != 0)
			fail_msg("%u mismatches after the run; first: %s", bad, why);
	}
	bad = check_store(r, "after the final sync");
	if (bad != 0) {
		struct mvm_vm_object_stats vs;

		(void)mvm_vm_object_stats(r->port, &vs);
		fail_msg("%u store mismatches; first: %s (pages still dirty in the kernel after the "
		    "sync: %llu)", bad, fail_text, (unsigned long long)vs.dirty);
	}
	/* Returned and read back: the mapping now shows what the store holds. */
	assert_kr(mvm_pager_return(r->pager, 0, 0, TRUE), KERN_SUCCESS);
	for (unsigned m = 0; m < nmaps; m++) {
		bad = check_mapping(r, m, why, sizeof(why));
		if (bad != 0)
			fail_msg("%u mismatches after a return and read-back; first: %s", bad, why);
	}
	assert_kr(mvm_pager_stats(r->pager, &st), KERN_SUCCESS);
	assert_int_equal(st.read_errors, 0);
	assert_int_equal(st.write_errors, 0);
	assert_int_equal(st.unlock_refusals, 0);
	assert_true(st.pages_written > 0);
	assert_int_equal(st.kernels, 1);
	for (unsigned pg = 0; pg < NPAGES; pg++)
		assert_kr(mvm_pager_get_error(r->pager, pg * ps), KERN_SUCCESS);

	for (unsigned m = 0; m < nmaps; m++)
		assert_kr(vm_deallocate(mach_task_self(), (vm_address_t)r->map[m], NPAGES * ps),
		    KERN_SUCCESS);
	assert_kr(mvm_pager_shutdown(r->pager), KERN_SUCCESS);
	pthread_cond_destroy(&r->gate.cond);
	pthread_mutex_destroy(&r->gate.mtx);
	MVM_TEST_QUIESCENT();
}

static void
bounce_faulty(void **state)
{
	(void)state;
	bounce(true, 1);
}

static void
bounce_faulty_two_mappings(void **state)
{
	(void)state;
	bounce(true, 2);
}

static void
bounce_anon(void **state)
{
	(void)state;
	bounce(false, 1);
}

static void
bounce_anon_two_mappings(void **state)
{
	(void)state;
	bounce(false, 2);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(bounce_faulty),
		cmocka_unit_test(bounce_faulty_two_mappings),
		cmocka_unit_test(bounce_anon),
		cmocka_unit_test(bounce_anon_two_mappings),
	};

	return cmocka_run_group_tests_name("pager_bounce", tests, NULL, NULL);
}
