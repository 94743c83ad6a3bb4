/*
 * tests/unit/test_msg.c: messages through mach_msg(): inline data of several types and
 * sizes, long-form descriptors, the header a receiver sees for every destination and
 * reply disposition, send and receive in one call, messages to oneself, ports in the
 * body, too-large messages (kept with MACH_RCV_LARGE, destroyed without it), receive
 * timeouts and bad receive names.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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

/* A new send-once right (its own name) to the receive right `p`. */
static mach_port_t
sonce(mach_port_t p)
{
	mach_port_t so = MACH_PORT_NULL;
	mach_msg_type_name_t t = 0;

	assert_kr(mach_port_extract_right(SELF, p, MACH_MSG_TYPE_MAKE_SEND_ONCE, &so, &t),
	    KERN_SUCCESS);
	assert_int_equal(t, MACH_MSG_TYPE_PORT_SEND_ONCE);
	return so;
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

static void
set_long(mach_msg_type_long_t *t, unsigned name, unsigned size, unsigned number)
{
	memset(t, 0, sizeof(*t));
	t->msgtl_header.msgt_inline = 1;
	t->msgtl_header.msgt_longform = 1;
	t->msgtl_name = (unsigned short)name;
	t->msgtl_size = (unsigned short)size;
	t->msgtl_number = number;
}

static void
set_header(mach_msg_header_t *h, mach_msg_bits_t bits, mach_port_t dest, mach_port_t reply,
    mach_msg_id_t id)
{
	h->msgh_bits = bits;
	h->msgh_size = 0; /* ignored on send */
	h->msgh_remote_port = dest;
	h->msgh_local_port = reply;
	h->msgh_seqno = 0;
	h->msgh_id = id;
}

static mach_msg_return_t
send_msg(void *m, mach_msg_size_t size)
{
	return mach_msg(m, MACH_SEND_MSG, size, 0, MACH_PORT_NULL, 0, MACH_PORT_NULL);
}

/* Receive what is already queued (poll). */
static mach_msg_return_t
recv_msg(void *m, mach_msg_size_t size, mach_port_t port)
{
	return mach_msg(m, MACH_RCV_MSG | MACH_RCV_TIMEOUT, 0, size, port, 0, MACH_PORT_NULL);
}

/* Send a header-only message with MAKE_SEND to `dest`. */
static void
send_simple(mach_port_t dest, mach_msg_id_t id)
{
	mach_msg_header_t h;

	set_header(&h, MACH_MSGH_BITS(MACH_MSG_TYPE_MAKE_SEND, 0), dest, MACH_PORT_NULL, id);
	assert_kr(send_msg(&h, sizeof(h)), MACH_MSG_SUCCESS);
}

static uint64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void
destroy(mach_port_t name)
{
	assert_kr(mach_port_destroy(SELF, name), KERN_SUCCESS);
}

/* After each test, even a failed one: destroy every name so that failures do not cascade. */
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
		(void)mach_port_destroy(SELF, names[i]);
	(void)vm_deallocate(SELF, (vm_address_t)names, (n ? n : 1) * sizeof(*names));
	(void)vm_deallocate(SELF, (vm_address_t)types, (nt ? nt : 1) * sizeof(*types));
	return 0;
}

/* ---- simple messages --------------------------------------------------------------- */

static void
test_header_only(void **state)
{
	mach_port_t d = rcv_port();
	mach_msg_header_t h;
	union {
		mach_msg_header_t h;
		char buf[256];
	} r;

	(void)state;
	set_header(&h, MACH_MSGH_BITS(MACH_MSG_TYPE_MAKE_SEND, 0), d, MACH_PORT_NULL, 1234);
	h.msgh_size = 9999; /* must be ignored */
	assert_kr(send_msg(&h, sizeof(h)), MACH_MSG_SUCCESS);
	assert_int_equal(mvm_test_status(d).mps_msgcount, 1);
	assert_true(mvm_test_status(d).mps_srights); /* the send right travels in the message */

	memset(&r, 0xa5, sizeof(r));
	assert_kr(recv_msg(&r, sizeof(r), d), MACH_MSG_SUCCESS);
	assert_int_equal(r.h.msgh_size, sizeof(mach_msg_header_t));
	assert_int_equal(r.h.msgh_id, 1234);
	assert_int_equal(r.h.msgh_bits, MACH_MSGH_BITS(0, MACH_MSG_TYPE_PORT_SEND));
	assert_int_equal(r.h.msgh_local_port, d);
	assert_int_equal(r.h.msgh_remote_port, MACH_PORT_NULL);
	assert_int_equal(r.h.msgh_seqno, 0);
	/* Only the message's bytes are written. */
	assert_int_equal((unsigned char)r.buf[sizeof(mach_msg_header_t)], 0xa5);
	/* The destination right was consumed by the delivery. */
	assert_false(mvm_test_status(d).mps_srights);
	assert_int_equal(mvm_test_status(d).mps_msgcount, 0);
	assert_int_equal(mvm_test_status(d).mps_mscount, 1);

	/* Sequence numbers count every dequeued message. */
	for (int i = 0; i < 3; i++)
		send_simple(d, 10 + i);
	for (int i = 0; i < 3; i++) {
		assert_kr(recv_msg(&r, sizeof(r), d), MACH_MSG_SUCCESS);
		assert_int_equal(r.h.msgh_id, 10 + i);
		assert_int_equal(r.h.msgh_seqno, 1 + i);
	}
	/* They wrap at 2^32. */
	assert_kr(mach_port_set_seqno(SELF, d, 0xffffffffu), KERN_SUCCESS);
	send_simple(d, 1);
	send_simple(d, 2);
	assert_kr(recv_msg(&r, sizeof(r), d), MACH_MSG_SUCCESS);
	assert_int_equal(r.h.msgh_seqno, 0xffffffffu);
	assert_kr(recv_msg(&r, sizeof(r), d), MACH_MSG_SUCCESS);
	assert_int_equal(r.h.msgh_seqno, 0);

	/* msgh_id takes any value, negative included. */
	send_simple(d, -7);
	assert_kr(recv_msg(&r, sizeof(r), d), MACH_MSG_SUCCESS);
	assert_int_equal(r.h.msgh_id, -7);

	destroy(d);
	MVM_TEST_QUIESCENT();
}

struct typed_msg {
	mach_msg_header_t h;
	mach_msg_type_t t_i32;
	int32_t i32[3];
	mach_msg_type_t t_i16;
	int16_t i16[3];
	mach_msg_type_t t_i8;
	uint8_t i8[5];
	mach_msg_type_t t_char;
	char chars[11];
	mach_msg_type_t t_i64;
	int64_t i64[2];
	mach_msg_type_t t_real;
	double real[1];
	mach_msg_type_t t_bits;
	uint8_t bits[2];
	mach_msg_type_t t_str;
	char str[16];
	mach_msg_type_t t_empty;
	mach_msg_type_long_t t_long;
	int32_t lng[5];
	mach_msg_type_long_t t_long16;
	int16_t lng16[1];
};

static void
test_inline_types(void **state)
{
	mach_port_t d = rcv_port();
	struct typed_msg m, r;

	(void)state;
	memset(&m, 0, sizeof(m));
	set_header(&m.h, MACH_MSGH_BITS_COMPLEX | MACH_MSGH_BITS(MACH_MSG_TYPE_MAKE_SEND, 0), d,
	    MACH_PORT_NULL, 77);
	set_type(&m.t_i32, MACH_MSG_TYPE_INTEGER_32, 32, 3);
	m.i32[0] = -1;
	m.i32[1] = 0x12345678;
	m.i32[2] = INT32_MIN;
	set_type(&m.t_i16, MACH_MSG_TYPE_INTEGER_16, 16, 3);
	m.i16[0] = -2;
	m.i16[1] = 0x1234;
	m.i16[2] = INT16_MAX;
	set_type(&m.t_i8, MACH_MSG_TYPE_INTEGER_8, 8, 5);
	memcpy(m.i8, "\x01\x02\x03\xfe\xff", 5);
	set_type(&m.t_char, MACH_MSG_TYPE_CHAR, 8, 11);
	memcpy(m.chars, "hello world", 11);
	set_type(&m.t_i64, MACH_MSG_TYPE_INTEGER_64, 64, 2);
	m.i64[0] = INT64_MIN;
	m.i64[1] = 0x0123456789abcdefLL;
	set_type(&m.t_real, MACH_MSG_TYPE_REAL, 64, 1);
	m.real[0] = 3.25;
	set_type(&m.t_bits, MACH_MSG_TYPE_BIT, 1, 13);
	m.bits[0] = 0xa5;
	m.bits[1] = 0x1f;
	set_type(&m.t_str, MACH_MSG_TYPE_STRING_C, 8 * 16, 1);
	strcpy(m.str, "a C string");
	set_type(&m.t_empty, MACH_MSG_TYPE_INTEGER_32, 32, 0);
	set_long(&m.t_long, MACH_MSG_TYPE_INTEGER_32, 32, 5);
	for (int i = 0; i < 5; i++)
		m.lng[i] = i * 1000 - 2;
	set_long(&m.t_long16, MACH_MSG_TYPE_INTEGER_16, 16, 1);
	m.lng16[0] = 4242;

	assert_kr(send_msg(&m, sizeof(m)), MACH_MSG_SUCCESS);
	memset(&r, 0x5a, sizeof(r));
	assert_kr(recv_msg(&r, sizeof(r), d), MACH_MSG_SUCCESS);
	assert_int_equal(r.h.msgh_size, sizeof(m));
	assert_int_equal(r.h.msgh_id, 77);
	assert_int_equal(r.h.msgh_bits,
	    MACH_MSGH_BITS_COMPLEX | MACH_MSGH_BITS(0, MACH_MSG_TYPE_PORT_SEND));
	/* The body arrives byte for byte (descriptors and padding included). */
	assert_memory_equal((char *)&r + sizeof(r.h), (char *)&m + sizeof(m.h),
	    sizeof(m) - sizeof(m.h));

	/* Without MACH_MSGH_BITS_COMPLEX the body is opaque bytes, never parsed. */
	memset(&m.t_i32, 0xff, sizeof(m) - sizeof(m.h));
	m.h.msgh_bits = MACH_MSGH_BITS(MACH_MSG_TYPE_MAKE_SEND, 0);
	assert_kr(send_msg(&m, sizeof(m)), MACH_MSG_SUCCESS);
	assert_kr(recv_msg(&r, sizeof(r), d), MACH_MSG_SUCCESS);
	assert_int_equal(r.h.msgh_bits, MACH_MSGH_BITS(0, MACH_MSG_TYPE_PORT_SEND));
	assert_memory_equal((char *)&r + sizeof(r.h), (char *)&m + sizeof(m.h),
	    sizeof(m) - sizeof(m.h));

	destroy(d);
	MVM_TEST_QUIESCENT();
}

/* Inline byte arrays of many sizes, short and long form. */
static void
test_inline_sizes(void **state)
{
	static const uint32_t sizes[] = { 0, 1, 3, 7, 8, 9, 4095, 4096, 65537, 1u << 20 };
	mach_port_t d = rcv_port();

	(void)state;
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		for (int longform = 0; longform < 2; longform++) {
			uint32_t n = sizes[i];
			size_t desc = longform ? sizeof(mach_msg_type_long_t) : sizeof(mach_msg_type_t);
			size_t size = sizeof(mach_msg_header_t) + desc + ((n + 7) & ~7u);
			mach_msg_header_t *m, *r;
			uint8_t *data;

			if (!longform && n > 4095)
				continue; /* msgt_number has 12 bits */
			m = calloc(1, size);
			r = calloc(1, size);
			assert_non_null(m);
			assert_non_null(r);
			set_header(m, MACH_MSGH_BITS_COMPLEX | MACH_MSGH_BITS(MACH_MSG_TYPE_MAKE_SEND, 0),
			    d, MACH_PORT_NULL, (mach_msg_id_t)n);
			if (longform)
				set_long((mach_msg_type_long_t *)(m + 1), MACH_MSG_TYPE_BYTE, 8, n);
			else
				set_type((mach_msg_type_t *)(m + 1), MACH_MSG_TYPE_BYTE, 8, n);
			data = (uint8_t *)(m + 1) + desc;
			for (uint32_t j = 0; j < n; j++)
				data[j] = (uint8_t)(j * 7 + n);
			assert_kr(send_msg(m, (mach_msg_size_t)size), MACH_MSG_SUCCESS);
			/* One byte too little does not receive it; exactly enough does. */
			assert_kr(mach_msg(r, MACH_RCV_MSG | MACH_RCV_TIMEOUT | MACH_RCV_LARGE, 0,
			    (mach_msg_size_t)size - 1, d, 0, MACH_PORT_NULL), MACH_RCV_TOO_LARGE);
			assert_int_equal(r->msgh_size, size);
			assert_kr(recv_msg(r, (mach_msg_size_t)size, d), MACH_MSG_SUCCESS);
			assert_int_equal(r->msgh_size, size);
			assert_int_equal(r->msgh_id, (mach_msg_id_t)n);
			assert_memory_equal(r + 1, m + 1, size - sizeof(*m));
			free(m);
			free(r);
		}
	}
	destroy(d);
	MVM_TEST_QUIESCENT();
}

/* ---- header translation --------------------------------------------------------------- */

struct reply_case {
	int kind; /* 0 none, 1 dead, 2 a right of the reply port */
	mach_msg_type_name_t disp;
};

static void
check_one_disposition(mach_msg_type_name_t ddisp, const struct reply_case *rc)
{
	mach_port_t d = rcv_port(), rp = rcv_port();
	mach_port_t dname = d, rname = MACH_PORT_NULL, remote;
	mach_msg_type_name_t dtype = (ddisp == MACH_MSG_TYPE_MAKE_SEND_ONCE ||
	    ddisp == MACH_MSG_TYPE_MOVE_SEND_ONCE) ? MACH_MSG_TYPE_PORT_SEND_ONCE :
	    MACH_MSG_TYPE_PORT_SEND;
	mach_msg_type_name_t rtype = 0;
	mach_msg_header_t h, r;

	if (ddisp == MACH_MSG_TYPE_COPY_SEND || ddisp == MACH_MSG_TYPE_MOVE_SEND)
		add_send(d);
	else if (ddisp == MACH_MSG_TYPE_MOVE_SEND_ONCE)
		dname = sonce(d);
	if (rc->kind == 1) {
		rname = MACH_PORT_DEAD;
	} else if (rc->kind == 2) {
		rname = rp;
		if (rc->disp == MACH_MSG_TYPE_COPY_SEND || rc->disp == MACH_MSG_TYPE_MOVE_SEND)
			add_send(rp);
		else if (rc->disp == MACH_MSG_TYPE_MOVE_SEND_ONCE)
			rname = sonce(rp);
	}
	if (rc->kind != 0)
		rtype = (rc->disp == MACH_MSG_TYPE_MAKE_SEND_ONCE ||
		    rc->disp == MACH_MSG_TYPE_MOVE_SEND_ONCE) ? MACH_MSG_TYPE_PORT_SEND_ONCE :
		    MACH_MSG_TYPE_PORT_SEND;

	set_header(&h, MACH_MSGH_BITS(ddisp, rc->disp), dname, rname, 4321);
	assert_kr(send_msg(&h, sizeof(h)), MACH_MSG_SUCCESS);

	/* What the sender has left. */
	switch (ddisp) {
	case MACH_MSG_TYPE_COPY_SEND:
		assert_int_equal(mvm_test_refs(d, MACH_PORT_RIGHT_SEND), 1);
		break;
	case MACH_MSG_TYPE_MOVE_SEND:
		assert_int_equal(mvm_test_type(d), MACH_PORT_TYPE_RECEIVE);
		break;
	case MACH_MSG_TYPE_MOVE_SEND_ONCE:
		assert_int_equal(mvm_test_type(dname), 0);
		break;
	default:
		assert_int_equal(mvm_test_type(d), MACH_PORT_TYPE_RECEIVE);
		break;
	}
	if (rc->kind == 2) {
		if (rc->disp == MACH_MSG_TYPE_COPY_SEND)
			assert_int_equal(mvm_test_refs(rp, MACH_PORT_RIGHT_SEND), 1);
		else if (rc->disp == MACH_MSG_TYPE_MOVE_SEND_ONCE)
			assert_int_equal(mvm_test_type(rname), 0);
		else
			assert_int_equal(mvm_test_type(rp), MACH_PORT_TYPE_RECEIVE);
	}
	assert_int_equal(mvm_test_status(d).mps_msgcount, 1);

	memset(&r, 0xee, sizeof(r));
	assert_kr(recv_msg(&r, sizeof(r), d), MACH_MSG_SUCCESS);
	assert_int_equal(r.msgh_size, sizeof(h));
	assert_int_equal(r.msgh_id, 4321);
	assert_int_equal(r.msgh_seqno, 0);
	assert_int_equal(r.msgh_local_port, d);
	assert_int_equal(MACH_MSGH_BITS_LOCAL(r.msgh_bits), dtype);
	assert_int_equal(MACH_MSGH_BITS_REMOTE(r.msgh_bits), rtype);
	assert_int_equal(MACH_MSGH_BITS_OTHER(r.msgh_bits), 0);
	remote = r.msgh_remote_port;
	switch (rc->kind) {
	case 0:
		assert_int_equal(remote, MACH_PORT_NULL);
		break;
	case 1:
		assert_int_equal(remote, MACH_PORT_DEAD);
		break;
	default:
		if (rtype == MACH_MSG_TYPE_PORT_SEND) {
			/* A send right to a port whose receive right we hold: same name. */
			assert_int_equal(remote, rp);
			assert_int_equal(mvm_test_type(rp), MACH_PORT_TYPE_SEND_RECEIVE);
			assert_int_equal(mvm_test_refs(rp, MACH_PORT_RIGHT_SEND),
			    rc->disp == MACH_MSG_TYPE_COPY_SEND ? 2 : 1);
		} else {
			assert_true(MACH_PORT_VALID(remote));
			assert_int_not_equal(remote, rp);
			assert_int_equal(mvm_test_type(remote), MACH_PORT_TYPE_SEND_ONCE);
			assert_int_equal(mvm_test_status(rp).mps_sorights, 1);
			assert_kr(mach_port_deallocate(SELF, remote), KERN_SUCCESS);
		}
		break;
	}
	/* The destination right was used up by the delivery. */
	assert_int_equal(mvm_test_status(d).mps_sorights, 0);
	assert_int_equal(mvm_test_status(d).mps_srights, ddisp == MACH_MSG_TYPE_COPY_SEND);
	assert_int_equal(mvm_test_status(d).mps_mscount, dtype == MACH_MSG_TYPE_PORT_SEND ? 1 : 0);

	destroy(d);
	destroy(rp); /* with a send-once notification queued, if any */
	MVM_TEST_QUIESCENT();
}

static void
test_header_dispositions(void **state)
{
	static const mach_msg_type_name_t dests[] = {
		MACH_MSG_TYPE_COPY_SEND, MACH_MSG_TYPE_MAKE_SEND, MACH_MSG_TYPE_MOVE_SEND,
		MACH_MSG_TYPE_MAKE_SEND_ONCE, MACH_MSG_TYPE_MOVE_SEND_ONCE,
	};
	static const struct reply_case replies[] = {
		{ 0, 0 },
		{ 1, MACH_MSG_TYPE_COPY_SEND },
		{ 1, MACH_MSG_TYPE_MOVE_SEND },
		{ 1, MACH_MSG_TYPE_MAKE_SEND },
		{ 1, MACH_MSG_TYPE_MOVE_SEND_ONCE },
		{ 1, MACH_MSG_TYPE_MAKE_SEND_ONCE },
		{ 2, MACH_MSG_TYPE_COPY_SEND },
		{ 2, MACH_MSG_TYPE_MAKE_SEND },
		{ 2, MACH_MSG_TYPE_MOVE_SEND },
		{ 2, MACH_MSG_TYPE_MAKE_SEND_ONCE },
		{ 2, MACH_MSG_TYPE_MOVE_SEND_ONCE },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(dests) / sizeof(dests[0]); i++)
		for (size_t j = 0; j < sizeof(replies) / sizeof(replies[0]); j++) {
			print_message("dest %u reply kind %d disp %u\n", dests[i], replies[j].kind,
			    replies[j].disp);
			check_one_disposition(dests[i], &replies[j]);
		}
	MVM_TEST_QUIESCENT();
}

/* A reply disposition with a null reply name: no reply right, remote bits 0. */
static void
test_null_reply_with_disposition(void **state)
{
	mach_port_t d = rcv_port();
	mach_msg_header_t h;

	(void)state;
	set_header(&h, MACH_MSGH_BITS(MACH_MSG_TYPE_MAKE_SEND, MACH_MSG_TYPE_MAKE_SEND_ONCE), d,
	    MACH_PORT_NULL, 1);
	assert_kr(send_msg(&h, sizeof(h)), MACH_MSG_SUCCESS);
	assert_kr(recv_msg(&h, sizeof(h), d), MACH_MSG_SUCCESS);
	assert_int_equal(h.msgh_remote_port, MACH_PORT_NULL);
	assert_int_equal(h.msgh_bits, MACH_MSGH_BITS(0, MACH_MSG_TYPE_PORT_SEND));
	destroy(d);
	MVM_TEST_QUIESCENT();
}

/* Destination and reply under the same name. */
static void
test_message_to_self(void **state)
{
	mach_port_t d = rcv_port();
	mach_msg_header_t h;

	(void)state;
	/* MAKE_SEND dest, MAKE_SEND_ONCE reply: the reply is a new send-once name. */
	set_header(&h, MACH_MSGH_BITS(MACH_MSG_TYPE_MAKE_SEND, MACH_MSG_TYPE_MAKE_SEND_ONCE), d, d, 1);
	assert_kr(send_msg(&h, sizeof(h)), MACH_MSG_SUCCESS);
	assert_kr(recv_msg(&h, sizeof(h), d), MACH_MSG_SUCCESS);
	assert_int_equal(h.msgh_local_port, d);
	assert_int_not_equal(h.msgh_remote_port, d);
	assert_int_equal(h.msgh_bits,
	    MACH_MSGH_BITS(MACH_MSG_TYPE_PORT_SEND_ONCE, MACH_MSG_TYPE_PORT_SEND));
	assert_int_equal(mvm_test_type(h.msgh_remote_port), MACH_PORT_TYPE_SEND_ONCE);
	/* Answer through it: the reply comes back to d. */
	{
		mach_port_t so = h.msgh_remote_port;

		set_header(&h, MACH_MSGH_BITS(MACH_MSG_TYPE_MOVE_SEND_ONCE, 0), so, MACH_PORT_NULL, 2);
		assert_kr(send_msg(&h, sizeof(h)), MACH_MSG_SUCCESS);
		assert_int_equal(mvm_test_type(so), 0);
		assert_kr(recv_msg(&h, sizeof(h), d), MACH_MSG_SUCCESS);
		assert_int_equal(h.msgh_id, 2);
		assert_int_equal(h.msgh_bits, MACH_MSGH_BITS(0, MACH_MSG_TYPE_PORT_SEND_ONCE));
		assert_int_equal(h.msgh_seqno, 1);
		assert_int_equal(mvm_test_status(d).mps_sorights, 0);
	}

	/* MAKE_SEND_ONCE dest, MAKE_SEND reply: the reply merges into d's name. */
	set_header(&h, MACH_MSGH_BITS(MACH_MSG_TYPE_MAKE_SEND_ONCE, MACH_MSG_TYPE_MAKE_SEND), d, d, 3);
	assert_kr(send_msg(&h, sizeof(h)), MACH_MSG_SUCCESS);
	assert_kr(recv_msg(&h, sizeof(h), d), MACH_MSG_SUCCESS);
	assert_int_equal(h.msgh_remote_port, d);
	assert_int_equal(h.msgh_local_port, d);
	assert_int_equal(h.msgh_bits,
	    MACH_MSGH_BITS(MACH_MSG_TYPE_PORT_SEND, MACH_MSG_TYPE_PORT_SEND_ONCE));
	assert_int_equal(mvm_test_refs(d, MACH_PORT_RIGHT_SEND), 1);

	/* COPY_SEND dest and MOVE_SEND reply of the same name (2 urefs): one is used. */
	add_send(d); /* 2 urefs */
	set_header(&h, MACH_MSGH_BITS(MACH_MSG_TYPE_COPY_SEND, MACH_MSG_TYPE_MOVE_SEND), d, d, 4);
	assert_kr(send_msg(&h, sizeof(h)), MACH_MSG_SUCCESS);
	assert_int_equal(mvm_test_refs(d, MACH_PORT_RIGHT_SEND), 1);
	assert_kr(recv_msg(&h, sizeof(h), d), MACH_MSG_SUCCESS);
	assert_int_equal(h.msgh_remote_port, d);
	assert_int_equal(mvm_test_refs(d, MACH_PORT_RIGHT_SEND), 2);

	/* MOVE_SEND dest and MOVE_SEND reply with 2 urefs: both go, then come back. */
	set_header(&h, MACH_MSGH_BITS(MACH_MSG_TYPE_MOVE_SEND, MACH_MSG_TYPE_MOVE_SEND), d, d, 5);
	assert_kr(send_msg(&h, sizeof(h)), MACH_MSG_SUCCESS);
	assert_int_equal(mvm_test_type(d), MACH_PORT_TYPE_RECEIVE);
	assert_kr(recv_msg(&h, sizeof(h), d), MACH_MSG_SUCCESS);
	assert_int_equal(h.msgh_remote_port, d);
	assert_int_equal(mvm_test_refs(d, MACH_PORT_RIGHT_SEND), 1);
	assert_true(mvm_test_status(d).mps_srights);

	destroy(d);
	MVM_TEST_QUIESCENT();
}

/* ---- send and receive in one call ----------------------------------------------------- */

struct rpc_msg {
	mach_msg_header_t h;
	mach_msg_type_t t;
	int32_t v;
};

static void
init_rpc(struct rpc_msg *m, mach_msg_bits_t bits, mach_port_t dest, mach_port_t reply,
    mach_msg_id_t id, int32_t v)
{
	memset(m, 0, sizeof(*m));
	set_header(&m->h, MACH_MSGH_BITS_COMPLEX | bits, dest, reply, id);
	set_type(&m->t, MACH_MSG_TYPE_INTEGER_32, 32, 1);
	m->v = v;
}

static void *
rpc_server(void *arg)
{
	mach_port_t s = *(mach_port_t *)arg;
	struct rpc_msg m;
	mach_msg_return_t mr;

	for (int i = 0; i < 3; i++) {
		mr = mach_msg(&m.h, MACH_RCV_MSG | MACH_RCV_TIMEOUT, 0, sizeof(m), s, 10000,
		    MACH_PORT_NULL);
		if (mr != MACH_MSG_SUCCESS)
			return (void *)(intptr_t)mr;
		init_rpc(&m, MACH_MSGH_BITS(MACH_MSG_TYPE_MOVE_SEND_ONCE, 0), m.h.msgh_remote_port,
		    MACH_PORT_NULL, m.h.msgh_id + 100, m.v * 2);
		if ((mr = send_msg(&m, sizeof(m))) != MACH_MSG_SUCCESS)
			return (void *)(intptr_t)mr;
	}
	return NULL;
}

static void
test_send_receive_one_call(void **state)
{
	mach_port_t d = rcv_port(), e = rcv_port(), s = rcv_port(), rp = rcv_port();
	struct rpc_msg m;
	pthread_t th;
	void *ret;

	(void)state;
	/* To oneself: the message sent is the message received. */
	init_rpc(&m, MACH_MSGH_BITS(MACH_MSG_TYPE_MAKE_SEND, 0), d, MACH_PORT_NULL, 9, 99);
	assert_kr(mach_msg(&m.h, MACH_SEND_MSG | MACH_RCV_MSG, sizeof(m), sizeof(m), d, 0,
	    MACH_PORT_NULL), MACH_MSG_SUCCESS);
	assert_int_equal(m.h.msgh_id, 9);
	assert_int_equal(m.v, 99);
	assert_int_equal(m.h.msgh_local_port, d);
	assert_int_equal(m.h.msgh_size, sizeof(m));

	/* Send succeeds, receive on another port times out: the message stays sent. */
	init_rpc(&m, MACH_MSGH_BITS(MACH_MSG_TYPE_MAKE_SEND, 0), d, MACH_PORT_NULL, 10, 1);
	assert_kr(mach_msg(&m.h, MACH_SEND_MSG | MACH_RCV_MSG | MACH_RCV_TIMEOUT, sizeof(m),
	    sizeof(m), e, 0, MACH_PORT_NULL), MACH_RCV_TIMED_OUT);
	assert_int_equal(mvm_test_status(d).mps_msgcount, 1);

	/* Send fails: no receive happens. */
	init_rpc(&m, MACH_MSGH_BITS(MACH_MSG_TYPE_COPY_SEND, 0), d, MACH_PORT_NULL, 11, 2);
	assert_kr(mach_msg(&m.h, MACH_SEND_MSG | MACH_RCV_MSG | MACH_RCV_TIMEOUT, sizeof(m),
	    sizeof(m), d, 0, MACH_PORT_NULL), MACH_SEND_INVALID_DEST);
	assert_int_equal(mvm_test_status(d).mps_msgcount, 1);
	assert_kr(recv_msg(&m, sizeof(m), d), MACH_MSG_SUCCESS);
	assert_int_equal(m.h.msgh_id, 10);

	/* An RPC to a server thread: send the request, wait for the reply on rp. */
	assert_int_equal(pthread_create(&th, NULL, rpc_server, &s), 0);
	for (int i = 0; i < 3; i++) {
		init_rpc(&m, MACH_MSGH_BITS(MACH_MSG_TYPE_MAKE_SEND, MACH_MSG_TYPE_MAKE_SEND_ONCE), s,
		    rp, 500 + i, 21 + i);
		assert_kr(mach_msg(&m.h, MACH_SEND_MSG | MACH_RCV_MSG | MACH_RCV_TIMEOUT, sizeof(m),
		    sizeof(m), rp, 10000, MACH_PORT_NULL), MACH_MSG_SUCCESS);
		assert_int_equal(m.h.msgh_id, 600 + i);
		assert_int_equal(m.v, 2 * (21 + i));
		assert_int_equal(m.h.msgh_local_port, rp);
		assert_int_equal(m.h.msgh_seqno, (mach_port_seqno_t)i);
		assert_int_equal(m.h.msgh_bits, MACH_MSGH_BITS_COMPLEX |
		    MACH_MSGH_BITS(0, MACH_MSG_TYPE_PORT_SEND_ONCE));
	}
	assert_int_equal(pthread_join(th, &ret), 0);
	assert_null(ret);
	assert_int_equal(mvm_test_status(rp).mps_sorights, 0);

	destroy(d);
	destroy(e);
	destroy(s);
	destroy(rp);
	MVM_TEST_QUIESCENT();
}

/* ---- ports in the body ----------------------------------------------------------------- */

struct ports_msg {
	mach_msg_header_t h;
	mach_msg_type_t t1;
	mach_port_t p1[4];   /* MAKE_SEND: a, NULL, DEAD, b */
	mach_msg_type_t t2;
	mach_port_t p2[2];   /* COPY_SEND: a, a */
	mach_msg_type_t t3;
	mach_port_t p3[2];   /* MAKE_SEND_ONCE: a, b */
	mach_msg_type_t t4;
	mach_port_t p4[1];   /* MOVE_RECEIVE: x */
	mach_msg_type_long_t t5;
	mach_port_t p5[2];   /* MOVE_SEND (long form): c, c */
	mach_msg_type_t t6;
	mach_port_t p6[2];   /* MOVE_SEND_ONCE: so, DEAD */
	mach_msg_type_t t7;
	int32_t data;
	mach_msg_type_t t8;
	mach_port_t p8[3];   /* COPY_SEND: NULL, DEAD, NULL */
};

static void
test_body_ports(void **state)
{
	mach_port_t d = rcv_port(), a = rcv_port(), b = rcv_port(), c = rcv_port(), x = rcv_port();
	mach_port_t so = sonce(b), xr;
	struct ports_msg m, r;

	(void)state;
	add_send(a);
	add_send(c);
	add_send(c);
	assert_kr(mach_port_set_seqno(SELF, x, 55), KERN_SUCCESS);
	memset(&m, 0, sizeof(m));
	set_header(&m.h, MACH_MSGH_BITS_COMPLEX | MACH_MSGH_BITS(MACH_MSG_TYPE_MAKE_SEND, 0), d,
	    MACH_PORT_NULL, 3);
	set_type(&m.t1, MACH_MSG_TYPE_MAKE_SEND, 32, 4);
	m.p1[0] = a;
	m.p1[1] = MACH_PORT_NULL;
	m.p1[2] = MACH_PORT_DEAD;
	m.p1[3] = b;
	set_type(&m.t2, MACH_MSG_TYPE_COPY_SEND, 32, 2);
	m.p2[0] = m.p2[1] = a;
	set_type(&m.t3, MACH_MSG_TYPE_MAKE_SEND_ONCE, 32, 2);
	m.p3[0] = a;
	m.p3[1] = b;
	set_type(&m.t4, MACH_MSG_TYPE_MOVE_RECEIVE, 32, 1);
	m.p4[0] = x;
	set_long(&m.t5, MACH_MSG_TYPE_MOVE_SEND, 32, 2);
	m.p5[0] = m.p5[1] = c;
	set_type(&m.t6, MACH_MSG_TYPE_MOVE_SEND_ONCE, 32, 2);
	m.p6[0] = so;
	m.p6[1] = MACH_PORT_DEAD;
	set_type(&m.t7, MACH_MSG_TYPE_INTEGER_32, 32, 1);
	m.data = 0x600d;
	set_type(&m.t8, MACH_MSG_TYPE_COPY_SEND, 32, 3);
	m.p8[0] = MACH_PORT_NULL;
	m.p8[1] = MACH_PORT_DEAD;
	m.p8[2] = MACH_PORT_NULL;

	assert_kr(send_msg(&m, sizeof(m)), MACH_MSG_SUCCESS);
	/* The sender's side: copies and makes take nothing, moves take their rights. */
	assert_int_equal(mvm_test_refs(a, MACH_PORT_RIGHT_SEND), 1);
	assert_int_equal(mvm_test_type(b), MACH_PORT_TYPE_RECEIVE);
	assert_int_equal(mvm_test_type(c), MACH_PORT_TYPE_RECEIVE);
	assert_int_equal(mvm_test_type(x), 0);
	assert_int_equal(mvm_test_type(so), 0);
	assert_int_equal(mvm_test_status(b).mps_sorights, 2);
	assert_int_equal(mvm_test_status(a).mps_mscount, 2); /* insert_right + MAKE_SEND */

	memset(&r, 0, sizeof(r));
	assert_kr(recv_msg(&r, sizeof(r), d), MACH_MSG_SUCCESS);
	assert_int_equal(r.h.msgh_size, sizeof(m));
	/* Received types. */
	assert_int_equal(r.t1.msgt_name, MACH_MSG_TYPE_PORT_SEND);
	assert_int_equal(r.t2.msgt_name, MACH_MSG_TYPE_PORT_SEND);
	assert_int_equal(r.t3.msgt_name, MACH_MSG_TYPE_PORT_SEND_ONCE);
	assert_int_equal(r.t4.msgt_name, MACH_MSG_TYPE_PORT_RECEIVE);
	assert_int_equal(r.t5.msgtl_name, MACH_MSG_TYPE_PORT_SEND);
	assert_true(r.t5.msgtl_header.msgt_longform);
	assert_int_equal(r.t6.msgt_name, MACH_MSG_TYPE_PORT_SEND_ONCE);
	assert_int_equal(r.t7.msgt_name, MACH_MSG_TYPE_INTEGER_32);
	assert_int_equal(r.t8.msgt_name, MACH_MSG_TYPE_PORT_SEND);
	assert_int_equal(r.t1.msgt_number, 4);
	assert_int_equal(r.t1.msgt_size, 32);
	assert_true(r.t1.msgt_inline);
	/* Names. */
	assert_int_equal(r.p1[0], a);
	assert_int_equal(r.p1[1], MACH_PORT_NULL);
	assert_int_equal(r.p1[2], MACH_PORT_DEAD);
	assert_int_equal(r.p1[3], b);
	assert_int_equal(r.p2[0], a);
	assert_int_equal(r.p2[1], a);
	assert_int_equal(mvm_test_refs(a, MACH_PORT_RIGHT_SEND), 4);
	assert_int_equal(mvm_test_refs(b, MACH_PORT_RIGHT_SEND), 1);
	assert_true(MACH_PORT_VALID(r.p3[0]));
	assert_true(MACH_PORT_VALID(r.p3[1]));
	assert_int_not_equal(r.p3[0], r.p3[1]);
	assert_int_equal(mvm_test_type(r.p3[0]), MACH_PORT_TYPE_SEND_ONCE);
	assert_int_equal(mvm_test_type(r.p3[1]), MACH_PORT_TYPE_SEND_ONCE);
	xr = r.p4[0];
	assert_true(MACH_PORT_VALID(xr));
	assert_int_equal(mvm_test_type(xr), MACH_PORT_TYPE_RECEIVE);
	assert_int_equal(mvm_test_status(xr).mps_seqno, 0); /* reset when the receive right moved */
	assert_int_equal(r.p5[0], c);
	assert_int_equal(r.p5[1], c);
	assert_int_equal(mvm_test_refs(c, MACH_PORT_RIGHT_SEND), 2);
	assert_true(MACH_PORT_VALID(r.p6[0]));
	assert_int_equal(mvm_test_type(r.p6[0]), MACH_PORT_TYPE_SEND_ONCE);
	assert_int_equal(r.p6[1], MACH_PORT_DEAD);
	assert_int_equal(r.data, 0x600d);
	assert_int_equal(r.p8[0], MACH_PORT_NULL);
	assert_int_equal(r.p8[1], MACH_PORT_DEAD);
	assert_int_equal(r.p8[2], MACH_PORT_NULL);
	assert_int_equal(mvm_test_status(b).mps_sorights, 2);

	/* mach_msg_destroy gives every right back. */
	mach_msg_destroy(&r.h);
	assert_int_equal(mvm_test_refs(a, MACH_PORT_RIGHT_SEND), 1);
	assert_int_equal(mvm_test_type(b), MACH_PORT_TYPE_RECEIVE);
	assert_int_equal(mvm_test_type(c), MACH_PORT_TYPE_RECEIVE);
	assert_int_equal(mvm_test_type(xr), 0);
	assert_int_equal(mvm_test_type(r.p3[0]), 0);
	assert_int_equal(mvm_test_type(r.p3[1]), 0);
	assert_int_equal(mvm_test_type(r.p6[0]), 0);
	/* The three send-once rights destroyed unused each told their port. */
	assert_int_equal(mvm_test_status(a).mps_msgcount, 1);
	assert_int_equal(mvm_test_status(b).mps_msgcount, 2);
	for (int i = 0; i < 2; i++) {
		/* Each notification carries the send-once right as its destination. */
		assert_int_equal(mvm_test_status(b).mps_sorights, 2 - i);
		assert_kr(recv_msg(&r, sizeof(r), b), MACH_MSG_SUCCESS);
		assert_int_equal(r.h.msgh_id, MACH_NOTIFY_SEND_ONCE);
		assert_int_equal(r.h.msgh_bits, MACH_MSGH_BITS(0, MACH_MSG_TYPE_PORT_SEND_ONCE));
		assert_int_equal(r.h.msgh_size, sizeof(mach_send_once_notification_t));
	}
	assert_int_equal(mvm_test_status(b).mps_sorights, 0);

	destroy(a);
	destroy(b);
	destroy(c);
	destroy(d);
	MVM_TEST_QUIESCENT();
}

/* ---- too large ------------------------------------------------------------------------- */

struct big_msg {
	mach_msg_header_t h;
	mach_msg_type_t tp;
	mach_port_t a;           /* MAKE_SEND */
	mach_msg_type_t tx;
	mach_port_t x;           /* MOVE_RECEIVE */
	mach_msg_type_long_t to;
	vm_offset_t ool;         /* out-of-line bytes */
	mach_msg_type_t td;
	char pad[200];
};

static void
init_big(struct big_msg *m, mach_port_t d, mach_port_t reply, mach_port_t a, mach_port_t x,
    vm_offset_t ool, unsigned ool_len)
{
	memset(m, 0, sizeof(*m));
	set_header(&m->h, MACH_MSGH_BITS_COMPLEX |
	    MACH_MSGH_BITS(MACH_MSG_TYPE_MAKE_SEND, MACH_MSG_TYPE_MAKE_SEND_ONCE), d, reply, 808);
	set_type(&m->tp, MACH_MSG_TYPE_MAKE_SEND, 32, 1);
	m->a = a;
	set_type(&m->tx, MACH_MSG_TYPE_MOVE_RECEIVE, 32, 1);
	m->x = x;
	set_long(&m->to, MACH_MSG_TYPE_BYTE, 8, ool_len);
	m->to.msgtl_header.msgt_inline = 0;
	m->ool = ool;
	set_type(&m->td, MACH_MSG_TYPE_CHAR, 8, sizeof(m->pad));
	memset(m->pad, 'p', sizeof(m->pad));
}

static void
test_too_large_kept(void **state)
{
	mach_port_t d = rcv_port(), rp = rcv_port(), a = rcv_port(), x = rcv_port();
	struct big_msg m, r;
	vm_address_t buf = 0;
	union {
		mach_msg_header_t h;
		char b[64];
	} small;

	(void)state;
	assert_kr(vm_allocate(SELF, &buf, 3 * vm_page_size, TRUE), KERN_SUCCESS);
	memset((void *)buf, 'o', 3 * vm_page_size);
	init_big(&m, d, rp, a, x, buf, (unsigned)(3 * vm_page_size));
	assert_kr(send_msg(&m, sizeof(m)), MACH_MSG_SUCCESS);

	/* With MACH_RCV_LARGE the message stays queued and msgh_size says what it needs. */
	memset(&small, 0, sizeof(small));
	assert_kr(mach_msg(&small.h, MACH_RCV_MSG | MACH_RCV_LARGE | MACH_RCV_TIMEOUT, 0,
	    sizeof(small), d, 0, MACH_PORT_NULL), MACH_RCV_TOO_LARGE);
	assert_int_equal(small.h.msgh_size, sizeof(m));
	assert_int_equal(mvm_test_status(d).mps_msgcount, 1);
	assert_int_equal(mvm_test_status(d).mps_seqno, 0);
	/* Even with a buffer smaller than a header: nothing is written then. */
	small.h.msgh_size = 0x1234;
	assert_kr(mach_msg(&small.h, MACH_RCV_MSG | MACH_RCV_LARGE | MACH_RCV_TIMEOUT, 0,
	    8, d, 0, MACH_PORT_NULL), MACH_RCV_TOO_LARGE);
	assert_int_equal(small.h.msgh_size, 0x1234);
	assert_int_equal(mvm_test_status(d).mps_msgcount, 1);

	/* Then it is received whole, with the first sequence number. */
	assert_kr(recv_msg(&r, sizeof(r), d), MACH_MSG_SUCCESS);
	assert_int_equal(r.h.msgh_seqno, 0);
	assert_int_equal(r.h.msgh_id, 808);
	assert_int_equal(r.a, a);
	assert_int_equal(((char *)r.ool)[0], 'o');
	mach_msg_destroy(&r.h);

	assert_kr(vm_deallocate(SELF, buf, 3 * vm_page_size), KERN_SUCCESS);
	destroy(d);
	destroy(rp); /* holds the send-once notification */
	destroy(a);
	MVM_TEST_QUIESCENT();
}

static void
test_too_large_destroyed(void **state)
{
	mach_port_t d = rcv_port(), rp = rcv_port(), a = rcv_port(), x = rcv_port(),
	    n = rcv_port(), prev = MACH_PORT_NULL;
	struct big_msg m;
	vm_address_t buf = 0;
	struct mvm_ipc_stats before, after;
	union {
		mach_msg_header_t h;
		mach_no_senders_notification_t ns;
		char b[128];
	} r;

	(void)state;
	add_send(x); /* x keeps a send right: it becomes a dead name when x dies */
	assert_kr(vm_allocate(SELF, &buf, 2 * vm_page_size, TRUE), KERN_SUCCESS);
	memset((void *)buf, 'o', 2 * vm_page_size);
	init_big(&m, d, rp, a, x, buf + 5, (unsigned)(2 * vm_page_size - 10));
	mvm_ipc_stats(&before);
	assert_kr(send_msg(&m, sizeof(m)), MACH_MSG_SUCCESS);
	assert_int_equal(mvm_test_type(x), MACH_PORT_TYPE_SEND);
	/* No-senders on a: armed now, with the message's send right the only one. */
	assert_kr(mach_port_request_notification(SELF, a, MACH_NOTIFY_NO_SENDERS, 0, n,
	    MACH_MSG_TYPE_MAKE_SEND_ONCE, &prev), KERN_SUCCESS);
	assert_int_equal(prev, MACH_PORT_NULL);
	assert_int_equal(mvm_test_status(n).mps_msgcount, 0);

	/* Without MACH_RCV_LARGE: dequeued, destroyed, and the header says what it was. */
	memset(&r, 0, sizeof(r));
	assert_kr(mach_msg(&r.h, MACH_RCV_MSG | MACH_RCV_TIMEOUT, 0, sizeof(mach_msg_header_t),
	    d, 0, MACH_PORT_NULL), MACH_RCV_TOO_LARGE);
	assert_int_equal(r.h.msgh_size, sizeof(m));
	assert_int_equal(r.h.msgh_id, 808);
	assert_int_equal(r.h.msgh_seqno, 0);
	assert_int_equal(r.h.msgh_local_port, d);
	assert_int_equal(mvm_test_status(d).mps_msgcount, 0);
	assert_int_equal(mvm_test_status(d).mps_seqno, 1);   /* the sequence number was used */
	assert_false(mvm_test_status(d).mps_srights);        /* the destination right is gone */
	/* The out-of-line copy is freed. */
	mvm_ipc_stats(&after);
	assert_int_equal(after.vm_bytes, before.vm_bytes);
	assert_int_equal(after.kmsgs, before.kmsgs + 2); /* the two notifications */

	/* The reply right (send-once) was destroyed unused: a send-once notification. */
	assert_kr(recv_msg(&r, sizeof(r), rp), MACH_MSG_SUCCESS);
	assert_int_equal(r.h.msgh_id, MACH_NOTIFY_SEND_ONCE);
	assert_int_equal(r.h.msgh_bits, MACH_MSGH_BITS(0, MACH_MSG_TYPE_PORT_SEND_ONCE));
	assert_int_equal(mvm_test_status(rp).mps_sorights, 0);
	/* The body's send right was released: no more senders for a. */
	assert_kr(recv_msg(&r, sizeof(r), n), MACH_MSG_SUCCESS);
	assert_int_equal(r.h.msgh_id, MACH_NOTIFY_NO_SENDERS);
	assert_int_equal(r.ns.not_count, 1);
	assert_false(mvm_test_status(a).mps_srights);
	/* The body's receive right died with it. */
	assert_int_equal(mvm_test_type(x), MACH_PORT_TYPE_DEAD_NAME);

	/* The next message gets the next sequence number. */
	send_simple(d, 1);
	assert_kr(recv_msg(&r, sizeof(r), d), MACH_MSG_SUCCESS);
	assert_int_equal(r.h.msgh_seqno, 1);

	assert_kr(mach_port_deallocate(SELF, x), KERN_SUCCESS);
	assert_kr(vm_deallocate(SELF, buf, 2 * vm_page_size), KERN_SUCCESS);
	destroy(d);
	destroy(rp);
	destroy(a);
	destroy(n);
	MVM_TEST_QUIESCENT();
}

/* ---- receive timeouts and names -------------------------------------------------------- */

struct delayed {
	mach_port_t port;
	unsigned delay_ms;
};

static void *
delayed_send(void *arg)
{
	struct delayed *dl = arg;
	struct timespec ts = { 0, (long)dl->delay_ms * 1000000L };
	mach_msg_header_t h;

	nanosleep(&ts, NULL);
	set_header(&h, MACH_MSGH_BITS(MACH_MSG_TYPE_COPY_SEND, 0), dl->port, MACH_PORT_NULL, 42);
	return (void *)(intptr_t)send_msg(&h, sizeof(h));
}

static void
test_rcv_timeout(void **state)
{
	mach_port_t d = rcv_port();
	mach_msg_header_t h;
	uint64_t t0, dt;
	pthread_t th;
	void *ret;
	struct delayed dl = { d, 10 };

	(void)state;
	/* Timeout 0 polls. */
	t0 = now_ms();
	assert_kr(mach_msg(&h, MACH_RCV_MSG | MACH_RCV_TIMEOUT, 0, sizeof(h), d, 0,
	    MACH_PORT_NULL), MACH_RCV_TIMED_OUT);
	assert_true(now_ms() - t0 < 1000);
	/* Small timeouts wait at least that long. */
	for (unsigned ms = 1; ms <= 25; ms += 12) {
		t0 = now_ms();
		assert_kr(mach_msg(&h, MACH_RCV_MSG | MACH_RCV_TIMEOUT, 0, sizeof(h), d, ms,
		    MACH_PORT_NULL), MACH_RCV_TIMED_OUT);
		dt = now_ms() - t0;
		assert_true(dt + 1 >= ms); /* now_ms() truncates to milliseconds */
		assert_true(dt < 5000);
	}
	/* A queued message is taken at once even with timeout 0. */
	send_simple(d, 5);
	assert_kr(mach_msg(&h, MACH_RCV_MSG | MACH_RCV_TIMEOUT, 0, sizeof(h), d, 0,
	    MACH_PORT_NULL), MACH_MSG_SUCCESS);
	assert_int_equal(h.msgh_id, 5);
	/* A message that arrives while waiting ends the wait. */
	add_send(d);
	assert_int_equal(pthread_create(&th, NULL, delayed_send, &dl), 0);
	assert_kr(mach_msg(&h, MACH_RCV_MSG | MACH_RCV_TIMEOUT, 0, sizeof(h), d, 10000,
	    MACH_PORT_NULL), MACH_MSG_SUCCESS);
	assert_int_equal(h.msgh_id, 42);
	assert_int_equal(pthread_join(th, &ret), 0);
	assert_int_equal((intptr_t)ret, MACH_MSG_SUCCESS);
	/* And without MACH_RCV_TIMEOUT the timeout argument is ignored. */
	assert_int_equal(pthread_create(&th, NULL, delayed_send, &dl), 0);
	assert_kr(mach_msg(&h, MACH_RCV_MSG, 0, sizeof(h), d, 1, MACH_PORT_NULL), MACH_MSG_SUCCESS);
	assert_int_equal(h.msgh_id, 42);
	assert_int_equal(pthread_join(th, &ret), 0);

	destroy(d);
	MVM_TEST_QUIESCENT();
}

static void
test_rcv_invalid_name(void **state)
{
	mach_port_t d = rcv_port(), stale = rcv_port(), dn, set, so;
	mach_msg_header_t h;
	struct mvm_ipc_stats before, after;

	(void)state;
	destroy(stale);
	assert_kr(mach_port_allocate(SELF, MACH_PORT_RIGHT_DEAD_NAME, &dn), KERN_SUCCESS);
	assert_kr(mach_port_allocate(SELF, MACH_PORT_RIGHT_PORT_SET, &set), KERN_SUCCESS);
	so = sonce(d);
	send_simple(d, 1);
	mvm_ipc_stats(&before);

	const mach_port_t bad[] = {
		MACH_PORT_NULL, MACH_PORT_DEAD, stale, dn, so, mach_task_self(),
		MACH_PORT_MAKE(0x7777, 3),
		MACH_PORT_MAKE(MACH_PORT_INDEX(d), MACH_PORT_GEN(d) ^ 0x80),
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_kr(mach_msg(&h, MACH_RCV_MSG | MACH_RCV_TIMEOUT, 0, sizeof(h), bad[i], 0,
		    MACH_PORT_NULL), MACH_RCV_INVALID_NAME);
		/* Also when it would block forever. */
		assert_kr(mach_msg(&h, MACH_RCV_MSG, 0, sizeof(h), bad[i], 0, MACH_PORT_NULL),
		    MACH_RCV_INVALID_NAME);
	}
	/* A member of a set receives only through the set. */
	assert_kr(mach_port_move_member(SELF, d, set), KERN_SUCCESS);
	assert_kr(mach_msg(&h, MACH_RCV_MSG | MACH_RCV_TIMEOUT, 0, sizeof(h), d, 0,
	    MACH_PORT_NULL), MACH_RCV_IN_SET);
	/* Receive notifications are not supported; nothing is dequeued. */
	assert_kr(mach_msg(&h, MACH_RCV_MSG | MACH_RCV_NOTIFY | MACH_RCV_TIMEOUT, 0, sizeof(h),
	    set, 0, MACH_PORT_NULL), MACH_RCV_INVALID_NOTIFY);
	mvm_ipc_stats(&after);
	assert_int_equal(after.msgs_received, before.msgs_received);
	assert_int_equal(after.kmsgs_queued, before.kmsgs_queued);
	assert_kr(mach_msg(&h, MACH_RCV_MSG | MACH_RCV_TIMEOUT, 0, sizeof(h), set, 0,
	    MACH_PORT_NULL), MACH_MSG_SUCCESS);
	assert_int_equal(h.msgh_local_port, d);
	assert_kr(mach_msg(&h, MACH_RCV_MSG | MACH_RCV_TIMEOUT, 0, sizeof(h), set, 0,
	    MACH_PORT_NULL), MACH_RCV_TIMED_OUT);
	/* A null buffer. */
	assert_kr(mach_msg(NULL, MACH_RCV_MSG | MACH_RCV_TIMEOUT, 0, sizeof(h), set, 0,
	    MACH_PORT_NULL), MACH_RCV_INVALID_DATA);
	/* No option at all does nothing. */
	assert_kr(mach_msg(&h, 0, 0, 0, MACH_PORT_NULL, 0, MACH_PORT_NULL), MACH_MSG_SUCCESS);

	assert_kr(mach_port_deallocate(SELF, so), KERN_SUCCESS);
	assert_kr(mach_port_deallocate(SELF, dn), KERN_SUCCESS);
	destroy(d);
	destroy(set);
	MVM_TEST_QUIESCENT();
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_header_only, clean_space),
		cmocka_unit_test_teardown(test_inline_types, clean_space),
		cmocka_unit_test_teardown(test_inline_sizes, clean_space),
		cmocka_unit_test_teardown(test_header_dispositions, clean_space),
		cmocka_unit_test_teardown(test_null_reply_with_disposition, clean_space),
		cmocka_unit_test_teardown(test_message_to_self, clean_space),
		cmocka_unit_test_teardown(test_send_receive_one_call, clean_space),
		cmocka_unit_test_teardown(test_body_ports, clean_space),
		cmocka_unit_test_teardown(test_too_large_kept, clean_space),
		cmocka_unit_test_teardown(test_too_large_destroyed, clean_space),
		cmocka_unit_test_teardown(test_rcv_timeout, clean_space),
		cmocka_unit_test_teardown(test_rcv_invalid_name, clean_space),
	};

	return cmocka_run_group_tests_name("msg", tests, NULL, NULL);
}
