/*
 * tests/fuzz/fuzz_mo_mach_msg.c: memory object messages built from the input travel
 * through the real mach_msg: the body's small port names are mapped onto a small name
 * space (null, dead, receive with send, receive, send-once, dead name) and its out-of-line pointers onto a real buffer, the message
 * is sent to a port of ours, received, served by one of the demultiplexers (chosen by
 * the first byte) whose routines keep nothing, and destroyed as mach_msg_server would.
 * The run must end quiescent: a malformed message may be rejected, never leaked.
 */
#include <machvm/ipc.h>

#include "ipc/ipc.h"
#include "mo_fuzz.h"

#define OK(call) \
	do { \
		if ((call) != KERN_SUCCESS) \
			mo_fuzz_fail(#call); \
	} while (0)

/* The per-run name space: small names in the input pick one of these. */
enum { FN_NULL, FN_DEAD, FN_R0, FN_R1, FN_SO, FN_DEADNAME, FN_COUNT };

struct fuzz_space {
	mach_port_t names[FN_COUNT];
};

static void
fuzz_space_init(struct fuzz_space *fs)
{
	mach_port_t *n = fs->names;
	mach_msg_type_name_t t;

	n[FN_NULL] = MACH_PORT_NULL;
	n[FN_DEAD] = MACH_PORT_DEAD;
	OK(mach_port_allocate(mach_task_self(), MACH_PORT_RIGHT_RECEIVE, &n[FN_R0]));
	OK(mach_port_insert_right(mach_task_self(), n[FN_R0], n[FN_R0], MACH_MSG_TYPE_MAKE_SEND));
	OK(mach_port_mod_refs(mach_task_self(), n[FN_R0], MACH_PORT_RIGHT_SEND, 1));
	OK(mach_port_allocate(mach_task_self(), MACH_PORT_RIGHT_RECEIVE, &n[FN_R1]));
	OK(mach_port_extract_right(mach_task_self(), n[FN_R1], MACH_MSG_TYPE_MAKE_SEND_ONCE,
	    &n[FN_SO], &t));
	OK(mach_port_allocate(mach_task_self(), MACH_PORT_RIGHT_RECEIVE, &n[FN_DEADNAME]));
	OK(mach_port_insert_right(mach_task_self(), n[FN_DEADNAME], n[FN_DEADNAME],
	    MACH_MSG_TYPE_MAKE_SEND));
	OK(mach_port_mod_refs(mach_task_self(), n[FN_DEADNAME], MACH_PORT_RIGHT_RECEIVE, -1));
}

static mach_port_t
fuzz_map_name(const struct fuzz_space *fs, mach_port_t raw)
{
	return raw < 0x100 ? fs->names[raw % FN_COUNT] : raw;
}

/* Destroy every name (messages queued on receive rights die with them), then check. */
static void
fuzz_teardown(void)
{
	for (int round = 0; round < 16; round++) {
		mach_port_array_t names;
		mach_port_type_array_t types;
		mach_msg_type_number_t nn, nt;

		OK(mach_port_names(mach_task_self(), &names, &nn, &types, &nt));
		for (uint32_t i = 0; i < nn; i++)
			(void)mach_port_destroy(mach_task_self(), names[i]);
		OK(vm_deallocate(mach_task_self(), (vm_address_t)names,
		    (vm_size_t)(nn ? nn : 1) * sizeof(*names)));
		OK(vm_deallocate(mach_task_self(), (vm_address_t)types,
		    (vm_size_t)(nt ? nt : 1) * sizeof(*types)));
		if (nn == 0)
			break;
	}
	{
		char why[256];

		if (mvm_ipc_quiescent(why, sizeof(why)) != KERN_SUCCESS) {
			fprintf(stderr, "fuzz: not quiescent after the run: %s\n", why);
			abort();
		}
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static kern_return_t
keep_nothing(void *ctx, memory_object_t o, mach_port_seqno_t s, memory_object_control_t c,
    vm_offset_t off, vm_size_t len, vm_prot_t a)
{
	(void)ctx; (void)o; (void)s; (void)c; (void)off; (void)len; (void)a;
	return KERN_SUCCESS;
}

static kern_return_t
k_get_attributes(void *ctx, memory_object_control_t c, mach_port_seqno_t s, boolean_t *r,
    boolean_t *m, memory_object_copy_strategy_t *p)
{
	(void)ctx; (void)c; (void)s;
	*r = TRUE;
	*m = FALSE;
	*p = MEMORY_OBJECT_COPY_NONE;
	return KERN_SUCCESS;
}

static const struct mvm_memory_object_ops mo_ops = {
	.version = MVM_MEMORY_OBJECT_OPS_VERSION,
	.data_request = keep_nothing,
	.data_unlock = keep_nothing,
};

static const struct mvm_memory_object_control_ops ctl_ops = {
	.version = MVM_MEMORY_OBJECT_OPS_VERSION,
	.get_attributes = k_get_attributes,
};

static uint8_t ool_data[1 << 16];

/* Map port names and out-of-line pointers of the body; stop at the first bad item. */
static void
map_body(const struct fuzz_space *fs, union mo_fuzz_buf *m, size_t size)
{
	size_t pos = sizeof(mach_msg_header_t);
	struct mvm_msg_item it;

	while (pos < size && mvm__msg_next_item(m->b, size, &pos, &it) == MACH_MSG_SUCCESS) {
		if (it.is_inline && mvm__msg_type_is_port(it.name)) {
			for (uint32_t i = 0; i < it.number && it.data_off + 4 * (i + 1) <= size; i++) {
				mach_port_t n;

				memcpy(&n, m->b + it.data_off + 4 * i, sizeof(n));
				n = fuzz_map_name(fs, n);
				memcpy(m->b + it.data_off + 4 * i, &n, sizeof(n));
			}
		} else if (!it.is_inline) {
			uint64_t p = it.data_len <= sizeof(ool_data) ? (uint64_t)(uintptr_t)ool_data : 0;
			mach_msg_type_t t;

			if (mvm__msg_type_is_port(it.name))
				p = 0;  /* out-of-line port arrays: keep them empty or refused */
			memcpy(m->b + it.data_off, &p, sizeof(p));
			/* The buffer is static: mach_msg must not deallocate it. */
			memcpy(&t, m->b + it.desc_off, sizeof(t));
			t.msgt_deallocate = 0;
			memcpy(m->b + it.desc_off, &t, sizeof(t));
		}
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static union mo_fuzz_buf m, out;
	struct fuzz_space fs;
	mach_msg_return_t mr;
	unsigned sel;

	if (size < 1 + sizeof(mach_msg_header_t))
		return 0;
	sel = data[0];
	size = mo_fuzz_load(&m, data + 1, size - 1);
	fuzz_space_init(&fs);
	m.h.msgh_bits = MACH_MSGH_BITS(MACH_MSG_TYPE_COPY_SEND, 0) |
	    (m.h.msgh_bits & MACH_MSGH_BITS_COMPLEX);
	m.h.msgh_remote_port = fs.names[FN_R0];
	m.h.msgh_local_port = MACH_PORT_NULL;
	if (m.h.msgh_bits & MACH_MSGH_BITS_COMPLEX)
		map_body(&fs, &m, size);
	mr = mach_msg(&m.h, MACH_SEND_MSG | MACH_SEND_TIMEOUT, (mach_msg_size_t)size, 0,
	    MACH_PORT_NULL, 0, MACH_PORT_NULL);
	if (getenv("MVM_FUZZ_VERBOSE") != NULL)
		printf("id %d size %zu: send %s\n", m.h.msgh_id, size, mvm_errname(mr));
	if (mr == MACH_MSG_SUCCESS) {
		boolean_t handled;
		kern_return_t rc;

		memset(&m, 0, sizeof(m));
		mr = mach_msg(&m.h, MACH_RCV_MSG | MACH_RCV_TIMEOUT, 0, sizeof(m), fs.names[FN_R0], 0,
		    MACH_PORT_NULL);
		if (mr != MACH_MSG_SUCCESS)
			mo_fuzz_fail("receive");
		switch (sel % 5) {
		case 0: handled = memory_object_server(&m.h, &out.h); break;
		case 1: handled = seqnos_memory_object_server(&m.h, &out.h); break;
		case 2: handled = seqnos_memory_object_default_server(&m.h, &out.h); break;
		case 3: handled = mvm_memory_object_server(&mo_ops, NULL, &m.h, &out.h); break;
		default: handled = mvm_memory_object_control_server(&ctl_ops, NULL, &m.h, &out.h); break;
		}
		rc = out.r.RetCode;
		if (getenv("MVM_FUZZ_VERBOSE") != NULL)
			printf("  demux %u: handled %d, %s\n", sel % 5, handled, mvm_errname(rc));
		if (!handled && rc != MIG_BAD_ID)
			mo_fuzz_fail("FALSE without MIG_BAD_ID");
		/* As mach_msg_server: the routines keep nothing, so destroy in every case. */
		m.h.msgh_remote_port = MACH_PORT_NULL;
		mach_msg_destroy(&m.h);
		if (rc == KERN_SUCCESS && (out.h.msgh_bits & MACH_MSGH_BITS_COMPLEX))
			mach_msg_destroy(&out.h);
	}
	fuzz_teardown();
	return 0;
}
