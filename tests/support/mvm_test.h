/*
 * tests/support/mvm_test.h: what every machvm test includes: cmocka, the Mach headers,
 * and the quiescence check each test ends with.
 */
#ifndef MVM_TEST_H
#define MVM_TEST_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <mach/mach.h>
#include <machvm/ipc.h>
#include <machvm/sys.h>

/* Fail the test unless the IPC layer is quiescent (no names, ports, messages, memory). */
#define MVM_TEST_QUIESCENT() mvm_test_quiescent(__FILE__, __LINE__)
void mvm_test_quiescent(const char *file, int line);

/* assert_int_equal for kern_return_t, printing names on failure. */
#define assert_kr(actual, expected) mvm_test_assert_kr((actual), (expected), #actual, __FILE__, __LINE__)
void mvm_test_assert_kr(kern_return_t actual, kern_return_t expected, const char *expr,
    const char *file, int line);

/* A new receive right (the test fails if none can be allocated). */
mach_port_t mvm_test_receive(void);
/* The receive status of p (the test fails if p is not a receive right). */
mach_port_status_t mvm_test_status(mach_port_t p);
/* A receive right with a send right under the same name. */
mach_port_t mvm_test_port_with_send(void);
/* The number of user references of `right` on `name` (0 if none). */
mach_port_urefs_t mvm_test_refs(mach_port_t name, mach_port_right_t right);
/* The type bits of a name, or 0 if it denotes nothing. */
mach_port_type_t mvm_test_type(mach_port_t name);

/* A receive buffer for the small messages the IPC tests exchange. */
typedef union {
	mach_msg_header_t h;
	_Alignas(8) char buf[512];
} mvm_test_msg_t;
/* Receive from name into *m (cleared first) without waiting: MACH_RCV_TIMED_OUT if empty. */
mach_msg_return_t mvm_test_rcv_now(mach_port_t name, mvm_test_msg_t *m);

#endif /* MVM_TEST_H */
