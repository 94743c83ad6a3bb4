/*
 * <machvm/pagers.h>: ready-made pagers built on <machvm/pager.h>.
 *
 *   file pager:      serves a file; dirty pages reach the file on sync, return, shutdown
 *                    and eviction; the extent is the file size
 *   anonymous pager: zero-filled memory backed by an unlinked swap file
 *   faulty pager:    memory with scripted errors and delays, for tests
 *   shm pager:       one zero-filled object shared coherently by many kernels (processes)
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

/*
 * The coherent shared memory pager. One object of size bytes (zero-filled at first) that
 * any number of kernels (processes; at most MVM_SHM_MAX_KERNELS at once) map together:
 * many readers or one writer per page. A reader holds a write-locked copy; a write fault
 * (data_unlock, or data_request for write) makes the manager flush the page from every
 * other kernel with RETURN_DIRTY, wait for each one's lock_completed, then grant write to
 * the writer. A read fault while another kernel writes the page makes that kernel return
 * its dirty data and keep a write-locked copy. The newest data always wins, and programs
 * using plain loads and stores on the mapping see sequential consistency across
 * processes (within one process, the processor's own memory model applies, as for any
 * shared memory). Requests for a page are served in arrival order.
 *
 * A kernel that dies (its control port dies) counts as having answered: whatever it held
 * is forgotten (data it wrote and had not returned is lost, the other kernels go on with
 * the last data the manager had). The object is not a cache for a store: when every
 * kernel has gone, the data stays with the pager until shutdown.
 *
 * One thread serves the object; it never blocks on a kernel (sends do not wait).
 * Thread safety: every function may be called from any thread except from inside a
 * fault on the object's own mapping.
 */
#define MVM_SHM_MAX_KERNELS 64

struct mvm_shm_pager;

struct mvm_shm_pager_stats {
	uint64_t kernels;          /* kernels mapping the object now */
	uint64_t inits, terminates, deaths; /* kernels arrived, left, died without terminate */
	uint64_t refused;          /* inits refused (MVM_SHM_MAX_KERNELS, or no memory) */
	uint64_t read_requests;    /* data_request pages for reading */
	uint64_t write_requests;   /* data_request pages for writing */
	uint64_t unlocks;          /* data_unlock pages */
	uint64_t stale_unlocks;    /* unlocks of a page the kernel no longer held (ignored) */
	uint64_t supplies;         /* pages supplied (data_supply or data_unavailable) */
	uint64_t grants;           /* write access granted (supplied writable or unlocked) */
	uint64_t invalidations;    /* lock_request flushes sent (one page, one kernel) */
	uint64_t downgrades;       /* writers asked to return data and keep a read copy */
	uint64_t returns;          /* pages received with data_return */
	uint64_t dirty_returns;    /* of those, dirty */
	uint64_t migratory_grants; /* reads of a migratory page answered with write access */
};

/* Create the pager; *port receives a send right to the object port (the pager keeps the
 * receive right). size is rounded up to whole pages; 0 is KERN_INVALID_ARGUMENT. */
MVM_EXTERN kern_return_t mvm_shm_pager_create(vm_size_t size, struct mvm_shm_pager **pager,
    mach_port_t *port);

/*
 * Copy len bytes at offset of the object's current contents into buf: pages some
 * kernel is writing are fetched from it first (it keeps a read-only copy). Waits for the
 * kernels; a kernel that dies meanwhile counts as having answered.
 * Errors: KERN_INVALID_ARGUMENT (range outside the object), KERN_TERMINATED (shut down).
 */
MVM_EXTERN kern_return_t mvm_shm_pager_read(struct mvm_shm_pager *pager, vm_offset_t offset,
    void *buf, vm_size_t len);

MVM_EXTERN kern_return_t mvm_shm_pager_stats(struct mvm_shm_pager *pager,
    struct mvm_shm_pager_stats *stats);

/* Destroy the object port (kernels still mapping it see their manager die: faults on
 * pages they do not hold get SIGBUS), stop the thread, free everything. */
MVM_EXTERN kern_return_t mvm_shm_pager_shutdown(struct mvm_shm_pager *pager);

#ifdef __cplusplus
}
#endif

#endif /* MACHVM_PAGERS_H */
