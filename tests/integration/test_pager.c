/*
 * tests/integration/test_pager.c: the pager framework (<machvm/pager.h>) end to end, in
 * one process with the in-process kernel, mostly through the faulty pager, whose store
 * starts as a known pattern and can be read back with mvm_faulty_pager_peek().
 *
 * Covered: every page reads as the store; sync writes back and the kernel keeps its
 * copies; return writes back and drops them; flush discards dirty data (the protocol's
 * definition); a write to a page locked with mvm_pager_lock goes through unlock_page,
 * and a refusal is SIGBUS (BUS_OBJERR) in the writer; a read error reaches only the
 * faulting thread and a later access asks again; a write error is reported by sync and
 * mvm_pager_get_error, the data is kept and served back, and a later sync stores it; a
 * data_request for a page being written waits for the write; a slow write to one object
 * does not hold up faults on another; may_cache keeps an unmapped object; offer_page
 * supplies a page before any fault; helpers on an unmapped object return at once; the
 * synchronous helpers fail inside an op instead of deadlocking; shutdown with dirty pages
 * mapped writes them all and later faults are SIGBUS; several pagers at once; the
 * statistics of the pager and of the kernel agree.
 *
 * Threads that touch mapped memory where it may block or fail never call cmocka: each
 * records what happened in a struct toucher, and the main thread checks after it ended.
 * The main thread itself only touches pages known to be resident, or reads that cannot
 * fail (a failure there would hang the test until CTest's timeout, never pass it).
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
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <machvm/pager.h>
#include <machvm/pagers.h>
#include <machvm/vm.h>
#include "mvm_test.h"
#include "mvm_mgr.h"

#include "mvm_vmtest.h"

/*
 * End of a test: every pager is shut down and every mapping gone. The kernel learns of
 * a dead object port from a notification its control thread serves a moment later, so
 * give it that moment before the quiescence check.
 */
static void
test_end(void)
{
	/* mvm_ipc_quiescent() gives the kernel's threads a moment to finish. */
	MVM_TEST_QUIESCENT();
}

/* ---- pagers and stats -------------------------------------------------------------------- */

/* The faulty pager's initial byte at object offset o. */
static unsigned char
pattern(vm_offset_t o)
{
	return (unsigned char)((o / PG) * 7 + o % PG);
}

static bool
page_has_pattern(const unsigned char *buf, vm_offset_t off)
{
	for (size_t i = 0; i < PG; i++)
		if (buf[i] != pattern(off + i))
			return false;
	return true;
}

static struct mvm_vm_object_stats
vst(mach_port_t object)
{
	struct mvm_vm_object_stats st;

	assert_kr(mvm_vm_object_stats(object, &st), KERN_SUCCESS);
	return st;
}

static struct mvm_pager_stats
pst(struct mvm_pager *p)
{
	struct mvm_pager_stats st;

	assert_kr(mvm_pager_stats(p, &st), KERN_SUCCESS);
	return st;
}

/* Wait (within TMO) until the pager knows n kernels. */
static void
wait_kernels(struct mvm_pager *p, uint64_t n)
{
	for (int i = 0; i < TMO && pst(p).kernels != n; i++)
		sleep_ms(1);
	assert_int_equal(pst(p).kernels, n);
}

static vm_address_t
map(mach_port_t obj, vm_size_t size)
{
	vm_address_t a = 0;

	assert_kr(vm_map(mach_task_self(), &a, size, 0, TRUE, obj, 0, FALSE, VM_PROT_ALL,
	    VM_PROT_ALL, VM_INHERIT_NONE), KERN_SUCCESS);
	return a;
}

static struct mvm_pager *
faulty(vm_size_t size, const struct mvm_pager_attr *attr, mach_port_t *obj)
{
	struct mvm_pager *p = NULL;

	assert_kr(mvm_faulty_pager_create(size, attr, &p, obj), KERN_SUCCESS);
	return p;
}

/* The store's byte at off. */
static unsigned char
peek(struct mvm_pager *p, vm_offset_t off)
{
	unsigned char b = 0;

	assert_kr(mvm_faulty_pager_peek(p, off, &b, 1), KERN_SUCCESS);
	return b;
}

/* ---- 1. reading, sync, return, flush ------------------------------------------------- */

static void
read_every_page(void **state)
{
	enum { N = 16 };
	mach_port_t obj;
	struct mvm_pager *p;
	vm_address_t a;
	struct mvm_pager_stats ps;
	struct mvm_vm_object_stats vs;

	(void)state;
	test_begin();
	p = faulty(N * PG, NULL, &obj);
	assert_int_equal(mvm_pager_port(p), obj);
	a = map(obj, N * PG);
	for (int pg = 0; pg < N; pg++)
		assert_true(page_has_pattern((const unsigned char *)a + pg * PG, pg * PG));
	ps = pst(p);
	vs = vst(obj);
	assert_int_equal(ps.kernels, 1);
	assert_int_equal(ps.requests, N);
	assert_int_equal(ps.pages_read, N);
	assert_int_equal(ps.unavailable, 0);
	assert_int_equal(ps.read_errors, 0);
	assert_int_equal(vs.data_requests, N);
	assert_int_equal(vs.pages_supplied, N);
	assert_int_equal(vs.resident, N);
	assert_int_equal(vs.dirty, 0);
	/* Reading again asks nothing. */
	assert_true(page_has_pattern((const unsigned char *)a + 5 * PG, 5 * PG));
	assert_int_equal(vst(obj).data_requests, N);
	assert_kr(vm_deallocate(mach_task_self(), a, N * PG), KERN_SUCCESS);
	assert_kr(mvm_pager_shutdown(p), KERN_SUCCESS);
	test_end();
}

static void
sync_keeps_copies(void **state)
{
	mach_port_t obj;
	struct mvm_pager *p;
	vm_address_t a;
	volatile unsigned char *m;
	struct mvm_vm_object_stats vs;
	struct mvm_pager_stats ps;

	(void)state;
	test_begin();
	p = faulty(8 * PG, NULL, &obj);
	a = map(obj, 8 * PG);
	m = (volatile unsigned char *)a;
	m[1 * PG + 10] = 0xa1;
	m[3 * PG + 4095] = 0xa3;
	(void)m[5 * PG];                      /* resident, clean */
	assert_int_equal(vst(obj).dirty, 2);
	assert_int_equal(peek(p, 1 * PG + 10), pattern(1 * PG + 10));
	assert_kr(mvm_pager_sync(p, 0, 0, TRUE), KERN_SUCCESS);
	/* The store has the writes, nothing else changed. */
	assert_int_equal(peek(p, 1 * PG + 10), 0xa1);
	assert_int_equal(peek(p, 3 * PG + 4095), 0xa3);
	assert_int_equal(peek(p, 1 * PG + 11), pattern(1 * PG + 11));
	assert_int_equal(peek(p, 5 * PG), pattern(5 * PG));
	ps = pst(p);
	assert_int_equal(ps.pages_written, 2);
	assert_int_equal(ps.write_errors, 0);
	assert_int_equal(ps.lock_requests, 1);
	assert_int_equal(ps.lock_completions, 1);
	/* The kernel keeps its (now clean) copies: reading asks nothing. */
	vs = vst(obj);
	assert_int_equal(vs.dirty, 0);
	assert_int_equal(vs.resident, 3);
	assert_int_equal(vs.data_returns, 2);
	assert_int_equal(m[1 * PG + 10], 0xa1);
	assert_int_equal(m[3 * PG + 4095], 0xa3);
	assert_int_equal(vst(obj).data_requests, 3);
	/* A second sync has nothing to write. */
	assert_kr(mvm_pager_sync(p, 0, 0, TRUE), KERN_SUCCESS);
	assert_int_equal(pst(p).pages_written, 2);
	assert_int_equal(vst(obj).data_returns, 2);
	assert_kr(vm_deallocate(mach_task_self(), a, 8 * PG), KERN_SUCCESS);
	assert_kr(mvm_pager_shutdown(p), KERN_SUCCESS);
	test_end();
}

static void
return_drops_copies(void **state)
{
	mach_port_t obj;
	struct mvm_pager *p;
	vm_address_t a;
	volatile unsigned char *m;
	struct mvm_vm_object_stats vs;

	(void)state;
	test_begin();
	p = faulty(8 * PG, NULL, &obj);
	a = map(obj, 8 * PG);
	m = (volatile unsigned char *)a;
	m[2 * PG + 1] = 0xb2;
	(void)m[4 * PG];
	assert_kr(mvm_pager_return(p, 0, 0, TRUE), KERN_SUCCESS);
	assert_int_equal(peek(p, 2 * PG + 1), 0xb2);
	vs = vst(obj);
	assert_int_equal(vs.resident, 0);
	assert_int_equal(vs.data_returns, 1);     /* the clean page is dropped silently */
	assert_int_equal(vs.data_requests, 2);
	/* The next read sends a new request and gets the data written back. */
	assert_int_equal(m[2 * PG + 1], 0xb2);
	assert_int_equal(m[4 * PG + 3], pattern(4 * PG + 3));
	assert_int_equal(vst(obj).data_requests, 4);
	assert_int_equal(pst(p).requests, 4);
	assert_kr(vm_deallocate(mach_task_self(), a, 8 * PG), KERN_SUCCESS);
	assert_kr(mvm_pager_shutdown(p), KERN_SUCCESS);
	test_end();
}

static void
flush_discards_dirty_data(void **state)
{
	mach_port_t obj;
	struct mvm_pager *p;
	vm_address_t a;
	volatile unsigned char *m;

	(void)state;
	test_begin();
	p = faulty(4 * PG, NULL, &obj);
	a = map(obj, 4 * PG);
	m = (volatile unsigned char *)a;
	m[PG + 100] = 0xc1;
	assert_int_equal(vst(obj).dirty, 1);
	/* Flush is RETURN_NONE + flush: the protocol drops the kernel's copy, dirty or not. */
	assert_kr(mvm_pager_flush(p, 0, 0, TRUE), KERN_SUCCESS);
	assert_int_equal(vst(obj).resident, 0);
	assert_int_equal(vst(obj).data_returns, 0);
	assert_int_equal(pst(p).pages_written, 0);
	assert_int_equal(peek(p, PG + 100), pattern(PG + 100));
	/* The next read shows the store's old data. */
	assert_int_equal(m[PG + 100], pattern(PG + 100));
	assert_int_equal(vst(obj).data_requests, 2);
	assert_kr(vm_deallocate(mach_task_self(), a, 4 * PG), KERN_SUCCESS);
	assert_kr(mvm_pager_shutdown(p), KERN_SUCCESS);
	test_end();
}

/* ---- 2. locks and errors --------------------------------------------------------------- */

static void
lock_then_unlock_page(void **state)
{
	mach_port_t obj;
	struct mvm_pager *p;
	vm_address_t a;
	volatile unsigned char *m;
	struct toucher t;
	struct mvm_pager_stats ps;

	(void)state;
	test_begin();
	p = faulty(8 * PG, NULL, &obj);
	a = map(obj, 8 * PG);
	m = (volatile unsigned char *)a;
	(void)m[2 * PG];
	(void)m[3 * PG];
	assert_kr(mvm_pager_lock(p, 2 * PG, 2 * PG, VM_PROT_WRITE, TRUE), KERN_SUCCESS);
	/* Reads are still allowed. */
	assert_int_equal(m[2 * PG + 7], pattern(2 * PG + 7));

	/* The pager refuses the unlock of page 2: the writer gets SIGBUS. */
	assert_kr(mvm_faulty_pager_rule(p, MVM_FAULTY_UNLOCK, 2 * PG, PG, KERN_PROTECTION_FAILURE,
	    0, 1), KERN_SUCCESS);
	touch_start(&t, a + 2 * PG + 9, true, 0xd2);
	assert_touch_sigbus(&t);
	ps = pst(p);
	assert_int_equal(ps.unlocks, 1);
	assert_int_equal(ps.unlock_refusals, 1);
	assert_int_equal(vst(obj).data_unlocks, 1);
	assert_int_equal(peek(p, 2 * PG + 9), pattern(2 * PG + 9));

	/* Without the rule, page 3's unlock is granted and the write goes through. */
	touch_start(&t, a + 3 * PG + 9, true, 0xd3);
	assert_touch_done(&t);
	assert_int_equal(m[3 * PG + 9], 0xd3);
	ps = pst(p);
	assert_int_equal(ps.unlocks, 2);
	assert_int_equal(ps.unlock_refusals, 1);

	/* The refusal was for that write only: page 2 is writable again (fresh request). */
	touch_start(&t, a + 2 * PG + 9, true, 0xd4);
	assert_touch_done(&t);
	assert_kr(mvm_pager_sync(p, 0, 0, TRUE), KERN_SUCCESS);
	assert_int_equal(peek(p, 3 * PG + 9), 0xd3);
	assert_int_equal(peek(p, 2 * PG + 9), 0xd4);
	assert_kr(vm_deallocate(mach_task_self(), a, 8 * PG), KERN_SUCCESS);
	assert_kr(mvm_pager_shutdown(p), KERN_SUCCESS);
	test_end();
}

/* A read-locked page whose read unlock the pager refuses: the reader gets SIGBUS, and a
 * later read asks again and succeeds. */
static void
read_unlock_refused(void **state)
{
	mach_port_t obj;
	struct mvm_pager *p;
	vm_address_t a;
	volatile unsigned char *m;
	struct toucher t;

	(void)state;
	test_begin();
	p = faulty(4 * PG, NULL, &obj);
	a = map(obj, 4 * PG);
	m = (volatile unsigned char *)a;
	(void)m[PG];
	assert_kr(mvm_pager_lock(p, PG, PG, VM_PROT_ALL, TRUE), KERN_SUCCESS);
	assert_kr(mvm_faulty_pager_rule(p, MVM_FAULTY_UNLOCK, PG, PG, KERN_PROTECTION_FAILURE,
	    0, 1), KERN_SUCCESS);
	touch_start(&t, a + PG + 5, false, 0);
	assert_touch_sigbus(&t);
	assert_int_equal(pst(p).unlock_refusals, 1);
	/* The refusal was for that read only. */
	touch_start(&t, a + PG + 5, false, 0);
	assert_touch_done(&t);
	assert_int_equal(t.val, pattern(PG + 5));
	assert_kr(vm_deallocate(mach_task_self(), a, 4 * PG), KERN_SUCCESS);
	assert_kr(mvm_pager_shutdown(p), KERN_SUCCESS);
	test_end();
}

static void
read_error_reaches_one_thread(void **state)
{
	mach_port_t obj;
	struct mvm_pager *p;
	vm_address_t a;
	struct toucher bad, good, again;

	(void)state;
	test_begin();
	p = faulty(8 * PG, NULL, &obj);
	a = map(obj, 8 * PG);
	/* Page 4's read fails once, slowly, so that the other thread runs meanwhile. */
	assert_kr(mvm_faulty_pager_rule(p, MVM_FAULTY_READ, 4 * PG, PG, KERN_MEMORY_ERROR, 100, 1),
	    KERN_SUCCESS);
	touch_start(&bad, a + 4 * PG + 17, false, 0);
	touch_start(&good, a + 5 * PG + 17, false, 0);
	assert_touch_done(&good);
	assert_int_equal(good.val, pattern(5 * PG + 17));
	assert_touch_sigbus(&bad);
	assert_int_equal(vst(obj).errors, 1);
	assert_int_equal(pst(p).read_errors, 1);
	/* A later access asks again and succeeds. */
	touch_start(&again, a + 4 * PG + 17, false, 0);
	assert_touch_done(&again);
	assert_int_equal(again.val, pattern(4 * PG + 17));
	assert_int_equal(vst(obj).data_requests, 3);
	assert_int_equal(pst(p).requests, 3);
	assert_kr(vm_deallocate(mach_task_self(), a, 8 * PG), KERN_SUCCESS);
	assert_kr(mvm_pager_shutdown(p), KERN_SUCCESS);
	test_end();
}

static void
write_error_keeps_data(void **state)
{
	mach_port_t obj;
	struct mvm_pager *p;
	vm_address_t a;
	volatile unsigned char *m;
	unsigned char page[PG];
	struct toucher t;
	struct mvm_pager_stats ps;

	(void)state;
	test_begin();
	p = faulty(8 * PG, NULL, &obj);
	a = map(obj, 8 * PG);
	m = (volatile unsigned char *)a;
	m[6 * PG + 0] = 0xe0;
	m[6 * PG + 2000] = 0xe1;
	m[1 * PG] = 0xe2;                     /* another page, written fine */
	/* The next two writes of page 6 fail. */
	assert_kr(mvm_faulty_pager_rule(p, MVM_FAULTY_WRITE, 6 * PG, PG, KERN_MEMORY_ERROR, 0, 2),
	    KERN_SUCCESS);
	assert_kr(mvm_pager_sync(p, 0, 0, TRUE), KERN_MEMORY_ERROR);
	assert_kr(mvm_pager_get_error(p, 6 * PG), KERN_MEMORY_ERROR);
	assert_kr(mvm_pager_get_error(p, 6 * PG + 2000), KERN_MEMORY_ERROR);
	assert_kr(mvm_pager_get_error(p, 1 * PG), KERN_SUCCESS);
	assert_int_equal(peek(p, 6 * PG), pattern(6 * PG));
	assert_int_equal(peek(p, 1 * PG), 0xe2);
	ps = pst(p);
	assert_int_equal(ps.write_errors, 1);
	assert_int_equal(ps.pages_written, 1);

	/*
	 * The data is not lost. The kernel kept a clean copy; return drops it and writes the
	 * kept data again, which fails again (the rule's second time) and is reported. Read
	 * again: the written data comes back, served from the copy the framework kept, the
	 * store still being old.
	 */
	assert_kr(mvm_pager_return(p, 6 * PG, PG, TRUE), KERN_MEMORY_ERROR);
	assert_kr(mvm_pager_get_error(p, 6 * PG), KERN_MEMORY_ERROR);
	assert_int_equal(pst(p).write_errors, 2);
	assert_int_equal(vst(obj).resident, 1);
	touch_page_start(&t, a + 6 * PG, page);
	assert_touch_done(&t);
	assert_int_equal(page[0], 0xe0);
	assert_int_equal(page[2000], 0xe1);
	assert_int_equal(page[1], pattern(6 * PG + 1));
	assert_int_equal(peek(p, 6 * PG), pattern(6 * PG));

	/* The rule is used up: the next sync stores the data, though no kernel holds the
	 * page dirty (the framework writes what it kept). */
	assert_int_equal(vst(obj).dirty, 0);
	assert_kr(mvm_pager_sync(p, 0, 0, TRUE), KERN_SUCCESS);
	assert_int_equal(peek(p, 6 * PG), 0xe0);
	assert_int_equal(peek(p, 6 * PG + 2000), 0xe1);
	assert_kr(mvm_pager_get_error(p, 6 * PG), KERN_SUCCESS);
	assert_kr(vm_deallocate(mach_task_self(), a, 8 * PG), KERN_SUCCESS);
	assert_kr(mvm_pager_shutdown(p), KERN_SUCCESS);
	test_end();
}

static void
shutdown_reports_unstored_data(void **state)
{
	mach_port_t obj;
	struct mvm_pager *p;
	vm_address_t a;

	(void)state;
	test_begin();
	p = faulty(4 * PG, NULL, &obj);
	a = map(obj, 4 * PG);
	((volatile unsigned char *)a)[PG] = 0x42;
	/* Every write of page 1 fails from now on. */
	assert_kr(mvm_faulty_pager_rule(p, MVM_FAULTY_WRITE, PG, PG, KERN_MEMORY_ERROR, 0, 0),
	    KERN_SUCCESS);
	assert_kr(mvm_pager_sync(p, 0, 0, TRUE), KERN_MEMORY_ERROR);
	/* The kernel's copy is clean now and only the framework has the data: a sync still
	 * says it is not stored, and so does shutdown, which cannot keep it any longer. */
	assert_int_equal(vst(obj).dirty, 0);
	assert_kr(mvm_pager_sync(p, 0, 0, TRUE), KERN_MEMORY_ERROR);
	assert_int_equal(peek(p, PG), pattern(PG));
	assert_kr(vm_deallocate(mach_task_self(), a, 4 * PG), KERN_SUCCESS);
	assert_kr(mvm_pager_shutdown(p), KERN_MEMORY_ERROR);
	test_end();
}

/* ---- 3. ordering and concurrency -------------------------------------------------------- */

static void
request_waits_for_write(void **state)
{
	mach_port_t obj;
	struct mvm_pager *p;
	vm_address_t a;
	volatile unsigned char *m;
	struct toucher t;
	uint64_t t0, ret0;
	int i;

	(void)state;
	test_begin();
	p = faulty(8 * PG, NULL, &obj);
	a = map(obj, 8 * PG);
	m = (volatile unsigned char *)a;
	m[7 * PG + 70] = 0xf7;
	assert_kr(mvm_faulty_pager_rule(p, MVM_FAULTY_WRITE, 7 * PG, PG, KERN_SUCCESS, 300, 1),
	    KERN_SUCCESS);
	ret0 = vst(obj).data_returns;
	t0 = now_ns();
	assert_kr(mvm_pager_return(p, 7 * PG, PG, FALSE), KERN_SUCCESS);
	/* Once the kernel has sent the page back, it is gone from memory: read it at once. */
	for (i = 0; i < TMO && vst(obj).data_returns == ret0; i++)
		sleep_ms(1);
	assert_int_equal(vst(obj).resident, 0);
	touch_start(&t, a + 7 * PG + 70, false, 0);
	assert_touch_done(&t);
	assert_int_equal(t.val, 0xf7);
	/* The request was answered after the (300 ms) write, from the store it wrote. */
	assert_true(t.t1 - t0 >= 250 * 1000000ull);
	assert_int_equal(peek(p, 7 * PG + 70), 0xf7);
	assert_int_equal(vst(obj).data_requests, 2);
	assert_int_equal(pst(p).pages_written, 1);
	print_message("read during a 300 ms write: %.1f ms after the return\n",
	    (double)(t.t1 - t0) / 1e6);
	assert_kr(vm_deallocate(mach_task_self(), a, 8 * PG), KERN_SUCCESS);
	assert_kr(mvm_pager_shutdown(p), KERN_SUCCESS);
	test_end();
}

static void
slow_write_does_not_block_other_object(void **state)
{
	mach_port_t oa, ob;
	struct mvm_pager *pa, *pb;
	vm_address_t a, b;
	struct toucher t;
	uint64_t t0, took;
	int i;

	(void)state;
	test_begin();
	pa = faulty(4 * PG, NULL, &oa);
	pb = faulty(4 * PG, NULL, &ob);
	a = map(oa, 4 * PG);
	b = map(ob, 4 * PG);
	((volatile unsigned char *)a)[0] = 0x11;
	assert_kr(mvm_faulty_pager_rule(pa, MVM_FAULTY_WRITE, 0, 0, KERN_SUCCESS, 500, 1),
	    KERN_SUCCESS);
	t0 = now_ns();
	assert_kr(mvm_pager_sync(pa, 0, 0, FALSE), KERN_SUCCESS);
	/* Wait until the pager has taken A's data_return (its write is under way). */
	for (i = 0; i < TMO && pst(pa).returns == 0; i++)
		sleep_ms(1);
	assert_int_equal(pst(pa).returns, 1);
	touch_start(&t, b + 2 * PG + 5, false, 0);
	assert_touch_done(&t);
	assert_int_equal(t.val, pattern(2 * PG + 5));
	took = t.t1 - t.t0;
	print_message("fault on B during a 500 ms write to A: %.2f ms\n", (double)took / 1e6);
	assert_true(took < 250 * 1000000ull);
	assert_int_equal(pst(pa).pages_written, 0);  /* A's write still sleeping */
	/* A's write finishes in its own time. */
	assert_kr(mvm_pager_sync(pa, 0, 0, TRUE), KERN_SUCCESS);
	for (i = 0; i < TMO && pst(pa).pages_written == 0; i++)
		sleep_ms(1);
	assert_int_equal(pst(pa).pages_written, 1);
	assert_true(now_ns() - t0 >= 450 * 1000000ull);
	assert_int_equal(peek(pa, 0), 0x11);
	assert_kr(vm_deallocate(mach_task_self(), a, 4 * PG), KERN_SUCCESS);
	assert_kr(vm_deallocate(mach_task_self(), b, 4 * PG), KERN_SUCCESS);
	assert_kr(mvm_pager_shutdown(pa), KERN_SUCCESS);
	assert_kr(mvm_pager_shutdown(pb), KERN_SUCCESS);
	test_end();
}

/* ---- 4. attributes, offers, idle helpers -------------------------------------------------- */

static void
may_cache_keeps_object(void **state)
{
	mach_port_t obj;
	struct mvm_pager *p;
	vm_address_t a;
	struct mvm_vm_object_stats vs;
	struct mvm_pager_stats ps;

	(void)state;
	test_begin();
	p = faulty(4 * PG, NULL, &obj);
	a = map(obj, 4 * PG);
	assert_int_equal(((volatile unsigned char *)a)[PG + 1], pattern(PG + 1));
	assert_kr(mvm_pager_change_attributes(p, TRUE, MEMORY_OBJECT_COPY_DELAY, TRUE),
	    KERN_SUCCESS);
	assert_kr(vm_deallocate(mach_task_self(), a, 4 * PG), KERN_SUCCESS);
	/* Still cached: the kernel keeps the object and its page. */
	vs = vst(obj);
	assert_int_equal(vs.mappings, 0);
	assert_int_equal(vs.resident, 1);
	assert_false(vs.dead);
	ps = pst(p);
	assert_int_equal(ps.kernels, 1);
	assert_int_equal(ps.requests, 1);
	/* Mapped again: no new init, and the page is still there. */
	a = map(obj, 4 * PG);
	assert_int_equal(((volatile unsigned char *)a)[PG + 1], pattern(PG + 1));
	ps = pst(p);
	assert_int_equal(ps.kernels, 1);
	assert_int_equal(ps.requests, 1);
	assert_int_equal(vst(obj).data_requests, 1);
	assert_int_equal(vst(obj).mappings, 1);
	assert_kr(vm_deallocate(mach_task_self(), a, 4 * PG), KERN_SUCCESS);
	/* may_cache FALSE again: the unmapped object goes (terminate before the answer). */
	assert_kr(mvm_pager_change_attributes(p, FALSE, MEMORY_OBJECT_COPY_DELAY, TRUE),
	    KERN_SUCCESS);
	assert_int_equal(pst(p).kernels, 0);
	{
		struct mvm_vm_object_stats gone;

		assert_kr(mvm_vm_object_stats(obj, &gone), KERN_INVALID_NAME);
	}
	assert_kr(mvm_pager_shutdown(p), KERN_SUCCESS);
	test_end();
}

static void
offer_page_before_fault(void **state)
{
	mach_port_t obj;
	struct mvm_pager *p;
	vm_address_t a;
	unsigned char data[PG];
	int i;

	(void)state;
	test_begin();
	p = faulty(4 * PG, NULL, &obj);
	a = map(obj, 4 * PG);
	wait_kernels(p, 1);
	memset(data, 0x5a, sizeof(data));
	assert_kr(mvm_pager_offer_page(p, 3 * PG, data, FALSE, FALSE), KERN_SUCCESS);
	memset(data, 0, sizeof(data));        /* the caller's buffer is its own again */
	for (i = 0; i < TMO && vst(obj).pages_supplied == 0; i++)
		sleep_ms(1);
	assert_int_equal(vst(obj).pages_supplied, 1);
	assert_int_equal(((volatile unsigned char *)a)[3 * PG + 123], 0x5a);
	assert_int_equal(vst(obj).data_requests, 0);
	assert_int_equal(pst(p).requests, 0);
	/* An offer for a resident page is ignored. */
	memset(data, 0x6b, sizeof(data));
	assert_kr(mvm_pager_offer_page(p, 3 * PG, data, FALSE, FALSE), KERN_SUCCESS);
	assert_kr(mvm_pager_sync(p, 0, 0, TRUE), KERN_SUCCESS); /* a round trip after it */
	assert_int_equal(((volatile unsigned char *)a)[3 * PG + 123], 0x5a);
	assert_kr(mvm_pager_offer_page(p, 3 * PG + 1, data, FALSE, FALSE), KERN_INVALID_ARGUMENT);
	assert_kr(vm_deallocate(mach_task_self(), a, 4 * PG), KERN_SUCCESS);
	assert_kr(mvm_pager_shutdown(p), KERN_SUCCESS);
	test_end();
}

static void
helpers_on_unmapped_object(void **state)
{
	mach_port_t obj;
	struct mvm_pager *p;
	vm_address_t a;
	uint64_t t0;

	(void)state;
	test_begin();
	p = faulty(4 * PG, NULL, &obj);
	t0 = now_ns();
	assert_kr(mvm_pager_sync(p, 0, 0, TRUE), KERN_SUCCESS);
	assert_kr(mvm_pager_return(p, 0, 0, TRUE), KERN_SUCCESS);
	assert_kr(mvm_pager_flush(p, 0, 0, TRUE), KERN_SUCCESS);
	assert_kr(mvm_pager_lock(p, 0, 0, VM_PROT_WRITE, TRUE), KERN_SUCCESS);
	assert_kr(mvm_pager_change_attributes(p, FALSE, MEMORY_OBJECT_COPY_DELAY, TRUE),
	    KERN_SUCCESS);
	assert_kr(mvm_pager_sync(p, PG, PG, FALSE), KERN_SUCCESS);
	/* Mapped once and unmapped: terminated, so again nothing to wait for. */
	a = map(obj, 4 * PG);
	((volatile unsigned char *)a)[0] = 1;
	assert_kr(vm_deallocate(mach_task_self(), a, 4 * PG), KERN_SUCCESS);
	for (int i = 0; i < TMO && pst(p).kernels != 0; i++)
		sleep_ms(1);
	assert_int_equal(pst(p).kernels, 0);
	/* The unmapping returned the dirty page; its write is the workers' business (a sync
	 * now would not wait for it: no request of the sync caused it). */
	for (int i = 0; i < TMO && pst(p).pages_written == 0; i++)
		sleep_ms(1);
	assert_int_equal(peek(p, 0), 1);
	assert_kr(mvm_pager_sync(p, 0, 0, TRUE), KERN_SUCCESS);
	assert_kr(mvm_pager_return(p, 0, 0, TRUE), KERN_SUCCESS);
	assert_true(now_ns() - t0 < 2000 * 1000000ull);
	/* Bad arguments. */
	assert_kr(mvm_pager_sync(NULL, 0, 0, TRUE), KERN_INVALID_ARGUMENT);
	assert_kr(mvm_pager_lock(p, 0, 0, 0x40, TRUE), KERN_INVALID_ARGUMENT);
	assert_kr(mvm_pager_change_attributes(p, FALSE, 99, TRUE), KERN_INVALID_ARGUMENT);
	assert_kr(mvm_pager_stats(p, NULL), KERN_INVALID_ARGUMENT);
	assert_kr(mvm_pager_shutdown(p), KERN_SUCCESS);
	test_end();
}

/* ---- 5. a custom pager calling the helpers from inside an op ------------------------------ */

struct selfcall {
	struct mvm_pager *pager;          /* set before the first fault */
	atomic_int calls;
	kern_return_t sync_wait, return_wait, flush_wait, lock_wait, attr_wait, shutdown;
	kern_return_t sync_nowait;
	atomic_int published;             /* the results above are written (release) */
};

static kern_return_t
selfcall_read(void *upi, vm_offset_t off, void *buf, vm_size_t len, boolean_t *unavailable,
    boolean_t *write_lock)
{
	struct selfcall *s = upi;

	(void)unavailable;
	(void)write_lock;
	if (atomic_fetch_add(&s->calls, 1) == 0) {
		/* Each of these would wait for this very thread: they must refuse. */
		s->sync_wait = mvm_pager_sync(s->pager, 0, PG, TRUE);
		s->return_wait = mvm_pager_return(s->pager, 0, PG, TRUE);
		s->flush_wait = mvm_pager_flush(s->pager, 0, PG, TRUE);
		s->lock_wait = mvm_pager_lock(s->pager, 0, PG, VM_PROT_NONE, TRUE);
		s->attr_wait = mvm_pager_change_attributes(s->pager, FALSE, MEMORY_OBJECT_COPY_DELAY,
		    TRUE);
		s->shutdown = mvm_pager_shutdown(s->pager);
		/* Asynchronous forms are allowed. */
		s->sync_nowait = mvm_pager_sync(s->pager, 2 * PG, PG, FALSE);
		/* The toucher's wake-up goes through userfaultfd, which orders nothing for a
		 * race detector: publish the results explicitly. */
		atomic_store_explicit(&s->published, 1, memory_order_release);
	}
	memset(buf, (int)(0x30 + off / PG), len);
	return KERN_SUCCESS;
}

static kern_return_t
selfcall_write(void *upi, vm_offset_t off, const void *buf, vm_size_t len)
{
	(void)upi;
	(void)off;
	(void)buf;
	(void)len;
	return KERN_SUCCESS;
}

static const struct mvm_pager_ops selfcall_ops = {
	.version = MVM_PAGER_OPS_VERSION,
	.name = "selfcall",
	.read_pages = selfcall_read,
	.write_pages = selfcall_write,
};

static void
sync_helpers_inside_op(void **state)
{
	struct selfcall s;
	mach_port_t obj;
	vm_address_t a;
	struct toucher t;

	(void)state;
	test_begin();
	memset(&s, 0, sizeof(s));
	atomic_init(&s.calls, 0);
	atomic_init(&s.published, 0);
	assert_kr(mvm_pager_create(&selfcall_ops, &s, NULL, &s.pager, &obj), KERN_SUCCESS);
	a = map(obj, 4 * PG);
	touch_start(&t, a + PG + 3, false, 0);
	assert_touch_done(&t);
	assert_int_equal(t.val, 0x31);
	for (int i = 0; i < TMO && !atomic_load_explicit(&s.published, memory_order_acquire); i++)
		sleep_ms(1);
	assert_true(atomic_load_explicit(&s.published, memory_order_acquire));
	assert_kr(s.sync_wait, KERN_FAILURE);
	assert_kr(s.return_wait, KERN_FAILURE);
	assert_kr(s.flush_wait, KERN_FAILURE);
	assert_kr(s.lock_wait, KERN_FAILURE);
	assert_kr(s.attr_wait, KERN_FAILURE);
	assert_kr(s.shutdown, KERN_FAILURE);
	assert_kr(s.sync_nowait, KERN_SUCCESS);
	/* Without an extent, the whole-object forms need a range. */
	assert_kr(mvm_pager_sync(s.pager, 0, 0, TRUE), KERN_INVALID_ARGUMENT);
	assert_kr(mvm_pager_sync(s.pager, 0, 4 * PG, TRUE), KERN_SUCCESS);
	assert_kr(vm_deallocate(mach_task_self(), a, 4 * PG), KERN_SUCCESS);
	/* Bad ops tables. */
	{
		struct mvm_pager *bad = NULL;
		struct mvm_pager_ops noread = { .version = MVM_PAGER_OPS_VERSION };
		struct mvm_pager_ops v0 = { .version = 0, .read_pages = selfcall_read };

		assert_kr(mvm_pager_create(&noread, NULL, NULL, &bad, NULL), KERN_INVALID_ARGUMENT);
		assert_kr(mvm_pager_create(&v0, NULL, NULL, &bad, NULL), KERN_INVALID_ARGUMENT);
		assert_kr(mvm_pager_create(NULL, NULL, NULL, &bad, NULL), KERN_INVALID_ARGUMENT);
		assert_null(bad);
	}
	assert_kr(mvm_pager_shutdown(s.pager), KERN_SUCCESS);
	test_end();
}

/* ---- 6. shutdown, several pagers ------------------------------------------------------------ */

static char *
temp_file(size_t size, unsigned char fill)
{
	char *path = strdup("/tmp/mvm-test-pager-XXXXXX");
	unsigned char *buf = malloc(size);
	int fd;

	assert_non_null(path);
	assert_non_null(buf);
	memset(buf, fill, size);
	fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, buf, size), (ssize_t)size);
	close(fd);
	free(buf);
	return path;
}

static void
file_bytes(const char *path, vm_offset_t off, void *buf, size_t len)
{
	int fd = open(path, O_RDONLY);

	assert_true(fd >= 0);
	assert_int_equal(pread(fd, buf, len, (off_t)off), (ssize_t)len);
	close(fd);
}

static void
shutdown_while_mapped(void **state)
{
	char *path;
	mach_port_t obj;
	struct mvm_pager *p;
	vm_address_t a;
	volatile unsigned char *m;
	unsigned char b[8];
	struct toucher t;

	(void)state;
	test_begin();
	path = temp_file(8 * PG, 0x00);
	assert_kr(mvm_file_pager_create(path, 0, NULL, &p, &obj), KERN_SUCCESS);
	a = map(obj, 8 * PG);
	m = (volatile unsigned char *)a;
	m[0] = 0x10;
	m[2 * PG + 2] = 0x12;
	m[5 * PG + 5] = 0x15;
	m[7 * PG + 4095] = 0x17;
	(void)m[1 * PG];
	assert_int_equal(vst(obj).dirty, 4);
	assert_kr(mvm_pager_shutdown(p), KERN_SUCCESS);
	/* Every write reached the file. */
	file_bytes(path, 0, b, 1);
	assert_int_equal(b[0], 0x10);
	file_bytes(path, 2 * PG + 2, b, 1);
	assert_int_equal(b[0], 0x12);
	file_bytes(path, 5 * PG + 5, b, 1);
	assert_int_equal(b[0], 0x15);
	file_bytes(path, 7 * PG + 4095, b, 1);
	assert_int_equal(b[0], 0x17);
	file_bytes(path, 1 * PG, b, 8);
	assert_int_equal(b[0], 0);
	/* The memory is still mapped, but its manager is gone: every page was returned and
	 * flushed, so every access faults and fails. */
	touch_start(&t, a + 2 * PG + 2, false, 0);
	assert_touch_sigbus(&t);
	touch_start(&t, a + 1 * PG, false, 0);
	assert_touch_sigbus(&t);
	touch_start(&t, a + 3 * PG, true, 1);
	assert_touch_sigbus(&t);
	{
		struct mvm_vm_object_stats gone;

		/* The kernel dropped the dead object port's name. */
		assert_kr(mvm_vm_object_stats(obj, &gone), KERN_INVALID_NAME);
	}
	assert_kr(vm_deallocate(mach_task_self(), a, 8 * PG), KERN_SUCCESS);
	unlink(path);
	free(path);
	test_end();
}

static void
several_pagers_at_once(void **state)
{
	char *path;
	mach_port_t of, oa, oq;
	struct mvm_pager *pf, *pa, *pq;
	vm_address_t af, aa, aq;
	volatile unsigned char *mf, *ma, *mq;
	unsigned char b;
	struct mvm_pager_stats ps;
	struct mvm_vm_object_stats vs;

	(void)state;
	test_begin();
	path = temp_file(16 * PG, 0x44);
	assert_kr(mvm_file_pager_create(path, 0, NULL, &pf, &of), KERN_SUCCESS);
	assert_kr(mvm_anon_pager_create(16 * PG, NULL, NULL, &pa, &oa), KERN_SUCCESS);
	pq = faulty(16 * PG, NULL, &oq);
	af = map(of, 16 * PG);
	aa = map(oa, 16 * PG);
	aq = map(oq, 16 * PG);
	mf = (volatile unsigned char *)af;
	ma = (volatile unsigned char *)aa;
	mq = (volatile unsigned char *)aq;
	for (int pg = 0; pg < 16; pg += 3) {
		assert_int_equal(mf[pg * PG + 1], 0x44);
		assert_int_equal(ma[pg * PG + 1], 0);
		assert_int_equal(mq[pg * PG + 1], pattern(pg * PG + 1));
		mf[pg * PG + 2] = (unsigned char)(0x80 + pg);
		ma[pg * PG + 2] = (unsigned char)(0x90 + pg);
		mq[pg * PG + 2] = (unsigned char)(0xa0 + pg);
	}
	assert_kr(mvm_pager_sync(pf, 0, 0, TRUE), KERN_SUCCESS);
	assert_kr(mvm_pager_return(pa, 0, 0, TRUE), KERN_SUCCESS);
	assert_kr(mvm_pager_sync(pq, 0, 0, TRUE), KERN_SUCCESS);
	for (int pg = 0; pg < 16; pg += 3) {
		file_bytes(path, pg * PG + 2, &b, 1);
		assert_int_equal(b, 0x80 + pg);
		assert_int_equal(peek(pq, pg * PG + 2), 0xa0 + pg);
		assert_int_equal(ma[pg * PG + 2], 0x90 + pg);     /* back from the swap file */
		assert_int_equal(ma[pg * PG + 1], 0);
	}
	/* Each pager's statistics agree with its kernel object's. */
	struct { struct mvm_pager *p; mach_port_t o; } all[] = { { pf, of }, { pa, oa }, { pq, oq } };
	for (size_t i = 0; i < 3; i++) {
		ps = pst(all[i].p);
		vs = vst(all[i].o);
		assert_int_equal(ps.kernels, 1);
		assert_int_equal(ps.requests, vs.data_requests);
		assert_int_equal(ps.pages_read + ps.unavailable, vs.pages_requested);
		assert_int_equal(ps.pages_read, vs.pages_supplied);
		assert_int_equal(ps.unavailable, vs.unavailable);
		assert_int_equal(ps.returns, vs.data_returns);
		assert_int_equal(ps.pages_written, vs.pages_returned);
		assert_int_equal(ps.lock_requests, vs.lock_requests);
		assert_int_equal(ps.lock_completions, ps.lock_requests);
		assert_int_equal(ps.read_errors + ps.write_errors, 0);
	}
	assert_int_equal(pst(pa).pages_read, 6);  /* the 6 pages written read back */
	assert_kr(vm_deallocate(mach_task_self(), af, 16 * PG), KERN_SUCCESS);
	assert_kr(vm_deallocate(mach_task_self(), aa, 16 * PG), KERN_SUCCESS);
	assert_kr(vm_deallocate(mach_task_self(), aq, 16 * PG), KERN_SUCCESS);
	assert_kr(mvm_pager_shutdown(pf), KERN_SUCCESS);
	assert_kr(mvm_pager_shutdown(pa), KERN_SUCCESS);
	assert_kr(mvm_pager_shutdown(pq), KERN_SUCCESS);
	unlink(path);
	free(path);
	test_end();
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(read_every_page),
		cmocka_unit_test(sync_keeps_copies),
		cmocka_unit_test(return_drops_copies),
		cmocka_unit_test(flush_discards_dirty_data),
		cmocka_unit_test(lock_then_unlock_page),
		cmocka_unit_test(read_unlock_refused),
		cmocka_unit_test(read_error_reaches_one_thread),
		cmocka_unit_test(write_error_keeps_data),
		cmocka_unit_test(shutdown_reports_unstored_data),
		cmocka_unit_test(request_waits_for_write),
		cmocka_unit_test(slow_write_does_not_block_other_object),
		cmocka_unit_test(may_cache_keeps_object),
		cmocka_unit_test(offer_page_before_fault),
		cmocka_unit_test(helpers_on_unmapped_object),
		cmocka_unit_test(sync_helpers_inside_op),
		cmocka_unit_test(shutdown_while_mapped),
		cmocka_unit_test(several_pagers_at_once),
	};

	/* Before any kernel call: see mvm_vmtest.h. */
	if (!mvm_vmtest_main_setup())
		return 1;
	return cmocka_run_group_tests_name("pager", tests, NULL, NULL);
}
