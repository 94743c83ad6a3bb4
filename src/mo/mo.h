/*
 * src/mo/mo.h: the memory object interface layer's private view: the tables that
 * tools/mig/mvm-mig.c generates from defs/memory_object.mdefs, and the engine
 * (src/mo/mo_wire.c) that packs, sends, validates and dispatches messages by reading them.
 *
 * Contents: 1. message tables  2. arguments  3. the engine  4. generated glue
 *
 * The generated code holds no wire knowledge: every stub fills an array of arguments and
 * calls the engine, and every demultiplexer asks the engine to validate the message into
 * such an array before the generated glue calls the routine with typed arguments. The
 * engine is therefore the one place that knows the layout, and the one place fuzzed.
 *
 * Thread safety: the tables are constant; the engine functions keep no state and may be
 * called from any thread.
 */
#ifndef MVM_MO_MO_H
#define MVM_MO_MO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <mach/mach_types.h>
#include <mach/mig_errors.h>

/* ---- 1. message tables ------------------------------------------------------------ */

/* How an item travels. */
enum mvm__mo_wire {
	MVM__MO_I32,      /* INTEGER_32, size 32, one, inline */
	MVM__MO_I64,      /* INTEGER_64, size 64, one, inline */
	MVM__MO_PORT,     /* a port: the disposition or received type, size 32, one, inline */
	MVM__MO_OOL       /* BYTE, size 8, number = bytes, out of line; short or long form */
};

/* How the trace decoder prints an item's value. */
enum mvm__mo_fmt {
	MVM__MO_FMT_DEC,
	MVM__MO_FMT_HEX,
	MVM__MO_FMT_BOOL,
	MVM__MO_FMT_PROT,
	MVM__MO_FMT_KR,
	MVM__MO_FMT_RETURN,
	MVM__MO_FMT_COPY,
	MVM__MO_FMT_PORT,
	MVM__MO_FMT_OOL
};

/* Item flags. */
#define MVM__MO_POLY    0x01u   /* the receiver accepts PORT_SEND or PORT_SEND_ONCE */
#define MVM__MO_DEALLOC 0x02u   /* the sender chooses the out-of-line deallocate bit */

struct mvm__mo_item {
	const char *name;
	uint8_t wire;               /* enum mvm__mo_wire */
	uint8_t disp;               /* port: the sender's disposition */
	uint8_t fmt;                /* enum mvm__mo_fmt */
	uint8_t flags;
};

/* One message: a request, or the body of a routine's reply (RetCode is its first item). */
struct mvm__mo_msg {
	const char *name;           /* routine name, for traces */
	mach_msg_id_t id;
	bool complex;               /* carries ports or out-of-line data */
	uint8_t nitems;
	const struct mvm__mo_item *items;
	mach_msg_size_t min_size;   /* size with every out-of-line item in short form */
	uint8_t nool;               /* out-of-line items (each may add 8 bytes in long form) */
};

struct mvm__mo_routine;

/* Which server routines a demultiplexer calls. */
enum mvm__mo_mode {
	MVM__MO_PLAIN,              /* the program's Mach-named routines */
	MVM__MO_SEQNOS,             /* the program's seqnos_ routines */
	MVM__MO_OPS                 /* an ops table with a context pointer */
};

struct mvm__mo_arg;

/*
 * Generated glue: call the routine for `mode` with the validated arguments `in` (and the
 * request header for the destination and seqno). A routine with a reply writes its
 * out arguments to `out` when it succeeds. Returns the routine's result, or MIG_BAD_ID
 * when an ops table lacks the routine.
 */
typedef kern_return_t mvm__mo_invoke_fn(enum mvm__mo_mode mode, const void *ops, void *ctx,
    const mach_msg_header_t *hdr, const struct mvm__mo_arg *in, struct mvm__mo_arg *out);

struct mvm__mo_routine {
	const struct mvm__mo_msg *request;
	const struct mvm__mo_msg *reply;   /* NULL for a simpleroutine */
	const char *dest_name;             /* the request port's argument name */
	uint8_t dest_disp;                 /* its disposition; 0 = chosen by the sender */
	mvm__mo_invoke_fn *invoke;         /* NULL where no demultiplexer serves it */
};

struct mvm__mo_subsystem {
	const char *name;
	mach_msg_id_t base;
	uint32_t nroutines;                /* ids base .. base + nroutines - 1 */
	const struct mvm__mo_routine *const *routines;  /* NULL for an unused id */
};

/* Every subsystem, for the trace decoder (generated). */
extern const struct mvm__mo_subsystem *const mvm__mo_subsystems[];
extern const unsigned mvm__mo_nsubsystems;

/* The body of a short MIG reply (RetCode alone). */
extern const struct mvm__mo_msg mvm__mo_mig_reply;

/* ---- 2. arguments ----------------------------------------------------------------- */

/* One item's value, whatever its wire form. */
struct mvm__mo_arg {
	uint64_t val;               /* scalar (int32 zero-extended), port name, or address */
	uint32_t aux;               /* out-of-line: byte count; port: its (received) type */
	bool dealloc;               /* out-of-line: the deallocate bit */
};

#define MVM__MO_MAX_ITEMS 12

/* ---- 3. the engine ---------------------------------------------------------------- */

/*
 * Validate a received message (or reply) of `avail` readable bytes against `m` and decode
 * its items into args[]. Checks the header size, the complex bit, every descriptor (name,
 * size, number, inline, long form, unused and deallocate bits, port types) and that the
 * items end exactly at msgh_size. The id is the caller's business. Returns KERN_SUCCESS
 * or `err`; on failure a reason is written to why (if not NULL).
 */
kern_return_t mvm__mo_unpack(const struct mvm__mo_msg *m, const mach_msg_header_t *msg,
    size_t avail, struct mvm__mo_arg *args, kern_return_t err, char *why, size_t whylen);

/*
 * The same checks for a message about to be sent (the trace decoder's second view): port
 * items must carry the sender's disposition instead of the received type.
 */
kern_return_t mvm__mo_unpack_sent(const struct mvm__mo_msg *m, const mach_msg_header_t *msg,
    size_t avail, struct mvm__mo_arg *args, char *why, size_t whylen);

/*
 * Write the items of `m` with values args[] after a header at `msg`; returns the message
 * size, or 0 when `cap` bytes do not suffice. Out-of-line items use the short form up to
 * 4095 bytes and the long form beyond.
 */
mach_msg_size_t mvm__mo_pack(const struct mvm__mo_msg *m, const struct mvm__mo_arg *args,
    mach_msg_header_t *msg, size_t cap);

/* Send a simpleroutine's request to dest with disposition disp; mach_msg's result. */
kern_return_t mvm__mo_send(const struct mvm__mo_routine *r, mach_port_t dest,
    mach_msg_type_name_t disp, const struct mvm__mo_arg *args);

/*
 * Call a routine: send with the thread's MIG reply port, wait for the reply, validate it
 * and store its out arguments in out[] (RetCode excluded). Returns the RetCode, a
 * mach_msg error, MIG_REPLY_MISMATCH or MIG_TYPE_ERROR.
 */
kern_return_t mvm__mo_rpc(const struct mvm__mo_routine *r, mach_port_t dest,
    const struct mvm__mo_arg *args, struct mvm__mo_arg *out);

/*
 * The common demultiplexer: MIG's reply conventions, id lookup over the given subsystems,
 * validation, then the routine's glue. Returns FALSE (RetCode MIG_BAD_ID) for an id no
 * subsystem has; otherwise TRUE with RetCode set.
 */
boolean_t mvm__mo_demux(const struct mvm__mo_subsystem *const *ss, unsigned nss,
    enum mvm__mo_mode mode, const void *ops, void *ctx, mach_msg_header_t *in,
    mach_msg_header_t *out);

/* The routine for an id among all subsystems, and whether the id is its reply's. */
const struct mvm__mo_routine *mvm__mo_lookup(mach_msg_id_t id, bool *is_reply);

/* ---- 4. generated glue helpers ---------------------------------------------------- */

/* Arguments to and from the C types of the prototypes. */
#define MVM__MO_I32(x)  ((uint64_t)(uint32_t)(x))
#define MVM__MO_I64(x)  ((uint64_t)(x))
#define MVM__MO_AS_I32(a) ((int32_t)(uint32_t)(a).val)

#endif /* MVM_MO_MO_H */
