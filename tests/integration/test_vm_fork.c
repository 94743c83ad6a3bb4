/*
 * tests/integration/test_vm_fork.c: what a child of fork() gets of memory object
 * mappings, by inheritance (vm_map's argument, vm_inherit):
 *
 *   NONE   nothing: the child's access is SIGSEGV
 *   COPY   a private copy as of fork(): pages absent in the parent are asked for before
 *          fork (data_request, read); the parent's later writes are not seen, the
 *          child's writes stay in the child
 *   SHARE  the cache pages, shared both ways; a page the parent's kernel later drops
 *          (a flush) is SIGBUS (BUS_OBJERR) in the child, never zeros
 *   vm_inherit: cuts mappings at its ends; anonymous memory can be copied or left out,
 *          not shared; bad arguments
 *
 * The child never runs a cmocka assertion: it reports through its exit status (0: all
 * good; otherwise the number of the first failed check) or dies of the signal the test
 * expects.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <machvm/memory_object.h>
#include <machvm/vm.h>
#include "mvm_test.h"
#include "mvm_mgr.h"

#include "mvm_vmtest.h"

#if defined(__SANITIZE_THREAD__)
/* ThreadSanitizer cannot follow threads started in the child of a multi-threaded fork
 * (machvm's SIGBUS sentinel, the touchers): the test that needs them is skipped there. */
#define CHILD_THREADS_OK false
#else
#define CHILD_THREADS_OK true
#endif

static vm_address_t
map(mach_port_t object, vm_size_t size, vm_inherit_t inh)
{
	vm_address_t a = 0;

	assert_kr(vm_map(mach_task_self(), &a, size, 0, TRUE, object, 0, FALSE, VM_PROT_ALL,
	    VM_PROT_ALL, inh), KERN_SUCCESS);
	return a;
}

static unsigned char
rd(vm_address_t a)
{
	struct toucher t;

	touch_start(&t, a, false, 0);
	assert_touch_done(&t);
	return t.val;
}

static void
wr(vm_address_t a, unsigned char v)
{
	struct toucher t;

	touch_start(&t, a, true, v);
	assert_touch_done(&t);
}

/* The child's status: exit code, or 128 + the signal that killed it. */
static int
child_status(pid_t pid)
{
	int st = 0;

	assert_int_equal(waitpid(pid, &st, 0), pid);
	if (WIFEXITED(st))
		return WEXITSTATUS(st);
	if (WIFSIGNALED(st))
		return 128 + WTERMSIG(st);
	return -1;
}

static void
sync_write(int fd)
{
	char c = 1;

	assert_int_equal(write(fd, &c, 1), 1);
}

/* In the child: wait for the parent (false if the pipe broke). */
static bool
child_wait(int fd)
{
	char c;

	return read(fd, &c, 1) == 1;
}

/* In the child: read a byte in a thread; the SIGBUS code, or 0 with *v. */
static int
child_touch(vm_address_t a, unsigned char *v)
{
	struct toucher t;
	int s;

	memset(&t, 0, sizeof(t));
	t.addr = (volatile unsigned char *)a;
	atomic_init(&t.state, T_RUNNING);
	if (pthread_create(&t.th, NULL, touch_main, &t) != 0)
		return -1;
	pthread_join(t.th, NULL);
	s = atomic_load(&t.state);
	if (s == T_DONE) {
		*v = t.val;
		return 0;
	}
	return s == T_SIGBUS ? t.code : -1;
}

/* ---- NONE ----------------------------------------------------------------------------- */

static void
none_is_sigsegv(void **state)
{
	struct mvm_mgr *m;
	vm_address_t a;
	pid_t pid;

	(void)state;
	test_begin();
	m = mgr_start();
	a = map(m->object, 2 * PG, VM_INHERIT_NONE);
	assert_int_equal(rd(a + 1), mvm_mgr_pattern(1));
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		signal(SIGSEGV, SIG_DFL);
		(void)*(volatile unsigned char *)(a + 1);
		_exit(1); /* read something: wrong */
	}
	assert_int_equal(child_status(pid), 128 + SIGSEGV);
	/* Nothing was fetched for the fork. */
	MVM_MGR_EXPECT(m, "init page_size=4096", "data_request off=0 len=4096 access=1");
	assert_kr(vm_deallocate(mach_task_self(), a, 2 * PG), KERN_SUCCESS);
	MVM_MGR_EXPECT(m, "terminate");
	mvm_mgr_stop(m);
	QUIESCENT();
}

/* ---- COPY ----------------------------------------------------------------------------- */

static void
copy_is_private_snapshot(void **state)
{
	struct mvm_mgr *m;
	vm_address_t a, b = 0;
	int to_child[2], to_parent[2];
	pid_t pid;

	(void)state;
	test_begin();
	m = mgr_start();
	a = map(m->object, 3 * PG, VM_INHERIT_COPY);
	wr(a + 5, 0x11);
	assert_int_equal(pipe(to_child), 0);
	assert_int_equal(pipe(to_parent), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		unsigned char *p = (unsigned char *)a;

		if (p[5] != 0x11)
			_exit(2);
		if (p[PG + 5] != mvm_mgr_pattern(PG + 5) || p[2 * PG + 9] != mvm_mgr_pattern(2 * PG + 9))
			_exit(3);
		p[5] = 0x99;                    /* private */
		if (p[5] != 0x99)
			_exit(4);
		/* The kernel is the parent's. */
		if (vm_map(mach_task_self(), &b, PG, 0, TRUE, m->object, 0, FALSE, VM_PROT_ALL,
		    VM_PROT_ALL, VM_INHERIT_NONE) != KERN_FAILURE)
			_exit(5);
		sync_write(to_parent[1]);
		if (!child_wait(to_child[0]))
			_exit(6);
		if (p[5] != 0x99 || p[PG + 5] != mvm_mgr_pattern(PG + 5))
			_exit(7);                 /* the parent's writes must not show */
		_exit(0);
	}
	close(to_child[0]);
	close(to_parent[1]);
	to_child[0] = to_parent[1] = -1;
	{
		char c;

		/* EOF (the child died early) fails here; child_status says how. */
		if (read(to_parent[0], &c, 1) != 1)
			fail_msg("child status %d", child_status(pid));
	}
	wr(a + 5, 0x22);
	wr(a + PG + 5, 0x33);
	sync_write(to_child[1]);
	assert_int_equal(child_status(pid), 0);
	assert_int_equal(rd(a + 5), 0x22);
	/* Before the fork, the pages the parent lacked were asked for (for reading). */
	MVM_MGR_EXPECT(m, "init page_size=4096", "data_request off=0 len=4096 access=3",
	    "data_request off=4096 len=4096 access=1", "data_request off=8192 len=4096 access=1");
	assert_kr(vm_deallocate(mach_task_self(), a, 3 * PG), KERN_SUCCESS);
	MVM_MGR_EXPECT(m, "data_return off=0 len=8192 dirty=1 kcopy=0", "terminate");
	assert_int_equal(m->store[0][5], 0x22);
	close(to_child[1]);
	close(to_parent[0]);
	mvm_mgr_stop(m);
	QUIESCENT();
}

/* A page the manager supplies read-locked is unlocked before the child gets a copy. */
static void
copy_honours_read_lock(void **state)
{
	struct mvm_mgr *m;
	vm_address_t a;
	pid_t pid;

	(void)state;
	test_begin();
	m = mgr_start();
	m->supply_lock = VM_PROT_READ | VM_PROT_WRITE;
	a = map(m->object, PG, VM_INHERIT_COPY);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		_exit(((unsigned char *)a)[9] == mvm_mgr_pattern(9) ? 0 : 2);
	assert_int_equal(child_status(pid), 0);
	MVM_MGR_EXPECT(m, "init page_size=4096", "data_request off=0 len=4096 access=1",
	    "data_unlock off=0 len=4096 access=1");
	assert_kr(vm_deallocate(mach_task_self(), a, PG), KERN_SUCCESS);
	MVM_MGR_EXPECT(m, "terminate");
	mvm_mgr_stop(m);
	QUIESCENT();
}

/* ---- SHARE ---------------------------------------------------------------------------- */

static void
share_is_shared_and_holes_sigbus(void **state)
{
	struct mvm_mgr *m;
	vm_address_t a;
	int to_child[2], to_parent[2];
	mach_port_t ctl;
	pid_t pid;
	char c;

	(void)state;
	test_begin();
	if (!CHILD_THREADS_OK)
		skip();
	m = mgr_start();
	a = map(m->object, 2 * PG, VM_INHERIT_SHARE);
	wr(a + 5, 0x11);
	ctl = mgr_ctl(m, 1);
	assert_int_equal(pipe(to_child), 0);
	assert_int_equal(pipe(to_parent), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		unsigned char v = 0;

		if (child_touch(a + 5, &v) != 0 || v != 0x11)
			_exit(2);
		if (child_touch(a + PG + 5, &v) != 0 || v != mvm_mgr_pattern(PG + 5))
			_exit(3);
		*(volatile unsigned char *)(a + 6) = 0x55;  /* seen by the parent */
		sync_write(to_parent[1]);
		if (!child_wait(to_child[0]))
			_exit(4);
		if (child_touch(a + 7, &v) != 0 || v != 0x66)
			_exit(5);                         /* the parent's write, shared */
		/* The parent's kernel dropped page 1: a clear error, not zeros. */
		if (child_touch(a + PG + 5, &v) != BUS_OBJERR)
			_exit(6);
		_exit(0);
	}
	close(to_child[0]);
	close(to_parent[1]);
	to_child[0] = to_parent[1] = -1;
	if (read(to_parent[0], &c, 1) != 1)
		fail_msg("child status %d", child_status(pid));
	assert_int_equal(rd(a + 6), 0x55);
	wr(a + 7, 0x66);
	/* The manager flushes page 1 (clean: nothing to return). */
	assert_kr(memory_object_lock_request(ctl, PG, PG, MEMORY_OBJECT_RETURN_NONE, TRUE,
	    VM_PROT_NONE, MACH_PORT_NULL), KERN_SUCCESS);
	ctl_sync(ctl);
	sync_write(to_child[1]);
	assert_int_equal(child_status(pid), 0);
	MVM_MGR_EXPECT(m, "init page_size=4096", "data_request off=0 len=4096 access=3",
	    "data_request off=4096 len=4096 access=1");
	assert_kr(vm_deallocate(mach_task_self(), a, 2 * PG), KERN_SUCCESS);
	MVM_MGR_EXPECT(m, "data_return off=0 len=4096 dirty=1 kcopy=0", "terminate");
	close(to_child[1]);
	close(to_parent[0]);
	mvm_mgr_stop(m);
	QUIESCENT();
}

/* ---- vm_inherit ----------------------------------------------------------------------- */

static void
inherit_cuts_and_checks(void **state)
{
	struct mvm_mgr *m;
	vm_address_t a, anon = 0;
	pid_t pid;

	(void)state;
	test_begin();
	m = mgr_start();
	a = map(m->object, 4 * PG, VM_INHERIT_NONE);
	assert_kr(vm_inherit(mach_task_self(), a + PG, 2 * PG, VM_INHERIT_COPY), KERN_SUCCESS);
	assert_int_equal(stats(m->object).mappings, 3);
	/* Bad arguments. */
	assert_kr(vm_inherit(MACH_PORT_NULL, a, PG, VM_INHERIT_COPY), MACH_SEND_INVALID_DEST);
	assert_kr(vm_inherit(mach_task_self(), a, PG, 7), KERN_INVALID_ARGUMENT);
	/* Anonymous memory: copied or left out, never shared. */
	assert_kr(vm_allocate(mach_task_self(), &anon, PG, TRUE), KERN_SUCCESS);
	assert_kr(vm_inherit(mach_task_self(), anon, PG, VM_INHERIT_SHARE), KERN_INVALID_ARGUMENT);
	assert_kr(vm_inherit(mach_task_self(), anon, PG, VM_INHERIT_NONE), KERN_SUCCESS);
	((unsigned char *)anon)[0] = 0x42;
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		unsigned char *p = (unsigned char *)a;

		signal(SIGSEGV, SIG_DFL);
		if (p[PG + 3] != mvm_mgr_pattern(PG + 3) || p[2 * PG + 3] != mvm_mgr_pattern(2 * PG + 3))
			_exit(2);
		(void)*(volatile unsigned char *)(a + 3 * PG); /* NONE: SIGSEGV */
		_exit(3);
	}
	assert_int_equal(child_status(pid), 128 + SIGSEGV);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		signal(SIGSEGV, SIG_DFL);
		(void)*(volatile unsigned char *)anon; /* anonymous, NONE: SIGSEGV */
		_exit(3);
	}
	assert_int_equal(child_status(pid), 128 + SIGSEGV);
	assert_kr(vm_inherit(mach_task_self(), anon, PG, VM_INHERIT_COPY), KERN_SUCCESS);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		_exit(((unsigned char *)anon)[0] == 0x42 ? 0 : 2);
	assert_int_equal(child_status(pid), 0);
	assert_kr(vm_deallocate(mach_task_self(), anon, PG), KERN_SUCCESS);
	/* Not mapped at all. */
	assert_kr(vm_inherit(mach_task_self(), anon, PG, VM_INHERIT_COPY), KERN_INVALID_ADDRESS);
	assert_kr(vm_deallocate(mach_task_self(), a, 4 * PG), KERN_SUCCESS);
	MVM_MGR_EXPECT(m, "init page_size=4096", "data_request off=4096 len=4096 access=1",
	    "data_request off=8192 len=4096 access=1", "terminate");
	mvm_mgr_stop(m);
	QUIESCENT();
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(none_is_sigsegv),
		cmocka_unit_test(copy_is_private_snapshot),
		cmocka_unit_test(copy_honours_read_lock),
		cmocka_unit_test(share_is_shared_and_holes_sigbus),
		cmocka_unit_test(inherit_cuts_and_checks),
	};

	if (!mvm_vmtest_main_setup())
		return 1;
	return cmocka_run_group_tests_name("vm_fork", tests, NULL, NULL);
}
