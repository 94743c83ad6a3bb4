/*
 * src/mo/mo_wire.c: the engine behind every generated stub and demultiplexer of the
 * memory object interfaces (see mo.h). It packs arguments into GNU typed messages,
 * validates received messages strictly against the generated tables, and applies MIG's
 * conventions for replies and errors.
 *
 * Contents: 1. descriptors  2. unpack (validation)  3. pack  4. send and call  5. demux
 *
 * Every read of a message goes through memcpy at offsets checked against its size, so a
 * malformed or truncated message can make a check fail but never read out of bounds.
 */
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include <mach/mach.h>
#include <machvm/trace.h>
#include "ipc/ipc.h"
#include "mo/mo.h"

#define MVM__MO_BUF 256          /* larger than any message of these interfaces */
#define MVM__MO_SHORT_MAX 4095   /* largest msgt_number of the short form */

/* ---- 1. descriptors ---------------------------------------------------------------- */

/* The descriptor an item is sent with (short form). */
static mach_msg_type_t
item_type(const struct mvm__mo_item *it, const struct mvm__mo_arg *a)
{
	mach_msg_type_t t;

	memset(&t, 0, sizeof(t));
	t.msgt_inline = 1;
	t.msgt_number = 1;
	switch (it->wire) {
	case MVM__MO_I32:
		t.msgt_name = MACH_MSG_TYPE_INTEGER_32;
		t.msgt_size = 32;
		break;
	case MVM__MO_I64:
		t.msgt_name = MACH_MSG_TYPE_INTEGER_64;
		t.msgt_size = 64;
		break;
	case MVM__MO_PORT:
		t.msgt_name = it->disp;
		t.msgt_size = 32;
		break;
	default:
		t.msgt_name = MACH_MSG_TYPE_BYTE;
		t.msgt_size = 8;
		t.msgt_inline = 0;
		t.msgt_number = a->aux & 0xfff;
		t.msgt_deallocate = a->dealloc ? 1 : 0;
		break;
	}
	return t;
}

static void __attribute__((format(printf, 3, 4)))
why_set(char *why, size_t whylen, const char *fmt, ...)
{
	va_list ap;

	if (why == NULL || whylen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(why, whylen, fmt, ap);
	va_end(ap);
}

static const char *
wire_text(uint8_t wire)
{
	switch (wire) {
	case MVM__MO_I32: return "INTEGER_32";
	case MVM__MO_I64: return "INTEGER_64";
	case MVM__MO_PORT: return "port";
	default: return "out-of-line bytes";
	}
}

/* ---- 2. unpack ---------------------------------------------------------------------- */

/* Whether a port item's type name is acceptable, for the receiver's or sender's view. */
static bool
port_type_ok(const struct mvm__mo_item *it, mach_msg_type_name_t name, bool sent_view)
{
	if (sent_view) {
		if (it->flags & MVM__MO_POLY)
			return MACH_MSG_TYPE_PORT_ANY_SEND(name);
		return name == it->disp;
	}
	if (it->flags & MVM__MO_POLY)
		return name == MACH_MSG_TYPE_PORT_SEND || name == MACH_MSG_TYPE_PORT_SEND_ONCE;
	return name == mvm__msg_received_type(it->disp);
}

/*
 * The checker behind mvm__mo_unpack(); sent_view accepts the sender's dispositions
 * instead of the received types (for tracing a message before it is sent).
 */
static kern_return_t
unpack(const struct mvm__mo_msg *m, const mach_msg_header_t *msg, size_t avail,
    struct mvm__mo_arg *args, kern_return_t err, char *why, size_t whylen, bool sent_view)
{
	const unsigned char *base = (const unsigned char *)msg;
	size_t size, pos = sizeof(mach_msg_header_t);
	mach_msg_header_t h;

	if (avail < sizeof(h)) {
		why_set(why, whylen, "truncated header (%zu bytes)", avail);
		return err;
	}
	memcpy(&h, base, sizeof(h));
	size = h.msgh_size;
	if (size > avail || size < m->min_size || size > m->min_size + 8u * m->nool) {
		why_set(why, whylen, "size %zu, expected %u%s", size, (unsigned)m->min_size,
		    m->nool ? " (or more in long form)" : "");
		return err;
	}
	if (((h.msgh_bits & MACH_MSGH_BITS_COMPLEX) != 0) != m->complex) {
		why_set(why, whylen, "complex bit %s", m->complex ? "missing" : "set");
		return err;
	}
	for (unsigned i = 0; i < m->nitems; i++) {
		const struct mvm__mo_item *it = &m->items[i];
		mach_msg_type_t t;
		unsigned name, tsize, number;
		uint64_t v64 = 0;
		uint32_t v32 = 0;

		if (size - pos < sizeof(t) + 8) {
			why_set(why, whylen, "%s: truncated", it->name);
			return err;
		}
		memcpy(&t, base + pos, sizeof(t));
		name = t.msgt_name;
		tsize = t.msgt_size;
		number = t.msgt_number;
		pos += sizeof(t);
		if (t.msgt_longform) {
			mach_msg_type_long_t lt;

			if (it->wire != MVM__MO_OOL || name != 0 || tsize != 0 || number != 0) {
				why_set(why, whylen, "%s: unexpected long form", it->name);
				return err;
			}
			if (size - (pos - sizeof(t)) < sizeof(lt) + 8) {
				why_set(why, whylen, "%s: truncated", it->name);
				return err;
			}
			memcpy(&lt, base + pos - sizeof(t), sizeof(lt));
			name = lt.msgtl_name;
			tsize = lt.msgtl_size;
			number = lt.msgtl_number;
			pos += sizeof(lt) - sizeof(t);
		}
		if (t.msgt_unused) {
			why_set(why, whylen, "%s: unused descriptor bit set", it->name);
			return err;
		}
		switch (it->wire) {
		case MVM__MO_I32:
		case MVM__MO_I64: {
			bool is64 = it->wire == MVM__MO_I64;

			if (name != (is64 ? MACH_MSG_TYPE_INTEGER_64 : MACH_MSG_TYPE_INTEGER_32) ||
			    tsize != (is64 ? 64u : 32u) || number != 1 || !t.msgt_inline ||
			    t.msgt_deallocate) {
				why_set(why, whylen, "%s: type %u/%u x%u%s%s, expected %s", it->name,
				    name, tsize, number, t.msgt_inline ? "" : " out-of-line",
				    t.msgt_deallocate ? " dealloc" : "", wire_text(it->wire));
				return err;
			}
			if (is64) {
				memcpy(&v64, base + pos, sizeof(v64));
				args[i].val = v64;
			} else {
				memcpy(&v32, base + pos, sizeof(v32));
				args[i].val = v32;
			}
			args[i].aux = 0;
			break;
		}
		case MVM__MO_PORT:
			if (!port_type_ok(it, name, sent_view) || tsize != 32 || number != 1 ||
			    !t.msgt_inline || t.msgt_deallocate) {
				why_set(why, whylen, "%s: type %u/%u x%u%s%s, expected a port of type %u%s",
				    it->name, name, tsize, number, t.msgt_inline ? "" : " out-of-line",
				    t.msgt_deallocate ? " dealloc" : "",
				    sent_view ? it->disp : mvm__msg_received_type(it->disp),
				    (it->flags & MVM__MO_POLY) ? " (or any send right)" : "");
				return err;
			}
			memcpy(&v32, base + pos, sizeof(v32));
			args[i].val = v32;
			args[i].aux = name;
			break;
		default:
			if (name != MACH_MSG_TYPE_BYTE || tsize != 8 || t.msgt_inline) {
				why_set(why, whylen, "%s: type %u/%u x%u%s, expected out-of-line bytes",
				    it->name, name, tsize, number, t.msgt_inline ? " inline" : "");
				return err;
			}
			memcpy(&v64, base + pos, sizeof(v64));
			args[i].val = v64;
			args[i].aux = number;
			break;
		}
		args[i].dealloc = t.msgt_deallocate;
		pos += 8;
	}
	if (pos != size) {
		why_set(why, whylen, "size %zu, the items end at %zu", size, pos);
		return err;
	}
	return KERN_SUCCESS;
}

kern_return_t
mvm__mo_unpack(const struct mvm__mo_msg *m, const mach_msg_header_t *msg, size_t avail,
    struct mvm__mo_arg *args, kern_return_t err, char *why, size_t whylen)
{
	return unpack(m, msg, avail, args, err, why, whylen, false);
}

kern_return_t
mvm__mo_unpack_sent(const struct mvm__mo_msg *m, const mach_msg_header_t *msg, size_t avail,
    struct mvm__mo_arg *args, char *why, size_t whylen)
{
	return unpack(m, msg, avail, args, MIG_BAD_ARGUMENTS, why, whylen, true);
}

/* ---- 3. pack ------------------------------------------------------------------------ */

mach_msg_size_t
mvm__mo_pack(const struct mvm__mo_msg *m, const struct mvm__mo_arg *args,
    mach_msg_header_t *msg, size_t cap)
{
	unsigned char *base = (unsigned char *)msg;
	size_t pos = sizeof(mach_msg_header_t);

	for (unsigned i = 0; i < m->nitems; i++) {
		const struct mvm__mo_item *it = &m->items[i];
		mach_msg_type_t t = item_type(it, &args[i]);
		bool longform = it->wire == MVM__MO_OOL && args[i].aux > MVM__MO_SHORT_MAX;
		size_t need = (longform ? sizeof(mach_msg_type_long_t) : sizeof(t)) + 8;
		uint32_t v32 = (uint32_t)args[i].val;

		if (cap < pos || cap - pos < need)
			return 0;
		memset(base + pos, 0, need);
		if (longform) {
			mach_msg_type_long_t lt;

			memset(&lt, 0, sizeof(lt));
			lt.msgtl_header.msgt_longform = 1;
			lt.msgtl_header.msgt_deallocate = args[i].dealloc ? 1 : 0;
			lt.msgtl_name = MACH_MSG_TYPE_BYTE;
			lt.msgtl_size = 8;
			lt.msgtl_number = args[i].aux;
			memcpy(base + pos, &lt, sizeof(lt));
			pos += sizeof(lt);
		} else {
			memcpy(base + pos, &t, sizeof(t));
			pos += sizeof(t);
		}
		if (it->wire == MVM__MO_I64 || it->wire == MVM__MO_OOL)
			memcpy(base + pos, &args[i].val, sizeof(args[i].val));
		else
			memcpy(base + pos, &v32, sizeof(v32));
		pos += 8;
	}
	return (mach_msg_size_t)pos;
}

/* ---- 4. send and call ----------------------------------------------------------------- */

union mvm__mo_buf {
	mach_msg_header_t head;
	mig_reply_header_t reply;
	unsigned char bytes[MVM__MO_BUF];
};

static mvm_trace_fn *_Atomic trace_fn;
static void *_Atomic trace_arg;

void
mvm_trace_set(mvm_trace_fn *fn, void *arg)
{
	atomic_store(&trace_arg, arg);
	atomic_store(&trace_fn, fn);
}

static void
trace(const mach_msg_header_t *h)
{
	mvm_trace_fn *fn = atomic_load_explicit(&trace_fn, memory_order_acquire);
	char line[512];
	int n;

	if (fn == NULL)
		return;
	n = snprintf(line, sizeof(line), "%s: ",
	    h->msgh_id >= 2200 ? "kernel -> manager" : "manager -> kernel");
	(void)mvm_mo_decode(h, line + n, sizeof(line) - (size_t)n);
	fn(line, atomic_load(&trace_arg));
}

kern_return_t
mvm__mo_send(const struct mvm__mo_routine *r, mach_port_t dest, mach_msg_type_name_t disp,
    const struct mvm__mo_arg *args)
{
	union mvm__mo_buf buf;
	mach_msg_size_t size;

	memset(&buf, 0, sizeof(buf));
	size = mvm__mo_pack(r->request, args, &buf.head, sizeof(buf));
	buf.head.msgh_bits = MACH_MSGH_BITS(disp, 0) |
	    (r->request->complex ? MACH_MSGH_BITS_COMPLEX : 0);
	buf.head.msgh_size = size;
	buf.head.msgh_remote_port = dest;
	buf.head.msgh_local_port = MACH_PORT_NULL;
	buf.head.msgh_id = r->request->id;
	trace(&buf.head);
	/* Kernel-to-manager messages (the memory_object and memory_object_default
	 * subsystems) are kernel sends: they ignore the queue limit and never block. */
	return mach_msg(&buf.head, MACH_SEND_MSG |
	    (r->request->id >= 2200 ? MACH_SEND_ALWAYS : 0), size, 0, MACH_PORT_NULL,
	    MACH_MSG_TIMEOUT_NONE, MACH_PORT_NULL);
}

static bool
is_rcv_error(mach_msg_return_t mr)
{
	return (mr & ~0xfff) == (MACH_RCV_IN_PROGRESS & ~0xfff);
}

kern_return_t
mvm__mo_rpc(const struct mvm__mo_routine *r, mach_port_t dest,
    const struct mvm__mo_arg *args, struct mvm__mo_arg *out)
{
	union mvm__mo_buf buf;
	struct mvm__mo_arg rep[MVM__MO_MAX_ITEMS];
	mach_port_t reply_port = mig_get_reply_port();
	mach_msg_size_t size;
	mach_msg_return_t mr;
	kern_return_t kr;

	memset(&buf, 0, sizeof(buf));
	size = mvm__mo_pack(r->request, args, &buf.head, sizeof(buf));
	buf.head.msgh_bits = MACH_MSGH_BITS(r->dest_disp, MACH_MSG_TYPE_MAKE_SEND_ONCE) |
	    (r->request->complex ? MACH_MSGH_BITS_COMPLEX : 0);
	buf.head.msgh_size = size;
	buf.head.msgh_remote_port = dest;
	buf.head.msgh_local_port = reply_port;
	buf.head.msgh_id = r->request->id;
	trace(&buf.head);
	mr = mach_msg(&buf.head, MACH_SEND_MSG | MACH_RCV_MSG, size, sizeof(buf), reply_port,
	    MACH_MSG_TIMEOUT_NONE, MACH_PORT_NULL);
	if (mr != MACH_MSG_SUCCESS) {
		/* As MIG does: a failed receive may leave the reply port in doubt. */
		if (is_rcv_error(mr))
			mig_dealloc_reply_port(reply_port);
		return mr;
	}
	if (buf.head.msgh_id != r->reply->id) {
		mach_msg_destroy(&buf.head);
		return MIG_REPLY_MISMATCH;
	}
	/* A short reply carries only an error. */
	if (buf.head.msgh_size == sizeof(mig_reply_header_t) &&
	    mvm__mo_unpack(&mvm__mo_mig_reply, &buf.head, sizeof(buf), rep, MIG_TYPE_ERROR,
	    NULL, 0) == KERN_SUCCESS) {
		kr = (kern_return_t)(int32_t)(uint32_t)rep[0].val;
		if (kr != KERN_SUCCESS)
			return kr;
		return MIG_TYPE_ERROR;
	}
	kr = mvm__mo_unpack(r->reply, &buf.head, sizeof(buf), rep, MIG_TYPE_ERROR, NULL, 0);
	if (kr == KERN_SUCCESS)
		kr = (kern_return_t)(int32_t)(uint32_t)rep[0].val;
	if (kr != KERN_SUCCESS) {
		mach_msg_destroy(&buf.head);
		return kr;
	}
	for (unsigned i = 1; i < r->reply->nitems; i++)
		out[i - 1] = rep[i];
	return KERN_SUCCESS;
}

/* ---- 5. demux ----------------------------------------------------------------------- */

static const struct mvm__mo_item mig_reply_items[] = {
	{ "RetCode", MVM__MO_I32, 0, MVM__MO_FMT_KR, 0 },
};

const struct mvm__mo_msg mvm__mo_mig_reply = {
	.name = "mig_reply", .id = 0, .complex = false, .nitems = 1,
	.items = mig_reply_items, .min_size = sizeof(mig_reply_header_t), .nool = 0,
};

static const struct mvm__mo_routine *
find(const struct mvm__mo_subsystem *const *ss, unsigned nss, mach_msg_id_t id)
{
	for (unsigned i = 0; i < nss; i++) {
		int64_t k = (int64_t)id - ss[i]->base;

		if (k >= 0 && k < (int64_t)ss[i]->nroutines)
			return ss[i]->routines[k];
	}
	return NULL;
}

const struct mvm__mo_routine *
mvm__mo_lookup(mach_msg_id_t id, bool *is_reply)
{
	const struct mvm__mo_routine *r = find(mvm__mo_subsystems, mvm__mo_nsubsystems, id);

	*is_reply = false;
	if (r != NULL)
		return r;
	r = find(mvm__mo_subsystems, mvm__mo_nsubsystems, (mach_msg_id_t)((int64_t)id - 100));
	if (r != NULL && r->reply != NULL) {
		*is_reply = true;
		return r;
	}
	return NULL;
}

boolean_t
mvm__mo_demux(const struct mvm__mo_subsystem *const *ss, unsigned nss,
    enum mvm__mo_mode mode, const void *ops, void *ctx, mach_msg_header_t *in,
    mach_msg_header_t *out)
{
	mig_reply_header_t *rep = (mig_reply_header_t *)out;
	const struct mvm__mo_routine *r = find(ss, nss, in->msgh_id);
	struct mvm__mo_arg args[MVM__MO_MAX_ITEMS], res[MVM__MO_MAX_ITEMS];
	kern_return_t kr;

	out->msgh_bits = MACH_MSGH_BITS(MACH_MSGH_BITS_REMOTE(in->msgh_bits), 0);
	out->msgh_size = sizeof(*rep);
	out->msgh_remote_port = in->msgh_remote_port;
	out->msgh_local_port = MACH_PORT_NULL;
	out->msgh_seqno = 0;
	out->msgh_id = (mach_msg_id_t)((uint32_t)in->msgh_id + 100u);
	memset(&rep->RetCodeType, 0, sizeof(rep->RetCodeType));
	rep->RetCodeType.msgt_name = MACH_MSG_TYPE_INTEGER_32;
	rep->RetCodeType.msgt_size = 32;
	rep->RetCodeType.msgt_number = 1;
	rep->RetCodeType.msgt_inline = 1;
	if (r == NULL || r->invoke == NULL || (mode == MVM__MO_OPS && ops == NULL)) {
		rep->RetCode = MIG_BAD_ID;
		return FALSE;
	}
	kr = mvm__mo_unpack(r->request, in, in->msgh_size, args, MIG_BAD_ARGUMENTS, NULL, 0);
	if (kr == KERN_SUCCESS) {
		memset(res, 0, sizeof(res));
		kr = r->invoke(mode, ops, ctx, in, args, &res[1]);
	}
	rep->RetCode = kr;
	if (kr == KERN_SUCCESS && r->reply != NULL) {
		res[0].val = KERN_SUCCESS;
		out->msgh_size = mvm__mo_pack(r->reply, res, out, r->reply->min_size);
		if (r->reply->complex)
			out->msgh_bits |= MACH_MSGH_BITS_COMPLEX;
	}
	return TRUE;
}
