/*
 * src/ipc/node.c: ports across processes.
 *
 * Contents: 1. state  2. peers  3. exports  4. proxies  5. frames  6. shipping a message
 *           7. writing  8. receiving  9. the node thread  10. starting
 *
 * See node.h for the model. The accounting, in short (doc/DESIGN.md has the argument):
 * - the owner of a port keeps, per node, v = send-right credits and so = send-once
 *   rights that node holds. A node holding a proxy knows its own credits c.
 * - the owner credits a node (v++) when it sends it a right; a node passing a right of a
 *   third node's port to another node first tells the owner (XFER: v[to]++), and never
 *   debits itself; when its proxy's last send right goes it gives back all its credits
 *   at once (RELEASE c). Because a node's RELEASE travels after its XFERs on the same
 *   ordered connection, the owner never sees every v at zero while some node still holds
 *   a right, even when v[k] is briefly negative (k released before the XFER crediting it
 *   arrived). While any v is non-zero the export holds one send right of the port, so the
 *   ordinary no-senders machinery applies.
 * - send-once rights: so[to]++ when the owner sends one, SOXFER moves one from the sender
 *   to another node, a message sent with one (or its notification) does so[sender]--. A
 *   node that dies leaves so[node] rights destroyed: the owner makes the send-once
 *   notifications.
 * - a receive right that moves turns the old port into a proxy (a forwarder) of the new
 *   one: senders that hold the old token keep working through it; its credits at the new
 *   owner cover every right it counts.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <machvm/node.h>
#include "ipc/ipc.h"
#include "ipc/node.h"
#include "sys/sys.h"

/* ---- 1. state -------------------------------------------------------------------- */

enum { PEER_NEW, PEER_UP, PEER_DEAD };
enum { CONN_LISTEN, CONN_EVENT, CONN_OUT, CONN_IN };

struct mvm_peer;

struct conn {
	int fd;
	int kind;
	struct mvm_peer *peer;            /* (i) OUT and IN after HELLO */
	uint32_t refs;                    /* (i) epoll + writers */
	bool hello;                       /* (n) the peer's HELLO was read */
	bool closed;                      /* (n) closed; freed after the epoll batch */
	struct conn *next;                /* (i) node.conns; (n) node.closed_conns once closed */
};

struct mvm_frame {
	struct mvm_frame *next;
	void *buf;                        /* header (+ refs and descriptors), malloc'd */
	size_t len;
	struct mvm_kmsg *kmsg;            /* body and out-of-line data of a MSG, or NULL */
};

struct mvm_peer {
	struct mvm_peer *next;            /* (i) node.peers */
	uint32_t pid;                     /* (c) */
	uint64_t inc;                     /* (c) */
	int state;                        /* (i) */
	struct conn *out;                 /* (i) our connection to it */
	struct mvm_frame *qhead, *qtail;  /* (i) frames to write, in order */
	bool writing;                     /* (i) a thread is writing its frames */
	bool blocked;                     /* (i) the socket was full: the node thread waits */
	bool out_lost;                    /* (i) our connection to it failed; it is declared
	                                     dead when its own connection to us ends */
};

struct mvm_holder {
	struct mvm_holder *next;
	struct mvm_peer *peer;
	int64_t v;                        /* send-right credits */
	int64_t so;                       /* send-once rights */
	bool registered;                  /* it has a proxy (REGISTER seen, no UNREGISTER) */
};

struct mvm_export {
	struct mvm_export *hnext;         /* (i) token hash */
	uint8_t token[16];                /* (c) */
	struct mvm_port *port;            /* (i) referenced */
	struct mvm_holder *holders;       /* (i) */
	bool hold;                        /* (i) one send right held for the remote senders */
	bool permanent;                   /* (i) kept without holders (name service) */
};

struct mvm_remote {
	struct mvm_remote *hnext;         /* (i) token hash */
	struct mvm_peer *owner;           /* (i) */
	uint8_t token[16];                /* (c) */
	struct mvm_port *port;            /* (i) not referenced: cleared when the port goes */
	int64_t credits;                  /* (i) send-right credits the owner counts for us */
	bool idle;                        /* (i) no right left: kept in node.idle for reuse */
	bool no_cache;                    /* (i) being evicted: free it for good */
	uint64_t idle_since;              /* (i) ms, CLOCK_MONOTONIC */
	struct mvm_remote *inext, *iprev; /* (i) node.idle, oldest first */
};

/*
 * Idle proxies. A server that answers through send-once reply ports makes and drops a
 * proxy for every request; registering it with its owner and unregistering it each time
 * costs two control frames (and their wake-ups) per round trip. So a proxy whose last
 * right goes is kept, still registered, holding one reference, for IDLE_MS, and reused
 * if a right to the same port arrives meanwhile; the node thread drops older ones, and
 * at most IDLE_MAX are kept. An idle proxy holds no right: it is not counted by
 * mvm_node_stats' proxies, nor by the quiescence check.
 */
#define IDLE_MAX 64
#define IDLE_MS 200

#define NODE_HASH 1024u

static struct {
	pthread_once_t once;
	bool started;                     /* (i) */
	kern_return_t start_error;
	struct mvm_remote *idle_head, *idle_tail; /* (i) idle proxies, oldest first */
	unsigned nidle;                   /* (i) written, (a) read */
	_Atomic bool flush_pending;       /* frames queued where no context could carry it */
	uint32_t pid;
	uint64_t inc;
	char dir[108];
	int listen_fd, epfd, evfd;
	pthread_t thread;
	struct mvm_peer *peers;           /* (i) */
	struct conn *conns;               /* (i) */
	struct mvm_export *exports[NODE_HASH];   /* (i) */
	struct mvm_remote *remotes[NODE_HASH];   /* (i) */
	bool kick_connect;                /* (i) peers in PEER_NEW wait for the node thread */
	struct conn *closed_conns;        /* (n) closed during the current epoll batch */
	uid_t allowed[8];                 /* (i) users besides ours that may connect */
	unsigned nallowed;
	uint64_t frames_out, frames_in, bytes_out, bytes_in;  /* (i) */
} node = { .once = PTHREAD_ONCE_INIT, .listen_fd = -1, .epfd = -1, .evfd = -1 };

static unsigned
thash(const uint8_t t[16])
{
	uint64_t x;

	memcpy(&x, t, sizeof(x));
	return (unsigned)(x ^ (x >> 29)) & (NODE_HASH - 1);
}

static void
new_token(uint8_t t[16])
{
	/* getrandom never blocks once the pool is ready (always, this late in boot): a short
	 * system call under the IPC lock, the only one here. */
	if (mvm__getrandom(t, 16) != 0) {
		/* No randomness: tokens must not be guessable, so refuse to reuse anything. */
		static uint64_t fallback;
		uint64_t x = ++fallback ^ (uint64_t)(uintptr_t)t;

		memcpy(t, &x, 8);
		memcpy(t + 8, &node.inc, 8);
	}
}

static void
kick(void)
{
	uint64_t one = 1;

	if (node.evfd >= 0)
		(void)mvm__write(node.evfd, &one, sizeof(one));
}

uint32_t
mvm__node_pid(void)
{
	return node.started ? node.pid : 0;
}

uint64_t
mvm__node_inc(void)
{
	return node.inc;
}

const char *
mvm__node_dir(void)
{
	return node.dir;
}

/* ---- 2. peers -------------------------------------------------------------------- */

static void peer_dies(struct mvm_peer *p, struct mvm_ctx *ctx);
static void peer_out_lost(struct mvm_peer *p, struct mvm_ctx *ctx);

/* The peer (pid, inc), made if unknown (and then connected by the node thread). */
static struct mvm_peer *
peer_get(uint32_t pid, uint64_t inc)
{
	struct mvm_peer *p;

	for (p = node.peers; p != NULL; p = p->next)
		if (p->pid == pid && p->inc == inc)
			return p;
	if ((p = mvm__calloc(1, sizeof(*p))) == NULL)
		return NULL;
	p->pid = pid;
	p->inc = inc;
	p->state = PEER_NEW;
	p->next = node.peers;
	node.peers = p;
	node.kick_connect = true;
	return p;
}

static void
frame_free(struct mvm_frame *f)
{
	if (f->kmsg != NULL)
		mvm__kmsg_free(f->kmsg);
	mvm__free(f->buf);
	mvm__free(f);
}

/* ---- 3. exports -------------------------------------------------------------------- */

static struct mvm_export *
export_find(const uint8_t t[16])
{
	struct mvm_export *e;

	for (e = node.exports[thash(t)]; e != NULL; e = e->hnext)
		if (memcmp(e->token, t, 16) == 0)
			return e;
	return NULL;
}

static void
export_unhash(struct mvm_export *e)
{
	struct mvm_export **pp = &node.exports[thash(e->token)];

	while (*pp != NULL && *pp != e)
		pp = &(*pp)->hnext;
	if (*pp != NULL)
		*pp = e->hnext;
}

static struct mvm_export *
export_make(struct mvm_port *port, const uint8_t *token)
{
	struct mvm_export *e;

	if (port->export != NULL)
		return port->export;
	if ((e = mvm__calloc(1, sizeof(*e))) == NULL)
		return NULL;
	if (token != NULL)
		memcpy(e->token, token, 16);
	else
		do
			new_token(e->token);
		while (export_find(e->token) != NULL);
	e->port = port;
	mvm__port_ref(port);
	port->export = e;
	e->hnext = node.exports[thash(e->token)];
	node.exports[thash(e->token)] = e;
	return e;
}

static struct mvm_holder *
holder(struct mvm_export *e, struct mvm_peer *p)
{
	struct mvm_holder *h;

	for (h = e->holders; h != NULL; h = h->next)
		if (h->peer == p)
			return h;
	if ((h = mvm__calloc(1, sizeof(*h))) == NULL)
		return NULL;
	h->peer = p;
	h->next = e->holders;
	e->holders = h;
	return h;
}

/*
 * After a change of the holders: take or drop the send right held for remote senders,
 * forget holders that hold nothing, and the export itself when nobody holds anything.
 */
static void
export_settle(struct mvm_export *e, struct mvm_ctx *ctx)
{
	struct mvm_port *port = e->port;
	struct mvm_holder **hp = &e->holders;
	bool any_v = false;

	while (*hp != NULL) {
		struct mvm_holder *h = *hp;

		if (h->v == 0 && h->so == 0 && !h->registered) {
			*hp = h->next;
			mvm__free(h);
			continue;
		}
		if (h->v != 0)
			any_v = true;
		hp = &h->next;
	}
	if (any_v && !e->hold) {
		e->hold = true;
		port->srights++;
	}
	if (e->holders == NULL && !e->permanent) {
		export_unhash(e);
		port->export = NULL;
		if (e->hold) {
			e->hold = false;
			mvm__free(e);
			mvm__send_release(port, ctx); /* may say no-senders; drops the export's ref */
			return;
		}
		mvm__free(e);
		mvm__port_release(port);
		return;
	}
	if (!any_v && e->hold) {
		e->hold = false;
		mvm__port_ref(port);
		mvm__send_release(port, ctx);
	}
}

/* A send-once right of `port` that a dead node held: destroyed, so say so. */
static void
so_destroyed(struct mvm_port *port, struct mvm_ctx *ctx)
{
	if (!port->active)
		return;
	port->sorights++;
	mvm__port_ref(port);
	mvm__notify_send_once(port, ctx);
}

/* ---- 4. proxies ---------------------------------------------------------------------- */

static struct mvm_remote *
remote_find(struct mvm_peer *owner, const uint8_t t[16])
{
	struct mvm_remote *r;

	for (r = node.remotes[thash(t)]; r != NULL; r = r->hnext)
		if (r->owner == owner && memcmp(r->token, t, 16) == 0)
			return r;
	return NULL;
}

static void
remote_unhash(struct mvm_remote *r)
{
	struct mvm_remote **pp = &node.remotes[thash(r->token)];

	while (*pp != NULL && *pp != r)
		pp = &(*pp)->hnext;
	if (*pp != NULL)
		*pp = r->hnext;
}

static void queue_ctl(struct mvm_peer *p, int type, const uint8_t token[16], uint64_t n,
    struct mvm_peer *to, struct mvm_ctx *ctx);

static uint64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void
idle_remove(struct mvm_remote *r)
{
	if (r->iprev != NULL)
		r->iprev->inext = r->inext;
	else
		node.idle_head = r->inext;
	if (r->inext != NULL)
		r->inext->iprev = r->iprev;
	else
		node.idle_tail = r->iprev;
	r->inext = r->iprev = NULL;
	r->idle = false;
	__atomic_sub_fetch(&node.nidle, 1, __ATOMIC_RELAXED);
}

/* Drop an idle proxy for good (it unregisters from its owner). */
static void
idle_evict(struct mvm_remote *r)
{
	struct mvm_port *port = r->port;

	idle_remove(r);
	r->no_cache = true;
	mvm__port_release(port); /* the cache's reference: the proxy is freed */
}

/* The proxy's last reference went: keep it idle (true) or let it be freed. */
bool
mvm__node_proxy_idle(struct mvm_port *port)
{
	struct mvm_remote *r = port->remote;

	if (r->no_cache || !port->active || r->owner->state == PEER_DEAD || !node.started)
		return false;
	port->refs = 1;
	r->idle = true;
	r->idle_since = now_ms();
	r->inext = NULL;
	r->iprev = node.idle_tail;
	if (node.idle_tail != NULL)
		node.idle_tail->inext = r;
	else
		node.idle_head = r;
	node.idle_tail = r;
	if (__atomic_add_fetch(&node.nidle, 1, __ATOMIC_RELAXED) > IDLE_MAX)
		idle_evict(node.idle_head);
	return true;
}

uint64_t
mvm__node_idle_proxies(void)
{
	return __atomic_load_n(&node.nidle, __ATOMIC_RELAXED);
}

/* Attach a remote record to `port`, making it a proxy of (owner, token). */
static struct mvm_remote *
remote_attach(struct mvm_port *port, struct mvm_peer *owner, const uint8_t t[16])
{
	struct mvm_remote *r = mvm__calloc(1, sizeof(*r));

	if (r == NULL)
		return NULL;
	r->owner = owner;
	memcpy(r->token, t, 16);
	r->port = port;
	port->remote = r;
	r->hnext = node.remotes[thash(t)];
	node.remotes[thash(t)] = r;
	return r;
}

/* The proxy of (owner, token), made (and registered with the owner) if needed. Returns
 * a port with one more reference, or NULL (no memory) or MVM_PORT_DEAD. */
static struct mvm_port *
proxy_get(struct mvm_peer *owner, const uint8_t t[16], struct mvm_ctx *ctx)
{
	struct mvm_remote *r;
	struct mvm_port *port;

	if (owner->state == PEER_DEAD)
		return MVM_PORT_DEAD;
	if ((r = remote_find(owner, t)) != NULL && r->port != NULL && r->port->active) {
		if (r->idle)
			idle_remove(r); /* the cache's reference becomes the caller's */
		else
			mvm__port_ref(r->port);
		return r->port;
	}
	if ((port = mvm__port_alloc()) == NULL)
		return NULL;
	mvm_ipc.ports++;
	if (remote_attach(port, owner, t) == NULL) {
		port->refs = 0;
		mvm__free(port);
		mvm_ipc.ports--;
		return NULL;
	}
	queue_ctl(owner, MVM_WF_REGISTER, t, 0, NULL, ctx);
	return port;
}

/* The proxy's last send right went: give the owner back every credit. */
void
mvm__node_proxy_unsent(struct mvm_port *port, struct mvm_ctx *ctx)
{
	struct mvm_remote *r = port->remote;

	if (r->credits != 0 && r->owner->state != PEER_DEAD)
		queue_ctl(r->owner, MVM_WF_RELEASE, r->token, (uint64_t)r->credits, NULL, ctx);
	r->credits = 0;
}

void
mvm__node_proxy_free(struct mvm_port *port)
{
	struct mvm_remote *r = port->remote;
	struct mvm_ctx ctx = MVM_CTX_INIT;

	port->remote = NULL;
	remote_unhash(r);
	if (r->owner->state != PEER_DEAD) {
		/* Called from mvm__port_release, which has no context to carry the flush:
		 * the caller's mvm__ctx_finish (every IPC path ends with one) or the node
		 * thread writes it. */
		queue_ctl(r->owner, MVM_WF_UNREGISTER, r->token, 0, NULL, &ctx);
		atomic_store_explicit(&node.flush_pending, true, memory_order_relaxed);
	}
	mvm__free(r);
}

/* A proxy dies: its owner said so or is gone. */
static void
proxy_dies(struct mvm_remote *r, struct mvm_ctx *ctx)
{
	struct mvm_port *port = r->port;
	bool was_idle = r->idle;

	if (was_idle)
		idle_remove(r);
	remote_unhash(r);
	if (port != NULL) {
		port->remote = NULL;
		mvm__port_ref(port);
		mvm__port_die(port, ctx);
		mvm__port_release(port);
		if (was_idle)
			mvm__port_release(port); /* the cache's reference */
	}
	mvm__free(r);
}

/* The local port dies: tell every node that holds a right to it. */
void
mvm__node_export_dies(struct mvm_port *port, struct mvm_ctx *ctx)
{
	struct mvm_export *e = port->export;

	export_unhash(e);
	port->export = NULL;
	while (e->holders != NULL) {
		struct mvm_holder *h = e->holders;

		e->holders = h->next;
		if (h->peer->state != PEER_DEAD)
			queue_ctl(h->peer, MVM_WF_DEATH, e->token, 0, NULL, ctx);
		mvm__free(h);
	}
	if (e->hold)
		port->srights--;
	mvm__free(e);
	mvm__port_release(port); /* the caller holds its own reference */
}

/* ---- 5. frames ---------------------------------------------------------------------- */

static void
frame_append(struct mvm_peer *p, struct mvm_frame *f, struct mvm_ctx *ctx)
{
	f->next = NULL;
	if (p->qtail != NULL)
		p->qtail->next = f;
	else
		p->qhead = f;
	p->qtail = f;
	ctx->node_flush = true;
}

static void
queue_ctl(struct mvm_peer *p, int type, const uint8_t token[16], uint64_t n,
    struct mvm_peer *to, struct mvm_ctx *ctx)
{
	struct mvm_frame *f;
	struct mvm_wctl *c;

	if (p->state == PEER_DEAD)
		return;
	if ((f = mvm__calloc(1, sizeof(*f))) == NULL || (c = mvm__calloc(1, sizeof(*c))) == NULL) {
		/* Out of memory: the peer can no longer be told the truth; treat it as gone
		 * rather than let counts drift silently. */
		mvm__free(f);
		peer_dies(p, ctx);
		return;
	}
	c->h.magic = MVM_WIRE_MAGIC;
	c->h.type = (uint16_t)type;
	c->h.len = sizeof(*c);
	memcpy(c->token, token, 16);
	c->n = n;
	if (to != NULL) {
		c->pid = to->pid;
		c->inc = to->inc;
	}
	f->buf = c;
	f->len = sizeof(*c);
	frame_append(p, f, ctx);
}

/* ---- 6. shipping a message ------------------------------------------------------------ */

struct ship {
	struct mvm_peer *to;
	struct mvm_port **fwd;            /* ports that became forwarders: their queues follow */
	unsigned nfwd;
};

static void wref_out(struct mvm_kport kp, struct ship *s, struct mvm_wref *w,
    struct mvm_wref *extra, uint32_t *nextra, struct mvm_ctx *ctx);

/* The receive right of local port `port` moves to s->to: the port becomes a proxy. */
static void
receive_out(struct mvm_port *port, struct ship *s, struct mvm_wref *w, struct mvm_wref *extra,
    uint32_t *nextra, struct mvm_ctx *ctx)
{
	uint8_t t2[16];
	uint64_t so = port->sorights;
	struct mvm_remote *r;
	struct mvm_kport req;

	if (port->export != NULL)
		for (struct mvm_holder *h = port->export->holders; h != NULL; h = h->next)
			so += h->so > 0 ? (uint64_t)h->so : 0;
	new_token(t2);
	w->kind = MVM_WR_RECEIVE;
	memcpy(w->token, t2, 16);
	w->aux = so;
	/* Its notification requests travel with it. */
	req.type = MACH_MSG_TYPE_PORT_SEND_ONCE;
	req.port = port->nsrequest;
	port->nsrequest = NULL;
	wref_out(req, s, &extra[(*nextra)++], NULL, NULL, ctx);
	if (req.port != NULL)
		mvm__sonce_release_used(req.port);
	extra[*nextra - 1].aux = port->nsrequest_sync;
	req.port = port->pdrequest;
	port->pdrequest = NULL;
	wref_out(req, s, &extra[(*nextra)++], NULL, NULL, ctx);
	if (req.port != NULL)
		mvm__sonce_release_used(req.port);
	/* The token other nodes know it by, if any: a node that holds a proxy of it takes
	 * the receive right into that proxy, so the port keeps one name there. */
	memset(&extra[*nextra], 0, sizeof(extra[*nextra]));
	if (port->export != NULL)
		memcpy(extra[*nextra].token, port->export->token, 16);
	(*nextra)++;
	if ((r = remote_attach(port, s->to, t2)) == NULL) {
		/* No memory for the proxy: the port dies here and the new owner gets a port
		 * nobody else can reach. Rare enough; never a crash. */
		mvm__port_die(port, ctx);
		return;
	}
	r->credits = 1;
	mvm__port_ref(port); /* until its queue has followed it */
	s->fwd[s->nfwd++] = port;
}

static void
wref_out(struct mvm_kport kp, struct ship *s, struct mvm_wref *w, struct mvm_wref *extra,
    uint32_t *nextra, struct mvm_ctx *ctx)
{
	struct mvm_port *port = kp.port;

	memset(w, 0, sizeof(*w));
	w->type = (uint8_t)kp.type;
	if (port == NULL) {
		w->kind = MVM_WR_NULL;
		return;
	}
	if (port == MVM_PORT_DEAD || !port->active) {
		w->kind = MVM_WR_DEAD;
		return;
	}
	if (port->remote == NULL) {
		struct mvm_export *e;
		struct mvm_holder *h;

		if (kp.type == MACH_MSG_TYPE_PORT_RECEIVE) {
			receive_out(port, s, w, extra, nextra, ctx);
			return;
		}
		if ((e = export_make(port, NULL)) == NULL || (h = holder(e, s->to)) == NULL) {
			w->kind = MVM_WR_DEAD; /* no memory: the right is lost as a dead one */
			return;
		}
		w->kind = MVM_WR_NODE;
		w->pid = node.pid;
		w->inc = node.inc;
		memcpy(w->token, e->token, 16);
		if (kp.type == MACH_MSG_TYPE_PORT_SEND)
			h->v++;
		else
			h->so++;
		export_settle(e, ctx);
		return;
	}
	/* A proxy. */
	struct mvm_remote *r = port->remote;

	memcpy(w->token, r->token, 16);
	if (r->owner == s->to) {
		w->kind = MVM_WR_YOURS;
		return;
	}
	w->kind = MVM_WR_NODE;
	w->pid = r->owner->pid;
	w->inc = r->owner->inc;
	queue_ctl(r->owner, kp.type == MACH_MSG_TYPE_PORT_SEND ? MVM_WF_XFER : MVM_WF_SOXFER,
	    r->token, 0, s->to, ctx);
}

/* Release a right that has just left in a frame (its accounting is done). */
static void
right_gone(struct mvm_kport kp, struct mvm_ctx *ctx)
{
	if (!MVM_PORT_VALID(kp.port))
		return;
	switch (kp.type) {
	case MACH_MSG_TYPE_PORT_SEND:
		mvm__send_release(kp.port, ctx);
		break;
	case MACH_MSG_TYPE_PORT_SEND_ONCE:
		mvm__sonce_release_used(kp.port);
		break;
	case MACH_MSG_TYPE_PORT_RECEIVE:
		/* The port is a forwarder now (or died): the message's reference goes. */
		mvm__port_release(kp.port);
		break;
	default:
		break;
	}
}

void
mvm__node_ship(struct mvm_kmsg *k, struct mvm_ctx *ctx)
{
	struct mvm_port *dest = k->dest;
	struct mvm_remote *r = dest->remote;
	struct ship s = { .to = r->owner };
	struct mvm_frame *f;
	struct mvm_wmsg *wm = NULL;
	struct mvm_wref *refs, *extra;
	struct mvm_wool *wool;
	uint32_t nextra = 0, nrecv = 0, ool_i = 0;
	size_t len, pos;
	struct mvm_msg_item it;

	MVM_ASSERT_LOCKED(&mvm_ipc.lock);
	if (s.to->state == PEER_DEAD) {
		mvm__kmsg_destroy(k, ctx);
		return;
	}
	for (uint32_t i = 0; i < k->nports; i++)
		if (k->ports[i].type == MACH_MSG_TYPE_PORT_RECEIVE && MVM_PORT_VALID(k->ports[i].port))
			nrecv++;
	len = sizeof(*wm) + (size_t)(k->nports + MVM_WR_EXTRA * nrecv) * sizeof(struct mvm_wref) +
	    (size_t)k->nool * sizeof(struct mvm_wool);
	if ((f = mvm__calloc(1, sizeof(*f))) == NULL || (wm = mvm__calloc(1, len)) == NULL ||
	    (nrecv > 0 && (s.fwd = mvm__calloc(nrecv, sizeof(*s.fwd))) == NULL)) {
		mvm__free(wm);
		mvm__free(f);
		mvm__kmsg_destroy(k, ctx); /* no memory: the message dies, as on a dead port */
		return;
	}
	refs = (struct mvm_wref *)(wm + 1);
	extra = refs + k->nports;
	wool = (struct mvm_wool *)(extra + MVM_WR_EXTRA * nrecv);
	wm->h.magic = MVM_WIRE_MAGIC;
	wm->h.type = MVM_WF_MSG;
	wm->size = k->size;
	wm->nports = k->nports;
	wm->nool = k->nool;

	/* The destination: the owner's own token, used with the right the message holds. */
	memcpy(wm->dest.token, r->token, 16);
	wm->dest.kind = MVM_WR_YOURS;
	wm->dest.type = (uint8_t)k->dest_type;
	wref_out(k->reply, &s, &wm->reply, extra, &nextra, ctx);
	for (uint32_t i = 0; i < k->nports; i++)
		wref_out(k->ports[i], &s, &refs[i], extra, &nextra, ctx);
	wm->nextra = nextra;
	/* Out-of-line regions, in message order (the body was checked at copy-in). */
	pos = sizeof(mach_msg_header_t);
	while ((k->msg->msgh_bits & MACH_MSGH_BITS_COMPLEX) && pos < k->size && ool_i < k->nool) {
		if (mvm__msg_next_item(k->msg, k->size, &pos, &it) != MACH_MSG_SUCCESS)
			break;
		if (it.is_inline)
			continue;
		wool[ool_i].is_ports = mvm__msg_type_is_port(it.name);
		wool[ool_i].nports = wool[ool_i].is_ports ? it.number : 0;
		wool[ool_i].len = wool[ool_i].is_ports ? 0 : it.data_len;
		wool[ool_i].data_off = (uint32_t)k->ool[ool_i].data_off;
		wool[ool_i].fd = MVM_WOOL_INLINE;
		ool_i++;
	}
	len = sizeof(*wm) + (size_t)(k->nports + nextra) * sizeof(struct mvm_wref);
	memmove(extra + nextra, wool, (size_t)k->nool * sizeof(*wool)); /* close the gap */
	len += (size_t)k->nool * sizeof(struct mvm_wool);
	f->buf = wm;
	f->len = len;
	f->kmsg = k;
	frame_append(s.to, f, ctx);
	node.frames_out++;

	/* The rights left with the frame. */
	if (k->dest_type == MACH_MSG_TYPE_PORT_SEND_ONCE)
		mvm__sonce_release_used(dest);
	else
		mvm__send_release(dest, ctx);
	k->dest = NULL;
	right_gone(k->reply, ctx);
	k->reply.port = NULL;
	for (uint32_t i = 0; i < k->nports; i++) {
		right_gone(k->ports[i], ctx);
		k->ports[i].port = NULL;
	}
	k->rights_released = true;
	mvm_ipc.msgs_sent++;

	/* Messages queued on ports whose receive right just left follow it, in order. */
	for (unsigned i = 0; i < s.nfwd; i++) {
		struct mvm_port *p = s.fwd[i];
		struct mvm_kmsg *q;

		while ((q = p->mq.head) != NULL) {
			p->mq.head = q->next;
			q->next = NULL;
			p->msgcount--;
			mvm_ipc.kmsgs_queued--;
			mvm_ipc.msgs_sent--; /* counted again when shipped */
			mvm__node_ship(q, ctx);
		}
		p->mq.tail = NULL;
		mvm__wake_all(&p->senders, 0, ctx);
		if (p->srights == 0 && p->remote != NULL)
			mvm__node_proxy_unsent(p, ctx);
		mvm__port_release(p);
	}
	mvm__free(s.fwd);
}

/* ---- 7. writing ------------------------------------------------------------------------ */

static int
sealed_memfd(const void *const *parts, const size_t *lens, unsigned n, size_t total, size_t at)
{
	int fd = mvm__memfd_create("machvm-wire", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	size_t off = at;

	if (fd < 0)
		return fd;
	if (mvm__ftruncate(fd, (off_t)total) != 0)
		goto fail;
	for (unsigned i = 0; i < n; i++) {
		if (lens[i] > 0 && mvm__pwrite(fd, parts[i], lens[i], (off_t)off) < 0)
			goto fail;
		off += lens[i];
	}
	if (mvm__fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) != 0)
		goto fail;
	return fd;
fail:
	mvm__close(fd);
	return -ENOMEM;
}

/* Write one frame; 0, -EAGAIN (socket full, try later) or another -errno (peer gone). */
static int
frame_write(int sock, struct mvm_frame *f)
{
	struct mvm_kmsg *k = f->kmsg;
	int fds[MVM_WIRE_FDS_MAX + 1];
	unsigned nfds = 0;
	struct iovec iov[4];
	struct msghdr mh;
	union {
		char buf[CMSG_SPACE(sizeof(int) * (MVM_WIRE_FDS_MAX + 1))];
		struct cmsghdr align;
	} cm;
	size_t total = f->len, inl = 0;
	uint8_t *inline_buf = NULL;
	struct mvm_whdr *h = f->buf;
	ssize_t r;
	int ret = 0;
	bool big;

	if (k != NULL) {
		struct mvm_wmsg *wm = f->buf;
		struct mvm_wool *wool = (struct mvm_wool *)((struct mvm_wref *)(wm + 1) +
		    wm->nports + wm->nextra);
		size_t body = (k->size + 7u) & ~(size_t)7;

		total += body;
		/* Regions of a page or more go as sealed memfds; the rest inline. */
		for (uint32_t i = 0; i < k->nool; i++) {
			wool[i].fd = MVM_WOOL_INLINE;
			if (wool[i].is_ports || wool[i].len == 0)
				continue;
			if (wool[i].len >= MVM_WIRE_MEMFD_MIN && nfds < MVM_WIRE_FDS_MAX) {
				const void *part = (uint8_t *)k->ool[i].addr + k->ool[i].data_off;
				size_t plen = (size_t)wool[i].len;
				int fd = sealed_memfd(&part, &plen, 1, k->ool[i].map_len, k->ool[i].data_off);

				if (fd < 0) {
					ret = fd;
					goto out;
				}
				fds[1 + nfds] = fd;
				wool[i].fd = nfds++;
			} else {
				inl += ((size_t)wool[i].len + 7u) & ~(size_t)7;
			}
		}
		if (inl > 0 && (inline_buf = mvm__malloc(inl)) == NULL) {
			ret = -ENOMEM;
			goto out;
		}
		inl = 0;
		for (uint32_t i = 0; i < k->nool; i++) {
			if (wool[i].is_ports || wool[i].len == 0 || wool[i].fd != MVM_WOOL_INLINE)
				continue;
			memcpy(inline_buf + inl, (uint8_t *)k->ool[i].addr + k->ool[i].data_off,
			    (size_t)wool[i].len);
			wool[i].inline_off = total + inl;
			inl += ((size_t)wool[i].len + 7u) & ~(size_t)7;
		}
		total += inl;
	}
	if (total > MVM_WIRE_FRAME_MAX) {
		ret = -EMSGSIZE;
		goto out;
	}
	h->len = (uint32_t)total;
	big = total > MVM_WIRE_INLINE_MAX;
	h->flags = big ? MVM_WF_BIG : 0;
	h->nfds = nfds + (big ? 1 : 0);
	{
		static const uint8_t zeros[8];
		const void *parts[4] = { f->buf, k ? (void *)k->msg : NULL, zeros, inline_buf };
		size_t lens[4] = { f->len, k ? k->size : 0,
		    k ? (((k->size + 7u) & ~(size_t)7) - k->size) : 0, inl };
		unsigned np = 4;

		if (big) {
			int fd;

			/* The wool indices count from 1 then: fd 0 is the frame. */
			if (k != NULL) {
				struct mvm_wmsg *wm = f->buf;
				struct mvm_wool *wool = (struct mvm_wool *)((struct mvm_wref *)(wm + 1) +
				    wm->nports + wm->nextra);

				for (uint32_t i = 0; i < k->nool; i++)
					if (wool[i].fd != MVM_WOOL_INLINE)
						wool[i].fd++;
			}
			if ((fd = sealed_memfd(parts, lens, np, total, 0)) < 0) {
				ret = fd;
				goto out;
			}
			fds[0] = fd;
			iov[0].iov_base = h;
			iov[0].iov_len = sizeof(*h);
			np = 1;
		} else {
			memmove(&fds[0], &fds[1], nfds * sizeof(int));
			for (unsigned i = 0; i < np; i++) {
				iov[i].iov_base = (void *)parts[i];
				iov[i].iov_len = lens[i];
			}
		}
		memset(&mh, 0, sizeof(mh));
		mh.msg_iov = iov;
		mh.msg_iovlen = np;
		if (h->nfds > 0) {
			struct cmsghdr *c;

			memset(&cm, 0, sizeof(cm));
			mh.msg_control = cm.buf;
			mh.msg_controllen = CMSG_SPACE(sizeof(int) * h->nfds);
			c = CMSG_FIRSTHDR(&mh);
			c->cmsg_level = SOL_SOCKET;
			c->cmsg_type = SCM_RIGHTS;
			c->cmsg_len = CMSG_LEN(sizeof(int) * h->nfds);
			memcpy(CMSG_DATA(c), fds, sizeof(int) * h->nfds);
		}
		r = mvm__sendmsg(sock, &mh, MSG_DONTWAIT);
		if (r < 0)
			ret = (int)r;
		nfds = h->nfds;
		for (unsigned i = 0; i < nfds; i++)
			mvm__close(fds[i]);
		nfds = 0;
		if (big && k != NULL && ret != 0) {
			/* Undo the renumbering: the frame will be built again. */
			struct mvm_wmsg *wm = f->buf;
			struct mvm_wool *wool = (struct mvm_wool *)((struct mvm_wref *)(wm + 1) +
			    wm->nports + wm->nextra);

			for (uint32_t i = 0; i < k->nool; i++)
				if (wool[i].fd != MVM_WOOL_INLINE)
					wool[i].fd--;
		}
	}
out:
	for (unsigned i = 0; i < nfds; i++)
		mvm__close(fds[1 + i]);
	mvm__free(inline_buf);
	return ret;
}

static void
peer_flush(struct mvm_peer *p)
{
	struct mvm_ctx ctx = MVM_CTX_INIT;

	mvm__ipc_lock();
	if (p->writing || p->blocked || p->out_lost || p->state != PEER_UP || p->out == NULL) {
		mvm__ipc_unlock();
		return;
	}
	p->writing = true;
	struct conn *c = p->out;

	c->refs++;
	for (;;) {
		struct mvm_frame *f = p->qhead;
		int r;

		if (f == NULL || p->state != PEER_UP)
			break;
		p->qhead = f->next;
		if (p->qhead == NULL)
			p->qtail = NULL;
		mvm__ipc_unlock();
		r = frame_write(c->fd, f);
		if (r == -EAGAIN || r == -ENOBUFS) {
			mvm__ipc_lock();
			f->next = p->qhead;
			p->qhead = f;
			if (p->qtail == NULL)
				p->qtail = f;
			p->blocked = true;
			break;
		}
		/* Written, or a frame that cannot be built (no memory, too large): that one is
		 * lost like a message to a dead port; its rights were already accounted. */
		size_t flen = f->len;

		frame_free(f); /* unlocked: it unmaps out-of-line data */
		mvm__ipc_lock();
		if (r != 0 && r != -ENOMEM && r != -EMSGSIZE) {
			peer_out_lost(p, &ctx);
			break;
		}
		node.bytes_out += flen;
	}
	p->writing = false;
	c->refs--;
	bool blocked = p->blocked;
	mvm__ipc_unlock();
	mvm__ctx_finish(&ctx);
	if (blocked)
		kick();
}

bool
mvm__node_drain(int timeout_ms)
{
	struct timespec nap = { 0, 1000000 };
	uint64_t deadline = now_ms() + (uint64_t)timeout_ms;

	for (;;) {
		bool left = false;

		mvm__node_flush();
		mvm__ipc_lock();
		for (struct mvm_peer *p = node.peers; p != NULL && !left; p = p->next)
			left = p->qhead != NULL && p->state != PEER_DEAD && !p->out_lost;
		mvm__ipc_unlock();
		if (!left)
			return true;
		/* A full socket or a connection still being made: the node thread writes. */
		if (now_ms() >= deadline)
			return false;
		(void)nanosleep(&nap, NULL);
	}
}

bool
mvm__node_flush_pending(void)
{
	return atomic_load_explicit(&node.flush_pending, memory_order_relaxed);
}

void
mvm__node_flush(void)
{
	struct mvm_peer *todo[16];
	unsigned n;

	atomic_store_explicit(&node.flush_pending, false, memory_order_relaxed);
	for (;;) {
		n = 0;
		mvm__ipc_lock();
		for (struct mvm_peer *p = node.peers; p != NULL && n < 16; p = p->next)
			if (p->qhead != NULL && !p->writing && !p->blocked && !p->out_lost &&
			    p->state == PEER_UP)
				todo[n++] = p;
		bool connect = node.kick_connect;
		mvm__ipc_unlock();
		if (connect)
			kick();
		for (unsigned i = 0; i < n; i++)
			peer_flush(todo[i]); /* peers are never freed */
		if (n < 16)
			return;
	}
}

/* ---- 8. receiving ------------------------------------------------------------------------ */

static bool
token_zero(const uint8_t t[16])
{
	for (int i = 0; i < 16; i++)
		if (t[i] != 0)
			return false;
	return true;
}

mach_msg_return_t
mvm__wire_check_msg(const void *buf, size_t len, unsigned nfds)
{
	const struct mvm_wmsg *wm = buf;
	const struct mvm_wref *refs;
	const struct mvm_wool *wool;
	const uint8_t *body;
	size_t need, pos;
	uint32_t port_i = 0, ool_i = 0, recv = 0;
	struct mvm_msg_item it;
	mach_msg_header_t hdr;

	if (len < sizeof(*wm) || wm->h.magic != MVM_WIRE_MAGIC || wm->h.type != MVM_WF_MSG ||
	    wm->h.len != len)
		return MACH_SEND_MSG_TOO_SMALL;
	if (wm->size < sizeof(mach_msg_header_t) || wm->size > MVM_MSG_SIZE_MAX ||
	    (wm->size & 3) != 0 || wm->nports > (1u << 24) || wm->nool > (1u << 20) ||
	    wm->nextra > 2 * wm->nports + 2)
		return MACH_SEND_MSG_TOO_SMALL;
	need = sizeof(*wm) + ((size_t)wm->nports + wm->nextra) * sizeof(*refs) +
	    (size_t)wm->nool * sizeof(*wool);
	if (need > len || len - need < ((wm->size + 7u) & ~(size_t)7))
		return MACH_SEND_MSG_TOO_SMALL;
	refs = (const struct mvm_wref *)(wm + 1);
	wool = (const struct mvm_wool *)(refs + wm->nports + wm->nextra);
	body = (const uint8_t *)wool + (size_t)wm->nool * sizeof(*wool);
	memcpy(&hdr, body, sizeof(hdr));
	if (wm->dest.kind != MVM_WR_YOURS || (wm->dest.type != MACH_MSG_TYPE_PORT_SEND &&
	    wm->dest.type != MACH_MSG_TYPE_PORT_SEND_ONCE))
		return MACH_SEND_INVALID_DEST;
	if (wm->reply.kind > MVM_WR_RECEIVE || (wm->reply.kind != MVM_WR_NULL &&
	    wm->reply.type != MACH_MSG_TYPE_PORT_SEND && wm->reply.type != MACH_MSG_TYPE_PORT_SEND_ONCE))
		return MACH_SEND_INVALID_REPLY;
	if (wm->reply.kind == MVM_WR_RECEIVE)
		return MACH_SEND_INVALID_REPLY;
	for (uint32_t i = 0; i < wm->nports; i++) {
		if (refs[i].kind > MVM_WR_RECEIVE)
			return MACH_SEND_INVALID_RIGHT;
		if (refs[i].kind == MVM_WR_RECEIVE) {
			if (refs[i].type != MACH_MSG_TYPE_PORT_RECEIVE)
				return MACH_SEND_INVALID_RIGHT;
			recv++;
		} else if (refs[i].kind != MVM_WR_NULL && refs[i].kind != MVM_WR_DEAD &&
		    refs[i].type != MACH_MSG_TYPE_PORT_SEND && refs[i].type != MACH_MSG_TYPE_PORT_SEND_ONCE)
			return MACH_SEND_INVALID_RIGHT;
	}
	if (wm->nextra != MVM_WR_EXTRA * recv)
		return MACH_SEND_INVALID_RIGHT;
	for (uint32_t i = 0; i < wm->nextra; i++) {
		const struct mvm_wref *x = &refs[wm->nports + i];

		if (i % MVM_WR_EXTRA == 2) {
			if (x->kind != MVM_WR_NULL) /* carries the old token only */
				return MACH_SEND_INVALID_RIGHT;
			continue;
		}
		if (x->kind > MVM_WR_NODE || (x->kind >= MVM_WR_YOURS &&
		    x->type != MACH_MSG_TYPE_PORT_SEND_ONCE))
			return MACH_SEND_INVALID_RIGHT;
	}
	/* The body must carry exactly the rights and regions the frame describes. */
	if (!(hdr.msgh_bits & MACH_MSGH_BITS_COMPLEX))
		return wm->nports == 0 && wm->nool == 0 ? MACH_MSG_SUCCESS : MACH_SEND_INVALID_TYPE;
	pos = sizeof(mach_msg_header_t);
	while (pos < wm->size) {
		mach_msg_return_t mr = mvm__msg_next_item(body, wm->size, &pos, &it);

		if (mr != MACH_MSG_SUCCESS)
			return mr;
		if (mvm__msg_type_is_port(it.name)) {
			if (it.name != MACH_MSG_TYPE_PORT_SEND && it.name != MACH_MSG_TYPE_PORT_SEND_ONCE &&
			    it.name != MACH_MSG_TYPE_PORT_RECEIVE)
				return MACH_SEND_INVALID_TYPE;
			if (it.number > wm->nports - port_i)
				return MACH_SEND_INVALID_RIGHT;
			for (uint32_t i = 0; i < it.number; i++)
				if (refs[port_i + i].kind != MVM_WR_NULL && refs[port_i + i].kind != MVM_WR_DEAD &&
				    refs[port_i + i].type != it.name)
					return MACH_SEND_INVALID_RIGHT;
			if (!it.is_inline) {
				if (ool_i >= wm->nool || !wool[ool_i].is_ports || wool[ool_i].nports != it.number)
					return MACH_SEND_INVALID_TYPE;
				ool_i++;
			}
			port_i += it.number;
			continue;
		}
		if (it.is_inline)
			continue;
		if (ool_i >= wm->nool || wool[ool_i].is_ports || wool[ool_i].len != it.data_len ||
		    wool[ool_i].data_off >= mvm__page_size() || it.data_len > ((uint64_t)1 << 40))
			return MACH_SEND_INVALID_TYPE;
		if (it.data_len > 0) {
			if (wool[ool_i].fd == MVM_WOOL_INLINE) {
				if (wool[ool_i].inline_off > len || len - wool[ool_i].inline_off < it.data_len)
					return MACH_SEND_MSG_TOO_SMALL;
			} else if (wool[ool_i].fd >= nfds) {
				return MACH_SEND_INVALID_MEMORY;
			}
		}
		ool_i++;
	}
	if (port_i != wm->nports || ool_i != wm->nool)
		return MACH_SEND_INVALID_TYPE;
	return MACH_MSG_SUCCESS;
}

/* Translate a reference that came from `from` into a right held by the message. */
static struct mvm_kport
wref_in(const struct mvm_wref *w, const struct mvm_wref *extra, struct mvm_peer *from,
    struct mvm_ctx *ctx)
{
	struct mvm_kport kp = { NULL, w->type };
	struct mvm_export *e;
	struct mvm_holder *h;
	struct mvm_peer *owner;
	struct mvm_port *port;

	switch (w->kind) {
	case MVM_WR_NULL:
		return kp;
	case MVM_WR_YOURS:
		if ((e = export_find(w->token)) == NULL || !e->port->active) {
			kp.port = MVM_PORT_DEAD; /* stale or forged: never a live right */
			return kp;
		}
		port = e->port;
		mvm__port_ref(port);
		if (w->type == MACH_MSG_TYPE_PORT_SEND) {
			port->srights++;
		} else {
			port->sorights++;
			if ((h = holder(e, from)) != NULL)
				h->so--;
			export_settle(e, ctx);
		}
		kp.port = port;
		return kp;
	case MVM_WR_NODE:
		if (w->pid == node.pid && w->inc == node.inc) {
			/* Only the owner may name its own ports this way; a third party says YOURS. */
			kp.port = MVM_PORT_DEAD;
			return kp;
		}
		if ((owner = peer_get(w->pid, w->inc)) == NULL) {
			kp.port = MVM_PORT_DEAD;
			return kp;
		}
		port = proxy_get(owner, w->token, ctx);
		if (!MVM_PORT_VALID(port)) {
			/* Credits the owner gave us for it must not stay counted. */
			if (w->type == MACH_MSG_TYPE_PORT_SEND && owner->state != PEER_DEAD)
				queue_ctl(owner, MVM_WF_RELEASE, w->token, 1, NULL, ctx);
			kp.port = MVM_PORT_DEAD;
			return kp;
		}
		if (w->type == MACH_MSG_TYPE_PORT_SEND) {
			port->srights++;
			port->remote->credits++;
		} else {
			port->sorights++;
		}
		kp.port = port;
		return kp;
	case MVM_WR_RECEIVE: {
		struct mvm_kport req;
		struct mvm_remote *old = token_zero(extra[2].token) ? NULL :
		    remote_find(from, extra[2].token);
		int64_t so = (int64_t)w->aux;

		if (w->aux > MVM_WIRE_SO_MAX) {
			/* A claim no sender makes (see MVM_WIRE_SO_MAX): the right dies here. */
			kp.port = MVM_PORT_DEAD;
			return kp;
		}
		if (old != NULL && old->port != NULL && old->port->active &&
		    old->port->export == NULL && export_find(w->token) == NULL) {
			/*
			 * We hold a proxy of this very port: it becomes the port, and our names
			 * for it now carry the receive right too, as in Mach. Our credits and
			 * registration at the old owner (now a forwarder to us) go back; the
			 * send-once rights we held through the proxy are ours now, not its.
			 */
			port = old->port;
			if (old->idle) {
				idle_remove(old); /* its reference becomes the message's */
				mvm__port_release(port); /* balanced by the reference below */
			}
			remote_unhash(old);
			port->remote = NULL;
			if (old->credits != 0)
				queue_ctl(from, MVM_WF_RELEASE, old->token, (uint64_t)old->credits, NULL, ctx);
			queue_ctl(from, MVM_WF_UNREGISTER, old->token, 0, NULL, ctx);
			mvm__free(old);
			mvm__port_ref(port); /* the message's reference */
			so -= (int64_t)port->sorights;
			if (so < 0)
				so = 0;
		} else if ((port = mvm__port_alloc()) == NULL) {
			kp.port = MVM_PORT_DEAD;
			return kp;
		} else {
			mvm_ipc.ports++;
		}
		if (export_find(w->token) != NULL || (e = export_make(port, w->token)) == NULL ||
		    (h = holder(e, from)) == NULL) {
			/* A token clash (forged) or no memory: the right dies here. */
			mvm__port_destroy_receive(port, ctx);
			kp.port = MVM_PORT_DEAD;
			return kp;
		}
		h->v = 1;                   /* the forwarder's send right */
		h->so = so;                 /* send-once rights that reach us through it */
		h->registered = true;
		export_settle(e, ctx);
		req = wref_in(&extra[0], NULL, from, ctx);
		port->nsrequest = MVM_PORT_VALID(req.port) ? req.port : NULL;
		port->nsrequest_sync = (mach_port_mscount_t)extra[0].aux;
		req = wref_in(&extra[1], NULL, from, ctx);
		port->pdrequest = MVM_PORT_VALID(req.port) ? req.port : NULL;
		kp.port = port;
		return kp;
	}
	default:
		kp.port = MVM_PORT_DEAD;
		return kp;
	}
}

/* Map an out-of-line region that came as a sealed memfd; NULL on any doubt. */
static void *
map_sealed(int fd, size_t map_len)
{
	struct stat st;
	int seals = mvm__fcntl(fd, F_GET_SEALS, 0);
	int err;
	void *p;

	if (seals < 0 || (seals & (F_SEAL_WRITE | F_SEAL_SHRINK)) != (F_SEAL_WRITE | F_SEAL_SHRINK))
		return NULL;
	if (mvm__fstat(fd, &st) != 0 || (uint64_t)st.st_size < map_len)
		return NULL;
	p = mvm__mmap(NULL, map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0, &err);
	if (p == NULL)
		return NULL;
	if (mvm__vm_track_pages(p, map_len) != 0) {
		(void)mvm__munmap(p, map_len);
		return NULL;
	}
	return p;
}

/* Build the message of a checked frame: memory only, no lock. */
static struct mvm_kmsg *
msg_build(const void *buf, size_t len, const int *fds, unsigned nfds)
{
	const struct mvm_wmsg *wm = buf;
	const struct mvm_wref *refs = (const struct mvm_wref *)(wm + 1);
	const struct mvm_wool *wool = (const struct mvm_wool *)(refs + wm->nports + wm->nextra);
	const uint8_t *body = (const uint8_t *)wool + (size_t)wm->nool * sizeof(*wool);
	struct mvm_kmsg *k = mvm__kmsg_alloc(wm->size);
	size_t ps = mvm__page_size();

	(void)len;
	(void)nfds;
	if (k == NULL)
		return NULL;
	memcpy(k->msg, body, wm->size);
	k->msg->msgh_size = wm->size;
	if ((wm->nports && (k->ports = mvm__calloc(wm->nports, sizeof(*k->ports))) == NULL) ||
	    (wm->nool && (k->ool = mvm__calloc(wm->nool, sizeof(*k->ool))) == NULL))
		goto fail;
	for (uint32_t i = 0; i < wm->nool; i++) {
		struct mvm_kool *o = &k->ool[i];
		size_t dlen = wool[i].is_ports ? (size_t)wool[i].nports * sizeof(mach_port_t) :
		    (size_t)wool[i].len;
		int err;

		o->is_ports = wool[i].is_ports != 0;
		o->nports = wool[i].nports;
		o->data_off = o->is_ports ? 0 : wool[i].data_off;
		k->nool = i + 1;
		if (dlen == 0)
			continue;
		o->map_len = (o->data_off + dlen + ps - 1) & ~(ps - 1);
		if (!o->is_ports && wool[i].fd != MVM_WOOL_INLINE) {
			if ((o->addr = map_sealed(fds[wool[i].fd], o->map_len)) == NULL)
				goto fail;
			continue;
		}
		if ((o->addr = mvm__vm_alloc_pages(o->map_len, &err)) == NULL)
			goto fail;
		if (!o->is_ports)
			memcpy((uint8_t *)o->addr + o->data_off, (const uint8_t *)buf + wool[i].inline_off, dlen);
	}
	k->nports = wm->nports;
	return k;
fail:
	mvm__kmsg_free(k);
	return NULL;
}

/* A message that cannot be built (no memory) is lost; its rights are accounted and
 * destroyed as if its port had died with it queued. */
static void
msg_drop(const struct mvm_wmsg *wm, struct mvm_peer *from, struct mvm_ctx *ctx)
{
	const struct mvm_wref *refs = (const struct mvm_wref *)(wm + 1);
	const struct mvm_wref *extra = refs + wm->nports;
	struct mvm_export *e = export_find(wm->dest.token);
	uint32_t xi = 0;

	mvm__kport_release(wref_in(&wm->reply, NULL, from, ctx), ctx);
	for (uint32_t i = 0; i < wm->nports; i++) {
		mvm__kport_release(wref_in(&refs[i], refs[i].kind == MVM_WR_RECEIVE ? &extra[xi] : NULL,
		    from, ctx), ctx);
		if (refs[i].kind == MVM_WR_RECEIVE)
			xi += MVM_WR_EXTRA;
	}
	if (e != NULL && wm->dest.type == MACH_MSG_TYPE_PORT_SEND_ONCE) {
		struct mvm_holder *h = holder(e, from);

		if (h != NULL)
			h->so--;
		export_settle(e, ctx);
	}
}

/* Under the IPC lock. A message to an idle kernel-served set comes back in *sv, for the
 * node thread to serve once it has dropped the lock. */
static void
msg_deliver(const struct mvm_wmsg *wm, struct mvm_kmsg *k, struct mvm_peer *from,
    struct mvm_serve *sv, struct mvm_ctx *ctx)
{
	const struct mvm_wref *refs = (const struct mvm_wref *)(wm + 1);
	const struct mvm_wref *extra = refs + wm->nports;
	struct mvm_export *e = export_find(wm->dest.token);
	uint32_t xi = 0;

	k->dest = NULL;
	k->reply = wref_in(&wm->reply, NULL, from, ctx);
	for (uint32_t i = 0; i < wm->nports; i++) {
		k->ports[i] = wref_in(&refs[i], refs[i].kind == MVM_WR_RECEIVE ? &extra[xi] : NULL,
		    from, ctx);
		if (refs[i].kind == MVM_WR_RECEIVE)
			xi += MVM_WR_EXTRA;
	}
	if (e == NULL || !e->port->active) {
		/* No such port (any more), or a forged token: never delivered; the sender's
		 * proxy learns that the port is dead. */
		queue_ctl(from, MVM_WF_DEATH, wm->dest.token, 0, NULL, ctx);
		if (wm->dest.type == MACH_MSG_TYPE_PORT_SEND_ONCE && e != NULL) {
			struct mvm_holder *h = holder(e, from);

			if (h != NULL)
				h->so--;
			export_settle(e, ctx);
		}
		mvm__kmsg_destroy(k, ctx);
		return;
	}
	k->dest = e->port;
	k->dest_type = wm->dest.type;
	mvm__port_ref(e->port);
	if (wm->dest.type == MACH_MSG_TYPE_PORT_SEND) {
		e->port->srights++;
	} else {
		struct mvm_holder *h = holder(e, from);

		e->port->sorights++;
		if (h != NULL)
			h->so--;
		export_settle(e, ctx); /* may free e: k->dest holds the port */
	}
	node.frames_in++;
	mvm__mq_enqueue_serve(k, sv, true, ctx);
}

static void
ctl_deliver(const struct mvm_wctl *c, struct mvm_peer *from, struct mvm_ctx *ctx)
{
	struct mvm_export *e;
	struct mvm_holder *h;
	struct mvm_remote *r;
	struct mvm_peer *to;

	switch (c->h.type) {
	case MVM_WF_DEATH:
		if ((r = remote_find(from, c->token)) != NULL)
			proxy_dies(r, ctx);
		return;
	case MVM_WF_REGISTER:
		if ((e = export_find(c->token)) == NULL) {
			queue_ctl(from, MVM_WF_DEATH, c->token, 0, NULL, ctx);
			return;
		}
		if ((h = holder(e, from)) != NULL)
			h->registered = true;
		export_settle(e, ctx);
		return;
	default:
		break;
	}
	if ((e = export_find(c->token)) == NULL)
		return; /* the port died: nothing to count */
	switch (c->h.type) {
	case MVM_WF_UNREGISTER:
		if ((h = holder(e, from)) != NULL)
			h->registered = false;
		break;
	case MVM_WF_RELEASE:
		if ((h = holder(e, from)) != NULL)
			/* Wrapping, as the counts are: a hostile n corrupts only the count of
			 * the node that sent it (see "Known limits" in DESIGN.md). */
			h->v = (int64_t)((uint64_t)h->v - c->n);
		break;
	case MVM_WF_XFER:
	case MVM_WF_SOXFER:
		if (c->h.type == MVM_WF_SOXFER && (h = holder(e, from)) != NULL)
			h->so--;
		if (c->pid == node.pid && c->inc == node.inc)
			break; /* to us: the message itself brings the right home */
		to = peer_get(c->pid, c->inc);
		if (to == NULL || to->state == PEER_DEAD) {
			/* A right passed to a node that is gone is destroyed. */
			if (c->h.type == MVM_WF_SOXFER)
				so_destroyed(e->port, ctx);
			break;
		}
		if ((h = holder(e, to)) != NULL) {
			if (c->h.type == MVM_WF_XFER)
				h->v++;
			else
				h->so++;
		}
		break;
	default:
		break;
	}
	export_settle(e, ctx);
}

/* A peer is gone: its proxies die, its rights to our ports are destroyed. */
static void
peer_dies(struct mvm_peer *p, struct mvm_ctx *ctx)
{
	struct mvm_frame *f;

	if (p->state == PEER_DEAD)
		return;
	p->state = PEER_DEAD;
	while ((f = p->qhead) != NULL) {
		p->qhead = f->next;
		/* Frames are freed after the lock goes (their kmsgs own mappings). */
		if (f->kmsg != NULL) {
			f->kmsg->next = ctx->free_kmsgs;
			ctx->free_kmsgs = f->kmsg;
			f->kmsg = NULL;
		}
		mvm__free(f->buf);
		mvm__free(f);
	}
	p->qtail = NULL;
	/* A dying proxy may free others (rights it held): scan again after each. */
	for (unsigned b = 0; b < NODE_HASH; b++) {
		struct mvm_remote *r;

		for (r = node.remotes[b]; r != NULL; r = r->hnext) {
			if (r->owner == p) {
				proxy_dies(r, ctx);
				r = NULL;
				b--; /* this bucket again */
				break;
			}
		}
	}
	for (unsigned b = 0; b < NODE_HASH; b++) {
		struct mvm_export *e = node.exports[b];

		while (e != NULL) {
			struct mvm_export *next = e->hnext;
			struct mvm_holder *h;

			for (h = e->holders; h != NULL; h = h->next) {
				if (h->peer != p)
					continue;
				for (; h->so > 0; h->so--)
					so_destroyed(e->port, ctx);
				h->so = 0;
				h->v = 0;
				h->registered = false;
			}
			export_settle(e, ctx);
			e = next;
		}
	}
	kick(); /* the node thread closes its connections */
}

/*
 * Fix (test_node_ipc, test_node_death): our connection to p failed (hang-up, write
 * error, or no connection back to a peer that connected to us). When p also has a
 * connection to us, what p wrote before it went is still to be read there: its last
 * messages, and the XFER and RELEASE frames that keep the counts of its rights right.
 * Declaring p dead now would let the node thread close that connection unread (losing
 * the messages, and zeroing counts that p's unread XFERs would have moved to a third
 * node: a premature no-senders). So p is declared dead when its own connection ends
 * (conn_lost on it); meanwhile nothing more is written to p.
 */
static bool
peer_has_in(struct mvm_peer *p)
{
	for (struct conn *c = node.conns; c != NULL; c = c->next)
		if (c->kind == CONN_IN && c->peer == p) /* peer is set once its HELLO passed */
			return true;
	return false;
}

static void
peer_out_lost(struct mvm_peer *p, struct mvm_ctx *ctx)
{
	if (p->state == PEER_DEAD)
		return;
	if (!peer_has_in(p)) {
		peer_dies(p, ctx);
		return;
	}
	p->out_lost = true;
}

/* ---- 9. the node thread ------------------------------------------------------------------ */

static struct conn *
conn_new(int fd, int kind, struct mvm_peer *p)
{
	struct conn *c = mvm__calloc(1, sizeof(*c));
	struct epoll_event ev;

	if (c == NULL)
		return NULL;
	c->fd = fd;
	c->kind = kind;
	c->peer = p;
	c->refs = 1;
	memset(&ev, 0, sizeof(ev));
	ev.events = EPOLLIN;
	ev.data.ptr = c;
	if (mvm__epoll_ctl(node.epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
		mvm__free(c);
		return NULL;
	}
	mvm__ipc_lock();
	c->next = node.conns;
	node.conns = c;
	mvm__ipc_unlock();
	return c;
}

static bool
uid_allowed(uid_t uid)
{
	if (uid == getuid())
		return true;
	for (unsigned i = 0; i < node.nallowed; i++)
		if (node.allowed[i] == uid)
			return true;
	return false;
}

static bool
peer_cred_ok(int fd, uint32_t pid)
{
	struct ucred uc;
	unsigned len = sizeof(uc);

	if (mvm__getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &uc, &len) != 0)
		return false;
	return uid_allowed(uc.uid) && (pid == 0 || (uint32_t)uc.pid == pid);
}

static void
sock_path(char *buf, size_t len, uint32_t pid)
{
	/* make_dir() left room for the longest "/p.PID" after the directory. */
	if (snprintf(buf, len, "%s/p.%u", node.dir, pid) >= (int)len)
		buf[0] = '\0';
}

static int
send_hello(int fd, uint64_t want_inc)
{
	struct mvm_whello h;
	struct iovec iov = { &h, sizeof(h) };
	struct msghdr mh;

	memset(&h, 0, sizeof(h));
	h.h.magic = MVM_WIRE_MAGIC;
	h.h.type = MVM_WF_HELLO;
	h.h.len = sizeof(h);
	h.version = MVM_WIRE_VERSION;
	h.pid = node.pid;
	h.inc = node.inc;
	h.want_inc = want_inc;
	memset(&mh, 0, sizeof(mh));
	mh.msg_iov = &iov;
	mh.msg_iovlen = 1;
	return mvm__sendmsg(fd, &mh, 0) == (ssize_t)sizeof(h) ? 0 : -EIO;
}

/* Connect the peers that wait for it (node thread). */
static void
connect_peers(void)
{
	for (;;) {
		struct mvm_peer *p = NULL;
		struct sockaddr_un sa;
		struct mvm_ctx ctx = MVM_CTX_INIT;
		int fd;
		bool ok = false;

		mvm__ipc_lock();
		node.kick_connect = false;
		for (p = node.peers; p != NULL; p = p->next)
			if (p->state == PEER_NEW && p->out == NULL)
				break;
		if (p != NULL)
			p->state = PEER_UP; /* claimed; frames wait until out is set */
		mvm__ipc_unlock();
		if (p == NULL)
			return;
		memset(&sa, 0, sizeof(sa));
		sa.sun_family = AF_UNIX;
		sock_path(sa.sun_path, sizeof(sa.sun_path), p->pid);
		fd = mvm__socket(AF_UNIX, SOCK_SEQPACKET, 0);
		if (fd >= 0 && mvm__connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
		    peer_cred_ok(fd, p->pid) && send_hello(fd, p->inc) == 0) {
			struct conn *c = conn_new(fd, CONN_OUT, p);

			if (c != NULL) {
				mvm__ipc_lock();
				p->out = c;
				mvm__ipc_unlock();
				ok = true;
			}
		}
		if (!ok) {
			if (fd >= 0)
				mvm__close(fd);
			mvm__ipc_lock();
			p->state = PEER_UP; /* so that peer_dies does its work */
			peer_out_lost(p, &ctx);
			mvm__ipc_unlock();
			mvm__ctx_finish(&ctx);
			continue;
		}
		peer_flush(p);
	}
}

static void
conn_close(struct conn *c)
{
	struct conn **pp;

	(void)mvm__epoll_ctl(node.epfd, EPOLL_CTL_DEL, c->fd, NULL);
	mvm__ipc_lock();
	for (pp = &node.conns; *pp != NULL && *pp != c; pp = &(*pp)->next)
		;
	if (*pp != NULL)
		*pp = c->next;
	if (c->peer != NULL && c->peer->out == c)
		c->peer->out = NULL;
	/* A writer may still use the descriptor: it is closed when the last user goes. */
	bool busy = c->refs > 1;
	c->refs--;
	mvm__ipc_unlock();
	if (busy) {
		/* Rare: wait for the writer to finish its one sendmsg. */
		for (;;) {
			mvm__ipc_lock();
			bool done = c->refs == 0;
			mvm__ipc_unlock();
			if (done)
				break;
			sched_yield();
		}
	}
	mvm__close(c->fd);
	/*
	 * Fix (test_node_death under TSan: heap-use-after-free in node_main): the current
	 * epoll batch may still hold an event for c (reap_dead closes the connections of a
	 * peer whose events come later in the batch). node_main frees it after the batch
	 * and skips the events of closed connections.
	 */
	c->closed = true;
	c->next = node.closed_conns;
	node.closed_conns = c;
}

static void
conn_lost(struct conn *c)
{
	struct mvm_ctx ctx = MVM_CTX_INIT;

	if (c->peer != NULL) {
		mvm__ipc_lock();
		if (c->kind == CONN_IN)
			peer_dies(c->peer, &ctx); /* all it wrote has been read */
		else
			peer_out_lost(c->peer, &ctx);
		mvm__ipc_unlock();
		mvm__ctx_finish(&ctx);
	}
	conn_close(c);
}

/* Close the connections of dead peers (node thread). */
static void
reap_dead(void)
{
	for (;;) {
		struct conn *c;

		mvm__ipc_lock();
		for (c = node.conns; c != NULL; c = c->next)
			if (c->peer != NULL && c->peer->state == PEER_DEAD)
				break;
		mvm__ipc_unlock();
		if (c == NULL)
			return;
		conn_close(c);
	}
}

#define RX_MAX (MVM_WIRE_INLINE_MAX + 4096)

/* Read one frame from c; false when the connection is finished. */
static bool
conn_read(struct conn *c, uint8_t *rx)
{
	union {
		char buf[CMSG_SPACE(sizeof(int) * (MVM_WIRE_FDS_MAX + 1))];
		struct cmsghdr align;
	} cm;
	struct iovec iov = { rx, RX_MAX };
	struct msghdr mh;
	int fds[MVM_WIRE_FDS_MAX + 1];
	unsigned nfds = 0;
	ssize_t n;
	const uint8_t *frame = rx;
	size_t flen;
	void *bigmap = NULL;
	size_t biglen = 0;
	bool keep = true;
	struct mvm_whdr h;

	memset(&mh, 0, sizeof(mh));
	mh.msg_iov = &iov;
	mh.msg_iovlen = 1;
	mh.msg_control = cm.buf;
	mh.msg_controllen = sizeof(cm.buf);
	n = mvm__recvmsg(c->fd, &mh, MSG_DONTWAIT);
	if (n == -EAGAIN)
		return true;
	for (struct cmsghdr *cmh = CMSG_FIRSTHDR(&mh); cmh != NULL; cmh = CMSG_NXTHDR(&mh, cmh)) {
		if (cmh->cmsg_level == SOL_SOCKET && cmh->cmsg_type == SCM_RIGHTS) {
			unsigned k = (unsigned)((cmh->cmsg_len - CMSG_LEN(0)) / sizeof(int));

			for (unsigned i = 0; i < k && nfds < MVM_WIRE_FDS_MAX + 1; i++)
				memcpy(&fds[nfds++], CMSG_DATA(cmh) + i * sizeof(int), sizeof(int));
		}
	}
	if (n <= 0 || (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) || (size_t)n < sizeof(h)) {
		keep = false;
		goto out;
	}
	memcpy(&h, rx, sizeof(h));
	if (h.magic != MVM_WIRE_MAGIC || h.nfds != nfds) {
		keep = false;
		goto out;
	}
	flen = (size_t)n;
	if (h.flags & MVM_WF_BIG) {
		int err;

		if (nfds < 1 || h.len > MVM_WIRE_FRAME_MAX || h.len < sizeof(h)) {
			keep = false;
			goto out;
		}
		{
			struct stat st;
			int seals = mvm__fcntl(fds[0], F_GET_SEALS, 0);

			if (seals < 0 || !(seals & F_SEAL_WRITE) || mvm__fstat(fds[0], &st) != 0 ||
			    (uint64_t)st.st_size < h.len) {
				keep = false;
				goto out;
			}
		}
		biglen = h.len;
		if ((bigmap = mvm__mmap(NULL, biglen, PROT_READ, MAP_PRIVATE, fds[0], 0, &err)) == NULL) {
			keep = false;
			goto out;
		}
		frame = bigmap;
		flen = biglen;
		memcpy(&h, frame, sizeof(h));
		h.nfds = nfds;
	} else if (h.len != flen) {
		keep = false;
		goto out;
	}
	if (!c->hello) {
		struct mvm_whello hello;
		struct mvm_peer *p;

		if (h.type != MVM_WF_HELLO || flen != sizeof(hello)) {
			keep = false;
			goto out;
		}
		memcpy(&hello, frame, sizeof(hello));
		if (hello.version != MVM_WIRE_VERSION) {
			keep = false;
			goto out;
		}
		if (c->kind == CONN_OUT) {
			/* The reply to our HELLO: the incarnation must be the one we meant. */
			if (hello.pid != c->peer->pid || hello.inc != c->peer->inc) {
				keep = false;
				goto out;
			}
			c->hello = true;
			goto out;
		}
		/* An accepted connection: who is it, and is it for us (not an old self)? */
		if (!peer_cred_ok(c->fd, hello.pid) || hello.want_inc != node.inc) {
			keep = false;
			goto out;
		}
		mvm__ipc_lock();
		p = peer_get(hello.pid, hello.inc);
		if (p != NULL)
			c->peer = p;
		mvm__ipc_unlock();
		if (p == NULL || p->state == PEER_DEAD || send_hello(c->fd, 0) != 0) {
			keep = false;
			goto out;
		}
		c->hello = true;
		kick(); /* a new peer to connect back to */
		goto out;
	}
	if (c->kind == CONN_OUT) {
		keep = false; /* nothing but the HELLO reply comes back on our connection */
		goto out;
	}
	/*
	 * Fix (test_node_forge): a peer declared dead has had its rights destroyed and its
	 * counts zeroed; a frame from it now (on a second connection, or after we gave up on
	 * it) would count again (a RELEASE driving a count negative keeps the port's
	 * no-senders from ever coming) or deliver a message from an incarnation that is over.
	 */
	mvm__ipc_lock();
	bool from_dead = c->peer->state == PEER_DEAD;
	mvm__ipc_unlock();
	if (from_dead) {
		keep = false;
		goto out;
	}
	switch (h.type) {
	case MVM_WF_MSG: {
		struct mvm_ctx ctx = MVM_CTX_INIT;
		struct mvm_serve sv = { NULL, NULL, MACH_MSG_SUCCESS };
		struct mvm_kmsg *k;
		const int *ofds = fds + ((h.flags & MVM_WF_BIG) ? 1 : 0);
		unsigned onfds = nfds - ((h.flags & MVM_WF_BIG) ? 1 : 0);

		if (mvm__wire_check_msg(frame, flen, (h.flags & MVM_WF_BIG) ? nfds : onfds) !=
		    MACH_MSG_SUCCESS) {
			keep = false;
			goto out;
		}
		if ((h.flags & MVM_WF_BIG)) {
			/* Descriptor indices count the frame's own memfd as 0. */
			ofds = fds;
			onfds = nfds;
		}
		k = msg_build(frame, flen, ofds, onfds);
		mvm__ipc_lock();
		if (k != NULL)
			msg_deliver((const void *)frame, k, c->peer, &sv, &ctx);
		else
			msg_drop((const void *)frame, c->peer, &ctx);
		node.bytes_in += flen;
		mvm__ipc_unlock();
		mvm__ctx_finish(&ctx);
		mvm__serve(&sv);
		break;
	}
	case MVM_WF_REGISTER:
	case MVM_WF_UNREGISTER:
	case MVM_WF_RELEASE:
	case MVM_WF_XFER:
	case MVM_WF_SOXFER:
	case MVM_WF_DEATH: {
		struct mvm_ctx ctx = MVM_CTX_INIT;
		struct mvm_wctl ctl;

		if (flen != sizeof(ctl)) {
			keep = false;
			goto out;
		}
		memcpy(&ctl, frame, sizeof(ctl));
		mvm__ipc_lock();
		ctl_deliver(&ctl, c->peer, &ctx);
		mvm__ipc_unlock();
		mvm__ctx_finish(&ctx);
		break;
	}
	default:
		keep = false;
		break;
	}
out:
	if (bigmap != NULL)
		(void)mvm__munmap(bigmap, biglen);
	for (unsigned i = 0; i < nfds; i++)
		mvm__close(fds[i]);
	(void)token_zero;
	return keep;
}

/* Drop proxies idle for IDLE_MS (node thread). */
static void
expire_idle(void)
{
	uint64_t now = now_ms();
	bool any = false;

	mvm__ipc_lock();
	while (node.idle_head != NULL && now - node.idle_head->idle_since >= IDLE_MS) {
		idle_evict(node.idle_head);
		any = true;
	}
	mvm__ipc_unlock();
	if (any)
		mvm__node_flush();
}

static void *
node_main(void *arg)
{
	uint8_t *rx = mvm__malloc(RX_MAX);

	(void)arg;
	if (rx == NULL)
		return NULL;
	for (;;) {
		struct epoll_event ev[16];
		int n = mvm__epoll_wait(node.epfd, ev, 16, mvm__node_idle_proxies() > 0 ? IDLE_MS / 2 : -1);

		expire_idle();

		for (int i = 0; i < n; i++) {
			struct conn *c = ev[i].data.ptr;

			if (c->closed)
				continue; /* closed earlier in this batch */
			switch (c->kind) {
			case CONN_LISTEN: {
				int fd = mvm__accept(c->fd);

				if (fd >= 0) {
					(void)mvm__fcntl(fd, F_SETFL, O_NONBLOCK);
					if (conn_new(fd, CONN_IN, NULL) == NULL)
						mvm__close(fd);
				}
				break;
			}
			case CONN_EVENT: {
				uint64_t v;

				(void)mvm__read(c->fd, &v, sizeof(v));
				connect_peers();
				reap_dead();
				/* Frames queued where no context could carry the flush (a proxy freed
				 * by mvm__port_release queues its UNREGISTER). */
				mvm__node_flush();
				/* Peers whose socket was full: wait for room. */
				mvm__ipc_lock();
				for (struct mvm_peer *p = node.peers; p != NULL; p = p->next) {
					if (p->blocked && p->out != NULL) {
						struct epoll_event e2 = { .events = EPOLLIN | EPOLLOUT,
						    .data.ptr = p->out };

						(void)mvm__epoll_ctl(node.epfd, EPOLL_CTL_MOD, p->out->fd, &e2);
					}
				}
				mvm__ipc_unlock();
				break;
			}
			case CONN_OUT:
				if (ev[i].events & EPOLLOUT) {
					struct epoll_event e2 = { .events = EPOLLIN, .data.ptr = c };

					(void)mvm__epoll_ctl(node.epfd, EPOLL_CTL_MOD, c->fd, &e2);
					mvm__ipc_lock();
					c->peer->blocked = false;
					mvm__ipc_unlock();
					peer_flush(c->peer);
				}
				if (ev[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
					if ((ev[i].events & EPOLLIN) && conn_read(c, rx) &&
					    !(ev[i].events & (EPOLLHUP | EPOLLERR)))
						break;
					conn_lost(c);
				}
				break;
			case CONN_IN:
				if (!conn_read(c, rx))
					conn_lost(c);
				break;
			default:
				break;
			}
		}
		while (node.closed_conns != NULL) {
			struct conn *c = node.closed_conns;

			node.closed_conns = c->next;
			mvm__free(c);
		}
	}
	return NULL;
}

/* ---- 10. starting ---------------------------------------------------------------------- */

static kern_return_t
make_dir(char *dir, size_t len)
{
	const char *env = getenv("MACHVM_RUNTIME_DIR");
	const char *xdg = getenv("XDG_RUNTIME_DIR");
	struct stat st;
	int fd, r;

	if (env != NULL && env[0] != '\0')
		snprintf(dir, len, "%s", env);
	else if (xdg != NULL && xdg[0] != '\0')
		snprintf(dir, len, "%s/machvm", xdg);
	else
		snprintf(dir, len, "/tmp/machvm-%u", (unsigned)getuid());
	if (strlen(dir) + 16 >= len)
		return KERN_INVALID_ARGUMENT;
	r = mvm__mkdir(dir, 0700);
	if (r != 0 && r != -EEXIST)
		return mvm__kr_from_errno(-r);
	/* It must be ours and closed to others: the sockets in it are capabilities. */
	if ((fd = mvm__open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW, 0)) < 0)
		return mvm__kr_from_errno(-fd);
	r = mvm__fstat(fd, &st);
	mvm__close(fd);
	if (r != 0 || st.st_uid != getuid() || (st.st_mode & 0077) != 0)
		return KERN_NO_ACCESS;
	return KERN_SUCCESS;
}

/*
 * A child forked by a process whose node had started must not speak for the parent: it
 * closes every descriptor of the node (so that the parent's peers see the parent's
 * death, not a child holding its sockets) and can never start a node of its own (its
 * space still holds the parent's proxies; they behave as dead). Runs single-threaded.
 */
static void
node_atfork_child(void)
{
	for (struct conn *c = node.conns; c != NULL; c = c->next)
		(void)close(c->fd);
	node.conns = NULL;
	for (struct mvm_peer *p = node.peers; p != NULL; p = p->next) {
		p->state = PEER_DEAD;
		p->out = NULL;
		p->qhead = p->qtail = NULL;   /* their memory is the parent's business now */
		p->writing = false;
	}
	node.listen_fd = node.epfd = node.evfd = -1;
	node.started = false;
	node.start_error = KERN_FAILURE;
}

static void
node_start_once(void)
{
	struct sockaddr_un sa;
	kern_return_t kr;
	int r;

	mvm__ipc_init();
	node.pid = (uint32_t)getpid();
	if (mvm__getrandom(&node.inc, sizeof(node.inc)) != 0 || node.inc == 0) {
		node.start_error = KERN_FAILURE;
		return;
	}
	if ((kr = make_dir(node.dir, sizeof(node.dir))) != KERN_SUCCESS) {
		node.start_error = kr;
		return;
	}
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	sock_path(sa.sun_path, sizeof(sa.sun_path), node.pid);
	if ((node.listen_fd = mvm__socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK, 0)) < 0) {
		node.start_error = mvm__kr_from_errno(-node.listen_fd);
		return;
	}
	/* A socket left by a dead process that had our pid is stale: ours now. */
	(void)mvm__unlink(sa.sun_path);
	if ((r = mvm__bind(node.listen_fd, (struct sockaddr *)&sa, sizeof(sa))) != 0 ||
	    (r = mvm__listen(node.listen_fd, 128)) != 0 ||
	    (r = node.epfd = mvm__epoll_create()) < 0 || (r = node.evfd = mvm__eventfd()) < 0) {
		node.start_error = mvm__kr_from_errno(-r);
		return;
	}
	if (conn_new(node.listen_fd, CONN_LISTEN, NULL) == NULL ||
	    conn_new(node.evfd, CONN_EVENT, NULL) == NULL) {
		node.start_error = KERN_RESOURCE_SHORTAGE;
		return;
	}
	/* Its connections and its thread live as long as the process. */
	if (mvm__thread_start(&node.thread, node_main, NULL) != 0) {
		node.start_error = KERN_RESOURCE_SHORTAGE;
		return;
	}
	pthread_detach(node.thread);
	(void)pthread_atfork(NULL, NULL, node_atfork_child);
	mvm__ipc_lock();
	node.started = true;
	mvm__ipc_unlock();
}

kern_return_t
mvm_node_start(void)
{
	pthread_once(&node.once, node_start_once);
	return node.started ? KERN_SUCCESS : (node.start_error ? node.start_error : KERN_FAILURE);
}

kern_return_t
mvm_node_allow_uid(uid_t uid)
{
	kern_return_t kr = KERN_SUCCESS;

	mvm__ipc_init();
	mvm__ipc_lock();
	if (uid_allowed(uid))
		;
	else if (node.nallowed >= sizeof(node.allowed) / sizeof(node.allowed[0]))
		kr = KERN_RESOURCE_SHORTAGE;
	else
		node.allowed[node.nallowed++] = uid;
	mvm__ipc_unlock();
	return kr;
}

const char *
mvm_node_runtime_dir(void)
{
	return node.started ? node.dir : NULL;
}

kern_return_t
mvm_node_stats(struct mvm_node_stats *st)
{
	if (st == NULL)
		return KERN_INVALID_ARGUMENT;
	memset(st, 0, sizeof(*st));
	mvm__ipc_init();
	mvm__ipc_lock();
	st->pid = node.pid;
	st->incarnation = node.inc;
	for (struct mvm_peer *p = node.peers; p != NULL; p = p->next) {
		if (p->state == PEER_DEAD)
			st->peers_dead++;
		else
			st->peers++;
	}
	for (unsigned b = 0; b < NODE_HASH; b++) {
		for (struct mvm_export *e = node.exports[b]; e != NULL; e = e->hnext)
			st->exports++;
		for (struct mvm_remote *r = node.remotes[b]; r != NULL; r = r->hnext)
			if (r->idle)
				st->proxies_idle++;
			else
				st->proxies++;
	}
	st->frames_out = node.frames_out;
	st->frames_in = node.frames_in;
	st->bytes_out = node.bytes_out;
	st->bytes_in = node.bytes_in;
	mvm__ipc_unlock();
	return KERN_SUCCESS;
}

kern_return_t
mvm__node_proxy_for(uint32_t pid, uint64_t inc, const uint8_t token[16], mach_port_t *name)
{
	struct mvm_ctx ctx = MVM_CTX_INIT;
	struct mvm_peer *p;
	struct mvm_port *port;
	kern_return_t kr = KERN_SUCCESS;

	if (pid == node.pid && inc == node.inc) {
		/* Our own port: a send right to it, made locally. */
		struct mvm_export *e;

		mvm__ipc_lock();
		e = export_find(token);
		if (e == NULL || !e->port->active) {
			mvm__ipc_unlock();
			return KERN_INVALID_NAME;
		}
		mvm__port_ref(e->port);
		e->port->srights++;
		*name = mvm__right_copyout((struct mvm_kport){ e->port, MACH_MSG_TYPE_PORT_SEND }, &ctx);
		mvm__ipc_unlock();
		mvm__ctx_finish(&ctx);
		return *name == MACH_PORT_NULL ? KERN_RESOURCE_SHORTAGE : KERN_SUCCESS;
	}
	mvm__ipc_lock();
	if ((p = peer_get(pid, inc)) == NULL) {
		mvm__ipc_unlock();
		return KERN_RESOURCE_SHORTAGE;
	}
	port = proxy_get(p, token, &ctx);
	if (port == NULL) {
		kr = KERN_RESOURCE_SHORTAGE;
	} else if (port == MVM_PORT_DEAD) {
		kr = KERN_INVALID_NAME;
	} else {
		/* A right without credits: the owner never counted it, so it is never given
		 * back (the look-up port is permanent). */
		port->srights++;
		*name = mvm__right_copyout((struct mvm_kport){ port, MACH_MSG_TYPE_PORT_SEND }, &ctx);
		if (*name == MACH_PORT_NULL)
			kr = KERN_RESOURCE_SHORTAGE;
	}
	mvm__ipc_unlock();
	mvm__ctx_finish(&ctx);
	mvm__node_flush();
	kick();
	return kr;
}

kern_return_t
mvm__node_export_name(mach_port_t name, uint8_t token[16])
{
	uint32_t idx;
	struct mvm_entry *ent;
	struct mvm_export *e;

	mvm__ipc_lock();
	idx = mvm__entry_lookup(name);
	if (idx == MVM_NO_ENTRY || !((ent = mvm__entry(idx))->type & MACH_PORT_TYPE_RECEIVE)) {
		mvm__ipc_unlock();
		return KERN_INVALID_RIGHT;
	}
	if ((e = export_make(ent->obj.port, NULL)) == NULL) {
		mvm__ipc_unlock();
		return KERN_RESOURCE_SHORTAGE;
	}
	e->permanent = true;
	memcpy(token, e->token, 16);
	mvm__ipc_unlock();
	return KERN_SUCCESS;
}

/* ---- 11. frames from nowhere (fuzzing) -------------------------------------------------- */

bool
mvm__node_inject_frame(const void *buf, size_t len, uint32_t pid, uint64_t inc)
{
	struct mvm_ctx ctx = MVM_CTX_INIT;
	struct mvm_peer *from;
	struct mvm_whdr h;
	bool ok = true;

	mvm__ipc_init();
	if (len < sizeof(h))
		return false;
	memcpy(&h, buf, sizeof(h));
	if (h.magic != MVM_WIRE_MAGIC || h.len != len || (h.flags & MVM_WF_BIG))
		return false;
	mvm__ipc_lock();
	from = peer_get(pid, inc);
	mvm__ipc_unlock();
	if (from == NULL)
		return false;
	if (h.type == MVM_WF_MSG) {
		struct mvm_kmsg *k;

		if (mvm__wire_check_msg(buf, len, 0) != MACH_MSG_SUCCESS)
			return false;
		k = msg_build(buf, len, NULL, 0);
		mvm__ipc_lock();
		if (k != NULL)
			msg_deliver(buf, k, from, NULL, &ctx);
		else
			msg_drop(buf, from, &ctx);
		mvm__ipc_unlock();
	} else if (h.type >= MVM_WF_REGISTER && h.type <= MVM_WF_DEATH && len == sizeof(struct mvm_wctl)) {
		struct mvm_wctl c;

		memcpy(&c, buf, sizeof(c));
		mvm__ipc_lock();
		ctl_deliver(&c, from, &ctx);
		mvm__ipc_unlock();
	} else {
		ok = false;
	}
	mvm__ctx_finish(&ctx);
	return ok;
}

void
mvm__node_forget_peers(void)
{
	struct mvm_ctx ctx = MVM_CTX_INIT;

	mvm__ipc_init();
	mvm__ipc_lock();
	for (struct mvm_peer *p = node.peers; p != NULL; p = p->next)
		peer_dies(p, &ctx);
	/* Nothing refers to a dead peer any more (proxies died, holders were dropped),
	 * unless a connection does: keep those. */
	for (struct mvm_peer **pp = &node.peers; *pp != NULL;) {
		struct mvm_peer *p = *pp;
		bool used = false;

		for (struct conn *c = node.conns; c != NULL; c = c->next)
			used |= c->peer == p;
		if (used) {
			pp = &p->next;
			continue;
		}
		*pp = p->next;
		mvm__free(p);
	}
	mvm__ipc_unlock();
	mvm__ctx_finish(&ctx);
}
