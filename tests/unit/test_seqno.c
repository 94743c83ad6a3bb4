/*
 * tests/unit/test_seqno.c: sequence numbers and mach_port_get_receive_status.
 *
 * A port hands out sequence numbers at dequeue, one per message taken off its queue
 * (notifications and too-large messages that are destroyed included), whether the message
 * is received on the port or through its set. mach_port_set_seqno sets the next number,
 * which wraps at 2^32, and moving the receive right in a message resets it (and the
 * make-send count) to 0.
 */
#include <string.h>

#include "mvm_test.h"

typedef union {
	mach_msg_header_t h;
	_Alignas(8) char buf[512];
} rcv_buf_t;

/* A message with some inline data, so that a small receive buffer is too small for it. */
struct data_msg {
	mach_msg_header_t h;
	mach_msg_type_t t;
	char data[64];
};

/* A message carrying one right in its body. */
struct port_msg {
	mach_msg_header_t h;
	mach_msg_type_t t;
	mach_port_t port;
};

static mach_msg_return_t
send_simple(mach_port_t dest, mach_msg_type_name_t disp, mach_port_t reply,
    mach_msg_type_name_t reply_disp, mach_msg_id_t id)
{
	mach_msg_header_t h = {
		.msgh_bits = MACH_MSGH_BITS(disp, reply != MACH_PORT_NULL ? reply_disp : 0),
		.msgh_size = sizeof(h),
		.msgh_remote_port = dest,
		.msgh_local_port = reply,
		.msgh_id = id,
	};

	return mach_msg(&h, MACH_SEND_MSG | MACH_SEND_TIMEOUT, sizeof(h), 0, MACH_PORT_NULL, 0,
	    MACH_PORT_NULL);
}

static mach_msg_return_t
send_data(mach_port_t dest, mach_msg_id_t id)
{
	struct data_msg m;

	memset(&m, 0, sizeof(m));
	m.h.msgh_bits = MACH_MSGH_BITS(MACH_MSG_TYPE_COPY_SEND, 0) | MACH_MSGH_BITS_COMPLEX;
	m.h.msgh_remote_port = dest;
	m.h.msgh_id = id;
	m.t.msgt_name = MACH_MSG_TYPE_BYTE;
	m.t.msgt_size = 8;
	m.t.msgt_number = sizeof(m.data);
	m.t.msgt_inline = 1;
	memset(m.data, 'x', sizeof(m.data));
	return mach_msg(&m.h, MACH_SEND_MSG | MACH_SEND_TIMEOUT, sizeof(m), 0, MACH_PORT_NULL, 0,
	    MACH_PORT_NULL);
}

/* Poll `name` for one message. */
static mach_msg_return_t
rcv(mach_port_t name, rcv_buf_t *m, mach_msg_size_t size, mach_msg_option_t opt)
{
	return mach_msg(&m->h, MACH_RCV_MSG | MACH_RCV_TIMEOUT | opt, 0, size, name, 0,
	    MACH_PORT_NULL);
}

/* Receive one message on `name` and check its id, seqno and local port. */
static void
expect_msg(mach_port_t name, mach_msg_id_t id, mach_port_seqno_t seqno, mach_port_t local)
{
	rcv_buf_t m;

	memset(&m, 0, sizeof(m));
	assert_kr(rcv(name, &m, sizeof(m), 0), MACH_MSG_SUCCESS);
	assert_int_equal(m.h.msgh_id, id);
	assert_int_equal(m.h.msgh_seqno, seqno);
	assert_int_equal(m.h.msgh_local_port, local);
	mach_msg_destroy(&m.h);
}

static mach_port_status_t
status_of(mach_port_t name)
{
	mach_port_status_t st;

	memset(&st, 0xa5, sizeof(st));
	assert_kr(mach_port_get_receive_status(mach_task_self(), name, &st), KERN_SUCCESS);
	return st;
}

static mach_port_t
new_set(void)
{
	mach_port_t s;

	assert_kr(mach_port_allocate(mach_task_self(), MACH_PORT_RIGHT_PORT_SET, &s), KERN_SUCCESS);
	return s;
}

/* ---- tests --------------------------------------------------------------------------- */

static void
seqno_starts_at_zero(void **state)
{
	mach_port_t p = mvm_test_port_with_send();

	(void)state;
	assert_int_equal(status_of(p).mps_seqno, 0);
	for (int i = 0; i < 4; i++)
		assert_kr(send_simple(p, MACH_MSG_TYPE_COPY_SEND, 0, 0, 100 + i), MACH_MSG_SUCCESS);
	/* Queued messages have no number yet: the number is taken at dequeue. */
	assert_int_equal(status_of(p).mps_seqno, 0);
	for (int i = 0; i < 4; i++) {
		expect_msg(p, 100 + i, (mach_port_seqno_t)i, p);
		assert_int_equal(status_of(p).mps_seqno, i + 1);
	}
	/* A receive that finds nothing uses no number. */
	{
		rcv_buf_t m;

		assert_kr(rcv(p, &m, sizeof(m), 0), MACH_RCV_TIMED_OUT);
	}
	assert_int_equal(status_of(p).mps_seqno, 4);
	assert_kr(send_simple(p, MACH_MSG_TYPE_COPY_SEND, 0, 0, 7), MACH_MSG_SUCCESS);
	expect_msg(p, 7, 4, p);
	assert_kr(mach_port_destroy(mach_task_self(), p), KERN_SUCCESS);
	MVM_TEST_QUIESCENT();
}

static void
seqno_independent_per_port(void **state)
{
	mach_port_t a = mvm_test_port_with_send(), b = mvm_test_port_with_send();

	(void)state;
	assert_kr(send_simple(a, MACH_MSG_TYPE_COPY_SEND, 0, 0, 1), MACH_MSG_SUCCESS);
	assert_kr(send_simple(a, MACH_MSG_TYPE_COPY_SEND, 0, 0, 2), MACH_MSG_SUCCESS);
	assert_kr(send_simple(b, MACH_MSG_TYPE_COPY_SEND, 0, 0, 3), MACH_MSG_SUCCESS);
	expect_msg(b, 3, 0, b);
	expect_msg(a, 1, 0, a);
	expect_msg(a, 2, 1, a);
	assert_int_equal(status_of(a).mps_seqno, 2);
	assert_int_equal(status_of(b).mps_seqno, 1);
	assert_kr(mach_port_destroy(mach_task_self(), a), KERN_SUCCESS);
	assert_kr(mach_port_destroy(mach_task_self(), b), KERN_SUCCESS);
	MVM_TEST_QUIESCENT();
}

static void
seqno_per_port_through_set(void **state)
{
	mach_port_t a = mvm_test_port_with_send(), b = mvm_test_port_with_send();
	mach_port_t s = new_set();

	(void)state;
	/* a has used two numbers before it joins the set. */
	assert_kr(send_simple(a, MACH_MSG_TYPE_COPY_SEND, 0, 0, 1), MACH_MSG_SUCCESS);
	assert_kr(send_simple(a, MACH_MSG_TYPE_COPY_SEND, 0, 0, 2), MACH_MSG_SUCCESS);
	expect_msg(a, 1, 0, a);
	expect_msg(a, 2, 1, a);

	assert_kr(mach_port_move_member(mach_task_self(), a, s), KERN_SUCCESS);
	assert_kr(mach_port_move_member(mach_task_self(), b, s), KERN_SUCCESS);
	assert_kr(send_simple(a, MACH_MSG_TYPE_COPY_SEND, 0, 0, 10), MACH_MSG_SUCCESS);
	assert_kr(send_simple(b, MACH_MSG_TYPE_COPY_SEND, 0, 0, 20), MACH_MSG_SUCCESS);
	assert_kr(send_simple(b, MACH_MSG_TYPE_COPY_SEND, 0, 0, 21), MACH_MSG_SUCCESS);
	assert_kr(send_simple(a, MACH_MSG_TYPE_COPY_SEND, 0, 0, 11), MACH_MSG_SUCCESS);
	assert_kr(send_simple(b, MACH_MSG_TYPE_COPY_SEND, 0, 0, 22), MACH_MSG_SUCCESS);
	expect_msg(s, 10, 2, a);
	expect_msg(s, 20, 0, b);
	expect_msg(s, 21, 1, b);
	expect_msg(s, 11, 3, a);
	expect_msg(s, 22, 2, b);
	assert_int_equal(status_of(a).mps_seqno, 4);
	assert_int_equal(status_of(b).mps_seqno, 3);

	/* Out of the set again, the port keeps counting. */
	assert_kr(mach_port_move_member(mach_task_self(), a, MACH_PORT_NULL), KERN_SUCCESS);
	assert_kr(send_simple(a, MACH_MSG_TYPE_COPY_SEND, 0, 0, 12), MACH_MSG_SUCCESS);
	expect_msg(a, 12, 4, a);

	assert_kr(mach_port_destroy(mach_task_self(), s), KERN_SUCCESS);
	assert_kr(mach_port_destroy(mach_task_self(), a), KERN_SUCCESS);
	assert_kr(mach_port_destroy(mach_task_self(), b), KERN_SUCCESS);
	MVM_TEST_QUIESCENT();
}

static void
seqno_counts_notifications(void **state)
{
	mach_port_t n = mvm_test_port_with_send(), p = mvm_test_port_with_send();
	mach_port_t so = MACH_PORT_NULL, prev = MACH_PORT_NULL;
	mach_msg_type_name_t t = 0;
	rcv_buf_t m;

	(void)state;
	assert_kr(send_simple(n, MACH_MSG_TYPE_COPY_SEND, 0, 0, 1000), MACH_MSG_SUCCESS);
	/* A send-once right destroyed unused: a send-once notification to n. */
	assert_kr(mach_port_extract_right(mach_task_self(), n, MACH_MSG_TYPE_MAKE_SEND_ONCE, &so, &t),
	    KERN_SUCCESS);
	assert_int_equal(t, MACH_MSG_TYPE_PORT_SEND_ONCE);
	assert_kr(mach_port_deallocate(mach_task_self(), so), KERN_SUCCESS);
	/* p loses its last send right: a no-senders notification to n. */
	assert_kr(mach_port_request_notification(mach_task_self(), p, MACH_NOTIFY_NO_SENDERS, 0, n,
	    MACH_MSG_TYPE_MAKE_SEND_ONCE, &prev), KERN_SUCCESS);
	assert_int_equal(prev, MACH_PORT_NULL);
	assert_kr(mach_port_deallocate(mach_task_self(), p), KERN_SUCCESS);
	assert_kr(send_simple(n, MACH_MSG_TYPE_COPY_SEND, 0, 0, 1001), MACH_MSG_SUCCESS);
	assert_int_equal(status_of(n).mps_msgcount, 4);

	expect_msg(n, 1000, 0, n);
	memset(&m, 0, sizeof(m));
	assert_kr(rcv(n, &m, sizeof(m), 0), MACH_MSG_SUCCESS);
	assert_int_equal(m.h.msgh_id, MACH_NOTIFY_SEND_ONCE);
	assert_int_equal(m.h.msgh_seqno, 1);
	assert_int_equal(m.h.msgh_local_port, n);
	assert_int_equal(MACH_MSGH_BITS_LOCAL(m.h.msgh_bits), MACH_MSG_TYPE_PORT_SEND_ONCE);
	mach_msg_destroy(&m.h);
	memset(&m, 0, sizeof(m));
	assert_kr(rcv(n, &m, sizeof(m), 0), MACH_MSG_SUCCESS);
	assert_int_equal(m.h.msgh_id, MACH_NOTIFY_NO_SENDERS);
	assert_int_equal(m.h.msgh_seqno, 2);
	assert_int_equal(((mach_no_senders_notification_t *)&m.h)->not_count, 1);
	mach_msg_destroy(&m.h);
	expect_msg(n, 1001, 3, n);

	assert_kr(mach_port_destroy(mach_task_self(), p), KERN_SUCCESS);
	assert_kr(mach_port_destroy(mach_task_self(), n), KERN_SUCCESS);
	MVM_TEST_QUIESCENT();
}

static void
seqno_used_by_too_large(void **state)
{
	mach_port_t p = mvm_test_port_with_send(), r;
	rcv_buf_t m;

	(void)state;
	assert_kr(mach_port_allocate(mach_task_self(), MACH_PORT_RIGHT_RECEIVE, &r), KERN_SUCCESS);
	/* Message 1 carries a send-once reply right to r, destroyed with the message. */
	{
		struct data_msg d;

		memset(&d, 0, sizeof(d));
		d.h.msgh_bits = MACH_MSGH_BITS(MACH_MSG_TYPE_COPY_SEND, MACH_MSG_TYPE_MAKE_SEND_ONCE) |
		    MACH_MSGH_BITS_COMPLEX;
		d.h.msgh_remote_port = p;
		d.h.msgh_local_port = r;
		d.h.msgh_id = 1;
		d.t.msgt_name = MACH_MSG_TYPE_BYTE;
		d.t.msgt_size = 8;
		d.t.msgt_number = sizeof(d.data);
		d.t.msgt_inline = 1;
		assert_kr(mach_msg(&d.h, MACH_SEND_MSG, sizeof(d), 0, MACH_PORT_NULL, 0, MACH_PORT_NULL),
		    MACH_MSG_SUCCESS);
	}
	assert_kr(send_data(p, 2), MACH_MSG_SUCCESS);
	assert_kr(send_data(p, 3), MACH_MSG_SUCCESS);

	/* Too large without MACH_RCV_LARGE: dequeued (seqno 0) and destroyed. */
	memset(&m, 0, sizeof(m));
	assert_kr(rcv(p, &m, sizeof(mach_msg_header_t), 0), MACH_RCV_TOO_LARGE);
	assert_int_equal(m.h.msgh_id, 1);
	assert_int_equal(m.h.msgh_seqno, 0);
	assert_int_equal(m.h.msgh_local_port, p);
	assert_int_equal(m.h.msgh_size, sizeof(struct data_msg));
	assert_int_equal(status_of(p).mps_seqno, 1);
	assert_int_equal(status_of(p).mps_msgcount, 2);
	/* Its reply right died unused: r hears of it, with r's own first number. */
	expect_msg(r, MACH_NOTIFY_SEND_ONCE, 0, r);

	/* Too large with MACH_RCV_LARGE: the message stays and no number is used. */
	memset(&m, 0, sizeof(m));
	assert_kr(rcv(p, &m, sizeof(mach_msg_header_t), MACH_RCV_LARGE), MACH_RCV_TOO_LARGE);
	assert_int_equal(m.h.msgh_size, sizeof(struct data_msg));
	assert_int_equal(status_of(p).mps_seqno, 1);
	assert_int_equal(status_of(p).mps_msgcount, 2);

	expect_msg(p, 2, 1, p);
	memset(&m, 0, sizeof(m));
	assert_kr(rcv(p, &m, sizeof(mach_msg_header_t), 0), MACH_RCV_TOO_LARGE);
	assert_int_equal(m.h.msgh_id, 3);
	assert_int_equal(m.h.msgh_seqno, 2);
	assert_kr(send_simple(p, MACH_MSG_TYPE_COPY_SEND, 0, 0, 4), MACH_MSG_SUCCESS);
	expect_msg(p, 4, 3, p);

	assert_kr(mach_port_destroy(mach_task_self(), p), KERN_SUCCESS);
	assert_kr(mach_port_destroy(mach_task_self(), r), KERN_SUCCESS);
	MVM_TEST_QUIESCENT();
}

static void
seqno_set_and_wrap(void **state)
{
	mach_port_t p = mvm_test_port_with_send(), s = new_set(), so = MACH_PORT_NULL;
	mach_msg_type_name_t t = 0;

	(void)state;
	assert_kr(mach_port_set_seqno(mach_task_self(), p, 0xfffffffeU), KERN_SUCCESS);
	assert_int_equal(status_of(p).mps_seqno, 0xfffffffeU);
	for (int i = 0; i < 3; i++)
		assert_kr(send_simple(p, MACH_MSG_TYPE_COPY_SEND, 0, 0, i), MACH_MSG_SUCCESS);
	expect_msg(p, 0, 0xfffffffeU, p);
	expect_msg(p, 1, 0xffffffffU, p);
	expect_msg(p, 2, 0, p);
	assert_int_equal(status_of(p).mps_seqno, 1);

	/* Set it while messages are queued: they take numbers from the new value. */
	assert_kr(send_simple(p, MACH_MSG_TYPE_COPY_SEND, 0, 0, 5), MACH_MSG_SUCCESS);
	assert_kr(mach_port_set_seqno(mach_task_self(), p, 42), KERN_SUCCESS);
	expect_msg(p, 5, 42, p);
	/* And it may go backwards. */
	assert_kr(mach_port_set_seqno(mach_task_self(), p, 0), KERN_SUCCESS);
	assert_kr(send_simple(p, MACH_MSG_TYPE_COPY_SEND, 0, 0, 6), MACH_MSG_SUCCESS);
	expect_msg(p, 6, 0, p);

	/* Errors. */
	assert_kr(mach_port_extract_right(mach_task_self(), p, MACH_MSG_TYPE_MAKE_SEND_ONCE, &so, &t),
	    KERN_SUCCESS);
	assert_kr(mach_port_set_seqno(mach_task_self(), so, 1), KERN_INVALID_RIGHT);
	assert_kr(mach_port_set_seqno(mach_task_self(), s, 1), KERN_INVALID_RIGHT);
	assert_kr(mach_port_set_seqno(mach_task_self(), MACH_PORT_NULL, 1), KERN_INVALID_NAME);
	assert_kr(mach_port_set_seqno(mach_task_self(), MACH_PORT_DEAD, 1), KERN_INVALID_NAME);
	assert_kr(mach_port_set_seqno(mach_task_self(), p + 0x10000, 1), KERN_INVALID_NAME);
	assert_kr(mach_port_set_seqno(MACH_PORT_NULL, p, 1), MACH_SEND_INVALID_DEST);
	assert_int_equal(status_of(p).mps_seqno, 1);
	/* The send-once right names p too: destroyed unused, it reports with number 1. */
	assert_kr(mach_port_deallocate(mach_task_self(), so), KERN_SUCCESS);
	expect_msg(p, MACH_NOTIFY_SEND_ONCE, 1, p);

	assert_kr(mach_port_destroy(mach_task_self(), s), KERN_SUCCESS);
	assert_kr(mach_port_destroy(mach_task_self(), p), KERN_SUCCESS);
	MVM_TEST_QUIESCENT();
}

/* Send p's receive right to carrier c and receive it back; returns p's name afterwards. */
static mach_port_t
bounce_receive(mach_port_t p, mach_port_t c, mach_port_type_t type_in_transit)
{
	struct port_msg pm;
	rcv_buf_t m;
	struct port_msg *got = (struct port_msg *)&m;

	memset(&pm, 0, sizeof(pm));
	pm.h.msgh_bits = MACH_MSGH_BITS(MACH_MSG_TYPE_MAKE_SEND_ONCE, 0) | MACH_MSGH_BITS_COMPLEX;
	pm.h.msgh_remote_port = c;
	pm.h.msgh_id = 77;
	pm.t.msgt_name = MACH_MSG_TYPE_MOVE_RECEIVE;
	pm.t.msgt_size = 32;
	pm.t.msgt_number = 1;
	pm.t.msgt_inline = 1;
	pm.port = p;
	assert_kr(mach_msg(&pm.h, MACH_SEND_MSG, sizeof(pm), 0, MACH_PORT_NULL, 0, MACH_PORT_NULL),
	    MACH_MSG_SUCCESS);
	/* The name keeps only its send rights (if any) while the receive right travels. */
	assert_int_equal(mvm_test_type(p), type_in_transit);
	assert_kr(mach_port_get_receive_status(mach_task_self(), p, &(mach_port_status_t){ 0 }),
	    type_in_transit != 0 ? KERN_INVALID_RIGHT : KERN_INVALID_NAME);

	memset(&m, 0, sizeof(m));
	assert_kr(rcv(c, &m, sizeof(m), 0), MACH_MSG_SUCCESS);
	assert_int_equal(m.h.msgh_id, 77);
	assert_int_equal(got->t.msgt_name, MACH_MSG_TYPE_PORT_RECEIVE);
	return got->port;
}

static void
seqno_reset_when_receive_right_moves(void **state)
{
	mach_port_t p = mvm_test_port_with_send(), c, back;
	mach_port_status_t st;

	(void)state;
	assert_kr(mach_port_allocate(mach_task_self(), MACH_PORT_RIGHT_RECEIVE, &c), KERN_SUCCESS);
	for (int i = 0; i < 3; i++)
		assert_kr(send_simple(p, MACH_MSG_TYPE_COPY_SEND, 0, 0, i), MACH_MSG_SUCCESS);
	expect_msg(p, 0, 0, p);
	assert_kr(mach_port_set_seqno(mach_task_self(), p, 100), KERN_SUCCESS);
	assert_int_equal(status_of(p).mps_mscount, 1);

	/* Two messages still queued on p travel with it. */
	back = bounce_receive(p, c, MACH_PORT_TYPE_SEND);
	assert_int_equal(back, p); /* merged with the send right under the same name */
	assert_int_equal(mvm_test_type(p), MACH_PORT_TYPE_SEND_RECEIVE);
	assert_int_equal(mvm_test_refs(p, MACH_PORT_RIGHT_SEND), 1);
	st = status_of(p);
	assert_int_equal(st.mps_seqno, 0);
	assert_int_equal(st.mps_mscount, 0);
	assert_int_equal(st.mps_msgcount, 2);
	assert_true(st.mps_srights);
	/* Numbers start again at 0, for queued messages and new ones alike. */
	expect_msg(p, 1, 0, p);
	expect_msg(p, 2, 1, p);
	assert_kr(send_simple(p, MACH_MSG_TYPE_COPY_SEND, 0, 0, 3), MACH_MSG_SUCCESS);
	expect_msg(p, 3, 2, p);

	/* A port that only has a receive right comes back under some name, also reset. */
	{
		mach_port_t q;

		assert_kr(mach_port_allocate(mach_task_self(), MACH_PORT_RIGHT_RECEIVE, &q), KERN_SUCCESS);
		assert_kr(mach_port_set_seqno(mach_task_self(), q, 9), KERN_SUCCESS);
		back = bounce_receive(q, c, 0);
		assert_true(MACH_PORT_VALID(back));
		assert_int_equal(mvm_test_type(back), MACH_PORT_TYPE_RECEIVE);
		assert_int_equal(status_of(back).mps_seqno, 0);
		assert_kr(mach_port_destroy(mach_task_self(), back), KERN_SUCCESS);
	}

	/* c itself used numbers 0 and 1 for the two carrier messages. */
	assert_int_equal(status_of(c).mps_seqno, 2);
	assert_kr(mach_port_destroy(mach_task_self(), c), KERN_SUCCESS);
	assert_kr(mach_port_destroy(mach_task_self(), p), KERN_SUCCESS);
	MVM_TEST_QUIESCENT();
}

static void
status_fields(void **state)
{
	mach_port_t p, s = new_set(), n, so1 = MACH_PORT_NULL, so2 = MACH_PORT_NULL;
	mach_port_t prev = MACH_PORT_NULL;
	mach_msg_type_name_t t = 0;
	mach_port_status_t st;

	(void)state;
	assert_kr(mach_port_allocate(mach_task_self(), MACH_PORT_RIGHT_RECEIVE, &p), KERN_SUCCESS);
	assert_kr(mach_port_allocate(mach_task_self(), MACH_PORT_RIGHT_RECEIVE, &n), KERN_SUCCESS);

	st = status_of(p);
	assert_int_equal(st.mps_pset, MACH_PORT_NULL);
	assert_int_equal(st.mps_seqno, 0);
	assert_int_equal(st.mps_mscount, 0);
	assert_int_equal(st.mps_qlimit, MACH_PORT_QLIMIT_DEFAULT);
	assert_int_equal(st.mps_msgcount, 0);
	assert_int_equal(st.mps_sorights, 0);
	assert_false(st.mps_srights);
	assert_false(st.mps_pdrequest);
	assert_false(st.mps_nsrequest);

	/* Send rights: each MAKE_SEND counts, whether into the space or into a message. */
	assert_kr(mach_port_insert_right(mach_task_self(), p, p, MACH_MSG_TYPE_MAKE_SEND),
	    KERN_SUCCESS);
	st = status_of(p);
	assert_int_equal(st.mps_mscount, 1);
	assert_true(st.mps_srights);
	assert_kr(mach_port_insert_right(mach_task_self(), p, p, MACH_MSG_TYPE_MAKE_SEND),
	    KERN_SUCCESS);
	assert_int_equal(status_of(p).mps_mscount, 2);
	assert_kr(send_simple(p, MACH_MSG_TYPE_MAKE_SEND, 0, 0, 1), MACH_MSG_SUCCESS);
	st = status_of(p);
	assert_int_equal(st.mps_mscount, 3);
	assert_int_equal(st.mps_msgcount, 1);
	/* COPY_SEND does not make a new right. */
	assert_kr(send_simple(p, MACH_MSG_TYPE_COPY_SEND, 0, 0, 2), MACH_MSG_SUCCESS);
	st = status_of(p);
	assert_int_equal(st.mps_mscount, 3);
	assert_int_equal(st.mps_msgcount, 2);

	/* Send-once rights: in the space and in messages. */
	assert_kr(mach_port_extract_right(mach_task_self(), p, MACH_MSG_TYPE_MAKE_SEND_ONCE, &so1, &t),
	    KERN_SUCCESS);
	assert_int_equal(status_of(p).mps_sorights, 1);
	assert_kr(mach_port_extract_right(mach_task_self(), p, MACH_MSG_TYPE_MAKE_SEND_ONCE, &so2, &t),
	    KERN_SUCCESS);
	assert_int_equal(status_of(p).mps_sorights, 2);
	/* so2 travels as the destination of a message: still a send-once right until used. */
	assert_kr(send_simple(so2, MACH_MSG_TYPE_MOVE_SEND_ONCE, 0, 0, 3), MACH_MSG_SUCCESS);
	st = status_of(p);
	assert_int_equal(st.mps_sorights, 2);
	assert_int_equal(st.mps_msgcount, 3);

	/* Set membership. */
	assert_kr(mach_port_move_member(mach_task_self(), p, s), KERN_SUCCESS);
	st = status_of(p);
	assert_int_equal(st.mps_pset, s);
	assert_int_equal(st.mps_msgcount, 3);

	/* Notification requests. */
	assert_kr(mach_port_request_notification(mach_task_self(), p, MACH_NOTIFY_NO_SENDERS, 0, n,
	    MACH_MSG_TYPE_MAKE_SEND_ONCE, &prev), KERN_SUCCESS);
	assert_int_equal(prev, MACH_PORT_NULL);
	st = status_of(p);
	assert_true(st.mps_nsrequest);
	assert_false(st.mps_pdrequest);
	assert_kr(mach_port_request_notification(mach_task_self(), p, MACH_NOTIFY_PORT_DESTROYED, 0,
	    n, MACH_MSG_TYPE_MAKE_SEND_ONCE, &prev), KERN_SUCCESS);
	assert_int_equal(prev, MACH_PORT_NULL);
	st = status_of(p);
	assert_true(st.mps_nsrequest);
	assert_true(st.mps_pdrequest);
	/* The requests hold send-once rights to n. */
	assert_int_equal(status_of(n).mps_sorights, 2);

	/* Queue limit. */
	assert_kr(mach_port_set_qlimit(mach_task_self(), p, 9), KERN_SUCCESS);
	assert_int_equal(status_of(p).mps_qlimit, 9);

	/* Dequeueing messages through the set lowers the count and raises the seqno. */
	for (int i = 0; i < 3; i++) {
		rcv_buf_t m;

		memset(&m, 0, sizeof(m));
		assert_kr(rcv(s, &m, sizeof(m), 0), MACH_MSG_SUCCESS);
		assert_int_equal(m.h.msgh_id, i + 1);
		mach_msg_destroy(&m.h);
	}
	st = status_of(p);
	assert_int_equal(st.mps_msgcount, 0);
	assert_int_equal(st.mps_seqno, 3);
	/* The used send-once right (so2) is gone; the one in the space remains. */
	assert_int_equal(st.mps_sorights, 1);
	/* The MAKE_SEND right in message 1 was a destination: used up by delivery. */
	assert_int_equal(mvm_test_refs(p, MACH_PORT_RIGHT_SEND), 2);
	assert_true(st.mps_srights);

	/* Cancel the requests: the previous send-once rights come back as names. */
	assert_kr(mach_port_request_notification(mach_task_self(), p, MACH_NOTIFY_NO_SENDERS, 0,
	    MACH_PORT_NULL, 0, &prev), KERN_SUCCESS);
	assert_true(MACH_PORT_VALID(prev));
	assert_int_equal(mvm_test_type(prev), MACH_PORT_TYPE_SEND_ONCE);
	assert_kr(mach_port_deallocate(mach_task_self(), prev), KERN_SUCCESS);
	assert_kr(mach_port_request_notification(mach_task_self(), p, MACH_NOTIFY_PORT_DESTROYED, 0,
	    MACH_PORT_NULL, 0, &prev), KERN_SUCCESS);
	assert_true(MACH_PORT_VALID(prev));
	assert_kr(mach_port_deallocate(mach_task_self(), prev), KERN_SUCCESS);
	st = status_of(p);
	assert_false(st.mps_nsrequest);
	assert_false(st.mps_pdrequest);

	/* Out of the set; dropping every send right. */
	assert_kr(mach_port_move_member(mach_task_self(), p, MACH_PORT_NULL), KERN_SUCCESS);
	assert_kr(mach_port_mod_refs(mach_task_self(), p, MACH_PORT_RIGHT_SEND, -2), KERN_SUCCESS);
	assert_kr(mach_port_deallocate(mach_task_self(), so1), KERN_SUCCESS);
	st = status_of(p);
	assert_int_equal(st.mps_pset, MACH_PORT_NULL);
	assert_false(st.mps_srights);
	assert_int_equal(st.mps_mscount, 3);    /* the make-send count does not go down */
	/* so1's send-once notification travels on so1 itself: counted until dequeued. */
	assert_int_equal(st.mps_msgcount, 1);
	assert_int_equal(st.mps_sorights, 1);
	assert_int_equal(st.mps_seqno, 3);
	expect_msg(p, MACH_NOTIFY_SEND_ONCE, 3, p);
	st = status_of(p);
	assert_int_equal(st.mps_msgcount, 0);
	assert_int_equal(st.mps_sorights, 0);
	assert_int_equal(st.mps_seqno, 4);

	/* Errors. */
	assert_kr(mach_port_get_receive_status(mach_task_self(), s, &st), KERN_INVALID_RIGHT);
	assert_kr(mach_port_get_receive_status(mach_task_self(), MACH_PORT_NULL, &st),
	    KERN_INVALID_NAME);
	assert_kr(mach_port_get_receive_status(mach_task_self(), p + 0x10000, &st), KERN_INVALID_NAME);
	assert_kr(mach_port_get_receive_status(MACH_PORT_NULL, p, &st), MACH_SEND_INVALID_DEST);
	{
		mach_port_t snd = MACH_PORT_NULL;

		assert_kr(mach_port_extract_right(mach_task_self(), n, MACH_MSG_TYPE_MAKE_SEND_ONCE, &snd,
		    &t), KERN_SUCCESS);
		assert_kr(mach_port_get_receive_status(mach_task_self(), snd, &st), KERN_INVALID_RIGHT);
		assert_kr(mach_port_deallocate(mach_task_self(), snd), KERN_SUCCESS);
	}

	assert_kr(mach_port_destroy(mach_task_self(), s), KERN_SUCCESS);
	assert_kr(mach_port_destroy(mach_task_self(), p), KERN_SUCCESS);
	assert_kr(mach_port_destroy(mach_task_self(), n), KERN_SUCCESS);
	MVM_TEST_QUIESCENT();
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(seqno_starts_at_zero),
		cmocka_unit_test(seqno_independent_per_port),
		cmocka_unit_test(seqno_per_port_through_set),
		cmocka_unit_test(seqno_counts_notifications),
		cmocka_unit_test(seqno_used_by_too_large),
		cmocka_unit_test(seqno_set_and_wrap),
		cmocka_unit_test(seqno_reset_when_receive_right_moves),
		cmocka_unit_test(status_fields),
	};

	return cmocka_run_group_tests_name("seqno", tests, NULL, NULL);
}
