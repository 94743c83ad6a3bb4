/*
 * tests/integration/test_vm_copy.c: vm_map(copy = TRUE) and the copy strategies.
 *
 * Against the scripted manager, message by message and byte by byte:
 *   COPY_DELAY      no message at copy time; the copy sees the original as it was
 *                   (including this kernel's writes made before the copy), not the
 *                   original's later writes (pushed into the copy first); pages the
 *                   original lacks are asked for on the original; the copy's writes
 *                   never reach the manager; the original outlives its last mapping while
 *                   a copy uses it (terminate only after the copy goes)
 *   COPY_NONE       every page asked for before vm_map returns, the original terminated
 *                   at once when nothing else maps it; a data_error fails vm_map
 *   COPY_TEMPORARY  dirty pages are never returned (terminate only); copies as DELAY
 *   COPY_CALL       memory_object_copy with a new port, write lock of the original's
 *                   resident pages (a write then sends data_unlock), init on the new
 *                   object; data_unavailable on it means the original's page (a small
 *                   manager of this file serves both objects)
 *   dead original   a copy's page not copied yet fails with SIGBUS, never zeros
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <machvm/memory_object.h>
#include <machvm/vm.h>
#include "mvm_test.h"
#include "mvm_mgr.h"

#include "mvm_vmtest.h"

static memory_object_copy_strategy_t strategy;

/* Answer init with the strategy the test chose. */
static bool
init_strategy(struct mvm_mgr *m, memory_object_control_t ctl)
{
	pthread_mutex_lock(&m->mtx);
	m->arg = (void *)((uintptr_t)m->arg + 1);
	pthread_cond_broadcast(&m->cond);
	pthread_mutex_unlock(&m->mtx);
	(void)memory_object_ready(ctl, m->may_cache, strategy);
	return true;
}

static struct mvm_mgr *
start_with(memory_object_copy_strategy_t s)
{
	struct mvm_mgr *m = mvm_mgr_start();

	strategy = s;
	m->policy.init = init_strategy;
	return m;
}

static vm_address_t
map(mach_port_t object, vm_size_t size, vm_offset_t off, boolean_t copy)
{
	vm_address_t a = 0;

	assert_kr(vm_map(mach_task_self(), &a, size, 0, TRUE, object, off, copy, VM_PROT_ALL,
	    VM_PROT_ALL, VM_INHERIT_NONE), KERN_SUCCESS);
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

/* ---- COPY_DELAY ------------------------------------------------------------------------ */

static void
delay_snapshot(void **state)
{
	struct mvm_mgr *m;
	vm_address_t x, c;

	(void)state;
	test_begin();
	m = start_with(MEMORY_OBJECT_COPY_DELAY);
	x = map(m->object, 4 * PG, 0, FALSE);
	wr(x + 10, 0x11);                       /* dirty before the copy */
	assert_int_equal(rd(x + PG + 10), mvm_mgr_pattern(PG + 10)); /* clean resident */
	MVM_MGR_EXPECT(m, "init page_size=4096", "data_request off=0 len=4096 access=3",
	    "data_request off=4096 len=4096 access=1");
	c = map(m->object, 4 * PG, 0, TRUE);
	/* The copy sees the original as it is now, kernel's writes included. */
	assert_int_equal(rd(c + 10), 0x11);
	/* The original changes: the copy does not see it (pushed first). */
	wr(x + 10, 0x22);
	wr(x + PG + 10, 0x33);
	assert_int_equal(rd(x + 10), 0x22);
	assert_int_equal(rd(c + 10), 0x11);
	assert_int_equal(rd(c + PG + 10), mvm_mgr_pattern(PG + 10));
	/* A page the original lacks is asked for on the original, for reading. */
	assert_int_equal(rd(c + 2 * PG + 5), mvm_mgr_pattern(2 * PG + 5));
	/* The copy's writes stay in the copy. */
	wr(c + 3 * PG + 7, 0x44);
	assert_int_equal(rd(c + 3 * PG + 7), 0x44);
	assert_int_equal(rd(x + 3 * PG + 7), mvm_mgr_pattern(3 * PG + 7));
	MVM_MGR_EXPECT(m, "data_request off=8192 len=4096 access=1",
	    "data_request off=12288 len=4096 access=1");
	/* The original's last mapping goes: a copy still needs it, so no terminate, and
	 * the original's dirty pages stay (the copy may still need them). */
	assert_kr(vm_deallocate(mach_task_self(), x, 4 * PG), KERN_SUCCESS);
	assert_int_equal(rd(c + PG + 10), mvm_mgr_pattern(PG + 10));
	assert_int_equal(mgr_nlog(m), 0);
	/* The copy goes: the original terminates, its dirty pages returned (the
	 * original's writes, never the copy's). */
	assert_kr(vm_deallocate(mach_task_self(), c, 4 * PG), KERN_SUCCESS);
	MVM_MGR_EXPECT(m, "data_return off=0 len=8192 dirty=1 kcopy=0", "terminate");
	assert_int_equal(m->store[0][10], 0x22);
	assert_int_equal(m->store[1][10], 0x33);
	assert_int_equal(m->store[3][7], mvm_mgr_pattern(3 * PG + 7));
	mvm_mgr_stop(m);
	QUIESCENT();
}

/* A flush that discards the original's page pushes it into the copy first. */
static void
delay_flush_pushes(void **state)
{
	struct mvm_mgr *m;
	vm_address_t x, c;
	mach_port_t ctl;

	(void)state;
	test_begin();
	m = start_with(MEMORY_OBJECT_COPY_DELAY);
	x = map(m->object, PG, 0, FALSE);
	wr(x + 1, 0x77);
	ctl = mgr_ctl(m, 1);
	c = map(m->object, PG, 0, TRUE);
	assert_kr(memory_object_lock_request(ctl, 0, PG, MEMORY_OBJECT_RETURN_NONE, TRUE,
	    VM_PROT_NONE, MACH_PORT_NULL), KERN_SUCCESS);
	ctl_sync(ctl);
	/* The original's write is gone (the manager discarded it); the copy kept it. */
	assert_int_equal(rd(x + 1), mvm_mgr_pattern(1));
	assert_int_equal(rd(c + 1), 0x77);
	MVM_MGR_EXPECT(m, "init page_size=4096", "data_request off=0 len=4096 access=3",
	    "data_request off=0 len=4096 access=1");
	assert_kr(vm_deallocate(mach_task_self(), c, PG), KERN_SUCCESS);
	assert_kr(vm_deallocate(mach_task_self(), x, PG), KERN_SUCCESS);
	MVM_MGR_EXPECT(m, "terminate");
	mvm_mgr_stop(m);
	QUIESCENT();
}

/* A copy of an object nothing maps, at an offset; two copies taken at different times. */
static void
delay_unmapped_and_two_copies(void **state)
{
	struct mvm_mgr *m;
	vm_address_t x, c1, c2;

	(void)state;
	test_begin();
	m = start_with(MEMORY_OBJECT_COPY_DELAY);
	c1 = map(m->object, 2 * PG, 2 * PG, TRUE);
	assert_int_equal(rd(c1 + 1), mvm_mgr_pattern(2 * PG + 1));
	MVM_MGR_EXPECT(m, "init page_size=4096", "data_request off=8192 len=4096 access=1");
	x = map(m->object, 4 * PG, 0, FALSE);
	wr(x + 2 * PG + 1, 0x55);               /* pushed into c1 first */
	c2 = map(m->object, 2 * PG, 2 * PG, TRUE);
	wr(x + 2 * PG + 1, 0x66);               /* pushed into c2 */
	assert_int_equal(rd(c1 + 1), mvm_mgr_pattern(2 * PG + 1));
	assert_int_equal(rd(c2 + 1), 0x55);
	assert_int_equal(rd(x + 2 * PG + 1), 0x66);
	assert_int_equal(mgr_nlog(m), 0);
	assert_kr(vm_deallocate(mach_task_self(), c1, 2 * PG), KERN_SUCCESS);
	assert_kr(vm_deallocate(mach_task_self(), x, 4 * PG), KERN_SUCCESS);
	assert_int_equal(mgr_nlog(m), 0);
	assert_int_equal(rd(c2 + PG + 3), mvm_mgr_pattern(3 * PG + 3));
	assert_kr(vm_deallocate(mach_task_self(), c2, 2 * PG), KERN_SUCCESS);
	MVM_MGR_EXPECT(m, "data_request off=12288 len=4096 access=1",
	    "data_return off=8192 len=4096 dirty=1 kcopy=0", "terminate");
	mvm_mgr_stop(m);
	QUIESCENT();
}

/* The original's manager dies: pages the copy has not copied fail; copied ones stay. */
static void
delay_original_dies(void **state)
{
	struct mvm_mgr *m;
	vm_address_t c;
	struct toucher t;
	mach_port_t ctl, name;

	(void)state;
	test_begin();
	m = start_with(MEMORY_OBJECT_COPY_DELAY);
	c = map(m->object, 2 * PG, 0, TRUE);
	assert_int_equal(rd(c + 9), mvm_mgr_pattern(9));
	ctl = mgr_ctl(m, 1);
	name = m->name;
	mvm_mgr_stop(m);
	sleep_ms(100); /* the kernel hears of the death (port-deleted notification) */
	assert_int_equal(rd(c + 9), mvm_mgr_pattern(9));
	touch_start(&t, c + PG, false, 0);
	assert_touch_sigbus(&t);
	assert_kr(vm_deallocate(mach_task_self(), c, 2 * PG), KERN_SUCCESS);
	/* The manager died without a terminate: its send rights to the control and name
	 * ports (one name space) are dead names only it could drop. */
	assert_int_equal(mvm_test_type(ctl), MACH_PORT_TYPE_DEAD_NAME);
	assert_int_equal(mvm_test_type(name), MACH_PORT_TYPE_DEAD_NAME);
	assert_kr(mach_port_destroy(mach_task_self(), ctl), KERN_SUCCESS);
	assert_kr(mach_port_destroy(mach_task_self(), name), KERN_SUCCESS);
	QUIESCENT();
}

/* ---- COPY_NONE ------------------------------------------------------------------------- */

static void
none_copies_at_once(void **state)
{
	struct mvm_mgr *m;
	vm_address_t c;

	(void)state;
	test_begin();
	m = start_with(MEMORY_OBJECT_COPY_NONE);
	c = map(m->object, 3 * PG, PG, TRUE);
	/* Every page before vm_map returned; the original, unmapped, terminated. */
	MVM_MGR_EXPECT(m, "init page_size=4096", "data_request off=4096 len=4096 access=1",
	    "data_request off=8192 len=4096 access=1", "data_request off=12288 len=4096 access=1",
	    "terminate");
	for (size_t pg = 0; pg < 3; pg++)
		assert_int_equal(rd(c + pg * PG + 77), mvm_mgr_pattern((pg + 1) * PG + 77));
	wr(c + 5, 0x99);
	assert_int_equal(rd(c + 5), 0x99);
	assert_kr(vm_deallocate(mach_task_self(), c, 3 * PG), KERN_SUCCESS);
	assert_int_equal(mgr_nlog(m), 0);
	mvm_mgr_stop(m);
	QUIESCENT();
}

static bool
fail_page_1(struct mvm_mgr *m, memory_object_control_t ctl, vm_offset_t off, vm_size_t len,
    vm_prot_t access)
{
	(void)access;
	if (off == PG)
		(void)memory_object_data_error(ctl, off, len, KERN_MEMORY_ERROR);
	else
		(void)mvm_mgr_supply(m, off, len, VM_PROT_NONE, FALSE, MACH_PORT_NULL);
	return true;
}

static void
none_error_fails_map(void **state)
{
	struct mvm_mgr *m;
	vm_address_t c = 0;

	(void)state;
	test_begin();
	m = start_with(MEMORY_OBJECT_COPY_NONE);
	m->policy.data_request = fail_page_1;
	assert_kr(vm_map(mach_task_self(), &c, 2 * PG, 0, TRUE, m->object, 0, TRUE, VM_PROT_ALL,
	    VM_PROT_ALL, VM_INHERIT_NONE), KERN_MEMORY_ERROR);
	MVM_MGR_EXPECT(m, "init page_size=4096", "data_request off=0 len=4096 access=1",
	    "data_request off=4096 len=4096 access=1", "terminate");
	mvm_mgr_stop(m);
	QUIESCENT();
}

/* ---- COPY_TEMPORARY -------------------------------------------------------------------- */

static void
temporary_never_returned(void **state)
{
	struct mvm_mgr *m;
	vm_address_t x, c;

	(void)state;
	test_begin();
	m = start_with(MEMORY_OBJECT_COPY_TEMPORARY);
	x = map(m->object, 2 * PG, 0, FALSE);
	wr(x + 3, 0x12);
	c = map(m->object, 2 * PG, 0, TRUE);    /* as DELAY */
	wr(x + 3, 0x34);
	assert_int_equal(rd(c + 3), 0x12);
	assert_kr(vm_deallocate(mach_task_self(), c, 2 * PG), KERN_SUCCESS);
	assert_kr(vm_deallocate(mach_task_self(), x, 2 * PG), KERN_SUCCESS);
	/* A dirty page, and no data_return: the manager need not see changes. */
	MVM_MGR_EXPECT(m, "init page_size=4096", "data_request off=0 len=4096 access=3",
	    "terminate");
	assert_int_equal(m->store[0][3], mvm_mgr_pattern(3));
	mvm_mgr_stop(m);
	QUIESCENT();
}

/* ---- COPY_CALL: a manager of two objects ----------------------------------------------- */

struct callmgr {
	mach_port_t pset, orig, copy;
	memory_object_control_t orig_ctl, copy_ctl;
	pthread_t th;
	pthread_mutex_t mtx;
	char log[64][96];
	int nlog, terminated;
};

static struct callmgr cm;

static void __attribute__((format(printf, 1, 2)))
cm_log(const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&cm.mtx);
	va_start(ap, fmt);
	if (cm.nlog < 64)
		vsnprintf(cm.log[cm.nlog++], sizeof(cm.log[0]), fmt, ap);
	va_end(ap);
	pthread_mutex_unlock(&cm.mtx);
}

static const char *
cm_name(mach_port_t p)
{
	return p == cm.orig ? "orig" : p == cm.copy ? "copy" : "?";
}

static kern_return_t
cm_init(void *ctx, memory_object_t obj, mach_port_seqno_t seqno, memory_object_control_t ctl,
    memory_object_name_t name, vm_size_t ps)
{
	(void)ctx; (void)seqno; (void)name; (void)ps;
	pthread_mutex_lock(&cm.mtx);
	if (obj == cm.orig)
		cm.orig_ctl = ctl;
	else
		cm.copy_ctl = ctl;
	pthread_mutex_unlock(&cm.mtx);
	cm_log("init %s", cm_name(obj));
	(void)memory_object_ready(ctl, FALSE,
	    obj == cm.orig ? MEMORY_OBJECT_COPY_CALL : MEMORY_OBJECT_COPY_DELAY);
	return KERN_SUCCESS;
}

static kern_return_t
cm_copy(void *ctx, memory_object_t obj, mach_port_seqno_t seqno, memory_object_control_t ctl,
    vm_offset_t off, vm_size_t len, memory_object_t newobj)
{
	(void)ctx; (void)seqno; (void)ctl;
	pthread_mutex_lock(&cm.mtx);
	cm.copy = newobj;
	pthread_mutex_unlock(&cm.mtx);
	assert_kr(mach_port_move_member(mach_task_self(), newobj, cm.pset), KERN_SUCCESS);
	cm_log("copy %s off=%lu len=%lu", cm_name(obj), (unsigned long)off, (unsigned long)len);
	return KERN_SUCCESS;
}

static kern_return_t
cm_request(void *ctx, memory_object_t obj, mach_port_seqno_t seqno, memory_object_control_t ctl,
    vm_offset_t off, vm_size_t len, vm_prot_t access)
{
	static unsigned char page[PG];

	(void)ctx; (void)seqno;
	cm_log("data_request %s off=%lu len=%lu access=%d", cm_name(obj), (unsigned long)off,
	    (unsigned long)len, access);
	if (obj == cm.copy && off == 0)
		return memory_object_data_unavailable(ctl, off, len), KERN_SUCCESS;
	for (size_t i = 0; i < PG; i++)
		page[i] = obj == cm.copy ? 0xcc : mvm_mgr_pattern(off + i);
	(void)memory_object_data_supply(ctl, off, (vm_offset_t)page, PG, FALSE, VM_PROT_NONE,
	    FALSE, MACH_PORT_NULL);
	return KERN_SUCCESS;
}

static kern_return_t
cm_unlock(void *ctx, memory_object_t obj, mach_port_seqno_t seqno, memory_object_control_t ctl,
    vm_offset_t off, vm_size_t len, vm_prot_t access)
{
	(void)ctx; (void)seqno;
	cm_log("data_unlock %s off=%lu access=%d", cm_name(obj), (unsigned long)off, access);
	(void)memory_object_lock_request(ctl, off, len, MEMORY_OBJECT_RETURN_NONE, FALSE,
	    VM_PROT_NONE, MACH_PORT_NULL);
	return KERN_SUCCESS;
}

static kern_return_t
cm_return(void *ctx, memory_object_t obj, mach_port_seqno_t seqno, memory_object_control_t ctl,
    vm_offset_t off, vm_offset_t data, mach_msg_type_number_t count, boolean_t dirty,
    boolean_t kcopy)
{
	(void)ctx; (void)seqno; (void)ctl; (void)kcopy;
	cm_log("data_return %s off=%lu len=%u dirty=%d byte=%d", cm_name(obj), (unsigned long)off,
	    count, dirty, ((unsigned char *)data)[10]);
	(void)vm_deallocate(mach_task_self(), data, count);
	return KERN_SUCCESS;
}

static kern_return_t
cm_terminate(void *ctx, memory_object_t obj, mach_port_seqno_t seqno,
    memory_object_control_t ctl, memory_object_name_t name)
{
	(void)ctx; (void)seqno;
	cm_log("terminate %s", cm_name(obj));
	(void)mach_port_destroy(mach_task_self(), ctl);
	(void)mach_port_destroy(mach_task_self(), name);
	pthread_mutex_lock(&cm.mtx);
	cm.terminated++;
	pthread_mutex_unlock(&cm.mtx);
	return KERN_SUCCESS;
}

static const struct mvm_memory_object_ops cm_ops = {
	.version = MVM_MEMORY_OBJECT_OPS_VERSION,
	.init = cm_init,
	.terminate = cm_terminate,
	.copy = cm_copy,
	.data_request = cm_request,
	.data_unlock = cm_unlock,
	.data_return = cm_return,
};

static boolean_t
cm_demux(mach_msg_header_t *in, mach_msg_header_t *out)
{
	return mvm_memory_object_server(&cm_ops, NULL, in, out);
}

static void *
cm_main(void *arg)
{
	(void)arg;
	(void)mach_msg_server(cm_demux, 8192, cm.pset);
	return NULL;
}

static int
cm_wait(int n)
{
	int k = 0;

	for (int i = 0; i < TMO; i++) {
		pthread_mutex_lock(&cm.mtx);
		k = cm.nlog;
		pthread_mutex_unlock(&cm.mtx);
		if (k >= n)
			break;
		sleep_ms(1);
	}
	return k;
}

static void
cm_expect(const char *const *lines, int line)
{
	int n = 0;

	while (lines[n] != NULL)
		n++;
	cm_wait(n);
	sleep_ms(20); /* nothing more may come */
	pthread_mutex_lock(&cm.mtx);
	for (int i = 0; i < cm.nlog || i < n; i++)
		if (i >= cm.nlog || i >= n || strcmp(cm.log[i], lines[i]) != 0) {
			for (int j = 0; j < cm.nlog; j++)
				print_message("  cm[%d]: %s\n", j, cm.log[j]);
			pthread_mutex_unlock(&cm.mtx);
			fail_msg("line %d: manager log differs at entry %d", line, i);
		}
	cm.nlog = 0;
	pthread_mutex_unlock(&cm.mtx);
}
#define CM_EXPECT(...) \
	do { \
		const char *const l_[] = { __VA_ARGS__, NULL }; \
		cm_expect(l_, __LINE__); \
	} while (0)

static void
call_sends_copy(void **state)
{
	vm_address_t x, c;

	(void)state;
	test_begin();
	memset(&cm, 0, sizeof(cm));
	pthread_mutex_init(&cm.mtx, NULL);
	assert_kr(mach_port_allocate(mach_task_self(), MACH_PORT_RIGHT_PORT_SET, &cm.pset),
	    KERN_SUCCESS);
	assert_kr(mach_port_allocate(mach_task_self(), MACH_PORT_RIGHT_RECEIVE, &cm.orig),
	    KERN_SUCCESS);
	assert_kr(mach_port_insert_right(mach_task_self(), cm.orig, cm.orig,
	    MACH_MSG_TYPE_MAKE_SEND), KERN_SUCCESS);
	assert_kr(mach_port_move_member(mach_task_self(), cm.orig, cm.pset), KERN_SUCCESS);
	assert_int_equal(pthread_create(&cm.th, NULL, cm_main, NULL), 0);

	x = map(cm.orig, 2 * PG, 0, FALSE);
	assert_int_equal(rd(x + 10), mvm_mgr_pattern(10));
	c = map(cm.orig, 2 * PG, 0, TRUE);
	CM_EXPECT("init orig", "data_request orig off=0 len=4096 access=1",
	    "copy orig off=0 len=8192", "init copy");
	/* Unavailable on the copy: the original's page. Supplied: the copy's own. */
	assert_int_equal(rd(c + 10), mvm_mgr_pattern(10));
	assert_int_equal(rd(c + PG + 10), 0xcc);
	CM_EXPECT("data_request copy off=0 len=4096 access=1",
	    "data_request copy off=4096 len=4096 access=1");
	/* The original's resident page is write-locked: a write asks first. */
	wr(x + 10, 0x5a);
	CM_EXPECT("data_unlock orig off=0 access=2");
	assert_int_equal(rd(c + 10), mvm_mgr_pattern(10));
	/* The copy's writes go to the copy's manager. */
	wr(c + 10, 0x6b);
	assert_kr(vm_deallocate(mach_task_self(), c, 2 * PG), KERN_SUCCESS);
	CM_EXPECT("data_return copy off=0 len=4096 dirty=1 byte=107", "terminate copy");
	assert_kr(vm_deallocate(mach_task_self(), x, 2 * PG), KERN_SUCCESS);
	CM_EXPECT("data_return orig off=0 len=4096 dirty=1 byte=90", "terminate orig");
	assert_kr(mach_port_destroy(mach_task_self(), cm.copy), KERN_SUCCESS);
	assert_kr(mach_port_destroy(mach_task_self(), cm.orig), KERN_SUCCESS);
	assert_kr(mach_port_destroy(mach_task_self(), cm.pset), KERN_SUCCESS);
	pthread_join(cm.th, NULL);
	pthread_mutex_destroy(&cm.mtx);
	QUIESCENT();
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(delay_snapshot),
		cmocka_unit_test(delay_flush_pushes),
		cmocka_unit_test(delay_unmapped_and_two_copies),
		cmocka_unit_test(delay_original_dies),
		cmocka_unit_test(none_copies_at_once),
		cmocka_unit_test(none_error_fails_map),
		cmocka_unit_test(temporary_never_returned),
		cmocka_unit_test(call_sends_copy),
	};

	if (!mvm_vmtest_main_setup())
		return 1;
	return cmocka_run_group_tests_name("vm_copy", tests, NULL, NULL);
}
