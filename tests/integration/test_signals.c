/*
 * tests/integration/test_signals.c: the program's signal handlers never run on machvm's
 * own threads (the kernel's fault and control threads, the pager framework's receiver
 * and workers, a pager's server thread).
 *
 * A handler that ran on the fault thread could fault on memory that only that thread
 * serves, or re-enter a lock it holds (exit() from a SIGTERM handler would run machvm's
 * atexit handler there). The test starts those threads with the signal open in the test
 * thread, then blocks it in the test thread and sends it to the process: no thread may
 * take it, so it stays pending until the test thread opens it again, and the handler
 * then runs on the test thread.
 */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <machvm/pager.h>
#include <machvm/pagers.h>
#include <machvm/vm.h>
#include "mvm_test.h"
#include "mvm_vmtest.h"

static atomic_int handled;
static atomic_long handler_tid;

static void
on_usr1(int sig)
{
	(void)sig;
	atomic_store(&handler_tid, (long)syscall(SYS_gettid));
	atomic_fetch_add(&handled, 1);
}

static void
signals_stay_off_machvm_threads(void **state)
{
	struct mvm_pager *pager;
	struct mvm_shm_pager *shm;
	mach_port_t obj, sobj;
	vm_address_t addr = 0, saddr = 0;
	struct sigaction sa;
	sigset_t usr1, pending;
	volatile char *p;

	(void)state;
	test_begin();
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_usr1;
	sigemptyset(&sa.sa_mask);
	assert_int_equal(sigaction(SIGUSR1, &sa, NULL), 0);
	sigemptyset(&usr1);
	sigaddset(&usr1, SIGUSR1);
	assert_int_equal(pthread_sigmask(SIG_UNBLOCK, &usr1, NULL), 0);

	/* machvm's threads start here, from a thread that takes SIGUSR1. */
	assert_kr(mvm_anon_pager_create(16 * 4096, NULL, NULL, &pager, &obj), KERN_SUCCESS);
	assert_kr(vm_map(mach_task_self(), &addr, 16 * 4096, 0, TRUE, obj, 0, FALSE,
	    VM_PROT_READ | VM_PROT_WRITE, VM_PROT_READ | VM_PROT_WRITE, VM_INHERIT_NONE),
	    KERN_SUCCESS);
	assert_kr(mvm_shm_pager_create(4096, &shm, &sobj), KERN_SUCCESS);
	assert_kr(vm_map(mach_task_self(), &saddr, 4096, 0, TRUE, sobj, 0, FALSE,
	    VM_PROT_READ | VM_PROT_WRITE, VM_PROT_READ | VM_PROT_WRITE, VM_INHERIT_NONE),
	    KERN_SUCCESS);
	p = (volatile char *)addr;
	for (int i = 0; i < 16; i++)
		p[i * 4096] = (char)i; /* every kernel and pager thread has worked */
	*(volatile char *)saddr = 1;

	/* Closed here: only one of machvm's threads could take it now. */
	assert_int_equal(pthread_sigmask(SIG_BLOCK, &usr1, NULL), 0);
	for (int i = 0; i < 20; i++) {
		assert_int_equal(kill(getpid(), SIGUSR1), 0);
		p[(i % 16) * 4096]++; /* the kernel's threads run meanwhile */
		usleep(1000);
	}
	assert_int_equal(atomic_load(&handled), 0);
	assert_int_equal(sigpending(&pending), 0);
	assert_true(sigismember(&pending, SIGUSR1));
	assert_int_equal(pthread_sigmask(SIG_UNBLOCK, &usr1, NULL), 0);
	assert_int_equal(atomic_load(&handled), 1); /* pending signals merge into one */
	assert_int_equal(atomic_load(&handler_tid), (long)syscall(SYS_gettid));

	assert_kr(vm_deallocate(mach_task_self(), addr, 16 * 4096), KERN_SUCCESS);
	assert_kr(vm_deallocate(mach_task_self(), saddr, 4096), KERN_SUCCESS);
	assert_kr(mvm_pager_shutdown(pager), KERN_SUCCESS);
	assert_kr(mvm_shm_pager_shutdown(shm), KERN_SUCCESS);
	(void)mach_port_deallocate(mach_task_self(), obj);
	(void)mach_port_deallocate(mach_task_self(), sobj);
	signal(SIGUSR1, SIG_DFL);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(signals_stay_off_machvm_threads),
	};

	return cmocka_run_group_tests_name("signals", tests, NULL, NULL);
}
