/*
 * src/lib/lock.c: ranked mutexes; see lock.h.
 */
#include <stdio.h>
#include <stdlib.h>

#include "lib/lock.h"

#ifdef MVM_DEBUG_LOCKS
#define MVM_MAX_HELD 8
static __thread const struct mvm_lock *held_stack[MVM_MAX_HELD];
static __thread int held_count;
#endif

void
mvm_lock_init(struct mvm_lock *l, enum mvm_lockrank rank, const char *name)
{
	pthread_mutex_init(&l->mtx, NULL);
	l->rank = rank;
	l->name = name;
#ifdef MVM_DEBUG_LOCKS
#endif
}

void
mvm_lock_destroy(struct mvm_lock *l)
{
	pthread_mutex_destroy(&l->mtx);
}

#ifdef MVM_DEBUG_LOCKS
void
mvm_lock_assert_fail(const char *what, const char *lock, const char *file, int line)
{
	fprintf(stderr, "machvm: lock assertion failed: %s: %s at %s:%d\n", lock, what, file, line);
	abort();
}

bool
mvm_lock_held(const struct mvm_lock *l)
{
	for (int i = 0; i < held_count; i++)
		if (held_stack[i] == l)
			return true;
	return false;
}

bool
mvm_lock_none_held(void)
{
	return held_count == 0;
}
#endif

void
mvm_lock_acquire(struct mvm_lock *l)
{
#ifdef MVM_DEBUG_LOCKS
	for (int i = 0; i < held_count; i++) {
		if (held_stack[i] == l)
			mvm_lock_assert_fail("acquired twice", l->name, __FILE__, __LINE__);
		if (held_stack[i]->rank >= l->rank) {
			fprintf(stderr, "machvm: lock order violation: %s (rank %d) after %s (rank %d)\n",
			    l->name, l->rank, held_stack[i]->name, held_stack[i]->rank);
			abort();
		}
	}
#endif
	pthread_mutex_lock(&l->mtx);
#ifdef MVM_DEBUG_LOCKS
	if (held_count == MVM_MAX_HELD)
		mvm_lock_assert_fail("too many locks held", l->name, __FILE__, __LINE__);
	held_stack[held_count++] = l;
#endif
}

void
mvm_lock_release(struct mvm_lock *l)
{
#ifdef MVM_DEBUG_LOCKS
	int i;

	for (i = held_count - 1; i >= 0; i--)
		if (held_stack[i] == l)
			break;
	if (i < 0)
		mvm_lock_assert_fail("released but not held", l->name, __FILE__, __LINE__);
	for (; i < held_count - 1; i++)
		held_stack[i] = held_stack[i + 1];
	held_count--;
#endif
	pthread_mutex_unlock(&l->mtx);
}
