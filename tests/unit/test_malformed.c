/*
 * tests/unit/test_malformed.c: every malformed message gets its Mach code, and a send
 * that fails changes nothing: no right is taken or made, no name appears or goes, no
 * message is queued, no memory is left behind.
 *
 * Table-driven: each case describes a message (header bits, destination and reply by
 * role, up to three body items, size adjustments) over a fixed set of names built by
 * fixture_setup(); the runner snapshots the name space, sends, checks the code and
 * compares the snapshot.
 */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "mvm_test.h"

#define SELF mach_task_self()

/* ---- the names every case can refer to ------------------------------------------------ */

enum role {
	N_NONE = 0,  /* no name: the field stays 0 */
	N_NULL,      /* MACH_PORT_NULL, explicitly */
	N_DEAD,      /* MACH_PORT_DEAD */
	N_D,         /* receive right + send right (1 uref): the usual destination */
	N_R,         /* receive right only */
	N_S,         /* receive right + send right (1 uref): rights to move in the body */
	N_SO,        /* a send-once right to R */
	N_DN,        /* a dead name (1 uref) */
	N_PS,        /* a port set, with MEMBER in it */
	N_MEMBER,    /* a receive right in PS */
	N_STALE,     /* a name that was destroyed */
	N_UNKNOWN,   /* a name never used */
	N_X,         /* receive right only, to move */
	N_CA,        /* send-only name; A's receive right is in a message queued on CB */
	N_CB,        /* receive right + send right */
	N_TASK,      /* mach_task_self(): a reserved name, not an entry */
	N_COUNT
};

static mach_port_t names[N_COUNT];

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

static int
fixture_setup(void **state)
{
	mach_msg_type_name_t t;
	struct {
		mach_msg_header_t h;
		mach_msg_type_t t;
		mach_port_t p;
	} m;

	(void)state;
	memset(names, 0, sizeof(names));
	names[N_NULL] = MACH_PORT_NULL;
	names[N_DEAD] = MACH_PORT_DEAD;
	names[N_D] = rcv_port();
	add_send(names[N_D]);
	names[N_R] = rcv_port();
	names[N_S] = rcv_port();
	add_send(names[N_S]);
	assert_kr(mach_port_extract_right(SELF, names[N_R], MACH_MSG_TYPE_MAKE_SEND_ONCE,
	    &names[N_SO], &t), KERN_SUCCESS);
	assert_kr(mach_port_allocate(SELF, MACH_PORT_RIGHT_DEAD_NAME, &names[N_DN]), KERN_SUCCESS);
	assert_kr(mach_port_allocate(SELF, MACH_PORT_RIGHT_PORT_SET, &names[N_PS]), KERN_SUCCESS);
	names[N_MEMBER] = rcv_port();
	assert_kr(mach_port_move_member(SELF, names[N_MEMBER], names[N_PS]), KERN_SUCCESS);
	names[N_STALE] = rcv_port();
	assert_kr(mach_port_destroy(SELF, names[N_STALE]), KERN_SUCCESS);
	names[N_UNKNOWN] = MACH_PORT_MAKE(0x4321, 0x77);
	names[N_X] = rcv_port();
	names[N_CA] = rcv_port();
	add_send(names[N_CA]);
	names[N_CB] = rcv_port();
	add_send(names[N_CB]);
	names[N_TASK] = SELF;

	/* Put A's receive right in a message queued on CB: CA is left a send-only name. */
	memset(&m, 0, sizeof(m));
	m.h.msgh_bits = MACH_MSGH_BITS_COMPLEX | MACH_MSGH_BITS(MACH_MSG_TYPE_COPY_SEND, 0);
	m.h.msgh_remote_port = names[N_CB];
	m.t.msgt_name = MACH_MSG_TYPE_MOVE_RECEIVE;
	m.t.msgt_size = 32;
	m.t.msgt_number = 1;
	m.t.msgt_inline = 1;
	m.p = names[N_CA];
	assert_kr(mach_msg(&m.h, MACH_SEND_MSG, sizeof(m), 0, MACH_PORT_NULL, 0, MACH_PORT_NULL),
	    MACH_MSG_SUCCESS);
	assert_int_equal(mvm_test_type(names[N_CA]), MACH_PORT_TYPE_SEND);
	return 0;
}

static int
fixture_teardown(void **state)
{
	mach_port_array_t nm = NULL;
	mach_port_type_array_t ty = NULL;
	mach_msg_type_number_t n = 0, nt = 0;

	(void)state;
	/* Destroy everything (the fixture's names, and whatever a failed case left). */
	if (mach_port_names(SELF, &nm, &n, &ty, &nt) == KERN_SUCCESS) {
		for (mach_msg_type_number_t i = 0; i < n; i++)
			(void)mach_port_destroy(SELF, nm[i]);
		(void)vm_deallocate(SELF, (vm_address_t)nm, (n ? n : 1) * sizeof(*nm));
		(void)vm_deallocate(SELF, (vm_address_t)ty, (nt ? nt : 1) * sizeof(*ty));
	}
	/* CA died with CB's queued message: its send right became a dead name, destroyed
	 * above if it was listed before; destroy again in case. */
	if (mvm_test_type(names[N_CA]) != 0)
		(void)mach_port_destroy(SELF, names[N_CA]);
	return 0;
}

/* ---- snapshots ------------------------------------------------------------------------ */

#define SNAP_MAX 64

struct snap_entry {
	mach_port_t name;
	mach_port_type_t type;
	mach_port_urefs_t send, sonce, dead, recv;
	mach_port_status_t st;
};

struct snap {
	struct mvm_ipc_stats stats;
	unsigned n;
	struct snap_entry e[SNAP_MAX];
};

static void
snapshot(struct snap *s)
{
	mach_port_array_t nm = NULL;
	mach_port_type_array_t ty = NULL;
	mach_msg_type_number_t n = 0, nt = 0;

	memset(s, 0, sizeof(*s));
	mvm_ipc_stats(&s->stats);
	assert_kr(mach_port_names(SELF, &nm, &n, &ty, &nt), KERN_SUCCESS);
	assert_true(n <= SNAP_MAX);
	s->n = n;
	for (unsigned i = 0; i < n; i++) {
		struct snap_entry *e = &s->e[i];

		e->name = nm[i];
		e->type = ty[i];
		e->send = mvm_test_refs(nm[i], MACH_PORT_RIGHT_SEND);
		e->sonce = mvm_test_refs(nm[i], MACH_PORT_RIGHT_SEND_ONCE);
		e->dead = mvm_test_refs(nm[i], MACH_PORT_RIGHT_DEAD_NAME);
		e->recv = mvm_test_refs(nm[i], MACH_PORT_RIGHT_RECEIVE);
		if (ty[i] & MACH_PORT_TYPE_RECEIVE)
			assert_kr(mach_port_get_receive_status(SELF, nm[i], &e->st), KERN_SUCCESS);
	}
	assert_kr(vm_deallocate(SELF, (vm_address_t)nm, (n ? n : 1) * sizeof(*nm)), KERN_SUCCESS);
	assert_kr(vm_deallocate(SELF, (vm_address_t)ty, (nt ? nt : 1) * sizeof(*ty)), KERN_SUCCESS);
}

static void
snap_compare(const char *what, const struct snap *a, const struct snap *b)
{
	const struct mvm_ipc_stats *x = &a->stats, *y = &b->stats;

	if (x->names != y->names || x->ports != y->ports || x->port_sets != y->port_sets ||
	    x->kmsgs != y->kmsgs || x->kmsgs_queued != y->kmsgs_queued ||
	    x->vm_bytes != y->vm_bytes || x->msgs_sent != y->msgs_sent ||
	    x->notifications != y->notifications)
		fail_msg("%s: counters changed: names %lu->%lu ports %lu->%lu kmsgs %lu->%lu "
		    "queued %lu->%lu vm %lu->%lu sent %lu->%lu notif %lu->%lu", what,
		    (unsigned long)x->names, (unsigned long)y->names, (unsigned long)x->ports,
		    (unsigned long)y->ports, (unsigned long)x->kmsgs, (unsigned long)y->kmsgs,
		    (unsigned long)x->kmsgs_queued, (unsigned long)y->kmsgs_queued,
		    (unsigned long)x->vm_bytes, (unsigned long)y->vm_bytes,
		    (unsigned long)x->msgs_sent, (unsigned long)y->msgs_sent,
		    (unsigned long)x->notifications, (unsigned long)y->notifications);
	if (a->n != b->n)
		fail_msg("%s: %u names before, %u after", what, a->n, b->n);
	for (unsigned i = 0; i < a->n; i++)
		if (memcmp(&a->e[i], &b->e[i], sizeof(a->e[i])) != 0)
			fail_msg("%s: name 0x%x changed: type 0x%x->0x%x send %u->%u so %u->%u "
			    "dead %u->%u recv %u->%u msgcount %u->%u srights %d->%d sorights %u->%u "
			    "mscount %u->%u", what, a->e[i].name, a->e[i].type, b->e[i].type,
			    a->e[i].send, b->e[i].send, a->e[i].sonce, b->e[i].sonce, a->e[i].dead,
			    b->e[i].dead, a->e[i].recv, b->e[i].recv, a->e[i].st.mps_msgcount,
			    b->e[i].st.mps_msgcount, a->e[i].st.mps_srights, b->e[i].st.mps_srights,
			    a->e[i].st.mps_sorights, b->e[i].st.mps_sorights, a->e[i].st.mps_mscount,
			    b->e[i].st.mps_mscount);
}

/* ---- the cases ------------------------------------------------------------------------ */

#define F_OOL     0x1u   /* out of line (pointer to a readable static buffer) */
#define F_LONG    0x2u   /* long-form descriptor */
#define F_DEALLOC 0x4u
#define F_UNUSED  0x8u   /* set msgt_unused */

struct item {
	unsigned name, size, number, flags;
	enum role ports[4];   /* for port items of size 32: the names, in order */
};

struct mcase {
	const char *what;
	mach_msg_bits_t bits;           /* complete msgh_bits */
	enum role dest, reply;
	struct item items[3];
	int size_delta;                 /* added to the natural size */
	uint64_t exact_size;            /* if not 0: the send size, whatever the content */
	mach_msg_option_t option;       /* added to MACH_SEND_MSG */
	mach_msg_return_t expect;
};

#define SIZE_ZERO    ((uint64_t)1 << 32) /* exact size 0 (0 means "natural") */
#define BITS(d, r)   MACH_MSGH_BITS(MACH_MSG_TYPE_##d, MACH_MSG_TYPE_##r)
#define BITSD(d)     MACH_MSGH_BITS(MACH_MSG_TYPE_##d, 0)
#define CBITSD(d)    (MACH_MSGH_BITS_COMPLEX | BITSD(d))
#define CBITS(d, r)  (MACH_MSGH_BITS_COMPLEX | BITS(d, r))
#define I32(n)       { MACH_MSG_TYPE_INTEGER_32, 32, (n), 0, { 0 } }
#define PORTS(t, ...) { MACH_MSG_TYPE_##t, 32, sizeof((enum role[]){ __VA_ARGS__ }) / \
	sizeof(enum role), 0, { __VA_ARGS__ } }
#define OOLPORTS(t, ...) { MACH_MSG_TYPE_##t, 32, sizeof((enum role[]){ __VA_ARGS__ }) / \
	sizeof(enum role), F_OOL, { __VA_ARGS__ } }

static const struct mcase cases[] = {
	/* -- send size -- */
	{ "size 0", BITSD(COPY_SEND), N_D, 0, { { 0 } }, 0, SIZE_ZERO, 0,
	  MACH_SEND_MSG_TOO_SMALL },
	{ "size 4", BITSD(COPY_SEND), N_D, 0, { { 0 } }, 0, 4, 0, MACH_SEND_MSG_TOO_SMALL },
	{ "size 20 < header", BITSD(COPY_SEND), N_D, 0, { { 0 } }, 0, 20, 0,
	  MACH_SEND_MSG_TOO_SMALL },
	{ "size 23", BITSD(COPY_SEND), N_D, 0, { { 0 } }, 0, 23, 0, MACH_SEND_MSG_TOO_SMALL },
	{ "size 25 not a multiple of 4", BITSD(COPY_SEND), N_D, 0, { { 0 } }, 0, 25, 0,
	  MACH_SEND_MSG_TOO_SMALL },
	{ "size 30 not a multiple of 4", BITSD(COPY_SEND), N_D, 0, { { 0 } }, 0, 30, 0,
	  MACH_SEND_MSG_TOO_SMALL },
	{ "complex, size 2 past an item", CBITSD(COPY_SEND), N_D, 0, { I32(1) }, 2, 0, 0,
	  MACH_SEND_MSG_TOO_SMALL },
	{ "size 0xffffffff", BITSD(COPY_SEND), N_D, 0, { { 0 } }, 0, 0xffffffffu, 0,
	  MACH_SEND_MSG_TOO_SMALL },
	{ "size 0xfffffffc (huge)", BITSD(COPY_SEND), N_D, 0, { { 0 } }, 0, 0xfffffffcu, 0,
	  MACH_SEND_NO_BUFFER },
	{ "size 1 GiB (huge)", BITSD(COPY_SEND), N_D, 0, { { 0 } }, 0, 1u << 30, 0,
	  MACH_SEND_NO_BUFFER },

	/* -- header bits -- */
	{ "unknown bit 16", BITSD(COPY_SEND) | 0x10000u, N_D, 0, { { 0 } }, 0, 0, 0,
	  MACH_SEND_INVALID_HEADER },
	{ "unknown bit 29", BITSD(COPY_SEND) | 0x20000000u, N_D, 0, { { 0 } }, 0, 0, 0,
	  MACH_SEND_INVALID_HEADER },
	{ "unknown bit 30", BITSD(COPY_SEND) | 0x40000000u, N_D, 0, { { 0 } }, 0, 0, 0,
	  MACH_SEND_INVALID_HEADER },
	{ "unknown bits 16-30", BITSD(COPY_SEND) | 0x7fff0000u, N_D, 0, { { 0 } }, 0, 0, 0,
	  MACH_SEND_INVALID_HEADER },
	{ "dest disposition 0", MACH_MSGH_BITS(0, 0), N_D, 0, { { 0 } }, 0, 0, 0,
	  MACH_SEND_INVALID_HEADER },
	{ "dest disposition 1", MACH_MSGH_BITS(1, 0), N_D, 0, { { 0 } }, 0, 0, 0,
	  MACH_SEND_INVALID_HEADER },
	{ "dest disposition 15 PORT_NAME", MACH_MSGH_BITS(15, 0), N_D, 0, { { 0 } }, 0, 0, 0,
	  MACH_SEND_INVALID_HEADER },
	{ "dest disposition 16 MOVE_RECEIVE", MACH_MSGH_BITS(16, 0), N_D, 0, { { 0 } }, 0, 0, 0,
	  MACH_SEND_INVALID_HEADER },
	{ "dest disposition 22", MACH_MSGH_BITS(22, 0), N_D, 0, { { 0 } }, 0, 0, 0,
	  MACH_SEND_INVALID_HEADER },
	{ "dest disposition 255", MACH_MSGH_BITS(255, 0), N_D, 0, { { 0 } }, 0, 0, 0,
	  MACH_SEND_INVALID_HEADER },
	{ "reply disposition 0 with a reply name", BITSD(COPY_SEND), N_D, N_R, { { 0 } }, 0, 0,
	  0, MACH_SEND_INVALID_HEADER },
	{ "reply disposition 15", MACH_MSGH_BITS(MACH_MSG_TYPE_COPY_SEND, 15), N_D, N_R,
	  { { 0 } }, 0, 0, 0, MACH_SEND_INVALID_HEADER },
	{ "reply disposition 16 MOVE_RECEIVE", MACH_MSGH_BITS(MACH_MSG_TYPE_COPY_SEND, 16), N_D,
	  N_R, { { 0 } }, 0, 0, 0, MACH_SEND_INVALID_HEADER },
	{ "reply disposition 22", MACH_MSGH_BITS(MACH_MSG_TYPE_COPY_SEND, 22), N_D, N_R,
	  { { 0 } }, 0, 0, 0, MACH_SEND_INVALID_HEADER },
	{ "reply disposition 255", MACH_MSGH_BITS(MACH_MSG_TYPE_COPY_SEND, 255), N_D, N_R,
	  { { 0 } }, 0, 0, 0, MACH_SEND_INVALID_HEADER },
	/* Mach checks the reply disposition even when the reply name is null. */
	{ "reply disposition 16, null reply", MACH_MSGH_BITS(MACH_MSG_TYPE_COPY_SEND, 16), N_D,
	  N_NULL, { { 0 } }, 0, 0, 0, MACH_SEND_INVALID_HEADER },
	{ "reply disposition 22, null reply", MACH_MSGH_BITS(MACH_MSG_TYPE_COPY_SEND, 22), N_D,
	  N_NULL, { { 0 } }, 0, 0, 0, MACH_SEND_INVALID_HEADER },
	{ "bad dest disposition and bad dest", MACH_MSGH_BITS(16, 0), N_UNKNOWN, 0, { { 0 } },
	  0, 0, 0, MACH_SEND_INVALID_HEADER },

	/* -- destination -- */
	{ "dest NULL", BITSD(COPY_SEND), N_NULL, 0, { { 0 } }, 0, 0, 0, MACH_SEND_INVALID_DEST },
	{ "dest NULL make-send", BITSD(MAKE_SEND), N_NULL, 0, { { 0 } }, 0, 0, 0,
	  MACH_SEND_INVALID_DEST },
	{ "dest DEAD", BITSD(COPY_SEND), N_DEAD, 0, { { 0 } }, 0, 0, 0, MACH_SEND_INVALID_DEST },
	{ "dest DEAD move-send-once", BITSD(MOVE_SEND_ONCE), N_DEAD, 0, { { 0 } }, 0, 0, 0,
	  MACH_SEND_INVALID_DEST },
	{ "dest unknown", BITSD(COPY_SEND), N_UNKNOWN, 0, { { 0 } }, 0, 0, 0,
	  MACH_SEND_INVALID_DEST },
	{ "dest stale", BITSD(MAKE_SEND), N_STALE, 0, { { 0 } }, 0, 0, 0, MACH_SEND_INVALID_DEST },
	{ "dest task self", BITSD(COPY_SEND), N_TASK, 0, { { 0 } }, 0, 0, 0,
	  MACH_SEND_INVALID_DEST },
	{ "dest dead name copy-send", BITSD(COPY_SEND), N_DN, 0, { { 0 } }, 0, 0, 0,
	  MACH_SEND_INVALID_DEST },
	{ "dest dead name move-send", BITSD(MOVE_SEND), N_DN, 0, { { 0 } }, 0, 0, 0,
	  MACH_SEND_INVALID_DEST },
	{ "dest dead name make-send", BITSD(MAKE_SEND), N_DN, 0, { { 0 } }, 0, 0, 0,
	  MACH_SEND_INVALID_DEST },
	{ "dest port set make-send", BITSD(MAKE_SEND), N_PS, 0, { { 0 } }, 0, 0, 0,
	  MACH_SEND_INVALID_DEST },
	{ "dest port set copy-send", BITSD(COPY_SEND), N_PS, 0, { { 0 } }, 0, 0, 0,
	  MACH_SEND_INVALID_DEST },
	{ "dest receive-only copy-send", BITSD(COPY_SEND), N_R, 0, { { 0 } }, 0, 0, 0,
	  MACH_SEND_INVALID_DEST },
	{ "dest receive-only move-send", BITSD(MOVE_SEND), N_R, 0, { { 0 } }, 0, 0, 0,
	  MACH_SEND_INVALID_DEST },
	{ "dest receive-only move-send-once", BITSD(MOVE_SEND_ONCE), N_R, 0, { { 0 } }, 0, 0, 0,
	  MACH_SEND_INVALID_DEST },
	{ "dest send right move-send-once", BITSD(MOVE_SEND_ONCE), N_D, 0, { { 0 } }, 0, 0, 0,
	  MACH_SEND_INVALID_DEST },
	{ "dest send-once copy-send", BITSD(COPY_SEND), N_SO, 0, { { 0 } }, 0, 0, 0,
	  MACH_SEND_INVALID_DEST },
	{ "dest send-once move-send", BITSD(MOVE_SEND), N_SO, 0, { { 0 } }, 0, 0, 0,
	  MACH_SEND_INVALID_DEST },
	{ "dest send-once make-send-once", BITSD(MAKE_SEND_ONCE), N_SO, 0, { { 0 } }, 0, 0, 0,
	  MACH_SEND_INVALID_DEST },
	{ "dest send-only make-send", BITSD(MAKE_SEND), N_CA, 0, { { 0 } }, 0, 0, 0,
	  MACH_SEND_INVALID_DEST },
	{ "dest send-only make-send-once", BITSD(MAKE_SEND_ONCE), N_CA, 0, { { 0 } }, 0, 0, 0,
	  MACH_SEND_INVALID_DEST },
	{ "bad dest and bad reply", BITS(COPY_SEND, MAKE_SEND_ONCE), N_UNKNOWN, N_UNKNOWN,
	  { { 0 } }, 0, 0, 0, MACH_SEND_INVALID_DEST },
	{ "bad dest and bad body", CBITSD(COPY_SEND), N_UNKNOWN, 0,
	  { PORTS(COPY_SEND, N_UNKNOWN) }, 0, 0, 0, MACH_SEND_INVALID_DEST },

	/* -- reply -- */
	{ "reply unknown", BITS(COPY_SEND, MAKE_SEND_ONCE), N_D, N_UNKNOWN, { { 0 } }, 0, 0, 0,
	  MACH_SEND_INVALID_REPLY },
	{ "reply stale", BITS(COPY_SEND, COPY_SEND), N_D, N_STALE, { { 0 } }, 0, 0, 0,
	  MACH_SEND_INVALID_REPLY },
	{ "reply task self", BITS(COPY_SEND, COPY_SEND), N_D, N_TASK, { { 0 } }, 0, 0, 0,
	  MACH_SEND_INVALID_REPLY },
	{ "reply port set", BITS(COPY_SEND, MAKE_SEND), N_D, N_PS, { { 0 } }, 0, 0, 0,
	  MACH_SEND_INVALID_REPLY },
	{ "reply receive-only copy-send", BITS(COPY_SEND, COPY_SEND), N_D, N_R, { { 0 } }, 0, 0,
	  0, MACH_SEND_INVALID_REPLY },
	{ "reply send-once move-send", BITS(COPY_SEND, MOVE_SEND), N_D, N_SO, { { 0 } }, 0, 0, 0,
	  MACH_SEND_INVALID_REPLY },
	{ "reply send-only make-send-once", BITS(COPY_SEND, MAKE_SEND_ONCE), N_D, N_CA,
	  { { 0 } }, 0, 0, 0, MACH_SEND_INVALID_REPLY },
	{ "reply dead name make-send", BITS(COPY_SEND, MAKE_SEND), N_D, N_DN, { { 0 } }, 0, 0, 0,
	  MACH_SEND_INVALID_REPLY },
	{ "send-once moved as dest and reply", BITS(MOVE_SEND_ONCE, MOVE_SEND_ONCE), N_SO, N_SO,
	  { { 0 } }, 0, 0, 0, MACH_SEND_INVALID_REPLY },
	{ "bad reply and bad body", CBITS(COPY_SEND, MAKE_SEND), N_D, N_UNKNOWN,
	  { PORTS(COPY_SEND, N_UNKNOWN) }, 0, 0, 0, MACH_SEND_INVALID_REPLY },

	/* -- body layout -- */
	{ "truncated descriptor", CBITSD(COPY_SEND), N_D, 0, { I32(1) }, 0, 28, 0,
	  MACH_SEND_MSG_TOO_SMALL },
	{ "truncated long descriptor (8 of 16)", CBITSD(COPY_SEND), N_D, 0,
	  { { MACH_MSG_TYPE_INTEGER_32, 32, 1, F_LONG, { 0 } } }, 0, 32, 0,
	  MACH_SEND_MSG_TOO_SMALL },
	{ "truncated long descriptor (12 of 16)", CBITSD(COPY_SEND), N_D, 0,
	  { { MACH_MSG_TYPE_INTEGER_32, 32, 1, F_LONG, { 0 } } }, 0, 36, 0,
	  MACH_SEND_MSG_TOO_SMALL },
	{ "truncated inline data", CBITSD(COPY_SEND), N_D, 0, { I32(4) }, -8, 0, 0,
	  MACH_SEND_MSG_TOO_SMALL },
	{ "truncated inline data by 4", CBITSD(COPY_SEND), N_D, 0, { I32(3) }, -4, 0, 0,
	  MACH_SEND_MSG_TOO_SMALL },
	{ "no inline data at all", CBITSD(COPY_SEND), N_D, 0, { I32(2) }, -8, 0, 0,
	  MACH_SEND_MSG_TOO_SMALL },
	{ "truncated long-form data", CBITSD(COPY_SEND), N_D, 0,
	  { { MACH_MSG_TYPE_BYTE, 8, 100, F_LONG, { 0 } } }, -4, 0, 0, MACH_SEND_MSG_TOO_SMALL },
	{ "huge long-form number", CBITSD(COPY_SEND), N_D, 0,
	  { { MACH_MSG_TYPE_INTEGER_64, 64, 0xffffffffu, F_LONG, { 0 } } }, 0, 48, 0,
	  MACH_SEND_MSG_TOO_SMALL },
	{ "truncated out-of-line pointer", CBITSD(COPY_SEND), N_D, 0,
	  { { MACH_MSG_TYPE_BYTE, 8, 16, F_OOL, { 0 } } }, -4, 0, 0, MACH_SEND_MSG_TOO_SMALL },
	{ "truncated inline ports after a move", CBITSD(COPY_SEND), N_D, 0,
	  { PORTS(MOVE_SEND, N_S), PORTS(COPY_SEND, N_D, N_D) }, -4, 0, 0,
	  MACH_SEND_MSG_TOO_SMALL },
	{ "msgt_unused set", CBITSD(COPY_SEND), N_D, 0,
	  { { MACH_MSG_TYPE_INTEGER_32, 32, 1, F_UNUSED, { 0 } } }, 0, 0, 0,
	  MACH_SEND_INVALID_TYPE },
	{ "msgt_unused set, long form", CBITSD(COPY_SEND), N_D, 0,
	  { { MACH_MSG_TYPE_INTEGER_32, 32, 1, F_UNUSED | F_LONG, { 0 } } }, 0, 0, 0,
	  MACH_SEND_INVALID_TYPE },
	{ "msgt_unused on a port item", CBITSD(COPY_SEND), N_D, 0,
	  { { MACH_MSG_TYPE_MOVE_SEND, 32, 1, F_UNUSED, { N_S } } }, 0, 0, 0,
	  MACH_SEND_INVALID_TYPE },
	{ "type name 22", CBITSD(COPY_SEND), N_D, 0, { { 22, 32, 1, 0, { 0 } } }, 0, 0, 0,
	  MACH_SEND_INVALID_TYPE },
	{ "type name 23", CBITSD(COPY_SEND), N_D, 0, { { 23, 32, 1, 0, { 0 } } }, 0, 0, 0,
	  MACH_SEND_INVALID_TYPE },
	{ "type name 24", CBITSD(COPY_SEND), N_D, 0, { { 24, 32, 1, 0, { 0 } } }, 0, 0, 0,
	  MACH_SEND_INVALID_TYPE },
	{ "type name 100", CBITSD(COPY_SEND), N_D, 0, { { 100, 8, 4, 0, { 0 } } }, 0, 0, 0,
	  MACH_SEND_INVALID_TYPE },
	{ "type name 255", CBITSD(COPY_SEND), N_D, 0, { { 255, 32, 1, 0, { 0 } } }, 0, 0, 0,
	  MACH_SEND_INVALID_TYPE },
	{ "type name 255 out of line", CBITSD(COPY_SEND), N_D, 0,
	  { { 255, 8, 16, F_OOL, { 0 } } }, 0, 0, 0, MACH_SEND_INVALID_TYPE },
	{ "long type name 24", CBITSD(COPY_SEND), N_D, 0, { { 24, 32, 1, F_LONG, { 0 } } }, 0, 0,
	  0, MACH_SEND_INVALID_TYPE },
	{ "long type name 256", CBITSD(COPY_SEND), N_D, 0, { { 256, 32, 1, F_LONG, { 0 } } }, 0,
	  0, 0, MACH_SEND_INVALID_TYPE },
	{ "long type name 0xffff", CBITSD(COPY_SEND), N_D, 0,
	  { { 0xffff, 32, 1, F_LONG, { 0 } } }, 0, 0, 0, MACH_SEND_INVALID_TYPE },
	{ "long type name 0x111 (0x11 MOVE_SEND in the low byte)", CBITSD(COPY_SEND), N_D, 0,
	  { { 0x111, 32, 1, F_LONG, { N_S } } }, 0, 0, 0, MACH_SEND_INVALID_TYPE },
	{ "bad type after a move", CBITSD(COPY_SEND), N_D, 0,
	  { PORTS(MOVE_SEND, N_S), { 23, 32, 1, 0, { 0 } } }, 0, 0, 0, MACH_SEND_INVALID_TYPE },
	{ "port size 0", CBITSD(COPY_SEND), N_D, 0,
	  { { MACH_MSG_TYPE_COPY_SEND, 0, 1, 0, { 0 } } }, 0, 0, 0, MACH_SEND_INVALID_TYPE },
	{ "port size 8", CBITSD(COPY_SEND), N_D, 0,
	  { { MACH_MSG_TYPE_COPY_SEND, 8, 4, 0, { 0 } } }, 0, 0, 0, MACH_SEND_INVALID_TYPE },
	{ "port size 16", CBITSD(COPY_SEND), N_D, 0,
	  { { MACH_MSG_TYPE_MAKE_SEND, 16, 2, 0, { 0 } } }, 0, 0, 0, MACH_SEND_INVALID_TYPE },
	{ "port size 64", CBITSD(COPY_SEND), N_D, 0,
	  { { MACH_MSG_TYPE_MOVE_RECEIVE, 64, 1, 0, { 0 } } }, 0, 0, 0, MACH_SEND_INVALID_TYPE },
	{ "port size 64, long form", CBITSD(COPY_SEND), N_D, 0,
	  { { MACH_MSG_TYPE_COPY_SEND, 64, 1, F_LONG, { 0 } } }, 0, 0, 0,
	  MACH_SEND_INVALID_TYPE },
	{ "port size 64, out of line", CBITSD(COPY_SEND), N_D, 0,
	  { { MACH_MSG_TYPE_COPY_SEND, 64, 1, F_OOL, { 0 } } }, 0, 0, 0, MACH_SEND_INVALID_TYPE },
	{ "inline port with deallocate", CBITSD(COPY_SEND), N_D, 0,
	  { { MACH_MSG_TYPE_MOVE_SEND, 32, 1, F_DEALLOC, { N_S } } }, 0, 0, 0,
	  MACH_SEND_INVALID_TYPE },
	{ "inline port with deallocate, long form", CBITSD(COPY_SEND), N_D, 0,
	  { { MACH_MSG_TYPE_COPY_SEND, 32, 1, F_DEALLOC | F_LONG, { N_S } } }, 0, 0, 0,
	  MACH_SEND_INVALID_TYPE },

	/* -- rights in the body -- */
	{ "copy-send unknown after a move-send", CBITSD(COPY_SEND), N_D, 0,
	  { PORTS(MOVE_SEND, N_S), PORTS(COPY_SEND, N_UNKNOWN) }, 0, 0, 0,
	  MACH_SEND_INVALID_RIGHT },
	{ "move-send [S, unknown]", CBITSD(COPY_SEND), N_D, 0,
	  { PORTS(MOVE_SEND, N_S, N_UNKNOWN) }, 0, 0, 0, MACH_SEND_INVALID_RIGHT },
	{ "move-receive then stale", CBITSD(COPY_SEND), N_D, 0,
	  { PORTS(MOVE_RECEIVE, N_X), PORTS(COPY_SEND, N_STALE) }, 0, 0, 0,
	  MACH_SEND_INVALID_RIGHT },
	{ "make-send-once, then task self", CBITSD(COPY_SEND), N_D, 0,
	  { PORTS(MAKE_SEND_ONCE, N_R), PORTS(MAKE_SEND, N_TASK) }, 0, 0, 0,
	  MACH_SEND_INVALID_RIGHT },
	{ "out-of-line [S, unknown]", CBITSD(COPY_SEND), N_D, 0,
	  { OOLPORTS(MOVE_SEND, N_S, N_UNKNOWN) }, 0, 0, 0, MACH_SEND_INVALID_RIGHT },
	{ "move-receive of a send-only name", CBITSD(COPY_SEND), N_D, 0,
	  { PORTS(MOVE_RECEIVE, N_CA) }, 0, 0, 0, MACH_SEND_INVALID_RIGHT },
	{ "move-receive of a send-once name", CBITSD(COPY_SEND), N_D, 0,
	  { PORTS(MOVE_RECEIVE, N_SO) }, 0, 0, 0, MACH_SEND_INVALID_RIGHT },
	{ "move-receive of a dead name", CBITSD(COPY_SEND), N_D, 0,
	  { PORTS(MOVE_RECEIVE, N_DN) }, 0, 0, 0, MACH_SEND_INVALID_RIGHT },
	{ "move-receive of DEAD", CBITSD(COPY_SEND), N_D, 0,
	  { PORTS(MOVE_RECEIVE, N_DEAD) }, 0, 0, 0, MACH_SEND_INVALID_RIGHT },
	{ "move-receive of a port set", CBITSD(COPY_SEND), N_D, 0,
	  { PORTS(MOVE_RECEIVE, N_PS) }, 0, 0, 0, MACH_SEND_INVALID_RIGHT },
	{ "make-send of a send-only name", CBITSD(COPY_SEND), N_D, 0,
	  { PORTS(MAKE_SEND, N_CA) }, 0, 0, 0, MACH_SEND_INVALID_RIGHT },
	{ "make-send of a port set", CBITSD(COPY_SEND), N_D, 0,
	  { PORTS(MAKE_SEND, N_PS) }, 0, 0, 0, MACH_SEND_INVALID_RIGHT },
	{ "make-send of a dead name", CBITSD(COPY_SEND), N_D, 0,
	  { PORTS(MAKE_SEND, N_DN) }, 0, 0, 0, MACH_SEND_INVALID_RIGHT },
	{ "make-send-once of a send-once name", CBITSD(COPY_SEND), N_D, 0,
	  { PORTS(MAKE_SEND_ONCE, N_SO) }, 0, 0, 0, MACH_SEND_INVALID_RIGHT },
	{ "copy-send of a receive-only name", CBITSD(COPY_SEND), N_D, 0,
	  { PORTS(COPY_SEND, N_R) }, 0, 0, 0, MACH_SEND_INVALID_RIGHT },
	{ "copy-send of a send-once name", CBITSD(COPY_SEND), N_D, 0,
	  { PORTS(COPY_SEND, N_SO) }, 0, 0, 0, MACH_SEND_INVALID_RIGHT },
	{ "move-send-once of a send right", CBITSD(COPY_SEND), N_D, 0,
	  { PORTS(MOVE_SEND_ONCE, N_S) }, 0, 0, 0, MACH_SEND_INVALID_RIGHT },
	{ "move-send of a port set", CBITSD(COPY_SEND), N_D, 0,
	  { PORTS(MOVE_SEND, N_PS) }, 0, 0, 0, MACH_SEND_INVALID_RIGHT },
	{ "move the destination's own receive right (copy-send)", CBITSD(COPY_SEND), N_D, 0,
	  { PORTS(MOVE_RECEIVE, N_D) }, 0, 0, 0, MACH_SEND_INVALID_RIGHT },
	{ "move the destination's own receive right (make-send)", CBITSD(MAKE_SEND), N_X, 0,
	  { PORTS(MOVE_RECEIVE, N_X) }, 0, 0, 0, MACH_SEND_INVALID_RIGHT },
	{ "move the destination's own receive right (make-send-once)", CBITSD(MAKE_SEND_ONCE),
	  N_X, 0, { PORTS(MOVE_RECEIVE, N_X) }, 0, 0, 0, MACH_SEND_INVALID_RIGHT },
	{ "move the destination's own receive right, out of line", CBITSD(MAKE_SEND), N_X, 0,
	  { OOLPORTS(MOVE_RECEIVE, N_S, N_X) }, 0, 0, 0, MACH_SEND_INVALID_RIGHT },
	{ "move CB's receive right to A, whose receive right is in transit to CB (2-cycle)",
	  CBITSD(COPY_SEND), N_CA, 0, { PORTS(MOVE_RECEIVE, N_CB) }, 0, 0, 0,
	  MACH_SEND_INVALID_RIGHT },
	{ "2-cycle with other rights before", CBITSD(COPY_SEND), N_CA, 0,
	  { PORTS(MOVE_SEND, N_S), PORTS(MOVE_RECEIVE, N_X, N_CB) }, 0, 0, 0,
	  MACH_SEND_INVALID_RIGHT },
	{ "move-receive twice", CBITSD(COPY_SEND), N_D, 0,
	  { PORTS(MOVE_RECEIVE, N_X, N_X) }, 0, 0, 0, MACH_SEND_INVALID_RIGHT },
	{ "move-receive then make-send of it", CBITSD(COPY_SEND), N_D, 0,
	  { PORTS(MOVE_RECEIVE, N_X), PORTS(MAKE_SEND, N_X) }, 0, 0, 0,
	  MACH_SEND_INVALID_RIGHT },
	{ "move-receive then make-send-once of it", CBITSD(COPY_SEND), N_D, 0,
	  { PORTS(MOVE_RECEIVE, N_X), PORTS(MAKE_SEND_ONCE, N_X) }, 0, 0, 0,
	  MACH_SEND_INVALID_RIGHT },
	{ "move-send twice with one uref", CBITSD(COPY_SEND), N_D, 0,
	  { PORTS(MOVE_SEND, N_S, N_S) }, 0, 0, 0, MACH_SEND_INVALID_RIGHT },
	{ "move-send twice in two items", CBITSD(COPY_SEND), N_D, 0,
	  { PORTS(MOVE_SEND, N_S), PORTS(MOVE_SEND, N_S) }, 0, 0, 0, MACH_SEND_INVALID_RIGHT },
	{ "move-send then copy-send with one uref", CBITSD(COPY_SEND), N_D, 0,
	  { PORTS(MOVE_SEND, N_S), PORTS(COPY_SEND, N_S) }, 0, 0, 0, MACH_SEND_INVALID_RIGHT },
	{ "dest move-send, body move-send, one uref", CBITSD(MOVE_SEND), N_S, 0,
	  { PORTS(MOVE_SEND, N_S) }, 0, 0, 0, MACH_SEND_INVALID_RIGHT },
	{ "dest move-send, body copy-send, one uref", CBITSD(MOVE_SEND), N_S, 0,
	  { PORTS(COPY_SEND, N_S) }, 0, 0, 0, MACH_SEND_INVALID_RIGHT },
	{ "move-send of a dead name twice, one uref", CBITSD(COPY_SEND), N_D, 0,
	  { PORTS(MOVE_SEND, N_DN, N_DN) }, 0, 0, 0, MACH_SEND_INVALID_RIGHT },
	{ "move-send-once twice", CBITSD(COPY_SEND), N_D, 0,
	  { PORTS(MOVE_SEND_ONCE, N_SO, N_SO) }, 0, 0, 0, MACH_SEND_INVALID_RIGHT },
	{ "dest move-send-once, body move-send-once of it", CBITSD(MOVE_SEND_ONCE), N_SO, 0,
	  { PORTS(MOVE_SEND_ONCE, N_SO) }, 0, 0, 0, MACH_SEND_INVALID_RIGHT },
	{ "reply move-send-once, body move-send-once of it", CBITS(COPY_SEND, MOVE_SEND_ONCE),
	  N_D, N_SO, { PORTS(MOVE_SEND_ONCE, N_SO) }, 0, 0, 0, MACH_SEND_INVALID_RIGHT },
	{ "reply move-send, body move-send, one uref", CBITS(COPY_SEND, MOVE_SEND), N_D, N_S,
	  { PORTS(MOVE_SEND, N_S) }, 0, 0, 0, MACH_SEND_INVALID_RIGHT },

	/* -- options -- */
	{ "MACH_SEND_NOTIFY", BITSD(COPY_SEND), N_D, 0, { { 0 } }, 0, 0, MACH_SEND_NOTIFY,
	  MACH_SEND_INVALID_NOTIFY },
};

/* ---- the builder ---------------------------------------------------------------------- */

static union {
	mach_msg_header_t h;
	uint64_t align;                 /* body items are 8-byte aligned */
	uint8_t b[8192];
} buf;

static uint8_t ool_data[4096];
static mach_port_t ool_ports[3][4];

static size_t
align8(size_t x)
{
	return (x + 7) & ~(size_t)7;
}

static bool
item_present(const struct item *it)
{
	return it->name != 0 || it->size != 0 || it->number != 0 || it->flags != 0;
}

static mach_port_t
resolve(enum role r)
{
	return r == N_NONE ? MACH_PORT_NULL : names[r];
}

static mach_msg_size_t
build(const struct mcase *c)
{
	size_t pos = sizeof(mach_msg_header_t);

	memset(&buf, 0, sizeof(buf));
	buf.h.msgh_bits = c->bits;
	buf.h.msgh_remote_port = resolve(c->dest);
	buf.h.msgh_local_port = resolve(c->reply);
	buf.h.msgh_id = 7;
	for (int i = 0; i < 3 && item_present(&c->items[i]); i++) {
		const struct item *it = &c->items[i];
		bool isport = it->name >= MACH_MSG_TYPE_MOVE_RECEIVE &&
		    it->name <= MACH_MSG_TYPE_MAKE_SEND_ONCE;
		uint64_t len = ((uint64_t)it->number * it->size + 7) / 8;
		mach_msg_type_t *t = (mach_msg_type_t *)&buf.b[pos];

		t->msgt_inline = (it->flags & F_OOL) ? 0 : 1;
		t->msgt_deallocate = (it->flags & F_DEALLOC) ? 1 : 0;
		t->msgt_unused = (it->flags & F_UNUSED) ? 1 : 0;
		if (it->flags & F_LONG) {
			mach_msg_type_long_t *lt = (mach_msg_type_long_t *)t;

			t->msgt_longform = 1;
			lt->msgtl_name = (unsigned short)it->name;
			lt->msgtl_size = (unsigned short)it->size;
			lt->msgtl_number = it->number;
			pos += sizeof(*lt);
		} else {
			t->msgt_name = it->name & 0xff;
			t->msgt_size = it->size & 0xff;
			t->msgt_number = it->number & 0xfff;
			pos += sizeof(*t);
		}
		if (it->flags & F_OOL) {
			vm_offset_t p = (vm_offset_t)ool_data;

			if (isport && it->size == 32) {
				for (unsigned k = 0; k < it->number && k < 4; k++)
					ool_ports[i][k] = resolve(it->ports[k]);
				p = (vm_offset_t)ool_ports[i];
			}
			memcpy(&buf.b[pos], &p, sizeof(p));
			pos += sizeof(p);
		} else if (len < 1024) {
			if (isport && it->size == 32) {
				for (unsigned k = 0; k < it->number && k < 4; k++) {
					mach_port_t n = resolve(it->ports[k]);

					memcpy(&buf.b[pos + 4 * k], &n, sizeof(n));
				}
			} else if (it->name == 0x111) {
				mach_port_t n = resolve(it->ports[0]);

				memcpy(&buf.b[pos], &n, sizeof(n));
			} else {
				for (uint64_t k = 0; k < len; k++)
					buf.b[pos + k] = (uint8_t)(k + 1);
			}
			pos += len;
		}
		if (i + 1 < 3 && item_present(&c->items[i + 1]))
			pos = align8(pos);
	}
	pos = (pos + 3) & ~(size_t)3;
	if (c->exact_size != 0)
		return (mach_msg_size_t)c->exact_size; /* SIZE_ZERO truncates to 0 */
	return (mach_msg_size_t)((long)pos + c->size_delta);
}

/* ---- the runner ----------------------------------------------------------------------- */

static void
test_malformed_table(void **state)
{
	struct snap before, after;
	int failed = 0;

	(void)state;
	fixture_setup(NULL);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct mcase *c = &cases[i];
		mach_msg_size_t size = build(c);
		mach_msg_return_t mr;
		char what[160];

		snprintf(what, sizeof(what), "case %zu \"%s\"", i, c->what);
		snapshot(&before);
		mr = mach_msg(&buf.h, MACH_SEND_MSG | c->option, size, 0, MACH_PORT_NULL, 0,
		    MACH_PORT_NULL);
		if (mr != c->expect) {
			print_error("%s: returned %s, expected %s\n", what, mvm_errname(mr),
			    mvm_errname(c->expect));
			failed++;
			if (mr == MACH_MSG_SUCCESS) {
				/* Rebuild the fixture: the send took rights. */
				fixture_teardown(NULL);
				fixture_setup(NULL);
			}
			continue;
		}
		snapshot(&after);
		snap_compare(what, &before, &after);
	}
	if (failed)
		fail_msg("%d of %zu cases returned the wrong code", failed,
		    sizeof(cases) / sizeof(cases[0]));
	fixture_teardown(NULL);
	MVM_TEST_QUIESCENT();
}

/* The same message becomes valid once the one thing wrong with it is fixed. */
static void
test_controls_succeed(void **state)
{
	static const struct mcase ok[] = {
		{ "plain", BITSD(COPY_SEND), N_D, 0, { { 0 } }, 0, 0, 0, MACH_MSG_SUCCESS },
		{ "null reply with disposition 0", BITSD(COPY_SEND), N_D, N_NULL, { { 0 } }, 0, 0,
		  0, MACH_MSG_SUCCESS },
		{ "complex", CBITSD(COPY_SEND), N_D, 0, { I32(4) }, 0, 0, 0, MACH_MSG_SUCCESS },
		{ "to a member of a set", BITSD(MAKE_SEND), N_MEMBER, 0, { { 0 } }, 0, 0, 0,
		  MACH_MSG_SUCCESS },
		{ "reply dead name copy-send", BITS(COPY_SEND, COPY_SEND), N_D, N_DN, { { 0 } }, 0,
		  0, 0, MACH_MSG_SUCCESS },
		{ "copy-send twice with one uref", CBITSD(COPY_SEND), N_D, 0,
		  { PORTS(COPY_SEND, N_S, N_S) }, 0, 0, 0, MACH_MSG_SUCCESS },
		{ "move-receive of NULL and port names", CBITSD(COPY_SEND), N_D, 0,
		  { PORTS(MOVE_RECEIVE, N_NULL), { MACH_MSG_TYPE_PORT_NAME, 32, 2, 0, { 0 } } }, 0,
		  0, 0, MACH_MSG_SUCCESS },
		{ "receive right to a port not in its chain", CBITSD(COPY_SEND), N_CA, 0,
		  { PORTS(MOVE_RECEIVE, N_X) }, 0, 0, 0, MACH_MSG_SUCCESS },
	};
	struct {
		mach_msg_header_t h;
		uint8_t b[512];
	} r;

	(void)state;
	fixture_setup(NULL);
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		mach_msg_size_t size = build(&ok[i]);
		mach_port_t rcv;

		print_message("control %s\n", ok[i].what);
		assert_kr(mach_msg(&buf.h, MACH_SEND_MSG, size, 0, MACH_PORT_NULL, 0,
		    MACH_PORT_NULL), MACH_MSG_SUCCESS);
		if (ok[i].dest == N_CA) {
			/* Its receive right is in transit: rebuild the fixture to release it. */
			fixture_teardown(NULL);
			fixture_setup(NULL);
			continue;
		}
		rcv = ok[i].dest == N_MEMBER ? names[N_PS] : names[ok[i].dest];
		assert_kr(mach_msg(&r.h, MACH_RCV_MSG | MACH_RCV_TIMEOUT, 0, sizeof(r), rcv, 0,
		    MACH_PORT_NULL), MACH_MSG_SUCCESS);
		assert_int_equal(r.h.msgh_size, size);
		mach_msg_destroy(&r.h);
	}
	/* A null message pointer. */
	assert_kr(mach_msg(NULL, MACH_SEND_MSG, sizeof(mach_msg_header_t), 0, MACH_PORT_NULL, 0,
	    MACH_PORT_NULL), MACH_SEND_INVALID_DATA);
	fixture_teardown(NULL);
	MVM_TEST_QUIESCENT();
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		/* The teardown only matters after a failure: each test cleans up itself. */
		cmocka_unit_test_teardown(test_malformed_table, fixture_teardown),
		cmocka_unit_test_teardown(test_controls_succeed, fixture_teardown),
	};

	return cmocka_run_group_tests_name("malformed", tests, NULL, NULL);
}
