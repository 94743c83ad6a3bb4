/*
 * src/ipc/port.c: ports and port sets: life, death and set membership.
 *
 * A port lives while anything points to it (refs). Its receive right lives in the name
 * space (recv_entry) or in a message in transit. When the receive right is destroyed the
 * port becomes inactive: its queued messages are destroyed, the threads waiting on it are
 * told, every name in the space that denotes it turns into a dead name (with a dead-name
 * notification where one was requested), and the notification requests it holds are
 * released. Destroying messages may destroy further receive rights; those ports go on
 * ipc.deathrow and are handled by the same loop, so nothing recurses without bound.
 * Everything here runs under the IPC lock.
 */
#include <string.h>

#include "ipc/ipc.h"
#include "ipc/node.h"
#include "sys/sys.h"

struct mvm_port *
mvm__port_alloc(void)
{
	struct mvm_port *p = mvm__calloc(1, sizeof(*p));

	if (p == NULL)
		return NULL;
	p->refs = 1;
	p->active = true;
	p->qlimit = MACH_PORT_QLIMIT_DEFAULT;
	mvm__mq_init(&p->mq);
	return p;
}

void
mvm__port_ref(struct mvm_port *port)
{
	MVM_ASSERT_LOCKED(&mvm_ipc.lock);
	port->refs++;
}

void
mvm__port_release(struct mvm_port *port)
{
	MVM_ASSERT_LOCKED(&mvm_ipc.lock);
	if (--port->refs > 0)
		return;
	if (port->remote != NULL) {
		if (mvm__node_proxy_idle(port))
			return; /* kept for reuse, with one reference */
		mvm__node_proxy_free(port);
	}
	/* Nothing points here any more: the receive right is gone, so is every right. */
	mvm__free(port);
	mvm_ipc.ports--;
}

/* ---- port sets ------------------------------------------------------------------- */

void
mvm__pset_add(struct mvm_pset *pset, struct mvm_port *port, struct mvm_ctx *ctx)
{
	struct mvm_kmsg *k;

	if (port->pset != NULL)
		mvm__pset_remove(port, ctx);
	/* Threads receiving on the port itself must look again: it now belongs to a set. */
	mvm__wake_all(&port->mq.receivers, MACH_RCV_PORT_CHANGED, ctx);
	port->pset = pset;
	pset->nmembers++;
	/* Its queued messages join the set's queue, in order. */
	while ((k = port->mq.head) != NULL) {
		port->mq.head = k->next;
		k->next = NULL;
		if (pset->mq.tail != NULL)
			pset->mq.tail->next = k;
		else
			pset->mq.head = k;
		pset->mq.tail = k;
		mvm__wake_one(&pset->mq.receivers, 0, ctx);
	}
	port->mq.tail = NULL;
}

void
mvm__pset_remove(struct mvm_port *port, struct mvm_ctx *ctx)
{
	struct mvm_pset *pset = port->pset;
	struct mvm_kmsg **pp, *prev = NULL;

	(void)ctx;
	if (pset == NULL)
		return;
	/* Take this port's messages back out of the set's queue, keeping their order. */
	pp = &pset->mq.head;
	while (*pp != NULL) {
		struct mvm_kmsg *k = *pp;

		if (k->dest == port) {
			*pp = k->next;
			k->next = NULL;
			if (port->mq.tail != NULL)
				port->mq.tail->next = k;
			else
				port->mq.head = k;
			port->mq.tail = k;
		} else {
			prev = k;
			pp = &k->next;
		}
	}
	pset->mq.tail = prev;
	port->pset = NULL;
	pset->nmembers--;
}

void
mvm__pset_destroy(struct mvm_pset *pset, struct mvm_ctx *ctx)
{
	/* Members are found through the set's queue and the space; scan the space. */
	for (uint32_t i = 1; i < mvm_ipc.table_size && pset->nmembers > 0; i++) {
		struct mvm_entry *e = &mvm_ipc.table[i];

		if ((e->type & MACH_PORT_TYPE_RECEIVE) && e->obj.port->pset == pset)
			mvm__pset_remove(e->obj.port, ctx);
	}
	mvm__wake_all(&pset->mq.receivers, MACH_RCV_PORT_DIED, ctx);
	if (pset->mq.holder_sends) {
		/* A sender is serving a message of the set: it frees the set when done. */
		pset->destroyed = true;
		return;
	}
	mvm__free(pset);
	mvm_ipc.psets--;
}

/* ---- the receive right leaves the space or dies -------------------------------- */

void
mvm__port_clear_receiver(struct mvm_port *port, struct mvm_ctx *ctx)
{
	if (port->pset != NULL)
		mvm__pset_remove(port, ctx);
	mvm__wake_all(&port->mq.receivers, MACH_RCV_PORT_CHANGED, ctx);
	port->recv_entry = MVM_NO_ENTRY;
	port->seqno = 0;
	port->mscount = 0;
}

/* Turn every name of a dead port into a dead name. */
static void
kill_names(struct mvm_port *port, struct mvm_ctx *ctx)
{
	uint32_t idx;

	if (port->send_entry != MVM_NO_ENTRY) {
		idx = port->send_entry;
		port->send_entry = MVM_NO_ENTRY;
		mvm__entry_dead(idx, ctx);
	}
	while ((idx = port->so_head) != MVM_NO_ENTRY) {
		mvm__so_unlink(port, idx);
		mvm__entry_dead(idx, ctx);
	}
}

void
mvm__port_die(struct mvm_port *port, struct mvm_ctx *ctx)
{
	struct mvm_kmsg *k;
	struct mvm_port *req;

	port->active = false;
	if (port->pset != NULL)
		mvm__pset_remove(port, ctx);
	mvm__wake_all(&port->mq.receivers, MACH_RCV_PORT_DIED, ctx);
	mvm__wake_all(&port->senders, 0, ctx);
	/* Queued messages die with the port. */
	while ((k = port->mq.head) != NULL) {
		port->mq.head = k->next;
		k->next = NULL;
		port->msgcount--;
		mvm_ipc.kmsgs_queued--;
		for (uint32_t i = 0; i < k->nports; i++)
			if (k->ports[i].type == MACH_MSG_TYPE_PORT_RECEIVE && MVM_PORT_VALID(k->ports[i].port))
				k->ports[i].port->transit_dest = NULL;
		mvm__kmsg_destroy(k, ctx);
	}
	port->mq.tail = NULL;
	kill_names(port, ctx);
	if ((req = port->nsrequest) != NULL) {
		port->nsrequest = NULL;
		mvm__kport_release((struct mvm_kport){ req, MACH_MSG_TYPE_PORT_SEND_ONCE }, ctx);
	}
	if ((req = port->pdrequest) != NULL) {
		port->pdrequest = NULL;
		mvm__kport_release((struct mvm_kport){ req, MACH_MSG_TYPE_PORT_SEND_ONCE }, ctx);
	}
	if (port->export != NULL)
		mvm__node_export_dies(port, ctx);
}

/*
 * Destroy a receive right the caller holds (the caller's reference to the port comes
 * with it and is consumed). With a port-destroyed request, the right is sent to the
 * requester instead of dying.
 */
void
mvm__port_destroy_receive(struct mvm_port *port, struct mvm_ctx *ctx)
{
	MVM_ASSERT_LOCKED(&mvm_ipc.lock);
	port->deathrow_next = mvm_ipc.deathrow;
	mvm_ipc.deathrow = port;
	if (mvm_ipc.draining)
		return; /* an outer call is draining the list */
	mvm_ipc.draining = true;
	while ((port = mvm_ipc.deathrow) != NULL) {
		struct mvm_port *pd = port->pdrequest;

		mvm_ipc.deathrow = port->deathrow_next;
		port->deathrow_next = NULL;
		if (pd != NULL && MVM_PORT_VALID(pd) && pd->active && pd != port) {
			port->pdrequest = NULL;
			mvm__port_clear_receiver(port, ctx);
			mvm__notify_port_destroyed(pd, port, ctx); /* takes our reference */
			continue;
		}
		mvm__port_die(port, ctx); /* may put more ports on the list */
		mvm__port_release(port);
	}
	mvm_ipc.draining = false;
}
