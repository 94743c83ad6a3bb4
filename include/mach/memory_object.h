/*
 * <mach/memory_object.h>: memory object types and constants, with GNU Mach's values.
 * Thread safety: constants and types only.
 */
#ifndef _MACH_MEMORY_OBJECT_H_
#define _MACH_MEMORY_OBJECT_H_

#include <mach/port.h>

typedef mach_port_t memory_object_t;         /* the manager's object port */
typedef mach_port_t memory_object_control_t; /* the kernel's control port */
typedef mach_port_t memory_object_name_t;    /* the kernel's name port */
typedef mach_port_t memory_object_array_t[];

typedef int memory_object_copy_strategy_t;
#define MEMORY_OBJECT_COPY_NONE      0
#define MEMORY_OBJECT_COPY_CALL      1
#define MEMORY_OBJECT_COPY_DELAY     2
#define MEMORY_OBJECT_COPY_TEMPORARY 3

typedef int memory_object_return_t;
#define MEMORY_OBJECT_RETURN_NONE  0
#define MEMORY_OBJECT_RETURN_DIRTY 1
#define MEMORY_OBJECT_RETURN_ALL   2

#define MEMORY_OBJECT_NULL MACH_PORT_NULL

#endif /* _MACH_MEMORY_OBJECT_H_ */
