/*
 * tests/support/mvm_vmtest.h: helpers shared by the kernel and pager tests (included by each test
 * program, which then owns a private copy): threads that touch one byte and report a
 * SIGBUS, the SIGBUS set-up cmocka requires, the scripted manager's control port, and
 * waits on the kernel's statistics.
 *
 * SIGBUS: install on_sigbus with mvm_vmtest_main_setup() in main() before any kernel call
 * (the kernel's handler then chains to it and turns its signals into BUS_OBJERR), and
 * call test_begin() at the start of each test (cmocka swaps the SIGBUS action around
 * every test, so the kernel's handler is put back).
 */
#ifndef MVM_VMTEST_H
#define MVM_VMTEST_H

#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include <machvm/memory_object.h>
#include <machvm/vm.h>
#include "mvm_test.h"
#include "mvm_mgr.h"

#ifndef PG
#define PG 4096
#endif
#ifndef TMO
#define TMO 5000                  /* ms: every wait gives up after this */
#endif

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"

/* ---- SIGBUS in faulting threads ----------------------------------------------------- */

static __thread sigjmp_buf *bus_jb;
static __thread int bus_code;
static __thread void *bus_addr;

static void
on_sigbus(int sig, siginfo_t *si, void *uctx)
{
	(void)uctx;
	if (bus_jb == NULL) {
		/* Not a toucher: die as the default action would. */
		signal(sig, SIG_DFL);
		raise(sig);
		return;
	}
	bus_code = si->si_code;
	bus_addr = si->si_addr;
	siglongjmp(*bus_jb, 1);
}

enum { T_RUNNING, T_DONE, T_SIGBUS };

struct toucher {
	pthread_t th;
	volatile unsigned char *addr;
	bool write;
	unsigned char wval;
	unsigned char val;                /* the byte read */
	unsigned char *page;              /* if set: the page at addr is copied here */
	atomic_int state;
	int code;                         /* si_code of the SIGBUS */
	void *siaddr;                     /* si_addr of the SIGBUS */
	uint64_t t0, t1;                  /* start and end (ns, CLOCK_MONOTONIC) */
	bool joined;
};

static uint64_t
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void *
touch_main(void *arg)
{
	struct toucher *t = arg;
	sigjmp_buf jb;

	t->t0 = now_ns();
	if (sigsetjmp(jb, 1) == 0) {
		bus_jb = &jb;
		if (t->write)
			*t->addr = t->wval;
		else if (t->page != NULL)
			for (size_t i = 0; i < PG; i++)
				t->page[i] = t->addr[i];
		else
			t->val = *t->addr;
		bus_jb = NULL;
		t->t1 = now_ns();
		atomic_store(&t->state, T_DONE);
	} else {
		bus_jb = NULL;
		t->t1 = now_ns();
		t->code = bus_code;
		t->siaddr = bus_addr;
		atomic_store(&t->state, T_SIGBUS);
	}
	return NULL;
}

static void
touch_start(struct toucher *t, vm_address_t addr, bool write, unsigned char wval)
{
	memset(t, 0, sizeof(*t));
	t->addr = (volatile unsigned char *)addr;
	t->write = write;
	t->wval = wval;
	atomic_init(&t->state, T_RUNNING);
	assert_int_equal(pthread_create(&t->th, NULL, touch_main, t), 0);
}

static void
touch_page_start(struct toucher *t, vm_address_t addr, unsigned char *page)
{
	memset(t, 0, sizeof(*t));
	t->addr = (volatile unsigned char *)addr;
	t->page = page;
	atomic_init(&t->state, T_RUNNING);
	assert_int_equal(pthread_create(&t->th, NULL, touch_main, t), 0);
}

static void
sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

/* Wait until the toucher has finished (or TMO); returns its state, joined if finished. */
static int
touch_wait(struct toucher *t)
{
	int s;

	for (int i = 0; i < TMO && (s = atomic_load(&t->state)) == T_RUNNING; i++)
		sleep_ms(1);
	s = atomic_load(&t->state);
	if (s != T_RUNNING && !t->joined) {
		pthread_join(t->th, NULL);
		t->joined = true;
	}
	return s;
}

/* The toucher finished normally (and read `val` if it read). */
#define assert_touch_done(t) assert_int_equal(touch_wait(t), T_DONE)

/* The toucher got SIGBUS with BUS_OBJERR at exactly the address it touched. */
static void
assert_touch_sigbus_(struct toucher *t, const char *file, int line)
{
	int s = touch_wait(t);

	if (s != T_SIGBUS)
		fail_msg("%s:%d: toucher of %p ended with state %d, expected SIGBUS", file, line,
		    (void *)t->addr, s);
	if (t->code != BUS_OBJERR || t->siaddr != (void *)t->addr)
		fail_msg("%s:%d: SIGBUS si_code %d si_addr %p, expected BUS_OBJERR (%d) at %p", file,
		    line, t->code, t->siaddr, BUS_OBJERR, (void *)t->addr);
}
#define assert_touch_sigbus(t) assert_touch_sigbus_((t), __FILE__, __LINE__)

/*
 * The kernel's SIGBUS handler (which chains to on_sigbus), taken in main(). cmocka puts
 * its own handler in place around each test, so each test puts the kernel's back.
 */
static struct sigaction kernel_sigbus;
static bool kernel_sigbus_valid;

static void
test_begin(void)
{
	mvm_test_require_uffd();
	if (kernel_sigbus_valid)
		assert_int_equal(sigaction(SIGBUS, &kernel_sigbus, NULL), 0);
}

/* ---- the manager and the kernel's state ----------------------------------------------- */

/* Runs in the manager thread after it set m->ctl: publish it under m->mtx. */
static bool
hook_init(struct mvm_mgr *m, memory_object_control_t ctl)
{
	(void)ctl;
	pthread_mutex_lock(&m->mtx);
	m->arg = (void *)((uintptr_t)m->arg + 1);
	pthread_cond_broadcast(&m->cond);
	pthread_mutex_unlock(&m->mtx);
	return false; /* and answer as usual */
}

static struct mvm_mgr *
mgr_start(void)
{
	struct mvm_mgr *m = mvm_mgr_start();

	m->policy.init = hook_init;
	return m;
}

/* The control port of the n-th init (waits for it). */
static mach_port_t
mgr_ctl(struct mvm_mgr *m, uintptr_t n)
{
	struct timespec dl;
	mach_port_t ctl;

	clock_gettime(CLOCK_REALTIME, &dl);
	dl.tv_sec += TMO / 1000;
	pthread_mutex_lock(&m->mtx);
	while ((uintptr_t)m->arg < n)
		if (pthread_cond_timedwait(&m->cond, &m->mtx, &dl) == ETIMEDOUT)
			break;
	ctl = (uintptr_t)m->arg >= n ? m->ctl : MACH_PORT_NULL;
	pthread_mutex_unlock(&m->mtx);
	if (!MACH_PORT_VALID(ctl))
		fail_msg("no init number %lu reached the manager", (unsigned long)n);
	return ctl;
}

/*
 * The quiescence check, once the kernel has drained its notify port: giving back a
 * dead-name request at terminate destroys a send-once right, whose notification the
 * kernel's control thread consumes a moment later. A message that stays is still a leak.
 */
static void
quiescent(const char *file, int line)
{
	struct mvm_ipc_stats s;

	for (int i = 0; i < TMO; i++) {
		mvm_ipc_stats(&s);
		if (s.kmsgs == 0)
			break;
		sleep_ms(1);
	}
	mvm_test_quiescent(file, line);
}
#define QUIESCENT() quiescent(__FILE__, __LINE__)

static struct mvm_vm_object_stats
stats(mach_port_t object)
{
	struct mvm_vm_object_stats st;

	assert_kr(mvm_vm_object_stats(object, &st), KERN_SUCCESS);
	return st;
}

/* Wait until the kernel has taken at least n faults on the object. */
static void
wait_faults(mach_port_t object, uint64_t n)
{
	for (int i = 0; i < TMO && stats(object).faults < n; i++)
		sleep_ms(1);
	assert_true(stats(object).faults >= n);
}

/* Return once the kernel has served every message sent earlier on ctl. */
static void
ctl_sync(mach_port_t ctl)
{
	boolean_t ready, may_cache;
	memory_object_copy_strategy_t strategy;

	assert_kr(memory_object_get_attributes(ctl, &ready, &may_cache, &strategy), KERN_SUCCESS);
}

static int
mgr_nlog(struct mvm_mgr *m)
{
	int n;

	pthread_mutex_lock(&m->mtx);
	n = (int)m->nlog;
	pthread_mutex_unlock(&m->mtx);
	return n;
}


/* In main(), before any kernel call: install on_sigbus, start the kernel, keep its
 * handler for test_begin(). Returns false if the handler cannot be installed. */
static bool
mvm_vmtest_main_setup(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = on_sigbus;
	sa.sa_flags = SA_SIGINFO;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGBUS, &sa, NULL) != 0)
		return false;
	if (mvm_vm_available(NULL, 0) == KERN_SUCCESS)
		kernel_sigbus_valid = sigaction(SIGBUS, NULL, &kernel_sigbus) == 0;
	return true;
}

#pragma GCC diagnostic pop

#endif /* MVM_VMTEST_H */
