/*
 * tests/unit/test_qlimit.c: queue limits and blocked senders.
 *
 * A send through a send right waits while the destination holds qlimit messages (or
 * fails with MACH_SEND_TIMED_OUT under MACH_SEND_TIMEOUT, taking nothing from the sender);
 * send-once rights ignore the limit. Receiving, raising the limit or destroying the port
 * lets blocked senders go.
 *
 * Some tests run a sender on its own thread; to know that it is really blocked they look
 * at the port's list of waiting senders inside the IPC layer (white-box, under its lock),
 * so no test depends on a sleep being long enough.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

#include "mvm_test.h"
#include "ipc/ipc.h"

static mach_msg_return_t
send_opt(mach_port_t dest, mach_msg_type_name_t disp, mach_msg_id_t id, mach_msg_option_t opt,
    mach_msg_timeout_t timeout)
{
	mach_msg_header_t h = {
		.msgh_bits = MACH_MSGH_BITS(disp, 0),
		.msgh_size = sizeof(h),
		.msgh_remote_port = dest,
		.msgh_id = id,
	};

	return mach_msg(&h, MACH_SEND_MSG | opt, sizeof(h), 0, MACH_PORT_NULL, timeout,
	    MACH_PORT_NULL);
}

/* Send without waiting: MACH_SEND_TIMEOUT with timeout 0. */
static mach_msg_return_t
send_now(mach_port_t dest, mach_msg_type_name_t disp, mach_msg_id_t id)
{
	return send_opt(dest, disp, id, MACH_SEND_TIMEOUT, 0);
}

static void
expect_msg(mach_port_t name, mach_msg_id_t id)
{
	mvm_test_msg_t m;

	assert_kr(mvm_test_rcv_now(name, &m), MACH_MSG_SUCCESS);
	assert_int_equal(m.h.msgh_id, id);
	mach_msg_destroy(&m.h);
}

static void
drain(mach_port_t name, unsigned expect)
{
	mvm_test_msg_t m;
	unsigned n = 0;

	while (mvm_test_rcv_now(name, &m) == MACH_MSG_SUCCESS) {
		mach_msg_destroy(&m.h);
		n++;
	}
	assert_int_equal(n, expect);
}

static mach_port_status_t
status_of(mach_port_t name)
{
	mach_port_status_t st;

	assert_kr(mach_port_get_receive_status(mach_task_self(), name, &st), KERN_SUCCESS);
	return st;
}

static void
fill(mach_port_t p, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		assert_kr(send_now(p, MACH_MSG_TYPE_COPY_SEND, (mach_msg_id_t)i), MACH_MSG_SUCCESS);
}

/* White-box: how many threads wait to send to the port whose receive right is `name`. */
static unsigned
blocked_senders(mach_port_t name)
{
	unsigned n = 0;
	uint32_t idx;

	mvm__ipc_lock();
	idx = mvm__entry_lookup(name);
	if (idx != MVM_NO_ENTRY && (mvm__entry(idx)->type & MACH_PORT_TYPE_RECEIVE))
		for (struct mvm_waiter *w = mvm__entry(idx)->obj.port->senders.head; w != NULL;
		    w = w->next)
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

static double
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* Wait (up to 10 s) until exactly `n` senders are blocked on `name`. */
static void
await_blocked_senders(mach_port_t name, unsigned n)
{
	for (int i = 0; i < 10000; i++) {
		if (blocked_senders(name) == n)
			return;
		sleep_ms(1);
	}
	fail_msg("expected %u blocked senders, have %u", n, blocked_senders(name));
}

/* A sender on its own thread. */
struct sender {
	pthread_t thread;
	mach_port_t dest;
	mach_msg_type_name_t disp;
	mach_port_t reply;
	mach_msg_type_name_t reply_disp;
	mach_msg_id_t id;
	mach_msg_option_t opt;
	mach_msg_timeout_t timeout;
	mach_msg_return_t result;
	atomic_int done;
};

static void *
sender_main(void *arg)
{
	struct sender *s = arg;
	mach_msg_header_t h = {
		.msgh_bits = MACH_MSGH_BITS(s->disp, s->reply != MACH_PORT_NULL ? s->reply_disp : 0),
		.msgh_size = sizeof(h),
		.msgh_remote_port = s->dest,
		.msgh_local_port = s->reply,
		.msgh_id = s->id,
	};

	s->result = mach_msg(&h, MACH_SEND_MSG | s->opt, sizeof(h), 0, MACH_PORT_NULL, s->timeout,
	    MACH_PORT_NULL);
	atomic_store(&s->done, 1);
	return NULL;
}

static void
sender_start(struct sender *s, mach_port_t dest, mach_msg_type_name_t disp, mach_msg_id_t id)
{
	s->dest = dest;
	s->disp = disp;
	s->id = id;
	s->result = ~0;
	atomic_store(&s->done, 0);
	assert_int_equal(pthread_create(&s->thread, NULL, sender_main, s), 0);
}

static mach_msg_return_t
sender_join(struct sender *s)
{
	assert_int_equal(pthread_join(s->thread, NULL), 0);
	return s->result;
}

/* ---- tests --------------------------------------------------------------------------- */

static void
qlimit_default_and_timeout_zero(void **state)
{
	mach_port_t p = mvm_test_port_with_send();
	struct mvm_ipc_stats before, after;

	(void)state;
	assert_int_equal(status_of(p).mps_qlimit, MACH_PORT_QLIMIT_DEFAULT);
	assert_int_equal(MACH_PORT_QLIMIT_DEFAULT, 5);
	fill(p, 5);
	assert_int_equal(status_of(p).mps_msgcount, 5);
	mvm_ipc_stats(&before);
	assert_kr(send_now(p, MACH_MSG_TYPE_COPY_SEND, 99), MACH_SEND_TIMED_OUT);
	assert_kr(send_now(p, MACH_MSG_TYPE_MAKE_SEND, 99), MACH_SEND_TIMED_OUT);
	mvm_ipc_stats(&after);
	assert_int_equal(after.msgs_sent, before.msgs_sent);
	assert_int_equal(after.kmsgs, before.kmsgs);
	assert_int_equal(status_of(p).mps_msgcount, 5);
	assert_int_equal(status_of(p).mps_mscount, 1); /* the MAKE_SEND made nothing */

	/* One receive makes room for exactly one more. */
	expect_msg(p, 0);
	assert_kr(send_now(p, MACH_MSG_TYPE_COPY_SEND, 5), MACH_MSG_SUCCESS);
	assert_kr(send_now(p, MACH_MSG_TYPE_COPY_SEND, 6), MACH_SEND_TIMED_OUT);
	for (int i = 1; i <= 5; i++)
		expect_msg(p, i);
	drain(p, 0);
	assert_kr(mach_port_destroy(mach_task_self(), p), KERN_SUCCESS);
	MVM_TEST_QUIESCENT();
}

/* The full message that must not take anything: rights in the header and the body. */
struct full_msg {
	mach_msg_header_t h;
	mach_msg_type_t t_send;
	mach_port_t send;
	mach_msg_type_t t_recv;
	mach_port_t recv;
	mach_msg_type_t t_so;
	mach_port_t so;
	mach_msg_type_t t_ool;
	void *ool;
};

static void
qlimit_timed_out_consumes_nothing(void **state)
{
	mach_port_t p = mvm_test_port_with_send(), r = mvm_test_port_with_send();
	mach_port_t x = mvm_test_port_with_send(), y, z, so = MACH_PORT_NULL;
	mach_msg_type_name_t t = 0;
	vm_address_t ool = 0;
	struct mvm_ipc_stats before, after;
	struct full_msg m;

	(void)state;
	assert_kr(mach_port_allocate(mach_task_self(), MACH_PORT_RIGHT_RECEIVE, &y), KERN_SUCCESS);
	assert_kr(mach_port_allocate(mach_task_self(), MACH_PORT_RIGHT_RECEIVE, &z), KERN_SUCCESS);
	assert_kr(mach_port_extract_right(mach_task_self(), z, MACH_MSG_TYPE_MAKE_SEND_ONCE, &so, &t),
	    KERN_SUCCESS);
	assert_kr(mach_port_mod_refs(mach_task_self(), p, MACH_PORT_RIGHT_SEND, 2), KERN_SUCCESS);
	assert_kr(vm_allocate(mach_task_self(), &ool, vm_page_size, TRUE), KERN_SUCCESS);
	memset((void *)ool, 0x5a, vm_page_size);
	fill(p, 5);

	memset(&m, 0, sizeof(m));
	m.h.msgh_bits = MACH_MSGH_BITS(MACH_MSG_TYPE_MOVE_SEND, MACH_MSG_TYPE_MOVE_SEND) |
	    MACH_MSGH_BITS_COMPLEX;
	m.h.msgh_remote_port = p;
	m.h.msgh_local_port = r;
	m.h.msgh_id = 1234;
	m.t_send = (mach_msg_type_t){ .msgt_name = MACH_MSG_TYPE_MOVE_SEND, .msgt_size = 32,
	    .msgt_number = 1, .msgt_inline = 1 };
	m.send = x;
	m.t_recv = (mach_msg_type_t){ .msgt_name = MACH_MSG_TYPE_MOVE_RECEIVE, .msgt_size = 32,
	    .msgt_number = 1, .msgt_inline = 1 };
	m.recv = y;
	m.t_so = (mach_msg_type_t){ .msgt_name = MACH_MSG_TYPE_MOVE_SEND_ONCE, .msgt_size = 32,
	    .msgt_number = 1, .msgt_inline = 1 };
	m.so = so;
	m.t_ool = (mach_msg_type_t){ .msgt_name = MACH_MSG_TYPE_BYTE, .msgt_size = 8,
	    .msgt_number = 4000, .msgt_inline = 0, .msgt_deallocate = 1 };
	m.ool = (void *)ool;

	mvm_ipc_stats(&before);
	assert_kr(mach_msg(&m.h, MACH_SEND_MSG | MACH_SEND_TIMEOUT, sizeof(m), 0, MACH_PORT_NULL, 0,
	    MACH_PORT_NULL), MACH_SEND_TIMED_OUT);
	mvm_ipc_stats(&after);
	assert_int_equal(after.names, before.names);
	assert_int_equal(after.ports, before.ports);
	assert_int_equal(after.kmsgs, before.kmsgs);
	assert_int_equal(after.vm_bytes, before.vm_bytes);
	assert_int_equal(after.msgs_sent, before.msgs_sent);
	/* Destination and reply MOVE_SEND keep their references. */
	assert_int_equal(mvm_test_refs(p, MACH_PORT_RIGHT_SEND), 3);
	assert_int_equal(mvm_test_refs(r, MACH_PORT_RIGHT_SEND), 1);
	/* Body rights are all still here. */
	assert_int_equal(mvm_test_refs(x, MACH_PORT_RIGHT_SEND), 1);
	assert_int_equal(mvm_test_type(x), MACH_PORT_TYPE_SEND_RECEIVE);
	assert_int_equal(mvm_test_type(y), MACH_PORT_TYPE_RECEIVE);
	assert_int_equal(mvm_test_type(so), MACH_PORT_TYPE_SEND_ONCE);
	assert_int_equal(status_of(z).mps_sorights, 1);
	/* And so is the out-of-line region the message would have deallocated. */
	assert_int_equal(((unsigned char *)ool)[0], 0x5a);
	assert_int_equal(((unsigned char *)ool)[3999], 0x5a);
	assert_int_equal(status_of(p).mps_msgcount, 5);
	assert_int_equal(status_of(r).mps_msgcount, 0);

	/* Once there is room the same message goes through and takes everything. */
	expect_msg(p, 0);
	assert_kr(mach_msg(&m.h, MACH_SEND_MSG | MACH_SEND_TIMEOUT, sizeof(m), 0, MACH_PORT_NULL, 0,
	    MACH_PORT_NULL), MACH_MSG_SUCCESS);
	assert_int_equal(mvm_test_refs(p, MACH_PORT_RIGHT_SEND), 2);
	assert_int_equal(mvm_test_type(r), MACH_PORT_TYPE_RECEIVE);
	assert_int_equal(mvm_test_type(y), 0);
	assert_int_equal(mvm_test_type(so), 0);
	mvm_ipc_stats(&after);
	assert_int_equal(after.vm_bytes, before.vm_bytes); /* moved into the message */
	for (int i = 1; i < 5; i++)
		expect_msg(p, i);
	{
		mvm_test_msg_t rb;
		struct full_msg *got = (struct full_msg *)&rb;

		assert_kr(mvm_test_rcv_now(p, &rb), MACH_MSG_SUCCESS);
		assert_int_equal(got->h.msgh_id, 1234);
		assert_int_equal(got->h.msgh_remote_port, r);
		assert_int_equal(got->send, x);
		assert_int_equal(((unsigned char *)got->ool)[0], 0x5a);
		mach_msg_destroy(&got->h);
	}
	drain(p, 0);
	assert_kr(mach_port_destroy(mach_task_self(), p), KERN_SUCCESS);
	assert_kr(mach_port_destroy(mach_task_self(), r), KERN_SUCCESS);
	assert_kr(mach_port_destroy(mach_task_self(), x), KERN_SUCCESS);
	assert_kr(mach_port_destroy(mach_task_self(), z), KERN_SUCCESS);
	MVM_TEST_QUIESCENT();
}

static void
qlimit_send_once_bypasses(void **state)
{
	mach_port_t p = mvm_test_port_with_send(), so = MACH_PORT_NULL;
	mach_msg_type_name_t t = 0;

	(void)state;
	fill(p, 5);
	assert_kr(send_now(p, MACH_MSG_TYPE_COPY_SEND, 50), MACH_SEND_TIMED_OUT);
	/* MAKE_SEND_ONCE and MOVE_SEND_ONCE destinations ignore the limit. */
	for (int i = 0; i < 4; i++)
		assert_kr(send_now(p, MACH_MSG_TYPE_MAKE_SEND_ONCE, 10 + i), MACH_MSG_SUCCESS);
	assert_kr(mach_port_extract_right(mach_task_self(), p, MACH_MSG_TYPE_MAKE_SEND_ONCE, &so, &t),
	    KERN_SUCCESS);
	assert_kr(send_now(so, MACH_MSG_TYPE_MOVE_SEND_ONCE, 14), MACH_MSG_SUCCESS);
	assert_int_equal(mvm_test_type(so), 0);
	/* Even without MACH_SEND_TIMEOUT a send-once send does not wait. */
	assert_kr(send_opt(p, MACH_MSG_TYPE_MAKE_SEND_ONCE, 15, 0, 0), MACH_MSG_SUCCESS);
	assert_int_equal(status_of(p).mps_msgcount, 11);
	assert_kr(send_now(p, MACH_MSG_TYPE_COPY_SEND, 51), MACH_SEND_TIMED_OUT);

	/* They count towards the queue: with 5 of them queued, a send right must wait. */
	drain(p, 11);
	for (int i = 0; i < 5; i++)
		assert_kr(send_now(p, MACH_MSG_TYPE_MAKE_SEND_ONCE, 20 + i), MACH_MSG_SUCCESS);
	assert_kr(send_now(p, MACH_MSG_TYPE_COPY_SEND, 52), MACH_SEND_TIMED_OUT);
	drain(p, 5);
	assert_int_equal(status_of(p).mps_sorights, 0);
	assert_kr(mach_port_destroy(mach_task_self(), p), KERN_SUCCESS);
	MVM_TEST_QUIESCENT();
}

static void
qlimit_blocked_sender_released_by_receive(void **state)
{
	mach_port_t p = mvm_test_port_with_send();
	struct sender s = { 0 };

	(void)state;
	fill(p, 5);
	sender_start(&s, p, MACH_MSG_TYPE_COPY_SEND, 100);
	await_blocked_senders(p, 1);
	assert_int_equal(atomic_load(&s.done), 0);
	assert_int_equal(status_of(p).mps_msgcount, 5);
	expect_msg(p, 0);
	assert_kr(sender_join(&s), MACH_MSG_SUCCESS);
	assert_int_equal(status_of(p).mps_msgcount, 5);
	assert_int_equal(blocked_senders(p), 0);
	for (int i = 1; i < 5; i++)
		expect_msg(p, i);
	expect_msg(p, 100);

	/* A blocked sender with a generous timeout also gets in when room appears. */
	fill(p, 5);
	s.opt = MACH_SEND_TIMEOUT;
	s.timeout = 10000;
	sender_start(&s, p, MACH_MSG_TYPE_COPY_SEND, 101);
	await_blocked_senders(p, 1);
	expect_msg(p, 0);
	assert_kr(sender_join(&s), MACH_MSG_SUCCESS);
	drain(p, 5);
	assert_kr(mach_port_destroy(mach_task_self(), p), KERN_SUCCESS);
	MVM_TEST_QUIESCENT();
}

static void
qlimit_raise_wakes_senders(void **state)
{
	mach_port_t p = mvm_test_port_with_send();
	struct sender s1 = { 0 }, s2 = { 0 };

	(void)state;
	fill(p, 5);
	sender_start(&s1, p, MACH_MSG_TYPE_COPY_SEND, 100);
	sender_start(&s2, p, MACH_MSG_TYPE_COPY_SEND, 101);
	await_blocked_senders(p, 2);

	/* The same limit again lets nobody through. */
	assert_kr(mach_port_set_qlimit(mach_task_self(), p, 5), KERN_SUCCESS);
	await_blocked_senders(p, 2);
	assert_int_equal(status_of(p).mps_msgcount, 5);

	/* One more slot: exactly one sender gets in, the other waits again. */
	assert_kr(mach_port_set_qlimit(mach_task_self(), p, 6), KERN_SUCCESS);
	while (atomic_load(&s1.done) + atomic_load(&s2.done) == 0)
		sleep_ms(1);
	await_blocked_senders(p, 1);
	assert_int_equal(atomic_load(&s1.done) + atomic_load(&s2.done), 1);
	assert_int_equal(status_of(p).mps_msgcount, 6);

	assert_kr(mach_port_set_qlimit(mach_task_self(), p, 7), KERN_SUCCESS);
	assert_kr(sender_join(&s1), MACH_MSG_SUCCESS);
	assert_kr(sender_join(&s2), MACH_MSG_SUCCESS);
	assert_int_equal(status_of(p).mps_msgcount, 7);
	assert_int_equal(status_of(p).mps_qlimit, 7);
	drain(p, 7);

	/* Lowering the limit below the queue length drops nothing. */
	fill(p, 6);
	assert_kr(mach_port_set_qlimit(mach_task_self(), p, 2), KERN_SUCCESS);
	assert_int_equal(status_of(p).mps_msgcount, 6);
	assert_kr(send_now(p, MACH_MSG_TYPE_COPY_SEND, 9), MACH_SEND_TIMED_OUT);
	for (int i = 0; i < 4; i++)
		expect_msg(p, i);
	assert_kr(send_now(p, MACH_MSG_TYPE_COPY_SEND, 9), MACH_SEND_TIMED_OUT); /* 2 of 2 */
	expect_msg(p, 4);
	assert_kr(send_now(p, MACH_MSG_TYPE_COPY_SEND, 9), MACH_MSG_SUCCESS);
	assert_kr(send_now(p, MACH_MSG_TYPE_COPY_SEND, 10), MACH_SEND_TIMED_OUT);
	drain(p, 2);
	assert_kr(mach_port_destroy(mach_task_self(), p), KERN_SUCCESS);
	MVM_TEST_QUIESCENT();
}

static void
qlimit_zero(void **state)
{
	mach_port_t p = mvm_test_port_with_send();
	struct sender s = { 0 };

	(void)state;
	assert_kr(mach_port_set_qlimit(mach_task_self(), p, 0), KERN_SUCCESS);
	assert_int_equal(status_of(p).mps_qlimit, 0);
	/* Nothing goes through a send right, even to an empty queue. */
	assert_kr(send_now(p, MACH_MSG_TYPE_COPY_SEND, 1), MACH_SEND_TIMED_OUT);
	assert_kr(send_now(p, MACH_MSG_TYPE_MAKE_SEND, 1), MACH_SEND_TIMED_OUT);
	/* Send-once rights still do, and receiving them lets no sender in. */
	assert_kr(send_now(p, MACH_MSG_TYPE_MAKE_SEND_ONCE, 2), MACH_MSG_SUCCESS);
	sender_start(&s, p, MACH_MSG_TYPE_COPY_SEND, 3);
	await_blocked_senders(p, 1);
	expect_msg(p, 2);
	await_blocked_senders(p, 1);
	assert_int_equal(atomic_load(&s.done), 0);
	/* Raising the limit does. */
	assert_kr(mach_port_set_qlimit(mach_task_self(), p, 1), KERN_SUCCESS);
	assert_kr(sender_join(&s), MACH_MSG_SUCCESS);
	expect_msg(p, 3);
	assert_kr(mach_port_destroy(mach_task_self(), p), KERN_SUCCESS);
	MVM_TEST_QUIESCENT();
}

static void
qlimit_max_and_errors(void **state)
{
	mach_port_t p = mvm_test_port_with_send(), s, so = MACH_PORT_NULL;
	mach_msg_type_name_t t = 0;

	(void)state;
	assert_int_equal(MACH_PORT_QLIMIT_MAX, 16);
	assert_kr(mach_port_set_qlimit(mach_task_self(), p, MACH_PORT_QLIMIT_MAX + 1),
	    KERN_INVALID_VALUE);
	assert_kr(mach_port_set_qlimit(mach_task_self(), p, 0xffffffffU), KERN_INVALID_VALUE);
	assert_int_equal(status_of(p).mps_qlimit, MACH_PORT_QLIMIT_DEFAULT);
	assert_kr(mach_port_set_qlimit(mach_task_self(), p, MACH_PORT_QLIMIT_MAX), KERN_SUCCESS);
	assert_int_equal(status_of(p).mps_qlimit, MACH_PORT_QLIMIT_MAX);
	fill(p, MACH_PORT_QLIMIT_MAX);
	assert_kr(send_now(p, MACH_MSG_TYPE_COPY_SEND, 99), MACH_SEND_TIMED_OUT);
	drain(p, MACH_PORT_QLIMIT_MAX);

	assert_kr(mach_port_allocate(mach_task_self(), MACH_PORT_RIGHT_PORT_SET, &s), KERN_SUCCESS);
	assert_kr(mach_port_extract_right(mach_task_self(), p, MACH_MSG_TYPE_MAKE_SEND_ONCE, &so, &t),
	    KERN_SUCCESS);
	assert_kr(mach_port_set_qlimit(mach_task_self(), s, 3), KERN_INVALID_RIGHT);
	assert_kr(mach_port_set_qlimit(mach_task_self(), so, 3), KERN_INVALID_RIGHT);
	assert_kr(mach_port_set_qlimit(mach_task_self(), MACH_PORT_NULL, 3), KERN_INVALID_NAME);
	assert_kr(mach_port_set_qlimit(mach_task_self(), p + 0x10000, 3), KERN_INVALID_NAME);
	assert_kr(mach_port_set_qlimit(MACH_PORT_NULL, p, 3), MACH_SEND_INVALID_DEST);
	assert_int_equal(status_of(p).mps_qlimit, MACH_PORT_QLIMIT_MAX);
	assert_kr(mach_port_deallocate(mach_task_self(), so), KERN_SUCCESS);

	/* The limit is per port, also for ports in a set. */
	assert_kr(mach_port_set_qlimit(mach_task_self(), p, 2), KERN_SUCCESS);
	assert_kr(mach_port_move_member(mach_task_self(), p, s), KERN_SUCCESS);
	drain(s, 1); /* so's send-once notification */
	fill(p, 2);
	assert_kr(send_now(p, MACH_MSG_TYPE_COPY_SEND, 99), MACH_SEND_TIMED_OUT);
	drain(s, 2);

	assert_kr(mach_port_destroy(mach_task_self(), s), KERN_SUCCESS);
	assert_kr(mach_port_destroy(mach_task_self(), p), KERN_SUCCESS);
	MVM_TEST_QUIESCENT();
}

static void
qlimit_blocked_sender_port_destroyed(void **state)
{
	mach_port_t p = mvm_test_port_with_send(), r;
	struct sender s = { 0 };

	(void)state;
	assert_kr(mach_port_allocate(mach_task_self(), MACH_PORT_RIGHT_RECEIVE, &r), KERN_SUCCESS);

	/* 1. The receive right dies (mod_refs): the name is left a dead name. */
	assert_kr(mach_port_mod_refs(mach_task_self(), p, MACH_PORT_RIGHT_SEND, 1), KERN_SUCCESS);
	fill(p, 5);
	s.reply = r;
	s.reply_disp = MACH_MSG_TYPE_MAKE_SEND_ONCE;
	sender_start(&s, p, MACH_MSG_TYPE_MOVE_SEND, 1);
	await_blocked_senders(p, 1);
	assert_kr(mach_port_mod_refs(mach_task_self(), p, MACH_PORT_RIGHT_RECEIVE, -1), KERN_SUCCESS);
	assert_kr(sender_join(&s), MACH_SEND_INVALID_DEST);
	/* The failed send took nothing: the dead name keeps both references ... */
	assert_int_equal(mvm_test_type(p), MACH_PORT_TYPE_DEAD_NAME);
	assert_int_equal(mvm_test_refs(p, MACH_PORT_RIGHT_DEAD_NAME), 2);
	/* ... and no send-once right to r was made. */
	assert_int_equal(status_of(r).mps_sorights, 0);
	assert_int_equal(status_of(r).mps_msgcount, 0);
	assert_kr(mach_port_mod_refs(mach_task_self(), p, MACH_PORT_RIGHT_DEAD_NAME, -2),
	    KERN_SUCCESS);
	assert_int_equal(mvm_test_type(p), 0);

	/* 2. The whole name is destroyed (mach_port_destroy). */
	p = mvm_test_port_with_send();
	fill(p, 5);
	s.reply = MACH_PORT_NULL;
	sender_start(&s, p, MACH_MSG_TYPE_COPY_SEND, 2);
	await_blocked_senders(p, 1);
	assert_kr(mach_port_destroy(mach_task_self(), p), KERN_SUCCESS);
	assert_kr(sender_join(&s), MACH_SEND_INVALID_DEST);

	/* 3. With a timeout pending. */
	p = mvm_test_port_with_send();
	fill(p, 5);
	s.opt = MACH_SEND_TIMEOUT;
	s.timeout = 10000;
	sender_start(&s, p, MACH_MSG_TYPE_COPY_SEND, 3);
	await_blocked_senders(p, 1);
	assert_kr(mach_port_destroy(mach_task_self(), p), KERN_SUCCESS);
	assert_kr(sender_join(&s), MACH_SEND_INVALID_DEST);

	assert_kr(mach_port_destroy(mach_task_self(), r), KERN_SUCCESS);
	MVM_TEST_QUIESCENT();
}

static void
qlimit_send_timeout_on_time(void **state)
{
	mach_port_t p = mvm_test_port_with_send();
	double t0, dt;

	(void)state;
	fill(p, 5);
	t0 = now_ms();
	assert_kr(send_opt(p, MACH_MSG_TYPE_COPY_SEND, 9, MACH_SEND_TIMEOUT, 50),
	    MACH_SEND_TIMED_OUT);
	dt = now_ms() - t0;
	assert_true(dt >= 49.0);
	assert_true(dt < 1000.0);
	assert_int_equal(status_of(p).mps_msgcount, 5);
	assert_int_equal(blocked_senders(p), 0);

	/* The timeout applies only when the queue is full. */
	expect_msg(p, 0);
	t0 = now_ms();
	assert_kr(send_opt(p, MACH_MSG_TYPE_COPY_SEND, 9, MACH_SEND_TIMEOUT, 50), MACH_MSG_SUCCESS);
	assert_true(now_ms() - t0 < 40.0);
	drain(p, 5);
	assert_kr(mach_port_destroy(mach_task_self(), p), KERN_SUCCESS);
	MVM_TEST_QUIESCENT();
}


/* MACH_SEND_ALWAYS (machvm, for the in-process kernel) ignores the limit, like a kernel send. */
static void
qlimit_send_always_ignores_limit(void **state)
{
	mach_port_t p = mvm_test_port_with_send();

	(void)state;
	assert_kr(mach_port_set_qlimit(mach_task_self(), p, 1), KERN_SUCCESS);
	assert_kr(send_now(p, MACH_MSG_TYPE_COPY_SEND, 1), MACH_MSG_SUCCESS);
	assert_kr(send_now(p, MACH_MSG_TYPE_COPY_SEND, 2), MACH_SEND_TIMED_OUT);
	for (int i = 0; i < 20; i++)
		assert_kr(send_opt(p, MACH_MSG_TYPE_COPY_SEND, 3 + i, MACH_SEND_ALWAYS, 0),
		    MACH_MSG_SUCCESS);
	expect_msg(p, 1);
	for (int i = 0; i < 20; i++)
		expect_msg(p, 3 + i);
	assert_kr(mach_port_destroy(mach_task_self(), p), KERN_SUCCESS);
	MVM_TEST_QUIESCENT();
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(qlimit_default_and_timeout_zero),
		cmocka_unit_test(qlimit_timed_out_consumes_nothing),
		cmocka_unit_test(qlimit_send_once_bypasses),
		cmocka_unit_test(qlimit_blocked_sender_released_by_receive),
		cmocka_unit_test(qlimit_raise_wakes_senders),
		cmocka_unit_test(qlimit_zero),
		cmocka_unit_test(qlimit_max_and_errors),
		cmocka_unit_test(qlimit_blocked_sender_port_destroyed),
		cmocka_unit_test(qlimit_send_timeout_on_time),
		cmocka_unit_test(qlimit_send_always_ignores_limit),
	};

	return cmocka_run_group_tests_name("qlimit", tests, NULL, NULL);
}
