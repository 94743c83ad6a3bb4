/*
 * <machvm/export.h>: the macro that marks libmachvm's exported functions. The library is
 * built with -fvisibility=hidden; only MVM_EXTERN functions are part of its ABI.
 * Thread safety: macros only.
 */
#ifndef MACHVM_EXPORT_H
#define MACHVM_EXPORT_H

#if defined(MVM_BUILDING_LIBRARY)
#define MVM_EXTERN __attribute__((visibility("default")))
#else
#define MVM_EXTERN
#endif

#endif /* MACHVM_EXPORT_H */
