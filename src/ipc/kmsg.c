/*
 * src/ipc/kmsg.c: messages in transit: layout decoding, copy-in, copy-out, destruction.
 *
 * Contents: 1. the item decoder  2. allocation  3. copy-in  4. copy-out  5. destruction
 *
 * A send copies the caller's message into a kmsg and its out-of-line data into fresh
 * mappings before the IPC lock is taken (the caller's memory may fault, even into a
 * memory object served by this process). Under the lock it checks every right, then
 * takes them all. A receive translates the rights into names under the lock and copies
 * the message out after dropping it. The out-of-line mappings made at send time are
 * handed to the receiver as they are (no second copy); the receiver frees them with
 * vm_deallocate().
 */
#include <errno.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>

#include "ipc/ipc.h"
#include "sys/sys.h"

/* ---- 1. the item decoder ---------------------------------------------------------- */

mach_msg_type_name_t
mvm__msg_received_type(mach_msg_type_name_t d)
{
	switch (d) {
	case MACH_MSG_TYPE_MOVE_RECEIVE:
		return MACH_MSG_TYPE_PORT_RECEIVE;
	case MACH_MSG_TYPE_MOVE_SEND:
	case MACH_MSG_TYPE_COPY_SEND:
	case MACH_MSG_TYPE_MAKE_SEND:
		return MACH_MSG_TYPE_PORT_SEND;
	case MACH_MSG_TYPE_MOVE_SEND_ONCE:
	case MACH_MSG_TYPE_MAKE_SEND_ONCE:
		return MACH_MSG_TYPE_PORT_SEND_ONCE;
	default:
		return d;
	}
}

static inline size_t
align8(size_t x)
{
	return (x + 7) & ~(size_t)7;
}

mach_msg_return_t
mvm__msg_next_item(const void *msg, size_t size, size_t *pos, struct mvm_msg_item *it)
{
	const uint8_t *base = msg;
	size_t p = *pos;
	mach_msg_type_t t;

	if (p + sizeof(mach_msg_type_t) > size)
		return MACH_SEND_MSG_TOO_SMALL;
	memcpy(&t, base + p, sizeof(t));
	it->desc_off = p;
	it->longform = t.msgt_longform;
	it->is_inline = t.msgt_inline;
	it->dealloc = t.msgt_deallocate;
	if (t.msgt_unused)
		return MACH_SEND_INVALID_TYPE;
	if (t.msgt_longform) {
		mach_msg_type_long_t lt;

		if (p + sizeof(lt) > size)
			return MACH_SEND_MSG_TOO_SMALL;
		memcpy(&lt, base + p, sizeof(lt));
		it->name = lt.msgtl_name;
		it->size_bits = lt.msgtl_size;
		it->number = lt.msgtl_number;
		it->data_off = p + sizeof(lt);
	} else {
		it->name = t.msgt_name;
		it->size_bits = t.msgt_size;
		it->number = t.msgt_number;
		it->data_off = p + sizeof(t);
	}
	if (it->name > MACH_MSG_TYPE_LAST || it->name == 22 ||
	    it->name == MACH_MSG_TYPE_PROTECTED_PAYLOAD)
		return MACH_SEND_INVALID_TYPE;
	if (mvm__msg_type_is_port(it->name)) {
		if (it->size_bits != 8 * sizeof(mach_port_t))
			return MACH_SEND_INVALID_TYPE;
		if (it->is_inline && it->dealloc)
			return MACH_SEND_INVALID_TYPE;
	}
	it->data_len = ((uint64_t)it->number * it->size_bits + 7) / 8;
	if (it->is_inline) {
		if (it->data_len > size || it->data_off + it->data_len > size)
			return MACH_SEND_MSG_TOO_SMALL;
		*pos = align8(it->data_off + (size_t)it->data_len);
	} else {
		if (it->data_off + sizeof(vm_offset_t) > size)
			return MACH_SEND_MSG_TOO_SMALL;
		*pos = it->data_off + sizeof(vm_offset_t);
	}
	return MACH_MSG_SUCCESS;
}

/* ---- 2. allocation ------------------------------------------------------------------ */

struct mvm_kmsg *
mvm__kmsg_alloc(mach_msg_size_t size)
{
	struct mvm_kmsg *k = mvm__malloc(sizeof(*k) + align8(size));

	if (k == NULL)
		return NULL;
	memset(k, 0, sizeof(*k));
	k->msg = (mach_msg_header_t *)(k + 1);
	k->size = size;
	__atomic_add_fetch(&mvm_ipc.kmsgs, 1, __ATOMIC_RELAXED);
	return k;
}

void
mvm__kmsg_free(struct mvm_kmsg *k)
{
	for (uint32_t i = 0; i < k->nool; i++)
		if (k->ool[i].addr != NULL)
			mvm__vm_free_pages(k->ool[i].addr, k->ool[i].map_len);
	mvm__free(k->ports);
	mvm__free(k->ool);
	mvm__free(k);
	__atomic_sub_fetch(&mvm_ipc.kmsgs, 1, __ATOMIC_RELAXED);
}

/* ---- 3. copy-in ----------------------------------------------------------------------- */

static bool
valid_dest_disp(mach_msg_type_name_t d)
{
	return d == MACH_MSG_TYPE_MOVE_SEND || d == MACH_MSG_TYPE_COPY_SEND ||
	    d == MACH_MSG_TYPE_MAKE_SEND || d == MACH_MSG_TYPE_MOVE_SEND_ONCE ||
	    d == MACH_MSG_TYPE_MAKE_SEND_ONCE;
}

static void
copyin_abort(struct mvm_copyin *ci)
{
	if (ci->kmsg != NULL)
		mvm__kmsg_free(ci->kmsg);
	ci->kmsg = NULL;
	mvm__free(ci->names);
	ci->names = NULL;
	mvm__free(ci->dealloc);
	ci->dealloc = NULL;
}

mach_msg_return_t
mvm__kmsg_copyin_data(const mach_msg_header_t *umsg, mach_msg_size_t size,
    struct mvm_copyin *ci)
{
	struct mvm_kmsg *k;
	mach_msg_header_t *m;
	mach_msg_bits_t bits;
	uint64_t nports = 0, nool = 0, ndealloc = 0;
	struct mvm_msg_item it;
	mach_msg_return_t mr;
	size_t pos;

	memset(ci, 0, sizeof(*ci));
	if (size < sizeof(mach_msg_header_t) || (size & 3) != 0)
		return MACH_SEND_MSG_TOO_SMALL;
	if (size > MVM_MSG_SIZE_MAX)
		return MACH_SEND_NO_BUFFER;
	if ((k = mvm__kmsg_alloc(size)) == NULL)
		return MACH_SEND_NO_BUFFER;
	ci->kmsg = k;
	m = k->msg;
	memcpy(m, umsg, size);
	m->msgh_size = size;
	bits = m->msgh_bits;
	if (MACH_MSGH_BITS_OTHER(bits) & ~MACH_MSGH_BITS_COMPLEX) {
		copyin_abort(ci);
		return MACH_SEND_INVALID_HEADER;
	}
	ci->dest_name = m->msgh_remote_port;
	ci->dest_disp = MACH_MSGH_BITS_REMOTE(bits);
	ci->reply_name = m->msgh_local_port;
	ci->reply_disp = MACH_MSGH_BITS_LOCAL(bits);
	if (!valid_dest_disp(ci->dest_disp)) {
		copyin_abort(ci);
		return MACH_SEND_INVALID_HEADER;
	}
	/* As in Mach: a reply disposition is a send disposition, or 0 with a null name. */
	if (ci->reply_disp == 0 ? ci->reply_name != MACH_PORT_NULL :
	    !valid_dest_disp(ci->reply_disp)) {
		copyin_abort(ci);
		return MACH_SEND_INVALID_HEADER;
	}
	if (ci->reply_name == MACH_PORT_NULL)
		ci->reply_disp = 0;
	if (!(bits & MACH_MSGH_BITS_COMPLEX))
		return MACH_MSG_SUCCESS;

	/* Pass 1: check the layout and count what it carries. */
	pos = sizeof(mach_msg_header_t);
	while (pos < size) {
		if ((mr = mvm__msg_next_item(m, size, &pos, &it)) != MACH_MSG_SUCCESS) {
			copyin_abort(ci);
			return mr;
		}
		if (mvm__msg_type_is_port(it.name))
			nports += it.number;
		if (!it.is_inline) {
			nool++;
			if (it.dealloc && it.data_len > 0)
				ndealloc++;
		}
	}
	if (nports > (1u << 24) || nool > (1u << 20)) {
		copyin_abort(ci);
		return MACH_SEND_NO_BUFFER;
	}
	if ((nports && ((k->ports = mvm__calloc(nports, sizeof(*k->ports))) == NULL ||
	    (ci->names = mvm__calloc(nports, sizeof(*ci->names))) == NULL)) ||
	    (nool && (k->ool = mvm__calloc(nool, sizeof(*k->ool))) == NULL) ||
	    (ndealloc && (ci->dealloc = mvm__calloc(ndealloc, sizeof(*ci->dealloc))) == NULL)) {
		copyin_abort(ci);
		return MACH_SEND_NO_BUFFER;
	}

	/* Pass 2: gather the names, copy the out-of-line data. */
	pos = sizeof(mach_msg_header_t);
	while (pos < size) {
		(void)mvm__msg_next_item(m, size, &pos, &it);
		bool isport = mvm__msg_type_is_port(it.name);
		uint8_t *data = (uint8_t *)m + it.data_off;

		if (isport) {
			for (uint32_t i = 0; i < it.number; i++)
				k->ports[k->nports + i].type = it.name; /* the disposition, for now */
		}
		if (it.is_inline) {
			if (isport && it.number > 0) { /* names is NULL if the message has no port */
				memcpy(&ci->names[k->nports], data, (size_t)it.number * sizeof(mach_port_t));
				k->nports += it.number;
			}
			continue;
		}

		struct mvm_kool *o = &k->ool[k->nool];
		vm_offset_t src;
		int err = 0;

		memcpy(&src, data, sizeof(src));
		o->slot = it.data_off;
		o->is_ports = isport;
		if (it.data_len == 0) {
			vm_offset_t zero = 0;

			memcpy(data, &zero, sizeof(zero));
			k->nool++;
			if (isport)
				o->first_port = k->nports;
			continue;
		}
		if (it.data_len > ((uint64_t)1 << 40)) {
			copyin_abort(ci);
			return MACH_SEND_NO_BUFFER;
		}
		o->data_off = isport ? 0 : (src & (mvm__page_size() - 1));
		o->map_len = MVM_ROUND_PAGE(o->data_off + (size_t)it.data_len);
		/* Data is written whole below (data, and zeros around it), so a cached region
		 * will do; a port array is filled at copy-out, so it must start zeroed. */
		o->addr = isport ? mvm__vm_alloc_pages(o->map_len, &err) :
		    mvm__vm_alloc_pages_dirty(o->map_len, &err);
		if (o->addr == NULL) {
			copyin_abort(ci);
			return err == ENOMEM ? MACH_SEND_NO_BUFFER : MACH_SEND_INVALID_MEMORY;
		}
		k->nool++;
		if (isport) {
			o->first_port = k->nports;
			o->nports = it.number;
			if (mvm__copy_checked(&ci->names[k->nports], (void *)src,
			    (size_t)it.number * sizeof(mach_port_t)) != 0) {
				copyin_abort(ci);
				return MACH_SEND_INVALID_MEMORY;
			}
			k->nports += it.number;
		} else {
			vm_offset_t dst = (vm_offset_t)o->addr + o->data_off;
			size_t tail = o->map_len - o->data_off - (size_t)it.data_len;

			memset(o->addr, 0, o->data_off);
			memset((uint8_t *)dst + it.data_len, 0, tail);

			/* Memory machvm mapped is known to be readable: copy it directly; anything
			 * else is read without trusting it. */
			if (mvm__vm_tracked(src, (size_t)it.data_len))
				memcpy((void *)dst, (void *)src, (size_t)it.data_len);
			else if (mvm__copy_checked((void *)dst, (void *)src, (size_t)it.data_len) != 0) {
				copyin_abort(ci);
				return MACH_SEND_INVALID_MEMORY;
			}
			memcpy(data, &dst, sizeof(dst));
		}
		if (it.dealloc) {
			ci->dealloc[ci->ndealloc].addr = src;
			ci->dealloc[ci->ndealloc].len = (size_t)it.data_len;
			ci->ndealloc++;
		}
	}
	return MACH_MSG_SUCCESS;
}

/* Would moving receive right `rcv` into a message to `dest` make a cycle? */
static bool
circular(struct mvm_port *rcv, struct mvm_port *dest)
{
	for (struct mvm_port *p = dest; p != NULL; p = p->transit_dest)
		if (p == rcv)
			return true;
	return false;
}

mach_msg_return_t
mvm__kmsg_copyin_check(struct mvm_copyin *ci)
{
	struct mvm_kmsg *k = ci->kmsg;
	struct mvm_port *dest;
	uint32_t idx;

	MVM_ASSERT_LOCKED(&mvm_ipc.lock);
	if (++mvm_ipc.stamp == 0)
		mvm_ipc.stamp = 1;
	idx = mvm__entry_lookup(ci->dest_name);
	if (idx == MVM_NO_ENTRY || (mvm__entry(idx)->type & MACH_PORT_TYPE_DEAD_NAME) ||
	    mvm__right_check(ci->dest_name, ci->dest_disp) != 0)
		return MACH_SEND_INVALID_DEST;
	dest = mvm__entry(idx)->obj.port;
	if (ci->reply_name != MACH_PORT_NULL && mvm__right_check(ci->reply_name, ci->reply_disp) != 0)
		return MACH_SEND_INVALID_REPLY;
	for (uint32_t i = 0; i < k->nports; i++) {
		if (mvm__right_check(ci->names[i], k->ports[i].type) != 0)
			return MACH_SEND_INVALID_RIGHT;
		if (k->ports[i].type == MACH_MSG_TYPE_MOVE_RECEIVE &&
		    circular(mvm__entry(mvm__entry_lookup(ci->names[i]))->obj.port, dest))
			return MACH_SEND_INVALID_RIGHT;
	}
	return MACH_MSG_SUCCESS;
}

void
mvm__kmsg_copyin_commit(struct mvm_copyin *ci, struct mvm_ctx *ctx)
{
	struct mvm_kmsg *k = ci->kmsg;
	struct mvm_kport kp;
	struct mvm_msg_item it;
	size_t pos;
	uint32_t n = 0;

	MVM_ASSERT_LOCKED(&mvm_ipc.lock);
	kp = mvm__right_commit(ci->dest_name, ci->dest_disp, ctx);
	k->dest = kp.port;
	k->dest_type = kp.type;
	k->reply = mvm__right_commit(ci->reply_name, ci->reply_disp, ctx);
	for (uint32_t i = 0; i < k->nports; i++)
		k->ports[i] = mvm__right_commit(ci->names[i], k->ports[i].type, ctx);
	/* The receiver sees the received form of each port type. */
	if (k->nports == 0)
		return;
	pos = sizeof(mach_msg_header_t);
	while (pos < k->size && n < k->nports) {
		(void)mvm__msg_next_item(k->msg, k->size, &pos, &it);
		if (!mvm__msg_type_is_port(it.name))
			continue;
		if (it.longform)
			((mach_msg_type_long_t *)((uint8_t *)k->msg + it.desc_off))->msgtl_name =
			    (unsigned short)mvm__msg_received_type(it.name);
		else
			((mach_msg_type_t *)((uint8_t *)k->msg + it.desc_off))->msgt_name =
			    mvm__msg_received_type(it.name) & 0xff;
		n += it.number;
	}
}

void
mvm__kmsg_copyin_done(struct mvm_copyin *ci, bool sent)
{
	if (sent) {
		for (uint32_t i = 0; i < ci->ndealloc; i++)
			(void)vm_deallocate(mach_task_self(), ci->dealloc[i].addr, ci->dealloc[i].len);
	}
	mvm__free(ci->names);
	mvm__free(ci->dealloc);
	ci->names = NULL;
	ci->dealloc = NULL;
	if (!sent && ci->kmsg != NULL) {
		mvm__kmsg_free(ci->kmsg);
		ci->kmsg = NULL;
	}
}

/* ---- 4. copy-out ---------------------------------------------------------------------- */

mach_msg_return_t
mvm__kmsg_copyout(struct mvm_kmsg *k, struct mvm_ctx *ctx)
{
	mach_msg_header_t *m = k->msg;
	mach_msg_return_t mr = MACH_MSG_SUCCESS;
	struct mvm_port *dest = k->dest;
	mach_port_t local, remote;
	bool room;
	uint32_t port_i = 0, ool_i = 0;
	size_t pos;
	struct mvm_msg_item it;

	MVM_ASSERT_LOCKED(&mvm_ipc.lock);
	room = mvm__entry_reserve(1 + k->nports) == KERN_SUCCESS;
	local = dest->recv_entry != MVM_NO_ENTRY ? mvm__entry_name(dest->recv_entry) : MACH_PORT_NULL;
	if (k->dest_type == MACH_MSG_TYPE_PORT_SEND_ONCE)
		mvm__sonce_release_used(dest);
	else
		mvm__send_release(dest, ctx);
	k->dest = NULL;
	remote = mvm__right_copyout(k->reply, ctx);
	if (MVM_PORT_VALID(k->reply.port) && remote == MACH_PORT_NULL)
		mr = MACH_RCV_HEADER_ERROR | MACH_MSG_IPC_SPACE;
	m->msgh_bits = (m->msgh_bits & MACH_MSGH_BITS_COMPLEX) |
	    MACH_MSGH_BITS(k->reply.port != NULL ? k->reply.type : 0, k->dest_type);
	m->msgh_remote_port = remote;
	m->msgh_local_port = local;
	k->reply.port = NULL;
	if (!(m->msgh_bits & MACH_MSGH_BITS_COMPLEX))
		return mr;

	pos = sizeof(mach_msg_header_t);
	while (pos < k->size) {
		if (mvm__msg_next_item(m, k->size, &pos, &it) != MACH_MSG_SUCCESS)
			break; /* cannot happen: the layout was checked at copy-in */
		bool isport = mvm__msg_type_is_port(it.name);
		uint8_t *data = (uint8_t *)m + it.data_off;
		mach_port_t *names;

		if (it.is_inline) {
			if (!isport)
				continue;
			names = (mach_port_t *)data;
		} else {
			struct mvm_kool *o = &k->ool[ool_i++];
			vm_offset_t addr = o->addr == NULL ? 0 : (vm_offset_t)o->addr + o->data_off;

			memcpy(data, &addr, sizeof(addr));
			names = o->addr;
			o->addr = NULL; /* the receiver owns the mapping now */
			if (!isport)
				continue;
		}
		for (uint32_t i = 0; i < it.number; i++, port_i++) {
			struct mvm_kport kp = k->ports[port_i];
			mach_port_t name = mvm__right_copyout(kp, ctx);

			if (MVM_PORT_VALID(kp.port) && name == MACH_PORT_NULL && mr == MACH_MSG_SUCCESS)
				mr = MACH_RCV_BODY_ERROR | MACH_MSG_IPC_SPACE;
			k->ports[port_i].port = NULL;
			if (names != NULL)
				memcpy(&names[i], &name, sizeof(name));
		}
	}
	(void)room;
	return mr;
}

/* ---- 5. destruction --------------------------------------------------------------------- */

void
mvm__kmsg_destroy(struct mvm_kmsg *k, struct mvm_ctx *ctx)
{
	MVM_ASSERT_LOCKED(&mvm_ipc.lock);
	if (MVM_PORT_VALID(k->dest)) {
		/* The destination right was used to send this message: no notification. */
		if (k->dest_type == MACH_MSG_TYPE_PORT_SEND_ONCE)
			mvm__sonce_release_used(k->dest);
		else
			mvm__send_release(k->dest, ctx);
	}
	k->dest = NULL;
	mvm__kport_release(k->reply, ctx);
	k->reply.port = NULL;
	for (uint32_t i = 0; i < k->nports; i++) {
		mvm__kport_release(k->ports[i], ctx);
		k->ports[i].port = NULL;
	}
	k->rights_released = true;
	k->next = ctx->free_kmsgs;
	ctx->free_kmsgs = k;
}
