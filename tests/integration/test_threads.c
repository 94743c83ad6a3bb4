/*
 * tests/integration/test_threads.c: mach_msg between real threads.
 *
 * Several receivers on one port or one set (each message received exactly once, every
 * sequence number handed out once), receive timeouts while others send, RPC-style
 * ping-pong with send-once reply rights, a blocked receiver woken by another thread's
 * send, and signals: MACH_RCV_INTERRUPT / MACH_SEND_INTERRUPT end a wait that a signal
 * interrupts; without them the call keeps waiting and later succeeds.
 *
 * Where a test must know that a thread is blocked in mach_msg before it acts, it looks at
 * the port's or set's waiting list inside the IPC layer (white-box, under its lock).
 * Worker threads never call cmocka's assertions: they record what they saw and the main
 * thread checks it after joining them.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mvm_test.h"
#include "ipc/ipc.h"
#include "sys/sys.h"

typedef union {
	mach_msg_header_t h;
	_Alignas(8) char buf[256];
} rcv_buf_t;

/* A message with one 32-bit integer. */
struct int_msg {
	mach_msg_header_t h;
	mach_msg_type_t t;
	int32_t value;
};

#define STOP_ID (-1)

static mach_msg_return_t
send_id(mach_port_t dest, mach_msg_type_name_t disp, mach_msg_id_t id)
{
	mach_msg_header_t h = {
		.msgh_bits = MACH_MSGH_BITS(disp, 0),
		.msgh_size = sizeof(h),
		.msgh_remote_port = dest,
		.msgh_id = id,
	};

	return mach_msg(&h, MACH_SEND_MSG, sizeof(h), 0, MACH_PORT_NULL, 0, MACH_PORT_NULL);
}

static mach_msg_return_t
rcv_poll(mach_port_t name, rcv_buf_t *m)
{
	memset(m, 0, sizeof(*m));
	return mach_msg(&m->h, MACH_RCV_MSG | MACH_RCV_TIMEOUT, 0, sizeof(*m), name, 0,
	    MACH_PORT_NULL);
}

static mach_port_t
new_port(void)
{
	mach_port_t p;

	assert_kr(mach_port_allocate(mach_task_self(), MACH_PORT_RIGHT_RECEIVE, &p), KERN_SUCCESS);
	return p;
}

static mach_port_status_t
status_of(mach_port_t name)
{
	mach_port_status_t st;

	assert_kr(mach_port_get_receive_status(mach_task_self(), name, &st), KERN_SUCCESS);
	return st;
}

static void
sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

static double
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* ---- white-box: who is blocked where ------------------------------------------------- */

static unsigned
wlist_len(const struct mvm_wlist *l)
{
	unsigned n = 0;

	for (struct mvm_waiter *w = l->head; w != NULL; w = w->next)
		n++;
	return n;
}

/* Threads blocked receiving on `name` (receive right or set), or sending to it. */
static unsigned
blocked_on(mach_port_t name, bool senders)
{
	unsigned n = 0;
	uint32_t idx;

	mvm__ipc_lock();
	idx = mvm__entry_lookup(name);
	if (idx != MVM_NO_ENTRY) {
		struct mvm_entry *e = mvm__entry(idx);

		if (!senders && (e->type & MACH_PORT_TYPE_PORT_SET))
			n = wlist_len(&e->obj.pset->mq.receivers);
		else if (e->type & MACH_PORT_TYPE_RECEIVE)
			n = wlist_len(senders ? &e->obj.port->senders : &e->obj.port->mq.receivers);
	}
	mvm__ipc_unlock();
	return n;
}

static void
await_blocked(mach_port_t name, bool senders, unsigned n)
{
	for (int i = 0; i < 10000; i++) {
		if (blocked_on(name, senders) == n)
			return;
		sleep_ms(1);
	}
	fail_msg("expected %u blocked %s on 0x%x, have %u", n, senders ? "senders" : "receivers",
	    name, blocked_on(name, senders));
}

/* Wait up to 10 s for a worker's done flag, so a lost wake-up fails instead of hanging. */
static void
await_done(atomic_int *done)
{
	for (int i = 0; i < 10000; i++) {
		if (atomic_load(done))
			return;
		sleep_ms(1);
	}
	fail_msg("worker thread did not finish");
}

/* ---- several receivers on one port ---------------------------------------------------- */

#define NRECV 4
#define NMSG 400

struct pool {
	mach_port_t name;                  /* port or set to receive from */
	mach_port_t ports[3];              /* the members, for a set */
	atomic_int seen[NMSG];             /* times each message id was received */
	atomic_int seqno_seen[3][NMSG + NRECV];
	atomic_int bad;                    /* unexpected results */
	atomic_int received;
	atomic_int timeouts;
	mach_msg_timeout_t timeout;        /* 0: block; else poll with this timeout */
};

static int
member_index(struct pool *pl, mach_port_t local)
{
	for (int i = 0; i < 3; i++)
		if (pl->ports[i] == local)
			return i;
	return -1;
}

static void *
pool_receiver(void *arg)
{
	struct pool *pl = arg;

	for (;;) {
		rcv_buf_t m;
		mach_msg_option_t opt = MACH_RCV_MSG | (pl->timeout != 0 ? MACH_RCV_TIMEOUT : 0);
		mach_msg_return_t mr;
		int pi;

		memset(&m, 0, sizeof(m));
		mr = mach_msg(&m.h, opt, 0, sizeof(m), pl->name, pl->timeout, MACH_PORT_NULL);
		if (mr == MACH_RCV_TIMED_OUT && pl->timeout != 0) {
			atomic_fetch_add(&pl->timeouts, 1);
			if (atomic_load(&pl->received) == NMSG)
				return NULL;
			continue;
		}
		if (mr != MACH_MSG_SUCCESS) {
			atomic_fetch_add(&pl->bad, 1);
			return NULL;
		}
		pi = member_index(pl, m.h.msgh_local_port);
		if (pi < 0 || m.h.msgh_seqno >= NMSG + NRECV)
			atomic_fetch_add(&pl->bad, 1);
		else
			atomic_fetch_add(&pl->seqno_seen[pi][m.h.msgh_seqno], 1);
		if (m.h.msgh_id == STOP_ID)
			return NULL;
		if (m.h.msgh_id < 0 || m.h.msgh_id >= NMSG)
			atomic_fetch_add(&pl->bad, 1);
		else
			atomic_fetch_add(&pl->seen[m.h.msgh_id], 1);
		atomic_fetch_add(&pl->received, 1);
	}
}

struct pool_sender {
	pthread_t thread;
	struct pool *pl;
	int first, step;                   /* sends ids first, first + step, ... < NMSG */
	mach_msg_return_t result;
};

static void *
pool_sender_main(void *arg)
{
	struct pool_sender *s = arg;

	s->result = MACH_MSG_SUCCESS;
	for (int id = s->first; id < NMSG; id += s->step) {
		mach_port_t dest = s->pl->ports[id % 3];

		if (dest == MACH_PORT_NULL)
			dest = s->pl->ports[0];
		if ((s->result = send_id(dest, MACH_MSG_TYPE_MAKE_SEND, id)) != MACH_MSG_SUCCESS)
			return NULL;
		if (s->pl->timeout != 0 && id % 40 == 0)
			sleep_ms(3); /* let the receivers time out now and then */
	}
	return NULL;
}

static struct pool *
pool_new(void)
{
	struct pool *pl = calloc(1, sizeof(*pl));

	assert_non_null(pl);
	return pl;
}

/* Run NRECV receivers and two senders on pl; nports members take the messages. */
static void
pool_run(struct pool *pl, int nports)
{
	pthread_t rt[NRECV];
	struct pool_sender ss[2];
	unsigned per_port[3] = { 0, 0, 0 };

	for (int i = 0; i < NRECV; i++)
		assert_int_equal(pthread_create(&rt[i], NULL, pool_receiver, pl), 0);
	for (int i = 0; i < 2; i++) {
		ss[i] = (struct pool_sender){ .pl = pl, .first = i, .step = 2 };
		assert_int_equal(pthread_create(&ss[i].thread, NULL, pool_sender_main, &ss[i]), 0);
	}
	for (int i = 0; i < 2; i++) {
		assert_int_equal(pthread_join(ss[i].thread, NULL), 0);
		assert_kr(ss[i].result, MACH_MSG_SUCCESS);
	}
	if (pl->timeout == 0) {
		/* One stop message per receiver, after every real one. */
		for (int i = 0; i < NRECV; i++)
			assert_kr(send_id(pl->ports[0], MACH_MSG_TYPE_MAKE_SEND, STOP_ID),
			    MACH_MSG_SUCCESS);
	}
	for (int i = 0; i < NRECV; i++)
		assert_int_equal(pthread_join(rt[i], NULL), 0);

	assert_int_equal(atomic_load(&pl->bad), 0);
	assert_int_equal(atomic_load(&pl->received), NMSG);
	for (int id = 0; id < NMSG; id++) {
		if (atomic_load(&pl->seen[id]) != 1)
			fail_msg("message %d received %d times", id, atomic_load(&pl->seen[id]));
		per_port[nports == 1 ? 0 : id % 3]++;
	}
	if (pl->timeout == 0)
		per_port[0] += NRECV;
	/* Every port handed out 0 .. n-1, each number once. */
	for (int pi = 0; pi < nports; pi++) {
		for (unsigned q = 0; q < NMSG + NRECV; q++)
			if (atomic_load(&pl->seqno_seen[pi][q]) != (q < per_port[pi] ? 1 : 0))
				fail_msg("port %d seqno %u seen %d times", pi, q,
				    atomic_load(&pl->seqno_seen[pi][q]));
		assert_int_equal(status_of(pl->ports[pi]).mps_seqno, per_port[pi]);
		assert_int_equal(status_of(pl->ports[pi]).mps_msgcount, 0);
	}
}

static void
threads_receivers_on_one_port(void **state)
{
	struct pool *pl = pool_new();

	(void)state;
	pl->ports[0] = new_port();
	pl->name = pl->ports[0];
	pool_run(pl, 1);
	assert_kr(mach_port_destroy(mach_task_self(), pl->ports[0]), KERN_SUCCESS);
	free(pl);
	MVM_TEST_QUIESCENT();
}

static void
threads_receivers_on_one_set(void **state)
{
	struct pool *pl = pool_new();

	(void)state;
	assert_kr(mach_port_allocate(mach_task_self(), MACH_PORT_RIGHT_PORT_SET, &pl->name),
	    KERN_SUCCESS);
	for (int i = 0; i < 3; i++) {
		pl->ports[i] = new_port();
		assert_kr(mach_port_move_member(mach_task_self(), pl->ports[i], pl->name), KERN_SUCCESS);
	}
	pool_run(pl, 3);
	assert_kr(mach_port_destroy(mach_task_self(), pl->name), KERN_SUCCESS);
	for (int i = 0; i < 3; i++)
		assert_kr(mach_port_destroy(mach_task_self(), pl->ports[i]), KERN_SUCCESS);
	free(pl);
	MVM_TEST_QUIESCENT();
}

struct timed_rcv {
	pthread_t thread;
	mach_port_t name;
	mach_msg_timeout_t timeout;
	mach_msg_option_t opt;
	mach_msg_return_t result;
	double elapsed_ms;
	rcv_buf_t msg;
	atomic_int done;
};

static void *
timed_rcv_main(void *arg)
{
	struct timed_rcv *t = arg;
	double t0 = now_ms();

	t->result = mach_msg(&t->msg.h, MACH_RCV_MSG | t->opt, 0, sizeof(t->msg), t->name,
	    t->timeout, MACH_PORT_NULL);
	t->elapsed_ms = now_ms() - t0;
	atomic_store(&t->done, 1);
	return NULL;
}

/* Like timed_rcv_main, with room for a bare header only. */
static void *
small_rcv_main(void *arg)
{
	struct timed_rcv *t = arg;
	double t0 = now_ms();

	t->result = mach_msg(&t->msg.h, MACH_RCV_MSG | t->opt, 0, sizeof(mach_msg_header_t),
	    t->name, t->timeout, MACH_PORT_NULL);
	t->elapsed_ms = now_ms() - t0;
	atomic_store(&t->done, 1);
	return NULL;
}

static void
timed_rcv_start(struct timed_rcv *t, mach_port_t name, mach_msg_option_t opt,
    mach_msg_timeout_t timeout)
{
	memset(t, 0, sizeof(*t));
	t->name = name;
	t->opt = opt;
	t->timeout = timeout;
	t->result = ~0;
	assert_int_equal(pthread_create(&t->thread, NULL, timed_rcv_main, t), 0);
}

static mach_msg_return_t
timed_rcv_join(struct timed_rcv *t)
{
	await_done(&t->done);
	assert_int_equal(pthread_join(t->thread, NULL), 0);
	return t->result;
}

static void
threads_receive_timeouts_while_sending(void **state)
{
	struct pool *pl = pool_new();
	struct timed_rcv idle;
	mach_port_t quiet = new_port();

	(void)state;
	pl->ports[0] = new_port();
	pl->name = pl->ports[0];
	pl->timeout = 2;
	/* Meanwhile a receiver on a port nobody sends to times out on time. */
	timed_rcv_start(&idle, quiet, MACH_RCV_TIMEOUT, 30);
	pool_run(pl, 1);
	/* Each receiver timed out at least once: the last time, before it stopped. */
	assert_true(atomic_load(&pl->timeouts) >= NRECV);
	assert_kr(timed_rcv_join(&idle), MACH_RCV_TIMED_OUT);
	assert_true(idle.elapsed_ms >= 29.0);
	assert_true(idle.elapsed_ms < 2000.0);
	assert_kr(mach_port_destroy(mach_task_self(), pl->ports[0]), KERN_SUCCESS);
	assert_kr(mach_port_destroy(mach_task_self(), quiet), KERN_SUCCESS);
	free(pl);
	MVM_TEST_QUIESCENT();
}

/* ---- ping-pong ------------------------------------------------------------------------- */

#define ROUNDS 2000

struct server {
	pthread_t thread;
	mach_port_t port;
	int handled;
	mach_msg_return_t result;
};

/* Answer each request with value + 1 through its send-once reply right, until STOP_ID. */
static void *
server_main(void *arg)
{
	struct server *sv = arg;

	for (;;) {
		rcv_buf_t m;
		struct int_msg *req = (struct int_msg *)&m, rep;
		mach_msg_id_t id;

		memset(&m, 0, sizeof(m));
		sv->result = mach_msg(&m.h, MACH_RCV_MSG, 0, sizeof(m), sv->port, 0, MACH_PORT_NULL);
		if (sv->result != MACH_MSG_SUCCESS)
			return NULL;
		id = req->h.msgh_id;
		if (MACH_MSGH_BITS_REMOTE(req->h.msgh_bits) != MACH_MSG_TYPE_PORT_SEND_ONCE) {
			sv->result = MACH_SEND_INVALID_REPLY;
			return NULL;
		}
		memset(&rep, 0, sizeof(rep));
		rep.h.msgh_bits = MACH_MSGH_BITS(MACH_MSG_TYPE_MOVE_SEND_ONCE, 0) | MACH_MSGH_BITS_COMPLEX;
		rep.h.msgh_remote_port = req->h.msgh_remote_port;
		rep.h.msgh_id = id + 100;
		rep.t = (mach_msg_type_t){ .msgt_name = MACH_MSG_TYPE_INTEGER_32, .msgt_size = 32,
		    .msgt_number = 1, .msgt_inline = 1 };
		rep.value = req->value + 1;
		sv->result = mach_msg(&rep.h, MACH_SEND_MSG, sizeof(rep), 0, MACH_PORT_NULL, 0,
		    MACH_PORT_NULL);
		if (sv->result != MACH_MSG_SUCCESS || id == STOP_ID)
			return NULL;
		sv->handled++;
	}
}

/* One RPC: send value to the server, wait for the reply on reply_port. */
static mach_msg_return_t
rpc(mach_port_t server, mach_port_t reply_port, mach_msg_id_t id, int32_t value, int32_t *out,
    rcv_buf_t *m)
{
	struct int_msg *req = (struct int_msg *)m;
	mach_msg_return_t mr;

	memset(m, 0, sizeof(*m));
	req->h.msgh_bits = MACH_MSGH_BITS(MACH_MSG_TYPE_COPY_SEND, MACH_MSG_TYPE_MAKE_SEND_ONCE) |
	    MACH_MSGH_BITS_COMPLEX;
	req->h.msgh_remote_port = server;
	req->h.msgh_local_port = reply_port;
	req->h.msgh_id = id;
	req->t = (mach_msg_type_t){ .msgt_name = MACH_MSG_TYPE_INTEGER_32, .msgt_size = 32,
	    .msgt_number = 1, .msgt_inline = 1 };
	req->value = value;
	mr = mach_msg(&req->h, MACH_SEND_MSG | MACH_RCV_MSG, sizeof(*req), sizeof(*m), reply_port, 0,
	    MACH_PORT_NULL);
	*out = req->value;
	return mr;
}

struct client {
	pthread_t thread;
	mach_port_t server, reply;
	int ok;
	mach_msg_return_t result;
};

static void *
client_main(void *arg)
{
	struct client *c = arg;

	for (int i = 0; i < ROUNDS; i++) {
		rcv_buf_t m;
		int32_t out = 0;

		c->result = rpc(c->server, c->reply, i, i * 3, &out, &m);
		if (c->result != MACH_MSG_SUCCESS)
			return NULL;
		if (out == i * 3 + 1 && m.h.msgh_id == i + 100 && m.h.msgh_local_port == c->reply &&
		    MACH_MSGH_BITS_LOCAL(m.h.msgh_bits) == MACH_MSG_TYPE_PORT_SEND_ONCE &&
		    m.h.msgh_remote_port == MACH_PORT_NULL && m.h.msgh_seqno == (mach_port_seqno_t)i)
			c->ok++;
	}
	return NULL;
}

static void
threads_ping_pong(void **state)
{
	struct server sv = { 0 };
	struct client cl[2];
	rcv_buf_t m;
	int32_t out = 0;

	(void)state;
	sv.port = mvm_test_port_with_send();
	assert_int_equal(pthread_create(&sv.thread, NULL, server_main, &sv), 0);
	/* Two clients, each with its own reply port, against one server thread. */
	for (int i = 0; i < 2; i++) {
		cl[i] = (struct client){ .server = sv.port, .reply = new_port() };
		assert_int_equal(pthread_create(&cl[i].thread, NULL, client_main, &cl[i]), 0);
	}
	for (int i = 0; i < 2; i++) {
		assert_int_equal(pthread_join(cl[i].thread, NULL), 0);
		assert_kr(cl[i].result, MACH_MSG_SUCCESS);
		assert_int_equal(cl[i].ok, ROUNDS);
		/* Every send-once right was used by its reply. */
		assert_int_equal(status_of(cl[i].reply).mps_sorights, 0);
		assert_int_equal(status_of(cl[i].reply).mps_seqno, ROUNDS);
		assert_kr(mach_port_destroy(mach_task_self(), cl[i].reply), KERN_SUCCESS);
	}
	/* Stop the server with a last RPC from this thread. */
	{
		mach_port_t r = new_port();

		assert_kr(rpc(sv.port, r, STOP_ID, 41, &out, &m), MACH_MSG_SUCCESS);
		assert_int_equal(out, 42);
		assert_kr(mach_port_destroy(mach_task_self(), r), KERN_SUCCESS);
	}
	assert_int_equal(pthread_join(sv.thread, NULL), 0);
	assert_kr(sv.result, MACH_MSG_SUCCESS);
	assert_int_equal(sv.handled, 2 * ROUNDS);
	assert_int_equal(status_of(sv.port).mps_seqno, 2 * ROUNDS + 1);
	assert_kr(mach_port_destroy(mach_task_self(), sv.port), KERN_SUCCESS);
	MVM_TEST_QUIESCENT();
}

/* ---- a blocked receiver woken by a send ------------------------------------------------ */

struct one_sender {
	pthread_t thread;
	mach_port_t dest;
	mach_msg_id_t id;
	mach_msg_option_t opt;
	mach_msg_timeout_t timeout;
	mach_msg_return_t result;
	atomic_int done;
};

static void *
one_sender_main(void *arg)
{
	struct one_sender *s = arg;
	mach_msg_header_t h = {
		.msgh_bits = MACH_MSGH_BITS(MACH_MSG_TYPE_MOVE_SEND, 0),
		.msgh_size = sizeof(h),
		.msgh_remote_port = s->dest,
		.msgh_id = s->id,
	};

	s->result = mach_msg(&h, MACH_SEND_MSG | s->opt, sizeof(h), 0, MACH_PORT_NULL, s->timeout,
	    MACH_PORT_NULL);
	atomic_store(&s->done, 1);
	return NULL;
}

static void
one_sender_start(struct one_sender *s, mach_port_t dest, mach_msg_id_t id, mach_msg_option_t opt)
{
	memset(s, 0, sizeof(*s));
	s->dest = dest;
	s->id = id;
	s->opt = opt;
	s->result = ~0;
	assert_int_equal(pthread_create(&s->thread, NULL, one_sender_main, s), 0);
}

static mach_msg_return_t
one_sender_join(struct one_sender *s)
{
	await_done(&s->done);
	assert_int_equal(pthread_join(s->thread, NULL), 0);
	return s->result;
}

static void
threads_blocked_receiver_woken_by_send(void **state)
{
	mach_port_t p = mvm_test_port_with_send(), s;
	struct timed_rcv r1, r2;
	struct one_sender snd;

	(void)state;
	/* A receiver without a timeout, woken by another thread's send (which moves a send
	 * right: the name keeps the receive right). */
	assert_kr(mach_port_mod_refs(mach_task_self(), p, MACH_PORT_RIGHT_SEND, 1), KERN_SUCCESS);
	timed_rcv_start(&r1, p, 0, 0);
	await_blocked(p, false, 1);
	assert_int_equal(atomic_load(&r1.done), 0);
	one_sender_start(&snd, p, 7, 0);
	assert_kr(one_sender_join(&snd), MACH_MSG_SUCCESS);
	assert_kr(timed_rcv_join(&r1), MACH_MSG_SUCCESS);
	assert_int_equal(r1.msg.h.msgh_id, 7);
	assert_int_equal(r1.msg.h.msgh_local_port, p);
	assert_int_equal(mvm_test_refs(p, MACH_PORT_RIGHT_SEND), 1);

	/* Two receivers with long timeouts: two sends wake both, one message each. */
	timed_rcv_start(&r1, p, MACH_RCV_TIMEOUT, 10000);
	timed_rcv_start(&r2, p, MACH_RCV_TIMEOUT, 10000);
	await_blocked(p, false, 2);
	assert_kr(send_id(p, MACH_MSG_TYPE_COPY_SEND, 8), MACH_MSG_SUCCESS);
	assert_kr(send_id(p, MACH_MSG_TYPE_COPY_SEND, 9), MACH_MSG_SUCCESS);
	assert_kr(timed_rcv_join(&r1), MACH_MSG_SUCCESS);
	assert_kr(timed_rcv_join(&r2), MACH_MSG_SUCCESS);
	assert_int_equal(r1.msg.h.msgh_id + r2.msg.h.msgh_id, 17);
	assert_int_equal(r1.msg.h.msgh_seqno + r2.msg.h.msgh_seqno, 1 + 2);
	assert_true(r1.elapsed_ms < 5000.0 && r2.elapsed_ms < 5000.0);

	/* The same through a set. */
	assert_kr(mach_port_allocate(mach_task_self(), MACH_PORT_RIGHT_PORT_SET, &s), KERN_SUCCESS);
	assert_kr(mach_port_move_member(mach_task_self(), p, s), KERN_SUCCESS);
	timed_rcv_start(&r1, s, 0, 0);
	await_blocked(s, false, 1);
	assert_kr(send_id(p, MACH_MSG_TYPE_COPY_SEND, 10), MACH_MSG_SUCCESS);
	assert_kr(timed_rcv_join(&r1), MACH_MSG_SUCCESS);
	assert_int_equal(r1.msg.h.msgh_id, 10);
	assert_int_equal(r1.msg.h.msgh_local_port, p);
	assert_int_equal(r1.msg.h.msgh_seqno, 3);

	assert_kr(mach_port_destroy(mach_task_self(), s), KERN_SUCCESS);
	assert_kr(mach_port_destroy(mach_task_self(), p), KERN_SUCCESS);
	MVM_TEST_QUIESCENT();
}

/* ---- a wake-up that crosses a timeout ------------------------------------------------- */

/*
 * A waiter that is woken (a message arrived, or room appeared) in the same instant its
 * timeout or a signal ends its wait must not swallow the wake-up: either it takes the
 * message (the slot) itself or the next waiter is woken. The race is made deterministic
 * with a futex_wait override: on the marked thread it waits until woken and then reports
 * a timeout, as the kernel does when the deadline and the wake-up cross.
 */
static void drain(mach_port_t p, int expect);

static __thread bool crossing_thread;
static mvm_sys_futex_wait_fn *real_futex_wait;
static int crossing_errno = ETIMEDOUT;   /* what the crossed wait reports */

static int
crossing_futex_wait(uint32_t *addr, uint32_t val, const struct timespec *abs_mono)
{
	if (!crossing_thread)
		return real_futex_wait(addr, val, abs_mono);
	while (atomic_load((_Atomic uint32_t *)addr) == val)
		sleep_ms(1);
	return -crossing_errno;
}

static void *
crossing_rcv_main(void *arg)
{
	crossing_thread = true;
	return timed_rcv_main(arg);
}

static void *
crossing_send_main(void *arg)
{
	crossing_thread = true;
	return one_sender_main(arg);
}

static void
threads_wakeup_crossing_timeout(void **state)
{
	mach_port_t p = mvm_test_port_with_send();
	struct timed_rcv ra, rb;
	struct one_sender sa, sb;
	rcv_buf_t m;

	(void)state;
	real_futex_wait = (mvm_sys_futex_wait_fn *)mvm_sys_override(MVM_SYS_FUTEX_WAIT,
	    (void *)crossing_futex_wait);

	/* Receivers: A (first in line, with a timeout) and B (no timeout). */
	memset(&ra, 0, sizeof(ra));
	ra = (struct timed_rcv){ .name = p, .opt = MACH_RCV_TIMEOUT, .timeout = 10000, .result = ~0 };
	assert_int_equal(pthread_create(&ra.thread, NULL, crossing_rcv_main, &ra), 0);
	await_blocked(p, false, 1);
	timed_rcv_start(&rb, p, 0, 0);
	await_blocked(p, false, 2);
	assert_kr(send_id(p, MACH_MSG_TYPE_COPY_SEND, 1), MACH_MSG_SUCCESS);
	await_done(&ra.done);
	assert_int_equal(pthread_join(ra.thread, NULL), 0);
	if (ra.result == MACH_MSG_SUCCESS) {
		assert_int_equal(ra.msg.h.msgh_id, 1);
		assert_kr(send_id(p, MACH_MSG_TYPE_COPY_SEND, 2), MACH_MSG_SUCCESS);
		assert_kr(timed_rcv_join(&rb), MACH_MSG_SUCCESS);
		assert_int_equal(rb.msg.h.msgh_id, 2);
	} else {
		/* A gave up: then the message must have gone to B, not stay stranded. */
		assert_kr(ra.result, MACH_RCV_TIMED_OUT);
		assert_kr(timed_rcv_join(&rb), MACH_MSG_SUCCESS);
		assert_int_equal(rb.msg.h.msgh_id, 1);
	}
	assert_kr(rcv_poll(p, &m), MACH_RCV_TIMED_OUT);

	/* The same with a signal and MACH_RCV_INTERRUPT: the message is taken, not lost. */
	crossing_errno = EINTR;
	memset(&ra, 0, sizeof(ra));
	ra = (struct timed_rcv){ .name = p, .opt = MACH_RCV_INTERRUPT, .result = ~0 };
	assert_int_equal(pthread_create(&ra.thread, NULL, crossing_rcv_main, &ra), 0);
	await_blocked(p, false, 1);
	timed_rcv_start(&rb, p, 0, 0);
	await_blocked(p, false, 2);
	assert_kr(send_id(p, MACH_MSG_TYPE_COPY_SEND, 3), MACH_MSG_SUCCESS);
	await_done(&ra.done);
	assert_int_equal(pthread_join(ra.thread, NULL), 0);
	if (ra.result == MACH_MSG_SUCCESS) {
		assert_int_equal(ra.msg.h.msgh_id, 3);
		assert_kr(send_id(p, MACH_MSG_TYPE_COPY_SEND, 4), MACH_MSG_SUCCESS);
		assert_kr(timed_rcv_join(&rb), MACH_MSG_SUCCESS);
		assert_int_equal(rb.msg.h.msgh_id, 4);
	} else {
		assert_kr(ra.result, MACH_RCV_INTERRUPTED);
		assert_kr(timed_rcv_join(&rb), MACH_MSG_SUCCESS);
		assert_int_equal(rb.msg.h.msgh_id, 3);
	}
	assert_kr(rcv_poll(p, &m), MACH_RCV_TIMED_OUT);
	crossing_errno = ETIMEDOUT;

	/* Senders on a full queue: A (first in line, with a timeout) and B (no timeout). */
	assert_kr(mach_port_mod_refs(mach_task_self(), p, MACH_PORT_RIGHT_SEND, 2), KERN_SUCCESS);
	for (int i = 0; i < (int)MACH_PORT_QLIMIT_DEFAULT; i++)
		assert_kr(send_id(p, MACH_MSG_TYPE_COPY_SEND, 10 + i), MACH_MSG_SUCCESS);
	memset(&sa, 0, sizeof(sa));
	sa = (struct one_sender){ .dest = p, .id = 20, .opt = MACH_SEND_TIMEOUT,
	    .timeout = 10000, .result = ~0 };
	assert_int_equal(pthread_create(&sa.thread, NULL, crossing_send_main, &sa), 0);
	await_blocked(p, true, 1);
	one_sender_start(&sb, p, 21, 0);
	await_blocked(p, true, 2);
	assert_kr(rcv_poll(p, &m), MACH_MSG_SUCCESS); /* room for one */
	await_done(&sa.done);
	assert_int_equal(pthread_join(sa.thread, NULL), 0);
	if (sa.result == MACH_MSG_SUCCESS) {
		assert_kr(rcv_poll(p, &m), MACH_MSG_SUCCESS);
		assert_kr(one_sender_join(&sb), MACH_MSG_SUCCESS);
	} else {
		/* A gave up: then the free slot must have gone to B. */
		assert_kr(sa.result, MACH_SEND_TIMED_OUT);
		assert_kr(one_sender_join(&sb), MACH_MSG_SUCCESS);
	}
	mvm_sys_override(MVM_SYS_FUTEX_WAIT, NULL);
	drain(p, MACH_PORT_QLIMIT_DEFAULT);
	assert_kr(mach_port_destroy(mach_task_self(), p), KERN_SUCCESS);
	MVM_TEST_QUIESCENT();
}

static int
restore_futex_wait(void **state)
{
	(void)state;
	crossing_errno = ETIMEDOUT;
	mvm_sys_override(MVM_SYS_FUTEX_WAIT, NULL);
	return 0;
}

/*
 * A receiver woken for a message too large for it, with MACH_RCV_LARGE, leaves the
 * message queued: the next receiver must hear of it.
 */
static void
threads_too_large_passes_message_on(void **state)
{
	mach_port_t p = mvm_test_port_with_send();
	struct timed_rcv small, big;
	struct int_msg m;

	(void)state;
	memset(&small, 0, sizeof(small));
	small = (struct timed_rcv){ .name = p, .opt = MACH_RCV_LARGE, .result = ~0 };
	/* Its buffer holds a header, not the message below. */
	assert_int_equal(pthread_create(&small.thread, NULL, small_rcv_main, &small), 0);
	await_blocked(p, false, 1);
	timed_rcv_start(&big, p, 0, 0);
	await_blocked(p, false, 2);

	memset(&m, 0, sizeof(m));
	m.h.msgh_bits = MACH_MSGH_BITS(MACH_MSG_TYPE_COPY_SEND, 0) | MACH_MSGH_BITS_COMPLEX;
	m.h.msgh_remote_port = p;
	m.h.msgh_id = 33;
	m.t = (mach_msg_type_t){ .msgt_name = MACH_MSG_TYPE_INTEGER_32, .msgt_size = 32,
	    .msgt_number = 1, .msgt_inline = 1 };
	m.value = 7;
	assert_kr(mach_msg(&m.h, MACH_SEND_MSG, sizeof(m), 0, MACH_PORT_NULL, 0, MACH_PORT_NULL),
	    MACH_MSG_SUCCESS);
	assert_kr(timed_rcv_join(&small), MACH_RCV_TOO_LARGE);
	assert_int_equal(small.msg.h.msgh_size, sizeof(m));
	assert_kr(timed_rcv_join(&big), MACH_MSG_SUCCESS);
	assert_int_equal(big.msg.h.msgh_id, 33);
	assert_int_equal(big.msg.h.msgh_seqno, 0);
	assert_int_equal(((struct int_msg *)&big.msg)->value, 7);
	assert_kr(mach_port_destroy(mach_task_self(), p), KERN_SUCCESS);
	MVM_TEST_QUIESCENT();
}

/* ---- signals ---------------------------------------------------------------------------- */

static atomic_int signals_seen;
static struct sigaction old_action;

static void
on_sigusr1(int sig)
{
	(void)sig;
	atomic_fetch_add(&signals_seen, 1);
}

static int
signals_setup(void **state)
{
	struct sigaction sa;

	(void)state;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_sigusr1;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = 0; /* no SA_RESTART: an interrupted wait returns EINTR */
	return sigaction(SIGUSR1, &sa, &old_action);
}

static int
signals_teardown(void **state)
{
	(void)state;
	return sigaction(SIGUSR1, &old_action, NULL);
}

/* Signal `thread` until *done is set (the INTERRUPT case). */
static void
signal_until_done(pthread_t thread, atomic_int *done)
{
	for (int i = 0; i < 5000 && !atomic_load(done); i++) {
		assert_int_equal(pthread_kill(thread, SIGUSR1), 0);
		sleep_ms(2);
	}
	await_done(done);
}

/* Signal `thread` n times while it is blocked on name; each time it must wait again. */
static void
signal_while_blocked(pthread_t thread, atomic_int *done, mach_port_t name, bool sender, int n)
{
	for (int i = 0; i < n; i++) {
		int before = atomic_load(&signals_seen);

		await_blocked(name, sender, 1);
		assert_int_equal(pthread_kill(thread, SIGUSR1), 0);
		for (int j = 0; j < 10000 && atomic_load(&signals_seen) == before; j++)
			sleep_ms(1);
		assert_true(atomic_load(&signals_seen) > before);
		sleep_ms(2);
		await_blocked(name, sender, 1);
		assert_int_equal(atomic_load(done), 0);
	}
}

static void
threads_rcv_interrupt(void **state)
{
	mach_port_t p = mvm_test_port_with_send(), s;
	struct timed_rcv r;
	rcv_buf_t m;

	(void)state;
	/* With MACH_RCV_INTERRUPT a signal ends the wait. */
	timed_rcv_start(&r, p, MACH_RCV_INTERRUPT, 0);
	await_blocked(p, false, 1);
	signal_until_done(r.thread, &r.done);
	assert_kr(timed_rcv_join(&r), MACH_RCV_INTERRUPTED);
	assert_int_equal(blocked_on(p, false), 0);
	/* The port is untouched: a message sent now is there for the next receive. */
	assert_kr(send_id(p, MACH_MSG_TYPE_COPY_SEND, 1), MACH_MSG_SUCCESS);
	assert_kr(rcv_poll(p, &m), MACH_MSG_SUCCESS);
	assert_int_equal(m.h.msgh_id, 1);
	assert_int_equal(m.h.msgh_seqno, 0);

	/* Also with a timeout pending, and on a set. */
	assert_kr(mach_port_allocate(mach_task_self(), MACH_PORT_RIGHT_PORT_SET, &s), KERN_SUCCESS);
	assert_kr(mach_port_move_member(mach_task_self(), p, s), KERN_SUCCESS);
	timed_rcv_start(&r, s, MACH_RCV_INTERRUPT | MACH_RCV_TIMEOUT, 10000);
	await_blocked(s, false, 1);
	signal_until_done(r.thread, &r.done);
	assert_kr(timed_rcv_join(&r), MACH_RCV_INTERRUPTED);
	assert_true(r.elapsed_ms < 5000.0);

	assert_kr(mach_port_destroy(mach_task_self(), s), KERN_SUCCESS);
	assert_kr(mach_port_destroy(mach_task_self(), p), KERN_SUCCESS);
	MVM_TEST_QUIESCENT();
}

static void
threads_rcv_signal_without_interrupt(void **state)
{
	mach_port_t p = mvm_test_port_with_send();
	struct timed_rcv r;

	(void)state;
	/* Without MACH_RCV_INTERRUPT the receive keeps waiting through signals ... */
	timed_rcv_start(&r, p, 0, 0);
	signal_while_blocked(r.thread, &r.done, p, false, 3);
	/* ... and gets the next message. */
	assert_kr(send_id(p, MACH_MSG_TYPE_COPY_SEND, 5), MACH_MSG_SUCCESS);
	assert_kr(timed_rcv_join(&r), MACH_MSG_SUCCESS);
	assert_int_equal(r.msg.h.msgh_id, 5);

	/* A timeout keeps its deadline through signals. */
	timed_rcv_start(&r, p, MACH_RCV_TIMEOUT, 300);
	signal_while_blocked(r.thread, &r.done, p, false, 1);
	assert_kr(timed_rcv_join(&r), MACH_RCV_TIMED_OUT);
	assert_true(r.elapsed_ms >= 299.0);
	assert_true(r.elapsed_ms < 2000.0);

	assert_kr(mach_port_destroy(mach_task_self(), p), KERN_SUCCESS);
	MVM_TEST_QUIESCENT();
}

static void
fill(mach_port_t p)
{
	for (int i = 0; i < (int)MACH_PORT_QLIMIT_DEFAULT; i++) {
		mach_msg_header_t h = {
			.msgh_bits = MACH_MSGH_BITS(MACH_MSG_TYPE_COPY_SEND, 0),
			.msgh_size = sizeof(h),
			.msgh_remote_port = p,
			.msgh_id = i,
		};

		assert_kr(mach_msg(&h, MACH_SEND_MSG | MACH_SEND_TIMEOUT, sizeof(h), 0, MACH_PORT_NULL,
		    0, MACH_PORT_NULL), MACH_MSG_SUCCESS);
	}
}

static void
drain(mach_port_t p, int expect)
{
	rcv_buf_t m;
	int n = 0;

	while (rcv_poll(p, &m) == MACH_MSG_SUCCESS) {
		mach_msg_destroy(&m.h);
		n++;
	}
	assert_int_equal(n, expect);
}

static void
threads_send_interrupt(void **state)
{
	mach_port_t p = mvm_test_port_with_send();
	struct one_sender s;

	(void)state;
	assert_kr(mach_port_mod_refs(mach_task_self(), p, MACH_PORT_RIGHT_SEND, 1), KERN_SUCCESS);
	fill(p);
	/* With MACH_SEND_INTERRUPT a signal ends the wait, and the send takes nothing. */
	one_sender_start(&s, p, 99, MACH_SEND_INTERRUPT);
	await_blocked(p, true, 1);
	signal_until_done(s.thread, &s.done);
	assert_kr(one_sender_join(&s), MACH_SEND_INTERRUPTED);
	assert_int_equal(blocked_on(p, true), 0);
	assert_int_equal(mvm_test_refs(p, MACH_PORT_RIGHT_SEND), 2);
	assert_int_equal(status_of(p).mps_msgcount, MACH_PORT_QLIMIT_DEFAULT);

	/* Without it the send keeps waiting through signals, and goes when there is room. */
	one_sender_start(&s, p, 100, 0);
	signal_while_blocked(s.thread, &s.done, p, true, 3);
	{
		rcv_buf_t m;

		assert_kr(rcv_poll(p, &m), MACH_MSG_SUCCESS);
		assert_int_equal(m.h.msgh_id, 0);
	}
	assert_kr(one_sender_join(&s), MACH_MSG_SUCCESS);
	assert_int_equal(mvm_test_refs(p, MACH_PORT_RIGHT_SEND), 1);
	drain(p, MACH_PORT_QLIMIT_DEFAULT);
	assert_kr(mach_port_destroy(mach_task_self(), p), KERN_SUCCESS);
	MVM_TEST_QUIESCENT();
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(threads_receivers_on_one_port),
		cmocka_unit_test(threads_receivers_on_one_set),
		cmocka_unit_test(threads_receive_timeouts_while_sending),
		cmocka_unit_test(threads_ping_pong),
		cmocka_unit_test(threads_blocked_receiver_woken_by_send),
		cmocka_unit_test_teardown(threads_wakeup_crossing_timeout, restore_futex_wait),
		cmocka_unit_test(threads_too_large_passes_message_on),
		cmocka_unit_test(threads_rcv_interrupt),
		cmocka_unit_test(threads_rcv_signal_without_interrupt),
		cmocka_unit_test(threads_send_interrupt),
	};

	return cmocka_run_group_tests_name("threads", tests, signals_setup, signals_teardown);
}
