/*
 * src/ipc/node.h: ports across processes (the node layer), private interface.
 *
 * Every process that takes part is a node, named by its pid and a random 64-bit
 * incarnation chosen when the node starts, so that a restarted process is never taken
 * for the old one. Nodes talk over Unix SOCK_SEQPACKET connections, one per direction:
 * a node writes only on the connection it opened, and reads what the other node writes
 * on the connection that node opened.
 *
 * A port whose receive right lives in another node is a proxy (port->remote): a message
 * queued on it is turned into a frame and written to the owner. A local port a right of
 * which has left the process is exported (port->export): a random 128-bit token names it
 * on the wire, and the export counts, per node, the send rights (credits) and send-once
 * rights that node holds, so that no-senders, send-once notifications and dead names work
 * across processes. doc/DESIGN.md ("Ports across processes") gives the accounting rules
 * and why they are safe with rights passed between third parties.
 *
 * Locking: every structure here is protected by the IPC lock (it is part of the IPC
 * layer's state). Socket writes happen after the lock is dropped (mvm__node_flush, called
 * from mvm__ctx_finish), one writer per peer at a time, never blocking (a full socket is
 * left to the node thread).
 */
#ifndef MVM_IPC_NODE_H
#define MVM_IPC_NODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ipc/ipc.h"

/* ---- the wire ------------------------------------------------------------------ */

#define MVM_WIRE_MAGIC 0x314d564du   /* "MVM1" */
#define MVM_WIRE_VERSION 1u
#define MVM_WIRE_INLINE_MAX (48u << 10)  /* larger frames travel in a sealed memfd */
#define MVM_WIRE_FRAME_MAX (1u << 30)
#define MVM_WIRE_FDS_MAX 250u
/* The send-once rights a moved receive right may say reach it through other nodes: each
 * becomes a notification if the sender dies, so a frame must not ask for unbounded
 * work. A larger claim makes the right arrive dead. */
#define MVM_WIRE_SO_MAX (1u << 16)
/*
 * Out-of-line regions from this size travel as sealed memfds (no copy at the receiver);
 * smaller ones are copied into the frame: below about 16 pages, memfd_create, ftruncate,
 * sealing, mmap and munmap cost more than copying the bytes (bench_node, page faults
 * served across processes: 42 us per fault with one memfd per page).
 */
#define MVM_WIRE_MEMFD_MIN (64u << 10)

enum mvm_wire_type {
	MVM_WF_HELLO = 1,         /* first frame on every connection, both ways */
	MVM_WF_MSG,               /* a Mach message */
	MVM_WF_REGISTER,          /* sender made a proxy for token: tell it if the port dies */
	MVM_WF_UNREGISTER,        /* sender's proxy for token is gone */
	MVM_WF_RELEASE,           /* sender gives back n send-right credits */
	MVM_WF_XFER,              /* sender passed a send right of token to node (pid, inc) */
	MVM_WF_SOXFER,            /* sender passed a send-once right of token to (pid, inc) */
	MVM_WF_DEATH,             /* token names no live port (any more) */
};

#define MVM_WF_BIG 0x1            /* the frame itself is in fd 0, a sealed memfd */

struct mvm_whdr {
	uint32_t magic;
	uint16_t type;
	uint16_t flags;
	uint32_t len;                     /* bytes of the whole frame, this header included */
	uint32_t nfds;                    /* descriptors that came with it */
};

struct mvm_whello {
	struct mvm_whdr h;
	uint32_t version;
	uint32_t pid;
	uint64_t inc;
	uint64_t want_inc;                /* the incarnation the connector expects, 0 in replies */
};

struct mvm_wctl {
	struct mvm_whdr h;
	uint8_t token[16];
	uint64_t n;                       /* RELEASE: credits */
	uint32_t pid;                     /* XFER, SOXFER: the node that now holds the right */
	uint32_t pad;
	uint64_t inc;
};

enum mvm_wref_kind {
	MVM_WR_NULL = 0,
	MVM_WR_DEAD,
	MVM_WR_YOURS,                     /* a port the receiving node owns: token */
	MVM_WR_NODE,                      /* a port node (pid, inc) owns: token */
	MVM_WR_RECEIVE,                   /* a receive right moving to the receiver, new token;
	                                     aux = send-once rights outstanding; followed by
	                                     MVM_WR_EXTRA extra refs: its no-senders and
	                                     port-destroyed requests, and a NULL ref whose
	                                     token is the one the port had (or zeros) */
};

#define MVM_WR_EXTRA 3

struct mvm_wref {
	uint8_t kind;
	uint8_t type;                     /* MACH_MSG_TYPE_PORT_{RECEIVE,SEND,SEND_ONCE} */
	uint16_t pad;
	uint32_t pid;
	uint64_t inc;
	uint8_t token[16];
	uint64_t aux;
};

#define MVM_WOOL_INLINE 0xffffffffu
struct mvm_wool {
	uint64_t len;                     /* bytes of data (ports: 0, the rights are refs) */
	uint32_t data_off;                /* page offset of the data */
	uint32_t fd;                      /* index of its memfd, or MVM_WOOL_INLINE */
	uint64_t inline_off;              /* offset of inline data in the frame */
	uint32_t is_ports;
	uint32_t nports;
};

/* A message frame: this, then wref ports[nports], wref extra[nextra], wool ool[nool],
 * the message (size bytes, padded to 8), then inline out-of-line data. */
struct mvm_wmsg {
	struct mvm_whdr h;
	uint32_t size;
	uint32_t nports;
	uint32_t nool;
	uint32_t nextra;
	struct mvm_wref dest, reply;
};

/*
 * Decode and check a message frame (buf, len) that came with nfds descriptors: layout,
 * counts, every reference and descriptor in range, the message body consistent with
 * them. Returns MACH_MSG_SUCCESS or MACH_SEND_INVALID_* / MACH_SEND_MSG_TOO_SMALL. Pure:
 * no lock, no system call (the fuzz target drives it).
 */
mach_msg_return_t mvm__wire_check_msg(const void *buf, size_t len, unsigned nfds);

/* ---- the node ------------------------------------------------------------------ */

/* Under the IPC lock. */
void mvm__node_ship(struct mvm_kmsg *kmsg, struct mvm_ctx *ctx);     /* dest is a proxy */
void mvm__node_proxy_unsent(struct mvm_port *port, struct mvm_ctx *ctx); /* srights hit 0 */
void mvm__node_proxy_free(struct mvm_port *port);                     /* refs hit 0 */
bool mvm__node_proxy_idle(struct mvm_port *port);   /* refs hit 0: keep it idle? */
uint64_t mvm__node_idle_proxies(void);              /* idle proxies kept (a read) */
bool mvm__node_flush_pending(void);                 /* frames wait for a flush */
void mvm__node_export_dies(struct mvm_port *port, struct mvm_ctx *ctx);

/* Without any lock: write what was queued for other nodes. */
void mvm__node_flush(void);
/* Without any lock: wait, at most timeout_ms, until every frame queued for a live peer
 * is written (a process about to exit); true if none is left. */
bool mvm__node_drain(int timeout_ms);

/* Node identity once started (0 before). */
uint32_t mvm__node_pid(void);

/* The node's runtime directory (started node), for the name service. */
const char *mvm__node_dir(void);

/*
 * The port that serves name look-ups in this node (a receive right the node keeps), and
 * a send right to the look-up port of node (pid, inc) named by `token` (netname.c).
 */
kern_return_t mvm__node_proxy_for(uint32_t pid, uint64_t inc, const uint8_t token[16],
    mach_port_t *name);
kern_return_t mvm__node_export_name(mach_port_t name, uint8_t token[16]);

/*
 * For fuzzing and tests: handle one frame (not BIG, no descriptors) as if node (pid, inc)
 * had sent it (false: refused as a protocol error); make every known node die and forget
 * those nothing refers to.
 */
bool mvm__node_inject_frame(const void *buf, size_t len, uint32_t pid, uint64_t inc);
void mvm__node_forget_peers(void);
uint64_t mvm__node_inc(void);

#endif /* MVM_IPC_NODE_H */
