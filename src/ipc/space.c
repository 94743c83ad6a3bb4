/*
 * src/ipc/space.c: the task's port name space.
 *
 * A name is MACH_PORT_MAKE(index, gen): index selects an entry of one growable table,
 * gen changes each time the entry is reused, so a stale name rarely denotes a new right.
 * Free entries form a FIFO (freed at the tail, taken at the head) so a freed index is
 * reused as late as possible; the list is doubly linked so that mach_port_allocate_name
 * can take any free entry in O(1). Index 0 is never used: it keeps MACH_PORT_NULL free
 * and gives mach_task_self() its name.
 *
 * Entries are addressed by index, never by pointer, because the table moves when it
 * grows. Everything here runs under the IPC lock.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <machvm/ipc.h>
#include "ipc/ipc.h"
#include "ipc/node.h"
#include "vm/vm_kern.h"
#include "sys/sys.h"

struct mvm_ipc mvm_ipc;

#define MVM_INDEX_MAX 0xfffffeu /* keeps every name below MACH_PORT_DEAD */

static pthread_once_t ipc_once = PTHREAD_ONCE_INIT;

static void
ipc_init_once(void)
{
	mvm_lock_init(&mvm_ipc.lock, MVM_LOCKRANK_IPC, "ipc");
	mvm_ipc.table = NULL;
	mvm_ipc.table_size = 0;
	mvm_ipc.free_head = mvm_ipc.free_tail = MVM_NO_ENTRY;
}

void
mvm__ipc_init(void)
{
	pthread_once(&ipc_once, ipc_init_once);
}

struct mvm_entry *
mvm__entry(uint32_t idx)
{
	MVM_ASSERT_LOCKED(&mvm_ipc.lock);
	return &mvm_ipc.table[idx];
}

mach_port_t
mvm__entry_name(uint32_t idx)
{
	return MACH_PORT_MAKE(idx, mvm_ipc.table[idx].gen);
}

uint32_t
mvm__entry_lookup(mach_port_t name)
{
	uint32_t idx = MACH_PORT_INDEX(name);
	struct mvm_entry *e;

	MVM_ASSERT_LOCKED(&mvm_ipc.lock);
	if (!MACH_PORT_VALID(name) || idx == 0 || idx >= mvm_ipc.table_size)
		return MVM_NO_ENTRY;
	e = &mvm_ipc.table[idx];
	if (e->type == MACH_PORT_TYPE_NONE || e->gen != MACH_PORT_GEN(name))
		return MVM_NO_ENTRY;
	return idx;
}

static void
free_append(uint32_t idx)
{
	struct mvm_entry *e = &mvm_ipc.table[idx];

	e->next = MVM_NO_ENTRY;
	e->prev = mvm_ipc.free_tail;
	if (mvm_ipc.free_tail != MVM_NO_ENTRY)
		mvm_ipc.table[mvm_ipc.free_tail].next = idx;
	else
		mvm_ipc.free_head = idx;
	mvm_ipc.free_tail = idx;
}

static void
free_unlink(uint32_t idx)
{
	struct mvm_entry *e = &mvm_ipc.table[idx];

	if (e->prev != MVM_NO_ENTRY)
		mvm_ipc.table[e->prev].next = e->next;
	else
		mvm_ipc.free_head = e->next;
	if (e->next != MVM_NO_ENTRY)
		mvm_ipc.table[e->next].prev = e->prev;
	else
		mvm_ipc.free_tail = e->prev;
	e->next = e->prev = MVM_NO_ENTRY;
}

static uint32_t
free_count_at_least(uint32_t n)
{
	uint32_t c = 0;

	for (uint32_t i = mvm_ipc.free_head; i != MVM_NO_ENTRY && c < n; i = mvm_ipc.table[i].next)
		c++;
	return c;
}

/* Grow the table to at least `want` entries. */
static kern_return_t
table_grow(uint32_t want)
{
	uint32_t old = mvm_ipc.table_size, size = old ? old : 64;
	struct mvm_entry *t;

	if (want > MVM_INDEX_MAX + 1)
		return KERN_NO_SPACE;
	while (size < want)
		size = size * 2 > MVM_INDEX_MAX + 1 ? MVM_INDEX_MAX + 1 : size * 2;
	t = mvm__realloc(mvm_ipc.table, (size_t)size * sizeof(*t));
	if (t == NULL)
		return KERN_RESOURCE_SHORTAGE;
	memset(&t[old], 0, (size_t)(size - old) * sizeof(*t));
	mvm_ipc.table = t;
	mvm_ipc.table_size = size;
	for (uint32_t i = old ? old : 1; i < size; i++)
		free_append(i);
	return KERN_SUCCESS;
}

kern_return_t
mvm__entry_reserve(uint32_t n)
{
	uint32_t have;

	MVM_ASSERT_LOCKED(&mvm_ipc.lock);
	have = free_count_at_least(n);
	if (have >= n)
		return KERN_SUCCESS;
	return table_grow(mvm_ipc.table_size + (n - have) + 1);
}

uint32_t
mvm__entry_alloc(void)
{
	uint32_t idx;
	struct mvm_entry *e;

	MVM_ASSERT_LOCKED(&mvm_ipc.lock);
	if (mvm_ipc.free_head == MVM_NO_ENTRY &&
	    table_grow(mvm_ipc.table_size ? mvm_ipc.table_size * 2 : 64) != KERN_SUCCESS)
		return MVM_NO_ENTRY;
	idx = mvm_ipc.free_head;
	free_unlink(idx);
	e = &mvm_ipc.table[idx];
	e->gen++;
	e->urefs = 0;
	e->obj.port = NULL;
	e->dnrequest = NULL;
	e->stamp = 0;
	mvm_ipc.names++;
	return idx;
}

kern_return_t
mvm__entry_alloc_name(mach_port_t name, uint32_t *idxp)
{
	uint32_t idx = MACH_PORT_INDEX(name);
	struct mvm_entry *e;
	kern_return_t kr;

	MVM_ASSERT_LOCKED(&mvm_ipc.lock);
	if (!MACH_PORT_VALID(name) || idx == 0 || idx > MVM_INDEX_MAX)
		return KERN_INVALID_VALUE;
	if (idx >= mvm_ipc.table_size && (kr = table_grow(idx + 1)) != KERN_SUCCESS)
		return kr;
	e = &mvm_ipc.table[idx];
	if (e->type != MACH_PORT_TYPE_NONE)
		return KERN_NAME_EXISTS;
	free_unlink(idx);
	e->gen = (uint8_t)MACH_PORT_GEN(name);
	e->urefs = 0;
	e->obj.port = NULL;
	e->dnrequest = NULL;
	e->stamp = 0;
	mvm_ipc.names++;
	*idxp = idx;
	return KERN_SUCCESS;
}

void
mvm__entry_free(uint32_t idx, struct mvm_ctx *ctx)
{
	struct mvm_entry *e = &mvm_ipc.table[idx];
	struct mvm_port *dn = e->dnrequest;
	mach_port_t name = mvm__entry_name(idx);

	MVM_ASSERT_LOCKED(&mvm_ipc.lock);
	e->type = MACH_PORT_TYPE_NONE;
	e->urefs = 0;
	e->obj.port = NULL;
	e->dnrequest = NULL;
	free_append(idx);
	mvm_ipc.names--;
	/* A dead-name request on a name that goes away becomes a port-deleted notification. */
	if (dn != NULL)
		mvm__notify_port_deleted(dn, name, ctx);
}

void
mvm__so_link(struct mvm_port *port, uint32_t idx)
{
	struct mvm_entry *e = &mvm_ipc.table[idx];

	e->prev = MVM_NO_ENTRY;
	e->next = port->so_head;
	if (port->so_head != MVM_NO_ENTRY)
		mvm_ipc.table[port->so_head].prev = idx;
	port->so_head = idx;
}

void
mvm__so_unlink(struct mvm_port *port, uint32_t idx)
{
	struct mvm_entry *e = &mvm_ipc.table[idx];

	if (e->prev != MVM_NO_ENTRY)
		mvm_ipc.table[e->prev].next = e->next;
	else
		port->so_head = e->next;
	if (e->next != MVM_NO_ENTRY)
		mvm_ipc.table[e->next].prev = e->prev;
	e->next = e->prev = MVM_NO_ENTRY;
}

/* ---- counters and quiescence ----------------------------------------------------- */

void
mvm_ipc_stats(struct mvm_ipc_stats *s)
{
	mvm__ipc_init();
	mvm__ipc_lock();
	s->names = mvm_ipc.names;
	s->ports = mvm_ipc.ports;
	s->port_sets = mvm_ipc.psets;
	s->kmsgs = __atomic_load_n(&mvm_ipc.kmsgs, __ATOMIC_RELAXED);
	s->kmsgs_queued = mvm_ipc.kmsgs_queued;
	s->msgs_sent = mvm_ipc.msgs_sent;
	s->msgs_received = mvm_ipc.msgs_received;
	s->notifications = mvm_ipc.notifications;
	mvm__ipc_unlock();
	s->vm_bytes = mvm__vm_tracked_bytes();
}

static uint64_t reserved_names, reserved_ports, reserved_psets;   /* (a) */

void
mvm__ipc_reserve(uint64_t names, uint64_t ports, uint64_t psets)
{
	__atomic_add_fetch(&reserved_names, names, __ATOMIC_RELAXED);
	__atomic_add_fetch(&reserved_ports, ports, __ATOMIC_RELAXED);
	__atomic_add_fetch(&reserved_psets, psets, __ATOMIC_RELAXED);
}

static kern_return_t quiescent_once(char *buf, size_t len);

kern_return_t
mvm_ipc_quiescent(char *buf, size_t len)
{
	/*
	 * machvm's own threads (the kernel's control thread, the pager framework) finish
	 * work in flight asynchronously: a notification the kernel sent itself at a
	 * terminate, say. Give them up to a second before calling anything left a leak.
	 */
	for (int i = 0; i < 500; i++) {
		struct timespec ts = { 0, 2000000 };

		if (quiescent_once(NULL, 0) == KERN_SUCCESS)
			return KERN_SUCCESS;
		nanosleep(&ts, NULL);
	}
	return quiescent_once(buf, len);
}

static kern_return_t
quiescent_once(char *buf, size_t len)
{
	struct mvm_ipc_stats s;
	mach_port_t reply = mvm__mig_reply_port_peek();
	uint64_t names, ports, psets, rn, rp, rs, objects, mappings;

	mvm_ipc_stats(&s);
	/* Ports the layers keep for the life of the process (kernel, pager framework). */
	rn = __atomic_load_n(&reserved_names, __ATOMIC_RELAXED);
	rp = __atomic_load_n(&reserved_ports, __ATOMIC_RELAXED);
	rs = __atomic_load_n(&reserved_psets, __ATOMIC_RELAXED);
	mvm__vm_alive(&objects, &mappings);
	names = s.names - (s.names >= rn ? rn : 0);
	/* Idle proxies of ports in other processes hold no right (see src/ipc/node.c). */
	rp += mvm__node_idle_proxies();
	ports = s.ports - (s.ports >= rp ? rp : 0);
	psets = s.port_sets - (s.port_sets >= rs ? rs : 0);
	/* The calling thread's MIG reply port is kept on purpose. */
	if (MACH_PORT_VALID(reply) && names > 0 && ports > 0) {
		names--;
		ports--;
	}
	if (names == 0 && ports == 0 && psets == 0 && s.kmsgs == 0 && s.vm_bytes == 0 &&
	    objects == 0 && mappings == 0)
		return KERN_SUCCESS;
	if (buf != NULL && len > 0)
		snprintf(buf, len,
		    "not quiescent: %llu names, %llu ports, %llu port sets, %llu messages "
		    "(%llu queued), %llu bytes of IPC memory, %llu memory objects, %llu mappings",
		    (unsigned long long)names, (unsigned long long)ports,
		    (unsigned long long)psets, (unsigned long long)s.kmsgs,
		    (unsigned long long)s.kmsgs_queued, (unsigned long long)s.vm_bytes,
		    (unsigned long long)objects, (unsigned long long)mappings);
	return KERN_FAILURE;
}
