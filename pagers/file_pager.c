/*
 * pagers/file_pager.c: the file pager. See <machvm/pagers.h>.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <machvm/pagers.h>
#include "sys/sys.h"

struct file_upi {
	int fd;
	int flags;
};

static kern_return_t
file_size(struct file_upi *f, vm_size_t *size)
{
	struct stat st;

	if (fstat(f->fd, &st) != 0)
		return KERN_MEMORY_ERROR;
	*size = (vm_size_t)st.st_size;
	return KERN_SUCCESS;
}

static kern_return_t
file_read(void *upi, vm_offset_t off, void *buf, vm_size_t len, boolean_t *unavailable,
    boolean_t *write_lock)
{
	struct file_upi *f = upi;
	vm_size_t size;

	if (file_size(f, &size) != KERN_SUCCESS)
		return KERN_MEMORY_ERROR;
	*write_lock = (f->flags & MVM_FILE_PAGER_READONLY) != 0;
	if (off >= size) {
		*unavailable = TRUE; /* past the end: zeros */
		return KERN_SUCCESS;
	}
	/* pread reads up to the end and the rest of the buffer stays zero. */
	return mvm__pread(f->fd, buf, len, (off_t)off) < 0 ? KERN_MEMORY_ERROR : KERN_SUCCESS;
}

static kern_return_t
file_write(void *upi, vm_offset_t off, const void *buf, vm_size_t len)
{
	struct file_upi *f = upi;
	vm_size_t size, n = len;
	ssize_t r;

	if (f->flags & MVM_FILE_PAGER_READONLY)
		return KERN_PROTECTION_FAILURE;
	if (file_size(f, &size) != KERN_SUCCESS)
		return KERN_MEMORY_ERROR;
	/*
	 * Inside the file: keep its size (the tail of the last page is not file data). Pages
	 * wholly past the end were written through the mapping: the file grows to cover them
	 * (the whole range is written), unless growth is not allowed, in which case the part
	 * inside the file is written and the error keeps the rest with the framework.
	 */
	if (off + len > size) {
		size_t ps = mvm__page_size();
		bool beyond = off + len > ((size + ps - 1) & ~(ps - 1));

		if (beyond && !(f->flags & MVM_FILE_PAGER_NOGROW))
			n = len;
		else if (off < size)
			n = size - off;
		else
			n = 0;
		if (n > 0) {
			r = mvm__pwrite(f->fd, buf, n, (off_t)off);
			if (r == -ENOSPC || r == -EDQUOT)
				return KERN_RESOURCE_SHORTAGE;
			if (r < 0)
				return KERN_MEMORY_ERROR;
		}
		return beyond && (f->flags & MVM_FILE_PAGER_NOGROW) ? KERN_PROTECTION_FAILURE :
		    KERN_SUCCESS;
	}
	r = mvm__pwrite(f->fd, buf, n, (off_t)off);
	if (r == -ENOSPC || r == -EDQUOT)
		return KERN_RESOURCE_SHORTAGE;
	return r < 0 ? KERN_MEMORY_ERROR : KERN_SUCCESS;
}

static kern_return_t
file_unlock(void *upi, vm_offset_t off, vm_size_t len)
{
	struct file_upi *f = upi;

	(void)off;
	(void)len;
	return (f->flags & MVM_FILE_PAGER_READONLY) ? KERN_PROTECTION_FAILURE : KERN_SUCCESS;
}

static kern_return_t
file_extent(void *upi, vm_size_t *size)
{
	return file_size(upi, size);
}

static void
file_clear(void *upi)
{
	struct file_upi *f = upi;

	(void)fsync(f->fd);
	mvm__close(f->fd);
	mvm__free(f);
}

static const struct mvm_pager_ops file_ops = {
	.version = MVM_PAGER_OPS_VERSION,
	.name = "file",
	.read_pages = file_read,
	.write_pages = file_write,
	.unlock_page = file_unlock,
	.report_extent = file_extent,
	.clear_user_data = file_clear,
};

kern_return_t
mvm_file_pager_create(const char *path, int flags, const struct mvm_pager_attr *attr,
    struct mvm_pager **pager, mach_port_t *port)
{
	struct file_upi *f;
	kern_return_t kr;
	int fd;

	if (path == NULL || pager == NULL || (flags & ~(MVM_FILE_PAGER_READONLY | MVM_FILE_PAGER_NOGROW)))
		return KERN_INVALID_ARGUMENT;
	fd = open(path, ((flags & MVM_FILE_PAGER_READONLY) ? O_RDONLY : O_RDWR) | O_CLOEXEC);
	if (fd < 0)
		return mvm__kr_from_errno(errno);
	{
		struct stat st;

		/* Only regular files have pages to serve. */
		if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
			mvm__close(fd);
			return KERN_INVALID_ARGUMENT;
		}
	}
	if ((f = mvm__calloc(1, sizeof(*f))) == NULL) {
		mvm__close(fd);
		return KERN_RESOURCE_SHORTAGE;
	}
	f->fd = fd;
	f->flags = flags;
	if ((kr = mvm_pager_create(&file_ops, f, attr, pager, port)) != KERN_SUCCESS)
		file_clear(f);
	return kr;
}
