/*
 * examples/map_file.c: map a memory object another process serves, read it, write it
 * through the mapping, sync, and check that the write reached the manager (and the file).
 *
 *   machvm serve file data.bin --name demo &       # the manager, in another process
 *   map_file demo data.bin                          # this program
 *
 * It uses only the installed API: <mach/mach.h> for ports, messages and vm_map,
 * <mach/netname.h> to find the object, and <machvm/vm.h> to ask whether this process
 * can map memory objects at all. Build it with
 *
 *   cc -o map_file map_file.c $(pkg-config --cflags --libs machvm)
 *
 * The object's size. Mach's memory_object interface goes from the kernel to the manager
 * and has no "how big are you": the mapper must learn the size elsewhere. `machvm serve`
 * checks in a second name, NAME.info, whose port answers two requests (machvm(1), "THE
 * INFO PORT"): INFO (the size and whether the object is read-only) and SYNC (the manager
 * writes back every dirty page of every kernel now, then replies). The messages are
 * declared here, as any client of that protocol would declare them.
 *
 * Syncing from the mapper's side. A Mach kernel has no msync(2) toward the manager: dirty
 * pages go back when the manager asks (memory_object_lock_request), when the kernel
 * evicts them, or when the last mapping goes (memory_object_terminate returns them). So
 * this program asks the manager to ask: the SYNC request. It then checks the file (when
 * given its path), unmaps, maps again and reads the write back through the manager.
 *
 * Exit status: 0 the write came back, 1 something failed, 2 bad usage, 77 this process
 * cannot map memory objects (no usable userfaultfd).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>

#include <mach/mach.h>
#include <mach/netname.h>
#include <machvm/vm.h>

/* The info port of machvm serve: see machvm(1). */
#define INFO_ID 4180
#define INFO_SYNC_ID 4181
#define INFO_REPLY_DELTA 100
#define INFO_READONLY 0x1

struct info_reply {
	mach_msg_header_t head;
	mach_msg_type_t ret_type;
	kern_return_t ret;
	uint32_t pad;
	mach_msg_type_t size_type;
	uint64_t size;
	mach_msg_type_t flags_type;
	uint32_t flags;
	uint32_t pad2;
};

struct sync_reply {
	mach_msg_header_t head;
	mach_msg_type_t ret_type;
	kern_return_t ret;
	uint32_t pad;
};

/*
 * Send request `id` (a bare header) to port and wait up to timeout_ms for the reply, of
 * reply_size bytes, into rep.
 */
static kern_return_t
call(mach_port_t port, mach_msg_id_t id, mach_msg_header_t *rep, mach_msg_size_t reply_size,
    mach_msg_size_t rep_buf, unsigned timeout_ms)
{
	mach_port_t reply;
	kern_return_t kr;

	if ((kr = mach_port_allocate(mach_task_self(), MACH_PORT_RIGHT_RECEIVE, &reply)) != 0)
		return kr;
	memset(rep, 0, sizeof(*rep));
	rep->msgh_bits = MACH_MSGH_BITS(MACH_MSG_TYPE_COPY_SEND, MACH_MSG_TYPE_MAKE_SEND_ONCE);
	rep->msgh_size = sizeof(*rep);
	rep->msgh_remote_port = port;
	rep->msgh_local_port = reply;
	rep->msgh_id = id;
	kr = mach_msg(rep, MACH_SEND_MSG | MACH_RCV_MSG | MACH_RCV_TIMEOUT, sizeof(*rep),
	    rep_buf, reply, timeout_ms, MACH_PORT_NULL);
	if (kr == MACH_MSG_SUCCESS && (rep->msgh_id != id + INFO_REPLY_DELTA ||
	    rep->msgh_size != reply_size)) {
		mach_msg_destroy(rep);
		kr = MIG_REPLY_MISMATCH;
	}
	(void)mach_port_mod_refs(mach_task_self(), reply, MACH_PORT_RIGHT_RECEIVE, -1);
	return kr;
}

/* FNV-1a, 64 bits: a checksum of what the mapping shows. */
static uint64_t
fnv1a(const volatile unsigned char *p, size_t n, uint64_t h)
{
	for (size_t i = 0; i < n; i++)
		h = (h ^ p[i]) * 0x100000001b3ull;
	return h;
}

int
main(int argc, char **argv)
{
	union {
		mach_msg_header_t head;
		struct info_reply info;
		struct sync_reply sync;
		char buf[256];
	} m;
	char info_name[sizeof(netname_name_t)], why[200], stamp[64], check[64];
	mach_port_t obj = MACH_PORT_NULL, info = MACH_PORT_NULL;
	vm_address_t addr = 0;
	vm_size_t size, len, off;
	volatile unsigned char *p;
	kern_return_t kr;
	int rc = 1, fd = -1;
	/* Read before machvm starts any thread (the library sets it when it starts). */
	const vm_size_t page = vm_page_size;

	if (argc < 2 || argc > 3) {
		fprintf(stderr, "usage: map_file NAME [FILE]\n");
		return 2;
	}
	if (mvm_vm_available(why, sizeof(why)) != KERN_SUCCESS) {
		fprintf(stderr, "map_file: cannot map memory objects here: %s\n", why);
		return 77;
	}
	if (argc == 3 && (fd = open(argv[2], O_RDONLY)) < 0) {
		perror(argv[2]);
		return 1;
	}

	/* 1. Find the object and its info port; ask for the size. */
	snprintf(info_name, sizeof(info_name), "%s.info", argv[1]);
	kr = netname_look_up(name_server_port, "", argv[1], &obj);
	if (kr == KERN_SUCCESS)
		kr = netname_look_up(name_server_port, "", info_name, &info);
	if (kr != KERN_SUCCESS) {
		fprintf(stderr, "map_file: look-up of %s: %s\n", argv[1], mach_error_string(kr));
		goto out;
	}
	kr = call(info, INFO_ID, &m.head, sizeof(m.info), sizeof(m), 10000);
	if (kr == KERN_SUCCESS)
		kr = m.info.ret;
	if (kr != KERN_SUCCESS) {
		fprintf(stderr, "map_file: %s: %s\n", info_name, mach_error_string(kr));
		goto out;
	}
	size = (vm_size_t)m.info.size;
	if (size == 0 || (m.info.flags & INFO_READONLY)) {
		fprintf(stderr, "map_file: %s is %s: nothing to write\n", argv[1],
		    size == 0 ? "empty" : "read-only");
		goto out;
	}
	len = (size + page - 1) / page * page;

	/* 2. Map it and read every byte. */
	kr = vm_map(mach_task_self(), &addr, len, 0, TRUE, obj, 0, FALSE,
	    VM_PROT_READ | VM_PROT_WRITE, VM_PROT_READ | VM_PROT_WRITE, VM_INHERIT_NONE);
	if (kr != KERN_SUCCESS) {
		fprintf(stderr, "map_file: vm_map: %s\n", mach_error_string(kr));
		goto out;
	}
	p = (volatile unsigned char *)addr;
	printf("map_file: %s: %llu bytes at %p, FNV-1a %016llx\n", argv[1],
	    (unsigned long long)size, (void *)addr,
	    (unsigned long long)fnv1a(p, size, 0xcbf29ce484222325ull));

	/* 3. Write a stamp with plain stores, in the middle page, inside the object. */
	off = size / 2 / page * page;
	snprintf(stamp, sizeof(stamp), "written by map_file %d through memory", (int)getpid());
	if (off + strlen(stamp) > size)
		off = 0;
	for (size_t i = 0; i < strlen(stamp) && off + i < size; i++)
		p[off + i] = (unsigned char)stamp[i];
	printf("map_file: wrote \"%s\" at offset %llu\n", stamp, (unsigned long long)off);

	/* 4. Sync: the manager takes every dirty page back and writes it, then answers. */
	kr = call(info, INFO_SYNC_ID, &m.head, sizeof(m.sync), sizeof(m), 30000);
	if (kr == KERN_SUCCESS)
		kr = m.sync.ret;
	if (kr != KERN_SUCCESS) {
		fprintf(stderr, "map_file: sync: %s\n", mach_error_string(kr));
		goto out_map;
	}
	if (fd >= 0) {
		size_t n = strlen(stamp) < size - off ? strlen(stamp) : (size_t)(size - off);

		if (pread(fd, check, n, (off_t)off) != (ssize_t)n || memcmp(check, stamp, n) != 0) {
			fprintf(stderr, "map_file: after the sync, %s does not have the write\n",
			    argv[2]);
			goto out_map;
		}
		printf("map_file: synced; %s has the write\n", argv[2]);
	} else
		printf("map_file: synced\n");

	/* 5. Unmap, map again: the page comes from the manager, with the write. */
	(void)vm_deallocate(mach_task_self(), addr, len);
	addr = 0;
	kr = vm_map(mach_task_self(), &addr, len, 0, TRUE, obj, 0, FALSE, VM_PROT_READ,
	    VM_PROT_READ, VM_INHERIT_NONE);
	if (kr != KERN_SUCCESS) {
		fprintf(stderr, "map_file: vm_map again: %s\n", mach_error_string(kr));
		goto out;
	}
	p = (volatile unsigned char *)addr;
	for (size_t i = 0; i < strlen(stamp) && off + i < size; i++)
		if (p[off + i] != (unsigned char)stamp[i]) {
			fprintf(stderr, "map_file: mapped again, byte %llu is %#x, not %#x\n",
			    (unsigned long long)(off + i), p[off + i], (unsigned char)stamp[i]);
			goto out_map;
		}
	printf("map_file: mapped again: the write came back from the manager; FNV-1a %016llx\n",
	    (unsigned long long)fnv1a(p, size, 0xcbf29ce484222325ull));
	rc = 0;
out_map:
	(void)vm_deallocate(mach_task_self(), addr, len);
out:
	if (obj != MACH_PORT_NULL)
		(void)mach_port_deallocate(mach_task_self(), obj);
	if (info != MACH_PORT_NULL)
		(void)mach_port_deallocate(mach_task_self(), info);
	if (fd >= 0)
		close(fd);
	return rc;
}
