/*
 * tests/unit/test_direct.c: kernel-served port sets (mvm__ipc_set_direct), the mechanism
 * that lets the in-process kernel serve a manager's control message in the manager's own
 * thread, as a Mach kernel serves a message to a kernel object.
 *
 * The rules under test (src/ipc/mach_msg.c): a message to a member of such a set is served
 * by its sender when nothing is queued there or being served; otherwise it is queued and
 * served later, in order; at most one message of the set is served at a time; sequence
 * numbers and rights are exactly what a receiver would have seen; kernel sends
 * (MACH_SEND_ALWAYS) and sends from inside a serve are queued; the set may be destroyed
 * while its sender serves.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "mvm_test.h"
#include "ipc/ipc.h"

#define MAX_LOG 4096

/* What the demux saw, in the order it ran. */
static struct {
	pthread_t by;
	mach_msg_id_t id;
	mach_port_seqno_t seqno;
	mach_port_t local;
} served[MAX_LOG];
static atomic_int nserved;
static atomic_int ndone;       /* serves finished (their log entries written) */
static atomic_int active;      /* demux calls running now: never more than one */
static atomic_int max_active;

/* id GATE_ID: the demux waits until the gate opens. */
#define GATE_ID 500
static pthread_mutex_t gate_mtx = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cond = PTHREAD_COND_INITIALIZER;
static bool gate_open, in_gate;

#define RESEND_ID 600          /* the demux sends RESEND_ID + 1 to the same port */
#define RPC_ID 700             /* a routine: answered on the reply port */
#define DESTROY_ID 900         /* the demux destroys the set it serves */

static mach_port_t the_set, the_port;

static mach_msg_return_t
send_id(mach_port_t dest, mach_msg_id_t id, mach_msg_option_t extra)
{
	mach_msg_header_t h = {
		.msgh_bits = MACH_MSGH_BITS(MACH_MSG_TYPE_MAKE_SEND, 0),
		.msgh_size = sizeof(h),
		.msgh_remote_port = dest,
		.msgh_id = id,
	};

	return mach_msg(&h, MACH_SEND_MSG | extra, sizeof(h), 0, MACH_PORT_NULL, 0,
	    MACH_PORT_NULL);
}

static boolean_t
demux(mach_msg_header_t *in, mach_msg_header_t *out)
{
	mig_reply_header_t *r = (mig_reply_header_t *)out;
	int now = atomic_fetch_add(&active, 1) + 1;
	int i = atomic_fetch_add(&nserved, 1);
	int m = atomic_load(&max_active);

	while (now > m && !atomic_compare_exchange_weak(&max_active, &m, now))
		;
	if (i < MAX_LOG) {
		served[i].by = pthread_self();
		served[i].id = in->msgh_id;
		served[i].seqno = in->msgh_seqno;
		served[i].local = in->msgh_local_port;
	}
	switch (in->msgh_id) {
	case GATE_ID:
		pthread_mutex_lock(&gate_mtx);
		in_gate = true;
		pthread_cond_broadcast(&gate_cond);
		while (!gate_open)
			pthread_cond_wait(&gate_cond, &gate_mtx);
		pthread_mutex_unlock(&gate_mtx);
		break;
	case RESEND_ID:
		assert_kr(send_id(the_port, RESEND_ID + 1, 0), MACH_MSG_SUCCESS);
		break;
	case DESTROY_ID:
		assert_kr(mach_port_destroy(mach_task_self(), the_set), KERN_SUCCESS);
		break;
	default:
		break;
	}
	/* Simpleroutines have no reply port, so no reply goes out; RPC_ID's does. */
	r->RetCode = KERN_SUCCESS;
	atomic_fetch_sub(&active, 1);
	atomic_fetch_add(&ndone, 1);
	return TRUE;
}

static const struct mvm_direct direct = { demux, 256, NULL };

static int
setup(void **state)
{
	(void)state;
	atomic_store(&nserved, 0);
	atomic_store(&ndone, 0);
	atomic_store(&max_active, 0);
	gate_open = in_gate = false;
	assert_kr(mach_port_allocate(mach_task_self(), MACH_PORT_RIGHT_PORT_SET, &the_set),
	    KERN_SUCCESS);
	assert_kr(mach_port_allocate(mach_task_self(), MACH_PORT_RIGHT_RECEIVE, &the_port),
	    KERN_SUCCESS);
	assert_kr(mach_port_move_member(mach_task_self(), the_port, the_set), KERN_SUCCESS);
	assert_kr(mvm__ipc_set_direct(the_set, &direct), KERN_SUCCESS);
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	(void)mach_port_destroy(mach_task_self(), the_port);
	(void)mach_port_destroy(mach_task_self(), the_set);
	MVM_TEST_QUIESCENT();
	return 0;
}

static void
direct_bad_arguments(void **state)
{
	struct mvm_direct big = { demux, MVM_DIRECT_MAX + 1, NULL };

	(void)state;
	assert_kr(mvm__ipc_set_direct(the_port, &direct), KERN_INVALID_NAME);
	assert_kr(mvm__ipc_set_direct(0x12345, &direct), KERN_INVALID_NAME);
	assert_kr(mvm__ipc_set_direct(the_set, &big), KERN_INVALID_ARGUMENT);
	assert_kr(mvm__ipc_set_direct(the_set, NULL), KERN_INVALID_ARGUMENT);
}

/* Nothing queued, nothing being served: the sender serves, with consecutive seqnos. */
static void
direct_served_by_sender(void **state)
{
	mvm_test_msg_t m;

	(void)state;
	for (int i = 0; i < 3; i++) {
		assert_kr(send_id(the_port, 10 + i, 0), MACH_MSG_SUCCESS);
		assert_int_equal(atomic_load(&nserved), i + 1);
		assert_true(pthread_equal(served[i].by, pthread_self()));
		assert_int_equal(served[i].id, 10 + i);
		assert_int_equal(served[i].seqno, i);
		assert_int_equal(served[i].local, the_port);
	}
	assert_kr(mvm_test_rcv_now(the_set, &m), MACH_RCV_TIMED_OUT);
}

/* A routine served by its sender: the reply arrives on the reply port. */
static void
direct_routine_replies(void **state)
{
	mach_port_t reply;
	mvm_test_msg_t m;
	mig_reply_header_t *r = (mig_reply_header_t *)&m.h;

	(void)state;
	assert_kr(mach_port_allocate(mach_task_self(), MACH_PORT_RIGHT_RECEIVE, &reply),
	    KERN_SUCCESS);
	memset(&m, 0, sizeof(m));
	m.h.msgh_bits = MACH_MSGH_BITS(MACH_MSG_TYPE_MAKE_SEND, MACH_MSG_TYPE_MAKE_SEND_ONCE);
	m.h.msgh_size = sizeof(mach_msg_header_t);
	m.h.msgh_remote_port = the_port;
	m.h.msgh_local_port = reply;
	m.h.msgh_id = RPC_ID;
	assert_kr(mach_msg(&m.h, MACH_SEND_MSG | MACH_RCV_MSG | MACH_RCV_TIMEOUT,
	    sizeof(mach_msg_header_t), sizeof(m), reply, 0, MACH_PORT_NULL), MACH_MSG_SUCCESS);
	assert_int_equal(atomic_load(&nserved), 1);
	assert_true(pthread_equal(served[0].by, pthread_self()));
	assert_int_equal(m.h.msgh_id, RPC_ID + 100);
	assert_int_equal(r->RetCode, KERN_SUCCESS);
	assert_kr(mach_port_destroy(mach_task_self(), reply), KERN_SUCCESS);
}

static void *
server_once(void *arg)
{
	(void)arg;
	return (void *)(uintptr_t)mach_msg_server_once(demux, 256, the_set, 0);
}

/* While a receiver serves a message, later messages queue (the sender does not overtake
 * it), and are received in order; then senders serve again. */
static void
direct_queued_behind_receiver(void **state)
{
	pthread_t t;
	void *ret;
	mvm_test_msg_t m;

	(void)state;
	assert_int_equal(pthread_create(&t, NULL, server_once, NULL), 0);
	/* A kernel send is never served by its sender: the receiver takes it. */
	assert_kr(send_id(the_port, GATE_ID, MACH_SEND_ALWAYS), MACH_MSG_SUCCESS);
	pthread_mutex_lock(&gate_mtx);
	while (!in_gate)
		pthread_cond_wait(&gate_cond, &gate_mtx);
	pthread_mutex_unlock(&gate_mtx);
	assert_kr(send_id(the_port, 2, 0), MACH_MSG_SUCCESS);
	assert_int_equal(atomic_load(&nserved), 1); /* queued, not served */
	pthread_mutex_lock(&gate_mtx);
	gate_open = true;
	pthread_cond_broadcast(&gate_cond);
	pthread_mutex_unlock(&gate_mtx);
	assert_int_equal(pthread_join(t, &ret), 0);
	assert_int_equal((int)(uintptr_t)ret, MACH_MSG_SUCCESS);
	assert_false(pthread_equal(served[0].by, pthread_self()));
	/* Message 2 still waits: message 3 queues behind it. */
	assert_kr(send_id(the_port, 3, 0), MACH_MSG_SUCCESS);
	assert_int_equal(atomic_load(&nserved), 1);
	assert_kr(mvm_test_rcv_now(the_set, &m), MACH_MSG_SUCCESS);
	assert_int_equal(m.h.msgh_id, 2);
	assert_int_equal(m.h.msgh_seqno, 1);
	assert_kr(mvm_test_rcv_now(the_set, &m), MACH_MSG_SUCCESS);
	assert_int_equal(m.h.msgh_id, 3);
	assert_int_equal(m.h.msgh_seqno, 2);
	assert_kr(mvm_test_rcv_now(the_set, &m), MACH_RCV_TIMED_OUT); /* and lets the set go */
	assert_kr(send_id(the_port, 4, 0), MACH_MSG_SUCCESS);
	assert_int_equal(atomic_load(&nserved), 2);
	assert_true(pthread_equal(served[1].by, pthread_self()));
	assert_int_equal(served[1].seqno, 3);
}

/* A message sent from inside a serve queues; it is not served recursively. */
static void
direct_send_from_serve_queues(void **state)
{
	mvm_test_msg_t m;

	(void)state;
	assert_kr(send_id(the_port, RESEND_ID, 0), MACH_MSG_SUCCESS);
	assert_int_equal(atomic_load(&nserved), 1);
	assert_kr(mvm_test_rcv_now(the_set, &m), MACH_MSG_SUCCESS);
	assert_int_equal(m.h.msgh_id, RESEND_ID + 1);
	assert_int_equal(m.h.msgh_seqno, 1);
	assert_kr(mvm_test_rcv_now(the_set, &m), MACH_RCV_TIMED_OUT);
}

/* The set dies while its sender serves: the sender frees it; the member lives on. */
static void
direct_set_destroyed_while_serving(void **state)
{
	mvm_test_msg_t m;

	(void)state;
	assert_kr(send_id(the_port, DESTROY_ID, 0), MACH_MSG_SUCCESS);
	assert_int_equal(atomic_load(&nserved), 1);
	assert_int_equal(mvm_test_type(the_set), 0);
	assert_kr(send_id(the_port, 5, 0), MACH_MSG_SUCCESS);
	assert_int_equal(atomic_load(&nserved), 1);
	assert_kr(mvm_test_rcv_now(the_port, &m), MACH_MSG_SUCCESS);
	assert_int_equal(m.h.msgh_id, 5);
}

/* Many senders and a receiver at once: one serve at a time, in sequence-number order,
 * each sender's messages in the order it sent them, nothing lost. */
#define SENDERS 4
#define PER_SENDER 500

static void *
sender(void *arg)
{
	int who = (int)(uintptr_t)arg;

	for (int i = 0; i < PER_SENDER; i++)
		if (send_id(the_port, who * 10000 + i, 0) != MACH_MSG_SUCCESS)
			return (void *)1;
	return NULL;
}

static void *
server_until_destroyed(void *arg)
{
	(void)arg;
	return (void *)(uintptr_t)mach_msg_server(demux, 256, the_set);
}

static void
direct_concurrent_order(void **state)
{
	pthread_t s[SENDERS], srv;
	int next[SENDERS] = { 0 }, total = SENDERS * PER_SENDER;
	void *ret;

	(void)state;
	assert_int_equal(pthread_create(&srv, NULL, server_until_destroyed, NULL), 0);
	for (int i = 0; i < SENDERS; i++)
		assert_int_equal(pthread_create(&s[i], NULL, sender, (void *)(uintptr_t)i), 0);
	for (int i = 0; i < SENDERS; i++) {
		assert_int_equal(pthread_join(s[i], &ret), 0);
		assert_null(ret);
	}
	/* Every message was served by a sender or by the server; wait for the last. */
	while (atomic_load(&ndone) < total)
		sched_yield();
	assert_int_equal(atomic_load(&max_active), 1);
	for (int i = 0; i < total; i++) {
		int who = served[i].id / 10000, seq = served[i].id % 10000;

		assert_int_equal(served[i].seqno, i);
		assert_true(who >= 0 && who < SENDERS);
		assert_int_equal(seq, next[who]);
		next[who]++;
	}
	assert_kr(mach_port_destroy(mach_task_self(), the_set), KERN_SUCCESS);
	assert_int_equal(pthread_join(srv, &ret), 0);
	/* Told that the set died, or (not yet waiting then) that the name is gone. */
	assert_true((int)(uintptr_t)ret == MACH_RCV_PORT_DIED ||
	    (int)(uintptr_t)ret == MACH_RCV_INVALID_NAME);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(direct_bad_arguments, setup, teardown),
		cmocka_unit_test_setup_teardown(direct_served_by_sender, setup, teardown),
		cmocka_unit_test_setup_teardown(direct_routine_replies, setup, teardown),
		cmocka_unit_test_setup_teardown(direct_queued_behind_receiver, setup, teardown),
		cmocka_unit_test_setup_teardown(direct_send_from_serve_queues, setup, teardown),
		cmocka_unit_test_setup_teardown(direct_set_destroyed_while_serving, setup, teardown),
		cmocka_unit_test_setup_teardown(direct_concurrent_order, setup, teardown),
	};

	return cmocka_run_group_tests_name("direct", tests, NULL, NULL);
}
