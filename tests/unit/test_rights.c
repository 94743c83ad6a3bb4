/*
 * tests/unit/test_rights.c: port right accounting in one task's name space.
 *
 * Covers mach_port_allocate{,_name}, deallocate, destroy, mod_refs, get_refs, type,
 * names, insert_right and extract_right on every right type; user references (add,
 * remove, underflow, overflow to MACH_PORT_UREFS_MAX); dead names; stale names; bad
 * tasks and names; and every right carried in a message body, with the rights and user
 * references checked before the send, between send and receive, and after the receive.
 *
 * A send right whose name does not also hold the receive right is made by parking the
 * receive right in a message queued on a "holder" port (stash()), which is how a task
 * that does not hold a port's receive right sees it.
 */
#include <string.h>

#include "mvm_test.h"

#define SELF mach_task_self()
#define BAD_TASK ((mach_port_t)0x12345)

/* ---- helpers ------------------------------------------------------------------------ */

struct port_msg {
	mach_msg_header_t h;
	mach_msg_type_t t;
	mach_port_t port;
};

struct ports2_msg {
	mach_msg_header_t h;
	mach_msg_type_t t;
	mach_port_t port[2];
};

union rcv_buf {
	mach_msg_header_t h;
	struct port_msg pm;
	struct ports2_msg p2;
	char buf[512];
};



static void
set_port_type(mach_msg_type_t *t, mach_msg_type_name_t disp, unsigned number)
{
	memset(t, 0, sizeof(*t));
	t->msgt_name = disp;
	t->msgt_size = 32;
	t->msgt_number = number;
	t->msgt_inline = 1;
}

/* Send `name` with disposition `disp` in the body of a message to `dest` (a receive
 * right of ours; the destination right is made for the message). */
static mach_msg_return_t
send_port(mach_port_t dest, mach_port_t name, mach_msg_type_name_t disp)
{
	struct port_msg m;

	memset(&m, 0, sizeof(m));
	m.h.msgh_bits = MACH_MSGH_BITS(MACH_MSG_TYPE_MAKE_SEND, 0) | MACH_MSGH_BITS_COMPLEX;
	m.h.msgh_size = sizeof(m);
	m.h.msgh_remote_port = dest;
	m.h.msgh_id = 4242;
	set_port_type(&m.t, disp, 1);
	m.port = name;
	return mach_msg(&m.h, MACH_SEND_MSG | MACH_SEND_TIMEOUT, sizeof(m), 0, MACH_PORT_NULL, 0,
	    MACH_PORT_NULL);
}

/* Receive a one-port message sent by send_port() on `rcv`; return the port name and
 * check the header and the descriptor's received type. */
static mach_port_t
recv_port(mach_port_t rcv, mach_msg_type_name_t want_type)
{
	union rcv_buf u;

	memset(&u, 0, sizeof(u));
	assert_kr(mach_msg(&u.h, MACH_RCV_MSG | MACH_RCV_TIMEOUT, 0, sizeof(u), rcv, 0,
	    MACH_PORT_NULL), MACH_MSG_SUCCESS);
	assert_int_equal(u.h.msgh_id, 4242);
	assert_int_equal(u.h.msgh_size, sizeof(struct port_msg));
	assert_true(u.h.msgh_bits & MACH_MSGH_BITS_COMPLEX);
	assert_int_equal(MACH_MSGH_BITS_LOCAL(u.h.msgh_bits), MACH_MSG_TYPE_PORT_SEND);
	assert_int_equal(MACH_MSGH_BITS_REMOTE(u.h.msgh_bits), 0);
	assert_int_equal(u.h.msgh_local_port, rcv);
	assert_int_equal(u.h.msgh_remote_port, MACH_PORT_NULL);
	assert_int_equal(u.pm.t.msgt_name, want_type);
	assert_int_equal(u.pm.t.msgt_size, 32);
	assert_int_equal(u.pm.t.msgt_number, 1);
	return u.pm.port;
}

static void
assert_no_message(mach_port_t rcv)
{
	union rcv_buf u;

	assert_kr(mach_msg(&u.h, MACH_RCV_MSG | MACH_RCV_TIMEOUT, 0, sizeof(u), rcv, 0,
	    MACH_PORT_NULL), MACH_RCV_TIMED_OUT);
}

/* Park the receive right `p` in a message queued on `holder`; `p` keeps only the send
 * rights it had (if any). */
static void
stash(mach_port_t holder, mach_port_t p)
{
	assert_kr(send_port(holder, p, MACH_MSG_TYPE_MOVE_RECEIVE), MACH_MSG_SUCCESS);
}

static mach_port_t
unstash(mach_port_t holder)
{
	return recv_port(holder, MACH_MSG_TYPE_PORT_RECEIVE);
}

static void
assert_invalid_name(mach_port_t name)
{
	mach_port_type_t t;

	assert_kr(mach_port_type(SELF, name, &t), KERN_INVALID_NAME);
}

static mach_port_urefs_t
send_refs(mach_port_t name)
{
	return mvm_test_refs(name, MACH_PORT_RIGHT_SEND);
}

static uint64_t
names_in_use(void)
{
	struct mvm_ipc_stats s;

	mvm_ipc_stats(&s);
	return s.names;
}

/* ---- mach_port_allocate ------------------------------------------------------------ */

static void
test_allocate_each_right(void **state)
{
	mach_port_t r, s, d, x = 0x77;
	mach_port_urefs_t refs;

	(void)state;
	assert_kr(mach_port_allocate(SELF, MACH_PORT_RIGHT_RECEIVE, &r), KERN_SUCCESS);
	assert_int_equal(mvm_test_type(r), MACH_PORT_TYPE_RECEIVE);
	assert_int_equal(mvm_test_refs(r, MACH_PORT_RIGHT_RECEIVE), 1);
	assert_int_equal(mvm_test_refs(r, MACH_PORT_RIGHT_SEND), 0);
	mach_port_status_t st = mvm_test_status(r);
	assert_int_equal(st.mps_pset, MACH_PORT_NULL);
	assert_int_equal(st.mps_seqno, 0);
	assert_int_equal(st.mps_mscount, 0);
	assert_int_equal(st.mps_qlimit, MACH_PORT_QLIMIT_DEFAULT);
	assert_int_equal(st.mps_msgcount, 0);
	assert_int_equal(st.mps_sorights, 0);
	assert_false(st.mps_srights);
	assert_false(st.mps_pdrequest);
	assert_false(st.mps_nsrequest);

	assert_kr(mach_port_allocate(SELF, MACH_PORT_RIGHT_PORT_SET, &s), KERN_SUCCESS);
	assert_int_equal(mvm_test_type(s), MACH_PORT_TYPE_PORT_SET);
	assert_int_equal(mvm_test_refs(s, MACH_PORT_RIGHT_PORT_SET), 1);
	assert_int_equal(mvm_test_refs(s, MACH_PORT_RIGHT_RECEIVE), 0);

	assert_kr(mach_port_allocate(SELF, MACH_PORT_RIGHT_DEAD_NAME, &d), KERN_SUCCESS);
	assert_int_equal(mvm_test_type(d), MACH_PORT_TYPE_DEAD_NAME);
	assert_kr(mach_port_get_refs(SELF, d, MACH_PORT_RIGHT_DEAD_NAME, &refs), KERN_SUCCESS);
	assert_int_equal(refs, 1);

	/* Three distinct names, none of them the task's own name. */
	assert_true(r != s && s != d && r != d);
	assert_true(r != SELF && s != SELF && d != SELF);
	assert_int_equal(names_in_use(), 3);

	/* Rights that cannot be allocated; the name argument is left alone. */
	assert_kr(mach_port_allocate(SELF, MACH_PORT_RIGHT_SEND, &x), KERN_INVALID_VALUE);
	assert_kr(mach_port_allocate(SELF, MACH_PORT_RIGHT_SEND_ONCE, &x), KERN_INVALID_VALUE);
	assert_kr(mach_port_allocate(SELF, MACH_PORT_RIGHT_NUMBER, &x), KERN_INVALID_VALUE);
	assert_kr(mach_port_allocate(SELF, 1000, &x), KERN_INVALID_VALUE);
	assert_int_equal(x, 0x77);
	assert_kr(mach_port_allocate(BAD_TASK, MACH_PORT_RIGHT_RECEIVE, &x),
	    MACH_SEND_INVALID_DEST);
	assert_kr(mach_port_allocate(MACH_PORT_NULL, MACH_PORT_RIGHT_RECEIVE, &x),
	    MACH_SEND_INVALID_DEST);
	assert_int_equal(x, 0x77);
	assert_int_equal(names_in_use(), 3);

	assert_kr(mach_port_destroy(SELF, r), KERN_SUCCESS);
	assert_kr(mach_port_destroy(SELF, s), KERN_SUCCESS);
	assert_kr(mach_port_destroy(SELF, d), KERN_SUCCESS);
	MVM_TEST_QUIESCENT();
}

static void
test_allocate_many_names_distinct(void **state)
{
	enum { N = 300 }; /* more than the initial table: it grows */
	mach_port_t p[N];

	(void)state;
	for (int i = 0; i < N; i++) {
		assert_kr(mach_port_allocate(SELF, i % 3 == 0 ? MACH_PORT_RIGHT_RECEIVE :
		    i % 3 == 1 ? MACH_PORT_RIGHT_PORT_SET : MACH_PORT_RIGHT_DEAD_NAME, &p[i]),
		    KERN_SUCCESS);
		for (int j = 0; j < i; j++)
			assert_true(p[i] != p[j]);
	}
	assert_int_equal(names_in_use(), N);
	/* Every name still denotes what it was allocated as after the table grew. */
	for (int i = 0; i < N; i++)
		assert_int_equal(mvm_test_type(p[i]), i % 3 == 0 ? MACH_PORT_TYPE_RECEIVE :
		    i % 3 == 1 ? MACH_PORT_TYPE_PORT_SET : MACH_PORT_TYPE_DEAD_NAME);
	for (int i = 0; i < N; i++)
		assert_kr(mach_port_destroy(SELF, p[i]), KERN_SUCCESS);
	MVM_TEST_QUIESCENT();
}

static void
test_allocate_name(void **state)
{
	mach_port_t a = MACH_PORT_MAKE(700, 7), b = MACH_PORT_MAKE(701, 1);
	mach_port_t c = MACH_PORT_MAKE(702, 0x80), other_gen = MACH_PORT_MAKE(700, 8);

	(void)state;
	assert_kr(mach_port_allocate_name(SELF, MACH_PORT_RIGHT_RECEIVE, a), KERN_SUCCESS);
	assert_int_equal(mvm_test_type(a), MACH_PORT_TYPE_RECEIVE);
	assert_kr(mach_port_allocate_name(SELF, MACH_PORT_RIGHT_PORT_SET, b), KERN_SUCCESS);
	assert_int_equal(mvm_test_type(b), MACH_PORT_TYPE_PORT_SET);
	assert_kr(mach_port_allocate_name(SELF, MACH_PORT_RIGHT_DEAD_NAME, c), KERN_SUCCESS);
	assert_int_equal(mvm_test_type(c), MACH_PORT_TYPE_DEAD_NAME);
	assert_int_equal(mvm_test_refs(c, MACH_PORT_RIGHT_DEAD_NAME), 1);

	/* In use, whatever right is asked for, and under another generation too. */
	assert_kr(mach_port_allocate_name(SELF, MACH_PORT_RIGHT_RECEIVE, a), KERN_NAME_EXISTS);
	assert_kr(mach_port_allocate_name(SELF, MACH_PORT_RIGHT_DEAD_NAME, b), KERN_NAME_EXISTS);
	assert_kr(mach_port_allocate_name(SELF, MACH_PORT_RIGHT_PORT_SET, c), KERN_NAME_EXISTS);
	assert_kr(mach_port_allocate_name(SELF, MACH_PORT_RIGHT_RECEIVE, other_gen),
	    KERN_NAME_EXISTS);
	assert_invalid_name(other_gen);
	assert_int_equal(mvm_test_type(a), MACH_PORT_TYPE_RECEIVE);

	/* Names that can never be allocated. */
	assert_kr(mach_port_allocate_name(SELF, MACH_PORT_RIGHT_RECEIVE, MACH_PORT_NULL),
	    KERN_INVALID_VALUE);
	assert_kr(mach_port_allocate_name(SELF, MACH_PORT_RIGHT_RECEIVE, MACH_PORT_DEAD),
	    KERN_INVALID_VALUE);
	assert_kr(mach_port_allocate_name(SELF, MACH_PORT_RIGHT_RECEIVE, SELF), KERN_INVALID_VALUE);
	assert_kr(mach_port_allocate_name(SELF, MACH_PORT_RIGHT_RECEIVE, MACH_PORT_MAKE(0, 5)),
	    KERN_INVALID_VALUE);
	assert_kr(mach_port_allocate_name(SELF, MACH_PORT_RIGHT_RECEIVE, 0xffffff00u),
	    KERN_INVALID_VALUE);
	/* Rights that cannot be allocated. */
	assert_kr(mach_port_allocate_name(SELF, MACH_PORT_RIGHT_SEND, MACH_PORT_MAKE(703, 1)),
	    KERN_INVALID_VALUE);
	assert_kr(mach_port_allocate_name(SELF, MACH_PORT_RIGHT_SEND_ONCE, MACH_PORT_MAKE(703, 1)),
	    KERN_INVALID_VALUE);
	assert_kr(mach_port_allocate_name(SELF, MACH_PORT_RIGHT_NUMBER, MACH_PORT_MAKE(703, 1)),
	    KERN_INVALID_VALUE);
	assert_invalid_name(MACH_PORT_MAKE(703, 1));
	assert_kr(mach_port_allocate_name(BAD_TASK, MACH_PORT_RIGHT_RECEIVE, MACH_PORT_MAKE(703, 1)),
	    MACH_SEND_INVALID_DEST);
	assert_int_equal(names_in_use(), 3);

	/* A chosen name works like any other: it takes a send right and carries messages. */
	assert_kr(mach_port_insert_right(SELF, a, a, MACH_MSG_TYPE_MAKE_SEND), KERN_SUCCESS);
	assert_kr(send_port(a, b, MACH_MSG_TYPE_PORT_NAME), MACH_MSG_SUCCESS);
	{
		union rcv_buf u;

		assert_kr(mach_msg(&u.h, MACH_RCV_MSG | MACH_RCV_TIMEOUT, 0, sizeof(u), a, 0,
		    MACH_PORT_NULL), MACH_MSG_SUCCESS);
		assert_int_equal(u.h.msgh_local_port, a);
		assert_int_equal(u.pm.port, b); /* a PORT_NAME is plain data */
	}

	/* The freed name can be allocated again, and a freed generation is stale. */
	assert_kr(mach_port_destroy(SELF, a), KERN_SUCCESS);
	assert_kr(mach_port_allocate_name(SELF, MACH_PORT_RIGHT_DEAD_NAME, other_gen), KERN_SUCCESS);
	assert_invalid_name(a);
	assert_int_equal(mvm_test_type(other_gen), MACH_PORT_TYPE_DEAD_NAME);

	assert_kr(mach_port_destroy(SELF, other_gen), KERN_SUCCESS);
	assert_kr(mach_port_destroy(SELF, b), KERN_SUCCESS);
	assert_kr(mach_port_destroy(SELF, c), KERN_SUCCESS);
	MVM_TEST_QUIESCENT();
}

/* ---- user references --------------------------------------------------------------- */

static void
test_send_urefs(void **state)
{
	mach_port_t p = mvm_test_port_with_send();
	mach_port_urefs_t refs = 0;

	(void)state;
	assert_int_equal(mvm_test_type(p), MACH_PORT_TYPE_SEND_RECEIVE);
	assert_kr(mach_port_get_refs(SELF, p, MACH_PORT_RIGHT_SEND, &refs), KERN_SUCCESS);
	assert_int_equal(refs, 1);
	assert_kr(mach_port_get_refs(SELF, p, MACH_PORT_RIGHT_RECEIVE, &refs), KERN_SUCCESS);
	assert_int_equal(refs, 1);
	assert_kr(mach_port_get_refs(SELF, p, MACH_PORT_RIGHT_SEND_ONCE, &refs), KERN_SUCCESS);
	assert_int_equal(refs, 0);
	assert_kr(mach_port_get_refs(SELF, p, MACH_PORT_RIGHT_PORT_SET, &refs), KERN_SUCCESS);
	assert_int_equal(refs, 0);
	assert_kr(mach_port_get_refs(SELF, p, MACH_PORT_RIGHT_DEAD_NAME, &refs), KERN_SUCCESS);
	assert_int_equal(refs, 0);
	assert_kr(mach_port_get_refs(SELF, p, MACH_PORT_RIGHT_NUMBER, &refs), KERN_INVALID_VALUE);

	/* Add, remove; zero is a no-op. */
	assert_kr(mach_port_mod_refs(SELF, p, MACH_PORT_RIGHT_SEND, 4), KERN_SUCCESS);
	assert_int_equal(send_refs(p), 5);
	assert_kr(mach_port_mod_refs(SELF, p, MACH_PORT_RIGHT_SEND, 0), KERN_SUCCESS);
	assert_int_equal(send_refs(p), 5);
	assert_kr(mach_port_mod_refs(SELF, p, MACH_PORT_RIGHT_SEND, -2), KERN_SUCCESS);
	assert_int_equal(send_refs(p), 3);
	assert_kr(mach_port_deallocate(SELF, p), KERN_SUCCESS);
	assert_int_equal(send_refs(p), 2);

	/* Underflow changes nothing. */
	assert_kr(mach_port_mod_refs(SELF, p, MACH_PORT_RIGHT_SEND, -3), KERN_INVALID_VALUE);
	assert_int_equal(send_refs(p), 2);
	assert_kr(mach_port_mod_refs(SELF, p, MACH_PORT_RIGHT_SEND, INT32_MIN), KERN_INVALID_VALUE);
	assert_int_equal(send_refs(p), 2);

	/* Overflow: up to MACH_PORT_UREFS_MAX exactly, not one more. */
	assert_kr(mach_port_mod_refs(SELF, p, MACH_PORT_RIGHT_SEND,
	    (mach_port_delta_t)(MACH_PORT_UREFS_MAX - 2)), KERN_SUCCESS);
	assert_int_equal(send_refs(p), MACH_PORT_UREFS_MAX);
	assert_kr(mach_port_mod_refs(SELF, p, MACH_PORT_RIGHT_SEND, 1), KERN_UREFS_OVERFLOW);
	assert_kr(mach_port_mod_refs(SELF, p, MACH_PORT_RIGHT_SEND, INT32_MAX), KERN_UREFS_OVERFLOW);
	assert_int_equal(send_refs(p), MACH_PORT_UREFS_MAX);
	/* COPY_SEND and MAKE_SEND onto the name would overflow too. */
	assert_kr(mach_port_insert_right(SELF, p, p, MACH_MSG_TYPE_COPY_SEND), KERN_UREFS_OVERFLOW);
	assert_kr(mach_port_insert_right(SELF, p, p, MACH_MSG_TYPE_MAKE_SEND), KERN_UREFS_OVERFLOW);
	assert_int_equal(send_refs(p), MACH_PORT_UREFS_MAX);
	assert_int_equal(mvm_test_status(p).mps_mscount, 1);

	/* Removing every reference leaves the receive right alone. */
	assert_kr(mach_port_mod_refs(SELF, p, MACH_PORT_RIGHT_SEND,
	    -(mach_port_delta_t)MACH_PORT_UREFS_MAX), KERN_SUCCESS);
	assert_int_equal(mvm_test_type(p), MACH_PORT_TYPE_RECEIVE);
	assert_false(mvm_test_status(p).mps_srights);
	/* With no send right, SEND references cannot be changed, not even by zero. */
	assert_kr(mach_port_mod_refs(SELF, p, MACH_PORT_RIGHT_SEND, 1), KERN_INVALID_RIGHT);
	assert_kr(mach_port_mod_refs(SELF, p, MACH_PORT_RIGHT_SEND, 0), KERN_INVALID_RIGHT);
	assert_kr(mach_port_mod_refs(SELF, p, MACH_PORT_RIGHT_DEAD_NAME, 1), KERN_INVALID_RIGHT);
	assert_kr(mach_port_mod_refs(SELF, p, MACH_PORT_RIGHT_SEND_ONCE, 0), KERN_INVALID_RIGHT);
	assert_kr(mach_port_mod_refs(SELF, p, MACH_PORT_RIGHT_PORT_SET, 0), KERN_INVALID_RIGHT);
	assert_kr(mach_port_mod_refs(SELF, p, MACH_PORT_RIGHT_NUMBER, 0), KERN_INVALID_VALUE);
	/* deallocate of a receive-only name. */
	assert_kr(mach_port_deallocate(SELF, p), KERN_INVALID_RIGHT);
	assert_int_equal(mvm_test_type(p), MACH_PORT_TYPE_RECEIVE);

	assert_kr(mach_port_destroy(SELF, p), KERN_SUCCESS);
	MVM_TEST_QUIESCENT();
}

static void
test_receive_and_set_refs(void **state)
{
	mach_port_t p = mvm_test_receive(), s;

	(void)state;
	assert_kr(mach_port_allocate(SELF, MACH_PORT_RIGHT_PORT_SET, &s), KERN_SUCCESS);
	/* Receive and port-set rights have one reference: only 0 and -1 are accepted. */
	assert_kr(mach_port_mod_refs(SELF, p, MACH_PORT_RIGHT_RECEIVE, 0), KERN_SUCCESS);
	assert_kr(mach_port_mod_refs(SELF, p, MACH_PORT_RIGHT_RECEIVE, 1), KERN_INVALID_VALUE);
	assert_kr(mach_port_mod_refs(SELF, p, MACH_PORT_RIGHT_RECEIVE, -2), KERN_INVALID_VALUE);
	assert_kr(mach_port_mod_refs(SELF, s, MACH_PORT_RIGHT_PORT_SET, 0), KERN_SUCCESS);
	assert_kr(mach_port_mod_refs(SELF, s, MACH_PORT_RIGHT_PORT_SET, 1), KERN_INVALID_VALUE);
	assert_kr(mach_port_mod_refs(SELF, s, MACH_PORT_RIGHT_PORT_SET, -2), KERN_INVALID_VALUE);
	/* Wrong right for the name. */
	assert_kr(mach_port_mod_refs(SELF, p, MACH_PORT_RIGHT_PORT_SET, -1), KERN_INVALID_RIGHT);
	assert_kr(mach_port_mod_refs(SELF, s, MACH_PORT_RIGHT_RECEIVE, -1), KERN_INVALID_RIGHT);
	assert_kr(mach_port_mod_refs(SELF, s, MACH_PORT_RIGHT_SEND, 1), KERN_INVALID_RIGHT);
	assert_kr(mach_port_deallocate(SELF, s), KERN_INVALID_RIGHT);
	assert_int_equal(mvm_test_refs(p, MACH_PORT_RIGHT_RECEIVE), 1);
	assert_int_equal(mvm_test_refs(s, MACH_PORT_RIGHT_PORT_SET), 1);

	/* A member's set goes away with -1; the member stays, out of the set. */
	assert_kr(mach_port_move_member(SELF, p, s), KERN_SUCCESS);
	assert_int_equal(mvm_test_status(p).mps_pset, s);
	assert_kr(mach_port_mod_refs(SELF, s, MACH_PORT_RIGHT_PORT_SET, -1), KERN_SUCCESS);
	assert_invalid_name(s);
	assert_int_equal(mvm_test_status(p).mps_pset, MACH_PORT_NULL);

	assert_kr(mach_port_mod_refs(SELF, p, MACH_PORT_RIGHT_RECEIVE, -1), KERN_SUCCESS);
	assert_invalid_name(p);
	MVM_TEST_QUIESCENT();
}

static void
test_dead_name_urefs(void **state)
{
	mach_port_t d;
	mach_port_urefs_t refs;

	(void)state;
	assert_kr(mach_port_allocate(SELF, MACH_PORT_RIGHT_DEAD_NAME, &d), KERN_SUCCESS);
	assert_kr(mach_port_mod_refs(SELF, d, MACH_PORT_RIGHT_DEAD_NAME, 9), KERN_SUCCESS);
	assert_int_equal(mvm_test_refs(d, MACH_PORT_RIGHT_DEAD_NAME), 10);
	assert_int_equal(mvm_test_refs(d, MACH_PORT_RIGHT_SEND), 0);
	assert_kr(mach_port_mod_refs(SELF, d, MACH_PORT_RIGHT_DEAD_NAME, -11), KERN_INVALID_VALUE);
	assert_kr(mach_port_mod_refs(SELF, d, MACH_PORT_RIGHT_DEAD_NAME,
	    (mach_port_delta_t)MACH_PORT_UREFS_MAX), KERN_UREFS_OVERFLOW);
	assert_kr(mach_port_mod_refs(SELF, d, MACH_PORT_RIGHT_DEAD_NAME,
	    (mach_port_delta_t)(MACH_PORT_UREFS_MAX - 10)), KERN_SUCCESS);
	assert_int_equal(mvm_test_refs(d, MACH_PORT_RIGHT_DEAD_NAME), MACH_PORT_UREFS_MAX);
	assert_kr(mach_port_mod_refs(SELF, d, MACH_PORT_RIGHT_DEAD_NAME, 1), KERN_UREFS_OVERFLOW);
	assert_kr(mach_port_mod_refs(SELF, d, MACH_PORT_RIGHT_DEAD_NAME,
	    -(mach_port_delta_t)(MACH_PORT_UREFS_MAX - 2)), KERN_SUCCESS);
	assert_kr(mach_port_get_refs(SELF, d, MACH_PORT_RIGHT_DEAD_NAME, &refs), KERN_SUCCESS);
	assert_int_equal(refs, 2);
	/* A dead name holds no other right. */
	assert_kr(mach_port_mod_refs(SELF, d, MACH_PORT_RIGHT_SEND, 1), KERN_INVALID_RIGHT);
	assert_kr(mach_port_mod_refs(SELF, d, MACH_PORT_RIGHT_RECEIVE, -1), KERN_INVALID_RIGHT);
	assert_kr(mach_port_mod_refs(SELF, d, MACH_PORT_RIGHT_SEND_ONCE, -1), KERN_INVALID_RIGHT);
	/* deallocate takes one reference; the last one frees the name. */
	assert_kr(mach_port_deallocate(SELF, d), KERN_SUCCESS);
	assert_int_equal(mvm_test_refs(d, MACH_PORT_RIGHT_DEAD_NAME), 1);
	assert_kr(mach_port_deallocate(SELF, d), KERN_SUCCESS);
	assert_invalid_name(d);
	assert_kr(mach_port_deallocate(SELF, d), KERN_INVALID_NAME);

	/* mod_refs to zero frees it too; MACH_PORT_DEAD as a dead name is accepted. */
	assert_kr(mach_port_allocate(SELF, MACH_PORT_RIGHT_DEAD_NAME, &d), KERN_SUCCESS);
	assert_kr(mach_port_mod_refs(SELF, d, MACH_PORT_RIGHT_DEAD_NAME, -1), KERN_SUCCESS);
	assert_invalid_name(d);
	assert_kr(mach_port_mod_refs(SELF, MACH_PORT_DEAD, MACH_PORT_RIGHT_DEAD_NAME, 1), KERN_SUCCESS);
	assert_kr(mach_port_mod_refs(SELF, MACH_PORT_DEAD, MACH_PORT_RIGHT_DEAD_NAME, -1),
	    KERN_SUCCESS);
	assert_kr(mach_port_mod_refs(SELF, MACH_PORT_DEAD, MACH_PORT_RIGHT_SEND, 1),
	    KERN_INVALID_NAME);
	assert_kr(mach_port_mod_refs(SELF, MACH_PORT_NULL, MACH_PORT_RIGHT_DEAD_NAME, 1),
	    KERN_INVALID_NAME);

	/* destroy drops every reference at once. */
	assert_kr(mach_port_allocate(SELF, MACH_PORT_RIGHT_DEAD_NAME, &d), KERN_SUCCESS);
	assert_kr(mach_port_mod_refs(SELF, d, MACH_PORT_RIGHT_DEAD_NAME, 5), KERN_SUCCESS);
	assert_kr(mach_port_destroy(SELF, d), KERN_SUCCESS);
	assert_invalid_name(d);
	MVM_TEST_QUIESCENT();
}

static void
test_send_once_refs(void **state)
{
	mach_port_t p = mvm_test_receive(), so = MACH_PORT_MAKE(600, 3), so2 = MACH_PORT_MAKE(601, 3);
	mach_port_urefs_t refs;

	(void)state;
	assert_kr(mach_port_insert_right(SELF, so, p, MACH_MSG_TYPE_MAKE_SEND_ONCE), KERN_SUCCESS);
	assert_int_equal(mvm_test_type(so), MACH_PORT_TYPE_SEND_ONCE);
	assert_kr(mach_port_get_refs(SELF, so, MACH_PORT_RIGHT_SEND_ONCE, &refs), KERN_SUCCESS);
	assert_int_equal(refs, 1);
	assert_int_equal(mvm_test_refs(so, MACH_PORT_RIGHT_SEND), 0);
	assert_int_equal(mvm_test_status(p).mps_sorights, 1);
	assert_false(mvm_test_status(p).mps_srights);
	/* Making a send-once right does not count as making a send right. */
	assert_int_equal(mvm_test_status(p).mps_mscount, 0);

	assert_kr(mach_port_mod_refs(SELF, so, MACH_PORT_RIGHT_SEND_ONCE, 1), KERN_INVALID_VALUE);
	assert_kr(mach_port_mod_refs(SELF, so, MACH_PORT_RIGHT_SEND_ONCE, -2), KERN_INVALID_VALUE);
	assert_kr(mach_port_mod_refs(SELF, so, MACH_PORT_RIGHT_SEND, 1), KERN_INVALID_RIGHT);
	assert_kr(mach_port_mod_refs(SELF, so, MACH_PORT_RIGHT_SEND_ONCE, 0), KERN_SUCCESS);
	assert_int_equal(mvm_test_status(p).mps_sorights, 1);

	/* Each send-once right has its own name. */
	assert_kr(mach_port_insert_right(SELF, so2, p, MACH_MSG_TYPE_MAKE_SEND_ONCE), KERN_SUCCESS);
	assert_int_equal(mvm_test_status(p).mps_sorights, 2);

	/* mod_refs -1 and deallocate both destroy it (each sends a send-once notification,
	 * which queues on p). */
	assert_kr(mach_port_mod_refs(SELF, so, MACH_PORT_RIGHT_SEND_ONCE, -1), KERN_SUCCESS);
	assert_invalid_name(so);
	assert_kr(mach_port_deallocate(SELF, so2), KERN_SUCCESS);
	assert_invalid_name(so2);
	/* Each right is now the destination right of its notification, queued on p. */
	assert_int_equal(mvm_test_status(p).mps_sorights, 2);
	assert_int_equal(mvm_test_status(p).mps_msgcount, 2);

	assert_kr(mach_port_destroy(SELF, p), KERN_SUCCESS);
	MVM_TEST_QUIESCENT();
}

/* mod_refs(RECEIVE, -1) on a name with send rights leaves a dead name with its urefs. */
static void
test_mod_refs_receive_leaves_dead_name(void **state)
{
	mach_port_t p = mvm_test_port_with_send();

	(void)state;
	assert_kr(mach_port_mod_refs(SELF, p, MACH_PORT_RIGHT_SEND, 2), KERN_SUCCESS);
	assert_kr(mach_port_mod_refs(SELF, p, MACH_PORT_RIGHT_RECEIVE, -1), KERN_SUCCESS);
	assert_int_equal(mvm_test_type(p), MACH_PORT_TYPE_DEAD_NAME);
	assert_int_equal(mvm_test_refs(p, MACH_PORT_RIGHT_DEAD_NAME), 3);
	assert_int_equal(mvm_test_refs(p, MACH_PORT_RIGHT_SEND), 0);
	assert_kr(mach_port_mod_refs(SELF, p, MACH_PORT_RIGHT_SEND, -1), KERN_INVALID_RIGHT);
	assert_kr(mach_port_mod_refs(SELF, p, MACH_PORT_RIGHT_DEAD_NAME, -3), KERN_SUCCESS);
	assert_invalid_name(p);
	MVM_TEST_QUIESCENT();
}

/* ---- insert_right ---------------------------------------------------------------- */

static void
test_insert_make_send(void **state)
{
	mach_port_t p = mvm_test_receive(), q = mvm_test_receive();

	(void)state;
	assert_kr(mach_port_insert_right(SELF, p, p, MACH_MSG_TYPE_MAKE_SEND), KERN_SUCCESS);
	assert_int_equal(mvm_test_type(p), MACH_PORT_TYPE_SEND_RECEIVE);
	assert_int_equal(send_refs(p), 1);
	assert_int_equal(mvm_test_status(p).mps_mscount, 1);
	assert_true(mvm_test_status(p).mps_srights);
	assert_kr(mach_port_insert_right(SELF, p, p, MACH_MSG_TYPE_MAKE_SEND), KERN_SUCCESS);
	assert_int_equal(send_refs(p), 2);
	assert_int_equal(mvm_test_status(p).mps_mscount, 2);

	/* The space has one name per port: a send right cannot go under another name. */
	assert_kr(mach_port_insert_right(SELF, MACH_PORT_MAKE(800, 1), p, MACH_MSG_TYPE_MAKE_SEND),
	    KERN_RIGHT_EXISTS);
	assert_invalid_name(MACH_PORT_MAKE(800, 1));
	/* Nor under a name in use for another port. */
	assert_kr(mach_port_insert_right(SELF, q, p, MACH_MSG_TYPE_MAKE_SEND), KERN_NAME_EXISTS);
	assert_int_equal(mvm_test_type(q), MACH_PORT_TYPE_RECEIVE);
	assert_int_equal(mvm_test_status(p).mps_mscount, 2);
	assert_int_equal(send_refs(p), 2);

	assert_kr(mach_port_destroy(SELF, p), KERN_SUCCESS);
	assert_kr(mach_port_destroy(SELF, q), KERN_SUCCESS);
	MVM_TEST_QUIESCENT();
}

static void
test_insert_send_once_and_copy_send(void **state)
{
	mach_port_t p = mvm_test_receive(), so = MACH_PORT_MAKE(810, 9), so2 = MACH_PORT_MAKE(811, 9);
	mach_port_t d;

	(void)state;
	assert_kr(mach_port_allocate(SELF, MACH_PORT_RIGHT_DEAD_NAME, &d), KERN_SUCCESS);
	/* MAKE_SEND_ONCE goes to a new name, never onto the receive right's name. */
	assert_kr(mach_port_insert_right(SELF, p, p, MACH_MSG_TYPE_MAKE_SEND_ONCE), KERN_NAME_EXISTS);
	assert_kr(mach_port_insert_right(SELF, so, p, MACH_MSG_TYPE_MAKE_SEND_ONCE), KERN_SUCCESS);
	assert_int_equal(mvm_test_type(so), MACH_PORT_TYPE_SEND_ONCE);
	assert_int_equal(mvm_test_status(p).mps_sorights, 1);
	/* Nor onto another send-once name, or a dead name. */
	assert_kr(mach_port_insert_right(SELF, so, p, MACH_MSG_TYPE_MAKE_SEND_ONCE), KERN_NAME_EXISTS);
	assert_kr(mach_port_insert_right(SELF, d, p, MACH_MSG_TYPE_MAKE_SEND_ONCE), KERN_NAME_EXISTS);
	assert_int_equal(mvm_test_status(p).mps_sorights, 1);

	/* MOVE_SEND_ONCE renames it. */
	assert_kr(mach_port_insert_right(SELF, so2, so, MACH_MSG_TYPE_MOVE_SEND_ONCE), KERN_SUCCESS);
	assert_invalid_name(so);
	assert_int_equal(mvm_test_type(so2), MACH_PORT_TYPE_SEND_ONCE);
	assert_int_equal(mvm_test_status(p).mps_sorights, 1);
	/* COPY_SEND and MAKE_SEND from a send-once name are not rights it has. */
	assert_kr(mach_port_insert_right(SELF, so, so2, MACH_MSG_TYPE_COPY_SEND),
	    KERN_INVALID_CAPABILITY);
	assert_kr(mach_port_insert_right(SELF, so, so2, MACH_MSG_TYPE_MAKE_SEND),
	    KERN_INVALID_CAPABILITY);

	/* COPY_SEND needs a send right. */
	assert_kr(mach_port_insert_right(SELF, p, p, MACH_MSG_TYPE_COPY_SEND), KERN_INVALID_CAPABILITY);
	assert_kr(mach_port_insert_right(SELF, p, p, MACH_MSG_TYPE_MAKE_SEND), KERN_SUCCESS);
	assert_kr(mach_port_insert_right(SELF, p, p, MACH_MSG_TYPE_COPY_SEND), KERN_SUCCESS);
	assert_int_equal(send_refs(p), 2);
	assert_int_equal(mvm_test_status(p).mps_mscount, 1); /* copying makes nothing */
	assert_kr(mach_port_insert_right(SELF, MACH_PORT_MAKE(812, 1), p, MACH_MSG_TYPE_COPY_SEND),
	    KERN_RIGHT_EXISTS);
	/* MOVE_SEND onto its own name: the user reference goes out and comes back. */
	assert_kr(mach_port_insert_right(SELF, p, p, MACH_MSG_TYPE_MOVE_SEND), KERN_SUCCESS);
	assert_int_equal(send_refs(p), 2);
	/* MOVE_SEND of a receive right's name elsewhere would split the port's name. */
	assert_kr(mach_port_insert_right(SELF, MACH_PORT_MAKE(812, 1), p, MACH_MSG_TYPE_MOVE_SEND),
	    KERN_RIGHT_EXISTS);
	assert_int_equal(send_refs(p), 2);

	/* Bad arguments. */
	assert_kr(mach_port_insert_right(SELF, MACH_PORT_NULL, p, MACH_MSG_TYPE_MAKE_SEND),
	    KERN_INVALID_VALUE);
	assert_kr(mach_port_insert_right(SELF, MACH_PORT_DEAD, p, MACH_MSG_TYPE_MAKE_SEND),
	    KERN_INVALID_VALUE);
	assert_kr(mach_port_insert_right(SELF, p, p, MACH_MSG_TYPE_INTEGER_32), KERN_INVALID_VALUE);
	assert_kr(mach_port_insert_right(SELF, p, p, MACH_MSG_TYPE_PORT_NAME), KERN_INVALID_VALUE);
	assert_kr(mach_port_insert_right(SELF, p, MACH_PORT_NULL, MACH_MSG_TYPE_MAKE_SEND),
	    KERN_INVALID_CAPABILITY);
	assert_kr(mach_port_insert_right(SELF, p, MACH_PORT_DEAD, MACH_MSG_TYPE_MAKE_SEND),
	    KERN_INVALID_CAPABILITY);
	assert_kr(mach_port_insert_right(SELF, MACH_PORT_MAKE(813, 1), MACH_PORT_MAKE(814, 1),
	    MACH_MSG_TYPE_MAKE_SEND), KERN_INVALID_CAPABILITY);
	assert_kr(mach_port_insert_right(SELF, MACH_PORT_MAKE(813, 1), d, MACH_MSG_TYPE_MAKE_SEND),
	    KERN_INVALID_CAPABILITY);
	assert_kr(mach_port_insert_right(BAD_TASK, p, p, MACH_MSG_TYPE_MAKE_SEND),
	    MACH_SEND_INVALID_DEST);
	assert_invalid_name(MACH_PORT_MAKE(813, 1));
	assert_int_equal(send_refs(p), 2);
	assert_int_equal(names_in_use(), 3);

	assert_kr(mach_port_deallocate(SELF, so2), KERN_SUCCESS); /* notification on p */
	assert_kr(mach_port_destroy(SELF, p), KERN_SUCCESS);
	assert_kr(mach_port_destroy(SELF, d), KERN_SUCCESS);
	MVM_TEST_QUIESCENT();
}

static void
test_insert_move_send_and_receive(void **state)
{
	mach_port_t holder = mvm_test_receive(), p = mvm_test_port_with_send();
	mach_port_t n1 = MACH_PORT_MAKE(820, 2), n2 = MACH_PORT_MAKE(821, 2);
	mach_port_t r = mvm_test_receive();

	(void)state;
	/* p: a send-only name (the receive right waits in a message on holder). */
	stash(holder, p);
	assert_int_equal(mvm_test_type(p), MACH_PORT_TYPE_SEND);
	assert_int_equal(send_refs(p), 1);
	/* MOVE_SEND of its only user reference renames the right. */
	assert_kr(mach_port_insert_right(SELF, n1, p, MACH_MSG_TYPE_MOVE_SEND), KERN_SUCCESS);
	assert_invalid_name(p);
	assert_int_equal(mvm_test_type(n1), MACH_PORT_TYPE_SEND);
	assert_int_equal(send_refs(n1), 1);
	/* With two user references, moving one elsewhere would give the port two names. */
	assert_kr(mach_port_mod_refs(SELF, n1, MACH_PORT_RIGHT_SEND, 1), KERN_SUCCESS);
	assert_kr(mach_port_insert_right(SELF, n2, n1, MACH_MSG_TYPE_MOVE_SEND), KERN_RIGHT_EXISTS);
	assert_kr(mach_port_insert_right(SELF, n2, n1, MACH_MSG_TYPE_COPY_SEND), KERN_RIGHT_EXISTS);
	assert_invalid_name(n2);
	assert_int_equal(send_refs(n1), 2);
	/* A send-only name cannot make rights. */
	assert_kr(mach_port_insert_right(SELF, n1, n1, MACH_MSG_TYPE_MAKE_SEND),
	    KERN_INVALID_CAPABILITY);
	assert_kr(mach_port_insert_right(SELF, n2, n1, MACH_MSG_TYPE_MAKE_SEND_ONCE),
	    KERN_INVALID_CAPABILITY);
	assert_kr(mach_port_insert_right(SELF, n2, n1, MACH_MSG_TYPE_MOVE_RECEIVE),
	    KERN_INVALID_CAPABILITY);
	/* A send right onto a name of another port. */
	assert_kr(mach_port_insert_right(SELF, r, n1, MACH_MSG_TYPE_COPY_SEND), KERN_NAME_EXISTS);
	assert_int_equal(send_refs(n1), 2);

	/* The receive right comes back under the send right's name. */
	p = unstash(holder);
	assert_int_equal(p, n1);
	assert_int_equal(mvm_test_type(n1), MACH_PORT_TYPE_SEND_RECEIVE);
	assert_int_equal(send_refs(n1), 2);

	/* MOVE_RECEIVE of a receive-only name to a new name. */
	assert_kr(mach_port_insert_right(SELF, n2, r, MACH_MSG_TYPE_MOVE_RECEIVE), KERN_SUCCESS);
	assert_invalid_name(r);
	assert_int_equal(mvm_test_type(n2), MACH_PORT_TYPE_RECEIVE);
	assert_int_equal(mvm_test_status(n2).mps_qlimit, MACH_PORT_QLIMIT_DEFAULT);
	/* ... but not of a name that also holds send rights, nor onto a receive right. */
	assert_kr(mach_port_insert_right(SELF, MACH_PORT_MAKE(822, 2), n1, MACH_MSG_TYPE_MOVE_RECEIVE),
	    KERN_RIGHT_EXISTS);
	assert_kr(mach_port_insert_right(SELF, n1, n2, MACH_MSG_TYPE_MOVE_RECEIVE), KERN_NAME_EXISTS);
	assert_int_equal(mvm_test_type(n1), MACH_PORT_TYPE_SEND_RECEIVE);
	assert_int_equal(mvm_test_type(n2), MACH_PORT_TYPE_RECEIVE);

	assert_kr(mach_port_destroy(SELF, n1), KERN_SUCCESS);
	assert_kr(mach_port_destroy(SELF, n2), KERN_SUCCESS);
	assert_kr(mach_port_destroy(SELF, holder), KERN_SUCCESS);
	MVM_TEST_QUIESCENT();
}

/* ---- extract_right --------------------------------------------------------------- */

static void
test_extract_every_disposition(void **state)
{
	mach_port_t p = mvm_test_receive(), x, so, holder = mvm_test_receive();
	mach_msg_type_name_t t;

	(void)state;
	/* MAKE_SEND: a send right under the receive right's name. */
	assert_kr(mach_port_extract_right(SELF, p, MACH_MSG_TYPE_MAKE_SEND, &x, &t), KERN_SUCCESS);
	assert_int_equal(t, MACH_MSG_TYPE_PORT_SEND);
	assert_int_equal(x, p);
	assert_int_equal(mvm_test_type(p), MACH_PORT_TYPE_SEND_RECEIVE);
	assert_int_equal(send_refs(p), 1);
	assert_int_equal(mvm_test_status(p).mps_mscount, 1);

	/* COPY_SEND: one user reference more. */
	assert_kr(mach_port_extract_right(SELF, p, MACH_MSG_TYPE_COPY_SEND, &x, &t), KERN_SUCCESS);
	assert_int_equal(t, MACH_MSG_TYPE_PORT_SEND);
	assert_int_equal(x, p);
	assert_int_equal(send_refs(p), 2);

	/* MOVE_SEND: out and back in, the same count. */
	assert_kr(mach_port_extract_right(SELF, p, MACH_MSG_TYPE_MOVE_SEND, &x, &t), KERN_SUCCESS);
	assert_int_equal(t, MACH_MSG_TYPE_PORT_SEND);
	assert_int_equal(x, p);
	assert_int_equal(send_refs(p), 2);
	assert_int_equal(mvm_test_status(p).mps_mscount, 1);

	/* MAKE_SEND_ONCE: a send-once right under a new name. */
	assert_kr(mach_port_extract_right(SELF, p, MACH_MSG_TYPE_MAKE_SEND_ONCE, &so, &t),
	    KERN_SUCCESS);
	assert_int_equal(t, MACH_MSG_TYPE_PORT_SEND_ONCE);
	assert_true(MACH_PORT_VALID(so) && so != p);
	assert_int_equal(mvm_test_type(so), MACH_PORT_TYPE_SEND_ONCE);
	assert_int_equal(mvm_test_status(p).mps_sorights, 1);

	/* MOVE_SEND_ONCE: the right leaves its name and comes back under a name. */
	assert_kr(mach_port_extract_right(SELF, so, MACH_MSG_TYPE_MOVE_SEND_ONCE, &x, &t),
	    KERN_SUCCESS);
	assert_int_equal(t, MACH_MSG_TYPE_PORT_SEND_ONCE);
	assert_int_equal(mvm_test_type(x), MACH_PORT_TYPE_SEND_ONCE);
	if (x != so)
		assert_invalid_name(so);
	so = x;
	assert_int_equal(mvm_test_status(p).mps_sorights, 1);

	/* MOVE_RECEIVE from a name with send rights: the receive right merges back in. */
	assert_kr(mach_port_extract_right(SELF, p, MACH_MSG_TYPE_MOVE_RECEIVE, &x, &t), KERN_SUCCESS);
	assert_int_equal(t, MACH_MSG_TYPE_PORT_RECEIVE);
	assert_int_equal(x, p);
	assert_int_equal(mvm_test_type(p), MACH_PORT_TYPE_SEND_RECEIVE);
	assert_int_equal(send_refs(p), 2);
	assert_int_equal(mvm_test_status(p).mps_sorights, 1);

	/* Wrong rights for the name. */
	assert_kr(mach_port_extract_right(SELF, so, MACH_MSG_TYPE_MAKE_SEND, &x, &t),
	    KERN_INVALID_RIGHT);
	assert_kr(mach_port_extract_right(SELF, so, MACH_MSG_TYPE_COPY_SEND, &x, &t),
	    KERN_INVALID_RIGHT);
	assert_kr(mach_port_extract_right(SELF, so, MACH_MSG_TYPE_MOVE_RECEIVE, &x, &t),
	    KERN_INVALID_RIGHT);
	assert_kr(mach_port_extract_right(SELF, p, MACH_MSG_TYPE_MOVE_SEND_ONCE, &x, &t),
	    KERN_INVALID_RIGHT);
	assert_kr(mach_port_extract_right(SELF, p, MACH_MSG_TYPE_INTEGER_32, &x, &t),
	    KERN_INVALID_VALUE);
	assert_kr(mach_port_extract_right(SELF, p, MACH_MSG_TYPE_PORT_NAME, &x, &t),
	    KERN_INVALID_VALUE);
	assert_kr(mach_port_extract_right(SELF, MACH_PORT_MAKE(830, 1), MACH_MSG_TYPE_MAKE_SEND,
	    &x, &t), KERN_INVALID_NAME);
	assert_kr(mach_port_extract_right(SELF, MACH_PORT_NULL, MACH_MSG_TYPE_MAKE_SEND, &x, &t),
	    KERN_INVALID_NAME);
	assert_kr(mach_port_extract_right(BAD_TASK, p, MACH_MSG_TYPE_MAKE_SEND, &x, &t),
	    MACH_SEND_INVALID_DEST);

	/* From a send-only name: no receive right to make rights from. */
	stash(holder, p);
	assert_kr(mach_port_extract_right(SELF, p, MACH_MSG_TYPE_MAKE_SEND, &x, &t),
	    KERN_INVALID_RIGHT);
	assert_kr(mach_port_extract_right(SELF, p, MACH_MSG_TYPE_MAKE_SEND_ONCE, &x, &t),
	    KERN_INVALID_RIGHT);
	assert_kr(mach_port_extract_right(SELF, p, MACH_MSG_TYPE_MOVE_RECEIVE, &x, &t),
	    KERN_INVALID_RIGHT);
	assert_int_equal(send_refs(p), 2);
	assert_int_equal(unstash(holder), p);
	assert_int_equal(send_refs(p), 2);

	/* MOVE_RECEIVE of a receive-only name. */
	mach_port_t r = mvm_test_receive();

	assert_kr(mach_port_extract_right(SELF, r, MACH_MSG_TYPE_MOVE_RECEIVE, &x, &t), KERN_SUCCESS);
	assert_int_equal(t, MACH_MSG_TYPE_PORT_RECEIVE);
	assert_int_equal(mvm_test_type(x), MACH_PORT_TYPE_RECEIVE);
	if (x != r)
		assert_invalid_name(r);

	assert_kr(mach_port_destroy(SELF, x), KERN_SUCCESS);
	assert_kr(mach_port_destroy(SELF, so), KERN_SUCCESS);
	assert_kr(mach_port_destroy(SELF, p), KERN_SUCCESS);
	assert_kr(mach_port_destroy(SELF, holder), KERN_SUCCESS);
	MVM_TEST_QUIESCENT();
}

static void
test_extract_from_dead_name(void **state)
{
	mach_port_t d, x;
	mach_msg_type_name_t t;

	(void)state;
	assert_kr(mach_port_allocate(SELF, MACH_PORT_RIGHT_DEAD_NAME, &d), KERN_SUCCESS);
	assert_kr(mach_port_mod_refs(SELF, d, MACH_PORT_RIGHT_DEAD_NAME, 1), KERN_SUCCESS);
	/* A dead name gives MACH_PORT_DEAD as a send right; COPY_SEND keeps its references. */
	assert_kr(mach_port_extract_right(SELF, d, MACH_MSG_TYPE_COPY_SEND, &x, &t), KERN_SUCCESS);
	assert_int_equal(x, MACH_PORT_DEAD);
	assert_int_equal(t, MACH_MSG_TYPE_PORT_SEND);
	assert_int_equal(mvm_test_refs(d, MACH_PORT_RIGHT_DEAD_NAME), 2);
	assert_kr(mach_port_extract_right(SELF, d, MACH_MSG_TYPE_MOVE_SEND, &x, &t), KERN_SUCCESS);
	assert_int_equal(x, MACH_PORT_DEAD);
	assert_int_equal(mvm_test_refs(d, MACH_PORT_RIGHT_DEAD_NAME), 1);
	assert_kr(mach_port_extract_right(SELF, d, MACH_MSG_TYPE_MAKE_SEND, &x, &t),
	    KERN_INVALID_RIGHT);
	assert_kr(mach_port_extract_right(SELF, d, MACH_MSG_TYPE_MOVE_RECEIVE, &x, &t),
	    KERN_INVALID_RIGHT);
	assert_kr(mach_port_extract_right(SELF, d, MACH_MSG_TYPE_MOVE_SEND_ONCE, &x, &t),
	    KERN_SUCCESS);
	assert_int_equal(x, MACH_PORT_DEAD);
	assert_int_equal(t, MACH_MSG_TYPE_PORT_SEND_ONCE);
	assert_invalid_name(d);
	MVM_TEST_QUIESCENT();
}

/* ---- mach_port_type and mach_port_names ------------------------------------------ */

static void
test_type_and_dnrequest(void **state)
{
	mach_port_t p = mvm_test_receive(), n = mvm_test_receive(), so = MACH_PORT_MAKE(840, 4), prev, s;
	mach_port_type_t t;

	(void)state;
	assert_kr(mach_port_allocate(SELF, MACH_PORT_RIGHT_PORT_SET, &s), KERN_SUCCESS);
	assert_kr(mach_port_type(SELF, p, &t), KERN_SUCCESS);
	assert_int_equal(t, MACH_PORT_TYPE_RECEIVE);
	assert_kr(mach_port_type(SELF, s, &t), KERN_SUCCESS);
	assert_int_equal(t, MACH_PORT_TYPE_PORT_SET);
	assert_kr(mach_port_insert_right(SELF, so, p, MACH_MSG_TYPE_MAKE_SEND_ONCE), KERN_SUCCESS);
	assert_kr(mach_port_insert_right(SELF, p, p, MACH_MSG_TYPE_MAKE_SEND), KERN_SUCCESS);
	assert_kr(mach_port_type(SELF, p, &t), KERN_SUCCESS);
	assert_int_equal(t, MACH_PORT_TYPE_SEND_RECEIVE);

	/* A pending dead-name request shows as MACH_PORT_TYPE_DNREQUEST. */
	assert_kr(mach_port_request_notification(SELF, so, MACH_NOTIFY_DEAD_NAME, 0, n,
	    MACH_MSG_TYPE_MAKE_SEND_ONCE, &prev), KERN_SUCCESS);
	assert_int_equal(prev, MACH_PORT_NULL);
	assert_kr(mach_port_type(SELF, so, &t), KERN_SUCCESS);
	assert_int_equal(t, MACH_PORT_TYPE_SEND_ONCE | MACH_PORT_TYPE_DNREQUEST);
	assert_kr(mach_port_request_notification(SELF, p, MACH_NOTIFY_DEAD_NAME, 0, n,
	    MACH_MSG_TYPE_MAKE_SEND_ONCE, &prev), KERN_SUCCESS);
	assert_int_equal(mvm_test_type(p), MACH_PORT_TYPE_SEND_RECEIVE | MACH_PORT_TYPE_DNREQUEST);
	assert_int_equal(mvm_test_status(n).mps_sorights, 2);
	/* A no-senders request is not a dead-name request. */
	assert_kr(mach_port_request_notification(SELF, n, MACH_NOTIFY_NO_SENDERS, 1, n,
	    MACH_MSG_TYPE_MAKE_SEND_ONCE, &prev), KERN_SUCCESS);
	assert_int_equal(mvm_test_type(n), MACH_PORT_TYPE_RECEIVE);

	/* Cancelling returns the request's send-once right and clears the bit. */
	assert_kr(mach_port_request_notification(SELF, so, MACH_NOTIFY_DEAD_NAME, 0, MACH_PORT_NULL,
	    MACH_MSG_TYPE_MAKE_SEND_ONCE, &prev), KERN_SUCCESS);
	assert_int_equal(mvm_test_type(prev), MACH_PORT_TYPE_SEND_ONCE);
	assert_int_equal(mvm_test_type(so), MACH_PORT_TYPE_SEND_ONCE);
	assert_kr(mach_port_deallocate(SELF, prev), KERN_SUCCESS);
	assert_kr(mach_port_request_notification(SELF, p, MACH_NOTIFY_DEAD_NAME, 0, MACH_PORT_NULL,
	    MACH_MSG_TYPE_MAKE_SEND_ONCE, &prev), KERN_SUCCESS);
	assert_kr(mach_port_deallocate(SELF, prev), KERN_SUCCESS);
	assert_int_equal(mvm_test_type(p), MACH_PORT_TYPE_SEND_RECEIVE);

	/* Errors. */
	assert_kr(mach_port_type(SELF, MACH_PORT_NULL, &t), KERN_INVALID_NAME);
	assert_kr(mach_port_type(SELF, MACH_PORT_DEAD, &t), KERN_INVALID_NAME);
	assert_kr(mach_port_type(SELF, SELF, &t), KERN_INVALID_NAME);
	assert_kr(mach_port_type(SELF, MACH_PORT_MAKE(841, 1), &t), KERN_INVALID_NAME);
	assert_kr(mach_port_type(SELF, MACH_PORT_MAKE(0xfffffeu, 1), &t), KERN_INVALID_NAME);
	assert_kr(mach_port_type(BAD_TASK, p, &t), MACH_SEND_INVALID_DEST);

	assert_kr(mach_port_deallocate(SELF, so), KERN_SUCCESS);
	assert_kr(mach_port_destroy(SELF, p), KERN_SUCCESS);
	assert_kr(mach_port_destroy(SELF, n), KERN_SUCCESS);
	assert_kr(mach_port_destroy(SELF, s), KERN_SUCCESS);
	MVM_TEST_QUIESCENT();
}

static void
test_names_listing(void **state)
{
	mach_port_t r = mvm_test_receive(), sr = mvm_test_port_with_send(), ps, dn, so, nr = mvm_test_receive();
	mach_port_t prev;
	mach_port_array_t names = NULL;
	mach_port_type_array_t types = NULL;
	mach_msg_type_number_t nn = 0, nt = 0;
	struct {
		mach_port_t name;
		mach_port_type_t type;
		int seen;
	} want[6];
	int nwant = 0;

	(void)state;
	assert_kr(mach_port_allocate(SELF, MACH_PORT_RIGHT_PORT_SET, &ps), KERN_SUCCESS);
	assert_kr(mach_port_allocate(SELF, MACH_PORT_RIGHT_DEAD_NAME, &dn), KERN_SUCCESS);
	so = MACH_PORT_MAKE(850, 1);
	assert_kr(mach_port_insert_right(SELF, so, r, MACH_MSG_TYPE_MAKE_SEND_ONCE), KERN_SUCCESS);
	assert_kr(mach_port_request_notification(SELF, sr, MACH_NOTIFY_DEAD_NAME, 0, nr,
	    MACH_MSG_TYPE_MAKE_SEND_ONCE, &prev), KERN_SUCCESS);

	want[nwant++] = (typeof(want[0])){ r, MACH_PORT_TYPE_RECEIVE, 0 };
	want[nwant++] = (typeof(want[0])){ sr, MACH_PORT_TYPE_SEND_RECEIVE | MACH_PORT_TYPE_DNREQUEST, 0 };
	want[nwant++] = (typeof(want[0])){ ps, MACH_PORT_TYPE_PORT_SET, 0 };
	want[nwant++] = (typeof(want[0])){ dn, MACH_PORT_TYPE_DEAD_NAME, 0 };
	want[nwant++] = (typeof(want[0])){ so, MACH_PORT_TYPE_SEND_ONCE, 0 };
	want[nwant++] = (typeof(want[0])){ nr, MACH_PORT_TYPE_RECEIVE, 0 };

	assert_kr(mach_port_names(SELF, &names, &nn, &types, &nt), KERN_SUCCESS);
	assert_int_equal(nn, nwant);
	assert_int_equal(nt, nwant);
	for (mach_msg_type_number_t i = 0; i < nn; i++) {
		int found = 0;

		for (int j = 0; j < nwant; j++) {
			if (want[j].name != names[i])
				continue;
			assert_int_equal(want[j].seen, 0);
			assert_int_equal(types[i], want[j].type);
			want[j].seen = found = 1;
		}
		assert_true(found);
	}
	/* The arrays are the caller's memory, freed with vm_deallocate. */
	assert_kr(vm_deallocate(SELF, (vm_address_t)names, nn * sizeof(*names)), KERN_SUCCESS);
	assert_kr(vm_deallocate(SELF, (vm_address_t)types, nt * sizeof(*types)), KERN_SUCCESS);

	assert_kr(mach_port_names(BAD_TASK, &names, &nn, &types, &nt), MACH_SEND_INVALID_DEST);

	assert_kr(mach_port_destroy(SELF, so), KERN_SUCCESS);
	assert_kr(mach_port_destroy(SELF, r), KERN_SUCCESS);
	assert_kr(mach_port_destroy(SELF, sr), KERN_SUCCESS); /* port-deleted queues on nr */
	assert_kr(mach_port_destroy(SELF, ps), KERN_SUCCESS);
	assert_kr(mach_port_destroy(SELF, dn), KERN_SUCCESS);
	assert_kr(mach_port_destroy(SELF, nr), KERN_SUCCESS);

	/* An empty space: nothing listed, and nothing to free. */
	assert_kr(mach_port_names(SELF, &names, &nn, &types, &nt), KERN_SUCCESS);
	assert_int_equal(nn, 0);
	assert_int_equal(nt, 0);
	assert_kr(vm_deallocate(SELF, (vm_address_t)names, nn * sizeof(*names)), KERN_SUCCESS);
	assert_kr(vm_deallocate(SELF, (vm_address_t)types, nt * sizeof(*types)), KERN_SUCCESS);
	MVM_TEST_QUIESCENT();
}

static void
test_names_many(void **state)
{
	enum { N = 1500 }; /* more than one page of names */
	static mach_port_t p[N];
	mach_port_array_t names;
	mach_port_type_array_t types;
	mach_msg_type_number_t nn, nt;

	(void)state;
	for (int i = 0; i < N; i++)
		assert_kr(mach_port_allocate(SELF, MACH_PORT_RIGHT_DEAD_NAME, &p[i]), KERN_SUCCESS);
	assert_kr(mach_port_names(SELF, &names, &nn, &types, &nt), KERN_SUCCESS);
	assert_int_equal(nn, N);
	assert_int_equal(nt, N);
	for (mach_msg_type_number_t i = 0; i < nn; i++)
		assert_int_equal(types[i], MACH_PORT_TYPE_DEAD_NAME);
	assert_kr(vm_deallocate(SELF, (vm_address_t)names, nn * sizeof(*names)), KERN_SUCCESS);
	assert_kr(vm_deallocate(SELF, (vm_address_t)types, nt * sizeof(*types)), KERN_SUCCESS);
	for (int i = 0; i < N; i++)
		assert_kr(mach_port_deallocate(SELF, p[i]), KERN_SUCCESS);
	MVM_TEST_QUIESCENT();
}

/* ---- dead names -------------------------------------------------------------------- */

static void
test_dead_names_on_port_death(void **state)
{
	mach_port_t holder = mvm_test_receive(), p = mvm_test_port_with_send();
	mach_port_t so1 = MACH_PORT_MAKE(860, 1), so2 = MACH_PORT_MAKE(861, 1);

	(void)state;
	assert_kr(mach_port_mod_refs(SELF, p, MACH_PORT_RIGHT_SEND, 6), KERN_SUCCESS);
	assert_kr(mach_port_insert_right(SELF, so1, p, MACH_MSG_TYPE_MAKE_SEND_ONCE), KERN_SUCCESS);
	assert_kr(mach_port_insert_right(SELF, so2, p, MACH_MSG_TYPE_MAKE_SEND_ONCE), KERN_SUCCESS);
	/* The receive right waits in a message on holder; destroying holder kills it. */
	stash(holder, p);
	assert_int_equal(mvm_test_type(p), MACH_PORT_TYPE_SEND);
	assert_kr(mach_port_destroy(SELF, holder), KERN_SUCCESS);

	/* The send name is a dead name with the same user references. */
	assert_int_equal(mvm_test_type(p), MACH_PORT_TYPE_DEAD_NAME);
	assert_int_equal(mvm_test_refs(p, MACH_PORT_RIGHT_DEAD_NAME), 7);
	assert_int_equal(mvm_test_refs(p, MACH_PORT_RIGHT_SEND), 0);
	/* Send-once names are dead names with one reference each. */
	assert_int_equal(mvm_test_type(so1), MACH_PORT_TYPE_DEAD_NAME);
	assert_int_equal(mvm_test_refs(so1, MACH_PORT_RIGHT_DEAD_NAME), 1);
	assert_int_equal(mvm_test_type(so2), MACH_PORT_TYPE_DEAD_NAME);
	assert_int_equal(mvm_test_refs(so2, MACH_PORT_RIGHT_SEND_ONCE), 0);

	/* The port itself is gone; only names are left. */
	{
		struct mvm_ipc_stats s;

		mvm_ipc_stats(&s);
		assert_int_equal(s.ports, 0);
		assert_int_equal(s.names, 3);
	}
	/* A dead name cannot be sent to. */
	{
		mach_msg_header_t h;

		memset(&h, 0, sizeof(h));
		h.msgh_bits = MACH_MSGH_BITS(MACH_MSG_TYPE_COPY_SEND, 0);
		h.msgh_remote_port = p;
		assert_kr(mach_msg(&h, MACH_SEND_MSG, sizeof(h), 0, MACH_PORT_NULL, 0, MACH_PORT_NULL),
		    MACH_SEND_INVALID_DEST);
		h.msgh_bits = MACH_MSGH_BITS(MACH_MSG_TYPE_MOVE_SEND_ONCE, 0);
		h.msgh_remote_port = so1;
		assert_kr(mach_msg(&h, MACH_SEND_MSG, sizeof(h), 0, MACH_PORT_NULL, 0, MACH_PORT_NULL),
		    MACH_SEND_INVALID_DEST);
	}
	assert_int_equal(mvm_test_refs(p, MACH_PORT_RIGHT_DEAD_NAME), 7);
	assert_int_equal(mvm_test_refs(so1, MACH_PORT_RIGHT_DEAD_NAME), 1);

	assert_kr(mach_port_mod_refs(SELF, p, MACH_PORT_RIGHT_DEAD_NAME, -7), KERN_SUCCESS);
	assert_kr(mach_port_deallocate(SELF, so1), KERN_SUCCESS);
	assert_kr(mach_port_destroy(SELF, so2), KERN_SUCCESS);
	assert_invalid_name(p);
	assert_invalid_name(so1);
	assert_invalid_name(so2);
	MVM_TEST_QUIESCENT();
}

/* A dead name sent as a right arrives as MACH_PORT_DEAD; a send right to a port that
 * died in transit arrives as MACH_PORT_DEAD too. */
static void
test_dead_rights_in_messages(void **state)
{
	mach_port_t q = mvm_test_receive(), d, holder = mvm_test_receive(), p = mvm_test_port_with_send();

	(void)state;
	assert_kr(mach_port_allocate(SELF, MACH_PORT_RIGHT_DEAD_NAME, &d), KERN_SUCCESS);
	assert_kr(mach_port_mod_refs(SELF, d, MACH_PORT_RIGHT_DEAD_NAME, 2), KERN_SUCCESS);
	assert_kr(send_port(q, d, MACH_MSG_TYPE_COPY_SEND), MACH_MSG_SUCCESS);
	assert_int_equal(mvm_test_refs(d, MACH_PORT_RIGHT_DEAD_NAME), 3);
	assert_kr(send_port(q, d, MACH_MSG_TYPE_MOVE_SEND), MACH_MSG_SUCCESS);
	assert_int_equal(mvm_test_refs(d, MACH_PORT_RIGHT_DEAD_NAME), 2);
	assert_int_equal(recv_port(q, MACH_MSG_TYPE_PORT_SEND), MACH_PORT_DEAD);
	assert_int_equal(recv_port(q, MACH_MSG_TYPE_PORT_SEND), MACH_PORT_DEAD);
	assert_int_equal(mvm_test_refs(d, MACH_PORT_RIGHT_DEAD_NAME), 2);
	/* MAKE_SEND from a dead name is not a right it has. */
	assert_kr(send_port(q, d, MACH_MSG_TYPE_MAKE_SEND), MACH_SEND_INVALID_RIGHT);
	assert_int_equal(mvm_test_refs(d, MACH_PORT_RIGHT_DEAD_NAME), 2);

	/* p's send right goes into a message; p's receive right then dies; the message's
	 * right arrives dead, and the space's name is a dead name already. */
	assert_kr(send_port(q, p, MACH_MSG_TYPE_COPY_SEND), MACH_MSG_SUCCESS);
	stash(holder, p);
	assert_kr(mach_port_destroy(SELF, holder), KERN_SUCCESS);
	assert_int_equal(mvm_test_type(p), MACH_PORT_TYPE_DEAD_NAME);
	assert_int_equal(recv_port(q, MACH_MSG_TYPE_PORT_SEND), MACH_PORT_DEAD);
	assert_int_equal(mvm_test_refs(p, MACH_PORT_RIGHT_DEAD_NAME), 1);

	assert_kr(mach_port_deallocate(SELF, p), KERN_SUCCESS);
	assert_kr(mach_port_destroy(SELF, d), KERN_SUCCESS);
	assert_kr(mach_port_destroy(SELF, q), KERN_SUCCESS);
	MVM_TEST_QUIESCENT();
}

/* ---- destroy on each type ---------------------------------------------------------- */

static void
test_destroy_each_type(void **state)
{
	mach_port_t r = mvm_test_receive(), sr = mvm_test_port_with_send(), holder = mvm_test_receive();
	mach_port_t s, d, so = MACH_PORT_MAKE(870, 1), sonly = mvm_test_port_with_send(), m;

	(void)state;
	/* Receive right: the port dies. */
	assert_kr(mach_port_destroy(SELF, r), KERN_SUCCESS);
	assert_invalid_name(r);
	assert_kr(mach_port_destroy(SELF, r), KERN_INVALID_NAME);

	/* Send + receive with many user references: all of it goes. */
	assert_kr(mach_port_mod_refs(SELF, sr, MACH_PORT_RIGHT_SEND, 10), KERN_SUCCESS);
	assert_kr(mach_port_destroy(SELF, sr), KERN_SUCCESS);
	assert_invalid_name(sr);

	/* Send-only name: every user reference goes at once; the receive right stays. */
	assert_kr(mach_port_mod_refs(SELF, sonly, MACH_PORT_RIGHT_SEND, 3), KERN_SUCCESS);
	stash(holder, sonly);
	assert_kr(mach_port_destroy(SELF, sonly), KERN_SUCCESS);
	assert_invalid_name(sonly);
	m = unstash(holder);
	assert_int_equal(mvm_test_type(m), MACH_PORT_TYPE_RECEIVE);
	assert_false(mvm_test_status(m).mps_srights);

	/* Send-once name. */
	assert_kr(mach_port_insert_right(SELF, so, m, MACH_MSG_TYPE_MAKE_SEND_ONCE), KERN_SUCCESS);
	assert_kr(mach_port_destroy(SELF, so), KERN_SUCCESS);
	assert_invalid_name(so);
	assert_int_equal(mvm_test_status(m).mps_sorights, 1); /* its send-once notification's */
	assert_int_equal(mvm_test_status(m).mps_msgcount, 1);

	/* Port set with a member: the member leaves the set and lives on. */
	assert_kr(mach_port_allocate(SELF, MACH_PORT_RIGHT_PORT_SET, &s), KERN_SUCCESS);
	assert_kr(mach_port_move_member(SELF, m, s), KERN_SUCCESS);
	assert_kr(mach_port_destroy(SELF, s), KERN_SUCCESS);
	assert_invalid_name(s);
	assert_int_equal(mvm_test_status(m).mps_pset, MACH_PORT_NULL);

	/* Dead name with several references. */
	assert_kr(mach_port_allocate(SELF, MACH_PORT_RIGHT_DEAD_NAME, &d), KERN_SUCCESS);
	assert_kr(mach_port_mod_refs(SELF, d, MACH_PORT_RIGHT_DEAD_NAME, 4), KERN_SUCCESS);
	assert_kr(mach_port_destroy(SELF, d), KERN_SUCCESS);
	assert_invalid_name(d);

	/* Null and dead are no-ops; bad task; unknown names. */
	assert_kr(mach_port_destroy(SELF, MACH_PORT_NULL), KERN_SUCCESS);
	assert_kr(mach_port_destroy(SELF, MACH_PORT_DEAD), KERN_SUCCESS);
	assert_kr(mach_port_deallocate(SELF, MACH_PORT_NULL), KERN_SUCCESS);
	assert_kr(mach_port_deallocate(SELF, MACH_PORT_DEAD), KERN_SUCCESS);
	assert_kr(mach_port_destroy(SELF, SELF), KERN_INVALID_NAME);
	assert_kr(mach_port_destroy(BAD_TASK, m), MACH_SEND_INVALID_DEST);
	assert_kr(mach_port_deallocate(BAD_TASK, m), MACH_SEND_INVALID_DEST);

	assert_kr(mach_port_destroy(SELF, m), KERN_SUCCESS); /* and the notification on it */
	assert_kr(mach_port_destroy(SELF, holder), KERN_SUCCESS);
	MVM_TEST_QUIESCENT();
}

/* ---- stale names, bad tasks, invalid names --------------------------------------------- */

static void
test_stale_names(void **state)
{
	mach_port_t p = mvm_test_receive(), fresh, n;
	mach_port_urefs_t refs;
	mach_msg_type_name_t t;
	mach_port_t x;

	(void)state;
	assert_kr(mach_port_destroy(SELF, p), KERN_SUCCESS);
	/* Reuse the index under the next generation, as the allocator eventually does. */
	fresh = MACH_PORT_MAKE(MACH_PORT_INDEX(p), MACH_PORT_GEN(p) + 1);
	assert_true(fresh != p);
	assert_kr(mach_port_allocate_name(SELF, MACH_PORT_RIGHT_RECEIVE, fresh), KERN_SUCCESS);
	assert_kr(mach_port_insert_right(SELF, fresh, fresh, MACH_MSG_TYPE_MAKE_SEND), KERN_SUCCESS);

	/* The stale name denotes nothing for any call. */
	assert_invalid_name(p);
	assert_kr(mach_port_deallocate(SELF, p), KERN_INVALID_NAME);
	assert_kr(mach_port_destroy(SELF, p), KERN_INVALID_NAME);
	assert_kr(mach_port_mod_refs(SELF, p, MACH_PORT_RIGHT_SEND, 1), KERN_INVALID_NAME);
	assert_kr(mach_port_get_refs(SELF, p, MACH_PORT_RIGHT_SEND, &refs), KERN_INVALID_NAME);
	assert_kr(mach_port_insert_right(SELF, p, p, MACH_MSG_TYPE_MAKE_SEND), KERN_INVALID_CAPABILITY);
	assert_kr(mach_port_extract_right(SELF, p, MACH_MSG_TYPE_MAKE_SEND, &x, &t), KERN_INVALID_NAME);
	assert_kr(mach_port_request_notification(SELF, p, MACH_NOTIFY_NO_SENDERS, 0, MACH_PORT_NULL,
	    MACH_MSG_TYPE_MAKE_SEND_ONCE, &x), KERN_INVALID_NAME);
	{
		mach_port_status_t st;

		assert_kr(mach_port_get_receive_status(SELF, p, &st), KERN_INVALID_NAME);
	}
	assert_kr(send_port(p, MACH_PORT_NULL, MACH_MSG_TYPE_COPY_SEND), MACH_SEND_INVALID_DEST);
	assert_kr(send_port(fresh, p, MACH_MSG_TYPE_COPY_SEND), MACH_SEND_INVALID_RIGHT);
	{
		union rcv_buf u;

		assert_kr(mach_msg(&u.h, MACH_RCV_MSG | MACH_RCV_TIMEOUT, 0, sizeof(u), p, 0,
		    MACH_PORT_NULL), MACH_RCV_INVALID_NAME);
	}
	/* The fresh name is untouched. */
	assert_int_equal(mvm_test_type(fresh), MACH_PORT_TYPE_SEND_RECEIVE);
	assert_int_equal(send_refs(fresh), 1);
	assert_int_equal(mvm_test_status(fresh).mps_msgcount, 0);
	assert_kr(mach_port_destroy(SELF, fresh), KERN_SUCCESS);

	/* The allocator itself moves to a new generation when it reuses an index. */
	n = mvm_test_receive();
	assert_kr(mach_port_destroy(SELF, n), KERN_SUCCESS);
	for (int i = 0; i < 1 << 20; i++) {
		assert_kr(mach_port_allocate(SELF, MACH_PORT_RIGHT_DEAD_NAME, &x), KERN_SUCCESS);
		if (MACH_PORT_INDEX(x) == MACH_PORT_INDEX(n)) {
			assert_true(x != n);
			assert_invalid_name(n);
			assert_kr(mach_port_deallocate(SELF, n), KERN_INVALID_NAME);
			assert_int_equal(mvm_test_type(x), MACH_PORT_TYPE_DEAD_NAME);
			assert_kr(mach_port_deallocate(SELF, x), KERN_SUCCESS);
			break;
		}
		assert_kr(mach_port_deallocate(SELF, x), KERN_SUCCESS);
		assert_true(i < (1 << 20) - 1);
	}
	MVM_TEST_QUIESCENT();
}

static void
test_bad_task(void **state)
{
	mach_port_t p = mvm_test_port_with_send(), x;
	mach_port_urefs_t refs;
	mach_port_type_t t;
	mach_msg_type_name_t mt;
	mach_port_array_t a;
	mach_port_type_array_t ta;
	mach_msg_type_number_t n1, n2;
	mach_port_status_t st;
	const mach_port_t tasks[] = { MACH_PORT_NULL, MACH_PORT_DEAD, BAD_TASK, p };

	(void)state;
	for (size_t i = 0; i < sizeof(tasks) / sizeof(tasks[0]); i++) {
		mach_port_t task = tasks[i];

		assert_kr(mach_port_allocate(task, MACH_PORT_RIGHT_RECEIVE, &x), MACH_SEND_INVALID_DEST);
		assert_kr(mach_port_allocate_name(task, MACH_PORT_RIGHT_RECEIVE, MACH_PORT_MAKE(880, 1)),
		    MACH_SEND_INVALID_DEST);
		assert_kr(mach_port_deallocate(task, p), MACH_SEND_INVALID_DEST);
		assert_kr(mach_port_destroy(task, p), MACH_SEND_INVALID_DEST);
		assert_kr(mach_port_mod_refs(task, p, MACH_PORT_RIGHT_SEND, 1), MACH_SEND_INVALID_DEST);
		assert_kr(mach_port_get_refs(task, p, MACH_PORT_RIGHT_SEND, &refs),
		    MACH_SEND_INVALID_DEST);
		assert_kr(mach_port_insert_right(task, p, p, MACH_MSG_TYPE_MAKE_SEND),
		    MACH_SEND_INVALID_DEST);
		assert_kr(mach_port_extract_right(task, p, MACH_MSG_TYPE_MAKE_SEND, &x, &mt),
		    MACH_SEND_INVALID_DEST);
		assert_kr(mach_port_type(task, p, &t), MACH_SEND_INVALID_DEST);
		assert_kr(mach_port_names(task, &a, &n1, &ta, &n2), MACH_SEND_INVALID_DEST);
		assert_kr(mach_port_get_receive_status(task, p, &st), MACH_SEND_INVALID_DEST);
		assert_kr(mach_port_request_notification(task, p, MACH_NOTIFY_NO_SENDERS, 0,
		    MACH_PORT_NULL, MACH_MSG_TYPE_MAKE_SEND_ONCE, &x), MACH_SEND_INVALID_DEST);
	}
	/* Nothing changed. */
	assert_int_equal(mvm_test_type(p), MACH_PORT_TYPE_SEND_RECEIVE);
	assert_int_equal(send_refs(p), 1);
	assert_int_equal(mvm_test_status(p).mps_mscount, 1);
	assert_int_equal(names_in_use(), 1);
	assert_kr(mach_port_destroy(SELF, p), KERN_SUCCESS);
	MVM_TEST_QUIESCENT();
}

static void
test_invalid_names(void **state)
{
	const mach_port_t bad[] = { MACH_PORT_MAKE(890, 1), MACH_PORT_MAKE(0x7fffffu, 3), SELF,
		MACH_PORT_MAKE(0, 7) };
	mach_port_urefs_t refs;
	mach_port_t x;
	mach_msg_type_name_t mt;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		mach_port_t n = bad[i];

		assert_invalid_name(n);
		assert_kr(mach_port_deallocate(SELF, n), KERN_INVALID_NAME);
		assert_kr(mach_port_destroy(SELF, n), KERN_INVALID_NAME);
		for (mach_port_right_t r = 0; r < MACH_PORT_RIGHT_NUMBER; r++) {
			assert_kr(mach_port_mod_refs(SELF, n, r, 1), KERN_INVALID_NAME);
			assert_kr(mach_port_mod_refs(SELF, n, r, -1), KERN_INVALID_NAME);
			assert_kr(mach_port_get_refs(SELF, n, r, &refs), KERN_INVALID_NAME);
		}
		assert_kr(mach_port_extract_right(SELF, n, MACH_MSG_TYPE_COPY_SEND, &x, &mt),
		    KERN_INVALID_NAME);
		assert_kr(mach_port_request_notification(SELF, n, MACH_NOTIFY_DEAD_NAME, 0,
		    MACH_PORT_NULL, MACH_MSG_TYPE_MAKE_SEND_ONCE, &x), KERN_INVALID_NAME);
		assert_kr(mach_port_set_qlimit(SELF, n, 3), KERN_INVALID_NAME);
	}
	/* MACH_PORT_NULL and MACH_PORT_DEAD are not names either (except where Mach says). */
	assert_kr(mach_port_get_refs(SELF, MACH_PORT_NULL, MACH_PORT_RIGHT_SEND, &refs),
	    KERN_INVALID_NAME);
	assert_kr(mach_port_get_refs(SELF, MACH_PORT_DEAD, MACH_PORT_RIGHT_SEND, &refs),
	    KERN_INVALID_NAME);
	assert_kr(mach_port_mod_refs(SELF, MACH_PORT_NULL, MACH_PORT_RIGHT_SEND, 1),
	    KERN_INVALID_NAME);
	assert_kr(mach_port_extract_right(SELF, MACH_PORT_DEAD, MACH_MSG_TYPE_COPY_SEND, &x, &mt),
	    KERN_INVALID_NAME);
	assert_int_equal(names_in_use(), 0);
	MVM_TEST_QUIESCENT();
}

/* ---- rights carried in messages ------------------------------------------------------ */

static void
test_msg_move_send(void **state)
{
	mach_port_t q = mvm_test_receive(), p = mvm_test_port_with_send(), holder = mvm_test_receive(), x;

	(void)state;
	/* Several user references: one goes out, and merges back in. */
	assert_kr(mach_port_mod_refs(SELF, p, MACH_PORT_RIGHT_SEND, 2), KERN_SUCCESS);
	assert_kr(send_port(q, p, MACH_MSG_TYPE_MOVE_SEND), MACH_MSG_SUCCESS);
	assert_int_equal(send_refs(p), 2);
	assert_true(mvm_test_status(p).mps_srights);
	assert_int_equal(mvm_test_status(q).mps_msgcount, 1);
	assert_int_equal(recv_port(q, MACH_MSG_TYPE_PORT_SEND), p);
	assert_int_equal(send_refs(p), 3);
	assert_int_equal(mvm_test_status(p).mps_mscount, 1);

	/* The last user reference on a receive right's name: the name keeps the receive
	 * right while the send right travels. */
	assert_kr(mach_port_mod_refs(SELF, p, MACH_PORT_RIGHT_SEND, -2), KERN_SUCCESS);
	assert_kr(send_port(q, p, MACH_MSG_TYPE_MOVE_SEND), MACH_MSG_SUCCESS);
	assert_int_equal(mvm_test_type(p), MACH_PORT_TYPE_RECEIVE);
	assert_true(mvm_test_status(p).mps_srights); /* the message holds it */
	assert_int_equal(recv_port(q, MACH_MSG_TYPE_PORT_SEND), p);
	assert_int_equal(mvm_test_type(p), MACH_PORT_TYPE_SEND_RECEIVE);
	assert_int_equal(send_refs(p), 1);

	/* The last user reference of a send-only name: the name goes away, and the right
	 * comes back under a name of its own. */
	stash(holder, p);
	assert_kr(send_port(q, p, MACH_MSG_TYPE_MOVE_SEND), MACH_MSG_SUCCESS);
	assert_invalid_name(p);
	x = recv_port(q, MACH_MSG_TYPE_PORT_SEND);
	assert_int_equal(mvm_test_type(x), MACH_PORT_TYPE_SEND);
	assert_int_equal(send_refs(x), 1);
	p = unstash(holder);
	assert_int_equal(p, x);
	assert_int_equal(mvm_test_type(p), MACH_PORT_TYPE_SEND_RECEIVE);

	/* Moving more references than the name has fails and changes nothing. */
	{
		struct ports2_msg m;

		memset(&m, 0, sizeof(m));
		m.h.msgh_bits = MACH_MSGH_BITS(MACH_MSG_TYPE_MAKE_SEND, 0) | MACH_MSGH_BITS_COMPLEX;
		m.h.msgh_remote_port = q;
		set_port_type(&m.t, MACH_MSG_TYPE_MOVE_SEND, 2);
		m.port[0] = m.port[1] = p;
		assert_kr(mach_msg(&m.h, MACH_SEND_MSG, sizeof(m), 0, MACH_PORT_NULL, 0,
		    MACH_PORT_NULL), MACH_SEND_INVALID_RIGHT);
		assert_int_equal(send_refs(p), 1);
		assert_int_equal(mvm_test_status(q).mps_msgcount, 0);
		/* With two, both go, and both come back. */
		assert_kr(mach_port_mod_refs(SELF, p, MACH_PORT_RIGHT_SEND, 1), KERN_SUCCESS);
		assert_kr(mach_msg(&m.h, MACH_SEND_MSG, sizeof(m), 0, MACH_PORT_NULL, 0,
		    MACH_PORT_NULL), MACH_MSG_SUCCESS);
		assert_int_equal(mvm_test_type(p), MACH_PORT_TYPE_RECEIVE);
		union rcv_buf u;

		assert_kr(mach_msg(&u.h, MACH_RCV_MSG | MACH_RCV_TIMEOUT, 0, sizeof(u), q, 0,
		    MACH_PORT_NULL), MACH_MSG_SUCCESS);
		assert_int_equal(u.p2.t.msgt_name, MACH_MSG_TYPE_PORT_SEND);
		assert_int_equal(u.p2.t.msgt_number, 2);
		assert_int_equal(u.p2.port[0], p);
		assert_int_equal(u.p2.port[1], p);
		assert_int_equal(send_refs(p), 2);
	}

	assert_kr(mach_port_destroy(SELF, p), KERN_SUCCESS);
	assert_kr(mach_port_destroy(SELF, q), KERN_SUCCESS);
	assert_kr(mach_port_destroy(SELF, holder), KERN_SUCCESS);
	MVM_TEST_QUIESCENT();
}

static void
test_msg_copy_and_make_send(void **state)
{
	mach_port_t q = mvm_test_receive(), p = mvm_test_receive();

	(void)state;
	/* MAKE_SEND: the sender keeps what it had; the make-send count goes up. */
	assert_kr(send_port(q, p, MACH_MSG_TYPE_MAKE_SEND), MACH_MSG_SUCCESS);
	assert_int_equal(mvm_test_type(p), MACH_PORT_TYPE_RECEIVE);
	assert_int_equal(mvm_test_status(p).mps_mscount, 1);
	assert_true(mvm_test_status(p).mps_srights);
	assert_int_equal(recv_port(q, MACH_MSG_TYPE_PORT_SEND), p);
	assert_int_equal(mvm_test_type(p), MACH_PORT_TYPE_SEND_RECEIVE);
	assert_int_equal(send_refs(p), 1);

	/* COPY_SEND: the sender keeps its references; the receiver gets one more. */
	assert_kr(send_port(q, p, MACH_MSG_TYPE_COPY_SEND), MACH_MSG_SUCCESS);
	assert_int_equal(send_refs(p), 1);
	assert_int_equal(mvm_test_status(p).mps_mscount, 1);
	assert_int_equal(recv_port(q, MACH_MSG_TYPE_PORT_SEND), p);
	assert_int_equal(send_refs(p), 2);

	/* COPY_SEND needs a send right; MAKE_SEND a receive right. */
	assert_kr(mach_port_mod_refs(SELF, p, MACH_PORT_RIGHT_SEND, -2), KERN_SUCCESS);
	assert_kr(send_port(q, p, MACH_MSG_TYPE_COPY_SEND), MACH_SEND_INVALID_RIGHT);
	assert_kr(send_port(q, p, MACH_MSG_TYPE_MOVE_SEND), MACH_SEND_INVALID_RIGHT);
	assert_kr(send_port(q, p, MACH_MSG_TYPE_MOVE_SEND_ONCE), MACH_SEND_INVALID_RIGHT);
	assert_int_equal(mvm_test_status(q).mps_msgcount, 0);

	/* A right received onto a name at MACH_PORT_UREFS_MAX is pegged there. */
	assert_kr(mach_port_insert_right(SELF, p, p, MACH_MSG_TYPE_MAKE_SEND), KERN_SUCCESS);
	assert_kr(mach_port_mod_refs(SELF, p, MACH_PORT_RIGHT_SEND,
	    (mach_port_delta_t)(MACH_PORT_UREFS_MAX - 1)), KERN_SUCCESS);
	assert_kr(send_port(q, p, MACH_MSG_TYPE_COPY_SEND), MACH_MSG_SUCCESS);
	assert_kr(send_port(q, p, MACH_MSG_TYPE_MAKE_SEND), MACH_MSG_SUCCESS);
	assert_int_equal(recv_port(q, MACH_MSG_TYPE_PORT_SEND), p);
	assert_int_equal(recv_port(q, MACH_MSG_TYPE_PORT_SEND), p);
	assert_int_equal(send_refs(p), MACH_PORT_UREFS_MAX);
	/* ... and the accounting still knows when the last send right goes. */
	assert_kr(mach_port_mod_refs(SELF, p, MACH_PORT_RIGHT_SEND,
	    -(mach_port_delta_t)MACH_PORT_UREFS_MAX), KERN_SUCCESS);
	assert_false(mvm_test_status(p).mps_srights);
	assert_int_equal(mvm_test_type(p), MACH_PORT_TYPE_RECEIVE);

	assert_kr(mach_port_destroy(SELF, p), KERN_SUCCESS);
	assert_kr(mach_port_destroy(SELF, q), KERN_SUCCESS);
	MVM_TEST_QUIESCENT();
}

static void
test_msg_send_once(void **state)
{
	mach_port_t q = mvm_test_receive(), p = mvm_test_receive(), so, so2;

	(void)state;
	/* MAKE_SEND_ONCE: no name for it on the sender's side. */
	assert_kr(send_port(q, p, MACH_MSG_TYPE_MAKE_SEND_ONCE), MACH_MSG_SUCCESS);
	assert_int_equal(mvm_test_type(p), MACH_PORT_TYPE_RECEIVE);
	assert_int_equal(mvm_test_status(p).mps_sorights, 1);
	assert_int_equal(mvm_test_status(p).mps_mscount, 0);
	assert_int_equal(names_in_use(), 2);
	so = recv_port(q, MACH_MSG_TYPE_PORT_SEND_ONCE);
	assert_true(MACH_PORT_VALID(so) && so != p);
	assert_int_equal(mvm_test_type(so), MACH_PORT_TYPE_SEND_ONCE);
	assert_int_equal(mvm_test_status(p).mps_sorights, 1);

	/* MOVE_SEND_ONCE: the name goes; the right comes back under a new one. */
	assert_kr(send_port(q, so, MACH_MSG_TYPE_MOVE_SEND_ONCE), MACH_MSG_SUCCESS);
	assert_invalid_name(so);
	assert_int_equal(names_in_use(), 2);
	assert_int_equal(mvm_test_status(p).mps_sorights, 1);
	/* It cannot be moved twice, or copied. */
	assert_kr(send_port(q, so, MACH_MSG_TYPE_MOVE_SEND_ONCE), MACH_SEND_INVALID_RIGHT);
	so2 = recv_port(q, MACH_MSG_TYPE_PORT_SEND_ONCE);
	assert_int_equal(mvm_test_type(so2), MACH_PORT_TYPE_SEND_ONCE);
	assert_kr(send_port(q, so2, MACH_MSG_TYPE_COPY_SEND), MACH_SEND_INVALID_RIGHT);
	assert_kr(send_port(q, so2, MACH_MSG_TYPE_MOVE_SEND), MACH_SEND_INVALID_RIGHT);

	/* Two send-once rights in one message get two names. */
	{
		struct ports2_msg m;
		union rcv_buf u;

		memset(&m, 0, sizeof(m));
		m.h.msgh_bits = MACH_MSGH_BITS(MACH_MSG_TYPE_MAKE_SEND, 0) | MACH_MSGH_BITS_COMPLEX;
		m.h.msgh_remote_port = q;
		set_port_type(&m.t, MACH_MSG_TYPE_MAKE_SEND_ONCE, 2);
		m.port[0] = m.port[1] = p;
		assert_kr(mach_msg(&m.h, MACH_SEND_MSG, sizeof(m), 0, MACH_PORT_NULL, 0,
		    MACH_PORT_NULL), MACH_MSG_SUCCESS);
		assert_int_equal(mvm_test_status(p).mps_sorights, 3);
		assert_kr(mach_msg(&u.h, MACH_RCV_MSG | MACH_RCV_TIMEOUT, 0, sizeof(u), q, 0,
		    MACH_PORT_NULL), MACH_MSG_SUCCESS);
		assert_int_equal(u.p2.t.msgt_name, MACH_MSG_TYPE_PORT_SEND_ONCE);
		assert_true(u.p2.port[0] != u.p2.port[1]);
		assert_int_equal(mvm_test_type(u.p2.port[0]), MACH_PORT_TYPE_SEND_ONCE);
		assert_int_equal(mvm_test_type(u.p2.port[1]), MACH_PORT_TYPE_SEND_ONCE);
		assert_kr(mach_port_deallocate(SELF, u.p2.port[0]), KERN_SUCCESS);
		assert_kr(mach_port_deallocate(SELF, u.p2.port[1]), KERN_SUCCESS);
	}

	/* Using a send-once right as a destination consumes it. */
	{
		mach_msg_header_t h;
		union rcv_buf u;

		memset(&h, 0, sizeof(h));
		h.msgh_bits = MACH_MSGH_BITS(MACH_MSG_TYPE_MOVE_SEND_ONCE, 0);
		h.msgh_remote_port = so2;
		h.msgh_id = 99;
		assert_kr(mach_msg(&h, MACH_SEND_MSG, sizeof(h), 0, MACH_PORT_NULL, 0, MACH_PORT_NULL),
		    MACH_MSG_SUCCESS);
		assert_invalid_name(so2);
		/* so2, now in the message, and the two notifications' destination rights. */
		assert_int_equal(mvm_test_status(p).mps_sorights, 3);
		/* Skip the two send-once notifications the deallocations queued. */
		for (int i = 0; i < 3; i++) {
			assert_kr(mach_msg(&u.h, MACH_RCV_MSG | MACH_RCV_TIMEOUT, 0, sizeof(u), p, 0,
			    MACH_PORT_NULL), MACH_MSG_SUCCESS);
			if (u.h.msgh_id == 99)
				break;
			assert_int_equal(u.h.msgh_id, MACH_NOTIFY_SEND_ONCE);
		}
		assert_int_equal(u.h.msgh_id, 99);
		assert_int_equal(MACH_MSGH_BITS_LOCAL(u.h.msgh_bits), MACH_MSG_TYPE_PORT_SEND_ONCE);
		assert_int_equal(mvm_test_status(p).mps_sorights, 0);
	}

	assert_kr(mach_port_destroy(SELF, p), KERN_SUCCESS);
	assert_kr(mach_port_destroy(SELF, q), KERN_SUCCESS);
	MVM_TEST_QUIESCENT();
}

static void
test_msg_move_receive(void **state)
{
	mach_port_t q = mvm_test_receive(), p = mvm_test_receive(), r, sp = mvm_test_port_with_send();
	mach_port_status_t st;

	(void)state;
	/* A receive-only name: the name goes with the right. Queued messages travel too. */
	assert_kr(mach_port_insert_right(SELF, p, p, MACH_MSG_TYPE_MAKE_SEND), KERN_SUCCESS);
	assert_kr(send_port(p, MACH_PORT_NULL, MACH_MSG_TYPE_COPY_SEND), MACH_MSG_SUCCESS);
	assert_kr(mach_port_deallocate(SELF, p), KERN_SUCCESS);
	assert_kr(mach_port_set_seqno(SELF, p, 77), KERN_SUCCESS);
	assert_kr(mach_port_set_qlimit(SELF, p, 9), KERN_SUCCESS);
	assert_int_equal(mvm_test_type(p), MACH_PORT_TYPE_RECEIVE);
	assert_int_equal(mvm_test_status(p).mps_mscount, 2);
	assert_kr(send_port(q, p, MACH_MSG_TYPE_MOVE_RECEIVE), MACH_MSG_SUCCESS);
	assert_invalid_name(p);
	assert_int_equal(names_in_use(), 2);
	r = recv_port(q, MACH_MSG_TYPE_PORT_RECEIVE);
	assert_int_equal(mvm_test_type(r), MACH_PORT_TYPE_RECEIVE);
	st = mvm_test_status(r);
	assert_int_equal(st.mps_msgcount, 1);
	assert_int_equal(st.mps_qlimit, 9);
	assert_int_equal(st.mps_seqno, 0);   /* reset when the right moves */
	assert_int_equal(st.mps_mscount, 0); /* likewise */
	assert_true(st.mps_srights);         /* the queued message's destination right */
	{
		union rcv_buf u;

		assert_kr(mach_msg(&u.h, MACH_RCV_MSG | MACH_RCV_TIMEOUT, 0, sizeof(u), r, 0,
		    MACH_PORT_NULL), MACH_MSG_SUCCESS);
		assert_int_equal(u.h.msgh_local_port, r);
		assert_int_equal(u.h.msgh_seqno, 0);
	}
	assert_false(mvm_test_status(r).mps_srights);

	/* A name with send rights keeps them while the receive right travels, and gets it
	 * back under the same name. */
	assert_kr(mach_port_mod_refs(SELF, sp, MACH_PORT_RIGHT_SEND, 1), KERN_SUCCESS);
	assert_kr(send_port(q, sp, MACH_MSG_TYPE_MOVE_RECEIVE), MACH_MSG_SUCCESS);
	assert_int_equal(mvm_test_type(sp), MACH_PORT_TYPE_SEND);
	assert_int_equal(send_refs(sp), 2);
	assert_kr(mach_port_get_receive_status(SELF, sp, &st), KERN_INVALID_RIGHT);
	assert_kr(mach_port_mod_refs(SELF, sp, MACH_PORT_RIGHT_RECEIVE, -1), KERN_INVALID_RIGHT);
	/* It cannot be moved twice, nor made a send right from. */
	assert_kr(send_port(q, sp, MACH_MSG_TYPE_MOVE_RECEIVE), MACH_SEND_INVALID_RIGHT);
	assert_kr(send_port(q, sp, MACH_MSG_TYPE_MAKE_SEND), MACH_SEND_INVALID_RIGHT);
	assert_int_equal(recv_port(q, MACH_MSG_TYPE_PORT_RECEIVE), sp);
	assert_int_equal(mvm_test_type(sp), MACH_PORT_TYPE_SEND_RECEIVE);
	assert_int_equal(send_refs(sp), 2);

	/* A receive right cannot be sent in a message to itself. */
	assert_kr(send_port(sp, sp, MACH_MSG_TYPE_MOVE_RECEIVE), MACH_SEND_INVALID_RIGHT);
	assert_int_equal(mvm_test_type(sp), MACH_PORT_TYPE_SEND_RECEIVE);

	assert_kr(mach_port_destroy(SELF, r), KERN_SUCCESS);
	assert_kr(mach_port_destroy(SELF, sp), KERN_SUCCESS);
	assert_kr(mach_port_destroy(SELF, q), KERN_SUCCESS);
	MVM_TEST_QUIESCENT();
}

/* Header rights: the reply right, with each disposition. */
static void
test_msg_reply_rights(void **state)
{
	mach_port_t q = mvm_test_receive(), p = mvm_test_receive();
	mach_msg_header_t h;
	union rcv_buf u;

	(void)state;
	memset(&h, 0, sizeof(h));
	h.msgh_bits = MACH_MSGH_BITS(MACH_MSG_TYPE_MAKE_SEND, MACH_MSG_TYPE_MAKE_SEND_ONCE);
	h.msgh_remote_port = q;
	h.msgh_local_port = p;
	assert_kr(mach_msg(&h, MACH_SEND_MSG, sizeof(h), 0, MACH_PORT_NULL, 0, MACH_PORT_NULL),
	    MACH_MSG_SUCCESS);
	assert_int_equal(mvm_test_status(p).mps_sorights, 1);
	assert_kr(mach_msg(&u.h, MACH_RCV_MSG | MACH_RCV_TIMEOUT, 0, sizeof(u), q, 0,
	    MACH_PORT_NULL), MACH_MSG_SUCCESS);
	assert_int_equal(MACH_MSGH_BITS_REMOTE(u.h.msgh_bits), MACH_MSG_TYPE_PORT_SEND_ONCE);
	assert_int_equal(MACH_MSGH_BITS_LOCAL(u.h.msgh_bits), MACH_MSG_TYPE_PORT_SEND);
	assert_int_equal(u.h.msgh_local_port, q);
	assert_int_equal(mvm_test_type(u.h.msgh_remote_port), MACH_PORT_TYPE_SEND_ONCE);
	assert_kr(mach_port_deallocate(SELF, u.h.msgh_remote_port), KERN_SUCCESS);

	h.msgh_bits = MACH_MSGH_BITS(MACH_MSG_TYPE_MAKE_SEND, MACH_MSG_TYPE_MAKE_SEND);
	h.msgh_remote_port = q;
	h.msgh_local_port = p;
	assert_kr(mach_msg(&h, MACH_SEND_MSG, sizeof(h), 0, MACH_PORT_NULL, 0, MACH_PORT_NULL),
	    MACH_MSG_SUCCESS);
	assert_int_equal(mvm_test_type(p), MACH_PORT_TYPE_RECEIVE);
	assert_kr(mach_msg(&u.h, MACH_RCV_MSG | MACH_RCV_TIMEOUT, 0, sizeof(u), q, 0,
	    MACH_PORT_NULL), MACH_MSG_SUCCESS);
	assert_int_equal(MACH_MSGH_BITS_REMOTE(u.h.msgh_bits), MACH_MSG_TYPE_PORT_SEND);
	assert_int_equal(u.h.msgh_remote_port, p);
	assert_int_equal(send_refs(p), 1);

	/* MOVE_SEND reply with the only reference: the name keeps just the receive right. */
	h.msgh_bits = MACH_MSGH_BITS(MACH_MSG_TYPE_MAKE_SEND, MACH_MSG_TYPE_MOVE_SEND);
	h.msgh_remote_port = q;
	h.msgh_local_port = p;
	assert_kr(mach_msg(&h, MACH_SEND_MSG, sizeof(h), 0, MACH_PORT_NULL, 0, MACH_PORT_NULL),
	    MACH_MSG_SUCCESS);
	assert_int_equal(mvm_test_type(p), MACH_PORT_TYPE_RECEIVE);
	/* A reply right the sender does not have. */
	h.msgh_bits = MACH_MSGH_BITS(MACH_MSG_TYPE_MAKE_SEND, MACH_MSG_TYPE_COPY_SEND);
	h.msgh_remote_port = q;
	h.msgh_local_port = p;
	assert_kr(mach_msg(&h, MACH_SEND_MSG, sizeof(h), 0, MACH_PORT_NULL, 0, MACH_PORT_NULL),
	    MACH_SEND_INVALID_REPLY);
	assert_kr(mach_msg(&u.h, MACH_RCV_MSG | MACH_RCV_TIMEOUT, 0, sizeof(u), q, 0,
	    MACH_PORT_NULL), MACH_MSG_SUCCESS);
	assert_int_equal(u.h.msgh_remote_port, p);
	assert_int_equal(send_refs(p), 1);
	assert_no_message(q);

	assert_kr(mach_port_destroy(SELF, p), KERN_SUCCESS);
	assert_kr(mach_port_destroy(SELF, q), KERN_SUCCESS);
	MVM_TEST_QUIESCENT();
}

/* Rights in a message that is destroyed unreceived are released, not leaked. */
static void
test_msg_rights_released_with_queue(void **state)
{
	mach_port_t q = mvm_test_receive(), p = mvm_test_port_with_send(), r = mvm_test_receive();
	mach_port_t so = MACH_PORT_MAKE(895, 1);

	(void)state;
	assert_kr(mach_port_insert_right(SELF, so, p, MACH_MSG_TYPE_MAKE_SEND_ONCE), KERN_SUCCESS);
	assert_kr(send_port(q, p, MACH_MSG_TYPE_COPY_SEND), MACH_MSG_SUCCESS);
	assert_kr(send_port(q, p, MACH_MSG_TYPE_MAKE_SEND), MACH_MSG_SUCCESS);
	assert_kr(send_port(q, so, MACH_MSG_TYPE_MOVE_SEND_ONCE), MACH_MSG_SUCCESS);
	assert_kr(send_port(q, r, MACH_MSG_TYPE_MOVE_RECEIVE), MACH_MSG_SUCCESS);
	assert_int_equal(mvm_test_status(p).mps_sorights, 1);
	assert_kr(mach_port_deallocate(SELF, p), KERN_SUCCESS);
	assert_true(mvm_test_status(p).mps_srights); /* two in messages */
	assert_int_equal(mvm_test_status(q).mps_msgcount, 4);
	assert_kr(mach_port_destroy(SELF, q), KERN_SUCCESS);
	assert_false(mvm_test_status(p).mps_srights);
	/* The unused send-once right said so to p: it is the notification's destination. */
	assert_int_equal(mvm_test_status(p).mps_sorights, 1);
	assert_int_equal(mvm_test_status(p).mps_msgcount, 1);
	assert_kr(mach_port_destroy(SELF, p), KERN_SUCCESS);
	MVM_TEST_QUIESCENT();
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_allocate_each_right),
		cmocka_unit_test(test_allocate_many_names_distinct),
		cmocka_unit_test(test_allocate_name),
		cmocka_unit_test(test_send_urefs),
		cmocka_unit_test(test_receive_and_set_refs),
		cmocka_unit_test(test_dead_name_urefs),
		cmocka_unit_test(test_send_once_refs),
		cmocka_unit_test(test_mod_refs_receive_leaves_dead_name),
		cmocka_unit_test(test_insert_make_send),
		cmocka_unit_test(test_insert_send_once_and_copy_send),
		cmocka_unit_test(test_insert_move_send_and_receive),
		cmocka_unit_test(test_extract_every_disposition),
		cmocka_unit_test(test_extract_from_dead_name),
		cmocka_unit_test(test_type_and_dnrequest),
		cmocka_unit_test(test_names_listing),
		cmocka_unit_test(test_names_many),
		cmocka_unit_test(test_dead_names_on_port_death),
		cmocka_unit_test(test_dead_rights_in_messages),
		cmocka_unit_test(test_destroy_each_type),
		cmocka_unit_test(test_stale_names),
		cmocka_unit_test(test_bad_task),
		cmocka_unit_test(test_invalid_names),
		cmocka_unit_test(test_msg_move_send),
		cmocka_unit_test(test_msg_copy_and_make_send),
		cmocka_unit_test(test_msg_send_once),
		cmocka_unit_test(test_msg_move_receive),
		cmocka_unit_test(test_msg_reply_rights),
		cmocka_unit_test(test_msg_rights_released_with_queue),
	};

	return cmocka_run_group_tests_name("rights", tests, NULL, NULL);
}
