/*
 * src/ipc/mach_port.c: the mach_port_* calls on the task's name space.
 *
 * In Mach these are RPCs to the task port; here they are direct calls with the same
 * signatures and codes. `task` must be mach_task_self(); anything else answers
 * MACH_SEND_INVALID_DEST, as the RPC would.
 */
#include <string.h>

#include "ipc/ipc.h"
#include "sys/sys.h"

mach_port_t
mach_task_self(void)
{
	mvm__ipc_init();
	return MVM_TASK_SELF_NAME;
}

#define CHECK_TASK(task) \
	do { \
		mvm__ipc_init(); \
		if ((task) != MVM_TASK_SELF_NAME) \
			return MACH_SEND_INVALID_DEST; \
	} while (0)

/* Look a name up under the lock; return its entry index or an error. */
static kern_return_t
lookup(mach_port_t name, uint32_t *idx)
{
	if (!MACH_PORT_VALID(name))
		return KERN_INVALID_NAME;
	*idx = mvm__entry_lookup(name);
	return *idx == MVM_NO_ENTRY ? KERN_INVALID_NAME : KERN_SUCCESS;
}

static kern_return_t
allocate_common(mach_port_right_t right, uint32_t idx)
{
	struct mvm_entry *e = mvm__entry(idx);

	switch (right) {
	case MACH_PORT_RIGHT_RECEIVE: {
		struct mvm_port *p = mvm__port_alloc();

		if (p == NULL)
			return KERN_RESOURCE_SHORTAGE;
		mvm_ipc.ports++;
		e->type = MACH_PORT_TYPE_RECEIVE;
		e->obj.port = p;
		p->recv_entry = p->send_entry = idx;
		return KERN_SUCCESS;
	}
	case MACH_PORT_RIGHT_PORT_SET: {
		struct mvm_pset *s = mvm__calloc(1, sizeof(*s));

		if (s == NULL)
			return KERN_RESOURCE_SHORTAGE;
		mvm_ipc.psets++;
		mvm__mq_init(&s->mq);
		s->entry = idx;
		e->type = MACH_PORT_TYPE_PORT_SET;
		e->obj.pset = s;
		return KERN_SUCCESS;
	}
	case MACH_PORT_RIGHT_DEAD_NAME:
		e->type = MACH_PORT_TYPE_DEAD_NAME;
		e->urefs = 1;
		return KERN_SUCCESS;
	default:
		return KERN_INVALID_VALUE;
	}
}

static void
entry_unalloc(uint32_t idx)
{
	struct mvm_ctx ctx = MVM_CTX_INIT;

	/* A fresh entry with no rights: freeing it sends nothing. */
	mvm__entry(idx)->type = MACH_PORT_TYPE_DEAD_NAME;
	mvm__entry_free(idx, &ctx);
}

kern_return_t
mach_port_allocate(ipc_space_t task, mach_port_right_t right, mach_port_t *name)
{
	uint32_t idx;
	kern_return_t kr;

	CHECK_TASK(task);
	if (right != MACH_PORT_RIGHT_RECEIVE && right != MACH_PORT_RIGHT_PORT_SET &&
	    right != MACH_PORT_RIGHT_DEAD_NAME)
		return KERN_INVALID_VALUE;
	if (name == NULL)
		return KERN_INVALID_ARGUMENT;
	mvm__ipc_lock();
	if ((idx = mvm__entry_alloc()) == MVM_NO_ENTRY) {
		mvm__ipc_unlock();
		return KERN_RESOURCE_SHORTAGE;
	}
	if ((kr = allocate_common(right, idx)) != KERN_SUCCESS)
		entry_unalloc(idx);
	else
		*name = mvm__entry_name(idx);
	mvm__ipc_unlock();
	return kr;
}

kern_return_t
mach_port_allocate_name(ipc_space_t task, mach_port_right_t right, mach_port_t name)
{
	uint32_t idx;
	kern_return_t kr;

	CHECK_TASK(task);
	if (right != MACH_PORT_RIGHT_RECEIVE && right != MACH_PORT_RIGHT_PORT_SET &&
	    right != MACH_PORT_RIGHT_DEAD_NAME)
		return KERN_INVALID_VALUE;
	if (!MACH_PORT_VALID(name) || name == MVM_TASK_SELF_NAME)
		return KERN_INVALID_VALUE;
	mvm__ipc_lock();
	if ((kr = mvm__entry_alloc_name(name, &idx)) == KERN_SUCCESS &&
	    (kr = allocate_common(right, idx)) != KERN_SUCCESS)
		entry_unalloc(idx);
	mvm__ipc_unlock();
	return kr;
}

kern_return_t
mach_port_deallocate(ipc_space_t task, mach_port_t name)
{
	struct mvm_ctx ctx = MVM_CTX_INIT;
	struct mvm_entry *e;
	uint32_t idx;
	kern_return_t kr;

	CHECK_TASK(task);
	if (!MACH_PORT_VALID(name))
		return KERN_SUCCESS; /* Mach: deallocating null or dead is a no-op */
	mvm__ipc_lock();
	if ((kr = lookup(name, &idx)) != KERN_SUCCESS)
		goto out;
	e = mvm__entry(idx);
	if (e->type & MACH_PORT_TYPE_SEND) {
		kr = mvm__entry_drop_send(idx, 1, &ctx);
	} else if (e->type & MACH_PORT_TYPE_SEND_ONCE) {
		kr = mvm__entry_destroy(idx, &ctx);
	} else if (e->type & MACH_PORT_TYPE_DEAD_NAME) {
		if (--e->urefs == 0)
			mvm__entry_free(idx, &ctx);
	} else {
		kr = KERN_INVALID_RIGHT;
	}
out:
	mvm__ipc_unlock();
	mvm__ctx_finish(&ctx);
	return kr;
}

kern_return_t
mach_port_destroy(ipc_space_t task, mach_port_t name)
{
	struct mvm_ctx ctx = MVM_CTX_INIT;
	uint32_t idx;
	kern_return_t kr;

	CHECK_TASK(task);
	if (!MACH_PORT_VALID(name))
		return KERN_SUCCESS;
	mvm__ipc_lock();
	if ((kr = lookup(name, &idx)) == KERN_SUCCESS)
		kr = mvm__entry_destroy(idx, &ctx);
	mvm__ipc_unlock();
	mvm__ctx_finish(&ctx);
	return kr;
}

kern_return_t
mach_port_mod_refs(ipc_space_t task, mach_port_t name, mach_port_right_t right,
    mach_port_delta_t delta)
{
	struct mvm_ctx ctx = MVM_CTX_INIT;
	struct mvm_entry *e;
	uint32_t idx;
	kern_return_t kr;

	CHECK_TASK(task);
	if (right >= MACH_PORT_RIGHT_NUMBER)
		return KERN_INVALID_VALUE;
	if (!MACH_PORT_VALID(name)) {
		/* Mach: references on MACH_PORT_DEAD as a dead name are accepted and ignored. */
		if (name == MACH_PORT_DEAD && right == MACH_PORT_RIGHT_DEAD_NAME)
			return KERN_SUCCESS;
		return KERN_INVALID_NAME;
	}
	mvm__ipc_lock();
	if ((kr = lookup(name, &idx)) != KERN_SUCCESS)
		goto out;
	e = mvm__entry(idx);
	switch (right) {
	case MACH_PORT_RIGHT_RECEIVE:
	case MACH_PORT_RIGHT_PORT_SET:
	case MACH_PORT_RIGHT_SEND_ONCE: {
		mach_port_type_t want = MACH_PORT_TYPE(right);

		if (!(e->type & want)) {
			kr = KERN_INVALID_RIGHT;
		} else if (delta > 0 || delta < -1) {
			kr = KERN_INVALID_VALUE;
		} else if (delta == -1) {
			if (right == MACH_PORT_RIGHT_RECEIVE && (e->type & MACH_PORT_TYPE_SEND)) {
				/* Only the receive right goes; the name keeps the send right, which
				 * the port's death then turns into a dead name. */
				struct mvm_port *p = e->obj.port;

				e->type &= ~MACH_PORT_TYPE_RECEIVE;
				p->recv_entry = MVM_NO_ENTRY;
				mvm__port_ref(p);
				mvm__port_destroy_receive(p, &ctx);
			} else {
				kr = mvm__entry_destroy(idx, &ctx);
			}
		}
		break;
	}
	case MACH_PORT_RIGHT_SEND:
		if (!(e->type & MACH_PORT_TYPE_SEND)) {
			kr = KERN_INVALID_RIGHT;
		} else if (MACH_PORT_UREFS_UNDERFLOW(e->urefs, delta)) {
			kr = KERN_INVALID_VALUE;
		} else if (MACH_PORT_UREFS_OVERFLOW(e->urefs, delta)) {
			kr = KERN_UREFS_OVERFLOW;
		} else if (delta > 0) {
			e->urefs += delta;
		} else if (delta < 0) {
			kr = mvm__entry_drop_send(idx, (mach_port_urefs_t)-delta, &ctx);
		}
		break;
	case MACH_PORT_RIGHT_DEAD_NAME:
		if (!(e->type & MACH_PORT_TYPE_DEAD_NAME)) {
			kr = KERN_INVALID_RIGHT;
		} else if (MACH_PORT_UREFS_UNDERFLOW(e->urefs, delta)) {
			kr = KERN_INVALID_VALUE;
		} else if (MACH_PORT_UREFS_OVERFLOW(e->urefs, delta)) {
			kr = KERN_UREFS_OVERFLOW;
		} else {
			e->urefs += delta;
			if (e->urefs == 0)
				mvm__entry_free(idx, &ctx);
		}
		break;
	}
out:
	mvm__ipc_unlock();
	mvm__ctx_finish(&ctx);
	return kr;
}

kern_return_t
mach_port_get_refs(ipc_space_t task, mach_port_t name, mach_port_right_t right,
    mach_port_urefs_t *refs)
{
	struct mvm_entry *e;
	uint32_t idx;
	kern_return_t kr;

	CHECK_TASK(task);
	if (right >= MACH_PORT_RIGHT_NUMBER)
		return KERN_INVALID_VALUE;
	if (refs == NULL)
		return KERN_INVALID_ARGUMENT;
	mvm__ipc_lock();
	if ((kr = lookup(name, &idx)) == KERN_SUCCESS) {
		e = mvm__entry(idx);
		switch (right) {
		case MACH_PORT_RIGHT_SEND:
			*refs = (e->type & MACH_PORT_TYPE_SEND) ? e->urefs : 0;
			break;
		case MACH_PORT_RIGHT_DEAD_NAME:
			*refs = (e->type & MACH_PORT_TYPE_DEAD_NAME) ? e->urefs : 0;
			break;
		default:
			*refs = (e->type & MACH_PORT_TYPE(right)) ? 1 : 0;
			break;
		}
	}
	mvm__ipc_unlock();
	return kr;
}

kern_return_t
mach_port_type(ipc_space_t task, mach_port_t name, mach_port_type_t *ptype)
{
	uint32_t idx;
	kern_return_t kr;

	CHECK_TASK(task);
	if (ptype == NULL)
		return KERN_INVALID_ARGUMENT;
	mvm__ipc_lock();
	if ((kr = lookup(name, &idx)) == KERN_SUCCESS) {
		struct mvm_entry *e = mvm__entry(idx);

		*ptype = e->type | (e->dnrequest != NULL ? MACH_PORT_TYPE_DNREQUEST : 0);
	}
	mvm__ipc_unlock();
	return kr;
}

kern_return_t
mach_port_names(ipc_space_t task, mach_port_array_t *names, mach_msg_type_number_t *namesCnt,
    mach_port_type_array_t *types, mach_msg_type_number_t *typesCnt)
{
	uint32_t n, i, k;
	void *nbuf = NULL, *tbuf = NULL;
	size_t len;
	int err = 0;

	CHECK_TASK(task);
	if (names == NULL || namesCnt == NULL || types == NULL || typesCnt == NULL)
		return KERN_INVALID_ARGUMENT;
	for (;;) {
		mvm__ipc_lock();
		n = mvm_ipc.names;
		mvm__ipc_unlock();
		len = MVM_ROUND_PAGE((size_t)(n ? n : 1) * sizeof(mach_port_t));
		if ((nbuf = mvm__vm_alloc_pages(len, &err)) == NULL)
			return KERN_RESOURCE_SHORTAGE;
		if ((tbuf = mvm__vm_alloc_pages(len, &err)) == NULL) {
			mvm__vm_free_pages(nbuf, len);
			return KERN_RESOURCE_SHORTAGE;
		}
		mvm__ipc_lock();
		if (mvm_ipc.names <= n)
			break;
		mvm__ipc_unlock(); /* the space grew meanwhile: try again, larger */
		mvm__vm_free_pages(nbuf, len);
		mvm__vm_free_pages(tbuf, len);
	}
	for (i = 1, k = 0; i < mvm_ipc.table_size; i++) {
		struct mvm_entry *e = &mvm_ipc.table[i];

		if (e->type == MACH_PORT_TYPE_NONE)
			continue;
		((mach_port_t *)nbuf)[k] = mvm__entry_name(i);
		((mach_port_type_t *)tbuf)[k] = e->type | (e->dnrequest ? MACH_PORT_TYPE_DNREQUEST : 0);
		k++;
	}
	mvm__ipc_unlock();
	if (k == 0) {
		/* Mach: an empty array is no memory at all (address 0). */
		mvm__vm_free_pages(nbuf, len);
		mvm__vm_free_pages(tbuf, len);
		nbuf = tbuf = NULL;
	}
	*names = nbuf;
	*types = tbuf;
	*namesCnt = *typesCnt = k;
	return KERN_SUCCESS;
}

kern_return_t
mach_port_insert_right(ipc_space_t task, mach_port_t name, mach_port_t poly,
    mach_msg_type_name_t polyPoly)
{
	struct mvm_ctx ctx = MVM_CTX_INIT;
	struct mvm_kport kp;
	struct mvm_entry *e;
	uint32_t idx;
	kern_return_t kr = KERN_SUCCESS;

	CHECK_TASK(task);
	if (!MACH_PORT_VALID(name) || name == MVM_TASK_SELF_NAME)
		return KERN_INVALID_VALUE;
	if (!MACH_MSG_TYPE_PORT_ANY(polyPoly))
		return KERN_INVALID_VALUE;
	if (!MACH_PORT_VALID(poly))
		return KERN_INVALID_CAPABILITY;
	mvm__ipc_lock();
	if (++mvm_ipc.stamp == 0)
		mvm_ipc.stamp = 1;
	if (mvm__right_check(poly, polyPoly) != 0) {
		kr = KERN_INVALID_CAPABILITY;
		goto out;
	}
	/* Where would the right go? Check before taking it. */
	if ((idx = mvm__entry_lookup(name)) != MVM_NO_ENTRY) {
		uint32_t pidx = mvm__entry_lookup(poly);
		struct mvm_port *port = mvm__entry(pidx)->obj.port;
		mach_msg_type_name_t rt = mvm__msg_received_type(polyPoly);

		e = mvm__entry(idx);
		if (!(e->type & MACH_PORT_TYPE_PORT_RIGHTS) || e->obj.port != port ||
		    rt == MACH_MSG_TYPE_PORT_SEND_ONCE) {
			kr = KERN_NAME_EXISTS;
			goto out;
		}
		if (rt == MACH_MSG_TYPE_PORT_RECEIVE && (e->type & MACH_PORT_TYPE_RECEIVE)) {
			kr = KERN_RIGHT_EXISTS;
			goto out;
		}
		if (rt == MACH_MSG_TYPE_PORT_SEND && (e->type & MACH_PORT_TYPE_SEND) &&
		    e->urefs + (polyPoly == MACH_MSG_TYPE_MOVE_SEND && pidx == idx ? 0 : 1) >
		    MACH_PORT_UREFS_MAX) {
			kr = KERN_UREFS_OVERFLOW;
			goto out;
		}
	} else {
		uint32_t pidx = mvm__entry_lookup(poly);
		struct mvm_port *port = mvm__entry(pidx)->obj.port;
		mach_msg_type_name_t rt = mvm__msg_received_type(polyPoly);

		/* A send or receive right to a port the space already names goes under that
		 * name (a space has one name per port), so it cannot go under another. */
		if (rt != MACH_MSG_TYPE_PORT_SEND_ONCE && port->send_entry != MVM_NO_ENTRY &&
		    !(polyPoly == MACH_MSG_TYPE_MOVE_RECEIVE && !(mvm__entry(pidx)->type & MACH_PORT_TYPE_SEND)) &&
		    !(polyPoly == MACH_MSG_TYPE_MOVE_SEND && mvm__entry(pidx)->urefs == 1 &&
		      !(mvm__entry(pidx)->type & MACH_PORT_TYPE_RECEIVE))) {
			kr = KERN_RIGHT_EXISTS;
			goto out;
		}
		if ((kr = mvm__entry_alloc_name(name, &idx)) != KERN_SUCCESS)
			goto out;
		mvm__entry(idx)->type = MACH_PORT_TYPE_DEAD_NAME; /* placeholder, replaced below */
	}
	kp = mvm__right_commit(poly, polyPoly, &ctx);
	e = mvm__entry(idx);
	if (e->type == MACH_PORT_TYPE_DEAD_NAME && e->obj.port == NULL) {
		/* The new name: install the right there. */
		switch (kp.type) {
		case MACH_MSG_TYPE_PORT_SEND:
			e->type = MACH_PORT_TYPE_SEND;
			e->urefs = 1;
			kp.port->send_entry = idx;
			break;
		case MACH_MSG_TYPE_PORT_SEND_ONCE:
			e->type = MACH_PORT_TYPE_SEND_ONCE;
			e->urefs = 1;
			mvm__so_link(kp.port, idx);
			break;
		case MACH_MSG_TYPE_PORT_RECEIVE:
			e->type = MACH_PORT_TYPE_RECEIVE;
			e->urefs = 0;
			kp.port->send_entry = kp.port->recv_entry = idx;
			break;
		}
		e->obj.port = kp.port;
	} else {
		/* Same port, same name: merge, as a received right would. */
		(void)mvm__right_copyout(kp, &ctx);
	}
out:
	mvm__ipc_unlock();
	mvm__ctx_finish(&ctx);
	return kr;
}

kern_return_t
mach_port_extract_right(ipc_space_t task, mach_port_t name, mach_msg_type_name_t msgt_name,
    mach_port_t *poly, mach_msg_type_name_t *polyPoly)
{
	struct mvm_ctx ctx = MVM_CTX_INIT;
	struct mvm_kport kp;
	kern_return_t kr = KERN_SUCCESS;

	CHECK_TASK(task);
	if (!MACH_MSG_TYPE_PORT_ANY(msgt_name))
		return KERN_INVALID_VALUE;
	if (poly == NULL || polyPoly == NULL)
		return KERN_INVALID_ARGUMENT;
	if (!MACH_PORT_VALID(name))
		return KERN_INVALID_NAME;
	mvm__ipc_lock();
	if (++mvm_ipc.stamp == 0)
		mvm_ipc.stamp = 1;
	if (mvm__entry_lookup(name) == MVM_NO_ENTRY) {
		kr = KERN_INVALID_NAME;
	} else if (mvm__right_check(name, msgt_name) != 0) {
		kr = KERN_INVALID_RIGHT;
	} else if (mvm__entry_reserve(1) != KERN_SUCCESS) {
		kr = KERN_RESOURCE_SHORTAGE;
	} else {
		/* The right leaves the space and comes back, as if sent to ourselves. */
		kp = mvm__right_commit(name, msgt_name, &ctx);
		*polyPoly = kp.type;
		*poly = mvm__right_copyout(kp, &ctx);
	}
	mvm__ipc_unlock();
	mvm__ctx_finish(&ctx);
	return kr;
}

kern_return_t
mach_port_move_member(ipc_space_t task, mach_port_t member, mach_port_t after)
{
	struct mvm_ctx ctx = MVM_CTX_INIT;
	struct mvm_entry *m, *s = NULL;
	uint32_t idx, sidx;
	kern_return_t kr;

	CHECK_TASK(task);
	mvm__ipc_lock();
	if ((kr = lookup(member, &idx)) != KERN_SUCCESS)
		goto out;
	if (after != MACH_PORT_NULL && (kr = lookup(after, &sidx)) != KERN_SUCCESS)
		goto out;
	m = mvm__entry(idx);
	if (!(m->type & MACH_PORT_TYPE_RECEIVE)) {
		kr = KERN_INVALID_RIGHT;
		goto out;
	}
	if (after != MACH_PORT_NULL) {
		s = mvm__entry(sidx);
		if (!(s->type & MACH_PORT_TYPE_PORT_SET)) {
			kr = KERN_INVALID_RIGHT;
			goto out;
		}
		if (m->obj.port->pset != s->obj.pset)
			mvm__pset_add(s->obj.pset, m->obj.port, &ctx);
	} else {
		if (m->obj.port->pset == NULL)
			kr = KERN_NOT_IN_SET;
		else
			mvm__pset_remove(m->obj.port, &ctx);
	}
out:
	mvm__ipc_unlock();
	mvm__ctx_finish(&ctx);
	return kr;
}

kern_return_t
mach_port_get_set_status(ipc_space_t task, mach_port_t name, mach_port_array_t *members,
    mach_msg_type_number_t *membersCnt)
{
	uint32_t idx, n, k = 0;
	void *buf;
	size_t len;
	int err = 0;
	kern_return_t kr;
	struct mvm_pset *ps;

	CHECK_TASK(task);
	if (members == NULL || membersCnt == NULL)
		return KERN_INVALID_ARGUMENT;
	for (;;) {
		mvm__ipc_lock();
		if ((kr = lookup(name, &idx)) != KERN_SUCCESS ||
		    !(mvm__entry(idx)->type & MACH_PORT_TYPE_PORT_SET)) {
			mvm__ipc_unlock();
			return kr != KERN_SUCCESS ? kr : KERN_INVALID_RIGHT;
		}
		n = mvm__entry(idx)->obj.pset->nmembers;
		mvm__ipc_unlock();
		len = MVM_ROUND_PAGE((size_t)(n ? n : 1) * sizeof(mach_port_t));
		if ((buf = mvm__vm_alloc_pages(len, &err)) == NULL)
			return KERN_RESOURCE_SHORTAGE;
		mvm__ipc_lock();
		if ((kr = lookup(name, &idx)) == KERN_SUCCESS &&
		    (mvm__entry(idx)->type & MACH_PORT_TYPE_PORT_SET) &&
		    mvm__entry(idx)->obj.pset->nmembers <= n)
			break;
		mvm__ipc_unlock();
		mvm__vm_free_pages(buf, len);
	}
	ps = mvm__entry(idx)->obj.pset;
	for (uint32_t i = 1; i < mvm_ipc.table_size; i++) {
		struct mvm_entry *e = &mvm_ipc.table[i];

		if ((e->type & MACH_PORT_TYPE_RECEIVE) && e->obj.port->pset == ps)
			((mach_port_t *)buf)[k++] = mvm__entry_name(i);
	}
	mvm__ipc_unlock();
	if (k == 0) {
		/* Mach: an empty array is no memory at all (address 0). */
		mvm__vm_free_pages(buf, len);
		buf = NULL;
	}
	*members = buf;
	*membersCnt = k;
	return KERN_SUCCESS;
}

/* Find a receive right by name, under the lock. */
static kern_return_t
receive_right(mach_port_t name, struct mvm_port **port)
{
	uint32_t idx;
	kern_return_t kr = lookup(name, &idx);

	if (kr != KERN_SUCCESS)
		return kr;
	if (!(mvm__entry(idx)->type & MACH_PORT_TYPE_RECEIVE))
		return KERN_INVALID_RIGHT;
	*port = mvm__entry(idx)->obj.port;
	return KERN_SUCCESS;
}

kern_return_t
mach_port_set_seqno(ipc_space_t task, mach_port_t name, mach_port_seqno_t seqno)
{
	struct mvm_port *p;
	kern_return_t kr;

	CHECK_TASK(task);
	mvm__ipc_lock();
	if ((kr = receive_right(name, &p)) == KERN_SUCCESS)
		p->seqno = seqno;
	mvm__ipc_unlock();
	return kr;
}

kern_return_t
mach_port_set_mscount(ipc_space_t task, mach_port_t name, mach_port_mscount_t mscount)
{
	struct mvm_port *p;
	kern_return_t kr;

	CHECK_TASK(task);
	mvm__ipc_lock();
	if ((kr = receive_right(name, &p)) == KERN_SUCCESS)
		p->mscount = mscount;
	mvm__ipc_unlock();
	return kr;
}

kern_return_t
mach_port_get_receive_status(ipc_space_t task, mach_port_t name, mach_port_status_t *st)
{
	struct mvm_port *p;
	kern_return_t kr;

	CHECK_TASK(task);
	if (st == NULL)
		return KERN_INVALID_ARGUMENT;
	mvm__ipc_lock();
	if ((kr = receive_right(name, &p)) == KERN_SUCCESS) {
		st->mps_pset = p->pset != NULL ? mvm__entry_name(p->pset->entry) : MACH_PORT_NULL;
		st->mps_seqno = p->seqno;
		st->mps_mscount = p->mscount;
		st->mps_qlimit = p->qlimit;
		st->mps_msgcount = p->msgcount;
		st->mps_sorights = p->sorights;
		st->mps_srights = p->srights > 0;
		st->mps_pdrequest = p->pdrequest != NULL;
		st->mps_nsrequest = p->nsrequest != NULL;
	}
	mvm__ipc_unlock();
	return kr;
}

kern_return_t
mach_port_set_qlimit(ipc_space_t task, mach_port_t name, mach_port_msgcount_t qlimit)
{
	struct mvm_ctx ctx = MVM_CTX_INIT;
	struct mvm_port *p;
	kern_return_t kr;

	CHECK_TASK(task);
	if (qlimit > MACH_PORT_QLIMIT_MAX)
		return KERN_INVALID_VALUE;
	mvm__ipc_lock();
	if ((kr = receive_right(name, &p)) == KERN_SUCCESS) {
		p->qlimit = qlimit;
		/* Room may have appeared: blocked senders look again. */
		mvm__wake_all(&p->senders, 0, &ctx);
	}
	mvm__ipc_unlock();
	mvm__ctx_finish(&ctx);
	return kr;
}

kern_return_t
mach_port_request_notification(ipc_space_t task, mach_port_t name, mach_msg_id_t variant,
    mach_port_mscount_t sync, mach_port_t notify, mach_msg_type_name_t notify_type,
    mach_port_t *previous)
{
	struct mvm_ctx ctx = MVM_CTX_INIT;
	struct mvm_kport np = { NULL, MACH_MSG_TYPE_PORT_SEND_ONCE };
	struct mvm_port *prev = NULL, *port;
	struct mvm_entry *e;
	uint32_t idx;
	kern_return_t kr;

	CHECK_TASK(task);
	if (previous == NULL)
		return KERN_INVALID_ARGUMENT;
	if (variant != MACH_NOTIFY_PORT_DESTROYED && variant != MACH_NOTIFY_NO_SENDERS &&
	    variant != MACH_NOTIFY_DEAD_NAME)
		return KERN_INVALID_VALUE;
	if (notify != MACH_PORT_NULL && notify_type != MACH_MSG_TYPE_MAKE_SEND_ONCE &&
	    notify_type != MACH_MSG_TYPE_MOVE_SEND_ONCE)
		return KERN_INVALID_VALUE;
	mvm__ipc_lock();
	if ((kr = lookup(name, &idx)) != KERN_SUCCESS)
		goto out;
	e = mvm__entry(idx);
	switch (variant) {
	case MACH_NOTIFY_PORT_DESTROYED:
	case MACH_NOTIFY_NO_SENDERS:
		if (!(e->type & MACH_PORT_TYPE_RECEIVE)) {
			kr = KERN_INVALID_RIGHT;
			goto out;
		}
		if (variant == MACH_NOTIFY_PORT_DESTROYED && sync != 0) {
			kr = KERN_INVALID_VALUE;
			goto out;
		}
		break;
	case MACH_NOTIFY_DEAD_NAME:
		if (!(e->type & (MACH_PORT_TYPE_SEND_RIGHTS | MACH_PORT_TYPE_DEAD_NAME))) {
			kr = KERN_INVALID_RIGHT;
			goto out;
		}
		if ((e->type & MACH_PORT_TYPE_DEAD_NAME) && (sync == 0 || notify == MACH_PORT_NULL)) {
			kr = KERN_INVALID_ARGUMENT;
			goto out;
		}
		break;
	}
	if (notify != MACH_PORT_NULL) {
		if (++mvm_ipc.stamp == 0)
			mvm_ipc.stamp = 1;
		/* A dead name passes the check as MOVE_SEND_ONCE (it would travel as
		 * MACH_PORT_DEAD) but cannot carry a notification. */
		if (notify == MACH_PORT_DEAD || mvm__right_check(notify, notify_type) != 0 ||
		    (mvm__entry(mvm__entry_lookup(notify))->type & MACH_PORT_TYPE_DEAD_NAME)) {
			kr = KERN_INVALID_CAPABILITY;
			goto out;
		}
		if (mvm__entry_reserve(1) != KERN_SUCCESS) {
			kr = KERN_RESOURCE_SHORTAGE;
			goto out;
		}
		np = mvm__right_commit(notify, notify_type, &ctx);
		e = mvm__entry(idx); /* the commit may have freed the notify entry, not this one */
		if (mvm__entry_lookup(name) != idx) {
			/* The notify right was the only right the name held (a send-once right
			 * named twice): nothing left to watch. */
			mvm__kport_release(np, &ctx);
			kr = KERN_INVALID_NAME;
			goto out;
		}
	}
	switch (variant) {
	case MACH_NOTIFY_PORT_DESTROYED:
		port = e->obj.port;
		prev = port->pdrequest;
		port->pdrequest = np.port;
		break;
	case MACH_NOTIFY_NO_SENDERS:
		port = e->obj.port;
		prev = port->nsrequest;
		port->nsrequest = np.port;
		port->nsrequest_sync = sync;
		if (np.port != NULL && port->srights == 0 && port->mscount >= sync) {
			port->nsrequest = NULL;
			mvm__notify_no_senders(np.port, port->mscount, &ctx);
		}
		break;
	case MACH_NOTIFY_DEAD_NAME:
		if (e->type & MACH_PORT_TYPE_DEAD_NAME) {
			/* Already dead: the notification goes at once, with a user reference. */
			if (e->urefs < MACH_PORT_UREFS_MAX)
				e->urefs++;
			mvm__notify_dead_name(np.port, name, &ctx);
			break;
		}
		prev = e->dnrequest;
		e->dnrequest = np.port;
		break;
	}
	*previous = MACH_PORT_NULL;
	if (prev != NULL)
		*previous = mvm__right_copyout((struct mvm_kport){ prev, MACH_MSG_TYPE_PORT_SEND_ONCE }, &ctx);
out:
	mvm__ipc_unlock();
	mvm__ctx_finish(&ctx);
	return kr;
}
