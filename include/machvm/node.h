/*
 * <machvm/node.h>: ports across processes. A process that looks up or checks in a name
 * (<mach/netname.h>) becomes a node: it listens on a Unix socket in the runtime
 * directory and exchanges Mach messages, rights and out-of-line memory with other nodes
 * of the same user. mvm_node_start() starts it explicitly.
 * Thread safety: every function may be called from any thread.
 */
#ifndef MACHVM_NODE_H
#define MACHVM_NODE_H

#include <stdint.h>
#include <sys/types.h>
#include <mach/kern_return.h>
#include <machvm/export.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Start this process's node (idempotent). The runtime directory is $MACHVM_RUNTIME_DIR,
 * else $XDG_RUNTIME_DIR/machvm, else /tmp/machvm-$UID; it is created with mode 0700 and
 * refused (KERN_NO_ACCESS) if it belongs to another user or is open to others.
 */
MVM_EXTERN kern_return_t mvm_node_start(void);

/* Let processes of user `uid` connect too (by default only our own user may). */
MVM_EXTERN kern_return_t mvm_node_allow_uid(uid_t uid);

/* The runtime directory of the started node, or NULL. */
MVM_EXTERN const char *mvm_node_runtime_dir(void);

struct mvm_node_stats {
	uint32_t pid;             /* this node: pid and incarnation */
	uint64_t incarnation;
	uint64_t peers;           /* nodes known alive */
	uint64_t peers_dead;      /* nodes seen to die (kept so they are never taken anew) */
	uint64_t exports;         /* local ports other nodes hold rights to */
	uint64_t proxies;         /* ports of other nodes we hold rights to */
	uint64_t frames_out, frames_in;   /* messages sent to / received from other nodes */
	uint64_t bytes_out, bytes_in;
	uint64_t proxies_idle;    /* proxies without rights kept briefly for reuse */
};

MVM_EXTERN kern_return_t mvm_node_stats(struct mvm_node_stats *st);

#ifdef __cplusplus
}
#endif

#endif /* MACHVM_NODE_H */
