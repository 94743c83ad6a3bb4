/*
 * <machvm/machvm.h>: everything of machvm's own API (prefix mvm_).
 * Thread safety: see each header.
 */
#ifndef MACHVM_MACHVM_H
#define MACHVM_MACHVM_H

#include <machvm/version.h>
#include <machvm/export.h>
#include <machvm/ipc.h>

#endif /* MACHVM_MACHVM_H */
