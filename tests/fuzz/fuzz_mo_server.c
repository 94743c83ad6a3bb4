/*
 * tests/fuzz/fuzz_mo_server.c: memory_object_server and seqnos_memory_object_server on
 * arbitrary bytes taken as a received message. The routines are libmachvm's weak
 * defaults, so every well-formed message ends in MIG_BAD_ID after full validation.
 */
#include "mo_fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static union mo_fuzz_buf in;

	size = mo_fuzz_load(&in, data, size);
	mo_fuzz_check(&in, size, MVM_MEMORY_OBJECT_MSG_SIZE_MAX, memory_object_server);
	mo_fuzz_check(&in, size, MVM_MEMORY_OBJECT_MSG_SIZE_MAX, seqnos_memory_object_server);
	return 0;
}
