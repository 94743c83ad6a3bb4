/*
 * tests/unit/test_mo_malformed.c: every demultiplexer rejects every malformed variant of
 * every request, with MIG's code, without calling a routine, and (through
 * mach_msg_destroy, as mach_msg_server does) without leaking a right or a byte.
 *
 * The test builds each request of the generated tables item by item, then applies one
 * mutation to one item (type name, size, number, inline bit, long form, deallocate and
 * unused bits, port disposition, out-of-line element size) or to the message (complex
 * bit, an extra or a missing item, the id). A variant that mach_msg accepts travels
 * through it and is served once per demultiplexer; one that mach_msg refuses is fed to
 * the demultiplexers as received bytes instead (its port names are then just numbers,
 * and no right needs releasing).
 */
#include <stdbool.h>
#include <string.h>

#include <mvm_test.h>
#include <mach/memory_object_server.h>
#include <mach/memory_object_default_server.h>
#include <machvm/memory_object.h>
#include "mo/mo.h"

/* ---- ops that accept anything (the valid baseline) ---------------------------------- */

static int called;

#define ACCEPT(...) { (void)ctx; called++; return KERN_SUCCESS; }
static kern_return_t a_init(void *ctx, memory_object_t o, mach_port_seqno_t s,
    memory_object_control_t c, memory_object_name_t n, vm_size_t p) ACCEPT()
static kern_return_t a_terminate(void *ctx, memory_object_t o, mach_port_seqno_t s,
    memory_object_control_t c, memory_object_name_t n) ACCEPT()
static kern_return_t a_copy(void *ctx, memory_object_t o, mach_port_seqno_t s,
    memory_object_control_t c, vm_offset_t f, vm_size_t l, memory_object_t n) ACCEPT()
static kern_return_t a_request(void *ctx, memory_object_t o, mach_port_seqno_t s,
    memory_object_control_t c, vm_offset_t f, vm_size_t l, vm_prot_t a) ACCEPT()
static kern_return_t a_lock_completed(void *ctx, memory_object_t o, mach_port_seqno_t s,
    memory_object_control_t c, vm_offset_t f, vm_size_t l) ACCEPT()
static kern_return_t a_supply_completed(void *ctx, memory_object_t o, mach_port_seqno_t s,
    memory_object_control_t c, vm_offset_t f, vm_size_t l, kern_return_t r, vm_offset_t e)
    ACCEPT()
static kern_return_t a_data_return(void *ctx, memory_object_t o, mach_port_seqno_t s,
    memory_object_control_t c, vm_offset_t f, vm_offset_t d, mach_msg_type_number_t n,
    boolean_t x, boolean_t k) ACCEPT()
static kern_return_t a_change_completed(void *ctx, memory_object_t o, mach_port_seqno_t s,
    boolean_t m, memory_object_copy_strategy_t c) ACCEPT()
static kern_return_t a_create(void *ctx, memory_object_t o, mach_port_seqno_t s,
    memory_object_t n, vm_size_t z, memory_object_control_t c, memory_object_name_t m,
    vm_size_t p) ACCEPT()
static kern_return_t a_data_initialize(void *ctx, memory_object_t o, mach_port_seqno_t s,
    memory_object_control_t c, vm_offset_t f, vm_offset_t d, mach_msg_type_number_t n)
    ACCEPT()

static kern_return_t k_range(void *ctx, memory_object_control_t c, mach_port_seqno_t s,
    vm_offset_t o, vm_size_t z) ACCEPT()
static kern_return_t k_get_attributes(void *ctx, memory_object_control_t c,
    mach_port_seqno_t s, boolean_t *r, boolean_t *m, memory_object_copy_strategy_t *p)
    ACCEPT()
static kern_return_t k_set_default(void *ctx, host_priv_t h, mach_port_seqno_t s,
    mach_port_make_send_t *d) { (void)ctx; called++; *d = MACH_PORT_NULL; return KERN_SUCCESS; }
static kern_return_t k_lock_request(void *ctx, memory_object_control_t c,
    mach_port_seqno_t s, vm_offset_t o, vm_size_t z, memory_object_return_t r, boolean_t f,
    vm_prot_t l, mach_port_t t, mach_msg_type_name_t tt) ACCEPT()
static kern_return_t k_data_error(void *ctx, memory_object_control_t c, mach_port_seqno_t s,
    vm_offset_t o, vm_size_t z, kern_return_t e) ACCEPT()
static kern_return_t k_destroy(void *ctx, memory_object_control_t c, mach_port_seqno_t s,
    kern_return_t r) ACCEPT()
static kern_return_t k_data_supply(void *ctx, memory_object_control_t c, mach_port_seqno_t s,
    vm_offset_t o, vm_offset_t d, mach_msg_type_number_t n, vm_prot_t l, boolean_t p,
    mach_port_t t, mach_msg_type_name_t tt) ACCEPT()
static kern_return_t k_attrs(void *ctx, memory_object_control_t c, mach_port_seqno_t s,
    boolean_t m, memory_object_copy_strategy_t p) ACCEPT()
static kern_return_t k_change(void *ctx, memory_object_control_t c, mach_port_seqno_t s,
    boolean_t m, memory_object_copy_strategy_t p, mach_port_t t, mach_msg_type_name_t tt)
    ACCEPT()

static const struct mvm_memory_object_ops mo_ops = {
	.version = MVM_MEMORY_OBJECT_OPS_VERSION, .init = a_init, .terminate = a_terminate,
	.copy = a_copy, .data_request = a_request, .data_unlock = a_request,
	.lock_completed = a_lock_completed, .supply_completed = a_supply_completed,
	.data_return = a_data_return, .change_completed = a_change_completed,
	.create = a_create, .data_initialize = a_data_initialize,
};

static const struct mvm_memory_object_control_ops ctl_ops = {
	.version = MVM_MEMORY_OBJECT_OPS_VERSION, .data_unavailable = k_range,
	.get_attributes = k_get_attributes, .set_default_memory_manager = k_set_default,
	.lock_request = k_lock_request, .data_error = k_data_error, .destroy = k_destroy,
	.data_supply = k_data_supply, .ready = k_attrs, .change_attributes = k_change,
};

/* ---- a message model that can express every mutation ------------------------------ */

struct titem {
	unsigned name, size, number;
	bool inl, longf, dealloc, unused;
	unsigned short_name, short_size, short_number;  /* long form: the short fields */
	uint8_t data[32];                               /* inline data, or the pointer */
};

struct tmsg {
	mach_msg_id_t id;
	bool complex;
	int n;
	struct titem it[MVM__MO_MAX_ITEMS + 2];
};

union msgbuf {
	mach_msg_header_t h;
	uint8_t b[1024];
};

static size_t
align8(size_t x)
{
	return (x + 7) & ~(size_t)7;
}

static mach_msg_type_name_t
received(mach_msg_type_name_t d)
{
	switch (d) {
	case MACH_MSG_TYPE_MOVE_RECEIVE: return MACH_MSG_TYPE_PORT_RECEIVE;
	case MACH_MSG_TYPE_MOVE_SEND_ONCE:
	case MACH_MSG_TYPE_MAKE_SEND_ONCE: return MACH_MSG_TYPE_PORT_SEND_ONCE;
	case MACH_MSG_TYPE_MOVE_SEND:
	case MACH_MSG_TYPE_COPY_SEND:
	case MACH_MSG_TYPE_MAKE_SEND: return MACH_MSG_TYPE_PORT_SEND;
	default: return d;
	}
}

/* Lay the message out; as_received writes port types as a receiver would see them. */
static mach_msg_size_t
build(const struct tmsg *m, mach_port_t dest, union msgbuf *buf, bool as_received)
{
	size_t pos = sizeof(mach_msg_header_t);

	memset(buf, 0, sizeof(*buf));
	for (int i = 0; i < m->n; i++) {
		const struct titem *t = &m->it[i];
		unsigned name = as_received ? received(t->name) : t->name;
		size_t len = t->inl ? align8(((size_t)t->number * t->size + 7) / 8) : 8;

		if (t->longf) {
			mach_msg_type_long_t lt;

			memset(&lt, 0, sizeof(lt));
			lt.msgtl_header.msgt_name = t->short_name;
			lt.msgtl_header.msgt_size = t->short_size;
			lt.msgtl_header.msgt_number = t->short_number;
			lt.msgtl_header.msgt_inline = t->inl;
			lt.msgtl_header.msgt_longform = 1;
			lt.msgtl_header.msgt_deallocate = t->dealloc;
			lt.msgtl_header.msgt_unused = t->unused;
			lt.msgtl_name = (unsigned short)name;
			lt.msgtl_size = (unsigned short)t->size;
			lt.msgtl_number = t->number;
			memcpy(buf->b + pos, &lt, sizeof(lt));
			pos += sizeof(lt);
		} else {
			mach_msg_type_t st;

			memset(&st, 0, sizeof(st));
			st.msgt_name = name;
			st.msgt_size = t->size;
			st.msgt_number = t->number;
			st.msgt_inline = t->inl;
			st.msgt_deallocate = t->dealloc;
			st.msgt_unused = t->unused;
			memcpy(buf->b + pos, &st, sizeof(st));
			pos += sizeof(st);
		}
		assert_true(len <= sizeof(t->data));
		memcpy(buf->b + pos, t->data, len);
		pos += len;
	}
	if (as_received) {
		buf->h.msgh_bits = MACH_MSGH_BITS(0, MACH_MSG_TYPE_PORT_SEND);
		buf->h.msgh_local_port = dest;
	} else {
		buf->h.msgh_bits = MACH_MSGH_BITS(MACH_MSG_TYPE_MAKE_SEND, 0);
		buf->h.msgh_remote_port = dest;
	}
	if (m->complex)
		buf->h.msgh_bits |= MACH_MSGH_BITS_COMPLEX;
	buf->h.msgh_size = (mach_msg_size_t)pos;
	buf->h.msgh_id = m->id;
	return (mach_msg_size_t)pos;
}

/* ---- the rights and memory a message refers to ----------------------------------- */

static mach_port_t helper;          /* MAKE_SEND and MAKE_SEND_ONCE are made from it */
static mach_port_t fresh[32];        /* receive rights a message moves */
static int nfresh;
static vm_address_t ool_buf;        /* out-of-line data */
static mach_port_t ool_names[2];    /* an out-of-line port array */
#define OOL_BYTES 4096

static mach_port_t
fresh_receive(void)
{
	mach_port_t p;

	assert_true(nfresh < 32);
	assert_kr(mach_port_allocate(mach_task_self(), MACH_PORT_RIGHT_RECEIVE, &p), KERN_SUCCESS);
	fresh[nfresh++] = p;
	return p;
}

/* After a send: rights a failed send left with us are destroyed. */
static void
fresh_release(void)
{
	for (int i = 0; i < nfresh; i++)
		if (mvm_test_type(fresh[i]) != 0)
			assert_kr(mach_port_destroy(mach_task_self(), fresh[i]), KERN_SUCCESS);
	nfresh = 0;
}

static mach_port_t
port_for(unsigned disp)
{
	return disp == MACH_MSG_TYPE_MOVE_RECEIVE ? fresh_receive() : helper;
}

static void
set_scalar(struct titem *t, unsigned name, unsigned size)
{
	uint64_t v = 0x0123456789abcdefULL;

	memset(t, 0, sizeof(*t));
	t->name = name;
	t->size = size;
	t->number = 1;
	t->inl = true;
	memcpy(t->data, &v, sizeof(v));
}

static void
set_port(struct titem *t, unsigned disp, int number)
{
	memset(t, 0, sizeof(*t));
	t->name = disp;
	t->size = 32;
	t->number = (unsigned)number;
	t->inl = true;
	for (int i = 0; i < number; i++) {
		mach_port_t p = port_for(disp);

		memcpy(t->data + 4 * i, &p, sizeof(p));
	}
}

static void
set_ool(struct titem *t, unsigned count)
{
	uint64_t p = ool_buf;

	memset(t, 0, sizeof(*t));
	t->name = MACH_MSG_TYPE_BYTE;
	t->size = 8;
	t->number = count;
	t->inl = false;
	memcpy(t->data, &p, sizeof(p));
}

/* The valid request of a routine. */
static void
valid(const struct mvm__mo_msg *req, struct tmsg *m)
{
	memset(m, 0, sizeof(*m));
	m->id = req->id;
	m->complex = req->complex;
	m->n = req->nitems;
	for (int i = 0; i < req->nitems; i++) {
		const struct mvm__mo_item *it = &req->items[i];

		switch (it->wire) {
		case MVM__MO_I32: set_scalar(&m->it[i], MACH_MSG_TYPE_INTEGER_32, 32); break;
		case MVM__MO_I64: set_scalar(&m->it[i], MACH_MSG_TYPE_INTEGER_64, 64); break;
		case MVM__MO_PORT: set_port(&m->it[i], it->disp, 1); break;
		default: set_ool(&m->it[i], OOL_BYTES); break;
		}
	}
}

/* ---- serving ------------------------------------------------------------------------ */

enum mode { PLAIN, SEQNOS, OPS };

static boolean_t
demux(const struct mvm__mo_subsystem *ss, enum mode mode, mach_msg_header_t *in,
    mach_msg_header_t *out)
{
	bool dflt = strcmp(ss->name, "memory_object_default") == 0;

	if (strcmp(ss->name, "memory_object_control") == 0)
		return mvm_memory_object_control_server(&ctl_ops, NULL, in, out);
	switch (mode) {
	case PLAIN:
		return dflt ? memory_object_default_server(in, out) : memory_object_server(in, out);
	case SEQNOS:
		return dflt ? seqnos_memory_object_default_server(in, out) :
		    seqnos_memory_object_server(in, out);
	default:
		return mvm_memory_object_server(&mo_ops, NULL, in, out);
	}
}

static int delivered, refused;

/* Destroying a send-once right sends a send-once notification: take those away. */
static void
drain(mach_port_t port)
{
	union msgbuf in;

	while (mach_msg(&in.h, MACH_RCV_MSG | MACH_RCV_TIMEOUT, 0, sizeof(in), port, 0,
	    MACH_PORT_NULL) == MACH_MSG_SUCCESS) {
		assert_int_equal(in.h.msgh_id, MACH_NOTIFY_SEND_ONCE);
		mach_msg_destroy(&in.h);
	}
}

/*
 * Deliver the message once per mode through mach_msg when it takes it, else as bytes;
 * check every demultiplexer's answer (and that no routine ran unless expect is
 * KERN_SUCCESS), then release what the message carried as mach_msg_server would.
 */
static void
check(const struct mvm__mo_subsystem *ss, struct tmsg *m, kern_return_t expect,
    const char *what, const char *routine, int item)
{
	bool control = strcmp(ss->name, "memory_object_control") == 0;
	int nmodes = control ? 1 : 3;

	for (int mode = 0; mode < nmodes; mode++) {
		enum mode md = control ? OPS : (enum mode)mode;
		union msgbuf in, out;
		mach_msg_return_t mr;
		kern_return_t rc;
		boolean_t handled;
		mach_port_t dest = helper;
		struct tmsg copy = *m;
		kern_return_t want;
		bool sent;

		/* Ports are made afresh for each delivery. */
		for (int i = 0; i < copy.n; i++)
			if (copy.it[i].name == MACH_MSG_TYPE_MOVE_RECEIVE && copy.it[i].inl)
				for (unsigned k = 0; k < copy.it[i].number && k < 8; k++) {
					mach_port_t p = fresh_receive();

					memcpy(copy.it[i].data + 4 * k, &p, sizeof(p));
				}
		build(&copy, dest, &in, false);
		mr = mach_msg(&in.h, MACH_SEND_MSG, in.h.msgh_size, 0, MACH_PORT_NULL, 0,
		    MACH_PORT_NULL);
		sent = mr == MACH_MSG_SUCCESS;
		fresh_release();
		if (sent) {
			delivered++;
			assert_kr(mach_msg(&in.h, MACH_RCV_MSG | MACH_RCV_TIMEOUT, 0, sizeof(in), helper,
			    1000, MACH_PORT_NULL), MACH_MSG_SUCCESS);
		} else {
			refused++;
			build(&copy, dest, &in, true);
		}
		called = 0;
		memset(&out, 0, sizeof(out));
		handled = demux(ss, md, &in.h, &out.h);
		rc = ((mig_reply_header_t *)&out.h)->RetCode;
		/* This program defines no Mach routine: a valid request meets the default. */
		want = (expect == KERN_SUCCESS && md != OPS) ? MIG_BAD_ID : expect;
		if (rc != want || (want != KERN_SUCCESS && called) ||
		    handled != (expect != MIG_BAD_ID))
			fail_msg("%s item %d (%s), mode %d, %s: RetCode %s, handled %d, called %d, "
			    "expected %s", routine, item, what, md, sent ? "via mach_msg" : "as bytes",
			    mvm_errname(rc), handled, called, mvm_errname(want));
		if (sent)
			mach_msg_destroy(&in.h);   /* failure or not: these ops keep nothing */
		if (sent && rc == KERN_SUCCESS && (out.h.msgh_bits & MACH_MSGH_BITS_COMPLEX))
			mach_msg_destroy(&out.h);
		drain(helper);
	}
}

/* ---- the tests ---------------------------------------------------------------------- */

static void
setup_helpers(void)
{
	helper = mvm_test_port_with_send();
	assert_kr(mach_port_set_qlimit(mach_task_self(), helper, MACH_PORT_QLIMIT_MAX),
	    KERN_SUCCESS);
	assert_kr(vm_allocate(mach_task_self(), &ool_buf, 4 * OOL_BYTES, TRUE), KERN_SUCCESS);
	ool_names[0] = helper;
	ool_names[1] = helper;
	memcpy((void *)ool_buf, ool_names, sizeof(ool_names));
}

static void
teardown_helpers(void)
{
	assert_kr(vm_deallocate(mach_task_self(), ool_buf, 4 * OOL_BYTES), KERN_SUCCESS);
	assert_kr(mach_port_destroy(mach_task_self(), helper), KERN_SUCCESS);
}

/* The valid request, and the same with out-of-line data in long form, are accepted. */
static void
test_valid_baseline(void **state)
{
	(void)state;
	setup_helpers();
	for (unsigned s = 0; s < mvm__mo_nsubsystems; s++) {
		const struct mvm__mo_subsystem *ss = mvm__mo_subsystems[s];

		for (uint32_t k = 0; k < ss->nroutines; k++) {
			const struct mvm__mo_routine *r = ss->routines[k];
			struct tmsg m;

			if (r == NULL)
				continue;
			valid(r->request, &m);
			check(ss, &m, KERN_SUCCESS, "valid", r->request->name, -1);
			for (int i = 0; i < m.n; i++)
				if (!m.it[i].inl) {
					m.it[i].longf = true;
					m.it[i].number = 12;
					check(ss, &m, KERN_SUCCESS, "long form", r->request->name, i);
				}
		}
	}
	teardown_helpers();
	MVM_TEST_QUIESCENT();
}

enum mutation {
	MUT_NAME, MUT_SIZE, MUT_NUMBER, MUT_INLINE, MUT_LONGFORM, MUT_DEALLOC, MUT_UNUSED,
	MUT_PORT_AS_DATA, MUT_LONG_SHORTFIELDS, MUT_COUNT
};

static const char *const mutation_names[] = {
	"name", "size", "number", "inline", "long form", "dealloc bit", "unused bit",
	"port as data", "long form with short fields",
};

/* Apply mutation mu to item i; false when it does not apply to this item. */
static bool
mutate(struct tmsg *m, int i, enum mutation mu, const struct mvm__mo_item *it)
{
	struct titem *t = &m->it[i];
	uint64_t p = ool_buf;

	switch (mu) {
	case MUT_NAME:
		if (it->wire == MVM__MO_PORT) {
			/* Another disposition the receiver sees as another type. */
			if (it->flags & MVM__MO_POLY)
				set_port(t, MACH_MSG_TYPE_MOVE_RECEIVE, 1);
			else if (it->disp == MACH_MSG_TYPE_MOVE_RECEIVE)
				set_port(t, MACH_MSG_TYPE_MAKE_SEND, 1);
			else if (it->disp == MACH_MSG_TYPE_MAKE_SEND_ONCE)
				set_port(t, MACH_MSG_TYPE_MAKE_SEND, 1);
			else
				set_port(t, MACH_MSG_TYPE_MAKE_SEND_ONCE, 1);
		} else if (it->wire == MVM__MO_OOL) {
			t->name = MACH_MSG_TYPE_CHAR;
		} else {
			t->name = it->wire == MVM__MO_I32 ? MACH_MSG_TYPE_INTEGER_64 :
			    MACH_MSG_TYPE_INTEGER_32;
		}
		return true;
	case MUT_SIZE:
		if (it->wire == MVM__MO_PORT)
			t->size = 16;   /* mach_msg refuses it: checked as bytes */
		else if (it->wire == MVM__MO_OOL)
			t->size = 32;   /* an out-of-line size mismatch: 4-byte elements */
		else
			t->size = it->wire == MVM__MO_I32 ? 64 : 32;
		return true;
	case MUT_NUMBER:
		if (it->wire == MVM__MO_OOL)
			return false;   /* the number is the byte count */
		if (it->wire == MVM__MO_PORT)
			set_port(t, it->disp ? it->disp : MACH_MSG_TYPE_MAKE_SEND_ONCE, 2);
		else
			t->number = 2;
		return true;
	case MUT_INLINE:
		if (it->wire == MVM__MO_OOL) {
			t->inl = true;  /* 8 bytes inline where a pointer was */
			t->number = 8;
		} else {
			t->inl = false; /* scalars and ports out of line */
			if (it->wire == MVM__MO_PORT && it->disp != MACH_MSG_TYPE_MOVE_RECEIVE &&
			    !(it->flags & MVM__MO_POLY)) {
				t->name = it->disp;
				t->number = 2;
			}
			memcpy(t->data, &p, sizeof(p));
			if (it->wire == MVM__MO_PORT && (it->disp == MACH_MSG_TYPE_MOVE_RECEIVE ||
			    (it->flags & MVM__MO_POLY))) {
				t->name = MACH_MSG_TYPE_MAKE_SEND;
				t->number = 2;
			}
		}
		return true;
	case MUT_LONGFORM:
		if (!t->inl)
			return false;   /* long form is legal for out-of-line data */
		t->longf = true;
		return true;
	case MUT_DEALLOC:
		if (!t->inl)
			return false;   /* the sender's choice for out-of-line data */
		t->dealloc = true;
		return true;
	case MUT_UNUSED:
		t->unused = true;
		return true;
	case MUT_PORT_AS_DATA:
		if (it->wire != MVM__MO_PORT)
			return false;
		set_scalar(t, MACH_MSG_TYPE_INTEGER_32, 32);
		memcpy(t->data, &helper, sizeof(helper));
		return true;
	case MUT_LONG_SHORTFIELDS:
		if (it->wire != MVM__MO_OOL)
			return false;
		t->longf = true;
		t->short_name = MACH_MSG_TYPE_BYTE;
		t->short_size = 8;
		return true;
	default:
		return false;
	}
}

static void
test_every_item_mutation_rejected(void **state)
{
	int variants = 0;

	(void)state;
	setup_helpers();
	for (unsigned s = 0; s < mvm__mo_nsubsystems; s++) {
		const struct mvm__mo_subsystem *ss = mvm__mo_subsystems[s];

		for (uint32_t k = 0; k < ss->nroutines; k++) {
			const struct mvm__mo_routine *r = ss->routines[k];

			if (r == NULL)
				continue;
			for (int i = 0; i < r->request->nitems; i++)
				for (int mu = 0; mu < MUT_COUNT; mu++) {
					struct tmsg m;

					valid(r->request, &m);
					fresh_release();
					if (!mutate(&m, i, (enum mutation)mu, &r->request->items[i]))
						continue;
					check(ss, &m, MIG_BAD_ARGUMENTS, mutation_names[mu],
					    r->request->name, i);
					variants++;
				}
			fresh_release();
		}
	}
	print_message("%d item variants, %d deliveries through mach_msg, %d as bytes\n",
	    variants, delivered, refused);
	assert_true(delivered > refused);
	teardown_helpers();
	MVM_TEST_QUIESCENT();
}

static void
test_message_mutations_rejected(void **state)
{
	(void)state;
	setup_helpers();
	for (unsigned s = 0; s < mvm__mo_nsubsystems; s++) {
		const struct mvm__mo_subsystem *ss = mvm__mo_subsystems[s];

		for (uint32_t k = 0; k < ss->nroutines; k++) {
			const struct mvm__mo_routine *r = ss->routines[k];
			const char *name;
			struct tmsg m;

			if (r == NULL)
				continue;
			name = r->request->name;
			/* The complex bit flipped. */
			valid(r->request, &m);
			m.complex = !m.complex;
			check(ss, &m, MIG_BAD_ARGUMENTS, "complex bit", name, -1);
			fresh_release();
			/* One item too many: the size is wrong. */
			valid(r->request, &m);
			set_scalar(&m.it[m.n++], MACH_MSG_TYPE_INTEGER_32, 32);
			check(ss, &m, MIG_BAD_ARGUMENTS, "extra item", name, -1);
			fresh_release();
			/* One item too few. */
			if (r->request->nitems > 0) {
				valid(r->request, &m);
				m.n--;
				check(ss, &m, MIG_BAD_ARGUMENTS, "missing item", name, -1);
				fresh_release();
			}
			/* Trailing bytes that are no item (fed as bytes: mach_msg refuses them). */
			{
				union msgbuf in, out;

				valid(r->request, &m);
				build(&m, helper, &in, true);
				in.h.msgh_size += 8;
				called = 0;
				for (int mode = 0; mode < 3; mode++) {
					assert_true(demux(ss, (enum mode)mode, &in.h, &out.h));
					assert_kr(((mig_reply_header_t *)&out.h)->RetCode, MIG_BAD_ARGUMENTS);
				}
				in.h.msgh_size -= 12;   /* and a truncated one */
				for (int mode = 0; mode < 3; mode++) {
					assert_true(demux(ss, (enum mode)mode, &in.h, &out.h));
					assert_kr(((mig_reply_header_t *)&out.h)->RetCode, MIG_BAD_ARGUMENTS);
				}
				assert_int_equal(called, 0);
				fresh_release();
			}
		}
	}
	teardown_helpers();
	MVM_TEST_QUIESCENT();
}

/* Unknown ids: FALSE and MIG_BAD_ID from every demultiplexer, the reply id + 100. */
static void
test_bad_ids(void **state)
{
	static const mach_msg_id_t ids[] = {
		2199, 2205, 2210, 2249, 2252, 2000, 2038, 2042, 2043, 2045, 2089, 2091, 2096,
		2140, 2300, 0, -1, INT32_MIN, INT32_MAX, 64, 71,
	};
	mach_port_t obj = mvm_test_port_with_send();

	(void)state;
	for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
		boolean_t (*const plain[])(mach_msg_header_t *, mach_msg_header_t *) = {
			memory_object_server, seqnos_memory_object_server,
			memory_object_default_server, seqnos_memory_object_default_server,
		};

		for (int d = 0; d < 6; d++) {
			union msgbuf in, out;
			boolean_t handled;
			bool is_mo = ids[i] >= 2200 && ids[i] < 2210 && ids[i] != 2205;
			bool is_dflt = ids[i] == 2250 || ids[i] == 2251;
			bool is_ctl = (ids[i] >= 2039 && ids[i] <= 2041) || ids[i] == 2044 ||
			    ids[i] == 2090 || (ids[i] >= 2092 && ids[i] <= 2095);

			/* A message of that id with one port, through mach_msg. */
			memset(&in, 0, sizeof(in));
			in.h.msgh_bits = MACH_MSGH_BITS(MACH_MSG_TYPE_MAKE_SEND, 0) |
			    MACH_MSGH_BITS_COMPLEX;
			in.h.msgh_size = sizeof(mach_msg_header_t) + 16;
			in.h.msgh_remote_port = obj;
			in.h.msgh_id = ids[i];
			{
				mach_msg_type_t t = { .msgt_name = MACH_MSG_TYPE_MAKE_SEND, .msgt_size = 32,
					.msgt_number = 1, .msgt_inline = 1 };

				memcpy(in.b + 24, &t, sizeof(t));
				memcpy(in.b + 32, &obj, sizeof(obj));
			}
			assert_kr(mach_msg(&in.h, MACH_SEND_MSG, in.h.msgh_size, 0, MACH_PORT_NULL, 0,
			    MACH_PORT_NULL), MACH_MSG_SUCCESS);
			assert_kr(mach_msg(&in.h, MACH_RCV_MSG, 0, sizeof(in), obj, 0, MACH_PORT_NULL),
			    MACH_MSG_SUCCESS);
			if (d < 4)
				handled = plain[d](&in.h, &out.h);
			else if (d == 4)
				handled = mvm_memory_object_server(&mo_ops, NULL, &in.h, &out.h);
			else
				handled = mvm_memory_object_control_server(&ctl_ops, NULL, &in.h, &out.h);
			if ((d < 2 && is_mo) || (d >= 2 && d < 4 && is_dflt) ||
			    (d == 4 && (is_mo || is_dflt)) || (d == 5 && is_ctl)) {
				/* A known id with a bad body. */
				assert_true(handled);
				assert_kr(((mig_reply_header_t *)&out.h)->RetCode, MIG_BAD_ARGUMENTS);
			} else {
				assert_false(handled);
				assert_kr(((mig_reply_header_t *)&out.h)->RetCode, MIG_BAD_ID);
			}
			assert_int_equal(out.h.msgh_id, (mach_msg_id_t)((uint32_t)ids[i] + 100u));
			mach_msg_destroy(&in.h);
		}
	}
	assert_int_equal(mvm_test_refs(obj, MACH_PORT_RIGHT_SEND), 1);
	assert_kr(mach_port_destroy(mach_task_self(), obj), KERN_SUCCESS);
	MVM_TEST_QUIESCENT();
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_valid_baseline),
		cmocka_unit_test(test_every_item_mutation_rejected),
		cmocka_unit_test(test_message_mutations_rejected),
		cmocka_unit_test(test_bad_ids),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
