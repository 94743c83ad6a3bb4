/*
 * src/ipc/netname.c: the Mach network name service for the processes of one host.
 *
 * No central server. A process that checks in NAME creates (or takes over) the file
 * n.NAME in the node's runtime directory, holds an open-file-description write lock on it
 * for as long as the name is checked in, and writes there its node identity (pid,
 * incarnation) and the token of its look-up port. The lock is the liveness test: the
 * kernel drops it when the process dies, so a file nobody holds names nothing, and the
 * next check-in of NAME takes it over. A look-up reads the file, checks that it is held,
 * and asks the owner's look-up port (an ordinary Mach RPC across processes) for the send
 * right; the owner's node counts it like any right it sends.
 *
 * Locking: nn.lock (rank MVM_LOCKRANK_NETNAME) protects the table of names this process
 * checked in; it is held across the file operations of a check-in so that two threads
 * checking in one name are ordered, never across a message receive.
 * Thread safety: every function may be called from any thread.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mach/mach.h>
#include <mach/netname.h>
#include <machvm/node.h>
#include "ipc/ipc.h"
#include "ipc/node.h"
#include "lib/lock.h"
#include "sys/sys.h"

#define NN_LOOKUP_ID 1041             /* netname.defs: look_up is routine 1 of base 1040 */
#define NN_LOOKUP_TIMEOUT_MS 10000

struct nn_entry {
	struct nn_entry *next;
	char name[sizeof(netname_name_t)];
	mach_port_t port;                 /* our own send right (a user reference) */
	mach_port_t signature;
	int fd;                           /* n.NAME, write-locked */
};

static struct {
	pthread_once_t once;
	struct mvm_lock lock;
	struct nn_entry *names;           /* (nn.lock) */
	mach_port_t service;              /* (c) look-up port, once made */
	uint8_t token[16];                /* (c) its token */
	kern_return_t service_error;
} nn = { .once = PTHREAD_ONCE_INIT };

struct nn_request {
	mach_msg_header_t head;
	mach_msg_type_t name_type;
	char name[sizeof(netname_name_t)];
};

struct nn_reply {
	mach_msg_header_t head;
	mach_msg_type_t ret_type;
	kern_return_t ret;
	uint32_t pad;
	mach_msg_type_t port_type;
	mach_port_t port;
	uint32_t pad2;
};

static void
set_type(mach_msg_type_t *t, unsigned name, unsigned size, unsigned number)
{
	memset(t, 0, sizeof(*t));
	t->msgt_name = name;
	t->msgt_size = size;
	t->msgt_number = number;
	t->msgt_inline = 1;
}

static bool
name_ok(const char *name)
{
	size_t n;

	if (name == NULL || name[0] == '\0' || name[0] == '.')
		return false;
	n = strnlen(name, sizeof(netname_name_t));
	if (n >= sizeof(netname_name_t))
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = name[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		    c == '.' || c == '_' || c == '-' || c == '+' || c == '@' || c == ':'))
			return false;
	}
	return true;
}

static void
name_path(char *buf, size_t len, const char *name)
{
	snprintf(buf, len, "%s/n.%s", mvm__node_dir(), name);
}

static struct nn_entry *
find(const char *name)
{
	for (struct nn_entry *e = nn.names; e != NULL; e = e->next)
		if (strcmp(e->name, name) == 0)
			return e;
	return NULL;
}

/* ---- the look-up port --------------------------------------------------------- */

static void *
service_main(void *arg)
{
	union {
		struct nn_request req;
		char buf[512];
	} in;

	(void)arg;
	for (;;) {
		struct nn_reply rep;
		struct nn_entry *e;
		mach_msg_return_t mr;

		mr = mach_msg(&in.req.head, MACH_RCV_MSG, 0, sizeof(in), nn.service,
		    MACH_MSG_TIMEOUT_NONE, MACH_PORT_NULL);
		if (mr != MACH_MSG_SUCCESS)
			continue;
		memset(&rep, 0, sizeof(rep));
		rep.head.msgh_remote_port = in.req.head.msgh_remote_port;
		rep.head.msgh_id = in.req.head.msgh_id + 100;
		set_type(&rep.ret_type, MACH_MSG_TYPE_INTEGER_32, 32, 1);
		set_type(&rep.port_type, MACH_MSG_TYPE_COPY_SEND, 32, 1);
		rep.ret = NETNAME_NOT_CHECKED_IN;
		if (in.req.head.msgh_id != NN_LOOKUP_ID ||
		    in.req.head.msgh_size != sizeof(struct nn_request) ||
		    (in.req.head.msgh_bits & MACH_MSGH_BITS_COMPLEX)) {
			rep.ret = MIG_BAD_ARGUMENTS;
		} else {
			in.req.name[sizeof(in.req.name) - 1] = '\0';
			/* A reference of our own, taken under nn.lock (a check-out may drop the
			 * entry's as soon as it is released), moves with the reply: no message
			 * is sent and no right freed under nn.lock (lock order: freeing a right
			 * may free memory under vm_regions). */
			mvm_lock_acquire(&nn.lock);
			if ((e = find(in.req.name)) != NULL &&
			    mach_port_mod_refs(mach_task_self(), e->port, MACH_PORT_RIGHT_SEND, 1) ==
			    KERN_SUCCESS) {
				rep.ret = NETNAME_SUCCESS;
				rep.port = e->port;
			}
			mvm_lock_release(&nn.lock);
			rep.head.msgh_bits = MACH_MSGH_BITS(MACH_MSGH_BITS_REMOTE(in.req.head.msgh_bits), 0) |
			    MACH_MSGH_BITS_COMPLEX;
			rep.head.msgh_size = sizeof(rep);
			if (rep.ret == NETNAME_SUCCESS)
				set_type(&rep.port_type, MACH_MSG_TYPE_MOVE_SEND, 32, 1);
			else
				rep.port = MACH_PORT_NULL;
			mr = mach_msg(&rep.head, MACH_SEND_MSG | MACH_SEND_TIMEOUT, sizeof(rep), 0,
			    MACH_PORT_NULL, 0, MACH_PORT_NULL);
			if (mr != MACH_MSG_SUCCESS)
				mach_msg_destroy(&rep.head);
			continue;
		}
		rep.head.msgh_bits = MACH_MSGH_BITS(MACH_MSGH_BITS_REMOTE(in.req.head.msgh_bits), 0) |
		    MACH_MSGH_BITS_COMPLEX;
		rep.head.msgh_size = sizeof(rep);
		rep.port = MACH_PORT_NULL;
		if (mach_msg(&rep.head, MACH_SEND_MSG | MACH_SEND_TIMEOUT, sizeof(rep), 0,
		    MACH_PORT_NULL, 0, MACH_PORT_NULL) != MACH_MSG_SUCCESS)
			mach_msg_destroy(&in.req.head);
	}
	return NULL;
}

static void
service_once(void)
{
	pthread_t t;
	kern_return_t kr;

	mvm_lock_init(&nn.lock, MVM_LOCKRANK_NETNAME, "netname");
	if ((kr = mvm_node_start()) != KERN_SUCCESS) {
		nn.service_error = kr;
		return;
	}
	if ((kr = mach_port_allocate(mach_task_self(), MACH_PORT_RIGHT_RECEIVE, &nn.service)) != 0 ||
	    (kr = mvm__node_export_name(nn.service, nn.token)) != 0) {
		nn.service_error = kr;
		return;
	}
	if (mvm__thread_start(&t, service_main, NULL) != 0) {
		nn.service_error = KERN_RESOURCE_SHORTAGE;
		return;
	}
	pthread_detach(t);
	mvm__ipc_reserve(1, 1, 0); /* the look-up port lives as long as the process */
}

static kern_return_t
service_start(void)
{
	pthread_once(&nn.once, service_once);
	return nn.service_error;
}

/* ---- the three calls ---------------------------------------------------------- */

static bool
host_is_local(const char *host)
{
	return host == NULL || host[0] == '\0' || strcmp(host, "localhost") == 0;
}

kern_return_t
netname_check_in(mach_port_t server_port, const char *port_name, mach_port_t signature,
    mach_port_t port_id)
{
	char path[160], text[128];
	struct nn_entry *e, *old;
	mach_port_type_t type;
	struct flock fl;
	kern_return_t kr;
	int fd, n;

	if (server_port != MACH_PORT_NULL)
		return NETNAME_NO_SUCH_HOST;
	if (!name_ok(port_name))
		return KERN_INVALID_ARGUMENT;
	if ((kr = service_start()) != KERN_SUCCESS)
		return kr;
	if (mach_port_type(mach_task_self(), port_id, &type) != KERN_SUCCESS ||
	    !(type & (MACH_PORT_TYPE_SEND | MACH_PORT_TYPE_RECEIVE)))
		return NETNAME_INVALID_PORT;
	mvm_lock_acquire(&nn.lock);
	old = find(port_name);
	if (old != NULL && old->signature != signature) {
		mvm_lock_release(&nn.lock);
		return NETNAME_NOT_YOURS;
	}
	/* Our own send right: a reference of the caller's right, or one made from its
	 * receive right. */
	if (type & MACH_PORT_TYPE_SEND)
		kr = mach_port_mod_refs(mach_task_self(), port_id, MACH_PORT_RIGHT_SEND, 1);
	else
		kr = mach_port_insert_right(mach_task_self(), port_id, port_id, MACH_MSG_TYPE_MAKE_SEND);
	if (kr != KERN_SUCCESS) {
		mvm_lock_release(&nn.lock);
		return kr;
	}
	if (old != NULL) {
		/* Checked in again by its owner: the new right replaces the old one (dropped
		 * once nn.lock is released: no right is freed under it). */
		mach_port_t prev = old->port;

		old->port = port_id;
		mvm_lock_release(&nn.lock);
		(void)mach_port_deallocate(mach_task_self(), prev);
		return NETNAME_SUCCESS;
	}
	name_path(path, sizeof(path), port_name);
	if ((e = mvm__calloc(1, sizeof(*e))) == NULL) {
		kr = KERN_RESOURCE_SHORTAGE;
		goto fail;
	}
	if ((fd = mvm__open(path, O_RDWR | O_CREAT | O_NOFOLLOW, 0600)) < 0) {
		kr = mvm__kr_from_errno(-fd);
		goto fail;
	}
	memset(&fl, 0, sizeof(fl));
	fl.l_type = F_WRLCK;
	fl.l_whence = SEEK_SET;
	if ((n = mvm__fcntl(fd, F_OFD_SETLK, (long)&fl)) != 0) {
		mvm__close(fd);
		kr = (n == -EAGAIN || n == -EACCES) ? NETNAME_NOT_YOURS : mvm__kr_from_errno(-n);
		goto fail;
	}
	n = snprintf(text, sizeof(text), "machvm-netname 1 %u %016llx ", mvm__node_pid(),
	    (unsigned long long)mvm__node_inc());
	for (int i = 0; i < 16; i++)
		n += snprintf(text + n, sizeof(text) - (size_t)n, "%02x", nn.token[i]);
	n += snprintf(text + n, sizeof(text) - (size_t)n, "\n");
	if (mvm__ftruncate(fd, 0) != 0 || mvm__pwrite(fd, text, (size_t)n, 0) != n) {
		mvm__close(fd);
		kr = KERN_FAILURE;
		goto fail;
	}
	snprintf(e->name, sizeof(e->name), "%s", port_name);
	e->port = port_id;
	e->signature = signature;
	e->fd = fd;
	e->next = nn.names;
	nn.names = e;
	mvm_lock_release(&nn.lock);
	return NETNAME_SUCCESS;
fail:
	mvm_lock_release(&nn.lock);
	mvm__free(e);
	(void)mach_port_deallocate(mach_task_self(), port_id);
	return kr;
}

kern_return_t
netname_check_out(mach_port_t server_port, const char *port_name, mach_port_t signature)
{
	struct nn_entry **pp, *e;
	char path[160];

	if (server_port != MACH_PORT_NULL)
		return NETNAME_NO_SUCH_HOST;
	if (!name_ok(port_name))
		return KERN_INVALID_ARGUMENT;
	if (service_start() != KERN_SUCCESS)
		return NETNAME_NOT_CHECKED_IN;
	mvm_lock_acquire(&nn.lock);
	for (pp = &nn.names; (e = *pp) != NULL; pp = &e->next)
		if (strcmp(e->name, port_name) == 0)
			break;
	if (e == NULL) {
		mvm_lock_release(&nn.lock);
		return NETNAME_NOT_CHECKED_IN;
	}
	if (e->signature != signature) {
		mvm_lock_release(&nn.lock);
		return NETNAME_NOT_YOURS;
	}
	*pp = e->next;
	name_path(path, sizeof(path), port_name);
	(void)mvm__unlink(path); /* while still locked: nobody took it over */
	mvm__close(e->fd);
	mvm_lock_release(&nn.lock);
	(void)mach_port_deallocate(mach_task_self(), e->port);
	mvm__free(e);
	return NETNAME_SUCCESS;
}

/* Read n.NAME: the owner's identity and look-up token, if a live process holds it. */
static kern_return_t
read_name(const char *name, uint32_t *pid, uint64_t *inc, uint8_t token[16])
{
	char path[160], text[129], hex[33];
	unsigned long long ull;
	struct flock fl;
	unsigned upid;
	ssize_t n;
	int fd;

	name_path(path, sizeof(path), name);
	if ((fd = mvm__open(path, O_RDONLY | O_NOFOLLOW, 0)) < 0)
		return NETNAME_NOT_CHECKED_IN;
	memset(&fl, 0, sizeof(fl));
	fl.l_type = F_WRLCK;
	fl.l_whence = SEEK_SET;
	if (mvm__fcntl(fd, F_OFD_GETLK, (long)&fl) != 0 || fl.l_type == F_UNLCK) {
		mvm__close(fd); /* left by a process that died: names nothing */
		return NETNAME_NOT_CHECKED_IN;
	}
	n = mvm__pread(fd, text, sizeof(text) - 1, 0);
	mvm__close(fd);
	if (n <= 0)
		return NETNAME_NOT_CHECKED_IN;
	text[n] = '\0';
	if (sscanf(text, "machvm-netname 1 %u %llx %32s", &upid, &ull, hex) != 3 ||
	    strlen(hex) != 32)
		return NETNAME_NOT_CHECKED_IN;
	for (int i = 0; i < 16; i++) {
		unsigned b;

		if (sscanf(hex + 2 * i, "%2x", &b) != 1)
			return NETNAME_NOT_CHECKED_IN;
		token[i] = (uint8_t)b;
	}
	*pid = upid;
	*inc = ull;
	return KERN_SUCCESS;
}

kern_return_t
netname_look_up(mach_port_t server_port, const char *host_name, const char *port_name,
    mach_port_t *port_id)
{
	union {
		struct nn_request req;
		struct nn_reply rep;
		char buf[512];
	} m;
	mach_port_t lookup = MACH_PORT_NULL, reply = MACH_PORT_NULL;
	uint8_t token[16];
	uint32_t pid;
	uint64_t inc;
	mach_msg_return_t mr;
	kern_return_t kr;

	if (port_id == NULL)
		return KERN_INVALID_ARGUMENT;
	*port_id = MACH_PORT_NULL;
	if (server_port != MACH_PORT_NULL || !host_is_local(host_name))
		return NETNAME_NO_SUCH_HOST;
	if (!name_ok(port_name))
		return KERN_INVALID_ARGUMENT;
	if ((kr = service_start()) != KERN_SUCCESS)
		return kr;
	if ((kr = read_name(port_name, &pid, &inc, token)) != KERN_SUCCESS)
		return kr;
	if (pid == mvm__node_pid() && inc == mvm__node_inc()) {
		struct nn_entry *e;

		/* Our own name: no message needed. */
		mvm_lock_acquire(&nn.lock);
		if ((e = find(port_name)) == NULL) {
			kr = NETNAME_NOT_CHECKED_IN;
		} else {
			kr = mach_port_mod_refs(mach_task_self(), e->port, MACH_PORT_RIGHT_SEND, 1);
			if (kr == KERN_SUCCESS)
				*port_id = e->port;
		}
		mvm_lock_release(&nn.lock);
		return kr;
	}
	if ((kr = mvm__node_proxy_for(pid, inc, token, &lookup)) != KERN_SUCCESS)
		return NETNAME_NOT_CHECKED_IN;
	if ((kr = mach_port_allocate(mach_task_self(), MACH_PORT_RIGHT_RECEIVE, &reply)) != 0) {
		(void)mach_port_deallocate(mach_task_self(), lookup);
		return kr;
	}
	memset(&m, 0, sizeof(m));
	m.req.head.msgh_bits = MACH_MSGH_BITS(MACH_MSG_TYPE_COPY_SEND, MACH_MSG_TYPE_MAKE_SEND_ONCE);
	m.req.head.msgh_size = sizeof(m.req);
	m.req.head.msgh_remote_port = lookup;
	m.req.head.msgh_local_port = reply;
	m.req.head.msgh_id = NN_LOOKUP_ID;
	set_type(&m.req.name_type, MACH_MSG_TYPE_STRING_C, 8, sizeof(netname_name_t));
	snprintf(m.req.name, sizeof(m.req.name), "%s", port_name);
	mr = mach_msg(&m.req.head, MACH_SEND_MSG | MACH_RCV_MSG | MACH_RCV_TIMEOUT, sizeof(m.req),
	    sizeof(m), reply, NN_LOOKUP_TIMEOUT_MS, MACH_PORT_NULL);
	if (mr != MACH_MSG_SUCCESS) {
		/* The owner is gone (dead proxy, or the send-once right died with it). */
		kr = NETNAME_NOT_CHECKED_IN;
	} else if (m.rep.head.msgh_id != NN_LOOKUP_ID + 100 ||
	    m.rep.head.msgh_size != sizeof(m.rep) || !(m.rep.head.msgh_bits & MACH_MSGH_BITS_COMPLEX)) {
		mach_msg_destroy(&m.rep.head); /* e.g. a send-once notification */
		kr = NETNAME_NOT_CHECKED_IN;
	} else if (m.rep.ret != NETNAME_SUCCESS) {
		mach_msg_destroy(&m.rep.head);
		kr = m.rep.ret;
	} else if (!MACH_PORT_VALID(m.rep.port)) {
		kr = NETNAME_NOT_CHECKED_IN;
	} else {
		*port_id = m.rep.port;
		kr = NETNAME_SUCCESS;
	}
	(void)mach_port_deallocate(mach_task_self(), lookup);
	(void)mach_port_mod_refs(mach_task_self(), reply, MACH_PORT_RIGHT_RECEIVE, -1);
	return kr;
}
