/*
 * tests/integration/test_vm_life.c: the life of a cache object, against the scripted
 * manager: one init per object however often it is mapped, pages shared by every
 * mapping (at any offset), a new incarnation after terminate, memory_object_destroy
 * before ready and with resident pages, the manager's death while a fault waits, and
 * unmapping part of a mapping. The fault path rule by rule is in test_vm_fault.c, whose
 * conventions this file follows: accesses that may block or fail run in touchers
 * (threads that record what happened and never call cmocka), and a manager call is known
 * to have been served once a later memory_object_get_attributes on its control port has
 * returned.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <machvm/memory_object.h>
#include <machvm/vm.h>
#include "mvm_test.h"
#include "mvm_mgr.h"
#include "vm/vm_kern.h"

#include "mvm_vmtest.h"
static vm_address_t
map_object(struct mvm_mgr *m, vm_size_t size, vm_offset_t offset)
{
	vm_address_t a = 0;

	assert_kr(vm_map(mach_task_self(), &a, size, 0, TRUE, m->object, offset, FALSE,
	    VM_PROT_ALL, VM_PROT_ALL, VM_INHERIT_NONE), KERN_SUCCESS);
	return a;
}

static bool
page_is(vm_address_t a, vm_offset_t off)
{
	const unsigned char *p = (const unsigned char *)a;

	for (size_t i = 0; i < PG; i++)
		if (p[i] != mvm_mgr_pattern(off + i))
			return false;
	return true;
}
/* Read one byte through a toucher; returns it (the toucher must finish normally). */
static unsigned char
read_byte(vm_address_t addr)
{
	struct toucher t;

	touch_start(&t, addr, false, 0);
	assert_touch_done(&t);
	return t.val;
}

static void
write_byte(vm_address_t addr, unsigned char v)
{
	struct toucher t;

	touch_start(&t, addr, true, v);
	assert_touch_done(&t);
}

/* ---- 1. one object, many mappings ------------------------------------------------------ */

static void
init_once_pages_shared(void **state)
{
	struct mvm_mgr *m;
	vm_address_t a, b, c;
	struct mvm_vm_object_stats st;

	(void)state;
	test_begin();
	m = mgr_start();
	a = map_object(m, 4 * PG, 0);
	b = map_object(m, 4 * PG, 0);
	c = map_object(m, 2 * PG, 2 * PG);   /* pages 2 and 3 of the object */
	MVM_MGR_EXPECT(m, "init page_size=4096");
	assert_int_equal(stats(m->object).mappings, 3);
	/* Page 0 through a, then through b: one request. */
	assert_int_equal(read_byte(a + 5), mvm_mgr_pattern(5));
	assert_int_equal(read_byte(b + 5), mvm_mgr_pattern(5));
	/* A write through one mapping is seen through the other, both ways. */
	write_byte(a + PG + 1, 0x11);
	assert_int_equal(read_byte(b + PG + 1), 0x11);
	write_byte(b + 2, 0x22);
	assert_int_equal(read_byte(a + 2), 0x22);
	/* The offset mapping sees the object's pages 2 and 3. */
	assert_int_equal(read_byte(c + 5), mvm_mgr_pattern(2 * PG + 5));
	assert_int_equal(read_byte(a + 2 * PG + 5), mvm_mgr_pattern(2 * PG + 5));
	write_byte(c + PG + 6, 0x33);
	assert_int_equal(read_byte(a + 3 * PG + 6), 0x33);
	assert_int_equal(read_byte(b + 3 * PG + 6), 0x33);
	MVM_MGR_EXPECT(m, "data_request off=0 len=4096 access=1",
	    "data_request off=4096 len=4096 access=3", "data_request off=8192 len=4096 access=1",
	    "data_request off=12288 len=4096 access=3");
	st = stats(m->object);
	assert_int_equal(st.data_requests, 4);
	assert_int_equal(st.resident, 4);
	assert_int_equal(st.dirty, 3);
	/* Another vm_map of a mapped object: still no init. */
	assert_kr(vm_deallocate(mach_task_self(), map_object(m, PG, 3 * PG), PG), KERN_SUCCESS);
	/* Only the last unmapping ends the object. */
	assert_kr(vm_deallocate(mach_task_self(), a, 4 * PG), KERN_SUCCESS);
	assert_kr(vm_deallocate(mach_task_self(), b, 4 * PG), KERN_SUCCESS);
	assert_int_equal(stats(m->object).mappings, 1);
	assert_int_equal(mgr_nlog(m), 0);
	assert_int_equal(read_byte(c + PG + 6), 0x33);
	assert_kr(vm_deallocate(mach_task_self(), c, 2 * PG), KERN_SUCCESS);
	MVM_MGR_EXPECT(m, "data_return off=0 len=8192 dirty=1 kcopy=0",
	    "data_return off=12288 len=4096 dirty=1 kcopy=0", "terminate");
	/* After terminate, a vm_map starts a new incarnation: init again, data asked again. */
	a = map_object(m, 4 * PG, 0);
	assert_int_equal(read_byte(a + PG + 1), 0x11);
	MVM_MGR_EXPECT(m, "init page_size=4096", "data_request off=4096 len=4096 access=1");
	assert_kr(vm_deallocate(mach_task_self(), a, 4 * PG), KERN_SUCCESS);
	MVM_MGR_EXPECT(m, "terminate");
	mvm_mgr_stop(m);
	QUIESCENT();
}

/* ---- 2. memory_object_destroy ---------------------------------------------------------- */

static void
destroy_before_ready(void **state)
{
	struct mvm_mgr *m;
	vm_address_t a;
	mach_port_t ctl;
	struct toucher r, w, later;
	uint64_t objects, mappings;

	(void)state;
	test_begin();
	m = mgr_start();
	m->no_ready = true;
	a = map_object(m, 4 * PG, 0);
	ctl = mgr_ctl(m, 1);
	touch_start(&r, a + 77, false, 0);
	touch_start(&w, a + PG + 88, true, 0x88);
	wait_faults(m->object, 2);
	assert_int_equal(atomic_load(&r.state), T_RUNNING);
	assert_int_equal(atomic_load(&w.state), T_RUNNING);
	/* Destroy instead of ready: the waiting threads fail (GNU Mach leaves them hanging),
	 * and the manager gets its terminate. */
	assert_kr(memory_object_destroy(ctl, KERN_FAILURE), KERN_SUCCESS);
	assert_touch_sigbus(&r);
	assert_touch_sigbus(&w);
	MVM_MGR_EXPECT(m, "init page_size=4096", "terminate");
	touch_start(&later, a + 2 * PG + 3, false, 0);
	assert_touch_sigbus(&later);
	assert_kr(vm_deallocate(mach_task_self(), a, 4 * PG), KERN_SUCCESS);
	assert_int_equal(mgr_nlog(m), 0);
	mvm__vm_alive(&objects, &mappings);
	assert_int_equal(objects, 0);
	assert_int_equal(mappings, 0);
	mvm_mgr_stop(m);
	QUIESCENT();
}

static void
destroy_keeps_resident_pages(void **state)
{
	struct mvm_mgr *m;
	vm_address_t a;
	mach_port_t ctl;
	struct toucher t;

	(void)state;
	test_begin();
	m = mgr_start();
	a = map_object(m, 4 * PG, 0);
	ctl = mgr_ctl(m, 1);
	assert_int_equal(read_byte(a + 9), mvm_mgr_pattern(9));
	write_byte(a + PG + 9, 0x44);
	MVM_MGR_EXPECT(m, "init page_size=4096", "data_request off=0 len=4096 access=1",
	    "data_request off=4096 len=4096 access=3");
	/* Destroy: terminate at once, the dirty page is not returned (as in GNU Mach). */
	assert_kr(memory_object_destroy(ctl, KERN_FAILURE), KERN_SUCCESS);
	MVM_MGR_EXPECT(m, "terminate");
	/* Resident pages stay readable (and the dirty one keeps its data)... */
	assert_int_equal(read_byte(a + 9), mvm_mgr_pattern(9));
	assert_int_equal(read_byte(a + PG + 9), 0x44);
	assert_true(page_is(a, 0));
	/* ...other pages fail, without asking anyone. */
	touch_start(&t, a + 2 * PG + 1, false, 0);
	assert_touch_sigbus(&t);
	touch_start(&t, a + 3 * PG + 2, true, 1);
	assert_touch_sigbus(&t);
	assert_kr(vm_deallocate(mach_task_self(), a, 4 * PG), KERN_SUCCESS);
	assert_int_equal(mgr_nlog(m), 0);
	assert_int_equal(m->store[1][9], mvm_mgr_pattern(PG + 9));
	mvm_mgr_stop(m);
	QUIESCENT();
}

/* ---- 3. the manager dies ---------------------------------------------------------------- */

static void
manager_death(void **state)
{
	struct mvm_mgr *m;
	vm_address_t a;
	mach_port_t ctl, name;
	struct toucher waiting, later;

	(void)state;
	test_begin();
	m = mgr_start();
	m->manual_requests = true;
	a = map_object(m, 4 * PG, 0);
	ctl = mgr_ctl(m, 1);
	pthread_mutex_lock(&m->mtx);
	name = m->name;
	pthread_mutex_unlock(&m->mtx);
	assert_kr(mvm_mgr_supply(m, 2 * PG, PG, VM_PROT_NONE, FALSE, MACH_PORT_NULL), KERN_SUCCESS);
	ctl_sync(ctl);
	touch_start(&waiting, a + 10, false, 0);
	assert_int_equal(mvm_mgr_wait(m, "data_request", 1, TMO), 1);
	MVM_MGR_EXPECT(m, "init page_size=4096", "data_request off=0 len=4096 access=1");
	/* The manager goes away with the request unanswered: the thread fails. */
	mvm_mgr_stop(m);
	assert_touch_sigbus(&waiting);
	/* Later faults on missing pages fail; the resident page stays readable. */
	touch_start(&later, a + PG + 20, false, 0);
	assert_touch_sigbus(&later);
	touch_start(&later, a + 10, true, 1);
	assert_touch_sigbus(&later);
	assert_true(page_is(a + 2 * PG, 2 * PG));
	assert_kr(vm_deallocate(mach_task_self(), a, 4 * PG), KERN_SUCCESS);
	/*
	 * The kernel dropped the control and name receive rights; the send rights the
	 * messages gave the manager (the same names: one name space) are dead names now.
	 * The manager died without a terminate, so nobody else can drop them.
	 */
	assert_int_equal(mvm_test_type(ctl), MACH_PORT_TYPE_DEAD_NAME);
	assert_int_equal(mvm_test_type(name), MACH_PORT_TYPE_DEAD_NAME);
	assert_kr(mach_port_destroy(mach_task_self(), ctl), KERN_SUCCESS);
	assert_kr(mach_port_destroy(mach_task_self(), name), KERN_SUCCESS);
	QUIESCENT();
}

/* ---- 4. unmapping part of a mapping ---------------------------------------------------- */

static void
partial_deallocate(void **state)
{
	struct mvm_mgr *m;
	vm_address_t a;

	(void)state;
	test_begin();
	m = mgr_start();
	a = map_object(m, 8 * PG, 0);
	for (int pg = 2; pg <= 5; pg++)
		assert_int_equal(read_byte(a + (size_t)pg * PG), mvm_mgr_pattern((vm_offset_t)pg * PG));
	write_byte(a + 3 * PG + 3, 0x33);
	MVM_MGR_EXPECT(m, "init page_size=4096", "data_request off=8192 len=4096 access=1",
	    "data_request off=12288 len=4096 access=1", "data_request off=16384 len=4096 access=1",
	    "data_request off=20480 len=4096 access=1");
	/* A hole in the middle (pages 3 and 4): two mappings left, no message. */
	assert_kr(vm_deallocate(mach_task_self(), a + 3 * PG, 2 * PG), KERN_SUCCESS);
	assert_int_equal(stats(m->object).mappings, 2);
	assert_int_equal(mgr_nlog(m), 0);
	/* Both parts keep working: resident pages ask nothing, missing ones are asked for. */
	assert_int_equal(read_byte(a + 2 * PG + 1), mvm_mgr_pattern(2 * PG + 1));
	assert_int_equal(read_byte(a + 5 * PG + 1), mvm_mgr_pattern(5 * PG + 1));
	assert_int_equal(read_byte(a + 6 * PG + 1), mvm_mgr_pattern(6 * PG + 1));
	write_byte(a + 7 * PG + 7, 0x77);
	write_byte(a + 1, 0x01);
	MVM_MGR_EXPECT(m, "data_request off=24576 len=4096 access=1",
	    "data_request off=28672 len=4096 access=3", "data_request off=0 len=4096 access=3");
	/* The head goes: the object stays. The tail goes: dirty pages (the one written
	 * through the hole too), then terminate. */
	assert_kr(vm_deallocate(mach_task_self(), a, 3 * PG), KERN_SUCCESS);
	assert_int_equal(stats(m->object).mappings, 1);
	assert_int_equal(mgr_nlog(m), 0);
	assert_int_equal(read_byte(a + 7 * PG + 7), 0x77);
	assert_kr(vm_deallocate(mach_task_self(), a + 5 * PG, 3 * PG), KERN_SUCCESS);
	MVM_MGR_EXPECT(m, "data_return off=0 len=4096 dirty=1 kcopy=0",
	    "data_return off=12288 len=4096 dirty=1 kcopy=0",
	    "data_return off=28672 len=4096 dirty=1 kcopy=0", "terminate");
	assert_int_equal(m->store[0][1], 0x01);
	assert_int_equal(m->store[3][3], 0x33);
	assert_int_equal(m->store[7][7], 0x77);
	mvm_mgr_stop(m);
	QUIESCENT();
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(init_once_pages_shared),
		cmocka_unit_test(destroy_before_ready),
		cmocka_unit_test(destroy_keeps_resident_pages),
		cmocka_unit_test(manager_death),
		cmocka_unit_test(partial_deallocate),
	};

	/* Before any kernel call: see mvm_vmtest.h. */
	if (!mvm_vmtest_main_setup())
		return 1;
	return cmocka_run_group_tests_name("vm_life", tests, NULL, NULL);
}
