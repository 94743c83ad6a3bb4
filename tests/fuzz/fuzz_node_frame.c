/*
 * tests/fuzz/fuzz_node_frame.c: fuzz what a node does with a frame another process sent:
 * the wire decoder (mvm__wire_check_msg), building the message (out-of-line regions,
 * rights), translating every reference (tokens of our ports, ports of other nodes, moved
 * receive rights) and the control frames that count rights (REGISTER, RELEASE, XFER, ...).
 *
 * Input: 4 control bytes, then material.
 *   [0] kind: 0-4 a message frame built from the material (so that random input gets
 *       past the framing), 5 a control frame, 6-7 the material itself as a raw frame.
 *   [1] number of port references (0-7) of a built message; the control frame's type.
 *   [2] number of out-of-line descriptors (0-3).
 *   [3] flags: bit 0 the destination names our port R; bit 1 references of kind YOURS
 *       name R; bit 2 references of kind NODE name the sending node; bit 3 the reply is
 *       YOURS R; bit 4 the control frame names R; bit 5 a second frame follows (the rest).
 * A built message takes its references, descriptors and body from the material in that
 * order (zero-padded), and its body size from what is left (a multiple of 4, at least a
 * header).
 *
 * The frames come from a fake node (pid 1, an incarnation per run) that is never
 * connected. After each run every message queued on R is received and destroyed and the
 * fake node is made to die and forgotten; then nothing may be left but R and its export:
 * no name, port, message, proxy or byte of IPC memory. Any violation aborts.
 */
#include "fuzz_common.h"

#include <machvm/node.h>
#include "ipc/node.h"

static mach_port_t R;
static uint8_t R_token[16];
static uint64_t run_inc = 1000;

static void
setup(void)
{
	if (R != MACH_PORT_NULL)
		return;
	FUZZ_OK(mach_port_allocate(mach_task_self(), MACH_PORT_RIGHT_RECEIVE, &R));
	FUZZ_OK(mvm__node_export_name(R, R_token));
}

static void
take(void *dst, size_t len, const uint8_t **p, size_t *left)
{
	size_t n = len < *left ? len : *left;

	memset(dst, 0, len);
	memcpy(dst, *p, n);
	*p += n;
	*left -= n;
}

static void
patch_ref(struct mvm_wref *w, uint8_t flags)
{
	w->kind %= MVM_WR_RECEIVE + 2;
	if (w->kind == MVM_WR_YOURS && (flags & 2))
		memcpy(w->token, R_token, 16);
	if (w->kind == MVM_WR_NODE && (flags & 4)) {
		w->pid = 1;
		w->inc = run_inc;
	}
	if (w->type & 0x80)
		w->type = MACH_MSG_TYPE_PORT_SEND + (w->type % 3);
}

static size_t
build_msg(uint8_t *out, size_t cap, const uint8_t *p, size_t left, uint8_t nports, uint8_t nool,
    uint8_t flags)
{
	struct mvm_wmsg wm;
	struct mvm_wref refs[7];
	struct mvm_wool wool[3];
	size_t len, body;

	take(&wm, sizeof(wm), &p, &left);
	for (unsigned i = 0; i < nports; i++) {
		take(&refs[i], sizeof(refs[i]), &p, &left);
		patch_ref(&refs[i], flags);
	}
	for (unsigned i = 0; i < nool; i++) {
		take(&wool[i], sizeof(wool[i]), &p, &left);
		wool[i].fd = MVM_WOOL_INLINE;
		wool[i].len %= 3 * 4096;
	}
	body = left & ~(size_t)3;
	if (body < sizeof(mach_msg_header_t))
		body = sizeof(mach_msg_header_t);
	wm.h.magic = MVM_WIRE_MAGIC;
	wm.h.type = MVM_WF_MSG;
	wm.h.flags = 0;
	wm.nports = nports;
	wm.nool = nool;
	/* Extra references: MVM_WR_EXTRA per receive right, zeros (the material may say
	 * otherwise through a raw frame). */
	wm.nextra = 0;
	for (unsigned i = 0; i < nports; i++)
		if (refs[i].kind == MVM_WR_RECEIVE)
			wm.nextra += MVM_WR_EXTRA;
	wm.size = (uint32_t)body;
	wm.dest.kind = MVM_WR_YOURS;
	wm.dest.type = (wm.dest.type & 1) ? MACH_MSG_TYPE_PORT_SEND_ONCE : MACH_MSG_TYPE_PORT_SEND;
	if (flags & 1)
		memcpy(wm.dest.token, R_token, 16);
	patch_ref(&wm.reply, flags);
	if (flags & 8) {
		wm.reply.kind = MVM_WR_YOURS;
		memcpy(wm.reply.token, R_token, 16);
	}
	/* Extra references (nextra) are taken from the port references' slots. */
	len = sizeof(wm) + (nports + wm.nextra) * sizeof(struct mvm_wref) + nool * sizeof(wool[0]);
	if (len + body + 8 + 4 * 4096 > cap)
		return 0;
	memcpy(out, &wm, sizeof(wm));
	memcpy(out + sizeof(wm), refs, nports * sizeof(refs[0]));
	memset(out + sizeof(wm) + nports * sizeof(refs[0]), 0, wm.nextra * sizeof(refs[0]));
	memcpy(out + sizeof(wm) + (nports + wm.nextra) * sizeof(refs[0]), wool, nool * sizeof(wool[0]));
	memset(out + len, 0, (body + 7) & ~(size_t)7);
	memcpy(out + len, p, left < body ? left : body);
	{
		mach_msg_header_t h;

		memcpy(&h, out + len, sizeof(h));
		h.msgh_size = (mach_msg_size_t)body;
		memcpy(out + len, &h, sizeof(h));
	}
	len += (body + 7) & ~(size_t)7;
	/* Inline out-of-line data after the body: zeros, at the offsets the descriptors
	 * point to when they fit. */
	for (unsigned i = 0; i < nool; i++) {
		struct mvm_wool w;

		memcpy(&w, out + sizeof(wm) + (nports + wm.nextra) * sizeof(refs[0]) + i * sizeof(w),
		    sizeof(w));
		w.inline_off = len;
		memcpy(out + sizeof(wm) + (nports + wm.nextra) * sizeof(refs[0]) + i * sizeof(w), &w,
		    sizeof(w));
		memset(out + len, 0xa5, (size_t)w.len);
		len += ((size_t)w.len + 7) & ~(size_t)7;
	}
	((struct mvm_whdr *)out)->len = (uint32_t)len;
	return len;
}

static void
drain_and_check(void)
{
	union {
		mach_msg_header_t h;
		uint8_t buf[1 << 16];
	} m;
	struct mvm_ipc_stats st;
	struct mvm_node_stats ns;

	/* The fake nodes die first: that may queue send-once notifications on R. */
	mvm__node_forget_peers();
	for (;;) {
		mach_msg_return_t mr = mach_msg(&m.h, MACH_RCV_MSG | MACH_RCV_TIMEOUT | MACH_RCV_LARGE,
		    0, sizeof(m), R, 0, MACH_PORT_NULL);

		if (mr == MACH_RCV_TIMED_OUT)
			break;
		if (mr != MACH_MSG_SUCCESS)
			fuzz_die("receive on R", mr);
		if (fuzz_verbose())
			fprintf(stderr, "R received id %d\n", m.h.msgh_id);
		mach_msg_destroy(&m.h);
	}
	mvm__node_forget_peers(); /* rights the messages carried were proxies of them */
	run_inc++;
	mvm_ipc_stats(&st);
	FUZZ_OK(mvm_node_stats(&ns));
	if (st.names != 1 || st.ports != 1 || st.kmsgs != 0 || st.vm_bytes != 0 ||
	    ns.proxies != 0 || ns.exports != 1 || ns.peers != 0) {
		fprintf(stderr, "fuzz: left behind: %llu names, %llu ports, %llu messages, %llu bytes, "
		    "%llu proxies, %llu exports, %llu peers\n", (unsigned long long)st.names,
		    (unsigned long long)st.ports, (unsigned long long)st.kmsgs,
		    (unsigned long long)st.vm_bytes, (unsigned long long)ns.proxies,
		    (unsigned long long)ns.exports, (unsigned long long)ns.peers);
		abort();
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t frame[(1 << 17)];
	const uint8_t *p = data + 4;
	size_t left, len = 0;
	int frames = 0;

	setup();
	if (size < 4)
		return 0;
	left = size - 4;
	do {
		uint8_t kind = data[0] % 8, n1 = data[1], n2 = data[2], flags = data[3];

		if (kind <= 4) {
			len = build_msg(frame, sizeof(frame), p, left > 60000 ? 60000 : left, n1 % 8,
			    n2 % 4, flags);
		} else if (kind == 5) {
			struct mvm_wctl c;

			take(&c, sizeof(c), &p, &left);
			c.h.magic = MVM_WIRE_MAGIC;
			c.h.type = (uint16_t)(MVM_WF_REGISTER + n1 % 6);
			c.h.len = sizeof(c);
			if (flags & 16)
				memcpy(c.token, R_token, 16);
			memcpy(frame, &c, sizeof(c));
			len = sizeof(c);
		} else {
			len = left < sizeof(frame) ? left : sizeof(frame);
			memcpy(frame, p, len);
		}
		if (len > 0) {
			bool ok = mvm__node_inject_frame(frame, len, 1, run_inc);

			if (fuzz_verbose())
				fprintf(stderr, "frame kind %u len %zu: %s\n", kind, len,
				    ok ? "taken" : "refused");
		}
		frames++;
	} while ((data[3] & 32) && frames < 2);
	drain_and_check();
	return 0;
}
