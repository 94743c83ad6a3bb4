/*
 * tests/fuzz/mo_fuzz.h: what the memory object fuzz targets share. Each target takes the
 * input as a message already received (so it must never destroy it: the names and
 * addresses in it are arbitrary), runs a demultiplexer on it and checks MIG's
 * conventions and the agreement of the demultiplexer with the trace decoder.
 *
 * Header only (static functions), included by each fuzz_mo_*.c; not a fuzz target itself.
 */
#ifndef MVM_MO_FUZZ_H
#define MVM_MO_FUZZ_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mach/mach.h>
#include <mach/memory_object_server.h>
#include <mach/memory_object_default_server.h>
#include <machvm/memory_object.h>
#include <machvm/trace.h>

#define MO_FUZZ_MAX 2048
#define MO_FUZZ_UNUSED __attribute__((unused))

union mo_fuzz_buf {
	mach_msg_header_t h;
	mig_reply_header_t r;
	uint8_t b[MO_FUZZ_MAX];
};

/* Set by the routines and ops of a target when the demultiplexer called one. */
static int mo_fuzz_called;

static MO_FUZZ_UNUSED void
mo_fuzz_fail(const char *what)
{
	fprintf(stderr, "fuzz: %s\n", what);
	abort();
}

/*
 * Copy the input into an aligned buffer as a received message: at least a header
 * (zero-filled), with msgh_size the input's length as mach_msg would report it.
 */
static MO_FUZZ_UNUSED size_t
mo_fuzz_load(union mo_fuzz_buf *in, const uint8_t *data, size_t size)
{
	if (size > sizeof(in->b))
		size = sizeof(in->b);
	memset(in, 0, sizeof(*in));
	memcpy(in->b, data, size);
	in->h.msgh_size = (mach_msg_size_t)size;
	return size;
}

/*
 * Run a demultiplexer and check its answer: the MIG reply header, FALSE only with
 * MIG_BAD_ID and no routine called, a reply no larger than max_reply, and the decoder's
 * agreement on what is well formed when the message is in the received view. (The
 * routines of these targets never answer MIG_BAD_ARGUMENTS themselves.)
 */
static MO_FUZZ_UNUSED void
mo_fuzz_check(union mo_fuzz_buf *in, size_t size, mach_msg_size_t max_reply,
    boolean_t (*run)(mach_msg_header_t *, mach_msg_header_t *))
{
	static union mo_fuzz_buf out, copy;
	char line[256];
	kern_return_t dec, rc;
	boolean_t handled, valid;
	mach_msg_bits_t local = MACH_MSGH_BITS_LOCAL(in->h.msgh_bits);

	copy = *in;
	memset(&out, 0x5a, sizeof(out));
	mo_fuzz_called = 0;
	handled = run(&in->h, &out.h);
	rc = out.r.RetCode;
	if (memcmp(&copy, in, sizeof(copy)) != 0)
		mo_fuzz_fail("the demultiplexer changed the request");
	if (out.h.msgh_id != (mach_msg_id_t)((uint32_t)in->h.msgh_id + 100u) ||
	    out.h.msgh_remote_port != in->h.msgh_remote_port ||
	    out.h.msgh_local_port != MACH_PORT_NULL ||
	    MACH_MSGH_BITS_REMOTE(out.h.msgh_bits) != MACH_MSGH_BITS_REMOTE(in->h.msgh_bits) ||
	    out.h.msgh_size < sizeof(mig_reply_header_t) || out.h.msgh_size > max_reply ||
	    out.r.RetCodeType.msgt_name != MACH_MSG_TYPE_INTEGER_32)
		mo_fuzz_fail("bad reply header");
	if (!handled && (rc != MIG_BAD_ID || mo_fuzz_called))
		mo_fuzz_fail("FALSE without MIG_BAD_ID, or after calling a routine");
	valid = handled && rc != MIG_BAD_ARGUMENTS;
	if (mo_fuzz_called && !valid)
		mo_fuzz_fail("a routine ran on a malformed message");
	dec = mvm_mo_decode_bytes(in->b, size, line, sizeof(line));
	if (memchr(line, '\0', sizeof(line)) == NULL)
		mo_fuzz_fail("the decoder's line is not terminated");
	if (handled && (local == MACH_MSG_TYPE_PORT_SEND || local == MACH_MSG_TYPE_PORT_SEND_ONCE) &&
	    (dec == KERN_SUCCESS) != valid)
		mo_fuzz_fail("the decoder and the demultiplexer disagree");
}

#endif /* MVM_MO_FUZZ_H */
