/*
 * src/ipc/mqueue.c: message queues and waiting.
 *
 * A port not in a set queues its messages on its own mqueue; a port in a set queues them
 * on the set's mqueue (as Mach 3 does), so a receive on the set takes messages in arrival
 * order whatever member they came to. Sequence numbers stay per port: the dequeued
 * message's destination port hands out the next number.
 *
 * Waiting: each thread owns one struct mvm_waiter whose `state` word is a futex. A waker
 * unlinks the waiter and sets state = 1 under the IPC lock, and issues FUTEX_WAKE after
 * the lock is dropped (mvm__ctx_finish). The woken thread retakes the lock and looks again:
 * a woken receiver may find the message taken by another receiver, and waits again.
 */
#include <errno.h>
#include <stdatomic.h>
#include <time.h>

#include "ipc/ipc.h"
#include "ipc/node.h"
#include "sys/sys.h"

static __thread struct mvm_waiter self_waiter;

struct mvm_waiter *
mvm__self_waiter(void)
{
	return &self_waiter;
}

void
mvm__wlist_add(struct mvm_wlist *l, struct mvm_waiter *w)
{
	MVM_ASSERT_LOCKED(&mvm_ipc.lock);
	w->next = NULL;
	w->prev = l->tail;
	if (l->tail != NULL)
		l->tail->next = w;
	else
		l->head = w;
	l->tail = w;
	w->list = l;
	w->result = 0;
	atomic_store_explicit((_Atomic uint32_t *)&w->state, 0, memory_order_relaxed);
}

void
mvm__wlist_remove(struct mvm_waiter *w)
{
	struct mvm_wlist *l = w->list;

	MVM_ASSERT_LOCKED(&mvm_ipc.lock);
	if (l == NULL)
		return;
	if (w->prev != NULL)
		w->prev->next = w->next;
	else
		l->head = w->next;
	if (w->next != NULL)
		w->next->prev = w->prev;
	else
		l->tail = w->prev;
	w->next = w->prev = NULL;
	w->list = NULL;
}

static void
wake(struct mvm_waiter *w, mach_msg_return_t result, struct mvm_ctx *ctx)
{
	mvm__wlist_remove(w);
	w->result = result;
	atomic_store_explicit((_Atomic uint32_t *)&w->state, 1, memory_order_release);
	if (ctx->nwake < MVM_CTX_WAKES)
		ctx->wake[ctx->nwake++] = &w->state;
	else
		mvm__futex_wake(&w->state, 1); /* rare: a non-blocking syscall under the lock */
}

void
mvm__wake_one(struct mvm_wlist *l, mach_msg_return_t result, struct mvm_ctx *ctx)
{
	if (l->head != NULL)
		wake(l->head, result, ctx);
}

void
mvm__wake_all(struct mvm_wlist *l, mach_msg_return_t result, struct mvm_ctx *ctx)
{
	while (l->head != NULL)
		wake(l->head, result, ctx);
}

int
mvm__wait(struct mvm_waiter *w, const struct timespec *deadline)
{
	MVM_ASSERT_NO_LOCKS();
	for (;;) {
		int r;

		if (atomic_load_explicit((_Atomic uint32_t *)&w->state, memory_order_acquire) != 0)
			return 0;
		r = mvm__futex_wait(&w->state, 0, deadline);
		if (r == -ETIMEDOUT || r == -EINTR)
			return r;
		if (r < 0) {
			/* An injected or unexpected failure: do not spin, report a timeout-free
			 * spurious wake-up; the caller looks again under the lock. */
			return 0;
		}
	}
}

/*
 * Deferred wake-ups. A thread that sends while holding a lock the woken thread is likely
 * to want next (the kernel's lock: a manager in this process answers a data_request by
 * serving its data_supply, which takes that lock) defers the wake-ups until it lets the
 * lock go, so the woken thread does not run only to sleep again on the lock. Only the
 * futex wake is late: the waiter is already unlinked and its word set under the IPC lock.
 * Frames for other processes wait likewise (writing one wakes the peer's node thread,
 * whose answer would meet the same lock).
 */
#define DEFER_MAX 32
static __thread struct {
	unsigned depth, n;
	bool node_flush;                  /* frames for other processes wait too */
	uint32_t *word[DEFER_MAX];
} deferred;

void
mvm__ipc_defer_wakes(void)
{
	deferred.depth++;
}

void
mvm__ipc_flush_wakes(void)
{
	for (unsigned i = 0; i < deferred.n; i++)
		mvm__futex_wake(deferred.word[i], 1);
	deferred.n = 0;
	if (deferred.node_flush || mvm__node_flush_pending()) {
		deferred.node_flush = false;
		mvm__node_flush();
	}
}

void
mvm__ipc_undefer_wakes(void)
{
	if (deferred.depth > 0 && --deferred.depth == 0)
		mvm__ipc_flush_wakes();
}

void
mvm__ctx_finish(struct mvm_ctx *ctx)
{
	/* The kernel may send (never blocking) under vm.lock: only the IPC lock matters. */
	MVM_ASSERT_UNLOCKED(&mvm_ipc.lock);
	for (int i = 0; i < ctx->nwake; i++) {
		if (deferred.depth > 0 && deferred.n < DEFER_MAX)
			deferred.word[deferred.n++] = ctx->wake[i];
		else
			mvm__futex_wake(ctx->wake[i], 1);
	}
	ctx->nwake = 0;
	if (deferred.depth > 0) {
		/* A frame written now would wake its receiver as a futex wake would. */
		deferred.node_flush |= ctx->node_flush;
		ctx->node_flush = false;
	} else if (ctx->node_flush || mvm__node_flush_pending()) {
		ctx->node_flush = false;
		mvm__node_flush();
	}
	while (ctx->free_kmsgs != NULL) {
		struct mvm_kmsg *k = ctx->free_kmsgs;

		ctx->free_kmsgs = k->next;
		mvm__kmsg_free(k);
	}
}

/* ---- queues ---------------------------------------------------------------------- */

void
mvm__mq_init(struct mvm_mqueue *mq)
{
	mq->head = mq->tail = NULL;
	mq->receivers.head = mq->receivers.tail = NULL;
	mq->direct = NULL;
	mq->holder = NULL;
	mq->holder_sends = false;
}

struct mvm_mqueue *
mvm__port_mq(struct mvm_port *port)
{
	return port->pset != NULL ? &port->pset->mq : &port->mq;
}

void
mvm__mq_enqueue(struct mvm_kmsg *kmsg, struct mvm_ctx *ctx)
{
	struct mvm_port *port = kmsg->dest;
	struct mvm_mqueue *mq;

	MVM_ASSERT_LOCKED(&mvm_ipc.lock);
	if (!port->active) {
		/* The receive right died after the rights were taken: the message dies too. */
		mvm__kmsg_destroy(kmsg, ctx);
		return;
	}
	if (port->remote != NULL) {
		/* A proxy: the message travels to the process that holds the receive right. */
		mvm__node_ship(kmsg, ctx);
		return;
	}
	mq = mvm__port_mq(port);
	kmsg->next = NULL;
	if (mq->tail != NULL)
		mq->tail->next = kmsg;
	else
		mq->head = kmsg;
	mq->tail = kmsg;
	port->msgcount++;
	mvm_ipc.kmsgs_queued++;
	mvm_ipc.msgs_sent++;
	/* Receive rights carried by the message now travel towards this port. */
	for (uint32_t i = 0; i < kmsg->nports; i++)
		if (kmsg->ports[i].type == MACH_MSG_TYPE_PORT_RECEIVE && MVM_PORT_VALID(kmsg->ports[i].port))
			kmsg->ports[i].port->transit_dest = port;
	/* A direct queue's holder takes the next message itself (mvm__mq_release). */
	if (mq->holder == NULL)
		mvm__wake_one(&mq->receivers, 0, ctx);
}

/*
 * Kernel-served queues. A message to such a queue is served by the thread that delivers
 * it (a sender, or the node thread relaying a message from another process) when nothing
 * else is queued or being served there: that thread becomes the queue's holder, queues
 * the message and takes it back at once (so its sequence number and rights are exactly
 * what a receiver would see), serves it with the queue's demux once it has dropped the
 * lock (mvm__serve), and lets the queue go. A receiver holds the queue from taking a
 * message until its next receive, so one message of the queue is served at a time, in
 * queue order: a message never overtakes one queued or being served before it. Messages
 * larger than the queue's limit are queued; relayed ones only if relay_ok accepts them
 * (the node thread serves every process's traffic and must not stay away long).
 */
void
mvm__mq_enqueue_serve(struct mvm_kmsg *kmsg, struct mvm_serve *sv, bool relayed,
    struct mvm_ctx *ctx)
{
	struct mvm_port *dest = kmsg->dest;
	struct mvm_pset *ps = dest->pset;
	const struct mvm_direct *d = ps != NULL ? ps->mq.direct : NULL;
	bool serve = sv != NULL && d != NULL && ps->mq.holder == NULL && ps->mq.head == NULL &&
	    dest->active && dest->remote == NULL && kmsg->size <= d->max_size &&
	    (!relayed || (d->relay_ok != NULL && d->relay_ok(kmsg->msg->msgh_id)));

	MVM_ASSERT_LOCKED(&mvm_ipc.lock);
	if (serve) {
		ps->mq.holder = mvm__self_waiter();
		ps->mq.holder_sends = true;
	}
	mvm__mq_enqueue(kmsg, ctx);
	if (!serve)
		return;
	sv->set = ps;
	if ((sv->k = mvm__mq_dequeue(&ps->mq, ctx)) != NULL)
		sv->mr = mvm__kmsg_copyout(sv->k, ctx);
}

void
mvm__serve(struct mvm_serve *sv)
{
	struct mvm_ctx ctx = MVM_CTX_INIT;
	struct mvm_pset *ps = sv->set;
	union {
		mach_msg_header_t head;
		char buf[MVM_DIRECT_MAX];
	} out;

	if (ps == NULL)
		return;
	MVM_ASSERT_NO_LOCKS();
	if (sv->k != NULL) {
		if (sv->mr == MACH_MSG_SUCCESS)
			mvm__server_handle(ps->mq.direct->demux, sv->k->msg, &out.head,
			    ps->mq.direct->max_size);
		else
			mach_msg_destroy(sv->k->msg); /* no room for its rights: as mach_msg_server */
		mvm__kmsg_free(sv->k);
	}
	mvm__ipc_lock();
	mvm__mq_release(&ps->mq, &ctx);
	if (ps->destroyed) {
		/* The set's name went while we served: it was left for us to free. */
		mvm__free(ps);
		mvm_ipc.psets--;
	}
	mvm__ipc_unlock();
	mvm__ctx_finish(&ctx);
	sv->set = NULL;
	sv->k = NULL;
}

void
mvm__mq_release(struct mvm_mqueue *mq, struct mvm_ctx *ctx)
{
	MVM_ASSERT_LOCKED(&mvm_ipc.lock);
	mq->holder = NULL;
	mq->holder_sends = false;
	if (mq->head != NULL)
		mvm__wake_one(&mq->receivers, 0, ctx);
}

void
mvm__mq_unlink(struct mvm_mqueue *mq, struct mvm_kmsg *kmsg)
{
	struct mvm_kmsg **pp = &mq->head, *prev = NULL;

	while (*pp != NULL && *pp != kmsg) {
		prev = *pp;
		pp = &(*pp)->next;
	}
	if (*pp == NULL)
		return;
	*pp = kmsg->next;
	if (mq->tail == kmsg)
		mq->tail = prev;
	kmsg->next = NULL;
}

struct mvm_kmsg *
mvm__mq_dequeue(struct mvm_mqueue *mq, struct mvm_ctx *ctx)
{
	struct mvm_kmsg *kmsg = mq->head;
	struct mvm_port *port;

	MVM_ASSERT_LOCKED(&mvm_ipc.lock);
	if (kmsg == NULL)
		return NULL;
	mq->head = kmsg->next;
	if (mq->head == NULL)
		mq->tail = NULL;
	kmsg->next = NULL;
	port = kmsg->dest;
	kmsg->msg->msgh_seqno = port->seqno++;
	port->msgcount--;
	mvm_ipc.kmsgs_queued--;
	mvm_ipc.msgs_received++;
	for (uint32_t i = 0; i < kmsg->nports; i++)
		if (kmsg->ports[i].type == MACH_MSG_TYPE_PORT_RECEIVE && MVM_PORT_VALID(kmsg->ports[i].port))
			kmsg->ports[i].port->transit_dest = NULL;
	if (port->msgcount < port->qlimit)
		mvm__wake_one(&port->senders, 0, ctx);
	return kmsg;
}

kern_return_t
mvm__ipc_set_direct(mach_port_t name, const struct mvm_direct *d)
{
	uint32_t idx;
	kern_return_t kr = KERN_SUCCESS;

	if (d == NULL || d->demux == NULL || d->max_size > MVM_DIRECT_MAX ||
	    d->max_size < sizeof(mig_reply_header_t))
		return KERN_INVALID_ARGUMENT;
	mvm__ipc_init();
	mvm__ipc_lock();
	idx = mvm__entry_lookup(name);
	if (idx == MVM_NO_ENTRY || !(mvm__entry(idx)->type & MACH_PORT_TYPE_PORT_SET))
		kr = KERN_INVALID_NAME;
	else
		mvm__entry(idx)->obj.pset->mq.direct = d;
	mvm__ipc_unlock();
	return kr;
}

void
mvm__ipc_direct_done(mach_port_t name)
{
	struct mvm_ctx ctx = MVM_CTX_INIT;
	struct mvm_waiter *w = mvm__self_waiter();
	uint32_t idx;

	mvm__ipc_lock();
	idx = mvm__entry_lookup(name);
	if (idx != MVM_NO_ENTRY && (mvm__entry(idx)->type & MACH_PORT_TYPE_PORT_SET) &&
	    mvm__entry(idx)->obj.pset->mq.holder == w)
		mvm__mq_release(&mvm__entry(idx)->obj.pset->mq, &ctx);
	mvm__ipc_unlock();
	mvm__ctx_finish(&ctx);
}
