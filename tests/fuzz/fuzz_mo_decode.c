/*
 * tests/fuzz/fuzz_mo_decode.c: the trace decoder on arbitrary bytes, at their own
 * length (whatever msgh_size claims), unaligned, and into output buffers of every small
 * size; the line must always be terminated and never overrun.
 */
#include "mo_fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t raw[MO_FUZZ_MAX + 1];
	static union mo_fuzz_buf in;
	char line[300];
	kern_return_t a, b;
	size_t n = size > MO_FUZZ_MAX ? MO_FUZZ_MAX : size;

	/* The bytes as they are, one byte off alignment, with msgh_size unchanged. */
	memcpy(raw + 1, data, n);
	a = mvm_mo_decode_bytes(raw + 1, n, line, sizeof(line));
	if (memchr(line, '\0', sizeof(line)) == NULL)
		mo_fuzz_fail("unterminated line");
	/* The same into a small buffer: the result must not change, the bytes stay put. */
	for (size_t len = 0; len < 8; len++) {
		memset(line, 'x', sizeof(line));
		b = mvm_mo_decode_bytes(raw + 1, n, line, len);
		if (b != a || line[len] != 'x' || (len > 0 && strlen(line) != len - 1 &&
		    memchr(line, '\0', len) == NULL))
			mo_fuzz_fail("small buffer");
	}
	/* As a received message whose msgh_size is its length. */
	n = mo_fuzz_load(&in, data, size);
	(void)mvm_mo_decode(&in.h, line, sizeof(line));
	if (memchr(line, '\0', sizeof(line)) == NULL)
		mo_fuzz_fail("unterminated line");
	return 0;
}
