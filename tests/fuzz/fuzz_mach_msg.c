/*
 * tests/fuzz/fuzz_mach_msg.c: fuzz mach_msg(MACH_SEND_MSG) with a message taken from the
 * input, against a name space holding every kind of right.
 *
 * Input: 4 control bytes, then the message.
 *   [0] destination: below 0xe0, msgh_remote_port becomes names[b % FN_COUNT]; else raw.
 *   [1] destination disposition: below 0xe0, one of the five valid ones; else raw bits.
 *   [2] flags: FL_SANE_BITS clears msgh_bits other than COMPLEX; FL_SIZE_ALIGN rounds the
 *       send size down to 4; FL_NOTIFY adds MACH_SEND_NOTIFY; FL_FULL fills R0's queue
 *       (qlimit 1) first, so sends to R0 through a send right time out; FL_DNREQUEST asks
 *       for a dead-name notification on R0's name and a no-senders one on R2, both to R1;
 *       FL_RAW_NAMES leaves the body's port names raw (else small values map to the table).
 *   [3] reply port: below 0xc0 a small msgh_local_port maps through the table; else raw.
 * The message body is used as it is, except that out-of-line pointers (arbitrary numbers
 * in the input) are replaced by: a pointer into a buffer of this file (data, or port names
 * mapped through the table), a fresh vm_allocate() region when the item asks for
 * deallocation, or an invalid low address (0, 0x1000 + x), for which the send must fail.
 *
 * Oracles: a failed send changes no right, message or region (snapshot before and after);
 * a successful send queues exactly one message; every queued message can be received
 * (through MACH_RCV_LARGE) and destroyed; after destroying every name the IPC layer is
 * quiescent. Any violation aborts.
 */
#include "fuzz_common.h"

#define FL_SANE_BITS  0x01
#define FL_SIZE_ALIGN 0x02
#define FL_NOTIFY     0x04
#define FL_FULL       0x08
#define FL_DNREQUEST  0x10
#define FL_RAW_NAMES  0x20

#define OOLBUF_SIZE (64 * 1024)
#define NAMEBUF_COUNT 1024
#define MAX_DEALLOC 16
#define MAX_FRESH_LEN (1u << 20)

static uint8_t oolbuf[OOLBUF_SIZE] __attribute__((aligned(4096)));
static mach_port_t namebuf[NAMEBUF_COUNT];

static const mach_msg_type_name_t dispositions[] = {
	MACH_MSG_TYPE_MOVE_SEND, MACH_MSG_TYPE_COPY_SEND, MACH_MSG_TYPE_MAKE_SEND,
	MACH_MSG_TYPE_MOVE_SEND_ONCE, MACH_MSG_TYPE_MAKE_SEND_ONCE,
};

struct fresh {
	vm_address_t addr;
	vm_size_t len;
	bool dealloc;                 /* a successful send deallocates it */
};

/* Replace the out-of-line pointer at `slot`; returns false if it is now invalid. */
static bool
patch_ool(const struct fuzz_space *fs, uint8_t *msg, const struct mvm_msg_item *it,
    struct fresh *fresh, unsigned *nfresh)
{
	uint64_t raw, p;
	uint64_t len = it->data_len;
	bool isport = mvm__msg_type_is_port(it->name);
	unsigned mode;

	memcpy(&raw, msg + it->data_off, sizeof(raw));
	mode = raw & 3;
	if (len == 0)
		return true; /* the pointer is ignored */
	if (it->dealloc && mode == 0)
		mode = 3; /* never let a send deallocate our own buffers */
	switch (mode) {
	case 0:
		if (isport) {
			uint64_t off = (raw >> 2) % NAMEBUF_COUNT;

			if (off * sizeof(mach_port_t) + len > sizeof(namebuf))
				goto invalid;
			p = (uint64_t)(uintptr_t)&namebuf[off];
		} else {
			uint64_t off = (raw >> 2) % 8192;

			if (off + len > OOLBUF_SIZE)
				goto invalid;
			p = (uint64_t)(uintptr_t)oolbuf + off;
		}
		break;
	case 3: {
		vm_address_t a = 0;
		uint64_t off = isport ? 0 : (raw >> 2) % 4096;
		vm_size_t rlen;

		if (len > MAX_FRESH_LEN || *nfresh == MAX_DEALLOC)
			goto invalid;
		rlen = (vm_size_t)(off + len);
		FUZZ_OK(vm_allocate(mach_task_self(), &a, rlen, TRUE));
		if (isport) {
			for (uint64_t i = 0; i < len / sizeof(mach_port_t); i++)
				((mach_port_t *)a)[i] = namebuf[i % NAMEBUF_COUNT];
		} else {
			memcpy((void *)(a + off), oolbuf, len < OOLBUF_SIZE ? len : OOLBUF_SIZE);
		}
		fresh[*nfresh].addr = a;
		fresh[*nfresh].len = rlen;
		fresh[*nfresh].dealloc = it->dealloc;
		(*nfresh)++;
		p = a + off;
		break;
	}
	case 1:
		p = 0x1000 + ((raw >> 2) % 0x1000);
		goto store_invalid;
	default:
		p = 0;
		goto store_invalid;
	}
	memcpy(msg + it->data_off, &p, sizeof(p));
	return true;
invalid:
	p = 0x1000;
store_invalid:
	memcpy(msg + it->data_off, &p, sizeof(p));
	return false;
}

static void
fill_queue(const struct fuzz_space *fs)
{
	mach_msg_header_t h;

	FUZZ_OK(mach_port_set_qlimit(mach_task_self(), fs->names[FN_R0], 1));
	memset(&h, 0, sizeof(h));
	h.msgh_bits = MACH_MSGH_BITS(MACH_MSG_TYPE_COPY_SEND, 0);
	h.msgh_remote_port = fs->names[FN_R0];
	h.msgh_id = 4343;
	FUZZ_OK(mach_msg(&h, MACH_SEND_MSG | MACH_SEND_TIMEOUT, sizeof(h), 0, MACH_PORT_NULL, 0,
	    MACH_PORT_NULL));
}

static void
request_notifications(const struct fuzz_space *fs)
{
	mach_port_t prev = MACH_PORT_NULL;

	FUZZ_OK(mach_port_request_notification(mach_task_self(), fs->names[FN_R0],
	    MACH_NOTIFY_DEAD_NAME, 0, fs->names[FN_R1], MACH_MSG_TYPE_MAKE_SEND_ONCE, &prev));
	if (prev != MACH_PORT_NULL)
		abort();
	FUZZ_OK(mach_port_request_notification(mach_task_self(), fs->names[FN_R2],
	    MACH_NOTIFY_NO_SENDERS, 0, fs->names[FN_R1], MACH_MSG_TYPE_MAKE_SEND_ONCE, &prev));
	if (prev != MACH_PORT_NULL)
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_space fs;
	struct fuzz_snap before, after;
	struct fresh fresh[MAX_DEALLOC];
	unsigned nfresh = 0;
	bool invalid_ool = false;
	uint8_t ctl[4] = { 0, 0, 0, 0 };
	size_t len, buflen;
	uint8_t *msg;
	mach_msg_header_t *h;
	mach_msg_size_t send_size;
	mach_msg_option_t option = MACH_SEND_MSG | MACH_SEND_TIMEOUT;
	mach_msg_return_t mr;
	struct mvm_ipc_stats st0, st1;

	if (size > MVM_MSG_SIZE_MAX)
		return 0;
	memcpy(ctl, data, size < 4 ? size : 4);
	data += size < 4 ? size : 4;
	len = size < 4 ? 0 : size - 4;

	fuzz_space_init(&fs);
	if (ctl[2] & FL_FULL)
		fill_queue(&fs);
	if (ctl[2] & FL_DNREQUEST)
		request_notifications(&fs);
	/* The out-of-line data: the input, repeated. */
	for (size_t i = 0; i < OOLBUF_SIZE; i += len ? len : OOLBUF_SIZE) {
		if (len == 0)
			memset(oolbuf, 0x5a, OOLBUF_SIZE);
		else
			memcpy(oolbuf + i, data, OOLBUF_SIZE - i < len ? OOLBUF_SIZE - i : len);
	}
	for (size_t i = 0; i < NAMEBUF_COUNT; i++)
		namebuf[i] = fs.names[(len ? data[i % len] : i) % FN_COUNT];

	/* The message, 8-byte aligned, at least a header long (the send size is the input's). */
	buflen = len < sizeof(mach_msg_header_t) ? sizeof(mach_msg_header_t) : len;
	msg = calloc(1, buflen + 8);
	if (msg == NULL)
		abort();
	memcpy(msg, data, len);
	h = (mach_msg_header_t *)msg;
	send_size = (mach_msg_size_t)len;
	if (ctl[2] & FL_SIZE_ALIGN)
		send_size &= ~3u;
	if (ctl[2] & FL_SANE_BITS)
		h->msgh_bits &= MACH_MSGH_BITS_PORTS_MASK | MACH_MSGH_BITS_COMPLEX;
	if (ctl[0] < 0xe0)
		h->msgh_remote_port = fs.names[ctl[0] % FN_COUNT];
	if (ctl[1] < 0xe0)
		h->msgh_bits = (h->msgh_bits & ~MACH_MSGH_BITS_REMOTE_MASK) |
		    dispositions[ctl[1] % (sizeof(dispositions) / sizeof(dispositions[0]))];
	if (ctl[3] < 0xc0)
		h->msgh_local_port = fuzz_map_name(&fs, h->msgh_local_port);
	if (ctl[2] & FL_NOTIFY)
		option |= MACH_SEND_NOTIFY;

	/* Patch the body: names through the table, out-of-line pointers to safe places. */
	if ((h->msgh_bits & MACH_MSGH_BITS_COMPLEX) && send_size >= sizeof(*h)) {
		size_t pos = sizeof(*h);
		struct mvm_msg_item it;

		while (pos < send_size && mvm__msg_next_item(msg, send_size, &pos, &it) == 0) {
			if (!it.is_inline) {
				if (!patch_ool(&fs, msg, &it, fresh, &nfresh))
					invalid_ool = true;
				continue;
			}
			if (!mvm__msg_type_is_port(it.name) || (ctl[2] & FL_RAW_NAMES))
				continue;
			for (uint32_t i = 0; i < it.number; i++) {
				mach_port_t n;

				memcpy(&n, msg + it.data_off + i * sizeof(n), sizeof(n));
				n = fuzz_map_name(&fs, n);
				memcpy(msg + it.data_off + i * sizeof(n), &n, sizeof(n));
			}
		}
	}

	fuzz_snapshot(&before);
	mvm_ipc_stats(&st0);
	mr = mach_msg(h, option, send_size, 0, MACH_PORT_NULL, 0, MACH_PORT_NULL);
	mvm_ipc_stats(&st1);
	if (fuzz_verbose())
		fprintf(stderr, "fuzz_mach_msg: id %d size %u: %s\n", h->msgh_id, send_size,
		    mvm_errname(mr));
	if (mr == MACH_MSG_SUCCESS) {
		if (invalid_ool) {
			fprintf(stderr, "fuzz: send succeeded with an invalid out-of-line pointer\n");
			abort();
		}
		/* Exactly one message queued (a destroyed one, if the destination died, is not
		 * counted), plus any notification the rights taken may have caused. */
		if (st1.msgs_sent - st0.msgs_sent > 1 + (st1.notifications - st0.notifications)) {
			fprintf(stderr, "fuzz: one send queued %llu messages\n",
			    (unsigned long long)(st1.msgs_sent - st0.msgs_sent));
			abort();
		}
		/* The regions sent with msgt_deallocate are gone; the others are still ours. */
		for (unsigned i = 0; i < nfresh; i++)
			if (!fresh[i].dealloc)
				FUZZ_OK(vm_deallocate(mach_task_self(), fresh[i].addr, fresh[i].len));
	} else {
		fuzz_snapshot(&after);
		fuzz_snapshot_compare(&before, &after, mr);
		for (unsigned i = 0; i < nfresh; i++)
			FUZZ_OK(vm_deallocate(mach_task_self(), fresh[i].addr, fresh[i].len));
	}
	free(msg);

	fuzz_destroy_all();
	fuzz_check_quiescent();
	return 0;
}
