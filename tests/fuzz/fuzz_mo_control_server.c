/*
 * tests/fuzz/fuzz_mo_control_server.c: the kernel's mvm_memory_object_control_server on
 * arbitrary bytes taken as a received message, with ops that answer the two routines
 * (so that replies are built) and take the simpleroutines.
 */
#include "mo_fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static kern_return_t
k_get_attributes(void *ctx, memory_object_control_t c, mach_port_seqno_t s, boolean_t *r,
    boolean_t *m, memory_object_copy_strategy_t *p)
{
	(void)ctx; (void)c;
	mo_fuzz_called = 1;
	*r = (boolean_t)s;
	*m = -1;
	*p = MEMORY_OBJECT_COPY_DELAY;
	return (s & 1) ? KERN_INVALID_ARGUMENT : KERN_SUCCESS;
}

static kern_return_t
k_set_default(void *ctx, host_priv_t h, mach_port_seqno_t s, mach_port_make_send_t *d)
{
	(void)ctx; (void)h; (void)s;
	mo_fuzz_called = 1;
	*d = ~*d;
	return KERN_SUCCESS;
}

static kern_return_t
k_data_supply(void *ctx, memory_object_control_t c, mach_port_seqno_t s, vm_offset_t o,
    vm_offset_t d, mach_msg_type_number_t n, vm_prot_t l, boolean_t p, mach_port_t t,
    mach_msg_type_name_t tt)
{
	(void)ctx; (void)c; (void)s; (void)o; (void)d; (void)n; (void)l; (void)p; (void)t;
	mo_fuzz_called = 1;
	if (tt != MACH_MSG_TYPE_PORT_SEND && tt != MACH_MSG_TYPE_PORT_SEND_ONCE)
		mo_fuzz_fail("reply_to of an unexpected type");
	return KERN_SUCCESS;
}

static kern_return_t
k_lock_request(void *ctx, memory_object_control_t c, mach_port_seqno_t s, vm_offset_t o,
    vm_size_t z, memory_object_return_t r, boolean_t f, vm_prot_t l, mach_port_t t,
    mach_msg_type_name_t tt)
{
	(void)ctx; (void)c; (void)s; (void)o; (void)z; (void)r; (void)f; (void)l; (void)t;
	(void)tt;
	mo_fuzz_called = 1;
	return KERN_SUCCESS;
}

static const struct mvm_memory_object_control_ops ops = {
	.version = MVM_MEMORY_OBJECT_OPS_VERSION,
	.get_attributes = k_get_attributes,
	.set_default_memory_manager = k_set_default,
	.data_supply = k_data_supply,
	.lock_request = k_lock_request,
};

static boolean_t
run(mach_msg_header_t *in, mach_msg_header_t *out)
{
	return mvm_memory_object_control_server(&ops, NULL, in, out);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static union mo_fuzz_buf in;

	size = mo_fuzz_load(&in, data, size);
	mo_fuzz_check(&in, size, MVM_MEMORY_OBJECT_CONTROL_MSG_SIZE_MAX, run);
	return 0;
}
