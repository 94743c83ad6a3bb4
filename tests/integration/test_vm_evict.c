/*
 * tests/integration/test_vm_evict.c: the kernel's resident limit and its eviction
 * (mvm_vm_set_resident_limit, MACHVM_RESIDENT_LIMIT, mvm_vm_stats).
 *
 * Against the scripted manager, message by message: clean pages are dropped without a
 * data_return and asked for again when touched; dirty pages go back with data_return
 * (dirty=1, kernel_copy=0) before the memory is freed, and come back with what was
 * written; precious clean pages go back with dirty=0; the clock gives a second chance:
 * a page used since the hand last cleared it survives a scan that takes an unused one
 * placed after it (plain FIFO would take the used one); pages that faults wait for are
 * skipped; a victim that cannot be read or freed (injected failures) stays, and no
 * write is lost. Against the real pagers
 * (anonymous and file): four times the limit written by two threads and read back with
 * checksums, twice, the resident count never beyond the limit plus one fault's cluster.
 * And the environment variable, read when the kernel starts (main() sets it).
 *
 * Each scripted test waits for the kernel's eviction counter after each touch (the
 * control thread evicts after it has woken the faulting thread), so the manager's log
 * has one exact order. Touchers (threads) make every access that may block; the main
 * thread touches memory only in the pager tests, where every access is served.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <machvm/memory_object.h>
#include <machvm/pager.h>
#include <machvm/sys.h>
#include <machvm/pagers.h>
#include <machvm/vm.h>
#include "mvm_test.h"
#include "mvm_mgr.h"

#include "mvm_vmtest.h"

#define ENV_LIMIT "3M"

static struct mvm_vm_stats
kst(void)
{
	struct mvm_vm_stats st;

	assert_kr(mvm_vm_stats(&st), KERN_SUCCESS);
	return st;
}

/* Wait until the kernel has evicted n pages since base (and not more). */
static void
wait_evictions_(uint64_t base, uint64_t n, const char *file, int line)
{
	for (int i = 0; i < TMO && kst().evictions - base < n; i++)
		sleep_ms(1);
	if (kst().evictions - base != n)
		fail_msg("%s:%d: %llu pages evicted, expected %llu", file, line,
		    (unsigned long long)(kst().evictions - base), (unsigned long long)n);
}
#define wait_evictions(base, n) wait_evictions_((base), (n), __FILE__, __LINE__)

static vm_address_t
map_object(mach_port_t object, vm_size_t size)
{
	vm_address_t a = 0;

	assert_kr(vm_map(mach_task_self(), &a, size, 0, TRUE, object, 0, FALSE, VM_PROT_ALL,
	    VM_PROT_ALL, VM_INHERIT_NONE), KERN_SUCCESS);
	return a;
}

/* Read one byte at a in a toucher; returns it. */
static unsigned char
touch_read(vm_address_t a)
{
	struct toucher t;

	touch_start(&t, a, false, 0);
	assert_touch_done(&t);
	return t.val;
}

static void
touch_write(vm_address_t a, unsigned char v)
{
	struct toucher t;

	touch_start(&t, a, true, v);
	assert_touch_done(&t);
}

/* ---- 1. the limit itself ----------------------------------------------------------------- */

static void
limit_from_environment_and_calls(void **state)
{
	struct mvm_vm_stats st;

	(void)state;
	test_begin();
	/* main() set MACHVM_RESIDENT_LIMIT=3M before the kernel started. */
	assert_int_equal(mvm_vm_get_resident_limit(), 3u << 20);
	st = kst();
	assert_int_equal(st.resident_limit, (3u << 20) / PG);
	assert_int_equal(st.resident, 0);
	/* Rounded up to whole pages; 0 is no limit. */
	assert_kr(mvm_vm_set_resident_limit(1), KERN_SUCCESS);
	assert_int_equal(mvm_vm_get_resident_limit(), PG);
	assert_kr(mvm_vm_set_resident_limit(PG + 1), KERN_SUCCESS);
	assert_int_equal(mvm_vm_get_resident_limit(), 2 * PG);
	assert_int_equal(kst().resident_limit, 2);
	assert_kr(mvm_vm_set_resident_limit(0), KERN_SUCCESS);
	assert_int_equal(mvm_vm_get_resident_limit(), 0);
	assert_kr(mvm_vm_stats(NULL), KERN_INVALID_ARGUMENT);
	QUIESCENT();
}

/* ---- 2. what eviction sends, against the scripted manager ---------------------------- */

static void
clean_pages_dropped(void **state)
{
	struct mvm_mgr *m;
	vm_address_t a;
	uint64_t base;
	struct mvm_vm_object_stats st;
	unsigned char page[PG];
	struct toucher t;

	(void)state;
	test_begin();
	m = mgr_start();
	a = map_object(m->object, 8 * PG);
	base = kst().evictions;
	assert_kr(mvm_vm_set_resident_limit(4 * PG), KERN_SUCCESS);
	for (size_t pg = 0; pg < 8; pg++) {
		assert_int_equal(touch_read(a + pg * PG + pg), mvm_mgr_pattern(pg * PG + pg));
		wait_evictions(base, pg < 4 ? 0 : pg - 3);
		assert_true(kst().resident <= 4);
	}
	/* The oldest went first (every page was used once), and nothing went back. */
	MVM_MGR_EXPECT(m, "init page_size=4096", "data_request off=0 len=4096 access=1",
	    "data_request off=4096 len=4096 access=1", "data_request off=8192 len=4096 access=1",
	    "data_request off=12288 len=4096 access=1", "data_request off=16384 len=4096 access=1",
	    "data_request off=20480 len=4096 access=1", "data_request off=24576 len=4096 access=1",
	    "data_request off=28672 len=4096 access=1");
	st = stats(m->object);
	assert_int_equal(st.evictions, 4);
	assert_int_equal(st.evict_returns, 0);
	assert_int_equal(st.data_returns, 0);
	assert_int_equal(st.resident, 4);
	assert_true(kst().resident_peak <= 5);
	/* An evicted page is asked for again, whole. */
	touch_page_start(&t, a, page);
	assert_touch_done(&t);
	for (size_t i = 0; i < PG; i++)
		assert_int_equal(page[i], mvm_mgr_pattern(i));
	wait_evictions(base, 5);
	MVM_MGR_EXPECT(m, "data_request off=0 len=4096 access=1");
	assert_kr(mvm_vm_set_resident_limit(0), KERN_SUCCESS);
	assert_kr(vm_deallocate(mach_task_self(), a, 8 * PG), KERN_SUCCESS);
	MVM_MGR_EXPECT(m, "terminate");
	mvm_mgr_stop(m);
	QUIESCENT();
}

static void
dirty_pages_returned(void **state)
{
	struct mvm_mgr *m;
	vm_address_t a;
	uint64_t base;
	struct mvm_vm_object_stats st;

	(void)state;
	test_begin();
	m = mgr_start();
	a = map_object(m->object, 8 * PG);
	base = kst().evictions;
	assert_kr(mvm_vm_set_resident_limit(4 * PG), KERN_SUCCESS);
	for (size_t pg = 0; pg < 8; pg++) {
		touch_write(a + pg * PG + 100, (unsigned char)(0xa0 + pg));
		wait_evictions(base, pg < 4 ? 0 : pg - 3);
	}
	/* Each victim went back, dirty, without a kernel copy, before the next request. */
	MVM_MGR_EXPECT(m, "init page_size=4096", "data_request off=0 len=4096 access=3",
	    "data_request off=4096 len=4096 access=3", "data_request off=8192 len=4096 access=3",
	    "data_request off=12288 len=4096 access=3", "data_request off=16384 len=4096 access=3",
	    "data_return off=0 len=4096 dirty=1 kcopy=0",
	    "data_request off=20480 len=4096 access=3",
	    "data_return off=4096 len=4096 dirty=1 kcopy=0",
	    "data_request off=24576 len=4096 access=3",
	    "data_return off=8192 len=4096 dirty=1 kcopy=0",
	    "data_request off=28672 len=4096 access=3",
	    "data_return off=12288 len=4096 dirty=1 kcopy=0");
	for (size_t pg = 0; pg < 4; pg++) {
		assert_int_equal(m->store[pg][100], 0xa0 + pg);
		assert_int_equal(m->store[pg][101], mvm_mgr_pattern(pg * PG + 101));
	}
	st = stats(m->object);
	assert_int_equal(st.evictions, 4);
	assert_int_equal(st.evict_returns, 4);
	assert_int_equal(st.dirty, 4);
	/* What was written comes back through the manager. */
	assert_int_equal(touch_read(a + 2 * PG + 100), 0xa2);
	wait_evictions(base, 5);
	assert_int_equal(mvm_mgr_count(m, "data_request off=8192 len=4096 access=1"), 1);
	mvm_mgr_clear(m);
	assert_kr(mvm_vm_set_resident_limit(0), KERN_SUCCESS);
	assert_kr(vm_deallocate(mach_task_self(), a, 8 * PG), KERN_SUCCESS);
	assert_int_equal(mvm_mgr_wait(m, "terminate", 1, TMO), 1);
	/* Nothing was lost: every page's write is in the store. */
	for (size_t pg = 0; pg < 8; pg++)
		assert_int_equal(m->store[pg][100], 0xa0 + pg);
	mvm_mgr_stop(m);
	QUIESCENT();
}

static void
precious_pages_returned(void **state)
{
	struct mvm_mgr *m;
	vm_address_t a;
	uint64_t base, rbase;
	struct mvm_vm_object_stats st;

	(void)state;
	test_begin();
	m = mgr_start();
	m->supply_precious = TRUE;
	a = map_object(m->object, 6 * PG);
	base = kst().evictions;
	rbase = kst().evict_returns;
	assert_kr(mvm_vm_set_resident_limit(4 * PG), KERN_SUCCESS);
	for (size_t pg = 0; pg < 6; pg++) {
		assert_int_equal(touch_read(a + pg * PG + 5), mvm_mgr_pattern(pg * PG + 5));
		wait_evictions(base, pg < 4 ? 0 : pg - 3);
	}
	/* Clean, but precious: the kernel promised to give them back. */
	MVM_MGR_EXPECT(m, "init page_size=4096", "data_request off=0 len=4096 access=1",
	    "data_request off=4096 len=4096 access=1", "data_request off=8192 len=4096 access=1",
	    "data_request off=12288 len=4096 access=1", "data_request off=16384 len=4096 access=1",
	    "data_return off=0 len=4096 dirty=0 kcopy=0",
	    "data_request off=20480 len=4096 access=1",
	    "data_return off=4096 len=4096 dirty=0 kcopy=0");
	st = stats(m->object);
	assert_int_equal(st.evictions, 2);
	assert_int_equal(st.evict_returns, 2);
	assert_int_equal(kst().evict_returns - rbase, 2);
	assert_kr(mvm_vm_set_resident_limit(0), KERN_SUCCESS);
	assert_kr(vm_deallocate(mach_task_self(), a, 6 * PG), KERN_SUCCESS);
	/* The four left are returned at termination, as always for precious pages. */
	MVM_MGR_EXPECT(m, "data_return off=8192 len=16384 dirty=0 kcopy=0", "terminate");
	mvm_mgr_stop(m);
	QUIESCENT();
}

static void
second_chance(void **state)
{
	struct mvm_mgr *m;
	vm_address_t a;
	uint64_t base, faults, clears;

	(void)state;
	test_begin();
	m = mgr_start();
	a = map_object(m->object, 3 * PG);
	base = kst().evictions;
	for (size_t pg = 0; pg < 3; pg++)
		(void)touch_read(a + pg * PG);
	assert_int_equal(stats(m->object).resident, 3);
	MVM_MGR_EXPECT(m, "init page_size=4096", "data_request off=0 len=4096 access=1",
	    "data_request off=4096 len=4096 access=1", "data_request off=8192 len=4096 access=1");
	/* Every page was used: the hand clears all three, then takes the oldest, page 0. */
	clears = kst().ref_clears;
	assert_kr(mvm_vm_set_resident_limit(2 * PG), KERN_SUCCESS);
	assert_int_equal(kst().evictions - base, 1);
	assert_int_equal(kst().ref_clears - clears, 2);
	assert_int_equal(stats(m->object).resident, 2);
	/* Page 1 is used again: zapped, it takes a minor fault that the kernel sees. */
	faults = stats(m->object).faults;
	assert_int_equal(touch_read(a + PG + 9), mvm_mgr_pattern(PG + 9));
	assert_int_equal(stats(m->object).faults, faults + 1);
	assert_int_equal(mgr_nlog(m), 0);
	/* The next scan passes page 1 (used: second chance) and takes page 2 (unused),
	 * though page 1 comes first: FIFO would have taken page 1. */
	assert_kr(mvm_vm_set_resident_limit(PG), KERN_SUCCESS);
	assert_int_equal(kst().evictions - base, 2);
	assert_int_equal(stats(m->object).resident, 1);
	assert_int_equal(touch_read(a + PG + 10), mvm_mgr_pattern(PG + 10));
	assert_int_equal(mgr_nlog(m), 0);      /* page 1 stayed */
	assert_kr(mvm_vm_set_resident_limit(0), KERN_SUCCESS);
	assert_int_equal(touch_read(a + 2 * PG + 11), mvm_mgr_pattern(2 * PG + 11));
	MVM_MGR_EXPECT(m, "data_request off=8192 len=4096 access=1");   /* page 2 went */
	assert_kr(vm_deallocate(mach_task_self(), a, 3 * PG), KERN_SUCCESS);
	MVM_MGR_EXPECT(m, "terminate");
	mvm_mgr_stop(m);
	QUIESCENT();
}

/* A page with a fault waiting (here: for an unlock) is never taken; nor a busy one. */
static void
waiting_pages_skipped(void **state)
{
	struct mvm_mgr *m;
	vm_address_t a;
	uint64_t base;
	struct toucher w;

	(void)state;
	test_begin();
	m = mgr_start();
	m->supply_lock = VM_PROT_WRITE;
	m->manual_unlocks = true;
	a = map_object(m->object, 3 * PG);
	base = kst().evictions;
	for (size_t pg = 0; pg < 3; pg++)
		(void)touch_read(a + pg * PG);
	/* A writer on page 0 waits for the manager's unlock. */
	touch_start(&w, a + 1, true, 0x42);
	assert_int_equal(mvm_mgr_wait(m, "data_unlock", 1, TMO), 1);
	/* Page 0 is skipped, whatever its turn: the two others go. */
	assert_kr(mvm_vm_set_resident_limit(PG), KERN_SUCCESS);
	assert_int_equal(kst().evictions - base, 2);
	assert_int_equal(stats(m->object).resident, 1);
	assert_int_equal(atomic_load(&w.state), T_RUNNING);
	/* The unlock lets it write; the page stayed, so no new request. */
	assert_kr(memory_object_lock_request(mgr_ctl(m, 1), 0, PG, MEMORY_OBJECT_RETURN_NONE,
	    FALSE, VM_PROT_NONE, MACH_PORT_NULL), KERN_SUCCESS);
	assert_touch_done(&w);
	MVM_MGR_EXPECT(m, "init page_size=4096", "data_request off=0 len=4096 access=1",
	    "data_request off=4096 len=4096 access=1", "data_request off=8192 len=4096 access=1",
	    "data_unlock off=0 len=4096 access=2");
	assert_kr(mvm_vm_set_resident_limit(0), KERN_SUCCESS);
	assert_kr(vm_deallocate(mach_task_self(), a, 3 * PG), KERN_SUCCESS);
	MVM_MGR_EXPECT(m, "data_return off=0 len=4096 dirty=1 kcopy=0", "terminate");
	assert_int_equal(m->store[0][1], 0x42);
	mvm_mgr_stop(m);
	QUIESCENT();
}

/* A victim that cannot be read, or punched, stays: nothing is lost. */
static void
failures_keep_pages(void **state)
{
	struct mvm_mgr *m;
	vm_address_t a;
	uint64_t base;
	struct mvm_vm_object_stats st;

	(void)state;
	test_begin();
	m = mgr_start();
	a = map_object(m->object, 4 * PG);
	base = kst().evictions;
	for (size_t pg = 0; pg < 4; pg++)
		touch_write(a + pg * PG + 7, (unsigned char)(0xd0 + pg));
	mvm_mgr_clear(m);
	/* Contents cannot be read: no page goes, nothing is sent. */
	assert_int_equal(mvm_sys_inject(MVM_SYS_PREAD, 1, EIO, 1), 0);
	assert_kr(mvm_vm_set_resident_limit(2 * PG), KERN_SUCCESS);
	mvm_sys_inject_reset();
	st = stats(m->object);
	assert_int_equal(kst().evictions - base, 0);
	assert_int_equal(st.resident, 4);
	assert_int_equal(st.dirty, 4);
	assert_int_equal(st.data_returns, 0);
	assert_int_equal(mgr_nlog(m), 0);
	/* The memfd cannot free them: returned (the manager has the data), kept, clean. */
	assert_kr(mvm_vm_set_resident_limit(0), KERN_SUCCESS);
	assert_int_equal(mvm_sys_inject(MVM_SYS_FALLOCATE, 1, EIO, 1), 0);
	assert_kr(mvm_vm_set_resident_limit(2 * PG), KERN_SUCCESS);
	mvm_sys_inject_reset();
	st = stats(m->object);
	assert_int_equal(kst().evictions - base, 0);
	assert_int_equal(st.resident, 4);
	assert_true(st.data_returns >= 1);
	assert_int_equal(st.dirty, 4 - st.pages_returned);
	assert_int_equal(mvm_mgr_wait(m, "data_return", (int)st.data_returns, TMO),
	    (int)st.data_returns);
	assert_int_equal(mvm_mgr_count(m, "data_request"), 0);
	mvm_mgr_clear(m);
	/* Every write is still there, in memory and, in the end, in the store. */
	assert_kr(mvm_vm_set_resident_limit(0), KERN_SUCCESS);
	for (size_t pg = 0; pg < 4; pg++)
		assert_int_equal(touch_read(a + pg * PG + 7), 0xd0 + pg);
	assert_int_equal(mgr_nlog(m), 0);
	assert_kr(vm_deallocate(mach_task_self(), a, 4 * PG), KERN_SUCCESS);
	assert_int_equal(mvm_mgr_wait(m, "terminate", 1, TMO), 1);
	for (size_t pg = 0; pg < 4; pg++)
		assert_int_equal(m->store[pg][7], 0xd0 + pg);
	mvm_mgr_stop(m);
	QUIESCENT();
}

/* ---- 3. pressure through the real pagers -------------------------------------------------- */

#define LIMIT_PAGES 256
#define OBJ_PAGES (4 * LIMIT_PAGES)
#define WORDS (PG / sizeof(uint64_t))
#define PEAK_MARGIN 64            /* one fault's cluster at most (CLUSTER_MAX) */

static uint64_t
word(size_t pg, size_t i, unsigned round)
{
	return ((uint64_t)pg * 0x9e3779b97f4a7c15ull) ^ ((uint64_t)i * 0xbf58476d1ce4e5b9ull) ^
	    ((uint64_t)round << 56);
}

struct writer {
	pthread_t th;
	volatile uint64_t *base;
	size_t first, n;
	unsigned round;
};

static void *
writer_main(void *arg)
{
	struct writer *w = arg;

	for (size_t pg = w->first; pg < w->first + w->n; pg++)
		for (size_t i = 0; i < WORDS; i++)
			w->base[pg * WORDS + i] = word(pg, i, w->round);
	return NULL;
}

/* Every page holds round's words; returns the pages that do not. */
static size_t
check_all(const volatile uint64_t *base, unsigned round)
{
	size_t bad = 0;

	for (size_t pg = 0; pg < OBJ_PAGES; pg++) {
		uint64_t sum = 0, want = 0;

		for (size_t i = 0; i < WORDS; i++) {
			sum += base[pg * WORDS + i] * (i + 1);
			want += word(pg, i, round) * (i + 1);
		}
		if (sum != want)
			bad++;
	}
	return bad;
}

/* Two threads write halves of the object (each page round's words), then the main
 * thread reads everything back; twice, the second round with a cluster of 16. */
static void
pressure_rounds(mach_port_t obj, vm_address_t a)
{
	struct mvm_vm_stats st;

	for (unsigned round = 1; round <= 2; round++) {
		struct writer w[2];

		if (round == 2)
			assert_kr(mvm_vm_object_set_cluster(obj, 16), KERN_SUCCESS);
		for (int i = 0; i < 2; i++) {
			w[i].base = (volatile uint64_t *)a;
			w[i].first = (size_t)i * OBJ_PAGES / 2;
			w[i].n = OBJ_PAGES / 2;
			w[i].round = round;
			assert_int_equal(pthread_create(&w[i].th, NULL, writer_main, &w[i]), 0);
		}
		for (int i = 0; i < 2; i++)
			pthread_join(w[i].th, NULL);
		assert_int_equal(check_all((const volatile uint64_t *)a, round), 0);
		st = kst();
		print_message("round %u: resident %llu, peak %llu (limit %u), evicted %llu, "
		    "returned %llu\n", round, (unsigned long long)st.resident,
		    (unsigned long long)st.resident_peak, LIMIT_PAGES,
		    (unsigned long long)st.evictions, (unsigned long long)st.evict_returns);
		/* The control thread may still be evicting after the last supply. */
		assert_true(st.resident <= LIMIT_PAGES + PEAK_MARGIN);
		assert_true(st.resident_peak <= LIMIT_PAGES + PEAK_MARGIN);
	}
}

static void
pressure_anon_pager(void **state)
{
	const vm_size_t size = (vm_size_t)OBJ_PAGES * PG;
	struct mvm_pager *p;
	mach_port_t obj;
	vm_address_t a;
	struct mvm_vm_stats before, after;
	struct mvm_vm_object_stats vs;

	(void)state;
	test_begin();
	assert_kr(mvm_anon_pager_create(size, NULL, NULL, &p, &obj), KERN_SUCCESS);
	a = map_object(obj, size);
	before = kst();
	assert_kr(mvm_vm_set_resident_limit((vm_size_t)LIMIT_PAGES * PG), KERN_SUCCESS);
	pressure_rounds(obj, a);
	after = kst();
	vs = stats(obj);
	/* Two rounds of four times the limit: at least 6 limits' worth went, written. */
	assert_true(after.evictions - before.evictions >= 6 * LIMIT_PAGES);
	assert_true(vs.evict_returns >= 6 * LIMIT_PAGES);
	assert_true(vs.evictions >= vs.evict_returns);
	assert_kr(mvm_vm_set_resident_limit(0), KERN_SUCCESS);
	assert_kr(vm_deallocate(mach_task_self(), a, size), KERN_SUCCESS);
	assert_kr(mvm_pager_shutdown(p), KERN_SUCCESS);
	MVM_TEST_QUIESCENT();
}

static void
pressure_file_pager(void **state)
{
	const vm_size_t size = (vm_size_t)OBJ_PAGES * PG;
	char path[] = "/tmp/mvm-test-evict-XXXXXX";
	struct mvm_pager *p;
	mach_port_t obj;
	vm_address_t a;
	uint64_t *buf;
	int fd;

	(void)state;
	test_begin();
	fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, (off_t)size), 0);
	assert_kr(mvm_file_pager_create(path, 0, NULL, &p, &obj), KERN_SUCCESS);
	a = map_object(obj, size);
	assert_kr(mvm_vm_set_resident_limit((vm_size_t)LIMIT_PAGES * PG), KERN_SUCCESS);
	pressure_rounds(obj, a);
	assert_true(stats(obj).evict_returns >= 6 * LIMIT_PAGES);
	assert_kr(mvm_vm_set_resident_limit(0), KERN_SUCCESS);
	assert_kr(vm_deallocate(mach_task_self(), a, size), KERN_SUCCESS);
	assert_kr(mvm_pager_shutdown(p), KERN_SUCCESS);
	/* The file holds the last round, every page. */
	buf = malloc(size);
	assert_non_null(buf);
	assert_int_equal(pread(fd, buf, size, 0), (ssize_t)size);
	assert_int_equal(check_all(buf, 2), 0);
	free(buf);
	close(fd);
	unlink(path);
	MVM_TEST_QUIESCENT();
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(limit_from_environment_and_calls),
		cmocka_unit_test(clean_pages_dropped),
		cmocka_unit_test(dirty_pages_returned),
		cmocka_unit_test(precious_pages_returned),
		cmocka_unit_test(second_chance),
		cmocka_unit_test(waiting_pages_skipped),
		cmocka_unit_test(failures_keep_pages),
		cmocka_unit_test(pressure_anon_pager),
		cmocka_unit_test(pressure_file_pager),
	};

	/* Read when the kernel starts, in mvm_vmtest_main_setup(). */
	setenv("MACHVM_RESIDENT_LIMIT", ENV_LIMIT, 1);
	if (!mvm_vmtest_main_setup())
		return 1;
	return cmocka_run_group_tests_name("vm_evict", tests, NULL, NULL);
}
