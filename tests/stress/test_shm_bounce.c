/*
 * tests/stress/test_shm_bounce.c: the coherent shared memory pager (pagers/shm_pager.c)
 * under a bounce stress test across processes, checked against a shadow.
 *
 * One manager actor serves an object of NPAGES pages; NPROC mapper actors map it, each
 * with NTHREADS threads. Every thread (an "owner", NOWNERS of them) owns SLOTS 8-byte
 * words in EVERY page, interleaved with the other owners' words, so that every page is
 * written by every process all the time (false sharing: pages bounce between the
 * kernels at each write). A thread loops, picking a random page and slot:
 *   - a write (3 in 4): it reads its own slot back, which must equal its last write (a
 *     lost write or a stale page shows an older value), then stores the next value of
 *     the slot's sequence (strictly increasing; the value carries the owner's tag). One
 *     write in 8 is blind (no read first: a write fault on a page not held, data_request
 *     for write instead of data_unlock); the next write of that slot checks it.
 *   - a read (1 in 4) of any owner's slot on that page: the tag must be the owner's (or
 *     the word still zero) and the sequence never goes backwards for this observer and
 *     slot (coherence: a value once seen is never followed by an older one).
 * Accesses to the mapping are relaxed atomics: plain 8-byte loads and stores on the
 * machine; the atomics only tell the compiler (and TSan, for the threads of one process)
 * that other threads use the words.
 * Meanwhile the manager reads the whole object with mvm_shm_pager_read every few
 * milliseconds (fetching dirty pages from the writers) and checks the same: tags, every
 * slot monotonic from one read to the next, every word that is not a slot zero.
 *
 * At the end each thread checks all its slots once more, each mapper vm_deallocates
 * (the dirty pages go back with memory_object_terminate) and reports its last values
 * (the shadow) in memory shared with the other actors. Once every kernel has
 * terminated (none died), the manager reads the whole object: every slot must equal its
 * owner's last write, no observer may have seen a value its owner never wrote, and
 * every other word is zero: zero mismatches. The counts (ops, and the pager's grants,
 * invalidations and downgrades) are printed.
 *
 * Scale: MVM_BOUNCE_SECONDS sets the run time (default 12 s); MVM_BOUNCE_OPS caps the
 * operations of each thread (default: no cap; if it is set alone, the run time is at
 * most 240 s). MVM_BOUNCE_SEED fixes the random seed (printed at each run).
 */

#include "mvm_node_test.h"

#include <pthread.h>
#include <stdatomic.h>
#include <sys/mman.h>

#include <machvm/pagers.h>
#include <machvm/vm.h>
#include "mvm_mgr.h"

#define NPROC 4                   /* mapper processes */
#define NTHREADS 2                /* threads per mapper */
#define NOWNERS (NPROC * NTHREADS)
#define NPAGES 16
#define SLOTS 4                   /* slots per owner per page */
#define NAME "shm-bounce"

#define TAG_SHIFT 48
#define SEQ_MASK ((1ull << TAG_SHIFT) - 1)

enum { R_READY = 1, R_DONE = 2 };           /* actors' reports */
enum { O_START = 1, O_FINAL = 2, O_EXIT = 3 }; /* the orchestrator's orders */

/* What the actors share (MAP_SHARED, made by the orchestrator before forking). Each
 * field is written by one actor and read by another after a pipe message (the pipe
 * orders them). */
struct shared {
	uint64_t seed;
	uint64_t run_ms;                                /* each thread runs this long... */
	uint64_t max_ops;                               /* ...or this many operations */
	/* Mappers: each owner's last write (sequence) per slot, and what each observer saw. */
	uint64_t last[NOWNERS][NPAGES][SLOTS];
	uint64_t seen[NOWNERS][NOWNERS][NPAGES][SLOTS]; /* [observer][owner]... */
	uint64_t ops[NOWNERS], writes[NOWNERS], reads[NOWNERS];
	/* The manager's results. */
	uint64_t peeks, mismatches;
	struct mvm_shm_pager_stats st;
	char what[512];                                 /* the first mismatches */
};

static struct shared *sh;
static size_t ps;

static size_t
obj_size(void)
{
	return NPAGES * ps;
}

/* The word index in a page of owner o's slot j: the slots of all owners spread over the
 * whole page. */
static size_t
slot_word(unsigned o, unsigned j)
{
	size_t stride = ps / sizeof(uint64_t) / (SLOTS * NOWNERS);

	return ((size_t)j * NOWNERS + o) * stride;
}

static uint64_t
tagged(unsigned o, uint64_t seq)
{
	return seq == 0 ? 0 : ((uint64_t)(o + 1) << TAG_SHIFT) | seq;
}

static uint64_t
env_u64(const char *name, uint64_t dflt)
{
	const char *s = getenv(name);

	return s != NULL && *s != '\0' ? strtoull(s, NULL, 0) : dflt;
}

/* xorshift64* */
static uint64_t
rnd(uint64_t *x)
{
	*x ^= *x >> 12;
	*x ^= *x << 25;
	*x ^= *x >> 27;
	return *x * 0x2545f4914f6cdd1dull;
}

/* ---- a mapper ------------------------------------------------------------------------ */

static atomic_uint failed;        /* in a mapper: a thread found a mismatch */
static char fail_text[256];

static void __attribute__((format(printf, 1, 2)))
thread_fail(const char *fmt, ...)
{
	va_list ap;

	if (atomic_fetch_add(&failed, 1) != 0)
		return;
	va_start(ap, fmt);
	vsnprintf(fail_text, sizeof(fail_text), fmt, ap);
	va_end(ap);
}

struct bouncer {
	unsigned owner;
	uint64_t *base;               /* the mapping */
	pthread_t thread;
};

static uint64_t *
word(uint64_t *base, size_t pg, unsigned o, unsigned j)
{
	return base + pg * (ps / sizeof(uint64_t)) + slot_word(o, j);
}

static void *
bouncer_main(void *arg)
{
	struct bouncer *b = arg;
	unsigned me = b->owner;
	uint64_t (*last)[SLOTS] = sh->last[me];
	uint64_t (*seen)[NPAGES][SLOTS] = sh->seen[me];
	uint64_t x = sh->seed ^ (0x9e3779b97f4a7c15ull * (me + 1)), ops = 0, writes = 0, reads = 0;
	uint64_t end = nt_now_ms() + sh->run_ms;

	for (; ops < sh->max_ops && atomic_load_explicit(&failed, memory_order_relaxed) == 0; ops++) {
		uint64_t r = rnd(&x), v, want;
		size_t pg = r % NPAGES;
		unsigned j = (unsigned)(r >> 8) % SLOTS;

		if ((ops & 63) == 0 && nt_now_ms() >= end)
			break;
		if ((r >> 16) % 4 == 0) {
			/* Read a slot of any owner (ours too): never older than what we saw. */
			unsigned o = (unsigned)(r >> 20) % NOWNERS;

			v = __atomic_load_n(word(b->base, pg, o, j), __ATOMIC_RELAXED);
			if (v != 0 && v >> TAG_SHIFT != o + 1) {
				thread_fail("owner %u: slot (page %zu, owner %u, %u) holds %#llx: not "
				    "the owner's tag", me, pg, o, j, (unsigned long long)v);
				break;
			}
			if ((v & SEQ_MASK) < seen[o][pg][j]) {
				thread_fail("owner %u: slot (page %zu, owner %u, %u) went back from %llu "
				    "to %llu", me, pg, o, j, (unsigned long long)seen[o][pg][j],
				    (unsigned long long)(v & SEQ_MASK));
				break;
			}
			if (o == me && v != tagged(me, last[pg][j])) {
				thread_fail("owner %u: own slot (page %zu, %u) reads %#llx, last write "
				    "%#llx", me, pg, j, (unsigned long long)v,
				    (unsigned long long)tagged(me, last[pg][j]));
				break;
			}
			seen[o][pg][j] = v & SEQ_MASK;
			reads++;
			continue;
		}
		/* Write our slot: read it back first (except one write in 8), then the next
		 * number of its sequence. */
		want = tagged(me, last[pg][j]);
		if ((r >> 24) % 8 != 0 &&
		    (v = __atomic_load_n(word(b->base, pg, me, j), __ATOMIC_RELAXED)) != want) {
			thread_fail("owner %u: own slot (page %zu, %u) reads %#llx before write %llu, "
			    "last write %#llx (lost or stale)", me, pg, j, (unsigned long long)v,
			    (unsigned long long)writes, (unsigned long long)want);
			break;
		}
		last[pg][j]++;
		seen[me][pg][j] = last[pg][j];
		__atomic_store_n(word(b->base, pg, me, j), tagged(me, last[pg][j]), __ATOMIC_RELAXED);
		writes++;
	}
	/* Every slot of ours, a last time. */
	for (size_t pg = 0; pg < NPAGES && atomic_load(&failed) == 0; pg++)
		for (unsigned j = 0; j < SLOTS; j++) {
			uint64_t v = __atomic_load_n(word(b->base, pg, me, j), __ATOMIC_RELAXED);

			if (v != tagged(me, last[pg][j])) {
				thread_fail("owner %u: at the end, own slot (page %zu, %u) reads %#llx, "
				    "last write %#llx", me, pg, j, (unsigned long long)v,
				    (unsigned long long)tagged(me, last[pg][j]));
				break;
			}
		}
	sh->ops[me] = ops;
	sh->writes[me] = writes;
	sh->reads[me] = reads;
	return NULL;
}

static void
mapper(long proc)
{
	struct bouncer b[NTHREADS];
	vm_address_t addr = 0;
	mach_port_t obj;

	alarm((unsigned)(sh->run_ms / 1000) + 60);
	obj = nt_look_up(NAME);
	NT_KR(vm_map(SELF, &addr, obj_size(), 0, TRUE, obj, 0, FALSE,
	    VM_PROT_READ | VM_PROT_WRITE, VM_PROT_ALL, VM_INHERIT_NONE), KERN_SUCCESS);
	nt_tell(R_READY);
	NT_EQ(nt_await(), O_START);
	for (unsigned t = 0; t < NTHREADS; t++) {
		b[t].owner = (unsigned)proc * NTHREADS + t;
		b[t].base = (uint64_t *)addr;
		NT_EQ(pthread_create(&b[t].thread, NULL, bouncer_main, &b[t]), 0);
	}
	/* A thread stuck in a fault is ended by the alarm. */
	for (unsigned t = 0; t < NTHREADS; t++)
		NT_EQ(pthread_join(b[t].thread, NULL), 0);
	if (atomic_load(&failed) != 0)
		nt_fail(__FILE__, __LINE__, "%s", fail_text);
	/* Our dirty pages go home with memory_object_terminate. */
	NT_KR(vm_deallocate(SELF, addr, obj_size()), KERN_SUCCESS);
	nt_tell(R_DONE);
	/* Stay until the manager has checked (our node carries our last messages). */
	NT_EQ(nt_await(), O_EXIT);
	NT_KR(mach_port_deallocate(SELF, obj), KERN_SUCCESS);
}

/* ---- the manager ---------------------------------------------------------------------- */

/*
 * Check a read of the whole object: tags, zeros between the slots, every slot not older
 * than in the previous read (prev, or NULL) and, at the end (final), equal to its
 * owner's last write. Returns the mismatches, described in sh->what.
 */
static uint64_t
check_image(const uint64_t *img, const uint64_t *prev, bool final)
{
	size_t wpp = ps / sizeof(uint64_t), len = 0;
	uint64_t bad = 0;
	char *what = sh->what;

#define NOTE(...) do { \
	if (bad++ < 4 && len < sizeof(sh->what)) \
		len += (size_t)snprintf(what + len, sizeof(sh->what) - len, __VA_ARGS__); \
} while (0)
	for (size_t pg = 0; pg < NPAGES; pg++) {
		size_t next = 0;          /* the next word that is a slot */
		unsigned o = 0, j = 0;

		for (size_t w = 0; w < wpp; w++) {
			uint64_t v = img[pg * wpp + w];

			if (w != next) {
				if (v != 0)
					NOTE("[page %zu word %zu: %#llx, not a slot, not 0] ", pg, w,
					    (unsigned long long)v);
				continue;
			}
			if (v != 0 && v >> TAG_SHIFT != o + 1)
				NOTE("[page %zu owner %u slot %u: %#llx, wrong tag] ", pg, o, j,
				    (unsigned long long)v);
			if (prev != NULL && (v & SEQ_MASK) < (prev[pg * wpp + w] & SEQ_MASK))
				NOTE("[page %zu owner %u slot %u: %llu after %llu] ", pg, o, j,
				    (unsigned long long)(v & SEQ_MASK),
				    (unsigned long long)(prev[pg * wpp + w] & SEQ_MASK));
			if (final && v != tagged(o, sh->last[o][pg][j]))
				NOTE("[page %zu owner %u slot %u: %llu, last write %llu] ", pg, o, j,
				    (unsigned long long)(v & SEQ_MASK),
				    (unsigned long long)sh->last[o][pg][j]);
			for (unsigned ob = 0; final && ob < NOWNERS; ob++)
				if (sh->seen[ob][o][pg][j] > sh->last[o][pg][j])
					NOTE("[observer %u saw %llu in page %zu owner %u slot %u, last "
					    "write %llu] ", ob, (unsigned long long)sh->seen[ob][o][pg][j],
					    pg, o, j, (unsigned long long)sh->last[o][pg][j]);
			if (++o == NOWNERS) {
				o = 0;
				j++;
			}
			next = j < SLOTS ? slot_word(o, j) : wpp;
		}
	}
#undef NOTE
	return bad;
}

static void
manager(long arg)
{
	struct mvm_shm_pager *pager;
	struct mvm_shm_pager_stats st;
	uint64_t *img = calloc(1, obj_size()), *prev = calloc(1, obj_size()), *tmp;
	uint64_t end, bad = 0;
	mach_port_t port;
	int64_t order;

	(void)arg;
	alarm((unsigned)(sh->run_ms / 1000) + 60);
	NT_CHECK(img != NULL && prev != NULL);
	NT_KR(mvm_shm_pager_create(obj_size(), &pager, &port), KERN_SUCCESS);
	nt_check_in(NAME, port);
	nt_tell(R_READY);

	/* While the mappers run: read everything now and then (the writers return their
	 * dirty pages and keep read copies), and check. */
	end = nt_now_ms() + sh->run_ms + 50000;
	while ((order = nt_poll_order()) < 0) {
		NT_CHECK(nt_now_ms() < end);
		NT_KR(mvm_shm_pager_read(pager, 0, img, obj_size()), KERN_SUCCESS);
		if ((bad = check_image(img, prev, false)) != 0)
			nt_fail(__FILE__, __LINE__, "read %llu while mapped: %llu mismatches: %s",
			    (unsigned long long)sh->peeks, (unsigned long long)bad, sh->what);
		sh->peeks++;
		tmp = prev, prev = img, img = tmp;
		nt_sleep_ms(10);
	}
	NT_EQ(order, O_FINAL);

	/* Every mapper has unmapped: wait for their terminates (their dirty pages came
	 * before), then the whole object must be the shadow. */
	end = nt_now_ms() + NT_TMO;
	for (;;) {
		NT_KR(mvm_shm_pager_stats(pager, &st), KERN_SUCCESS);
		if (st.terminates + st.deaths >= NPROC)
			break;
		if (nt_now_ms() > end)
			nt_fail(__FILE__, __LINE__, "%llu terminates, %llu deaths, %llu kernels: "
			    "the mappers did not all leave", (unsigned long long)st.terminates,
			    (unsigned long long)st.deaths, (unsigned long long)st.kernels);
		nt_sleep_ms(5);
	}
	NT_KR(mvm_shm_pager_read(pager, 0, img, obj_size()), KERN_SUCCESS);
	sh->mismatches = check_image(img, prev, true);
	NT_KR(mvm_shm_pager_stats(pager, &sh->st), KERN_SUCCESS);
	nt_check_out(NAME);
	NT_KR(mvm_shm_pager_shutdown(pager), KERN_SUCCESS);
	free(img);
	free(prev);
	nt_tell(R_DONE);
}

/* ---- the test ---------------------------------------------------------------------------- */

/* The actor's next report, waiting up to ms. */
static uint64_t
hear_within(struct nt_actor *a, uint64_t ms)
{
	uint64_t v = 0;

	if (!nt_read_full(a->from, &v, sizeof(v), (int)ms)) {
		int st = nt_reap(a, 2000);

		fail_msg("actor %s (pid %d) reported nothing: %s %d", a->name, (int)a->pid,
		    WIFSIGNALED(st) ? "killed by signal" : "exit status",
		    WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
	}
	return v;
}

static void
test_bounce(void **state)
{
	static const char *names[NPROC] = { "mapper0", "mapper1", "mapper2", "mapper3" };
	struct nt_actor *mgr, *m[NPROC];
	uint64_t secs = env_u64("MVM_BOUNCE_SECONDS", 0), ops = 0, writes = 0, reads = 0;
	uint64_t t0;

	(void)state;
	ps = (size_t)sysconf(_SC_PAGESIZE);
	sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	assert_true(sh != MAP_FAILED);
	memset(sh, 0, sizeof(*sh));
	mvm_test_require_uffd();
	sh->max_ops = env_u64("MVM_BOUNCE_OPS", UINT64_MAX);
	if (secs == 0)
		secs = sh->max_ops == UINT64_MAX ? 12 : 240;
	sh->run_ms = secs * 1000;
	sh->seed = env_u64("MVM_BOUNCE_SEED", (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 20));
	print_message("shm bounce: %d processes x %d threads, %d pages, %llu s, seed %#llx\n",
	    NPROC, NTHREADS, NPAGES, (unsigned long long)secs, (unsigned long long)sh->seed);

	mgr = nt_spawn("manager", manager, 0);
	assert_int_equal(nt_hear(mgr), R_READY);
	for (unsigned i = 0; i < NPROC; i++)
		m[i] = nt_spawn(names[i], mapper, (long)i);
	for (unsigned i = 0; i < NPROC; i++)
		assert_int_equal(nt_hear(m[i]), R_READY);
	t0 = nt_now_ms();
	for (unsigned i = 0; i < NPROC; i++)
		nt_order(m[i], O_START);
	for (unsigned i = 0; i < NPROC; i++)
		assert_int_equal(hear_within(m[i], sh->run_ms + 50000), R_DONE);
	nt_order(mgr, O_FINAL);
	assert_int_equal(hear_within(mgr, NT_TMO + 30000), R_DONE);
	for (unsigned i = 0; i < NPROC; i++) {
		nt_order(m[i], O_EXIT);
		nt_expect_ok(m[i]);
	}
	nt_expect_ok(mgr);

	for (unsigned o = 0; o < NOWNERS; o++) {
		ops += sh->ops[o];
		writes += sh->writes[o];
		reads += sh->reads[o];
	}
	print_message("shm bounce: %.1f s, %llu ops (%llu writes, %llu reads of others' slots), "
	    "%llu whole-object reads by the manager\n", (double)(nt_now_ms() - t0) / 1000.0,
	    (unsigned long long)ops, (unsigned long long)writes, (unsigned long long)reads,
	    (unsigned long long)sh->peeks);
	print_message("shm bounce: pager: %llu grants, %llu invalidations, %llu downgrades, "
	    "%llu supplies, %llu unlocks (%llu stale), %llu read + %llu write requests, "
	    "%llu returns (%llu dirty), %llu inits, %llu terminates, %llu deaths\n",
	    (unsigned long long)sh->st.grants, (unsigned long long)sh->st.invalidations,
	    (unsigned long long)sh->st.downgrades, (unsigned long long)sh->st.supplies,
	    (unsigned long long)sh->st.unlocks, (unsigned long long)sh->st.stale_unlocks,
	    (unsigned long long)sh->st.read_requests, (unsigned long long)sh->st.write_requests,
	    (unsigned long long)sh->st.returns, (unsigned long long)sh->st.dirty_returns,
	    (unsigned long long)sh->st.inits, (unsigned long long)sh->st.terminates,
	    (unsigned long long)sh->st.deaths);
	if (sh->mismatches != 0)
		fail_msg("%llu mismatches with the shadow: %s", (unsigned long long)sh->mismatches,
		    sh->what);
	assert_int_equal(sh->st.inits, NPROC);
	assert_int_equal(sh->st.terminates, NPROC);
	assert_int_equal(sh->st.deaths, 0);
	assert_int_equal(sh->st.kernels, 0);
	/* The run must have made the pages bounce, both ways. */
	assert_true(writes > 0 && reads > 0);
	assert_true(sh->st.grants > 0);
	assert_true(sh->st.invalidations > 0);
	assert_true(sh->st.downgrades > 0);
	munmap(sh, sizeof(*sh));
	sh = NULL;
}

int
main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_bounce, nt_setup, nt_teardown),
	};

	if (argc > 1)
		cmocka_set_test_filter(argv[1]);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
