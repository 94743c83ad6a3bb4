/*
 * tests/unit/test_pset.c: port sets.
 *
 * Membership (mach_port_move_member, mach_port_get_set_status), receiving through a set
 * (arrival order across members, the member's name and sequence number in each message),
 * what happens to queued messages when a port joins or leaves a set, and the receivers
 * that are told when the port or set they wait on changes or dies.
 *
 * The tests with a blocked receiver run it on its own thread and look at the waiting list
 * of the port or set inside the IPC layer (white-box, under its lock) to know that it is
 * blocked before they act, so nothing depends on a sleep being long enough.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mvm_test.h"
#include "ipc/ipc.h"

struct port_msg {
	mach_msg_header_t h;
	mach_msg_type_t t;
	mach_port_t port;
};

static mach_msg_return_t
send_id(mach_port_t dest, mach_msg_id_t id)
{
	mach_msg_header_t h = {
		.msgh_bits = MACH_MSGH_BITS(MACH_MSG_TYPE_MAKE_SEND_ONCE, 0),
		.msgh_size = sizeof(h),
		.msgh_remote_port = dest,
		.msgh_id = id,
	};

	return mach_msg(&h, MACH_SEND_MSG, sizeof(h), 0, MACH_PORT_NULL, 0, MACH_PORT_NULL);
}

static void
expect_msg(mach_port_t name, mach_msg_id_t id, mach_port_t local, mach_port_seqno_t seqno)
{
	mvm_test_msg_t m;

	assert_kr(mvm_test_rcv_now(name, &m), MACH_MSG_SUCCESS);
	assert_int_equal(m.h.msgh_id, id);
	assert_int_equal(m.h.msgh_local_port, local);
	assert_int_equal(m.h.msgh_seqno, seqno);
	mach_msg_destroy(&m.h);
}

static void
expect_empty(mach_port_t name)
{
	mvm_test_msg_t m;

	assert_kr(mvm_test_rcv_now(name, &m), MACH_RCV_TIMED_OUT);
}

static mach_port_t
new_port(void)
{
	mach_port_t p;

	assert_kr(mach_port_allocate(mach_task_self(), MACH_PORT_RIGHT_RECEIVE, &p), KERN_SUCCESS);
	return p;
}

static mach_port_t
new_set(void)
{
	mach_port_t s;

	assert_kr(mach_port_allocate(mach_task_self(), MACH_PORT_RIGHT_PORT_SET, &s), KERN_SUCCESS);
	return s;
}

static mach_port_t
pset_of(mach_port_t p)
{
	mach_port_status_t st;

	assert_kr(mach_port_get_receive_status(mach_task_self(), p, &st), KERN_SUCCESS);
	return st.mps_pset;
}

static void
destroy(mach_port_t name)
{
	assert_kr(mach_port_destroy(mach_task_self(), name), KERN_SUCCESS);
}

static int
cmp_names(const void *a, const void *b)
{
	mach_port_t x = *(const mach_port_t *)a, y = *(const mach_port_t *)b;

	return x < y ? -1 : x > y;
}

/* Check that the members of set s are exactly want[0..n). */
static void
expect_members(mach_port_t s, const mach_port_t *want, unsigned n)
{
	mach_port_array_t members = NULL;
	mach_msg_type_number_t cnt = 12345;
	mach_port_t sorted[16];

	assert_true(n <= 16);
	assert_kr(mach_port_get_set_status(mach_task_self(), s, &members, &cnt), KERN_SUCCESS);
	assert_int_equal(cnt, n);
	if (n == 0) {
		assert_kr(vm_deallocate(mach_task_self(), (vm_address_t)members, 0), KERN_SUCCESS);
		return;
	}
	assert_non_null(members);
	memcpy(sorted, want, n * sizeof(mach_port_t));
	qsort(sorted, n, sizeof(mach_port_t), cmp_names);
	qsort(members, cnt, sizeof(mach_port_t), cmp_names);
	for (unsigned i = 0; i < n; i++)
		assert_int_equal(members[i], sorted[i]);
	assert_kr(vm_deallocate(mach_task_self(), (vm_address_t)members, cnt * sizeof(mach_port_t)),
	    KERN_SUCCESS);
}

/* ---- blocked receivers ----------------------------------------------------------------- */

/* White-box: threads blocked in receive on `name` (a receive right or a port set). */
static unsigned
blocked_receivers(mach_port_t name)
{
	struct mvm_wlist *l = NULL;
	unsigned n = 0;
	uint32_t idx;

	mvm__ipc_lock();
	idx = mvm__entry_lookup(name);
	if (idx != MVM_NO_ENTRY) {
		struct mvm_entry *e = mvm__entry(idx);

		if (e->type & MACH_PORT_TYPE_PORT_SET)
			l = &e->obj.pset->mq.receivers;
		else if (e->type & MACH_PORT_TYPE_RECEIVE)
			l = &e->obj.port->mq.receivers;
	}
	for (struct mvm_waiter *w = l != NULL ? l->head : NULL; w != NULL; w = w->next)
		n++;
	mvm__ipc_unlock();
	return n;
}

static void
sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

static void
await_blocked_receivers(mach_port_t name, unsigned n)
{
	for (int i = 0; i < 10000; i++) {
		if (blocked_receivers(name) == n)
			return;
		sleep_ms(1);
	}
	fail_msg("expected %u blocked receivers, have %u", n, blocked_receivers(name));
}

struct receiver {
	pthread_t thread;
	mach_port_t name;
	mach_msg_option_t opt;
	mach_msg_timeout_t timeout;
	mach_msg_return_t result;
	mvm_test_msg_t msg;
};

static void *
receiver_main(void *arg)
{
	struct receiver *r = arg;

	r->result = mach_msg(&r->msg.h, MACH_RCV_MSG | r->opt, 0, sizeof(r->msg), r->name,
	    r->timeout, MACH_PORT_NULL);
	return NULL;
}

/* Start a thread receiving on `name` and wait until it is blocked there. */
static void
receiver_start(struct receiver *r, mach_port_t name)
{
	memset(r, 0, sizeof(*r));
	r->name = name;
	r->result = ~0;
	assert_int_equal(pthread_create(&r->thread, NULL, receiver_main, r), 0);
	await_blocked_receivers(name, 1);
}

static mach_msg_return_t
receiver_join(struct receiver *r)
{
	assert_int_equal(pthread_join(r->thread, NULL), 0);
	return r->result;
}

/* ---- tests ------------------------------------------------------------------------------ */

static void
pset_allocate_and_membership(void **state)
{
	mach_port_t s1 = new_set(), s2 = new_set(), a = new_port(), b = new_port();
	mach_port_urefs_t refs = 0;

	(void)state;
	assert_int_equal(mvm_test_type(s1), MACH_PORT_TYPE_PORT_SET);
	assert_kr(mach_port_get_refs(mach_task_self(), s1, MACH_PORT_RIGHT_PORT_SET, &refs),
	    KERN_SUCCESS);
	assert_int_equal(refs, 1);
	expect_members(s1, NULL, 0);
	assert_int_equal(pset_of(a), MACH_PORT_NULL);

	assert_kr(mach_port_move_member(mach_task_self(), a, s1), KERN_SUCCESS);
	assert_kr(mach_port_move_member(mach_task_self(), b, s1), KERN_SUCCESS);
	assert_int_equal(pset_of(a), s1);
	expect_members(s1, (mach_port_t[]){ a, b }, 2);
	/* Moving into the set it is already in is fine. */
	assert_kr(mach_port_move_member(mach_task_self(), a, s1), KERN_SUCCESS);
	expect_members(s1, (mach_port_t[]){ a, b }, 2);

	/* From one set straight into another. */
	assert_kr(mach_port_move_member(mach_task_self(), a, s2), KERN_SUCCESS);
	assert_int_equal(pset_of(a), s2);
	expect_members(s1, (mach_port_t[]){ b }, 1);
	expect_members(s2, (mach_port_t[]){ a }, 1);

	/* Out of a set; a second time is KERN_NOT_IN_SET. */
	assert_kr(mach_port_move_member(mach_task_self(), a, MACH_PORT_NULL), KERN_SUCCESS);
	assert_int_equal(pset_of(a), MACH_PORT_NULL);
	expect_members(s2, NULL, 0);
	assert_kr(mach_port_move_member(mach_task_self(), a, MACH_PORT_NULL), KERN_NOT_IN_SET);

	/* Membership does not change the port's type or the set's. */
	assert_int_equal(mvm_test_type(b), MACH_PORT_TYPE_RECEIVE);
	assert_int_equal(mvm_test_type(s1), MACH_PORT_TYPE_PORT_SET);

	destroy(s1);
	destroy(s2);
	assert_int_equal(pset_of(b), MACH_PORT_NULL);
	destroy(a);
	destroy(b);
	MVM_TEST_QUIESCENT();
}

static void
pset_move_member_errors(void **state)
{
	mach_port_t s = new_set(), s2 = new_set(), p = new_port(), q = new_port();
	mach_port_t snd, so = MACH_PORT_NULL, dead = mvm_test_port_with_send();
	mach_msg_type_name_t t = 0;

	(void)state;
	/* snd: a send right to q (only), so: a send-once right, dead: a dead name. */
	assert_kr(mach_port_extract_right(mach_task_self(), q, MACH_MSG_TYPE_MAKE_SEND_ONCE, &so, &t),
	    KERN_SUCCESS);
	{
		mach_port_t r = mvm_test_port_with_send();

		/* Leave snd as a name with only a send right: move the receive right away. */
		snd = r;
		assert_kr(mach_port_mod_refs(mach_task_self(), dead, MACH_PORT_RIGHT_RECEIVE, -1),
		    KERN_SUCCESS);
		{
			struct port_msg m;

			memset(&m, 0, sizeof(m));
			m.h.msgh_bits = MACH_MSGH_BITS(MACH_MSG_TYPE_MAKE_SEND_ONCE, 0) |
			    MACH_MSGH_BITS_COMPLEX;
			m.h.msgh_remote_port = q;
			m.t = (mach_msg_type_t){ .msgt_name = MACH_MSG_TYPE_MOVE_RECEIVE,
			    .msgt_size = 32, .msgt_number = 1, .msgt_inline = 1 };
			m.port = r;
			assert_kr(mach_msg(&m.h, MACH_SEND_MSG, sizeof(m), 0, MACH_PORT_NULL, 0,
			    MACH_PORT_NULL), MACH_MSG_SUCCESS);
		}
	}
	assert_int_equal(mvm_test_type(snd), MACH_PORT_TYPE_SEND);
	assert_int_equal(mvm_test_type(so), MACH_PORT_TYPE_SEND_ONCE);
	assert_int_equal(mvm_test_type(dead), MACH_PORT_TYPE_DEAD_NAME);

	/* The member must be a receive right. */
	assert_kr(mach_port_move_member(mach_task_self(), snd, s), KERN_INVALID_RIGHT);
	assert_kr(mach_port_move_member(mach_task_self(), so, s), KERN_INVALID_RIGHT);
	assert_kr(mach_port_move_member(mach_task_self(), dead, s), KERN_INVALID_RIGHT);
	assert_kr(mach_port_move_member(mach_task_self(), s2, s), KERN_INVALID_RIGHT);
	assert_kr(mach_port_move_member(mach_task_self(), snd, MACH_PORT_NULL), KERN_INVALID_RIGHT);
	/* The target must be a port set. */
	assert_kr(mach_port_move_member(mach_task_self(), p, q), KERN_INVALID_RIGHT);
	assert_kr(mach_port_move_member(mach_task_self(), p, snd), KERN_INVALID_RIGHT);
	assert_kr(mach_port_move_member(mach_task_self(), p, so), KERN_INVALID_RIGHT);
	assert_kr(mach_port_move_member(mach_task_self(), p, dead), KERN_INVALID_RIGHT);
	assert_kr(mach_port_move_member(mach_task_self(), p, p), KERN_INVALID_RIGHT);
	/* Unknown names. */
	assert_kr(mach_port_move_member(mach_task_self(), p + 0x10000, s), KERN_INVALID_NAME);
	assert_kr(mach_port_move_member(mach_task_self(), p, s + 0x10000), KERN_INVALID_NAME);
	assert_kr(mach_port_move_member(mach_task_self(), MACH_PORT_NULL, s), KERN_INVALID_NAME);
	assert_kr(mach_port_move_member(mach_task_self(), p, MACH_PORT_DEAD), KERN_INVALID_NAME);
	assert_kr(mach_port_move_member(MACH_PORT_NULL, p, s), MACH_SEND_INVALID_DEST);
	/* Not in a set. */
	assert_kr(mach_port_move_member(mach_task_self(), p, MACH_PORT_NULL), KERN_NOT_IN_SET);
	/* None of that changed anything. */
	assert_int_equal(pset_of(p), MACH_PORT_NULL);
	expect_members(s, NULL, 0);

	/* mach_port_get_set_status wants a set. */
	{
		mach_port_array_t members = NULL;
		mach_msg_type_number_t cnt = 0;

		assert_kr(mach_port_get_set_status(mach_task_self(), p, &members, &cnt),
		    KERN_INVALID_RIGHT);
		assert_kr(mach_port_get_set_status(mach_task_self(), snd, &members, &cnt),
		    KERN_INVALID_RIGHT);
		assert_kr(mach_port_get_set_status(mach_task_self(), s + 0x10000, &members, &cnt),
		    KERN_INVALID_NAME);
		assert_kr(mach_port_get_set_status(MACH_PORT_NULL, s, &members, &cnt),
		    MACH_SEND_INVALID_DEST);
	}

	assert_kr(mach_port_deallocate(mach_task_self(), so), KERN_SUCCESS);
	assert_kr(mach_port_deallocate(mach_task_self(), snd), KERN_SUCCESS);
	assert_kr(mach_port_deallocate(mach_task_self(), dead), KERN_SUCCESS);
	destroy(s);
	destroy(s2);
	destroy(p);
	destroy(q); /* with r's receive right and so's notification queued on it */
	MVM_TEST_QUIESCENT();
}

static void
pset_receive_in_arrival_order(void **state)
{
	mach_port_t s = new_set(), a = new_port(), b = new_port(), c = new_port();

	(void)state;
	assert_kr(mach_port_move_member(mach_task_self(), a, s), KERN_SUCCESS);
	assert_kr(mach_port_move_member(mach_task_self(), b, s), KERN_SUCCESS);
	assert_kr(mach_port_move_member(mach_task_self(), c, s), KERN_SUCCESS);
	expect_empty(s);
	assert_kr(send_id(b, 1), MACH_MSG_SUCCESS);
	assert_kr(send_id(a, 2), MACH_MSG_SUCCESS);
	assert_kr(send_id(c, 3), MACH_MSG_SUCCESS);
	assert_kr(send_id(a, 4), MACH_MSG_SUCCESS);
	assert_kr(send_id(b, 5), MACH_MSG_SUCCESS);
	assert_kr(send_id(a, 6), MACH_MSG_SUCCESS);
	expect_msg(s, 1, b, 0);
	expect_msg(s, 2, a, 0);
	expect_msg(s, 3, c, 0);
	expect_msg(s, 4, a, 1);
	/* New arrivals go behind what is already queued. */
	assert_kr(send_id(c, 7), MACH_MSG_SUCCESS);
	expect_msg(s, 5, b, 1);
	expect_msg(s, 6, a, 2);
	expect_msg(s, 7, c, 1);
	expect_empty(s);

	/* The received header names the member and the right type it came through. */
	{
		mvm_test_msg_t m;

		assert_kr(send_id(b, 8), MACH_MSG_SUCCESS);
		assert_kr(mvm_test_rcv_now(s, &m), MACH_MSG_SUCCESS);
		assert_int_equal(m.h.msgh_local_port, b);
		assert_int_equal(MACH_MSGH_BITS_LOCAL(m.h.msgh_bits), MACH_MSG_TYPE_PORT_SEND_ONCE);
		assert_int_equal(m.h.msgh_remote_port, MACH_PORT_NULL);
		mach_msg_destroy(&m.h);
	}

	destroy(s);
	destroy(a);
	destroy(b);
	destroy(c);
	MVM_TEST_QUIESCENT();
}

static void
pset_queued_messages_follow_membership(void **state)
{
	mach_port_t s = new_set(), a = new_port(), b = new_port();

	(void)state;
	/* Messages queued before a joins are received through the set. */
	assert_kr(send_id(a, 1), MACH_MSG_SUCCESS);
	assert_kr(send_id(a, 2), MACH_MSG_SUCCESS);
	assert_kr(mach_port_move_member(mach_task_self(), a, s), KERN_SUCCESS);
	assert_kr(mach_port_move_member(mach_task_self(), b, s), KERN_SUCCESS);
	assert_kr(send_id(b, 3), MACH_MSG_SUCCESS);
	assert_kr(send_id(a, 4), MACH_MSG_SUCCESS);
	expect_msg(s, 1, a, 0);
	expect_msg(s, 2, a, 1);
	expect_msg(s, 3, b, 0);
	expect_msg(s, 4, a, 2);
	expect_empty(s);

	/* Leaving the set, a takes its queued messages along, in order; b's stay. */
	assert_kr(send_id(a, 10), MACH_MSG_SUCCESS);
	assert_kr(send_id(b, 11), MACH_MSG_SUCCESS);
	assert_kr(send_id(a, 12), MACH_MSG_SUCCESS);
	assert_kr(send_id(b, 13), MACH_MSG_SUCCESS);
	assert_kr(send_id(a, 14), MACH_MSG_SUCCESS);
	assert_kr(mach_port_move_member(mach_task_self(), a, MACH_PORT_NULL), KERN_SUCCESS);
	{
		mach_port_status_t st;

		assert_kr(mach_port_get_receive_status(mach_task_self(), a, &st), KERN_SUCCESS);
		assert_int_equal(st.mps_msgcount, 3);
	}
	expect_msg(s, 11, b, 1);
	/* A message to b after a left goes behind b's others in the set. */
	assert_kr(send_id(b, 15), MACH_MSG_SUCCESS);
	expect_msg(s, 13, b, 2);
	expect_msg(s, 15, b, 3);
	expect_empty(s);
	expect_msg(a, 10, a, 3);
	expect_msg(a, 12, a, 4);
	expect_msg(a, 14, a, 5);
	expect_empty(a);

	/* Moving between sets carries the queued messages to the new set. */
	{
		mach_port_t s2 = new_set();

		assert_kr(mach_port_move_member(mach_task_self(), a, s), KERN_SUCCESS);
		assert_kr(send_id(a, 20), MACH_MSG_SUCCESS);
		assert_kr(send_id(b, 21), MACH_MSG_SUCCESS);
		assert_kr(send_id(a, 22), MACH_MSG_SUCCESS);
		assert_kr(mach_port_move_member(mach_task_self(), a, s2), KERN_SUCCESS);
		expect_msg(s, 21, b, 4);
		expect_empty(s);
		expect_msg(s2, 20, a, 6);
		expect_msg(s2, 22, a, 7);
		expect_empty(s2);
		destroy(s2);
	}

	destroy(s);
	destroy(a);
	destroy(b);
	MVM_TEST_QUIESCENT();
}

static void
pset_receive_on_member_in_set(void **state)
{
	mach_port_t s = new_set(), a = new_port();
	mvm_test_msg_t m;

	(void)state;
	assert_kr(send_id(a, 1), MACH_MSG_SUCCESS);
	assert_kr(mach_port_move_member(mach_task_self(), a, s), KERN_SUCCESS);
	assert_kr(mvm_test_rcv_now(a, &m), MACH_RCV_IN_SET);
	/* Without a timeout too: the error comes at once. */
	assert_kr(mach_msg(&m.h, MACH_RCV_MSG, 0, sizeof(m), a, 0, MACH_PORT_NULL), MACH_RCV_IN_SET);
	/* Nothing was taken. */
	expect_msg(s, 1, a, 0);
	assert_kr(mach_port_move_member(mach_task_self(), a, MACH_PORT_NULL), KERN_SUCCESS);
	expect_empty(a);
	destroy(s);
	destroy(a);
	MVM_TEST_QUIESCENT();
}

static void
pset_destroy_set_leaves_members(void **state)
{
	mach_port_t s = new_set(), a = new_port(), b = new_port();
	struct mvm_ipc_stats st;

	(void)state;
	assert_kr(mach_port_move_member(mach_task_self(), a, s), KERN_SUCCESS);
	assert_kr(mach_port_move_member(mach_task_self(), b, s), KERN_SUCCESS);
	assert_kr(send_id(a, 1), MACH_MSG_SUCCESS);
	assert_kr(send_id(b, 2), MACH_MSG_SUCCESS);
	assert_kr(send_id(a, 3), MACH_MSG_SUCCESS);
	destroy(s);
	assert_int_equal(mvm_test_type(s), 0);
	mvm_ipc_stats(&st);
	assert_int_equal(st.port_sets, 0);
	assert_int_equal(pset_of(a), MACH_PORT_NULL);
	assert_int_equal(pset_of(b), MACH_PORT_NULL);
	/* The members keep their messages and work as plain ports. */
	expect_msg(a, 1, a, 0);
	expect_msg(a, 3, a, 1);
	expect_msg(b, 2, b, 0);
	assert_kr(send_id(a, 4), MACH_MSG_SUCCESS);
	expect_msg(a, 4, a, 2);
	assert_kr(mach_port_move_member(mach_task_self(), a, MACH_PORT_NULL), KERN_NOT_IN_SET);

	/* Dropping the set's last reference with mod_refs does the same. */
	s = new_set();
	assert_kr(mach_port_move_member(mach_task_self(), a, s), KERN_SUCCESS);
	assert_kr(send_id(a, 5), MACH_MSG_SUCCESS);
	assert_kr(mach_port_mod_refs(mach_task_self(), s, MACH_PORT_RIGHT_PORT_SET, -1), KERN_SUCCESS);
	assert_int_equal(mvm_test_type(s), 0);
	assert_int_equal(pset_of(a), MACH_PORT_NULL);
	expect_msg(a, 5, a, 3);

	destroy(a);
	destroy(b);
	MVM_TEST_QUIESCENT();
}

static void
pset_destroy_member(void **state)
{
	mach_port_t s = new_set(), a = new_port(), b = new_port(), c = new_port();

	(void)state;
	assert_kr(mach_port_move_member(mach_task_self(), a, s), KERN_SUCCESS);
	assert_kr(mach_port_move_member(mach_task_self(), b, s), KERN_SUCCESS);
	assert_kr(mach_port_move_member(mach_task_self(), c, s), KERN_SUCCESS);
	assert_kr(send_id(a, 1), MACH_MSG_SUCCESS);
	assert_kr(send_id(b, 2), MACH_MSG_SUCCESS);
	assert_kr(send_id(c, 3), MACH_MSG_SUCCESS);
	assert_kr(send_id(b, 4), MACH_MSG_SUCCESS);
	assert_kr(send_id(a, 5), MACH_MSG_SUCCESS);
	/* b dies in the set: its messages die with it, the others stay in order. */
	destroy(b);
	expect_members(s, (mach_port_t[]){ a, c }, 2);
	expect_msg(s, 1, a, 0);
	expect_msg(s, 3, c, 0);
	expect_msg(s, 5, a, 1);
	expect_empty(s);

	/* The last message of the set's queue can go too. */
	assert_kr(send_id(a, 6), MACH_MSG_SUCCESS);
	assert_kr(send_id(c, 7), MACH_MSG_SUCCESS);
	destroy(c);
	assert_kr(send_id(a, 8), MACH_MSG_SUCCESS);
	expect_msg(s, 6, a, 2);
	expect_msg(s, 8, a, 3);
	expect_empty(s);

	/* A member whose receive right moves away in a message leaves the set. */
	{
		mach_port_t carrier = new_port();
		struct port_msg m;
		mvm_test_msg_t rb;
		struct port_msg *got = (struct port_msg *)&rb;

		assert_kr(send_id(a, 9), MACH_MSG_SUCCESS);
		memset(&m, 0, sizeof(m));
		m.h.msgh_bits = MACH_MSGH_BITS(MACH_MSG_TYPE_MAKE_SEND_ONCE, 0) | MACH_MSGH_BITS_COMPLEX;
		m.h.msgh_remote_port = carrier;
		m.t = (mach_msg_type_t){ .msgt_name = MACH_MSG_TYPE_MOVE_RECEIVE, .msgt_size = 32,
		    .msgt_number = 1, .msgt_inline = 1 };
		m.port = a;
		assert_kr(mach_msg(&m.h, MACH_SEND_MSG, sizeof(m), 0, MACH_PORT_NULL, 0, MACH_PORT_NULL),
		    MACH_MSG_SUCCESS);
		expect_members(s, NULL, 0);
		expect_empty(s);
		assert_kr(mvm_test_rcv_now(carrier, &rb), MACH_MSG_SUCCESS);
		assert_int_equal(pset_of(got->port), MACH_PORT_NULL);
		expect_msg(got->port, 9, got->port, 0); /* the seqno was reset by the move */
		destroy(got->port);
		destroy(carrier);
	}

	destroy(s);
	MVM_TEST_QUIESCENT();
}

static void
pset_blocked_receiver_port_added_to_set(void **state)
{
	mach_port_t s = new_set(), a = new_port();
	struct receiver r;

	(void)state;
	receiver_start(&r, a);
	assert_kr(mach_port_move_member(mach_task_self(), a, s), KERN_SUCCESS);
	assert_kr(receiver_join(&r), MACH_RCV_PORT_CHANGED);
	/* A message sent now is for the set's receivers. */
	assert_kr(send_id(a, 1), MACH_MSG_SUCCESS);
	expect_msg(s, 1, a, 0);

	/* Moving a member to another set does not disturb receivers on the first set... */
	{
		mach_port_t s2 = new_set();

		receiver_start(&r, s);
		assert_kr(mach_port_move_member(mach_task_self(), a, s2), KERN_SUCCESS);
		assert_int_equal(blocked_receivers(s), 1);
		/* ... and they still get messages for the remaining members. */
		{
			mach_port_t b = new_port();

			assert_kr(mach_port_move_member(mach_task_self(), b, s), KERN_SUCCESS);
			assert_kr(send_id(b, 2), MACH_MSG_SUCCESS);
			assert_kr(receiver_join(&r), MACH_MSG_SUCCESS);
			assert_int_equal(r.msg.h.msgh_id, 2);
			assert_int_equal(r.msg.h.msgh_local_port, b);
			mach_msg_destroy(&r.msg.h);
			destroy(b);
		}
		destroy(s2);
	}

	destroy(s);
	destroy(a);
	MVM_TEST_QUIESCENT();
}

static void
pset_blocked_receiver_set_destroyed(void **state)
{
	mach_port_t s = new_set(), a = new_port();
	struct receiver r1, r2;

	(void)state;
	assert_kr(mach_port_move_member(mach_task_self(), a, s), KERN_SUCCESS);
	receiver_start(&r1, s);
	memset(&r2, 0, sizeof(r2));
	r2.name = s;
	r2.opt = MACH_RCV_TIMEOUT;
	r2.timeout = 10000;
	assert_int_equal(pthread_create(&r2.thread, NULL, receiver_main, &r2), 0);
	await_blocked_receivers(s, 2);
	destroy(s);
	assert_kr(receiver_join(&r1), MACH_RCV_PORT_DIED);
	assert_kr(receiver_join(&r2), MACH_RCV_PORT_DIED);
	/* The member lives on. */
	assert_int_equal(pset_of(a), MACH_PORT_NULL);
	assert_kr(send_id(a, 1), MACH_MSG_SUCCESS);
	expect_msg(a, 1, a, 0);
	destroy(a);
	MVM_TEST_QUIESCENT();
}

static void
pset_blocked_receiver_port_destroyed(void **state)
{
	mach_port_t a = new_port(), b = mvm_test_port_with_send();
	struct receiver r;

	(void)state;
	receiver_start(&r, a);
	destroy(a);
	assert_kr(receiver_join(&r), MACH_RCV_PORT_DIED);

	/* The receive right dies but the name lives on as a dead name. */
	receiver_start(&r, b);
	assert_kr(mach_port_mod_refs(mach_task_self(), b, MACH_PORT_RIGHT_RECEIVE, -1), KERN_SUCCESS);
	assert_kr(receiver_join(&r), MACH_RCV_PORT_DIED);
	assert_int_equal(mvm_test_type(b), MACH_PORT_TYPE_DEAD_NAME);
	assert_kr(mach_port_deallocate(mach_task_self(), b), KERN_SUCCESS);

	/* A member of a set dying does not disturb the set's receivers. */
	{
		mach_port_t s = new_set(), c = new_port(), d = new_port();

		assert_kr(mach_port_move_member(mach_task_self(), c, s), KERN_SUCCESS);
		assert_kr(mach_port_move_member(mach_task_self(), d, s), KERN_SUCCESS);
		receiver_start(&r, s);
		destroy(c);
		assert_int_equal(blocked_receivers(s), 1);
		assert_kr(send_id(d, 3), MACH_MSG_SUCCESS);
		assert_kr(receiver_join(&r), MACH_MSG_SUCCESS);
		assert_int_equal(r.msg.h.msgh_id, 3);
		assert_int_equal(r.msg.h.msgh_local_port, d);
		mach_msg_destroy(&r.msg.h);
		destroy(s);
		destroy(d);
	}
	MVM_TEST_QUIESCENT();
}

static void
pset_blocked_receiver_port_moved_away(void **state)
{
	mach_port_t a = new_port(), carrier = new_port();
	struct receiver r;
	struct port_msg m;
	mvm_test_msg_t rb;
	struct port_msg *got = (struct port_msg *)&rb;

	(void)state;
	receiver_start(&r, a);
	memset(&m, 0, sizeof(m));
	m.h.msgh_bits = MACH_MSGH_BITS(MACH_MSG_TYPE_MAKE_SEND_ONCE, 0) | MACH_MSGH_BITS_COMPLEX;
	m.h.msgh_remote_port = carrier;
	m.t = (mach_msg_type_t){ .msgt_name = MACH_MSG_TYPE_MOVE_RECEIVE, .msgt_size = 32,
	    .msgt_number = 1, .msgt_inline = 1 };
	m.port = a;
	assert_kr(mach_msg(&m.h, MACH_SEND_MSG, sizeof(m), 0, MACH_PORT_NULL, 0, MACH_PORT_NULL),
	    MACH_MSG_SUCCESS);
	assert_kr(receiver_join(&r), MACH_RCV_PORT_CHANGED);
	assert_int_equal(mvm_test_type(a), 0);

	/* The right arrives intact and works where it lands. */
	assert_kr(mvm_test_rcv_now(carrier, &rb), MACH_MSG_SUCCESS);
	assert_int_equal(got->t.msgt_name, MACH_MSG_TYPE_PORT_RECEIVE);
	assert_int_equal(mvm_test_type(got->port), MACH_PORT_TYPE_RECEIVE);
	assert_kr(send_id(got->port, 1), MACH_MSG_SUCCESS);
	expect_msg(got->port, 1, got->port, 0);
	destroy(got->port);
	destroy(carrier);
	MVM_TEST_QUIESCENT();
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(pset_allocate_and_membership),
		cmocka_unit_test(pset_move_member_errors),
		cmocka_unit_test(pset_receive_in_arrival_order),
		cmocka_unit_test(pset_queued_messages_follow_membership),
		cmocka_unit_test(pset_receive_on_member_in_set),
		cmocka_unit_test(pset_destroy_set_leaves_members),
		cmocka_unit_test(pset_destroy_member),
		cmocka_unit_test(pset_blocked_receiver_port_added_to_set),
		cmocka_unit_test(pset_blocked_receiver_set_destroyed),
		cmocka_unit_test(pset_blocked_receiver_port_destroyed),
		cmocka_unit_test(pset_blocked_receiver_port_moved_away),
	};

	return cmocka_run_group_tests_name("pset", tests, NULL, NULL);
}
