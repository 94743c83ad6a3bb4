/*
 * <mach/std_types.h>: Mach's machine-dependent scalar types (x86_64 / LP64 layout,
 * as GNU Mach defines them for 64-bit user space).
 * Thread safety: constants and types only.
 */
#ifndef _MACH_STD_TYPES_H_
#define _MACH_STD_TYPES_H_

#include <stdint.h>
#include <mach/boolean.h>

typedef unsigned int natural_t;
typedef int integer_t;
typedef uintptr_t vm_offset_t;
typedef uintptr_t vm_size_t;
typedef vm_offset_t vm_address_t;
typedef vm_offset_t pointer_t;
typedef vm_offset_t *vm_offset_array_t;
typedef int vm_inherit_t;

#define VM_INHERIT_SHARE   ((vm_inherit_t)0)
#define VM_INHERIT_COPY    ((vm_inherit_t)1)
#define VM_INHERIT_NONE    ((vm_inherit_t)2)
#define VM_INHERIT_DEFAULT VM_INHERIT_COPY

#endif /* _MACH_STD_TYPES_H_ */
