/*
 * tests/integration/test_vm_fault.c: the kernel's fault path, rule by rule, against the
 * scripted manager: vm_map's argument checks and placement, faults that wait for
 * memory_object_ready, one data_request per missing page (however many threads fault on
 * it), clustering, data_supply (reply ports, KERN_MEMORY_PRESENT, unsolicited and bad
 * supplies, lock values, precious pages), data_unavailable, data_error (SIGBUS with
 * BUS_OBJERR in the faulting thread only), and many threads at once. Object life cycle
 * (sharing, destroy, manager death, partial unmapping) is in test_vm_life.c.
 *
 * Every access that may block or fail runs in a thread of its own (a "toucher") that
 * records what happened; the main thread never faults on a page the test has not made
 * resident, so a kernel bug shows as a timeout, not a hang. Touchers never call cmocka.
 * A thread is known to be blocked in the kernel once the object's fault count says the
 * kernel took its fault; a manager call is known to have been served once a later
 * memory_object_get_attributes on the same control port has returned (the kernel serves
 * a control port's messages in order).
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
#include <time.h>

#include <machvm/memory_object.h>
#include <machvm/vm.h>
#include "mvm_test.h"
#include "mvm_mgr.h"
#include "vm/vm_kern.h"

#include "mvm_vmtest.h"
/* Assert the log holds exactly these lines in any order (NULL-terminated), then clear it. */
static void
expect_unordered(struct mvm_mgr *m, const char *const *lines, const char *file, int line)
{
	size_t n = 0;
	bool used[64] = { false };
	bool ok;

	while (lines[n] != NULL)
		n++;
	(void)mvm_mgr_wait(m, "", (int)n, TMO);
	pthread_mutex_lock(&m->mtx);
	ok = m->nlog == n && n <= 64;
	for (size_t i = 0; ok && i < n; i++) {
		size_t j;

		for (j = 0; j < n; j++)
			if (!used[j] && strcmp(m->log[i], lines[j]) == 0)
				break;
		if (j == n)
			ok = false;
		else
			used[j] = true;
	}
	pthread_mutex_unlock(&m->mtx);
	if (!ok) {
		print_message("%s:%d: manager log differs; expected in any order:\n", file, line);
		for (size_t i = 0; i < n; i++)
			print_message("  want: %s\n", lines[i]);
		mvm_mgr_dump(m);
		fail_msg("%s:%d: unexpected message set", file, line);
	}
	mvm_mgr_clear(m);
}
#define EXPECT_UNORDERED(m, ...) \
	do { \
		const char *const lines_[] = { __VA_ARGS__, NULL }; \
		expect_unordered((m), lines_, __FILE__, __LINE__); \
	} while (0)

static vm_address_t
map_object(struct mvm_mgr *m, vm_size_t size, vm_offset_t offset)
{
	vm_address_t a = 0;

	assert_kr(vm_map(mach_task_self(), &a, size, 0, TRUE, m->object, offset, FALSE,
	    VM_PROT_ALL, VM_PROT_ALL, VM_INHERIT_NONE), KERN_SUCCESS);
	return a;
}

static bool
page_is(vm_address_t a, vm_offset_t off)
{
	const unsigned char *p = (const unsigned char *)a;

	for (size_t i = 0; i < PG; i++)
		if (p[i] != mvm_mgr_pattern(off + i))
			return false;
	return true;
}

/* ---- supply_completed on a reply port of the test's own ----------------------------- */

struct completion {
	int n;
	vm_offset_t off;
	vm_size_t len;
	kern_return_t result;
	vm_offset_t error_offset;
};

static kern_return_t
rp_supply_completed(void *ctx, memory_object_t reply, mach_port_seqno_t seqno,
    memory_object_control_t ctl, vm_offset_t off, vm_size_t len, kern_return_t result,
    vm_offset_t error_offset)
{
	struct completion *c = ctx;

	(void)reply;
	(void)seqno;
	c->n++;
	c->off = off;
	c->len = len;
	c->result = result;
	c->error_offset = error_offset;
	(void)mach_port_deallocate(mach_task_self(), ctl); /* the send right it carried */
	return KERN_SUCCESS;
}

static const struct mvm_memory_object_ops rp_ops = {
	.version = MVM_MEMORY_OBJECT_OPS_VERSION,
	.supply_completed = rp_supply_completed,
};

/* Receive one message on rp (or time out: 0); serve it if it is a supply_completed. */
static mach_msg_id_t
rp_receive(mach_port_t rp, struct completion *c)
{
	union {
		mach_msg_header_t h;
		_Alignas(8) char buf[512];
	} in, out;
	mach_msg_id_t id;

	memset(&in, 0, sizeof(in));
	if (mach_msg(&in.h, MACH_RCV_MSG | MACH_RCV_TIMEOUT, 0, sizeof(in), rp, TMO,
	    MACH_PORT_NULL) != MACH_MSG_SUCCESS)
		return 0;
	id = in.h.msgh_id;
	if (id != 2207 || !mvm_memory_object_server(&rp_ops, c, &in.h, &out.h))
		mach_msg_destroy(&in.h);
	return id;
}

static unsigned
rp_queued(mach_port_t rp)
{
	mach_port_status_t st;

	assert_kr(mach_port_get_receive_status(mach_task_self(), rp, &st), KERN_SUCCESS);
	return st.mps_msgcount;
}

/* ---- 1. vm_map ---------------------------------------------------------------------- */

static void
map_rejects_bad_arguments(void **state)
{
	struct mvm_mgr *m;
	vm_address_t a = 0;
	mach_port_t gone, rcv, dead;
	uint64_t objects, mappings;

	(void)state;
	test_begin();
	m = mgr_start();
#define MAP(task, size, obj, off, copy, cur, max) \
	vm_map((task), &a, (size), 0, TRUE, (obj), (off), (copy), (cur), (max), VM_INHERIT_NONE)
	assert_kr(MAP(MACH_PORT_NULL, PG, m->object, 0, FALSE, VM_PROT_ALL, VM_PROT_ALL),
	    MACH_SEND_INVALID_DEST);
	assert_kr(MAP(m->object, PG, m->object, 0, FALSE, VM_PROT_ALL, VM_PROT_ALL),
	    MACH_SEND_INVALID_DEST);
	assert_kr(MAP(mach_task_self(), 0, m->object, 0, FALSE, VM_PROT_ALL, VM_PROT_ALL),
	    KERN_INVALID_ARGUMENT);
	assert_kr(MAP(mach_task_self(), PG, m->object, PG / 2, FALSE, VM_PROT_ALL, VM_PROT_ALL),
	    KERN_INVALID_ARGUMENT);
	assert_kr(MAP(mach_task_self(), PG, m->object, 1, FALSE, VM_PROT_ALL, VM_PROT_ALL),
	    KERN_INVALID_ARGUMENT);
	/* copy = TRUE maps a copy (test_vm_copy.c). */
	assert_kr(MAP(mach_task_self(), PG, m->object, 0, FALSE, VM_PROT_ALL, VM_PROT_READ),
	    KERN_INVALID_ARGUMENT);
	assert_kr(MAP(mach_task_self(), PG, m->object, 0, FALSE, VM_PROT_READ | VM_PROT_WRITE,
	    VM_PROT_READ), KERN_INVALID_ARGUMENT);
	/* A name that denotes nothing, a receive right alone, a dead name. */
	gone = mvm_test_port_with_send();
	assert_kr(mach_port_destroy(mach_task_self(), gone), KERN_SUCCESS);
	assert_kr(MAP(mach_task_self(), PG, gone, 0, FALSE, VM_PROT_ALL, VM_PROT_ALL),
	    KERN_INVALID_ARGUMENT);
	assert_kr(mach_port_allocate(mach_task_self(), MACH_PORT_RIGHT_RECEIVE, &rcv), KERN_SUCCESS);
	assert_kr(MAP(mach_task_self(), PG, rcv, 0, FALSE, VM_PROT_ALL, VM_PROT_ALL),
	    KERN_INVALID_ARGUMENT);
	assert_int_equal(rp_queued(rcv), 0); /* no init went to it */
	assert_kr(mach_port_allocate(mach_task_self(), MACH_PORT_RIGHT_DEAD_NAME, &dead),
	    KERN_SUCCESS);
	assert_kr(MAP(mach_task_self(), PG, dead, 0, FALSE, VM_PROT_ALL, VM_PROT_ALL),
	    KERN_INVALID_ARGUMENT);
#undef MAP
	assert_int_equal(a, 0);
	/* Nothing reached the manager, and the kernel made no object. */
	assert_int_equal(mgr_nlog(m), 0);
	mvm__vm_alive(&objects, &mappings);
	assert_int_equal(objects, 0);
	assert_int_equal(mappings, 0);
	assert_kr(mach_port_destroy(mach_task_self(), rcv), KERN_SUCCESS);
	assert_kr(mach_port_destroy(mach_task_self(), dead), KERN_SUCCESS);
	mvm_mgr_stop(m);
	QUIESCENT();
}

static void
map_fixed_address(void **state)
{
	struct mvm_mgr *m, *m2;
	vm_address_t free_at = 0, used = 0, first, a, b;
	struct toucher t;

	(void)state;
	test_begin();
	m = mgr_start();
	m2 = mgr_start();
	/* The object is mapped once already, so a refused vm_map below sends nothing. */
	first = map_object(m, PG, 0);
	/* A free address: allocate and give back. Another thread (the manager's, or a
	 * sanitizer's) may take it meanwhile, hence a few tries. */
	for (int tries = 0;; tries++) {
		kern_return_t kr;

		assert_true(tries < 20);
		assert_kr(vm_allocate(mach_task_self(), &free_at, 4 * PG, TRUE), KERN_SUCCESS);
		assert_kr(vm_deallocate(mach_task_self(), free_at, 4 * PG), KERN_SUCCESS);
		a = free_at;
		kr = vm_map(mach_task_self(), &a, 4 * PG, 0, FALSE, m->object, 0, FALSE, VM_PROT_ALL,
		    VM_PROT_ALL, VM_INHERIT_NONE);
		if (kr == KERN_NO_SPACE)
			continue;
		assert_kr(kr, KERN_SUCCESS);
		break;
	}
	assert_int_equal(a, free_at);
	touch_start(&t, a + PG + 1, false, 0);
	assert_touch_done(&t);
	assert_int_equal(t.val, mvm_mgr_pattern(PG + 1));
	MVM_MGR_EXPECT(m, "init page_size=4096", "data_request off=4096 len=4096 access=1");
	/* Over that mapping, whole or in part: no space, and the mapping is unharmed. */
	b = free_at;
	assert_kr(vm_map(mach_task_self(), &b, 4 * PG, 0, FALSE, m->object, 0, FALSE, VM_PROT_ALL,
	    VM_PROT_ALL, VM_INHERIT_NONE), KERN_NO_SPACE);
	b = free_at + 3 * PG;
	assert_kr(vm_map(mach_task_self(), &b, 2 * PG, 0, FALSE, m->object, 0, FALSE, VM_PROT_ALL,
	    VM_PROT_ALL, VM_INHERIT_NONE), KERN_NO_SPACE);
	assert_int_equal(stats(m->object).mappings, 2);
	assert_true(page_is(a + PG, PG));
	/* Over anonymous memory: no space, and its contents stay. */
	assert_kr(vm_allocate(mach_task_self(), &used, 2 * PG, TRUE), KERN_SUCCESS);
	((unsigned char *)used)[PG] = 0x5a;
	b = used;
	assert_kr(vm_map(mach_task_self(), &b, 2 * PG, 0, FALSE, m->object, 0, FALSE, VM_PROT_ALL,
	    VM_PROT_ALL, VM_INHERIT_NONE), KERN_NO_SPACE);
	assert_int_equal(((unsigned char *)used)[PG], 0x5a);
	/* A new object refused its place: init, then terminate at once (as GNU Mach). */
	b = used;
	assert_kr(vm_map(mach_task_self(), &b, 2 * PG, 0, FALSE, m2->object, 0, FALSE, VM_PROT_ALL,
	    VM_PROT_ALL, VM_INHERIT_NONE), KERN_NO_SPACE);
	MVM_MGR_EXPECT(m2, "init page_size=4096", "terminate");
	assert_int_equal(mgr_nlog(m), 0); /* the refused maps of a mapped object sent nothing */
	assert_kr(vm_deallocate(mach_task_self(), used, 2 * PG), KERN_SUCCESS);
	assert_kr(vm_deallocate(mach_task_self(), a, 4 * PG), KERN_SUCCESS);
	assert_kr(vm_deallocate(mach_task_self(), first, PG), KERN_SUCCESS);
	MVM_MGR_EXPECT(m, "terminate");
	mvm_mgr_stop(m);
	mvm_mgr_stop(m2);
	QUIESCENT();
}

static void
map_mask_and_anonymous(void **state)
{
	struct mvm_mgr *m;
	vm_address_t a[3], anon = 0, anon2 = 0;
	const vm_address_t masks[3] = { 0xfffff, 0x3fffff, 0x7fff };
	struct toucher t;

	(void)state;
	test_begin();
	m = mgr_start();
	for (int i = 0; i < 3; i++) {
		a[i] = 0;
		assert_kr(vm_map(mach_task_self(), &a[i], 3 * PG, masks[i], TRUE, m->object, 0, FALSE,
		    VM_PROT_ALL, VM_PROT_ALL, VM_INHERIT_NONE), KERN_SUCCESS);
		assert_int_equal(a[i] & masks[i], 0);
	}
	touch_start(&t, a[2] + 2 * PG + 9, false, 0);
	assert_touch_done(&t);
	assert_int_equal(t.val, mvm_mgr_pattern(2 * PG + 9));
	MVM_MGR_EXPECT(m, "init page_size=4096", "data_request off=8192 len=4096 access=1");
	assert_true(page_is(a[0] + 2 * PG, 2 * PG)); /* the same page through the others */
	assert_true(page_is(a[1] + 2 * PG, 2 * PG));
	for (int i = 0; i < 3; i++)
		assert_kr(vm_deallocate(mach_task_self(), a[i], 3 * PG), KERN_SUCCESS);
	MVM_MGR_EXPECT(m, "terminate");
	/* MACH_PORT_NULL: anonymous zero-filled memory, aligned to the mask if there is one. */
	assert_kr(vm_map(mach_task_self(), &anon, 3 * PG, 0, TRUE, MACH_PORT_NULL, 0, FALSE,
	    VM_PROT_ALL, VM_PROT_ALL, VM_INHERIT_NONE), KERN_SUCCESS);
	assert_true(anon != 0);
	for (size_t i = 0; i < 3 * PG; i++)
		assert_int_equal(((unsigned char *)anon)[i], 0);
	((unsigned char *)anon)[2 * PG] = 1;
	assert_kr(vm_map(mach_task_self(), &anon2, 2 * PG, 0x1fffff, TRUE, MACH_PORT_NULL, 0, FALSE,
	    VM_PROT_ALL, VM_PROT_ALL, VM_INHERIT_NONE), KERN_SUCCESS);
	assert_int_equal(anon2 & 0x1fffff, 0);
	((unsigned char *)anon2)[2 * PG - 1] = 1;
	assert_kr(vm_deallocate(mach_task_self(), anon, 3 * PG), KERN_SUCCESS);
	assert_kr(vm_deallocate(mach_task_self(), anon2, 2 * PG), KERN_SUCCESS);
	assert_int_equal(mgr_nlog(m), 0);
	mvm_mgr_stop(m);
	QUIESCENT();
}

/* ---- 2. faults before ready ---------------------------------------------------------- */

static void
faults_wait_for_ready(void **state)
{
	struct mvm_mgr *m;
	vm_address_t a;
	mach_port_t ctl;
	struct toucher r, w;
	struct mvm_vm_object_stats st;

	(void)state;
	test_begin();
	m = mgr_start();
	m->no_ready = true;
	a = map_object(m, 4 * PG, 0);   /* returns without waiting for ready */
	ctl = mgr_ctl(m, 1);
	MVM_MGR_EXPECT(m, "init page_size=4096");
	touch_start(&r, a + 5, false, 0);
	touch_start(&w, a + 2 * PG + 7, true, 0x77);
	wait_faults(m->object, 2);
	st = stats(m->object);
	assert_false(st.ready);
	assert_int_equal(st.data_requests, 0);
	assert_int_equal(atomic_load(&r.state), T_RUNNING);
	assert_int_equal(atomic_load(&w.state), T_RUNNING);
	assert_int_equal(mgr_nlog(m), 0);
	/* The manager says ready: the waiting faults go on and ask for their pages. */
	assert_kr(memory_object_ready(ctl, FALSE, MEMORY_OBJECT_COPY_DELAY), KERN_SUCCESS);
	assert_touch_done(&r);
	assert_touch_done(&w);
	assert_int_equal(r.val, mvm_mgr_pattern(5));
	EXPECT_UNORDERED(m, "data_request off=0 len=4096 access=1",
	    "data_request off=8192 len=4096 access=3");
	st = stats(m->object);
	assert_true(st.ready);
	assert_int_equal(st.data_requests, 2);
	assert_int_equal(((unsigned char *)a)[2 * PG + 7], 0x77);
	assert_kr(vm_deallocate(mach_task_self(), a, 4 * PG), KERN_SUCCESS);
	MVM_MGR_EXPECT(m, "data_return off=8192 len=4096 dirty=1 kcopy=0", "terminate");
	mvm_mgr_stop(m);
	QUIESCENT();
}

/* ---- 3. data_request ------------------------------------------------------------------- */

static void
request_once_for_many_waiters(void **state)
{
	struct mvm_mgr *m;
	vm_address_t a;
	struct toucher t[4];
	struct mvm_vm_object_stats st;

	(void)state;
	test_begin();
	m = mgr_start();
	m->manual_requests = true;
	a = map_object(m, 4 * PG, 0);
	(void)mgr_ctl(m, 1);
	for (int i = 0; i < 4; i++)
		touch_start(&t[i], a + PG + 100 * (size_t)i, i == 3, 0x33);
	wait_faults(m->object, 4);
	assert_int_equal(mvm_mgr_wait(m, "data_request", 1, TMO), 1);
	st = stats(m->object);
	assert_int_equal(st.data_requests, 1);
	assert_int_equal(st.pages_requested, 1);
	for (int i = 0; i < 4; i++)
		assert_int_equal(atomic_load(&t[i].state), T_RUNNING);
	/* One answer releases them all. */
	assert_kr(mvm_mgr_supply(m, PG, PG, VM_PROT_NONE, FALSE, MACH_PORT_NULL), KERN_SUCCESS);
	for (int i = 0; i < 4; i++)
		assert_touch_done(&t[i]);
	for (int i = 0; i < 3; i++)
		assert_int_equal(t[i].val, mvm_mgr_pattern(PG + 100 * (size_t)i));
	assert_int_equal(((unsigned char *)a)[PG + 300], 0x33);
	/* The first fault decides the access asked for; the writer's came second or first. */
	assert_int_equal(mgr_nlog(m), 2);
	assert_true(mvm_mgr_count(m, "data_request off=4096 len=4096 access=") == 1);
	assert_int_equal(stats(m->object).data_requests, 1);
	mvm_mgr_clear(m);
	assert_kr(vm_deallocate(mach_task_self(), a, 4 * PG), KERN_SUCCESS);
	MVM_MGR_EXPECT(m, "data_return off=4096 len=4096 dirty=1 kcopy=0", "terminate");
	mvm_mgr_stop(m);
	QUIESCENT();
}

static void
request_per_page_many_threads(void **state)
{
	struct mvm_mgr *m;
	vm_address_t a;
	struct toucher t[8];
	char line[8][64];

	(void)state;
	test_begin();
	m = mgr_start();
	m->manual_requests = true;
	a = map_object(m, 8 * PG, 0);
	(void)mgr_ctl(m, 1);
	for (int i = 0; i < 8; i++)
		touch_start(&t[i], a + (size_t)i * PG + 11, false, 0);
	assert_int_equal(mvm_mgr_wait(m, "data_request", 8, TMO), 8);
	for (int i = 0; i < 8; i++) {
		snprintf(line[i], sizeof(line[i]), "data_request off=%d len=4096 access=1", i * PG);
		assert_int_equal(mvm_mgr_count(m, line[i]), 1);
	}
	/* Answer in reverse order: each page releases its own thread. */
	for (int i = 7; i >= 0; i--) {
		assert_kr(mvm_mgr_supply(m, (vm_offset_t)i * PG, PG, VM_PROT_NONE, FALSE,
		    MACH_PORT_NULL), KERN_SUCCESS);
		assert_touch_done(&t[i]);
		assert_int_equal(t[i].val, mvm_mgr_pattern((vm_offset_t)i * PG + 11));
	}
	assert_int_equal(stats(m->object).data_requests, 8);
	assert_int_equal(stats(m->object).resident, 8);
	assert_int_equal(mgr_nlog(m), 9);
	mvm_mgr_clear(m);
	assert_kr(vm_deallocate(mach_task_self(), a, 8 * PG), KERN_SUCCESS);
	MVM_MGR_EXPECT(m, "terminate");
	mvm_mgr_stop(m);
	QUIESCENT();
}

static void
request_cluster(void **state)
{
	struct mvm_mgr *m;
	vm_address_t a;
	struct toucher t;
	static const int order[] = { 0, 1, 2, 3, 5, 6, 7, 8, 4, 9 };
	struct mvm_vm_object_stats st;

	(void)state;
	test_begin();
	m = mgr_start();
	a = map_object(m, 10 * PG, 0);
	assert_kr(mvm_vm_object_set_cluster(m->object, 0), KERN_INVALID_ARGUMENT);
	assert_kr(mvm_vm_object_set_cluster(m->object, 65), KERN_INVALID_ARGUMENT);
	assert_kr(mvm_vm_object_set_cluster(m->object, 4), KERN_SUCCESS);
	for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++) {
		touch_start(&t, a + (size_t)order[i] * PG + 1, false, 0);
		assert_touch_done(&t);
		assert_int_equal(t.val, mvm_mgr_pattern((vm_offset_t)order[i] * PG + 1));
	}
	/* Pages 0-3 in one request, 5-8 in one, then 4 alone (5 is resident), then 9 alone
	 * (the object ends there). */
	MVM_MGR_EXPECT(m, "init page_size=4096", "data_request off=0 len=16384 access=1",
	    "data_request off=20480 len=16384 access=1", "data_request off=16384 len=4096 access=1",
	    "data_request off=36864 len=4096 access=1");
	for (int pg = 0; pg < 10; pg++)
		assert_true(page_is(a + (size_t)pg * PG, (vm_offset_t)pg * PG));
	st = stats(m->object);
	assert_int_equal(st.data_requests, 4);
	assert_int_equal(st.pages_requested, 10);
	assert_int_equal(st.pages_supplied, 10);
	assert_int_equal(st.resident, 10);
	assert_kr(vm_deallocate(mach_task_self(), a, 10 * PG), KERN_SUCCESS);
	MVM_MGR_EXPECT(m, "terminate");
	mvm_mgr_stop(m);
	QUIESCENT();
}

static void
request_desired_access(void **state)
{
	struct mvm_mgr *m;
	vm_address_t a;
	struct toucher t;

	(void)state;
	test_begin();
	m = mgr_start();
	a = map_object(m, 3 * PG, 0);
	touch_start(&t, a + 10, false, 0);
	assert_touch_done(&t);
	touch_start(&t, a + PG + 10, true, 0x10);
	assert_touch_done(&t);
	/* A write to a page that is resident asks nothing. */
	touch_start(&t, a + 20, true, 0x20);
	assert_touch_done(&t);
	MVM_MGR_EXPECT(m, "init page_size=4096", "data_request off=0 len=4096 access=1",
	    "data_request off=4096 len=4096 access=3");
	assert_int_equal(stats(m->object).dirty, 2);
	assert_kr(vm_deallocate(mach_task_self(), a, 3 * PG), KERN_SUCCESS);
	MVM_MGR_EXPECT(m, "data_return off=0 len=8192 dirty=1 kcopy=0", "terminate");
	assert_int_equal(m->store[0][20], 0x20);
	assert_int_equal(m->store[1][10], 0x10);
	mvm_mgr_stop(m);
	QUIESCENT();
}

/* ---- 4. data_supply --------------------------------------------------------------------- */

static void
supply_reply_and_memory_present(void **state)
{
	struct mvm_mgr *m;
	vm_address_t a;
	mach_port_t rp;
	struct toucher t;
	struct completion c = { 0 };

	(void)state;
	test_begin();
	m = mgr_start();
	m->manual_requests = true;
	a = map_object(m, 5 * PG, 0);
	(void)mgr_ctl(m, 1);
	assert_kr(mach_port_allocate(mach_task_self(), MACH_PORT_RIGHT_RECEIVE, &rp), KERN_SUCCESS);
	/* An answer with a reply port: supply_completed, KERN_SUCCESS. */
	touch_start(&t, a + 1, false, 0);
	assert_int_equal(mvm_mgr_wait(m, "data_request", 1, TMO), 1);
	assert_kr(mvm_mgr_supply(m, 0, PG, VM_PROT_NONE, FALSE, rp), KERN_SUCCESS);
	assert_int_equal(rp_receive(rp, &c), 2207);
	assert_int_equal(c.n, 1);
	assert_int_equal(c.off, 0);
	assert_int_equal(c.len, PG);
	assert_kr(c.result, KERN_SUCCESS);
	assert_int_equal(c.error_offset, 0);
	assert_touch_done(&t);
	assert_int_equal(t.val, mvm_mgr_pattern(1));
	/* Page 2 resident; then pages 1-3: page 1 goes in, page 2 stops it, page 3 is dropped. */
	touch_start(&t, a + 2 * PG, false, 0);
	assert_int_equal(mvm_mgr_wait(m, "data_request", 2, TMO), 2);
	assert_kr(mvm_mgr_supply(m, 2 * PG, PG, VM_PROT_NONE, FALSE, MACH_PORT_NULL), KERN_SUCCESS);
	assert_touch_done(&t);
	MVM_MGR_EXPECT(m, "init page_size=4096", "data_request off=0 len=4096 access=1",
	    "data_request off=8192 len=4096 access=1");
	assert_kr(mvm_mgr_supply(m, PG, 3 * PG, VM_PROT_NONE, FALSE, rp), KERN_SUCCESS);
	assert_int_equal(rp_receive(rp, &c), 2207);
	assert_int_equal(c.n, 2);
	assert_int_equal(c.off, PG);
	assert_int_equal(c.len, 3 * PG);
	assert_kr(c.result, KERN_MEMORY_PRESENT);
	assert_int_equal(c.error_offset, 2 * PG);
	assert_int_equal(stats(m->object).resident, 3);
	touch_start(&t, a + PG + 5, false, 0);      /* page 1 was taken: no request */
	assert_touch_done(&t);
	assert_int_equal(t.val, mvm_mgr_pattern(PG + 5));
	assert_int_equal(mgr_nlog(m), 0);
	touch_start(&t, a + 3 * PG + 5, false, 0);  /* page 3 was dropped: asked for */
	assert_int_equal(mvm_mgr_wait(m, "data_request", 1, TMO), 1);
	assert_kr(mvm_mgr_supply(m, 3 * PG, PG, VM_PROT_NONE, FALSE, MACH_PORT_NULL), KERN_SUCCESS);
	assert_touch_done(&t);
	assert_int_equal(t.val, mvm_mgr_pattern(3 * PG + 5));
	MVM_MGR_EXPECT(m, "data_request off=12288 len=4096 access=1");
	assert_int_equal(rp_queued(rp), 0);
	assert_kr(vm_deallocate(mach_task_self(), a, 5 * PG), KERN_SUCCESS);
	MVM_MGR_EXPECT(m, "terminate");
	assert_kr(mach_port_destroy(mach_task_self(), rp), KERN_SUCCESS);
	mvm_mgr_stop(m);
	QUIESCENT();
}

static void
supply_unsolicited(void **state)
{
	struct mvm_mgr *m;
	vm_address_t a;
	mach_port_t ctl;
	struct toucher t;
	struct mvm_vm_object_stats st;

	(void)state;
	test_begin();
	m = mgr_start();
	m->manual_requests = true;
	a = map_object(m, 8 * PG, 0);
	ctl = mgr_ctl(m, 1);
	MVM_MGR_EXPECT(m, "init page_size=4096");
	/* Pages 5 and 6 before anyone asks: reading them asks nothing. */
	assert_kr(mvm_mgr_supply(m, 5 * PG, 2 * PG, VM_PROT_NONE, FALSE, MACH_PORT_NULL),
	    KERN_SUCCESS);
	ctl_sync(ctl);
	st = stats(m->object);
	assert_int_equal(st.resident, 2);
	assert_int_equal(st.pages_supplied, 2);
	assert_int_equal(st.data_requests, 0);
	touch_start(&t, a + 5 * PG + 3, false, 0);
	assert_touch_done(&t);
	assert_int_equal(t.val, mvm_mgr_pattern(5 * PG + 3));
	touch_start(&t, a + 6 * PG + 4, true, 0x66);
	assert_touch_done(&t);
	assert_int_equal(stats(m->object).data_requests, 0);
	assert_int_equal(mgr_nlog(m), 0);
	assert_kr(vm_deallocate(mach_task_self(), a, 8 * PG), KERN_SUCCESS);
	MVM_MGR_EXPECT(m, "data_return off=24576 len=4096 dirty=1 kcopy=0", "terminate");
	assert_int_equal(m->store[6][4], 0x66);
	mvm_mgr_stop(m);
	QUIESCENT();
}

static void
supply_bad_rejected(void **state)
{
	struct mvm_mgr *m;
	vm_address_t a;
	mach_port_t ctl, rp;
	struct toucher t;
	struct completion c = { 0 };
	struct mvm_vm_object_stats st;
	vm_offset_t data;

	(void)state;
	test_begin();
	m = mgr_start();
	m->manual_requests = true;
	a = map_object(m, 4 * PG, 0);
	ctl = mgr_ctl(m, 1);
	data = (vm_offset_t)m->store[1];
	assert_kr(mach_port_allocate(mach_task_self(), MACH_PORT_RIGHT_RECEIVE, &rp), KERN_SUCCESS);
	touch_start(&t, a + PG + 8, false, 0);
	assert_int_equal(mvm_mgr_wait(m, "data_request", 1, TMO), 1);
	MVM_MGR_EXPECT(m, "init page_size=4096", "data_request off=4096 len=4096 access=1");
	/* Each is refused whole: no completion (the unused reply right comes back as a
	 * send-once notification), no page, and the thread keeps waiting. */
	assert_kr(memory_object_data_supply(ctl, PG + 512, data, PG, FALSE, VM_PROT_NONE, FALSE, rp),
	    KERN_SUCCESS);
	assert_kr(memory_object_data_supply(ctl, PG, data, PG / 2, FALSE, VM_PROT_NONE, FALSE, rp),
	    KERN_SUCCESS);
	assert_kr(memory_object_data_supply(ctl, PG, data, PG + 100, FALSE, VM_PROT_NONE, FALSE, rp),
	    KERN_SUCCESS);
	assert_kr(memory_object_data_supply(ctl, PG, data, PG, FALSE, VM_PROT_ALL + 1, FALSE, rp),
	    KERN_SUCCESS);
	assert_kr(memory_object_data_supply(ctl, PG, data, PG, FALSE, VM_PROT_NO_CHANGE, FALSE, rp),
	    KERN_SUCCESS);
	ctl_sync(ctl);
	for (int i = 0; i < 5; i++)
		assert_int_equal(rp_receive(rp, &c), MACH_NOTIFY_SEND_ONCE);
	assert_int_equal(c.n, 0);
	assert_int_equal(atomic_load(&t.state), T_RUNNING);
	st = stats(m->object);
	assert_int_equal(st.resident, 0);
	assert_int_equal(st.pages_supplied, 0);
	/* A correct supply releases the thread. */
	assert_kr(mvm_mgr_supply(m, PG, PG, VM_PROT_NONE, FALSE, rp), KERN_SUCCESS);
	assert_int_equal(rp_receive(rp, &c), 2207);
	assert_kr(c.result, KERN_SUCCESS);
	assert_touch_done(&t);
	assert_int_equal(t.val, mvm_mgr_pattern(PG + 8));
	assert_true(page_is(a + PG, PG));
	assert_int_equal(mgr_nlog(m), 0);
	assert_kr(vm_deallocate(mach_task_self(), a, 4 * PG), KERN_SUCCESS);
	MVM_MGR_EXPECT(m, "terminate");
	assert_kr(mach_port_destroy(mach_task_self(), rp), KERN_SUCCESS);
	mvm_mgr_stop(m);
	QUIESCENT();
}

static void
supply_write_locked(void **state)
{
	struct mvm_mgr *m;
	vm_address_t a;
	struct toucher t;

	(void)state;
	test_begin();
	m = mgr_start();
	m->supply_lock = VM_PROT_WRITE;
	a = map_object(m, 4 * PG, 0);
	/* Read, then write: the write asks for WRITE with data_unlock. */
	touch_start(&t, a + 3, false, 0);
	assert_touch_done(&t);
	MVM_MGR_EXPECT(m, "init page_size=4096", "data_request off=0 len=4096 access=1");
	touch_start(&t, a + 3, true, 0xa3);
	assert_touch_done(&t);
	MVM_MGR_EXPECT(m, "data_unlock off=0 len=4096 access=2");
	/* The manager unlocked it: later writes ask nothing. */
	touch_start(&t, a + 4, true, 0xa4);
	assert_touch_done(&t);
	/* A write to a missing page: the supply itself forbids the write, so unlock too. */
	touch_start(&t, a + 2 * PG + 1, true, 0xb1);
	assert_touch_done(&t);
	MVM_MGR_EXPECT(m, "data_request off=8192 len=4096 access=3",
	    "data_unlock off=8192 len=4096 access=2");
	assert_int_equal(stats(m->object).data_unlocks, 2);
	assert_int_equal(stats(m->object).dirty, 2);
	assert_kr(vm_deallocate(mach_task_self(), a, 4 * PG), KERN_SUCCESS);
	MVM_MGR_EXPECT(m, "data_return off=0 len=4096 dirty=1 kcopy=0",
	    "data_return off=8192 len=4096 dirty=1 kcopy=0", "terminate");
	assert_int_equal(m->store[0][3], 0xa3);
	assert_int_equal(m->store[0][4], 0xa4);
	assert_int_equal(m->store[2][1], 0xb1);
	mvm_mgr_stop(m);
	QUIESCENT();
}

static void
supply_precious(void **state)
{
	struct mvm_mgr *m;
	vm_address_t a;
	struct toucher t;

	(void)state;
	test_begin();
	m = mgr_start();
	m->supply_precious = TRUE;
	a = map_object(m, 5 * PG, 0);
	touch_start(&t, a + 1, false, 0);
	assert_touch_done(&t);
	touch_start(&t, a + PG + 1, false, 0);
	assert_touch_done(&t);
	touch_start(&t, a + 3 * PG + 1, true, 0xc3);
	assert_touch_done(&t);
	MVM_MGR_EXPECT(m, "init page_size=4096", "data_request off=0 len=4096 access=1",
	    "data_request off=4096 len=4096 access=1", "data_request off=12288 len=4096 access=3");
	assert_int_equal(stats(m->object).dirty, 1);
	/* Clean precious pages come back too (dirty = FALSE), in their own run. */
	assert_kr(vm_deallocate(mach_task_self(), a, 5 * PG), KERN_SUCCESS);
	MVM_MGR_EXPECT(m, "data_return off=0 len=8192 dirty=0 kcopy=0",
	    "data_return off=12288 len=4096 dirty=1 kcopy=0", "terminate");
	assert_int_equal(m->store[3][1], 0xc3);
	mvm_mgr_stop(m);
	QUIESCENT();
}

/* ---- 5. data_unavailable and data_error ----------------------------------------------- */

static void
unavailable_zero_fills_waiters_only(void **state)
{
	struct mvm_mgr *m;
	vm_address_t a;
	mach_port_t ctl;
	struct toucher t, t3;

	(void)state;
	test_begin();
	m = mgr_start();
	m->manual_requests = true;
	a = map_object(m, 6 * PG, 0);
	ctl = mgr_ctl(m, 1);
	touch_start(&t, a + PG + 40, false, 0);
	assert_int_equal(mvm_mgr_wait(m, "data_request", 1, TMO), 1);
	assert_kr(memory_object_data_unavailable(ctl, PG, PG), KERN_SUCCESS);
	assert_touch_done(&t);
	assert_int_equal(t.val, 0);
	for (size_t i = 0; i < PG; i++)
		assert_int_equal(((unsigned char *)a)[PG + i], 0);
	/* Pages nobody asked for are not touched: page 2 alone, and page 4 next to 3. */
	touch_start(&t3, a + 3 * PG, false, 0);
	assert_int_equal(mvm_mgr_wait(m, "data_request", 2, TMO), 2);
	assert_kr(memory_object_data_unavailable(ctl, 2 * PG, PG), KERN_SUCCESS);
	assert_kr(memory_object_data_unavailable(ctl, 3 * PG, 2 * PG), KERN_SUCCESS);
	assert_touch_done(&t3);
	assert_int_equal(t3.val, 0);
	assert_int_equal(stats(m->object).unavailable, 2);
	assert_int_equal(stats(m->object).resident, 2);
	MVM_MGR_EXPECT(m, "init page_size=4096", "data_request off=4096 len=4096 access=1",
	    "data_request off=12288 len=4096 access=1");
	touch_start(&t, a + 2 * PG + 2, false, 0);
	assert_int_equal(mvm_mgr_wait(m, "data_request", 1, TMO), 1);
	assert_kr(mvm_mgr_supply(m, 2 * PG, PG, VM_PROT_NONE, FALSE, MACH_PORT_NULL), KERN_SUCCESS);
	assert_touch_done(&t);
	assert_int_equal(t.val, mvm_mgr_pattern(2 * PG + 2));
	touch_start(&t, a + 4 * PG + 2, false, 0);
	assert_int_equal(mvm_mgr_wait(m, "data_request", 2, TMO), 2);
	assert_kr(mvm_mgr_supply(m, 4 * PG, PG, VM_PROT_NONE, FALSE, MACH_PORT_NULL), KERN_SUCCESS);
	assert_touch_done(&t);
	assert_int_equal(t.val, mvm_mgr_pattern(4 * PG + 2));
	MVM_MGR_EXPECT(m, "data_request off=8192 len=4096 access=1",
	    "data_request off=16384 len=4096 access=1");
	/* A zero-filled page written to is dirty like any other. */
	touch_start(&t, a + PG + 1, true, 0xd1);
	assert_touch_done(&t);
	assert_kr(vm_deallocate(mach_task_self(), a, 6 * PG), KERN_SUCCESS);
	MVM_MGR_EXPECT(m, "data_return off=4096 len=4096 dirty=1 kcopy=0", "terminate");
	assert_int_equal(m->store[1][1], 0xd1);
	assert_int_equal(m->store[1][0], 0);
	mvm_mgr_stop(m);
	QUIESCENT();
}

static void
error_sigbus_to_waiters_only(void **state)
{
	struct mvm_mgr *m;
	vm_address_t a;
	mach_port_t ctl;
	struct toucher e1, e2, other, again;

	(void)state;
	test_begin();
	m = mgr_start();
	m->manual_requests = true;
	a = map_object(m, 4 * PG, 0);
	ctl = mgr_ctl(m, 1);
	/* Two threads on page 2 (one reads, one writes), one on page 3. */
	touch_start(&e1, a + 2 * PG + 123, false, 0);
	assert_int_equal(mvm_mgr_wait(m, "data_request", 1, TMO), 1);
	touch_start(&e2, a + 2 * PG + 4000, true, 0xee);
	touch_start(&other, a + 3 * PG + 5, false, 0);
	assert_int_equal(mvm_mgr_wait(m, "data_request", 2, TMO), 2);
	wait_faults(m->object, 3);
	MVM_MGR_EXPECT(m, "init page_size=4096", "data_request off=8192 len=4096 access=1",
	    "data_request off=12288 len=4096 access=1");
	assert_kr(memory_object_data_error(ctl, 2 * PG, PG, KERN_FAILURE), KERN_SUCCESS);
	assert_touch_sigbus(&e1);
	assert_touch_sigbus(&e2);
	ctl_sync(ctl);
	assert_int_equal(atomic_load(&other.state), T_RUNNING);
	assert_int_equal(stats(m->object).errors, 1);
	assert_int_equal(mgr_nlog(m), 0);
	/* The error was for those threads only: the page is asked for again, and works. */
	touch_start(&again, a + 2 * PG + 7, false, 0);
	assert_int_equal(mvm_mgr_wait(m, "data_request", 1, TMO), 1);
	assert_kr(mvm_mgr_supply(m, 2 * PG, PG, VM_PROT_NONE, FALSE, MACH_PORT_NULL), KERN_SUCCESS);
	assert_touch_done(&again);
	assert_int_equal(again.val, mvm_mgr_pattern(2 * PG + 7));
	assert_kr(mvm_mgr_supply(m, 3 * PG, PG, VM_PROT_NONE, FALSE, MACH_PORT_NULL), KERN_SUCCESS);
	assert_touch_done(&other);
	assert_int_equal(other.val, mvm_mgr_pattern(3 * PG + 5));
	MVM_MGR_EXPECT(m, "data_request off=8192 len=4096 access=1");
	/* data_error on a page nobody waits for changes nothing. */
	assert_kr(memory_object_data_error(ctl, 0, 4 * PG, KERN_FAILURE), KERN_SUCCESS);
	ctl_sync(ctl);
	assert_int_equal(stats(m->object).errors, 1);
	assert_int_equal(stats(m->object).resident, 2);
	assert_true(page_is(a + 3 * PG, 3 * PG));
	assert_kr(vm_deallocate(mach_task_self(), a, 4 * PG), KERN_SUCCESS);
	MVM_MGR_EXPECT(m, "terminate");
	mvm_mgr_stop(m);
	QUIESCENT();
}

/* ---- 6. many threads ----------------------------------------------------------------- */

#define ST_THREADS 8
#define ST_PAGES 64
#define ST_ROUNDS 3

struct stress_thread {
	pthread_t th;
	vm_address_t a;
	int id, round;
	const unsigned char (*expect)[PG];
	int bad;                          /* mismatches seen */
};

static void *
stress_main(void *arg)
{
	struct stress_thread *s = arg;
	volatile unsigned char *p = (volatile unsigned char *)s->a;

	/* Every thread reads every page, starting at its own; each writes its own eight. */
	for (int k = 0; k < ST_PAGES; k++) {
		int pg = (s->id * (ST_PAGES / ST_THREADS) + k) % ST_PAGES;
		size_t off = (size_t)(pg * 13 + s->id * 17) % 2048;

		if (p[(size_t)pg * PG + off] != s->expect[pg][off])
			s->bad++;
		if (pg / (ST_PAGES / ST_THREADS) == s->id)
			p[(size_t)pg * PG + 3000 + (size_t)s->id] = (unsigned char)(s->round * 31 + pg);
	}
	return NULL;
}

static void
many_threads_many_pages(void **state)
{
	static unsigned char snap[ST_PAGES][PG];
	struct mvm_mgr *m;
	struct stress_thread th[ST_THREADS];

	(void)state;
	test_begin();
	m = mgr_start();
	for (int round = 0; round < ST_ROUNDS; round++) {
		vm_address_t a;
		struct mvm_vm_object_stats st;
		char line[80];

		memcpy(snap, m->store, sizeof(snap));
		a = map_object(m, ST_PAGES * PG, 0);
		for (int i = 0; i < ST_THREADS; i++) {
			th[i] = (struct stress_thread){ .a = a, .id = i, .round = round, .expect = snap };
			assert_int_equal(pthread_create(&th[i].th, NULL, stress_main, &th[i]), 0);
		}
		for (int i = 0; i < ST_THREADS; i++) {
			pthread_join(th[i].th, NULL);
			assert_int_equal(th[i].bad, 0);
		}
		/* Every page asked for exactly once, and the statistics say the same. */
		assert_int_equal(mvm_mgr_count(m, "init"), 1);
		assert_int_equal(mvm_mgr_count(m, "data_request"), ST_PAGES);
		for (int pg = 0; pg < ST_PAGES; pg++) {
			snprintf(line, sizeof(line), "data_request off=%d len=4096 access=", pg * PG);
			assert_int_equal(mvm_mgr_count(m, line), 1);
		}
		assert_int_equal(mgr_nlog(m), 1 + ST_PAGES);
		st = stats(m->object);
		assert_int_equal(st.data_requests, ST_PAGES);
		assert_int_equal(st.pages_requested, ST_PAGES);
		assert_int_equal(st.data_supplies, ST_PAGES);
		assert_int_equal(st.pages_supplied, ST_PAGES);
		assert_int_equal(st.bytes_in, ST_PAGES * PG);
		assert_int_equal(st.resident, ST_PAGES);
		assert_int_equal(st.dirty, ST_PAGES);
		assert_true(st.faults >= ST_PAGES);
		assert_int_equal(st.errors + st.unavailable + st.data_unlocks + st.data_returns, 0);
		for (int pg = 0; pg < ST_PAGES; pg++)
			for (size_t b = 0; b < PG; b++) {
				size_t id = b - 3000;
				unsigned char want = b >= 3000 && id < ST_THREADS &&
				    (size_t)pg / (ST_PAGES / ST_THREADS) == id ?
				    (unsigned char)(round * 31 + pg) : snap[pg][b];

				if (((unsigned char *)a)[(size_t)pg * PG + b] != want)
					fail_msg("round %d page %d byte %zu", round, pg, b);
			}
		mvm_mgr_clear(m);
		assert_kr(vm_deallocate(mach_task_self(), a, ST_PAGES * PG), KERN_SUCCESS);
		MVM_MGR_EXPECT(m, "data_return off=0 len=131072 dirty=1 kcopy=0",
		    "data_return off=131072 len=131072 dirty=1 kcopy=0", "terminate");
		for (int pg = 0; pg < ST_PAGES; pg++)
			assert_int_equal(m->store[pg][3000 + pg / (ST_PAGES / ST_THREADS)],
			    (unsigned char)(round * 31 + pg));
	}
	mvm_mgr_stop(m);
	QUIESCENT();
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(map_rejects_bad_arguments),
		cmocka_unit_test(map_fixed_address),
		cmocka_unit_test(map_mask_and_anonymous),
		cmocka_unit_test(faults_wait_for_ready),
		cmocka_unit_test(request_once_for_many_waiters),
		cmocka_unit_test(request_per_page_many_threads),
		cmocka_unit_test(request_cluster),
		cmocka_unit_test(request_desired_access),
		cmocka_unit_test(supply_reply_and_memory_present),
		cmocka_unit_test(supply_unsolicited),
		cmocka_unit_test(supply_bad_rejected),
		cmocka_unit_test(supply_write_locked),
		cmocka_unit_test(supply_precious),
		cmocka_unit_test(unavailable_zero_fills_waiters_only),
		cmocka_unit_test(error_sigbus_to_waiters_only),
		cmocka_unit_test(many_threads_many_pages),
	};

	/* Before any kernel call: see mvm_vmtest.h. */
	if (!mvm_vmtest_main_setup())
		return 1;
	return cmocka_run_group_tests_name("vm_fault", tests, NULL, NULL);
}
