/*
 * tests/integration/test_node_pager.c: the kernel and the pager framework unchanged when
 * the manager and the kernel are in different processes (<machvm/node.h>,
 * <mach/netname.h>).
 *
 * This program plays three parts. The tests run in the test process. Two helpers are
 * this program run again (fork, then exec at once, so that a helper inherits none of the
 * test process's machvm threads or locks); each reads one-letter commands on fd 3 and
 * answers on fd 4:
 *   --map NAME PATH    a mapper: looks NAME up, maps the object read-write, checks every
 *                      page against PATH as read(2) sees it (FNV-1a per page, then
 *                      memcmp; the bytes past the end of the file read as zeros), writes
 *                      pattern 1 (pattern() below), answers 'W'. Then '2': write pattern
 *                      2, answer 'W'; 'U': unmap (memory_object_terminate carries the
 *                      dirty pages home), answer 'D'; 'X': unmap if still mapped, exit
 *                      0; 'E': exit(0) at once, still mapped. Any failure: a message on
 *                      stderr, 'F', exit 1.
 *   --serve PATH NAME  a manager: serves PATH with the file pager under NAME, answers
 *                      'R'; 'Q': shut down and exit.
 *
 * The tests, each with a file of random bytes (6 MiB and 123 bytes) and a shadow copy:
 *   unmap_returns_writes:  the mapper writes and unmaps; the manager receives exactly the
 *                          dirty pages, the mapper exits, the manager shuts down, and the
 *                          file equals the shadow (the pattern, everything else unchanged,
 *                          the same size).
 *   exit_returns_writes:   the mapper writes and calls exit() without unmapping: its
 *                          kernel returns exactly the dirty pages before the process ends,
 *                          and the file equals the shadow.
 *   sync_while_mapped:     the manager syncs while the mapper keeps its mapping: the file
 *                          has the writes; the mapper writes the same pages again and the
 *                          manager's shutdown, the mapper still mapping, fetches them.
 *   manager_dies:          the manager is killed (SIGKILL) while the test process maps
 *                          the object: a page not read yet faults with SIGBUS
 *                          (BUS_OBJERR) rather than hang; a page read before still reads.
 *   terminate_reaches_manager: the mapper unmaps and stays alive; the manager must see
 *                          the kernel go (memory_object_terminate moves the control port's
 *                          receive right to the manager, which holds a proxy of it: the
 *                          right must arrive under the name init gave).
 * Every test ends with the test process quiescent.
 *
 * The name service's runtime directory is a fresh temporary directory
 * (MACHVM_RUNTIME_DIR), set before the node starts and removed at the end.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <mach/netname.h>
#include <machvm/node.h>
#include <machvm/pager.h>
#include <machvm/pagers.h>
#include <machvm/vm.h>
#include "mvm_test.h"
#include "mvm_mgr.h"

#include "mvm_vmtest.h"

#define FILE_SIZE (6u * 1024 * 1024 + 123)   /* the last page is partly past the end */
#define CMD_FD 3
#define REPLY_FD 4
#define EVERY 7                                /* the pattern covers every 7th page */

static char rundir[64];

/* ---- shared by the parts ----------------------------------------------------------------- */

static uint64_t
fnv1a(const volatile unsigned char *p, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ull;

	for (size_t i = 0; i < n; i++)
		h = (h ^ p[i]) * 0x100000001b3ull;
	return h;
}

/* Pattern `round` on every EVERY-th page and the last 50 bytes, inside the object. */
static void
pattern(volatile unsigned char *p, size_t size, unsigned round)
{
	for (size_t off = 0; off < size; off += EVERY * PG) {
		size_t n = size - off < PG ? size - off : PG;

		for (size_t i = 0; i < n; i++)
			p[off + i] = (unsigned char)(off / PG * 31 + i + round);
	}
	for (size_t off = size - 50; off < size; off++)
		p[off] = (unsigned char)(0xa0 + round);
}

/* Pages the pattern dirties. */
static size_t
pattern_pages(size_t size)
{
	size_t npg = (size + PG - 1) / PG;

	return (npg + EVERY - 1) / EVERY + ((npg - 1) % EVERY != 0);
}

/* ---- the helpers ------------------------------------------------------------------------- */

static int
helper_fail(const char *what, kern_return_t kr)
{
	fprintf(stderr, "mapper: %s: %s\n", what, mvm_errname(kr));
	(void)!write(REPLY_FD, "F", 1);
	return 1;
}

static int
map_main(const char *name, const char *path)
{
	mach_port_t obj;
	vm_address_t addr = 0;
	vm_size_t len;
	volatile unsigned char *p;
	unsigned char *file;
	struct stat st;
	kern_return_t kr;
	int fd;
	char c;

	if ((fd = open(path, O_RDONLY)) < 0 || fstat(fd, &st) != 0)
		return helper_fail(path, KERN_FAILURE);
	if ((file = malloc((size_t)st.st_size)) == NULL ||
	    pread(fd, file, (size_t)st.st_size, 0) != st.st_size)
		return helper_fail("read", KERN_FAILURE);
	close(fd);
	if ((kr = netname_look_up(name_server_port, "", name, &obj)) != KERN_SUCCESS)
		return helper_fail("netname_look_up", kr);
	len = ((vm_size_t)st.st_size + PG - 1) / PG * PG;
	kr = vm_map(mach_task_self(), &addr, len, 0, TRUE, obj, 0, FALSE,
	    VM_PROT_READ | VM_PROT_WRITE, VM_PROT_READ | VM_PROT_WRITE, VM_INHERIT_NONE);
	if (kr != KERN_SUCCESS)
		return helper_fail("vm_map", kr);
	p = (volatile unsigned char *)addr;
	for (size_t off = 0; off < (size_t)st.st_size; off += PG) {
		size_t n = (size_t)st.st_size - off < PG ? (size_t)st.st_size - off : PG;

		if (fnv1a(p + off, n) != fnv1a(file + off, n)) {
			fprintf(stderr, "mapper: page %zu: checksum %016llx, %016llx in the file\n",
			    off / PG, (unsigned long long)fnv1a(p + off, n),
			    (unsigned long long)fnv1a(file + off, n));
			return helper_fail("checksum", KERN_FAILURE);
		}
	}
	if (memcmp((const void *)addr, file, (size_t)st.st_size) != 0)
		return helper_fail("memcmp", KERN_FAILURE);
	for (size_t off = (size_t)st.st_size; off < len; off++)
		if (p[off] != 0)
			return helper_fail("the tail of the last page is not zero", KERN_FAILURE);
	free(file);
	pattern(p, (size_t)st.st_size, 1);
	if (write(REPLY_FD, "W", 1) != 1)
		return 1;
	while (read(CMD_FD, &c, 1) == 1) {
		if (c == '2') {
			pattern(p, (size_t)st.st_size, 2);
			(void)!write(REPLY_FD, "W", 1);
		} else if (c == 'E') {
			/* Leave with the mapping and its dirty pages in place. */
			exit(0);
		} else if (c == 'U' || c == 'X') {
			if (addr != 0 && (kr = vm_deallocate(mach_task_self(), addr, len)) != 0)
				return helper_fail("vm_deallocate", kr);
			addr = 0;
			if (c == 'X')
				break;
			(void)!write(REPLY_FD, "D", 1);
		}
	}
	(void)mach_port_deallocate(mach_task_self(), obj);
	return 0;
}

static int
serve_main(const char *path, const char *name)
{
	struct mvm_pager *pager;
	mach_port_t obj;
	kern_return_t kr;
	char c;

	kr = mvm_file_pager_create(path, 0, NULL, &pager, &obj);
	if (kr == KERN_SUCCESS)
		kr = netname_check_in(name_server_port, name, MACH_PORT_NULL, obj);
	if (kr != KERN_SUCCESS)
		return helper_fail("serve", kr);
	if (write(REPLY_FD, "R", 1) != 1)
		return 1;
	while (read(CMD_FD, &c, 1) == 1 && c != 'Q')
		;
	(void)netname_check_out(name_server_port, name, MACH_PORT_NULL);
	return mvm_pager_shutdown(pager) == KERN_SUCCESS ? 0 : 1;
}

/* ---- the test process's side ------------------------------------------------------------- */

struct helper {
	pid_t pid;
	int cmd, reply;                   /* our ends of its pipes */
};

struct fixture {
	char path[128];
	char name[64];
	unsigned char *shadow;            /* what the file must hold */
	size_t size;
	struct mvm_pager *pager;          /* when the test process is the manager */
	mach_port_t obj;
};

static void
helper_start(struct helper *h, const char *a1, const char *a2, const char *a3)
{
	int cmd[2], rep[2];

	assert_int_equal(pipe(cmd), 0);
	assert_int_equal(pipe(rep), 0);
	h->pid = fork();
	assert_true(h->pid >= 0);
	if (h->pid == 0) {
		/* Only async-signal-safe calls between fork and exec: this process has threads. */
		if (dup2(cmd[0], CMD_FD) < 0 || dup2(rep[1], REPLY_FD) < 0)
			_exit(127);
		execl("/proc/self/exe", "test_node_pager", a1, a2, a3, (char *)NULL);
		_exit(127);
	}
	close(cmd[0]);
	close(rep[1]);
	h->cmd = cmd[1];
	h->reply = rep[0];
}

/* One byte from the helper within 10 s, or 0. */
static char
helper_reply(struct helper *h)
{
	struct pollfd pfd = { .fd = h->reply, .events = POLLIN };
	char c = 0;

	if (poll(&pfd, 1, 10000) == 1 && read(h->reply, &c, 1) == 1)
		return c;
	return 0;
}

static void
helper_send(struct helper *h, char c, char want)
{
	assert_int_equal(write(h->cmd, &c, 1), 1);
	if (want != 0)
		assert_int_equal(helper_reply(h), want);
}

/* The helper exits 0. */
static void
helper_wait(struct helper *h)
{
	int status;

	assert_int_equal(waitpid(h->pid, &status, 0), h->pid);
	h->pid = 0;
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	close(h->cmd);
	close(h->reply);
}

/* A file of random bytes, its shadow; with serve, the test process serves it. */
static void
fixture_make(struct fixture *f, const char *name, bool serve)
{
	FILE *rnd;
	int fd;

	memset(f, 0, sizeof(*f));
	f->size = FILE_SIZE;
	snprintf(f->name, sizeof(f->name), "%s", name);
	snprintf(f->path, sizeof(f->path), "%s/file.%s", rundir, name);
	f->shadow = malloc(f->size);
	assert_non_null(f->shadow);
	rnd = fopen("/dev/urandom", "rb");
	assert_non_null(rnd);
	assert_int_equal(fread(f->shadow, 1, f->size, rnd), f->size);
	fclose(rnd);
	fd = open(f->path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, f->shadow, f->size), (ssize_t)f->size);
	close(fd);
	if (!serve)
		return;
	assert_kr(mvm_file_pager_create(f->path, 0, NULL, &f->pager, &f->obj), KERN_SUCCESS);
	assert_kr(netname_check_in(name_server_port, f->name, MACH_PORT_NULL, f->obj),
	    KERN_SUCCESS);
}

/* The manager's statistics. */
static struct mvm_pager_stats
pstats(struct fixture *f)
{
	struct mvm_pager_stats st;

	assert_kr(mvm_pager_stats(f->pager, &st), KERN_SUCCESS);
	return st;
}

/* Wait up to TMO ms for the manager to have written `pages` pages. */
static void
wait_pages_written(struct fixture *f, uint64_t pages)
{
	for (int i = 0; i < TMO && pstats(f).pages_written < pages; i++)
		sleep_ms(1);
	assert_int_equal(pstats(f).pages_written, pages);
}

/* Check the name out and shut the manager down: every write reaches the file. */
static void
fixture_shutdown(struct fixture *f)
{
	assert_kr(netname_check_out(name_server_port, f->name, MACH_PORT_NULL), KERN_SUCCESS);
	assert_kr(mvm_pager_shutdown(f->pager), KERN_SUCCESS);
	f->pager = NULL;
}

/* The file on disk equals the shadow copy, size included. */
static void
assert_file_is_shadow(struct fixture *f)
{
	unsigned char *buf = malloc(f->size + 1);
	struct stat st;
	int fd = open(f->path, O_RDONLY);

	assert_non_null(buf);
	assert_true(fd >= 0);
	assert_int_equal(fstat(fd, &st), 0);
	assert_int_equal(st.st_size, (off_t)f->size);
	assert_int_equal(pread(fd, buf, f->size, 0), (ssize_t)f->size);
	for (size_t off = 0; off < f->size; off += PG) {
		size_t n = f->size - off < PG ? f->size - off : PG;

		if (memcmp(buf + off, f->shadow + off, n) != 0)
			fail_msg("page %zu of the file differs from the shadow", off / PG);
	}
	close(fd);
	free(buf);
}

static void
fixture_free(struct fixture *f)
{
	unlink(f->path);
	free(f->shadow);
}

/* ---- the tests --------------------------------------------------------------------------- */

static void
unmap_returns_writes(void **state)
{
	struct fixture f;
	struct helper b;

	(void)state;
	test_begin();
	fixture_make(&f, "np.unmap", true);
	helper_start(&b, "--map", f.name, f.path);
	assert_int_equal(helper_reply(&b), 'W');
	pattern(f.shadow, f.size, 1);
	helper_send(&b, 'U', 'D');
	/* The dirty pages came with the unmap, before the terminate: exactly those. */
	wait_pages_written(&f, pattern_pages(f.size));
	assert_int_equal(pstats(&f).requests, (f.size + PG - 1) / PG);
	helper_send(&b, 'X', 0);
	helper_wait(&b);
	fixture_shutdown(&f);
	assert_file_is_shadow(&f);
	fixture_free(&f);
	MVM_TEST_QUIESCENT();
}

static void
exit_returns_writes(void **state)
{
	struct fixture f;
	struct helper b;

	(void)state;
	test_begin();
	fixture_make(&f, "np.exit", true);
	helper_start(&b, "--map", f.name, f.path);
	assert_int_equal(helper_reply(&b), 'W');
	pattern(f.shadow, f.size, 1);
	helper_send(&b, 'E', 0);
	helper_wait(&b);
	/* The writes came back although nothing unmapped or synced: exactly those pages. */
	wait_pages_written(&f, pattern_pages(f.size));
	fixture_shutdown(&f);
	assert_file_is_shadow(&f);
	fixture_free(&f);
	MVM_TEST_QUIESCENT();
}

static void
sync_while_mapped(void **state)
{
	struct fixture f;
	struct helper b;

	(void)state;
	test_begin();
	fixture_make(&f, "np.sync", true);
	helper_start(&b, "--map", f.name, f.path);
	assert_int_equal(helper_reply(&b), 'W');
	pattern(f.shadow, f.size, 1);
	/* The manager asks the other process's kernel for its dirty pages and waits. */
	assert_kr(mvm_pager_sync(f.pager, 0, 0, TRUE), KERN_SUCCESS);
	assert_int_equal(pstats(&f).pages_written, pattern_pages(f.size));
	assert_file_is_shadow(&f);
	/* Clean again there: new writes, which the shutdown must fetch while mapped. */
	helper_send(&b, '2', 'W');
	pattern(f.shadow, f.size, 2);
	fixture_shutdown(&f);
	assert_file_is_shadow(&f);
	helper_send(&b, 'X', 0);
	helper_wait(&b);
	fixture_free(&f);
	MVM_TEST_QUIESCENT();
}

static void
manager_dies(void **state)
{
	struct fixture f;
	struct helper a;
	struct toucher t;
	mach_port_t obj;
	vm_address_t addr = 0;
	vm_size_t len;
	int status;

	(void)state;
	test_begin();
	fixture_make(&f, "np.dies", false);
	helper_start(&a, "--serve", f.path, f.name);
	assert_int_equal(helper_reply(&a), 'R');
	assert_kr(netname_look_up(name_server_port, "", f.name, &obj), KERN_SUCCESS);
	len = (f.size + PG - 1) / PG * PG;
	assert_kr(vm_map(mach_task_self(), &addr, len, 0, TRUE, obj, 0, FALSE, VM_PROT_READ,
	    VM_PROT_READ, VM_INHERIT_NONE), KERN_SUCCESS);
	/* Read the first half only. */
	for (size_t off = 0; off < f.size / 2; off += PG)
		assert_int_equal(((volatile unsigned char *)addr)[off], f.shadow[off]);
	assert_int_equal(kill(a.pid, SIGKILL), 0);
	assert_int_equal(waitpid(a.pid, &status, 0), a.pid);
	close(a.cmd);
	close(a.reply);
	/* A page never read: nobody can supply it. */
	touch_start(&t, addr + (f.size / 2 / PG + 3) * PG, false, 0);
	assert_touch_sigbus(&t);
	/* A page read before stays. */
	assert_int_equal(((volatile unsigned char *)addr)[PG], f.shadow[PG]);
	assert_kr(vm_deallocate(mach_task_self(), addr, len), KERN_SUCCESS);
	assert_kr(mach_port_deallocate(mach_task_self(), obj), KERN_SUCCESS);
	fixture_free(&f);
	MVM_TEST_QUIESCENT();
}

/*
 * The mapper unmaps and stays alive: the terminate must reach the manager, which then
 * counts no kernel (so a shutdown waits for nobody). With the node layer of 4416028 it
 * does not: terminate moves the control port's receive right to the manager's process,
 * which already holds a proxy for that port (from init) under another name; node.c
 * makes a new port for the receive right (wref_in, MVM_WR_RECEIVE), so the name differs
 * from the one init gave, the framework finds no kernel with that control port, and the
 * kernel stays counted; a shutdown then waits for its lock_completed for ever (the
 * lock_request goes to the forwarder left behind, which forwards to the port the
 * framework destroyed). Mach gives one name per port in a task: the receive right must
 * join the proxy's name.
 */
static void
terminate_reaches_manager(void **state)
{
	struct fixture f;
	struct helper b;

	(void)state;
	test_begin();
	fixture_make(&f, "np.term", true);
	helper_start(&b, "--map", f.name, f.path);
	assert_int_equal(helper_reply(&b), 'W');
	helper_send(&b, 'U', 'D');
	for (int i = 0; i < TMO && pstats(&f).kernels != 0; i++)
		sleep_ms(1);
	if (pstats(&f).kernels != 0) {
		/* Let the mapper go first, so that the shutdown below cannot hang. */
		helper_send(&b, 'X', 0);
		helper_wait(&b);
		fixture_shutdown(&f);
		fixture_free(&f);
		fail_msg("the mapper unmapped, but the manager still counts its kernel");
	}
	fixture_shutdown(&f);
	helper_send(&b, 'X', 0);
	helper_wait(&b);
	fixture_free(&f);
	MVM_TEST_QUIESCENT();
}

static int
rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st, (void)flag, (void)ftw;
	return remove(path);
}

int
main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(unmap_returns_writes),
		cmocka_unit_test(exit_returns_writes),
		cmocka_unit_test(sync_while_mapped),
		cmocka_unit_test(manager_dies),
		cmocka_unit_test(terminate_reaches_manager),
	};
	int rc;

	if (argc == 4 && strcmp(argv[1], "--serve") == 0)
		return serve_main(argv[2], argv[3]);
	if (argc == 4 && strcmp(argv[1], "--map") == 0) {
		signal(SIGPIPE, SIG_IGN);
		return map_main(argv[2], argv[3]);
	}
	/* A fresh name service for this run, before the node starts. */
	snprintf(rundir, sizeof(rundir), "/tmp/mvm-node-pager-XXXXXX");
	if (mkdtemp(rundir) == NULL)
		return 1;
	setenv("MACHVM_RUNTIME_DIR", rundir, 1);
	signal(SIGPIPE, SIG_IGN);
	/* Before any kernel call: see mvm_vmtest.h. */
	if (!mvm_vmtest_main_setup())
		return 1;
	rc = cmocka_run_group_tests_name("node_pager", tests, NULL, NULL);
	nftw(rundir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
	return rc;
}
