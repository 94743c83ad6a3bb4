/*
 * tests/integration/test_pager_kernels.c: the pager framework with several kernels
 * (<machvm/pager.h>: mvm_pager_kernels, mvm_pager_lock_request, the range helpers; issue
 * 7). Each kernel is a process mapping one object served by a framework pager (an
 * in-memory store) in a third process.
 *
 * - per_kernel_pages: the framework knows which kernel holds which page; a lock request
 *   aimed at one kernel reaches only that kernel and brings back its dirty data; the
 *   range helpers ask only the kernels that may hold a page of the range; a name that is
 *   not a kernel is KERN_INVALID_NAME.
 * - dead_kernel_completes: a synchronous sync waits for a kernel that is stopped
 *   (SIGSTOP) and returns once it is killed (SIGKILL): a dead kernel counts as having
 *   answered; the pager counts the death, the other kernel goes on.
 * - kernel_dies_idle: a kernel killed while it holds pages and nothing waits for it is
 *   forgotten (kernels, deaths), and shutdown does not wait for it.
 *
 * The model of tests/support/mvm_node_test.h: this process never starts machvm; every
 * part is a forked actor.
 */
#include "mvm_node_test.h"

#include <pthread.h>
#include <sys/mman.h>

#include <machvm/pager.h>
#include <machvm/vm.h>

#define PG 4096
#define NPAGES 8
#define SIZE (NPAGES * PG)
#define OBJ_NAME "kernels-object"

/* ---- the manager: a framework pager over an in-memory store -------------------------------- */

static unsigned char store[SIZE];
static pthread_mutex_t store_lock = PTHREAD_MUTEX_INITIALIZER;

static kern_return_t
st_read(void *upi, vm_offset_t off, void *buf, vm_size_t len, boolean_t *unavailable,
    boolean_t *write_lock)
{
	(void)upi;
	(void)unavailable;
	(void)write_lock;
	if (off >= SIZE || len > SIZE - off)
		return KERN_MEMORY_ERROR;
	pthread_mutex_lock(&store_lock);
	memcpy(buf, store + off, len);
	pthread_mutex_unlock(&store_lock);
	return KERN_SUCCESS;
}

static kern_return_t
st_write(void *upi, vm_offset_t off, const void *buf, vm_size_t len)
{
	(void)upi;
	if (off >= SIZE || len > SIZE - off)
		return KERN_PROTECTION_FAILURE;
	pthread_mutex_lock(&store_lock);
	memcpy(store + off, buf, len);
	pthread_mutex_unlock(&store_lock);
	return KERN_SUCCESS;
}

static kern_return_t
st_extent(void *upi, vm_size_t *size)
{
	(void)upi;
	*size = SIZE;
	return KERN_SUCCESS;
}

static const struct mvm_pager_ops st_ops = {
	.version = MVM_PAGER_OPS_VERSION,
	.name = "test-store",
	.read_pages = st_read,
	.write_pages = st_write,
	.report_extent = st_extent,
};

static unsigned char
store_byte(vm_offset_t off)
{
	unsigned char c;

	pthread_mutex_lock(&store_lock);
	c = store[off];
	pthread_mutex_unlock(&store_lock);
	return c;
}

static struct mvm_pager_stats
pstats(struct mvm_pager *p)
{
	struct mvm_pager_stats st;

	NT_KR(mvm_pager_stats(p, &st), KERN_SUCCESS);
	return st;
}

/* The kernels that may hold a page of [off, off + len). */
static unsigned
holders(struct mvm_pager *p, vm_offset_t off, vm_size_t len, mach_port_t *k, unsigned max)
{
	unsigned n = 0;

	NT_KR(mvm_pager_kernels(p, off, len, k, max, &n), KERN_SUCCESS);
	return n;
}

static struct mvm_pager *
manager_start(void)
{
	struct mvm_pager *p = NULL;
	mach_port_t port = MACH_PORT_NULL;

	memset(store, 0, sizeof(store));
	NT_KR(mvm_pager_create(&st_ops, NULL, NULL, &p, &port), KERN_SUCCESS);
	nt_check_in(OBJ_NAME, port);
	return p;
}

static void
manager_end(struct mvm_pager *p)
{
	nt_check_out(OBJ_NAME);
	NT_KR(mvm_pager_shutdown(p), KERN_SUCCESS);
}

/* ---- the kernels: orders ------------------------------------------------------------------ */

/* An order: what (low byte), page (next byte), value (next byte). */
#define ORDER(what, page, val) ((uint64_t)(what) | (uint64_t)(page) << 8 | (uint64_t)(val) << 16)
enum { K_WRITE = 1, K_READ = 2, K_UNMAP = 3, K_EXIT = 4 };

/* A kernel: map the object, then obey: write a byte to a page (answer 0), read a page's
 * first byte (answer it), unmap (answer 0), exit. */
static void
kernel(long arg)
{
	mach_port_t obj = nt_look_up(OBJ_NAME);
	vm_address_t a = 0;
	volatile unsigned char *m;

	(void)arg;
	NT_KR(vm_map(SELF, &a, SIZE, 0, TRUE, obj, 0, FALSE, VM_PROT_READ | VM_PROT_WRITE,
	    VM_PROT_ALL, VM_INHERIT_NONE), KERN_SUCCESS);
	m = (volatile unsigned char *)a;
	nt_tell(0);
	for (;;) {
		uint64_t o = nt_await();
		unsigned what = o & 0xff, page = (o >> 8) & 0xff, val = (o >> 16) & 0xff;

		NT_CHECK(page < NPAGES);
		switch (what) {
		case K_WRITE:
			m[page * PG] = (unsigned char)val;
			nt_tell(0);
			break;
		case K_READ:
			nt_tell(m[page * PG]);
			break;
		case K_UNMAP:
			NT_KR(vm_deallocate(SELF, a, SIZE), KERN_SUCCESS);
			nt_tell(0);
			break;
		case K_EXIT:
			return;
		default:
			nt_fail(__FILE__, __LINE__, "bad order %llu", (unsigned long long)o);
		}
	}
}

static void
k_write(struct nt_actor *k, unsigned page, unsigned val)
{
	nt_order(k, ORDER(K_WRITE, page, val));
	assert_int_equal(nt_hear(k), 0);
}

static unsigned
k_read(struct nt_actor *k, unsigned page)
{
	nt_order(k, ORDER(K_READ, page, 0));
	return (unsigned)nt_hear(k);
}

static void
k_unmap_exit(struct nt_actor *k)
{
	nt_order(k, ORDER(K_UNMAP, 0, 0));
	assert_int_equal(nt_hear(k), 0);
	nt_order(k, ORDER(K_EXIT, 0, 0));
	nt_expect_ok(k);
}

/* Nothing is heard from actor a for ms milliseconds. */
static void
silent(struct nt_actor *a, int ms)
{
	struct pollfd pfd = { a->from, POLLIN, 0 };

	assert_int_equal(poll(&pfd, 1, ms), 0);
}

/* ---- per_kernel_pages ----------------------------------------------------------------------- */

/* A writes page 0 and reads page 2; B reads pages 1 and 2 (orchestrated). Then: */
static void
mgr_per_kernel(long arg)
{
	struct mvm_pager *p = manager_start();
	struct mvm_pager_stats s0, s1;
	mach_port_t k[4], ka, kb;

	(void)arg;
	nt_tell(0);
	NT_EQ(nt_await(), 1); /* the kernels did their part */
	NT_EQ(pstats(p).kernels, 2);
	NT_EQ(pstats(p).inits, 2);
	NT_EQ(holders(p, 0, 0, k, 4), 2);
	NT_EQ(holders(p, 0, 0, k, 1), 2); /* the count is the whole count */
	NT_EQ(holders(p, 0, PG, k, 4), 1);
	ka = k[0];
	NT_EQ(holders(p, PG, PG, k, 4), 1);
	kb = k[0];
	NT_CHECK(ka != kb);
	NT_EQ(holders(p, 2 * PG, PG, k, 4), 2);
	NT_EQ(holders(p, 2 * PG + 100, 1, k, 4), 2); /* a byte range counts its pages */
	NT_EQ(holders(p, 5 * PG, 3 * PG, k, 4), 0);
	NT_EQ(holders(p, 0, 2 * PG, k, 4), 2);

	/* A's dirty page 0, asked of A alone, reaches the store; exactly one request. */
	NT_EQ(store_byte(0), 0);
	s0 = pstats(p);
	NT_KR(mvm_pager_lock_request(p, ka, 0, PG, MEMORY_OBJECT_RETURN_DIRTY, FALSE,
	    VM_PROT_NO_CHANGE, TRUE), KERN_SUCCESS);
	s1 = pstats(p);
	NT_EQ(store_byte(0), 'a');
	NT_EQ(s1.lock_requests - s0.lock_requests, 1);
	NT_EQ(s1.lock_completions - s0.lock_completions, 1);
	NT_EQ(s1.pages_written - s0.pages_written, 1);

	/* The same asked of B: B has no such page; nothing comes back. */
	NT_KR(mvm_pager_lock_request(p, kb, 0, PG, MEMORY_OBJECT_RETURN_ALL, FALSE,
	    VM_PROT_NO_CHANGE, TRUE), KERN_SUCCESS);
	NT_EQ(pstats(p).pages_written, s1.pages_written);

	/* A range helper asks only the kernels that may hold a page of the range. */
	s0 = pstats(p);
	NT_KR(mvm_pager_sync(p, PG, PG, TRUE), KERN_SUCCESS);              /* B only */
	NT_EQ(pstats(p).lock_requests - s0.lock_requests, 1);
	NT_KR(mvm_pager_sync(p, 2 * PG, PG, TRUE), KERN_SUCCESS);          /* both */
	NT_EQ(pstats(p).lock_requests - s0.lock_requests, 3);
	NT_KR(mvm_pager_return(p, 5 * PG, 3 * PG, TRUE), KERN_SUCCESS);    /* nobody */
	NT_EQ(pstats(p).lock_requests - s0.lock_requests, 3);
	/* A page lock binds pages on their way in too: every kernel is asked. */
	NT_KR(mvm_pager_lock(p, 5 * PG, PG, VM_PROT_NONE, TRUE), KERN_SUCCESS);
	NT_EQ(pstats(p).lock_requests - s0.lock_requests, 5);

	/* Bad arguments. */
	NT_KR(mvm_pager_lock_request(p, 0x7654321, 0, PG, MEMORY_OBJECT_RETURN_ALL, FALSE,
	    VM_PROT_NO_CHANGE, TRUE), KERN_INVALID_NAME);
	NT_KR(mvm_pager_lock_request(p, MACH_PORT_DEAD, 0, PG, MEMORY_OBJECT_RETURN_ALL, FALSE,
	    VM_PROT_NO_CHANGE, TRUE), KERN_INVALID_NAME);
	NT_KR(mvm_pager_lock_request(p, ka, 0, PG, 7, FALSE, VM_PROT_NO_CHANGE, TRUE),
	    KERN_INVALID_ARGUMENT);
	NT_KR(mvm_pager_lock_request(p, ka, 0, PG, MEMORY_OBJECT_RETURN_ALL, FALSE, 0x100,
	    TRUE), KERN_INVALID_ARGUMENT);
	NT_KR(mvm_pager_kernels(p, 0, 0, NULL, 1, NULL), KERN_INVALID_ARGUMENT);
	NT_KR(mvm_pager_kernels(NULL, 0, 0, k, 4, &(unsigned){0}), KERN_INVALID_ARGUMENT);

	/* A drops page 0 (clean now: nothing comes back) and B writes it. */
	s0 = pstats(p);
	NT_KR(mvm_pager_lock_request(p, ka, 0, PG, MEMORY_OBJECT_RETURN_ALL, TRUE,
	    VM_PROT_NO_CHANGE, TRUE), KERN_SUCCESS);
	NT_EQ(pstats(p).pages_written, s0.pages_written);
	nt_tell(0);
	NT_EQ(nt_await(), 2); /* A read page 0 again, B wrote it */
	NT_EQ(holders(p, 0, PG, k, 4), 2);

	/* Both unmap: each returns its dirty pages, then terminates. */
	nt_tell(0);
	NT_EQ(nt_await(), 3);
	NT_EQ(store_byte(0), 'b');
	NT_EQ(pstats(p).kernels, 0);
	NT_EQ(pstats(p).terminates, 2);
	NT_EQ(pstats(p).deaths, 0);
	NT_KR(mvm_pager_lock_request(p, ka, 0, PG, MEMORY_OBJECT_RETURN_ALL, FALSE,
	    VM_PROT_NO_CHANGE, TRUE), KERN_INVALID_NAME);
	manager_end(p);
}

static void
test_per_kernel_pages(void **state)
{
	struct nt_actor *m, *a, *b;

	(void)state;
	mvm_test_require_uffd();
	m = nt_spawn("manager", mgr_per_kernel, 0);
	assert_int_equal(nt_hear(m), 0);
	a = nt_spawn("kernel A", kernel, 0);
	assert_int_equal(nt_hear(a), 0);
	k_write(a, 0, 'a');
	assert_int_equal(k_read(a, 2), 0);
	b = nt_spawn("kernel B", kernel, 0);
	assert_int_equal(nt_hear(b), 0);
	assert_int_equal(k_read(b, 1), 0);
	assert_int_equal(k_read(b, 2), 0);
	nt_order(m, 1);
	assert_int_equal(nt_hear(m), 0);
	assert_int_equal(k_read(a, 0), 'a'); /* asked again: the store has it */
	k_write(b, 0, 'b');
	nt_order(m, 2);
	assert_int_equal(nt_hear(m), 0);
	k_unmap_exit(a);
	k_unmap_exit(b);
	nt_order(m, 3);
	nt_expect_ok(m);
}

/* ---- dead_kernel_completes -------------------------------------------------------------- */

struct sync_arg {
	struct mvm_pager *p;
	kern_return_t kr;
};

static void *
sync_main(void *arg)
{
	struct sync_arg *s = arg;

	s->kr = mvm_pager_sync(s->p, 0, 0, TRUE);
	return NULL;
}

static void
mgr_dead(long arg)
{
	struct mvm_pager *p = manager_start();
	struct sync_arg sa = { p, KERN_FAILURE };
	pthread_t t;

	(void)arg;
	nt_tell(0);
	NT_EQ(nt_await(), 1); /* A wrote page 3 and was stopped; B reads page 4 */
	NT_EQ(pstats(p).kernels, 2);
	NT_CHECK(pthread_create(&t, NULL, sync_main, &sa) == 0);
	nt_tell(0);           /* the sync waits for A */
	NT_CHECK(pthread_join(t, NULL) == 0);
	NT_KR(sa.kr, KERN_SUCCESS);
	nt_tell(1);           /* it returned */
	NT_EQ(pstats(p).deaths, 1);
	NT_EQ(pstats(p).kernels, 1);
	NT_EQ(pstats(p).terminates, 0);
	NT_EQ(store_byte(3 * PG), 0); /* A's write died with it */
	NT_EQ(store_byte(4 * PG), 'b');
	NT_EQ(nt_await(), 2); /* B unmapped */
	NT_EQ(pstats(p).kernels, 0);
	NT_EQ(pstats(p).terminates, 1);
	manager_end(p);
}

static void
test_dead_kernel_completes(void **state)
{
	struct nt_actor *m, *a, *b;

	(void)state;
	mvm_test_require_uffd();
	m = nt_spawn("manager", mgr_dead, 0);
	assert_int_equal(nt_hear(m), 0);
	a = nt_spawn("kernel A", kernel, 0);
	b = nt_spawn("kernel B", kernel, 0);
	assert_int_equal(nt_hear(a), 0);
	assert_int_equal(nt_hear(b), 0);
	k_write(a, 3, 'a');
	k_write(b, 4, 'b');
	assert_int_equal(kill(a->pid, SIGSTOP), 0);
	nt_order(m, 1);
	assert_int_equal(nt_hear(m), 0);
	silent(m, 300);       /* A cannot answer: the sync waits */
	assert_int_equal(k_read(b, 4), 'b'); /* B is not held up meanwhile */
	nt_kill(a);
	assert_int_equal(nt_hear(m), 1);
	assert_int_equal(k_read(b, 3), 0);   /* the store's page 3 */
	k_unmap_exit(b);
	nt_order(m, 2);
	nt_expect_ok(m);
}

/* ---- kernel_dies_idle --------------------------------------------------------------------- */

static void
mgr_idle(long arg)
{
	struct mvm_pager *p = manager_start();
	uint64_t end;

	(void)arg;
	nt_tell(0);
	NT_EQ(nt_await(), 1); /* A was killed holding dirty pages */
	end = nt_now_ms() + NT_TMO;
	while (pstats(p).deaths == 0 && nt_now_ms() < end)
		nt_sleep_ms(2);
	NT_EQ(pstats(p).deaths, 1);
	NT_EQ(pstats(p).kernels, 0);
	NT_EQ(holders(p, 0, 0, (mach_port_t[1]){ 0 }, 1), 0);
	manager_end(p); /* returns: nobody is asked */
}

static void
test_kernel_dies_idle(void **state)
{
	struct nt_actor *m, *a;

	(void)state;
	mvm_test_require_uffd();
	m = nt_spawn("manager", mgr_idle, 0);
	assert_int_equal(nt_hear(m), 0);
	a = nt_spawn("kernel A", kernel, 0);
	assert_int_equal(nt_hear(a), 0);
	k_write(a, 0, 'a');
	k_write(a, 7, 'a');
	nt_kill(a);
	nt_order(m, 1);
	nt_expect_ok(m);
}

int
main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_per_kernel_pages, nt_setup, nt_teardown),
		cmocka_unit_test_setup_teardown(test_dead_kernel_completes, nt_setup, nt_teardown),
		cmocka_unit_test_setup_teardown(test_kernel_dies_idle, nt_setup, nt_teardown),
	};

	if (argc > 1)
		cmocka_set_test_filter(argv[1]);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
