/*
 * tools/machvm.c: the machvm command.
 *
 *   machvm demo     two threads talk through Mach ports and messages; every step is
 *                   printed (later versions of the demo serve a file through a pager)
 *   machvm version  print the version
 *
 * Exit codes: 0 success, 1 the demonstration failed, 2 bad usage.
 */
#include <getopt.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mach/mach.h>
#include <machvm/machvm.h>

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
cmd_demo(void)
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

static void
usage(FILE *f)
{
	fprintf(f,
	    "usage: machvm [--quiet] COMMAND\n"
	    "\n"
	    "Mach external memory management on Linux.\n"
	    "\n"
	    "commands:\n"
	    "  demo      show Mach IPC between two threads, step by step\n"
	    "  version   print the version\n"
	    "\n"
	    "options:\n"
	    "  -q, --quiet   print only errors\n"
	    "  -h, --help    this text\n"
	    "\n"
	    "exit status: 0 success, 1 failure, 2 bad usage\n");
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "quiet", no_argument, NULL, 'q' },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	while ((c = getopt_long(argc, argv, "+hq", opts, NULL)) != -1) {
		switch (c) {
		case 'h':
			usage(stdout);
			return 0;
		case 'q':
			quiet = 1;
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
	if (strcmp(argv[optind], "version") == 0) {
		printf("machvm %s\n", MVM_VERSION_STRING);
		return 0;
	}
	fprintf(stderr, "machvm: unknown command '%s' (try machvm --help)\n", argv[optind]);
	return 2;
}
