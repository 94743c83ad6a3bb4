/*
 * tests/integration/mo_manager/kernel.c: plays the kernel for manager.c, with machvm's
 * senders and control-port demultiplexer, and checks what the manager answers and that
 * nothing leaks. Built twice, against the static and the shared library, since the
 * manager's routines must replace the library's weak defaults in both.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mach/mach.h>
#include <machvm/ipc.h>
#include <machvm/memory_object.h>
#include <machvm/trace.h>

#include "manager.h"

#define CHECK(c) \
	do { \
		if (!(c)) { \
			fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #c); \
			exit(1); \
		} \
	} while (0)

static struct {
	int readies, supplies;
	vm_offset_t offset;
	mach_msg_type_number_t count;
	int byte;
} seen;

static kern_return_t
k_ready(void *ctx, memory_object_control_t c, mach_port_seqno_t s, boolean_t may_cache,
    memory_object_copy_strategy_t copy)
{
	(void)ctx; (void)c; (void)s;
	CHECK(may_cache == TRUE && copy == MEMORY_OBJECT_COPY_DELAY);
	seen.readies++;
	return KERN_SUCCESS;
}

static kern_return_t
k_data_supply(void *ctx, memory_object_control_t c, mach_port_seqno_t s, vm_offset_t offset,
    vm_offset_t data, mach_msg_type_number_t count, vm_prot_t lock, boolean_t precious,
    mach_port_t reply_to, mach_msg_type_name_t reply_to_type)
{
	(void)ctx; (void)c; (void)s; (void)reply_to_type;
	CHECK(lock == VM_PROT_NONE && !precious && reply_to == MACH_PORT_NULL);
	seen.supplies++;
	seen.offset = offset;
	seen.count = count;
	seen.byte = count ? ((unsigned char *)data)[count - 1] : -1;
	CHECK(vm_deallocate(mach_task_self(), data, count) == KERN_SUCCESS);
	return KERN_SUCCESS;
}

static const struct mvm_memory_object_control_ops kernel_ops = {
	.version = MVM_MEMORY_OBJECT_OPS_VERSION,
	.ready = k_ready,
	.data_supply = k_data_supply,
};

/* Take one message from the control port and serve it as the kernel. */
static void
kernel_serve(mach_port_t ctl)
{
	union {
		mach_msg_header_t h;
		char b[512];
	} in, out;
	char line[256];

	CHECK(mach_msg(&in.h, MACH_RCV_MSG | MACH_RCV_TIMEOUT, 0, sizeof(in), ctl, 1000,
	    MACH_PORT_NULL) == MACH_MSG_SUCCESS);
	CHECK(mvm_mo_decode(&in.h, line, sizeof(line)) == KERN_SUCCESS);
	printf("kernel got: %s\n", line);
	CHECK(mvm_memory_object_control_server(&kernel_ops, NULL, &in.h, &out.h));
	CHECK(((mig_reply_header_t *)&out.h)->RetCode == KERN_SUCCESS);
}

static mach_port_t
receive_right(void)
{
	mach_port_t p;

	CHECK(mach_port_allocate(mach_task_self(), MACH_PORT_RIGHT_RECEIVE, &p) == KERN_SUCCESS);
	return p;
}

int
main(void)
{
	mach_port_t obj = receive_right(), ctl = receive_right(), name = receive_right();
	char why[256];

	CHECK(mach_port_insert_right(mach_task_self(), obj, obj, MACH_MSG_TYPE_MAKE_SEND) ==
	    KERN_SUCCESS);

	/* init: the manager answers memory_object_ready. */
	CHECK(mvm_mo_send_init(obj, ctl, name, vm_page_size) == KERN_SUCCESS);
	CHECK(manager_serve_once(obj, 0) == MACH_MSG_SUCCESS);
	CHECK(manager_stats.inits == 1);
	kernel_serve(ctl);
	CHECK(seen.readies == 1);

	/* data_request, plain and seqnos_: the manager supplies a page. */
	for (int seqnos = 0; seqnos < 2; seqnos++) {
		vm_offset_t off = (vm_offset_t)(3 + seqnos) * vm_page_size;

		CHECK(mvm_mo_send_data_request(obj, ctl, off, vm_page_size, VM_PROT_READ) ==
		    KERN_SUCCESS);
		CHECK(manager_serve_once(obj, seqnos) == MACH_MSG_SUCCESS);
		kernel_serve(ctl);
		CHECK(seen.supplies == seqnos + 1 && seen.offset == off);
		CHECK(seen.count == vm_page_size && seen.byte == 3 + seqnos);
	}
	CHECK(manager_stats.requests == 2 && manager_stats.last_seqno == 2);

	/* Routines the manager does not define answer MIG_BAD_ID; their rights are freed. */
	CHECK(mvm_mo_send_data_unlock(obj, ctl, 0, vm_page_size, VM_PROT_WRITE) == KERN_SUCCESS);
	CHECK(manager_serve_once(obj, 0) == MACH_MSG_SUCCESS);
	CHECK(mvm_mo_send_lock_completed(obj, MACH_MSG_TYPE_MAKE_SEND_ONCE, ctl, 0, 1) ==
	    KERN_SUCCESS);
	CHECK(manager_serve_once(obj, 1) == MACH_MSG_SUCCESS);
	{
		mach_port_urefs_t refs = 99;

		CHECK(mach_port_get_refs(mach_task_self(), ctl, MACH_PORT_RIGHT_SEND, &refs) ==
		    KERN_SUCCESS);
		CHECK(refs == 0);
	}

	/* terminate moves the control and name receive rights to the manager. */
	CHECK(mach_port_mod_refs(mach_task_self(), obj, MACH_PORT_RIGHT_SEND, 1) == KERN_SUCCESS);
	CHECK(mvm_mo_send_terminate(obj, ctl, name) == KERN_SUCCESS);
	CHECK(manager_serve_once(obj, 0) == MACH_MSG_SUCCESS);
	CHECK(manager_stats.terminates == 1);

	CHECK(mach_port_destroy(mach_task_self(), obj) == KERN_SUCCESS);
	if (mvm_ipc_quiescent(why, sizeof(why)) != KERN_SUCCESS) {
		fprintf(stderr, "not quiescent: %s\n", why);
		return 1;
	}
	printf("ok\n");
	return 0;
}
