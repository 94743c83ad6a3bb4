/*
 * src/ipc/mach_msg.c: mach_msg(), send then receive.
 *
 * Send: copy the message in (unlocked), then under the IPC lock check every right; if the
 * destination queue is full and the right is not send-once, wait for room (or time out)
 * before anything is taken, so a send that fails for any reason changes nothing and the
 * caller keeps every right and region it named. Then take the rights and queue the
 * message. Receive: under the lock take the first message of the port or set, give it a
 * sequence number, translate its rights into names; copy it out after the lock is
 * dropped.
 *
 * Kernel-served queues (mvm__ipc_set_direct; the in-process kernel's control set). As a
 * message to a Mach kernel object is served by the sending thread, a message to such a
 * queue is served by its sender when nothing else is queued or being served there
 * (mvm__mq_enqueue_serve, mqueue.c). Kernel sends (MACH_SEND_ALWAYS, possibly under the
 * kernel's lock) are always queued.
 */
#include <errno.h>
#include <string.h>
#include <time.h>

#include "ipc/ipc.h"
#include "sys/sys.h"

static void
deadline_after(struct timespec *ts, mach_msg_timeout_t ms)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
	ts->tv_sec += ms / 1000;
	ts->tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

static mach_msg_return_t
msg_send(mach_msg_header_t *msg, mach_msg_option_t option, mach_msg_size_t send_size,
    mach_msg_timeout_t timeout)
{
	struct mvm_copyin ci;
	struct mvm_ctx ctx = MVM_CTX_INIT;
	struct mvm_waiter *w = mvm__self_waiter();
	struct timespec deadline;
	bool have_deadline = false;
	mach_msg_return_t mr, pending = 0;
	struct mvm_serve sv = { NULL, NULL, MACH_MSG_SUCCESS };

	if (option & MACH_SEND_NOTIFY)
		return MACH_SEND_INVALID_NOTIFY; /* msg-accepted notifications: not supported */
	if ((mr = mvm__kmsg_copyin_data(msg, send_size, &ci)) != MACH_MSG_SUCCESS)
		return mr;

	mvm__ipc_lock();
	for (;;) {
		struct mvm_port *dest;
		bool woken;
		int r;

		if ((mr = mvm__kmsg_copyin_check(&ci)) != MACH_MSG_SUCCESS)
			break;
		dest = mvm__entry(mvm__entry_lookup(ci.dest_name))->obj.port;
		if (mvm__msg_received_type(ci.dest_disp) == MACH_MSG_TYPE_PORT_SEND_ONCE ||
		    (option & MACH_SEND_ALWAYS) || dest->msgcount < dest->qlimit) {
			mvm__kmsg_copyin_commit(&ci, &ctx);
			/* Kernel sends (perhaps under the kernel's lock) are only queued. */
			mvm__mq_enqueue_serve(ci.kmsg, (option & MACH_SEND_ALWAYS) ? NULL : &sv,
			    false, &ctx);
			break;
		}
		/* The queue is full: wait for room, then check everything again. */
		if (((option & MACH_SEND_TIMEOUT) && timeout == 0) || pending != 0) {
			mr = pending != 0 ? pending : MACH_SEND_TIMED_OUT;
			break;
		}
		if ((option & MACH_SEND_TIMEOUT) && !have_deadline) {
			deadline_after(&deadline, timeout);
			have_deadline = true;
		}
		mvm__wlist_add(&dest->senders, w);
		mvm__ipc_unlock();
		r = mvm__wait(w, have_deadline ? &deadline : NULL);
		mvm__ipc_lock();
		woken = w->list == NULL;
		mvm__wlist_remove(w);
		if (r == -ETIMEDOUT)
			pending = MACH_SEND_TIMED_OUT;
		else if (r == -EINTR && (option & MACH_SEND_INTERRUPT))
			pending = MACH_SEND_INTERRUPTED;
		/* A wake-up that crossed the timeout or signal was meant for us: look once
		 * more, or the room it announced would be lost to the other senders. */
		if (pending != 0 && !woken) {
			mr = pending;
			break;
		}
	}
	mvm__ipc_unlock();
	mvm__ctx_finish(&ctx);
	mvm__kmsg_copyin_done(&ci, mr == MACH_MSG_SUCCESS);
	mvm__serve(&sv);
	return mr;
}

/* Find the queue `name` receives from; *mr says why not. */
static struct mvm_mqueue *
rcv_queue(mach_port_t name, mach_msg_return_t *mr)
{
	uint32_t idx = mvm__entry_lookup(name);
	struct mvm_entry *e;

	if (idx == MVM_NO_ENTRY) {
		*mr = MACH_RCV_INVALID_NAME;
		return NULL;
	}
	e = mvm__entry(idx);
	if (e->type & MACH_PORT_TYPE_PORT_SET)
		return &e->obj.pset->mq;
	if (!(e->type & MACH_PORT_TYPE_RECEIVE)) {
		*mr = MACH_RCV_INVALID_NAME;
		return NULL;
	}
	if (e->obj.port->pset != NULL) {
		*mr = MACH_RCV_IN_SET;
		return NULL;
	}
	return &e->obj.port->mq;
}

static mach_msg_return_t
msg_receive(mach_msg_header_t *msg, mach_msg_option_t option, mach_msg_size_t rcv_size,
    mach_port_t rcv_name, mach_msg_timeout_t timeout)
{
	struct mvm_ctx ctx = MVM_CTX_INIT;
	struct mvm_waiter *w = mvm__self_waiter();
	struct mvm_kmsg *k = NULL;
	struct timespec deadline;
	bool have_deadline = false, waited = false;
	mach_msg_return_t mr = MACH_MSG_SUCCESS, pending = 0;
	mach_msg_header_t too_large;
	bool large = false, destroyed = false;

	if (option & MACH_RCV_NOTIFY)
		return MACH_RCV_INVALID_NOTIFY;
	mvm__ipc_lock();
	for (;;) {
		struct mvm_mqueue *mq = rcv_queue(rcv_name, &mr);
		bool woken;
		int r;

		if (mq == NULL) {
			if (waited && mr == MACH_RCV_INVALID_NAME)
				mr = MACH_RCV_PORT_DIED;
			break;
		}
		/* A receiver of a kernel-served queue held it since its last receive: that
		 * message is served. While another thread holds it, the queue looks empty. */
		if (mq->holder == w)
			mvm__mq_release(mq, &ctx);
		if (mq->head != NULL && mq->holder == NULL) {
			if (mq->head->size > rcv_size) {
				too_large = *mq->head->msg;
				too_large.msgh_size = mq->head->size;
				mr = MACH_RCV_TOO_LARGE;
				if (option & MACH_RCV_LARGE) {
					/* The message stays queued: offer it to the next receiver,
					 * or a wake-up it caused would be lost with this one. */
					large = true;
					mvm__wake_one(&mq->receivers, 0, &ctx);
					break;
				}
				/* Mach: the message is taken (using a sequence number) and destroyed. */
				k = mvm__mq_dequeue(mq, &ctx);
				too_large.msgh_seqno = k->msg->msgh_seqno;
				too_large.msgh_local_port = k->dest->recv_entry != MVM_NO_ENTRY ?
				    mvm__entry_name(k->dest->recv_entry) : MACH_PORT_NULL;
				too_large.msgh_remote_port = MACH_PORT_NULL;
				too_large.msgh_bits = 0;
				mvm__kmsg_destroy(k, &ctx);
				k = NULL;
				destroyed = true;
				break;
			}
			k = mvm__mq_dequeue(mq, &ctx);
			mr = mvm__kmsg_copyout(k, &ctx);
			if (mq->direct != NULL)
				mq->holder = w;
			break;
		}
		if (((option & MACH_RCV_TIMEOUT) && timeout == 0) || pending != 0) {
			mr = pending != 0 ? pending : MACH_RCV_TIMED_OUT;
			break;
		}
		if ((option & MACH_RCV_TIMEOUT) && !have_deadline) {
			deadline_after(&deadline, timeout);
			have_deadline = true;
		}
		mvm__wlist_add(&mq->receivers, w);
		mvm__ipc_unlock();
		r = mvm__wait(w, have_deadline ? &deadline : NULL);
		mvm__ipc_lock();
		woken = w->list == NULL;
		mvm__wlist_remove(w);
		waited = true;
		if (w->result != 0) {
			mr = w->result;
			w->result = 0;
			break;
		}
		if (r == -ETIMEDOUT)
			pending = MACH_RCV_TIMED_OUT;
		else if (r == -EINTR && (option & MACH_RCV_INTERRUPT))
			pending = MACH_RCV_INTERRUPTED;
		/* A wake-up that crossed the timeout or signal was meant for us: look once
		 * more, or the message it announced would wait while others sleep. */
		if (pending != 0 && !woken) {
			mr = pending;
			break;
		}
	}
	mvm__ipc_unlock();
	mvm__ctx_finish(&ctx);
	if (k != NULL) {
		memcpy(msg, k->msg, k->size);
		mvm__kmsg_free(k);
	} else if ((large || destroyed) && rcv_size >= sizeof(mach_msg_header_t)) {
		if (large)
			msg->msgh_size = too_large.msgh_size;
		else
			*msg = too_large;
	}
	return mr;
}

mach_msg_return_t
mach_msg(mach_msg_header_t *msg, mach_msg_option_t option, mach_msg_size_t send_size,
    mach_msg_size_t rcv_size, mach_port_t rcv_name, mach_msg_timeout_t timeout,
    mach_port_t notify)
{
	mach_msg_return_t mr;

	(void)notify;
	mvm__ipc_init();
	if (option & MACH_SEND_MSG) {
		if (msg == NULL)
			return MACH_SEND_INVALID_DATA;
		if ((mr = msg_send(msg, option, send_size, timeout)) != MACH_MSG_SUCCESS)
			return mr;
	}
	if (option & MACH_RCV_MSG) {
		if (msg == NULL)
			return MACH_RCV_INVALID_DATA;
		return msg_receive(msg, option, rcv_size, rcv_name, timeout);
	}
	return MACH_MSG_SUCCESS;
}
