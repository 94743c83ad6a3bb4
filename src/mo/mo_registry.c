/*
 * src/mo/mo_registry.c: the port -> (ops, context) registry behind
 * mvm_memory_object_demux(). A sorted array searched by binary search: managers register
 * an object once and look it up on every message, so lookups dominate.
 *
 * Locking: reg.lock (a reader-writer lock) protects the array. It is a leaf: nothing is
 * called while it is held except memory allocation, and the demultiplexer drops it
 * before calling an ops member.
 */
#include <pthread.h>
#include <string.h>

#include <machvm/memory_object.h>
#include "mo/mo.h"
#include "sys/sys.h"

struct reg_entry {
	mach_port_t port;                          /* (r) */
	const struct mvm_memory_object_ops *ops;   /* (r) */
	void *ctx;                                 /* (r) */
};

/* Legend: (r) reg.lock. */
static struct {
	pthread_rwlock_t lock;
	struct reg_entry *v;                       /* (r) sorted by port */
	size_t n, cap;                             /* (r) */
} reg = { .lock = PTHREAD_RWLOCK_INITIALIZER };

/* Index of the first entry whose port is not below `port`. Under reg.lock. */
static size_t
lower_bound(mach_port_t port)
{
	size_t lo = 0, hi = reg.n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (reg.v[mid].port < port)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

kern_return_t
mvm_memory_object_register(mach_port_t port, const struct mvm_memory_object_ops *ops,
    void *ctx)
{
	kern_return_t kr = KERN_SUCCESS;
	size_t i;

	if (!MACH_PORT_VALID(port) || ops == NULL)
		return KERN_INVALID_ARGUMENT;
	pthread_rwlock_wrlock(&reg.lock);
	i = lower_bound(port);
	if (i < reg.n && reg.v[i].port == port) {
		kr = KERN_NAME_EXISTS;
		goto out;
	}
	if (reg.n == reg.cap) {
		size_t cap = reg.cap ? reg.cap * 2 : 16;
		struct reg_entry *v = mvm__realloc(reg.v, cap * sizeof(*v));

		if (v == NULL) {
			kr = KERN_RESOURCE_SHORTAGE;
			goto out;
		}
		reg.v = v;
		reg.cap = cap;
	}
	memmove(&reg.v[i + 1], &reg.v[i], (reg.n - i) * sizeof(reg.v[0]));
	reg.v[i] = (struct reg_entry){ .port = port, .ops = ops, .ctx = ctx };
	reg.n++;
out:
	pthread_rwlock_unlock(&reg.lock);
	return kr;
}

kern_return_t
mvm_memory_object_unregister(mach_port_t port)
{
	kern_return_t kr = KERN_INVALID_NAME;
	size_t i;

	pthread_rwlock_wrlock(&reg.lock);
	i = lower_bound(port);
	if (i < reg.n && reg.v[i].port == port) {
		memmove(&reg.v[i], &reg.v[i + 1], (reg.n - i - 1) * sizeof(reg.v[0]));
		reg.n--;
		kr = KERN_SUCCESS;
	}
	if (reg.n == 0) {
		/* Give the memory back, so that quiescence checks see none left. */
		mvm__free(reg.v);
		reg.v = NULL;
		reg.cap = 0;
	}
	pthread_rwlock_unlock(&reg.lock);
	return kr;
}

boolean_t
mvm_memory_object_demux(mach_msg_header_t *in, mach_msg_header_t *out)
{
	struct reg_entry e = { .ops = NULL };
	size_t i;

	pthread_rwlock_rdlock(&reg.lock);
	i = lower_bound(in->msgh_local_port);
	if (i < reg.n && reg.v[i].port == in->msgh_local_port)
		e = reg.v[i];
	pthread_rwlock_unlock(&reg.lock);
	/* With ops NULL the demultiplexer answers MIG_BAD_ID and FALSE. */
	return mvm_memory_object_server(e.ops, e.ctx, in, out);
}
