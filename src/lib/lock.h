/*
 * src/lib/lock.h: machvm's mutex with lock-order checking.
 *
 * Every lock has a rank (src/lib/lockrank.h). In debug builds (MVM_DEBUG_LOCKS) each thread
 * records the locks it holds; acquiring a lock whose rank is not higher than every lock
 * already held aborts with a message, and MVM_ASSERT_LOCKED() / MVM_ASSERT_UNLOCKED() check
 * ownership, which a pthread mutex cannot answer.
 *
 * Thread safety: the functions are what makes the rest thread-safe.
 */
#ifndef MVM_LIB_LOCK_H
#define MVM_LIB_LOCK_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "lib/lockrank.h"

struct mvm_lock {
	pthread_mutex_t mtx;
	enum mvm_lockrank rank;
	const char *name;
#ifdef MVM_DEBUG_LOCKS
#endif
};

void mvm_lock_init(struct mvm_lock *l, enum mvm_lockrank rank, const char *name);
void mvm_lock_destroy(struct mvm_lock *l);
void mvm_lock_acquire(struct mvm_lock *l);
void mvm_lock_release(struct mvm_lock *l);

#ifdef MVM_DEBUG_LOCKS
bool mvm_lock_held(const struct mvm_lock *l);
/* True when the calling thread holds no machvm lock at all. */
bool mvm_lock_none_held(void);
void mvm_lock_assert_fail(const char *what, const char *lock, const char *file, int line)
    __attribute__((noreturn));
#define MVM_ASSERT_LOCKED(l) \
	((void)(mvm_lock_held(l) ? 0 : (mvm_lock_assert_fail("not held", (l)->name, __FILE__, __LINE__), 0)))
#define MVM_ASSERT_UNLOCKED(l) \
	((void)(!mvm_lock_held(l) ? 0 : (mvm_lock_assert_fail("held", (l)->name, __FILE__, __LINE__), 0)))
#define MVM_ASSERT_NO_LOCKS() \
	((void)(mvm_lock_none_held() ? 0 : (mvm_lock_assert_fail("some lock held", "any", __FILE__, __LINE__), 0)))
#else
#define MVM_ASSERT_LOCKED(l)   ((void)0)
#define MVM_ASSERT_UNLOCKED(l) ((void)0)
#define MVM_ASSERT_NO_LOCKS()  ((void)0)
#endif

#endif /* MVM_LIB_LOCK_H */
