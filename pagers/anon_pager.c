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
