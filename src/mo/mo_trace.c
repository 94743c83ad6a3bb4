/*
 * src/mo/mo_trace.c: the one-line decoder of <machvm/trace.h>. It reuses the engine's
 * checks (mvm__mo_unpack), so it agrees with the demultiplexers on what is well formed,
 * and formats each item by the kind of value the description gives it.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <machvm/ipc.h>
#include <machvm/trace.h>
#include "mo/mo.h"

/* An output buffer that truncates silently and stays NUL-terminated. */
struct out {
	char *buf;
	size_t len, pos;
};

static void __attribute__((format(printf, 2, 3)))
put(struct out *o, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (o->len == 0 || o->pos >= o->len - 1)
		return;
	va_start(ap, fmt);
	n = vsnprintf(o->buf + o->pos, o->len - o->pos, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	o->pos += (size_t)n;
	if (o->pos > o->len - 1)
		o->pos = o->len - 1;
}

static const char *
port_type_text(uint32_t t)
{
	switch (t) {
	case MACH_MSG_TYPE_PORT_RECEIVE: return "receive";
	case MACH_MSG_TYPE_PORT_SEND: return "send";
	case MACH_MSG_TYPE_PORT_SEND_ONCE: return "send-once";
	case MACH_MSG_TYPE_COPY_SEND: return "copy-send";
	case MACH_MSG_TYPE_MAKE_SEND: return "make-send";
	case MACH_MSG_TYPE_MAKE_SEND_ONCE: return "make-send-once";
	default: return "?";
	}
}

static void
put_kr(struct out *o, int32_t kr)
{
	const char *name = mvm_errname(kr);

	if (name != NULL && (name[0] == 'K' || name[0] == 'M'))
		put(o, "%s", name);
	else
		put(o, "%d", kr);
}

static void
put_prot(struct out *o, int32_t p)
{
	static const struct {
		int32_t bit;
		const char *name;
	} bits[] = {
		{ VM_PROT_READ, "READ" }, { VM_PROT_WRITE, "WRITE" }, { VM_PROT_EXECUTE, "EXECUTE" },
		{ VM_PROT_NO_CHANGE, "NO_CHANGE" }, { VM_PROT_NOTIFY, "NOTIFY" },
	};
	const char *sep = "";

	if (p == VM_PROT_NONE) {
		put(o, "NONE");
		return;
	}
	for (size_t i = 0; i < sizeof(bits) / sizeof(bits[0]); i++)
		if (p & bits[i].bit) {
			put(o, "%s%s", sep, bits[i].name);
			sep = "|";
			p &= ~bits[i].bit;
		}
	if (p != 0)
		put(o, "%s0x%x", sep, (unsigned)p);
}

static void
put_enum(struct out *o, int32_t v, const char *const *names, int n)
{
	if (v >= 0 && v < n)
		put(o, "%s", names[v]);
	else
		put(o, "%d", v);
}

static void
put_item(struct out *o, const struct mvm__mo_item *it, const struct mvm__mo_arg *a)
{
	static const char *const returns[] = { "RETURN_NONE", "RETURN_DIRTY", "RETURN_ALL" };
	static const char *const copies[] = {
		"COPY_NONE", "COPY_CALL", "COPY_DELAY", "COPY_TEMPORARY"
	};
	int32_t i32 = (int32_t)(uint32_t)a->val;

	switch (it->fmt) {
	case MVM__MO_FMT_HEX:
		put(o, "%s=0x%llx", it->name, (unsigned long long)a->val);
		break;
	case MVM__MO_FMT_BOOL:
		if (i32 == 0 || i32 == 1)
			put(o, "%s=%s", it->name, i32 ? "TRUE" : "FALSE");
		else
			put(o, "%s=%d", it->name, i32);
		break;
	case MVM__MO_FMT_PROT:
		put(o, "%s=", it->name);
		put_prot(o, i32);
		break;
	case MVM__MO_FMT_KR:
		put(o, "%s=", it->name);
		put_kr(o, i32);
		break;
	case MVM__MO_FMT_RETURN:
		put(o, "%s=", it->name);
		put_enum(o, i32, returns, 3);
		break;
	case MVM__MO_FMT_COPY:
		put(o, "%s=", it->name);
		put_enum(o, i32, copies, 4);
		break;
	case MVM__MO_FMT_PORT:
		put(o, "%s=0x%x", it->name, (unsigned)a->val);
		if (it->flags & MVM__MO_POLY)
			put(o, "(%s)", port_type_text(a->aux));
		break;
	case MVM__MO_FMT_OOL:
		put(o, "%s=0x%llx, %s_count=%u%s", it->name, (unsigned long long)a->val, it->name,
		    a->aux, a->dealloc ? " (dealloc)" : "");
		break;
	default:
		put(o, "%s=%d", it->name, i32);
		break;
	}
}

kern_return_t
mvm_mo_decode_bytes(const void *msg, size_t avail, char *buf, size_t len)
{
	struct out o = { .buf = buf, .len = len, .pos = 0 };
	struct mvm__mo_arg args[MVM__MO_MAX_ITEMS];
	const struct mvm__mo_routine *r;
	const struct mvm__mo_msg *m;
	mach_msg_header_t h;
	char why[160];
	bool is_reply, sent;
	kern_return_t kr;

	if (len > 0)
		buf[0] = '\0';
	if (msg == NULL || avail < sizeof(h)) {
		put(&o, "<truncated message: %zu bytes>", msg == NULL ? (size_t)0 : avail);
		return MIG_BAD_ARGUMENTS;
	}
	memcpy(&h, msg, sizeof(h));
	r = mvm__mo_lookup(h.msgh_id, &is_reply);
	if (r == NULL) {
		put(&o, "<unknown message id %d, size %u>", h.msgh_id, (unsigned)h.msgh_size);
		return MIG_BAD_ID;
	}
	m = is_reply ? r->reply : r->request;
	/*
	 * A received message's local bits give the type of the right it arrived on
	 * (PORT_SEND or PORT_SEND_ONCE); a message about to be sent has none there, or the
	 * reply port's disposition, which is never one of those.
	 */
	sent = MACH_MSGH_BITS_LOCAL(h.msgh_bits) != MACH_MSG_TYPE_PORT_SEND &&
	    MACH_MSGH_BITS_LOCAL(h.msgh_bits) != MACH_MSG_TYPE_PORT_SEND_ONCE;
	if (sent)
		kr = mvm__mo_unpack_sent(m, msg, avail, args, why, sizeof(why));
	else
		kr = mvm__mo_unpack(m, msg, avail, args, MIG_BAD_ARGUMENTS, why, sizeof(why));
	if (kr != KERN_SUCCESS && is_reply && h.msgh_size == sizeof(mig_reply_header_t) &&
	    mvm__mo_unpack(&mvm__mo_mig_reply, msg, avail, args, MIG_BAD_ARGUMENTS, NULL, 0) ==
	    KERN_SUCCESS) {
		m = &mvm__mo_mig_reply;   /* a short reply: RetCode alone */
		kr = KERN_SUCCESS;
	}
	put(&o, "%s%s(", r->request->name, is_reply ? " reply" : "");
	if (kr != KERN_SUCCESS) {
		put(&o, "<malformed: %s>)", why);
		return kr;
	}
	if (!is_reply) {
		put(&o, "%s=0x%x", r->dest_name,
		    (unsigned)(sent ? h.msgh_remote_port : h.msgh_local_port));
		if (r->dest_disp == 0)
			put(&o, "(%s)", port_type_text(sent ? MACH_MSGH_BITS_REMOTE(h.msgh_bits) :
			    MACH_MSGH_BITS_LOCAL(h.msgh_bits)));
	}
	for (unsigned i = 0; i < m->nitems; i++) {
		if (i > 0 || !is_reply)
			put(&o, ", ");
		put_item(&o, &m->items[i], &args[i]);
	}
	put(&o, ")");
	if (!sent)
		put(&o, " seqno=%u", (unsigned)h.msgh_seqno);
	return KERN_SUCCESS;
}

kern_return_t
mvm_mo_decode(const mach_msg_header_t *msg, char *buf, size_t len)
{
	if (msg == NULL)
		return mvm_mo_decode_bytes(NULL, 0, buf, len);
	return mvm_mo_decode_bytes(msg, msg->msgh_size, buf, len);
}
