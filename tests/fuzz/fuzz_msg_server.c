/*
 * tests/fuzz/fuzz_msg_server.c: fuzz mach_msg_server_once() and its reply handling: send a
 * message taken from the input to a service port, serve it once with a small demux, then
 * receive and destroy whatever came back and check that nothing leaked.
 *
 * Input: 4 control bytes, then the message (header and body).
 *   [0] request disposition for the service port (COPY_SEND, MAKE_SEND, MAKE_SEND_ONCE,
 *       MOVE_SEND_ONCE of a send-once right to it), or raw bits from 0xf0 up.
 *   [1] reply port: the client port with MAKE_SEND_ONCE, MAKE_SEND, COPY_SEND or
 *       MOVE_SEND_ONCE; none; the service port itself; a dead name; or raw from 0xf0 up.
 *   [2] flags: F_ROUTINE_ID maps msgh_id onto 1000..1006 (1006: unknown);
 *       F_SMALL_MAX serves with a max_size just large enough for the largest reply,
 *       smaller than most requests (the loop grows its buffers); F_FULL_REPLY makes
 *       the client port full (qlimit 1) so replies through a send right fail and are
 *       destroyed; F_RAW_NAMES leaves body port names raw.
 *   [3] unused (kept so that both targets share the corpus layout).
 * Out-of-line pointers of the request become an invalid address or a pointer into a
 * buffer of this file (never deallocated: such items are sent without msgt_deallocate).
 *
 * Demux routines (MIG style; the server prepared a MIG_BAD_ID reply before calling it):
 *   1000 success, simple reply; the routine consumed the request's body.
 *   1001 MIG_NO_REPLY: the routine keeps the request and destroys it itself.
 *   1002 an error code: the server destroys the request and sends the error reply.
 *   1003 success, complex reply carrying a made send right and deallocated OOL data.
 *   1004 success, complex reply moving a send right the routine made.
 *   1005 success but no reply (the routine cleared the reply port after consuming it).
 *   other ids: FALSE (MIG_BAD_ID reply).
 */
#include "fuzz_common.h"

#define F_ROUTINE_ID 0x01
#define F_SMALL_MAX  0x02
#define F_FULL_REPLY 0x04
#define F_RAW_NAMES  0x08

#define OOLBUF_SIZE (16 * 1024)
#define REPLY_OOL_WORDS 3073   /* 3 pages and 4 bytes */

static uint8_t oolbuf[OOLBUF_SIZE] __attribute__((aligned(4096)));
static mach_port_t service, client, extra;

struct complex_reply {
	mach_msg_header_t Head;
	mach_msg_type_t RetCodeType;
	kern_return_t RetCode;
	mach_msg_type_t portType;
	mach_port_t port;
	mach_msg_type_t dataType;
	void *data;
};

/* Release the request's body (the routine "used" its arguments), keeping the reply right. */
static void
consume_body(mach_msg_header_t *in)
{
	mach_port_t reply = in->msgh_remote_port;

	in->msgh_remote_port = MACH_PORT_NULL;
	mach_msg_destroy(in);
	in->msgh_remote_port = reply;
	in->msgh_bits &= ~MACH_MSGH_BITS_COMPLEX;
}

static boolean_t
demux(mach_msg_header_t *in, mach_msg_header_t *out)
{
	mig_reply_header_t *r = (mig_reply_header_t *)out;
	struct complex_reply *c = (struct complex_reply *)out;

	/* What the server prepared for the demux, MIG style. */
	if (r->Head.msgh_id != in->msgh_id + 100 || r->RetCode != MIG_BAD_ID ||
	    r->Head.msgh_remote_port != in->msgh_remote_port)
		abort();
	switch (in->msgh_id) {
	case 1000:
		consume_body(in);
		r->RetCode = KERN_SUCCESS;
		return TRUE;
	case 1001:
		mach_msg_destroy(in);
		r->RetCode = MIG_NO_REPLY;
		return TRUE;
	case 1002:
		r->RetCode = KERN_INVALID_ARGUMENT;
		return TRUE;
	case 1003:
	case 1004: {
		vm_address_t a = 0;

		consume_body(in);
		FUZZ_OK(vm_allocate(mach_task_self(), &a, REPLY_OOL_WORDS * 4, TRUE));
		memset((void *)a, 0x5a, REPLY_OOL_WORDS * 4);
		c->Head.msgh_bits |= MACH_MSGH_BITS_COMPLEX;
		c->Head.msgh_size = sizeof(*c);
		c->RetCode = KERN_SUCCESS;
		c->portType = (mach_msg_type_t){ .msgt_size = 32, .msgt_number = 1, .msgt_inline = 1 };
		if (in->msgh_id == 1003) {
			c->portType.msgt_name = MACH_MSG_TYPE_MAKE_SEND;
		} else {
			FUZZ_OK(mach_port_insert_right(mach_task_self(), extra, extra,
			    MACH_MSG_TYPE_MAKE_SEND));
			c->portType.msgt_name = MACH_MSG_TYPE_MOVE_SEND;
		}
		c->port = extra;
		c->dataType = (mach_msg_type_t){ .msgt_name = MACH_MSG_TYPE_INTEGER_32, .msgt_size = 32,
		    .msgt_number = REPLY_OOL_WORDS, .msgt_inline = 0, .msgt_deallocate = 1 };
		c->data = (void *)a;
		return TRUE;
	}
	case 1005:
		consume_body(in);
		if (MACH_PORT_VALID(in->msgh_remote_port))
			FUZZ_OK(mach_port_deallocate(mach_task_self(), in->msgh_remote_port));
		r->Head.msgh_remote_port = MACH_PORT_NULL;
		r->RetCode = KERN_SUCCESS;
		return TRUE;
	default:
		return FALSE;
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_space fs;
	uint8_t ctl[4] = { 0, 0, 0, 0 };
	size_t len, buflen;
	uint8_t *msg;
	mach_msg_header_t *h;
	mach_msg_size_t send_size, max_size;
	mach_msg_return_t mr;
	mach_msg_type_name_t t;
	mach_port_t service_so;

	if (size > MVM_MSG_SIZE_MAX)
		return 0;
	memcpy(ctl, data, size < 4 ? size : 4);
	data += size < 4 ? size : 4;
	len = size < 4 ? 0 : size - 4;

	fuzz_space_init(&fs);
	service = fs.names[FN_R0];
	client = fs.names[FN_R1];
	FUZZ_OK(mach_port_allocate(mach_task_self(), MACH_PORT_RIGHT_RECEIVE, &extra));
	FUZZ_OK(mach_port_extract_right(mach_task_self(), service, MACH_MSG_TYPE_MAKE_SEND_ONCE,
	    &service_so, &t));
	for (size_t i = 0; i < OOLBUF_SIZE; i++)
		oolbuf[i] = len ? data[i % len] : 0;
	if (ctl[2] & F_FULL_REPLY) {
		/* The client port already holds a message (see fuzz_space_init): with a limit of
		 * 1 it is full, and replies through a send right fail. */
		FUZZ_OK(mach_port_insert_right(mach_task_self(), client, client,
		    MACH_MSG_TYPE_MAKE_SEND));
		FUZZ_OK(mach_port_set_qlimit(mach_task_self(), client, 1));
	}

	buflen = len < sizeof(mach_msg_header_t) ? sizeof(mach_msg_header_t) : len;
	msg = calloc(1, buflen + 8);
	if (msg == NULL)
		abort();
	memcpy(msg, data, len);
	h = (mach_msg_header_t *)msg;
	send_size = (mach_msg_size_t)len & ~3u;
	h->msgh_bits &= MACH_MSGH_BITS_PORTS_MASK | MACH_MSGH_BITS_COMPLEX;
	if (ctl[0] < 0xf0) {
		static const mach_msg_type_name_t d[] = { MACH_MSG_TYPE_COPY_SEND,
			MACH_MSG_TYPE_MAKE_SEND, MACH_MSG_TYPE_MAKE_SEND_ONCE,
			MACH_MSG_TYPE_MOVE_SEND_ONCE };
		mach_msg_type_name_t disp = d[ctl[0] % 4];

		h->msgh_remote_port = disp == MACH_MSG_TYPE_MOVE_SEND_ONCE ? service_so : service;
		h->msgh_bits = (h->msgh_bits & ~MACH_MSGH_BITS_REMOTE_MASK) | disp;
	}
	if (ctl[1] < 0xf0) {
		static const struct {
			int which; /* 0 client, 1 none, 2 service, 3 dead name */
			mach_msg_type_name_t disp;
		} rp[] = {
			{ 0, MACH_MSG_TYPE_MAKE_SEND_ONCE }, { 0, MACH_MSG_TYPE_MAKE_SEND },
			{ 0, MACH_MSG_TYPE_COPY_SEND }, { 1, 0 }, { 2, MACH_MSG_TYPE_MAKE_SEND_ONCE },
			{ 3, MACH_MSG_TYPE_MOVE_SEND }, { 0, MACH_MSG_TYPE_MOVE_SEND_ONCE },
		};
		unsigned k = ctl[1] % (sizeof(rp) / sizeof(rp[0]));
		mach_port_t names[4] = { client, MACH_PORT_NULL, service, fs.names[FN_DEADNAME] };

		h->msgh_local_port = names[rp[k].which];
		if (rp[k].disp == MACH_MSG_TYPE_MOVE_SEND_ONCE)
			h->msgh_local_port = fs.names[FN_SO1]; /* a send-once right to the client */
		h->msgh_bits = MACH_MSGH_BITS(MACH_MSGH_BITS_REMOTE(h->msgh_bits), rp[k].disp) |
		    (h->msgh_bits & MACH_MSGH_BITS_COMPLEX);
	}
	if (ctl[2] & F_ROUTINE_ID)
		h->msgh_id = 1000 + (int)((uint32_t)h->msgh_id % 7);

	if ((h->msgh_bits & MACH_MSGH_BITS_COMPLEX) && send_size >= sizeof(*h)) {
		size_t pos = sizeof(*h);
		struct mvm_msg_item it;

		while (pos < send_size && mvm__msg_next_item(msg, send_size, &pos, &it) == 0) {
			if (!it.is_inline) {
				uint64_t p = 0x1000;

				/* Ports out of line, or data that fits our buffer without deallocation. */
				if (!it.dealloc && !mvm__msg_type_is_port(it.name) &&
				    it.data_len <= OOLBUF_SIZE)
					p = (uint64_t)(uintptr_t)oolbuf;
				memcpy(msg + it.data_off, &p, sizeof(p));
				continue;
			}
			if (!mvm__msg_type_is_port(it.name) || (ctl[2] & F_RAW_NAMES))
				continue;
			for (uint32_t i = 0; i < it.number; i++) {
				mach_port_t n;

				memcpy(&n, msg + it.data_off + i * sizeof(n), sizeof(n));
				n = fuzz_map_name(&fs, n);
				memcpy(msg + it.data_off + i * sizeof(n), &n, sizeof(n));
			}
		}
	}

	mr = mach_msg(h, MACH_SEND_MSG | MACH_SEND_TIMEOUT, send_size, 0, MACH_PORT_NULL, 0,
	    MACH_PORT_NULL);
	if (fuzz_verbose())
		fprintf(stderr, "fuzz_msg_server: request id %d: send %s\n", h->msgh_id,
		    mvm_errname(mr));
	free(msg);
	/* A MIG server's max_size must hold its largest reply; F_SMALL_MAX uses just that, so
	 * most requests make the loop grow its buffers. */
	max_size = (ctl[2] & F_SMALL_MAX) ? (mach_msg_size_t)sizeof(struct complex_reply) : 8192;
	if (mr == MACH_MSG_SUCCESS) {
		mr = mach_msg_server_once(demux, max_size, service, MACH_RCV_TIMEOUT);
		if (mr != MACH_MSG_SUCCESS) {
			/* The request went to the service port, or (MOVE_SEND_ONCE of a right that
			 * was moved in the body) may have gone nowhere; never any other error. */
			if (mr != MACH_RCV_TIMED_OUT)
				fuzz_die("mach_msg_server_once", mr);
		}
	}
	/* The service port may still hold messages the request carried; serve those too. */
	(void)mach_msg_server_once(demux, max_size, service, MACH_RCV_TIMEOUT);
	if (fuzz_verbose())
		fprintf(stderr, "fuzz_msg_server: served, %u message(s) left\n", fuzz_drain());

	fuzz_destroy_all();
	fuzz_check_quiescent();
	return 0;
}
