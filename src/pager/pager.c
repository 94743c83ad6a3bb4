/*
 * src/pager/pager.c: the pager framework; see <machvm/pager.h>.
 *
 * Contents: 1. structures  2. the framework (registry, receiver, workers)  3. pages and
 *           kernels  4. incoming messages (ordered bookkeeping)  5. I/O tasks
 *           6. range helpers  7. creation and shutdown
 *
 * Locking order:
 *   pager.lock     per pager: kernels, pages, lock records (rank MVM_LOCKRANK_PAGER)
 *     fw.lock      the registry and the task queue (rank MVM_LOCKRANK_PAGER_FW)
 *       ipc        (sends happen with no pager lock held)
 * No lock is held while an op runs or while a message is sent. The receiver thread does
 * the bookkeeping of each message in sequence-number order (it is the only thread
 * dequeuing the pagers' ports); the I/O is queued to the workers.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <mach/mach.h>
#include <mach/notify.h>
#include <machvm/memory_object.h>
#include <machvm/pager.h>
#include "ipc/ipc.h"
#include "lib/lock.h"
#include "sys/sys.h"

#define PS ((vm_size_t)mvm__page_size())
#define NWORKERS 4

/* ---- 1. structures ------------------------------------------------------------------- */

#define PM_PAGINGOUT    0x01  /* a write of the page is under way */
#define PM_ERROR        0x02  /* the last write failed: data kept in `kept` */
#define PM_REFUSE_WRITE 0x04  /* unlock refused: the next write request gets data_error */
#define PM_REFUSE_READ  0x08  /* a read unlock refused: the next request gets data_error */

struct pg_page {
	uint8_t flags;                    /* (p) PM_* */
	kern_return_t err;                /* (p) last write error */
	void *kept;                       /* (p) data of a failed write, one page */
};

struct pg_kernel {
	struct pg_kernel *next;           /* (p) */
	mach_port_t ctl, name;            /* (p) */
	uint8_t *incore;                  /* (p) per page: the kernel may hold it */
	size_t n;                         /* (p) */
	bool incore_all;                  /* (p) incore is incomplete: it may hold any page */
	bool dnrequest;                   /* (p) a dead-name request for ctl is registered */
};

/* A request deferred until the writes of its pages finish. */
struct pg_pagein {
	struct pg_pagein *next;           /* (p) */
	mach_port_t ctl;
	vm_offset_t off;
	vm_size_t len;
	vm_prot_t access;
};

/* An outstanding lock_request sent to the kernels by a helper. */
struct pg_lockrec {
	struct pg_lockrec *next;          /* (p) */
	vm_offset_t off;
	vm_size_t len;
	mach_port_t *ctls;                /* (p) kernels that still owe lock_completed */
	unsigned pending;                 /* (p) entries of ctls in use */
	unsigned pending_writes;          /* (p) writes caused and not finished */
	kern_return_t err;                /* (p) first write error */
	bool waited;                      /* (p) a thread waits and frees it */
};

struct pg_attrrec {
	struct pg_attrrec *next;          /* (p) */
	boolean_t may_cache;
	memory_object_copy_strategy_t strategy;
	unsigned pending;                 /* (p) kernels that owe change_completed */
	bool waited;
};

struct mvm_pager {
	struct mvm_pager *next;           /* (f) registry */
	const struct mvm_pager_ops *ops;  /* (c) */
	void *upi;                        /* (c) */
	struct mvm_pager_attr attr;       /* (p) */
	mach_port_t port;                 /* (c) receive right + a send right */
	mach_port_t notify;               /* (c) receive right: dead-name notifications */
	struct mvm_lock lock;
	pthread_cond_t cond;              /* a lock record, attribute record or task finished */
	struct pg_kernel *kernels;        /* (p) */
	struct pg_page *pages;            /* (p) */
	size_t npages;                    /* (p) */
	struct pg_pagein *pageins;        /* (p) */
	struct pg_lockrec *locks;         /* (p) */
	struct pg_attrrec *attrs;         /* (p) */
	unsigned tasks;                   /* (p) I/O tasks queued or running */
	struct pg_task *writes;           /* (p) write tasks queued or running, oldest first */
	bool shutting_down;               /* (p) */
	bool no_clear;                    /* (c) creation failed: the caller clears upi */
	unsigned users;                   /* (f) the receiver is handling a message of it */
	struct mvm_pager_stats st;        /* (p) */
};

enum task_kind { T_READ, T_WRITE, T_UNLOCK };

struct pg_task {
	struct pg_task *next;
	enum task_kind kind;
	struct mvm_pager *p;
	mach_port_t ctl;
	vm_offset_t off;
	vm_size_t len;
	vm_prot_t access;
	vm_offset_t data;                 /* T_WRITE: the returned data (owned) */
	struct pg_task *wnext;            /* (p) T_WRITE: the pager's writes list */
};

static struct {
	struct mvm_lock lock;
	pthread_cond_t cond;              /* a task was queued (workers wait) */
	pthread_cond_t idle;              /* a pager's users fell to 0 (shutdown waits) */
	bool started;
	mach_port_t set;                  /* every pager's object port */
	struct mvm_pager *pagers;         /* (f) */
	struct pg_task *head, *tail;      /* (f) task queue */
	pthread_t receiver, workers[NWORKERS];
} fw;

static pthread_once_t fw_once = PTHREAD_ONCE_INIT;
static __thread bool in_framework;   /* the calling thread is a receiver or a worker */

/* ---- 2. the framework ---------------------------------------------------------------- */

static void *receiver_main(void *arg);
static void *worker_main(void *arg);
static const struct mvm_direct fw_direct;

static void
fw_init(void)
{
	mvm_lock_init(&fw.lock, MVM_LOCKRANK_PAGER_FW, "pager_fw");
	pthread_cond_init(&fw.cond, NULL);
	pthread_cond_init(&fw.idle, NULL);
}

/* Start the framework's threads once. */
static kern_return_t
fw_start(void)
{
	kern_return_t kr = KERN_SUCCESS;

	pthread_once(&fw_once, fw_init);
	mvm_lock_acquire(&fw.lock);
	if (!fw.started) {
		if ((kr = mach_port_allocate(mach_task_self(), MACH_PORT_RIGHT_PORT_SET, &fw.set)) ==
		    KERN_SUCCESS && (kr = mvm__ipc_set_direct(fw.set, &fw_direct)) == KERN_SUCCESS) {
			bool ok = mvm__thread_start(&fw.receiver, receiver_main, NULL) == 0;

			for (int i = 0; ok && i < NWORKERS; i++)
				ok = mvm__thread_start(&fw.workers[i], worker_main, NULL) == 0;
			if (ok) {
				fw.started = true;
				mvm__ipc_reserve(1, 0, 1); /* the framework's port set */
			}
			else
				kr = KERN_RESOURCE_SHORTAGE;
		}
	}
	mvm_lock_release(&fw.lock);
	return kr;
}

static struct mvm_pager *
fw_lookup(mach_port_t port)
{
	struct mvm_pager *p;

	mvm_lock_acquire(&fw.lock);
	for (p = fw.pagers; p != NULL && p->port != port && p->notify != port; p = p->next)
		;
	if (p != NULL)
		p->users++; /* shutdown waits until the message is handled */
	mvm_lock_release(&fw.lock);
	return p;
}

static void
fw_unuse(struct mvm_pager *p)
{
	mvm_lock_acquire(&fw.lock);
	if (--p->users == 0)
		pthread_cond_broadcast(&fw.idle);
	mvm_lock_release(&fw.lock);
}

/* Queue a task; the pager's task count was raised by the caller under pager.lock. */
static void
task_queue(struct pg_task *t)
{
	mvm_lock_acquire(&fw.lock);
	t->next = NULL;
	if (fw.tail != NULL)
		fw.tail->next = t;
	else
		fw.head = t;
	fw.tail = t;
	mvm_lock_release(&fw.lock);
	/* After the unlock: a worker woken under it would only sleep again on fw.lock. */
	pthread_cond_signal(&fw.cond);
}

static void run_task(struct pg_task *t);
static void do_write(struct pg_task *t);
static void task_done(struct mvm_pager *p);

static void *
worker_main(void *arg)
{
	(void)arg;
	in_framework = true;
	for (;;) {
		struct pg_task *t;

		mvm_lock_acquire(&fw.lock);
		while (fw.head == NULL)
			pthread_cond_wait(&fw.cond, &fw.lock.mtx);
		t = fw.head;
		fw.head = t->next;
		if (fw.head == NULL)
			fw.tail = NULL;
		mvm_lock_release(&fw.lock);
		run_task(t);
	}
	return NULL;
}

/* ---- 3. pages and kernels -------------------------------------------------------------- */

static void drop_sends(mach_port_t name);

/* Make the page map cover page index n - 1. Under pager.lock. */
static bool
pages_grow(struct mvm_pager *p, size_t n)
{
	struct pg_page *np;

	if (n <= p->npages)
		return true;
	if (n > ((size_t)1 << 32))
		return false;
	if ((np = mvm__realloc(p->pages, n * sizeof(*np))) == NULL)
		return false;
	memset(&np[p->npages], 0, (n - p->npages) * sizeof(*np));
	p->pages = np;
	p->npages = n;
	return true;
}

static struct pg_kernel *
kernel_of(struct mvm_pager *p, mach_port_t ctl)
{
	for (struct pg_kernel *k = p->kernels; k != NULL; k = k->next)
		if (k->ctl == ctl)
			return k;
	return NULL;
}

static void
kernel_set_incore(struct pg_kernel *k, size_t first, size_t n, uint8_t v)
{
	if (first + n > k->n) {
		uint8_t *ni = mvm__realloc(k->incore, first + n);

		if (ni == NULL) {
			/* No memory to track it: from now on the kernel may hold anything. */
			k->incore_all = true;
			return;
		}
		memset(ni + k->n, 0, first + n - k->n);
		k->incore = ni;
		k->n = first + n;
	}
	memset(k->incore + first, v, n);
}

/* The number of pages [off, off + len) touches (len > 0; huge lengths saturate). */
static size_t
pages_in(vm_offset_t off, vm_size_t len)
{
	if (len > SIZE_MAX - 2 * PS)
		return SIZE_MAX / PS;
	return (off % PS + len + PS - 1) / PS;
}

/* Whether kernel k may hold a page of [first, first + n). Under pager.lock. */
static bool
kernel_may_hold(const struct pg_kernel *k, size_t first, size_t n)
{
	size_t end = first + n < first || first + n > k->n ? k->n : first + n;

	if (k->incore_all)
		return true;
	for (size_t i = first; i < end; i++)
		if (k->incore[i])
			return true;
	return false;
}

/* A lock record no longer waits for kernel ctl. Under pager.lock. */
static void
lockrec_done(struct mvm_pager *p, struct pg_lockrec *r, mach_port_t ctl)
{
	for (unsigned i = 0; i < r->pending; i++)
		if (r->ctls[i] == ctl) {
			r->ctls[i] = r->ctls[--r->pending];
			break;
		}
	pthread_cond_broadcast(&p->cond);
}

/* ---- 4. incoming messages ------------------------------------------------------------- */

static kern_return_t
h_init(void *ctx, memory_object_t obj, mach_port_seqno_t seqno, memory_object_control_t ctl,
    memory_object_name_t name, vm_size_t page_size)
{
	struct mvm_pager *p = ctx;
	struct pg_kernel *k;
	boolean_t may_cache;
	memory_object_copy_strategy_t strategy;

	(void)obj;
	(void)seqno;
	if (page_size != PS)
		return KERN_INVALID_ARGUMENT; /* the message (and its rights) is destroyed */
	if ((k = mvm__calloc(1, sizeof(*k))) == NULL)
		return KERN_RESOURCE_SHORTAGE;
	/* A kernel that dies without terminate must not be waited for: its control port's
	 * death tells us (sync 1: at once if it is dead already). */
	{
		mach_port_t prev = MACH_PORT_NULL;

		k->dnrequest = mach_port_request_notification(mach_task_self(), ctl,
		    MACH_NOTIFY_DEAD_NAME, 1, p->notify, MACH_MSG_TYPE_MAKE_SEND_ONCE, &prev) ==
		    KERN_SUCCESS;
		if (MACH_PORT_VALID(prev))
			(void)mach_port_deallocate(mach_task_self(), prev);
	}
	mvm_lock_acquire(&p->lock);
	k->ctl = ctl;
	k->name = name;
	k->next = p->kernels;
	p->kernels = k;
	p->st.kernels++;
	p->st.inits++;
	may_cache = p->attr.may_cache;
	strategy = p->attr.copy_strategy;
	mvm_lock_release(&p->lock);
	(void)memory_object_ready(ctl, may_cache, strategy);
	return KERN_SUCCESS;
}

/*
 * Unlink the kernel whose control port is ctl (NULL if unknown): whatever waits for it
 * counts it as having answered. Under pager.lock.
 */
static struct pg_kernel *
kernel_unlink(struct mvm_pager *p, mach_port_t ctl)
{
	struct pg_kernel **kp, *k = NULL;

	for (kp = &p->kernels; *kp != NULL; kp = &(*kp)->next)
		if ((*kp)->ctl == ctl) {
			k = *kp;
			*kp = k->next;
			break;
		}
	if (k == NULL)
		return NULL;
	p->st.kernels--;
	for (struct pg_lockrec *r = p->locks; r != NULL; r = r->next)
		lockrec_done(p, r, ctl);
	for (struct pg_attrrec *a = p->attrs; a != NULL; a = a->next)
		if (a->pending > 0)
			a->pending--;
	pthread_cond_broadcast(&p->cond);
	return k;
}

/* Cancel the dead-name request of a kernel being forgotten (before its rights go, so
 * that no notification about a name the space may reuse arrives later). No lock held. */
static void
kernel_cancel_dnrequest(struct pg_kernel *k)
{
	mach_port_t prev = MACH_PORT_NULL;

	if (!k->dnrequest)
		return;
	(void)mach_port_request_notification(mach_task_self(), k->ctl, MACH_NOTIFY_DEAD_NAME, 0,
	    MACH_PORT_NULL, MACH_MSG_TYPE_MAKE_SEND_ONCE, &prev);
	if (MACH_PORT_VALID(prev))
		(void)mach_port_deallocate(mach_task_self(), prev);
	k->dnrequest = false;
}

static kern_return_t
h_terminate(void *ctx, memory_object_t obj, mach_port_seqno_t seqno, memory_object_control_t ctl,
    memory_object_name_t name)
{
	struct mvm_pager *p = ctx;
	struct pg_kernel *k;

	(void)obj;
	(void)seqno;
	mvm_lock_acquire(&p->lock);
	k = kernel_unlink(p, ctl);
	if (k != NULL)
		p->st.terminates++;
	mvm_lock_release(&p->lock);
	if (k != NULL) {
		kernel_cancel_dnrequest(k);
		mvm__free(k->incore);
		mvm__free(k);
	}
	/* Both receive rights are ours now, with the send rights earlier messages gave us. */
	(void)mach_port_destroy(mach_task_self(), ctl);
	(void)mach_port_destroy(mach_task_self(), name);
	return KERN_SUCCESS;
}

/*
 * A kernel's control port died without terminate (its process died, or its kernel
 * destroyed the object): forget the kernel; requests waiting for it count it as done.
 * name must be a dead name of ours (anyone holding the notify port's send-once right
 * could not forge that: the kernel's send right turned into it).
 */
static void
h_dead_name(struct mvm_pager *p, mach_port_t name)
{
	mach_port_type_t type = 0;
	struct pg_kernel *k = NULL;

	if (mach_port_type(mach_task_self(), name, &type) != KERN_SUCCESS ||
	    !(type & MACH_PORT_TYPE_DEAD_NAME))
		return;
	/* The notification's own reference. */
	(void)mach_port_mod_refs(mach_task_self(), name, MACH_PORT_RIGHT_DEAD_NAME, -1);
	mvm_lock_acquire(&p->lock);
	if ((k = kernel_of(p, name)) != NULL && k->dnrequest) {
		(void)kernel_unlink(p, name);
		p->st.deaths++;
	} else
		k = NULL;
	mvm_lock_release(&p->lock);
	if (k == NULL)
		return;
	/* The request fired; the references init gave us are dead names now. */
	k->dnrequest = false;
	drop_sends(k->ctl);
	if (MACH_PORT_VALID(k->name))
		drop_sends(k->name);
	mvm__free(k->incore);
	mvm__free(k);
}

static kern_return_t
h_data_request(void *ctx, memory_object_t obj, mach_port_seqno_t seqno,
    memory_object_control_t ctl, vm_offset_t off, vm_size_t len, vm_prot_t access)
{
	struct mvm_pager *p = ctx;
	struct pg_kernel *k;
	struct pg_task *t;
	size_t first, n;
	bool wait = false, refuse = false;

	(void)obj;
	(void)seqno;
	if ((off % PS) != 0 || len == 0 || (len % PS) != 0 || off + len < off)
		return KERN_INVALID_ARGUMENT;
	first = off / PS;
	n = len / PS;
	mvm_lock_acquire(&p->lock);
	if ((k = kernel_of(p, ctl)) == NULL || p->shutting_down || !pages_grow(p, first + n)) {
		mvm_lock_release(&p->lock);
		(void)memory_object_data_error(ctl, off, len, KERN_MEMORY_ERROR);
		(void)mach_port_deallocate(mach_task_self(), ctl);
		return KERN_SUCCESS;
	}
	p->st.requests++;
	kernel_set_incore(k, first, n, 1);
	for (size_t i = 0; i < n; i++) {
		struct pg_page *pg = &p->pages[first + i];

		if (pg->flags & PM_PAGINGOUT)
			wait = true;
		if (((pg->flags & PM_REFUSE_WRITE) && (access & VM_PROT_WRITE)) ||
		    (pg->flags & PM_REFUSE_READ)) {
			pg->flags &= ~(PM_REFUSE_WRITE | PM_REFUSE_READ);
			refuse = true;
		}
	}
	if (refuse) {
		/* The unlock of this page was refused: the write's re-request fails. */
		mvm_lock_release(&p->lock);
		(void)memory_object_data_error(ctl, off, len, KERN_PROTECTION_FAILURE);
		(void)mach_port_deallocate(mach_task_self(), ctl);
		return KERN_SUCCESS;
	}
	if (wait) {
		/* A write of one of these pages is under way: read once it is done. */
		struct pg_pagein *w = mvm__malloc(sizeof(*w));

		if (w != NULL) {
			w->ctl = ctl;
			w->off = off;
			w->len = len;
			w->access = access;
			w->next = p->pageins;
			p->pageins = w;
			mvm_lock_release(&p->lock);
			return KERN_SUCCESS; /* the pagein keeps the control right */
		}
	}
	if ((t = mvm__calloc(1, sizeof(*t))) == NULL) {
		mvm_lock_release(&p->lock);
		(void)memory_object_data_error(ctl, off, len, KERN_RESOURCE_SHORTAGE);
		(void)mach_port_deallocate(mach_task_self(), ctl);
		return KERN_SUCCESS;
	}
	p->tasks++;
	mvm_lock_release(&p->lock);
	t->kind = T_READ;
	t->p = p;
	t->ctl = ctl;
	t->off = off;
	t->len = len;
	t->access = access;
	task_queue(t);
	return KERN_SUCCESS;
}

static kern_return_t
h_data_unlock(void *ctx, memory_object_t obj, mach_port_seqno_t seqno,
    memory_object_control_t ctl, vm_offset_t off, vm_size_t len, vm_prot_t access)
{
	struct mvm_pager *p = ctx;
	struct pg_task *t;

	(void)obj;
	(void)seqno;
	if ((off % PS) != 0 || len == 0 || (len % PS) != 0)
		return KERN_INVALID_ARGUMENT;
	if ((t = mvm__calloc(1, sizeof(*t))) == NULL)
		return KERN_RESOURCE_SHORTAGE;
	mvm_lock_acquire(&p->lock);
	p->tasks++;
	p->st.unlocks++;
	mvm_lock_release(&p->lock);
	/* unlock_page may block: never here, in the ordered part. */
	t->kind = T_UNLOCK;
	t->p = p;
	t->ctl = ctl;
	t->off = off;
	t->len = len;
	t->access = access;
	task_queue(t);
	return KERN_SUCCESS;
}

static kern_return_t
h_data_return(void *ctx, memory_object_t obj, mach_port_seqno_t seqno,
    memory_object_control_t ctl, vm_offset_t off, vm_offset_t data, mach_msg_type_number_t count,
    boolean_t dirty, boolean_t kernel_copy)
{
	struct mvm_pager *p = ctx;
	struct pg_kernel *k;
	struct pg_task *t;
	size_t first = off / PS, n = count / PS;

	(void)obj;
	(void)seqno;
	if ((off % PS) != 0 || (count % PS) != 0)
		return KERN_INVALID_ARGUMENT; /* the data is freed with the message */
	mvm_lock_acquire(&p->lock);
	if ((k = kernel_of(p, ctl)) != NULL && !kernel_copy)
		kernel_set_incore(k, first, n, 0);
	if (!dirty || n == 0 || !pages_grow(p, first + n)) {
		bool evict = !dirty && !kernel_copy && p->ops->notify_evict != NULL;

		mvm_lock_release(&p->lock);
		/* A clean precious page: nothing to write. */
		if (evict)
			p->ops->notify_evict(p->upi, off, count);
		mvm__vm_recycle(data, count); /* the kernel's data, received: ours to reuse */
		(void)mach_port_deallocate(mach_task_self(), ctl);
		return KERN_SUCCESS;
	}
	struct pg_task local;
	bool inline_write = false;

	if ((t = mvm__calloc(1, sizeof(*t))) == NULL) {
		/* No memory for a task: write now, in this thread, rather than drop dirty data
		 * (slower: the object's later messages wait for this write). */
		memset(&local, 0, sizeof(local));
		t = &local;
		inline_write = true;
	}
	p->st.returns++;
	for (size_t i = 0; i < n; i++)
		p->pages[first + i].flags |= PM_PAGINGOUT;
	/* Every helper waiting on an overlapping range now waits for this write too. */
	for (struct pg_lockrec *r = p->locks; r != NULL; r = r->next)
		if (off < r->off + (r->len ? r->len : (vm_size_t)-1 - r->off) && r->off < off + count)
			r->pending_writes++;
	p->tasks++;
	t->off = off;
	t->len = count;
	/* In arrival order: a later write of a page must not land before this one. */
	{
		struct pg_task **wp = &p->writes;

		while (*wp != NULL)
			wp = &(*wp)->wnext;
		*wp = t;
	}
	mvm_lock_release(&p->lock);
	t->kind = T_WRITE;
	t->p = p;
	t->ctl = ctl;
	t->data = data;
	if (inline_write) {
		do_write(t);
		task_done(p);
		return KERN_SUCCESS;
	}
	task_queue(t);
	return KERN_SUCCESS;
}

static kern_return_t
h_lock_completed(void *ctx, memory_object_t reply, mach_port_seqno_t seqno,
    memory_object_control_t ctl, vm_offset_t off, vm_size_t len)
{
	struct mvm_pager *p = ctx;

	(void)reply;
	(void)seqno;
	mvm_lock_acquire(&p->lock);
	p->st.lock_completions++;
	for (struct pg_lockrec *r = p->locks; r != NULL; r = r->next) {
		bool owes = false;

		for (unsigned i = 0; i < r->pending; i++)
			owes |= r->ctls[i] == ctl;
		if (owes && r->off == off && r->len == len) {
			lockrec_done(p, r, ctl);
			break;
		}
	}
	mvm_lock_release(&p->lock);
	(void)mach_port_deallocate(mach_task_self(), ctl);
	return KERN_SUCCESS;
}

static kern_return_t
h_change_completed(void *ctx, memory_object_t reply, mach_port_seqno_t seqno, boolean_t may_cache,
    memory_object_copy_strategy_t strategy)
{
	struct mvm_pager *p = ctx;

	(void)reply;
	(void)seqno;
	mvm_lock_acquire(&p->lock);
	for (struct pg_attrrec *a = p->attrs; a != NULL; a = a->next)
		if (a->pending > 0 && a->may_cache == may_cache && a->strategy == strategy) {
			a->pending--;
			break;
		}
	pthread_cond_broadcast(&p->cond);
	mvm_lock_release(&p->lock);
	return KERN_SUCCESS;
}

static kern_return_t
h_supply_completed(void *ctx, memory_object_t reply, mach_port_seqno_t seqno,
    memory_object_control_t ctl, vm_offset_t off, vm_size_t len, kern_return_t result,
    vm_offset_t error_offset)
{
	(void)ctx;
	(void)reply;
	(void)seqno;
	(void)off;
	(void)len;
	(void)result;
	(void)error_offset;
	(void)mach_port_deallocate(mach_task_self(), ctl);
	return KERN_SUCCESS;
}

static const struct mvm_memory_object_ops fw_ops = {
	.version = MVM_MEMORY_OBJECT_OPS_VERSION,
	.init = h_init,
	.terminate = h_terminate,
	.data_request = h_data_request,
	.data_unlock = h_data_unlock,
	.lock_completed = h_lock_completed,
	.supply_completed = h_supply_completed,
	.data_return = h_data_return,
	.change_completed = h_change_completed,
};

static boolean_t
fw_demux(mach_msg_header_t *in, mach_msg_header_t *out)
{
	struct mvm_pager *p = fw_lookup(in->msgh_local_port);
	boolean_t ok;

	if (p == NULL) {
		((mig_reply_header_t *)out)->RetCode = MIG_BAD_ID;
		return FALSE;
	}
	if (in->msgh_local_port == p->notify) {
		/* Only notifications come here (nobody else has a send right); other kinds
		 * (a cancelled request's send-once notification) carry nothing to do. */
		if (in->msgh_id == MACH_NOTIFY_DEAD_NAME &&
		    in->msgh_size >= sizeof(mach_dead_name_notification_t))
			h_dead_name(p, ((mach_dead_name_notification_t *)in)->not_port);
		fw_unuse(p);
		((mig_reply_header_t *)out)->RetCode = MIG_NO_REPLY;
		return TRUE;
	}
	/* Whatever thread serves the message (the receiver, or a sender or the node thread
	 * serving it in place) counts as the framework's while it does: a synchronous
	 * helper called from an op here would wait for messages only this serve lets go. */
	bool was = in_framework;

	in_framework = true;
	ok = mvm_memory_object_server(&fw_ops, p, in, out);
	in_framework = was;
	fw_unuse(p);
	return ok;
}

/*
 * The receiver's work is bookkeeping that never blocks, so the framework's set is
 * kernel-served (mvm__ipc_set_direct): a message that finds the receiver idle is handled
 * by the thread that delivers it, and a node thread relaying a data_request from another
 * process queues the read for a worker itself, without waking the receiver. Relayed
 * data_returns go to the receiver: they may call the pager's notify_evict.
 */
static bool
fw_relay_ok(mach_msg_id_t id)
{
	return id != 2208 /* data_return */ && id != 2251 /* data_initialize */;
}

static const struct mvm_direct fw_direct = {
	fw_demux, MVM_MEMORY_OBJECT_MSG_SIZE_MAX + 64, fw_relay_ok
};

static void *
receiver_main(void *arg)
{
	(void)arg;
	in_framework = true;
	for (;;)
		(void)mach_msg_server(fw_demux, MVM_MEMORY_OBJECT_MSG_SIZE_MAX + 64, fw.set);
	return NULL;
}

/* ---- 5. I/O tasks ----------------------------------------------------------------------- */

static void
task_done(struct mvm_pager *p)
{
	mvm_lock_acquire(&p->lock);
	p->tasks--;
	pthread_cond_broadcast(&p->cond);
	mvm_lock_release(&p->lock);
}

/*
 * The calling worker's read buffer, len bytes, zeroed (as vm_allocate would give it).
 * data_supply copies the data into the message, so the buffer is reused: a fresh
 * vm_allocate per request cost a page fault per page, plus the munmap (bench_pager).
 * Plain mmap, not vm_allocate: it lives as long as the worker, outside the IPC
 * layer's accounting.
 */
static void *
read_buffer(vm_size_t len)
{
	static __thread void *rbuf;
	static __thread size_t rlen;
	int err = 0;

	if (len > rlen) {
		void *nb = mvm__mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
		    -1, 0, &err);

		if (nb == NULL)
			return NULL;
		if (rbuf != NULL)
			(void)mvm__munmap(rbuf, rlen);
		rbuf = nb;
		rlen = len;
	}
	memset(rbuf, 0, len);
	return rbuf;
}

static void
do_read(struct mvm_pager *p, mach_port_t ctl, vm_offset_t off, vm_size_t len, vm_prot_t access)
{
	vm_address_t buf = 0;
	boolean_t unavailable = FALSE, write_lock = FALSE, precious;
	kern_return_t kr;
	size_t first = off / PS, n = len / PS;
	bool kept = false;

	(void)access;
	mvm_lock_acquire(&p->lock);
	precious = p->attr.precious;
	for (size_t i = 0; i < n && first + i < p->npages; i++)
		kept |= p->pages[first + i].kept != NULL;
	mvm_lock_release(&p->lock);
	if ((buf = (vm_address_t)read_buffer(len)) == 0) {
		(void)memory_object_data_error(ctl, off, len, KERN_RESOURCE_SHORTAGE);
		return;
	}
	kr = p->ops->read_pages(p->upi, off, (void *)buf, len, &unavailable, &write_lock);
	if (kr != KERN_SUCCESS && kr != KERN_MEMORY_ERROR && kr != KERN_RESOURCE_SHORTAGE)
		kr = KERN_MEMORY_ERROR; /* outside the op's closed list: treat as an I/O error */
	if (kept) {
		/* Data whose write failed is newer than the store: it wins. */
		if (unavailable) {
			memset((void *)buf, 0, len);
			unavailable = FALSE;
		}
		size_t nkept = 0;

		mvm_lock_acquire(&p->lock);
		for (size_t i = 0; i < n && first + i < p->npages; i++)
			if (p->pages[first + i].kept != NULL) {
				memcpy((char *)buf + i * PS, p->pages[first + i].kept, PS);
				nkept++;
			}
		mvm_lock_release(&p->lock);
		/* A failed read stays a failure unless every page came from kept data. */
		if (nkept == n)
			kr = KERN_SUCCESS;
	}
	mvm_lock_acquire(&p->lock);
	if (kr != KERN_SUCCESS)
		p->st.read_errors++;
	else if (unavailable)
		p->st.unavailable++;
	else
		p->st.pages_read += n;
	mvm_lock_release(&p->lock);
	if (kr != KERN_SUCCESS) {
		(void)memory_object_data_error(ctl, off, len, kr);
	} else if (unavailable) {
		(void)memory_object_data_unavailable(ctl, off, len);
	} else {
		/* The message copies the buffer (no deallocate): it is reused. */
		(void)memory_object_data_supply(ctl, off, buf, (mach_msg_type_number_t)len, FALSE,
		    write_lock ? VM_PROT_WRITE : VM_PROT_NONE, precious, MACH_PORT_NULL);
	}
}

static void
do_write(struct pg_task *t)
{
	struct mvm_pager *p = t->p;
	size_t first = t->off / PS, n = t->len / PS;
	kern_return_t kr = KERN_PROTECTION_FAILURE;
	struct pg_pagein *ready = NULL;

	/*
	 * The kernel may return a page again (sync, then return) before the first write is
	 * done: wait for the earlier writes of these pages, so that the store ends with the
	 * newest data. They are running already (the task queue is FIFO), so this ends.
	 */
	mvm_lock_acquire(&p->lock);
	for (;;) {
		bool earlier = false;

		for (struct pg_task *w = p->writes; w != NULL && w != t; w = w->wnext)
			earlier |= w->off < t->off + t->len && t->off < w->off + w->len;
		if (!earlier)
			break;
		pthread_cond_wait(&p->cond, &p->lock.mtx);
	}
	mvm_lock_release(&p->lock);
	if (p->ops->write_pages != NULL)
		kr = p->ops->write_pages(p->upi, t->off, (void *)t->data, t->len);
	if (kr != KERN_SUCCESS && kr != KERN_MEMORY_ERROR && kr != KERN_RESOURCE_SHORTAGE &&
	    kr != KERN_PROTECTION_FAILURE)
		kr = KERN_MEMORY_ERROR;
	mvm_lock_acquire(&p->lock);
	for (struct pg_task **wp = &p->writes; *wp != NULL; wp = &(*wp)->wnext)
		if (*wp == t) {
			*wp = t->wnext;
			break;
		}
	for (size_t i = 0; i < n; i++) {
		struct pg_page *pg = &p->pages[first + i];
		vm_offset_t o = (first + i) * PS;

		/* Still paging out while a later write of the page is pending. */
		pg->flags &= ~PM_PAGINGOUT;
		for (struct pg_task *w = p->writes; w != NULL; w = w->wnext)
			if (w->off <= o && o < w->off + w->len)
				pg->flags |= PM_PAGINGOUT;
		if (kr == KERN_SUCCESS) {
			pg->flags &= ~PM_ERROR;
			pg->err = KERN_SUCCESS;
			mvm__free(pg->kept);
			pg->kept = NULL;
		} else {
			/* Keep the data: it is served to the next request and never dropped. */
			if (pg->kept == NULL)
				pg->kept = mvm__malloc(PS);
			if (pg->kept != NULL)
				memcpy(pg->kept, (char *)t->data + i * PS, PS);
			pg->flags |= PM_ERROR;
			pg->err = kr;
		}
	}
	if (kr == KERN_SUCCESS)
		p->st.pages_written += n;
	else
		p->st.write_errors++;
	for (struct pg_lockrec *r = p->locks; r != NULL; r = r->next)
		if (t->off < r->off + (r->len ? r->len : (vm_size_t)-1 - r->off) &&
		    r->off < t->off + t->len && r->pending_writes > 0) {
			r->pending_writes--;
			if (kr != KERN_SUCCESS && r->err == KERN_SUCCESS)
				r->err = kr;
		}
	/* Requests that waited for these writes may read now. */
	for (struct pg_pagein **wp = &p->pageins; *wp != NULL;) {
		struct pg_pagein *w = *wp;
		bool still = false;

		for (size_t i = w->off / PS; i < (w->off + w->len) / PS && i < p->npages; i++)
			still |= (p->pages[i].flags & PM_PAGINGOUT) != 0;
		if (still) {
			wp = &w->next;
			continue;
		}
		*wp = w->next;
		w->next = ready;
		ready = w;
	}
	pthread_cond_broadcast(&p->cond);
	mvm_lock_release(&p->lock);
	mvm__vm_recycle(t->data, t->len);
	(void)mach_port_deallocate(mach_task_self(), t->ctl);
	while (ready != NULL) {
		struct pg_pagein *w = ready;

		ready = w->next;
		do_read(p, w->ctl, w->off, w->len, w->access);
		(void)mach_port_deallocate(mach_task_self(), w->ctl);
		mvm__free(w);
	}
}

static void
do_unlock(struct pg_task *t)
{
	struct mvm_pager *p = t->p;
	kern_return_t kr = KERN_SUCCESS;

	if (p->ops->unlock_page != NULL)
		kr = p->ops->unlock_page(p->upi, t->off, t->len);
	if (kr == KERN_SUCCESS) {
		(void)memory_object_lock_request(t->ctl, t->off, t->len, MEMORY_OBJECT_RETURN_NONE,
		    FALSE, VM_PROT_NONE, MACH_PORT_NULL);
	} else {
		/* Refuse as Mach prescribes: flush the page; the write's re-request gets
		 * data_error (asynchronously: never wait here for our own queue). */
		mvm_lock_acquire(&p->lock);
		p->st.unlock_refusals++;
		/* A refused read unlock fails the page's next request of any kind (the kernel
		 * asks again for reading); a refused write unlock, its next write request. */
		if (pages_grow(p, (t->off + t->len) / PS))
			for (size_t i = t->off / PS; i < (t->off + t->len) / PS; i++)
				p->pages[i].flags |= (t->access & VM_PROT_READ) ? PM_REFUSE_READ :
				    PM_REFUSE_WRITE;
		mvm_lock_release(&p->lock);
		(void)memory_object_lock_request(t->ctl, t->off, t->len, MEMORY_OBJECT_RETURN_DIRTY,
		    TRUE, VM_PROT_WRITE, MACH_PORT_NULL);
	}
	(void)mach_port_deallocate(mach_task_self(), t->ctl);
}

static void
run_task(struct pg_task *t)
{
	struct mvm_pager *p = t->p;

	switch (t->kind) {
	case T_READ:
		do_read(p, t->ctl, t->off, t->len, t->access);
		(void)mach_port_deallocate(mach_task_self(), t->ctl);
		break;
	case T_WRITE:
		do_write(t);
		break;
	case T_UNLOCK:
		do_unlock(t);
		break;
	}
	mvm__free(t);
	task_done(p);
}

/* ---- 6. range helpers ------------------------------------------------------------------- */

static kern_return_t
range_of(struct mvm_pager *p, vm_offset_t *off, vm_size_t *len)
{
	vm_size_t size;

	if (*len != 0)
		return KERN_SUCCESS;
	if (p->ops->report_extent == NULL || p->ops->report_extent(p->upi, &size) != KERN_SUCCESS)
		return KERN_INVALID_ARGUMENT;
	if (*off >= size) {
		*len = 0;
		return KERN_SUCCESS;
	}
	*len = size - *off;
	return KERN_SUCCESS;
}

/*
 * Write again the pages of [off, off + len) whose last write failed and that no write is
 * under way for. Their newest data is only in `kept` (a kernel holds them clean, if at
 * all), so without this no sync would ever store it and shutdown would drop it. Called
 * before the lock requests go out, so a data_return they cause is written after this.
 * => no lock held; the caller's lock record is linked: it counts these writes.
 */
static void
retry_kept(struct mvm_pager *p, vm_offset_t off, vm_size_t len)
{
	size_t last = off + len < off ? SIZE_MAX : (off + len + PS - 1) / PS;

	for (size_t i = off / PS;; i++) {
		vm_address_t buf = 0;
		struct pg_task *t = NULL, **wp;
		bool found;

		mvm_lock_acquire(&p->lock);
		while (i < last && i < p->npages &&
		    (p->pages[i].kept == NULL || (p->pages[i].flags & PM_PAGINGOUT)))
			i++;
		found = i < last && i < p->npages;
		mvm_lock_release(&p->lock);
		if (!found || vm_allocate(mach_task_self(), &buf, PS, TRUE) != KERN_SUCCESS)
			return;
		if ((t = mvm__calloc(1, sizeof(*t))) == NULL) {
			(void)vm_deallocate(mach_task_self(), buf, PS);
			return;
		}
		/* Looked at again: a data_return may have come meanwhile (newer: it wins). */
		mvm_lock_acquire(&p->lock);
		if (p->pages[i].kept == NULL || (p->pages[i].flags & PM_PAGINGOUT)) {
			mvm_lock_release(&p->lock);
			(void)vm_deallocate(mach_task_self(), buf, PS);
			mvm__free(t);
			continue;
		}
		memcpy((void *)buf, p->pages[i].kept, PS);
		p->pages[i].flags |= PM_PAGINGOUT;
		for (struct pg_lockrec *r = p->locks; r != NULL; r = r->next)
			if (i * PS < r->off + r->len && r->off < (i + 1) * PS)
				r->pending_writes++;
		p->tasks++;
		t->kind = T_WRITE;
		t->p = p;
		t->ctl = MACH_PORT_NULL;
		t->off = i * PS;
		t->len = PS;
		t->data = buf;
		for (wp = &p->writes; *wp != NULL; wp = &(*wp)->wnext)
			;
		*wp = t;
		mvm_lock_release(&p->lock);
		task_queue(t);
	}
}

/* Which kernels a helper addresses. */
struct pg_target {
	mach_port_t only;                 /* one kernel's control port, or MACH_PORT_NULL: all */
	bool holders;                     /* only kernels that may hold a page of the range */
	size_t first, n;                  /* the range, in pages (with holders) */
};

static const struct pg_target all_kernels = { MACH_PORT_NULL, false, 0, 0 };

/*
 * The control ports of the kernels t addresses, each with a user reference of our own
 * for the send (the caller deallocates them). Under pager.lock. Returns the count, or -1
 * for no memory.
 */
static int
take_ctls(struct mvm_pager *p, const struct pg_target *t, mach_port_t **out)
{
	unsigned n = 0, cap = 0;
	mach_port_t *ctls;

	for (struct pg_kernel *k = p->kernels; k != NULL; k = k->next)
		cap++;
	*out = NULL;
	if (cap == 0)
		return 0;
	if ((ctls = mvm__calloc(cap, sizeof(*ctls))) == NULL)
		return -1;
	for (struct pg_kernel *k = p->kernels; k != NULL; k = k->next) {
		if (t->only != MACH_PORT_NULL && k->ctl != t->only)
			continue;
		if (t->holders && !kernel_may_hold(k, t->first, t->n))
			continue;
		if (mach_port_mod_refs(mach_task_self(), k->ctl, MACH_PORT_RIGHT_SEND, 1) == KERN_SUCCESS)
			ctls[n++] = k->ctl;
	}
	*out = ctls;
	return (int)n;
}

/*
 * Send lock_request to the kernel `only` (MACH_PORT_NULL: every kernel that may hold a
 * page of the range, or with `every`, every kernel) with the object port as reply port (so each kernel's data_returns
 * are queued before its lock_completed), and with wait, wait for every completion and
 * every write they caused. A kernel that terminates or dies meanwhile counts as done.
 */
static kern_return_t
lock_object(struct mvm_pager *p, mach_port_t only, bool every, vm_offset_t off, vm_size_t len,
    memory_object_return_t ret, boolean_t flush, vm_prot_t lock_value, boolean_t wait)
{
	struct pg_lockrec *r;
	struct pg_target tg;
	mach_port_t *ctls;
	unsigned n = 0;
	int got;
	kern_return_t kr;

	if ((kr = range_of(p, &off, &len)) != KERN_SUCCESS)
		return kr;
	if (len == 0)
		return KERN_SUCCESS;
	if (wait && in_framework)
		return KERN_FAILURE; /* would wait for the very thread serving the object */
	/* A page lock is kept for absent pages too (a request on its way in gets it):
	 * every kernel is asked. Returns and flushes only concern the pages a kernel has. */
	tg.only = only;
	tg.holders = !every && lock_value == VM_PROT_NO_CHANGE;
	tg.first = off / PS;
	tg.n = pages_in(off, len);
	if ((r = mvm__calloc(1, sizeof(*r))) == NULL)
		return KERN_RESOURCE_SHORTAGE;
	r->off = off;
	r->len = len;
	r->waited = wait;
	mvm_lock_acquire(&p->lock);
	if (only != MACH_PORT_NULL && kernel_of(p, only) == NULL) {
		mvm_lock_release(&p->lock);
		mvm__free(r);
		return KERN_INVALID_NAME;
	}
	if ((got = take_ctls(p, &tg, &ctls)) < 0 ||
	    (got > 0 && (r->ctls = mvm__calloc((size_t)got, sizeof(*r->ctls))) == NULL)) {
		mvm_lock_release(&p->lock);
		for (int i = 0; i < got; i++)
			(void)mach_port_deallocate(mach_task_self(), ctls[i]);
		mvm__free(ctls);
		mvm__free(r);
		return KERN_RESOURCE_SHORTAGE;
	}
	n = (unsigned)got;
	if (n > 0)
		memcpy(r->ctls, ctls, n * sizeof(*ctls));
	r->pending = wait ? n : 0;
	p->st.lock_requests += n;
	r->next = p->locks;
	p->locks = r;
	mvm_lock_release(&p->lock);
	if (ret != MEMORY_OBJECT_RETURN_NONE)
		retry_kept(p, off, len);
	for (unsigned i = 0; i < n; i++) {
		kern_return_t skr = memory_object_lock_request(ctls[i], off, len, ret, flush,
		    lock_value, wait ? p->port : MACH_PORT_NULL);

		if (skr != KERN_SUCCESS && wait) {
			mvm_lock_acquire(&p->lock);
			lockrec_done(p, r, ctls[i]); /* the kernel is gone: nothing to wait for */
			mvm_lock_release(&p->lock);
		}
		(void)mach_port_deallocate(mach_task_self(), ctls[i]);
	}
	mvm_lock_acquire(&p->lock);
	if (wait)
		while (r->pending > 0 || r->pending_writes > 0)
			pthread_cond_wait(&p->cond, &p->lock.mtx);
	kr = r->err;
	/* Unlink: without wait nobody tracks it (writes still count only while linked). */
	for (struct pg_lockrec **rp = &p->locks; *rp != NULL; rp = &(*rp)->next)
		if (*rp == r) {
			*rp = r->next;
			break;
		}
	mvm_lock_release(&p->lock);
	mvm__free(ctls);
	mvm__free(r->ctls);
	mvm__free(r);
	return kr;
}

kern_return_t
mvm_pager_sync(struct mvm_pager *p, vm_offset_t off, vm_size_t len, boolean_t wait)
{
	if (p == NULL)
		return KERN_INVALID_ARGUMENT;
	return lock_object(p, MACH_PORT_NULL, false, off, len, MEMORY_OBJECT_RETURN_ALL, FALSE,
	    VM_PROT_NO_CHANGE, wait);
}

kern_return_t
mvm_pager_flush(struct mvm_pager *p, vm_offset_t off, vm_size_t len, boolean_t wait)
{
	if (p == NULL)
		return KERN_INVALID_ARGUMENT;
	return lock_object(p, MACH_PORT_NULL, false, off, len, MEMORY_OBJECT_RETURN_NONE, TRUE,
	    VM_PROT_NO_CHANGE, wait);
}

kern_return_t
mvm_pager_return(struct mvm_pager *p, vm_offset_t off, vm_size_t len, boolean_t wait)
{
	if (p == NULL)
		return KERN_INVALID_ARGUMENT;
	return lock_object(p, MACH_PORT_NULL, false, off, len, MEMORY_OBJECT_RETURN_ALL, TRUE,
	    VM_PROT_NO_CHANGE, wait);
}

kern_return_t
mvm_pager_lock(struct mvm_pager *p, vm_offset_t off, vm_size_t len, vm_prot_t lock_value,
    boolean_t wait)
{
	if (p == NULL || ((lock_value & ~VM_PROT_ALL) != 0 && lock_value != VM_PROT_NO_CHANGE))
		return KERN_INVALID_ARGUMENT;
	return lock_object(p, MACH_PORT_NULL, false, off, len, MEMORY_OBJECT_RETURN_NONE, FALSE,
	    lock_value, wait);
}

kern_return_t
mvm_pager_lock_request(struct mvm_pager *p, mach_port_t kernel, vm_offset_t off, vm_size_t len,
    memory_object_return_t should_return, boolean_t should_flush, vm_prot_t lock_value,
    boolean_t wait)
{
	if (p == NULL || should_return < MEMORY_OBJECT_RETURN_NONE ||
	    should_return > MEMORY_OBJECT_RETURN_ALL ||
	    ((lock_value & ~VM_PROT_ALL) != 0 && lock_value != VM_PROT_NO_CHANGE))
		return KERN_INVALID_ARGUMENT;
	if (kernel == MACH_PORT_DEAD)
		return KERN_INVALID_NAME;
	return lock_object(p, kernel, false, off, len, should_return, should_flush, lock_value,
	    wait);
}

kern_return_t
mvm_pager_kernels(struct mvm_pager *p, vm_offset_t off, vm_size_t len, mach_port_t *kernels,
    unsigned max, unsigned *count)
{
	unsigned n = 0;

	if (p == NULL || count == NULL || (kernels == NULL && max > 0))
		return KERN_INVALID_ARGUMENT;
	mvm_lock_acquire(&p->lock);
	for (struct pg_kernel *k = p->kernels; k != NULL; k = k->next) {
		if (len != 0 && !kernel_may_hold(k, off / PS, pages_in(off, len)))
			continue;
		if (n < max)
			kernels[n] = k->ctl;
		n++;
	}
	mvm_lock_release(&p->lock);
	*count = n;
	return KERN_SUCCESS;
}

kern_return_t
mvm_pager_change_attributes(struct mvm_pager *p, boolean_t may_cache,
    memory_object_copy_strategy_t strategy, boolean_t wait)
{
	struct pg_attrrec *a;
	mach_port_t *ctls;
	unsigned n = 0;
	int got;

	if (p == NULL || strategy < MEMORY_OBJECT_COPY_NONE || strategy > MEMORY_OBJECT_COPY_TEMPORARY)
		return KERN_INVALID_ARGUMENT;
	if (wait && in_framework)
		return KERN_FAILURE;
	if ((a = mvm__calloc(1, sizeof(*a))) == NULL)
		return KERN_RESOURCE_SHORTAGE;
	a->may_cache = may_cache;
	a->strategy = strategy;
	mvm_lock_acquire(&p->lock);
	p->attr.may_cache = may_cache;
	p->attr.copy_strategy = strategy;
	if ((got = take_ctls(p, &all_kernels, &ctls)) < 0) {
		mvm_lock_release(&p->lock);
		mvm__free(a);
		return KERN_RESOURCE_SHORTAGE;
	}
	n = (unsigned)got;
	a->pending = wait ? n : 0;
	a->next = p->attrs;
	p->attrs = a;
	mvm_lock_release(&p->lock);
	for (unsigned i = 0; i < n; i++) {
		if (memory_object_change_attributes(ctls[i], may_cache, strategy,
		    wait ? p->port : MACH_PORT_NULL) != KERN_SUCCESS && wait) {
			mvm_lock_acquire(&p->lock);
			if (a->pending > 0)
				a->pending--;
			mvm_lock_release(&p->lock);
		}
		(void)mach_port_deallocate(mach_task_self(), ctls[i]);
	}
	mvm_lock_acquire(&p->lock);
	while (wait && a->pending > 0)
		pthread_cond_wait(&p->cond, &p->lock.mtx);
	for (struct pg_attrrec **ap = &p->attrs; *ap != NULL; ap = &(*ap)->next)
		if (*ap == a) {
			*ap = a->next;
			break;
		}
	mvm_lock_release(&p->lock);
	mvm__free(ctls);
	mvm__free(a);
	return KERN_SUCCESS;
}

kern_return_t
mvm_pager_offer_page(struct mvm_pager *p, vm_offset_t off, const void *data, boolean_t precious,
    boolean_t write_lock)
{
	mach_port_t *ctls;
	unsigned n = 0;
	int got;

	if (p == NULL || data == NULL || (off % PS) != 0)
		return KERN_INVALID_ARGUMENT;
	mvm_lock_acquire(&p->lock);
	if ((got = take_ctls(p, &all_kernels, &ctls)) < 0) {
		mvm_lock_release(&p->lock);
		return KERN_RESOURCE_SHORTAGE;
	}
	n = (unsigned)got;
	for (struct pg_kernel *k = p->kernels; k != NULL; k = k->next)
		kernel_set_incore(k, off / PS, 1, 1);
	mvm_lock_release(&p->lock);
	for (unsigned i = 0; i < n; i++) {
		/* dealloc FALSE: the caller keeps its buffer; a resident page ignores it. */
		(void)memory_object_data_supply(ctls[i], off, (vm_offset_t)data, (mach_msg_type_number_t)PS,
		    FALSE, write_lock ? VM_PROT_WRITE : VM_PROT_NONE, precious, MACH_PORT_NULL);
		(void)mach_port_deallocate(mach_task_self(), ctls[i]);
	}
	mvm__free(ctls);
	return KERN_SUCCESS;
}

kern_return_t
mvm_pager_get_error(struct mvm_pager *p, vm_offset_t off)
{
	kern_return_t kr = KERN_SUCCESS;

	if (p == NULL)
		return KERN_INVALID_ARGUMENT;
	mvm_lock_acquire(&p->lock);
	if (off / PS < p->npages)
		kr = p->pages[off / PS].err;
	mvm_lock_release(&p->lock);
	return kr;
}

kern_return_t
mvm_pager_stats(struct mvm_pager *p, struct mvm_pager_stats *st)
{
	if (p == NULL || st == NULL)
		return KERN_INVALID_ARGUMENT;
	mvm_lock_acquire(&p->lock);
	*st = p->st;
	mvm_lock_release(&p->lock);
	return KERN_SUCCESS;
}

mach_port_t
mvm_pager_port(struct mvm_pager *p)
{
	return p != NULL ? p->port : MACH_PORT_NULL;
}

/* ---- 7. creation and shutdown ---------------------------------------------------------- */

kern_return_t
mvm_pager_create(const struct mvm_pager_ops *ops, void *upi, const struct mvm_pager_attr *attr,
    struct mvm_pager **pagerp, mach_port_t *portp)
{
	struct mvm_pager *p;
	kern_return_t kr;

	if (ops == NULL || ops->version < 1 || ops->read_pages == NULL || pagerp == NULL)
		return KERN_INVALID_ARGUMENT;
	if (attr != NULL && (attr->copy_strategy < MEMORY_OBJECT_COPY_NONE ||
	    attr->copy_strategy > MEMORY_OBJECT_COPY_TEMPORARY))
		return KERN_INVALID_ARGUMENT;
	if ((kr = fw_start()) != KERN_SUCCESS)
		return kr;
	if ((p = mvm__calloc(1, sizeof(*p))) == NULL)
		return KERN_RESOURCE_SHORTAGE;
	p->ops = ops;
	p->upi = upi;
	if (attr != NULL)
		p->attr = *attr;
	else
		p->attr.copy_strategy = MEMORY_OBJECT_COPY_DELAY;
	mvm_lock_init(&p->lock, MVM_LOCKRANK_PAGER, "pager");
	pthread_cond_init(&p->cond, NULL);
	if ((kr = mach_port_allocate(mach_task_self(), MACH_PORT_RIGHT_RECEIVE, &p->port)) ||
	    (kr = mach_port_insert_right(mach_task_self(), p->port, p->port, MACH_MSG_TYPE_MAKE_SEND))) {
		if (MACH_PORT_VALID(p->port))
			(void)mach_port_destroy(mach_task_self(), p->port);
		mvm__free(p);
		return kr;
	}
	if ((kr = mach_port_allocate(mach_task_self(), MACH_PORT_RIGHT_RECEIVE, &p->notify))) {
		(void)mach_port_destroy(mach_task_self(), p->port);
		mvm__free(p);
		return kr;
	}
	/* Kernels send without limit; let their messages queue. */
	(void)mach_port_set_qlimit(mach_task_self(), p->port, MACH_PORT_QLIMIT_MAX);
	(void)mach_port_set_qlimit(mach_task_self(), p->notify, MACH_PORT_QLIMIT_MAX);
	mvm_lock_acquire(&fw.lock);
	p->next = fw.pagers;
	fw.pagers = p;
	mvm_lock_release(&fw.lock);
	if ((kr = mach_port_move_member(mach_task_self(), p->port, fw.set)) != KERN_SUCCESS ||
	    (kr = mach_port_move_member(mach_task_self(), p->notify, fw.set)) != KERN_SUCCESS) {
		p->no_clear = true; /* the caller still owns upi and clears it */
		(void)mvm_pager_shutdown(p);
		return kr;
	}
	*pagerp = p;
	if (portp != NULL)
		*portp = p->port;
	return KERN_SUCCESS;
}

/*
 * Drop every send (or dead-name) reference of name. The port may die between the count
 * and the drop (a kernel in this process destroying its control or name port as its
 * manager goes): the send references are then dead-name references, so count again.
 */
static void
drop_sends(mach_port_t name)
{
	for (int tries = 0; tries < 8; tries++) {
		mach_port_urefs_t n = 0;

		if (mach_port_get_refs(mach_task_self(), name, MACH_PORT_RIGHT_SEND, &n) ==
		    KERN_SUCCESS && n > 0) {
			if (mach_port_mod_refs(mach_task_self(), name, MACH_PORT_RIGHT_SEND,
			    -(mach_port_delta_t)n) == KERN_SUCCESS)
				return;
			continue; /* it died meanwhile */
		}
		if (mach_port_get_refs(mach_task_self(), name, MACH_PORT_RIGHT_DEAD_NAME, &n) ==
		    KERN_SUCCESS && n > 0) {
			if (mach_port_mod_refs(mach_task_self(), name, MACH_PORT_RIGHT_DEAD_NAME,
			    -(mach_port_delta_t)n) == KERN_SUCCESS)
				return;
			continue;
		}
		return;
	}
}

kern_return_t
mvm_pager_shutdown(struct mvm_pager *p)
{
	kern_return_t kr = KERN_SUCCESS;

	if (p == NULL)
		return KERN_INVALID_ARGUMENT;
	if (in_framework)
		return KERN_FAILURE;
	/* Every dirty page comes back and is written before the port dies: the whole object,
	 * not only its extent (a kernel may hold dirty pages past the end of a file, and
	 * data whose write failed may lie there too). Kernels clip the range to their pages. */
	kr = lock_object(p, MACH_PORT_NULL, true, 0, (vm_size_t)1 << 46, MEMORY_OBJECT_RETURN_ALL, TRUE,
	    VM_PROT_NO_CHANGE, TRUE);
	mvm_lock_acquire(&p->lock);
	p->shutting_down = true;
	while (p->tasks > 0)
		pthread_cond_wait(&p->cond, &p->lock.mtx);
	mvm_lock_release(&p->lock);
	mvm_lock_acquire(&fw.lock);
	for (struct mvm_pager **pp = &fw.pagers; *pp != NULL; pp = &(*pp)->next)
		if (*pp == p) {
			*pp = p->next;
			break;
		}
	/* The receiver may be handling a message of this pager: let it finish. */
	while (p->users > 0)
		pthread_cond_wait(&fw.idle, &fw.lock.mtx);
	mvm_lock_release(&fw.lock);
	/* The kernels see the object port die: later faults fail, nothing hangs. */
	(void)mach_port_destroy(mach_task_self(), p->port);
	while (p->kernels != NULL) {
		struct pg_kernel *k = p->kernels;

		p->kernels = k->next;
		kernel_cancel_dnrequest(k);
		/* Only our send rights: in this process the same names may also hold the
		 * kernel's receive rights. */
		drop_sends(k->ctl);
		drop_sends(k->name);
		mvm__free(k->incore);
		mvm__free(k);
	}
	while (p->pageins != NULL) {
		struct pg_pagein *w = p->pageins;

		p->pageins = w->next;
		(void)mach_port_deallocate(mach_task_self(), w->ctl);
		mvm__free(w);
	}
	(void)mach_port_destroy(mach_task_self(), p->notify);
	for (size_t i = 0; i < p->npages; i++)
		mvm__free(p->pages[i].kept);
	mvm__free(p->pages);
	if (p->ops->clear_user_data != NULL && !p->no_clear)
		p->ops->clear_user_data(p->upi);
	pthread_cond_destroy(&p->cond);
	mvm_lock_destroy(&p->lock);
	mvm__free(p);
	return kr;
}
