/*
 * tests/support/mvm_mgr.c: the scripted memory manager; see mvm_mgr.h.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/wait.h>

#include <machvm/memory_object.h>
#include <machvm/vm.h>
#include "mvm_test.h"
#include "mvm_mgr.h"

unsigned char
mvm_mgr_pattern(vm_offset_t off)
{
	return (unsigned char)((off / 4096) * 7 + (off % 4096));
}

static void
logf_(struct mvm_mgr *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
logf_(struct mvm_mgr *m, const char *fmt, ...)
{
	char buf[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	pthread_mutex_lock(&m->mtx);
	if (m->nlog < MVM_MGR_LOG)
		m->log[m->nlog++] = strdup(buf);
	pthread_cond_broadcast(&m->cond);
	pthread_mutex_unlock(&m->mtx);
}

kern_return_t
mvm_mgr_supply(struct mvm_mgr *m, vm_offset_t off, vm_size_t len, vm_prot_t lock,
    boolean_t precious, mach_port_t reply_to)
{
	size_t pg = off / 4096;

	if (pg + len / 4096 > MVM_MGR_PAGES)
		return KERN_INVALID_ARGUMENT;
	return memory_object_data_supply(m->ctl, off, (vm_offset_t)m->store[pg], (mach_msg_type_number_t)len,
	    FALSE, lock, precious, reply_to);
}

static kern_return_t
o_init(void *ctx, memory_object_t obj, mach_port_seqno_t seqno, memory_object_control_t ctl,
    memory_object_name_t name, vm_size_t page_size)
{
	struct mvm_mgr *m = ctx;

	(void)obj;
	(void)seqno;
	/* Publish the ports before the log line a test may be waiting for. */
	pthread_mutex_lock(&m->mtx);
	m->ctl = ctl;
	m->name = name;
	m->inits++;
	pthread_mutex_unlock(&m->mtx);
	logf_(m, "init page_size=%lu", (unsigned long)page_size);
	if (m->policy.init != NULL && m->policy.init(m, ctl))
		return KERN_SUCCESS;
	if (!m->no_ready)
		(void)memory_object_ready(ctl, m->may_cache, MEMORY_OBJECT_COPY_DELAY);
	return KERN_SUCCESS;
}

static kern_return_t
o_terminate(void *ctx, memory_object_t obj, mach_port_seqno_t seqno, memory_object_control_t ctl,
    memory_object_name_t name)
{
	struct mvm_mgr *m = ctx;

	(void)obj;
	(void)seqno;
	logf_(m, "terminate");
	/* The control and name receive rights arrive here: destroy them (with every send
	 * right earlier messages gave us under the same names). */
	(void)mach_port_destroy(mach_task_self(), ctl);
	(void)mach_port_destroy(mach_task_self(), name);
	pthread_mutex_lock(&m->mtx);
	m->terminated++;
	pthread_cond_broadcast(&m->cond);
	if (m->ctl == ctl)
		m->ctl = MACH_PORT_NULL;
	pthread_mutex_unlock(&m->mtx);
	return KERN_SUCCESS;
}

static kern_return_t
o_data_request(void *ctx, memory_object_t obj, mach_port_seqno_t seqno,
    memory_object_control_t ctl, vm_offset_t off, vm_size_t len, vm_prot_t access)
{
	struct mvm_mgr *m = ctx;

	(void)obj;
	(void)seqno;
	logf_(m, "data_request off=%lu len=%lu access=%d", (unsigned long)off, (unsigned long)len,
	    access);
	if (m->policy.data_request != NULL && m->policy.data_request(m, ctl, off, len, access))
		return KERN_SUCCESS;
	if (!m->manual_requests)
		(void)mvm_mgr_supply(m, off, len, m->supply_lock, m->supply_precious, MACH_PORT_NULL);
	return KERN_SUCCESS;
}

static kern_return_t
o_data_unlock(void *ctx, memory_object_t obj, mach_port_seqno_t seqno,
    memory_object_control_t ctl, vm_offset_t off, vm_size_t len, vm_prot_t access)
{
	struct mvm_mgr *m = ctx;

	(void)obj;
	(void)seqno;
	logf_(m, "data_unlock off=%lu len=%lu access=%d", (unsigned long)off, (unsigned long)len,
	    access);
	if (m->policy.data_unlock != NULL && m->policy.data_unlock(m, ctl, off, len, access))
		return KERN_SUCCESS;
	if (!m->manual_unlocks)
		(void)memory_object_lock_request(ctl, off, len, MEMORY_OBJECT_RETURN_NONE, FALSE,
		    VM_PROT_NONE, MACH_PORT_NULL);
	return KERN_SUCCESS;
}

static kern_return_t
o_data_return(void *ctx, memory_object_t obj, mach_port_seqno_t seqno,
    memory_object_control_t ctl, vm_offset_t off, vm_offset_t data, mach_msg_type_number_t count,
    boolean_t dirty, boolean_t kernel_copy)
{
	struct mvm_mgr *m = ctx;

	(void)obj;
	(void)seqno;
	(void)ctl;
	if (off / 4096 + count / 4096 <= MVM_MGR_PAGES)
		memcpy(m->store[off / 4096], (void *)data, count);
	(void)vm_deallocate(mach_task_self(), data, count);
	pthread_mutex_lock(&m->mtx);
	m->returns++;
	pthread_mutex_unlock(&m->mtx);
	logf_(m, "data_return off=%lu len=%u dirty=%d kcopy=%d", (unsigned long)off, count, dirty,
	    kernel_copy);
	return KERN_SUCCESS;
}

static kern_return_t
o_lock_completed(void *ctx, memory_object_t reply, mach_port_seqno_t seqno,
    memory_object_control_t ctl, vm_offset_t off, vm_size_t len)
{
	struct mvm_mgr *m = ctx;

	(void)reply;
	(void)seqno;
	(void)ctl;
	logf_(m, "lock_completed off=%lu len=%lu", (unsigned long)off, (unsigned long)len);
	return KERN_SUCCESS;
}

static kern_return_t
o_supply_completed(void *ctx, memory_object_t reply, mach_port_seqno_t seqno,
    memory_object_control_t ctl, vm_offset_t off, vm_size_t len, kern_return_t result,
    vm_offset_t error_offset)
{
	struct mvm_mgr *m = ctx;

	(void)reply;
	(void)seqno;
	(void)ctl;
	logf_(m, "supply_completed off=%lu len=%lu result=%s error_offset=%lu", (unsigned long)off,
	    (unsigned long)len, mvm_errname(result), (unsigned long)error_offset);
	return KERN_SUCCESS;
}

static kern_return_t
o_change_completed(void *ctx, memory_object_t reply, mach_port_seqno_t seqno, boolean_t may_cache,
    memory_object_copy_strategy_t strategy)
{
	struct mvm_mgr *m = ctx;

	(void)reply;
	(void)seqno;
	logf_(m, "change_completed may_cache=%d strategy=%d", may_cache, strategy);
	return KERN_SUCCESS;
}

static const struct mvm_memory_object_ops mgr_ops = {
	.version = MVM_MEMORY_OBJECT_OPS_VERSION,
	.init = o_init,
	.terminate = o_terminate,
	.data_request = o_data_request,
	.data_unlock = o_data_unlock,
	.lock_completed = o_lock_completed,
	.supply_completed = o_supply_completed,
	.data_return = o_data_return,
	.change_completed = o_change_completed,
};

static __thread struct mvm_mgr *current;

static boolean_t
mgr_demux(mach_msg_header_t *in, mach_msg_header_t *out)
{
	boolean_t ok = mvm_memory_object_server(&mgr_ops, current, in, out);

	/* Drop the control send right each message carries, once we are done with it
	 * (the name stays while the manager holds others or the receive right). */
	return ok;
}

static void *
mgr_main(void *arg)
{
	struct mvm_mgr *m = arg;

	current = m;
	(void)mach_msg_server(mgr_demux, 8192, m->object);
	return NULL;
}

struct mvm_mgr *
mvm_mgr_start(void)
{
	struct mvm_mgr *m = calloc(1, sizeof(*m));

	assert_non_null(m);
	pthread_mutex_init(&m->mtx, NULL);
	pthread_cond_init(&m->cond, NULL);
	for (size_t pg = 0; pg < MVM_MGR_PAGES; pg++)
		for (size_t b = 0; b < 4096; b++)
			m->store[pg][b] = mvm_mgr_pattern(pg * 4096 + b);
	assert_kr(mach_port_allocate(mach_task_self(), MACH_PORT_RIGHT_RECEIVE, &m->object),
	    KERN_SUCCESS);
	assert_kr(mach_port_insert_right(mach_task_self(), m->object, m->object,
	    MACH_MSG_TYPE_MAKE_SEND), KERN_SUCCESS);
	assert_int_equal(pthread_create(&m->thread, NULL, mgr_main, m), 0);
	return m;
}

void
mvm_mgr_clear(struct mvm_mgr *m)
{
	pthread_mutex_lock(&m->mtx);
	for (size_t i = 0; i < m->nlog; i++)
		free(m->log[i]);
	m->nlog = 0;
	pthread_mutex_unlock(&m->mtx);
}

void
mvm_mgr_stop(struct mvm_mgr *m)
{
	struct timespec dl;

	/*
	 * A terminate still queued would die with the port, taking the control and name
	 * receive rights with it and leaving our send rights to them as dead names: take it
	 * first (bounded: a test may stop a manager whose object is still mapped).
	 */
	clock_gettime(CLOCK_REALTIME, &dl);
	dl.tv_sec += 1;
	pthread_mutex_lock(&m->mtx);
	while (m->terminated < m->inits && pthread_cond_timedwait(&m->cond, &m->mtx, &dl) == 0)
		;
	pthread_mutex_unlock(&m->mtx);
	/* Destroying the receive right ends mach_msg_server with MACH_RCV_PORT_DIED. */
	assert_kr(mach_port_destroy(mach_task_self(), m->object), KERN_SUCCESS);
	pthread_join(m->thread, NULL);
	mvm_mgr_clear(m);
	pthread_mutex_destroy(&m->mtx);
	pthread_cond_destroy(&m->cond);
	free(m);
}

int
mvm_mgr_count(struct mvm_mgr *m, const char *prefix)
{
	int n = 0;

	pthread_mutex_lock(&m->mtx);
	for (size_t i = 0; i < m->nlog; i++)
		if (strncmp(m->log[i], prefix, strlen(prefix)) == 0)
			n++;
	pthread_mutex_unlock(&m->mtx);
	return n;
}

int
mvm_mgr_wait(struct mvm_mgr *m, const char *prefix, int n, int timeout_ms)
{
	struct timespec dl;
	int c;

	clock_gettime(CLOCK_REALTIME, &dl);
	dl.tv_sec += timeout_ms / 1000;
	dl.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
	if (dl.tv_nsec >= 1000000000L) {
		dl.tv_sec++;
		dl.tv_nsec -= 1000000000L;
	}
	for (;;) {
		c = mvm_mgr_count(m, prefix);
		if (c >= n)
			return c;
		pthread_mutex_lock(&m->mtx);
		int r = pthread_cond_timedwait(&m->cond, &m->mtx, &dl);
		pthread_mutex_unlock(&m->mtx);
		if (r == ETIMEDOUT)
			return mvm_mgr_count(m, prefix);
	}
}

void
mvm_mgr_dump(struct mvm_mgr *m)
{
	pthread_mutex_lock(&m->mtx);
	for (size_t i = 0; i < m->nlog; i++)
		print_message("  mgr[%zu]: %s\n", i, m->log[i]);
	pthread_mutex_unlock(&m->mtx);
}

void
mvm_mgr_expect(struct mvm_mgr *m, const char *const *lines, const char *file, int line)
{
	size_t n = 0;

	while (lines[n] != NULL)
		n++;
	/* Give in-flight messages a moment to arrive: wait for the count, then compare. */
	for (int i = 0; i < 200; i++) {
		pthread_mutex_lock(&m->mtx);
		size_t have = m->nlog;
		pthread_mutex_unlock(&m->mtx);
		if (have >= n)
			break;
		struct timespec ts = { 0, 5000000 };
		nanosleep(&ts, NULL);
	}
	pthread_mutex_lock(&m->mtx);
	bool ok = m->nlog == n;
	for (size_t i = 0; ok && i < n; i++)
		ok = strcmp(m->log[i], lines[i]) == 0;
	pthread_mutex_unlock(&m->mtx);
	if (!ok) {
		print_message("%s:%d: manager log differs; expected:\n", file, line);
		for (size_t i = 0; i < n; i++)
			print_message("  want[%zu]: %s\n", i, lines[i]);
		mvm_mgr_dump(m);
		fail_msg("%s:%d: unexpected message sequence", file, line);
	}
	mvm_mgr_clear(m);
}

bool mvm_test_probe_in_child;

/*
 * Whether the kernel can start here. mvm_vm_available() starts the kernel, and a process
 * whose kernel has started must not fork processes that map objects: the cross-process
 * tests (mvm_test_probe_in_child set) have a child process asked, once; the answer is
 * kept, so later calls do not fork (the process may have threads by then).
 */
static kern_return_t
probe_vm(char *why, size_t len)
{
	static int known;             /* 0: not asked; 1: available; 2: not */
	static char known_why[200];
	int fds[2], st = 0;
	pid_t pid;
	ssize_t n;

	if (!mvm_test_probe_in_child)
		return mvm_vm_available(why, len);
	if (known == 0) {
		if (pipe(fds) != 0)
			fail_msg("pipe: %s", strerror(errno));
		fflush(stdout);
		fflush(stderr);
		if ((pid = fork()) < 0)
			fail_msg("fork: %s", strerror(errno));
		if (pid == 0) {
			char buf[200] = "";

			close(fds[0]);
			if (mvm_vm_available(buf, sizeof(buf)) == KERN_SUCCESS)
				_exit(0);
			(void)!write(fds[1], buf, strlen(buf));
			_exit(1);
		}
		close(fds[1]);
		n = read(fds[0], known_why, sizeof(known_why) - 1);
		known_why[n > 0 ? n : 0] = '\0';
		close(fds[0]);
		while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
			;
		known = WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 1 : 2;
		if (known == 2 && known_why[0] == '\0')
			snprintf(known_why, sizeof(known_why), "the probe process failed (status 0x%x)",
			    (unsigned)st);
	}
	snprintf(why, len, "%s", known_why);
	return known == 1 ? KERN_SUCCESS : KERN_FAILURE;
}

void
mvm_test_require_uffd(void)
{
	char why[200];
	const char *req = getenv("MACHVM_REQUIRE_UFFD");

	if (probe_vm(why, sizeof(why)) == KERN_SUCCESS)
		return;
	if (req != NULL && strcmp(req, "1") == 0)
		fail_msg("userfaultfd required (MACHVM_REQUIRE_UFFD=1) but unavailable: %s", why);
	print_message("skipped: %s\n", why);
	skip();
}
