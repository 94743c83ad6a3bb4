/*
 * tests/fuzz/fuzz_mo_default_server.c: memory_object_default_server and its seqnos_
 * form on arbitrary bytes taken as a received message (libmachvm's default routines).
 */
#include "mo_fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static union mo_fuzz_buf in;

	size = mo_fuzz_load(&in, data, size);
	mo_fuzz_check(&in, size, MVM_MEMORY_OBJECT_DEFAULT_MSG_SIZE_MAX,
	    memory_object_default_server);
	mo_fuzz_check(&in, size, MVM_MEMORY_OBJECT_DEFAULT_MSG_SIZE_MAX,
	    seqnos_memory_object_default_server);
	return 0;
}
