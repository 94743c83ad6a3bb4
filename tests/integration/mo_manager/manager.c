/*
 * tests/integration/mo_manager/manager.c: a memory manager written against the Mach
 * headers alone, as a ported pager would be. It defines a few server routines (plain,
 * and one seqnos_) and leaves the others to libmachvm's defaults, which must answer
 * MIG_BAD_ID so that the program links and the requests are destroyed.
 */
#include <string.h>

#include <mach/mach.h>
#include <mach/memory_object_control.h>
#include <mach/memory_object_server.h>

#include "manager.h"

struct manager_stats manager_stats;

kern_return_t
memory_object_init(memory_object_t object, memory_object_control_t control,
    memory_object_name_t name, vm_size_t page_size)
{
	(void)object;
	if (page_size != vm_page_size)
		return KERN_INVALID_ARGUMENT;
	manager_stats.inits++;
	(void)mach_port_deallocate(mach_task_self(), name);
	(void)memory_object_ready(control, TRUE, MEMORY_OBJECT_COPY_DELAY);
	(void)mach_port_deallocate(mach_task_self(), control);
	return KERN_SUCCESS;
}

/* Answer a request with a page of bytes equal to the low byte of the offset's page. */
static kern_return_t
supply(memory_object_control_t control, vm_offset_t offset, vm_size_t length)
{
	vm_address_t page = 0;
	kern_return_t kr;

	kr = vm_allocate(mach_task_self(), &page, length, TRUE);
	if (kr != KERN_SUCCESS)
		return kr;
	memset((void *)page, (int)(offset / vm_page_size) & 0xff, length);
	kr = memory_object_data_supply(control, offset, page, (mach_msg_type_number_t)length, TRUE,
	    VM_PROT_NONE, FALSE, MACH_PORT_NULL);
	if (kr != KERN_SUCCESS)
		(void)vm_deallocate(mach_task_self(), page, length);
	(void)mach_port_deallocate(mach_task_self(), control);
	return KERN_SUCCESS;
}

kern_return_t
memory_object_data_request(memory_object_t object, memory_object_control_t control,
    vm_offset_t offset, vm_size_t length, vm_prot_t desired_access)
{
	(void)object;
	(void)desired_access;
	manager_stats.requests++;
	return supply(control, offset, length);
}

kern_return_t
seqnos_memory_object_data_request(memory_object_t object, mach_port_seqno_t seqno,
    memory_object_control_t control, vm_offset_t offset, vm_size_t length,
    vm_prot_t desired_access)
{
	(void)object;
	(void)desired_access;
	manager_stats.requests++;
	manager_stats.last_seqno = seqno;
	return supply(control, offset, length);
}

kern_return_t
memory_object_terminate(memory_object_t object, memory_object_control_t control,
    memory_object_name_t name)
{
	(void)object;
	manager_stats.terminates++;
	(void)mach_port_mod_refs(mach_task_self(), control, MACH_PORT_RIGHT_RECEIVE, -1);
	(void)mach_port_mod_refs(mach_task_self(), name, MACH_PORT_RIGHT_RECEIVE, -1);
	return KERN_SUCCESS;
}

mach_msg_return_t
manager_serve_once(mach_port_t object, int seqnos)
{
	return mach_msg_server_once(seqnos ? seqnos_memory_object_server : memory_object_server,
	    8192, object, MACH_RCV_TIMEOUT);
}
