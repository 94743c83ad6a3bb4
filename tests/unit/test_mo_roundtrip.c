/*
 * tests/unit/test_mo_roundtrip.c: every memory object routine travels through its sender
 * (the Mach stub, or the kernel's mvm_mo_send_*), the real mach_msg, and every
 * demultiplexer that serves it (plain, seqnos_ and ops), with edge values; the routine
 * must see exactly what was sent, seqnos_ routines and ops the message's seqno, and
 * nothing may leak.
 */
#include <limits.h>
#include <stdbool.h>
#include <pthread.h>
#include <string.h>

#include <mvm_test.h>
#include <mach/memory_object_server.h>
#include <mach/memory_object_default_server.h>
#include <mach/memory_object_control.h>
#include <machvm/memory_object.h>

/* ---- recording ---------------------------------------------------------------------- */

#define NO_SEQNO 0xdeadbeefu

static struct {
	const char *name;
	mach_port_seqno_t seqno;
	uint64_t v[12];
	int n;
} rec;
static kern_return_t rec_result = KERN_SUCCESS;
static int ctx_token;

static kern_return_t
record(const char *name, mach_port_seqno_t seqno, const uint64_t *v, int n)
{
	rec.name = name;
	rec.seqno = seqno;
	rec.n = n;
	memcpy(rec.v, v, (size_t)n * sizeof(v[0]));
	return rec_result;
}

#define U(x) ((uint64_t)(x))
#define REC(name, seqno, ...) \
	record(name, seqno, (uint64_t[]){ __VA_ARGS__ }, \
	    (int)(sizeof((uint64_t[]){ __VA_ARGS__ }) / sizeof(uint64_t)))
#define EXPECT(name, seqno, ...) \
	expect(name, seqno, (uint64_t[]){ __VA_ARGS__ }, \
	    (int)(sizeof((uint64_t[]){ __VA_ARGS__ }) / sizeof(uint64_t)))

static void
expect(const char *name, mach_port_seqno_t seqno, const uint64_t *v, int n)
{
	assert_non_null(rec.name);
	assert_string_equal(rec.name, name);
	assert_int_equal(rec.seqno, seqno);
	assert_int_equal(rec.n, n);
	for (int i = 0; i < n; i++)
		if (rec.v[i] != v[i])
			fail_msg("%s: argument %d is 0x%llx, expected 0x%llx", name, i,
			    (unsigned long long)rec.v[i], (unsigned long long)v[i]);
	rec.name = NULL;
}

/* ---- the manager's Mach routines, plain and seqnos_ ----------------------------------- */

#define CTX_CHECK() assert_ptr_equal(ctx, &ctx_token)

kern_return_t
memory_object_init(memory_object_t o, memory_object_control_t c, memory_object_name_t n,
    vm_size_t ps)
{
	return REC("init", NO_SEQNO, o, c, n, ps);
}

kern_return_t
seqnos_memory_object_init(memory_object_t o, mach_port_seqno_t s, memory_object_control_t c,
    memory_object_name_t n, vm_size_t ps)
{
	return REC("init", s, o, c, n, ps);
}

static kern_return_t
op_init(void *ctx, memory_object_t o, mach_port_seqno_t s, memory_object_control_t c,
    memory_object_name_t n, vm_size_t ps)
{
	CTX_CHECK();
	return REC("init", s, o, c, n, ps);
}

kern_return_t
memory_object_terminate(memory_object_t o, memory_object_control_t c, memory_object_name_t n)
{
	return REC("terminate", NO_SEQNO, o, c, n);
}

kern_return_t
seqnos_memory_object_terminate(memory_object_t o, mach_port_seqno_t s,
    memory_object_control_t c, memory_object_name_t n)
{
	return REC("terminate", s, o, c, n);
}

static kern_return_t
op_terminate(void *ctx, memory_object_t o, mach_port_seqno_t s, memory_object_control_t c,
    memory_object_name_t n)
{
	CTX_CHECK();
	return REC("terminate", s, o, c, n);
}

kern_return_t
memory_object_copy(memory_object_t o, memory_object_control_t c, vm_offset_t off,
    vm_size_t len, memory_object_t no)
{
	return REC("copy", NO_SEQNO, o, c, off, len, no);
}

kern_return_t
seqnos_memory_object_copy(memory_object_t o, mach_port_seqno_t s, memory_object_control_t c,
    vm_offset_t off, vm_size_t len, memory_object_t no)
{
	return REC("copy", s, o, c, off, len, no);
}

static kern_return_t
op_copy(void *ctx, memory_object_t o, mach_port_seqno_t s, memory_object_control_t c,
    vm_offset_t off, vm_size_t len, memory_object_t no)
{
	CTX_CHECK();
	return REC("copy", s, o, c, off, len, no);
}

kern_return_t
memory_object_data_request(memory_object_t o, memory_object_control_t c, vm_offset_t off,
    vm_size_t len, vm_prot_t a)
{
	return REC("data_request", NO_SEQNO, o, c, off, len, U(a));
}

kern_return_t
seqnos_memory_object_data_request(memory_object_t o, mach_port_seqno_t s,
    memory_object_control_t c, vm_offset_t off, vm_size_t len, vm_prot_t a)
{
	return REC("data_request", s, o, c, off, len, U(a));
}

static kern_return_t
op_data_request(void *ctx, memory_object_t o, mach_port_seqno_t s, memory_object_control_t c,
    vm_offset_t off, vm_size_t len, vm_prot_t a)
{
	CTX_CHECK();
	return REC("data_request", s, o, c, off, len, U(a));
}

kern_return_t
memory_object_data_unlock(memory_object_t o, memory_object_control_t c, vm_offset_t off,
    vm_size_t len, vm_prot_t a)
{
	return REC("data_unlock", NO_SEQNO, o, c, off, len, U(a));
}

kern_return_t
seqnos_memory_object_data_unlock(memory_object_t o, mach_port_seqno_t s,
    memory_object_control_t c, vm_offset_t off, vm_size_t len, vm_prot_t a)
{
	return REC("data_unlock", s, o, c, off, len, U(a));
}

static kern_return_t
op_data_unlock(void *ctx, memory_object_t o, mach_port_seqno_t s, memory_object_control_t c,
    vm_offset_t off, vm_size_t len, vm_prot_t a)
{
	CTX_CHECK();
	return REC("data_unlock", s, o, c, off, len, U(a));
}

kern_return_t
memory_object_lock_completed(memory_object_t o, memory_object_control_t c, vm_offset_t off,
    vm_size_t len)
{
	return REC("lock_completed", NO_SEQNO, o, c, off, len);
}

kern_return_t
seqnos_memory_object_lock_completed(memory_object_t o, mach_port_seqno_t s,
    memory_object_control_t c, vm_offset_t off, vm_size_t len)
{
	return REC("lock_completed", s, o, c, off, len);
}

static kern_return_t
op_lock_completed(void *ctx, memory_object_t o, mach_port_seqno_t s,
    memory_object_control_t c, vm_offset_t off, vm_size_t len)
{
	CTX_CHECK();
	return REC("lock_completed", s, o, c, off, len);
}

kern_return_t
memory_object_supply_completed(memory_object_t o, memory_object_control_t c,
    vm_offset_t off, vm_size_t len, kern_return_t r, vm_offset_t eo)
{
	return REC("supply_completed", NO_SEQNO, o, c, off, len, U(r), eo);
}

kern_return_t
seqnos_memory_object_supply_completed(memory_object_t o, mach_port_seqno_t s,
    memory_object_control_t c, vm_offset_t off, vm_size_t len, kern_return_t r,
    vm_offset_t eo)
{
	return REC("supply_completed", s, o, c, off, len, U(r), eo);
}

static kern_return_t
op_supply_completed(void *ctx, memory_object_t o, mach_port_seqno_t s,
    memory_object_control_t c, vm_offset_t off, vm_size_t len, kern_return_t r,
    vm_offset_t eo)
{
	CTX_CHECK();
	return REC("supply_completed", s, o, c, off, len, U(r), eo);
}

kern_return_t
memory_object_data_return(memory_object_t o, memory_object_control_t c, vm_offset_t off,
    vm_offset_t d, mach_msg_type_number_t dc, boolean_t dirty, boolean_t kc)
{
	return REC("data_return", NO_SEQNO, o, c, off, d, dc, U(dirty), U(kc));
}

kern_return_t
seqnos_memory_object_data_return(memory_object_t o, mach_port_seqno_t s,
    memory_object_control_t c, vm_offset_t off, vm_offset_t d, mach_msg_type_number_t dc,
    boolean_t dirty, boolean_t kc)
{
	return REC("data_return", s, o, c, off, d, dc, U(dirty), U(kc));
}

static kern_return_t
op_data_return(void *ctx, memory_object_t o, mach_port_seqno_t s, memory_object_control_t c,
    vm_offset_t off, vm_offset_t d, mach_msg_type_number_t dc, boolean_t dirty, boolean_t kc)
{
	CTX_CHECK();
	return REC("data_return", s, o, c, off, d, dc, U(dirty), U(kc));
}

kern_return_t
memory_object_change_completed(memory_object_t o, boolean_t mc,
    memory_object_copy_strategy_t cs)
{
	return REC("change_completed", NO_SEQNO, o, U(mc), U(cs));
}

kern_return_t
seqnos_memory_object_change_completed(memory_object_t o, mach_port_seqno_t s, boolean_t mc,
    memory_object_copy_strategy_t cs)
{
	return REC("change_completed", s, o, U(mc), U(cs));
}

static kern_return_t
op_change_completed(void *ctx, memory_object_t o, mach_port_seqno_t s, boolean_t mc,
    memory_object_copy_strategy_t cs)
{
	CTX_CHECK();
	return REC("change_completed", s, o, U(mc), U(cs));
}

kern_return_t
memory_object_create(memory_object_t o, memory_object_t no, vm_size_t size,
    memory_object_control_t c, memory_object_name_t n, vm_size_t ps)
{
	return REC("create", NO_SEQNO, o, no, size, c, n, ps);
}

kern_return_t
seqnos_memory_object_create(memory_object_t o, mach_port_seqno_t s, memory_object_t no,
    vm_size_t size, memory_object_control_t c, memory_object_name_t n, vm_size_t ps)
{
	return REC("create", s, o, no, size, c, n, ps);
}

static kern_return_t
op_create(void *ctx, memory_object_t o, mach_port_seqno_t s, memory_object_t no,
    vm_size_t size, memory_object_control_t c, memory_object_name_t n, vm_size_t ps)
{
	CTX_CHECK();
	return REC("create", s, o, no, size, c, n, ps);
}

kern_return_t
memory_object_data_initialize(memory_object_t o, memory_object_control_t c, vm_offset_t off,
    vm_offset_t d, mach_msg_type_number_t dc)
{
	return REC("data_initialize", NO_SEQNO, o, c, off, d, dc);
}

kern_return_t
seqnos_memory_object_data_initialize(memory_object_t o, mach_port_seqno_t s,
    memory_object_control_t c, vm_offset_t off, vm_offset_t d, mach_msg_type_number_t dc)
{
	return REC("data_initialize", s, o, c, off, d, dc);
}

static kern_return_t
op_data_initialize(void *ctx, memory_object_t o, mach_port_seqno_t s,
    memory_object_control_t c, vm_offset_t off, vm_offset_t d, mach_msg_type_number_t dc)
{
	CTX_CHECK();
	return REC("data_initialize", s, o, c, off, d, dc);
}

static const struct mvm_memory_object_ops mo_ops = {
	.version = MVM_MEMORY_OBJECT_OPS_VERSION,
	.init = op_init,
	.terminate = op_terminate,
	.copy = op_copy,
	.data_request = op_data_request,
	.data_unlock = op_data_unlock,
	.lock_completed = op_lock_completed,
	.supply_completed = op_supply_completed,
	.data_return = op_data_return,
	.change_completed = op_change_completed,
	.create = op_create,
	.data_initialize = op_data_initialize,
};

/* ---- the kernel's control ops ----------------------------------------------------------- */

static kern_return_t
k_data_unavailable(void *ctx, memory_object_control_t c, mach_port_seqno_t s,
    vm_offset_t off, vm_size_t size)
{
	CTX_CHECK();
	return REC("data_unavailable", s, c, off, size);
}

static boolean_t attr_ready = TRUE, attr_cache = FALSE;
static memory_object_copy_strategy_t attr_copy = MEMORY_OBJECT_COPY_DELAY;

static kern_return_t
k_get_attributes(void *ctx, memory_object_control_t c, mach_port_seqno_t s,
    boolean_t *ready, boolean_t *may_cache, memory_object_copy_strategy_t *copy)
{
	CTX_CHECK();
	*ready = attr_ready;
	*may_cache = attr_cache;
	*copy = attr_copy;
	return REC("get_attributes", s, c);
}

static mach_port_t old_default;   /* a send right the kernel op gives back */

static kern_return_t
k_set_default(void *ctx, host_priv_t h, mach_port_seqno_t s, mach_port_make_send_t *dm)
{
	kern_return_t kr;

	CTX_CHECK();
	kr = REC("set_default_memory_manager", s, h, *dm);
	if (kr == KERN_SUCCESS) {
		/* Keep the new right; give back the old one (moved in the reply). */
		*dm = old_default;
	}
	return kr;
}

static kern_return_t
k_lock_request(void *ctx, memory_object_control_t c, mach_port_seqno_t s, vm_offset_t off,
    vm_size_t size, memory_object_return_t sr, boolean_t sf, vm_prot_t lv, mach_port_t rt,
    mach_msg_type_name_t rtt)
{
	CTX_CHECK();
	return REC("lock_request", s, c, off, size, U(sr), U(sf), U(lv), rt, rtt);
}

static kern_return_t
k_data_error(void *ctx, memory_object_control_t c, mach_port_seqno_t s, vm_offset_t off,
    vm_size_t size, kern_return_t e)
{
	CTX_CHECK();
	return REC("data_error", s, c, off, size, U(e));
}

static kern_return_t
k_destroy(void *ctx, memory_object_control_t c, mach_port_seqno_t s, kern_return_t r)
{
	CTX_CHECK();
	return REC("destroy", s, c, U(r));
}

static kern_return_t
k_data_supply(void *ctx, memory_object_control_t c, mach_port_seqno_t s, vm_offset_t off,
    vm_offset_t d, mach_msg_type_number_t dc, vm_prot_t lv, boolean_t p, mach_port_t rt,
    mach_msg_type_name_t rtt)
{
	CTX_CHECK();
	return REC("data_supply", s, c, off, d, dc, U(lv), U(p), rt, rtt);
}

static kern_return_t
k_ready(void *ctx, memory_object_control_t c, mach_port_seqno_t s, boolean_t mc,
    memory_object_copy_strategy_t cs)
{
	CTX_CHECK();
	return REC("ready", s, c, U(mc), U(cs));
}

static kern_return_t
k_change_attributes(void *ctx, memory_object_control_t c, mach_port_seqno_t s, boolean_t mc,
    memory_object_copy_strategy_t cs, mach_port_t rt, mach_msg_type_name_t rtt)
{
	CTX_CHECK();
	return REC("change_attributes", s, c, U(mc), U(cs), rt, rtt);
}

static const struct mvm_memory_object_control_ops ctl_ops = {
	.version = MVM_MEMORY_OBJECT_OPS_VERSION,
	.data_unavailable = k_data_unavailable,
	.get_attributes = k_get_attributes,
	.set_default_memory_manager = k_set_default,
	.lock_request = k_lock_request,
	.data_error = k_data_error,
	.destroy = k_destroy,
	.data_supply = k_data_supply,
	.ready = k_ready,
	.change_attributes = k_change_attributes,
};

/* ---- plumbing --------------------------------------------------------------------- */

enum mode { PLAIN, SEQNOS, OPS, NMODES };

union msgbuf {
	mach_msg_header_t h;
	uint8_t b[1024];
};

static mach_port_t
port_recv(void)
{
	mach_port_t p;

	assert_kr(mach_port_allocate(mach_task_self(), MACH_PORT_RIGHT_RECEIVE, &p), KERN_SUCCESS);
	return p;
}

static void
drop(mach_port_t p)
{
	if (MACH_PORT_VALID(p))
		assert_kr(mach_port_destroy(mach_task_self(), p), KERN_SUCCESS);
}

/*
 * Receive one message on port and run it through the demultiplexer of `mode` as
 * mach_msg_server() would (destroying it on failure). Returns the RetCode.
 */
static kern_return_t
serve(mach_port_t port, enum mode mode, bool dflt, boolean_t expect_handled)
{
	union msgbuf in, out;
	mig_reply_header_t *rep = (mig_reply_header_t *)&out.h;
	boolean_t handled;

	assert_kr(mach_msg(&in.h, MACH_RCV_MSG | MACH_RCV_TIMEOUT, 0, sizeof(in), port, 1000,
	    MACH_PORT_NULL), MACH_MSG_SUCCESS);
	memset(&out, 0xa5, sizeof(out));
	switch (mode) {
	case PLAIN:
		handled = dflt ? memory_object_default_server(&in.h, &out.h) :
		    memory_object_server(&in.h, &out.h);
		break;
	case SEQNOS:
		handled = dflt ? seqnos_memory_object_default_server(&in.h, &out.h) :
		    seqnos_memory_object_server(&in.h, &out.h);
		break;
	default:
		handled = mvm_memory_object_server(&mo_ops, &ctx_token, &in.h, &out.h);
		break;
	}
	assert_int_equal(handled, expect_handled);
	/* MIG's reply conventions. */
	assert_int_equal(out.h.msgh_id, in.h.msgh_id + 100);
	assert_int_equal(out.h.msgh_size, sizeof(mig_reply_header_t));
	assert_int_equal(out.h.msgh_bits, MACH_MSGH_BITS(MACH_MSGH_BITS_REMOTE(in.h.msgh_bits), 0));
	assert_int_equal(out.h.msgh_remote_port, in.h.msgh_remote_port);
	assert_int_equal(out.h.msgh_local_port, MACH_PORT_NULL);
	assert_int_equal(rep->RetCodeType.msgt_name, MACH_MSG_TYPE_INTEGER_32);
	assert_int_equal(rep->RetCodeType.msgt_size, 32);
	assert_int_equal(rep->RetCodeType.msgt_number, 1);
	assert_int_equal(rep->RetCodeType.msgt_inline, 1);
	if (rep->RetCode != KERN_SUCCESS && rep->RetCode != MIG_NO_REPLY)
		mach_msg_destroy(&in.h);
	return rep->RetCode;
}

static mach_port_seqno_t
seq_of(enum mode mode, mach_port_seqno_t *counter)
{
	mach_port_seqno_t s = (*counter)++;

	return mode == PLAIN ? NO_SEQNO : s;
}

static const vm_offset_t offsets[] = { 0, 0x1000, UINTPTR_MAX, (vm_offset_t)1 << 63 };
static const vm_prot_t prots[] = {
	VM_PROT_NONE, VM_PROT_READ, VM_PROT_ALL | VM_PROT_NO_CHANGE, -1, INT_MIN, INT_MAX
};
#define NEDGE 4

/* ---- kernel -> manager -------------------------------------------------------------- */

static void
test_init_and_data_requests(void **state)
{
	mach_port_t obj = mvm_test_port_with_send(), ctl = port_recv(), name = port_recv();
	mach_port_seqno_t seq = 0;

	(void)state;
	for (int m = 0; m < NMODES; m++) {
		for (int e = 0; e < NEDGE; e++) {
			vm_size_t ps = offsets[(e + 1) % NEDGE];
			vm_prot_t p = prots[e + (m % 2) * 2];

			assert_kr(mvm_mo_send_init(obj, ctl, name, ps), KERN_SUCCESS);
			assert_kr(serve(obj, m, false, TRUE), KERN_SUCCESS);
			EXPECT("init", seq_of(m, &seq), obj, ctl, name, ps);

			assert_kr(mvm_mo_send_data_request(obj, ctl, offsets[e], ps, p), KERN_SUCCESS);
			assert_kr(serve(obj, m, false, TRUE), KERN_SUCCESS);
			EXPECT("data_request", seq_of(m, &seq), obj, ctl, offsets[e], ps, U(p));

			assert_kr(mvm_mo_send_data_unlock(obj, ctl, ps, offsets[e], p), KERN_SUCCESS);
			assert_kr(serve(obj, m, false, TRUE), KERN_SUCCESS);
			EXPECT("data_unlock", seq_of(m, &seq), obj, ctl, ps, offsets[e], U(p));
		}
	}
	/* The routines own what they received: two send rights per init, one per request. */
	assert_int_equal(mvm_test_refs(ctl, MACH_PORT_RIGHT_SEND), NMODES * NEDGE * 3);
	assert_int_equal(mvm_test_refs(name, MACH_PORT_RIGHT_SEND), NMODES * NEDGE);
	/* Null ports travel as null. */
	assert_kr(mvm_mo_send_init(obj, MACH_PORT_NULL, MACH_PORT_NULL, 0), KERN_SUCCESS);
	assert_kr(serve(obj, OPS, false, TRUE), KERN_SUCCESS);
	EXPECT("init", seq++, obj, MACH_PORT_NULL, MACH_PORT_NULL, 0);
	drop(obj);
	drop(ctl);
	drop(name);
	MVM_TEST_QUIESCENT();
}

static void
test_terminate_moves_receive_rights(void **state)
{
	mach_port_t obj = mvm_test_port_with_send();
	mach_port_seqno_t seq = 0;

	(void)state;
	for (int m = 0; m < NMODES; m++) {
		mach_port_t ctl = port_recv(), name = port_recv();

		/* terminate consumes the kernel's send right: give it one more. */
		assert_kr(mach_port_mod_refs(mach_task_self(), obj, MACH_PORT_RIGHT_SEND, 1),
		    KERN_SUCCESS);
		assert_kr(mvm_mo_send_terminate(obj, ctl, name), KERN_SUCCESS);
		assert_int_equal(mvm_test_type(ctl), 0);
		assert_int_equal(mvm_test_type(name), 0);
		assert_kr(serve(obj, m, false, TRUE), KERN_SUCCESS);
		assert_string_equal(rec.name, "terminate");
		assert_int_equal(rec.seqno, seq_of(m, &seq));
		assert_int_equal(rec.v[0], obj);
		assert_true(mvm_test_type((mach_port_t)rec.v[1]) & MACH_PORT_TYPE_RECEIVE);
		assert_true(mvm_test_type((mach_port_t)rec.v[2]) & MACH_PORT_TYPE_RECEIVE);
		drop((mach_port_t)rec.v[1]);
		drop((mach_port_t)rec.v[2]);
		rec.name = NULL;
	}
	assert_int_equal(mvm_test_refs(obj, MACH_PORT_RIGHT_SEND), 1);
	drop(obj);
	MVM_TEST_QUIESCENT();
}

static void
test_copy(void **state)
{
	mach_port_t obj = mvm_test_port_with_send(), ctl = port_recv();
	mach_port_seqno_t seq = 0;

	(void)state;
	for (int m = 0; m < NMODES; m++) {
		for (int e = 0; e < NEDGE; e++) {
			mach_port_t nobj = port_recv();

			assert_kr(mvm_mo_send_copy(obj, ctl, offsets[e], offsets[NEDGE - 1 - e], nobj),
			    KERN_SUCCESS);
			assert_int_equal(mvm_test_type(nobj), 0);
			assert_kr(serve(obj, m, false, TRUE), KERN_SUCCESS);
			assert_true(mvm_test_type((mach_port_t)rec.v[4]) & MACH_PORT_TYPE_RECEIVE);
			EXPECT("copy", seq_of(m, &seq), obj, ctl, offsets[e], offsets[NEDGE - 1 - e],
			    rec.v[4]);
			drop((mach_port_t)rec.v[4]);
		}
	}
	drop(obj);
	drop(ctl);
	MVM_TEST_QUIESCENT();
}

/* The three completions go to a reply port, sent with any send right the kernel holds. */
static void
test_completions(void **state)
{
	mach_port_t reply = port_recv(), ctl = port_recv();
	mach_port_seqno_t seq = 0;

	(void)state;
	for (int m = 0; m < NMODES; m++) {
		for (int e = 0; e < NEDGE; e++) {
			mach_port_t so;
			mach_msg_type_name_t t;
			kern_return_t kr = prots[e + 2];

			/* A send-once right moved, as the kernel holds after a lock request. */
			assert_kr(mach_port_extract_right(mach_task_self(), reply,
			    MACH_MSG_TYPE_MAKE_SEND_ONCE, &so, &t), KERN_SUCCESS);
			assert_kr(mvm_mo_send_lock_completed(so, MACH_MSG_TYPE_MOVE_SEND_ONCE, ctl,
			    offsets[e], offsets[(e + 3) % NEDGE]), KERN_SUCCESS);
			assert_kr(serve(reply, m, false, TRUE), KERN_SUCCESS);
			EXPECT("lock_completed", seq_of(m, &seq), reply, ctl, offsets[e],
			    offsets[(e + 3) % NEDGE]);

			/* A send-once right made from the receive right. */
			assert_kr(mvm_mo_send_supply_completed(reply, MACH_MSG_TYPE_MAKE_SEND_ONCE, ctl,
			    offsets[e], offsets[e], kr, offsets[(e + 1) % NEDGE]), KERN_SUCCESS);
			assert_kr(serve(reply, m, false, TRUE), KERN_SUCCESS);
			EXPECT("supply_completed", seq_of(m, &seq), reply, ctl, offsets[e], offsets[e],
			    U(kr), offsets[(e + 1) % NEDGE]);

			/* change_completed has no control port and is not complex. */
			assert_kr(mvm_mo_send_change_completed(reply, MACH_MSG_TYPE_MAKE_SEND,
			    prots[e], prots[e + 1]), KERN_SUCCESS);
			assert_kr(serve(reply, m, false, TRUE), KERN_SUCCESS);
			EXPECT("change_completed", seq_of(m, &seq), reply, U(prots[e]), U(prots[e + 1]));
		}
	}
	drop(reply);
	drop(ctl);
	MVM_TEST_QUIESCENT();
}

/* data_return and data_initialize: out-of-line data in short and long form. */
static void
test_data_return_and_initialize(void **state)
{
	static const mach_msg_type_number_t counts[] = { 0, 1, 4095, 4096, 3 * 4096 + 17 };
	mach_port_t obj = mvm_test_port_with_send(), dmm_obj = mvm_test_port_with_send();
	mach_port_t ctl = port_recv();
	mach_port_seqno_t seq = 0, dseq = 0;
	vm_address_t src = 0;

	(void)state;
	assert_kr(vm_allocate(mach_task_self(), &src, 4 * 4096, TRUE), KERN_SUCCESS);
	for (size_t i = 0; i < 4 * 4096; i++)
		((uint8_t *)src)[i] = (uint8_t)(i * 7 + 3);
	for (int m = 0; m < NMODES; m++) {
		for (size_t c = 0; c < sizeof(counts) / sizeof(counts[0]); c++) {
			mach_msg_type_number_t n = counts[c];
			boolean_t dirty = (boolean_t)(c & 1), kc = (c == 2) ? -1 : !dirty;

			assert_kr(mvm_mo_send_data_return(obj, ctl, offsets[c % NEDGE], src, n, FALSE,
			    dirty, kc), KERN_SUCCESS);
			assert_kr(serve(obj, m, false, TRUE), KERN_SUCCESS);
			assert_int_equal(rec.v[4], n);
			if (n > 0)
				assert_memory_equal((void *)rec.v[3], (void *)src, n);
			EXPECT("data_return", seq_of(m, &seq), obj, ctl, offsets[c % NEDGE], rec.v[3],
			    n, U(dirty), U(kc));
			if (n > 0)
				assert_kr(vm_deallocate(mach_task_self(), (vm_address_t)rec.v[3], n),
				    KERN_SUCCESS);

			assert_kr(mvm_mo_send_data_initialize(dmm_obj, ctl, offsets[c % NEDGE], src, n,
			    FALSE), KERN_SUCCESS);
			assert_kr(serve(dmm_obj, m, true, TRUE), KERN_SUCCESS);
			if (n > 0)
				assert_memory_equal((void *)rec.v[3], (void *)src, n);
			EXPECT("data_initialize", seq_of(m, &dseq), dmm_obj, ctl, offsets[c % NEDGE],
			    rec.v[3], n);
			if (n > 0)
				assert_kr(vm_deallocate(mach_task_self(), (vm_address_t)rec.v[3], n),
				    KERN_SUCCESS);
		}
	}
	/* With dealloc the sender's region goes away. */
	assert_kr(mvm_mo_send_data_return(obj, ctl, 0, src, 4 * 4096, TRUE, TRUE, FALSE),
	    KERN_SUCCESS);
	assert_kr(serve(obj, OPS, false, TRUE), KERN_SUCCESS);
	assert_int_equal(rec.v[4], 4 * 4096);
	assert_int_equal(((uint8_t *)rec.v[3])[4 * 4096 - 1], (uint8_t)((4 * 4096 - 1) * 7 + 3));
	assert_kr(vm_deallocate(mach_task_self(), (vm_address_t)rec.v[3], 4 * 4096), KERN_SUCCESS);
	drop(obj);
	drop(dmm_obj);
	drop(ctl);
	MVM_TEST_QUIESCENT();
}

static void
test_create(void **state)
{
	mach_port_t dmm = mvm_test_port_with_send(), ctl = port_recv(), name = port_recv();
	mach_port_seqno_t seq = 0;

	(void)state;
	for (int m = 0; m < NMODES; m++) {
		for (int e = 0; e < NEDGE; e++) {
			mach_port_t nobj = port_recv();

			/* create consumes a send right to the default manager. */
			assert_kr(mach_port_mod_refs(mach_task_self(), dmm, MACH_PORT_RIGHT_SEND, 1),
			    KERN_SUCCESS);
			assert_kr(mvm_mo_send_create(dmm, nobj, offsets[e], ctl, name,
			    offsets[(e + 2) % NEDGE]), KERN_SUCCESS);
			assert_kr(serve(dmm, m, true, TRUE), KERN_SUCCESS);
			assert_true(mvm_test_type((mach_port_t)rec.v[1]) & MACH_PORT_TYPE_RECEIVE);
			EXPECT("create", seq_of(m, &seq), dmm, rec.v[1], offsets[e], ctl, name,
			    offsets[(e + 2) % NEDGE]);
			drop((mach_port_t)rec.v[1]);
		}
	}
	assert_int_equal(mvm_test_refs(dmm, MACH_PORT_RIGHT_SEND), 1);
	drop(dmm);
	drop(ctl);
	drop(name);
	MVM_TEST_QUIESCENT();
}

/* A routine that fails has its request destroyed: nothing it received survives. */
static void
test_failing_routine_releases_everything(void **state)
{
	mach_port_t obj = mvm_test_port_with_send(), ctl = port_recv();
	vm_address_t src = 0;

	(void)state;
	assert_kr(vm_allocate(mach_task_self(), &src, 8192, TRUE), KERN_SUCCESS);
	rec_result = KERN_FAILURE;
	for (int m = 0; m < NMODES; m++) {
		mach_port_t nobj = port_recv();

		assert_kr(mvm_mo_send_data_return(obj, ctl, 0, src, 8192, FALSE, TRUE, FALSE),
		    KERN_SUCCESS);
		assert_kr(serve(obj, m, false, TRUE), KERN_FAILURE);
		assert_kr(mvm_mo_send_copy(obj, ctl, 0, 4096, nobj), KERN_SUCCESS);
		assert_kr(serve(obj, m, false, TRUE), KERN_FAILURE);
	}
	rec_result = KERN_SUCCESS;
	rec.name = NULL;
	assert_int_equal(mvm_test_refs(ctl, MACH_PORT_RIGHT_SEND), 0);
	assert_kr(vm_deallocate(mach_task_self(), src, 8192), KERN_SUCCESS);
	drop(obj);
	drop(ctl);
	MVM_TEST_QUIESCENT();
}

/* An ops table without a member, or of version 0, answers MIG_BAD_ID. */
static void
test_missing_ops(void **state)
{
	static const struct mvm_memory_object_ops empty = {
		.version = MVM_MEMORY_OBJECT_OPS_VERSION,
	};
	static const struct mvm_memory_object_ops v0 = { .version = 0, .init = op_init };
	const struct mvm_memory_object_ops *tables[] = { &empty, &v0 };
	mach_port_t obj = mvm_test_port_with_send(), ctl = port_recv();

	(void)state;
	for (int t = 0; t < 2; t++) {
		union msgbuf in, out;

		assert_kr(mvm_mo_send_init(obj, ctl, ctl, 4096), KERN_SUCCESS);
		assert_kr(mach_msg(&in.h, MACH_RCV_MSG, 0, sizeof(in), obj, 0, MACH_PORT_NULL),
		    MACH_MSG_SUCCESS);
		assert_true(mvm_memory_object_server(tables[t], &ctx_token, &in.h, &out.h));
		assert_kr(((mig_reply_header_t *)&out.h)->RetCode, MIG_BAD_ID);
		mach_msg_destroy(&in.h);
	}
	assert_null(rec.name);
	drop(obj);
	drop(ctl);
	MVM_TEST_QUIESCENT();
}

/* The registry serves each port with its own ops and context. */
static int ctx2;

static kern_return_t
op_init2(void *ctx, memory_object_t o, mach_port_seqno_t s, memory_object_control_t c,
    memory_object_name_t n, vm_size_t ps)
{
	assert_ptr_equal(ctx, &ctx2);
	return REC("init2", s, o, c, n, ps);
}

static void
test_registry(void **state)
{
	static const struct mvm_memory_object_ops ops2 = {
		.version = MVM_MEMORY_OBJECT_OPS_VERSION, .init = op_init2,
	};
	mach_port_t a = mvm_test_port_with_send(), b = mvm_test_port_with_send(), ctl = port_recv();
	mach_port_t set;
	union msgbuf in, out;

	(void)state;
	assert_kr(mach_port_allocate(mach_task_self(), MACH_PORT_RIGHT_PORT_SET, &set),
	    KERN_SUCCESS);
	assert_kr(mach_port_move_member(mach_task_self(), a, set), KERN_SUCCESS);
	assert_kr(mach_port_move_member(mach_task_self(), b, set), KERN_SUCCESS);
	assert_kr(mvm_memory_object_register(a, &mo_ops, &ctx_token), KERN_SUCCESS);
	assert_kr(mvm_memory_object_register(b, &ops2, &ctx2), KERN_SUCCESS);
	assert_kr(mvm_memory_object_register(b, &ops2, &ctx2), KERN_NAME_EXISTS);
	assert_kr(mvm_memory_object_register(MACH_PORT_NULL, &ops2, &ctx2), KERN_INVALID_ARGUMENT);
	assert_kr(mvm_memory_object_register(ctl, NULL, &ctx2), KERN_INVALID_ARGUMENT);

	assert_kr(mvm_mo_send_init(b, MACH_PORT_NULL, MACH_PORT_NULL, 1), KERN_SUCCESS);
	assert_kr(mvm_mo_send_init(a, MACH_PORT_NULL, MACH_PORT_NULL, 2), KERN_SUCCESS);
	assert_kr(mach_msg_server_once(mvm_memory_object_demux, MVM_MEMORY_OBJECT_MSG_SIZE_MAX,
	    set, 0), MACH_MSG_SUCCESS);
	EXPECT("init2", 0, b, 0, 0, 1);
	assert_kr(mach_msg_server_once(mvm_memory_object_demux, MVM_MEMORY_OBJECT_MSG_SIZE_MAX,
	    set, 0), MACH_MSG_SUCCESS);
	EXPECT("init", 0, a, 0, 0, 2);

	/* An unregistered port: FALSE and MIG_BAD_ID, nothing called. */
	assert_kr(mvm_memory_object_unregister(b), KERN_SUCCESS);
	assert_kr(mvm_memory_object_unregister(b), KERN_INVALID_NAME);
	assert_kr(mvm_mo_send_init(b, ctl, MACH_PORT_NULL, 1), KERN_SUCCESS);
	assert_kr(mach_msg(&in.h, MACH_RCV_MSG, 0, sizeof(in), set, 0, MACH_PORT_NULL),
	    MACH_MSG_SUCCESS);
	assert_false(mvm_memory_object_demux(&in.h, &out.h));
	assert_kr(((mig_reply_header_t *)&out.h)->RetCode, MIG_BAD_ID);
	mach_msg_destroy(&in.h);
	assert_null(rec.name);
	assert_kr(mvm_memory_object_unregister(a), KERN_SUCCESS);
	drop(a);
	drop(b);
	drop(ctl);
	drop(set);
	MVM_TEST_QUIESCENT();
}

/* ---- manager -> kernel ------------------------------------------------------------- */

static kern_return_t
serve_ctl(mach_port_t ctl)
{
	union msgbuf in, out;
	mig_reply_header_t *rep = (mig_reply_header_t *)&out.h;

	assert_kr(mach_msg(&in.h, MACH_RCV_MSG | MACH_RCV_TIMEOUT, 0, sizeof(in), ctl, 1000,
	    MACH_PORT_NULL), MACH_MSG_SUCCESS);
	assert_true(mvm_memory_object_control_server(&ctl_ops, &ctx_token, &in.h, &out.h));
	assert_int_equal(out.h.msgh_id, in.h.msgh_id + 100);
	if (rep->RetCode != KERN_SUCCESS && rep->RetCode != MIG_NO_REPLY)
		mach_msg_destroy(&in.h);
	return rep->RetCode;
}

/*
 * A valid reply_to reaches the kernel op as a send-once right under a name of its own:
 * check it is one, release it, and return the name the op saw (MACH_PORT_NULL stays).
 */
static uint64_t
take_send_once(mach_port_t rt, uint64_t seen)
{
	if (!MACH_PORT_VALID(rt)) {
		assert_int_equal(seen, MACH_PORT_NULL);
		return seen;
	}
	assert_int_equal(mvm_test_type((mach_port_t)seen), MACH_PORT_TYPE_SEND_ONCE);
	assert_kr(mach_port_deallocate(mach_task_self(), (mach_port_t)seen), KERN_SUCCESS);
	return seen;
}

static void
test_control_simpleroutines(void **state)
{
	mach_port_t ctl = mvm_test_port_with_send(), reply = port_recv();
	mach_port_seqno_t seq = 0;
	vm_address_t src = 0;

	(void)state;
	assert_kr(vm_allocate(mach_task_self(), &src, 5 * 4096, TRUE), KERN_SUCCESS);
	memset((void *)src, 0x5a, 5 * 4096);
	for (int e = 0; e < NEDGE; e++) {
		vm_offset_t off = offsets[e], size = offsets[(e + 1) % NEDGE];
		vm_prot_t p = prots[e], q = prots[e + 2];
		mach_msg_type_number_t n = e == 0 ? 0 : e == 1 ? 4096 : e == 2 ? 4095 : 5 * 4096;
		mach_port_t rt = (e & 1) ? reply : MACH_PORT_NULL;

		assert_kr(memory_object_data_unavailable(ctl, off, size), KERN_SUCCESS);
		assert_kr(serve_ctl(ctl), KERN_SUCCESS);
		EXPECT("data_unavailable", seq++, ctl, off, size);

		assert_kr(memory_object_lock_request(ctl, off, size, p, q, p ^ q, rt), KERN_SUCCESS);
		assert_kr(serve_ctl(ctl), KERN_SUCCESS);
		EXPECT("lock_request", seq++, ctl, off, size, U(p), U(q), U(p ^ q),
		    take_send_once(rt, rec.v[6]), MACH_MSG_TYPE_PORT_SEND_ONCE);

		assert_kr(memory_object_data_error(ctl, off, size, q), KERN_SUCCESS);
		assert_kr(serve_ctl(ctl), KERN_SUCCESS);
		EXPECT("data_error", seq++, ctl, off, size, U(q));

		assert_kr(memory_object_destroy(ctl, p), KERN_SUCCESS);
		assert_kr(serve_ctl(ctl), KERN_SUCCESS);
		EXPECT("destroy", seq++, ctl, U(p));

		assert_kr(memory_object_data_supply(ctl, off, src, n, FALSE, q, p, rt), KERN_SUCCESS);
		assert_kr(serve_ctl(ctl), KERN_SUCCESS);
		if (n > 0) {
			assert_memory_equal((void *)rec.v[2], (void *)src, n);
			assert_kr(vm_deallocate(mach_task_self(), (vm_address_t)rec.v[2], n),
			    KERN_SUCCESS);
		}
		EXPECT("data_supply", seq++, ctl, off, rec.v[2], n, U(q), U(p),
		    take_send_once(rt, rec.v[6]), MACH_MSG_TYPE_PORT_SEND_ONCE);

		assert_kr(memory_object_ready(ctl, p, q), KERN_SUCCESS);
		assert_kr(serve_ctl(ctl), KERN_SUCCESS);
		EXPECT("ready", seq++, ctl, U(p), U(q));

		assert_kr(memory_object_change_attributes(ctl, q, p, rt), KERN_SUCCESS);
		assert_kr(serve_ctl(ctl), KERN_SUCCESS);
		EXPECT("change_attributes", seq++, ctl, U(q), U(p), take_send_once(rt, rec.v[3]),
		    MACH_MSG_TYPE_PORT_SEND_ONCE);
	}
	/* data_supply with dealloc moves the region out of the caller's space. */
	assert_kr(memory_object_data_supply(ctl, 0, src, 5 * 4096, TRUE, VM_PROT_NONE, FALSE,
	    MACH_PORT_NULL), KERN_SUCCESS);
	assert_kr(serve_ctl(ctl), KERN_SUCCESS);
	assert_int_equal(rec.v[3], 5 * 4096);
	assert_int_equal(((uint8_t *)rec.v[2])[5 * 4096 - 1], 0x5a);
	assert_kr(vm_deallocate(mach_task_self(), (vm_address_t)rec.v[2], 5 * 4096), KERN_SUCCESS);
	drop(ctl);
	drop(reply);
	MVM_TEST_QUIESCENT();
}

/* Routines with a reply: a kernel thread serves the control port. */
struct server_arg {
	mach_port_t port;
	int count;
};

static boolean_t
ctl_demux(mach_msg_header_t *in, mach_msg_header_t *out)
{
	return mvm_memory_object_control_server(&ctl_ops, &ctx_token, in, out);
}

static void *
ctl_server(void *p)
{
	struct server_arg *a = p;

	for (int i = 0; i < a->count; i++)
		if (mach_msg_server_once(ctl_demux, MVM_MEMORY_OBJECT_CONTROL_MSG_SIZE_MAX, a->port,
		    0) != MACH_MSG_SUCCESS)
			return (void *)1;
	return NULL;
}

static void
test_control_routines(void **state)
{
	mach_port_t ctl = mvm_test_port_with_send(), host = mvm_test_port_with_send();
	mach_port_t newdm = port_recv();
	struct server_arg sa = { .port = ctl, .count = 4 }, sh = { .port = host, .count = 3 };
	pthread_t th;
	void *res;
	boolean_t ready = 7, cache = 7;
	memory_object_copy_strategy_t copy = 7;
	mach_port_make_send_t dm;

	(void)state;
	assert_int_equal(pthread_create(&th, NULL, ctl_server, &sa), 0);
	for (int i = 0; i < 3; i++) {
		attr_ready = i != 1;
		attr_cache = i == 1 ? -1 : i;
		attr_copy = i == 2 ? INT_MIN : MEMORY_OBJECT_COPY_TEMPORARY;
		assert_kr(memory_object_get_attributes(ctl, &ready, &cache, &copy), KERN_SUCCESS);
		EXPECT("get_attributes", (mach_port_seqno_t)i, ctl);
		assert_int_equal(ready, attr_ready);
		assert_int_equal(cache, attr_cache);
		assert_int_equal(copy, attr_copy);
	}
	/* An error travels back as the result, outputs untouched. */
	rec_result = KERN_INVALID_ARGUMENT;
	ready = 7;
	assert_kr(memory_object_get_attributes(ctl, &ready, &cache, &copy), KERN_INVALID_ARGUMENT);
	assert_int_equal(ready, 7);
	rec_result = KERN_SUCCESS;
	assert_int_equal(pthread_join(th, &res), 0);
	assert_null(res);

	/* vm_set_default_memory_manager: a send right made in, the old one moved out. */
	old_default = mvm_test_port_with_send();
	assert_kr(mach_port_mod_refs(mach_task_self(), old_default, MACH_PORT_RIGHT_SEND, 1),
	    KERN_SUCCESS);
	assert_int_equal(pthread_create(&th, NULL, ctl_server, &sh), 0);
	dm = newdm;
	assert_kr(vm_set_default_memory_manager(host, &dm), KERN_SUCCESS);
	EXPECT("set_default_memory_manager", 0, host, newdm);
	assert_int_equal(dm, old_default);
	/* The op kept one send right to newdm; the reply moved one to old_default back. */
	assert_int_equal(mvm_test_refs(newdm, MACH_PORT_RIGHT_SEND), 1);
	assert_int_equal(mvm_test_refs(old_default, MACH_PORT_RIGHT_SEND), 2);
	/* MACH_PORT_NULL reads the current one. */
	dm = MACH_PORT_NULL;
	assert_kr(vm_set_default_memory_manager(host, &dm), KERN_SUCCESS);
	EXPECT("set_default_memory_manager", 1, host, MACH_PORT_NULL);
	assert_int_equal(dm, old_default);
	assert_int_equal(mvm_test_refs(old_default, MACH_PORT_RIGHT_SEND), 2);
	/* A failing op: the request is destroyed, the caller's name untouched. */
	rec_result = KERN_INVALID_HOST;
	dm = newdm;
	assert_kr(vm_set_default_memory_manager(host, &dm), KERN_INVALID_HOST);
	assert_int_equal(dm, newdm);
	rec_result = KERN_SUCCESS;
	assert_int_equal(pthread_join(th, &res), 0);
	assert_null(res);
	assert_int_equal(mvm_test_refs(newdm, MACH_PORT_RIGHT_SEND), 1);
	drop(old_default);
	drop(newdm);
	drop(ctl);
	drop(host);
	MVM_TEST_QUIESCENT();
}

/* A kernel thread that answers get_attributes with a broken reply. */
enum bad_reply { BAD_ID, BAD_SIZE, BAD_TYPE, SHORT_SUCCESS, NBAD };

struct bad_arg {
	mach_port_t port;
	enum bad_reply kind;
};

static void *
bad_server(void *p)
{
	struct bad_arg *a = p;
	union msgbuf in, out;
	mach_msg_type_t t = { .msgt_name = MACH_MSG_TYPE_INTEGER_32, .msgt_size = 32,
		.msgt_number = 1, .msgt_inline = 1 };

	if (mach_msg(&in.h, MACH_RCV_MSG, 0, sizeof(in), a->port, 0, MACH_PORT_NULL) !=
	    MACH_MSG_SUCCESS)
		return (void *)1;
	memset(&out, 0, sizeof(out));
	out.h.msgh_bits = MACH_MSGH_BITS(MACH_MSGH_BITS_REMOTE(in.h.msgh_bits), 0);
	out.h.msgh_remote_port = in.h.msgh_remote_port;
	out.h.msgh_id = in.h.msgh_id + (a->kind == BAD_ID ? 101 : 100);
	out.h.msgh_size = a->kind == SHORT_SUCCESS ? 40 : a->kind == BAD_SIZE ? 72 : 88;
	for (int i = 0; i < 4; i++)
		memcpy(out.b + 24 + 16 * i, &t, sizeof(t));
	if (a->kind == BAD_TYPE)
		out.b[24 + 16 * 2] = MACH_MSG_TYPE_INTEGER_16;
	if (mach_msg(&out.h, MACH_SEND_MSG, out.h.msgh_size, 0, MACH_PORT_NULL, 0,
	    MACH_PORT_NULL) != MACH_MSG_SUCCESS)
		return (void *)2;
	return NULL;
}

static void
test_bad_replies(void **state)
{
	static const kern_return_t want[NBAD] = {
		MIG_REPLY_MISMATCH, MIG_TYPE_ERROR, MIG_TYPE_ERROR, MIG_TYPE_ERROR
	};
	mach_port_t ctl = mvm_test_port_with_send();

	(void)state;
	for (int k = 0; k < NBAD; k++) {
		struct bad_arg a = { .port = ctl, .kind = (enum bad_reply)k };
		boolean_t r = 7, c = 7;
		memory_object_copy_strategy_t cs = 7;
		pthread_t th;
		void *res;

		assert_int_equal(pthread_create(&th, NULL, bad_server, &a), 0);
		assert_kr(memory_object_get_attributes(ctl, &r, &c, &cs), want[k]);
		assert_int_equal(pthread_join(th, &res), 0);
		assert_null(res);
		assert_int_equal(r, 7);
		assert_int_equal(cs, 7);
	}
	assert_kr(mach_port_destroy(mach_task_self(), ctl), KERN_SUCCESS);
	mig_dealloc_reply_port(mig_get_reply_port());
	MVM_TEST_QUIESCENT();
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_init_and_data_requests),
		cmocka_unit_test(test_terminate_moves_receive_rights),
		cmocka_unit_test(test_copy),
		cmocka_unit_test(test_completions),
		cmocka_unit_test(test_data_return_and_initialize),
		cmocka_unit_test(test_create),
		cmocka_unit_test(test_failing_routine_releases_everything),
		cmocka_unit_test(test_missing_ops),
		cmocka_unit_test(test_registry),
		cmocka_unit_test(test_control_simpleroutines),
		cmocka_unit_test(test_control_routines),
		cmocka_unit_test(test_bad_replies),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
