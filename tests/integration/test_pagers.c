/*
 * tests/integration/test_pagers.c: the file and anonymous pagers (<machvm/pagers.h>) end
 * to end, through the in-process kernel.
 *
 * File pager: a file of 300 pages and 123 bytes of pseudo-random content reads through
 * the mapping exactly as the file (checksums and memcmp), and the bytes past the end of
 * the file in its last page read as zeros; writes in several places reach the file on
 * sync, which then equals a shadow copy kept by the test, and the file keeps its size
 * (the tail of the last page is not file data); a page wholly past the end grows the
 * file on sync, or with MVM_FILE_PAGER_NOGROW fails the sync and keeps the data;
 * MVM_FILE_PAGER_READONLY reads, and a write through the mapping is SIGBUS (BUS_OBJERR);
 * creation errors.
 *
 * Not tested, by design: a file changed behind the pager's back (write(2) to a page a
 * kernel holds) is not coherent with the mapping. The pager reads a page once, when it
 * is first requested; a later change to the file is seen only after the kernel's copy
 * is dropped (mvm_pager_flush or return), and a dirty page written back overwrites it.
 *
 * Anonymous pager: pages never written read as zeros without a read of the swap file
 * (they are answered data_unavailable); a page written, returned and flushed comes back
 * from the swap file; two 64 MiB objects are independent.
 *
 * Threads that touch mapped memory where it may fail never call cmocka (see struct
 * toucher); the main thread touches only pages whose access cannot fail.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <machvm/pager.h>
#include <machvm/pagers.h>
#include <machvm/vm.h>
#include "mvm_test.h"
#include "mvm_mgr.h"

#include "mvm_vmtest.h"

/* The kernel learns of a dead object port a moment later: wait for it, then check. */
static void
test_end(void)
{
	/* mvm_ipc_quiescent() gives the kernel's threads a moment to finish. */
	MVM_TEST_QUIESCENT();
}

/* ---- files, checksums, stats ------------------------------------------------------------- */

/* FNV-1a, 64 bits: enough to tell two buffers apart in a failure message. */
static uint64_t
checksum(const volatile unsigned char *p, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ull;

	for (size_t i = 0; i < n; i++) {
		h ^= p[i];
		h *= 0x100000001b3ull;
	}
	return h;
}

/* Deterministic pseudo-random bytes (xorshift64*). */
static void
fill_random(unsigned char *buf, size_t n, uint64_t seed)
{
	uint64_t x = seed | 1;

	for (size_t i = 0; i < n; i++) {
		x ^= x >> 12;
		x ^= x << 25;
		x ^= x >> 27;
		buf[i] = (unsigned char)((x * 0x2545f4914f6cdd1dull) >> 56);
	}
}

static char *
temp_file(const unsigned char *data, size_t size)
{
	char *path = strdup("/tmp/mvm-test-pagers-XXXXXX");
	int fd;

	assert_non_null(path);
	fd = mkstemp(path);
	assert_true(fd >= 0);
	if (size > 0)
		assert_int_equal(write(fd, data, size), (ssize_t)size);
	close(fd);
	return path;
}

static off_t
file_size(const char *path)
{
	struct stat st;

	assert_int_equal(stat(path, &st), 0);
	return st.st_size;
}

/* The whole file, in a malloc'd buffer of *size bytes. */
static unsigned char *
file_read_all(const char *path, size_t *size)
{
	int fd = open(path, O_RDONLY);
	unsigned char *buf;

	assert_true(fd >= 0);
	*size = (size_t)file_size(path);
	buf = malloc(*size + 1);
	assert_non_null(buf);
	assert_int_equal(pread(fd, buf, *size, 0), (ssize_t)*size);
	close(fd);
	return buf;
}

static vm_address_t
map(mach_port_t obj, vm_size_t size)
{
	vm_address_t a = 0;

	assert_kr(vm_map(mach_task_self(), &a, size, 0, TRUE, obj, 0, FALSE, VM_PROT_ALL,
	    VM_PROT_ALL, VM_INHERIT_NONE), KERN_SUCCESS);
	return a;
}

static struct mvm_pager_stats
pst(struct mvm_pager *p)
{
	struct mvm_pager_stats st;

	assert_kr(mvm_pager_stats(p, &st), KERN_SUCCESS);
	return st;
}

static struct mvm_vm_object_stats
vst(mach_port_t object)
{
	struct mvm_vm_object_stats st;

	assert_kr(mvm_vm_object_stats(object, &st), KERN_SUCCESS);
	return st;
}

/* ---- 1. the file pager --------------------------------------------------------------------- */

static void
file_reads_and_writes_match(void **state)
{
	enum { NPG = 300, TAIL = 123 };
	const size_t size = NPG * PG + TAIL, msize = (NPG + 1) * PG;
	unsigned char *shadow, *now;
	char *path;
	mach_port_t obj;
	struct mvm_pager *p;
	vm_address_t a;
	volatile unsigned char *m;
	size_t got;
	/* Places written through the mapping: first byte, page edges, the middle, the last
	 * byte of the file, and the tail of the last page past the end of the file. */
	const size_t at[] = { 0, PG - 1, PG, 77 * PG + 1234, 150 * PG, 299 * PG + 4095,
	    NPG * PG, size - 1 };

	(void)state;
	test_begin();
	shadow = malloc(msize);
	assert_non_null(shadow);
	memset(shadow, 0, msize);
	fill_random(shadow, size, 0x9e3779b97f4a7c15ull);
	path = temp_file(shadow, size);
	assert_kr(mvm_file_pager_create(path, 0, NULL, &p, &obj), KERN_SUCCESS);
	a = map(obj, msize);
	m = (volatile unsigned char *)a;

	/* The mapping is the file; past its end, the last page holds zeros. */
	assert_true(checksum(m, size) == checksum(shadow, size));
	assert_memory_equal((const void *)m, shadow, size);
	for (size_t i = size; i < msize; i++)
		assert_int_equal(m[i], 0);
	assert_int_equal(pst(p).requests, NPG + 1);
	assert_int_equal(pst(p).pages_read, NPG + 1);
	assert_int_equal(vst(obj).dirty, 0);

	for (size_t i = 0; i < sizeof(at) / sizeof(at[0]); i++) {
		m[at[i]] = (unsigned char)(0xc0 + i);
		shadow[at[i]] = (unsigned char)(0xc0 + i);
	}
	m[size + 10] = 0xee;                  /* the tail: never file data */
	assert_kr(mvm_pager_sync(p, 0, 0, TRUE), KERN_SUCCESS);
	assert_int_equal(file_size(path), (off_t)size);
	now = file_read_all(path, &got);
	assert_int_equal(got, size);
	assert_true(checksum(now, size) == checksum(shadow, size));
	assert_memory_equal(now, shadow, size);
	free(now);
	/* The mapping still shows everything, the tail byte included. */
	assert_int_equal(m[size + 10], 0xee);
	assert_int_equal(m[at[3]], 0xc3);

	/* A second round after the kernel dropped every page: read back from the file. */
	assert_kr(mvm_pager_return(p, 0, 0, TRUE), KERN_SUCCESS);
	assert_int_equal(vst(obj).resident, 0);
	assert_memory_equal((const void *)m, shadow, size);
	for (size_t pg = 0; pg < NPG; pg += 37) {
		m[pg * PG + pg] ^= 0xff;
		shadow[pg * PG + pg] ^= 0xff;
	}
	assert_kr(vm_deallocate(mach_task_self(), a, msize), KERN_SUCCESS);
	/* The unmapping returned the dirty pages; shutdown waits for their writes. */
	assert_kr(mvm_pager_shutdown(p), KERN_SUCCESS);
	now = file_read_all(path, &got);
	assert_int_equal(got, size);
	assert_memory_equal(now, shadow, size);
	free(now);
	unlink(path);
	free(path);
	free(shadow);
	test_end();
}

static void
file_grows(void **state)
{
	unsigned char data[2 * PG], b[PG];
	char *path;
	mach_port_t obj;
	struct mvm_pager *p;
	vm_address_t a;
	volatile unsigned char *m;
	int fd;

	(void)state;
	test_begin();
	memset(data, 0x21, sizeof(data));
	path = temp_file(data, sizeof(data));
	assert_kr(mvm_file_pager_create(path, 0, NULL, &p, &obj), KERN_SUCCESS);
	a = map(obj, 8 * PG);
	m = (volatile unsigned char *)a;
	assert_int_equal(m[3 * PG + 5], 0);   /* past the end: zeros, nothing read */
	assert_int_equal(pst(p).unavailable, 1);
	m[3 * PG + 5] = 0x33;
	/* The whole-object form covers the file's extent only: name the range. */
	assert_kr(mvm_pager_sync(p, 0, 0, TRUE), KERN_SUCCESS);
	assert_int_equal(file_size(path), 2 * PG);
	assert_kr(mvm_pager_sync(p, 0, 4 * PG, TRUE), KERN_SUCCESS);
	assert_int_equal(file_size(path), 4 * PG);
	fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	assert_int_equal(pread(fd, b, PG, 3 * PG), PG);
	assert_int_equal(b[5], 0x33);
	assert_int_equal(b[4], 0);
	assert_int_equal(pread(fd, b, PG, 2 * PG), PG);   /* the page between: a hole */
	assert_int_equal(b[0], 0);
	/* A dirty page past the end when the pager shuts down, still mapped: shutdown
	 * returns the whole object, not only its extent, and the file grows. */
	m[6 * PG + 6] = 0x66;
	assert_kr(mvm_pager_shutdown(p), KERN_SUCCESS);
	assert_int_equal(file_size(path), 7 * PG);
	assert_int_equal(pread(fd, b, PG, 6 * PG), PG);
	assert_int_equal(b[6], 0x66);
	close(fd);
	assert_kr(vm_deallocate(mach_task_self(), a, 8 * PG), KERN_SUCCESS);
	unlink(path);
	free(path);
	test_end();
}

/*
 * One returned run that holds the file's partial last page and a page wholly past the
 * end: the file grows to cover the run (the page past the end is not dropped).
 */
static void
file_grows_mixed_run(void **state)
{
	unsigned char data[PG + PG / 2], b[PG];
	char *path;
	mach_port_t obj;
	struct mvm_pager *p;
	vm_address_t a;
	volatile unsigned char *m;
	int fd;

	(void)state;
	test_begin();
	memset(data, 0x41, sizeof(data));
	path = temp_file(data, sizeof(data));
	assert_kr(mvm_file_pager_create(path, 0, NULL, &p, &obj), KERN_SUCCESS);
	a = map(obj, 4 * PG);
	m = (volatile unsigned char *)a;
	m[PG + 10] = 0x51;                     /* the partial last page */
	m[2 * PG + 20] = 0x52;                 /* wholly past the end, next to it */
	assert_kr(mvm_pager_sync(p, 0, 4 * PG, TRUE), KERN_SUCCESS);
	assert_int_equal(file_size(path), 3 * PG);
	fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	assert_int_equal(pread(fd, b, PG, PG), PG);
	assert_int_equal(b[10], 0x51);
	assert_int_equal(b[11], 0x41);
	assert_int_equal(pread(fd, b, PG, 2 * PG), PG);
	assert_int_equal(b[20], 0x52);
	close(fd);
	assert_kr(vm_deallocate(mach_task_self(), a, 4 * PG), KERN_SUCCESS);
	assert_kr(mvm_pager_shutdown(p), KERN_SUCCESS);
	unlink(path);
	free(path);
	test_end();
}

static void
file_nogrow_keeps_data(void **state)
{
	unsigned char data[2 * PG];
	char *path;
	mach_port_t obj;
	struct mvm_pager *p;
	vm_address_t a;
	volatile unsigned char *m;
	struct toucher t;

	(void)state;
	test_begin();
	memset(data, 0x21, sizeof(data));
	path = temp_file(data, sizeof(data));
	assert_kr(mvm_file_pager_create(path, MVM_FILE_PAGER_NOGROW, NULL, &p, &obj), KERN_SUCCESS);
	a = map(obj, 4 * PG);
	m = (volatile unsigned char *)a;
	m[3 * PG + 5] = 0x33;
	m[1 * PG + 5] = 0x11;                 /* inside the file: fine */
	assert_kr(mvm_pager_sync(p, 0, 4 * PG, TRUE), KERN_PROTECTION_FAILURE);
	assert_kr(mvm_pager_get_error(p, 3 * PG), KERN_PROTECTION_FAILURE);
	assert_kr(mvm_pager_get_error(p, 1 * PG), KERN_SUCCESS);
	assert_int_equal(file_size(path), 2 * PG);
	/* The data is kept: dropped by the kernel and asked for again, it comes back. */
	assert_kr(mvm_pager_flush(p, 3 * PG, PG, TRUE), KERN_SUCCESS);
	assert_int_equal(vst(obj).resident, 1);
	touch_start(&t, a + 3 * PG + 5, false, 0);
	assert_touch_done(&t);
	assert_int_equal(t.val, 0x33);
	assert_int_equal(file_size(path), 2 * PG);
	assert_kr(vm_deallocate(mach_task_self(), a, 4 * PG), KERN_SUCCESS);
	/* It can never be stored: shutdown says so. */
	assert_kr(mvm_pager_shutdown(p), KERN_PROTECTION_FAILURE);
	assert_int_equal(file_size(path), 2 * PG);
	unlink(path);
	free(path);
	test_end();
}

static void
file_readonly(void **state)
{
	unsigned char data[4 * PG], b;
	char *path;
	mach_port_t obj;
	struct mvm_pager *p;
	vm_address_t a;
	struct toucher t;
	int fd;

	(void)state;
	test_begin();
	fill_random(data, sizeof(data), 42);
	path = temp_file(data, sizeof(data));
	assert_kr(mvm_file_pager_create(path, MVM_FILE_PAGER_READONLY, NULL, &p, &obj),
	    KERN_SUCCESS);
	a = map(obj, 4 * PG);
	assert_memory_equal((const void *)a, data, 2 * PG);
	/* A write to a resident page and one to a missing page: both refused. */
	touch_start(&t, a + PG + 9, true, (unsigned char)~data[PG + 9]);
	assert_touch_sigbus(&t);
	touch_start(&t, a + 3 * PG + 9, true, (unsigned char)~data[3 * PG + 9]);
	assert_touch_sigbus(&t);
	assert_int_equal(pst(p).unlock_refusals, 2);
	/* Reads still work, and nothing changed. */
	touch_start(&t, a + PG + 9, false, 0);
	assert_touch_done(&t);
	assert_int_equal(t.val, data[PG + 9]);
	touch_start(&t, a + 3 * PG + 9, false, 0);
	assert_touch_done(&t);
	assert_int_equal(t.val, data[3 * PG + 9]);
	assert_int_equal(vst(obj).dirty, 0);
	assert_kr(mvm_pager_sync(p, 0, 0, TRUE), KERN_SUCCESS);
	assert_kr(vm_deallocate(mach_task_self(), a, 4 * PG), KERN_SUCCESS);
	assert_kr(mvm_pager_shutdown(p), KERN_SUCCESS);
	fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	assert_int_equal(pread(fd, &b, 1, PG + 9), 1);
	assert_int_equal(b, data[PG + 9]);
	close(fd);
	unlink(path);
	free(path);
	test_end();
}

static void
file_create_errors(void **state)
{
	struct mvm_pager *p = NULL;
	mach_port_t obj = MACH_PORT_NULL;
	char *path;
	unsigned char b = 1;
	kern_return_t kr;

	(void)state;
	test_begin();
	kr = mvm_file_pager_create("/nonexistent-dir-mvm/none", 0, NULL, &p, &obj);
	if (kr == KERN_SUCCESS)
		fail_msg("a missing file gave a pager");
	print_message("missing file: %s\n", mvm_errname(kr));
	assert_null(p);
	assert_int_equal(obj, MACH_PORT_NULL);
	path = temp_file(&b, 1);
	assert_kr(mvm_file_pager_create(path, 0x80, NULL, &p, &obj), KERN_INVALID_ARGUMENT);
	assert_kr(mvm_file_pager_create(path, MVM_FILE_PAGER_READONLY | 0x4, NULL, &p, &obj),
	    KERN_INVALID_ARGUMENT);
	assert_kr(mvm_file_pager_create(NULL, 0, NULL, &p, &obj), KERN_INVALID_ARGUMENT);
	/* Only regular files: a directory is refused, read-only or not. */
	assert_kr(mvm_file_pager_create("/tmp", MVM_FILE_PAGER_READONLY, NULL, &p, &obj),
	    KERN_INVALID_ARGUMENT);
	assert_kr(mvm_file_pager_create(path, 0, NULL, NULL, &obj), KERN_INVALID_ARGUMENT);
	assert_null(p);
	/* Anonymous pagers: a size and a usable directory are needed. */
	assert_kr(mvm_anon_pager_create(0, NULL, NULL, &p, &obj), KERN_INVALID_ARGUMENT);
	kr = mvm_anon_pager_create(PG, "/nonexistent-dir-mvm", NULL, &p, &obj);
	if (kr == KERN_SUCCESS)
		fail_msg("a missing swap directory gave a pager");
	assert_null(p);
	/* Both flags together are fine. */
	assert_kr(mvm_file_pager_create(path, MVM_FILE_PAGER_READONLY | MVM_FILE_PAGER_NOGROW,
	    NULL, &p, &obj), KERN_SUCCESS);
	assert_kr(mvm_pager_shutdown(p), KERN_SUCCESS);
	unlink(path);
	free(path);
	test_end();
}

/* ---- 2. the anonymous pager --------------------------------------------------------------- */

static void
anon_zero_then_swap(void **state)
{
	mach_port_t obj;
	struct mvm_pager *p;
	vm_address_t a;
	volatile unsigned char *m;
	struct mvm_pager_stats ps;

	(void)state;
	test_begin();
	assert_kr(mvm_anon_pager_create(64 * PG, NULL, NULL, &p, &obj), KERN_SUCCESS);
	a = map(obj, 64 * PG);
	m = (volatile unsigned char *)a;
	for (int pg = 0; pg < 64; pg += 4)
		for (size_t i = 0; i < PG; i += 512)
			assert_int_equal(m[pg * PG + i], 0);
	ps = pst(p);
	assert_int_equal(ps.requests, 16);
	assert_int_equal(ps.unavailable, 16);
	assert_int_equal(ps.pages_read, 0);   /* no data read */
	assert_int_equal(vst(obj).unavailable, 16);
	assert_int_equal(vst(obj).pages_supplied, 0);

	m[3 * PG + 7] = 0x77;                 /* a missing page, written */
	m[4 * PG + 8] = 0x88;                 /* a zero page, written */
	assert_kr(mvm_pager_return(p, 0, 0, TRUE), KERN_SUCCESS);
	assert_int_equal(vst(obj).resident, 0);
	assert_int_equal(pst(p).pages_written, 2);
	/* Back from the swap file; the others are zeros again, still without a read. */
	assert_int_equal(m[3 * PG + 7], 0x77);
	assert_int_equal(m[3 * PG + 8], 0);
	assert_int_equal(m[4 * PG + 8], 0x88);
	assert_int_equal(m[5 * PG], 0);
	ps = pst(p);
	assert_int_equal(ps.pages_read, 2);
	assert_int_equal(ps.unavailable, 18);  /* 16, page 3 at first, page 5 */
	assert_kr(vm_deallocate(mach_task_self(), a, 64 * PG), KERN_SUCCESS);
	assert_kr(mvm_pager_shutdown(p), KERN_SUCCESS);
	test_end();
}

static void
anon_two_large_objects(void **state)
{
#ifdef MVM_SANITIZER
	enum { STEP = 1024 };                 /* pages between two touched pages */
#else
	enum { STEP = 256 };
#endif
	const vm_size_t size = 64ull << 20;
	const size_t npg = size / PG;
	mach_port_t o1, o2;
	struct mvm_pager *p1, *p2;
	vm_address_t a1, a2;
	volatile unsigned char *m1, *m2;

	(void)state;
	test_begin();
	assert_kr(mvm_anon_pager_create(size, NULL, NULL, &p1, &o1), KERN_SUCCESS);
	assert_kr(mvm_anon_pager_create(size, NULL, NULL, &p2, &o2), KERN_SUCCESS);
	a1 = map(o1, size);
	a2 = map(o2, size);
	m1 = (volatile unsigned char *)a1;
	m2 = (volatile unsigned char *)a2;
	for (size_t pg = 0; pg < npg; pg += STEP) {
		m1[pg * PG + pg % PG] = (unsigned char)(pg / STEP + 1);
		m2[pg * PG + pg % PG + 1] = (unsigned char)(pg / STEP + 101);
	}
	m1[size - 1] = 0xf1;
	m2[size - 1] = 0xf2;
	assert_kr(mvm_pager_return(p1, 0, 0, TRUE), KERN_SUCCESS);
	assert_kr(mvm_pager_return(p2, 0, 0, TRUE), KERN_SUCCESS);
	assert_int_equal(pst(p1).pages_written, npg / STEP + 1);
	assert_int_equal(pst(p2).pages_written, npg / STEP + 1);
	/* Each reads back its own data, and zeros where the other one wrote. */
	for (size_t pg = 0; pg < npg; pg += STEP) {
		assert_int_equal(m1[pg * PG + pg % PG], (unsigned char)(pg / STEP + 1));
		assert_int_equal(m1[pg * PG + pg % PG + 1], 0);
		assert_int_equal(m2[pg * PG + pg % PG + 1], (unsigned char)(pg / STEP + 101));
		assert_int_equal(m2[pg * PG + pg % PG], 0);
		assert_int_equal(m1[(pg + STEP / 2) * PG], 0);
	}
	assert_int_equal(m1[size - 1], 0xf1);
	assert_int_equal(m2[size - 1], 0xf2);
	assert_kr(vm_deallocate(mach_task_self(), a1, size), KERN_SUCCESS);
	assert_kr(vm_deallocate(mach_task_self(), a2, size), KERN_SUCCESS);
	assert_kr(mvm_pager_shutdown(p1), KERN_SUCCESS);
	assert_kr(mvm_pager_shutdown(p2), KERN_SUCCESS);
	test_end();
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(file_reads_and_writes_match),
		cmocka_unit_test(file_grows),
		cmocka_unit_test(file_grows_mixed_run),
		cmocka_unit_test(file_nogrow_keeps_data),
		cmocka_unit_test(file_readonly),
		cmocka_unit_test(file_create_errors),
		cmocka_unit_test(anon_zero_then_swap),
		cmocka_unit_test(anon_two_large_objects),
	};

	/* Before any kernel call: see mvm_vmtest.h. */
	if (!mvm_vmtest_main_setup())
		return 1;
	return cmocka_run_group_tests_name("pagers", tests, NULL, NULL);
}
