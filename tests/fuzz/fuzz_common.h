/*
 * tests/fuzz/fuzz_common.h: what the IPC fuzz targets share: building a small name space
 * with every kind of right at the start of a run, snapshots of the name space (a failed
 * send must change nothing), and tearing everything down at the end of a run (receive and
 * destroy every queued message, destroy every name) followed by the quiescence check,
 * which aborts so that libFuzzer reports any leak as a crash.
 *
 * Header only (static functions), included by each fuzz_*.c; not a fuzz target itself.
 */
#ifndef MVM_FUZZ_COMMON_H
#define MVM_FUZZ_COMMON_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mach/mach.h>
#include <machvm/ipc.h>

#include "ipc/ipc.h"

#define FUZZ_UNUSED __attribute__((unused))

static FUZZ_UNUSED void
fuzz_die(const char *what, kern_return_t kr)
{
	fprintf(stderr, "fuzz: %s: %s (0x%x)\n", what, mvm_errname(kr), (unsigned)kr);
	abort();
}

#define FUZZ_OK(call) \
	do { \
		kern_return_t kr_ = (call); \
		if (kr_ != KERN_SUCCESS) \
			fuzz_die(#call, kr_); \
	} while (0)

/* MVM_FUZZ_VERBOSE=1 in the environment: print what each run did (for the seed corpus). */
static FUZZ_UNUSED bool
fuzz_verbose(void)
{
	static int v = -1;

	if (v < 0)
		v = getenv("MVM_FUZZ_VERBOSE") != NULL;
	return v != 0;
}

/* ---- the per-run name space ------------------------------------------------------------ */

/* Indices into fuzz_space.names; the table the input's small port names map through. */
enum {
	FN_NULL,        /* MACH_PORT_NULL */
	FN_DEAD,        /* MACH_PORT_DEAD */
	FN_TASK,        /* mach_task_self(): a reserved name, never an entry */
	FN_R0,          /* receive + send (2 urefs) */
	FN_R1,          /* receive only */
	FN_R2,          /* receive + send, member of FN_SET */
	FN_SET,         /* port set */
	FN_SO1,         /* send-once right to R1 */
	FN_SO0,         /* send-once right to R0 */
	FN_DEADNAME,    /* a dead name (1 uref) */
	FN_SONLY,       /* send right only: its receive right is in a message queued on R1 */
	FN_STALE,       /* a name that was allocated and destroyed */
	FN_COUNT
};

struct fuzz_space {
	mach_port_t names[FN_COUNT];
};

static FUZZ_UNUSED void
fuzz_space_init(struct fuzz_space *fs)
{
	mach_port_t *n = fs->names;
	mach_msg_type_name_t t;
	struct {
		mach_msg_header_t h;
		mach_msg_type_t rt;
		mach_port_t r;
	} m;

	memset(fs, 0, sizeof(*fs));
	n[FN_NULL] = MACH_PORT_NULL;
	n[FN_DEAD] = MACH_PORT_DEAD;
	n[FN_TASK] = mach_task_self();
	FUZZ_OK(mach_port_allocate(mach_task_self(), MACH_PORT_RIGHT_RECEIVE, &n[FN_R0]));
	FUZZ_OK(mach_port_insert_right(mach_task_self(), n[FN_R0], n[FN_R0], MACH_MSG_TYPE_MAKE_SEND));
	FUZZ_OK(mach_port_mod_refs(mach_task_self(), n[FN_R0], MACH_PORT_RIGHT_SEND, 1));
	FUZZ_OK(mach_port_allocate(mach_task_self(), MACH_PORT_RIGHT_RECEIVE, &n[FN_R1]));
	FUZZ_OK(mach_port_allocate(mach_task_self(), MACH_PORT_RIGHT_RECEIVE, &n[FN_R2]));
	FUZZ_OK(mach_port_insert_right(mach_task_self(), n[FN_R2], n[FN_R2], MACH_MSG_TYPE_MAKE_SEND));
	FUZZ_OK(mach_port_allocate(mach_task_self(), MACH_PORT_RIGHT_PORT_SET, &n[FN_SET]));
	FUZZ_OK(mach_port_move_member(mach_task_self(), n[FN_R2], n[FN_SET]));
	FUZZ_OK(mach_port_extract_right(mach_task_self(), n[FN_R1], MACH_MSG_TYPE_MAKE_SEND_ONCE,
	    &n[FN_SO1], &t));
	FUZZ_OK(mach_port_extract_right(mach_task_self(), n[FN_R0], MACH_MSG_TYPE_MAKE_SEND_ONCE,
	    &n[FN_SO0], &t));
	FUZZ_OK(mach_port_allocate(mach_task_self(), MACH_PORT_RIGHT_RECEIVE, &n[FN_DEADNAME]));
	FUZZ_OK(mach_port_insert_right(mach_task_self(), n[FN_DEADNAME], n[FN_DEADNAME],
	    MACH_MSG_TYPE_MAKE_SEND));
	FUZZ_OK(mach_port_mod_refs(mach_task_self(), n[FN_DEADNAME], MACH_PORT_RIGHT_RECEIVE, -1));

	/* A send-only name: move its receive right into a message queued on R1. */
	FUZZ_OK(mach_port_allocate(mach_task_self(), MACH_PORT_RIGHT_RECEIVE, &n[FN_SONLY]));
	FUZZ_OK(mach_port_insert_right(mach_task_self(), n[FN_SONLY], n[FN_SONLY],
	    MACH_MSG_TYPE_MAKE_SEND));
	memset(&m, 0, sizeof(m));
	m.h.msgh_bits = MACH_MSGH_BITS(MACH_MSG_TYPE_MAKE_SEND_ONCE, 0) | MACH_MSGH_BITS_COMPLEX;
	m.h.msgh_remote_port = n[FN_R1];
	m.h.msgh_id = 4242;
	m.rt = (mach_msg_type_t){ .msgt_name = MACH_MSG_TYPE_MOVE_RECEIVE, .msgt_size = 32,
	    .msgt_number = 1, .msgt_inline = 1 };
	m.r = n[FN_SONLY];
	FUZZ_OK(mach_msg(&m.h, MACH_SEND_MSG | MACH_SEND_TIMEOUT, sizeof(m), 0, MACH_PORT_NULL, 0,
	    MACH_PORT_NULL));

	FUZZ_OK(mach_port_allocate(mach_task_self(), MACH_PORT_RIGHT_RECEIVE, &n[FN_STALE]));
	FUZZ_OK(mach_port_destroy(mach_task_self(), n[FN_STALE]));
}

/* Map a name from the input: small values pick a name of the table, others stay raw. */
static FUZZ_UNUSED mach_port_t
fuzz_map_name(const struct fuzz_space *fs, mach_port_t raw)
{
	if (raw < 0x100)
		return fs->names[raw % FN_COUNT];
	return raw;
}

/* ---- snapshots: a failed send must leave every right as it was ------------------------ */

#define FUZZ_SNAP_MAX 64

struct fuzz_snap {
	uint32_t n;
	mach_port_t name[FUZZ_SNAP_MAX];
	mach_port_type_t type[FUZZ_SNAP_MAX];
	mach_port_urefs_t send[FUZZ_SNAP_MAX], so[FUZZ_SNAP_MAX], dead[FUZZ_SNAP_MAX];
	mach_port_msgcount_t msgcount[FUZZ_SNAP_MAX];
	bool overflow;
	uint64_t kmsgs, vm_bytes;
};

static FUZZ_UNUSED void
fuzz_snapshot(struct fuzz_snap *s)
{
	mach_port_array_t names;
	mach_port_type_array_t types;
	mach_msg_type_number_t nn, nt;
	struct mvm_ipc_stats st;

	memset(s, 0, sizeof(*s));
	FUZZ_OK(mach_port_names(mach_task_self(), &names, &nn, &types, &nt));
	for (uint32_t i = 0; i < nn; i++) {
		if (i == FUZZ_SNAP_MAX) {
			s->overflow = true;
			break;
		}
		s->name[i] = names[i];
		s->type[i] = types[i];
		(void)mach_port_get_refs(mach_task_self(), names[i], MACH_PORT_RIGHT_SEND, &s->send[i]);
		(void)mach_port_get_refs(mach_task_self(), names[i], MACH_PORT_RIGHT_SEND_ONCE, &s->so[i]);
		(void)mach_port_get_refs(mach_task_self(), names[i], MACH_PORT_RIGHT_DEAD_NAME, &s->dead[i]);
		if (types[i] & MACH_PORT_TYPE_RECEIVE) {
			mach_port_status_t ps;

			if (mach_port_get_receive_status(mach_task_self(), names[i], &ps) == KERN_SUCCESS)
				s->msgcount[i] = ps.mps_msgcount;
		}
		s->n = i + 1;
	}
	FUZZ_OK(vm_deallocate(mach_task_self(), (vm_address_t)names,
	    (vm_size_t)(nn ? nn : 1) * sizeof(*names)));
	FUZZ_OK(vm_deallocate(mach_task_self(), (vm_address_t)types,
	    (vm_size_t)(nt ? nt : 1) * sizeof(*types)));
	mvm_ipc_stats(&st);
	s->kmsgs = st.kmsgs;
	s->vm_bytes = st.vm_bytes;
}

static FUZZ_UNUSED void
fuzz_snapshot_compare(const struct fuzz_snap *a, const struct fuzz_snap *b, kern_return_t mr)
{
	bool same = a->n == b->n && a->overflow == b->overflow && a->kmsgs == b->kmsgs &&
	    a->vm_bytes == b->vm_bytes;

	for (uint32_t i = 0; same && i < a->n; i++)
		same = a->name[i] == b->name[i] && a->type[i] == b->type[i] &&
		    a->send[i] == b->send[i] && a->so[i] == b->so[i] && a->dead[i] == b->dead[i] &&
		    a->msgcount[i] == b->msgcount[i];
	if (!same) {
		fprintf(stderr, "fuzz: the send failed with %s but changed the name space\n",
		    mvm_errname(mr));
		for (uint32_t i = 0; i < a->n || i < b->n; i++)
			fprintf(stderr, "  before 0x%x type 0x%x s%u o%u d%u q%u | after 0x%x type 0x%x "
			    "s%u o%u d%u q%u\n", a->name[i], a->type[i], a->send[i], a->so[i], a->dead[i],
			    a->msgcount[i], b->name[i], b->type[i], b->send[i], b->so[i], b->dead[i],
			    b->msgcount[i]);
		fprintf(stderr, "  kmsgs %llu -> %llu, vm bytes %llu -> %llu\n",
		    (unsigned long long)a->kmsgs, (unsigned long long)b->kmsgs,
		    (unsigned long long)a->vm_bytes, (unsigned long long)b->vm_bytes);
		abort();
	}
}

/* ---- teardown ---------------------------------------------------------------------------- */

/*
 * Receive every queued message of every receive right and port set (once through a buffer
 * too small, with MACH_RCV_LARGE, to exercise that path) and destroy it. Returns the number
 * of messages received.
 */
static FUZZ_UNUSED unsigned
fuzz_drain(void)
{
	mach_port_array_t names;
	mach_port_type_array_t types;
	mach_msg_type_number_t nn, nt;
	unsigned got = 0;

	FUZZ_OK(mach_port_names(mach_task_self(), &names, &nn, &types, &nt));
	for (uint32_t i = 0; i < nn; i++) {
		if (!(types[i] & (MACH_PORT_TYPE_RECEIVE | MACH_PORT_TYPE_PORT_SET)))
			continue;
		for (;;) {
			mach_msg_header_t small;
			mach_msg_header_t *buf;
			mach_msg_return_t mr;
			mach_msg_size_t need;

			memset(&small, 0, sizeof(small));
			mr = mach_msg(&small, MACH_RCV_MSG | MACH_RCV_TIMEOUT | MACH_RCV_LARGE, 0,
			    sizeof(small), names[i], 0, MACH_PORT_NULL);
			if (mr == MACH_RCV_TIMED_OUT || mr == MACH_RCV_IN_SET ||
			    mr == MACH_RCV_INVALID_NAME)
				break;
			if (mr == MACH_MSG_SUCCESS) {
				got++;
				mach_msg_destroy(&small);
				continue;
			}
			if (mr != MACH_RCV_TOO_LARGE)
				fuzz_die("drain: receive", mr);
			need = small.msgh_size;
			if (need < sizeof(small) || need > MVM_MSG_SIZE_MAX)
				fuzz_die("drain: MACH_RCV_TOO_LARGE size", (kern_return_t)need);
			buf = malloc(need);
			if (buf == NULL)
				abort();
			mr = mach_msg(buf, MACH_RCV_MSG | MACH_RCV_TIMEOUT | MACH_RCV_LARGE, 0, need,
			    names[i], 0, MACH_PORT_NULL);
			if (mr != MACH_MSG_SUCCESS)
				fuzz_die("drain: receive after MACH_RCV_TOO_LARGE", mr);
			if (buf->msgh_size != need)
				fuzz_die("drain: size changed", (kern_return_t)buf->msgh_size);
			got++;
			mach_msg_destroy(buf);
			free(buf);
		}
	}
	FUZZ_OK(vm_deallocate(mach_task_self(), (vm_address_t)names,
	    (vm_size_t)(nn ? nn : 1) * sizeof(*names)));
	FUZZ_OK(vm_deallocate(mach_task_self(), (vm_address_t)types,
	    (vm_size_t)(nt ? nt : 1) * sizeof(*types)));
	return got;
}

/* Destroy every name; repeat while names remain (destroying one may create others). */
static FUZZ_UNUSED void
fuzz_destroy_all(void)
{
	for (int round = 0; round < 32; round++) {
		mach_port_array_t names;
		mach_port_type_array_t types;
		mach_msg_type_number_t nn, nt;

		(void)fuzz_drain();
		FUZZ_OK(mach_port_names(mach_task_self(), &names, &nn, &types, &nt));
		for (uint32_t i = 0; i < nn; i++)
			(void)mach_port_destroy(mach_task_self(), names[i]);
		FUZZ_OK(vm_deallocate(mach_task_self(), (vm_address_t)names,
		    (vm_size_t)(nn ? nn : 1) * sizeof(*names)));
		FUZZ_OK(vm_deallocate(mach_task_self(), (vm_address_t)types,
		    (vm_size_t)(nt ? nt : 1) * sizeof(*types)));
		if (nn == 0)
			break;
	}
}

static FUZZ_UNUSED void
fuzz_check_quiescent(void)
{
	char buf[256];

	if (mvm_ipc_quiescent(buf, sizeof(buf)) != KERN_SUCCESS) {
		fprintf(stderr, "fuzz: not quiescent after the run: %s\n", buf);
		abort();
	}
}

#endif /* MVM_FUZZ_COMMON_H */
