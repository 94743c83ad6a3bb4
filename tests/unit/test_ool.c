/*
 * tests/unit/test_ool.c: out-of-line data and port arrays: who owns which memory when.
 * The sender's region is deallocated only with msgt_deallocate and only if the send
 * succeeds; the receiver gets fresh memory at the sender's page offset and frees it with
 * vm_deallocate (or mach_msg_destroy); a failed send changes nothing. Also the
 * vm_allocate / vm_deallocate edge cases that out-of-line memory relies on.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

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

static mach_port_t
sonce(mach_port_t p)
{
	mach_port_t so = MACH_PORT_NULL;
	mach_msg_type_name_t t = 0;

	assert_kr(mach_port_extract_right(SELF, p, MACH_MSG_TYPE_MAKE_SEND_ONCE, &so, &t),
	    KERN_SUCCESS);
	return so;
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

static size_t
page(void)
{
	return (size_t)vm_page_size;
}

static uintptr_t
trunc_page(uintptr_t a)
{
	return a & ~(uintptr_t)(page() - 1);
}

static uintptr_t
round_page(uintptr_t a)
{
	return trunc_page(a + page() - 1);
}

/* How many of the pages of [addr, addr + len) are mapped. */
static size_t
mapped_pages(uintptr_t addr, size_t len)
{
	size_t n = 0;
	unsigned char v;

	if (len == 0)
		return 0;
	for (uintptr_t p = trunc_page(addr); p < addr + len; p += page())
		if (mincore((void *)p, page(), &v) == 0)
			n++;
		else
			assert_int_equal(errno, ENOMEM);
	return n;
}

static size_t
npages(uintptr_t addr, size_t len)
{
	return len == 0 ? 0 : (round_page(addr + len) - trunc_page(addr)) / page();
}

static void
fill(uintptr_t addr, size_t len, unsigned seed)
{
	uint8_t *p = (uint8_t *)addr;

	for (size_t i = 0; i < len; i++)
		p[i] = (uint8_t)(i * 13 + seed + (i >> 12));
}

static int
check_fill(uintptr_t addr, size_t len, unsigned seed)
{
	const uint8_t *p = (const uint8_t *)addr;

	for (size_t i = 0; i < len; i++)
		if (p[i] != (uint8_t)(i * 13 + seed + (i >> 12)))
			return 0;
	return 1;
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
		(void)mach_port_destroy(SELF, names[i]);
	(void)vm_deallocate(SELF, (vm_address_t)names, (n ? n : 1) * sizeof(*names));
	(void)vm_deallocate(SELF, (vm_address_t)types, (nt ? nt : 1) * sizeof(*types));
	return 0;
}

/* One out-of-line byte array (long form), then optionally one inline port item. */
struct ool_msg {
	mach_msg_header_t h;
	mach_msg_type_long_t t;
	vm_offset_t addr;
	mach_msg_type_t tp;
	mach_port_t ports[2];
};

static mach_msg_size_t
init_ool(struct ool_msg *m, mach_port_t dest, vm_offset_t addr, size_t len, int dealloc,
    mach_msg_type_name_t pdisp, mach_port_t p0, mach_port_t p1)
{
	memset(m, 0, sizeof(*m));
	m->h.msgh_bits = MACH_MSGH_BITS_COMPLEX | MACH_MSGH_BITS(MACH_MSG_TYPE_MAKE_SEND, 0);
	m->h.msgh_remote_port = dest;
	m->h.msgh_id = 100;
	m->t.msgtl_header.msgt_longform = 1;
	m->t.msgtl_header.msgt_inline = 0;
	m->t.msgtl_header.msgt_deallocate = dealloc ? 1 : 0;
	m->t.msgtl_name = MACH_MSG_TYPE_BYTE;
	m->t.msgtl_size = 8;
	m->t.msgtl_number = (natural_t)len;
	m->addr = addr;
	if (pdisp == 0)
		return offsetof(struct ool_msg, tp);
	m->tp.msgt_name = pdisp;
	m->tp.msgt_size = 32;
	m->tp.msgt_number = 2;
	m->tp.msgt_inline = 1;
	m->ports[0] = p0;
	m->ports[1] = p1;
	return sizeof(*m);
}

/* ---- out-of-line data ------------------------------------------------------------------- */

static void
one_copy(mach_port_t d, size_t len, size_t off, int dealloc)
{
	/* A guard page on each side, so we see exactly which pages a dealloc removes. */
	size_t span = round_page(off + len) + 2 * page();
	vm_address_t region = 0;
	uintptr_t data;
	uint64_t base;
	struct ool_msg m, r;
	mach_msg_size_t size;

	assert_kr(vm_allocate(SELF, &region, span, TRUE), KERN_SUCCESS);
	base = vm_bytes();
	data = region + page() + off;
	fill(data, len, (unsigned)len);
	size = init_ool(&m, d, data, len, dealloc, 0, 0, 0);
	assert_kr(send_msg(&m, size), MACH_MSG_SUCCESS);

	/* The sender's side. */
	if (dealloc) {
		size_t gone = npages(data, len);

		assert_int_equal(mapped_pages(region, span), span / page() - gone);
		assert_int_equal(mapped_pages(data, len), 0);
		assert_int_equal(mapped_pages(region, page()), 1);
		assert_int_equal(mapped_pages(region + span - page(), page()), 1);
	} else {
		assert_int_equal(mapped_pages(region, span), span / page());
		assert_true(check_fill(data, len, (unsigned)len));
		/* Copy semantics: what the sender writes now is not what was sent. */
		if (len > 0)
			memset((void *)data, 0, len);
	}

	memset(&r, 0, sizeof(r));
	assert_kr(recv_msg(&r, sizeof(r), d), MACH_MSG_SUCCESS);
	assert_int_equal(r.h.msgh_size, size);
	assert_int_equal(r.t.msgtl_number, len);
	assert_int_equal(r.t.msgtl_header.msgt_inline, 0);
	if (len == 0) {
		assert_int_equal(r.addr, 0);
	} else {
		assert_int_not_equal(r.addr, 0);
		assert_int_equal(r.addr & (page() - 1), data & (page() - 1));
		assert_true(check_fill(r.addr, len, (unsigned)len));
		assert_int_equal(mapped_pages(r.addr, len), npages(r.addr, len));
		/* The received region is accounted as IPC memory until freed. */
		assert_int_equal(vm_bytes(), base + npages(r.addr, len) * page() -
		    (dealloc ? npages(data, len) * page() : 0));
		/* The receiver owns it: it may write to it. */
		memset((void *)r.addr, 0x77, len);
		assert_kr(vm_deallocate(SELF, r.addr, len), KERN_SUCCESS);
		assert_int_equal(mapped_pages(r.addr, len), 0);
	}
	assert_int_equal(vm_bytes(), base - (dealloc ? npages(data, len) * page() : 0));
	assert_kr(vm_deallocate(SELF, region, span), KERN_SUCCESS);
}

static void
test_ool_copy(void **state)
{
	const size_t sizes[] = { 0, 1, 2, page() - 1, page(), page() + 1, 3 * page() + 17 };
	const size_t offs[] = { 0, 1, 100, page() - 1 };
	mach_port_t d = rcv_port();
	uint64_t base = vm_bytes();

	(void)state;
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
		for (size_t j = 0; j < sizeof(offs) / sizeof(offs[0]); j++)
			for (int dealloc = 0; dealloc < 2; dealloc++)
				one_copy(d, sizes[i], offs[j], dealloc);
	/* Several MiB, at an odd offset. */
	one_copy(d, 5u << 20, 123, 0);
	one_copy(d, 5u << 20, 123, 1);
	assert_int_equal(vm_bytes(), base);
	assert_int_equal(mvm_test_status(d).mps_seqno, 2 * 4 * 7 + 2);
	destroy(d);
	MVM_TEST_QUIESCENT();
}

/* Size 0: the pointer is not looked at, nothing is deallocated, the receiver gets 0. */
static void
test_ool_zero_size(void **state)
{
	mach_port_t d = rcv_port();
	vm_address_t region = 0;
	struct ool_msg m, r;
	mach_msg_size_t size;

	(void)state;
	assert_kr(vm_allocate(SELF, &region, page(), TRUE), KERN_SUCCESS);
	size = init_ool(&m, d, region, 0, 1, 0, 0, 0);
	assert_kr(send_msg(&m, size), MACH_MSG_SUCCESS);
	assert_int_equal(mapped_pages(region, page()), 1);
	/* A wild pointer with size 0 is fine too. */
	size = init_ool(&m, d, (vm_offset_t)0x10, 0, 1, 0, 0, 0);
	assert_kr(send_msg(&m, size), MACH_MSG_SUCCESS);
	for (int i = 0; i < 2; i++) {
		assert_kr(recv_msg(&r, sizeof(r), d), MACH_MSG_SUCCESS);
		assert_int_equal(r.addr, 0);
		mach_msg_destroy(&r.h);
	}
	assert_kr(vm_deallocate(SELF, region, page()), KERN_SUCCESS);
	destroy(d);
	MVM_TEST_QUIESCENT();
}

/* A send that fails keeps the sender's region mapped and its rights in place. */
static void
test_ool_failed_send_keeps_everything(void **state)
{
	mach_port_t d = rcv_port(), s = rcv_port(), dead_dest = rcv_port();
	vm_address_t region = 0;
	struct ool_msg m;
	mach_msg_size_t size;
	struct mvm_ipc_stats before, after;
	size_t len = 2 * page() + 5;

	(void)state;
	add_send(s);
	destroy(dead_dest);
	assert_kr(vm_allocate(SELF, &region, 3 * page(), TRUE), KERN_SUCCESS);
	fill(region, len, 9);
	mvm_ipc_stats(&before);

	/* Bad destination. */
	size = init_ool(&m, dead_dest, region, len, 1, 0, 0, 0);
	assert_kr(send_msg(&m, size), MACH_SEND_INVALID_DEST);
	/* Bad reply. */
	size = init_ool(&m, d, region, len, 1, 0, 0, 0);
	m.h.msgh_local_port = MACH_PORT_MAKE(0x6543, 1);
	m.h.msgh_bits |= MACH_MSGH_BITS(0, MACH_MSG_TYPE_MAKE_SEND_ONCE);
	assert_kr(send_msg(&m, size), MACH_SEND_INVALID_REPLY);
	/* A valid MOVE_SEND then an invalid right in the body. */
	size = init_ool(&m, d, region, len, 1, MACH_MSG_TYPE_MOVE_SEND, s, MACH_PORT_MAKE(0x6543, 1));
	assert_kr(send_msg(&m, size), MACH_SEND_INVALID_RIGHT);
	/* The same right moved twice with one user reference. */
	size = init_ool(&m, d, region, len, 1, MACH_MSG_TYPE_MOVE_SEND, s, s);
	assert_kr(send_msg(&m, size), MACH_SEND_INVALID_RIGHT);
	/* A bad header. */
	size = init_ool(&m, d, region, len, 1, 0, 0, 0);
	m.h.msgh_bits |= 0x100000;
	assert_kr(send_msg(&m, size), MACH_SEND_INVALID_HEADER);
	/* A truncated body. */
	size = init_ool(&m, d, region, len, 1, MACH_MSG_TYPE_MOVE_SEND, s, s);
	assert_kr(send_msg(&m, size - 4), MACH_SEND_MSG_TOO_SMALL);

	mvm_ipc_stats(&after);
	assert_int_equal(mapped_pages(region, 3 * page()), 3);
	assert_true(check_fill(region, len, 9));
	assert_int_equal(mvm_test_refs(s, MACH_PORT_RIGHT_SEND), 1);
	assert_int_equal(after.vm_bytes, before.vm_bytes);
	assert_int_equal(after.kmsgs, before.kmsgs);
	assert_int_equal(after.names, before.names);
	assert_int_equal(after.msgs_sent, before.msgs_sent);
	assert_int_equal(mvm_test_status(d).mps_msgcount, 0);

	/* And now a good one: the region goes, the right goes. */
	size = init_ool(&m, d, region, len, 1, MACH_MSG_TYPE_MOVE_SEND, s, MACH_PORT_NULL);
	assert_kr(send_msg(&m, size), MACH_MSG_SUCCESS);
	assert_int_equal(mapped_pages(region, 3 * page()), 0);
	assert_int_equal(mvm_test_type(s), MACH_PORT_TYPE_RECEIVE);

	destroy(d); /* the queued message and its memory die with it */
	destroy(s);
	MVM_TEST_QUIESCENT();
}

static void
test_ool_invalid_memory(void **state)
{
	mach_port_t d = rcv_port(), s = rcv_port();
	struct ool_msg m;
	mach_msg_size_t size;
	struct mvm_ipc_stats before, after;
	uint8_t *none, *half;

	(void)state;
	add_send(s);
	none = mmap(NULL, page(), PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	half = mmap(NULL, 2 * page(), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_true(none != MAP_FAILED && half != MAP_FAILED);
	assert_int_equal(mprotect(half + page(), page(), PROT_NONE), 0);
	memset(half, 'h', page());
	mvm_ipc_stats(&before);

	const struct {
		uintptr_t addr;
		size_t len;
	} bad[] = {
		{ (uintptr_t)none, 1 },
		{ (uintptr_t)none + 100, 200 },
		/* Never a user address. (An address just unmapped is no good test: the
		 * copy's own new mapping may land there.) */
		{ (uintptr_t)1 << 63, 8 },
		{ (uintptr_t)half, 2 * page() },        /* readable, then not */
		{ (uintptr_t)half + page() - 1, 2 },    /* straddles the boundary */
		{ (uintptr_t)8, 16 },                   /* page zero */
		{ UINTPTR_MAX - 15, 64 },               /* wraps around */
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		for (int dealloc = 0; dealloc < 2; dealloc++) {
			size = init_ool(&m, d, bad[i].addr, bad[i].len, dealloc, MACH_MSG_TYPE_MOVE_SEND,
			    s, MACH_PORT_NULL);
			assert_kr(send_msg(&m, size), MACH_SEND_INVALID_MEMORY);
		}
	}
	/* Out-of-line ports from unreadable memory. */
	{
		struct {
			mach_msg_header_t h;
			mach_msg_type_t t;
			vm_offset_t addr;
		} pm;

		memset(&pm, 0, sizeof(pm));
		pm.h.msgh_bits = MACH_MSGH_BITS_COMPLEX | MACH_MSGH_BITS(MACH_MSG_TYPE_MAKE_SEND, 0);
		pm.h.msgh_remote_port = d;
		pm.t.msgt_name = MACH_MSG_TYPE_COPY_SEND;
		pm.t.msgt_size = 32;
		pm.t.msgt_number = 4;
		pm.t.msgt_deallocate = 1;
		pm.addr = (vm_offset_t)none;
		assert_kr(send_msg(&pm, sizeof(pm)), MACH_SEND_INVALID_MEMORY);
		pm.addr = (vm_offset_t)half + page() - 8; /* two names readable, two not */
		assert_kr(send_msg(&pm, sizeof(pm)), MACH_SEND_INVALID_MEMORY);
	}
	mvm_ipc_stats(&after);
	assert_int_equal(after.vm_bytes, before.vm_bytes);
	assert_int_equal(after.kmsgs, before.kmsgs);
	assert_int_equal(after.msgs_sent, before.msgs_sent);
	assert_int_equal(mvm_test_refs(s, MACH_PORT_RIGHT_SEND), 1);
	assert_int_equal(half[0], 'h');
	assert_int_equal(mapped_pages((uintptr_t)half, 2 * page()), 2);

	assert_int_equal(munmap(none, page()), 0);
	assert_int_equal(munmap(half, 2 * page()), 0);
	destroy(d);
	destroy(s);
	MVM_TEST_QUIESCENT();
}

/* ---- out-of-line ports ------------------------------------------------------------------ */

struct oolp_msg {
	mach_msg_header_t h;
	mach_msg_type_t t;
	vm_offset_t addr;
};

static mach_msg_size_t
init_oolp(struct oolp_msg *m, mach_port_t dest, mach_msg_type_name_t disp, const void *names,
    unsigned n, int dealloc)
{
	memset(m, 0, sizeof(*m));
	m->h.msgh_bits = MACH_MSGH_BITS_COMPLEX | MACH_MSGH_BITS(MACH_MSG_TYPE_MAKE_SEND, 0);
	m->h.msgh_remote_port = dest;
	m->h.msgh_id = 200;
	m->t.msgt_name = disp;
	m->t.msgt_size = 32;
	m->t.msgt_number = n;
	m->t.msgt_inline = 0;
	m->t.msgt_deallocate = dealloc ? 1 : 0;
	m->addr = (vm_offset_t)names;
	return sizeof(*m);
}

static void
test_ool_ports(void **state)
{
	mach_port_t d = rcv_port(), a = rcv_port(), b = rcv_port(), x = rcv_port();
	mach_port_t names[4], *got, *many;
	struct oolp_msg m, r;
	vm_address_t region = 0;
	uint64_t base = vm_bytes();
	enum { MANY = 3000 };

	(void)state;
	/* MAKE_SEND of a, NULL, DEAD, b, from the stack, no dealloc. */
	names[0] = a;
	names[1] = MACH_PORT_NULL;
	names[2] = MACH_PORT_DEAD;
	names[3] = b;
	assert_kr(send_msg(&m, init_oolp(&m, d, MACH_MSG_TYPE_MAKE_SEND, names, 4, 0)),
	    MACH_MSG_SUCCESS);
	assert_int_equal(names[0], a); /* the sender's array is untouched */
	assert_kr(recv_msg(&r, sizeof(r), d), MACH_MSG_SUCCESS);
	assert_int_equal(r.t.msgt_name, MACH_MSG_TYPE_PORT_SEND);
	assert_int_equal(r.t.msgt_number, 4);
	assert_int_equal(r.t.msgt_inline, 0);
	got = (mach_port_t *)r.addr;
	assert_non_null(got);
	assert_int_equal(got[0], a);
	assert_int_equal(got[1], MACH_PORT_NULL);
	assert_int_equal(got[2], MACH_PORT_DEAD);
	assert_int_equal(got[3], b);
	assert_int_equal(mvm_test_refs(a, MACH_PORT_RIGHT_SEND), 1);
	assert_int_equal(mvm_test_refs(b, MACH_PORT_RIGHT_SEND), 1);
	assert_true(vm_bytes() > base);
	assert_kr(vm_deallocate(SELF, r.addr, 4 * sizeof(mach_port_t)), KERN_SUCCESS);
	assert_int_equal(vm_bytes(), base);

	/* Many copies of one send right: the user references add up. */
	many = malloc(MANY * sizeof(*many));
	assert_non_null(many);
	for (int i = 0; i < MANY; i++)
		many[i] = a;
	assert_kr(send_msg(&m, init_oolp(&m, d, MACH_MSG_TYPE_COPY_SEND, many, MANY, 0)),
	    MACH_MSG_SUCCESS);
	free(many);
	assert_int_equal(mvm_test_refs(a, MACH_PORT_RIGHT_SEND), 1);
	assert_kr(recv_msg(&r, sizeof(r), d), MACH_MSG_SUCCESS);
	got = (mach_port_t *)r.addr;
	assert_int_equal(got[0], a);
	assert_int_equal(got[MANY - 1], a);
	assert_int_equal(mvm_test_refs(a, MACH_PORT_RIGHT_SEND), 1 + MANY);
	assert_kr(mach_port_mod_refs(SELF, a, MACH_PORT_RIGHT_SEND, -MANY), KERN_SUCCESS);
	assert_kr(vm_deallocate(SELF, r.addr, MANY * sizeof(mach_port_t)), KERN_SUCCESS);

	/* MOVE_SEND_ONCE and MOVE_RECEIVE from vm_allocate'd memory, with dealloc. */
	assert_kr(vm_allocate(SELF, &region, page(), TRUE), KERN_SUCCESS);
	((mach_port_t *)region)[0] = sonce(b);
	((mach_port_t *)region)[1] = MACH_PORT_DEAD;
	((mach_port_t *)region)[2] = sonce(b);
	names[0] = ((mach_port_t *)region)[0];
	names[2] = ((mach_port_t *)region)[2];
	assert_kr(send_msg(&m, init_oolp(&m, d, MACH_MSG_TYPE_MOVE_SEND_ONCE, (void *)region, 3,
	    1)), MACH_MSG_SUCCESS);
	assert_int_equal(mapped_pages(region, page()), 0);
	assert_int_equal(mvm_test_type(names[0]), 0);
	assert_int_equal(mvm_test_type(names[2]), 0);
	assert_int_equal(mvm_test_status(b).mps_sorights, 2);
	assert_kr(recv_msg(&r, sizeof(r), d), MACH_MSG_SUCCESS);
	assert_int_equal(r.t.msgt_name, MACH_MSG_TYPE_PORT_SEND_ONCE);
	got = (mach_port_t *)r.addr;
	assert_int_equal(mvm_test_type(got[0]), MACH_PORT_TYPE_SEND_ONCE);
	assert_int_equal(got[1], MACH_PORT_DEAD);
	assert_int_equal(mvm_test_type(got[2]), MACH_PORT_TYPE_SEND_ONCE);
	mach_msg_destroy(&r.h); /* two send-once notifications to b, memory freed */
	assert_int_equal(mvm_test_status(b).mps_msgcount, 2);

	region = 0;
	assert_kr(vm_allocate(SELF, &region, page(), TRUE), KERN_SUCCESS);
	((mach_port_t *)region)[0] = x;
	assert_kr(send_msg(&m, init_oolp(&m, d, MACH_MSG_TYPE_MOVE_RECEIVE, (void *)region, 1, 1)),
	    MACH_MSG_SUCCESS);
	assert_int_equal(mvm_test_type(x), 0);
	assert_int_equal(mapped_pages(region, page()), 0);
	assert_kr(recv_msg(&r, sizeof(r), d), MACH_MSG_SUCCESS);
	assert_int_equal(r.t.msgt_name, MACH_MSG_TYPE_PORT_RECEIVE);
	x = ((mach_port_t *)r.addr)[0];
	assert_int_equal(mvm_test_type(x), MACH_PORT_TYPE_RECEIVE);
	assert_kr(vm_deallocate(SELF, r.addr, sizeof(mach_port_t)), KERN_SUCCESS);

	/* An empty array arrives as a null pointer. */
	assert_kr(send_msg(&m, init_oolp(&m, d, MACH_MSG_TYPE_MAKE_SEND, names, 0, 1)),
	    MACH_MSG_SUCCESS);
	assert_kr(recv_msg(&r, sizeof(r), d), MACH_MSG_SUCCESS);
	assert_int_equal(r.addr, 0);
	assert_int_equal(r.t.msgt_number, 0);

	/* A failed send with an out-of-line array (bad right inside) takes nothing. */
	region = 0;
	assert_kr(vm_allocate(SELF, &region, page(), TRUE), KERN_SUCCESS);
	((mach_port_t *)region)[0] = a;
	((mach_port_t *)region)[1] = MACH_PORT_MAKE(0x5555, 5);
	assert_kr(send_msg(&m, init_oolp(&m, d, MACH_MSG_TYPE_MOVE_SEND, (void *)region, 2, 1)),
	    MACH_SEND_INVALID_RIGHT);
	assert_int_equal(mapped_pages(region, page()), 1);
	assert_int_equal(mvm_test_refs(a, MACH_PORT_RIGHT_SEND), 1);
	assert_kr(vm_deallocate(SELF, region, page()), KERN_SUCCESS);

	assert_kr(mach_port_deallocate(SELF, a), KERN_SUCCESS);
	assert_kr(mach_port_deallocate(SELF, b), KERN_SUCCESS);
	destroy(a);
	destroy(b);
	destroy(x);
	destroy(d);
	assert_int_equal(vm_bytes(), base);
	MVM_TEST_QUIESCENT();
}

/* mach_msg_destroy frees every right and region of a received message. */
static void
test_ool_msg_destroy(void **state)
{
	mach_port_t d = rcv_port(), a = rcv_port(), b = rcv_port(), x = rcv_port(), rp = rcv_port();
	mach_port_t parr[3];
	vm_address_t region = 0;
	uint64_t base;
	struct {
		mach_msg_header_t h;
		mach_msg_type_long_t t1;
		vm_offset_t data;
		mach_msg_type_t t2;
		vm_offset_t ports;
		mach_msg_type_t t3;
		mach_port_t x;
		mach_msg_type_t t4;
		vm_offset_t empty;
		mach_msg_type_t t5;
		vm_offset_t small;
	} m, r;
	static const char small[] = "a few bytes";

	(void)state;
	add_send(x);
	assert_kr(vm_allocate(SELF, &region, 4 * page(), TRUE), KERN_SUCCESS);
	fill(region, 4 * page(), 3);
	base = vm_bytes();
	parr[0] = a;
	parr[1] = b;
	parr[2] = MACH_PORT_DEAD;
	memset(&m, 0, sizeof(m));
	m.h.msgh_bits = MACH_MSGH_BITS_COMPLEX |
	    MACH_MSGH_BITS(MACH_MSG_TYPE_MAKE_SEND, MACH_MSG_TYPE_MAKE_SEND_ONCE);
	m.h.msgh_remote_port = d;
	m.h.msgh_local_port = rp;
	m.t1.msgtl_header.msgt_longform = 1;
	m.t1.msgtl_header.msgt_deallocate = 1;
	m.t1.msgtl_name = MACH_MSG_TYPE_INTEGER_32;
	m.t1.msgtl_size = 32;
	m.t1.msgtl_number = (natural_t)(4 * page() / 4);
	m.data = region;
	m.t2.msgt_name = MACH_MSG_TYPE_MAKE_SEND;
	m.t2.msgt_size = 32;
	m.t2.msgt_number = 3;
	m.ports = (vm_offset_t)parr;
	m.t3.msgt_name = MACH_MSG_TYPE_MOVE_RECEIVE;
	m.t3.msgt_size = 32;
	m.t3.msgt_number = 1;
	m.t3.msgt_inline = 1;
	m.x = x;
	m.t4.msgt_name = MACH_MSG_TYPE_BYTE;
	m.t4.msgt_size = 8;
	m.t4.msgt_number = 0;
	m.empty = 0;
	m.t5.msgt_name = MACH_MSG_TYPE_CHAR;
	m.t5.msgt_size = 8;
	m.t5.msgt_number = sizeof(small);
	m.small = (vm_offset_t)small;
	assert_kr(send_msg(&m, sizeof(m)), MACH_MSG_SUCCESS);
	assert_int_equal(mapped_pages(region, 4 * page()), 0);

	assert_kr(recv_msg(&r, sizeof(r), d), MACH_MSG_SUCCESS);
	assert_true(check_fill(r.data, 4 * page(), 3));
	assert_string_equal((const char *)r.small, small);
	assert_int_equal(r.empty, 0);
	assert_int_equal(((mach_port_t *)r.ports)[0], a);
	assert_int_equal(((mach_port_t *)r.ports)[1], b);
	assert_int_equal(((mach_port_t *)r.ports)[2], MACH_PORT_DEAD);
	assert_int_equal(r.x, x); /* comes back under the name of its send right */
	assert_int_equal(mvm_test_type(x), MACH_PORT_TYPE_SEND_RECEIVE);
	assert_true(vm_bytes() > base - 4 * page());

	mach_msg_destroy(&r.h);
	assert_int_equal(vm_bytes(), base - 4 * page());
	assert_int_equal(mvm_test_type(a), MACH_PORT_TYPE_RECEIVE);
	assert_int_equal(mvm_test_type(b), MACH_PORT_TYPE_RECEIVE);
	assert_int_equal(mvm_test_type(x), MACH_PORT_TYPE_DEAD_NAME);
	assert_int_equal(mvm_test_status(rp).mps_msgcount, 1); /* send-once notification */

	assert_kr(mach_port_deallocate(SELF, x), KERN_SUCCESS);
	destroy(a);
	destroy(b);
	destroy(d);
	destroy(rp);
	MVM_TEST_QUIESCENT();
}

/* Out of memory at each allocation of an out-of-line send: MACH_SEND_NO_BUFFER, no change. */
static void
test_ool_no_memory(void **state)
{
	static const enum mvm_sys_call calls[] = { MVM_SYS_MALLOC, MVM_SYS_CALLOC, MVM_SYS_MMAP,
		MVM_SYS_REALLOC };
	mach_port_t d = rcv_port(), s = rcv_port();
	vm_address_t region = 0;
	struct ool_msg m, r;
	mach_msg_size_t size;
	size_t len = 3 * page();

	(void)state;
	add_send(s);
	assert_kr(vm_allocate(SELF, &region, len, TRUE), KERN_SUCCESS);
	fill(region, len, 1);
	for (size_t c = 0; c < sizeof(calls) / sizeof(calls[0]); c++) {
		for (unsigned nth = 1; ; nth++) {
			struct mvm_ipc_stats before, after;
			mach_msg_return_t mr;

			assert_true(nth < 50);
			mvm_ipc_stats(&before);
			size = init_ool(&m, d, region, len, 1, MACH_MSG_TYPE_MOVE_SEND, s, MACH_PORT_NULL);
			mvm_sys_inject(calls[c], nth, ENOMEM, 0);
			mr = send_msg(&m, size);
			mvm_sys_inject_reset();
			if (mr == MACH_MSG_SUCCESS) {
				assert_int_equal(mapped_pages(region, len), 0);
				assert_kr(recv_msg(&r, sizeof(r), d), MACH_MSG_SUCCESS);
				assert_true(check_fill(r.addr, len, 1));
				assert_int_equal(r.ports[0], s);
				/* Put things back as they were for the next round. */
				region = r.addr;
				assert_int_equal(region & (page() - 1), 0);
				assert_int_equal(mvm_test_refs(s, MACH_PORT_RIGHT_SEND), 1);
				break;
			}
			print_message("%s #%u: %s\n", mvm_sys_name(calls[c]), nth, mvm_errname(mr));
			assert_kr(mr, MACH_SEND_NO_BUFFER);
			mvm_ipc_stats(&after);
			assert_int_equal(after.vm_bytes, before.vm_bytes);
			assert_int_equal(after.kmsgs, before.kmsgs);
			assert_int_equal(after.names, before.names);
			assert_int_equal(mapped_pages(region, len), len / page());
			assert_true(check_fill(region, len, 1));
			assert_int_equal(mvm_test_refs(s, MACH_PORT_RIGHT_SEND), 1);
		}
	}
	assert_kr(vm_deallocate(SELF, region, len), KERN_SUCCESS);
	destroy(d);
	destroy(s);
	MVM_TEST_QUIESCENT();
}

/* ---- vm_allocate / vm_deallocate ------------------------------------------------------- */

static void
test_vm_edges(void **state)
{
	vm_address_t a = 0, b, c;
	uint64_t base = vm_bytes();

	(void)state;
	/* Size 0. */
	a = 0x1234;
	assert_kr(vm_allocate(SELF, &a, 0, TRUE), KERN_SUCCESS);
	assert_int_equal(a, 0);
	assert_int_equal(vm_bytes(), base);
	assert_kr(vm_deallocate(SELF, 0, 0), KERN_SUCCESS);
	assert_kr(vm_deallocate(SELF, 0x1234000, 0), KERN_SUCCESS);

	/* Sizes round up to pages. */
	a = 0;
	assert_kr(vm_allocate(SELF, &a, 1, TRUE), KERN_SUCCESS);
	assert_int_equal(a & (page() - 1), 0);
	assert_int_equal(vm_bytes(), base + page());
	assert_int_equal(*(volatile char *)a, 0); /* zero-filled */
	assert_kr(vm_deallocate(SELF, a, 1), KERN_SUCCESS);
	assert_int_equal(vm_bytes(), base);

	/* anywhere = FALSE at a used address: KERN_NO_SPACE, the old region untouched. */
	a = 0;
	assert_kr(vm_allocate(SELF, &a, 4 * page(), TRUE), KERN_SUCCESS);
	memset((void *)a, 'a', 4 * page());
	b = a + page();
	assert_kr(vm_allocate(SELF, &b, page(), FALSE), KERN_NO_SPACE);
	assert_int_equal(b, a + page());
	b = a - page(); /* overlaps the first page */
	if (mapped_pages(b, page()) == 0) {
		assert_kr(vm_allocate(SELF, &b, 2 * page(), FALSE), KERN_NO_SPACE);
	}
	assert_int_equal(((char *)a)[page()], 'a');
	assert_int_equal(vm_bytes(), base + 4 * page());

	/* Partial deallocate: the middle, then the ends; the rest stays mapped. */
	assert_kr(vm_deallocate(SELF, a + page(), 2 * page()), KERN_SUCCESS);
	assert_int_equal(vm_bytes(), base + 2 * page());
	assert_int_equal(mapped_pages(a, 4 * page()), 2);
	assert_int_equal(((char *)a)[0], 'a');
	assert_int_equal(((char *)a)[3 * page()], 'a');
	/* anywhere = FALSE in the hole works, at exactly that address (truncated to a page). */
	b = a + page() + 10;
	assert_kr(vm_allocate(SELF, &b, page(), FALSE), KERN_SUCCESS);
	assert_int_equal(b, a + page());
	assert_int_equal(vm_bytes(), base + 4 * page()); /* 10 bytes over: two pages */
	assert_int_equal(mapped_pages(a, 4 * page()), 4);
	assert_int_equal(((char *)b)[0], 0);
	/* An unaligned partial deallocate covers whole pages. */
	assert_kr(vm_deallocate(SELF, a + 5, 1), KERN_SUCCESS);
	assert_int_equal(mapped_pages(a, page()), 0);
	assert_int_equal(vm_bytes(), base + 3 * page());
	/* Deallocating what is already gone is fine, and counts nothing twice. */
	assert_kr(vm_deallocate(SELF, a, 2 * page()), KERN_SUCCESS);
	assert_int_equal(vm_bytes(), base + 2 * page());
	assert_kr(vm_deallocate(SELF, a, 4 * page()), KERN_SUCCESS);
	assert_int_equal(vm_bytes(), base);

	/* Bad arguments. */
	c = 0;
	assert_kr(vm_allocate(SELF + 1, &c, page(), TRUE), MACH_SEND_INVALID_DEST);
	assert_kr(vm_allocate(MACH_PORT_NULL, &c, page(), TRUE), MACH_SEND_INVALID_DEST);
	assert_kr(vm_deallocate(SELF + 1, a, page()), MACH_SEND_INVALID_DEST);
	assert_kr(vm_allocate(SELF, NULL, page(), TRUE), KERN_INVALID_ARGUMENT);
	assert_kr(vm_deallocate(SELF, (vm_address_t)-page(), 2 * page()), KERN_INVALID_ARGUMENT);
	c = 0;
	assert_kr(vm_allocate(SELF, &c, (vm_size_t)1 << 62, TRUE), KERN_NO_SPACE);
	c = (vm_address_t)-page();
	assert_int_not_equal(vm_allocate(SELF, &c, 2 * page(), FALSE), KERN_SUCCESS);
	assert_int_equal(vm_bytes(), base);
	MVM_TEST_QUIESCENT();
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_ool_copy, clean_space),
		cmocka_unit_test_teardown(test_ool_zero_size, clean_space),
		cmocka_unit_test_teardown(test_ool_failed_send_keeps_everything, clean_space),
		cmocka_unit_test_teardown(test_ool_invalid_memory, clean_space),
		cmocka_unit_test_teardown(test_ool_ports, clean_space),
		cmocka_unit_test_teardown(test_ool_msg_destroy, clean_space),
		cmocka_unit_test_teardown(test_ool_no_memory, clean_space),
		cmocka_unit_test_teardown(test_vm_edges, clean_space),
	};

	return cmocka_run_group_tests_name("ool", tests, NULL, NULL);
}
