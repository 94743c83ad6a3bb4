/*
 * src/ipc/right.c: port rights: taking them out of the space (copy-in), putting them in
 * (copy-out), and releasing them.
 *
 * Accounting. An entry that denotes a port holds one reference to it, whatever rights it
 * carries; so does every right in a message. port->srights counts send rights (an entry
 * with a send right counts once, whatever its user references; each right in a message
 * counts once); port->sorights counts send-once rights. When srights falls to zero an
 * armed no-senders request fires.
 *
 * Copy-in is done in two passes over a message so that a message that names a bad right
 * changes nothing: mvm__right_check() models what each right would take, using scratch
 * fields in the entries stamped with the pass number, and mvm__right_commit() takes the
 * rights in the same order. Everything here runs under the IPC lock.
 */
#include "ipc/ipc.h"
#include "ipc/node.h"
#include "sys/sys.h"

static void
srights_dec(struct mvm_port *port, struct mvm_ctx *ctx)
{
	struct mvm_port *ns;

	port->srights--;
	if (port->srights == 0 && port->remote != NULL)
		mvm__node_proxy_unsent(port, ctx);
	if (port->srights == 0 && port->active && (ns = port->nsrequest) != NULL) {
		port->nsrequest = NULL;
		mvm__notify_no_senders(ns, port->mscount, ctx);
	}
}

void
mvm__send_release(struct mvm_port *port, struct mvm_ctx *ctx)
{
	srights_dec(port, ctx);
	mvm__port_release(port);
}

void
mvm__sonce_release_used(struct mvm_port *port)
{
	port->sorights--;
	mvm__port_release(port);
}

void
mvm__kport_release(struct mvm_kport kp, struct mvm_ctx *ctx)
{
	if (!MVM_PORT_VALID(kp.port))
		return;
	switch (kp.type) {
	case MACH_MSG_TYPE_PORT_SEND:
		mvm__send_release(kp.port, ctx);
		break;
	case MACH_MSG_TYPE_PORT_SEND_ONCE:
		/* A send-once right destroyed unused says so to its port. */
		if (kp.port->active)
			mvm__notify_send_once(kp.port, ctx);
		else
			mvm__sonce_release_used(kp.port);
		break;
	case MACH_MSG_TYPE_PORT_RECEIVE:
		mvm__port_destroy_receive(kp.port, ctx);
		break;
	default:
		break;
	}
}

void
mvm__entry_dead(uint32_t idx, struct mvm_ctx *ctx)
{
	struct mvm_entry *e = mvm__entry(idx);
	struct mvm_port *port = e->obj.port;
	struct mvm_port *dn = e->dnrequest;

	if (e->type & MACH_PORT_TYPE_SEND) {
		port->srights--;
	} else if (e->type & MACH_PORT_TYPE_SEND_ONCE) {
		port->sorights--;
		e->urefs = 1;
	}
	e->type = MACH_PORT_TYPE_DEAD_NAME;
	e->obj.port = NULL;
	e->dnrequest = NULL;
	mvm__port_release(port);
	if (dn != NULL) {
		/* The notification carries a user reference for the dead name. */
		if (e->urefs < MACH_PORT_UREFS_MAX)
			e->urefs++;
		mvm__notify_dead_name(dn, mvm__entry_name(idx), ctx);
	}
}

kern_return_t
mvm__entry_drop_send(uint32_t idx, mach_port_urefs_t n, struct mvm_ctx *ctx)
{
	struct mvm_entry *e = mvm__entry(idx);
	struct mvm_port *port = e->obj.port;

	e->urefs -= n;
	if (e->urefs > 0)
		return KERN_SUCCESS;
	e->type &= ~MACH_PORT_TYPE_SEND;
	srights_dec(port, ctx);
	if (!(e->type & MACH_PORT_TYPE_RECEIVE)) {
		port->send_entry = MVM_NO_ENTRY;
		mvm__entry_free(idx, ctx);
		mvm__port_release(port);
	}
	return KERN_SUCCESS;
}

kern_return_t
mvm__entry_destroy(uint32_t idx, struct mvm_ctx *ctx)
{
	struct mvm_entry *e = mvm__entry(idx);
	mach_port_type_t type = e->type;
	struct mvm_port *port = e->obj.port;

	if (type & MACH_PORT_TYPE_PORT_SET) {
		struct mvm_pset *pset = e->obj.pset;

		mvm__entry_free(idx, ctx);
		mvm__pset_destroy(pset, ctx);
	} else if (type & MACH_PORT_TYPE_DEAD_NAME) {
		mvm__entry_free(idx, ctx);
	} else if (type & MACH_PORT_TYPE_SEND_ONCE) {
		mvm__so_unlink(port, idx);
		mvm__entry_free(idx, ctx);
		mvm__kport_release((struct mvm_kport){ port, MACH_MSG_TYPE_PORT_SEND_ONCE }, ctx);
	} else if (type & MACH_PORT_TYPE_RECEIVE) {
		if (type & MACH_PORT_TYPE_SEND)
			srights_dec(port, ctx);
		e->type = MACH_PORT_TYPE_NONE;
		port->send_entry = MVM_NO_ENTRY;
		port->recv_entry = MVM_NO_ENTRY;
		mvm__entry_free(idx, ctx);
		mvm__port_destroy_receive(port, ctx); /* takes the entry's reference */
	} else if (type & MACH_PORT_TYPE_SEND) {
		srights_dec(port, ctx);
		port->send_entry = MVM_NO_ENTRY;
		mvm__entry_free(idx, ctx);
		mvm__port_release(port);
	} else {
		return KERN_INVALID_NAME;
	}
	return KERN_SUCCESS;
}

/* ---- copy-in --------------------------------------------------------------------- */

static struct mvm_entry *
scratch(uint32_t idx)
{
	struct mvm_entry *e = mvm__entry(idx);

	if (e->stamp != mvm_ipc.stamp) {
		e->stamp = mvm_ipc.stamp;
		e->s_send_used = 0;
		e->s_recv_moved = false;
		e->s_so_moved = false;
	}
	return e;
}

/* Returns MACH_MSG_SUCCESS or 1 (the caller picks the error for its position). */
mach_msg_return_t
mvm__right_check(mach_port_t name, mach_msg_type_name_t disp)
{
	uint32_t idx;
	struct mvm_entry *e;

	if (!MACH_PORT_VALID(name))
		return disp == MACH_MSG_TYPE_MOVE_RECEIVE && name == MACH_PORT_DEAD ? 1 : 0;
	if ((idx = mvm__entry_lookup(name)) == MVM_NO_ENTRY)
		return 1;
	e = scratch(idx);
	if (e->type & MACH_PORT_TYPE_DEAD_NAME) {
		switch (disp) {
		case MACH_MSG_TYPE_COPY_SEND:
			return e->urefs > e->s_send_used ? 0 : 1;
		case MACH_MSG_TYPE_MOVE_SEND:
		case MACH_MSG_TYPE_MOVE_SEND_ONCE:
			if (e->urefs <= e->s_send_used)
				return 1;
			e->s_send_used++;
			return 0;
		default:
			return 1;
		}
	}
	switch (disp) {
	case MACH_MSG_TYPE_MOVE_RECEIVE:
		if (!(e->type & MACH_PORT_TYPE_RECEIVE) || e->s_recv_moved)
			return 1;
		e->s_recv_moved = true;
		return 0;
	case MACH_MSG_TYPE_COPY_SEND:
		return (e->type & MACH_PORT_TYPE_SEND) && e->urefs > e->s_send_used ? 0 : 1;
	case MACH_MSG_TYPE_MOVE_SEND:
		if (!(e->type & MACH_PORT_TYPE_SEND) || e->urefs <= e->s_send_used)
			return 1;
		e->s_send_used++;
		return 0;
	case MACH_MSG_TYPE_MAKE_SEND:
	case MACH_MSG_TYPE_MAKE_SEND_ONCE:
		return (e->type & MACH_PORT_TYPE_RECEIVE) && !e->s_recv_moved ? 0 : 1;
	case MACH_MSG_TYPE_MOVE_SEND_ONCE:
		if (!(e->type & MACH_PORT_TYPE_SEND_ONCE) || e->s_so_moved)
			return 1;
		e->s_so_moved = true;
		return 0;
	default:
		return 1;
	}
}

struct mvm_kport
mvm__right_commit(mach_port_t name, mach_msg_type_name_t disp, struct mvm_ctx *ctx)
{
	struct mvm_kport kp = { NULL, mvm__msg_received_type(disp) };
	uint32_t idx;
	struct mvm_entry *e;
	struct mvm_port *port;

	if (name == MACH_PORT_NULL)
		return kp;
	if (name == MACH_PORT_DEAD) {
		kp.port = MVM_PORT_DEAD;
		return kp;
	}
	idx = mvm__entry_lookup(name);
	e = mvm__entry(idx);
	if (e->type & MACH_PORT_TYPE_DEAD_NAME) {
		kp.port = MVM_PORT_DEAD;
		if (disp != MACH_MSG_TYPE_COPY_SEND && --e->urefs == 0)
			mvm__entry_free(idx, ctx);
		return kp;
	}
	port = e->obj.port;
	kp.port = port;
	switch (disp) {
	case MACH_MSG_TYPE_MOVE_RECEIVE:
		e->type &= ~MACH_PORT_TYPE_RECEIVE;
		mvm__port_clear_receiver(port, ctx);
		if (!(e->type & MACH_PORT_TYPE_SEND)) {
			port->send_entry = MVM_NO_ENTRY;
			mvm__entry_free(idx, ctx); /* the entry's reference goes to the message */
		} else {
			mvm__port_ref(port);
		}
		break;
	case MACH_MSG_TYPE_COPY_SEND:
		port->srights++;
		mvm__port_ref(port);
		break;
	case MACH_MSG_TYPE_MOVE_SEND:
		if (--e->urefs > 0) {
			port->srights++;
			mvm__port_ref(port);
		} else {
			e->type &= ~MACH_PORT_TYPE_SEND;
			if (!(e->type & MACH_PORT_TYPE_RECEIVE)) {
				port->send_entry = MVM_NO_ENTRY;
				mvm__entry_free(idx, ctx);
			} else {
				mvm__port_ref(port);
			}
		}
		break;
	case MACH_MSG_TYPE_MAKE_SEND:
		port->mscount++;
		port->srights++;
		mvm__port_ref(port);
		break;
	case MACH_MSG_TYPE_MAKE_SEND_ONCE:
		port->sorights++;
		mvm__port_ref(port);
		break;
	case MACH_MSG_TYPE_MOVE_SEND_ONCE:
		mvm__so_unlink(port, idx);
		mvm__entry_free(idx, ctx);
		break;
	}
	return kp;
}

/* ---- copy-out -------------------------------------------------------------------- */

mach_port_t
mvm__right_copyout(struct mvm_kport kp, struct mvm_ctx *ctx)
{
	struct mvm_port *port = kp.port;
	struct mvm_entry *e;
	uint32_t idx;

	if (port == NULL)
		return MACH_PORT_NULL;
	if (port == MVM_PORT_DEAD)
		return MACH_PORT_DEAD;
	switch (kp.type) {
	case MACH_MSG_TYPE_PORT_SEND:
		if (!port->active) {
			mvm__send_release(port, ctx);
			return MACH_PORT_DEAD;
		}
		if ((idx = port->send_entry) != MVM_NO_ENTRY) {
			e = mvm__entry(idx);
			if (e->type & MACH_PORT_TYPE_SEND) {
				/* Merge: one send right more becomes one user reference more (pegged). */
				if (e->urefs < MACH_PORT_UREFS_MAX)
					e->urefs++;
				port->srights--;
			} else {
				e->type |= MACH_PORT_TYPE_SEND;
				e->urefs = 1;
			}
			mvm__port_release(port); /* the entry already holds a reference */
			return mvm__entry_name(idx);
		}
		if ((idx = mvm__entry_alloc()) == MVM_NO_ENTRY) {
			mvm__send_release(port, ctx);
			return MACH_PORT_NULL;
		}
		e = mvm__entry(idx);
		e->type = MACH_PORT_TYPE_SEND;
		e->urefs = 1;
		e->obj.port = port;
		port->send_entry = idx;
		return mvm__entry_name(idx);
	case MACH_MSG_TYPE_PORT_SEND_ONCE:
		if (!port->active) {
			mvm__sonce_release_used(port);
			return MACH_PORT_DEAD;
		}
		if ((idx = mvm__entry_alloc()) == MVM_NO_ENTRY) {
			mvm__kport_release(kp, ctx);
			return MACH_PORT_NULL;
		}
		e = mvm__entry(idx);
		e->type = MACH_PORT_TYPE_SEND_ONCE;
		e->urefs = 1;
		e->obj.port = port;
		mvm__so_link(port, idx);
		return mvm__entry_name(idx);
	case MACH_MSG_TYPE_PORT_RECEIVE:
		if ((idx = port->send_entry) != MVM_NO_ENTRY) {
			e = mvm__entry(idx);
			e->type |= MACH_PORT_TYPE_RECEIVE;
			mvm__port_release(port);
		} else {
			if ((idx = mvm__entry_alloc()) == MVM_NO_ENTRY) {
				mvm__port_destroy_receive(port, ctx);
				return MACH_PORT_NULL;
			}
			e = mvm__entry(idx);
			e->type = MACH_PORT_TYPE_RECEIVE;
			e->urefs = 0;
			e->obj.port = port;
			port->send_entry = idx;
		}
		port->recv_entry = idx;
		return mvm__entry_name(idx);
	default:
		mvm__kport_release(kp, ctx);
		return MACH_PORT_NULL;
	}
}
