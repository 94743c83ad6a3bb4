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
