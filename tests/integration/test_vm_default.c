/*
 * tests/integration/test_vm_default.c: the default memory manager.
 *
 *   - vm_set_default_memory_manager on mach_host_self(): set, read (MACH_PORT_NULL),
 *     replace (the old right comes back), KERN_INVALID_HOST on another port the kernel
 *     serves; the kernel forgets a default manager whose port is destroyed.
 *   - Without a default manager, a copy's dirty pages have nowhere to go: they stay
 *     resident beyond the limit and nothing is lost.
 *   - With the anonymous default pager, under a small resident limit: the copy's pages
 *     go to it (one memory_object_create, data_initialize for a page's first trip,
 *     data_return after), come back with data_request, byte for byte, twice; none of it
 *     reaches the original's manager; terminate frees the default pager's object.
 *   - A scripted default manager: the exact message sequence of create and
 *     data_initialize.
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
#include <machvm/pagers.h>
#include <machvm/vm.h>
#include "mvm_test.h"
#include "mvm_mgr.h"

#include "mvm_vmtest.h"

#define NPG 32

static vm_address_t
map(mach_port_t object, vm_size_t size, boolean_t copy)
{
	vm_address_t a = 0;

	assert_kr(vm_map(mach_task_self(), &a, size, 0, TRUE, object, 0, copy, VM_PROT_ALL,
	    VM_PROT_ALL, VM_INHERIT_NONE), KERN_SUCCESS);
	return a;
}

static struct mvm_vm_stats
kst(void)
{
	struct mvm_vm_stats st;

	assert_kr(mvm_vm_stats(&st), KERN_SUCCESS);
	return st;
}

/* The value written at byte i of page pg, round r. */
static unsigned char
val(size_t pg, size_t i, int r)
{
	return (unsigned char)(pg * 13 + i * 7 + r * 101 + 1);
}

static void
wait_no_default(void)
{
	mach_port_t dm = MACH_PORT_NULL;

	for (int i = 0; i < TMO; i++) {
		dm = MACH_PORT_NULL;
		assert_kr(vm_set_default_memory_manager(mach_host_self(), &dm), KERN_SUCCESS);
		if (dm == MACH_PORT_NULL)
			return;
		(void)mach_port_deallocate(mach_task_self(), dm);
		sleep_ms(1);
	}
	fail_msg("the kernel still has a default memory manager");
}

/* ---- registration ----------------------------------------------------------------------- */

static void
set_read_replace(void **state)
{
	mach_port_t host, p, q, dm;
	struct mvm_mgr *m;
	mach_port_t ctl;
	vm_address_t a;

	(void)state;
	test_begin();
	host = mach_host_self();
	assert_true(MACH_PORT_VALID(host));
	assert_int_equal(mach_host_priv_self(), host);
	dm = MACH_PORT_NULL;
	assert_kr(vm_set_default_memory_manager(host, &dm), KERN_SUCCESS);
	assert_int_equal(dm, MACH_PORT_NULL);
	p = mvm_test_receive();
	q = mvm_test_receive();
	dm = p;
	assert_kr(vm_set_default_memory_manager(host, &dm), KERN_SUCCESS);
	assert_int_equal(dm, MACH_PORT_NULL);
	assert_int_equal(mvm_test_refs(p, MACH_PORT_RIGHT_SEND), 1); /* the kernel's */
	/* Read: a send right to the current one. */
	dm = MACH_PORT_NULL;
	assert_kr(vm_set_default_memory_manager(host, &dm), KERN_SUCCESS);
	assert_int_equal(dm, p);
	assert_int_equal(mvm_test_refs(p, MACH_PORT_RIGHT_SEND), 2);
	assert_kr(mach_port_deallocate(mach_task_self(), p), KERN_SUCCESS);
	/* Replace: the old right comes back to the caller. */
	dm = q;
	assert_kr(vm_set_default_memory_manager(host, &dm), KERN_SUCCESS);
	assert_int_equal(dm, p);
	assert_kr(mach_port_deallocate(mach_task_self(), p), KERN_SUCCESS);
	assert_int_equal(mvm_test_refs(p, MACH_PORT_RIGHT_SEND), 0);
	/* Another port the kernel serves is not the host port. */
	m = mgr_start();
	a = map(m->object, PG, FALSE);
	ctl = mgr_ctl(m, 1);
	dm = p;
	assert_kr(vm_set_default_memory_manager(ctl, &dm), KERN_INVALID_HOST);
	assert_kr(vm_deallocate(mach_task_self(), a, PG), KERN_SUCCESS);
	mvm_mgr_stop(m);
	/* The default manager's port is destroyed: the kernel forgets it. */
	assert_kr(mach_port_destroy(mach_task_self(), q), KERN_SUCCESS);
	wait_no_default();
	assert_kr(mach_port_destroy(mach_task_self(), p), KERN_SUCCESS);
	QUIESCENT();
}

/* ---- no default manager ------------------------------------------------------------------- */

static void
no_default_keeps_pages(void **state)
{
	struct mvm_mgr *m;
	vm_address_t c;

	(void)state;
	test_begin();
	wait_no_default();
	m = mvm_mgr_start();
	c = map(m->object, NPG * PG, TRUE);
	assert_kr(mvm_vm_set_resident_limit(4 * PG), KERN_SUCCESS);
	for (size_t pg = 0; pg < NPG; pg++)
		memset((void *)(c + pg * PG), val(pg, 0, 0), PG);
	/* The original's clean pages could go; the copy's written pages could not. */
	assert_true(kst().resident >= NPG);
	for (size_t pg = 0; pg < NPG; pg++)
		for (size_t i = 0; i < PG; i += 511)
			assert_int_equal(((unsigned char *)c)[pg * PG + i], val(pg, 0, 0));
	assert_kr(mvm_vm_set_resident_limit(0), KERN_SUCCESS);
	assert_kr(vm_deallocate(mach_task_self(), c, NPG * PG), KERN_SUCCESS);
	assert_int_equal(mvm_mgr_count(m, "data_return"), 0);
	mvm_mgr_wait(m, "terminate", 1, TMO);
	mvm_mgr_stop(m);
	QUIESCENT();
}

/* ---- the anonymous default pager -------------------------------------------------------- */

static void
anon_default_round_trip(void **state)
{
	struct mvm_default_pager *dp;
	struct mvm_default_pager_stats ds;
	struct mvm_mgr *m;
	mach_port_t port, dm;
	vm_address_t c;

	(void)state;
	test_begin();
	assert_kr(mvm_anon_default_pager_start(NULL, &dp, &port), KERN_SUCCESS);
	dm = port;
	assert_kr(vm_set_default_memory_manager(mach_host_self(), &dm), KERN_SUCCESS);
	assert_int_equal(dm, MACH_PORT_NULL);
	m = mvm_mgr_start();
	c = map(m->object, NPG * PG, TRUE);
	assert_kr(mvm_vm_set_resident_limit(8 * PG), KERN_SUCCESS);
	for (int r = 0; r < 2; r++) {
		for (size_t pg = 0; pg < NPG; pg++)
			for (size_t i = 0; i < PG; i++)
				((unsigned char *)c)[pg * PG + i] = val(pg, i, r);
		for (size_t pg = 0; pg < NPG; pg++)
			for (size_t i = 0; i < PG; i++)
				if (((unsigned char *)c)[pg * PG + i] != val(pg, i, r))
					fail_msg("round %d: page %zu byte %zu is %d, not %d", r, pg, i,
					    ((unsigned char *)c)[pg * PG + i], val(pg, i, r));
		assert_true(kst().resident_peak <= 8 + 64 + 1);
	}
	assert_kr(mvm_anon_default_pager_stats(dp, &ds), KERN_SUCCESS);
	assert_int_equal(ds.creates, 1);
	assert_int_equal(ds.objects, 1);
	assert_true(ds.initializes > 0);    /* first trips */
	assert_true(ds.returns > 0);        /* later ones (round 2) */
	assert_true(ds.requests > 0);       /* pages came back */
	assert_true(ds.pages_supplied > 0);
	assert_int_equal(ds.errors, 0);
	/* Nothing of the copy went to the original's manager. */
	assert_int_equal(mvm_mgr_count(m, "data_return"), 0);
	assert_kr(mvm_vm_set_resident_limit(0), KERN_SUCCESS);
	assert_kr(vm_deallocate(mach_task_self(), c, NPG * PG), KERN_SUCCESS);
	/* The copy's object terminates at the default pager; the original at its manager. */
	for (int i = 0; i < TMO; i++) {
		assert_kr(mvm_anon_default_pager_stats(dp, &ds), KERN_SUCCESS);
		if (ds.objects == 0)
			break;
		sleep_ms(1);
	}
	assert_int_equal(ds.objects, 0);
	assert_int_equal(ds.terminates, 1);
	assert_int_equal(ds.pages_stored, 0);
	mvm_mgr_wait(m, "terminate", 1, TMO);
	assert_int_equal(mvm_mgr_count(m, "data_return"), 0);
	mvm_mgr_stop(m);
	assert_kr(mvm_anon_default_pager_stop(dp), KERN_SUCCESS);
	wait_no_default();
	QUIESCENT();
}

/* ---- a scripted default manager: the exact messages ------------------------------------ */

struct sdm {
	mach_port_t port, pset, obj, ctl, name;
	pthread_t th;
	pthread_mutex_t mtx;
	char log[64][96];
	int nlog;
	unsigned char store[4][PG];
};

static struct sdm sd;

static void __attribute__((format(printf, 1, 2)))
sd_log(const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&sd.mtx);
	va_start(ap, fmt);
	if (sd.nlog < 64)
		vsnprintf(sd.log[sd.nlog++], sizeof(sd.log[0]), fmt, ap);
	va_end(ap);
	pthread_mutex_unlock(&sd.mtx);
}

static kern_return_t
sd_create(void *ctx, memory_object_t old, mach_port_seqno_t seqno, memory_object_t newobj,
    vm_size_t size, memory_object_control_t ctl, memory_object_name_t name, vm_size_t ps)
{
	(void)ctx; (void)seqno;
	sd_log("create old=%s size=%lu page_size=%lu", old == sd.port ? "dmm" : "?",
	    (unsigned long)size, (unsigned long)ps);
	(void)mach_port_deallocate(mach_task_self(), old);
	pthread_mutex_lock(&sd.mtx);
	sd.obj = newobj;
	sd.ctl = ctl;
	sd.name = name;
	pthread_mutex_unlock(&sd.mtx);
	assert_kr(mach_port_move_member(mach_task_self(), newobj, sd.pset), KERN_SUCCESS);
	return KERN_SUCCESS;
}

static kern_return_t
sd_init(void *ctx, memory_object_t obj, mach_port_seqno_t seqno, memory_object_control_t ctl,
    memory_object_name_t name, vm_size_t ps)
{
	(void)ctx; (void)seqno; (void)obj; (void)ctl; (void)name; (void)ps;
	sd_log("init");
	return KERN_SUCCESS;
}

static kern_return_t
sd_initialize(void *ctx, memory_object_t obj, mach_port_seqno_t seqno,
    memory_object_control_t ctl, vm_offset_t off, vm_offset_t data, mach_msg_type_number_t n)
{
	(void)ctx; (void)seqno; (void)ctl;
	sd_log("data_initialize %s off=%lu len=%u byte=%d", obj == sd.obj ? "obj" : "?",
	    (unsigned long)off, n, ((unsigned char *)data)[5]);
	if (off / PG < 4)
		memcpy(sd.store[off / PG], (void *)data, PG);
	(void)vm_deallocate(mach_task_self(), data, n);
	return KERN_SUCCESS;
}

static kern_return_t
sd_return(void *ctx, memory_object_t obj, mach_port_seqno_t seqno, memory_object_control_t ctl,
    vm_offset_t off, vm_offset_t data, mach_msg_type_number_t n, boolean_t dirty,
    boolean_t kcopy)
{
	(void)ctx; (void)seqno; (void)ctl;
	sd_log("data_return %s off=%lu len=%u dirty=%d kcopy=%d byte=%d",
	    obj == sd.obj ? "obj" : "?", (unsigned long)off, n, dirty, kcopy,
	    ((unsigned char *)data)[5]);
	if (off / PG < 4)
		memcpy(sd.store[off / PG], (void *)data, PG);
	(void)vm_deallocate(mach_task_self(), data, n);
	return KERN_SUCCESS;
}

static kern_return_t
sd_request(void *ctx, memory_object_t obj, mach_port_seqno_t seqno, memory_object_control_t ctl,
    vm_offset_t off, vm_size_t len, vm_prot_t access)
{
	(void)ctx; (void)seqno;
	sd_log("data_request %s off=%lu len=%lu", obj == sd.obj ? "obj" : "?",
	    (unsigned long)off, (unsigned long)len);
	(void)access;
	(void)memory_object_data_supply(ctl, off, (vm_offset_t)sd.store[off / PG], PG, FALSE,
	    VM_PROT_NONE, FALSE, MACH_PORT_NULL);
	return KERN_SUCCESS;
}

static kern_return_t
sd_terminate(void *ctx, memory_object_t obj, mach_port_seqno_t seqno,
    memory_object_control_t ctl, memory_object_name_t name)
{
	(void)ctx; (void)seqno;
	sd_log("terminate %s", obj == sd.obj ? "obj" : "?");
	(void)mach_port_destroy(mach_task_self(), ctl);
	(void)mach_port_destroy(mach_task_self(), name);
	(void)mach_port_destroy(mach_task_self(), obj);
	return KERN_SUCCESS;
}

static const struct mvm_memory_object_ops sd_ops = {
	.version = MVM_MEMORY_OBJECT_OPS_VERSION,
	.init = sd_init,
	.terminate = sd_terminate,
	.data_request = sd_request,
	.data_return = sd_return,
	.create = sd_create,
	.data_initialize = sd_initialize,
};

static boolean_t
sd_demux(mach_msg_header_t *in, mach_msg_header_t *out)
{
	return mvm_memory_object_server(&sd_ops, NULL, in, out);
}

static void *
sd_main(void *arg)
{
	(void)arg;
	(void)mach_msg_server(sd_demux, 8192, sd.pset);
	return NULL;
}

static void
sd_expect(const char *const *lines, int line)
{
	int n = 0;

	while (lines[n] != NULL)
		n++;
	for (int i = 0; i < TMO; i++) {
		pthread_mutex_lock(&sd.mtx);
		int k = sd.nlog;
		pthread_mutex_unlock(&sd.mtx);
		if (k >= n)
			break;
		sleep_ms(1);
	}
	sleep_ms(20);
	pthread_mutex_lock(&sd.mtx);
	for (int i = 0; i < sd.nlog || i < n; i++)
		if (i >= sd.nlog || i >= n || strcmp(sd.log[i], lines[i]) != 0) {
			for (int j = 0; j < sd.nlog; j++)
				print_message("  sd[%d]: %s\n", j, sd.log[j]);
			pthread_mutex_unlock(&sd.mtx);
			fail_msg("line %d: default manager log differs at entry %d", line, i);
		}
	sd.nlog = 0;
	pthread_mutex_unlock(&sd.mtx);
}
#define SD_EXPECT(...) \
	do { \
		const char *const l_[] = { __VA_ARGS__, NULL }; \
		sd_expect(l_, __LINE__); \
	} while (0)

static void
scripted_default_messages(void **state)
{
	struct mvm_mgr *m;
	mach_port_t dm;
	vm_address_t c;
	uint64_t ev;

	(void)state;
	test_begin();
	wait_no_default();
	memset(&sd, 0, sizeof(sd));
	pthread_mutex_init(&sd.mtx, NULL);
	assert_kr(mach_port_allocate(mach_task_self(), MACH_PORT_RIGHT_PORT_SET, &sd.pset),
	    KERN_SUCCESS);
	sd.port = mvm_test_receive();
	assert_kr(mach_port_move_member(mach_task_self(), sd.port, sd.pset), KERN_SUCCESS);
	assert_int_equal(pthread_create(&sd.th, NULL, sd_main, NULL), 0);
	dm = sd.port;
	assert_kr(vm_set_default_memory_manager(mach_host_self(), &dm), KERN_SUCCESS);

	m = mvm_mgr_start();
	c = map(m->object, 4 * PG, TRUE);
	/*
	 * Two pages of the copy written, then a limit of one page: the clock takes the
	 * original's two clean pages (never mapped) and the copy's first page. The copy
	 * goes to the default manager (create), its page for the first time (initialize).
	 */
	((unsigned char *)c)[5] = 0x41;
	((unsigned char *)c)[PG + 5] = 0x42;
	ev = kst().evictions;
	assert_kr(mvm_vm_set_resident_limit(1), KERN_SUCCESS);
	assert_int_equal(kst().evictions, ev + 3);
	SD_EXPECT("create old=dmm size=16384 page_size=4096",
	    "data_initialize obj off=0 len=4096 byte=65");
	/* Back from the default manager, written, and the other page out, first time. */
	assert_kr(mvm_vm_set_resident_limit(0), KERN_SUCCESS);
	assert_int_equal(((unsigned char *)c)[5], 0x41);
	((unsigned char *)c)[5] = 0x44;
	assert_kr(mvm_vm_set_resident_limit(1), KERN_SUCCESS);
	SD_EXPECT("data_request obj off=0 len=4096", "data_initialize obj off=4096 len=4096 byte=66");
	/* Both used again: the first, dirty and held by the default manager, goes back
	 * with data_return. */
	assert_kr(mvm_vm_set_resident_limit(0), KERN_SUCCESS);
	assert_int_equal(((unsigned char *)c)[PG + 5], 0x42);
	assert_kr(mvm_vm_set_resident_limit(1), KERN_SUCCESS);
	SD_EXPECT("data_request obj off=4096 len=4096",
	    "data_return obj off=0 len=4096 dirty=1 kcopy=0 byte=68");
	assert_kr(mvm_vm_set_resident_limit(0), KERN_SUCCESS);
	assert_int_equal(((unsigned char *)c)[5], 0x44);
	assert_int_equal(((unsigned char *)c)[PG + 5], 0x42);
	/* A page never written is the original's (asked for on the original). */
	assert_int_equal(((unsigned char *)c)[2 * PG + 5], mvm_mgr_pattern(2 * PG + 5));
	SD_EXPECT("data_request obj off=0 len=4096");
	assert_kr(vm_deallocate(mach_task_self(), c, 4 * PG), KERN_SUCCESS);
	SD_EXPECT("terminate obj");
	assert_int_equal(mvm_mgr_count(m, "data_return"), 0);
	mvm_mgr_wait(m, "terminate", 1, TMO);
	mvm_mgr_stop(m);
	assert_kr(mach_port_destroy(mach_task_self(), sd.port), KERN_SUCCESS);
	assert_kr(mach_port_destroy(mach_task_self(), sd.pset), KERN_SUCCESS);
	pthread_join(sd.th, NULL);
	pthread_mutex_destroy(&sd.mtx);
	wait_no_default();
	QUIESCENT();
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(set_read_replace),
		cmocka_unit_test(no_default_keeps_pages),
		cmocka_unit_test(scripted_default_messages),
		cmocka_unit_test(anon_default_round_trip),
	};

	if (!mvm_vmtest_main_setup())
		return 1;
	return cmocka_run_group_tests_name("vm_default", tests, NULL, NULL);
}
