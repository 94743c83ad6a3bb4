/*
 * tests/fuzz/fuzz_mo_ops_server.c: mvm_memory_object_server with an ops table (some
 * members set, some NULL) on arbitrary bytes taken as a received message.
 */
#include "mo_fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int token;

static kern_return_t
f_request(void *ctx, memory_object_t o, mach_port_seqno_t s, memory_object_control_t c,
    vm_offset_t off, vm_size_t len, vm_prot_t a)
{
	(void)o; (void)s; (void)c; (void)off; (void)len; (void)a;
	if (ctx != &token)
		mo_fuzz_fail("wrong context");
	mo_fuzz_called = 1;
	return KERN_SUCCESS;
}

static kern_return_t
f_data_return(void *ctx, memory_object_t o, mach_port_seqno_t s, memory_object_control_t c,
    vm_offset_t off, vm_offset_t d, mach_msg_type_number_t n, boolean_t dirty, boolean_t kc)
{
	(void)ctx; (void)o; (void)s; (void)c; (void)off; (void)d; (void)n; (void)dirty; (void)kc;
	mo_fuzz_called = 1;
	return KERN_FAILURE;
}

static kern_return_t
f_create(void *ctx, memory_object_t o, mach_port_seqno_t s, memory_object_t n,
    vm_size_t size, memory_object_control_t c, memory_object_name_t nm, vm_size_t ps)
{
	(void)ctx; (void)o; (void)s; (void)n; (void)size; (void)c; (void)nm; (void)ps;
	mo_fuzz_called = 1;
	return KERN_SUCCESS;
}

static const struct mvm_memory_object_ops ops = {
	.version = MVM_MEMORY_OBJECT_OPS_VERSION,
	.data_request = f_request,
	.data_unlock = f_request,
	.data_return = f_data_return,
	.create = f_create,
};

static boolean_t
run(mach_msg_header_t *in, mach_msg_header_t *out)
{
	return mvm_memory_object_server(&ops, &token, in, out);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static union mo_fuzz_buf in;

	size = mo_fuzz_load(&in, data, size);
	mo_fuzz_check(&in, size, MVM_MEMORY_OBJECT_MSG_SIZE_MAX, run);
	return 0;
}
