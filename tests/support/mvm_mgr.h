/*
 * tests/support/mvm_mgr.h: a scripted memory manager for kernel tests. It serves one
 * memory object port in a thread of the test process, keeps a backing store in memory,
 * and logs every message it receives as one line ("data_request off=0 len=4096
 * access=1"), so a test can assert the exact sequence. Each routine has a default answer
 * that a test may replace, or switch to manual (log only) and answer itself.
 */
#ifndef MVM_MGR_H
#define MVM_MGR_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <mach/mach.h>

#define MVM_MGR_PAGES 512
#define MVM_MGR_LOG 4096

struct mvm_mgr;

/* Policy hooks: return true if handled (the default answer is then skipped). */
struct mvm_mgr_policy {
	bool (*data_request)(struct mvm_mgr *m, memory_object_control_t ctl, vm_offset_t off,
	    vm_size_t len, vm_prot_t access);
	bool (*data_unlock)(struct mvm_mgr *m, memory_object_control_t ctl, vm_offset_t off,
	    vm_size_t len, vm_prot_t access);
	bool (*init)(struct mvm_mgr *m, memory_object_control_t ctl);
};

struct mvm_mgr {
	mach_port_t object;             /* receive right with a send right, same name */
	memory_object_control_t ctl;    /* the control port of the last init */
	memory_object_name_t name;
	pthread_t thread;
	pthread_mutex_t mtx;
	pthread_cond_t cond;
	char *log[MVM_MGR_LOG];         /* lines, in arrival order */
	size_t nlog;
	unsigned char store[MVM_MGR_PAGES][4096]; /* backing store, page by page */
	/* Defaults. */
	boolean_t may_cache;            /* in ready (FALSE) */
	bool manual_requests;           /* do not answer data_request */
	bool manual_unlocks;            /* do not answer data_unlock */
	bool no_ready;                  /* do not answer init */
	vm_prot_t supply_lock;          /* lock_value of default supplies (NONE) */
	boolean_t supply_precious;      /* precious flag of default supplies (FALSE) */
	struct mvm_mgr_policy policy;
	void *arg;                      /* for the test */
	int returns;                    /* data_return messages */
	int terminated;                 /* terminate messages */
	int inits;                      /* init messages */
};

/* Start a manager; the store is filled with pattern(page, byte) = page * 7 + byte. */
struct mvm_mgr *mvm_mgr_start(void);
/* Stop: destroy the object port (a kernel still mapping it sees the manager die). */
void mvm_mgr_stop(struct mvm_mgr *m);

/* The expected byte of the initial store at object offset off. */
unsigned char mvm_mgr_pattern(vm_offset_t off);

/* Wait until at least n lines start with prefix (timeout in ms); returns the count. */
int mvm_mgr_wait(struct mvm_mgr *m, const char *prefix, int n, int timeout_ms);
/* Count lines starting with prefix. */
int mvm_mgr_count(struct mvm_mgr *m, const char *prefix);
/* Assert the log equals the given lines exactly (NULL-terminated), then clear it. */
void mvm_mgr_expect(struct mvm_mgr *m, const char *const *lines, const char *file, int line);
#define MVM_MGR_EXPECT(m, ...) \
	do { \
		const char *const lines_[] = { __VA_ARGS__, NULL }; \
		mvm_mgr_expect((m), lines_, __FILE__, __LINE__); \
	} while (0)
/* Print the log (for debugging a failing test). */
void mvm_mgr_dump(struct mvm_mgr *m);
void mvm_mgr_clear(struct mvm_mgr *m);

/* Supply len bytes of the store at off, with the given lock and precious flags. */
kern_return_t mvm_mgr_supply(struct mvm_mgr *m, vm_offset_t off, vm_size_t len, vm_prot_t lock,
    boolean_t precious, mach_port_t reply_to);

/* True when userfaultfd is usable here; otherwise skips the test (a failure when
 * MACHVM_REQUIRE_UFFD=1). Call at the start of every kernel test. It starts the kernel
 * in the calling process, unless mvm_test_probe_in_child is set (by nt_setup() of
 * mvm_node_test.h): then a child process is asked, once, so that the cross-process
 * tests may call it in the test process, which must never start machvm. */
void mvm_test_require_uffd(void);
extern bool mvm_test_probe_in_child;

#endif /* MVM_MGR_H */
