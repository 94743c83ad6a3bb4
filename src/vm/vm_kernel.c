/*
 * src/vm/vm_kernel.c: the in-process kernel: start-up, vm_map and unmapping, the fault
 * path, and the control port server (the manager-to-kernel calls).
 *
 * Contents: 1. start-up  2. objects and mappings  3. deferred page work  4. the fault
 *           path  5. manager-to-kernel calls  6. termination and death  7. vm_map and
 *           unmapping  8. statistics  9. eviction under the resident limit
 *
 * See vm_kern.h for the model and the locking rule. The two kernel threads are the fault
 * thread (reads the userfaultfd) and the control thread (serves every control port and
 * the kernel's notify port through one port set, one message at a time, so a manager's
 * calls take effect in the order it sent them). Both resolve faults; neither ever waits
 * for a manager.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <mach/mach.h>
#include <mach/notify.h>
#include <machvm/ipc.h>
#include <machvm/memory_object.h>
#include <machvm/vm.h>
#include "ipc/ipc.h"
#include "ipc/node.h"
#include "sys/sys.h"
#include "sys/uffd_compat.h"
#include "vm/vm_kern.h"

struct mvm_vm mvm_vm;

#define PS ((size_t)mvm__page_size())
#define DATA_RETURN_MAX 32      /* pages per data_return, as GNU's DATA_WRITE_MAX */
#define CLUSTER_MAX 64
#define EVICT_MARGIN CLUSTER_MAX /* a supply of more pages makes room before it lands */
#ifndef UFFD_FEATURE_EXACT_ADDRESS
#define UFFD_FEATURE_EXACT_ADDRESS (1 << 11)
#endif

static const uint64_t needed_features = UFFD_FEATURE_MISSING_SHMEM | UFFD_FEATURE_MINOR_SHMEM |
    UFFD_FEATURE_WP_HUGETLBFS_SHMEM | UFFD_FEATURE_THREAD_ID | UFFD_FEATURE_PAGEFAULT_FLAG_WP;

/*
 * The kernel's lock. Messages sent under it wake their receivers only when it is let go
 * (mvm__ipc_defer_wakes): a manager woken by a data_request while the fault thread still
 * holds the lock would run, serve its data_supply, and sleep on this lock at once.
 */
static inline void
vm_lock(void)
{
	mvm_lock_acquire(&mvm_vm.lock);
	mvm__ipc_defer_wakes();
}

static inline void
vm_unlock(void)
{
	mvm_lock_release(&mvm_vm.lock);
	mvm__ipc_undefer_wakes();
}

/* Wait on the kernel's condition, under the lock; the deferred wake-ups go out first. */
static inline void
vm_wait(void)
{
	mvm__ipc_flush_wakes();
	pthread_cond_wait(&mvm_vm.cond, &mvm_vm.lock.mtx);
}

static void *fault_thread_main(void *arg);
static void evict_if_needed(size_t reserve);
static bool dmm_dead(mach_port_t name);
static kern_return_t make_copy(struct mvm_vobject *x, vm_offset_t offset, size_t len,
    struct mvm_vobject **cp);
struct around;
static size_t mapped_ranges(struct mvm_vobject *o, size_t pg, size_t n, struct around **rg);
static bool dmm_page_out(struct mvm_vobject *o, size_t pg, size_t n, const void *buf);
static bool parse_size(const char *s, size_t *bytes);

/*
 * SIGBUS for a failed page. A thread cannot be sent a signal with a kernel si_code by
 * another thread, so the fault thread queues an SI_QUEUE SIGBUS whose si_value points at
 * mvm_sigbus_tag; machvm's handler (installed when the kernel starts) turns it into
 * si_code BUS_OBJERR, si_addr the faulting address, and passes it to the handler the
 * program had installed, or to the default action. Other SIGBUS signals go through
 * unchanged.
 */
static const char mvm_sigbus_tag = 0;
static struct sigaction saved_sigbus;

static void
sigbus_handler(int sig, siginfo_t *si, void *uctx)
{
	siginfo_t info = *si;
	const struct sigaction *prev = &saved_sigbus;

	if (si->si_code == SI_QUEUE && si->si_value.sival_ptr == (void *)&mvm_sigbus_tag) {
		void *addr = si->si_addr;

		memset(&info, 0, sizeof(info));
		info.si_signo = SIGBUS;
		info.si_code = BUS_OBJERR;
		info.si_addr = addr;
	}
	if (prev->sa_flags & SA_SIGINFO) {
		prev->sa_sigaction(sig, &info, uctx);
	} else if (prev->sa_handler == SIG_IGN) {
		return;
	} else if (prev->sa_handler == SIG_DFL) {
		if (si->si_code == SI_QUEUE)
			mvm__raise_default(sig); /* our signal: the default action, now */
		else
			mvm__raise_default(sig); /* a kernel one comes back with the default too */
	} else {
		prev->sa_handler(sig);
	}
}

static void
install_sigbus(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = sigbus_handler;
	sa.sa_flags = SA_SIGINFO | SA_NODEFER;
	sigemptyset(&sa.sa_mask);
	(void)mvm__sigaction(SIGBUS, &sa, &saved_sigbus);
}
static void *control_thread_main(void *arg);
static const struct mvm_direct control_direct;
static void vm_at_exit(void);
static void fork_prepare(void);
static void fork_parent(void);
static void fork_child(void);

/* ---- 1. start-up ------------------------------------------------------------------------ */

static pthread_once_t vm_once = PTHREAD_ONCE_INIT;

static void
vm_init_once(void)
{
	mvm_lock_init(&mvm_vm.lock, MVM_LOCKRANK_VM, "vm");
	pthread_cond_init(&mvm_vm.cond, NULL);
	mvm_vm.uffd = -1;
}

static int
open_uffd(char *why, size_t len)
{
	int fd = mvm__userfaultfd(O_CLOEXEC | O_NONBLOCK);

	if (fd == -EPERM || fd == -EACCES) {
		/* Without privilege: /dev/userfaultfd (6.1+), if its mode lets us. */
		int dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);

		if (dev >= 0) {
			fd = ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
			fd = fd < 0 ? -errno : fd;
			close(dev);
		}
	}
	if (fd < 0)
		snprintf(why, len, "userfaultfd is not available here (%s)", strerror(-fd));
	return fd;
}

/* Start the kernel if it is not running. Under vm.lock. */
static kern_return_t
vm_start(void)
{
	struct uffdio_api api;
	uint64_t optional;
	int fd, r;
	kern_return_t kr;

	if (mvm_vm.started)
		return KERN_SUCCESS;
	if (mvm_vm.start_error != KERN_SUCCESS)
		return mvm_vm.start_error;
	mvm_vm.start_error = KERN_FAILURE;
	if ((fd = open_uffd(mvm_vm.why, sizeof(mvm_vm.why))) < 0)
		return KERN_FAILURE;
	memset(&api, 0, sizeof(api));
	api.api = UFFD_API;
	if ((r = mvm__uffd_ioctl(fd, UFFDIO_API, &api)) != 0) {
		snprintf(mvm_vm.why, sizeof(mvm_vm.why), "UFFDIO_API failed (%s)", strerror(-r));
		mvm__close(fd);
		return KERN_FAILURE;
	}
	if ((api.features & needed_features) != needed_features) {
		snprintf(mvm_vm.why, sizeof(mvm_vm.why),
		    "userfaultfd lacks features 0x%llx (shmem MISSING/MINOR/WP, thread id)",
		    (unsigned long long)(needed_features & ~api.features));
		mvm__close(fd);
		return KERN_FAILURE;
	}
	/* A probe call fixes the API; a fresh descriptor takes the features we use (and
	 * exact fault addresses, for SIGBUS, when the kernel has them). */
	optional = api.features & UFFD_FEATURE_EXACT_ADDRESS;
	mvm__close(fd);
	if ((fd = open_uffd(mvm_vm.why, sizeof(mvm_vm.why))) < 0)
		return KERN_FAILURE;
	memset(&api, 0, sizeof(api));
	api.api = UFFD_API;
	api.features = needed_features | optional;
	if ((r = mvm__uffd_ioctl(fd, UFFDIO_API, &api)) != 0) {
		snprintf(mvm_vm.why, sizeof(mvm_vm.why), "UFFDIO_API failed (%s)", strerror(-r));
		mvm__close(fd);
		return KERN_FAILURE;
	}
	mvm_vm.uffd = fd;
	mvm_vm.features = api.features;
	if ((kr = mach_port_allocate(mach_task_self(), MACH_PORT_RIGHT_PORT_SET, &mvm_vm.ctl_set)) ||
	    (kr = mach_port_allocate(mach_task_self(), MACH_PORT_RIGHT_RECEIVE, &mvm_vm.notify)) ||
	    (kr = mach_port_move_member(mach_task_self(), mvm_vm.notify, mvm_vm.ctl_set)) ||
	    (kr = mach_port_allocate(mach_task_self(), MACH_PORT_RIGHT_RECEIVE, &mvm_vm.host_priv)) ||
	    (kr = mach_port_insert_right(mach_task_self(), mvm_vm.host_priv, mvm_vm.host_priv,
	    MACH_MSG_TYPE_MAKE_SEND)) ||
	    (kr = mach_port_move_member(mach_task_self(), mvm_vm.host_priv, mvm_vm.ctl_set))) {
		snprintf(mvm_vm.why, sizeof(mvm_vm.why), "cannot allocate the kernel's ports (%s)",
		    mvm_errname(kr));
		return KERN_RESOURCE_SHORTAGE;
	}
	/* Like a Mach kernel object, a control port's message is served by the thread that
	 * sends it when the control thread has nothing queued or in hand: a manager's
	 * data_supply maps the page and wakes the faulting thread without a hand-off. */
	if ((kr = mvm__ipc_set_direct(mvm_vm.ctl_set, &control_direct)) != KERN_SUCCESS) {
		snprintf(mvm_vm.why, sizeof(mvm_vm.why), "cannot set up the control set (%s)",
		    mvm_errname(kr));
		return KERN_RESOURCE_SHORTAGE;
	}
	mvm__ipc_reserve(3, 2, 1); /* the control set, the notify port, the host port */
	install_sigbus();
	if (mvm__thread_start(&mvm_vm.fault_thread, fault_thread_main, NULL) != 0 ||
	    mvm__thread_start(&mvm_vm.control_thread, control_thread_main, NULL) != 0) {
		snprintf(mvm_vm.why, sizeof(mvm_vm.why), "cannot start the kernel's threads");
		return KERN_RESOURCE_SHORTAGE;
	}
	mvm_vm.started = true;
	mvm_vm.start_error = KERN_SUCCESS;
	{
		static bool atfork_done;

		if (!atfork_done && pthread_atfork(fork_prepare, fork_parent, fork_child) == 0 &&
		    atexit(vm_at_exit) == 0)
			atfork_done = true;
	}
	/* The environment sets the limit once, unless the program already chose one. */
	{
		const char *env = getenv("MACHVM_RESIDENT_LIMIT");
		size_t bytes;

		if (!mvm_vm.limit_set && env != NULL && parse_size(env, &bytes))
			mvm_vm.resident_limit = bytes / PS + (bytes % PS != 0);
	}
	return KERN_SUCCESS;
}

kern_return_t
mvm_vm_available(char *buf, size_t len)
{
	kern_return_t kr;

	pthread_once(&vm_once, vm_init_once);
	vm_lock();
	kr = vm_start();
	if (kr != KERN_SUCCESS && buf != NULL && len > 0)
		snprintf(buf, len, "%s", mvm_vm.why);
	vm_unlock();
	return kr;
}

void
mvm__vm_alive(uint64_t *objects, uint64_t *mappings)
{
	*objects = *mappings = 0;
	pthread_once(&vm_once, vm_init_once);
	vm_lock();
	for (struct mvm_vobject *o = mvm_vm.objects; o != NULL; o = o->next)
		(*objects)++;
	for (struct mvm_mapping *m = mvm_vm.maps; m != NULL; m = m->next)
		(*mappings)++;
	vm_unlock();
}

/* ---- 2. objects and mappings ---------------------------------------------------------- */

static struct mvm_vobject *
obj_by_pager(mach_port_t pager)
{
	if (!MACH_PORT_VALID(pager))
		return NULL; /* internal objects without a manager have no port */
	for (struct mvm_vobject *o = mvm_vm.objects; o != NULL; o = o->next)
		if (o->pager == pager)
			return o;
	return NULL;
}

static struct mvm_vobject *
obj_by_control(mach_port_t ctl)
{
	for (struct mvm_vobject *o = mvm_vm.objects; o != NULL; o = o->next)
		if (!o->terminated && o->control == ctl)
			return o;
	return NULL;
}

static struct mvm_mapping *
map_lookup(uintptr_t addr)
{
	for (struct mvm_mapping *m = mvm_vm.maps; m != NULL; m = m->next)
		if (addr >= m->start && addr < m->end)
			return m;
	return NULL;
}

/*
 * The page of o a fault waits for: its page in the mapping's object, or, for a fault
 * parked on the shadow of that object (a copy waiting for the original's page), the
 * shadow's page. SIZE_MAX when the fault's mapping is gone or is not of o.
 */
static size_t
fault_pg(struct mvm_vobject *o, const struct mvm_fault *f, struct mvm_mapping **mp)
{
	struct mvm_mapping *m = map_lookup(f->addr);
	struct mvm_vobject *x;
	size_t pg;

	if (mp != NULL)
		*mp = m;
	if (m == NULL)
		return SIZE_MAX;
	pg = (m->offset + (f->addr - m->start)) / PS;
	for (x = m->obj; x != NULL && x != o; x = x->shadow)
		pg += x->shadow_off / PS;
	return x == o ? pg : SIZE_MAX;
}

static void free_object(struct mvm_vobject *o);

/* Keep o alive across a dropped vm.lock. Under vm.lock. */
static void
obj_hold(struct mvm_vobject *o)
{
	o->users++;
}

static void
obj_release(struct mvm_vobject *o)
{
	if (--o->users == 0 && o->doomed)
		free_object(o);
}

/* n pages of o became resident, or stopped being resident. Under vm.lock. */
static void
resident_add(struct mvm_vobject *o, size_t n)
{
	o->st.resident += n;
	mvm_vm.resident += n;
	if (mvm_vm.resident > mvm_vm.resident_peak)
		mvm_vm.resident_peak = mvm_vm.resident;
}

static void
resident_sub(struct mvm_vobject *o, size_t n)
{
	o->st.resident -= n;
	mvm_vm.resident -= n;
}

/* Make the object cover `size` bytes. Under vm.lock. */
static kern_return_t
obj_grow(struct mvm_vobject *o, size_t size)
{
	size_t n = (size + PS - 1) / PS;
	struct mvm_vpage *p;
	int r;

	if (n <= o->npages)
		return KERN_SUCCESS;
	if ((r = mvm__ftruncate(o->memfd, (off_t)(n * PS))) != 0)
		return mvm__kr_from_errno(r);
	if ((p = mvm__realloc(o->pages, n * sizeof(*p))) == NULL)
		return KERN_RESOURCE_SHORTAGE;
	memset(&p[o->npages], 0, (n - o->npages) * sizeof(*p));
	o->pages = p;
	o->npages = n;
	o->size = n * PS;
	return KERN_SUCCESS;
}

/* ---- 3. deferred page work -------------------------------------------------------------
 *
 * Resolving a fault needs an ioctl, which may not run under vm.lock. The decision is made
 * under the lock, the page is marked BUSY, and the work runs after the lock is dropped;
 * then the page stops being busy and the faults that met it are looked at again.
 */

enum work_kind {
	W_NONE,
	W_CONTINUE,       /* map the page (present in the memfd) at addr */
	W_UNPROTECT,      /* lift write protection at addr (wakes the writer) */
	W_WAKE,           /* let the thread fault again */
	W_SIGBUS,         /* the fault fails: SIGBUS to the thread */
	/* Page work run_faults() does itself (the fault is dispatched again after it). */
	W_PUSH,           /* push the page into the copies that still share it */
	W_COPYUP,         /* copy the shadow's page into the copy */
	W_ZERO,           /* a zero page of an internal object */
};

struct work {
	enum work_kind kind;
	uintptr_t addr;
	uintptr_t exact;          /* the faulting address itself (si_addr of a SIGBUS) */
	bool queued;              /* W_SIGBUS: the signal is already queued */
	bool wp;
	pid_t tid;
	struct mvm_vobject *obj;  /* page to un-busy afterwards, or NULL */
	size_t pg;
	struct mvm_fault *again;  /* W_PUSH, W_COPYUP, W_ZERO: the fault, dispatched again */
	struct mvm_vobject *pobj; /* and the page they work on */
	size_t ppg;
};

struct fault_queue {
	struct mvm_fault *head, *tail;
};

static void
fq_push(struct fault_queue *q, struct mvm_fault *f)
{
	f->next = NULL;
	if (q->tail != NULL)
		q->tail->next = f;
	else
		q->head = f;
	q->tail = f;
}

static struct mvm_fault *
fq_pop(struct fault_queue *q)
{
	struct mvm_fault *f = q->head;

	if (f != NULL) {
		q->head = f->next;
		if (q->head == NULL)
			q->tail = NULL;
	}
	return f;
}

/* Move the parked faults of page pg (or of every page, pg == SIZE_MAX) to q. */
static void
unpark(struct mvm_vobject *o, size_t pg, struct fault_queue *q)
{
	struct mvm_fault **pp = &o->faults;

	while (*pp != NULL) {
		struct mvm_fault *f = *pp;
		struct mvm_mapping *m;
		size_t fpg = fault_pg(o, f, &m);

		if (pg == SIZE_MAX || fpg == pg || m == NULL) {
			*pp = f->next;
			fq_push(q, f);
		} else {
			pp = &f->next;
		}
	}
}

static void
park(struct mvm_vobject *o, struct mvm_fault *f)
{
	f->next = o->faults;
	o->faults = f;
}

static void
uffd_range(unsigned long req, uintptr_t addr, size_t len, uint64_t mode)
{
	int r;

	switch (req) {
	case UFFDIO_WAKE: {
		struct uffdio_range rg = { addr, len };

		(void)mvm__uffd_ioctl(mvm_vm.uffd, UFFDIO_WAKE, &rg);
		return;
	}
	case UFFDIO_WRITEPROTECT: {
		struct uffdio_writeprotect wp = { { addr, len }, mode };

		if ((r = mvm__uffd_ioctl(mvm_vm.uffd, UFFDIO_WRITEPROTECT, &wp)) != 0 && mode == 0)
			uffd_range(UFFDIO_WAKE, addr, len, 0);
		return;
	}
	case UFFDIO_CONTINUE: {
		struct uffdio_continue c = { { addr, len }, mode, 0 };

		r = mvm__uffd_ioctl(mvm_vm.uffd, UFFDIO_CONTINUE, &c);
		if (r == -EEXIST) {
			/* Already mapped (a duplicate fault): set the protection we decided. */
			uffd_range(UFFDIO_WRITEPROTECT, addr, len,
			    (mode & UFFDIO_CONTINUE_MODE_WP) ? UFFDIO_WRITEPROTECT_MODE_WP : 0);
			uffd_range(UFFDIO_WAKE, addr, len, 0);
		} else if (r != 0) {
			/* The page went away meanwhile: the thread faults again. */
			uffd_range(UFFDIO_WAKE, addr, len, 0);
		}
		return;
	}
	}
}

static void
do_work(const struct work *w)
{
	switch (w->kind) {
	case W_CONTINUE:
		uffd_range(UFFDIO_CONTINUE, w->addr, PS, w->wp ? UFFDIO_CONTINUE_MODE_WP : 0);
		break;
	case W_UNPROTECT:
		uffd_range(UFFDIO_WRITEPROTECT, w->addr, PS, 0);
		break;
	case W_WAKE:
		uffd_range(UFFDIO_WAKE, w->addr, PS, 0);
		break;
	case W_SIGBUS:
		/* The signal is pending when the thread is woken, so it is delivered at the
		 * faulting instruction; if the handler returns, the access asks again. */
		if (!w->queued)
			(void)mvm__sigqueue_thread(w->tid, SIGBUS, (void *)w->exact,
			    (void *)&mvm_sigbus_tag);
		uffd_range(UFFDIO_WAKE, w->addr, PS, 0);
		break;
	default:
		break;
	}
}

static void send_request(struct mvm_vobject *o, size_t pg, bool write);
static bool needs_push(struct mvm_vobject *o, size_t pg);
static bool push_page(struct mvm_vobject *o, size_t pg, struct fault_queue *q);
static bool copy_up(struct mvm_vobject *c, size_t pg, struct fault_queue *q);
static bool zero_fill(struct mvm_vobject *o, size_t pg, struct fault_queue *q);
static void fail_faults(struct mvm_vobject *o, size_t first, size_t last, struct fault_queue *q);

/*
 * A fault on an absent page the kernel fills itself: a page of an internal object that
 * the default manager does not hold, or a COPY_CALL copy's page its manager declared
 * unavailable. Without a shadow it is a zero page; otherwise the shadow's page is copied
 * (asked for first if the shadow lacks it: the fault then waits on the shadow's page).
 */
static void
dispatch_local(struct mvm_vobject *o, size_t pg, struct mvm_fault *f, struct work *w)
{
	struct mvm_vobject *s = o->shadow;
	struct mvm_vpage *sp;
	size_t spg;

	w->again = f;
	w->pobj = o;
	w->ppg = pg;
	if (s == NULL) {
		w->kind = W_ZERO;
		return;
	}
	spg = pg + o->shadow_off / PS;
	if (spg >= s->npages || (s->dead && s->pages[spg].state != MVM_PAGE_RESIDENT)) {
		/* The original is gone: never a zero page in its place. */
		w->kind = W_SIGBUS;
		w->again = NULL;
		mvm__free(f);
		return;
	}
	sp = &s->pages[spg];
	if (!s->ready || (sp->flags & MVM_PG_BUSY)) {
		park(s, f);
	} else if (sp->state == MVM_PAGE_ABSENT) {
		send_request(s, spg, false);
		park(s, f);
	} else if (sp->state == MVM_PAGE_REQUESTED) {
		park(s, f);
	} else if (sp->page_lock & VM_PROT_READ) {
		if (!(sp->unlock_request & VM_PROT_READ)) {
			sp->unlock_request |= VM_PROT_READ;
			s->st.data_unlocks++;
			(void)mvm_mo_send_data_unlock(s->pager, s->control, spg * PS, PS,
			    sp->unlock_request);
		}
		park(s, f);
	} else {
		w->kind = W_COPYUP;
		return;
	}
	w->kind = W_NONE;
	w->again = NULL;
}

/*
 * Decide what to do with a fault. Under vm.lock. Either parks it (it waits for the
 * manager or for a busy page), or fills *w with work to do unlocked (freeing f).
 */
static void
dispatch(struct mvm_fault *f, struct work *w)
{
	struct mvm_mapping *m = map_lookup(f->addr);
	struct mvm_vobject *o;
	struct mvm_vpage *p;
	size_t pg;
	bool write = (f->flags & UFFD_PAGEFAULT_FLAG_WRITE) != 0;
	vm_prot_t need = write ? VM_PROT_WRITE : VM_PROT_READ;

	memset(w, 0, sizeof(*w));
	w->addr = f->addr;
	w->exact = f->exact;
	w->tid = f->tid;
	if (f->fail) {
		w->kind = W_SIGBUS;
		w->queued = true; /* fail_faults() sent the signal */
		mvm__free(f);
		return;
	}
	if (m == NULL) {
		/* Unmapped meanwhile: let it fault again (and get SIGSEGV). */
		w->kind = W_WAKE;
		mvm__free(f);
		return;
	}
	o = m->obj;
	pg = (m->offset + (f->addr - m->start)) / PS;
	p = &o->pages[pg];
	if (o->dead && p->state != MVM_PAGE_RESIDENT) {
		w->kind = W_SIGBUS;
		mvm__free(f);
		return;
	}
	if (!o->ready || (p->flags & MVM_PG_BUSY)) {
		park(o, f);
		return;
	}
	switch (p->state) {
	case MVM_PAGE_ABSENT:
		if ((o->internal && !(p->flags & MVM_PG_PAGED)) || (p->flags & MVM_PG_SHADOW)) {
			dispatch_local(o, pg, f, w);
			return;
		}
		send_request(o, pg, write);
		park(o, f);
		return;
	case MVM_PAGE_REQUESTED:
		park(o, f);
		return;
	}
	if ((need & p->page_lock) != 0 && o->dead) {
		/* Forbidden, and nobody is left to lift the lock. */
		w->kind = W_SIGBUS;
		mvm__free(f);
		return;
	}
	if ((need & p->page_lock) != 0) {
		/* Forbidden by the page lock: ask the manager, cumulatively, once. */
		if ((p->unlock_request & need) != need) {
			p->unlock_request |= need;
			o->st.data_unlocks++;
			(void)mvm_mo_send_data_unlock(o->pager, o->control, pg * PS, PS,
			    p->unlock_request);
		}
		park(o, f);
		return;
	}
	if ((write || (f->flags & UFFD_PAGEFAULT_FLAG_WP)) && needs_push(o, pg)) {
		/* A COPY_DELAY copy still shares the page: it gets the page first. */
		w->kind = W_PUSH;
		w->again = f;
		w->pobj = o;
		w->ppg = pg;
		return;
	}
	w->obj = o;
	w->pg = pg;
	/* The page gets a page table entry: it is in use (the clock's reference bit). */
	p->flags |= MVM_PG_BUSY | MVM_PG_REFERENCED;
	if (f->flags & UFFD_PAGEFAULT_FLAG_WP) {
		p->flags |= MVM_PG_DIRTY;
		w->kind = W_UNPROTECT;
	} else {
		if (write)
			p->flags |= MVM_PG_DIRTY;
		w->kind = W_CONTINUE;
		w->wp = !(p->flags & MVM_PG_DIRTY) || (p->page_lock & VM_PROT_WRITE) ||
		    needs_push(o, pg);
	}
	mvm__free(f);
}

/*
 * Run faults until none is left with work: dispatch under the lock, work unlocked, and
 * look again at the faults a busy page held up. Called and returns with vm.lock held.
 */
static void
run_faults(struct fault_queue *q)
{
	struct mvm_fault *f;

	while ((f = fq_pop(q)) != NULL) {
		struct work w;

		dispatch(f, &w);
		if (w.kind == W_NONE)
			continue;
		if (w.kind == W_PUSH || w.kind == W_COPYUP || w.kind == W_ZERO) {
			bool ok;

			if (w.kind == W_PUSH)
				ok = push_page(w.pobj, w.ppg, q);
			else if (w.kind == W_COPYUP)
				ok = copy_up(w.pobj, w.ppg, q);
			else
				ok = zero_fill(w.pobj, w.ppg, q);
			if (!ok) {
				/* No memory for the page: the access fails, visibly. */
				w.again->fail = true;
				(void)mvm__sigqueue_thread(w.again->tid, SIGBUS,
				    (void *)w.again->exact, (void *)&mvm_sigbus_tag);
			}
			fq_push(q, w.again);
			continue;
		}
		vm_unlock();
		do_work(&w);
		vm_lock();
		if (w.obj != NULL) {
			w.obj->pages[w.pg].flags &= ~MVM_PG_BUSY;
			unpark(w.obj, w.pg, q);
			pthread_cond_broadcast(&mvm_vm.cond);
		}
	}
}

/* Wait until page pg of o is not busy. Under vm.lock (released while waiting). */
static void
wait_not_busy(struct mvm_vobject *o, size_t pg)
{
	while (pg < o->npages && (o->pages[pg].flags & MVM_PG_BUSY))
		vm_wait();
}

/* ---- 4. the fault path ------------------------------------------------------------------ */

static void
send_request(struct mvm_vobject *o, size_t pg, bool write)
{
	size_t n = 1;

	/* A cluster: the following absent pages, up to the object's setting. */
	while (n < o->cluster && pg + n < o->npages && o->pages[pg + n].state == MVM_PAGE_ABSENT &&
	    !(o->pages[pg + n].flags & MVM_PG_BUSY))
		n++;
	for (size_t i = 0; i < n; i++)
		o->pages[pg + i].state = MVM_PAGE_REQUESTED;
	o->st.data_requests++;
	o->st.pages_requested += n;
	(void)mvm_mo_send_data_request(o->pager, o->control, pg * PS, n * PS,
	    write ? VM_PROT_READ | VM_PROT_WRITE : VM_PROT_READ);
}

static void
handle_fault_msg(const struct uffd_msg *msg, struct fault_queue *q)
{
	struct mvm_fault *f;
	struct mvm_mapping *m;

	if (msg->event != UFFD_EVENT_PAGEFAULT)
		return;
	f = mvm__malloc(sizeof(*f));
	if (f == NULL) {
		/* No memory to remember it: let the thread fault again later. */
		uffd_range(UFFDIO_WAKE, msg->arg.pagefault.address & ~(PS - 1), PS, 0);
		return;
	}
	f->addr = msg->arg.pagefault.address & ~(uintptr_t)(PS - 1);
	f->exact = msg->arg.pagefault.address;
	f->flags = msg->arg.pagefault.flags;
	f->tid = (pid_t)msg->arg.pagefault.feat.ptid;
	f->fail = false;
	if ((m = map_lookup(f->addr)) != NULL)
		m->obj->st.faults++;
	fq_push(q, f);
}

static void *
fault_thread_main(void *arg)
{
	struct uffd_msg msgs[64];

	(void)arg;
	for (;;) {
		struct pollfd pfd = { .fd = mvm_vm.uffd, .events = POLLIN };
		struct fault_queue q = { NULL, NULL };
		ssize_t n;

		if (mvm__poll(&pfd, 1, -1) < 0)
			continue;
		n = mvm__read(mvm_vm.uffd, msgs, sizeof(msgs));
		if (n <= 0)
			continue;
		vm_lock();
		for (ssize_t i = 0; i < n / (ssize_t)sizeof(msgs[0]); i++)
			handle_fault_msg(&msgs[i], &q);
		run_faults(&q);
		/* Pages the kernel made itself (zero pages, copies) count against the limit. */
		evict_if_needed(0);
		vm_unlock();
	}
	return NULL;
}

/* ---- 5. manager-to-kernel calls --------------------------------------------------------- */

#define AROUND_RANGES 64

struct around {
	uintptr_t a, len;
};

/*
 * Fault-around for a supply of the k pages from first (busy, being written): the mapped
 * ranges of those pages that no parked fault waits for, when the lock lets them be read.
 * Mapping them at once (write-protected, as every clean page) spares each page of a
 * cluster its own minor fault; pages with a parked fault are left to run_faults(), which
 * maps them and wakes their threads. Under vm.lock; returns the number of ranges.
 */
static size_t
around_ranges(struct mvm_vobject *o, size_t first, size_t k, vm_prot_t lock_value,
    struct around *rg)
{
	unsigned char *parked;
	size_t nr = 0;

	if (k < 2 || (lock_value & VM_PROT_READ) || (parked = mvm__calloc(k, 1)) == NULL)
		return 0;
	for (struct mvm_fault *f = o->faults; f != NULL; f = f->next) {
		size_t pg = fault_pg(o, f, NULL);

		if (pg >= first && pg < first + k)
			parked[pg - first] = 1;
	}
	for (struct mvm_mapping *m = mvm_vm.maps; m != NULL && nr < AROUND_RANGES; m = m->next) {
		size_t mlo = m->offset / PS, mhi = mlo + (m->end - m->start) / PS;
		size_t lo = first > mlo ? first : mlo, hi = first + k < mhi ? first + k : mhi;

		if (m->obj != o)
			continue;
		for (size_t pg = lo; pg < hi && nr < AROUND_RANGES;) {
			size_t end = pg;

			while (end < hi && !parked[end - first])
				end++;
			if (end > pg) {
				rg[nr].a = m->start + (pg * PS - m->offset);
				rg[nr].len = (end - pg) * PS;
				nr++;
			}
			pg = end + 1;
		}
	}
	mvm__free(parked);
	return nr;
}

static kern_return_t
k_data_supply(void *ctx, memory_object_control_t ctl, mach_port_seqno_t seqno, vm_offset_t off,
    vm_offset_t data, mach_msg_type_number_t count, vm_prot_t lock_value, boolean_t precious,
    mach_port_t reply, mach_msg_type_name_t reply_type)
{
	struct mvm_vobject *o;
	struct fault_queue q = { NULL, NULL };
	kern_return_t result = KERN_SUCCESS;
	vm_offset_t err_off = 0;
	size_t first, n, k = 0, nr;
	struct around rg[AROUND_RANGES];
	ssize_t wr;

	(void)ctx;
	(void)seqno;
	if ((off & (PS - 1)) != 0 || (count % PS) != 0 || (lock_value & ~VM_PROT_ALL) != 0)
		return KERN_INVALID_ARGUMENT;
	vm_lock();
	if ((o = obj_by_control(ctl)) == NULL || o->dead) {
		vm_unlock();
		return KERN_INVALID_ARGUMENT;
	}
	first = off / PS;
	n = count / PS;
	o->st.data_supplies++;
	if (n > 0 && obj_grow(o, off + count) != KERN_SUCCESS) {
		vm_unlock();
		return KERN_RESOURCE_SHORTAGE;
	}
	obj_hold(o); /* waiting for a busy page drops the lock */
	/* Take pages until one is resident: the rest is dropped (Mach's rule). */
	for (k = 0; k < n; k++) {
		wait_not_busy(o, first + k);
		if (o->pages[first + k].state == MVM_PAGE_RESIDENT) {
			result = KERN_MEMORY_PRESENT;
			err_off = off + k * PS;
			break;
		}
		o->pages[first + k].flags |= MVM_PG_BUSY;
	}
	/* A supply larger than a fault's makes room first, so that even a manager pushing
	 * pages unasked cannot take memory far beyond the limit. */
	if (k > EVICT_MARGIN)
		evict_if_needed(k);
	/* The ranges stay valid: unmapping waits while pages are busy. */
	nr = around_ranges(o, first, k, lock_value, rg);
	vm_unlock();
	wr = k > 0 ? mvm__pwrite(o->memfd, (void *)data, k * PS, (off_t)off) : 0;
	for (size_t i = 0; wr >= 0 && i < nr; i++) {
		/* No thread waits on these pages: do not wake anyone. A failure (a page
		 * mapped meanwhile) leaves the rest to fault as usual. */
		struct uffdio_continue c = { { rg[i].a, rg[i].len },
		    UFFDIO_CONTINUE_MODE_WP | UFFDIO_CONTINUE_MODE_DONTWAKE, 0 };

		(void)mvm__uffd_ioctl(mvm_vm.uffd, UFFDIO_CONTINUE, &c);
	}
	vm_lock();
	for (size_t i = 0; i < k; i++) {
		struct mvm_vpage *p = &o->pages[first + i];

		p->flags &= ~MVM_PG_BUSY;
		if (wr < 0) {
			p->state = MVM_PAGE_ABSENT;
			continue;
		}
		p->state = MVM_PAGE_RESIDENT;
		p->flags = (p->flags & MVM_PG_PAGED) | (precious ? MVM_PG_PRECIOUS : 0);
		if (nr > 0)
			p->flags |= MVM_PG_REFERENCED; /* mapped by fault-around */
		p->page_lock = (uint8_t)lock_value;
		p->unlock_request = 0;
		resident_add(o, 1);
	}
	if (wr < 0) {
		/* The memfd refused the data (no memory): the waiting faults fail. */
		fail_faults(o, first, first + k, &q);
		result = KERN_RESOURCE_SHORTAGE;
		err_off = off;
	} else {
		o->st.pages_supplied += k;
		o->st.bytes_in += k * PS;
		for (size_t i = 0; i < k; i++)
			unpark(o, first + i, &q);
	}
	pthread_cond_broadcast(&mvm_vm.cond);
	run_faults(&q);
	if (MACH_PORT_VALID(reply) && !o->terminated)
		(void)mvm_mo_send_supply_completed(reply, reply_type, o->control, off, count, result,
		    err_off);
	else if (MACH_PORT_VALID(reply))
		(void)mach_port_deallocate(mach_task_self(), reply);
	/* The waiting threads run already; the kernel makes room for the next pages. */
	evict_if_needed(0);
	obj_release(o);
	vm_unlock();
	mvm__vm_recycle(data, count); /* the manager's data, received: ours to reuse */
	return KERN_SUCCESS;
}

static kern_return_t
k_data_unavailable(void *ctx, memory_object_control_t ctl, mach_port_seqno_t seqno,
    vm_offset_t off, vm_size_t size)
{
	struct mvm_vobject *o;
	struct fault_queue q = { NULL, NULL };
	size_t first, last;

	(void)ctx;
	(void)seqno;
	vm_lock();
	if ((o = obj_by_control(ctl)) == NULL || o->dead) {
		vm_unlock();
		return KERN_INVALID_ARGUMENT;
	}
	first = off / PS;
	last = size == 0 ? first : (off + size + PS - 1) / PS;
	if (last > o->npages)
		last = o->npages;
	obj_hold(o);
	for (size_t pg = first; pg < last; pg++) {
		struct mvm_vpage *p = &o->pages[pg];
		int r;

		/* Only requested pages: others are not affected (Mach's rule). */
		if (p->state != MVM_PAGE_REQUESTED || (p->flags & MVM_PG_BUSY))
			continue;
		if (o->shadow != NULL) {
			/* A COPY_CALL copy: "unavailable" means the original's page. The
			 * faults look again and copy it. */
			p->state = MVM_PAGE_ABSENT;
			p->flags |= MVM_PG_SHADOW;
			o->st.unavailable++;
			unpark(o, pg, &q);
			continue;
		}
		p->flags |= MVM_PG_BUSY;
		vm_unlock();
		r = mvm__fallocate(o->memfd, 0, (off_t)(pg * PS), (off_t)PS);
		vm_lock();
		p = &o->pages[pg]; /* the array may have grown meanwhile */
		p->flags &= ~MVM_PG_BUSY;
		if (r != 0) {
			p->state = MVM_PAGE_ABSENT;
			continue;
		}
		p->state = MVM_PAGE_RESIDENT;
		p->flags &= MVM_PG_PAGED;
		p->page_lock = VM_PROT_NONE;
		p->unlock_request = 0;
		o->st.unavailable++;
		resident_add(o, 1);
		unpark(o, pg, &q);
		if (mvm_vm.resident_limit != 0 &&
		    mvm_vm.resident > mvm_vm.resident_limit + EVICT_MARGIN) {
			/* A long run: map the waiting threads first (which marks their pages
			 * used), then make room. */
			pthread_cond_broadcast(&mvm_vm.cond);
			run_faults(&q);
			evict_if_needed(0);
		}
	}
	pthread_cond_broadcast(&mvm_vm.cond);
	run_faults(&q);
	evict_if_needed(0);
	obj_release(o);
	vm_unlock();
	return KERN_SUCCESS;
}

/*
 * Fail the faults parked on the pages of [first, last) of o (or all, last = SIZE_MAX):
 * they move to q marked to fail, and run_faults() signals them with the lock dropped.
 */
static void
fail_faults(struct mvm_vobject *o, size_t first, size_t last, struct fault_queue *q)
{
	struct fault_queue fq = { NULL, NULL };
	struct mvm_fault *f;

	if (last == SIZE_MAX)
		unpark(o, SIZE_MAX, &fq);
	else
		for (size_t pg = first; pg < last; pg++)
			unpark(o, pg, &fq);
	while ((f = fq_pop(&fq)) != NULL) {
		/* Signal them all before any is woken: a wake covers the whole page, and a
		 * thread woken without its signal would fault again and ask again. */
		f->fail = true;
		(void)mvm__sigqueue_thread(f->tid, SIGBUS, (void *)f->exact, (void *)&mvm_sigbus_tag);
		fq_push(q, f);
	}
}

static kern_return_t
k_data_error(void *ctx, memory_object_control_t ctl, mach_port_seqno_t seqno, vm_offset_t off,
    vm_size_t size, kern_return_t error_value)
{
	struct mvm_vobject *o;
	struct fault_queue q = { NULL, NULL };
	size_t first, last;

	(void)ctx;
	(void)seqno;
	(void)error_value;
	vm_lock();
	if ((o = obj_by_control(ctl)) == NULL || o->dead) {
		vm_unlock();
		return KERN_INVALID_ARGUMENT;
	}
	first = off / PS;
	last = (off + size + PS - 1) / PS;
	if (last > o->npages)
		last = o->npages;
	for (size_t pg = first; pg < last; pg++) {
		if (o->pages[pg].state != MVM_PAGE_REQUESTED)
			continue;
		/* Only the threads waiting now see the error; a later access asks again. */
		o->pages[pg].state = MVM_PAGE_ABSENT;
		o->st.errors++;
		fail_faults(o, pg, pg + 1, &q);
	}
	pthread_cond_broadcast(&mvm_vm.cond); /* a COPY_NONE copy may wait for these */
	run_faults(&q);
	vm_unlock();
	return KERN_SUCCESS;
}

/*
 * Send the pages [pg, pg + n) of o, read into buf, as one data_return. The IPC layer
 * copies buf into the message (nothing here may call vm_deallocate, which takes vm.lock).
 */
static void
send_return(struct mvm_vobject *o, size_t pg, size_t n, bool dirty, bool kernel_copy,
    const void *buf)
{
	o->st.data_returns++;
	o->st.pages_returned += n;
	o->st.bytes_out += n * PS;
	(void)mvm_mo_send_data_return(o->pager, o->control, pg * PS, (vm_offset_t)buf,
	    (mach_msg_type_number_t)(n * PS), FALSE, dirty, kernel_copy);
}

enum lock_action { LA_NONE, LA_CLEAN, LA_RETURN };

static kern_return_t
k_lock_request(void *ctx, memory_object_control_t ctl, mach_port_seqno_t seqno, vm_offset_t off,
    vm_size_t size, memory_object_return_t should_return, boolean_t should_flush,
    vm_prot_t lock_value, mach_port_t reply, mach_msg_type_name_t reply_type)
{
	struct mvm_vobject *o;
	struct fault_queue q = { NULL, NULL };
	size_t first, last, pg;
	void *buf;
	int err = 0;

	(void)ctx;
	(void)seqno;
	if ((lock_value & ~VM_PROT_ALL) != 0 && lock_value != VM_PROT_NO_CHANGE)
		return KERN_INVALID_ARGUMENT;
	if (should_return < MEMORY_OBJECT_RETURN_NONE || should_return > MEMORY_OBJECT_RETURN_ALL)
		return KERN_INVALID_ARGUMENT;
	/* A region machvm mapped: the IPC layer copies it into data_return directly. */
	if ((buf = mvm__vm_alloc_pages(DATA_RETURN_MAX * PS, &err)) == NULL)
		return KERN_RESOURCE_SHORTAGE;
	vm_lock();
	if ((o = obj_by_control(ctl)) == NULL) {
		vm_unlock();
		mvm__vm_free_pages(buf, DATA_RETURN_MAX * PS);
		return KERN_INVALID_ARGUMENT;
	}
	o->st.lock_requests++;
	obj_hold(o);
	first = off / PS;
	last = (off + size + PS - 1) / PS;
	if (last > o->npages)
		last = o->npages;
	for (pg = first; pg < last;) {
		struct mvm_vpage *p = &o->pages[pg];
		enum lock_action act = LA_NONE;
		vm_prot_t newlock = should_flush ? VM_PROT_ALL : lock_value;
		bool wp, zap, read, punch, dirty;
		size_t n;

		wait_not_busy(o, pg);
		if (p->state != MVM_PAGE_RESIDENT) {
			pg++; /* absent or requested: counts as done */
			continue;
		}
		if (should_flush && needs_push(o, pg)) {
			/* The page leaves: copies that share it keep it (then look again). If
			 * that fails (no memory), the flush goes on: the copies' pages will
			 * come from the manager again. */
			if (push_page(o, pg, &q))
				continue;
			p = &o->pages[pg];
			wait_not_busy(o, pg);
			if (p->state != MVM_PAGE_RESIDENT) {
				pg++;
				continue;
			}
		}
		if (should_return != MEMORY_OBJECT_RETURN_NONE) {
			if (p->flags & MVM_PG_DIRTY)
				act = LA_CLEAN;
			else if ((p->flags & MVM_PG_PRECIOUS) && should_return == MEMORY_OBJECT_RETURN_ALL)
				act = LA_RETURN;
		}
		dirty = act == LA_CLEAN;
		read = act != LA_NONE;
		punch = should_flush;
		wp = read && !should_flush;
		if (!should_flush && lock_value != VM_PROT_NO_CHANGE && (lock_value & VM_PROT_WRITE))
			wp = true;
		zap = !should_flush && lock_value != VM_PROT_NO_CHANGE && (lock_value & VM_PROT_READ) &&
		    !(p->page_lock & VM_PROT_READ);
		if (read && should_flush)
			wp = true; /* stop writers before the contents are read */
		/* A run of following pages that need exactly the same. */
		for (n = 1; n < DATA_RETURN_MAX && pg + n < last; n++) {
			struct mvm_vpage *r = &o->pages[pg + n];
			enum lock_action ra = LA_NONE;

			if (r->state != MVM_PAGE_RESIDENT || (r->flags & MVM_PG_BUSY))
				break;
			if (should_return != MEMORY_OBJECT_RETURN_NONE) {
				if (r->flags & MVM_PG_DIRTY)
					ra = LA_CLEAN;
				else if ((r->flags & MVM_PG_PRECIOUS) &&
				    should_return == MEMORY_OBJECT_RETURN_ALL)
					ra = LA_RETURN;
			}
			if (ra != act || (zap && (r->page_lock & VM_PROT_READ)))
				break;
		}
		for (size_t i = 0; i < n; i++)
			o->pages[pg + i].flags |= MVM_PG_BUSY;
		if (wp || zap || read || punch) {
			struct { uintptr_t a, len; } rg[64];
			size_t nr = 0;
			vm_offset_t lo = pg * PS, hi = (pg + n) * PS;

			/* The mapped ranges of these pages. They cannot be unmapped while the
			 * pages are busy (unmapping waits), so the addresses stay valid. */
			for (struct mvm_mapping *m = mvm_vm.maps; m != NULL && nr < 64; m = m->next) {
				vm_offset_t mlo = m->offset, mhi = m->offset + (m->end - m->start);
				vm_offset_t a = lo > mlo ? lo : mlo, b = hi < mhi ? hi : mhi;

				if (m->obj != o || a >= b)
					continue;
				rg[nr].a = m->start + (a - m->offset);
				rg[nr].len = b - a;
				nr++;
			}
			obj_hold(o);
			vm_unlock();
			for (size_t i = 0; i < nr; i++) {
				if (wp)
					uffd_range(UFFDIO_WRITEPROTECT, rg[i].a, rg[i].len,
					    UFFDIO_WRITEPROTECT_MODE_WP);
				if (zap)
					(void)mvm__madvise((void *)rg[i].a, rg[i].len, MADV_DONTNEED);
			}
			if (read && mvm__pread(o->memfd, buf, n * PS, (off_t)(pg * PS)) < 0)
				read = false; /* cannot read: keep the pages (dirty stays dirty) */
			if (punch)
				(void)mvm__fallocate(o->memfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
				    (off_t)(pg * PS), (off_t)(n * PS));
			vm_lock();
			obj_release(o);
		}
		for (size_t i = 0; i < n; i++) {
			struct mvm_vpage *r = &o->pages[pg + i];

			r->flags &= ~MVM_PG_BUSY;
			if (read)
				r->flags &= ~MVM_PG_DIRTY;
			if (punch) {
				r->state = MVM_PAGE_ABSENT;
				r->flags &= MVM_PG_PAGED; /* the default manager keeps it */
				r->page_lock = 0;
				resident_sub(o, 1);
			} else if (newlock != VM_PROT_NO_CHANGE) {
				r->page_lock = (uint8_t)newlock;
			}
			/* Whatever the answer, threads waiting for an unlock look again (a
			 * NO_CHANGE answer must not leave them stuck, unlike GNU Mach). */
			r->unlock_request = 0;
			unpark(o, pg + i, &q);
		}
		if (read && act != LA_NONE && !o->dead)
			send_return(o, pg, n, dirty, !should_flush, buf);
		pthread_cond_broadcast(&mvm_vm.cond);
		pg += n;
	}
	run_faults(&q);
	if (MACH_PORT_VALID(reply) && !o->terminated)
		(void)mvm_mo_send_lock_completed(reply, reply_type, o->control, off, size);
	else if (MACH_PORT_VALID(reply))
		(void)mach_port_deallocate(mach_task_self(), reply);
	obj_release(o);
	vm_unlock();
	mvm__vm_free_pages(buf, DATA_RETURN_MAX * PS);
	return KERN_SUCCESS;
}

static bool
valid_strategy(memory_object_copy_strategy_t s)
{
	return s >= MEMORY_OBJECT_COPY_NONE && s <= MEMORY_OBJECT_COPY_TEMPORARY;
}

static void terminate_object(struct mvm_vobject *o, bool return_pages);

static kern_return_t
set_attributes(memory_object_control_t ctl, boolean_t may_cache,
    memory_object_copy_strategy_t strategy, struct mvm_vobject **op)
{
	struct mvm_vobject *o;
	struct fault_queue q = { NULL, NULL };

	if (!valid_strategy(strategy))
		return KERN_INVALID_ARGUMENT;
	if ((o = obj_by_control(ctl)) == NULL)
		return KERN_INVALID_ARGUMENT;
	o->ready = true;
	o->may_cache = may_cache != FALSE;
	o->copy_strategy = strategy;
	unpark(o, SIZE_MAX, &q);
	pthread_cond_broadcast(&mvm_vm.cond); /* vm_map(copy) waits for ready */
	run_faults(&q);
	*op = o;
	return KERN_SUCCESS;
}

static kern_return_t
k_ready(void *ctx, memory_object_control_t ctl, mach_port_seqno_t seqno, boolean_t may_cache,
    memory_object_copy_strategy_t strategy)
{
	struct mvm_vobject *o;
	kern_return_t kr;

	(void)ctx;
	(void)seqno;
	vm_lock();
	kr = set_attributes(ctl, may_cache, strategy, &o);
	vm_unlock();
	return kr;
}

static kern_return_t
k_change_attributes(void *ctx, memory_object_control_t ctl, mach_port_seqno_t seqno,
    boolean_t may_cache, memory_object_copy_strategy_t strategy, mach_port_t reply,
    mach_msg_type_name_t reply_type)
{
	struct mvm_vobject *o;
	kern_return_t kr;

	(void)ctx;
	(void)seqno;
	vm_lock();
	if ((kr = set_attributes(ctl, may_cache, strategy, &o)) != KERN_SUCCESS) {
		vm_unlock();
		return kr;
	}
	/* An unmapped object kept only for caching goes now: terminate first, so the
	 * manager sees it before change_completed (GNU's order). */
	if (!o->may_cache && o->mappings == 0 && o->shadow_refs == 0) {
		terminate_object(o, true);
		free_object(o);
	}
	if (MACH_PORT_VALID(reply))
		(void)mvm_mo_send_change_completed(reply, reply_type, may_cache, strategy);
	vm_unlock();
	return KERN_SUCCESS;
}

static kern_return_t
k_get_attributes(void *ctx, memory_object_control_t ctl, mach_port_seqno_t seqno,
    boolean_t *ready, boolean_t *may_cache, memory_object_copy_strategy_t *strategy)
{
	struct mvm_vobject *o;

	(void)ctx;
	(void)seqno;
	vm_lock();
	if ((o = obj_by_control(ctl)) == NULL) {
		vm_unlock();
		return KERN_INVALID_ARGUMENT;
	}
	*ready = o->ready;
	*may_cache = o->may_cache;
	*strategy = o->copy_strategy;
	vm_unlock();
	return KERN_SUCCESS;
}

/* The object is cut off from its manager: waiting faults fail, later ones too. */
static void
object_dies(struct mvm_vobject *o, struct fault_queue *q)
{
	o->dead = true;
	o->ready = true;
	for (size_t pg = 0; pg < o->npages; pg++)
		if (o->pages[pg].state == MVM_PAGE_REQUESTED)
			o->pages[pg].state = MVM_PAGE_ABSENT;
	fail_faults(o, 0, SIZE_MAX, q);
	pthread_cond_broadcast(&mvm_vm.cond); /* vm_map(copy) may wait for it */
}

static kern_return_t
k_destroy(void *ctx, memory_object_control_t ctl, mach_port_seqno_t seqno, kern_return_t reason)
{
	struct mvm_vobject *o;
	struct fault_queue q = { NULL, NULL };

	(void)ctx;
	(void)seqno;
	(void)reason;
	vm_lock();
	if ((o = obj_by_control(ctl)) == NULL) {
		vm_unlock();
		return KERN_INVALID_ARGUMENT;
	}
	/* Resident pages stay readable in the mappings; the rest fails from now on. Unlike
	 * GNU Mach, threads waiting for ready are woken (with an error). The manager gets
	 * its terminate (sent while the object is not yet marked dead). */
	terminate_object(o, false);
	object_dies(o, &q);
	obj_hold(o);
	run_faults(&q);
	obj_release(o);
	if (o->mappings == 0 && o->shadow_refs == 0)
		free_object(o);
	vm_unlock();
	return KERN_SUCCESS;
}

static kern_return_t k_set_default(void *ctx, host_priv_t host, mach_port_seqno_t seqno,
    mach_port_make_send_t *dm);

static const struct mvm_memory_object_control_ops kernel_ops = {
	.version = MVM_MEMORY_OBJECT_OPS_VERSION,
	.data_unavailable = k_data_unavailable,
	.get_attributes = k_get_attributes,
	.lock_request = k_lock_request,
	.data_error = k_data_error,
	.destroy = k_destroy,
	.data_supply = k_data_supply,
	.ready = k_ready,
	.change_attributes = k_change_attributes,
	.set_default_memory_manager = k_set_default,
};

/* ---- 6. termination and death ------------------------------------------------------------ */

/*
 * Return dirty and precious pages (when asked), then send memory_object_terminate, which
 * moves the control and name receive rights to the manager. Under vm.lock.
 */
static void
terminate_object(struct mvm_vobject *o, bool return_pages)
{
	mach_port_t prev = MACH_PORT_NULL;
	void *buf;
	int err = 0;

	if (o->terminated)
		return;
	/* Temporary memory is never returned: the kernel's own objects (whose default
	 * manager only pages them) and COPY_TEMPORARY objects. */
	if (o->internal || o->copy_strategy == MEMORY_OBJECT_COPY_TEMPORARY)
		return_pages = false;
	if (!MACH_PORT_VALID(o->pager) && o->internal) {
		/* No manager ever took it on: no ports. */
		o->terminated = true;
		return;
	}
	if (return_pages && !o->dead && (buf = mvm__vm_alloc_pages(DATA_RETURN_MAX * PS, &err)) != NULL) {
		for (size_t pg = 0; pg < o->npages;) {
			struct mvm_vpage *p = &o->pages[pg];
			bool dirty = (p->flags & MVM_PG_DIRTY) != 0;
			size_t n;

			wait_not_busy(o, pg);
			if (p->state != MVM_PAGE_RESIDENT || !(p->flags & (MVM_PG_DIRTY | MVM_PG_PRECIOUS))) {
				pg++;
				continue;
			}
			for (n = 1; n < DATA_RETURN_MAX && pg + n < o->npages; n++) {
				struct mvm_vpage *r = &o->pages[pg + n];

				if (r->state != MVM_PAGE_RESIDENT || (r->flags & MVM_PG_BUSY) ||
				    !(r->flags & (MVM_PG_DIRTY | MVM_PG_PRECIOUS)) ||
				    ((r->flags & MVM_PG_DIRTY) != 0) != dirty)
					break;
			}
			/* No mapping is left, so nobody writes: read the contents directly. */
			if (mvm__pread(o->memfd, buf, n * PS, (off_t)(pg * PS)) >= 0)
				send_return(o, pg, n, dirty, false, buf);
			pg += n;
		}
		mvm__vm_free_pages(buf, DATA_RETURN_MAX * PS);
	}
	o->terminated = true;
	if (!o->dead) {
		/* Our dead-name request goes with our send right. */
		(void)mach_port_request_notification(mach_task_self(), o->pager,
		    MACH_NOTIFY_DEAD_NAME, 0, MACH_PORT_NULL, MACH_MSG_TYPE_MAKE_SEND_ONCE, &prev);
		if (MACH_PORT_VALID(prev))
			(void)mach_port_deallocate(mach_task_self(), prev);
		(void)mvm_mo_send_terminate(o->pager, o->control, o->name_port);
	} else {
		(void)mach_port_mod_refs(mach_task_self(), o->control, MACH_PORT_RIGHT_RECEIVE, -1);
		(void)mach_port_mod_refs(mach_task_self(), o->name_port, MACH_PORT_RIGHT_RECEIVE, -1);
		(void)mach_port_deallocate(mach_task_self(), o->pager);
	}
	o->pager = MACH_PORT_NULL;
	o->control = MACH_PORT_NULL;
	o->name_port = MACH_PORT_NULL;
}

/*
 * exit(): a process that ends normally gives its managers what they would lose with it.
 * As when a Mach task's address space goes, the dirty and precious pages of every object
 * a manager backs are returned (data_return) before the process is gone, and the frames
 * for managers in other processes are written out (for at most two seconds). Unlike
 * there, the mappings stay, since the program's other threads run until _exit (a write
 * after this marks its page dirty again, and is lost), and no terminate follows: the
 * manager learns of the end when the control port dies. A process killed, or leaving
 * with _exit, loses what it had not returned, as a crashed kernel would.
 */
static void
vm_at_exit(void)
{
	struct { mach_port_t ctl; vm_size_t size; } *todo = NULL;
	size_t n = 0, cap = 0;

	if (!mvm_vm.started)
		return;
	vm_lock();
	for (struct mvm_vobject *o = mvm_vm.objects; o != NULL; o = o->next) {
		if (o->dead || o->terminated || o->internal ||
		    o->copy_strategy == MEMORY_OBJECT_COPY_TEMPORARY ||
		    !MACH_PORT_VALID(o->pager) || !MACH_PORT_VALID(o->control) || o->npages == 0)
			continue;
		if (n == cap) {
			void *nt = mvm__realloc(todo, (cap = cap ? 2 * cap : 16) * sizeof(*todo));

			if (nt == NULL)
				break;
			todo = nt;
		}
		todo[n].ctl = o->control;
		todo[n].size = o->npages * PS;
		n++;
	}
	vm_unlock();
	/* As the manager's lock_request(RETURN_ALL, no flush) would: nothing is kept back. */
	for (size_t i = 0; i < n; i++)
		(void)k_lock_request(NULL, todo[i].ctl, 0, 0, todo[i].size,
		    MEMORY_OBJECT_RETURN_ALL, FALSE, VM_PROT_NO_CHANGE, MACH_PORT_NULL, 0);
	mvm__free(todo);
	if (n > 0)
		(void)mvm__node_drain(2000);
}

static void shadow_release(struct mvm_vobject *s);

static void
free_object(struct mvm_vobject *o)
{
	struct mvm_vobject **pp, *shadow = o->shadow;

	if (o->users > 0) {
		o->doomed = true; /* the last user frees it */
		return;
	}
	for (pp = &mvm_vm.objects; *pp != NULL; pp = &(*pp)->next)
		if (*pp == o) {
			*pp = o->next;
			break;
		}
	if (mvm_vm.hand == o) {
		mvm_vm.hand = o->next;
		mvm_vm.hand_pg = 0;
	}
	resident_sub(o, o->st.resident);
	while (o->faults != NULL) {
		struct mvm_fault *f = o->faults;

		o->faults = f->next;
		mvm__free(f);
	}
	mvm__close(o->memfd);
	mvm__free(o->pages);
	mvm__free(o);
	if (shadow != NULL)
		shadow_release(shadow);
}

/*
 * The object port died (dead-name notification), or the name our send right lived under
 * was destroyed (port-deleted: in the one name space a manager's mach_port_destroy of
 * its receive right takes our send right with it; the name is no longer ours).
 */
static void
dead_name(mach_port_t name, bool deleted)
{
	struct mvm_vobject *o;
	struct fault_queue q = { NULL, NULL };

	vm_lock();
	if (dmm_dead(name)) {
		/* The default manager is gone: our send right (now a dead name) too. */
		if (!deleted)
			(void)mach_port_deallocate(mach_task_self(), name);
	} else if ((o = obj_by_pager(name)) != NULL && !o->dead) {
		if (deleted)
			o->pager = MACH_PORT_NULL; /* nothing of ours left to deallocate */
		object_dies(o, &q);
		terminate_object(o, false); /* drops the ports; nothing can be sent */
		obj_hold(o);
		run_faults(&q);
		obj_release(o);
		if (o->mappings == 0 && o->shadow_refs == 0)
			free_object(o);
	}
	vm_unlock();
	/* A dead-name notification carried a user reference for the dead name. */
	if (!deleted)
		(void)mach_port_mod_refs(mach_task_self(), name, MACH_PORT_RIGHT_DEAD_NAME, -1);
}

static boolean_t
kernel_demux(mach_msg_header_t *in, mach_msg_header_t *out)
{
	mig_reply_header_t *r = (mig_reply_header_t *)out;

	if (in->msgh_local_port == mvm_vm.notify) {
		if (in->msgh_id == MACH_NOTIFY_DEAD_NAME &&
		    in->msgh_size >= sizeof(mach_dead_name_notification_t))
			dead_name(((mach_dead_name_notification_t *)in)->not_port, false);
		else if (in->msgh_id == MACH_NOTIFY_PORT_DELETED &&
		    in->msgh_size >= sizeof(mach_port_deleted_notification_t))
			dead_name(((mach_port_deleted_notification_t *)in)->not_port, true);
		r->RetCode = KERN_SUCCESS; /* other notifications carry nothing to keep */
		return TRUE;
	}
	return mvm_memory_object_control_server(&kernel_ops, NULL, in, out);
}

/*
 * Calls relayed by the node thread from a manager in another process are left to the
 * control thread (relay_ok NULL). Served in the node thread, a data_supply mapped the
 * page and woke the faulting thread sooner, but the flush the manager sends next then
 * often ran before that thread had used the page: in bench_shm's split placement half
 * of the migratory hand-offs failed (two grants per move, twice the time).
 */
static const struct mvm_direct control_direct = {
	kernel_demux, MVM_MEMORY_OBJECT_CONTROL_MSG_SIZE_MAX + 64, NULL
};

static void *
control_thread_main(void *arg)
{
	(void)arg;
	for (;;)
		(void)mach_msg_server(kernel_demux, MVM_MEMORY_OBJECT_CONTROL_MSG_SIZE_MAX + 64,
		    mvm_vm.ctl_set);
	return NULL;
}

/* ---- 7. vm_map and unmapping ----------------------------------------------------------- */

static int
prot_to_mmap(vm_prot_t p)
{
	int r = PROT_NONE;

	if (p & (VM_PROT_READ | VM_PROT_WRITE))
		r |= PROT_READ;
	if (p & VM_PROT_WRITE)
		r |= PROT_WRITE;
	if (p & VM_PROT_EXECUTE)
		r |= PROT_EXEC;
	return r;
}

/* Create the cache object for pager and send memory_object_init. Under vm.lock. */
static kern_return_t
object_create(mach_port_t pager, struct mvm_vobject **op)
{
	struct mvm_vobject *o = mvm__calloc(1, sizeof(*o));
	mach_port_t prev = MACH_PORT_NULL;
	kern_return_t kr;
	int fd;

	if (o == NULL)
		return KERN_RESOURCE_SHORTAGE;
	if ((fd = mvm__memfd_create("machvm-object", MFD_CLOEXEC)) < 0) {
		mvm__free(o);
		return mvm__kr_from_errno(fd);
	}
	o->memfd = fd;
	o->cluster = 1;
	o->copy_strategy = MEMORY_OBJECT_COPY_DELAY;
	if ((kr = mach_port_mod_refs(mach_task_self(), pager, MACH_PORT_RIGHT_SEND, 1)) != KERN_SUCCESS)
		goto fail;
	o->pager = pager;
	if ((kr = mach_port_allocate(mach_task_self(), MACH_PORT_RIGHT_RECEIVE, &o->control)) ||
	    (kr = mach_port_allocate(mach_task_self(), MACH_PORT_RIGHT_RECEIVE, &o->name_port)) ||
	    (kr = mach_port_set_qlimit(mach_task_self(), o->control, MACH_PORT_QLIMIT_MAX)) ||
	    (kr = mach_port_move_member(mach_task_self(), o->control, mvm_vm.ctl_set)) ||
	    (kr = mach_port_request_notification(mach_task_self(), pager, MACH_NOTIFY_DEAD_NAME, 0,
	    mvm_vm.notify, MACH_MSG_TYPE_MAKE_SEND_ONCE, &prev)))
		goto fail_ports;
	if (MACH_PORT_VALID(prev))
		(void)mach_port_deallocate(mach_task_self(), prev);
	o->next = mvm_vm.objects;
	mvm_vm.objects = o;
	/* vm_map does not wait for ready: faults do. */
	(void)mvm_mo_send_init(pager, o->control, o->name_port, PS);
	*op = o;
	return KERN_SUCCESS;

fail_ports:
	if (MACH_PORT_VALID(o->control))
		(void)mach_port_mod_refs(mach_task_self(), o->control, MACH_PORT_RIGHT_RECEIVE, -1);
	if (MACH_PORT_VALID(o->name_port))
		(void)mach_port_mod_refs(mach_task_self(), o->name_port, MACH_PORT_RIGHT_RECEIVE, -1);
	(void)mach_port_deallocate(mach_task_self(), pager);
fail:
	mvm__close(fd);
	mvm__free(o);
	return kr;
}

kern_return_t
vm_map(vm_map_t task, vm_address_t *address, vm_size_t size, vm_address_t mask,
    boolean_t anywhere, memory_object_t memory_object, vm_offset_t offset, boolean_t copy,
    vm_prot_t cur_protection, vm_prot_t max_protection, vm_inherit_t inheritance)
{
	struct mvm_vobject *o;
	struct mvm_mapping *m, **pp;
	mach_port_type_t type;
	struct uffdio_register reg;
	void *p;
	size_t len;
	int err = 0, r;
	kern_return_t kr;

	if (task != mach_task_self())
		return MACH_SEND_INVALID_DEST;
	if (address == NULL || size == 0 || (offset & (PS - 1)) != 0 ||
	    (cur_protection & ~VM_PROT_ALL) || (max_protection & ~VM_PROT_ALL) ||
	    (cur_protection & ~max_protection) || inheritance < VM_INHERIT_SHARE ||
	    inheritance > VM_INHERIT_NONE || offset + size < offset)
		return KERN_INVALID_ARGUMENT;
	if (memory_object == MACH_PORT_NULL) {
		vm_address_t base = 0, start;
		vm_size_t alen = MVM_ROUND_PAGE(size), slack = (vm_size_t)mask + 1;

		if (mask == 0 || !anywhere) {
			if (!anywhere && (*address & mask) != 0)
				return KERN_INVALID_ARGUMENT;
			return vm_allocate(task, address, size, anywhere);
		}
		/* Aligned anonymous memory: allocate with room to align, give the rest back. */
		if (slack == 0 || alen + slack < alen)
			return KERN_NO_SPACE;
		if ((kr = vm_allocate(task, &base, alen + slack, TRUE)) != KERN_SUCCESS)
			return kr;
		start = (base + mask) & ~(vm_address_t)mask;
		if (start > base)
			(void)vm_deallocate(task, base, start - base);
		if (start + alen < base + alen + slack)
			(void)vm_deallocate(task, start + alen, base + alen + slack - start - alen);
		*address = start;
		return KERN_SUCCESS;
	}
	if (mach_port_type(mach_task_self(), memory_object, &type) != KERN_SUCCESS ||
	    !(type & MACH_PORT_TYPE_SEND))
		return KERN_INVALID_ARGUMENT;
	len = MVM_ROUND_PAGE(size);
	pthread_once(&vm_once, vm_init_once);
	if ((m = mvm__calloc(1, sizeof(*m))) == NULL)
		return KERN_RESOURCE_SHORTAGE;

	vm_lock();
	if ((kr = vm_start()) != KERN_SUCCESS)
		goto fail;
	if ((o = obj_by_pager(memory_object)) == NULL || o->terminated) {
		if ((kr = object_create(memory_object, &o)) != KERN_SUCCESS)
			goto fail;
	}
	if ((kr = obj_grow(o, offset + len)) != KERN_SUCCESS)
		goto fail_obj;
	if (copy) {
		/* A copy: the strategy is known once the object is ready (GNU Mach waits
		 * for ready here too). The copy is what gets mapped. */
		struct mvm_vobject *x = o, *c = NULL;

		obj_hold(x);
		while (!x->ready && !x->dead)
			vm_wait();
		kr = x->dead ? KERN_MEMORY_FAILURE : make_copy(x, offset, len, &c);
		if (kr != KERN_SUCCESS && x->mappings == 0 && x->shadow_refs == 0 &&
		    (!x->may_cache || x->dead)) {
			terminate_object(x, true);
			free_object(x); /* when we let it go */
		}
		obj_release(x);
		if (kr != KERN_SUCCESS)
			goto fail;
		o = c;
		offset = 0;
	}
	/* Place the mapping: anywhere (aligned to mask), or exactly at *address. */
	if (anywhere) {
		size_t slack = mask != 0 ? mask + 1 : 0;
		uintptr_t base, start;

		p = mvm__mmap(NULL, len + slack, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
		    -1, 0, &err);
		if (p == NULL) {
			kr = KERN_NO_SPACE;
			goto fail_obj;
		}
		base = (uintptr_t)p;
		start = mask != 0 ? (base + mask) & ~(uintptr_t)mask : base;
		if (start > base)
			(void)mvm__munmap(p, start - base);
		if (start + len < base + len + slack)
			(void)mvm__munmap((void *)(start + len), base + len + slack - start - len);
		p = mvm__mmap((void *)start, len, prot_to_mmap(cur_protection), MAP_SHARED | MAP_FIXED,
		    o->memfd, (off_t)offset, &err);
	} else {
		if ((*address & (PS - 1)) != 0 || (mask != 0 && (*address & mask) != 0)) {
			kr = KERN_INVALID_ARGUMENT;
			goto fail_obj;
		}
		p = mvm__mmap((void *)*address, len, prot_to_mmap(cur_protection),
		    MAP_SHARED | MAP_FIXED_NOREPLACE, o->memfd, (off_t)offset, &err);
		if (p != NULL && (uintptr_t)p != *address) {
			(void)mvm__munmap(p, len);
			p = NULL;
			err = EEXIST;
		}
	}
	if (p == NULL) {
		kr = err == EEXIST ? KERN_NO_SPACE : mvm__kr_from_errno(err);
		goto fail_obj;
	}
	/* Only a SHARE mapping reaches a child of fork() as it is; a COPY mapping is
	 * replaced there by a copy (section 12), a NONE one is not there at all. */
	if (inheritance != VM_INHERIT_SHARE)
		(void)mvm__madvise(p, len, MADV_DONTFORK);
	memset(&reg, 0, sizeof(reg));
	reg.range.start = (uintptr_t)p;
	reg.range.len = len;
	reg.mode = UFFDIO_REGISTER_MODE_MISSING | UFFDIO_REGISTER_MODE_MINOR |
	    UFFDIO_REGISTER_MODE_WP;
	/* Nobody knows the address yet, so nothing faults before it is registered. */
	if ((r = mvm__uffd_ioctl(mvm_vm.uffd, UFFDIO_REGISTER, &reg)) != 0) {
		(void)mvm__munmap(p, len);
		kr = mvm__kr_from_errno(r);
		goto fail_obj;
	}
	m->start = (uintptr_t)p;
	m->end = (uintptr_t)p + len;
	m->offset = offset;
	m->prot = cur_protection;
	m->obj = o;
	m->inherit = inheritance;
	m->fork_fd = -1;
	for (pp = &mvm_vm.maps; *pp != NULL && (*pp)->start < m->start; pp = &(*pp)->next)
		;
	m->next = *pp;
	*pp = m;
	o->mappings++;
	*address = m->start;
	vm_unlock();
	return KERN_SUCCESS;

fail_obj:
	if (o->mappings == 0 && o->shadow_refs == 0 && (!o->may_cache || o->internal)) {
		terminate_object(o, false);
		free_object(o);
	}
fail:
	vm_unlock();
	mvm__free(m);
	return kr;
}

void
mvm__vm_unmap_objects(uintptr_t start, uintptr_t end)
{
	struct mvm_mapping **pp;

	pthread_once(&vm_once, vm_init_once);
	vm_lock();
	pp = &mvm_vm.maps;
	while (*pp != NULL) {
		struct mvm_mapping *m = *pp;
		struct mvm_vobject *o = m->obj;
		uintptr_t s, e;
		struct uffdio_range rg;

		if (m->end <= start || m->start >= end) {
			pp = &m->next;
			continue;
		}
		s = m->start > start ? m->start : start;
		e = m->end < end ? m->end : end;
		/* Work on busy pages may use this mapping's addresses: let it finish. */
		{
			bool busy = false;

			for (size_t i = 0; i < o->npages && !busy; i++)
				busy = (o->pages[i].flags & MVM_PG_BUSY) != 0;
			if (busy) {
				vm_wait();
				pp = &mvm_vm.maps; /* the list may have changed: start again */
				continue;
			}
		}
		rg.start = s;
		rg.len = e - s;
		(void)mvm__uffd_ioctl(mvm_vm.uffd, UFFDIO_UNREGISTER, &rg);
		if (s > m->start && e < m->end) {
			/* A hole in the middle: the tail becomes a mapping of its own. */
			struct mvm_mapping *t = mvm__calloc(1, sizeof(*t));

			if (t != NULL) {
				*t = *m;
				t->fork_fd = FORK_TODO; /* a fork under way looks at both again */
				if (m->fork_fd >= 0)
					mvm__close(m->fork_fd);
				m->fork_fd = FORK_TODO;
				t->start = e;
				t->offset = m->offset + (e - m->start);
				m->end = s;
				t->next = m->next;
				m->next = t;
				o->mappings++;
				pp = &t->next;
				continue;
			}
			/* No memory for the split: drop the whole tail from our view. */
			m->end = s;
			pp = &m->next;
			continue;
		}
		if (s == m->start && e == m->end) {
			*pp = m->next;
			if (m->fork_fd >= 0)
				mvm__close(m->fork_fd); /* unmapped during a fork's preparation */
			mvm__free(m);
			if (--o->mappings == 0 && o->shadow_refs == 0 &&
			    (!o->may_cache || o->dead)) {
				struct fault_queue q = { NULL, NULL };
				struct mvm_fault *f;

				/* Threads still parked on it fault again on unmapped memory. */
				unpark(o, SIZE_MAX, &q);
				while ((f = fq_pop(&q)) != NULL)
					mvm__free(f);
				terminate_object(o, true);
				free_object(o);
			}
			continue;
		}
		if (s == m->start) {
			m->offset += e - m->start;
			m->start = e;
		} else {
			m->end = s;
		}
		pp = &m->next;
	}
	vm_unlock();
}

/* ---- 8. statistics ---------------------------------------------------------------------- */

kern_return_t
mvm_vm_object_stats(memory_object_t memory_object, struct mvm_vm_object_stats *st)
{
	struct mvm_vobject *o;

	if (st == NULL)
		return KERN_INVALID_ARGUMENT;
	pthread_once(&vm_once, vm_init_once);
	vm_lock();
	if ((o = obj_by_pager(memory_object)) == NULL) {
		vm_unlock();
		return KERN_INVALID_NAME;
	}
	*st = o->st;
	st->dirty = 0;
	for (size_t i = 0; i < o->npages; i++)
		if (o->pages[i].state == MVM_PAGE_RESIDENT && (o->pages[i].flags & MVM_PG_DIRTY))
			st->dirty++;
	st->mappings = o->mappings;
	st->ready = o->ready;
	st->dead = o->dead;
	vm_unlock();
	return KERN_SUCCESS;
}

kern_return_t
mvm_vm_object_set_cluster(memory_object_t memory_object, unsigned pages)
{
	struct mvm_vobject *o;

	if (pages == 0 || pages > CLUSTER_MAX)
		return KERN_INVALID_ARGUMENT;
	pthread_once(&vm_once, vm_init_once);
	vm_lock();
	if ((o = obj_by_pager(memory_object)) == NULL) {
		vm_unlock();
		return KERN_INVALID_NAME;
	}
	o->cluster = pages;
	vm_unlock();
	return KERN_SUCCESS;
}

/* ---- 9. eviction under the resident limit ----------------------------------------------
 *
 * A clock over the pages of every object, in list order, with a second chance (see
 * vm_kern.h for the reference bit). A pass chooses pages under the lock: a resident page
 * that is not busy, has no parked fault and no unlock request, in an object that is ready
 * and alive, either loses its reference bit (it is zapped, and survives) or, without one,
 * becomes a victim. When the hand comes back to a page the same pass chose, every page
 * has had its chance, and the first of those just cleared are taken (where a one-page
 * clock would come round to them next). The chosen pages are BUSY, so faults on them
 * park, lock requests and unmapping wait; their work runs with the lock dropped, in runs
 * of consecutive pages:
 *
 *   zap (clear the reference bit)  madvise(DONTNEED) over each mapping of the run
 *   clean, not precious            checked alive, fallocate(PUNCH_HOLE): unmaps and frees
 *   dirty or precious              zapped (no writer is left), pread, checked alive,
 *                                  data_return (dirty as it was, kernel_copy FALSE) sent
 *                                  under the lock, then punched
 *
 * The data_return goes out before the page is absent, so any data_request for it comes
 * after it (the manager sees them in that order). If the object died meanwhile, or a read
 * fails, the pages stay resident: nothing is dropped that cannot be asked for again.
 *
 * Who evicts: the control thread after a data_supply or data_unavailable made pages
 * resident (after the waiting threads are mapped, so no faulting thread waits for it),
 * and mvm_vm_set_resident_limit's caller. One thread at a time; the resident count
 * settles at 95% of the limit (the low water mark), so passes come in batches.
 */

#define EVICT_ZAP_MAX 512       /* reference bits one pass may clear */
#define EVICT_PASS_MAX 512      /* pages one pass may evict */
#define EVICT_RUN_MAX 512       /* pages per madvise or fallocate (returns: DATA_RETURN_MAX) */

enum ev_kind {
	EV_ZAP,                 /* clear the reference bit */
	EV_DROP,                /* clean and not precious: punch */
	EV_RETURN_CLEAN,        /* precious: data_return(dirty FALSE), punch */
	EV_RETURN_DIRTY,        /* data_return(dirty TRUE), punch */
};

struct ev {
	struct mvm_vobject *o;
	size_t pg;
	enum ev_kind kind;
};

/* Resident pages eviction stops at: 95% of the limit. */
static size_t
low_water(void)
{
	return mvm_vm.resident_limit - mvm_vm.resident_limit / 20;
}

/* Its pages may be evicted: its manager can be asked for them again. */
static bool
evictable(const struct mvm_vobject *o)
{
	/* An internal object's pages need the default manager (taken on at the first
	 * page that must go back to it). */
	return o->ready && !o->dead && !o->terminated && !o->doomed &&
	    (!o->internal || MACH_PORT_VALID(o->pager) || MACH_PORT_VALID(mvm_vm.dmm));
}

static bool
has_parked(struct mvm_vobject *o, size_t pg)
{
	for (struct mvm_fault *f = o->faults; f != NULL; f = f->next) {
		struct mvm_mapping *m;
		size_t fpg = fault_pg(o, f, &m);

		if (m == NULL || fpg == pg)
			return true;
	}
	return false;
}

/* COPY_TEMPORARY: its manager never sees the kernel's changes, so dirty and precious
 * pages cannot be evicted (they have nowhere to go); clean ones are dropped. */
static bool
no_return(const struct mvm_vobject *o)
{
	return !o->internal && o->copy_strategy == MEMORY_OBJECT_COPY_TEMPORARY;
}

static enum ev_kind
victim_kind(const struct mvm_vpage *p)
{
	if (p->flags & MVM_PG_DIRTY)
		return EV_RETURN_DIRTY;
	return (p->flags & MVM_PG_PRECIOUS) ? EV_RETURN_CLEAN : EV_DROP;
}

/*
 * Move the hand: choose up to need victims, clearing up to EVICT_ZAP_MAX reference bits
 * on the way (force: take pages whatever their bit). The chosen pages become BUSY |
 * CLOCK and hold their object. Under vm.lock; returns the entries, in hand order.
 */
static size_t
clock_select(struct ev *ev, size_t need, bool force)
{
	struct mvm_vobject *o = mvm_vm.hand;
	size_t pg = mvm_vm.hand_pg, steps = 0, total = 0, ne = 0, nv = 0, nz = 0;
	bool around = false;

	for (struct mvm_vobject *x = mvm_vm.objects; x != NULL; x = x->next)
		total += x->npages + 1;
	if (o == NULL) {
		o = mvm_vm.objects;
		pg = 0;
	}
	while (o != NULL && nv < need && nz < EVICT_ZAP_MAX) {
		struct mvm_vpage *p;

		if (steps >= total) {
			around = true; /* a whole revolution */
			break;
		}
		if (pg >= o->npages || !evictable(o)) {
			steps += (pg < o->npages ? o->npages - pg : 0) + 1;
			o = o->next != NULL ? o->next : mvm_vm.objects;
			pg = 0;
			continue;
		}
		steps++;
		p = &o->pages[pg];
		if (p->flags & MVM_PG_CLOCK) {
			around = true; /* back at a page this pass chose */
			break;
		}
		if (p->state == MVM_PAGE_RESIDENT && !(p->flags & MVM_PG_BUSY) &&
		    p->unlock_request == 0 && !has_parked(o, pg) &&
		    !(no_return(o) && victim_kind(p) != EV_DROP)) {
			enum ev_kind kind;

			if ((p->flags & MVM_PG_REFERENCED) && !force) {
				p->flags &= ~MVM_PG_REFERENCED;
				kind = EV_ZAP;
				nz++;
			} else {
				kind = victim_kind(p);
				nv++;
			}
			p->flags |= MVM_PG_BUSY | MVM_PG_CLOCK;
			obj_hold(o);
			ev[ne].o = o;
			ev[ne].pg = pg;
			ev[ne].kind = kind;
			ne++;
		}
		pg++;
	}
	if (around && nv < need) {
		/* Every page had its chance: the oldest of those just cleared go. */
		size_t last = SIZE_MAX;

		for (size_t i = 0; i < ne && nv < need; i++)
			if (ev[i].kind == EV_ZAP) {
				ev[i].kind = victim_kind(&ev[i].o->pages[ev[i].pg]);
				nv++;
				last = i;
			}
		if (last != SIZE_MAX) {
			o = ev[last].o;
			pg = ev[last].pg + 1;
		}
	}
	mvm_vm.hand = o;
	mvm_vm.hand_pg = pg;
	return ne;
}

/* The mapped ranges of pages [pg, pg + n) of o, in a new array (*rg; NULL if none or no
 * memory: returns SIZE_MAX then). Under vm.lock. */
static size_t
mapped_ranges(struct mvm_vobject *o, size_t pg, size_t n, struct around **rg)
{
	vm_offset_t lo = pg * PS, hi = (pg + n) * PS;
	size_t nr = 0, cap = 0;

	*rg = NULL;
	for (int pass = 0; pass < 2; pass++) {
		for (struct mvm_mapping *m = mvm_vm.maps; m != NULL; m = m->next) {
			vm_offset_t mlo = m->offset, mhi = m->offset + (m->end - m->start);
			vm_offset_t a = lo > mlo ? lo : mlo, b = hi < mhi ? hi : mhi;

			if (m->obj != o || a >= b)
				continue;
			if (pass == 0) {
				cap++;
			} else {
				(*rg)[nr].a = m->start + (a - m->offset);
				(*rg)[nr].len = b - a;
				nr++;
			}
		}
		if (pass == 0 && cap == 0)
			return 0;
		if (pass == 0 && (*rg = mvm__malloc(cap * sizeof(**rg))) == NULL)
			return SIZE_MAX;
	}
	return nr;
}

/*
 * The work of n entries of one kind on consecutive pages of one object (*bufp: the
 * return buffer, allocated on first use). Called and returns with vm.lock held (dropped
 * for the system calls); faults parked on the pages meanwhile go to q.
 */
static void
evict_run(const struct ev *ev, size_t n, void **bufp, struct fault_queue *q)
{
	struct mvm_vobject *o = ev[0].o;
	size_t pg = ev[0].pg, nr = 0;
	enum ev_kind kind = ev[0].kind;
	bool ret = kind == EV_RETURN_CLEAN || kind == EV_RETURN_DIRTY;
	bool ok = true, punched = false;
	struct around *rg = NULL;
	int err = 0;

	if (kind != EV_DROP && (nr = mapped_ranges(o, pg, n, &rg)) == SIZE_MAX)
		ok = false;
	if (ok && ret && *bufp == NULL &&
	    (*bufp = mvm__vm_alloc_pages(DATA_RETURN_MAX * PS, &err)) == NULL)
		ok = false;
	if (ok && kind != EV_DROP) {
		/* Zapped: the next access is a minor fault that sets the bit again; for a
		 * victim, no thread writes any more, so what is read is final. */
		vm_unlock();
		for (size_t i = 0; i < nr; i++)
			(void)mvm__madvise((void *)rg[i].a, rg[i].len, MADV_DONTNEED);
		if (ret && mvm__pread(o->memfd, *bufp, n * PS, (off_t)(pg * PS)) < 0)
			ok = false;
		vm_lock();
	}
	if (ok && kind != EV_ZAP) {
		if (!evictable(o)) {
			ok = false; /* destroyed or orphaned meanwhile: keep the pages */
		} else {
			if (ret && o->internal) {
				ok = dmm_page_out(o, pg, n, *bufp);
				if (ok) {
					o->st.evict_returns += n;
					mvm_vm.evict_returns += n;
				}
			} else if (ret) {
				send_return(o, pg, n, kind == EV_RETURN_DIRTY, false, *bufp);
				o->st.evict_returns += n;
				mvm_vm.evict_returns += n;
			}
		}
		if (ok) {
			vm_unlock();
			punched = mvm__fallocate(o->memfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
			    (off_t)(pg * PS), (off_t)(n * PS)) == 0;
			vm_lock();
		}
	}
	for (size_t i = 0; i < n; i++) {
		struct mvm_vpage *p = &o->pages[pg + i];

		p->flags &= ~(MVM_PG_BUSY | MVM_PG_CLOCK);
		if (punched) {
			p->state = MVM_PAGE_ABSENT;
			p->flags &= MVM_PG_PAGED; /* the default manager keeps it */
			p->page_lock = 0;
			p->unlock_request = 0;
		} else if (kind == EV_ZAP && !ok) {
			p->flags |= MVM_PG_REFERENCED; /* not zapped: may still be in use */
		} else if (ok && ret) {
			p->flags &= ~MVM_PG_DIRTY; /* returned, kept: the manager has it */
		}
		unpark(o, pg + i, q);
	}
	if (kind == EV_ZAP && ok)
		mvm_vm.ref_clears += n;
	if (punched) {
		resident_sub(o, n);
		o->st.evictions += n;
		mvm_vm.evictions += n;
	}
	pthread_cond_broadcast(&mvm_vm.cond);
	mvm__free(rg);
	for (size_t i = 0; i < n; i++)
		obj_release(o); /* the last may free it */
}

/* One pass of the clock; returns the pages it chose (0: nothing could be done). */
static size_t
evict_pass(size_t need, bool force)
{
	struct fault_queue q = { NULL, NULL };
	struct ev *ev;
	void *buf = NULL;
	size_t ne;

	if (need > EVICT_PASS_MAX)
		need = EVICT_PASS_MAX;
	if ((ev = mvm__malloc((need + EVICT_ZAP_MAX) * sizeof(*ev))) == NULL)
		return 0;
	if ((ne = clock_select(ev, need, force)) > 0)
		mvm_vm.evict_passes++;
	for (size_t i = 0; i < ne;) {
		bool ret = ev[i].kind == EV_RETURN_CLEAN || ev[i].kind == EV_RETURN_DIRTY;
		size_t n = 1, max = ret ? DATA_RETURN_MAX : EVICT_RUN_MAX;

		while (i + n < ne && n < max && ev[i + n].o == ev[i].o &&
		    ev[i + n].pg == ev[i].pg + n && ev[i + n].kind == ev[i].kind)
			n++;
		evict_run(&ev[i], n, &buf, &q);
		i += n;
	}
	run_faults(&q);
	if (buf != NULL)
		mvm__vm_free_pages(buf, DATA_RETURN_MAX * PS);
	mvm__free(ev);
	return ne;
}

/*
 * Over the limit with reserve pages about to become resident: evict down to the low
 * water mark. Under vm.lock (dropped meanwhile). A thread finding another one evicting
 * leaves the work to it (that one looks at the count again after every pass).
 */
static void
evict_if_needed(size_t reserve)
{
	unsigned passes = 0, force_after;

	if (mvm_vm.resident_limit == 0 || mvm_vm.evicting ||
	    mvm_vm.resident + reserve <= mvm_vm.resident_limit)
		return;
	mvm_vm.evicting = true;
	/* Two revolutions of the clock without reaching the mark: threads keep using the
	 * pages faster than the hand clears them; take them regardless. */
	force_after = 2 * (unsigned)(mvm_vm.resident / EVICT_ZAP_MAX + 2);
	while (mvm_vm.resident_limit != 0 && passes < 2 * force_after) {
		size_t lw = low_water(), keep = lw > reserve ? lw - reserve : 0;

		if (mvm_vm.resident <= keep)
			break;
		if (evict_pass(mvm_vm.resident - keep, passes >= force_after) == 0)
			break; /* nothing can go now (all busy or in use by faults) */
		passes++;
	}
	mvm_vm.evicting = false;
	pthread_cond_broadcast(&mvm_vm.cond);
}

/* Bytes with an optional K, M or G suffix (powers of 1024). */
static bool
parse_size(const char *s, size_t *bytes)
{
	unsigned long long v;
	unsigned shift = 0;
	char *end;

	if (s[0] < '0' || s[0] > '9')
		return false;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno != 0)
		return false;
	switch (*end) {
	case 'k': case 'K': shift = 10; end++; break;
	case 'm': case 'M': shift = 20; end++; break;
	case 'g': case 'G': shift = 30; end++; break;
	default: break;
	}
	if (*end != '\0' || (shift != 0 && v > (SIZE_MAX >> shift)))
		return false;
	*bytes = (size_t)v << shift;
	return true;
}

kern_return_t
mvm_vm_set_resident_limit(vm_size_t bytes)
{
	pthread_once(&vm_once, vm_init_once);
	vm_lock();
	mvm_vm.limit_set = true;
	mvm_vm.resident_limit = bytes / PS + (bytes % PS != 0);
	mvm_vm.resident_peak = mvm_vm.resident;
	/* Down to the new limit now, in this thread: after the one at work, if any. */
	while (mvm_vm.evicting)
		vm_wait();
	evict_if_needed(0);
	vm_unlock();
	return KERN_SUCCESS;
}

vm_size_t
mvm_vm_get_resident_limit(void)
{
	vm_size_t bytes;

	pthread_once(&vm_once, vm_init_once);
	vm_lock();
	bytes = (vm_size_t)mvm_vm.resident_limit * PS;
	vm_unlock();
	return bytes;
}

kern_return_t
mvm_vm_stats(struct mvm_vm_stats *st)
{
	if (st == NULL)
		return KERN_INVALID_ARGUMENT;
	pthread_once(&vm_once, vm_init_once);
	vm_lock();
	st->resident = mvm_vm.resident;
	st->resident_peak = mvm_vm.resident_peak;
	st->resident_limit = mvm_vm.resident_limit;
	st->evictions = mvm_vm.evictions;
	st->evict_returns = mvm_vm.evict_returns;
	st->evict_passes = mvm_vm.evict_passes;
	st->ref_clears = mvm_vm.ref_clears;
	vm_unlock();
	return KERN_SUCCESS;
}

/* ---- 10. copies ------------------------------------------------------------------------
 *
 * vm_map(copy = TRUE) waits for the object to be ready, then follows its copy strategy:
 *
 *   COPY_DELAY, COPY_TEMPORARY  a copy-on-write copy inside the kernel: an internal
 *                               object (memfd of its own, no manager) whose shadow is
 *                               the original. A fault on an absent page of the copy
 *                               copies the original's page ("copy-up"; asked for from
 *                               the original's manager first if need be). Before the
 *                               original's page changes in this kernel (its first
 *                               write, or a flush that discards it), it is pushed into
 *                               every copy that still shares it; so the original's
 *                               resident pages are write-protected when the copy is
 *                               made, and a page that needs a push is never mapped
 *                               writable. The copy's writes stay in its memfd.
 *   COPY_NONE                   the same copy, filled at once (every page asked for
 *                               and copied before vm_map returns), then cut from the
 *                               original.
 *   COPY_CALL                   memory_object_copy(original, its control, offset,
 *                               length, new port) to the manager; the original's
 *                               resident pages of the range are write-locked in this
 *                               kernel (writes then ask with data_unlock); the new
 *                               port is mapped as any object (init, ready, requests),
 *                               with the original as its shadow: data_unavailable on
 *                               it means "the original's page".
 *
 * The manager's side of COPY_DELAY is its promise not to change the data behind the
 * kernel's back; a page evicted clean from the original is asked for again and must come
 * back the same. An original stays (no terminate) while a copy shadows it. If the
 * original dies, the copy's pages it had not copied yet fail with SIGBUS, never zeros.
 * Copies are internal objects: their pages never reach the original's manager; under a
 * resident limit they go to the default memory manager (section 11), or stay resident
 * when there is none.
 */

/* A new internal object of size bytes, ready, shadowing s at off (s NULL: zero pages).
 * Under vm.lock. */
static kern_return_t
internal_create(size_t size, struct mvm_vobject *s, vm_offset_t off, bool cow,
    struct mvm_vobject **op)
{
	struct mvm_vobject *o = mvm__calloc(1, sizeof(*o));
	kern_return_t kr;
	int fd;

	if (o == NULL)
		return KERN_RESOURCE_SHORTAGE;
	if ((fd = mvm__memfd_create("machvm-copy", MFD_CLOEXEC)) < 0) {
		mvm__free(o);
		return mvm__kr_from_errno(fd);
	}
	o->memfd = fd;
	o->cluster = 1;
	o->copy_strategy = MEMORY_OBJECT_COPY_DELAY;
	o->internal = true;
	o->ready = true;
	if ((kr = obj_grow(o, size)) != KERN_SUCCESS) {
		mvm__close(fd);
		mvm__free(o->pages);
		mvm__free(o);
		return kr;
	}
	if (s != NULL) {
		o->shadow = s;
		o->shadow_off = off;
		o->cow = cow;
		s->shadow_refs++;
	}
	o->next = mvm_vm.objects;
	mvm_vm.objects = o;
	*op = o;
	return KERN_SUCCESS;
}

/* A copy no longer shadows s: s goes if nothing else uses it. Under vm.lock. */
static void
shadow_release(struct mvm_vobject *s)
{
	if (--s->shadow_refs == 0 && s->mappings == 0 &&
	    (!s->may_cache || s->dead || s->internal)) {
		terminate_object(s, true);
		free_object(s);
	}
}

/* Page pg of o is still shared by a COPY_DELAY copy (it must be pushed before it
 * changes). Under vm.lock. */
static bool
needs_push(struct mvm_vobject *o, size_t pg)
{
	if (o->shadow_refs == 0)
		return false;
	for (struct mvm_vobject *x = mvm_vm.objects; x != NULL; x = x->next) {
		size_t first = x->shadow_off / PS;

		if (!x->cow || x->shadow != o || x->doomed || pg < first || pg - first >= x->npages)
			continue;
		if (x->pages[pg - first].state == MVM_PAGE_ABSENT &&
		    !(x->pages[pg - first].flags & (MVM_PG_PAGED | MVM_PG_BUSY)))
			return true;
	}
	return false;
}

/*
 * Push page pg of o (resident, not busy) into every copy that shares it. Called and
 * returns with vm.lock held (dropped for the copy); faults that waited on the pages go
 * to q. False if a copy could not get the page (no memory).
 */
static bool
push_page(struct mvm_vobject *o, size_t pg, struct fault_queue *q)
{
	struct target {
		struct mvm_vobject *x;
		size_t pg;
		bool ok;
	} *t;
	size_t n = 0, cap = 0;
	bool ok = true;
	void *buf;

	for (struct mvm_vobject *x = mvm_vm.objects; x != NULL; x = x->next)
		if (x->cow && x->shadow == o)
			cap++;
	t = cap > 0 ? mvm__malloc(cap * sizeof(*t)) : NULL;
	buf = mvm__malloc(PS);
	if (t == NULL || buf == NULL) {
		mvm__free(t);
		mvm__free(buf);
		return false;
	}
	for (struct mvm_vobject *x = mvm_vm.objects; x != NULL; x = x->next) {
		size_t first = x->shadow_off / PS;
		struct mvm_vpage *cp;

		if (!x->cow || x->shadow != o || x->doomed || pg < first || pg - first >= x->npages)
			continue;
		cp = &x->pages[pg - first];
		if (cp->state != MVM_PAGE_ABSENT || (cp->flags & (MVM_PG_PAGED | MVM_PG_BUSY)))
			continue;
		cp->flags |= MVM_PG_BUSY;
		obj_hold(x);
		t[n].x = x;
		t[n].pg = pg - first;
		t[n].ok = false;
		n++;
	}
	o->pages[pg].flags |= MVM_PG_BUSY;
	obj_hold(o);
	vm_unlock();
	if (mvm__pread(o->memfd, buf, PS, (off_t)(pg * PS)) != (ssize_t)PS)
		ok = false;
	for (size_t i = 0; ok && i < n; i++)
		t[i].ok = mvm__pwrite(t[i].x->memfd, buf, PS, (off_t)(t[i].pg * PS)) == (ssize_t)PS;
	vm_lock();
	for (size_t i = 0; i < n; i++) {
		struct mvm_vpage *cp = &t[i].x->pages[t[i].pg];

		cp->flags &= ~MVM_PG_BUSY;
		if (t[i].ok) {
			/* The copy's own page now; dirty: nobody else has it. */
			cp->state = MVM_PAGE_RESIDENT;
			cp->flags = (cp->flags & MVM_PG_PAGED) | MVM_PG_DIRTY;
			cp->page_lock = 0;
			cp->unlock_request = 0;
			resident_add(t[i].x, 1);
		} else {
			ok = false;
		}
		unpark(t[i].x, t[i].pg, q);
		obj_release(t[i].x);
	}
	o->pages[pg].flags &= ~MVM_PG_BUSY;
	unpark(o, pg, q);
	obj_release(o);
	pthread_cond_broadcast(&mvm_vm.cond);
	mvm__free(t);
	mvm__free(buf);
	return ok;
}

/*
 * Copy the shadow's page (resident, not busy) into page pg of copy c (absent, not busy).
 * dirty: the copy's page must be kept (no shadow to copy it from again). Called and
 * returns with vm.lock held.
 */
static bool
copy_up_page(struct mvm_vobject *c, size_t pg, bool dirty, struct fault_queue *q)
{
	struct mvm_vobject *s = c->shadow;
	size_t spg = pg + c->shadow_off / PS;
	struct mvm_vpage *p;
	void *buf = mvm__malloc(PS);
	bool ok;

	if (buf == NULL)
		return false;
	c->pages[pg].flags |= MVM_PG_BUSY;
	s->pages[spg].flags |= MVM_PG_BUSY;
	obj_hold(c);
	obj_hold(s);
	vm_unlock();
	ok = mvm__pread(s->memfd, buf, PS, (off_t)(spg * PS)) == (ssize_t)PS &&
	    mvm__pwrite(c->memfd, buf, PS, (off_t)(pg * PS)) == (ssize_t)PS;
	vm_lock();
	p = &c->pages[pg];
	p->flags &= ~MVM_PG_BUSY;
	s->pages[spg].flags &= ~MVM_PG_BUSY;
	if (ok) {
		p->state = MVM_PAGE_RESIDENT;
		/* A copy with a manager of its own (COPY_CALL) keeps the page dirty: that
		 * manager does not have it. */
		p->flags = (p->flags & MVM_PG_PAGED) | (dirty || !c->internal ? MVM_PG_DIRTY : 0);
		p->page_lock = 0;
		p->unlock_request = 0;
		resident_add(c, 1);
	}
	unpark(c, pg, q);
	unpark(s, spg, q);
	obj_release(s);
	obj_release(c);
	pthread_cond_broadcast(&mvm_vm.cond);
	mvm__free(buf);
	return ok;
}

static bool
copy_up(struct mvm_vobject *c, size_t pg, struct fault_queue *q)
{
	return copy_up_page(c, pg, false, q);
}

/* A zero page for page pg of internal object o (absent, not busy). */
static bool
zero_fill(struct mvm_vobject *o, size_t pg, struct fault_queue *q)
{
	struct mvm_vpage *p;
	int r;

	o->pages[pg].flags |= MVM_PG_BUSY;
	obj_hold(o);
	vm_unlock();
	r = mvm__fallocate(o->memfd, 0, (off_t)(pg * PS), (off_t)PS);
	vm_lock();
	p = &o->pages[pg];
	p->flags &= ~MVM_PG_BUSY;
	if (r == 0) {
		p->state = MVM_PAGE_RESIDENT;
		p->flags &= MVM_PG_PAGED;
		p->page_lock = 0;
		p->unlock_request = 0;
		resident_add(o, 1);
	}
	unpark(o, pg, q);
	obj_release(o);
	pthread_cond_broadcast(&mvm_vm.cond);
	return r == 0;
}

/*
 * Write-protect the resident pages [first, last) of o in every mapping (and, with lock,
 * write-lock them: a write then asks the manager with data_unlock). Under vm.lock.
 */
static void
protect_range(struct mvm_vobject *o, size_t first, size_t last, bool lock)
{
	struct fault_queue q = { NULL, NULL };
	unsigned char *mine;
	bool busy;

	if (last > o->npages)
		last = o->npages;
	if (first >= last || (mine = mvm__calloc(last - first, 1)) == NULL)
		return;
	obj_hold(o);
	do {
		busy = false;
		for (size_t pg = first; pg < last && !busy; pg++)
			busy = (o->pages[pg].flags & MVM_PG_BUSY) != 0;
		if (busy)
			vm_wait();
	} while (busy);
	for (size_t pg = first; pg < last; pg++) {
		struct mvm_vpage *p = &o->pages[pg];

		if (p->state != MVM_PAGE_RESIDENT)
			continue;
		p->flags |= MVM_PG_BUSY;
		if (lock)
			p->page_lock |= VM_PROT_WRITE;
		mine[pg - first] = 1;
	}
	for (size_t pg = first; pg < last;) {
		struct around *rg;
		size_t n = 0, nr;

		while (pg + n < last && mine[pg + n - first])
			n++;
		if (n == 0) {
			pg++;
			continue;
		}
		/* The pages are busy: the mappings stay while the lock is dropped. */
		nr = mapped_ranges(o, pg, n, &rg);
		if (nr != SIZE_MAX && nr > 0) {
			vm_unlock();
			for (size_t i = 0; i < nr; i++)
				uffd_range(UFFDIO_WRITEPROTECT, rg[i].a, rg[i].len,
				    UFFDIO_WRITEPROTECT_MODE_WP);
			vm_lock();
		}
		mvm__free(rg);
		pg += n;
	}
	for (size_t pg = first; pg < last; pg++)
		if (mine[pg - first]) {
			o->pages[pg].flags &= ~MVM_PG_BUSY;
			unpark(o, pg, &q);
		}
	pthread_cond_broadcast(&mvm_vm.cond);
	run_faults(&q);
	obj_release(o);
	mvm__free(mine);
}

/*
 * COPY_NONE: fill copy c from its shadow now, every page, waiting for the shadow's
 * manager where it must; then cut it from the shadow. Under vm.lock (dropped while
 * waiting). KERN_MEMORY_ERROR if the manager failed a page (data_error),
 * KERN_MEMORY_FAILURE if the object died.
 */
static kern_return_t
eager_copy(struct mvm_vobject *c)
{
	struct mvm_vobject *s = c->shadow;
	struct fault_queue q = { NULL, NULL };
	kern_return_t kr = KERN_SUCCESS;

	obj_hold(c);
	for (size_t pg = 0; pg < c->npages && kr == KERN_SUCCESS; pg++) {
		size_t spg = pg + c->shadow_off / PS;
		uint64_t errors = 0;
		bool asked = false;

		for (;;) {
			struct mvm_vpage *p = &c->pages[pg], *sp = &s->pages[spg];

			if (p->state == MVM_PAGE_RESIDENT && !(p->flags & MVM_PG_BUSY)) {
				/* Pushed meanwhile (the original was written): already a copy. */
				p->flags |= MVM_PG_DIRTY;
				break;
			}
			if (s->dead && sp->state != MVM_PAGE_RESIDENT) {
				kr = KERN_MEMORY_FAILURE;
				break;
			}
			if (!(p->flags & MVM_PG_BUSY) && !(sp->flags & MVM_PG_BUSY) &&
			    sp->state == MVM_PAGE_RESIDENT && !(sp->page_lock & VM_PROT_READ)) {
				if (!copy_up_page(c, pg, true, &q))
					kr = KERN_RESOURCE_SHORTAGE;
				run_faults(&q);
				break;
			}
			if (!(sp->flags & MVM_PG_BUSY) && sp->state == MVM_PAGE_ABSENT) {
				if (asked && s->st.errors != errors) {
					kr = KERN_MEMORY_ERROR; /* data_error on it */
					break;
				}
				asked = true;
				errors = s->st.errors;
				send_request(s, spg, false);
			} else if (sp->state == MVM_PAGE_RESIDENT && (sp->page_lock & VM_PROT_READ) &&
			    !(sp->unlock_request & VM_PROT_READ)) {
				sp->unlock_request |= VM_PROT_READ;
				s->st.data_unlocks++;
				(void)mvm_mo_send_data_unlock(s->pager, s->control, spg * PS, PS,
				    sp->unlock_request);
			}
			vm_wait();
		}
		evict_if_needed(0);
	}
	if (kr == KERN_SUCCESS) {
		c->shadow = NULL;
		c->cow = false;
		shadow_release(s);
	}
	obj_release(c);
	return kr;
}

/*
 * COPY_CALL: memory_object_copy to the manager with a new object port, write-lock the
 * original's resident pages of the range, then the new port is an object like any other
 * (init on it), shadowed by the original. Under vm.lock.
 */
static kern_return_t
copy_call(struct mvm_vobject *x, vm_offset_t offset, size_t len, struct mvm_vobject **cp)
{
	struct mvm_vobject *c;
	mach_port_t port;
	kern_return_t kr;

	if ((kr = mach_port_allocate(mach_task_self(), MACH_PORT_RIGHT_RECEIVE, &port)) != 0)
		return kr;
	if ((kr = mach_port_insert_right(mach_task_self(), port, port, MACH_MSG_TYPE_MAKE_SEND))) {
		(void)mach_port_destroy(mach_task_self(), port);
		return kr;
	}
	/* The receive right goes to the manager; the kernel keeps its send right. */
	if ((kr = mvm_mo_send_copy(x->pager, x->control, offset, len, port)) != KERN_SUCCESS) {
		(void)mach_port_destroy(mach_task_self(), port);
		return kr;
	}
	protect_range(x, offset / PS, (offset + len) / PS, true);
	kr = object_create(port, &c);
	(void)mach_port_deallocate(mach_task_self(), port); /* object_create took its own */
	if (kr != KERN_SUCCESS)
		return kr;
	if ((kr = obj_grow(c, len)) != KERN_SUCCESS) {
		terminate_object(c, false);
		free_object(c);
		return kr;
	}
	c->shadow = x;
	c->shadow_off = offset;
	x->shadow_refs++;
	*cp = c;
	return KERN_SUCCESS;
}

/* The object vm_map(copy = TRUE) maps, by x's copy strategy (x is ready). Under vm.lock. */
static kern_return_t
make_copy(struct mvm_vobject *x, vm_offset_t offset, size_t len, struct mvm_vobject **cp)
{
	struct mvm_vobject *c;
	kern_return_t kr;

	switch (x->copy_strategy) {
	case MEMORY_OBJECT_COPY_CALL:
		return copy_call(x, offset, len, cp);
	case MEMORY_OBJECT_COPY_NONE:
		if ((kr = internal_create(len, x, offset, true, &c)) != KERN_SUCCESS)
			return kr;
		if ((kr = eager_copy(c)) != KERN_SUCCESS) {
			terminate_object(c, false);
			free_object(c);
			return kr;
		}
		*cp = c;
		return KERN_SUCCESS;
	default:
		/* DELAY, and TEMPORARY (which is DELAY for copies, as in GNU Mach). */
		if ((kr = internal_create(len, x, offset, true, &c)) != KERN_SUCCESS)
			return kr;
		/* Writes to the original's resident pages must fault, to push first. */
		protect_range(x, offset / PS, (offset + len) / PS, false);
		*cp = c;
		return KERN_SUCCESS;
	}
}

/* ---- 11. the default memory manager --------------------------------------------------
 *
 * vm_set_default_memory_manager (served on the host port, mach_host_self()) registers
 * it. An internal object (a copy, a COPY_NONE copy's memory) has no manager; when the
 * clock must evict one of its dirty pages and a default manager is registered, the
 * kernel gives the object to it: memory_object_create(default manager, new object port,
 * size, control, name, page size), without waiting for ready (the object is ready).
 * A page that never went to it goes with memory_object_data_initialize, later ones with
 * data_return; the kernel remembers which pages the default manager holds (MVM_PG_PAGED)
 * and asks it only for those: the others are zero pages or the shadow's. Without a
 * default manager, internal objects stay resident (the limit is exceeded).
 */

static bool
dmm_attach(struct mvm_vobject *o)
{
	mach_port_t port = MACH_PORT_NULL, ctl = MACH_PORT_NULL, name = MACH_PORT_NULL;
	mach_port_t prev = MACH_PORT_NULL;
	kern_return_t kr;

	if (!MACH_PORT_VALID(mvm_vm.dmm))
		return false;
	if ((kr = mach_port_allocate(mach_task_self(), MACH_PORT_RIGHT_RECEIVE, &port)) ||
	    (kr = mach_port_insert_right(mach_task_self(), port, port, MACH_MSG_TYPE_MAKE_SEND)) ||
	    (kr = mach_port_allocate(mach_task_self(), MACH_PORT_RIGHT_RECEIVE, &ctl)) ||
	    (kr = mach_port_allocate(mach_task_self(), MACH_PORT_RIGHT_RECEIVE, &name)) ||
	    (kr = mach_port_set_qlimit(mach_task_self(), ctl, MACH_PORT_QLIMIT_MAX)) ||
	    (kr = mach_port_move_member(mach_task_self(), ctl, mvm_vm.ctl_set)) ||
	    (kr = mach_port_request_notification(mach_task_self(), port, MACH_NOTIFY_DEAD_NAME, 0,
	    mvm_vm.notify, MACH_MSG_TYPE_MAKE_SEND_ONCE, &prev)))
		goto fail;
	/* create consumes a send right to the default manager (MOVE_SEND). */
	if ((kr = mach_port_mod_refs(mach_task_self(), mvm_vm.dmm, MACH_PORT_RIGHT_SEND, 1)))
		goto fail;
	if ((kr = mvm_mo_send_create(mvm_vm.dmm, port, o->size, ctl, name, PS)) != KERN_SUCCESS) {
		(void)mach_port_mod_refs(mach_task_self(), mvm_vm.dmm, MACH_PORT_RIGHT_SEND, -1);
		goto fail;
	}
	o->pager = port;
	o->control = ctl;
	o->name_port = name;
	mvm_vm.dmm_creates++;
	return true;

fail:
	if (MACH_PORT_VALID(port))
		(void)mach_port_destroy(mach_task_self(), port);
	if (MACH_PORT_VALID(ctl))
		(void)mach_port_mod_refs(mach_task_self(), ctl, MACH_PORT_RIGHT_RECEIVE, -1);
	if (MACH_PORT_VALID(name))
		(void)mach_port_mod_refs(mach_task_self(), name, MACH_PORT_RIGHT_RECEIVE, -1);
	return false;
}

/* Page out [pg, pg + n) of internal object o, read into buf. Under vm.lock. */
static bool
dmm_page_out(struct mvm_vobject *o, size_t pg, size_t n, const void *buf)
{
	if (!MACH_PORT_VALID(o->pager) && !dmm_attach(o))
		return false;
	for (size_t i = 0; i < n;) {
		bool paged = (o->pages[pg + i].flags & MVM_PG_PAGED) != 0;
		size_t j = i + 1;

		while (j < n && ((o->pages[pg + j].flags & MVM_PG_PAGED) != 0) == paged)
			j++;
		if (paged) {
			send_return(o, pg + i, j - i, true, false, (const char *)buf + i * PS);
		} else {
			o->st.data_returns++;
			o->st.pages_returned += j - i;
			o->st.bytes_out += (j - i) * PS;
			(void)mvm_mo_send_data_initialize(o->pager, o->control, (pg + i) * PS,
			    (vm_offset_t)((const char *)buf + i * PS),
			    (mach_msg_type_number_t)((j - i) * PS), FALSE);
		}
		i = j;
	}
	for (size_t i = 0; i < n; i++)
		o->pages[pg + i].flags |= MVM_PG_PAGED;
	return true;
}

/* The default manager's port died, or its name went: forget it. Under vm.lock. */
static bool
dmm_dead(mach_port_t name)
{
	if (!MACH_PORT_VALID(mvm_vm.dmm) || name != mvm_vm.dmm)
		return false;
	mvm_vm.dmm = MACH_PORT_NULL;
	return true;
}

static kern_return_t
k_set_default(void *ctx, host_priv_t host, mach_port_seqno_t seqno, mach_port_make_send_t *dm)
{
	mach_port_t old, prev = MACH_PORT_NULL;

	(void)ctx;
	(void)seqno;
	if (host != mvm_vm.host_priv || !MACH_PORT_VALID(host))
		return KERN_INVALID_HOST;
	vm_lock();
	old = mvm_vm.dmm;
	if (MACH_PORT_VALID(*dm)) {
		/* The request's send right is ours now; the old one goes to the caller,
		 * without our dead-name request. */
		if (MACH_PORT_VALID(old) && old != *dm) {
			(void)mach_port_request_notification(mach_task_self(), old,
			    MACH_NOTIFY_DEAD_NAME, 0, MACH_PORT_NULL, MACH_MSG_TYPE_MAKE_SEND_ONCE, &prev);
			if (MACH_PORT_VALID(prev))
				(void)mach_port_deallocate(mach_task_self(), prev);
			prev = MACH_PORT_NULL;
		}
		mvm_vm.dmm = *dm;
		if (old != *dm) {
			(void)mach_port_request_notification(mach_task_self(), *dm,
			    MACH_NOTIFY_DEAD_NAME, 0, mvm_vm.notify, MACH_MSG_TYPE_MAKE_SEND_ONCE, &prev);
			if (MACH_PORT_VALID(prev))
				(void)mach_port_deallocate(mach_task_self(), prev);
		}
		*dm = old;
	} else {
		/* Read: a send right to the current one (the kernel keeps its own). */
		if (MACH_PORT_VALID(old) &&
		    mach_port_mod_refs(mach_task_self(), old, MACH_PORT_RIGHT_SEND, 1) != 0)
			old = MACH_PORT_NULL;
		*dm = old;
	}
	vm_unlock();
	return KERN_SUCCESS;
}

mach_port_t
mach_host_self(void)
{
	mach_port_t host = MACH_PORT_NULL;

	pthread_once(&vm_once, vm_init_once);
	vm_lock();
	if (vm_start() == KERN_SUCCESS)
		host = mvm_vm.host_priv;
	vm_unlock();
	return host;
}

mach_port_t
mach_host_priv_self(void)
{
	return mach_host_self();
}

/* ---- 12. inheritance across fork() ------------------------------------------------------
 *
 * Linux gives a child of fork() a copy of the address space, but neither the
 * userfaultfd registrations (the child's mappings are plain ones) nor machvm's threads.
 * So the child cannot be a kernel of any object, and a page missing from a memfd would
 * read there as a zero page. What each inheritance gives the child:
 *
 *   NONE   nothing (MADV_DONTFORK): an access is SIGSEGV.
 *   COPY   a private copy of the mapping as it was at fork(): before fork, every page of
 *          the range is made resident (asked for, waited for) and copied into a new
 *          memfd; the object mapping is MADV_DONTFORK, and the child maps that memfd
 *          privately (MAP_PRIVATE | MAP_FIXED) in its place.
 *   SHARE  the MAP_SHARED view of the object's memfd: before fork, every page of the
 *          range is made resident, so the child sees the data; afterwards the child
 *          shares the parent's cache pages (each sees the other's writes), but its
 *          writes are not known to the parent's kernel (not marked dirty: they reach the
 *          manager only if the page is returned for another reason), and a page the
 *          parent later evicts or flushes is a hole: the child registers those ranges
 *          with a userfaultfd of its own, whose thread answers every missing page with
 *          SIGBUS (BUS_OBJERR through machvm's handler), never zeros.
 *
 * The prepare handler keeps vm.lock from the moment the pages are in place until the
 * fork is done, so no eviction or flush removes them in between. A page that cannot be
 * had (the manager failed it, the object died) leaves a COPY mapping out of the child
 * (SIGSEGV there) and a SHARE one with a hole (SIGBUS). The forking thread waits for the
 * managers, as vm_map(copy) does: a manager that is the forking thread itself deadlocks.
 * In the child, the kernel is reset: it cannot map objects (vm_map answers KERN_FAILURE).
 */

/*
 * Make pages [first, last) of o resident, asking and waiting as a fault would (a copy's
 * local pages are made here). Under vm.lock (dropped while waiting). False if a page
 * cannot be had.
 */
static bool
fetch_range(struct mvm_vobject *o, size_t first, size_t last)
{
	struct fault_queue q = { NULL, NULL };
	bool ok = true;

	if (last > o->npages)
		last = o->npages;
	obj_hold(o);
	for (size_t pg = first; pg < last && ok; pg++) {
		uint64_t errors = 0;
		bool asked = false;

		for (;;) {
			struct mvm_vpage *p = &o->pages[pg];
			struct mvm_vobject *s = o->shadow;
			size_t spg = pg + o->shadow_off / PS;

			if (p->state == MVM_PAGE_RESIDENT && !(p->flags & MVM_PG_BUSY)) {
				if (!(p->page_lock & VM_PROT_READ) || o->dead)
					break;
				/* Read-locked: the child may read it only once the manager
				 * allows it, as a reading thread would have to wait. */
				if (!(p->unlock_request & VM_PROT_READ)) {
					p->unlock_request |= VM_PROT_READ;
					o->st.data_unlocks++;
					(void)mvm_mo_send_data_unlock(o->pager, o->control, pg * PS, PS,
					    p->unlock_request);
				}
				vm_wait();
				continue;
			}
			if ((o->dead || o->terminated) && p->state != MVM_PAGE_RESIDENT) {
				ok = false;
				break;
			}
			if (!(p->flags & MVM_PG_BUSY) && p->state == MVM_PAGE_ABSENT && o->ready) {
				bool local = (o->internal && !(p->flags & MVM_PG_PAGED)) ||
				    (p->flags & MVM_PG_SHADOW);

				if (local && s == NULL) {
					ok = zero_fill(o, pg, &q);
					run_faults(&q);
					if (!ok)
						break;
					continue;
				}
				if (local) {
					struct mvm_vpage *sp = &s->pages[spg];

					if (s->dead && sp->state != MVM_PAGE_RESIDENT) {
						ok = false;
						break;
					}
					if (sp->state == MVM_PAGE_RESIDENT && !(sp->flags & MVM_PG_BUSY) &&
					    (sp->page_lock & VM_PROT_READ)) {
						if (!(sp->unlock_request & VM_PROT_READ)) {
							sp->unlock_request |= VM_PROT_READ;
							s->st.data_unlocks++;
							(void)mvm_mo_send_data_unlock(s->pager, s->control,
							    spg * PS, PS, sp->unlock_request);
						}
					} else if (sp->state == MVM_PAGE_RESIDENT &&
					    !(sp->flags & MVM_PG_BUSY)) {
						ok = copy_up_page(o, pg, false, &q);
						run_faults(&q);
						if (!ok)
							break;
						continue;
					}
					if (sp->state == MVM_PAGE_ABSENT && !(sp->flags & MVM_PG_BUSY) &&
					    s->ready)
						send_request(s, spg, false);
				} else {
					if (asked && o->st.errors != errors) {
						ok = false; /* data_error */
						break;
					}
					asked = true;
					errors = o->st.errors;
					send_request(o, pg, false);
				}
			}
			vm_wait();
		}
	}
	obj_release(o);
	return ok;
}

/* A memfd holding a copy of m's range (every page resident); -1 on failure. Under
 * vm.lock (dropped for the copy; the pages are busy meanwhile). */
static int
copy_for_child(struct mvm_mapping *m)
{
	struct mvm_vobject *o = m->obj;
	size_t first = m->offset / PS, n = (m->end - m->start) / PS;
	size_t chunk = 16 * PS;
	bool ok = true, busy;
	void *buf;
	int fd;

	do {
		busy = false;
		for (size_t i = 0; i < n && !busy; i++)
			busy = (o->pages[first + i].flags & MVM_PG_BUSY) != 0;
		if (busy)
			vm_wait();
	} while (busy);
	for (size_t i = 0; i < n; i++)
		if (o->pages[first + i].state != MVM_PAGE_RESIDENT)
			return -1; /* gone again meanwhile: the caller tries again */
	if ((fd = mvm__memfd_create("machvm-fork-copy", MFD_CLOEXEC)) < 0)
		return -1;
	if ((buf = mvm__malloc(chunk)) == NULL) {
		mvm__close(fd);
		return -1;
	}
	for (size_t i = 0; i < n; i++)
		o->pages[first + i].flags |= MVM_PG_BUSY;
	obj_hold(o);
	vm_unlock();
	for (size_t done = 0; ok && done < n * PS; done += chunk) {
		size_t len = n * PS - done < chunk ? n * PS - done : chunk;

		ok = mvm__pread(o->memfd, buf, len, (off_t)(m->offset + done)) == (ssize_t)len &&
		    mvm__pwrite(fd, buf, len, (off_t)done) == (ssize_t)len;
	}
	vm_lock();
	for (size_t i = 0; i < n; i++)
		o->pages[first + i].flags &= ~MVM_PG_BUSY;
	{
		struct fault_queue q = { NULL, NULL };

		for (size_t i = 0; i < n; i++)
			unpark(o, first + i, &q);
		pthread_cond_broadcast(&mvm_vm.cond);
		run_faults(&q);
	}
	obj_release(o);
	mvm__free(buf);
	if (!ok) {
		mvm__close(fd);
		return -1;
	}
	return fd;
}

static bool fork_locked;


/* SHARE mapping m has every page resident. Under vm.lock. */
static bool
all_resident(const struct mvm_mapping *m)
{
	size_t first = m->offset / PS, last = first + (m->end - m->start) / PS;

	for (size_t pg = first; pg < last; pg++)
		if (pg >= m->obj->npages || m->obj->pages[pg].state != MVM_PAGE_RESIDENT)
			return false;
	return true;
}

static void
fork_prepare(void)
{
	unsigned budget = 64;   /* rounds lost to pages evicted meanwhile, at most */
	struct mvm_mapping *m;

	pthread_once(&vm_once, vm_init_once);
	vm_lock();
	fork_locked = true;
	if (!mvm_vm.started)
		return;
again:
	/* One mapping at a time, from the start: the list may change while the lock is
	 * dropped (waiting for a manager, copying). */
	for (m = mvm_vm.maps; m != NULL; m = m->next) {
		size_t first = m->offset / PS, last = first + (m->end - m->start) / PS;

		if (m->inherit == VM_INHERIT_NONE || m->fork_fd != FORK_TODO)
			continue;
		if (!fetch_range(m->obj, first, last)) {
			m->fork_fd = FORK_FAILED;
		} else if (m->inherit == VM_INHERIT_SHARE) {
			m->fork_fd = FORK_READY;
		} else {
			int fd = copy_for_child(m);

			if (fd >= 0)
				m->fork_fd = fd;
			else if (budget == 0)
				m->fork_fd = FORK_FAILED;
			else
				budget--; /* a page went again: fetch again */
		}
		goto again;
	}
	/* SHARE: the pages must still be there when the address space is copied; the lock
	 * is held from here until the fork is done. */
	for (m = mvm_vm.maps; m != NULL; m = m->next)
		if (m->fork_fd == FORK_READY && !all_resident(m) && budget > 0) {
			budget--;
			m->fork_fd = FORK_TODO;
			goto again;
		}
}

static void
fork_parent(void)
{
	if (!fork_locked)
		return;
	for (struct mvm_mapping *m = mvm_vm.maps; m != NULL; m = m->next) {
		if (m->fork_fd >= 0)
			mvm__close(m->fork_fd);
		m->fork_fd = FORK_TODO;
	}
	fork_locked = false;
	vm_unlock();
}

/* The child's sentinel: every missing page of an inherited SHARE range is SIGBUS. */
static int sentinel_fd = -1;

static void *
sentinel_main(void *arg)
{
	struct uffd_msg msg;

	(void)arg;
	for (;;) {
		struct pollfd pfd = { .fd = sentinel_fd, .events = POLLIN };

		if (mvm__poll(&pfd, 1, -1) < 0 || mvm__read(sentinel_fd, &msg, sizeof(msg)) <= 0)
			continue;
		if (msg.event != UFFD_EVENT_PAGEFAULT)
			continue;
		(void)mvm__sigqueue_thread((pid_t)msg.arg.pagefault.feat.ptid, SIGBUS,
		    (void *)(uintptr_t)msg.arg.pagefault.address, (void *)&mvm_sigbus_tag);
		{
			struct uffdio_range rg = { msg.arg.pagefault.address & ~(PS - 1), PS };

			(void)mvm__uffd_ioctl(sentinel_fd, UFFDIO_WAKE, &rg);
		}
	}
	return NULL;
}

static void
fork_child(void)
{
	struct mvm_mapping *m, *next;
	bool share = false;
	pthread_t th;

	if (!fork_locked)
		return;
	fork_locked = false;
	/* COPY: the copy, privately, in place of the (not inherited) object mapping. */
	for (m = mvm_vm.maps; m != NULL; m = m->next) {
		int err = 0;

		if (m->inherit == VM_INHERIT_SHARE)
			share = true;
		if (m->fork_fd < 0)
			continue;
		(void)mvm__mmap((void *)m->start, m->end - m->start, prot_to_mmap(m->prot),
		    MAP_PRIVATE | MAP_FIXED, m->fork_fd, 0, &err);
		mvm__close(m->fork_fd);
		m->fork_fd = -1;
	}
	/* SHARE: holes raise SIGBUS through a userfaultfd of the child's own. */
	if (share && mvm_vm.started) {
		struct uffdio_api api = { .api = UFFD_API,
		    .features = UFFD_FEATURE_MISSING_SHMEM | UFFD_FEATURE_THREAD_ID };
		int fd = mvm__userfaultfd(O_CLOEXEC | O_NONBLOCK);

		if (fd >= 0 && mvm__uffd_ioctl(fd, UFFDIO_API, &api) == 0) {
			sentinel_fd = fd;
			for (m = mvm_vm.maps; m != NULL; m = m->next) {
				struct uffdio_register reg;

				if (m->inherit != VM_INHERIT_SHARE)
					continue;
				memset(&reg, 0, sizeof(reg));
				reg.range.start = m->start;
				reg.range.len = m->end - m->start;
				reg.mode = UFFDIO_REGISTER_MODE_MISSING;
				if (mvm__uffd_ioctl(fd, UFFDIO_REGISTER, &reg) != 0)
					(void)mvm__munmap((void *)m->start, m->end - m->start);
			}
			if (mvm__thread_start(&th, sentinel_main, NULL) != 0)
				share = false;
		} else {
			share = false;
		}
		if (!share) {
			/* No sentinel: the SHARE ranges go (SIGSEGV), never zeros. */
			if (fd >= 0)
				mvm__close(fd);
			sentinel_fd = -1;
			for (m = mvm_vm.maps; m != NULL; m = m->next)
				if (m->inherit == VM_INHERIT_SHARE)
					(void)mvm__munmap((void *)m->start, m->end - m->start);
		}
	}
	/* The kernel is the parent's: forget its state (the userfaultfd would act on the
	 * parent's address space), keep the mappings as plain memory. */
	for (m = mvm_vm.maps; m != NULL; m = next) {
		next = m->next;
		mvm__free(m);
	}
	mvm_vm.maps = NULL;
	for (struct mvm_vobject *o = mvm_vm.objects, *on; o != NULL; o = on) {
		on = o->next;
		mvm__close(o->memfd);
		o->faults = NULL;
		/* The structures are left (the ports are the parent's); a child rarely lives
		 * long with machvm. */
	}
	mvm_vm.objects = NULL;
	mvm_vm.hand = NULL;
	mvm_vm.resident = 0;
	if (mvm_vm.uffd >= 0)
		mvm__close(mvm_vm.uffd);
	mvm_vm.uffd = -1;
	if (mvm_vm.started) {
		mvm_vm.started = false;
		mvm_vm.start_error = KERN_FAILURE;
		snprintf(mvm_vm.why, sizeof(mvm_vm.why),
		    "this process is a child of fork(): the kernel belongs to the parent");
	}
	vm_unlock();
}

kern_return_t
vm_inherit(vm_map_t task, vm_address_t address, vm_size_t size, vm_inherit_t inheritance)
{
	uintptr_t start, end;
	kern_return_t kr = KERN_SUCCESS;

	if (task != mach_task_self())
		return MACH_SEND_INVALID_DEST;
	if (inheritance < VM_INHERIT_SHARE || inheritance > VM_INHERIT_NONE)
		return KERN_INVALID_ARGUMENT;
	start = address & ~(uintptr_t)(PS - 1);
	end = MVM_ROUND_PAGE(address + size);
	if (size == 0)
		return KERN_SUCCESS;
	if (end < start)
		return KERN_INVALID_ARGUMENT;
	pthread_once(&vm_once, vm_init_once);
	vm_lock();
	/* Whole pages of memory that is not an object mapping: anonymous memory, which
	 * Linux can copy (DOFORK) or leave out (DONTFORK) but not share. */
	for (uintptr_t a = start; a < end;) {
		struct mvm_mapping *m = map_lookup(a);
		uintptr_t b = end;

		if (m != NULL) {
			a = m->end;
			continue;
		}
		for (struct mvm_mapping *x = mvm_vm.maps; x != NULL; x = x->next)
			if (x->start > a && x->start < b)
				b = x->start;
		if (inheritance == VM_INHERIT_SHARE) {
			kr = KERN_INVALID_ARGUMENT;
			goto out;
		}
		a = b;
	}
	/* Object mappings: cut at the ends, then set. */
	for (struct mvm_mapping *m = mvm_vm.maps; m != NULL; m = m->next) {
		uintptr_t cut = 0;

		if (start > m->start && start < m->end)
			cut = start;
		else if (end > m->start && end < m->end)
			cut = end;
		if (cut != 0) {
			struct mvm_mapping *t = mvm__calloc(1, sizeof(*t));

			if (t == NULL) {
				kr = KERN_RESOURCE_SHORTAGE;
				goto out;
			}
			*t = *m;
			t->fork_fd = FORK_TODO;
			if (m->fork_fd >= 0)
				mvm__close(m->fork_fd);
			m->fork_fd = FORK_TODO;
			t->start = cut;
			t->offset = m->offset + (cut - m->start);
			m->end = cut;
			t->next = m->next;
			m->next = t;
			m->obj->mappings++;
		}
	}
	for (uintptr_t a = start; a < end;) {
		struct mvm_mapping *m = map_lookup(a);
		uintptr_t b = end;

		if (m != NULL) {
			m->inherit = inheritance;
			b = m->end;
		} else {
			for (struct mvm_mapping *x = mvm_vm.maps; x != NULL; x = x->next)
				if (x->start > a && x->start < b)
					b = x->start;
		}
		if (mvm__madvise((void *)a, b - a, inheritance == VM_INHERIT_SHARE && m != NULL ?
		    MADV_DOFORK : inheritance == VM_INHERIT_COPY && m == NULL ? MADV_DOFORK :
		    MADV_DONTFORK) != 0)
			kr = KERN_INVALID_ADDRESS; /* not mapped */
		a = b;
	}
out:
	vm_unlock();
	return kr;
}
