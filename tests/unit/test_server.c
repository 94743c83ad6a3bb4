/*
 * tests/unit/test_server.c: the MIG server loop (mach_msg_server, _once, _timeout) with a
 * hand-written demux, the per-thread MIG reply port, and mach_msg_destroy on received
 * messages with every kind of content.
 *
 * Rules checked: the reply header is prepared before the demux runs (so an unknown id
 * answers MIG_BAD_ID); MIG_NO_REPLY leaves the request to the routine; any other error
 * destroys the request's rights and memory but still answers; a reply that cannot be
 * sent is destroyed; the loop returns the receive error that stops it.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "mvm_test.h"

#define SELF mach_task_self()

/* ---- helpers ----------------------------------------------------------------------- */

static mach_port_t
rcv_port(void)
{
	mach_port_t p = MACH_PORT_NULL;

	assert_kr(mach_port_allocate(SELF, MACH_PORT_RIGHT_RECEIVE, &p), KERN_SUCCESS);
	return p;
}

static void
add_send(mach_port_t p)
{
	assert_kr(mach_port_insert_right(SELF, p, p, MACH_MSG_TYPE_MAKE_SEND), KERN_SUCCESS);
}

static void
destroy(mach_port_t name)
{
	assert_kr(mach_port_destroy(SELF, name), KERN_SUCCESS);
}


static uint64_t
vm_bytes(void)
{
	struct mvm_ipc_stats st;

	mvm_ipc_stats(&st);
	return st.vm_bytes;
}

static void
set_type(mach_msg_type_t *t, unsigned name, unsigned size, unsigned number)
{
	memset(t, 0, sizeof(*t));
	t->msgt_name = name;
	t->msgt_size = size;
	t->msgt_number = number;
	t->msgt_inline = 1;
}

static mach_msg_return_t
send_msg(void *m, mach_msg_size_t size)
{
	return mach_msg(m, MACH_SEND_MSG, size, 0, MACH_PORT_NULL, 0, MACH_PORT_NULL);
}

static mach_msg_return_t
recv_msg(void *m, mach_msg_size_t size, mach_port_t port)
{
	return mach_msg(m, MACH_RCV_MSG | MACH_RCV_TIMEOUT, 0, size, port, 0, MACH_PORT_NULL);
}

static int
clean_space(void **state)
{
	mach_port_array_t names = NULL;
	mach_port_type_array_t types = NULL;
	mach_msg_type_number_t n = 0, nt = 0;

	(void)state;
	mvm_sys_inject_reset();
	if (mach_port_names(SELF, &names, &n, &types, &nt) != KERN_SUCCESS)
		return 0;
	for (mach_msg_type_number_t i = 0; i < n; i++)
		if (names[i] != mig_get_reply_port())
			(void)mach_port_destroy(SELF, names[i]);
	(void)vm_deallocate(SELF, (vm_address_t)names, (n ? n : 1) * sizeof(*names));
	(void)vm_deallocate(SELF, (vm_address_t)types, (nt ? nt : 1) * sizeof(*types));
	mig_dealloc_reply_port(mig_get_reply_port());
	return 0;
}

/* ---- the server side -------------------------------------------------------------------- */

enum {
	ID_ECHO = 1000,     /* reply KERN_SUCCESS and 3 * the value */
	ID_NOREPLY,         /* MIG_NO_REPLY: the request is copied to `kept` */
	ID_FAIL,            /* RetCode KERN_FAILURE */
	ID_FALSE,           /* return FALSE without touching the reply */
	ID_COMPLEX,         /* a complex reply: a moved send right and out-of-line memory */
	ID_BIG,             /* like ECHO, checks a large inline body */
};

struct req {
	mach_msg_header_t h;
	mach_msg_type_t t;
	int32_t v;
};

struct echo_reply {
	mach_msg_header_t h;
	mach_msg_type_t ret_type;
	kern_return_t ret;
	mach_msg_type_t t;
	int32_t v;
};

struct complex_reply {
	mach_msg_header_t h;
	mach_msg_type_t ret_type;
	kern_return_t ret;
	mach_msg_type_t tp;
	mach_port_t port;
	mach_msg_type_long_t to;
	vm_offset_t data;
};

struct big_req {
	mach_msg_header_t h;
	mach_msg_type_t t;
	int32_t v;
	mach_msg_type_long_t tb;
	uint8_t bytes[];
};

/* What the demux saw; written by the server, read by the test after the server returned. */
static struct {
	int calls;
	mig_reply_header_t prepared;   /* the reply buffer as the demux found it */
	mach_msg_size_t in_size;
	union {
		mach_msg_header_t h;
		uint64_t align;                /* body items are 8-byte aligned */
		uint8_t b[1024];
	} kept;                        /* ID_NOREPLY keeps the request here */
} srv;

static mach_port_t complex_port;   /* ID_COMPLEX moves a send right to it into the reply */

static boolean_t
demux(mach_msg_header_t *in, mach_msg_header_t *out)
{
	mig_reply_header_t *rh = (mig_reply_header_t *)out;

	srv.calls++;
	srv.prepared = *rh;
	srv.in_size = in->msgh_size;
	switch (in->msgh_id) {
	case ID_ECHO:
	case ID_BIG: {
		const struct req *q = (const struct req *)in;
		struct echo_reply *r = (struct echo_reply *)out;

		r->ret = KERN_SUCCESS;
		if (in->msgh_id == ID_BIG) {
			const struct big_req *b = (const struct big_req *)in;

			for (uint32_t i = 0; i < b->tb.msgtl_number; i++)
				if (b->bytes[i] != (uint8_t)(i * 31 + 1))
					r->ret = KERN_INVALID_ARGUMENT;
		}
		set_type(&r->t, MACH_MSG_TYPE_INTEGER_32, 32, 1);
		r->v = q->v * 3;
		r->h.msgh_size = sizeof(*r);
		return TRUE;
	}
	case ID_NOREPLY:
		memcpy(&srv.kept, in, in->msgh_size);
		rh->RetCode = MIG_NO_REPLY;
		return TRUE;
	case ID_FAIL:
		rh->RetCode = KERN_FAILURE;
		return TRUE;
	case ID_FALSE:
		return FALSE;
	case ID_COMPLEX: {
		struct complex_reply *r = (struct complex_reply *)out;
		vm_address_t a = 0;

		if (mach_port_insert_right(SELF, complex_port, complex_port,
		    MACH_MSG_TYPE_MAKE_SEND) != KERN_SUCCESS ||
		    vm_allocate(SELF, &a, 2 * vm_page_size, TRUE) != KERN_SUCCESS) {
			rh->RetCode = KERN_RESOURCE_SHORTAGE;
			return TRUE;
		}
		memset((void *)a, 'c', 2 * vm_page_size);
		r->h.msgh_bits |= MACH_MSGH_BITS_COMPLEX;
		r->h.msgh_size = sizeof(*r);
		r->ret = KERN_SUCCESS;
		set_type(&r->tp, MACH_MSG_TYPE_MOVE_SEND, 32, 1);
		r->port = complex_port;
		memset(&r->to, 0, sizeof(r->to));
		r->to.msgtl_header.msgt_longform = 1;
		r->to.msgtl_header.msgt_deallocate = 1;
		r->to.msgtl_name = MACH_MSG_TYPE_BYTE;
		r->to.msgtl_size = 8;
		r->to.msgtl_number = (natural_t)(2 * vm_page_size);
		r->data = a;
		return TRUE;
	}
	default:
		rh->RetCode = MIG_BAD_ID;
		return FALSE;
	}
}

static void
send_req(mach_port_t s, mach_port_t reply, mach_msg_type_name_t reply_disp, mach_msg_id_t id,
    int32_t v)
{
	struct req q;

	memset(&q, 0, sizeof(q));
	q.h.msgh_bits = MACH_MSGH_BITS_COMPLEX | MACH_MSGH_BITS(MACH_MSG_TYPE_MAKE_SEND,
	    reply == MACH_PORT_NULL ? 0 : reply_disp);
	q.h.msgh_remote_port = s;
	q.h.msgh_local_port = reply;
	q.h.msgh_id = id;
	set_type(&q.t, MACH_MSG_TYPE_INTEGER_32, 32, 1);
	q.v = v;
	assert_kr(send_msg(&q, sizeof(q)), MACH_MSG_SUCCESS);
}

/* The reply header must be prepared MIG-style before the demux runs. */
static void
check_prepared(mach_msg_id_t id, mach_msg_bits_t remote_bits, mach_port_t remote)
{
	assert_int_equal(srv.prepared.Head.msgh_bits, MACH_MSGH_BITS(remote_bits, 0));
	assert_int_equal(srv.prepared.Head.msgh_size, sizeof(mig_reply_header_t));
	assert_int_equal(srv.prepared.Head.msgh_remote_port, remote);
	assert_int_equal(srv.prepared.Head.msgh_local_port, MACH_PORT_NULL);
	assert_int_equal(srv.prepared.Head.msgh_id, id + 100);
	assert_int_equal(srv.prepared.RetCodeType.msgt_name, MACH_MSG_TYPE_INTEGER_32);
	assert_int_equal(srv.prepared.RetCodeType.msgt_size, 32);
	assert_int_equal(srv.prepared.RetCodeType.msgt_number, 1);
	assert_true(srv.prepared.RetCodeType.msgt_inline);
	assert_int_equal(srv.prepared.RetCode, MIG_BAD_ID);
}

/* ---- routines ------------------------------------------------------------------------- */

static void
test_server_routine_reply(void **state)
{
	mach_port_t s = rcv_port(), r = rcv_port();
	struct echo_reply rep;
	mach_port_t so_name;

	(void)state;
	memset(&srv, 0, sizeof(srv));
	/* Nothing there: the poll times out, the demux is not called. */
	assert_kr(mach_msg_server_once(demux, 512, s, MACH_RCV_TIMEOUT), MACH_RCV_TIMED_OUT);
	assert_int_equal(srv.calls, 0);

	/* A routine with a send-once reply right. */
	send_req(s, r, MACH_MSG_TYPE_MAKE_SEND_ONCE, ID_ECHO, 7);
	assert_kr(mach_msg_server_once(demux, 512, s, MACH_RCV_TIMEOUT), MACH_MSG_SUCCESS);
	assert_int_equal(srv.calls, 1);
	assert_int_equal(srv.in_size, sizeof(struct req));
	so_name = srv.prepared.Head.msgh_remote_port;
	assert_true(MACH_PORT_VALID(so_name));
	check_prepared(ID_ECHO, MACH_MSG_TYPE_PORT_SEND_ONCE, so_name);
	assert_int_equal(mvm_test_type(so_name), 0); /* used by the reply */
	memset(&rep, 0, sizeof(rep));
	assert_kr(recv_msg(&rep, sizeof(rep), r), MACH_MSG_SUCCESS);
	assert_int_equal(rep.h.msgh_id, ID_ECHO + 100);
	assert_int_equal(rep.h.msgh_size, sizeof(rep));
	assert_int_equal(rep.h.msgh_bits, MACH_MSGH_BITS(0, MACH_MSG_TYPE_PORT_SEND_ONCE));
	assert_int_equal(rep.h.msgh_local_port, r);
	assert_int_equal(rep.ret, KERN_SUCCESS);
	assert_int_equal(rep.v, 21);
	assert_int_equal(mvm_test_status(r).mps_sorights, 0);
	assert_int_equal(mvm_test_status(s).mps_msgcount, 0);

	/* A send reply right (MAKE_SEND): the reply moves it back. */
	send_req(s, r, MACH_MSG_TYPE_MAKE_SEND, ID_ECHO, -2);
	assert_kr(mach_msg_server_once(demux, 512, s, MACH_RCV_TIMEOUT), MACH_MSG_SUCCESS);
	check_prepared(ID_ECHO, MACH_MSG_TYPE_PORT_SEND, r);
	assert_kr(recv_msg(&rep, sizeof(rep), r), MACH_MSG_SUCCESS);
	assert_int_equal(rep.h.msgh_bits, MACH_MSGH_BITS(0, MACH_MSG_TYPE_PORT_SEND));
	assert_int_equal(rep.v, -6);
	assert_false(mvm_test_status(r).mps_srights);

	/* No reply port: the routine runs, nothing is sent. */
	srv.calls = 0;
	send_req(s, MACH_PORT_NULL, 0, ID_ECHO, 1);
	assert_kr(mach_msg_server_once(demux, 512, s, MACH_RCV_TIMEOUT), MACH_MSG_SUCCESS);
	assert_int_equal(srv.calls, 1);
	check_prepared(ID_ECHO, 0, MACH_PORT_NULL);
	assert_int_equal(mvm_test_status(r).mps_msgcount, 0);

	/* mach_msg_server_timeout handles everything queued, then times out. */
	srv.calls = 0;
	for (int i = 0; i < 4; i++)
		send_req(s, r, MACH_MSG_TYPE_MAKE_SEND_ONCE, ID_ECHO, i);
	assert_kr(mach_msg_server_timeout(demux, 512, s, MACH_RCV_TIMEOUT, 5), MACH_RCV_TIMED_OUT);
	assert_int_equal(srv.calls, 4);
	for (int i = 0; i < 4; i++) {
		assert_kr(recv_msg(&rep, sizeof(rep), r), MACH_MSG_SUCCESS);
		assert_int_equal(rep.v, 3 * i);
	}
	/* Options other than the receive timeout and interrupt are ignored. */
	assert_kr(mach_msg_server_timeout(demux, 512, s, MACH_RCV_TIMEOUT | MACH_RCV_NOTIFY |
	    MACH_SEND_MSG, 0), MACH_RCV_TIMED_OUT);

	destroy(s);
	destroy(r);
	MVM_TEST_QUIESCENT();
}

struct noreply_req {
	mach_msg_header_t h;
	mach_msg_type_t tp;
	mach_port_t a;
	mach_msg_type_long_t to;
	vm_offset_t data;
};

static void
test_server_no_reply(void **state)
{
	mach_port_t s = rcv_port(), r = rcv_port(), a = rcv_port();
	struct noreply_req q, *k;
	struct echo_reply rep;
	static char text[] = "kept by the routine";
	uint64_t base = vm_bytes();

	(void)state;
	memset(&srv, 0, sizeof(srv));
	memset(&q, 0, sizeof(q));
	q.h.msgh_bits = MACH_MSGH_BITS_COMPLEX |
	    MACH_MSGH_BITS(MACH_MSG_TYPE_MAKE_SEND, MACH_MSG_TYPE_MAKE_SEND_ONCE);
	q.h.msgh_remote_port = s;
	q.h.msgh_local_port = r;
	q.h.msgh_id = ID_NOREPLY;
	set_type(&q.tp, MACH_MSG_TYPE_MAKE_SEND, 32, 1);
	q.a = a;
	q.to.msgtl_header.msgt_longform = 1;
	q.to.msgtl_name = MACH_MSG_TYPE_CHAR;
	q.to.msgtl_size = 8;
	q.to.msgtl_number = sizeof(text);
	q.data = (vm_offset_t)text;
	assert_kr(send_msg(&q, sizeof(q)), MACH_MSG_SUCCESS);
	assert_kr(mach_msg_server_once(demux, 512, s, MACH_RCV_TIMEOUT), MACH_MSG_SUCCESS);
	assert_int_equal(srv.calls, 1);

	/* No reply, and the request is untouched: its rights and memory are the routine's. */
	assert_int_equal(mvm_test_status(r).mps_msgcount, 0);
	k = (struct noreply_req *)&srv.kept;
	assert_int_equal(mvm_test_type(k->h.msgh_remote_port), MACH_PORT_TYPE_SEND_ONCE);
	assert_int_equal(mvm_test_status(r).mps_sorights, 1);
	assert_int_equal(k->a, a);
	assert_int_equal(mvm_test_refs(a, MACH_PORT_RIGHT_SEND), 1);
	assert_string_equal((const char *)k->data, text);
	assert_true(vm_bytes() > base);

	/* The routine answers later, through the reply right it kept. */
	memset(&rep, 0, sizeof(rep));
	rep.h.msgh_bits = MACH_MSGH_BITS(MACH_MSG_TYPE_MOVE_SEND_ONCE, 0);
	rep.h.msgh_remote_port = k->h.msgh_remote_port;
	rep.h.msgh_id = ID_NOREPLY + 100;
	assert_kr(send_msg(&rep, sizeof(mig_reply_header_t)), MACH_MSG_SUCCESS);
	assert_kr(recv_msg(&rep, sizeof(rep), r), MACH_MSG_SUCCESS);
	assert_int_equal(rep.h.msgh_id, ID_NOREPLY + 100);
	/* And then releases the rest. */
	k->h.msgh_remote_port = MACH_PORT_NULL;
	mach_msg_destroy(&k->h);
	assert_false(mvm_test_status(a).mps_srights);
	assert_int_equal(vm_bytes(), base);

	destroy(s);
	destroy(r);
	destroy(a);
	MVM_TEST_QUIESCENT();
}

struct rich_req {
	mach_msg_header_t h;
	mach_msg_type_t tp;
	mach_port_t ports[3];        /* MAKE_SEND: a, NULL, DEAD */
	mach_msg_type_t tso;
	mach_port_t so;              /* MAKE_SEND_ONCE: b */
	mach_msg_type_t tx;
	mach_port_t x;               /* MOVE_RECEIVE: x */
	mach_msg_type_long_t to;
	vm_offset_t data;            /* out-of-line, deallocated by the send */
	mach_msg_type_t tpa;
	vm_offset_t parr;            /* out-of-line ports: MAKE_SEND a */
	mach_msg_type_t tv;
	int32_t v;
};

static vm_address_t
init_rich(struct rich_req *q, mach_port_t s, mach_port_t r, mach_msg_id_t id, mach_port_t a,
    mach_port_t b, mach_port_t x, const mach_port_t *parr)
{
	vm_address_t region = 0;

	assert_kr(vm_allocate(SELF, &region, 2 * vm_page_size, TRUE), KERN_SUCCESS);
	memset((void *)region, 'd', 2 * vm_page_size);
	memset(q, 0, sizeof(*q));
	q->h.msgh_bits = MACH_MSGH_BITS_COMPLEX |
	    MACH_MSGH_BITS(MACH_MSG_TYPE_MAKE_SEND, MACH_MSG_TYPE_MAKE_SEND_ONCE);
	q->h.msgh_remote_port = s;
	q->h.msgh_local_port = r;
	q->h.msgh_id = id;
	set_type(&q->tp, MACH_MSG_TYPE_MAKE_SEND, 32, 3);
	q->ports[0] = a;
	q->ports[1] = MACH_PORT_NULL;
	q->ports[2] = MACH_PORT_DEAD;
	set_type(&q->tso, MACH_MSG_TYPE_MAKE_SEND_ONCE, 32, 1);
	q->so = b;
	set_type(&q->tx, MACH_MSG_TYPE_MOVE_RECEIVE, 32, 1);
	q->x = x;
	q->to.msgtl_header.msgt_longform = 1;
	q->to.msgtl_header.msgt_deallocate = 1;
	q->to.msgtl_name = MACH_MSG_TYPE_BYTE;
	q->to.msgtl_size = 8;
	q->to.msgtl_number = (natural_t)(2 * vm_page_size);
	q->data = region;
	set_type(&q->tpa, MACH_MSG_TYPE_MAKE_SEND, 32, 1);
	q->tpa.msgt_inline = 0;
	q->parr = (vm_offset_t)parr;
	set_type(&q->tv, MACH_MSG_TYPE_INTEGER_32, 32, 1);
	q->v = 5;
	return region;
}

/* An error RetCode: the request's rights and memory are destroyed, the error is answered. */
static void
check_error_reply(mach_msg_id_t id, kern_return_t code)
{
	mach_port_t s = rcv_port(), r = rcv_port(), a = rcv_port(), b = rcv_port(),
	    x = rcv_port(), n = rcv_port(), prev = MACH_PORT_NULL;
	mach_port_t parr[1] = { a };
	struct rich_req q;
	union {
		mig_reply_header_t mig;
		mach_no_senders_notification_t ns;
		uint8_t b[256];
	} rep;
	uint64_t base = vm_bytes();

	memset(&srv, 0, sizeof(srv));
	add_send(x); /* x's name keeps a send right: it turns dead when x is destroyed */
	assert_kr(mach_port_request_notification(SELF, a, MACH_NOTIFY_NO_SENDERS, 1, n,
	    MACH_MSG_TYPE_MAKE_SEND_ONCE, &prev), KERN_SUCCESS);
	(void)init_rich(&q, s, r, id, a, b, x, parr);
	assert_kr(send_msg(&q, sizeof(q)), MACH_MSG_SUCCESS);
	assert_kr(mach_msg_server_once(demux, 512, s, MACH_RCV_TIMEOUT), MACH_MSG_SUCCESS);
	assert_int_equal(srv.calls, 1);
	check_prepared(id, MACH_MSG_TYPE_PORT_SEND_ONCE, srv.prepared.Head.msgh_remote_port);

	/* The error reply. */
	memset(&rep, 0, sizeof(rep));
	assert_kr(recv_msg(&rep, sizeof(rep), r), MACH_MSG_SUCCESS);
	assert_int_equal(rep.mig.Head.msgh_id, id + 100);
	assert_int_equal(rep.mig.Head.msgh_size, sizeof(mig_reply_header_t));
	assert_int_equal(rep.mig.RetCode, code);
	assert_int_equal(mvm_test_status(r).mps_sorights, 0);
	/* The request's send rights (inline and out-of-line) are released: no senders. */
	assert_false(mvm_test_status(a).mps_srights);
	assert_kr(recv_msg(&rep, sizeof(rep), n), MACH_MSG_SUCCESS);
	assert_int_equal(rep.ns.not_header.msgh_id, MACH_NOTIFY_NO_SENDERS);
	assert_int_equal(rep.ns.not_count, 2);
	/* The send-once right: destroyed, b hears of it. */
	assert_kr(recv_msg(&rep, sizeof(rep), b), MACH_MSG_SUCCESS);
	assert_int_equal(rep.mig.Head.msgh_id, MACH_NOTIFY_SEND_ONCE);
	assert_int_equal(mvm_test_status(b).mps_sorights, 0);
	/* The receive right: destroyed. */
	assert_int_equal(mvm_test_type(x), MACH_PORT_TYPE_DEAD_NAME);
	/* The out-of-line memory: freed. */
	assert_int_equal(vm_bytes(), base);

	assert_kr(mach_port_deallocate(SELF, x), KERN_SUCCESS);
	destroy(s);
	destroy(r);
	destroy(a);
	destroy(b);
	destroy(n);
	MVM_TEST_QUIESCENT();
}

static void
test_server_error_destroys_request(void **state)
{
	(void)state;
	check_error_reply(ID_FAIL, KERN_FAILURE);
	MVM_TEST_QUIESCENT();
}

static void
test_server_bad_id(void **state)
{
	(void)state;
	/* An id the demux does not know: it answers MIG_BAD_ID, MIG-style. */
	check_error_reply(4242, MIG_BAD_ID);
	/* A demux that returns FALSE without touching the reply: the same answer. */
	check_error_reply(ID_FALSE, MIG_BAD_ID);
	MVM_TEST_QUIESCENT();
}

/* A request larger than max_size: the server grows its buffers and takes it. */
static void
test_server_grows_buffer(void **state)
{
	static const uint32_t sizes[] = { 3000, 10, 70000, 200, 5000 };
	mach_port_t s = rcv_port(), r = rcv_port();
	struct echo_reply rep;

	(void)state;
	memset(&srv, 0, sizeof(srv));
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		size_t size = sizeof(struct big_req) + ((sizes[i] + 7) & ~7u);
		struct big_req *q = calloc(1, size);

		assert_non_null(q);
		q->h.msgh_bits = MACH_MSGH_BITS_COMPLEX |
		    MACH_MSGH_BITS(MACH_MSG_TYPE_MAKE_SEND, MACH_MSG_TYPE_MAKE_SEND_ONCE);
		q->h.msgh_remote_port = s;
		q->h.msgh_local_port = r;
		q->h.msgh_id = ID_BIG;
		set_type(&q->t, MACH_MSG_TYPE_INTEGER_32, 32, 1);
		q->v = (int32_t)i;
		q->tb.msgtl_header.msgt_inline = 1;
		q->tb.msgtl_header.msgt_longform = 1;
		q->tb.msgtl_name = MACH_MSG_TYPE_BYTE;
		q->tb.msgtl_size = 8;
		q->tb.msgtl_number = sizes[i];
		for (uint32_t j = 0; j < sizes[i]; j++)
			q->bytes[j] = (uint8_t)(j * 31 + 1);
		assert_kr(send_msg(q, (mach_msg_size_t)size), MACH_MSG_SUCCESS);
		free(q);
	}
	/* One at a time with _once and a small buffer... */
	assert_kr(mach_msg_server_once(demux, 256, s, MACH_RCV_TIMEOUT), MACH_MSG_SUCCESS);
	assert_int_equal(srv.in_size, sizeof(struct big_req) + 3000);
	assert_kr(recv_msg(&rep, sizeof(rep), r), MACH_MSG_SUCCESS);
	assert_int_equal(rep.ret, KERN_SUCCESS);
	assert_int_equal(rep.v, 0);
	/* ...then the rest with _timeout, starting from a tiny buffer (below a reply header). */
	assert_kr(mach_msg_server_timeout(demux, 8, s, MACH_RCV_TIMEOUT, 0), MACH_RCV_TIMED_OUT);
	assert_int_equal(srv.calls, 5);
	for (int i = 1; i < 5; i++) {
		assert_kr(recv_msg(&rep, sizeof(rep), r), MACH_MSG_SUCCESS);
		assert_int_equal(rep.ret, KERN_SUCCESS);
		assert_int_equal(rep.v, 3 * i);
	}
	assert_int_equal(mvm_test_status(s).mps_seqno, 5); /* RCV_LARGE never used a sequence number */

	destroy(s);
	destroy(r);
	MVM_TEST_QUIESCENT();
}

/* A reply that cannot be sent is destroyed: its moved rights and memory are released. */
static void
test_server_reply_not_sent(void **state)
{
	mach_port_t s = rcv_port(), r = rcv_port();
	uint64_t base = vm_bytes();
	struct complex_reply rep;

	(void)state;
	complex_port = rcv_port();
	memset(&srv, 0, sizeof(srv));

	/* Control: the complex reply arrives when it can. */
	send_req(s, r, MACH_MSG_TYPE_MAKE_SEND_ONCE, ID_COMPLEX, 1);
	assert_kr(mach_msg_server_once(demux, 512, s, MACH_RCV_TIMEOUT), MACH_MSG_SUCCESS);
	assert_kr(recv_msg(&rep, sizeof(rep), r), MACH_MSG_SUCCESS);
	assert_int_equal(rep.ret, KERN_SUCCESS);
	assert_int_equal(rep.port, complex_port);
	assert_int_equal(((char *)rep.data)[0], 'c');
	assert_true(mvm_test_status(complex_port).mps_srights);
	mach_msg_destroy(&rep.h);
	assert_false(mvm_test_status(complex_port).mps_srights);
	assert_int_equal(vm_bytes(), base);

	/* The client's reply port is destroyed before the server answers: the reply right
	 * arrives dead, the send fails, the reply is destroyed. */
	send_req(s, r, MACH_MSG_TYPE_MAKE_SEND_ONCE, ID_COMPLEX, 2);
	destroy(r);
	assert_kr(mach_msg_server_once(demux, 512, s, MACH_RCV_TIMEOUT), MACH_MSG_SUCCESS);
	assert_int_equal(srv.calls, 2);
	assert_int_equal(srv.prepared.Head.msgh_remote_port, MACH_PORT_DEAD);
	assert_false(mvm_test_status(complex_port).mps_srights);
	assert_int_equal(vm_bytes(), base);
	assert_int_equal(mvm_test_status(complex_port).mps_msgcount, 0);

	/* The client's reply queue is full (send reply right): the zero-timeout send times
	 * out, the reply and the reply right are destroyed. */
	r = rcv_port();
	assert_kr(mach_port_set_qlimit(SELF, r, 1), KERN_SUCCESS);
	send_req(r, MACH_PORT_NULL, 0, 1, 0); /* fills r */
	send_req(s, r, MACH_MSG_TYPE_MAKE_SEND, ID_COMPLEX, 3);
	assert_kr(mach_msg_server_once(demux, 512, s, MACH_RCV_TIMEOUT), MACH_MSG_SUCCESS);
	assert_int_equal(srv.calls, 3);
	assert_int_equal(mvm_test_status(r).mps_msgcount, 1);
	assert_int_equal(mvm_test_type(r), MACH_PORT_TYPE_RECEIVE); /* reply right released */
	assert_false(mvm_test_status(complex_port).mps_srights);
	{
		struct req filler;

		/* The filler's destination right is the only send right left. */
		assert_true(mvm_test_status(r).mps_srights);
		assert_kr(recv_msg(&filler, sizeof(filler), r), MACH_MSG_SUCCESS);
		assert_int_equal(filler.h.msgh_id, 1);
		assert_false(mvm_test_status(r).mps_srights);
	}
	assert_int_equal(vm_bytes(), base);

	destroy(s);
	destroy(r);
	destroy(complex_port);
	MVM_TEST_QUIESCENT();
}

/* ---- mach_msg_server in a thread --------------------------------------------------------- */

struct server_arg {
	mach_port_t port;
	mach_msg_return_t mr;
};

static void *
server_thread(void *p)
{
	struct server_arg *arg = p;

	arg->mr = mach_msg_server(demux, 512, arg->port);
	return NULL;
}

static void
run_server_until_destroyed(mach_port_t rcv, mach_port_t dest)
{
	mach_port_t r = rcv_port();
	struct server_arg arg = { rcv, MACH_MSG_SUCCESS };
	struct req q;
	pthread_t th;

	assert_int_equal(pthread_create(&th, NULL, server_thread, &arg), 0);
	/* A few RPCs, so that we know the loop is running. */
	for (int i = 0; i < 3; i++) {
		struct echo_reply rep;

		memset(&q, 0, sizeof(q));
		q.h.msgh_bits = MACH_MSGH_BITS_COMPLEX |
		    MACH_MSGH_BITS(MACH_MSG_TYPE_MAKE_SEND, MACH_MSG_TYPE_MAKE_SEND_ONCE);
		q.h.msgh_remote_port = dest;
		q.h.msgh_local_port = r;
		q.h.msgh_id = ID_ECHO;
		set_type(&q.t, MACH_MSG_TYPE_INTEGER_32, 32, 1);
		q.v = 10 + i;
		memcpy(&rep, &q, sizeof(q));
		assert_kr(mach_msg(&rep.h, MACH_SEND_MSG | MACH_RCV_MSG | MACH_RCV_TIMEOUT,
		    sizeof(q), sizeof(rep), r, 10000, MACH_PORT_NULL), MACH_MSG_SUCCESS);
		assert_int_equal(rep.v, 3 * (10 + i));
	}
	/* Destroy the port (or set) it serves from here; the loop must return. */
	destroy(rcv);
	assert_int_equal(pthread_join(th, NULL), 0);
	if (arg.mr != MACH_RCV_PORT_DIED && arg.mr != MACH_RCV_INVALID_NAME)
		fail_msg("mach_msg_server returned %s", mvm_errname(arg.mr));
	destroy(r);
}

static void
test_server_returns_when_port_destroyed(void **state)
{
	mach_port_t s = rcv_port(), set, m;

	(void)state;
	run_server_until_destroyed(s, s);
	MVM_TEST_QUIESCENT();

	/* Serving a port set. */
	assert_kr(mach_port_allocate(SELF, MACH_PORT_RIGHT_PORT_SET, &set), KERN_SUCCESS);
	m = rcv_port();
	assert_kr(mach_port_move_member(SELF, m, set), KERN_SUCCESS);
	run_server_until_destroyed(set, m);
	destroy(m);
	MVM_TEST_QUIESCENT();
}

/* ---- the MIG reply port ------------------------------------------------------------------ */

static void *
reply_port_thread(void *p)
{
	mach_port_t *out = p;
	mach_msg_header_t h;

	out[0] = mig_get_reply_port();
	out[1] = mig_get_reply_port();
	/* Leave a message queued on it: thread exit destroys both. */
	memset(&h, 0, sizeof(h));
	h.msgh_bits = MACH_MSGH_BITS(MACH_MSG_TYPE_MAKE_SEND, 0);
	h.msgh_remote_port = out[0];
	out[2] = (mach_port_t)send_msg(&h, sizeof(h));
	return NULL;
}

static void
test_mig_reply_port(void **state)
{
	mach_port_t p, p2, s = rcv_port(), th_ports[3];
	struct echo_reply rep;
	mach_msg_header_t h;
	pthread_t th;
	struct mvm_ipc_stats st;

	(void)state;
	p = mig_get_reply_port();
	assert_true(MACH_PORT_VALID(p));
	assert_int_equal(mig_get_reply_port(), p);
	assert_int_equal(mvm_test_type(p), MACH_PORT_TYPE_RECEIVE);
	mig_put_reply_port(p); /* a no-op */
	assert_int_equal(mig_get_reply_port(), p);

	/* It serves as the reply port of an RPC. */
	memset(&srv, 0, sizeof(srv));
	send_req(s, p, MACH_MSG_TYPE_MAKE_SEND_ONCE, ID_ECHO, 4);
	assert_kr(mach_msg_server_once(demux, 512, s, MACH_RCV_TIMEOUT), MACH_MSG_SUCCESS);
	assert_kr(recv_msg(&rep, sizeof(rep), p), MACH_MSG_SUCCESS);
	assert_int_equal(rep.v, 12);
	destroy(s);

	/* The quiescence check ignores this thread's reply port. */
	assert_kr(mvm_ipc_quiescent(NULL, 0), KERN_SUCCESS);

	/* Deallocated, with a message queued: both go; the next call makes a new one. */
	memset(&h, 0, sizeof(h));
	h.msgh_bits = MACH_MSGH_BITS(MACH_MSG_TYPE_MAKE_SEND, 0);
	h.msgh_remote_port = p;
	assert_kr(send_msg(&h, sizeof(h)), MACH_MSG_SUCCESS);
	mig_dealloc_reply_port(p);
	assert_int_equal(mvm_test_type(p), 0);
	mvm_ipc_stats(&st);
	assert_int_equal(st.kmsgs, 0);
	assert_int_equal(st.ports, 0);
	MVM_TEST_QUIESCENT();
	p2 = mig_get_reply_port();
	assert_true(MACH_PORT_VALID(p2));
	assert_int_not_equal(p2, p);
	assert_int_equal(mvm_test_type(p2), MACH_PORT_TYPE_RECEIVE);

	/* Each thread has its own, destroyed when the thread exits. */
	assert_int_equal(pthread_create(&th, NULL, reply_port_thread, th_ports), 0);
	assert_int_equal(pthread_join(th, NULL), 0);
	assert_true(MACH_PORT_VALID(th_ports[0]));
	assert_int_equal(th_ports[1], th_ports[0]);
	assert_int_not_equal(th_ports[0], p2);
	assert_kr((mach_msg_return_t)th_ports[2], MACH_MSG_SUCCESS);
	assert_int_equal(mvm_test_type(th_ports[0]), 0);
	mvm_ipc_stats(&st);
	assert_int_equal(st.kmsgs, 0);
	assert_int_equal(st.ports, 1); /* ours */

	mig_dealloc_reply_port(p2);
	assert_int_equal(mvm_test_type(p2), 0);
	mig_dealloc_reply_port(MACH_PORT_NULL); /* none: harmless */
	MVM_TEST_QUIESCENT();
}

/* ---- mach_msg_destroy -------------------------------------------------------------------- */

struct every_msg {
	mach_msg_header_t h;
	mach_msg_type_t t1;
	mach_port_t send[3];          /* MAKE_SEND a, NULL, DEAD -> PORT_SEND */
	mach_msg_type_t t2;
	mach_port_t sonce[2];         /* MAKE_SEND_ONCE a, DEAD -> PORT_SEND_ONCE */
	mach_msg_type_long_t t3;
	mach_port_t recv[2];          /* MOVE_RECEIVE x1, NULL (long form) */
	mach_msg_type_t t4;
	int16_t shorts[3];
	mach_msg_type_long_t t5;
	vm_offset_t data;             /* out-of-line bytes */
	mach_msg_type_t t6;
	vm_offset_t empty;            /* out-of-line, 0 bytes */
	mach_msg_type_t t7;
	vm_offset_t osend;            /* out-of-line COPY_SEND a, a, NULL */
	mach_msg_type_t t8;
	vm_offset_t osonce;           /* out-of-line MAKE_SEND_ONCE b, b */
	mach_msg_type_t t9;
	vm_offset_t orecv;            /* out-of-line MOVE_RECEIVE x2, DEAD? no: x2, NULL */
	mach_msg_type_t t10;
	mach_port_t pname[2];         /* PORT_NAME: names only, no rights */
};

static void
test_msg_destroy_every_kind(void **state)
{
	mach_port_t d = rcv_port(), a = rcv_port(), b = rcv_port(), r = rcv_port(),
	    x1 = rcv_port(), x2 = rcv_port(), n = rcv_port(), prev = MACH_PORT_NULL;
	mach_port_t osend[3], osonce[2], orecv[2];
	struct every_msg m, rm;
	struct mvm_ipc_stats st0, st1;
	uint64_t base;
	static const char bytes[] = "out of line";
	union {
		mach_msg_header_t h;
		mach_port_destroyed_notification_t pd;
		uint8_t b[512];
	} buf;

	(void)state;
	add_send(a);
	base = vm_bytes();
	mvm_ipc_stats(&st0);

	/* Not complex: only the reply right is destroyed, the body is not looked at. */
	memset(&m, 0, sizeof(m));
	m.h.msgh_bits = MACH_MSGH_BITS(MACH_MSG_TYPE_MAKE_SEND, MACH_MSG_TYPE_MAKE_SEND);
	m.h.msgh_remote_port = d;
	m.h.msgh_local_port = r;
	set_type(&m.t1, MACH_MSG_TYPE_MOVE_RECEIVE, 32, 1);
	m.send[0] = x1; /* would destroy x1 if it were parsed */
	assert_kr(send_msg(&m, sizeof(m)), MACH_MSG_SUCCESS);
	assert_kr(recv_msg(&rm, sizeof(rm), d), MACH_MSG_SUCCESS);
	assert_int_equal(rm.h.msgh_remote_port, r);
	assert_true(mvm_test_status(r).mps_srights);
	mach_msg_destroy(&rm.h);
	assert_false(mvm_test_status(r).mps_srights);
	assert_int_equal(mvm_test_type(x1), MACH_PORT_TYPE_RECEIVE);

	/* Not complex, send-once reply: destroyed, r hears of it. */
	m.h.msgh_bits = MACH_MSGH_BITS(MACH_MSG_TYPE_MAKE_SEND, MACH_MSG_TYPE_MAKE_SEND_ONCE);
	assert_kr(send_msg(&m, sizeof(m.h)), MACH_MSG_SUCCESS);
	assert_kr(recv_msg(&rm, sizeof(rm), d), MACH_MSG_SUCCESS);
	mach_msg_destroy(&rm.h);
	assert_kr(recv_msg(&buf, sizeof(buf), r), MACH_MSG_SUCCESS);
	assert_int_equal(buf.h.msgh_id, MACH_NOTIFY_SEND_ONCE);

	/* A dead reply: nothing to do. */
	m.h.msgh_bits = MACH_MSGH_BITS(MACH_MSG_TYPE_MAKE_SEND, MACH_MSG_TYPE_COPY_SEND);
	m.h.msgh_local_port = MACH_PORT_DEAD;
	assert_kr(send_msg(&m, sizeof(m.h)), MACH_MSG_SUCCESS);
	assert_kr(recv_msg(&rm, sizeof(rm), d), MACH_MSG_SUCCESS);
	assert_int_equal(rm.h.msgh_remote_port, MACH_PORT_DEAD);
	mach_msg_destroy(&rm.h);
	mach_msg_destroy(NULL);

	/* Complex, with every kind of item. */
	memset(&m, 0, sizeof(m));
	m.h.msgh_bits = MACH_MSGH_BITS_COMPLEX |
	    MACH_MSGH_BITS(MACH_MSG_TYPE_MAKE_SEND, MACH_MSG_TYPE_MAKE_SEND_ONCE);
	m.h.msgh_remote_port = d;
	m.h.msgh_local_port = r;
	set_type(&m.t1, MACH_MSG_TYPE_MAKE_SEND, 32, 3);
	m.send[0] = a;
	m.send[1] = MACH_PORT_NULL;
	m.send[2] = MACH_PORT_DEAD;
	set_type(&m.t2, MACH_MSG_TYPE_MAKE_SEND_ONCE, 32, 2);
	m.sonce[0] = a;
	m.sonce[1] = MACH_PORT_DEAD;
	m.t3.msgtl_header.msgt_inline = 1;
	m.t3.msgtl_header.msgt_longform = 1;
	m.t3.msgtl_name = MACH_MSG_TYPE_MOVE_RECEIVE;
	m.t3.msgtl_size = 32;
	m.t3.msgtl_number = 2;
	m.recv[0] = x1;
	m.recv[1] = MACH_PORT_NULL;
	set_type(&m.t4, MACH_MSG_TYPE_INTEGER_16, 16, 3);
	m.t5.msgtl_header.msgt_longform = 1;
	m.t5.msgtl_name = MACH_MSG_TYPE_CHAR;
	m.t5.msgtl_size = 8;
	m.t5.msgtl_number = sizeof(bytes);
	m.data = (vm_offset_t)bytes;
	set_type(&m.t6, MACH_MSG_TYPE_BYTE, 8, 0);
	m.t6.msgt_inline = 0;
	m.t6.msgt_deallocate = 1;
	osend[0] = osend[1] = a;
	osend[2] = MACH_PORT_NULL;
	set_type(&m.t7, MACH_MSG_TYPE_COPY_SEND, 32, 3);
	m.t7.msgt_inline = 0;
	m.osend = (vm_offset_t)osend;
	osonce[0] = osonce[1] = b;
	set_type(&m.t8, MACH_MSG_TYPE_MAKE_SEND_ONCE, 32, 2);
	m.t8.msgt_inline = 0;
	m.osonce = (vm_offset_t)osonce;
	orecv[0] = x2;
	orecv[1] = MACH_PORT_NULL;
	set_type(&m.t9, MACH_MSG_TYPE_MOVE_RECEIVE, 32, 2);
	m.t9.msgt_inline = 0;
	m.orecv = (vm_offset_t)orecv;
	set_type(&m.t10, MACH_MSG_TYPE_PORT_NAME, 32, 2);
	m.pname[0] = a;
	m.pname[1] = b;
	assert_kr(send_msg(&m, sizeof(m)), MACH_MSG_SUCCESS);
	assert_kr(recv_msg(&rm, sizeof(rm), d), MACH_MSG_SUCCESS);
	assert_int_equal(mvm_test_refs(a, MACH_PORT_RIGHT_SEND), 4);
	assert_int_equal(mvm_test_status(a).mps_sorights, 1);
	assert_int_equal(mvm_test_status(b).mps_sorights, 2);
	assert_int_equal(rm.t3.msgtl_name, MACH_MSG_TYPE_PORT_RECEIVE);
	assert_int_equal(rm.t9.msgt_name, MACH_MSG_TYPE_PORT_RECEIVE);
	assert_int_equal(rm.t10.msgt_name, MACH_MSG_TYPE_PORT_NAME);
	assert_int_equal(rm.pname[0], a);
	assert_int_equal(rm.empty, 0);
	assert_true(vm_bytes() > base);
	x1 = rm.recv[0];
	x2 = ((mach_port_t *)rm.orecv)[0];
	assert_int_equal(mvm_test_type(x1), MACH_PORT_TYPE_RECEIVE);
	assert_int_equal(mvm_test_type(x2), MACH_PORT_TYPE_RECEIVE);
	/* x2 carries a port-destroyed request: its receive right goes to n, not away. */
	assert_kr(mach_port_request_notification(SELF, x2, MACH_NOTIFY_PORT_DESTROYED, 0, n,
	    MACH_MSG_TYPE_MAKE_SEND_ONCE, &prev), KERN_SUCCESS);

	mach_msg_destroy(&rm.h);
	assert_int_equal(mvm_test_refs(a, MACH_PORT_RIGHT_SEND), 1);
	assert_int_equal(mvm_test_type(x1), 0);
	assert_int_equal(mvm_test_type(x2), 0);
	assert_int_equal(vm_bytes(), base);
	/* Send-once notifications: a (1), b (2), r (the reply). */
	assert_int_equal(mvm_test_status(a).mps_msgcount, 1);
	assert_int_equal(mvm_test_status(b).mps_msgcount, 2);
	assert_int_equal(mvm_test_status(r).mps_msgcount, 1);

	/* A received port-destroyed notification carries a receive right: destroying the
	 * notification destroys the port. */
	assert_kr(recv_msg(&buf, sizeof(buf), n), MACH_MSG_SUCCESS);
	assert_int_equal(buf.h.msgh_id, MACH_NOTIFY_PORT_DESTROYED);
	assert_true(buf.h.msgh_bits & MACH_MSGH_BITS_COMPLEX);
	assert_int_equal(mvm_test_type(buf.pd.not_port), MACH_PORT_TYPE_RECEIVE);
	mvm_ipc_stats(&st1);
	mach_msg_destroy(&buf.h);
	assert_int_equal(mvm_test_type(buf.pd.not_port), 0);
	mvm_ipc_stats(&st0);
	assert_int_equal(st0.ports, st1.ports - 1);
	/* Received send-once notifications: nothing to release. */
	for (int i = 0; i < 2; i++) {
		assert_kr(recv_msg(&buf, sizeof(buf), b), MACH_MSG_SUCCESS);
		mach_msg_destroy(&buf.h);
	}
	assert_int_equal(mvm_test_status(b).mps_sorights, 0);

	destroy(d);
	destroy(a);
	destroy(b);
	destroy(r);
	destroy(n);
	MVM_TEST_QUIESCENT();
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_server_routine_reply, clean_space),
		cmocka_unit_test_teardown(test_server_no_reply, clean_space),
		cmocka_unit_test_teardown(test_server_error_destroys_request, clean_space),
		cmocka_unit_test_teardown(test_server_bad_id, clean_space),
		cmocka_unit_test_teardown(test_server_grows_buffer, clean_space),
		cmocka_unit_test_teardown(test_server_reply_not_sent, clean_space),
		cmocka_unit_test_teardown(test_server_returns_when_port_destroyed, clean_space),
		cmocka_unit_test_teardown(test_mig_reply_port, clean_space),
		cmocka_unit_test_teardown(test_msg_destroy_every_kind, clean_space),
	};

	return cmocka_run_group_tests_name("server", tests, NULL, NULL);
}
