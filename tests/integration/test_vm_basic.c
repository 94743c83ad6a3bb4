/*
 * tests/integration/test_vm_basic.c: the kernel's main path with a scripted manager in a
 * thread: vm_map sends init, faults become data_request, supplied data is what the
 * program reads, the first write dirties a page, and the last unmapping returns the dirty
 * pages before memory_object_terminate.
 */
#include <string.h>

#include <machvm/vm.h>
#include "mvm_test.h"
#include "mvm_mgr.h"

#define PG 4096

static void
vm_map_read_write_unmap(void **state)
{
	struct mvm_mgr *m;
	vm_address_t a = 0;
	volatile unsigned char *p;
	struct mvm_vm_object_stats st;

	(void)state;
	mvm_test_require_uffd();
	m = mvm_mgr_start();
	assert_kr(vm_map(mach_task_self(), &a, 4 * PG, 0, TRUE, m->object, 0, FALSE,
	    VM_PROT_ALL, VM_PROT_ALL, VM_INHERIT_NONE), KERN_SUCCESS);
	p = (volatile unsigned char *)a;
	MVM_MGR_EXPECT(m, "init page_size=4096");
	assert_int_equal(p[0], mvm_mgr_pattern(0));
	assert_int_equal(p[PG + 5], mvm_mgr_pattern(PG + 5));
	MVM_MGR_EXPECT(m, "data_request off=0 len=4096 access=1",
	    "data_request off=4096 len=4096 access=1");
	/* A second read of a resident page asks nothing. */
	assert_int_equal(p[7], mvm_mgr_pattern(7));
	p[PG + 9] = 0xee;                     /* resident page: dirtied in place */
	p[3 * PG] = 0xdd;                     /* missing page, write access */
	MVM_MGR_EXPECT(m, "data_request off=12288 len=4096 access=3");
	assert_kr(mvm_vm_object_stats(m->object, &st), KERN_SUCCESS);
	assert_int_equal(st.resident, 3);
	assert_int_equal(st.dirty, 2);
	assert_int_equal(st.data_requests, 3);
	assert_kr(vm_deallocate(mach_task_self(), a, 4 * PG), KERN_SUCCESS);
	MVM_MGR_EXPECT(m, "data_return off=4096 len=4096 dirty=1 kcopy=0",
	    "data_return off=12288 len=4096 dirty=1 kcopy=0", "terminate");
	assert_int_equal(m->store[1][9], 0xee);
	assert_int_equal(m->store[3][0], 0xdd);
	assert_int_equal(m->store[0][7], mvm_mgr_pattern(7));
	mvm_mgr_stop(m);
	MVM_TEST_QUIESCENT();
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(vm_map_read_write_unmap),
	};

	return cmocka_run_group_tests_name("vm_basic", tests, NULL, NULL);
}
