/*
 * tests/support/mvm_node_test.h: helpers for the tests of ports across processes (each
 * test program that includes it owns a private copy, as with mvm_vmtest.h).
 *
 * The model. The cmocka process never becomes a node: a forked child of a process whose
 * node has started is not supported, so every test forks its actors (nodes) from the
 * cmocka process, which only orchestrates over pipes and asserts on how the actors
 * ended. Each actor:
 * - runs one function and _exit(0)s when it returns; a failed check prints where and
 *   why and _exit(NT_FAILED); an alarm (SIGALRM, default action) ends an actor that
 *   hangs, so a hang fails the test instead of stalling it;
 * - talks to the orchestrator through two pipes: nt_tell() reports a number, nt_await()
 *   waits for an order (both with timeouts).
 * The orchestrator gives every test a fresh runtime directory (MACHVM_RUNTIME_DIR) in
 * nt_setup() and kills and reaps whatever is left in nt_teardown().
 */
#ifndef MVM_NODE_TEST_H
#define MVM_NODE_TEST_H

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <mach/netname.h>
#include <mach/notify.h>
#include <machvm/node.h>
#include "mvm_test.h"
#include "mvm_mgr.h"

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"

#define NT_FAILED 3               /* exit status of an actor whose check failed */
#define NT_ALARM_S 40             /* an actor that runs longer than this is killed */
#ifndef NT_TMO
#define NT_TMO 10000              /* ms: every wait in an actor gives up after this */
#endif
#define NT_MAX 32                 /* actors per test */

#define SELF mach_task_self()

/* ---- clocks --------------------------------------------------------------------------- */

static uint64_t
nt_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void
nt_sleep_ms(unsigned ms)
{
	struct timespec ts = { ms / 1000u, (long)(ms % 1000u) * 1000000L };

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* ---- actors: failing ---------------------------------------------------------------- */

static struct {
	const char *name;             /* in an actor: its name; NULL in the orchestrator */
	int to_parent, from_parent;
} nt_me;

static void nt_fail(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4), noreturn));

static void
nt_fail(const char *file, int line, const char *fmt, ...)
{
	char buf[512];
	va_list ap;
	int n;

	n = snprintf(buf, sizeof(buf), "[%s pid %d] %s:%d: ", nt_me.name ? nt_me.name : "parent",
	    (int)getpid(), file, line);
	va_start(ap, fmt);
	vsnprintf(buf + n, sizeof(buf) - (size_t)n, fmt, ap);
	va_end(ap);
	fprintf(stderr, "%s\n", buf);
	fflush(stderr);
	_exit(NT_FAILED);
}

/* Checks for actors (cmocka's assertions would longjmp into the forked copy of the
 * runner and go on running the other tests in the child). */
#define NT_CHECK(c) do { if (!(c)) nt_fail(__FILE__, __LINE__, "check failed: %s", #c); } while (0)
#define NT_EQ(a, b) do { \
	long long nt_a_ = (long long)(a), nt_b_ = (long long)(b); \
	if (nt_a_ != nt_b_) \
		nt_fail(__FILE__, __LINE__, "%s == %lld, expected %s == %lld", #a, nt_a_, #b, nt_b_); \
} while (0)
#define NT_KR(expr, want) do { \
	kern_return_t nt_k_ = (expr), nt_w_ = (want); \
	if (nt_k_ != nt_w_) \
		nt_fail(__FILE__, __LINE__, "%s returned %s (0x%x), expected %s (0x%x)", #expr, \
		    mvm_errname(nt_k_), (unsigned)nt_k_, mvm_errname(nt_w_), (unsigned)nt_w_); \
} while (0)

/* ---- actors: the pipes ---------------------------------------------------------------- */

static bool
nt_read_full(int fd, void *buf, size_t len, int timeout_ms)
{
	uint8_t *p = buf;
	uint64_t end = nt_now_ms() + (uint64_t)timeout_ms;

	while (len > 0) {
		struct pollfd pfd = { fd, POLLIN, 0 };
		int64_t left = (int64_t)(end - nt_now_ms());
		ssize_t n;

		if (left <= 0)
			return false;
		if (poll(&pfd, 1, (int)left) <= 0)
			continue;
		n = read(fd, p, len);
		if (n == 0)
			return false;
		if (n < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			return false;
		}
		p += n;
		len -= (size_t)n;
	}
	return true;
}

/* Actor: report v to the orchestrator. */
static void
nt_tell(uint64_t v)
{
	if (write(nt_me.to_parent, &v, sizeof(v)) != (ssize_t)sizeof(v))
		nt_fail(__FILE__, __LINE__, "cannot report to the orchestrator");
}

/* Actor: wait for the orchestrator's next order. */
static uint64_t
nt_await(void)
{
	uint64_t v;

	if (!nt_read_full(nt_me.from_parent, &v, sizeof(v), NT_TMO))
		nt_fail(__FILE__, __LINE__, "no order from the orchestrator");
	return v;
}

/* Actor: the orchestrator's next order if one is there, else -1. */
static int64_t
nt_poll_order(void)
{
	uint64_t v;
	struct pollfd pfd = { nt_me.from_parent, POLLIN, 0 };

	if (poll(&pfd, 1, 0) <= 0)
		return -1;
	if (!nt_read_full(nt_me.from_parent, &v, sizeof(v), NT_TMO))
		return -1;
	return (int64_t)v;
}

/* ---- the orchestrator --------------------------------------------------------------- */

struct nt_actor {
	const char *name;
	pid_t pid;
	int to, from;                 /* orchestrator's ends */
	int status;
	bool reaped;
};

static struct nt_actor nt_actors[NT_MAX];
static unsigned nt_nactors;
static char nt_dir[64];

static void
nt_rm_dir(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	char path[512];

	if (d == NULL)
		return;
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		(void)unlink(path);
	}
	closedir(d);
	(void)rmdir(dir);
}

static void nt_forget_all(void);

/* The orchestrator's exit removes a directory a failed test left (actors _exit). */
static void
nt_rm_dir_at_exit(void)
{
	if (nt_me.name == NULL && nt_dir[0] != '\0')
		nt_rm_dir(nt_dir);
}

static int
nt_setup(void **state)
{
	static bool registered;

	(void)state;
	if (!registered) {
		atexit(nt_rm_dir_at_exit);
		registered = true;
	}
	if (nt_dir[0] != '\0') {
		/* Left by a test whose teardown did not run. */
		nt_forget_all();
		nt_rm_dir(nt_dir);
	}
	mvm_test_probe_in_child = true; /* this process never starts machvm */
	signal(SIGPIPE, SIG_IGN);       /* an order to an actor that died fails, not kills */
	snprintf(nt_dir, sizeof(nt_dir), "/tmp/mvm-nodetest-XXXXXX");
	if (mkdtemp(nt_dir) == NULL)
		return -1;
	setenv("MACHVM_RUNTIME_DIR", nt_dir, 1);
	nt_nactors = 0;
	return 0;
}

/* Kill and reap the actors still running, forget them all (the directory stays). */
static void
nt_forget_all(void)
{
	for (unsigned i = 0; i < nt_nactors; i++) {
		struct nt_actor *a = &nt_actors[i];

		if (!a->reaped) {
			kill(a->pid, SIGKILL);
			(void)waitpid(a->pid, &a->status, 0);
			a->reaped = true;
		}
		close(a->to);
		close(a->from);
	}
	nt_nactors = 0;
}

static int
nt_teardown(void **state)
{
	(void)state;
	nt_forget_all();
	nt_rm_dir(nt_dir);
	nt_dir[0] = '\0';
	return 0;
}

/* Fork an actor that runs fn(arg). */
static struct nt_actor *
nt_spawn(const char *name, void (*fn)(long), long arg)
{
	int up[2], down[2];
	struct nt_actor *a;
	pid_t pid;

	assert_true(nt_nactors < NT_MAX);
	assert_int_equal(pipe2(up, O_CLOEXEC), 0);
	assert_int_equal(pipe2(down, O_CLOEXEC), 0);
	fflush(stdout);
	fflush(stderr);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		/* The other actors' pipes are not ours: close them, so that their ends see EOF
		 * when their peer goes. */
		for (unsigned i = 0; i < nt_nactors; i++) {
			close(nt_actors[i].to);
			close(nt_actors[i].from);
		}
		close(up[0]);
		close(down[1]);
		nt_me.name = name;
		nt_me.to_parent = up[1];
		nt_me.from_parent = down[0];
		signal(SIGALRM, SIG_DFL);
		signal(SIGPIPE, SIG_IGN);
		/* cmocka's crash handlers would take a crash for a failed test of the copy
		 * of the runner: an actor that crashes dies of its signal. */
		signal(SIGSEGV, SIG_DFL);
		signal(SIGBUS, SIG_DFL);
		signal(SIGILL, SIG_DFL);
		signal(SIGFPE, SIG_DFL);
		signal(SIGSYS, SIG_DFL);
		alarm(NT_ALARM_S);
		fn(arg);
		_exit(0);
	}
	close(up[1]);
	close(down[0]);
	a = &nt_actors[nt_nactors++];
	memset(a, 0, sizeof(*a));
	a->name = name;
	a->pid = pid;
	a->to = down[1];
	a->from = up[0];
	return a;
}

/* Orchestrator: the actor's next report (the test fails if none comes). */
static uint64_t
nt_hear(struct nt_actor *a)
{
	uint64_t v = 0;

	if (!nt_read_full(a->from, &v, sizeof(v), NT_TMO + 2000))
		fail_msg("actor %s (pid %d) reported nothing (ended or hung)", a->name, (int)a->pid);
	return v;
}

static void
nt_order(struct nt_actor *a, uint64_t v)
{
	if (write(a->to, &v, sizeof(v)) != (ssize_t)sizeof(v))
		fail_msg("cannot give an order to actor %s", a->name);
}

/* Orchestrator: wait for the actor to end (killing it after timeout_ms); its status. */
static int
nt_reap(struct nt_actor *a, int timeout_ms)
{
	uint64_t end = nt_now_ms() + (uint64_t)timeout_ms;

	if (a->reaped)
		return a->status;
	for (;;) {
		pid_t r = waitpid(a->pid, &a->status, WNOHANG);

		if (r == a->pid)
			break;
		if (nt_now_ms() > end) {
			kill(a->pid, SIGKILL);
			(void)waitpid(a->pid, &a->status, 0);
			a->reaped = true;
			fail_msg("actor %s (pid %d) did not finish within %d ms", a->name, (int)a->pid,
			    timeout_ms);
		}
		nt_sleep_ms(5);
	}
	a->reaped = true;
	return a->status;
}

/* Orchestrator: the actor must end by itself, successfully. */
static void
nt_expect_ok(struct nt_actor *a)
{
	int st = nt_reap(a, NT_TMO + 5000);

	if (WIFSIGNALED(st))
		fail_msg("actor %s (pid %d) died of signal %d%s", a->name, (int)a->pid, WTERMSIG(st),
		    WTERMSIG(st) == SIGALRM ? " (it hung)" : "");
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
		fail_msg("actor %s (pid %d) failed (exit status %d)", a->name, (int)a->pid,
		    WEXITSTATUS(st));
}

static void
nt_kill(struct nt_actor *a)
{
	int st;

	assert_int_equal(kill(a->pid, SIGKILL), 0);
	st = nt_reap(a, 5000);
	assert_true(WIFSIGNALED(st));
	assert_int_equal(WTERMSIG(st), SIGKILL);
}

/* ---- actors: Mach helpers ------------------------------------------------------------- */

static mach_port_t
nt_port(void)
{
	mach_port_t p = MACH_PORT_NULL;

	NT_KR(mach_port_allocate(SELF, MACH_PORT_RIGHT_RECEIVE, &p), KERN_SUCCESS);
	return p;
}

static mach_port_t
nt_port_send(void)
{
	mach_port_t p = nt_port();

	NT_KR(mach_port_insert_right(SELF, p, p, MACH_MSG_TYPE_MAKE_SEND), KERN_SUCCESS);
	return p;
}

static mach_port_t
nt_send_once(mach_port_t p)
{
	mach_port_t so = MACH_PORT_NULL;
	mach_msg_type_name_t t = 0;

	NT_KR(mach_port_extract_right(SELF, p, MACH_MSG_TYPE_MAKE_SEND_ONCE, &so, &t), KERN_SUCCESS);
	NT_EQ(t, MACH_MSG_TYPE_PORT_SEND_ONCE);
	return so;
}

static mach_port_type_t
nt_type(mach_port_t name)
{
	mach_port_type_t t = 0;

	if (mach_port_type(SELF, name, &t) != KERN_SUCCESS)
		return 0;
	return t;
}

static mach_port_urefs_t
nt_refs(mach_port_t name, mach_port_right_t right)
{
	mach_port_urefs_t r = 0;

	if (mach_port_get_refs(SELF, name, right, &r) != KERN_SUCCESS)
		return 0;
	return r;
}

static mach_port_status_t
nt_status(mach_port_t p)
{
	mach_port_status_t st;

	memset(&st, 0, sizeof(st));
	NT_KR(mach_port_get_receive_status(SELF, p, &st), KERN_SUCCESS);
	return st;
}

/* Request notification `variant` about `name`, sent to receive right `notify`. */
static void
nt_request(mach_port_t name, mach_msg_id_t variant, mach_port_mscount_t sync, mach_port_t notify)
{
	mach_port_t prev = MACH_PORT_DEAD;

	NT_KR(mach_port_request_notification(SELF, name, variant, sync, notify,
	    MACH_MSG_TYPE_MAKE_SEND_ONCE, &prev), KERN_SUCCESS);
	NT_EQ(prev, MACH_PORT_NULL);
}

static void
nt_check_in(const char *name, mach_port_t port)
{
	NT_KR(netname_check_in(name_server_port, name, MACH_PORT_NULL, port), NETNAME_SUCCESS);
}

static void
nt_check_out(const char *name)
{
	NT_KR(netname_check_out(name_server_port, name, MACH_PORT_NULL), NETNAME_SUCCESS);
}

/* A send right to the port checked in as `name`, waiting for the check-in. */
static mach_port_t
nt_look_up(const char *name)
{
	uint64_t end = nt_now_ms() + NT_TMO;
	mach_port_t p = MACH_PORT_NULL;
	kern_return_t kr;

	for (;;) {
		kr = netname_look_up(name_server_port, "", name, &p);
		if (kr == NETNAME_SUCCESS)
			return p;
		if (kr != NETNAME_NOT_CHECKED_IN || nt_now_ms() > end)
			nt_fail(__FILE__, __LINE__, "netname_look_up(%s): %s", name, mvm_errname(kr));
		nt_sleep_ms(2);
	}
}

/* Messages the tests exchange: a header and two numbers; one right; a receive buffer. */
struct nt_msg {
	mach_msg_header_t h;
	mach_msg_type_t t;
	uint32_t a, b;
};

struct nt_pmsg {
	mach_msg_header_t h;
	mach_msg_type_t t;
	mach_port_t port;
	mach_msg_type_t t2;
	uint32_t a, b;
};

typedef union {
	mach_msg_header_t h;
	struct nt_msg m;
	struct nt_pmsg pm;
	mach_no_senders_notification_t ns;
	mach_dead_name_notification_t dn;
	mach_send_once_notification_t so;
	_Alignas(8) char buf[1024];
} nt_buf;

static void
nt_set_type(mach_msg_type_t *t, mach_msg_type_name_t name, unsigned size, unsigned number)
{
	memset(t, 0, sizeof(*t));
	t->msgt_name = name;
	t->msgt_size = size;
	t->msgt_number = number;
	t->msgt_inline = 1;
}

/* Send id, a, b to dest (disposition ddisp), with an optional reply right. */
static mach_msg_return_t
nt_send(mach_port_t dest, mach_msg_type_name_t ddisp, mach_port_t reply,
    mach_msg_type_name_t rdisp, mach_msg_id_t id, uint32_t a, uint32_t b)
{
	struct nt_msg m;

	memset(&m, 0, sizeof(m));
	m.h.msgh_bits = MACH_MSGH_BITS(ddisp, reply != MACH_PORT_NULL ? rdisp : 0);
	m.h.msgh_size = sizeof(m);
	m.h.msgh_remote_port = dest;
	m.h.msgh_local_port = reply;
	m.h.msgh_id = id;
	nt_set_type(&m.t, MACH_MSG_TYPE_INTEGER_32, 32, 2);
	m.a = a;
	m.b = b;
	return mach_msg(&m.h, MACH_SEND_MSG | MACH_SEND_TIMEOUT, sizeof(m), 0, MACH_PORT_NULL,
	    NT_TMO, MACH_PORT_NULL);
}

/* Send `port` (disposition pdisp) in the body of a message to dest. */
static mach_msg_return_t
nt_send_port(mach_port_t dest, mach_msg_type_name_t ddisp, mach_port_t port,
    mach_msg_type_name_t pdisp, mach_msg_id_t id, uint32_t a)
{
	struct nt_pmsg m;

	memset(&m, 0, sizeof(m));
	m.h.msgh_bits = MACH_MSGH_BITS(ddisp, 0) | MACH_MSGH_BITS_COMPLEX;
	m.h.msgh_size = sizeof(m);
	m.h.msgh_remote_port = dest;
	m.h.msgh_id = id;
	nt_set_type(&m.t, pdisp, 32, 1);
	m.port = port;
	nt_set_type(&m.t2, MACH_MSG_TYPE_INTEGER_32, 32, 2);
	m.a = a;
	return mach_msg(&m.h, MACH_SEND_MSG | MACH_SEND_TIMEOUT, sizeof(m), 0, MACH_PORT_NULL,
	    NT_TMO, MACH_PORT_NULL);
}

static mach_msg_return_t
nt_recv(mach_port_t port, nt_buf *u, unsigned timeout_ms)
{
	memset(u, 0, sizeof(*u));
	return mach_msg(&u->h, MACH_RCV_MSG | MACH_RCV_TIMEOUT, 0, sizeof(*u), port, timeout_ms,
	    MACH_PORT_NULL);
}

/* Receive one message with id `id` on port (the test fails on anything else). */
static void
nt_expect(mach_port_t port, nt_buf *u, mach_msg_id_t id)
{
	mach_msg_return_t mr = nt_recv(port, u, NT_TMO);

	if (mr != MACH_MSG_SUCCESS)
		nt_fail(__FILE__, __LINE__, "waiting for message %d: %s", id, mvm_errname(mr));
	if (u->h.msgh_id != id)
		nt_fail(__FILE__, __LINE__, "got message %d, expected %d", u->h.msgh_id, id);
}

/* Nothing arrives on port for ms milliseconds. */
static void
nt_expect_none(mach_port_t port, unsigned ms)
{
	nt_buf u;
	mach_msg_return_t mr = nt_recv(port, &u, ms);

	if (mr != MACH_RCV_TIMED_OUT)
		nt_fail(__FILE__, __LINE__, "unexpected: %s, message %d", mvm_errname(mr), u.h.msgh_id);
}

static struct mvm_node_stats
nt_stats(void)
{
	struct mvm_node_stats st;

	NT_KR(mvm_node_stats(&st), KERN_SUCCESS);
	return st;
}

/* Wait until this node has `exports` exports and `proxies` proxies (counts settle as the
 * other nodes' control frames arrive). */
#define NT_SETTLE(exports, proxies) nt_settle(__FILE__, __LINE__, (exports), (proxies))
static void
nt_settle(const char *file, int line, uint64_t exports, uint64_t proxies)
{
	uint64_t end = nt_now_ms() + NT_TMO;
	struct mvm_node_stats st;

	for (;;) {
		st = nt_stats();
		if (st.exports == exports && st.proxies == proxies)
			return;
		if (nt_now_ms() > end)
			nt_fail(file, line, "node stats: %llu exports, %llu proxies; expected %llu, %llu",
			    (unsigned long long)st.exports, (unsigned long long)st.proxies,
			    (unsigned long long)exports, (unsigned long long)proxies);
		nt_sleep_ms(2);
	}
}

/* The IPC layer of this actor is quiescent (names checked in must be checked out). */
#define NT_QUIESCENT() nt_quiescent(__FILE__, __LINE__)
static void
nt_quiescent(const char *file, int line)
{
	char buf[256];

	if (mvm_ipc_quiescent(buf, sizeof(buf)) != KERN_SUCCESS)
		nt_fail(file, line, "%s", buf);
}

/* Wait until `name` is a dead name. */
#define NT_WAIT_DEAD(name) nt_wait_dead(__FILE__, __LINE__, (name))
static void
nt_wait_dead(const char *file, int line, mach_port_t name)
{
	uint64_t end = nt_now_ms() + NT_TMO;

	while (!(nt_type(name) & MACH_PORT_TYPE_DEAD_NAME)) {
		if (nt_now_ms() > end)
			nt_fail(file, line, "name 0x%x is not dead (type 0x%x)", name, nt_type(name));
		nt_sleep_ms(2);
	}
}

#pragma GCC diagnostic pop

#endif /* MVM_NODE_TEST_H */
