/*
 * <machvm/pagers.h>: ready-made pagers built on <machvm/pager.h>.
 *
 *   file pager:      serves a file; dirty pages reach the file on sync, return, shutdown
 *                    and eviction; the extent is the file size
 *   anonymous pager: zero-filled memory backed by an unlinked swap file
 *   faulty pager:    memory with scripted errors and delays, for tests
 *
 * Thread safety: every function may be called from any thread.
 */
#ifndef MACHVM_PAGERS_H
#define MACHVM_PAGERS_H

#include <stdint.h>
#include <mach/mach_types.h>
#include <machvm/export.h>
#include <machvm/pager.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MVM_FILE_PAGER_READONLY 0x1  /* open read-only; writes through a mapping get SIGBUS */
#define MVM_FILE_PAGER_NOGROW   0x2  /* writes past the end of the file are errors */

/*
 * Serve the file at path. Writes inside the file keep its size; a dirty page past the
 * end grows the file to cover it unless MVM_FILE_PAGER_NOGROW (then the write fails and
 * the framework keeps the data). attr may be NULL.
 */
MVM_EXTERN kern_return_t mvm_file_pager_create(const char *path, int flags,
    const struct mvm_pager_attr *attr, struct mvm_pager **pager, mach_port_t *port);

/*
 * A zero-filled object of size bytes backed by an unlinked file in swap_dir (NULL: the
 * directory of $TMPDIR, else /tmp). Pages never written read as zeros without I/O.
 */
MVM_EXTERN kern_return_t mvm_anon_pager_create(vm_size_t size, const char *swap_dir,
    const struct mvm_pager_attr *attr, struct mvm_pager **pager, mach_port_t *port);

/*
 * The anonymous pager as the default memory manager (vm_set_default_memory_manager):
 * it serves memory_object_create with one region of one unlinked swap file (in
 * swap_dir, as mvm_anon_pager_create) per object, stores data_return and
 * memory_object_data_initialize (which it ignores for pages it already holds), answers
 * data_request with the stored pages or data_unavailable, and frees the region at
 * terminate. One thread serves every object. *port names the default manager's port
 * (the pager keeps the receive right): pass it to vm_set_default_memory_manager.
 */
struct mvm_default_pager;

struct mvm_default_pager_stats {
	uint64_t objects;          /* objects created and not terminated */
	uint64_t creates;          /* memory_object_create served */
	uint64_t terminates;
	uint64_t requests;         /* data_request served */
	uint64_t pages_supplied;   /* stored pages sent back with data_supply */
	uint64_t pages_unavailable; /* pages answered with data_unavailable */
	uint64_t initializes;      /* memory_object_data_initialize received */
	uint64_t returns;          /* data_return received */
	uint64_t pages_stored;     /* pages held now */
	uint64_t errors;           /* swap file reads or writes that failed */
};

MVM_EXTERN kern_return_t mvm_anon_default_pager_start(const char *swap_dir,
    struct mvm_default_pager **pager, mach_port_t *port);

MVM_EXTERN kern_return_t mvm_anon_default_pager_stats(struct mvm_default_pager *pager,
    struct mvm_default_pager_stats *stats);

/*
 * Stop: destroy the default manager's port and every object port (kernels still using
 * an object see its manager die; the kernel forgets a default manager whose port is
 * gone), then free everything.
 */
MVM_EXTERN kern_return_t mvm_anon_default_pager_stop(struct mvm_default_pager *pager);

/* A faulty pager's operations, for its rules. */
enum mvm_faulty_op {
	MVM_FAULTY_READ,
	MVM_FAULTY_WRITE,
	MVM_FAULTY_UNLOCK,
};

/*
 * A memory-backed object of size bytes whose pages start as the given byte pattern
 * (byte at offset o = (o / page) * 7 + o % page, modulo 256).
 */
MVM_EXTERN kern_return_t mvm_faulty_pager_create(vm_size_t size,
    const struct mvm_pager_attr *attr, struct mvm_pager **pager, mach_port_t *port);

/*
 * Make op fail with error on the pages of [offset, offset + length) (length 0: every
 * page), after delay_ms milliseconds, the next count times (0: always). error
 * KERN_SUCCESS with a delay only delays. Rules accumulate; the newest matching wins.
 */
MVM_EXTERN kern_return_t mvm_faulty_pager_rule(struct mvm_pager *pager, enum mvm_faulty_op op,
    vm_offset_t offset, vm_size_t length, kern_return_t error, unsigned delay_ms,
    unsigned count);

/* Read len bytes of the faulty pager's store at offset (what was written back). */
MVM_EXTERN kern_return_t mvm_faulty_pager_peek(struct mvm_pager *pager, vm_offset_t offset,
    void *buf, vm_size_t len);

#ifdef __cplusplus
}
#endif

#endif /* MACHVM_PAGERS_H */
