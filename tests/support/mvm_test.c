/*
 * tests/support/mvm_test.c: helpers shared by the tests.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "mvm_test.h"

void
mvm_test_quiescent(const char *file, int line)
{
	char buf[256];

	mvm_sys_inject_reset();
	/* mvm_ipc_quiescent() waits up to a second for machvm's own threads to finish work
	 * in flight (a terminate, a notification to the kernel's notify port). */
	if (mvm_ipc_quiescent(buf, sizeof(buf)) == KERN_SUCCESS)
		return;
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
mvm_test_receive(void)
{
	mach_port_t p = MACH_PORT_NULL;

	assert_kr(mach_port_allocate(mach_task_self(), MACH_PORT_RIGHT_RECEIVE, &p), KERN_SUCCESS);
	assert_true(MACH_PORT_VALID(p));
	return p;
}

mach_port_status_t
mvm_test_status(mach_port_t p)
{
	mach_port_status_t st;

	memset(&st, 0, sizeof(st));
	assert_kr(mach_port_get_receive_status(mach_task_self(), p, &st), KERN_SUCCESS);
	return st;
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

mach_msg_return_t
mvm_test_rcv_now(mach_port_t name, mvm_test_msg_t *m)
{
	memset(m, 0, sizeof(*m));
	return mach_msg(&m->h, MACH_RCV_MSG | MACH_RCV_TIMEOUT, 0, sizeof(*m), name, 0,
	    MACH_PORT_NULL);
}
