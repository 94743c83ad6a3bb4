/*
 * src/vm/vm_anon.c: anonymous virtual memory: vm_allocate, vm_deallocate, and the
 * accounting of every region machvm allocated (for vm_allocate callers and for
 * out-of-line message data), so that tests can check that nothing leaks.
 *
 * The tracked regions are a sorted array of disjoint [start, end) ranges under
 * vm_regions.lock. vm_deallocate() of a range untracks whatever part of it machvm had
 * allocated, then unmaps the whole range, as Mach does for any range of the task.
 * Later layers (memory object mappings) will hook into vm_deallocate here.
 */
#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <sys/mman.h>

#include "ipc/ipc.h"
#include "lib/lock.h"
#include "sys/sys.h"
#include "vm/vm_kern.h"

struct region {
	uintptr_t start, end;
};

static struct {
	struct mvm_lock lock;
	struct region *r;     /* sorted by start */
	size_t n, cap;
	uint64_t bytes;
} regions;

static pthread_once_t regions_once = PTHREAD_ONCE_INIT;

/*
 * A small cache of unmapped-by-nobody regions of 1 to POOL_PAGES pages (under
 * vm_regions.lock, untracked while cached). Out-of-line data of every message is copied
 * into a fresh region and freed by its receiver: taking the region from here and giving
 * it back saves an mmap, a page fault per page and an munmap (with its TLB shootdown
 * in a threaded process) on every page that moves. Cached regions are never counted as
 * allocated; they are zero-filled again when handed out as zero-fill memory.
 */
static int track(uintptr_t start, uintptr_t end);

#define POOL_PAGES 32
#define POOL_PER_SIZE 16
#define POOL_MAX_PAGES 512        /* 2 MiB of 4 KiB pages in all */
#define POPULATE_MAX (256 * 1024) /* mvm__vm_alloc_pages populates regions up to this */
static struct {
	void *slot[POOL_PAGES + 1][POOL_PER_SIZE];
	unsigned n[POOL_PAGES + 1];
	unsigned pages;
} pool;

/* Under regions.lock: a cached region of len bytes, tracked again, or NULL. */
static void *
pool_get(size_t len)
{
	size_t np = len / mvm__page_size();
	void *p;

	if (np == 0 || np > POOL_PAGES || pool.n[np] == 0)
		return NULL;
	p = pool.slot[np][--pool.n[np]];
	if (track((uintptr_t)p, (uintptr_t)p + len) != 0) {
		pool.n[np]++;
		return NULL;
	}
	pool.pages -= (unsigned)np;
	return p;
}

/* Under regions.lock, the range already untracked: keep it if there is room. */
static bool
pool_put(void *p, size_t len)
{
	size_t np = len / mvm__page_size();

	if (np == 0 || np > POOL_PAGES || pool.n[np] == POOL_PER_SIZE ||
	    pool.pages + np > POOL_MAX_PAGES)
		return false;
	pool.slot[np][pool.n[np]++] = p;
	pool.pages += (unsigned)np;
	return true;
}

vm_size_t vm_page_size = 4096;

static void
regions_init(void)
{
	mvm_lock_init(&regions.lock, MVM_LOCKRANK_VM_REGIONS, "vm_regions");
	/* Written only where the page is not 4 KiB: a program may read vm_page_size while
	 * a machvm thread runs this. */
	if (vm_page_size != mvm__page_size())
		vm_page_size = mvm__page_size();
}

/* Index of the first region whose end is above addr. */
static size_t
first_after(uintptr_t addr)
{
	size_t lo = 0, hi = regions.n;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;

		if (regions.r[mid].end <= addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static int
track(uintptr_t start, uintptr_t end)
{
	size_t i;

	if (regions.n == regions.cap) {
		size_t cap = regions.cap ? regions.cap * 2 : 64;
		struct region *r = mvm__realloc(regions.r, cap * sizeof(*r));

		if (r == NULL)
			return -ENOMEM;
		regions.r = r;
		regions.cap = cap;
	}
	i = first_after(start);
	memmove(&regions.r[i + 1], &regions.r[i], (regions.n - i) * sizeof(*regions.r));
	regions.r[i].start = start;
	regions.r[i].end = end;
	regions.n++;
	regions.bytes += end - start;
	return 0;
}

/* Untrack [start, end). Returns -ENOMEM if a split needs memory and none is left. */
static int
untrack(uintptr_t start, uintptr_t end)
{
	size_t i = first_after(start);

	while (i < regions.n && regions.r[i].start < end) {
		struct region *r = &regions.r[i];
		uintptr_t s = r->start > start ? r->start : start;
		uintptr_t e = r->end < end ? r->end : end;

		if (r->start < s && r->end > e) {
			/* A hole in the middle: split in two. */
			uintptr_t old_end = r->end;

			regions.bytes -= e - s;
			r->end = s;
			regions.bytes -= old_end - e; /* track() adds it back */
			if (track(e, old_end) != 0) {
				regions.bytes += old_end - e; /* leave the tail counted */
				r->end = old_end;
				regions.bytes += e - s;
				return -ENOMEM;
			}
			return 0;
		}
		regions.bytes -= e - s;
		if (r->start == s && r->end == e) {
			memmove(r, r + 1, (regions.n - i - 1) * sizeof(*r));
			regions.n--;
			continue;
		}
		if (r->start == s)
			r->start = e;
		else
			r->end = s;
		i++;
	}
	return 0;
}

void *
mvm__vm_alloc_pages_dirty(size_t len, int *err)
{
	void *p;

	pthread_once(&regions_once, regions_init);
	mvm_lock_acquire(&regions.lock);
	p = pool_get(len);
	mvm_lock_release(&regions.lock);
	if (p != NULL)
		return p;
	return mvm__vm_alloc_pages(len, err);
}

void *
mvm__vm_alloc_pages(size_t len, int *err)
{
	void *p;

	pthread_once(&regions_once, regions_init);
	mvm_lock_acquire(&regions.lock);
	p = pool_get(len);
	mvm_lock_release(&regions.lock);
	if (p != NULL) {
		memset(p, 0, len);
		return p;
	}
	/* A small region is populated at once: callers fill it (a message's data, a kernel
	 * read buffer), and one mmap that fills it costs less than a page fault per page
	 * (bench_vm's flush: 4.2 -> 3.6 us per page). A large one stays lazy: a message
	 * whose data turns out unreadable must not have committed its whole length first
	 * (fuzz_mach_msg ran out of memory when every region was populated). */
	p = mvm__mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS |
	    (len <= POPULATE_MAX ? MAP_POPULATE : 0), -1, 0, err);
	if (p == NULL)
		return NULL;
	mvm_lock_acquire(&regions.lock);
	if (track((uintptr_t)p, (uintptr_t)p + len) != 0) {
		mvm_lock_release(&regions.lock);
		(void)mvm__munmap(p, len);
		*err = ENOMEM;
		return NULL;
	}
	mvm_lock_release(&regions.lock);
	return p;
}

int
mvm__vm_track_pages(void *addr, size_t len)
{
	int r;

	pthread_once(&regions_once, regions_init);
	mvm_lock_acquire(&regions.lock);
	r = track((uintptr_t)addr, (uintptr_t)addr + len);
	mvm_lock_release(&regions.lock);
	return r;
}

void
mvm__vm_free_pages(void *addr, size_t len)
{
	/* Only ever a region mvm__vm_alloc_pages made: no object mapping to leave. */
	bool kept;

	pthread_once(&regions_once, regions_init);
	mvm_lock_acquire(&regions.lock);
	(void)untrack((uintptr_t)addr, (uintptr_t)addr + len);
	kept = pool_put(addr, len);
	mvm_lock_release(&regions.lock);
	if (!kept)
		(void)mvm__munmap(addr, len);
}

/* Under regions.lock: is [start, end) covered by tracked regions without a gap? */
static bool
covered(uintptr_t start, uintptr_t end)
{
	uintptr_t at = start;

	for (size_t i = first_after(start); i < regions.n && at < end; i++) {
		if (regions.r[i].start > at)
			break;
		at = regions.r[i].end;
	}
	return at >= end;
}

void
mvm__vm_recycle(vm_address_t addr, vm_size_t len)
{
	uintptr_t start, end;
	bool kept = false;

	if (len == 0)
		return;
	pthread_once(&regions_once, regions_init);
	start = MVM_TRUNC_PAGE(addr);
	end = MVM_ROUND_PAGE(addr + len);
	mvm_lock_acquire(&regions.lock);
	if (end - start <= POOL_PAGES * mvm__page_size() && covered(start, end) &&
	    untrack(start, end) == 0) {
		kept = pool_put((void *)start, end - start);
		if (!kept) {
			mvm_lock_release(&regions.lock);
			(void)mvm__munmap((void *)start, end - start);
			return;
		}
	}
	mvm_lock_release(&regions.lock);
	if (!kept)
		(void)vm_deallocate(mach_task_self(), addr, len);
}

bool
mvm__vm_tracked(uintptr_t start, size_t len)
{
	uintptr_t end = start + len, at = start;
	size_t i;

	if (len == 0 || end < start)
		return false;
	pthread_once(&regions_once, regions_init);
	mvm_lock_acquire(&regions.lock);
	/* Covered by consecutive tracked regions, without a gap? */
	for (i = first_after(start); i < regions.n && at < end; i++) {
		if (regions.r[i].start > at)
			break;
		at = regions.r[i].end;
	}
	mvm_lock_release(&regions.lock);
	return at >= end;
}

uint64_t
mvm__vm_tracked_bytes(void)
{
	uint64_t b;

	pthread_once(&regions_once, regions_init);
	mvm_lock_acquire(&regions.lock);
	b = regions.bytes;
	mvm_lock_release(&regions.lock);
	return b;
}

kern_return_t
vm_allocate(vm_map_t task, vm_address_t *address, vm_size_t size, boolean_t anywhere)
{
	uintptr_t start;
	size_t len;
	void *p;
	int err = 0;

	mvm__ipc_init();
	pthread_once(&regions_once, regions_init);
	if (task != MVM_TASK_SELF_NAME)
		return MACH_SEND_INVALID_DEST;
	if (address == NULL)
		return KERN_INVALID_ARGUMENT;
	if (size == 0) {
		if (anywhere)
			*address = 0;
		return KERN_SUCCESS;
	}
	if (size > ((vm_size_t)1 << 46))
		return KERN_NO_SPACE;
	start = anywhere ? 0 : MVM_TRUNC_PAGE(*address);
	len = MVM_ROUND_PAGE(size + (anywhere ? 0 : (*address - start)));
	if (!anywhere && start + len < start)
		return KERN_INVALID_ADDRESS;
	p = mvm__mmap((void *)start, len, PROT_READ | PROT_WRITE,
	    MAP_PRIVATE | MAP_ANONYMOUS | (anywhere ? 0 : MAP_FIXED_NOREPLACE), -1, 0, &err);
	if (p == NULL)
		return err == EEXIST ? KERN_NO_SPACE : mvm__kr_from_errno(err);
	if (!anywhere && (uintptr_t)p != start) {
		/* An old kernel that ignores MAP_FIXED_NOREPLACE placed it elsewhere. */
		(void)mvm__munmap(p, len);
		return KERN_NO_SPACE;
	}
	mvm_lock_acquire(&regions.lock);
	if (track((uintptr_t)p, (uintptr_t)p + len) != 0) {
		mvm_lock_release(&regions.lock);
		(void)mvm__munmap(p, len);
		return KERN_RESOURCE_SHORTAGE;
	}
	mvm_lock_release(&regions.lock);
	*address = (vm_address_t)p;
	return KERN_SUCCESS;
}

kern_return_t
vm_deallocate(vm_map_t task, vm_address_t address, vm_size_t size)
{
	uintptr_t start, end;
	int r;

	mvm__ipc_init();
	pthread_once(&regions_once, regions_init);
	if (task != MVM_TASK_SELF_NAME)
		return MACH_SEND_INVALID_DEST;
	if (size == 0)
		return KERN_SUCCESS;
	start = MVM_TRUNC_PAGE(address);
	end = MVM_ROUND_PAGE(address + size);
	if (end <= start || address + size < address)
		return KERN_INVALID_ARGUMENT;
	/* Mappings of memory objects in the range leave their objects first. */
	mvm__vm_unmap_objects(start, end);
	/* Never cached: after vm_deallocate the range is free for anyone to map (and an
	 * access to it faults), as Mach promises. */
	mvm_lock_acquire(&regions.lock);
	r = untrack(start, end);
	mvm_lock_release(&regions.lock);
	if (r != 0)
		return KERN_RESOURCE_SHORTAGE;
	if ((r = mvm__munmap((void *)start, end - start)) != 0)
		return mvm__kr_from_errno(r);
	return KERN_SUCCESS;
}
