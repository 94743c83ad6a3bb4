/*
 * tools/machvm.c: the machvm command.
 *
 *   machvm demo         serve a file with the file pager, map it, read and write it
 *                       through plain memory, sync, and show what happened
 *   machvm stat FILE    map FILE through the file pager, touch every page, sync, and
 *                       print the kernel's and the pager's statistics
 *   machvm ipc-demo     two threads talk through Mach ports and messages
 *   machvm serve file PATH --name NAME [--readonly]
 *                       serve PATH with the file pager to other processes under NAME
 *                       (and NAME.info, which answers the size), until SIGINT/SIGTERM
 *   machvm serve shm --name NAME --size SIZE
 *                       serve a zero-filled object of SIZE bytes that many processes
 *                       map coherently (the shm pager), likewise
 *   machvm map NAME [--size N]
 *                       map the object NAME names, read every page through the mapping,
 *                       print its size and SHA-256
 *   machvm version      print the version
 *   --trace             print every memory object message, decoded, one per line
 *
 * Exit codes: 0 success, 1 failure, 2 bad usage, 77 memory objects cannot be mapped
 * here (no usable userfaultfd).
 */
#include <getopt.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <mach/mach.h>
#include <mach/netname.h>
#include <machvm/machvm.h>
#include <machvm/node.h>
#include <machvm/pager.h>
#include <machvm/pagers.h>
#include <machvm/trace.h>
#include <machvm/vm.h>

#include "sha256.h"

#define DEMO_ID_HELLO 1000
#define DEMO_ID_DONE  1001

static int quiet;

#define say(...) do { if (!quiet) printf(__VA_ARGS__); } while (0)

struct demo_request {
	mach_msg_header_t head;
	mach_msg_type_t num_type;
	int32_t number;
	mach_msg_type_t text_type;
	char *text; /* out-of-line */
};

struct demo_reply {
	mach_msg_header_t head;
	mach_msg_type_t num_type;
	int32_t square;
};

struct demo_server_args {
	mach_port_t port;
	int handled;
	kern_return_t error;
};

static const char *
right_name(mach_msg_type_name_t t)
{
	switch (t) {
	case MACH_MSG_TYPE_PORT_SEND:
		return "send";
	case MACH_MSG_TYPE_PORT_SEND_ONCE:
		return "send-once";
	case MACH_MSG_TYPE_PORT_RECEIVE:
		return "receive";
	default:
		return "none";
	}
}

static void *
demo_server(void *arg)
{
	struct demo_server_args *a = arg;

	for (;;) {
		union {
			struct demo_request req;
			char buf[512];
		} in;
		struct demo_reply rep;
		kern_return_t kr;

		kr = mach_msg(&in.req.head, MACH_RCV_MSG, 0, sizeof(in), a->port, 0, MACH_PORT_NULL);
		if (kr != MACH_MSG_SUCCESS) {
			a->error = kr;
			return NULL;
		}
		if (in.req.head.msgh_id == DEMO_ID_DONE) {
			say("  server: message %d (seqno %u): done\n", in.req.head.msgh_id,
			    in.req.head.msgh_seqno);
			mach_msg_destroy(&in.req.head);
			return NULL;
		}
		say("  server: message %d (seqno %u) on port 0x%x, reply right 0x%x (%s): "
		    "number %d, out-of-line text \"%s\"\n", in.req.head.msgh_id,
		    in.req.head.msgh_seqno, in.req.head.msgh_local_port, in.req.head.msgh_remote_port,
		    right_name(MACH_MSGH_BITS_REMOTE(in.req.head.msgh_bits)), in.req.number,
		    in.req.text);
		(void)vm_deallocate(mach_task_self(), (vm_address_t)in.req.text,
		    in.req.text_type.msgt_number);
		memset(&rep, 0, sizeof(rep));
		rep.head.msgh_bits = MACH_MSGH_BITS(MACH_MSG_TYPE_MOVE_SEND_ONCE, 0);
		rep.head.msgh_remote_port = in.req.head.msgh_remote_port;
		rep.head.msgh_id = in.req.head.msgh_id + 100;
		rep.num_type = (mach_msg_type_t){ .msgt_name = MACH_MSG_TYPE_INTEGER_32,
			.msgt_size = 32, .msgt_number = 1, .msgt_inline = 1 };
		rep.square = in.req.number * in.req.number;
		kr = mach_msg(&rep.head, MACH_SEND_MSG, sizeof(rep), 0, MACH_PORT_NULL, 0,
		    MACH_PORT_NULL);
		if (kr != MACH_MSG_SUCCESS) {
			a->error = kr;
			return NULL;
		}
		a->handled++;
	}
}

#define CHECK(expr) \
	do { \
		kern_return_t kr_ = (expr); \
		if (kr_ != KERN_SUCCESS) { \
			fprintf(stderr, "machvm demo: %s failed: %s (%s)\n", #expr, \
			    mvm_errname(kr_), mach_error_string(kr_)); \
			return 1; \
		} \
	} while (0)

static int
cmd_ipc_demo(void)
{
	struct demo_server_args sa = { 0 };
	mach_port_t reply, notify;
	pthread_t server;
	struct mvm_ipc_stats st;
	char quiet_buf[256];

	say("machvm %s demo: Mach IPC between two threads of one process\n\n", MVM_VERSION_STRING);
	CHECK(mach_port_allocate(mach_task_self(), MACH_PORT_RIGHT_RECEIVE, &sa.port));
	CHECK(mach_port_insert_right(mach_task_self(), sa.port, sa.port, MACH_MSG_TYPE_MAKE_SEND));
	say("client: allocated port 0x%x (receive right, given to the server thread) and made a "
	    "send right under the same name\n", sa.port);
	CHECK(mach_port_allocate(mach_task_self(), MACH_PORT_RIGHT_RECEIVE, &reply));
	say("client: allocated reply port 0x%x\n", reply);
	CHECK(mach_port_allocate(mach_task_self(), MACH_PORT_RIGHT_RECEIVE, &notify));
	{
		mach_port_t prev;

		CHECK(mach_port_request_notification(mach_task_self(), sa.port,
		    MACH_NOTIFY_NO_SENDERS, 0, notify, MACH_MSG_TYPE_MAKE_SEND_ONCE, &prev));
	}
	say("client: asked for a no-senders notification on 0x%x, to port 0x%x\n", sa.port, notify);
	if (pthread_create(&server, NULL, demo_server, &sa) != 0) {
		fprintf(stderr, "machvm demo: cannot start the server thread\n");
		return 1;
	}

	for (int i = 1; i <= 3; i++) {
		union {
			struct demo_request req;
			struct demo_reply rep;
			char buf[512];
		} m;
		char text[64];
		kern_return_t kr;

		snprintf(text, sizeof(text), "request number %d", i);
		memset(&m, 0, sizeof(m));
		m.req.head.msgh_bits = MACH_MSGH_BITS(MACH_MSG_TYPE_COPY_SEND,
		    MACH_MSG_TYPE_MAKE_SEND_ONCE) | MACH_MSGH_BITS_COMPLEX;
		m.req.head.msgh_remote_port = sa.port;
		m.req.head.msgh_local_port = reply;
		m.req.head.msgh_id = DEMO_ID_HELLO;
		m.req.num_type = (mach_msg_type_t){ .msgt_name = MACH_MSG_TYPE_INTEGER_32,
			.msgt_size = 32, .msgt_number = 1, .msgt_inline = 1 };
		m.req.number = i * 7;
		m.req.text_type = (mach_msg_type_t){ .msgt_name = MACH_MSG_TYPE_CHAR,
			.msgt_size = 8, .msgt_number = (unsigned)strlen(text) + 1, .msgt_inline = 0 };
		m.req.text = text;
		say("client: send message %d to 0x%x with number %d and \"%s\" out of line, "
		    "reply right made send-once from 0x%x\n", DEMO_ID_HELLO, sa.port, i * 7, text, reply);
		kr = mach_msg(&m.req.head, MACH_SEND_MSG | MACH_RCV_MSG, sizeof(m.req), sizeof(m),
		    reply, 0, MACH_PORT_NULL);
		CHECK(kr);
		say("client: reply %d (seqno %u on 0x%x): square = %d\n", m.rep.head.msgh_id,
		    m.rep.head.msgh_seqno, m.rep.head.msgh_local_port, m.rep.square);
		if (m.rep.square != i * 7 * i * 7) {
			fprintf(stderr, "machvm demo: wrong reply %d\n", m.rep.square);
			return 1;
		}
	}

	{
		mach_msg_header_t done = {
			.msgh_bits = MACH_MSGH_BITS(MACH_MSG_TYPE_MOVE_SEND, 0),
			.msgh_remote_port = sa.port,
			.msgh_id = DEMO_ID_DONE,
		};
		say("client: send message %d, moving our last send right to the server\n",
		    DEMO_ID_DONE);
		CHECK(mach_msg(&done, MACH_SEND_MSG, sizeof(done), 0, MACH_PORT_NULL, 0,
		    MACH_PORT_NULL));
	}
	pthread_join(server, NULL);
	if (sa.error != KERN_SUCCESS) {
		fprintf(stderr, "machvm demo: server failed: %s\n", mvm_errname(sa.error));
		return 1;
	}
	{
		union {
			mach_no_senders_notification_t n;
			char buf[256];
		} n;

		CHECK(mach_msg(&n.n.not_header, MACH_RCV_MSG | MACH_RCV_TIMEOUT, 0, sizeof(n), notify,
		    1000, MACH_PORT_NULL));
		say("client: notification %d (no-senders) on 0x%x: make-send count %u\n",
		    n.n.not_header.msgh_id, n.n.not_header.msgh_local_port, n.n.not_count);
	}
	CHECK(mach_port_destroy(mach_task_self(), sa.port));
	CHECK(mach_port_destroy(mach_task_self(), reply));
	CHECK(mach_port_destroy(mach_task_self(), notify));
	mvm_ipc_stats(&st);
	say("\n%llu messages sent, %llu received, %llu notifications; server handled %d requests\n",
	    (unsigned long long)st.msgs_sent, (unsigned long long)st.msgs_received,
	    (unsigned long long)st.notifications, sa.handled);
	if (mvm_ipc_quiescent(quiet_buf, sizeof(quiet_buf)) != KERN_SUCCESS) {
		fprintf(stderr, "machvm demo: %s\n", quiet_buf);
		return 1;
	}
	say("every port, right and byte of message memory was released.\n");
	say("\nWhat happened: the client sent requests with a send right it kept (COPY_SEND) and a\n"
	    "send-once reply right made from its reply port; the server answered through that\n"
	    "right. Out-of-line text arrived in fresh memory the server freed. Sequence numbers\n"
	    "count the messages taken from each port. When the last send right reached the\n"
	    "server and was released, the port had no senders left and Mach said so.\n");
	return 0;
}


/* ---- tracing ------------------------------------------------------------------------- */

static int tracing;
static pthread_mutex_t trace_mtx = PTHREAD_MUTEX_INITIALIZER;
static char *trace_lines[4096];
static int ntrace;

/* Runs in machvm's sending threads, possibly under its locks: only record the line. */
static void
trace_cb(const char *line, void *arg)
{
	(void)arg;
	pthread_mutex_lock(&trace_mtx);
	if (tracing == 2)
		fprintf(stderr, "trace: %s\n", line);
	else if (ntrace < 4096)
		trace_lines[ntrace++] = strdup(line);
	pthread_mutex_unlock(&trace_mtx);
}

static void
trace_flush(void)
{
	pthread_mutex_lock(&trace_mtx);
	for (int i = 0; i < ntrace; i++) {
		say("  %s\n", trace_lines[i]);
		free(trace_lines[i]);
	}
	ntrace = 0;
	pthread_mutex_unlock(&trace_mtx);
}

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int
need_kernel(const char *cmd)
{
	char why[200];

	if (mvm_vm_available(why, sizeof(why)) != KERN_SUCCESS) {
		fprintf(stderr, "machvm %s: cannot map memory objects here: %s\n", cmd, why);
		return 77; /* "skipped" for test drivers */
	}
	return 0;
}

static void
print_stats(mach_port_t obj, struct mvm_pager *pager)
{
	struct mvm_vm_object_stats vs;
	struct mvm_pager_stats ps;

	if (mvm_vm_object_stats(obj, &vs) == KERN_SUCCESS)
		say("kernel: %llu faults, %llu data_request (%llu pages), %llu data_supply "
		    "(%llu pages), %llu data_unlock, %llu lock_request, %llu data_return "
		    "(%llu pages); %llu pages resident, %llu dirty\n",
		    (unsigned long long)vs.faults, (unsigned long long)vs.data_requests,
		    (unsigned long long)vs.pages_requested, (unsigned long long)vs.data_supplies,
		    (unsigned long long)vs.pages_supplied, (unsigned long long)vs.data_unlocks,
		    (unsigned long long)vs.lock_requests, (unsigned long long)vs.data_returns,
		    (unsigned long long)vs.pages_returned, (unsigned long long)vs.resident,
		    (unsigned long long)vs.dirty);
	if (pager != NULL && mvm_pager_stats(pager, &ps) == KERN_SUCCESS)
		say("pager:  %llu kernel(s), %llu requests (%llu pages read, %llu zero-filled), "
		    "%llu returns (%llu pages written), %llu write errors, %llu lock requests "
		    "sent, %llu completed\n", (unsigned long long)ps.kernels,
		    (unsigned long long)ps.requests, (unsigned long long)ps.pages_read,
		    (unsigned long long)ps.unavailable, (unsigned long long)ps.returns,
		    (unsigned long long)ps.pages_written, (unsigned long long)ps.write_errors,
		    (unsigned long long)ps.lock_requests, (unsigned long long)ps.lock_completions);
}

/* ---- machvm demo ----------------------------------------------------------------------- */

static int
cmd_demo(void)
{
	char path[] = "/tmp/machvm-demo-XXXXXX";
	struct mvm_pager *pager;
	mach_port_t obj;
	vm_address_t addr = 0;
	size_t ps = (size_t)vm_page_size, size = 4 * ps;
	char *buf, *file, quiet_buf[256];
	int fd, rc = 1;
	kern_return_t kr;

	if ((rc = need_kernel("demo")) != 0)
		return rc;
	rc = 1; /* until the demonstration succeeds */
	if (!tracing)
		tracing = 1; /* the demo always shows the trace */
	mvm_trace_set(trace_cb, NULL);
	say("machvm %s demo: a file served by a memory manager, used as plain memory\n\n",
	    MVM_VERSION_STRING);
	if ((fd = mkstemp(path)) < 0) {
		fprintf(stderr, "machvm demo: cannot create %s: %s\n", path, strerror(errno));
		return 1;
	}
	buf = calloc(1, size);
	for (size_t pg = 0; pg < 4; pg++)
		snprintf(buf + pg * ps, ps, "page %zu of the demo file, written by write(2)", pg);
	if (write(fd, buf, size) != (ssize_t)size) {
		fprintf(stderr, "machvm demo: cannot write %s\n", path);
		goto out_file;
	}
	say("1. wrote %s: 4 pages of text\n", path);
	kr = mvm_file_pager_create(path, 0, NULL, &pager, &obj);
	if (kr != KERN_SUCCESS) {
		fprintf(stderr, "machvm demo: file pager: %s\n", mach_error_string(kr));
		goto out_file;
	}
	say("2. the file pager serves it as memory object port 0x%x\n", obj);
	kr = vm_map(mach_task_self(), &addr, size, 0, TRUE, obj, 0, FALSE, VM_PROT_ALL, VM_PROT_ALL,
	    VM_INHERIT_NONE);
	if (kr != KERN_SUCCESS) {
		fprintf(stderr, "machvm demo: vm_map: %s\n", mach_error_string(kr));
		goto out_pager;
	}
	say("3. vm_map put it at %p; the kernel introduced itself to the manager:\n", (void *)addr);
	usleep(20000);
	trace_flush();
	file = (char *)addr;
	say("4. reading page 2 through plain memory: \"%s\"\n", file + 2 * ps);
	trace_flush();
	say("5. writing \"HELLO FROM MEMORY\" into page 1 with plain stores\n");
	memcpy(file + ps, "HELLO FROM MEMORY", 18); /* with its NUL */
	trace_flush();
	say("6. mvm_pager_sync: the manager asks every kernel for its dirty pages\n");
	kr = mvm_pager_sync(pager, 0, 0, TRUE);
	trace_flush();
	if (kr != KERN_SUCCESS) {
		fprintf(stderr, "machvm demo: sync: %s\n", mach_error_string(kr));
		goto out_map;
	}
	memset(buf, 0, size);
	if (pread(fd, buf, size, 0) != (ssize_t)size || memcmp(buf + ps, "HELLO FROM MEMORY", 17) != 0) {
		fprintf(stderr, "machvm demo: the file does not have the write\n");
		goto out_map;
	}
	say("7. read(2) of the file now shows page 1 as \"%s\"\n\n", buf + ps);
	print_stats(obj, pager);
	rc = 0;
out_map:
	(void)vm_deallocate(mach_task_self(), addr, size);
	usleep(20000);
	say("\n8. unmapped: the kernel returned nothing more (clean) and said goodbye:\n");
	trace_flush();
out_pager:
	(void)mvm_pager_shutdown(pager);
out_file:
	mvm_trace_set(NULL, NULL);
	close(fd);
	unlink(path);
	free(buf);
	if (rc == 0 && mvm_ipc_quiescent(quiet_buf, sizeof(quiet_buf)) != KERN_SUCCESS) {
		fprintf(stderr, "machvm demo: %s\n", quiet_buf);
		rc = 1;
	}
	if (rc == 0)
		say("\nWhat happened: vm_map sent memory_object_init and the pager answered\n"
		    "memory_object_ready. Each first touch of a page was a page fault that machvm's\n"
		    "kernel (userfaultfd) turned into memory_object_data_request; the pager read the\n"
		    "file and answered memory_object_data_supply. The first store to a clean page\n"
		    "marked it dirty. The sync was memory_object_lock_request; the kernel sent the\n"
		    "dirty page back with memory_object_data_return, then lock_completed, and the\n"
		    "pager wrote it to the file. Unmapping ended with memory_object_terminate.\n");
	return rc;
}

/* ---- machvm stat ------------------------------------------------------------------------- */

static int
cmd_stat(int argc, char **argv)
{
	struct mvm_pager *pager;
	mach_port_t obj;
	vm_address_t addr = 0;
	struct stat st;
	int write_mode = 0, rc = 1;
	const char *path = NULL;
	size_t ps = (size_t)vm_page_size, size;
	volatile unsigned char *p;
	unsigned long sum = 0;
	double t0, t1, t2;
	kern_return_t kr;

	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--write") == 0)
			write_mode = 1;
		else if (argv[i][0] == '-') {
			fprintf(stderr, "machvm stat: unknown option %s (try machvm --help)\n", argv[i]);
			return 2;
		} else if (path == NULL)
			path = argv[i];
		else {
			fprintf(stderr, "machvm stat: one file only\n");
			return 2;
		}
	}
	if (path == NULL) {
		fprintf(stderr, "machvm stat: which file? (machvm stat [--write] FILE)\n");
		return 2;
	}
	if (stat(path, &st) != 0) {
		fprintf(stderr, "machvm stat: %s: %s\n", path, strerror(errno));
		return 1;
	}
	if (st.st_size == 0) {
		fprintf(stderr, "machvm stat: %s is empty\n", path);
		return 1;
	}
	if ((rc = need_kernel("stat")) != 0)
		return rc;
	rc = 1;
	if (tracing)
		mvm_trace_set(trace_cb, NULL);
	size = (size_t)st.st_size;
	kr = mvm_file_pager_create(path, write_mode ? 0 : MVM_FILE_PAGER_READONLY, NULL, &pager, &obj);
	if (kr != KERN_SUCCESS) {
		fprintf(stderr, "machvm stat: %s: %s\n", path, mach_error_string(kr));
		return 1;
	}
	kr = vm_map(mach_task_self(), &addr, size, 0, TRUE, obj, 0, FALSE,
	    write_mode ? VM_PROT_ALL : VM_PROT_READ, VM_PROT_ALL, VM_INHERIT_NONE);
	if (kr != KERN_SUCCESS) {
		fprintf(stderr, "machvm stat: vm_map: %s\n", mach_error_string(kr));
		goto out;
	}
	(void)mvm_vm_object_set_cluster(obj, 16);
	p = (volatile unsigned char *)addr;
	t0 = now_s();
	for (size_t off = 0; off < size; off += ps) {
		sum += p[off];
		if (write_mode)
			p[off] = p[off];
		if (tracing != 2 && !quiet && (off / ps) % 65536 == 65535)
			fprintf(stderr, "machvm stat: %zu of %zu MiB\r", off >> 20, size >> 20);
	}
	t1 = now_s();
	kr = mvm_pager_sync(pager, 0, 0, TRUE);
	t2 = now_s();
	if (tracing == 1)
		trace_flush();
	say("%s: %zu bytes, %zu pages, %s through the file pager in %.3f s (%.1f MB/s), sync "
	    "%.3f s (%s); checksum %lu\n", path, size, (size + ps - 1) / ps,
	    write_mode ? "read and rewritten" : "read", t1 - t0,
	    (double)size / (t1 - t0) / 1e6, t2 - t1, mach_error_string(kr), sum);
	print_stats(obj, pager);
	rc = kr == KERN_SUCCESS ? 0 : 1;
	(void)vm_deallocate(mach_task_self(), addr, size);
out:
	(void)mvm_pager_shutdown(pager);
	mvm_trace_set(NULL, NULL);
	return rc;
}

/* ---- machvm serve, machvm map: a memory manager in another process ------------------------ */

/*
 * The info port. `serve` checks in two names: NAME, the memory object's port itself (any
 * Mach program may look it up and vm_map it), and NAME.info, a port this command serves
 * with two routines, because a mapper must know how much to map and Mach gives it no way
 * to ask the object (the memory_object interface runs from the kernel to the manager and
 * has no size). machvm(1) describes the messages; examples/map_file.c uses them too.
 */
#define INFO_SUFFIX ".info"
#define INFO_ID 4180                  /* -> size and flags of the object */
#define INFO_SYNC_ID 4181             /* -> write back every dirty page now (mvm_pager_sync) */
#define INFO_STOP_ID 4199             /* from our own signal thread only: look at `stopping` */
#define INFO_REPLY_DELTA 100
#define INFO_READONLY 0x1             /* flags: the object cannot be written */
#define INFO_TIMEOUT_MS 10000

struct info_reply {
	mach_msg_header_t head;
	mach_msg_type_t ret_type;         /* INTEGER_32 */
	kern_return_t ret;
	uint32_t pad;
	mach_msg_type_t size_type;        /* INTEGER_64: the object's size in bytes */
	uint64_t size;
	mach_msg_type_t flags_type;       /* INTEGER_32: INFO_READONLY */
	uint32_t flags;
	uint32_t pad2;
};

struct sync_reply {
	mach_msg_header_t head;
	mach_msg_type_t ret_type;         /* INTEGER_32 */
	kern_return_t ret;
	uint32_t pad;
};

/* Each item of a typed message starts 8-aligned (the IPC layer's layout rule). */
_Static_assert(offsetof(struct info_reply, size_type) == 40 &&
    offsetof(struct info_reply, flags_type) == 56 && sizeof(struct info_reply) == 72,
    "info reply layout");
_Static_assert(sizeof(struct sync_reply) == 40, "sync reply layout");

static mach_msg_type_t
scalar_type(unsigned name, unsigned bits)
{
	return (mach_msg_type_t){ .msgt_name = name, .msgt_size = bits, .msgt_number = 1,
		.msgt_inline = 1 };
}

/* A name netname_check_in accepts (<mach/netname.h>, machvm(1)): checked here so that
 * a bad one is a usage error, found before anything starts. */
static bool
name_valid(const char *name)
{
	if (name[0] == '\0' || name[0] == '.' || strlen(name) >= sizeof(netname_name_t))
		return false;
	return strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	    "._-+@:") == strlen(name);
}

/* NAME.info, in buf; false if it does not fit in a netname_name_t. */
static bool
info_name(char *buf, size_t len, const char *name)
{
	int n = snprintf(buf, len, "%s" INFO_SUFFIX, name);

	return n > 0 && (size_t)n < len && (size_t)n < sizeof(netname_name_t);
}

/* Ask the info port of NAME for the object's size and flags. */
static kern_return_t
info_query(const char *name, uint64_t *size, uint32_t *flags)
{
	union {
		mach_msg_header_t req;
		struct info_reply rep;
		char buf[256];
	} m;
	netname_name_t iname;
	mach_port_t info, reply;
	kern_return_t kr;

	if (!info_name(iname, sizeof(iname), name))
		return KERN_INVALID_ARGUMENT;
	if ((kr = netname_look_up(name_server_port, "", iname, &info)) != KERN_SUCCESS)
		return kr;
	if ((kr = mach_port_allocate(mach_task_self(), MACH_PORT_RIGHT_RECEIVE, &reply)) != 0) {
		(void)mach_port_deallocate(mach_task_self(), info);
		return kr;
	}
	memset(&m, 0, sizeof(m));
	m.req.msgh_bits = MACH_MSGH_BITS(MACH_MSG_TYPE_COPY_SEND, MACH_MSG_TYPE_MAKE_SEND_ONCE);
	m.req.msgh_size = sizeof(m.req);
	m.req.msgh_remote_port = info;
	m.req.msgh_local_port = reply;
	m.req.msgh_id = INFO_ID;
	kr = mach_msg(&m.req, MACH_SEND_MSG | MACH_RCV_MSG | MACH_RCV_TIMEOUT, sizeof(m.req),
	    sizeof(m), reply, INFO_TIMEOUT_MS, MACH_PORT_NULL);
	if (kr == MACH_MSG_SUCCESS) {
		if (m.rep.head.msgh_id != INFO_ID + INFO_REPLY_DELTA ||
		    m.rep.head.msgh_size != sizeof(m.rep) ||
		    m.rep.size_type.msgt_name != MACH_MSG_TYPE_INTEGER_64) {
			mach_msg_destroy(&m.rep.head); /* e.g. a send-once notification */
			kr = MIG_REPLY_MISMATCH;
		} else if ((kr = m.rep.ret) == KERN_SUCCESS) {
			*size = m.rep.size;
			*flags = m.rep.flags;
		}
	}
	(void)mach_port_deallocate(mach_task_self(), info);
	(void)mach_port_mod_refs(mach_task_self(), reply, MACH_PORT_RIGHT_RECEIVE, -1);
	return kr;
}

/* "123", "0x1000", "4k", "16M", "1G" (binary multiples); false if it is none of these. */
static bool
parse_size(const char *s, uint64_t *out)
{
	unsigned long long v;
	unsigned shift = 0;
	char *end;

	if (s[0] < '0' || s[0] > '9')
		return false;
	errno = 0;
	/* Decimal (a leading 0 is not octal), or hexadecimal after 0x. */
	if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
		v = strtoull(s + 2, &end, 16);
		if (end == s + 2)
			return false;
	} else
		v = strtoull(s, &end, 10);
	if (errno != 0)
		return false;
	switch (*end) {
	case 'k': case 'K': shift = 10; end++; break;
	case 'm': case 'M': shift = 20; end++; break;
	case 'g': case 'G': shift = 30; end++; break;
	default: break;
	}
	if (*end != '\0' || end == s || v > (~0ull >> shift))
		return false;
	v <<= shift;
	*out = v;
	return true;
}

/* Set by the stop thread before it wakes the serving loop (not a signal handler). */
static atomic_int stopping;

struct stop_args {
	sigset_t set;
	mach_port_t info;                 /* a send right, ours */
	int sig;
};

/* Wait for SIGINT or SIGTERM (blocked in every thread), then wake the serving loop. */
static void *
stop_main(void *arg)
{
	struct stop_args *a = arg;
	mach_msg_header_t wake = {
		.msgh_bits = MACH_MSGH_BITS(MACH_MSG_TYPE_COPY_SEND, 0),
		.msgh_size = sizeof(wake),
		.msgh_id = INFO_STOP_ID,
	};

	if (sigwait(&a->set, &a->sig) != 0)
		a->sig = SIGTERM;
	atomic_store(&stopping, 1);
	wake.msgh_remote_port = a->info;
	(void)mach_msg(&wake, MACH_SEND_MSG, sizeof(wake), 0, MACH_PORT_NULL, 0, MACH_PORT_NULL);
	return NULL;
}

static void
serve_reply(mach_msg_header_t *req, mach_msg_header_t *rep, mach_msg_size_t size)
{
	rep->msgh_bits = MACH_MSGH_BITS(MACH_MSGH_BITS_REMOTE(req->msgh_bits), 0);
	rep->msgh_size = size;
	rep->msgh_remote_port = req->msgh_remote_port;
	rep->msgh_local_port = MACH_PORT_NULL;
	rep->msgh_id = req->msgh_id + INFO_REPLY_DELTA;
	/* A reply to a send-once right never blocks; one that cannot be sent is dropped. */
	if (mach_msg(rep, MACH_SEND_MSG | MACH_SEND_TIMEOUT, size, 0, MACH_PORT_NULL, 0,
	    MACH_PORT_NULL) != MACH_MSG_SUCCESS)
		mach_msg_destroy(rep);
}

static int
cmd_serve(int argc, char **argv)
{
	const char *path = NULL, *name = NULL;
	netname_name_t iname;
	struct stop_args sa;
	struct mvm_pager *pager = NULL;
	struct mvm_shm_pager *shm = NULL;
	struct mvm_pager_stats ps;
	struct mvm_shm_pager_stats ss;
	mach_port_t obj = MACH_PORT_NULL, info = MACH_PORT_NULL;
	pthread_t stopper;
	struct stat st;
	int readonly = 0, rc = 1, in_obj = 0, in_info = 0, is_shm;
	uint64_t infos = 0, syncs = 0, shm_size = 0;
	kern_return_t kr;

	if (argc < 1 || (strcmp(argv[0], "file") != 0 && strcmp(argv[0], "shm") != 0)) {
		fprintf(stderr, "machvm serve: what? (machvm serve file PATH --name NAME "
		    "[--readonly], machvm serve shm --name NAME --size SIZE)\n");
		return 2;
	}
	is_shm = strcmp(argv[0], "shm") == 0;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--readonly") == 0 && !is_shm)
			readonly = 1;
		else if (is_shm && ((strcmp(argv[i], "--size") == 0 && i + 1 < argc) ||
		    strncmp(argv[i], "--size=", 7) == 0)) {
			const char *v = argv[i][6] == '=' ? argv[i] + 7 : argv[++i];

			if (!parse_size(v, &shm_size) || shm_size == 0) {
				fprintf(stderr, "machvm serve: bad size %s\n", v);
				return 2;
			}
		}
		else if (strcmp(argv[i], "--name") == 0 && i + 1 < argc)
			name = argv[++i];
		else if (strncmp(argv[i], "--name=", 7) == 0)
			name = argv[i] + 7;
		else if (argv[i][0] == '-') {
			fprintf(stderr, "machvm serve: unknown option %s (try machvm --help)\n", argv[i]);
			return 2;
		} else if (path == NULL && !is_shm)
			path = argv[i];
		else {
			fprintf(stderr, "machvm serve: %s\n", is_shm ? "shm takes no file" :
			    "one file only");
			return 2;
		}
	}
	if (is_shm && (name == NULL || shm_size == 0)) {
		fprintf(stderr, "machvm serve: %s (machvm serve shm --name NAME --size SIZE)\n",
		    name == NULL ? "under which name? --name NAME" : "how large? --size SIZE");
		return 2;
	}
	if (!is_shm && (path == NULL || name == NULL)) {
		fprintf(stderr, "machvm serve: %s (machvm serve file PATH --name NAME [--readonly])\n",
		    path == NULL ? "which file?" : "under which name? --name NAME");
		return 2;
	}
	if (!name_valid(name) || !info_name(iname, sizeof(iname), name)) {
		fprintf(stderr, "machvm serve: bad name '%s' (letters, digits and ._-+@:, not "
		    "starting with a dot, at most %zu characters)\n", name,
		    sizeof(netname_name_t) - 1 - strlen(INFO_SUFFIX));
		return 2;
	}
	if (is_shm) {
		path = "shared memory";
		st.st_size = (off_t)shm_size;
	} else if (stat(path, &st) != 0) {
		fprintf(stderr, "machvm serve: %s: %s\n", path, strerror(errno));
		return 1;
	}
	if (!is_shm && !S_ISREG(st.st_mode)) {
		fprintf(stderr, "machvm serve: %s is not a regular file\n", path);
		return 1;
	}
	/* Blocked before the first thread starts, so every thread inherits the mask and
	 * only the stop thread takes the signals. */
	sigemptyset(&sa.set);
	sigaddset(&sa.set, SIGINT);
	sigaddset(&sa.set, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &sa.set, NULL);
	if (tracing)
		mvm_trace_set(trace_cb, NULL);

	if (is_shm)
		kr = mvm_shm_pager_create((vm_size_t)shm_size, &shm, &obj);
	else
		kr = mvm_file_pager_create(path, readonly ? MVM_FILE_PAGER_READONLY : 0, NULL,
		    &pager, &obj);
	if (kr != KERN_SUCCESS) {
		fprintf(stderr, "machvm serve: %s: %s\n", path, mach_error_string(kr));
		goto out;
	}
	if ((kr = mach_port_allocate(mach_task_self(), MACH_PORT_RIGHT_RECEIVE, &info)) != 0 ||
	    (kr = mach_port_insert_right(mach_task_self(), info, info,
	    MACH_MSG_TYPE_MAKE_SEND)) != 0) {
		fprintf(stderr, "machvm serve: info port: %s\n", mach_error_string(kr));
		goto out;
	}
	sa.info = info;
	if (pthread_create(&stopper, NULL, stop_main, &sa) != 0) {
		fprintf(stderr, "machvm serve: cannot start the signal thread\n");
		goto out;
	}
	/* The info name first: a mapper that finds NAME finds its size too. */
	kr = netname_check_in(name_server_port, iname, MACH_PORT_NULL, info);
	if (kr == KERN_SUCCESS) {
		in_info = 1;
		kr = netname_check_in(name_server_port, name, MACH_PORT_NULL, obj);
	}
	if (kr != KERN_SUCCESS) {
		fprintf(stderr, "machvm serve: cannot check in %s: %s\n", name,
		    kr == NETNAME_NOT_YOURS ? "another process holds the name" : mvm_errname(kr));
		pthread_kill(stopper, SIGTERM);
		pthread_join(stopper, NULL);
		goto out_drain;
	}
	in_obj = 1;
	printf("ready: %s serves %s (%llu bytes, %s) in %s; pid %d\n", name, path,
	    (unsigned long long)st.st_size, readonly ? "read-only" : "read-write",
	    mvm_node_runtime_dir(), (int)getpid());
	fflush(stdout);

	for (;;) {
		union {
			mach_msg_header_t head;
			struct info_reply info;
			struct sync_reply sync;
			char buf[512];
		} in, out;
		mach_msg_return_t mr;

		mr = mach_msg(&in.head, MACH_RCV_MSG, 0, sizeof(in), info, MACH_MSG_TIMEOUT_NONE,
		    MACH_PORT_NULL);
		if (mr != MACH_MSG_SUCCESS) {
			fprintf(stderr, "machvm serve: receive: %s\n", mach_error_string(mr));
			break;
		}
		if (atomic_load(&stopping)) {
			mach_msg_destroy(&in.head);
			break;
		}
		memset(&out, 0, sizeof(out));
		out.sync.ret_type = scalar_type(MACH_MSG_TYPE_INTEGER_32, 32);
		if (MACH_MSGH_BITS_REMOTE(in.head.msgh_bits) != MACH_MSG_TYPE_PORT_SEND_ONCE ||
		    (in.head.msgh_bits & MACH_MSGH_BITS_COMPLEX)) {
			mach_msg_destroy(&in.head); /* not a request we answer (or a stray wake-up) */
			continue;
		}
		switch (in.head.msgh_id) {
		case INFO_ID:
			infos++;
			out.info.size_type = scalar_type(MACH_MSG_TYPE_INTEGER_64, 64);
			out.info.flags_type = scalar_type(MACH_MSG_TYPE_INTEGER_32, 32);
			/* The file's size now: a dirty page past the end grows it. */
			if (is_shm) {
				out.info.size = shm_size;
			} else if (stat(path, &st) == 0) {
				out.info.size = (uint64_t)st.st_size;
				out.info.flags = readonly ? INFO_READONLY : 0;
			} else
				out.info.ret = KERN_FAILURE;
			serve_reply(&in.head, &out.head, sizeof(out.info));
			break;
		case INFO_SYNC_ID:
			syncs++;
			/* Shared memory has no store to write to: its data is the pager's. */
			out.sync.ret = is_shm ? KERN_SUCCESS : mvm_pager_sync(pager, 0, 0, TRUE);
			serve_reply(&in.head, &out.head, sizeof(out.sync));
			break;
		default:
			out.sync.ret = MIG_BAD_ID;
			serve_reply(&in.head, &out.head, sizeof(out.sync));
			break;
		}
	}
	pthread_join(stopper, NULL);
	say("machvm serve: %s: %s: stopping\n", name, strsignal(sa.sig));
out_drain:
	/* Names first, so nobody new finds the object while its data goes home. */
	if (in_obj && (kr = netname_check_out(name_server_port, name, MACH_PORT_NULL)) != 0)
		fprintf(stderr, "machvm serve: check-out of %s: %s\n", name, mvm_errname(kr));
	if (in_info && (kr = netname_check_out(name_server_port, iname, MACH_PORT_NULL)) != 0)
		fprintf(stderr, "machvm serve: check-out of %s: %s\n", iname, mvm_errname(kr));
	rc = in_obj ? 0 : 1;
out:
	if (shm != NULL) {
		if (in_obj && mvm_shm_pager_stats(shm, &ss) == KERN_SUCCESS)
			say("machvm serve: %s: %llu kernels came (%llu left, %llu died); %llu read and "
			    "%llu write requests, %llu unlocks; %llu write grants (%llu to migratory "
			    "reads), %llu flushes, %llu downgrades, %llu pages returned\n", name,
			    (unsigned long long)ss.inits, (unsigned long long)ss.terminates,
			    (unsigned long long)ss.deaths, (unsigned long long)ss.read_requests,
			    (unsigned long long)ss.write_requests, (unsigned long long)ss.unlocks,
			    (unsigned long long)ss.grants, (unsigned long long)ss.migratory_grants,
			    (unsigned long long)ss.invalidations,
			    (unsigned long long)ss.downgrades, (unsigned long long)ss.returns);
		/* Kernels still mapping it see their manager die. */
		(void)mvm_shm_pager_shutdown(shm);
	}
	if (pager != NULL) {
		if (in_obj && mvm_pager_stats(pager, &ps) == KERN_SUCCESS)
			say("machvm serve: %s: %llu requests (%llu pages read, %llu zero-filled), "
			    "%llu returns (%llu pages written, %llu write errors); %llu info, "
			    "%llu sync requests\n", name, (unsigned long long)ps.requests,
			    (unsigned long long)ps.pages_read, (unsigned long long)ps.unavailable,
			    (unsigned long long)ps.returns, (unsigned long long)ps.pages_written,
			    (unsigned long long)ps.write_errors, (unsigned long long)infos,
			    (unsigned long long)syncs);
		/* Every dirty page of every kernel still mapping the object comes home and is
		 * written before this returns. */
		kr = mvm_pager_shutdown(pager);
		if (kr != KERN_SUCCESS) {
			fprintf(stderr, "machvm serve: %s: shutdown: %s\n", path, mach_error_string(kr));
			rc = 1;
		} else if (in_obj)
			say("machvm serve: %s: shut down, every dirty page written\n", name);
	}
	if (info != MACH_PORT_NULL)
		(void)mach_port_destroy(mach_task_self(), info);
	if (tracing == 1)
		trace_flush();
	mvm_trace_set(NULL, NULL);
	return rc;
}

/* SIGBUS while reading the mapping: the manager could not supply a page. */
static sigjmp_buf map_jb;
static volatile sig_atomic_t map_reading;
static void *volatile map_bus_addr;

static void
map_sigbus(int sig, siginfo_t *si, void *uctx)
{
	(void)uctx;
	if (!map_reading) {
		signal(sig, SIG_DFL);
		raise(sig);
		return;
	}
	map_bus_addr = si->si_addr;
	siglongjmp(map_jb, 1);
}

/*
 * Read every page of the mapping at addr in order, hashing size bytes. A SIGBUS (the
 * manager did not supply a page) ends the read with 1. Apart from the setjmp, in its own
 * function: few locals live across it.
 */
static int
read_mapping(const char *name, vm_address_t addr, uint64_t size, struct sha256 *sh, double *secs)
{
	size_t ps = (size_t)vm_page_size;
	double t0 = now_s();

	if (sigsetjmp(map_jb, 1) != 0) {
		map_reading = 0;
		fprintf(stderr, "machvm map: %s: SIGBUS at offset %#llx: the manager did not "
		    "supply the page\n", name, (unsigned long long)((uintptr_t)map_bus_addr - addr));
		return 1;
	}
	map_reading = 1;
	/* Page by page, in order: every page is read through the mapping. */
	for (uint64_t off = 0; off < size; off += ps) {
		size_t n = size - off < ps ? (size_t)(size - off) : ps;

		sha256_update(sh, (const void *)(addr + off), n);
	}
	map_reading = 0;
	*secs = now_s() - t0;
	return 0;
}

static int
cmd_map(int argc, char **argv)
{
	const char *name = NULL;
	uint64_t size = 0;
	uint32_t flags = 0;
	int have_size = 0, rc;
	struct sigaction sact;
	mach_port_t obj = MACH_PORT_NULL;
	vm_address_t addr = 0;
	vm_size_t maplen;
	size_t ps = (size_t)vm_page_size;
	uint8_t digest[SHA256_DIGEST_LEN];
	char hex[SHA256_HEX_LEN];
	struct sha256 sh;
	double secs = 0;
	kern_return_t kr;

	for (int i = 0; i < argc; i++) {
		if ((strcmp(argv[i], "--size") == 0 && i + 1 < argc) ||
		    strncmp(argv[i], "--size=", 7) == 0) {
			const char *v = argv[i][6] == '=' ? argv[i] + 7 : argv[++i];

			if (!parse_size(v, &size)) {
				fprintf(stderr, "machvm map: bad size %s\n", v);
				return 2;
			}
			have_size = 1;
		} else if (argv[i][0] == '-') {
			fprintf(stderr, "machvm map: unknown option %s (try machvm --help)\n", argv[i]);
			return 2;
		} else if (name == NULL)
			name = argv[i];
		else {
			fprintf(stderr, "machvm map: one name only\n");
			return 2;
		}
	}
	if (name == NULL) {
		fprintf(stderr, "machvm map: which name? (machvm map NAME [--size N])\n");
		return 2;
	}
	if (!name_valid(name)) {
		fprintf(stderr, "machvm map: bad name '%s' (letters, digits and ._-+@:, not "
		    "starting with a dot, at most %zu characters)\n", name,
		    sizeof(netname_name_t) - 1);
		return 2;
	}
	/* Before the kernel starts: its handler chains to ours (see mvm_vm_available). */
	memset(&sact, 0, sizeof(sact));
	sact.sa_sigaction = map_sigbus;
	sact.sa_flags = SA_SIGINFO;
	sigemptyset(&sact.sa_mask);
	sigaction(SIGBUS, &sact, NULL);
	if ((rc = need_kernel("map")) != 0)
		return rc;
	rc = 1;
	if (tracing)
		mvm_trace_set(trace_cb, NULL);
	kr = netname_look_up(name_server_port, "", name, &obj);
	if (kr != KERN_SUCCESS) {
		fprintf(stderr, "machvm map: %s: %s\n", name, kr == NETNAME_NOT_CHECKED_IN ?
		    "no such name (is machvm serve running, with the same MACHVM_RUNTIME_DIR?)" :
		    mvm_errname(kr));
		goto out;
	}
	if (!have_size && (kr = info_query(name, &size, &flags)) != KERN_SUCCESS) {
		netname_name_t iname;

		(void)info_name(iname, sizeof(iname), name);
		fprintf(stderr, "machvm map: %s: cannot learn the object's size from %s (%s); "
		    "give --size\n", name, iname, mvm_errname(kr));
		goto out;
	}
	say("machvm map: %s: %llu bytes%s\n", name, (unsigned long long)size,
	    have_size ? " (--size)" : (flags & INFO_READONLY) ? ", read-only" : "");
	sha256_init(&sh);
	maplen = (vm_size_t)((size + ps - 1) / ps * ps);
	if (maplen > 0) {
		kr = vm_map(mach_task_self(), &addr, maplen, 0, TRUE, obj, 0, FALSE, VM_PROT_READ,
		    VM_PROT_READ, VM_INHERIT_NONE);
		if (kr != KERN_SUCCESS) {
			fprintf(stderr, "machvm map: %s: vm_map: %s\n", name, mach_error_string(kr));
			goto out;
		}
		(void)mvm_vm_object_set_cluster(obj, 16);
		if (read_mapping(name, addr, size, &sh, &secs) != 0)
			goto out; /* the mapping stays: after a SIGBUS it is the kernel's to clean up */
	}
	sha256_final(&sh, digest);
	sha256_hex(digest, hex);
	if (maplen > 0)
		say("machvm map: %s: %llu pages read through the mapping in %.3f s (%.1f MB/s)\n",
		    name, (unsigned long long)(maplen / ps), secs,
		    secs > 0 ? (double)size / secs / 1e6 : 0.0);
	printf("size %llu\nsha256 %s\n", (unsigned long long)size, hex);
	if (maplen > 0) {
		print_stats(obj, NULL);
		kr = vm_deallocate(mach_task_self(), addr, maplen);
		if (kr != KERN_SUCCESS) {
			fprintf(stderr, "machvm map: vm_deallocate: %s\n", mach_error_string(kr));
			goto out;
		}
	}
	rc = 0;
out:
	if (obj != MACH_PORT_NULL)
		(void)mach_port_deallocate(mach_task_self(), obj);
	if (tracing == 1)
		trace_flush();
	mvm_trace_set(NULL, NULL);
	return rc;
}

static void
usage(FILE *f)
{
	fprintf(f,
	    "usage: machvm [--quiet] [--trace] COMMAND [ARGS]\n"
	    "\n"
	    "Mach external memory management on Linux.\n"
	    "\n"
	    "commands:\n"
	    "  demo                 serve a file with the file pager, map it, read and write\n"
	    "                       it through plain memory, sync, and explain the messages\n"
	    "  stat [--write] FILE  map FILE through the file pager, touch every page (and\n"
	    "                       rewrite it with --write), sync, print statistics\n"
	    "  ipc-demo             two threads talk through Mach ports, step by step\n"
	    "  serve file PATH --name NAME [--readonly]\n"
	    "                       serve PATH with the file pager to other processes: check\n"
	    "                       in NAME (the memory object) and NAME.info (its size, a\n"
	    "                       sync request); print a line starting with \"ready:\";\n"
	    "                       on SIGINT or SIGTERM write every dirty page and exit\n"
	    "  serve shm --name NAME --size SIZE\n"
	    "                       serve SIZE bytes of zero-filled shared memory that every\n"
	    "                       process mapping NAME sees coherently (one writer or many\n"
	    "                       readers per page); names as above; on SIGINT or SIGTERM\n"
	    "                       exit (processes still mapping it get SIGBUS on faults)\n"
	    "  map NAME [--size N]  look NAME up, map it, read every page through the\n"
	    "                       mapping, print \"size N\" and \"sha256 HEX\" (the digest\n"
	    "                       sha256sum prints for the file); --size: do not ask\n"
	    "                       NAME.info (N may end in K, M or G)\n"
	    "  version              print the version\n"
	    "\n"
	    "options:\n"
	    "  -t, --trace   print every memory object message, decoded, one per line\n"
	    "  -q, --quiet   print only errors\n"
	    "  -h, --help    this text\n"
	    "\n"
	    "environment: MACHVM_RUNTIME_DIR, the directory where names are checked in\n"
	    "\n"
	    "exit status: 0 success, 1 failure, 2 bad usage, 77 no usable userfaultfd here\n");
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "trace", no_argument, NULL, 't' },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	while ((c = getopt_long(argc, argv, "+hqt", opts, NULL)) != -1) {
		switch (c) {
		case 'h':
			usage(stdout);
			return 0;
		case 'q':
			quiet = 1;
			break;
		case 't':
			tracing = 2;
			break;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind >= argc) {
		usage(stderr);
		return 2;
	}
	if (strcmp(argv[optind], "demo") == 0)
		return cmd_demo();
	if (strcmp(argv[optind], "stat") == 0)
		return cmd_stat(argc - optind - 1, argv + optind + 1);
	if (strcmp(argv[optind], "serve") == 0)
		return cmd_serve(argc - optind - 1, argv + optind + 1);
	if (strcmp(argv[optind], "map") == 0)
		return cmd_map(argc - optind - 1, argv + optind + 1);
	if (strcmp(argv[optind], "ipc-demo") == 0) {
		if (tracing)
			mvm_trace_set(trace_cb, NULL);
		return cmd_ipc_demo();
	}
	if (strcmp(argv[optind], "version") == 0) {
		printf("machvm %s\n", MVM_VERSION_STRING);
		return 0;
	}
	fprintf(stderr, "machvm: unknown command '%s' (try machvm --help)\n", argv[optind]);
	return 2;
}
