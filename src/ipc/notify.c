/*
 * src/ipc/notify.c: notifications the IPC layer sends (notify.defs ids, base 64).
 *
 * Each is sent through a send-once right the requester gave us, like a kernel send: it
 * ignores the queue limit and never blocks. If no memory is left for the message, the
 * right is consumed without a message and the loss is counted.
 * Everything here runs under the IPC lock.
 */
#include <string.h>

#include <mach/notify.h>
#include "ipc/ipc.h"
#include "sys/sys.h"

static uint64_t notifications_lost;

static struct mvm_kmsg *
notify_alloc(struct mvm_port *so, mach_msg_id_t id, mach_msg_size_t size, bool complex)
{
	struct mvm_kmsg *k;

	if (!so->active || (k = mvm__kmsg_alloc(size)) == NULL) {
		if (so->active)
			notifications_lost++;
		mvm__sonce_release_used(so);
		return NULL;
	}
	memset(k->msg, 0, size);
	k->msg->msgh_bits = MACH_MSGH_BITS(MACH_MSG_TYPE_MOVE_SEND_ONCE, 0) |
	    (complex ? MACH_MSGH_BITS_COMPLEX : 0);
	k->msg->msgh_size = size;
	k->msg->msgh_id = id;
	k->dest = so; /* the send-once right and its reference move into the message */
	k->dest_type = MACH_MSG_TYPE_PORT_SEND_ONCE;
	mvm_ipc.notifications++;
	return k;
}

static void
set_type(mach_msg_type_t *t, unsigned name, unsigned size)
{
	t->msgt_name = name;
	t->msgt_size = size;
	t->msgt_number = 1;
	t->msgt_inline = 1;
	t->msgt_longform = 0;
	t->msgt_deallocate = 0;
	t->msgt_unused = 0;
}

static void
notify_name(struct mvm_port *so, mach_msg_id_t id, mach_port_t name, struct mvm_ctx *ctx)
{
	mach_port_deleted_notification_t *n;
	struct mvm_kmsg *k = notify_alloc(so, id, sizeof(*n), false);

	if (k == NULL)
		return;
	n = (void *)k->msg;
	set_type(&n->not_type, MACH_MSG_TYPE_PORT_NAME, 32);
	n->not_port = name;
	mvm__mq_enqueue(k, ctx);
}

void
mvm__notify_port_deleted(struct mvm_port *so, mach_port_t name, struct mvm_ctx *ctx)
{
	notify_name(so, MACH_NOTIFY_PORT_DELETED, name, ctx);
}

void
mvm__notify_dead_name(struct mvm_port *so, mach_port_t name, struct mvm_ctx *ctx)
{
	notify_name(so, MACH_NOTIFY_DEAD_NAME, name, ctx);
}

void
mvm__notify_send_once(struct mvm_port *so, struct mvm_ctx *ctx)
{
	struct mvm_kmsg *k = notify_alloc(so, MACH_NOTIFY_SEND_ONCE,
	    sizeof(mach_send_once_notification_t), false);

	if (k != NULL)
		mvm__mq_enqueue(k, ctx);
}

void
mvm__notify_no_senders(struct mvm_port *so, mach_port_mscount_t mscount, struct mvm_ctx *ctx)
{
	mach_no_senders_notification_t *n;
	struct mvm_kmsg *k = notify_alloc(so, MACH_NOTIFY_NO_SENDERS, sizeof(*n), false);

	if (k == NULL)
		return;
	n = (void *)k->msg;
	set_type(&n->not_type, MACH_MSG_TYPE_INTEGER_32, 32);
	n->not_count = mscount;
	mvm__mq_enqueue(k, ctx);
}

void
mvm__notify_port_destroyed(struct mvm_port *so, struct mvm_port *rcv, struct mvm_ctx *ctx)
{
	mach_port_destroyed_notification_t *n;
	struct mvm_kmsg *k = notify_alloc(so, MACH_NOTIFY_PORT_DESTROYED, sizeof(*n), true);

	if (k == NULL || (k->ports = mvm__malloc(sizeof(*k->ports))) == NULL) {
		if (k != NULL) {
			/* No room for the right: the message goes, the receive right dies. */
			mvm__kmsg_destroy(k, ctx);
		}
		mvm__port_destroy_receive(rcv, ctx);
		return;
	}
	n = (void *)k->msg;
	set_type(&n->not_type, MACH_MSG_TYPE_PORT_RECEIVE, 32);
	n->not_port = MACH_PORT_NULL;
	k->nports = 1;
	k->ports[0] = (struct mvm_kport){ rcv, MACH_MSG_TYPE_PORT_RECEIVE };
	mvm__mq_enqueue(k, ctx);
}
