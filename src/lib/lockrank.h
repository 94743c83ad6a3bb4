/*
 * src/lib/lockrank.h: the lock order, as data. A thread may only acquire a lock whose rank
 * is higher than the rank of every lock it holds (checked in debug builds). doc/LOCKING.md
 * explains each lock; keep the two in step.
 *
 * Locking order:
 *   pager           one pager of the framework (src/pager)
 *     pager_fw      the framework's registry and task queue
 *   vm              the kernel's lock: cache objects, pages, mappings
 *     vm_regions    the table of anonymous regions machvm allocated
 *     netname       the names this process checked in (src/ipc/netname.c)
 *       ipc         the IPC lock: name space, ports, port sets, message queues (a leaf:
 *                   the kernel may send, never blocking, while holding vm)
 */
#ifndef MVM_LIB_LOCKRANK_H
#define MVM_LIB_LOCKRANK_H

enum mvm_lockrank {
	MVM_LOCKRANK_PAGER = 5,
	MVM_LOCKRANK_PAGER_FW = 6,
	MVM_LOCKRANK_VM = 10,
	MVM_LOCKRANK_VM_REGIONS = 20,
	MVM_LOCKRANK_NETNAME = 30,
	MVM_LOCKRANK_IPC = 40,
	MVM_LOCKRANK_MAX = 64
};

#endif /* MVM_LIB_LOCKRANK_H */
