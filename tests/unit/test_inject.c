/*
 * tests/unit/test_inject.c: fault injection through the Linux call table (mvm_sys_inject).
 *
 * Each test sweeps N = 1, 2, ... : it makes the Nth malloc/calloc/realloc/mmap the
 * operation performs fail (once, then in a second pass persistently from the Nth on),
 * and checks that the operation either fails with a proper Mach code and changes
 * nothing, or copes (succeeds); after cleanup nothing may be left (MVM_TEST_QUIESCENT).
 * The sweep ends at the first N the operation no longer reaches, which must succeed.
 *
 * Allocations that happen only when a table is full (the name table, the VM region
 * table) are reached by filling the table first: fill_names() and fill_regions() find
 * the point where the next allocation must grow it.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "mvm_test.h"

#define SELF mach_task_self()
#define SWEEP_MAX 64

static const enum mvm_sys_call mem_calls[] = {
	MVM_SYS_MALLOC, MVM_SYS_CALLOC, MVM_SYS_REALLOC, MVM_SYS_MMAP,
};
#define NCALLS (sizeof(mem_calls) / sizeof(mem_calls[0]))

/* ---- helpers ------------------------------------------------------------------------ */

struct stats {
	uint64_t names, ports, psets, kmsgs, vm_bytes;
};

static struct stats
snap(void)
{
	struct mvm_ipc_stats s;

	mvm_ipc_stats(&s);
	return (struct stats){ s.names, s.ports, s.port_sets, s.kmsgs, s.vm_bytes };
}

static void
assert_same(struct stats a, struct stats b)
{
	assert_int_equal(a.names, b.names);
	assert_int_equal(a.ports, b.ports);
	assert_int_equal(a.psets, b.psets);
	assert_int_equal(a.kmsgs, b.kmsgs);
	assert_int_equal(a.vm_bytes, b.vm_bytes);
}

/* Failures seen per call since the test started: each sweep checks that the calls the
 * operation is known to make were in fact made to fail, so a sweep cannot pass by
 * testing nothing. */
static unsigned failed[MVM_SYS_CALL_COUNT];

static int
reset_failed(void **state)
{
	(void)state;
	memset(failed, 0, sizeof(failed));
	return 0;
}

/* Arm an injection for the operation about to run; return the count to compare. */
static unsigned long
arm(enum mvm_sys_call c, unsigned n, int persist)
{
	unsigned long before = mvm_sys_count(c);

	assert_int_equal(mvm_sys_inject(c, n, ENOMEM, persist), 0);
	return before;
}

/* Disarm; did the operation reach the Nth call? */
static bool
disarm(enum mvm_sys_call c, unsigned n, unsigned long before)
{
	bool hit = mvm_sys_count(c) - before >= n;

	mvm_sys_inject_reset();
	return hit;
}



/*
 * Fill the name table with dead names until the next new name needs the table to grow.
 * Finding the point is itself a test: with realloc failing, mach_port_allocate answers
 * KERN_RESOURCE_SHORTAGE and allocates nothing.
 */
struct filled {
	mach_port_t *names;
	size_t n, cap;
};

static void
fill_names(struct filled *f)
{
	memset(f, 0, sizeof(*f));
	for (;;) {
		mach_port_t x = MACH_PORT_NULL;
		uint64_t before = snap().names;
		unsigned long c = arm(MVM_SYS_REALLOC, 1, 0);
		kern_return_t kr = mach_port_allocate(SELF, MACH_PORT_RIGHT_DEAD_NAME, &x);
		bool hit = disarm(MVM_SYS_REALLOC, 1, c);

		if (hit) {
			assert_kr(kr, KERN_RESOURCE_SHORTAGE);
			assert_int_equal(x, MACH_PORT_NULL);
			assert_int_equal(snap().names, before);
			return;
		}
		assert_kr(kr, KERN_SUCCESS);
		if (f->n == f->cap) {
			f->cap = f->cap ? f->cap * 2 : 256;
			f->names = realloc(f->names, f->cap * sizeof(*f->names));
			assert_non_null(f->names);
		}
		f->names[f->n++] = x;
		assert_true(f->n < (1u << 22));
	}
}

static void
unfill_names(struct filled *f)
{
	for (size_t i = 0; i < f->n; i++)
		assert_kr(mach_port_deallocate(SELF, f->names[i]), KERN_SUCCESS);
	free(f->names);
	memset(f, 0, sizeof(*f));
}

/* ---- mach_port_allocate --------------------------------------------------------------- */

static void
sweep_allocate(mach_port_right_t right, bool full)
{
	for (size_t ci = 0; ci < NCALLS; ci++) {
		enum mvm_sys_call c = mem_calls[ci];

		if (full && c != MVM_SYS_REALLOC)
			continue;

		for (int persist = 0; persist <= 1; persist++) {
			for (unsigned n = 1;; n++) {
				struct filled f = { 0 };
				mach_port_t x = MACH_PORT_NULL;
				struct stats st;
				unsigned long before;
				kern_return_t kr;
				bool hit;

				assert_true(n < SWEEP_MAX);
				if (full)
					fill_names(&f);
				st = snap();
				before = arm(c, n, persist);
				kr = mach_port_allocate(SELF, right, &x);
				hit = disarm(c, n, before);
				if (kr == KERN_SUCCESS) {
					assert_int_equal(mvm_test_type(x), MACH_PORT_TYPE(right));
					assert_kr(mach_port_destroy(SELF, x), KERN_SUCCESS);
				} else {
					assert_true(hit);
					failed[c]++;
					assert_kr(kr, KERN_RESOURCE_SHORTAGE);
					assert_int_equal(x, MACH_PORT_NULL);
					assert_same(snap(), st);
				}
				unfill_names(&f);
				MVM_TEST_QUIESCENT();
				if (full) {
					/* Only the failure: a success would double the table, and the
					 * next fill would take twice as long. */
					assert_true(hit);
					break;
				}
				if (!hit)
					break;
			}
		}
	}
}

static void
test_allocate_receive(void **state)
{
	(void)state;
	sweep_allocate(MACH_PORT_RIGHT_RECEIVE, false);
	sweep_allocate(MACH_PORT_RIGHT_RECEIVE, true);
	assert_true(failed[MVM_SYS_CALLOC] > 0);  /* the port */
	assert_true(failed[MVM_SYS_REALLOC] > 0); /* the name table */
}

static void
test_allocate_port_set(void **state)
{
	(void)state;
	sweep_allocate(MACH_PORT_RIGHT_PORT_SET, false);
	sweep_allocate(MACH_PORT_RIGHT_PORT_SET, true);
	assert_true(failed[MVM_SYS_CALLOC] > 0);
	assert_true(failed[MVM_SYS_REALLOC] > 0);
}

static void
test_allocate_dead_name(void **state)
{
	(void)state;
	sweep_allocate(MACH_PORT_RIGHT_DEAD_NAME, false);
	sweep_allocate(MACH_PORT_RIGHT_DEAD_NAME, true);
	assert_true(failed[MVM_SYS_REALLOC] > 0);
}

/* The other calls that may create a name, on a full table. */
static void
test_name_creating_calls_full_table(void **state)
{
	(void)state;
	for (int which = 0; which < 4; which++) {
		for (int persist = 0; persist <= 1; persist++) {
			for (unsigned n = 1;; n++) {
				struct filled f;
				mach_port_t p = mvm_test_receive(), n2 = mvm_test_receive(), x = MACH_PORT_NULL;
				mach_msg_type_name_t t;
				struct stats st;
				unsigned long before;
				kern_return_t kr = KERN_FAILURE;
				bool hit;

				assert_true(n < SWEEP_MAX);
				fill_names(&f);
				/* Every entry is in use: p, n2 and the filler (index 0 is never one). */
				assert_int_equal(snap().names, f.n + 2);
				st = snap();
				before = arm(MVM_SYS_REALLOC, n, persist);
				switch (which) {
				case 0: /* a send-once right under a new name */
					kr = mach_port_extract_right(SELF, p, MACH_MSG_TYPE_MAKE_SEND_ONCE, &x,
					    &t);
					break;
				case 1: /* a chosen name just past the end of the (full) table */
					x = MACH_PORT_MAKE((mach_port_t)f.n + 3, 1);
					kr = mach_port_allocate_name(SELF, MACH_PORT_RIGHT_DEAD_NAME, x);
					break;
				case 2: /* a request whose previous right needs a name */
					kr = mach_port_request_notification(SELF, p, MACH_NOTIFY_NO_SENDERS,
					    1, n2, MACH_MSG_TYPE_MAKE_SEND_ONCE, &x);
					break;
				case 3: /* insert a send-once right under a chosen name */
					x = MACH_PORT_MAKE((mach_port_t)f.n + 3, 1);
					kr = mach_port_insert_right(SELF, x, p, MACH_MSG_TYPE_MAKE_SEND_ONCE);
					break;
				}
				hit = disarm(MVM_SYS_REALLOC, n, before);
				if (kr != KERN_SUCCESS) {
					assert_true(hit);
					failed[MVM_SYS_REALLOC]++;
					assert_kr(kr, KERN_RESOURCE_SHORTAGE);
					assert_same(snap(), st);
					assert_int_equal(mvm_test_status(p).mps_sorights, 0);
					assert_int_equal(mvm_test_status(n2).mps_sorights, 0);
					assert_false(mvm_test_status(p).mps_nsrequest);
				} else if (which != 2) {
					assert_true(MACH_PORT_VALID(x));
					assert_kr(mach_port_destroy(SELF, x), KERN_SUCCESS);
				}
				unfill_names(&f);
				assert_kr(mach_port_destroy(SELF, p), KERN_SUCCESS);
				assert_kr(mach_port_destroy(SELF, n2), KERN_SUCCESS);
				MVM_TEST_QUIESCENT();
				/* The first failure only: see sweep_allocate(). */
				assert_true(hit);
				assert_true(kr != KERN_SUCCESS);
				break;
			}
		}
	}
	assert_int_equal(failed[MVM_SYS_REALLOC], 8);
}

/* ---- mach_msg send ---------------------------------------------------------------------- */

static void
test_send_simple(void **state)
{
	(void)state;
	for (size_t ci = 0; ci < NCALLS; ci++) {
		enum mvm_sys_call c = mem_calls[ci];

		for (int persist = 0; persist <= 1; persist++) {
			for (unsigned n = 1;; n++) {
				mach_port_t q = mvm_test_port_with_send(), r = mvm_test_receive();
				mach_msg_header_t h;
				mach_msg_return_t mr;
				struct stats st;
				unsigned long before;
				bool hit;

				assert_true(n < SWEEP_MAX);
				memset(&h, 0, sizeof(h));
				h.msgh_bits = MACH_MSGH_BITS(MACH_MSG_TYPE_MOVE_SEND,
				    MACH_MSG_TYPE_MAKE_SEND_ONCE);
				h.msgh_remote_port = q;
				h.msgh_local_port = r;
				h.msgh_id = 500;
				st = snap();
				before = arm(c, n, persist);
				mr = mach_msg(&h, MACH_SEND_MSG | MACH_SEND_TIMEOUT, sizeof(h), 0,
				    MACH_PORT_NULL, 0, MACH_PORT_NULL);
				hit = disarm(c, n, before);
				if (mr == MACH_MSG_SUCCESS) {
					mach_msg_header_t in;

					assert_int_equal(mvm_test_type(q), MACH_PORT_TYPE_RECEIVE);
					assert_kr(mach_msg(&in, MACH_RCV_MSG | MACH_RCV_TIMEOUT, 0, sizeof(in),
					    q, 0, MACH_PORT_NULL), MACH_MSG_SUCCESS);
					assert_int_equal(in.msgh_id, 500);
					mach_msg_destroy(&in);
				} else {
					/* Nothing taken: the destination right, no reply right made. */
					assert_true(hit);
					failed[c]++;
					assert_kr(mr, MACH_SEND_NO_BUFFER);
					assert_same(snap(), st);
					assert_int_equal(mvm_test_type(q), MACH_PORT_TYPE_SEND_RECEIVE);
					assert_int_equal(mvm_test_refs(q, MACH_PORT_RIGHT_SEND), 1);
					assert_int_equal(mvm_test_status(q).mps_msgcount, 0);
					assert_int_equal(mvm_test_status(r).mps_sorights, 0);
				}
				assert_kr(mach_port_destroy(SELF, q), KERN_SUCCESS);
				assert_kr(mach_port_destroy(SELF, r), KERN_SUCCESS);
				MVM_TEST_QUIESCENT();
				if (!hit)
					break;
			}
		}
	}
	assert_true(failed[MVM_SYS_MALLOC] > 0); /* the message */
}

/* A complex message: a moved send right, a moved receive right, out-of-line data
 * (deallocated by the send), an out-of-line port array and inline data. */
#define OOL_COUNT 2000 /* 32-bit words: 8000 bytes, over two pages */
#define OOL_OFFSET 96

struct complex_msg {
	mach_msg_header_t h;
	mach_msg_type_t t_send;
	mach_port_t send;
	mach_msg_type_t t_recv;
	mach_port_t recv;
	mach_msg_type_t t_data;
	uint32_t *data;
	mach_msg_type_t t_ports;
	mach_port_t *ports;
	mach_msg_type_t t_ints;
	int32_t ints[3];
};

struct complex_fixture {
	mach_port_t q, s, m, c;
	vm_address_t region;
	vm_size_t region_len;
	mach_port_t port_array[2];
};

static void
set_type(mach_msg_type_t *t, mach_msg_type_name_t name, unsigned size, unsigned number,
    bool is_inline, bool dealloc)
{
	memset(t, 0, sizeof(*t));
	t->msgt_name = name;
	t->msgt_size = size;
	t->msgt_number = number;
	t->msgt_inline = is_inline;
	t->msgt_deallocate = dealloc;
}

static void
complex_setup(struct complex_fixture *fx, struct complex_msg *m)
{
	uint32_t *data;

	fx->q = mvm_test_port_with_send();
	fx->s = mvm_test_port_with_send();
	fx->m = mvm_test_receive();
	fx->c = mvm_test_port_with_send();
	fx->region_len = 2 * vm_page_size;
	assert_kr(vm_allocate(SELF, &fx->region, fx->region_len, TRUE), KERN_SUCCESS);
	data = (uint32_t *)(fx->region + OOL_OFFSET);
	for (uint32_t i = 0; i < OOL_COUNT; i++)
		data[i] = i * 2654435761u;
	fx->port_array[0] = fx->port_array[1] = fx->c;

	memset(m, 0, sizeof(*m));
	m->h.msgh_bits = MACH_MSGH_BITS(MACH_MSG_TYPE_COPY_SEND, 0) | MACH_MSGH_BITS_COMPLEX;
	m->h.msgh_remote_port = fx->q;
	m->h.msgh_id = 600;
	set_type(&m->t_send, MACH_MSG_TYPE_MOVE_SEND, 32, 1, true, false);
	m->send = fx->s;
	set_type(&m->t_recv, MACH_MSG_TYPE_MOVE_RECEIVE, 32, 1, true, false);
	m->recv = fx->m;
	set_type(&m->t_data, MACH_MSG_TYPE_INTEGER_32, 32, OOL_COUNT, false, true);
	m->data = data;
	set_type(&m->t_ports, MACH_MSG_TYPE_COPY_SEND, 32, 2, false, false);
	m->ports = fx->port_array;
	set_type(&m->t_ints, MACH_MSG_TYPE_INTEGER_32, 32, 3, true, false);
	m->ints[0] = 1;
	m->ints[1] = 2;
	m->ints[2] = 3;
}

static void
complex_check_untouched(struct complex_fixture *fx)
{
	const uint32_t *data = (const uint32_t *)(fx->region + OOL_OFFSET);

	assert_int_equal(mvm_test_type(fx->s), MACH_PORT_TYPE_SEND_RECEIVE);
	assert_int_equal(mvm_test_refs(fx->s, MACH_PORT_RIGHT_SEND), 1);
	assert_int_equal(mvm_test_type(fx->m), MACH_PORT_TYPE_RECEIVE);
	assert_int_equal(mvm_test_refs(fx->c, MACH_PORT_RIGHT_SEND), 1);
	assert_int_equal(mvm_test_status(fx->q).mps_msgcount, 0);
	/* The region to be deallocated by the send is still there, intact. */
	for (uint32_t i = 0; i < OOL_COUNT; i++)
		assert_int_equal(data[i], i * 2654435761u);
}

/* Receive the complex message on fx->q and check every item; destroy what it carries. */
static void
complex_receive(struct complex_fixture *fx)
{
	union {
		struct complex_msg m;
		char buf[1024];
	} u;
	mach_port_t r;

	assert_kr(mach_msg(&u.m.h, MACH_RCV_MSG | MACH_RCV_TIMEOUT, 0, sizeof(u), fx->q, 0,
	    MACH_PORT_NULL), MACH_MSG_SUCCESS);
	assert_int_equal(u.m.h.msgh_id, 600);
	assert_int_equal(u.m.send, fx->s);
	assert_int_equal(mvm_test_type(fx->s), MACH_PORT_TYPE_SEND_RECEIVE);
	r = u.m.recv;
	assert_int_equal(mvm_test_type(r), MACH_PORT_TYPE_RECEIVE);
	assert_int_equal((vm_address_t)u.m.data & (vm_page_size - 1), OOL_OFFSET);
	for (uint32_t i = 0; i < OOL_COUNT; i++)
		assert_int_equal(u.m.data[i], i * 2654435761u);
	assert_int_equal(u.m.ports[0], fx->c);
	assert_int_equal(u.m.ports[1], fx->c);
	assert_int_equal(mvm_test_refs(fx->c, MACH_PORT_RIGHT_SEND), 3);
	assert_int_equal(u.m.ints[2], 3);
	mach_msg_destroy(&u.m.h); /* drops s's send, r's receive, c's two, frees the OOL */
	assert_int_equal(mvm_test_type(fx->s), MACH_PORT_TYPE_RECEIVE);
	assert_int_equal(mvm_test_refs(fx->c, MACH_PORT_RIGHT_SEND), 1);
	assert_int_equal(mvm_test_type(r), 0);
}

static void
complex_cleanup(struct complex_fixture *fx, bool sent)
{
	assert_kr(mach_port_destroy(SELF, fx->q), KERN_SUCCESS);
	assert_kr(mach_port_destroy(SELF, fx->s), KERN_SUCCESS);
	assert_kr(mach_port_destroy(SELF, fx->c), KERN_SUCCESS);
	if (!sent) {
		assert_kr(mach_port_destroy(SELF, fx->m), KERN_SUCCESS);
		assert_kr(vm_deallocate(SELF, fx->region, fx->region_len), KERN_SUCCESS);
	}
}

static void
test_send_complex_ool(void **state)
{
	(void)state;
	for (size_t ci = 0; ci < NCALLS; ci++) {
		enum mvm_sys_call c = mem_calls[ci];

		for (int persist = 0; persist <= 1; persist++) {
			for (unsigned n = 1;; n++) {
				struct complex_fixture fx;
				struct complex_msg m;
				mach_msg_return_t mr;
				struct stats st;
				unsigned long before;
				bool hit;

				assert_true(n < SWEEP_MAX);
				complex_setup(&fx, &m);
				st = snap();
				before = arm(c, n, persist);
				mr = mach_msg(&m.h, MACH_SEND_MSG | MACH_SEND_TIMEOUT, sizeof(m), 0,
				    MACH_PORT_NULL, 0, MACH_PORT_NULL);
				hit = disarm(c, n, before);
				if (mr == MACH_MSG_SUCCESS) {
					assert_int_equal(mvm_test_type(fx.m), 0);
					complex_receive(&fx);
				} else {
					assert_true(hit);
					failed[c]++;
					assert_kr(mr, MACH_SEND_NO_BUFFER);
					assert_same(snap(), st);
					complex_check_untouched(&fx);
				}
				complex_cleanup(&fx, mr == MACH_MSG_SUCCESS);
				MVM_TEST_QUIESCENT();
				if (!hit)
					break;
			}
		}
	}
	assert_true(failed[MVM_SYS_MALLOC] > 0); /* the message */
	assert_true(failed[MVM_SYS_CALLOC] > 0); /* its rights and regions */
	assert_true(failed[MVM_SYS_MMAP] > 0);   /* its out-of-line data */
}

/* ---- receive ----------------------------------------------------------------------- */

/* With room in the name table a receive allocates nothing of its own; a failure can only
 * hit a notification it triggers (here no-senders for q when the message's destination
 * right is consumed), which is then lost, not the receive. */
static void
test_receive(void **state)
{
	(void)state;
	for (size_t ci = 0; ci < NCALLS; ci++) {
		enum mvm_sys_call c = mem_calls[ci];

		for (int persist = 0; persist <= 1; persist++) {
			for (unsigned n = 1;; n++) {
				struct complex_fixture fx;
				struct complex_msg m;
				mach_port_t nport = mvm_test_receive(), prev;
				unsigned long before;
				bool hit;

				assert_true(n < SWEEP_MAX);
				complex_setup(&fx, &m);
				m.h.msgh_bits = MACH_MSGH_BITS(MACH_MSG_TYPE_MOVE_SEND, 0) |
				    MACH_MSGH_BITS_COMPLEX;
				assert_kr(mach_msg(&m.h, MACH_SEND_MSG, sizeof(m), 0, MACH_PORT_NULL, 0,
				    MACH_PORT_NULL), MACH_MSG_SUCCESS);
				assert_kr(mach_port_request_notification(SELF, fx.q,
				    MACH_NOTIFY_NO_SENDERS, 1, nport, MACH_MSG_TYPE_MAKE_SEND_ONCE, &prev),
				    KERN_SUCCESS);
				before = arm(c, n, persist);
				complex_receive(&fx); /* asserts MACH_MSG_SUCCESS */
				hit = disarm(c, n, before);
				/* The notification arrived, or was lost with its right. */
				{
					mach_msg_header_t buf[8];
					mach_msg_return_t mr = mach_msg(buf, MACH_RCV_MSG | MACH_RCV_TIMEOUT, 0,
					    sizeof(buf), nport, 0, MACH_PORT_NULL);

					if (!hit)
						assert_kr(mr, MACH_MSG_SUCCESS);
					if (mr == MACH_MSG_SUCCESS) {
						assert_int_equal(buf[0].msgh_id, MACH_NOTIFY_NO_SENDERS);
					} else {
						assert_kr(mr, MACH_RCV_TIMED_OUT);
						failed[c]++;
					}
				}
				assert_int_equal(mvm_test_status(nport).mps_sorights, 0);
				complex_cleanup(&fx, true);
				assert_kr(mach_port_destroy(SELF, nport), KERN_SUCCESS);
				MVM_TEST_QUIESCENT();
				if (!hit)
					break;
			}
		}
	}
	assert_true(failed[MVM_SYS_MALLOC] > 0); /* the notification, lost */
}

/* With the name table full, a receive that brings new names must grow it. If it cannot,
 * the rights without a name are destroyed and the receive says so:
 * MACH_RCV_HEADER_ERROR or MACH_RCV_BODY_ERROR, with MACH_MSG_IPC_SPACE. */
struct rights_msg {
	mach_msg_header_t h;
	mach_msg_type_t t;
	mach_port_t so;
	mach_msg_type_t t_data;
	uint32_t *data;
};

static void
test_receive_full_table(void **state)
{
	(void)state;
	for (int with_reply = 0; with_reply <= 1; with_reply++) {
		for (int persist = 0; persist <= 1; persist++) {
			for (unsigned n = 1;; n++) {
				mach_port_t q = mvm_test_receive(), p = mvm_test_receive();
				struct filled f;
				struct rights_msg m;
				union {
					struct rights_msg m;
					char buf[256];
				} u;
				vm_address_t region;
				mach_msg_return_t mr;
				unsigned long before;
				bool hit;
				int lost = 0;

				assert_true(n < SWEEP_MAX);
				assert_kr(vm_allocate(SELF, &region, vm_page_size, TRUE), KERN_SUCCESS);
				memset(&m, 0, sizeof(m));
				m.h.msgh_bits = MACH_MSGH_BITS(MACH_MSG_TYPE_MAKE_SEND,
				    with_reply ? MACH_MSG_TYPE_MAKE_SEND_ONCE : 0) | MACH_MSGH_BITS_COMPLEX;
				m.h.msgh_remote_port = q;
				m.h.msgh_local_port = with_reply ? p : MACH_PORT_NULL;
				m.h.msgh_id = 700;
				set_type(&m.t, MACH_MSG_TYPE_MAKE_SEND_ONCE, 32, 1, true, false);
				m.so = p;
				set_type(&m.t_data, MACH_MSG_TYPE_INTEGER_32, 32, 16, false, true);
				m.data = (uint32_t *)region;
				m.data[15] = 0xfeed;
				assert_kr(mach_msg(&m.h, MACH_SEND_MSG, sizeof(m), 0, MACH_PORT_NULL, 0,
				    MACH_PORT_NULL), MACH_MSG_SUCCESS);
				fill_names(&f);

				before = arm(MVM_SYS_REALLOC, n, persist);
				memset(&u, 0, sizeof(u));
				mr = mach_msg(&u.m.h, MACH_RCV_MSG | MACH_RCV_TIMEOUT, 0, sizeof(u), q, 0,
				    MACH_PORT_NULL);
				hit = disarm(MVM_SYS_REALLOC, n, before);

				/* Whatever happened, the message was received: its data arrived. */
				assert_int_equal(u.m.h.msgh_id, 700);
				assert_int_equal(u.m.data[15], 0xfeed);
				if (mr == MACH_MSG_SUCCESS) {
					assert_int_equal(mvm_test_type(u.m.so), MACH_PORT_TYPE_SEND_ONCE);
					if (with_reply)
						assert_int_equal(mvm_test_type(u.m.h.msgh_remote_port),
						    MACH_PORT_TYPE_SEND_ONCE);
				} else {
					assert_true(hit);
					failed[MVM_SYS_REALLOC]++;
					if (mr != (MACH_RCV_BODY_ERROR | MACH_MSG_IPC_SPACE))
						assert_kr(mr, MACH_RCV_HEADER_ERROR | MACH_MSG_IPC_SPACE);
					if (mr == (MACH_RCV_HEADER_ERROR | MACH_MSG_IPC_SPACE)) {
						assert_true(with_reply);
						assert_int_equal(u.m.h.msgh_remote_port, MACH_PORT_NULL);
						lost++;
					}
					if (u.m.so == MACH_PORT_NULL)
						lost++;
					else
						assert_int_equal(mvm_test_type(u.m.so), MACH_PORT_TYPE_SEND_ONCE);
					/* A reply right that got a name is still usable. */
					if (with_reply && MACH_PORT_VALID(u.m.h.msgh_remote_port))
						assert_int_equal(mvm_test_type(u.m.h.msgh_remote_port),
						    MACH_PORT_TYPE_SEND_ONCE);
					assert_true(lost > 0);
				}
				/* Each right destroyed for lack of a name told p so. */
				assert_int_equal(mvm_test_status(p).mps_msgcount, (unsigned)lost);
				mach_msg_destroy(&u.m.h);
				unfill_names(&f);
				assert_kr(mach_port_destroy(SELF, q), KERN_SUCCESS);
				assert_kr(mach_port_destroy(SELF, p), KERN_SUCCESS);
				MVM_TEST_QUIESCENT();
				/* The first realloc only (see sweep_allocate()): once, the receive
				 * copes by growing the table at the next name; persistently, it
				 * fails. */
				assert_true(hit);
				assert_true(persist ? mr != MACH_MSG_SUCCESS : mr == MACH_MSG_SUCCESS);
				break;
			}
		}
	}
	assert_int_equal(failed[MVM_SYS_REALLOC], 2); /* persistent, both cases */
}

/* ---- mach_port_names ------------------------------------------------------------------- */

static void
test_port_names(void **state)
{
	(void)state;
	for (size_t ci = 0; ci < NCALLS; ci++) {
		enum mvm_sys_call c = mem_calls[ci];

		for (int persist = 0; persist <= 1; persist++) {
			for (unsigned n = 1;; n++) {
				mach_port_t p = mvm_test_port_with_send(), s, d;
				mach_port_array_t names = NULL;
				mach_port_type_array_t types = NULL;
				mach_msg_type_number_t nn = 0, nt = 0;
				struct stats st;
				unsigned long before;
				kern_return_t kr;
				bool hit;

				assert_true(n < SWEEP_MAX);
				assert_kr(mach_port_allocate(SELF, MACH_PORT_RIGHT_PORT_SET, &s),
				    KERN_SUCCESS);
				assert_kr(mach_port_allocate(SELF, MACH_PORT_RIGHT_DEAD_NAME, &d),
				    KERN_SUCCESS);
				st = snap();
				before = arm(c, n, persist);
				kr = mach_port_names(SELF, &names, &nn, &types, &nt);
				hit = disarm(c, n, before);
				if (kr == KERN_SUCCESS) {
					assert_int_equal(nn, 3);
					assert_int_equal(nt, 3);
					assert_kr(vm_deallocate(SELF, (vm_address_t)names,
					    nn * sizeof(*names)), KERN_SUCCESS);
					assert_kr(vm_deallocate(SELF, (vm_address_t)types,
					    nt * sizeof(*types)), KERN_SUCCESS);
				} else {
					assert_true(hit);
					failed[c]++;
					assert_kr(kr, KERN_RESOURCE_SHORTAGE);
					assert_null(names);
					assert_null(types);
				}
				assert_same(snap(), st);
				assert_kr(mach_port_destroy(SELF, p), KERN_SUCCESS);
				assert_kr(mach_port_destroy(SELF, s), KERN_SUCCESS);
				assert_kr(mach_port_destroy(SELF, d), KERN_SUCCESS);
				MVM_TEST_QUIESCENT();
				if (!hit)
					break;
			}
		}
	}
	assert_true(failed[MVM_SYS_MMAP] > 0);
}

/* ---- vm_allocate ------------------------------------------------------------------------- */

/* Allocate one-page regions until the next one needs the region table to grow. */
struct regions {
	vm_address_t *addr;
	size_t n, cap;
};

static void
fill_regions(struct regions *r)
{
	memset(r, 0, sizeof(*r));
	for (;;) {
		vm_address_t a = 0;
		uint64_t bytes = snap().vm_bytes;
		unsigned long c = arm(MVM_SYS_REALLOC, 1, 0);
		kern_return_t kr = vm_allocate(SELF, &a, vm_page_size, TRUE);
		bool hit = disarm(MVM_SYS_REALLOC, 1, c);

		if (hit) {
			assert_kr(kr, KERN_RESOURCE_SHORTAGE);
			assert_int_equal(a, 0);
			assert_int_equal(snap().vm_bytes, bytes);
			return;
		}
		assert_kr(kr, KERN_SUCCESS);
		if (r->n == r->cap) {
			r->cap = r->cap ? r->cap * 2 : 256;
			r->addr = realloc(r->addr, r->cap * sizeof(*r->addr));
			assert_non_null(r->addr);
		}
		r->addr[r->n++] = a;
		assert_true(r->n < (1u << 20));
	}
}

static void
unfill_regions(struct regions *r)
{
	for (size_t i = 0; i < r->n; i++)
		assert_kr(vm_deallocate(SELF, r->addr[i], vm_page_size), KERN_SUCCESS);
	free(r->addr);
	memset(r, 0, sizeof(*r));
}

static void
sweep_vm_allocate(bool full)
{
	for (size_t ci = 0; ci < NCALLS; ci++) {
		enum mvm_sys_call c = mem_calls[ci];

		if (full && c != MVM_SYS_REALLOC)
			continue;

		for (int persist = 0; persist <= 1; persist++) {
			for (unsigned n = 1;; n++) {
				struct regions r = { 0 };
				vm_address_t a = 0;
				struct stats st;
				unsigned long before;
				kern_return_t kr;
				bool hit;

				assert_true(n < SWEEP_MAX);
				if (full)
					fill_regions(&r);
				st = snap();
				before = arm(c, n, persist);
				kr = vm_allocate(SELF, &a, 3 * vm_page_size, TRUE);
				hit = disarm(c, n, before);
				if (kr == KERN_SUCCESS) {
					memset((void *)a, 0x5a, 3 * vm_page_size);
					assert_int_equal(snap().vm_bytes, st.vm_bytes + 3 * vm_page_size);
					assert_kr(vm_deallocate(SELF, a, 3 * vm_page_size), KERN_SUCCESS);
				} else {
					assert_true(hit);
					failed[c]++;
					assert_kr(kr, KERN_RESOURCE_SHORTAGE);
					assert_int_equal(a, 0);
					assert_same(snap(), st);
				}
				unfill_regions(&r);
				MVM_TEST_QUIESCENT();
				if (full) {
					assert_true(hit); /* the failure only: see sweep_allocate() */
					break;
				}
				if (!hit)
					break;
			}
		}
	}
}

static void
test_vm_allocate(void **state)
{
	(void)state;
	sweep_vm_allocate(false);
	sweep_vm_allocate(true);
	assert_true(failed[MVM_SYS_MMAP] > 0);
	assert_true(failed[MVM_SYS_REALLOC] > 0); /* the region table */
}

/* vm_allocate at a fixed address that fails leaves the caller's address alone. */
static void
test_vm_allocate_fixed(void **state)
{
	vm_address_t a = 0, b;

	(void)state;
	assert_kr(vm_allocate(SELF, &a, vm_page_size, TRUE), KERN_SUCCESS);
	assert_kr(vm_deallocate(SELF, a, vm_page_size), KERN_SUCCESS);
	b = a;
	assert_int_equal(mvm_sys_inject(MVM_SYS_MMAP, 1, ENOMEM, 0), 0);
	assert_kr(vm_allocate(SELF, &b, vm_page_size, FALSE), KERN_RESOURCE_SHORTAGE);
	mvm_sys_inject_reset();
	assert_int_equal(b, a);
	MVM_TEST_QUIESCENT();
}

/* ---- a whole scenario, failing anywhere ------------------------------------------------- */

/*
 * A sequence of ordinary operations in which every call may fail. The scenario keeps
 * going as far as it can, remembers every name it owns, and cleans up. Whatever fails,
 * nothing may crash or leak.
 */
static int
scenario(void)
{
	mach_port_t p = MACH_PORT_NULL, q = MACH_PORT_NULL, s = MACH_PORT_NULL, prev;
	struct complex_fixture fx;
	struct complex_msg m;
	int failures = 0;
	union {
		struct complex_msg m;
		char buf[1024];
	} u;

	memset(&fx, 0, sizeof(fx));
	if (mach_port_allocate(SELF, MACH_PORT_RIGHT_RECEIVE, &p) != KERN_SUCCESS)
		failures++;
	if (mach_port_allocate(SELF, MACH_PORT_RIGHT_RECEIVE, &q) != KERN_SUCCESS)
		failures++;
	if (mach_port_allocate(SELF, MACH_PORT_RIGHT_PORT_SET, &s) != KERN_SUCCESS)
		failures++;
	if (MACH_PORT_VALID(p) && MACH_PORT_VALID(s) &&
	    mach_port_move_member(SELF, p, s) != KERN_SUCCESS)
		failures++;
	if (MACH_PORT_VALID(p) && MACH_PORT_VALID(q)) {
		if (mach_port_insert_right(SELF, p, p, MACH_MSG_TYPE_MAKE_SEND) != KERN_SUCCESS)
			failures++;
		if (mach_port_request_notification(SELF, p, MACH_NOTIFY_NO_SENDERS, 1, q,
		    MACH_MSG_TYPE_MAKE_SEND_ONCE, &prev) != KERN_SUCCESS)
			failures++;
		memset(&m, 0, sizeof(m));
		m.h.msgh_bits = MACH_MSGH_BITS(MACH_MSG_TYPE_MAKE_SEND, MACH_MSG_TYPE_MAKE_SEND_ONCE) |
		    MACH_MSGH_BITS_COMPLEX;
		m.h.msgh_remote_port = p;
		m.h.msgh_local_port = q;
		m.h.msgh_id = 800;
		set_type(&m.t_send, MACH_MSG_TYPE_COPY_SEND, 32, 1, true, false);
		m.send = p;
		set_type(&m.t_recv, MACH_MSG_TYPE_MAKE_SEND_ONCE, 32, 1, true, false);
		m.recv = q;
		set_type(&m.t_data, MACH_MSG_TYPE_INTEGER_32, 32, 16, false, false);
		m.data = (uint32_t *)u.buf; /* any readable memory */
		set_type(&m.t_ports, MACH_MSG_TYPE_MAKE_SEND, 32, 2, false, false);
		fx.port_array[0] = fx.port_array[1] = q;
		m.ports = fx.port_array;
		set_type(&m.t_ints, MACH_MSG_TYPE_INTEGER_32, 32, 3, true, false);
		if (mach_msg(&m.h, MACH_SEND_MSG, sizeof(m), 0, MACH_PORT_NULL, 0, MACH_PORT_NULL) !=
		    MACH_MSG_SUCCESS)
			failures++;
		if (mach_port_deallocate(SELF, p) != KERN_SUCCESS)
			failures++;
		/* Receive on the set; whatever comes (even partly), destroy it. */
		if (MACH_PORT_VALID(s)) {
			mach_msg_return_t mr = mach_msg(&u.m.h, MACH_RCV_MSG | MACH_RCV_TIMEOUT, 0,
			    sizeof(u), s, 0, MACH_PORT_NULL);

			if (mr == MACH_MSG_SUCCESS ||
			    (mr & ~MACH_MSG_MASK) == MACH_RCV_BODY_ERROR ||
			    (mr & ~MACH_MSG_MASK) == MACH_RCV_HEADER_ERROR)
				mach_msg_destroy(&u.m.h);
			if (mr != MACH_MSG_SUCCESS)
				failures++;
		}
	}
	if (MACH_PORT_VALID(s))
		(void)mach_port_destroy(SELF, s);
	if (MACH_PORT_VALID(p))
		(void)mach_port_destroy(SELF, p);
	if (MACH_PORT_VALID(q))
		(void)mach_port_destroy(SELF, q);
	return failures;
}

static void
test_scenario_sweep(void **state)
{
	(void)state;
	assert_int_equal(scenario(), 0);
	MVM_TEST_QUIESCENT();
	for (size_t ci = 0; ci < NCALLS; ci++) {
		enum mvm_sys_call c = mem_calls[ci];

		for (int persist = 0; persist <= 1; persist++) {
			for (unsigned n = 1;; n++) {
				unsigned long before;
				int failures;
				bool hit;

				assert_true(n < SWEEP_MAX);
				before = arm(c, n, persist);
				failures = scenario();
				hit = disarm(c, n, before);
				if (!hit)
					assert_int_equal(failures, 0);
				MVM_TEST_QUIESCENT();
				if (!hit)
					break;
			}
		}
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_allocate_receive, reset_failed),
		cmocka_unit_test_setup(test_allocate_port_set, reset_failed),
		cmocka_unit_test_setup(test_allocate_dead_name, reset_failed),
		cmocka_unit_test_setup(test_name_creating_calls_full_table, reset_failed),
		cmocka_unit_test_setup(test_send_simple, reset_failed),
		cmocka_unit_test_setup(test_send_complex_ool, reset_failed),
		cmocka_unit_test_setup(test_receive, reset_failed),
		cmocka_unit_test_setup(test_receive_full_table, reset_failed),
		cmocka_unit_test_setup(test_port_names, reset_failed),
		cmocka_unit_test_setup(test_vm_allocate, reset_failed),
		cmocka_unit_test_setup(test_vm_allocate_fixed, reset_failed),
		cmocka_unit_test_setup(test_scenario_sweep, reset_failed),
	};

	return cmocka_run_group_tests_name("inject", tests, NULL, NULL);
}
