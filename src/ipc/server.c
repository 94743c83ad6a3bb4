/*
 * src/ipc/server.c: the MIG server loop, mach_msg_destroy, and the per-thread MIG reply
 * port.
 *
 * mach_msg_server* follow Mach's rules: before the demux runs, the reply header is set up
 * as a MIG demux would (so a demux that returns FALSE without touching it still answers
 * MIG_BAD_ID); a RetCode of MIG_NO_REPLY means the routine took the request over and no
 * reply goes out; any other error destroys the request's rights and memory (except the
 * reply right, which carries the error reply); a reply that cannot be sent is destroyed.
 * Replies are sent with a zero send timeout, so a client with a full reply queue never
 * blocks the server.
 */
#include <pthread.h>
#include <string.h>

#include "ipc/ipc.h"
#include "sys/sys.h"

/* ---- mach_msg_destroy ------------------------------------------------------------- */

static void
destroy_right(mach_port_t name, mach_msg_type_name_t type)
{
	if (!MACH_PORT_VALID(name))
		return;
	switch (type) {
	case MACH_MSG_TYPE_PORT_SEND:        /* == MOVE_SEND */
	case MACH_MSG_TYPE_PORT_SEND_ONCE:   /* == MOVE_SEND_ONCE */
		(void)mach_port_deallocate(mach_task_self(), name);
		break;
	case MACH_MSG_TYPE_PORT_RECEIVE:     /* == MOVE_RECEIVE */
		(void)mach_port_mod_refs(mach_task_self(), name, MACH_PORT_RIGHT_RECEIVE, -1);
		break;
	default:
		break; /* COPY_SEND, MAKE_SEND, MAKE_SEND_ONCE: the sender keeps its rights */
	}
}

void
mach_msg_destroy(mach_msg_header_t *msg)
{
	mach_msg_bits_t bits;
	size_t pos, size;
	struct mvm_msg_item it;

	if (msg == NULL)
		return;
	bits = msg->msgh_bits;
	destroy_right(msg->msgh_remote_port, MACH_MSGH_BITS_REMOTE(bits));
	if (!(bits & MACH_MSGH_BITS_COMPLEX))
		return;
	size = msg->msgh_size;
	pos = sizeof(mach_msg_header_t);
	while (pos < size) {
		uint8_t *data;
		mach_port_t *names;

		if (mvm__msg_next_item(msg, size, &pos, &it) != MACH_MSG_SUCCESS)
			return; /* a malformed body: stop at the first bad item */
		data = (uint8_t *)msg + it.data_off;
		if (it.is_inline) {
			if (mvm__msg_type_is_port(it.name))
				for (uint32_t i = 0; i < it.number; i++) {
					mach_port_t n;

					memcpy(&n, data + i * sizeof(n), sizeof(n));
					destroy_right(n, it.name);
				}
			continue;
		}
		vm_offset_t addr;

		memcpy(&addr, data, sizeof(addr));
		if (addr == 0 || it.data_len == 0)
			continue;
		if (mvm__msg_type_is_port(it.name)) {
			names = (mach_port_t *)addr;
			for (uint32_t i = 0; i < it.number; i++)
				destroy_right(names[i], it.name);
		}
		(void)vm_deallocate(mach_task_self(), addr, (vm_size_t)it.data_len);
	}
}

/* ---- the server loop ---------------------------------------------------------------- */

static void
prepare_reply(const mach_msg_header_t *in, mach_msg_header_t *out)
{
	mig_reply_header_t *r = (mig_reply_header_t *)out;

	memset(r, 0, sizeof(*r));
	r->Head.msgh_bits = MACH_MSGH_BITS(MACH_MSGH_BITS_REMOTE(in->msgh_bits), 0);
	r->Head.msgh_size = sizeof(*r);
	r->Head.msgh_remote_port = in->msgh_remote_port;
	r->Head.msgh_local_port = MACH_PORT_NULL;
	r->Head.msgh_id = (mach_msg_id_t)((uint32_t)in->msgh_id + 100u);
	r->RetCodeType.msgt_name = MACH_MSG_TYPE_INTEGER_32;
	r->RetCodeType.msgt_size = 32;
	r->RetCodeType.msgt_number = 1;
	r->RetCodeType.msgt_inline = 1;
	r->RetCode = MIG_BAD_ID;
}

void
mvm__server_handle(mach_msg_demux_t demux, mach_msg_header_t *in, mach_msg_header_t *out,
    mach_msg_size_t max_size)
{
	mig_reply_header_t *r = (mig_reply_header_t *)out;
	mach_msg_return_t mr;

	prepare_reply(in, out);
	(void)demux(in, out);
	if (r->RetCode == MIG_NO_REPLY)
		return; /* the routine kept the request and will answer itself, if at all */
	if (r->RetCode != KERN_SUCCESS) {
		/* Failure: the request's rights and memory are destroyed, but the reply right
		 * carries the error reply. */
		in->msgh_remote_port = MACH_PORT_NULL;
		mach_msg_destroy(in);
	}
	if (out->msgh_remote_port == MACH_PORT_NULL) {
		if (out->msgh_bits & MACH_MSGH_BITS_COMPLEX)
			mach_msg_destroy(out);
		return;
	}
	if (out->msgh_size > max_size)
		out->msgh_size = max_size;
	mr = mach_msg(out, MACH_SEND_MSG | MACH_SEND_TIMEOUT, out->msgh_size, 0, MACH_PORT_NULL,
	    0, MACH_PORT_NULL);
	if (mr != MACH_MSG_SUCCESS)
		mach_msg_destroy(out); /* the send changed nothing: release what it carried */
}

static mach_msg_return_t
server_loop(mach_msg_demux_t demux, mach_msg_size_t max_size, mach_port_t rcv_name,
    mach_msg_option_t option, mach_msg_timeout_t timeout, bool once)
{
	mach_msg_size_t size = max_size;
	mach_msg_header_t *in, *out;
	mach_msg_return_t mr;

	if (size < sizeof(mig_reply_header_t))
		size = (mach_msg_size_t)mvm__page_size();
	in = mvm__malloc(size);
	out = mvm__malloc(size);
	if (in == NULL || out == NULL) {
		mvm__free(in);
		mvm__free(out);
		return KERN_RESOURCE_SHORTAGE;
	}
	option &= (MACH_RCV_TIMEOUT | MACH_RCV_INTERRUPT);
	for (;;) {
		mr = mach_msg(in, MACH_RCV_MSG | MACH_RCV_LARGE | option, 0, size, rcv_name,
		    timeout, MACH_PORT_NULL);
		if (mr == MACH_RCV_TOO_LARGE) {
			/* Grow both buffers to the message's size and take it again. */
			mach_msg_size_t need = in->msgh_size;
			void *ni = mvm__realloc(in, need), *no;

			if (ni == NULL) {
				mr = KERN_RESOURCE_SHORTAGE;
				break;
			}
			in = ni;
			if ((no = mvm__realloc(out, need)) == NULL) {
				mr = KERN_RESOURCE_SHORTAGE;
				break;
			}
			out = no;
			size = need;
			continue;
		}
		if (mr != MACH_MSG_SUCCESS) {
			/* Received without room for some rights: release the rest, then stop. */
			if ((mr & ~MACH_MSG_MASK) == MACH_RCV_HEADER_ERROR ||
			    (mr & ~MACH_MSG_MASK) == MACH_RCV_BODY_ERROR)
				mach_msg_destroy(in);
			break;
		}
		mvm__server_handle(demux, in, out, size);
		if (once)
			break;
	}
	/* A kernel-served set is held from a receive to the next one: let it go. */
	mvm__ipc_direct_done(rcv_name);
	mvm__free(in);
	mvm__free(out);
	return mr;
}

mach_msg_return_t
mach_msg_server_timeout(mach_msg_demux_t demux, mach_msg_size_t max_size, mach_port_t rcv_name,
    mach_msg_option_t option, mach_msg_timeout_t timeout)
{
	return server_loop(demux, max_size, rcv_name, option, timeout, false);
}

mach_msg_return_t
mach_msg_server(mach_msg_demux_t demux, mach_msg_size_t max_size, mach_port_t rcv_name)
{
	return server_loop(demux, max_size, rcv_name, 0, 0, false);
}

mach_msg_return_t
mach_msg_server_once(mach_msg_demux_t demux, mach_msg_size_t max_size, mach_port_t rcv_name,
    mach_msg_option_t options)
{
	return server_loop(demux, max_size, rcv_name, options, 0, true);
}

/* ---- the MIG reply port --------------------------------------------------------------- */

static __thread mach_port_t reply_port;
static pthread_key_t reply_key;
static pthread_once_t reply_once = PTHREAD_ONCE_INIT;

static void
reply_port_exit(void *arg)
{
	mach_port_t p = (mach_port_t)(uintptr_t)arg;

	if (MACH_PORT_VALID(p))
		(void)mach_port_mod_refs(mach_task_self(), p, MACH_PORT_RIGHT_RECEIVE, -1);
}

static void
reply_key_init(void)
{
	(void)pthread_key_create(&reply_key, reply_port_exit);
}

mach_port_t
mig_get_reply_port(void)
{
	if (reply_port == MACH_PORT_NULL) {
		pthread_once(&reply_once, reply_key_init);
		if (mach_port_allocate(mach_task_self(), MACH_PORT_RIGHT_RECEIVE, &reply_port) !=
		    KERN_SUCCESS)
			return MACH_PORT_NULL;
		(void)pthread_setspecific(reply_key, (void *)(uintptr_t)reply_port);
	}
	return reply_port;
}

void
mig_dealloc_reply_port(mach_port_t port)
{
	mach_port_t p = reply_port;

	(void)port;
	reply_port = MACH_PORT_NULL;
	pthread_once(&reply_once, reply_key_init);
	(void)pthread_setspecific(reply_key, NULL);
	if (MACH_PORT_VALID(p))
		(void)mach_port_mod_refs(mach_task_self(), p, MACH_PORT_RIGHT_RECEIVE, -1);
}

void
mig_put_reply_port(mach_port_t port)
{
	(void)port;
}

mach_port_t
mvm__mig_reply_port_peek(void)
{
	return reply_port;
}
