/*
 * src/ipc/ipc.h: the IPC layer's private structures.
 *
 * Contents: 1. locking  2. ports and port sets  3. the name space  4. messages (kmsg)
 *           5. waiting  6. deferred work (ctx)  7. internal entry points
 *
 * 1. Locking. One lock, ipc.lock, protects the name space, every port, port set and
 * message queue of the process, and every counter below that is not marked (a). It is
 * never held across a blocking wait, an access to caller-supplied memory (which may be a
 * memory object mapping that faults into this very layer), an upcall, or a wake-up
 * syscall that can be deferred. Memory is copied in before the lock is taken and copied
 * out after it is dropped; wake-ups and frees collected under the lock are done by
 * mvm__ctx_finish() after it is dropped.
 *
 * Legend for fields: (i) ipc.lock; (c) constant after creation; (a) atomic; (w) owned by
 * the waiting thread, written by others only under (i).
 *
 * A port's identity (struct mvm_port) is kept apart from where its messages queue
 * (struct mvm_mqueue) and from the names that denote it (struct mvm_entry), so that a
 * port whose receive right lives in another process can later be a proxy whose "queue"
 * is a transport, without changing the name space.
 */
#ifndef MVM_IPC_IPC_H
#define MVM_IPC_IPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <mach/mach.h>
#include "lib/lock.h"

struct mvm_kmsg;
struct mvm_port;
struct mvm_pset;
struct mvm_remote;
struct mvm_export;

/* ---- 5. waiting ------------------------------------------------------------------ */

/* One per thread (thread-local); a thread waits on at most one list at a time. */
struct mvm_waiter {
	uint32_t state;                   /* (a) 0 waiting, 1 woken: the futex word */
	struct mvm_waiter *next, *prev;   /* (i) links in the list it waits on */
	struct mvm_wlist *list;           /* (i) the list it is on, or NULL */
	mach_msg_return_t result;         /* (i) non-zero: why the wait ended for good */
};

struct mvm_wlist {
	struct mvm_waiter *head, *tail;   /* (i) */
};

/* ---- 2. ports ------------------------------------------------------------------- */

/*
 * A kernel-served queue (mvm__ipc_set_direct): like a Mach kernel object, its messages may
 * be served by the thread that sends them, under the rules in mach_msg.c. The holder is
 * the one thread serving a message of the queue (a receiver between its receive and its
 * next one, or a sender serving its own message); nobody else takes a message meanwhile.
 */
struct mvm_direct {
	mach_msg_demux_t demux;           /* (c) as for mach_msg_server */
	mach_msg_size_t max_size;         /* (c) largest request and reply, <= MVM_DIRECT_MAX */
	bool (*relay_ok)(mach_msg_id_t id); /* (c) may the node thread serve it? NULL: never */
};

/* A message a thread took to serve itself (mvm__mq_enqueue_serve), or set == NULL. */
struct mvm_serve {
	struct mvm_pset *set;
	struct mvm_kmsg *k;               /* copied out, or NULL if it died on the way */
	mach_msg_return_t mr;             /* its copy-out result */
};
#define MVM_DIRECT_MAX 1024

struct mvm_mqueue {
	struct mvm_kmsg *head, *tail;     /* (i) messages, in arrival order */
	struct mvm_wlist receivers;       /* (i) threads blocked in receive */
	const struct mvm_direct *direct;  /* (i) set once: a kernel-served queue, or NULL */
	struct mvm_waiter *holder;        /* (i) direct: the thread serving one of its messages */
	bool holder_sends;                /* (i) direct: the holder is a sender serving its own */
};

#define MVM_NO_ENTRY 0u                   /* entry index 0 is never used */

struct mvm_port {
	uint32_t refs;                    /* (i) pointers to this struct */
	bool active;                      /* (i) false once the receive right died */
	uint32_t recv_entry;              /* (i) entry holding the receive right, or MVM_NO_ENTRY */
	uint32_t send_entry;              /* (i) entry holding send or receive, or MVM_NO_ENTRY */
	uint32_t so_head;                 /* (i) send-once entries (list through mvm_entry) */
	struct mvm_port *transit_dest;    /* (i) receive right in a message queued on this port */
	struct mvm_pset *pset;            /* (i) containing port set */
	mach_port_mscount_t mscount;      /* (i) */
	mach_port_rights_t srights;       /* (i) send rights in the space and in messages */
	mach_port_rights_t sorights;      /* (i) send-once rights, likewise */
	mach_port_seqno_t seqno;          /* (i) next sequence number */
	mach_port_msgcount_t qlimit;      /* (i) */
	mach_port_msgcount_t msgcount;    /* (i) messages queued for this port */
	struct mvm_mqueue mq;             /* (i) own queue (unused while in a set) */
	struct mvm_wlist senders;         /* (i) senders blocked on a full queue */
	struct mvm_port *nsrequest;       /* (i) send-once right for no-senders */
	mach_port_mscount_t nsrequest_sync; /* (i) */
	struct mvm_port *pdrequest;       /* (i) send-once right for port-destroyed */
	struct mvm_port *deathrow_next;   /* (i) link in ipc.deathrow */
	struct mvm_remote *remote;        /* (i) proxy: the receive right lives in another process */
	struct mvm_export *export;        /* (i) rights to it are held in other processes */
};

struct mvm_pset {
	uint32_t entry;                   /* (i) its name's entry */
	struct mvm_mqueue mq;             /* (i) messages of every member */
	uint32_t nmembers;                /* (i) */
	bool destroyed;                   /* (i) name gone; freed when a sending holder is done */
};

/* Sentinel for a dead right travelling in a message. NULL is MACH_PORT_NULL. */
#define MVM_PORT_DEAD ((struct mvm_port *)(uintptr_t)-1)
#define MVM_PORT_VALID(p) ((p) != NULL && (p) != MVM_PORT_DEAD)

/* ---- 3. the name space ---------------------------------------------------------- */

struct mvm_entry {
	mach_port_type_t type;            /* (i) MACH_PORT_TYPE_* bits, DNREQUEST included */
	mach_port_urefs_t urefs;          /* (i) send or dead-name user references */
	uint8_t gen;                      /* (i) generation part of the name */
	union {
		struct mvm_port *port;        /* (i) send, receive, send-once */
		struct mvm_pset *pset;        /* (i) port set */
	} obj;
	struct mvm_port *dnrequest;       /* (i) send-once right for dead-name, or NULL */
	uint32_t next, prev;              /* (i) free list, or send-once list of the port */
	/* Scratch for the two-pass copy-in of one message (valid when stamp matches). */
	uint32_t stamp;
	uint32_t s_send_used;             /* user references the message will take */
	bool s_recv_moved, s_so_moved;
};

struct mvm_ipc {
	struct mvm_lock lock;
	struct mvm_entry *table;          /* (i) entries; index 0 unused */
	uint32_t table_size;              /* (i) */
	uint32_t free_head, free_tail;    /* (i) FIFO of free entries */
	uint32_t names;                   /* (i) names in use */
	uint32_t stamp;                   /* (i) copy-in pass counter */
	struct mvm_port *deathrow;        /* (i) ports whose receive right is being destroyed */
	bool draining;                    /* (i) a call is draining deathrow */
	/* Counters. */
	uint64_t ports, psets, kmsgs, kmsgs_queued;       /* (i) */
	uint64_t msgs_sent, msgs_received, notifications; /* (i) */
};

extern struct mvm_ipc mvm_ipc;

/* ---- 4. messages ---------------------------------------------------------------- */

/* A right carried in a message. type is the received form (MACH_MSG_TYPE_PORT_*). */
struct mvm_kport {
	struct mvm_port *port;            /* NULL, MVM_PORT_DEAD or a referenced port */
	mach_msg_type_name_t type;
};

/* An out-of-line region owned by the message until it is received. */
struct mvm_kool {
	void *addr;                       /* mapping (page-aligned), or NULL for 0 bytes */
	size_t map_len;                   /* its length */
	size_t data_off;                  /* offset of the data in it (the sender's page offset) */
	size_t slot;                      /* offset of the pointer in the message body */
	uint32_t first_port, nports;      /* an array of ports: its rights in kmsg->ports */
	bool is_ports;
};

struct mvm_kmsg {
	struct mvm_kmsg *next;            /* (i) queue link */
	struct mvm_port *dest;            /* referenced; holds a right of dest_type */
	mach_msg_type_name_t dest_type;   /* PORT_SEND or PORT_SEND_ONCE */
	struct mvm_kport reply;
	uint32_t nports, nool;
	struct mvm_kport *ports;          /* body rights in message order */
	struct mvm_kool *ool;
	mach_msg_size_t size;
	bool rights_released;             /* rights already given back (destroyed) */
	mach_msg_header_t *msg;           /* the message as sent, inline after this struct */
};

/* A decoded item of a typed message body. */
struct mvm_msg_item {
	mach_msg_type_name_t name;
	uint32_t size_bits;
	uint32_t number;
	bool is_inline, longform, dealloc;
	size_t desc_off;                  /* offset of the descriptor */
	size_t data_off;                  /* offset of the data (inline) or of the pointer */
	uint64_t data_len;                /* bytes of data */
};

/*
 * Decode the item at *pos of a message of `size` bytes and advance *pos. Returns
 * MACH_MSG_SUCCESS, MACH_SEND_MSG_TOO_SMALL (truncated) or MACH_SEND_INVALID_TYPE.
 * Checks only the layout, never the rights; used by copy-in, copy-out, destroy, the
 * interface layer's validation and the fuzz targets.
 */
mach_msg_return_t mvm__msg_next_item(const void *msg, size_t size, size_t *pos,
    struct mvm_msg_item *it);

static inline bool
mvm__msg_type_is_port(mach_msg_type_name_t n)
{
	return n >= MACH_MSG_TYPE_MOVE_RECEIVE && n <= MACH_MSG_TYPE_MAKE_SEND_ONCE;
}

/* The type a receiver sees for a disposition (MOVE_RECEIVE -> PORT_RECEIVE, ...). */
mach_msg_type_name_t mvm__msg_received_type(mach_msg_type_name_t disposition);

/* ---- 6. deferred work ------------------------------------------------------------- */

#define MVM_CTX_WAKES 8
struct mvm_ctx {
	uint32_t *wake[MVM_CTX_WAKES];    /* futex words to wake after unlock */
	int nwake;
	struct mvm_kmsg *free_kmsgs;      /* messages to free after unlock */
	bool node_flush;                  /* frames were queued for other processes */
};

#define MVM_CTX_INIT { .nwake = 0, .free_kmsgs = NULL, .node_flush = false }

/* Wake the waiters and free the messages; called with no lock held. */
void mvm__ctx_finish(struct mvm_ctx *ctx);

/* ---- 7. internal entry points --------------------------------------------------- */

void mvm__ipc_init(void);                 /* idempotent; every public call runs it */
static inline void mvm__ipc_lock(void) { mvm_lock_acquire(&mvm_ipc.lock); }
static inline void mvm__ipc_unlock(void) { mvm_lock_release(&mvm_ipc.lock); }

/* Name space (space.c). All under (i). */
struct mvm_entry *mvm__entry(uint32_t idx);
uint32_t mvm__entry_lookup(mach_port_t name);            /* index, or MVM_NO_ENTRY */
mach_port_t mvm__entry_name(uint32_t idx);
kern_return_t mvm__entry_reserve(uint32_t n);            /* room for n more names */
uint32_t mvm__entry_alloc(void);                         /* MVM_NO_ENTRY on ENOMEM */
kern_return_t mvm__entry_alloc_name(mach_port_t name, uint32_t *idx);
void mvm__entry_free(uint32_t idx, struct mvm_ctx *ctx); /* fires port-deleted if requested */
void mvm__so_link(struct mvm_port *port, uint32_t idx);
void mvm__so_unlink(struct mvm_port *port, uint32_t idx);

/* Waiting (mqueue.c). */
void mvm__wlist_add(struct mvm_wlist *l, struct mvm_waiter *w);
void mvm__wlist_remove(struct mvm_waiter *w);
void mvm__wake_one(struct mvm_wlist *l, mach_msg_return_t result, struct mvm_ctx *ctx);
void mvm__wake_all(struct mvm_wlist *l, mach_msg_return_t result, struct mvm_ctx *ctx);
struct mvm_waiter *mvm__self_waiter(void);
/* Defer this thread's futex wake-ups until the matching undefer (nested: the outermost
 * one wakes), or until flush, which a thread must call before it blocks. */
void mvm__ipc_defer_wakes(void);
void mvm__ipc_undefer_wakes(void);
void mvm__ipc_flush_wakes(void);
/* Block until woken or the deadline; 0, -ETIMEDOUT or -EINTR. Called unlocked. */
int mvm__wait(struct mvm_waiter *w, const struct timespec *deadline);

/* Queues (mqueue.c). */
void mvm__mq_init(struct mvm_mqueue *mq);
struct mvm_mqueue *mvm__port_mq(struct mvm_port *port);
/* Queue a message on its destination; ignores the queue limit. */
void mvm__mq_enqueue(struct mvm_kmsg *kmsg, struct mvm_ctx *ctx);
/* Take the first message: assigns the seqno and lets a blocked sender go. */
struct mvm_kmsg *mvm__mq_dequeue(struct mvm_mqueue *mq, struct mvm_ctx *ctx);
void mvm__mq_unlink(struct mvm_mqueue *mq, struct mvm_kmsg *kmsg);
/* Queue a message; if sv is not NULL and the destination is a kernel-served set that is
 * idle, take the message back into *sv for the caller to serve with mvm__serve once it
 * has dropped the lock. relayed: the node thread delivers it. */
void mvm__mq_enqueue_serve(struct mvm_kmsg *kmsg, struct mvm_serve *sv, bool relayed,
    struct mvm_ctx *ctx);
void mvm__serve(struct mvm_serve *sv);                 /* no lock held; nothing if set NULL */
/* A direct queue's holder is done: let the next message be taken. */
void mvm__mq_release(struct mvm_mqueue *mq, struct mvm_ctx *ctx);
/* Make the port set `name` kernel-served (internal: the in-process kernel's control set).
 * KERN_INVALID_NAME unless name is a port set; KERN_INVALID_ARGUMENT if d is too large. */
kern_return_t mvm__ipc_set_direct(mach_port_t name, const struct mvm_direct *d);
/* A receiver stops serving the set `name`: if it holds it, it lets it go (a receiver
 * otherwise holds it until its next receive). */
void mvm__ipc_direct_done(mach_port_t name);
/* Serve one received request as mach_msg_server does (server.c); no lock held. */
void mvm__server_handle(mach_msg_demux_t demux, mach_msg_header_t *in, mach_msg_header_t *out,
    mach_msg_size_t max_size);

/* Ports and sets (port.c). */
struct mvm_port *mvm__port_alloc(void);                   /* active, refs 1, no entry */
void mvm__port_ref(struct mvm_port *port);
void mvm__port_release(struct mvm_port *port);             /* drop a reference */
void mvm__port_destroy_receive(struct mvm_port *port, struct mvm_ctx *ctx);
/* Make the port dead now: names become dead names, queued messages die (no release). */
void mvm__port_die(struct mvm_port *port, struct mvm_ctx *ctx);
void mvm__pset_add(struct mvm_pset *pset, struct mvm_port *port, struct mvm_ctx *ctx);
void mvm__pset_remove(struct mvm_port *port, struct mvm_ctx *ctx);
void mvm__pset_destroy(struct mvm_pset *pset, struct mvm_ctx *ctx);
/* Take the receive right out of the space (into a message), resetting seqno and mscount. */
void mvm__port_clear_receiver(struct mvm_port *port, struct mvm_ctx *ctx);

/* Rights (right.c). */
void mvm__kport_release(struct mvm_kport kp, struct mvm_ctx *ctx);     /* unused right */
void mvm__send_release(struct mvm_port *port, struct mvm_ctx *ctx);    /* one send right */
void mvm__sonce_release_used(struct mvm_port *port);                   /* consumed send-once */
/* Drop `n` rights of the given name: the rules of mach_port_deallocate and friends. */
kern_return_t mvm__entry_drop_send(uint32_t idx, mach_port_urefs_t n, struct mvm_ctx *ctx);
kern_return_t mvm__entry_destroy(uint32_t idx, struct mvm_ctx *ctx);
/* Copy-in of one right, in two passes: check (with scratch), then commit. */
mach_msg_return_t mvm__right_check(mach_port_t name, mach_msg_type_name_t disp);
struct mvm_kport mvm__right_commit(mach_port_t name, mach_msg_type_name_t disp,
    struct mvm_ctx *ctx);
/* Copy-out of one right into the space; the name, MACH_PORT_NULL or MACH_PORT_DEAD. */
mach_port_t mvm__right_copyout(struct mvm_kport kp, struct mvm_ctx *ctx);
void mvm__entry_dead(uint32_t idx, struct mvm_ctx *ctx);  /* convert to dead name */

/* Notifications (notify.c). Kernel sends: they ignore queue limits and never block. */
void mvm__notify_send_once(struct mvm_port *so, struct mvm_ctx *ctx);
void mvm__notify_port_deleted(struct mvm_port *so, mach_port_t name, struct mvm_ctx *ctx);
void mvm__notify_dead_name(struct mvm_port *so, mach_port_t name, struct mvm_ctx *ctx);
void mvm__notify_no_senders(struct mvm_port *so, mach_port_mscount_t mscount, struct mvm_ctx *ctx);
void mvm__notify_port_destroyed(struct mvm_port *so, struct mvm_port *rcv, struct mvm_ctx *ctx);

/* Messages (kmsg.c). */
struct mvm_kmsg *mvm__kmsg_alloc(mach_msg_size_t size);
void mvm__kmsg_free(struct mvm_kmsg *kmsg);                /* memory only; no lock */
/* Release every right of a message; memory freed later through ctx. Under (i). */
void mvm__kmsg_destroy(struct mvm_kmsg *kmsg, struct mvm_ctx *ctx);
/* What the unlocked first half of a send prepares for the locked second half. */
struct mvm_dealloc {
	uintptr_t addr;
	size_t len;
};
struct mvm_copyin {
	struct mvm_kmsg *kmsg;
	mach_port_t *names;               /* body port names, in message order */
	mach_port_t dest_name, reply_name;
	mach_msg_type_name_t dest_disp, reply_disp;
	struct mvm_dealloc *dealloc;      /* sender regions to free once sent */
	uint32_t ndealloc;
};
/* Unlocked: copy the message and its out-of-line data; check the layout. */
mach_msg_return_t mvm__kmsg_copyin_data(const mach_msg_header_t *msg, mach_msg_size_t size,
    struct mvm_copyin *ci);
/* Locked: check every right the message names (nothing changes on failure). */
mach_msg_return_t mvm__kmsg_copyin_check(struct mvm_copyin *ci);
/* Locked: take every right (cannot fail after a successful check). */
void mvm__kmsg_copyin_commit(struct mvm_copyin *ci, struct mvm_ctx *ctx);
/* Unlocked: free the copy-in's scratch; after a send, deallocate the sender's regions. */
void mvm__kmsg_copyin_done(struct mvm_copyin *ci, bool sent);
/* Locked copy-out of a dequeued message's rights into the space. */
mach_msg_return_t mvm__kmsg_copyout(struct mvm_kmsg *kmsg, struct mvm_ctx *ctx);

/* Anonymous memory accounting (vm/vm_anon.c). */
void *mvm__vm_alloc_pages(size_t len, int *err);           /* tracked, page-aligned, zeroed */
void *mvm__vm_alloc_pages_dirty(size_t len, int *err);     /* the same, contents undefined */
void mvm__vm_free_pages(void *addr, size_t len);           /* untrack and unmap */
int mvm__vm_track_pages(void *addr, size_t len);           /* track a mapping made elsewhere */
/*
 * Free out-of-line data machvm itself received and consumed (the kernel, the pager
 * framework): like vm_deallocate, but a small region may be kept for the next message
 * instead of being unmapped. Never for memory a program can see.
 */
void mvm__vm_recycle(vm_address_t addr, vm_size_t len);
/* True when [start, start + len) lies in regions machvm mapped (so it is readable). */
bool mvm__vm_tracked(uintptr_t start, size_t len);
uint64_t mvm__vm_tracked_bytes(void);

/*
 * Names, ports and port sets that a layer keeps for the life of the process (the kernel's
 * control set, the pager framework's port set, ...): left out of the quiescence check.
 */
void mvm__ipc_reserve(uint64_t names, uint64_t ports, uint64_t psets);

/* MIG reply port of the calling thread, if any (server.c). */
mach_port_t mvm__mig_reply_port_peek(void);

#define MVM_TASK_SELF_NAME ((mach_port_t)1)   /* never an entry: index 0 is unused */
#define MVM_MSG_SIZE_MAX (64u << 20)          /* largest inline message */

#endif /* MVM_IPC_IPC_H */
