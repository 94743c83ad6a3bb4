/*
 * pagers/anon_pager.c: the anonymous pager: zero-filled memory backed by an unlinked
 * swap file. A page never written back reads as zeros without I/O (data_unavailable).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <mach/mach.h>
#include <mach/memory_object_control.h>
#include <machvm/memory_object.h>
#include <machvm/pagers.h>
#include "sys/sys.h"

struct anon_upi {
	int fd;
	vm_size_t size;
	pthread_mutex_t mtx;
	uint8_t *written;     /* per page: in the swap file */
};

static kern_return_t
anon_read(void *upi, vm_offset_t off, void *buf, vm_size_t len, boolean_t *unavailable,
    boolean_t *write_lock)
{
	struct anon_upi *a = upi;
	size_t ps = mvm__page_size(), first = off / ps, n = len / ps;
	bool any = false;

	(void)write_lock;
	if (off >= a->size)
		return KERN_MEMORY_ERROR; /* beyond the object */
	pthread_mutex_lock(&a->mtx);
	for (size_t i = 0; i < n && (first + i) * ps < a->size; i++)
		any |= a->written[first + i] != 0;
	pthread_mutex_unlock(&a->mtx);
	if (!any) {
		*unavailable = TRUE;
		return KERN_SUCCESS;
	}
	return mvm__pread(a->fd, buf, len, (off_t)off) < 0 ? KERN_MEMORY_ERROR : KERN_SUCCESS;
}

static kern_return_t
anon_write(void *upi, vm_offset_t off, const void *buf, vm_size_t len)
{
	struct anon_upi *a = upi;
	size_t ps = mvm__page_size();
	ssize_t r;

	if (off + len > a->size)
		return KERN_PROTECTION_FAILURE;
	r = mvm__pwrite(a->fd, buf, len, (off_t)off);
	if (r < 0)
		return r == -ENOSPC || r == -EDQUOT ? KERN_RESOURCE_SHORTAGE : KERN_MEMORY_ERROR;
	pthread_mutex_lock(&a->mtx);
	for (size_t i = off / ps; i < (off + len) / ps; i++)
		a->written[i] = 1;
	pthread_mutex_unlock(&a->mtx);
	return KERN_SUCCESS;
}

static kern_return_t
anon_extent(void *upi, vm_size_t *size)
{
	*size = ((struct anon_upi *)upi)->size;
	return KERN_SUCCESS;
}

static void
anon_clear(void *upi)
{
	struct anon_upi *a = upi;

	mvm__close(a->fd);
	pthread_mutex_destroy(&a->mtx);
	mvm__free(a->written);
	mvm__free(a);
}

static const struct mvm_pager_ops anon_ops = {
	.version = MVM_PAGER_OPS_VERSION,
	.name = "anonymous",
	.read_pages = anon_read,
	.write_pages = anon_write,
	.report_extent = anon_extent,
	.clear_user_data = anon_clear,
};

kern_return_t
mvm_anon_pager_create(vm_size_t size, const char *swap_dir, const struct mvm_pager_attr *attr,
    struct mvm_pager **pager, mach_port_t *port)
{
	struct anon_upi *a;
	const char *dir = swap_dir;
	size_t ps = mvm__page_size();
	kern_return_t kr;

	if (size == 0 || pager == NULL)
		return KERN_INVALID_ARGUMENT;
	size = (size + ps - 1) & ~(ps - 1);
	if (dir == NULL)
		dir = getenv("TMPDIR");
	if (dir == NULL)
		dir = "/tmp";
	if ((a = mvm__calloc(1, sizeof(*a))) == NULL)
		return KERN_RESOURCE_SHORTAGE;
	if ((a->written = mvm__calloc(size / ps, 1)) == NULL) {
		mvm__free(a);
		return KERN_RESOURCE_SHORTAGE;
	}
	a->fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (a->fd < 0) {
		kr = mvm__kr_from_errno(errno);
		mvm__free(a->written);
		mvm__free(a);
		return kr;
	}
	a->size = size;
	pthread_mutex_init(&a->mtx, NULL);
	if ((kr = mvm_pager_create(&anon_ops, a, attr, pager, port)) != KERN_SUCCESS)
		anon_clear(a);
	return kr;
}

/* ---- the anonymous pager as the default memory manager --------------------------------
 *
 * The framework (src/pager) serves objects whose ports it makes and whose kernels send
 * init; a default manager's objects arrive the other way round: the kernel makes the
 * port and sends memory_object_create with the control port, and never waits for ready.
 * So the default pager is a small server of its own: one thread, one port set (the
 * default manager's port and every object's), one swap file with a region per object.
 */

struct dmm_obj {
	struct dmm_obj *next;
	mach_port_t port;        /* receive right (and the kernel's send rights: one space) */
	mach_port_t ctl, name;   /* send rights from create */
	vm_size_t size;
	off_t base;              /* region in the swap file */
	size_t npages;
	uint8_t *stored;         /* per page: DMM_* */
};

#define DMM_NONE   0             /* never stored: zeros */
#define DMM_STORED 1             /* in the swap file */
#define DMM_LOST   2             /* its write failed: requests fail, never zeros */

struct mvm_default_pager {
	mach_port_t port, pset;
	int fd;
	pthread_t thread;
	pthread_mutex_t mtx;     /* objs, st, next_base */
	struct dmm_obj *objs;
	off_t next_base;
	struct mvm_default_pager_stats st;
};

static __thread struct mvm_default_pager *dmm_cur;

static struct dmm_obj *
dmm_find(struct mvm_default_pager *d, mach_port_t port)
{
	for (struct dmm_obj *o = d->objs; o != NULL; o = o->next)
		if (o->port == port)
			return o;
	return NULL;
}

static kern_return_t
dmm_create(void *ctx, memory_object_t old, mach_port_seqno_t seqno, memory_object_t newobj,
    vm_size_t size, memory_object_control_t ctl, memory_object_name_t name, vm_size_t page_size)
{
	struct mvm_default_pager *d = ctx;
	size_t ps = mvm__page_size();
	struct dmm_obj *o;

	(void)seqno;
	if (page_size != ps)
		return KERN_INVALID_ARGUMENT;
	if ((o = mvm__calloc(1, sizeof(*o))) == NULL)
		return KERN_RESOURCE_SHORTAGE;
	/* The size is a hint only (Mach): pages beyond it still get room, see dmm_room. */
	o->npages = (size + ps - 1) / ps;
	if ((o->stored = mvm__calloc(o->npages + 1, 1)) == NULL) {
		mvm__free(o);
		return KERN_RESOURCE_SHORTAGE;
	}
	if (mach_port_move_member(mach_task_self(), newobj, d->pset) != KERN_SUCCESS) {
		mvm__free(o->stored);
		mvm__free(o);
		return KERN_INVALID_ARGUMENT;
	}
	o->port = newobj;
	o->ctl = ctl;
	o->name = name;
	o->size = o->npages * ps;
	pthread_mutex_lock(&d->mtx);
	o->base = d->next_base;
	d->next_base += (off_t)o->size;
	o->next = d->objs;
	d->objs = o;
	d->st.objects++;
	d->st.creates++;
	pthread_mutex_unlock(&d->mtx);
	/* The send right the kernel gave up for create (MOVE_SEND to our own port). */
	(void)mach_port_deallocate(mach_task_self(), old);
	return KERN_SUCCESS;
}

/* Page pg is inside o's region (the kernel may go past the size hint: refuse). */
static bool
dmm_room(const struct dmm_obj *o, size_t pg)
{
	return pg < o->npages;
}

static kern_return_t
dmm_request(void *ctx, memory_object_t obj, mach_port_seqno_t seqno,
    memory_object_control_t ctl, vm_offset_t off, vm_size_t len, vm_prot_t access)
{
	struct mvm_default_pager *d = ctx;
	size_t ps = mvm__page_size(), first = off / ps, n = len / ps;
	struct dmm_obj *o;

	(void)seqno;
	(void)access;
	pthread_mutex_lock(&d->mtx);
	if ((o = dmm_find(d, obj)) == NULL) {
		pthread_mutex_unlock(&d->mtx);
		return KERN_INVALID_ARGUMENT;
	}
	d->st.requests++;
	for (size_t i = 0; i < n;) {
		int st = dmm_room(o, first + i) ? o->stored[first + i] : DMM_NONE;
		size_t j = i + 1;

		while (j < n && (dmm_room(o, first + j) ? o->stored[first + j] : DMM_NONE) == st)
			j++;
		if (st == DMM_LOST) {
			(void)memory_object_data_error(ctl, (first + i) * ps, (j - i) * ps,
			    KERN_MEMORY_ERROR);
		} else if (st == DMM_STORED) {
			vm_address_t buf = 0;
			size_t bytes = (j - i) * ps;

			/* The kernel answers this thread's sends in order; reading under the
			 * lock keeps a concurrent return out of the region. */
			if (vm_allocate(mach_task_self(), &buf, bytes, TRUE) != KERN_SUCCESS ||
			    mvm__pread(d->fd, (void *)buf, bytes, o->base + (off_t)((first + i) * ps)) < 0) {
				if (buf != 0)
					(void)vm_deallocate(mach_task_self(), buf, bytes);
				d->st.errors++;
				(void)memory_object_data_error(ctl, (first + i) * ps, bytes,
				    KERN_MEMORY_ERROR);
			} else {
				d->st.pages_supplied += j - i;
				(void)memory_object_data_supply(ctl, (first + i) * ps, buf,
				    (mach_msg_type_number_t)bytes, TRUE, VM_PROT_NONE, FALSE,
				    MACH_PORT_NULL);
			}
		} else {
			/* Never written: the object starts zero-filled. */
			d->st.pages_unavailable += j - i;
			(void)memory_object_data_unavailable(ctl, (first + i) * ps, (j - i) * ps);
		}
		i = j;
	}
	pthread_mutex_unlock(&d->mtx);
	(void)mach_port_deallocate(mach_task_self(), ctl); /* this message's send right */
	return KERN_SUCCESS;
}

/* Store count bytes of data at off; initial: only pages not stored yet. Under d->mtx. */
static void
dmm_store(struct mvm_default_pager *d, struct dmm_obj *o, vm_offset_t off, vm_offset_t data,
    mach_msg_type_number_t count, bool initial)
{
	size_t ps = mvm__page_size();

	for (size_t i = 0; i < count / ps; i++) {
		size_t pg = off / ps + i;

		if (!dmm_room(o, pg) || (initial && o->stored[pg] != DMM_NONE))
			continue; /* initialize: the page already came (Mach's rule) */
		if (mvm__pwrite(d->fd, (const char *)data + i * ps, ps, o->base + (off_t)(pg * ps)) < 0) {
			d->st.errors++;
			if (o->stored[pg] == DMM_STORED)
				d->st.pages_stored--;
			o->stored[pg] = DMM_LOST;
			continue;
		}
		if (o->stored[pg] != DMM_STORED) {
			o->stored[pg] = DMM_STORED;
			d->st.pages_stored++;
		}
	}
}

static kern_return_t
dmm_return(void *ctx, memory_object_t obj, mach_port_seqno_t seqno,
    memory_object_control_t ctl, vm_offset_t off, vm_offset_t data,
    mach_msg_type_number_t count, boolean_t dirty, boolean_t kernel_copy)
{
	struct mvm_default_pager *d = ctx;
	struct dmm_obj *o;

	(void)seqno;
	(void)dirty;
	(void)kernel_copy;
	pthread_mutex_lock(&d->mtx);
	if ((o = dmm_find(d, obj)) != NULL) {
		d->st.returns++;
		dmm_store(d, o, off, data, count, false);
	}
	pthread_mutex_unlock(&d->mtx);
	(void)vm_deallocate(mach_task_self(), data, count);
	(void)mach_port_deallocate(mach_task_self(), ctl);
	return KERN_SUCCESS;
}

static kern_return_t
dmm_initialize(void *ctx, memory_object_t obj, mach_port_seqno_t seqno,
    memory_object_control_t ctl, vm_offset_t off, vm_offset_t data,
    mach_msg_type_number_t count)
{
	struct mvm_default_pager *d = ctx;
	struct dmm_obj *o;

	(void)seqno;
	pthread_mutex_lock(&d->mtx);
	if ((o = dmm_find(d, obj)) != NULL) {
		d->st.initializes++;
		dmm_store(d, o, off, data, count, true);
	}
	pthread_mutex_unlock(&d->mtx);
	(void)vm_deallocate(mach_task_self(), data, count);
	(void)mach_port_deallocate(mach_task_self(), ctl);
	return KERN_SUCCESS;
}

static void
dmm_free_obj(struct mvm_default_pager *d, struct dmm_obj *o)
{
	size_t ps = mvm__page_size();

	for (size_t i = 0; i < o->npages; i++)
		if (o->stored[i] == DMM_STORED)
			d->st.pages_stored--;
	/* Give the region's blocks back (the offsets are not reused). */
	(void)mvm__fallocate(d->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, o->base,
	    (off_t)(o->npages * ps));
	mvm__free(o->stored);
	mvm__free(o);
}

static kern_return_t
dmm_terminate(void *ctx, memory_object_t obj, mach_port_seqno_t seqno,
    memory_object_control_t ctl, memory_object_name_t name)
{
	struct mvm_default_pager *d = ctx;
	struct dmm_obj **pp, *o = NULL;

	(void)seqno;
	pthread_mutex_lock(&d->mtx);
	for (pp = &d->objs; *pp != NULL; pp = &(*pp)->next)
		if ((*pp)->port == obj) {
			o = *pp;
			*pp = o->next;
			break;
		}
	if (o != NULL) {
		d->st.objects--;
		d->st.terminates++;
		dmm_free_obj(d, o);
	}
	pthread_mutex_unlock(&d->mtx);
	/* The control and name receive rights arrive here, and the object's last send
	 * right: the names go with every right under them (one name space). */
	(void)mach_port_destroy(mach_task_self(), ctl);
	(void)mach_port_destroy(mach_task_self(), name);
	if (o != NULL)
		(void)mach_port_destroy(mach_task_self(), obj);
	return KERN_SUCCESS;
}

static const struct mvm_memory_object_ops dmm_ops = {
	.version = MVM_MEMORY_OBJECT_OPS_VERSION,
	.terminate = dmm_terminate,
	.data_request = dmm_request,
	.data_return = dmm_return,
	.create = dmm_create,
	.data_initialize = dmm_initialize,
};

static boolean_t
dmm_demux(mach_msg_header_t *in, mach_msg_header_t *out)
{
	return mvm_memory_object_server(&dmm_ops, dmm_cur, in, out);
}

static void *
dmm_main(void *arg)
{
	dmm_cur = arg;
	/* Ends when the port set is destroyed (mvm_anon_default_pager_stop). */
	(void)mach_msg_server(dmm_demux, MVM_MEMORY_OBJECT_MSG_SIZE_MAX + 64, dmm_cur->pset);
	return NULL;
}

kern_return_t
mvm_anon_default_pager_start(const char *swap_dir, struct mvm_default_pager **pager,
    mach_port_t *port)
{
	struct mvm_default_pager *d;
	const char *dir = swap_dir;
	kern_return_t kr;

	if (pager == NULL || port == NULL)
		return KERN_INVALID_ARGUMENT;
	if (dir == NULL)
		dir = getenv("TMPDIR");
	if (dir == NULL)
		dir = "/tmp";
	if ((d = mvm__calloc(1, sizeof(*d))) == NULL)
		return KERN_RESOURCE_SHORTAGE;
	if ((d->fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600)) < 0) {
		kr = mvm__kr_from_errno(errno);
		mvm__free(d);
		return kr;
	}
	pthread_mutex_init(&d->mtx, NULL);
	if ((kr = mach_port_allocate(mach_task_self(), MACH_PORT_RIGHT_PORT_SET, &d->pset)) ||
	    (kr = mach_port_allocate(mach_task_self(), MACH_PORT_RIGHT_RECEIVE, &d->port)) ||
	    (kr = mach_port_move_member(mach_task_self(), d->port, d->pset)))
		goto fail;
	if (mvm__thread_start(&d->thread, dmm_main, d) != 0) {
		kr = KERN_RESOURCE_SHORTAGE;
		goto fail;
	}
	*pager = d;
	*port = d->port;
	return KERN_SUCCESS;

fail:
	if (MACH_PORT_VALID(d->port))
		(void)mach_port_destroy(mach_task_self(), d->port);
	if (MACH_PORT_VALID(d->pset))
		(void)mach_port_destroy(mach_task_self(), d->pset);
	mvm__close(d->fd);
	pthread_mutex_destroy(&d->mtx);
	mvm__free(d);
	return kr;
}

kern_return_t
mvm_anon_default_pager_stats(struct mvm_default_pager *d, struct mvm_default_pager_stats *st)
{
	if (d == NULL || st == NULL)
		return KERN_INVALID_ARGUMENT;
	pthread_mutex_lock(&d->mtx);
	*st = d->st;
	pthread_mutex_unlock(&d->mtx);
	return KERN_SUCCESS;
}

kern_return_t
mvm_anon_default_pager_stop(struct mvm_default_pager *d)
{
	if (d == NULL)
		return KERN_INVALID_ARGUMENT;
	/* The server loop ends with the set; then nothing else touches the objects. */
	(void)mach_port_destroy(mach_task_self(), d->port);
	(void)mach_port_destroy(mach_task_self(), d->pset);
	pthread_join(d->thread, NULL);
	while (d->objs != NULL) {
		struct dmm_obj *o = d->objs;

		d->objs = o->next;
		(void)mach_port_destroy(mach_task_self(), o->port);
		(void)mach_port_deallocate(mach_task_self(), o->ctl);
		(void)mach_port_deallocate(mach_task_self(), o->name);
		dmm_free_obj(d, o);
	}
	mvm__close(d->fd);
	pthread_mutex_destroy(&d->mtx);
	mvm__free(d);
	return KERN_SUCCESS;
}
