/*
 * tests/stress/test_ipc_stress.c: many senders and many receivers on one port, and on a
 * port set, with small queue limits so that senders block; then request/reply traffic
 * carrying port rights and out-of-line data.
 *
 * Oracle. Every message carries (sender id, per-sender counter). Receivers record the
 * sequence number and port of each message in a shadow array indexed by (sender,
 * counter), and mark it in a bitmap, so that after the run the main thread can check:
 *   - every message was delivered exactly once (bitmap, and a duplicate count);
 *   - the sequence numbers of each port are exactly 0..n-1, each handed out once;
 *   - per sender and per port, sequence numbers rise with the counter (FIFO per sender);
 *   - as each receiver saw them, per-port sequence numbers strictly increase.
 * Worker threads never call cmocka (its assertions longjmp); they record the first
 * failure in `fail_text` and the main thread fails the test with it.
 *
 * Scale: MVM_STRESS_MSGS sets the number of messages of each test (default 200000, and
 * 20000 in sanitizer builds). Every blocking receive has a timeout, so a lost message or a
 * missed wake-up fails the test instead of hanging it.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mvm_test.h"

#define NSEND 6
#define NRECV 4
#define NSETPORTS 3
#define STOP_SENDER 0xffffu
#define TIMEOUT_MS 20000u      /* generous: only a lost message or wake-up reaches it */

#ifdef MVM_SANITIZER
#define DEFAULT_MSGS 60000u
#else
#define DEFAULT_MSGS 200000u
#endif

static unsigned
total_msgs(void)
{
	const char *s = getenv("MVM_STRESS_MSGS");
	unsigned long n = s != NULL ? strtoul(s, NULL, 10) : DEFAULT_MSGS;

	if (n < NSEND)
		n = NSEND;
	return (unsigned)n;
}

/* ---- failures from worker threads ----------------------------------------------------- */

static pthread_mutex_t fail_lock = PTHREAD_MUTEX_INITIALIZER;
static char fail_text[512];
static atomic_uint fail_count;

static void __attribute__((format(printf, 1, 2)))
record_failure(const char *fmt, ...)
{
	va_list ap;

	if (atomic_fetch_add(&fail_count, 1) != 0)
		return;
	pthread_mutex_lock(&fail_lock);
	va_start(ap, fmt);
	vsnprintf(fail_text, sizeof(fail_text), fmt, ap);
	va_end(ap);
	pthread_mutex_unlock(&fail_lock);
}

#define CHECK(cond, ...) \
	do { \
		if (!(cond)) \
			record_failure(__VA_ARGS__); \
	} while (0)

static void
reset_failures(void)
{
	atomic_store(&fail_count, 0);
	fail_text[0] = '\0';
}

static void
assert_no_failures(void)
{
	if (atomic_load(&fail_count) != 0)
		fail_msg("%u failure(s); first: %s", atomic_load(&fail_count), fail_text);
}

static pthread_t
spawn(void *(*fn)(void *), void *arg)
{
	pthread_t t;

	assert_int_equal(pthread_create(&t, NULL, fn, arg), 0);
	return t;
}

/* ---- part 1: plain messages through one port or a port set ------------------------- */

struct small_msg {
	mach_msg_header_t h;
	uint32_t sender;
	uint32_t counter;
};

struct flood {
	unsigned per_sender;            /* messages each sender sends */
	int nports;                     /* ports the senders spread over */
	mach_port_t ports[NSETPORTS];
	mach_port_t rcv_name;           /* the port, or the set */
	/* Shadow state, indexed by sender * per_sender + counter. */
	uint32_t *seqno_of;
	uint8_t *port_of;
	_Atomic uint64_t *delivered;    /* bitmap */
	atomic_uint duplicates;
	atomic_uint received;
	atomic_uint stops;
};

struct flood_arg {
	struct flood *f;
	unsigned id;
};

static int
port_index(const struct flood *f, mach_port_t name)
{
	for (int i = 0; i < f->nports; i++)
		if (f->ports[i] == name)
			return i;
	return -1;
}

static void *
flood_sender(void *p)
{
	struct flood_arg *a = p;
	struct flood *f = a->f;

	for (unsigned c = 0; c < f->per_sender && atomic_load(&fail_count) == 0; c++) {
		struct small_msg m;
		mach_msg_return_t mr;

		memset(&m, 0, sizeof(m));
		m.h.msgh_bits = MACH_MSGH_BITS(MACH_MSG_TYPE_COPY_SEND, 0);
		/* Sender s sends counter c to port (s + c) % nports: every port sees every sender. */
		m.h.msgh_remote_port = f->ports[(a->id + c) % (unsigned)f->nports];
		m.h.msgh_id = 1000;
		m.sender = a->id;
		m.counter = c;
		mr = mach_msg(&m.h, MACH_SEND_MSG | MACH_SEND_TIMEOUT, sizeof(m), 0, MACH_PORT_NULL,
		    TIMEOUT_MS, MACH_PORT_NULL);
		CHECK(mr == MACH_MSG_SUCCESS, "sender %u: send %u: %s", a->id, c, mvm_errname(mr));
	}
	return NULL;
}

static void *
flood_receiver(void *p)
{
	struct flood_arg *a = p;
	struct flood *f = a->f;
	uint32_t last_seqno[NSETPORTS];
	bool seen_port[NSETPORTS] = { false };
	int64_t last_counter[NSEND][NSETPORTS];

	for (int s = 0; s < NSEND; s++)
		for (int i = 0; i < NSETPORTS; i++)
			last_counter[s][i] = -1;
	for (;;) {
		struct small_msg m;
		mach_msg_return_t mr;
		int pi;

		memset(&m, 0, sizeof(m));
		mr = mach_msg(&m.h, MACH_RCV_MSG | MACH_RCV_TIMEOUT, 0, sizeof(m), f->rcv_name,
		    TIMEOUT_MS, MACH_PORT_NULL);
		if (mr != MACH_MSG_SUCCESS) {
			record_failure("receiver %u: %s after %u messages", a->id, mvm_errname(mr),
			    atomic_load(&f->received));
			return NULL;
		}
		pi = port_index(f, m.h.msgh_local_port);
		CHECK(pi >= 0, "receiver %u: unknown local port 0x%x", a->id, m.h.msgh_local_port);
		CHECK(m.h.msgh_size == sizeof(m), "receiver %u: size %u", a->id, m.h.msgh_size);
		CHECK(m.h.msgh_bits == MACH_MSGH_BITS(0, MACH_MSG_TYPE_PORT_SEND),
		    "receiver %u: bits 0x%x", a->id, m.h.msgh_bits);
		CHECK(m.h.msgh_remote_port == MACH_PORT_NULL, "receiver %u: remote port", a->id);
		if (pi < 0)
			return NULL;
		if (seen_port[pi])
			CHECK(m.h.msgh_seqno > last_seqno[pi],
			    "receiver %u: port %d: seqno %u after %u", a->id, pi, m.h.msgh_seqno,
			    last_seqno[pi]);
		seen_port[pi] = true;
		last_seqno[pi] = m.h.msgh_seqno;
		if (m.sender == STOP_SENDER) {
			atomic_fetch_add(&f->stops, 1);
			return NULL;
		}
		if (m.sender >= NSEND || m.counter >= f->per_sender) {
			record_failure("receiver %u: bad payload (%u, %u)", a->id, m.sender, m.counter);
			return NULL;
		}
		CHECK((int64_t)m.counter > last_counter[m.sender][pi],
		    "receiver %u: sender %u port %d: counter %u after %lld", a->id, m.sender, pi,
		    m.counter, (long long)last_counter[m.sender][pi]);
		last_counter[m.sender][pi] = m.counter;

		size_t k = (size_t)m.sender * f->per_sender + m.counter;
		uint64_t bit = (uint64_t)1 << (k % 64);

		if (atomic_fetch_or(&f->delivered[k / 64], bit) & bit) {
			atomic_fetch_add(&f->duplicates, 1);
			continue;
		}
		f->seqno_of[k] = m.h.msgh_seqno;
		f->port_of[k] = (uint8_t)pi;
		atomic_fetch_add(&f->received, 1);
	}
}

/* After the run: exactly once, per-port seqnos 0..n-1, per (sender, port) FIFO. */
static void
flood_verify(struct flood *f)
{
	size_t total = (size_t)NSEND * f->per_sender;
	uint32_t per_port[NSETPORTS] = { 0 };
	uint8_t *seen[NSETPORTS];

	assert_int_equal(atomic_load(&f->duplicates), 0);
	assert_int_equal(atomic_load(&f->received), total);
	assert_int_equal(atomic_load(&f->stops), NRECV);
	for (size_t k = 0; k < total; k++) {
		if (!(atomic_load(&f->delivered[k / 64]) & ((uint64_t)1 << (k % 64))))
			fail_msg("message (%zu, %zu) never delivered", k / f->per_sender,
			    k % f->per_sender);
		per_port[f->port_of[k]]++;
	}
	/* The stop messages all went to port 0 and took its last NRECV numbers. */
	per_port[0] += NRECV;
	for (int i = 0; i < f->nports; i++) {
		seen[i] = calloc(per_port[i], 1);
		assert_non_null(seen[i]);
	}
	for (size_t k = 0; k < total; k++) {
		uint32_t s = f->seqno_of[k];
		int pi = f->port_of[k];

		if (s >= per_port[pi] - (pi == 0 ? NRECV : 0))
			fail_msg("port %d: seqno %u out of range (%u data messages)", pi, s,
			    per_port[pi] - (pi == 0 ? NRECV : 0));
		if (seen[pi][s]++)
			fail_msg("port %d: seqno %u handed out twice", pi, s);
	}
	for (int i = 0; i < f->nports; i++)
		free(seen[i]);
	/* FIFO: per sender and port, a later counter got a later seqno. */
	for (unsigned s = 0; s < NSEND; s++) {
		int64_t last[NSETPORTS] = { -1, -1, -1 };

		for (unsigned c = 0; c < f->per_sender; c++) {
			size_t k = (size_t)s * f->per_sender + c;
			int pi = f->port_of[k];

			if ((int64_t)f->seqno_of[k] <= last[pi])
				fail_msg("sender %u port %d: counter %u has seqno %u after %lld", s, pi,
				    c, f->seqno_of[k], (long long)last[pi]);
			last[pi] = f->seqno_of[k];
		}
	}
}

static void
flood_run(int nports, mach_port_msgcount_t qlimit)
{
	struct flood f;
	struct flood_arg sargs[NSEND], rargs[NRECV];
	pthread_t st[NSEND], rt[NRECV];
	size_t total;
	mach_port_t set = MACH_PORT_NULL;

	reset_failures();
	memset(&f, 0, sizeof(f));
	f.per_sender = total_msgs() / NSEND;
	f.nports = nports;
	total = (size_t)NSEND * f.per_sender;
	f.seqno_of = calloc(total, sizeof(*f.seqno_of));
	f.port_of = calloc(total, 1);
	f.delivered = calloc(total / 64 + 1, sizeof(*f.delivered));
	assert_non_null(f.seqno_of);
	assert_non_null(f.port_of);
	assert_non_null(f.delivered);
	for (int i = 0; i < nports; i++) {
		f.ports[i] = mvm_test_port_with_send();
		assert_kr(mach_port_set_qlimit(mach_task_self(), f.ports[i], qlimit), KERN_SUCCESS);
	}
	if (nports > 1) {
		assert_kr(mach_port_allocate(mach_task_self(), MACH_PORT_RIGHT_PORT_SET, &set),
		    KERN_SUCCESS);
		for (int i = 0; i < nports; i++)
			assert_kr(mach_port_move_member(mach_task_self(), f.ports[i], set), KERN_SUCCESS);
		f.rcv_name = set;
	} else {
		f.rcv_name = f.ports[0];
	}

	for (unsigned i = 0; i < NRECV; i++) {
		rargs[i] = (struct flood_arg){ &f, i };
		rt[i] = spawn(flood_receiver, &rargs[i]);
	}
	for (unsigned i = 0; i < NSEND; i++) {
		sargs[i] = (struct flood_arg){ &f, i };
		st[i] = spawn(flood_sender, &sargs[i]);
	}
	for (unsigned i = 0; i < NSEND; i++)
		pthread_join(st[i], NULL);
	/* Every data message is queued now; the stops queue behind them (FIFO, also across
	 * the set's members), so each receiver takes one only after all data is taken. */
	for (unsigned i = 0; i < NRECV; i++) {
		struct small_msg m;

		memset(&m, 0, sizeof(m));
		m.h.msgh_bits = MACH_MSGH_BITS(MACH_MSG_TYPE_COPY_SEND, 0);
		m.h.msgh_remote_port = f.ports[0];
		m.sender = STOP_SENDER;
		assert_kr(mach_msg(&m.h, MACH_SEND_MSG | MACH_SEND_TIMEOUT, sizeof(m), 0,
		    MACH_PORT_NULL, TIMEOUT_MS, MACH_PORT_NULL), MACH_MSG_SUCCESS);
	}
	for (unsigned i = 0; i < NRECV; i++)
		pthread_join(rt[i], NULL);
	assert_no_failures();
	flood_verify(&f);

	for (int i = 0; i < nports; i++) {
		mach_port_status_t st_;

		assert_kr(mach_port_get_receive_status(mach_task_self(), f.ports[i], &st_),
		    KERN_SUCCESS);
		assert_int_equal(st_.mps_msgcount, 0);
		assert_kr(mach_port_destroy(mach_task_self(), f.ports[i]), KERN_SUCCESS);
	}
	if (set != MACH_PORT_NULL)
		assert_kr(mach_port_destroy(mach_task_self(), set), KERN_SUCCESS);
	free(f.seqno_of);
	free(f.port_of);
	free((void *)f.delivered);
}

static void
test_flood_one_port(void **state)
{
	(void)state;
	flood_run(1, 2);
	MVM_TEST_QUIESCENT();
}

static void
test_flood_one_port_qlimit1(void **state)
{
	(void)state;
	flood_run(1, 1);
	MVM_TEST_QUIESCENT();
}

static void
test_flood_port_set(void **state)
{
	(void)state;
	flood_run(NSETPORTS, 2);
	MVM_TEST_QUIESCENT();
}

/* ---- part 2: requests with rights and out-of-line data, answered through send-once ---- */

#define RPC_ID 2000
#define OOL_WORDS_MAX 4095            /* msgt_number is 12 bits: up to 16380 bytes */
#define DROP_EVERY 53                 /* the server drops every 53rd reply right */

struct rpc_req {
	mach_msg_header_t h;
	mach_msg_type_t ids_type;
	uint32_t sender, counter;
	mach_msg_type_t sum_type;
	uint32_t sum, words;
	mach_msg_type_t token_type;
	mach_port_t token;
	mach_msg_type_t data_type;
	void *data;
};

struct rpc_reply {
	mach_msg_header_t h;
	uint32_t counter;
	uint32_t sum;
};

union rpc_buf {
	struct rpc_req req;
	struct rpc_reply rep;
	mach_send_once_notification_t so;
	uint8_t pad[256];
};

struct rpc {
	unsigned per_client;
	mach_port_t service;
	mach_port_t tokens[NSEND];      /* each client's token port (receive + send) */
	atomic_uint served, dropped;
	_Atomic uint64_t *delivered;    /* bitmap over (client, counter) */
	atomic_uint duplicates;
};

struct rpc_arg {
	struct rpc *r;
	unsigned id;
};

static uint32_t
checksum(const uint32_t *w, uint32_t n)
{
	uint32_t h = 2166136261u;

	for (uint32_t i = 0; i < n; i++)
		h = (h ^ w[i]) * 16777619u;
	return h;
}

static uint32_t
mix(uint32_t x)
{
	x ^= x >> 16;
	x *= 0x7feb352d;
	x ^= x >> 15;
	x *= 0x846ca68b;
	x ^= x >> 16;
	return x;
}

static void *
rpc_client(void *p)
{
	struct rpc_arg *a = p;
	struct rpc *r = a->r;
	mach_port_t reply, token = r->tokens[a->id];
	uint32_t *buf;
	kern_return_t kr;

	kr = mach_port_allocate(mach_task_self(), MACH_PORT_RIGHT_RECEIVE, &reply);
	CHECK(kr == KERN_SUCCESS, "client %u: allocate: %s", a->id, mvm_errname(kr));
	if (kr != KERN_SUCCESS)
		return NULL;
	/* One page of slack, so the data can start at any word of its first page. */
	buf = malloc(OOL_WORDS_MAX * 4 + 4096);
	if (buf == NULL) {
		record_failure("client %u: malloc", a->id);
		return NULL;
	}
	for (unsigned c = 0; c < r->per_client && atomic_load(&fail_count) == 0; c++) {
		uint32_t seed = mix(a->id * 0x10001u + c);
		uint32_t words = 1 + seed % OOL_WORDS_MAX;
		bool dealloc = c % 3 == 2;
		uint32_t *data;
		vm_address_t region = 0;
		vm_size_t region_len = 0;
		union rpc_buf b;
		uint32_t sent_sum;
		mach_msg_return_t mr;

		if (dealloc) {
			/* Memory the send deallocates: from vm_allocate, as Mach callers do. */
			region_len = (vm_size_t)words * 4;
			kr = vm_allocate(mach_task_self(), &region, region_len, TRUE);
			CHECK(kr == KERN_SUCCESS, "client %u: vm_allocate: %s", a->id, mvm_errname(kr));
			if (kr != KERN_SUCCESS)
				break;
			data = (uint32_t *)region;
		} else {
			data = buf + (seed >> 20) % 1024; /* any word offset within the first page */
		}
		for (uint32_t i = 0; i < words; i++)
			data[i] = mix(seed + i);

		memset(&b, 0, sizeof(b));
		b.req.h.msgh_bits = MACH_MSGH_BITS(MACH_MSG_TYPE_COPY_SEND,
		    MACH_MSG_TYPE_MAKE_SEND_ONCE) | MACH_MSGH_BITS_COMPLEX;
		b.req.h.msgh_remote_port = r->service;
		b.req.h.msgh_local_port = reply;
		b.req.h.msgh_id = RPC_ID;
		b.req.ids_type = (mach_msg_type_t){ .msgt_name = MACH_MSG_TYPE_INTEGER_32,
		    .msgt_size = 32, .msgt_number = 2, .msgt_inline = 1 };
		b.req.sender = a->id;
		b.req.counter = c;
		b.req.sum_type = b.req.ids_type;
		b.req.sum = sent_sum = checksum(data, words);
		b.req.words = words;
		b.req.token_type = (mach_msg_type_t){ .msgt_name = MACH_MSG_TYPE_COPY_SEND,
		    .msgt_size = 32, .msgt_number = 1, .msgt_inline = 1 };
		b.req.token = token;
		b.req.data_type = (mach_msg_type_t){ .msgt_name = MACH_MSG_TYPE_INTEGER_32,
		    .msgt_size = 32, .msgt_number = words, .msgt_inline = 0,
		    .msgt_deallocate = dealloc };
		b.req.data = data;
		mr = mach_msg(&b.req.h, MACH_SEND_MSG | MACH_SEND_TIMEOUT | MACH_RCV_MSG |
		    MACH_RCV_TIMEOUT, sizeof(b.req), sizeof(b), reply, TIMEOUT_MS, MACH_PORT_NULL);
		if (mr != MACH_MSG_SUCCESS) {
			record_failure("client %u: rpc %u: %s", a->id, c, mvm_errname(mr));
			if (dealloc && mr < MACH_RCV_IN_PROGRESS)
				(void)vm_deallocate(mach_task_self(), region, region_len);
			break;
		}
		CHECK(b.rep.h.msgh_local_port == reply, "client %u: reply on 0x%x", a->id,
		    b.rep.h.msgh_local_port);
		CHECK(b.rep.h.msgh_bits == MACH_MSGH_BITS(0, MACH_MSG_TYPE_PORT_SEND_ONCE),
		    "client %u: reply bits 0x%x", a->id, b.rep.h.msgh_bits);
		if (c % DROP_EVERY == DROP_EVERY - 1) {
			/* The server destroyed the reply right unused: a send-once notification. */
			CHECK(b.so.not_header.msgh_id == MACH_NOTIFY_SEND_ONCE,
			    "client %u: rpc %u: id %d, expected a send-once notification", a->id, c,
			    b.so.not_header.msgh_id);
		} else {
			CHECK(b.rep.h.msgh_id == RPC_ID + 100, "client %u: reply id %d", a->id,
			    b.rep.h.msgh_id);
			CHECK(b.rep.counter == c && b.rep.sum == sent_sum,
			    "client %u: rpc %u: reply (%u, 0x%x), expected 0x%x", a->id, c,
			    b.rep.counter, b.rep.sum, sent_sum);
		}
	}
	/* Every server released its copy of the token before answering. */
	CHECK(mvm_test_refs(token, MACH_PORT_RIGHT_SEND) == 1, "client %u: token has %u send refs",
	    a->id, mvm_test_refs(token, MACH_PORT_RIGHT_SEND));
	kr = mach_port_mod_refs(mach_task_self(), reply, MACH_PORT_RIGHT_RECEIVE, -1);
	CHECK(kr == KERN_SUCCESS, "client %u: destroy reply port: %s", a->id, mvm_errname(kr));
	free(buf);
	return NULL;
}

static void *
rpc_server(void *p)
{
	struct rpc_arg *a = p;
	struct rpc *r = a->r;

	for (;;) {
		union rpc_buf b;
		mach_msg_return_t mr;
		kern_return_t kr;
		uint32_t sum;

		mr = mach_msg(&b.req.h, MACH_RCV_MSG | MACH_RCV_TIMEOUT, 0, sizeof(b), r->service,
		    TIMEOUT_MS, MACH_PORT_NULL);
		if (mr == MACH_RCV_PORT_DIED || mr == MACH_RCV_INVALID_NAME)
			return NULL; /* the main thread destroyed the service port: done */
		if (mr != MACH_MSG_SUCCESS) {
			record_failure("server %u: receive: %s", a->id, mvm_errname(mr));
			return NULL;
		}
		if (b.req.h.msgh_id != RPC_ID || b.req.sender >= NSEND ||
		    b.req.counter >= r->per_client) {
			record_failure("server %u: unexpected message id %d", a->id, b.req.h.msgh_id);
			mach_msg_destroy(&b.req.h);
			continue;
		}
		CHECK(b.req.h.msgh_bits == (MACH_MSGH_BITS(MACH_MSG_TYPE_PORT_SEND_ONCE,
		    MACH_MSG_TYPE_PORT_SEND) | MACH_MSGH_BITS_COMPLEX),
		    "server %u: bits 0x%x", a->id, b.req.h.msgh_bits);
		CHECK(b.req.h.msgh_local_port == r->service, "server %u: local port", a->id);
		CHECK(b.req.token_type.msgt_name == MACH_MSG_TYPE_PORT_SEND, "server %u: token type %u",
		    a->id, b.req.token_type.msgt_name);
		/* One name space: the send right merges into the client's name for the port. */
		CHECK(b.req.token == r->tokens[b.req.sender], "server %u: token 0x%x, expected 0x%x",
		    a->id, b.req.token, r->tokens[b.req.sender]);
		CHECK(b.req.data_type.msgt_number == b.req.words, "server %u: words", a->id);
		sum = checksum(b.req.data, b.req.words);
		CHECK(sum == b.req.sum, "server %u: (%u, %u): checksum 0x%x, sent 0x%x", a->id,
		    b.req.sender, b.req.counter, sum, b.req.sum);

		size_t k = (size_t)b.req.sender * r->per_client + b.req.counter;
		uint64_t bit = (uint64_t)1 << (k % 64);

		if (atomic_fetch_or(&r->delivered[k / 64], bit) & bit)
			atomic_fetch_add(&r->duplicates, 1);
		kr = vm_deallocate(mach_task_self(), (vm_address_t)b.req.data,
		    (vm_size_t)b.req.words * 4);
		CHECK(kr == KERN_SUCCESS, "server %u: vm_deallocate: %s", a->id, mvm_errname(kr));
		kr = mach_port_deallocate(mach_task_self(), b.req.token);
		CHECK(kr == KERN_SUCCESS, "server %u: deallocate token: %s", a->id, mvm_errname(kr));
		if (b.req.counter % DROP_EVERY == DROP_EVERY - 1) {
			kr = mach_port_deallocate(mach_task_self(), b.req.h.msgh_remote_port);
			CHECK(kr == KERN_SUCCESS, "server %u: drop reply: %s", a->id, mvm_errname(kr));
			atomic_fetch_add(&r->dropped, 1);
			atomic_fetch_add(&r->served, 1);
			continue;
		}

		struct rpc_reply rep;

		memset(&rep, 0, sizeof(rep));
		rep.h.msgh_bits = MACH_MSGH_BITS(MACH_MSG_TYPE_MOVE_SEND_ONCE, 0);
		rep.h.msgh_remote_port = b.req.h.msgh_remote_port;
		rep.h.msgh_id = RPC_ID + 100;
		rep.counter = b.req.counter;
		rep.sum = sum;
		mr = mach_msg(&rep.h, MACH_SEND_MSG, sizeof(rep), 0, MACH_PORT_NULL, 0, MACH_PORT_NULL);
		CHECK(mr == MACH_MSG_SUCCESS, "server %u: reply: %s", a->id, mvm_errname(mr));
		atomic_fetch_add(&r->served, 1);
	}
}

static void
test_rpc_rights_and_ool(void **state)
{
	struct rpc r;
	struct rpc_arg cargs[NSEND], sargs[NRECV];
	pthread_t ct[NSEND], st[NRECV];
	size_t total;

	(void)state;
	reset_failures();
	memset(&r, 0, sizeof(r));
	/* Each RPC is two messages plus two out-of-line mappings: a tenth of the flood. */
	r.per_client = total_msgs() / 10 / NSEND;
	if (r.per_client < DROP_EVERY)
		r.per_client = DROP_EVERY;
	total = (size_t)NSEND * r.per_client;
	r.delivered = calloc(total / 64 + 1, sizeof(*r.delivered));
	assert_non_null(r.delivered);
	r.service = mvm_test_port_with_send();
	assert_kr(mach_port_set_qlimit(mach_task_self(), r.service, 2), KERN_SUCCESS);
	for (unsigned i = 0; i < NSEND; i++)
		r.tokens[i] = mvm_test_port_with_send();

	for (unsigned i = 0; i < NRECV; i++) {
		sargs[i] = (struct rpc_arg){ &r, i };
		st[i] = spawn(rpc_server, &sargs[i]);
	}
	for (unsigned i = 0; i < NSEND; i++) {
		cargs[i] = (struct rpc_arg){ &r, i };
		ct[i] = spawn(rpc_client, &cargs[i]);
	}
	for (unsigned i = 0; i < NSEND; i++)
		pthread_join(ct[i], NULL);
	/* Every request was answered; destroying the service port ends the servers. */
	assert_kr(mach_port_destroy(mach_task_self(), r.service), KERN_SUCCESS);
	for (unsigned i = 0; i < NRECV; i++)
		pthread_join(st[i], NULL);
	assert_no_failures();
	assert_int_equal(atomic_load(&r.duplicates), 0);
	assert_int_equal(atomic_load(&r.served), total);
	assert_int_equal(atomic_load(&r.dropped), NSEND * (r.per_client / DROP_EVERY));
	for (size_t k = 0; k < total; k++)
		if (!(atomic_load(&r.delivered[k / 64]) & ((uint64_t)1 << (k % 64))))
			fail_msg("request (%zu, %zu) never served", k / r.per_client, k % r.per_client);
	for (unsigned i = 0; i < NSEND; i++)
		assert_kr(mach_port_destroy(mach_task_self(), r.tokens[i]), KERN_SUCCESS);
	free((void *)r.delivered);
	MVM_TEST_QUIESCENT();
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_flood_one_port),
		cmocka_unit_test(test_flood_one_port_qlimit1),
		cmocka_unit_test(test_flood_port_set),
		cmocka_unit_test(test_rpc_rights_and_ool),
	};

	return cmocka_run_group_tests_name("ipc_stress", tests, NULL, NULL);
}
