/*
 * <machvm/pager.h>: machvm's pager framework. A pager is a const ops table plus the
 * program's data (upi); mvm_pager_create() turns them into a memory object port that any
 * number of kernels (processes) may map. The framework speaks the Mach protocol: it
 * answers init, serves data_request with read_pages, writes data_return with
 * write_pages, answers data_unlock with unlock_page, tracks which kernel holds which page,
 * and offers sync, flush, return and lock over a range, synchronous or not.
 *
 * Threads. One receiver thread takes every pager's messages in sequence-number order and
 * does the ordered bookkeeping; a pool of workers does the I/O (read_pages, write_pages,
 * unlock_page), so a slow write to one object never holds up another, and a data_request
 * for a page whose data_return is still being written waits for that write, then gets
 * the data just written. No framework lock is held while an op runs or while a message
 * is sent.
 *
 * Thread safety: every function may be called from any thread except where noted (the
 * synchronous forms may not be called from inside an op of the same pager).
 */
#ifndef MACHVM_PAGER_H
#define MACHVM_PAGER_H

#include <stdint.h>
#include <mach/mach_types.h>
#include <machvm/export.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MVM_PAGER_OPS_VERSION 1

/*
 * read_pages: fill buf with len bytes of the object at offset (whole pages).
 * => no framework lock is held; may block.
 * => set *unavailable to TRUE instead of filling buf when the range holds nothing yet
 *    (the kernel then zero-fills it: data_unavailable).
 * => set *write_lock to TRUE to supply the pages write-locked: the first write to each
 *    then calls unlock_page.
 * Errors (closed list): KERN_MEMORY_ERROR (I/O error: the faulting threads get SIGBUS,
 * a later access asks again), KERN_RESOURCE_SHORTAGE (likewise).
 */
typedef kern_return_t mvm_pager_read_fn(void *upi, vm_offset_t offset, void *buf,
    vm_size_t len, boolean_t *unavailable, boolean_t *write_lock);

/*
 * write_pages: store len bytes of buf at offset (whole pages; dirty data the kernel
 * returned). The framework keeps buf until the call returns.
 * => no framework lock is held; may block.
 * Errors (closed list): KERN_MEMORY_ERROR (I/O error), KERN_RESOURCE_SHORTAGE (no space),
 * KERN_PROTECTION_FAILURE (the store is read-only or may not grow). On error the data is
 * kept in memory, served to the next data_request of those pages, and reported by the
 * next synchronous sync/return and by mvm_pager_get_error(); nothing is dropped.
 */
typedef kern_return_t mvm_pager_write_fn(void *upi, vm_offset_t offset, const void *buf,
    vm_size_t len);

/*
 * unlock_page: a kernel wants to write a page supplied write-locked; make room for the
 * write (e.g. allocate blocks). => no lock held; may block.
 * Errors (closed list): KERN_RESOURCE_SHORTAGE, KERN_PROTECTION_FAILURE: the write is
 * refused; the writing thread gets SIGBUS.
 */
typedef kern_return_t mvm_pager_unlock_fn(void *upi, vm_offset_t offset, vm_size_t len);

/* report_extent: the object's size in bytes. => no lock held; should not block long.
 * Errors: any error means "unknown" (whole-object helpers then fail). */
typedef kern_return_t mvm_pager_extent_fn(void *upi, vm_size_t *size);

/* notify_evict: a kernel dropped its copy of a clean precious page. => no lock held. */
typedef void mvm_pager_evict_fn(void *upi, vm_offset_t offset, vm_size_t len);

/* clear_user_data: the pager is shut down; upi is not used after this. => no lock held. */
typedef void mvm_pager_clear_fn(void *upi);

struct mvm_pager_ops {
	unsigned version;                    /* MVM_PAGER_OPS_VERSION */
	const char *name;                    /* for traces and statistics */
	mvm_pager_read_fn *read_pages;       /* required */
	mvm_pager_write_fn *write_pages;     /* NULL: dirty data is an error (read-only) */
	mvm_pager_unlock_fn *unlock_page;    /* NULL: unlocks are granted */
	mvm_pager_extent_fn *report_extent;  /* NULL: whole-object helpers need a range */
	mvm_pager_evict_fn *notify_evict;    /* NULL: nothing */
	mvm_pager_clear_fn *clear_user_data; /* NULL: nothing */
};

struct mvm_pager_attr {
	boolean_t may_cache;                 /* kernels may keep pages after the last unmap */
	memory_object_copy_strategy_t copy_strategy; /* MEMORY_OBJECT_COPY_DELAY usually */
	boolean_t precious;                  /* supply precious pages (notify_evict) */
};

struct mvm_pager_stats {
	uint64_t kernels;                    /* kernels that sent init and not terminate */
	uint64_t requests, pages_read, unavailable, read_errors;
	uint64_t returns, pages_written, write_errors;
	uint64_t unlocks, unlock_refusals;
	uint64_t lock_requests, lock_completions;
	uint64_t inits, terminates;          /* kernels arrived, kernels left */
	uint64_t deaths;                     /* kernels whose control port died: no terminate */
};

struct mvm_pager;

/*
 * Create a pager serving ops with upi. *port receives the object port's name (a send
 * right the caller may use with vm_map and give to others; the framework keeps the
 * receive right). attr may be NULL (may_cache FALSE, COPY_DELAY, not precious).
 */
MVM_EXTERN kern_return_t mvm_pager_create(const struct mvm_pager_ops *ops, void *upi,
    const struct mvm_pager_attr *attr, struct mvm_pager **pager, mach_port_t *port);

/* The object port. */
MVM_EXTERN mach_port_t mvm_pager_port(struct mvm_pager *pager);

/*
 * Range helpers; length 0 means up to the object's extent. With wait, they return once
 * every kernel holding the object has answered (lock_completed) and every write the
 * request caused has finished; the result is the first write error, if any.
 *   sync:   write dirty pages back, kernels keep their copies (RETURN_ALL, no flush)
 *   flush:  kernels drop their copies, DISCARDING dirty data (RETURN_NONE, flush), as
 *           the protocol defines it: use return to keep it
 *   return: write dirty pages back and drop the copies (RETURN_ALL, flush)
 *   lock:   set the page lock (the accesses forbidden) in every kernel
 */
MVM_EXTERN kern_return_t mvm_pager_sync(struct mvm_pager *pager, vm_offset_t offset,
    vm_size_t length, boolean_t wait);
MVM_EXTERN kern_return_t mvm_pager_flush(struct mvm_pager *pager, vm_offset_t offset,
    vm_size_t length, boolean_t wait);
MVM_EXTERN kern_return_t mvm_pager_return(struct mvm_pager *pager, vm_offset_t offset,
    vm_size_t length, boolean_t wait);
MVM_EXTERN kern_return_t mvm_pager_lock(struct mvm_pager *pager, vm_offset_t offset,
    vm_size_t length, vm_prot_t lock_value, boolean_t wait);

/*
 * Several kernels. Every kernel that maps the object (each process; each sends its own
 * init) has its own control port, and the framework keeps, per kernel, which pages it
 * may hold. The helpers above address every kernel that may hold a page of the range
 * (lock: every kernel, since a page lock also binds a page on its way in). A kernel
 * that terminates, or dies (its control port dies: a dead-name notification), counts
 * as having answered every request it owed: nothing waits for it.
 *
 * mvm_pager_kernels: the control ports (the framework's names, for the call below) of
 * the kernels that may hold a page of [offset, offset + length) (length 0: every
 * kernel); at most max are stored, *count is the number there are.
 * mvm_pager_lock_request: memory_object_lock_request to one kernel (kernel, from
 * mvm_pager_kernels) or to every kernel that may hold a page of the range
 * (MACH_PORT_NULL), with the framework's bookkeeping: returned pages are written with
 * write_pages, and with wait the call returns once the kernels have answered and the
 * writes are done (result: the first write error). Errors: KERN_INVALID_NAME (that
 * kernel is not, or no longer, mapping the object), KERN_INVALID_ARGUMENT.
 */
MVM_EXTERN kern_return_t mvm_pager_kernels(struct mvm_pager *pager, vm_offset_t offset,
    vm_size_t length, mach_port_t *kernels, unsigned max, unsigned *count);
MVM_EXTERN kern_return_t mvm_pager_lock_request(struct mvm_pager *pager, mach_port_t kernel,
    vm_offset_t offset, vm_size_t length, memory_object_return_t should_return,
    boolean_t should_flush, vm_prot_t lock_value, boolean_t wait);

/* Change may_cache and the copy strategy in every kernel; with wait, until each answered. */
MVM_EXTERN kern_return_t mvm_pager_change_attributes(struct mvm_pager *pager,
    boolean_t may_cache, memory_object_copy_strategy_t copy_strategy, boolean_t wait);

/* Supply a page no kernel asked for (ignored where the page is resident). */
MVM_EXTERN kern_return_t mvm_pager_offer_page(struct mvm_pager *pager, vm_offset_t offset,
    const void *data, boolean_t precious, boolean_t write_lock);

/* The last write error of the page at offset (KERN_SUCCESS if none). */
MVM_EXTERN kern_return_t mvm_pager_get_error(struct mvm_pager *pager, vm_offset_t offset);

MVM_EXTERN kern_return_t mvm_pager_stats(struct mvm_pager *pager, struct mvm_pager_stats *stats);

/*
 * Shut the pager down: return every dirty page from every kernel and wait for the
 * writes, then destroy the object port (kernels still mapping it see the manager die)
 * and free the pager (clear_user_data is called last). Returns the first write error.
 */
MVM_EXTERN kern_return_t mvm_pager_shutdown(struct mvm_pager *pager);

#ifdef __cplusplus
}
#endif

#endif /* MACHVM_PAGER_H */
