/*
 * <machvm/vm.h>: machvm's own view of the in-process kernel that maps memory objects:
 * whether it can run here, per-object statistics and settings, the resident limit.
 * Thread safety: every function may be called from any thread.
 */
#ifndef MACHVM_VM_H
#define MACHVM_VM_H

#include <stddef.h>
#include <stdint.h>
#include <mach/mach_types.h>
#include <machvm/export.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Statistics of one cache object (one memory object in this kernel). */
struct mvm_vm_object_stats {
	uint64_t faults;          /* page faults taken on the object's mappings */
	uint64_t data_requests;   /* memory_object_data_request sent */
	uint64_t pages_requested;
	uint64_t data_supplies;   /* memory_object_data_supply received */
	uint64_t pages_supplied;
	uint64_t unavailable;     /* pages zero-filled by memory_object_data_unavailable */
	uint64_t errors;          /* pages failed by memory_object_data_error */
	uint64_t data_unlocks;    /* memory_object_data_unlock sent */
	uint64_t lock_requests;   /* memory_object_lock_request received */
	uint64_t data_returns;    /* memory_object_data_return sent */
	uint64_t pages_returned;
	uint64_t bytes_in;        /* bytes supplied by the manager */
	uint64_t bytes_out;       /* bytes returned to the manager */
	uint64_t resident;        /* pages resident now */
	uint64_t dirty;           /* resident pages modified now */
	uint32_t mappings;        /* vm_map regions of the object now */
	boolean_t ready;          /* memory_object_ready (or change_attributes) arrived */
	boolean_t dead;           /* destroyed, or its manager died */
	/* Appended in 0.1 (issue 8); 0.x makes no ABI promise. */
	uint64_t evictions;       /* pages evicted under the resident limit */
	uint64_t evict_returns;   /* of which returned to the manager (dirty or precious) */
};

/* Kernel-wide figures (every object mapped or cached in this process). */
struct mvm_vm_stats {
	uint64_t resident;        /* pages resident now */
	uint64_t resident_peak;   /* most pages resident at once since the limit was last set */
	uint64_t resident_limit;  /* the limit in pages; 0: none */
	uint64_t evictions;       /* pages evicted */
	uint64_t evict_returns;   /* of which returned to their manager with data_return */
	uint64_t evict_passes;    /* passes of the clock that chose pages */
	uint64_t ref_clears;      /* reference bits cleared (page table entries zapped) */
};

/*
 * KERN_SUCCESS when this process can map memory objects (userfaultfd with the features
 * machvm needs); otherwise an error, with the reason in buf (when not NULL).
 */
MVM_EXTERN kern_return_t mvm_vm_available(char *buf, size_t len);

/* Statistics of the cache object of memory_object in this kernel. */
MVM_EXTERN kern_return_t mvm_vm_object_stats(memory_object_t memory_object,
    struct mvm_vm_object_stats *stats);

/* Pages asked for per data_request (1 by default, at most 64). */
MVM_EXTERN kern_return_t mvm_vm_object_set_cluster(memory_object_t memory_object,
    unsigned pages);

/*
 * Limit the pages resident in this process's kernel to bytes (rounded up to pages;
 * 0: no limit, the default; MACHVM_RESIDENT_LIMIT sets it when the kernel starts unless
 * this was called first). Beyond it the kernel evicts pages (second chance); dirty and
 * precious pages go back to their managers. Evicts down to the new limit before it
 * returns.
 */
MVM_EXTERN kern_return_t mvm_vm_set_resident_limit(vm_size_t bytes);

/* The resident limit in bytes (0: none). */
MVM_EXTERN vm_size_t mvm_vm_get_resident_limit(void);

/* Kernel-wide statistics (resident pages, eviction counters). */
MVM_EXTERN kern_return_t mvm_vm_stats(struct mvm_vm_stats *stats);

#ifdef __cplusplus
}
#endif

#endif /* MACHVM_VM_H */
