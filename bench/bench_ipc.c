/*
 * bench/bench_ipc.c: Mach IPC round trip and one-way throughput between two threads,
 * each figure printed beside baselines measured in the same run with the same thread
 * placement.
 *
 * Round trip (64-byte request, 64-byte reply):
 *   futex ping-pong        a shared turn word, FUTEX_WAIT / FUTEX_WAKE, no spinning
 *   condvar ping-pong      a mutex, a condition variable and a turn word
 *   mach_msg rpc           client mach_msg(SEND|RCV) with a MAKE_SEND_ONCE reply right;
 *                          the server receives, then sends the reply (two calls)
 *   mach_msg rpc combined  the server sends each reply and receives the next request in
 *                          one mach_msg(SEND|RCV)
 *   mach_msg_server        the server runs mach_msg_server() with a one-routine demux
 * One-way throughput (32-byte messages):
 *   condvar ring           a bounded ring (mutex + two condition variables) of depth D
 *   mach_msg               N sends to a port with queue limit D; the receiver takes N
 *   with D = 5 (MACH_PORT_QLIMIT_DEFAULT) and D = 16 (MACH_PORT_QLIMIT_MAX).
 *
 * Placement: every figure is measured with both threads pinned to CPU 0 ("same-CPU") and
 * with them pinned to CPUs 0 and 1 ("cross-CPU"), and is compared only with baselines of
 * the same placement. On the 2-vCPU VMs we run on, a wake-up across vCPUs costs 25-110 us
 * and a same-CPU hand-off 4-10 us, so the two placements differ by an order of magnitude.
 *
 * Each measurement runs --reps times (default 5; 3 with --quick) after a warm-up; the
 * median and the best repetition are printed, and the ratio ours/baseline of the medians
 * (time per round trip, or time per message for throughput: above 1 is slower).
 *
 * Usage: bench_ipc [--iters N] [--reps R] [--quick] [--only rt|tput] [--placement same|cross]
 *   --iters N   round trips per repetition (default 10000; 2000 with --quick); the
 *               throughput tests send 10 * N messages
 *   --only, --placement   run a subset (e.g. under perf record)
 */
#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <mach/mach.h>
#include <machvm/ipc.h>
#include "bench_common.h"

#define MAX_REPS 64
#define PAYLOAD 40              /* 24-byte header + 40 = a 64-byte message */

static unsigned opt_iters = 10000;
static unsigned opt_reps = 5;
static bool opt_quick;
static const char *opt_only;        /* "rt", "tput" or NULL for both */
static const char *opt_placement;   /* "same", "cross" or NULL for both */

static void
die(const char *what, kern_return_t kr)
{
	fprintf(stderr, "bench_ipc: %s: %s (0x%x)\n", what, mvm_errname(kr), (unsigned)kr);
	exit(1);
}

/* ---- placement ------------------------------------------------------------------------ */

struct placement {
	const char *name;
	int cpu[2];                 /* CPU of thread 0 (client/sender) and thread 1 */
};

static const struct placement placements[] = {
	{ "same-CPU", { 0, 0 } },
	{ "cross-CPU", { 0, 1 } },
};

static void
pin_self(int cpu)
{
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	if (sched_setaffinity(0, sizeof(set), &set) != 0) {
		perror("bench_ipc: sched_setaffinity");
		exit(1);
	}
}

/*
 * A measurement: `body(arg, role)` runs in two threads, pinned per the placement; role 0
 * (client/sender) returns the elapsed microseconds of its timed part. `setup`/`teardown`
 * run in the main thread around each repetition.
 */
struct bench {
	const char *name;
	void *(*setup)(unsigned depth);
	double (*body)(void *ctx, int role, unsigned n);
	void (*teardown)(void *ctx);
};

struct run_arg {
	const struct bench *b;
	void *ctx;
	int role, cpu;
	unsigned n;
	double us;
	pthread_barrier_t *start;
};

static void *
run_thread(void *p)
{
	struct run_arg *a = p;

	pin_self(a->cpu);
	pthread_barrier_wait(a->start);
	a->us = a->b->body(a->ctx, a->role, a->n);
	return NULL;
}

/* One repetition: returns the client's elapsed time in microseconds for n operations. */
static double
run_once(const struct bench *b, const struct placement *pl, unsigned depth, unsigned n)
{
	pthread_barrier_t start;
	struct run_arg a[2];
	pthread_t t[2];
	void *ctx = b->setup(depth);

	pthread_barrier_init(&start, NULL, 2);
	for (int i = 0; i < 2; i++) {
		a[i] = (struct run_arg){ .b = b, .ctx = ctx, .role = i, .cpu = pl->cpu[i], .n = n,
		    .start = &start };
		if (pthread_create(&t[i], NULL, run_thread, &a[i]) != 0) {
			perror("bench_ipc: pthread_create");
			exit(1);
		}
	}
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	pthread_barrier_destroy(&start);
	b->teardown(ctx);
	return a[0].us;
}

struct result {
	double median, min;         /* microseconds per operation */
};

static struct result
measure(const struct bench *b, const struct placement *pl, unsigned depth, unsigned n)
{
	double per[MAX_REPS];
	struct result r;

	(void)run_once(b, pl, depth, n / 10 + 10); /* warm-up: page faults, caches, names */
	for (unsigned i = 0; i < opt_reps; i++)
		per[i] = run_once(b, pl, depth, n) / n;
	qsort(per, opt_reps, sizeof(per[0]), cmp_double);
	r.min = per[0];
	r.median = opt_reps % 2 ? per[opt_reps / 2] : (per[opt_reps / 2 - 1] + per[opt_reps / 2]) / 2;
	return r;
}

/* ---- baseline: futex ping-pong ------------------------------------------------------- */

static long
futex(_Atomic uint32_t *addr, int op, uint32_t val)
{
	return syscall(SYS_futex, addr, op, val, NULL, NULL, 0);
}

struct pingpong {
	_Atomic uint32_t turn;      /* 0: the client's turn, 1: the server's */
	pthread_mutex_t mtx;
	pthread_cond_t cond;
	char req[PAYLOAD], rep[PAYLOAD];
};

static void *
pingpong_setup(unsigned depth)
{
	struct pingpong *p = calloc(1, sizeof(*p));

	(void)depth;
	if (p == NULL)
		exit(1);
	pthread_mutex_init(&p->mtx, NULL);
	pthread_cond_init(&p->cond, NULL);
	return p;
}

static void
pingpong_teardown(void *ctx)
{
	struct pingpong *p = ctx;

	pthread_mutex_destroy(&p->mtx);
	pthread_cond_destroy(&p->cond);
	free(p);
}

static void
futex_await(_Atomic uint32_t *w, uint32_t want)
{
	uint32_t v;

	while ((v = atomic_load_explicit(w, memory_order_acquire)) != want)
		(void)futex(w, FUTEX_WAIT_PRIVATE, v);
}

static double
futex_body(void *ctx, int role, unsigned n)
{
	struct pingpong *p = ctx;
	char buf[PAYLOAD];
	double t0;

	memset(buf, role, sizeof(buf));
	t0 = now_us();
	for (unsigned i = 0; i < n; i++) {
		if (role == 0) {
			memcpy(p->req, buf, PAYLOAD);
			atomic_store_explicit(&p->turn, 1, memory_order_release);
			(void)futex(&p->turn, FUTEX_WAKE_PRIVATE, 1);
			futex_await(&p->turn, 0);
			memcpy(buf, p->rep, PAYLOAD);
		} else {
			futex_await(&p->turn, 1);
			memcpy(buf, p->req, PAYLOAD);
			memcpy(p->rep, buf, PAYLOAD);
			atomic_store_explicit(&p->turn, 0, memory_order_release);
			(void)futex(&p->turn, FUTEX_WAKE_PRIVATE, 1);
		}
	}
	return now_us() - t0;
}

/* ---- baseline: condition-variable ping-pong ------------------------------------------ */

static double
condvar_body(void *ctx, int role, unsigned n)
{
	struct pingpong *p = ctx;
	char buf[PAYLOAD];
	uint32_t mine = role == 0 ? 0 : 1;
	double t0;

	memset(buf, role, sizeof(buf));
	t0 = now_us();
	for (unsigned i = 0; i < n; i++) {
		pthread_mutex_lock(&p->mtx);
		while (atomic_load_explicit(&p->turn, memory_order_relaxed) != mine)
			pthread_cond_wait(&p->cond, &p->mtx);
		if (role == 0) {
			if (i > 0)
				memcpy(buf, p->rep, PAYLOAD);
			memcpy(p->req, buf, PAYLOAD);
		} else {
			memcpy(buf, p->req, PAYLOAD);
			memcpy(p->rep, buf, PAYLOAD);
		}
		atomic_store_explicit(&p->turn, 1 - mine, memory_order_relaxed);
		pthread_cond_signal(&p->cond);
		pthread_mutex_unlock(&p->mtx);
	}
	if (role == 0) {
		/* Wait for the last reply, so that n full round trips are timed. */
		pthread_mutex_lock(&p->mtx);
		while (atomic_load_explicit(&p->turn, memory_order_relaxed) != 0)
			pthread_cond_wait(&p->cond, &p->mtx);
		memcpy(buf, p->rep, PAYLOAD);
		pthread_mutex_unlock(&p->mtx);
	}
	return now_us() - t0;
}

/* ---- mach_msg round trip ------------------------------------------------------------- */

struct rpc_msg {
	mach_msg_header_t h;
	char data[PAYLOAD];
};

#define RPC_ID 4000
#define RPC_QUIT 4001

enum rpc_style { RPC_SPLIT, RPC_COMBINED, RPC_SERVER };

struct rpc {
	enum rpc_style style;
	mach_port_t service, reply;
};

static enum rpc_style next_rpc_style;

static void *
rpc_setup(unsigned depth)
{
	struct rpc *r = calloc(1, sizeof(*r));
	kern_return_t kr;

	(void)depth;
	if (r == NULL)
		exit(1);
	r->style = next_rpc_style;
	if ((kr = mach_port_allocate(mach_task_self(), MACH_PORT_RIGHT_RECEIVE, &r->service)) != 0)
		die("mach_port_allocate", kr);
	if ((kr = mach_port_insert_right(mach_task_self(), r->service, r->service,
	    MACH_MSG_TYPE_MAKE_SEND)) != 0)
		die("mach_port_insert_right", kr);
	if ((kr = mach_port_allocate(mach_task_self(), MACH_PORT_RIGHT_RECEIVE, &r->reply)) != 0)
		die("mach_port_allocate", kr);
	return r;
}

static void
rpc_teardown(void *ctx)
{
	struct rpc *r = ctx;
	char why[256];

	if (r->style != RPC_SERVER)
		(void)mach_port_destroy(mach_task_self(), r->service);
	(void)mach_port_destroy(mach_task_self(), r->reply);
	free(r);
	if (mvm_ipc_quiescent(why, sizeof(why)) != KERN_SUCCESS) {
		fprintf(stderr, "bench_ipc: leak after a run: %s\n", why);
		exit(1);
	}
}

static boolean_t
rpc_demux(mach_msg_header_t *in, mach_msg_header_t *out)
{
	struct rpc_msg *req = (struct rpc_msg *)in;
	struct rpc_msg *rep = (struct rpc_msg *)out;

	if (in->msgh_id != RPC_ID)
		return FALSE;
	/* A reply with a 40-byte body, like the other styles: the MIG header's RetCode
	 * slot lies inside `data`, so set it after the copy. */
	memcpy(rep->data, req->data, PAYLOAD);
	((mig_reply_header_t *)out)->RetCode = KERN_SUCCESS;
	out->msgh_size = sizeof(*rep);
	return TRUE;
}

static void
rpc_server(struct rpc *r)
{
	struct rpc_msg m;
	mach_msg_return_t mr;

	if (r->style == RPC_SERVER) {
		mr = mach_msg_server(rpc_demux, sizeof(m), r->service);
		if (mr != MACH_RCV_PORT_DIED && mr != MACH_RCV_INVALID_NAME)
			die("mach_msg_server", mr);
		return;
	}
	mr = mach_msg(&m.h, MACH_RCV_MSG, 0, sizeof(m), r->service, 0, MACH_PORT_NULL);
	for (;;) {
		if (mr != MACH_MSG_SUCCESS)
			die("server receive", mr);
		if (m.h.msgh_id == RPC_QUIT)
			return;
		/* Answer through the send-once right the request carried. */
		m.h.msgh_bits = MACH_MSGH_BITS(MACH_MSG_TYPE_MOVE_SEND_ONCE, 0);
		m.h.msgh_local_port = MACH_PORT_NULL;
		m.h.msgh_id = RPC_ID + 100;
		if (r->style == RPC_COMBINED) {
			mr = mach_msg(&m.h, MACH_SEND_MSG | MACH_RCV_MSG, sizeof(m), sizeof(m),
			    r->service, 0, MACH_PORT_NULL);
		} else {
			mr = mach_msg(&m.h, MACH_SEND_MSG, sizeof(m), 0, MACH_PORT_NULL, 0,
			    MACH_PORT_NULL);
			if (mr != MACH_MSG_SUCCESS)
				die("server send", mr);
			mr = mach_msg(&m.h, MACH_RCV_MSG, 0, sizeof(m), r->service, 0,
			    MACH_PORT_NULL);
		}
	}
}

static double
rpc_body(void *ctx, int role, unsigned n)
{
	struct rpc *r = ctx;
	struct rpc_msg m;
	mach_msg_return_t mr;
	double t0, t;

	if (role == 1) {
		rpc_server(r);
		return 0;
	}
	memset(m.data, 1, sizeof(m.data));
	t0 = now_us();
	for (unsigned i = 0; i < n; i++) {
		m.h.msgh_bits = MACH_MSGH_BITS(MACH_MSG_TYPE_COPY_SEND, MACH_MSG_TYPE_MAKE_SEND_ONCE);
		m.h.msgh_size = 0;
		m.h.msgh_remote_port = r->service;
		m.h.msgh_local_port = r->reply;
		m.h.msgh_id = RPC_ID;
		mr = mach_msg(&m.h, MACH_SEND_MSG | MACH_RCV_MSG, sizeof(m), sizeof(m), r->reply, 0,
		    MACH_PORT_NULL);
		if (mr != MACH_MSG_SUCCESS)
			die("client rpc", mr);
	}
	t = now_us() - t0;
	if (r->style == RPC_SERVER) {
		/* mach_msg_server returns once its port is destroyed. */
		if ((mr = mach_port_destroy(mach_task_self(), r->service)) != KERN_SUCCESS)
			die("mach_port_destroy", mr);
	} else {
		m.h.msgh_bits = MACH_MSGH_BITS(MACH_MSG_TYPE_COPY_SEND, 0);
		m.h.msgh_remote_port = r->service;
		m.h.msgh_local_port = MACH_PORT_NULL;
		m.h.msgh_id = RPC_QUIT;
		if ((mr = mach_msg(&m.h, MACH_SEND_MSG, sizeof(m), 0, MACH_PORT_NULL, 0,
		    MACH_PORT_NULL)) != MACH_MSG_SUCCESS)
			die("client quit", mr);
	}
	return t;
}

/* ---- throughput: condvar ring --------------------------------------------------------- */

struct ring {
	pthread_mutex_t mtx;
	pthread_cond_t not_full, not_empty;
	unsigned depth, head, count;
	uint64_t slot[MACH_PORT_QLIMIT_MAX][4];    /* 32 bytes, like the messages */
};

static void *
ring_setup(unsigned depth)
{
	struct ring *q = calloc(1, sizeof(*q));

	if (q == NULL)
		exit(1);
	pthread_mutex_init(&q->mtx, NULL);
	pthread_cond_init(&q->not_full, NULL);
	pthread_cond_init(&q->not_empty, NULL);
	q->depth = depth;
	return q;
}

static void
ring_teardown(void *ctx)
{
	struct ring *q = ctx;

	pthread_mutex_destroy(&q->mtx);
	pthread_cond_destroy(&q->not_full);
	pthread_cond_destroy(&q->not_empty);
	free(q);
}

static double
ring_body(void *ctx, int role, unsigned n)
{
	struct ring *q = ctx;
	uint64_t item[4] = { 0, 0, 0, 0 }, sum = 0;
	double t0 = now_us();

	for (unsigned i = 0; i < n; i++) {
		pthread_mutex_lock(&q->mtx);
		if (role == 0) {
			while (q->count == q->depth)
				pthread_cond_wait(&q->not_full, &q->mtx);
			item[0] = i;
			memcpy(q->slot[(q->head + q->count) % q->depth], item, sizeof(item));
			q->count++;
			pthread_cond_signal(&q->not_empty);
		} else {
			while (q->count == 0)
				pthread_cond_wait(&q->not_empty, &q->mtx);
			memcpy(item, q->slot[q->head], sizeof(item));
			sum += item[0];
			q->head = (q->head + 1) % q->depth;
			q->count--;
			pthread_cond_signal(&q->not_full);
		}
		pthread_mutex_unlock(&q->mtx);
	}
	if (role == 0) {
		/* Time until the receiver has taken everything. */
		pthread_mutex_lock(&q->mtx);
		while (q->count != 0)
			pthread_cond_wait(&q->not_full, &q->mtx);
		pthread_mutex_unlock(&q->mtx);
	}
	(void)sum;
	return now_us() - t0;
}

/* ---- throughput: mach_msg ----------------------------------------------------------- */

struct oneway_msg {
	mach_msg_header_t h;
	uint64_t seq;
};

struct oneway {
	mach_port_t port;
	mach_port_t done;           /* the receiver says "all taken" here */
};

static void *
oneway_setup(unsigned depth)
{
	struct oneway *o = calloc(1, sizeof(*o));
	kern_return_t kr;

	if (o == NULL)
		exit(1);
	if ((kr = mach_port_allocate(mach_task_self(), MACH_PORT_RIGHT_RECEIVE, &o->port)) != 0 ||
	    (kr = mach_port_insert_right(mach_task_self(), o->port, o->port,
	    MACH_MSG_TYPE_MAKE_SEND)) != 0 ||
	    (kr = mach_port_set_qlimit(mach_task_self(), o->port, depth)) != 0 ||
	    (kr = mach_port_allocate(mach_task_self(), MACH_PORT_RIGHT_RECEIVE, &o->done)) != 0)
		die("oneway setup", kr);
	return o;
}

static void
oneway_teardown(void *ctx)
{
	struct oneway *o = ctx;
	char why[256];

	(void)mach_port_destroy(mach_task_self(), o->port);
	(void)mach_port_destroy(mach_task_self(), o->done);
	free(o);
	if (mvm_ipc_quiescent(why, sizeof(why)) != KERN_SUCCESS) {
		fprintf(stderr, "bench_ipc: leak after a run: %s\n", why);
		exit(1);
	}
}

static double
oneway_body(void *ctx, int role, unsigned n)
{
	struct oneway *o = ctx;
	struct oneway_msg m;
	mach_msg_return_t mr;
	double t0 = now_us();

	if (role == 0) {
		for (unsigned i = 0; i < n; i++) {
			m.h.msgh_bits = MACH_MSGH_BITS(MACH_MSG_TYPE_COPY_SEND, 0);
			m.h.msgh_remote_port = o->port;
			m.h.msgh_local_port = MACH_PORT_NULL;
			m.h.msgh_id = 1;
			m.seq = i;
			if ((mr = mach_msg(&m.h, MACH_SEND_MSG, sizeof(m), 0, MACH_PORT_NULL, 0,
			    MACH_PORT_NULL)) != MACH_MSG_SUCCESS)
				die("oneway send", mr);
		}
		/* Time until the receiver has taken everything. */
		if ((mr = mach_msg(&m.h, MACH_RCV_MSG, 0, sizeof(m), o->done, 0, MACH_PORT_NULL)) !=
		    MACH_MSG_SUCCESS)
			die("oneway done", mr);
		return now_us() - t0;
	}
	for (unsigned i = 0; i < n; i++) {
		if ((mr = mach_msg(&m.h, MACH_RCV_MSG, 0, sizeof(m), o->port, 0, MACH_PORT_NULL)) !=
		    MACH_MSG_SUCCESS)
			die("oneway receive", mr);
		if (m.seq != i) {
			fprintf(stderr, "bench_ipc: message %llu arrived as %u\n",
			    (unsigned long long)m.seq, i);
			exit(1);
		}
	}
	m.h.msgh_bits = MACH_MSGH_BITS(MACH_MSG_TYPE_MAKE_SEND_ONCE, 0);
	m.h.msgh_remote_port = o->done;
	m.h.msgh_local_port = MACH_PORT_NULL;
	if ((mr = mach_msg(&m.h, MACH_SEND_MSG, sizeof(m), 0, MACH_PORT_NULL, 0, MACH_PORT_NULL)) !=
	    MACH_MSG_SUCCESS)
		die("oneway done send", mr);
	return 0;
}

/* ---- the report ------------------------------------------------------------------------ */

static const struct bench b_futex = { "futex ping-pong", pingpong_setup, futex_body,
	pingpong_teardown };
static const struct bench b_condvar = { "condvar ping-pong", pingpong_setup, condvar_body,
	pingpong_teardown };
static const struct bench b_rpc = { "mach_msg rpc", rpc_setup, rpc_body, rpc_teardown };
static const struct bench b_ring = { "condvar ring", ring_setup, ring_body, ring_teardown };
static const struct bench b_oneway = { "mach_msg one-way", oneway_setup, oneway_body,
	oneway_teardown };

static void
round_trips(const struct placement *pl, double worst[2])
{
	static const struct {
		const char *name;
		enum rpc_style style;
	} styles[] = {
		{ "mach_msg rpc (rcv; send)", RPC_SPLIT },
		{ "mach_msg rpc (send|rcv)", RPC_COMBINED },
		{ "mach_msg_server", RPC_SERVER },
	};
	struct result f = measure(&b_futex, pl, 0, opt_iters);
	struct result c = measure(&b_condvar, pl, 0, opt_iters);

	printf("%-10s %-28s %9.2f %9.2f\n", pl->name, b_futex.name, f.median, f.min);
	printf("%-10s %-28s %9.2f %9.2f\n", pl->name, b_condvar.name, c.median, c.min);
	for (size_t i = 0; i < sizeof(styles) / sizeof(styles[0]); i++) {
		struct result m;

		next_rpc_style = styles[i].style;
		m = measure(&b_rpc, pl, 0, opt_iters);
		printf("%-10s %-28s %9.2f %9.2f %8.2fx %8.2fx\n", pl->name, styles[i].name, m.median,
		    m.min, m.median / f.median, m.median / c.median);
		if (styles[i].style == RPC_SPLIT) {
			worst[0] = m.median / f.median;
			worst[1] = m.median / c.median;
		}
	}
	fflush(stdout);
}

static void
throughput(const struct placement *pl, unsigned depth)
{
	unsigned n = opt_iters * 10;
	struct result q = measure(&b_ring, pl, depth, n);
	struct result m = measure(&b_oneway, pl, depth, n);

	printf("%-10s %-20s %5u %12.0f %12.0f\n", pl->name, b_ring.name, depth, 1e6 / q.median,
	    1e6 / q.min);
	printf("%-10s %-20s %5u %12.0f %12.0f %9.2fx\n", pl->name, b_oneway.name, depth,
	    1e6 / m.median, 1e6 / m.min, m.median / q.median);
	fflush(stdout);
}

static void
usage(void)
{
	fprintf(stderr, "usage: bench_ipc [--iters N] [--reps R] [--quick] [--only rt|tput] "
	    "[--placement same|cross]\n");
	exit(2);
}

int
main(int argc, char **argv)
{
	bool iters_set = false, reps_set = false;
	size_t npl = sizeof(placements) / sizeof(placements[0]);
	double goal[2][2] = { { 0, 0 }, { 0, 0 } };
	bool ran[2] = { false, false };

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--quick") == 0) {
			opt_quick = true;
		} else if (strcmp(argv[i], "--iters") == 0 && i + 1 < argc) {
			opt_iters = (unsigned)strtoul(argv[++i], NULL, 10);
			iters_set = true;
		} else if (strcmp(argv[i], "--reps") == 0 && i + 1 < argc) {
			opt_reps = (unsigned)strtoul(argv[++i], NULL, 10);
			reps_set = true;
		} else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc) {
			opt_only = argv[++i];
		} else if (strcmp(argv[i], "--placement") == 0 && i + 1 < argc) {
			opt_placement = argv[++i];
		} else {
			usage();
		}
	}
	if ((opt_only != NULL && strcmp(opt_only, "rt") != 0 && strcmp(opt_only, "tput") != 0) ||
	    (opt_placement != NULL && strcmp(opt_placement, "same") != 0 &&
	    strcmp(opt_placement, "cross") != 0))
		usage();
	if (opt_quick) {
		if (!iters_set)
			opt_iters = 2000;
		if (!reps_set)
			opt_reps = 3;
	}
	if (opt_iters == 0 || opt_reps == 0 || opt_reps > MAX_REPS)
		usage();

	printf("bench_ipc: %u round trips x %u repetitions (median, best); throughput: %u "
	    "messages\n", opt_iters, opt_reps, opt_iters * 10);
	printf("ratios: ours/baseline of the medians, same placement; above 1 = slower\n");
	print_load("at start");
	printf("\n");
	for (size_t p = 0; p < npl; p++) {
		if (opt_placement != NULL && strncmp(placements[p].name, opt_placement,
		    strlen(opt_placement)) != 0)
			continue;
		if (!cpu_usable(placements[p].cpu[0]) || !cpu_usable(placements[p].cpu[1])) {
			printf("%s: skipped: CPU %d or %d not available\n", placements[p].name,
			    placements[p].cpu[0], placements[p].cpu[1]);
			continue;
		}
		ran[p] = true;
	}
	if (opt_only == NULL || strcmp(opt_only, "rt") == 0) {
		printf("round trip, 64-byte request + 64-byte reply (us per round trip)\n");
		printf("%-10s %-28s %9s %9s %9s %9s\n", "placement", "method", "median", "min",
		    "/futex", "/condvar");
		for (size_t p = 0; p < npl; p++)
			if (ran[p])
				round_trips(&placements[p], goal[p]);
	}
	if (opt_only == NULL || strcmp(opt_only, "tput") == 0) {
		printf("\none-way throughput, 32-byte messages (messages per second)\n");
		printf("%-10s %-20s %5s %12s %12s %10s\n", "placement", "method", "depth", "median",
		    "best", "time/ring");
		for (size_t p = 0; p < npl; p++) {
			if (!ran[p])
				continue;
			throughput(&placements[p], MACH_PORT_QLIMIT_DEFAULT);
			throughput(&placements[p], MACH_PORT_QLIMIT_MAX);
		}
	}
	printf("\n");
	print_load("at end");
	if (opt_only != NULL && strcmp(opt_only, "rt") != 0)
		return 0;
	printf("\ngoal: mach_msg round trip (rcv; send) at most 1.5x the futex/condvar baseline\n");
	for (size_t p = 0; p < npl; p++)
		if (ran[p])
			printf("  %-10s %.2fx futex, %.2fx condvar: %s\n", placements[p].name,
			    goal[p][0], goal[p][1],
			    goal[p][0] <= 1.5 || goal[p][1] <= 1.5 ? "met" : "NOT met");
	return 0;
}
