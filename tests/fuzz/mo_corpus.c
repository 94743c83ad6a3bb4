/*
 * tests/fuzz/mo_corpus.c: writes the seed corpus of the memory object fuzz targets from
 * the generated tables: every request (and routine reply) of every subsystem, well formed,
 * with out-of-line data in short and long form, as received (for the demultiplexer and
 * decoder targets) and as sent (for fuzz_mo_mach_msg, whose first byte picks the
 * demultiplexer). Built by tests/integration/tests.cmake; run by hand after changing the
 * description:  mo_corpus tests/fuzz/corpus
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <mach/mach.h>
#include "ipc/ipc.h"
#include "mo/mo.h"

union buf {
	mach_msg_header_t h;
	uint8_t b[512];
};

static void
put(const char *dir, const char *target, const char *name, const void *data, size_t len)
{
	char path[512];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, target);
	mkdir(path, 0777);
	snprintf(path, sizeof(path), "%s/%s/%s", dir, target, name);
	f = fopen(path, "wb");
	if (f == NULL || fwrite(data, 1, len, f) != len || fclose(f) != 0) {
		perror(path);
		exit(1);
	}
}

/* Rewrite the port items' dispositions as the types a receiver sees. */
static void
as_received(union buf *m)
{
	size_t pos = sizeof(mach_msg_header_t);
	struct mvm_msg_item it;

	while (pos < m->h.msgh_size &&
	    mvm__msg_next_item(m->b, m->h.msgh_size, &pos, &it) == MACH_MSG_SUCCESS)
		if (mvm__msg_type_is_port(it.name) && !it.longform) {
			mach_msg_type_t t;

			memcpy(&t, m->b + it.desc_off, sizeof(t));
			t.msgt_name = mvm__msg_received_type(t.msgt_name);
			memcpy(m->b + it.desc_off, &t, sizeof(t));
		}
}

static const char *
target_of(const char *ss)
{
	if (strcmp(ss, "memory_object") == 0)
		return "fuzz_mo_server";
	if (strcmp(ss, "memory_object_default") == 0)
		return "fuzz_mo_default_server";
	return "fuzz_mo_control_server";
}

int
main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: mo_corpus DIR\n");
		return 2;
	}
	for (unsigned s = 0; s < mvm__mo_nsubsystems; s++) {
		const struct mvm__mo_subsystem *ss = mvm__mo_subsystems[s];

		for (uint32_t k = 0; k < ss->nroutines; k++) {
			const struct mvm__mo_routine *r = ss->routines[k];
			const struct mvm__mo_msg *req;

			if (r == NULL)
				continue;
			req = r->request;
			for (int longform = 0; longform < 1 + (req->nool > 0); longform++) {
				struct mvm__mo_arg a[MVM__MO_MAX_ITEMS];
				union buf m, sent;
				char name[128];
				uint8_t sel[1 + sizeof(m)];

				memset(a, 0, sizeof(a));
				memset(&m, 0, sizeof(m));
				for (unsigned i = 0; i < req->nitems; i++) {
					a[i].val = req->items[i].wire == MVM__MO_PORT ? (i % 2 ? 3 : 0) :
					    0x1000 * (i + 1);
					if (req->items[i].wire == MVM__MO_OOL) {
						a[i].val = 0x7f0000001000ULL;
						a[i].aux = longform ? 8192 : 64;
					}
				}
				m.h.msgh_size = mvm__mo_pack(req, a, &m.h, sizeof(m));
				m.h.msgh_bits = MACH_MSGH_BITS(MACH_MSG_TYPE_COPY_SEND, 0) |
				    (req->complex ? MACH_MSGH_BITS_COMPLEX : 0);
				m.h.msgh_id = req->id;
				sent = m;
				/* As received: local port 0x103 (a send right), seqno 3. */
				as_received(&m);
				m.h.msgh_bits = MACH_MSGH_BITS(0, MACH_MSG_TYPE_PORT_SEND) |
				    (req->complex ? MACH_MSGH_BITS_COMPLEX : 0);
				m.h.msgh_local_port = 0x103;
				m.h.msgh_seqno = 3;
				snprintf(name, sizeof(name), "%s%s", req->name, longform ? "_long" : "");
				put(argv[1], target_of(ss->name), name, m.b, m.h.msgh_size);
				put(argv[1], "fuzz_mo_decode", name, m.b, m.h.msgh_size);
				if (strcmp(ss->name, "memory_object_control") != 0)
					put(argv[1], "fuzz_mo_ops_server", name, m.b, m.h.msgh_size);
				/* As sent, with the selector of the matching demultiplexer first. */
				sel[0] = strcmp(ss->name, "memory_object") == 0 ? (k % 2 ? 0 : 3) :
				    strcmp(ss->name, "memory_object_default") == 0 ? 2 : 4;
				memcpy(sel + 1, sent.b, sent.h.msgh_size);
				put(argv[1], "fuzz_mo_mach_msg", name, sel, 1 + sent.h.msgh_size);
				put(argv[1], "fuzz_mo_decode", strcat(name, "_sent"), sent.b,
				    sent.h.msgh_size);
			}
			if (r->reply != NULL) {
				struct mvm__mo_arg a[MVM__MO_MAX_ITEMS];
				union buf m;
				char name[128];

				memset(a, 0, sizeof(a));
				memset(&m, 0, sizeof(m));
				m.h.msgh_size = mvm__mo_pack(r->reply, a, &m.h, sizeof(m));
				m.h.msgh_bits = MACH_MSGH_BITS(MACH_MSG_TYPE_MOVE_SEND_ONCE, 0) |
				    (r->reply->complex ? MACH_MSGH_BITS_COMPLEX : 0);
				m.h.msgh_id = r->reply->id;
				snprintf(name, sizeof(name), "%s_reply", req->name);
				put(argv[1], "fuzz_mo_decode", name, m.b, m.h.msgh_size);
			}
		}
	}
	return 0;
}
