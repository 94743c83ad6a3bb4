/*
 * src/vm/vm_kern.h: the in-process kernel that maps memory objects.
 *
 * Contents: 1. pages  2. faults  3. cache objects  4. mappings  5. the kernel
 *
 * Each memory object mapped in this process has one cache object: a memfd holding its
 * resident pages (so every mapping of the object shares them), Mach's page states, the
 * control and name ports the manager talks to. Mappings are MAP_SHARED views of the
 * memfd registered with one userfaultfd in MISSING | MINOR | WP modes, so the kernel
 * decides every page table entry: a missing page becomes a data_request, a present page
 * reaches a mapping only through UFFDIO_CONTINUE (write-protected unless it may be
 * written and is already dirty), and the first write to a clean page is a write-protect
 * fault that marks it dirty.
 *
 * Locking. vm.lock (rank MVM_LOCKRANK_VM) protects everything below marked (v). It is
 * never held across a userfaultfd ioctl, a memfd read or write, or madvise: a page on
 * which such an operation is under way is BUSY; faults that meet a busy page wait on the
 * object's fault list and are looked at again when the page stops being busy, and the
 * control thread waits on vm.cond. Messages to managers are sent with MACH_SEND_ALWAYS
 * (never blocking; the IPC lock is a leaf), so they may be sent under vm.lock, which keeps
 * them in the order the kernel decided them.
 *
 * Eviction. With a resident limit (mvm_vm_set_resident_limit, MACHVM_RESIDENT_LIMIT) the
 * kernel keeps the pages resident in all its objects near the limit with a clock (second
 * chance). A page's reference bit (MVM_PG_REFERENCED) means "it has page table entries
 * in some mapping, so it may have been used since the hand last passed": the kernel sets
 * it whenever it maps the page (a fault, fault-around) and clears it by zapping the
 * page's entries in every mapping (MADV_DONTNEED; the memfd keeps the data), so the next
 * access is a MINOR fault that sets it again. A victim is zapped, read if it is dirty or
 * precious (and returned with data_return, kernel_copy FALSE), then punched out of the
 * memfd; busy pages, pages with parked faults or an unlock request, and pages of objects
 * that are dead or not ready are never chosen.
 */
#ifndef MVM_VM_VM_KERN_H
#define MVM_VM_VM_KERN_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <mach/mach.h>
#include <machvm/vm.h>
#include "lib/lock.h"

/* ---- 1. pages ------------------------------------------------------------------------ */

enum mvm_page_state {
	MVM_PAGE_ABSENT = 0,      /* not resident, nothing asked */
	MVM_PAGE_REQUESTED,       /* data_request sent (busy + absent in Mach) */
	MVM_PAGE_RESIDENT,        /* in the memfd */
};

#define MVM_PG_DIRTY    0x01
#define MVM_PG_PRECIOUS 0x02
#define MVM_PG_BUSY     0x04      /* an ioctl or memfd operation is under way */
#define MVM_PG_REFERENCED 0x08    /* mapped since the clock last zapped it */
#define MVM_PG_CLOCK    0x10      /* chosen by the eviction pass under way (also BUSY) */
#define MVM_PG_PAGED    0x20      /* internal object: the default manager holds this page
				   * (kept while the page is absent) */
#define MVM_PG_SHADOW   0x40      /* absent; data_unavailable on a COPY_CALL copy: its
				   * contents are the shadow's page */

struct mvm_vpage {
	uint8_t state;            /* (v) enum mvm_page_state */
	uint8_t flags;            /* (v) MVM_PG_* */
	uint8_t page_lock;        /* (v) accesses forbidden (vm_prot_t bits) */
	uint8_t unlock_request;   /* (v) accesses already asked for with data_unlock */
};

/* ---- 2. faults ------------------------------------------------------------------------ */

/* A thread blocked in a page fault that the kernel has not resolved yet. */
struct mvm_fault {
	struct mvm_fault *next;   /* (v) */
	uintptr_t addr;           /* page-aligned faulting address */
	uintptr_t exact;          /* the faulting address itself, when uffd reports it */
	pid_t tid;                /* the faulting thread */
	uint64_t flags;           /* UFFD_PAGEFAULT_FLAG_* */
	bool fail;                /* (v) the fault is to fail with SIGBUS */
};

/* ---- 3. cache objects ------------------------------------------------------------------ */

struct mvm_vobject {
	struct mvm_vobject *next;         /* (v) kernel's list */
	mach_port_t pager;                /* (v) the object port (our send right), or a dead name */
	mach_port_t control;              /* (v) receive right, member of the control set */
	mach_port_t name_port;            /* (v) receive right */
	int memfd;                        /* (c) */
	size_t size;                      /* (v) bytes the memfd covers */
	size_t npages;                    /* (v) entries in pages */
	struct mvm_vpage *pages;          /* (v) */
	bool ready;                       /* (v) ready or change_attributes arrived */
	bool dead;                        /* (v) destroyed or manager died */
	bool terminated;                  /* (v) terminate sent: ports gone */
	bool may_cache;                   /* (v) */
	memory_object_copy_strategy_t copy_strategy; /* (v) */
	unsigned cluster;                 /* (v) pages per data_request */
	unsigned mappings;                /* (v) */
	unsigned users;                   /* (v) calls working on it with vm.lock dropped */
	bool doomed;                      /* (v) to be freed when the last user leaves */
	struct mvm_fault *faults;         /* (v) unresolved faults on this object */
	struct mvm_vm_object_stats st;    /* (v) */
	/* Copies (see "copy strategies" at the top of vm_kernel.c). */
	bool internal;                    /* (v) made by the kernel (a copy or temporary
					   * object): no manager of its own until the default
					   * manager takes it on (pager valid then) */
	struct mvm_vobject *shadow;       /* (v) where absent pages come from, or NULL */
	vm_offset_t shadow_off;           /* (v) offset of page 0 in the shadow */
	bool cow;                         /* (v) a COPY_DELAY copy: the shadow pushes pages
					   * into it before changing them */
	unsigned shadow_refs;             /* (v) copies whose shadow this object is */
};

/* ---- 4. mappings ------------------------------------------------------------------------ */

struct mvm_mapping {
	struct mvm_mapping *next;         /* (v) kernel's list, by address */
	uintptr_t start, end;             /* (v) */
	vm_offset_t offset;               /* (v) object offset of start */
	vm_prot_t prot;                   /* (c) */
	struct mvm_vobject *obj;          /* (v) */
	vm_inherit_t inherit;             /* (v) what a child of fork() gets */
	int fork_fd;                      /* (v) during a fork: COPY: the child's contents
					   * (a memfd), or FORK_* */
};

#define FORK_TODO   (-1)                  /* not looked at yet (and outside a fork) */
#define FORK_READY  (-2)                  /* SHARE: every page resident */
#define FORK_FAILED (-3)                  /* a page could not be had: a clear error in
					   * the child */

/* ---- 5. the kernel ------------------------------------------------------------------------ */

struct mvm_vm {
	struct mvm_lock lock;
	pthread_cond_t cond;              /* a busy page stopped being busy */
	int uffd;                         /* (c) after start */
	uint64_t features;                /* (c) */
	bool started;                     /* (v) */
	kern_return_t start_error;        /* (v) */
	char why[160];                    /* (v) why the kernel cannot run */
	mach_port_t ctl_set;              /* (c) port set of control ports + notify port */
	mach_port_t notify;               /* (c) receives dead-name notifications */
	struct mvm_vobject *objects;      /* (v) */
	struct mvm_mapping *maps;         /* (v) */
	/* Eviction (see the top of this file). */
	size_t resident;                  /* (v) pages resident in all objects */
	size_t resident_peak;             /* (v) most pages resident since the limit was set */
	size_t resident_limit;            /* (v) in pages; 0: no limit */
	bool limit_set;                   /* (v) set by a call: the environment is not read */
	bool evicting;                    /* (v) a thread is evicting (one at a time) */
	struct mvm_vobject *hand;         /* (v) the clock hand: object (NULL: the first) */
	size_t hand_pg;                   /* (v) and page */
	uint64_t evictions;               /* (v) pages evicted */
	uint64_t evict_returns;           /* (v) of which returned with data_return */
	uint64_t evict_passes;            /* (v) eviction passes */
	uint64_t ref_clears;              /* (v) reference bits cleared (pages zapped) */
	/* The default memory manager (vm_set_default_memory_manager). */
	mach_port_t host_priv;            /* (c) receive right, member of ctl_set */
	mach_port_t dmm;                  /* (v) send right to the default manager, or NULL */
	uint64_t dmm_creates;             /* (v) memory_object_create sent */
	pthread_t fault_thread, control_thread;
};

extern struct mvm_vm mvm_vm;

/* Entry points other layers use. */
/* Unmap [start, end): drop any object mapping in it (the caller then munmaps). */
void mvm__vm_unmap_objects(uintptr_t start, uintptr_t end);
/* Cache objects and object mappings alive (for the quiescence check). */
void mvm__vm_alive(uint64_t *objects, uint64_t *mappings);

#endif /* MVM_VM_VM_KERN_H */
