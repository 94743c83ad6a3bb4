/*
 * tests/support/mvm_test.c: helpers shared by the tests.
 */
#include <stdio.h>
#include <time.h>

#include "mvm_test.h"

void
mvm_test_quiescent(const char *file, int line)
{
	char buf[256];

	mvm_sys_inject_reset();
	/*
	 * The kernel's and the pager framework's threads finish their work asynchronously
	 * (a terminate, a notification to the kernel's notify port): give them up to two
	 * seconds to settle. What is still there after that is a leak.
	 */
	for (int i = 0; i < 400; i++) {
		struct timespec ts = { 0, 5000000 };

		if (mvm_ipc_quiescent(buf, sizeof(buf)) == KERN_SUCCESS)
			return;
		nanosleep(&ts, NULL);
	}
	fail_msg("%s:%d: %s", file, line, buf);
}

void
mvm_test_assert_kr(kern_return_t actual, kern_return_t expected, const char *expr,
    const char *file, int line)
{
	if (actual != expected)
		fail_msg("%s:%d: %s returned %s (0x%x), expected %s (0x%x)", file, line, expr,
		    mvm_errname(actual), (unsigned)actual, mvm_errname(expected), (unsigned)expected);
}

mach_port_t
mvm_test_port_with_send(void)
{
	mach_port_t p;

	assert_kr(mach_port_allocate(mach_task_self(), MACH_PORT_RIGHT_RECEIVE, &p), KERN_SUCCESS);
	assert_kr(mach_port_insert_right(mach_task_self(), p, p, MACH_MSG_TYPE_MAKE_SEND),
	    KERN_SUCCESS);
	return p;
}

mach_port_urefs_t
mvm_test_refs(mach_port_t name, mach_port_right_t right)
{
	mach_port_urefs_t r = 0;

	if (mach_port_get_refs(mach_task_self(), name, right, &r) != KERN_SUCCESS)
		return 0;
	return r;
}

mach_port_type_t
mvm_test_type(mach_port_t name)
{
	mach_port_type_t t = 0;

	if (mach_port_type(mach_task_self(), name, &t) != KERN_SUCCESS)
		return 0;
	return t;
}
