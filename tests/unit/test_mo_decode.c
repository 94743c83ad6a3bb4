/*
 * tests/unit/test_mo_decode.c: the one-line decoder of <machvm/trace.h> on received and
 * unsent requests, replies, malformed and unknown messages, and small output buffers.
 */
#include <stdio.h>
#include <string.h>

#include <mvm_test.h>
#include <mach/memory_object_control.h>
#include <machvm/memory_object.h>
#include <machvm/trace.h>

union msgbuf {
	mach_msg_header_t h;
	uint8_t b[512];
};

static void
receive(mach_port_t port, union msgbuf *m)
{
	assert_kr(mach_msg(&m->h, MACH_RCV_MSG | MACH_RCV_TIMEOUT, 0, sizeof(*m), port, 1000,
	    MACH_PORT_NULL), MACH_MSG_SUCCESS);
}

static void
expect_line(const mach_msg_header_t *m, kern_return_t kr, const char *want)
{
	char line[512];

	assert_kr(mvm_mo_decode(m, line, sizeof(line)), kr);
	assert_string_equal(line, want);
}

static void
test_requests(void **state)
{
	mach_port_t obj = mvm_test_port_with_send(), ctl, so;
	mach_msg_type_name_t t;
	union msgbuf m;
	char want[512];
	vm_address_t data = 0;

	(void)state;
	assert_kr(mach_port_allocate(mach_task_self(), MACH_PORT_RIGHT_RECEIVE, &ctl), KERN_SUCCESS);
	assert_kr(mvm_mo_send_data_request(obj, ctl, 0x2000, 0x1000, VM_PROT_READ | VM_PROT_WRITE),
	    KERN_SUCCESS);
	receive(obj, &m);
	snprintf(want, sizeof(want), "memory_object_data_request(memory_object=0x%x, "
	    "memory_control=0x%x, offset=0x2000, length=0x1000, desired_access=READ|WRITE) "
	    "seqno=0", obj, ctl);
	expect_line(&m.h, KERN_SUCCESS, want);
	mach_msg_destroy(&m.h);

	assert_kr(mach_port_extract_right(mach_task_self(), obj, MACH_MSG_TYPE_MAKE_SEND_ONCE, &so,
	    &t), KERN_SUCCESS);
	assert_kr(mvm_mo_send_supply_completed(so, MACH_MSG_TYPE_MOVE_SEND_ONCE, ctl, 0,
	    ~(vm_size_t)0, KERN_MEMORY_PRESENT, 0x3000), KERN_SUCCESS);
	receive(obj, &m);
	snprintf(want, sizeof(want), "memory_object_supply_completed(reply_port=0x%x(send-once), "
	    "memory_control=0x%x, offset=0x0, length=0xffffffffffffffff, "
	    "result=KERN_MEMORY_PRESENT, error_offset=0x3000) seqno=1", obj, ctl);
	expect_line(&m.h, KERN_SUCCESS, want);
	mach_msg_destroy(&m.h);

	assert_kr(vm_allocate(mach_task_self(), &data, 8192, TRUE), KERN_SUCCESS);
	assert_kr(mvm_mo_send_data_return(obj, ctl, 0x1000, data, 8192, FALSE, TRUE, 7),
	    KERN_SUCCESS);
	receive(obj, &m);
	snprintf(want, sizeof(want), "memory_object_data_return(memory_object=0x%x, "
	    "memory_control=0x%x, offset=0x1000, data=0x%llx, data_count=8192, dirty=TRUE, "
	    "kernel_copy=7) seqno=2", obj, ctl, (unsigned long long)*(vm_offset_t *)(m.b + 72));
	expect_line(&m.h, KERN_SUCCESS, want);
	mach_msg_destroy(&m.h);
	assert_kr(vm_deallocate(mach_task_self(), data, 8192), KERN_SUCCESS);

	assert_kr(mvm_mo_send_change_completed(obj, MACH_MSG_TYPE_MAKE_SEND, FALSE, 9),
	    KERN_SUCCESS);
	receive(obj, &m);
	snprintf(want, sizeof(want), "memory_object_change_completed(reply_port=0x%x(send), "
	    "may_cache=FALSE, copy_strategy=9) seqno=3", obj);
	expect_line(&m.h, KERN_SUCCESS, want);

	assert_kr(memory_object_lock_request(obj, 0, 4096, MEMORY_OBJECT_RETURN_ALL, TRUE,
	    VM_PROT_NO_CHANGE | 0x40, MACH_PORT_NULL), KERN_SUCCESS);
	receive(obj, &m);
	snprintf(want, sizeof(want), "memory_object_lock_request(memory_control=0x%x, offset=0x0, "
	    "size=0x1000, should_return=RETURN_ALL, should_flush=TRUE, lock_value=NO_CHANGE|0x40, "
	    "reply_to=0x0(send-once)) seqno=4", obj);
	expect_line(&m.h, KERN_SUCCESS, want);

	assert_kr(mach_port_destroy(mach_task_self(), obj), KERN_SUCCESS);
	assert_kr(mach_port_destroy(mach_task_self(), ctl), KERN_SUCCESS);
	MVM_TEST_QUIESCENT();
}

/* A message about to be sent: dispositions and the remote port, no seqno. */
static void
test_unsent_view(void **state)
{
	struct {
		mach_msg_header_t h;
		mach_msg_type_t t1;
		mach_port_t ctl;
		mach_msg_type_t t2;
		mach_port_t name;
		mach_msg_type_t t3;
		vm_size_t page_size;
	} m;
	char line[256];

	(void)state;
	memset(&m, 0, sizeof(m));
	m.h.msgh_bits = MACH_MSGH_BITS(MACH_MSG_TYPE_COPY_SEND, 0) | MACH_MSGH_BITS_COMPLEX;
	m.h.msgh_size = sizeof(m);
	m.h.msgh_remote_port = 0x1234;
	m.h.msgh_id = 2200;
	m.t1 = (mach_msg_type_t){ .msgt_name = MACH_MSG_TYPE_MAKE_SEND, .msgt_size = 32,
		.msgt_number = 1, .msgt_inline = 1 };
	m.ctl = 0x5;
	m.t2 = m.t1;
	m.name = 0x6;
	m.t3 = (mach_msg_type_t){ .msgt_name = MACH_MSG_TYPE_INTEGER_64, .msgt_size = 64,
		.msgt_number = 1, .msgt_inline = 1 };
	m.page_size = 4096;
	assert_int_equal(sizeof(m), 72);
	assert_kr(mvm_mo_decode(&m.h, line, sizeof(line)), KERN_SUCCESS);
	assert_string_equal(line, "memory_object_init(memory_object=0x1234, memory_control=0x5, "
	    "memory_object_name=0x6, memory_object_page_size=0x1000)");
	/* A disposition that is neither the sent nor the received form. */
	m.t2.msgt_name = MACH_MSG_TYPE_MOVE_RECEIVE;
	assert_kr(mvm_mo_decode(&m.h, line, sizeof(line)), MIG_BAD_ARGUMENTS);
	assert_string_equal(line, "memory_object_init(<malformed: memory_object_name: type 16/32 x1, "
	    "expected a port of type 20>)");
}

static void
test_replies_and_errors(void **state)
{
	union msgbuf in, out;
	mig_reply_header_t *rep = (mig_reply_header_t *)&out.h;
	char line[256];

	(void)state;
	/* A short error reply to a routine. */
	memset(&in, 0, sizeof(in));
	in.h.msgh_size = sizeof(mach_msg_header_t);
	in.h.msgh_id = 2040;
	assert_false(mvm_memory_object_control_server(NULL, NULL, &in.h, &out.h));
	assert_kr(mvm_mo_decode(&out.h, line, sizeof(line)), KERN_SUCCESS);
	assert_string_equal(line, "memory_object_get_attributes reply(RetCode=MIG_BAD_ID)");
	/* A full reply. */
	out.h.msgh_size = 88;
	{
		mach_msg_type_t t = { .msgt_name = MACH_MSG_TYPE_INTEGER_32, .msgt_size = 32,
			.msgt_number = 1, .msgt_inline = 1 };
		int32_t v[3] = { TRUE, FALSE, MEMORY_OBJECT_COPY_DELAY };

		rep->RetCode = KERN_SUCCESS;
		for (int i = 0; i < 3; i++) {
			memcpy(out.b + 40 + 16 * i, &t, sizeof(t));
			memcpy(out.b + 48 + 16 * i, &v[i], sizeof(v[i]));
		}
	}
	assert_kr(mvm_mo_decode(&out.h, line, sizeof(line)), KERN_SUCCESS);
	assert_string_equal(line, "memory_object_get_attributes reply(RetCode=KERN_SUCCESS, "
	    "object_ready=TRUE, may_cache=FALSE, copy_strategy=COPY_DELAY)");
	/* Malformed: says why, and answers as the demultiplexer would. */
	out.h.msgh_size = 80;
	assert_kr(mvm_mo_decode(&out.h, line, sizeof(line)), MIG_BAD_ARGUMENTS);
	assert_non_null(strstr(line, "memory_object_get_attributes reply(<malformed: size 80"));
	in.h.msgh_id = 2203;
	assert_kr(mvm_mo_decode(&in.h, line, sizeof(line)), MIG_BAD_ARGUMENTS);
	assert_string_equal(line, "memory_object_data_request(<malformed: size 24, expected 88>)");
	in.h.msgh_id = 2205;
	assert_kr(mvm_mo_decode(&in.h, line, sizeof(line)), MIG_BAD_ID);
	assert_string_equal(line, "<unknown message id 2205, size 24>");
	assert_kr(mvm_mo_decode(NULL, line, sizeof(line)), MIG_BAD_ARGUMENTS);
	assert_string_equal(line, "<truncated message: 0 bytes>");
	/* msgh_size beyond the bytes given. */
	in.h.msgh_id = 2203;
	in.h.msgh_size = 88;
	assert_kr(mvm_mo_decode_bytes(&in, 40, line, sizeof(line)), MIG_BAD_ARGUMENTS);
	assert_kr(mvm_mo_decode_bytes(&in, 10, line, sizeof(line)), MIG_BAD_ARGUMENTS);
	assert_string_equal(line, "<truncated message: 10 bytes>");
}

static void
test_small_buffers(void **state)
{
	union msgbuf in;
	char line[64];

	(void)state;
	memset(&in, 0, sizeof(in));
	in.h.msgh_size = sizeof(mach_msg_header_t);
	in.h.msgh_id = 2203;
	for (size_t len = 0; len < 40; len++) {
		memset(line, 'x', sizeof(line));
		assert_kr(mvm_mo_decode(&in.h, line, len), MIG_BAD_ARGUMENTS);
		if (len > 0) {
			assert_int_equal(strlen(line), len - 1);
			assert_memory_equal(line,
			    "memory_object_data_request(<malformed: size 24, expected 88>)", len - 1);
		}
		assert_int_equal(line[len], 'x');
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_requests),
		cmocka_unit_test(test_unsent_view),
		cmocka_unit_test(test_replies_and_errors),
		cmocka_unit_test(test_small_buffers),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
