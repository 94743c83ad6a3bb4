/*
 * tests/unit/test_notify.c: the notifications the IPC layer sends (notify.defs):
 * no-senders (70), dead-name (72), port-deleted (65), send-once (71) and port-destroyed
 * (69): when each fires and when it must not, what the request returns, the message
 * formats, and that a notification takes the next sequence number of the port it is
 * queued on, ignoring the queue limit.
 */
#include <string.h>

#include "mvm_test.h"

#define SELF mach_task_self()

/* ---- helpers ------------------------------------------------------------------------ */

union notif {
	mach_msg_header_t h;
	mach_no_senders_notification_t ns;
	mach_dead_name_notification_t dn;
	mach_port_deleted_notification_t pd;
	mach_port_destroyed_notification_t pdn;
	mach_send_once_notification_t so;
	char buf[512];
};

struct port_msg {
	mach_msg_header_t h;
	mach_msg_type_t t;
	mach_port_t port;
};



/* A send-once right to `p` under a name of its own. */
static mach_port_t
new_send_once(mach_port_t p)
{
	mach_port_t so;
	mach_msg_type_name_t t;

	assert_kr(mach_port_extract_right(SELF, p, MACH_MSG_TYPE_MAKE_SEND_ONCE, &so, &t),
	    KERN_SUCCESS);
	assert_int_equal(t, MACH_MSG_TYPE_PORT_SEND_ONCE);
	return so;
}

/* Request a notification with a send-once right made from receive right `notify`;
 * return the previous request's send-once right (or MACH_PORT_NULL). */
static mach_port_t
request(mach_port_t name, mach_msg_id_t variant, mach_port_mscount_t sync, mach_port_t notify)
{
	mach_port_t prev = MACH_PORT_DEAD;

	assert_kr(mach_port_request_notification(SELF, name, variant, sync, notify,
	    MACH_MSG_TYPE_MAKE_SEND_ONCE, &prev), KERN_SUCCESS);
	return prev;
}

static void
set_type(mach_msg_type_t *t, mach_msg_type_name_t name, unsigned number)
{
	memset(t, 0, sizeof(*t));
	t->msgt_name = name;
	t->msgt_size = 32;
	t->msgt_number = number;
	t->msgt_inline = 1;
}

/* A message to `dest` (dest disposition `ddisp`) with `name` in its body as `disp`. */
static mach_msg_return_t
send_port(mach_port_t dest, mach_msg_type_name_t ddisp, mach_port_t name,
    mach_msg_type_name_t disp, mach_msg_id_t id)
{
	struct port_msg m;

	memset(&m, 0, sizeof(m));
	m.h.msgh_bits = MACH_MSGH_BITS(ddisp, 0) | MACH_MSGH_BITS_COMPLEX;
	m.h.msgh_remote_port = dest;
	m.h.msgh_id = id;
	set_type(&m.t, disp, 1);
	m.port = name;
	return mach_msg(&m.h, MACH_SEND_MSG | MACH_SEND_TIMEOUT, sizeof(m), 0, MACH_PORT_NULL, 0,
	    MACH_PORT_NULL);
}

/* A header-only message to `dest` with an optional reply right. */
static mach_msg_return_t
send_simple(mach_port_t dest, mach_msg_type_name_t ddisp, mach_port_t reply,
    mach_msg_type_name_t rdisp, mach_msg_id_t id)
{
	mach_msg_header_t h;

	memset(&h, 0, sizeof(h));
	h.msgh_bits = MACH_MSGH_BITS(ddisp, reply != MACH_PORT_NULL ? rdisp : 0);
	h.msgh_remote_port = dest;
	h.msgh_local_port = reply;
	h.msgh_id = id;
	return mach_msg(&h, MACH_SEND_MSG | MACH_SEND_TIMEOUT, sizeof(h), 0, MACH_PORT_NULL, 0,
	    MACH_PORT_NULL);
}

static mach_msg_return_t
recv(mach_port_t rcv, union notif *u)
{
	memset(u, 0xa5, sizeof(*u));
	return mach_msg(&u->h, MACH_RCV_MSG | MACH_RCV_TIMEOUT, 0, sizeof(*u), rcv, 0,
	    MACH_PORT_NULL);
}

static void
assert_no_message(mach_port_t rcv)
{
	union notif u;

	assert_kr(recv(rcv, &u), MACH_RCV_TIMED_OUT);
}

static void
check_type(const mach_msg_type_t *t, mach_msg_type_name_t name)
{
	assert_int_equal(t->msgt_name, name);
	assert_int_equal(t->msgt_size, 32);
	assert_int_equal(t->msgt_number, 1);
	assert_int_equal(t->msgt_inline, 1);
	assert_int_equal(t->msgt_longform, 0);
	assert_int_equal(t->msgt_deallocate, 0);
	assert_int_equal(t->msgt_unused, 0);
}

/* Receive the next message on `n` and check it is notification `id` in its exact format. */
static void
recv_notif(mach_port_t n, mach_msg_id_t id, union notif *u)
{
	assert_kr(recv(n, u), MACH_MSG_SUCCESS);
	assert_int_equal(u->h.msgh_id, id);
	/* Sent through the requester's send-once right, with no reply port. */
	assert_int_equal(MACH_MSGH_BITS_LOCAL(u->h.msgh_bits), MACH_MSG_TYPE_PORT_SEND_ONCE);
	assert_int_equal(MACH_MSGH_BITS_REMOTE(u->h.msgh_bits), 0);
	assert_int_equal(u->h.msgh_remote_port, MACH_PORT_NULL);
	assert_int_equal(u->h.msgh_local_port, n);
	switch (id) {
	case MACH_NOTIFY_NO_SENDERS:
		assert_int_equal(u->h.msgh_bits & MACH_MSGH_BITS_COMPLEX, 0);
		assert_int_equal(u->h.msgh_size, sizeof(mach_no_senders_notification_t));
		check_type(&u->ns.not_type, MACH_MSG_TYPE_INTEGER_32);
		break;
	case MACH_NOTIFY_DEAD_NAME:
		assert_int_equal(u->h.msgh_bits & MACH_MSGH_BITS_COMPLEX, 0);
		assert_int_equal(u->h.msgh_size, sizeof(mach_dead_name_notification_t));
		check_type(&u->dn.not_type, MACH_MSG_TYPE_PORT_NAME);
		break;
	case MACH_NOTIFY_PORT_DELETED:
		assert_int_equal(u->h.msgh_bits & MACH_MSGH_BITS_COMPLEX, 0);
		assert_int_equal(u->h.msgh_size, sizeof(mach_port_deleted_notification_t));
		check_type(&u->pd.not_type, MACH_MSG_TYPE_PORT_NAME);
		break;
	case MACH_NOTIFY_SEND_ONCE:
		assert_int_equal(u->h.msgh_bits & MACH_MSGH_BITS_COMPLEX, 0);
		assert_int_equal(u->h.msgh_size, sizeof(mach_send_once_notification_t));
		break;
	case MACH_NOTIFY_PORT_DESTROYED:
		assert_int_equal(u->h.msgh_bits & MACH_MSGH_BITS_COMPLEX, MACH_MSGH_BITS_COMPLEX);
		assert_int_equal(u->h.msgh_size, sizeof(mach_port_destroyed_notification_t));
		check_type(&u->pdn.not_type, MACH_MSG_TYPE_PORT_RECEIVE);
		break;
	default:
		fail_msg("unexpected notification id %d", id);
	}
}

static mach_port_t
recv_port(mach_port_t rcv, mach_msg_id_t id)
{
	union notif u;
	struct port_msg *m = (struct port_msg *)&u;

	assert_kr(recv(rcv, &u), MACH_MSG_SUCCESS);
	assert_int_equal(u.h.msgh_id, id);
	return m->port;
}

/* Park p's receive right in a message on holder, leaving p's send rights alone. */
static void
stash(mach_port_t holder, mach_port_t p)
{
	assert_kr(send_port(holder, MACH_MSG_TYPE_MAKE_SEND, p, MACH_MSG_TYPE_MOVE_RECEIVE, 1),
	    MACH_MSG_SUCCESS);
}

/* ---- no-senders ---------------------------------------------------------------------- */

static void
test_no_senders_last_deallocate(void **state)
{
	mach_port_t p = mvm_test_port_with_send(), n = mvm_test_receive(), q = mvm_test_receive();
	union notif u;

	(void)state;
	assert_kr(mach_port_mod_refs(SELF, p, MACH_PORT_RIGHT_SEND, 1), KERN_SUCCESS);
	assert_int_equal(request(p, MACH_NOTIFY_NO_SENDERS, 1, n), MACH_PORT_NULL);
	assert_true(mvm_test_status(p).mps_nsrequest);
	assert_int_equal(mvm_test_status(n).mps_sorights, 1);
	assert_no_message(n);

	/* One user reference less is not the last send right. */
	assert_kr(mach_port_deallocate(SELF, p), KERN_SUCCESS);
	assert_no_message(n);
	/* A send right in a queued message counts, too. */
	assert_kr(send_port(q, MACH_MSG_TYPE_MAKE_SEND, p, MACH_MSG_TYPE_COPY_SEND, 1),
	    MACH_MSG_SUCCESS);
	assert_kr(mach_port_deallocate(SELF, p), KERN_SUCCESS);
	assert_int_equal(mvm_test_type(p), MACH_PORT_TYPE_RECEIVE);
	assert_no_message(n);
	assert_kr(mach_port_destroy(SELF, q), KERN_SUCCESS);
	recv_notif(n, MACH_NOTIFY_NO_SENDERS, &u);
	assert_int_equal(u.ns.not_count, 1);
	assert_false(mvm_test_status(p).mps_nsrequest);
	assert_int_equal(mvm_test_status(n).mps_sorights, 0);

	/* It was a one-shot request. */
	assert_kr(mach_port_insert_right(SELF, p, p, MACH_MSG_TYPE_MAKE_SEND), KERN_SUCCESS);
	assert_kr(mach_port_deallocate(SELF, p), KERN_SUCCESS);
	assert_no_message(n);

	/* Every way a send right goes counts: destroy, mod_refs. */
	assert_kr(mach_port_insert_right(SELF, p, p, MACH_MSG_TYPE_MAKE_SEND), KERN_SUCCESS);
	assert_int_equal(request(p, MACH_NOTIFY_NO_SENDERS, 0, n), MACH_PORT_NULL);
	assert_kr(mach_port_mod_refs(SELF, p, MACH_PORT_RIGHT_SEND, -1), KERN_SUCCESS);
	recv_notif(n, MACH_NOTIFY_NO_SENDERS, &u);
	assert_int_equal(u.ns.not_count, 3);
	assert_no_message(n);

	assert_kr(mach_port_destroy(SELF, p), KERN_SUCCESS);
	assert_kr(mach_port_destroy(SELF, n), KERN_SUCCESS);
	MVM_TEST_QUIESCENT();
}

/* The last send right is the destination right of a message: it goes when the message
 * is received, or when the message is destroyed. */
static void
test_no_senders_consumed_by_message(void **state)
{
	mach_port_t p = mvm_test_port_with_send(), q = mvm_test_receive(), n = mvm_test_receive();
	union notif u, m;

	(void)state;
	/* (a) Dest right of a message to p, moved out of the space. */
	assert_int_equal(request(p, MACH_NOTIFY_NO_SENDERS, 1, n), MACH_PORT_NULL);
	assert_kr(send_simple(p, MACH_MSG_TYPE_MOVE_SEND, MACH_PORT_NULL, 0, 11), MACH_MSG_SUCCESS);
	assert_int_equal(mvm_test_type(p), MACH_PORT_TYPE_RECEIVE);
	assert_true(mvm_test_status(p).mps_srights);
	assert_no_message(n);
	assert_kr(recv(p, &m), MACH_MSG_SUCCESS);
	assert_int_equal(m.h.msgh_id, 11);
	recv_notif(n, MACH_NOTIFY_NO_SENDERS, &u);
	assert_int_equal(u.ns.not_count, 1);

	/* (b) A send right in the body, received, then destroyed by the receiver. */
	assert_kr(mach_port_insert_right(SELF, p, p, MACH_MSG_TYPE_MAKE_SEND), KERN_SUCCESS);
	assert_int_equal(request(p, MACH_NOTIFY_NO_SENDERS, 1, n), MACH_PORT_NULL);
	assert_kr(send_port(q, MACH_MSG_TYPE_MAKE_SEND, p, MACH_MSG_TYPE_MOVE_SEND, 12),
	    MACH_MSG_SUCCESS);
	assert_no_message(n);
	assert_kr(recv(q, &m), MACH_MSG_SUCCESS);
	assert_int_equal(((struct port_msg *)&m)->port, p);
	assert_no_message(n);
	mach_msg_destroy(&m.h);
	recv_notif(n, MACH_NOTIFY_NO_SENDERS, &u);
	assert_int_equal(u.ns.not_count, 2);

	assert_no_message(n);
	assert_kr(mach_port_destroy(SELF, p), KERN_SUCCESS);
	assert_kr(mach_port_destroy(SELF, q), KERN_SUCCESS);
	assert_kr(mach_port_destroy(SELF, n), KERN_SUCCESS);
	MVM_TEST_QUIESCENT();
}

static void
test_no_senders_destroyed_message(void **state)
{
	mach_port_t p = mvm_test_receive(), q = mvm_test_receive(), n = mvm_test_receive();
	union notif u, m;

	(void)state;
	/* A made send right, only in a message queued on q; q dies. */
	assert_kr(send_port(q, MACH_MSG_TYPE_MAKE_SEND, p, MACH_MSG_TYPE_MAKE_SEND, 13),
	    MACH_MSG_SUCCESS);
	assert_int_equal(request(p, MACH_NOTIFY_NO_SENDERS, 1, n), MACH_PORT_NULL);
	assert_no_message(n);
	assert_kr(mach_port_destroy(SELF, q), KERN_SUCCESS);
	recv_notif(n, MACH_NOTIFY_NO_SENDERS, &u);
	assert_int_equal(u.ns.not_count, 1);

	/* A too-large message destroyed at receive (no MACH_RCV_LARGE) releases its rights. */
	q = mvm_test_receive();
	assert_kr(send_port(q, MACH_MSG_TYPE_MAKE_SEND, p, MACH_MSG_TYPE_MAKE_SEND, 14),
	    MACH_MSG_SUCCESS);
	assert_int_equal(request(p, MACH_NOTIFY_NO_SENDERS, 2, n), MACH_PORT_NULL);
	assert_kr(mach_msg(&m.h, MACH_RCV_MSG | MACH_RCV_TIMEOUT, 0, sizeof(mach_msg_header_t), q, 0,
	    MACH_PORT_NULL), MACH_RCV_TOO_LARGE);
	assert_int_equal(m.h.msgh_id, 14);
	recv_notif(n, MACH_NOTIFY_NO_SENDERS, &u);
	assert_int_equal(u.ns.not_count, 2);

	/* A message sent to p through its last send right and destroyed with p's queue: p
	 * is gone by then, so nothing is sent, and the request's right dies quietly... */
	assert_kr(mach_port_insert_right(SELF, p, p, MACH_MSG_TYPE_MAKE_SEND), KERN_SUCCESS);
	assert_int_equal(request(p, MACH_NOTIFY_NO_SENDERS, 1, n), MACH_PORT_NULL);
	assert_kr(send_simple(p, MACH_MSG_TYPE_MOVE_SEND, MACH_PORT_NULL, 0, 15), MACH_MSG_SUCCESS);
	assert_kr(mach_port_destroy(SELF, p), KERN_SUCCESS);
	/* ... except for the send-once notification of the unused request right. */
	recv_notif(n, MACH_NOTIFY_SEND_ONCE, &u);
	assert_no_message(n);

	assert_kr(mach_port_destroy(SELF, q), KERN_SUCCESS);
	assert_kr(mach_port_destroy(SELF, n), KERN_SUCCESS);
	MVM_TEST_QUIESCENT();
}

static void
test_no_senders_immediate(void **state)
{
	mach_port_t p = mvm_test_receive(), n = mvm_test_receive();
	union notif u;

	(void)state;
	/* No send right ever made: mscount 0 >= sync 0, it fires at once. */
	assert_int_equal(request(p, MACH_NOTIFY_NO_SENDERS, 0, n), MACH_PORT_NULL);
	recv_notif(n, MACH_NOTIFY_NO_SENDERS, &u);
	assert_int_equal(u.ns.not_count, 0);
	assert_false(mvm_test_status(p).mps_nsrequest);

	/* One made and gone: mscount 1. sync 1 fires at once; sync 2 waits for another. */
	assert_kr(mach_port_insert_right(SELF, p, p, MACH_MSG_TYPE_MAKE_SEND), KERN_SUCCESS);
	assert_kr(mach_port_deallocate(SELF, p), KERN_SUCCESS);
	assert_int_equal(request(p, MACH_NOTIFY_NO_SENDERS, 1, n), MACH_PORT_NULL);
	recv_notif(n, MACH_NOTIFY_NO_SENDERS, &u);
	assert_int_equal(u.ns.not_count, 1);
	assert_int_equal(request(p, MACH_NOTIFY_NO_SENDERS, 2, n), MACH_PORT_NULL);
	assert_no_message(n);
	assert_true(mvm_test_status(p).mps_nsrequest);
	assert_kr(mach_port_insert_right(SELF, p, p, MACH_MSG_TYPE_MAKE_SEND), KERN_SUCCESS);
	assert_no_message(n);
	assert_kr(mach_port_deallocate(SELF, p), KERN_SUCCESS);
	recv_notif(n, MACH_NOTIFY_NO_SENDERS, &u);
	assert_int_equal(u.ns.not_count, 2);

	/* With send rights alive, sync 0 does not fire. */
	assert_kr(mach_port_insert_right(SELF, p, p, MACH_MSG_TYPE_MAKE_SEND), KERN_SUCCESS);
	assert_int_equal(request(p, MACH_NOTIFY_NO_SENDERS, 0, n), MACH_PORT_NULL);
	assert_no_message(n);
	assert_kr(mach_port_deallocate(SELF, p), KERN_SUCCESS);
	recv_notif(n, MACH_NOTIFY_NO_SENDERS, &u);
	assert_int_equal(u.ns.not_count, 3);

	/* The count carried is the make-send count, including one set by the caller. */
	assert_kr(mach_port_set_mscount(SELF, p, 41), KERN_SUCCESS);
	assert_int_equal(request(p, MACH_NOTIFY_NO_SENDERS, 42, n), MACH_PORT_NULL);
	assert_no_message(n);
	assert_kr(mach_port_insert_right(SELF, p, p, MACH_MSG_TYPE_MAKE_SEND), KERN_SUCCESS);
	assert_int_equal(mvm_test_status(p).mps_mscount, 42);
	assert_kr(mach_port_deallocate(SELF, p), KERN_SUCCESS);
	recv_notif(n, MACH_NOTIFY_NO_SENDERS, &u);
	assert_int_equal(u.ns.not_count, 42);
	assert_int_equal(request(p, MACH_NOTIFY_NO_SENDERS, 42, n), MACH_PORT_NULL);
	recv_notif(n, MACH_NOTIFY_NO_SENDERS, &u);
	assert_int_equal(u.ns.not_count, 42);

	/* The notify port may be the port itself (a common idiom). */
	assert_int_equal(request(p, MACH_NOTIFY_NO_SENDERS, 0, p), MACH_PORT_NULL);
	recv_notif(p, MACH_NOTIFY_NO_SENDERS, &u);
	assert_int_equal(u.ns.not_count, 42);

	assert_kr(mach_port_destroy(SELF, p), KERN_SUCCESS);
	assert_kr(mach_port_destroy(SELF, n), KERN_SUCCESS);
	MVM_TEST_QUIESCENT();
}

static void
test_no_senders_previous(void **state)
{
	mach_port_t p = mvm_test_port_with_send(), n1 = mvm_test_receive(), n2 = mvm_test_receive(), prev, so;
	union notif u;

	(void)state;
	assert_int_equal(request(p, MACH_NOTIFY_NO_SENDERS, 1, n1), MACH_PORT_NULL);
	/* A second request hands back the first one's send-once right. */
	prev = request(p, MACH_NOTIFY_NO_SENDERS, 1, n2);
	assert_true(MACH_PORT_VALID(prev));
	assert_int_equal(mvm_test_type(prev), MACH_PORT_TYPE_SEND_ONCE);
	assert_int_equal(mvm_test_status(n1).mps_sorights, 1);
	assert_int_equal(mvm_test_status(n2).mps_sorights, 1);
	/* It is a right to n1: used unused, it tells n1 so. */
	assert_kr(mach_port_deallocate(SELF, prev), KERN_SUCCESS);
	recv_notif(n1, MACH_NOTIFY_SEND_ONCE, &u);
	assert_no_message(n1);

	/* Cancelling (notify MACH_PORT_NULL) returns the current request. */
	prev = MACH_PORT_DEAD;
	assert_kr(mach_port_request_notification(SELF, p, MACH_NOTIFY_NO_SENDERS, 0, MACH_PORT_NULL,
	    MACH_MSG_TYPE_MAKE_SEND_ONCE, &prev), KERN_SUCCESS);
	assert_int_equal(mvm_test_type(prev), MACH_PORT_TYPE_SEND_ONCE);
	assert_false(mvm_test_status(p).mps_nsrequest);
	/* Send it a message: it reaches n2. */
	assert_kr(send_simple(prev, MACH_MSG_TYPE_MOVE_SEND_ONCE, MACH_PORT_NULL, 0, 77),
	    MACH_MSG_SUCCESS);
	assert_kr(recv(n2, &u), MACH_MSG_SUCCESS);
	assert_int_equal(u.h.msgh_id, 77);
	/* Nothing armed: the last send right goes silently. */
	assert_kr(mach_port_deallocate(SELF, p), KERN_SUCCESS);
	assert_no_message(n1);
	assert_no_message(n2);

	/* MOVE_SEND_ONCE: the caller's own send-once right becomes the request. */
	so = new_send_once(n1);
	prev = MACH_PORT_DEAD;
	assert_kr(mach_port_request_notification(SELF, p, MACH_NOTIFY_NO_SENDERS, 1, so,
	    MACH_MSG_TYPE_MOVE_SEND_ONCE, &prev), KERN_SUCCESS);
	assert_int_equal(prev, MACH_PORT_NULL);
	assert_int_equal(mvm_test_type(so), 0); /* the name is gone */
	recv_notif(n1, MACH_NOTIFY_NO_SENDERS, &u); /* mscount 1 >= 1, no senders: at once */
	assert_int_equal(u.ns.not_count, 1);

	/* A request outstanding when the port dies: its right is destroyed unused. */
	assert_int_equal(request(p, MACH_NOTIFY_NO_SENDERS, 5, n2), MACH_PORT_NULL);
	assert_kr(mach_port_destroy(SELF, p), KERN_SUCCESS);
	recv_notif(n2, MACH_NOTIFY_SEND_ONCE, &u);

	assert_kr(mach_port_destroy(SELF, n1), KERN_SUCCESS);
	assert_kr(mach_port_destroy(SELF, n2), KERN_SUCCESS);
	MVM_TEST_QUIESCENT();
}

static void
test_request_errors(void **state)
{
	mach_port_t p = mvm_test_receive(), n = mvm_test_receive(), s, d, so, prev = 0x55;

	(void)state;
	assert_kr(mach_port_allocate(SELF, MACH_PORT_RIGHT_PORT_SET, &s), KERN_SUCCESS);
	assert_kr(mach_port_allocate(SELF, MACH_PORT_RIGHT_DEAD_NAME, &d), KERN_SUCCESS);
	so = new_send_once(p);

	/* Variants that are not supported or do not exist. */
	assert_kr(mach_port_request_notification(SELF, p, MACH_NOTIFY_MSG_ACCEPTED, 0, n,
	    MACH_MSG_TYPE_MAKE_SEND_ONCE, &prev), KERN_INVALID_VALUE);
	assert_kr(mach_port_request_notification(SELF, p, MACH_NOTIFY_SEND_ONCE, 0, n,
	    MACH_MSG_TYPE_MAKE_SEND_ONCE, &prev), KERN_INVALID_VALUE);
	assert_kr(mach_port_request_notification(SELF, p, 0, 0, n, MACH_MSG_TYPE_MAKE_SEND_ONCE,
	    &prev), KERN_INVALID_VALUE);
	/* The notify right must be a send-once right. */
	assert_kr(mach_port_request_notification(SELF, p, MACH_NOTIFY_NO_SENDERS, 0, n,
	    MACH_MSG_TYPE_MAKE_SEND, &prev), KERN_INVALID_VALUE);
	assert_kr(mach_port_request_notification(SELF, p, MACH_NOTIFY_NO_SENDERS, 0, n,
	    MACH_MSG_TYPE_COPY_SEND, &prev), KERN_INVALID_VALUE);
	assert_kr(mach_port_request_notification(SELF, p, MACH_NOTIFY_NO_SENDERS, 0,
	    MACH_PORT_MAKE(900, 1), MACH_MSG_TYPE_MAKE_SEND_ONCE, &prev), KERN_INVALID_CAPABILITY);
	assert_kr(mach_port_request_notification(SELF, p, MACH_NOTIFY_NO_SENDERS, 0, so,
	    MACH_MSG_TYPE_MAKE_SEND_ONCE, &prev), KERN_INVALID_CAPABILITY);
	assert_kr(mach_port_request_notification(SELF, p, MACH_NOTIFY_NO_SENDERS, 0, s,
	    MACH_MSG_TYPE_MAKE_SEND_ONCE, &prev), KERN_INVALID_CAPABILITY);
	assert_kr(mach_port_request_notification(SELF, p, MACH_NOTIFY_NO_SENDERS, 0, n,
	    MACH_MSG_TYPE_MOVE_SEND_ONCE, &prev), KERN_INVALID_CAPABILITY);
	assert_kr(mach_port_request_notification(SELF, p, MACH_NOTIFY_NO_SENDERS, 0, MACH_PORT_DEAD,
	    MACH_MSG_TYPE_MOVE_SEND_ONCE, &prev), KERN_INVALID_CAPABILITY);
	/* A dead name as the notify right: there is nobody to notify. */
	assert_kr(mach_port_request_notification(SELF, p, MACH_NOTIFY_NO_SENDERS, 1, d,
	    MACH_MSG_TYPE_MOVE_SEND_ONCE, &prev), KERN_INVALID_CAPABILITY);
	assert_int_equal(mvm_test_refs(d, MACH_PORT_RIGHT_DEAD_NAME), 1);
	/* Rights the name does not have. */
	assert_kr(mach_port_request_notification(SELF, so, MACH_NOTIFY_NO_SENDERS, 0, n,
	    MACH_MSG_TYPE_MAKE_SEND_ONCE, &prev), KERN_INVALID_RIGHT);
	assert_kr(mach_port_request_notification(SELF, so, MACH_NOTIFY_PORT_DESTROYED, 0, n,
	    MACH_MSG_TYPE_MAKE_SEND_ONCE, &prev), KERN_INVALID_RIGHT);
	assert_kr(mach_port_request_notification(SELF, s, MACH_NOTIFY_NO_SENDERS, 0, n,
	    MACH_MSG_TYPE_MAKE_SEND_ONCE, &prev), KERN_INVALID_RIGHT);
	assert_kr(mach_port_request_notification(SELF, s, MACH_NOTIFY_DEAD_NAME, 0, n,
	    MACH_MSG_TYPE_MAKE_SEND_ONCE, &prev), KERN_INVALID_RIGHT);
	assert_kr(mach_port_request_notification(SELF, p, MACH_NOTIFY_DEAD_NAME, 0, n,
	    MACH_MSG_TYPE_MAKE_SEND_ONCE, &prev), KERN_INVALID_RIGHT);
	/* Port-destroyed takes no sync; a dead name needs sync and a notify port. */
	assert_kr(mach_port_request_notification(SELF, p, MACH_NOTIFY_PORT_DESTROYED, 1, n,
	    MACH_MSG_TYPE_MAKE_SEND_ONCE, &prev), KERN_INVALID_VALUE);
	assert_kr(mach_port_request_notification(SELF, d, MACH_NOTIFY_DEAD_NAME, 0, n,
	    MACH_MSG_TYPE_MAKE_SEND_ONCE, &prev), KERN_INVALID_ARGUMENT);
	assert_kr(mach_port_request_notification(SELF, d, MACH_NOTIFY_DEAD_NAME, 1, MACH_PORT_NULL,
	    MACH_MSG_TYPE_MAKE_SEND_ONCE, &prev), KERN_INVALID_ARGUMENT);
	assert_kr(mach_port_request_notification(SELF, MACH_PORT_MAKE(901, 1), MACH_NOTIFY_DEAD_NAME,
	    0, n, MACH_MSG_TYPE_MAKE_SEND_ONCE, &prev), KERN_INVALID_NAME);
	assert_kr(mach_port_request_notification((mach_port_t)77, p, MACH_NOTIFY_NO_SENDERS, 0, n,
	    MACH_PORT_NULL, &prev), MACH_SEND_INVALID_DEST);
	assert_kr(mach_port_request_notification(SELF, p, MACH_NOTIFY_NO_SENDERS, 0, n,
	    MACH_MSG_TYPE_MAKE_SEND_ONCE, NULL), KERN_INVALID_ARGUMENT);

	/* None of that changed anything. */
	assert_int_equal(prev, 0x55);
	assert_int_equal(mvm_test_status(n).mps_sorights, 0);
	assert_int_equal(mvm_test_status(p).mps_sorights, 1);
	assert_false(mvm_test_status(p).mps_nsrequest);
	assert_false(mvm_test_status(p).mps_pdrequest);
	assert_int_equal(mvm_test_type(so), MACH_PORT_TYPE_SEND_ONCE);
	assert_no_message(n);

	assert_kr(mach_port_destroy(SELF, so), KERN_SUCCESS);
	assert_kr(mach_port_destroy(SELF, p), KERN_SUCCESS);
	assert_kr(mach_port_destroy(SELF, n), KERN_SUCCESS);
	assert_kr(mach_port_destroy(SELF, s), KERN_SUCCESS);
	assert_kr(mach_port_destroy(SELF, d), KERN_SUCCESS);
	MVM_TEST_QUIESCENT();
}

/* ---- dead-name ------------------------------------------------------------------------ */

static void
test_dead_name_on_port_death(void **state)
{
	mach_port_t p = mvm_test_receive(), n = mvm_test_receive(), holder = mvm_test_receive();
	mach_port_t so1, so2, sp = mvm_test_port_with_send();
	union notif u;

	(void)state;
	so1 = new_send_once(p);
	so2 = new_send_once(p);
	assert_int_equal(request(so1, MACH_NOTIFY_DEAD_NAME, 0, n), MACH_PORT_NULL);
	assert_int_equal(mvm_test_type(so1), MACH_PORT_TYPE_SEND_ONCE | MACH_PORT_TYPE_DNREQUEST);
	assert_kr(mach_port_destroy(SELF, p), KERN_SUCCESS);
	/* so1: a dead name with one user reference more, for the notification. */
	assert_int_equal(mvm_test_type(so1), MACH_PORT_TYPE_DEAD_NAME);
	assert_int_equal(mvm_test_refs(so1, MACH_PORT_RIGHT_DEAD_NAME), 2);
	/* so2 had no request: one reference, no message. */
	assert_int_equal(mvm_test_refs(so2, MACH_PORT_RIGHT_DEAD_NAME), 1);
	recv_notif(n, MACH_NOTIFY_DEAD_NAME, &u);
	assert_int_equal(u.dn.not_port, so1);
	assert_no_message(n);

	/* A send-only name: the receive right dies in a message destroyed with holder. */
	assert_kr(mach_port_mod_refs(SELF, sp, MACH_PORT_RIGHT_SEND, 2), KERN_SUCCESS);
	stash(holder, sp);
	assert_int_equal(request(sp, MACH_NOTIFY_DEAD_NAME, 0, n), MACH_PORT_NULL);
	assert_kr(mach_port_destroy(SELF, holder), KERN_SUCCESS);
	assert_int_equal(mvm_test_type(sp), MACH_PORT_TYPE_DEAD_NAME);
	assert_int_equal(mvm_test_refs(sp, MACH_PORT_RIGHT_DEAD_NAME), 4);
	recv_notif(n, MACH_NOTIFY_DEAD_NAME, &u);
	assert_int_equal(u.dn.not_port, sp);

	/* The receive right goes with mod_refs(RECEIVE, -1) while its name keeps send
	 * rights: the same name becomes dead and is reported. */
	p = mvm_test_port_with_send();
	assert_int_equal(request(p, MACH_NOTIFY_DEAD_NAME, 0, n), MACH_PORT_NULL);
	assert_kr(mach_port_mod_refs(SELF, p, MACH_PORT_RIGHT_RECEIVE, -1), KERN_SUCCESS);
	assert_int_equal(mvm_test_type(p), MACH_PORT_TYPE_DEAD_NAME);
	assert_int_equal(mvm_test_refs(p, MACH_PORT_RIGHT_DEAD_NAME), 2);
	recv_notif(n, MACH_NOTIFY_DEAD_NAME, &u);
	assert_int_equal(u.dn.not_port, p);
	assert_no_message(n);

	assert_kr(mach_port_destroy(SELF, p), KERN_SUCCESS);
	assert_kr(mach_port_destroy(SELF, sp), KERN_SUCCESS);
	assert_kr(mach_port_destroy(SELF, so1), KERN_SUCCESS);
	assert_kr(mach_port_destroy(SELF, so2), KERN_SUCCESS);
	assert_kr(mach_port_destroy(SELF, n), KERN_SUCCESS);
	MVM_TEST_QUIESCENT();
}

static void
test_dead_name_immediate_and_previous(void **state)
{
	mach_port_t d, n = mvm_test_receive(), n2 = mvm_test_receive(), p = mvm_test_receive(), so, prev;
	union notif u;

	(void)state;
	/* Requesting on a name that is already dead, with sync, notifies at once. */
	assert_kr(mach_port_allocate(SELF, MACH_PORT_RIGHT_DEAD_NAME, &d), KERN_SUCCESS);
	assert_int_equal(request(d, MACH_NOTIFY_DEAD_NAME, 1, n), MACH_PORT_NULL);
	assert_int_equal(mvm_test_refs(d, MACH_PORT_RIGHT_DEAD_NAME), 2);
	assert_int_equal(mvm_test_type(d), MACH_PORT_TYPE_DEAD_NAME); /* nothing pending */
	recv_notif(n, MACH_NOTIFY_DEAD_NAME, &u);
	assert_int_equal(u.dn.not_port, d);

	/* Likewise for a name that died with its port. */
	so = new_send_once(p);
	assert_kr(mach_port_destroy(SELF, p), KERN_SUCCESS);
	assert_int_equal(mvm_test_type(so), MACH_PORT_TYPE_DEAD_NAME);
	assert_no_message(n);
	assert_int_equal(request(so, MACH_NOTIFY_DEAD_NAME, 1, n), MACH_PORT_NULL);
	assert_int_equal(mvm_test_refs(so, MACH_PORT_RIGHT_DEAD_NAME), 2);
	recv_notif(n, MACH_NOTIFY_DEAD_NAME, &u);
	assert_int_equal(u.dn.not_port, so);

	assert_kr(mach_port_destroy(SELF, so), KERN_SUCCESS);

	/* The previous request comes back as a send-once right; cancel returns the last. */
	p = mvm_test_receive();
	so = new_send_once(p);
	assert_int_equal(request(so, MACH_NOTIFY_DEAD_NAME, 0, n), MACH_PORT_NULL);
	prev = request(so, MACH_NOTIFY_DEAD_NAME, 0, n2);
	assert_int_equal(mvm_test_type(prev), MACH_PORT_TYPE_SEND_ONCE);
	assert_kr(mach_port_deallocate(SELF, prev), KERN_SUCCESS);
	recv_notif(n, MACH_NOTIFY_SEND_ONCE, &u);
	prev = request(so, MACH_NOTIFY_DEAD_NAME, 0, MACH_PORT_NULL);
	assert_int_equal(mvm_test_type(prev), MACH_PORT_TYPE_SEND_ONCE);
	assert_int_equal(mvm_test_type(so), MACH_PORT_TYPE_SEND_ONCE);
	assert_kr(mach_port_deallocate(SELF, prev), KERN_SUCCESS);
	recv_notif(n2, MACH_NOTIFY_SEND_ONCE, &u);
	/* Cancelled: the port's death is not reported, and adds no reference. */
	assert_kr(mach_port_destroy(SELF, p), KERN_SUCCESS);
	assert_int_equal(mvm_test_refs(so, MACH_PORT_RIGHT_DEAD_NAME), 1);
	assert_no_message(n);
	assert_no_message(n2);

	assert_kr(mach_port_mod_refs(SELF, d, MACH_PORT_RIGHT_DEAD_NAME, -2), KERN_SUCCESS);
	assert_kr(mach_port_destroy(SELF, so), KERN_SUCCESS);
	assert_kr(mach_port_destroy(SELF, n), KERN_SUCCESS);
	assert_kr(mach_port_destroy(SELF, n2), KERN_SUCCESS);
	MVM_TEST_QUIESCENT();
}

/* ---- port-deleted ---------------------------------------------------------------------- */

static void
test_port_deleted(void **state)
{
	mach_port_t p = mvm_test_receive(), n = mvm_test_receive(), holder = mvm_test_receive(), q = mvm_test_receive();
	mach_port_t so, sp = mvm_test_port_with_send();
	union notif u;

	(void)state;
	/* A send-once name with a dead-name request, deallocated. */
	so = new_send_once(p);
	assert_int_equal(request(so, MACH_NOTIFY_DEAD_NAME, 0, n), MACH_PORT_NULL);
	assert_kr(mach_port_deallocate(SELF, so), KERN_SUCCESS);
	recv_notif(n, MACH_NOTIFY_PORT_DELETED, &u);
	assert_int_equal(u.pd.not_port, so);
	recv_notif(p, MACH_NOTIFY_SEND_ONCE, &u); /* and the right itself said so to p */
	assert_no_message(n);

	/* A send-only name: not while user references remain; yes on the last one. */
	assert_kr(mach_port_mod_refs(SELF, sp, MACH_PORT_RIGHT_SEND, 1), KERN_SUCCESS);
	stash(holder, sp);
	assert_int_equal(request(sp, MACH_NOTIFY_DEAD_NAME, 0, n), MACH_PORT_NULL);
	assert_kr(mach_port_deallocate(SELF, sp), KERN_SUCCESS);
	assert_no_message(n);
	assert_kr(mach_port_deallocate(SELF, sp), KERN_SUCCESS);
	recv_notif(n, MACH_NOTIFY_PORT_DELETED, &u);
	assert_int_equal(u.pd.not_port, sp);

	/* The right moved away in a message. */
	sp = recv_port(holder, 1); /* the receive right is back, under a new name */
	assert_int_equal(mvm_test_type(sp), MACH_PORT_TYPE_RECEIVE);
	assert_kr(mach_port_insert_right(SELF, sp, sp, MACH_MSG_TYPE_MAKE_SEND), KERN_SUCCESS);
	stash(holder, sp);
	assert_int_equal(request(sp, MACH_NOTIFY_DEAD_NAME, 0, n), MACH_PORT_NULL);
	assert_kr(send_port(q, MACH_MSG_TYPE_MAKE_SEND, sp, MACH_MSG_TYPE_MOVE_SEND, 2),
	    MACH_MSG_SUCCESS);
	recv_notif(n, MACH_NOTIFY_PORT_DELETED, &u);
	assert_int_equal(u.pd.not_port, sp);
	mach_port_t got = recv_port(q, 2);

	assert_int_equal(mvm_test_type(got), MACH_PORT_TYPE_SEND); /* no request on it */

	/* The name destroyed. */
	assert_int_equal(request(got, MACH_NOTIFY_DEAD_NAME, 0, n), MACH_PORT_NULL);
	assert_kr(mach_port_destroy(SELF, got), KERN_SUCCESS);
	recv_notif(n, MACH_NOTIFY_PORT_DELETED, &u);
	assert_int_equal(u.pd.not_port, got);

	/* A send-once name used as a destination. */
	so = new_send_once(p);
	assert_int_equal(request(so, MACH_NOTIFY_DEAD_NAME, 0, n), MACH_PORT_NULL);
	assert_kr(send_simple(so, MACH_MSG_TYPE_MOVE_SEND_ONCE, MACH_PORT_NULL, 0, 3),
	    MACH_MSG_SUCCESS);
	recv_notif(n, MACH_NOTIFY_PORT_DELETED, &u);
	assert_int_equal(u.pd.not_port, so);
	assert_kr(recv(p, &u), MACH_MSG_SUCCESS);
	assert_int_equal(u.h.msgh_id, 3);
	assert_no_message(p);
	assert_no_message(n);

	assert_kr(mach_port_destroy(SELF, holder), KERN_SUCCESS);
	assert_kr(mach_port_destroy(SELF, p), KERN_SUCCESS);
	assert_kr(mach_port_destroy(SELF, q), KERN_SUCCESS);
	assert_kr(mach_port_destroy(SELF, n), KERN_SUCCESS);
	MVM_TEST_QUIESCENT();
}

/* ---- send-once ------------------------------------------------------------------------- */

static void
test_send_once_notifications(void **state)
{
	mach_port_t p = mvm_test_receive(), q = mvm_test_receive(), so, d;
	union notif u, m;

	(void)state;
	/* Deallocated unused. */
	so = new_send_once(p);
	assert_kr(mach_port_deallocate(SELF, so), KERN_SUCCESS);
	recv_notif(p, MACH_NOTIFY_SEND_ONCE, &u);
	assert_int_equal(mvm_test_status(p).mps_sorights, 0);

	/* A MAKE_SEND_ONCE reply right of a message destroyed with the port it waits on. */
	assert_kr(send_simple(q, MACH_MSG_TYPE_MAKE_SEND, p, MACH_MSG_TYPE_MAKE_SEND_ONCE, 5),
	    MACH_MSG_SUCCESS);
	assert_int_equal(mvm_test_status(p).mps_sorights, 1);
	assert_no_message(p);
	assert_kr(mach_port_destroy(SELF, q), KERN_SUCCESS);
	recv_notif(p, MACH_NOTIFY_SEND_ONCE, &u);
	assert_int_equal(mvm_test_status(p).mps_sorights, 0);
	assert_no_message(p);

	/* A send-once right in a message body, destroyed likewise. */
	q = mvm_test_receive();
	assert_kr(send_port(q, MACH_MSG_TYPE_MAKE_SEND, p, MACH_MSG_TYPE_MAKE_SEND_ONCE, 6),
	    MACH_MSG_SUCCESS);
	assert_kr(mach_port_destroy(SELF, q), KERN_SUCCESS);
	recv_notif(p, MACH_NOTIFY_SEND_ONCE, &u);

	/* A reply right received and destroyed by the receiver with mach_msg_destroy. */
	q = mvm_test_receive();
	assert_kr(send_simple(q, MACH_MSG_TYPE_MAKE_SEND, p, MACH_MSG_TYPE_MAKE_SEND_ONCE, 7),
	    MACH_MSG_SUCCESS);
	assert_kr(recv(q, &m), MACH_MSG_SUCCESS);
	assert_int_equal(MACH_MSGH_BITS_REMOTE(m.h.msgh_bits), MACH_MSG_TYPE_PORT_SEND_ONCE);
	assert_no_message(p);
	mach_msg_destroy(&m.h);
	recv_notif(p, MACH_NOTIFY_SEND_ONCE, &u);

	/* A send-once right used to send a message is consumed: no notification. */
	so = new_send_once(p);
	assert_kr(send_simple(so, MACH_MSG_TYPE_MOVE_SEND_ONCE, MACH_PORT_NULL, 0, 8),
	    MACH_MSG_SUCCESS);
	assert_kr(recv(p, &u), MACH_MSG_SUCCESS);
	assert_int_equal(u.h.msgh_id, 8);
	assert_no_message(p);
	/* ... nor is one that becomes a dead name. */
	so = new_send_once(q);
	assert_kr(mach_port_destroy(SELF, q), KERN_SUCCESS);
	d = so;
	assert_int_equal(mvm_test_type(d), MACH_PORT_TYPE_DEAD_NAME);
	assert_kr(mach_port_deallocate(SELF, d), KERN_SUCCESS);
	/* A send-once right to p destroyed through mod_refs. */
	so = new_send_once(p);
	assert_kr(mach_port_mod_refs(SELF, so, MACH_PORT_RIGHT_SEND_ONCE, -1), KERN_SUCCESS);
	recv_notif(p, MACH_NOTIFY_SEND_ONCE, &u);
	assert_no_message(p);

	assert_kr(mach_port_destroy(SELF, p), KERN_SUCCESS);
	MVM_TEST_QUIESCENT();
}

/* ---- port-destroyed ------------------------------------------------------------------- */

static void
test_port_destroyed(void **state)
{
	mach_port_t p = mvm_test_port_with_send(), n = mvm_test_receive(), r, so;
	mach_port_status_t st;
	union notif u;

	(void)state;
	assert_kr(mach_port_set_seqno(SELF, p, 30), KERN_SUCCESS);
	assert_kr(send_simple(p, MACH_MSG_TYPE_COPY_SEND, MACH_PORT_NULL, 0, 1), MACH_MSG_SUCCESS);
	assert_kr(send_simple(p, MACH_MSG_TYPE_COPY_SEND, MACH_PORT_NULL, 0, 2), MACH_MSG_SUCCESS);
	so = new_send_once(p);
	assert_int_equal(request(p, MACH_NOTIFY_PORT_DESTROYED, 0, n), MACH_PORT_NULL);
	assert_true(mvm_test_status(p).mps_pdrequest);

	/* Destroying the name: the receive right goes to n, alive, with its messages. */
	assert_kr(mach_port_destroy(SELF, p), KERN_SUCCESS);
	assert_int_equal(mvm_test_type(p), 0);
	/* The port is alive: its send-once right is not a dead name. */
	assert_int_equal(mvm_test_type(so), MACH_PORT_TYPE_SEND_ONCE);
	recv_notif(n, MACH_NOTIFY_PORT_DESTROYED, &u);
	r = u.pdn.not_port;
	assert_true(MACH_PORT_VALID(r));
	assert_int_equal(mvm_test_type(r), MACH_PORT_TYPE_RECEIVE);
	st = mvm_test_status(r);
	assert_int_equal(st.mps_msgcount, 2);
	assert_false(st.mps_pdrequest); /* the request was used */
	assert_int_equal(st.mps_sorights, 1);
	assert_int_equal(st.mps_seqno, 0); /* the right moved in a message */
	/* Receive works on the new name, in order. */
	assert_kr(recv(r, &u), MACH_MSG_SUCCESS);
	assert_int_equal(u.h.msgh_id, 1);
	assert_int_equal(u.h.msgh_local_port, r);
	assert_int_equal(u.h.msgh_seqno, 0);
	assert_kr(recv(r, &u), MACH_MSG_SUCCESS);
	assert_int_equal(u.h.msgh_id, 2);
	assert_int_equal(u.h.msgh_seqno, 1);
	assert_kr(send_simple(so, MACH_MSG_TYPE_MOVE_SEND_ONCE, MACH_PORT_NULL, 0, 3),
	    MACH_MSG_SUCCESS);
	assert_kr(recv(r, &u), MACH_MSG_SUCCESS);
	assert_int_equal(u.h.msgh_id, 3);

	/* Without a new request, destroying it now kills it. */
	so = new_send_once(r);
	assert_kr(mach_port_destroy(SELF, r), KERN_SUCCESS);
	assert_int_equal(mvm_test_type(so), MACH_PORT_TYPE_DEAD_NAME);
	assert_no_message(n);
	assert_kr(mach_port_deallocate(SELF, so), KERN_SUCCESS);

	/* mod_refs(RECEIVE, -1) on a name that keeps send rights: the receive right comes
	 * back to the same name. */
	p = mvm_test_port_with_send();
	assert_int_equal(request(p, MACH_NOTIFY_PORT_DESTROYED, 0, n), MACH_PORT_NULL);
	assert_kr(mach_port_mod_refs(SELF, p, MACH_PORT_RIGHT_RECEIVE, -1), KERN_SUCCESS);
	assert_int_equal(mvm_test_type(p), MACH_PORT_TYPE_SEND);
	recv_notif(n, MACH_NOTIFY_PORT_DESTROYED, &u);
	assert_int_equal(u.pdn.not_port, p);
	assert_int_equal(mvm_test_type(p), MACH_PORT_TYPE_SEND_RECEIVE);
	assert_int_equal(mvm_test_refs(p, MACH_PORT_RIGHT_SEND), 1);

	/* Previous request returned; the notification destroyed unreceived kills the port. */
	mach_port_t n2 = mvm_test_receive(), prev;

	assert_int_equal(request(p, MACH_NOTIFY_PORT_DESTROYED, 0, n), MACH_PORT_NULL);
	prev = request(p, MACH_NOTIFY_PORT_DESTROYED, 0, n2);
	assert_int_equal(mvm_test_type(prev), MACH_PORT_TYPE_SEND_ONCE);
	assert_kr(mach_port_deallocate(SELF, prev), KERN_SUCCESS);
	recv_notif(n, MACH_NOTIFY_SEND_ONCE, &u);
	so = new_send_once(p);
	assert_kr(mach_port_mod_refs(SELF, p, MACH_PORT_RIGHT_RECEIVE, -1), KERN_SUCCESS);
	assert_int_equal(mvm_test_status(n2).mps_msgcount, 1);
	assert_int_equal(mvm_test_type(so), MACH_PORT_TYPE_SEND_ONCE);
	assert_kr(mach_port_destroy(SELF, n2), KERN_SUCCESS);
	assert_int_equal(mvm_test_type(so), MACH_PORT_TYPE_DEAD_NAME);
	assert_int_equal(mvm_test_type(p), MACH_PORT_TYPE_DEAD_NAME);

	assert_kr(mach_port_deallocate(SELF, so), KERN_SUCCESS);
	assert_kr(mach_port_deallocate(SELF, p), KERN_SUCCESS);
	assert_kr(mach_port_destroy(SELF, n), KERN_SUCCESS);
	MVM_TEST_QUIESCENT();
}

/* A port-destroyed request whose notify port is the port itself cannot keep it alive. */
static void
test_port_destroyed_to_itself(void **state)
{
	mach_port_t p = mvm_test_receive(), so;

	(void)state;
	so = new_send_once(p);
	assert_int_equal(request(p, MACH_NOTIFY_PORT_DESTROYED, 0, p), MACH_PORT_NULL);
	assert_kr(mach_port_destroy(SELF, p), KERN_SUCCESS);
	assert_int_equal(mvm_test_type(so), MACH_PORT_TYPE_DEAD_NAME);
	assert_kr(mach_port_deallocate(SELF, so), KERN_SUCCESS);
	MVM_TEST_QUIESCENT();
}

/* ---- formats and sequence numbers ---------------------------------------------------- */

static void
test_formats_and_seqno(void **state)
{
	mach_port_t n = mvm_test_receive(), p = mvm_test_port_with_send(), q = mvm_test_receive();
	mach_port_t so, so2, d;
	union notif u;

	(void)state;
	assert_kr(mach_port_set_seqno(SELF, n, 0xfffffffeu), KERN_SUCCESS);
	/* Notifications ignore n's queue limit. */
	assert_kr(mach_port_set_qlimit(SELF, n, 1), KERN_SUCCESS);
	assert_kr(mach_port_insert_right(SELF, n, n, MACH_MSG_TYPE_MAKE_SEND), KERN_SUCCESS);
	assert_kr(send_simple(n, MACH_MSG_TYPE_COPY_SEND, MACH_PORT_NULL, 0, 1000), MACH_MSG_SUCCESS);
	assert_kr(send_simple(n, MACH_MSG_TYPE_COPY_SEND, MACH_PORT_NULL, 0, 1001),
	    MACH_SEND_TIMED_OUT);
	assert_kr(mach_port_deallocate(SELF, n), KERN_SUCCESS);

	/* One of each, all to n. */
	assert_int_equal(request(p, MACH_NOTIFY_NO_SENDERS, 1, n), MACH_PORT_NULL);
	assert_kr(mach_port_deallocate(SELF, p), KERN_SUCCESS);             /* 70 */
	so = new_send_once(q);
	assert_int_equal(request(so, MACH_NOTIFY_DEAD_NAME, 0, n), MACH_PORT_NULL);
	assert_kr(mach_port_destroy(SELF, q), KERN_SUCCESS);               /* 72 */
	so2 = new_send_once(p);
	assert_int_equal(request(so2, MACH_NOTIFY_DEAD_NAME, 0, n), MACH_PORT_NULL);
	assert_kr(mach_port_deallocate(SELF, so2), KERN_SUCCESS);          /* 65, and 71 on p */
	d = new_send_once(n);
	assert_kr(mach_port_deallocate(SELF, d), KERN_SUCCESS);            /* 71 */
	assert_int_equal(request(p, MACH_NOTIFY_PORT_DESTROYED, 0, n), MACH_PORT_NULL);
	assert_kr(mach_port_destroy(SELF, p), KERN_SUCCESS);               /* 69 */
	assert_int_equal(mvm_test_status(n).mps_msgcount, 6);
	assert_int_equal(mvm_test_status(n).mps_qlimit, 1);

	assert_kr(recv(n, &u), MACH_MSG_SUCCESS);
	assert_int_equal(u.h.msgh_id, 1000);
	assert_int_equal(u.h.msgh_seqno, 0xfffffffeu);
	recv_notif(n, MACH_NOTIFY_NO_SENDERS, &u);
	assert_int_equal(u.h.msgh_seqno, 0xffffffffu);
	assert_int_equal(u.ns.not_count, 1);
	recv_notif(n, MACH_NOTIFY_DEAD_NAME, &u);
	assert_int_equal(u.h.msgh_seqno, 0); /* wrapped */
	assert_int_equal(u.dn.not_port, so);
	recv_notif(n, MACH_NOTIFY_PORT_DELETED, &u);
	assert_int_equal(u.h.msgh_seqno, 1);
	assert_int_equal(u.pd.not_port, so2);
	recv_notif(n, MACH_NOTIFY_SEND_ONCE, &u);
	assert_int_equal(u.h.msgh_seqno, 2);
	recv_notif(n, MACH_NOTIFY_PORT_DESTROYED, &u);
	assert_int_equal(u.h.msgh_seqno, 3);
	p = u.pdn.not_port;
	assert_int_equal(mvm_test_type(p), MACH_PORT_TYPE_RECEIVE);
	assert_int_equal(mvm_test_status(n).mps_seqno, 4);
	assert_no_message(n);
	/* The revived port has the send-once notification of so2 queued, with its own seqno. */
	recv_notif(p, MACH_NOTIFY_SEND_ONCE, &u);
	assert_int_equal(u.h.msgh_seqno, 0);

	assert_kr(mach_port_destroy(SELF, so), KERN_SUCCESS);
	assert_kr(mach_port_destroy(SELF, p), KERN_SUCCESS);
	assert_kr(mach_port_destroy(SELF, n), KERN_SUCCESS);
	MVM_TEST_QUIESCENT();
}

/* A notification too large for the receive buffer is destroyed like any message (its
 * seqno used); with MACH_RCV_LARGE it stays. */
static void
test_notification_too_large(void **state)
{
	mach_port_t n = mvm_test_receive(), p = mvm_test_receive(), r;
	union notif u;

	(void)state;
	assert_int_equal(request(p, MACH_NOTIFY_PORT_DESTROYED, 0, n), MACH_PORT_NULL);
	assert_kr(mach_port_destroy(SELF, p), KERN_SUCCESS);
	assert_kr(mach_msg(&u.h, MACH_RCV_MSG | MACH_RCV_TIMEOUT | MACH_RCV_LARGE, 0,
	    sizeof(mach_msg_header_t), n, 0, MACH_PORT_NULL), MACH_RCV_TOO_LARGE);
	assert_int_equal(u.h.msgh_size, sizeof(mach_port_destroyed_notification_t));
	assert_int_equal(mvm_test_status(n).mps_msgcount, 1);
	recv_notif(n, MACH_NOTIFY_PORT_DESTROYED, &u);
	r = u.pdn.not_port;
	assert_int_equal(u.h.msgh_seqno, 0);

	/* Destroyed at receive: the receive right inside dies, and so does its port. */
	assert_int_equal(request(r, MACH_NOTIFY_PORT_DESTROYED, 0, n), MACH_PORT_NULL);
	assert_kr(mach_port_destroy(SELF, r), KERN_SUCCESS);
	assert_kr(mach_msg(&u.h, MACH_RCV_MSG | MACH_RCV_TIMEOUT, 0, sizeof(mach_msg_header_t), n,
	    0, MACH_PORT_NULL), MACH_RCV_TOO_LARGE);
	assert_int_equal(u.h.msgh_id, MACH_NOTIFY_PORT_DESTROYED);
	assert_int_equal(u.h.msgh_seqno, 1);
	assert_no_message(n);

	assert_kr(mach_port_destroy(SELF, n), KERN_SUCCESS);
	MVM_TEST_QUIESCENT();
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_no_senders_last_deallocate),
		cmocka_unit_test(test_no_senders_consumed_by_message),
		cmocka_unit_test(test_no_senders_destroyed_message),
		cmocka_unit_test(test_no_senders_immediate),
		cmocka_unit_test(test_no_senders_previous),
		cmocka_unit_test(test_request_errors),
		cmocka_unit_test(test_dead_name_on_port_death),
		cmocka_unit_test(test_dead_name_immediate_and_previous),
		cmocka_unit_test(test_port_deleted),
		cmocka_unit_test(test_send_once_notifications),
		cmocka_unit_test(test_port_destroyed),
		cmocka_unit_test(test_port_destroyed_to_itself),
		cmocka_unit_test(test_formats_and_seqno),
		cmocka_unit_test(test_notification_too_large),
	};

	return cmocka_run_group_tests_name("notify", tests, NULL, NULL);
}
