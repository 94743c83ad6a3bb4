/*
 * pagers/shm_pager.c: the coherent shared memory pager; see <machvm/pagers.h>.
 *
 * Contents: 1. structures  2. kernels  3. pages: requests and transitions
 *           4. incoming messages  5. the private port  6. public calls
 *
 * The model. Every page has a set of kernels that may hold a copy (holders) and at most
 * one of them that may write it (writer); a holder that is not the writer holds the
 * page write-locked. The manager's copy of a page is current whenever there is no
 * writer; a writer's dirty data comes back with data_return, always before the
 * lock_completed of the request that asked for it (one kernel's messages arrive in
 * order). The holders set is a superset of the truth: a kernel may drop a clean page
 * silently; asking it to flush a page it no longer has costs one message and is answered
 * at once (absent pages count as done).
 *
 * Requests for a page are served one at a time in arrival order. A request that needs
 * other kernels to give the page up (a write: flush every other holder with
 * RETURN_DIRTY; a read while another kernel writes: that kernel returns its dirty data
 * and keeps a write-locked copy) starts a transition: one lock_request per kernel,
 * replies to the object port, and the request is served when the last of them has
 * answered with lock_completed, or died. Later requests for the page wait in its queue.
 *
 * Threads and locks. One thread (the server) owns all page and kernel state: it receives
 * on a port set holding the object port and a private port (dead-name notifications of
 * the kernels' control ports, and the read requests of mvm_shm_pager_read, which only
 * this library can send). It never waits for a kernel. s->lock (rank
 * MVM_LOCKRANK_PAGER) guards the statistics and the read calls' completion; it is never
 * held while a message is sent.
 */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <mach/mach.h>
#include <mach/notify.h>
#include <machvm/memory_object.h>
#include <machvm/pagers.h>
#include "lib/lock.h"
#include "sys/sys.h"

#define PS ((vm_size_t)mvm__page_size())
#define SHM_MSG_READ 4190            /* private port: a read request of mvm_shm_pager_read */
#define NOBODY (-1)

/* ---- 1. structures --------------------------------------------------------------------- */

enum req_kind {
	RQ_READ,      /* data_request for reading */
	RQ_WRITE,     /* data_request for writing */
	RQ_UNLOCK,    /* data_unlock: a holder wants to write */
	RQ_PEEK,      /* mvm_shm_pager_read: the current contents */
};

struct shm_peek {
	struct shm_peek *next;            /* (l) reads under way */
	vm_offset_t off;
	vm_size_t len;
	void *buf;
	size_t pages_left;                /* (s) */
	bool done;                        /* (l) */
	kern_return_t kr;                 /* (l) */
};

struct shm_req {
	struct shm_req *next;
	uint8_t kind;                     /* enum req_kind */
	int8_t k;                         /* the kernel's slot (not RQ_PEEK) */
	uint32_t gen;                     /* the slot's generation when asked */
	bool seen;                        /* page_run looked at it once */
	bool mig;                         /* RQ_READ of a migratory page: served as a write */
	bool mig_upgrade;                 /* RQ_UNLOCK: the page moves like a migratory one */
	struct shm_peek *peek;            /* RQ_PEEK */
};

enum trans { TR_NONE, TR_FLUSH, TR_DOWNGRADE };

/*
 * Migratory pages. A page that moves from kernel to kernel, each reading it and then
 * writing it (data under a lock, a counter), would cost two transitions per move: a
 * downgrade of the writer for the read, then a flush of that reader copy for the
 * write. When an unlock comes from a kernel that shares the page only with its last
 * writer, the page is marked migratory: a later read of it while another kernel writes
 * it takes the page from the writer whole (flush) and supplies it writable, one
 * transition per move. If such a kernel gives the page up without having written it
 * (no dirty data came back), the guess was wrong: the mark goes, and reads downgrade
 * again. Granting write where read was asked never weakens coherence.
 */
#define PG_MIGRATORY  0x01
#define PG_DIRTY_SEEN 0x02                /* mig_k returned dirty data */

struct shm_page {
	uint64_t holders;                 /* (s) kernels that may hold a copy */
	uint64_t asked;                   /* (s) kernels asked by the transition under way */
	uint64_t owed;                    /* (s) of those, the ones that owe lock_completed */
	int8_t writer;                    /* (s) the kernel that may write, or NOBODY */
	int8_t last_writer;               /* (s) the last kernel granted write, or NOBODY */
	int8_t mig_k;                     /* (s) the writer a read made the writer, or NOBODY */
	uint8_t flags;                    /* (s) PG_* */
	uint8_t trans;                    /* (s) enum trans under way */
	struct shm_req *head, *tail;      /* (s) requests waiting, oldest first */
};

struct shm_kernel {
	mach_port_t ctl, name;            /* (s) MACH_PORT_NULL: the slot is free */
	uint32_t gen;                     /* (s) incremented when the slot is freed */
	bool dnrequest;                   /* (s) a dead-name request is registered */
};

struct mvm_shm_pager {
	size_t npages;                    /* (c) */
	vm_size_t size;                   /* (c) */
	uint8_t *data;                    /* (s) the manager's copy */
	struct shm_page *pages;           /* (s) */
	struct shm_kernel kernels[MVM_SHM_MAX_KERNELS]; /* (s) */
	uint64_t gone;                    /* (s) kernels found dead by a failed send */
	struct {
		int k;                    /* NOBODY: empty */
		size_t first, n;
		bool writable;
	} batch;                          /* (s) supplies not sent yet: one run of pages */
	mach_port_t port;                 /* (c) the object port */
	mach_port_t priv;                 /* (c) the private port */
	mach_port_t set;                  /* (c) both */
	pthread_t thread;
	bool thread_started;
	struct mvm_lock lock;
	pthread_cond_t cond;              /* a read call finished */
	struct shm_peek *peeks;           /* (l) */
	bool stopping;                    /* (l) */
	struct mvm_shm_pager_stats st;    /* (l) */
};

#define STAT(s, field, n)                                                                  \
	do {                                                                               \
		mvm_lock_acquire(&(s)->lock);                                              \
		(s)->st.field += (n);                                                      \
		mvm_lock_release(&(s)->lock);                                              \
	} while (0)

static void page_run(struct mvm_shm_pager *s, size_t pg);
static void supply_flush(struct mvm_shm_pager *s);

/* ---- 2. kernels ------------------------------------------------------------------------ */

static int
slot_of(struct mvm_shm_pager *s, mach_port_t ctl)
{
	if (!MACH_PORT_VALID(ctl))
		return NOBODY;
	for (int k = 0; k < MVM_SHM_MAX_KERNELS; k++)
		if (s->kernels[k].ctl == ctl)
			return k;
	return NOBODY;
}

/*
 * Kernel k is gone (terminate, death, a failed send): it holds nothing and owes nothing;
 * its waiting requests are dropped; transitions that waited only for it go on.
 */
static void
kernel_forget(struct mvm_shm_pager *s, int k)
{
	uint64_t bit = 1ull << k;
	struct shm_kernel *ke = &s->kernels[k];

	ke->gen++;
	for (size_t pg = 0; pg < s->npages; pg++) {
		struct shm_page *p = &s->pages[pg];
		bool resume = false;

		p->holders &= ~bit;
		if (p->writer == k)
			p->writer = NOBODY;
		if (p->mig_k == k)
			p->mig_k = NOBODY;
		if (p->last_writer == k)
			p->last_writer = NOBODY;
		if (p->owed & bit) {
			p->owed &= ~bit;
			resume = p->owed == 0;
		}
		if (resume)
			page_run(s, pg); /* drops the dead kernel's requests as it meets them */
	}
}

/* Drop our rights to a kernel's ports; the dead-name request goes first, so that no
 * notification about a name the space may reuse arrives later. */
static void
kernel_release(struct mvm_shm_pager *s, struct shm_kernel *ke, bool destroy)
{
	mach_port_t prev = MACH_PORT_NULL;

	supply_flush(s); /* what we owe it goes before its rights */
	if (ke->dnrequest)
		(void)mach_port_request_notification(mach_task_self(), ke->ctl,
		    MACH_NOTIFY_DEAD_NAME, 0, MACH_PORT_NULL, MACH_MSG_TYPE_MAKE_SEND_ONCE, &prev);
	if (MACH_PORT_VALID(prev))
		(void)mach_port_deallocate(mach_task_self(), prev);
	if (destroy) {
		(void)mach_port_destroy(mach_task_self(), ke->ctl);
		(void)mach_port_destroy(mach_task_self(), ke->name);
	} else {
		(void)mach_port_deallocate(mach_task_self(), ke->ctl);
		if (MACH_PORT_VALID(ke->name))
			(void)mach_port_deallocate(mach_task_self(), ke->name);
	}
	ke->ctl = ke->name = MACH_PORT_NULL;
	ke->dnrequest = false;
}

/* Sends that failed marked their kernel gone; forget those kernels now (not in the middle
 * of a page's transition). */
static void
reap_gone(struct mvm_shm_pager *s)
{
	while (s->gone != 0) {
		int k = __builtin_ctzll(s->gone);

		s->gone &= ~(1ull << k);
		if (s->kernels[k].ctl == MACH_PORT_NULL)
			continue;
		kernel_release(s, &s->kernels[k], false);
		kernel_forget(s, k);
		mvm_lock_acquire(&s->lock);
		s->st.kernels--;
		s->st.deaths++;
		mvm_lock_release(&s->lock);
	}
}

/* ---- 3. pages: requests and transitions ------------------------------------------------ */

static void
enqueue(struct shm_page *p, struct shm_req *r)
{
	r->next = NULL;
	if (p->tail != NULL)
		p->tail->next = r;
	else
		p->head = r;
	p->tail = r;
}

static void
peek_page_done(struct mvm_shm_pager *s, struct shm_peek *pk, size_t pg)
{
	vm_offset_t lo = pg * PS, hi = lo + PS;
	vm_offset_t a = pk->off > lo ? pk->off : lo;
	vm_offset_t b = pk->off + pk->len < hi ? pk->off + pk->len : hi;

	memcpy((char *)pk->buf + (a - pk->off), s->data + a, b - a);
	if (--pk->pages_left == 0) {
		mvm_lock_acquire(&s->lock);
		pk->done = true;
		pk->kr = KERN_SUCCESS;
		pthread_cond_broadcast(&s->cond);
		mvm_lock_release(&s->lock);
	}
}

/*
 * Ask the kernels in set for page pg: flush (RETURN_DIRTY, flush) or downgrade
 * (RETURN_DIRTY, no flush, write-locked). Returns the kernels that will answer.
 */
static uint64_t
ask(struct mvm_shm_pager *s, size_t pg, uint64_t set, enum trans how)
{
	uint64_t asked = 0;

	supply_flush(s); /* every send in the order decided */
	while (set != 0) {
		int k = __builtin_ctzll(set);
		kern_return_t kr;

		set &= ~(1ull << k);
		if (s->gone & (1ull << k))
			continue;
		kr = memory_object_lock_request(s->kernels[k].ctl, pg * PS, PS,
		    MEMORY_OBJECT_RETURN_DIRTY, how == TR_FLUSH, VM_PROT_WRITE, s->port);
		if (kr != KERN_SUCCESS) {
			s->gone |= 1ull << k; /* dead: it counts as having answered */
			continue;
		}
		asked |= 1ull << k;
	}
	mvm_lock_acquire(&s->lock);
	if (how == TR_FLUSH)
		s->st.invalidations += (uint64_t)__builtin_popcountll(asked);
	else
		s->st.downgrades += (uint64_t)__builtin_popcountll(asked);
	mvm_lock_release(&s->lock);
	return asked;
}

/* The writer of p gives up write access: was a migratory guess right? */
static void
writer_ends(struct shm_page *p)
{
	if (p->writer != NOBODY && p->writer == p->mig_k) {
		if (!(p->flags & PG_DIRTY_SEEN))
			p->flags &= (uint8_t)~PG_MIGRATORY; /* it only read: not migratory */
		p->mig_k = NOBODY;
	}
	p->writer = NOBODY;
}

/* The transition of page pg is over: the kernels asked hold what they were left (their
 * dirty data came back before their lock_completed). */
static void
trans_end(struct shm_page *p, uint64_t asked, enum trans how)
{
	if (how == TR_FLUSH) {
		p->holders &= ~asked;
		if (p->writer != NOBODY && (asked & (1ull << p->writer)))
			writer_ends(p);
	} else if (how == TR_DOWNGRADE) {
		writer_ends(p);
	}
}

/*
 * Supplies are sent in runs: consecutive pages for one kernel with one lock value go in
 * one data_supply (a 16-page request: one message, not 16). The run is sent before any
 * other message (so sends keep the order they were decided in) and at the end of every
 * message handled; the manager's data of those pages cannot change meanwhile (only a
 * data_return, another message, changes it).
 */
#define SUPPLY_RUN_MAX 32

static void
supply_flush(struct mvm_shm_pager *s)
{
	int k = s->batch.k;
	kern_return_t kr;

	if (k == NOBODY)
		return;
	s->batch.k = NOBODY;
	kr = memory_object_data_supply(s->kernels[k].ctl, s->batch.first * PS,
	    (vm_offset_t)(s->data + s->batch.first * PS), (mach_msg_type_number_t)(s->batch.n * PS),
	    FALSE, s->batch.writable ? VM_PROT_NONE : VM_PROT_WRITE, FALSE, MACH_PORT_NULL);
	if (kr != KERN_SUCCESS)
		s->gone |= 1ull << k;
}

static void
supply(struct mvm_shm_pager *s, int k, size_t pg, bool writable)
{
	if (s->batch.k == k && s->batch.writable == writable && s->batch.first + s->batch.n == pg &&
	    s->batch.n < SUPPLY_RUN_MAX) {
		s->batch.n++;
		return;
	}
	supply_flush(s);
	s->batch.k = k;
	s->batch.first = pg;
	s->batch.n = 1;
	s->batch.writable = writable;
}

/*
 * Serve the requests of page pg in order until one needs a transition (or the queue is
 * empty). Called by the server thread only.
 */
static void
page_run(struct mvm_shm_pager *s, size_t pg)
{
	struct shm_page *p = &s->pages[pg];
	struct shm_req *r;

	if (p->trans != TR_NONE) {
		if (p->owed != 0)
			return;
		/* Every kernel asked has answered, or died. */
		trans_end(p, p->asked, (enum trans)p->trans);
		p->trans = TR_NONE;
		p->asked = 0;
	}
	while ((r = p->head) != NULL) {
		uint64_t bit = r->kind == RQ_PEEK ? 0 : 1ull << r->k;
		uint64_t need = 0;
		enum trans how = TR_NONE;

		if (r->kind != RQ_PEEK && (s->kernels[r->k].gen != r->gen || (s->gone & bit)))
			goto done; /* its kernel is gone */
		/* Who must give the page up first? (First look: the migratory decisions.) */
		if (!r->seen) {
			uint64_t lw = p->last_writer == NOBODY ? 0 : 1ull << p->last_writer;

			r->seen = true;
			r->mig = r->kind == RQ_READ && (p->flags & PG_MIGRATORY) &&
			    p->writer != NOBODY && (1ull << p->writer) != bit;
			r->mig_upgrade = r->kind == RQ_UNLOCK && lw != 0 && lw != bit &&
			    (p->holders & bit) && (p->holders & ~(bit | lw)) == 0;
		}
		switch (r->kind) {
		case RQ_READ:
		case RQ_PEEK:
			if (r->mig) {
				need = p->holders & ~bit; /* as for a write */
				how = TR_FLUSH;
			} else if (p->writer != NOBODY && (1ull << p->writer) != bit) {
				need = 1ull << p->writer;
				how = TR_DOWNGRADE;
			}
			break;
		case RQ_WRITE:
			need = p->holders & ~bit;
			how = TR_FLUSH;
			break;
		case RQ_UNLOCK:
			if (p->holders & bit) {
				need = p->holders & ~bit;
				how = TR_FLUSH;
			}
			break;
		}
		if (need != 0) {
			uint64_t asked = ask(s, pg, need, how);

			if (asked != 0) {
				p->asked = p->owed = asked;
				p->trans = (uint8_t)how;
				return; /* page_run again when the last one answers */
			}
			trans_end(p, need, how); /* nobody could be asked: they are gone */
		}
		switch (r->kind) {
		case RQ_READ:
			if (p->writer == r->k)
				writer_ends(p); /* it dropped its copy and asks again */
			if (r->mig && (p->holders & ~bit) == 0) {
				/* Migratory: the reader gets the page writable. */
				p->holders = bit;
				p->writer = p->last_writer = p->mig_k = r->k;
				p->flags &= (uint8_t)~PG_DIRTY_SEEN;
				supply(s, r->k, pg, true);
				mvm_lock_acquire(&s->lock);
				s->st.supplies++;
				s->st.grants++;
				s->st.migratory_grants++;
				mvm_lock_release(&s->lock);
				break;
			}
			p->holders |= bit;
			supply(s, r->k, pg, false);
			STAT(s, supplies, 1);
			break;
		case RQ_WRITE:
			p->holders = bit;
			p->writer = p->last_writer = r->k;
			supply(s, r->k, pg, true);
			mvm_lock_acquire(&s->lock);
			s->st.supplies++;
			s->st.grants++;
			mvm_lock_release(&s->lock);
			break;
		case RQ_UNLOCK:
			if (!(p->holders & bit)) {
				/* The kernel lost the page since it asked (flushed for another
				 * writer): its thread faults again and asks with data_request. */
				STAT(s, stale_unlocks, 1);
				break;
			}
			if (r->mig_upgrade)
				p->flags |= PG_MIGRATORY;
			p->holders = bit;
			p->writer = p->last_writer = r->k;
			supply_flush(s);
			if (memory_object_lock_request(s->kernels[r->k].ctl, pg * PS, PS,
			    MEMORY_OBJECT_RETURN_NONE, FALSE, VM_PROT_NONE, MACH_PORT_NULL) !=
			    KERN_SUCCESS)
				s->gone |= bit;
			STAT(s, grants, 1);
			break;
		case RQ_PEEK:
			peek_page_done(s, r->peek, pg);
			break;
		}
done:
		p->head = r->next;
		if (p->head == NULL)
			p->tail = NULL;
		mvm__free(r);
	}
}

/* Queue a request of kernel k (or a peek) for page pg and serve what can be served. */
static kern_return_t
request(struct mvm_shm_pager *s, size_t pg, enum req_kind kind, int k, struct shm_peek *pk)
{
	struct shm_req *r = mvm__calloc(1, sizeof(*r));

	if (r == NULL)
		return KERN_RESOURCE_SHORTAGE;
	r->kind = (uint8_t)kind;
	r->k = (int8_t)k;
	r->gen = k == NOBODY ? 0 : s->kernels[k].gen;
	r->peek = pk;
	enqueue(&s->pages[pg], r);
	page_run(s, pg);
	return KERN_SUCCESS;
}

/* ---- 4. incoming messages -------------------------------------------------------------- */

/* The pages [off, off + len) of a request, or false when they are not all in the object. */
static bool
range_ok(struct mvm_shm_pager *s, vm_offset_t off, vm_size_t len)
{
	return (off % PS) == 0 && len != 0 && (len % PS) == 0 && off + len > off &&
	    off + len <= s->size;
}

static kern_return_t
h_init(void *ctx, memory_object_t obj, mach_port_seqno_t seqno, memory_object_control_t ctl,
    memory_object_name_t name, vm_size_t page_size)
{
	struct mvm_shm_pager *s = ctx;
	struct shm_kernel *ke = NULL;
	mach_port_t prev = MACH_PORT_NULL;

	(void)obj;
	(void)seqno;
	if (page_size != PS)
		return KERN_INVALID_ARGUMENT; /* the message and its rights are destroyed */
	if (slot_of(s, ctl) == NOBODY)
		for (int k = 0; k < MVM_SHM_MAX_KERNELS && ke == NULL; k++)
			if (s->kernels[k].ctl == MACH_PORT_NULL)
				ke = &s->kernels[k];
	if (ke == NULL) {
		/* Full (or a second init on one control port): this kernel cannot join. */
		STAT(s, refused, 1);
		supply_flush(s);
		(void)memory_object_destroy(ctl, KERN_RESOURCE_SHORTAGE);
		(void)mach_port_deallocate(mach_task_self(), ctl);
		if (MACH_PORT_VALID(name))
			(void)mach_port_deallocate(mach_task_self(), name);
		return KERN_SUCCESS;
	}
	ke->ctl = ctl;
	ke->name = name;
	/* A kernel that dies never sends terminate: its control port's death says it
	 * (sync 1: at once if it is dead already). */
	ke->dnrequest = mach_port_request_notification(mach_task_self(), ctl,
	    MACH_NOTIFY_DEAD_NAME, 1, s->priv, MACH_MSG_TYPE_MAKE_SEND_ONCE, &prev) ==
	    KERN_SUCCESS;
	if (MACH_PORT_VALID(prev))
		(void)mach_port_deallocate(mach_task_self(), prev);
	mvm_lock_acquire(&s->lock);
	s->st.inits++;
	s->st.kernels++;
	mvm_lock_release(&s->lock);
	if (memory_object_ready(ctl, FALSE, MEMORY_OBJECT_COPY_DELAY) != KERN_SUCCESS)
		s->gone |= 1ull << (ke - s->kernels);
	return KERN_SUCCESS;
}

static kern_return_t
h_terminate(void *ctx, memory_object_t obj, mach_port_seqno_t seqno, memory_object_control_t ctl,
    memory_object_name_t name)
{
	struct mvm_shm_pager *s = ctx;
	int k = slot_of(s, ctl);

	(void)obj;
	(void)seqno;
	if (k == NOBODY) {
		/* A kernel we refused (or one already found dead): just the rights. */
		(void)mach_port_destroy(mach_task_self(), ctl);
		(void)mach_port_destroy(mach_task_self(), name);
		return KERN_SUCCESS;
	}
	/* Its dirty pages came back before this message. */
	s->gone &= ~(1ull << k);
	kernel_release(s, &s->kernels[k], true);
	if (name != s->kernels[k].name && MACH_PORT_VALID(name))
		(void)mach_port_destroy(mach_task_self(), name);
	kernel_forget(s, k);
	mvm_lock_acquire(&s->lock);
	s->st.kernels--;
	s->st.terminates++;
	mvm_lock_release(&s->lock);
	return KERN_SUCCESS;
}

static kern_return_t
h_request(struct mvm_shm_pager *s, memory_object_control_t ctl, vm_offset_t off, vm_size_t len,
    enum req_kind kind)
{
	int k = slot_of(s, ctl);

	if (k == NOBODY || (s->gone & (1ull << k))) {
		(void)mach_port_deallocate(mach_task_self(), ctl);
		return KERN_SUCCESS; /* not a kernel of ours (any more) */
	}
	if (!range_ok(s, off, len)) {
		/* Outside the object: the faulting threads get SIGBUS. */
		(void)memory_object_data_error(ctl, off, len, KERN_MEMORY_ERROR);
		(void)mach_port_deallocate(mach_task_self(), ctl);
		return KERN_SUCCESS;
	}
	mvm_lock_acquire(&s->lock);
	if (kind == RQ_READ)
		s->st.read_requests += len / PS;
	else if (kind == RQ_WRITE)
		s->st.write_requests += len / PS;
	else
		s->st.unlocks += len / PS;
	mvm_lock_release(&s->lock);
	for (vm_offset_t o = off; o < off + len; o += PS)
		if (request(s, o / PS, kind, k, NULL) != KERN_SUCCESS && kind != RQ_UNLOCK) {
			supply_flush(s);
			(void)memory_object_data_error(ctl, o, PS, KERN_RESOURCE_SHORTAGE);
		}
	(void)mach_port_deallocate(mach_task_self(), ctl); /* this message's send right */
	reap_gone(s);
	return KERN_SUCCESS;
}

static kern_return_t
h_data_request(void *ctx, memory_object_t obj, mach_port_seqno_t seqno,
    memory_object_control_t ctl, vm_offset_t off, vm_size_t len, vm_prot_t access)
{
	(void)obj;
	(void)seqno;
	return h_request(ctx, ctl, off, len, (access & VM_PROT_WRITE) ? RQ_WRITE : RQ_READ);
}

static kern_return_t
h_data_unlock(void *ctx, memory_object_t obj, mach_port_seqno_t seqno,
    memory_object_control_t ctl, vm_offset_t off, vm_size_t len, vm_prot_t access)
{
	(void)obj;
	(void)seqno;
	(void)access; /* a holder has read access: an unlock always asks for write */
	return h_request(ctx, ctl, off, len, RQ_UNLOCK);
}

static kern_return_t
h_data_return(void *ctx, memory_object_t obj, mach_port_seqno_t seqno,
    memory_object_control_t ctl, vm_offset_t off, vm_offset_t data, mach_msg_type_number_t count,
    boolean_t dirty, boolean_t kernel_copy)
{
	struct mvm_shm_pager *s = ctx;
	int k = slot_of(s, ctl);
	size_t n = count / PS;

	(void)obj;
	(void)seqno;
	if ((off % PS) != 0 || (count % PS) != 0 || off + count < off || off + count > s->size)
		return KERN_INVALID_ARGUMENT; /* the message and its data are destroyed */
	if (k != NOBODY) {
		for (size_t i = 0; i < n; i++) {
			struct shm_page *p = &s->pages[off / PS + i];

			/* Only the writer's data is newer than ours; a reader's copy is ours. */
			if (dirty && p->writer == k) {
				memcpy(s->data + off + i * PS, (const char *)data + i * PS, PS);
				if (p->mig_k == k)
					p->flags |= PG_DIRTY_SEEN;
			}
			if (!kernel_copy) {
				p->holders &= ~(1ull << k);
				if (p->writer == k)
					writer_ends(p);
			}
		}
		mvm_lock_acquire(&s->lock);
		s->st.returns += n;
		if (dirty)
			s->st.dirty_returns += n;
		mvm_lock_release(&s->lock);
	}
	(void)vm_deallocate(mach_task_self(), data, count);
	(void)mach_port_deallocate(mach_task_self(), ctl);
	return KERN_SUCCESS;
}

static kern_return_t
h_lock_completed(void *ctx, memory_object_t reply, mach_port_seqno_t seqno,
    memory_object_control_t ctl, vm_offset_t off, vm_size_t len)
{
	struct mvm_shm_pager *s = ctx;
	int k = slot_of(s, ctl);

	(void)reply;
	(void)seqno;
	if (k != NOBODY && (off % PS) == 0 && len == PS && off < s->size) {
		struct shm_page *p = &s->pages[off / PS];

		if (p->owed & (1ull << k)) {
			p->owed &= ~(1ull << k);
			if (p->owed == 0)
				page_run(s, off / PS);
		}
	}
	(void)mach_port_deallocate(mach_task_self(), ctl);
	reap_gone(s);
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
	(void)mach_port_deallocate(mach_task_self(), ctl); /* we never ask for one */
	return KERN_SUCCESS;
}

static const struct mvm_memory_object_ops shm_ops = {
	.version = MVM_MEMORY_OBJECT_OPS_VERSION,
	.init = h_init,
	.terminate = h_terminate,
	.data_request = h_data_request,
	.data_unlock = h_data_unlock,
	.data_return = h_data_return,
	.lock_completed = h_lock_completed,
	.supply_completed = h_supply_completed,
};

/* ---- 5. the private port --------------------------------------------------------------- */

struct shm_read_msg {
	mach_msg_header_t head;
	struct shm_peek *peek;
};

static void
h_dead(struct mvm_shm_pager *s, mach_port_t name, bool deleted)
{
	int k = slot_of(s, name);

	if (k != NOBODY) {
		struct shm_kernel *ke = &s->kernels[k];

		/* The request fired (or the name is gone): nothing to cancel. */
		ke->dnrequest = false;
		if (!deleted)
			(void)mach_port_mod_refs(mach_task_self(), name, MACH_PORT_RIGHT_DEAD_NAME, -1);
		if (deleted)
			ke->ctl = MACH_PORT_NULL; /* no right of ours is left under it */
		else
			kernel_release(s, ke, false);
		ke->ctl = ke->name = MACH_PORT_NULL;
		s->gone &= ~(1ull << k);
		kernel_forget(s, k);
		mvm_lock_acquire(&s->lock);
		s->st.kernels--;
		s->st.deaths++;
		mvm_lock_release(&s->lock);
	} else if (!deleted) {
		(void)mach_port_mod_refs(mach_task_self(), name, MACH_PORT_RIGHT_DEAD_NAME, -1);
	}
}

static void
h_read(struct mvm_shm_pager *s, struct shm_peek *pk)
{
	bool known = false;
	vm_offset_t end;

	mvm_lock_acquire(&s->lock);
	for (struct shm_peek *q = s->peeks; q != NULL; q = q->next)
		known |= q == pk;
	mvm_lock_release(&s->lock);
	if (!known)
		return; /* not a read of ours */
	/* Once its last page is served, the caller may return: pk is not touched after. */
	end = pk->off + pk->len;
	pk->pages_left = (size_t)((MVM_ROUND_PAGE(end) - MVM_TRUNC_PAGE(pk->off)) / PS);
	for (vm_offset_t o = MVM_TRUNC_PAGE(pk->off); o < end; o += PS)
		if (request(s, o / PS, RQ_PEEK, NOBODY, pk) != KERN_SUCCESS) {
			/* No memory for the rest: fail the read once the queued pages are done. */
			mvm_lock_acquire(&s->lock);
			pk->kr = KERN_RESOURCE_SHORTAGE;
			mvm_lock_release(&s->lock);
			pk->pages_left -= (size_t)((MVM_ROUND_PAGE(end) - o) / PS) - 1;
			peek_page_done(s, pk, o / PS);
			break;
		}
	reap_gone(s);
}

static __thread struct mvm_shm_pager *shm_cur; /* the pager of this server thread */

static boolean_t
shm_demux(mach_msg_header_t *in, mach_msg_header_t *out)
{
	struct mvm_shm_pager *s = shm_cur;
	mig_reply_header_t *r = (mig_reply_header_t *)out;

	if (in->msgh_local_port != s->priv) {
		boolean_t ok = mvm_memory_object_server(&shm_ops, s, in, out);

		supply_flush(s);
		reap_gone(s);
		return ok;
	}
	if (in->msgh_id == MACH_NOTIFY_DEAD_NAME &&
	    in->msgh_size >= sizeof(mach_dead_name_notification_t))
		h_dead(s, ((mach_dead_name_notification_t *)in)->not_port, false);
	else if (in->msgh_id == MACH_NOTIFY_PORT_DELETED &&
	    in->msgh_size >= sizeof(mach_port_deleted_notification_t))
		h_dead(s, ((mach_port_deleted_notification_t *)in)->not_port, true);
	else if (in->msgh_id == SHM_MSG_READ && in->msgh_size == sizeof(struct shm_read_msg))
		h_read(s, ((struct shm_read_msg *)in)->peek);
	supply_flush(s);
	reap_gone(s);
	r->RetCode = KERN_SUCCESS; /* rights handled above; nothing to answer */
	return TRUE;
}

static void *
shm_main(void *arg)
{
	shm_cur = arg;
	/* Ends when the port set is destroyed (mvm_shm_pager_shutdown). */
	for (;;) {
		mach_msg_return_t mr = mach_msg_server(shm_demux,
		    MVM_MEMORY_OBJECT_MSG_SIZE_MAX + 64, shm_cur->set);

		if (mr == MACH_RCV_INVALID_NAME || mr == MACH_RCV_PORT_DIED)
			break;
	}
	return NULL;
}

/* ---- 6. public calls ------------------------------------------------------------------- */

static void
destroy(struct mvm_shm_pager *s)
{
	if (MACH_PORT_VALID(s->set))
		(void)mach_port_destroy(mach_task_self(), s->set);
	if (s->thread_started)
		pthread_join(s->thread, NULL);
	/* The server is gone: its state is ours. Kernels still mapping the object see the
	 * object port die. */
	if (MACH_PORT_VALID(s->port))
		(void)mach_port_destroy(mach_task_self(), s->port);
	if (MACH_PORT_VALID(s->priv))
		(void)mach_port_destroy(mach_task_self(), s->priv);
	for (int k = 0; k < MVM_SHM_MAX_KERNELS; k++)
		if (s->kernels[k].ctl != MACH_PORT_NULL)
			kernel_release(s, &s->kernels[k], false);
	for (size_t pg = 0; s->pages != NULL && pg < s->npages; pg++)
		while (s->pages[pg].head != NULL) {
			struct shm_req *r = s->pages[pg].head;

			s->pages[pg].head = r->next;
			mvm__free(r);
		}
	mvm__free(s->pages);
	if (s->data != NULL)
		(void)mvm__munmap(s->data, s->size);
	pthread_cond_destroy(&s->cond);
	mvm__free(s);
}

kern_return_t
mvm_shm_pager_create(vm_size_t size, struct mvm_shm_pager **pager, mach_port_t *port)
{
	struct mvm_shm_pager *s;
	kern_return_t kr;
	int err = 0;

	if (pager == NULL || port == NULL || size == 0 || size > ((vm_size_t)1 << 46))
		return KERN_INVALID_ARGUMENT;
	if ((s = mvm__calloc(1, sizeof(*s))) == NULL)
		return KERN_RESOURCE_SHORTAGE;
	s->batch.k = NOBODY;
	mvm_lock_init(&s->lock, MVM_LOCKRANK_PAGER, "shm pager");
	pthread_cond_init(&s->cond, NULL);
	s->size = MVM_ROUND_PAGE(size);
	s->npages = s->size / PS;
	s->data = mvm__mmap(NULL, s->size, PROT_READ | PROT_WRITE,
	    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0, &err);
	if (s->data == NULL || s->data == MAP_FAILED) {
		s->data = NULL;
		destroy(s);
		return KERN_RESOURCE_SHORTAGE;
	}
	if ((s->pages = mvm__calloc(s->npages, sizeof(*s->pages))) == NULL) {
		destroy(s);
		return KERN_RESOURCE_SHORTAGE;
	}
	for (size_t pg = 0; pg < s->npages; pg++)
		s->pages[pg].writer = s->pages[pg].last_writer = s->pages[pg].mig_k = NOBODY;
	if ((kr = mach_port_allocate(mach_task_self(), MACH_PORT_RIGHT_RECEIVE, &s->port)) ||
	    (kr = mach_port_insert_right(mach_task_self(), s->port, s->port,
	    MACH_MSG_TYPE_MAKE_SEND)) ||
	    (kr = mach_port_allocate(mach_task_self(), MACH_PORT_RIGHT_RECEIVE, &s->priv)) ||
	    (kr = mach_port_insert_right(mach_task_self(), s->priv, s->priv,
	    MACH_MSG_TYPE_MAKE_SEND)) ||
	    (kr = mach_port_allocate(mach_task_self(), MACH_PORT_RIGHT_PORT_SET, &s->set)) ||
	    (kr = mach_port_move_member(mach_task_self(), s->port, s->set)) ||
	    (kr = mach_port_move_member(mach_task_self(), s->priv, s->set))) {
		destroy(s);
		return kr;
	}
	/* Kernels send without limit; let their messages queue. */
	(void)mach_port_set_qlimit(mach_task_self(), s->port, MACH_PORT_QLIMIT_MAX);
	(void)mach_port_set_qlimit(mach_task_self(), s->priv, MACH_PORT_QLIMIT_MAX);
	if (mvm__thread_start(&s->thread, shm_main, s) != 0) {
		destroy(s);
		return KERN_RESOURCE_SHORTAGE;
	}
	s->thread_started = true;
	*pager = s;
	*port = s->port;
	return KERN_SUCCESS;
}

kern_return_t
mvm_shm_pager_read(struct mvm_shm_pager *s, vm_offset_t off, void *buf, vm_size_t len)
{
	struct shm_peek pk;
	struct shm_read_msg m;
	kern_return_t kr;

	if (s == NULL || (buf == NULL && len != 0))
		return KERN_INVALID_ARGUMENT;
	if (off > s->size || len > s->size - off)
		return KERN_INVALID_ARGUMENT;
	if (len == 0)
		return KERN_SUCCESS;
	memset(&pk, 0, sizeof(pk));
	pk.off = off;
	pk.len = len;
	pk.buf = buf;
	pk.kr = KERN_SUCCESS;
	mvm_lock_acquire(&s->lock);
	if (s->stopping) {
		mvm_lock_release(&s->lock);
		return KERN_TERMINATED;
	}
	pk.next = s->peeks;
	s->peeks = &pk;
	mvm_lock_release(&s->lock);
	memset(&m, 0, sizeof(m));
	m.head.msgh_bits = MACH_MSGH_BITS(MACH_MSG_TYPE_COPY_SEND, 0);
	m.head.msgh_size = sizeof(m);
	m.head.msgh_remote_port = s->priv;
	m.head.msgh_id = SHM_MSG_READ;
	m.peek = &pk;
	kr = mach_msg(&m.head, MACH_SEND_MSG, sizeof(m), 0, MACH_PORT_NULL, MACH_MSG_TIMEOUT_NONE,
	    MACH_PORT_NULL);
	mvm_lock_acquire(&s->lock);
	if (kr != MACH_MSG_SUCCESS) {
		pk.done = true;
		pk.kr = s->stopping ? KERN_TERMINATED : KERN_RESOURCE_SHORTAGE;
	}
	while (!pk.done)
		pthread_cond_wait(&s->cond, &s->lock.mtx);
	for (struct shm_peek **q = &s->peeks; *q != NULL; q = &(*q)->next)
		if (*q == &pk) {
			*q = pk.next;
			break;
		}
	pthread_cond_broadcast(&s->cond); /* a shutdown may wait for the list to empty */
	kr = pk.kr;
	mvm_lock_release(&s->lock);
	return kr;
}

kern_return_t
mvm_shm_pager_stats(struct mvm_shm_pager *s, struct mvm_shm_pager_stats *st)
{
	if (s == NULL || st == NULL)
		return KERN_INVALID_ARGUMENT;
	mvm_lock_acquire(&s->lock);
	*st = s->st;
	mvm_lock_release(&s->lock);
	return KERN_SUCCESS;
}

kern_return_t
mvm_shm_pager_shutdown(struct mvm_shm_pager *s)
{
	if (s == NULL)
		return KERN_INVALID_ARGUMENT;
	mvm_lock_acquire(&s->lock);
	s->stopping = true;
	mvm_lock_release(&s->lock);
	/* Stop the server first: reads it had not finished end with KERN_TERMINATED. */
	(void)mach_port_destroy(mach_task_self(), s->set);
	pthread_join(s->thread, NULL);
	s->thread_started = false;
	s->set = MACH_PORT_NULL;
	mvm_lock_acquire(&s->lock);
	for (struct shm_peek *q = s->peeks; q != NULL; q = q->next)
		if (!q->done) {
			q->done = true;
			q->kr = KERN_TERMINATED;
		}
	pthread_cond_broadcast(&s->cond);
	/* The readers unlink themselves; wait until none is left. */
	while (s->peeks != NULL)
		pthread_cond_wait(&s->cond, &s->lock.mtx);
	mvm_lock_release(&s->lock);
	destroy(s);
	return KERN_SUCCESS;
}
