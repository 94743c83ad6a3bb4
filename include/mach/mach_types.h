/*
 * <mach/mach_types.h>: the types the Mach interfaces use.
 * Thread safety: constants and types only.
 */
#ifndef _MACH_MACH_TYPES_H_
#define _MACH_MACH_TYPES_H_

#include <mach/boolean.h>
#include <mach/std_types.h>
#include <mach/kern_return.h>
#include <mach/port.h>
#include <mach/message.h>
#include <mach/vm_prot.h>
#include <mach/memory_object.h>

typedef mach_port_t task_t;
typedef mach_port_t ipc_space_t;
typedef mach_port_t vm_map_t;
typedef mach_port_t host_t;
typedef mach_port_t host_priv_t;
typedef mach_port_t thread_t;
typedef mach_port_t mach_port_make_send_t;
typedef mach_port_t mach_port_poly_t;
typedef mach_port_t *mach_port_name_array_t;

#endif /* _MACH_MACH_TYPES_H_ */
