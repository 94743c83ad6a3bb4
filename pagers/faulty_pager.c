/*
 * pagers/faulty_pager.c: a memory-backed pager with scripted errors and delays, for
 * tests. See <machvm/pagers.h>.
 */
#include <pthread.h>
#include <string.h>
#include <time.h>

#include <machvm/pagers.h>
#include "sys/sys.h"

struct faulty_rule {
	struct faulty_rule *next;
	enum mvm_faulty_op op;
	vm_offset_t off;
	vm_size_t len;
	kern_return_t error;
	unsigned delay_ms;
	unsigned count;       /* 0: always */
};

struct faulty_upi {
	pthread_mutex_t mtx;
	vm_size_t size;
	unsigned char *store;
	struct faulty_rule *rules;
};

/* The pager behind each faulty upi, for mvm_faulty_pager_rule(): upi from the pager. */
struct faulty_map {
	struct faulty_map *next;
	struct mvm_pager *pager;
	struct faulty_upi *upi;
};
static pthread_mutex_t map_mtx = PTHREAD_MUTEX_INITIALIZER;
static struct faulty_map *maps;

static kern_return_t
apply(struct faulty_upi *f, enum mvm_faulty_op op, vm_offset_t off, vm_size_t len)
{
	struct faulty_rule *hit = NULL;
	kern_return_t kr = KERN_SUCCESS;
	unsigned delay = 0;

	pthread_mutex_lock(&f->mtx);
	for (struct faulty_rule *r = f->rules; r != NULL; r = r->next) {
		if (r->op != op)
			continue;
		if (r->len != 0 && !(off < r->off + r->len && r->off < off + len))
			continue;
		hit = r; /* rules are kept newest first */
		break;
	}
	if (hit != NULL) {
		kr = hit->error;
		delay = hit->delay_ms;
		if (hit->count > 0 && --hit->count == 0) {
			struct faulty_rule **rp;

			for (rp = &f->rules; *rp != hit; rp = &(*rp)->next)
				;
			*rp = hit->next;
			mvm__free(hit);
		}
	}
	pthread_mutex_unlock(&f->mtx);
	if (delay > 0) {
		struct timespec ts = { delay / 1000, (long)(delay % 1000) * 1000000L };

		nanosleep(&ts, NULL);
	}
	return kr;
}

static kern_return_t
faulty_read(void *upi, vm_offset_t off, void *buf, vm_size_t len, boolean_t *unavailable,
    boolean_t *write_lock)
{
	struct faulty_upi *f = upi;
	kern_return_t kr = apply(f, MVM_FAULTY_READ, off, len);

	(void)unavailable;
	(void)write_lock;
	if (kr != KERN_SUCCESS)
		return kr;
	if (off + len > f->size)
		return KERN_MEMORY_ERROR;
	pthread_mutex_lock(&f->mtx);
	memcpy(buf, f->store + off, len);
	pthread_mutex_unlock(&f->mtx);
	return KERN_SUCCESS;
}

static kern_return_t
faulty_write(void *upi, vm_offset_t off, const void *buf, vm_size_t len)
{
	struct faulty_upi *f = upi;
	kern_return_t kr = apply(f, MVM_FAULTY_WRITE, off, len);

	if (kr != KERN_SUCCESS)
		return kr;
	if (off + len > f->size)
		return KERN_PROTECTION_FAILURE;
	pthread_mutex_lock(&f->mtx);
	memcpy(f->store + off, buf, len);
	pthread_mutex_unlock(&f->mtx);
	return KERN_SUCCESS;
}

static kern_return_t
faulty_unlock(void *upi, vm_offset_t off, vm_size_t len)
{
	return apply(upi, MVM_FAULTY_UNLOCK, off, len);
}

static kern_return_t
faulty_extent(void *upi, vm_size_t *size)
{
	*size = ((struct faulty_upi *)upi)->size;
	return KERN_SUCCESS;
}

static void
faulty_clear(void *upi)
{
	struct faulty_upi *f = upi;
	struct faulty_map **mp;

	pthread_mutex_lock(&map_mtx);
	for (mp = &maps; *mp != NULL; mp = &(*mp)->next)
		if ((*mp)->upi == f) {
			struct faulty_map *m = *mp;

			*mp = m->next;
			mvm__free(m);
			break;
		}
	pthread_mutex_unlock(&map_mtx);
	while (f->rules != NULL) {
		struct faulty_rule *r = f->rules;

		f->rules = r->next;
		mvm__free(r);
	}
	pthread_mutex_destroy(&f->mtx);
	mvm__free(f->store);
	mvm__free(f);
}

static const struct mvm_pager_ops faulty_ops = {
	.version = MVM_PAGER_OPS_VERSION,
	.name = "faulty",
	.read_pages = faulty_read,
	.write_pages = faulty_write,
	.unlock_page = faulty_unlock,
	.report_extent = faulty_extent,
	.clear_user_data = faulty_clear,
};

static struct faulty_upi *
upi_of(struct mvm_pager *pager)
{
	struct faulty_upi *f = NULL;

	pthread_mutex_lock(&map_mtx);
	for (struct faulty_map *m = maps; m != NULL; m = m->next)
		if (m->pager == pager)
			f = m->upi;
	pthread_mutex_unlock(&map_mtx);
	return f;
}

kern_return_t
mvm_faulty_pager_create(vm_size_t size, const struct mvm_pager_attr *attr,
    struct mvm_pager **pager, mach_port_t *port)
{
	struct faulty_upi *f;
	struct faulty_map *m;
	size_t ps = mvm__page_size();
	kern_return_t kr;

	if (size == 0 || pager == NULL)
		return KERN_INVALID_ARGUMENT;
	size = (size + ps - 1) & ~(ps - 1);
	if ((f = mvm__calloc(1, sizeof(*f))) == NULL || (m = mvm__calloc(1, sizeof(*m))) == NULL) {
		mvm__free(f);
		return KERN_RESOURCE_SHORTAGE;
	}
	if ((f->store = mvm__malloc(size)) == NULL) {
		mvm__free(f);
		mvm__free(m);
		return KERN_RESOURCE_SHORTAGE;
	}
	for (vm_size_t o = 0; o < size; o++)
		f->store[o] = (unsigned char)((o / ps) * 7 + o % ps);
	f->size = size;
	pthread_mutex_init(&f->mtx, NULL);
	m->upi = f;
	pthread_mutex_lock(&map_mtx);
	m->next = maps;
	maps = m;
	pthread_mutex_unlock(&map_mtx);
	if ((kr = mvm_pager_create(&faulty_ops, f, attr, pager, port)) != KERN_SUCCESS) {
		faulty_clear(f);
		return kr;
	}
	pthread_mutex_lock(&map_mtx);
	m->pager = *pager;
	pthread_mutex_unlock(&map_mtx);
	return KERN_SUCCESS;
}

kern_return_t
mvm_faulty_pager_rule(struct mvm_pager *pager, enum mvm_faulty_op op, vm_offset_t off,
    vm_size_t len, kern_return_t error, unsigned delay_ms, unsigned count)
{
	struct faulty_upi *f = upi_of(pager);
	struct faulty_rule *r;

	if (f == NULL || op > MVM_FAULTY_UNLOCK)
		return KERN_INVALID_ARGUMENT;
	if ((r = mvm__calloc(1, sizeof(*r))) == NULL)
		return KERN_RESOURCE_SHORTAGE;
	r->op = op;
	r->off = off;
	r->len = len;
	r->error = error;
	r->delay_ms = delay_ms;
	r->count = count;
	pthread_mutex_lock(&f->mtx);
	r->next = f->rules;
	f->rules = r;
	pthread_mutex_unlock(&f->mtx);
	return KERN_SUCCESS;
}

kern_return_t
mvm_faulty_pager_peek(struct mvm_pager *pager, vm_offset_t off, void *buf, vm_size_t len)
{
	struct faulty_upi *f = upi_of(pager);

	if (f == NULL || buf == NULL || off + len > f->size || off + len < off)
		return KERN_INVALID_ARGUMENT;
	pthread_mutex_lock(&f->mtx);
	memcpy(buf, f->store + off, len);
	pthread_mutex_unlock(&f->mtx);
	return KERN_SUCCESS;
}
