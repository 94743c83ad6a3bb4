/*
 * <mach/mach.h>: the Mach interface as machvm provides it: types, port and message calls,
 * anonymous virtual memory, and the MIG server loop.
 *
 * Every function here may be called from any thread, concurrently. Each process has one
 * task (mach_task_self()) with one port name space; the task argument of every call must
 * be mach_task_self(), and any other value answers MACH_SEND_INVALID_DEST, as an RPC to a
 * bad task port would in Mach.
 */
#ifndef _MACH_MACH_H_
#define _MACH_MACH_H_

#include <mach/mach_types.h>
#include <mach/mig_errors.h>
#include <mach/notify.h>
#include <mach/memory_object_control.h>
#include <machvm/export.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The task's own port, and the page size of this machine. */
MVM_EXTERN mach_port_t mach_task_self(void);
#define mach_task_self_ (mach_task_self())
MVM_EXTERN extern vm_size_t vm_page_size;

/* Port name space: see mach_port_allocate(3) and its siblings. */
MVM_EXTERN kern_return_t mach_port_allocate(ipc_space_t task, mach_port_right_t right,
    mach_port_t *name);
MVM_EXTERN kern_return_t mach_port_allocate_name(ipc_space_t task, mach_port_right_t right,
    mach_port_t name);
MVM_EXTERN kern_return_t mach_port_deallocate(ipc_space_t task, mach_port_t name);
MVM_EXTERN kern_return_t mach_port_destroy(ipc_space_t task, mach_port_t name);
MVM_EXTERN kern_return_t mach_port_mod_refs(ipc_space_t task, mach_port_t name,
    mach_port_right_t right, mach_port_delta_t delta);
MVM_EXTERN kern_return_t mach_port_get_refs(ipc_space_t task, mach_port_t name,
    mach_port_right_t right, mach_port_urefs_t *refs);
MVM_EXTERN kern_return_t mach_port_insert_right(ipc_space_t task, mach_port_t name,
    mach_port_t poly, mach_msg_type_name_t polyPoly);
MVM_EXTERN kern_return_t mach_port_extract_right(ipc_space_t task, mach_port_t name,
    mach_msg_type_name_t msgt_name, mach_port_t *poly, mach_msg_type_name_t *polyPoly);
MVM_EXTERN kern_return_t mach_port_move_member(ipc_space_t task, mach_port_t member,
    mach_port_t after);
MVM_EXTERN kern_return_t mach_port_get_set_status(ipc_space_t task, mach_port_t name,
    mach_port_array_t *members, mach_msg_type_number_t *membersCnt);
MVM_EXTERN kern_return_t mach_port_set_seqno(ipc_space_t task, mach_port_t name,
    mach_port_seqno_t seqno);
MVM_EXTERN kern_return_t mach_port_get_receive_status(ipc_space_t task, mach_port_t name,
    mach_port_status_t *status);
MVM_EXTERN kern_return_t mach_port_set_qlimit(ipc_space_t task, mach_port_t name,
    mach_port_msgcount_t qlimit);
MVM_EXTERN kern_return_t mach_port_set_mscount(ipc_space_t task, mach_port_t name,
    mach_port_mscount_t mscount);
MVM_EXTERN kern_return_t mach_port_request_notification(ipc_space_t task, mach_port_t name,
    mach_msg_id_t variant, mach_port_mscount_t sync, mach_port_t notify,
    mach_msg_type_name_t notify_type, mach_port_t *previous);
MVM_EXTERN kern_return_t mach_port_names(ipc_space_t task, mach_port_array_t *names,
    mach_msg_type_number_t *namesCnt, mach_port_type_array_t *types,
    mach_msg_type_number_t *typesCnt);
MVM_EXTERN kern_return_t mach_port_type(ipc_space_t task, mach_port_t name,
    mach_port_type_t *ptype);

/*
 * The host port (mach_host_self(3)). machvm's processes are privileged: both calls name
 * the one host port of this process's kernel, on which vm_set_default_memory_manager is
 * served. MACH_PORT_NULL when the kernel cannot run here (see mvm_vm_available).
 */
MVM_EXTERN mach_port_t mach_host_self(void);
MVM_EXTERN mach_port_t mach_host_priv_self(void);

/* Anonymous virtual memory (also what out-of-line data arrives in). */
MVM_EXTERN kern_return_t vm_allocate(vm_map_t task, vm_address_t *address, vm_size_t size,
    boolean_t anywhere);
MVM_EXTERN kern_return_t vm_deallocate(vm_map_t task, vm_address_t address, vm_size_t size);

/*
 * Map a memory object (vm_map(3)); vm_deallocate() unmaps. copy = TRUE maps a copy made
 * by the object's copy strategy (waits for the object to be ready).
 */
MVM_EXTERN kern_return_t vm_map(vm_map_t target_task, vm_address_t *address, vm_size_t size,
    vm_address_t mask, boolean_t anywhere, memory_object_t memory_object, vm_offset_t offset,
    boolean_t copy, vm_prot_t cur_protection, vm_prot_t max_protection,
    vm_inherit_t inheritance);

/*
 * What a child of fork() gets of [address, address + size) (vm_inherit(3)): for memory
 * object mappings VM_INHERIT_NONE (nothing), VM_INHERIT_COPY (a private copy made at
 * fork) or VM_INHERIT_SHARE (the cache pages, shared); anonymous memory can be copied
 * or left out, not shared (KERN_INVALID_ARGUMENT).
 */
MVM_EXTERN kern_return_t vm_inherit(vm_map_t target_task, vm_address_t address, vm_size_t size,
    vm_inherit_t new_inheritance);

/* The MIG server loop. */
typedef boolean_t (*mach_msg_demux_t)(mach_msg_header_t *in, mach_msg_header_t *out);
MVM_EXTERN mach_msg_return_t mach_msg_server(mach_msg_demux_t demux, mach_msg_size_t max_size,
    mach_port_t rcv_name);
MVM_EXTERN mach_msg_return_t mach_msg_server_timeout(mach_msg_demux_t demux,
    mach_msg_size_t max_size, mach_port_t rcv_name, mach_msg_option_t option,
    mach_msg_timeout_t timeout);
MVM_EXTERN mach_msg_return_t mach_msg_server_once(mach_msg_demux_t demux,
    mach_msg_size_t max_size, mach_port_t rcv_name, mach_msg_option_t options);

/* The per-thread reply port that MIG client stubs use for routines. */
MVM_EXTERN mach_port_t mig_get_reply_port(void);
MVM_EXTERN void mig_dealloc_reply_port(mach_port_t reply_port);
MVM_EXTERN void mig_put_reply_port(mach_port_t reply_port);

/* Text for a kern_return_t or mach_msg_return_t. */
MVM_EXTERN const char *mach_error_string(kern_return_t code);

#ifdef __cplusplus
}
#endif

#endif /* _MACH_MACH_H_ */
